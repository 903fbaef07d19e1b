//! UDP in virtual time over the test kit's `Pair`: round trips over both families, connected
//! sockets, port unreachable both ways, the checksum rules, hostile datagrams, bounded
//! queues, intercept mode's catch-all queue and the ICMP rate limit.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use synack_core::endpoint::{ipv4_mapped, UDP_MAX_PAYLOAD};
use synack_core::testing::{deliver, drain, udp_datagram, Pair};
use synack_core::wire::{self, IcmpRepr, IpProtocol, IpRepr};
use synack_core::{Config, Endpoint, Error, Event, InterceptConfig, UdpHandle, Unreachable};

const C6: &str = "2001:2::1";
const S6: &str = "2001:2::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// A `Pair` whose ends own an IPv6 address beside their IPv4 one, each end with its config.
fn dual(client: Config, server: Config) -> Pair {
    let mut p = Pair::with_configs(client.clone(), server.clone());
    p.client = Endpoint::new(client, &[Pair::CLIENT, ip(C6)]);
    p.server = Endpoint::new(server, &[Pair::SERVER, ip(S6)]);
    p
}

fn pair() -> Pair {
    dual(Config::default(), Config::default())
}

fn events(ep: &mut Endpoint) -> Vec<Event> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

fn recv(ep: &mut Endpoint, h: UdpHandle) -> Result<(Vec<u8>, SocketAddr), Error> {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = ep.udp_recv_from(h, &mut buf)?;
    Ok((buf[..n].to_vec(), from))
}

/// Everything the client sends, taken off the wire instead of delivered.
fn take_client_packets(p: &mut Pair) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    drain(&mut p.client, p.now, &mut buf, |pkt, _| {
        out.push(pkt.to_vec());
        std::ops::ControlFlow::Continue(())
    });
    out
}

/// A UDP/IP packet built by hand (the test kit's, TTL 64).
fn datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_datagram(src, dst, payload, 64)
}

// -----------------------------------------------------------------------------------------
// Round trips
// -----------------------------------------------------------------------------------------

fn round_trip(server_ip: IpAddr, any: &str) {
    let mut p = pair();
    let server = p.server.udp_bind(sa(server_ip, 53)).unwrap();
    let client = p.client.udp_bind(any.parse().unwrap()).unwrap();
    let dst = sa(server_ip, 53);
    for size in [
        0,
        1,
        100,
        1000,
        p.client.udp_max_payload(server_ip.is_ipv6()),
    ] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        assert_eq!(p.client.udp_send_to(client, dst, &data), Ok(size));
        p.pump();
        assert!(events(&mut p.server).contains(&Event::UdpReadable(server)));
        // A peek leaves the datagram for the receive after it.
        let mut peeked = vec![0u8; 2048];
        let (n, peek_from) = p.server.udp_peek_from(server, &mut peeked).unwrap();
        assert_eq!(&peeked[..n], &data[..]);
        let (got, from) = recv(&mut p.server, server).unwrap();
        assert_eq!(got, data);
        assert_eq!(from, peek_from);
        assert_eq!(
            from.ip(),
            p.client.addresses()[usize::from(server_ip.is_ipv6())]
        );
        assert_eq!(from.port(), p.client.udp_local_addr(client).unwrap().port());
        // The reply.
        assert_eq!(p.server.udp_send_to(server, from, &data), Ok(size));
        p.pump();
        assert_eq!(recv(&mut p.client, client), Ok((data, dst)));
        assert_eq!(recv(&mut p.client, client), Err(Error::WouldBlock));
    }
    let s = p.server.stats();
    assert_eq!((s.udp_datagrams_in, s.udp_datagrams_out), (5, 5));
    assert_eq!(p.server.memory(), 0, "read datagrams release their memory");
}

#[test]
fn round_trip_v4() {
    round_trip(Pair::SERVER, "0.0.0.0:0");
}

#[test]
fn round_trip_v6() {
    round_trip(ip(S6), "[::]:0");
}

#[test]
fn hop_limit_marks_a_sockets_datagrams_in_both_families() {
    let mut p = pair();
    for (any, dst) in [
        ("0.0.0.0:0", sa(Pair::SERVER, 9)),
        ("[::]:0", sa(ip(S6), 9)),
    ] {
        let c = p.client.udp_bind(any.parse().unwrap()).unwrap();
        assert_eq!(p.client.udp_hop_limit(c), Ok(64));
        p.client.udp_send_to(c, dst, b"default").unwrap();
        p.client.udp_set_hop_limit(c, 3).unwrap();
        assert_eq!(p.client.udp_hop_limit(c), Ok(3));
        p.client.udp_send_to(c, dst, b"three").unwrap();
        let hops: Vec<u8> = take_client_packets(&mut p)
            .iter()
            .map(|pkt| wire::ip::parse(pkt).expect("valid IP").0.hop_limit())
            .collect();
        assert_eq!(hops, [64, 3], "{any}");
        p.client.udp_close(c).unwrap();
    }
}

#[test]
fn tos_marks_a_sockets_datagrams_ecn_bits_included() {
    let mut p = pair();
    for (any, dst) in [
        ("0.0.0.0:0", sa(Pair::SERVER, 7)),
        ("[::]:0", sa(ip(S6), 7)),
    ] {
        let s = p.server.udp_bind(sa(dst.ip(), 7)).unwrap();
        let c = p.client.udp_bind(any.parse().unwrap()).unwrap();
        assert_eq!(p.client.udp_tos(c), Ok(0));
        p.client.udp_send_to(c, dst, b"plain").unwrap();
        // DSCP EF (46) with ECT(0): a UDP socket's ECN bits are its own, unlike TCP's.
        p.client.udp_set_tos(c, 0xb8 | 0b10).unwrap();
        assert_eq!(p.client.udp_tos(c), Ok(0xba));
        p.client.udp_send_to(c, dst, b"marked").unwrap();
        let packets = take_client_packets(&mut p);
        let ds: Vec<u8> = packets.iter().map(|pkt| wire::ip::ds_field(pkt)).collect();
        assert_eq!(ds, [0, 0xba], "{any}");
        // Still valid datagrams (the IPv4 header checksum was redone): both arrive.
        for pkt in &packets {
            deliver(&mut p.server, p.now, pkt);
        }
        assert_eq!(recv(&mut p.server, s).unwrap().0, b"plain");
        assert_eq!(recv(&mut p.server, s).unwrap().0, b"marked");
        p.client.udp_close(c).unwrap();
        p.server.udp_close(s).unwrap();
    }
}

#[test]
fn ipv6_datagrams_carry_their_flows_label() {
    let mut p = pair();
    let a = p.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    let b = p.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    let dst = sa(ip(S6), 53);
    for _ in 0..2 {
        p.client.udp_send_to(a, dst, b"query").unwrap();
    }
    p.client.udp_send_to(b, dst, b"query").unwrap();
    let v4 = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    p.client
        .udp_send_to(v4, sa(Pair::SERVER, 53), b"query")
        .unwrap();
    let labels: Vec<u32> = take_client_packets(&mut p)
        .iter()
        .map(|pkt| wire::ip::flow_label(pkt))
        .collect();
    assert_eq!(labels.len(), 4);
    assert!(
        labels[0] != 0 && labels[0] == labels[1],
        "one flow, one label: {labels:?}"
    );
    assert!(
        labels[2] != 0 && labels[2] != labels[0],
        "another flow: {labels:?}"
    );
    assert_eq!(labels[3], 0, "IPv4 has none");
}

/// Past the MTU a datagram goes in fragments, each within the MTU, and comes out whole at
/// the other end; past what the length fields allow it is `MessageTooLong` (EMSGSIZE).
#[test]
fn datagrams_past_the_mtu_go_in_fragments() {
    let mut p = pair();
    let c = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let c6 = p.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    let s = p.server.udp_bind(sa(Pair::SERVER, 9)).unwrap();
    let s6 = p.server.udp_bind(sa(ip(S6), 9)).unwrap();
    assert_eq!(p.client.udp_max_payload(false), 1472);
    assert_eq!(p.client.udp_max_payload(true), 1452);
    let mut sent_fragments = 0;
    for (sock, server, dst, max) in [
        (c, s, sa(Pair::SERVER, 9), UDP_MAX_PAYLOAD[0]),
        (c6, s6, sa(ip(S6), 9), UDP_MAX_PAYLOAD[1]),
    ] {
        for size in [1453, 1473, 3000, max] {
            let data: Vec<u8> = (0..size).map(|i| (i * 13 + size) as u8).collect();
            assert_eq!(p.client.udp_send_to(sock, dst, &data), Ok(size));
            let pieces = take_client_packets(&mut p);
            let mtu = p.client.config().get_mtu();
            assert!(
                pieces.iter().all(|q| q.len() <= mtu),
                "a piece past the MTU"
            );
            if size > p.client.udp_max_payload(dst.is_ipv6()) {
                assert!(pieces.len() > 1, "{size}: {} packet", pieces.len());
                sent_fragments += pieces.len() - 1;
            }
            // Delivered last first: reassembly takes them in any order.
            for piece in pieces.iter().rev() {
                deliver(&mut p.server, p.now, piece);
            }
            let got = recv(&mut p.server, server).unwrap();
            assert_eq!(got.0.len(), size);
            assert!(got.0 == data, "{size} bytes came out changed");
        }
        let big = vec![0u8; max + 1];
        assert_eq!(
            p.client.udp_send_to(sock, dst, &big),
            Err(Error::MessageTooLong)
        );
    }
    let (cs, ss) = (p.client.stats(), p.server.stats());
    assert_eq!(cs.fragments_sent, sent_fragments as u64);
    assert_eq!(ss.fragments_reassembled, 7);
    assert_eq!(p.server.memory_usage().reassembly, 0, "nothing held after");
    // Families must match the socket's (Linux's EAFNOSUPPORT).
    assert_eq!(
        p.client.udp_send_to(c, sa(ip(S6), 9), b"x"),
        Err(Error::AddressFamilyNotSupported)
    );
}

#[test]
fn bind_rules() {
    let mut p = pair();
    let ep = &mut p.server;
    let a = ep.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    assert_eq!(ep.udp_bind(sa(Pair::SERVER, 53)), Err(Error::AddrInUse));
    assert_eq!(
        ep.udp_bind("0.0.0.0:53".parse().unwrap()),
        Err(Error::AddrInUse)
    );
    // Another family, another port namespace; TCP's ports are apart too.
    ep.udp_bind("[::]:53".parse().unwrap()).unwrap();
    ep.listen(sa(Pair::SERVER, 53), 4).unwrap();
    assert_eq!(
        ep.udp_bind(sa(ip("198.19.0.1"), 53)),
        Err(Error::AddrNotAvailable),
        "not ours, and no intercept mode"
    );
    let e1 = ep.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let e2 = ep.udp_bind(sa(Pair::SERVER, 0)).unwrap();
    let (p1, p2) = (
        ep.udp_local_addr(e1).unwrap().port(),
        ep.udp_local_addr(e2).unwrap().port(),
    );
    assert!((32768..=60999).contains(&p1) && (32768..=60999).contains(&p2));
    assert_ne!(p1, p2);
    ep.udp_close(a).unwrap();
    assert_eq!(ep.udp_close(a), Err(Error::InvalidHandle));
    let again = ep.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    assert_ne!(again, a, "a stale handle never names a later socket");
    assert_eq!(ep.udp_local_addr(a), Err(Error::InvalidHandle));
    assert_eq!(ep.udp_peer_addr(again), Err(Error::NotConnected));
    // Linux's EDESTADDRREQ, of kind NotConnected.
    assert_eq!(ep.udp_send(again, b"x"), Err(Error::DestinationRequired));
    assert_eq!(
        Error::DestinationRequired.kind(),
        std::io::ErrorKind::NotConnected
    );
}

