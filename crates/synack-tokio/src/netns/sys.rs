//! The system calls [`NetNs`](super::NetNs) makes: the only unsafe code of the namespace
//! support, each call with what makes it sound.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Sends SIGKILL to `pid`; a process that is already gone is no error worth reporting.
pub(super) fn kill(pid: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the caller passes a
    // process listed as living in its own private namespace.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Whether the process runs as root (TUN devices and `ip netns` need CAP_NET_ADMIN).
pub(super) fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Moves the calling thread into the network namespace that `ns` (an open
/// `/var/run/netns/NAME`) refers to.
pub(super) fn enter_netns(ns: &File) -> io::Result<()> {
    // SAFETY: setns(2) takes a file descriptor and a flag; `ns` is an open file that outlives
    // the call, and CLONE_NEWNET limits the change to this thread's network namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
