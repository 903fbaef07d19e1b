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
use std::time::Duration;

use super::output::Own;
use super::port_use::PortUse;
use super::table::{table, Table, Tuple, COMPACT_SLACK};
use super::{ConnectionHandle, Endpoint, Owner};
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::shrink::shrink_after_peak;
use crate::tcp::connection::output::HOP_LIMIT;
use crate::tcp::connection::{time_wait_input, TimeWaitEntry, TimeWaitInput};
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
    /// The entries' local addresses, by port.
    ports: PortUse,
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
            ports: PortUse::new(seed),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, tuple: &Tuple) -> Option<&TimeWaitEntry> {
        self.entries.get(tuple)
    }

    /// The entries' local addresses, by port, with their SO_REUSEADDR.
    pub(super) fn ports(&self) -> &PortUse {
        &self.ports
    }

    pub fn contains(&self, tuple: &Tuple) -> bool {
        self.entries.contains_key(tuple)
    }

    pub fn insert(&mut self, tuple: Tuple, entry: TimeWaitEntry) {
        self.order.push_back((tuple, entry.expires));
        self.ports.add(tuple.0, entry.port_claim);
        if let Some(old) = self.entries.insert(tuple, entry) {
            self.ports.remove(tuple.0, old.port_claim);
        }
        self.compact();
    }

    pub fn remove(&mut self, tuple: &Tuple) -> Option<TimeWaitEntry> {
        let e = self.entries.remove(tuple)?;
        self.ports.remove(tuple.0, e.port_claim);
        shrink_after_peak(&mut self.entries, 0);
        Some(e)
    }

    /// Whether an entry's answer to an out-of-window segment must be skipped because it sent
    /// one less than `interval` ago; if not, this one counts as the last (Linux
    /// `__tcp_oow_rate_limited` on `tw_last_oow_ack_time`).
    pub fn oow_ack_limited(&mut self, tuple: &Tuple, now: Instant, interval: Duration) -> bool {
        let Some(e) = self.entries.get_mut(tuple) else {
            return false;
        };
        let now_ms = now.total_millis() as u32;
        let last = e.last_oow_ack;
        if last != 0 && u128::from(now_ms.wrapping_sub(last)) < interval.as_millis() {
            return true;
        }
        e.last_oow_ack = now_ms.max(1);
        false
    }

    /// A segment in sequence carried a timestamp: its TSval is TS.Recent from now on
    /// (RFC 7323 §4.3), as Linux's TIME-WAIT takes it (`tw_ts_recent`).
    pub fn saw_timestamp(&mut self, tuple: &Tuple, now: Instant, seg: &TcpRepr<'_>) {
        if let (Some(e), Some(ts)) = (self.entries.get_mut(tuple), seg.timestamp) {
            if let Some(kept) = e.ts.as_mut() {
                kept.recent = ts.tsval;
                kept.recent_stamp = now.total_secs() as u32;
            }
        }
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
        shrink_after_peak(&mut self.order, 0);
    }

    /// Drop the oldest live entry (recycling under pressure). Returns whether one was dropped.
    pub fn evict_oldest(&mut self) -> bool {
        while let Some((tuple, at)) = self.order.pop_front() {
            if self.entries.get(&tuple).is_some_and(|e| e.expires == at) {
                self.remove(&tuple);
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
                self.remove(&tuple);
            }
        }
        shrink_after_peak(&mut self.order, 0);
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

/// Whether a segment may start a new connection on a tuple an old one still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reuse {
    /// No: the old connection, or its TIME-WAIT entry, takes the segment.
    No,
    /// Yes, the segment goes on to a listener (or the interception). `iss`, when the old connection was in
    /// TIME-WAIT: the new one's initial sequence number, past everything the old one sent
    /// (RFC 1122 §4.2.2.13; Linux's `tw_isn`, SND.NXT + 65535 + 2), so that none of the old
    /// incarnation's segments can fall into the new one's window.
    Yes { iss: Option<SeqNumber> },
}

