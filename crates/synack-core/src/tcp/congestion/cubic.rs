//! CUBIC (RFC 9438), with NewReno-style fast recovery, byte counting in slow start, and
//! Linux's delay-based slow-start exit (HyStart's delay detection, RFC 9406).
//!
//! CUBIC changes only two things relative to NewReno: how much the window shrinks on a
//! congestion event (by β = 0.7 instead of 1/2), and how it grows in congestion avoidance
//! (along a cubic curve of the *time* since the last congestion event, so that growth does not
//! depend on the RTT, plus a Reno-friendly floor). Slow start, the per-event rules inside fast
//! recovery and the loss window after a timeout stay those of RFC 5681 / RFC 6582, so the
//! connection's recovery logic drives this controller exactly as it drives [`NewReno`].
//!
//! The curve is computed in `f64`: a window in bytes and a time in seconds are both far inside
//! the range where `f64` is exact enough, and every conversion back to `usize` is clamped and
//! NaN-checked, so that no input (a huge window, a clock far in the future, or one that runs
//! backwards) can panic or poison the state.
//!
//! [`NewReno`]: super::NewReno

use std::time::Duration;

use super::{
    full_ack_window, inflated_window, initial_window, partial_ack_window, slow_start, Controller,
    ControllerFactory,
};
use crate::seq::SeqNumber;
use crate::time::Instant;

/// RFC 9438 §5: "C SHOULD be set to 0.4", in segments per second cubed.
const C: f64 = 0.4;

/// RFC 9438 §4.6: "β_cubic SHOULD be set to 0.7", as a fraction `BETA_NUM / BETA_DEN` so that
/// ssthresh is computed in integers.
const BETA_NUM: usize = 7;
const BETA_DEN: usize = 10;
const BETA: f64 = 0.7;

/// RFC 9438 §4.3: `α_cubic = 3 * (1 - β_cubic) / (1 + β_cubic)`, which makes CUBIC's average
/// window in the Reno-friendly region equal to Reno's (with β = 0.5, α = 1) "in terms of
/// average cwnd".
const ALPHA_CUBIC: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// HyStart watches slow start only from this window on (Linux's `hystart_low_window`, 16
/// segments; RFC 9406 §4.2's `HYSTART_LOW_WINDOW`).
const HYSTART_LOW_WINDOW: usize = 16;
/// RTT samples a round must have before its smallest is compared (Linux's
/// `HYSTART_MIN_SAMPLES`; RFC 9406's `N_RTT_SAMPLE`).
const HYSTART_MIN_SAMPLES: u32 = 8;
/// The delay increase that ends slow start is an eighth of the smallest RTT, within these
/// bounds (Linux's `HYSTART_DELAY_MIN`/`MAX`; RFC 9406 §4.2's `MIN_RTT_THRESH` and
/// `MAX_RTT_THRESH`).
const HYSTART_DELAY_MIN: Duration = Duration::from_millis(4);
const HYSTART_DELAY_MAX: Duration = Duration::from_millis(16);

/// Delay-based slow-start exit as Linux's CUBIC does it (`hystart_update` with
/// `HYSTART_DELAY`): per round trip (until SND.UNA passes the SND.NXT of the round's start),
/// the smallest RTT of its first samples; once that exceeds the connection's smallest RTT by
/// an eighth (clamped to 4 - 16 ms), queues are building: ssthresh = cwnd, and slow start
/// ends before a loss has to end it. Linux's ACK-train detection is not done (it misfires
/// when the RTT is a few dozen microseconds, as on a TUN).
#[derive(Debug, Clone, Copy)]
struct HyStart {
    /// The smallest RTT seen on the connection.
    delay_min: Option<Duration>,
    /// Slow start was ended this way; no more checks until a timeout resets it.
    found: bool,
    /// The round ends when SND.UNA passes this.
    round_end: Option<SeqNumber>,
    /// The smallest sample of the current round.
    round_min: Duration,
    /// Samples in the current round, up to `HYSTART_MIN_SAMPLES`.
    samples: u32,
}

impl HyStart {
    const fn new() -> HyStart {
        HyStart {
            delay_min: None,
            found: false,
            round_end: None,
            round_min: Duration::MAX,
            samples: 0,
        }
    }
}

/// The state of the current congestion-avoidance stage (RFC 9438 §4.2: the "epoch").
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// `t_epoch`: when this congestion-avoidance stage began.
    start: Instant,
    /// K in seconds: when the curve reaches its plateau `origin`.
    k: f64,
    /// The plateau of the curve in bytes: W_max, or for an epoch that starts above W_max (the
    /// first stage after a timeout, RFC 9438 §4.8), the window at the start of the epoch.
    origin: f64,
    /// W_est in bytes (RFC 9438 §4.3), the window Reno would have reached in this epoch.
    w_est: f64,
}

