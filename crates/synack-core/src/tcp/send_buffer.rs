//! The send buffer: bytes the application wrote and the peer has not acknowledged yet.
//!
//! Offset 0 is SND.UNA. The first `SND.NXT - SND.UNA` bytes are in flight, the rest are
//! unsent; the buffer does not know where that boundary is (the connection does), it only
//! keeps the bytes in order so that any of them can be (re)sent with [`SendBuffer::copy_out`]
//! and dropped with [`SendBuffer::consume`] once cumulatively acknowledged
//! (RFC 9293 §3.10.7.4, "If SND.UNA < SEG.ACK =< SND.NXT ... any segments on the
//! retransmission queue that are thereby entirely acknowledged are removed").
//!
//! Storage is a ring that grows on demand up to `capacity`, so an idle connection with a
//! large configured buffer costs nothing; it is not shrunk again except by
//! [`SendBuffer::set_capacity`], since a connection that once needed the room will likely
//! need it again.

use super::ring_index;

/// The smallest allocation, so that a stream of tiny writes does not reallocate per byte.
const MIN_ALLOC: usize = 1024;

/// Bytes written by the application and not yet acknowledged, in stream order.
#[derive(Debug, Clone)]
pub struct SendBuffer {
    /// Ring storage; its length is the allocated size, at most `max(capacity, len)`.
    storage: Vec<u8>,
    /// Index in `storage` of offset 0 (SND.UNA).
    head: usize,
    /// Bytes held.
    len: usize,
    /// The most bytes the buffer accepts.
    capacity: usize,
}

impl SendBuffer {
    /// An empty buffer that will accept up to `capacity` bytes. Nothing is allocated yet.
    pub fn new(capacity: usize) -> Self {
        SendBuffer {
            storage: Vec::new(),
            head: 0,
            len: 0,
            capacity,
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

    /// Appends as much of `data` as fits and returns how much that was.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.reserve(self.len + n);
        let size = self.storage.len();
        let tail = ring_index(self.head, self.len, size);
        let first = n.min(size - tail);
        self.storage[tail..tail + first].copy_from_slice(&data[..first]);
        self.storage[..n - first].copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Drops `n` bytes from the front (they were acknowledged); `n` is clamped to `len()`.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        if self.len == 0 {
            // Restart at the beginning so that later writes are contiguous.
            self.head = 0;
        } else {
            self.head = ring_index(self.head, n, self.storage.len());
        }
    }

    /// Copies the bytes at `[offset, offset + dst.len())` into `dst`, clamped to what is held,
    /// and returns how many were copied (zero if `offset >= len()`).
    pub fn copy_out(&self, offset: usize, dst: &mut [u8]) -> usize {
        if offset >= self.len {
            return 0;
        }
        let n = dst.len().min(self.len - offset);
        let size = self.storage.len();
        let start = ring_index(self.head, offset, size);
        let first = n.min(size - start);
        dst[..first].copy_from_slice(&self.storage[start..start + first]);
        dst[first..n].copy_from_slice(&self.storage[..n - first]);
        n
    }

    /// Changes how many bytes the buffer accepts; never below what it holds now.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(self.len);
        if self.storage.len() > self.capacity {
            // Give memory back: the allocation may not exceed the new bound.
            self.relocate(self.capacity);
        }
    }

    /// Makes sure storage holds at least `needed` bytes (`needed <= capacity`), growing
    /// geometrically so that a stream of small pushes costs amortized O(1) per byte.
    fn reserve(&mut self, needed: usize) {
        let size = self.storage.len();
        if needed <= size {
            return;
        }
        let target = needed
            .max(size.saturating_mul(2))
            .max(MIN_ALLOC)
            .min(self.capacity);
        self.relocate(target);
    }

    /// Moves the held bytes to the start of a fresh allocation of `size >= len` bytes.
    fn relocate(&mut self, size: usize) {
        let mut storage = vec![0u8; size];
        let n = self.copy_out(0, &mut storage[..self.len]);
        debug_assert_eq!(n, self.len);
        self.storage = storage;
        self.head = 0;
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
        assert_eq!(buf.storage.len(), 0);
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

    #[test]
    fn wraps_around_the_ring() {
        let mut buf = SendBuffer::new(8);
        assert_eq!(buf.push(b"abcdef"), 6);
        buf.consume(4);
        // "ef" sit at indices 4..6; "ghijkl" wraps past the end of the 8-byte ring.
        assert_eq!(buf.push(b"ghijkl"), 6);
        assert_eq!(buf.storage.len(), 8);
        assert_eq!(held(&buf), b"efghijkl");
        let mut mid = [0; 4];
        assert_eq!(buf.copy_out(3, &mut mid), 4);
        assert_eq!(&mid, b"hijk");
        buf.consume(5);
        assert_eq!(held(&buf), b"jkl");
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
    fn growth_preserves_wrapped_contents() {
        let mut buf = SendBuffer::new(5000);
        let first: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        assert_eq!(buf.push(&first), 1000);
        assert_eq!(buf.storage.len(), MIN_ALLOC);
        buf.consume(900);
        // Wraps in the 1024-byte ring, then forces a regrow while wrapped.
        let second: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(buf.push(&second), 3000);
        let mut expect = first[900..].to_vec();
        expect.extend_from_slice(&second);
        assert_eq!(held(&buf), expect);
        assert!(buf.storage.len() <= 5000);
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
        assert!(buf.storage.len() <= 600, "shrinking gives memory back");
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
        let mut buf = SendBuffer::new(3000);
        let mut model: Vec<u8> = Vec::new();
        let mut x: u32 = 12345;
        let mut next = || {
            // A fixed LCG: deterministic, no dependency.
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (x >> 16) as usize
        };
        let mut byte = 0u8;
        for _ in 0..2000 {
            let data: Vec<u8> = (0..next() % 700)
                .map(|_| {
                    byte = byte.wrapping_add(1);
                    byte
                })
                .collect();
            let n = buf.push(&data);
            assert_eq!(n, data.len().min(3000 - model.len()));
            model.extend_from_slice(&data[..n]);
            let c = next() % 800;
            buf.consume(c);
            model.drain(..c.min(model.len()));
            let off = next() % 3100;
            let mut dst = vec![0; next() % 500];
            let got = buf.copy_out(off, &mut dst);
            let want = model.get(off..).map_or(0, |rest| rest.len().min(dst.len()));
            assert_eq!(got, want);
            if got > 0 {
                assert_eq!(&dst[..got], &model[off..off + got]);
            }
        }
        assert_eq!(held(&buf), model);
    }
}
