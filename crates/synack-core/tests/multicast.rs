//! UDP multicast in virtual time over the test kit's `Pair`: joining and leaving as Linux
//! answers them, a group's datagrams taken in only while the host has it joined and then
//! given to every socket on their port, sending to a group with the multicast TTL, and the
//! multicast loop.

use std::net::{IpAddr, SocketAddr};

use synack_core::endpoint::{MAX_MEMBERSHIPS, MAX_MEMBERSHIPS_V6, MULTICAST_HOPS};
use synack_core::testing::{deliver, drain, udp_datagram, Pair};
use synack_core::wire;
use synack_core::{Config, Endpoint, Error, UdpHandle};

const C6: &str = "2001:2::1";
const S6: &str = "2001:2::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A `Pair` whose ends own an IPv6 address beside their IPv4 one.
fn pair() -> Pair {
    let mut p = Pair::with_configs(Config::default(), Config::default());
    p.client = Endpoint::new(Config::default(), &[Pair::CLIENT, ip(C6)]);
    p.server = Endpoint::new(Config::default(), &[Pair::SERVER, ip(S6)]);
    p
}

fn recv(ep: &mut Endpoint, h: UdpHandle) -> Result<(Vec<u8>, SocketAddr, SocketAddr), Error> {
    let (data, from, to) = ep.udp_recv(h)?;
    Ok((data.to_vec(), from, to))
}

/// A UDP/IP packet built by hand (the test kit's, TTL 1).
fn datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    udp_datagram(src, dst, payload, 1)
}

/// What the client puts on the link, taken off it: (destination, TTL or hop limit).
fn client_packets(p: &mut Pair) -> Vec<(IpAddr, u8)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65_536];
    drain(&mut p.client, p.now, &mut buf, |pkt, _| {
        let (ip, _) = wire::ip::parse(pkt).expect("valid IP");
        out.push((ip.dst_addr(), ip.hop_limit()));
        std::ops::ControlFlow::Continue(())
    });
    out
}

/// Each refusal as Linux answers `IP_ADD_MEMBERSHIP` and `IP_DROP_MEMBERSHIP`: a unicast
/// address EINVAL, a group joined twice EADDRINUSE, the 21st group ENOBUFS, a group not
/// joined EADDRNOTAVAIL, an IPv6 group on an IPv4 socket ENOPROTOOPT. Membership is the
/// host's: any IPv6 socket takes an IPv4 group, and one bound IPv4-mapped an IPv6 group
/// (checked on Linux).
#[test]
fn joining_and_leaving_are_refused_as_linux_refuses_them() {
    let mut p = pair();
    let ep = &mut p.server;
    let v4 = ep.udp_bind(sa("0.0.0.0:5000")).unwrap();
    assert_eq!(
        ep.udp_join_multicast(v4, Pair::SERVER),
        Err(Error::InvalidInput)
    );
    assert_eq!(
        ep.udp_join_multicast(v4, ip("ff02::fb")),
        Err(Error::ProtocolNotAvailable)
    );
    ep.udp_join_multicast(v4, ip("224.0.0.251")).unwrap();
    assert_eq!(
        ep.udp_join_multicast(v4, ip("224.0.0.251")),
        Err(Error::AddrInUse)
    );
    for i in 1..MAX_MEMBERSHIPS {
        ep.udp_join_multicast(v4, ip(&format!("239.1.0.{i}")))
            .unwrap();
    }
    assert_eq!(
        ep.udp_join_multicast(v4, ip("239.1.1.1")),
        Err(Error::NoBufferSpace)
    );
    assert_eq!(ep.udp_multicast_groups(v4).unwrap().len(), MAX_MEMBERSHIPS);
    assert_eq!(
        ep.udp_leave_multicast(v4, ip("239.1.1.1")),
        Err(Error::AddrNotAvailable)
    );
    ep.udp_leave_multicast(v4, ip("239.1.0.1")).unwrap();
    ep.udp_join_multicast(v4, ip("239.1.1.1")).unwrap();

    let dual = ep.udp_bind(sa("[::]:5001")).unwrap();
    ep.udp_join_multicast(dual, ip("ff02::fb")).unwrap();
    ep.udp_join_multicast(dual, ip("224.0.0.251")).unwrap();
    let mapped = ep.udp_bind(sa("[::ffff:198.18.0.2]:5002")).unwrap();
    ep.udp_join_multicast(mapped, ip("ff02::fb")).unwrap();
    let v6 = ep.udp_bind(sa("[2001:2::2]:5003")).unwrap();
    ep.udp_join_multicast(v6, ip("224.0.0.251")).unwrap();

    // The option's level is checked before the address: an IPv6 address on an IPv4 socket
    // is ENOPROTOOPT, multicast or not. Leaving an IPv6 address that is not a multicast one
    // is EINVAL (`ipv6_sock_mc_drop`); IPv4's finds no membership.
    assert_eq!(
        ep.udp_join_multicast(v4, ip("2001:2::9")),
        Err(Error::ProtocolNotAvailable)
    );
    assert_eq!(
        ep.udp_leave_multicast(v6, ip("2001:2::9")),
        Err(Error::InvalidInput)
    );
    assert_eq!(
        ep.udp_leave_multicast(v4, Pair::SERVER),
        Err(Error::AddrNotAvailable)
    );
    // IPv6 groups are bounded by Linux's option memory, not igmp_max_memberships.
    for i in 1..=MAX_MEMBERSHIPS_V6 {
        ep.udp_join_multicast(v6, ip(&format!("ff0e::{i:x}")))
            .unwrap();
    }
    assert_eq!(
        ep.udp_join_multicast(v6, ip("ff0e::1:0")),
        Err(Error::NoBufferSpace)
    );
}

