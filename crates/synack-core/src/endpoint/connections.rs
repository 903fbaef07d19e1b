//! The connection table: who holds each connection (`Owner`), its slot's bookkeeping, and
//! what happens after anything touched one (`after`: events, the accept queue, memory
//! accounting against `Config::max_memory`, the output and timer flags), up to its release
//! (`maybe_remove`, `remove`; a released connection in TIME-WAIT leaves a compact entry).

use std::collections::hash_map::Entry;

use super::table::{Tuple, COMPACT_SLACK};
use super::{ConnectionHandle, Endpoint, Event, ListenerHandle};
use crate::error::Error;
use crate::shrink::shrink_after_peak;
use crate::tcp::connection::handshake::Identity;
use crate::tcp::connection::{Connection, PortClaim};
use crate::tcp::State;
use crate::time::Instant;

/// How often out-of-order data may be pruned across the connections at most.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// The application has the handle.
    App,
    /// Established and waiting in a listener's accept queue.
    AcceptQueue(ListenerHandle),
    /// No one: a half-open passive connection, or one the application closed. Removed once
    /// CLOSED and quiet.
    Nobody,
}

#[derive(Debug)]
pub(super) struct Slot {
    pub(super) conn: Connection,
    pub(super) owner: Owner,
    /// Counted in this listener's SYN queue while SYN-RECEIVED.
    pub(super) syn_of: Option<ListenerHandle>,
    /// Taken with TCP Fast Open by this listener, and counted in its Fast Open queue while
    /// SYN-RECEIVED (RFC 7413 §5.1).
    pub(super) fast_open_of: Option<ListenerHandle>,
    /// In the `dirty` FIFO.
    pub(super) dirty: bool,
    /// Its deadline may have moved since it was last pushed into the timer heap (it is
    /// listed in `Endpoint::stale`).
    pub(super) stale: bool,
    /// The deadline last pushed into the timer heap.
    pub(super) timer: Option<Instant>,
    /// The buffer memory last counted in `Endpoint::memory`.
    pub(super) memory: usize,
    /// Listed in `Endpoint::memory_waiters`.
    pub(super) memory_waiting: bool,
}

impl Slot {
    /// An intercepted connection being accepted: passive, with no listener, still waiting
    /// for the client's ACK (`Endpoint::accept_intercepted`). An accepted Fast Open child,
    /// also passive in SYN-RECEIVED, came from a listener.
    pub(super) fn accepting_intercepted(&self) -> bool {
        self.syn_of.is_none() && self.conn.awaits_final_ack() && !self.conn.is_fast_open_child()
    }
}

impl Endpoint {
    /// A fresh (CLOSED) connection for `id`, built in its slot and indexed by its 4-tuple;
    /// the caller opens it in place. `claim`: how it uses its local port (SO_REUSEADDR, and
    /// whether a bind gave the port), counted with the address in `conn_ports` for as long as
    /// it holds its tuple.
    #[inline(always)]
    pub(super) fn insert(
        &mut self,
        now: Instant,
        id: Identity,
        owner: Owner,
        claim: PortClaim,
    ) -> (ConnectionHandle, &mut Connection) {
        // A path MTU report in force for the peer (`path_mtu.rs`): forgotten if expired.
        self.expire_path_mtus(now);
        let report = self.path_mtus.get_until(id.remote.ip());
        let (config, cfg) = (&self.config, &self.conn_config);
        let (pressure, room) = (self.memory_pressure, self.memory_room());
        let (h, slot) = self.connections.insert_with(|| Slot {
            conn: Connection::fresh(now, config, cfg, id),
            owner,
            syn_of: None,
            fast_open_of: None,
            dirty: false,
            stale: false,
            timer: None,
            memory: 0,
            memory_waiting: false,
        });
        slot.conn.set_memory_budget(pressure, room);
        if let Some((mtu, locked, expires)) = report {
            slot.conn.inherit_path_mtu(mtu, locked, expires);
        }
        slot.conn
            .set_own_peer(self.addresses.contains(&id.remote.ip()));
        slot.conn.port_claim = claim;
        self.by_tuple.insert(Tuple(id.local, id.remote), h);
        self.conn_ports.add(id.local, claim);
        (h, &mut slot.conn)
    }

