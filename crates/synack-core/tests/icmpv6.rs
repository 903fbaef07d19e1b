//! ICMPv6 (RFC 4443) as the endpoint claims to handle it over IPv6: echo answered, Packet
//! Too Big lowering the MSS (RFC 8201), Destination Unreachable ending a connect or noted as
//! a soft error, and what the kernel says unasked on a new link (router solicitations, MLD
//! reports to multicast groups) dropped and counted.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use common::*;
use synack_core::wire::{checksum, IcmpRepr, IpProtocol, IpRepr, TcpFlags};
use synack_core::{ConnectionHandle, Error, State};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => unreachable!("an IPv6 address"),
    }
}

/// An ICMPv6 message from `src` to `dst` in its IPv6 packet.
fn icmpv6_packet(src: Ipv6Addr, dst: Ipv6Addr, icmp: IcmpRepr<'_>) -> Vec<u8> {
    let ip = IpRepr::new(
        src.into(),
        dst.into(),
        IpProtocol::Icmpv6,
        icmp.buffer_len(),
        64,
    )
    .unwrap();
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p[..40]);
    icmp.emit_v6(&mut p[40..], src, dst);
    p
}

/// A connection from `US6` to `PEER6:443`, established with an MSS of 1440 both ways and
/// no options beyond it; returns the handle and the peer's next sequence number.
fn established(h: &mut Harness) -> (ConnectionHandle, SocketAddr, SocketAddr) {
    let peer = SocketAddr::new(PEER6, 443);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    h.inject(
        peer,
        syn.src,
        Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1).mss(1440),
    );
    let ack = h.one();
    assert!(ack.is(ACK));
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    (c, syn.src, peer)
}

#[test]
fn echo_request_over_ipv6_is_answered_with_a_valid_reply() {
    let mut h = Harness::new(config());
    let req = IcmpRepr::EchoRequest {
        ident: 0x4242,
        seq_no: 9,
        data: b"ping over IPv6",
    };
    h.inject_raw(&icmpv6_packet(v6(PEER6), v6(US6), req));
    let _ = h.drain();
    let reply = h.raw.last().expect("a reply");
    assert_eq!(reply[0] >> 4, 6, "IPv6");
    assert_eq!(reply[6], 58, "ICMPv6");
    let src: [u8; 16] = reply[8..24].try_into().unwrap();
    let dst: [u8; 16] = reply[24..40].try_into().unwrap();
    assert_eq!(
        (Ipv6Addr::from(src), Ipv6Addr::from(dst)),
        (v6(US6), v6(PEER6))
    );
    // The checksum, pseudo-header included, verifies.
    assert_eq!(
        IcmpRepr::parse_v6(&reply[40..], v6(US6), v6(PEER6)).unwrap(),
        IcmpRepr::EchoReply {
            ident: 0x4242,
            seq_no: 9,
            data: b"ping over IPv6",
        }
    );
    assert_eq!(h.ep.stats().echo_replies, 1);
}

#[test]
fn packet_too_big_over_ipv6_lowers_the_mss_and_resends() {
    let mut h = Harness::new(config());
    let (c, us, _) = established(&mut h);
    h.ep.send(c, &[9u8; 4000]).unwrap();
    let sent = h.drain();
    let sizes: Vec<usize> = sent.iter().map(|s| s.payload.len()).collect();
    assert_eq!(sizes, [1440, 1440, 1120]);
    let first = sent[0].seq;
    let quoted = h.raw[h.raw.len() - sent.len()][..1232].to_vec();
    // RFC 4443 §3.2, from a router on the path: the next hop carries 1280 bytes, IPv6's
    // minimum (RFC 8200 §5), so segments shrink to 1280 - 40 - 20 = 1220.
    let router: Ipv6Addr = "2001:2:0:1::1".parse().unwrap();
    let p = icmpv6_packet(
        router,
        v6(us.ip()),
        IcmpRepr::PacketTooBig {
            mtu: 1280,
            invoking: &quoted,
        },
    );
    h.inject_raw(&p);
    let r = h.drain();
    assert!(!r.is_empty(), "what was in flight is sent again");
    assert_eq!(r[0].seq, first);
    assert!(
        r.iter().all(|s| s.payload.len() <= 1220),
        "{:?}",
        r.iter().map(|s| s.payload.len()).collect::<Vec<_>>()
    );
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
}

