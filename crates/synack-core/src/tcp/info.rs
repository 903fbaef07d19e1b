//! A snapshot of one connection, after Linux's `struct tcp_info` (`ss -ti`), and the
//! per-connection settings that sockets change after the connection exists.

use std::sync::Arc;
use std::time::Duration;

use crate::tcp::connection::Connection;
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
    /// The RTO's backoff exponent, kept until an RTT sample (Linux `tcpi_backoff`).
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
    /// The MSS we send with.
    pub snd_mss: u32,
    /// The MSS we advertised.
    pub rcv_mss: u32,
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
    /// Time since data last arrived.
    pub last_data_recv: Duration,
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
    /// Data bytes the peer acknowledged (RFC 4898 tcpEStatsAppHCThruOctetsAcked).
    pub bytes_acked: u64,
    /// Data bytes received in order (RFC 4898 tcpEStatsAppHCThruOctetsReceived).
    pub bytes_received: u64,
    /// Segments the peer is known to have received, acknowledged or SACKed (Linux
    /// `tcpi_delivered`): the handshake's SYN (or SYN-ACK) counts as one, with the data a
    /// Fast Open SYN carried, and each acknowledgment counts what it newly covers in segments
    /// of the sending MSS.
    pub delivered: u32,
    /// Retransmission timeouts survived, the SYN's or SYN-ACK's included (Linux
    /// TcpExtTCPTimeouts, per connection). Each gave the connection a new IPv6 flow label
    /// (Linux's `timeout_rehash`).
    pub rto_count: u32,
    /// Tail loss probes sent (Linux TCPLossProbes).
    pub tlp_count: u32,
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

/// What a connection counts of its loss recovery, for [`TcpInfo`] (Linux keeps these
/// machine-wide in `nstat`; here they are per connection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LossCounters {
    pub rto: u32,
    pub tlp: u32,
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
}

impl Connection {
    /// The snapshot at `now`.
    pub(crate) fn info(&self, now: Instant) -> TcpInfo {
        let mss = self.snd.mss.max(1);
        let segs = |bytes: usize| bytes.div_ceil(mss).min(u32::MAX as usize) as u32;
        let flight = self.snd.max - self.snd.una;
        let sacked = self.snd.scoreboard.sacked_bytes();
        let lost = match self.lost_boundary() {
            Some(b) if b > self.snd.una => self.snd.scoreboard.unsacked_between(self.snd.una, b),
            _ => 0,
        };
        // TCP_CA_Loss from the timeout until what was in flight then is acknowledged, as
        // Linux leaves it only when SND.UNA reaches `high_seq`.
        let ca_state = if self.after_rto() {
            4
        } else if self.recovery.recover.is_some() {
            3
        } else if self.recovery.cwr.is_some() {
            2
        } else if self.recovery.dupacks > 0 || sacked > 0 {
            1
        } else {
            0
        };
        let ssthresh = self.cc.ssthresh();
        let mut options = 0;
        if self.ts.enabled {
            options |= 1;
        }
        if self.sack_ok {
            options |= 2;
        }
        if self.wscale_ok {
            options |= 4;
        }
        if self.syn_data_acked() {
            options |= 32;
        }
        let unsent = self.notsent();
        let (busy_time, rwnd_limited, sndbuf_limited) = self.chrono.report(now);
        // Sequence space less the SYN (and FIN) it spends: exact for up to 4 GiB each way.
        let synced = self.is_synchronized() || self.state == State::Closed;
        let (bytes_acked, bytes_received) = if synced && self.snd.una != self.snd.iss {
            let acked = (self.snd.una - self.snd.iss)
                .saturating_sub(1)
                .saturating_sub(usize::from(self.snd.fin_acked()));
            let received = (self.rcv.nxt - self.rcv.irs)
                .saturating_sub(1)
                .saturating_sub(usize::from(self.rcv.fin_received));
            (acked as u64, received as u64)
        } else {
            (0, 0)
        };
        TcpInfo {
            state: Some(self.state),
            ca_state,
            retransmits: self.timeouts.min(255) as u8,
            backoff: self.backoff.min(255) as u8,
            probes: self.probes_out.min(255) as u8,
            options,
            snd_wscale: if self.wscale_ok { self.snd.wscale } else { 0 },
            rcv_wscale: if self.wscale_ok { self.rcv.wscale } else { 0 },
            rto: self.current_rto(),
            ato: self.rcv.delack.ato,
            snd_mss: self.snd.mss as u32,
            rcv_mss: self.rcv.mss as u32,
            unacked: segs(flight),
            sacked: segs(sacked),
            lost: segs(lost),
            retrans: self
                .snd
                .rack
                .retransmitted_in_flight(self.snd.una, mss)
                .min(u32::MAX as usize) as u32,
            total_retrans: self.retransmits,
            last_data_recv: now.saturating_duration_since(self.last_recv),
            rtt: self.rtt.srtt().unwrap_or_default(),
            rttvar: self.rttvar_or_zero(),
            min_rtt: self.rtt.min_rtt().unwrap_or_default(),
            // Linux: tcp_reordering (3) at first, at most tcp_max_reordering (300).
            reordering: segs(self.snd.rack.reorder_distance()).clamp(3, 300),
            snd_ssthresh: if ssthresh >= (u32::MAX as usize) / 2 {
                0x7fff_ffff
            } else {
                segs(ssthresh)
            },
            // During recovery with SACK the window in force is the one PRR sets (RFC 6937).
            // Whole segments, rounded down (at least one): Linux counts cwnd in packets and
            // adds one only once enough has been acknowledged for it, where synack's window
            // in bytes grows by the byte.
            snd_cwnd: (if self.sack_ok && self.recovery.recover.is_some() {
                self.recovery.prr_cwnd
            } else {
                self.cwnd()
            } / mss)
                .clamp(1, u32::MAX as usize) as u32,
            notsent_bytes: unsent.min(u32::MAX as usize) as u32,
            snd_wnd: self.snd.wnd.min(u32::MAX as usize) as u32,
            rcv_wnd: (self.rcv.adv - self.rcv.nxt).min(u32::MAX as usize) as u32,
            send_buffer: self.send_buffer_size().min(u32::MAX as usize) as u32,
            recv_buffer: self.rcv.buffer.capacity().min(u32::MAX as usize) as u32,
            send_queued: self.snd.buffer.len().min(u32::MAX as usize) as u32,
            bytes_acked,
            bytes_received,
            delivered: self.delivered,
            rto_count: self.counters.rto,
            tlp_count: self.counters.tlp,
            recoveries: self.counters.recoveries,
            lost_retransmits: self.counters.lost_retransmits,
            undos: self.counters.undos,
            dsacks_received: self.counters.dsacks_received,
            dsacks_dubious: self.counters.dsacks_dubious,
            dsack_dups: self.counters.dsack_dups,
            ooo_received: self.counters.ooo_received,
            ooo_dropped: self.counters.ooo_dropped,
            dsacks_sent: self.counters.dsacks_sent,
            busy_time,
            rwnd_limited,
            sndbuf_limited,
        }
    }

