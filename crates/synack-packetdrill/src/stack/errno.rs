//! Errors as errnos: the result type of every call, and the errno Linux returns for each of
//! the core's errors.

use synack_core::Error;

/// A result whose error is an errno.
pub type SysResult<T> = Result<T, i32>;

/// The errno Linux returns for each core error.
pub fn errno(e: Error) -> i32 {
    match e {
        Error::ConnectionRefused => libc::ECONNREFUSED,
        Error::ConnectionReset => libc::ECONNRESET,
        Error::TimedOut => libc::ETIMEDOUT,
        Error::ConnectionAborted => libc::ECONNABORTED,
        Error::BrokenPipe => libc::EPIPE,
        Error::HostUnreachable => libc::EHOSTUNREACH,
        Error::NetworkUnreachable => libc::ENETUNREACH,
        Error::WouldBlock => libc::EAGAIN,
        Error::AddrInUse => libc::EADDRINUSE,
        Error::AddrNotAvailable => libc::EADDRNOTAVAIL,
        Error::InvalidHandle => libc::EBADF,
        Error::NotConnected => libc::ENOTCONN,
        Error::InvalidInput => libc::EINVAL,
        Error::NoBufferSpace => libc::ENOBUFS,
        Error::MessageTooLong => libc::EMSGSIZE,
        Error::PermissionDenied => libc::EACCES,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_are_linuxs() {
        assert_eq!(errno(Error::ConnectionRefused), libc::ECONNREFUSED);
        assert_eq!(errno(Error::BrokenPipe), libc::EPIPE);
        assert_eq!(errno(Error::WouldBlock), libc::EAGAIN);
    }
}
