//! Explicit Congestion Notification (RFC 3168) and IP_TOS, against a scripted peer in
//! virtual time: negotiation in each mode, ECT(0) on new data only, the receiver's ECE echo
//! until CWR, the sender's one reduction per window, and the DSCP bits on the wire.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_core::testing::Pair;
use synack_core::wire::{Ecn, TcpFlags};
use synack_core::{Config, ConnectionHandle, EcnMode, Error, SeqNumber, SocketOptions, SynCookies};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const ECE: TcpFlags = TcpFlags::ECE;
const CWR: TcpFlags = TcpFlags::CWR;

fn ecn_of(seg: &Seg) -> Ecn {
    Ecn::from_ds(seg.ds)
}

fn cfg(mode: EcnMode) -> Config {
    let mut c = config();
    c.ecn(mode).pacing(false);
    c
}

/// An active open in `mode` answered by a SYN-ACK with `synack_flags` added (and the
/// peer's MSS 1000, SACK): the harness, the connection, our address, the peer's, our SYN.
fn active(
    mode: EcnMode,
    synack_flags: TcpFlags,
) -> (Harness, ConnectionHandle, SocketAddr, SocketAddr, Seg) {
    let mut h = Harness::new(cfg(mode));
    let peer = SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    let sa = Out::new(SYN | ACK | synack_flags, 10_000, 0)
        .ackn(syn.seq + 1)
        .mss(1000)
        .sack_ok();
    h.inject(peer, syn.src, sa);
    let ack = h.one();
    assert!(ack.is(ACK), "{ack:?}");
    let _ = h.events();
    (h, c, syn.src, peer, syn)
}

/// An ECN connection we opened, with the peer's next sequence number 10,001 and ours
/// `syn.seq + 1`.
fn ecn_conn() -> (Harness, ConnectionHandle, SocketAddr, SocketAddr, Seg) {
    let (h, c, us, peer, syn) = active(EcnMode::On, ECE);
    assert!(h.ep.ecn(c).unwrap());
    (h, c, us, peer, syn)
}

// ---- Negotiation ---------------------------------------------------------------------------

#[test]
fn on_asks_with_ece_and_cwr_and_takes_an_ece_synack() {
    let (mut h, c, _, _, syn) = ecn_conn();
    assert!(syn.has(SYN | ECE | CWR), "{syn:?}");
    assert_eq!(
        ecn_of(&syn),
        Ecn::NotEct,
        "a SYN is never ECN-capable (§6.1.1)"
    );
    h.ep.send(c, &[7u8; 500]).unwrap();
    let data = h.one();
    assert_eq!(data.payload.len(), 500);
    assert_eq!(ecn_of(&data), Ecn::Ect0);
    assert!(!data.has(ECE) && !data.has(CWR));
}

#[test]
fn accept_only_and_off_never_ask() {
    for mode in [EcnMode::AcceptOnly, EcnMode::Off] {
        let (mut h, c, _, _, syn) = active(mode, ECE);
        assert!(!syn.has(ECE) && !syn.has(CWR), "{mode:?}: {syn:?}");
        assert!(
            !h.ep.ecn(c).unwrap(),
            "{mode:?}: an ECE SYN-ACK to a plain SYN"
        );
        h.ep.send(c, &[7u8; 100]).unwrap();
        assert_eq!(ecn_of(&h.one()), Ecn::NotEct);
    }
    assert_eq!(Config::default().get_ecn(), EcnMode::AcceptOnly);
    assert_eq!(Config::linux().get_ecn(), EcnMode::AcceptOnly);
}

#[test]
fn a_peer_without_ecn_or_reflecting_our_flags_falls_back() {
    // No ECE in the SYN-ACK: an old peer. ECE with CWR: a reflector (RFC 3168 §6.1.1).
    for flags in [TcpFlags::empty(), ECE | CWR] {
        let (mut h, c, us, peer, syn) = active(EcnMode::On, flags);
        assert!(!h.ep.ecn(c).unwrap(), "{flags:?}");
        h.ep.send(c, &[7u8; 100]).unwrap();
        let data = h.one();
        assert_eq!(ecn_of(&data), Ecn::NotEct);
        // A CE mark from such a peer is not echoed.
        let ce = Out::new(ACK, 10_001, 0)
            .ackn(syn.seq + 101)
            .data(&[1u8; 100])
            .ecn(Ecn::Ce);
        h.inject(peer, us, ce);
        h.advance(Duration::from_millis(200));
        assert!(h.sent.iter().all(|(_, s)| s.has(SYN) || !s.has(ECE)));
    }
}

