//! Every system call the TUN devices make, and the only `unsafe` code of the device layer.
//!
//! Each call sits in its own small `unsafe` block with the reason it is sound next to it; the
//! rest of `device::tun` sees only safe functions taking borrowed slices and descriptors.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use tokio::io::unix::AsyncFd;

use super::vnet::VNET_HDR_LEN;

/// Turns a -1 return into the thread's `errno`.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// An `ifreq` naming `name` (checked by the caller to fit IFNAMSIZ with its NUL).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a byte array and a union of integers, sockaddrs and
    // a pointer); all-zero bytes are a valid value of each, and the kernel reads a zeroed
    // union as "no value".
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// Opens `/dev/net/tun` (non-blocking, close-on-exec) and binds it to a new interface `name`
/// in raw-IP mode: `IFF_TUN` (IP packets, no Ethernet header) and `IFF_NO_PI` (no 4-byte
/// protocol prefix). With `vnet_hdr`, also `IFF_VNET_HDR`: a 10-byte virtio-net header in
/// front of every packet (`TUNSETVNETHDRSZ`), with checksum and TCP segmentation offload
/// turned on (`TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`), so that the kernel
/// hands us TSO super-packets and takes ours (Documentation/networking/tuntap.rst).
///
/// With `multi_queue`, also `IFF_MULTI_QUEUE`: the file is one queue of the interface, and
/// calling this again with the same name and flags (in the interface's network namespace)
/// attaches one more queue to it instead of creating an interface (tuntap.rst, "Multiqueue
/// tuntap interface"). With `create`, also `IFF_TUN_EXCL`: an interface of that name that
/// exists already is EBUSY, rather than one to attach to (another stack's, whose packets
/// this file would take a share of). Without it, and without `vnet_hdr`, the offloads are
/// turned off: an interface that exists already keeps those of its last reader.
///
/// `admit` sees the file once it is attached, before any setting touches the interface; an
/// error from it closes the file and is returned.
pub(super) fn open_tun(
    name: &str,
    vnet_hdr: bool,
    multi_queue: bool,
    create: bool,
    admit: impl FnOnce(RawFd) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(|e| {
            let hint = match e.kind() {
                io::ErrorKind::PermissionDenied => {
                    " (the user that runs the stack must be able to read and write it; most \
                     distributions make it 0666)"
                }
                _ => "",
            };
            io::Error::new(e.kind(), format!("opening /dev/net/tun: {e}{hint}"))
        })?;
    let fd = OwnedFd::from(file);
    let raw = fd.as_raw_fd();
    let mut req = ifreq(name);
    let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
    if vnet_hdr {
        flags |= libc::IFF_VNET_HDR;
    }
    if multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    if create {
        flags |= libc::IFF_TUN_EXCL;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `req` is and which outlives the
    // call; `raw` is the open TUN control file that `fd` owns.
    check(unsafe { libc::ioctl(raw, libc::TUNSETIFF as _, &mut req) })?;
    admit(raw)?;
    if vnet_hdr {
        offload(raw)?;
    } else if !create {
        // An interface that exists already may keep the offloads of its last reader.
        set_offloads(raw, 0).map_err(|e| refused(e, "TUNSETOFFLOAD (none)"))?;
    }
    Ok(fd)
}

/// Makes TUN file `fd`, opened with `IFF_VNET_HDR`, frame every packet behind our 10-byte
/// virtio-net header (`TUNSETVNETHDRSZ`: a file may have been given 12, the mergeable
/// buffers' header) and turns on checksum and TCP segmentation offload (`TUNSETOFFLOAD`).
pub(super) fn offload(fd: RawFd) -> io::Result<()> {
    set_vnet_hdr_len(fd, VNET_HDR_LEN as libc::c_int)
        .map_err(|e| refused(e, "TUNSETVNETHDRSZ (the virtio-net header)"))?;
    set_offloads(fd, libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6)
        .map_err(|e| refused(e, "TUNSETOFFLOAD (checksum, TSO4, TSO6)"))
}

/// The length of the virtio-net header in front of every frame on the interface of TUN
/// file `fd` (`TUNGETVNETHDRSZ`; the interface's, shared by all its files).
pub(super) fn vnet_hdr_len(fd: RawFd) -> io::Result<libc::c_int> {
    let mut size: libc::c_int = 0;
    // SAFETY: TUNGETVNETHDRSZ writes one `int` through the pointer, which points at `size`
    // for the whole call.
    check(unsafe { libc::ioctl(fd, libc::TUNGETVNETHDRSZ as _, &mut size) })?;
    Ok(size)
}

/// Sets that length (`TUNSETVNETHDRSZ`; the kernel takes 10 or more).
pub(super) fn set_vnet_hdr_len(fd: RawFd, size: libc::c_int) -> io::Result<()> {
    // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer; `size` lives across the
    // call.
    check(unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &size) }).map(drop)
}

