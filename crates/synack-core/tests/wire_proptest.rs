//! Property tests: hostile bytes never panic the parsers, and every valid repr survives
//! emit → parse unchanged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use synack_core::wire::{
    self, checksum, icmp, ip, IcmpRepr, IpProtocol, IpRepr, TcpFlags, TcpRepr, TcpTimestamp,
};
use synack_core::SeqNumber;

/// Feeds whatever `ip::parse` accepts to the matching upper-layer parser, as the endpoint
/// will. Returns nothing: the property is "does not panic".
fn parse_everything(bytes: &[u8]) {
    if let Ok((repr, payload)) = ip::parse(bytes) {
        assert_eq!(repr.payload_len(), payload.len());
        match repr.protocol() {
            IpProtocol::Tcp => {
                if let Ok(tcp) = TcpRepr::parse(payload, repr.src_addr(), repr.dst_addr(), false) {
                    assert!(tcp.header_len() <= 60);
                    assert!(tcp.src_port != 0 && tcp.dst_port != 0);
                }
            }
            IpProtocol::Icmp => {
                if let Ok(IcmpRepr::DstUnreachable { invoking, .. }) = IcmpRepr::parse_v4(payload) {
                    let _ = icmp::invoking_tcp(invoking);
                }
            }
            IpProtocol::Icmpv6 => {
                if let (IpAddr::V6(s), IpAddr::V6(d)) = (repr.src_addr(), repr.dst_addr()) {
                    let _ = IcmpRepr::parse_v6(payload, s, d);
                }
            }
            _ => {}
        }
    }
    // And each parser on its own, straight from the raw bytes.
    let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
    let _ = TcpRepr::parse(bytes, a, b, false);
    let _ = IcmpRepr::parse_v4(bytes);
    let _ = IcmpRepr::parse_v6(bytes, Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    let _ = icmp::invoking_tcp(bytes);
}

/// A valid IPv4 and IPv6 TCP packet with options, to mutate.
fn seed_packets() -> Vec<Vec<u8>> {
    let mut tcp = TcpRepr::new(
        40000,
        80,
        TcpFlags::SYN | TcpFlags::ACK,
        SeqNumber(1),
        SeqNumber(2),
    );
    tcp.max_seg_size = Some(1460);
    tcp.sack_permitted = true;
    tcp.window_scale = Some(7);
    tcp.timestamp = Some(TcpTimestamp { tsval: 3, tsecr: 4 });
    tcp.payload = b"some data";
    let mut out = Vec::new();
    for (s, d) in [
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
        ),
        (
            IpAddr::V6("2001:2::1".parse().unwrap()),
            IpAddr::V6("2001:2::2".parse().unwrap()),
        ),
    ] {
        let ip = IpRepr::new(s, d, IpProtocol::Tcp, tcp.buffer_len(), 64).unwrap();
        let mut buf = vec![0u8; ip.buffer_len()];
        ip.emit(&mut buf);
        tcp.emit(&mut buf[ip.header_len()..], s, d);
        out.push(buf);
    }
    out
}

fn addr_pair() -> impl Strategy<Value = (IpAddr, IpAddr)> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<[u8; 4]>())
            .prop_map(|(a, b)| (IpAddr::V4(a.into()), IpAddr::V4(b.into()))),
        (any::<[u8; 16]>(), any::<[u8; 16]>())
            .prop_map(|(a, b)| (IpAddr::V6(a.into()), IpAddr::V6(b.into()))),
    ]
}

/// Any repr our emit can represent exactly: non-zero ports, SACK blocks filled from the front
/// and only as many as fit beside the other options.
fn tcp_repr(payload: &[u8]) -> impl Strategy<Value = TcpRepr<'_>> {
    (
        (
            1..=u16::MAX,
            1..=u16::MAX,
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (any::<u16>(), any::<u16>()),
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::option::of((any::<u32>(), any::<u32>())),
        ),
        proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=4),
        0..=payload.len(),
    )
        .prop_map(
            move |(head, (window, urgent), (mss, ws, sack_ok, ts), blocks, plen)| {
                let (sp, dp, flags, seq, ack) = head;
                let mut r = TcpRepr::new(sp, dp, TcpFlags(flags), SeqNumber(seq), SeqNumber(ack));
                r.window_len = window;
                r.urgent_pointer = urgent;
                r.max_seg_size = mss;
                r.window_scale = ws;
                r.sack_permitted = sack_ok;
                r.timestamp = ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr });
                let fixed = 4 * usize::from(mss.is_some())
                    + if ts.is_some() {
                        12
                    } else {
                        4 * usize::from(sack_ok)
                    }
                    + 4 * usize::from(ws.is_some());
                let room = (40 - fixed - 4) / 8;
                for (slot, (l, rr)) in r.sack_ranges.iter_mut().zip(blocks.into_iter().take(room)) {
                    *slot = Some((SeqNumber(l), SeqNumber(rr)));
                }
                r.payload = &payload[..plen];
                r
            },
        )
}

