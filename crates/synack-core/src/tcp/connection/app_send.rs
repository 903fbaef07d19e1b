//! The application's side of sending: how much it may write (the send buffer, its
//! auto-tuning, `TCP_NOTSENT_LOWAT`), how a write is cut into the send queue (`MSG_MORE`,
//! `MSG_EOR`, `TCP_CORK`), and what an ACK frees.

use bytes::Bytes;

use super::{Connection, MAX_RECORDS};
use crate::error::Error;
use crate::options::SendFlags;
use crate::tcp::chrono::Limit;
use crate::tcp::send_buffer::{SendBuffer, SkbQueue, SKB_OVERHEAD};
use crate::tcp::State;
use crate::time::Instant;

impl Connection {
    /// Bytes that `send` would accept now: the buffer's room, within the memory budget.
    pub fn send_capacity(&self) -> usize {
        self.send_capacity_within(self.mem.room)
    }

    /// Bytes that `send` would accept with `room` bytes of memory left (at least the
    /// connection's floor, see `send_floor`): the budget handed to the connection
    /// (`mem.room`) is only refreshed when it is touched, so the endpoint, which knows the
    /// room as it stands, passes it here.
    pub fn send_capacity_within(&self, room: usize) -> usize {
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait
                if !self.snd.fin_queued =>
            {
                self.write_room().min(room.max(self.send_floor()))
            }
            _ => 0,
        }
    }

    /// Bytes a write may queue now, as far as the send buffer and `TCP_NOTSENT_LOWAT` go.
    ///
    /// With skb accounting, what Linux's `tcp_sendmsg` would take: the room left in the last
    /// unsent skb, then a whole size goal for each skb it may still start (one while less
    /// than the buffer is charged and fewer than the low-water mark's bytes wait unsent).
    /// Without, the buffer's free bytes, and no more than the low-water mark less what is
    /// unsent.
    fn write_room(&self) -> usize {
        let lowat = self.notsent_lowat();
        if !self.cfg.skb_accounting {
            let notsent = self.notsent();
            return self.snd.buffer.free().min(lowat.saturating_sub(notsent));
        }
        let goal = self.size_goal();
        let none = SkbQueue::default();
        let skbs = self.snd.skbs.as_deref().unwrap_or(&none);
        let tail = skbs.tail_room(goal);
        let charged = skbs.charged() + tail;
        let notsent = skbs.unsent() + tail;
        if charged >= self.snd.sndbuf || notsent >= lowat {
            return tail;
        }
        let by_buffer = (self.snd.sndbuf - charged).div_ceil(goal + SKB_OVERHEAD);
        let by_lowat = (lowat - notsent).div_ceil(goal);
        tail.saturating_add(by_buffer.min(by_lowat).saturating_mul(goal))
    }

    /// `TCP_NOTSENT_LOWAT` in force (no bound: `usize::MAX`).
    fn notsent_lowat(&self) -> usize {
        self.cfg.notsent_lowat.unwrap_or(usize::MAX)
    }

    /// Bytes queued and not yet sent (Linux's `write_seq - snd_nxt`).
    pub fn notsent(&self) -> usize {
        if self.cfg.skb_accounting {
            return self.snd.skbs.as_ref().map_or(0, |q| q.unsent());
        }
        let len = self.snd.buffer.len();
        let start = self.snd.data_start();
        let sent = if self.snd.max > start {
            (self.snd.max - start).min(len)
        } else {
            0
        };
        len - sent
    }

    /// The send buffer's size in force (Linux's `sk_sndbuf`).
    pub fn send_buffer_size(&self) -> usize {
        if self.cfg.skb_accounting {
            self.snd.sndbuf
        } else {
            self.snd.buffer.capacity()
        }
    }

    /// What the queued data charges against it (Linux's `sk_wmem_queued`).
    pub fn send_charged(&self) -> usize {
        if self.cfg.skb_accounting {
            self.snd.skbs.as_ref().map_or(0, |q| q.charged())
        } else {
            self.snd.buffer.len()
        }
    }

    /// Whether an application waiting to write should be woken (and a poll say `POLLOUT`):
    /// Linux's `__sk_stream_is_writeable(sk, 1)`. Free space at least half of what is
    /// charged, so that a woken writer finds a third of the buffer free and writes in large
    /// pieces instead of a segment's worth per ACK; and fewer than half the low-water mark's
    /// bytes unsent (`tcp_stream_memory_free` with `wake`), so that it is woken with room to
    /// queue, not at the edge.
    pub fn is_writeable(&self) -> bool {
        let (charged, size) = (self.send_charged(), self.send_buffer_size());
        charged < size
            && size - charged >= charged / 2
            && self.notsent().saturating_mul(2) < self.notsent_lowat()
    }

    /// `is_writeable` for an application about to wait: if it is not, the connection owes
    /// `Writable` once it is (Linux's `tcp_poll` sets `SOCK_NOSPACE`).
    pub fn poll_writeable(&mut self) -> bool {
        let writeable = self.is_writeable();
        if !writeable {
            self.nospace = true;
        }
        writeable
    }

    /// Set `TCP_NOTSENT_LOWAT` (`None`: the endpoint's default). A larger mark may let a
    /// waiting writer go at once, as Linux's setsockopt calls `sk_write_space`.
    pub fn set_notsent_lowat(&mut self, lowat: Option<usize>) {
        std::sync::Arc::make_mut(&mut self.cfg).notsent_lowat = lowat;
        if self.nospace && self.is_writeable() {
            self.nospace = false;
            self.notify.writable = true;
        }
    }

    /// The most a write puts in one skb (Linux's `tcp_xmit_size_goal`): as many whole
    /// segments as one offloaded packet carries (the offload size less Linux's header
    /// reserve, `MAX_TCP_HEADER + 1`), but no more than half the largest window the peer
    /// offered (`tcp_bound_to_half_wnd`), and at least one segment.
    fn size_goal(&self) -> usize {
        let mss = self.payload_room().max(1);
        let gso = self.cfg.gso_max_size.saturating_sub(321);
        let cutoff = self.half_max_window();
        let goal = if cutoff > 0 && gso > cutoff {
            cutoff
        } else {
            gso
        };
        (goal / mss * mss).max(mss)
    }

    /// Linux's `tcp_sndbuf_expand`: room for twice the congestion window (at least the
    /// initial ten segments) in the memory each segment takes at worst (its payload and
    /// headers in a power-of-two allocation, with the skb's own overhead), up to
    /// `send_buffer_max` (which `SO_SNDBUF` pins). Never shrinks the buffer.
    pub(super) fn expand_sndbuf(&mut self) {
        if self.mem.pressure {
            return;
        }
        let mss = self.snd.mss.max(1);
        let per_mss = (mss + 320 + 320).next_power_of_two() + 256;
        let segs = (self.cc.window() / mss).max(10);
        let want = segs
            .saturating_mul(2 * per_mss)
            .min(self.cfg.send_buffer_max);
        if self.snd.sndbuf < want {
            self.snd.sndbuf = want;
        }
    }

    /// After the connection sent what it could (the endpoint drained its output): the
    /// chronograph's rwnd and sndbuf limits (Linux's `tcp_write_xmit` and
    /// `tcp_cwnd_validate`), the split of the skb where sending stopped, and the write-space
    /// check (Linux's `tcp_check_space`). Returns whether the application is owed
    /// `Writable`.
    pub fn after_transmit(&mut self, now: Instant) -> bool {
        if !self.is_synchronized() {
            return false;
        }
        let len = self.snd.buffer.len();
        let start = self.snd.data_start();
        let sent_to = if self.snd.max > start {
            (self.snd.max - start).min(len)
        } else {
            0
        };
        if self.cfg.skb_accounting {
            if let Some(q) = self.snd.skbs.as_mut() {
                q.mark_sent(sent_to);
            }
        }
        let sent_new = self.snd.max > self.chrono_max;
        self.chrono_max = self.snd.max;
        let unsent = len - sent_to;
        let queued = len > 0;
        if queued {
            // Linux starts the busy clock when data joins an empty queue: here, when the
            // output path first sees it (at once, after the write).
            self.chrono.start(now, Limit::Busy);
        }
        if unsent > 0 {
            // tcp_write_xmit: the peer's window stopped the next segment where the
            // congestion window would have let it go.
            let next = self.snd.nxt + unsent.min(self.snd.mss);
            let rwnd = next > self.snd.una + self.snd.wnd;
            if rwnd && self.snd.in_flight() < self.cc.window() {
                self.chrono.start(now, Limit::Rwnd);
            } else {
                self.chrono.stop(now, Limit::Rwnd, queued);
            }
        } else if sent_new {
            self.chrono.stop(now, Limit::Rwnd, queued);
            // tcp_cwnd_validate: all queued is sent, the congestion window had room, and the
            // application waits for buffer space: the send buffer is what limits.
            if self.nospace
                && !self.cwnd_limited()
                && matches!(self.state, State::Established | State::CloseWait)
            {
                self.chrono.start(now, Limit::Sndbuf);
            }
        }
        if !queued {
            self.chrono.stop(now, Limit::Busy, false);
        }
        self.check_space(now, true)
    }

    /// Linux's `tcp_check_space`/`tcp_new_space`: for an application waiting on a full
    /// buffer, grow the buffer if the congestion window has room (skb accounting, and only
    /// with `expand`, once sending stopped: Linux looks after its transmission), and wake it
    /// once the buffer is writeable. Returns whether to wake it.
    pub(super) fn check_space(&mut self, now: Instant, expand: bool) -> bool {
        if !self.nospace {
            return false;
        }
        if expand
            && self.cfg.skb_accounting
            && self.snd.in_flight() / self.snd.mss.max(1) < self.cc.window() / self.snd.mss.max(1)
        {
            self.expand_sndbuf();
        }
        if !self.is_writeable() {
            return false;
        }
        self.nospace = false;
        let queued = !self.snd.buffer.is_empty();
        self.chrono.stop(now, Limit::Sndbuf, queued);
        true
    }

    /// Application write (RFC 9293 §3.10.2 SEND).
    pub fn send(&mut self, data: &[u8], flags: SendFlags) -> Result<usize, Error> {
        self.queue(data.len(), flags, |buf, from, to| buf.push(&data[from..to]))
    }

    /// Application write of bytes the application already holds as [`Bytes`]: queued as they
    /// are, without a copy (see [`SendBuffer::push_bytes`](crate::tcp::send_buffer::SendBuffer::push_bytes)).
    pub fn send_bytes(&mut self, data: Bytes, flags: SendFlags) -> Result<usize, Error> {
        self.queue(data.len(), flags, |buf, from, to| {
            buf.push_bytes(data.slice(from..to))
        })
    }

    /// `TCP_CORK` on or off. Removing the cork lets what waits go under the usual Nagle
    /// rules (Linux's `__tcp_sock_set_cork`, which pushes the queue with the socket's own
    /// Nagle setting): what an earlier `MSG_MORE` write held too, since MSG_MORE held only
    /// that write's own push; with TCP_NODELAY on, all of it (`TCP_NAGLE_PUSH`).
    pub fn set_cork(&mut self, cork: bool) {
        self.cork = cork;
        if !cork {
            self.more = false;
            if self.nodelay {
                self.push_now = true;
            }
        }
    }

    /// Whether `TCP_CORK` is on.
    pub fn cork(&self) -> bool {
        self.cork
    }

    /// The one write path behind `send` and `send_bytes`: `push(buffer, from, to)` queues
    /// the application's bytes `[from, to)` and returns how many it took. If they do not
    /// all fit, the buffer may grow once (auto-tuning) and take more. Never more than the
    /// memory budget's room (or the connection's floor, `send_floor`) is taken: at the
    /// endpoint's cap a write is cut short, or refused with `WouldBlock`, until memory
    /// drains (`Writable` follows). `flags` say how the write is to be segmented (see
    /// [`SendFlags`]).
    fn queue(
        &mut self,
        len: usize,
        flags: SendFlags,
        mut push: impl FnMut(&mut SendBuffer, usize, usize) -> usize,
    ) -> Result<usize, Error> {
        match self.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {}
            State::Closed => return Err(self.error.unwrap_or(Error::BrokenPipe)),
            // "error: connection closing": the kernel says EPIPE.
            _ => return Err(Error::BrokenPipe),
        }
        if self.snd.fin_queued {
            return Err(Error::BrokenPipe);
        }
        if len == 0 {
            // An empty write still sends a SYN that TCP_FASTOPEN_CONNECT deferred, without
            // data (Linux's tcp_sendmsg_fastopen runs before the length matters).
            self.fast_open_release();
            return Ok(0);
        }
        if flags.eor && self.snd.records.len() >= MAX_RECORDS {
            // Owed a wake-up like any refused write: the next ACK frees records.
            self.nospace = true;
            return Err(Error::WouldBlock);
        }
        let allowed = len.min(self.mem.room.max(self.send_floor()));
        if allowed < len {
            self.mem.starved = true;
        }
        let n = if self.cfg.skb_accounting {
            let take = self.size_write(allowed);
            push(&mut self.snd.buffer, 0, take)
        } else {
            // Without the skb view, a write that finds nothing unsent begins new data (one
            // appended to unsent data would join Linux's tail skb).
            let begins = self.notsent() == 0;
            let lowat_room = self.notsent_lowat().saturating_sub(self.notsent());
            let allowed = allowed.min(lowat_room);
            let mut n = push(&mut self.snd.buffer, 0, allowed);
            if n < allowed && self.grow_send_buffer() {
                n += push(&mut self.snd.buffer, n, allowed);
            }
            self.cwnd_use.judge_idle |= begins && n > 0;
            n
        };
        self.mem.room = self.mem.room.saturating_sub(n);
        if n < len {
            // Linux's wait_for_space: the application is owed a wake-up.
            self.nospace = true;
        }
        if n == 0 {
            return Err(Error::WouldBlock);
        }
        self.fast_open_release();
        let end = self.snd.data_start() + self.snd.buffer.len();
        // Linux marks the record's end only once the whole write is queued; the rest of a
        // partial write continues the record.
        if flags.eor && n == len {
            self.snd.records.push_back(end);
            if self.cfg.skb_accounting {
                if let Some(q) = self.snd.skbs.as_mut() {
                    q.close_tail();
                }
            }
        }
        self.snd.push_at_end = !flags.more;
        if self.cfg.skb_accounting {
            // Linux's tcp_push at the end of the write marks its last skb unless MSG_MORE
            // holds it and no forced push is due; a write cut short for room is marked
            // whatever its flags (the tcp_push before sk_stream_wait_memory drops MSG_MORE).
            let write_seq = self.snd.data_start() + self.snd.buffer.len();
            let max_wnd = self.snd.max_wnd;
            if let Some(q) = self.snd.skbs.as_mut() {
                if !flags.more || n < len || q.forced_push(write_seq, max_wnd) {
                    q.mark_push(write_seq);
                }
            }
        }
        self.more = flags.more;
        // A write ends TCP_NODELAY's push (Linux's `skb_entail` clears TCP_NAGLE_PUSH): what
        // it queued goes by the usual rules, cork and MSG_MORE included.
        self.push_now = false;
        Ok(n)
    }

    /// Drops `n` acknowledged bytes from the front of the send buffer, and from the skb view
    /// that mirrors it (Linux profile), so that the two stay aligned.
    pub(super) fn consume_acked(&mut self, n: usize) {
        self.snd.buffer.consume(n);
        if self.cfg.skb_accounting {
            if let Some(q) = self.snd.skbs.as_mut() {
                q.consume(n);
            }
        }
    }

    /// How much of a write of `len` bytes Linux's `tcp_sendmsg` would take, recorded in the
    /// skb view: appended to the last unsent skb up to the size goal, then in new skbs of the
    /// size goal while less than the buffer is charged and fewer than the low-water mark's
    /// bytes wait unsent (`sk_stream_memory_free`). Each skb filled to the goal at the head of
    /// what is unsent goes out as far as the windows let it while the write goes on
    /// (`tcp_push_one`): it is counted as sent, and split where the windows end.
    ///
    /// The push marks go with it (see [`SkbQueue::psh_within`]): the write's first bytes
    /// appended to the last skb take its PSH away, and an skb filled to the goal while the
    /// write goes on is marked when the writes have run half the peer's largest window past
    /// the last mark (Linux's `forced_push` and `tcp_mark_push` in `tcp_sendmsg_locked`).
    /// The mark at the end of the write is `queue`'s (`tcp_push`).
    fn size_write(&mut self, len: usize) -> usize {
        let goal = self.size_goal();
        let mss = self.payload_room().max(1);
        // The most one packet carries (Linux's push sends one: `tcp_write_xmit` with
        // `push_one`, its size from `tcp_tso_segs`).
        let packet = self.tso_segments(mss).saturating_mul(mss);
        // Where a push would stop: the peer's and the congestion window, in whole segments.
        let start = self.snd.data_start();
        let sendable = matches!(self.state, State::Established | State::CloseWait)
            || self.is_fast_open_child();
        let edge = self.snd.una + self.snd.wnd.min(self.cc.window());
        let edge = if sendable && edge > start {
            edge - start
        } else {
            0
        };
        let lowat = self.notsent_lowat();
        let max_wnd = self.snd.max_wnd;
        // The skb view is made on the first write (Linux profile only): a connection that
        // never writes, or runs without it, carries one pointer.
        let skbs = self.snd.skbs.get_or_insert_with(Default::default);
        let mut taken = 0;
        while taken < len {
            let left = len - taken;
            let tail = skbs.tail_room(goal).min(left);
            if tail > 0 {
                if taken == 0 {
                    skbs.clear_tail_push();
                }
                skbs.extend_tail(tail);
                taken += tail;
            } else if skbs.charged() < self.snd.sndbuf && skbs.unsent() < lowat {
                let n = goal.min(left);
                skbs.push_skb(n);
                // A new skb: Linux's `tcp_skb_entail` judges slow start after idle.
                self.cwnd_use.judge_idle = true;
                taken += n;
            } else {
                break;
            }
            let tail_start = skbs.tail_start();
            let write_seq = start + skbs.bytes();
            if taken < len
                && skbs.bytes() - tail_start == goal
                && skbs.forced_push(write_seq, max_wnd)
            {
                skbs.mark_push(write_seq);
            }
            if skbs.bytes() - tail_start == goal && tail_start == skbs.unsent_start() {
                let room = edge.saturating_sub(tail_start);
                let push = goal.min(room - room % mss);
                if push > 0 {
                    skbs.mark_sent(tail_start + push);
                    if push <= packet {
                        // It left as one packet, before the write queued more.
                        skbs.note_pushed_one(tail_start + push);
                    }
                }
            }
        }
        taken
    }

    /// Send-buffer auto-tuning (after Linux `tcp_sndbuf_expand`): when the application has
    /// more to write than fits and the congestion and peer windows could carry half the
    /// buffer, double it (up to the configured ceiling), so the buffer never caps a flow the
    /// path could carry.
    fn grow_send_buffer(&mut self) -> bool {
        let cap = self.snd.buffer.capacity();
        let usable = self.cc.window().min(self.snd.max_wnd.max(self.snd.wnd));
        if self.mem.pressure || cap >= self.cfg.send_buffer_max || usable < cap / 2 {
            return false;
        }
        let new = (cap * 2).min(self.cfg.send_buffer_max);
        self.snd.buffer.set_capacity(new);
        true
    }
}
