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
//! With [`Config::linux_cwnd_growth`] (the Linux profile) congestion avoidance is Linux's
//! instead: the same curve and Reno estimate in whole segments, with Linux's update rate and
//! caps (see `LinuxGrowth`), so that cwnd moves on the same ACKs as the kernel's.
//!
//! The curve is computed in `f64`: a window in bytes and a time in seconds are both far inside
//! the range where `f64` is exact enough, and every conversion back to `usize` is clamped and
//! NaN-checked, so that no input (a huge window, a clock far in the future, or one that runs
//! backwards) can panic or poison the state.
//!
//! [`NewReno`]: super::NewReno
//! [`Config::linux_cwnd_growth`]: crate::Config::linux_cwnd_growth

use std::time::Duration;

use super::{
    full_ack_window, inflated_window, initial_window, slow_start, Controller, ControllerFactory,
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

/// The tick of Linux's `jiffies` clock that its CUBIC reads (`CONFIG_HZ`; 250 is mainline's
/// default and the reference kernel's). [`LinuxGrowth`] measures time in these ticks.
const LINUX_HZ: u64 = 250;
/// Linux recomputes its growth step at most every `HZ / 32` ticks while cwnd is unchanged
/// (`bictcp_update`).
const LINUX_UPDATE_TICKS: u64 = LINUX_HZ / 32;
/// Linux's CUBIC keeps time in units of 1/1024 s (`BICTCP_HZ` = 10) ...
const LINUX_TIME_SHIFT: u32 = 10;
/// ... and C as `bic_scale * 10 / 1024` = 410/1024 ≈ 0.4 segments per second cubed
/// (`cube_rtt_scale`), RFC 9438 §5's C in fixed point.
const LINUX_CUBE_SCALE: u128 = 410;
/// The ACKed segments for which Linux's Reno estimate grows by one segment are
/// `cwnd * LINUX_RENO_STEP / 8` (`beta_scale` = 8 * (1024 + 717) / 3 / (1024 - 717) = 15,
/// that is RFC 9438 §4.3's 1 / α_cubic ≈ 1.89 windows per segment with β = 717/1024).
const LINUX_RENO_STEP: u64 = 15;
/// Linux's β: `beta` / `BICTCP_BETA_SCALE`, 717/1024 (RFC 9438 §4.6's 0.7 in fixed point).
const LINUX_BETA: usize = 717;
const LINUX_BETA_SCALE: usize = 1024;
/// Without a W_max (before the first loss, and after a timeout, which clears it) Linux lets
/// cwnd grow at least one segment per this many ACKed ("increase cwnd 5% per RTT").
const LINUX_UNKNOWN_BANDWIDTH_CNT: u64 = 20;

/// Congestion avoidance as Linux's CUBIC does it ([`Config::linux_cwnd_growth`]), in whole
/// segments: `bictcp_update` turns the cubic curve, the Reno estimate and the caps into
/// `cnt`, the segments to ACK for cwnd to grow by one, and `tcp_cong_avoid_ai` counts ACKed
/// segments against it in `snd_cwnd_cnt`. RFC 9438 §4.2 to §4.5 describe the same curve
/// per ACK in fractions of a segment; the differences that show on the wire are that Linux
/// recomputes `cnt` at most once a jiffy, and only every `HZ / 32` while cwnd is unchanged,
/// so that the Reno estimate (§4.3) lifts cwnd a few ACKs late, and that without a W_max
/// it grows at least 5 % per RTT.
///
/// [`Config::linux_cwnd_growth`]: crate::Config::linux_cwnd_growth
#[derive(Debug, Clone, Copy, Default)]
struct LinuxGrowth {
    /// `cnt`: segments to ACK per one-segment increase, at least 2.
    cnt: u64,
    /// `snd_cwnd_cnt`: segments ACKed towards the next increase.
    cwnd_cnt: u64,
    /// `last_cwnd` and `last_time` (ticks): when `cnt` was last computed, and for which cwnd.
    last_cwnd: u64,
    last_time: u64,
    /// `epoch_start` (ticks): the start of the congestion-avoidance epoch (RFC 9438 §4.2's
    /// t_epoch), `None` after a reduction.
    epoch_start: Option<u64>,
    /// `bic_K` in 1/1024 s and `bic_origin_point` in segments.
    k: u64,
    origin: u64,
    /// `ack_cnt` and `tcp_cwnd`: segments ACKed in the epoch not yet credited to the Reno
    /// estimate, and that estimate in segments (RFC 9438 §4.3's W_est).
    ack_cnt: u64,
    tcp_cwnd: u64,
}

/// Linux's `jiffies` at `now`.
fn ticks(now: Instant) -> u64 {
    now.total_micros() / (1_000_000 / LINUX_HZ)
}

impl LinuxGrowth {
    /// `bictcp_update`: the growth step `cnt` for a window of `cwnd` segments after `acked`
    /// more were ACKed, `w_max` segments being Linux's `last_max_cwnd` (0 for none) and
    /// `delay_min` the smallest RTT seen.
    fn update(&mut self, now: u64, cwnd: u64, acked: u64, w_max: u64, delay_min: Duration) {
        self.ack_cnt = self.ack_cnt.saturating_add(acked);
        let since = now.saturating_sub(self.last_time);
        if self.last_cwnd == cwnd && since <= LINUX_UPDATE_TICKS {
            return;
        }
        // At most once per tick; the Reno estimate still moves.
        if !(self.epoch_start.is_some() && since == 0) {
            self.last_cwnd = cwnd;
            self.last_time = now;
            self.cnt = self.cubic_cnt(now, cwnd, acked, w_max, delay_min);
        }
        // RFC 9438 §4.3, the Reno-friendly region: one segment more per cwnd * 15/8 ACKed,
        // and cwnd never slower than that estimate.
        let per_segment = (cwnd.saturating_mul(LINUX_RENO_STEP) >> 3).max(1);
        if self.ack_cnt > per_segment {
            let grown = (self.ack_cnt - 1) / per_segment;
            self.ack_cnt -= grown * per_segment;
            self.tcp_cwnd = self.tcp_cwnd.saturating_add(grown);
        }
        if self.tcp_cwnd > cwnd {
            self.cnt = self.cnt.min(cwnd / (self.tcp_cwnd - cwnd));
        }
        // RFC 9438 §4.2: never more than 1.5 * cwnd per RTT, one segment per two ACKed.
        self.cnt = self.cnt.max(2);
    }

    /// The cubic part of `bictcp_update`: starts the epoch if there is none, and returns
    /// cwnd / (W_cubic(t + RTT) - cwnd), the ACKs per segment of growth towards the curve.
    fn cubic_cnt(
        &mut self,
        now: u64,
        cwnd: u64,
        acked: u64,
        w_max: u64,
        delay_min: Duration,
    ) -> u64 {
        let start = match self.epoch_start {
            Some(start) => start,
            None => {
                self.epoch_start = Some(now);
                // RFC 9438 §4.3: W_est starts at cwnd_epoch.
                self.ack_cnt = acked;
                self.tcp_cwnd = cwnd;
                if w_max <= cwnd {
                    // RFC 9438 §4.8 (and an epoch that starts above W_max): K = 0.
                    self.k = 0;
                    self.origin = cwnd;
                } else {
                    // RFC 9438 §4.2: K = cbrt((W_max - cwnd_epoch) / C), in 1/1024 s.
                    let scaled =
                        ((w_max - cwnd) as f64) * ((1u64 << 40) as f64) / LINUX_CUBE_SCALE as f64;
                    self.k = to_bytes(scaled.cbrt()) as u64;
                    self.origin = w_max;
                }
                now
            }
        };
        // t + RTT (the smallest), in 1/1024 s; the RTT rounded up to a tick.
        let rtt_ticks = (delay_min.as_micros() as u64)
            .saturating_mul(LINUX_HZ)
            .div_ceil(1_000_000);
        let t = now.saturating_sub(start).saturating_add(rtt_ticks);
        let t = u64::try_from(u128::from(t) << LINUX_TIME_SHIFT).unwrap_or(u64::MAX) / LINUX_HZ;
        let offs = u128::from(t.abs_diff(self.k));
        // C * (t - K)^3 in segments, saturating far beyond any real window.
        let cube = offs
            .saturating_mul(offs)
            .saturating_mul(offs)
            .saturating_mul(LINUX_CUBE_SCALE)
            >> (10 + 3 * LINUX_TIME_SHIFT);
        let delta = u64::try_from(cube).unwrap_or(u64::MAX);
        let target = if t < self.k {
            self.origin.saturating_sub(delta)
        } else {
            self.origin.saturating_add(delta)
        };
        let mut cnt = if target > cwnd {
            cwnd / (target - cwnd)
        } else {
            // On or above the curve: a very small increment.
            cwnd.saturating_mul(100)
        };
        if w_max == 0 {
            cnt = cnt.min(LINUX_UNKNOWN_BANDWIDTH_CNT);
        }
        cnt
    }

    /// `tcp_cong_avoid_ai`: counts `acked` segments towards increases of one segment per
    /// `cnt` ACKed; returns the segments cwnd grows by.
    fn add(&mut self, acked: u64) -> u64 {
        let w = self.cnt.max(1);
        let mut grow = 0;
        // Credit earned at a larger step is spent at once.
        if self.cwnd_cnt >= w {
            self.cwnd_cnt = 0;
            grow = 1;
        }
        self.cwnd_cnt = self.cwnd_cnt.saturating_add(acked);
        if self.cwnd_cnt >= w {
            let more = self.cwnd_cnt / w;
            self.cwnd_cnt -= more * w;
            grow += more;
        }
        grow
    }
}

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
    /// The next epoch is the first congestion-avoidance stage after a timeout (RFC 9438 §4.8:
    /// K = 0 and W_max = the window at its start).
    epoch_after_rto: bool,
    /// cwnd, ssthresh, W_max and cwnd_prior before the last fast retransmit or timeout that
    /// reduced them, for its undo (RFC 9438 §4.9).
    prior: (usize, usize, Option<f64>, f64),
    /// Delay-based slow-start exit.
    hystart: HyStart,
    /// Congestion avoidance in whole segments as Linux's, instead of the per-ACK model of
    /// RFC 9438 (`Config::linux_cwnd_growth`). Boxed: a connection without it (the default
    /// configuration) pays one pointer for it, not the whole state.
    linux: Option<Box<LinuxGrowth>>,
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
            epoch_after_rto: false,
            prior: (0, 0, None, 0.0),
            hystart: HyStart::new(),
            linux: None,
        }
    }

    /// The epoch's start, whichever model grows the window.
    fn epoch_start(&self) -> Option<Instant> {
        match &self.linux {
            Some(l) => l
                .epoch_start
                .map(|t| Instant::from_micros(t.saturating_mul(1_000_000 / LINUX_HZ))),
            None => self.epoch.map(|e| e.start),
        }
    }

    /// Ends the congestion-avoidance epoch (of either model): the next ACK in congestion
    /// avoidance starts another from the window then.
    fn end_epoch(&mut self) {
        self.epoch = None;
        self.cwnd_frac = 0.0;
        if let Some(l) = &mut self.linux {
            l.epoch_start = None;
        }
    }

    /// Congestion avoidance as Linux's `cubictcp_cong_avoid` past slow start:
    /// `bictcp_update`, then `tcp_cong_avoid_ai`, for `acked` bytes counted in segments, a
    /// part of one as one (see `on_ack`).
    fn linux_congestion_avoidance(&mut self, now: Instant, acked: usize) {
        let mss = self.mss;
        let cwnd = (self.cwnd / mss) as u64;
        let w_max = self.w_max.map_or(0, |w| (to_bytes(w) / mss) as u64);
        let delay_min = self.hystart.delay_min.unwrap_or(Duration::ZERO);
        let Some(l) = &mut self.linux else {
            return;
        };
        let segments = acked.div_ceil(mss) as u64;
        if segments == 0 {
            return;
        }
        l.update(ticks(now), cwnd, segments, w_max, delay_min);
        let grow = usize::try_from(l.add(segments)).unwrap_or(usize::MAX);
        self.cwnd = self.cwnd.saturating_add(grow.saturating_mul(mss));
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
    ///
    /// With Linux's growth ([`Config::linux_cwnd_growth`]) in whole segments, as
    /// `cubictcp_recalc_ssthresh` counts them: `max(cwnd * 717 / 1024, 2)`, rounded down. Seven
    /// segments then leave four where 0.7 of the bytes would leave 4.9, and a slow start from
    /// one segment stops at four, not five.
    ///
    /// [`Config::linux_cwnd_growth`]: crate::Config::linux_cwnd_growth
    fn reduced_ssthresh(&self, flight: usize) -> usize {
        if self.linux.is_some() {
            let segments = flight / self.mss;
            let reduced = segments / LINUX_BETA_SCALE * LINUX_BETA
                + segments % LINUX_BETA_SCALE * LINUX_BETA / LINUX_BETA_SCALE;
            return reduced.max(2).saturating_mul(self.mss);
        }
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
        self.end_epoch();
        // Linux's tcp_init_cwnd_reduction and tcp_enter_loss start the count towards the
        // next increase afresh.
        if let Some(l) = &mut self.linux {
            l.cwnd_cnt = 0;
        }
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
        let mut acked = bytes_acked;
        if self.linux.is_some() {
            // Linux counts what an ACK delivered in packets (`tcp_slow_start` and
            // `cubictcp_cong_avoid` take `acked` segments): a short segment grows the window
            // as much as a full one (`idle-restart-judged-at-write.pkt`: the ACK of one
            // 500-byte segment takes cwnd from 40 to 41 segments in slow start).
            acked = acked.div_ceil(self.mss).saturating_mul(self.mss);
        }
        if self.in_slow_start() {
            // RFC 5681 §3.1 with byte counting, as Linux (RFC 9438 §4.10 for CUBIC).
            let (cwnd, left) = slow_start(self.cwnd, self.ssthresh, acked);
            self.cwnd = cwnd;
            if left == 0 {
                return;
            }
            acked = left;
        }
        if self.linux.is_some() {
            self.linux_congestion_avoidance(now, acked);
        } else {
            self.congestion_avoidance(now, acked);
        }
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
        self.end_epoch();
    }

    fn on_spurious_rto(&mut self) {
        self.on_spurious_fast_retransmit();
        // The timeout's own state ends with it: the next epoch is an ordinary one, and a
        // further timeout reduces again.
        self.epoch_after_rto = false;
    }

    fn on_recovery_end(&mut self, bytes_in_flight: usize) {
        // RFC 6582 §3.2 step 3, option (1), as NewReno. The new congestion-avoidance epoch
        // starts at the next ACK (RFC 9438 §4.2: t_epoch is "the time at the beginning of the
        // current congestion avoidance stage").
        self.cwnd = full_ack_window(self.ssthresh, bytes_in_flight, self.mss);
        self.end_epoch();
    }

    fn on_rtt_sample(&mut self, now: Instant, rtt: Duration, una: SeqNumber, nxt: SeqNumber) {
        // Linux's cubictcp_acked: no delay samples within a second of a congestion-avoidance
        // epoch's start (right after recovery), then the smallest RTT, then HyStart.
        if matches!(self.epoch_start(), Some(start) if now - start < Duration::from_secs(1)) {
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

    fn on_rto(&mut self, _now: Instant, window: Option<usize>) {
        self.initial = false;
        // Linux resets HyStart when a timeout restarts slow start (bictcp_reset in
        // cubictcp_state): the next slow start may end by delay again.
        self.hystart = HyStart {
            delay_min: self.hystart.delay_min,
            ..HyStart::new()
        };
        // RFC 9438 §4.8: "CUBIC follows standard TCP to reduce cwnd [RFC5681] but sets
        // ssthresh using β_cubic (same as in Section 4.6)". As in NewReno, a timeout repeated
        // before anything new was acknowledged holds ssthresh (RFC 5681 §3.1, `window` None)
        // rather than shrinking it again from a FlightSize that has not drained.
        if let Some(window) = window {
            // What the timeout reduces, for its undo should it prove spurious (RFC 9438 §4.9).
            self.prior = (self.cwnd, self.ssthresh, self.w_max, self.cwnd_prior);
            self.on_congestion_event(window);
        }
        self.epoch_after_rto = true;
        self.end_epoch();
        if self.linux.is_some() {
            // Linux's cubictcp_state on entering Loss (bictcp_reset) forgets the curve and
            // W_max (`last_max_cwnd`, set by the ssthresh hook just before, is cleared), so
            // that the growth after the timeout is capped at 5 % per RTT instead of
            // following RFC 9438 §4.8's W_max = cwnd at the epoch's start; tcp_enter_loss
            // also clears `snd_cwnd_cnt`.
            self.linux = Some(Box::default());
            self.w_max = None;
        }
        // RFC 5681 §3.1: after a timeout cwnd is the loss window, one full-sized segment.
        self.cwnd = self.mss;
    }

    /// The time the flow sent nothing is no time on the curve: the epoch's start moves past
    /// it, never beyond now (Linux's `cubictcp_cwnd_event`, since "tcp_cubic: do not
    /// produce dangerous cwnd inflation (1.5 x RTT) after few seconds of idle time"; RFC 9438
    /// §5.8 on application-limited flows). Without this, W_cubic(t) after a pause of seconds
    /// lies far above cwnd, and the window grows by half every RTT, past W_max, until it
    /// meets losses.
    fn on_transmit_start(&mut self, now: Instant, last_sent: Instant) {
        if let Some(l) = &mut self.linux {
            if let Some(start) = l.epoch_start {
                // In ticks, as Linux's jiffies.
                let idle = ticks(now).saturating_sub(ticks(last_sent));
                l.epoch_start = Some(start.saturating_add(idle).min(ticks(now)));
            }
        }
        if let Some(epoch) = &mut self.epoch {
            epoch.start = (epoch.start + (now - last_sent)).min(now);
        }
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
        self.end_epoch();
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
        if let Some(l) = &mut self.linux {
            l.epoch_start = None;
        }
    }

    fn set_linux_growth(&mut self, on: bool) {
        if on != self.linux.is_some() {
            self.linux = on.then(Box::default);
            self.end_epoch();
        }
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
        cc.on_rto(T, Some(100 * MSS));
        assert_eq!(cc.window(), MSS);
        assert_eq!(cc.ssthresh(), 70 * MSS);
        // A repeated timeout before any ACK holds ssthresh (RFC 5681 §3.1).
        cc.on_rto(T, Some(100 * MSS));
        assert_eq!(cc.ssthresh(), 70 * MSS);
        assert_eq!(cc.window(), MSS);
        // Slow start back up to ssthresh: 1, 2, 4, ... segments.
        cc.on_ack(T, MSS, 0, None);
        assert_eq!(cc.window(), 2 * MSS);
        // After new data was acknowledged, another timeout reduces again.
        cc.on_rto(T, Some(20 * MSS));
        assert_eq!(cc.ssthresh(), 14 * MSS);
    }

    #[test]
    fn first_epoch_after_rto_has_k_zero_and_w_max_at_its_start() {
        let mut cc = after_loss(100 * MSS);
        cc.on_rto(T, Some(70 * MSS));
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

    // ---- Linux's growth in segments (Config::linux_cwnd_growth) ----

    /// A controller growing as Linux's, whose smallest RTT is `rtt`.
    fn linux(rtt: Duration) -> Cubic {
        let mut cc = Cubic::new(MSS);
        cc.set_linux_growth(true);
        cc.on_rtt_sample(T, rtt, SeqNumber(1), SeqNumber(2));
        cc
    }

    /// The ACK spacing of cubic-rto-ss-ca-cwnd-bump.pkt in congestion avoidance, in ms after
    /// the previous ACK: a flight of seven segments every 100 ms, ACKed 2 ms apart.
    const BUMP_GAPS: [u64; 15] = [0, 98, 2, 2, 2, 2, 2, 2, 98, 2, 2, 2, 2, 2, 98];

    /// RFC 9438 §4.8 / Linux's tcp_enter_loss at cwnd 10, then slow start to ssthresh = 7
    /// (one segment per ACK, as in the script); returns the controller and the time of the
    /// last ACK.
    fn rto_then_slow_start(mut cc: Cubic) -> (Cubic, Instant) {
        cc.cwnd = 10 * MSS;
        cc.initial = false;
        let mut now = Instant::from_millis(1000);
        cc.on_rto(now, Some(10 * MSS));
        assert_eq!((cc.window(), cc.ssthresh()), (MSS, 7 * MSS));
        for want in 2..=7 {
            now += Duration::from_millis(2);
            cc.on_ack(now, MSS, cc.window(), Some(RTT_100MS));
            assert_eq!(cc.window(), want * MSS);
        }
        assert!(!cc.in_slow_start());
        (cc, now)
    }

    #[test]
    fn linux_growth_reduces_ssthresh_in_whole_segments() {
        // cubictcp_recalc_ssthresh: max(cwnd * 717 / 1024, 2) packets, rounded down. Seven
        // segments leave four (0.7 of the bytes would be 4.9), whatever part of a segment
        // the flight holds beyond them.
        let mut cc = linux(RTT_100MS);
        for (segments, want) in [(7, 4), (10, 7), (3, 2), (1, 2), (100, 70), (2048, 1434)] {
            assert_eq!(cc.reduced_ssthresh(segments * MSS + MSS / 2), want * MSS);
        }
        cc.cwnd = 7 * MSS;
        cc.initial = false;
        cc.on_rto(T, Some(7 * MSS));
        assert_eq!(cc.ssthresh(), 4 * MSS);
        // No overflow for any flight.
        assert!(cc.reduced_ssthresh(usize::MAX) > usize::MAX / MSS / 2 * MSS);
    }

    #[test]
    fn linux_growth_after_a_timeout_bumps_cwnd_at_the_fifteenth_ack() {
        // cubic-rto-ss-ca-cwnd-bump.pkt: after the timeout W_max is forgotten (bictcp_reset)
        // and the curve from cwnd = 7 gives nothing; cnt is capped at 20, and the Reno
        // estimate (7 * 15 / 8 = 13 ACKs per segment) passes 7 at the 14th ACK, but cnt is
        // only recomputed at the next ACK more than HZ/32 after the last computation: the
        // 15th, 98 ms later, where cnt = 7 / (8 - 7) spends the 14 segments counted.
        let (mut cc, mut now) = rto_then_slow_start(linux(RTT_100MS));
        assert_eq!(cc.w_max(), None, "a timeout clears W_max");
        for (i, gap) in BUMP_GAPS.iter().enumerate() {
            now += Duration::from_millis(*gap);
            cc.on_ack(now, MSS, cc.window(), Some(RTT_100MS));
            let want = if i < 14 { 7 } else { 8 };
            assert_eq!(cc.window(), want * MSS, "after CA ACK {}", i + 1);
        }
        let l = cc.linux.clone().unwrap_or_default();
        assert_eq!((l.cnt, l.cwnd_cnt, l.tcp_cwnd, l.ack_cnt), (7, 1, 8, 2));
        // RFC 9438's per-ACK model moves cwnd up with W_est from the first ACK on, a
        // fraction of a segment at a time, and is within a tenth of a segment of 8 by the
        // 14th ACK, where the connection's sub-segment window sends one more packet.
        let (mut cc, mut now) = rto_then_slow_start(Cubic::new(MSS));
        for (i, gap) in BUMP_GAPS.iter().enumerate() {
            now += Duration::from_millis(*gap);
            cc.on_ack(now, MSS, cc.window(), Some(RTT_100MS));
            if i == 0 {
                assert!(cc.window() > 7 * MSS);
            }
            if i == 13 {
                assert!(cc.window() > 7 * MSS + 9 * MSS / 10, "{}", cc.window());
            }
        }
    }

    #[test]
    fn linux_growth_recomputes_at_most_every_hz_32_while_cwnd_is_unchanged() {
        // On the curve's plateau (K = 0, origin = cwnd), where cnt is 100 * cwnd and cwnd
        // stays put.
        let mut cc = linux(RTT_100MS);
        cc.cwnd = 100 * MSS;
        cc.ssthresh = 100 * MSS;
        cc.w_max = Some(100_000.0);
        cc.initial = false;
        let start = Instant::from_secs(2);
        cc.on_ack(start, MSS, 0, None);
        let first = cc.linux.as_ref().map(|l| l.last_time);
        assert_eq!(first, Some(ticks(start)));
        // HZ / 32 = 7 ticks of 4 ms: nothing recomputed for 28 ms ...
        for ms in 1..=28 {
            cc.on_ack(start + Duration::from_millis(ms), MSS, 0, None);
            assert_eq!(cc.linux.as_ref().map(|l| l.last_time), first, "at {ms} ms");
        }
        // ... then at the next tick.
        let later = start + Duration::from_millis(32);
        cc.on_ack(later, MSS, 0, None);
        assert_eq!(cc.linux.as_ref().map(|l| l.last_time), Some(ticks(later)));
        // A change of cwnd recomputes at the next tick, not within the same one.
        let mut cc = linux(RTT_100MS);
        cc.cwnd = 4 * MSS;
        cc.ssthresh = 4 * MSS;
        cc.initial = false;
        cc.on_ack(start, MSS, 0, None);
        cc.cwnd = 5 * MSS;
        cc.on_ack(start, MSS, 0, None);
        assert_eq!(cc.linux.as_ref().map(|l| l.last_cwnd), Some(4));
        cc.on_ack(start + Duration::from_millis(4), MSS, 0, None);
        assert_eq!(cc.linux.as_ref().map(|l| l.last_cwnd), Some(5));
    }

    #[test]
    fn linux_growth_without_w_max_is_at_least_five_percent_per_rtt() {
        // No loss yet (slow start ended by HyStart): the curve from cwnd gives almost
        // nothing at first, and Linux grows one segment per 20 ACKed instead.
        let mut cc = linux(RTT_100MS);
        cc.cwnd = 100 * MSS;
        cc.ssthresh = 100 * MSS;
        cc.initial = false;
        let samples = run_rounds(&mut cc, Instant::from_secs(1), RTT_100MS, 3);
        let grown: Vec<usize> = samples.windows(2).map(|w| w[1].1 - w[0].1).collect();
        assert_eq!(grown, [5 * MSS, 5 * MSS], "100 ACKs / 20");
        assert_eq!(cc.linux.as_ref().map(|l| l.cnt), Some(20));
    }

    #[test]
    fn linux_growth_follows_w_cubic_after_a_loss() {
        // RFC 9438 §4.2's curve, as Linux's fixed point (C = 410/1024) draws it.
        let w_max = 1000 * MSS;
        let mut cc = after_loss(w_max);
        cc.set_linux_growth(true);
        cc.on_rtt_sample(T, RTT_100MS, SeqNumber(1), SeqNumber(2));
        let samples = run_rounds(&mut cc, Instant::from_secs(1), RTT_100MS, 150);
        let mut checked = 0;
        for &(t, cwnd) in &samples {
            if ![1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0]
                .iter()
                .any(|&a| (t - a).abs() < 0.05)
            {
                continue;
            }
            checked += 1;
            let want = expected_w_cubic(w_max as f64, 700_000.0, t);
            let err = (cwnd as f64 - want).abs() / want;
            assert!(err < 0.01, "t = {t:.2}: cwnd {cwnd} vs W_cubic {want:.0}");
            assert_eq!(cwnd % MSS, 0, "whole segments");
        }
        assert_eq!(checked, 8);
        // K as Linux computes it, in 1/1024 s: cbrt(300 * 2^40 / 410) ≈ 9309 (9.09 s).
        let k = cc.linux.as_ref().map_or(0, |l| l.k);
        assert!((9300..9320).contains(&k), "{k}");
    }

    /// Seconds without sending are no time on the curve (Linux's `cubictcp_cwnd_event` on
    /// `CA_EVENT_TX_START`), in both growth models: after 30 s idle in congestion avoidance,
    /// the rounds that follow grow the window as the rounds before the pause would have, not
    /// by half per RTT towards a W_cubic(t) far above it, as they used to.
    #[test]
    fn idle_time_does_not_count_on_the_curve() {
        for linux in [false, true] {
            let w_max = 100 * MSS;
            let mut cc = after_loss(w_max);
            cc.set_linux_growth(linux);
            cc.on_rtt_sample(T, RTT_100MS, SeqNumber(1), SeqNumber(2));
            let start = Instant::from_secs(1);
            run_rounds(&mut cc, start, RTT_100MS, 5);
            let mut paused = cc.clone();
            let resume = start + RTT_100MS * 5;
            // Unpaused: five more rounds straight on.
            run_rounds(&mut cc, resume, RTT_100MS, 5);
            // Paused: 30 s without sending, the last data having left at `resume`.
            let later = resume + Duration::from_secs(30);
            paused.on_transmit_start(later, resume);
            run_rounds(&mut paused, later, RTT_100MS, 5);
            let (went_on, after_idle) = (cc.window(), paused.window());
            assert!(
                after_idle.abs_diff(went_on) <= 2 * MSS,
                "linux {linux}: {after_idle} after the pause, {went_on} without"
            );
            assert!(after_idle < w_max, "linux {linux}: {after_idle}");
        }
    }

    #[test]
    fn linux_growth_reno_estimate_grows_eight_fifteenths_of_a_segment_per_rtt() {
        // Small BDP: Reno's estimate dominates the curve (RFC 9438 §4.3); Linux keeps
        // α = 3 (1 - β) / (1 + β) ≈ 8/15 segment per RTT throughout (no switch to 1).
        let mut cc = after_loss(20 * MSS);
        cc.set_linux_growth(true);
        let rtt = Duration::from_millis(10);
        cc.on_rtt_sample(T, rtt, SeqNumber(1), SeqNumber(2));
        let samples = run_rounds(&mut cc, Instant::from_secs(1), rtt, 101);
        // A little less in practice: a segment of the estimate takes one ACK more than
        // cwnd * 15/8, and cwnd, which paces the ACKs, trails the estimate by up to a
        // segment until cnt pays it out.
        let after = samples[100].1 as f64 / MSS as f64;
        let per_rtt = (after - 14.0) / 100.0;
        assert!(
            per_rtt > 0.48 && per_rtt <= 8.0 / 15.0,
            "{after}: {per_rtt} per RTT"
        );
        let estimate = cc.linux.as_ref().map_or(0, |l| l.tcp_cwnd) as f64;
        assert!(
            after <= estimate && after >= estimate - 1.0,
            "{after} vs {estimate}"
        );
    }

    #[test]
    fn linux_growth_counts_partial_segments_and_resets_on_reductions() {
        let mut cc = linux(RTT_100MS);
        cc.cwnd = 10 * MSS;
        cc.ssthresh = 10 * MSS;
        cc.initial = false;
        // Half segments: each counts as one, as Linux counts packets.
        for i in 0..4 {
            cc.on_ack(Instant::from_millis(i), MSS / 2, 0, None);
        }
        assert_eq!(cc.linux.as_ref().map(|l| l.cwnd_cnt), Some(4));
        // And in slow start, one segment's growth for each.
        let mut ss = linux(RTT_100MS);
        ss.cwnd = 10 * MSS;
        ss.on_ack(T, MSS / 2, 0, None);
        assert_eq!(ss.window(), 11 * MSS);
        // A fast retransmit ends the epoch and the count (tcp_init_cwnd_reduction).
        cc.on_fast_retransmit(Instant::from_millis(6), 10 * MSS);
        let l = cc.linux.clone().unwrap_or_default();
        assert_eq!((l.epoch_start, l.cwnd_cnt), (None, 0));
        assert_eq!(cc.w_max(), Some(10 * MSS), "W_max kept for the next curve");
        // Turning it off goes back to RFC 9438's model.
        cc.set_linux_growth(false);
        assert!(cc.linux.is_none());
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
        cc.on_recovery_end(usize::MAX);
        assert!(cc.window() <= cc.ssthresh());
        // A huge MSS and a zero MSS.
        let mut cc = Cubic::new(usize::MAX);
        cc.on_ack(T, usize::MAX, 0, None);
        cc.on_fast_retransmit(T, usize::MAX);
        cc.on_rto(T, Some(0));
        assert_eq!(cc.window(), usize::MAX);
        let mut cc = Cubic::new(0);
        assert_eq!(cc.window(), 10);
        cc.on_rto(T, Some(0));
        assert_eq!((cc.window(), cc.ssthresh()), (1, 2));
    }

    #[test]
    fn linux_growth_with_huge_times_and_windows_does_not_overflow() {
        let mut cc = after_loss(1000 * MSS);
        cc.set_linux_growth(true);
        cc.on_rtt_sample(T, Duration::MAX, SeqNumber(1), SeqNumber(2));
        cc.on_ack(T, MSS, 0, None);
        cc.on_ack(Instant::from_micros(u64::MAX), usize::MAX, usize::MAX, None);
        assert!(cc.window() >= 700 * MSS);
        let before = cc.window();
        cc.on_ack(T, MSS, 0, None);
        assert!(cc.window() >= before, "a clock that runs backwards");
        let mut cc = Cubic::new(MSS);
        cc.set_linux_growth(true);
        cc.cwnd = usize::MAX - 10;
        cc.ssthresh = 1;
        cc.initial = false;
        cc.w_max = Some(f64::MAX);
        for i in 0..100 {
            cc.on_ack(Instant::from_secs(i * 1000), usize::MAX, 0, None);
        }
        assert!(cc.window() >= usize::MAX - 10);
        let mut cc = Cubic::new(usize::MAX);
        cc.set_linux_growth(true);
        cc.ssthresh = 1;
        cc.on_ack(T, usize::MAX, 0, None);
        assert_eq!(cc.window(), usize::MAX);
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
            linux in any::<bool>(),
            events in proptest::collection::vec((0u8..7, any::<u32>(), any::<u64>()), 0..200),
        ) {
            let mut cc = Cubic::new(mss);
            cc.set_linux_growth(linux);
            for (kind, size, micros) in events {
                let now = Instant::from_micros(micros);
                let size = size as usize;
                let before = cc.window();
                match kind {
                    0 | 1 => {
                        cc.on_ack(now, size, size, Some(Duration::from_micros(micros % 10_000_000)));
                        prop_assert!(cc.window() >= before, "an ACK never shrinks cwnd");
                    }
                    2 | 3 => cc.on_fast_retransmit(now, size),
                    4 => cc.on_prr_recovery_end(),
                    5 => cc.on_recovery_end(size),
                    _ => cc.on_rto(now, Some(size)),
                }
                prop_assert!(cc.window() >= 1);
                prop_assert!(cc.ssthresh() >= 2 * mss.max(1));
                prop_assert!(cc.cwnd_frac >= 0.0 && cc.cwnd_frac < 1.0);
            }
        }
    }
}
