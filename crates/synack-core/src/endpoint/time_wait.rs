//! Compact TIME-WAIT (RFC 9293 §3.6.1), after Linux's `inet_timewait_sock`.
//!
//! A connection that reaches TIME-WAIT after the application released it keeps no buffers,
//! congestion state or timers: only what it needs to answer a retransmitted FIN, to recognise
//! old duplicates and to judge a new SYN for the same 4-tuple (RFC 6191). That is a few dozen
//! bytes instead of a whole connection, so a busy server can hold many thousands of them.
//! When the table is full the oldest entry is recycled early, as Linux does when
//! `tcp_max_tw_buckets` is reached.
//!
//! Here are the table and the endpoint's handling of segments for a tuple in TIME-WAIT; what
//! an entry holds, and the RFC 6191 rule for reusing its tuple, belong to the connection
//! (`TimeWaitEntry`, `Connection::time_wait_snapshot`).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::table::{table, Table, Tuple, COMPACT_SLACK};
use super::{ConnectionHandle, Endpoint, Owner};
use crate::tcp::connection::TimeWaitEntry;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{TcpFlags, TcpRepr};

/// TIME-WAIT entries by 4-tuple, with a FIFO of expiry times. Every entry lasts the same
/// time, so the FIFO stays in expiry order; a restarted entry is pushed again and its older
/// queue element is skipped when it comes up.
#[derive(Debug)]
pub(crate) struct TimeWaitTable {
    entries: Table<Tuple, TimeWaitEntry>,
    order: VecDeque<(Tuple, Instant)>,
}

impl TimeWaitTable {
    /// Bytes one entry takes: its table slot and its place in the expiry queue.
    pub fn entry_size(&self) -> usize {
        std::mem::size_of::<(Tuple, TimeWaitEntry)>() + std::mem::size_of::<(Tuple, Instant)>()
    }

    pub fn new(seed: u64) -> Self {
        TimeWaitTable {
            entries: table(seed),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, tuple: &Tuple) -> Option<&TimeWaitEntry> {
        self.entries.get(tuple)
    }

    pub fn contains(&self, tuple: &Tuple) -> bool {
        self.entries.contains_key(tuple)
    }

    pub fn insert(&mut self, tuple: Tuple, entry: TimeWaitEntry) {
        self.order.push_back((tuple, entry.expires));
        self.entries.insert(tuple, entry);
        self.compact();
    }

    pub fn remove(&mut self, tuple: &Tuple) -> Option<TimeWaitEntry> {
        self.entries.remove(tuple)
    }

    /// Restart an entry's 2 MSL (a retransmitted FIN arrived).
    pub fn restart(&mut self, tuple: &Tuple, expires: Instant) {
        if let Some(e) = self.entries.get_mut(tuple) {
            e.expires = expires;
            self.order.push_back((*tuple, expires));
            self.compact();
        }
    }

    /// Drop superseded queue elements (of removed or restarted entries) once they outnumber
    /// the live ones: a peer that retransmits its FIN, or SYNs that reuse tuples, would
    /// otherwise grow the queue for a whole 2 MSL without growing the table.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.entries.len() + COMPACT_SLACK {
            return;
        }
        let entries = &self.entries;
        self.order
            .retain(|(tuple, at)| entries.get(tuple).is_some_and(|e| e.expires == *at));
    }

    /// Drop the oldest live entry (recycling under pressure). Returns whether one was dropped.
    pub fn evict_oldest(&mut self) -> bool {
        while let Some((tuple, at)) = self.order.pop_front() {
            if self.entries.get(&tuple).is_some_and(|e| e.expires == at) {
                self.entries.remove(&tuple);
                return true;
            }
        }
        false
    }

    /// Drop every entry that has expired by `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&(tuple, at)) = self.order.front() {
            if at > now {
                break;
            }
            self.order.pop_front();
            if self.entries.get(&tuple).is_some_and(|e| e.expires == at) {
                self.entries.remove(&tuple);
            }
        }
    }

    /// The earliest time something may expire.
    pub fn next_expiry(&mut self) -> Option<Instant> {
        // Skip superseded queue elements so the answer is exact.
        while let Some(&(tuple, at)) = self.order.front() {
            if self.entries.get(&tuple).is_some_and(|e| e.expires == at) {
                return Some(at);
            }
            self.order.pop_front();
        }
        None
    }
}

impl Endpoint {
    /// RFC 9293 §3.6.1 / RFC 6191: a new SYN may reuse a 4-tuple in TIME-WAIT if its sequence
    /// number (or timestamp) is beyond the old connection's, and a listener would take it.
    pub(super) fn reuse_time_wait(&self, h: ConnectionHandle, seg: &TcpRepr<'_>) -> bool {
        let Some(slot) = self.connections.get(&h) else {
            return false;
        };
        let c = &slot.conn;
        let is_syn = seg.flags.contains(TcpFlags::SYN)
            && !seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.contains(TcpFlags::RST);
        if c.state() == State::Closed {
            return slot.owner == Owner::Nobody;
        }
        if c.state() != State::TimeWait || !is_syn || self.find_listener(c.local()).is_none() {
            return false;
        }
        c.is_new_incarnation(seg)
    }

