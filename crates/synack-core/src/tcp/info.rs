//! A snapshot of one connection, after Linux's `struct tcp_info` (`ss -ti`), and the
//! per-connection settings that sockets change after the connection exists (set, and the
//! snapshot taken, in `tcp/connection/info.rs`).

use std::time::Duration;

use crate::tcp::State;
use crate::time::Instant;

/// What a connection looks like now: Linux's `TCP_INFO`, in the units Linux uses (times in
/// microseconds unless named otherwise, windows and counts in segments where Linux counts
/// segments). Fields the core does not track are zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// The RFC 9293 state.
    pub state: Option<State>,
    /// Linux's congestion-avoidance state: 0 open, 1 disorder (SACKs or duplicate ACKs seen),
    /// 2 CWR (reducing after an ECN congestion mark), 3 fast recovery, 4 loss (after an RTO).
    pub ca_state: u8,
    /// Retransmission timeouts since SND.UNA last moved (Linux `tcpi_retransmits`).
    pub retransmits: u8,
    /// The RTO's backoff exponent, kept until an RTT sample, or while zero-window probes go
    /// unanswered by an open window, theirs (Linux `tcpi_backoff`: one `icsk_backoff` serves
    /// both timers).
    pub backoff: u8,
    /// Unanswered probes in a row, keepalive or zero-window (`icsk_probes_out`).
    pub probes: u8,
    /// Options in use: 1 timestamps, 2 SACK, 4 window scaling, 32 the SYN's data was
    /// acknowledged in the SYN-ACK (TCP Fast Open) (Linux `TCPI_OPT_*`).
    pub options: u8,
    /// The peer's window scale.
    pub snd_wscale: u8,
    /// Our window scale.
    pub rcv_wscale: u8,
    /// The retransmission timeout, backed off.
    pub rto: Duration,
    /// The delayed-ACK timeout as it stands (Linux's `tcpi_ato`): zero before any data
    /// arrived, then adapting from [`Config::delayed_ack`](crate::Config::delayed_ack).
    pub ato: Duration,
    /// The payload of a full-sized segment we send (Linux's `mss_cache`, `tcpi_snd_mss`):
    /// the send MSS less the timestamp option when timestamps are on, 1448 for an MSS of
    /// 1460. `TCP_MAXSEG` reads the same.
    pub snd_mss: u32,
    /// The size of the peer's segments as estimated from those that arrive (Linux's
    /// `icsk_ack.rcv_mss`): at most 536 until a larger one arrives. The delayed ACK waits
    /// for more than this much data before it acknowledges at once.
    pub rcv_mss: u32,
    /// The MSS we advertised, less the timestamp option when timestamps are on (Linux's
    /// `tcpi_advmss`).
    pub advmss: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// Segments SACKed.
    pub sacked: u32,
    /// Segments taken as lost.
    pub lost: u32,
    /// Segments retransmitted and not yet acknowledged or SACKed (Linux `tcpi_retrans`,
    /// its `retrans_out`).
    pub retrans: u32,
    /// Retransmissions in total.
    pub total_retrans: u32,
    /// Time since data last arrived (Linux `tcpi_last_data_recv`).
    pub last_data_recv: Duration,
    /// Time since an ACK was last taken (Linux `tcpi_last_ack_recv`): a pure ACK moves it,
    /// not `last_data_recv`; an old ACK moves neither.
    pub last_ack_recv: Duration,
    /// The path MTU the connection sizes its segments by (Linux `tcpi_pmtu`): the link's, or
    /// a lower one an ICMP report gave while it holds.
    pub pmtu: u32,
    /// The smoothed RTT.
    pub rtt: Duration,
    /// The RTT variation.
    pub rttvar: Duration,
    /// The smallest RTT seen.
    pub min_rtt: Duration,
    /// How far the path has been seen to reorder, in segments: Linux's `tcpi_reordering`,
    /// which starts at its `tcp_reordering` default of 3 and grows to the largest distance a
    /// late segment arrived behind the highest SACKed one.
    pub reordering: u32,
    /// The slow-start threshold in segments (Linux reports 0x7fffffff before the first loss).
    pub snd_ssthresh: u32,
    /// The congestion window in segments.
    pub snd_cwnd: u32,
    /// Bytes queued and not yet sent.
    pub notsent_bytes: u32,
    /// The peer's window, scaled.
    pub snd_wnd: u32,
    /// Our advertised window, scaled.
    pub rcv_wnd: u32,
    /// Bytes the send buffer holds at most now.
    pub send_buffer: u32,
    /// Bytes the receive buffer holds at most now.
    pub recv_buffer: u32,
    /// Bytes queued for sending (sent and unacknowledged, and unsent).
    pub send_queued: u32,
    /// Sequence space the peer acknowledged, as Linux's `tcpi_bytes_acked` sums SND.UNA's
    /// moves (RFC 4898 tcpEStatsAppHCThruOctetsAcked): the data, a FIN, and an active open's
    /// SYN, whose acknowledgment moves SND.UNA (a passive open starts past its SYN).
    pub bytes_acked: u64,
    /// Sequence space received in order past the peer's SYN, as Linux's
    /// `tcpi_bytes_received` sums RCV.NXT's moves (RFC 4898
    /// tcpEStatsAppHCThruOctetsReceived): the data and a FIN.
    pub bytes_received: u64,
    /// Segments sent, a super-segment counted as the segments it is cut into (Linux
    /// `tcpi_segs_out`, a `u32` that wraps): everything the connection sent as itself, pure
    /// ACKs and its own resets included; not a reset answering a stray segment, which Linux
    /// sends from its control socket.
    pub segs_out: u32,
    /// Segments received, a GRO packet counted as the segments it coalesced (Linux
    /// `tcpi_segs_in`): all that reached the connection, acceptable or not. A passive open
    /// counts its SYN, as Linux's child socket starts at 1.
    pub segs_in: u32,
    /// Of `segs_out`, those carrying data (Linux `tcpi_data_segs_out`).
    pub data_segs_out: u32,
    /// Of `segs_in`, those carrying data (Linux `tcpi_data_segs_in`).
    pub data_segs_in: u32,
    /// Data bytes sent, retransmissions included (Linux `tcpi_bytes_sent`, RFC 4898
    /// tcpEStatsPerfHCDataOctetsOut).
    pub bytes_sent: u64,
    /// Data bytes retransmitted (Linux `tcpi_bytes_retrans`, RFC 4898
    /// tcpEStatsPerfOctetsRetrans).
    pub bytes_retrans: u64,
    /// Segments the peer is known to have received, acknowledged or SACKed (Linux
    /// `tcpi_delivered`): the handshake's SYN (or SYN-ACK) counts as one, with the data a
    /// Fast Open SYN carried, and each acknowledgment counts what it newly covers in segments
    /// of the sending MSS.
    pub delivered: u32,
    /// Retransmission timeouts survived, the SYN's or SYN-ACK's included, but not those
    /// that probe a window the peer shut under data in flight (Linux's `tcpi_total_rto`,
    /// which `tcp_retransmit_timer`'s zero-window branch does not count). Each gave the
    /// connection a new IPv6 flow label (Linux's `timeout_rehash`).
    pub rto_count: u32,
    /// Episodes of retransmission timeouts (Linux's `tcpi_total_rto_recoveries`): each
    /// begins with a timeout when none is under way, or with the first since SND.UNA last
    /// moved (`icsk_retransmits` at 0), which then ends the one under way uncounted.
    pub rto_recoveries: u32,
    /// Time spent in them (Linux's `tcpi_total_rto_time`), the one under way included: from
    /// an episode's first timeout until the handshake completes, or the data then in flight
    /// is acknowledged (or the timeout undone, or a lost retransmission starts a fast
    /// recovery).
    pub rto_time: Duration,
    /// Tail loss probes sent (Linux TCPLossProbes).
    pub tlp_count: u32,
    /// Tail loss probes whose episode ended in a loss they repaired, which reduced the
    /// window (Linux TCPLossProbeRecovery).
    pub tlp_recoveries: u32,
    /// Fast recoveries entered (Linux TCPSackRecovery / TCPRenoRecovery).
    pub recoveries: u32,
    /// Retransmissions found lost themselves, by RACK (Linux TCPLostRetransmit).
    pub lost_retransmits: u32,
    /// Reductions undone as spurious, of a fast retransmit or a retransmission timeout, by
    /// D-SACK or timestamps (Linux TCPDSACKUndo, TCPFullUndo, TCPLossUndo).
    pub undos: u32,
    /// D-SACK blocks received (Linux TCPDSACKRecv).
    pub dsacks_received: u32,
    /// Of those, ignored as dubious: longer than any window offered, or reporting more
    /// segments twice than were ever sent twice (Linux TCPDSACKIgnoredDubious).
    pub dsacks_dubious: u32,
    /// Segments reported received twice by D-SACK blocks not too long to believe (Linux's
    /// `tcpi_dsack_dups`).
    pub dsack_dups: u32,
    /// Segments received out of order and held (Linux TCPOFOQueue).
    pub ooo_received: u32,
    /// Segments dropped for want of room: too many out-of-order ranges or past the window
    /// (Linux TCPOFODrop, TCPRcvQDrop).
    pub ooo_dropped: u32,
    /// D-SACK blocks sent (Linux TCPDSACKOldSent).
    pub dsacks_sent: u32,
    /// Time with data queued or in flight (Linux `tcpi_busy_time`), the two limits below
    /// included.
    pub busy_time: Duration,
    /// Of that, time the peer's window held data back that the congestion window would
    /// have let go (Linux `tcpi_rwnd_limited`).
    pub rwnd_limited: Duration,
    /// Of that, time all data was sent within the congestion window while the application
    /// waited for room in the send buffer (Linux `tcpi_sndbuf_limited`).
    pub sndbuf_limited: Duration,
}