/// The ISS for a new incarnation of a tuple whose old connection reached `snd_nxt` (Linux
/// `tcp_timewait_state_process`; 0 is taken to mean none there, so it is never used).
fn next_incarnation_iss(snd_nxt: SeqNumber) -> SeqNumber {
    match snd_nxt + 65535 + 2 {
        SeqNumber(0) => SeqNumber(1),
        iss => iss,
    }
}

/// What holds the tuple a connect from a bound port asks for, and lets it go
/// ([`Endpoint::may_take_over`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Takeover {
    /// A compact TIME-WAIT entry that used timestamps.
    Compact(Tuple),
    /// A connection the application still holds, in TIME-WAIT with timestamps.
    HeldTimeWait(ConnectionHandle),
    /// A connection the application still holds, closed (reset, or timed out).
    Closed(ConnectionHandle),
}

impl Endpoint {
    /// Whether a connect from a port the socket bound may have `tuple`, which something
    /// holds: `Ok(None)` if nothing does, `Ok(Some(_))` for what gives it up, and
    /// `AddrNotAvailable` (EADDRNOTAVAIL, Linux's `__inet_check_established`) if it stays.
    /// - TIME-WAIT, in the compact table or in a connection the application still holds
    ///   (Linux moved that one's tuple to a TIME-WAIT sock): Linux's `tcp_twsk_unique`, which
    ///   `__inet_hash_connect` calls without `twp` for a bound port, gives the tuple to the
    ///   new connection if the old one used timestamps (PAWS then keeps the old
    ///   incarnation's duplicates out, RFC 7323 §5), whatever the entry's age and
    ///   `tcp_tw_reuse`; without them it stays.
    ///   A held one gives it only once its ACK of the peer's FIN has left (Linux's
    ///   `tcp_time_wait` runs after that ACK is sent).
    /// - A closed connection holds its tuple no longer: Linux unhashed it. An RST it still
    ///   owes (an abort's) leaves first ([`take_over`](Self::take_over)).
    pub(super) fn may_take_over(&self, tuple: &Tuple) -> Result<Option<Takeover>, Error> {
        if let Some(&h) = self.by_tuple.get(tuple) {
            let conn = self.connections.get(&h).map(|s| &s.conn);
            return match conn {
                Some(c) if c.state() == State::Closed => Ok(Some(Takeover::Closed(h))),
                Some(c)
                    if c.state() == State::TimeWait
                        && c.time_wait_snapshot().ts.is_some()
                        && !c.owes_control() =>
                {
                    Ok(Some(Takeover::HeldTimeWait(h)))
                }
                _ => Err(Error::AddrNotAvailable),
            };
        }
        match self.time_wait.get(tuple) {
            None => Ok(None),
            Some(e) if e.ts.is_some() => Ok(Some(Takeover::Compact(*tuple))),
            Some(_) => Err(Error::AddrNotAvailable),
        }
    }

    /// Whether an ephemeral connect may take `tuple` from its compact TIME-WAIT entry:
    /// Linux's `tcp_tw_reuse` default (2) lets it on loopback only, where both ends are
    /// the host's, which for us is a connection between two of our own addresses; if the
    /// old connection used timestamps and TS.Recent is from an earlier second
    /// (`tcp_twsk_unique`: `time_after32(now, tw_ts_recent_stamp)`). A client that opens
    /// connection after connection to its own server then does not run out of ports.
    pub(super) fn loopback_time_wait_reusable(&self, now: Instant, tuple: &Tuple) -> bool {
        self.addresses.contains(&tuple.1.ip())
            && (self.time_wait.get(tuple).and_then(|e| e.ts))
                .is_some_and(|ts| ts.recent_at(now).age >= Duration::from_secs(1))
    }