// -----------------------------------------------------------------------------------------
// Connected sockets and port unreachable
// -----------------------------------------------------------------------------------------

#[test]
fn a_connected_socket_receives_only_from_its_peer() {
    let mut p = pair();
    let server = p.server.udp_bind(sa(Pair::SERVER, 7)).unwrap();
    let a = p.client.udp_bind(sa(Pair::CLIENT, 1000)).unwrap();
    let b = p.client.udp_bind(sa(Pair::CLIENT, 2000)).unwrap();
    p.server
        .udp_connect(server, sa(Pair::CLIENT, 1000))
        .unwrap();
    assert_eq!(p.server.udp_peer_addr(server), Ok(sa(Pair::CLIENT, 1000)));
    p.client
        .udp_send_to(b, sa(Pair::SERVER, 7), b"from b")
        .unwrap();
    p.client
        .udp_send_to(a, sa(Pair::SERVER, 7), b"from a")
        .unwrap();
    p.pump();
    assert_eq!(
        recv(&mut p.server, server),
        Ok((b"from a".to_vec(), sa(Pair::CLIENT, 1000)))
    );
    assert_eq!(recv(&mut p.server, server), Err(Error::WouldBlock));
    // b's datagram found no socket: port unreachable, which b (unconnected) does not hear.
    let s = p.server.stats();
    assert_eq!((s.drop_udp_no_socket, s.udp_port_unreachable_sent), (1, 1));
    assert_eq!(recv(&mut p.client, b), Err(Error::WouldBlock));
    // Connected: send goes to the peer.
    p.server.udp_send(server, b"back").unwrap();
    p.pump();
    assert_eq!(
        recv(&mut p.client, a),
        Ok((b"back".to_vec(), sa(Pair::SERVER, 7)))
    );
}

/// A connect to port 0 is taken, as Linux's: the peer reads `NotConnected`, the socket
/// receives from the peer's address at any port and from no other address, and a send goes
/// to port 0, whose port unreachable fails the next call, once. Sending to port 0 by
/// address is still `InvalidInput` (EINVAL). Linux 6.18 in `unshare -n` (python3): connect
/// succeeds, getpeername ENOTCONN, send succeeds, the next recv ECONNREFUSED, sendto to
/// port 0 EINVAL, and a reconnect to a port gives getpeername back.
#[test]
fn a_connect_to_port_zero_is_taken_as_linux_takes_it() {
    for (server_ip, any, other) in [
        (Pair::SERVER, "0.0.0.0:0", "198.18.0.77"),
        (ip(S6), "[::]:0", "2001:2::77"),
    ] {
        let mut p = pair();
        let c = p.client.udp_bind(any.parse().unwrap()).unwrap();
        assert_eq!(p.client.udp_connect(c, sa(server_ip, 0)), Ok(()));
        assert_eq!(p.client.udp_peer_addr(c), Err(Error::NotConnected));
        let local = p.client.udp_local_addr(c).unwrap();
        assert_eq!(
            local.ip(),
            p.client.addresses()[usize::from(server_ip.is_ipv6())]
        );
        assert_eq!(
            p.client.udp_send_to(c, sa(server_ip, 0), b"x"),
            Err(Error::InvalidInput)
        );
        // From the peer's address at any port, yes; from another address, no.
        for (from, taken) in [(sa(server_ip, 5353), true), (sa(ip(other), 5353), false)] {
            deliver(&mut p.client, p.now, &datagram(from, local, b"hi"));
            let got = recv(&mut p.client, c);
            match taken {
                true => assert_eq!(got, Ok((b"hi".to_vec(), from)), "{from}"),
                false => assert_eq!(got, Err(Error::WouldBlock), "{from}"),
            }
        }
        // (The other address's datagram found no socket: the port unreachable it drew.)
        assert_eq!(take_client_packets(&mut p).len(), 1);
        // The send goes to port 0, where nothing is: port unreachable, reported once.
        assert_eq!(p.client.udp_send(c, b"to zero"), Ok(7));
        let sent = take_client_packets(&mut p);
        assert_eq!(sent.len(), 1);
        let (ip_repr, udp) = wire::ip::parse(&sent[0]).unwrap();
        let udp = wire::UdpPacket::new_checked(udp).unwrap();
        assert_eq!((ip_repr.dst_addr(), udp.dst_port()), (server_ip, 0));
        deliver(&mut p.server, p.now, &sent[0]);
        p.pump();
        assert_eq!(p.server.stats().udp_port_unreachable_sent, 1);
        // A send_to refused for its argument leaves the pending error for the next call,
        // as Linux's EINVAL comes before `sock_error`.
        assert_eq!(
            p.client.udp_send_to(c, sa(server_ip, 0), b"x"),
            Err(Error::InvalidInput)
        );
        assert_eq!(recv(&mut p.client, c), Err(Error::ConnectionRefused));
        assert_eq!(recv(&mut p.client, c), Err(Error::WouldBlock));
        // A connect to a port gives the peer back.
        p.client.udp_connect(c, sa(server_ip, 53)).unwrap();
        assert_eq!(p.client.udp_peer_addr(c), Ok(sa(server_ip, 53)));
    }
}

/// A connect to a link-local peer (fe80::/10, or an interface- or link-local group)
/// without a scope id is `InvalidInput`, as Linux's `__ip6_datagram_connect` fails with
/// EINVAL; with one it connects and shows the scope id back on the peer (not on a global
/// address, where Linux ignores it), and its datagrams still go. Sending to one without a
/// scope id is fine, as on Linux (a route picks the link). Linux 6.18 in `unshare -n`
/// (python3 over a veth of index 3): connect to fe80::1, ff02::1, ff01::1 EINVAL, ff05::1 ok;
/// with scope 3 getpeername ('fe80::1', 7, 0, 3); 2001:2::5 with scope 3 reads back scope 0.
#[test]
fn a_link_local_connect_needs_a_scope_id() {
    let mut p = pair();
    let c = p.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    for unscoped in ["[fe80::1]:7", "[febf::1]:7", "[ff02::1]:7", "[ff01::1]:7"] {
        let to: SocketAddr = unscoped.parse().unwrap();
        assert_eq!(
            p.client.udp_connect(c, to),
            Err(Error::InvalidInput),
            "{to}"
        );
        assert_eq!(p.client.udp_peer_addr(c), Err(Error::NotConnected));
    }
    p.client
        .udp_connect(c, "[ff05::1]:7".parse().unwrap())
        .unwrap();
    let global = std::net::SocketAddrV6::new(ip(S6).to_string().parse().unwrap(), 7, 0, 3);
    p.client.udp_connect(c, global.into()).unwrap();
    assert_eq!(p.client.udp_peer_addr(c), Ok(sa(ip(S6), 7)));
    let link = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 7, 0, 3);
    p.client.udp_connect(c, link.into()).unwrap();
    assert_eq!(p.client.udp_peer_addr(c), Ok(link.into()));
    assert_eq!(p.client.udp_send(c, b"x"), Ok(1));
    let u = p.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    assert_eq!(
        p.client
            .udp_send_to(u, "[fe80::1]:7".parse().unwrap(), b"x"),
        Ok(1)
    );
}

fn refused(server_ip: IpAddr, any: &str) {
    let mut p = pair();
    let c = p.client.udp_bind(any.parse().unwrap()).unwrap();
    p.client.udp_connect(c, sa(server_ip, 9999)).unwrap();
    assert_eq!(
        p.client.udp_local_addr(c).unwrap().ip(),
        p.client.addresses()[usize::from(server_ip.is_ipv6())],
        "connect picks the source address"
    );
    p.client.udp_send(c, b"anyone?").unwrap();
    p.pump();
    // Our ICMP out...
    let s = p.server.stats();
    assert_eq!((s.drop_udp_no_socket, s.udp_port_unreachable_sent), (1, 1));
    // ... and theirs in: the connected socket's next operation fails, once.
    assert!(events(&mut p.client).contains(&Event::UdpReadable(c)));
    assert_eq!(recv(&mut p.client, c), Err(Error::ConnectionRefused));
    assert_eq!(recv(&mut p.client, c), Err(Error::WouldBlock));
    p.client.udp_send(c, b"again").unwrap();
    p.pump();
    assert_eq!(p.client.udp_send(c, b"x"), Err(Error::ConnectionRefused));
    assert!(p.client.udp_send(c, b"x").is_ok());
}

#[test]
fn port_unreachable_refuses_a_connected_socket_v4() {
    refused(Pair::SERVER, "0.0.0.0:0");
}

#[test]
fn port_unreachable_refuses_a_connected_socket_v6() {
    refused(ip(S6), "[::]:0");
}

#[test]
fn port_unreachable_quotes_the_datagram() {
    let mut p = pair();
    let c = p.client.udp_bind(sa(Pair::CLIENT, 5000)).unwrap();
    p.client
        .udp_send_to(c, sa(Pair::SERVER, 9), b"quote me")
        .unwrap();
    let sent = take_client_packets(&mut p).remove(0);
    // Padded to an Ethernet minimum frame on the way: the quote is the datagram, not the
    // padding (Linux trims to the IP length first, `pskb_trim_rcsum`; it used to be quoted).
    let mut padded = sent.clone();
    padded.resize(sent.len().max(46) + 4, 0);
    deliver(&mut p.server, p.now, &padded);
    let mut buf = vec![0u8; 2048];
    let t = p
        .server
        .poll_transmit(p.now, &mut buf)
        .expect("an ICMP error");
    let (ipr, payload) = wire::ip::parse(&buf[..t.len]).unwrap();
    assert_eq!(
        (ipr.src_addr(), ipr.dst_addr()),
        (Pair::SERVER, Pair::CLIENT)
    );
    match IcmpRepr::parse_v4(payload).unwrap() {
        IcmpRepr::DstUnreachable { code, invoking } => {
            assert_eq!(code, 3, "RFC 792: port unreachable");
            assert_eq!(invoking, &sent[..]);
        }
        other => panic!("{other:?}"),
    }
}

