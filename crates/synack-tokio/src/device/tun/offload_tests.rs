//! What the offload TUN adds to the core's `wire::gso`: the virtio-net header it reads and
//! writes, which super-packets it hands to the stack whole, and the frames it writes for
//! glued batches. The cutting and gluing themselves are tested in `synack_core::wire::gso`;
//! the device against the real kernel in `tests/kernel_offload.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use synack_core::wire::{ip, IpProtocol, IpRepr, TcpFlags, TcpRepr, TcpTimestamp};
use synack_core::SeqNumber;

use super::*;
use crate::device::tun::vnet::{F_NEEDS_CSUM, GSO_ECN, GSO_TCPV4, GSO_TCPV6, TCP_CSUM_OFFSET};

const V4: (IpAddr, IpAddr) = (
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
);
const V6: (IpAddr, IpAddr) = (
    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1)),
);

fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len)
        .map(|i| (i * 7 + i / 251) as u8)
        .collect()
}

/// A complete IP/TCP packet as the core emits it, with a Timestamps option.
fn packet(v6: bool, flags: TcpFlags, seq: u32, data: &[u8]) -> Vec<u8> {
    let (src, dst) = if v6 { V6 } else { V4 };
    let mut t = TcpRepr::new(40000, 5001, flags, SeqNumber(seq), SeqNumber(77));
    t.window_len = 1000;
    t.timestamp = Some(TcpTimestamp { tsval: 5, tsecr: 9 });
    t.payload = data;
    let ip = IpRepr::new(src, dst, IpProtocol::Tcp, t.buffer_len(), 64).unwrap();
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut buf);
    t.emit(&mut buf[ip.header_len()..], src, dst);
    buf
}

/// `p` with its TCP checksum left partial, as the core leaves it with
/// `Config::tx_checksum_offload` and the kernel hands over local data.
fn partial(mut p: Vec<u8>) -> Vec<u8> {
    let l = TcpLayout::parse(&p).unwrap();
    let sum = l.partial_checksum(&p, l.len - l.ip_header_len);
    let at = l.ip_header_len + usize::from(TCP_CSUM_OFFSET);
    p[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Parses with synack's own wire code, which verifies every checksum.
fn parse(p: &[u8]) -> TcpRepr<'_> {
    let (ip, payload) = ip::parse(p).expect("IP header");
    TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false)
        .expect("a TCP segment that verifies")
}

/// What the kernel makes of a frame we write: a TSO frame cut at `gso_size` (the checksum
/// completed per segment, as `tcp_gso_segment` and the NIC do), anything else as it is with
/// its checksum completed if `NEEDS_CSUM`.
fn kernel_receives(hdr: &VnetHdr, packet: &[u8]) -> Vec<Vec<u8>> {
    if hdr.gso_type == GSO_NONE {
        let mut p = packet.to_vec();
        if hdr.flags & F_NEEDS_CSUM != 0 {
            gso::complete_checksum(&mut p).unwrap();
        }
        return vec![p];
    }
    assert_eq!(hdr.flags, F_NEEDS_CSUM);
    gso::split(packet, usize::from(hdr.gso_size), TcpChecksum::Complete).unwrap()
}

#[test]
fn vnet_header_round_trips_and_refuses_short_input() {
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6 | GSO_ECN,
        hdr_len: 72,
        gso_size: 1428,
        csum_start: 40,
        csum_offset: 16,
    };
    assert_eq!(VnetHdr::parse(&h.to_bytes()), Some(h));
    assert_eq!(VnetHdr::parse(&h.to_bytes()[..VNET_HDR_LEN - 1]), None);
    assert_eq!(VnetHdr::parse(&[]), None);
}

#[test]
fn only_completed_or_kernel_verified_checksums_are_vouched_for() {
    let hdr = |flags| VnetHdr {
        flags,
        ..VnetHdr::default()
    };
    assert!(hdr(F_NEEDS_CSUM).checksum_vouched());
    assert!(hdr(F_DATA_VALID).checksum_vouched());
    // A packet the kernel passes on as it came: the stack checks it.
    assert!(!hdr(0).checksum_vouched());
}

