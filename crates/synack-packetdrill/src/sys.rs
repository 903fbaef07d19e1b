//! The descriptors that stand for the script's sockets: the system calls the socket layer
//! ([`stack`](crate::stack)) needs, apart from the C interface in [`ffi`](crate::ffi), so
//! that neither module calls back into the other.
#![allow(unsafe_code)]

use crate::stack::SysResult;

/// A real file descriptor to stand for a socket or epoll instance: packetdrill closes the
/// live fds of its sockets with libc's own close() when a script ends, so the numbers must
/// name open files, and unique ones.
pub(crate) fn reserve_fd() -> SysResult<i32> {
    // SAFETY: eventfd takes no pointers; it returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EMFILE))
    } else {
        Ok(fd)
    }
}

/// Give back a descriptor from [`reserve_fd`] that the script closed.
pub(crate) fn release_fd(fd: i32) {
    // SAFETY: `fd` came from reserve_fd and is still ours: the script closed it through us,
    // so packetdrill will not close it again.
    unsafe { libc::close(fd) };
}
