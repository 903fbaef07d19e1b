//! Typed errors, mapped onto [`std::io::ErrorKind`] as the Linux kernel maps its errnos.

use std::io;

/// Why a connection failed or an operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An RST answered our SYN (ECONNREFUSED).
    #[error("connection refused")]
    ConnectionRefused,
    /// An RST arrived on a synchronized connection (ECONNRESET).
    #[error("connection reset by peer")]
    ConnectionReset,
    /// SYN retries, data retransmissions, keepalive probes or the user timeout ran out
    /// (ETIMEDOUT).
    #[error("connection timed out")]
    TimedOut,
    /// The connection was aborted locally (ECONNABORTED).
    #[error("connection aborted")]
    ConnectionAborted,
    /// Writing after a local shutdown or after the connection closed (EPIPE).
    #[error("broken pipe")]
    BrokenPipe,
    /// An ICMP error named the connection: host unreachable (EHOSTUNREACH).
    #[error("no route to host")]
    HostUnreachable,
    /// An ICMP error named the connection: network unreachable (ENETUNREACH).
    #[error("network is unreachable")]
    NetworkUnreachable,
    /// The operation cannot complete now; try again after the matching event (EAGAIN).
    #[error("operation would block")]
    WouldBlock,
    /// The local address and port are taken (EADDRINUSE).
    #[error("address in use")]
    AddrInUse,
    /// The local address is not one of the stack's (EADDRNOTAVAIL), or no ephemeral port is free.
    #[error("address not available")]
    AddrNotAvailable,
    /// The handle names no live connection or listener (EBADF).
    #[error("invalid handle")]
    InvalidHandle,
    /// The operation does not fit the connection's state, e.g. `send` before connecting
    /// (ENOTCONN).
    #[error("not connected")]
    NotConnected,
    /// An argument is out of range (EINVAL).
    #[error("invalid argument")]
    InvalidInput,
    /// A configured resource limit is reached (ENOBUFS).
    #[error("no buffer space available")]
    NoBufferSpace,
    /// A datagram larger than the length fields allow (`endpoint::UDP_MAX_PAYLOAD`), or than
    /// fragments within the send queue's bound can carry at a tiny MTU (EMSGSIZE).
    #[error("message too long")]
    MessageTooLong,
    /// A datagram to a broadcast address: synack has no `SO_BROADCAST` (EACCES).
    #[error("permission denied")]
    PermissionDenied,
}

impl Error {
    /// The [`io::ErrorKind`] that std's own sockets report for the matching errno.
    pub fn kind(self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::ConnectionRefused => K::ConnectionRefused,
            Error::ConnectionReset => K::ConnectionReset,
            Error::TimedOut => K::TimedOut,
            Error::ConnectionAborted => K::ConnectionAborted,
            Error::BrokenPipe => K::BrokenPipe,
            Error::HostUnreachable => K::HostUnreachable,
            Error::NetworkUnreachable => K::NetworkUnreachable,
            Error::WouldBlock => K::WouldBlock,
            Error::AddrInUse => K::AddrInUse,
            Error::AddrNotAvailable => K::AddrNotAvailable,
            Error::InvalidHandle => K::InvalidInput,
            Error::NotConnected => K::NotConnected,
            Error::InvalidInput => K::InvalidInput,
            Error::NoBufferSpace => K::OutOfMemory,
            // std maps EMSGSIZE to no stable kind; tokio's UdpSocket reports it as an
            // uncategorized OS error. InvalidInput is the nearest stable kind: the argument
            // is too large.
            Error::MessageTooLong => K::InvalidInput,
            Error::PermissionDenied => K::PermissionDenied,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_the_kernel() {
        assert_eq!(
            Error::ConnectionRefused.kind(),
            io::ErrorKind::ConnectionRefused
        );
        assert_eq!(Error::TimedOut.kind(), io::ErrorKind::TimedOut);
        assert_eq!(
            Error::ConnectionReset.kind(),
            io::ErrorKind::ConnectionReset
        );
        assert_eq!(Error::BrokenPipe.kind(), io::ErrorKind::BrokenPipe);
        let io: io::Error = Error::TimedOut.into();
        assert_eq!(io.kind(), io::ErrorKind::TimedOut);
        assert_eq!(io.to_string(), "connection timed out");
    }
}
