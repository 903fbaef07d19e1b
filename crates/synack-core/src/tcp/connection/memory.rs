//! What a connection holds in memory and the endpoint's budget for it: the bytes charged
//! against `Config::max_memory`, the heap actually allocated, pressure, and giving idle
//! storage back.

use super::{Connection, RECLAIM_AFTER};
use crate::shrink::{oversized, shrink_after_peak};
use crate::time::Instant;

/// What a connection between two own sockets may always queue to send, memory cap or not:
/// Linux's `tcp_wmem[0]` (see [`Connection::send_floor`]).
pub(super) const SEND_FLOOR: usize = 4096;

impl Connection {
    /// Bytes this connection's buffers hold now, as counted against `Config::max_memory`:
    /// the data queued for sending (unsent and unacknowledged), and the receive buffer's
    /// allocation, which holds the data not yet read and, in blocks of a kilobyte, the data
    /// held out of order. Linux likewise charges the memory of what is queued (skb
    /// truesize) against tcp_mem, not buffer limits. Counting the receive side by its
    /// allocation rather than its bytes keeps the cap a bound on the heap even when a peer
    /// scatters out-of-order bytes across its window; an emptied receive buffer leaves the count
    /// when it gives its storage back ([`RECLAIM_AFTER`], at once under pressure). The send
    /// buffer's spare chunks count too, as Linux counts a socket's forward-allocated memory:
    /// they are dropped under pressure.
    pub fn memory(&self) -> usize {
        self.snd.buffer.len() + self.snd.buffer.spare_bytes() + self.rcv.buffer.allocated()
    }

    /// Bytes of heap the buffers hold allocated now (at least [`Connection::memory`]; more
    /// while an emptied buffer keeps its storage for the next burst, see [`RECLAIM_AFTER`]).
    pub fn allocated(&self) -> usize {
        self.snd.buffer.allocated()
            + self.rcv.buffer.allocated()
            + self.snd.rack.allocated()
            + self.snd.scoreboard.allocated()
            + self.snd.skbs.as_ref().map_or(0, |q| q.allocated())
    }

    /// The receive buffer's allocation, if it holds out-of-order data: what pruning that
    /// data could give back at most.
    pub fn out_of_order_held(&self) -> Option<usize> {
        (self.rcv.buffer.ooo_ranges() > 0).then(|| self.rcv.buffer.allocated())
    }

    /// Discards the out-of-order data held and shrinks the receive buffer to the in-order
    /// bytes (see `Endpoint::prune_out_of_order`); returns the allocation given back. The
    /// next ACK's SACK blocks no longer name it, and the sender sends it again.
    pub fn prune_out_of_order(&mut self) -> usize {
        if self.rcv.buffer.ooo_ranges() == 0 {
            return 0;
        }
        self.rcv.buffer.prune_ooo()
    }

    /// Bytes of heap the congestion controller takes (it is boxed).
    pub fn controller_size(&self) -> usize {
        std::mem::size_of_val(&*self.cc)
    }

    /// What the endpoint's memory budget allows now (see [`MemBudget`]).
    pub fn set_memory_budget(&mut self, pressure: bool, room: usize) {
        self.mem.pressure = pressure;
        self.mem.room = room;
        if pressure {
            self.snd.buffer.drop_spares();
        }
        self.rcv.buffer.set_tight(pressure);
    }

    /// In-order bytes the connection may still take past the memory cap: while it holds
    /// less than two segments unread, the next in-order data is taken whatever the cap, and
    /// the window offers that much. Linux grants every socket its `tcp_rmem[0]` so
    /// (`__sk_mem_raise_allocated`: `sk_get_rmem0`), so that one connection's data always
    /// moves: above all a connection between two of the endpoint's own sockets, whose
    /// sender may have filled the cap with data only the receiver's ACK frees. The excess
    /// is bounded, two segments a connection.
    pub(super) fn receive_floor(&self) -> usize {
        (2 * self.rcv.mss).saturating_sub(self.rcv.buffer.len())
    }

