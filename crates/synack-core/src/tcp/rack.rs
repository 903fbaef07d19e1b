//! RACK (RFC 8985 §6): time-based loss detection.
//!
//! The sender remembers when each segment in flight was last (re)transmitted. When an ACK
//! shows a segment delivered (cumulatively or by SACK), every segment sent *before* it that is
//! still undelivered is lost once a reordering window has passed beyond one round trip after
//! its transmission: a later segment overtook it, and reordering that large is unlikely.
//! Unlike DupThresh counting this also catches lost retransmissions and losses at the tail of
//! a flight, and it needs no duplicate ACKs at all.

use std::collections::VecDeque;
use std::time::Duration;

use crate::seq::SeqNumber;
use crate::shrink::{oversized, shrink_after_peak};
use crate::time::Instant;

/// One segment in flight.
#[derive(Debug, Clone, Copy)]
struct Sent {
    start: SeqNumber,
    end: SeqNumber,
    /// When it was last (re)transmitted.
    xmit: Instant,
    /// The order of that transmission among the connection's, for segments sent at the
    /// same instant (see [`Delivered::sent_after`]).
    order: u32,
    /// SACKed (or otherwise known delivered).
    delivered: bool,
    /// Sent more than once (RFC 8985 §6.1, Segment.retransmitted).
    retransmitted: bool,
}

/// One transmission (a new segment's, or a retransmission of a range), in the order they
/// were made: [`Rack::sent_order`] lists them as Linux's `tsorted_sent_queue` lists skbs, so
/// that a detection pass stops at the first one sent after the newest delivery.
#[derive(Debug, Clone, Copy)]
struct Transmission {
    order: u32,
    start: SeqNumber,
    end: SeqNumber,
}

/// What [`Rack::on_ack`] learns of an ACK's SACK information: the ranges its blocks newly
/// SACKed, disjoint and in sequence order ([`Scoreboard::fresh`]), and whether the
/// scoreboard (with them) covers a range wholly.
///
/// [`Scoreboard::fresh`]: crate::tcp::scoreboard::Scoreboard::fresh
pub(crate) type SackedBy<'a> = (
    &'a [(SeqNumber, SeqNumber)],
    &'a dyn Fn(SeqNumber, SeqNumber) -> bool,
);

/// Recoveries without a D-SACK after which a widened reordering window goes back to one
/// step (RFC 8985 §6.2 step 4: RACK.reo_wnd_persist; Linux's `TCP_RACK_RECOVERY_THRESH`).
const REO_WND_PERSIST: u8 = 16;

/// At most this many segments are tracked; past it the oldest records are merged away, so
/// a hostile receiver or a huge window cannot grow the log without bound.
const MAX_TRACKED: usize = 16 * 1024;

/// RACK.xmit_ts and RACK.end_seq (RFC 8985 §6.1): when the most recently sent segment known
/// delivered was sent, and where it ended. "Most recent" is by send time, then by the order
/// of transmission, then by end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delivered {
    xmit_ts: Instant,
    order: u32,
    end_seq: SeqNumber,
}

impl Delivered {
    /// Whether this segment was sent after `s`, or is `s`.
    ///
    /// RFC 8985's RACK_sent_after breaks a tie of send times by sequence number, which
    /// holds within one burst of new data but not for a retransmission sent in the same
    /// tick as the burst it repairs (a clock read once per round, or virtual time): the
    /// resent segment, lower in sequence, would look sent before everything after it and
    /// be judged lost at once. The transmission order breaks the tie instead; Linux's
    /// nanosecond send stamps all but never tie.
    fn sent_after(&self, s: &Sent) -> bool {
        s.xmit < self.xmit_ts
            || (s.xmit == self.xmit_ts
                && (order_after(self.order, s.order)
                    || (self.order == s.order && s.end <= self.end_seq)))
    }
}

/// Whether transmission `t` still has a segment in `log` (in sequence order) that it sent
/// last and that is not known delivered.
fn is_live(log: &VecDeque<Sent>, t: &Transmission) -> bool {
    let first = log.partition_point(|s| s.end <= t.start);
    log.range(first..)
        .take_while(|s| s.start < t.end)
        .any(|s| s.order == t.order && !s.delivered)
}

/// Whether transmission order `a` came after `b` (orders wrap: compared as sequence numbers).
fn order_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The RACK state of one connection.
#[derive(Debug, Default, Clone)]
pub(crate) struct Rack {
    /// The segments in flight, in sequence order.
    log: VecDeque<Sent>,
    /// The transmissions that may still have an undelivered segment in `log` carrying
    /// their `order`, oldest first (sorted by order). An entry whose segments were all
    /// delivered, acknowledged or sent again is dead; it goes when a detection pass or the
    /// cumulative ACK reaches it, or when dead ones outnumber the log (`push_sent_order`).
    /// Every undelivered segment in `log` overlaps a live entry of its own order. Boxed,
    /// and made with the first transmission after the storage was given back: a `Rack` is
    /// in every connection, idle ones included.
    #[allow(
        clippy::box_collection,
        reason = "8 bytes in every connection where a VecDeque is 32; the box is made rarely"
    )]
    sent_order: Option<Box<VecDeque<Transmission>>>,
    /// The next transmission's order (wrapping; compared as a sequence).
    next_order: u32,
    /// The most recently sent segment known delivered.
    newest_delivered: Option<Delivered>,
    /// RACK.min_RTT, for the reordering window (RFC 8985 §6.2 step 4: min_RTT / 4): the
    /// smallest round trip of a segment sent once, measured from the log to the
    /// microsecond (as Linux's `tcp_min_rtt`), or until there is one, the smallest SRTT the
    /// caller gave (which millisecond timestamps can round to zero on a fast path).
    min_rtt: Option<Duration>,
    /// `min_rtt` comes from the log.
    min_rtt_measured: bool,
    /// RACK.reo_wnd_mult (RFC 8985 §6.2 step 4): the reordering window in steps of
    /// min_RTT / 4 (0 reads as 1), one more for each round trip that brings a D-SACK.
    reo_wnd_mult: u8,
    /// RACK.reo_wnd_persist: recoveries left before a widened window goes back to one step.
    reo_wnd_persist: u8,
    /// RACK.dsack_round: while SND.UNA is below it, a D-SACK widens the window no further.
    dsack_round: Option<SeqNumber>,
    /// RACK.rtt (RFC 8985 §6.2 step 2): the round trip of the most recently sent segment
    /// known delivered, measured from its last transmission.
    rtt: Option<Duration>,
    /// RACK.fack: the highest end of a segment known delivered.
    fack: Option<SeqNumber>,
    /// RACK.reord (RFC 8985 §6.2 step 3): a segment never retransmitted was delivered below
    /// RACK.fack, so the path reorders.
    reord: bool,
    /// The largest such reordering seen, in bytes from the late segment's start to RACK.fack
    /// (Linux's `tcp_check_sack_reordering` metric, reported as TCP_INFO's reordering).
    reorder_distance: u32,
    /// An ACK delivered something since the last detection pass (Linux's `rack.advanced`,
    /// set by `tcp_rack_advance`): see [`take_advanced`](Self::take_advanced).
    advanced: bool,
    /// Records the searches that must stay short looked at (for the tests' bounds).
    #[cfg(test)]
    visits: core::cell::Cell<usize>,
}

#[cfg(test)]
impl Rack {
    /// The records looked at since the last call (see `visits`).
    pub(crate) fn take_visits(&self) -> usize {
        self.visits.take()
    }
}

/// What a detection pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Detection {
    /// The end of the highest segment now deemed lost.
    pub lost_up_to: Option<SeqNumber>,
    /// When to look again for segments not yet past their reordering window: once the last
    /// of them is (RFC 8985 §6.2 step 5 keeps the largest time remaining, as Linux's
    /// `tcp_rack_detect_loss` does for its `reo_timeout`), so that one timer marks them
    /// all. The earliest instead let the timer take them one by one, each as soon as it
    /// could be lost: an ACK that came in between found resent what it was acknowledging.
    pub recheck_at: Option<Instant>,
    /// Where the lowest retransmission among the lost starts (RFC 8985 §6.2: RACK judges a
    /// retransmission by its own send time, so this is a lost retransmission, not the
    /// original's loss).
    pub lost_retransmission: Option<SeqNumber>,
}