#[test]
fn only_the_first_syn_asks() {
    let mut h = Harness::new(cfg(EcnMode::On));
    let peer = SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    assert!(h.one().has(ECE | CWR));
    let (_, again) = h.next_timeout();
    assert_eq!(again.len(), 1);
    assert!(
        again[0].is(SYN),
        "a retransmitted SYN falls back: {:?}",
        again[0]
    );
    // A SYN-ACK with ECE (to the first SYN) still turns ECN on, as in Linux.
    let sa = Out::new(SYN | ACK | ECE, 10_000, 0).ackn(again[0].seq + 1);
    h.inject(peer, again[0].src, sa);
    let _ = h.drain();
    assert!(h.ep.ecn(c).unwrap());
}

/// A SYN to a listener in `mode`, marked `ecn` and with `flags` added: the SYN-ACK.
fn passive(mode: EcnMode, flags: TcpFlags, ecn: Ecn) -> Seg {
    let mut h = Harness::new(cfg(mode));
    let us = SocketAddr::new(US, 80);
    h.ep.listen(us, 8).unwrap();
    let peer = SocketAddr::new(PEER, 40_000);
    h.inject(peer, us, Out::new(SYN | flags, 5_000, 0).mss(1000).ecn(ecn));
    h.one()
}

#[test]
fn a_listener_agrees_in_its_synack_unless_off() {
    for mode in [EcnMode::On, EcnMode::AcceptOnly] {
        let sa = passive(mode, ECE | CWR, Ecn::NotEct);
        assert!(sa.has(SYN | ACK | ECE), "{mode:?}: {sa:?}");
        assert!(!sa.has(CWR), "an ECN-setup SYN-ACK has ECE alone");
        assert_eq!(ecn_of(&sa), Ecn::NotEct);
    }
    assert!(!passive(EcnMode::Off, ECE | CWR, Ecn::NotEct).has(ECE));
    // Half an ECN-setup SYN, or an ECN-capable SYN, is not one.
    assert!(!passive(EcnMode::AcceptOnly, ECE, Ecn::NotEct).has(ECE));
    assert!(!passive(EcnMode::AcceptOnly, ECE | CWR, Ecn::Ect0).has(ECE));
    assert!(!passive(EcnMode::AcceptOnly, TcpFlags::empty(), Ecn::NotEct).has(ECE));
}

#[test]
fn syn_cookies_carry_ecn_in_the_timestamp() {
    for ts in [true, false] {
        let mut c = cfg(EcnMode::AcceptOnly);
        c.syncookies(SynCookies::Always);
        let mut h = Harness::new(c);
        let us = SocketAddr::new(US, 80);
        let l = h.ep.listen(us, 8).unwrap();
        let peer = SocketAddr::new(PEER, 40_000);
        let mut syn = Out::new(SYN | ECE | CWR, 5_000, 0).mss(1000);
        if ts {
            syn = syn.ts(1, 0);
        }
        h.inject(peer, us, syn);
        let sa = h.one();
        // Without timestamps the cookie has no room for it: not offered.
        assert_eq!(sa.has(ECE), ts, "ts {ts}: {sa:?}");
        let mut ack = Out::new(ACK, 5_001, 0).ackn(sa.seq + 1);
        if let Some(t) = sa.ts {
            ack = ack.ts(2, t.tsval);
        }
        h.inject(peer, us, ack);
        let s = h.ep.accept(l).unwrap();
        assert_eq!(h.ep.ecn(s).unwrap(), ts);
        h.ep.send(s, &[1u8; 100]).unwrap();
        let data = h.one();
        let want = if ts { Ecn::Ect0 } else { Ecn::NotEct };
        assert_eq!(ecn_of(&data), want);
    }
}

// ---- Data and marks ------------------------------------------------------------------------

#[test]
fn ect0_goes_on_new_data_only() {
    let (mut h, c, _, _, syn) = ecn_conn();
    h.ep.send(c, &[7u8; 3000]).unwrap();
    let first = h.drain();
    assert_eq!(first.len(), 3);
    assert!(first.iter().all(|s| ecn_of(s) == Ecn::Ect0));
    // Nothing acknowledged: the probe and the RTO resend not-ECT (§6.1.5).
    let end = syn.seq + 3001;
    h.advance(Duration::from_secs(3));
    let again: Vec<Seg> = h.sent.iter().skip(5).map(|(_, s)| s.clone()).collect();
    assert!(again.iter().any(|s| s.seq == syn.seq + 1), "{again:?}");
    for s in &again {
        assert!(s.seq < end);
        assert_eq!(ecn_of(s), Ecn::NotEct, "{s:?}");
    }
    // The timeout reduced the window: the first new data after it carries CWR.
    let o = Out::new(ACK, 10_001, 0).ackn(end);
    h.inject(SocketAddr::new(PEER, 80), syn.src, o);
    let _ = h.drain();
    h.ep.send(c, &[7u8; 100]).unwrap();
    let next = h.one();
    assert!(next.has(CWR) && ecn_of(&next) == Ecn::Ect0, "{next:?}");
}

