//! An acceptable ACK (RFC 9293 §3.10.7.4, "fifth, check the ACK field"): what it
//! acknowledges and the RTT it measures, the send window it updates, the losses it reveals
//! (duplicate ACKs, SACK, RACK-TLP: RFC 5681, RFC 6675, RFC 8985) and the recovery it drives
//! (PRR, RFC 6937; undo on a spurious retransmission, RFC 2883 and Linux's `tcp_try_undo_*`).

use std::ops::ControlFlow;
use std::time::Duration;

use super::{Connection, Frto};
use crate::seq::SeqNumber;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr};

/// The growth of the window that an ACK of new data leaves to the end of its processing,
/// where Linux's `tcp_cong_control` sets the window: after the undo and the recovery states
/// (`tcp_fastretrans_alert`) have had their say. See `on_new_ack`.
struct Growth {
    /// The bytes the ACK newly delivered.
    delivered: usize,
    /// The bytes in flight before it.
    in_flight_before: usize,
    /// When it applies.
    when: GrowWhen,
}

/// When a [`Growth`] applies at the end of the ACK. In every case not if the ACK started a
/// recovery or CWR (a congestion echo in the open state), where PRR sets the window.
#[derive(Clone, Copy)]
enum GrowWhen {
    /// The connection is open, or the ACK ended a recovery (fast or a timeout's): always.
    Open,
    /// The ACK leaves a fast recovery under way, where PRR sets the window (Linux's
    /// `tcp_cwnd_reduction`): only if an undo on the same ACK ends it.
    Undone,
    /// A timeout's recovery, where the window already grew, to `grown` bytes (F-RTO's
    /// choice on this ACK needs it): again from the restored window if an undo on the same
    /// ACK raised it past that.
    Loss { grown: usize },
}

impl Connection {
    /// Linux's send-window update rule (`tcp_may_update_window`), with SND.UNA as it was
    /// before `seg`'s ACK: an ACK of new data, a newer segment, or the same segment
    /// offering more window (or none). RFC 9293's rule ("SND.WL1 = SEG.SEQ and SND.WL2 =<
    /// SEG.ACK") also takes a reordered duplicate offering less, which shrinks the window
    /// we send into.
    pub(super) fn may_update_window(&self, una: SeqNumber, seg: &TcpRepr<'_>, wnd: usize) -> bool {
        seg.ack_number > una
            || seg.seq_number > self.snd.wl1
            || (seg.seq_number == self.snd.wl1 && (wnd > self.snd.wnd || wnd == 0))
    }

    /// RFC 9293 §3.10.7.4: "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be
    /// updated", when the segment is newer than the last that updated it: Linux's test of
    /// that (`may_update_window`), against SND.UNA as it was before this ACK (`una`).
    fn update_window(&mut self, una: SeqNumber, seg: &TcpRepr<'_>, wnd: usize) {
        if !self.may_update_window(una, seg, wnd) {
            return;
        }
        if wnd != self.snd.wnd && self.notsent() > 0 && una == self.snd.max {
            // Linux's `tcp_ack_update_window` judges slow start after idle here, before
            // `tcp_clean_rtx_queue` takes what this ACK acknowledges out of flight: only an
            // ACK that found nothing in flight can restart the window.
            self.cwnd_use.judge_idle = true;
        }
        self.snd.wnd = wnd;
        self.snd.max_wnd = self.snd.max_wnd.max(wnd);
        self.snd.wl1 = seg.seq_number;
        // While probing, only a window that takes the waiting segment ends it (asked only
        // then: every window update comes here).
        let probing = self.timers.persist.is_some() || self.persist_backoff > 0;
        if wnd > 0 && (!probing || self.window_takes_the_head()) {
            self.timers.persist = None;
            self.persist_backoff = 0;
            // The probing episode is over (Linux's tcp_ack_probe clears
            // `icsk_probes_tstamp`): a user timeout counts afresh.
            if self.snd.una == self.snd.max {
                self.retransmitting_since = None;
            }
        }
    }

    /// Whether the send window takes the segment that waits at SND.NXT whole: a full
    /// segment, or all that is queued if less (Linux's `tcp_ack_probe`, "Was it a usable
    /// window open?": the head skb's end within `tcp_wnd_end`). Only such a window ends a
    /// probing episode. One that opens less than that, after zero-window probes, leaves
    /// their backoff as it was, and the next probe (the one that lets the short segment
    /// out) waits for it.
    fn window_takes_the_head(&self) -> bool {
        let buffered_end = self.snd.data_start() + self.snd.buffer.len();
        let unsent = buffered_end - self.snd.nxt.min(buffered_end);
        let head = unsent.min(self.payload_room());
        self.snd.nxt + head <= self.snd.una + self.snd.wnd
    }

    /// Linux's `tcp_ack_probe`, for an ACK (not an old one) that found nothing in flight:
    /// while the window stays shut, or too small for the segment that waits, the probe
    /// timer starts again from this ACK, at the backed-off interval. The next probe then
    /// goes that long after the peer's last ACK (the answer to a probe, late or not, or one
    /// of its own), not after our last probe. (A window that takes the segment stops the
    /// timer: `update_window`.)
    ///
    /// Not for a data segment Linux's header prediction takes on its fast path, which calls
    /// `tcp_ack` only for an ACK that moves SND.UNA (`old_wnd`: the window before `seg`'s,
    /// which prediction compares). And not on a
    /// connection the application has closed: its probes must run their course
    /// (`zero_window_gives_up`), or a peer that sent a bare ACK with its window shut more
    /// often than the probe interval would hold the orphan, its data and its slot for ever
    /// (the permanent FIN-WAIT-1 that a fix proposed to Linux in October 2025 addresses,
    /// "net/tcp: fix permanent FIN-WAIT-1 state with continuous zero window packets").
    fn ack_probe(&mut self, now: Instant, seg: &TcpRepr<'_>, old_wnd: usize) {
        if self.app_closed || self.timers.persist.is_none() {
            return;
        }
        if self.snd.wnd != 0 && self.window_takes_the_head() {
            return;
        }
        // Header prediction's data half (`tcp_rcv_established`'s fast path): in order, ACK
        // and PSH its only flags, no SACK blocks, the window unchanged.
        let predicted_data = self.state == State::Established
            && !seg.payload.is_empty()
            && !seg.flags.intersects(
                TcpFlags::FIN
                    | TcpFlags::SYN
                    | TcpFlags::RST
                    | TcpFlags::URG
                    | TcpFlags::ECE
                    | TcpFlags::CWR,
            )
            && seg.seq_number == self.rcv.nxt
            && seg.sack_ranges[0].is_none()
            && (usize::from(seg.window_len) << self.snd.wscale) == old_wnd;
        if !predicted_data {
            self.timers.persist = Some(now + self.probe_interval(now));
        }
    }

    /// Moves SND.UNA forward to `ack`, counting each time it comes round past ISS, and ends
    /// the marks it reaches (RACK's D-SACK round, the loss mark) before a wrap could make
    /// them read as ahead of it again.
    pub(super) fn ack_to(&mut self, ack: SeqNumber) {
        // Offsets from ISS, raw: `SeqNumber`'s difference reads 0 past 2^31.
        let before = self.snd.una.0.wrapping_sub(self.snd.iss.0);
        let after = ack.0.wrapping_sub(self.snd.iss.0);
        if after < before {
            self.una_wraps = self.una_wraps.wrapping_add(1);
        }
        self.snd.rack.end_dsack_round(self.snd.una);
        // A loss mark SND.UNA has reached marks nothing (nothing un-SACKed lies below it).
        // Left, as one can be after a timeout's go-back that no fast recovery followed, it
        // would read as above SND.UNA again 2 GiB later and start a spurious recovery.
        if self.recovery.lost_below.is_some_and(|b| ack >= b) {
            self.recovery.lost_below = None;
        }
        self.snd.una = ack;
    }

    /// The sequence space from ISS up to SND.UNA, SYN and FIN included, counted past the
    /// 32-bit wrap. SND.UNA moves less than a window an ACK, so no wrap goes unseen.
    pub(super) fn acked_seq_space(&self) -> u64 {
        (u64::from(self.una_wraps) << 32) | u64::from(self.snd.una.0.wrapping_sub(self.snd.iss.0))
    }

    /// How far below SND.UNA an ACK may lie and still be taken (RFC 5961 §5.2's
    /// MAX.SND.WND), as Linux bounds it: `min(max_window, bytes_acked)`. Linux counts our
    /// SYN in `bytes_acked` when its ACK reached this socket (an active or simultaneous
    /// open, through `tcp_ack`), not on a listener's child, which starts past it.
    fn oldest_acceptable_ack_distance(&self) -> usize {
        let syn = u64::from(self.passive);
        let acked = self.acked_seq_space().saturating_sub(syn);
        // Past 2^30 bytes the data acknowledged exceeds any window (RFC 7323 §2.3: at most
        // 65535 << 14), and the bound is the window, as it stays once SND.UNA wraps past ISS.
        usize::try_from(acked).map_or(self.snd.max_wnd, |acked| acked.min(self.snd.max_wnd))
    }

    /// "Fifth, check the ACK field" for the synchronized states. Breaks when the segment
    /// processing ends here.
    pub(super) fn process_ack(&mut self, now: Instant, seg: &TcpRepr<'_>) -> ControlFlow<()> {
        let ack = seg.ack_number;
        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT]; anything
        // else is dropped with an ACK in reply. As Linux (`tcp_ack`), the window reaches
        // back no further than the data acknowledged so far, so that an ACK for bytes
        // before our ISN is never taken.
        let lowest = self.snd.una - self.oldest_acceptable_ack_distance();
        if ack > self.snd.max || ack < lowest {
            self.challenge_ack(now);
            return ControlFlow::Break(());
        }

