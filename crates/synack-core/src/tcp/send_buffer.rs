//! The send buffer: bytes the application wrote and the peer has not acknowledged yet.
//!
//! Offset 0 is SND.UNA. The first `SND.NXT - SND.UNA` bytes are in flight, the rest are
//! unsent; the buffer does not know where that boundary is (the connection does), it only
//! keeps the bytes in order so that any of them can be (re)sent with [`SendBuffer::copy_out`]
//! and dropped with [`SendBuffer::consume`] once cumulatively acknowledged
//! (RFC 9293 §3.10.7.4, "If SND.UNA < SEG.ACK =< SND.NXT ... any segments on the
//! retransmission queue that are thereby entirely acknowledged are removed").
//!
//! Storage is a queue of [`Bytes`] chunks, as Linux keeps a queue of skbs:
//! - [`SendBuffer::push_bytes`] queues the application's own `Bytes` without copying them
//!   (an HTTP body, a cached file), the zero-copy path; pieces under [`COPY_BELOW`] bytes
//!   are copied instead, as a chunk of their own would cost more than their bytes;
//! - [`SendBuffer::push`] copies a byte slice into a tail chunk that grows on demand, up to
//!   [`CHUNK`] bytes (or, once its allocation holds more than half of that, until the
//!   allocation is full), and is then frozen into the queue, so an idle connection with a
//!   large configured buffer costs nothing and a small write costs a small allocation;
//! - acknowledged chunks are dropped whole, so memory goes back as the peer acknowledges;
//! - but a chunk that nothing else holds any more (the device has written it) and whose
//!   allocation holds a whole [`CHUNK`] (as `push`'s full chunks do) is kept as a spare for
//!   the next writes, up to the buffer's capacity, so that
//!   a bulk sender cycles through the same few allocations, the last one freed (warm in
//!   cache) filled first. Given back to the allocator instead, 64 KiB at a time and on
//!   whichever thread processed the ACK, the memory was returned to the system by glibc's
//!   heap trimming, and each next write page-faulted it back in (20 % of a writing thread
//!   on a multi-thread runtime: BENCHMARKS.md, fifty-fourth session). Spares are charged as
//!   queued bytes are, dropped under memory pressure, and given back with the rest of an
//!   idle buffer's storage.

use std::cell::Cell;
use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::seq::SeqNumber;
use crate::shrink::{oversized, shrink_after_peak};

/// The largest chunk `push` fills before starting another.
pub const CHUNK: usize = 64 * 1024;

/// The smallest tail allocation, so that a stream of tiny writes does not reallocate per byte.
const MIN_ALLOC: usize = 1024;

/// [`SendBuffer::push_bytes`] copies what is shorter than this rather than queue it by
/// reference.
pub const COPY_BELOW: usize = 1024;

/// Bytes written by the application and not yet acknowledged, in stream order.
#[derive(Debug, Clone)]
pub struct SendBuffer {
    /// Frozen chunks from offset 0 on, then `tail`.
    chunks: VecDeque<Bytes>,
    /// Bytes `push` copied in and not yet frozen: the last bytes of the stream.
    tail: BytesMut,
    /// Bytes held (all chunks and the tail).
    len: usize,
    /// The most bytes the buffer accepts.
    capacity: usize,
    /// Acknowledged chunks kept for reuse, each with room for [`CHUNK`] bytes; the last
    /// one freed is reused first. Boxed: most connections never have one, and an idle
    /// connection's footprint is counted in bytes (`tests/idle_footprint.rs`): one pointer
    /// in every connection, where the `Vec` itself would be three.
    #[allow(clippy::box_collection)]
    spare: Option<Box<Vec<BytesMut>>>,
    /// Where the last `copy_out` found its first chunk: `(index in chunks, offset of that
    /// chunk)`. Segments go out in order, so the next lookup starts there instead of at the
    /// front of a queue that can hold a hundred chunks. Kept in `u32`s (the capacity is at
    /// most [`MAX_CAPACITY`]), for the same footprint.
    cursor: Cell<(u32, u32)>,
}

/// Spare chunks a buffer that still holds data keeps when the reclaim timer finds more
/// (`SendBuffer::shrink_oversized`): room for the next writes, while the rest of what a
/// burst left goes back.
const SPARES_KEPT: usize = 2;

/// The most bytes a send buffer takes: Linux's `sk_sndbuf` is an `int`.
pub const MAX_CAPACITY: usize = u32::MAX as usize;