#[test]
fn ce_is_echoed_until_cwr() {
    let (mut h, c, us, peer, syn) = ecn_conn();
    let ack = syn.seq + 1;
    let seq = std::cell::Cell::new(SeqNumber(10_001));
    let send = |h: &mut Harness, flags: TcpFlags, ecn: Ecn| {
        let o = Out::new(ACK | flags, 0, 0)
            .seqn(seq.get())
            .ackn(ack)
            .data(&[1u8; 1000])
            .ecn(ecn);
        seq.set(seq.get() + 1000);
        h.inject(peer, us, o);
    };
    // Past quick-ACK mode first, so that an immediate ACK is the mark's doing.
    for _ in 0..20 {
        send(&mut h, TcpFlags::empty(), Ecn::Ect0);
        let _ = h.drain();
    }
    let mut buf = [0u8; 65536];
    while h.ep.recv(h.now, c, &mut buf).is_ok() {}
    let _ = h.drain();
    send(&mut h, TcpFlags::empty(), Ecn::Ect0);
    assert!(h.drain().is_empty(), "one segment is ACKed after a delay");
    send(&mut h, TcpFlags::empty(), Ecn::Ce);
    let echo = h.one();
    assert!(echo.has(ACK | ECE), "{echo:?}");
    assert_eq!(echo.ack, seq.get());
    assert_eq!(ecn_of(&echo), Ecn::NotEct, "a pure ACK is not ECN-capable");
    // The echo goes on, on every ACK, until CWR; the mark's next segment is ACKed at once.
    send(&mut h, TcpFlags::empty(), Ecn::Ect0);
    assert!(h.one().has(ECE));
    h.ep.send(c, &[9u8; 10]).unwrap();
    let data = h.one();
    assert!(data.has(ECE) && ecn_of(&data) == Ecn::Ect0, "{data:?}");
    send(&mut h, CWR, Ecn::Ect0);
    h.advance(Duration::from_millis(200));
    let last = h.sent.last().unwrap().1.clone();
    assert!(!last.has(ECE), "CWR ends the echo: {last:?}");
    assert_eq!(last.ack, seq.get());
    assert_eq!(h.ep.stats().ecn_ce_received, 1);
}

#[test]
fn ece_reduces_the_window_once_per_window_and_sends_cwr() {
    let (mut h, c, us, peer, syn) = ecn_conn();
    let base = syn.seq + 1;
    h.ep.send(c, &[7u8; 10_000]).unwrap();
    let flight = h.drain();
    assert_eq!(flight.len(), 10);
    let before = h.ep.info(h.now, c).unwrap();
    assert_eq!((before.ca_state, before.snd_cwnd), (0, 10));
    let ece_ack = |h: &mut Harness, n: usize| {
        let o = Out::new(ACK | ECE, 10_001, 0).ackn(base + n);
        h.inject(peer, us, o);
    };
    // The first echo: CWR state, ssthresh from CUBIC's β (0.7 of 10), PRR's first step
    // (Linux 6.x: 8 in flight, ssthresh 7, one delivered and SND.UNA advanced: 8 + 1).
    h.ep.send(c, &[8u8; 5_000]).unwrap();
    ece_ack(&mut h, 1000);
    let i = h.ep.info(h.now, c).unwrap();
    assert_eq!(i.ca_state, 2, "TCP_CA_CWR");
    assert_eq!(i.snd_ssthresh, 7);
    let out = h.drain();
    assert!(!out.is_empty());
    assert!(out[0].has(CWR), "the first new data carries CWR: {out:?}");
    assert!(out.iter().skip(1).all(|s| !s.has(CWR)));
    assert_eq!(h.ep.stats().ecn_cwr_sent, 1);
    let sent_end = out.last().map(|s| s.seq + s.payload.len()).unwrap();
    // More echoes within the same window change nothing.
    for n in [2000, 3000, 4000] {
        ece_ack(&mut h, n);
        let _ = h.drain();
        let i = h.ep.info(h.now, c).unwrap();
        assert_eq!((i.ca_state, i.snd_ssthresh), (2, 7), "ack {n}");
    }
    assert_eq!(h.ep.stats().ecn_ece_received, 4);
    // Past the window the mark was echoed in (SND.MAX then: 10,000), CWR ends with
    // cwnd = ssthresh, and a new echo may reduce again.
    let o = Out::new(ACK, 10_001, 0).ackn(base + 10_001);
    h.inject(peer, us, o);
    let i = h.ep.info(h.now, c).unwrap();
    assert_eq!((i.ca_state, i.snd_cwnd), (0, 7));
    let _ = h.drain();
    ece_ack(&mut h, (sent_end - base).min(11_000));
    let i = h.ep.info(h.now, c).unwrap();
    assert_eq!(i.ca_state, 2);
    assert!(i.snd_ssthresh < 7, "{i:?}");
    assert_eq!(h.ep.stats().ecn_ece_received, 5);
}