/// Sets the offloads the kernel may use on the interface of TUN file `fd` (`TUNSETOFFLOAD`):
/// `flags` of `TUN_F_*`, 0 for none. An interface that outlives its files (a persistent
/// one, `ip tuntap add`) keeps them for its next reader, which without the virtio-net
/// header would be handed TSO super-packets it cannot tell from packets.
pub(super) fn set_offloads(fd: RawFd, flags: libc::c_uint) -> io::Result<()> {
    // SAFETY: TUNSETOFFLOAD takes its flags by value, not through a pointer: no memory is
    // touched; on a file that is not a TUN the kernel refuses it with an error.
    check(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, libc::c_ulong::from(flags)) })
        .map(drop)
}

/// The flags of the interface TUN file `fd` is attached to (`TUNGETIFF`): `IFF_TUN`,
/// `IFF_MULTI_QUEUE`, `IFF_PERSIST` and the rest, as `ip -d link` shows them.
pub(super) fn tun_flags(fd: RawFd) -> io::Result<libc::c_int> {
    tun_interface(fd).map(|(_, flags)| flags)
}

/// The name and flags ([`tun_flags`]) of the interface TUN file `fd` is attached to
/// (`TUNGETIFF`). A file that is not a TUN or TAP is refused with ENOTTY, one that is
/// attached to no interface (never, or no more) with EBADFD. Of the flags, two are the
/// file's own: `IFF_DETACH_QUEUE` for a queue detached from its multi-queue interface, and
/// `IFF_NOFILTER` (the bit of `IFF_NO_PI`, set in its place) when the file has no filter.
pub(super) fn tun_interface(fd: RawFd) -> io::Result<(String, libc::c_int)> {
    let mut req = ifreq("");
    // SAFETY: TUNGETIFF writes one `ifreq`, which `req` is and which outlives the call (the
    // TUN driver and the macvtap/ipvtap ones that also answer it write no more than an
    // `ifreq`); any other file refuses it with an error, touching nothing.
    check(unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req) })?;
    // The kernel wrote a NUL-terminated name (at most IFNAMSIZ bytes with its NUL).
    let name: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    // SAFETY: TUNGETIFF filled `ifru_flags`; every bit pattern is a `short`, and the zeroed
    // union is initialised throughout.
    let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags }) & 0xffff;
    Ok((String::from_utf8_lossy(&name).into_owned(), flags))
}

/// Makes the file `fd` non-blocking (the driver reads and writes it through the reactor)
/// and close-on-exec (a child process holding a copy would keep the interface alive and
/// read its packets), as the files we open ourselves are.
pub(super) fn set_nonblocking_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take and return plain integers; no memory is touched.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    if flags & libc::O_NONBLOCK == 0 {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    }
    // SAFETY: F_GETFD and F_SETFD take and return plain integers; no memory is touched.
    let fd_flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    if fd_flags & libc::FD_CLOEXEC == 0 {
        // SAFETY: as above.
        check(unsafe { libc::fcntl(fd, libc::F_SETFD, fd_flags | libc::FD_CLOEXEC) })?;
    }
    Ok(())
}

