//! The C side: packetdrill's `struct packetdrill_interface` (packetdrill.h) and the functions
//! it points to. Every pointer packetdrill hands over is turned into a Rust value here, and
//! every `unsafe` block says why it holds.

use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use libc::{iovec, msghdr, pollfd, sockaddr, socklen_t, ssize_t, timeval, timezone};
use synack_core::SendFlags;

use crate::flags::Flags;
use crate::stack::{Received, Shared, SysResult};

type Ud = *mut c_void;

/// `struct packetdrill_interface`, field for field (packetdrill.h).
#[repr(C)]
pub struct PacketdrillInterface {
    userdata: Ud,
    free: Option<unsafe extern "C" fn(Ud)>,
    socket: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    bind: Option<unsafe extern "C" fn(Ud, c_int, *const sockaddr, socklen_t) -> c_int>,
    listen: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    accept: Option<unsafe extern "C" fn(Ud, c_int, *mut sockaddr, *mut socklen_t) -> c_int>,
    connect: Option<unsafe extern "C" fn(Ud, c_int, *const sockaddr, socklen_t) -> c_int>,
    read: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, usize) -> ssize_t>,
    readv: Option<unsafe extern "C" fn(Ud, c_int, *const iovec, c_int) -> ssize_t>,
    recv: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, usize, c_int) -> ssize_t>,
    recvfrom: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *mut c_void,
            usize,
            c_int,
            *mut sockaddr,
            *mut socklen_t,
        ) -> ssize_t,
    >,
    recvmsg: Option<unsafe extern "C" fn(Ud, c_int, *mut msghdr, c_int) -> ssize_t>,
    write: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, usize) -> ssize_t>,
    writev: Option<unsafe extern "C" fn(Ud, c_int, *const iovec, c_int) -> ssize_t>,
    send: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, usize, c_int) -> ssize_t>,
    sendto: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *const c_void,
            usize,
            c_int,
            *const sockaddr,
            socklen_t,
        ) -> ssize_t,
    >,
    sendmsg: Option<unsafe extern "C" fn(Ud, c_int, *const msghdr, c_int) -> ssize_t>,
    /// Variadic in C (`int cmd, ...`); see `fcntl` below.
    fcntl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    /// Variadic in C (`unsigned long request, ...`); see `ioctl` below.
    ioctl: Option<unsafe extern "C" fn(Ud, c_int, c_ulong, *mut c_int) -> c_int>,
    close: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    shutdown: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    getsockopt:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut c_void, *mut socklen_t) -> c_int>,
    setsockopt:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *const c_void, socklen_t) -> c_int>,
    poll: Option<unsafe extern "C" fn(Ud, *mut pollfd, libc::nfds_t, c_int) -> c_int>,
    netdev_send: Option<unsafe extern "C" fn(Ud, *const c_void, usize) -> c_int>,
    netdev_receive: Option<unsafe extern "C" fn(Ud, *mut c_void, *mut usize, *mut i64) -> c_int>,
    usleep: Option<unsafe extern "C" fn(Ud, libc::useconds_t) -> c_int>,
    gettimeofday: Option<unsafe extern "C" fn(Ud, *mut timeval, *mut timezone) -> c_int>,
    epoll_create: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    epoll_ctl:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut libc::epoll_event) -> c_int>,
    epoll_wait:
        Option<unsafe extern "C" fn(Ud, c_int, *mut libc::epoll_event, c_int, c_int) -> c_int>,
    pipe: Option<unsafe extern "C" fn(Ud, *mut c_int) -> c_int>,
    splice: Option<
        unsafe extern "C" fn(Ud, c_int, *mut i64, c_int, *mut i64, usize, libc::c_uint) -> c_int,
    >,
}

fn set_errno(e: i32) {
    // SAFETY: __errno_location returns the calling thread's errno, valid for the thread's
    // lifetime; packetdrill reads errno right after the call.
    unsafe { *libc::__errno_location() = e };
}

