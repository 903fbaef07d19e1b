//! CUBIC (RFC 9438), with NewReno-style fast recovery and Appropriate Byte Counting in slow
//! start.
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

use super::{Controller, ControllerFactory};
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

/// RFC 6928 §2 / Linux `TCP_INIT_CWND`: ten segments, as in [`super::NewReno`].
const INITIAL_WINDOW_SEGMENTS: usize = 10;

/// RFC 3465 §2.2: slow start grows cwnd by at most L = 2*SMSS per ACK.
const ABC_LIMIT_SEGMENTS: usize = 2;

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
            // 1.5 * cwnd] so that a window is never reduced by an ACK and never more than
            // grows by half in one RTT (the concave region §4.4 and convex region §4.5
            // differ only in which side of K t falls).
            let w = self.w_cubic(&epoch, t + rtt);
            let target = w.clamp(cwnd, 1.5 * cwnd);
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

fn initial_window(mss: usize) -> usize {
    mss.saturating_mul(INITIAL_WINDOW_SEGMENTS)
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
            // RFC 9438 §4.10: below ssthresh CUBIC uses slow start; RFC 3465 §2.2 caps the
            // growth per ACK at L = 2*SMSS, and the bytes past ssthresh count towards
            // congestion avoidance, as in NewReno.
            let limit = bytes_acked.min(self.mss.saturating_mul(ABC_LIMIT_SEGMENTS));
            let room = self.ssthresh - self.cwnd;
            if limit < room {
                self.cwnd += limit;
                return;
            }
            self.cwnd = self.ssthresh;
            acked = bytes_acked - room.min(bytes_acked);
            if acked == 0 {
                return;
            }
        }
        self.congestion_avoidance(now, acked);
    }

    fn on_fast_retransmit(&mut self, _now: Instant, bytes_in_flight: usize) {
        self.initial = false;
        // RFC 9438 §4.6 and §4.7: W_max, fast convergence, ssthresh = max(flight * β, 2*SMSS).
        self.on_congestion_event(bytes_in_flight);
        // RFC 5681 §3.2 step 3, kept so that the connection's NewReno recovery (RFC 6582)
        // works unchanged: inflate by the three segments the duplicate ACKs say have left.
        self.cwnd = self.ssthresh.saturating_add(self.mss.saturating_mul(3));
    }

    fn on_recovery_dup_ack(&mut self) {
        // RFC 5681 §3.2 step 4: one SMSS per further duplicate ACK.
        self.cwnd = self.cwnd.saturating_add(self.mss);
    }

    fn on_partial_ack(&mut self, bytes_acked: usize) {
        // RFC 6582 §3.2 step 5: deflate by the amount acked, add back one SMSS if at least one
        // SMSS was acked; never below one segment.
        self.cwnd = self.cwnd.saturating_sub(bytes_acked);
        if bytes_acked >= self.mss {
            self.cwnd = self.cwnd.saturating_add(self.mss);
        }
        self.cwnd = self.cwnd.max(self.mss);
    }

    fn on_recovery_end(&mut self, bytes_in_flight: usize) {
        // RFC 6582 §3.2 step 3, option (1): cwnd = min(ssthresh, max(FlightSize, SMSS) + SMSS).
        // The new congestion-avoidance epoch starts at the next ACK (RFC 9438 §4.2: t_epoch is
        // "the time at the beginning of the current congestion avoidance stage").
        let flight = bytes_in_flight.max(self.mss).saturating_add(self.mss);
        self.cwnd = self.ssthresh.min(flight);
        self.cwnd_frac = 0.0;
        self.epoch = None;
    }

    fn on_rto(&mut self, _now: Instant, bytes_in_flight: usize) {
        self.initial = false;
        // RFC 9438 §4.8: "CUBIC follows standard TCP to reduce cwnd [RFC5681] but sets
        // ssthresh using β_cubic (same as in Section 4.6)". As in NewReno, a timeout repeated
        // before anything new was acknowledged holds ssthresh (RFC 5681 §3.1) rather than
        // shrinking it again from a FlightSize that has not drained.
        if !self.after_rto {
            self.on_congestion_event(bytes_in_flight);
        }
        self.after_rto = true;
        self.epoch_after_rto = true;
        self.epoch = None;
        self.cwnd_frac = 0.0;
        // RFC 5681 §3.1: after a timeout cwnd is the loss window, one full-sized segment.
        self.cwnd = self.mss;
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