/// An offload setting the kernel refused, named: the error of `open_tun` then says which
/// call failed (a kernel without TUN offloads refuses TUNSETOFFLOAD, not TUNSETIFF). Only
/// TUNSETIFF keeps its bare OS error, whose EBUSY and EINVAL the callers look for.
pub(super) fn refused(e: io::Error, call: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{call} refused: {e}"))
}

/// Moves the calling thread into the network namespace `ns` (an open `/proc/.../ns/net`
/// file), so that a TUN queue opened next attaches to an interface of that namespace.
pub(super) fn enter_netns(ns: RawFd) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and a flag by value; it touches no memory of ours. It
    // changes only the calling thread's namespace, which the caller owns for this purpose.
    check(unsafe { libc::setns(ns, libc::CLONE_NEWNET) }).map(drop)
}

/// Registers `fd` with the current tokio runtime's reactor.
pub(super) fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `OwnedFd` owns an open descriptor, and `as_raw_fd` returns that same one for as
    // long as the `AsyncFd` owns it; nothing else closes or replaces it.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

/// Whether the TUN file `fd` is still attached to its interface. Deleting the interface
/// (`ip link del`) detaches every file from it without waking a reader or a writer; the next
/// system call on it fails with EBADFD. TUNGETIFF asks without a side effect (a zero-length
/// write would count a drop on the interface).
pub(super) fn tun_attached(fd: RawFd) -> io::Result<()> {
    let (name, flags) = tun_interface(fd)?;
    if flags & libc::IFF_DETACH_QUEUE != 0 {
        // Detached through another copy of the file: the kernel sends it nothing.
        return Err(io::Error::new(
            io::Error::from_raw_os_error(libc::EBADFD).kind(),
            format!("the queue of TUN {name} was detached from it (TUNSETQUEUE)"),
        ));
    }
    Ok(())
}

/// A `sockaddr` holding an `AF_INET` address with port 0, as SIOCSIFADDR wants it.
fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
    let mut data = [0 as libc::c_char; 14];
    // struct sockaddr_in: family, then a 2-byte port, then the address in network order.
    for (dst, &b) in data[2..6].iter_mut().zip(&addr.octets()) {
        *dst = b as libc::c_char;
    }
    libc::sockaddr {
        sa_family: libc::AF_INET as libc::sa_family_t,
        sa_data: data,
    }
}

/// A datagram socket of `family` (in the calling thread's namespace, where it stays), for
/// the classic interface ioctls.
pub(super) fn ioctl_socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes integers only; a non-negative result is a descriptor that
    // nothing else owns, handed straight to `OwnedFd`, which closes it.
    Ok(unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            family,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?)
    })
}

/// One SIOC* interface ioctl on an `AF_INET` socket.
fn ifreq_ioctl(request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    ifreq_ioctl_on(&ioctl_socket(libc::AF_INET)?, request, req)
}

/// One SIOC* interface ioctl on `sock`, which says the namespace the name is looked up in.
fn ifreq_ioctl_on(sock: &OwnedFd, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: each SIOC* request used here reads (and the SIOCG* ones write) one `ifreq`,
    // which `req` is and which outlives the call; `sock` is an open socket.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) }).map(drop)
}