/// A call's result as C wants it: the value, or -1 with errno set.
fn ret<T: Into<i64>>(r: SysResult<T>) -> i64 {
    match r {
        Ok(v) => v.into(),
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// As [`ret`], logging the call first when `--so_flags=verbose`.
fn traced<T: Into<i64> + std::fmt::Debug>(
    s: &Shared,
    call: std::fmt::Arguments<'_>,
    r: SysResult<T>,
) -> i64 {
    s.trace(call, &r);
    ret(r)
}

/// # Safety
/// `ud` is the pointer `packetdrill_interface_init` stored, not yet freed.
unsafe fn shared<'a>(ud: Ud) -> &'a Shared {
    // SAFETY: the caller promises `ud` came from Box::into_raw in init and is still live.
    unsafe { &*(ud as *const Shared) }
}

/// # Safety
/// `addr` points to `len` readable bytes (or is null).
unsafe fn read_sockaddr(addr: *const sockaddr, len: socklen_t) -> SysResult<SocketAddr> {
    if addr.is_null() || (len as usize) < std::mem::size_of::<libc::sa_family_t>() {
        return Err(libc::EINVAL);
    }
    // SAFETY: at least the family field is readable (checked above).
    let family = unsafe { (*addr).sa_family } as c_int;
    match family {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family and length say it is a sockaddr_in; read unaligned since C
            // gives no alignment promise for a byte buffer.
            let a = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Ok(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, a sockaddr_in6.
            let a = unsafe { std::ptr::read_unaligned(addr as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            Ok(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        libc::AF_INET | libc::AF_INET6 => Err(libc::EINVAL),
        _ => Err(libc::EAFNOSUPPORT),
    }
}

/// # Safety
/// `addr`, if not null, points to `*len` writable bytes, and `len` is valid.
unsafe fn write_sockaddr(a: SocketAddr, addr: *mut sockaddr, len: *mut socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: both pointers are non-null and, the caller promises, valid.
    let room = unsafe { *len } as usize;
    let bytes: Vec<u8> = match a {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_in is plain old data; all zeroes is a valid value.
            let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = v4.port().to_be();
            s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            pod_bytes(&s)
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 is plain old data; all zeroes is a valid value.
            let mut s: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = v6.port().to_be();
            s.sin6_addr.s6_addr = v6.ip().octets();
            pod_bytes(&s)
        }
    };
    let n = room.min(bytes.len());
    // SAFETY: `addr` has `room` writable bytes (caller), we write at most that many, from a
    // buffer that does not overlap it.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, n);
        *len = bytes.len() as socklen_t;
    }
}

fn pod_bytes<T: Copy>(v: &T) -> Vec<u8> {
    let size = std::mem::size_of::<T>();
    // SAFETY: T is a plain C struct (sockaddr_*) fully initialised (zeroed, then fields set);
    // we read exactly its size in bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size).to_vec() }
}

/// # Safety
/// `iov` points to `cnt` iovecs, each naming `iov_len` bytes readable (and writable for reads).
unsafe fn iovecs<'a>(iov: *const iovec, cnt: c_int) -> SysResult<&'a [iovec]> {
    if !(0..=libc::UIO_MAXIOV).contains(&cnt) {
        return Err(libc::EINVAL);
    }
    if cnt == 0 {
        return Ok(&[]);
    }
    if iov.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: the caller promises `cnt` iovecs at `iov`.
    Ok(unsafe { std::slice::from_raw_parts(iov, cnt as usize) })
}

/// # Safety
/// Each iovec names readable memory.
unsafe fn gather(iov: &[iovec]) -> SysResult<Vec<u8>> {
    let mut v = Vec::new();
    for i in iov {
        if i.iov_len == 0 {
            continue;
        }
        if i.iov_base.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: the caller promises each iovec names iov_len readable bytes.
        v.extend_from_slice(unsafe {
            std::slice::from_raw_parts(i.iov_base as *const u8, i.iov_len)
        });
    }
    Ok(v)
}

/// # Safety
/// Each iovec names writable memory.
unsafe fn scatter(iov: &[iovec], mut data: &[u8]) {
    for i in iov {
        if data.is_empty() {
            break;
        }
        let n = i.iov_len.min(data.len());
        if n == 0 || i.iov_base.is_null() {
            continue;
        }
        // SAFETY: the caller promises iov_len writable bytes; n is no more than that.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), i.iov_base as *mut u8, n) };
        data = &data[n..];
    }
}

fn total_len(iov: &[iovec]) -> usize {
    iov.iter().map(|i| i.iov_len).sum()
}

/// # Safety
/// `buf` is null only if `len` is 0, otherwise it names `len` readable bytes.
unsafe fn in_buf<'a>(buf: *const c_void, len: usize) -> SysResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: non-null and `len` readable bytes, the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(buf as *const u8, len) })
}

/// # Safety
/// `buf` is null only if `len` is 0, otherwise it names `len` writable bytes.
unsafe fn out_buf<'a>(buf: *mut c_void, len: usize) -> SysResult<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(libc::EFAULT);
    }
    // SAFETY: non-null and `len` writable bytes, the caller promises.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, len) })
}

// ---------------------------------------------------------------------------------------------
// The functions in the table. packetdrill calls each with the userdata it got from init and
// with pointers valid for the call, as the corresponding libc call would get them.
// ---------------------------------------------------------------------------------------------

unsafe extern "C" fn pd_free(ud: Ud) {
    if ud.is_null() {
        return;
    }
    // SAFETY: `ud` is the Box made in init; packetdrill frees it once, after all other calls.
    let s = unsafe { Box::from_raw(ud as *mut Shared) };
    s.shutdown_all();
}

unsafe extern "C" fn pd_socket(ud: Ud, domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY: `ud` is live (packetdrill calls us only between init and free).
    let s = unsafe { shared(ud) };
    let r = s.socket(domain, ty, protocol);
    traced(s, format_args!("socket({domain}, {ty}, {protocol})"), r) as c_int
}

unsafe extern "C" fn pd_bind(ud: Ud, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: `ud` is live; `addr` has `len` bytes, as for bind(2).
    let s = unsafe { shared(ud) };
    // SAFETY: `addr` has `len` readable bytes, as for bind(2).
    let r = unsafe { read_sockaddr(addr, len) }.and_then(|a| s.bind(fd, a));
    traced(s, format_args!("bind({fd})"), r.map(|()| 0)) as c_int
}

unsafe extern "C" fn pd_listen(ud: Ud, fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.listen(fd, backlog).map(|()| 0);
    traced(s, format_args!("listen({fd}, {backlog})"), r) as c_int
}

unsafe extern "C" fn pd_accept(
    ud: Ud,
    fd: c_int,
    addr: *mut sockaddr,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.accept(fd).map(|(nfd, peer)| {
        // SAFETY: `addr`/`len` as for accept(2): null, or `*len` writable bytes.
        unsafe { write_sockaddr(peer, addr, len) };
        nfd
    });
    traced(s, format_args!("accept({fd})"), r) as c_int
}

unsafe extern "C" fn pd_connect(ud: Ud, fd: c_int, addr: *const sockaddr, len: socklen_t) -> c_int {
    // SAFETY: `ud` is live; `addr` has `len` bytes, as for connect(2).
    let s = unsafe { shared(ud) };
    // SAFETY: `addr` has `len` readable bytes, as for connect(2).
    let r = if unsafe { is_unspec(addr, len) } {
        s.disconnect(fd)
    } else {
        // SAFETY: as above.
        unsafe { read_sockaddr(addr, len) }.and_then(|a| s.connect(fd, a))
    };
    traced(s, format_args!("connect({fd})"), r.map(|()| 0)) as c_int
}

fn recv_flags(flags: c_int) -> SysResult<(bool, bool)> {
    let known = libc::MSG_DONTWAIT | libc::MSG_PEEK | libc::MSG_NOSIGNAL;
    if flags & !known != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    Ok((flags & libc::MSG_DONTWAIT != 0, flags & libc::MSG_PEEK != 0))
}

unsafe extern "C" fn pd_recv(
    ud: Ud,
    fd: c_int,
    buf: *mut c_void,
    len: usize,
    flags: c_int,
) -> ssize_t {
    // SAFETY: `buf` has `len` writable bytes, as for recv(2); `ud` is live.
    let s = unsafe { shared(ud) };
    // SAFETY: `buf` has `len` writable bytes, as for recv(2).
    let r = unsafe { out_buf(buf, len) }.and_then(|b| {
        if flags & libc::MSG_ERRQUEUE != 0 {
            // Without room for control messages the report's are cut off, as on Linux.
            let e = s.recv_errqueue(fd, 0)?;
            return Ok(Received {
                len: e.len,
                inq: None,
            });
        }
        if flags & libc::MSG_OOB != 0 {
            let (_, peek) = recv_flags(flags & !libc::MSG_OOB)?;
            return Ok(Received {
                len: oob_into(s.recv_oob(fd, peek)?, b),
                inq: None,
            });
        }
        let (dontwait, peek) = recv_flags(flags)?;
        s.recv(fd, b, dontwait, peek)
    });
    traced(
        s,
        format_args!("recv({fd}, {len}, {flags:#x})"),
        r.map(|r| r.len as i64),
    ) as ssize_t
}

/// The urgent byte a MSG_OOB read got, copied into `buf` if it has room: the call's result
/// (Linux `tcp_recv_urg` returns 1, or 0 into an empty buffer, or 0 at end of stream).
fn oob_into(byte: Option<u8>, buf: &mut [u8]) -> usize {
    match (byte, buf.first_mut()) {
        (Some(b), Some(first)) => {
            *first = b;
            1
        }
        _ => 0,
    }
}

unsafe extern "C" fn pd_read(ud: Ud, fd: c_int, buf: *mut c_void, len: usize) -> ssize_t {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    if s.is_pipe(fd) {
        // SAFETY: `buf` has `len` writable bytes, as for read(2).
        let r = unsafe { out_buf(buf, len) }.and_then(|b| s.pipe_read(fd, b));
        return traced(s, format_args!("read({fd}, {len})"), r.map(|n| n as i64)) as ssize_t;
    }
    // SAFETY: as for read(2), forwarded unchanged.
    unsafe { pd_recv(ud, fd, buf, len, 0) }
}

unsafe extern "C" fn pd_recvfrom(
    ud: Ud,
    fd: c_int,
    buf: *mut c_void,
    len: usize,
    flags: c_int,
    _addr: *mut sockaddr,
    _addrlen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: as for recvfrom(2); a connected TCP socket leaves the address alone.
    unsafe { pd_recv(ud, fd, buf, len, flags) }
}

unsafe extern "C" fn pd_readv(ud: Ud, fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: `iov` has `cnt` entries of writable memory, as for readv(2); `ud` is live.
    let r = unsafe { iovecs(iov, cnt) }.and_then(|iov| {
        let mut tmp = vec![0; total_len(iov)];
        // SAFETY: `ud` is live.
        let got = unsafe { shared(ud) }.recv(fd, &mut tmp, false, false)?;
        // SAFETY: the iovecs name writable memory, as for readv(2).
        unsafe { scatter(iov, &tmp[..got.len]) };
        Ok(got.len as i64)
    });
    ret(r) as ssize_t
}

unsafe extern "C" fn pd_recvmsg(ud: Ud, fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    if msg.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: `msg` is a valid msghdr, as for recvmsg(2).
    let m = unsafe { &mut *msg };
    if flags & libc::MSG_ERRQUEUE != 0 {
        let room = if m.msg_control.is_null() {
            0
        } else {
            m.msg_controllen
        };
        // SAFETY: `ud` is live.
        let r = unsafe { shared(ud) }.recv_errqueue(fd, room).map(|e| {
            // SAFETY: msg_control has msg_controllen (= room) writable bytes, as for
            // recvmsg(2), and put_cmsgs wrote no more than room.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    e.control.as_ptr(),
                    m.msg_control as *mut u8,
                    e.control.len().min(room),
                )
            };
            m.msg_controllen = e.control.len().min(room) as _;
            m.msg_flags = e.flags;
            e.len as i64
        });
        return ret(r) as ssize_t;
    }
    // SAFETY: its iovecs name writable memory; `ud` is live.
    let r = unsafe { iovecs(m.msg_iov, m.msg_iovlen as c_int) }.and_then(|iov| {
        if flags & libc::MSG_OOB != 0 {
            let (_, peek) = recv_flags(flags & !libc::MSG_OOB)?;
            // SAFETY: `ud` is live.
            let byte = unsafe { shared(ud) }.recv_oob(fd, peek)?;
            let mut tmp = vec![0; total_len(iov).min(1)];
            let n = oob_into(byte, &mut tmp);
            // SAFETY: the message's iovecs name writable memory.
            unsafe { scatter(iov, &tmp[..n]) };
            m.msg_controllen = 0;
            m.msg_flags = if byte.is_some() { libc::MSG_OOB } else { 0 };
            if byte.is_some() && tmp.is_empty() {
                m.msg_flags |= libc::MSG_TRUNC;
            }
            return Ok(n as i64);
        }
        let (dontwait, peek) = recv_flags(flags)?;
        let mut tmp = vec![0; total_len(iov)];
        // SAFETY: `ud` is live.
        let got = unsafe { shared(ud) }.recv(fd, &mut tmp, dontwait, peek)?;
        // SAFETY: the message's iovecs name writable memory.
        unsafe { scatter(iov, &tmp[..got.len]) };
        m.msg_flags = 0;
        let mut used = 0;
        if let Some(inq) = got.inq {
            // TCP_CM_INQ (= TCP_INQ), one int, as Linux's tcp_recvmsg adds it.
            // SAFETY: CMSG_SPACE is arithmetic on its argument.
            let space = unsafe { libc::CMSG_SPACE(4) } as usize;
            if !m.msg_control.is_null() && m.msg_controllen >= space {
                // SAFETY: msg_control has msg_controllen bytes (checked >= one cmsg of an
                // int); CMSG_FIRSTHDR/CMSG_DATA stay inside it.
                unsafe {
                    let c = libc::CMSG_FIRSTHDR(m);
                    (*c).cmsg_level = libc::SOL_TCP;
                    (*c).cmsg_type = libc::TCP_INQ;
                    (*c).cmsg_len = libc::CMSG_LEN(4) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut c_int, inq);
                }
                used = space;
            } else {
                m.msg_flags |= libc::MSG_CTRUNC;
            }
        }
        m.msg_controllen = used as _;
        Ok(got.len as i64)
    });
    ret(r) as ssize_t
}

