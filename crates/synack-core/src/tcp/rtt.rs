//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! The estimator only does arithmetic on samples it is given. Taking samples is the caller's
//! job: from the ACK of a timed segment under Karn's rule (RFC 6298 §3), or from the echoed
//! timestamp of any ACK that advances SND.UNA (RFC 7323 §4.1), which is exempt from Karn's
//! rule because the echo says which transmission it answers.
//!
//! Arithmetic is on whole nanoseconds in `u128`, so that no sample, however absurd, can
//! overflow it; results are then saturated into a [`Duration`].

use std::time::Duration;

/// RFC 6298 §2: "G" is the clock granularity. The core's clock counts microseconds, but a
/// variance term below a millisecond would let the RTO collapse onto SRTT on a quiet LAN and
/// fire on the slightest jitter, so we use the 1 ms that Linux's jiffies-based clock gives it.
const GRANULARITY: Duration = Duration::from_millis(1);

/// RFC 6298 §2.3: K = 4.
const K: u128 = 4;

/// Smoothed RTT, RTT variance and the retransmission timeout of one connection.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// SRTT, or `None` before the first sample (RFC 6298 §2.1).
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The latest sample, unsmoothed.
    latest: Option<Duration>,
    /// The smallest sample seen.
    min: Option<Duration>,
    initial_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    /// The RTO the fields above give ([`RttEstimator::compute_rto`]), kept as Linux keeps
    /// `icsk_rto`: it is read on every segment sent and every ACK, and changes only with a
    /// sample or a fallback.
    rto: Duration,
}

/// The RTO before the first sample once a SYN or SYN-ACK has timed out (RFC 6298 §5.7; Linux
/// `TCP_TIMEOUT_FALLBACK`).
pub const FALLBACK_RTO: Duration = Duration::from_secs(3);