/// An IPv4 socket has none of the IPv6 multicast options: Linux's `do_ip_setsockopt`
/// refuses another level with ENOPROTOOPT, `do_ip_getsockopt` with EOPNOTSUPP, and leaving
/// an IPv6 group is refused as joining one is, before the membership is looked for. An IPv6
/// socket takes both families' (tokio::net on the kernel, `kernel_api_diff.rs`).
#[test]
fn an_ipv4_socket_has_no_ipv6_multicast_options() {
    let mut p = pair();
    let ep = &mut p.server;
    let v4 = ep.udp_bind(sa("0.0.0.0:5000")).unwrap();
    assert_eq!(
        ep.udp_leave_multicast(v4, ip("ff02::fb")),
        Err(Error::ProtocolNotAvailable)
    );
    assert_eq!(
        ep.udp_set_multicast_loop(v4, true, false),
        Err(Error::ProtocolNotAvailable)
    );
    assert_eq!(
        ep.udp_multicast_loop(v4, true),
        Err(Error::OperationNotSupported)
    );
    assert_eq!(
        ep.udp_set_multicast_hops(v4, true, 5),
        Err(Error::ProtocolNotAvailable)
    );
    assert_eq!(
        ep.udp_multicast_hops(v4, true),
        Err(Error::OperationNotSupported)
    );
    ep.udp_set_multicast_loop(v4, false, false).unwrap();
    assert_eq!(ep.udp_multicast_loop(v4, false), Ok(false));
    let dual = ep.udp_bind(sa("[::]:5001")).unwrap();
    for v6 in [false, true] {
        ep.udp_set_multicast_loop(dual, v6, false).unwrap();
        assert_eq!(ep.udp_multicast_loop(dual, v6), Ok(false));
        ep.udp_set_multicast_hops(dual, v6, 5).unwrap();
        assert_eq!(ep.udp_multicast_hops(dual, v6), Ok(5));
    }
    assert_eq!(
        ep.udp_leave_multicast(dual, ip("ff02::fb")),
        Err(Error::AddrNotAvailable)
    );
}