static PAYLOAD: [u8; 300] = {
    let mut p = [0u8; 300];
    let mut i = 0;
    while i < p.len() {
        p[i] = (i * 31 % 251) as u8;
        i += 1;
    }
    p
};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        parse_everything(&bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_plausible_first_byte(
        first in prop_oneof![Just(0x45u8), Just(0x46), Just(0x4f), Just(0x60)],
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut bytes = vec![first];
        bytes.extend_from_slice(&rest);
        parse_everything(&bytes);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        which in 0usize..2,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let mut p = seed_packets().swap_remove(which);
        for (at, v) in edits {
            let i = at % p.len();
            p[i] = v;
        }
        let keep = cut % (p.len() + 1);
        p.truncate(keep);
        parse_everything(&p);
    }

    #[test]
    fn arbitrary_option_bytes_never_panic_and_reparse_stably(
        options in proptest::collection::vec(any::<u8>(), 0..=40),
    ) {
        // A checksummed header around arbitrary options: the option walk is what runs.
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let area = options.len().div_ceil(4) * 4;
        let mut seg = vec![0u8; 20 + area];
        seg[0..4].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        seg[12] = (((20 + area) / 4) << 4) as u8;
        seg[13] = 0x10;
        seg[20..20 + options.len()].copy_from_slice(&options);
        let pseudo = checksum::pseudo_header(a, b, IpProtocol::Tcp, seg.len() as u32).unwrap();
        let c = checksum::finish(pseudo + checksum::partial(&seg));
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        if let Ok(r) = TcpRepr::parse(&seg, a, b, false) {
            // Whatever we understood, we can say again, and it means the same the second time
            // (up to SACK blocks that no longer fit beside the other options).
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf, a, b);
            let again = TcpRepr::parse(&buf, a, b, false).unwrap();
            prop_assert_eq!(again.max_seg_size, r.max_seg_size);
            prop_assert_eq!(again.window_scale, r.window_scale);
            prop_assert_eq!(again.sack_permitted, r.sack_permitted);
            prop_assert_eq!(again.timestamp, r.timestamp);
            let n = again.sack_ranges.iter().flatten().count();
            prop_assert_eq!(&again.sack_ranges[..n], &r.sack_ranges[..n]);
        }
    }

    #[test]
    fn tcp_repr_round_trips((s, d) in addr_pair(), repr in tcp_repr(&PAYLOAD)) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, s, d);
        prop_assert!(repr.header_len() <= 60 && repr.header_len() % 4 == 0);
        let parsed = TcpRepr::parse(&buf, s, d, false);
        prop_assert_eq!(parsed, Ok(repr));
    }

    #[test]
    fn ip_tcp_packet_round_trips(
        (s, d) in addr_pair(),
        hop in any::<u8>(),
        repr in tcp_repr(&PAYLOAD),
    ) {
        let ip = IpRepr::new(s, d, IpProtocol::Tcp, repr.buffer_len(), hop).unwrap();
        let mut buf = vec![0u8; ip.buffer_len()];
        ip.emit(&mut buf);
        repr.emit(&mut buf[ip.header_len()..], s, d);
        let (ip2, payload) = ip::parse(&buf).unwrap();
        prop_assert_eq!(ip2, ip);
        prop_assert_eq!(TcpRepr::parse(payload, s, d, false), Ok(repr));
    }

    #[test]
    fn icmp_echo_round_trips(
        ident in any::<u16>(),
        seq_no in any::<u16>(),
        data in proptest::collection::vec(any::<u8>(), 0..64),
        request in any::<bool>(),
        v6 in any::<[u8; 16]>(),
    ) {
        let repr = if request {
            IcmpRepr::EchoRequest { ident, seq_no, data: &data }
        } else {
            IcmpRepr::EchoReply { ident, seq_no, data: &data }
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit_v4(&mut buf);
        prop_assert_eq!(IcmpRepr::parse_v4(&buf), Ok(repr));
        let (s, d) = (Ipv6Addr::from(v6), Ipv6Addr::LOCALHOST);
        repr.emit_v6(&mut buf, s, d);
        prop_assert_eq!(IcmpRepr::parse_v6(&buf, s, d), Ok(repr));
    }

    #[test]
    fn checksum_of_pieces_equals_checksum_of_whole(
        data in proptest::collection::vec(any::<u8>(), 0..400),
        split in any::<usize>(),
    ) {
        // Even split point: odd-length pieces may only come last.
        let at = (split % (data.len() + 1)) & !1;
        let whole = checksum::data(&data);
        let pieces = checksum::fold(checksum::partial(&data[..at]) + checksum::partial(&data[at..]));
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn any_single_bit_flip_in_a_segment_is_caught(bit in 0usize..(49 * 8), which in 0usize..2) {
        // The Internet checksum detects every single-bit error (RFC 1071 §2).
        let p = seed_packets().swap_remove(which);
        let (ip, _) = ip::parse(&p).unwrap();
        let mut seg = p[ip.header_len()..].to_vec();
        let bit = bit % (seg.len() * 8);
        seg[bit / 8] ^= 1 << (bit % 8);
        let r = TcpRepr::parse(&seg, ip.src_addr(), ip.dst_addr(), false);
        prop_assert!(r.is_err(), "flip of bit {} accepted", bit);
    }
}

#[test]
fn seed_packets_are_valid() {
    // Guards the mutation properties against a broken seed (they would then test nothing).
    for p in seed_packets() {
        let (ip, payload) = wire::ip::parse(&p).unwrap();
        let tcp = TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).unwrap();
        assert_eq!(tcp.payload, b"some data");
        assert_eq!(tcp.max_seg_size, Some(1460));
    }
}
