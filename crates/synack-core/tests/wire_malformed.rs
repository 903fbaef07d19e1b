//! Hand-made bad packets, each with the `WireError` it must produce. Every packet is built
//! valid and then broken in exactly one way, with checksums recomputed where the point is not
//! the checksum, so that each test reaches the check it names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use synack_core::wire::{self, checksum, ip, IpProtocol, TcpFlags, TcpRepr, WireError};
use synack_core::SeqNumber;

const SRC4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn src6() -> Ipv6Addr {
    "2001:2::1".parse().unwrap()
}
fn dst6() -> Ipv6Addr {
    "2001:2::2".parse().unwrap()
}

/// A raw TCP segment with the given data offset (in words), option bytes (padded with zeros
/// to the data offset when shorter), flags, ports and payload, checksummed for `src`/`dst`.
fn raw_tcp(
    doff: u8,
    options: &[u8],
    flags: u8,
    ports: (u16, u16),
    payload: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> Vec<u8> {
    let header_len = (usize::from(doff) * 4).max(20 + options.len());
    let mut seg = vec![0u8; header_len + payload.len()];
    seg[0..2].copy_from_slice(&ports.0.to_be_bytes());
    seg[2..4].copy_from_slice(&ports.1.to_be_bytes());
    seg[4..8].copy_from_slice(&1000u32.to_be_bytes());
    seg[8..12].copy_from_slice(&2000u32.to_be_bytes());
    seg[12] = doff << 4;
    seg[13] = flags;
    seg[14..16].copy_from_slice(&1024u16.to_be_bytes());
    seg[20..20 + options.len()].copy_from_slice(options);
    seg[header_len..].copy_from_slice(payload);
    fix_tcp_checksum(&mut seg, src, dst);
    seg
}

fn fix_tcp_checksum(seg: &mut [u8], src: IpAddr, dst: IpAddr) {
    seg[16..18].fill(0);
    let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, seg.len() as u32).unwrap();
    let c = checksum::finish(pseudo + checksum::partial(seg));
    seg[16..18].copy_from_slice(&c.to_be_bytes());
}

fn v4() -> (IpAddr, IpAddr) {
    (IpAddr::V4(SRC4), IpAddr::V4(DST4))
}

/// Parses a segment with options between the v4 test addresses.
fn tcp_with_options(options: &[u8]) -> Result<(), WireError> {
    let (s, d) = v4();
    let doff = 5 + options.len().div_ceil(4) as u8;
    let seg = raw_tcp(doff, options, 0x10, (1234, 80), b"", s, d);
    TcpRepr::parse(&seg, s, d, false).map(|_| ())
}

/// An IPv4 packet around `payload`, header checksum filled.
fn ipv4_packet(protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 20 + payload.len()];
    buf[0] = 0x45;
    buf[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    buf[6] = 0x40; // DF
    buf[8] = 64;
    buf[9] = protocol;
    buf[12..16].copy_from_slice(&SRC4.octets());
    buf[16..20].copy_from_slice(&DST4.octets());
    buf[20..].copy_from_slice(payload);
    fix_ipv4_checksum(&mut buf);
    buf
}

fn fix_ipv4_checksum(buf: &mut [u8]) {
    let hl = usize::from(buf[0] & 0x0f) * 4;
    buf[10..12].fill(0);
    let c = checksum::finish(checksum::partial(&buf[..hl]));
    buf[10..12].copy_from_slice(&c.to_be_bytes());
}

/// An IPv6 packet whose payload (extension headers included) is `payload`.
fn ipv6_packet(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 40 + payload.len()];
    buf[0] = 0x60;
    buf[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    buf[6] = next_header;
    buf[7] = 64;
    buf[8..24].copy_from_slice(&src6().octets());
    buf[24..40].copy_from_slice(&dst6().octets());
    buf[40..].copy_from_slice(payload);
    buf
}

fn valid_v4_tcp() -> Vec<u8> {
    let (s, d) = v4();
    ipv4_packet(6, &raw_tcp(5, &[], 0x02, (1234, 80), b"", s, d))
}

fn err<T: std::fmt::Debug>(r: Result<T, WireError>) -> WireError {
    r.expect_err("must be refused")
}

// ---- IP ----