/// The host takes a group in while any socket has it joined, and then every socket on the
/// datagram's port has it, bound to the group or to the unspecified address, joined or not
/// (Linux's `IP_MULTICAST_ALL`, on by default); once the last member leaves or closes, the
/// group is nobody's again. No group datagram is ever answered with port unreachable.
/// Checked on Linux (Python, loopback with a multicast route): the same for a member that
/// connects.
#[test]
fn a_joined_groups_datagrams_reach_every_socket_on_their_port() {
    let mut p = pair();
    let from = SocketAddr::new(Pair::CLIENT, 4000);
    let group = ip("239.1.2.3");
    let member = p.server.udp_bind(sa("0.0.0.0:7001")).unwrap();
    let on_group = p.server.udp_bind(sa("239.1.2.3:7000")).unwrap();
    let to = |port| SocketAddr::new(group, port);

    // Not joined yet: not ours.
    deliver(&mut p.server, p.now, &datagram(from, to(7000), b"early"));
    assert_eq!(p.server.stats().drop_not_for_us, 1);

    p.server.udp_join_multicast(member, group).unwrap();
    deliver(&mut p.server, p.now, &datagram(from, to(7000), b"bound"));
    deliver(&mut p.server, p.now, &datagram(from, to(7001), b"joined"));
    assert_eq!(
        recv(&mut p.server, on_group),
        Ok((b"bound".to_vec(), from, to(7000)))
    );
    assert_eq!(
        recv(&mut p.server, member),
        Ok((b"joined".to_vec(), from, to(7001)))
    );
    // Another group on the same port is not taken in.
    deliver(
        &mut p.server,
        p.now,
        &datagram(from, sa("239.1.2.4:7001"), b"other"),
    );
    assert_eq!(recv(&mut p.server, member), Err(Error::WouldBlock));
    assert_eq!(p.server.stats().drop_not_for_us, 2);
    // A joined group on a port no socket has: dropped and counted, not answered.
    deliver(&mut p.server, p.now, &datagram(from, to(7999), b"nobody"));
    let mut buf = vec![0u8; 2048];
    assert_eq!(
        drain(&mut p.server, p.now, &mut buf, |_, _| unreachable!()),
        0
    );
    let s = p.server.stats();
    assert_eq!((s.drop_udp_no_socket, s.udp_port_unreachable_sent), (1, 0));

    // A socket bound to the group and connected takes the group's datagrams from its peer
    // only. One bound to the unspecified address takes ours as its own at connect (Linux's
    // `ip4_datagram_connect` sets its receive address), and no group's datagram after it.
    let peer = SocketAddr::new(Pair::CLIENT, 4001);
    p.server.udp_connect(on_group, peer).unwrap();
    p.server.udp_connect(member, peer).unwrap();
    for port in [7000, 7001] {
        deliver(&mut p.server, p.now, &datagram(from, to(port), b"stranger"));
        deliver(&mut p.server, p.now, &datagram(peer, to(port), b"peer"));
    }
    assert_eq!(recv(&mut p.server, on_group).unwrap().0, b"peer");
    assert_eq!(recv(&mut p.server, on_group), Err(Error::WouldBlock));
    assert_eq!(recv(&mut p.server, member), Err(Error::WouldBlock));

    // The last member closes: the group is nobody's.
    p.server.udp_close(member).unwrap();
    deliver(&mut p.server, p.now, &datagram(from, to(7000), b"late"));
    assert_eq!(recv(&mut p.server, on_group), Err(Error::WouldBlock));
    assert_eq!(p.server.stats().drop_not_for_us, 3);
}

/// IPv6 groups on an IPv6 socket, and an IPv4 group on a dual-stack one, which sees the
/// addresses IPv4-mapped.
#[test]
fn ipv6_groups_and_a_dual_stack_member() {
    let mut p = pair();
    let s = p.server.udp_bind(sa("[::]:5353")).unwrap();
    p.server.udp_join_multicast(s, ip("ff02::fb")).unwrap();
    p.server.udp_join_multicast(s, ip("224.0.0.251")).unwrap();
    let from6 = SocketAddr::new(ip(C6), 5353);
    deliver(
        &mut p.server,
        p.now,
        &datagram(from6, sa("[ff02::fb]:5353"), b"six"),
    );
    let from4 = SocketAddr::new(Pair::CLIENT, 5353);
    deliver(
        &mut p.server,
        p.now,
        &datagram(from4, sa("224.0.0.251:5353"), b"four"),
    );
    assert_eq!(
        recv(&mut p.server, s),
        Ok((b"six".to_vec(), from6, sa("[ff02::fb]:5353")))
    );
    assert_eq!(
        recv(&mut p.server, s),
        Ok((
            b"four".to_vec(),
            sa("[::ffff:198.18.0.1]:5353"),
            sa("[::ffff:224.0.0.251]:5353")
        ))
    );
}