impl SendBuffer {
    /// An empty buffer that will accept up to `capacity` bytes. Nothing is allocated yet.
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            spare: None,
            len: 0,
            capacity: capacity.min(MAX_CAPACITY),
            cursor: Cell::new((0, 0)),
        }
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes held (unacknowledged plus unsent).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room for more application bytes.
    pub fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len)
    }

    /// Copies in as much of `data` as fits and returns how much that was.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        let mut rest = &data[..n];
        while !rest.is_empty() {
            let mut room = self.tail_room();
            if room == 0 {
                self.freeze_tail();
                room = self.tail_room();
            }
            let take = rest.len().min(room);
            if self.tail.capacity() - self.tail.len() < take && self.tail.is_empty() {
                if let Some(spare) = self.spare.as_mut().and_then(|s| s.pop()) {
                    self.tail = spare;
                }
            }
            if self.tail.capacity() - self.tail.len() < take {
                // Grow geometrically from a small start, never past one chunk.
                let want = (self.tail.len() + take)
                    .max(2 * self.tail.capacity())
                    .clamp(MIN_ALLOC, CHUNK);
                self.tail.reserve(want - self.tail.len());
            }
            self.tail.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        self.len += n;
        n
    }

    /// Queues as much of `data` as fits, without copying it, and returns how much that was
    /// (the caller keeps `data.slice(n..)` for later).
    ///
    /// A piece shorter than [`COPY_BELOW`] is copied into the tail as [`SendBuffer::push`]
    /// copies, since as a chunk of its own it would cost more than its bytes: a slot of the
    /// queue and a shared header for a handful of bytes, which a stream of one-byte writes
    /// would turn into fifty times the bytes the memory budget counts. Linux copies every
    /// `sendmsg` into its skbs and goes by reference only for whole pages (`MSG_ZEROCOPY`,
    /// `sendfile`).
    pub fn push_bytes(&mut self, data: Bytes) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        if n < COPY_BELOW {
            return self.push(&data[..n]);
        }
        // What `push` copied earlier comes first in the stream.
        if !self.tail.is_empty() {
            self.freeze_tail();
        }
        self.chunks.push_back(data.slice(..n));
        self.len += n;
        n
    }

    /// Drops `n` bytes from the front (they were acknowledged); `n` is clamped to `len()`.
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        let (mut index, mut start) = self.cursor();
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if n < front.len() {
                front.advance(n);
                start = start.saturating_sub(n);
                break;
            }
            n -= front.len();
            start = start.saturating_sub(front.len());
            index = index.saturating_sub(1);
            if let Some(chunk) = self.chunks.pop_front() {
                self.keep_spare(chunk);
            }
        }
        if self.len == 0 {
            // Start the next write at the front of the tail's allocation.
            self.tail.clear();
            index = 0;
            start = 0;
        }
        self.set_cursor(index, start);
    }

    /// Copies the bytes at `[offset, offset + dst.len())` into `dst`, clamped to what is held,
    /// and returns how many were copied (zero if `offset >= len()`).
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = dst.len().min(self.len - offset);
        let (mut index, start) = self.find(offset);
        let mut copied = 0;
        let mut skip = offset - start;
        while copied < n {
            let chunk: &[u8] = match self.chunks.get(index) {
                Some(c) => c,
                None => &self.tail,
            };
            let take = (chunk.len() - skip).min(n - copied);
            dst[copied..copied + take].copy_from_slice(&chunk[skip..skip + take]);
            copied += take;
            skip = 0;
            index += 1;
        }
        n
    }

    /// Appends to `out` the bytes at `[offset, offset + len)` as [`Bytes`] handles on the
    /// buffer's own chunks, clamped to what is held, and returns how many bytes that was: the
    /// same bytes [`SendBuffer::copy_out`] would copy, uncopied, for a device that writes a
    /// packet's payload from where it lies (`Endpoint::poll_transmit_gather`). A range that
    /// reaches into the bytes `push` is still filling freezes them into a chunk first; the
    /// tail keeps the rest of its allocation for the next writes.
    pub fn slices(&mut self, offset: usize, len: usize, out: &mut Vec<Bytes>) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = len.min(self.len - offset);
        let frozen = self.len - self.tail.len();
        if offset + n > frozen {
            self.freeze_tail();
        }
        let (mut index, start) = self.find(offset);
        let mut taken = 0;
        let mut skip = offset - start;
        while taken < n {
            let Some(chunk) = self.chunks.get(index) else {
                break;
            };
            let take = (chunk.len() - skip).min(n - taken);
            out.push(chunk.slice(skip..skip + take));
            taken += take;
            skip = 0;
            index += 1;
        }
        debug_assert_eq!(
            taken, n,
            "every byte held is in a chunk once the tail is frozen"
        );
        taken
    }

    /// Bytes of heap the buffer holds: the queued chunks (the application's own `Bytes`
    /// included, which it may share), the tail's allocation, the spares and the queue's
    /// slots.
    pub fn allocated(&self) -> usize {
        let chunks: usize = self.chunks.iter().map(Bytes::len).sum();
        chunks
            + self.tail.capacity()
            + self.spare_bytes()
            + self.chunks.capacity() * core::mem::size_of::<Bytes>()
    }

    /// Bytes held in spare chunks, kept for the next writes.
    pub fn spare_bytes(&self) -> usize {
        self.spare
            .iter()
            .flat_map(|s| s.iter())
            .map(BytesMut::capacity)
            .sum()
    }

    /// Gives the spare chunks back to the allocator.
    pub fn drop_spares(&mut self) {
        self.spare = None;
    }

    /// Whether nothing is queued but storage is still held.
    pub fn idle_storage(&self) -> bool {
        self.len == 0
            && (self.tail.capacity() > 0 || self.chunks.capacity() > 0 || self.spare.is_some())
    }

    /// Whether the buffer keeps far more room than it holds: more than [`SPARES_KEPT`]
    /// spare chunks, which the acknowledged data of a burst left, or a chunk queue with
    /// room for far more chunks than it has (see `shrink::oversized`).
    pub fn oversized(&self) -> bool {
        self.spare.as_ref().is_some_and(|s| s.len() > SPARES_KEPT) || oversized(&self.chunks, 0)
    }

    /// Gives back what an [`oversized`](Self::oversized) buffer holds beyond that. Linux
    /// keeps no spare at all: `sk_mem_uncharge` gives back forward-allocated memory past a
    /// page at once.
    pub fn shrink_oversized(&mut self) {
        if let Some(spare) = self.spare.as_mut() {
            spare.truncate(SPARES_KEPT);
            spare.shrink_to_fit();
        }
        shrink_after_peak(&mut self.chunks, 0);
    }

    /// Gives the storage back if nothing is queued.
    pub fn release_if_empty(&mut self) {
        if self.len == 0 {
            self.tail = BytesMut::new();
            self.chunks = VecDeque::new();
            self.spare = None;
            self.set_cursor(0, 0);
        }
    }

    /// Keeps an acknowledged chunk as a spare if nothing else holds it (not a device still
    /// writing it, nor an application that still has its own `Bytes`), its allocation has
    /// room for a whole [`CHUNK`] (`push`'s full chunks do; a small writer's tail does
    /// not) and not much more, and the spares and what is queued stay within the capacity.
    ///
    /// An application's own allocation, handed over by `send_bytes` and let go, is never
    /// kept: it may be megabytes (a whole file read into a `Vec`), which the capacity's
    /// count of chunks did not see, charged to the endpoint's memory as a cache nobody
    /// uses, as Linux gives zero-copy pages back when they are done with.
    fn keep_spare(&mut self, mut chunk: Bytes) {
        if self.len + self.spare_bytes() + CHUNK > self.capacity {
            return;
        }
        if chunk.is_empty() || !chunk.is_unique() {
            return;
        }
        // Cut to one byte first, so that taking it back copies at most that (`clear` would
        // let go of the memory).
        chunk.truncate(1);
        if let Ok(mut buf) = chunk.try_into_mut() {
            buf.clear();
            // Back to the start of its allocation, if that holds a chunk; never allocates.
            if buf.try_reclaim(CHUNK)
                && buf.capacity() <= 2 * CHUNK
                && self.len + self.spare_bytes() + buf.capacity() <= self.capacity
            {
                self.spare.get_or_insert_default().push(buf);
            }
        }
    }

    /// Changes how many bytes the buffer accepts; never below what it holds now. Memory is
    /// given back as chunks are acknowledged, whatever the capacity.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.min(MAX_CAPACITY).max(self.len);
    }

    /// Where the last lookup found its chunk: `(index in chunks, offset of that chunk)`.
    fn cursor(&self) -> (usize, usize) {
        let (index, start) = self.cursor.get();
        (index as usize, start as usize)
    }

    fn set_cursor(&self, index: usize, start: usize) {
        // Both fit: `start` is below `len`, at most `MAX_CAPACITY`, and there are fewer
        // chunks than bytes. Were one not to, an index past the queue makes the next lookup
        // start over from the front.
        let cursor = match (u32::try_from(index), u32::try_from(start)) {
            (Ok(index), Ok(start)) => (index, start),
            _ => (u32::MAX, 0),
        };
        self.cursor.set(cursor);
    }

    /// The chunk that holds `offset` (the tail counts as chunk `chunks.len()`) and the offset
    /// its first byte has, found from the last lookup's place onward (segments go out in
    /// order), which is remembered for the next.
    fn find(&self, offset: usize) -> (usize, usize) {
        let (mut index, mut start) = self.cursor();
        if offset < start || index > self.chunks.len() {
            (index, start) = (0, 0);
        }
        while index < self.chunks.len() && offset >= start + self.chunks[index].len() {
            start += self.chunks[index].len();
            index += 1;
        }
        debug_assert_eq!(
            start,
            self.chunks
                .iter()
                .take(index)
                .map(Bytes::len)
                .sum::<usize>(),
            "the cursor names where its chunk starts"
        );
        self.set_cursor(index, start);
        (index, start)
    }

    /// What the tail may still take: up to [`CHUNK`] bytes, its allocation growing as
    /// needed; but once that allocation holds more than half a chunk, only what it has left.
    /// The ACKs may have consumed the tail's front (`consume` advances it), leaving it
    /// shorter than a chunk with its allocation used up, and growing it then would copy it
    /// whole: once for every chunk of a bulk transfer, whose writes follow its ACKs.
    fn tail_room(&self) -> usize {
        let (len, capacity) = (self.tail.len(), self.tail.capacity());
        if capacity > CHUNK / 2 {
            capacity.min(CHUNK).saturating_sub(len)
        } else {
            CHUNK - len
        }
    }

    /// Moves the tail's bytes into the queue as a frozen chunk.
    fn freeze_tail(&mut self) {
        let full = self.tail.split();
        self.chunks.push_back(full.freeze());
    }
}

