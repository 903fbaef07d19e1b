//! Segment arrival (RFC 9293 §3.10.7.4) in SYN-RECEIVED and the synchronized states, with
//! PAWS (RFC 7323 §5) and RFC 5961's blind-attack checks; its data and FIN. What an
//! acceptable ACK does is in `ack`.

use std::num::NonZeroU32;
use std::time::Duration;

use super::close::{paws_reject, time_wait_input, TimeWaitInput};
use super::{ChallengeAcks, Connection, MAX_DUP_ACKS_OWED, PAWS_WRAP};
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::delayed_ack::ArrivedSegment;
use crate::tcp::recv_buffer::Frame;
use crate::tcp::scoreboard::DUP_THRESH;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{Ecn, TcpFlags, TcpRepr};

/// How far a TSval may lag TS.Recent and still pass PAWS (Linux's `TCP_PAWS_WINDOW`).
const PAWS_WINDOW: i32 = 1;

/// The longest RTT a TSecr is taken to measure, in ms: an echo older than this is not a
/// sample (nor is one from the future, which reads as older still).
const MAX_TS_RTT_MS: u32 = 60_000;

/// How many of the out-of-order blocks an RST may match the right edge of: those Linux
/// remembers to SACK (`TCP_NUM_SACKS`).
const SACK_BLOCKS_KEPT: usize = 4;

/// SACK ACKs compressed into one at most (Linux's `tcp_comp_sack_nr` default): past it the
/// next goes at once.
const COMP_SACK_MAX: u8 = 44;

/// The longest compressed SACK ACKs wait (Linux's `tcp_comp_sack_delay_ns` default, 1 ms).
const COMP_SACK_DELAY: Duration = Duration::from_millis(1);

/// SACK blocks an ACK is expected to carry whatever its other options (Linux's
/// `TCP_SACK_BLOCKS_EXPECTED`): held SACK ACKs go before a segment changes a block past them.
const SACK_BLOCKS_EXPECTED: usize = 2;

/// What the synchronized-state processing made of a segment, for the endpoint's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct InputVerdict {
    pub out_of_window: bool,
    pub paws: bool,
    pub challenge_ack: bool,
    pub challenge_ack_limited: bool,
    /// Its data was dropped: the endpoint is at its memory cap.
    pub memory: bool,
    /// It carried data in a CE-marked packet on an ECN connection (RFC 3168).
    pub ce: bool,
    /// It was an ACK echoing a congestion mark (ECE) on an ECN connection.
    pub ece: bool,
    /// It brought again only what we already had (data or a FIN below RCV.NXT): the peer
    /// resent it, so our ACKs may not be reaching it (Linux's `tcp_rcv_spurious_retrans`).
    pub duplicate_data: bool,
    /// Its data went into the receive buffer, in order or not.
    pub data_taken: bool,
    /// Dropped for its flags, with no reply and no other verdict (no ACK bit in a
    /// synchronized state; in SYN-SENT an RST without an ACK, or neither SYN nor RST; a
    /// resent SYN in SYN-RECEIVED within the rate limit): counted as `drop_other`.
    pub ignored: bool,
}

/// What PAWS makes of a segment whose timestamp is older than TS.Recent
/// ([`Connection::disordered_ack`]).
enum DisorderedAck {
    /// A duplicate ACK reordered in flight: processed.
    Passes,
    /// A pure ACK below RCV.NXT: dropped without a reply.
    OldAck,
    /// Dropped, with a duplicate ACK in reply (rate-limited).
    Fails,
}

/// What the endpoint knows about a segment beyond its TCP header: from the device and the IP
/// header.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SegmentMeta<'a> {
    /// [`RecvMeta::segment_size`](crate::RecvMeta::segment_size): `Some(n)` when the segment
    /// is GRO-coalesced segments of `n` payload bytes.
    pub segment_size: Option<usize>,
    /// The ECN field of its IP header (RFC 3168 §5).
    pub ecn: Ecn,
    /// The flow label of its IPv6 header (RFC 6437); 0 for IPv4.
    pub flow_label: u32,
    /// The packet's memory, if it arrived shared: its in-order payload may be kept rather
    /// than copied (`Endpoint::handle_packet_shared`).
    pub frame: Option<Frame<'a>>,
}

