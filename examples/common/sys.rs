//! The examples' one piece of `unsafe` (the relay has its own `sys`): taking ownership of
//! the TUN file that `--tun-fd` names, which this process inherited open.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// `/dev/net/tun`'s device number: a misc device (major 10), Linux's `TUN_MINOR`.
const TUN_DEV: (u32, u32) = (10, 200);

/// Whether [`inherited_tun`] has taken its descriptor: it takes one, once.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes descriptor `fd`, which this process inherited open on `/dev/net/tun`: a file a
/// privileged helper opened and attached to its TUN interface before starting us. Refuses,
/// touching nothing, a descriptor that is not open, is standard input, output or error, or
/// is not a `/dev/net/tun` file (so that a wrong number can never take and close a file
/// this process opened itself, such as the runtime's epoll instance), and a second call.
pub fn inherited_tun(fd: RawFd) -> io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--tun-fd {fd}: not a descriptor another program passed (0 to 2 are stdio)"),
        ));
    }
    // SAFETY: `stat` is plain old data (integers and timespecs), for which all-zero bytes
    // are a valid value; fstat overwrites it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat(2) writes one `stat` through the pointer, which points at a live,
    // writable `stat` of ours for the whole call; it takes the descriptor by value and
    // leaves it as it is.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--tun-fd {fd}: not an open file descriptor ({e})"),
        ));
    }
    let is_tun = st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && (libc::major(st.st_rdev), libc::minor(st.st_rdev)) == TUN_DEV;
    if !is_tun {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("--tun-fd {fd}: not a /dev/net/tun file"),
        ));
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("--tun-fd {fd}: the descriptor was taken already"),
        ));
    }
    // SAFETY: `fd` is open (fstat just succeeded on it) and is a TUN file, which this
    // process never opens itself: it was inherited, and nothing else in the process owns
    // it. `TAKEN` makes this the only time it is taken, so the `OwnedFd` is its only owner
    // and the only one to close it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