/// Port unreachables keep Linux's ICMP limits: a burst of 6 to one destination, then one a
/// second (`icmpv4_xrlim_allow`), before the endpoint's global bucket. One peer drew 50
/// at once and then 1000 a second before, and a scan of closed ports was answered at that
/// rate.
#[test]
fn port_unreachable_is_rate_limited() {
    let mut p = pair();
    let c = p.client.udp_bind(sa(Pair::CLIENT, 5000)).unwrap();
    for _ in 0..100 {
        p.client.udp_send_to(c, sa(Pair::SERVER, 9), b"x").unwrap();
    }
    p.pump();
    let s = p.server.stats().clone();
    assert_eq!(s.drop_udp_no_socket, 100);
    assert_eq!(s.udp_port_unreachable_sent, 6, "a burst of 6 to one peer");
    assert_eq!(s.udp_port_unreachable_limited, 94);
    // One a second: 10 ms earns nothing, a second one more.
    p.now += Duration::from_millis(10);
    p.client.udp_send_to(c, sa(Pair::SERVER, 9), b"x").unwrap();
    p.pump();
    assert_eq!(p.server.stats().udp_port_unreachable_sent, 6);
    p.now += Duration::from_secs(1);
    for _ in 0..20 {
        p.client.udp_send_to(c, sa(Pair::SERVER, 9), b"x").unwrap();
    }
    p.pump();
    let s = p.server.stats();
    assert_eq!(s.udp_port_unreachable_sent, 7);
    assert_eq!(s.udp_port_unreachable_limited, 114);
}

/// A Packet Too Big (IPv4: fragmentation needed) from `router` to `to`, quoting `packet`.
fn too_big(router: IpAddr, to: IpAddr, mtu: u32, packet: &[u8]) -> Vec<u8> {
    let quote = &packet[..packet.len().min(if to.is_ipv6() { 1232 } else { 548 })];
    let icmp = IcmpRepr::PacketTooBig {
        mtu,
        invoking: quote,
    };
    let proto = if to.is_ipv6() {
        IpProtocol::Icmpv6
    } else {
        IpProtocol::Icmp
    };
    let ip = IpRepr::new(router, to, proto, icmp.buffer_len(), 64).unwrap();
    let mut out = vec![0u8; ip.buffer_len()];
    let hl = ip.header_len();
    ip.emit(&mut out[..hl]);
    match (router, to) {
        (IpAddr::V6(r), IpAddr::V6(t)) => icmp.emit_v6(&mut out[hl..], r, t),
        _ => icmp.emit_v4(&mut out[hl..]),
    }
    out
}

/// UDP path MTU discovery, as Linux's `IP_PMTUDISC_WANT` default: a datagram that fits the
/// link goes whole (IPv4 with DF); a router's Packet Too Big quoting it lowers the path MTU
/// to that destination, and later datagrams to it larger than that go in fragments that
/// fit, for ten minutes; other destinations keep the link's MTU, and a report for a port
/// no socket of ours sent from is ignored. Before, such datagrams were lost at that hop
/// every time (IPv6 routers never fragment, and IPv4's DF forbade it).
#[test]
fn a_datagram_too_big_for_the_path_goes_in_fragments_after_the_report() {
    for (client, server, router, mtu) in [
        (Pair::CLIENT, Pair::SERVER, ip("198.18.0.254"), 1000usize),
        (ip(C6), ip(S6), ip("2001:2::fe"), 1280),
    ] {
        let mut p = pair();
        let c = p.client.udp_bind(sa(client, 5000)).unwrap();
        let payload = vec![7u8; 1400];
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        let first = take_client_packets(&mut p);
        assert_eq!(first.len(), 1, "whole, within the link's MTU");
        if client.is_ipv4() {
            assert_ne!(first[0][6] & 0x40, 0, "DF");
        }
        // A report for a port no socket sent from changes nothing.
        let mut other = first[0].clone();
        let hl = if client.is_ipv6() { 40 } else { 20 };
        other[hl..hl + 2].copy_from_slice(&5001u16.to_be_bytes());
        deliver(
            &mut p.client,
            p.now,
            &too_big(router, client, mtu as u32, &other),
        );
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        assert_eq!(take_client_packets(&mut p).len(), 1, "{client}: not ours");
        // The router's report about our datagram.
        deliver(
            &mut p.client,
            p.now,
            &too_big(router, client, mtu as u32, &first[0]),
        );
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        let pieces = take_client_packets(&mut p);
        assert_eq!(pieces.len(), 2, "{client}: in fragments");
        assert!(pieces.iter().all(|f| f.len() <= mtu), "{client}");
        // They arrive as the datagram.
        let s = p.server.udp_bind(sa(server, 9000)).unwrap();
        for f in &pieces {
            deliver(&mut p.server, p.now, f);
        }
        assert_eq!(recv(&mut p.server, s).unwrap().0, payload);
        // A small one still goes whole, and another destination keeps the link's MTU.
        p.client
            .udp_send_to(c, sa(server, 9000), &[1u8; 500])
            .unwrap();
        assert_eq!(take_client_packets(&mut p).len(), 1);
        let elsewhere = if client.is_ipv6() {
            ip("2001:2::3")
        } else {
            ip("198.18.0.3")
        };
        p.client
            .udp_send_to(c, sa(elsewhere, 9000), &payload)
            .unwrap();
        assert_eq!(take_client_packets(&mut p).len(), 1, "{client}: elsewhere");
        // Ten minutes on, the path is tried at the link's MTU again.
        p.now += Duration::from_secs(601);
        deliver(
            &mut p.client,
            p.now,
            &datagram(sa(server, 9), sa(client, 4), b"x"),
        );
        let _ = take_client_packets(&mut p);
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        assert_eq!(take_client_packets(&mut p).len(), 1, "{client}: expired");
    }
}

/// A datagram larger than the link leaves in pieces; a router with a smaller MTU quotes the
/// first piece in its Packet Too Big, the UDP header behind a Fragment header (IPv6). That
/// report is taken as one about the whole datagram (Linux's `icmpv6_notify` steps over a
/// Fragment header at offset 0): the next datagram goes in pieces that fit the path. Before,
/// the quote was not read, the report was counted malformed, and every datagram that size
/// was lost at that hop for good. An error from a group or broadcast address is no router's
/// and changes nothing.
#[test]
fn a_report_quoting_the_first_piece_lowers_the_path_mtu() {
    for (client, server, router, mtu) in [
        (Pair::CLIENT, Pair::SERVER, ip("198.18.0.254"), 1000usize),
        (ip(C6), ip(S6), ip("2001:2::fe"), 1280),
    ] {
        let mut p = pair();
        let c = p.client.udp_bind(sa(client, 5000)).unwrap();
        let payload = vec![9u8; 3000];
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        let first = take_client_packets(&mut p);
        assert_eq!(first.len(), 3, "{client}: in pieces of the link's MTU");
        assert!(first.iter().any(|f| f.len() > mtu), "{client}");
        let before = p.client.stats().drop_malformed;
        // From a group (or, for IPv4, the limited broadcast address): ignored.
        let group = if client.is_ipv6() {
            ip("ff02::1")
        } else {
            ip("255.255.255.255")
        };
        deliver(
            &mut p.client,
            p.now,
            &too_big(group, client, mtu as u32, &first[0]),
        );
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        let again = take_client_packets(&mut p);
        assert!(
            again.iter().any(|f| f.len() > mtu),
            "{client}: from {group}"
        );
        // From the router: taken.
        deliver(
            &mut p.client,
            p.now,
            &too_big(router, client, mtu as u32, &first[0]),
        );
        assert_eq!(p.client.stats().drop_malformed, before, "{client}");
        p.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        let pieces = take_client_packets(&mut p);
        assert!(
            pieces.iter().all(|f| f.len() <= mtu),
            "{client}: smaller pieces"
        );
        let s = p.server.udp_bind(sa(server, 9000)).unwrap();
        for f in &pieces {
            deliver(&mut p.server, p.now, f);
        }
        assert_eq!(recv(&mut p.server, s).unwrap().0, payload, "{client}");
        // A report quoting a later piece names no socket: nothing changes.
        let mut q = pair();
        let c = q.client.udp_bind(sa(client, 5000)).unwrap();
        q.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        let first = take_client_packets(&mut q);
        deliver(
            &mut q.client,
            q.now,
            &too_big(router, client, mtu as u32, &first[1]),
        );
        q.client.udp_send_to(c, sa(server, 9000), &payload).unwrap();
        assert_eq!(
            take_client_packets(&mut q).len(),
            3,
            "{client}: later piece"
        );
    }
}

/// In intercept mode a relay answers from the flow's original destination with no socket
/// (`udp_send_from`); a Packet Too Big about such an answer lowers the path MTU to the
/// client all the same, as it would a TPROXY relay's transparent socket's route: the next
/// large answer goes in pieces that fit. Outside intercept mode a socketless datagram's
/// report names nothing of ours and is ignored.
#[test]
fn a_relays_answer_too_big_for_the_path_goes_in_fragments_after_the_report() {
    for (origin, client, router, mtu) in [
        ("198.19.7.9", Pair::SERVER, "198.18.0.254", 1000usize),
        ("2001:2::99", ip(S6), "2001:2::fe", 1280),
    ] {
        for intercept in [true, false] {
            let mut c = Config::default();
            if intercept {
                c.intercept(Some(InterceptConfig::default()));
            }
            let mut p = dual(c, Config::default());
            let from = if intercept {
                sa(ip(origin), 53)
            } else if client.is_ipv6() {
                sa(ip(C6), 53)
            } else {
                sa(Pair::CLIENT, 53)
            };
            let to = sa(client, 4000);
            let answer = vec![3u8; 3000];
            p.client.udp_send_from(from, to, &answer).unwrap();
            let first = take_client_packets(&mut p);
            assert!(first.iter().any(|f| f.len() > mtu), "{origin}");
            deliver(
                &mut p.client,
                p.now,
                &too_big(ip(router), from.ip(), mtu as u32, &first[0]),
            );
            p.client.udp_send_from(from, to, &answer).unwrap();
            let again = take_client_packets(&mut p);
            assert_eq!(
                again.iter().all(|f| f.len() <= mtu),
                intercept,
                "{origin}, intercept {intercept}"
            );
        }
    }
}