impl Rack {
    /// Bytes of heap the record of segments in flight holds.
    pub fn allocated(&self) -> usize {
        self.log.capacity() * core::mem::size_of::<Sent>()
            + self.sent_order.as_ref().map_or(0, |o| {
                core::mem::size_of::<VecDeque<Transmission>>()
                    + o.capacity() * core::mem::size_of::<Transmission>()
            })
    }

    /// Whether nothing is in flight but the record keeps storage.
    pub fn idle_storage(&self) -> bool {
        self.log.is_empty() && (self.log.capacity() > 0 || self.sent_order.is_some())
    }

    /// Forgets every segment on record and gives the storage back: the connection is closed,
    /// and nothing it sent will be sent again (Linux's `tcp_rtx_queue_purge`).
    pub fn forget_sent(&mut self) {
        self.log = VecDeque::new();
        self.sent_order = None;
    }

    /// Whether the record keeps room for far more segments than it holds: what a burst
    /// grew it to, with a few segments in flight since (see `shrink::oversized`).
    pub fn oversized(&self) -> bool {
        oversized(&self.log, 0) || self.sent_order.as_deref().is_some_and(|o| oversized(o, 0))
    }

    /// Gives back what an [`oversized`](Self::oversized) record holds beyond twice what
    /// is on it.
    pub fn shrink_oversized(&mut self) {
        shrink_after_peak(&mut self.log, 0);
        if let Some(order) = self.sent_order.as_deref_mut() {
            shrink_after_peak(order, 0);
        }
    }

    /// Gives the storage back if nothing is in flight.
    pub fn release_if_empty(&mut self) {
        if self.log.is_empty() {
            self.log = VecDeque::new();
            self.sent_order = None;
        }
    }

    /// Whether no segment is on record.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// Where the first segment on record above `una`, not known delivered, that carries
    /// more than `room` bytes of data starts (`fin`: where our FIN is, which a record may
    /// end with and which is no data), for a path MTU report's resend
    /// (`Connection::first_segment_longer_than`).
    pub fn first_longer_than(
        &self,
        una: SeqNumber,
        room: usize,
        fin: Option<SeqNumber>,
    ) -> Option<SeqNumber> {
        self.log
            .iter()
            .find(|s| {
                let with_fin = fin.is_some_and(|f| f >= s.start && f < s.end);
                s.end > una && !s.delivered && s.end - s.start - usize::from(with_fin) > room
            })
            .map(|s| s.start)
    }

    /// A new segment `[start, end)` left at `now`.
    pub fn on_send(&mut self, start: SeqNumber, end: SeqNumber, now: Instant) {
        if end <= start {
            return;
        }
        if self.log.len() >= MAX_TRACKED {
            // Merge the two oldest records. The merged one keeps the later time, which only
            // makes loss detection more conservative; but if only one of them is still
            // undelivered, that one's, the only one that can yet be lost (and whose
            // transmission `sent_order` still holds).
            if let (Some(a), Some(b)) = (self.log.pop_front(), self.log.pop_front()) {
                let a_later =
                    a.xmit > b.xmit || (a.xmit == b.xmit && order_after(a.order, b.order));
                let keep = match (a.delivered, b.delivered) {
                    (false, true) => a,
                    (true, false) => b,
                    _ if a_later => a,
                    _ => b,
                };
                self.log.push_front(Sent {
                    start: a.start,
                    end: b.end,
                    xmit: keep.xmit,
                    order: keep.order,
                    delivered: a.delivered && b.delivered,
                    retransmitted: a.retransmitted || b.retransmitted,
                });
            }
        }
        let order = self.take_order();
        self.log.push_back(Sent {
            start,
            end,
            xmit: now,
            order,
            delivered: false,
            retransmitted: false,
        });
        self.push_sent_order(Transmission { order, start, end });
    }

    /// Lists a transmission last in `sent_order`. First, if that list has grown past twice
    /// the log (dead entries the cumulative ACK did not reach, behind a hole, and no
    /// detection pass did), it keeps only the live ones: at most one per record, so the list
    /// stays within a small multiple of the log, for an amortised binary search a send.
    fn push_sent_order(&mut self, t: Transmission) {
        let sent_order = self.sent_order.get_or_insert_default();
        if sent_order.len() >= 2 * self.log.len() + 64 {
            let log = &self.log;
            sent_order.retain(|t| is_live(log, t));
        }
        sent_order.push_back(t);
    }

    /// The order of the transmission being made.
    fn take_order(&mut self) -> u32 {
        let order = self.next_order;
        self.next_order = order.wrapping_add(1);
        order
    }

    /// `[start, end)` was sent again at `now`, in segments of `segment` bytes.
    ///
    /// Data sent before the log began (a Fast Open SYN's, sent before the peer agreed to
    /// SACK) gets its records here, one a segment, marked as sent again: Linux's
    /// `tcp_rcv_fastopen_synack` marks that data lost and retransmits it, so it counts in
    /// `retrans_out` and gives no RTT sample.
    pub fn on_retransmit(
        &mut self,
        start: SeqNumber,
        end: SeqNumber,
        segment: usize,
        now: Instant,
    ) {
        let order = self.take_order();
        let unlogged = match (self.log.front(), self.log.back()) {
            (None, _) => Some((start, end, false)),
            (Some(front), _) if start < front.start => Some((start, end.min(front.start), true)),
            (_, Some(back)) if end > back.end && start >= back.end => Some((start, end, false)),
            _ => None,
        };
        if let Some((from, to, in_front)) = unlogged {
            let mut pieces = Vec::new();
            let mut at = from;
            while at < to && self.log.len() + pieces.len() < MAX_TRACKED {
                let piece_end = if to - at > segment.max(1) {
                    at + segment.max(1)
                } else {
                    to
                };
                pieces.push(Sent {
                    start: at,
                    end: piece_end,
                    xmit: now,
                    order,
                    delivered: false,
                    retransmitted: true,
                });
                at = piece_end;
            }
            if in_front {
                for p in pieces.into_iter().rev() {
                    self.log.push_front(p);
                }
            } else {
                self.log.extend(pieces);
            }
        }
        // A retransmission that covers part of a record splits it, as Linux's `tcp_fragment`
        // splits the skb: the part not sent again keeps its send time, so that a recovery
        // still resends it (`resent_in_flight_until`) and RACK judges it by its own
        // transmission. (A resent segment can carry less than the first: SACK blocks in its
        // options, a lower path MTU, a probe of a single segment.)
        self.split_at(start);
        self.split_at(end);
        // From the first record that reaches past `start`, found by binary search (the log
        // is in sequence order): a recovery resending a hole of thousands of records one
        // segment at a time walked the log from its front for each, quadratic in the flight
        // (Linux finds the skb in its rb-tree retransmission queue).
        let first = self.log.partition_point(|s| s.end <= start);
        for s in self.log.range_mut(first..) {
            #[cfg(test)]
            self.visits.set(self.visits.get() + 1);
            if s.start >= end {
                break;
            }
            s.xmit = now;
            s.order = order;
            s.retransmitted = true;
        }
        self.push_sent_order(Transmission { order, start, end });
    }

    /// Splits the record that holds `seq` inside it in two at `seq`; none past
    /// `MAX_TRACKED` (the whole record is then taken as resent).
    fn split_at(&mut self, seq: SeqNumber) {
        if self.log.len() >= MAX_TRACKED {
            return;
        }
        let i = self.log.partition_point(|s| s.end <= seq);
        if let Some(s) = self.log.get_mut(i) {
            if s.start < seq && seq < s.end {
                let mut right = *s;
                right.start = seq;
                s.end = seq;
                self.log.insert(i + 1, right);
            }
        }
    }

