//! Packets to us that synack cannot process, and what it answers, as Linux answers them: an
//! IPv4 protocol it does not handle with ICMP protocol unreachable (RFC 1122 §3.2.2.1), IPv6
//! with the ICMPv6 parameter problem RFC 8200 asks for (§4, §4.2, §4.4), within the ICMP
//! rate limit, never to a source that is not a unicast peer, and nothing where RFC 8200 says
//! to discard in silence. Each is still counted under `drop_unsupported`.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::*;
use synack_core::wire::{self, checksum, IcmpRepr, IpProtocol, IpRepr};

/// An IPv6 packet from `src` to `dst`: `next_header`, then `body` (extension headers and
/// the upper-layer bytes) as they are.
fn v6_packet(src: IpAddr, dst: IpAddr, next_header: u8, body: &[u8]) -> Vec<u8> {
    let ip = IpRepr::new(src, dst, IpProtocol::from(next_header), body.len(), 64).unwrap();
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p[..40]);
    p[40..].copy_from_slice(body);
    p
}

/// A Destination Options header (8 bytes) naming TCP, holding one option of `kind` with two
/// bytes of data, then Pad1s; and a SYN from `PEER6` to `US6` port 9 after it.
fn dest_opts_then_tcp(kind: u8) -> Vec<u8> {
    let mut body = vec![6, 0, kind, 2, 0, 0, 0, 0];
    let mut syn = vec![
        0x9c, 0x40, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff,
    ];
    syn.extend_from_slice(&[0, 0, 0, 0]);
    let pseudo = checksum::pseudo_header(PEER6, US6, IpProtocol::Tcp, 20).unwrap();
    let sum = checksum::finish(pseudo + checksum::partial(&syn));
    syn[16..18].copy_from_slice(&sum.to_be_bytes());
    body.extend_from_slice(&syn);
    body
}

/// The one packet the endpoint answers `packet` with, if any.
fn answer(h: &mut Harness, packet: &[u8]) -> Option<Vec<u8>> {
    let before = h.raw.len();
    h.inject_raw(packet);
    let _ = h.drain();
    assert!(h.raw.len() <= before + 1, "one answer at most");
    h.raw.get(before).cloned()
}

/// The ICMPv6 message in `reply`, checked to go from `US6` to `PEER6`.
fn icmpv6(reply: &[u8]) -> IcmpRepr<'_> {
    let (ip, payload) = wire::ip::parse(reply).expect("a valid IPv6 packet");
    assert_eq!((ip.src_addr(), ip.dst_addr()), (US6, PEER6));
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (US6, PEER6) else {
        unreachable!()
    };
    IcmpRepr::parse_v6(payload, src, dst).expect("a valid ICMPv6 message")
}

#[test]
fn unrecognised_options_answered_as_their_action_bits_say() {
    let mut h = Harness::new(config());
    // RFC 8200 §4.2: 10 and 11 (to a unicast address) are "discard and send a parameter
    // problem, code 2, pointing to the unrecognized Option Type"; 01 discards in silence.
    for kind in [0x9e, 0xde] {
        let p = v6_packet(PEER6, US6, 60, &dest_opts_then_tcp(kind));
        let reply = answer(&mut h, &p).unwrap_or_else(|| panic!("no answer to {kind:#x}"));
        match icmpv6(&reply) {
            IcmpRepr::ParamProblem {
                code,
                pointer,
                invoking,
            } => {
                assert_eq!((code, pointer), (2, 42), "{kind:#x}");
                assert_eq!(invoking, &p[..], "the whole packet quoted");
            }
            other => panic!("{other:?}"),
        }
    }
    let p = v6_packet(PEER6, US6, 60, &dest_opts_then_tcp(0x5e));
    assert_eq!(answer(&mut h, &p), None, "01: discarded in silence");
    // 00 is skipped: the SYN behind it reaches TCP, and the closed port answers with an RST.
    let p = v6_packet(PEER6, US6, 60, &dest_opts_then_tcp(0x1e));
    let rst = answer(&mut h, &p).expect("an RST");
    assert_eq!(rst[6], 6, "TCP");
    assert_eq!(h.ep.stats().unsupported_answered, 2);
}