/// The index of interface `name` in the calling thread's network namespace, or `None` if
/// there is none of that name (SIOCGIFINDEX, which any user may ask).
pub(super) fn ifindex(name: &str) -> io::Result<Option<i32>> {
    let mut req = ifreq(name);
    match ifreq_ioctl(libc::SIOCGIFINDEX, &mut req) {
        // SAFETY: SIOCGIFINDEX filled `ifru_ifindex`; every bit pattern is an `int`, and the
        // zeroed union is initialised throughout.
        Ok(()) => Ok(Some(unsafe { req.ifr_ifru.ifru_ifindex })),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sends the route-netlink `request` (one message, `rtnl.rs` builds it) from a socket of
/// its own in the calling thread's network namespace, and receives the kernel's answer into
/// `reply`: its length. The kernel answers a request for one link within the `send` (the
/// request runs in the sender's context), so the answer is waited for no longer than a
/// second; one larger than `reply` is an error, not a cut message.
pub(super) fn rtnetlink(request: &[u8], reply: &mut [u8]) -> io::Result<usize> {
    // SAFETY: socket(2) takes integers only; a non-negative result is a descriptor that
    // nothing else owns, handed straight to `OwnedFd`, which closes it.
    let sock = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        ))?)
    };
    let timeout = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: SO_RCVTIMEO reads one `timeval`, which `timeout` is, of the size given; it
    // lives across the call.
    check(unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    let mut kernel: libc::sockaddr_nl =
        // SAFETY: `sockaddr_nl` is plain old data; all-zero is port 0 (the kernel) and no
        // groups.
        unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `request` is valid for reads of its length, and `kernel` is a `sockaddr_nl`
    // of the size given; both outlive the call.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if usize::try_from(sent).map_err(|_| io::Error::last_os_error())? != request.len() {
        return Err(io::Error::other("route netlink took part of the request"));
    }
    // SAFETY: the kernel writes at most `reply.len()` bytes into `reply`, which is valid and
    // exclusively borrowed for the call. MSG_TRUNC makes it return the message's whole
    // length, so that a cut one is seen.
    let n = unsafe {
        libc::recv(
            sock.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            libc::MSG_TRUNC,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    if n > reply.len() {
        return Err(io::Error::other(format!(
            "route netlink's answer has {n} bytes, more than {}",
            reply.len()
        )));
    }
    Ok(n)
}

/// The MTU of `name`.
pub(super) fn mtu(name: &str) -> io::Result<i32> {
    mtu_on(&ioctl_socket(libc::AF_INET)?, name)
}

/// The MTU of `name` in the namespace of `sock` (an [`ioctl_socket`]).
pub(super) fn mtu_on(sock: &OwnedFd, name: &str) -> io::Result<i32> {
    let mut req = ifreq(name);
    ifreq_ioctl_on(sock, libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled `ifru_mtu`; every bit pattern is an `int`, and the zeroed
    // union is initialised throughout.
    Ok(unsafe { req.ifr_ifru.ifru_mtu })
}

/// The interface flags of `name` (`IFF_UP` and the rest).
pub(super) fn link_flags(name: &str) -> io::Result<libc::c_int> {
    let mut req = ifreq(name);
    ifreq_ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`; every bit pattern is a `short`, and the
    // zeroed union is initialised throughout.
    Ok(libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags }) & 0xffff)
}

/// The primary IPv4 address of `name` and its netmask, or `None` if it has none.
pub(super) fn ipv4(name: &str) -> io::Result<Option<(Ipv4Addr, Ipv4Addr)>> {
    let get = |request| -> io::Result<Option<Ipv4Addr>> {
        let mut req = ifreq(name);
        match ifreq_ioctl(request, &mut req) {
            // SAFETY: SIOCGIFADDR and SIOCGIFNETMASK fill the union's `sockaddr` (the
            // address and the netmask share its place); all its bytes are initialised.
            Ok(()) => Ok(Some(from_sockaddr_v4(unsafe { &req.ifr_ifru.ifru_addr }))),
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(None),
            Err(e) => Err(e),
        }
    };
    Ok(
        match (get(libc::SIOCGIFADDR)?, get(libc::SIOCGIFNETMASK)?) {
            (Some(addr), Some(mask)) => Some((addr, mask)),
            _ => None,
        },
    )
}

/// The address of an `AF_INET` `sockaddr` (see `sockaddr_v4`).
fn from_sockaddr_v4(sa: &libc::sockaddr) -> Ipv4Addr {
    let b = |i: usize| sa.sa_data[i] as u8;
    Ipv4Addr::new(b(2), b(3), b(4), b(5))
}

/// Sets the MTU of `name`.
pub(super) fn set_mtu(name: &str, mtu: i32) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_mtu = mtu;
    ifreq_ioctl(libc::SIOCSIFMTU, &mut req)
}

/// Sets how many packets the kernel queues for `name`'s readers, on each of its queues
/// (`txqueuelen`: the TUN's ring of packets on their way to us is resized to it).
pub(super) fn set_tx_queue_len(name: &str, len: i32) -> io::Result<()> {
    let mut req = ifreq(name);
    // `ifr_qlen` is the union's `int` member (`ifru_ivalue`), which libc names `ifru_metric`.
    req.ifr_ifru.ifru_metric = len;
    ifreq_ioctl(libc::SIOCSIFTXQLEN, &mut req)
}

/// Gives `name` the kernel's IPv4 address and netmask (with them the connected route).
pub(super) fn add_ipv4(name: &str, addr: Ipv4Addr, mask: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
    ifreq_ioctl(libc::SIOCSIFADDR, &mut req)?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_netmask = sockaddr_v4(mask);
    ifreq_ioctl(libc::SIOCSIFNETMASK, &mut req)
}

/// Brings `name` up.
pub(super) fn link_up(name: &str) -> io::Result<()> {
    let mut req = ifreq(name);
    ifreq_ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`; every bit pattern is a `short`, and the
    // zeroed union is initialised throughout.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    ifreq_ioctl(libc::SIOCSIFFLAGS, &mut req)
}

/// Prepares `name` for the kernel's IPv6 address, through its sysctls in
/// `/proc/sys/net/ipv6/conf/NAME/` (those of the calling thread's namespace): IPv6 on
/// (`disable_ipv6` 0, which a namespace may inherit as 1), and no duplicate address
/// detection (`accept_dad` 0; RFC 4862 §5.4), so that the address is usable at once rather
/// than tentative for a second. Linux also skips DAD on any `IFF_NOARP` device, which a TUN
/// is (`addrconf_dad_begin`); the sysctl says so explicitly, should that ever change. An
/// error if the kernel has no IPv6.
pub(super) fn enable_ipv6(name: &str) -> io::Result<()> {
    let dir = std::path::Path::new("/proc/sys/net/ipv6/conf").join(name);
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("no IPv6 on {name}: {} is missing", dir.display()),
        ));
    }
    for (knob, value) in [("disable_ipv6", "0"), ("accept_dad", "0")] {
        let path = dir.join(knob);
        // Written only if it differs: where /proc/sys is read-only (some containers) a
        // device that is already right still works.
        if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
            continue;
        }
        std::fs::write(&path, value)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Waits, at most `limit`, until the kernel can receive on `addr`: no longer tentative in