    fn rttvar_or_zero(&self) -> Duration {
        if self.rtt.srtt().is_some() {
            self.rtt.rttvar()
        } else {
            Duration::ZERO
        }
    }

    /// Fix the send buffer at `bytes` and stop it from auto-tuning (Linux SO_SNDBUF, which
    /// sets SOCK_SNDBUF_LOCK).
    pub(crate) fn set_send_buffer(&mut self, bytes: usize) {
        if self.cfg.skb_accounting {
            self.snd.sndbuf = bytes;
        } else {
            self.snd.buffer.set_capacity(bytes);
        }
        Arc::make_mut(&mut self.cfg).send_buffer_max = bytes;
    }

    /// Fix the receive buffer at `bytes` and stop it from auto-tuning (Linux SO_RCVBUF, which
    /// sets SOCK_RCVBUF_LOCK). Never below what it holds plus the window already offered: a
    /// window, once offered, is not taken back (RFC 9293 §3.8.6).
    pub(crate) fn set_recv_buffer(&mut self, bytes: usize) {
        let offered = if self.is_synchronized() {
            (self.rcv.adv - self.rcv.nxt) + self.rcv.buffer.len()
        } else {
            0
        };
        let bytes = bytes.max(offered);
        self.rcv.buffer.set_capacity(bytes);
        Arc::make_mut(&mut self.cfg).recv_buffer_max = self.rcv.buffer.capacity();
    }

    /// Fail the connection once sent data stays unacknowledged this long (TCP_USER_TIMEOUT);
    /// `None` leaves it to the retry count.
    pub(crate) fn set_user_timeout(&mut self, timeout: Option<Duration>) {
        Arc::make_mut(&mut self.cfg).user_timeout = timeout;
    }

    /// Keepalive probing on or off, with its timing (SO_KEEPALIVE, TCP_KEEPIDLE,
    /// TCP_KEEPINTVL, TCP_KEEPCNT). The idle time runs from the last segment received, as
    /// Linux's `keepalive_time_elapsed` measures it.
    pub(crate) fn set_keepalive(&mut self, keepalive: Option<crate::KeepaliveConfig>) {
        Arc::make_mut(&mut self.cfg).keepalive = keepalive;
    }

    /// SYN retransmissions before an active open fails (TCP_SYNCNT).
    pub(crate) fn set_syn_retries(&mut self, retries: u32) {
        Arc::make_mut(&mut self.cfg).syn_retries = retries;
    }

    /// Clamp the MSS (TCP_MAXSEG) before the handshake: the one we advertise, if our SYN is
    /// not out yet, and the one we send with. Once the handshake is done the value changes
    /// nothing, as Linux's: `setsockopt` only records it in `rx_opt.user_mss`, which is read
    /// when a SYN is built or a SYN's MSS option is parsed (`tcp_connect_init`,
    /// `tcp_parse_options`); the sending MSS stays the handshake's `mss_clamp`, lowered only
    /// by the path MTU.
    pub(crate) fn clamp_mss(&mut self, mss: usize) {
        if !matches!(self.state, State::Closed | State::SynSent) {
            return;
        }
        if self.backoff == 0 {
            self.rcv.mss = self.rcv.mss.min(mss);
        }
        if self.snd.mss > mss {
            self.snd.mss = mss;
            self.cc.set_mss(mss);
        }
        self.limit_restored_mss(mss);
    }
}
