//! Linux TUN devices: the kernel routes IP packets to them, and the stack answers through them.
//!
//! [`TunDevice`] is the device users get by default. It is one of two, which share one way of
//! creating the interface:
//! - [`OffloadTun`], with the virtio-net header (`vnet.rs`) and the kernel's checksum and
//!   TCP segmentation offloads: one system call moves up to 64 KiB of TCP. The default,
//!   whenever the kernel supports it.
//! - [`PlainTun`]: one `read(2)` or `write(2)` per IP packet. The fallback, with a one-line
//!   warning saying why, and what [`TunConfig::offload`] `false` (the examples'
//!   `--no-offload`) asks for.
//!
//! **One way to make a TUN.** Both open `/dev/net/tun` themselves (`sys.rs`, `IFF_TUN |
//! IFF_NO_PI`, plus `IFF_VNET_HDR` for the offload device) and configure the link with the
//! classic interface ioctls. We dropped tokio-tun and did not take tun-rs: the offload device
//! needs every frame raw, virtio-net header included, read straight into the driver's buffer
//! (a kernel super-packet goes to the stack whole) and written with `writev` from the
//! stack's own buffer (a TSO header in front of the core's super-segment, no copy). tun-rs's
//! offload path instead cuts and coalesces in user space over batches of its own buffers,
//! which would duplicate `synack_core::wire::gso` and copy every payload, and tokio-tun has no
//! offload at all. The cost is a few ioctls, all in `sys.rs`, the only module of the crate
//! allowed `unsafe`.
//!
//! **Multi-queue.** Both devices are opened with `IFF_MULTI_QUEUE` unless
//! [`TunConfig::multi_queue`] is off: then [`Device::open_queue`] opens `/dev/net/tun` again
//! with the same name and flags, which attaches one more queue (file) to the interface, and a
//! stack runs one shard per queue (see [`crate::shard`]). The queue is opened in the network
//! namespace the interface was created in (the creating thread's, remembered as an open
//! `/proc/thread-self/ns/net`), from a short-lived thread that joins it when the caller is
//! elsewhere: in any other namespace the same name would create a new interface. The kernel
//! chooses the queue of each packet it sends us: a flow it has seen us write on goes to that
//! queue (its flow table, `tun_flow_update`), any other by its flow hash.
//!
//! **Attaching.** [`TunDevice::attach`] takes an interface that exists already instead of
//! creating one: a persistent TUN an administrator made for the user that runs the stack
//! (`ip tuntap add dev NAME mode tun user USER [multi_queue]`), with its addresses, routes
//! and MTU. Every call it makes is allowed to the interface's owner, so the stack runs
//! without privileges. It refuses what would take another program's packets: a TAP, an
//! interface that is not persistent (a running program's own), one that a file reads
//! already (the kernel counts them for a multi-queue interface: `rtnl.rs` asks it, before
//! joining and after; a single-queue one refuses a second file itself). Since the kernel
//! keeps a persistent interface's offloads and steering program from one reader to the
//! next, the plain device turns the offloads off when it attaches, and an attached device
//! takes off both when it is dropped.
//!
//! **A file from elsewhere.** [`TunDevice::from_fd`] takes a TUN file another program opened
//! and attached (a privileged helper, Android's `VpnService`): the process running the stack
//! then opens nothing, and the file's own flags (`TUNGETIFF`) say its interface and framing.
//!
//! In raw-IP mode every read is one whole IP packet and every write must be one. The
//! kernel-side addresses given in [`TunConfig::host_addr`] (IPv4) and
//! [`TunConfig::host_addr6`] (IPv6), either or both, put connected routes on the device:
//! every other address of those subnets, such as the stack's own `198.18.0.2` or
//! `2001:2::2`, is reached through the TUN. IPv6 is set with the same ioctl (`SIOCSIFADDR`,
//! on an `AF_INET6` socket), after turning duplicate address detection off on the device so
//! that the address works at once. The kernel also gives an IPv6 device a link-local address
//! and sends router solicitations and MLD reports from it; those are not for the stack,
//! which drops and counts them (`Stats::drop_not_for_us`).

use std::fmt;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use synack_core::{RecvMeta, Transmit};
use tokio::io::unix::AsyncFd;

use super::{Device, DeviceCapabilities};
#[cfg(feature = "netns")]
use crate::netns::NetNs;
use crate::shard::FlowSteering;

mod offload;
mod rtnl;
mod steering;
mod sys;
mod vnet;

pub use offload::{OffloadCounters, OffloadStats, OffloadTun};

/// An IPv4 address with a prefix length, as in `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The number of leading one bits in the netmask (0..=32).
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`; `None` if the prefix is longer than 32 bits.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        (prefix_len <= 32).then_some(Ipv4Cidr { addr, prefix_len })
    }

    /// The netmask, e.g. `255.255.255.0` for `/24` (a prefix over 32, built by hand, counts
    /// as 32).
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32u32.saturating_sub(u32::from(self.prefix_len)))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }

    /// The subnet's directed broadcast address (RFC 919, RFC 922: all host bits set), which
    /// Linux routes as broadcast for a prefix shorter than 31 bits (`fib_add_ifaddr`); a
    /// /31 (RFC 3021) or /32 has none.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        (self.prefix_len < 31)
            .then(|| Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask())))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An IPv6 address with a prefix length, as in `2001:2::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    /// The address.
    pub addr: Ipv6Addr,
    /// The number of leading bits that name the subnet (0..=128).
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    /// `addr/prefix_len`; `None` if the prefix is longer than 128 bits.
    pub fn new(addr: Ipv6Addr, prefix_len: u8) -> Option<Ipv6Cidr> {
        (prefix_len <= 128).then_some(Ipv6Cidr { addr, prefix_len })
    }

    /// The subnet mask as a number, e.g. the top 64 bits set for `/64` (a prefix over 128,
    /// built by hand, counts as 128).
    fn mask(&self) -> u128 {
        u128::MAX
            .checked_shl(128u32.saturating_sub(u32::from(self.prefix_len)))
            .unwrap_or(0)
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = self.mask();
        u128::from(ip) & mask == u128::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not an IPv4 or IPv6 CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCidrError {
    input: String,
    ipv6: bool,
}

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, example) = if self.ipv6 {
            ("IPv6", "2001:2::1/64")
        } else {
            ("IPv4", "198.18.0.1/24")
        };
        write!(
            f,
            "invalid {family} CIDR {:?} (expected e.g. {example})",
            self.input
        )
    }
}

impl std::error::Error for ParseCidrError {}

/// Splits `addr/len` and parses both halves; `None` if either does not parse.
fn parse_cidr<A: FromStr>(s: &str) -> Option<(A, u8)> {
    let (addr, len) = s.split_once('/')?;
    Some((addr.parse().ok()?, len.parse().ok()?))
}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s)
            .and_then(|(addr, len)| Ipv4Cidr::new(addr, len))
            .ok_or_else(|| ParseCidrError {
                input: s.to_owned(),
                ipv6: false,
            })
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s)
            .and_then(|(addr, len)| Ipv6Cidr::new(addr, len))
            .ok_or_else(|| ParseCidrError {
                input: s.to_owned(),
                ipv6: true,
            })
    }
}

/// How to make a [`TunDevice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// The interface name (at most 15 bytes, Linux's IFNAMSIZ less the NUL).
    pub name: String,
    /// The kernel's own IPv4 address on the device, and with it the IPv4 subnet routed to
    /// the device; `None` for a device without IPv4 (then `host_addr6` must be set).
    pub host_addr: Option<Ipv4Cidr>,
    /// The kernel's own IPv6 address on the device, and with it the IPv6 subnet routed to
    /// the device (`None`, the default, for none). Either family alone, or both: a
    /// dual-stack device. The address is usable at once: duplicate address detection is
    /// off on the device (a point-to-point link has no one to collide with).
    pub host_addr6: Option<Ipv6Cidr>,
    /// The device MTU: the largest IP packet either side sends through it, 88
    /// ([`MIN_MTU`](synack_core::MIN_MTU): below it a Linux peer's TCP arrives in fragments)
    /// to 65535, and at least 1280 with an IPv6 address. 0
    /// (the default) takes the kind of device's own: [`OFFLOAD_TUN_MTU`] for the offloading
    /// device and [`PLAIN_TUN_MTU`] for the plain one (see there for why they differ), also
    /// when [`TunDevice::create`] falls back to the plain one.
    pub mtu: usize,
    /// Whether [`TunDevice::create`] tries the offloading device first (default `true`);
    /// `false` makes it a [`PlainTun`] at once.
    pub offload: bool,
    /// Whether the interface is opened with `IFF_MULTI_QUEUE` (default `true`), so that a
    /// stack can run one worker per queue ([`StackBuilder::workers`](crate::StackBuilder::workers)).
    /// With `false` the device has a single queue and its stack a single worker.
    pub multi_queue: bool,
    /// How many packets the kernel holds for the stack on each queue of the device
    /// (`txqueuelen`), 1 to `i32::MAX`, or 0 for the kernel's own (500). Default
    /// [`TUN_TX_QUEUE_LEN`]; see there why it is larger than the kernel's.
    pub tx_queue_len: usize,
}