#[test]
fn the_partial_header_points_at_the_tcp_checksum() {
    for v6 in [false, true] {
        let p = packet(v6, TcpFlags::ACK, 1000, &pattern(0, 3000));
        let l = TcpLayout::parse(&p).unwrap();
        let ip_len = if v6 { 40 } else { 20 };
        let tso = VnetHdr::partial(&l, Some(1448));
        assert_eq!(tso.flags, F_NEEDS_CSUM);
        assert_eq!(tso.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
        assert_eq!(usize::from(tso.csum_start), ip_len);
        assert_eq!(tso.csum_offset, 16);
        assert_eq!(usize::from(tso.hdr_len), ip_len + 32);
        assert_eq!(tso.gso_size, 1448);
        let one = VnetHdr::partial(&l, None);
        assert_eq!((one.gso_type, one.gso_size), (GSO_NONE, 0));
        assert_eq!(one.csum_start, tso.csum_start);
    }
}

#[test]
fn only_sound_vouched_super_packets_are_taken_whole() {
    for v6 in [false, true] {
        let p = partial(packet(v6, TcpFlags::ACK, 1000, &pattern(0, 1448 * 5 + 7)));
        let l = TcpLayout::parse(&p).unwrap();
        let hdr = VnetHdr::partial(&l, Some(1448));
        assert!(whole(&hdr, &p));
        // Not vouched for: cut, so that every segment's checksum is summed.
        assert!(!whole(&VnetHdr { flags: 0, ..hdr }, &p));
        assert!(whole(
            &VnetHdr {
                flags: F_DATA_VALID,
                ..hdr
            },
            &p
        ));
        // The wrong family, UDP GSO, a zero size, trailing bytes: not what we asked for.
        let other = if v6 { GSO_TCPV4 } else { GSO_TCPV6 };
        assert!(!whole(
            &VnetHdr {
                gso_type: other,
                ..hdr
            },
            &p
        ));
        assert!(!whole(&VnetHdr { gso_type: 5, ..hdr }, &p));
        assert!(!whole(&VnetHdr { gso_size: 0, ..hdr }, &p));
        let mut padded = p.clone();
        padded.extend_from_slice(&[0; 4]);
        assert!(!whole(&hdr, &padded));
        // ECN on a TSO packet is still TSO.
        let ecn = VnetHdr {
            gso_type: hdr.gso_type | GSO_ECN,
            ..hdr
        };
        assert!(whole(&ecn, &p));
    }
}

#[test]
fn hostile_frames_are_never_taken_whole_and_never_panic() {
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV4,
        gso_size: 1448,
        ..VnetHdr::default()
    };
    let good = packet(false, TcpFlags::ACK, 1, &pattern(0, 4000));
    for cut in 0..good.len() {
        assert!(!whole(&hdr, &good[..cut]), "cut at {cut}");
    }
    for b in 0..=255u8 {
        let junk = vec![b; 80];
        let _ = whole(&hdr, &junk);
    }
}

/// Glued segments leave as one TSO frame that the kernel cuts back into the very segments,
/// each verifying; whatever their checksums were when they came in.
#[test]
fn a_glued_batch_leaves_as_one_tso_frame() {
    for v6 in [false, true] {
        for partial_in in [false, true] {
            let mut batch = gso::Coalescer::with_max_len(MAX_SUPER);
            let segs: Vec<Vec<u8>> = (0..4u32)
                .map(|i| {
                    let len = if i == 3 { 500 } else { 1448 };
                    let data = pattern(1448 * i as usize, len);
                    let p = packet(v6, TcpFlags::ACK, 1000 + 1448 * i, &data);
                    if partial_in {
                        partial(p)
                    } else {
                        p
                    }
                })
                .collect();
            for s in &segs {
                assert!(batch.push(s));
            }
            assert!(batch.is_closed(), "the short segment ends the batch");
            let (hdr, frame, n) = batch_frame(&mut batch, partial_in).unwrap();
            assert_eq!(n, 4);
            assert_eq!(hdr.gso_size, 1448);
            let out = kernel_receives(&hdr, frame);
            assert_eq!(out.len(), 4);
            for (i, (got, sent)) in out.iter().zip(&segs).enumerate() {
                let got = parse(got);
                assert_eq!(got.seq_number, SeqNumber(1000 + 1448 * i as u32));
                assert_eq!(got.payload, &sent[sent.len() - got.payload.len()..]);
            }
        }
    }
}

#[test]
fn a_single_held_segment_goes_out_as_it_came() {
    let p = packet(false, TcpFlags::ACK, 1, &pattern(0, 100));
    for partial_in in [false, true] {
        let sent = if partial_in {
            partial(p.clone())
        } else {
            p.clone()
        };
        let mut batch = gso::Coalescer::with_max_len(MAX_SUPER);
        assert!(batch.push(&sent));
        let (hdr, frame, n) = batch_frame(&mut batch, partial_in).unwrap();
        assert_eq!(n, 1);
        assert_eq!(frame, &sent[..]);
        if partial_in {
            assert_eq!(
                (hdr.flags, hdr.gso_type, hdr.csum_start),
                (F_NEEDS_CSUM, GSO_NONE, 20)
            );
        } else {
            assert_eq!(hdr, VnetHdr::default());
        }
        let out = kernel_receives(&hdr, frame);
        assert_eq!(out, vec![p.clone()]);
    }
    let mut empty = gso::Coalescer::with_max_len(MAX_SUPER);
    assert!(batch_frame(&mut empty, false).is_none());
}

