//! [`Tun`]: one open TUN file and its interface, the part [`PlainTun`](super::PlainTun) and
//! [`OffloadTun`](super::OffloadTun) share: creating the interface (`open`), its queues, reads
//! and writes, and what is undone when it goes. Attaching to an interface that exists, or
//! taking a file another program opened, is in `attach.rs`.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;

use super::config::{Ipv4Cidr, Ipv6Cidr, TunConfig, OFFLOAD_TUN_MTU, PLAIN_TUN_MTU};
use super::{rtnl, steering, sys, vnet};
#[cfg(feature = "netns")]
use crate::netns::NetNs;
use crate::shard::FlowSteering;

/// The most queues a multi-queue TUN takes (Linux's `MAX_TAP_QUEUES`).
pub(super) const MAX_QUEUES: usize = 256;

/// The calling thread's network namespace.
pub(super) const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// How long creating a device waits for the kernel to finish setting up its IPv6 address
/// (`sys::wait_ipv6_usable`; a few milliseconds at most, in practice).
pub(super) const IPV6_SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `file` is the namespace `other` describes (the same nsfs inode).
pub(super) fn same_file(file: &File, other: &std::fs::Metadata) -> io::Result<bool> {
    let m = file.metadata()?;
    Ok(m.dev() == other.dev() && m.ino() == other.ino())
}

/// [`synack_core::MIN_MTU`] and [`synack_core::IPV6_MIN_MTU`] as the kernel's MTU type.
pub(super) const MIN_MTU: i32 = synack_core::MIN_MTU as i32;
pub(super) const IPV6_MIN_MTU: i32 = synack_core::IPV6_MIN_MTU as i32;

/// `e` with what was being done when it happened, its kind kept: a bare "File exists" says
/// neither which interface nor which step.
pub(super) fn step(e: io::Error, doing: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{doing}: {e}"))
}