/// send(2)'s flags: MSG_DONTWAIT, the segment-shaping MSG_MORE and MSG_EOR, and
/// MSG_ZEROCOPY (the third value). MSG_FASTOPEN is sendto's (see `pd_sendto`), MSG_OOB is
/// taken off by the callers.
fn send_flags(flags: c_int) -> SysResult<(bool, SendFlags, bool)> {
    let known = libc::MSG_DONTWAIT
        | libc::MSG_NOSIGNAL
        | libc::MSG_MORE
        | libc::MSG_EOR
        | libc::MSG_ZEROCOPY;
    if flags & !known != 0 {
        // MSG_CONFIRM, ...: not in the core.
        return Err(libc::EOPNOTSUPP);
    }
    let shape = SendFlags {
        more: flags & libc::MSG_MORE != 0,
        eor: flags & libc::MSG_EOR != 0,
    };
    let zerocopy = flags & libc::MSG_ZEROCOPY != 0;
    Ok((flags & libc::MSG_DONTWAIT != 0, shape, zerocopy))
}

unsafe extern "C" fn pd_send(
    ud: Ud,
    fd: c_int,
    buf: *const c_void,
    len: usize,
    flags: c_int,
) -> ssize_t {
    // SAFETY: `buf` has `len` readable bytes, as for send(2); `ud` is live.
    let s = unsafe { shared(ud) };
    // SAFETY: `buf` has `len` readable bytes, as for send(2).
    let r = unsafe { in_buf(buf, len) }.and_then(|b| {
        let oob = flags & libc::MSG_OOB != 0;
        match send_flags(flags & !libc::MSG_OOB)? {
            (dontwait, shape, _) if oob => s.send_oob(fd, b, dontwait, shape),
            (dontwait, shape, true) => {
                s.send_zerocopy(fd, b, &[(buf as usize, len)], dontwait, shape)
            }
            (dontwait, shape, false) => s.send(fd, b, dontwait, shape),
        }
    });
    traced(
        s,
        format_args!("send({fd}, {len}, {flags:#x})"),
        r.map(|n| n as i64),
    ) as ssize_t
}