    /// Ends what [`may_take_over`](Self::may_take_over) found for a new connection, and
    /// returns the new one's initial sequence number: past everything the old one sent
    /// (`tw_snd_nxt + 65535 + 2`, as `tcp_twsk_unique` sets `write_seq` after a TIME-WAIT),
    /// so that nothing of the old connection's is taken for the new one's. The
    /// application's old connection, if it holds one, stays closed in its hands; a closed
    /// one that owes an RST sends it first (see [`release_tuple`](Self::release_tuple)).
    pub(super) fn take_over(&mut self, takeover: Takeover) -> Option<SeqNumber> {
        match takeover {
            Takeover::Compact(tuple) => {
                let e = self.time_wait.remove(&tuple)?;
                Some(next_incarnation_iss(e.snd_nxt))
            }
            Takeover::HeldTimeWait(h) | Takeover::Closed(h) => {
                let snd_nxt = self.connections.get(&h)?.conn.time_wait_snapshot().snd_nxt;
                self.release_tuple(h);
                Some(next_incarnation_iss(snd_nxt))
            }
        }
    }

    /// Whether a segment for `h`'s tuple may go to a listener (or the interception) instead:
    /// a closed connection holds its tuple no longer (Linux unhashes a closed socket), and
    /// RFC 9293 §3.6.1 / RFC 6191 let a new SYN reuse a tuple in TIME-WAIT if its sequence
    /// number (or timestamp) is beyond the old connection's and something would take it.
    pub(super) fn reuse_time_wait(
        &self,
        now: Instant,
        h: ConnectionHandle,
        seg: &TcpRepr<'_>,
    ) -> Reuse {
        let Some(slot) = self.connections.get(&h) else {
            return Reuse::No;
        };
        let c = &slot.conn;
        let is_syn = seg.flags.contains(TcpFlags::SYN)
            && !seg.flags.contains(TcpFlags::ACK)
            && !seg.flags.contains(TcpFlags::RST);
        if c.state() == State::Closed {
            return Reuse::Yes { iss: None };
        }
        if c.state() != State::TimeWait
            || !is_syn
            || !self.takes_new_syn(c.local())
            || !c.is_new_incarnation(now, seg)
        {
            return Reuse::No;
        }
        Reuse::Yes {
            iss: Some(next_incarnation_iss(c.time_wait_snapshot().snd_nxt)),
        }
    }

    /// Whether `h` is a connection the application still holds in TIME-WAIT.
    pub(super) fn in_time_wait(&self, h: ConnectionHandle) -> bool {
        self.connections
            .get(&h)
            .is_some_and(|slot| slot.conn.state() == State::TimeWait)
    }

    /// Whether a new SYN to `local` would be taken: by a listener, or held for the
    /// application in intercept mode (as Linux's TPROXY hands a TIME-WAIT tuple's new SYN to
    /// the transparent listener, `nf_tproxy_handle_time_wait4`).
    fn takes_new_syn(&self, local: SocketAddr) -> bool {
        self.find_listener(local).is_some() || self.intercepts()
    }

    /// Frees `h`'s tuple for a new connection ([`Reuse::Yes`], or a connect's takeover). A
    /// connection no one holds goes, unless it still owes an RST (an abort's), which it
    /// sends, off the tuple, before it goes: the peer's end of the old connection must
    /// hear it. One the application still holds stays, CLOSED and off the tuple, with what
    /// it received still to be read, as Linux's socket does once a TIME-WAIT sock has taken
    /// its tuple.
    pub(super) fn release_tuple(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        if slot.owner == Owner::Nobody && !slot.conn.has_pending_output() {
            self.remove(h);
            return;
        }
        let tuple = Tuple(slot.conn.local(), slot.conn.remote());
        let claim = slot.conn.port_claim;
        if slot.conn.state() != State::Closed {
            slot.conn.enter_closed(None);
        }
        if self.by_tuple.get(&tuple) == Some(&h) {
            self.by_tuple.remove(&tuple);
            self.conn_ports.remove(tuple.0, claim);
        }
        self.after(h);
    }