/// What creating TUN `name` failed with, said so: a name taken or TUNSETIFF refused (bare
/// OS errors), or `/dev/net/tun` or an offload setting refused (`sys::open_tun` names
/// those).
pub(super) fn creating_error(name: &str, e: io::Error) -> io::Error {
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
pub(super) struct Tun {
    pub(super) fd: AsyncFd<OwnedFd>,
    pub(super) name: String,
    pub(super) mtu: usize,
    pub(super) vnet_hdr: bool,
    /// The directed broadcast address of `host_addr`'s prefix, if it has one.
    pub(super) broadcast: Option<Ipv4Addr>,
    /// Multi-queue: the network namespace the interface lives in, where more queues of it
    /// are opened. `None`: a single-queue interface.
    pub(super) netns: Option<Arc<File>>,
    /// Where the file came from, which says what dropping it leaves behind.
    pub(super) origin: Origin,
    /// The virtio-net header length the interface had before we set ours, where the
    /// interface is not ours and it was another: the last of a stack's queues to drop puts
    /// it back (the length is the interface's, and its other queues still read with ours
    /// until they drop).
    pub(super) restore_vnet_hdr_len: Option<Arc<libc::c_int>>,
    /// A datagram socket made where the interface is, for reading its MTU while the stack
    /// runs (`link_mtu`): a socket stays in the namespace it was made in, and the driver's
    /// thread may be in another. `None` if none could be made; the MTU is then not
    /// followed.
    pub(super) ctl: Option<Arc<OwnedFd>>,
}

/// How a [`Tun`] came to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
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
    pub(super) fn open(config: &TunConfig, vnet_hdr: bool) -> io::Result<Tun> {
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
            ctl: control_socket(),
        })
    }

    /// See [`Device::max_queues`].
    pub(super) fn max_queues(&self) -> usize {
        if self.netns.is_some() {
            MAX_QUEUES
        } else {
            1
        }
    }

    /// Gives the interface the steering program for `steering` (see `steering.rs`). The
    /// program's descriptor is closed at once: the interface keeps the program while it
    /// lives.
    pub(super) fn steer_flows(&self, steering: &FlowSteering) -> io::Result<()> {
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
    pub(super) fn open_queue(&self) -> io::Result<Tun> {
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
            ctl: self.ctl.clone(),
        })
    }

    /// `make` ([`Tun::open`] or [`Tun::attach`]) inside `ns`, on a thread that has joined
    /// it; the file comes back here. The interface lives in `ns` for good; reading and
    /// writing it works from any namespace.
    #[cfg(feature = "netns")]
    pub(super) fn in_netns(
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
    pub(super) fn check(&self) -> io::Result<()> {
        sys::tun_attached(self.fd.as_raw_fd())
    }

    /// See [`Device::link_mtu`]: the interface's name as it is now (TUNGETIFF: it may have
    /// been renamed), then its MTU (SIOCGIFMTU) where it lives.
    pub(super) fn link_mtu(&self) -> Option<usize> {
        let ctl = self.ctl.as_deref()?;
        let (name, _) = sys::tun_interface(self.fd.as_raw_fd()).ok()?;
        let mtu = sys::mtu_on(ctl, &name)
            .inspect_err(|e| tracing::debug!(error = %e, "reading TUN {name}'s MTU"))
            .ok()?;
        usize::try_from(mtu).ok()
    }

    /// Reads one frame when the file is readable.
    pub(super) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
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
    pub(super) fn poll_read_split(
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
    pub(super) fn poll_write(&self, cx: &mut Context<'_>, parts: &[&[u8]]) -> Poll<io::Result<()>> {
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
    pub(super) fn try_write(&self, parts: &[&[u8]]) -> io::Result<()> {
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

/// [`Tun::ctl`] for an interface in the calling thread's namespace.
pub(super) fn control_socket() -> Option<Arc<OwnedFd>> {
    sys::ioctl_socket(libc::AF_INET)
        .inspect_err(|e| {
            tracing::debug!(error = %e, "no socket to read the TUN's MTU with; not following it")
        })
        .ok()
        .map(Arc::new)
}

/// What [`Tun::restore_vnet_hdr_len`] holds for an interface whose header length was `len`
/// before we set ours: nothing if it was ours already (or could not be read).
pub(super) fn changed_vnet_hdr_len(len: Option<libc::c_int>) -> Option<Arc<libc::c_int>> {
    len.filter(|&len| len != vnet::VNET_HDR_LEN as libc::c_int)
        .map(Arc::new)
}

/// The MTU of interface `name`, which we did not create: route netlink's answer in `link`,
/// else SIOCGIFMTU's (whose error `read_error` says). One outside what the stack takes, 88
/// to 65535, is `InvalidInput`, its message begun with `whose`.
pub(super) fn existing_mtu(
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
pub(super) fn broadcast_of(name: &str) -> Option<Ipv4Addr> {
    sys::ipv4(name)
        .ok()
        .flatten()
        .and_then(|(addr, mask)| Ipv4Cidr::new(addr, u32::from(mask).leading_ones() as u8))
        .and_then(|v4| v4.broadcast())
}

/// Says so if interface `name`, which we did not create, is down.
pub(super) fn warn_if_down(name: &str) {
    if sys::link_flags(name).is_ok_and(|f| f & libc::IFF_UP == 0) {
        tracing::warn!(
            tun = %name,
            "TUN {name} is down: no packet reaches the stack until it is up (ip link set dev \
             {name} up)"
        );
    }
}

/// Checks that `name` fits an interface name (IFNAMSIZ with its NUL).
pub(super) fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TUN name {name:?} must be 1 to 15 bytes"),
        ));
    }
    Ok(())
}

/// Whether the file `fd`, just attached by name to TUN `name`, joined the persistent
/// interface with index `ifindex`: one that is not persistent is another program's own (or
/// was just made by this file), and one of another index was made under the name since.
/// Returns the interface's flags (`TUNGETIFF`).
pub(super) fn same_interface(
    name: &str,
    ifindex: i32,
    fd: std::os::fd::RawFd,
) -> io::Result<libc::c_int> {
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

pub(super) fn not_persistent(name: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "attaching to TUN {name}: it is not persistent, so another program made it and \
             reads it; attach only to one made with `ip tuntap add`"
        ),
    )
}

/// The interface has readers already: the kernel's EBUSY, with what we know of them.
pub(super) fn in_use(name: &str, who: &str) -> io::Error {
    let kind = io::Error::from_raw_os_error(libc::EBUSY).kind();
    io::Error::new(
        kind,
        format!(
            "attaching to TUN {name}: another program reads it ({who}); attach only to one \
             that nothing else reads"
        ),
    )
}

/// What attaching to TUN `name` failed with, said so, its kind kept: the interface not
/// this user's (EPERM, with its owner if `tun` says), a single-queue one in use (EBUSY), or
/// the step that failed.
pub(super) fn attaching_error(name: &str, e: io::Error, tun: Option<&rtnl::TunLink>) -> io::Error {
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
