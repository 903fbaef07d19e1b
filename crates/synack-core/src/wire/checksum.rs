//! The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers.
//!
//! RFC 1071 §2 lists the properties this module leans on:
//! - (B) byte-order independence, and (C) parallel summation: the one's complement sum of
//!   16-bit words can be computed by adding 32-bit words into a wider accumulator and folding
//!   the carries back in at the end, because 2^16 ≡ 1 (mod 2^16 − 1).
//! - Deferred carries: with a 64-bit accumulator and 32-bit addends, carries cannot overflow
//!   before 2^32 additions, i.e. far beyond any packet.
//!
//! So [`partial`] sums big-endian 32-bit words into a `u64` and returns the unfolded sum.
//! Unfolded sums of pieces of *even* length add up to the sum of their concatenation (which
//! word of the 32-bit lane a 16-bit word lands in does not matter, by the congruence above), so
//! a caller adds the pseudo-header sum, the header sum and the payload sum and calls
//! [`finish`] once.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::protocol::IpProtocol;

/// The unfolded one's complement sum of `data`, read as big-endian 16-bit words.
///
/// An odd trailing byte is padded on the right with a zero byte (RFC 1071 §4.1: "Add left-over
/// byte, if any"), i.e. it is the high byte of the last word. Only the last piece of a
/// multi-piece sum may have odd length.
pub fn partial(data: &[u8]) -> u64 {
    // RFC 1071 §2 (B): the sum can be taken in the machine's own byte order and swapped once
    // at the end. Native-endian 32-bit words are added into eight independent 64-bit lanes,
    // a loop the compiler turns into vector additions; the tail is taken 8, 4, 2 and 1 bytes
    // at a time, so that headers (20 to 60 bytes) cost a handful of additions. The result is
    // folded to 16 bits, byte-swapped to network order if needed, and returned as a (small)
    // unfolded sum, so callers add it to other pieces exactly as before.
    let mut acc = [0u64; 8];
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (lane, word) in acc.iter_mut().zip(c.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]));
        }
    }
    let mut sum: u64 = acc.iter().sum();
    let mut rest = chunks.remainder();
    while let Some((w, tail)) = rest.split_first_chunk::<8>() {
        let w = u64::from_ne_bytes(*w);
        sum += (w & 0xffff_ffff) + (w >> 32);
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<4>() {
        sum += u64::from(u32::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some((w, tail)) = rest.split_first_chunk::<2>() {
        sum += u64::from(u16::from_ne_bytes(*w));
        rest = tail;
    }
    if let Some(&last) = rest.first() {
        // RFC 1071 §4.1: the left-over byte is the high byte of a zero-padded word.
        sum += u64::from(u16::from_ne_bytes([last, 0]));
    }
    let folded = fold(sum);
    u64::from(if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    })
}

/// Folds an unfolded sum to 16 bits by adding the carries back in (end-around carry).
pub fn fold(mut sum: u64) -> u16 {
    // Each round at least halves the width; four rounds take any u64 down to 16 bits.
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The checksum field value for an unfolded sum: the complement of the folded sum.
pub fn finish(sum: u64) -> u16 {
    !fold(sum)
}

/// The folded (not complemented) sum of `data`.
pub fn data(data: &[u8]) -> u16 {
    fold(partial(data))
}

/// Whether an unfolded sum taken over a whole message, checksum field included, verifies.
///
/// RFC 1071 §1: "To check a checksum, the 1's complement sum is computed over the same set of
/// octets, including the checksum field. If the result is all 1 bits (-0 in 1's complement
/// arithmetic), the check succeeds."
pub fn verifies(sum: u64) -> bool {
    fold(sum) == 0xffff
}

/// The unfolded sum of the IPv4 pseudo-header (RFC 9293 §3.1, "Checksum"): source, destination,
/// zero, protocol, and the upper-layer length.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, len: u32) -> u64 {
    let s = u32::from_be_bytes(src.octets());
    let d = u32::from_be_bytes(dst.octets());
    // The TCP length is a 16-bit field in the IPv4 pseudo-header; callers never exceed it
    // because an IPv4 total length cannot.
    u64::from(s) + u64::from(d) + u64::from(u8::from(protocol)) + u64::from(len & 0xffff)
}

/// The unfolded sum of the IPv6 pseudo-header (RFC 8200 §8.1): source, destination, 32-bit
/// upper-layer packet length, three zero bytes and the next header value.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, protocol: IpProtocol, len: u32) -> u64 {
    partial(&src.octets()) + partial(&dst.octets()) + u64::from(len) + u64::from(u8::from(protocol))
}

