//! The one route-netlink question the TUN devices ask: what the kernel says of an interface
//! (`RTM_GETLINK`), and of a TUN its driver's own attributes (`IFLA_LINKINFO`, kind `tun`:
//! `tun_fill_info` in drivers/net/tun.c, since Linux 4.15). `ip -d link show` asks the same.
//!
//! [`TunDevice::attach`](super::TunDevice::attach) needs it because the TUN's own ioctls
//! cannot say whether another program already reads an interface before a file joins it:
//! `TUNGETIFF` answers only once the file is attached, and with the flags of the
//! interface's first reader. The message is built and read here, in safe code; `sys.rs`
//! only sends it and receives the answer.

use std::io;

use super::sys;

/// `RTM_GETLINK` and `RTM_NEWLINK` (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
/// `NLMSG_ERROR` (linux/netlink.h): an error, or an acknowledgement with error 0.
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST` (linux/netlink.h).
const NLM_F_REQUEST: u16 = 1;
/// An attribute's type without its `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` bits.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `IFLA_MTU`, `IFLA_TXQLEN`, `IFLA_LINKINFO` (linux/if_link.h).
const IFLA_MTU: u16 = 4;
const IFLA_TXQLEN: u16 = 13;
const IFLA_LINKINFO: u16 = 18;
/// `IFLA_INFO_KIND`, `IFLA_INFO_DATA`, nested in `IFLA_LINKINFO`.
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
/// The `IFLA_TUN_*` attributes, nested in `IFLA_INFO_DATA` (linux/if_link.h).
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PI: u16 = 4;
const IFLA_TUN_VNET_HDR: u16 = 5;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;
const IFLA_TUN_NUM_QUEUES: u16 = 8;
const IFLA_TUN_NUM_DISABLED_QUEUES: u16 = 9;
/// The sizes of `struct nlmsghdr` and `struct ifinfomsg`.
const NLMSGHDR_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
/// The request's sequence number, which the answer repeats.
const SEQ: u32 = 1;
/// Room for the answer: one `RTM_NEWLINK`, a few KiB with the interface's statistics.
const REPLY_LEN: usize = 32 * 1024;

/// What the kernel says of an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Link {
    /// Its kind (`IFLA_INFO_KIND`) is `tun`: a TUN or TAP interface.
    pub(super) is_tun: bool,
    pub(super) mtu: Option<u32>,
    pub(super) tx_queue_len: Option<u32>,
    /// The TUN driver's attributes; `None` for a link of another kind (a veth, the
    /// loopback), or a TUN of a kernel older than 4.15.
    pub(super) tun: Option<TunLink>,
}

/// A TUN or TAP interface, as its driver describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TunLink {
    /// `IFF_TAP` (Ethernet frames) rather than `IFF_TUN` (IP packets).
    pub(super) tap: bool,
    /// Its readers get a 4-byte packet information prefix (no `IFF_NO_PI`), which a file's
    /// `TUNGETIFF` cannot tell: it reports its own `IFF_NOFILTER` in that bit.
    pub(super) pi: bool,
    /// `IFF_VNET_HDR`: its readers' frames carry the virtio-net header.
    pub(super) vnet_hdr: bool,
    /// `IFF_PERSIST`: it outlives its files (`ip tuntap add`, `TUNSETPERSIST`).
    pub(super) persist: bool,
    pub(super) multi_queue: bool,
    /// Files attached to it, enabled or not; the kernel counts them only for a multi-queue
    /// interface (a single-queue one refuses a second file with EBUSY instead).
    pub(super) files: Option<u32>,
    /// Of those, the enabled ones, among which the kernel spreads the interface's flows
    /// (a file detached with `TUNSETQUEUE` gets none).
    pub(super) queues: Option<u32>,
    pub(super) owner: Option<u32>,
    pub(super) group: Option<u32>,
}

/// Asks the kernel about the interface with index `ifindex`, in the calling thread's
/// network namespace.
pub(super) fn link(ifindex: i32) -> io::Result<Link> {
    let mut reply = vec![0; REPLY_LEN];
    let n = sys::rtnetlink(&request(ifindex), &mut reply)?;
    parse(reply.get(..n).unwrap_or(&reply), ifindex)
}

/// An `RTM_GETLINK` request for one interface, by index.
fn request(ifindex: i32) -> [u8; NLMSGHDR_LEN + IFINFOMSG_LEN] {
    let mut m = [0u8; NLMSGHDR_LEN + IFINFOMSG_LEN];
    m[0..4].copy_from_slice(&((NLMSGHDR_LEN + IFINFOMSG_LEN) as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    // The sequence number; the port is the kernel's to fill in.
    m[8..12].copy_from_slice(&SEQ.to_ne_bytes());
    // struct ifinfomsg: family (AF_UNSPEC), padding, type, then the index.
    m[NLMSGHDR_LEN + 4..NLMSGHDR_LEN + 8].copy_from_slice(&ifindex.to_ne_bytes());
    m
}

/// Reads the kernel's answer to [`request`]`(ifindex)`: an `RTM_NEWLINK` for that index,
/// or an `NLMSG_ERROR` with the errno (ENODEV for an index that is gone); messages of
/// another sequence number are not its. Anything malformed is `InvalidData`.
fn parse(reply: &[u8], ifindex: i32) -> io::Result<Link> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed RTM_GETLINK answer");
    let mut rest = reply;
    while rest.len() >= NLMSGHDR_LEN {
        let len = u32_at(rest, 0).ok_or_else(bad)? as usize;
        let kind = u16_at(rest, 4).ok_or_else(bad)?;
        let seq = u32_at(rest, 8).ok_or_else(bad)?;
        let msg = rest.get(NLMSGHDR_LEN..len).ok_or_else(bad)?;
        match kind {
            _ if seq != SEQ => {}
            NLMSG_ERROR => {
                let errno = u32_at(msg, 0).ok_or_else(bad)? as i32;
                if errno != 0 {
                    let errno = errno.checked_neg().ok_or_else(bad)?;
                    return Err(io::Error::from_raw_os_error(errno));
                }
            }
            RTM_NEWLINK => {
                let index = u32_at(msg, 4).ok_or_else(bad)? as i32;
                if index != ifindex {
                    return Err(bad());
                }
                return Ok(read_link(msg.get(IFINFOMSG_LEN..).ok_or_else(bad)?));
            }
            _ => {}
        }
        rest = rest.get(align(len)..).unwrap_or(&[]);
    }
    Err(bad())
}

/// The attributes of an `RTM_NEWLINK` that matter here.
fn read_link(attrs: &[u8]) -> Link {
    let mut link = Link::default();
    let mut kind_tun = false;
    let mut data = None;
    for (kind, value) in attributes(attrs) {
        match kind {
            IFLA_MTU => link.mtu = u32_at(value, 0),
            IFLA_TXQLEN => link.tx_queue_len = u32_at(value, 0),
            IFLA_LINKINFO => {
                for (kind, value) in attributes(value) {
                    match kind {
                        // A NUL-terminated string.
                        IFLA_INFO_KIND => {
                            kind_tun = value.split(|&b| b == 0).next() == Some(b"tun")
                        }
                        IFLA_INFO_DATA => data = Some(value),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link.is_tun = kind_tun;
    if let (true, Some(data)) = (kind_tun, data) {
        let mut tun = TunLink::default();
        let mut disabled = None;
        for (kind, value) in attributes(data) {
            let flag = value.first().is_some_and(|&b| b != 0);
            match kind {
                // IFF_TUN (1) or IFF_TAP (2).
                IFLA_TUN_TYPE => tun.tap = value.first() == Some(&2),
                IFLA_TUN_PI => tun.pi = flag,
                IFLA_TUN_VNET_HDR => tun.vnet_hdr = flag,
                IFLA_TUN_PERSIST => tun.persist = flag,
                IFLA_TUN_MULTI_QUEUE => tun.multi_queue = flag,
                IFLA_TUN_NUM_QUEUES => tun.queues = u32_at(value, 0),
                IFLA_TUN_NUM_DISABLED_QUEUES => disabled = u32_at(value, 0),
                IFLA_TUN_OWNER => tun.owner = u32_at(value, 0),
                IFLA_TUN_GROUP => tun.group = u32_at(value, 0),
                _ => {}
            }
        }
        tun.files = tun.queues.map(|q| q.saturating_add(disabled.unwrap_or(0)));
        link.tun = Some(tun);
    }
    link
}

/// The netlink attributes in `data`, as (type, value); stops at the first malformed one.
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(data, 0)?);
        let kind = u16_at(data, 2)? & NLA_TYPE_MASK;
        let value = data.get(4..len)?;
        data = data.get(align(len)..).unwrap_or(&[]);
        Some((kind, value))
    })
}

/// Netlink aligns messages and attributes to 4 bytes.
fn align(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align(a.len()), 0);
        a
    }

    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSGHDR_LEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 2]);
        m.extend_from_slice(&SEQ.to_ne_bytes());
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(payload);
        m
    }

    /// A `struct ifinfomsg` for interface 7.
    fn ifinfomsg() -> Vec<u8> {
        let mut i = vec![0; IFINFOMSG_LEN];
        i[4..8].copy_from_slice(&7i32.to_ne_bytes());
        i
    }

    /// An `RTM_NEWLINK` for a multi-queue TUN as `tun_fill_info` writes it: the kind and the
    /// driver's data nested in `IFLA_LINKINFO` (its nested bit set, as the kernel sets it).
    fn newlink(files: u32, disabled: u32) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend(attr(IFLA_TUN_TYPE, &[1]));
        data.extend(attr(IFLA_TUN_OWNER, &65534u32.to_ne_bytes()));
        data.extend(attr(IFLA_TUN_PI, &[0]));
        data.extend(attr(IFLA_TUN_VNET_HDR, &[1]));
        data.extend(attr(IFLA_TUN_PERSIST, &[1]));
        data.extend(attr(IFLA_TUN_MULTI_QUEUE, &[1]));
        data.extend(attr(IFLA_TUN_NUM_QUEUES, &files.to_ne_bytes()));
        data.extend(attr(IFLA_TUN_NUM_DISABLED_QUEUES, &disabled.to_ne_bytes()));
        let mut info = attr(IFLA_INFO_KIND, b"tun\0");
        info.extend(attr(IFLA_INFO_DATA | 0x8000, &data));
        let mut payload = ifinfomsg();
        payload.extend(attr(IFLA_MTU, &1500u32.to_ne_bytes()));
        payload.extend(attr(IFLA_TXQLEN, &500u32.to_ne_bytes()));
        payload.extend(attr(IFLA_LINKINFO | 0x8000, &info));
        message(RTM_NEWLINK, &payload)
    }

    #[test]
    fn reads_a_tun_link() {
        let link = parse(&newlink(2, 1), 7).unwrap();
        assert!(link.is_tun);
        assert_eq!(link.mtu, Some(1500));
        assert_eq!(link.tx_queue_len, Some(500));
        let tun = link.tun.unwrap();
        assert_eq!(
            tun,
            TunLink {
                tap: false,
                pi: false,
                vnet_hdr: true,
                persist: true,
                multi_queue: true,
                files: Some(3),
                queues: Some(2),
                owner: Some(65534),
                group: None,
            }
        );
    }

    #[test]
    fn another_kind_of_link_has_no_tun_data() {
        let mut info = attr(IFLA_INFO_KIND, b"veth\0");
        info.extend(attr(IFLA_INFO_DATA, &attr(1, &[0; 4])));
        let mut payload = ifinfomsg();
        payload.extend(attr(IFLA_LINKINFO, &info));
        let link = parse(&message(RTM_NEWLINK, &payload), 7).unwrap();
        assert_eq!(link.tun, None);
        assert_eq!(link.mtu, None);
    }

    #[test]
    fn an_error_answer_is_its_errno() {
        let e = parse(&message(NLMSG_ERROR, &(-libc::ENODEV).to_ne_bytes()), 7).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    }

    #[test]
    fn truncated_or_malformed_answers_are_invalid_data_not_panics() {
        let whole = newlink(0, 0);
        for cut in 0..whole.len() {
            let _ = parse(&whole[..cut], 7);
        }
        let invalid = |reply: &[u8], ifindex| parse(reply, ifindex).unwrap_err().kind();
        let mut lying = whole.clone();
        lying[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert_eq!(invalid(&lying, 7), io::ErrorKind::InvalidData);
        assert_eq!(invalid(&[], 7), io::ErrorKind::InvalidData);
        // The most negative errno has no positive counterpart.
        let worst = message(NLMSG_ERROR, &i32::MIN.to_ne_bytes());
        assert_eq!(invalid(&worst, 7), io::ErrorKind::InvalidData);
        // An answer about another interface, or to another request, is not this one's.
        assert_eq!(invalid(&whole, 8), io::ErrorKind::InvalidData);
        let mut other = whole.clone();
        other[8..12].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(invalid(&other, 7), io::ErrorKind::InvalidData);
        // An attribute claiming more than there is ends the list, it is not read past.
        let mut payload = ifinfomsg();
        payload.extend_from_slice(&[200, 0, 4, 0, 1, 2, 3, 4]);
        assert_eq!(
            parse(&message(RTM_NEWLINK, &payload), 7).unwrap(),
            Link::default()
        );
    }

    #[test]
    fn the_request_names_the_index() {
        let r = request(7);
        assert_eq!(u32_at(&r, 0), Some(32));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETLINK));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&r, NLMSGHDR_LEN + 4), Some(7));
    }
}