#[test]
fn ece_from_a_non_ecn_peer_is_ignored() {
    let (mut h, c, us, peer, syn) = active(EcnMode::AcceptOnly, TcpFlags::empty());
    h.ep.send(c, &[7u8; 5000]).unwrap();
    let _ = h.drain();
    h.inject(
        peer,
        us,
        Out::new(ACK | ECE, 10_001, 0).ackn(syn.seq + 1001),
    );
    let i = h.ep.info(h.now, c).unwrap();
    assert_eq!(i.ca_state, 0);
    assert_eq!(h.ep.stats().ecn_ece_received, 0);
}

#[test]
fn two_ecn_endpoints_transfer_with_ect() {
    let mut client = cfg(EcnMode::On);
    client.seed(Some([1; 32]));
    let server = cfg(EcnMode::AcceptOnly);
    let mut p = Pair::with_configs(client, server);
    let l = p
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 8)
        .unwrap();
    let (c, s) = p.connect(l, 80);
    assert!(p.client.ecn(c).unwrap() && p.server.ecn(s).unwrap());
    let data = vec![5u8; 200_000];
    let mut sent = 0;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..10_000 {
        if sent < data.len() {
            match p.client.send(c, &data[sent..]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("{e}"),
            }
        }
        p.pump();
        while let Ok(n) = p.server.recv(p.now, s, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        if got.len() == data.len() {
            break;
        }
        if !p.pump() {
            p.advance();
        }
    }
    assert_eq!(got, data);
    // Nothing marked the packets: no echo, no reduction.
    assert_eq!(p.client.stats().ecn_ece_received, 0);
    assert_eq!(p.server.stats().ecn_ce_received, 0);
}

// ---- IP_TOS --------------------------------------------------------------------------------

#[test]
fn tos_sets_the_dscp_of_every_packet_and_keeps_ecn_the_stacks() {
    let (mut h, c, _, _, _) = ecn_conn();
    // The ECN bits of the value are not the application's.
    h.ep.set_tos(c, 0xb8 | 0b11).unwrap();
    assert_eq!(h.ep.tos(c).unwrap(), 0xb8);
    h.ep.send(c, &[7u8; 100]).unwrap();
    let data = h.one();
    assert_eq!(data.ds, 0xb8 | Ecn::Ect0.bits());
    // A pure ACK: DSCP, not ECN-capable.
    let (_, rto) = h.next_timeout();
    assert_eq!(rto[0].ds, 0xb8, "a retransmission is not ECT");
    h.ep.set_tos(c, 0).unwrap();
    h.ep.send(c, &[7u8; 100]).unwrap();
    h.advance(Duration::from_secs(5));
    let last = h.sent.last().unwrap().1.clone();
    assert_eq!(last.ds & !Ecn::MASK, 0);
}

#[test]
fn socket_option_tos_marks_the_syn_both_families() {
    for peer_ip in [PEER, PEER6] {
        let mut h = Harness::new(cfg(EcnMode::On));
        let opts = SocketOptions {
            tos: Some(0x28),
            ..Default::default()
        };
        let peer = SocketAddr::new(peer_ip, 80);
        let c = h.ep.connect_with(h.now, peer, None, &opts).unwrap();
        let syn = h.one();
        assert_eq!(syn.ds, 0x28, "{peer_ip}");
        assert_eq!(h.ep.tos(c).unwrap(), 0x28);
    }
    // A listener's option reaches its SYN-ACKs.
    let mut h = Harness::new(cfg(EcnMode::AcceptOnly));
    let us = SocketAddr::new(US6, 80);
    let opts = SocketOptions {
        tos: Some(0x48),
        ..Default::default()
    };
    h.ep.listen_with(us, 8, &opts).unwrap();
    let peer = SocketAddr::new(PEER6, 40_000);
    h.inject(peer, us, Out::new(SYN | ECE | CWR, 5_000, 0));
    let sa = h.one();
    assert!(sa.has(ECE));
    assert_eq!(sa.ds, 0x48);
}

