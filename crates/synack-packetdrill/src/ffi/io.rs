//! Reading and writing: `read`, `readv`, `recv`, `recvfrom` and `recvmsg` (with MSG_PEEK,
//! MSG_OOB and the error queue), `write`, `writev`, `send`, `sendto` (with TCP Fast Open) and
//! `sendmsg`, and the flags they take.

use std::ffi::{c_int, c_void};
use std::net::SocketAddr;

use libc::{iovec, msghdr, sockaddr, socklen_t, ssize_t};
use synack_core::SendFlags;

use super::pointers::{
    gather, in_buf, iovecs, is_unspec, out_buf, read_sockaddr, scatter, total_len,
};
use super::{ret, set_errno, shared, traced, Ud};
use crate::stack::{Received, SysResult};

/// recv(2)'s flags: MSG_DONTWAIT, MSG_PEEK and MSG_WAITALL.
fn recv_flags(flags: c_int) -> SysResult<(bool, bool, bool)> {
    let known = libc::MSG_DONTWAIT | libc::MSG_PEEK | libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
    if flags & !known != 0 {
        return Err(libc::EOPNOTSUPP);
    }
    Ok((
        flags & libc::MSG_DONTWAIT != 0,
        flags & libc::MSG_PEEK != 0,
        flags & libc::MSG_WAITALL != 0,
    ))
}

pub(super) unsafe extern "C" fn pd_recv(
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
            let (_, peek, _) = recv_flags(flags & !libc::MSG_OOB)?;
            return Ok(Received {
                len: oob_into(s.recv_oob(fd, peek)?, b),
                inq: None,
            });
        }
        let (dontwait, peek, waitall) = recv_flags(flags)?;
        s.recv(fd, b, dontwait, peek, waitall)
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

pub(super) unsafe extern "C" fn pd_read(
    ud: Ud,
    fd: c_int,
    buf: *mut c_void,
    len: usize,
) -> ssize_t {
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

pub(super) unsafe extern "C" fn pd_recvfrom(
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

pub(super) unsafe extern "C" fn pd_readv(
    ud: Ud,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
) -> ssize_t {
    // SAFETY: `iov` has `cnt` entries of writable memory, as for readv(2); `ud` is live.
    let r = unsafe { iovecs(iov, cnt) }.and_then(|iov| {
        let mut tmp = vec![0; total_len(iov)];
        // SAFETY: `ud` is live.
        let got = unsafe { shared(ud) }.recv(fd, &mut tmp, false, false, false)?;
        // SAFETY: the iovecs name writable memory, as for readv(2).
        unsafe { scatter(iov, &tmp[..got.len]) };
        Ok(got.len as i64)
    });
    ret(r) as ssize_t
}

pub(super) unsafe extern "C" fn pd_recvmsg(
    ud: Ud,
    fd: c_int,
    msg: *mut msghdr,
    flags: c_int,
) -> ssize_t {
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
            let (_, peek, _) = recv_flags(flags & !libc::MSG_OOB)?;
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
        let (dontwait, peek, waitall) = recv_flags(flags)?;
        let mut tmp = vec![0; total_len(iov)];
        // SAFETY: `ud` is live.
        let got = unsafe { shared(ud) }.recv(fd, &mut tmp, dontwait, peek, waitall)?;
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

pub(super) unsafe extern "C" fn pd_send(
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

pub(super) unsafe extern "C" fn pd_write(
    ud: Ud,
    fd: c_int,
    buf: *const c_void,
    len: usize,
) -> ssize_t {
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

pub(super) unsafe extern "C" fn pd_sendto(
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

pub(super) unsafe extern "C" fn pd_writev(
    ud: Ud,
    fd: c_int,
    iov: *const iovec,
    cnt: c_int,
) -> ssize_t {
    // SAFETY: `iov` has `cnt` entries of readable memory, as for writev(2); `ud` is live.
    let r = unsafe { iovecs(iov, cnt) }
        .and_then(|iov| unsafe { gather(iov) })
        .and_then(|data| unsafe { shared(ud) }.send(fd, &data, false, SendFlags::default()));
    ret(r.map(|n| n as i64)) as ssize_t
}

pub(super) unsafe extern "C" fn pd_sendmsg(
    ud: Ud,
    fd: c_int,
    msg: *const msghdr,
    flags: c_int,
) -> ssize_t {
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
