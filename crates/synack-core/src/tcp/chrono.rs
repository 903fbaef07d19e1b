//! Where a sender's time goes, after Linux's `tcp_chrono_*` (the `tcpi_busy_time`,
//! `tcpi_rwnd_limited` and `tcpi_sndbuf_limited` of `TCP_INFO`): while it has data queued or
//! in flight, whether the peer's window, the send buffer, or neither held it back.

use std::time::Duration;

use crate::time::Instant;

/// What limits the sender, in Linux's order of interest: a condition starts counting only
/// over a less interesting one (`tcp_chrono_start`), and when it ends the clock falls back
/// to `Busy`, or stops if nothing is queued (`tcp_chrono_stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Limit {
    /// Nothing queued or in flight: no clock runs.
    Idle,
    /// Data queued or in flight, sent as fast as the congestion window allows.
    Busy,
    /// Data waits because the peer's window is full (Linux `TCP_CHRONO_RWND_LIMITED`).
    Rwnd,
    /// Everything queued is sent, within the congestion window, and the application waits
    /// for room in the send buffer (Linux `TCP_CHRONO_SNDBUF_LIMITED`).
    Sndbuf,
}

/// The running clock and what each condition has accumulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chrono {
    /// The condition counting now.
    pub limit: Limit,
    /// When it started.
    pub since: Instant,
    /// Time spent busy, rwnd-limited and sndbuf-limited, before `since`.
    pub totals: [Duration; 3],
}

impl Chrono {
    pub fn new(now: Instant) -> Self {
        Chrono {
            limit: Limit::Idle,
            since: now,
            totals: [Duration::ZERO; 3],
        }
    }

    /// Closes the running interval at `now` and starts counting `limit`.
    fn set(&mut self, now: Instant, limit: Limit) {
        if let Some(slot) = Self::slot(self.limit) {
            self.totals[slot] += now.saturating_duration_since(self.since);
        }
        self.limit = limit;
        self.since = now;
    }

    fn slot(limit: Limit) -> Option<usize> {
        match limit {
            Limit::Idle => None,
            Limit::Busy => Some(0),
            Limit::Rwnd => Some(1),
            Limit::Sndbuf => Some(2),
        }
    }

    /// `limit` began: it counts from now if it is more interesting than what counts now.
    pub fn start(&mut self, now: Instant, limit: Limit) {
        if limit > self.limit {
            self.set(now, limit);
        }
    }

    /// `limit` ended: back to `Busy` if it was what counted, or to `Idle` if nothing is
    /// queued (`queued` false).
    pub fn stop(&mut self, now: Instant, limit: Limit, queued: bool) {
        if !queued {
            if self.limit != Limit::Idle {
                self.set(now, Limit::Idle);
            }
        } else if limit == self.limit {
            self.set(now, Limit::Busy);
        }
    }

    /// Time spent in each condition up to `now`: (busy in total, rwnd-limited,
    /// sndbuf-limited). Linux's `tcpi_busy_time` is the sum of all three.
    pub fn report(&self, now: Instant) -> (Duration, Duration, Duration) {
        let mut t = self.totals;
        if let Some(slot) = Self::slot(self.limit) {
            t[slot] += now.saturating_duration_since(self.since);
        }
        (t[0] + t[1] + t[2], t[1], t[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn conditions_count_by_priority_and_fall_back_to_busy() {
        let mut c = Chrono::new(at(0));
        c.start(at(10), Limit::Busy);
        c.start(at(10), Limit::Rwnd);
        // A less interesting start changes nothing.
        c.start(at(50), Limit::Busy);
        c.stop(at(110), Limit::Rwnd, true);
        // Stopping what does not count changes nothing.
        c.stop(at(120), Limit::Sndbuf, true);
        c.start(at(130), Limit::Sndbuf);
        c.stop(at(150), Limit::Sndbuf, true);
        c.stop(at(170), Limit::Busy, false);
        assert_eq!(
            c.report(at(500)),
            (
                Duration::from_millis(160),
                Duration::from_millis(100),
                Duration::from_millis(20)
            )
        );
        assert_eq!(c.limit, Limit::Idle);
    }

    #[test]
    fn the_running_interval_counts_in_a_report() {
        let mut c = Chrono::new(at(0));
        c.start(at(10), Limit::Rwnd);
        assert_eq!(
            c.report(at(110)),
            (
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::ZERO
            )
        );
    }
}