/// `/proc/thread-self/net/if_inet6` and its local route (the /128 of the local table) in
/// `/proc/thread-self/net/ipv6_route`. Linux installs that route only when the address's
/// DAD work item runs (`addrconf_dad_completed`), asynchronously even with DAD off, and
/// drops what comes for the address before then (`Ip6InAddrErrors`): a SYN written at once
/// was lost, and the connection paid a SYN retransmission timeout. `false` if `limit`
/// passed first.
pub(super) fn wait_ipv6_usable(addr: Ipv6Addr, limit: std::time::Duration) -> bool {
    /// IFA_F_TENTATIVE (linux/if_addr.h).
    const TENTATIVE: u32 = 0x40;
    /// RTF_LOCAL (linux/ipv6_route.h): a route to one of the host's own addresses.
    const RTF_LOCAL: u32 = 0x8000_0000;
    let hex: String = addr.octets().iter().map(|b| format!("{b:02x}")).collect();
    let usable = || {
        let addresses = std::fs::read_to_string("/proc/thread-self/net/if_inet6");
        let settled = addresses.is_ok_and(|t| {
            t.lines().any(|l| {
                let mut f = l.split_whitespace();
                f.next() == Some(&hex)
                    && f.nth(3)
                        .and_then(|flags| u32::from_str_radix(flags, 16).ok())
                        .is_some_and(|flags| flags & TENTATIVE == 0)
            })
        });
        // The /128 local route (RTF_LOCAL), not the plain route to the address that a /128
        // prefix also gets: fields dest, its length, source, its length, next hop, metric,
        // refcount, use, flags.
        let routes = std::fs::read_to_string("/proc/thread-self/net/ipv6_route");
        settled
            && routes.is_ok_and(|t| {
                t.lines().any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() >= 9
                        && f[0] == hex
                        && f[1] == "80"
                        && u32::from_str_radix(f[8], 16).is_ok_and(|flags| flags & RTF_LOCAL != 0)
                })
            })
    };
    let start = std::time::Instant::now();
    // Bounded: one check a millisecond until `limit`.
    while !usable() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    true
}