/// A datagram to a group leaves with the multicast TTL (1 until set, then what was set;
/// unicast keeps the socket's own), from an address of ours even when the socket is bound
/// to the group, and reaches a member across the link.
#[test]
fn sending_to_a_group_uses_the_multicast_ttl() {
    let mut p = pair();
    let c = p.client.udp_bind(sa("0.0.0.0:0")).unwrap();
    assert_eq!(p.client.udp_multicast_hops(c, false), Ok(MULTICAST_HOPS));
    p.client
        .udp_send_to(c, sa("239.9.9.9:7000"), b"default")
        .unwrap();
    p.client.udp_set_multicast_hops(c, false, 5).unwrap();
    p.client
        .udp_send_to(c, sa("239.9.9.9:7000"), b"five")
        .unwrap();
    p.client
        .udp_send_to(c, SocketAddr::new(Pair::SERVER, 7000), b"unicast")
        .unwrap();
    let c6 = p.client.udp_bind(sa("[::]:0")).unwrap();
    p.client.udp_set_multicast_hops(c6, true, 7).unwrap();
    p.client
        .udp_send_to(c6, sa("[ff0e::9]:7000"), b"six")
        .unwrap();
    assert_eq!(
        client_packets(&mut p),
        [
            (ip("239.9.9.9"), 1),
            (ip("239.9.9.9"), 5),
            (Pair::SERVER, 64),
            (ip("ff0e::9"), 7)
        ]
    );
    // Port 0 is still refused; a relay's send_from never goes to a group.
    assert_eq!(
        p.client.udp_send_to(c, sa("239.9.9.9:0"), b"x"),
        Err(Error::InvalidInput)
    );

    // Bound to the group and joined on the server; the client's member sends to it.
    let s = p.server.udp_bind(sa("239.9.9.9:7000")).unwrap();
    p.server.udp_join_multicast(s, ip("239.9.9.9")).unwrap();
    let sender = p.client.udp_bind(sa("239.9.9.9:7000")).unwrap();
    p.client
        .udp_send_to(sender, sa("239.9.9.9:7000"), b"hello")
        .unwrap();
    p.pump();
    assert_eq!(
        recv(&mut p.server, s),
        Ok((
            b"hello".to_vec(),
            SocketAddr::new(Pair::CLIENT, 7000),
            sa("239.9.9.9:7000")
        ))
    );
}

/// `IP_MULTICAST_LOOP`: while the host has the group joined, a datagram to it is delivered
/// to the own members too (on by default), the sender's own socket included, and not when
/// the sending socket turned the loop off or no own socket is a member.
#[test]
fn the_multicast_loop_delivers_to_own_members() {
    let mut p = pair();
    let member = p.client.udp_bind(sa("0.0.0.0:7000")).unwrap();
    let sender = p.client.udp_bind(sa("0.0.0.0:0")).unwrap();
    let group = sa("239.4.4.4:7000");
    // No member yet: only the link has it.
    p.client.udp_send_to(sender, group, b"unheard").unwrap();
    assert_eq!(recv(&mut p.client, member), Err(Error::WouldBlock));

    p.client.udp_join_multicast(member, group.ip()).unwrap();
    assert_eq!(p.client.udp_multicast_loop(sender, false), Ok(true));
    p.client.udp_send_to(sender, group, b"looped").unwrap();
    let got = recv(&mut p.client, member).unwrap();
    assert_eq!((got.0, got.2), (b"looped".to_vec(), group));
    assert_eq!(got.1.ip(), Pair::CLIENT);
    // A member sending to its own group hears itself.
    p.client.udp_send_to(member, group, b"echo").unwrap();
    assert_eq!(recv(&mut p.client, member).unwrap().0, b"echo");

    p.client
        .udp_set_multicast_loop(sender, false, false)
        .unwrap();
    p.client.udp_send_to(sender, group, b"quiet").unwrap();
    assert_eq!(recv(&mut p.client, member), Err(Error::WouldBlock));
    // Every one of them still went onto the link.
    assert_eq!(client_packets(&mut p).len(), 4);
}

