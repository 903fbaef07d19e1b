//! Per-connection settings: the sockets API's `SO_*` and `TCP_*` options that a socket sets
//! before it connects or listens (the runtime's `TcpSocket` builds them).

use crate::config::KeepaliveConfig;

/// Settings for one connection, or for every connection a listener accepts, that override
/// the endpoint's [`Config`](crate::Config). `None` keeps the endpoint's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_RCVBUF`: the receive buffer, in bytes (at least 1 KiB). As on Linux, setting it
    /// turns receive-window auto-tuning off for the connection; the window offered never
    /// exceeds it, and the window scale offered is the smallest that covers it.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF`: the send buffer, unsent plus unacknowledged bytes (at least 1 KiB); it
    /// does not grow with the congestion window.
    pub send_buffer: Option<usize>,
    /// `TCP_MAXSEG`: the largest segment payload advertised in the SYN and sent, at most what
    /// the MTU allows and at least 64 bytes (the least taken from a peer's SYN).
    pub max_segment: Option<u16>,
    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and `TCP_KEEPCNT`: probe an idle
    /// connection.
    pub keepalive: Option<KeepaliveConfig>,
    /// `TCP_NODELAY`: Nagle's algorithm off.
    pub nodelay: Option<bool>,
}

/// The smallest buffer a socket option may set.
pub(crate) const MIN_BUFFER: usize = 1024;