/// What Linux charges a send-queue skb beyond its payload (its `truesize` with no data), on
/// x86-64: `SKB_TRUESIZE(704)`, the 704 usable bytes of the 1 KiB head allocated for the
/// headers (`MAX_TCP_HEADER`) plus `struct sk_buff` (256) and `skb_shared_info` (320). Only
/// [`Config::skb_accounting`](crate::Config::skb_accounting) uses it.
pub const SKB_OVERHEAD: usize = 1280;

/// Linux's view of the send queue, skb by skb, for sizing writes and charging the send
/// buffer as Linux does ([`Config::skb_accounting`](crate::Config::skb_accounting)): the
/// bytes of [`SendBuffer`] cut into the packets Linux would hold them in.
///
/// Linux's `tcp_sendmsg` appends to the last unsent skb up to the size goal, and starts a
/// new one only while the socket is charged less than its send buffer (`sk_wmem_queued <
/// sk_sndbuf`, `sk_stream_memory_free`); a transmission that ends inside an skb splits it
/// (`tcp_fragment`), the unsent rest becoming an skb of its own that later writes fill up.
/// Each skb costs [`SKB_OVERHEAD`] beyond its payload until it is wholly acknowledged.
#[derive(Debug, Clone, Default)]
pub struct SkbQueue {
    /// Payload bytes of each skb, from SND.UNA's byte (offset 0) on.
    lens: VecDeque<usize>,
    /// Their sum: the bytes of the [`SendBuffer`].
    bytes: usize,
    /// Bytes below this offset are sent (or, within a write, about to be: `tcp_push_one`).
    sent: usize,
    /// The last skb ends a `MSG_EOR` record: nothing is appended to it.
    tail_closed: bool,
    /// Where the packets that writes pushed on their own end (offsets like `lens`, in
    /// order): see [`SkbQueue::note_pushed_one`].
    pushed_ends: VecDeque<usize>,
    /// The last skb carries PSH (Linux's `tcp_mark_push`). It moves with the skb's end as a
    /// write appends to it, and a later write that appends clears it (`tcp_sendmsg_locked`
    /// drops PSH from the skb its first bytes land in).
    tail_psh: bool,
    /// Where the earlier skbs that carry PSH end, as offsets like `lens`, in order. Each was
    /// the last skb when it was marked; a split leaves the mark on the rest of the skb
    /// (`tso_fragment` and `tcp_fragment` clear PSH on the part before the cut), so the
    /// mark stays where the skb ends.
    psh_ends: VecDeque<usize>,
    /// Linux's `pushed_seq`: the sequence number the last push mark was set at, against
    /// which `forced_push` measures how far the writes have run since.
    pushed_seq: Option<SeqNumber>,
    /// Where each packet of new data sent ended, as offsets like `lens`, in order: the skbs
    /// of Linux's retransmission queue, which `tso_fragment` cuts at every packet it sends
    /// and which a retransmission resends one at a time (`tcp_xmit_retransmit_queue`). Kept
    /// apart from `lens`, whose skbs are charged as Linux charges its write queue.
    packet_ends: VecDeque<usize>,
}

/// The most packet ends [`SkbQueue::note_pushed_one`] keeps; past it the oldest is dropped
/// (a packet may then merge with the next, as it would have without the rule).
const MAX_PUSHED_ENDS: usize = 64;

/// The most packets of new data [`SkbQueue::note_packet`] remembers (32 KiB). A peer that
/// offers a tiny MSS and holds its ACKs would otherwise have it remember one end for every
/// few bytes of the send buffer; past the cap the oldest end is forgotten, and a resend of
/// those bytes is sized as if the packet had run on to the next end still known (the
/// recovery allowance and the TSO size bound it all the same).
const MAX_PACKET_ENDS: usize = 4096;

impl SkbQueue {
    /// skbs held (for the tests).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.lens.len()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What Linux's `sk_wmem_queued` would be: payload plus [`SKB_OVERHEAD`] per skb.
    pub fn charged(&self) -> usize {
        self.bytes + SKB_OVERHEAD * self.lens.len()
    }

    /// Bytes held and not sent.
    pub fn unsent(&self) -> usize {
        self.bytes - self.sent.min(self.bytes)
    }

    /// Bytes a write may append to the last skb without starting another (Linux's `copy =
    /// size_goal - skb->len` for the tail of the write queue): only an unsent skb is
    /// appended to, and only up to `goal`.
    pub fn tail_room(&self, goal: usize) -> usize {
        match self.lens.back() {
            Some(&len) if !self.tail_closed && self.bytes - len >= self.sent => {
                goal.saturating_sub(len)
            }
            _ => 0,
        }
    }

    /// Appends `n` bytes to the last skb (see [`SkbQueue::tail_room`]).
    pub fn extend_tail(&mut self, n: usize) {
        if let Some(len) = self.lens.back_mut() {
            *len += n;
            self.bytes += n;
        } else {
            self.push_skb(n);
        }
    }

    /// Queues a new skb of `n` bytes.
    pub fn push_skb(&mut self, n: usize) {
        if std::mem::take(&mut self.tail_psh) {
            // The old tail keeps its mark where it ends.
            self.psh_ends.push_back(self.bytes);
        }
        self.lens.push_back(n);
        self.bytes += n;
        self.tail_closed = false;
    }