/// A socket bound to a group has no source address of its own: to `0.0.0.0` it reaches this
/// host at the stack's own address, not the group (Linux: 127.0.0.1), and a UDP connect there
/// takes that address as its peer.
#[test]
fn a_socket_bound_to_a_group_sends_to_this_host_from_ours() {
    let mut p = pair();
    let on_group = p.client.udp_bind(sa("239.1.1.1:5000")).unwrap();
    let own = p.client.udp_bind(sa("198.18.0.1:6000")).unwrap();
    p.client
        .udp_send_to(on_group, sa("0.0.0.0:6000"), b"home")
        .unwrap();
    assert!(client_packets(&mut p).is_empty(), "nothing for the link");
    let got = recv(&mut p.client, own).unwrap();
    assert_eq!((got.0, got.1.ip()), (b"home".to_vec(), Pair::CLIENT));
    p.client.udp_connect(on_group, sa("0.0.0.0:6000")).unwrap();
    assert_eq!(
        p.client.udp_peer_addr(on_group),
        Ok(SocketAddr::new(Pair::CLIENT, 6000))
    );
}

/// A multicast TTL or hop limit of 0 keeps the datagram on this host: the own members get
/// it through the loop, the link nothing (Linux's `ip_mc_output` drops it before the
/// device), in both families.
#[test]
fn a_multicast_ttl_of_zero_stays_on_this_host() {
    let mut p = pair();
    for (any, group) in [
        ("0.0.0.0:7100", "239.5.5.5:7100"),
        ("[::]:7101", "[ff0e::5]:7101"),
    ] {
        let member = p.client.udp_bind(sa(any)).unwrap();
        let group = sa(group);
        p.client.udp_join_multicast(member, group.ip()).unwrap();
        p.client
            .udp_set_multicast_hops(member, group.is_ipv6(), 0)
            .unwrap();
        assert_eq!(p.client.udp_send_to(member, group, b"local"), Ok(5));
        assert!(
            client_packets(&mut p).is_empty(),
            "{group}: TTL 0 on the link"
        );
        assert_eq!(recv(&mut p.client, member).unwrap().0, b"local");
    }
}

/// A dual-stack socket that connected to an IPv4 peer no longer takes a group's datagrams
/// or a broadcast, even from its peer, as Linux's (its connect set the IPv4 receive
/// address); unicast from the peer still arrives.
#[test]
fn a_connected_dual_stack_socket_takes_no_group_or_broadcast() {
    let mut config = Config::default();
    config.broadcast_addresses([std::net::Ipv4Addr::new(198, 18, 0, 255)]);
    let mut p = pair();
    p.server = Endpoint::new(config, &[Pair::SERVER, ip(S6)]);
    let s = p.server.udp_bind(sa("[::]:7000")).unwrap();
    p.server.udp_join_multicast(s, ip("239.2.2.2")).unwrap();
    let peer = SocketAddr::new(Pair::CLIENT, 4000);
    p.server.udp_connect(s, peer).unwrap();
    for to in [
        "239.2.2.2:7000",
        "198.18.0.255:7000",
        "255.255.255.255:7000",
    ] {
        deliver(&mut p.server, p.now, &datagram(peer, sa(to), b"many"));
    }
    deliver(
        &mut p.server,
        p.now,
        &datagram(peer, sa("198.18.0.2:7000"), b"one"),
    );
    assert_eq!(recv(&mut p.server, s).unwrap().0, b"one");
    assert_eq!(recv(&mut p.server, s), Err(Error::WouldBlock));
}

