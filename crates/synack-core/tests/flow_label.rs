//! IPv6 flow labels (RFC 6437) against a scripted peer in virtual time: every packet of a
//! connection carries one non-zero label, from the SYN on; a retransmission timeout, the
//! SYN's included, moves the connection to a new one (Linux's `sk_rethink_txhash`) and a tail
//! loss probe does not; a SYN cookie's SYN-ACK and the connection its ACK rebuilds share
//! theirs, and the packets the endpoint sends for no connection are labelled by their flow;
//! the labels are keyed, and IPv4 has none. `ipv6-flow-label.pkt` checks the same against the
//! kernel.

mod common;

use std::net::SocketAddr;

use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{SocketOptions, SynCookies};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const RST: TcpFlags = TcpFlags::RST;

#[test]
fn a_connection_keeps_its_label_until_a_timeout_and_ipv4_has_none() {
    for peer_ip in [PEER6, PEER] {
        let (mut h, c, us, peer, syn) = active_open(peer_ip, &SocketOptions::default());
        h.ep.send(c, &[7u8; 300]).unwrap();
        let data = h.one();
        let sent: Vec<u32> = h.sent.iter().map(|(_, s)| s.flow_label).collect();
        assert_eq!(sent.len(), 3, "SYN, ACK, data");
        if peer_ip == PEER {
            assert!(sent.iter().all(|&l| l == 0), "{sent:?}");
            continue;
        }
        let first = syn.flow_label;
        assert_ne!(first, 0, "labelled from the SYN on");
        assert!(first < 1 << 20);
        assert!(sent.iter().all(|&l| l == first), "{sent:?}");
        // Unanswered: the retransmission timeout (after any probe, which keeps the label)
        // resends with a new one, which the connection keeps.
        let mut resent = Vec::new();
        while resent.is_empty() || h.ep.info(h.now, c).unwrap().rto_count == 0 {
            let (_, out) = h.next_timeout();
            resent.extend(out);
            assert!(resent.len() < 4, "{resent:?}");
        }
        let (probes, rto) = resent.split_at(resent.len() - 1);
        assert!(probes.iter().all(|p| p.flow_label == first), "{probes:?}");
        let second = rto[0].flow_label;
        assert_ne!(second, first, "a timeout rethinks the path");
        assert_ne!(second, 0);
        h.inject(
            peer,
            us,
            Out::new(ACK, 10_001, 0).ackn(data.seq + data.payload.len()),
        );
        h.ep.send(c, b"more").unwrap();
        assert_eq!(h.one().flow_label, second);
    }
}