/// CUBIC congestion control (RFC 9438).
#[derive(Debug, Clone)]
pub struct Cubic {
    /// SMSS, never zero.
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// The fraction of a byte that congestion-avoidance increments have accumulated, in
    /// `[0, 1)`: per-ACK growth is often a few bytes and must not be lost to rounding.
    cwnd_frac: f64,
    /// W_max in bytes (RFC 9438 §4.2): the window just before the last reduction, as lowered by
    /// fast convergence (§4.7). `None` before the first congestion event.
    w_max: Option<f64>,
    /// `cwnd_prior` (RFC 9438 §4.6): the window when ssthresh was last set; α_cubic turns into
    /// 1 once W_est reaches it (§4.3).
    cwnd_prior: f64,
    /// The current congestion-avoidance epoch; `None` until the first ACK in congestion
    /// avoidance after a start, a reduction or a timeout.
    epoch: Option<Epoch>,
    /// The latest RTT sample, for the target at `t + RTT` (RFC 9438 §4.2).
    rtt: Duration,
    /// Nothing acknowledged yet: the window is the initial window and follows MSS changes.
    initial: bool,
    /// The retransmission timer fired and no new data has been acknowledged since.
    after_rto: bool,
    /// The next epoch is the first congestion-avoidance stage after a timeout (RFC 9438 §4.8:
    /// K = 0 and W_max = the window at its start).
    epoch_after_rto: bool,
    /// cwnd, ssthresh, W_max and cwnd_prior before the last fast retransmit, for its undo
    /// (RFC 9438 §4.9).
    prior: (usize, usize, Option<f64>, f64),
    /// Delay-based slow-start exit.
    hystart: HyStart,
}

impl Cubic {
    /// A controller with the initial window of RFC 6928 (ten segments) and an "arbitrarily
    /// high" initial ssthresh (RFC 5681 §3.1).
    pub fn new(mss: usize) -> Self {
        let mss = mss.max(1);
        Cubic {
            mss,
            cwnd: initial_window(mss),
            ssthresh: usize::MAX,
            cwnd_frac: 0.0,
            w_max: None,
            cwnd_prior: 0.0,
            epoch: None,
            rtt: Duration::ZERO,
            initial: true,
            after_rto: false,
            epoch_after_rto: false,
            prior: (0, 0, None, 0.0),
            hystart: HyStart::new(),
        }
    }

    /// Whether the window is in slow start (RFC 9438 §4.10 and RFC 5681 §3.1: slow start while
    /// cwnd < ssthresh; at equality we use congestion avoidance, as [`super::NewReno`] does).
    pub fn in_slow_start(&self) -> bool {
        self.cwnd < self.ssthresh
    }

    /// W_max in bytes, rounded down: the window the cubic curve plateaus at, or `None` before
    /// the first congestion event.
    pub fn w_max(&self) -> Option<usize> {
        self.w_max.map(to_bytes)
    }

    /// RFC 9438 §4.6: `ssthresh = flight_size * β_cubic`, and "ssthresh = max(ssthresh, 2)"
    /// segments. Computed as `flight / 10 * 7 + flight % 10 * 7 / 10` so that it cannot
    /// overflow for any `usize`.
    fn reduced_ssthresh(&self, flight: usize) -> usize {
        let reduced = (flight / BETA_DEN) * BETA_NUM + (flight % BETA_DEN) * BETA_NUM / BETA_DEN;
        reduced.max(self.mss.saturating_mul(2))
    }

    /// The congestion event common to a fast retransmit and a timeout: remember the window it
    /// happened at, apply fast convergence, and end the current epoch.
    fn on_congestion_event(&mut self, bytes_in_flight: usize) {
        let cwnd = self.cwnd as f64;
        self.cwnd_prior = cwnd;
        // RFC 9438 §4.7: "if cwnd < W_max and fast convergence enabled, further reduce W_max:
        // W_max = cwnd * (1 + β_cubic) / 2; otherwise, remember cwnd before reduction:
        // W_max = cwnd". A flow whose window peaked lower than last time is likely sharing the
        // link with a new flow, and releases bandwidth to it by aiming lower.
        self.w_max = Some(match self.w_max {
            Some(w_max) if cwnd < w_max => cwnd * (1.0 + BETA) / 2.0,
            _ => cwnd,
        });
        self.ssthresh = self.reduced_ssthresh(bytes_in_flight);
        self.epoch = None;
        self.cwnd_frac = 0.0;
    }

    /// Starts a congestion-avoidance epoch at `now` with the current window (RFC 9438 §4.2).
    fn start_epoch(&mut self, now: Instant) -> Epoch {
        let cwnd = self.cwnd as f64;
        let mss = self.mss as f64;
        let (k, origin) = match self.w_max {
            // RFC 9438 §4.2: "K = cubic_root((W_max - cwnd_epoch) / C)", in segments: the
            // time it takes the curve to climb from where this epoch starts back to W_max.
            Some(w_max) if !self.epoch_after_rto && cwnd < w_max => {
                (((w_max - cwnd) / mss / C).cbrt(), w_max)
            }
            // RFC 9438 §4.8: in "the first congestion avoidance stage after a timeout ... K is
            // set to 0, and W_max is set to the congestion window size at the beginning of the
            // current congestion avoidance stage". An epoch that starts at or above W_max (or
            // before any congestion event) has no concave part to climb either: it starts
            // on the convex side of a curve centred where it is.
            _ => {
                if self.epoch_after_rto {
                    self.w_max = Some(cwnd);
                }
                (0.0, cwnd)
            }
        };
        self.epoch_after_rto = false;
        let epoch = Epoch {
            start: now,
            k,
            origin,
            // RFC 9438 §4.3: W_est is set to cwnd_epoch at the start of the epoch.
            w_est: cwnd,
        };
        self.epoch = Some(epoch);
        epoch
    }

    /// `W_cubic(t) = C * (t - K)^3 + W_max` (RFC 9438 §4.2, Figure 1), in bytes, with `t` in
    /// seconds since the epoch began.
    fn w_cubic(&self, epoch: &Epoch, t: f64) -> f64 {
        let dt = t - epoch.k;
        C * (self.mss as f64) * dt * dt * dt + epoch.origin
    }