/// The global bucket cannot be read off the answers (CVE-2020-25705, SAD DNS): datagrams
/// spoofed from a DNS server to a range of closed ports spend only that server's bucket,
/// so an onlooker's own datagram to a closed port is answered whether or not the range held
/// a socket's port. Before, the spoofed datagrams spent the whole global burst of 50, and
/// the onlooker's answer told whether one of them had hit an open port.
#[test]
fn the_icmp_limit_tells_no_onlooker_which_ports_are_open() {
    use synack_core::wire::IpProtocol;
    let server = "198.18.0.53".parse().unwrap();
    let onlooker: std::net::IpAddr = "198.18.0.66".parse().unwrap();
    for open_in_range in [true, false] {
        let mut p = pair();
        let resolver = p.server.udp_bind(sa(Pair::SERVER, 0)).unwrap();
        p.server.udp_connect(resolver, sa(server, 53)).unwrap();
        let open = p.server.udp_local_addr(resolver).unwrap().port();
        let first = if open_in_range { open - 10 } else { open - 200 };
        for port in first..first + 50 {
            let d = datagram(sa(server, 53), sa(Pair::SERVER, port), b"q");
            deliver(&mut p.server, p.now, &d);
        }
        let probe = datagram(sa(onlooker, 4444), sa(Pair::SERVER, 1), b"v");
        deliver(&mut p.server, p.now, &probe);
        let mut buf = vec![0u8; 2048];
        let mut to_onlooker = 0;
        while let Some(t) = p.server.poll_transmit(p.now, &mut buf) {
            let packet = &buf[..t.len];
            let ip = synack_core::wire::ip::parse(packet).unwrap().0;
            if ip.dst_addr() == onlooker && ip.protocol() == IpProtocol::Icmp {
                to_onlooker += 1;
            }
        }
        assert_eq!(to_onlooker, 1, "open port in the range: {open_in_range}");
    }
}

// -----------------------------------------------------------------------------------------
// Checksums and hostile input
// -----------------------------------------------------------------------------------------

fn zero_checksum(server_ip: IpAddr, client_ip: IpAddr) -> (u64, u64) {
    let mut p = pair();
    let s = p.server.udp_bind(sa(server_ip, 53)).unwrap();
    let mut pkt = datagram(sa(client_ip, 4000), sa(server_ip, 53), b"no sum");
    let at = if server_ip.is_ipv6() { 40 } else { 20 } + 6;
    pkt[at..at + 2].fill(0);
    deliver(&mut p.server, p.now, &pkt);
    let got = recv(&mut p.server, s).is_ok();
    (u64::from(got), p.server.stats().drop_checksum)
}

#[test]
fn a_zero_checksum_is_accepted_over_ipv4() {
    // RFC 768: the sender computed no checksum.
    assert_eq!(zero_checksum(Pair::SERVER, Pair::CLIENT), (1, 0));
}

#[test]
fn a_zero_checksum_is_dropped_over_ipv6() {
    // RFC 8200 §8.1.
    assert_eq!(zero_checksum(ip(S6), ip(C6)), (0, 1));
}

#[test]
fn a_bad_checksum_is_dropped_and_counted() {
    for (src, dst) in [(Pair::CLIENT, Pair::SERVER), (ip(C6), ip(S6))] {
        let mut p = pair();
        let s = p.server.udp_bind(sa(dst, 53)).unwrap();
        let mut pkt = datagram(sa(src, 4000), sa(dst, 53), b"payload");
        *pkt.last_mut().unwrap() ^= 0x40;
        deliver(&mut p.server, p.now, &pkt);
        assert_eq!(recv(&mut p.server, s), Err(Error::WouldBlock));
        let st = p.server.stats();
        assert_eq!((st.drop_checksum, st.udp_datagrams_in), (1, 0));
        assert_eq!(st.udp_port_unreachable_sent, 0);
    }
}

#[test]
fn hostile_datagrams_are_dropped_and_counted() {
    let mut p = pair();
    let s = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    let (from, to) = (sa(Pair::CLIENT, 4000), sa(Pair::SERVER, 53));
    let good = datagram(from, to, b"0123456789");
    let mut cases: Vec<Vec<u8>> = Vec::new();
    // The UDP length claims more than the IP payload holds.
    let mut long = good.clone();
    long[24..26].copy_from_slice(&100u16.to_be_bytes());
    cases.push(long);
    // The UDP length below its own header.
    let mut short = good.clone();
    short[24..26].copy_from_slice(&4u16.to_be_bytes());
    cases.push(short);
    // IP payloads of 0 to 7 bytes: no whole UDP header.
    for n in 0..8 {
        let ipr = IpRepr::new(from.ip(), to.ip(), IpProtocol::Udp, n, 64).unwrap();
        let mut pkt = vec![0xa5u8; ipr.buffer_len()];
        ipr.emit(&mut pkt);
        cases.push(pkt);
    }
    let n = cases.len() as u64;
    for pkt in &cases {
        deliver(&mut p.server, p.now, pkt);
    }
    let st = p.server.stats();
    assert_eq!(st.drop_malformed, n);
    assert_eq!(st.udp_datagrams_in, 0);
    assert_eq!(recv(&mut p.server, s), Err(Error::WouldBlock));
    // Trailing bytes past the UDP length are ignored, as Linux does.
    // A datagram summed over its own length, in a longer IP packet.
    let mut trimmed = datagram(from, to, b"0123");
    trimmed.extend_from_slice(b"trailing");
    let total = trimmed.len() as u16;
    trimmed[2..4].copy_from_slice(&total.to_be_bytes());
    trimmed[10..12].fill(0);
    let c = wire::checksum::finish(wire::checksum::partial(&trimmed[..20]));
    trimmed[10..12].copy_from_slice(&c.to_be_bytes());
    deliver(&mut p.server, p.now, &trimmed);
    assert_eq!(recv(&mut p.server, s), Ok((b"0123".to_vec(), from)));
    // A broadcast source.
    let bcast = datagram(sa(ip("255.255.255.255"), 4000), to, b"x");
    deliver(&mut p.server, p.now, &bcast);
    assert_eq!(p.server.stats().drop_malformed, n + 1);
}

/// A group no socket has joined is nobody's (`multicast.rs` has the joined ones); a
/// broadcast is only for a socket bound to the unspecified address on its port: with none
/// it is dropped, neither intercepted nor answered (RFC 1122 §3.2.2: no ICMP error about a
/// datagram to a broadcast address).
#[test]
fn multicast_is_not_ours_and_an_unheard_broadcast_is_neither_caught_nor_answered() {
    let mut c = Config::default();
    c.intercept(Some(InterceptConfig::default()));
    let mut p = dual(Config::default(), c);
    for dst in ["224.0.0.251:5353", "255.255.255.255:67"] {
        let pkt = datagram(sa(Pair::CLIENT, 4000), dst.parse().unwrap(), b"x");
        deliver(&mut p.server, p.now, &pkt);
    }
    let pkt = datagram(sa(ip(C6), 4000), "[ff02::fb]:5353".parse().unwrap(), b"x");
    deliver(&mut p.server, p.now, &pkt);
    let s = p.server.stats();
    assert_eq!((s.drop_not_for_us, s.udp_intercepted), (2, 0));
    assert_eq!((s.drop_udp_no_socket, s.udp_port_unreachable_sent), (1, 0));
}

/// `SO_BROADCAST`: without it a datagram to the limited or the link's broadcast address is
/// `PermissionDenied` (Linux's EACCES); with it, it goes. A broadcast that arrives reaches
/// the socket bound to `0.0.0.0` on its port, with no option (as Linux delivers one), and
/// not a socket bound to the unicast address.
#[test]
fn broadcast_needs_so_broadcast_to_send_and_nothing_to_receive() {
    let link = ip("198.18.0.255");
    let mut sc = Config::default();
    sc.broadcast_addresses([std::net::Ipv4Addr::new(198, 18, 0, 255)]);
    let mut p = dual(sc.clone(), sc);
    let tx = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    assert!(!p.client.udp_broadcast(tx).unwrap());
    for to in [link, ip("255.255.255.255")] {
        assert_eq!(
            p.client.udp_send_to(tx, sa(to, 67), b"x"),
            Err(Error::PermissionDenied)
        );
        assert_eq!(
            p.client.udp_connect(tx, sa(to, 67)),
            Err(Error::PermissionDenied)
        );
    }
    p.client.udp_set_broadcast(tx, true).unwrap();
    assert!(p.client.udp_broadcast(tx).unwrap());
    assert_eq!(
        p.client.udp_send_to(tx, sa(link, 0), b"x"),
        Err(Error::InvalidInput)
    );

    let any = p.server.udp_bind("0.0.0.0:67".parse().unwrap()).unwrap();
    let unicast = p.server.udp_bind(sa(Pair::SERVER, 68)).unwrap();
    for to in [link, ip("255.255.255.255")] {
        assert_eq!(p.client.udp_send_to(tx, sa(to, 67), b"offer"), Ok(5));
        let pkts = take_client_packets(&mut p);
        assert_eq!(pkts.len(), 1);
        let (hdr, _) = wire::ip::parse(&pkts[0]).unwrap();
        assert_eq!((hdr.src_addr(), hdr.dst_addr()), (Pair::CLIENT, to));
        deliver(&mut p.server, p.now, &pkts[0]);
        let (data, from) = recv(&mut p.server, any).unwrap();
        assert_eq!((data.as_slice(), from.ip()), (&b"offer"[..], Pair::CLIENT));
        // To the port the unicast-bound socket holds: not for it.
        assert_eq!(p.client.udp_send_to(tx, sa(to, 68), b"no"), Ok(2));
        for pkt in take_client_packets(&mut p) {
            deliver(&mut p.server, p.now, &pkt);
        }
        assert_eq!(recv(&mut p.server, unicast), Err(Error::WouldBlock));
    }
    assert_eq!(p.server.stats().udp_port_unreachable_sent, 0);
}

/// A broadcast is for this host too: Linux's `ip_mc_output` loops a copy of each back, to
/// the socket on its port (the sender's own included), whether or not the multicast loop
/// is on; the link has it as well.
#[test]
fn a_broadcast_sent_is_looped_back_to_this_host() {
    let link = ip("198.18.0.255");
    let mut c = Config::default();
    c.broadcast_addresses([std::net::Ipv4Addr::new(198, 18, 0, 255)]);
    let mut p = dual(c.clone(), c);
    let tx = p.client.udp_bind("0.0.0.0:67".parse().unwrap()).unwrap();
    let other = p.client.udp_bind("0.0.0.0:68".parse().unwrap()).unwrap();
    p.client.udp_set_broadcast(tx, true).unwrap();
    p.client.udp_set_multicast_loop(tx, false, false).unwrap();
    for to in [link, ip("255.255.255.255")] {
        assert_eq!(p.client.udp_send_to(tx, sa(to, 68), b"hello"), Ok(5));
        assert_eq!(
            recv(&mut p.client, other),
            Ok((b"hello".to_vec(), sa(Pair::CLIENT, 67)))
        );
        assert_eq!(p.client.udp_send_to(tx, sa(to, 67), b"self"), Ok(4));
        assert_eq!(
            recv(&mut p.client, tx),
            Ok((b"self".to_vec(), sa(Pair::CLIENT, 67)))
        );
        assert_eq!(take_client_packets(&mut p).len(), 2);
    }
    // A port nobody holds: the link has it, nothing here answers.
    assert_eq!(p.client.udp_send_to(tx, sa(link, 69), b"x"), Ok(1));
    assert_eq!(take_client_packets(&mut p).len(), 1);
    assert_eq!(p.client.stats().udp_port_unreachable_sent, 0);
}