impl Default for TunConfig {
    /// `synack0`, `198.18.0.1/24` (RFC 2544's benchmarking range, never routed on the
    /// Internet) and no IPv6, the MTU chosen by the kind of device.
    fn default() -> Self {
        TunConfig {
            name: "synack0".into(),
            host_addr: Some(Ipv4Cidr {
                addr: Ipv4Addr::new(198, 18, 0, 1),
                prefix_len: 24,
            }),
            host_addr6: None,
            mtu: 0,
            offload: true,
            multi_queue: true,
            tx_queue_len: TUN_TX_QUEUE_LEN,
        }
    }
}

/// How many packets the kernel holds for the stack on each queue of a TUN unless
/// [`TunConfig::tx_queue_len`] says otherwise: 2048, where Linux gives a TUN 500.
///
/// The kernel puts each packet for the stack on the ring of the queue that reads it, and
/// drops it when that ring is full, whatever it is: no back-pressure reaches its sender.
/// Between two turns of the driver, hundreds of connections' ACKs and window updates (a
/// client's every read of what we sent makes one) arrive together with their SYNs, requests,
/// FINs and RSTs. With 500 parallel 10 MB downloads from `http_server`, 500 a queue dropped
/// 13 to 16 thousand packets a run, 1024 one to two thousand, and 2048 none or a few hundred
/// (BENCHMARKS.md, thirtieth session; the runs took 33 to 49 s, as much with the machine's
/// load as with the queue). A driver that keeps up holds the ring near empty, so its size
/// adds no delay in the steady state, and TCP senders fill it only as far as the windows the
/// stack advertised. (Linux's own receive backlog, `netdev_max_backlog`, is 1000 a CPU, but
/// the kernel runs it in softirq, not behind a user-space scheduler.)
pub const TUN_TX_QUEUE_LEN: usize = 2048;

/// The MTU of an [`OffloadTun`] unless [`TunConfig::mtu`] says otherwise: Ethernet's. The
/// kernel sees an ordinary link (MSS 1460, as towards any Ethernet peer), and segmentation
/// offload still moves up to 64 KiB a system call each way.
pub const OFFLOAD_TUN_MTU: usize = 1500;

/// The MTU of a [`PlainTun`] unless [`TunConfig::mtu`] says otherwise: the largest IPv4
/// packet. A plain TUN carries one packet a system call and has no segmentation offload, so
/// the MTU alone decides how many bytes each read and write moves; at 1500 bytes the two
/// ends' system calls and the kernel's per-packet receive path bound a connection at about
/// what smoltcp reaches on the same device. The link is inside this host and synack ends
/// every TCP connection on it, as Linux's loopback (MTU 65536) ends its own, so no path
/// beyond it is sized by this MTU. Choose 1500 to have the TUN look like an Ethernet link
/// (for example to emulate an Internet path on it with netem).
pub const PLAIN_TUN_MTU: usize = 65535;

/// The most queues a multi-queue TUN takes (Linux's `MAX_TAP_QUEUES`).
const MAX_QUEUES: usize = 256;

/// The calling thread's network namespace.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// How long creating a device waits for the kernel to finish setting up its IPv6 address
/// (`sys::wait_ipv6_usable`; a few milliseconds at most, in practice).
const IPV6_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `file` is the namespace `other` describes (the same nsfs inode).
fn same_file(file: &File, other: &std::fs::Metadata) -> io::Result<bool> {
    let m = file.metadata()?;
    Ok(m.dev() == other.dev() && m.ino() == other.ino())
}

/// [`synack_core::MIN_MTU`] and [`synack_core::IPV6_MIN_MTU`] as the kernel's MTU type.
const MIN_MTU: i32 = synack_core::MIN_MTU as i32;
const IPV6_MIN_MTU: i32 = synack_core::IPV6_MIN_MTU as i32;

/// `e` with what was being done when it happened, its kind kept: a bare "File exists" says
/// neither which interface nor which step.
fn step(e: io::Error, doing: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{doing}: {e}"))
}

/// What creating TUN `name` failed with, said so: a name taken or TUNSETIFF refused (bare
/// OS errors), or `/dev/net/tun` or an offload setting refused (`sys::open_tun` names
/// those).
fn creating_error(name: &str, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EBUSY) => io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "creating TUN {name}: an interface of that name exists already (another \
                 stack's, or one made with `ip tuntap`); give this one another TunConfig::name"
            ),
        ),
        Some(_) => step(e, &format!("creating TUN {name} (TUNSETIFF)")),
        None => step(e, &format!("creating TUN {name}")),
    }
}

/// An open TUN file registered with the tokio reactor: what both devices are made of.
struct Tun {
    fd: AsyncFd<OwnedFd>,
    name: String,
    mtu: usize,
    vnet_hdr: bool,
    /// The directed broadcast address of `host_addr`'s prefix, if it has one.
    broadcast: Option<Ipv4Addr>,
    /// Multi-queue: the network namespace the interface lives in, where more queues of it
    /// are opened. `None`: a single-queue interface.
    netns: Option<Arc<File>>,
    /// Where the file came from, which says what dropping it leaves behind.
    origin: Origin,
    /// The virtio-net header length the interface had before we set ours, where the
    /// interface is not ours and it was another: the last of a stack's queues to drop puts
    /// it back (the length is the interface's, and its other queues still read with ours
    /// until they drop).
    restore_vnet_hdr_len: Option<Arc<libc::c_int>>,
}

/// How a [`Tun`] came to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// We created the interface, and it goes with the last of our files.
    Created,
    /// An interface that was there before us ([`TunDevice::attach`]) and stays after us:
    /// its index, by which a queue opened later makes sure it joins the same one.
    Attached(i32),
    /// A file another program opened and handed us ([`TunDevice::from_fd`]): the interface
    /// may outlive it (persistent, or read through copies of the file).
    Adopted,
}