/// Gives `name` the kernel's IPv6 address with its prefix (and with them the connected
/// route): SIOCSIFADDR on an `AF_INET6` socket takes a `struct in6_ifreq` naming the
/// interface by index (net/ipv6/addrconf.c, `addrconf_add_ifaddr`).
pub(super) fn add_ipv6(name: &str, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    let mut req = ifreq(name);
    ifreq_ioctl(libc::SIOCGIFINDEX, &mut req)?;
    // SAFETY: SIOCGIFINDEX filled `ifru_ifindex`; every bit pattern is an `int`, and the
    // zeroed union is initialised throughout.
    let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };
    let mut req6 = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: u32::from(prefix_len),
        ifr6_ifindex: ifindex,
    };
    let sock = ioctl_socket(libc::AF_INET6)?;
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads one `in6_ifreq`, which `req6` is and
    // which outlives the call; `sock` is an open socket.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCSIFADDR as _,
            &mut req6 as *mut libc::in6_ifreq,
        )
    })
    .map(drop)
}

/// read(2) into `buf`.
pub(super) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which is valid and
    // exclusively borrowed for the call.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// readv(2) of one frame: the virtio-net header into `hdr`, the packet into `buf`.
pub(super) fn readv(fd: RawFd, hdr: &mut [u8; VNET_HDR_LEN], buf: &mut [u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: hdr.as_mut_ptr().cast(),
            iov_len: hdr.len(),
        },
        libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        },
    ];
    // SAFETY: both iovecs point into buffers exclusively borrowed for the call, with their
    // true lengths; the kernel writes at most that much into each.
    let n = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// The most pieces [`writev`] writes as one frame: a virtio-net header, the packet's headers
/// and its payload where the stack's send buffer holds it, in a few chunks (Linux takes up to
/// `UIO_MAXIOV`, 1024).
pub(super) const MAX_IOV: usize = 64;

/// writev(2) of up to [`MAX_IOV`] parts (a virtio-net header, headers, the payload's pieces)
/// as one frame, so none of them is copied into a frame buffer first; more is refused
/// (`InvalidInput`), never cut short.
pub(super) fn writev(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
    if parts.len() > MAX_IOV {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} pieces for one write, past {MAX_IOV}", parts.len()),
        ));
    }
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut iov = [empty; MAX_IOV];
    let n = parts.len();
    for (v, p) in iov.iter_mut().zip(&parts[..n]) {
        *v = libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        };
    }
    // SAFETY: the first `n` iovecs point into slices borrowed for the call, with their true
    // lengths; writev only reads through them (the `*mut` is the C type's spelling).
    let n = unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `bpf(2)` commands and the one program type used (linux/bpf.h).
const BPF_PROG_LOAD: libc::c_long = 5;
#[cfg(test)]
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// `TUNSETSTEERINGEBPF`: `_IOR('T', 224, int)`, the program's descriptor (linux/if_tun.h).
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to the program name; the kernel treats
/// the fields after it, which this does not pass, as zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `bpf(cmd, attr)`.
///
/// # Safety
/// `attr` must be the `union bpf_attr` member `cmd` reads, with every pointer in it valid for
/// what the kernel reads and writes through it during the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for `attr`'s layout and pointers; the kernel reads (and for
    // some commands writes) at most `size_of::<T>()` bytes of it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// How many times `BPF_PROG_LOAD` is tried while it answers `EAGAIN`, as libbpf tries.
const PROG_LOAD_ATTEMPTS: usize = 5;

