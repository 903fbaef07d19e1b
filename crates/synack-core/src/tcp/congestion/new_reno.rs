//! NewReno (RFC 5681, RFC 6582), with Appropriate Byte Counting (RFC 3465).
//!
//! The connection decides *when* each event happens (it counts duplicate ACKs, tracks the
//! recovery point and resends segments); this type only applies each event's rule to the
//! congestion window and slow-start threshold. All arithmetic saturates, so no sequence of
//! calls, however odd, can overflow or leave the window below one segment.

use std::time::Duration;

use super::{
    full_ack_window, inflated_window, initial_window, slow_start, Controller, ControllerFactory,
};
use crate::time::Instant;

/// NewReno congestion control.
#[derive(Debug, Clone)]
pub struct NewReno {
    /// SMSS, never zero.
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew (RFC 3465 §2.1).
    bytes_acked: usize,
    /// Nothing acknowledged yet: the window is still the initial window, which follows MSS
    /// changes (the MSS is only known once the handshake is done).
    initial: bool,
    /// cwnd and ssthresh before the last fast retransmit, for its undo.
    prior: (usize, usize),
}

impl NewReno {
    /// A controller with the initial window of RFC 5681 §3.1 as raised by RFC 6928, and an
    /// "arbitrarily high" initial ssthresh (RFC 5681 §3.1).
    pub fn new(mss: usize) -> Self {
        let mss = mss.max(1);
        NewReno {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            bytes_acked: 0,
            initial: true,
            prior: (0, 0),
        }
    }

    /// Whether the window is in slow start (RFC 5681 §3.1: "The slow start algorithm is used
    /// when cwnd < ssthresh, while the congestion avoidance algorithm is used when cwnd >
    /// ssthresh"; at equality either may be used, and we use congestion avoidance).
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// RFC 5681 §3.1 equation (4): `ssthresh = max (FlightSize / 2, 2*SMSS)`.
    fn reduced_ssthresh(&self, flight: usize) -> usize {
        (flight / 2).max(self.mss.saturating_mul(2))
    }
}

impl Controller for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(
        &mut self,
        _now: Instant,
        bytes_acked: usize,
        _bytes_in_flight: usize,
        _rtt: Option<Duration>,
    ) {
        if bytes_acked == 0 {
            return;
        }
        self.initial = false;
        let mut acked = bytes_acked;
        if self.in_slow_start() {
            // RFC 5681 §3.1 with byte counting, as Linux (RFC 9438 §4.10 for CUBIC).
            let (cwnd, left) = slow_start(self.cwnd, self.ssthresh, bytes_acked);
            self.cwnd = cwnd;
            if left == 0 {
                return;
            }
            acked = left;
        }
        // RFC 5681 §3.1 / RFC 3465 §2.1 byte counting: "When the number of bytes acknowledged
        // reaches cwnd, then cwnd can be incremented by up to SMSS bytes", so cwnd grows by one
        // SMSS per window of data acknowledged, i.e. about one SMSS per RTT.
        self.bytes_acked = self.bytes_acked.saturating_add(acked);
        if self.bytes_acked >= self.cwnd {
            self.bytes_acked -= self.cwnd;
            self.cwnd = self.cwnd.saturating_add(self.mss);
            // One increment per ACK at most: a huge ACK must not open the window in a burst.
            self.bytes_acked = self.bytes_acked.min(self.cwnd.saturating_sub(1));
        }
    }

    fn on_fast_retransmit(&mut self, _now: Instant, bytes_in_flight: usize) {
        self.initial = false;
        self.prior = (self.cwnd, self.ssthresh);
        // RFC 5681 §3.2 step 2 (RFC 6582 §3.2 step 2): ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = self.reduced_ssthresh(bytes_in_flight);
        // RFC 5681 §3.2 step 3: inflate by the three segments the duplicate ACKs say have left.
        self.cwnd = inflated_window(self.ssthresh, self.mss);
        self.bytes_acked = 0;
    }

    fn on_congestion_signal(&mut self, _now: Instant, cwnd: usize) {
        self.initial = false;
        // RFC 3168 §6.1.2: "the congestion window (cwnd) is halved and the slow start
        // threshold (ssthresh) is reduced", as for a loss; the connection reduces cwnd.
        self.ssthresh = self.reduced_ssthresh(cwnd);
        self.bytes_acked = 0;
    }

    fn on_spurious_fast_retransmit(&mut self) {
        let (cwnd, ssthresh) = self.prior;
        self.cwnd = self.cwnd.max(cwnd);
        self.ssthresh = self.ssthresh.max(ssthresh);
        self.bytes_acked = 0;
    }

    fn on_spurious_rto(&mut self) {
        self.on_spurious_fast_retransmit();
    }

    fn on_recovery_end(&mut self, bytes_in_flight: usize) {
        self.cwnd = full_ack_window(self.ssthresh, bytes_in_flight, self.mss);
        self.bytes_acked = 0;
    }

    fn on_rto(&mut self, _now: Instant, window: Option<usize>) {
        self.initial = false;
        // RFC 5681 §3.1: "when a TCP sender detects segment loss using the retransmission
        // timer and the given segment has already been retransmitted by way of the
        // retransmission timer at least once, the value of ssthresh is held constant."
        // A repeated timeout with nothing acknowledged in between is exactly that case; it
        // would otherwise halve ssthresh again from a FlightSize that has not drained. The
        // connection, which sees every ACK, says so with `None`.
        if let Some(window) = window {
            // What the timeout reduces, for its undo should it prove spurious.
            self.prior = (self.cwnd, self.ssthresh);
            // RFC 5681 §3.1 equation (4).
            self.ssthresh = self.reduced_ssthresh(window);
        }
        // RFC 5681 §3.1: "Furthermore, upon a timeout (as specified in [RFC2988]) cwnd MUST be
        // set to no more than the loss window, LW, which equals 1 full-sized segment".
        self.cwnd = self.mss;
        self.bytes_acked = 0;
    }

    fn on_window_validated(&mut self, _now: Instant, cwnd: usize, ssthresh: usize) {
        if cwnd != self.cwnd {
            self.initial = false;
        }
        self.cwnd = cwnd.max(self.mss);
        self.ssthresh = ssthresh;
        self.bytes_acked = 0;
    }

    fn set_mss(&mut self, mss: usize) {
        let mss = mss.max(1);
        self.mss = mss;
        if self.initial {
            // The initial window is defined in segments of the MSS actually in use.
            self.cwnd = initial_window(mss);
        } else {
            self.cwnd = self.cwnd.max(mss);
        }
    }
}