    /// Congestion avoidance for `acked` newly acknowledged bytes (RFC 9438 §4.2 to §4.5).
    fn congestion_avoidance(&mut self, now: Instant, acked: usize) {
        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.start_epoch(now),
        };
        let cwnd = self.cwnd as f64;
        let mss = self.mss as f64;
        let acked = acked as f64;
        // A clock that runs backwards gives t = 0, not a negative time.
        let t = (now - epoch.start).as_secs_f64();
        let rtt = self.rtt.as_secs_f64();

        // RFC 9438 §4.3: "W_est = W_est + α_cubic * segments_acked / cwnd" (in segments; times
        // SMSS in bytes), with α_cubic = 1 once "W_est >= cwnd_prior", since Reno's window
        // then grows by one segment per RTT as usual.
        let alpha = if epoch.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA_CUBIC
        };
        epoch.w_est += alpha * acked * mss / cwnd;
        self.epoch = Some(epoch);

        let next = if self.w_cubic(&epoch, t) < epoch.w_est {
            // RFC 9438 §4.3: "If W_cubic(t) is less than W_est ... CUBIC is in the
            // Reno-friendly region and cwnd SHOULD be set to W_est at each reception of a new
            // ACK": at small BDPs CUBIC is never slower than Reno.
            epoch.w_est.max(cwnd)
        } else {
            // RFC 9438 §4.2: the target is the curve one RTT ahead, kept within [cwnd,
            // 1.5 * cwnd] so that an ACK never reduces the window and the window never grows
            // by more than half in one RTT (the concave region §4.4 and convex region §4.5
            // differ only in which side of K t falls). `max`/`min` rather than `clamp`, which
            // panics on NaN bounds: cwnd >= 1 makes that impossible, but cheaply so.
            let w = self.w_cubic(&epoch, t + rtt);
            let target = w.max(cwnd).min(1.5 * cwnd);
            // "cwnd SHOULD be incremented by (target - cwnd) / cwnd for each received new
            // ACK" of one segment; for `acked` bytes that is (target - cwnd) * acked / cwnd.
            cwnd + (target - cwnd) * acked / cwnd
        };
        self.grow_to(next);
    }

    /// Moves cwnd up to `next` bytes (never down), carrying the fraction of a byte.
    fn grow_to(&mut self, next: f64) {
        let increment = next - self.cwnd as f64 + self.cwnd_frac;
        if increment.is_nan() || increment <= 0.0 {
            return;
        }
        let whole = increment.floor();
        self.cwnd_frac = increment - whole;
        self.cwnd = self.cwnd.saturating_add(to_bytes(whole));
        if self.cwnd == usize::MAX {
            self.cwnd_frac = 0.0;
        }
    }
}

/// A non-negative byte count from an `f64`: NaN and negatives give 0, values past `usize::MAX`
/// give `usize::MAX` (Rust's float-to-int `as` saturates).
fn to_bytes(x: f64) -> usize {
    if x.is_nan() || x <= 0.0 {
        0
    } else {
        x as usize
    }
}

impl Controller for Cubic {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_ack(
        &mut self,
        now: Instant,
        bytes_acked: usize,
        _bytes_in_flight: usize,
        rtt: Option<Duration>,
    ) {
        if let Some(rtt) = rtt {
            self.rtt = rtt;
        }
        if bytes_acked == 0 {
            return;
        }
        self.initial = false;
        self.after_rto = false;
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
        self.congestion_avoidance(now, acked);
    }

    fn on_fast_retransmit(&mut self, _now: Instant, bytes_in_flight: usize) {
        self.initial = false;
        self.prior = (self.cwnd, self.ssthresh, self.w_max, self.cwnd_prior);
        // RFC 9438 §4.6 and §4.7: W_max, fast convergence, ssthresh = max(flight * β, 2*SMSS).
        self.on_congestion_event(bytes_in_flight);
        // RFC 5681 §3.2 step 3, kept so that the connection's NewReno recovery (RFC 6582)
        // works unchanged: inflate by the three segments the duplicate ACKs say have left.
        self.cwnd = inflated_window(self.ssthresh, self.mss);
    }

    fn on_congestion_signal(&mut self, _now: Instant, cwnd: usize) {
        self.initial = false;
        // RFC 9438 §4.6 and §4.7 as for a loss (Linux's bictcp_recalc_ssthresh: W_max with
        // fast convergence, ssthresh = max(cwnd * β, 2), the epoch ends); the window stays.
        self.on_congestion_event(cwnd);
    }

    fn on_spurious_fast_retransmit(&mut self) {
        // RFC 9438 §4.9: back to the window, ssthresh and W_max from before the event, with
        // a new epoch from there.
        let (cwnd, ssthresh, w_max, cwnd_prior) = self.prior;
        self.cwnd = self.cwnd.max(cwnd);
        self.ssthresh = self.ssthresh.max(ssthresh);
        self.w_max = w_max;
        self.cwnd_prior = cwnd_prior;
        self.epoch = None;
        self.cwnd_frac = 0.0;
    }

    fn on_recovery_dup_ack(&mut self) {
        // RFC 5681 §3.2 step 4: one SMSS per further duplicate ACK.
        self.cwnd = self.cwnd.saturating_add(self.mss);
    }

    fn on_partial_ack(&mut self, bytes_acked: usize) {
        // RFC 6582 §3.2 step 5, as NewReno.
        self.cwnd = partial_ack_window(self.cwnd, bytes_acked, self.mss);
    }

