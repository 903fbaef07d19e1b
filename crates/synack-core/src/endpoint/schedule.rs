//! Timers: one deadline per connection in a binary heap with lazy deletion (a moved deadline
//! pushes a new entry; the old one is skipped when it comes due, and the heap is rebuilt
//! once superseded entries outnumber live ones), plus the TIME-WAIT table's expiry queue.
//! Deadlines are recomputed once per connection touched ("stale"), not after every segment.

use std::cmp::Reverse;

use super::table::COMPACT_SLACK;
use super::{ConnectionHandle, Endpoint};
use crate::shrink::shrink_after_peak;
use crate::time::Instant;

impl Endpoint {
    /// Run every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        // The reminder to take more of our own packets (`poll_transmit` stopped after a burst
        // of them) is for a caller with nothing else due to come back; the next
        // `poll_transmit` carries on whether or not it is there. A caller whose device is
        // full does not call `poll_transmit` until the device has room, and a reminder that
        // stayed due would keep it running rounds for nothing until then.
        if self.loopback_due.is_some_and(|t| t <= now) {
            self.loopback_due = None;
        }
        self.time_wait.expire(now);
        self.expire_intercepts(now);
        self.expire_fragments(now);
        self.expire_path_mtus(now);
        self.schedule_stale();
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.connections.get_mut(&h) else {
                continue;
            };
            if slot.timer != Some(t) {
                continue; // superseded
            }
            slot.timer = None;
            slot.conn.handle_timeout(now);
            self.after(h);
        }
        shrink_after_peak(&mut self.timers, self.connections.len());
    }

    /// The next deadline at which [`Endpoint::handle_timeout`] should be called.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.schedule_stale();
        let tw = self.time_wait.next_expiry();
        // Drop superseded entries (lazy deletion) so the answer is exact.
        let mut conn = None;
        while let Some(&Reverse((t, h))) = self.timers.peek() {
            match self.connections.get(&h) {
                Some(slot) if slot.timer == Some(t) => {
                    conn = Some(t);
                    break;
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
        [
            conn,
            tw,
            self.next_intercept_expiry(),
            self.next_fragment_expiry(),
            self.loopback_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Bring the timer heap up to date for every connection whose deadline may have moved,
    /// so that a deadline asked for or run before its output is drained is still exact. The
    /// work is one recomputation per connection touched since the last call.
    pub(super) fn schedule_stale(&mut self) {
        let mut stale = std::mem::take(&mut self.stale);
        for h in stale.drain(..) {
            self.schedule(h);
        }
        // Keep the allocation for the next round, unless a peak has passed.
        shrink_after_peak(&mut stale, self.connections.len());
        self.stale = stale;
    }

    pub(super) fn schedule(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        if !slot.stale {
            // Scheduled since it was listed; its entry in the heap is current.
            return;
        }
        slot.stale = false;
        let t = slot.conn.poll_timeout();
        if t != slot.timer {
            slot.timer = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, h)));
                self.compact_timers();
            }
        }
    }

    /// Drop the superseded entries from the timer heap once they outnumber the live ones.
    ///
    /// Entries are deleted lazily: a connection whose deadline moves pushes a new entry and
    /// leaves the old one to be skipped when it comes due. Under churn that left every freed
    /// connection's entries in the heap until their own deadlines (a FIN-WAIT-2 or keepalive
    /// timer is a minute or hours away), so the heap grew with the connections served rather
    /// than the connections held. Each connection has at most one live entry, so rebuilding
    /// when the heap is twice the connection count keeps it O(live connections) at amortised
    /// O(1) per push.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.connections.len() + COMPACT_SLACK {
            return;
        }
        let connections = &self.connections;
        self.timers
            .retain(|&Reverse((t, h))| connections.get(&h).is_some_and(|s| s.timer == Some(t)));
        shrink_after_peak(&mut self.timers, self.connections.len());
    }
}