#[test]
fn marks_on_the_path_slow_the_sender_without_a_loss() {
    use std::ops::ControlFlow;
    use synack_core::testing::{deliver, drain, payload_len};
    let mut p = Pair::with_configs(cfg(EcnMode::On), cfg(EcnMode::AcceptOnly));
    let l = p
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 8)
        .unwrap();
    let (c, s) = p.connect(l, 80);
    let data = vec![3u8; 2_000_000];
    let (mut sent, mut got, mut marked) = (0, 0, 0u64);
    let mut buf = vec![0u8; 65536];
    let mut rbuf = vec![0u8; 65536];
    let mut n = 0u64;
    for _ in 0..100_000 {
        if sent < data.len() {
            if let Ok(k) = p.client.send(c, &data[sent..]) {
                sent += k;
            }
        }
        let now = p.now;
        // A router marking every 40th ECN-capable data packet CE instead of dropping it.
        let moved = drain(&mut p.client, now, &mut buf, |pkt, _| {
            let mut pkt = pkt.to_vec();
            let ds = synack_core::wire::ip::ds_field(&pkt);
            if payload_len(&pkt) > 0 && Ecn::from_ds(ds) == Ecn::Ect0 {
                n += 1;
                if n.is_multiple_of(40) {
                    synack_core::wire::ip::set_ds_field(&mut pkt, ds | Ecn::Ce.bits());
                    marked += 1;
                }
            }
            deliver(&mut p.server, now, &pkt);
            ControlFlow::Continue(())
        }) + drain(&mut p.server, now, &mut buf, |pkt, _| {
            deliver(&mut p.client, now, pkt);
            ControlFlow::Continue(())
        });
        while let Ok(k) = p.server.recv(p.now, s, &mut rbuf) {
            if k == 0 {
                break;
            }
            assert!(rbuf[..k].iter().all(|&b| b == 3));
            got += k;
        }
        if got == data.len() {
            break;
        }
        if moved == 0 {
            p.advance();
        }
    }
    assert_eq!(got, data.len());
    assert!(marked > 0);
    let (cs, ss) = (p.client.stats(), p.server.stats());
    assert_eq!(ss.ecn_ce_received, marked);
    assert!(cs.ecn_ece_received > 0);
    // One reduction, one CWR, per window with a mark; nothing was lost or resent.
    assert!(cs.ecn_cwr_sent > 0 && cs.ecn_cwr_sent <= marked, "{cs:?}");
    assert_eq!(cs.retransmits, 0, "{cs:?}");
    let i = p.client.info(p.now, c).unwrap();
    assert!(
        i.snd_ssthresh < 0x7fff_ffff,
        "the marks set ssthresh: {i:?}"
    );
}

/// The ACK that ends a timeout's recovery echoes a congestion mark. Linux ends the Loss
/// state first (`tcp_process_loss`), then starts CWR (`tcp_try_to_open`) with ssthresh from
/// the window of two segments, and PRR sets the window (`tcp_cong_control`): CWR, 2, 2, as
/// `ecn-echo-ends-loss.pkt` shows on the kernel. synack grew the window first and took
/// ssthresh from the grown one (found in review).
#[test]
fn an_echo_on_the_ack_ending_a_timeouts_recovery_reduces_from_the_window_before_it() {
    let (mut h, c, us, peer, syn) = ecn_conn();
    let base = syn.seq + 1;
    h.ep.send(c, &[7u8; 10_000]).unwrap();
    assert_eq!(h.drain().len(), 10);
    for _ in 0..10 {
        let (_, out) = h.next_timeout();
        if out.iter().any(|s| s.seq == base) {
            break;
        }
    }
    assert_eq!(h.ep.info(h.now, c).unwrap().ca_state, 4);
    h.advance(Duration::from_millis(10));
    h.inject(peer, us, Out::new(ACK, 10_001, 0).ackn(base + 1000));
    let _ = h.drain();
    let i = h.ep.info(h.now, c).unwrap();
    assert_eq!((i.ca_state, i.snd_cwnd, i.snd_ssthresh), (4, 2, 7), "{i:?}");
    h.advance(Duration::from_millis(10));
    h.inject(peer, us, Out::new(ACK | ECE, 10_001, 0).ackn(base + 10_000));
    let i = h.ep.info(h.now, c).unwrap();
    assert_eq!((i.ca_state, i.snd_cwnd, i.snd_ssthresh), (2, 2, 2), "{i:?}");
}