/// A socket may be bound to a broadcast address, as Linux's `inet_bind` takes one: it then
/// takes the broadcasts to that address only (`compute_score` matches the bound address
/// against the destination), no unicast, and sends from an address of ours.
#[test]
fn a_socket_bound_to_a_broadcast_address_takes_only_its_broadcasts() {
    let link = ip("198.18.0.255");
    let mut c = Config::default();
    c.broadcast_addresses([std::net::Ipv4Addr::new(198, 18, 0, 255)]);
    let mut p = dual(c.clone(), c);
    let on_link = p.server.udp_bind(sa(link, 67)).unwrap();
    let on_all = p
        .server
        .udp_bind("255.255.255.255:68".parse().unwrap())
        .unwrap();
    assert_eq!(p.server.udp_local_addr(on_link), Ok(sa(link, 67)));
    let tx = p.client.udp_bind("0.0.0.0:4000".parse().unwrap()).unwrap();
    p.client.udp_set_broadcast(tx, true).unwrap();
    for (to, port) in [(link, 67), (ip("255.255.255.255"), 67), (link, 68)] {
        p.client.udp_send_to(tx, sa(to, port), b"b").unwrap();
    }
    p.client
        .udp_send_to(tx, sa(ip("255.255.255.255"), 68), b"all")
        .unwrap();
    p.client
        .udp_send_to(tx, sa(Pair::SERVER, 67), b"unicast")
        .unwrap();
    for pkt in take_client_packets(&mut p) {
        deliver(&mut p.server, p.now, &pkt);
    }
    let from = sa(Pair::CLIENT, 4000);
    assert_eq!(recv(&mut p.server, on_link), Ok((b"b".to_vec(), from)));
    assert_eq!(recv(&mut p.server, on_link), Err(Error::WouldBlock));
    assert_eq!(recv(&mut p.server, on_all), Ok((b"all".to_vec(), from)));
    assert_eq!(recv(&mut p.server, on_all), Err(Error::WouldBlock));
    assert_eq!(p.server.stats().drop_udp_no_socket, 3);
    // Connected, it takes its peer's broadcasts alone.
    let stranger = p.client.udp_bind("0.0.0.0:4001".parse().unwrap()).unwrap();
    p.client.udp_set_broadcast(stranger, true).unwrap();
    p.server.udp_connect(on_all, from).unwrap();
    let all = sa(ip("255.255.255.255"), 68);
    p.client.udp_send_to(stranger, all, b"stranger").unwrap();
    p.client.udp_send_to(tx, all, b"peer").unwrap();
    for pkt in take_client_packets(&mut p) {
        deliver(&mut p.server, p.now, &pkt);
    }
    assert_eq!(recv(&mut p.server, on_all), Ok((b"peer".to_vec(), from)));
    assert_eq!(recv(&mut p.server, on_all), Err(Error::WouldBlock));
    // It sends from our address.
    p.server.udp_send_to(on_link, from, b"reply").unwrap();
    let mut buf = vec![0u8; 2048];
    let mut sources = Vec::new();
    drain(&mut p.server, p.now, &mut buf, |pkt, _| {
        let (hdr, _) = wire::ip::parse(pkt).unwrap();
        sources.push(hdr.src_addr());
        std::ops::ControlFlow::Continue(())
    });
    // The port unreachable for the unicast datagram, then the reply.
    assert_eq!(sources, [Pair::SERVER, Pair::SERVER]);
    assert_eq!(p.server.stats().udp_port_unreachable_sent, 1);
}

/// Dual stack, as Linux's default: a socket on `[::]` takes the IPv4 datagrams no IPv4 socket
/// takes, and sees their addresses IPv4-mapped; it answers to a mapped address (or a plain
/// IPv4 one) in IPv4, and may connect to one (then it hears no broadcast). An IPv4 socket
/// on the port wins its datagrams; a socket bound to a particular IPv6 address has no IPv4.
#[test]
fn a_socket_on_the_ipv6_unspecified_address_is_dual_stack() {
    let mut p = pair();
    let server = p.server.udp_bind("[::]:53".parse().unwrap()).unwrap();
    let client = p.client.udp_bind(sa(Pair::CLIENT, 4000)).unwrap();
    let server_v4 = sa(Pair::SERVER, 53);
    let mapped = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    p.client.udp_send_to(client, server_v4, b"query").unwrap();
    p.pump();
    let (data, from) = recv(&mut p.server, server).unwrap();
    assert_eq!(
        (data.as_slice(), from),
        (&b"query"[..], mapped(sa(Pair::CLIENT, 4000)))
    );
    // The answer, to the mapped address and to the plain one: IPv4 on the wire.
    p.server.udp_send_to(server, from, b"answer").unwrap();
    p.server
        .udp_send_to(server, sa(Pair::CLIENT, 4000), b"again")
        .unwrap();
    p.pump();
    assert_eq!(
        recv(&mut p.client, client).unwrap(),
        (b"answer".to_vec(), server_v4)
    );
    assert_eq!(
        recv(&mut p.client, client).unwrap(),
        (b"again".to_vec(), server_v4)
    );
    // A broadcast too, with no IPv4 socket on the port.
    p.client.udp_set_broadcast(client, true).unwrap();
    let all: SocketAddr = "255.255.255.255:53".parse().unwrap();
    p.client.udp_send_to(client, all, b"all").unwrap();
    p.pump();
    assert_eq!(
        recv(&mut p.server, server).unwrap(),
        (b"all".to_vec(), from)
    );
    // Connected to the mapped peer: it reads back mapped, its local address too (the
    // mapped source, as Linux's getsockname after such a connect), and only that peer is
    // heard.
    p.server.udp_connect(server, from).unwrap();
    assert_eq!(p.server.udp_peer_addr(server), Ok(from));
    assert_eq!(p.server.udp_local_addr(server), Ok(mapped(server_v4)));
    p.server.udp_send(server, b"connected").unwrap();
    p.pump();
    assert_eq!(recv(&mut p.client, client).unwrap().0, b"connected");
    let other = p.client.udp_bind(sa(Pair::CLIENT, 4001)).unwrap();
    p.client.udp_send_to(other, server_v4, b"stranger").unwrap();
    p.client.udp_send_to(client, server_v4, b"peer").unwrap();
    p.pump();
    assert_eq!(recv(&mut p.server, server).unwrap().0, b"peer");
    assert_eq!(recv(&mut p.server, server), Err(Error::WouldBlock));
    // But no broadcast now, even from the peer: Linux's connect gave the socket our IPv4
    // address to receive at (checked there, over veth).
    p.client.udp_send_to(client, all, b"all again").unwrap();
    p.pump();
    assert_eq!(recv(&mut p.server, server), Err(Error::WouldBlock));
    // It holds the port on IPv4 now, not on IPv6: `0.0.0.0:53` is taken and an IPv6
    // address's port 53 is free, as on Linux.
    assert_eq!(
        p.server.udp_bind("0.0.0.0:53".parse().unwrap()),
        Err(Error::AddrInUse)
    );
    let six = p.server.udp_bind(sa(ip(S6), 53)).unwrap();
    p.server.udp_close(six).unwrap();
    // An IPv4 socket beside an unconnected `[::]` one takes its IPv4 datagrams.
    let dual55 = p.server.udp_bind("[::]:55".parse().unwrap()).unwrap();
    let v4 = p.server.udp_bind("0.0.0.0:55".parse().unwrap()).unwrap();
    p.client
        .udp_send_to(client, sa(Pair::SERVER, 55), b"to v4")
        .unwrap();
    p.pump();
    assert_eq!(recv(&mut p.server, v4).unwrap().0, b"to v4");
    assert_eq!(recv(&mut p.server, dual55), Err(Error::WouldBlock));
    // Connected to an IPv4 peer, the `[::]` one holds the IPv4 source itself: the IPv4
    // socket's own connect, which would take that address too, is refused and leaves it
    // unconnected, and the connected pair still talks.
    let peer55 = sa(Pair::CLIENT, 4000);
    p.server.udp_connect(dual55, peer55).unwrap();
    assert_eq!(
        p.server.udp_local_addr(dual55),
        Ok(mapped(sa(Pair::SERVER, 55)))
    );
    assert_eq!(p.server.udp_connect(v4, peer55), Err(Error::AddrInUse));
    assert_eq!(
        p.server.udp_local_addr(v4),
        Ok("0.0.0.0:55".parse().unwrap())
    );
    assert_eq!(p.server.udp_peer_addr(v4), Err(Error::NotConnected));
    p.client
        .udp_send_to(client, sa(Pair::SERVER, 55), b"to dual")
        .unwrap();
    p.pump();
    assert_eq!(recv(&mut p.server, dual55).unwrap().0, b"to dual");
    assert_eq!(recv(&mut p.server, v4), Err(Error::WouldBlock));
    // A socket bound to a particular IPv6 address has no IPv4: a datagram to an IPv4
    // address (plain or mapped) is ENETUNREACH, and so is a connect to a mapped one, but a
    // connect to a plain one EAFNOSUPPORT (Linux 6.18, as the kernel test
    // `kernel_udp_family_mismatches_fail_as_on_the_kernel` compares).
    let only6 = p.server.udp_bind(sa(ip(S6), 54)).unwrap();
    let plain = sa(Pair::CLIENT, 4000);
    for to in [from, plain] {
        assert_eq!(
            p.server.udp_send_to(only6, to, b"x"),
            Err(Error::NetworkUnreachable)
        );
    }
    assert_eq!(
        p.server.udp_connect(only6, from),
        Err(Error::NetworkUnreachable)
    );
    assert_eq!(
        p.server.udp_connect(only6, plain),
        Err(Error::AddressFamilyNotSupported)
    );
}