impl Connection {
    /// Feed one segment addressed to this connection, with what its packet said (`meta`).
    pub fn handle_segment(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        meta: SegmentMeta<'_>,
    ) -> InputVerdict {
        self.verdict = InputVerdict::default();
        self.gro_segment_size = meta
            .segment_size
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new);
        self.ecn.rx = meta.ecn;
        // Linux counts what reaches a full socket (`tcp_segs_in`): before the handshake's
        // end a passive open is a request sock, whose child counts the SYN
        // (`tcp_create_openreq_child`; here `accept_syn`) and the ACK that made it, and
        // nothing else the request sock took; nor does TIME-WAIT's sock count, nor a closed
        // socket, which no segment finds.
        let request_sock =
            self.state == State::SynReceived && self.passive && !self.is_fast_open_child();
        let counted = !self.control_socket && self.state != State::Closed;
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.handle_syn_sent(now, seg),
            State::TimeWait => self.handle_time_wait(now, seg),
            _ => self.handle_synchronized(now, seg, meta.frame),
        }
        if counted && (!request_sock || self.is_synchronized()) {
            let segments = meta
                .segment_size
                .filter(|&n| n > 0)
                .map_or(1, |n| seg.payload.len().div_ceil(n).max(1));
            self.segments.on_received(
                u32::try_from(segments).unwrap_or(u32::MAX),
                !seg.payload.is_empty(),
            );
        }
        if self.local.is_ipv6() {
            self.note_flow_label(meta.flow_label);
        }
        self.arm_reclaim(now);
        self.verdict
    }

    /// RFC 6437 §3 lets a flow change its label, and Linux moves to a new one, so that ECMP
    /// routers may hash it onto another path, when data comes again with a label other than
    /// the last data's: the sender timed out (and relabelled its own flow), so our ACKs seem
    /// not to reach it. Not while we are recovering from a timeout of our own, which draws a
    /// new label already (`tcp_rcv_spurious_retrans`, `TCPDuplicateDataRehash`; the label
    /// of every segment that brings data is kept, `lrcv_flowlabel`).
    fn note_flow_label(&mut self, label: u32) {
        if self.verdict.duplicate_data {
            let own_timeout = self.after_rto();
            if !own_timeout && label != self.lrcv_flow_label {
                let c = self.counters.get_mut();
                c.dup_data_rehash = c.dup_data_rehash.wrapping_add(1);
            }
            self.lrcv_flow_label = label;
        } else if self.verdict.data_taken {
            self.lrcv_flow_label = label;
        }
    }

    /// The largest window the window field can carry at our scale (RFC 7323 §2.3).
    pub(super) fn max_window_field(&self) -> usize {
        (u16::MAX as usize) << self.rcv.wscale
    }

    /// The window we can advertise now: the buffer's room, but never less than what we
    /// already promised (RFC 9293 §3.8.6.2.2), and only grown in steps of at least
    /// min(buffer/2, MSS) (receiver SWS avoidance).
    pub(super) fn advertisable_window(&self) -> usize {
        let promised = self.rcv.adv - self.rcv.nxt;
        let room = self.window_room(promised);
        let threshold = (self.rcv.buffer.capacity() / 2).min(self.rcv.mss);
        let max = self.max_window_field();
        let wnd = if room >= promised + threshold || promised == 0 && room >= threshold {
            room
        } else {
            promised
        };
        wnd.min(max)
    }

    /// The most the window may offer now, with `promised` already offered: the buffer's
    /// room, within the memory budget's room, and under memory pressure at most two segments
    /// or `promised` (see [`MemBudget`](super::MemBudget)). Less than `promised` means the
    /// window stays where it is: its right edge never moves left (RFC 9293 §3.8.6.2.2,
    /// RFC 7323 §2.4).
    pub(super) fn window_room(&self, promised: usize) -> usize {
        let room = self
            .rcv
            .buffer
            .window()
            .min(self.mem.room.max(self.receive_floor()));
        if self.mem.pressure {
            room.min(promised.max(2 * self.rcv.mss))
        } else {
            room
        }
    }

    /// An RTT sample for an ACK covering `acked` (RFC 7323 §4.3 with timestamps, else the
    /// timed segment if Karn's rule allows).
    pub(super) fn rtt_sample_for(
        &self,
        now: Instant,
        seg: &TcpRepr<'_>,
        acked: SeqNumber,
    ) -> Option<Duration> {
        if self.ts.enabled {
            if let Some(ts) = seg.timestamp {
                // The floor matters for a minute: an echo older than it is older still
                // than the 60 s that the sample below may span. After that the sign test
                // must not run, as it reads every echo as older once our clock is 2^31 ms
                // (24.8 days) past the floor, and no sample would come for 24.8 days.
                let stale = self.ts.min_echo.is_some_and(|floor| {
                    self.ts_now(now).wrapping_sub(floor) < MAX_TS_RTT_MS
                        && (ts.tsecr.wrapping_sub(floor) as i32) < 0
                });
                if ts.tsecr != 0 && !stale {
                    let sent = ts.tsecr.wrapping_sub(self.ts.offset);
                    let elapsed = (now.total_millis() as u32).wrapping_sub(sent);
                    // A TSecr from the future or absurdly old is not a sample.
                    if elapsed < MAX_TS_RTT_MS {
                        return Some(Duration::from_millis(elapsed as u64));
                    }
                }
            }
        }
        match self.rtt_seq {
            Some(timed) if acked > timed.seq => Some(now - timed.sent),
            _ => None,
        }
    }

    /// Whether an ACK answering an invalid segment must be skipped because we sent one less
    /// than `invalid_ratelimit` ago; if not, this one counts as the last (Linux
    /// `__tcp_oow_rate_limited`).
    fn invalid_ack_limited(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last_invalid_ack {
            if now - last < self.cfg.invalid_ratelimit {
                return true;
            }
        }
        self.last_invalid_ack = Some(now);
        false
    }

    /// Linux's `tcp_oow_rate_limited`: whether the ACK answering `seg` (out of window, or
    /// failing PAWS) must be skipped. Data and a FIN are spared, since the peer sends them
    /// again until they are acknowledged; a SYN or a segment taking no sequence space is
    /// answered at most once per `invalid_ratelimit` ([`invalid_ack_limited`]).
    ///
    /// [`invalid_ack_limited`]: Self::invalid_ack_limited
    fn oow_ack_limited(&mut self, now: Instant, seg: &TcpRepr<'_>) -> bool {
        let spared = seg.seq_len() > 0 && !seg.flags.contains(TcpFlags::SYN);
        !spared && self.invalid_ack_limited(now)
    }

    /// A duplicate ACK in reply to a segment that is out of window or fails PAWS (RFC 9293
    /// §3.10.7.4: "an acknowledgment should be sent in reply"). One occupying sequence space
    /// (data or FIN) is typically retransmitted because our ACK was lost: answered every
    /// time, at once, and our next ACKs go at once too. A bare ACK is answered at most once
    /// per `invalid_ratelimit`, so that two endpoints that disagree cannot trade ACKs
    /// without end (Linux `tcp_oow_rate_limited` and `tcp_send_dupack`).
    fn ack_invalid(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let occupies = seg.seq_len() > 0;
        if !occupies && self.invalid_ack_limited(now) {
            return;
        }
        if occupies && seg.seq_number < self.rcv.nxt {
            self.answer_duplicate(seg.seq_number, seg.seq_number + seg.seq_len());
            // Linux's `tcp_send_dupack` looks at the flow label only where it sends a D-SACK.
            self.verdict.duplicate_data |= self.reports_dsack();
        }
        self.rcv.ack_now = true;
    }

    /// `[start, end)` came again, at least partly below RCV.NXT: an ACK at once with a
    /// D-SACK for it, and quick-ACK mode, since our ACKs seem not to reach the sender (Linux
    /// `tcp_send_dupack`, and `tcp_data_queue` for a retransmission).
    fn answer_duplicate(&mut self, start: SeqNumber, end: SeqNumber) {
        let rcv_wnd = self.rcv.adv - self.rcv.nxt;
        self.rcv.delack.enter_quick_mode(rcv_wnd);
        self.report_duplicate(start, end);
        self.rcv.ack_now = true;
    }

    /// Send an ACK in reply to an unacceptable segment, rate-limited as RFC 5961 §7 asks for
    /// challenge ACKs: once per `invalid_ratelimit` (Linux's per-socket limit), and at most
    /// `challenge_ack_limit` a second.
    pub(super) fn challenge_ack(&mut self, now: Instant) {
        if now - self.challenge_acks.slot_start >= Duration::from_secs(1) {
            self.challenge_acks = ChallengeAcks {
                slot_start: now,
                sent: 0,
            };
        }
        if self.challenge_acks.sent >= self.cfg.challenge_ack_limit || self.invalid_ack_limited(now)
        {
            self.verdict.challenge_ack_limited = true;
            return;
        }
        self.challenge_acks.sent += 1;
        self.rcv.ack_now = true;
        self.verdict.challenge_ack = true;
    }

    /// Whether an RST at `seq` resets the connection (RFC 5961 §3.2: "exactly matches the
    /// next expected sequence value"), with the two more Linux takes as exact
    /// (`tcp_validate_incoming`): [`reset_at_fin`](Self::reset_at_fin), and the right edge
    /// of the highest block we SACK, where a peer whose data we hold out of order sends an
    /// RST from its SND.NXT.
    fn resets(&self, seq: SeqNumber) -> bool {
        if seq == self.rcv.nxt || self.reset_at_fin(seq) {
            return true;
        }
        self.sack_ok
            && self
                .rcv
                .buffer
                .sack_ranges(SACK_BLOCKS_KEPT)
                .into_iter()
                .map(|(_, end)| self.rcv.nxt + end)
                .max()
                .is_some_and(|edge| edge == seq)
    }

    /// An RST one below RCV.NXT after the peer's FIN (CLOSE-WAIT, CLOSING, LAST-ACK): the
    /// sequence number of that FIN, which stacks that reset a closed connection use (Linux's
    /// `tcp_reset_check`, taken even where the sequence check fails).
    fn reset_at_fin(&self, seq: SeqNumber) -> bool {
        seq + 1 == self.rcv.nxt
            && matches!(
                self.state,
                State::CloseWait | State::Closing | State::LastAck
            )
    }

    /// Whether a segment failing PAWS (its TSval `behind` TS.Recent by more than the
    /// window) is still taken, dropped silently, or answered (Linux 6.18's
    /// `tcp_disordered_ack_check`). RFC 7323 §5 lets a pure duplicate ACK through: its TSval
    /// may be old only because ACKs were reordered, and dropping it would lose a duplicate
    /// ACK that fast retransmit counts.
    fn disordered_ack(&self, seg: &TcpRepr<'_>, behind: i32) -> DisorderedAck {
        // 1. Not a pure ACK.
        if !seg.flags.contains(TcpFlags::ACK) || seg.seq_len() != 0 {
            return DisorderedAck::Fails;
        }
        // 2. Not at the expected sequence number: one below it is an old ACK, common
        //    enough to drop without an answer.
        if seg.seq_number != self.rcv.nxt {
            return if seg.seq_number < self.rcv.nxt {
                DisorderedAck::OldAck
            } else {
                DisorderedAck::Fails
            };
        }
        // 3. Not a duplicate ACK; 4. updating the window.
        let wnd = (seg.window_len as usize) << self.snd.wscale;
        if seg.ack_number != self.snd.una || self.may_update_window(self.snd.una, seg, wnd) {
            return DisorderedAck::Fails;
        }
        // 5. Older than the replay window: the RTO in the peer's ticks, taken as
        //    milliseconds, plus a fifth (`tcp_tsval_replay`).
        let replay = self.current_rto().as_millis() * 6 / 5;
        if u128::try_from(behind).unwrap_or(0) > replay {
            return DisorderedAck::Fails;
        }
        DisorderedAck::Passes
    }

    /// A segment in TIME-WAIT while the application still holds the connection (it shut
    /// down its side before the peer's FIN, say): taken as a compact entry takes it
    /// ([`time_wait_input`]), since Linux hands every socket that reaches TIME-WAIT to its
    /// TIME-WAIT sock. A SYN starting a new incarnation comes here only when nothing takes
    /// it (the endpoint asks first, `Endpoint::reuse_time_wait`).
    fn handle_time_wait(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        let recent = self.ts_recent_at(now);
        let input = time_wait_input(self.rcv.nxt, recent, seg, self.cfg.rfc1337);
        let (restart, paws) = match input {
            TimeWaitInput::Reset => return self.handle_reset(),
            TimeWaitInput::IgnoredReset => {
                self.take_time_wait_tsval(now, seg);
                return;
            }
            TimeWaitInput::StrayReset { paws } => {
                self.verdict.paws = paws;
                self.verdict.out_of_window = !paws;
                return;
            }
            TimeWaitInput::InSequence => {
                self.timers.time_wait = Some(now + self.cfg.time_wait);
                self.take_time_wait_tsval(now, seg);
                return;
            }
            TimeWaitInput::NewIncarnation => (false, false),
            TimeWaitInput::Answer { restart, paws } => (restart, paws),
        };
        if restart {
            self.timers.time_wait = Some(now + self.cfg.time_wait);
        }
        let fin = seg.flags.contains(TcpFlags::FIN);
        self.verdict.paws = paws;
        self.verdict.out_of_window = !paws && !fin;
        // A SYN that would start a new incarnation, with nothing to take it, gets the old
        // connection's ACK every time (Linux's `tcp_v4_rcv`: TCP_TW_SYN without a listener
        // falls through to `tcp_v4_timewait_ack`, no rate limit).
        if input != TimeWaitInput::NewIncarnation && self.oow_ack_limited(now, seg) {
            return;
        }
        self.rcv.ack_now = true;
    }

    /// An in-sequence segment in TIME-WAIT: its TSval becomes TS.Recent.
    fn take_time_wait_tsval(&mut self, now: Instant, seg: &TcpRepr<'_>) {
        if let (true, Some(ts)) = (self.ts.enabled, seg.timestamp) {
            self.ts.recent = ts.tsval;
            self.ts.recent_age = now;
        }
    }

    /// Whether Linux would hold this connection as a request socket (`tcp_check_req`'s): a
    /// passive open in SYN-RECEIVED, not a Fast Open child, which is a full socket from its
    /// SYN on.
    fn is_request_socket(&self) -> bool {
        self.state == State::SynReceived && self.passive && !self.is_fast_open_child()
    }

    /// Whether `seg` lies in the window as Linux's request and TIME-WAIT socks judge it
    /// (`tcp_in_window`): it starts at RCV.NXT, or ends past it and starts before the
    /// window's right edge, or is empty at that edge.
    fn in_request_window(&self, seg: &TcpRepr<'_>) -> bool {
        let (start, end) = (seg.seq_number, seg.seq_number + seg.seq_len());
        let (left, right) = (self.rcv.nxt, self.rcv.adv);
        start == left || (end > left && start < right) || (start == right && start == end)
    }

    /// An orphaned FIN-WAIT-2 reached by a bare ACK of our FIN is, in Linux, a TIME-WAIT sock
    /// in its FIN_WAIT2 substate (`tcp_time_wait(sk, TCP_FIN_WAIT2, tmo)`), and
    /// `tcp_timewait_state_process` takes segments by its rules rather than RFC 5961's: one
    /// failing PAWS (TIME-WAIT's rule) or outside the window, an RST too, is answered with an
    /// ACK (rate-limited, data spared) and dropped; an RST inside it ends the connection
    /// silently (no challenge ACK); a SYN at or past RCV.NXT is answered with an RST and
    /// ends it; a duplicate ACK is taken in silence. New data and the FIN go on
    /// to the usual steps (data after `close` resets; the FIN leads to TIME-WAIT). Returns
    /// whether the segment was dealt with here. The application gave the connection up and
    /// its data was all acknowledged: ending it early loses nothing, which is why Linux
    /// spends no challenge ACKs on it.
    fn handle_orphan_fin_wait_2(&mut self, now: Instant, seg: &TcpRepr<'_>) -> bool {
        let flags = seg.flags;
        let (rst, syn) = (flags.contains(TcpFlags::RST), flags.contains(TcpFlags::SYN));
        let paws = paws_reject(self.ts_recent_at(now), seg);
        let (start, end) = (seg.seq_number, seg.seq_number + seg.seq_len());
        let left = self.rcv.nxt;
        if paws || !self.in_request_window(seg) {
            // An RST too (`tcp_timewait_check_oow_rate_limit` asks nothing of its flags).
            self.verdict.paws = paws;
            self.verdict.out_of_window = !paws;
            if !self.oow_ack_limited(now, seg) {
                self.rcv.ack_now = true;
            }
            return true;
        }
        if rst {
            self.enter_closed(None);
            return true;
        }
        if syn && start >= left {
            self.reset_reply = Some(self.reset_reply_to(seg));
            self.enter_closed(None);
            return true;
        }
        !flags.contains(TcpFlags::ACK) || end <= left || seg.seq_len() == 0
    }

    /// RFC 9293 §3.10.7.4, "Otherwise": SYN-RECEIVED through LAST-ACK (TIME-WAIT has its
    /// own rules, [`handle_time_wait`](Self::handle_time_wait)).
    pub(super) fn handle_synchronized(
        &mut self,
        now: Instant,
        seg: &TcpRepr<'_>,
        frame: Option<Frame<'_>>,
    ) {
        let flags = seg.flags;
        let rst = flags.contains(TcpFlags::RST);
        let syn = flags.contains(TcpFlags::SYN);

        // A passive open's half-open connection is Linux's request socket, whose
        // `tcp_check_req` judges PAWS before anything else, and by TIME-WAIT's rule
        // (`tcp_paws_reject`: no tick of slack, an RST not exempt until TS.Recent is 60 s
        // old): what fails it is answered with an ACK (never an RST; rate-limited, as
        // `tcp_oow_rate_limited`) and dropped, the connection untouched. A retransmitted SYN
        // failing it is no retransmission, and draws that ACK, not a SYN-ACK. A Fast Open
        // child is a full socket, but until the handshake's ACK Linux passes its segments
        // through `tcp_check_req` too (`fastopen = true`), so the same PAWS rule applies
        // before the full socket's (`tcp_validate_incoming`, below). Not an ACK of something
        // other than our SYN: that one is reset first, as Linux's listener resets it before
        // the PAWS check (a request socket's rule only: a Fast Open child has no listener in
        // front of it).
        if self.state == State::SynReceived && self.passive {
            let bad_ack = self.is_request_socket()
                && flags.contains(TcpFlags::ACK)
                && seg.ack_number != self.snd.iss + 1;
            let reject = paws_reject(self.ts_recent_at(now), seg);
            if reject && !bad_ack {
                self.verdict.paws = true;
                if !rst && !self.oow_ack_limited(now, seg) {
                    self.rcv.ack_now = true;
                }
                return;
            }
        }

        if self.state == State::FinWait2
            && self.app_closed
            && self.control_socket
            && self.handle_orphan_fin_wait_2(now, seg)
        {
            return;
        }

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost; send it again (Linux
        // tcp_check_req does the same). TS.Recent stays the first SYN's TSval: Linux answers
        // the "pure retransmitted SYN" before it would update the request's `ts_recent`, so
        // its SYN-ACK echoes that one, and PAWS judges the handshake's ACK against it.
        if self.state == State::SynReceived
            && syn
            && !rst
            && !flags.contains(TcpFlags::ACK)
            && seg.seq_number == self.rcv.irs
        {
            // At most once per `invalid_ratelimit`, as Linux's tcp_check_req answers through
            // `tcp_oow_rate_limited`: a flood of copies draws no flood of SYN-ACKs.
            if self.invalid_ack_limited(now) {
                self.verdict.ignored = true;
                return;
            }
            self.syn_pending = true;
            // The SYN-ACK timer starts again from here, at the current timeout, as Linux's
            // tcp_check_req sets the request's timer (`mod_timer_pending` to
            // `reqsk_timeout`); a Fast Open child's SYN-ACK timer is its socket's own, which
            // Linux leaves alone.
            if !self.is_fast_open_child() && self.timers.retransmit.is_some() {
                self.timers.retransmit = Some(now + self.syn_rto());
            }
            return;
        }

        // Simultaneous open: the peer's SYN-ACK crosses ours. Its SYN is the one we already
        // hold (SEG.SEQ = IRS); what is new is its ACK of our SYN. Take it as the ACK that
        // completes the handshake, as Linux does (`tcp_validate_incoming` lets exactly this
        // past RFC 5961's SYN check: no data, no FIN, SEG.SEQ + 1 = RCV.NXT), rather than as
        // an old duplicate. Not in a passive open (Linux's request socket, not a full one):
        // `tcp_check_req` finds a SYN at the peer's ISN outside its window and answers it
        // with an ACK, as the SYN check below does.
        if self.state == State::SynReceived
            && !self.is_request_socket()
            && syn
            && !rst
            && flags.contains(TcpFlags::ACK)
            && !flags.contains(TcpFlags::FIN)
            && seg.payload.is_empty()
            && seg.seq_number == self.rcv.irs
            && seg.ack_number > self.snd.una
            && seg.ack_number <= self.snd.max
        {
            self.handle_synchronized(now, &after_syn(seg), None);
            // Linux then queues the segment as it came, SYN and all: its sequence number now
            // lies below RCV.NXT, so `tcp_data_queue` takes it for a retransmission and
            // answers at once, in quick-ACK mode, with a D-SACK for the SYN (RFC 2883 §4),
            // as we answer any old duplicate.
            if self.is_synchronized() {
                self.ack_invalid(now, seg);
            }
            return;
        }

        // A SYN in the window of a passive open's half-open connection, other than the
        // client's own (a retransmission, taken above): Linux's request socket answers it
        // with an RST and is gone (`tcp_check_req`'s "embryonic_reset"), where a full socket
        // sends RFC 5961's challenge ACK. One acknowledging something other than our SYN is
        // reset below, one outside the window answered with an ACK, as there.
        if self.is_request_socket()
            && syn
            && !rst
            && seg.seq_number != self.rcv.irs
            && !(flags.contains(TcpFlags::ACK) && seg.ack_number != self.snd.iss + 1)
            && self.in_request_window(seg)
        {
            self.reset_reply = Some(self.reset_reply_to(seg));
            self.enter_closed(None);
            return;
        }

        // RFC 7323 §5.3 R1: PAWS. "If there is a Timestamps option in the arriving segment,
        // SEG.TSval < TS.Recent, and if TS.Recent is valid, then treat the arriving segment as
        // not acceptable: send an acknowledgment in reply (unless RST) and drop it." As
        // Linux's tcp_paws_discard: a TSval one tick behind TS.Recent still passes
        // (TCP_PAWS_WINDOW), and a TS.Recent of 0 is none yet. A SYN that fails it gets the
        // challenge ACK any SYN in a synchronized state gets (RFC 5961 §4.2; Linux's
        // syn_challenge), rate-limited like it.
        if self.ts.enabled && !rst {
            if let Some(ts) = seg.timestamp {
                let behind = self.ts.recent.wrapping_sub(ts.tsval) as i32;
                let older = behind > PAWS_WINDOW && self.ts.recent != 0;
                if older && now - self.ts.recent_age < PAWS_WRAP {
                    match self.disordered_ack(seg, behind) {
                        DisorderedAck::Passes => {}
                        // Linux 6.18 (`SKB_DROP_REASON_TCP_RFC7323_PAWS_ACK`): "Old ACK are
                        // common": dropped without the duplicate ACK.
                        DisorderedAck::OldAck => {
                            self.verdict.paws = true;
                            return;
                        }
                        DisorderedAck::Fails => {
                            self.verdict.paws = true;
                            if syn {
                                self.challenge_ack(now);
                            } else {
                                self.ack_invalid(now, seg);
                            }
                            return;
                        }
                    }
                }
            }
        }

        // First: the sequence number check (RFC 9293 §3.10.7.4), with Linux's bounds
        // (`tcp_sequence`): the RFC's four cases take a segment when its first or its last
        // octet lies in the window, Linux when it ends no earlier than the last ACK we sent
        // (RCV.WUP) and starts no later than the window's right edge. That takes the
        // segments the RFC's cases take, and three kinds it drops unprocessed: one ending in
        // [RCV.WUP, RCV.NXT], whose ACK field still counts (a resent FIN that now
        // acknowledges ours); a bare ACK at exactly the right edge (a peer that filled our
        // window, its data lost, acknowledging ours); and data at a zero window starting at
        // RCV.NXT, whose ACK we "MUST" process (RFC 9293 §3.8.6.1). Data past the window is
        // trimmed (`receive_data`). Linux 6.17 drops a segment ending past the window while
        // unread data is queued; we take its ACK and the part that fits, as RFC 9293 does.
        let seg_len = seg.seq_len();
        let start = seg.seq_number;
        let end = start + seg_len;
        // The right edge is never below RCV.NXT: a FIN taken at the very edge puts RCV.NXT
        // one past it until our next segment moves the edge, and a segment at RCV.NXT is
        // acceptable with a window of 0 (Linux's `tcp_receive_window` is clamped at 0).
        let edge = self.rcv.adv.max(self.rcv.nxt);
        let acceptable = end >= self.rcv.delack.acked && start <= edge;
        if !acceptable {
            // "If an incoming segment is not acceptable, an acknowledgment should be sent in
            // reply (unless the RST bit is set, if so drop the segment and return)".
            // A keepalive or zero-window probe (RFC 9293 §3.8.4, Linux tcp_xmit_probe_skb:
            // no data at SEG.SEQ = RCV.NXT - 1) is unacceptable by design and asks only for
            // that ACK: it is not counted as a segment dropped out of window.
            let probe = seg_len == 0 && start + 1 == self.rcv.nxt;
            // Nor is a segment lying wholly below RCV.NXT (an old duplicate: the peer resent
            // what we already have and acknowledged) a segment beyond the window: it draws
            // the same ACK, with a D-SACK for it (RFC 2883 §4), and is counted as Linux
            // counts it (a duplicate, `TCP_OLD_DATA`), not as out of window.
            let old = seg_len > 0 && end <= self.rcv.nxt;
            if old && !rst && !syn {
                self.report_duplicate(start, end);
            }
            self.verdict.out_of_window = !probe && !old;
            if rst {
                // Linux's `tcp_reset_check`: see `resets` below.
                if self.reset_at_fin(start) {
                    self.handle_reset();
                }
                return;
            }
            if syn {
                // RFC 5961 §4.2: any SYN in a synchronized state gets a challenge ACK.
                self.challenge_ack(now);
            } else {
                self.ack_invalid(now, seg);
            }
            return;
        }

        // Second: the RST bit (RFC 9293 §3.10.7.4 with RFC 5961 §3.2): an RST at exactly
        // RCV.NXT resets; any other in-window RST draws a challenge ACK. Linux takes two more
        // as exact (`tcp_validate_incoming`): see `resets`.
        if rst {
            if !self.resets(start) {
                self.challenge_ack(now);
                return;
            }
            return self.handle_reset();
        }

        // Fourth: the SYN bit. RFC 5961 §4.2: in a synchronized state (and SYN-RECEIVED, for
        // a SYN other than the retransmission handled above) any SYN gets a challenge ACK.
        if syn {
            self.challenge_ack(now);
            return;
        }

        // Fifth: "if the ACK bit is off, drop the segment and return".
        if !flags.contains(TcpFlags::ACK) {
            self.verdict.ignored = true;
            return;
        }

        // An answer to our probes is an ACK that `tcp_ack` takes: not an old one (below
        // SND.UNA), which an off-path sender with an old ACK number could otherwise use to
        // keep a dead peer's connection probing, nor one for data never sent. The same goes
        // for the idle time keepalive and the user timeout measure: Linux's
        // `keepalive_time_elapsed` runs from the last data received (`lrcvtime`) or the last
        // ACK `tcp_ack` took (`rcv_tstamp`), which such an ACK updates neither of.
        let taken = seg.ack_number >= self.snd.una && seg.ack_number <= self.snd.max;
        if taken {
            self.probes_out = 0;
            // Something worked: an ICMP error that came before is forgotten (Linux's `tcp_ack`
            // clears `sk_err_soft` for every ACK it takes, duplicates too), so that it is
            // neither read by `SO_ERROR` nor reported by a later timeout.
            self.soft_error = None;
            // A keepalive or zero-window probe the timer left for the next poll has its
            // answer already (Linux sends it from the timer, before this could come). Sent
            // now, it would take the place of the ACK this segment may be owed, at a
            // sequence number the peer drops unread.
            self.probe_pending = false;
            self.timers.keepalive = None;
            self.last_ack_recv = now;
        }
        if !seg.payload.is_empty() {
            self.last_data_recv = now;
            // Data shows the peer alive, whatever its ACK says (an old one is not `taken`).
            self.probe_pending = false;
        }

        // New data at RCV.NXT behind data whose immediate ACK has not left yet: that ACK is
        // owed first, echoing the TSval it owes (Linux sends it before it takes this
        // segment), and this segment then starts at the last ACK sent.
        let new_data = !seg.payload.is_empty()
            && start <= self.rcv.nxt
            && start + seg.payload.len() > self.rcv.nxt;
        if new_data
            && matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            )
            && self.rcv.ack_now
            && self.rcv.unacked_segments > 0
        {
            self.owe_ack_point();
        }
        // RFC 7323 §4.3 (2): record TS.Recent if "SEG.SEQ =< Last.ACK.sent" (Linux's
        // tcp_replace_ts_recent: not after rcv_wup), so that an ACK covering several
        // segments echoes the earliest TSval among them and the peer's RTT sample includes
        // the time our ACK waited (§4.3's point, which the newest TSval hides). Only from a
        // segment whose ACK tcp_ack takes: not an old ACK (below SND.UNA), for which it
        // returns before `tcp_replace_ts_recent`, nor one for data never sent, which is
        // dropped below: its TSval would otherwise stay as TS.Recent, and PAWS would then
        // drop the peer's real segments.
        // `tcp_paws_check(rx_opt, 0)` decides: a TSval not behind TS.Recent, or any once
        // TS.Recent is 0 or `PAWS_WRAP` old.
        if self.ts.enabled && seg.ack_number >= self.snd.una && seg.ack_number <= self.snd.max {
            if let Some(ts) = seg.timestamp {
                let newer = (ts.tsval.wrapping_sub(self.ts.recent) as i32) >= 0
                    || self.ts.recent == 0
                    || now - self.ts.recent_age >= PAWS_WRAP;
                if start <= self.rcv.delack.acked && newer {
                    self.ts.recent = ts.tsval;
                    self.ts.recent_age = now;
                }
            }
        }

        if self.state == State::SynReceived {
            // "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state ... If the segment
            // acknowledgment is not acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST>".
            if seg.ack_number > self.snd.una && seg.ack_number <= self.snd.max {
                self.snd.wnd = (seg.window_len as usize) << self.snd.wscale;
                self.snd.max_wnd = if self.passive && !self.is_fast_open_child() {
                    // Linux makes the child from this ACK (`tcp_create_openreq_child`): its
                    // largest window so far is this one, not the SYN's unscaled field.
                    self.snd.wnd
                } else {
                    self.snd.max_wnd.max(self.snd.wnd)
                };
                self.snd.wl1 = seg.seq_number;
                self.ack_syn(now, seg);
                // A Fast Open child may have sent data already: its retransmission timer
                // runs from here (Linux's tcp_rcv_synrecv_state_fastopen rearms the RTO).
                if self.snd.una < self.snd.max {
                    self.retransmit_deadline_reset(now);
                }
                self.set_state(State::Established);
                self.apply_queued_fin();
                self.notify.connected = true;
                self.notify.writable = true;
            } else {
                self.reset_reply = Some((seg.ack_number, None));
                return;
            }
        }

        if self.process_ack(now, seg).is_break() {
            return;
        }
        self.ecn_accept_cwr(seg);

        // Seventh: the segment text, in ESTABLISHED, FIN-WAIT-1 and FIN-WAIT-2.
        // RFC 1122 §4.2.2.13: new data for a connection the application has closed, or whose
        // reading side it shut, can never be read; the sender learns so from an RST, and the
        // connection ends (Linux tcp_rcv_state_process, FIN-WAIT-1 and -2 once
        // `RCV_SHUTDOWN` is set, by close() or shutdown(SHUT_RD): `TCPAbortOnData`).
        // Linux's test (step 7): a segment that occupies sequence space and reaches past
        // RCV.NXT before its FIN, so a bare FIN out of order too.
        if (self.app_closed || self.read_shut)
            && matches!(self.state, State::FinWait1 | State::FinWait2)
            && seg.seq_len() > 0
            && start + seg.payload.len() > self.rcv.nxt
        {
            // The application still holds the socket: the reset is its error, ECONNRESET
            // (`tcp_reset`), as for an RST that came in.
            if !self.app_closed {
                self.reset_reply = Some((seg.ack_number, None));
                self.handle_reset();
                return;
            }
            // Closed with data unread and something still to send first (the answer
            // written before `close`, or the FIN of a `shutdown` before it): the RST follows
            // that flush already (`reset_after_flush`), as on Linux, whose `write` and
            // `shutdown` sent it before `tcp_close` reset. Reset now and it would go
            // unsent, the peer's RST landing at its first byte; the text is dropped.
            if self.reset_after_flush {
                return;
            }
            self.reset_reply = Some((seg.ack_number, None));
            self.enter_closed(None);
            return;
        }
        // Sixth: the URG bit, in the states that still take text ("ignore the URG" after
        // the peer's FIN).
        if matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            self.check_urgent(seg);
        }
        // CLOSE-WAIT, CLOSING, LAST-ACK: the peer's FIN has come, so a segment that starts
        // below RCV.NXT and brings bytes past it is new data after the FIN, which RFC 1122
        // §4.2.2.13 answers with a reset: the connection is aborted (Linux's step 7 once
        // `RCV_SHUTDOWN` is set, `tcp_reset`: EPIPE in CLOSE-WAIT) and an RST goes back.
        if start < self.rcv.nxt
            && start + seg.payload.len() > self.rcv.nxt
            && matches!(
                self.state,
                State::CloseWait | State::Closing | State::LastAck
            )
        {
            self.reset_reply = Some((seg.ack_number, None));
            self.handle_reset();
            return;
        }
        // CLOSE-WAIT, CLOSING, LAST-ACK: a segment below RCV.NXT (a resent FIN, old data;
        // now taken for its ACK) is a duplicate, answered at once with a D-SACK, in
        // quick-ACK mode (Linux's `tcp_rcv_state_process` hands it to `tcp_data_queue`).
        if start < self.rcv.nxt
            && seg.seq_len() > 0
            && matches!(
                self.state,
                State::CloseWait | State::Closing | State::LastAck
            )
        {
            self.answer_duplicate(start, end);
            self.verdict.duplicate_data |= end <= self.rcv.nxt;
        }
        // The FIN bit (RFC 9293 §3.10.7.4 "eighth") is noted before the text is stored: it
        // ends the stream, and nothing after it may be, whatever the peer sends there. A
        // FIN within the window is remembered until the bytes before it have all come;
        // the held bytes past it are forgotten (Linux's `tcp_fin` purges the out-of-order
        // queue, and `tcp_ofo_queue` stops at the FIN); of two FINs, the lower stands, as
        // Linux's queue reaches it first.
        let mut held_fin_again = false;
        if flags.contains(TcpFlags::FIN)
            && matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            )
        {
            let fin_seq = start + seg.payload.len();
            held_fin_again = self.held_fin() == Some(fin_seq);
            if fin_seq >= self.rcv.nxt && fin_seq - self.rcv.nxt <= self.rcv.adv - self.rcv.nxt {
                let fin_seq = match self.rcv.fin_seq {
                    Some(earlier) if earlier < fin_seq => earlier,
                    _ => fin_seq,
                };
                self.rcv.fin_seq = Some(fin_seq);
                if self.rcv.buffer.discard_from(fin_seq - self.rcv.nxt) {
                    self.rcv.sack_changed = true;
                }
            }
        }
        if !seg.payload.is_empty() {
            match self.state {
                State::Established | State::FinWait1 | State::FinWait2 => {
                    self.receive_data(now, seg, frame);
                }
                // CLOSE-WAIT, CLOSING, LAST-ACK, TIME-WAIT: "This should not occur since a FIN
                // has been received from the remote side. Ignore the segment text."
                _ => {}
            }
        }

        // Eighth: the FIN bit.
        if flags.contains(TcpFlags::FIN) {
            let fin_seq = start + seg.payload.len();
            match self.state {
                State::Established | State::FinWait1 | State::FinWait2 => {
                    self.rcv.ack_scheduled = true;
                    // Noted above, before the text. A FIN ahead of missing data is
                    // acknowledged at once, like any segment out of order; one in order is
                    // taken below, which decides.
                    if fin_seq != self.rcv.nxt {
                        self.rcv.ack_now = true;
                    }
                    // The held FIN again: a duplicate, whose D-SACK block covers its
                    // sequence number (with the data's, if it brought that again too), as
                    // Linux's out-of-order queue holds the FIN in an skb whose `end_seq`
                    // counts it (`tcp_data_queue_ofo`, `tcp_dsack_set`).
                    if held_fin_again && self.reports_dsack() {
                        self.rcv.dsack = match self.rcv.dsack {
                            Some((from, to)) if to == fin_seq => Some((from, to + 1)),
                            _ => Some((fin_seq, fin_seq + 1)),
                        };
                    }
                }
                _ => {
                    // CLOSE-WAIT, CLOSING, LAST-ACK: remain; a retransmitted FIN gets an ACK.
                    // One at or past RCV.NXT (a second FIN, further on) is dropped unanswered,
                    // as Linux's step 7 leaves it, so that a peer cannot draw an ACK a
                    // segment from us.
                    if fin_seq < self.rcv.nxt {
                        self.rcv.ack_now = true;
                    }
                }
            }
        }
        self.maybe_take_fin(now);
        // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: an ACK may be delayed, but not for long. (Not
        // while SACK ACKs are compressed: theirs goes sooner, and covers this data too.)
        if self.rcv.unacked_segments > 0 && !self.rcv.ack_now && self.rcv.sack_compressed == 0 {
            let wait = self.rcv.delack.timeout(self.rtt.srtt());
            match self.timers.delayed_ack {
                // No delay (no data came before, so `ato` is still 0: a bare FIN): Linux's
                // `tcp_send_delayed_ack` arms the timer for now, and its handler runs as for
                // any delayed ACK, leaving request/response mode that the FIN entered
                // (`tcp_delack_timer_handler`): TCP_QUICKACK reads 1 after it. Only a timer
                // already due sends the ACK at once, without the handler.
                _ if wait.is_zero() => {
                    self.rcv.ack_now = true;
                    if self.timers.delayed_ack.is_none_or(|due| due > now) {
                        let rto = self.current_rto();
                        self.rcv.delack.on_timeout(rto);
                    }
                }
                None => self.timers.delayed_ack = Some(now + wait),
                // More data while the ACK waits (Linux's tcp_send_delayed_ack, called for
                // each segment of data): a timer about to fire, within a quarter of the new
                // delay, is not waited for; otherwise the earlier of the two deadlines holds.
                Some(due) if !seg.payload.is_empty() => {
                    if due <= now + wait / 4 {
                        self.rcv.ack_now = true;
                    } else if now + wait < due {
                        self.timers.delayed_ack = Some(now + wait);
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// An acceptable RST (RFC 9293 §3.10.7.4 "second").
    fn handle_reset(&mut self) {
        // The error as Linux reports it (tcp_reset): EPIPE in CLOSE-WAIT, where the peer had
        // finished sending and only our side could still be written to; ECONNRESET otherwise.
        let error = match self.state {
            // A passive open goes back to LISTEN: for us, the half-open connection vanishes.
            // An active open that reached SYN-RECEIVED (simultaneous open) is refused
            // (RFC 9293 §3.10.7.4).
            // A Fast Open child was handed to the application with its SYN: the RST is its
            // error (Linux's tcp_reset), and its data stays readable.
            State::SynReceived if self.is_fast_open_child() => Some(Error::ConnectionReset),
            State::SynReceived => {
                if self.passive {
                    None
                } else {
                    Some(Error::ConnectionRefused)
                }
            }
            State::CloseWait => Some(Error::BrokenPipe),
            State::Established
            | State::FinWait1
            | State::FinWait2
            | State::Closing
            | State::LastAck => Some(Error::ConnectionReset),
            // TIME-WAIT: the connection simply ends (Linux, tcp_rfc1337 = 0).
            _ => None,
        };
        // What was queued to send is gone (`enter_closed` frees it). What arrived and was not
        // read yet stays readable before the error, as Linux's tcp_reset purges only the
        // write queue.
        self.enter_closed(error);
    }

    /// Store the segment's payload (RFC 9293 §3.10.7.4 "seventh") and decide on the ACK.
    fn receive_data(&mut self, now: Instant, seg: &TcpRepr<'_>, frame: Option<Frame<'_>>) {
        self.rcv.ack_scheduled = true;
        let mut start = seg.seq_number;
        let mut data = seg.payload;
        let rcv_wnd = self.rcv.adv - self.rcv.nxt;
        let mut reported_duplicate = false;
        // Trim what we already have.
        if start < self.rcv.nxt {
            self.report_duplicate(start, start + data.len());
            reported_duplicate = true;
            let dup = (self.rcv.nxt - start).min(data.len());
            data = &data[dup..];
            start = self.rcv.nxt;
        }
        if data.is_empty() {
            // A full duplicate: ACK at once so the sender learns (RFC 5681 §4.2). Our ACKs
            // went missing, so the next ones go at once too (Linux tcp_enter_quickack_mode).
            // Old data with a new FIN is not one (`tcp_data_queue` weighs the FIN too).
            self.verdict.duplicate_data = seg.seq_number + seg.seq_len() <= self.rcv.nxt;
            self.owe_dup_ack();
            self.rcv.delack.enter_quick_mode(rcv_wnd);
            return;
        }
        // New bytes: a congestion mark on them is echoed (RFC 3168 §6.1.3).
        self.ecn_check_ce();
        // Trim what lies past the window we advertised, and past the peer's FIN: no byte
        // after it is part of the stream (a negative distance is 0: all of it goes).
        let mut room = (self.rcv.adv - start).min(self.rcv.buffer.window());
        if let Some(fin) = self.rcv.fin_seq {
            room = room.min(fin - start);
        }
        if data.len() > room {
            data = &data[..room];
        }
        if data.is_empty() {
            // Past the window (or into a zero one; or all past the peer's FIN, which
            // counts the same, acknowledged and dropped): our window updates seem not to have
            // reached the sender, so this ACK and the next go at once (Linux's
            // `out_of_window`, quick-ACK mode). Linux 6.17+ gets there only with nothing
            // unread, and otherwise drops the segment earlier (`tcp_sequence`) with a plain
            // duplicate ACK; we enter quick-ACK mode either way: a kernel sender at MTU
            // 65535 overshoots our window, and builds without it received less in the
            // harness more often (BENCHMARKS.md, seventeenth session).
            self.rcv.ack_now = true;
            self.rcv.delack.enter_quick_mode(rcv_wnd);
            self.verdict.out_of_window = true;
            self.counters.add(|c| &mut c.ooo_dropped, 1);
            return;
        }
        let offset = start - self.rcv.nxt;
        let floor = offset == 0 && self.receive_floor() > 0;
        // A large in-order payload that arrived in shared memory stays where it is, unless
        // its frame would not fit the memory cap: it is copied then, as below.
        let kept = frame
            .filter(|f| offset == 0 && self.rcv.buffer.keeps(data.len(), f.truesize()))
            .filter(|f| self.rcv.buffer.growth_for_kept(f.truesize()) <= self.mem.room)
            .and_then(|f| Some((f.payload(data)?, f.truesize())));
        if kept.is_none()
            && !floor
            && self.rcv.buffer.growth_for(offset, data.len()) > self.mem.room
        {
            // The endpoint is at its memory cap (Linux: tcp_try_rmem_schedule fails): the
            // ring may not grow past the room left. Data that fills the next hole may take
            // the allocation this connection's own out-of-order data held
            // (tcp_prune_ofo_queue; RFC 2018 §8 lets a receiver discard SACKed data, and the
            // sender keeps it until it is cumulatively acknowledged), and is then cut to
            // what fits; anything else is dropped (TCPRcvQDrop). The ACK goes out at once,
            // with the window where it was: the peer retransmits once memory drains, and
            // the endpoint sends a window update then.
            self.mem.starved = true;
            self.rcv.ack_now = true;
            if offset == 0 && self.rcv.buffer.ooo_ranges() > 0 {
                self.mem.room += self.rcv.buffer.prune_ooo();
                self.rcv.sack_changed = true;
            }
            if offset > 0 || self.rcv.buffer.growth_for(0, data.len()) > self.mem.room {
                let fits = if offset == 0 {
                    self.rcv.buffer.room_without_growth()
                } else {
                    0
                };
                if fits == 0 {
                    self.verdict.memory = true;
                    return;
                }
                data = &data[..data.len().min(fits)];
            }
        }
        let had_ooo = self.rcv.buffer.ooo_ranges() > 0;
        // With SACK ACKs held, data that makes a third block, or joins one past the two most
        // recent, lets them go now, before blocks they would report fall out of the few an
        // ACK carries (Linux's `tcp_sack_new_ofo_skb`, `TCP_SACK_BLOCKS_EXPECTED`).
        let flush_held = offset > 0
            && self.rcv.sack_compressed > 0
            && match self.rcv.buffer.recency_of(offset, data.len()) {
                Some(rank) => rank >= SACK_BLOCKS_EXPECTED,
                None => self.rcv.buffer.ooo_ranges() >= SACK_BLOCKS_EXPECTED,
            };
        // Bytes held out of order that this segment brings again are duplicates too (RFC
        // 2883 §4, case 1): the first such run becomes the D-SACK block, unless the part
        // below RCV.NXT already took that place (Linux: `tcp_dsack_set`, then
        // `tcp_dsack_extend`, which only grows a contiguous block).
        let overlap = self.rcv.buffer.held_overlap(offset, data.len());
        let nxt_before = self.rcv.nxt;
        let before = self.rcv.buffer.allocated();
        let result = match kept {
            Some((payload, truesize)) => Ok(self.rcv.buffer.write_kept(payload, truesize)),
            None => self.rcv.buffer.write(offset, data),
        };
        if let (Ok(_), Some((from, to)), false) = (&result, overlap, reported_duplicate) {
            if self.reports_dsack() {
                self.rcv.dsack = Some((nxt_before + from, nxt_before + to));
            }
        }
        // What the write added to the allocation, off the room.
        let added = self.rcv.buffer.allocated().saturating_sub(before);
        self.mem.room = self.mem.room.saturating_sub(added);
        match result {
            Ok(advanced) => {
                self.verdict.data_taken = true;
                self.rcv.nxt += advanced;
                if advanced > 0 {
                    self.notify.readable = true;
                    self.rcv.ooo_acks_at_nxt = 0;
                }
                if offset > 0 {
                    self.counters.add(|c| &mut c.ooo_received, 1);
                    self.ack_out_of_order(now, flush_held);
                    self.rcv.sack_changed = true;
                } else {
                    let rto = self.current_rto();
                    // The peer's segment size, for the receive MSS estimate: a GRO packet's
                    // own (Linux tcp_measure_rcv_mss reads gso_size before skb->len).
                    let len = self
                        .gro_segment_size
                        .map_or(data.len(), |n| n.get() as usize);
                    if let Some(ts) = seg.timestamp.filter(|_| self.ts.enabled) {
                        self.measure_receive_rtt(now, ts.tsecr, len);
                    }
                    let arrived = ArrivedSegment {
                        len,
                        header_len: seg.header_len(),
                        base_header_len: 20 + if self.ts.enabled { 12 } else { 0 },
                        psh: seg.flags.contains(TcpFlags::PSH),
                        remnant: seg
                            .flags
                            .intersects(TcpFlags::PSH | TcpFlags::URG | TcpFlags::FIN),
                    };
                    let fin_next = self.state == State::Established
                        && seg.flags.contains(TcpFlags::FIN)
                        && !had_ooo
                        && seg.seq_number + seg.payload.len() == self.rcv.nxt;
                    let delack = &mut self.rcv.delack;
                    delack.on_data(now, arrived, self.rcv.mss, rcv_wnd, rto);
                    // More than one full segment unacknowledged ("an ACK SHOULD be generated
                    // for at least every second full-sized segment"; a segment longer than
                    // our MSS, taken whole as GRO would, is several), or quick-ACK mode. Not
                    // the latter for data with the FIN right behind it in ESTABLISHED:
                    // Linux's `tcp_data_queue` takes the FIN, which enters request/response
                    // mode, before `tcp_ack_snd_check` decides, so that the ACK may ride on
                    // the application's own FIN.
                    let due = if fin_next {
                        delack.full_segments_owed(self.rcv.nxt)
                    } else {
                        delack.ack_now(self.rcv.nxt)
                    };
                    self.rcv.unacked_segments = self.rcv.unacked_segments.saturating_add(1);
                    if had_ooo {
                        // One that fills a hole is ACKed at once (RFC 5681 §4.2).
                        self.rcv.ack_now = true;
                        self.rcv.sack_changed = true;
                    } else if due {
                        self.rcv.ack_now = true;
                    }
                }
            }
            Err(_) => {
                // Too many holes: drop the segment; the duplicate ACK tells the sender.
                self.counters.add(|c| &mut c.ooo_dropped, 1);
                self.owe_dup_ack();
                self.verdict.out_of_window = true;
            }
        }
    }

    /// `[start, end)` arrived again: the part below RCV.NXT goes into our next ACK as a
    /// D-SACK block (RFC 2883 §4, case 1; Linux `tcp_dsack_set`).
    fn report_duplicate(&mut self, start: SeqNumber, end: SeqNumber) {
        if self.reports_dsack() && start < self.rcv.nxt {
            self.rcv.dsack = Some((start, end.min(self.rcv.nxt)));
        }
    }

    /// Duplicates go into D-SACK blocks: SACK was negotiated and D-SACK is on (Linux's
    /// `tcp_dsack_set`: `tcp_is_sack` and `tcp_dsack`).
    fn reports_dsack(&self) -> bool {
        self.sack_ok && self.cfg.dsack
    }

    /// An ACK for RCV.NXT as it is now is due, before the one for the data that follows in
    /// the same batch (`MAX_ACK_POINTS`), echoing TS.Recent as it is now; the
    /// every-second-segment count starts again here.
    fn owe_ack_point(&mut self) {
        let n = usize::from(self.rcv.ack_points_len);
        if n < super::MAX_ACK_POINTS && self.rcv.buffer.ooo_ranges() == 0 {
            self.rcv.ack_points[n] = (self.rcv.nxt, self.ts.recent);
            self.rcv.ack_points_len += 1;
            self.rcv.delack.acked = self.rcv.nxt;
        }
    }

    /// An out-of-order segment was taken: RFC 5681 §4.2 asks for an immediate duplicate ACK
    /// (with SACK blocks, RFC 2018 §4), one per segment. As Linux's `__tcp_ack_snd_check`
    /// with its out-of-order queue not empty, only the first `DUP_THRESH` since RCV.NXT last
    /// moved go at once with SACK, enough for the sender's fast retransmit; later ones are
    /// compressed, up to `COMP_SACK_MAX` of them, into one ACK a twentieth of the RTT later
    /// and at most `COMP_SACK_DELAY` (Linux's `tcp_comp_sack_nr` and
    /// `tcp_comp_sack_delay_ns`, 44 and 1 ms), whose blocks cover them all. Quick-ACK mode,
    /// more than a full segment of unacknowledged in-order data, or a peer without SACK
    /// (whose duplicate ACKs are all it learns from) get every ACK at once, as does a
    /// segment that lets the held ones go (`flush_held`; Linux sends those first, then holds
    /// the new one, where one ACK after it carries both).
    fn ack_out_of_order(&mut self, now: Instant, flush_held: bool) {
        let at_once = !self.sack_ok
            || flush_held
            || self.rcv.delack.in_quick_mode()
            || self.rcv.delack.full_segments_owed(self.rcv.nxt)
            || self.rcv.sack_compressed >= COMP_SACK_MAX;
        if at_once || usize::from(self.rcv.ooo_acks_at_nxt) < DUP_THRESH {
            if !at_once {
                self.rcv.ooo_acks_at_nxt += 1;
            }
            self.owe_dup_ack();
            return;
        }
        self.rcv.sack_compressed += 1;
        // The RTT as the receiver sees it. Linux takes its receive-side estimate, or SRTT if
        // that is smaller; synack keeps a receive-side estimate only while it has no SRTT
        // (`measure_receive_rtt`), so SRTT stands in for it. With neither, no delay.
        let rtt = match (self.rtt.srtt(), self.rcv_space.rtt_us) {
            (Some(srtt), 0) => srtt,
            (Some(srtt), us) => srtt.min(Duration::from_micros(u64::from(us))),
            (None, us) => Duration::from_micros(u64::from(us)),
        };
        // The first held ACK's deadline stands: later ones never put it off.
        let due = now + (rtt / 20).min(COMP_SACK_DELAY);
        self.timers.delayed_ack = Some(self.timers.delayed_ack.map_or(due, |t| t.min(due)));
    }

    /// One more immediate duplicate ACK is due (see `Receiver::dup_acks_owed`).
    fn owe_dup_ack(&mut self) {
        self.rcv.ack_now = true;
        if self.rcv.dup_acks_owed < MAX_DUP_ACKS_OWED {
            self.rcv.dup_acks_owed += 1;
        }
    }

    /// Process the peer's FIN once every byte before it has arrived.
    pub(super) fn maybe_take_fin(&mut self, now: Instant) {
        let Some(fin) = self.rcv.fin_seq else { return };
        if fin != self.rcv.nxt || self.rcv.fin_received {
            return;
        }
        self.rcv.fin_received = true;
        self.rcv.fin_seq = None;
        self.rcv.nxt += 1;
        // Nothing is left to report selectively once the stream has ended: Linux's `tcp_fin`
        // resets the SACK state (`tcp_sack_reset`), D-SACK included, so the FIN's ACK
        // carries no blocks even when duplicate data rode in with it.
        self.rcv.dsack = None;
        self.notify.readable = true;
        match self.state {
            State::Established => {
                // Linux (tcp_fin) expects the application to answer with its own FIN soon:
                // request/response mode, so the ACK may wait to ride on that FIN, for the
                // usual delay (none before any data arrived).
                self.set_state(State::CloseWait);
                self.rcv.delack.pingpong = true;
                self.rcv.unacked_segments = self.rcv.unacked_segments.saturating_add(1);
                // Unless the receive buffer is full: a FIN taken at a closed window (some
                // stacks send bare FINs into one, again at every ACK that restates it) is
                // acknowledged at once, as Linux's `tcp_data_queue` does when the receive
                // memory is spent (ICSK_ACK_NOW), which ends such a loop.
                if self.window_room(0) == 0 {
                    self.rcv.ack_now = true;
                }
                return;
            }
            _ => self.rcv.ack_now = true,
        }
        match self.state {
            State::FinWait1 => {
                if self.snd.fin_acked() {
                    self.enter_time_wait(now);
                } else {
                    self.set_state(State::Closing);
                }
            }
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }
}

/// What a segment carries past its SYN, as a segment of its own: the same text, FIN and ACK,
/// starting one sequence number later. Its urgent pointer is counted from the SYN's sequence
/// number (RFC 9293 §3.8.5: an offset from SEG.SEQ), so it is one less from the new start;
/// a pointer of 0 or 1 names the SYN itself or nothing before it, and Linux's `tcp_check_urg`
/// drops such a mark (it lies below `copied_seq`), so URG goes too.
pub(super) fn after_syn<'a>(seg: &TcpRepr<'a>) -> TcpRepr<'a> {
    let mut rest = *seg;
    rest.flags = TcpFlags(seg.flags.0 & !TcpFlags::SYN.0);
    rest.seq_number = seg.seq_number + 1;
    if rest.flags.contains(TcpFlags::URG) {
        match seg.urgent_pointer.checked_sub(1) {
            Some(ptr) if ptr > 0 => rest.urgent_pointer = ptr,
            _ => {
                rest.flags = TcpFlags(rest.flags.0 & !TcpFlags::URG.0);
                rest.urgent_pointer = 0;
            }
        }
    }
    rest
}
