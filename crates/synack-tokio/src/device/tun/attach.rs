//! Attaching a [`Tun`] to an interface made beforehand ([`TunDevice::attach`](super::TunDevice::attach))
//! or to a file another program opened ([`TunDevice::from_fd`](super::TunDevice::from_fd)),
//! and the checks that refuse what would take another program's packets.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use super::config::{TunConfig, TUN_TX_QUEUE_LEN};
use super::file::*;
use super::{rtnl, sys};

impl Tun {
    /// Attaches to the interface `config.name`, which must exist in the calling thread's
    /// network namespace, be a TUN, be persistent (`ip tuntap add`) and have no reader: see
    /// [`TunDevice::attach`]. Must be called within a tokio runtime.
    pub(super) fn attach(config: &TunConfig, vnet_hdr: bool) -> io::Result<Tun> {
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
            ctl: control_socket(),
        })
    }

    /// Takes TUN file `fd`, which another program opened and attached to its interface:
    /// see [`TunDevice::from_fd`]. `vnet_hdr` is the framing the caller needs, `None` for
    /// whichever the file has. Must be called within a tokio runtime.
    pub(super) fn adopt(fd: OwnedFd, vnet_hdr: Option<bool>) -> io::Result<Tun> {
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
            ctl: control_socket(),
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
}

/// Whether the file `fd`, just attached to TUN `name` (index `ifindex`), may stay: before
/// any setting of ours touches the interface, it must still be the persistent one
/// `Tun::attach` looked at, and have no file but this one. The name may have been freed and
/// taken since (or, given the privilege, this very file just made a new interface, which
/// goes with it), or another program may have joined a multi-queue interface. A
/// single-queue one takes no second file at all (EBUSY); a multi-queue one says how many it
/// has only over route netlink (`IFLA_TUN_NUM_QUEUES`, Linux 4.15), and where it cannot be
/// asked, the file does not stay: whether another program reads it cannot be told.
pub(super) fn admit_attached(name: &str, ifindex: i32, fd: std::os::fd::RawFd) -> io::Result<()> {
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

pub(super) fn not_a_tun(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "attaching to TUN {name}: it is not a TUN interface (a TAP, or another kind of \
             link); synack needs one made with `ip tuntap add dev {name} mode tun`"
        ),
    )
}