    /// Bytes the connections may still queue before `Config::max_memory`.
    pub(super) fn memory_room(&self) -> usize {
        self.config.max_memory.saturating_sub(self.memory)
    }

    /// Whether a new connection is refused for memory: the cap leaves less room than
    /// `Config::memory_reserve` (see `Config::max_memory`).
    pub(super) fn memory_full(&self) -> bool {
        self.memory_room() <= self.config.memory_reserve()
    }

    /// At the memory cap: takes back the allocation that out-of-order data holds, from the
    /// connections whose receive buffers hold the most first, until memory is under
    /// `Config::memory_low_level` (Linux's `tcp_prune_ofo_queue`, run when `tcp_mem` is
    /// exhausted; RFC 2018 §8 lets a receiver renege on SACKed data, which the sender keeps
    /// until it is cumulatively acknowledged). Without it, peers that each sent one byte far
    /// past RCV.NXT held a ring as large as the gap, charged in full, and a few thousand of
    /// them kept every other connection's data, and new connections, out at the cap. At most
    /// once per `PRUNE_INTERVAL`, since each call walks every connection.
    pub(super) fn prune_out_of_order(&mut self, now: Instant) {
        if self.last_prune.is_some_and(|t| now - t < PRUNE_INTERVAL) {
            return;
        }
        self.last_prune = Some(now);
        let mut holders: Vec<(usize, ConnectionHandle)> = self
            .connections
            .iter()
            .filter_map(|(h, s)| s.conn.out_of_order_held().map(|held| (held, h)))
            .collect();
        holders.sort_unstable_by_key(|&(held, _)| std::cmp::Reverse(held));
        let low = self.config.memory_low_level();
        for (_, h) in holders {
            if self.memory < low {
                break;
            }
            if let Some(slot) = self.connections.get_mut(&h) {
                if slot.conn.prune_out_of_order() > 0 {
                    self.stats.ooo_pruned += 1;
                }
            }
            self.after_inner(h);
        }
        self.maybe_wake_memory_waiters();
    }

    /// Whether the endpoint is at its memory cap even after pruning out-of-order data
    /// (`prune_out_of_order`): what refuses a new connection.
    pub(super) fn memory_full_after_pruning(&mut self, now: Instant) -> bool {
        if !self.memory_full() {
            return false;
        }
        self.prune_out_of_order(now);
        self.memory_full()
    }

    /// Hand connection `h` the memory budget as it stands, before a call that may make its
    /// buffers hold more; `freed` is what the call itself will give back first (a read).
    pub(super) fn set_budget(&mut self, h: ConnectionHandle, freed: usize) {
        let (pressure, room) = (self.memory_pressure, self.memory_room() + freed);
        if let Some(slot) = self.connections.get_mut(&h) {
            slot.conn.set_memory_budget(pressure, room);
        }
    }

    /// Follow `memory` with the pressure state, with Linux's hysteresis (`tcp_mem`): under
    /// pressure from `Config::memory_pressure_level` on, until memory falls below
    /// `Config::memory_low_level`.
    fn update_pressure(&mut self) {
        if self.memory >= self.config.memory_pressure_level() {
            if !self.memory_pressure {
                tracing::debug!(memory = self.memory, "memory pressure");
            }
            self.memory_pressure = true;
        } else if self.memory < self.config.memory_low_level() {
            self.memory_pressure = false;
        }
    }

    /// List connection `h`, which the budget held back, for waking once memory drains. A
    /// connection released meanwhile leaves its handle behind, skipped when woken (handles
    /// never alias); they are swept out when they outnumber the connections.
    pub(super) fn wait_for_memory(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        if slot.memory_waiting {
            return;
        }
        slot.memory_waiting = true;
        self.memory_waiters.push(h);
        if self.memory_waiters.len() > 2 * self.connections.len() + COMPACT_SLACK {
            let connections = &self.connections;
            self.memory_waiters
                .retain(|w| connections.get(w).is_some_and(|s| s.memory_waiting));
        }
    }

