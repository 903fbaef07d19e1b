//! The send buffer's heap stays in proportion to the bytes it holds, however the application
//! writes them: tiny copied writes (`send`) interleaved with tiny zero-copy ones
//! (`send_bytes`) must not each pin an allocation of their own, nor a slot of the chunk
//! queue per byte. The limit on queued bytes is what bounds a connection's memory; if each
//! byte could cost a kilobyte, an application answering a peer's small requests with small
//! writes would hold a thousand times what the memory budget counts.
//!
//! Measured with a counting allocator, in a binary of its own so that no other test's
//! allocations mix in.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::net::SocketAddr;

use bytes::Bytes;
use synack_core::testing::Pair;
use synack_core::{Config, Error};

/// A write pattern: its name, and the write it makes at step `i` (returning what it queued).
type Pattern = (
    &'static str,
    fn(&mut Pair, synack_core::ConnectionHandle, usize) -> usize,
);

fn write(
    p: &mut Pair,
    c: synack_core::ConnectionHandle,
    i: usize,
    bytes: bool,
    len: usize,
) -> usize {
    let data = vec![i as u8; len];
    let r = if bytes {
        p.client.send_bytes(c, Bytes::from(data))
    } else {
        p.client.send(c, &data)
    };
    match r {
        Ok(n) => n,
        Err(Error::WouldBlock) => 0,
        Err(e) => panic!("write failed: {e:?}"),
    }
}

#[test]
fn tiny_writes_of_both_kinds_hold_heap_in_proportion_to_their_bytes() {
    let patterns: [Pattern; 5] = [
        ("1-byte copies", |p, c, i| write(p, c, i, false, 1)),
        ("1-byte Bytes", |p, c, i| write(p, c, i, true, 1)),
        ("1-byte copies and Bytes in turn", |p, c, i| {
            write(p, c, i, i % 2 == 0, 1)
        }),
        ("100-byte copies and 7-byte Bytes in turn", |p, c, i| {
            if i % 2 == 0 {
                write(p, c, i, false, 100)
            } else {
                write(p, c, i, true, 7)
            }
        }),
        ("1-byte copies and 1 KiB Bytes in turn", |p, c, i| {
            if i % 2 == 0 {
                write(p, c, i, false, 1)
            } else {
                write(p, c, i, true, 1024)
            }
        }),
    ];
    for (name, step) in patterns {
        let mut p = Pair::new(Config::default());
        let l = p
            .server
            .listen(SocketAddr::new(Pair::SERVER, 80), 8)
            .unwrap();
        let (c, _s) = p.connect(l, 80);
        // Nothing is pumped from here on: every byte written stays queued, unacknowledged.
        let before = counting_alloc::live();
        let mut queued = 0;
        let mut i = 0;
        // Bounded: the send buffer (256 KiB by default) fills long before.
        while i < 2_000_000 {
            let n = step(&mut p, c, i);
            if n == 0 {
                break;
            }
            queued += n;
            i += 1;
        }
        let heap = counting_alloc::live().saturating_sub(before);
        eprintln!(
            "{name}: {queued} bytes queued in {i} writes, heap {heap} ({:.2}x)",
            heap as f64 / queued as f64
        );
        assert!(queued >= 64 * 1024, "{name}: only {queued} bytes queued");
        assert!(
            heap <= 2 * queued + 64 * 1024,
            "{name}: {heap} bytes of heap for {queued} bytes queued"
        );
    }
}