unsafe extern "C" fn pd_write(ud: Ud, fd: c_int, buf: *const c_void, len: usize) -> ssize_t {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    if s.is_pipe(fd) {
        // SAFETY: `buf` has `len` readable bytes, as for write(2).
        let r = unsafe { in_buf(buf, len) }.and_then(|b| s.pipe_write(fd, b));
        return traced(s, format_args!("write({fd}, {len})"), r.map(|n| n as i64)) as ssize_t;
    }
    // SAFETY: as for write(2), forwarded unchanged.
    unsafe { pd_send(ud, fd, buf, len, 0) }
}

unsafe extern "C" fn pd_sendto(
    ud: Ud,
    fd: c_int,
    buf: *const c_void,
    len: usize,
    flags: c_int,
    addr: *const sockaddr,
    addrlen: socklen_t,
) -> ssize_t {
    if flags & libc::MSG_FASTOPEN == 0 {
        // SAFETY: as for sendto(2); a connected TCP socket ignores the address.
        return unsafe { pd_send(ud, fd, buf, len, flags) };
    }
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    // TCP Fast Open: connect to `addr` with `buf` in the SYN.
    // SAFETY: `buf` has `len` readable bytes and `addr` `addrlen` (or is null), as for
    // sendto(2).
    let r = unsafe { in_buf(buf, len) }.and_then(|data| {
        // SAFETY: `addr` is null or has `addrlen` readable bytes, as for sendto(2).
        let to = unsafe { fast_open_target(addr, addrlen) }?;
        let (dontwait, shape, zerocopy) = send_flags(flags & !libc::MSG_FASTOPEN)?;
        s.send_fast_open(fd, data, to, dontwait, shape, zerocopy)
    });
    traced(
        s,
        format_args!("sendto({fd}, {len}, {flags:#x})"),
        r.map(|n| n as i64),
    ) as ssize_t
}