    fn on_recovery_end(&mut self, bytes_in_flight: usize) {
        // RFC 6582 §3.2 step 3, option (1), as NewReno. The new congestion-avoidance epoch
        // starts at the next ACK (RFC 9438 §4.2: t_epoch is "the time at the beginning of the
        // current congestion avoidance stage").
        self.cwnd = full_ack_window(self.ssthresh, bytes_in_flight, self.mss);
        self.cwnd_frac = 0.0;
        self.epoch = None;
    }

    fn on_rtt_sample(&mut self, now: Instant, rtt: Duration, una: SeqNumber, nxt: SeqNumber) {
        // Linux's cubictcp_acked: no delay samples within a second of a congestion-avoidance
        // epoch's start (right after recovery), then the smallest RTT, then HyStart.
        if matches!(self.epoch, Some(e) if now - e.start < Duration::from_secs(1)) {
            return;
        }
        let rtt = rtt.max(Duration::from_micros(1));
        let watching = self.in_slow_start() && self.cwnd >= HYSTART_LOW_WINDOW * self.mss;
        let h = &mut self.hystart;
        let delay_min = match h.delay_min {
            Some(d) if d <= rtt => d,
            _ => {
                h.delay_min = Some(rtt);
                rtt
            }
        };
        if h.found || !watching {
            return;
        }
        // hystart_update: a new round once SND.UNA has passed the last round's end.
        if h.round_end.is_none_or(|end| una > end) {
            h.round_end = Some(nxt);
            h.round_min = Duration::MAX;
            h.samples = 0;
        }
        h.round_min = h.round_min.min(rtt);
        if h.samples < HYSTART_MIN_SAMPLES {
            h.samples += 1;
            return;
        }
        let thresh = (delay_min / 8).clamp(HYSTART_DELAY_MIN, HYSTART_DELAY_MAX);
        if h.round_min > delay_min + thresh {
            h.found = true;
            self.ssthresh = self.cwnd;
        }
    }

    fn on_rto(&mut self, _now: Instant, window: usize) {
        self.initial = false;
        // Linux resets HyStart when a timeout restarts slow start (bictcp_reset in
        // cubictcp_state): the next slow start may end by delay again.
        self.hystart = HyStart {
            delay_min: self.hystart.delay_min,
            ..HyStart::new()
        };
        // RFC 9438 §4.8: "CUBIC follows standard TCP to reduce cwnd [RFC5681] but sets
        // ssthresh using β_cubic (same as in Section 4.6)". As in NewReno, a timeout repeated
        // before anything new was acknowledged holds ssthresh (RFC 5681 §3.1) rather than
        // shrinking it again from a FlightSize that has not drained.
        if !self.after_rto {
            self.on_congestion_event(window);
        }
        self.after_rto = true;
        self.epoch_after_rto = true;
        self.epoch = None;
        self.cwnd_frac = 0.0;
        // RFC 5681 §3.1: after a timeout cwnd is the loss window, one full-sized segment.
        self.cwnd = self.mss;
    }

    fn on_window_validated(&mut self, _now: Instant, cwnd: usize, ssthresh: usize) {
        if cwnd != self.cwnd {
            self.initial = false;
        }
        self.cwnd = cwnd.max(self.mss);
        self.ssthresh = ssthresh;
        // A new congestion-avoidance epoch from the smaller window: the curve of the old one
        // was drawn from a window the flow no longer has (Linux keeps its epoch, but a
        // reduction ends one everywhere else here).
        self.epoch = None;
        self.cwnd_frac = 0.0;
    }

    fn set_mss(&mut self, mss: usize) {
        let mss = mss.max(1);
        self.mss = mss;
        if self.initial {
            self.cwnd = initial_window(mss);
        } else {
            self.cwnd = self.cwnd.max(mss);
        }
        // K is measured in segments of the old MSS: restart the epoch from the current window.
        self.epoch = None;
    }
}

/// Builds [`Cubic`] controllers.
#[derive(Debug, Clone, Copy, Default)]
pub struct CubicFactory;

