//! When to acknowledge received data: at once or after a delay, as Linux decides it
//! (`struct inet_connection_sock::icsk_ack` and its users in tcp_input.c and tcp_output.c).
//!
//! RFC 9293 §3.8.6.3 and RFC 5681 §4.2 allow an ACK to be delayed (by less than 500 ms) and
//! ask for one at least every second full-sized segment. Linux refines that in three ways a
//! peer can see, and this module does the same:
//!
//! - **Quick-ACK mode.** The first data of a connection, and data after an idle gap longer
//!   than the RTO, are acknowledged segment by segment, up to 16 times (`tcp_incr_quickack`),
//!   so that a sender in slow start is not held back by delayed ACKs.
//! - **An adaptive delay (`ato`).** The delayed-ACK timeout follows the spacing of arriving
//!   segments (`tcp_event_data_recv`), between 40 ms and 200 ms and no longer than the
//!   smoothed RTT (`tcp_send_delayed_ack`).
//!   Before any data arrived it is zero: an ACK owed then (for a FIN, say) leaves at once.
//! - **Ping-pong (interactive) mode.** When we send data within `ato` of receiving some, the
//!   ACK can ride on the reply, so quick ACKs stop (`tcp_event_data_sent`); a delayed-ACK
//!   timeout that fires anyway ends the mode (`tcp_delack_timer_handler`).
//!
//! - **ACK on read.** A short segment the sender pushed (the end of its write, maybe all it
//!   has until it hears from us) is marked (`ICSK_ACK_PUSHED`). A read that empties the
//!   receive queue then sends the ACK at once instead of at the timer, outside ping-pong mode,
//!   or in it after two such segments (`ICSK_ACK_PUSHED2`): `tcp_cleanup_rbuf`. A sender whose
//!   Nagle test waits for that ACK is not held for the delay.
//!
//! "More than one full segment" counts bytes against an estimate of the peer's segment size
//! (`rcv_mss`, `tcp_measure_rcv_mss`), not segments: two small segments wait for the timer.

use std::time::Duration;

use crate::seq::SeqNumber;
use crate::time::Instant;

/// The most segments quick-ACK mode acknowledges one by one (Linux `TCP_MAX_QUICKACKS`).
pub const MAX_QUICKACKS: u32 = 16;
/// The longest delay (Linux `TCP_DELACK_MAX`, the default `icsk_delack_max`).
pub const DELACK_MAX: Duration = Duration::from_millis(200);
/// The smallest segment size assumed for the peer (Linux `TCP_MIN_MSS`).
const MIN_RCV_MSS: usize = 88;
/// The first guess at the peer's segment size (Linux `TCP_MSS_DEFAULT`, RFC 9293 §3.7.1).
const DEFAULT_RCV_MSS: usize = 536;
/// A TCP header without options.
const BARE_HEADER: usize = 20;

/// What `tcp_measure_rcv_mss` reads of an in-order data segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ArrivedSegment {
    /// Its payload, or a GRO packet's segment size.
    pub len: usize,
    /// Its TCP header, options included.
    pub header_len: usize,
    /// The header every segment of the connection carries (20, or 32 with timestamps):
    /// what lies beyond it (SACK blocks) varies and is not the peer's segment size.
    pub base_header_len: usize,
    /// PSH is set.
    pub psh: bool,
    /// PSH, URG or FIN is set (Linux's `TCP_REMNANT`): the sender may have sent it short.
    pub remnant: bool,
}

/// The delayed-ACK state of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DelayedAck {
    /// The smallest delay (Linux `TCP_ATO_MIN`, 40 ms): `Config::delayed_ack`.
    min: Duration,
    /// The current delay; zero until the first data arrives.
    pub ato: Duration,
    /// Segments still to be acknowledged one by one.
    pub quick: u32,
    /// We reply to what we receive: ACKs can wait for the reply.
    pub pingpong: bool,
    /// When data last arrived.
    last_data: Instant,
    /// The estimate of the peer's segment size.
    pub rcv_mss: usize,
    /// RCV.NXT when we last sent an ACK (Linux `rcv_wup`).
    pub acked: SeqNumber,
    /// The size of the last segment that looked full-sized without reaching `rcv_mss`
    /// (Linux `last_seg_size`): two alike lower the estimate.
    last_seg_size: usize,
    /// A pushed short segment waits for our ACK (`ICSK_ACK_PUSHED`).
    pushed: bool,
    /// Two of them did (`ICSK_ACK_PUSHED2`).
    pushed2: bool,
}

