//! The connection's deadlines and what happens when each fires (RFC 9293 §3.8; RFC 6298 §5;
//! RFC 1122 §4.2.3.6 keepalive).

use std::time::Duration;

use super::{Connection, Frto};
use crate::error::Error;
use crate::tcp::State;
use crate::time::Instant;

/// What `net.ipv4.tcp_orphan_retries` at 0 (its default) means while the RTO is below its
/// ceiling (Linux's `tcp_orphan_retries`).
const ORPHAN_RETRIES: u32 = 8;

/// The RTO that `data_retries` counts from, whatever the path's (Linux's `TCP_RTO_MIN` in
/// `retransmits_timed_out`).
const MODEL_RTO: Duration = Duration::from_millis(200);

/// Every deadline a connection may have. The endpoint only asks for the earliest.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Timers {
    /// Retransmission of SYN, SYN-ACK, data or FIN (RFC 6298).
    pub retransmit: Option<Instant>,
    /// A delayed ACK is due (RFC 9293 §3.8.6.3: at most 0.5 s; Linux: 40 ms to 200 ms,
    /// 500 ms outside request/response exchanges).
    pub delayed_ack: Option<Instant>,
    /// Zero-window probe, or the SWS override (RFC 9293 §3.8.6.1, §3.8.6.2.1).
    pub persist: Option<Instant>,
    /// The keepalive timer as Linux arms it: once probing has started, the next probe;
    /// before, the earliest the first may go, when keepalive was turned on from off while
    /// the connection was open (a whole idle time from then, Linux's `tcp_set_keepalive`;
    /// otherwise the idle time counts from the last segment heard), or its idle time set
    /// (no earlier than then: one already run out is due at once). Cleared whenever
    /// `probes_out` goes back to 0, by which time the peer has been heard since.
    pub keepalive: Option<Instant>,
    /// The end of TIME-WAIT (2 MSL).
    pub time_wait: Option<Instant>,
    /// The end of an orphaned FIN-WAIT-2 (Linux tcp_fin_timeout).
    pub fin_wait2: Option<Instant>,
    /// The probe timeout of tail loss probing (RFC 8985 §7.2).
    pub tlp: Option<Instant>,
    /// When paced data may go out again.
    pub pacing: Option<Instant>,
    /// When RACK looks again at segments still inside their reordering window.
    pub rack: Option<Instant>,
    /// When emptied buffers give their storage back (`RECLAIM_AFTER` after they emptied).
    pub reclaim: Option<Instant>,
}