#[test]
fn ipv4_header_truncated() {
    let p = valid_v4_tcp();
    for len in [1, 10, 19] {
        assert_eq!(err(ip::parse(&p[..len])), WireError::Truncated, "len {len}");
    }
}

#[test]
fn ipv6_header_truncated() {
    let p = ipv6_packet(6, &[0; 20]);
    for len in [1, 8, 39] {
        assert_eq!(err(ip::parse(&p[..len])), WireError::Truncated, "len {len}");
    }
}

#[test]
fn ihl_below_five_is_malformed() {
    for ihl in 0..5u8 {
        let mut p = valid_v4_tcp();
        p[0] = 0x40 | ihl;
        assert_eq!(err(ip::parse(&p)), WireError::Malformed, "ihl {ihl}");
    }
}

#[test]
fn ihl_past_the_buffer_is_truncated() {
    let mut p = valid_v4_tcp();
    p.truncate(30);
    p[0] = 0x48; // 32-byte header in a 30-byte buffer
    assert_eq!(err(ip::parse(&p)), WireError::Truncated);
}

#[test]
fn ihl_past_total_length_is_malformed() {
    let mut p = valid_v4_tcp();
    p[0] = 0x46;
    p[2..4].copy_from_slice(&20u16.to_be_bytes());
    fix_ipv4_checksum(&mut p);
    assert_eq!(err(ip::parse(&p)), WireError::Malformed);
}

#[test]
fn total_length_past_buffer_is_truncated() {
    let mut p = valid_v4_tcp();
    let len = p.len() as u16 + 1;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    fix_ipv4_checksum(&mut p);
    assert_eq!(err(ip::parse(&p)), WireError::Truncated);
}

#[test]
fn trailing_link_padding_is_ignored() {
    let mut p = valid_v4_tcp();
    p.extend_from_slice(&[0xee; 6]);
    let (repr, payload) = ip::parse(&p).unwrap();
    assert_eq!(repr.payload_len(), 20);
    assert_eq!(payload.len(), 20);
    let (s, d) = v4();
    assert!(TcpRepr::parse(payload, s, d, false).is_ok());
}

#[test]
fn ipv6_payload_length_past_buffer_is_truncated() {
    let mut p = ipv6_packet(6, &[0; 20]);
    p[4..6].copy_from_slice(&21u16.to_be_bytes());
    assert_eq!(err(ip::parse(&p)), WireError::Truncated);
}

#[test]
fn bad_ipv4_header_checksum() {
    let mut p = valid_v4_tcp();
    p[10] ^= 0x01;
    assert_eq!(err(ip::parse(&p)), WireError::Checksum);
    // A corrupted field with the old checksum fails too.
    let mut p = valid_v4_tcp();
    p[8] = 63;
    assert_eq!(err(ip::parse(&p)), WireError::Checksum);
}

#[test]
fn ipv4_more_fragments_is_a_fragment() {
    let mut p = valid_v4_tcp();
    p[6] = 0x20; // MF, offset 0
    fix_ipv4_checksum(&mut p);
    assert_eq!(err(ip::parse(&p)), WireError::Fragment);
}

#[test]
fn ipv4_fragment_offset_is_a_fragment() {
    let mut p = valid_v4_tcp();
    p[6] = 0x40; // DF with an offset: nonsense, but still not a whole datagram
    p[7] = 0x01;
    fix_ipv4_checksum(&mut p);
    assert_eq!(err(ip::parse(&p)), WireError::Fragment);
    p[6] = 0x00; // last fragment: offset only
    fix_ipv4_checksum(&mut p);
    assert_eq!(err(ip::parse(&p)), WireError::Fragment);
}

#[test]
fn ipv6_fragment_header_is_a_fragment() {
    // Fragment header: next header TCP, reserved, offset 0 with M set, identification.
    let mut payload = vec![6, 0, 0, 1, 0, 0, 0, 42];
    payload.extend_from_slice(&[0; 20]);
    assert_eq!(
        err(ip::parse(&ipv6_packet(44, &payload))),
        WireError::Fragment
    );
}