    /// When the first segment on record above `una` (the retransmission queue's head) was
    /// last sent, as Linux's `tcp_rto_delta_us` reads it from `tcp_rtx_queue_head`.
    pub fn head_xmit(&self, una: SeqNumber) -> Option<Instant> {
        self.log.iter().find(|s| s.end > una).map(|s| s.xmit)
    }

    /// The round trip a cumulative ACK of `una` arriving at `now` measures: from the sending
    /// of the last segment it covers wholly, if that was sent once (Linux's `ca_rtt_us` from
    /// `last_ackt`, which congestion control's `pkts_acked` sees on every ACK of new data).
    /// Read before [`on_ack`](Self::on_ack) takes those segments off the log.
    pub fn delivery_rtt(&self, now: Instant, una: SeqNumber) -> Option<Duration> {
        let last = self.log.iter().take_while(|s| s.end <= una).last()?;
        (!last.retransmitted).then(|| now - last.xmit)
    }

    /// The round trip a cumulative ACK moving SND.UNA from `from` to `una` at `now` measures,
    /// as Linux's `tcp_clean_rtx_queue` takes `seq_rtt_us` for `tcp_ack_update_rtt`: from the
    /// sending of the first segment it newly acknowledges (not SACKed before), and none if it
    /// acknowledges anything sent more than once (Karn's rule, RFC 6298 §3).
    pub fn acked_rtt(&self, now: Instant, from: SeqNumber, una: SeqNumber) -> Option<Duration> {
        let mut first = None;
        for s in self.log.iter().take_while(|s| s.end <= una) {
            if s.end <= from {
                continue;
            }
            if s.retransmitted {
                return None;
            }
            if first.is_none() && !s.delivered {
                first = Some(s.xmit);
            }
        }
        first.map(|xmit| now - xmit)
    }

    /// An ACK arrived at `now`: everything below `una` and every segment wholly inside a
    /// SACKed range is delivered. `rtt` is the connection's latest RTT estimate. Returns
    /// the lowest end among the segments this ACK newly delivered that were never sent
    /// twice (what Linux's `FLAG_ORIG_SACK_ACKED` tests against `high_seq`, for F-RTO), and
    /// the RTT sample its SACK blocks give: the time since the first segment in sequence
    /// order that they newly SACKed among those sent once (Linux's `sack_rtt_us`, from
    /// `first_sackt`, unambiguous by Karn's rule).
    ///
    /// `sacked` is `None` when the receiver holds nothing out of order: then only the
    /// cumulative ACK is applied, in time proportional to what it acknowledged, which keeps
    /// the loss-free path from scanning the whole log on every ACK. Otherwise it holds what
    /// this ACK's blocks newly SACKed and whether the scoreboard covers a range: a segment
    /// can only have become wholly SACKed by this ACK if it overlaps what the ACK newly
    /// SACKed, so only the segments under those ranges are looked at (found by binary
    /// search; the log is in sequence order), not the whole log against every range on each
    /// ACK, which a receiver holding many small holes open could make a million steps an
    /// ACK, nor every segment under the ACK's blocks, which a receiver repeating one wide
    /// block could make as many steps as segments in flight on every duplicate ACK.
    pub fn on_ack(
        &mut self,
        now: Instant,
        una: SeqNumber,
        sacked: Option<SackedBy<'_>>,
        rtt: Option<Duration>,
    ) -> (Option<SeqNumber>, Option<Duration>) {
        if let Some(rtt) = rtt.filter(|_| !self.min_rtt_measured) {
            self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        }
        // Nothing newly delivered (no SACK blocks, and nothing logged at or below SND.UNA):
        // the receiver's side of a transfer takes this path on every data segment.
        if sacked.is_none() && self.log.front().is_none_or(|s| s.end > una) {
            return (None, None);
        }
        let mut measured: Option<Duration> = None;
        let mut first_sacked: Option<Duration> = None;
        let mut original: Option<SeqNumber> = None;
        let mut newest = self.newest_delivered;
        let mut advanced = false;
        let mut rack_rtt = self.rtt;
        let mut fack = self.fack;
        let mut reord = self.reord;
        let mut distance = self.reorder_distance;
        let min_rtt = self.min_rtt;
        // The cumulative part of the ACK is judged against RACK.fack as it stood before this
        // ACK's SACK blocks (Linux's `prior_fack` in tcp_clean_rtx_queue): segments ACKed
        // together with SACKs above them were not overtaken, they were only ACKed late.
        let prior_fack = self.fack;
        let mut note = |s: &Sent, cumulative: bool| {
            // Step 3: a segment sent once and delivered (for the first time: not SACKed
            // before) below the highest delivered one overtook nothing; it was overtaken.
            let highest = if cumulative { prior_fack } else { fack };
            if !s.delivered && !s.retransmitted {
                if let Some(f) = highest.filter(|&f| s.end < f) {
                    reord = true;
                    distance = distance.max(u32::try_from(f - s.start).unwrap_or(u32::MAX));
                }
            }
            fack = Some(fack.map_or(s.end, |f| f.max(s.end)));
            let sample = now - s.xmit;
            if !s.retransmitted && !s.delivered {
                measured = Some(measured.map_or(sample, |m| m.min(sample)));
                original = Some(original.map_or(s.end, |o| o.min(s.end)));
                if !cumulative && first_sacked.is_none() {
                    first_sacked = Some(sample);
                }
            }
            // Step 2: a retransmitted segment delivered sooner than the path's minimum RTT
            // after its retransmission was most likely delivered by its original: no
            // sample, and it does not count as the most recently sent delivery.
            if s.retransmitted && min_rtt.is_some_and(|m| sample < m) {
                return;
            }
            // As Linux's tcp_rack_advance, RACK.rtt is the sample of the last delivery this
            // ACK reports (new SACKs first, then the cumulative ACK in sequence order), where
            // the RFC keeps the most recently sent one's: Linux's timing is what packetdrill
            // checks.
            rack_rtt = Some(sample);
            advanced = true;
            if !newest.is_some_and(|n: Delivered| n.sent_after(s)) {
                newest = Some(Delivered {
                    xmit_ts: s.xmit,
                    order: s.order,
                    end_seq: s.end,
                });
            }
        };
        if let Some((ranges, covered)) = sacked {
            // In sequence order, as before (and as Linux sorts the blocks in
            // tcp_sacktag_write_queue): RACK.rtt is the last delivery's sample.
            for &(left, right) in ranges {
                let from = self.log.partition_point(|s| s.end <= left);
                for s in self.log.range_mut(from..) {
                    if s.start >= right {
                        break;
                    }
                    #[cfg(test)]
                    self.visits.set(self.visits.get() + 1);
                    if s.end > una && !s.delivered && covered(s.start, s.end) {
                        note(s, false);
                        s.delivered = true;
                    }
                }
            }
        }
        while let Some(front) = self.log.front() {
            if front.end > una {
                break;
            }
            // A segment SACKed before was delivered then, and counted then: the ACK that
            // covers it now takes no sample from it (Linux's `tcp_clean_rtx_queue` calls
            // `tcp_rack_advance` only for skbs not `TCPCB_SACKED_ACKED`). Its send time
            // would otherwise stand as RACK.rtt, as long as the time since the flight left,
            // and hold back the loss of the holes behind later SACKs.
            if !front.delivered {
                note(front, true);
            }
            self.log.pop_front();
        }
        // Transmissions at the front wholly below SND.UNA, where no record is left to overlap
        // them, are dead.
        if let Some(sent_order) = self.sent_order.as_mut() {
            while let Some(t) = sent_order.front() {
                if t.end > una || self.log.front().is_some_and(|s| s.start < t.end) {
                    break;
                }
                sent_order.pop_front();
            }
        }
        self.newest_delivered = newest;
        self.advanced |= advanced;
        self.rtt = rack_rtt;
        self.fack = fack;
        self.reord = reord;
        self.reorder_distance = distance;
        if let Some(m) = measured {
            self.min_rtt = Some(match self.min_rtt {
                Some(old) if self.min_rtt_measured => old.min(m),
                _ => m,
            });
            self.min_rtt_measured = true;
        }
        (original, first_sacked)
    }