impl ControllerFactory for CubicFactory {
    fn build(&self, _now: Instant, mss: usize) -> Box<dyn Controller> {
        Box::new(Cubic::new(mss))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSS: usize = 1000;
    const T: Instant = Instant::ZERO;
    const RTT_100MS: Duration = Duration::from_millis(100);

    /// W_cubic(t) in bytes for a plateau `w_max` and start `cwnd_epoch` (RFC 9438 §4.2),
    /// computed independently of the controller.
    fn expected_w_cubic(w_max: f64, cwnd_epoch: f64, t: f64) -> f64 {
        let k = ((w_max - cwnd_epoch) / MSS as f64 / 0.4).cbrt();
        0.4 * MSS as f64 * (t - k).powi(3) + w_max
    }

    /// A controller that has just left fast recovery after a loss at a window of `w_max`
    /// bytes, with `w_max` bytes in flight: cwnd = ssthresh = 0.7 * w_max.
    fn after_loss(w_max: usize) -> Cubic {
        let mut cc = Cubic::new(MSS);
        cc.cwnd = w_max;
        cc.initial = false;
        cc.on_fast_retransmit(T, w_max);
        cc.on_recovery_end(w_max);
        cc
    }

    /// Acknowledges one window per RTT, one segment per ACK, spread evenly over the RTT, from
    /// `start` for `rounds` rounds. Returns (seconds since start, cwnd) at each round's start.
    fn run_rounds(
        cc: &mut Cubic,
        start: Instant,
        rtt: Duration,
        rounds: usize,
    ) -> Vec<(f64, usize)> {
        let mut samples = Vec::with_capacity(rounds);
        let mut round_start = start;
        for _ in 0..rounds {
            samples.push(((round_start - start).as_secs_f64(), cc.window()));
            let acks = (cc.window() / MSS).max(1);
            for i in 0..acks {
                let at = round_start + rtt * (i as u32) / (acks as u32);
                cc.on_ack(at, MSS, cc.window(), Some(rtt));
            }
            round_start += rtt;
        }
        samples
    }

    // ---- Start, slow start and the factory ----

    #[test]
    fn initial_window_is_ten_segments_and_factory_builds_cubic() {
        let cc = Cubic::new(MSS);
        assert_eq!(cc.window(), 10 * MSS);
        assert_eq!(cc.ssthresh(), usize::MAX);
        assert!(cc.in_slow_start());
        assert_eq!(cc.w_max(), None);
        let boxed = CubicFactory.build(T, 1460);
        assert_eq!(boxed.window(), 14_600);
        assert!(format!("{boxed:?}").starts_with("Cubic"));
    }

    /// Slow start at 20 segments after a first round whose RTT was `first`; then a round of
    /// `n` samples of `rtt`, each acknowledging one segment of a round that ends at 40 000.
    fn hystart_round(first: Duration, rtt: Duration, n: usize) -> Cubic {
        let mut cc = Cubic::new(MSS);
        cc.on_rtt_sample(T, first, SeqNumber(10_000), SeqNumber(30_000));
        cc.on_ack(T, 10 * MSS, 0, None);
        assert_eq!(cc.window(), 20 * MSS);
        for i in 0..n {
            let una = SeqNumber(30_000 + (i as u32 + 1) * 1000);
            cc.on_rtt_sample(T, rtt, una, SeqNumber(50_000));
            if cc.in_slow_start() {
                cc.on_ack(T, MSS, 0, None);
            }
        }
        cc
    }

    #[test]
    fn hystart_ends_slow_start_when_a_rounds_rtt_rises_by_an_eighth() {
        // RFC 9406 / Linux's HYSTART_DELAY: min RTT 200 ms, then a round whose samples are
        // all 240 ms (more than 200 + 25 ms): after 8 samples the 9th ends slow start with
        // ssthresh = cwnd (cubic-hystart-delay-rtt-jumps-upward.pkt).
        let cc = hystart_round(Duration::from_millis(200), Duration::from_millis(240), 8);
        assert!(cc.in_slow_start(), "8 samples are not enough");
        let cc = hystart_round(Duration::from_millis(200), Duration::from_millis(240), 9);
        assert!(!cc.in_slow_start());
        assert_eq!(cc.ssthresh(), 28 * MSS, "ssthresh = cwnd when it fired");
    }

    #[test]
    fn hystart_ignores_jitter_below_its_floor_and_small_windows() {
        // A 100 µs path whose RTT jumps to 3 ms: below the 4 ms floor of the threshold (an
        // eighth of 100 µs would end slow start on any scheduling hiccup).
        let cc = hystart_round(Duration::from_micros(100), Duration::from_millis(3), 20);
        assert!(cc.in_slow_start());
        let cc = hystart_round(Duration::from_micros(100), Duration::from_millis(5), 20);
        assert!(!cc.in_slow_start());
        // Below 16 segments HyStart does not look.
        let mut cc = Cubic::new(MSS);
        cc.on_rtt_sample(T, Duration::from_millis(10), SeqNumber(1), SeqNumber(2));
        for i in 0..20u32 {
            cc.on_rtt_sample(T, Duration::from_secs(1), SeqNumber(2 + i), SeqNumber(100));
        }
        assert!(cc.in_slow_start());
    }

    #[test]
    fn slow_start_doubles_per_rtt_counting_bytes() {
        let mut cc = Cubic::new(MSS);
        for _ in 0..10 {
            cc.on_ack(T, MSS, 0, None);
        }
        assert_eq!(cc.window(), 20 * MSS);
        // A stretch ACK of five segments grows by all five, as Linux's tcp_slow_start.
        cc.on_ack(T, 5 * MSS, 0, None);
        assert_eq!(cc.window(), 25 * MSS);
        cc.on_ack(T, 0, 0, None);
        assert_eq!(cc.window(), 25 * MSS);
    }

    #[test]
    fn set_mss_rescales_only_the_initial_window() {
        let mut cc = Cubic::new(536);
        assert_eq!(cc.window(), 5360);
        cc.set_mss(1460);
        assert_eq!(cc.window(), 14_600);
        cc.on_ack(T, 1460, 0, None);
        cc.set_mss(1000);
        assert_eq!(cc.window(), 16_060);
    }

    // ---- Multiplicative decrease and fast recovery (RFC 9438 §4.6, RFC 6582) ----

    #[test]
    fn fast_retransmit_reduces_by_beta_and_inflates() {
        let mut cc = Cubic::new(MSS);
        cc.cwnd = 100 * MSS;
        cc.initial = false;
        cc.on_fast_retransmit(T, 100 * MSS);
        assert_eq!(cc.ssthresh(), 70 * MSS, "β_cubic = 0.7");
        assert_eq!(cc.window(), 73 * MSS, "ssthresh + 3*SMSS");
        assert_eq!(cc.w_max(), Some(100 * MSS));
        cc.on_recovery_dup_ack();
        cc.on_recovery_dup_ack();
        assert_eq!(cc.window(), 75 * MSS);
        cc.on_partial_ack(3 * MSS);
        assert_eq!(cc.window(), 73 * MSS);
        cc.on_partial_ack(500);
        assert_eq!(cc.window(), 73 * MSS - 500);
        cc.on_recovery_end(80 * MSS);
        assert_eq!(cc.window(), 70 * MSS);
        assert!(!cc.in_slow_start());
        // Little in flight at the full ACK: no burst, then slow start back to ssthresh.
        let mut cc = after_loss(100 * MSS);
        cc.on_fast_retransmit(T, 50 * MSS);
        cc.on_recovery_end(2 * MSS);
        assert_eq!(cc.window(), 3 * MSS);
        assert!(cc.in_slow_start());
    }

    #[test]
    fn ssthresh_floor_and_no_overflow_in_beta() {
        let mut cc = Cubic::new(MSS);
        cc.on_fast_retransmit(T, MSS);
        assert_eq!(cc.ssthresh(), 2 * MSS);
        assert_eq!(cc.reduced_ssthresh(usize::MAX), usize::MAX / 10 * 7 + 3);
        assert_eq!(cc.reduced_ssthresh(1_000_009), 700_006);
        let mut cc = Cubic::new(MSS);
        cc.on_partial_ack(usize::MAX);
        assert_eq!(cc.window(), MSS, "never below one segment");
    }

    // ---- The cubic curve (RFC 9438 §4.2, §4.4, §4.5) ----

    #[test]
    fn k_matches_the_formula() {
        let mut cc = after_loss(1000 * MSS);
        assert_eq!(cc.window(), 700 * MSS);
        let start = Instant::from_secs(5);
        cc.on_ack(start, MSS, cc.window(), Some(RTT_100MS));
        let epoch = cc.epoch.expect("congestion avoidance started an epoch");
        // K = cbrt((W_max - cwnd_epoch) / C) = cbrt(300 / 0.4) = cbrt(750) ≈ 9.0856 s.
        assert!((epoch.k - 750f64.cbrt()).abs() < 1e-9, "K = {}", epoch.k);
        assert!((epoch.k - 9.0856).abs() < 1e-4);
        assert_eq!(epoch.start, start);
        assert_eq!(epoch.origin, 1_000_000.0);
        // Another starting point: W_max = 50 segments, cwnd_epoch = 35: K = cbrt(37.5).
        let mut cc = after_loss(50 * MSS);
        cc.on_ack(T, MSS, 0, None);
        let k = cc.epoch.map(|e| e.k).unwrap_or(f64::NAN);
        assert!((k - 37.5f64.cbrt()).abs() < 1e-9);
    }

    #[test]
    fn window_follows_w_cubic_after_a_loss() {
        let w_max = 1000 * MSS;
        let mut cc = after_loss(w_max);
        let start = Instant::from_secs(1);
        let samples = run_rounds(&mut cc, start, RTT_100MS, 150);
        let mut checked = 0;
        for &(t, cwnd) in &samples {
            // Check at 1, 2, 4, 6, 8, K, 10, 12 and 14 seconds.
            let at = [1.0, 2.0, 4.0, 6.0, 8.0, 750f64.cbrt(), 10.0, 12.0, 14.0];
            if !at.iter().any(|&a| (t - a).abs() < 0.05) {
                continue;
            }
            checked += 1;
            let want = expected_w_cubic(w_max as f64, 700_000.0, t);
            let err = (cwnd as f64 - want).abs() / want;
            assert!(err < 0.002, "t = {t:.2}: cwnd {cwnd} vs W_cubic {want:.0}");
        }
        assert_eq!(checked, 9);
    }

    #[test]
    fn concave_then_plateau_then_convex() {
        let w_max = 1000 * MSS;
        let mut cc = after_loss(w_max);
        let samples = run_rounds(&mut cc, T, RTT_100MS, 160);
        let growth = |i: usize| samples[i + 10].1 - samples[i].1;
        // Concave (§4.4): fast at first, slowing towards W_max.
        assert!(growth(0) > 4 * growth(60));
        // Plateau around K ≈ 9.1 s: about W_max, growing slowly.
        let (_, at_k) = samples[91];
        assert!(
            (at_k as f64 - w_max as f64).abs() < 0.005 * w_max as f64,
            "{at_k}"
        );
        assert!(growth(86) < 2 * MSS);
        // Convex (§4.5): past K the window leaves W_max behind, accelerating.
        assert!(samples[150].1 > w_max);
        assert!(growth(140) > 4 * growth(100));
    }

    #[test]
    fn growth_is_monotone_without_losses() {
        let mut cc = after_loss(500 * MSS);
        let mut last = cc.window();
        let mut now = Instant::from_secs(3);
        for i in 0..200_000u64 {
            // Irregular ACK sizes and spacing.
            let acked = 200 + (i * 7919 % 2800) as usize;
            now += Duration::from_micros(50 + i * 31 % 400);
            cc.on_ack(
                now,
                acked,
                cc.window(),
                Some(Duration::from_millis(20 + i % 60)),
            );
            assert!(cc.window() >= last, "shrank at ACK {i}");
            last = cc.window();
        }
        assert!(last > 500 * MSS, "grew past W_max: {last}");
    }

    #[test]
    fn target_is_capped_at_one_and_a_half_windows_per_rtt() {
        let mut cc = after_loss(100 * MSS);
        cc.on_ack(T, MSS, 0, Some(RTT_100MS));
        let before = cc.window();
        // Long after the epoch began the curve is far above cwnd; one ACK of one segment may
        // add at most (1.5 cwnd - cwnd) / cwnd segments = half a segment.
        cc.on_ack(Instant::from_secs(3600), MSS, 0, Some(RTT_100MS));
        assert!(cc.window() - before <= MSS / 2, "{}", cc.window() - before);
        assert!(cc.window() - before >= MSS / 2 - 1);
    }

    #[test]
    fn rtt_moves_the_target_one_rtt_ahead() {
        // The same ACK at the same time grows more with a longer RTT in the convex region.
        let mut short = after_loss(100 * MSS);
        let mut long = short.clone();
        short.on_ack(T, MSS, 0, Some(Duration::from_millis(1)));
        long.on_ack(T, MSS, 0, Some(Duration::from_millis(1)));
        let t = Instant::from_secs(5); // K = cbrt(75) ≈ 4.2 s
        short.on_ack(t, 10 * MSS, 0, Some(Duration::from_millis(1)));
        long.on_ack(t, 10 * MSS, 0, Some(Duration::from_millis(500)));
        assert!(long.window() > short.window());
        // A missing sample keeps the latest one.
        let mut kept = long.clone();
        kept.on_ack(t, MSS, 0, None);
        assert_eq!(kept.rtt, Duration::from_millis(500));
    }

    // ---- Reno-friendly region (RFC 9438 §4.3) ----

    #[test]
    fn reno_friendly_region_dominates_at_small_bdp() {
        // W_max = 20 segments, RTT = 10 ms: Reno's estimate outruns the cubic curve.
        let mut cc = after_loss(20 * MSS);
        let rtt = Duration::from_millis(10);
        let samples = run_rounds(&mut cc, T, rtt, 101);
        // α_cubic = 3 * 0.3 / 1.7 ≈ 0.53 segment per RTT until W_est reaches cwnd_prior.
        let (t10, after_10) = samples[10];
        let reno_10 = 14.0 + 10.0 * ALPHA_CUBIC;
        assert!(
            (after_10 as f64 / MSS as f64 - reno_10).abs() < 0.6,
            "{after_10}"
        );
        assert!(after_10 as f64 > expected_w_cubic(20_000.0, 14_000.0, t10) + MSS as f64);
        // Then α = 1: one segment per RTT from about 11.3 RTTs on.
        let (t100, after_100) = samples[100];
        let reno_100 = 20.0 + (100.0 - 6.0 / ALPHA_CUBIC);
        assert!(
            (after_100 as f64 / MSS as f64 - reno_100).abs() < 2.0,
            "{after_100}"
        );
        assert!(after_100 as f64 > 3.0 * expected_w_cubic(20_000.0, 14_000.0, t100));
    }

    #[test]
    fn alpha_becomes_one_once_w_est_reaches_cwnd_prior() {
        assert!((ALPHA_CUBIC - 0.9 / 1.7).abs() < 1e-12);
        let mut cc = after_loss(20 * MSS);
        assert_eq!(cc.cwnd_prior, 20_000.0);
        run_rounds(&mut cc, T, Duration::from_millis(10), 30);
        let w_est = cc.epoch.map(|e| e.w_est).unwrap_or(0.0);
        // 30 rounds: 6 segments at α ≈ 0.53 (11.3 rounds), then 18.7 at α = 1.
        assert!((w_est / MSS as f64 - 38.7).abs() < 1.0, "{w_est}");
    }

    #[test]
    fn cubic_dominates_at_large_bdp() {
        let mut cc = after_loss(1000 * MSS);
        let samples = run_rounds(&mut cc, T, RTT_100MS, 20);
        let w_est = cc.epoch.map(|e| e.w_est).unwrap_or(0.0);
        // Reno would have grown about 20 * 0.53 segments; CUBIC grew by far more.
        assert!(w_est < 712.0 * MSS as f64);
        assert!(samples[19].1 > 800 * MSS);
    }

    // ---- Fast convergence (RFC 9438 §4.7) ----

    #[test]
    fn fast_convergence_lowers_w_max() {
        let mut cc = after_loss(1000 * MSS);
        run_rounds(&mut cc, T, RTT_100MS, 10);
        let cwnd = cc.window();
        assert!(cwnd < 1000 * MSS);
        cc.on_fast_retransmit(Instant::from_secs(1), cwnd);
        let want = cwnd as f64 * 0.85;
        let got = cc.w_max().unwrap_or(0) as f64;
        assert!((got - want).abs() <= 1.0, "W_max {got} vs {want}");
        assert_eq!(cc.ssthresh(), cwnd / 10 * 7 + cwnd % 10 * 7 / 10);
        // The next epoch aims at the lowered W_max.
        cc.on_recovery_end(cwnd);
        cc.on_ack(Instant::from_secs(2), MSS, 0, None);
        let epoch = cc.epoch.expect("epoch");
        assert!((epoch.origin - want).abs() < 1e-6);
        let k = ((epoch.origin - cc.ssthresh() as f64) / MSS as f64 / 0.4).cbrt();
        assert!((epoch.k - k).abs() < 1e-9);
    }

    #[test]
    fn no_fast_convergence_when_the_window_grew_past_w_max() {
        let mut cc = after_loss(100 * MSS);
        run_rounds(&mut cc, T, RTT_100MS, 80); // past K ≈ 4.2 s
        let cwnd = cc.window();
        assert!(cwnd > 100 * MSS);
        cc.on_fast_retransmit(Instant::from_secs(9), cwnd);
        assert_eq!(cc.w_max(), Some(cwnd));
    }

    // ---- Timeout (RFC 9438 §4.8) ----

    #[test]
    fn rto_sets_loss_window_and_beta_ssthresh() {
        let mut cc = Cubic::new(MSS);
        cc.cwnd = 100 * MSS;
        cc.initial = false;
        cc.on_rto(T, 100 * MSS);
        assert_eq!(cc.window(), MSS);
        assert_eq!(cc.ssthresh(), 70 * MSS);
        // A repeated timeout before any ACK holds ssthresh (RFC 5681 §3.1).
        cc.on_rto(T, 100 * MSS);
        assert_eq!(cc.ssthresh(), 70 * MSS);
        assert_eq!(cc.window(), MSS);
        // Slow start back up to ssthresh: 1, 2, 4, ... segments.
        cc.on_ack(T, MSS, 0, None);
        assert_eq!(cc.window(), 2 * MSS);
        // After new data was acknowledged, another timeout reduces again.
        cc.on_rto(T, 20 * MSS);
        assert_eq!(cc.ssthresh(), 14 * MSS);
    }

    #[test]
    fn first_epoch_after_rto_has_k_zero_and_w_max_at_its_start() {
        let mut cc = after_loss(100 * MSS);
        cc.on_rto(T, 70 * MSS);
        assert_eq!(cc.ssthresh(), 49 * MSS);
        // Slow start back to ssthresh.
        let mut now = Instant::from_secs(1);
        while cc.in_slow_start() {
            cc.on_ack(now, MSS, 0, Some(RTT_100MS));
            now += Duration::from_millis(1);
        }
        assert_eq!(cc.window(), 49 * MSS);
        cc.on_ack(now, MSS, 0, Some(RTT_100MS));
        let epoch = cc.epoch.expect("epoch");
        assert_eq!(epoch.k, 0.0);
        assert_eq!(epoch.origin, 49_000.0);
        assert_eq!(cc.w_max(), Some(49 * MSS));
        // Convex from the start: slow at first.
        let grown = cc.window() - 49 * MSS;
        assert!(grown < MSS, "{grown}");
    }

    // ---- Robustness ----

    #[test]
    fn huge_times_and_windows_do_not_overflow() {
        let mut cc = after_loss(1000 * MSS);
        cc.on_ack(T, MSS, 0, Some(Duration::MAX));
        cc.on_ack(
            Instant::from_micros(u64::MAX),
            usize::MAX,
            usize::MAX,
            Some(Duration::MAX),
        );
        assert!(cc.window() >= 700 * MSS);
        // The clock runs backwards: t = 0, no panic, no shrink.
        let before = cc.window();
        cc.on_ack(T, MSS, 0, None);
        assert!(cc.window() >= before);
        // A window near usize::MAX saturates.
        let mut cc = Cubic::new(MSS);
        cc.cwnd = usize::MAX - 10;
        cc.ssthresh = 1;
        cc.initial = false;
        for i in 0..100 {
            cc.on_ack(
                Instant::from_secs(i * 1000),
                usize::MAX,
                usize::MAX,
                Some(Duration::MAX),
            );
        }
        assert_eq!(cc.window(), usize::MAX);
        cc.on_fast_retransmit(T, usize::MAX);
        cc.on_recovery_dup_ack();
        cc.on_recovery_end(usize::MAX);
        assert!(cc.window() <= cc.ssthresh());
        // A huge MSS and a zero MSS.
        let mut cc = Cubic::new(usize::MAX);
        cc.on_ack(T, usize::MAX, 0, None);
        cc.on_fast_retransmit(T, usize::MAX);
        cc.on_rto(T, 0);
        assert_eq!(cc.window(), usize::MAX);
        let mut cc = Cubic::new(0);
        assert_eq!(cc.window(), 10);
        cc.on_rto(T, 0);
        assert_eq!((cc.window(), cc.ssthresh()), (1, 2));
    }

    #[test]
    fn deterministic() {
        let run = || {
            let mut cc = after_loss(300 * MSS);
            let mut trace = run_rounds(&mut cc, T, Duration::from_millis(37), 50);
            cc.on_fast_retransmit(Instant::from_secs(3), cc.window());
            cc.on_recovery_end(cc.window());
            trace.extend(run_rounds(&mut cc, Instant::from_secs(3), RTT_100MS, 30));
            trace
        };
        assert_eq!(run(), run());
    }

    proptest! {
        #[test]
        fn arbitrary_event_sequences_never_panic(
            mss in 0usize..70_000,
            events in proptest::collection::vec((0u8..7, any::<u32>(), any::<u64>()), 0..200),
        ) {
            let mut cc = Cubic::new(mss);
            for (kind, size, micros) in events {
                let now = Instant::from_micros(micros);
                let size = size as usize;
                let before = cc.window();
                match kind {
                    0 | 1 => {
                        cc.on_ack(now, size, size, Some(Duration::from_micros(micros % 10_000_000)));
                        prop_assert!(cc.window() >= before, "an ACK never shrinks cwnd");
                    }
                    2 => cc.on_fast_retransmit(now, size),
                    3 => cc.on_recovery_dup_ack(),
                    4 => cc.on_partial_ack(size),
                    5 => cc.on_recovery_end(size),
                    _ => cc.on_rto(now, size),
                }
                prop_assert!(cc.window() >= 1);
                prop_assert!(cc.ssthresh() >= 2 * mss.max(1));
                prop_assert!(cc.cwnd_frac >= 0.0 && cc.cwnd_frac < 1.0);
            }
        }
    }
}
