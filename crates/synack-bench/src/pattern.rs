//! The bytes every bulk transfer carries, and the check that they arrived intact.
//!
//! Byte `i` of a stream is `BLOCK[i % PERIOD]`. The period is a prime (65521), so a segment
//! delivered twice, dropped, or placed at the wrong offset shows up unless it is displaced by a
//! multiple of 65521 bytes, which no TCP bug produces by chance (segments are ~1448 bytes).
//! Both the writer and the checker work on slices of a precomputed block, so that checking
//! costs a `memcmp` and does not cap the kernel-to-kernel rate we compare against.

use std::sync::OnceLock;

/// The pattern's period, in bytes: the largest prime below 2^16.
pub const PERIOD: usize = 65521;
/// The longest slice handed out at once.
pub const MAX_SLICE: usize = 64 * 1024;

/// One period plus `MAX_SLICE`, so that any slice of up to `MAX_SLICE` bytes starting anywhere
/// in the period is contiguous.
fn block() -> &'static [u8] {
    static BLOCK: OnceLock<Vec<u8>> = OnceLock::new();
    BLOCK.get_or_init(|| {
        // xorshift32: deterministic and without short cycles at segment scale.
        let mut x: u32 = 0x2545_f491;
        let period: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 7) as u8
            })
            .collect();
        // MAX_SLICE is a little longer than PERIOD, so the tail wraps more than once.
        period
            .iter()
            .copied()
            .cycle()
            .take(PERIOD + MAX_SLICE)
            .collect()
    })
}

/// The pattern from stream offset `offset`, at most `len` (and at most `MAX_SLICE`) bytes.
pub fn slice(offset: u64, len: usize) -> &'static [u8] {
    let start = (offset % PERIOD as u64) as usize;
    &block()[start..start + len.min(MAX_SLICE)]
}

/// Checks a received stream against the pattern, chunk by chunk, in order.
#[derive(Debug, Default, Clone)]
pub struct Checker {
    /// Bytes seen so far.
    pub bytes: u64,
    /// Whether every byte so far matched.
    pub intact: bool,
}

impl Checker {
    /// A checker at offset 0 that has seen nothing wrong yet.
    pub fn new() -> Checker {
        Checker {
            bytes: 0,
            intact: true,
        }
    }

    /// Checks the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let expect = slice(self.bytes, data.len());
            let (now, rest) = data.split_at(expect.len());
            if now != expect {
                self.intact = false;
            }
            self.bytes += now.len() as u64;
            data = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_round_trips_in_odd_chunks() {
        let mut sent = Vec::new();
        let mut off = 0u64;
        while off < 300_000 {
            let s = slice(off, 7_777);
            sent.extend_from_slice(s);
            off += s.len() as u64;
        }
        let mut c = Checker::new();
        for chunk in sent.chunks(1448) {
            c.feed(chunk);
        }
        assert!(c.intact);
        assert_eq!(c.bytes, sent.len() as u64);
    }

    #[test]
    fn a_duplicated_or_missing_segment_is_caught() {
        let sent: Vec<u8> = (0..10)
            .flat_map(|i| slice(i * 1448, 1448).to_vec())
            .collect();
        let mut dup = sent[..2896].to_vec();
        dup.extend_from_slice(&sent[1448..]);
        let mut c = Checker::new();
        c.feed(&dup);
        assert!(!c.intact);

        let mut gap = sent[..1448].to_vec();
        gap.extend_from_slice(&sent[2896..]);
        let mut c = Checker::new();
        c.feed(&gap);
        assert!(!c.intact);
    }

    #[test]
    fn a_flipped_bit_is_caught() {
        let mut data = slice(0, 5000).to_vec();
        data[4321] ^= 0x10;
        let mut c = Checker::new();
        c.feed(&data);
        assert!(!c.intact);
    }
}
