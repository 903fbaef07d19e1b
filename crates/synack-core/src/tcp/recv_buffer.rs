//! The receive buffer: in-order bytes waiting for the application, and out-of-order bytes
//! past them, held until the hole before them is filled.
//!
//! Offsets in the API are counted from RCV.NXT, the first byte not yet received in order.
//! Internally every byte has an absolute stream position (a `u64` that never wraps in
//! practice), so that the out-of-order ranges need no rewriting when RCV.NXT moves.
//!
//! RFC 9293 §3.10.7.4 lets a receiver keep segments that arrive out of order ("segments with
//! higher beginning sequence numbers SHOULD be held for later processing"); RFC 2018 §4 asks
//! it to report them in SACK blocks, the most recently received first. A peer that sprays
//! tiny disjoint segments could make the range list grow with every one, so the number of
//! ranges is bounded by `max_ranges` (Linux bounds its out-of-order queue by memory in a
//! similar spirit).
//!
//! Out-of-order bytes are not stored in the ring but in blocks of [`BLOCK`] bytes, allocated
//! only where they fall, and copied into the ring when the hole before them is filled. The
//! ring held them once, at their place past RCV.NXT: one byte at the far edge of the window
//! grew it to the whole window, 256 KiB charged against the memory cap for 53 bytes on the
//! wire. A few thousand such packets kept a 1 GiB cap full between two prunings, and new
//! connections were refused. Linux charges an out-of-order segment its skb's truesize,
//! about what it holds; here a held byte costs at most its block.
//!
//! In-order bytes live in one of two places. Most are copied into a ring. But the payload of
//! a large segment whose packet arrived in shared memory ([`Frame`]) can be kept where it
//! arrived, by reference, when nothing waits in the ring before it: a bulk receiver then
//! copies each byte once, into the application's buffer, instead of twice. Such payloads
//! are charged the whole allocation they hold alive, as Linux charges an skb's truesize,
//! and only a payload that fills at least half of it is kept, as Linux copies small skbs
//! into others (`tcp_try_coalesce`, `tcp_collapse`) to bound that waste.

use std::collections::{BTreeMap, VecDeque};

#[cfg(test)]
use bytes::BufMut;
use bytes::{Buf, Bytes};

/// The smallest allocation, so that small segments do not reallocate per byte.
const MIN_ALLOC: usize = 1024;

/// Bytes in a block of out-of-order storage: most of one 1500-byte segment's payload, so that
/// a stray segment costs about its own size and a run of them fills its blocks.
const BLOCK: usize = 1024;

/// One block of out-of-order storage, covering stream positions `[i * BLOCK, (i + 1) * BLOCK)`
/// for its index `i`.
type Block = Box<[u8; BLOCK]>;

/// What one block is charged: its bytes, and its share of the map that finds it, taken as a
/// map node's worth per entry (a `BTreeMap` leaf holds up to eleven), which is what a block
/// alone in the map costs and more than a block among many does.
const BLOCK_CHARGE: usize = BLOCK + 12 * core::mem::size_of::<(u64, Block)>();

/// Holding a segment would need more disjoint out-of-order ranges than allowed; the segment
/// was not stored and should be dropped (the peer will retransmit it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRanges;

impl core::fmt::Display for TooManyRanges {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("too many out-of-order ranges")
    }
}

impl std::error::Error for TooManyRanges {}

/// A received packet in shared memory, whose in-order payload the receive buffer may keep
/// by reference ([`RecvBuffer::write_kept`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    /// The whole buffer the packet was read into: a kept payload holds all of it alive.
    pub bytes: &'a Bytes,
}

impl Frame<'_> {
    /// What a payload kept from this frame is charged: the allocation it holds alive.
    pub fn truesize(&self) -> usize {
        self.bytes.len()
    }

    /// `part` as a handle on the frame's memory, if it lies in it. A segment reassembled
    /// from IP fragments, or built by the endpoint, does not.
    pub fn payload(&self, part: &[u8]) -> Option<Bytes> {
        let base = self.bytes.as_ptr() as usize;
        let at = (part.as_ptr() as usize).checked_sub(base)?;
        let end = at.checked_add(part.len())?;
        (end <= self.bytes.len()).then(|| self.bytes.slice(at..end))
    }
}

/// In-order payloads kept by reference, read before the ring's bytes.
#[derive(Debug, Clone, Default)]
struct Kept {
    /// Each payload, with what it is charged (its frame's truesize).
    queue: VecDeque<(Bytes, usize)>,
    /// Unread bytes in `queue`.
    len: usize,
    /// What `queue` is charged, in all.
    charge: usize,
}

impl Kept {
    /// The capacity a full queue grows to, chosen here so that
    /// [`RecvBuffer::growth_for_kept`] can charge it before it happens.
    fn grown(&self) -> usize {
        (self.queue.capacity() * 2).max(4)
    }

    /// Heap bytes: the box, the queue and the frames it holds alive.
    fn allocated(&self) -> usize {
        core::mem::size_of::<Kept>()
            + self.queue.capacity() * core::mem::size_of::<(Bytes, usize)>()
            + self.charge
    }

    /// Removes up to `n` bytes from the front; returns how many.
    fn consume(&mut self, n: usize) -> usize {
        let taken = n.min(self.len);
        let mut left = taken;
        while left > 0 {
            let Some((front, charge)) = self.queue.front_mut() else {
                break;
            };
            if front.len() > left {
                front.advance(left);
                break;
            }
            left -= front.len();
            self.charge -= *charge;
            self.queue.pop_front();
        }
        self.len -= taken;
        taken
    }
}

/// One run of out-of-order bytes, `[start, end)` in absolute stream positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: u64,
    end: u64,
    /// When this range last received data: orders SACK blocks newest first.
    stamp: u64,
}

/// The ring size below which an idle ring is not shrunk: 64 KiB, a window's worth without
/// scaling, cheap to keep and not worth copying for.
const SHRINK_FLOOR: usize = 64 * 1024;

/// Received bytes: in order up to RCV.NXT, then held out-of-order ranges.
#[derive(Debug, Clone)]
pub struct RecvBuffer {
    /// Ring storage, grown on demand up to `capacity`. Index `head` holds the stream position
    /// `ring_pos()`, the first in-order byte not kept by reference.
    storage: Vec<u8>,
    head: usize,
    /// In-order payloads kept by reference, ahead of the ring's bytes; boxed, because most
    /// connections never keep one and an idle connection's size counts.
    kept: Option<Box<Kept>>,
    /// Stream position of the next byte the application reads.
    read_pos: u64,
    /// Stream position of RCV.NXT: bytes in `[read_pos, nxt)` are readable.
    nxt: u64,
    /// Disjoint, non-adjacent out-of-order ranges past `nxt`, sorted by `start`.
    ranges: Vec<Range>,
    /// The bytes of those ranges, in blocks by stream position (the block index is the
    /// position divided by [`BLOCK`]); boxed, for the idle connection's size. A block may
    /// hold bytes of a range no longer held where it shares a block with one that is: they
    /// are never read.
    #[allow(
        clippy::box_collection,
        reason = "one pointer in every connection, where the map is three words"
    )]
    blocks: Option<Box<BTreeMap<u64, Block>>>,
    /// At most this many ranges (a `u32`, so that it packs with `tight`).
    max_ranges: u32,
    capacity: usize,
    /// Source of `Range::stamp`.
    clock: u64,
    /// Grow the ring by a quarter rather than doubling it (under memory pressure).
    tight: bool,
}

impl RecvBuffer {
    /// An empty buffer holding at most `capacity` bytes (in order and out of order together)
    /// and at most `max_ranges` disjoint out-of-order ranges. Nothing is allocated yet.
    pub fn new(capacity: usize, max_ranges: usize) -> Self {
        RecvBuffer {
            storage: Vec::new(),
            head: 0,
            kept: None,
            read_pos: 0,
            nxt: 0,
            ranges: Vec::new(),
            blocks: None,
            max_ranges: u32::try_from(max_ranges).unwrap_or(u32::MAX),
            capacity,
            clock: 0,
            tight: false,
        }
    }

