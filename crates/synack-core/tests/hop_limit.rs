//! `IP_TTL` / `IPV6_UNICAST_HOPS` ([`SocketOptions::hop_limit`], `Endpoint::set_hop_limit`)
//! against a scripted peer in virtual time: 64 until set, the SYN and SYN-ACK marked by the
//! socket's option, every later packet by the connection's value, and the packets Linux
//! sends from its control socket (TIME-WAIT's answers after the ACK that began it, resets for
//! segments nobody owns) with the default. Every packet is parsed, so an IPv4 header
//! checksum left stale would fail it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{SeqNumber, SocketOptions, SynCookies};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;

fn with_hop_limit(hop_limit: u8) -> SocketOptions {
    SocketOptions {
        hop_limit: Some(hop_limit),
        ..Default::default()
    }
}

#[test]
fn the_default_is_64_in_both_families() {
    for peer_ip in [PEER, PEER6] {
        let (mut h, c, _, _, syn) = active_open(peer_ip, &SocketOptions::default());
        assert_eq!(syn.hop_limit, 64, "{peer_ip}");
        assert_eq!(h.ep.hop_limit(c).unwrap(), 64);
        h.ep.send(c, b"hello").unwrap();
        assert_eq!(h.one().hop_limit, 64);
    }
}

#[test]
fn the_socket_option_marks_the_syn_and_all_that_follows_in_both_families() {
    for (peer_ip, hop_limit) in [(PEER, 5), (PEER6, 1)] {
        let (mut h, c, _, _, syn) = active_open(peer_ip, &with_hop_limit(hop_limit));
        assert_eq!(syn.hop_limit, hop_limit, "{peer_ip}");
        assert!(h.sent.iter().all(|(_, s)| s.hop_limit == hop_limit));
        assert_eq!(h.ep.hop_limit(c).unwrap(), hop_limit);
        h.ep.send(c, &[1u8; 300]).unwrap();
        assert_eq!(h.one().hop_limit, hop_limit);
        // The retransmission timeout's resend too.
        let (_, resent) = h.next_timeout();
        assert_eq!(resent.len(), 1, "{resent:?}");
        assert_eq!(resent[0].hop_limit, hop_limit);
    }
}

#[test]
fn setting_it_on_a_connection_changes_what_follows_and_keeps_the_tos() {
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    h.ep.set_tos(c, 0xb8).unwrap();
    h.ep.set_hop_limit(c, 7).unwrap();
    assert_eq!(h.ep.hop_limit(c).unwrap(), 7);
    h.ep.send(c, &[2u8; 100]).unwrap();
    let data = h.one();
    assert_eq!((data.hop_limit, data.ds), (7, 0xb8));
    // A pure ACK of the peer's data.
    h.inject(
        peer,
        us,
        Out::new(ACK, 10_001, 0)
            .ackn(syn.seq + 101)
            .data(&[3u8; 1000]),
    );
    // At once or delayed, whichever the receiver picks.
    h.advance(Duration::from_millis(200));
    h.drain();
    let ack = h.sent.last().unwrap().1.clone();
    assert!(ack.is(ACK) && ack.ack == SeqNumber(11_001), "{ack:?}");
    assert_eq!((ack.hop_limit, ack.ds), (7, 0xb8));
    // Back to the default, the TOS untouched.
    h.ep.set_hop_limit(c, 64).unwrap();
    h.ep.send(c, &[2u8; 100]).unwrap();
    let data = h.one();
    assert_eq!((data.hop_limit, data.ds), (64, 0xb8));
    // An abort's reset is the connection's own: Linux's tcp_send_active_reset sends it from
    // the socket.
    h.ep.set_hop_limit(c, 200).unwrap();
    h.ep.abort(c).unwrap();
    let rst = h.one();
    assert!(rst.has(RST), "{rst:?}");
    assert_eq!(rst.hop_limit, 200);
}

#[test]
fn a_listener_marks_its_syn_acks_and_its_connections() {
    for peer_ip in [PEER, PEER6] {
        let mut h = Harness::new(config());
        let us = SocketAddr::new(if peer_ip == PEER { US } else { US6 }, 80);
        let l = h.ep.listen_with(us, 8, &with_hop_limit(9)).unwrap();
        assert_eq!(h.ep.listener_options(l).unwrap().hop_limit, Some(9));
        let peer = SocketAddr::new(peer_ip, 40_000);
        h.inject(peer, us, Out::new(SYN, 5_000, 0).mss(1000));
        let sa = h.one();
        assert!(sa.is(SYN | ACK), "{sa:?}");
        assert_eq!(sa.hop_limit, 9, "{peer_ip}");
        h.inject(peer, us, Out::new(ACK, 5_001, 0).ackn(sa.seq + 1));
        let c = h.ep.accept(l).unwrap();
        assert_eq!(h.ep.hop_limit(c).unwrap(), 9);
        h.ep.send(c, b"hi").unwrap();
        assert_eq!(h.one().hop_limit, 9);

        // A change reaches the SYN-ACKs after it.
        let opts = with_hop_limit(33);
        h.ep.set_listener_options(l, &opts).unwrap();
        let peer = SocketAddr::new(peer_ip, 40_001);
        h.inject(peer, us, Out::new(SYN, 7_000, 0).mss(1000));
        assert_eq!(h.one().hop_limit, 33);
    }
}

#[test]
fn a_syn_cookie_answer_and_the_connection_it_rebuilds_take_the_listeners_value() {
    let mut cfg = config();
    cfg.syncookies(SynCookies::Always);
    let mut h = Harness::new(cfg);
    let us = SocketAddr::new(US, 80);
    let l = h.ep.listen_with(us, 8, &with_hop_limit(11)).unwrap();
    let peer = SocketAddr::new(PEER, 40_000);
    h.inject(peer, us, Out::new(SYN, 5_000, 0).mss(1000));
    let sa = h.one();
    assert!(sa.is(SYN | ACK), "{sa:?}");
    assert_eq!(sa.hop_limit, 11);
    assert_eq!(h.ep.stats().syncookies_sent, 1);
    h.inject(peer, us, Out::new(ACK, 5_001, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.hop_limit(c).unwrap(), 11);
    h.ep.send(c, b"hi").unwrap();
    assert_eq!(h.one().hop_limit, 11);
}

#[test]
fn time_wait_answers_and_resets_for_no_connection_keep_the_default() {
    let (mut h, c, us, peer, syn) = active_open(PEER, &with_hop_limit(9));
    h.ep.close(h.now, c).unwrap();
    let fin = h.one();
    assert!(fin.has(FIN), "{fin:?}");
    assert_eq!(fin.hop_limit, 9);
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    let last = h.one();
    // Our FIN acknowledged with the peer's: TIME-WAIT (the handle went with `close`). The
    // ACK that took us there is the socket's, as Linux's tcp_fin sends it before
    // tcp_time_wait.
    assert!(last.is(ACK), "{last:?}");
    assert_eq!(last.hop_limit, 9);
    // The peer's FIN again: TIME-WAIT answers with the default.
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    let again = h.one();
    assert!(again.is(ACK), "{again:?}");
    assert_eq!(again.hop_limit, 64, "TIME-WAIT answers with the default");
    // A segment for a port nobody listens on.
    h.inject(
        SocketAddr::new(PEER, 40_000),
        SocketAddr::new(US, 9),
        Out::new(SYN, 1, 0),
    );
    let rst = h.one();
    assert!(rst.has(RST), "{rst:?}");
    assert_eq!(rst.hop_limit, 64);
}