/// The loop is the socket family's option: an IPv6 socket (dual stack, or bound
/// IPv4-mapped) sending to an IPv4 group loops back as IPV6_MULTICAST_LOOP says, whatever
/// IP_MULTICAST_LOOP says (Linux's `sk_mc_loop`); its TTL is IP_MULTICAST_TTL's.
#[test]
fn an_ipv6_sockets_loop_follows_its_own_family() {
    let mut p = pair();
    let member = p.client.udp_bind(sa("0.0.0.0:7200")).unwrap();
    p.client
        .udp_join_multicast(member, ip("239.3.3.3"))
        .unwrap();
    for bind in ["[::]:0", "[::ffff:198.18.0.1]:0"] {
        let tx = p.client.udp_bind(sa(bind)).unwrap();
        p.client.udp_set_multicast_loop(tx, true, false).unwrap();
        p.client.udp_set_multicast_hops(tx, false, 4).unwrap();
        p.client
            .udp_send_to(tx, sa("239.3.3.3:7200"), b"off")
            .unwrap();
        assert_eq!(
            recv(&mut p.client, member),
            Err(Error::WouldBlock),
            "{bind}"
        );
        assert_eq!(client_packets(&mut p), [(ip("239.3.3.3"), 4)], "{bind}");
        p.client.udp_set_multicast_loop(tx, true, true).unwrap();
        p.client.udp_set_multicast_loop(tx, false, false).unwrap();
        p.client
            .udp_send_to(tx, sa("239.3.3.3:7200"), b"on")
            .unwrap();
        assert_eq!(recv(&mut p.client, member).unwrap().0, b"on", "{bind}");
        client_packets(&mut p);
    }
}

/// RFC 4007 §6: an interface- or link-local group needs its link to be bound (Linux's
/// `inet6_bind`: EINVAL without a scope id); with one, or a wider scope, the bind is taken.
#[test]
fn a_link_local_group_is_bound_only_with_a_scope_id() {
    let mut p = pair();
    let ep = &mut p.server;
    assert_eq!(ep.udp_bind(sa("[ff02::fb]:5353")), Err(Error::InvalidInput));
    assert_eq!(ep.udp_bind(sa("[ff01::1]:5353")), Err(Error::InvalidInput));
    let scoped = std::net::SocketAddrV6::new("ff02::fb".parse().unwrap(), 5353, 0, 1);
    ep.udp_bind(scoped.into()).unwrap();
    ep.udp_bind(sa("[ff05::fb]:5353")).unwrap();
}

/// Every host belongs to the all-hosts group 224.0.0.1 and to the all-nodes groups ff01::1
/// and ff02::1 from the start (RFC 1112 §4, RFC 4291 §2.7.1; Linux joins them as it brings
/// an interface up): their datagrams reach the sockets on their port with no socket joining
/// them, and one sent to them is looped back to this host. Another group is still nobody's.
#[test]
fn the_all_hosts_and_all_nodes_groups_need_no_join() {
    let mut p = pair();
    let v4 = p.server.udp_bind(sa("0.0.0.0:7100")).unwrap();
    let v6 = p.server.udp_bind(sa("[::]:7101")).unwrap();
    let from4 = SocketAddr::new(Pair::CLIENT, 4000);
    let from6 = SocketAddr::new(ip(C6), 4000);
    deliver(
        &mut p.server,
        p.now,
        &datagram(from4, sa("224.0.0.1:7100"), b"all hosts"),
    );
    for (group, payload) in [("[ff02::1]:7101", b"link"), ("[ff01::1]:7101", b"node")] {
        deliver(&mut p.server, p.now, &datagram(from6, sa(group), payload));
    }
    deliver(
        &mut p.server,
        p.now,
        &datagram(from4, sa("224.0.0.2:7100"), b"routers"),
    );
    assert_eq!(
        recv(&mut p.server, v4),
        Ok((b"all hosts".to_vec(), from4, sa("224.0.0.1:7100")))
    );
    assert_eq!(
        recv(&mut p.server, v6),
        Ok((b"link".to_vec(), from6, sa("[ff02::1]:7101")))
    );
    assert_eq!(
        recv(&mut p.server, v6),
        Ok((b"node".to_vec(), from6, sa("[ff01::1]:7101")))
    );
    assert_eq!(recv(&mut p.server, v4), Err(Error::WouldBlock));
    assert_eq!(p.server.stats().drop_not_for_us, 1);

    // Sent to all hosts: on the link, and looped back to our own socket on the port.
    let tx = p.server.udp_bind(sa("0.0.0.0:0")).unwrap();
    p.server
        .udp_send_to(tx, sa("224.0.0.1:7100"), b"everyone")
        .unwrap();
    let got = recv(&mut p.server, v4).unwrap();
    assert_eq!((got.0, got.2), (b"everyone".to_vec(), sa("224.0.0.1:7100")));
    assert_eq!(got.1.ip(), Pair::SERVER);
}