    /// Whether an ACK delivered something (and RACK.rtt was taken from it) since the last
    /// call: only then can an ACK's detection pass find more lost than the last one did,
    /// but for time passing, which the RACK timer covers. Linux's `tcp_rack_mark_lost`
    /// returns at once without `rack.advanced` ("to avoid unnecessary queue scanning"):
    /// the pass walks every record, and a receiver repeating the same SACK blocks on
    /// duplicate ACKs made each of them a walk of up to 16 Ki records.
    pub fn take_advanced(&mut self) -> bool {
        std::mem::take(&mut self.advanced)
    }

    /// Whether the path has been seen to reorder (RACK.reord). Until it has, DupThresh
    /// SACKed segments call a loss at once; after, only RACK's reordering window does.
    pub fn reordering_seen(&self) -> bool {
        self.reord
    }

    /// RFC 8985 §6.2 step 4 (RACK_update_reo_wnd), D-SACK part: an ACK whose D-SACK reports
    /// a segment received twice (a retransmission the reordering window was too short to
    /// spare) widens the window by one step, at most once per round trip (until SND.UNA
    /// passes `snd_nxt`, SND.NXT when it widened), and keeps it wide for 16 recoveries.
    pub fn on_dsack(&mut self, una: SeqNumber, snd_nxt: SeqNumber) {
        self.end_dsack_round(una);
        if self.dsack_round.is_none() {
            self.dsack_round = Some(snd_nxt);
            self.reo_wnd_mult = self.reo_wnd_mult.max(1).saturating_add(1);
            self.reo_wnd_persist = REO_WND_PERSIST;
        }
    }

    /// RFC 8985 §6.2 step 4, run for every ACK that moves SND.UNA (`una`, where it stood
    /// before the ACK, as Linux compares `prior_delivered`): the D-SACK round ends once SND.UNA
    /// reaches its mark. Left to the next D-SACK alone, a mark that SND.UNA had passed by
    /// 2 GiB or more read as ahead of it again, and the window never widened after.
    pub fn end_dsack_round(&mut self, una: SeqNumber) {
        if self.dsack_round.is_some_and(|r| una >= r) {
            self.dsack_round = None;
        }
    }

    /// RFC 8985 §6.2 step 4, the rest: a fast or RTO recovery ended. After 16 of them with no
    /// D-SACK the window is back to one step.
    pub fn on_recovery_end(&mut self) {
        self.reo_wnd_persist = self.reo_wnd_persist.saturating_sub(1);
        if self.reo_wnd_persist == 0 {
            self.reo_wnd_mult = 1;
        }
    }

    /// The largest reordering seen, in bytes (zero if none).
    pub fn reorder_distance(&self) -> usize {
        self.reorder_distance as usize
    }

    /// RFC 8985 §6.2 step 4 (RACK_update_reo_wnd), as Linux's `tcp_rack_reo_wnd`: no
    /// reordering window while the path has shown no reordering and either loss recovery is
    /// under way or DupThresh segments are SACKed (the DupThresh rule would call the loss
    /// now anyway); else a quarter of the minimum RTT times RACK.reo_wnd_mult, at most
    /// `srtt`.
    fn reo_wnd(&self, srtt: Duration, recovering: bool, dupthresh_sacked: bool) -> Duration {
        if !self.reord && (recovering || dupthresh_sacked) {
            return Duration::ZERO;
        }
        let steps = u32::from(self.reo_wnd_mult.max(1));
        self.min_rtt
            .map_or(Duration::ZERO, |m| (m / 4 * steps).min(srtt))
    }

    /// RFC 8985 §6.2 step 5 (RACK_detect_loss): which undelivered segments sent before the
    /// newest delivered one have waited RACK.rtt plus the reordering window. `srtt` stands
    /// in for RACK.rtt until there is one. `recovering` and `dupthresh_sacked` (at least
    /// DupThresh segments' worth SACKed) decide the reordering window. A lost segment counts
    /// as a lost retransmission only if it was resent at or after `resent_since` (the last
    /// timeout, while going back after it: Linux's `tcp_timeout_mark_lost` clears every
    /// retransmitted mark then, so only the go-back's own resends can be lost again).
    ///
    /// It walks only the transmissions made up to the newest delivery, in `sent_order`, and
    /// drops from them those left with nothing undelivered (Linux's `tcp_rack_detect_loss`
    /// walks `tsorted_sent_queue` to the first skb sent after it, and a SACKed skb leaves that
    /// list). Each pass then costs the holes, not the flight: the whole log on every ACK that
    /// SACKed a segment made a recovery quadratic in the flight, up to 16 Ki records an ACK.
    pub fn detect(
        &mut self,
        now: Instant,
        srtt: Duration,
        recovering: bool,
        dupthresh_sacked: bool,
        resent_since: Option<Instant>,
    ) -> Detection {
        let mut out = Detection::default();
        let Some(newest) = self.newest_delivered else {
            return out;
        };
        let reo_wnd = self.reo_wnd(srtt, recovering, dupthresh_sacked);
        let rtt = self.rtt.unwrap_or(srtt);
        // Transmissions are in the order made, and a segment's send time follows its
        // transmission's order: none after the newest delivery's can hold a segment sent
        // before it. Those before are walked from the last, and the live ones are moved up
        // against it, so that the dead ones end up in front, to be dropped at once.
        let Some(sent_order) = self.sent_order.as_mut() else {
            return out;
        };
        let before = sent_order.partition_point(|t| !order_after(t.order, newest.order));
        let mut kept = before;
        for i in (0..before).rev() {
            let t = sent_order[i];
            let first = self.log.partition_point(|s| s.end <= t.start);
            let mut live = false;
            for s in self.log.range(first..) {
                if s.start >= t.end {
                    break;
                }
                #[cfg(test)]
                self.visits.set(self.visits.get() + 1);
                // A record sent again since belongs to its later transmission's entry.
                if s.order != t.order || s.delivered {
                    continue;
                }
                live = true;
                if !newest.sent_after(s) {
                    continue;
                }
                let deadline = s.xmit + rtt + reo_wnd;
                if deadline <= now {
                    out.lost_up_to = Some(out.lost_up_to.map_or(s.end, |e| e.max(s.end)));
                    if s.retransmitted
                        && resent_since.is_none_or(|since| s.xmit >= since)
                        && out.lost_retransmission.is_none_or(|l| s.start < l)
                    {
                        out.lost_retransmission = Some(s.start);
                    }
                } else {
                    out.recheck_at = Some(out.recheck_at.map_or(deadline, |t| t.max(deadline)));
                }
            }
            if live {
                kept -= 1;
                sent_order[kept] = t;
            }
        }
        sent_order.drain(..kept);
        out
    }

    /// The end of the run of segments from `from` that are SACKed or whose retransmission is
    /// still in flight, not yet lost by RACK's rule (as [`detect`](Self::detect) judges it
    /// during a recovery); `from` itself when the segment there is neither. A recovery resends
    /// none of them (RFC 6675 §4 NextSeg takes only lost holes): Linux skips every skb still
    /// marked `TCPCB_SACKED_RETRANS` in `tcp_xmit_retransmit_queue` until RACK marks it lost.
    pub fn resent_in_flight_until(
        &self,
        now: Instant,
        from: SeqNumber,
        srtt: Duration,
    ) -> SeqNumber {
        let first = self.log.partition_point(|s| s.end <= from);
        let mut until = from;
        for s in self.log.range(first..) {
            if s.start > until || !self.passed_over(s, now, srtt) {
                break;
            }
            until = s.end;
        }
        until
    }

    /// Where the run of segments from `from` that a recovery may resend ends: at the first
    /// one [`resent_in_flight_until`](Self::resent_in_flight_until) passes over, if any,
    /// looking no further than `limit`.
    ///
    /// The caller bounds `limit` by what one packet can carry: a lost hole of thousands of
    /// records (a tiny MSS, half a flight lost) is resent a packet at a time, and a search
    /// to the hole's end for each packet made the recovery quadratic in the flight.
    pub fn resendable_until(
        &self,
        now: Instant,
        from: SeqNumber,
        limit: SeqNumber,
        srtt: Duration,
    ) -> Option<SeqNumber> {
        let first = self.log.partition_point(|s| s.end <= from);
        self.log
            .range(first..)
            .take_while(|s| s.start < limit)
            .find(|s| s.start >= from && self.passed_over(s, now, srtt))
            .map(|s| s.start)
    }

