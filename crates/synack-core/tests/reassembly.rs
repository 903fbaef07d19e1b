//! IP reassembly against hand-made fragments, in virtual time: pieces in any order come out
//! as the datagram; overlaps, repeats, stragglers and floods have bounded, counted outcomes
//! (RFC 791 §3.2, RFC 8200 §4.5, RFC 5722; Linux's `ip_fragment.c` limits).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;
use synack_core::endpoint::{
    FRAGMENT_DATAGRAM_OVERHEAD as DATAGRAM_OVERHEAD, FRAGMENT_PIECE_OVERHEAD as PIECE_OVERHEAD,
};
use synack_core::testing::{deliver, drain, ipv4_fragment, join_fragments, Pair};
use synack_core::wire::{self, IcmpRepr, IpProtocol, IpRepr, UdpRepr};
use synack_core::{Config, Endpoint, Error, Event, InterceptConfig, UdpHandle};

const C6: &str = "2001:2::1";
const S6: &str = "2001:2::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A server at [`Pair::SERVER`] and `S6` with `config`, and a UDP socket on port 9 of each.
fn server(config: Config) -> (Endpoint, UdpHandle, UdpHandle) {
    let mut ep = Endpoint::new(config, &[Pair::SERVER, ip(S6)]);
    let s = ep.udp_bind(SocketAddr::new(Pair::SERVER, 9)).unwrap();
    let s6 = ep.udp_bind(SocketAddr::new(ip(S6), 9)).unwrap();
    (ep, s, s6)
}

/// The IP packet of a UDP datagram of `len` patterned bytes from `src` to `dst`, port 4000
/// to 9: what gets cut into pieces.
fn datagram(src: IpAddr, dst: IpAddr, len: usize, seed: u8) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    let udp = UdpRepr {
        src_port: 4000,
        dst_port: 9,
        payload: &payload,
    };
    let ipr = IpRepr::new(src, dst, IpProtocol::Udp, udp.buffer_len(), 64).unwrap();
    let mut buf = vec![0u8; ipr.buffer_len()];
    ipr.emit(&mut buf);
    udp.emit(&mut buf[ipr.header_len()..], src, dst);
    (buf, payload)
}

/// `packet` cut into pieces of at most `mtu` bytes, identification `ident` (whole, if it
/// fits).
fn pieces(packet: &[u8], mtu: usize, ident: u32) -> Vec<Vec<u8>> {
    wire::fragment::split(packet, mtu, ident).unwrap_or_else(|| vec![packet.to_vec()])
}

/// An IPv4 fragment made by hand: `data` at byte `offset` of a UDP datagram's payload.
fn v4_piece(ident: u16, offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
    let pair = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
    ipv4_fragment(pair, IpProtocol::Udp, ident, offset, more, data)
}

fn recv(ep: &mut Endpoint, h: UdpHandle) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 70_000];
    let (n, _) = ep.udp_recv_from(h, &mut buf)?;
    Ok(buf[..n].to_vec())
}

fn sent(ep: &mut Endpoint, now: synack_core::Instant) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    drain(ep, now, &mut buf, |pkt, _| {
        out.push(pkt.to_vec());
        std::ops::ControlFlow::Continue(())
    });
    out
}

#[test]
fn pieces_in_any_order_make_the_datagram_in_both_families() {
    let (mut ep, s, s6) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    for (src, dst, sock) in [(Pair::CLIENT, Pair::SERVER, s), (ip(C6), ip(S6), s6)] {
        let (packet, payload) = datagram(src, dst, 6000, 1);
        let mut ps = pieces(&packet, 1280, 7);
        assert_eq!(ps.len(), 5);
        // Middle, last, first, then the rest.
        ps.swap(0, 2);
        ps.swap(1, 4);
        for p in &ps {
            assert_eq!(recv(&mut ep, sock), Err(Error::WouldBlock));
            deliver(&mut ep, now, p);
        }
        assert_eq!(recv(&mut ep, sock).unwrap(), payload);
    }
    let st = ep.stats();
    assert_eq!((st.fragments_reassembled, st.udp_datagrams_in), (2, 2));
    assert_eq!((st.drop_fragment, st.packets_in), (0, 10));
    assert_eq!(ep.memory_usage().reassembly, 0);
    assert_eq!(ep.poll_timeout(), None, "nothing left to expire");
}

