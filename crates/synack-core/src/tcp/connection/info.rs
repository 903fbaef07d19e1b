//! The connection's side of [`TcpInfo`]: the snapshot taken from its state, and the
//! per-connection settings that sockets change after the connection exists. (Here rather
//! than in `tcp/info.rs`, which defines the types and so imports nothing from the connection.)

use std::sync::Arc;
use std::time::Duration;

use super::Connection;
use crate::tcp::info::TcpInfo;
use crate::tcp::State;
use crate::time::Instant;

impl Connection {
    /// The snapshot at `now`.
    pub(crate) fn info(&self, now: Instant) -> TcpInfo {
        let mss = self.snd.mss.max(1);
        let segs = |bytes: usize| bytes.div_ceil(mss).min(u32::MAX as usize) as u32;
        let flight = self.snd.max - self.snd.una;
        let sacked = self.snd.scoreboard.sacked_bytes();
        let mut lost = match self.lost_boundary() {
            Some(b) if b > self.snd.una => self.snd.scoreboard.unsacked_between(self.snd.una, b),
            _ => 0,
        };
        let mut retrans = self.snd.rack.retransmitted_in_flight(self.snd.una, mss);
        // A tail loss probe that resent the last segment is no retransmission to Linux's
        // count (`tcp_send_loss_probe` resends through `__tcp_retransmit_skb`, which leaves
        // `retrans_out` alone) while its episode lasts and the segment is not SACKed.
        if let (Some(high), true) = (self.recovery.tlp_high_seq, self.recovery.tlp_retrans) {
            if high > self.snd.una && !self.snd.scoreboard.covers(high - 1, high) {
                retrans = retrans.saturating_sub(1);
            }
        }
        if let (true, Some(high)) = (self.after_rto(), self.recovery.rto_recover) {
            // A timeout marks everything then out and not SACKed lost, the segments resent
            // before among it (Linux's `tcp_timeout_mark_lost`, which clears their
            // retransmitted marks too), and they stay lost as the go-back resends them:
            // what is resent from then on is what `retrans` counts.
            let una = self.snd.una;
            lost = lost.max(self.snd.scoreboard.unsacked_between(una, high));
            retrans = if self.sack_ok {
                let since = self.recovery.rto_at.unwrap_or(now);
                self.snd.rack.retransmitted_since(una, since, mss)
            } else {
                // Without SACK the go-back has resent [SND.UNA, SND.NXT) below `high_seq`.
                segs(self.snd.nxt.min(high).max(una) - una) as usize
            };
        }
        // TCP_CA_Loss from the timeout until what was in flight then is acknowledged, as
        // Linux leaves it only when SND.UNA reaches `high_seq`, or without SACK goes past
        // it (`loss_held`).
        let ca_state = if self.after_rto() || self.loss_held() {
            4
        } else if self.recovery.recover.is_some() {
            3
        } else if self.recovery.cwr.is_some() {
            2
        } else if sacked > 0 || lost > 0 || (!self.sack_ok && self.recovery.dupacks > 0) {
            // Disorder: something SACKed or lost, or without SACK a duplicate ACK counted as
            // one segment gone (Linux's `tcp_try_keep_open`: `tcp_left_out`); with SACK, a
            // duplicate ACK that SACKs nothing leaves the state open.
            1
        } else {
            0
        };
        let ssthresh = self.cc.ssthresh();
        // The timestamp option every segment carries (RFC 7323 §3.2, 10 bytes padded to 12),
        // which Linux takes out of `mss_cache` and `advmss`.
        let ts_len = if self.ts.enabled { 12 } else { 0 };
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
        // Linux's `write_seq - snd_nxt`: a FIN queued and not sent counts as its byte of
        // sequence space (`tcp_send_fin` adds it to `write_seq`), as `SIOCOUTQNSD` counts it.
        let fin_unsent = self.snd.fin_queued && self.snd.fin_seq.is_none();
        let unsent = self.notsent() + usize::from(fin_unsent);
        let (busy_time, rwnd_limited, sndbuf_limited) = self.chrono.report(now);
        // Linux's `tcpi_bytes_acked` sums SND.UNA's moves (`tcp_snd_una_update`): the FIN
        // counts, and an active open's SYN, whose ACK moves it (a listener's child starts
        // past its SYN); counted past the 32-bit wrap. `tcpi_bytes_received` sums RCV.NXT's
        // moves past the SYN (`tcp_rcv_nxt_update`, and `tcp_fastopen_add_skb` for a Fast
        // Open SYN's data): the receive buffer's stream position, which never wraps, and the
        // FIN taken in order.
        let bytes_acked = self
            .acked_seq_space()
            .saturating_sub(u64::from(self.passive));
        let bytes_received = self.rcv.buffer.received() + u64::from(self.rcv.fin_received);
        let (loss, segments) = (self.counters.get(), self.segments);
        TcpInfo {
            state: Some(self.state),
            ca_state,
            retransmits: self.timeouts.min(255) as u8,
            backoff: self.backoff.max(u32::from(self.persist_backoff)).min(255) as u8,
            probes: self.probes_out.min(255) as u8,
            options,
            snd_wscale: if self.wscale_ok { self.snd.wscale } else { 0 },
            rcv_wscale: if self.wscale_ok { self.rcv.wscale } else { 0 },
            rto: self.current_rto(),
            ato: self.rcv.delack.reported_ato(),
            snd_mss: self.snd.mss.saturating_sub(ts_len) as u32,
            rcv_mss: self.rcv.delack.rcv_mss as u32,
            advmss: self.rcv.mss.saturating_sub(ts_len) as u32,
            unacked: segs(flight),
            sacked: segs(sacked),
            lost: segs(lost),
            retrans: retrans.min(u32::MAX as usize) as u32,
            total_retrans: self.retransmits,
            last_data_recv: now.saturating_duration_since(self.last_data_recv),
            last_ack_recv: now.saturating_duration_since(self.last_ack_recv),
            pmtu: u32::from(self.pmtu.route_mss()) + if self.local.is_ipv6() { 60 } else { 40 },
            rtt: self.rtt.srtt().unwrap_or_default(),
            rttvar: self.rttvar_or_zero(),
            min_rtt: self.rtt.min_rtt().unwrap_or_default(),
            // Linux: tcp_reordering (3) at first, at most tcp_max_reordering (300).
            // Without SACK, the duplicate ACKs that start a recovery (`reno_dupthresh`).
            reordering: self.reordering_degree().min(300) as u32,
            snd_ssthresh: if ssthresh >= (u32::MAX as usize) / 2 {
                0x7fff_ffff
            } else {
                segs(ssthresh)
            },
            // During recovery the window in force is the one PRR sets (RFC 6937).
            // Whole segments, rounded down (at least one): Linux counts cwnd in packets and
            // adds one only once enough has been acknowledged for it, where synack's window
            // in bytes grows by the byte.
            snd_cwnd: (if self.recovery.recover.is_some() {
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
            segs_out: segments.segs_out,
            segs_in: segments.segs_in,
            data_segs_out: segments.data_segs_out,
            data_segs_in: segments.data_segs_in,
            bytes_sent: segments.bytes_sent,
            bytes_retrans: segments.bytes_retrans,
            delivered: self.delivered,
            rto_count: loss.rto,
            rto_recoveries: loss.rto_recoveries,
            rto_time: Duration::from_millis(u64::from(loss.rto_time_ms))
                + loss.rto_stamp.map_or(Duration::ZERO, |since| now - since),
            tlp_count: loss.tlp,
            tlp_recoveries: loss.tlp_recoveries,
            recoveries: loss.recoveries,
            lost_retransmits: loss.lost_retransmits,
            undos: loss.undos,
            dsacks_received: loss.dsacks_received,
            dsacks_dubious: loss.dsacks_dubious,
            dsack_dups: loss.dsack_dups,
            ooo_received: loss.ooo_received,
            ooo_dropped: loss.ooo_dropped,
            dsacks_sent: loss.dsacks_sent,
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
        Arc::make_mut(&mut self.cfg).recv_buffer_locked = Some(bytes);
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
    /// Linux's `keepalive_time_elapsed` measures it, but as Linux arms its timer:
    /// - turned on from off, the first probe waits a whole idle time from `now`
    ///   (`tcp_set_keepalive`), so that a connection quiet for hours is not probed at once;
    /// - a new idle time counts from the last segment heard (`tcp_sock_set_keepidle_locked`
    ///   re-arms the timer for what is left of it), and a probe already out is followed
    ///   then, not at its interval;
    /// - a new interval or count changes no timer already running.
    pub(crate) fn set_keepalive(
        &mut self,
        now: Instant,
        keepalive: Option<crate::KeepaliveConfig>,
    ) {
        match (self.cfg.keepalive, keepalive) {
            (None, Some(k)) => self.timers.keepalive = Some(now + k.idle),
            (Some(was), Some(k)) if was.idle != k.idle => self.rearm_keepalive_for(now, k.idle),
            _ => {}
        }
        Arc::make_mut(&mut self.cfg).keepalive = keepalive;
    }

    /// `TCP_KEEPIDLE` set again, to the value it has: Linux's `tcp_sock_set_keepidle_locked`
    /// re-arms the timer all the same, for what is left of the idle time counted from the
    /// last segment heard, so the floor a recent `SO_KEEPALIVE` set goes, and a probe out
    /// unanswered is followed at once once the idle time has passed. Nothing with keepalive
    /// off.
    pub(crate) fn rearm_keepalive(&mut self, now: Instant) {
        if let Some(k) = self.cfg.keepalive {
            self.rearm_keepalive_for(now, k.idle);
        }
    }

    /// The keepalive timer for an idle time of `idle` from the last segment heard, or `now`
    /// if that has run out already (Linux re-arms for what is left of it, at least nothing).
    /// With no probe out, this only replaces the floor that `keepalive_deadline` puts under
    /// the idle deadline; left without one, that deadline could lie behind `now`.
    fn rearm_keepalive_for(&mut self, now: Instant, idle: Duration) {
        self.timers.keepalive = Some((self.last_heard() + idle).max(now));
    }

    /// `TCP_LINGER2` (see `Endpoint::set_linger2`): read when the connection reaches
    /// FIN-WAIT-2 after the application's close, or is closed there. A time of zero is
    /// none set; one past `LINGER2_MAX` is that (Linux's `TCP_FIN_TIMEOUT_MAX`).
    pub(crate) fn set_linger2(&mut self, linger2: Option<crate::options::Linger2>) {
        use crate::options::{Linger2, LINGER2_MAX};
        let linger2 = match linger2 {
            Some(Linger2::Timeout(t)) if t.is_zero() => None,
            Some(Linger2::Timeout(t)) => Some(Linger2::Timeout(t.min(LINGER2_MAX))),
            other => other,
        };
        if linger2 != self.cfg.linger2 {
            Arc::make_mut(&mut self.cfg).linger2 = linger2;
        }
    }

    /// `TCP_LINGER2` as set.
    pub(crate) fn linger2(&self) -> Option<crate::options::Linger2> {
        self.cfg.linger2
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
        self.lower_mss_clamp(mss);
    }
}