    /// Whether a recovery passes over `s`: SACKed, or resent and not yet lost by RACK's rule.
    fn passed_over(&self, s: &Sent, now: Instant, srtt: Duration) -> bool {
        #[cfg(test)]
        self.visits.set(self.visits.get() + 1);
        let reo_wnd = self.reo_wnd(srtt, true, false);
        let rtt = self.rtt.unwrap_or(srtt);
        let lost = self
            .newest_delivered
            .is_some_and(|newest| newest.sent_after(s) && s.xmit + rtt + reo_wnd <= now);
        s.delivered || (s.retransmitted && !lost)
    }

    /// Segments above `una` for which `keep(start, end, delivered)` holds, `delivered`
    /// meaning SACKed: what Linux counts in packets (`packets_out`, `sacked_out`, its
    /// packets in flight) where synack counts bytes, for
    /// [`Config::recovery_in_packets`](crate::Config::recovery_in_packets).
    pub fn count_segments(
        &self,
        una: SeqNumber,
        mut keep: impl FnMut(SeqNumber, SeqNumber, bool) -> bool,
    ) -> usize {
        self.log
            .iter()
            .filter(|s| s.end > una && keep(s.start, s.end, s.delivered))
            .count()
    }

    /// The receiver reneged and a timeout gives up on its SACKs: no segment counts as
    /// delivered any more, so that the pipe, RACK's passes and TCP_INFO see them all out
    /// again (Linux's `tcp_timeout_mark_lost` clears `TCPCB_SACKED_ACKED` on every skb). What
    /// RACK learnt of the path from them (RACK.rtt, RACK.fack, reordering) stays, as
    /// Linux's `rack` state does.
    pub fn forget_deliveries(&mut self) {
        for s in &mut self.log {
            s.delivered = false;
        }
        // Every record is undelivered again, and the entries of those that were delivered
        // are gone: list each record's transmission afresh, oldest first.
        let next = self.next_order;
        let mut sent: Vec<Transmission> = self
            .log
            .iter()
            .map(|s| Transmission {
                order: s.order,
                start: s.start,
                end: s.end,
            })
            .collect();
        sent.sort_by_key(|t| std::cmp::Reverse(next.wrapping_sub(t.order)));
        self.sent_order = Some(Box::new(sent.into()));
    }

    /// Whether at most one segment above `una` is tracked (Linux's `packets_out <= 1`), by
    /// a binary search: the probe timeout asks on every ACK, and the log may hold thousands.
    pub fn at_most_one_above(&self, una: SeqNumber) -> bool {
        // Every ACK prunes the log to SND.UNA (`on_ack`), so its front is nearly always above
        // it; the search is for the rest (this runs each time the loss probe is armed).
        let first = match self.log.front() {
            Some(s) if s.end > una => 0,
            _ => self.log.partition_point(|s| s.end <= una),
        };
        self.log.len() - first <= 1
    }

    /// Bytes above `una` sent more than once and not yet known delivered, as segments of
    /// `mss`: Linux's `retrans_out` (TCP_INFO's `tcpi_retrans`), which counts the packets of
    /// every skb marked retransmitted until it is acknowledged or SACKed.
    pub fn retransmitted_in_flight(&self, una: SeqNumber, mss: usize) -> usize {
        self.log
            .iter()
            .filter(|s| s.end > una && s.retransmitted && !s.delivered)
            .map(|s| (s.end - s.start.max(una)).div_ceil(mss.max(1)))
            .sum()
    }

    /// [`retransmitted_in_flight`](Self::retransmitted_in_flight), counting only segments
    /// last resent at or after `since`.
    pub fn retransmitted_since(&self, una: SeqNumber, since: Instant, mss: usize) -> usize {
        self.log
            .iter()
            .filter(|s| s.end > una && s.retransmitted && !s.delivered && s.xmit >= since)
            .map(|s| (s.end - s.start.max(una)).div_ceil(mss.max(1)))
            .sum()
    }

    /// Bytes in `[from, to)` of segments sent more than once, as segments of `mss`: what a
    /// D-SACK block over recorded data says arrived twice because it was resent (Linux's
    /// `tcp_sacktag_one` takes a duplicate off `undo_retrans` only for an skb marked
    /// `TCPCB_RETRANS`).
    pub fn retransmitted_between(&self, from: SeqNumber, to: SeqNumber, mss: usize) -> usize {
        let first = self.log.partition_point(|s| s.end <= from);
        self.log
            .range(first..)
            .take_while(|s| s.start < to)
            .filter(|s| s.retransmitted)
            .map(|s| (s.end.min(to) - s.start.max(from)).div_ceil(mss.max(1)))
            .sum()
    }

    /// Segments tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.log.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A SACK block over every sequence number these tests use: the closure given with it
    /// decides what is covered.
    const EVERYWHERE: [(SeqNumber, SeqNumber); 1] = [(SeqNumber(0), SeqNumber(1 << 20))];

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    /// RFC 8985 §6.2 step 4 ends the D-SACK round on every ACK, which the connection does
    /// as SND.UNA moves (`Connection::ack_to` calls `end_dsack_round`): a D-SACK that comes
    /// 3 GiB after the round ended widens the window again. The round used to end only at
    /// the next D-SACK, whose SND.UNA, 2 GiB or more past the mark, read as below it.
    #[test]
    fn a_dsack_round_ends_however_far_snd_una_moves_after() {
        let mut r = Rack::default();
        r.on_dsack(s(1000), s(65_000));
        assert_eq!(r.reo_wnd_mult, 2);
        // Within the round: no wider.
        r.end_dsack_round(s(30_000));
        r.on_dsack(s(30_000), s(90_000));
        assert_eq!(r.reo_wnd_mult, 2);
        // The ACKs of the next 3 GiB, a window at a time.
        let mut una = 30_000_u32;
        for _ in 0..(3_u32 << 30) / (1 << 24) {
            r.end_dsack_round(s(una));
            una = una.wrapping_add(1 << 24);
        }
        r.on_dsack(s(una), s(una.wrapping_add(65_000)));
        assert_eq!(r.reo_wnd_mult, 3, "a D-SACK 3 GiB after the round ended");
    }

    /// Linux's seq_rtt_us: from the first segment an ACK newly acknowledges, not one the
    /// peer SACKed before, and nothing when a retransmitted one is among them (Karn).
    #[test]
    fn a_burst_record_shrinks_to_what_is_in_flight() {
        let mut r = Rack::default();
        for i in 0..4096u32 {
            r.on_send(s(i * 1000), s((i + 1) * 1000), t(0));
        }
        let burst = r.allocated();
        // All but the last 10 segments delivered.
        r.on_ack(t(10), s(4086 * 1000), None, None);
        assert_eq!(r.len(), 10);
        assert!(r.oversized());
        assert_eq!(
            r.allocated(),
            burst,
            "nothing goes before the reclaim timer"
        );
        r.shrink_oversized();
        assert!(!r.oversized());
        assert!(r.allocated() <= burst / 16, "{} of {burst}", r.allocated());
        assert_eq!(r.len(), 10, "what is in flight stays on record");
        // A record that holds what it has room for is left alone.
        let kept = r.allocated();
        r.shrink_oversized();
        assert_eq!(r.allocated(), kept);
    }

