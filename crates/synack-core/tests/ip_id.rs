//! The IPv4 identification and DF flag against a scripted peer in virtual time, as Linux
//! sets them: each connection counts its packets from a start of its own (`inet_id`), a
//! super-segment counting once for each segment it is cut into; what Linux sends from a
//! request sock or a control socket carries 0 (a SYN-ACK answering a SYN and the request
//! sock's other answers, TIME-WAIT's answers, resets answering a segment); DF is set until
//! an ICMP "fragmentation needed" reports a next-hop MTU below 552, Linux's smallest path
//! MTU, and locks the path (for the connection's life, as on Linux). The TTLs of the same packets are in `hop_limit.rs` and the `ip-ttl-*.pkt` scripts.
//! Every packet is parsed, so an IPv4 header checksum left stale would fail it.

mod common;

use std::time::Duration;

use common::*;
use synack_core::wire::gso::{self, TcpChecksum};
use synack_core::wire::{IcmpRepr, TcpFlags};
use synack_core::{SeqNumber, SocketOptions};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;

#[test]
fn an_active_open_counts_its_packets_from_its_own_start() {
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    let ack = h.sent.last().unwrap().1.clone();
    assert!(syn.dont_frag && ack.dont_frag);
    assert_eq!(ack.ip_id, syn.ip_id.wrapping_add(1), "{syn:?} {ack:?}");
    h.ep.send(c, &[1u8; 2500]).unwrap();
    let data = h.drain();
    assert_eq!(data.len(), 3, "{data:?}");
    for (i, s) in data.iter().enumerate() {
        assert_eq!(s.ip_id, syn.ip_id.wrapping_add(2 + i as u16));
        assert!(s.dont_frag);
    }
    // A retransmission is a packet like any other.
    let (_, resent) = h.next_timeout();
    assert_eq!(resent[0].ip_id, syn.ip_id.wrapping_add(5));
    // A second connection to the same peer starts elsewhere (keyed by its 4-tuple and
    // ISN, as unpredictable as Linux's random start).
    let c2 = h.ep.connect(h.now, peer).unwrap();
    let syn2 = h.drain().into_iter().find(|s| s.is(SYN)).unwrap();
    assert_ne!(syn2.src, us);
    assert_ne!(syn2.ip_id, syn.ip_id.wrapping_add(6), "{c2:?}");
}

#[test]
fn a_syn_ack_carries_0_and_the_connection_counts_from_its_own_start() {
    let mut h = Harness::new(config());
    let (l, server, client, synack) = passive_syn(&mut h);
    assert_eq!(synack.ip_id, 0, "from Linux's request sock");
    assert!(synack.dont_frag);
    // So does the SYN-ACK resent at its timeout.
    let (_, resent) = h.next_timeout();
    assert!(resent[0].is(SYN | ACK));
    assert_eq!(resent[0].ip_id, 0);
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(synack.seq + 1));
    let c = h.ep.accept(l).unwrap();
    h.ep.send(c, b"one").unwrap();
    let first = h.one();
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(synack.seq + 4));
    h.ep.send(c, b"two").unwrap();
    let second = h.one();
    assert_eq!(second.ip_id, first.ip_id.wrapping_add(1));
    assert!(first.dont_frag && second.dont_frag);
}

#[test]
fn a_super_segment_counts_once_for_each_segment_it_is_cut_into() {
    let mut cfg = config();
    cfg.gso_max_size(65535);
    let mut h = Harness::new(cfg);
    let peer = std::net::SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    let synack = Out::new(SYN | ACK, 10_000, 0)
        .ackn(syn.seq + 1)
        .mss(1000)
        .wscale(7)
        .window(65535);
    h.inject(peer, syn.src, synack);
    let _ = h.one();
    h.ep.send(c, &[7u8; 30_000]).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut packets = Vec::new();
    h.drain_with(&mut buf, |p, t| {
        packets.push((p.to_vec(), t.segment_size));
        std::ops::ControlFlow::Continue(())
    });
    // Every segment, cut as a TSO device (or the kernel's software GSO) cuts them.
    let mut ids = Vec::new();
    for (packet, size) in &packets {
        match size {
            Some(size) => {
                for piece in gso::split(packet, *size, TcpChecksum::Complete).unwrap() {
                    ids.push(parse_out(&piece).unwrap().ip_id);
                }
            }
            None => ids.push(parse_out(packet).unwrap().ip_id),
        }
    }
    assert!(
        ids.len() > packets.len(),
        "super-segments: {}",
        packets.len()
    );
    let expected: Vec<u16> = (0..ids.len() as u16)
        .map(|i| syn.ip_id.wrapping_add(2 + i))
        .collect();
    assert_eq!(ids, expected);
}