    /// A segment for a compact TIME-WAIT entry (RFC 9293 §3.10.7.4, TIME-WAIT rows; Linux
    /// `tcp_timewait_state_process`). Returns false when a new SYN may reuse the tuple, so
    /// the caller hands it to the listener.
    pub(super) fn handle_time_wait(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) -> bool {
        let tuple = Tuple(local, remote);
        let Some(&e) = self.time_wait.get(&tuple) else {
            return false;
        };
        let flags = seg.flags;
        if flags.contains(TcpFlags::RST) {
            // An RST at RCV.NXT ends TIME-WAIT early (Linux's default, tcp_rfc1337 = 0).
            if seg.seq_number == e.rcv_nxt {
                self.time_wait.remove(&tuple);
            } else {
                self.stats.drop_out_of_window += 1;
            }
            return true;
        }
        if flags.contains(TcpFlags::SYN) && !flags.contains(TcpFlags::ACK) {
            // RFC 6191: a new incarnation is welcome if its timestamp, or failing that its
            // sequence number, is beyond the old connection's.
            if e.is_new_incarnation(seg) && self.find_listener(local).is_some() {
                self.time_wait.remove(&tuple);
                return false;
            }
        }
        if flags.contains(TcpFlags::FIN) {
            // "The only thing that can arrive in this state is a retransmission of the remote
            // FIN. Acknowledge it, and restart the 2 MSL timeout."
            self.time_wait.restart(&tuple, now + self.config.time_wait);
        } else if seg.payload.is_empty() && seg.seq_number == e.rcv_nxt {
            // A bare ACK in sequence (say, the other side's own TIME-WAIT answering a
            // duplicate) needs no answer; answering it would start an endless ACK exchange
            // between two TIME-WAITs.
            self.stats.drop_other += 1;
            return true;
        } else {
            // Old duplicates and data get an ACK restating where we are.
            self.stats.drop_out_of_window += 1;
        }
        let ack = e.ack(local, remote, now);
        self.queue_segment(local, remote, &ack);
        true
    }

    /// A released connection reached TIME-WAIT: from now on only its compact entry answers
    /// for `tuple`. Past `Config::max_time_wait` entries the oldest is recycled early (Linux
    /// `tcp_max_tw_buckets`); with 0, none is kept.
    pub(super) fn enter_time_wait(&mut self, tuple: Tuple, entry: TimeWaitEntry) {
        if self.config.max_time_wait == 0 {
            return;
        }
        while self.time_wait.len() >= self.config.max_time_wait {
            if !self.time_wait.evict_oldest() {
                break;
            }
            self.stats.time_wait_recycled += 1;
        }
        self.time_wait.insert(tuple, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seq::SeqNumber;

    fn tuple(port: u16) -> Tuple {
        Tuple(
            SocketAddr::from(([198, 18, 0, 2], port)),
            SocketAddr::from(([198, 18, 0, 1], 80)),
        )
    }

    fn entry(expires: u64) -> TimeWaitEntry {
        TimeWaitEntry {
            snd_nxt: SeqNumber(1),
            rcv_nxt: SeqNumber(2),
            ts: None,
            window: 0,
            expires: Instant::from_secs(expires),
        }
    }

    #[test]
    fn expires_in_order_and_honours_restarts() {
        let mut t = TimeWaitTable::new(1);
        t.insert(tuple(1), entry(60));
        t.insert(tuple(2), entry(61));
        t.restart(&tuple(1), Instant::from_secs(90));
        assert_eq!(t.next_expiry(), Some(Instant::from_secs(61)));
        t.expire(Instant::from_secs(61));
        assert_eq!(t.len(), 1);
        assert!(t.contains(&tuple(1)));
        assert_eq!(t.next_expiry(), Some(Instant::from_secs(90)));
        t.expire(Instant::from_secs(90));
        assert_eq!(t.len(), 0);
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn evicts_the_oldest_live_entry() {
        let mut t = TimeWaitTable::new(1);
        t.insert(tuple(1), entry(60));
        t.insert(tuple(2), entry(61));
        t.remove(&tuple(1));
        assert!(t.evict_oldest());
        assert_eq!(t.len(), 0);
        assert!(!t.evict_oldest());
    }

    #[test]
    fn restarts_and_removals_do_not_grow_the_queue() {
        // A peer retransmitting its FIN restarts one entry over and over, and tuples reused
        // by new SYNs leave the table: neither may grow the expiry queue without bound.
        let mut t = TimeWaitTable::new(1);
        t.insert(tuple(1), entry(60));
        for i in 0..100_000u64 {
            t.restart(&tuple(1), Instant::from_secs(60 + i));
            t.insert(tuple(2), entry(60 + i));
            t.remove(&tuple(2));
        }
        assert!(
            t.order.len() <= 2 * t.len() + COMPACT_SLACK + 1,
            "{}",
            t.order.len()
        );
        // The live entry still expires when its last restart says.
        assert_eq!(t.next_expiry(), Some(Instant::from_secs(60 + 99_999)));
    }

    #[test]
    fn entries_are_small() {
        // The point of the table: far smaller than a connection.
        assert!(std::mem::size_of::<TimeWaitEntry>() <= 40);
    }
}