    #[test]
    fn an_ack_measures_from_its_first_newly_acknowledged_segment() {
        let mut r = Rack::default();
        r.on_send(s(0), s(100), t(0));
        r.on_send(s(100), s(200), t(10));
        r.on_send(s(200), s(300), t(20));
        let ms = Duration::from_millis;
        assert_eq!(r.acked_rtt(t(50), s(0), s(200)), Some(ms(50)));
        assert_eq!(r.acked_rtt(t(50), s(100), s(300)), Some(ms(40)));
        assert_eq!(r.acked_rtt(t(50), s(0), s(50)), None, "no whole segment");
        r.on_retransmit(s(100), s(200), 100, t(30));
        assert_eq!(r.acked_rtt(t(50), s(0), s(300)), None, "Karn's rule");
        assert_eq!(r.acked_rtt(t(50), s(200), s(300)), Some(ms(30)));
    }

    /// Data sent before the log began (a Fast Open SYN's) is logged when it is sent again,
    /// a record a segment, in sequence order before or after what the log holds.
    #[test]
    fn a_retransmission_of_unlogged_data_is_logged_by_the_segment() {
        let mut r = Rack::default();
        r.on_retransmit(s(1), s(2501), 1000, t(10));
        assert_eq!(r.len(), 3);
        assert_eq!(r.retransmitted_in_flight(s(1), 1000), 3);
        r.on_send(s(2501), s(3501), t(11));
        r.on_retransmit(s(2501), s(3501), 1000, t(12));
        assert_eq!(r.len(), 4, "logged data is not logged twice");
        // A SACK of the middle segment only: it leaves the count.
        r.on_ack(
            t(20),
            s(1),
            Some((&EVERYWHERE[..], &|a, b| a >= s(1001) && b <= s(2001))),
            None,
        );
        assert_eq!(r.retransmitted_in_flight(s(1), 1000), 3);
        // Unlogged data below the log goes in front, in order.
        let mut r = Rack::default();
        r.on_send(s(3000), s(4000), t(0));
        r.on_retransmit(s(1000), s(3000), 1000, t(5));
        let starts: Vec<u32> = r.log.iter().map(|x| x.start.0).collect();
        assert_eq!(starts, [1000, 2000, 3000]);
        r.on_ack(t(9), s(2000), None, None);
        assert_eq!(r.retransmitted_in_flight(s(2000), 1000), 1);
    }

    /// A retransmission shorter than the segment it resends splits its record: the rest
    /// keeps its send time and is resent in turn (found by review: it waited for the RTO).
    #[test]
    fn a_short_retransmission_leaves_the_rest_of_its_segment_to_resend() {
        let mut r = Rack::default();
        r.on_send(s(0), s(1000), t(0));
        r.on_send(s(1000), s(2000), t(1));
        r.on_retransmit(s(0), s(988), 988, t(10));
        assert_eq!(r.len(), 3);
        let srtt = Duration::from_millis(40);
        assert_eq!(r.resent_in_flight_until(t(10), s(0), srtt), s(988));
        // And one that starts inside a record: the part before it is not resent.
        r.on_retransmit(s(1500), s(2000), 500, t(11));
        assert_eq!(r.len(), 4);
        assert_eq!(r.resent_in_flight_until(t(11), s(988), srtt), s(988));
        assert_eq!(r.resent_in_flight_until(t(11), s(1500), srtt), s(2000));
        assert_eq!(r.retransmitted_in_flight(s(0), 1000), 2);
        // What may be resent from 988 ends where the resent 1500.. begins.
        assert_eq!(
            r.resendable_until(t(11), s(988), s(2000), srtt),
            Some(s(1500))
        );
        assert_eq!(r.resendable_until(t(11), s(988), s(1500), srtt), None);
        assert_eq!(r.resendable_until(t(11), s(2000), s(3000), srtt), None);
    }

