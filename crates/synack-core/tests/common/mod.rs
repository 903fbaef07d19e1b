//! The scripted peer of the state-by-state tests, from the test kit
//! ([`synack_core::testing::peer`]), and the Linux capture the wire and replay tests share.
#![allow(dead_code, unused_imports)]

pub mod capture;

pub use synack_core::testing::peer::*;

/// An active open to `peer_ip:80` with `opts`, answered by a SYN-ACK (the peer's ISN 10,000,
/// MSS 1000) and established: the harness, the connection, our address, the peer's, and our
/// SYN.
pub fn active_open(
    peer_ip: std::net::IpAddr,
    opts: &synack_core::SocketOptions,
) -> (
    Harness,
    synack_core::ConnectionHandle,
    std::net::SocketAddr,
    std::net::SocketAddr,
    Seg,
) {
    use synack_core::wire::TcpFlags;
    let mut h = Harness::new(config());
    let peer = std::net::SocketAddr::new(peer_ip, 80);
    let c = h.ep.connect_with(h.now, peer, None, opts).unwrap();
    let syn = h.one();
    h.inject(
        peer,
        syn.src,
        Out::new(TcpFlags::SYN | TcpFlags::ACK, 10_000, 0)
            .ackn(syn.seq + 1)
            .mss(1000),
    );
    let ack = h.one();
    assert!(ack.is(TcpFlags::ACK), "{ack:?}");
    assert_eq!(h.ep.state(c).unwrap(), synack_core::State::Established);
    (h, c, syn.src, peer, syn)
}

/// A listener on `US:8080` (backlog 8) and a SYN to it from `PEER:40000` (seq 100, no
/// options): the listener, the server's and the client's addresses, and our SYN-ACK.
pub fn passive_syn(
    h: &mut Harness,
) -> (
    synack_core::ListenerHandle,
    std::net::SocketAddr,
    std::net::SocketAddr,
    Seg,
) {
    let server = std::net::SocketAddr::new(US, 8080);
    let client = std::net::SocketAddr::new(PEER, 40000);
    let l = h.ep.listen(server, 8).unwrap();
    h.inject(
        client,
        server,
        Out::new(synack_core::wire::TcpFlags::SYN, 100, 0),
    );
    let synack = h.one();
    (l, server, client, synack)
}

/// An ICMPv4 message from `PEER` to `US`, in its IP packet: an error quoting a packet we
/// sent, or an echo request.
pub fn icmp_packet(icmp: synack_core::wire::IcmpRepr<'_>) -> Vec<u8> {
    use synack_core::wire::{IpProtocol, IpRepr};
    let ip = IpRepr::new(PEER, US, IpProtocol::Icmp, icmp.buffer_len(), 64).unwrap();
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p[..20]);
    icmp.emit_v4(&mut p[20..]);
    p
}