impl Tun {
    /// Creates the interface in the calling thread's network namespace (with the virtio-net
    /// header and offloads if `vnet_hdr`), gives the kernel its address and MTU, and brings
    /// the link up. Must be called within a tokio runtime, whose reactor the file is
    /// registered with.
    fn open(config: &TunConfig, vnet_hdr: bool) -> io::Result<Tun> {
        check_name(&config.name)?;
        let chosen = match config.mtu {
            0 if vnet_hdr => OFFLOAD_TUN_MTU,
            0 => PLAIN_TUN_MTU,
            chosen => chosen,
        };
        let mtu = i32::try_from(chosen)
            .ok()
            .filter(|&m| (MIN_MTU..=65535).contains(&m))
            .ok_or_else(|| {
                // The IPv4 total length field allows at most 65535; at the floor, see
                // `synack_core::MIN_MTU` (RFC 791's 68 is too little for a Linux peer's TCP).
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TUN MTU must be between 88 and 65535 (or 0 for the device's own): below 88 \
                     a Linux peer's TCP segments come in IP fragments",
                )
            })?;
        let tx_queue_len = i32::try_from(config.tx_queue_len).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "TUN tx_queue_len must be at most 2147483647 (or 0 for the kernel's own)",
            )
        })?;
        if config.host_addr.is_none() && config.host_addr6.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TUN needs an IPv4 or an IPv6 address (host_addr, host_addr6)",
            ));
        }
        // The fields are public, so a prefix may not have come through `new`.
        let bad_v4 = config
            .host_addr
            .filter(|c| Ipv4Cidr::new(c.addr, c.prefix_len).is_none());
        let bad_v6 = config
            .host_addr6
            .filter(|c| Ipv6Cidr::new(c.addr, c.prefix_len).is_none());
        if bad_v4.is_some() || bad_v6.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a TUN address's prefix is at most 32 bits (IPv4) or 128 (IPv6)",
            ));
        }
        if config.host_addr6.is_some() && mtu < IPV6_MIN_MTU {
            // RFC 8200 §5: every IPv6 link carries 1280-byte packets; Linux removes IPv6
            // from a device with a smaller MTU.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("an IPv6 TUN needs an MTU of at least {IPV6_MIN_MTU}"),
            ));
        }
        // The namespace this thread is in, which the interface is about to be created in.
        let netns = if config.multi_queue {
            Some(Arc::new(File::open(THREAD_NETNS)?))
        } else {
            None
        };
        let name = &config.name;
        let fd = sys::open_tun(name, vnet_hdr, config.multi_queue, true, |_| Ok(()))
            .map_err(|e| creating_error(name, e))?;
        sys::set_mtu(name, mtu).map_err(|e| step(e, &format!("setting TUN {name}'s MTU")))?;
        if tx_queue_len > 0 {
            sys::set_tx_queue_len(name, tx_queue_len)
                .map_err(|e| step(e, &format!("setting TUN {name}'s txqueuelen")))?;
        }
        if let Some(v4) = config.host_addr {
            sys::add_ipv4(name, v4.addr, v4.netmask())
                .map_err(|e| step(e, &format!("giving TUN {name} the address {v4}")))?;
        }
        if let Some(v6) = config.host_addr6 {
            sys::enable_ipv6(name)
                .and_then(|()| sys::add_ipv6(name, v6.addr, v6.prefix_len))
                .map_err(|e| step(e, &format!("giving TUN {name} the address {v6}")))?;
        }
        sys::link_up(name).map_err(|e| step(e, &format!("bringing TUN {name} up")))?;
        if let Some(v6) = config.host_addr6 {
            if !sys::wait_ipv6_usable(v6.addr, IPV6_SETTLE_LIMIT) {
                tracing::warn!(
                    addr = %v6.addr,
                    "the kernel's IPv6 address on TUN {name} is not usable after {IPV6_SETTLE_LIMIT:?}; \
                     packets to it may be dropped until it is"
                );
            }
        }
        tracing::debug!(
            name = %config.name,
            host_addr = ?config.host_addr,
            host_addr6 = ?config.host_addr6,
            mtu,
            vnet_hdr,
            "TUN up"
        );
        Ok(Tun {
            fd: sys::register(fd)?,
            name: config.name.clone(),
            mtu: chosen,
            vnet_hdr,
            broadcast: config.host_addr.and_then(|v4| v4.broadcast()),
            netns,
            origin: Origin::Created,
            restore_vnet_hdr_len: None,
        })
    }

    /// Attaches to the interface `config.name`, which must exist in the calling thread's
    /// network namespace, be a TUN, be persistent (`ip tuntap add`) and have no reader: see
    /// [`TunDevice::attach`]. Must be called within a tokio runtime.
    fn attach(config: &TunConfig, vnet_hdr: bool) -> io::Result<Tun> {
        let name = &config.name;
        check_name(name)?;
        // The file is registered with the reactor last: fail before touching the interface.
        tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("attaching to TUN {name}: {e}")))?;
        // TUNSETIFF on a name that is free would create an interface (given the privilege).
        let Some(ifindex) = sys::ifindex(name).map_err(|e| attaching_error(name, e, None))? else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "attaching to TUN {name}: no interface of that name in this network \
                     namespace (make it first: ip tuntap add dev {name} mode tun user <user> \
                     [multi_queue])"
                ),
            ));
        };
        // What the kernel says of it, before a file of ours joins it. Without route netlink
        // (a sandbox that filters it) a single-queue interface is still safe to try (the
        // kernel refuses a second file), and a multi-queue one is refused once joined
        // (`admit_attached`).
        let link = rtnl::link(ifindex)
            .inspect_err(|e| tracing::debug!(error = %e, "RTM_GETLINK for TUN {name}"))
            .ok();
        let tun = link.as_ref().and_then(|l| l.tun.clone());
        if link.as_ref().is_some_and(|l| !l.is_tun) || tun.as_ref().is_some_and(|t| t.tap) {
            return Err(not_a_tun(name));
        }
        if let Some(t) = &tun {
            if !t.persist {
                return Err(not_persistent(name));
            }
            if let Some(files) = t.files.filter(|&n| n > 0) {
                return Err(in_use(name, &format!("{files} file(s) of another program")));
            }
        }
        let mtu = existing_mtu(
            name,
            link.as_ref(),
            &format!("attaching to TUN {name}"),
            |e| attaching_error(name, e, None),
        )?;
        if config.mtu != 0 && config.mtu != mtu {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "attaching to TUN {name}: its MTU is {mtu}, not {}; an attached TUN \
                     keeps its own (TunConfig::mtu 0 takes it)",
                    config.mtu
                ),
            ));
        }
        let netns = File::open(THREAD_NETNS)?;
        // Once joined: still persistent, and the only file (the name may have been freed
        // and taken, or another program may have joined, since the look above).
        // And the header length it had, which we put back when we go.
        let vnet_hdr_len = std::cell::Cell::new(None);
        let admit = |fd| {
            admit_attached(name, ifindex, fd)?;
            if vnet_hdr {
                vnet_hdr_len.set(sys::vnet_hdr_len(fd).ok());
            }
            Ok(())
        };
        // The kernel attaches a file only with the interface's own multi-queue flag
        // (`tun_set_iff`, EINVAL otherwise): the one it reports, else the one asked for
        // first, then the other.
        let first = tun.as_ref().map_or(config.multi_queue, |t| t.multi_queue);
        let (fd, multi_queue) = match sys::open_tun(name, vnet_hdr, first, false, admit) {
            Ok(fd) => (fd, first),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && tun.is_none() => {
                match sys::open_tun(name, vnet_hdr, !first, false, admit) {
                    Ok(fd) => (fd, !first),
                    // Refused either way: not a TUN (a TAP, or another kind of link).
                    Err(again) if again.raw_os_error() == Some(libc::EINVAL) => {
                        return Err(not_a_tun(name))
                    }
                    Err(again) => return Err(attaching_error(name, again, tun.as_ref())),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Err(not_a_tun(name)),
            Err(e) => return Err(attaching_error(name, e, tun.as_ref())),
        };
        // A steering program a reader left behind (one killed before it could take it off)
        // would spread our flows by its hash; ours, if any, comes with the stack's shards.
        if multi_queue {
            let _ = sys::set_steering_program(fd.as_raw_fd(), -1);
        }
        let broadcast = broadcast_of(name);
        warn_if_down(name);
        if let Some(len) = link.and_then(|l| l.tx_queue_len) {
            if (len as usize) < TUN_TX_QUEUE_LEN {
                tracing::info!(
                    tun = %name,
                    "TUN {name} holds {len} packets for the stack; under load the kernel drops \
                     what does not fit (ip link set dev {name} txqueuelen {TUN_TX_QUEUE_LEN})"
                );
            }
        }
        tracing::debug!(name = %name, mtu, vnet_hdr, multi_queue, "TUN attached");
        Ok(Tun {
            fd: sys::register(fd)?,
            name: name.clone(),
            mtu,
            vnet_hdr,
            broadcast,
            netns: (multi_queue && config.multi_queue).then(|| Arc::new(netns)),
            origin: Origin::Attached(ifindex),
            restore_vnet_hdr_len: changed_vnet_hdr_len(vnet_hdr_len.get()),
        })
    }

    /// Takes TUN file `fd`, which another program opened and attached to its interface:
    /// see [`TunDevice::from_fd`]. `vnet_hdr` is the framing the caller needs, `None` for
    /// whichever the file has. Must be called within a tokio runtime.
    fn adopt(fd: OwnedFd, vnet_hdr: Option<bool>) -> io::Result<Tun> {
        let raw = fd.as_raw_fd();
        tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("a TUN from a file descriptor: {e}")))?;
        let (name, flags) = sys::tun_interface(raw).map_err(|e| {
            let (kind, why) = match e.raw_os_error() {
                Some(libc::EBADFD) => (
                    io::ErrorKind::InvalidInput,
                    "a TUN file attached to no interface",
                ),
                Some(libc::ENOTTY | libc::EINVAL | libc::EBADF) => {
                    (io::ErrorKind::InvalidInput, "not a TUN file")
                }
                // A security module's EACCES, say: the kind says so.
                _ => (e.kind(), "TUNGETIFF refused"),
            };
            io::Error::new(
                kind,
                format!("a TUN from file descriptor {raw}: {why} ({e})"),
            )
        })?;
        let refuse = |why: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a TUN from file descriptor {raw} (interface {name}): {why}"),
            )
        };
        if flags & libc::IFF_TUN == 0 {
            return Err(refuse(
                "it is a TAP (Ethernet frames); synack needs a TUN (IFF_TUN: IP packets)",
            ));
        }
        if flags & libc::IFF_DETACH_QUEUE != 0 {
            return Err(refuse(
                "it is a queue detached from its interface (TUNSETQUEUE IFF_DETACH_QUEUE), \
                 which the kernel sends nothing; attach it again (IFF_ATTACH_QUEUE) first",
            ));
        }
        let pi = || {
            refuse("its packets carry the 4-byte packet information prefix; open it with IFF_NO_PI")
        };
        // TUNGETIFF sets the file's own IFF_NOFILTER in IFF_NO_PI's bit, never clears it: a
        // clear bit is the prefix for sure, a set one says nothing (route netlink, below).
        if flags & libc::IFF_NO_PI == 0 {
            return Err(pi());
        }
        let has_vnet = flags & libc::IFF_VNET_HDR != 0;
        let multi_queue = flags & libc::IFF_MULTI_QUEUE != 0;
        match vnet_hdr {
            Some(true) if !has_vnet => {
                return Err(refuse(
                    "it was opened without IFF_VNET_HDR, which the offloading device needs \
                     (PlainTun takes it)",
                ))
            }
            Some(false) if has_vnet => {
                return Err(refuse(
                    "it was opened with IFF_VNET_HDR, which the plain device cannot read \
                     (OffloadTun takes it)",
                ))
            }
            _ => {}
        }
        // The interface is read by name from here on, in the calling thread's namespace,
        // where that name must be the file's interface and not another.
        let elsewhere = |why: &str| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "a TUN from file descriptor {raw}: its interface, {name}, is not in this \
                     network namespace ({why}); run the stack in the namespace of the \
                     interface"
                ),
            )
        };
        let Some(ifindex) =
            sys::ifindex(&name).map_err(|e| step(e, &format!("looking up TUN {name}")))?
        else {
            return Err(elsewhere("no interface of that name"));
        };
        // What the kernel says of it (route netlink, as for `attach`): what TUNGETIFF
        // cannot say (the prefix; the other files of a multi-queue interface), and the
        // interface-wide flags, which must be the file's. Without route netlink (a sandbox
        // that filters it, a kernel before 4.15) the file is taken to be in raw-IP mode, as
        // VPN services make theirs.
        let link = rtnl::link(ifindex)
            .inspect_err(|e| tracing::debug!(error = %e, "RTM_GETLINK for TUN {name}"))
            .ok();
        if link.as_ref().is_some_and(|l| !l.is_tun) {
            return Err(elsewhere("one of that name is not a TUN"));
        }
        if let Some(t) = link.as_ref().and_then(|l| l.tun.as_ref()) {
            let persist = flags & libc::IFF_PERSIST != 0;
            if t.tap
                || t.multi_queue != multi_queue
                || t.persist != persist
                || t.vnet_hdr != has_vnet
                || (multi_queue && t.queues == Some(0))
            {
                return Err(elsewhere("one of that name is another TUN"));
            }
            if t.pi {
                return Err(pi());
            }
            // The kernel spreads the flows over every enabled queue, and the header length
            // and offloads set below are the whole interface's.
            if let Some(others) = t.queues.filter(|&n| n > 1).map(|n| n - 1) {
                return Err(in_use(&name, &format!("{others} other enabled queue(s)")));
            }
        }
        let mtu = existing_mtu(
            &name,
            link.as_ref(),
            &format!("a TUN from file descriptor {raw} (interface {name})"),
            |e| step(e, &format!("reading TUN {name}'s MTU")),
        )?;
        let about = |what: &str| format!("TUN {name} from file descriptor {raw}: {what}");
        sys::set_nonblocking_cloexec(raw).map_err(|e| step(e, &about("O_NONBLOCK")))?;
        // The header length we change is put back when the device drops (`Drop`), as are
        // the offloads: from here on, a failure drops the `Tun`.
        let vnet_hdr_len = if has_vnet {
            Some(sys::vnet_hdr_len(raw).map_err(|e| step(e, &about("TUNGETVNETHDRSZ")))?)
        } else {
            None
        };
        let tun = Tun {
            fd: sys::register(fd).map_err(|e| step(e, &about("registering with tokio")))?,
            broadcast: broadcast_of(&name),
            mtu,
            vnet_hdr: has_vnet,
            // One file, one queue.
            netns: None,
            origin: Origin::Adopted,
            restore_vnet_hdr_len: changed_vnet_hdr_len(vnet_hdr_len),
            name: name.clone(),
        };
        if has_vnet {
            sys::offload(raw).map_err(|e| step(e, &about("offloads")))?;
        } else if let Err(e) = sys::set_offloads(raw, 0) {
            // Offloads a reader of the interface left on would hand this one TSO
            // super-packets; a fresh interface has none, and a sandbox may refuse the call.
            tracing::debug!(tun = %tun.name, error = %e, "TUNSETOFFLOAD (none) refused");
        }
        warn_if_down(&tun.name);
        tracing::debug!(name = %tun.name, mtu, vnet_hdr = has_vnet, "TUN adopted");
        Ok(tun)
    }

    /// See [`Device::max_queues`].
    fn max_queues(&self) -> usize {
        if self.netns.is_some() {
            MAX_QUEUES
        } else {
            1
        }
    }

    /// Gives the interface the steering program for `steering` (see `steering.rs`). The
    /// program's descriptor is closed at once: the interface keeps the program while it
    /// lives.
    fn steer_flows(&self, steering: &FlowSteering) -> io::Result<()> {
        if self.netns.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the TUN has a single queue",
            ));
        }
        let insns: Vec<[u8; 8]> = steering::program(steering)
            .into_iter()
            .map(steering::Insn::encode)
            .collect();
        let prog = sys::load_socket_filter(&insns, "synack_steer")?;
        sys::set_steering_program(self.fd.as_raw_fd(), prog.as_raw_fd())
    }

    /// Attaches one more queue to the interface: `/dev/net/tun` opened with the same name and
    /// flags in the interface's namespace (joined from a thread of its own if this one is
    /// elsewhere), registered with the current runtime's reactor.
    fn open_queue(&self) -> io::Result<Tun> {
        let Some(netns) = &self.netns else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the TUN has a single queue",
            ));
        };
        let (name, vnet_hdr, origin) = (self.name.clone(), self.vnet_hdr, self.origin);
        // An attached interface must still be the one we attached to: one made since under
        // its name is not ours to join (nor, with the privilege, to create).
        let open = move || {
            sys::open_tun(&name, vnet_hdr, true, false, |fd| match origin {
                Origin::Attached(ifindex) => same_interface(&name, ifindex, fd).map(drop),
                Origin::Created | Origin::Adopted => Ok(()),
            })
        };
        let fd = if same_file(netns, &std::fs::metadata(THREAD_NETNS)?)? {
            open()?
        } else {
            let netns = Arc::clone(netns);
            std::thread::spawn(move || {
                sys::enter_netns(netns.as_raw_fd())?;
                open()
            })
            .join()
            .map_err(|_| io::Error::other("opening a TUN queue: the thread panicked"))??
        };
        tracing::debug!(name = %self.name, vnet_hdr, "TUN queue attached");
        Ok(Tun {
            fd: sys::register(fd)?,
            name: self.name.clone(),
            mtu: self.mtu,
            vnet_hdr,
            broadcast: self.broadcast,
            netns: Some(Arc::clone(netns)),
            origin,
            restore_vnet_hdr_len: self.restore_vnet_hdr_len.clone(),
        })
    }

    /// `make` ([`Tun::open`] or [`Tun::attach`]) inside `ns`, on a thread that has joined
    /// it; the file comes back here. The interface lives in `ns` for good; reading and
    /// writing it works from any namespace.
    #[cfg(feature = "netns")]
    fn in_netns(
        ns: &NetNs,
        config: &TunConfig,
        vnet_hdr: bool,
        make: fn(&TunConfig, bool) -> io::Result<Tun>,
    ) -> io::Result<Tun> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("a TUN in a namespace: {e}")))?;
        let config = config.clone();
        ns.run_in(move || {
            let _guard = runtime.enter();
            make(&config, vnet_hdr)
        })?
    }

    /// See [`Device::check`].
    fn check(&self) -> io::Result<()> {
        sys::tun_attached(self.fd.as_raw_fd())
    }

    /// Reads one frame when the file is readable.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|fd| sys::read(fd.as_raw_fd(), buf)) {
                Ok(result) => return Poll::Ready(result),
                // Readiness was stale: `try_io` cleared it, so polling again registers the
                // waker.
                Err(_would_block) => continue,
            }
        }
    }

    /// Reads one frame when the file is readable: its virtio-net header into `hdr`, the
    /// packet straight into `buf`.
    fn poll_read_split(
        &self,
        cx: &mut Context<'_>,
        hdr: &mut [u8; vnet::VNET_HDR_LEN],
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|fd| sys::readv(fd.as_raw_fd(), hdr, buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes `parts` as one frame. A TUN's queue almost always has room: write at once, and
    /// wait for readiness only when the kernel says it is full. The direct write also works
    /// while the runtime is shutting down and its reactor is gone, which is when the driver's
    /// last RSTs leave.
    fn poll_write(&self, cx: &mut Context<'_>, parts: &[&[u8]]) -> Poll<io::Result<()>> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = sys::writev(self.fd.as_raw_fd(), parts);
        loop {
            match written {
                Ok(n) if n == len => return Poll::Ready(Ok(())),
                // A TUN write takes the whole frame or fails; a short count would be a kernel
                // bug, reported rather than silently sending half a packet.
                Ok(n) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("TUN took {n} of {len} bytes"),
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            written = match guard.try_io(|fd| sys::writev(fd.as_raw_fd(), parts)) {
                Ok(result) => result,
                Err(_would_block) => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
    }

    /// One non-blocking attempt at writing `parts`, for a last frame from `Drop`.
    fn try_write(&self, parts: &[&[u8]]) -> io::Result<()> {
        sys::writev(self.fd.as_raw_fd(), parts).map(drop)
    }
}

impl Drop for Tun {
    /// An interface we did not create may outlive us, and the kernel keeps what a reader
    /// set on it for the next: it is left without the offloads we turned on (a next reader
    /// without the virtio-net header would be handed TSO super-packets; see
    /// `sys::set_offloads`), without our steering program (which would spread its flows
    /// by our hash), and with the header length it had (a reader that set 12, the
    /// mergeable buffers' header, expects 12).
    fn drop(&mut self) {
        if self.origin != Origin::Created {
            if self.vnet_hdr {
                let _ = sys::set_offloads(self.fd.as_raw_fd(), 0);
            }
            // Only the last queue holding it gets it (`Arc::into_inner`).
            if let Some(len) = self.restore_vnet_hdr_len.take().and_then(Arc::into_inner) {
                let _ = sys::set_vnet_hdr_len(self.fd.as_raw_fd(), len);
            }
            if self.netns.is_some() {
                let _ = sys::set_steering_program(self.fd.as_raw_fd(), -1);
            }
        }
    }
}

/// What [`Tun::restore_vnet_hdr_len`] holds for an interface whose header length was `len`
/// before we set ours: nothing if it was ours already (or could not be read).
fn changed_vnet_hdr_len(len: Option<libc::c_int>) -> Option<Arc<libc::c_int>> {
    len.filter(|&len| len != vnet::VNET_HDR_LEN as libc::c_int)
        .map(Arc::new)
}

/// The MTU of interface `name`, which we did not create: route netlink's answer in `link`,
/// else SIOCGIFMTU's (whose error `read_error` says). One outside what the stack takes, 88
/// to 65535, is `InvalidInput`, its message begun with `whose`.
fn existing_mtu(
    name: &str,
    link: Option<&rtnl::Link>,
    whose: &str,
    read_error: impl FnOnce(io::Error) -> io::Error,
) -> io::Result<usize> {
    let mtu = match link.and_then(|l| l.mtu) {
        Some(mtu) => i64::from(mtu),
        None => i64::from(sys::mtu(name).map_err(read_error)?),
    };
    if !(i64::from(MIN_MTU)..=65535).contains(&mtu) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{whose}: its MTU, {mtu}, is outside 88 to 65535 (below 88 a Linux peer's TCP \
                 segments come in IP fragments): ip link set dev {name} mtu 1500"
            ),
        ));
    }
    // In range, so it fits.
    Ok(usize::try_from(mtu).unwrap_or(OFFLOAD_TUN_MTU))
}

/// The directed broadcast address of the IPv4 prefix on interface `name`, if it has one.
fn broadcast_of(name: &str) -> Option<Ipv4Addr> {
    sys::ipv4(name)
        .ok()
        .flatten()
        .and_then(|(addr, mask)| Ipv4Cidr::new(addr, u32::from(mask).leading_ones() as u8))
        .and_then(|v4| v4.broadcast())
}

/// Says so if interface `name`, which we did not create, is down.
fn warn_if_down(name: &str) {
    if sys::link_flags(name).is_ok_and(|f| f & libc::IFF_UP == 0) {
        tracing::warn!(
            tun = %name,
            "TUN {name} is down: no packet reaches the stack until it is up (ip link set dev \
             {name} up)"
        );
    }
}

/// Whether the file `fd`, just attached to TUN `name` (index `ifindex`), may stay: before
/// any setting of ours touches the interface, it must still be the persistent one
/// `Tun::attach` looked at, and have no file but this one. The name may have been freed and
/// taken since (or, given the privilege, this very file just made a new interface, which
/// goes with it), or another program may have joined a multi-queue interface. A
/// single-queue one takes no second file at all (EBUSY); a multi-queue one says how many it
/// has only over route netlink (`IFLA_TUN_NUM_QUEUES`, Linux 4.15), and where it cannot be
/// asked, the file does not stay: whether another program reads it cannot be told.
fn admit_attached(name: &str, ifindex: i32, fd: std::os::fd::RawFd) -> io::Result<()> {
    let flags = same_interface(name, ifindex, fd)?;
    if flags & libc::IFF_MULTI_QUEUE == 0 {
        return Ok(());
    }
    let cannot_tell = |kind, why: String| {
        io::Error::new(
            kind,
            format!(
                "attaching to TUN {name}: cannot tell whether another program reads this \
                 multi-queue interface: {why}"
            ),
        )
    };
    match rtnl::link(ifindex) {
        Ok(link) => match link.tun.and_then(|t| t.files) {
            Some(1) => Ok(()),
            Some(n) => Err(in_use(
                name,
                &format!("{} file(s) of another program", n.saturating_sub(1)),
            )),
            None => Err(cannot_tell(
                io::ErrorKind::Unsupported,
                "the kernel does not count its files (IFLA_TUN_NUM_QUEUES, Linux 4.15)".into(),
            )),
        },
        Err(e) => Err(cannot_tell(
            e.kind(),
            format!("route netlink (AF_NETLINK) refused RTM_GETLINK: {e}"),
        )),
    }
}

/// Whether the file `fd`, just attached by name to TUN `name`, joined the persistent
/// interface with index `ifindex`: one that is not persistent is another program's own (or
/// was just made by this file), and one of another index was made under the name since.
/// Returns the interface's flags (`TUNGETIFF`).
fn same_interface(name: &str, ifindex: i32, fd: std::os::fd::RawFd) -> io::Result<libc::c_int> {
    let flags = sys::tun_flags(fd).map_err(|e| attaching_error(name, e, None))?;
    if flags & libc::IFF_PERSIST == 0 {
        return Err(not_persistent(name));
    }
    if sys::ifindex(name).map_err(|e| attaching_error(name, e, None))? != Some(ifindex) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("attaching to TUN {name}: the interface was replaced while attaching"),
        ));
    }
    Ok(flags)
}