/// RFC 6946 §4: an atomic fragment (offset 0, M clear) is processed in isolation, as the
/// whole packet it is; Linux's ipv6_frag_rcv passes it on.
#[test]
fn ipv6_atomic_fragment_is_the_packet_it_carries() {
    let mut payload = vec![6, 0, 0, 0, 0, 0, 0, 42];
    payload.extend_from_slice(&[7; 20]);
    let packet = ipv6_packet(44, &payload);
    let (ip, rest) = ip::parse(&packet).unwrap();
    assert_eq!(ip.protocol(), IpProtocol::Tcp);
    assert_eq!(rest, &[7; 20][..]);
}

#[test]
fn ipv6_fragment_header_after_dest_opts_is_a_fragment() {
    let mut payload = vec![44, 0, 1, 4, 0, 0, 0, 0];
    payload.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 42]);
    assert_eq!(
        err(ip::parse(&ipv6_packet(60, &payload))),
        WireError::Fragment
    );
}

#[test]
fn unknown_ipv6_extension_headers_are_unsupported() {
    for nh in [135u8, 139, 140, 253, 254, 50, 51] {
        assert_eq!(
            err(ip::parse(&ipv6_packet(nh, &[6, 0, 0, 0, 0, 0, 0, 0]))),
            WireError::Unsupported,
            "next header {nh}"
        );
    }
}

#[test]
fn ipv6_no_next_header_is_unsupported() {
    assert_eq!(
        err(ip::parse(&ipv6_packet(59, &[]))),
        WireError::Unsupported
    );
}

#[test]
fn ipv6_routing_header_with_segments_left_is_unsupported() {
    let mut payload = vec![6, 0, 4, 2, 0, 0, 0, 0];
    payload.extend_from_slice(&[0; 20]);
    assert_eq!(
        err(ip::parse(&ipv6_packet(43, &payload))),
        WireError::Unsupported
    );
}

#[test]
fn ip_versions_other_than_4_and_6_are_unsupported() {
    for v in [0u8, 1, 5, 7, 15] {
        let mut p = valid_v4_tcp();
        p[0] = (v << 4) | 5;
        assert_eq!(err(ip::parse(&p)), WireError::Unsupported, "version {v}");
    }
}

// ---- TCP header ----

#[test]
fn tcp_header_truncated() {
    let (s, d) = v4();
    let seg = raw_tcp(5, &[], 0x02, (1, 2), b"", s, d);
    for len in [0, 1, 12, 19] {
        assert_eq!(
            err(TcpRepr::parse(&seg[..len], s, d, false)),
            WireError::Truncated,
            "len {len}"
        );
    }
}

#[test]
fn ip_total_length_cutting_the_tcp_header() {
    let mut p = valid_v4_tcp();
    p[2..4].copy_from_slice(&30u16.to_be_bytes());
    fix_ipv4_checksum(&mut p);
    let (repr, payload) = ip::parse(&p).unwrap();
    assert_eq!(payload.len(), 10);
    assert_eq!(
        err(TcpRepr::parse(
            payload,
            repr.src_addr(),
            repr.dst_addr(),
            false
        )),
        WireError::Truncated
    );
}

#[test]
fn data_offset_below_five_is_malformed() {
    let (s, d) = v4();
    for doff in 0..5u8 {
        let mut seg = raw_tcp(5, &[], 0x02, (1, 2), b"abcd", s, d);
        seg[12] = doff << 4;
        fix_tcp_checksum(&mut seg, s, d);
        assert_eq!(
            err(TcpRepr::parse(&seg, s, d, false)),
            WireError::Malformed,
            "doff {doff}"
        );
    }
}

#[test]
fn data_offset_past_the_end_is_truncated() {
    let (s, d) = v4();
    let mut seg = raw_tcp(5, &[], 0x02, (1, 2), b"abcd", s, d);
    seg[12] = 7 << 4; // 28 bytes claimed, 24 present
    fix_tcp_checksum(&mut seg, s, d);
    assert_eq!(err(TcpRepr::parse(&seg, s, d, false)), WireError::Truncated);
    seg[12] = 15 << 4;
    fix_tcp_checksum(&mut seg, s, d);
    assert_eq!(err(TcpRepr::parse(&seg, s, d, false)), WireError::Truncated);
}

#[test]
fn bad_tcp_checksum() {
    let (s, d) = v4();
    let mut seg = raw_tcp(5, &[], 0x18, (1, 2), b"payload", s, d);
    seg[22] ^= 0x80;
    assert_eq!(err(TcpRepr::parse(&seg, s, d, false)), WireError::Checksum);
}

