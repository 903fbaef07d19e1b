//! Per-connection settings: the sockets API's `SO_*` and `TCP_*` options that a socket sets
//! before it connects or listens (the runtime's `TcpSocket` builds them).

use crate::config::KeepaliveConfig;
use crate::error::Error;

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
    /// the MTU allows. Linux's setter takes [`USER_MSS_MIN`](crate::USER_MSS_MIN) to
    /// [`USER_MSS_MAX`](crate::USER_MSS_MAX), as [`Endpoint::clamp_mss`](crate::Endpoint::clamp_mss)
    /// does; a smaller value set here is raised to 48, the least MSS sent with whatever
    /// a peer's SYN asks (Linux's `tcp_min_snd_mss`).
    pub max_segment: Option<u16>,
    /// `SO_KEEPALIVE` with `TCP_KEEPIDLE`, `TCP_KEEPINTVL` and `TCP_KEEPCNT`: probe an idle
    /// connection. `None`: as the endpoint's `Config::keepalive` says.
    pub keepalive: Option<KeepaliveConfig>,
    /// `SO_KEEPALIVE` turned off: no probes, even where `Config::keepalive` has every
    /// connection probe (Linux's `setsockopt(SO_KEEPALIVE, 0)` turns off what the sysctls
    /// would not). Wins over `keepalive`.
    pub keepalive_off: bool,
    /// `TCP_NODELAY`: Nagle's algorithm off.
    pub nodelay: Option<bool>,
    /// `TCP_CORK`: hold back segments shorter than a full one, whatever is in flight, until
    /// the cork is removed (or the persist timer fires).
    pub cork: Option<bool>,
    /// `TCP_FASTOPEN_CONNECT`: an active open uses TCP Fast Open (RFC 7413): its SYN asks
    /// for a cookie, or, with one, waits for the first write and carries it.
    pub fast_open_connect: Option<bool>,
    /// `TCP_FASTOPEN` on a listener: TCP Fast Open's server side (RFC 7413 §4.2.2), with at
    /// most this many connections taken with Fast Open and not past the handshake yet (§5.1:
    /// a server "MUST" bound them; clamped to `Config::max_backlog`). A SYN with a valid
    /// cookie then has its data accepted at once: the connection is handed to `accept`
    /// before the handshake's final ACK, with the data readable, and may send at once; a
    /// SYN asking for a cookie gets one in the SYN-ACK. `Some(0)` or `None`: off.
    pub fast_open: Option<u32>,
    /// `TCP_FASTOPEN_NO_COOKIE` on a Fast Open listener: a SYN with data has it accepted
    /// with or without a cookie (RFC 7413 §4.1.1 lets a server skip the cookie where it
    /// trusts its clients; Linux's `tcp_fastopen` bit 0x200 does so for every listener). As
    /// in Linux, a SYN without data that carries a cookie request, or any cookie, is taken
    /// as a Fast Open child too, and its SYN-ACK carries no cookie.
    pub fast_open_no_cookie: Option<bool>,
    /// `IP_TOS` / `IPV6_TCLASS`: the DS byte of every packet the connection sends, SYN and
    /// SYN-ACK included. Only its six DSCP bits are used: the two ECN bits are the stack's
    /// (RFC 3168 §6.1; Linux masks them for TCP sockets too).
    pub tos: Option<u8>,
    /// `IP_TTL` / `IPV6_UNICAST_HOPS`: the IPv4 TTL or IPv6 hop limit of every packet the
    /// connection sends, SYN and SYN-ACK included. `None`: the stack's default, 64 (Linux's
    /// `ip_default_ttl` and IPv6 `hop_limit`). As on Linux, what TIME-WAIT answers after the
    /// ACK that began it, and the resets answering segments no connection owns, keep the
    /// default.
    pub hop_limit: Option<u8>,
    /// `SO_REUSEADDR`: the port may be shared with another socket that sets it too, as
    /// Linux's `inet_bind_conflict` allows: a bound socket with one that binds, a
    /// connection or its TIME-WAIT entry with a socket that binds or listens (not two
    /// listeners). A connection keeps it, and so does its TIME-WAIT entry. `None`: off for a
    /// connection, on for a listener and the connections it accepts, as tokio's
    /// `TcpListener::bind` sets it.
    pub reuse_address: Option<bool>,
    /// `SO_REUSEPORT`: several sockets that all set it may bind, and listen on, the same
    /// address and port; a listener among them takes each new connection by a hash of its
    /// 4-tuple (Linux's `reuseport_select_sock`), so that they share the clients. Off by
    /// default, as on Linux. The sockets of a Linux group must also have one owner (uid);
    /// an endpoint's sockets all have the one application.
    pub reuse_port: bool,
}

impl SocketOptions {
    /// Whether a socket's options are ones Linux's `setsockopt` would have taken; the
    /// endpoint's calls that take options refuse others with `InvalidInput` (EINVAL) before
    /// anything is made. Only the keepalive timing can be out of range
    /// ([`KeepaliveConfig::check`]): the sizes are raised to their floors, as Linux raises
    /// them.
    pub fn check(&self) -> Result<(), Error> {
        match self.keepalive {
            Some(keepalive) => keepalive.check(),
            None => Ok(()),
        }
    }
}

/// How one write is to be sent: the `send(2)` flags that shape segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendFlags {
    /// `MSG_MORE`: more data follows at once; hold a short segment back as `TCP_CORK` would,
    /// until the next write without it, the next ACK, or `set_nodelay(true)` (Linux pushes
    /// with `TCP_NAGLE_CORK` for this write only).
    pub more: bool,
    /// `MSG_EOR`: the write ends a record. Later writes are never put in the same segment as
    /// its last byte, sent first or again (Linux's `TCP_SKB_CB(skb)->eor`), and the segment
    /// ending the record carries PSH.
    pub eor: bool,
}

impl SendFlags {
    /// `MSG_MORE`.
    pub const MORE: SendFlags = SendFlags {
        more: true,
        eor: false,
    };
    /// `MSG_EOR`.
    pub const EOR: SendFlags = SendFlags {
        more: false,
        eor: true,
    };
}

// Defined in `config`, which checks `Config`'s buffers against it, so that `config` need
// not import from `options` (which takes `KeepaliveConfig` from it).
#[doc(inline)]
pub use crate::config::MIN_BUFFER;