impl Timers {
    pub fn clear_all(&mut self) {
        *self = Timers::default();
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl Connection {
    /// The window a retransmission timeout takes the new ssthresh from, handed to the
    /// controller's `on_rto`: the congestion window, as Linux's `tcp_enter_loss` asks the
    /// algorithm for its `ssthresh` from `snd_cwnd` (CUBIC's `cubictcp_recalc_ssthresh`:
    /// 0.7 cwnd; Reno's `tcp_reno_ssthresh`: half), where RFC 5681 §3.1 eq. 4 and RFC 9438
    /// §4.8 take FlightSize. The two differ when the flow is not using its window (a lone
    /// segment after a burst): Linux then keeps most of the window it had.
    ///
    /// `None` in fast recovery or CWR: ssthresh was reduced in this window of data already,
    /// and `tcp_enter_loss` reduces it only "if it has not yet been made inside this window"
    /// (its state is Recovery or CWR and `high_seq`, our `recover` or `cwr` point, is not yet
    /// acknowledged). RFC 5681 §3.1 would reduce again from FlightSize, which after the
    /// recovery's own reduction leaves about half of the window the flow had with CUBIC (a
    /// quarter with Reno); and timeouts during recovery are common under random loss.
    ///
    /// A fast recovery whose point SND.UNA has reached, held open by SACK reneging (see
    /// `process_ack`), is not "inside this window" any more: `tcp_enter_loss` reduces again
    /// (`!after(high_seq, snd_una)`), from the window PRR left.
    pub(super) fn rto_reduce_from(&self) -> Option<usize> {
        // A timeout repeating the last one's, with nothing new acknowledged between (this
        // one counted already), holds ssthresh (RFC 5681 §3.1): Linux's `tcp_enter_loss`
        // reduces again in TCP_CA_Loss only once SND.UNA reached `high_seq` or an ACK of new
        // data reset `icsk_retransmits`. The controllers used to judge this themselves, from
        // ACKs they see only when the window limits the flow: after small requests the flag
        // stayed, and the next loss's timeout kept the ssthresh (and the undo point) of the
        // one before.
        if self.after_rto() && self.timeouts > 1 {
            return None;
        }
        match self.recovery.recover {
            Some(recover) if self.snd.una >= recover => Some(self.cwnd()),
            Some(_) => None,
            None if self.recovery.cwr.is_some() => None,
            None => Some(self.cc.window()),
        }
    }

    /// In fast recovery, or going back after a retransmission timeout over data sent before
    /// it.
    pub(super) fn in_loss_recovery(&self) -> bool {
        self.recovery.recover.is_some() || self.after_rto()
    }

    /// Going back after a retransmission timeout over data sent before it: what was in
    /// flight then is not all acknowledged yet (Linux's `TCP_CA_Loss`, until `high_seq`).
    pub(crate) fn after_rto(&self) -> bool {
        matches!(self.recovery.rto_recover, Some(r) if self.snd.una < r)
    }

    /// Without SACK, a timeout's recovery held at exactly the point it had reached: Linux
    /// stays in `TCP_CA_Loss` until an ACK goes above `high_seq` (`tcp_try_undo_recovery`:
    /// "for Reno it is MUST to prevent false fast retransmits"), so that duplicate ACKs
    /// for what the go-back resent twice start no fast retransmit.
    pub(crate) fn loss_held(&self) -> bool {
        !self.sack_ok && self.recovery.rto_recover == Some(self.snd.una)
    }

    /// Arm the probe timeout after sending new data (RFC 8985 §7.2): 2 * SRTT plus 2 ms
    /// (Linux's `TCP_TIMEOUT_MIN`, which `tcp_schedule_loss_probe` adds; with the RTT of a
    /// few dozen microseconds that a local link has, a 10 ms floor made every tail wait
    /// five times as long as Linux's), or `tcp_rto_min` in its place, for the worst-case
    /// delayed ACK, when a single packet is out, never past the RTO; before any RTT sample,
    /// the initial RTO (1 s). Only with SACK (the probe's ACK must reveal the loss), one at a
    /// time.
    ///
    /// Also in recovery and while going back after a timeout once an ACK has moved SND.UNA
    /// since it (before that the path may be dead: no probe then, as Linux sends none in its
    /// Loss state), where RFC 8985 §7.2 and Linux probe no more: there, a retransmission
    /// that is lost with nothing sent after it is found by neither RACK (no later segment is
    /// delivered to show it lost) nor anything else before the RTO, 200 ms or more. Under random loss of a few percent on a short path that was most of a bulk
    /// transfer's time. The probe there resends the first un-SACKed segment (`send_probe`):
    /// one segment per probe timeout without progress, as TLP's own budget, and the peer,
    /// which holds out-of-order data then, acknowledges it at once (RFC 5681 §4.2), so no
    /// delayed-ACK allowance is added unless nothing is SACKed. It is for paths whose RTT the
    /// RTO's 200 ms floor dwarfs: where the RTO is due within four probe timeouts anyway, as
    /// on a path of 100 ms, recovery waits for it as Linux's does
    /// (`fr-4pkt-fack-last-byte.pkt`).
    pub(super) fn arm_tlp(&mut self, now: Instant) {
        let probes = self.recovery.tlp_probes;
        if !self.sack_ok || probes >= super::MAX_TLP_PROBES || self.snd.una == self.snd.max {
            return;
        }
        // Not before the handshake is done: a Fast Open child's data in SYN-RECEIVED waits
        // on the SYN-ACK's own timer, which resends the SYN-ACK (Linux's
        // `tcp_schedule_loss_probe` returns while `fastopen_rsk` is set). With no RTT sample
        // yet, a probe at the initial RTO would take that timer's place.
        if !self.is_synchronized() {
            return;
        }
        // Not after a retransmission timeout until an ACK has moved SND.UNA again (`timeouts`
        // is then reset): the path may be dead, and probes would only send each
        // timeout's retransmission three times (Linux sends no probe in its Loss state,
        // `tcp_schedule_loss_probe`).
        if self.timeouts > 0 {
            return;
        }
        let mut pto = match self.rtt.srtt() {
            Some(srtt) => (srtt * 2 + Duration::from_millis(2)) * (1u32 << probes),
            // No RTT measured yet (a handshake whose SYN or SYN-ACK went twice, without
            // timestamps, gave none: Karn): RFC 8985 §7.2's PTO of the initial RTO, 1 s,
            // Linux's `TCP_TIMEOUT_INIT` in `tcp_schedule_loss_probe`, before the RTO's
            // 3 s fallback. One probe, as Linux sends: a second would come seconds later,
            // where the second probe is for paths whose RTT the RTO dwarfs.
            None if probes == 0 => self.cfg.initial_rto,
            None => return,
        };
        let holes_known = self.in_loss_recovery() && self.snd.scoreboard.sacked_bytes() > 0;
        // A single packet out (Linux's `packets_out == 1`, counted in segments on the wire,
        // SACKed or not; not in bytes, so two short segments are two): the peer may hold
        // its ACK for the delayed-ACK time, and `tcp_schedule_loss_probe` adds
        // `tcp_rto_min` in place of the 2 ms (only to a PTO made of SRTT).
        let measured = self.rtt.srtt().is_some();
        if measured && self.snd.rack.at_most_one_above(self.snd.una) && !holes_known {
            pto += self.rtt.min_rto().saturating_sub(Duration::from_millis(2));
        }
        let deadline = now + pto;
        let in_recovery = self.in_loss_recovery();
        match self.timers.retransmit {
            // Linux's tcp_schedule_loss_probe: "If the RTO formula yields an earlier time,
            // then use that time": outside recovery, the first probe of an episode takes the
            // RTO's place and goes at its time, and the RTO is re-armed a whole RTO after
            // it (`handle_timeout`), unbacked-off. A lone segment (a request, a FIN) on a
            // path whose RTO is its 200 ms floor is probed once this way before the backoff
            // starts, as Linux probes it.
            Some(rto) if rto <= deadline && probes == 0 && !self.in_loss_recovery() => {
                self.timers.tlp = Some(rto);
            }
            Some(rto) if rto <= deadline => self.timers.tlp = None,
            Some(rto) if in_recovery && rto < now + pto * 4 => self.timers.tlp = None,
            _ => self.timers.tlp = Some(deadline),
        }
    }

    /// When the keepalive timer fires next, if keepalives are on and the state uses them.
    ///
    /// Linux's `tcp_keepalive_timer` probes every state but CLOSE and SYN-SENT, and an
    /// orphaned FIN-WAIT-2 (which `tcp_fin_timeout` ends). SYN-RECEIVED, FIN-WAIT-1, CLOSING
    /// and LAST-ACK always have something in flight, whose retransmissions watch the peer;
    /// so the states that matter are ESTABLISHED, CLOSE-WAIT and a FIN-WAIT-2 the application
    /// still reads from (after `shutdown`), where nothing else would ever notice the peer
    /// gone.
    fn keepalive_deadline(&self) -> Option<Instant> {
        let cfg = self.cfg.keepalive?;
        let probed = match self.state {
            State::Established | State::CloseWait => true,
            State::FinWait2 => !self.app_closed,
            _ => false,
        };
        if !probed {
            return None;
        }
        // Not while there is data to send: its own timers (retransmission, persist) watch
        // the peer then, as Linux's tcp_keepalive_timer steps aside when `packets_out` or
        // the write queue is not empty.
        if !self.snd.buffer.is_empty() {
            return None;
        }
        if self.probes_out == 0 {
            let idle_out = self.last_heard() + cfg.idle;
            Some(self.timers.keepalive.map_or(idle_out, |t| t.max(idle_out)))
        } else {
            self.timers.keepalive
        }
    }

    /// The earliest deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        let mut next = earliest(t.retransmit, t.delayed_ack);
        next = earliest(next, t.persist);
        next = earliest(next, t.time_wait);
        next = earliest(next, t.fin_wait2);
        next = earliest(next, t.tlp);
        next = earliest(next, t.pacing);
        next = earliest(next, t.rack);
        next = earliest(next, t.reclaim);
        earliest(next, self.keepalive_deadline())
    }

    /// Run every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if matches!(self.timers.reclaim, Some(t) if t <= now) {
            // Whatever filled again since keeps its storage; the next time it empties arms
            // the timer again. (First, so that it runs in every state: a deadline left
            // armed would come due for ever.)
            self.timers.reclaim = None;
            self.reclaim();
            self.shrink_oversized();
        }
        if self.state == State::Closed {
            return;
        }
        if matches!(self.timers.time_wait, Some(t) if t <= now) {
            self.timers.time_wait = None;
            self.enter_closed(None);
            return;
        }
        if matches!(self.timers.fin_wait2, Some(t) if t <= now) {
            self.timers.fin_wait2 = None;
            let excess = self.fin_time().saturating_sub(self.cfg.time_wait);
            if !self.control_socket && self.state == State::FinWait2 && !excess.is_zero() {
                // A FIN-WAIT-2 longer than TIME-WAIT has waited its excess as a full
                // connection: a TIME-WAIT sock waits the excess again (Linux's
                // `tcp_keepalive_timer`). The other timers due run as well: none is left
                // behind `now`.
                self.become_fin_wait_2_sock();
                self.timers.fin_wait2 = Some(now + excess);
            } else {
                // An orphaned FIN-WAIT-2 ends silently after its time, as Linux's does; our
                // FIN was acknowledged, and the peer simply never sent its own.
                self.enter_closed(None);
                return;
            }
        }
        if let (Some(tlp), Some(rto)) = (self.timers.tlp, self.timers.retransmit) {
            if tlp <= now && tlp >= rto {
                // The probe took the RTO's place (`arm_tlp`): it goes instead, and the RTO
                // follows a whole RTO later (RFC 8985 §7.3, Linux's tcp_rearm_rto).
                self.timers.retransmit = Some(now + self.current_rto());
            }
        }
        if matches!(self.timers.retransmit, Some(t) if t <= now) {
            self.timers.retransmit = None;
            self.on_retransmit_timeout(now);
            if self.state == State::Closed {
                return;
            }
        }
        if matches!(self.timers.rack, Some(t) if t <= now) {
            self.timers.rack = None;
            self.rack_detect(now);
        }
        if matches!(self.timers.pacing, Some(t) if t <= now) {
            // Nothing to do but let the endpoint poll us for output again.
            self.timers.pacing = None;
        }
        if matches!(self.timers.tlp, Some(t) if t <= now) {
            self.timers.tlp = None;
            // RFC 8985 §7.3: send a probe (output re-arms the retransmission timer behind
            // it); in recovery too, where it resends the first un-SACKed segment.
            if self.snd.una < self.snd.max {
                self.recovery.tlp_pending = true;
                self.recovery.tlp_probes = self.recovery.tlp_probes.saturating_add(1);
            }
        }
        if matches!(self.timers.delayed_ack, Some(t) if t <= now) {
            self.timers.delayed_ack = None;
            self.rcv.ack_now = true;
            // Held SACK ACKs due (`tcp_compressed_ack_kick`) send one that covers any delayed
            // ACK as well: no delayed ACK was missed.
            if self.rcv.sack_compressed == 0 {
                let rto = self.current_rto();
                self.rcv.delack.on_timeout(rto);
            }
        }
        if matches!(self.timers.persist, Some(t) if t <= now) {
            self.timers.persist = None;
            if self.snd.max > self.snd.una {
                // Data has left since the timer was set (a cork's or the sender SWS hold's,
                // with nothing in flight then): the retransmission timer covers it now, and
                // neither a probe nor the override that lets a held tail out is due. Linux
                // keeps one timer, which sending data turns into the RTO, and its
                // `tcp_probe_timer` does nothing while packets are out.
                self.probes_out = 0;
                self.timers.keepalive = None;
            } else if self.snd.wnd == 0 {
                if self.zero_window_gives_up(now) {
                    // Linux's tcp_write_err: no RST, the error the application learns.
                    self.enter_closed(Some(self.soft_error.unwrap_or(Error::TimedOut)));
                    return;
                }
                self.probe_pending = true;
                self.probes_out = self.probes_out.saturating_add(1);
                self.persist_backoff = self.persist_backoff.saturating_add(1);
                self.timers.persist = Some(now + self.probe_interval(now));
            } else {
                // RFC 9293 §3.8.6.2.1: the override timeout lets a short segment out. It is
                // data in flight, which ends the probing episode (Linux's `tcp_send_probe0`
                // once `tcp_write_wakeup` has sent some): the backoff, and the start a user
                // timeout counts from, which the retransmission timer sets again if the
                // segment is lost (`retrans_stamp`).
                self.sws_override = true;
                self.persist_backoff = 0;
                self.retransmitting_since = None;
            }
        }
        if matches!(self.keepalive_deadline(), Some(t) if t <= now) {
            if let Some(cfg) = self.cfg.keepalive {
                // With a user timeout, it, not the count of probes, says when to give up:
                // once that long has passed since the last segment received and at least
                // one probe went unanswered (Linux's tcp_keepalive_timer; tcp(7):
                // "TCP_USER_TIMEOUT will override keepalive").
                let gives_up = match self.cfg.user_timeout {
                    Some(limit) => self.probes_out > 0 && now - self.last_heard() >= limit,
                    None => self.probes_out >= cfg.probes,
                };
                if gives_up {
                    // Linux's tcp_keepalive_timer resets the connection it gives up on
                    // (tcp_send_active_reset), in case the peer is alive after all.
                    self.rst_pending = true;
                    self.enter_closed(Some(self.soft_error.unwrap_or(Error::TimedOut)));
                    return;
                }
                self.probes_out += 1;
                self.probe_pending = true;
                self.timers.keepalive = Some(now + cfg.interval);
            }
        }
    }

    /// The later of the last data and the last ACK taken: what the keepalive idle time and
    /// its user timeout run from (Linux's `keepalive_time_elapsed`).
    pub(super) fn last_heard(&self) -> Instant {
        self.last_ack_recv.max(self.last_data_recv)
    }

    /// How long until the next zero-window probe: the RTO backed off once for each probe
    /// sent (Linux's `tcp_probe0_when`), but not past the user timeout: the probe timer fires
    /// when that runs out (`tcp_clamp_probe0_to_user_timeout`, at least TCP_TIMEOUT_MIN, 2
    /// jiffies).
    pub(super) fn probe_interval(&self, now: Instant) -> Duration {
        let next = self.rtt.backed_off(u32::from(self.persist_backoff));
        match (self.cfg.user_timeout, self.retransmitting_since) {
            (Some(limit), Some(since)) => {
                let left = (since + limit).saturating_duration_since(now);
                next.min(left.max(Duration::from_millis(2)))
            }
            _ => next,
        }
    }

    /// Whether zero-window probing stops here, as Linux's `tcp_probe_timer` decides. RFC 1122
    /// §4.2.2.17 keeps a connection open "as long as the receiving TCP continues to send
    /// acknowledgments in response to the probe segments", and any ACK resets the count of
    /// unanswered probes (`probes_out`), so a peer that answers keeps an open connection;
    /// but not past the user timeout, counted from the first probe; not past `data_retries`
    /// unanswered probes (`tcp_retries2`); and not at all for a connection the application
    /// has closed, which gives up once the backoff reaches the RTO's ceiling or after
    /// [`ORPHAN_RETRIES`] unanswered probes (`tcp_orphan_retries`), so that a peer holding
    /// its window shut cannot pin an orphan's data for ever.
    fn zero_window_gives_up(&mut self, now: Instant) -> bool {
        let since = *self.retransmitting_since.get_or_insert(now);
        if self
            .cfg
            .user_timeout
            .is_some_and(|limit| now - since >= limit)
        {
            return true;
        }
        let max_probes = if self.app_closed {
            // Linux's tcp_probe_timer: an orphan whose backoff has reached the ceiling
            // gives up once it has sent its `tcp_orphan_retries`, 0 then by default.
            let alive = self.rtt.backed_off(u32::from(self.persist_backoff)) < self.rtt.max_rto();
            let retries = self.orphan_retries(alive);
            if !alive && u32::from(self.persist_backoff) >= retries {
                return true;
            }
            retries
        } else {
            self.cfg.data_retries
        };
        self.probes_out >= max_probes
    }

    /// Linux's `tcp_orphan_retries`: the configured number, or 8 for the default 0 while
    /// the RTO is below its ceiling (`alive`). A soft error (an ICMP report) on a connection
    /// whose RTO has reached the ceiling gives up at once.
    fn orphan_retries(&self, alive: bool) -> u32 {
        let mut retries = self.cfg.orphan_retries;
        if self.soft_error.is_some() && !alive {
            retries = 0;
        }
        if retries == 0 && alive {
            retries = ORPHAN_RETRIES;
        }
        retries
    }

    /// How long data may go unacknowledged for `retries` retransmissions (Linux's
    /// `tcp_model_timeout` from `TCP_RTO_MIN`): doubling from 200 ms up to the RTO's
    /// ceiling, then at the ceiling.
    fn model_timeout(&self, retries: u32) -> Duration {
        let max = self.rtt.max_rto().max(MODEL_RTO);
        // ilog2(max / 200 ms): the doublings before the ceiling.
        let linear = (max.as_micros() / MODEL_RTO.as_micros())
            .max(1)
            .ilog2()
            .min(30);
        if retries <= linear {
            MODEL_RTO * ((2u32 << retries) - 1)
        } else {
            (MODEL_RTO * ((2u32 << linear) - 1))
                .saturating_add(max.saturating_mul(retries - linear))
        }
    }

    /// A retransmission timeout fires: whether its reduction may be undone, should the ACK
    /// after it prove it spurious (`ack.rs`, `process_loss`). As Linux's `tcp_enter_loss`
    /// calls `tcp_init_undo`: when the timeout reduces ssthresh (`reduces`), the undo starts
    /// at SND.UNA, counting the retransmissions already out as its own and keeping the stamp
    /// of the first of them. One that does not reduce keeps the undo there is: a timeout in
    /// fast recovery that recovery's (`undo_marker`, `undo_retrans` and `retrans_stamp` from
    /// `tcp_enter_recovery`), so that an ACK echoing the original flight undoes both
    /// reductions, back to the window from before the recovery
    /// (`rto-in-recovery-undone-by-timestamps.pkt`); a repeated timeout with nothing
    /// acknowledged in between the first one's (and the controller its window from before
    /// it). CWR has none to keep (`ecn.rs`).
    fn init_rto_undo(&mut self, reduces: bool) {
        if !reduces {
            return;
        }
        let in_flight = if self.sack_ok {
            self.snd
                .rack
                .retransmitted_in_flight(self.snd.una, self.snd.mss)
        } else {
            0
        };
        self.recovery.undo_marker = Some(self.snd.una);
        self.recovery.undo_retrans = in_flight;
        self.recovery.undo_dsacked = 0;
        // Without SACK there is no record of what is resent and still out: after progress
        // in the last timeout's recovery, its go-back's resends may be, and an ACK echoing
        // one of them would pass for the originals' against a newer stamp. Keep the older.
        let resent_out = in_flight > 0 || (!self.sack_ok && self.after_rto());
        if !resent_out {
            self.recovery.undo_tsval = None;
        }
    }

    /// A retransmission deadline, no later than the user timeout's end (Linux's
    /// `tcp_clamp_rto_to_user_timeout`): the connection fails when that runs out, not at the
    /// next RTO after it. The user timeout counts from `retransmitting_since`.
    pub(super) fn clamp_to_user_timeout(&self, deadline: Instant) -> Instant {
        match (self.cfg.user_timeout, self.retransmitting_since) {
            (Some(limit), Some(since)) => deadline.min(since + limit),
            _ => deadline,
        }
    }

    /// RFC 6298 §5.4–5.7 for data; the SYN and SYN-ACK schedules for the handshake.
    fn on_retransmit_timeout(&mut self, now: Instant) {
        match self.state {
            State::SynSent | State::SynReceived => {
                let active = self.state == State::SynSent || !self.passive;
                let expired = if active && self.cfg.syn_linear_timeouts > 0 {
                    // Linux 6.17+ (linear SYN timeouts): the retries run out by time, not by
                    // count, once the SYN has been out as long as `syn_retries` exponential
                    // retries would take (tcp_model_timeout), checked as each timer fires
                    // after the first.
                    let elapsed = (0..=self.backoff)
                        .map(|i| self.syn_rto_after(i))
                        .fold(Duration::ZERO, Duration::saturating_add);
                    self.backoff > 0 && elapsed >= self.syn_model_timeout()
                } else {
                    let limit = if active {
                        self.cfg.syn_retries
                    } else if self.is_fast_open_child() {
                        // One more for a Fast Open child, as Linux's tcp_fastopen_synack_timer.
                        self.cfg.synack_retries.saturating_add(1)
                    } else {
                        self.cfg.synack_retries
                    };
                    self.backoff >= limit
                };
                // A final ACK held back for TCP_DEFER_ACCEPT (Linux's `syn_ack_recalc`): the
                // half-open connection lives to the period's end, past its retries if need
                // be, and its SYN-ACK is resent only from the period's last timeout on, the
                // peer's last chance to answer it with data or an ACK that completes it.
                let deferred = !active && self.defer_acked;
                let defer = u32::from(self.cfg.defer_accept);
                let expired = expired && !(deferred && self.backoff < defer);
                // TCP_USER_TIMEOUT bounds an active open too (Linux's `tcp_write_timeout`,
                // whose `retransmits_timed_out` lets the first timeout pass whatever the
                // time): the connect fails once the SYN has been out that long.
                let user_timeout_hit = active
                    && self.backoff > 0
                    && matches!(
                        (self.cfg.user_timeout, self.retransmitting_since),
                        (Some(limit), Some(since)) if now - since >= limit
                    );
                if expired || user_timeout_hit {
                    // A passive half-open connection just goes away; an active open fails.
                    // A Fast Open child is the application's already: it fails.
                    let error = if self.passive && !self.is_fast_open_child() {
                        None
                    } else {
                        Some(self.soft_error.unwrap_or(Error::TimedOut))
                    };
                    self.enter_closed(error);
                    return;
                }
                self.backoff += 1;
                if !deferred || self.backoff >= defer {
                    self.counters.on_rto(now, false);
                    self.syn_pending = true;
                }
                // No later than the user timeout's end (`tcp_clamp_rto_to_user_timeout`;
                // only an active open counts one). One already past (shorter than the first
                // SYN timeout, which it does not cut, or passed while the timer waited to be
                // run) ends the connect at the next tick, as Linux's timer of one jiffy: a
                // deadline is never left behind the time it was set at.
                let next = self.clamp_to_user_timeout(now + self.syn_rto());
                self.timers.retransmit = Some(next.max(now + Duration::from_millis(1)));
            }
            _ => {
                if self.snd.una == self.snd.max {
                    return;
                }
                let since = *self.retransmitting_since.get_or_insert(now);
                let user_timeout_hit = self
                    .cfg
                    .user_timeout
                    .is_some_and(|limit| now - since >= limit);
                // RFC 1122 §4.2.3.5's R2, as Linux's tcp_write_timeout measures it: by the
                // time the data has been out (from when the timer that first fired was
                // started), against what `data_retries` retransmissions from a 200 ms RTO
                // would take, or `tcp_orphan_retries` once the application has closed.
                let rto = self.current_rto();
                let stamp = *self.retrans_stamp.get_or_insert(Instant::from_micros(
                    now.total_micros().saturating_sub(rto.as_micros() as u64),
                ));
                let retries = if self.app_closed {
                    self.orphan_retries(rto < self.rtt.max_rto())
                } else {
                    self.cfg.data_retries
                };
                let zero_window = self.snd.wnd == 0 && !self.app_closed;
                let gave_up = if zero_window {
                    // The peer shrank its window to nothing under data in flight: our
                    // retransmissions are its zero-window probes (below), and RFC 9293
                    // §3.8.6.2.1 says not to time out a connection whose peer answers them.
                    // As Linux's `tcp_rtx_probe0_timed_out`: only once nothing has come from
                    // it, nor been acknowledged, for twice the largest RTO (or the user
                    // timeout, if less). A closed socket's are timed out as before.
                    let mut limit = self.rtt.max_rto().saturating_mul(2);
                    if let Some(user) = self.cfg.user_timeout {
                        limit = limit.min(user);
                    }
                    now - self.last_ack_recv > limit && now - since > limit
                } else {
                    self.timeouts > 0 && now - stamp >= self.model_timeout(retries)
                };
                if user_timeout_hit || gave_up {
                    self.enter_closed(Some(self.soft_error.unwrap_or(Error::TimedOut)));
                    return;
                }
                // §5.4: retransmit the earliest unacknowledged segment (we go back to SND.UNA
                // and resend in order as the windows allow); §5.5: back off; §5.6: restart.
                // Counted as Linux's `tcp_update_rto_stats` counts, which its zero-window
                // branch of `tcp_retransmit_timer` skips: a probe of a shut window is no
                // timeout in `tcpi_total_rto`, nor the start of an episode. A new episode
                // starts with the first timeout since SND.UNA last moved (`icsk_retransmits`
                // at 0), even in the timeout's recovery still under way.
                if !zero_window {
                    self.counters.on_rto(now, self.timeouts == 0);
                }
                self.timeouts = self.timeouts.saturating_add(1);
                self.backoff = self.backoff.saturating_add(1);
                let reduce_from = self.rto_reduce_from();
                // F-RTO (RFC 5682 §3 step 1), as Linux's `tcp_enter_loss`: a timeout outside
                // any recovery, or one repeating the last with nothing acknowledged between
                // (not one after progress in the last one's recovery, whose data beyond
                // SND.NXT its go-back may already have resent; nor one during CWR, which
                // keeps its reduction and has no undo, where Linux watches a repeated one
                // too).
                // A timeout in the open state (no recovery, timeout's or fast, and no CWR)
                // after three or more duplicate ACKs shows that the reordering which held
                // the fast retransmit back was overestimated (Linux's `tcp_enter_loss`,
                // `ca_state <= TCP_CA_Disorder`).
                if self.recovery.recover.is_none()
                    && self.recovery.cwr.is_none()
                    && !self.after_rto()
                    && !self.loss_held()
                    && self.recovery.reno_sacked >= crate::tcp::scoreboard::DUP_THRESH
                {
                    // At most three, which `None` stands for.
                    self.recovery.reno_reordering = self
                        .recovery
                        .reno_reordering
                        .filter(|r| usize::from(r.get()) < crate::tcp::scoreboard::DUP_THRESH);
                }
                // Nor one in a timeout's recovery held at its end without SACK, which Linux
                // still counts as `TCP_CA_Loss` (`new_recovery` is false), nor the first one
                // in a fast recovery (`TCP_CA_Recovery`), which reduces again when SACK
                // reneging held it past its point (`rto_reduce_from`) and sets an undo
                // point, but with F-RTO off.
                let frto = self.cfg.frto
                    && ((self.recovery.recover.is_none()
                        && !self.after_rto()
                        && !self.loss_held())
                        || self.timeouts > 1);
                self.init_rto_undo(reduce_from.is_some());
                self.recovery.frto =
                    (frto && self.recovery.undo_marker.is_some()).then_some(Frto::Waiting);
                self.cc.on_rto(now, reduce_from);
                self.recovery.recover = None;
                // The timeout's reduction supersedes a CWR under way, and is signalled with
                // CWR like any other (RFC 3168 §6.1.2).
                self.recovery.cwr = None;
                self.ecn_queue_cwr();
                self.recovery.dupacks = 0;
                self.recovery.reno_sacked = 0;
                self.recovery.retransmit_head = false;
                self.recovery.rto_recover = Some(self.snd.max);
                self.recovery.rto_at = Some(now);
                self.recovery.tlp_pending = false;
                // The timeout ends the probe episode: the retransmission it sends may be
                // probed again (`arm_tlp`).
                self.recovery.tlp_outstanding = false;
                self.recovery.tlp_probes = 0;
                self.recovery.tlp_high_seq = None;
                self.recovery.lost_below = None;
                self.timers.tlp = None;
                self.ts.min_echo = Some(self.ts_now(now));
                self.recovery.high_rxt = self.snd.una;
                // RFC 2018 §8: a receiver may renege on SACKed data, and the RFC would have
                // the SACKs forgotten at a timeout. Linux's `tcp_timeout_mark_lost` keeps
                // them, timeout after timeout (the go-back resends only the holes, and a
                // SACK repeated after the timeout is no new delivery), unless SND.UNA itself
                // is SACKed, which only reneging explains: then it clears every mark. A
                // receiver that reneges on later data shows it the same way once the holes
                // before are filled (`tcp_check_sack_reneging`).
                let reneged = self.snd.scoreboard.covers(self.snd.una, self.snd.una + 1);
                if reneged {
                    self.snd.scoreboard.clear();
                    self.snd.rack.forget_deliveries();
                }
                self.rtt_seq = None;
                self.snd.nxt = self.snd.una;
                self.timers.retransmit = Some(self.clamp_to_user_timeout(now + self.current_rto()));
            }
        }
    }
}