    /// Grow the ring by a quarter at a time instead of doubling it: under memory pressure
    /// the slack costs more than the extra copies.
    pub fn set_tight(&mut self, tight: bool) {
        self.tight = tight;
    }

    /// The ring size a store that needs `needed` bytes of it grows to.
    fn grown(&self, needed: usize) -> usize {
        let len = self.storage.len();
        let step = if self.tight {
            len + len / 4
        } else {
            len.saturating_mul(2)
        };
        needed
            .max(step)
            .max(MIN_ALLOC)
            .min(self.capacity)
            .max(needed)
    }

    /// Bytes of allocation that storing `len` bytes at `offset` past RCV.NXT (inside the
    /// window) would add ([`allocated`](Self::allocated) counts all of it):
    /// - in order, the ring grows to hold them and the held ranges they reach, whose blocks
    ///   are given back then;
    /// - out of order, the blocks they fall in that nothing held yet, and maybe a new entry
    ///   in the list of ranges. Without the list's part a peer could spray one-byte segments
    ///   inside held blocks and grow the list unchecked.
    pub fn growth_for(&self, offset: usize, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        let start = self.nxt + offset as u64;
        let end = start + len as u64;
        if offset > 0 {
            return self.new_blocks(start, end) * BLOCK_CHARGE + self.list_growth(start, end);
        }
        let reached = self.joined_extent(end);
        let needed = (reached - self.ring_pos()) as usize;
        let ring = if needed <= self.storage.len() {
            0
        } else {
            self.grown(needed) - self.storage.len()
        };
        // The blocks before the first range these bytes do not reach go.
        let rest = self
            .ranges
            .get(self.ranges.partition_point(|r| r.start <= end));
        let freed = match (&self.blocks, rest) {
            (None, _) => 0,
            (Some(b), None) => b.len(),
            (Some(b), Some(r)) => b.range(..r.start / BLOCK as u64).count(),
        };
        ring.saturating_sub(freed * BLOCK_CHARGE)
    }

    /// How far RCV.NXT gets when in-order data ends at `end`: past every held range that
    /// starts at or before it. (Ranges neither overlap nor touch, so one that starts past
    /// the end of another reached this way starts past `end` too.)
    fn joined_extent(&self, end: u64) -> u64 {
        self.ranges
            .iter()
            .take_while(|r| r.start <= end)
            .fold(end, |reached, r| reached.max(r.end))
    }

    /// Blocks of `[start, end)` (not empty) that hold nothing yet.
    fn new_blocks(&self, start: u64, end: u64) -> usize {
        let (first, last) = (start / BLOCK as u64, (end - 1) / BLOCK as u64);
        let held = self
            .blocks
            .as_ref()
            .map_or(0, |b| b.range(first..=last).count());
        (last - first + 1) as usize - held
    }

    /// Bytes the list of ranges grows by if `[start, end)` is held: nothing if it merges
    /// with a range or the list has spare capacity, and nothing if it would be refused
    /// ([`TooManyRanges`]).
    fn list_growth(&self, start: u64, end: u64) -> usize {
        let first = self.ranges.partition_point(|r| r.end < start);
        let merges = self.ranges.get(first).is_some_and(|r| r.start <= end);
        let len = self.ranges.len();
        if merges || len < self.ranges.capacity() || len >= self.max_ranges as usize {
            return 0;
        }
        (self.grown_list() - self.ranges.capacity()) * core::mem::size_of::<Range>()
    }

    /// The capacity a full list of ranges grows to: doubled, at least 4, at most
    /// `max_ranges`. Chosen here rather than left to `Vec`, so that
    /// [`growth_for`](Self::growth_for) can charge it before it happens.
    fn grown_list(&self) -> usize {
        (self.ranges.capacity() * 2)
            .max(4)
            .min(self.max_ranges as usize)
            .max(self.ranges.len() + 1)
    }

    /// In-order bytes the ring can take without growing.
    pub fn room_without_growth(&self) -> usize {
        self.storage.len().saturating_sub(self.ring_len())
    }

    /// Whether `len` in-order bytes, in a packet whose frame is charged `truesize`, would be
    /// kept by reference ([`write_kept`](Self::write_kept)) rather than copied: they fill at
    /// least half of their frame, fit the window, and nothing waits in the ring (in order or
    /// out of order), since kept bytes are read before the ring's.
    pub fn keeps(&self, len: usize, truesize: usize) -> bool {
        len > 0
            && truesize <= len.saturating_mul(2)
            && len <= self.window()
            && self.ring_len() == 0
            && self.ranges.is_empty()
    }

    /// Bytes of allocation that keeping a payload charged `truesize` adds: the charge, and
    /// the queue's growth (see [`growth_for`](Self::growth_for)).
    pub fn growth_for_kept(&self, truesize: usize) -> usize {
        let entry = core::mem::size_of::<(Bytes, usize)>();
        let queue = match &self.kept {
            None => core::mem::size_of::<Kept>() + Kept::default().grown() * entry,
            Some(k) if k.queue.len() == k.queue.capacity() => {
                (k.grown() - k.queue.capacity()) * entry
            }
            Some(_) => 0,
        };
        truesize + queue
    }

    /// Appends `payload`, which starts at RCV.NXT, by reference, charged `truesize`, and
    /// returns how far RCV.NXT advanced (the payload is cut to the window). For a payload
    /// that [`keeps`](Self::keeps) accepts; anything else is copied as by
    /// [`write`](Self::write).
    pub fn write_kept(&mut self, payload: Bytes, truesize: usize) -> usize {
        if !self.keeps(payload.len(), truesize) {
            return self.write(0, &payload).unwrap_or(0);
        }
        let len = payload.len();
        let kept = self.kept.get_or_insert_with(Box::default);
        if kept.queue.len() == kept.queue.capacity() {
            // Grow by the amount `growth_for_kept` charged.
            let more = kept.grown() - kept.queue.len();
            kept.queue.reserve_exact(more);
        }
        kept.queue.push_back((payload, truesize));
        kept.len += len;
        kept.charge += truesize;
        self.nxt += len as u64;
        // The ring holds nothing (`keeps`): it starts over at its front.
        self.head = 0;
        len
    }

    /// In-order bytes kept by reference.
    fn kept_len(&self) -> usize {
        self.kept.as_ref().map_or(0, |k| k.len)
    }

    /// The stream position of the ring's first byte: kept bytes come before it.
    fn ring_pos(&self) -> u64 {
        self.read_pos + self.kept_len() as u64
    }

    /// In-order bytes in the ring.
    fn ring_len(&self) -> usize {
        (self.nxt - self.ring_pos()) as usize
    }

    /// Bytes taken in order since the connection began: the stream position of RCV.NXT.
    pub fn received(&self) -> u64 {
        self.nxt
    }

    /// The most bytes the buffer holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// In-order bytes the application can read now.
    pub fn len(&self) -> usize {
        // Bounded by capacity, so it fits a usize.
        (self.nxt - self.read_pos) as usize
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.nxt == self.read_pos
    }

    /// Room past RCV.NXT: what the receive window may advertise (RFC 9293 §3.8.6.2.2).
    pub fn window(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }

    /// Stores `data` at `offset` bytes past RCV.NXT and returns how far RCV.NXT advanced.
    ///
    /// Bytes past [`window()`](Self::window) are discarded (RFC 9293 §3.10.7.4: segments are
    /// trimmed to the receive window). A segment at offset 0 advances RCV.NXT past itself
    /// and past every held range it reaches. A segment past a hole is held as out-of-order
    /// data, unless that would need more than `max_ranges` ranges, in which case nothing is
    /// stored and `Err(TooManyRanges)` is returned.
    ///
    /// Overlaps with bytes already held are allowed. An honest peer resends the same bytes,
    /// but a hostile one may not, and the bytes the application reads are then Linux's
    /// (`tcp_data_queue_ofo`, `tcp_ofo_queue`), so that a monitor modelling Linux sees the
    /// stream the application does: where out-of-order segments overlap, the one that
    /// starts lower wins, and of two that start together, the later if it reaches as far
    /// (Linux replaces the first), else the first ("all the bits are present"). Held ranges
    /// stand in for Linux's segments here, and in-order data overwrites what it reaches,
    /// as Linux's reads past RCV.NXT skip the held segment's covered part.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<usize, TooManyRanges> {
        let window = self.window();
        if offset >= window || data.is_empty() {
            return Ok(0);
        }
        let data = &data[..data.len().min(window - offset)];
        let start = self.nxt + offset as u64;
        let end = start + data.len() as u64;
        self.clock += 1;