    /// A recovery passes over what is SACKed or resent and still in flight, until RACK finds
    /// the retransmission lost by its own send time.
    #[test]
    fn resent_segments_in_flight_are_passed_over_until_lost() {
        let mut r = Rack::default();
        for i in 0..4 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(u64::from(i)));
        }
        r.on_retransmit(s(0), s(200), 100, t(10));
        let sacked = |a: SeqNumber, b: SeqNumber| a >= s(200) && b <= s(300);
        r.on_ack(t(20), s(0), Some((&EVERYWHERE[..], &sacked)), None);
        let srtt = Duration::from_millis(40);
        assert_eq!(r.resent_in_flight_until(t(20), s(0), srtt), s(300));
        assert_eq!(r.resent_in_flight_until(t(20), s(150), srtt), s(300));
        assert_eq!(
            r.resent_in_flight_until(t(20), s(300), srtt),
            s(300),
            "sent once"
        );
        // Data sent after the retransmissions is SACKed 50 ms on: RACK.rtt is 50 ms, and
        // the retransmissions sent at 10 ms are lost at 60 ms.
        r.on_send(s(400), s(500), t(30));
        let sacked = |a: SeqNumber, b: SeqNumber| a >= s(200) && b <= s(300) || a >= s(400);
        r.on_ack(t(80), s(0), Some((&EVERYWHERE[..], &sacked)), None);
        assert_eq!(r.resent_in_flight_until(t(80), s(0), srtt), s(0));
    }

    #[test]
    fn a_later_delivery_marks_an_older_segment_lost_after_rtt_plus_reordering() {
        let mut r = Rack::default();
        r.on_send(s(0), s(100), t(0));
        r.on_send(s(100), s(200), t(1));
        r.on_send(s(200), s(300), t(2));
        // The third arrives (SACKed); the first two do not.
        r.on_ack(
            t(42),
            s(0),
            Some((&EVERYWHERE[..], &|a, b| a >= s(200) && b <= s(300))),
            Some(Duration::from_millis(40)),
        );
        let srtt = Duration::from_millis(40);
        // Too early: within RACK.rtt (40 ms, the third segment's) + min_RTT/4 (10 ms) of
        // their transmission. The timer is for the later of the two, which marks both.
        let d = r.detect(t(45), srtt, false, false, None);
        assert_eq!(d.lost_up_to, None);
        assert_eq!(d.recheck_at, Some(t(51)));
        let d = r.detect(t(51), srtt, false, false, None);
        assert_eq!(d.lost_up_to, Some(s(200)));
    }

    #[test]
    fn a_retransmission_is_judged_by_its_own_send_time() {
        let mut r = Rack::default();
        r.on_send(s(0), s(100), t(0));
        r.on_send(s(100), s(200), t(1));
        r.on_retransmit(s(0), s(100), 100, t(100));
        r.on_ack(
            t(101),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a == s(100))),
            Some(Duration::from_millis(20)),
        );
        // The SACKed segment was sent at 1 ms, before the retransmission at 100 ms: the
        // retransmission is not judged lost by it.
        let srtt = Duration::from_millis(20);
        assert_eq!(r.detect(t(500), srtt, true, false, None).lost_up_to, None);
        // Something sent after the retransmission arrives: now it can be.
        r.on_send(s(200), s(300), t(110));
        r.on_ack(
            t(130),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a == s(100) || a == s(200))),
            None,
        );
        assert_eq!(
            r.detect(t(200), srtt, true, false, None).lost_up_to,
            Some(s(100))
        );
    }

    /// A cumulative ACK of segments SACKed before takes no sample from them (Linux's
    /// `tcp_clean_rtx_queue` advances RACK only for skbs not `TCPCB_SACKED_ACKED`): their
    /// send time, a flight back, would stand as RACK.rtt and hold back the loss of a hole
    /// behind a later SACK (sack-partial-ack-rack-rtt.pkt).
    #[test]
    fn a_cumulative_ack_of_sacked_segments_takes_no_sample() {
        let ms = Duration::from_millis;
        let mut r = Rack::default();
        for i in 0..4 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        // The second to fourth SACKed at 100 ms: RACK.rtt and the minimum RTT are 100 ms.
        let b_to_d = |a: SeqNumber, _| a >= s(100) && a < s(400);
        r.on_ack(
            t(100),
            s(0),
            Some((&EVERYWHERE[..], &b_to_d)),
            Some(ms(100)),
        );
        r.on_retransmit(s(0), s(100), 100, t(100));
        r.on_send(s(400), s(500), t(110));
        r.on_send(s(500), s(600), t(110));
        // At 170 ms the resent first segment is acknowledged (70 ms, under the minimum RTT:
        // no sample), the SACKed three with it, and the last segment is SACKed (60 ms).
        r.on_ack(
            t(170),
            s(400),
            Some((&EVERYWHERE[..], &|a, _| a == s(500))),
            None,
        );
        // The fifth, sent with the sixth, has waited RACK.rtt (the sixth's 60 ms): lost.
        let d = r.detect(t(170), ms(100), true, false, None);
        assert_eq!(d.lost_up_to, Some(s(500)));
    }

    /// A retransmission in the same tick as the burst it repairs is sent after that burst:
    /// a SACK of the burst's later segments does not make it lost at once, as RFC 8985's
    /// sequence-number tie-break would (kernel selftest
    /// tcp_fastopen_server_client-ack-dropped-then-recovery-ms-timestamps, in virtual time).
    #[test]
    fn a_retransmission_in_the_same_tick_is_sent_after_the_burst() {
        let mut r = Rack::default();
        for i in 0..5 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(10));
        }
        let srtt = Duration::from_millis(10);
        // [200, 300) SACKed: the two before it are lost, and resent in the same tick.
        r.on_ack(
            t(10),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a == s(200))),
            None,
        );
        assert_eq!(
            r.detect(t(10), srtt, true, true, None).lost_up_to,
            Some(s(200))
        );
        r.on_retransmit(s(0), s(200), 100, t(10));
        // [300, 400), sent in the burst before the retransmission, is SACKed now.
        r.on_ack(
            t(10),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a == s(200) || a == s(300))),
            None,
        );
        let d = r.detect(t(10), srtt, true, true, None);
        assert_eq!(d.lost_retransmission, None, "{d:?}");
        assert_eq!(d.lost_up_to, None);
    }

    #[test]
    fn rack_rtt_is_the_newest_deliverys_and_the_window_closes_at_dupthresh() {
        let mut r = Rack::default();
        for i in 0..4 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        // SRTT says 100 ms (the handshake's), but the second segment is SACKed 110 ms after
        // it left: RACK.rtt is 110 ms, and so is min_RTT, measured from the log as Linux's
        // tcp_min_rtt is; the first is lost at 110 + 110 / 4 ms (Linux's
        // tcp_rack_detect_loss), not at SRTT + SRTT / 4.
        let srtt = Duration::from_millis(100);
        r.on_ack(
            t(110),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a == s(100))),
            Some(srtt),
        );
        let d = r.detect(t(126), srtt, false, false, None);
        let deadline = t(110) + Duration::from_micros(27_500);
        assert_eq!((d.lost_up_to, d.recheck_at), (None, Some(deadline)));
        // With DupThresh segments SACKed and no reordering seen, no window at all: the
        // loss is called on the ACK that shows it (RFC 8985 §6.2 step 4).
        r.on_ack(
            t(120),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a >= s(100))),
            Some(srtt),
        );
        assert_eq!(
            r.detect(t(120), srtt, false, true, None).lost_up_to,
            Some(s(100))
        );
    }

    #[test]
    fn a_late_delivery_of_an_original_means_reordering_and_keeps_the_window() {
        let mut r = Rack::default();
        for i in 0..4 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        let srtt = Duration::from_millis(40);
        r.on_ack(
            t(40),
            s(0),
            Some((&EVERYWHERE[..], &|a, _| a == s(300))),
            Some(srtt),
        );
        // The first segment, never resent, arrives after the fourth: reordering, by four
        // segments (from its start to RACK.fack; Linux's tcpi_reordering would say 4).
        r.on_ack(
            t(41),
            s(100),
            Some((&EVERYWHERE[..], &|a, _| a == s(300))),
            Some(srtt),
        );
        assert!(r.reord);
        assert_eq!(r.reorder_distance(), 400);
        // Even in recovery the window stays min_RTT / 4 (10 ms), after RACK.rtt, now the
        // first segment's 41 ms.
        assert_eq!(r.detect(t(50), srtt, true, true, None).lost_up_to, None);
        assert_eq!(
            r.detect(t(51), srtt, true, true, None).lost_up_to,
            Some(s(300))
        );
    }

    /// A SACK looks only at the segments under its blocks, however long the log: a
    /// receiver that SACKs two segments of a full log costs a few checks, not one per
    /// segment logged (and per range held).
    #[test]
    fn a_sack_visits_only_the_segments_under_its_blocks() {
        let mut r = Rack::default();
        for i in 0..10_000 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        let calls = std::cell::Cell::new(0);
        let covered = |a: SeqNumber, b: SeqNumber| {
            calls.set(calls.get() + 1);
            a >= s(500_000) && b <= s(500_200)
        };
        let blocks = [(s(500_000), s(500_200))];
        r.on_ack(t(10), s(0), Some((&blocks[..], &covered)), None);
        assert!(calls.get() <= 3, "{} checks", calls.get());
        assert_eq!(r.count_segments(s(0), |_, _, sacked| sacked), 2);
        // Blocks come in any order; the scoreboard hands what they newly SACKed over in
        // sequence order, and the deliveries are taken in that order, so that two segments
        // sent together and SACKed in one ACK are no reordering (taken the other way round,
        // the lower one would look delivered after the higher).
        let mut r = Rack::default();
        for i in 0..10_000 {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        let mut board = crate::tcp::scoreboard::Scoreboard::default();
        board.begin_ack();
        board.add(s(900_000), s(900_100), s(0), s(1_000_000));
        board.add(s(100_000), s(100_100), s(0), s(1_000_000));
        board.sort_fresh(s(0));
        r.on_ack(t(20), s(0), Some((board.fresh(), &|_, _| true)), None);
        assert_eq!(r.count_segments(s(0), |_, _, sacked| sacked), 2);
        assert_eq!(r.newest_delivered.map(|d| d.end_seq), Some(s(900_100)));
        assert!(!r.reord);
    }

    /// A recovery resending a lost hole of 10,000 records one segment at a time (a peer
    /// with a 48-byte MSS SACKing only the top of a flight) looks at a few records for each:
    /// the resend finds its record by binary search, and the search for a retransmission
    /// in flight to stop at goes no further than the packet reaches. Both walked the log to
    /// the hole's end or from its front: 10,000 resends cost about 10^8 steps.
    #[test]
    fn resending_a_long_hole_is_linear() {
        let mut r = Rack::default();
        let n = 10_000u32;
        for i in 0..n {
            r.on_send(s(i * 48), s(i * 48 + 48), t(0));
        }
        // The top half SACKed.
        let top = [(s(n / 2 * 48), s(n * 48))];
        r.on_ack(
            t(10),
            s(0),
            Some((&top[..], &|a, _| a >= s(n / 2 * 48))),
            None,
        );
        let srtt = Duration::from_millis(10);
        r.visits.set(0);
        for i in 0..n / 2 {
            let (a, b) = (s(i * 48), s(i * 48 + 48));
            assert_eq!(r.resendable_until(t(20), a, b, srtt), None);
            r.on_retransmit(a, b, 48, t(20));
        }
        let visits = r.visits.get();
        assert!(visits <= 4 * n as usize, "{visits} records looked at");
        assert_eq!(r.retransmitted_in_flight(s(0), 48), n as usize / 2);
        // The search still stops at a retransmission in flight within its reach.
        assert_eq!(r.resendable_until(t(20), s(0), s(96), srtt), Some(s(0)));
    }

    #[test]
    fn cumulative_acks_drop_records_and_the_log_is_bounded() {
        let mut r = Rack::default();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            r.on_send(s(i * 10), s(i * 10 + 10), t(u64::from(i)));
        }
        assert!(r.len() <= MAX_TRACKED);
        r.on_ack(t(100_000), s(u32::MAX / 2), None, None);
        assert_eq!(r.len(), 0);
    }

    /// The detection pass as it was before `sent_order`: every record in the log.
    fn detect_by_walking_the_log(
        r: &Rack,
        now: Instant,
        srtt: Duration,
        recovering: bool,
        dupthresh_sacked: bool,
    ) -> Detection {
        let mut out = Detection::default();
        let Some(newest) = r.newest_delivered else {
            return out;
        };
        let reo_wnd = r.reo_wnd(srtt, recovering, dupthresh_sacked);
        let rtt = r.rtt.unwrap_or(srtt);
        for s in r
            .log
            .iter()
            .filter(|s| !s.delivered && newest.sent_after(s))
        {
            let deadline = s.xmit + rtt + reo_wnd;
            if deadline <= now {
                out.lost_up_to = Some(out.lost_up_to.map_or(s.end, |e| e.max(s.end)));
                if s.retransmitted && out.lost_retransmission.is_none_or(|l| s.start < l) {
                    out.lost_retransmission = Some(s.start);
                }
            } else {
                out.recheck_at = Some(out.recheck_at.map_or(deadline, |t| t.max(deadline)));
            }
        }
        out
    }

    /// What the property test does to a `Rack`, in units of 100 bytes from sequence 0.
    #[derive(Debug, Clone)]
    enum Op {
        /// New segments, after `wait` ms.
        Send { segments: u8, wait: u8 },
        /// Resend part of what is in flight, from `at` (a fraction of it) for `units`.
        Resend {
            at: prop::sample::Index,
            units: u8,
            wait: u8,
        },
        /// SACK `units` from `at` and acknowledge `acked` units cumulatively.
        Ack {
            at: prop::sample::Index,
            units: u8,
            acked: u8,
            wait: u8,
        },
        /// The receiver reneged: no SACK counts any more.
        Renege,
        /// A detection pass, `wait` ms later.
        Detect { wait: u8, recovering: bool },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1..4u8, 0..3u8).prop_map(|(segments, wait)| Op::Send { segments, wait }),
            (any::<prop::sample::Index>(), 1..4u8, 0..3u8)
                .prop_map(|(at, units, wait)| Op::Resend { at, units, wait }),
            (any::<prop::sample::Index>(), 1..4u8, 0..2u8, 0..3u8).prop_map(
                |(at, units, acked, wait)| Op::Ack {
                    at,
                    units,
                    acked,
                    wait
                }
            ),
            Just(Op::Renege),
            (0..60u8, any::<bool>()).prop_map(|(wait, recovering)| Op::Detect { wait, recovering }),
        ]
    }

    proptest! {
        /// Walking only the transmissions up to the newest delivery, and dropping the dead
        /// ones, finds what walking every record finds, whatever the sends, resends, SACKs,
        /// cumulative ACKs and reneging before it.
        #[test]
        fn detection_over_sent_order_matches_a_walk_of_the_log(
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut r = Rack::default();
            let srtt = Duration::from_millis(20);
            let (mut now, mut una, mut max) = (0u64, 0u32, 0u32);
            // The units SACKed, from `una`'s.
            let mut sacked = std::collections::BTreeSet::new();
            for op in ops {
                match op {
                    Op::Send { segments, wait } => {
                        now += u64::from(wait);
                        for _ in 0..segments {
                            r.on_send(s(max * 100), s(max * 100 + 100), t(now));
                            max += 1;
                        }
                    }
                    Op::Resend { at, units, wait } if max > una => {
                        now += u64::from(wait);
                        let from = una + at.index((max - una) as usize) as u32;
                        let to = (from + u32::from(units)).min(max);
                        r.on_retransmit(s(from * 100), s(to * 100), 100, t(now));
                    }
                    Op::Ack { at, units, acked, wait } if max > una => {
                        now += u64::from(wait);
                        una = (una + u32::from(acked)).min(max);
                        sacked.retain(|&u| u >= una);
                        let fresh = if max > una {
                            let from = una + at.index((max - una) as usize) as u32;
                            let to = (from + u32::from(units)).min(max);
                            sacked.extend(from..to);
                            vec![(s(from * 100), s(to * 100))]
                        } else {
                            Vec::new()
                        };
                        let covered = |a: SeqNumber, b: SeqNumber| {
                            (a.0 / 100..b.0.div_ceil(100)).all(|u| sacked.contains(&u))
                        };
                        let by: Option<SackedBy<'_>> = if sacked.is_empty() {
                            None
                        } else {
                            Some((&fresh[..], &covered))
                        };
                        r.on_ack(t(now), s(una * 100), by, Some(srtt));
                    }
                    Op::Renege => {
                        sacked.clear();
                        r.forget_deliveries();
                    }
                    Op::Detect { wait, recovering } => {
                        now += u64::from(wait);
                        let expected = detect_by_walking_the_log(&r, t(now), srtt, recovering, false);
                        let found = r.detect(t(now), srtt, recovering, false, None);
                        prop_assert_eq!(found, expected);
                    }
                    _ => {}
                }
                // Dead entries stay within their bound.
                let listed = r.sent_order.as_ref().map_or(0, |o| o.len());
                prop_assert!(listed <= 2 * r.log.len() + 64 + 1);
            }
            let expected = detect_by_walking_the_log(&r, t(now + 500), srtt, true, false);
            prop_assert_eq!(r.detect(t(now + 500), srtt, true, false, None), expected);
        }
    }

    /// At the log's cap the two oldest records merge. When only one of them is undelivered,
    /// the merged record takes that one's send time and transmission: with the later time,
    /// a delivered one's, the merge carried a transmission whose entry a detection pass had
    /// already dropped (it had nothing undelivered), and the pass missed a record the walk
    /// of the log finds lost.
    #[test]
    fn a_merge_at_the_cap_keeps_the_undelivered_records_send_time() {
        let mut r = Rack::default();
        let srtt = Duration::from_millis(20);
        let cap = MAX_TRACKED as u32;
        for i in 0..cap {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        // The first segment and the sixth resent, at 5 and 8 ms, and SACKed with the third
        // at 40 ms: the sixth's resend is the newest delivery, and the second, sent at 0 and
        // never SACKed, was sent before it.
        r.on_retransmit(s(0), s(100), 100, t(5));
        r.on_retransmit(s(500), s(600), 100, t(8));
        let sacked = |a: SeqNumber, b: SeqNumber| {
            [0, 200, 500].iter().any(|&x| a >= s(x) && b <= s(x + 100))
        };
        let fresh = [(s(0), s(100)), (s(200), s(300)), (s(500), s(600))];
        r.on_ack(t(40), s(0), Some((&fresh[..], &sacked)), Some(srtt));
        // A pass drops the delivered transmissions' entries.
        r.detect(t(40), srtt, true, true, None);
        // One more segment: the first two records merge, the first delivered and sent later.
        r.on_send(s(cap * 100), s(cap * 100 + 100), t(50));
        assert_eq!(r.len(), MAX_TRACKED);
        let expected = detect_by_walking_the_log(&r, t(200), srtt, true, true);
        let found = r.detect(t(200), srtt, true, true, None);
        assert_eq!(found, expected);
        assert!(found.lost_up_to >= Some(s(200)), "{found:?}");
    }

    /// A recovery with one hole in front of a long flight, each ACK SACKing one more segment
    /// behind it: each detection pass looks at the hole and at what was delivered since the
    /// last, not at the whole flight again (which made the recovery quadratic in it).
    #[test]
    fn a_detection_pass_costs_the_holes_not_the_flight() {
        let mut r = Rack::default();
        let srtt = Duration::from_millis(20);
        const FLIGHT: u32 = 4000;
        for i in 0..FLIGHT {
            r.on_send(s(i * 100), s(i * 100 + 100), t(0));
        }
        r.take_visits();
        for i in 1..FLIGHT {
            let fresh = [(s(i * 100), s(i * 100 + 100))];
            let covered = |a: SeqNumber, b: SeqNumber| a >= s(100) && b <= s(i * 100 + 100);
            r.on_ack(t(30), s(0), Some((&fresh[..], &covered)), Some(srtt));
            let d = r.detect(t(30), srtt, true, true, None);
            assert_eq!(d.lost_up_to, Some(s(100)), "the hole is lost");
        }
        let visits = r.take_visits();
        let per_ack = visits as f64 / f64::from(FLIGHT - 1);
        assert!(
            per_ack < 4.0,
            "{visits} records looked at, {per_ack:.1} an ACK"
        );
    }
}