/// RFC 5722: a piece that overlaps another gives up the whole datagram, whatever came
/// before or comes after; a piece repeated exactly is ignored (Linux's IPFRAG_DUP).
#[test]
fn overlaps_give_the_datagram_up_and_repeats_are_ignored() {
    let (mut ep, s, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let data = [0x5au8; 64];
    // A UDP header's worth of garbage at the front: only the outcome counts here.
    deliver(&mut ep, now, &v4_piece(1, 0, true, &data[..32]));
    deliver(&mut ep, now, &v4_piece(1, 24, true, &data[..16])); // overlaps 24..32
    deliver(&mut ep, now, &v4_piece(1, 32, false, &data[..8]));
    assert_eq!(recv(&mut ep, s), Err(Error::WouldBlock));
    let st = ep.stats();
    // The first two went with the overlap; the last started a datagram of its own.
    assert_eq!((st.drop_fragment, st.fragments_reassembled), (2, 0));
    // A piece past the first: its data, its share of bookkeeping and its datagram's.
    let one = 8 + PIECE_OVERHEAD + DATAGRAM_OVERHEAD;
    assert_eq!(ep.memory_usage().reassembly, one);
    // A piece that runs into the one after it: that datagram goes too.
    deliver(&mut ep, now, &v4_piece(2, 40, true, &data[..8]));
    deliver(&mut ep, now, &v4_piece(2, 32, true, &data[..16]));
    assert_eq!(ep.stats().drop_fragment, 4);
    assert_eq!(ep.memory_usage().reassembly, one, "ident 1's last piece");

    // Repeats of whole pieces change nothing: the datagram is still made.
    let (packet, payload) = datagram(Pair::CLIENT, Pair::SERVER, 3000, 2);
    let ps = pieces(&packet, 1500, 2);
    for p in [&ps[0], &ps[0], &ps[1], &ps[1]] {
        deliver(&mut ep, now, p);
    }
    assert_eq!(recv(&mut ep, s), Err(Error::WouldBlock));
    deliver(&mut ep, now, &ps[2]);
    assert_eq!(recv(&mut ep, s).unwrap(), payload);
    assert_eq!(ep.stats().drop_fragment, 4 + 2);
}

/// A datagram still missing a piece is given up `fragment_timeout` after its first piece
/// came; its sender hears ICMP time exceeded, code 1, quoting the first piece, if that one
/// came (Linux's `ip_expire`), and nothing otherwise.
#[test]
fn stragglers_expire_with_time_exceeded_for_the_sender() {
    let (mut ep, s, _) = server(Config::default());
    let start = synack_core::Instant::from_secs(100);
    let (packet, _) = datagram(Pair::CLIENT, Pair::SERVER, 3000, 3);
    let ps = pieces(&packet, 1500, 3);
    deliver(&mut ep, start, &ps[0]);
    deliver(&mut ep, start, &ps[1]);
    // Another datagram, its first piece missing.
    let (other, _) = datagram(Pair::CLIENT, Pair::SERVER, 3000, 4);
    let qs = pieces(&other, 1500, 4);
    deliver(&mut ep, start + Duration::from_secs(1), &qs[2]);
    assert_eq!(ep.poll_timeout(), Some(start + Duration::from_secs(30)));
    ep.handle_timeout(start + Duration::from_secs(29));
    assert!(sent(&mut ep, start).is_empty());
    ep.handle_timeout(start + Duration::from_secs(30));
    let out = sent(&mut ep, start + Duration::from_secs(30));
    assert_eq!(out.len(), 1, "one time exceeded");
    let (ipr, body) = wire::ip::parse(&out[0]).unwrap();
    assert_eq!(ipr.dst_addr(), Pair::CLIENT);
    match IcmpRepr::parse_v4(body).unwrap() {
        IcmpRepr::TimeExceeded { code, invoking } => {
            assert_eq!(code, 1);
            // As much of the first piece as an IPv4 error carries (RFC 1812: 576 bytes in
            // all).
            assert_eq!(invoking, &ps[0][..576 - 28], "the first piece as it came");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.poll_timeout(), Some(start + Duration::from_secs(31)));
    ep.handle_timeout(start + Duration::from_secs(31));
    assert!(
        sent(&mut ep, start).is_empty(),
        "no first piece, no message"
    );
    // The last piece of the first datagram comes too late: a datagram of its own, never
    // finished.
    deliver(&mut ep, start + Duration::from_secs(31), &ps[2]);
    assert_eq!(recv(&mut ep, s), Err(Error::WouldBlock));
    let st = ep.stats();
    assert_eq!(
        (st.fragments_expired, st.fragments_time_exceeded_sent),
        (2, 1)
    );
    assert_eq!(st.drop_fragment, 3);
}

/// Fragments that never complete hold at most `fragment_memory`: the oldest datagrams go
/// to make room, and a datagram that does complete is still made after the flood.
#[test]
fn a_flood_of_incomplete_datagrams_stays_under_the_cap() {
    let mut c = Config::default();
    c.fragment_memory(64 * 1024);
    let (mut ep, s, _) = server(c);
    let now = synack_core::Instant::from_secs(1);
    let mut peak = 0;
    for ident in 0..5000u16 {
        deliver(
            &mut ep,
            now,
            &v4_piece(ident, 0, true, &[ident as u8; 1024]),
        );
        peak = peak.max(ep.memory_usage().reassembly);
    }
    assert!(peak <= 64 * 1024, "{peak}");
    let st = ep.stats();
    assert!(st.fragments_evicted >= 5000 - 64, "{st:?}");
    assert_eq!(st.drop_fragment, st.fragments_evicted);
    let (packet, payload) = datagram(Pair::CLIENT, Pair::SERVER, 3000, 5);
    for p in pieces(&packet, 1500, 60_000) {
        deliver(&mut ep, now, &p);
    }
    assert_eq!(recv(&mut ep, s).unwrap(), payload);
    // The rest expire in their time, and their bookkeeping with them.
    ep.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(ep.memory_usage().reassembly, 0);
    assert_eq!(ep.poll_timeout(), None);
}

/// A datagram cut into 8-byte pieces (8,000 of them) that come last first: each costs a
/// tree lookup, not a shift of all those held (a sender choosing the order cannot make
/// reassembly quadratic), and the datagram is made.
#[test]
fn tiny_pieces_in_reverse_make_the_datagram() {
    let (mut ep, s, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let (packet, payload) = datagram(Pair::CLIENT, Pair::SERVER, 63_992, 9);
    let body = &packet[20..];
    let n = body.len() / 8;
    for i in (0..n).rev() {
        let piece = &body[i * 8..(i + 1) * 8];
        deliver(
            &mut ep,
            now,
            &v4_piece(42, (i * 8) as u16, i + 1 < n, piece),
        );
    }
    assert_eq!(recv(&mut ep, s).unwrap(), payload);
    assert_eq!(ep.stats().fragments_reassembled, 1);
}

/// Pieces from a broadcast or multicast source are not held (RFC 1122 §3.2.1.3): nothing
/// waits for them, and no time exceeded goes to a group when they would have expired.
#[test]
fn pieces_from_groups_are_not_held() {
    let (mut ep, _, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    for src in ["255.255.255.255", "224.0.0.1"] {
        let mut p = v4_piece(5, 0, true, &[0; 16]);
        let src: std::net::Ipv4Addr = src.parse().unwrap();
        let mut view = wire::ipv4::Packet::new_unchecked(&mut p[..]);
        view.set_src_addr(src);
        view.fill_checksum();
        deliver(&mut ep, now, &p);
    }
    let (packet, _) = datagram(ip("ff02::1"), ip(S6), 3000, 1);
    deliver(&mut ep, now, &pieces(&packet, 1280, 5)[0]);
    assert_eq!(ep.memory_usage().reassembly, 0);
    assert_eq!(ep.stats().drop_malformed, 3);
    ep.handle_timeout(now + Duration::from_secs(60));
    assert!(sent(&mut ep, now).is_empty());
}

/// A datagram that never completes is answered with time exceeded only if it was not an
/// ICMP error itself (RFC 1122 §3.2.2: no error about an error); an echo request is
/// answered. The ICMPv6 message quotes the first piece as it came, its Fragment header
/// included (the headers before it name it), up to the minimum MTU (RFC 4443 §2.4).
#[test]
fn time_exceeded_quotes_the_first_piece_and_never_answers_an_error() {
    let (mut ep, _, _) = server(Config::default());
    let start = synack_core::Instant::from_secs(10);
    // Pieces at offset 0 of three ICMP datagrams, each 3,000 bytes: an IPv4 unreachable,
    // an ICMPv6 packet too big (errors), and an ICMPv6 echo request.
    let icmp4 = |t: u8| {
        let ipr = IpRepr::new(Pair::CLIENT, Pair::SERVER, IpProtocol::Icmp, 3000, 64).unwrap();
        let mut p = vec![0u8; ipr.buffer_len()];
        ipr.emit(&mut p);
        p[20] = t;
        p
    };
    let icmp6 = |t: u8| {
        let ipr = IpRepr::new(ip(C6), ip(S6), IpProtocol::Icmpv6, 3000, 64).unwrap();
        let mut p = vec![0u8; ipr.buffer_len()];
        ipr.emit(&mut p);
        p[40] = t;
        p
    };
    let unreachable = pieces(&icmp4(3), 1500, 1);
    let too_big = pieces(&icmp6(2), 1280, 2);
    let echo = pieces(&icmp6(128), 1280, 3);
    for p in [&unreachable[0], &too_big[0], &echo[0]] {
        deliver(&mut ep, start, p);
    }
    ep.handle_timeout(start + Duration::from_secs(30));
    let out = sent(&mut ep, start);
    assert_eq!(out.len(), 1, "one time exceeded, for the echo request");
    let (ipr, body) = wire::ip::parse(&out[0]).unwrap();
    let (IpAddr::V6(s), IpAddr::V6(d)) = (ipr.src_addr(), ipr.dst_addr()) else {
        panic!("{ipr:?}");
    };
    assert_eq!(d, ip(C6));
    match IcmpRepr::parse_v6(body, s, d).unwrap() {
        IcmpRepr::TimeExceeded { code, invoking } => {
            assert_eq!(code, 1);
            assert_eq!(
                invoking.len(),
                1280 - 48,
                "as much as the minimum MTU carries"
            );
            assert_eq!(
                invoking,
                &echo[0][..invoking.len()],
                "the first piece as it came"
            );
            assert_eq!(
                invoking[6], 44,
                "the fixed header names the Fragment header"
            );
            assert_eq!(invoking[40], 58, "which names ICMPv6");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.stats().fragments_expired, 3);
}

/// The time exceeded for a first piece whose headers alone pass the minimum MTU (a 1,400-byte
/// Routing header before its Fragment header) is cut to fit it too (RFC 4443 §2.4(c)), as
/// Linux cuts every quote. Before, only the data was cut: the headers went whole, and the
/// message left at 1.5 KB, in fragments of its own.
#[test]
fn time_exceeded_fits_the_minimum_mtu_whatever_the_headers() {
    let (mut ep, _, _) = server(Config::default());
    let start = synack_core::Instant::from_secs(10);
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip(C6), ip(S6)) else {
        unreachable!()
    };
    // A Routing header of type 0 with no segments left (ignored, RFC 5095 §3), 87 addresses
    // long; then the Fragment header (offset 0, more to come) and a UDP header's 8 bytes.
    let mut routing = vec![44u8, 174, 0, 0, 0, 0, 0, 0];
    routing.resize(1400, 0);
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((1400 + 8 + 8) as u16).to_be_bytes());
    p.extend_from_slice(&[43, 64]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&routing);
    p.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 7]);
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35, 0x00, 0x40, 0, 0]);
    deliver(&mut ep, start, &p);
    ep.handle_timeout(start + Duration::from_secs(30));
    let out = sent(&mut ep, start);
    assert_eq!(out.len(), 1, "one time exceeded");
    assert!(out[0].len() <= 1280, "{} bytes", out[0].len());
    let (ipr, body) = wire::ip::parse(&out[0]).unwrap();
    assert_eq!(ipr.protocol(), IpProtocol::Icmpv6, "{ipr:?}");
    match IcmpRepr::parse_v6(body, dst, src).unwrap() {
        IcmpRepr::TimeExceeded { code, invoking } => {
            assert_eq!(code, 1);
            assert_eq!(invoking, &p[..invoking.len()], "the first piece as it came");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(ep.stats().fragments_expired, 1);
}

/// RFC 8200 §4.5: an IPv6 piece with more to come whose length is not a multiple of 8 is
/// discarded with a parameter problem (code 0) pointing at its Payload Length, one that
/// would take the datagram past 65,535 bytes with one pointing at its Fragment Offset, as
/// Linux's `ip6_frag_queue` answers them; an empty piece goes in silence. Before, all three
/// were dropped in silence.
#[test]
fn malformed_ipv6_pieces_draw_a_parameter_problem() {
    let (mut ep, _, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip(C6), ip(S6)) else {
        unreachable!()
    };
    let piece = |offset_and_more: u16, data: &[u8]| {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[44, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(&[17, 0]);
        p.extend_from_slice(&offset_and_more.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 9]);
        p.extend_from_slice(data);
        p
    };
    let unaligned = piece(1, &[7; 12]);
    let past_max = piece(65528, &[7; 16]);
    let empty = piece(1, &[]);
    for (p, pointer) in [(&unaligned, Some(4)), (&past_max, Some(42)), (&empty, None)] {
        let dropped = ep.stats().drop_malformed;
        deliver(&mut ep, now, p);
        assert_eq!(ep.stats().drop_malformed, dropped + 1);
        let out = sent(&mut ep, now);
        let Some(pointer) = pointer else {
            assert!(out.is_empty(), "an empty piece is not answered: {out:?}");
            continue;
        };
        assert_eq!(out.len(), 1, "one parameter problem");
        let (ipr, body) = wire::ip::parse(&out[0]).unwrap();
        assert_eq!((ipr.src_addr(), ipr.dst_addr()), (ip(S6), ip(C6)));
        match IcmpRepr::parse_v6(body, dst, src).unwrap() {
            IcmpRepr::ParamProblem {
                code,
                pointer: at,
                invoking,
            } => {
                assert_eq!((code, at), (0, pointer));
                assert_eq!(invoking, &p[..]);
            }
            other => panic!("{other:?}"),
        }
    }
}

/// A piece that lies wholly within a run of held pieces (pieces that came one after another
/// at the end, back to back) repeats them: dropped, and the datagram is still made (Linux's
/// IPFRAG_DUP). The same pieces come out of order make two runs, and a piece across both is
/// an overlap (RFC 5722): the datagram is given up.
#[test]
fn a_piece_within_the_held_ones_is_a_repeat() {
    let (mut ep, s, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let (packet, payload) = datagram(Pair::CLIENT, Pair::SERVER, 3000, 7);
    let ps = pieces(&packet, 1500, 9);
    deliver(&mut ep, now, &ps[0]);
    deliver(&mut ep, now, &ps[1]);
    // Bytes 1400..1600 of the payload, from within the first two pieces, sent again.
    let body = &packet[20..];
    deliver(&mut ep, now, &v4_piece(9, 1400, true, &body[1400..1600]));
    assert_eq!(ep.stats().drop_fragment, 1);
    deliver(&mut ep, now, &ps[2]);
    assert_eq!(recv(&mut ep, s).unwrap(), payload);

    let (mut ep, s, _) = server(Config::default());
    deliver(&mut ep, now, &ps[1]);
    deliver(&mut ep, now, &ps[0]);
    deliver(&mut ep, now, &v4_piece(9, 1400, true, &body[1400..1600]));
    assert_eq!(ep.stats().drop_fragment, 3, "the piece and the two held");
    deliver(&mut ep, now, &ps[2]);
    assert_eq!(recv(&mut ep, s), Err(Error::WouldBlock));
}

/// A ping larger than the MTU (`ping -s 3000`) comes in fragments and is answered in
/// fragments, each within the MTU, which put together are the echo reply.
#[test]
fn a_ping_past_the_mtu_is_answered_in_fragments() {
    let (mut ep, _, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    let request = IcmpRepr::EchoRequest {
        ident: 7,
        seq_no: 1,
        data: &data,
    };
    let ipr = IpRepr::new(
        Pair::CLIENT,
        Pair::SERVER,
        IpProtocol::Icmp,
        request.buffer_len(),
        64,
    )
    .unwrap();
    let mut packet = vec![0u8; ipr.buffer_len()];
    ipr.emit(&mut packet);
    request.emit_v4(&mut packet[20..]);
    for p in pieces(&packet, 1500, 11) {
        deliver(&mut ep, now, &p);
    }
    let out = sent(&mut ep, now);
    assert_eq!(out.len(), 3, "the reply in three pieces");
    assert!(out.iter().all(|p| p.len() <= 1500), "a piece past the MTU");
    let whole = join_fragments(&out);
    let (_, body) = wire::ip::parse(&whole).unwrap();
    match IcmpRepr::parse_v4(body).unwrap() {
        IcmpRepr::EchoReply {
            ident,
            seq_no,
            data: got,
        } => {
            assert_eq!((ident, seq_no), (7, 1));
            assert!(got == &data[..], "the reply's data");
        }
        other => panic!("{other:?}"),
    }
    let st = ep.stats();
    assert_eq!((st.echo_replies, st.fragments_sent), (1, 2));
}

/// TCP is not reassembled (a sender sizes its segments to the path), nor is a protocol
/// synack does not speak; pieces that break the rules are malformed: an empty one, an IPv4
/// one but the last with less than 8 bytes, an IPv6 one but the last whose length is not a
/// multiple of 8 (RFC 8200 §4.5), one reaching past 65,535 bytes. An IPv4 piece but the last
/// with bytes past its last whole 8 loses them, as Linux rounds it down.
#[test]
fn tcp_and_malformed_pieces_are_dropped() {
    let (mut ep, s, _) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let mut tcp = v4_piece(9, 0, true, &[0; 64]);
    tcp[9] = 6;
    let mut view = wire::ipv4::Packet::new_unchecked(&mut tcp[..]);
    view.fill_checksum();
    deliver(&mut ep, now, &tcp);
    assert_eq!(ep.stats().drop_fragment, 1);
    let (v6, _) = datagram(ip(C6), ip(S6), 3000, 3);
    let mut ragged = pieces(&v6, 1280, 4).remove(0);
    ragged.truncate(ragged.len() - 4);
    let len = (ragged.len() - 40) as u16;
    ragged[4..6].copy_from_slice(&len.to_be_bytes());
    for bad in [
        v4_piece(10, 0, true, &[0; 4]),
        v4_piece(11, 0, true, &[]),
        v4_piece(12, 65_528, false, &[0; 16]),
        ragged,
    ] {
        deliver(&mut ep, now, &bad);
    }
    let st = ep.stats();
    assert_eq!((st.drop_malformed, st.drop_fragment), (4, 1));
    assert_eq!(ep.memory_usage().reassembly, 0);
    // 12 bytes in a piece but the last: the first 8 count.
    let (udp, payload) = datagram(Pair::CLIENT, Pair::SERVER, 8, 5);
    let body = &udp[20..];
    deliver(
        &mut ep,
        now,
        &v4_piece(14, 0, true, &[&body[..8], &[0xee; 4]].concat()),
    );
    deliver(&mut ep, now, &v4_piece(14, 8, false, &body[8..]));
    assert_eq!(recv(&mut ep, s).unwrap(), payload);
    // A second last piece that disagrees on the length gives the datagram up.
    deliver(&mut ep, now, &v4_piece(13, 8, false, &[0; 8]));
    deliver(&mut ep, now, &v4_piece(13, 8, false, &[0; 16]));
    assert_eq!(ep.stats().drop_fragment, 1 + 2);
}

/// RFC 8200 §4.5: the pieces of one IPv6 packet may carry different Next Header values in
/// their Fragment headers; they are one datagram all the same (Linux's key has no protocol),
/// and the first piece's value is the datagram's ("Only the value from the Offset zero
/// fragment packet is used"), whatever the later ones say: ICMPv6, TCP (which is not
/// reassembled), Destination Options, No Next Header.
#[test]
fn ipv6_pieces_are_one_datagram_whatever_their_next_headers() {
    for later in [58, 6, 60, 59] {
        let (mut ep, _, s6) = server(Config::default());
        let now = synack_core::Instant::from_secs(1);
        let (packet, payload) = datagram(ip(C6), ip(S6), 3000, 8);
        let mut ps = pieces(&packet, 1280, 21);
        ps[1][40] = later;
        ps[2][40] = later;
        for p in ps.iter().rev() {
            deliver(&mut ep, now, p);
        }
        assert_eq!(
            recv(&mut ep, s6).unwrap(),
            payload,
            "later pieces say {later}"
        );
        assert_eq!(ep.stats().drop_fragment, 0, "later pieces say {later}");
    }
}

/// A first IPv6 piece that names a protocol not reassembled (TCP: see the reassembly
/// module) ends its datagram there: the pieces already held for it are given up at once,
/// not kept until the timeout, and nothing is answered then.
#[test]
fn a_first_ipv6_piece_of_tcp_gives_up_the_pieces_held() {
    let (mut ep, _, s6) = server(Config::default());
    let now = synack_core::Instant::from_secs(1);
    let (packet, _) = datagram(ip(C6), ip(S6), 3000, 8);
    let mut ps = pieces(&packet, 1280, 21);
    ps[0][40] = 6;
    deliver(&mut ep, now, &ps[2]);
    deliver(&mut ep, now, &ps[1]);
    assert_eq!(ep.stats().drop_fragment, 0);
    deliver(&mut ep, now, &ps[0]);
    assert_eq!(ep.stats().drop_fragment, 3);
    assert_eq!(recv(&mut ep, s6), Err(Error::WouldBlock));
    ep.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(ep.stats().fragments_expired, 0);
    assert!(sent(&mut ep, now).is_empty());
}

/// In transparent mode a fragmented datagram to any address is reassembled and caught
/// with its original addresses, as a whole one is; one to elsewhere that never completes is
/// given up in silence (Linux's `ip_expire` sends no time exceeded for a destination that
/// is not local).
#[test]
fn intercepted_datagrams_are_reassembled_too() {
    let mut c = Config::default();
    c.intercept(Some(InterceptConfig::default()));
    let mut ep = Endpoint::new(c, &[Pair::SERVER]);
    let now = synack_core::Instant::from_secs(1);
    let elsewhere = ip("198.19.7.9");
    let (packet, payload) = datagram(Pair::CLIENT, elsewhere, 4000, 6);
    for p in pieces(&packet, 1500, 77) {
        deliver(&mut ep, now, &p);
    }
    assert!(std::iter::from_fn(|| ep.poll_event()).any(|e| e == Event::UdpIntercepted));
    let mut buf = vec![0u8; 8192];
    let d = ep.udp_recv_intercepted(&mut buf).unwrap();
    assert_eq!(d.dst, SocketAddr::new(elsewhere, 9));
    assert_eq!(&buf[..d.len], &payload[..]);
    deliver(&mut ep, now, &pieces(&packet, 1500, 78)[0]);
    ep.handle_timeout(now + std::time::Duration::from_secs(30));
    assert!(sent(&mut ep, now).is_empty());
    assert_eq!(ep.stats().fragments_expired, 1);
}

/// In transparent mode too, a later IPv6 piece is not judged by its own Next Header (RFC
/// 8200 §4.5: only the first piece's counts): pieces saying Destination Options or No Next
/// Header are taken, and the datagram is caught whole. They used to be dropped as nobody's,
/// and the datagram never completed.
#[test]
fn intercepted_ipv6_pieces_are_one_datagram_whatever_their_next_headers() {
    for later in [60, 59] {
        let mut c = Config::default();
        c.intercept(Some(InterceptConfig::default()));
        let mut ep = Endpoint::new(c, &[ip(S6)]);
        let now = synack_core::Instant::from_secs(1);
        let elsewhere = ip("2001:2::77");
        let (packet, payload) = datagram(ip(C6), elsewhere, 3000, 9);
        let mut ps = pieces(&packet, 1280, 31);
        ps[1][40] = later;
        ps[2][40] = later;
        for p in &ps {
            deliver(&mut ep, now, p);
        }
        let mut buf = vec![0u8; 8192];
        let d = ep
            .udp_recv_intercepted(&mut buf)
            .unwrap_or_else(|e| panic!("later pieces say {later}: {e:?} {:?}", ep.stats()));
        assert_eq!(d.dst, SocketAddr::new(elsewhere, 9));
        assert_eq!(&buf[..d.len], &payload[..], "later pieces say {later}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0xf4a9),
        ..ProptestConfig::default()
    })]

    /// Any datagram, cut at any MTU, its pieces shuffled and some repeated, comes out
    /// whole, and nothing but it comes out (a repeat after the datagram was made starts a
    /// datagram of its own, as on Linux: if every piece is repeated, that one is made too);
    /// nothing is held once the timeout has passed.
    #[test]
    fn shuffled_and_repeated_pieces_reassemble_once(
        len in 1usize..20_000,
        mtu in 1280usize..9000,
        v6 in any::<bool>(),
        order in proptest::collection::vec(any::<u32>(), 64),
        repeats in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let (mut ep, s, s6) = server(Config::default());
        let now = synack_core::Instant::from_secs(1);
        let (src, dst, sock) = if v6 {
            (ip(C6), ip(S6), s6)
        } else {
            (Pair::CLIENT, Pair::SERVER, s)
        };
        let (packet, payload) = datagram(src, dst, len, len as u8);
        let mut ps = pieces(&packet, mtu, 5);
        for &r in &repeats {
            let again = ps[usize::from(r) % ps.len()].clone();
            ps.push(again);
        }
        let mut keyed: Vec<(u32, Vec<u8>)> = order.iter().copied().cycle().zip(ps).collect();
        keyed.sort_by_key(|(k, _)| *k);
        for (_, p) in &keyed {
            deliver(&mut ep, now, p);
        }
        prop_assert_eq!(&recv(&mut ep, sock).unwrap(), &payload);
        while let Ok(again) = recv(&mut ep, sock) {
            prop_assert_eq!(&again, &payload);
        }
        ep.handle_timeout(now + Duration::from_secs(30));
        prop_assert_eq!(ep.memory_usage().reassembly, 0);
    }
}
