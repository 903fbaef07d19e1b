//! The driver's receive buffers.
//!
//! Each packet is read into a buffer of its own and handed to the core as shared memory
//! (`Endpoint::handle_packet_shared`). The core copies what it takes from most packets, and
//! the buffer then comes straight back for the next read. But it keeps the in-order payload
//! of a large segment (a GRO super-packet of bulk data) by reference until the application
//! reads it, which saves copying every byte of a bulk download once more; that buffer is
//! lent, and a fresh one is needed meanwhile.
//!
//! Lent buffers are remembered, and the first one the core has let go of is reused, so
//! that a steady download cycles through a few buffers instead of allocating (and zeroing)
//! one for every packet.
//!
//! The driver reads a burst of packets before it takes the shard's lock to feed them to the
//! core (`driver.rs`), so several buffers are out at once; those that come back with nothing
//! kept wait as spares, the last one back (the warmest) read into first.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Lent buffers remembered for reuse, at most. One that is forgotten is freed by whoever
/// drops the last handle on it.
const LENT_MAX: usize = 64;

/// Buffers read into next, and the buffers lent to the core.
pub(crate) struct RxBuffers {
    /// Buffers ready for a read, each initialised and `len` bytes long; the last is next.
    spare: Vec<BytesMut>,
    /// Buffers whose payload the core kept, oldest first.
    lent: VecDeque<Bytes>,
    len: usize,
    /// Spares kept at most: the driver's read burst.
    spare_max: usize,
}

impl RxBuffers {
    /// Buffers of `len` bytes, room for any packet the device may hand over; up to
    /// `spare_max` of them are kept ready.
    pub(crate) fn new(len: usize, spare_max: usize) -> RxBuffers {
        RxBuffers {
            spare: vec![BytesMut::zeroed(len)],
            lent: VecDeque::new(),
            len,
            spare_max: spare_max.max(1),
        }
    }

    /// The buffer the next packet is read into.
    pub(crate) fn current(&mut self) -> &mut [u8] {
        if self.spare.is_empty() {
            let buf = self.reclaim().unwrap_or_else(|| BytesMut::zeroed(self.len));
            self.spare.push(buf);
        }
        let last = self.spare.len() - 1;
        &mut self.spare[last]
    }

    /// The buffer [`RxBuffers::current`] gave, with the packet just read into it, for the
    /// core (`Endpoint::handle_packet_shared`). Hand it back with [`RxBuffers::give_back`].
    pub(crate) fn take(&mut self) -> Bytes {
        self.current();
        self.spare.pop().unwrap_or_default().freeze()
    }

    /// Takes back a buffer [`RxBuffers::take`] gave out, once the core has seen its packet:
    /// a spare again if the core kept nothing of it; else remembered, and reused once the
    /// core lets go of it.
    pub(crate) fn give_back(&mut self, buf: Bytes) {
        match buf.try_into_mut() {
            Ok(buf) => {
                if self.spare.len() < self.spare_max {
                    self.spare.push(buf);
                }
            }
            Err(kept) => {
                if self.lent.len() == LENT_MAX {
                    self.lent.pop_front();
                }
                self.lent.push_back(kept);
            }
        }
    }

    /// A lent buffer that nothing else holds any more, taken back.
    fn reclaim(&mut self) -> Option<BytesMut> {
        let at = self.lent.iter().rposition(Bytes::is_unique)?;
        // Unique: no other handle exists, so none can appear, and the conversion reuses the
        // memory (initialised, `len` bytes) without copying it.
        self.lent.remove(at)?.try_into_mut().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_nothing_kept_comes_straight_back() {
        let mut rx = RxBuffers::new(2048, 4);
        let at = rx.current().as_ptr();
        let buf = rx.take();
        assert_eq!(buf.len(), 2048);
        rx.give_back(buf);
        assert_eq!(rx.current().as_ptr(), at, "the same memory, reused");
        assert_eq!(rx.current().len(), 2048);
        assert!(rx.lent.is_empty());
    }

    #[test]
    fn a_burst_takes_several_and_the_last_back_is_read_into_first() {
        let mut rx = RxBuffers::new(512, 2);
        let bufs: Vec<Bytes> = (0..3).map(|_| rx.take()).collect();
        let ptrs: Vec<*const u8> = bufs.iter().map(|b| b.as_ptr()).collect();
        assert!(ptrs[0] != ptrs[1] && ptrs[1] != ptrs[2] && ptrs[0] != ptrs[2]);
        for b in bufs {
            rx.give_back(b);
        }
        assert_eq!(rx.spare.len(), 2, "spares kept at most");
        assert_eq!(rx.current().as_ptr(), ptrs[1], "the last kept back, first");
        assert_eq!(rx.current().len(), 512);
    }

    #[test]
    fn a_kept_buffer_is_reused_once_let_go() {
        let mut rx = RxBuffers::new(2048, 4);
        let first = rx.current().as_ptr();
        let buf = rx.take();
        let kept = buf.slice(100..1500);
        rx.give_back(buf);
        assert_ne!(
            rx.current().as_ptr(),
            first,
            "lent: the next read goes elsewhere"
        );
        assert_eq!(rx.current().len(), 2048);
        // Kept again (the second buffer); the first is still held.
        let buf = rx.take();
        let second = buf.as_ptr();
        let kept_too = buf.slice(..1024);
        rx.give_back(buf);
        assert_eq!(rx.lent.len(), 2);
        let third = rx.current().as_ptr();
        assert!(third != first && third != second);
        // The application reads the first payload: its buffer comes back next time one is
        // needed, whole and initialised.
        drop(kept);
        let buf = rx.take();
        let _held = buf.slice(..1024);
        rx.give_back(buf);
        assert_eq!(rx.current().as_ptr(), first);
        assert_eq!(rx.current().len(), 2048);
        drop(kept_too);
    }

    #[test]
    fn lent_buffers_are_remembered_up_to_a_bound() {
        let mut rx = RxBuffers::new(64, 4);
        let mut held = Vec::new();
        for _ in 0..LENT_MAX + 10 {
            let buf = rx.take();
            held.push(buf.slice(..40));
            rx.give_back(buf);
        }
        assert_eq!(rx.lent.len(), LENT_MAX);
        drop(held);
        assert!(rx.reclaim().is_some());
    }
}