/// An IPv6 socket bound to an IPv4-mapped address binds its IPv4 one, as Linux's does
/// (checked there: a v4 socket on the port is then EADDRINUSE): it receives the IPv4
/// datagrams to it with their senders mapped, sends IPv4 to a mapped or plain IPv4
/// destination, and is EAFNOSUPPORT to a native IPv6 one. `::ffff:0.0.0.0` is every IPv4
/// address. Before, such a bind was `AddrNotAvailable`.
#[test]
fn a_udp_socket_bound_ipv4_mapped_speaks_ipv4() {
    let mut p = pair();
    let mapped = ipv4_mapped;
    let server = p.server.udp_bind(mapped(sa(Pair::SERVER, 53))).unwrap();
    assert_eq!(
        p.server.udp_local_addr(server),
        Ok(mapped(sa(Pair::SERVER, 53)))
    );
    assert_eq!(
        p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap_err(),
        Error::AddrInUse
    );
    assert_eq!(
        p.server
            .udp_bind("0.0.0.0:53".parse().unwrap())
            .unwrap_err(),
        Error::AddrInUse
    );
    let client = p.client.udp_bind(sa(Pair::CLIENT, 4000)).unwrap();
    p.client
        .udp_send_to(client, sa(Pair::SERVER, 53), b"query")
        .unwrap();
    p.pump();
    let (data, from) = recv(&mut p.server, server).unwrap();
    assert_eq!(
        (data.as_slice(), from),
        (&b"query"[..], mapped(sa(Pair::CLIENT, 4000)))
    );
    for to in [from, sa(Pair::CLIENT, 4000)] {
        p.server.udp_send_to(server, to, b"answer").unwrap();
        p.pump();
        assert_eq!(
            recv(&mut p.client, client).unwrap(),
            (b"answer".to_vec(), sa(Pair::SERVER, 53))
        );
    }
    assert_eq!(
        p.server.udp_send_to(server, sa(ip(C6), 4000), b"x"),
        Err(Error::AddressFamilyNotSupported)
    );
    p.server.udp_connect(server, from).unwrap();
    assert_eq!(p.server.udp_peer_addr(server), Ok(from));

    // All IPv4 addresses, mapped: connect picks the IPv4 source, shown mapped.
    let any = p
        .server
        .udp_bind("[::ffff:0.0.0.0]:0".parse().unwrap())
        .unwrap();
    let port = p.server.udp_local_addr(any).unwrap().port();
    assert_ne!(port, 0);
    p.server.udp_connect(any, sa(Pair::CLIENT, 4000)).unwrap();
    assert_eq!(
        p.server.udp_local_addr(any),
        Ok(mapped(sa(Pair::SERVER, port)))
    );
    p.server.udp_send(any, b"from any").unwrap();
    p.pump();
    assert_eq!(
        recv(&mut p.client, client).unwrap(),
        (b"from any".to_vec(), sa(Pair::SERVER, port))
    );
    // A mapped address that is not the stack's is not available.
    assert_eq!(
        p.server
            .udp_bind(mapped(sa(ip("198.18.9.9"), 53)))
            .unwrap_err(),
        Error::AddrNotAvailable
    );
}

/// A datagram to a loopback or 0/8 address, IPv4-mapped or not, is `NetworkUnreachable`, as
/// TCP's connect to one: synack has no loopback link (its own addresses loop back inside it:
/// see `loopback.rs`), so it would go out on the link, which never delivers it. To a family
/// the stack has no address in, too.
#[test]
fn datagrams_to_martian_addresses_are_unreachable() {
    let mut p = pair();
    let v4 = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let v6 = p.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    for (h, to) in [
        (v4, "127.0.0.1:9"),
        (v4, "0.1.2.3:9"),
        (v6, "[::1]:9"),
        (v6, "[::ffff:127.0.0.1]:9"),
    ] {
        let to: SocketAddr = to.parse().unwrap();
        assert_eq!(
            p.client.udp_send_to(h, to, b"x"),
            Err(Error::NetworkUnreachable),
            "{to}"
        );
        assert_eq!(
            p.client.udp_connect(h, to),
            Err(Error::NetworkUnreachable),
            "{to}"
        );
    }
    assert!(
        take_client_packets(&mut p).is_empty(),
        "nothing went on the link"
    );
    let mut v4_only = Pair::new(Config::default());
    let h = v4_only.client.udp_bind("[::]:0".parse().unwrap()).unwrap();
    assert_eq!(
        v4_only.client.udp_send_to(h, sa(ip(S6), 9), b"x"),
        Err(Error::NetworkUnreachable)
    );
}

// -----------------------------------------------------------------------------------------
// Bounds
// -----------------------------------------------------------------------------------------

#[test]
fn a_full_receive_queue_drops_and_counts() {
    let mut sc = Config::default();
    sc.udp_recv_buffer(1000);
    let mut p = dual(Config::default(), sc);
    let s = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    let c = p.client.udp_bind(sa(Pair::CLIENT, 0)).unwrap();
    for _ in 0..10 {
        p.client
            .udp_send_to(c, sa(Pair::SERVER, 53), &[1u8; 200])
            .unwrap();
    }
    p.pump();
    // 200 + 256 charged each: two fit in 1000.
    let st = p.server.stats();
    assert_eq!((st.udp_datagrams_in, st.drop_udp_queue_full), (10, 8));
    assert_eq!(
        p.server.memory(),
        2 * (200 + synack_core::endpoint::DATAGRAM_OVERHEAD)
    );
    assert!(recv(&mut p.server, s).is_ok());
    assert!(recv(&mut p.server, s).is_ok());
    assert_eq!(recv(&mut p.server, s), Err(Error::WouldBlock));
    assert_eq!(p.server.memory(), 0);
    // Closing a socket with datagrams queued releases them.
    p.client
        .udp_send_to(c, sa(Pair::SERVER, 53), &[1u8; 200])
        .unwrap();
    p.pump();
    assert!(p.server.memory() > 0);
    p.server.udp_close(s).unwrap();
    assert_eq!(p.server.memory(), 0);
}

#[test]
fn the_memory_cap_drops_datagrams() {
    let mut sc = Config::default();
    sc.max_memory(1000);
    let mut p = dual(Config::default(), sc);
    let _s = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    let c = p.client.udp_bind(sa(Pair::CLIENT, 0)).unwrap();
    for _ in 0..5 {
        p.client
            .udp_send_to(c, sa(Pair::SERVER, 53), &[1u8; 200])
            .unwrap();
    }
    p.pump();
    assert_eq!(p.server.stats().drop_udp_queue_full, 3);
    assert!(p.server.memory() <= 1000);
}

#[test]
fn sending_is_bounded_by_the_own_packet_queue() {
    let mut p = pair();
    let c = p.client.udp_bind(sa(Pair::CLIENT, 0)).unwrap();
    let mut sent = 0;
    while p.client.udp_send_to(c, sa(Pair::SERVER, 9), b"x") == Ok(1) {
        sent += 1;
        assert!(
            sent <= synack_core::endpoint::SEND_QUEUE_PACKETS,
            "unbounded"
        );
    }
    assert_eq!(sent, synack_core::endpoint::SEND_QUEUE_PACKETS);
    assert_eq!(
        p.client.udp_send_to(c, sa(Pair::SERVER, 9), b"x"),
        Err(Error::WouldBlock)
    );
    let mut buf = vec![0u8; 2048];
    let _ = p.client.poll_transmit(p.now, &mut buf);
    assert!(events(&mut p.client).contains(&Event::UdpWritable));
    assert_eq!(p.client.udp_send_to(c, sa(Pair::SERVER, 9), b"x"), Ok(1));

    // A datagram in three fragments waits for room for all three: it is told it may try
    // again only once they fit, not at every packet that leaves.
    let big = vec![7u8; 4000];
    assert_eq!(
        p.client.udp_send_to(c, sa(Pair::SERVER, 9), &big),
        Err(Error::WouldBlock)
    );
    let _ = p.client.poll_transmit(p.now, &mut buf);
    let _ = p.client.poll_transmit(p.now, &mut buf);
    assert!(
        !events(&mut p.client).contains(&Event::UdpWritable),
        "2 of 3 free"
    );
    let _ = p.client.poll_transmit(p.now, &mut buf);
    assert!(
        events(&mut p.client).contains(&Event::UdpWritable),
        "3 free"
    );
    assert_eq!(p.client.udp_send_to(c, sa(Pair::SERVER, 9), &big), Ok(4000));
}

// -----------------------------------------------------------------------------------------
// Intercept mode
// -----------------------------------------------------------------------------------------

fn intercepting() -> Pair {
    let mut sc = Config::default();
    sc.intercept(Some(InterceptConfig::default()));
    dual(Config::default(), sc)
}

/// Port 0 is reserved, not malformed: a datagram to it names no socket and is answered
/// with port unreachable, as Linux's `__udp4_lib_rcv` answers it; in intercept mode too,
/// where the catch-all queue takes every other port (a relay could not send to port 0).
/// A datagram from port 0 is delivered (RFC 768: "if not used, a value of zero").
#[test]
fn port_zero_is_a_closed_port_not_a_malformed_datagram() {
    for mut p in [pair(), intercepting()] {
        let from = sa(Pair::CLIENT, 4000);
        let elsewhere = sa(ip("198.19.0.53"), 0);
        for to in [sa(Pair::SERVER, 0), elsewhere] {
            deliver(&mut p.server, p.now, &datagram(from, to, b"x"));
        }
        p.pump();
        let s = p.server.stats();
        assert_eq!(s.drop_malformed, 0);
        assert_eq!(s.udp_intercepted, 0);
        // The foreign address is not ours outside intercept mode.
        let closed = 1 + u64::from(p.server.config().intercept_config().is_some());
        assert_eq!(
            (s.drop_udp_no_socket, s.udp_port_unreachable_sent),
            (closed, closed)
        );
        let sock = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
        deliver(
            &mut p.server,
            p.now,
            &datagram(sa(Pair::CLIENT, 0), sa(Pair::SERVER, 53), b"y"),
        );
        assert_eq!(
            recv(&mut p.server, sock),
            Ok((b"y".to_vec(), sa(Pair::CLIENT, 0)))
        );
    }
}

#[test]
fn the_catch_all_queue_keeps_the_original_addresses() {
    let mut p = intercepting();
    for (client_any, dst) in [
        ("0.0.0.0:0", "198.19.0.53:53"),
        ("0.0.0.0:0", "198.19.9.9:4433"),
        ("[::]:0", "[2001:2:0:ff00::7]:53"),
    ] {
        let dst: SocketAddr = dst.parse().unwrap();
        let c = p.client.udp_bind(client_any.parse().unwrap()).unwrap();
        p.client.udp_connect(c, dst).unwrap();
        let from = p.client.udp_local_addr(c).unwrap();
        p.client.udp_send(c, b"query").unwrap();
        p.pump();
        assert!(events(&mut p.server).contains(&Event::UdpIntercepted));
        let mut buf = [0u8; 3];
        let d = p.server.udp_recv_intercepted(&mut buf).unwrap();
        assert_eq!(
            (d.len, d.src, d.dst),
            (3, from, dst),
            "truncated to the buffer"
        );
        assert_eq!(&buf, b"que");
        assert_eq!(
            p.server.udp_recv_intercepted(&mut buf),
            Err(Error::WouldBlock)
        );
        // The answer comes from the original destination, which the client's connected
        // socket requires.
        p.server.udp_send_from(d.dst, d.src, b"answer").unwrap();
        p.pump();
        assert_eq!(recv(&mut p.client, c), Ok((b"answer".to_vec(), dst)));
    }
    let s = p.server.stats();
    assert_eq!((s.udp_intercepted, s.udp_port_unreachable_sent), (3, 0));
    assert_eq!(p.server.memory(), 0);
}

#[test]
fn a_bound_socket_wins_over_the_catch_all() {
    let mut p = intercepting();
    let foreign = sa(ip("198.19.0.53"), 53);
    let s = p.server.udp_bind(foreign).unwrap();
    let c = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    p.client.udp_send_to(c, foreign, b"to the socket").unwrap();
    p.client
        .udp_send_to(c, sa(ip("198.19.0.54"), 53), b"to the catch-all")
        .unwrap();
    p.pump();
    let (data, _) = recv(&mut p.server, s).unwrap();
    assert_eq!(data, b"to the socket");
    // A transparent socket replies from its foreign address.
    let from = sa(Pair::CLIENT, p.client.udp_local_addr(c).unwrap().port());
    p.server.udp_send_to(s, from, b"hi").unwrap();
    p.pump();
    assert_eq!(recv(&mut p.client, c), Ok((b"hi".to_vec(), foreign)));
    assert_eq!(p.server.udp_intercepted_count(), 1);
}