/// Builds [`NewReno`] controllers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRenoFactory;

impl ControllerFactory for NewRenoFactory {
    fn build(&self, _now: Instant, mss: usize) -> Box<dyn Controller> {
        Box::new(NewReno::new(mss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;
    const T: Instant = Instant::ZERO;

    /// Acknowledges `segments` full segments one ACK each.
    fn ack_segments(cc: &mut NewReno, segments: usize) {
        for _ in 0..segments {
            cc.on_ack(T, MSS, cc.window(), None);
        }
    }

    #[test]
    fn initial_window_is_ten_segments() {
        let cc = NewReno::new(MSS);
        assert_eq!(cc.window(), 10 * MSS);
        assert_eq!(cc.ssthresh(), usize::MAX);
        assert!(cc.in_slow_start());
        let boxed = NewRenoFactory.build(T, 1460);
        assert_eq!(boxed.window(), 14_600);
    }

    #[test]
    fn slow_start_doubles_per_round_trip() {
        let mut cc = NewReno::new(MSS);
        // One ACK per segment for a whole window: cwnd grows by one SMSS per ACK.
        ack_segments(&mut cc, 10);
        assert_eq!(cc.window(), 20 * MSS);
        ack_segments(&mut cc, 20);
        assert_eq!(cc.window(), 40 * MSS);
    }

    #[test]
    fn slow_start_grows_by_every_byte_acked() {
        let mut cc = NewReno::new(MSS);
        // A stretch ACK covering five segments grows cwnd by five (Linux's tcp_slow_start;
        // no RFC 3465 L cap).
        cc.on_ack(T, 5 * MSS, 10 * MSS, None);
        assert_eq!(cc.window(), 15 * MSS);
        cc.on_ack(T, 2 * MSS, 10 * MSS, None);
        assert_eq!(cc.window(), 17 * MSS);
        // A small ACK grows by what it covers.
        cc.on_ack(T, 100, 10 * MSS, None);
        assert_eq!(cc.window(), 17 * MSS + 100);
        cc.on_ack(T, 0, 10 * MSS, None);
        assert_eq!(cc.window(), 17 * MSS + 100);
    }

    #[test]
    fn congestion_avoidance_grows_one_mss_per_window() {
        let mut cc = NewReno::new(MSS);
        cc.on_fast_retransmit(T, 40 * MSS);
        cc.on_recovery_end(40 * MSS);
        assert_eq!(cc.ssthresh(), 20 * MSS);
        assert_eq!(cc.window(), 20 * MSS);
        assert!(!cc.in_slow_start());
        // 19 segments acked: not yet a full window.
        ack_segments(&mut cc, 19);
        assert_eq!(cc.window(), 20 * MSS);
        ack_segments(&mut cc, 1);
        assert_eq!(cc.window(), 21 * MSS);
        // The next increment needs a whole 21-segment window.
        ack_segments(&mut cc, 20);
        assert_eq!(cc.window(), 21 * MSS);
        ack_segments(&mut cc, 1);
        assert_eq!(cc.window(), 22 * MSS);
    }

    #[test]
    fn congestion_avoidance_counts_bytes_not_acks() {
        let mut cc = NewReno::new(MSS);
        cc.on_rto(T, Some(20 * MSS));
        cc.on_ack(T, 9 * MSS, MSS, None); // slow start up to ssthresh = 10 segments
        assert_eq!(
            cc.window(),
            10 * MSS,
            "after an RTO, slow start stops at ssthresh"
        );
        let mut cc = NewReno::new(MSS);
        cc.on_fast_retransmit(T, 20 * MSS);
        cc.on_recovery_end(20 * MSS);
        assert_eq!(cc.window(), 10 * MSS);
        // Twenty 500-byte ACKs are one window of bytes: one increment, as delayed or small
        // ACKs must not slow congestion avoidance down nor many tiny ACKs speed it up.
        for _ in 0..19 {
            cc.on_ack(T, 500, 10 * MSS, None);
        }
        assert_eq!(cc.window(), 10 * MSS);
        cc.on_ack(T, 500, 10 * MSS, None);
        assert_eq!(cc.window(), 11 * MSS);
        // A giant ACK grows the window by one SMSS only.
        cc.on_ack(T, 1 << 40, 10 * MSS, None);
        assert_eq!(cc.window(), 12 * MSS);
        cc.on_ack(T, 1, 10 * MSS, None);
        assert_eq!(
            cc.window(),
            13 * MSS,
            "but its extra bytes do count towards the next one"
        );
    }

    #[test]
    fn slow_start_stops_at_ssthresh_and_carries_over() {
        let mut cc = NewReno::new(MSS);
        cc.on_rto(T, Some(9 * MSS)); // ssthresh = 4.5 segments, cwnd = 1 segment
        assert_eq!(cc.ssthresh(), 4500);
        assert_eq!(cc.window(), MSS);
        ack_segments(&mut cc, 3);
        assert_eq!(cc.window(), 4 * MSS);
        // This ACK would take cwnd to 5000: it stops at 4500, and 500 bytes count towards CA.
        cc.on_ack(T, MSS, MSS, None);
        assert_eq!(cc.window(), 4500);
        assert!(!cc.in_slow_start());
        cc.on_ack(T, 4000, MSS, None);
        assert_eq!(cc.window(), 5500);
    }

    #[test]
    fn fast_recovery_and_its_full_ack() {
        let mut cc = NewReno::new(MSS);
        ack_segments(&mut cc, 10); // cwnd 20 segments
                                   // Three duplicate ACKs with 20 segments in flight.
        cc.on_fast_retransmit(T, 20 * MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        assert_eq!(cc.window(), 13 * MSS);
        // The full ACK: cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS).
        cc.on_recovery_end(12 * MSS);
        assert_eq!(cc.window(), 10 * MSS);
        assert!(!cc.in_slow_start());
        // PRR's exit: cwnd = ssthresh.
        cc.on_fast_retransmit(T, 10 * MSS);
        cc.on_prr_recovery_end();
        assert_eq!(cc.window(), 5 * MSS);
    }

    #[test]
    fn full_ack_with_little_in_flight_avoids_a_burst() {
        let mut cc = NewReno::new(MSS);
        cc.on_fast_retransmit(T, 30 * MSS);
        assert_eq!(cc.ssthresh(), 15 * MSS);
        cc.on_recovery_end(2 * MSS);
        assert_eq!(cc.window(), 3 * MSS);
        // ssthresh is still 15 segments, so the window slow-starts back up to it.
        assert!(cc.in_slow_start());
        cc.on_recovery_end(0);
        assert_eq!(
            cc.window(),
            2 * MSS,
            "FlightSize is taken as at least one SMSS"
        );
    }

    #[test]
    fn a_spurious_fast_retransmit_is_undone() {
        let mut cc = NewReno::new(MSS);
        ack_segments(&mut cc, 10); // cwnd 20 segments
        cc.on_fast_retransmit(T, 20 * MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        cc.on_prr_recovery_end();
        assert_eq!(cc.window(), 10 * MSS);
        cc.on_spurious_fast_retransmit();
        assert_eq!((cc.window(), cc.ssthresh()), (20 * MSS, usize::MAX));
    }

    #[test]
    fn ssthresh_floor_is_two_segments() {
        let mut cc = NewReno::new(MSS);
        cc.on_fast_retransmit(T, MSS);
        assert_eq!(cc.ssthresh(), 2 * MSS);
        assert_eq!(cc.window(), 5 * MSS);
        let mut cc = NewReno::new(MSS);
        cc.on_rto(T, Some(0));
        assert_eq!(cc.ssthresh(), 2 * MSS);
        assert_eq!(cc.window(), MSS);
    }

    #[test]
    fn rto_sets_loss_window_and_repeated_rto_holds_ssthresh() {
        let mut cc = NewReno::new(MSS);
        ack_segments(&mut cc, 30); // cwnd 40 segments
        cc.on_rto(T, Some(40 * MSS));
        assert_eq!(cc.ssthresh(), 20 * MSS);
        assert_eq!(cc.window(), MSS);
        // The retransmission times out again before anything is acknowledged.
        cc.on_rto(T, Some(40 * MSS));
        assert_eq!(
            cc.ssthresh(),
            20 * MSS,
            "RFC 5681 §3.1: ssthresh held constant"
        );
        assert_eq!(cc.window(), MSS);
        // Slow start back up: 1, 2, 4, 8, 16 segments, then stop at ssthresh.
        ack_segments(&mut cc, 1);
        assert_eq!(cc.window(), 2 * MSS);
        ack_segments(&mut cc, 2);
        assert_eq!(cc.window(), 4 * MSS);
        ack_segments(&mut cc, 4 + 8);
        assert_eq!(cc.window(), 16 * MSS);
        ack_segments(&mut cc, 16);
        assert_eq!(cc.window(), 20 * MSS);
        assert!(!cc.in_slow_start());
        // After new data was acknowledged, a later RTO halves again.
        cc.on_rto(T, Some(20 * MSS));
        assert_eq!(cc.ssthresh(), 10 * MSS);
    }

    #[test]
    fn set_mss_rescales_only_the_initial_window() {
        let mut cc = NewReno::new(536);
        assert_eq!(cc.window(), 5360);
        cc.set_mss(1460);
        assert_eq!(cc.window(), 14_600);
        cc.on_ack(T, 1460, 1460, None);
        assert_eq!(cc.window(), 16_060);
        cc.set_mss(1000);
        assert_eq!(cc.window(), 16_060, "a grown window is kept");
        cc.on_rto(T, Some(10_000));
        assert_eq!(cc.window(), 1000);
    }

    #[test]
    fn zero_mss_is_treated_as_one_byte() {
        let mut cc = NewReno::new(0);
        assert_eq!(cc.window(), 10);
        cc.set_mss(0);
        cc.on_rto(T, Some(0));
        assert_eq!(cc.window(), 1);
        assert_eq!(cc.ssthresh(), 2);
    }

    #[test]
    fn huge_mss_saturates() {
        let mut cc = NewReno::new(usize::MAX);
        cc.on_ack(T, usize::MAX, 0, None);
        cc.on_fast_retransmit(T, usize::MAX);
        assert_eq!(cc.ssthresh(), usize::MAX);
        cc.on_rto(T, Some(0));
        assert_eq!(cc.window(), usize::MAX);
    }

    #[test]
    fn huge_values_saturate() {
        let mut cc = NewReno::new(usize::MAX / 4);
        cc.on_ack(T, usize::MAX, usize::MAX, None);
        cc.on_fast_retransmit(T, usize::MAX);
        assert_eq!(cc.window(), usize::MAX);
        cc.on_recovery_end(usize::MAX);
        assert!(cc.window() <= cc.ssthresh());
    }
}