impl RttEstimator {
    /// An estimator with no samples yet, whose RTO is `initial_rto` (RFC 6298 §2.1 suggests
    /// 1 s) and is always kept within `[min_rto, max_rto]`. If `max_rto < min_rto`, the upper
    /// bound is raised to `min_rto`.
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        let mut est = RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            latest: None,
            min: None,
            initial_rto,
            min_rto,
            max_rto: max_rto.max(min_rto),
            rto: Duration::ZERO,
        };
        est.rto = est.compute_rto();
        est
    }

    /// RFC 6298 §5.7: a handshake whose SYN or SYN-ACK timed out gave no sample (Karn), and
    /// "the RTO MUST be re-initialized to 3 seconds when data transmission begins": until
    /// the first sample the RTO is `rto` ([`FALLBACK_RTO`]) if that is more than the initial
    /// one (Linux's `tcp_init_metrics`, `TCP_TIMEOUT_FALLBACK`).
    pub fn fall_back(&mut self, rto: Duration) {
        if self.srtt.is_none() {
            self.initial_rto = self.initial_rto.max(rto);
            self.rto = self.compute_rto();
        }
    }

    /// Feeds one RTT measurement `rtt`.
    ///
    /// RFC 6298 §2.2, first sample R: `SRTT <- R`, `RTTVAR <- R/2`.
    /// RFC 6298 §2.3, later samples R': `RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|`,
    /// then `SRTT <- (1 - alpha) * SRTT + alpha * R'`, with alpha = 1/8 and beta = 1/4. The
    /// order matters: RTTVAR uses the SRTT from before this sample.
    pub fn sample(&mut self, rtt: Duration) {
        self.latest = Some(rtt);
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let (s, r, v) = (nanos(srtt), nanos(rtt), nanos(self.rttvar));
                let err = s.abs_diff(r);
                self.rttvar = from_nanos((3 * v + err) / 4);
                self.srtt = Some(from_nanos((7 * s + r) / 8));
            }
        }
        self.rto = self.compute_rto();
    }

    /// The retransmission timeout.
    ///
    /// RFC 6298 §2.2/§2.3: `RTO <- SRTT + max(G, K * RTTVAR)`; before any sample, the
    /// initial RTO (§2.1). §2.4 puts a floor under it (RFC 6298 says 1 s); Linux puts its
    /// 200 ms floor (`tcp_rto_min`, the caller's `min_rto`) under the variance term rather
    /// than under the sum (`tcp_rtt_estimator` keeps `rttvar_us >= tcp_rto_min_us`, and
    /// `__tcp_set_rto` adds SRTT), so that the RTO is never within 200 ms of SRTT: a 100 ms
    /// path gets 300 ms, not 200 ms. We do as Linux does. §2.5 allows a ceiling of at least
    /// 60 s.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// [`RttEstimator::rto`] from SRTT, RTTVAR and the bounds.
    fn compute_rto(&self) -> Duration {
        let rto = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => {
                let var = (K * nanos(self.rttvar))
                    .max(nanos(GRANULARITY))
                    .max(nanos(self.min_rto));
                from_nanos(nanos(srtt).saturating_add(var))
            }
        };
        rto.clamp(self.min_rto, self.max_rto)
    }

    /// The smoothed RTT, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The RTT variation (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The most recent sample, unsmoothed.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// The smallest sample seen so far.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min
    }

    /// The floor under the RTO's variance term (Linux's `tcp_rto_min`, 200 ms).
    pub fn min_rto(&self) -> Duration {
        self.min_rto
    }

    /// The ceiling on every timeout (§2.5; Linux's `TCP_RTO_MAX`, 120 s).
    pub fn max_rto(&self) -> Duration {
        self.max_rto
    }

    /// The timeout after `backoff` consecutive expirations.
    ///
    /// RFC 6298 §5.5: "The host MUST set RTO <- RTO * 2 ("back off the timer")", and §2.5
    /// lets a maximum be applied. Computed as `rto() * 2^backoff`, saturating at `max_rto`
    /// for any `backoff`, however large.
    pub fn backed_off(&self, backoff: u32) -> Duration {
        // Not backed off, the RTO as it is: no 128-bit arithmetic for what the segment paths
        // ask for several times a segment (the delayed-ACK timer, the application-limited
        // rule, arming the retransmission timer).
        if backoff == 0 {
            return self.rto().min(self.max_rto);
        }
        let rto = nanos(self.rto());
        let scaled = 1u128
            .checked_shl(backoff)
            .and_then(|factor| rto.checked_mul(factor));
        match scaled {
            Some(n) => from_nanos(n).min(self.max_rto),
            None => self.max_rto,
        }
    }
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