/// What a connection counts of the segments it sends and receives, for [`TcpInfo`]: Linux's
/// `segs_out`, `segs_in`, `data_segs_*`, `bytes_sent` and `bytes_retrans`, which wrap as
/// Linux's do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SegmentCounts {
    pub segs_out: u32,
    pub segs_in: u32,
    pub data_segs_out: u32,
    pub data_segs_in: u32,
    pub bytes_sent: u64,
    pub bytes_retrans: u64,
}

impl SegmentCounts {
    /// `segments` left (a super-segment's count), carrying `payload` data bytes, `resent`
    /// of them sent before (Linux's `__tcp_transmit_skb` and `__tcp_retransmit_skb`).
    pub fn on_sent(&mut self, segments: u32, payload: usize, resent: usize) {
        self.segs_out = self.segs_out.wrapping_add(segments);
        if payload > 0 {
            self.data_segs_out = self.data_segs_out.wrapping_add(segments);
            self.bytes_sent = self.bytes_sent.wrapping_add(payload as u64);
            self.bytes_retrans = self.bytes_retrans.wrapping_add(resent.min(payload) as u64);
        }
    }

    /// `segments` arrived (a GRO packet's count), with data or not (Linux's `tcp_segs_in`).
    pub fn on_received(&mut self, segments: u32, data: bool) {
        self.segs_in = self.segs_in.wrapping_add(segments);
        if data {
            self.data_segs_in = self.data_segs_in.wrapping_add(segments);
        }
    }
}