    /// Bytes a write may still queue past the memory cap, on a connection between two of the
    /// endpoint's own sockets: while less than [`SEND_FLOOR`] is queued, a write takes up to
    /// that much whatever the cap, as Linux grants every socket its `tcp_wmem[0]`
    /// (`__sk_mem_raise_allocated`: `sk_get_wmem0`). Without it such a pair deadlocks at the
    /// cap: one's send queue fills it with data the other cannot receive, because that one's
    /// receive buffer is full of data its application will read only once its own write,
    /// refused for memory, goes through (a loopback echo). Only there do both ends draw on
    /// one budget, so that memory only the other end's progress frees can block it; with a
    /// remote peer the cap stays a hard bound for writes. The excess is bounded,
    /// [`SEND_FLOOR`] a connection.
    pub(super) fn send_floor(&self) -> usize {
        if self.mem.own_peer {
            SEND_FLOOR.saturating_sub(self.snd.buffer.len())
        } else {
            0
        }
    }

    /// The peer is one of the endpoint's own sockets (`MemBudget::own_peer`), as the
    /// endpoint finds when it makes the connection.
    pub fn set_own_peer(&mut self, own: bool) {
        self.mem.own_peer = own;
    }

    /// Whether the budget held this connection back since the last call.
    pub fn take_memory_starved(&mut self) -> bool {
        std::mem::take(&mut self.mem.starved)
    }

    /// Memory drained after the budget held this connection back: say so to the peer (a
    /// window update, if the window can open now; RFC 9293 §3.8.6.2.2 lets a receiver send
    /// one whenever the window grows) and to the application (`Writable`, if a write fits).
    pub fn memory_available(&mut self) {
        if self.is_synchronized() && !self.rcv.fin_received {
            let promised = self.rcv.adv - self.rcv.nxt;
            if self.advertisable_window() > promised {
                self.rcv.ack_now = true;
            }
        }
        if self.send_capacity() > 0 {
            self.notify.writable = true;
        }
    }

    /// Arm the reclaim timer if a buffer emptied but keeps its storage; under memory
    /// pressure, give the storage back at once, even with the timer armed before the
    /// pressure began: waiting for it held a read-empty ring, charged, for up to
    /// [`RECLAIM_AFTER`] while the cap refused other connections' data.
    ///
    /// A buffer or record that holds a little in a lot of room (a receive ring with a few
    /// bytes unread, a RACK record with a few segments in flight, spare send chunks:
    /// `holds_oversized_storage`) arms it too, under pressure as well: it is shrunk when
    /// the timer fires (`shrink_oversized`).
    pub(super) fn arm_reclaim(&mut self, now: Instant) {
        let idle = self.holds_idle_storage();
        if idle && self.mem.pressure {
            self.reclaim();
        }
        let wait = (idle && !self.mem.pressure) || self.holds_oversized_storage();
        if wait && self.timers.reclaim.is_none() {
            self.timers.reclaim = Some(now + RECLAIM_AFTER);
        }
    }

    /// Whether an empty buffer (or an empty SACK or RACK record) still holds storage.
    fn holds_idle_storage(&self) -> bool {
        self.rcv.buffer.idle_storage()
            || self.snd.buffer.idle_storage()
            || self.snd.rack.idle_storage()
            || self.snd.scoreboard.idle_storage()
    }

    /// Whether a buffer or record keeps far more room than it holds: what a burst grew it
    /// to, with a little held since (a few bytes unread, a few segments in flight).
    fn holds_oversized_storage(&self) -> bool {
        self.rcv.buffer.oversized()
            || self.snd.buffer.oversized()
            || self.snd.rack.oversized()
            || self.snd.scoreboard.oversized()
            || self.snd.skbs.as_ref().is_some_and(|q| q.oversized())
            || oversized(&self.snd.records, 0)
    }

    /// Shrink whatever [`holds_oversized_storage`](Self::holds_oversized_storage) found
    /// oversized to twice what it holds, at most once a [`RECLAIM_AFTER`], so that a
    /// connection keeping up with a burst does not shrink and regrow on every segment.
    pub(super) fn shrink_oversized(&mut self) {
        self.rcv.buffer.shrink_oversized();
        self.snd.buffer.shrink_oversized();
        self.snd.rack.shrink_oversized();
        self.snd.scoreboard.shrink_oversized();
        if let Some(q) = self.snd.skbs.as_mut() {
            q.shrink_oversized();
        }
        shrink_after_peak(&mut self.snd.records, 0);
    }

    /// Give back the storage of whatever is empty.
    pub(super) fn reclaim(&mut self) {
        self.rcv.buffer.release_if_empty();
        self.snd.buffer.release_if_empty();
        self.snd.rack.release_if_empty();
        self.snd.scoreboard.release_if_empty();
    }
}