#[test]
fn unknown_next_headers_and_routing_are_answered_with_their_pointer() {
    let mut h = Harness::new(config());
    let code_and_pointer = |reply: &[u8]| match icmpv6(reply) {
        IcmpRepr::ParamProblem { code, pointer, .. } => (code, pointer),
        other => panic!("{other:?}"),
    };
    // §4: an unrecognized Next Header is code 1, pointing to the field that names it: in
    // the fixed header, or in the extension header before it.
    let p = v6_packet(PEER6, US6, 253, &[0; 16]);
    assert_eq!(code_and_pointer(&answer(&mut h, &p).unwrap()), (1, 6));
    let p = v6_packet(PEER6, US6, 60, &[132, 0, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(code_and_pointer(&answer(&mut h, &p).unwrap()), (1, 40));
    // §4.1: Hop-by-Hop anywhere but first, likewise.
    let p = v6_packet(
        PEER6,
        US6,
        60,
        &[0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0],
    );
    assert_eq!(code_and_pointer(&answer(&mut h, &p).unwrap()), (1, 40));
    // §4.4: a Routing header with segments left, which a host does not forward: code 0,
    // pointing to its Routing Type.
    let p = v6_packet(PEER6, US6, 43, &[6, 0, 253, 1, 0, 0, 0, 0]);
    assert_eq!(code_and_pointer(&answer(&mut h, &p).unwrap()), (0, 42));
    // §4.7: No Next Header is discarded in silence.
    let p = v6_packet(PEER6, US6, 59, &[0; 8]);
    assert_eq!(answer(&mut h, &p), None);
    assert_eq!(h.ep.stats().unsupported_answered, 4);
    // Each still counted as dropped (Hop-by-Hop out of place as malformed).
    let s = h.ep.stats();
    assert_eq!((s.drop_unsupported, s.drop_malformed), (4, 1));
}

/// An ICMPv6 error (Destination Unreachable) from `PEER6` to `US6`, quoting 48 bytes.
fn icmpv6_error() -> Vec<u8> {
    let mut m = vec![1u8, 4, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&[0x60; 48]);
    let len = u32::try_from(m.len()).unwrap();
    let pseudo = checksum::pseudo_header(PEER6, US6, IpProtocol::Icmpv6, len).unwrap();
    let sum = checksum::finish(pseudo + checksum::partial(&m));
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// Where Linux drops in silence (found by review): an ICMPv6 error behind a header that
/// would be answered (RFC 4443 §2.4 (e.1): no error about an error; Linux's `is_ineligible`),
/// an unknown option whose length runs past its header (`ip6_parse_tlv` checks the length
/// first), and RPL or Segment Routing headers with segments left (off by default in Linux).
/// An atomic fragment is a whole packet: the unknown protocol behind it is answered, at the
/// Fragment header's Next Header.
#[test]
fn silent_where_linux_is_and_an_atomic_fragment_answered() {
    let mut h = Harness::new(config());
    for first in [
        vec![58, 0, 0x9e, 2, 0, 0, 0, 0],
        vec![58, 0, 0, 1, 0, 0, 0, 0],
    ] {
        let header = if first[2] == 0x9e { 60 } else { 43 };
        let mut body = first;
        body.extend_from_slice(&icmpv6_error());
        let p = v6_packet(PEER6, US6, header, &body);
        assert_eq!(
            answer(&mut h, &p),
            None,
            "an ICMPv6 error behind header {header}"
        );
    }
    let mut overrun = vec![6, 0, 0x9e, 16, 0, 0, 0, 0];
    overrun.extend_from_slice(&[0u8; 20]);
    assert_eq!(answer(&mut h, &v6_packet(PEER6, US6, 60, &overrun)), None);
    for routing_type in [3u8, 4] {
        let p = v6_packet(PEER6, US6, 43, &[6, 0, routing_type, 1, 0, 0, 0, 0]);
        assert_eq!(answer(&mut h, &p), None, "routing type {routing_type}");
    }
    assert_eq!(h.ep.stats().unsupported_answered, 0);
    let mut atomic = vec![132, 0, 0, 0, 0, 0, 0, 7];
    atomic.extend_from_slice(&[0u8; 16]);
    let reply = answer(&mut h, &v6_packet(PEER6, US6, 44, &atomic)).expect("an answer");
    match icmpv6(&reply) {
        IcmpRepr::ParamProblem { code, pointer, .. } => assert_eq!((code, pointer), (1, 40)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unhandled_ipv4_protocol_is_protocol_unreachable_but_igmp() {
    let mut h = Harness::new(config());
    let packet = |protocol: u8| {
        let ip = IpRepr::new(PEER, US, IpProtocol::from(protocol), 12, 64).unwrap();
        let mut p = vec![0u8; ip.buffer_len()];
        ip.emit(&mut p[..20]);
        p
    };
    let sctp = packet(132);
    let reply = answer(&mut h, &sctp).expect("protocol unreachable");
    let (ip, payload) = wire::ip::parse(&reply).unwrap();
    assert_eq!((ip.src_addr(), ip.dst_addr()), (US, PEER));
    match IcmpRepr::parse_v4(payload).unwrap() {
        IcmpRepr::DstUnreachable { code, invoking } => {
            assert_eq!(code, 2, "protocol unreachable (RFC 792)");
            assert_eq!(invoking, &sctp[..]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(answer(&mut h, &packet(2)), None, "IGMP is taken in silence");
    assert_eq!(h.ep.stats().unsupported_answered, 1);
}

#[test]
fn no_answer_to_a_peer_that_is_not_unicast_nor_beyond_the_rate_limit() {
    let mut h = Harness::new(config());
    let multicast = IpAddr::V6("ff02::1".parse::<Ipv6Addr>().unwrap());
    let p = v6_packet(multicast, US6, 253, &[0; 8]);
    assert_eq!(answer(&mut h, &p), None, "a multicast source");
    let broadcast = IpAddr::V4(Ipv4Addr::BROADCAST);
    let ip = IpRepr::new(broadcast, US, IpProtocol::from(132), 8, 64).unwrap();
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p[..20]);
    assert_eq!(answer(&mut h, &p), None, "a broadcast source");
    // A flood at one instant: the ICMP token bucket (Linux's icmp_msgs_burst, 50) bounds
    // the answers.
    let p = v6_packet(PEER6, US6, 253, &[0; 8]);
    for _ in 0..1000 {
        h.inject_raw(&p);
    }
    let _ = h.drain();
    let answered = h.ep.stats().unsupported_answered;
    assert!((1..=50).contains(&answered), "{answered}");
}