#[test]
fn only_data_super_segments_get_a_tso_header() {
    for v6 in [false, true] {
        let data = pattern(0, 4000);
        let ok = |flags: TcpFlags, data: &[u8], size: usize| {
            let p = packet(v6, flags, 1, data);
            let l = TcpLayout::parse(&p).unwrap();
            tso_describes(&l, &p, p.len(), size)
        };
        assert!(ok(TcpFlags::ACK, &data, 1448));
        assert!(ok(
            TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN,
            &data,
            1448
        ));
        // Control segments travel alone, as does anything that is one segment or less.
        assert!(!ok(TcpFlags::SYN | TcpFlags::ACK, &data, 1448));
        assert!(!ok(TcpFlags::RST | TcpFlags::ACK, &data, 1448));
        // An ECN connection's: ECE while it echoes a mark, CWR after a reduction.
        assert!(ok(TcpFlags::ACK | TcpFlags::ECE, &data, 1448));
        assert!(ok(
            TcpFlags::ACK | TcpFlags::CWR | TcpFlags::PSH,
            &data,
            1448
        ));
        assert!(!ok(TcpFlags::ACK | TcpFlags::URG, &data, 1448));
        assert!(!ok(TcpFlags::ACK, &data, 4000));
        assert!(!ok(TcpFlags::ACK, &[], 1448));
        // Trailing bytes past the IP length: the header would describe the wrong packet.
        let mut p = packet(v6, TcpFlags::ACK, 1, &data);
        let l = TcpLayout::parse(&p).unwrap();
        p.extend_from_slice(&[0; 3]);
        assert!(!tso_describes(&l, &p, p.len(), 1448));
    }
}

/// An ECN connection's super-segments go to the kernel as TSO frames too: ECE on every
/// segment cut from one (RFC 3168 §6.1.3), CWR on the first only (§6.1.2), which `GSO_ECN`
/// asks of `tcp_gso_segment`, as Linux's own TCP marks such an skb.
#[test]
fn ecn_super_segments_keep_ece_on_every_segment_and_cwr_on_the_first() {
    for v6 in [false, true] {
        let data = pattern(0, 4000);
        for flags in [TcpFlags::ACK | TcpFlags::ECE, TcpFlags::ACK | TcpFlags::CWR] {
            let p = partial(packet(v6, flags | TcpFlags::PSH, 7, &data));
            let l = TcpLayout::parse(&p).unwrap();
            assert!(tso_describes(&l, &p, p.len(), 1448));
            let hdr = tso_header(&l, &p, 1448);
            let kind = if v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            let cwr = flags.contains(TcpFlags::CWR);
            let ecn = if cwr { GSO_ECN } else { 0 };
            assert_eq!(hdr.gso_type, kind | ecn, "{flags:?}");
            let out = kernel_receives(&hdr, &p);
            assert_eq!(out.len(), 3);
            for (i, seg) in out.iter().enumerate() {
                let got = parse(seg).flags;
                assert_eq!(got.contains(TcpFlags::ECE), !cwr, "{flags:?} segment {i}");
                assert_eq!(got.contains(TcpFlags::CWR), cwr && i == 0, "{flags:?} {i}");
            }
        }
    }
}

/// The kernel's TCP over IPv6 behind a Destination Options header (a socket's
/// `IPV6_DSTOPTS`) hands its packets over with the checksum partial, like any other; the
/// header says where the sum lies, and it is finished there, as the TCP layout (which walks
/// the extension headers) would finish it. Such packets used to be dropped, their SYNs too.
#[test]
fn a_partial_checksum_behind_extension_headers_is_finished_where_the_header_says() {
    let plain = partial(packet(
        true,
        TcpFlags::ACK | TcpFlags::PSH,
        9,
        &pattern(0, 300),
    ));
    // The same packet with a Destination Options header (PadN) before TCP.
    let mut p = plain[..40].to_vec();
    p[6] = 60;
    let payload_len = u16::from_be_bytes([p[4], p[5]]) + 8;
    p[4..6].copy_from_slice(&payload_len.to_be_bytes());
    p.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
    p.extend_from_slice(&plain[40..]);
    let mut by_layout = p.clone();
    gso::complete_checksum(&mut by_layout).unwrap();
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        csum_start: 48,
        csum_offset: TCP_CSUM_OFFSET,
        ..VnetHdr::default()
    };
    assert!(hdr.complete_checksum(&mut p));
    assert_eq!(p, by_layout);
    let tcp = parse(&p);
    assert_eq!(tcp.payload, &pattern(0, 300)[..]);
    // A header pointing outside the packet finishes nothing, and changes nothing.
    let before = p.clone();
    for (start, offset) in [(u16::MAX, 16), (48, u16::MAX), (p.len() as u16 - 1, 0)] {
        let bad = VnetHdr {
            csum_start: start,
            csum_offset: offset,
            ..hdr
        };
        assert!(!bad.complete_checksum(&mut p), "{start} {offset}");
        assert_eq!(p, before);
    }
    assert!(!VnetHdr { flags: 0, ..hdr }.complete_checksum(&mut p));
}
