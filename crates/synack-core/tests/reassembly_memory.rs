//! The reassembly cap bounds the heap, not only what it counts: a flood of datagrams that
//! never complete, each one piece, from the smallest pieces to ones behind the largest
//! extension headers an IPv6 packet may carry, leaves the process holding no more than about
//! `Config::fragment_memory` (measured with a counting allocator, in a binary of its own so
//! that no other test's allocations mix in).

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::net::{Ipv4Addr, Ipv6Addr};

use synack_core::testing::{deliver, ipv4_fragment, Pair};
use synack_core::wire::IpProtocol;
use synack_core::{Config, Endpoint, Instant};

const CAP: usize = 1 << 20;

/// An IPv4 piece at offset 0 (MF set) of 8 bytes, identification `ident`, from `src`.
fn v4_piece(src: Ipv4Addr, ident: u16) -> Vec<u8> {
    let dst = Ipv4Addr::new(198, 18, 0, 2);
    ipv4_fragment((src, dst), IpProtocol::Udp, ident, 0, true, &[0; 8])
}

/// An IPv6 piece at offset 0 (M set) of 8 bytes, identification `ident`, behind `headers`
/// Destination Options headers of `len` bytes each, filled with an unknown option to skip
/// (type 0x1e: "skip over this option"; padding may not run past 7 bytes, as Linux's).
fn v6_piece(ident: u32, headers: usize, len: usize) -> Vec<u8> {
    let src = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
    let dst = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
    let mut p = vec![0x60, 0, 0, 0, 0, 0, if headers > 0 { 60 } else { 44 }, 64];
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    for h in 0..headers {
        let next = if h + 1 == headers { 44 } else { 60 };
        p.extend_from_slice(&[next, (len / 8 - 1) as u8]);
        // Options of at most 257 bytes fill the rest (a Pad1 for a lone byte).
        let mut left = len - 2;
        while left > 0 {
            let n = if left == 1 {
                1
            } else if left > 257 && left - 257 == 1 {
                256
            } else {
                left.min(257)
            };
            if n == 1 {
                p.push(0);
            } else {
                p.extend_from_slice(&[0x1e, (n - 2) as u8]);
                p.extend(std::iter::repeat_n(0, n - 2));
            }
            left -= n;
        }
    }
    p.extend_from_slice(&[17, 0, 0, 1]);
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    let payload = (p.len() - 40) as u16;
    p[4..6].copy_from_slice(&payload.to_be_bytes());
    p
}

/// A flood: its name, and its `i`-th piece.
type Flood = (&'static str, Box<dyn Fn(u32) -> Vec<u8>>);

#[test]
fn the_cap_bounds_the_heap_under_a_flood_of_incomplete_datagrams() {
    let floods: [Flood; 3] = [
        (
            "IPv4, 8-byte pieces",
            Box::new(|i| v4_piece(Ipv4Addr::new(198, 18, 1 + (i >> 16) as u8, 1), i as u16)),
        ),
        ("IPv6, 8-byte pieces", Box::new(|i| v6_piece(i, 0, 0))),
        (
            "IPv6, 8-byte pieces behind 8 extension headers of 2,048 bytes",
            Box::new(|i| v6_piece(i, 8, 2048)),
        ),
    ];
    for (name, piece) in floods {
        let mut c = Config::default();
        c.fragment_memory(CAP);
        let mut ep = Endpoint::new(c, &[Pair::SERVER, "2001:2::2".parse().unwrap()]);
        let now = Instant::from_secs(1);
        let before = counting_alloc::live();
        let mut peak = 0;
        for i in 0..20_000u32 {
            deliver(&mut ep, now, &piece(i));
            if i % 500 == 0 {
                peak = peak.max(counting_alloc::live().saturating_sub(before));
            }
        }
        peak = peak.max(counting_alloc::live().saturating_sub(before));
        let usage = ep.memory_usage();
        let st = ep.stats();
        eprintln!(
            "{name}: charged {} of {CAP}, heap {peak} ({:.2}x the cap), {} evicted",
            usage.reassembly,
            peak as f64 / CAP as f64,
            st.fragments_evicted
        );
        assert!(usage.reassembly <= CAP);
        assert!(
            st.fragments_evicted > 0,
            "{name}: the flood never reached the cap"
        );
        assert!(
            peak <= CAP * 3 / 2,
            "{name}: {peak} bytes of heap for a {CAP}-byte cap"
        );
        assert_eq!(st.drop_malformed, 0, "{name}: the pieces are well formed");
    }
}