/// RFC 8201 §4: a node "MUST NOT reduce its estimate of the Path MTU below the IPv6 minimum
/// link MTU" (1280). Linux (since 5.14, "drop silly ICMPv6 packet too big messages":
/// `tcp_v6_err`, `__ip6_rt_update_pmtu`) ignores such a message altogether rather than take
/// 1280 from it, so a Packet Too Big naming less than 1280 changes nothing; nor does one
/// that would not lower the MSS in use.
#[test]
fn packet_too_big_below_the_ipv6_minimum_is_ignored() {
    let mut h = Harness::new(config());
    let (c, us, peer) = established(&mut h);
    h.ep.send(c, &[9u8; 3000]).unwrap();
    let sent = h.drain();
    let quoted = h.raw[h.raw.len() - sent.len()][..48].to_vec();
    let p = icmpv6_packet(
        v6(peer.ip()),
        v6(us.ip()),
        IcmpRepr::PacketTooBig {
            mtu: 576,
            invoking: &quoted,
        },
    );
    h.inject_raw(&p);
    assert!(h.drain().is_empty(), "nothing is sent again");
    assert_eq!(h.ep.info(h.now, c).unwrap().snd_mss, 1440);
    // Nor does one at the MTU in use (1500: MSS 1440).
    let p = icmpv6_packet(
        v6(peer.ip()),
        v6(us.ip()),
        IcmpRepr::PacketTooBig {
            mtu: 1500,
            invoking: &quoted,
        },
    );
    h.inject_raw(&p);
    assert!(h.drain().is_empty());
    assert_eq!(h.ep.info(h.now, c).unwrap().snd_mss, 1440);
}

/// A Packet Too Big quoting a sequence number we never sent is ignored (RFC 5927 §4.1).
#[test]
fn packet_too_big_over_ipv6_quoting_old_data_is_ignored() {
    let mut h = Harness::new(config());
    let (c, us, peer) = established(&mut h);
    h.ep.send(c, &[9u8; 1000]).unwrap();
    let sent = h.drain();
    let mut quoted = h.raw.last().unwrap()[..48].to_vec();
    // The quoted segment's sequence number, moved a million bytes back.
    let old = (sent[0].seq.0.wrapping_sub(1_000_000)).to_be_bytes();
    quoted[44..48].copy_from_slice(&old);
    let p = icmpv6_packet(
        v6(peer.ip()),
        v6(us.ip()),
        IcmpRepr::PacketTooBig {
            mtu: 1280,
            invoking: &quoted,
        },
    );
    h.inject_raw(&p);
    h.none();
    h.ep.send(c, &[9u8; 3000]).unwrap();
    // Nothing was acknowledged, so only what the window allows leaves; still full-sized.
    let r = h.drain();
    assert!(r.iter().any(|s| s.payload.len() == 1440));
}

/// RFC 4443 §3.1 code 4, port unreachable, ends an IPv6 connect as "connection refused"
/// (RFC 1122 §4.2.3.9, Linux's icmpv6_err_convert); code 3, address unreachable, as "host
/// unreachable"; administratively prohibited, source policy failed and reject route as
/// "permission denied" (EACCES; before, "host unreachable"); a code RFC 4443 does not
/// define as EPROTO.
#[test]
fn destination_unreachable_over_ipv6_ends_a_connect() {
    for (code, want) in [
        (4, Error::ConnectionRefused),
        (3, Error::HostUnreachable),
        (1, Error::PermissionDenied),
        (5, Error::PermissionDenied),
        (6, Error::PermissionDenied),
        (7, Error::ProtocolError),
    ] {
        let mut h = Harness::new(config());
        let peer = SocketAddr::new(PEER6, 443);
        let c = h.ep.connect(h.now, peer).unwrap();
        let syn = h.one();
        let quoted = h.raw.last().unwrap().clone();
        let p = icmpv6_packet(
            v6(PEER6),
            v6(US6),
            IcmpRepr::DstUnreachable {
                code,
                invoking: &quoted,
            },
        );
        h.inject_raw(&p);
        assert_eq!(h.ep.take_error(c).unwrap(), Some(want), "code {code}");
        assert_eq!(syn.src.ip(), US6);
    }
}