/// The pseudo-header sum for a pair of addresses of either family.
///
/// Returns `None` when the families differ: no such packet exists.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: IpProtocol, len: u32) -> Option<u64> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Some(pseudo_header_v4(s, d, protocol, len)),
        (IpAddr::V6(s), IpAddr::V6(d)) => Some(pseudo_header_v6(s, d, protocol, len)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward 16-bit-at-a-time reference, to check the wide summation against.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    #[test]
    fn rfc1071_worked_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2 (folded, uncomplemented).
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(data(&bytes), 0xddf2);
        assert_eq!(finish(partial(&bytes)), !0xddf2);
    }

    #[test]
    fn odd_length_pads_the_last_byte_high() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x00, 0x01, 0xf2]), 0xf201);
        // Seven bytes exercises the 4-, 2- and 1-byte tails together.
        let seven = [1, 2, 3, 4, 5, 6, 7];
        assert_eq!(data(&seven), reference(&seven));
    }

    #[test]
    fn empty_sums_to_zero() {
        assert_eq!(data(&[]), 0);
        assert_eq!(finish(0), 0xffff);
    }

    #[test]
    fn wide_sum_matches_reference_for_all_lengths() {
        // Bytes chosen to produce many carries.
        let buf: Vec<u8> = (0..300u32).map(|i| (0xff - (i * 7) % 13) as u8).collect();
        for len in 0..buf.len() {
            assert_eq!(data(&buf[..len]), reference(&buf[..len]), "len {len}");
        }
    }

    #[test]
    fn even_pieces_combine() {
        let buf: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        // Split at offsets that are even but not multiples of four.
        let split = partial(&buf[..6]) + partial(&buf[6..30]) + partial(&buf[30..]);
        assert_eq!(fold(split), data(&buf));
    }

    #[test]
    fn all_ones_folds_without_overflow() {
        let buf = [0xffu8; 4096];
        assert_eq!(data(&buf), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
    }

    #[test]
    fn verifies_a_checksummed_message() {
        let mut msg = [0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x00, 0, 0];
        let c = finish(partial(&msg));
        msg[8..10].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(partial(&msg)));
        msg[0] ^= 1;
        assert!(!verifies(partial(&msg)));
    }

    #[test]
    fn pseudo_header_v4_matches_bytes() {
        let src = Ipv4Addr::new(198, 19, 0, 1);
        let dst = Ipv4Addr::new(198, 19, 0, 2);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&[0, 6, 0, 40]);
        assert_eq!(
            fold(pseudo_header_v4(src, dst, IpProtocol::Tcp, 40)),
            data(&bytes)
        );
    }

    #[test]
    fn pseudo_header_v6_matches_bytes() {
        let src: Ipv6Addr = "2001:2::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:2::ffff:2".parse().unwrap();
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&src.octets());
        bytes.extend_from_slice(&dst.octets());
        bytes.extend_from_slice(&70_000u32.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            fold(pseudo_header_v6(src, dst, IpProtocol::Icmpv6, 70_000)),
            data(&bytes)
        );
    }

    #[test]
    fn pseudo_header_refuses_mixed_families() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(pseudo_header(v4, v6, IpProtocol::Tcp, 20), None);
        assert!(pseudo_header(v6, v6, IpProtocol::Tcp, 20).is_some());
    }
}