/// Whether `addr` is an `AF_UNSPEC` address (connect(2) with one disconnects).
///
/// # Safety
/// `addr` is null or has `len` readable bytes.
unsafe fn is_unspec(addr: *const sockaddr, len: socklen_t) -> bool {
    !addr.is_null()
        && (len as usize) >= std::mem::size_of::<libc::sa_family_t>()
        // SAFETY: non-null with at least the family field readable (checked here).
        && c_int::from(unsafe { (*addr).sa_family }) == libc::AF_UNSPEC
}

/// Where a `sendto` or `sendmsg` with MSG_FASTOPEN connects to: `None` without an address
/// (a socket that `TCP_FASTOPEN_CONNECT` already connected). An `AF_UNSPEC` address is
/// EOPNOTSUPP, as Linux's `tcp_sendmsg_fastopen` answers it, not a family error.
///
/// # Safety
/// `addr` is null or has `len` readable bytes.
unsafe fn fast_open_target(addr: *const sockaddr, len: socklen_t) -> SysResult<Option<SocketAddr>> {
    if addr.is_null() {
        return Ok(None);
    }
    // SAFETY: non-null with `len` readable bytes (the caller's promise).
    if unsafe { is_unspec(addr, len) } {
        return Err(libc::EOPNOTSUPP);
    }
    // SAFETY: non-null, with `len` readable bytes (the caller's promise).
    unsafe { read_sockaddr(addr, len) }.map(Some)
}