fn not_a_tun(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "attaching to TUN {name}: it is not a TUN interface (a TAP, or another kind of \
             link); synack needs one made with `ip tuntap add dev {name} mode tun`"
        ),
    )
}

fn not_persistent(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "attaching to TUN {name}: it is not persistent, so another program made it and \
             reads it; attach only to one made with `ip tuntap add`"
        ),
    )
}

/// The interface has readers already: the kernel's EBUSY, with what we know of them.
fn in_use(name: &str, who: &str) -> io::Error {
    let kind = io::Error::from_raw_os_error(libc::EBUSY).kind();
    io::Error::new(
        kind,
        format!(
            "attaching to TUN {name}: another program reads it ({who}); attach only to one \
             that nothing else reads"
        ),
    )
}

/// Checks that `name` fits an interface name (IFNAMSIZ with its NUL).
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TUN name {name:?} must be 1 to 15 bytes"),
        ));
    }
    Ok(())
}

/// What attaching to TUN `name` failed with, said so, its kind kept: the interface not
/// this user's (EPERM, with its owner if `tun` says), a single-queue one in use (EBUSY), or
/// the step that failed.
fn attaching_error(name: &str, e: io::Error, tun: Option<&rtnl::TunLink>) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) => {
            let whose = match tun.map(|t| (t.owner, t.group)) {
                Some((Some(uid), _)) => format!("it belongs to uid {uid}"),
                Some((None, Some(gid))) => format!("it belongs to gid {gid}"),
                _ => "it belongs to another user or group".to_owned(),
            };
            io::Error::new(
                e.kind(),
                format!(
                    "attaching to TUN {name}: {whose}; make it with `ip tuntap add dev {name} \
                     mode tun user <user>` for the user that runs the stack, or run with \
                     CAP_NET_ADMIN ({e})"
                ),
            )
        }
        Some(libc::EACCES) => io::Error::new(
            e.kind(),
            format!(
                "attaching to TUN {name}: this user may not attach to it (a security module \
                 refused, or it belongs to another user or group) ({e})"
            ),
        ),
        Some(libc::EBUSY) => in_use(name, "a single-queue TUN takes one file"),
        _ => io::Error::new(e.kind(), format!("attaching to TUN {name}: {e}")),
    }
}