impl DelayedAck {
    pub fn new(min: Duration, now: Instant) -> DelayedAck {
        DelayedAck {
            min,
            ato: Duration::ZERO,
            quick: 0,
            pingpong: false,
            last_data: now,
            rcv_mss: DEFAULT_RCV_MSS,
            acked: SeqNumber(0),
            last_seg_size: 0,
            pushed: false,
            pushed2: false,
        }
    }

    /// The handshake is done: the first estimate of the peer's segment size
    /// (`tcp_initialize_rcv_mss`), and RCV.NXT as of the handshake's ACK.
    pub fn on_established(&mut self, rcv_nxt: SeqNumber, peer_mss: usize, rcv_wnd: usize) {
        self.rcv_mss = peer_mss
            .min(DEFAULT_RCV_MSS)
            .min(rcv_wnd / 2)
            .max(MIN_RCV_MSS);
        self.acked = rcv_nxt;
    }

    /// In quick-ACK mode: every segment is acknowledged at once.
    pub fn in_quick_mode(&self) -> bool {
        self.quick > 0 && !self.pingpong
    }

    /// Allow up to `MAX_QUICKACKS` quick ACKs, fewer if the window holds fewer than that
    /// many pairs of segments (`tcp_incr_quickack`).
    fn add_quick(&mut self, rcv_wnd: usize) {
        self.add_quick_at_most(rcv_wnd, MAX_QUICKACKS);
    }

    /// `add_quick` with at most `max` quick ACKs (`tcp_incr_quickack`'s `max_quickacks`).
    fn add_quick_at_most(&mut self, rcv_wnd: usize, max: u32) {
        let pairs = (rcv_wnd / (2 * self.rcv_mss.max(1))) as u32;
        let quick = if pairs == 0 { 2 } else { pairs.min(max) };
        self.quick = self.quick.max(quick);
    }

    /// Acknowledge what comes next at once: out-of-window or duplicate data arrived, which
    /// says our ACKs went missing (`tcp_enter_quickack_mode`).
    pub fn enter_quick_mode(&mut self, rcv_wnd: usize) {
        self.enter_quick_mode_at_most(rcv_wnd, MAX_QUICKACKS);
    }

    /// [`enter_quick_mode`](Self::enter_quick_mode) for at most `max` ACKs: Linux asks for
    /// two when a congestion mark arrives (`tcp_enter_quickack_mode(sk, 2)`).
    pub fn enter_quick_mode_at_most(&mut self, rcv_wnd: usize, max: u32) {
        self.add_quick_at_most(rcv_wnd, max);
        self.pingpong = false;
        self.ato = self.min;
    }

    /// The handshake ended with a write waiting to answer it (Linux's
    /// `tcp_rcv_synsent_state_process` with `sk_write_pending`): quick-ACK mode with the
    /// delay set, and the SYN-ACK's arrival taken as the last receipt (`tcp_finish_connect`
    /// sets `lrcvtime`), so that data sent within the delay means request/response.
    pub fn on_reply_awaited(&mut self, now: Instant, rcv_wnd: usize) {
        self.enter_quick_mode(rcv_wnd);
        self.last_data = now;
    }

    /// `len` bytes of new in-order data arrived (`tcp_measure_rcv_mss` and
    /// `tcp_event_data_recv`).
    pub fn on_data(
        &mut self,
        now: Instant,
        seg: ArrivedSegment,
        our_mss: usize,
        rcv_wnd: usize,
        rto: Duration,
    ) {
        self.measure(seg, our_mss);
        if self.ato.is_zero() {
            // The first data: start acknowledging segment by segment.
            self.add_quick(rcv_wnd);
            self.ato = self.min;
        } else {
            let gap = now - self.last_data;
            let half = self.min / 2;
            if gap <= half {
                self.ato = self.ato / 2 + half;
            } else if gap < self.ato {
                self.ato = (self.ato / 2 + gap).min(rto);
            } else if gap > rto {
                // A long silence: the sender restarts, and our quick ACKs help it.
                self.add_quick(rcv_wnd);
            }
        }
        self.last_data = now;
    }