    /// The last skb ends a record (`MSG_EOR`): later writes start a new one.
    pub fn close_tail(&mut self) {
        self.tail_closed = true;
    }

    /// Linux's `tcp_mark_push`: the last skb carries PSH, and `write_seq` (the sequence
    /// number the queue ends at) is the new `pushed_seq`.
    pub fn mark_push(&mut self, write_seq: SeqNumber) {
        if !self.lens.is_empty() {
            self.tail_psh = true;
        }
        self.pushed_seq = Some(write_seq);
    }

    /// The last skb carries PSH, as Linux's `tcp_write_wakeup` sets it on the skb it sends;
    /// `pushed_seq` stays (a probe is no push of the queue).
    pub fn mark_tail_push(&mut self) {
        if !self.lens.is_empty() {
            self.tail_psh = true;
        }
    }

    /// The packet that ends at `end` (an offset like `lens`) carries PSH for good, as Linux's
    /// `tcp_write_wakeup` sets it on the skb it sends part of before it splits it there
    /// (`tcp_fragment` then leaves the part sent with the flag set again): a resend of those
    /// bytes carries it too. The rest keeps the flags it had.
    pub fn mark_push_at(&mut self, end: usize) {
        if end == 0 || end > self.bytes {
            return;
        }
        if end == self.bytes {
            self.mark_tail_push();
            return;
        }
        let i = self.psh_ends.partition_point(|&e| e < end);
        if self.psh_ends.get(i) != Some(&end) {
            self.psh_ends.insert(i, end);
        }
    }

    /// A new write's first bytes went into the last skb: it loses its PSH, which the end of
    /// the write sets again where it then ends (`tcp_sendmsg_locked`: `if (!copied)
    /// TCP_SKB_CB(skb)->tcp_flags &= ~TCPHDR_PSH`).
    pub fn clear_tail_push(&mut self) {
        self.tail_psh = false;
    }

    /// Linux's `forced_push`: the writes ran more than half the largest window the peer
    /// offered past the last push mark (`write_seq` after `pushed_seq + max_window / 2`).
    /// The first mark is taken as set where the queue started.
    pub fn forced_push(&mut self, write_seq: SeqNumber, max_window: usize) -> bool {
        let pushed = *self.pushed_seq.get_or_insert(write_seq - self.bytes);
        write_seq > pushed + max_window / 2
    }

    /// Whether an skb that carries PSH ends in `(from, to]` (offsets like `lens`): a segment
    /// covering those bytes carries the flag of the skb it ends (Linux sends the flags of
    /// the skb, or of the part of it that a split left, as they stand).
    pub fn psh_within(&self, from: usize, to: usize) -> bool {
        let inside = |end: usize| from < end && end <= to;
        // The ends are in order: the first one past `from` decides.
        let first = self.psh_ends.partition_point(|&end| end <= from);
        (self.tail_psh && inside(self.bytes))
            || self.psh_ends.get(first).is_some_and(|&end| inside(end))
    }

    /// A packet of new data ending at `end` (an offset like `lens`) was sent.
    pub fn note_packet(&mut self, end: usize) {
        if self.packet_ends.back().is_none_or(|&last| last < end) {
            if self.packet_ends.len() >= MAX_PACKET_ENDS {
                self.packet_ends.pop_front();
            }
            self.packet_ends.push_back(end);
        }
    }

    /// Where the packet that carried the byte at `offset` ended, if it is still tracked.
    pub fn packet_end(&self, offset: usize) -> Option<usize> {
        let i = self.packet_ends.partition_point(|&end| end <= offset);
        self.packet_ends.get(i).copied()
    }

    /// Where the packet that ends at `end` (an offset like `lens`) started, if the packets
    /// up to it are still tracked: the end of the one before it, or 0 for the first.
    pub fn packet_start(&self, end: usize) -> Option<usize> {
        let i = self.packet_ends.partition_point(|&e| e < end);
        if self.packet_ends.get(i) != Some(&end) {
            return None;
        }
        Some(if i == 0 { 0 } else { self.packet_ends[i - 1] })
    }

    /// Heap bytes the view holds (its queues' storage), for the connection's memory count.
    pub fn allocated(&self) -> usize {
        let slots = self.lens.capacity()
            + self.psh_ends.capacity()
            + self.packet_ends.capacity()
            + self.pushed_ends.capacity();
        slots * core::mem::size_of::<usize>()
    }

    /// Whether a list keeps room for far more skbs or marks than it holds (see
    /// `shrink::oversized`).
    pub fn oversized(&self) -> bool {
        oversized(&self.lens, 0)
            || oversized(&self.pushed_ends, 0)
            || oversized(&self.psh_ends, 0)
            || oversized(&self.packet_ends, 0)
    }

    /// Gives back what [`oversized`](Self::oversized) lists hold beyond twice their count.
    pub fn shrink_oversized(&mut self) {
        shrink_after_peak(&mut self.lens, 0);
        shrink_after_peak(&mut self.pushed_ends, 0);
        shrink_after_peak(&mut self.psh_ends, 0);
        shrink_after_peak(&mut self.packet_ends, 0);
    }

    /// Where the unsent bytes start.
    pub fn unsent_start(&self) -> usize {
        self.sent.min(self.bytes)
    }

    /// Where the last skb starts.
    pub fn tail_start(&self) -> usize {
        self.bytes - self.lens.back().copied().unwrap_or(0)
    }

    /// Transmission reached `offset` (it stopped there, or a write's push will take it
    /// there): an skb that holds it splits, as Linux's `tcp_fragment` splits the skb a
    /// window-limited transmission ends in.
    pub fn mark_sent(&mut self, offset: usize) {
        let offset = offset.min(self.bytes);
        if offset <= self.sent {
            return;
        }
        self.sent = offset;
        // From the back: sending stops near the end of what is queued.
        let mut end = self.bytes;
        for i in (0..self.lens.len()).rev() {
            let start = end - self.lens[i];
            if offset >= start {
                if offset > start && offset < end {
                    self.lens[i] = offset - start;
                    self.lens.insert(i + 1, end - offset);
                }
                return;
            }
            end = start;
        }
    }