    /// Memory changed outside a connection (UDP queues): follow it with the pressure state,
    /// and wake the connections the cap held back if room opened up.
    pub(super) fn memory_changed(&mut self) {
        self.update_pressure();
        self.maybe_wake_memory_waiters();
    }

    /// Once memory fell below the pressure level, or the cap leaves room for two full
    /// segments again (what a window update may offer under pressure, and what makes a
    /// write worth waking for), wake every connection the budget held back at the cap:
    /// window updates for the peers, `Writable` for the application. Waiting for the
    /// pressure level alone stranded a writer refused at the cap with an empty send
    /// buffer: nothing of its own would ever touch it again. The check is one comparison
    /// per call and the wake-up walks the waiters only, each of which leaves the list.
    fn maybe_wake_memory_waiters(&mut self) {
        if self.memory_waiters.is_empty() {
            return;
        }
        let wake_room = 2 * usize::from(self.config.mss_v4());
        if self.memory >= self.config.memory_pressure_level() && self.memory_room() < wake_room {
            return;
        }
        let waiters = std::mem::take(&mut self.memory_waiters);
        for &h in &waiters {
            let (pressure, room) = (self.memory_pressure, self.memory_room());
            if let Some(slot) = self.connections.get_mut(&h) {
                slot.memory_waiting = false;
                slot.conn.set_memory_budget(pressure, room);
                slot.conn.memory_available();
                self.after(h);
            }
        }
        // Keep the allocation for the next time.
        let mut waiters = waiters;
        waiters.clear();
        if self.memory_waiters.is_empty() {
            self.memory_waiters = waiters;
        }
    }

    /// Whether one more connection fits under `Config::max_connections`, which counts every
    /// connection the endpoint holds, TIME-WAIT entries included (`connection_count`). A
    /// TIME-WAIT entry yields to a live connection: the oldest is recycled early to make room,
    /// as Linux recycles them past `tcp_max_tw_buckets`, so a busy server is never refused
    /// for the connections it already finished.
    pub(super) fn make_room(&mut self) -> bool {
        while self.connection_count() >= self.config.max_connections {
            if self.connections.len() >= self.config.max_connections
                || !self.time_wait.evict_oldest()
            {
                return false;
            }
            self.stats.time_wait_recycled += 1;
        }
        true
    }