unsafe extern "C" fn pd_writev(ud: Ud, fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: `iov` has `cnt` entries of readable memory, as for writev(2); `ud` is live.
    let r = unsafe { iovecs(iov, cnt) }
        .and_then(|iov| unsafe { gather(iov) })
        .and_then(|data| unsafe { shared(ud) }.send(fd, &data, false, SendFlags::default()));
    ret(r.map(|n| n as i64)) as ssize_t
}

unsafe extern "C" fn pd_sendmsg(ud: Ud, fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if msg.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: `msg` is a valid msghdr, as for sendmsg(2).
    let m = unsafe { &*msg };
    // SAFETY: its iovecs name readable memory; `ud` is live.
    let r = unsafe { iovecs(m.msg_iov, m.msg_iovlen as c_int) }.and_then(|iov| {
        // SAFETY: the iovecs name readable memory, as for sendmsg(2).
        let data = unsafe { gather(iov) }?;
        let oob = flags & libc::MSG_OOB != 0;
        let fast_open = flags & libc::MSG_FASTOPEN != 0;
        let (dontwait, shape, zerocopy) =
            send_flags(flags & !(libc::MSG_OOB | libc::MSG_FASTOPEN))?;
        if m.msg_controllen != 0 {
            return Err(libc::EOPNOTSUPP);
        }
        // SAFETY: `ud` is live.
        let s = unsafe { shared(ud) };
        if fast_open {
            // SAFETY: `msg_name` is null or has `msg_namelen` readable bytes, as for
            // sendmsg(2).
            let to = unsafe { fast_open_target(m.msg_name as *const sockaddr, m.msg_namelen) }?;
            s.send_fast_open(fd, &data, to, dontwait, shape, zerocopy)
        } else if oob {
            s.send_oob(fd, &data, dontwait, shape)
        } else if zerocopy {
            let frags: Vec<_> = iov
                .iter()
                .map(|i| (i.iov_base as usize, i.iov_len))
                .collect();
            s.send_zerocopy(fd, &data, &frags, dontwait, shape)
        } else {
            s.send(fd, &data, dontwait, shape)
        }
    });
    ret(r.map(|n| n as i64)) as ssize_t
}

/// `int (*fcntl)(void *, int fd, int cmd, ...)`: packetdrill passes at most one more int.
/// On the System V x86-64 and AArch64 Linux ABIs a variadic int travels in the same register
/// as a fixed fourth int argument, so this non-variadic definition reads it; for F_GETFL it
/// is garbage and unused.
unsafe extern "C" fn pd_fcntl(ud: Ud, fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    // SAFETY: `ud` is live.
    ret(unsafe { shared(ud) }.fcntl(fd, cmd, arg)) as c_int
}

/// `int (*ioctl)(void *, int fd, unsigned long request, ...)`: packetdrill passes an `int *`
/// for SIOCINQ/SIOCOUTQ (as above, it arrives where a fixed pointer argument would).
unsafe extern "C" fn pd_ioctl(ud: Ud, fd: c_int, request: c_ulong, arg: *mut c_int) -> c_int {
    // SAFETY: `ud` is live.
    let r = unsafe { shared(ud) }.ioctl(fd, request).and_then(|v| {
        if arg.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: for these requests the third argument is an int to fill in.
        unsafe { *arg = v };
        Ok(0)
    });
    ret(r) as c_int
}

unsafe extern "C" fn pd_close(ud: Ud, fd: c_int) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.close(fd).map(|()| 0);
    traced(s, format_args!("close({fd})"), r) as c_int
}

unsafe extern "C" fn pd_shutdown(ud: Ud, fd: c_int, how: c_int) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.shutdown(fd, how).map(|()| 0);
    traced(s, format_args!("shutdown({fd}, {how})"), r) as c_int
}