/// `bpf(BPF_PROG_LOAD, attr)`, tried again while it answers `EAGAIN`: the verifier gives up
/// with `EAGAIN` when a signal is pending for the thread, which says nothing about the
/// program (libbpf's `sys_bpf_prog_load` retries it the same way).
///
/// # Safety
/// As for [`bpf`] with `BPF_PROG_LOAD`.
unsafe fn prog_load(attr: &mut ProgLoadAttr) -> io::Result<libc::c_long> {
    let mut attempt = 1;
    loop {
        // SAFETY: the caller vouches for `attr` as `bpf`'s contract asks.
        match unsafe { bpf(BPF_PROG_LOAD, attr) } {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) && attempt < PROG_LOAD_ATTEMPTS => {
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Loads `insns` (encoded `struct bpf_insn`s) as a socket-filter program named `name`.
/// On the verifier's refusal the error carries the end of its log.
pub(super) fn load_socket_filter(insns: &[[u8; 8]], name: &str) -> io::Result<OwnedFd> {
    let license = c"MIT OR Apache-2.0";
    let mut prog_name = [0u8; 16];
    for (dst, &src) in prog_name.iter_mut().take(15).zip(name.as_bytes()) {
        *dst = src;
    }
    let mut log = Vec::new();
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: u32::try_from(insns.len()).map_err(|_| io::Error::other("program too long"))?,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
    };
    // SAFETY: `attr` is the BPF_PROG_LOAD member; `insns` points to `insn_cnt` instructions
    // and `license` to a NUL-terminated string, both alive for the call; no log buffer.
    let result = unsafe { prog_load(&mut attr) };
    let fd = match result {
        Ok(fd) => fd,
        Err(e)
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            // Again with the verifier's log, to say why.
            log.resize(1 << 20, 0u8);
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above, and `log_buf` points to `log_size` writable bytes that live
            // for the call.
            let again = unsafe { prog_load(&mut attr) };
            match again {
                // Refused once, loaded now: take it.
                Ok(fd) => fd,
                Err(_) => {
                    let text = String::from_utf8_lossy(&log);
                    let text = text.trim_end_matches('\0').trim_end();
                    // The verifier's verdict is at the end of its log.
                    let tail = text
                        .char_indices()
                        .rev()
                        .nth(299)
                        .map_or(text, |(i, _)| &text[i..]);
                    return Err(io::Error::new(e.kind(), format!("{e}; verifier: {tail}")));
                }
            }
        }
        Err(e) => return Err(e),
    };
    let fd = RawFd::try_from(fd).map_err(|_| io::Error::other("bpf(2) returned no descriptor"))?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `prog` the TUN's steering program (`TUNSETSTEERINGEBPF`): for every packet the
/// kernel sends into the interface, queue = the program's result as a `u16` modulo the
/// number of queues. The interface holds its own reference to the program, until it is
/// deleted or given another; -1 takes it away.
pub(super) fn set_steering_program(tun: RawFd, prog: RawFd) -> io::Result<()> {
    let fd: libc::c_int = prog;
    // SAFETY: TUNSETSTEERINGEBPF reads one int through the pointer, which points to `fd`
    // for the call.
    check(unsafe { libc::ioctl(tun, TUNSETSTEERINGEBPF, &fd as *const libc::c_int) }).map(drop)
}

/// Runs socket filter `prog` once on `frame` (an Ethernet header, then the IP packet:
/// `BPF_PROG_TEST_RUN` starts the program at the network header, as the TUN does) and
/// returns its result.
#[cfg(test)]
pub(super) fn test_run(prog: RawFd, frame: &[u8]) -> io::Result<u32> {
    #[repr(C)]
    struct TestRunAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
    }
    let mut out = vec![0u8; frame.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: prog as u32,
        retval: 0,
        data_size_in: frame.len() as u32,
        data_size_out: out.len() as u32,
        data_in: frame.as_ptr() as u64,
        data_out: out.as_mut_ptr() as u64,
        repeat: 1,
        duration: 0,
    };
    // SAFETY: `attr` is the BPF_PROG_TEST_RUN member up to `duration`; `data_in` points to
    // `data_size_in` readable bytes and `data_out` to `data_size_out` writable ones, both
    // alive for the call.
    unsafe { bpf(BPF_PROG_TEST_RUN, &mut attr) }?;
    Ok(attr.retval)
}
