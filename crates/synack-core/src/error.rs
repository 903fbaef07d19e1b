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
    /// An ICMP parameter problem named the connection: the path could not take our header
    /// (EPROTO, as Linux's `icmp_err_convert` and `icmpv6_err_convert` map it).
    #[error("protocol error")]
    ProtocolError,
    /// The operation cannot complete now; try again after the matching event (EAGAIN).
    #[error("operation would block")]
    WouldBlock,
    /// The local address and port are taken, or a bind to port 0 found no free ephemeral
    /// port (EADDRINUSE).
    #[error("address in use")]
    AddrInUse,
    /// The local address is not one of the stack's, or a connect found no free ephemeral
    /// port or 4-tuple (EADDRNOTAVAIL).
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
    /// An address of the other family than the socket's: an IPv6 destination for an IPv4
    /// socket (EAFNOSUPPORT).
    #[error("address family not supported by protocol")]
    AddressFamilyNotSupported,
    /// A datagram sent without a destination on a socket that is not connected
    /// (EDESTADDRREQ).
    #[error("destination address required")]
    DestinationRequired,
    /// An option read at the other family's level: IPV6_TCLASS of an IPv4 socket
    /// (EOPNOTSUPP, as Linux's `do_ip_getsockopt` answers).
    #[error("operation not supported")]
    OperationNotSupported,
    /// An option set at the other family's level: IPV6_TCLASS on an IPv4 socket
    /// (ENOPROTOOPT, as Linux's `do_ip_setsockopt` answers).
    #[error("protocol not available")]
    ProtocolNotAvailable,
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
            // std has no stable kind for EPROTO.
            Error::ProtocolError => K::Other,
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
            // std has no stable kind for either errno; the nearest ones.
            Error::AddressFamilyNotSupported => K::InvalidInput,
            Error::DestinationRequired => K::NotConnected,
            Error::OperationNotSupported => K::Unsupported,
            // std has no stable kind for ENOPROTOOPT either: the option is unsupported here.
            Error::ProtocolNotAvailable => K::Unsupported,
        }
    }
}

impl Error {
    /// The errno Linux's socket calls fail with where this error arises (what the
    /// packetdrill shim returns, and what an [`io::Error`] made from it carries on Linux: see
    /// below), as the target's `libc` numbers it: Linux's own where synack runs. (On a
    /// target without errno numbers there is none.)
    #[cfg(unix)]
    pub fn errno(self) -> i32 {
        match self {
            Error::ConnectionRefused => libc::ECONNREFUSED,
            Error::ConnectionReset => libc::ECONNRESET,
            Error::TimedOut => libc::ETIMEDOUT,
            Error::ConnectionAborted => libc::ECONNABORTED,
            Error::BrokenPipe => libc::EPIPE,
            Error::HostUnreachable => libc::EHOSTUNREACH,
            Error::NetworkUnreachable => libc::ENETUNREACH,
            Error::ProtocolError => libc::EPROTO,
            Error::WouldBlock => libc::EAGAIN,
            Error::AddrInUse => libc::EADDRINUSE,
            Error::AddrNotAvailable => libc::EADDRNOTAVAIL,
            Error::InvalidHandle => libc::EBADF,
            Error::NotConnected => libc::ENOTCONN,
            Error::InvalidInput => libc::EINVAL,
            Error::NoBufferSpace => libc::ENOBUFS,
            Error::MessageTooLong => libc::EMSGSIZE,
            Error::PermissionDenied => libc::EACCES,
            Error::AddressFamilyNotSupported => libc::EAFNOSUPPORT,
            Error::DestinationRequired => libc::EDESTADDRREQ,
            Error::OperationNotSupported => libc::EOPNOTSUPP,
            Error::ProtocolNotAvailable => libc::ENOPROTOOPT,
        }
    }

    /// Whether std reads [`errno`](Self::errno) as [`kind`](Self::kind): all but EBADF,
    /// ENOBUFS, EMSGSIZE, EAFNOSUPPORT, EDESTADDRREQ, ENOPROTOOPT and EPROTO, which std
    /// leaves uncategorized.
    #[cfg(target_os = "linux")]
    fn errno_has_kind(self) -> bool {
        !matches!(
            self,
            Error::ProtocolError
                | Error::InvalidHandle
                | Error::NoBufferSpace
                | Error::MessageTooLong
                | Error::AddressFamilyNotSupported
                | Error::DestinationRequired
                | Error::ProtocolNotAvailable
        )
    }
}

/// On Linux, an error whose errno std reads as the same [`io::ErrorKind`] becomes that OS
/// error, as tokio::net's own errors are: the same kind, the same `raw_os_error` and the same
/// message ("Connection refused (os error 111)"), so that code written against the kernel's
/// sockets, which matches `raw_os_error() == Some(libc::EADDRINUSE)`, works unchanged. The
/// seven std leaves uncategorized keep the kind [`Error::kind`] gives them, which a caller
/// can match, and carry the `Error` itself (no errno, rather than one std reads otherwise).
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        #[cfg(target_os = "linux")]
        if e.errno_has_kind() {
            return io::Error::from_raw_os_error(e.errno());
        }
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
    }

    /// Every error becomes an `io::Error` of its own kind; on Linux, all but seven carry the
    /// errno as the kernel's own sockets' errors do.
    #[cfg(target_os = "linux")]
    #[test]
    fn io_errors_keep_the_kind_and_carry_the_errno() {
        use Error::*;
        let all = [
            ConnectionRefused,
            ConnectionReset,
            TimedOut,
            ConnectionAborted,
            BrokenPipe,
            HostUnreachable,
            NetworkUnreachable,
            ProtocolError,
            WouldBlock,
            AddrInUse,
            AddrNotAvailable,
            InvalidHandle,
            NotConnected,
            InvalidInput,
            NoBufferSpace,
            MessageTooLong,
            PermissionDenied,
            AddressFamilyNotSupported,
            DestinationRequired,
            OperationNotSupported,
            ProtocolNotAvailable,
        ];
        for e in all {
            let io = io::Error::from(e);
            assert_eq!(io.kind(), e.kind(), "{e:?}");
            let raw = e.errno_has_kind().then(|| e.errno());
            assert_eq!(io.raw_os_error(), raw, "{e:?}");
            // The seven without the errno are exactly those whose errno std reads as
            // another kind (`Uncategorized`): README.md lists them.
            assert_eq!(
                io::Error::from_raw_os_error(e.errno()).kind() == e.kind(),
                e.errno_has_kind(),
                "{e:?}"
            );
        }
        assert_eq!(all.iter().filter(|e| !e.errno_has_kind()).count(), 7);
        // EPROTO, from an ICMP error, keeps a kind that can be matched; its errno is in the
        // payload.
        let io = io::Error::from(ProtocolError);
        assert_eq!((io.kind(), io.raw_os_error()), (io::ErrorKind::Other, None));
        let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
        assert_eq!(inner.map(|e| e.errno()), Some(libc::EPROTO));
        let io = io::Error::from(TimedOut);
        assert_eq!(
            io.to_string(),
            io::Error::from_raw_os_error(libc::ETIMEDOUT).to_string()
        );
        let io = io::Error::from(MessageTooLong);
        assert_eq!(io.to_string(), "message too long");
    }
}