/// The TUN device users get by default: an [`OffloadTun`] whenever the kernel supports it,
/// else a [`PlainTun`], after a one-line warning saying why.
///
/// A device made with [`create`](Self::create) exists while this value (its file
/// descriptor) lives; dropping it deletes the interface. One that [`attach`](Self::attach)ed
/// to an interface made beforehand leaves it as it found it, as does one made
/// [`from_fd`](Self::from_fd) a file another program opened (whose interface goes when its
/// last file closes, unless it is persistent).
#[derive(Debug)]
pub struct TunDevice {
    inner: Inner,
}

/// One per stack, so the variants' sizes do not matter; boxing the larger would put a
/// pointer hop on every packet's path.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Inner {
    Offload(OffloadTun),
    Plain(PlainTun),
}

impl TunDevice {
    /// Creates the TUN device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up: with the kernel's offloads if
    /// [`TunConfig::offload`] asks for them and the kernel has them.
    ///
    /// An interface of that name must not exist already (another stack's, or one made with
    /// `ip tuntap`): that is `AlreadyExists`, rather than a device that would take a share
    /// of the other's packets. Errors name the interface and the step that failed.
    ///
    /// Must be called within a tokio runtime (the file descriptor is registered with its
    /// reactor). To create it inside a test namespace, use `create_in` (the `netns` feature).
    pub fn create(config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(config, OffloadTun::create, PlainTun::create)
    }