#[test]
fn the_catch_all_queue_is_bounded_in_total_and_per_source() {
    use synack_core::endpoint::{CATCH_ALL_DATAGRAMS, CATCH_ALL_PER_SOURCE};
    let mut p = intercepting();
    // One source: its share only.
    let c = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    let mut sent = 0;
    while sent < CATCH_ALL_PER_SOURCE + 100 {
        // Deliver as we go: the client's own queue is bounded too.
        while p
            .client
            .udp_send_to(c, sa(ip("198.19.1.1"), 53), b"x")
            .is_ok()
        {
            sent += 1;
        }
        p.pump();
    }
    assert_eq!(p.server.udp_intercepted_count(), CATCH_ALL_PER_SOURCE);
    let dropped = (sent - CATCH_ALL_PER_SOURCE) as u64;
    assert_eq!(p.server.stats().drop_udp_queue_full, dropped);
    // Many sources (spoofed, injected straight in): the total bound.
    for i in 0..CATCH_ALL_DATAGRAMS {
        let src = sa(ip(&format!("198.18.{}.{}", 1 + i / 250, 1 + i % 250)), 4000);
        deliver(
            &mut p.server,
            p.now,
            &datagram(src, sa(ip("198.19.1.1"), 53), b"x"),
        );
    }
    assert_eq!(p.server.udp_intercepted_count(), CATCH_ALL_DATAGRAMS);
    let s = p.server.stats();
    assert_eq!(s.drop_udp_queue_full, dropped + CATCH_ALL_PER_SOURCE as u64);
    // Reading releases a source's share.
    let mut buf = [0u8; 8];
    let d = p.server.udp_recv_intercepted(&mut buf).unwrap();
    assert_eq!(d.src.ip(), Pair::CLIENT);
    assert!(p.server.memory() > 0);
}

/// The per-source share is the configuration's (`InterceptConfig::udp_max_per_source`):
/// a tun2socks relay, whose flows all come from one source, raises it to the queue's size
/// and gets the whole queue for that source. It was a constant a quarter of the queue, and
/// a burst of datagrams from the one source (a QUIC upload) lost three quarters of it.
#[test]
fn the_catch_all_share_of_one_source_is_configurable() {
    use synack_core::endpoint::CATCH_ALL_DATAGRAMS;
    let mut sc = Config::default();
    sc.intercept(Some(InterceptConfig {
        udp_max_per_source: CATCH_ALL_DATAGRAMS,
        ..InterceptConfig::default()
    }));
    let mut p = dual(Config::default(), sc);
    let src = sa(Pair::CLIENT, 4000);
    for _ in 0..2000 {
        deliver(
            &mut p.server,
            p.now,
            &datagram(src, sa(ip("198.19.1.1"), 53), b"x"),
        );
    }
    assert_eq!(p.server.udp_intercepted_count(), 2000);
    assert_eq!(p.server.stats().drop_udp_queue_full, 0);
}

/// With UDP interception off (a proxy that intercepts TCP only), a datagram no socket
/// takes is answered with port unreachable from where it was sent, as at a closed port,
/// and nothing is queued; turning it off drops what was queued and gives its memory back.
#[test]
fn without_udp_interception_datagrams_meet_a_closed_port() {
    let mut p = intercepting();
    let dst = sa(ip("198.19.0.53"), 53);
    let c = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    p.client.udp_connect(c, dst).unwrap();
    p.client.udp_send(c, b"queued").unwrap();
    p.pump();
    assert_eq!(p.server.udp_intercepted_count(), 1);
    assert!(p.server.memory() > 0);
    p.server.set_udp_interception(false);
    assert_eq!(
        (p.server.udp_intercepted_count(), p.server.memory()),
        (0, 0)
    );

    p.client.udp_send(c, b"query").unwrap();
    p.pump();
    assert_eq!(p.server.udp_intercepted_count(), 0);
    let s = p.server.stats();
    assert_eq!((s.drop_udp_no_socket, s.udp_port_unreachable_sent), (1, 1));
    // The client's connected socket learns it (ECONNREFUSED), from the destination it
    // sent to.
    assert_eq!(
        p.client.udp_take_error(c),
        Ok(Some(Error::ConnectionRefused))
    );

    p.server.set_udp_interception(true);
    p.client.udp_send(c, b"again").unwrap();
    p.pump();
    assert_eq!(p.server.udp_intercepted_count(), 1);
}

/// A proxy whose upstream refused a datagram answers its client as the closed port would:
/// port unreachable from the original destination, which the client's connected socket
/// takes as ECONNREFUSED.
#[test]
fn a_refused_datagram_is_answered_from_the_original_destination() {
    let mut p = intercepting();
    let dst = sa(ip("198.19.0.53"), 53);
    let c = p.client.udp_bind("0.0.0.0:0".parse().unwrap()).unwrap();
    p.client.udp_connect(c, dst).unwrap();
    p.client.udp_send(c, b"query").unwrap();
    p.pump();
    let mut buf = [0u8; 16];
    let d = p.server.udp_recv_intercepted(&mut buf).unwrap();
    let port = Unreachable::Port;
    assert_eq!(
        p.server.udp_unreachable(p.now, d.dst, d.src, port),
        Ok(true)
    );
    p.pump();
    assert_eq!(
        p.client.udp_take_error(c),
        Ok(Some(Error::ConnectionRefused))
    );
    assert_eq!(p.server.stats().udp_port_unreachable_sent, 1);
    // The other reasons, as the client's socket reports them: Linux's `icmp_err_convert`
    // makes an IPv4 net or host unreachable a soft error, which a connected UDP socket does
    // not report, and a filter's "administratively prohibited" a hard EHOSTUNREACH.
    for (why, error) in [
        (Unreachable::Network, None),
        (Unreachable::Host, None),
        (Unreachable::Prohibited, Some(Error::HostUnreachable)),
    ] {
        p.client.udp_send(c, b"again").unwrap();
        p.pump();
        let d = p.server.udp_recv_intercepted(&mut buf).unwrap();
        assert_eq!(p.server.udp_unreachable(p.now, d.dst, d.src, why), Ok(true));
        p.pump();
        assert_eq!(p.client.udp_take_error(c), Ok(error), "{why:?}");
    }
    // Not from a martian or a port 0; not across families.
    let lo = sa(ip("127.0.0.1"), 53);
    assert_eq!(
        p.server.udp_unreachable(p.now, lo, d.src, port),
        Err(Error::AddrNotAvailable)
    );
    assert_eq!(
        p.server
            .udp_unreachable(p.now, sa(ip("198.19.0.53"), 0), d.src, port),
        Err(Error::InvalidInput)
    );
    // Outside intercept mode only from an own address.
    let mut plain = dual(Config::default(), Config::default());
    assert_eq!(
        plain.server.udp_unreachable(plain.now, dst, d.src, port),
        Err(Error::AddrNotAvailable)
    );
}

#[test]
fn send_from_outside_intercept_mode_needs_an_own_address() {
    let mut p = pair();
    assert_eq!(
        p.server
            .udp_send_from(sa(ip("198.19.0.1"), 53), sa(Pair::CLIENT, 4000), b"x"),
        Err(Error::AddrNotAvailable)
    );
    assert_eq!(
        p.server
            .udp_send_from(sa(Pair::SERVER, 53), sa(Pair::CLIENT, 4000), b"x"),
        Ok(1)
    );
}

// -----------------------------------------------------------------------------------------
// The memory cap
// -----------------------------------------------------------------------------------------

#[test]
fn queued_datagrams_count_against_the_memory_cap_and_its_pressure() {
    // Datagrams held in a socket's queue are memory like TCP's buffers: they put the endpoint
    // under pressure at 3/4 of `max_memory`, past the cap they are dropped and counted, and
    // reading them lifts the pressure again. (That draining them wakes a TCP writer the cap
    // held back is `draining_datagrams_wakes_a_tcp_writer_held_back_at_the_cap`.)
    let mut server = Config::default();
    server.max_memory(64 * 1024).udp_recv_buffer(1 << 20);
    let mut p = dual(Config::default(), server);
    let h = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    let from = sa(Pair::CLIENT, 4000);
    let to = sa(Pair::SERVER, 53);
    let packet = datagram(from, to, &[9u8; 1000]);
    for _ in 0..100 {
        deliver(&mut p.server, p.now, &packet);
    }
    let usage = p.server.memory_usage();
    assert!(usage.pressure, "{usage:?}");
    assert!(p.server.memory() <= 64 * 1024);
    assert!(p.server.stats().drop_udp_queue_full > 0);
    while recv(&mut p.server, h).is_ok() {}
    assert_eq!(p.server.memory(), 0);
    assert!(!p.server.memory_usage().pressure, "drained: no pressure");
}

#[test]
fn draining_datagrams_wakes_a_tcp_writer_held_back_at_the_cap() {
    // Datagrams fill the endpoint to its cap; a TCP writer is refused. Reading some of them
    // back leaves room for a few segments while memory is still above the pressure level:
    // the writer's capacity follows the room at once, and it is told (`Writable`).
    const CAP: usize = 64 * 1024;
    let mut server = Config::default();
    server.max_memory(CAP).udp_recv_buffer(1 << 20);
    let mut p = dual(Config::default(), server);
    let l = p.server.listen(sa(Pair::SERVER, 80), 8).unwrap();
    let (_c, s) = p.connect(l, 80);
    p.pump();
    let h = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    let packet = datagram(sa(Pair::CLIENT, 4000), sa(Pair::SERVER, 53), &[9u8; 1000]);
    while p.server.stats().drop_udp_queue_full == 0 {
        deliver(&mut p.server, p.now, &packet);
    }
    let chunk = vec![7u8; 4096];
    loop {
        match p.server.send(s, &chunk) {
            Ok(_) => continue,
            Err(Error::WouldBlock) => break,
            Err(e) => panic!("send: {e}"),
        }
    }
    assert_eq!(p.server.send_capacity(s).unwrap(), 0);
    let _ = events(&mut p.server);
    // Read datagrams until there is room for a few segments, still under pressure.
    while p.server.memory() > CAP - 8 * 1024 {
        recv(&mut p.server, h).unwrap();
    }
    let usage = p.server.memory_usage();
    assert!(usage.pressure, "still above the pressure level: {usage:?}");
    assert!(p.server.send_capacity(s).unwrap() > 0, "{usage:?}");
    assert!(
        events(&mut p.server).contains(&Event::Writable(s)),
        "the writer is woken"
    );
}