    /// Drops `n` acknowledged bytes from the front: whole skbs go with their overhead, the
    /// first one left is trimmed (Linux's `tcp_trim_head`).
    pub fn consume(&mut self, n: usize) {
        let mut n = n.min(self.bytes);
        let acked = n;
        self.bytes -= n;
        self.sent = self.sent.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.lens.front_mut() else {
                break;
            };
            if n < *front {
                *front -= n;
                break;
            }
            n -= *front;
            self.lens.pop_front();
        }
        for ends in [
            &mut self.psh_ends,
            &mut self.packet_ends,
            &mut self.pushed_ends,
        ] {
            while ends.front().is_some_and(|&end| end <= acked) {
                ends.pop_front();
            }
            for end in ends.iter_mut() {
                *end -= acked;
            }
        }
        if self.lens.is_empty() {
            self.tail_closed = false;
            self.tail_psh = false;
            // Everything is acknowledged: give back what a long flight grew.
            for ends in [
                &mut self.psh_ends,
                &mut self.packet_ends,
                &mut self.pushed_ends,
            ] {
                if ends.capacity() > MAX_PUSHED_ENDS {
                    *ends = VecDeque::new();
                }
            }
            if self.lens.capacity() > MAX_PUSHED_ENDS {
                self.lens = VecDeque::new();
            }
        }
    }

    /// A write pushed the unsent head skb, up to `end`, as one packet while it went on
    /// (Linux's `tcp_push_one`, or `__tcp_push_pending_frames` with only that skb unsent):
    /// that packet left before the write queued more, so no later data joins it. Linux's
    /// `tcp_grow_skb` (6.10+) pulls the next skb's bytes into one that is sent later, but
    /// only into an skb that is not the last one queued, which an skb pushed in the middle
    /// of a write is. The packet ends where the skb did, or where the windows stopped it.
    pub fn note_pushed_one(&mut self, end: usize) {
        if self.pushed_ends.back().is_some_and(|&last| last >= end) {
            return;
        }
        if self.pushed_ends.len() >= MAX_PUSHED_ENDS {
            self.pushed_ends.pop_front();
        }
        self.pushed_ends.push_back(end);
    }

    /// Where the packet that starts at offset `from` must end at the latest, if a write
    /// pushed the bytes there on their own ([`SkbQueue::note_pushed_one`]). Ends at or
    /// below `from` are behind the sender and are forgotten.
    pub fn pushed_end_after(&mut self, from: usize) -> Option<usize> {
        while self.pushed_ends.front().is_some_and(|&end| end <= from) {
            self.pushed_ends.pop_front();
        }
        self.pushed_ends.front().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(buf: &SendBuffer) -> Vec<u8> {
        let mut out = vec![0; buf.len()];
        assert_eq!(buf.copy_out(0, &mut out), buf.len());
        out
    }

    #[test]
    fn new_buffer_allocates_nothing() {
        let buf = SendBuffer::new(1 << 30);
        assert!(buf.chunks.is_empty());
        assert_eq!(buf.tail.capacity(), 0);
        assert!(buf.is_empty());
        assert_eq!(buf.free(), 1 << 30);
        assert_eq!(buf.copy_out(0, &mut [0; 4]), 0);
    }

    #[test]
    fn push_accepts_only_what_fits() {
        let mut buf = SendBuffer::new(10);
        assert_eq!(buf.push(b"hello"), 5);
        assert_eq!(buf.push(b"world, long"), 5);
        assert_eq!(buf.push(b"x"), 0);
        assert_eq!(buf.len(), 10);
        assert_eq!(buf.free(), 0);
        assert_eq!(held(&buf), b"helloworld");
    }

    /// The byte at stream offset `i` in the tests that write a pattern.
    fn pat(i: usize) -> u8 {
        (i % 251) as u8
    }

    /// Pattern bytes `[from, to)` as `Bytes`.
    fn pat_bytes(from: usize, to: usize) -> Bytes {
        (from..to).map(pat).collect::<Vec<u8>>().into()
    }

    /// A buffer of pattern bytes written two copied, `COPY_BELOW` by reference, two copied,
    /// `COPY_BELOW + 1` by reference, three copied; and how many bytes that is.
    fn mixed() -> (SendBuffer, usize) {
        let c = COPY_BELOW;
        let mut buf = SendBuffer::new(1 << 20);
        let mut at = 0;
        for (len, by_ref) in [(2, false), (c, true), (2, false), (c + 1, true), (3, false)] {
            let piece = pat_bytes(at, at + len);
            let n = if by_ref {
                buf.push_bytes(piece)
            } else {
                buf.push(&piece)
            };
            assert_eq!(n, len);
            at += len;
        }
        (buf, at)
    }

    #[test]
    fn reads_across_chunks_and_the_tail() {
        let c = COPY_BELOW;
        let (mut buf, total) = mixed();
        // Four chunks, the last three bytes in the tail.
        assert_eq!(buf.chunks.len(), 4);
        assert_eq!(held(&buf), &pat_bytes(0, total)[..]);
        // Reads that span chunk boundaries: in order, then back to the front (a
        // retransmission), then on again.
        let mut six = [0; 6];
        for from in [0, 1, c - 1, c + 1, 2 * c + 2, total - 6, 3, c + 3, 0, 2 * c] {
            assert_eq!(buf.copy_out(from, &mut six), 6);
            assert_eq!(&six[..], &pat_bytes(from, from + 6)[..], "at {from}");
        }
        buf.consume(c + 1);
        assert_eq!(held(&buf), &pat_bytes(c + 1, total)[..]);
        assert_eq!(buf.chunks.len(), 3, "acknowledged chunks are dropped");
        assert_eq!(buf.copy_out(c + 3 - (c + 1), &mut six), 6);
        assert_eq!(&six[..], &pat_bytes(c + 3, c + 9)[..]);
        buf.consume(total - c - 2);
        assert_eq!(held(&buf), &pat_bytes(total - 1, total)[..]);
        assert!(buf.chunks.is_empty());
    }

    /// The bytes `slices` hands out, joined.
    fn sliced(buf: &mut SendBuffer, offset: usize, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let n = buf.slices(offset, len, &mut out);
        let joined: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined.len(), n);
        assert!(out.iter().all(|b| !b.is_empty()), "no empty handles");
        joined
    }

    /// `slices` gives the bytes `copy_out` copies, across chunks, the application's own
    /// `Bytes` and the tail; reaching into the tail freezes it without losing what later
    /// writes put there, and acknowledging drops the chunks as before.
    #[test]
    fn slices_hand_out_what_copy_out_copies() {
        let c = COPY_BELOW;
        let (mut buf, at) = mixed();
        for (from, len) in [(0, 6), (1, c), (c - 1, c + 4), (2 * c + 2, 20), (0, at)] {
            let want = pat_bytes(from, (from + len).min(at));
            assert_eq!(sliced(&mut buf, from, len), &want[..], "at {from}");
        }
        assert!(buf.tail.is_empty(), "the tail was frozen into a chunk");
        assert_eq!(sliced(&mut buf, at, 10), b"");
        // Writes after the freeze go on in the tail, in order.
        assert_eq!(buf.push(&pat_bytes(at, at + 5)), 5);
        let total = at + 5;
        assert_eq!(held(&buf), &pat_bytes(0, total)[..]);
        assert_eq!(
            sliced(&mut buf, total - 7, 7),
            &pat_bytes(total - 7, total)[..]
        );
        let mut six = [0; 6];
        assert_eq!(buf.copy_out(total - 6, &mut six), 6);
        assert_eq!(&six[..], &pat_bytes(total - 6, total)[..]);
        // Handles outlive an acknowledgment of their bytes.
        let mut kept = Vec::new();
        buf.slices(0, total, &mut kept);
        buf.consume(total);
        assert!(buf.is_empty());
        let joined: Vec<u8> = kept.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, pat_bytes(0, total));
        assert_eq!(buf.push(&[1, 2, 3]), 3);
        assert_eq!(sliced(&mut buf, 0, 3), [1, 2, 3]);
    }

    #[test]
    fn bytes_are_queued_without_copying() {
        let mut buf = SendBuffer::new(COPY_BELOW + 10);
        let data = Bytes::from(vec![7u8; COPY_BELOW + 16]);
        assert_eq!(
            buf.push_bytes(data.clone()),
            COPY_BELOW + 10,
            "only what fits"
        );
        assert_eq!(
            buf.chunks[0].as_ptr(),
            data.as_ptr(),
            "the caller's memory itself"
        );
        assert_eq!(buf.push_bytes(data.slice(10..)), 0);
        assert_eq!(buf.push(b"x"), 0);
    }

    #[test]
    fn small_bytes_are_copied_into_the_tail() {
        let mut buf = SendBuffer::new(1 << 20);
        for i in 0..100 {
            assert_eq!(buf.push(&[pat(2 * i)]), 1);
            assert_eq!(buf.push_bytes(pat_bytes(2 * i + 1, 2 * i + 2)), 1);
        }
        assert!(buf.chunks.is_empty(), "one tail, not a chunk a write");
        assert_eq!(held(&buf), &pat_bytes(0, 200)[..]);
        // One short of the threshold is copied; the threshold itself goes by reference.
        assert_eq!(
            buf.push_bytes(pat_bytes(200, 200 + COPY_BELOW - 1)),
            COPY_BELOW - 1
        );
        assert!(buf.chunks.is_empty());
        let big = pat_bytes(199 + COPY_BELOW, 199 + 2 * COPY_BELOW);
        assert_eq!(buf.push_bytes(big.clone()), COPY_BELOW);
        assert_eq!(
            buf.chunks.len(),
            2,
            "the tail frozen, then the caller's bytes"
        );
        assert_eq!(buf.chunks[1].as_ptr(), big.as_ptr());
        assert_eq!(held(&buf), &pat_bytes(0, 199 + 2 * COPY_BELOW)[..]);
    }

    fn spares(buf: &SendBuffer) -> usize {
        buf.spare.as_ref().map_or(0, |s| s.len())
    }

    #[test]
    fn acknowledged_chunks_are_reused_for_the_next_writes() {
        let mut buf = SendBuffer::new(8 * CHUNK);
        let data = vec![7u8; CHUNK];
        for _ in 0..4 {
            assert_eq!(buf.push(&data), CHUNK);
        }
        let first = buf.chunks[0].as_ptr();
        // A device still writing the second chunk holds a handle on it.
        let mut writing = Vec::new();
        buf.slices(CHUNK, 10, &mut writing);
        // Acknowledged as ACKs come, part of a chunk at a time.
        buf.consume(CHUNK / 3);
        buf.consume(2 * CHUNK - CHUNK / 3);
        assert_eq!(spares(&buf), 1, "the held chunk is not kept");
        assert!(buf.spare_bytes() >= CHUNK);
        assert!(buf.allocated() >= 2 * CHUNK + buf.spare_bytes());
        // The next chunk's worth of writes fills the spare: the same memory.
        assert_eq!(buf.push(&[9u8; CHUNK]), CHUNK);
        assert_eq!(buf.push(b"x"), 1);
        assert_eq!(buf.chunks.back().map(|c| c.as_ptr()), Some(first));
        assert_eq!(spares(&buf), 0);
        drop(writing);
        let bytes = held(&buf);
        assert_eq!(bytes.len(), 3 * CHUNK + 1);
        assert!(bytes[..2 * CHUNK].iter().all(|&b| b == 7));
        assert!(bytes[2 * CHUNK..3 * CHUNK].iter().all(|&b| b == 9));
        assert_eq!(bytes[3 * CHUNK], b'x');
        // Released with the rest of an emptied buffer's storage, or on demand.
        buf.consume(buf.len());
        assert!(buf.spare_bytes() >= 2 * CHUNK);
        assert!(buf.idle_storage());
        buf.release_if_empty();
        assert_eq!(buf.spare_bytes(), 0);
        assert_eq!(buf.allocated(), 0);
    }

    #[test]
    fn a_tail_acknowledged_from_its_front_is_not_copied_to_grow() {
        // A bulk writer: the buffer is full, each write takes what the last ACK freed.
        let mut buf = SendBuffer::new(CHUNK);
        assert_eq!(buf.push(&pat_bytes(0, CHUNK)), CHUNK);
        assert!(buf.chunks.is_empty());
        buf.consume(1000);
        let tail = buf.tail.as_ptr();
        assert_eq!(buf.push(&pat_bytes(CHUNK, CHUNK + 2000)), 1000);
        // The tail's allocation was used up: the bytes already queued stayed where they
        // were, and the write went to a new chunk.
        assert_eq!(buf.chunks.len(), 1);
        assert_eq!(buf.chunks[0].as_ptr(), tail);
        assert_eq!(buf.chunks[0].len(), CHUNK - 1000);
        assert_eq!(buf.tail.len(), 1000);
        assert_eq!(held(&buf), &pat_bytes(1000, CHUNK + 1000)[..]);
        // A small writer's tail still grows in place of starting a chunk per write.
        let mut small = SendBuffer::new(CHUNK);
        for i in 0..10 {
            assert_eq!(small.push(&pat_bytes(i * 1000, (i + 1) * 1000)), 1000);
        }
        assert!(small.chunks.is_empty());
        assert_eq!(held(&small), &pat_bytes(0, 10_000)[..]);
    }

    /// An application's large allocation, queued without a copy and let go, is not kept
    /// as a spare when acknowledged: the spare would have been the whole 4 MiB `Vec`,
    /// charged to the endpoint for nothing, in a buffer of 256 KiB.
    #[test]
    fn an_applications_allocation_is_not_kept_as_a_spare() {
        let mut buf = SendBuffer::new(4 * CHUNK);
        let big = Bytes::from(vec![0u8; 64 * CHUNK]);
        assert_eq!(buf.push_bytes(big.slice(..2 * CHUNK)), 2 * CHUNK);
        drop(big);
        buf.consume(2 * CHUNK);
        assert_eq!(buf.spare_bytes(), 0);
        // Chunks the buffer made itself are still kept.
        assert_eq!(buf.push(&vec![1u8; 2 * CHUNK]), 2 * CHUNK);
        buf.consume(2 * CHUNK);
        assert!(buf.spare_bytes() > 0);
        assert!(buf.spare_bytes() <= buf.capacity());
    }

    #[test]
    fn spares_stay_within_the_capacity() {
        let mut buf = SendBuffer::new(4 * CHUNK);
        let data = vec![1u8; CHUNK];
        for _ in 0..4 {
            assert_eq!(buf.push(&data), CHUNK);
        }
        buf.consume(3 * CHUNK);
        // One chunk still queued: three spares would reach the capacity, at most.
        assert!(spares(&buf) <= 3);
        assert!(buf.len() + spares(&buf) * CHUNK <= buf.capacity());
        buf.drop_spares();
        assert_eq!(buf.spare_bytes(), 0);
    }

    #[test]
    fn partial_copy_out_is_clamped() {
        let mut buf = SendBuffer::new(100);
        buf.push(b"0123456789");
        let mut dst = [0xffu8; 8];
        assert_eq!(buf.copy_out(6, &mut dst), 4);
        assert_eq!(&dst[..4], b"6789");
        assert_eq!(&dst[4..], &[0xff; 4], "bytes past the copy are untouched");
        assert_eq!(buf.copy_out(10, &mut dst), 0);
        assert_eq!(buf.copy_out(usize::MAX, &mut dst), 0);
        assert_eq!(buf.copy_out(3, &mut []), 0);
    }

    #[test]
    fn consume_more_than_len_empties() {
        let mut buf = SendBuffer::new(16);
        buf.push(b"abc");
        buf.consume(usize::MAX);
        assert!(buf.is_empty());
        assert_eq!(buf.free(), 16);
        buf.consume(1);
        assert!(buf.is_empty());
        buf.push(b"xyz");
        assert_eq!(held(&buf), b"xyz");
    }

    #[test]
    fn small_writes_grow_the_tail_up_to_a_chunk() {
        let mut buf = SendBuffer::new(1 << 20);
        assert_eq!(buf.push(&[1; 100]), 100);
        assert_eq!(
            buf.tail.capacity(),
            MIN_ALLOC,
            "a small write, a small allocation"
        );
        let mut expect = vec![1; 100];
        for i in 0..2000u32 {
            let piece = [i as u8; 100];
            assert_eq!(buf.push(&piece), 100);
            expect.extend_from_slice(&piece);
        }
        assert!(buf.tail.capacity() <= 2 * CHUNK);
        assert!(
            buf.chunks.iter().all(|c| c.len() == CHUNK),
            "full chunks are frozen"
        );
        assert_eq!(held(&buf), expect);
    }

    #[test]
    fn set_capacity_never_below_len() {
        let mut buf = SendBuffer::new(4096);
        buf.push(&[1; 2000]);
        buf.set_capacity(100);
        assert_eq!(buf.capacity(), 2000);
        assert_eq!(buf.free(), 0);
        assert_eq!(held(&buf), vec![1; 2000]);
        buf.consume(1500);
        buf.set_capacity(600);
        assert_eq!(buf.capacity(), 600);
        assert_eq!(buf.push(&[2; 200]), 100);
        let mut expect = vec![1; 500];
        expect.extend_from_slice(&[2; 100]);
        assert_eq!(held(&buf), expect);
        buf.set_capacity(10_000);
        assert_eq!(buf.free(), 9_400);
    }

    #[test]
    fn zero_capacity_accepts_nothing() {
        let mut buf = SendBuffer::new(0);
        assert_eq!(buf.push(b"abc"), 0);
        buf.consume(3);
        assert!(buf.is_empty());
    }

    /// A long random-ish sequence of pushes, consumes and reads agrees with a plain Vec model.
    #[test]
    fn matches_a_vec_model() {
        model_check(3000, 700, 2000);
    }

    /// The same with writes large enough that the tail fills whole chunks.
    #[test]
    fn matches_a_vec_model_across_full_chunks() {
        model_check(5 * CHUNK, CHUNK + CHUNK / 2, 300);
    }

    fn model_check(capacity: usize, max_write: usize, rounds: usize) {
        let mut buf = SendBuffer::new(capacity);
        let mut model: Vec<u8> = Vec::new();
        let mut x: u32 = 12345;
        let mut next = || {
            // A fixed LCG: deterministic, no dependency.
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 8) as usize
        };
        let mut byte = 0u8;
        for _ in 0..rounds {
            let data: Vec<u8> = (0..next() % max_write)
                .map(|_| {
                    byte = byte.wrapping_add(1);
                    byte
                })
                .collect();
            // Copied writes and zero-copy ones, mixed.
            let n = if next() % 3 == 0 {
                buf.push_bytes(Bytes::from(data.clone()))
            } else {
                buf.push(&data)
            };
            assert_eq!(n, data.len().min(capacity - model.len()));
            model.extend_from_slice(&data[..n]);
            let c = next() % (max_write + max_write / 7);
            buf.consume(c);
            model.drain(..c.min(model.len()));
            // A few reads, mostly in order as segments go out, sometimes back (retransmits).
            let mut off = next() % (capacity + 100);
            for _ in 0..3 {
                let mut dst = vec![0; next() % 1500];
                let got = buf.copy_out(off, &mut dst);
                let want = model.get(off..).map_or(0, |rest| rest.len().min(dst.len()));
                assert_eq!(got, want);
                if got > 0 {
                    assert_eq!(&dst[..got], &model[off..off + got]);
                }
                off += got;
            }
        }
        assert_eq!(held(&buf), model);
    }

    #[test]
    fn skb_queue_appends_splits_and_trims_as_linux() {
        let mut q = SkbQueue::default();
        q.push_skb(25_000);
        assert_eq!(q.tail_room(25_000), 0);
        // A window-limited push sends 10 000: the skb splits, its rest takes more data.
        q.mark_sent(10_000);
        assert_eq!(q.count(), 2);
        assert_eq!(q.tail_room(25_000), 10_000);
        q.extend_tail(10_000);
        q.push_skb(25_000);
        assert_eq!(q.bytes(), 60_000);
        assert_eq!(q.charged(), 60_000 + 3 * SKB_OVERHEAD);
        assert_eq!(q.unsent(), 50_000);
        // Sent skbs are not appended to.
        q.mark_sent(60_000);
        assert_eq!(q.tail_room(30_000), 0);
        // A partial ACK trims, a whole one frees the skb and its overhead.
        q.consume(5_000);
        assert_eq!(q.charged(), 55_000 + 3 * SKB_OVERHEAD);
        q.consume(5_000);
        assert_eq!(q.charged(), 50_000 + 2 * SKB_OVERHEAD);
        q.close_tail();
        assert_eq!(q.tail_room(30_000), 0);
        q.consume(usize::MAX);
        assert_eq!((q.count(), q.bytes(), q.charged()), (0, 0, 0));
    }

    /// PSH per skb, as Linux keeps it: the mark sits where the marked skb ends, stays there
    /// through splits (`tso_fragment` moves it to the rest), follows the last skb's end as
    /// the same write appends to it, and goes with the bytes an ACK frees.
    #[test]
    fn skb_queue_keeps_push_marks_where_skbs_end() {
        let start = SeqNumber(1000);
        let mut q = SkbQueue::default();
        q.push_skb(16_000);
        assert!(
            !q.forced_push(start + 16_000usize, 32_000),
            "not past half the window"
        );
        q.mark_sent(10_000);
        q.extend_tail(10_000);
        assert!(q.forced_push(start + 26_000usize, 32_000));
        q.mark_push(start + 26_000usize);
        assert!(q.psh_within(25_000, 26_000));
        assert!(
            !q.psh_within(10_000, 25_000),
            "the part before a split has none"
        );
        // A new skb: the old tail keeps its mark; the end of the write marks the new one.
        q.push_skb(4000);
        assert!(!q.forced_push(start + 30_000usize, 32_000));
        q.mark_push(start + 30_000usize);
        assert!(q.psh_within(29_000, 30_000) && q.psh_within(25_000, 26_000));
        // The next write's first bytes land in the last skb: its mark goes until the write
        // ends and marks it again.
        q.clear_tail_push();
        q.extend_tail(500);
        assert!(!q.psh_within(26_000, 30_500));
        assert!(q.psh_within(0, 26_000));
        // An ACK of 25 500 bytes: offsets move down with it.
        q.consume(25_500);
        assert!(q.psh_within(0, 500) && !q.psh_within(500, 5000));
        q.consume(500);
        assert!(!q.psh_within(0, 5000), "the mark left with its bytes");
    }

    /// A probe that sends part of an skb (`tcp_write_wakeup`) marks where that part ends,
    /// among the other marks, in order, once.
    #[test]
    fn skb_queue_marks_a_push_inside_the_queue() {
        let mut q = SkbQueue::default();
        q.push_skb(1000);
        q.push_skb(1000);
        q.mark_push(SeqNumber(3000));
        q.mark_push_at(512);
        q.mark_push_at(512);
        q.mark_push_at(1500);
        assert!(q.psh_within(0, 512) && !q.psh_within(512, 1000));
        assert!(q.psh_within(1000, 1500) && !q.psh_within(1500, 1999));
        assert!(q.psh_within(1999, 2000), "the tail keeps its own");
        q.consume(512);
        assert!(
            !q.psh_within(0, 987) && q.psh_within(987, 988),
            "marks move with the ACK"
        );
        // At the end of the queue it is the tail's mark.
        let mut q = SkbQueue::default();
        q.push_skb(1000);
        q.mark_push_at(1000);
        assert!(q.psh_within(999, 1000));
        q.push_skb(10);
        assert!(q.psh_within(999, 1000), "kept where the skb ended");
    }

    /// The packets of new data sent are remembered until acknowledged, for retransmissions
    /// sized as Linux's retransmission queue skbs.
    #[test]
    fn skb_queue_remembers_where_packets_ended() {
        let mut q = SkbQueue::default();
        q.push_skb(10_000);
        for end in [2000, 4000, 6000] {
            q.note_packet(end);
        }
        q.note_packet(5000);
        assert_eq!(q.packet_end(0), Some(2000));
        assert_eq!(q.packet_end(2000), Some(4000));
        assert_eq!(q.packet_end(5999), Some(6000));
        assert_eq!(q.packet_end(6000), None);
        q.consume(3000);
        assert_eq!(q.packet_end(0), Some(1000), "the rest of the second packet");
    }

    /// A peer that offers a tiny MSS and holds its ACKs cannot make the view remember an end
    /// for every few bytes: past the cap the oldest are forgotten (a resend of those bytes
    /// then runs to the next end known), the memory is counted, and it is given back once
    /// everything is acknowledged.
    #[test]
    fn packet_ends_are_capped_counted_and_released() {
        let mut q = SkbQueue::default();
        q.push_skb(24 * 3 * MAX_PACKET_ENDS);
        for i in 1..=3 * MAX_PACKET_ENDS {
            q.note_packet(24 * i);
        }
        assert_eq!(q.packet_ends.len(), MAX_PACKET_ENDS);
        // The first 2 * MAX_PACKET_ENDS ends are gone: the earliest bytes resend to the first
        // end still known.
        let first_known = 24 * (2 * MAX_PACKET_ENDS + 1);
        assert_eq!(q.packet_end(0), Some(first_known));
        assert_eq!(q.packet_end(first_known), Some(first_known + 24));
        assert!(q.allocated() >= MAX_PACKET_ENDS * core::mem::size_of::<usize>());
        q.consume(q.bytes());
        assert_eq!(q.packet_end(0), None);
        assert_eq!(q.packet_ends.capacity(), 0, "storage given back");
        assert!(q.allocated() <= 4 * MAX_PUSHED_ENDS * core::mem::size_of::<usize>());
    }

    /// The packets a write pushed on its own are remembered until acknowledged, their
    /// offsets moving down with each ACK.
    #[test]
    fn pushed_packet_ends_follow_the_acknowledgments() {
        let mut q = SkbQueue::default();
        for _ in 0..3 {
            q.push_skb(1000);
        }
        q.note_pushed_one(1000);
        q.note_pushed_one(2000);
        // An end at or below one already noted adds nothing.
        q.note_pushed_one(1500);
        assert_eq!(q.pushed_end_after(0), Some(1000));
        assert_eq!(q.pushed_end_after(1000), Some(2000), "the first is behind");
        // Acknowledged bytes leave the front: the offsets move with them.
        q.consume(1500);
        assert_eq!(q.pushed_end_after(0), Some(500));
        q.consume(500);
        assert_eq!(q.pushed_end_after(0), None);
    }

    /// Random writes, sends and ACKs keep the skb view whole: its lengths sum to its bytes,
    /// none is empty, and splits fall where sending stopped.
    #[test]
    fn skb_queue_stays_consistent() {
        let mut q = SkbQueue::default();
        let mut x: u32 = 99;
        let mut next = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 8) as usize
        };
        for _ in 0..5000 {
            match next() % 4 {
                0 => q.push_skb(1 + next() % 3000),
                1 => {
                    let room = q.tail_room(4000);
                    if room > 0 {
                        q.extend_tail(1 + next() % room);
                    }
                }
                2 => {
                    let to = q.unsent_start() + next() % (q.unsent() + 1);
                    q.mark_sent(to);
                    let mut end = 0;
                    let cut = q.lens.iter().any(|&l| {
                        end += l;
                        end == to
                    });
                    assert!(to == 0 || cut, "an skb ends where sending stopped");
                }
                _ => q.consume(next() % 5000),
            }
            assert_eq!(q.lens.iter().sum::<usize>(), q.bytes());
            assert!(q.lens.iter().all(|&l| l > 0));
            assert!(q.unsent_start() <= q.bytes());
        }
    }
}