unsafe extern "C" fn pd_getsockopt(
    ud: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *mut c_void,
    len: *mut socklen_t,
) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.getsockopt(fd, level, name).and_then(|bytes| {
        if val.is_null() || len.is_null() {
            return Err(libc::EFAULT);
        }
        // SAFETY: as for getsockopt(2): `*len` writable bytes at `val`; we write at most that.
        unsafe {
            let n = (*len as usize).min(bytes.len());
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), val as *mut u8, n);
            *len = n as socklen_t;
        }
        Ok(0)
    });
    traced(s, format_args!("getsockopt({fd}, {level}, {name})"), r) as c_int
}

unsafe extern "C" fn pd_setsockopt(
    ud: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: as for setsockopt(2): `len` readable bytes at `val`; `ud` is live.
    let s = unsafe { shared(ud) };
    // SAFETY: `val` has `len` readable bytes, as for setsockopt(2).
    let r = unsafe { in_buf(val, len as usize) }.and_then(|v| s.setsockopt(fd, level, name, v));
    traced(
        s,
        format_args!("setsockopt({fd}, {level}, {name})"),
        r.map(|()| 0),
    ) as c_int
}

unsafe extern "C" fn pd_poll(
    ud: Ud,
    fds: *mut pollfd,
    nfds: libc::nfds_t,
    timeout: c_int,
) -> c_int {
    if nfds > 0 && fds.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    let fds: &mut [pollfd] = if nfds == 0 {
        &mut []
    } else {
        // SAFETY: as for poll(2): `nfds` pollfds at `fds`.
        unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) }
    };
    let query: Vec<(i32, i16)> = fds.iter().map(|p| (p.fd, p.events)).collect();
    // SAFETY: `ud` is live.
    let r = unsafe { shared(ud) }.poll(&query, timeout).map(|revents| {
        let mut n = 0;
        for (p, r) in fds.iter_mut().zip(revents) {
            p.revents = r;
            n += (r != 0) as i64;
        }
        n
    });
    ret(r) as c_int
}

unsafe extern "C" fn pd_netdev_send(ud: Ud, buf: *const c_void, len: usize) -> c_int {
    // SAFETY: packetdrill hands over `len` bytes of packet at `buf`; `ud` is live.
    match unsafe { in_buf(buf, len) } {
        Ok(p) => {
            // SAFETY: `ud` is live.
            unsafe { shared(ud) }.netdev_send(p);
            0
        }
        Err(_) => -1,
    }
}

unsafe extern "C" fn pd_netdev_receive(
    ud: Ud,
    buf: *mut c_void,
    count: *mut usize,
    time: *mut i64,
) -> c_int {
    if count.is_null() || time.is_null() {
        return -1;
    }
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    match s.netdev_receive() {
        Some((packet, t)) => {
            // SAFETY: `*count` is the size of `buf` (packetdrill.h); we write at most that.
            unsafe {
                let n = packet.len().min(*count);
                std::ptr::copy_nonoverlapping(packet.as_ptr(), buf as *mut u8, n);
                *count = n;
                *time = t as i64;
            }
        }
        None => {
            eprintln!("synack-packetdrill: the stack has nothing to send and no timer pending");
            // SAFETY: valid out-pointers (checked non-null above). A 0-byte packet makes
            // packetdrill fail the expected one instead of waiting forever.
            unsafe {
                *count = 0;
                *time = s.gettimeofday() as i64;
            }
        }
    }
    0
}

unsafe extern "C" fn pd_usleep(ud: Ud, usec: libc::useconds_t) -> c_int {
    // SAFETY: `ud` is live.
    unsafe { shared(ud) }.usleep(u64::from(usec));
    0
}

unsafe extern "C" fn pd_gettimeofday(ud: Ud, tv: *mut timeval, _tz: *mut timezone) -> c_int {
    // SAFETY: `ud` is live.
    let us = unsafe { shared(ud) }.gettimeofday();
    if !tv.is_null() {
        // SAFETY: `tv` is a valid timeval, as for gettimeofday(2).
        unsafe {
            (*tv).tv_sec = (us / 1_000_000) as libc::time_t;
            (*tv).tv_usec = (us % 1_000_000) as libc::suseconds_t;
        }
    }
    0
}

unsafe extern "C" fn pd_epoll_create(ud: Ud, size: c_int) -> c_int {
    if size <= 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: `ud` is live.
    ret(unsafe { shared(ud) }.epoll_create()) as c_int
}

unsafe extern "C" fn pd_epoll_ctl(
    ud: Ud,
    epfd: c_int,
    op: c_int,
    fd: c_int,
    event: *mut libc::epoll_event,
) -> c_int {
    let (events, data) = if event.is_null() {
        (0, 0)
    } else {
        // SAFETY: as for epoll_ctl(2): a valid epoll_event (packed: read unaligned).
        let e = unsafe { std::ptr::read_unaligned(event) };
        (e.events, e.u64)
    };
    // SAFETY: `ud` is live.
    ret(unsafe { shared(ud) }
        .epoll_ctl(epfd, op, fd, events, data)
        .map(|()| 0)) as c_int
}

