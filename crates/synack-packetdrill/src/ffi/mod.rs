//! The C side: packetdrill's `struct packetdrill_interface` (packetdrill.h) and the functions
//! it points to. Every pointer packetdrill hands over is turned into a Rust value here, and
//! every `unsafe` block says why it holds.
//!
//! The functions the table points to are split by concern, each in its own module:
//!
//! - `io`: reading and writing (`read`, `recv`, `recvmsg`, `write`, `send`, `sendmsg` and
//!   their kin), with their flags and TCP Fast Open's `sendto`;
//! - `sockets`: the other socket calls (`socket`, `bind`, `listen`, `accept`, `connect`,
//!   `close`, `shutdown`, `fcntl`, `ioctl`, the socket options), `poll` and `epoll`, `pipe`
//!   and `splice`;
//! - `netdev`: the packets packetdrill injects and sniffs, and the virtual clock it reads;
//! - `pointers`: C memory read and written: socket addresses, iovecs and buffers.
//!
//! This file holds the table itself, its entry point and `free`, and the errno helpers.

use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};

use libc::{iovec, msghdr, pollfd, sockaddr, socklen_t, ssize_t, timeval, timezone};

use crate::flags::Flags;
use crate::stack::{Shared, SysResult};

mod io;
mod netdev;
mod pointers;
mod sockets;

use io::{
    pd_read, pd_readv, pd_recv, pd_recvfrom, pd_recvmsg, pd_send, pd_sendmsg, pd_sendto, pd_write,
    pd_writev,
};
use netdev::{pd_gettimeofday, pd_netdev_receive, pd_netdev_send, pd_usleep};
use sockets::{
    pd_accept, pd_bind, pd_close, pd_connect, pd_epoll_create, pd_epoll_ctl, pd_epoll_wait,
    pd_fcntl, pd_getsockopt, pd_ioctl, pd_listen, pd_pipe, pd_poll, pd_setsockopt, pd_shutdown,
    pd_socket, pd_splice,
};

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
    /// Variadic in C (`int cmd, ...`); see `sockets::pd_fcntl`.
    fcntl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    /// Variadic in C (`unsigned long request, ...`); see `sockets::pd_ioctl`.
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

// ---------------------------------------------------------------------------------------------
// The functions in the table. packetdrill calls each with the userdata it got from init and
// with pointers valid for the call, as the corresponding libc call would get them. `free` is
// here, the others in `io`, `sockets` and `netdev`.
// ---------------------------------------------------------------------------------------------

unsafe extern "C" fn pd_free(ud: Ud) {
    if ud.is_null() {
        return;
    }
    // SAFETY: `ud` is the Box made in init; packetdrill frees it once, after all other calls.
    let s = unsafe { Box::from_raw(ud as *mut Shared) };
    s.shutdown_all();
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