    /// Creates the TUN device inside `ns` (on a thread that has joined it) and returns it here.
    ///
    /// The device lives in `ns` for good; reading and writing it works from any namespace. Must
    /// be called within a tokio runtime, whose reactor the device is registered with.
    #[cfg(feature = "netns")]
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(
            config,
            |c| OffloadTun::create_in(ns, c),
            |c| PlainTun::create_in(ns, c),
        )
    }

    /// Attaches to a TUN interface that exists already, rather than creating one: the
    /// offloading device if [`TunConfig::offload`] asks for it and the kernel has it, else
    /// the plain one, as [`create`](Self::create) chooses.
    ///
    /// This is how a stack runs without privileges. An administrator makes the interface
    /// persistent and gives it to the user that runs the stack, with its addresses, routes
    /// and link state, once:
    ///
    /// ```text
    /// ip tuntap add dev tun0 mode tun user alice multi_queue
    /// ip addr add 198.18.0.1/24 dev tun0
    /// ip link set dev tun0 up
    /// ```
    ///
    /// The stack then needs no capability: attaching, the offloads, more queues and the
    /// device's own reads and writes are all allowed to the interface's owner (the kernel's
    /// `tun_not_capable`), given that the user may open `/dev/net/tun` (most distributions
    /// make it 0666). An interface made with neither `user` nor `group` is anyone's who
    /// may open that file. Only [`Stack::flows_steered`](crate::Stack::flows_steered) may be
    /// off, where the kernel lets no unprivileged program load the steering program; the
    /// shards then hand each other the packets of their flows.
    ///
    /// Of `config`, only [`name`](TunConfig::name), [`offload`](TunConfig::offload) and
    /// [`multi_queue`](TunConfig::multi_queue) apply: the interface keeps the addresses,
    /// MTU ([`mtu`](TunConfig::mtu) must be 0 or the interface's own) and queue length the
    /// administrator gave it (its MTU read once, as it is now: change it with the stack
    /// stopped). On a multi-queue interface (`ip tuntap add ... multi_queue`) a stack opens
    /// a queue for each of its workers, as on a TUN it creates, unless `multi_queue` is
    /// `false`; a single-queue one runs a single worker. [`TUN_TX_QUEUE_LEN`] is the queue
    /// length we recommend (`ip link set dev tun0 txqueuelen 2048`).
    ///
    /// It takes only an interface that is there for it, and creates none. Before a file
    /// joins it, the kernel is asked about it (route netlink, `RTM_GETLINK`, as `ip -d link`
    /// asks), and once joined asked again, before any setting of ours touches it. Errors,
    /// each naming the interface: `NotFound` if there is none of that name in the calling
    /// thread's network namespace; `InvalidInput` if it is not a TUN (a TAP, a veth) or its
    /// MTU is out of range; `PermissionDenied` if it belongs to another user or group (its
    /// owner named), or `/dev/net/tun` may not be opened; `AlreadyExists` if it is not
    /// persistent, that is another program made it and reads it; the kernel's EBUSY if
    /// another program reads it (its flows would be split between the two, and our
    /// settings would be its). A multi-queue interface says how many files read it only
    /// over route netlink (Linux 4.15): where the process may not use `AF_NETLINK`, one is
    /// refused, since whether it is free cannot be told.
    ///
    /// The interface outlives the device, which leaves it without the offloads and the
    /// steering program it gave it, and with the virtio-net header length it had: the
    /// kernel keeps all three for the interface's next reader.
    pub fn attach(config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(config, OffloadTun::attach, PlainTun::attach)
    }

    /// [`attach`](Self::attach) inside `ns`, on a thread that has joined it; the device
    /// comes back here.
    #[cfg(feature = "netns")]
    pub fn attach_in(ns: &NetNs, config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(
            config,
            |c| OffloadTun::attach_in(ns, c),
            |c| PlainTun::attach_in(ns, c),
        )
    }

    /// Takes a TUN file that another program opened and attached to its interface: a
    /// privileged helper that made the interface and handed the file over (inherited, or
    /// sent over a Unix socket), a service manager, or a platform's VPN service (Android's
    /// `VpnService.Builder.establish()` gives a descriptor of this kind). The process that
    /// runs the stack then needs no privilege at all, not even access to `/dev/net/tun`.
    ///
    /// The file decides the device: opened with `IFF_VNET_HDR`, it is the offloading
    /// device, which sets the interface's virtio-net header to its 10 bytes and turns on
    /// the checksum and TSO offloads (calls the file itself may make); without, the plain
    /// one, which turns the offloads off where the kernel lets it (another reader may have
    /// left them on). It must be a TUN (`IFF_TUN`) in raw-IP mode (`IFF_NO_PI`), attached
    /// to an interface of the calling thread's network namespace, where its name, MTU (88
    /// to 65535) and IPv4 broadcast address are read, once. Nothing else is set on the
    /// interface: its addresses, routes and link state are the giver's. The file becomes
    /// non-blocking and close-on-exec (flags its copies in the giver share).
    ///
    /// One file is one queue, and its stack runs one worker. The kernel spreads a
    /// multi-queue interface's flows over its enabled queues, so a file is refused while
    /// the interface has another, and one detached from it (`TUNSETQUEUE`), which gets
    /// nothing. Dropping the device closes the file, after turning the offloads off and
    /// putting back the header length it changed: the interface outlives it if it is
    /// persistent or another copy of the file is open.
    ///
    /// Errors: `InvalidInput` if the file is not a TUN, is attached to no interface, is a
    /// TAP, a detached queue, carries the packet information prefix, or its interface's
    /// MTU is out of range; the kernel's EBUSY if the interface has another enabled queue;
    /// `NotFound` if the interface is not in the calling thread's network namespace (none
    /// of its name, or one whose flags are not the file's). The file is closed on every
    /// error. Part of this only route netlink can tell (`RTM_GETLINK`, as `ip -d link`
    /// asks, Linux 4.15): where the process may not use it, a file whose `TUNGETIFF` leaves
    /// the prefix in doubt (it reports its own `IFF_NOFILTER` in the `IFF_NO_PI` bit) is
    /// taken to be in raw-IP mode, as VPN services make theirs, and the other queues go
    /// uncounted. Must be called within a tokio runtime.
    pub fn from_fd(fd: OwnedFd) -> io::Result<TunDevice> {
        let tun = Tun::adopt(fd, None)?;
        Ok(TunDevice {
            inner: if tun.vnet_hdr {
                Inner::Offload(OffloadTun::new(tun))
            } else {
                Inner::Plain(PlainTun { tun })
            },
        })
    }

    /// The offloading device if asked for and it opens, else the plain one. Any failure of
    /// the former falls back: a kernel without `IFF_VNET_HDR` or TSO for TUN refuses it with
    /// `EINVAL`; anything that is not about offloads (a bad name, no permission) fails the
    /// plain device too, and its error is the one returned, with no word of offloads (the
    /// one-line warning is logged only once the plain device stands).
    fn choose(
        config: &TunConfig,
        offload: impl FnOnce(&TunConfig) -> io::Result<OffloadTun>,
        plain: impl FnOnce(&TunConfig) -> io::Result<PlainTun>,
    ) -> io::Result<TunDevice> {
        if config.offload {
            match offload(config) {
                Ok(device) => {
                    return Ok(TunDevice {
                        inner: Inner::Offload(device),
                    })
                }
                // A taken name or a missing privilege fails the plain TUN alike: say so, not
                // that offloads are missing.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AlreadyExists | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    return Err(e)
                }
                // The warning waits for the plain device: an error that fails it too (a
                // name or address the kernel refuses, an MTU out of range) is the
                // configuration's, and is returned alone, not blamed on offloads.
                Err(e) => {
                    let device = plain(config)?;
                    tracing::warn!(
                        tun = %config.name,
                        "TUN offloads unavailable ({e}): using the plain TUN, one system call per packet"
                    );
                    return Ok(TunDevice {
                        inner: Inner::Plain(device),
                    });
                }
            }
        }
        plain(config).map(|device| TunDevice {
            inner: Inner::Plain(device),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        match &self.inner {
            Inner::Offload(d) => d.name(),
            Inner::Plain(d) => d.name(),
        }
    }

    /// Whether this is the offloading device.
    pub fn is_offloaded(&self) -> bool {
        matches!(self.inner, Inner::Offload(_))
    }

    /// The offloading device's counters, if it is that one.
    pub fn offload_counters(&self) -> Option<OffloadCounters> {
        match &self.inner {
            Inner::Offload(d) => Some(d.counters()),
            Inner::Plain(_) => None,
        }
    }
}