#[test]
fn tcp_checksum_covers_the_pseudo_header() {
    let (s, d) = v4();
    let seg = raw_tcp(5, &[], 0x02, (1, 2), b"", s, d);
    let other = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3));
    assert_eq!(
        err(TcpRepr::parse(&seg, s, other, false)),
        WireError::Checksum
    );
    // Same segment over IPv6 addresses: a different pseudo-header.
    assert_eq!(
        err(TcpRepr::parse(
            &seg,
            IpAddr::V6(src6()),
            IpAddr::V6(dst6()),
            false
        )),
        WireError::Checksum
    );
}

#[test]
fn tcp_over_ipv6_with_bad_checksum() {
    let (s, d) = (IpAddr::V6(src6()), IpAddr::V6(dst6()));
    let mut seg = raw_tcp(5, &[], 0x02, (1, 2), b"", s, d);
    assert!(TcpRepr::parse(&seg, s, d, false).is_ok());
    seg[4] ^= 1;
    assert_eq!(err(TcpRepr::parse(&seg, s, d, false)), WireError::Checksum);
}

/// Port 0 is reserved but not malformed: the endpoint looks it up (and finds nothing to
/// take it), as Linux's `tcp_v4_rcv` does.
#[test]
fn zero_ports_parse() {
    let (s, d) = v4();
    for ports in [(0, 80), (1234, 0), (0, 0)] {
        let seg = raw_tcp(5, &[], 0x02, ports, b"", s, d);
        let repr = TcpRepr::parse(&seg, s, d, false).unwrap();
        assert_eq!((repr.src_port, repr.dst_port), ports);
    }
}

#[test]
fn odd_flag_combinations_parse_with_those_flags() {
    let (s, d) = v4();
    for flags in [
        TcpFlags::SYN | TcpFlags::FIN | TcpFlags::RST,
        TcpFlags::SYN | TcpFlags::FIN,
        TcpFlags::SYN | TcpFlags::RST,
        TcpFlags(0xff),
        TcpFlags::empty(),
        TcpFlags::URG | TcpFlags::PSH | TcpFlags::FIN, // "Xmas"
    ] {
        let seg = raw_tcp(5, &[], flags.0, (1, 2), b"", s, d);
        let r = TcpRepr::parse(&seg, s, d, false).unwrap();
        assert_eq!(r.flags, flags);
    }
}

// ---- TCP options ----

#[test]
fn option_length_zero() {
    assert_eq!(tcp_with_options(&[30, 0, 0, 0]), Err(WireError::BadOption));
}

#[test]
fn option_length_one() {
    assert_eq!(tcp_with_options(&[30, 1, 0, 0]), Err(WireError::BadOption));
}

#[test]
fn option_length_past_the_option_area() {
    // Unknown kind claiming 6 bytes in a 4-byte area.
    assert_eq!(tcp_with_options(&[30, 6, 0, 0]), Err(WireError::BadOption));
    // MSS cut by the end of the area.
    assert_eq!(tcp_with_options(&[1, 1, 2, 4]), Err(WireError::BadOption));
}

#[test]
fn option_kind_without_a_length_byte() {
    assert_eq!(tcp_with_options(&[1, 1, 1, 2]), Err(WireError::BadOption));
}

#[test]
fn option_lengths_do_not_spill_into_the_payload() {
    // The option area is 4 bytes; the payload behind it must not be read as options.
    let (s, d) = v4();
    let seg = raw_tcp(6, &[1, 1, 30, 4], 0x18, (1, 2), b"xx", s, d);
    assert_eq!(err(TcpRepr::parse(&seg, s, d, false)), WireError::BadOption);
}

#[test]
fn wrong_mss_length() {
    assert_eq!(tcp_with_options(&[2, 3, 5, 0]), Err(WireError::BadOption));
    assert_eq!(
        tcp_with_options(&[2, 5, 5, 0xb4, 0, 0, 0, 0]),
        Err(WireError::BadOption)
    );
}

#[test]
fn wrong_window_scale_length() {
    assert_eq!(tcp_with_options(&[3, 2, 1, 1]), Err(WireError::BadOption));
    assert_eq!(tcp_with_options(&[3, 4, 7, 0]), Err(WireError::BadOption));
}

