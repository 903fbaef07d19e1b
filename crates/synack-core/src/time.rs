//! Virtual time.
//!
//! The core never reads a clock: every input carries `now`. [`Instant`] is a plain count of
//! microseconds since an arbitrary origin chosen by the caller (the runtime uses the moment the
//! stack started, tests use zero), so that a whole simulated network is reproducible.

use core::fmt;
use core::num::NonZeroU64;
use core::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an origin chosen by the caller.
///
/// Held as the count plus one in a `NonZeroU64`, so that an `Option<Instant>` takes 8 bytes
/// rather than 16: a connection keeps more than a dozen optional deadlines. The last
/// microsecond of the range, `u64::MAX`, is therefore not representable; arithmetic
/// saturates one below it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(NonZeroU64);

/// The largest count of microseconds an [`Instant`] holds.
const MAX_MICROS: u64 = u64::MAX - 1;

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant::from_micros(0);

    /// An instant `micros` microseconds after the origin (saturating at `u64::MAX - 1`).
    pub const fn from_micros(micros: u64) -> Instant {
        let micros = if micros > MAX_MICROS {
            MAX_MICROS
        } else {
            micros
        };
        match NonZeroU64::new(micros + 1) {
            Some(n) => Instant(n),
            None => unreachable!(),
        }
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Instant {
        Instant::from_micros(millis.saturating_mul(1000))
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Instant {
        Instant::from_micros(secs.saturating_mul(1_000_000))
    }

    /// Microseconds since the origin.
    pub const fn total_micros(self) -> u64 {
        self.0.get() - 1
    }

    /// Milliseconds since the origin, rounded down.
    pub const fn total_millis(self) -> u64 {
        self.total_micros() / 1000
    }

    /// Whole seconds since the origin, rounded down.
    pub const fn total_secs(self) -> u64 {
        self.total_micros() / 1_000_000
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.get().saturating_sub(earlier.0.get()))
    }
}

impl Default for Instant {
    /// The origin.
    fn default() -> Instant {
        Instant::ZERO
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(self.total_micros().saturating_add(micros))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero, like [`Instant::saturating_duration_since`].
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.total_micros();
        write!(f, "{}.{:06}s", micros / 1_000_000, micros % 1_000_000)
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(1500);
        assert_eq!(t.total_micros(), 1_500_000);
        assert_eq!(t + Duration::from_millis(500), Instant::from_secs(2));
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::from_secs(1), Duration::from_millis(500));
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::MAX,
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(Instant::from_micros(u64::MAX).total_micros(), u64::MAX - 1);
    }

    #[test]
    fn an_optional_instant_takes_no_more_room_than_an_instant() {
        assert_eq!(std::mem::size_of::<Option<Instant>>(), 8);
        assert_eq!(Instant::default(), Instant::ZERO);
        assert_eq!(Instant::ZERO.total_micros(), 0);
        assert!(Instant::ZERO < Instant::from_micros(1));
    }
}