    /// After anything touched connection `h`: turn its notifications into events, move a
    /// completed passive open to its accept queue, and queue it for output (which reschedules
    /// its timer once drained).
    pub(super) fn after(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        let n = slot.conn.take_notify();
        if let Some(learned) = slot.conn.take_fast_open_learned() {
            let server = slot.conn.remote.ip();
            self.fast_open_cookies.insert(server, learned);
        }
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        let state = slot.conn.state();
        let owner = slot.owner;
        let error = slot.conn.error();
        if state != State::SynReceived {
            if let Some(l) = slot.fast_open_of.take() {
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.fast_open.pending = listener.fast_open.pending.saturating_sub(1);
                }
                // Counted below once the application holds it; not yet accepted, here.
                if n.connected && owner != Owner::App {
                    self.stats.connections_established += 1;
                }
            }
            let Some(slot) = self.connections.get_mut(&h) else {
                return;
            };
            if let Some(l) = slot.syn_of.take() {
                self.half_open = self.half_open.saturating_sub(1);
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.syn_queue = listener.syn_queue.saturating_sub(1);
                    if n.connected && owner == Owner::Nobody {
                        listener.enqueue(h);
                        if let Some(slot) = self.connections.get_mut(&h) {
                            slot.owner = Owner::AcceptQueue(l);
                        }
                        self.stats.connections_established += 1;
                        self.push_event(Event::Incoming(l));
                    }
                }
            }
        }
        if owner == Owner::App {
            if n.connected {
                self.stats.connections_established += 1;
                self.push_event(Event::Connected(h));
            }
            if n.readable {
                self.push_event(Event::Readable(h));
            }
            if n.writable {
                self.push_event(Event::Writable(h));
            }
            if n.closed {
                self.push_event(Event::Closed(h, error));
            }
        }
        self.after_inner(h);
        self.maybe_wake_memory_waiters();
    }

    /// The bookkeeping half of `after`: memory accounting and the budget, the waiting list,
    /// release, and the output and timer flags.
    fn after_inner(&mut self, h: ConnectionHandle) {
        if let Some(slot) = self.connections.get_mut(&h) {
            let now_memory = slot.conn.memory();
            self.memory = self.memory - slot.memory + now_memory;
            slot.memory = now_memory;
            if slot.conn.take_memory_starved() {
                self.wait_for_memory(h);
            }
            self.update_pressure();
            let (pressure, room) = (self.memory_pressure, self.memory_room());
            let Some(slot) = self.connections.get_mut(&h) else {
                return;
            };
            slot.conn.set_memory_budget(pressure, room);
            if pressure {
                // The send buffer's spare chunks went back to the allocator.
                let now_memory = slot.conn.memory();
                self.memory = self.memory - slot.memory + now_memory;
                slot.memory = now_memory;
            }
            if slot.conn.is_closed_and_quiet() && slot.owner == Owner::Nobody {
                self.remove(h);
                return;
            }
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push_back(h);
            }
            // Its timer is rescheduled once it has sent what it has, or when a deadline is
            // asked for first: one deadline computation per burst, not per segment.
            if !slot.stale {
                slot.stale = true;
                self.stale.push(h);
            }
        }
    }

    /// Free a connection that is CLOSED, owned by no one and has nothing left to send; move
    /// one in TIME-WAIT into the compact table.
    pub(super) fn maybe_remove(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.connections.get(&h) else {
            return;
        };
        if slot.owner != Owner::Nobody || slot.dirty {
            return;
        }
        match slot.conn.state() {
            State::Closed => self.remove(h),
            State::TimeWait => {
                let tuple = Tuple(slot.conn.local(), slot.conn.remote());
                let entry = slot.conn.time_wait_snapshot();
                self.remove(h);
                self.enter_time_wait(tuple, entry);
            }
            _ => {}
        }
    }

    pub(super) fn remove(&mut self, h: ConnectionHandle) {
        if let Some(slot) = self.connections.remove(&h) {
            self.memory -= slot.memory;
            self.update_pressure();
            if let Entry::Occupied(e) = self
                .by_tuple
                .entry(Tuple(slot.conn.local(), slot.conn.remote()))
            {
                if *e.get() == h {
                    e.remove();
                    self.conn_ports
                        .remove(slot.conn.local(), slot.conn.port_claim);
                }
            }
            if let Some(l) = slot.syn_of {
                self.half_open = self.half_open.saturating_sub(1);
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.syn_queue = listener.syn_queue.saturating_sub(1);
                }
            }
            if let Some(l) = slot.fast_open_of {
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.fast_open.pending = listener.fast_open.pending.saturating_sub(1);
                }
            }
            if let Owner::AcceptQueue(l) = slot.owner {
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.forget(h);
                }
            }
            self.shrink_connection_tables();
        }
        self.maybe_wake_memory_waiters();
    }

    /// Gives back what the tables and queues kept per connection grew to at a peak, as
    /// connections go (see `shrink::shrink_after_peak`; the slab gives back its own pages).
    pub(super) fn shrink_connection_tables(&mut self) {
        let live = self.connections.len();
        shrink_after_peak(&mut self.by_tuple, live);
        shrink_after_peak(&mut self.timers, live);
        shrink_after_peak(&mut self.stale, live);
        shrink_after_peak(&mut self.dirty, live);
        shrink_after_peak(&mut self.memory_waiters, live);
    }

    pub(super) fn app_slot(&mut self, h: ConnectionHandle) -> Result<&mut Slot, Error> {
        match self.connections.get_mut(&h) {
            Some(slot) if slot.owner == Owner::App => Ok(slot),
            _ => Err(Error::InvalidHandle),
        }
    }

    pub(super) fn app_conn(&self, h: ConnectionHandle) -> Result<&Connection, Error> {
        match self.connections.get(&h) {
            Some(slot) if slot.owner == Owner::App => Ok(&slot.conn),
            _ => Err(Error::InvalidHandle),
        }
    }
}