        // Every acceptable ACK lets Linux push what waits under the socket's own Nagle
        // setting (tcp_data_snd_check): a `MSG_MORE` hold ends here.
        self.more = false;
        let ece = self.ecn_echoed(seg);
        let old_wnd = self.snd.wnd;
        let new_wnd = (seg.window_len as usize) << self.snd.wscale;

        // Header prediction's ACK half (Linux's `tcp_rcv_established` fast path): an ACK of
        // nothing new with nothing outstanding, no SACK blocks, no echoed mark and no
        // recovery of any kind, on an established connection, which the receiving end of a
        // transfer gets with every data segment. Of all below, only RACK's first RTT, an
        // undo left pending and the window can change on it; they are taken as below.
        if ack == self.snd.una
            && ack == self.snd.max
            && self.state == State::Established
            && seg.sack_ranges[0].is_none()
            && !ece
            && self.recovery.recover.is_none()
            && self.recovery.cwr.is_none()
            && self.recovery.tlp_high_seq.is_none()
            && !self.after_rto()
            && self.snd.scoreboard.sacked_bytes() == 0
        {
            if self.sack_ok {
                let _ = self.snd.rack.on_ack(now, ack, None, self.rtt.srtt());
                self.timers.rack = None;
            }
            self.try_undo();
            self.update_window(ack, seg, new_wnd);
            self.ack_probe(now, seg, old_wnd);
            return ControlFlow::Continue(());
        }

        // What the timeout's recovery needs to judge this ACK (`process_loss`), taken before
        // the ACK that ends that recovery clears it.
        let was_loss = self.after_rto();
        let (high_seq, nxt_before) = (self.recovery.rto_recover, self.snd.nxt);
        let frto = self.recovery.frto;
        let loss = self.counters.get();
        let dsacks_before = (loss.dsacks_received, loss.dsacks_dubious);
        // What PRR needs to measure this ACK's DeliveredData (RFC 6937 §3).
        let una_before = self.snd.una;
        // Segments a D-SACK reports received twice: delivered too, to PRR, the window's
        // growth and TCP_INFO (Linux's `tcp_dsack_seen`: "a spurious retransmission is
        // delivered").
        let mut dsacked = if self.sack_ok {
            self.count_dsack(seg, una_before)
        } else {
            0
        };
        if seg.ack_number < una_before {
            // An old ACK: Linux's `tcp_ack` takes its SACK blocks (and counts the D-SACK
            // towards the undo) but counts no delivery and sets no window on it (`old_ack`).
            dsacked = 0;
        }
        let dsacked_bytes = dsacked * self.snd.mss;
        let sacked_before = self.snd.scoreboard.sacked_bytes();
        let lost_before = self.lost_boundary();
        // In segments (Config::recovery_in_packets): what was sent and not SACKed, Linux's
        // packets_out - sacked_out, counted only where PRR may run on this ACK.
        let reducing = self.recovery.recover.is_some() || self.recovery.cwr.is_some();
        // Without SACK: what is out and not counted gone by duplicate ACKs, in bytes, for
        // PRR's DeliveredData below (Linux's `packets_out - sacked_out` for Reno).
        let reno_unsacked_before = (!self.sack_ok).then(|| self.reno_unsacked());
        let unsacked_segs_before = (self.prr_packets()
            && self.snd.max > self.snd.una
            && (reducing || ece || sacked_before > 0 || seg.sack_ranges[0].is_some()))
        .then(|| self.snd.unsacked_segments());

        // RFC 6675 §5: record the SACK blocks first; they decide what is lost.
        let mut new_sack_info = false;
        if self.sack_ok {
            let before = sacked_before;
            let una = ack.max(self.snd.una);
            self.snd.scoreboard.begin_ack();
            for &(left, right) in seg.sack_ranges.iter().flatten() {
                self.snd.scoreboard.add(left, right, una, self.snd.max);
            }
            self.snd.scoreboard.sort_fresh(una);
            new_sack_info = self.snd.scoreboard.sacked_bytes() != before;
        }

        // SACK reneging (RFC 2018 §8): the ACK leaves SND.UNA at the start of data the peer
        // had SACKed (this ACK's blocks counted), so it dropped that data (Linux's
        // FLAG_SACK_RENEGING, set in `tcp_clean_rtx_queue`). As `tcp_check_sack_reneging`,
        // the SACKs are not trusted but not forgotten at once either (the ACKs after may
        // set them right): the retransmission timer is set to max(SRTT / 2, 10 ms), in
        // place of any probe or RACK timer, and the rest of the loss checks wait
        // (`tcp_fastretrans_alert` returns there, before it looks for losses and before a
        // recovery this ACK has completed ends: that waits for the next ACK, or the
        // timeout). The timeout, if it comes, forgets every SACK and goes back to SND.UNA
        // (`on_retransmit_timeout`).
        let reneged = self.sack_ok
            && ack > self.snd.una
            && ack < self.snd.max
            && self.snd.scoreboard.covers(ack, ack + 1);