/// A duration of `n` nanoseconds, saturating at [`Duration::MAX`].
fn from_nanos(n: u128) -> Duration {
    // Every real RTT fits in 64 bits of nanoseconds (584 years), where the division by 10^9
    // is a multiplication; a `u128` one is a call to `__udivti3` on every RTT sample.
    if let Ok(n) = u64::try_from(n) {
        return Duration::from_nanos(n);
    }
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(n / NANOS_PER_SEC) {
        // The remainder is below 10^9, so it fits a u32.
        Ok(secs) => Duration::new(secs, (n % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn est() -> RttEstimator {
        RttEstimator::new(ms(1000), ms(200), ms(120_000))
    }

    #[test]
    fn initial_rto_before_samples() {
        let e = est();
        assert_eq!(e.rto(), ms(1000));
        assert_eq!(e.srtt(), None);
        assert_eq!(e.rttvar(), Duration::ZERO);
        assert_eq!(e.latest(), None);
    }

    /// RFC 6298 §5.7: 3 s until the first sample once the handshake timed out; no effect
    /// once there is a sample, nor on a larger initial RTO.
    #[test]
    fn fall_back_after_a_handshake_timeout() {
        let mut e = est();
        e.fall_back(FALLBACK_RTO);
        assert_eq!(e.rto(), ms(3000));
        e.sample(ms(100));
        assert_eq!(e.rto(), ms(300));
        let mut sampled = est();
        sampled.sample(ms(100));
        sampled.fall_back(FALLBACK_RTO);
        assert_eq!(sampled.rto(), ms(300));
        let mut slow = RttEstimator::new(ms(5000), ms(200), ms(120_000));
        slow.fall_back(FALLBACK_RTO);
        assert_eq!(slow.rto(), ms(5000));
    }

    #[test]
    fn first_sample() {
        let mut e = est();
        e.sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), ms(50));
        // 100 + 4 * 50 = 300 ms.
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn second_and_third_samples_exact() {
        let mut e = est();
        e.sample(ms(100));
        e.sample(ms(200));
        // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 37.5 + 25 = 62.5 ms (old SRTT used).
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        // SRTT = 7/8 * 100 + 1/8 * 200 = 112.5 ms.
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        // RTO = 112.5 + 250 = 362.5 ms.
        assert_eq!(e.rto(), Duration::from_micros(362_500));

        e.sample(ms(50));
        // RTTVAR = 3/4 * 62.5 + 1/4 * 62.5 = 62.5 ms; SRTT = 7/8 * 112.5 + 6.25 = 104.6875 ms.
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        assert_eq!(e.srtt(), Some(Duration::from_nanos(104_687_500)));
        assert_eq!(e.latest(), Some(ms(50)));
        assert_eq!(e.min_rtt(), Some(ms(50)));
    }

    #[test]
    fn steady_samples_converge_and_hit_the_floor() {
        let mut e = est();
        for _ in 0..200 {
            e.sample(ms(10));
        }
        assert_eq!(e.srtt(), Some(ms(10)));
        // RTTVAR decays towards zero: SRTT plus the 200 ms floor of the variance term, as
        // Linux's 10 + 200 ms.
        assert!(e.rttvar() < Duration::from_micros(1));
        assert_eq!(e.rto(), ms(210));
    }

    #[test]
    fn granularity_bounds_variance_term() {
        // No floor, so G shows: a constant RTT gives SRTT + G once RTTVAR has decayed.
        let mut e = RttEstimator::new(ms(1000), Duration::ZERO, ms(60_000));
        for _ in 0..200 {
            e.sample(ms(300));
        }
        assert_eq!(e.rto(), ms(301));
    }

    #[test]
    fn rto_clamped_to_max() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        e.sample(Duration::from_secs(100));
        assert_eq!(e.rto(), ms(60_000));
    }

    #[test]
    fn initial_rto_is_clamped_too() {
        let e = RttEstimator::new(ms(10), ms(200), ms(60_000));
        assert_eq!(e.rto(), ms(200));
        let e = RttEstimator::new(ms(100_000), ms(200), ms(60_000));
        assert_eq!(e.rto(), ms(60_000));
    }

    #[test]
    fn inverted_bounds_do_not_panic() {
        let e = RttEstimator::new(ms(1000), ms(500), ms(100));
        assert_eq!(e.rto(), ms(500));
        assert_eq!(e.backed_off(3), ms(500));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let e = est();
        assert_eq!(e.backed_off(0), ms(1000));
        assert_eq!(e.backed_off(1), ms(2000));
        assert_eq!(e.backed_off(6), ms(64_000));
        assert_eq!(e.backed_off(7), ms(120_000));
        assert_eq!(e.backed_off(8), ms(120_000));
    }

    #[test]
    fn backoff_saturates_for_huge_counts() {
        let e = est();
        for b in [31, 32, 63, 64, 100, 127, 128, 129, u32::MAX] {
            assert_eq!(e.backed_off(b), ms(120_000), "backoff {b}");
        }
        let unbounded = RttEstimator::new(ms(1000), ms(200), Duration::MAX);
        assert_eq!(unbounded.backed_off(u32::MAX), Duration::MAX);
        assert_eq!(unbounded.backed_off(10), ms(1_024_000));
    }

    #[test]
    fn absurd_samples_do_not_overflow() {
        let mut e = RttEstimator::new(ms(1000), ms(200), Duration::MAX);
        e.sample(Duration::MAX);
        e.sample(Duration::ZERO);
        e.sample(Duration::MAX);
        assert!(e.srtt().is_some());
        assert_eq!(e.min_rtt(), Some(Duration::ZERO));
        let _ = e.rto();
        let _ = e.backed_off(5);
    }
}