    /// The peer's segment size from one in-order segment, and the pushed marks
    /// (`tcp_measure_rcv_mss`).
    fn measure(&mut self, seg: ArrivedSegment, our_mss: usize) {
        let last = std::mem::take(&mut self.last_seg_size);
        if seg.len >= self.rcv_mss {
            self.rcv_mss = seg.len.min(our_mss).max(MIN_RCV_MSS);
            // A segment of exactly one MSS with PSH likely ends the sender's write, and the
            // sender may wait for our ACK of it (a longer one, GRO's, is ACKed on the read
            // anyway: more than one MSS is unacknowledged).
            self.pushed |= seg.psh && seg.len == self.rcv_mss;
            return;
        }
        // Shorter than the estimate. Measured with its header, less the part every segment
        // carries (so that SACK blocks do not jitter it): one of at least 536 bytes, or of
        // 88 without PSH, URG or FIN, was full-sized for the sender (a link with a small
        // MTU), and two alike in a row lower the estimate.
        let with_header = seg.len + seg.header_len;
        if with_header >= DEFAULT_RCV_MSS + BARE_HEADER
            || (with_header >= MIN_RCV_MSS + BARE_HEADER && !seg.remnant)
        {
            let len = with_header.saturating_sub(seg.base_header_len);
            self.last_seg_size = len;
            if len == last {
                self.rcv_mss = len;
                return;
            }
        }
        self.pushed2 |= self.pushed;
        self.pushed = true;
    }

    /// The application read, leaving the receive queue `emptied` or not, with an ACK owed
    /// (`tcp_cleanup_rbuf`): whether that ACK goes now. It does if more than a full segment
    /// waits for it, or if the read emptied the queue after pushed short segments, outside
    /// request/response mode or after two of them.
    pub fn ack_on_read(&self, rcv_nxt: SeqNumber, emptied: bool) -> bool {
        self.full_segments_owed(rcv_nxt)
            || (emptied && (self.pushed2 || (self.pushed && !self.pingpong)))
    }

    /// An owed ACK is to go at the next read that empties the queue, or now if that is done:
    /// `TCP_QUICKACK` marks it so (`__tcp_sock_set_quickack`).
    pub fn mark_pushed(&mut self) {
        self.pushed = true;
    }

    /// Whether the data received since our last ACK, up to `rcv_nxt`, calls for an ACK at
    /// once (`__tcp_ack_snd_check`): more than one full segment of it, or quick-ACK mode.
    pub fn ack_now(&self, rcv_nxt: SeqNumber) -> bool {
        self.full_segments_owed(rcv_nxt) || self.in_quick_mode()
    }

    /// Whether more than one full segment has arrived since our last ACK.
    pub fn full_segments_owed(&self, rcv_nxt: SeqNumber) -> bool {
        rcv_nxt - self.acked > self.rcv_mss
    }

    /// We sent data: a reply within `ato` of the data it answers means request/response
    /// (`tcp_event_data_sent`).
    pub fn on_data_sent(&mut self, now: Instant) {
        if now - self.last_data < self.ato {
            self.pingpong = true;
        }
    }

    /// A segment carrying our ACK up to `rcv_nxt` left; `owed` says whether it answered
    /// data (or a FIN) that scheduled an ACK, in order or out of order, new or a duplicate
    /// (`tcp_event_ack_sent`, `tcp_dec_quickack_mode`: one quick ACK is spent whenever
    /// `inet_csk_ack_scheduled`).
    pub fn on_ack_sent(&mut self, rcv_nxt: SeqNumber, owed: bool) {
        self.acked = rcv_nxt;
        // `inet_csk_clear_xmit_timer(ICSK_TIME_DACK)` clears the pending marks.
        self.pushed = false;
        self.pushed2 = false;
        if owed && self.quick > 0 {
            self.quick -= 1;
            if self.quick == 0 {
                self.ato = self.min;
            }
        }
    }

    /// How long an owed ACK may wait (`tcp_send_delayed_ack`): `ato`, no longer than the
    /// smoothed RTT, and at most 200 ms. Linux bounds it by `HZ / 2` (500 ms) outside
    /// request/response exchanges and pushed segments, but then, since 5.11, by
    /// `icsk_delack_max` too, `TCP_DELACK_MAX` unless a BPF program changed it: 200 ms in
    /// every case.
    pub fn timeout(&self, srtt: Option<Duration>) -> Duration {
        if self.ato <= self.min {
            return self.ato;
        }
        let mut max = DELACK_MAX;
        if let Some(srtt) = srtt {
            max = max.min(srtt.max(self.min));
        }
        self.ato.min(max)
    }

    /// `ato` as Linux's `TCP_INFO` reports it (`tcp_get_info`: at most `tcp_delack_max`).
    pub fn reported_ato(&self) -> Duration {
        self.ato.min(DELACK_MAX)
    }