/// A connection that moved to a new label keeps it in TIME-WAIT, compact or not: the ACK
/// of a retransmitted FIN goes in the flow's last label (Linux's `tw_txhash`).
#[test]
fn time_wait_answers_in_the_connections_last_label() {
    const FIN: TcpFlags = TcpFlags::FIN;
    let mut h = Harness::new(config());
    let peer = SocketAddr::new(PEER6, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    // The SYN times out once: a new label from then on.
    let (_, again) = h.next_timeout();
    let label = again[0].flow_label;
    assert_ne!(label, syn.flow_label);
    h.inject(
        peer,
        syn.src,
        Out::new(SYN | ACK, 10_000, 0).ackn(syn.seq + 1).mss(1000),
    );
    assert_eq!(h.one().flow_label, label);
    // We close first and let go; the peer's FIN puts the flow in compact TIME-WAIT.
    h.ep.close(h.now, c).unwrap();
    let fin = h.one();
    assert_eq!(fin.flow_label, label);
    h.inject(
        peer,
        syn.src,
        Out::new(FIN | ACK, 10_001, 0).ackn(fin.seq + 1),
    );
    assert_eq!(h.one().flow_label, label);
    assert_eq!(h.ep.time_wait_count(), 1);
    // Its answer to a retransmitted FIN: the same label.
    h.inject(
        peer,
        syn.src,
        Out::new(FIN | ACK, 10_001, 0).ackn(fin.seq + 1),
    );
    let ack = h.one();
    assert!(ack.is(ACK));
    assert_eq!(ack.flow_label, label);
}

#[test]
fn a_syn_timeout_changes_the_label() {
    let mut h = Harness::new(config());
    let peer = SocketAddr::new(PEER6, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    let (_, again) = h.next_timeout();
    assert!(again[0].is(SYN), "{again:?}");
    assert_ne!(again[0].flow_label, syn.flow_label);
    assert_ne!(again[0].flow_label, 0);
    assert_eq!(h.ep.info(h.now, c).unwrap().rto_count, 1);
}

#[test]
fn a_cookie_syn_ack_and_its_connection_share_a_label_and_resets_are_labelled() {
    let mut cfg = config();
    cfg.syncookies(SynCookies::Always);
    let mut h = Harness::new(cfg);
    let us = SocketAddr::new(US6, 80);
    let l = h.ep.listen(us, 8).unwrap();
    let peer = SocketAddr::new(PEER6, 40_000);
    h.inject(peer, us, Out::new(SYN, 5_000, 0).mss(1000));
    let sa = h.one();
    assert!(sa.is(SYN | ACK), "{sa:?}");
    assert_eq!(h.ep.stats().syncookies_sent, 1);
    assert_ne!(sa.flow_label, 0);
    h.inject(peer, us, Out::new(ACK, 5_001, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    h.ep.send(c, b"hi").unwrap();
    assert_eq!(
        h.one().flow_label,
        sa.flow_label,
        "the same flow, the same label"
    );

    // Segments for a port nobody listens on: answered with their flow's label, the same for
    // the same flow, another for another.
    let closed = SocketAddr::new(US6, 9);
    let mut rst_label = |from: u16| {
        h.inject(SocketAddr::new(PEER6, from), closed, Out::new(SYN, 1, 0));
        let rst = h.one();
        assert!(rst.has(RST), "{rst:?}");
        rst.flow_label
    };
    let (a, again, b) = (rst_label(40_001), rst_label(40_001), rst_label(40_002));
    assert_ne!(a, 0);
    assert_eq!(a, again);
    assert_ne!(a, b);
}

#[test]
fn labels_are_keyed_by_the_endpoints_secret() {
    let label = |seed: u8| {
        let mut cfg = config();
        cfg.seed(Some([seed; 32]));
        let mut h = Harness::new(cfg);
        h.ep.connect(h.now, SocketAddr::new(PEER6, 80)).unwrap();
        let syn = h.one();
        (syn.src, syn.flow_label)
    };
    let ((src_a, a), (src_b, b)) = (label(1), label(2));
    // Ports are drawn with the secret too; the labels differ whatever the ports.
    assert_ne!(a, b, "{src_a} {src_b}");
    assert_eq!(label(1).1, a, "a secret gives the same label again");
}

/// Data that comes again under a label other than the last data's: the sender timed out, so
/// our ACKs seem lost, and the connection moves to a new label (Linux's
/// `tcp_rcv_spurious_retrans`); under the same label again, it stays. Not while it recovers
/// from a timeout of its own, which moved it already. `ipv6-flow-label-dup-data.pkt`
/// checks the first two against the kernel.
#[test]
fn duplicate_data_under_a_new_label_moves_ours_unless_our_own_timeout_did() {
    let (mut h, c, us, peer, syn) = active_open(PEER6, &SocketOptions::default());
    let labelled = |label: u32| {
        let o = Out::new(ACK, 10_001, 0).ackn(syn.seq + 1).data(b"abc");
        let mut p = o.packet(peer, us);
        synack_core::wire::ip::set_flow_label(&mut p, label);
        p
    };
    h.inject_raw(&labelled(5));
    let first = h.one().flow_label;
    assert_eq!(first, syn.flow_label);
    h.inject_raw(&labelled(6));
    let second = h.one().flow_label;
    assert_ne!(second, first, "data again under a new label");
    h.inject_raw(&labelled(6));
    assert_eq!(h.one().flow_label, second, "again under the same label");
    // Our own data times out: a new label, and the peer's duplicate under yet another label
    // (its ACK leaves ours unacknowledged) does not move it again.
    h.ep.send(c, b"x").unwrap();
    let _ = h.one();
    while h.ep.info(h.now, c).unwrap().rto_count == 0 {
        let _ = h.next_timeout();
    }
    let third = h.sent.last().unwrap().1.flow_label;
    assert_ne!(third, second);
    h.inject_raw(&labelled(7));
    let answer = h.drain();
    assert!(!answer.is_empty());
    assert!(answer.iter().all(|s| s.flow_label == third), "{answer:?}");
}

/// Which duplicates count, as Linux's: one that the sequence check turns away (it ends
/// before the last ACK we sent) goes through `tcp_send_dupack`, which looks at the label only
/// with SACK; one ending at RCV.NXT reaches `tcp_data_queue`, which always does; old data
/// with a new FIN is no duplicate.
#[test]
fn which_duplicates_move_the_label() {
    // No SACK here (the SYN-ACK does not offer it).
    let (mut h, _c, us, peer, syn) = active_open(PEER6, &SocketOptions::default());
    let labelled = |seq: u32, data: &[u8], fin: bool, label: u32| {
        let flags = if fin { ACK | TcpFlags::FIN } else { ACK };
        let o = Out::new(flags, seq, 0).ackn(syn.seq + 1).data(data);
        let mut p = o.packet(peer, us);
        synack_core::wire::ip::set_flow_label(&mut p, label);
        p
    };
    h.inject_raw(&labelled(10_001, b"abc", false, 5));
    let first = h.one().flow_label;
    h.inject_raw(&labelled(10_004, b"def", false, 5));
    assert_eq!(h.one().flow_label, first);
    // "abc" again, under a new label: it ends before the last ACK sent, no SACK: no change.
    h.inject_raw(&labelled(10_001, b"abc", false, 6));
    assert_eq!(h.one().flow_label, first, "a dupack path without SACK");
    // "def" again, under a new label: it ends at RCV.NXT: a new label.
    h.inject_raw(&labelled(10_004, b"def", false, 7));
    let second = h.one().flow_label;
    assert_ne!(second, first, "tcp_data_queue's duplicate");
    // "def" once more with the FIN, under another label: the FIN is new, so no change.
    h.inject_raw(&labelled(10_004, b"def", true, 8));
    let fin_ack = h.drain();
    assert!(!fin_ack.is_empty());
    assert!(
        fin_ack.iter().all(|s| s.flow_label == second),
        "{fin_ack:?}"
    );
}