#[test]
fn wrong_timestamp_length() {
    assert_eq!(
        tcp_with_options(&[8, 8, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]),
        Err(WireError::BadOption)
    );
    assert_eq!(
        tcp_with_options(&[8, 12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]),
        Err(WireError::BadOption)
    );
}

#[test]
fn wrong_sack_permitted_length() {
    assert_eq!(tcp_with_options(&[4, 3, 0, 1]), Err(WireError::BadOption));
}

#[test]
fn sack_length_not_two_plus_eight_n() {
    let mut opts = vec![1, 1, 5, 9];
    opts.extend_from_slice(&[0; 8]);
    assert_eq!(tcp_with_options(&opts), Err(WireError::BadOption));
    assert_eq!(tcp_with_options(&[5, 3, 0, 1]), Err(WireError::BadOption));
}

/// The signature options, as Linux's `tcp_do_parse_auth_options` takes them: TCP MD5 only
/// at its length, 18; TCP-AO only longer than its 4-byte header; never two on a segment.
#[test]
fn signature_options_parse_only_whole_and_alone() {
    let (s, d) = v4();
    let parse = |options: &[u8]| -> Result<bool, WireError> {
        let doff = 5 + options.len().div_ceil(4) as u8;
        let seg = raw_tcp(doff, options, 0x10, (1234, 80), b"", s, d);
        TcpRepr::parse(&seg, s, d, false).map(|r| r.signed)
    };
    let md5 = |len: u8| {
        let mut o = vec![19, len];
        o.resize(usize::from(len), 0xab);
        o
    };
    let ao = |len: u8| {
        let mut o = vec![29, len, 1, 1];
        o.resize(usize::from(len), 0xcd);
        o
    };
    let pad = |mut o: Vec<u8>| {
        while !o.len().is_multiple_of(4) {
            o.push(1);
        }
        o
    };
    assert_eq!(parse(&pad(md5(18))), Ok(true));
    assert_eq!(parse(&pad(ao(16))), Ok(true));
    assert_eq!(parse(&pad(ao(5))), Ok(true));
    assert_eq!(parse(&[1, 1, 1, 1]), Ok(false));
    for bad in [md5(10), md5(17), md5(20), ao(4), ao(2)] {
        assert_eq!(
            parse(&pad(bad.clone())),
            Err(WireError::BadOption),
            "{bad:?}"
        );
    }
    for two in [[md5(18), md5(18)], [md5(18), ao(12)], [ao(12), md5(18)]] {
        assert_eq!(parse(&pad(two.concat())), Err(WireError::BadOption));
    }
}

#[test]
fn sack_blocks_parse_in_order() {
    let (s, d) = v4();
    let mut opts = vec![1, 1, 5, 26];
    for v in [10u32, 20, 30, 40, 50, 60] {
        opts.extend_from_slice(&v.to_be_bytes());
    }
    let seg = raw_tcp(5 + 7, &opts, 0x10, (1, 2), b"", s, d);
    let r = TcpRepr::parse(&seg, s, d, false).unwrap();
    assert_eq!(
        r.sack_ranges,
        [
            Some((SeqNumber(10), SeqNumber(20))),
            Some((SeqNumber(30), SeqNumber(40))),
            Some((SeqNumber(50), SeqNumber(60))),
            None
        ]
    );
}

#[test]
fn eol_ends_the_list() {
    // After EOL comes padding; its contents, even a bogus option, are not read.
    let (s, d) = v4();
    let seg = raw_tcp(7, &[2, 4, 5, 0xb4, 0, 30, 0, 0], 0x02, (1, 2), b"", s, d);
    let r = TcpRepr::parse(&seg, s, d, false).unwrap();
    assert_eq!(r.max_seg_size, Some(1460));
}

#[test]
fn unknown_options_are_skipped_by_length() {
    let (s, d) = v4();
    // Kind 34 (TFO cookie) of 6 bytes, then MSS, then NOP NOP.
    let opts = [34, 6, 1, 2, 3, 4, 2, 4, 2, 0x18, 1, 1];
    let seg = raw_tcp(8, &opts, 0x02, (1, 2), b"", s, d);
    let r = TcpRepr::parse(&seg, s, d, false).unwrap();
    assert_eq!(r.max_seg_size, Some(536));
}