impl Device for TunDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        match &self.inner {
            Inner::Offload(d) => d.capabilities(),
            Inner::Plain(d) => d.capabilities(),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_recv(cx, buf),
            Inner::Plain(d) => d.poll_recv(cx, buf),
        }
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_send(cx, packet, transmit),
            Inner::Plain(d) => d.poll_send(cx, packet, transmit),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_flush(cx),
            Inner::Plain(d) => d.poll_flush(cx),
        }
    }

    fn check(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Offload(d) => d.check(),
            Inner::Plain(d) => d.check(),
        }
    }

    fn max_queues(&self) -> usize {
        match &self.inner {
            Inner::Offload(d) => d.max_queues(),
            Inner::Plain(d) => d.max_queues(),
        }
    }

    fn broadcast_addresses(&self) -> Vec<Ipv4Addr> {
        match &self.inner {
            Inner::Offload(d) => d.broadcast_addresses(),
            Inner::Plain(d) => d.broadcast_addresses(),
        }
    }

    fn interface_name(&self) -> Option<String> {
        Some(self.name().to_owned())
    }

    fn open_queue(&mut self) -> io::Result<TunDevice> {
        let inner = match &mut self.inner {
            Inner::Offload(d) => Inner::Offload(d.open_queue()?),
            Inner::Plain(d) => Inner::Plain(d.open_queue()?),
        };
        Ok(TunDevice { inner })
    }

    fn steer_flows(&mut self, steering: &FlowSteering) -> io::Result<()> {
        match &mut self.inner {
            Inner::Offload(d) => d.steer_flows(steering),
            Inner::Plain(d) => d.steer_flows(steering),
        }
    }
}

/// A TUN device carrying raw IP packets between the kernel and the stack, one system call per
/// packet: what [`TunDevice`] falls back to where the kernel has no TUN offloads, or when
/// told not to use them; see [`OffloadTun`] for the one that moves 64 KiB at a time.
///
/// A created device exists while this value (its file descriptor) lives; dropping it deletes
/// the interface (an attached one stays: [`TunDevice::attach`]; for one from a file, see
/// [`TunDevice::from_fd`]).
pub struct PlainTun {
    tun: Tun,
}

impl fmt::Debug for PlainTun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainTun")
            .field("name", &self.tun.name)
            .field("mtu", &self.tun.mtu)
            .finish_non_exhaustive()
    }
}

impl PlainTun {
    /// Creates the TUN device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up.
    ///
    /// Must be called within a tokio runtime (the file descriptor is registered with its
    /// reactor). To create it inside a test namespace, use `create_in` (the `netns` feature).
    pub fn create(config: &TunConfig) -> io::Result<PlainTun> {
        Tun::open(config, false).map(|tun| PlainTun { tun })
    }

    /// Creates the TUN device inside `ns` (on a thread that has joined it) and returns it here.
    ///
    /// The device lives in `ns` for good; reading and writing it works from any namespace. Must
    /// be called within a tokio runtime, whose reactor the device is registered with.
    #[cfg(feature = "netns")]
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<PlainTun> {
        Tun::in_netns(ns, config, false, Tun::open).map(|tun| PlainTun { tun })
    }

    /// Attaches to a TUN interface that exists already; see [`TunDevice::attach`].
    pub fn attach(config: &TunConfig) -> io::Result<PlainTun> {
        Tun::attach(config, false).map(|tun| PlainTun { tun })
    }

    /// [`attach`](Self::attach) inside `ns`, on a thread that has joined it.
    #[cfg(feature = "netns")]
    pub fn attach_in(ns: &NetNs, config: &TunConfig) -> io::Result<PlainTun> {
        Tun::in_netns(ns, config, false, Tun::attach).map(|tun| PlainTun { tun })
    }

    /// Takes a TUN file another program opened without `IFF_VNET_HDR` (`InvalidInput` if
    /// it has it); see [`TunDevice::from_fd`].
    pub fn from_fd(fd: OwnedFd) -> io::Result<PlainTun> {
        Tun::adopt(fd, Some(false)).map(|tun| PlainTun { tun })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.tun.name
    }
}