#[test]
fn time_wait_answers_and_resets_carry_0() {
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    h.ep.shutdown(c).unwrap();
    let fin = h.one();
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    let ack = h.one();
    assert_eq!(ack.ip_id, fin.ip_id.wrapping_add(1), "the socket's own ACK");
    // The peer resends its FIN: the answer leaves as from Linux's control socket.
    h.advance(Duration::from_secs(1));
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    let again = h.one();
    assert_eq!(again.ip_id, 0);
    assert!(again.dont_frag);
    // An RST for a segment that has no connection.
    let stranger = std::net::SocketAddr::new(PEER, 81);
    h.inject(stranger, us, Out::new(ACK, 5, 5));
    let rst = h.one();
    assert!(rst.has(TcpFlags::RST));
    assert_eq!(rst.ip_id, 0);
}

#[test]
fn a_reset_answering_a_bad_syn_ack_carries_0_and_the_count_goes_on() {
    let mut h = Harness::new(config());
    let peer = std::net::SocketAddr::new(PEER, 80);
    let opts = SocketOptions {
        hop_limit: Some(9),
        ..Default::default()
    };
    let _c = h.ep.connect_with(h.now, peer, None, &opts).unwrap();
    let syn = h.one();
    let bad = Out::new(SYN | ACK, 10_000, 0).ackn(syn.seq + 5000);
    h.inject(peer, syn.src, bad);
    let sent = h.drain();
    let rst = sent.iter().find(|s| s.has(TcpFlags::RST)).expect("an RST");
    assert_eq!((rst.ip_id, rst.hop_limit), (0, 64), "from a control socket");
    // The SYN sent again is the socket's: its count goes on from the first SYN's.
    let (_, again) = h.next_timeout();
    let resent = again.iter().find(|s| s.is(SYN)).expect("the SYN again");
    assert_eq!(resent.ip_id, syn.ip_id.wrapping_add(1));
    assert_eq!(resent.hop_limit, 9);
}

#[test]
fn a_passive_open_answers_from_the_request_sock_until_its_handshake_ends() {
    let mut h = Harness::new(config());
    let (l, server, client, synack) = passive_syn(&mut h);
    // A segment out of the window: the request sock's answer, ID 0.
    h.inject(
        client,
        server,
        Out::new(ACK, 100_000, 0).ackn(synack.seq + 1),
    );
    let answer = h.one();
    assert!(answer.is(ACK));
    assert_eq!(answer.ip_id, 0);
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(synack.seq + 1));
    let c = h.ep.accept(l).unwrap();
    h.ep.send(c, b"data").unwrap();
    assert_ne!(
        h.one().ip_id,
        0,
        "the socket's own count (keyed; not 0 for this seed)"
    );
}

#[test]
fn closing_and_an_orphaned_fin_wait_2_answer_from_the_control_socket() {
    // CLOSING ends in TIME-WAIT on the ACK of our FIN, which owes no answer: the next
    // answer is TIME-WAIT's.
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    h.ep.shutdown(c).unwrap();
    let _fin = h.one();
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 1));
    let _ack = h.one();
    h.inject(peer, us, Out::new(ACK, 10_002, 0).ackn(syn.seq + 2));
    h.none();
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    assert_eq!(h.one().ip_id, 0);

    // close(), then a bare ACK of our FIN: Linux's TIME-WAIT sock in its FIN-WAIT-2
    // substate acknowledges the peer's FIN.
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    h.ep.close(h.now, c).unwrap();
    let fin = h.one();
    h.inject(peer, us, Out::new(ACK, 10_001, 0).ackn(syn.seq + 2));
    h.none();
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    let ack = h.one();
    assert_eq!(ack.ack, SeqNumber(10_002));
    assert_eq!(ack.ip_id, 0, "after {fin:?}");

    // The same with the FIN riding on the ACK: the socket answers it itself.
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    h.ep.close(h.now, c).unwrap();
    let fin = h.one();
    h.inject(peer, us, Out::new(FIN | ACK, 10_001, 0).ackn(syn.seq + 2));
    assert_eq!(h.one().ip_id, fin.ip_id.wrapping_add(1));
}

#[test]
fn a_next_hop_mtu_below_552_clears_df() {
    for (mtu, df) in [(576, true), (552, true), (300, false)] {
        let (mut h, c, _, _, _) = active_open(PEER, &SocketOptions::default());
        h.ep.send(c, &[9u8; 3000]).unwrap();
        let _ = h.drain();
        let quoted = h.raw.last().unwrap()[..48].to_vec();
        let p = icmp_packet(IcmpRepr::PacketTooBig {
            mtu,
            invoking: &quoted,
        });
        h.inject_raw(&p);
        let resent = h.drain();
        assert!(!resent.is_empty(), "{mtu}");
        assert!(
            resent.iter().all(|s| s.dont_frag == df),
            "{mtu}: {resent:?}"
        );
        assert!(resent.iter().all(|s| s.payload.len() <= 536));
        // The IDs go on counting, without DF or with it.
        let ids: Vec<u16> = resent.iter().map(|s| s.ip_id).collect();
        assert!(
            ids.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "{ids:?}"
        );
    }
}