#[test]
fn option_values_are_not_range_checked() {
    let (s, d) = v4();
    let seg = raw_tcp(7, &[2, 4, 0, 0, 1, 3, 3, 200], 0x02, (1, 2), b"", s, d);
    let r = TcpRepr::parse(&seg, s, d, false).unwrap();
    assert_eq!(r.max_seg_size, Some(0));
    assert_eq!(r.window_scale, Some(200));
}

#[test]
fn a_later_option_replaces_an_earlier_one() {
    let (s, d) = v4();
    let seg = raw_tcp(7, &[2, 4, 1, 0, 2, 4, 2, 0], 0x02, (1, 2), b"", s, d);
    assert_eq!(
        TcpRepr::parse(&seg, s, d, false).unwrap().max_seg_size,
        Some(512)
    );
}

#[test]
fn mixed_address_families_are_malformed() {
    let (s, d) = v4();
    let seg = raw_tcp(5, &[], 0x02, (1, 2), b"", s, d);
    assert_eq!(
        err(TcpRepr::parse(&seg, s, IpAddr::V6(dst6()), false)),
        WireError::Malformed
    );
}

// ---- ICMP ----

#[test]
fn icmp_v4_through_ip_parse() {
    let echo = wire::IcmpRepr::EchoRequest {
        ident: 9,
        seq_no: 1,
        data: b"abc",
    };
    let mut msg = vec![0u8; echo.buffer_len()];
    echo.emit_v4(&mut msg);
    let p = ipv4_packet(1, &msg);
    let (repr, payload) = ip::parse(&p).unwrap();
    assert_eq!(repr.protocol(), IpProtocol::Icmp);
    assert_eq!(wire::IcmpRepr::parse_v4(payload).unwrap(), echo);
    let mut bad = msg.clone();
    bad[9] ^= 1;
    assert_eq!(wire::IcmpRepr::parse_v4(&bad), Err(WireError::Checksum));
}

#[test]
fn icmp_v6_truncated_and_bad_checksum() {
    let echo = wire::IcmpRepr::EchoReply {
        ident: 9,
        seq_no: 1,
        data: b"abc",
    };
    let mut msg = vec![0u8; echo.buffer_len()];
    echo.emit_v6(&mut msg, src6(), dst6());
    let p = ipv6_packet(58, &msg);
    let (repr, payload) = ip::parse(&p).unwrap();
    assert_eq!(repr.protocol(), IpProtocol::Icmpv6);
    assert_eq!(
        wire::IcmpRepr::parse_v6(payload, src6(), dst6()).unwrap(),
        echo
    );
    assert_eq!(
        wire::IcmpRepr::parse_v6(&msg[..4], src6(), dst6()),
        Err(WireError::Truncated)
    );
    msg[0] = 128; // type changed, checksum not
    assert_eq!(
        wire::IcmpRepr::parse_v6(&msg, src6(), dst6()),
        Err(WireError::Checksum)
    );
}

#[test]
fn errors_display() {
    assert_eq!(WireError::Truncated.to_string(), "packet truncated");
    assert_eq!(WireError::BadOption.to_string(), "bad TCP option");
}

#[test]
fn emitted_tcp_header_length_is_bounded() {
    // Every option at once, four SACK blocks: the header still fits 60 bytes.
    let mut r = TcpRepr::new(
        1,
        2,
        TcpFlags::SYN | TcpFlags::ACK,
        SeqNumber(1),
        SeqNumber(2),
    );
    r.max_seg_size = Some(1460);
    r.window_scale = Some(7);
    r.sack_permitted = true;
    r.timestamp = Some(wire::TcpTimestamp { tsval: 1, tsecr: 2 });
    r.sack_ranges = [Some((SeqNumber(1), SeqNumber(2))); 4];
    assert!(r.header_len() <= 60);
    let (s, d) = v4();
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit(&mut buf, s, d);
    let parsed = TcpRepr::parse(&buf, s, d, false).unwrap();
    assert_eq!(parsed.timestamp, r.timestamp);
    assert_eq!(parsed.max_seg_size, Some(1460));
    assert_eq!(parsed.window_scale, Some(7));
    // 4 + 12 + 4 used, 20 left: room for the SACK header and two blocks.
    assert_eq!(parsed.sack_ranges.iter().flatten().count(), 2);
}