    /// A segment for a compact TIME-WAIT entry (RFC 9293 §3.10.7.4, TIME-WAIT rows; Linux
    /// `tcp_timewait_state_process`). [`Reuse::Yes`] when a new SYN may reuse the tuple: the
    /// entry is gone, and the caller hands the SYN to the listener or the interception.
    pub(super) fn handle_time_wait(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
    ) -> Reuse {
        let tuple = Tuple(local, remote);
        let Some(&e) = self.time_wait.get(&tuple) else {
            return Reuse::Yes { iss: None };
        };
        let expires = now + self.config.time_wait;
        let recent = e.ts.map(|ts| ts.recent_at(now));
        let input = time_wait_input(e.rcv_nxt, recent, seg, self.config.rfc1337);
        let (restart, paws) = match input {
            TimeWaitInput::Reset => {
                self.time_wait.remove(&tuple);
                return Reuse::No;
            }
            TimeWaitInput::IgnoredReset => {
                self.time_wait.saw_timestamp(&tuple, now, seg);
                return Reuse::No;
            }
            TimeWaitInput::StrayReset { paws } => {
                self.count_time_wait_drop(paws);
                return Reuse::No;
            }
            TimeWaitInput::InSequence => {
                // Taken, not dropped (Linux consumes it: `TCP_TW_SUCCESS`), as a held
                // connection takes it.
                self.time_wait.restart(&tuple, expires);
                self.time_wait.saw_timestamp(&tuple, now, seg);
                return Reuse::No;
            }
            TimeWaitInput::NewIncarnation if self.takes_new_syn(local) => {
                self.time_wait.remove(&tuple);
                return Reuse::Yes {
                    iss: Some(next_incarnation_iss(e.snd_nxt)),
                };
            }
            TimeWaitInput::NewIncarnation => (false, false),
            TimeWaitInput::Answer { restart, paws } => (restart, paws),
        };
        if restart {
            self.time_wait.restart(&tuple, expires);
        }
        if paws || !seg.flags.contains(TcpFlags::FIN) {
            self.count_time_wait_drop(paws);
        }
        // The answer restates where we are. What occupies no sequence space of its own (a
        // bare ACK, or a SYN) is answered at most once per `invalid_ratelimit`, so that a
        // flood of them, or a peer that disagrees, draws no stream of ACKs (Linux
        // `tcp_timewait_check_oow_rate_limit`); data and a FIN, which the peer sends again
        // until they are acknowledged, always are; and so is a SYN that would start a new
        // incarnation with nothing to take it (Linux's `tcp_v4_rcv`: TCP_TW_SYN without a
        // listener falls through to `tcp_v4_timewait_ack`, no rate limit).
        let limited = input != TimeWaitInput::NewIncarnation
            && (seg.flags.contains(TcpFlags::SYN) || seg.seq_len() == 0)
            && self
                .time_wait
                .oow_ack_limited(&tuple, now, self.config.invalid_ratelimit);
        if limited {
            self.stats.time_wait_acks_limited += 1;
            return Reuse::No;
        }
        let ack = e.ack(local, remote, now);
        let rehash = u32::from(e.flow_rehash);
        self.queue_segment_marked(
            local,
            remote,
            &ack,
            (0, HOP_LIMIT, rehash),
            Own::TimeWaitAck,
        );
        Reuse::No
    }

    /// A segment a TIME-WAIT entry takes no further: an old duplicate (`paws`: by its
    /// timestamp), data, or a stray RST.
    fn count_time_wait_drop(&mut self, paws: bool) {
        if paws {
            self.stats.drop_paws += 1;
        } else {
            self.stats.drop_out_of_window += 1;
        }
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
    use crate::tcp::connection::PortClaim;

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
            flow_rehash: 0,
            port_claim: PortClaim::default(),
            expires: Instant::from_secs(expires),
            last_oow_ack: 0,
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
