//! The packets and the clock: `netdev_send` hands the stack a packet the script injects,
//! `netdev_receive` gives packetdrill the next one the stack sends (with its virtual time), and
//! `usleep` and `gettimeofday` move and read the virtual clock.

use std::ffi::{c_int, c_void};

use libc::{timeval, timezone};

use super::pointers::in_buf;
use super::{shared, Ud};

pub(super) unsafe extern "C" fn pd_netdev_send(ud: Ud, buf: *const c_void, len: usize) -> c_int {
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

pub(super) unsafe extern "C" fn pd_netdev_receive(
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

pub(super) unsafe extern "C" fn pd_usleep(ud: Ud, usec: libc::useconds_t) -> c_int {
    // SAFETY: `ud` is live.
    unsafe { shared(ud) }.usleep(u64::from(usec));
    0
}

pub(super) unsafe extern "C" fn pd_gettimeofday(
    ud: Ud,
    tv: *mut timeval,
    _tz: *mut timezone,
) -> c_int {
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