        let mut duplicate = false;
        let undos_before = self.counters.get().undos;
        let recovering_before = self.recovery.recover.is_some();
        let mut growth = None;
        let mut rtt_sampled = false;
        if !reneged
            && ack <= self.snd.una
            && self.recovery.recover.is_some_and(|r| self.snd.una >= r)
        {
            // A recovery an earlier ACK completed but held, as it reneged (`on_new_ack`),
            // ends on the next ACK that does not renege, new data or not (Linux's state
            // exit comes before its duplicate-ACK processing); one that acknowledges
            // nothing new grows no window (FLAG_DATA_ACKED is clear).
            let _ = self.end_fast_recovery(now, seg, 0, self.snd.in_flight());
        }
        if ack > self.snd.una {
            (growth, rtt_sampled) =
                self.on_new_ack(now, seg, ack, sacked_before, dsacked_bytes, reneged);
        } else if ack == self.snd.una
            && seg.payload.is_empty()
            && !seg.flags.contains(TcpFlags::FIN)
            && new_wnd == old_wnd
            && self.snd.max > self.snd.una
        {
            // RFC 5681 §2's duplicate ACK: nothing new, no data, same window, data outstanding.
            duplicate = true;
            self.on_duplicate_ack(now);
        } else if ack == self.snd.una && new_sack_info && self.snd.max > self.snd.una {
            // RFC 6675 §2: an ACK carrying new SACK information counts as a duplicate.
            duplicate = true;
            self.on_duplicate_ack(now);
        }
        // TCP_INFO's delivered: what this ACK newly acknowledged or SACKed, in segments
        // (bytes SACKed before and acknowledged now were counted when SACKed).
        let newly = (self.snd.una - una_before + self.snd.scoreboard.sacked_bytes())
            .saturating_sub(sacked_before);
        let segments =
            u32::try_from(newly.div_ceil(self.snd.mss.max(1)) + dsacked).unwrap_or(u32::MAX);
        self.delivered = self.delivered.saturating_add(segments);
        // RFC 8985 §6.2: what was delivered now tells RACK which older segments are lost.
        // A retransmission it finds lost (Linux's FLAG_LOST_RETRANS) is noted for the tests
        // for recovery below.
        let mut lost_retransmission = None;
        let mut original_end = None;
        let mut sack_rtt = None;
        if self.sack_ok {
            let scoreboard = &self.snd.scoreboard;
            let srtt = self.rtt.srtt();
            if scoreboard.sacked_bytes() == 0 {
                (original_end, sack_rtt) = self.snd.rack.on_ack(now, self.snd.una, None, srtt);
                self.timers.rack = None;
                // Nothing held out of order, but in a recovery a resent segment may be among
                // what this ACK delivered: anything still out that was sent before it, and
                // has waited RACK.rtt since, is lost (Linux's `tcp_identify_packet_loss`
                // runs RACK on every ACK of the Recovery and Loss states, SACK blocks or
                // not, the one that ends the state included: a loss found then starts the
                // next recovery). Outside a recovery nothing was sent out of order, so
                // nothing can have been overtaken, and the pass over the log is spared.
                if !reneged
                    && (recovering_before || was_loss || self.in_loss_recovery())
                    && self.snd.rack.take_advanced()
                {
                    lost_retransmission = self.rack_detect_only(now);
                }
            } else {
                // Only what this ACK's blocks newly SACKed: a segment can only have become
                // wholly SACKed by this ACK if it overlaps that. Walking the blocks as sent
                // let a receiver that repeats one block spanning the flight (valid, or not
                // even that) make every duplicate ACK visit every segment in flight.
                let covered = |a, b| scoreboard.covers(a, b);
                (original_end, sack_rtt) = self.snd.rack.on_ack(
                    now,
                    self.snd.una,
                    Some((scoreboard.fresh(), &covered)),
                    srtt,
                );
                // Only when something was delivered (Linux's `tcp_rack_mark_lost`): a
                // duplicate ACK repeating known SACK blocks changes nothing the pass reads
                // but the time, whose passing the RACK timer already watches. Not on an
                // ACK that reneges, whose delivery the next ACK's pass weighs.
                if !reneged && self.snd.rack.take_advanced() {
                    lost_retransmission = self.rack_detect_only(now);
                }
            }
        }
        // Linux's `tcp_ack_update_rtt` (`Config::rtt_every_ack`): an ACK whose cumulative
        // part gave no RTT sample (none acknowledged, or only resent data: Karn) takes one
        // from the first segment its SACK blocks newly cover that was sent only once
        // (`sack_rtt_us`), and like any valid sample it ends the RTO's backoff. Without
        // it, the SACKs that come back after a timeout left the RTO doubled until a
        // cumulative ACK of original data.
        if let (true, false, Some(sample)) = (self.cfg.rtt_every_ack, rtt_sampled, sack_rtt) {
            self.rtt.sample(sample);
            self.backoff = 0;
        }
        if let (true, Some(high_seq)) = (was_loss, high_seq) {
            // Data sent before the timeout, never resent, and delivered by this ACK: with
            // SACK from RACK's record of each segment; without, an ACK past the point the
            // go-back had resent up to (where F-RTO sent new data instead, where it stopped)
            // that covers nothing resent, since a cumulative ACK of resent data cannot tell
            // which copy arrived (Linux's `tcp_clean_rtx_queue` clears
            // `FLAG_ORIG_SACK_ACKED` for Reno when `FLAG_RETRANS_DATA_ACKED` is set).
            let go_back = match frto {
                Some(Frto::NewData { resume, new_from }) if nxt_before >= new_from => resume,
                _ => nxt_before,
            };
            let original = if self.sack_ok {
                original_end.is_some_and(|end| end <= high_seq)
            } else {
                ack > go_back && go_back < high_seq && una_before >= go_back
            };
            // The window this ACK leaves, which is set further down (Linux updates it first).
            let window = if ack >= self.snd.una && self.may_update_window(una_before, seg, new_wnd)
            {
                new_wnd
            } else {
                self.snd.wnd
            };
            let verdict = LossAck {
                window,
                una_advanced: self.snd.una > una_before,
                original,
                // Not one whose news is a D-SACK (Linux leaves `FLAG_DSACKING_ACK` out of
                // `num_dupack`): the late original of a resent segment says nothing of the
                // segments after it. A dubious D-SACK is no news (`tcp_dsack_seen` returns
                // 0, and the flag stays clear): such an ACK is a duplicate.
                duplicate: duplicate && !self.dsack_taken_since(dsacks_before),
                new_sack_info,
            };
            self.process_loss(seg, frto, verdict);
            // An ACK that ended the timeout's state (an undo, or SND.UNA past its point)
            // arms the tail loss probe the timeout's state held back when the ACK was taken
            // (`arm_tlp` ran first), as Linux's `tcp_set_xmit_timer` runs after
            // `tcp_fastretrans_alert`: the flight still out is probed at 2 * SRTT, not left
            // to the backed-off RTO.
            if !self.in_loss_recovery() {
                self.arm_tlp(now);
            }
        }
        // RFC 6675 §5 (step 3 alternative): SND.UNA itself is lost by the IsLost rule, even
        // if fewer than three duplicate ACKs arrived (e.g. the ACKs were themselves lost).
        if self.sack_ok
            && self.recovery.tlp_outstanding
            && new_sack_info
            && self.recovery.recover.is_none()
            && self.snd.max > self.snd.una
        {
            // The probe's ACK SACKs data sent after the un-SACKed holes (RFC 8985 §7.4.2):
            // those holes are lost.
            self.recovery.lost_below = self.snd.scoreboard.highest_sacked();
        }
        // Whether the tail loss probe repaired a loss, before the recovery's tests as in
        // Linux's `tcp_ack` (`tcp_process_tlp_ack`, then `tcp_fastretrans_alert`).
        if self.recovery.tlp_high_seq.is_some() {
            let pure_dup = self.snd.una == una_before
                && seg.payload.is_empty()
                && !new_sack_info
                && !self.may_update_window(una_before, seg, new_wnd);
            self.process_tlp_ack(now, seg, pure_dup);
        }
        // An undo comes before the tests for loss (Linux's `tcp_try_undo_dsack`, then
        // `tcp_time_to_recover`): it keeps what is known lost, so a recovery undone for one
        // spurious retransmission starts again at once, from the restored window, when a
        // hole is still lost.
        // SACK reneging (see `reneged` above): the short timer.
        if reneged {
            let half = self.rtt.srtt().map_or(Duration::ZERO, |srtt| srtt / 2);
            self.timers.retransmit = Some(now + half.max(Duration::from_millis(10)));
            self.timers.tlp = None;
            self.timers.rack = None;
        }
        // A partial ACK that timestamps show was sent for the originals (Linux's
        // `tcp_try_undo_partial`, before `tcp_try_undo_dsack`).
        if !reneged
            && recovering_before
            && self.recovery.recover.is_some()
            && self.snd.una > una_before
            && self.packet_delayed(seg)
            && !self.retransmission_in_flight()
        {
            self.undo("a hole filled by its late original (timestamps, partial ACK)");
        }
        if !reneged {
            self.try_undo();
        }
        // An undo on this ACK (of a timeout, by F-RTO or timestamps, or of a fast recovery)
        // has RACK judge the flight afresh, with the window of the state it leaves the
        // connection in (Linux's `tcp_undo_cwnd_reduction` sets `rack.advanced`, and
        // `tcp_identify_packet_loss` runs next): a hole still lost then starts a recovery
        // from the restored window at once (`tcp_fastretrans_alert`'s "if loss is evident,
        // starts a new recovery"), where synack waited for the next ACK or the timeout.
        if !reneged
            && self.sack_ok
            && self.counters.get().undos != undos_before
            && self.snd.max > self.snd.una
        {
            lost_retransmission = lost_retransmission.or(self.rack_detect_only(now));
        }
        if !reneged
            && self.sack_ok
            && self.recovery.recover.is_none()
            && self.snd.max > self.snd.una
        {
            if let Some(boundary) = self.lost_boundary() {
                let after_rto = self.after_rto();
                if boundary > self.snd.una && !after_rto {
                    self.enter_recovery(now);
                } else if boundary > self.snd.una {
                    if let Some(seq) = lost_retransmission {
                        self.recover_lost_retransmission(now, seq);
                    }
                }
            }
        }
        // RFC 3168 §6.1.2: a congestion mark echoed while the window is open (not in
        // recovery, not after a timeout, not already reducing) reduces it, once per window
        // of data (Linux's tcp_try_to_open, which runs after the recovery checks above).
        let after_rto = self.after_rto();
        if ece && self.recovery.recover.is_none() && self.recovery.cwr.is_none() && !after_rto {
            self.enter_cwr(now);
        }
        if self.recovery.recover.is_some() || self.recovery.cwr.is_some() {
            // RFC 6937 §3: DeliveredData = change_in(snd.una) + change_in(SACKd). SACKed
            // bytes that the cumulative ACK passed count once, in the first term.
            let sacked = self.snd.scoreboard.sacked_bytes();
            let una_advanced = self.snd.una > una_before;
            let (delivered, newly_lost) = if let Some(before) = reno_unsacked_before {
                // Without SACK, as Linux for Reno: a duplicate ACK delivered one segment
                // (`tcp_add_reno_sack`), a partial ACK what it acknowledged beyond the
                // segments its duplicate ACKs counted already, at least one
                // (`tcp_remove_reno_sacks`); a partial ACK marks the new head lost
                // (`tcp_newreno_mark_lost`).
                let delivered = before.saturating_sub(self.reno_unsacked());
                // An ACK that moves SND.UNA delivers at least a segment.
                let delivered = if una_advanced {
                    delivered.max(self.reno_segment())
                } else {
                    delivered
                };
                // An ACK that holds the recovery at its recovery point marks nothing lost
                // (`tcp_fastretrans_alert` returns before `tcp_newreno_mark_lost`), so
                // PRR-SSRB's extra segment goes with it.
                let partial = self.recovery.recover.is_some_and(|r| r > self.snd.una);
                (delivered, una_advanced && partial)
            } else {
                let delivered = match unsacked_segs_before {
                    // Linux's newly_acked_sacked: packets acknowledged or SACKed by this ACK.
                    Some(before) => before.saturating_sub(self.snd.unsacked_segments()) + dsacked,
                    None => (self.snd.una - una_before + sacked + dsacked_bytes)
                        .saturating_sub(sacked_before),
                };
                let lost = self.lost_boundary();
                (
                    delivered,
                    lost.is_some_and(|l| lost_before.is_none_or(|b| l > b)),
                )
            };
            self.prr_on_ack(delivered, una_advanced, newly_lost);
        }
        // Linux sets the window for the ACK (`tcp_cong_control`) after its undo and recovery
        // states (`tcp_fastretrans_alert`): an ACK of new data in the open state, or that
        // ends a recovery, or whose undo does, or that undoes a timeout, grows the window
        // (restored, if undone) by what it delivered (`tcp_may_raise_cwnd`,
        // FLAG_DATA_ACKED), unless it started a recovery or CWR on the way (then PRR sets
        // it). Only a window that limited the flow grows.
        // An ACK that only SACKs grows the window too once the path has been seen to
        // reorder beyond the default degree (Linux's `tcp_may_raise_cwnd`: with
        // `reordering` above `tcp_reordering`, any forward progress raises cwnd, not only
        // in-order delivery), by what it newly SACKed: on such a path in-order delivery is
        // the exception, and holding the window until the holes fill starves the flow.
        if growth.is_none()
            && self.snd.una == una_before
            && new_sack_info
            && self.reordering_degree() > crate::tcp::scoreboard::DUP_THRESH
            && !self.after_rto()
        {
            let newly = self
                .snd
                .scoreboard
                .sacked_bytes()
                .saturating_sub(sacked_before);
            growth = Some(Growth {
                delivered: newly,
                in_flight_before: nxt_before - una_before,
                when: GrowWhen::Open,
            });
        }
        if let Some(g) = growth {
            let undone = self.counters.get().undos != undos_before;
            let applies = match g.when {
                GrowWhen::Open => true,
                GrowWhen::Undone => undone,
                GrowWhen::Loss { grown } => undone && self.cc.window() > grown,
            };
            if applies && self.recovery.recover.is_none() && self.recovery.cwr.is_none() {
                // Linux's tcp_cong_avoid stamps `snd_cwnd_stamp` whether or not the window
                // grows: the application-limited rule (`note_cwnd_use`) measures its RTO
                // from the last such ACK, not only from the last send that filled the
                // window.
                self.cwnd_use.stamp = now;
                if self.cwnd_limited() {
                    self.cc
                        .on_ack(now, g.delivered, g.in_flight_before, self.rtt.srtt());
                }
            }
        }

