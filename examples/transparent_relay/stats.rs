//! The relay's counters, and the summary it prints on exit: flows and sessions by how they
//! ended, bytes each way, and what was dropped and why.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::buffers;
use crate::tcp::Outcome;
use crate::udp::UdpEnd;

/// Counted across all flows and sessions, from any task.
#[derive(Default)]
pub(crate) struct Stats {
    tcp_closed: AtomicU64,
    tcp_reset: AtomicU64,
    tcp_refused: AtomicU64,
    tcp_unreachable: AtomicU64,
    tcp_timed_out: AtomicU64,
    tcp_failed: AtomicU64,
    tcp_accept_failed: AtomicU64,
    tcp_accept_timed_out: AtomicU64,
    /// SYNs to the TUN's own link, refused without an upstream attempt.
    tcp_own_link: AtomicU64,
    /// SYNs to loopback, unspecified, broadcast or multicast destinations, refused without
    /// an upstream attempt.
    tcp_martian: AtomicU64,
    /// SYNs dropped at a limit (--max-flows), or whose connect made room for a newer one
    /// (--max-pending-connects).
    pub(crate) tcp_busy: AtomicU64,
    /// Flows relaying now (their handshakes done both ways).
    pub(crate) tcp_open: AtomicU64,
    /// Bytes relayed, counted as they move (flows still open included).
    pub(crate) tcp_bytes_up: AtomicU64,
    pub(crate) tcp_bytes_down: AtomicU64,
    udp_idle: AtomicU64,
    udp_evicted_end: AtomicU64,
    udp_failed: AtomicU64,
    /// Sessions evicted to make room (--max-udp-sessions).
    pub(crate) udp_evicted: AtomicU64,
    /// Datagrams taken from the stack.
    pub(crate) udp_datagrams_in: AtomicU64,
    /// Datagrams dropped either way: queues full, not relayable (the TUN's own link and
    /// martian destinations among them), a failed send, a reply from elsewhere, fragmented
    /// or malformed (SOCKS5), or lost to an ICMP error.
    pub(crate) udp_dropped: AtomicU64,
    /// Of those, datagrams to the TUN's own link (never relayed: they would loop).
    pub(crate) udp_own_link: AtomicU64,
    /// Of those, datagrams to loopback, unspecified, 0.0.0.0/8, broadcast, multicast or
    /// link-local destinations (never relayed: see [`crate::destination::martian`]).
    pub(crate) udp_martian: AtomicU64,
    /// Of those, datagrams the upstream refused or a filter on the way prohibited (a hard ICMP
    /// error on the relay's socket: see `UdpUpstream::unreachable`), or that had no route
    /// to their destination (`Upstream::open_udp`), each answered to the client with the
    /// same from its destination.
    pub(crate) udp_refused: AtomicU64,
    /// Of those, first datagrams of new pairs dropped while the sessions churned, to be let
    /// through on their client's retry (see [`UdpSessions`](crate::udp::UdpSessions)).
    pub(crate) udp_held_back: AtomicU64,
    /// Sessions relaying now (their upstream socket or association open).
    pub(crate) udp_open: AtomicU64,
    /// Relayed, counted as they move (sessions still open included).
    udp_bytes_up: AtomicU64,
    udp_datagrams_up: AtomicU64,
    udp_bytes_down: AtomicU64,
    udp_datagrams_down: AtomicU64,
}

impl Stats {
    /// A flow ended (its bytes were counted as they moved, by `buffers::pump`).
    pub(crate) fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Closed => &self.tcp_closed,
            Outcome::Reset => &self.tcp_reset,
            Outcome::Refused => &self.tcp_refused,
            Outcome::Unreachable => &self.tcp_unreachable,
            Outcome::TimedOut => &self.tcp_timed_out,
            Outcome::Failed => &self.tcp_failed,
            Outcome::AcceptFailed => &self.tcp_accept_failed,
            Outcome::AcceptTimedOut => &self.tcp_accept_timed_out,
            Outcome::OwnLink => &self.tcp_own_link,
            Outcome::Martian => &self.tcp_martian,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram of `len` bytes relayed upstream (`up`) or back to its client.
    pub(crate) fn udp_relayed(&self, up: bool, len: usize) {
        let (bytes, datagrams) = if up {
            (&self.udp_bytes_up, &self.udp_datagrams_up)
        } else {
            (&self.udp_bytes_down, &self.udp_datagrams_down)
        };
        bytes.fetch_add(len as u64, Ordering::Relaxed);
        datagrams.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended (its datagrams were counted as they moved, `udp_relayed`).
    pub(crate) fn record_udp(&self, end: UdpEnd) {
        let counter = match end {
            UdpEnd::Idle => &self.udp_idle,
            UdpEnd::Evicted => &self.udp_evicted_end,
            UdpEnd::Failed => &self.udp_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn print_summary(&self) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!(
            "summary: tcp flows: open at exit {}; ended: closed {} reset {} refused {} \
             unreachable {} timed-out {} failed {} accept-failed {} accept-timed-out {} \
             own-link {} martian {} dropped-at-limit {}; bytes up {} down {}",
            g(&self.tcp_open),
            g(&self.tcp_closed),
            g(&self.tcp_reset),
            g(&self.tcp_refused),
            g(&self.tcp_unreachable),
            g(&self.tcp_timed_out),
            g(&self.tcp_failed),
            g(&self.tcp_accept_failed),
            g(&self.tcp_accept_timed_out),
            g(&self.tcp_own_link),
            g(&self.tcp_martian),
            g(&self.tcp_busy),
            g(&self.tcp_bytes_up),
            g(&self.tcp_bytes_down),
        );
        // Sessions still open at exit are not counted as ended; what they relayed is in the
        // bytes and datagrams.
        println!(
            "summary: udp sessions: open at exit {}; ended: idle {} evicted {} failed {} \
             (evictions to make room {}); datagrams in {} dropped {} (to the own link {}, \
             martian {}, unreachable upstream {}, held back for a retry {}); up {} B ({} \
             datagrams) down {} B ({} datagrams)",
            g(&self.udp_open),
            g(&self.udp_idle),
            g(&self.udp_evicted_end),
            g(&self.udp_failed),
            g(&self.udp_evicted),
            g(&self.udp_datagrams_in),
            g(&self.udp_dropped),
            g(&self.udp_own_link),
            g(&self.udp_martian),
            g(&self.udp_refused),
            g(&self.udp_held_back),
            g(&self.udp_bytes_up),
            g(&self.udp_datagrams_up),
            g(&self.udp_bytes_down),
            g(&self.udp_datagrams_down),
        );
        // Flows still open at exit may hold one; ended flows, however they ended, hold none.
        println!(
            "summary: large copy buffers held {} (at most {})",
            buffers::large_in_use(),
            buffers::LARGE_MAX,
        );
    }
}
