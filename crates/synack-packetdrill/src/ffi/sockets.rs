//! The table's other socket calls: `socket`, `bind`, `listen`, `accept`, `connect`, `close`
//! and `shutdown`; `fcntl`, `ioctl` and the socket options; waiting with `poll` and `epoll`;
//! and the pipes scripts `splice` through.

use std::ffi::{c_int, c_ulong, c_void};

use libc::{pollfd, sockaddr, socklen_t};

use super::pointers::{in_buf, is_unspec, read_sockaddr, write_sockaddr};
use super::{ret, set_errno, shared, traced, Ud};

pub(super) unsafe extern "C" fn pd_socket(
    ud: Ud,
    domain: c_int,
    ty: c_int,
    protocol: c_int,
) -> c_int {
    // SAFETY: `ud` is live (packetdrill calls us only between init and free).
    let s = unsafe { shared(ud) };
    let r = s.socket(domain, ty, protocol);
    traced(s, format_args!("socket({domain}, {ty}, {protocol})"), r) as c_int
}

pub(super) unsafe extern "C" fn pd_bind(
    ud: Ud,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
    // SAFETY: `ud` is live; `addr` has `len` bytes, as for bind(2).
    let s = unsafe { shared(ud) };
    // SAFETY: `addr` has `len` readable bytes, as for bind(2).
    let r = unsafe { read_sockaddr(addr, len) }.and_then(|a| s.bind(fd, a));
    traced(s, format_args!("bind({fd})"), r.map(|()| 0)) as c_int
}

pub(super) unsafe extern "C" fn pd_listen(ud: Ud, fd: c_int, backlog: c_int) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.listen(fd, backlog).map(|()| 0);
    traced(s, format_args!("listen({fd}, {backlog})"), r) as c_int
}

pub(super) unsafe extern "C" fn pd_accept(
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

pub(super) unsafe extern "C" fn pd_connect(
    ud: Ud,
    fd: c_int,
    addr: *const sockaddr,
    len: socklen_t,
) -> c_int {
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

/// `int (*fcntl)(void *, int fd, int cmd, ...)`: packetdrill passes at most one more int.
/// On the System V x86-64 and AArch64 Linux ABIs a variadic int travels in the same register
/// as a fixed fourth int argument, so this non-variadic definition reads it; for F_GETFL it
/// is garbage and unused.
pub(super) unsafe extern "C" fn pd_fcntl(ud: Ud, fd: c_int, cmd: c_int, arg: c_int) -> c_int {
    // SAFETY: `ud` is live.
    ret(unsafe { shared(ud) }.fcntl(fd, cmd, arg)) as c_int
}

/// `int (*ioctl)(void *, int fd, unsigned long request, ...)`: packetdrill passes an `int *`
/// for SIOCINQ/SIOCOUTQ (as above, it arrives where a fixed pointer argument would).
pub(super) unsafe extern "C" fn pd_ioctl(
    ud: Ud,
    fd: c_int,
    request: c_ulong,
    arg: *mut c_int,
) -> c_int {
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

pub(super) unsafe extern "C" fn pd_close(ud: Ud, fd: c_int) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.close(fd).map(|()| 0);
    traced(s, format_args!("close({fd})"), r) as c_int
}

pub(super) unsafe extern "C" fn pd_shutdown(ud: Ud, fd: c_int, how: c_int) -> c_int {
    // SAFETY: `ud` is live.
    let s = unsafe { shared(ud) };
    let r = s.shutdown(fd, how).map(|()| 0);
    traced(s, format_args!("shutdown({fd}, {how})"), r) as c_int
}

pub(super) unsafe extern "C" fn pd_getsockopt(
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

pub(super) unsafe extern "C" fn pd_setsockopt(
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

pub(super) unsafe extern "C" fn pd_poll(
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

pub(super) unsafe extern "C" fn pd_epoll_create(ud: Ud, size: c_int) -> c_int {
    if size <= 0 {
        set_errno(libc::EINVAL);
        return -1;
    }
    // SAFETY: `ud` is live.
    ret(unsafe { shared(ud) }.epoll_create()) as c_int
}

pub(super) unsafe extern "C" fn pd_epoll_ctl(
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

pub(super) unsafe extern "C" fn pd_epoll_wait(
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

pub(super) unsafe extern "C" fn pd_pipe(ud: Ud, fds: *mut c_int) -> c_int {
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
pub(super) unsafe extern "C" fn pd_splice(
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
