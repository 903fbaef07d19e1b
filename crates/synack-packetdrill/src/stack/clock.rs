//! Virtual time: the clock only moves when packetdrill sleeps, spins or waits for a packet,
//! stopping at each deadline on the way; and the blocking calls, which wait on the condition
//! variable until a change (a packet, a timer) gives them a result.

use std::cell::Cell;
use std::thread;
use std::time::Duration;

use synack_core::Instant;

use super::state::{lock, Guard, Shared, Stack};

/// packetdrill spins for the last 20 µs before an event (`MAX_SPIN_USECS`) after sleeping
/// until then; a virtual `usleep` sleeps those 20 µs too, so the spin ends at once.
const MAX_SPIN_USECS: u64 = 20;

/// Calls to `gettimeofday` in a row, with nothing else in between, after which the virtual
/// clock moves on by 1 µs (so that a spin for less than `MAX_SPIN_USECS` ends).
const SPIN_CALLS: u32 = 64;

/// The longest a blocked call waits in real time for the other thread before giving up
/// (a script that blocks forever fails instead of hanging).
const REAL_WAIT_LIMIT: Duration = Duration::from_secs(20);

thread_local! {
    /// The virtual time at which this thread's last blocking call completed: the
    /// `gettimeofday` that packetdrill makes right after the call returns reads it, even if the
    /// main thread has moved the clock on since.
    static END_TIME: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl Stack {
    /// The next virtual deadline: the endpoint's, or a blocked call's timeout.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        let now = self.now;
        let t = self.ep().poll_timeout();
        let w = self
            .wait_deadlines
            .iter()
            .copied()
            .filter(|&d| d > now)
            .min();
        match (t, w) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Move the clock to `t` (never backwards) and run the timers due.
    fn step_to(&mut self, t: Instant) {
        if t > self.now {
            self.now = t;
        }
        let now = self.now;
        self.ep().handle_timeout(now);
        self.drain();
    }
}

impl Shared {
    /// Something changed: blocked calls look again, and the clock waits until they have.
    pub(super) fn kick(&self, g: &mut Guard<'_>) {
        if g.blocked > 0 {
            g.gen += 1;
            g.pending = g.blocked;
        }
        self.cv.notify_all();
    }

    /// Wait (in real time, bounded) until every blocked call has looked at the last change,
    /// so that one woken by it completes at the virtual time it was woken.
    pub(super) fn barrier<'a>(&'a self, mut g: Guard<'a>) -> Guard<'a> {
        let limit = std::time::Instant::now() + Duration::from_secs(1);
        while g.pending > 0 && std::time::Instant::now() < limit {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(5))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        g.pending = 0;
        g
    }

    /// Move the virtual clock to `t`, stopping at each deadline on the way.
    pub(super) fn advance_to<'a>(&'a self, mut g: Guard<'a>, t: Instant) -> Guard<'a> {
        for _ in 0..1_000_000 {
            g = self.barrier(g);
            match g.next_deadline() {
                Some(d) if d <= t => {
                    let before = g.now;
                    g.step_to(d);
                    self.kick(&mut g);
                    if d <= before {
                        // A deadline that is already due and changed nothing: go on.
                        break;
                    }
                }
                _ => break,
            }
        }
        g.step_to(t);
        self.kick(&mut g);
        self.barrier(g)
    }

    /// Block until `ready` gives a result, or the virtual `deadline` passes (`None`). The
    /// main thread drives the clock itself instead of waiting for it.
    pub(super) fn block<'a, R>(
        &'a self,
        mut g: Guard<'a>,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut Stack) -> Option<R>,
    ) -> (Guard<'a>, Option<R>) {
        if let Some(r) = ready(&mut g) {
            return (g, Some(r));
        }
        if thread::current().id() == g.main_thread {
            for _ in 0..100_000 {
                let next = g.next_deadline();
                let next = match (next, deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let Some(t) = next else {
                    return (g, None);
                };
                g = self.advance_to(g, t);
                if let Some(r) = ready(&mut g) {
                    return (g, Some(r));
                }
                if deadline.is_some_and(|d| g.now >= d) {
                    return (g, None);
                }
            }
            return (g, None);
        }
        g.blocked += 1;
        if let Some(d) = deadline {
            g.wait_deadlines.push(d);
        }
        let mut seen = g.gen;
        let limit = std::time::Instant::now() + REAL_WAIT_LIMIT;
        let result = loop {
            g = self
                .cv
                .wait_timeout(g, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
            let looked = g.gen != seen;
            if looked {
                seen = g.gen;
                g.pending = g.pending.saturating_sub(1);
            }
            if let Some(r) = ready(&mut g) {
                break Some(r);
            }
            if deadline.is_some_and(|d| g.now >= d) || std::time::Instant::now() > limit {
                break None;
            }
            if looked {
                self.cv.notify_all();
            }
        };
        g.blocked -= 1;
        if let Some(d) = deadline {
            if let Some(i) = g.wait_deadlines.iter().position(|&x| x == d) {
                g.wait_deadlines.swap_remove(i);
            }
        }
        END_TIME.with(|c| c.set(Some(g.now)));
        self.cv.notify_all();
        (g, result)
    }

    /// Virtual wall-clock time in microseconds since the Unix epoch.
    pub fn gettimeofday(&self) -> u64 {
        if let Some(t) = END_TIME.with(|c| c.take()) {
            let g = lock(&self.state);
            return g.wall_base_us + t.total_micros();
        }
        let mut g = lock(&self.state);
        g.spin_calls += 1;
        if g.spin_calls >= SPIN_CALLS && thread::current().id() == g.main_thread {
            g.spin_calls = 0;
            let t = g.now + Duration::from_micros(1);
            g = self.advance_to(g, t);
        }
        g.wall_base_us + g.now.total_micros()
    }

    /// Sleep `usec` of virtual time (plus the spin packetdrill does after).
    pub fn usleep(&self, usec: u64) {
        let g = self.lock();
        let t = g.now + Duration::from_micros(usec + MAX_SPIN_USECS);
        drop(self.advance_to(g, t));
    }
}