/// On an established connection a destination-unreachable is a soft error: reported only
/// if the connection times out later.
#[test]
fn destination_unreachable_over_ipv6_on_an_established_connection_is_soft() {
    let mut cfg = config();
    cfg.data_retries(2);
    let mut h = Harness::new(cfg);
    let (c, us, peer) = established(&mut h);
    h.ep.send(c, b"hello").unwrap();
    let _ = h.drain();
    let quoted = h.raw.last().unwrap()[..48].to_vec();
    let p = icmpv6_packet(
        v6(peer.ip()),
        v6(us.ip()),
        IcmpRepr::DstUnreachable {
            code: 3,
            invoking: &quoted,
        },
    );
    h.inject_raw(&p);
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    h.advance(Duration::from_secs(120));
    assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::HostUnreachable));
}

/// ICMPv6 "no route to destination" (code 0) about SND.UNA reverts the RTO's backoff, as an
/// ICMP net or host unreachable does over IPv4 (RFC 6069; Linux's `tcp_v6_err` calls
/// `tcp_ld_RTO_revert` for `ICMPV6_NOROUTE` since 5.8); port unreachable (code 4) does not.
/// Before, no ICMPv6 error reverted anything.
#[test]
fn no_route_over_ipv6_reverts_the_rto_backoff() {
    let mut h = Harness::new(config());
    let (c, us, peer) = established(&mut h);
    h.ep.send(c, b"hello").unwrap();
    let _ = h.drain();
    let rto = h.ep.info(h.now, c).unwrap().rto;
    let backoff = |h: &Harness| h.ep.info(h.now, c).unwrap().backoff;
    let unreachable = |h: &mut Harness, code: u8| {
        let quoted = h.raw.last().unwrap()[..60].to_vec();
        let p = icmpv6_packet(
            v6(peer.ip()),
            v6(us.ip()),
            IcmpRepr::DstUnreachable {
                code,
                invoking: &quoted,
            },
        );
        h.inject_raw(&p);
        let _ = h.drain();
    };
    let (t1, r) = h.next_timeout();
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(backoff(&h), 1);
    // Port unreachable is only a soft error: still backed off.
    h.advance(rto / 4);
    unreachable(&mut h, 4);
    assert_eq!(backoff(&h), 1);
    // No route: the next retransmission one RTO after the last, not two.
    unreachable(&mut h, 0);
    assert_eq!(backoff(&h), 0);
    let (t2, r) = h.next_timeout();
    assert_eq!((t2 - t1, r.len()), (rto, 1), "{r:?}");
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
}

/// What Linux sends on a new IPv6 link before anyone asks: a router solicitation (RFC 4861
/// §6.3.7) to all-routers, and MLDv2 reports (RFC 3810 §5.2) to all-MLDv2-routers behind a
/// Hop-by-Hop header with the Router Alert option, both from its link-local address. None of
/// it is for the stack: dropped, counted, unanswered.
#[test]
fn router_solicitations_and_mld_reports_are_dropped_and_counted() {
    let mut h = Harness::new(config());
    let link_local: Ipv6Addr = "fe80::1234:5678:9abc:def0".parse().unwrap();
    let all_routers: Ipv6Addr = "ff02::2".parse().unwrap();
    let all_mldv2: Ipv6Addr = "ff02::16".parse().unwrap();
    let rs = icmpv6_packet(
        link_local,
        all_routers,
        IcmpRepr::Other {
            icmp_type: 133,
            code: 0,
        },
    );
    h.inject_raw(&rs);
    // MLDv2 report: type 143, a record count of 1, one record (type 4, change to exclude,
    // group ff02::1:ff00:2), behind Hop-by-Hop with Router Alert (RFC 2711) and PadN.
    let mut mld = vec![143u8, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0];
    mld.extend_from_slice(&"ff02::1:ff00:2".parse::<Ipv6Addr>().unwrap().octets());
    let pseudo =
        checksum::pseudo_header_v6(link_local, all_mldv2, IpProtocol::Icmpv6, mld.len() as u32);
    let sum = checksum::finish(pseudo + checksum::partial(&mld));
    mld[2..4].copy_from_slice(&sum.to_be_bytes());
    let hbh = [58u8, 0, 5, 2, 0, 0, 1, 0];
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&((hbh.len() + mld.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1]); // next header Hop-by-Hop, hop limit 1
    p.extend_from_slice(&link_local.octets());
    p.extend_from_slice(&all_mldv2.octets());
    p.extend_from_slice(&hbh);
    p.extend_from_slice(&mld);
    h.inject_raw(&p);

    let _ = h.drain();
    assert!(h.raw.is_empty(), "answered: {:?}", h.raw);
    let s = h.ep.stats();
    assert_eq!(s.packets_in, 2);
    assert_eq!(s.drop_not_for_us, 2, "{s:?}");
}