        if offset > 0 {
            // The held bytes this segment must not overwrite, found before `hold` merges:
            // those of the held range it starts in (ranges are disjoint: one at most),
            // unless it starts with that range and reaches as far. Ranges it starts below
            // take its bytes.
            let first = self.ranges.partition_point(|r| r.end <= start);
            let kept_to = self
                .ranges
                .get(first)
                .filter(|r| r.start <= start && !(r.start == start && end >= r.end))
                .map_or(start, |r| r.end.min(end));
            self.hold(start, end)?;
            if kept_to < end {
                self.store_held(kept_to, &data[(kept_to - start) as usize..]);
            }
            return Ok(0);
        }

        // Room in the ring for these bytes and every held range they reach, at once.
        let reached = self.joined_extent(end);
        let needed = (reached - self.ring_pos()) as usize;
        if needed > self.storage.len() {
            self.relocate(self.grown(needed));
        }
        self.store(start, data);
        let old_nxt = self.nxt;
        self.nxt = reached;
        // Join every held range the new bytes reach (they are sorted by start): what they
        // hold past the new bytes moves to the ring, and the blocks it leaves behind go.
        let joined = self.ranges.partition_point(|r| r.start <= end);
        if joined > 0 {
            self.ranges.drain(..joined);
            self.move_held_to_ring(end, reached);
            self.drop_unclaimed_blocks();
        }
        Ok((self.nxt - old_nxt) as usize)
    }

    /// The first part of `[offset, offset + len)` (offsets past RCV.NXT) that is already held
    /// out of order, as offsets past RCV.NXT: what a write of those bytes would receive a
    /// second time. RFC 2883 §4 reports it as a D-SACK block (Linux: `tcp_data_queue_ofo`
    /// for out-of-order data, `tcp_ofo_queue` when in-order data reaches held ranges).
    pub fn held_overlap(&self, offset: usize, len: usize) -> Option<(usize, usize)> {
        let start = self.nxt + offset as u64;
        let end = start + len as u64;
        let first = self.ranges.partition_point(|r| r.end <= start);
        let r = self.ranges.get(first).filter(|r| r.start < end)?;
        let from = r.start.max(start);
        let to = r.end.min(end);
        Some(((from - self.nxt) as usize, (to - self.nxt) as usize))
    }

    /// Copies in-order bytes into `dst` without consuming them (MSG_PEEK); returns how many.
    pub fn peek(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        let mut at = 0;
        self.visit(n, |part| {
            dst[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        });
        n
    }

    /// Hands the first `n` in-order bytes (at most [`len`](Self::len)) to `sink` as they
    /// are held: the kept payloads, then the ring up to its end and from its start.
    fn visit(&self, n: usize, mut sink: impl FnMut(&[u8])) {
        let mut left = n.min(self.len());
        for (payload, _) in self.kept.iter().flat_map(|k| k.queue.iter()) {
            if left == 0 {
                return;
            }
            let take = payload.len().min(left);
            sink(&payload[..take]);
            left -= take;
        }
        if left > 0 {
            let (first, second) = self.slices(self.ring_pos(), left);
            sink(first);
            if !second.is_empty() {
                sink(second);
            }
        }
    }

    /// Copies up to `dst.len()` in-order bytes to `dst`, removes them, and returns how many.
    /// (The connection reads with `read_with`; this is the tests'.)
    #[cfg(test)]
    pub fn read(&mut self, mut dst: &mut [u8]) -> usize {
        // `BufMut` for a slice writes at its front and moves the front on.
        self.read_with(dst.len(), |part| dst.put_slice(part))
    }

    /// Hands up to `n` in-order bytes to `sink`, in order, in slices as they are held (each
    /// kept payload, then the ring's one or two), removes them, and returns how many: a read
    /// into a destination that is not a plain slice (a `BufMut`'s uninitialised room)
    /// without a copy in between.
    pub fn read_with(&mut self, n: usize, sink: impl FnMut(&[u8])) -> usize {
        let n = n.min(self.len());
        if n == 0 {
            return 0;
        }
        self.visit(n, sink);
        self.skip(n)
    }

    /// Removes up to `n` in-order bytes and returns them as one handle: the front of a kept
    /// payload without a copy (at most that payload), else a copy of the ring's bytes. Empty
    /// when there is nothing to read.
    pub fn read_bytes(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len());
        if n == 0 {
            return Bytes::new();
        }
        if let Some(front) = self.kept.as_ref().and_then(|k| k.queue.front()) {
            let out = front.0.slice(..n.min(front.0.len()));
            self.skip(out.len());
            return out;
        }
        let mut out = bytes::BytesMut::with_capacity(n);
        self.read_with(n, |part| out.extend_from_slice(part));
        out.freeze()
    }

    /// Removes up to `n` in-order bytes unread (the urgent byte a read skips, RFC 9293
    /// §3.8.5) and returns how many.
    pub fn skip(&mut self, n: usize) -> usize {
        let n = n.min(self.len());
        if n == 0 {
            return 0;
        }
        let from_ring = n - self.kept.as_mut().map_or(0, |k| k.consume(n));
        self.read_pos += n as u64;
        if self.read_pos == self.nxt {
            // The ring is empty (bytes held out of order are not in it): start over at the
            // front, so that a reader that keeps up reuses the same few (cache-warm)
            // kilobytes instead of walking the whole ring.
            self.head = 0;
        } else if from_ring > 0 {
            self.head = ring_index(self.head, from_ring, self.storage.len());
        }
        n
    }

    /// The out-of-order ranges as `(start, end)` offsets past RCV.NXT, at most `n` of them,
    /// the most recently changed first.
    ///
    /// RFC 2018 §4: "The first SACK block (i.e., the one immediately following the kind and
    /// length fields in the option) MUST specify the contiguous block of data containing the
    /// segment which triggered this ACK", and the following blocks should repeat the most
    /// recently reported ones, which newest-first order gives.
    pub fn sack_ranges(&self, n: usize) -> Vec<(usize, usize)> {
        let mut newest: Vec<&Range> = self.ranges.iter().collect();
        newest.sort_unstable_by_key(|r| core::cmp::Reverse(r.stamp));
        newest
            .into_iter()
            .take(n)
            .map(|r| ((r.start - self.nxt) as usize, (r.end - self.nxt) as usize))
            .collect()
    }

    /// Where the range that `[offset, offset + len)` past RCV.NXT would join stands in
    /// `sack_ranges`' order (0 for the most recently changed): the newest of the ranges it
    /// overlaps or touches; `None` if it touches none, and would be a range of its own.
    pub fn recency_of(&self, offset: usize, len: usize) -> Option<usize> {
        let start = self.nxt + offset as u64;
        let end = start + len as u64;
        let joined = self
            .ranges
            .iter()
            .filter(|r| r.start <= end && r.end >= start)
            .map(|r| r.stamp)
            .max()?;
        Some(self.ranges.iter().filter(|r| r.stamp > joined).count())
    }

    /// Bytes held out of order.
    pub fn ooo_bytes(&self) -> usize {
        self.ranges.iter().map(|r| (r.end - r.start) as usize).sum()
    }

    /// Whether an out-of-order range ends `offset` bytes past RCV.NXT.
    pub fn range_ends_at(&self, offset: usize) -> bool {
        let end = self.nxt + offset as u64;
        let i = self.ranges.partition_point(|r| r.end < end);
        self.ranges.get(i).is_some_and(|r| r.end == end)
    }

    /// How many disjoint out-of-order ranges are held.
    pub fn ooo_ranges(&self) -> usize {
        self.ranges.len()
    }

    /// Bytes of heap the buffer holds allocated: its ring, its list of ranges, the blocks of
    /// out-of-order bytes (by [`BLOCK_CHARGE`]), and the kept payloads by what they are
    /// charged (with their queue).
    pub fn allocated(&self) -> usize {
        self.storage.capacity()
            + self.ranges.capacity() * core::mem::size_of::<Range>()
            + self.blocks.as_ref().map_or(0, |b| b.len() * BLOCK_CHARGE)
            + self.kept.as_ref().map_or(0, |k| k.allocated())
    }

    /// Whether the buffer is empty (nothing to read, nothing held out of order) and still
    /// holds storage.
    pub fn idle_storage(&self) -> bool {
        self.is_empty() && self.ranges.is_empty() && self.allocated() > 0
    }

    /// Gives the storage back if nothing is held; the next write allocates afresh, as
    /// little as it needs.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() && self.ranges.is_empty() {
            self.storage = Vec::new();
            self.ranges = Vec::new();
            self.blocks = None;
            self.kept = None;
            self.head = 0;
        }
    }

    /// Whether the ring is mostly room: in-order bytes alone (none held out of order, which
    /// `prune_ooo` deals with) that a ring a quarter its size would hold, in a ring past
    /// [`SHRINK_FLOOR`]. A reader that leaves a few bytes unread after a burst (half a
    /// message, waiting for the rest) kept the whole ring the burst grew, which an empty
    /// ring gives back (`release_if_empty`).
    pub fn oversized(&self) -> bool {
        self.ranges.is_empty()
            && self.storage.len() > SHRINK_FLOOR
            && self.ring_len() < self.storage.len() / 4
    }

    /// Shrinks an [`oversized`](Self::oversized) ring to twice what it holds (at least
    /// [`SHRINK_FLOOR`]), so that the next writes have room before it grows again; returns
    /// the allocation given back. Linux likewise holds only the unread skbs, and collapses
    /// them under pressure (`tcp_collapse`).
    pub fn shrink_oversized(&mut self) -> usize {
        if !self.oversized() {
            return 0;
        }
        let before = self.allocated();
        let size = (2 * self.ring_len())
            .max(SHRINK_FLOOR)
            .min(self.storage.len());
        self.relocate(size);
        before - self.allocated()
    }

    /// Discards every out-of-order byte held and shrinks the ring to the in-order bytes;
    /// returns the allocation given back. At the memory cap, data that fills the hole at
    /// RCV.NXT needs the room more (Linux `tcp_prune_ofo_queue`; RFC 2018 §8 allows a
    /// receiver to renege on SACKed data).
    pub fn prune_ooo(&mut self) -> usize {
        let before = self.allocated();
        self.ranges = Vec::new();
        self.blocks = None;
        let ring_len = self.ring_len();
        if ring_len == 0 {
            self.storage = Vec::new();
            self.head = 0;
        } else if self.storage.len() > ring_len {
            self.relocate(ring_len);
        }
        before - self.allocated()
    }

    /// Forgets every out-of-order byte at or past `offset` bytes beyond RCV.NXT: the peer's
    /// FIN is there, and nothing after it is part of the stream (Linux's `tcp_fin` purges
    /// the out-of-order queue; its `tcp_ofo_queue` stops at the FIN). Returns whether any
    /// was held.
    pub fn discard_from(&mut self, offset: usize) -> bool {
        let pos = self.nxt + offset as u64;
        let before = self.ranges.len();
        self.ranges.retain(|r| r.start < pos);
        let mut trimmed = self.ranges.len() != before;
        if let Some(last) = self.ranges.last_mut().filter(|r| r.end > pos) {
            last.end = pos;
            trimmed = true;
        }
        // The blocks wholly past the FIN hold nothing of the stream now.
        self.drop_unclaimed_blocks();
        trimmed
    }

    /// Changes the capacity; never below what is held (the readable bytes plus everything up
    /// to the end of the last out-of-order range), so that no held byte falls outside it.
    pub fn set_capacity(&mut self, capacity: usize) {
        let held = (self.extent() - self.read_pos) as usize;
        self.capacity = capacity.max(held);
        if self.storage.len() > self.capacity {
            self.relocate(self.capacity);
        }
    }

    /// Records `[start, end)` as held out-of-order data, merging it with every range it
    /// overlaps or touches; fails without changing anything if that would exceed `max_ranges`.
    fn hold(&mut self, start: u64, end: u64) -> Result<(), TooManyRanges> {
        // Ranges entirely before the new one and not touching it...
        let first = self.ranges.partition_point(|r| r.end < start);
        // ...and ranges from `first` that overlap or touch it.
        let last = first
            + self.ranges[first..]
                .iter()
                .take_while(|r| r.start <= end)
                .count();
        if first == last && self.ranges.len() >= self.max_ranges as usize {
            return Err(TooManyRanges);
        }
        let merged = if last > first {
            Range {
                start: self.ranges[first].start.min(start),
                end: self.ranges[last - 1].end.max(end),
                stamp: self.clock,
            }
        } else {
            Range {
                start,
                end,
                stamp: self.clock,
            }
        };
        if first == last && self.ranges.len() == self.ranges.capacity() {
            // Grow by the amount `growth_for` charged.
            let more = self.grown_list() - self.ranges.len();
            self.ranges.reserve_exact(more);
        }
        self.ranges.splice(first..last, [merged]);
        Ok(())
    }

    /// The stream position just past the last byte held, in order or not.
    fn extent(&self) -> u64 {
        self.ranges.last().map_or(self.nxt, |r| r.end)
    }

    /// Writes in-order `data` into the ring at stream position `pos` (inside the window,
    /// checked by the caller), growing the ring if it must.
    fn store(&mut self, pos: u64, data: &[u8]) {
        let offset = (pos - self.ring_pos()) as usize;
        let needed = offset + data.len();
        if needed > self.storage.len() {
            self.relocate(self.grown(needed));
        }
        ring_write(&mut self.storage, self.head, offset, data);
    }

    /// Writes out-of-order `data` at stream position `pos` into its blocks, making those it
    /// needs (inside a range [`hold`](Self::hold) has just recorded).
    fn store_held(&mut self, pos: u64, data: &[u8]) {
        let blocks = self.blocks.get_or_insert_with(Box::default);
        let mut done = 0;
        while done < data.len() {
            let at = pos + done as u64;
            let within = (at % BLOCK as u64) as usize;
            let n = (BLOCK - within).min(data.len() - done);
            let block = blocks
                .entry(at / BLOCK as u64)
                .or_insert_with(|| Box::new([0; BLOCK]));
            block[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Copies the held bytes of `[from, to)`, which RCV.NXT has just passed, from their
    /// blocks to the ring (which has room for them).
    fn move_held_to_ring(&mut self, from: u64, to: u64) {
        let Some(blocks) = self.blocks.as_deref() else {
            return;
        };
        if from >= to {
            return;
        }
        let ring_pos = self.ring_pos();
        let range = from / BLOCK as u64..=(to - 1) / BLOCK as u64;
        for (&index, block) in blocks.range(range) {
            let block_start = index * BLOCK as u64;
            let (lo, hi) = (from.max(block_start), to.min(block_start + BLOCK as u64));
            let bytes = &block[(lo - block_start) as usize..(hi - block_start) as usize];
            ring_write(
                &mut self.storage,
                self.head,
                (lo - ring_pos) as usize,
                bytes,
            );
        }
    }

    /// Gives back the blocks no held range touches any more: those before the first range
    /// (RCV.NXT has passed them) and past the last (a FIN cut it short). Ranges shrink only
    /// at those two ends, so no block between them is ever left unclaimed.
    fn drop_unclaimed_blocks(&mut self) {
        let Some(blocks) = self.blocks.as_mut() else {
            return;
        };
        let (Some(first), Some(last)) = (self.ranges.first(), self.ranges.last()) else {
            self.blocks = None;
            return;
        };
        let (lo, hi) = (first.start / BLOCK as u64, (last.end - 1) / BLOCK as u64);
        if blocks.first_key_value().is_some_and(|(&k, _)| k < lo) {
            let rest = blocks.split_off(&lo);
            **blocks = rest;
        }
        if blocks.last_key_value().is_some_and(|(&k, _)| k > hi) {
            drop(blocks.split_off(&(hi + 1)));
        }
    }

    /// The `n` bytes the ring stores from stream position `pos` on (at least `ring_pos()`),
    /// as it holds them: up to its end, then from its start.
    fn slices(&self, pos: u64, n: usize) -> (&[u8], &[u8]) {
        let size = self.storage.len();
        let at = ring_index(self.head, (pos - self.ring_pos()) as usize, size);
        let first = n.min(size - at);
        (&self.storage[at..at + first], &self.storage[..n - first])
    }

    /// Moves the in-order bytes the ring holds to the start of a fresh allocation of `size`
    /// bytes (at least as many).
    fn relocate(&mut self, size: usize) {
        let mut storage = vec![0u8; size];
        let held = self.ring_len().min(self.storage.len()).min(size);
        if held > 0 {
            let (first, second) = self.slices(self.ring_pos(), held);
            storage[..first.len()].copy_from_slice(first);
            storage[first.len()..held].copy_from_slice(second);
        }
        self.storage = storage;
        self.head = 0;
    }
}

/// Writes `data` into the ring `storage`, whose first byte is at index `head`, `offset`
/// bytes past that first byte, wrapping at its end.
fn ring_write(storage: &mut [u8], head: usize, offset: usize, data: &[u8]) {
    let size = storage.len();
    let at = ring_index(head, offset, size);
    let first = data.len().min(size - at);
    storage[at..at + first].copy_from_slice(&data[..first]);
    storage[..data.len() - first].copy_from_slice(&data[first..]);
}

/// `(start + offset) mod size` for the ring, where both `start` and `offset` are at most
/// `size`: one compare instead of an integer division, which costs tens of cycles and ran
/// several times per segment.
#[inline]
fn ring_index(start: usize, offset: usize, size: usize) -> usize {
    debug_assert!(start <= size && offset <= size);
    let i = start + offset;
    if i >= size {
        i - size
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(buf: &mut RecvBuffer) -> Vec<u8> {
        let mut out = vec![0; buf.len()];
        assert_eq!(buf.read(&mut out), out.len());
        assert!(buf.is_empty());
        out
    }

    /// Where a hostile peer's out-of-order segments overlap with other bytes, the stream
    /// read is Linux's (`tcp_data_queue_ofo`): the lower start wins; of two starting
    /// together, the later if it reaches as far, else the first.
    #[test]
    fn overlapping_out_of_order_bytes_are_kept_as_linux_keeps_them() {
        // The segments at their offsets, and the stream read.
        type Case = (&'static [(usize, &'static [u8])], &'static [u8]);
        let cases: [Case; 5] = [
            // Inside a held segment: all its bits are present, dropped.
            (&[(5, b"BBBBB"), (6, b"xxx")], b"aaaaaBBBBB"),
            // Starting inside and running past it: the held part stays.
            (&[(5, b"BBBBB"), (8, b"yyyyy")], b"aaaaaBBBBByyy"),
            // Starting lower and running into it: the lower one's bytes.
            (&[(8, b"yyyyy"), (5, b"BBBBB")], b"aaaaaBBBBByyy"),
            // Same start, reaching further: it replaces the held one.
            (&[(5, b"BBB"), (5, b"zzzzz")], b"aaaaazzzzz"),
            // Same start, shorter: dropped.
            (&[(5, b"BBBBB"), (5, b"zz")], b"aaaaaBBBBB"),
        ];
        for (segments, stream) in cases {
            let mut buf = RecvBuffer::new(100, 4);
            for &(offset, data) in segments {
                assert_eq!(buf.write(offset, data), Ok(0));
            }
            assert!(buf.write(0, b"aaaaa").unwrap() > 5);
            assert_eq!(read_all(&mut buf), stream, "{segments:?}");
        }
        // In-order data overwrites what it reaches, as Linux reads past RCV.NXT.
        let mut buf = RecvBuffer::new(100, 4);
        buf.write(3, b"xxx").unwrap();
        assert_eq!(buf.write(0, b"aaaaa"), Ok(6));
        assert_eq!(read_all(&mut buf), b"aaaaax");
    }

    #[test]
    fn discard_from_forgets_held_bytes_past_a_fin() {
        let mut buf = RecvBuffer::new(100, 4);
        buf.write(2, b"cc").unwrap();
        buf.write(6, b"gggg").unwrap();
        buf.write(12, b"mm").unwrap();
        // The FIN at 8: [12, 14) goes, [6, 10) is cut to [6, 8).
        assert!(buf.discard_from(8));
        assert_eq!(buf.ooo_bytes(), 4);
        assert!(!buf.discard_from(8));
        assert_eq!(buf.write(0, b"aa"), Ok(4));
        assert_eq!(buf.write(0, b"ee"), Ok(4));
        assert_eq!(read_all(&mut buf), b"aacceegg");
        assert_eq!(buf.ooo_ranges(), 0);
    }

    #[test]
    fn in_order_segments_are_readable() {
        let mut buf = RecvBuffer::new(100, 4);
        assert_eq!(buf.write(0, b"hello "), Ok(6));
        assert_eq!(buf.write(0, b"world"), Ok(5));
        assert_eq!(buf.len(), 11);
        assert_eq!(buf.window(), 89);
        let mut part = [0; 4];
        assert_eq!(buf.read(&mut part), 4);
        assert_eq!(&part, b"hell");
        assert_eq!(read_all(&mut buf), b"o world");
        assert_eq!(buf.window(), 100);
    }

    #[test]
    fn read_with_hands_out_a_wrapped_ring_in_order_in_two_slices() {
        // MIN_ALLOC bytes of ring, filled, half read, and refilled past its end: the unread
        // bytes wrap, and `read_with` gives them as the ring's tail, then its head.
        let mut buf = RecvBuffer::new(MIN_ALLOC, 4);
        let first: Vec<u8> = (0..MIN_ALLOC).map(|i| i as u8).collect();
        buf.write(0, &first).unwrap();
        assert_eq!(buf.storage.len(), MIN_ALLOC);
        let mut half = vec![0; MIN_ALLOC / 2];
        assert_eq!(buf.read(&mut half), MIN_ALLOC / 2);
        let second: Vec<u8> = (0..MIN_ALLOC / 4).map(|i| (i * 7) as u8).collect();
        buf.write(0, &second).unwrap();
        assert_eq!(
            buf.storage.len(),
            MIN_ALLOC,
            "no reallocation: the ring wrapped"
        );
        let mut parts = Vec::new();
        let mut got = Vec::new();
        let n = buf.read_with(usize::MAX, |part| {
            parts.push(part.len());
            got.extend_from_slice(part);
        });
        assert_eq!(n, MIN_ALLOC / 2 + MIN_ALLOC / 4);
        assert_eq!(parts, [MIN_ALLOC / 2, MIN_ALLOC / 4]);
        assert_eq!(got[..MIN_ALLOC / 2], first[MIN_ALLOC / 2..]);
        assert_eq!(got[MIN_ALLOC / 2..], second[..]);
        assert!(buf.is_empty());
        assert_eq!(buf.read_with(10, |_| panic!("nothing to hand out")), 0);
    }

    /// A ring of 1 MiB whose few unread bytes wrap past its end shrinks to the floor, the
    /// bytes kept in order; one holding a quarter or more, or anything out of order, is
    /// left as it is.
    #[test]
    fn an_oversized_ring_shrinks_to_what_it_holds() {
        let size = 1 << 20;
        let mut buf = RecvBuffer::new(size, 4);
        let first: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        buf.write(0, &first).unwrap();
        assert_eq!(buf.storage.len(), size);
        let mut sink = vec![0; size - 100];
        assert_eq!(buf.read(&mut sink), size - 100);
        buf.write(0, b"wrapped").unwrap();
        assert!(buf.oversized());
        let given = buf.shrink_oversized();
        assert_eq!(buf.storage.len(), SHRINK_FLOOR);
        assert_eq!(given, size - SHRINK_FLOOR);
        let got = read_all(&mut buf);
        assert_eq!(got[..100], first[size - 100..]);
        assert_eq!(&got[100..], b"wrapped");
        assert!(!buf.oversized(), "empty: release_if_empty's case");

        let mut held = RecvBuffer::new(size, 4);
        held.write(0, &first).unwrap();
        assert_eq!(held.read(&mut sink[..size / 2]), size / 2);
        assert!(!held.oversized(), "half of it unread");
        assert_eq!(held.read(&mut sink[..size / 2 - 100]), size / 2 - 100);
        held.write(10, b"later").unwrap();
        assert!(!held.oversized(), "out-of-order bytes held");
        assert_eq!(held.shrink_oversized(), 0);
    }

    #[test]
    fn growth_for_predicts_the_allocation_range_list_included() {
        // One byte in order (the ring), then single bytes at every other offset, all in the
        // first block: past that block, only the list of ranges grows, and `growth_for` says
        // by how much, to the byte.
        let mut buf = RecvBuffer::new(4096, 300);
        buf.write(0, b"a").unwrap();
        let mut grew = 0;
        for k in 1..=255 {
            let predicted = buf.growth_for(2 * k, 1);
            let before = buf.allocated();
            buf.write(2 * k, b"b").unwrap();
            assert_eq!(buf.allocated() - before, predicted, "range {k}");
            grew += predicted;
        }
        assert_eq!(buf.blocks.as_ref().map(|b| b.len()), Some(1));
        assert!(grew >= BLOCK_CHARGE + 255 * core::mem::size_of::<Range>());
        // Touching a held range adds no entry, and its block is there.
        assert_eq!(buf.growth_for(3, 1), 0);
        // A byte in the next block costs that block.
        assert_eq!(buf.growth_for(BLOCK, 1), BLOCK_CHARGE);
    }

    /// A hostile peer's one byte at the far edge of a large window costs its block, where it
    /// cost a ring the size of the window: 6 MiB charged for 53 bytes on the wire.
    #[test]
    fn a_far_byte_costs_its_block_not_the_window() {
        const WINDOW: usize = 6 << 20;
        let mut buf = RecvBuffer::new(WINDOW, 256);
        buf.write(0, b"a").unwrap();
        let ring = buf.allocated();
        assert_eq!(ring, MIN_ALLOC);
        assert_eq!(
            buf.growth_for(WINDOW - 2, 1),
            BLOCK_CHARGE + 4 * size_of::<Range>()
        );
        assert_eq!(buf.write(WINDOW - 2, b"z"), Ok(0));
        assert_eq!(
            buf.allocated(),
            ring + BLOCK_CHARGE + 4 * size_of::<Range>()
        );
        assert_eq!(
            buf.storage.len(),
            MIN_ALLOC,
            "the ring holds only in-order bytes"
        );
        // One such byte in every block of the window, as many as the range limit allows:
        // each costs a block.
        for k in 1..256 {
            assert_eq!(buf.write(k * 4 * BLOCK, b"y"), Ok(0));
        }
        assert_eq!(buf.write(257 * 4 * BLOCK, b"y"), Err(TooManyRanges));
        assert_eq!(buf.ooo_ranges(), 256);
        let held = buf.allocated() - ring;
        assert!(
            held <= 256 * (BLOCK_CHARGE + 2 * size_of::<Range>()),
            "{held} bytes for 256 held bytes"
        );
        // Filling the window in order joins it all, and every block goes back.
        let fill = vec![b'f'; WINDOW - 1];
        assert_eq!(buf.write(0, &fill), Ok(WINDOW - 1));
        assert!(buf.blocks.is_none());
        assert_eq!(
            buf.allocated(),
            buf.storage.capacity() + buf.ranges.capacity() * size_of::<Range>()
        );
        let out = read_all(&mut buf);
        assert_eq!(out.len(), WINDOW);
        assert_eq!(out[0], b'a');
        assert!(
            out[1..].iter().all(|&b| b == b'f'),
            "in-order data overwrites what it reaches"
        );
    }

    /// Held bytes that straddle blocks and the ring's wrap reach the reader intact, and a
    /// FIN's discard gives back the blocks wholly past it.
    #[test]
    fn held_bytes_across_blocks_join_and_discard() {
        let mut buf = RecvBuffer::new(8 * BLOCK, 16);
        let stream: Vec<u8> = (0..6 * BLOCK).map(|i| (i % 251) as u8).collect();
        // The ring's head near its end, so that the joined bytes wrap.
        buf.write(0, &stream[..MIN_ALLOC - 7]).unwrap();
        let _ = read_all(&mut buf);
        let base = MIN_ALLOC - 7;
        let at = |p: usize| p - base;
        // Two held runs, each across a block boundary, with a hole between them.
        let (a, b) = (base + 100, base + 100 + BLOCK + 50);
        buf.write(at(a), &stream[a..b]).unwrap();
        let (c, d) = (b + 10, b + 10 + 2 * BLOCK);
        buf.write(at(c), &stream[c..d]).unwrap();
        assert!(buf.blocks.as_ref().unwrap().len() >= 4);
        // The FIN lands inside the second run: the blocks wholly past it go.
        let fin = c + BLOCK / 2;
        let before = buf.blocks.as_ref().unwrap().len();
        assert!(buf.discard_from(at(fin)));
        assert!(buf.blocks.as_ref().unwrap().len() < before);
        check_blocks(&buf);
        // The holes are filled: the stream up to the FIN, intact.
        assert_eq!(buf.write(0, &stream[base..a]), Ok(b - base));
        assert_eq!(buf.write(at(b) - (b - base), &stream[b..c]), Ok(fin - b));
        assert!(buf.blocks.is_none());
        assert_eq!(read_all(&mut buf), &stream[base..fin]);
    }

    #[test]
    fn out_of_order_segment_is_held_then_joined() {
        let mut buf = RecvBuffer::new(100, 4);
        assert_eq!(buf.write(5, b"fghij"), Ok(0));
        assert_eq!(buf.len(), 0);
        assert_eq!(buf.ooo_bytes(), 5);
        assert_eq!(buf.ooo_ranges(), 1);
        assert_eq!(buf.sack_ranges(4), vec![(5, 10)]);
        // Filling the hole advances RCV.NXT past the held range too.
        assert_eq!(buf.write(0, b"abcde"), Ok(10));
        assert_eq!(buf.ooo_ranges(), 0);
        assert_eq!(buf.ooo_bytes(), 0);
        assert_eq!(read_all(&mut buf), b"abcdefghij");
    }

    #[test]
    fn one_segment_joins_several_ranges() {
        let mut buf = RecvBuffer::new(100, 4);
        buf.write(2, b"cd").unwrap();
        buf.write(6, b"gh").unwrap();
        buf.write(10, b"kl").unwrap();
        assert_eq!(buf.ooo_ranges(), 3);
        // "ab" joins "cd" only; the holes at 4 and 8 remain.
        assert_eq!(buf.write(0, b"ab"), Ok(4));
        assert_eq!(buf.sack_ranges(4), vec![(6, 8), (2, 4)]);
        // A segment spanning the rest of the holes joins both remaining ranges.
        assert_eq!(buf.write(0, b"efghijk"), Ok(8));
        assert_eq!(read_all(&mut buf), b"abcdefghijkl");
    }

    #[test]
    fn overlapping_out_of_order_segments_merge() {
        let mut buf = RecvBuffer::new(100, 4);
        buf.write(4, b"efgh").unwrap();
        buf.write(6, b"ghijkl").unwrap();
        buf.write(2, b"cdef").unwrap();
        assert_eq!(buf.ooo_ranges(), 1);
        assert_eq!(buf.ooo_bytes(), 10);
        assert_eq!(buf.sack_ranges(4), vec![(2, 12)]);
        // Adjacent (touching) ranges merge too.
        buf.write(12, b"mn").unwrap();
        assert_eq!(buf.sack_ranges(4), vec![(2, 14)]);
        assert_eq!(buf.write(0, b"abc"), Ok(14));
        assert_eq!(read_all(&mut buf), b"abcdefghijklmn");
    }

    #[test]
    fn duplicate_segments_change_nothing() {
        let mut buf = RecvBuffer::new(100, 4);
        buf.write(3, b"def").unwrap();
        buf.write(3, b"def").unwrap();
        buf.write(4, b"e").unwrap();
        assert_eq!(buf.ooo_bytes(), 3);
        assert_eq!(buf.ooo_ranges(), 1);
        assert_eq!(buf.write(0, b"abc"), Ok(3 + 3));
        assert_eq!(buf.ooo_ranges(), 0);
        assert_eq!(buf.write(0, b"g"), Ok(1));
        assert_eq!(read_all(&mut buf), b"abcdefg");
    }

    #[test]
    fn segment_overlapping_rcv_nxt_and_held_range() {
        let mut buf = RecvBuffer::new(100, 4);
        buf.write(2, b"cdef").unwrap();
        // In-order segment that ends inside the held range.
        assert_eq!(buf.write(0, b"abcd"), Ok(6));
        assert_eq!(read_all(&mut buf), b"abcdef");
    }

    #[test]
    fn data_past_window_is_trimmed() {
        let mut buf = RecvBuffer::new(8, 4);
        assert_eq!(buf.write(0, b"0123456789"), Ok(8));
        assert_eq!(buf.window(), 0);
        assert_eq!(buf.write(0, b"x"), Ok(0));
        assert_eq!(read_all(&mut buf), b"01234567");
        // Out of order: only the part below the window's right edge is held.
        assert_eq!(buf.write(6, b"ABCD"), Ok(0));
        assert_eq!(buf.sack_ranges(4), vec![(6, 8)]);
        // Entirely past the window: ignored, and it does not count against max_ranges.
        assert_eq!(buf.write(8, b"Z"), Ok(0));
        assert_eq!(buf.write(usize::MAX, b"Z"), Ok(0));
        assert_eq!(buf.ooo_ranges(), 1);
        assert_eq!(buf.write(0, b"abcdef"), Ok(8));
        assert_eq!(read_all(&mut buf), b"abcdefAB");
    }

    #[test]
    fn empty_segment_is_a_no_op() {
        let mut buf = RecvBuffer::new(8, 0);
        assert_eq!(buf.write(3, b""), Ok(0));
        assert_eq!(buf.write(0, b""), Ok(0));
        assert_eq!(buf.ooo_ranges(), 0);
    }

    #[test]
    fn max_ranges_is_enforced() {
        let mut buf = RecvBuffer::new(100, 2);
        buf.write(2, b"c").unwrap();
        buf.write(4, b"e").unwrap();
        assert_eq!(buf.write(6, b"g"), Err(TooManyRanges));
        assert_eq!(buf.ooo_ranges(), 2);
        assert_eq!(buf.ooo_bytes(), 2, "nothing stored on error");
        // Segments that extend or bridge existing ranges are still accepted.
        assert_eq!(buf.write(5, b"f"), Ok(0));
        assert_eq!(buf.write(3, b"d"), Ok(0));
        assert_eq!(buf.ooo_ranges(), 1);
        assert_eq!(buf.write(8, b"i"), Ok(0));
        assert_eq!(buf.ooo_ranges(), 2);
        // In-order data is always accepted, whatever the range count.
        assert_eq!(buf.write(0, b"ab"), Ok(6));
        assert_eq!(read_all(&mut buf), b"abcdef");
        assert_eq!(buf.sack_ranges(4), vec![(2, 3)]);
    }

    #[test]
    fn zero_max_ranges_holds_nothing_out_of_order() {
        let mut buf = RecvBuffer::new(100, 0);
        assert_eq!(buf.write(1, b"b"), Err(TooManyRanges));
        assert_eq!(buf.write(0, b"a"), Ok(1));
    }

    #[test]
    fn sack_blocks_newest_first() {
        let mut buf = RecvBuffer::new(100, 8);
        buf.write(10, b"k").unwrap();
        buf.write(20, b"u").unwrap();
        buf.write(30, b"E").unwrap();
        assert_eq!(buf.sack_ranges(8), vec![(30, 31), (20, 21), (10, 11)]);
        // A segment extending the oldest range makes it the newest (RFC 2018 §4).
        buf.write(11, b"l").unwrap();
        assert_eq!(buf.sack_ranges(8), vec![(10, 12), (30, 31), (20, 21)]);
        // So does a duplicate.
        buf.write(20, b"u").unwrap();
        assert_eq!(buf.sack_ranges(2), vec![(20, 21), (10, 12)]);
        assert_eq!(buf.sack_ranges(0), vec![]);
        // Offsets are relative to RCV.NXT, which moves.
        buf.write(0, &[0; 5]).unwrap();
        assert_eq!(buf.sack_ranges(1), vec![(15, 16)]);
    }

    #[test]
    fn read_after_joins_across_ring_wrap() {
        let mut buf = RecvBuffer::new(MIN_ALLOC, 4);
        // Move the ring's head near its end.
        let filler = vec![7u8; MIN_ALLOC - 10];
        assert_eq!(buf.write(0, &filler), Ok(filler.len()));
        assert_eq!(read_all(&mut buf), filler);
        // Now held bytes wrap around the 1024-byte ring.
        buf.write(8, b"IJKLMNOP").unwrap();
        buf.write(20, b"UVW").unwrap();
        assert_eq!(buf.write(0, b"ABCDEFGH"), Ok(16));
        assert_eq!(buf.write(0, b"QRST"), Ok(7));
        let mut out = [0; 5];
        assert_eq!(buf.read(&mut out), 5);
        assert_eq!(&out, b"ABCDE");
        assert_eq!(read_all(&mut buf), b"FGHIJKLMNOPQRSTUVW");
    }

    #[test]
    fn set_capacity_keeps_held_bytes() {
        let mut buf = RecvBuffer::new(4096, 4);
        buf.write(0, &[1; 100]).unwrap();
        buf.write(100, &[2; 50]).unwrap();
        buf.set_capacity(10);
        // 100 readable + a hole of 100 + 50 held: 250.
        assert_eq!(buf.capacity(), 250);
        assert_eq!(buf.window(), 150);
        assert!(buf.storage.len() <= 250);
        buf.write(0, &[3; 100]).unwrap();
        let out = read_all(&mut buf);
        assert_eq!(out.len(), 250);
        assert_eq!(&out[..100], &[1; 100]);
        assert_eq!(&out[100..200], &[3; 100]);
        assert_eq!(&out[200..], &[2; 50]);
    }

    #[test]
    fn memory_grows_with_use() {
        let mut buf = RecvBuffer::new(1 << 30, 4);
        assert_eq!(buf.storage.len(), 0);
        buf.write(0, b"x").unwrap();
        assert_eq!(buf.storage.len(), MIN_ALLOC);
        // A hostile far-away segment allocates only up to its own end, never the capacity.
        buf.write(10_000, b"y").unwrap();
        assert!(buf.storage.len() < 32_768);
    }

    /// A stream cut into segments, possibly overlapping.
    fn segments(stream_len: usize) -> impl Strategy<Value = Vec<(usize, usize)>> {
        prop::collection::vec((0..stream_len, 1..300usize), 1..60).prop_map(move |cuts| {
            let mut segs: Vec<(usize, usize)> = cuts
                .into_iter()
                .map(|(s, l)| (s, (s + l).min(stream_len)))
                .collect();
            // Make sure the stream is covered: consecutive pieces of 250 bytes.
            let mut s = 0;
            while s < stream_len {
                segs.push((s, (s + 250).min(stream_len)));
                s += 250;
            }
            segs
        })
    }

    /// Feeds `seg` (absolute stream positions) as a connection would: trimmed to RCV.NXT,
    /// and, with `keep`, every other in-order segment that the buffer keeps by reference
    /// handed in as a frame of its own.
    fn deliver(
        buf: &mut RecvBuffer,
        stream: &[u8],
        rcv_nxt: &mut usize,
        seg: (usize, usize),
        keep: bool,
    ) {
        let (s, e) = seg;
        if e <= *rcv_nxt {
            return;
        }
        let s = s.max(*rcv_nxt);
        let data = &stream[s..e];
        if keep && s == *rcv_nxt && (s + e) % 2 == 0 && buf.keeps(data.len(), data.len()) {
            *rcv_nxt += buf.write_kept(Bytes::copy_from_slice(data), data.len());
        } else {
            let offset = s - *rcv_nxt;
            let trimmed = data.len().min(buf.window().saturating_sub(offset));
            let predicted = buf.growth_for(offset, trimmed);
            let before = buf.allocated();
            if let Ok(advanced) = buf.write(offset, data) {
                *rcv_nxt += advanced;
                let added = buf.allocated().saturating_sub(before);
                assert!(added <= predicted, "grew {added}, predicted {predicted}");
            }
        }
        check_blocks(buf);
    }

    /// Every held byte has its block, and every block holds some held byte.
    fn check_blocks(buf: &RecvBuffer) {
        let blocks = buf.blocks.as_deref();
        assert!(
            blocks.is_none_or(|b| !b.is_empty()),
            "an empty map is given back"
        );
        let span = |r: &Range| r.start / BLOCK as u64..=(r.end - 1) / BLOCK as u64;
        for r in &buf.ranges {
            for index in span(r) {
                assert!(blocks.is_some_and(|b| b.contains_key(&index)), "{r:?}");
            }
        }
        for &index in blocks.into_iter().flat_map(|b| b.keys()) {
            assert!(
                buf.ranges.iter().any(|r| span(r).contains(&index)),
                "block {index} holds nothing"
            );
        }
    }

    /// A segment's payload in a frame of `truesize` bytes, at `at`.
    fn framed(payload: &[u8], at: usize, truesize: usize) -> (Bytes, Bytes) {
        let mut frame = vec![0xee; truesize];
        frame[at..at + payload.len()].copy_from_slice(payload);
        let frame = Bytes::from(frame);
        let kept = Frame { bytes: &frame }.payload(&frame[at..at + payload.len()]);
        (frame.clone(), kept.unwrap())
    }

    #[test]
    fn kept_payloads_are_read_first_and_charged_their_frame() {
        let mut buf = RecvBuffer::new(10_000, 4);
        let first: Vec<u8> = (0..600).map(|i| i as u8).collect();
        let (frame, payload) = framed(&first, 40, 1000);
        // Half the frame or more is kept; less is copied.
        assert!(buf.keeps(600, 1000));
        assert!(!buf.keeps(499, 1000));
        let predicted = buf.growth_for_kept(1000);
        assert_eq!(buf.write_kept(payload, 1000), 600);
        assert_eq!(buf.allocated(), predicted);
        assert!(buf.allocated() >= 1000, "charged the whole frame");
        assert!(!frame.is_unique(), "held by reference, not copied");
        // A second frame right after it is kept too; then copied bytes go to the ring.
        let (second_frame, second) = framed(b"0123456789", 0, 12);
        assert_eq!(buf.write_kept(second, 12), 10);
        assert_eq!(buf.write(0, b"ring"), Ok(4));
        // Bytes wait in the ring now: a kept payload would be read before them.
        assert!(!buf.keeps(600, 1000));
        assert_eq!(buf.write(2, b"ooo"), Ok(0));
        assert_eq!(buf.len(), 614);

        // A read part-way into the first payload, a peek across all three, then the rest.
        let mut part = [0; 250];
        assert_eq!(buf.read(&mut part), 250);
        assert_eq!(part[..], first[..250]);
        assert!(!frame.is_unique(), "the payload is not all read");
        let mut peeked = vec![0; 1000];
        assert_eq!(buf.peek(&mut peeked), 364);
        let mut pieces = Vec::new();
        let mut rest = Vec::new();
        assert_eq!(
            buf.read_with(usize::MAX, |p| {
                pieces.push(p.len());
                rest.extend_from_slice(p);
            }),
            364
        );
        assert_eq!(pieces, [350, 10, 4], "each kept payload, then the ring");
        assert_eq!(peeked[..364], rest[..]);
        let mut expect = first[250..].to_vec();
        expect.extend_from_slice(b"0123456789ring");
        assert_eq!(rest, expect);
        assert!(
            frame.is_unique() && second_frame.is_unique(),
            "read: let go"
        );
        // The held bytes are still where they belong, and fill in as before.
        assert_eq!(buf.write(0, b"ab"), Ok(5));
        assert_eq!(read_all(&mut buf), b"abooo");
        buf.release_if_empty();
        assert_eq!(buf.allocated(), 0);
    }

    #[test]
    fn a_payload_outside_the_frame_is_not_kept() {
        let frame = Bytes::from(vec![1u8; 100]);
        let elsewhere = [1u8; 10];
        assert!(Frame { bytes: &frame }.payload(&elsewhere).is_none());
        assert!(Frame { bytes: &frame }.payload(&frame[90..]).is_some());
        assert!(Frame { bytes: &frame }.payload(&frame[..0]).is_some());
    }

    proptest! {
        /// Any permutation of overlapping, duplicated segments reassembles to the stream.
        #[test]
        fn permuted_segments_reassemble(
            stream in prop::collection::vec(any::<u8>(), 1..3000),
            segs in segments(3000),
            order in prop::collection::vec(any::<prop::sample::Index>(), 0..200),
            keep in any::<bool>(),
        ) {
            let n = stream.len();
            let segs: Vec<(usize, usize)> = segs
                .into_iter()
                .filter(|&(s, _)| s < n)
                .map(|(s, e)| (s, e.min(n)))
                .collect();
            let mut buf = RecvBuffer::new(4096, 64);
            let mut rcv_nxt = 0;
            // Random picks first (with repetition: duplicates), then all of them in reverse
            // order, which guarantees every byte arrives at least once.
            for idx in &order {
                deliver(&mut buf, &stream, &mut rcv_nxt, segs[idx.index(segs.len())], keep);
            }
            for &seg in segs.iter().rev() {
                deliver(&mut buf, &stream, &mut rcv_nxt, seg, keep);
            }
            prop_assert_eq!(rcv_nxt, n);
            prop_assert_eq!(buf.ooo_ranges(), 0);
            prop_assert!(buf.blocks.is_none(), "every block given back");
            prop_assert_eq!(read_all(&mut buf), stream);
        }

        /// With a small window, range limit and interleaved reads, whatever is delivered in
        /// order is exactly the stream's prefix, and retransmission rounds finish the job.
        #[test]
        fn small_window_with_reads_delivers_the_stream(
            stream in prop::collection::vec(any::<u8>(), 1..2000),
            segs in segments(2000),
            capacity in 16..600usize,
            max_ranges in 0..5usize,
            reads in prop::collection::vec(0..400usize, 1..50),
            keep in any::<bool>(),
        ) {
            let n = stream.len();
            let segs: Vec<(usize, usize)> = segs
                .into_iter()
                .filter(|&(s, _)| s < n)
                .map(|(s, e)| (s, e.min(n)))
                .collect();
            let mut buf = RecvBuffer::new(capacity, max_ranges);
            let mut rcv_nxt = 0;
            let mut out = Vec::new();
            let mut reads = reads.iter().cycle();
            let mut dst = [0u8; 400];
            // Each round delivers every segment; at least `capacity` new bytes are read per
            // round in the worst case, so this many rounds always suffice.
            for _round in 0..(n / capacity.min(250) + 2) * 2 {
                for &seg in &segs {
                    deliver(&mut buf, &stream, &mut rcv_nxt, seg, keep);
                    let want = *reads.next().unwrap_or(&1);
                    let got = buf.read(&mut dst[..want]);
                    out.extend_from_slice(&dst[..got]);
                    prop_assert!(buf.ooo_ranges() <= max_ranges);
                    prop_assert!(buf.len() + buf.window() == capacity);
                }
                out.extend(read_all(&mut buf));
                if out.len() == n {
                    break;
                }
            }
            prop_assert_eq!(out, stream);
        }
    }
}