/// What a connection counts of its loss recovery, for [`TcpInfo`] (Linux keeps these
/// machine-wide in `nstat`; here they are per connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LossCounters {
    pub rto: u32,
    pub tlp: u32,
    pub tlp_recoveries: u32,
    pub recoveries: u32,
    pub lost_retransmits: u32,
    pub undos: u32,
    pub dsacks_received: u32,
    pub dsacks_dubious: u32,
    pub dsack_dups: u32,
    pub ooo_received: u32,
    pub ooo_dropped: u32,
    pub dsacks_sent: u32,
    /// New IPv6 flow labels drawn because data came again under a new label (Linux's
    /// `TCPDuplicateDataRehash`).
    pub dup_data_rehash: u32,
    /// Timeout episodes begun, and the milliseconds spent in those that ended
    /// ([`TcpInfo::rto_recoveries`], [`TcpInfo::rto_time`]).
    pub rto_recoveries: u32,
    pub rto_time_ms: u32,
    /// When the episode under way began (Linux's `rto_stamp`).
    pub rto_stamp: Option<Instant>,
}

/// [`LossCounters`], on the heap once one of them moves: most connections never lose,
/// reorder or probe, and an idle connection's footprint is counted in bytes
/// (`tests/idle_footprint.rs`): eight bytes in every connection, where the counters are 72.
#[derive(Debug, Default)]
pub(crate) struct LossCountersBox(Option<Box<LossCounters>>);

impl LossCountersBox {
    /// The counts (all zero until one moved).
    pub fn get(&self) -> LossCounters {
        self.0.as_deref().copied().unwrap_or_default()
    }

    /// The counts, to move one.
    pub fn get_mut(&mut self) -> &mut LossCounters {
        self.0.get_or_insert_with(Box::default)
    }

    /// Adds `n` to the count `field` picks, saturating.
    pub fn add(&mut self, field: fn(&mut LossCounters) -> &mut u32, n: u32) {
        let count = field(self.get_mut());
        *count = count.saturating_add(n);
    }

    /// A retransmission timeout at `now`: counted, and the start of an episode if none is
    /// under way or `first` says it is the first since SND.UNA last moved (Linux's
    /// `tcp_update_rto_stats`, with `icsk_retransmits` still 0). An episode started so over
    /// one under way takes its place, as Linux sets `rto_stamp` again: the time of the old
    /// one up to now is not counted.
    pub fn on_rto(&mut self, now: Instant, first: bool) {
        let c = self.get_mut();
        c.rto = c.rto.saturating_add(1);
        if first || c.rto_stamp.is_none() {
            c.rto_recoveries = c.rto_recoveries.saturating_add(1);
            c.rto_stamp = Some(now);
        }
    }

    /// The timeout episode under way, if any, ended at `now` (Linux's
    /// `tcp_update_rto_time`, as the connection leaves `TCP_CA_Loss`).
    pub fn end_rto_episode(&mut self, now: Instant) {
        if let Some(c) = self.0.as_deref_mut() {
            if let Some(since) = c.rto_stamp.take() {
                let ms = u32::try_from((now - since).as_millis()).unwrap_or(u32::MAX);
                c.rto_time_ms = c.rto_time_ms.saturating_add(ms);
            }
        }
    }
}