        if ack >= self.snd.una {
            self.update_window(una_before, seg, new_wnd);
            if una_before == self.snd.max {
                self.ack_probe(now, seg, old_wnd);
            }
        }

        // Out of the timeout's recovery: its episode ends (Linux's `tcp_update_rto_time`
        // when `tcp_fastretrans_alert` leaves `TCP_CA_Loss`), in `tcp_ack`, before an ACK
        // of our FIN ends the connection below.
        if !self.after_rto() && !self.loss_held() {
            self.counters.end_rto_episode(now);
        }

        // State transitions driven by the ACK of our FIN.
        let fin_acked = self.snd.fin_acked();
        match self.state {
            State::FinWait1 if fin_acked => {
                self.set_state(State::FinWait2);
                if self.app_closed {
                    if self.cfg.linger2 == Some(crate::options::Linger2::Abort) {
                        // A negative TCP_LINGER2: no FIN-WAIT-2 for an orphan. Linux's
                        // `tcp_rcv_state_process` ends the connection, and its caller
                        // answers this very ACK with an RST (`tcp_v4_send_reset`: the RST's
                        // sequence number is the ACK's).
                        self.reset_reply = Some((seg.ack_number, None));
                        self.enter_closed(None);
                        return ControlFlow::Break(());
                    }
                    // Unless this segment brings the peer's FIN too, Linux hands it to a
                    // TIME-WAIT sock (`tcp_rcv_state_process`).
                    self.linger_in_fin_wait_2(now, !seg.flags.contains(TcpFlags::FIN));
                }
            }
            State::Closing if fin_acked => {
                // The segment ends here, as in Linux (`tcp_rcv_state_process`): a resent FIN
                // that brought this ACK is answered once it comes again, in TIME-WAIT.
                self.enter_time_wait(now);
                return ControlFlow::Break(());
            }
            State::LastAck if fin_acked => {
                self.enter_closed(None);
                return ControlFlow::Break(());
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// New data acknowledged (SND.UNA < SEG.ACK =< SND.NXT). `sacked_before` is what the
    /// scoreboard held before this ACK's SACK blocks; `dsacked`, the bytes its D-SACK
    /// reports received twice (delivered as well). Returns the growth of the window left
    /// to the end of the ACK's processing (see [`Growth`]), where Linux sets the window:
    /// after the ACK has shown whether it starts a recovery or CWR, or undoes one.
    fn on_new_ack(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        ack: SeqNumber,
        sacked_before: usize,
        dsacked: usize,
        reneged: bool,
    ) -> (Option<Growth>, bool) {
        let mut growth = None;
        // After a go-back-N retransmission SND.NXT may lie below an ACK for data the peer had
        // all along.
        if ack > self.snd.nxt {
            self.snd.nxt = ack;
        }
        let acked = ack - self.snd.una;
        // Application bytes acknowledged: the range excludes a SYN (never in the buffer) and a
        // FIN (past the buffer's end).
        let data_from = self.snd.data_start();
        let mut data_acked = ack - data_from;
        data_acked = data_acked.min(self.snd.buffer.len());
        // Linux's seq_rtt_us (`Config::rtt_every_ack`): from RACK's send log, taken before
        // `on_ack` prunes it; else the timed segment or the TSecr.
        let per_ack = if self.sack_ok && self.cfg.rtt_every_ack {
            self.snd.rack.acked_rtt(now, self.snd.una, ack)
        } else {
            None
        };
        let sampled = per_ack.or_else(|| self.rtt_sample_for(now, seg, ack));
        if let Some(sample) = sampled {
            // RFC 6298 §3 / Karn: only unambiguous samples; with timestamps every ACK of new
            // data gives one (RFC 7323 §4). Only such a sample ends the backoff (§5.7: the
            // doubled RTO is kept "until a new RTT measurement is obtained"; Linux resets
            // `icsk_backoff` in `tcp_ack_update_rtt`), so that the next segment after a
            // retransmission that got through does not time out on the RTO that failed.
            self.rtt.sample(sample);
            self.backoff = 0;
        }
        // Congestion control's sample of this ACK, taken as Linux's pkts_acked takes it:
        // from the send time of the last segment it covers (RACK's log, kept with SACK),
        // else the RTT sample above. CUBIC's HyStart counts them per round.
        let ca_sample = if self.sack_ok {
            self.snd.rack.delivery_rtt(now, ack)
        } else {
            self.rtt
                .latest()
                .filter(|_| self.rtt_seq.is_none_or(|t| ack > t.seq))
        };
        if let Some(sample) = ca_sample {
            self.cc.on_rtt_sample(now, sample, ack, self.snd.nxt);
        }
        if matches!(self.rtt_seq, Some(timed) if ack > timed.seq) {
            self.rtt_seq = None;
        }
        let in_flight_before = self.snd.in_flight();
        self.consume_acked(data_acked);
        self.ack_to(ack);
        // Urgent mode ends once the urgent data is acknowledged (Linux tcp_clean_rtx_queue).
        if self.snd.up.is_some_and(|up| up <= ack) {
            self.snd.up = None;
        }
        while self.snd.records.front().is_some_and(|&end| end <= ack) {
            self.snd.records.pop_front();
        }
        self.snd.scoreboard.prune(ack);
        // Progress: the timeouts in a row start again (Linux's `icsk_retransmits`).
        self.timeouts = 0;
        self.retrans_stamp = None;
        self.maybe_end_cwr(ack);
        // What this ACK newly delivered: bytes SACKed earlier and covered by it now were
        // counted when they were SACKed (as Linux's acked_sacked, which is what grows cwnd).
        let mut delivered =
            (acked + self.snd.scoreboard.sacked_bytes()).saturating_sub(sacked_before) + dsacked;
        if !self.sack_ok {
            // Without SACK, the duplicate ACKs before this one each stood for a segment the
            // peer got (limited transmit and PRR sent for them): this ACK covers those
            // again, and delivers only the rest, at least one segment; of what it covers,
            // one segment filled the hole and the rest leave the count (Linux's
            // `tcp_remove_reno_sacks`). Otherwise the window would grow again for the same
            // segments.
            let counted = self.recovery.reno_sacked;
            let segment = self.reno_segment();
            let segments = acked.div_ceil(segment);
            self.recovery.reno_sacked = counted.saturating_sub(segments.saturating_sub(1));
            // Duplicate ACKs still counted beyond what is out were reordering
            // (`tcp_remove_reno_sacks` calls `tcp_check_reno_reordering` with the ACK's
            // segments).
            self.reno_limit_sacked(segments);
            if counted > 0 {
                delivered = delivered
                    .saturating_sub(counted.saturating_mul(segment))
                    .max(segment.min(delivered));
            }
        }

        // Congestion control and NewReno recovery (RFC 6582 §3.2).
        match self.recovery.recover {
            Some(recover) if !self.sack_ok && ack == recover => {
                // Without SACK, an ACK of exactly the recovery point keeps Linux in recovery
                // until data above it is acknowledged (`tcp_try_undo_recovery`, RFC 6582's
                // guard against a false fast retransmit): the duplicate ACKs' count goes
                // (`tcp_reset_reno_sack`), nothing is resent, the window does not grow, and
                // PRR sizes what this ACK lets go; later duplicates count for nothing
                // (`on_duplicate_ack`). A head an earlier partial ACK marked lost, which
                // PRR held back, has now been acknowledged.
                self.recovery.reno_sacked = 0;
                self.recovery.retransmit_head = false;
                // When its timestamps show the originals arrived, the reduction is undone
                // first and the recovery is held all the same: PRR then sizes this ACK's
                // window from the restored ssthresh, and that window stays when the
                // recovery ends (`undone_while_held`).
                if self.packet_delayed(seg) {
                    self.undo_reduction(
                        "retransmissions overtaken by their originals (timestamps)",
                    );
                    self.recovery.undone_while_held = true;
                }
            }
            Some(recover) if ack >= recover && reneged => {
                // The recovery's point is acknowledged, but by an ACK that reneges: Linux's
                // `tcp_fastretrans_alert` returns at its reneging check, before the state's
                // exit, so the recovery holds (TCP_CA_Recovery, PRR sizing what this ACK
                // lets go) until an ACK that does not renege, or the timeout, which then
                // reduces again (`rto_reduce_from`) without F-RTO.
            }
            Some(recover) if ack >= recover => {
                // Full acknowledgment: leave fast recovery.
                growth = Some(self.end_fast_recovery(now, seg, delivered, in_flight_before));
            }
            Some(_) => {
                // Partial acknowledgment: without SACK the new head is lost and goes next
                // (RFC 6582 §3.2 step 5; Linux's `tcp_newreno_mark_lost`); with SACK the
                // pipe algorithm picks the hole. PRR sizes what is sent either way.
                if !self.sack_ok {
                    self.recovery.retransmit_head = true;
                }
                growth = Some(Growth {
                    delivered,
                    in_flight_before,
                    when: GrowWhen::Undone,
                });
                self.retransmit_deadline_reset(now);
            }
            None if self.recovery.rto_recover.is_some_and(|r| ack < r) => {
                // A timeout's recovery that this ACK does not end. The window grows now,
                // so that F-RTO's choice on this ACK (`process_loss`) sees it, as Linux
                // sends F-RTO's new data after `tcp_cong_control`; a congestion echo does
                // not stop it (the Loss state enters no CWR). If the ACK undoes the
                // timeout, the restored window grows again at the end. Only a window that
                // limited the flow grows (Linux's tcp_cong_avoid returns early unless
                // tcp_is_cwnd_limited); the controller sees the RTT anyway.
                let grow = if self.cwnd_limited() && self.recovery.cwr.is_none() {
                    delivered
                } else {
                    0
                };
                self.cc.on_ack(now, grow, in_flight_before, self.rtt.srtt());
                // The Loss state lets tcp_cong_avoid run, which stamps the window's use.
                self.cwnd_use.stamp = now;
                if grow > 0 {
                    growth = Some(Growth {
                        delivered,
                        in_flight_before,
                        when: GrowWhen::Loss {
                            grown: self.cc.window(),
                        },
                    });
                }
            }
            None => {
                // The open state, or the ACK that ends a timeout's recovery (Linux's
                // `tcp_process_loss` opens the connection, and a congestion echo or a loss
                // on the same ACK then starts CWR or a recovery from the window as it was):
                // the controller sees the RTT now, the growth at the end, once the ACK has
                // shown whether it starts a recovery or CWR (`tcp_fastretrans_alert` before
                // `tcp_cong_control`).
                self.cc.on_ack(now, 0, in_flight_before, self.rtt.srtt());
                growth = Some(Growth {
                    delivered,
                    in_flight_before,
                    when: GrowWhen::Open,
                });
            }
        }
        self.recovery.dupacks = 0;
        if self.recovery.recover.is_none() {
            // Outside a fast recovery, an ACK of new data starts the count of duplicate ACKs
            // again (Linux's `tcp_reset_reno_sack` in `tcp_fastretrans_alert`, after
            // `tcp_remove_reno_sacks` above had its look at reordering).
            self.recovery.reno_sacked = 0;
        }
        // RFC 8985 §7.4: an ACK of new data ends a probe episode; re-arm for the tail.
        self.recovery.tlp_outstanding = false;
        self.recovery.tlp_probes = 0;
        self.timers.tlp = None;
        match self.recovery.rto_recover {
            // Without SACK, an ACK of exactly the point the timeout had reached holds its
            // recovery (`loss_held`) until one goes above it; F-RTO has nothing left to judge.
            Some(r) if ack == r && !self.sack_ok => self.recovery.frto = None,
            Some(r) if ack >= r => {
                self.recovery.rto_recover = None;
                self.recovery.frto = None;
                self.snd.rack.on_recovery_end();
            }
            _ => {}
        }

        // RFC 6298 §5.2/§5.3: stop the timer when all is acknowledged, else restart it.
        self.retransmitting_since = None;
        if self.snd.una == self.snd.max {
            self.timers.retransmit = None;
        } else {
            self.retransmit_deadline_reset(now);
        }
        // The application may write again (Linux's tcp_check_space; once more after this
        // ACK's transmission, see `after_transmit`).
        if data_acked > 0 && self.check_space(now, false) {
            self.notify.writable = true;
        }
        self.arm_tlp(now);
        (growth, sampled.is_some())
    }

    /// Leave fast recovery: its point is acknowledged (Linux's state exit in
    /// `tcp_fastretrans_alert`, `tcp_try_undo_recovery` and `tcp_end_cwnd_reduction`). A
    /// head a partial ACK marked lost and PRR held back has been acknowledged. Returns the
    /// growth the ACK may bring, for the end of its processing.
    fn end_fast_recovery(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        delivered: usize,
        in_flight_before: usize,
    ) -> Growth {
        self.recovery.recover = None;
        self.recovery.retransmit_head = false;
        self.recovery.lost_below = None;
        self.recovery.reno_sacked = 0;
        if std::mem::take(&mut self.recovery.undone_while_held) {
            // Undone while held at the recovery point: the window PRR set stays, under the
            // restored ssthresh (Linux's `tcp_end_cwnd_reduction` leaves cwnd alone once
            // `undo_marker` is clear).
            self.cc.on_undone_recovery_end(now, self.recovery.prr_cwnd);
        } else {
            // PRR's exit, with SACK or without (Linux's `tcp_end_cwnd_reduction`, after
            // `tcp_reset_reno_sack`): cwnd = ssthresh.
            self.cc.on_prr_recovery_end();
        }
        self.snd.rack.on_recovery_end();
        // Linux's tcp_try_undo_recovery: the ACK that ends the recovery echoes a TSval older
        // than the first retransmission, so the originals arrived and the reduction was for
        // nothing.
        if self.packet_delayed(seg) {
            self.undo("retransmissions overtaken by their originals (timestamps)");
        }
        Growth {
            delivered,
            in_flight_before,
            when: GrowWhen::Open,
        }
    }

    /// RFC 5681 §3.2 fast retransmit, with RFC 6582's guard against a retransmit for
    /// duplicate ACKs of data sent before the last timeout.
    fn on_duplicate_ack(&mut self, now: Instant) {
        self.recovery.dupacks += 1;
        if !self.sack_ok && self.recovery.recover == Some(self.snd.una) {
            // A recovery held at its recovery point (`on_new_ack`): Linux's
            // `tcp_fastretrans_alert` returns before it counts the duplicate.
            return;
        }
        if !self.sack_ok && self.recovery.rto_recover.is_some_and(|r| self.snd.max <= r) {
            // In a timeout's recovery, until new data has gone past the point the timeout
            // had reached (F-RTO's step 2b), a duplicate ACK only answers a segment the
            // go-back resent that the peer already held: it delivers nothing new and starts
            // nothing (Linux's `tcp_process_loss` adds a Reno "SACK" only once `snd_nxt`,
            // our SND.MAX, is after `high_seq`; RFC 6582 §4.1, no fast retransmit below
            // `recover`).
            return;
        }
        if !self.sack_ok {
            // One more segment has left the network (Linux's `tcp_add_reno_sack`), never
            // all that is out (`tcp_limit_reno_sacked`): RFC 5681 §3.2 step 4's inflation by
            // one segment, taken out of the pipe that PRR sizes instead of added to cwnd.
            self.recovery.reno_sacked += 1;
            self.reno_limit_sacked(0);
        }
        if self.recovery.recover.is_some() {
            return;
        }
        // Without SACK the duplicate ACKs counted start it, three unless more were seen
        // than segments out (`reno_dupthresh`); with SACK, the third.
        let time_to_recover = if self.sack_ok {
            self.recovery.dupacks == 3
        } else {
            self.recovery.reno_sacked >= self.reno_dupthresh()
        };
        if time_to_recover {
            // With SACK, once the path has been seen to reorder only RACK calls a loss
            // (RFC 8985 §6.2 step 4; Linux's tcp_time_to_recover counts no duplicate ACKs
            // when RACK is on).
            if self.after_rto()
                || self.loss_held()
                || (self.sack_ok && self.snd.rack.reordering_seen())
            {
                return;
            }
            self.enter_recovery(now);
        }
    }

    /// Going back after a timeout, a retransmission was lost again (RACK found it, at `seq`):
    /// the connection leaves the timeout's recovery for a fast recovery, whose first
    /// retransmission is that one, on this ACK. So Linux's `tcp_fastretrans_alert` does in
    /// TCP_CA_Loss on FLAG_LOST_RETRANS (falling through to `tcp_enter_recovery`, RFC 8985
    /// §6.2, RFC 6675 §5.1); the go-back alone would have sent it again only at the next,
    /// backed-off, timeout, which would have cut the window to one segment once more.
    fn recover_lost_retransmission(&mut self, now: Instant, seq: SeqNumber) {
        self.recovery.rto_recover = None;
        self.recovery.frto = None;
        self.enter_recovery(now);
        if seq < self.recovery.high_rxt {
            self.recovery.high_rxt = seq.max(self.snd.una);
        }
        self.recovery.retransmit_head = self.recovery.high_rxt == self.snd.una;
    }

    /// Run RACK's detection: mark what it finds lost (everything un-SACKed below the highest
    /// lost segment is then resent by the recovery logic) and arm its timer for the rest.
    /// Returns where a retransmission it found lost starts, if it found one.
    fn rack_detect_only(&mut self, now: Instant) -> Option<SeqNumber> {
        let rtt = self.rtt.srtt().unwrap_or(self.current_rto());
        let recovering = self.recovery.recover.is_some() || self.after_rto();
        let dupthresh_sacked = if self.prr_packets() {
            // Linux's tcp_rack_reo_wnd: sacked_out >= reordering, in packets.
            self.snd.sacked_segments() >= crate::tcp::scoreboard::DUP_THRESH
        } else {
            self.snd.scoreboard.sacked_bytes()
                > (crate::tcp::scoreboard::DUP_THRESH - 1) * self.snd.mss
        };
        let resent_since = if self.after_rto() {
            self.recovery.rto_at
        } else {
            None
        };
        let d = self
            .snd
            .rack
            .detect(now, rtt, recovering, dupthresh_sacked, resent_since);
        if let Some(seq) = d.lost_retransmission {
            self.counters.add(|c| &mut c.lost_retransmits, 1);
            // A retransmission was lost: it is no longer in the pipe, and the recovery resends
            // it, by moving HighRxt back to it (RFC 6675 §4 NextSeg takes holes from there).
            // Once resent, it has a new send time and is not found lost again until data sent
            // after it arrives.
            if self.recovery.recover.is_some() && seq < self.recovery.high_rxt {
                self.recovery.high_rxt = seq.max(self.snd.una);
            }
        }
        if let Some(up) = d.lost_up_to {
            let up = up.min(self.snd.max);
            if up > self.snd.una {
                self.recovery.lost_below = Some(self.recovery.lost_below.map_or(up, |b| b.max(up)));
            }
        }
        self.timers.rack = d.recheck_at;
        d.lost_retransmission
    }

    /// RACK's timer fired: detect, and start recovery if SND.UNA is now lost.
    pub(super) fn rack_detect(&mut self, now: Instant) {
        if !self.sack_ok || self.snd.una == self.snd.max {
            return;
        }
        let lost_retransmission = self.rack_detect_only(now);
        let after_rto = self.after_rto();
        let lost = self.lost_boundary().is_some_and(|b| b > self.snd.una);
        if let (true, true, true, Some(seq)) = (
            self.recovery.recover.is_none(),
            after_rto,
            lost,
            lost_retransmission,
        ) {
            // As on an ACK (Linux's `tcp_rack_reo_timeout` calls `tcp_enter_recovery` from
            // TCP_CA_Loss too).
            self.recover_lost_retransmission(now, seq);
            self.prr_on_ack(self.prr_unit(), false, false);
        } else if self.recovery.recover.is_none() && !after_rto && lost {
            self.enter_recovery(now);
            // No ACK brought this on: as Linux's tcp_rack_reo_timeout, count one segment
            // delivered, which lets the first lost segment go.
            self.prr_on_ack(self.prr_unit(), false, false);
        }
    }

    /// RFC 2883 §4: the first SACK block reports a duplicate (D-SACK) when it lies below the
    /// cumulative ACK or inside the second block. A duplicate above `undo_marker` of data
    /// already acknowledged, or of resent data this ACK acknowledges or that lies SACKed
    /// above it, is a retransmission of the last recovery that was not needed (Linux's
    /// `tcp_check_dsack` and `tcp_sacktag_one`).
    ///
    /// As Linux's `tcp_dsack_seen`, a D-SACK is dubious, and changes nothing, when its block
    /// is longer than the largest window the peer offered, or when it brings the segments
    /// reported twice beyond those ever sent twice: a forged or broken block could otherwise
    /// undo a real reduction at one stroke, or widen RACK's window for duplicates no
    /// retransmission made. Only a path seen to reorder widens the window (RFC 8985 §6.2
    /// step 4; Linux sets `rack.dsack_seen` only with `reord_seen`).
    ///
    /// Returns the segments reported twice, none for a dubious D-SACK.
    fn count_dsack(&mut self, seg: &TcpRepr<'_>, una_before: SeqNumber) -> usize {
        let Some((left, right)) = seg.sack_ranges[0] else {
            return 0;
        };
        let inside_second = matches!(seg.sack_ranges[1], Some((l, r)) if left >= l && right <= r);
        if left >= right || !(left < seg.ack_number || inside_second) {
            return 0;
        }
        self.counters.add(|c| &mut c.dsacks_received, 1);
        let len = right - left;
        if len > self.snd.max_wnd {
            self.counters.add(|c| &mut c.dsacks_dubious, 1);
            return 0;
        }
        let segments = len.div_ceil(self.snd.mss.max(1)).max(1);
        let dups = u32::try_from(segments).unwrap_or(u32::MAX);
        self.counters.add(|c| &mut c.dsack_dups, dups);
        if self.counters.get().dsack_dups > self.retransmits {
            self.counters.add(|c| &mut c.dsacks_dubious, 1);
            return 0;
        }
        // A segment received twice: the reordering window may have been too short to
        // spare a retransmission.
        if self.snd.rack.reordering_seen() {
            self.snd.rack.on_dsack(una_before, self.snd.max);
        }
        if let Some(marker) = self.recovery.undo_marker {
            if right <= una_before && right > marker {
                // Data acknowledged before, no longer recorded: counted as it comes
                // (Linux's "dumb counting" in `tcp_check_dsack`).
                self.recovery.undo_dsacked += segments;
            } else if right > una_before && right > marker {
                // Data this ACK acknowledges (its own ACK lost), or SACKed above it: still
                // recorded, and counted where it was resent, as Linux's `tcp_sacktag_one`
                // counts it before `tcp_clean_rtx_queue` drops what the ACK covers.
                let from = left.max(una_before);
                self.recovery.undo_dsacked +=
                    self.snd
                        .rack
                        .retransmitted_between(from, right, self.snd.mss);
            }
        }
        segments
    }

    /// An ACK during a TLP episode (RFC 8985 §7.4.2, as Linux's `tcp_process_tlp_ack`).
    /// The episode ends once the ACK reaches `tlp_high_seq`: with nothing to judge if the
    /// probe was new data; with no loss if a D-SACK reports the probe's retransmission
    /// received twice, or the ACK is a pure duplicate (the original and the probe both
    /// arrived); and with a loss the probe repaired once an ACK goes past that point
    /// without such a D-SACK. That loss reduces the window as Linux does at one stroke:
    /// ssthresh from the controller, as for any congestion event, and cwnd set to it at
    /// once (`tcp_init_cwnd_reduction`, a CWR state that `tcp_end_cwnd_reduction` ends
    /// on the spot, then `tcp_try_keep_open`). `pure_dup`: the ACK moved nothing, carried no
    /// data, new SACK information nor window update.
    fn process_tlp_ack(&mut self, now: Instant, seg: &TcpRepr<'_>, pure_dup: bool) {
        let Some(high) = self.recovery.tlp_high_seq else {
            return;
        };
        let ack = seg.ack_number;
        if ack < high {
            return;
        }
        if !self.recovery.tlp_retrans || self.dsack_ends_at(seg, high) {
            self.recovery.tlp_high_seq = None;
        } else if ack > high {
            self.recovery.tlp_high_seq = None;
            self.counters.add(|c| &mut c.tlp_recoveries, 1);
            // Not again on top of a reduction under way (the recovery or CWR that started
            // since clears the episode; this guards a timeout's recovery).
            if self.recovery.recover.is_none() && self.recovery.cwr.is_none() && !self.after_rto() {
                let cwnd = self.cc.window();
                self.cc.on_congestion_signal(now, cwnd);
                self.cc.on_prr_recovery_end();
                self.ecn_queue_cwr();
                // `tcp_end_cwnd_reduction` stamps the window's use.
                self.cwnd_use.stamp = now;
            }
        } else if pure_dup {
            self.recovery.tlp_high_seq = None;
        }
    }

    /// Whether `seg` carries a D-SACK block of at most one segment ending at `end`: Linux's
    /// `FLAG_DSACK_TLP` (`tcp_dsack_seen`), the probe's retransmission reported twice.
    fn dsack_ends_at(&self, seg: &TcpRepr<'_>, end: SeqNumber) -> bool {
        let Some((left, right)) = seg.sack_ranges[0] else {
            return false;
        };
        let inside_second = matches!(seg.sack_ranges[1], Some((l, r)) if left >= l && right <= r);
        left < right
            && (left < seg.ack_number || inside_second)
            && right == end
            && right - left <= self.snd.mss
    }

    /// Whether a D-SACK was taken (counted, and not dubious) since the counters stood at
    /// `before` (received, dubious).
    fn dsack_taken_since(&self, before: (u32, u32)) -> bool {
        let loss = self.counters.get();
        let received = loss.dsacks_received.wrapping_sub(before.0);
        let dubious = loss.dsacks_dubious.wrapping_sub(before.1);
        received > dubious
    }

    /// Undo a spurious fast retransmit (RFC 3708 §3, Linux's `tcp_try_undo_dsack`): once
    /// every segment resent since the last recovery began was reported received twice, the
    /// losses were not real, and neither was the congestion: cwnd and ssthresh go back to
    /// what they were, and a recovery still under way ends.
    fn try_undo(&mut self) {
        // After a timeout only an ACK that moves SND.UNA undoes (`process_loss`).
        if self.after_rto() || !self.all_retransmissions_dsacked() {
            return;
        }
        self.undo("every retransmission reported received twice (D-SACK)");
    }

    /// Every segment resent since `undo_marker` was set has been reported received twice.
    fn all_retransmissions_dsacked(&self) -> bool {
        let r = &self.recovery;
        r.undo_marker.is_some() && r.undo_retrans > 0 && r.undo_dsacked >= r.undo_retrans
    }

    /// An ACK that came while going back after a retransmission timeout (Linux's
    /// `tcp_process_loss`). First, one that moves SND.UNA undoes the timeout if it shows it
    /// spurious (`tcp_try_undo_loss` with `tcp_may_undo`): it echoes a TSval older than the
    /// first retransmission (the originals got through: RFC 3522's Eifel detection,
    /// `tcp_packet_delayed`), or every retransmission has been reported received twice
    /// (D-SACK). Then F-RTO (RFC 5682 §3, the SACK-enhanced version Linux runs):
    /// - an ACK that delivers data sent before the timeout and never resent shows the
    ///   originals were only late: the timeout is undone (step 3b);
    /// - the first ACK that moves SND.UNA over resent data only sends new data next, instead
    ///   of the go-back's next retransmission, when there is new data and the peer's window
    ///   takes it (step 2b); otherwise F-RTO ends and the go-back goes on;
    /// - once that new data is out, a duplicate ACK or SACK information with nothing original
    ///   delivered shows the loss was real (step 3a): F-RTO ends and the go-back resumes
    ///   where it stopped. So does a late ACK of more resent data, where Linux resends the
    ///   lost (`REXMIT_LOST`) with F-RTO still watching for an original's delivery.
    ///
    /// `frto` is F-RTO's state before this ACK: one that reaches the end of the recovery
    /// still undoes the timeout when it delivers original data, as Linux tests
    /// `FLAG_ORIG_SACK_ACKED` before it looks at whether the recovery is over.
    fn process_loss(&mut self, seg: &TcpRepr<'_>, frto: Option<Frto>, ack: LossAck) {
        if ack.una_advanced && (self.all_retransmissions_dsacked() || self.packet_delayed(seg)) {
            self.undo_loss("the originals got through (timestamps or D-SACK)", false);
            return;
        }
        let Some(frto) = frto else {
            return;
        };
        if ack.original {
            self.undo_loss("F-RTO: data never resent was delivered", true);
            return;
        }
        if !self.after_rto() {
            // The recovery is over, and F-RTO with it.
            return;
        }
        match frto {
            // Step 3a: the new data is out, and this ACK delivered nothing original.
            Frto::NewData { resume, new_from }
                if self.snd.max > new_from
                    && (ack.new_sack_info || ack.duplicate || ack.una_advanced) =>
            {
                self.recovery.frto = None;
                self.resume_go_back(resume);
            }
            // The new data is out and nothing is decided yet (a window update).
            Frto::NewData { new_from, .. } if self.snd.max > new_from => {}
            _ if ack.una_advanced => {
                let resume = match frto {
                    Frto::NewData { resume, .. } => resume.max(self.snd.una),
                    Frto::Waiting => self.snd.nxt.max(self.snd.una),
                };
                // New data goes only if a segment of it can leave now (a whole one, or all
                // that is queued), under the peer's window and the congestion window less
                // what is resent and unacknowledged: otherwise the go-back would stop for
                // nothing until the next timeout. Linux pushes and, if nothing passed
                // `high_seq`, goes back to resending (`tcp_xmit_recovery`).
                // (A distance between sequence numbers is never below zero.)
                let unsent = (self.snd.data_start() + self.snd.buffer.len()) - self.snd.max;
                let window = (self.snd.una + ack.window) - self.snd.max;
                let congestion = self.cwnd().saturating_sub(resume - self.snd.una);
                let segment = unsent.min(self.payload_room());
                if segment > 0 && window.min(congestion) >= segment {
                    self.recovery.frto = Some(Frto::NewData {
                        resume,
                        new_from: self.snd.max,
                    });
                    self.recovery.rto_recover = Some(self.snd.max);
                    self.snd.nxt = self.snd.max;
                } else {
                    self.recovery.frto = None;
                    self.resume_go_back(resume);
                }
            }
            _ => {}
        }
    }

    /// The go-back after a timeout carries on from `resume` (or SND.UNA, if the peer has
    /// acknowledged past it), after F-RTO sent new data in its place.
    fn resume_go_back(&mut self, resume: SeqNumber) {
        let resume = resume.max(self.snd.una);
        if self.snd.nxt > resume {
            self.snd.nxt = resume;
        }
    }

    /// The last retransmission timeout was spurious: the window and ssthresh go back to what
    /// they were, the connection leaves the timeout's state, and what the timeout has not
    /// resent yet is taken as still in flight, as Linux clears the loss marks
    /// (`tcp_undo_cwnd_reduction`): a real loss among it is found by RACK, or by the next
    /// timeout, as any other. Without this, a delay spike longer than the RTO cost the flow
    /// its whole window and a second transmission of everything in flight.
    ///
    /// Without SACK, the timeout's state itself stays after an undo that F-RTO did not
    /// make, until SND.UNA reaches the point the timeout had reached, and after any undo
    /// at exactly that point, until an ACK goes above it (Linux's `tcp_try_undo_loss` sets
    /// `TCP_CA_Open` only for F-RTO or SACK, and `tcp_is_non_sack_preventing_reopen` holds
    /// it at `high_seq`): the reduction is undone, but duplicate ACKs still start no fast
    /// retransmit.
    fn undo_loss(&mut self, why: &str, frto_undo: bool) {
        tracing::debug!(local = %self.local, remote = %self.remote, why, "spurious retransmission timeout undone");
        self.recovery.undo_marker = None;
        self.recovery.undo_tsval = None;
        self.recovery.frto = None;
        self.counters.add(|c| &mut c.undos, 1);
        self.cc.on_spurious_rto();
        // What RACK called lost under the timeout's zero reordering window is not: the loss
        // marks go with the undo (`tcp_undo_cwnd_reduction(sk, true)`), and RACK judges the
        // flight afresh with its window.
        self.recovery.lost_below = None;
        let keep = !self.sack_ok && (!frto_undo || self.recovery.rto_recover == Some(self.snd.una));
        if !keep && self.recovery.rto_recover.take().is_some() {
            self.snd.rack.on_recovery_end();
        }
        if self.snd.nxt < self.snd.max {
            self.snd.nxt = self.snd.max;
        }
    }

    /// Whether this ACK echoes a TSval older than the first retransmission since the last
    /// recovery began (Linux's `tcp_packet_delayed`, RFC 3522's Eifel detection): what it
    /// acknowledges arrived in the original transmissions.
    fn packet_delayed(&self, seg: &TcpRepr<'_>) -> bool {
        let (Some(first), Some(ts)) = (self.recovery.undo_tsval, seg.timestamp) else {
            return false;
        };
        self.recovery.undo_marker.is_some()
            && self.ts.enabled
            && ts.tsecr != 0
            && (ts.tsecr.wrapping_sub(first) as i32) < 0
    }

    /// Whether a retransmission is still out, neither acknowledged nor SACKed (Linux's
    /// `retrans_out`): with SACK from RACK's record, without it anything resent above SND.UNA.
    fn retransmission_in_flight(&self) -> bool {
        if self.sack_ok {
            self.snd
                .rack
                .retransmitted_in_flight(self.snd.una, self.snd.mss)
                > 0
        } else {
            self.recovery.high_rxt > self.snd.una
        }
    }

    /// The last recovery's reduction was for nothing: cwnd and ssthresh go back to what they
    /// were, and a recovery still under way ends.
    fn undo(&mut self, why: &str) {
        self.undo_reduction(why);
        if self.recovery.recover.is_some() {
            self.recovery.recover = None;
            self.recovery.lost_below = None;
        }
    }

    /// The reduction of the last recovery is undone (Linux's `tcp_undo_cwnd_reduction`):
    /// cwnd and ssthresh go back to what they were, and no later ACK can undo it again.
    fn undo_reduction(&mut self, why: &str) {
        tracing::debug!(local = %self.local, remote = %self.remote, why, "spurious fast retransmit undone");
        self.recovery.undo_marker = None;
        self.recovery.undo_tsval = None;
        self.counters.add(|c| &mut c.undos, 1);
        self.cc.on_spurious_fast_retransmit();
    }

    /// Without SACK, the payload of a full-sized segment: what one duplicate ACK counts
    /// as delivered. The MSS less the options every segment carries (timestamps), as
    /// Linux's `mss_cache`, so that the bytes counted match the bytes sent.
    pub(super) fn reno_segment(&self) -> usize {
        self.payload_room().max(1)
    }

    /// Without SACK: the segments out (Linux's `packets_out`), full-sized but for the last.
    fn reno_packets_out(&self) -> usize {
        (self.snd.max - self.snd.una).div_ceil(self.reno_segment())
    }

    /// The degree of reordering seen, in segments (Linux's `tp->reordering`, at least its
    /// default `tcp_reordering`, 3): with SACK the largest distance a late segment came
    /// from behind RACK.fack; without, the duplicate ACKs that start a recovery.
    pub(super) fn reordering_degree(&self) -> usize {
        if self.sack_ok {
            self.snd
                .rack
                .reorder_distance()
                .div_ceil(self.snd.mss.max(1))
                .max(crate::tcp::scoreboard::DUP_THRESH)
        } else {
            self.reno_dupthresh()
        }
    }

    /// Without SACK: the duplicate ACKs counted (`reno_sacked`) that start a fast recovery
    /// (Linux's `tcp_newreno_mark_lost`: `sacked_out >= reordering` outside a recovery).
    pub(super) fn reno_dupthresh(&self) -> usize {
        self.recovery
            .reno_reordering
            .map_or(crate::tcp::scoreboard::DUP_THRESH, |r| usize::from(r.get()))
    }

    /// Without SACK: the duplicate ACKs counted more segments gone than are out less one,
    /// the hole they point at (`tcp_limit_reno_sacked`), so some were for segments that
    /// arrived out of order, or were duplicated, rather than lost. As Linux's
    /// `tcp_check_reno_reordering`, the count is cut back and the duplicate ACKs that start
    /// a recovery become the segments out plus `addend` (those the ACK just took off), at
    /// most 300 (`tcp_max_reordering`). Linux may lower it so below three; the default
    /// profile keeps RFC 5681's DupThresh as its floor.
    fn reno_limit_sacked(&mut self, addend: usize) {
        let out = self.reno_packets_out();
        // Linux's `max(lost_out, 1)`: in a timeout's recovery, all that was out at the
        // timeout and is not yet acknowledged (`tcp_timeout_mark_lost`), so that duplicate
        // ACKs count at most the segments sent since; otherwise the one hole.
        let lost = match self.recovery.rto_recover {
            Some(r) if self.snd.una < r => (r - self.snd.una).div_ceil(self.reno_segment()),
            _ => 0,
        };
        let holes = lost.max(1).min(out);
        if self.recovery.reno_sacked + holes <= out {
            return;
        }
        self.recovery.reno_sacked = out - holes;
        let floor = if self.cfg.recovery_in_packets {
            1
        } else {
            crate::tcp::scoreboard::DUP_THRESH
        };
        let reordering = out.saturating_add(addend).clamp(floor, 300);
        self.recovery.reno_reordering = u16::try_from(reordering)
            .ok()
            .and_then(std::num::NonZeroU16::new);
    }

    /// Without SACK: the bytes out less a segment for each one the duplicate ACKs counted
    /// gone (Linux's `packets_out - sacked_out` for Reno, in bytes).
    fn reno_unsacked(&self) -> usize {
        (self.snd.max - self.snd.una).saturating_sub(
            self.recovery
                .reno_sacked
                .saturating_mul(self.reno_segment()),
        )
    }

    /// The pipe of fast recovery without SACK (RFC 6675's pipe with Linux's Reno
    /// accounting, `tcp_packets_in_flight`): what is out, less a segment for each duplicate
    /// ACK (`sacked_out`), less the head while it is lost and not yet resent (`lost_out`,
    /// which its retransmission, `retrans_out`, puts back).
    pub(super) fn reno_pipe(&self) -> usize {
        let lost_head = if self.recovery.retransmit_head {
            self.reno_segment()
        } else {
            0
        };
        self.reno_unsacked().saturating_sub(lost_head)
    }

    /// Proportional Rate Reduction (RFC 6937 §3) with the slow-start reduction bound
    /// (PRR-SSRB), as Linux's `tcp_cwnd_reduction`: on each ACK during recovery, how much may
    /// be sent. While the pipe exceeds ssthresh, sending follows deliveries in the proportion
    /// ssthresh / RecoverFS, so the pipe falls smoothly to ssthresh over one round trip
    /// instead of stalling for half of it (RFC 6675) or bursting; below ssthresh it grows
    /// back towards ssthresh at most as fast as slow start would, one segment more than was
    /// delivered per ACK that advances SND.UNA.
    ///
    /// `delivered` is the ACK's DeliveredData, `una_advanced` whether SND.UNA moved, and
    /// `newly_lost` whether the ACK revealed new losses (then Linux withholds SSRB's extra
    /// segment).
    ///
    /// With [`Config::recovery_in_packets`](crate::Config::recovery_in_packets) every
    /// quantity is in segments, as Linux's are in packets: `delivered`, `prr_delivered`,
    /// `prr_out`, RecoverFS, the pipe, and ssthresh (the controller's, in whole segments);
    /// `prr_cwnd` is then the window in segments times the MSS.
    pub(super) fn prr_on_ack(&mut self, delivered: usize, una_advanced: bool, newly_lost: bool) {
        // Linux returns early when nothing was delivered, leaving cwnd as it was.
        if delivered == 0 {
            return;
        }
        let packets = self.prr_packets();
        // Without SACK, a segment as the duplicate ACKs count it (`reno_segment`).
        let one = if self.sack_ok {
            self.prr_unit()
        } else {
            self.reno_segment()
        };
        let (segment, ssthresh, pipe) = if packets {
            let ssthresh = self.cc.ssthresh() / self.snd.mss.max(1);
            let pipe = self
                .snd
                .pipe_segments(self.recovery.high_rxt, self.lost_boundary());
            (1, ssthresh.max(1), pipe)
        } else if !self.sack_ok {
            (self.payload_room(), self.cc.ssthresh(), self.reno_pipe())
        } else {
            let pipe = self.snd.pipe(self.recovery.high_rxt, self.lost_boundary());
            (self.payload_room(), self.cc.ssthresh(), pipe)
        };
        let bytes_per_unit = if packets { self.snd.mss } else { 1 };
        let r = &mut self.recovery;
        r.prr_delivered = r.prr_delivered.saturating_add(delivered);
        let sndcnt = if pipe > ssthresh {
            // sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out, the ceiling taken
            // in whole segments as Linux, which counts packets, takes it: otherwise the share
            // would grow by fractions of a segment that sender SWS avoidance holds back.
            let share = (r.prr_delivered as u128 * ssthresh as u128)
                .div_ceil(r.recover_fs.max(1) as u128 * segment as u128)
                .saturating_mul(segment as u128)
                .min(usize::MAX as u128) as usize;
            share.saturating_sub(r.prr_out)
        } else {
            // PRR-SSRB: limit = MAX(prr_delivered - prr_out, DeliveredData) + MSS, the MSS
            // only for an ACK that advances SND.UNA without new losses (Linux's refinement,
            // which keeps a lost retransmission from being answered with a burst).
            let mut limit = r.prr_delivered.saturating_sub(r.prr_out).max(delivered);
            if una_advanced && !newly_lost {
                limit = limit.saturating_add(one);
            }
            limit.min(ssthresh - pipe)
        };
        // The first ACK of recovery always lets the fast retransmit go (Linux: "Force a fast
        // retransmit upon entering fast recovery").
        let sndcnt = if r.prr_out == 0 {
            sndcnt.max(one)
        } else {
            sndcnt
        };
        r.prr_cwnd = pipe.saturating_add(sndcnt).saturating_mul(bytes_per_unit);
    }

    /// Enter fast recovery (RFC 5681 §3.2, RFC 6582 §3.2 step 2, RFC 6675 §5 step 4).
    fn enter_recovery(&mut self, now: Instant) {
        self.counters.add(|c| &mut c.recoveries, 1);
        // Retransmissions of an earlier recovery still in flight count as this one's, and
        // keep the earlier stamp, as Linux starts `undo_retrans` from `retrans_out` and keeps
        // `retrans_stamp` while any is out: otherwise one of them arriving (or its D-SACK)
        // would pass for proof that this recovery's retransmissions were not needed.
        let in_flight = if self.sack_ok {
            self.snd
                .rack
                .retransmitted_in_flight(self.snd.una, self.snd.mss)
        } else {
            0
        };
        self.recovery.undo_retrans = in_flight;
        self.recovery.undo_dsacked = 0;
        if in_flight == 0 {
            self.recovery.undo_tsval = None;
        }
        self.recovery.recover = Some(self.snd.max);
        self.recovery.undone_while_held = false;
        // Holes are sought from past what an earlier recovery resent and is still in flight;
        // when SND.UNA is such a segment, no fast retransmit of it either (RACK moves HighRxt
        // back to it if its retransmission is lost: `rack_detect_only`).
        self.recovery.high_rxt = if in_flight > 0 {
            let srtt = self.rtt.srtt().unwrap_or(self.current_rto());
            self.snd
                .rack
                .resent_in_flight_until(now, self.snd.una, srtt)
        } else {
            self.snd.una
        };
        self.recovery.tlp_pending = false;
        self.timers.tlp = None;
        // The recovery's reduction covers whatever the probe repaired
        // (`tcp_init_cwnd_reduction` clears `tlp_high_seq`).
        self.recovery.tlp_high_seq = None;
        self.recovery.retransmit_head = self.recovery.high_rxt == self.snd.una;
        self.rtt_seq = None;
        self.ecn_queue_cwr();
        // A loss while CWR already reduces the window for this round (RFC 3168 §6.1.2:
        // at most once per window): PRR goes on from where CWR left it, with the ssthresh
        // the mark set and no undo (Linux's tcp_enter_recovery skips
        // tcp_init_cwnd_reduction in CWR).
        if self.recovery.cwr.take().is_some() {
            self.recovery.undo_marker = None;
            return;
        }
        // RFC 6937 §3, on entering recovery (RecoverFS as Linux takes it: the window before
        // the reduction). Until the entering ACK is counted, nothing beyond the pipe.
        self.recovery.recover_fs = if self.prr_packets() {
            (self.cc.window() / self.snd.mss.max(1)).max(1)
        } else {
            self.cc.window()
        };
        self.recovery.undo_marker = Some(self.snd.una);
        self.recovery.prr_delivered = 0;
        self.recovery.prr_out = 0;
        // FlightSize for the reduction, not counting what the SACKs before recovery let go
        // beyond cwnd (RFC 5681 §3.2 step 2 leaves data sent by limited transmit out of this
        // calculation); or, as Linux, cwnd itself (`Config::fast_recovery_from_cwnd`).
        let flight = if self.cfg.fast_recovery_from_cwnd {
            self.cc.window()
        } else {
            self.snd.in_flight().min(self.cc.window())
        };
        self.cc.on_fast_retransmit(now, flight);
        self.recovery.prr_cwnd = if !self.sack_ok {
            self.reno_pipe()
        } else if self.prr_packets() {
            let pipe = self.snd.pipe_segments(self.snd.una, self.lost_boundary());
            pipe.saturating_mul(self.snd.mss)
        } else {
            self.snd.pipe(self.snd.una, self.lost_boundary())
        };
        // RFC 6675 §5 step 4.3 / RFC 5681 step 2: the first lost segment goes at once
        // (`retransmit_head`, above).
    }

    /// Restart the retransmission timer from now (RFC 6298 §5.3).
    pub(super) fn retransmit_deadline_reset(&mut self, now: Instant) {
        self.timers.retransmit = Some(now + self.current_rto());
    }
}

/// What an ACK that came while going back after a timeout did, for `process_loss`.
#[derive(Debug, Clone, Copy)]
struct LossAck {
    /// The peer's window as it leaves it.
    window: usize,
    /// It moved SND.UNA.
    una_advanced: bool,
    /// It delivered data sent before the timeout and never resent (Linux's
    /// `FLAG_ORIG_SACK_ACKED`).
    original: bool,
    /// It was a duplicate ACK.
    duplicate: bool,
    /// It brought new SACK information.
    new_sack_info: bool,
}