unsafe extern "C" fn pd_epoll_wait(
    ud: Ud,
    epfd: c_int,
    events: *mut libc::epoll_event,
    max: c_int,
    timeout: c_int,
) -> c_int {
    if max <= 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    if events.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: `ud` is live.
    let r = unsafe { shared(ud) }
        .epoll_wait(epfd, max as usize, timeout)
        .map(|ready| {
            for (i, (ev, data)) in ready.iter().enumerate() {
                // SAFETY: `events` has room for `max` entries and i < max.
                unsafe {
                    std::ptr::write_unaligned(
                        events.add(i),
                        libc::epoll_event {
                            events: *ev,
                            u64: *data,
                        },
                    )
                };
            }
            ready.len() as i64
        });
    ret(r) as c_int
}

unsafe extern "C" fn pd_pipe(ud: Ud, fds: *mut c_int) -> c_int {
    if fds.is_null() {
        set_errno(libc::EFAULT);
        return -1;
    }
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.pipe().map(|[r, w]| {
        // SAFETY: as for pipe(2), `fds` has room for two ints (checked non-null above).
        unsafe {
            *fds = r;
            *fds.add(1) = w;
        }
        0
    });
    traced(s, format_args!("pipe()"), r) as c_int
}

/// `splice(fd_in, off_in, fd_out, off_out, len, flags)`: packetdrill passes pointers to the
/// script's offsets, 0 for its NULL.
unsafe extern "C" fn pd_splice(
    ud: Ud,
    fd_in: c_int,
    off_in: *mut i64,
    fd_out: c_int,
    off_out: *mut i64,
    len: usize,
    flags: libc::c_uint,
) -> c_int {
    // SAFETY: null, or an offset to read, as for splice(2).
    let off = |p: *mut i64| if p.is_null() { 0 } else { unsafe { *p } };
    let (off_in, off_out) = (off(off_in), off(off_out));
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s
        .splice(fd_in, off_in, fd_out, off_out, len, flags)
        .map(|n| n as i64);
    traced(
        s,
        format_args!("splice({fd_in}, {off_in}, {fd_out}, {off_out}, {len}, {flags:#x})"),
        r,
    ) as c_int
}

/// The entry point packetdrill looks up: fill in `ifc` for the `--so_flags` given.
///
/// # Safety
/// `flags` is null or a NUL-terminated string; `ifc` points to a writable interface struct.
#[no_mangle]
pub unsafe extern "C" fn packetdrill_interface_init(
    flags: *const c_char,
    ifc: *mut PacketdrillInterface,
) {
    let text = if flags.is_null() {
        String::new()
    } else {
        // SAFETY: packetdrill passes its --so_flags string, NUL-terminated.
        unsafe { CStr::from_ptr(flags) }
            .to_string_lossy()
            .into_owned()
    };
    let flags = match Flags::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("synack-packetdrill: {e}");
            std::process::exit(1);
        }
    };
    let shared = Box::into_raw(Box::new(Shared::new(flags))) as Ud;
    let table = PacketdrillInterface {
        userdata: shared,
        free: Some(pd_free),
        socket: Some(pd_socket),
        bind: Some(pd_bind),
        listen: Some(pd_listen),
        accept: Some(pd_accept),
        connect: Some(pd_connect),
        read: Some(pd_read),
        readv: Some(pd_readv),
        recv: Some(pd_recv),
        recvfrom: Some(pd_recvfrom),
        recvmsg: Some(pd_recvmsg),
        write: Some(pd_write),
        writev: Some(pd_writev),
        send: Some(pd_send),
        sendto: Some(pd_sendto),
        sendmsg: Some(pd_sendmsg),
        fcntl: Some(pd_fcntl),
        ioctl: Some(pd_ioctl),
        close: Some(pd_close),
        shutdown: Some(pd_shutdown),
        getsockopt: Some(pd_getsockopt),
        setsockopt: Some(pd_setsockopt),
        poll: Some(pd_poll),
        netdev_send: Some(pd_netdev_send),
        netdev_receive: Some(pd_netdev_receive),
        usleep: Some(pd_usleep),
        gettimeofday: Some(pd_gettimeofday),
        epoll_create: Some(pd_epoll_create),
        epoll_ctl: Some(pd_epoll_ctl),
        epoll_wait: Some(pd_epoll_wait),
        pipe: Some(pd_pipe),
        splice: Some(pd_splice),
    };
    // SAFETY: packetdrill passes its own interface struct to fill in.
    unsafe { std::ptr::write(ifc, table) };
}