/// A locked path stays locked when its report expires, as on the route a Linux connection
/// holds (`rt_mtu_locked` outlives the exception): DF stays off, and the MTU of a path
/// through a router is 576 (`ip_dst_mtu_maybe_forward`), so segments grow from 512 to 536
/// bytes and no further (`pmtu-locked-expires.pkt` checks the MSS against the kernel).
/// Later reports are ignored (`ip_mtu_locked`).
#[test]
fn a_locked_path_keeps_df_off_and_grows_to_576_when_the_report_expires() {
    let (mut h, c, us, peer, syn) = active_open(PEER, &SocketOptions::default());
    h.ep.send(c, &[9u8; 3000]).unwrap();
    let _ = h.drain();
    let quoted = h.raw.last().unwrap()[..48].to_vec();
    h.inject_raw(&icmp_packet(IcmpRepr::PacketTooBig {
        mtu: 300,
        invoking: &quoted,
    }));
    let resent = h.drain();
    assert!(!resent.is_empty());
    assert!(resent
        .iter()
        .all(|s| !s.dont_frag && s.payload.len() <= 512));
    h.inject(peer, us, Out::new(ACK, 10_001, 0).ackn(syn.seq + 3001));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_secs(599));
    h.ep.send(c, &[9u8; 1000]).unwrap();
    let held = h.drain();
    let sizes: Vec<usize> = held.iter().map(|s| s.payload.len()).collect();
    assert_eq!(sizes, [512, 488]);
    assert!(held.iter().all(|s| !s.dont_frag));
    h.inject(peer, us, Out::new(ACK, 10_001, 0).ackn(syn.seq + 4001));
    h.advance(Duration::from_secs(1));
    h.ep.send(c, &[9u8; 1000]).unwrap();
    let after = h.drain();
    let sizes: Vec<usize> = after.iter().map(|s| s.payload.len()).collect();
    assert_eq!(sizes, [536, 464]);
    assert!(after.iter().all(|s| !s.dont_frag));
    // A new report below 552 changes nothing now: the path is locked.
    h.inject(peer, us, Out::new(ACK, 10_001, 0).ackn(syn.seq + 5001));
    h.ep.send(c, &[9u8; 600]).unwrap();
    let _ = h.drain();
    let quoted = h.raw.last().unwrap()[..48].to_vec();
    h.inject_raw(&icmp_packet(IcmpRepr::PacketTooBig {
        mtu: 300,
        invoking: &quoted,
    }));
    assert!(h.drain().is_empty(), "nothing sent again");
    assert_eq!(h.ep.info(h.now, c).unwrap().snd_mss, 536);
}

/// The lock does not depend on the MSS in use: a peer whose MSS is below 512, or our own
/// `TCP_MAXSEG` set before the SYN, still has the packets sent without DF once a report
/// below 552 comes (`__ip_rt_update_pmtu` weighs the report against the route's MTU, not
/// the MSS).
#[test]
fn a_report_below_552_clears_df_whatever_the_mss() {
    for (peer_mss, maxseg) in [(400, None), (1000, Some(400))] {
        let mut h = Harness::new(config());
        let peer = std::net::SocketAddr::new(PEER, 80);
        let c = h.ep.connect(h.now, peer).unwrap();
        if let Some(mss) = maxseg {
            h.ep.clamp_mss(c, mss).unwrap();
        }
        let syn = h.one();
        h.inject(
            peer,
            syn.src,
            Out::new(SYN | ACK, 10_000, 0)
                .ackn(syn.seq + 1)
                .mss(peer_mss),
        );
        assert!(h.one().is(ACK));
        h.ep.send(c, &[9u8; 400]).unwrap();
        let first = h.drain();
        assert!(first.iter().all(|s| s.dont_frag));
        let quoted = h.raw.last().unwrap()[..48].to_vec();
        h.inject_raw(&icmp_packet(IcmpRepr::PacketTooBig {
            mtu: 300,
            invoking: &quoted,
        }));
        assert!(h.drain().is_empty(), "400 bytes fit: nothing sent again");
        h.inject(peer, syn.src, Out::new(ACK, 10_001, 0).ackn(syn.seq + 401));
        h.ep.send(c, &[9u8; 400]).unwrap();
        let next = h.drain();
        assert_eq!(next.len(), 1, "{peer_mss} {maxseg:?}");
        assert!(!next[0].dont_frag, "{peer_mss} {maxseg:?}");
    }
}