impl Device for PlainTun {
    /// No offloads: the kernel hands over and takes only whole, fully summed packets.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new(self.tun.mtu)
    }

    fn check(&mut self) -> io::Result<()> {
        self.tun.check()
    }

    fn max_queues(&self) -> usize {
        self.tun.max_queues()
    }

    /// The broadcast address of [`TunConfig::host_addr`]'s prefix.
    fn broadcast_addresses(&self) -> Vec<Ipv4Addr> {
        self.tun.broadcast.into_iter().collect()
    }

    fn interface_name(&self) -> Option<String> {
        Some(self.tun.name.clone())
    }

    /// One more queue of the interface (see [`TunConfig::multi_queue`]).
    fn open_queue(&mut self) -> io::Result<PlainTun> {
        Ok(PlainTun {
            tun: self.tun.open_queue()?,
        })
    }

    fn steer_flows(&mut self, steering: &FlowSteering) -> io::Result<()> {
        self.tun.steer_flows(steering)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        self.tun.poll_read(cx, buf).map_ok(RecvMeta::new)
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = super::plain_packet(transmit) {
            return Poll::Ready(Err(e));
        }
        self.tun.poll_write(cx, &[packet])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_prints() {
        let c: Ipv4Cidr = "198.18.0.1/24".parse().unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.to_string(), "198.18.0.1/24");
        assert!(c.contains(Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!c.contains(Ipv4Addr::new(198, 18, 1, 2)));
    }

    #[test]
    fn cidr_edges() {
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        let host: Ipv4Cidr = "198.18.0.1/32".parse().unwrap();
        assert_eq!(host.netmask(), Ipv4Addr::BROADCAST);
        for bad in [
            "198.18.0.1",
            "198.18.0.1/33",
            "198.18.0/24",
            "x/24",
            "1.2.3.4/-1",
            "",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    /// A prefix too long, built by hand past `new` (the fields are public), is a host
    /// route's, not a wrapped shift's (a /0 in release: every address routed in); a TUN
    /// refuses it before it is made.
    #[tokio::test]
    async fn a_hand_built_prefix_too_long_is_refused() {
        let v4 = Ipv4Cidr {
            addr: Ipv4Addr::new(198, 18, 0, 1),
            prefix_len: 33,
        };
        assert_eq!(v4.netmask(), Ipv4Addr::BROADCAST);
        assert!(!v4.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let v6 = Ipv6Cidr {
            addr: "2001:2::1".parse().unwrap(),
            prefix_len: 200,
        };
        assert!(v6.contains("2001:2::1".parse().unwrap()));
        assert!(!v6.contains("2001:2::2".parse().unwrap()));
        for config in [
            TunConfig {
                host_addr: Some(v4),
                ..TunConfig::default()
            },
            TunConfig {
                host_addr6: Some(v6),
                ..TunConfig::default()
            },
        ] {
            let e = Tun::open(&config, false).err().expect("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        }
    }

    #[test]
    fn default_config_is_the_documented_one() {
        let c = TunConfig::default();
        assert_eq!(c.name, "synack0");
        assert_eq!(c.host_addr.unwrap().to_string(), "198.18.0.1/24");
        assert_eq!(c.host_addr6, None);
        assert_eq!(c.mtu, 0);
        assert!(c.offload);
        assert!(c.multi_queue);
    }

    #[test]
    fn ipv6_cidr_parses_and_prints() {
        let c: Ipv6Cidr = "2001:2::1/64".parse().unwrap();
        assert_eq!(c.addr, "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(c.prefix_len, 64);
        assert_eq!(c.to_string(), "2001:2::1/64");
        assert!(c.contains("2001:2::2".parse().unwrap()));
        assert!(c.contains("2001:2::ffff:1:2:3".parse().unwrap()));
        assert!(!c.contains("2001:2:0:1::2".parse().unwrap()));
        let all: Ipv6Cidr = "::/0".parse().unwrap();
        assert!(all.contains("fe80::1".parse().unwrap()));
        let host: Ipv6Cidr = "2001:2::1/128".parse().unwrap();
        assert!(host.contains("2001:2::1".parse().unwrap()));
        assert!(!host.contains("2001:2::2".parse().unwrap()));
        for bad in [
            "2001:2::1",
            "2001:2::1/129",
            "198.18.0.1/24",
            "2001:2::g/64",
            "2001:2::1/-1",
            "/64",
            "",
        ] {
            let err = bad.parse::<Ipv6Cidr>().unwrap_err();
            assert!(err.to_string().contains("IPv6"), "{bad}: {err}");
        }
        // And the other way round: an IPv6 CIDR is no IPv4 one.
        let err = "2001:2::1/64".parse::<Ipv4Cidr>().unwrap_err();
        assert!(err.to_string().contains("IPv4"), "{err}");
    }

    /// A device with no address at all, or an IPv6 one on a link too small for IPv6, is
    /// refused before anything is created.
    #[tokio::test]
    async fn configs_that_cannot_work_are_refused() {
        let none = TunConfig {
            host_addr: None,
            ..TunConfig::default()
        };
        let err = Tun::open(&none, false).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("address"), "{err}");
        let small = TunConfig {
            host_addr6: Some("2001:2::1/64".parse().unwrap()),
            mtu: 1279,
            ..TunConfig::default()
        };
        let err = Tun::open(&small, false).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("1280"), "{err}");
        for mtu in [68, 87, 65536] {
            let bad = TunConfig {
                mtu,
                ..TunConfig::default()
            };
            let err = Tun::open(&bad, false).err().expect("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("88 and 65535"), "{mtu}: {err}");
        }
    }

    /// A device with an IPv6 address is handed over only once the kernel can receive on
    /// that address: its local route is in place the moment the device is (before, the
    /// route came later, from an asynchronous work item, and about one first SYN in thirty
    /// written at once was dropped as not for a local address). Checked on the thread that
    /// created the device, at once, as a program that starts its stack and connects would.
    #[cfg(feature = "netns")]
    #[test]
    fn an_ipv6_device_is_ready_when_created() {
        if !crate::netns::require_tun("an_ipv6_device_is_ready_when_created") {
            return;
        }
        let ns = NetNs::new("synack-v6ready").unwrap();
        let missing = ns
            .run_in(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _entered = rt.enter();
                let mut missing = Vec::new();
                for i in 0..60 {
                    let config = TunConfig {
                        name: format!("sk-v6ready{i}"),
                        host_addr6: Some("2001:2::1/64".parse().unwrap()),
                        ..TunConfig::default()
                    };
                    let tun = Tun::open(&config, i % 2 == 0).unwrap();
                    let routes =
                        std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap();
                    if !routes
                        .lines()
                        .any(|l| l.starts_with("20010002000000000000000000000001 80 "))
                    {
                        missing.push(i);
                    }
                    drop(tun);
                }
                missing
            })
            .unwrap();
        assert!(
            missing.is_empty(),
            "no local route for 2001:2::1 yet: {missing:?}"
        );
    }

    /// A failed creation says which step failed: the fallback's warning on a kernel without
    /// TUN offloads names TUNSETOFFLOAD, not the creation of the interface.
    #[test]
    fn creation_errors_name_the_call_that_failed() {
        let busy = creating_error("sk0", io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(busy.kind(), io::ErrorKind::AlreadyExists);
        let setiff = creating_error("sk0", io::Error::from_raw_os_error(libc::EPERM));
        assert!(setiff.to_string().contains("TUNSETIFF"), "{setiff}");
        let offload = sys::refused(
            io::Error::from_raw_os_error(libc::EINVAL),
            "TUNSETOFFLOAD (checksum, TSO4, TSO6)",
        );
        let offload = creating_error("sk0", offload).to_string();
        assert!(
            offload.contains("TUNSETOFFLOAD") && !offload.contains("TUNSETIFF"),
            "{offload}"
        );
        assert!(offload.contains("os error 22"), "{offload}");
    }

    /// Where the offloading device cannot be had, the default device falls back to the plain
    /// one rather than failing; with `offload` false it does not even try.
    #[cfg(feature = "netns")]
    #[tokio::test]
    async fn the_default_device_falls_back_to_the_plain_tun() {
        if !crate::netns::require_tun("the_default_device_falls_back_to_the_plain_tun") {
            return;
        }
        // What the stack logs, to count its warnings.
        #[derive(Clone, Default)]
        struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl io::Write for Log {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let warnings = || {
            let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
            text.matches("offloads unavailable").count()
        };
        let ns = NetNs::new("synack-fallback").unwrap();
        // Each device gets a name of its own: a dropped TUN can outlive its file for a moment
        // (a child forked by a parallel test holds it until it execs), and a second device
        // of the same name would then find it busy.
        let config = TunConfig {
            name: "sk-fallback0".into(),
            ..TunConfig::default()
        };
        let refused = || io::Error::from_raw_os_error(libc::EINVAL);
        let tun = TunDevice::choose(&config, |_| Err(refused()), |c| PlainTun::create_in(&ns, c))
            .unwrap();
        assert!(!tun.is_offloaded());
        assert_eq!(warnings(), 1, "one line says why");
        // The plain device's own MTU, not the offloading one's.
        assert_eq!(tun.capabilities(), DeviceCapabilities::new(PLAIN_TUN_MTU));
        drop(tun);

        let off = TunConfig {
            name: "sk-fallback1".into(),
            offload: false,
            ..TunConfig::default()
        };
        let tried = std::cell::Cell::new(false);
        let tun = TunDevice::choose(
            &off,
            |_| {
                tried.set(true);
                Err(refused())
            },
            |c| PlainTun::create_in(&ns, c),
        )
        .unwrap();
        assert!(!tried.get() && !tun.is_offloaded());
        drop(tun);

        // Nothing about offloads (here: a name too long for any TUN, or one the kernel
        // refuses) fails both, and the plain device's error is the one reported, with no
        // word of offloads.
        for name in ["a-name-far-too-long-for-linux", "a b"] {
            let bad = TunConfig {
                name: name.into(),
                ..TunConfig::default()
            };
            let err = TunDevice::create_in(&ns, &bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}: {err}");
        }
        assert_eq!(warnings(), 1, "a configuration's error blamed on offloads");
    }
}
