//! Per-connection settings: the sockets API's `SO_*` and `TCP_*` options that a socket sets
//! before it connects or listens (the runtime's `TcpSocket` builds them).

use std::time::Duration;

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
    /// `TCP_DEFER_ACCEPT` on a listener: a handshake's final ACK that brings no data does
    /// not complete it. The connection waits, half-open, for its first data (then `accept`
    /// returns it with that data readable) for about this long, counted as Linux counts
    /// it: in SYN-ACK retransmissions, as many as a schedule from 1 s doubling up to 120 s
    /// needs to cover it (see [`defer_accept_period`]). The SYN-ACK is not resent
    /// meanwhile until the period's last timeout, the peer's last chance; a bare ACK after
    /// that completes the handshake. A server whose clients speak first (HTTP) then wakes
    /// only for connections with a request, and an idle connection never reaches its
    /// accept queue. `None` or zero: off.
    pub defer_accept: Option<Duration>,
    /// `TCP_LINGER2`: what the connection does in FIN-WAIT-2 once closed (see
    /// `Endpoint::set_linger2`); on a listener, what the connections it accepts do, as
    /// Linux's children inherit it. `None`: `Config::fin_timeout`.
    pub linger2: Option<Linger2>,
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

/// What a connection the application has closed does in FIN-WAIT-2, its FIN acknowledged
/// and the peer's not come (`TCP_LINGER2`; see `Endpoint::set_linger2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger2 {
    /// Wait this long for the peer's FIN, not `Config::fin_timeout`; at most
    /// [`LINGER2_MAX`] (Linux's `TCP_FIN_TIMEOUT_MAX`), and never less than 3.5 RTOs.
    Timeout(Duration),
    /// Do not wait: the ACK of our FIN after the close is answered with an RST, and a close
    /// in FIN-WAIT-2 resets at once (a negative `TCP_LINGER2`).
    Abort,
}

/// The longest [`Linger2::Timeout`] (Linux's `TCP_FIN_TIMEOUT_MAX`, 120 s).
pub const LINGER2_MAX: Duration = Duration::from_secs(120);

/// The first SYN-ACK timeout and the longest, in seconds, as Linux counts `TCP_DEFER_ACCEPT`
/// with them (`TCP_TIMEOUT_INIT` and `TCP_RTO_MAX`), whatever the endpoint's own timeouts.
const DEFER_FIRST_TIMEOUT: u64 = 1;
const DEFER_MAX_TIMEOUT: u64 = 120;

/// The SYN-ACK timeouts in seconds, as Linux counts `TCP_DEFER_ACCEPT` in them: from 1 s,
/// doubling up to 120 s.
fn defer_timeouts() -> impl Iterator<Item = u64> {
    std::iter::successors(Some(DEFER_FIRST_TIMEOUT), |t| {
        Some((t * 2).min(DEFER_MAX_TIMEOUT))
    })
}

/// `TCP_DEFER_ACCEPT`'s period as SYN-ACK retransmissions (Linux's `secs_to_retrans`): the
/// fewest whose timeouts add up to the period in whole seconds (rounded up), at most 255; 0
/// for none.
pub(crate) fn defer_accept_retransmits(period: Duration) -> u8 {
    let secs = period
        .as_secs()
        .saturating_add(u64::from(period.subsec_nanos() > 0));
    let mut covered = 0;
    let needed = defer_timeouts()
        .take(usize::from(u8::MAX))
        .take_while(|t| {
            let short = covered < secs;
            covered += t;
            short
        })
        .count();
    needed as u8
}

/// The period a `TCP_DEFER_ACCEPT` of `period` covers once counted in retransmissions, as
/// Linux's `getsockopt` reads it back (`retrans_to_secs`): 2 s reads as 3 s, 1 s as 1 s.
pub fn defer_accept_period(period: Duration) -> Duration {
    let retransmits = usize::from(defer_accept_retransmits(period));
    Duration::from_secs(defer_timeouts().take(retransmits).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defer_accept_counts_in_syn_ack_retransmissions_as_linux() {
        let s = Duration::from_secs;
        // (period set, retransmissions, period read back): Linux's secs_to_retrans and
        // retrans_to_secs with a 1 s first timeout and 120 s the longest.
        for (set, retransmits, read) in [
            (s(0), 0, s(0)),
            (s(1), 1, s(1)),
            (s(2), 2, s(3)),
            (s(3), 2, s(3)),
            (s(4), 3, s(7)),
            (Duration::from_millis(1500), 2, s(3)),
            (s(200), 8, s(247)),
            (s(100_000), 255, s(1 + 2 + 4 + 8 + 16 + 32 + 64 + 120 * 248)),
            (
                Duration::MAX,
                255,
                s(1 + 2 + 4 + 8 + 16 + 32 + 64 + 120 * 248),
            ),
        ] {
            assert_eq!(defer_accept_retransmits(set), retransmits, "{set:?}");
            assert_eq!(defer_accept_period(set), read, "{set:?}");
        }
    }
}