/// What a connected socket's next `recv` returns after an ICMP destination unreachable with
/// `code` (from a router, quoting the socket's datagram), and whether it was told.
fn after_unreachable(v6: bool, code: u8) -> (Result<(Vec<u8>, SocketAddr), Error>, bool) {
    after_icmp(v6, |invoking| IcmpRepr::DstUnreachable { code, invoking })
}

/// What a connected socket's next `recv` returns after the ICMP error `icmp` makes of the
/// datagram it quotes (from a router), and whether the socket was told.
fn after_icmp(
    v6: bool,
    icmp: impl for<'a> Fn(&'a [u8]) -> IcmpRepr<'a>,
) -> (Result<(Vec<u8>, SocketAddr), Error>, bool) {
    let mut p = pair();
    let (server, any, router) = if v6 {
        (ip(S6), "[::]:0", ip("2001:2::99"))
    } else {
        (Pair::SERVER, "0.0.0.0:0", ip("198.18.0.99"))
    };
    let c = p.client.udp_bind(any.parse().unwrap()).unwrap();
    p.client.udp_connect(c, sa(server, 9999)).unwrap();
    p.client.udp_send(c, b"anyone?").unwrap();
    let sent = take_client_packets(&mut p).remove(0);
    let client = wire::ip::parse(&sent).unwrap().0.src_addr();
    let icmp = icmp(&sent);
    let proto = if v6 {
        IpProtocol::Icmpv6
    } else {
        IpProtocol::Icmp
    };
    let ipr = IpRepr::new(router, client, proto, icmp.buffer_len(), 64).unwrap();
    let mut pkt = vec![0u8; ipr.buffer_len()];
    ipr.emit(&mut pkt);
    let body = &mut pkt[ipr.header_len()..];
    match (router, client) {
        (IpAddr::V6(s), IpAddr::V6(d)) => icmp.emit_v6(body, s, d),
        _ => icmp.emit_v4(body),
    }
    let _ = events(&mut p.client);
    deliver(&mut p.client, p.now, &pkt);
    let told = events(&mut p.client).contains(&Event::UdpReadable(c));
    (recv(&mut p.client, c), told)
}

#[test]
fn icmpv4_unreachable_codes_map_as_linux_maps_them() {
    // Linux icmp_err_convert: only the fatal codes reach a connected socket.
    use Error::*;
    let hard = [
        (2, ProtocolNotAvailable),
        (3, ConnectionRefused),
        (6, NetworkUnreachable),
        (7, HostUnreachable),
        (9, NetworkUnreachable),
        (10, HostUnreachable),
        (13, HostUnreachable),
        (15, HostUnreachable),
    ];
    for (code, want) in hard {
        assert_eq!(
            after_unreachable(false, code),
            (Err(want), true),
            "code {code}"
        );
    }
    for code in [0, 1, 4, 5, 11, 12, 16] {
        assert_eq!(
            after_unreachable(false, code),
            (Err(WouldBlock), false),
            "soft code {code}"
        );
    }
}

#[test]
fn icmpv6_unreachable_codes_map_as_linux_maps_them() {
    // Linux icmpv6_err_convert: no route, beyond scope and address unreachable are soft.
    use Error::*;
    for (code, want) in [
        (1, PermissionDenied),
        (4, ConnectionRefused),
        (5, PermissionDenied),
        (6, PermissionDenied),
        // Codes RFC 4443 does not define: EPROTO.
        (7, ProtocolError),
        (200, ProtocolError),
    ] {
        assert_eq!(
            after_unreachable(true, code),
            (Err(want), true),
            "code {code}"
        );
    }
    for code in [0, 2, 3] {
        assert_eq!(
            after_unreachable(true, code),
            (Err(WouldBlock), false),
            "soft code {code}"
        );
    }
}

#[test]
fn a_parameter_problem_is_a_hard_protocol_error() {
    // Linux's __udp4_lib_err: ICMP_PARAMETERPROB is EPROTO, hard; icmpv6_err_convert calls
    // ICMPV6_PARAMPROB fatal, EPROTO. The connected socket hears it.
    for v6 in [false, true] {
        let (first, told) = after_icmp(v6, |invoking| IcmpRepr::ParamProblem {
            code: 0,
            pointer: 8,
            invoking,
        });
        assert_eq!((first, told), (Err(Error::ProtocolError), true), "v6 {v6}");
    }
}

#[test]
fn a_port_unreachable_that_finds_the_queue_full_is_no_second_drop() {
    // The own-packet queue is full of RSTs for a closed TCP port. A datagram to a closed UDP
    // port is one drop (`drop_udp_no_socket`); its unsent answer is not a second one, and
    // spends no rate-limit token.
    use synack_core::testing::peer::Out;
    use synack_core::wire::TcpFlags;
    let mut p = pair();
    let to = sa(Pair::SERVER, 81);
    for port in 0..2000u16 {
        let syn = Out::new(TcpFlags::SYN, 1, 0).packet(sa(Pair::CLIENT, 10_000 + port), to);
        deliver(&mut p.server, p.now, &syn);
    }
    let before = p.server.stats().clone();
    let packet = datagram(sa(Pair::CLIENT, 4000), sa(Pair::SERVER, 9), b"x");
    deliver(&mut p.server, p.now, &packet);
    let after = p.server.stats().clone();
    assert_eq!(after.drop_udp_no_socket, before.drop_udp_no_socket + 1);
    assert_eq!(after.drop_other, before.drop_other, "no second drop");
    assert_eq!(
        after.udp_port_unreachable_queue_full,
        before.udp_port_unreachable_queue_full + 1
    );
    // Drain the queue: the client's whole burst of 6 is still there.
    let mut buf = vec![0u8; 2048];
    while p.server.poll_transmit(p.now, &mut buf).is_some() {}
    for _ in 0..50 {
        deliver(&mut p.server, p.now, &packet);
    }
    // Counted as they leave.
    assert_eq!(p.server.stats().udp_port_unreachable_sent, 0);
    let mut sent = 0;
    while p.server.poll_transmit(p.now, &mut buf).is_some() {
        sent += 1;
    }
    assert_eq!(sent, 6);
    assert_eq!(p.server.stats().udp_port_unreachable_sent, 6);
}

#[test]
fn a_writer_waiting_for_room_without_a_refused_write_is_woken() {
    // Datagrams and another connection's writes fill the cap before this connection wrote
    // anything: a readiness check (`send_capacity_or_wait`, what `TcpStream::writable`
    // uses) finds no room and must still be told once memory drains, though no write of
    // its own was refused.
    const CAP: usize = 64 * 1024;
    let mut server = Config::default();
    server.max_memory(CAP).udp_recv_buffer(1 << 20);
    let mut p = dual(Config::default(), server);
    let l = p.server.listen(sa(Pair::SERVER, 80), 8).unwrap();
    let (_c1, s1) = p.connect(l, 80);
    let (_c2, s2) = p.connect(l, 80);
    p.pump();
    let h = p.server.udp_bind(sa(Pair::SERVER, 53)).unwrap();
    let packet = datagram(sa(Pair::CLIENT, 4000), sa(Pair::SERVER, 53), &[9u8; 1000]);
    while p.server.stats().drop_udp_queue_full == 0 {
        deliver(&mut p.server, p.now, &packet);
    }
    // The first connection takes what is left, to the byte.
    while p.server.send(s1, &[7u8; 4096]).is_ok() {}
    assert_eq!(p.server.memory(), CAP);
    assert_eq!(p.server.send_capacity_or_wait(s2).unwrap(), 0);
    let _ = events(&mut p.server);
    while p.server.memory() > CAP - 8 * 1024 {
        recv(&mut p.server, h).unwrap();
    }
    assert!(
        events(&mut p.server).contains(&Event::Writable(s2)),
        "the waiting writer is woken"
    );
}

/// Binds to port 0, UDP and TCP, start their search anywhere in the range, afresh each
/// time, as Linux's `udp_lib_get_port` and `inet_csk_find_open_port` start at random: no
/// port tells the next (RFC 6056 §2.1; RFC 5452 §4 asks a DNS client for ports an attacker
/// cannot guess). Before, every bind started from one keyed offset and a counter walked on
/// by one: 100 binds in a row got 100 ports in a row.
#[test]
fn ports_for_binds_to_port_zero_follow_no_sequence() {
    let mut ep = Endpoint::new(Config::default(), &[Pair::CLIENT]);
    let any = sa(Pair::CLIENT, 0);
    let udp: Vec<u16> = (0..100)
        .map(|_| {
            let h = ep.udp_bind(any).unwrap();
            ep.udp_local_addr(h).unwrap().port()
        })
        .collect();
    let tcp: Vec<u16> = (0..100)
        .map(|_| {
            let l = ep.listen(any, 4).unwrap();
            ep.listener_addr(l).unwrap().port()
        })
        .collect();
    for ports in [&udp, &tcp] {
        let steps = ports
            .windows(2)
            .filter(|w| w[1].wrapping_sub(w[0]) < 16)
            .count();
        assert!(
            steps <= 2,
            "{steps} of 99 binds took a port just past the last: {ports:?}"
        );
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), ports.len(), "each a port of its own");
    }
}

/// A bind to port 0 never takes a port a socket of the other family holds: a dual-stack
/// `[::]` socket takes IPv4 on its port, and an IPv4 socket given that port took the other's
/// IPv4 datagrams, replies included (or, the other way round, a `[::]` socket lost its own);
/// Linux's autobind counts a `[::]` bind as holding the port for both families. Before,
/// with one port in the range, the second bind got it.
#[test]
fn a_bind_to_port_zero_skips_ports_the_other_family_holds() {
    let mut config = Config::default();
    config.ephemeral_ports((40_000, 40_000));
    let six = "[::]:0".parse().unwrap();
    let four = sa(Pair::CLIENT, 0);
    for (first, second) in [(six, four), (four, six)] {
        let mut ep = Endpoint::new(config.clone(), &[Pair::CLIENT, ip("2001:2::2")]);
        let a = ep.udp_bind(first).unwrap();
        assert_eq!(ep.udp_local_addr(a).unwrap().port(), 40_000);
        assert_eq!(ep.udp_bind(second).unwrap_err(), Error::AddrInUse);
    }
}

/// Binding port 0 with every ephemeral port held fails with `AddrInUse`, as Linux's UDP
/// autobind does (found at scale: it said `AddrNotAvailable`, TCP's connect's error).
#[test]
fn ephemeral_ports_exhausted_is_addr_in_use() {
    let mut config = Config::default();
    config.ephemeral_ports((40_000, 40_001));
    let mut ep = Endpoint::new(config, &[Pair::CLIENT]);
    let any = sa(Pair::CLIENT, 0);
    let a = ep.udp_bind(any).unwrap();
    let b = ep.udp_bind(any).unwrap();
    assert_ne!(ep.udp_local_addr(a), ep.udp_local_addr(b));
    assert_eq!(ep.udp_bind(any).unwrap_err(), Error::AddrInUse);
    ep.udp_close(a).unwrap();
    ep.udp_bind(any).expect("a port freed is taken again");
}
