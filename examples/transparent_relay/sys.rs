//! The relay's only unsafe code: the open-file limit, which std has no wrapper for. Each
//! call says what makes it sound.
#![allow(unsafe_code)]

use std::io;

/// Raises the soft limit on open files (RLIMIT_NOFILE) to the hard limit and returns the
/// soft limit now in force. The usual soft limit, 1024, is a guard for programs that
/// `select(2)` on descriptors; the relay never does, and holds a socket per flow.
pub(crate) fn raise_fd_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` through the pointer, which points at a live,
    // writable `rlimit` of ours for the whole call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur >= limit.rlim_max {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit(2) only reads the `rlimit` the pointer points at, which lives across
    // the call; raising the soft limit up to the hard one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        // A hard limit of RLIM_INFINITY is above fs.nr_open, which the kernel refuses: the
        // old soft limit stays, and the caller's warning says so.
        return Ok(limit.rlim_cur);
    }
    Ok(raised.rlim_cur)
}