    /// The delayed-ACK timer fired with an ACK owed (`tcp_delack_timer_handler`): the delay
    /// was too short for a bulk sender, so it doubles; in request/response mode the reply we
    /// waited for did not come, so the mode ends.
    pub fn on_timeout(&mut self, rto: Duration) {
        if self.pingpong {
            self.pingpong = false;
            self.ato = self.min;
        } else {
            self.ato = self.ato.saturating_mul(2).min(rto);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(40);
    const RTO: Duration = Duration::from_secs(1);

    /// A short segment with PSH, as a write's end arrives, without options.
    fn pushed(len: usize) -> ArrivedSegment {
        ArrivedSegment {
            len,
            header_len: 20,
            base_header_len: 20,
            psh: true,
            remnant: true,
        }
    }

    fn established() -> DelayedAck {
        let mut d = DelayedAck::new(MIN, Instant::ZERO);
        d.on_established(SeqNumber(1), 1460, 65535);
        d
    }

    #[test]
    fn before_any_data_an_owed_ack_leaves_at_once() {
        let d = established();
        assert_eq!(d.timeout(None), Duration::ZERO);
        assert!(!d.in_quick_mode());
    }

    #[test]
    fn the_first_sixteen_segments_are_acknowledged_one_by_one() {
        let mut d = established();
        let mut nxt = SeqNumber(1);
        let mut quick = 0;
        for i in 0..20u64 {
            d.on_data(Instant::from_millis(i), pushed(100), 1460, 65535, RTO);
            nxt += 100;
            if d.ack_now(nxt) {
                quick += 1;
                d.on_ack_sent(nxt, true);
            }
        }
        assert_eq!(quick, MAX_QUICKACKS);
        assert_eq!(d.ato, MIN, "leaving quick-ACK mode deflates the delay");
    }

    #[test]
    fn a_small_window_allows_fewer_quick_acks() {
        let mut d = DelayedAck::new(MIN, Instant::ZERO);
        d.on_established(SeqNumber(1), 1000, 8000);
        // The peer's segment size is guessed at 536 bytes, so an 8000-byte window holds
        // seven pairs of segments.
        d.on_data(Instant::ZERO, pushed(500), 1460, 8000, RTO);
        assert_eq!(d.quick, 7);
    }

    #[test]
    fn more_than_one_segment_unacknowledged_draws_an_ack() {
        let mut d = established();
        d.quick = 0;
        d.ato = MIN;
        d.rcv_mss = 1000;
        assert!(!d.ack_now(SeqNumber(1 + 1000)));
        assert!(d.ack_now(SeqNumber(1 + 1001)));
    }

    #[test]
    fn a_reply_within_ato_turns_on_pingpong_and_a_missed_delack_turns_it_off() {
        let mut d = established();
        d.on_data(Instant::from_millis(100), pushed(100), 1460, 65535, RTO);
        d.on_data_sent(Instant::from_millis(110));
        assert!(d.pingpong);
        assert!(!d.in_quick_mode());
        d.ato = Duration::from_millis(300);
        assert_eq!(d.timeout(None), DELACK_MAX);
        d.on_timeout(RTO);
        assert!(!d.pingpong);
        assert_eq!(d.ato, MIN);
    }

    #[test]
    fn the_delay_is_bounded_by_the_rtt_and_grows_when_it_misses() {
        let mut d = established();
        d.on_data(Instant::ZERO, pushed(100), 1460, 65535, RTO);
        d.quick = 0;
        d.on_timeout(RTO);
        assert_eq!(d.ato, 2 * MIN);
        assert_eq!(
            d.timeout(Some(Duration::from_millis(50))),
            Duration::from_millis(50)
        );
        assert_eq!(d.timeout(Some(Duration::from_millis(10))), MIN);
        assert_eq!(d.timeout(None), 2 * MIN);
    }

    /// Outside request/response exchanges, with no pushed segment and a long RTT, a delay
    /// that doubled past 200 ms is still capped there (Linux's `icsk_delack_max`), as
    /// `TCP_INFO` reports it; it used to reach 500 ms (`delack-max-200ms.pkt`).
    #[test]
    fn the_delay_never_exceeds_200_ms() {
        let mut d = established();
        d.on_data(Instant::ZERO, pushed(100), 1460, 65535, RTO);
        d.quick = 0;
        d.pushed = false;
        for _ in 0..3 {
            d.on_timeout(RTO);
        }
        assert_eq!(d.ato, 8 * MIN);
        assert!(!d.pingpong);
        assert_eq!(d.timeout(Some(Duration::from_millis(400))), DELACK_MAX);
        assert_eq!(d.timeout(None), DELACK_MAX);
        assert_eq!(d.reported_ato(), DELACK_MAX);
    }

    #[test]
    fn idle_longer_than_the_rto_restarts_quick_acks() {
        let mut d = established();
        d.on_data(Instant::ZERO, pushed(100), 1460, 65535, RTO);
        d.quick = 0;
        d.on_data(Instant::from_secs(5), pushed(100), 1460, 65535, RTO);
        assert!(d.in_quick_mode());
    }
}
