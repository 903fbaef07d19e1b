//! Errors as errnos: the result type of every call, and the errno Linux returns for each of
//! the core's errors.

use synack_core::Error;

/// A result whose error is an errno.
pub type SysResult<T> = Result<T, i32>;

/// The errno Linux returns for each core error.
pub fn errno(e: Error) -> i32 {
    e.errno()
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
