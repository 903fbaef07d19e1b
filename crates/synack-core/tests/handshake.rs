//! Opening a connection, state by state, against a scripted peer in virtual time.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{
    ConnectionHandle, Error, Event, KeepaliveConfig, ListenerHandle, RecvMeta, SeqNumber,
    SharedBacklog, SocketOptions, State, SynCookies,
};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const RST: TcpFlags = TcpFlags::RST;

fn peer80() -> SocketAddr {
    SocketAddr::new(PEER, 80)
}

/// Connect and return the handle and our SYN.
fn start(h: &mut Harness) -> (ConnectionHandle, Seg) {
    let c = h.ep.connect(h.now, peer80()).unwrap();
    let syn = h.one();
    (c, syn)
}

/// Complete an active open with a SYN-ACK offering every option; returns the ACK we sent.
fn establish(h: &mut Harness) -> (ConnectionHandle, Seg, Seg) {
    let (c, syn) = start(h);
    h.inject(
        peer80(),
        syn.src,
        Out::new(SYN | ACK, 5000, 0)
            .ackn(syn.seq + 1)
            .mss(1460)
            .wscale(7)
            .sack_ok()
            .ts(777, syn.ts.unwrap().tsval),
    );
    let ack = h.one();
    (c, syn, ack)
}

// === SYN-SENT ===================================================================================

#[test]
fn syn_offers_every_option() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    assert!(syn.is(SYN));
    assert_eq!(syn.dst, peer80());
    assert_eq!(syn.mss, Some(1460));
    assert_eq!(
        syn.wscale,
        Some(7),
        "a 6 MiB ceiling needs a shift of 7, as Linux sends"
    );
    assert!(syn.sack_permitted);
    let ts = syn.ts.expect("timestamps offered");
    assert_eq!(ts.tsecr, 0);
    assert_eq!(syn.window, 65535);
    assert!(syn.payload.is_empty());
    assert_ne!(syn.seq.0, 0, "ISN is never 0");
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    let port = syn.src.port();
    assert!((32768..=60999).contains(&port), "ephemeral port {port}");
}

#[test]
fn syn_without_options_when_disabled() {
    let mut c = config();
    c.timestamps(false).sack(false).window_scaling(false);
    let mut h = Harness::new(c);
    let (_, syn) = start(&mut h);
    assert_eq!(syn.mss, Some(1460));
    assert_eq!(syn.wscale, None);
    assert!(!syn.sack_permitted);
    assert_eq!(syn.ts, None);
}

#[test]
fn syn_backoff_timeline_with_default_retries() {
    let mut h = Harness::new(config());
    let t0 = h.now;
    let (c, first) = start(&mut h);
    let mut times = vec![0u64];
    for _ in 0..20 {
        let (t, segs) = h.next_timeout();
        if segs.is_empty() {
            break;
        }
        assert_eq!(segs.len(), 1);
        assert!(segs[0].is(SYN));
        assert_eq!(segs[0].seq, first.seq, "a retransmitted SYN keeps its ISN");
        times.push((t - t0).as_secs());
    }
    // 2 s, then doubling: SYNs at 0, 2, 6, 14, 30, 62, 126 (six retries, like Linux).
    assert_eq!(times, vec![0, 2, 6, 14, 30, 62, 126]);
    // The last wait would be 128 s; like Linux, no RTO exceeds TCP_RTO_MAX (120 s).
    assert_eq!(
        (h.now - t0).as_secs(),
        246,
        "fails after the last, capped wait"
    );
    assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::TimedOut));
    assert!(h
        .events()
        .contains(&Event::Closed(c, Some(Error::TimedOut))));
}

/// Linux 6.5+'s timeline (tcp_syn_linear_timeouts = 4, tcp_syn_retries = 6, 1 s): four
/// retransmissions after the base RTO itself, then doubling, ten in all; `TimedOut` at 131 s.
/// With packetdrill's defaults (5 retries) the last SYN leaves at 35 s and it fails at 67 s.
#[test]
fn syn_linear_then_exponential_timeline_as_linux() {
    for (retries, want, fails_at) in [
        (6, vec![0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67], 131),
        (5, vec![0, 1, 2, 3, 4, 5, 7, 11, 19, 35], 67),
    ] {
        let mut cfg = config();
        cfg.syn_retries(retries)
            .syn_linear_timeouts(4)
            .initial_syn_rto(Duration::from_secs(1));
        let mut h = Harness::new(cfg);
        let t0 = h.now;
        let (c, _) = start(&mut h);
        let mut times = vec![0u64];
        for _ in 0..20 {
            let (t, segs) = h.next_timeout();
            if segs.is_empty() {
                break;
            }
            assert!(segs[0].is(SYN));
            times.push((t - t0).as_secs());
        }
        assert_eq!(times, want);
        assert_eq!((h.now - t0).as_secs(), fails_at);
        assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::TimedOut));
    }
}

/// The endpoint reschedules a connection's timer once its output is drained, but a deadline
/// asked for (or run) before that must still be exact.
#[test]
fn deadline_is_exact_before_output_is_drained() {
    let mut h = Harness::new(config());
    let t0 = h.now;
    let c = h.ep.connect(h.now, peer80()).unwrap();
    let mut buf = [0u8; 1500];
    assert!(h.ep.poll_transmit(h.now, &mut buf).is_some(), "the SYN");
    // Not polled again: the connection has not yet reported that it is done sending.
    assert_eq!(h.ep.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    // Running timers before draining output also sees the armed SYN timer.
    let t = t0 + Duration::from_secs(2);
    h.ep.handle_timeout(t);
    let mut syns = 0;
    while h.ep.poll_transmit(t, &mut buf).is_some() {
        syns += 1;
    }
    assert_eq!(syns, 1, "the SYN is retransmitted at 2 s");
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    assert_eq!(h.ep.poll_timeout(), Some(t0 + Duration::from_secs(6)));
}

#[test]
fn syn_backoff_with_two_retries_fails_at_14s() {
    let mut c = config();
    c.syn_retries(2);
    let mut h = Harness::new(c);
    let t0 = h.now;
    let (c, _) = start(&mut h);
    h.advance(Duration::from_secs(13));
    let syn_times: Vec<u64> = h.sent.iter().map(|(t, _)| (*t - t0).as_secs()).collect();
    assert_eq!(syn_times, vec![0, 2, 6]);
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.ep.state(c).unwrap(), State::Closed);
    assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::TimedOut));
    let err: std::io::Error = Error::TimedOut.into();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
}

#[test]
fn configurable_initial_syn_rto() {
    let mut c = config();
    c.syn_retries(1).initial_syn_rto(Duration::from_millis(500));
    let mut h = Harness::new(c);
    let t0 = h.now;
    let (c, _) = start(&mut h);
    h.advance(Duration::from_millis(1499));
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.ep.state(c).unwrap(), State::Closed);
    let times: Vec<u128> = h.sent.iter().map(|(t, _)| (*t - t0).as_millis()).collect();
    assert_eq!(times, vec![0, 500]);
}

#[test]
fn rst_answering_syn_is_connection_refused() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    h.inject(
        peer80(),
        syn.src,
        Out::new(RST | ACK, 0, 0).ackn(syn.seq + 1),
    );
    assert_eq!(h.ep.state(c).unwrap(), State::Closed);
    assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::ConnectionRefused));
    assert!(h
        .events()
        .contains(&Event::Closed(c, Some(Error::ConnectionRefused))));
    h.none();
    // No more SYNs afterwards.
    h.advance(Duration::from_secs(300));
    assert_eq!(h.sent.len(), 1);
}

#[test]
fn rst_without_ack_in_syn_sent_is_ignored() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    h.inject(peer80(), syn.src, Out::new(RST, 0, 0));
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
}

#[test]
fn rst_with_wrong_ack_in_syn_sent_is_ignored() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    h.inject(
        peer80(),
        syn.src,
        Out::new(RST | ACK, 0, 0).ackn(syn.seq + 7),
    );
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    h.none();
}

#[test]
fn syn_ack_with_bad_ack_draws_rst() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    h.inject(
        peer80(),
        syn.src,
        Out::new(SYN | ACK, 9, 0).ackn(syn.seq + 100),
    );
    let rst = h.one();
    assert!(rst.is(RST));
    assert_eq!(rst.seq, syn.seq + 100, "<SEQ=SEG.ACK><CTL=RST>");
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    // The SYN goes again 2 ms later, not a SYN RTO later (Linux's TCP_TIMEOUT_MIN).
    let t0 = h.now;
    let (t, again) = h.next_timeout();
    assert_eq!(t - t0, Duration::from_millis(2));
    assert_eq!(again.len(), 1);
    assert!(again[0].is(SYN));
    assert_eq!(again[0].seq, syn.seq);
    // From there the backoff carries on from the first retransmission.
    let (t2, third) = h.next_timeout();
    assert_eq!(t2 - t, Duration::from_secs(4));
    assert!(third[0].is(SYN));
}

#[test]
fn syn_ack_completes_active_open() {
    let mut h = Harness::new(config());
    let (c, syn, ack) = establish(&mut h);
    assert!(ack.is(ACK));
    assert_eq!(ack.seq, syn.seq + 1);
    assert_eq!(ack.ack, SeqNumber(5001));
    let ts = ack.ts.expect("timestamps agreed");
    assert_eq!(ts.tsecr, 777);
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    let ev = h.events();
    assert!(ev.contains(&Event::Connected(c)));
    assert_eq!(h.ep.peer_addr(c).unwrap(), peer80());
    assert_eq!(h.ep.local_addr(c).unwrap(), syn.src);
    assert_eq!(h.ep.info(h.now, c).unwrap().delivered, 1, "the SYN");
}

/// The ACK that completes an active open offers no more than the receive buffer holds,
/// whatever the peer's ISN. RCV.NXT only becomes known with the SYN-ACK, so a right edge
/// computed against the still-unset one once offered 8 MB (65535 << 7) into a 256 KiB
/// buffer for half of all ISNs, and the sender's data past the buffer was dropped.
#[test]
fn first_ack_never_offers_more_than_the_buffer() {
    // ISNs spread over the whole sequence space, both halves of it included.
    for irs in (0..16u32).map(|i| i.wrapping_mul(0x1000_0001).wrapping_add(12345)) {
        const BUFFER: usize = 256 * 1024;
        let mut cfg = config();
        cfg.recv_buffer(BUFFER);
        let mut h = Harness::new(cfg);
        let (_c, syn) = start(&mut h);
        h.inject(
            peer80(),
            syn.src,
            Out::new(SYN | ACK, irs, 0)
                .ackn(syn.seq + 1)
                .mss(1460)
                .wscale(7)
                .sack_ok()
                .ts(777, syn.ts.unwrap().tsval),
        );
        let ack = h.one();
        assert!(ack.is(ACK));
        let offered = usize::from(ack.window) << syn.wscale.unwrap();
        assert!(
            offered <= BUFFER,
            "ISN {irs:#x}: offered {offered} bytes with a {BUFFER}-byte buffer"
        );
        // Not less than the SYN offered either: a window is never shrunk (RFC 9293 §3.8.6.2.2).
        assert!(
            offered >= usize::from(syn.window),
            "ISN {irs:#x}: offered {offered}"
        );
    }
}

#[test]
fn options_are_used_only_when_both_sides_offer_them() {
    // The peer offers nothing but MSS: no timestamps, no SACK, unscaled windows.
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    h.inject(
        peer80(),
        syn.src,
        Out::new(SYN | ACK, 100, 0).ackn(syn.seq + 1).mss(1000),
    );
    let ack = h.one();
    assert_eq!(ack.ts, None);
    assert!(ack.sack.is_empty());
    // Our window is not scaled: the 256 KiB buffer shows as at most 65535.
    assert_eq!(ack.window, 65535);
    // Data segments are bounded by the peer's MSS (no option overhead without timestamps).
    let data = vec![7u8; 5000];
    assert_eq!(h.ep.send(c, &data).unwrap(), 5000);
    let segs = h.drain();
    assert!(!segs.is_empty());
    assert!(segs.iter().all(|s| s.payload.len() <= 1000));
    assert_eq!(segs[0].payload.len(), 1000);
}

#[test]
fn timestamps_reduce_the_payload_per_segment() {
    let mut h = Harness::new(config());
    let (c, _, _) = establish(&mut h);
    h.ep.send(c, &vec![1u8; 10_000]).unwrap();
    let segs = h.drain();
    assert_eq!(
        segs[0].payload.len(),
        1460 - 12,
        "RFC 6691: MSS minus the TS option"
    );
}

#[test]
fn peer_window_scale_is_applied_and_clamped_to_14() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    h.inject(
        peer80(),
        syn.src,
        Out::new(SYN | ACK, 100, 0)
            .ackn(syn.seq + 1)
            .mss(1460)
            .wscale(30)
            .window(1000),
    );
    let _ack = h.one();
    // The peer now advertises 1 unit of window, scaled by 2^14 (not 2^30).
    h.inject(
        peer80(),
        syn.src,
        Out::new(ACK, 101, 0).ackn(syn.seq + 1).window(1),
    );
    h.ep.send(c, &vec![0u8; 40_000]).unwrap();
    let sent: usize = h.drain().iter().map(|s| s.payload.len()).sum();
    // Bounded by the initial congestion window (10 segments), under the 16 KiB window.
    assert!(sent <= 16_384 && sent > 0, "sent {sent}");
}

/// An MSS option of 0 says nothing: the default MSS applies (RFC 9293 §3.7.1: 536 for
/// IPv4), as Linux's `tcp_parse_options` ignores it, not 48-byte segments. A tiny non-zero
/// MSS is raised to 48 (Linux's `tcp_min_snd_mss`).
#[test]
fn mss_zero_from_peer_means_the_default_and_a_tiny_one_is_raised() {
    for (option, sent) in [(0, 536), (1, 48), (47, 48), (48, 48)] {
        let mut h = Harness::new(config());
        let (c, syn) = start(&mut h);
        h.inject(
            peer80(),
            syn.src,
            Out::new(SYN | ACK, 100, 0).ackn(syn.seq + 1).mss(option),
        );
        let _ = h.one();
        h.ep.send(c, &[5u8; 3000]).unwrap();
        let segs = h.drain();
        assert_eq!(segs[0].payload.len(), sent, "MSS option {option}");
        assert!(segs.iter().all(|s| s.payload.len() <= sent));
    }
}

/// The same on a passive open, with and without SYN cookies: the SYN's MSS option of 0
/// leaves the connection at 536.
#[test]
fn mss_zero_in_a_syn_means_the_default_on_both_listen_paths() {
    for cookies in [SynCookies::OnOverflow, SynCookies::Always] {
        let mut c = config();
        c.syncookies(cookies);
        let mut h = Harness::new(c);
        let l = h.ep.listen(server(), 16).unwrap();
        h.inject(client(), server(), Out::new(SYN, 10, 0).mss(0));
        let sa = h.one();
        h.inject(client(), server(), Out::new(ACK, 11, 0).ackn(sa.seq + 1));
        let conn = h.ep.accept(l).unwrap();
        h.ep.send(conn, &[1u8; 3000]).unwrap();
        let segs = h.drain();
        assert_eq!(segs[0].payload.len(), 536, "{cookies:?}");
    }
}

// === Simultaneous open ==========================================================================

#[test]
fn simultaneous_open() {
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    // The peer's own SYN crosses ours.
    h.inject(peer80(), syn.src, Out::new(SYN, 9000, 0).mss(1460));
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(synack.seq, syn.seq, "same ISS in the SYN-ACK");
    assert_eq!(synack.ack, SeqNumber(9001));
    assert_eq!(h.ep.state(c).unwrap(), State::SynReceived);
    // Its ACK of our SYN-ACK establishes.
    h.inject(peer80(), syn.src, Out::new(ACK, 9001, 0).ackn(syn.seq + 1));
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    assert!(h.events().contains(&Event::Connected(c)));
}

/// Data and a FIN on a SYN-ACK (without Fast Open) are not taken, as Linux takes neither
/// (`tcp_rcv_state_process` frees the segment once the handshake is done): the connection is
/// established, the ACK covers the SYN alone, nothing is readable, and the peer's resend is
/// taken as new (checked against the kernel by `synsent-synack-data-dropped.pkt` and
/// `synsent-synack-fin-ignored.pkt`).
#[test]
fn data_and_a_fin_on_a_syn_ack_are_not_taken() {
    for fin in [false, true] {
        let mut h = Harness::new(config());
        let (c, syn) = start(&mut h);
        let flags = if fin {
            SYN | ACK | TcpFlags::FIN
        } else {
            SYN | ACK
        };
        let synack = Out::new(flags, 9000, 0)
            .ackn(syn.seq + 1)
            .mss(1000)
            .data(b"early");
        h.inject(peer80(), syn.src, synack);
        let ack = h.one();
        assert_eq!(
            (ack.seq, ack.ack),
            (syn.seq + 1, SeqNumber(9001)),
            "fin {fin}"
        );
        assert_eq!(h.ep.state(c).unwrap(), State::Established);
        let mut buf = [0u8; 16];
        assert_eq!(h.ep.recv(h.now, c, &mut buf), Err(Error::WouldBlock));
        let again = if fin { ACK | TcpFlags::FIN } else { ACK };
        h.inject(
            peer80(),
            syn.src,
            Out::new(again, 9001, 0).ackn(syn.seq + 1).data(b"early"),
        );
        assert_eq!(h.ep.recv(h.now, c, &mut buf), Ok(5));
        assert_eq!(&buf[..5], b"early");
        let state = if fin {
            State::CloseWait
        } else {
            State::Established
        };
        assert_eq!(h.ep.state(c).unwrap(), state);
    }
}

/// The peer's SYN-ACK crosses ours in a simultaneous open: its ACK establishes, and its SYN,
/// already taken, is answered at once with a D-SACK for it, as Linux's `tcp_data_queue`
/// answers a retransmission (checked against the kernel by `simultaneous-open-crossing.pkt`).
/// With data on it, the SYN-ACK is not let through: a challenge ACK, still SYN-RECEIVED.
#[test]
fn simultaneous_open_with_crossing_syn_acks() {
    for data in [false, true] {
        let mut h = Harness::new(config());
        let (c, syn) = start(&mut h);
        h.inject(
            peer80(),
            syn.src,
            Out::new(SYN, 9000, 0).mss(1460).sack_ok(),
        );
        assert!(h.one().is(SYN | ACK));
        let mut synack = Out::new(SYN | ACK, 9000, 0).ackn(syn.seq + 1).sack_ok();
        if data {
            synack = synack.data(b"early");
        }
        h.inject(peer80(), syn.src, synack);
        let ack = h.one();
        assert!(ack.is(ACK) && !ack.flags.contains(SYN), "{ack:?}");
        assert_eq!((ack.seq, ack.ack), (syn.seq + 1, SeqNumber(9001)));
        if data {
            assert_eq!(h.ep.state(c).unwrap(), State::SynReceived);
            assert!(ack.sack.is_empty(), "a challenge ACK: {ack:?}");
            assert!(h.ep.stats().challenge_acks > 0);
        } else {
            assert_eq!(h.ep.state(c).unwrap(), State::Established);
            assert!(h.events().contains(&Event::Connected(c)));
            assert_eq!(ack.sack, [(SeqNumber(9000), SeqNumber(9001))], "D-SACK");
        }
        assert!(h.drain().is_empty(), "one ACK");
    }
}

// === LISTEN and SYN-RECEIVED ====================================================================

fn client() -> SocketAddr {
    SocketAddr::new(PEER, 40000)
}

fn server() -> SocketAddr {
    SocketAddr::new(US, 8080)
}

#[test]
fn passive_open_echoes_offered_options() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(
        client(),
        server(),
        Out::new(SYN, 1000, 0)
            .mss(1400)
            .wscale(7)
            .sack_ok()
            .ts(55, 0),
    );
    let sa = h.one();
    assert!(sa.is(SYN | ACK));
    assert_eq!(sa.ack, SeqNumber(1001));
    assert_eq!(sa.mss, Some(1460));
    assert_eq!(sa.wscale, Some(7));
    assert!(sa.sack_permitted);
    assert_eq!(sa.ts.unwrap().tsecr, 55);
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
    h.inject(
        client(),
        server(),
        Out::new(ACK, 1001, 0)
            .ackn(sa.seq + 1)
            .ts(56, sa.ts.unwrap().tsval),
    );
    assert!(h.events().contains(&Event::Incoming(l)));
    let c = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    assert_eq!(h.ep.peer_addr(c).unwrap(), client());
    assert_eq!(h.ep.local_addr(c).unwrap(), server());
    assert_eq!(h.ep.stats().connections_established, 1);
    // TCP_INFO's delivered: the SYN-ACK, acknowledged, is one segment delivered.
    assert_eq!(h.ep.info(h.now, c).unwrap().delivered, 1);
}

#[test]
fn a_completed_passive_open_sends_nothing_more() {
    // The SYN-ACK's window field cannot be scaled (RFC 7323 §2.2), so it offered at most
    // 65535 of our 256 KiB. Linux leaves it at that until it has a reason to send (data, an
    // ACK owed, the application reading); so do we: no pure window update after the
    // handshake.
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(
        client(),
        server(),
        Out::new(SYN, 1000, 0).wscale(7).mss(1460),
    );
    let sa = h.one();
    assert_eq!(sa.window, 65535);
    h.inject(client(), server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    h.none();
    // The first ACK the connection owes (at once: the first data is quick-ACKed) carries
    // the whole window.
    h.inject(
        client(),
        server(),
        Out::new(ACK | TcpFlags::PSH, 1001, 0)
            .ackn(sa.seq + 1)
            .data(&[1; 100]),
    );
    let ack = h.one();
    assert_eq!(ack.ack, SeqNumber(1101));
    assert!(
        usize::from(ack.window) << 7 > 65535,
        "window {}",
        ack.window
    );
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
}

#[test]
fn every_option_combination_is_negotiated_exactly() {
    for mask in 0u8..16 {
        let mut h = Harness::new(config());
        let l = h.ep.listen(server(), 16).unwrap();
        let mut syn = Out::new(SYN, 1000, 0);
        if mask & 1 != 0 {
            syn = syn.mss(1200);
        }
        if mask & 2 != 0 {
            syn = syn.wscale(5);
        }
        if mask & 4 != 0 {
            syn = syn.sack_ok();
        }
        if mask & 8 != 0 {
            syn = syn.ts(1, 0);
        }
        h.inject(client(), server(), syn);
        let sa = h.one();
        assert_eq!(sa.mss, Some(1460), "mask {mask}: MSS always sent");
        assert_eq!(sa.wscale.is_some(), mask & 2 != 0, "mask {mask}: wscale");
        assert_eq!(sa.sack_permitted, mask & 4 != 0, "mask {mask}: sackOK");
        assert_eq!(sa.ts.is_some(), mask & 8 != 0, "mask {mask}: timestamps");
        let mut ack = Out::new(ACK, 1001, 0).ackn(sa.seq + 1);
        if mask & 8 != 0 {
            ack = ack.ts(2, sa.ts.unwrap().tsval);
        }
        h.inject(client(), server(), ack);
        let c = h.ep.accept(l).unwrap();
        // Data from us shows the negotiated options in use.
        h.ep.send(c, &vec![3u8; 4000]).unwrap();
        let segs = h.drain();
        let mss = if mask & 1 != 0 { 1200 } else { 536 };
        let ts_len = if mask & 8 != 0 { 12 } else { 0 };
        assert_eq!(segs[0].payload.len(), mss - ts_len, "mask {mask}");
        assert_eq!(segs[0].ts.is_some(), mask & 8 != 0, "mask {mask}");
    }
}

/// A listener's SYN-ACK is sent again after 1, 2, 4, 8 and 16 s (Linux's request sockets
/// start from `TCP_TIMEOUT_INIT`, whatever the SYN's own initial RTO), and the half-open
/// connection goes 32 s after the last: 63 s in all, as Linux's with tcp_synack_retries 5.
#[test]
fn synack_retransmission_and_give_up() {
    let c = config();
    assert_eq!(c.get_initial_syn_rto(), Duration::from_secs(2));
    let mut h = Harness::new(c);
    let t0 = h.now;
    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0).mss(1460));
    let first = h.one();
    h.advance(Duration::from_millis(62_900));
    assert_eq!(h.ep.connection_count(), 1, "still half-open at 62.9 s");
    h.advance(Duration::from_millis(200));
    let times: Vec<u64> = h.sent.iter().map(|(t, _)| (*t - t0).as_secs()).collect();
    assert_eq!(times, vec![0, 1, 3, 7, 15, 31]);
    assert!(h
        .sent
        .iter()
        .all(|(_, s)| s.is(SYN | ACK) && s.seq == first.seq));
    assert_eq!(
        h.ep.connection_count(),
        0,
        "the half-open connection is gone"
    );
    // A late ACK now finds nothing but the listener, which resets it.
    h.inject(
        client(),
        server(),
        Out::new(ACK, 1001, 0).ackn(first.seq + 1),
    );
    let rst = h.one();
    assert!(rst.is(RST));
    assert_eq!(rst.seq, first.seq + 1);
}

#[test]
fn retransmitted_syn_gets_the_synack_again() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0));
    let a = h.one();
    h.inject(client(), server(), Out::new(SYN, 1000, 0));
    let b = h.one();
    assert!(b.is(SYN | ACK));
    assert_eq!(a.seq, b.seq);
    assert_eq!(h.ep.connection_count(), 1);
}

/// A retransmitted SYN draws the SYN-ACK again but leaves TS.Recent alone: Linux's
/// `tcp_check_req` answers the "pure retransmitted SYN" and returns before it would update
/// the request's `ts_recent`, so the SYN-ACK still echoes the first SYN's TSval, and the
/// handshake's ACK is judged by PAWS against that.
#[test]
fn retransmitted_syn_leaves_ts_recent_alone() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0).ts(100, 0));
    let a = h.one();
    assert_eq!(a.ts.unwrap().tsecr, 100);
    h.advance(Duration::from_millis(600));
    let _ = h.drain();
    h.inject(client(), server(), Out::new(SYN, 1000, 0).ts(700, 0));
    let b = h.one();
    assert!(b.is(SYN | ACK));
    assert_eq!(b.ts.unwrap().tsecr, 100, "echoes the first SYN's TSval");
    // An ACK whose TSval lies between the two SYNs' passes PAWS and completes the handshake.
    h.inject(
        client(),
        server(),
        Out::new(ACK, 1001, 0)
            .ackn(a.seq + 1)
            .ts(400, a.ts.unwrap().tsval),
    );
    h.none();
    assert!(h.ep.accept(l).is_ok(), "the handshake completed");
}

/// A segment with a bad checksum is dropped and counted by `handle_packet`; a device that
/// vouches for the checksum (`RecvMeta::checksum_verified`) skips that one check and no other.
#[test]
fn verified_packets_skip_only_the_checksum_check() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 16).unwrap();
    let mut syn = Out::new(SYN, 1000, 0).packet(client(), server());
    // IPv4 header (20 bytes), then the TCP checksum at offset 16.
    syn[36] ^= 0x55;
    h.ep.handle_packet(h.now, &syn, RecvMeta::new(syn.len()));
    h.none();
    assert_eq!(h.ep.stats().drop_checksum, 1);
    assert_eq!(h.ep.stats().checksum_offloaded, 0);
    let verified = |len| RecvMeta {
        checksum_verified: true,
        ..RecvMeta::new(len)
    };
    h.ep.handle_packet(h.now, &syn, verified(syn.len()));
    assert_eq!(h.ep.stats().checksum_offloaded, 1);
    assert!(h.one().is(SYN | ACK));
    assert_eq!(h.ep.stats().drop_checksum, 1);
    // The other checks still apply: a data offset below 5 is refused either way.
    let mut short = Out::new(SYN, 1000, 0).packet(client(), server());
    short[32] = 4 << 4;
    h.ep.handle_packet(h.now, &short, verified(short.len()));
    h.none();
    assert_eq!(h.ep.stats().drop_malformed, 1);
}

/// Port 0 is reserved, not malformed (Linux's `tcp_v4_rcv` has no check for it): a SYN to
/// port 0 finds no listener and draws an RST, and a SYN from port 0 reaches a listener like
/// any other.
#[test]
fn port_zero_is_looked_up_like_any_port() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 16).unwrap();
    let zero = SocketAddr::new(US, 0);
    h.inject(client(), zero, Out::new(SYN, 1000, 0));
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!(
        (rst.src, rst.dst, rst.ack),
        (zero, client(), SeqNumber(1001))
    );
    assert_eq!(h.ep.stats().drop_malformed, 0);
    assert_eq!(h.ep.connection_count(), 0);
    let from_zero = SocketAddr::new(PEER, 0);
    h.inject(from_zero, server(), Out::new(SYN, 1000, 0));
    let syn_ack = h.one();
    assert!(syn_ack.is(SYN | ACK));
    assert_eq!(syn_ack.dst, from_zero);
    assert_eq!(h.ep.connection_count(), 1);
}

#[test]
fn bad_ack_in_syn_received_draws_rst() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0));
    let sa = h.one();
    h.inject(client(), server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 50));
    let rst = h.one();
    assert!(rst.is(RST));
    assert_eq!(rst.seq, sa.seq + 50);
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
}

#[test]
fn rst_in_syn_received_removes_the_half_open_connection() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0));
    let _ = h.one();
    h.inject(client(), server(), Out::new(RST, 1001, 0));
    h.none();
    assert_eq!(h.ep.connection_count(), 0);
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
}

#[test]
fn ack_to_listener_draws_rst() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(
        client(),
        server(),
        Out::new(ACK, 1, 0).ackn(SeqNumber(4242)),
    );
    let rst = h.one();
    assert!(rst.is(RST));
    assert_eq!(rst.seq, SeqNumber(4242));
}

#[test]
fn syn_fin_to_listener_is_dropped() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN | TcpFlags::FIN, 1, 0));
    h.none();
    assert_eq!(h.ep.connection_count(), 0);
}

#[test]
fn backlog_bounds_the_syn_queue_without_cookies() {
    let mut c = config();
    c.syncookies(SynCookies::Off);
    let mut h = Harness::new(c);
    let _l = h.ep.listen(server(), 2).unwrap();
    for port in 0..5u16 {
        h.inject(
            SocketAddr::new(PEER, 40000 + port),
            server(),
            Out::new(SYN, 1000, 0),
        );
    }
    let synacks = h.drain();
    assert_eq!(synacks.len(), 2);
    assert_eq!(h.ep.stats().drop_listen_overflow, 3);
    assert_eq!(h.ep.connection_count(), 2);
}

#[test]
fn syn_queue_overflow_answers_with_cookies_and_keeps_no_state() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 2).unwrap();
    for port in 0..50u16 {
        h.inject(
            SocketAddr::new(PEER, 40000 + port),
            server(),
            Out::new(SYN, 1000, 0).mss(1460),
        );
    }
    let synacks = h.drain();
    assert_eq!(synacks.len(), 50, "every SYN is answered");
    assert_eq!(h.ep.stats().syncookies_sent, 48);
    assert_eq!(h.ep.connection_count(), 2, "only the SYN queue holds state");
}

/// A flooded listener (backlog 1, one half-open connection) answers a real client with a
/// cookie; the client's ACK rebuilds the connection with the options it offered.
fn cookie_handshake(with_ts: bool) -> (Harness, ListenerHandle, Seg) {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 1).unwrap();
    h.inject(SocketAddr::new(PEER, 1), server(), Out::new(SYN, 1, 0));
    let _ = h.drain();
    let mut syn = Out::new(SYN, 7000, 0).mss(1200).wscale(6).sack_ok();
    if with_ts {
        syn = syn.ts(4242, 0);
    }
    h.inject(client(), server(), syn);
    let sa = h.one();
    assert!(sa.is(SYN | ACK));
    assert_eq!(h.ep.stats().syncookies_sent, 1);
    assert_eq!(h.ep.connection_count(), 1);
    (h, l, sa)
}

#[test]
fn cookie_ack_rebuilds_the_connection_with_its_options() {
    let (mut h, l, sa) = cookie_handshake(true);
    assert_eq!(sa.wscale, Some(7));
    assert!(sa.sack_permitted);
    assert_eq!(sa.ts.unwrap().tsecr, 4242);
    let mut ack = Out::new(ACK, 7001, 0)
        .ackn(sa.seq + 1)
        .ts(4243, sa.ts.unwrap().tsval)
        .window(100);
    ack = ack.data(b"first bytes");
    h.inject(client(), server(), ack);
    assert_eq!(h.ep.stats().syncookies_validated, 1);
    let c = h.ep.accept(l).expect("rebuilt from the cookie");
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    // The peer's shift came back from the cookie, and ours is the one the SYN-ACK offered
    // (the cookie used to keep ours and give it to the peer's windows).
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!((info.snd_wscale, info.rcv_wscale), (6, 7));
    let mut buf = [0u8; 64];
    let n = h.ep.recv(h.now, c, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"first bytes");
    // The MSS came back from the cookie: 1200 rounds down to the 536 entry of Linux's table.
    // The window scale came back from the timestamp.
    h.ep.send(c, &vec![1u8; 5000]).unwrap();
    let segs = h.drain();
    let data: Vec<&Seg> = segs.iter().filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(data[0].payload.len(), 536 - 12);
    // 100 << 6 = 6400 bytes of window: more than the 100 bytes an unscaled window allows.
    let sent: usize = data.iter().map(|s| s.payload.len()).sum();
    assert!(sent > 100, "the peer's window scale was recovered");
    assert!(data[0].ts.is_some());
}

#[test]
fn cookie_without_timestamps_offers_no_wscale_or_sack() {
    let (mut h, l, sa) = cookie_handshake(false);
    assert_eq!(sa.wscale, None);
    assert!(!sa.sack_permitted);
    assert_eq!(sa.ts, None);
    h.inject(client(), server(), Out::new(ACK, 7001, 0).ackn(sa.seq + 1));
    assert!(h.ep.accept(l).is_ok());
}

#[test]
fn forged_cookie_ack_is_reset() {
    let (mut h, l, sa) = cookie_handshake(true);
    h.inject(
        client(),
        server(),
        Out::new(ACK, 7001, 0)
            .ackn(sa.seq + 2)
            .ts(1, sa.ts.unwrap().tsval),
    );
    let rst = h.one();
    assert!(rst.is(RST));
    assert_eq!(h.ep.stats().syncookies_failed, 1);
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
    // An expired cookie fails too.
    h.advance(Duration::from_secs(200));
    h.inject(
        client(),
        server(),
        Out::new(ACK, 7001, 0)
            .ackn(sa.seq + 1)
            .ts(1, sa.ts.unwrap().tsval),
    );
    let rst = h.one();
    assert!(rst.is(RST));
}

#[test]
fn always_cookies_keep_no_half_open_state() {
    let mut c = config();
    c.syncookies(SynCookies::Always);
    let mut h = Harness::new(c);
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 10, 0).mss(1460).ts(9, 0));
    let sa = h.one();
    assert_eq!(h.ep.connection_count(), 0);
    h.inject(
        client(),
        server(),
        Out::new(ACK, 11, 0)
            .ackn(sa.seq + 1)
            .ts(10, sa.ts.unwrap().tsval),
    );
    assert!(h.ep.accept(l).is_ok());
    assert_eq!(h.ep.stats().syncookies_validated, 1);
}

/// A listener given a receive buffer and an MSS (SO_RCVBUF and TCP_MAXSEG before `listen`)
/// offers them in its SYN-ACK, a cookie's as a stateful one's, and the connection a cookie
/// rebuilds keeps to the shift its SYN-ACK offered: the windows it sends, scaled by it, are
/// its buffer. A cookie's SYN-ACK used to offer the endpoint's shift (7, for the default
/// 6 MiB ceiling), window and MSS while its connection took the listener's (5 for 1 MiB):
/// the peer read every window 4 times too large, and sent past it.
#[test]
fn a_cookie_offers_the_listeners_window_shift_and_mss() {
    let opts = SocketOptions {
        recv_buffer: Some(1 << 20),
        max_segment: Some(1000),
        ..Default::default()
    };
    let mut offers = Vec::new();
    for cookies in [SynCookies::Off, SynCookies::Always] {
        let mut c = config();
        c.syncookies(cookies);
        let mut h = Harness::new(c);
        let l = h.ep.listen_with(server(), 16, &opts).unwrap();
        h.inject(
            client(),
            server(),
            Out::new(SYN, 7000, 0)
                .mss(1460)
                .wscale(7)
                .sack_ok()
                .ts(100, 0),
        );
        let sa = h.one();
        offers.push((sa.window, sa.wscale, sa.mss));
        h.inject(
            client(),
            server(),
            Out::new(ACK, 7001, 0)
                .ackn(sa.seq + 1)
                .ts(110, sa.ts.unwrap().tsval),
        );
        let conn = h.ep.accept(l).unwrap();
        let info = h.ep.info(h.now, conn).unwrap();
        assert_eq!(Some(info.rcv_wscale), sa.wscale, "{cookies:?}");
        // A segment draws an ACK whose window, scaled as the SYN-ACK said, is what the
        // buffer has left.
        h.inject(
            client(),
            server(),
            Out::new(ACK, 7001, 0)
                .ackn(sa.seq + 1)
                .ts(120, sa.ts.unwrap().tsval)
                .data(&[1; 1000]),
        );
        h.advance(Duration::from_millis(200));
        let ack = h.one();
        let window = usize::from(ack.window) << sa.wscale.unwrap();
        assert!(
            window <= (1 << 20) && window + 1000 + 32 >= (1 << 20),
            "{cookies:?}: {window}"
        );
    }
    assert_eq!(
        offers[0], offers[1],
        "a cookie offers what a stateful SYN-ACK offers"
    );
    assert_eq!(offers[0].1, Some(5));
    assert_eq!(offers[0].2, Some(1000));
    assert_eq!(offers[0].0, u16::MAX);
}

/// While the accept queue is full only a half-open connection's final ACK waits (dropped,
/// for the client to send again): a wrong ACK from its client still draws an RST, and its
/// RST still ends it, as Linux's `tcp_check_req` answers both before it looks at the queue.
/// Both used to be dropped as listen overflow, the connection keeping its place in the SYN
/// queue and sending SYN-ACKs to a client that had given up.
#[test]
fn a_full_accept_queue_still_hears_a_half_open_connections_rst() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 2).unwrap();
    // B's handshake stays half open.
    let b = SocketAddr::new(PEER, 40002);
    h.inject(b, server(), Out::new(SYN, 5000, 0));
    let sb = h.one();
    // Two others complete and fill the accept queue.
    for (port, isn) in [(40003u16, 1000u32), (40004, 3000)] {
        let a = SocketAddr::new(PEER, port);
        h.inject(a, server(), Out::new(SYN, isn, 0));
        let sa = h.one();
        h.inject(a, server(), Out::new(ACK, isn + 1, 0).ackn(sa.seq + 1));
    }
    let count = h.ep.connection_count();
    let overflow = h.ep.stats().drop_listen_overflow;
    // B's final ACK waits: dropped, B still half open.
    h.inject(b, server(), Out::new(ACK, 5001, 0).ackn(sb.seq + 1));
    h.none();
    assert_eq!(h.ep.stats().drop_listen_overflow, overflow + 1);
    assert_eq!(h.ep.connection_count(), count);
    // A wrong ACK is answered with an RST (RFC 9293 §3.10.7.3).
    h.inject(b, server(), Out::new(ACK, 5001, 0).ackn(sb.seq + 100));
    let rst = h.one();
    assert!(rst.is(RST), "{rst:?}");
    assert_eq!(rst.seq, sb.seq + 100);
    // B's RST ends it.
    h.inject(b, server(), Out::new(RST | ACK, 5001, 0).ackn(sb.seq + 1));
    h.none();
    assert_eq!(h.ep.connection_count(), count - 1);
    assert_eq!(h.ep.stats().drop_listen_overflow, overflow + 1);
    // The two queued are still there to accept.
    assert!(h.ep.accept(l).is_ok());
    assert!(h.ep.accept(l).is_ok());
}

/// TCP_DEFER_ACCEPT (`SocketOptions::defer_accept`), as Linux's `tcp_check_req` and
/// `syn_ack_recalc` apply it: a final ACK without data is held back (the connection stays
/// half open, nothing to accept; `drop_defer_accept` counts it), and the first data completes
/// the handshake, `accept` returning the connection with the data readable. Without data,
/// the SYN-ACK timer resends nothing until the period's last timeout (2 s is two
/// retransmissions: none at 1 s, one at 3 s), and a bare ACK after that completes it.
#[test]
fn defer_accept_holds_a_bare_final_ack_until_data_or_the_periods_end() {
    for data in [true, false] {
        let mut h = Harness::new(config());
        let opts = SocketOptions {
            defer_accept: Some(Duration::from_secs(2)),
            ..SocketOptions::default()
        };
        let l = h.ep.listen_with(server(), 16, &opts).unwrap();
        let client = SocketAddr::new(PEER, 40001);
        h.inject(client, server(), Out::new(SYN, 1000, 0));
        let syn_ack = h.one();
        let t0 = h.now;
        let ack = Out::new(ACK, 1001, 0).ackn(syn_ack.seq + 1);
        h.inject(client, server(), ack.clone());
        h.none();
        assert_eq!(h.ep.accept(l), Err(Error::WouldBlock), "data {data}");
        assert_eq!(h.ep.stats().drop_defer_accept, 1);
        if data {
            h.inject(client, server(), ack.data(b"GET /"));
            assert_eq!(h.one().ack, SeqNumber(1006));
            let c = h.ep.accept(l).unwrap();
            let mut buf = [0u8; 16];
            let n = h.ep.recv(h.now, c, &mut buf).unwrap();
            assert_eq!(&buf[..n], b"GET /");
            continue;
        }
        let (at, segs) = h.next_timeout();
        assert_eq!((at - t0, segs.len()), (Duration::from_secs(1), 0));
        // A bare ACK is still held: not the period's end yet.
        h.inject(client, server(), ack.clone());
        assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
        let (at, segs) = h.next_timeout();
        assert_eq!(at - t0, Duration::from_secs(3));
        assert_eq!(segs.len(), 1);
        assert!(segs[0].is(SYN | ACK), "{:?}", segs[0]);
        h.inject(client, server(), ack);
        let c = h.ep.accept(l).unwrap();
        assert_eq!(h.ep.state(c), Ok(State::Established));
        assert_eq!(h.ep.stats().drop_defer_accept, 2);
    }
}

#[test]
fn backlog_bounds_the_accept_queue() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 1).unwrap();
    // One connection completes and waits in the accept queue.
    h.inject(client(), server(), Out::new(SYN, 1000, 0));
    let sa = h.one();
    h.inject(client(), server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    // A second client's SYN is dropped: the accept queue is full.
    let other = SocketAddr::new(PEER, 40001);
    h.inject(other, server(), Out::new(SYN, 5000, 0));
    h.none();
    assert_eq!(h.ep.stats().drop_listen_overflow, 1);
    let c = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    h.inject(other, server(), Out::new(SYN, 5000, 0));
    assert!(h.one().is(SYN | ACK));
}

/// A listener asking for more than `max_backlog` (somaxconn) holds one more than it, as
/// Linux clamps `listen(2)`'s backlog to somaxconn and then holds one more: with
/// `max_backlog` 2, three connections wait and the fourth SYN is dropped. It used to hold
/// two.
#[test]
fn a_backlog_past_the_ceiling_holds_one_more_than_the_ceiling() {
    let mut cfg = config();
    cfg.max_backlog(2);
    let mut h = Harness::new(cfg);
    h.ep.listen(server(), 10_000).unwrap();
    for port in 40_010..40_013u16 {
        let from = SocketAddr::new(PEER, port);
        h.inject(from, server(), Out::new(SYN, 1000, 0));
        let sa = h.one();
        assert!(sa.is(SYN | ACK), "{port}");
        h.inject(from, server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    }
    let overflow = h.ep.stats().drop_listen_overflow;
    h.inject(
        SocketAddr::new(PEER, 40_013),
        server(),
        Out::new(SYN, 1000, 0),
    );
    h.none();
    assert_eq!(h.ep.stats().drop_listen_overflow, overflow + 1);
}

/// Two endpoints listening for one socket (a runtime's shards) with a `SharedBacklog` of
/// three hold three unaccepted connections between them, as one Linux listener with backlog
/// 2 does, however the connections fall: a SYN to either once three wait is dropped, and
/// the final ACK of a handshake begun before waits; an `accept` on either makes room on
/// both, and closing a listener gives back the places its queue held.
#[test]
fn a_shared_backlog_bounds_the_accept_queues_together() {
    let shared = SharedBacklog::new(3);
    let mut a = Harness::new(config());
    let mut b = Harness::new(config());
    let la = a.ep.listen(server(), 2).unwrap();
    let lb = b.ep.listen(server(), 2).unwrap();
    a.ep.share_backlog(la, shared.clone()).unwrap();
    b.ep.share_backlog(lb, shared.clone()).unwrap();
    let from = |port| SocketAddr::new(PEER, port);
    let complete = |h: &mut Harness, port: u16| {
        h.inject(from(port), server(), Out::new(SYN, 1000, 0));
        let sa = h.one();
        assert!(sa.is(SYN | ACK), "{port}");
        h.inject(
            from(port),
            server(),
            Out::new(ACK, 1001, 0).ackn(sa.seq + 1),
        );
        sa
    };
    // Two on one endpoint, one on the other: three in all.
    complete(&mut a, 40001);
    complete(&mut a, 40002);
    // A handshake begun on `b` before the queue fills, finished after.
    b.inject(from(40010), server(), Out::new(SYN, 1000, 0));
    let late = b.one();
    complete(&mut b, 40003);
    assert_eq!(shared.queued(), 3);
    // Full for both: new SYNs dropped, the late handshake's ACK too.
    a.inject(from(40004), server(), Out::new(SYN, 1000, 0));
    a.none();
    b.inject(from(40005), server(), Out::new(SYN, 1000, 0));
    b.none();
    b.inject(
        from(40010),
        server(),
        Out::new(ACK, 1001, 0).ackn(late.seq + 1),
    );
    assert_eq!(shared.queued(), 3);
    assert_eq!(a.ep.stats().drop_listen_overflow, 1);
    assert_eq!(b.ep.stats().drop_listen_overflow, 2);
    // An accept on `a` makes room on `b`: the late handshake completes on its next ACK.
    a.ep.accept(la).unwrap();
    assert_eq!(shared.queued(), 2);
    b.inject(
        from(40010),
        server(),
        Out::new(ACK, 1001, 0).ackn(late.seq + 1),
    );
    assert_eq!(shared.queued(), 3);
    assert_eq!(
        b.ep.accept(lb).map(|c| b.ep.peer_addr(c).unwrap().port()),
        Ok(40003)
    );
    assert_eq!(
        b.ep.accept(lb).map(|c| b.ep.peer_addr(c).unwrap().port()),
        Ok(40010)
    );
    // Closing `a`'s listener resets what it held and gives its place back.
    assert_eq!(shared.queued(), 1);
    a.ep.close_listener(a.now, la).unwrap();
    assert_eq!(shared.queued(), 0);
}

/// Listeners that share a `SharedBacklog` number what they queue from one counter, so that
/// accepting from whichever head is oldest takes the connections in the order they were
/// established, as from Linux's one FIFO accept queue; a listener of its own numbers its
/// queue in order too.
#[test]
fn shared_listeners_keep_the_order_connections_were_queued_in() {
    let shared = SharedBacklog::new(16);
    let mut shards = [Harness::new(config()), Harness::new(config())];
    let mut listeners = Vec::new();
    for h in &mut shards {
        let l = h.ep.listen(server(), 16).unwrap();
        h.ep.share_backlog(l, shared.clone()).unwrap();
        listeners.push(l);
    }
    // Six clients, established on the shards as a flow hash might spread them.
    let on = [1, 0, 0, 1, 1, 0];
    for (i, &shard) in on.iter().enumerate() {
        let h = &mut shards[shard];
        let from = SocketAddr::new(PEER, 40001 + i as u16);
        h.inject(from, server(), Out::new(SYN, 1000, 0));
        let sa = h.one();
        h.inject(from, server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    }
    assert_eq!(
        shards[1].ep.accept_order(listeners[1]),
        Ok(Some(0)),
        "the first established is numbered first"
    );
    let mut accepted = Vec::new();
    while let Some((order, shard)) = (0..2)
        .filter_map(|s| Some((shards[s].ep.accept_order(listeners[s]).unwrap()?, s)))
        .min()
    {
        let c = shards[shard].ep.accept(listeners[shard]).unwrap();
        accepted.push((order, shards[shard].ep.peer_addr(c).unwrap().port()));
    }
    assert_eq!(
        accepted,
        (0..6).map(|i| (i, 40001 + i as u16)).collect::<Vec<_>>()
    );
    assert_eq!(shards[0].ep.accept_order(listeners[0]), Ok(None));

    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 4).unwrap();
    for port in [40001, 40002] {
        let from = SocketAddr::new(PEER, port);
        h.inject(from, server(), Out::new(SYN, 1000, 0));
        let sa = h.one();
        h.inject(from, server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    }
    assert_eq!(h.ep.accept_order(l), Ok(Some(0)));
    h.ep.accept(l).unwrap();
    assert_eq!(h.ep.accept_order(l), Ok(Some(1)));
    assert_eq!(
        h.ep.accept_order(ListenerHandle(usize::MAX)),
        Err(Error::InvalidHandle)
    );
}

/// A listener on the unspecified address and one on an own address clash on one port,
/// whichever comes first (Linux's `inet_csk_bind_conflict`); the families do not.
#[test]
fn wildcard_and_specific_listeners_clash_on_a_port() {
    let any4: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let mut h = Harness::new(config());
    h.ep.listen(any4, 4).unwrap();
    assert_eq!(h.ep.listen(server(), 4), Err(Error::AddrInUse));
    h.ep.listen("[::]:8080".parse().unwrap(), 4).unwrap();
    h.ep.listen(SocketAddr::new(server().ip(), 81), 4).unwrap();

    let mut h = Harness::new(config());
    h.ep.listen(server(), 4).unwrap();
    assert_eq!(h.ep.listen(any4, 4), Err(Error::AddrInUse));
    // Port 0 on the unspecified address skips a port an own address listens on.
    let mut cfg = config();
    cfg.ephemeral_ports((8080, 8081));
    let mut h = Harness::new(cfg);
    h.ep.listen(server(), 4).unwrap();
    let l = h.ep.listen("0.0.0.0:0".parse().unwrap(), 4).unwrap();
    assert_eq!(h.ep.listener_addr(l).unwrap().port(), 8081);
}

/// Dual stack, as Linux's default: a listener on `[::]` answers an IPv4 SYN to one of our
/// addresses on its port when no IPv4 listener holds the port, and the connection is IPv4;
/// an IPv4 listener on the port takes it instead. Another port stays closed.
#[test]
fn a_listener_on_the_ipv6_unspecified_address_takes_ipv4_where_no_ipv4_listener_does() {
    let mut h = Harness::new(config());
    let any6 = h.ep.listen("[::]:8080".parse().unwrap(), 4).unwrap();
    let other = SocketAddr::new(PEER, 5000);
    h.inject(other, server(), Out::new(SYN, 5000, 0));
    assert!(h.one().is(SYN | ACK));
    let closed = SocketAddr::new(server().ip(), 8081);
    h.inject(SocketAddr::new(PEER, 5001), closed, Out::new(SYN, 7000, 0));
    assert!(h.one().is(RST | ACK));

    let any4 = h.ep.listen("0.0.0.0:8080".parse().unwrap(), 4).unwrap();
    let _ = h.events();
    h.inject(
        SocketAddr::new(PEER, 5002),
        server(),
        Out::new(SYN, 9000, 0),
    );
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    h.inject(
        SocketAddr::new(PEER, 5002),
        server(),
        Out::new(ACK, 9001, 0).ackn(synack.seq + 1),
    );
    let c = h.ep.accept(any4).expect("the IPv4 listener took it");
    assert_eq!(h.ep.local_addr(c).unwrap(), server());
    assert_eq!(h.ep.accept(any6), Err(Error::WouldBlock));
}

#[test]
fn listen_errors_are_typed() {
    let mut h = Harness::new(config());
    h.ep.listen(server(), 4).unwrap();
    assert_eq!(h.ep.listen(server(), 4), Err(Error::AddrInUse));
    let foreign = SocketAddr::new(PEER, 80);
    assert_eq!(h.ep.listen(foreign, 4), Err(Error::AddrNotAvailable));
    let any = h.ep.listen("0.0.0.0:0".parse().unwrap(), 4).unwrap();
    assert_ne!(h.ep.listener_addr(any).unwrap().port(), 0);
}

/// Connecting to port 0 sends the SYN, as Linux's `connect(2)` does, and the RST that
/// answers it (port 0 names no socket) refuses the connection.
#[test]
fn connecting_to_port_zero_is_refused_by_the_peer() {
    let mut h = Harness::new(config());
    let zero: SocketAddr = "198.18.0.1:0".parse().unwrap();
    let c = h.ep.connect(h.now, zero).unwrap();
    let syn = h.one();
    assert!(syn.is(SYN) && syn.dst == zero);
    h.inject(zero, syn.src, Out::new(RST | ACK, 0, 0).ackn(syn.seq + 1));
    assert!(h
        .events()
        .contains(&Event::Closed(c, Some(Error::ConnectionRefused))));
}

#[test]
fn connect_errors_are_typed() {
    let mut h = Harness::new(config());
    // No TCP to a group (Linux's `tcp_v4_connect`: ENETUNREACH).
    assert_eq!(
        h.ep.connect(h.now, "224.0.0.1:80".parse().unwrap()),
        Err(Error::NetworkUnreachable)
    );
    let bogus = ConnectionHandle(999_999);
    assert_eq!(h.ep.send(bogus, b"x"), Err(Error::InvalidHandle));
    assert_eq!(h.ep.state(bogus), Err(Error::InvalidHandle));
}

/// A connect to a link-local address (fe80::/10) or an interface- or link-local group
/// without a scope id is `InvalidInput`, as Linux's `tcp_v6_connect` fails with EINVAL
/// (Linux 6.18 in `unshare -n`: fe80::1, fe90::1 and febf::1 with scope 0 EINVAL, with
/// the veth's index the SYN goes); with one it goes, the stack's one link being any scope's.
#[test]
fn a_link_local_connect_needs_a_scope_id() {
    let addrs = ["198.18.0.2".parse().unwrap(), "2001:2::2".parse().unwrap()];
    let mut ep = synack_core::Endpoint::new(config(), &addrs);
    let now = synack_core::Instant::ZERO;
    for unscoped in ["[fe80::1]:80", "[fe90::1]:80", "[febf::ffff]:80"] {
        let to: SocketAddr = unscoped.parse().unwrap();
        assert_eq!(ep.connect(now, to), Err(Error::InvalidInput), "{to}");
    }
    // Groups have no TCP whatever their scope (ENETUNREACH comes first, as Linux's).
    assert_eq!(
        ep.connect(now, "[ff02::1]:80".parse().unwrap()),
        Err(Error::NetworkUnreachable)
    );
    // A site-local or global one needs none.
    ep.connect(now, "[fec0::1]:80".parse().unwrap()).unwrap();
    let scoped = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 80, 0, 3);
    ep.connect(now, scoped.into()).unwrap();
}

#[test]
fn wildcard_listener_accepts_on_any_own_address() {
    let mut h = Harness::new(config());
    let l = h.ep.listen("0.0.0.0:7".parse().unwrap(), 4).unwrap();
    h.inject(client(), SocketAddr::new(US, 7), Out::new(SYN, 1, 0));
    let sa = h.one();
    assert!(sa.is(SYN | ACK));
    h.inject(
        client(),
        SocketAddr::new(US, 7),
        Out::new(ACK, 2, 0).ackn(sa.seq + 1),
    );
    assert!(h.ep.accept(l).is_ok());
}

// === IPv6 =======================================================================================

#[test]
fn ipv6_handshake_uses_the_ipv6_mss() {
    let mut h = Harness::new(config());
    let peer = SocketAddr::new(PEER6, 443);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    assert_eq!(syn.src.ip(), US6);
    assert_eq!(syn.mss, Some(1440));
    h.inject(
        peer,
        syn.src,
        Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1).mss(1440),
    );
    let ack = h.one();
    assert!(ack.is(ACK));
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
}

// === Closed ports ===============================================================================

#[test]
fn syn_to_closed_port_gets_rst_ack() {
    let mut h = Harness::new(config());
    h.inject(client(), SocketAddr::new(US, 9), Out::new(SYN, 3000, 0));
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!(rst.seq, SeqNumber(0));
    assert_eq!(rst.ack, SeqNumber(3001), "<ACK=SEG.SEQ+SEG.LEN>");
    assert_eq!(h.ep.stats().rsts_sent, 1);
    // A segment sent, as Linux's tcp_v4_send_reset counts OutSegs.
    assert_eq!(h.ep.stats().segments_out, 1);
}

#[test]
fn data_to_closed_port_acks_its_length() {
    let mut h = Harness::new(config());
    h.inject(
        client(),
        SocketAddr::new(US, 9),
        Out::new(TcpFlags::PSH | TcpFlags::FIN, 10, 0).data(b"hello"),
    );
    let rst = h.one();
    assert_eq!(rst.ack, SeqNumber(16), "5 bytes plus FIN");
}

#[test]
fn an_answer_too_big_for_the_buffer_given_is_dropped_and_counted() {
    // `poll_transmit` wants a buffer of at least the MTU; one smaller loses the packet
    // that does not fit, counted, and the queue goes on.
    let mut h = Harness::new(config());
    h.inject(client(), SocketAddr::new(US, 9), Out::new(SYN, 3000, 0));
    let before = h.ep.stats().drop_other;
    let mut tiny = [0u8; 20];
    assert!(h.ep.poll_transmit(h.now, &mut tiny).is_none());
    assert_eq!(h.ep.stats().drop_other, before + 1);
    h.none();
    // Lost, so not counted as sent.
    assert_eq!(h.ep.stats().rsts_sent, 0);
    assert_eq!(h.ep.stats().segments_out, 0);
}

#[test]
fn rst_to_closed_port_is_never_answered() {
    let mut h = Harness::new(config());
    h.inject(client(), SocketAddr::new(US, 9), Out::new(RST, 10, 0));
    h.inject(client(), SocketAddr::new(US, 9), Out::new(RST | ACK, 10, 5));
    h.none();
}

#[test]
fn packets_for_other_addresses_are_dropped() {
    let mut h = Harness::new(config());
    h.inject(client(), SocketAddr::new(PEER, 9), Out::new(SYN, 10, 0));
    h.none();
    assert_eq!(h.ep.stats().drop_not_for_us, 1);
}

// === ISNs =======================================================================================

#[test]
fn isns_differ_across_tuples_and_are_not_sequential() {
    let mut h = Harness::new(config());
    let mut isns = Vec::new();
    for port in 0..50u16 {
        h.ep.connect(h.now, SocketAddr::new(PEER, 1000 + port))
            .unwrap();
        isns.push(h.one().seq.0);
    }
    let mut sorted = isns.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), isns.len(), "all distinct");
    // Not a counter: consecutive ISNs are far apart on average.
    let mean_gap: f64 = isns
        .windows(2)
        .map(|w| (w[1].wrapping_sub(w[0]) as i32).unsigned_abs() as f64)
        .sum::<f64>()
        / 49.0;
    assert!(mean_gap > 1e7, "mean gap {mean_gap}");
}

#[test]
fn isns_differ_between_endpoints_with_different_secrets() {
    let mut a = Harness::new(config());
    let mut cfg = config();
    cfg.seed(Some([9; 32]));
    let mut b = Harness::new(cfg);
    a.ep.connect(a.now, peer80()).unwrap();
    b.ep.connect(b.now, peer80()).unwrap();
    let (sa, sb) = (a.one(), b.one());
    assert_ne!(sa.seq, sb.seq, "ISNs depend on the secret");
}

#[test]
fn passive_isn_follows_the_4us_clock_for_the_same_tuple() {
    let mut h = Harness::new(config());
    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0));
    let a = h.one();
    h.inject(client(), server(), Out::new(RST, 1001, 0));
    assert_eq!(h.ep.connection_count(), 0);
    h.advance(Duration::from_millis(400));
    h.inject(client(), server(), Out::new(SYN, 7000, 0));
    let b = h.one();
    let delta = b.seq.0.wrapping_sub(a.seq.0);
    assert_eq!(delta, 100_000, "400 ms / 4 µs");
}

// === ICMP =======================================================================================

#[test]
fn ping_gets_an_echo_reply() {
    use synack_core::wire::IcmpRepr;
    let mut h = Harness::new(config());
    let req = IcmpRepr::EchoRequest {
        ident: 0x1234,
        seq_no: 7,
        data: b"abcdefgh",
    };
    let p = icmp_packet(req);
    h.inject_raw(&p);
    let _ = h.drain();
    assert_eq!(h.raw.len(), 1);
    let (rip, payload) = synack_core::wire::ip::parse(&h.raw[0]).unwrap();
    assert_eq!(rip.src_addr(), US);
    assert_eq!(rip.dst_addr(), PEER);
    match IcmpRepr::parse_v4(payload).unwrap() {
        IcmpRepr::EchoReply {
            ident,
            seq_no,
            data,
        } => {
            assert_eq!((ident, seq_no, data), (0x1234, 7, &b"abcdefgh"[..]));
        }
        other => panic!("expected an echo reply, got {other:?}"),
    }
    assert_eq!(h.ep.stats().echo_replies, 1);
}

#[test]
fn a_syn_ack_echoing_a_timestamp_we_never_sent_is_refused_with_a_bare_rst() {
    // Linux's tcp_rcv_synsent_state_process (PAWSActiveRejected; packetdrill's
    // fastopen/client/synack-data): the TSecr must lie between our first SYN's TSval and our
    // clock now. Else an RST without options, and SYN-SENT goes on for a valid SYN-ACK.
    let mut h = Harness::new(config());
    let (c, syn) = start(&mut h);
    let tsval = syn.ts.unwrap().tsval;
    let synack = |echo| {
        Out::new(SYN | ACK, 5000, 0)
            .ackn(syn.seq + 1)
            .mss(1460)
            .sack_ok()
            .ts(777, echo)
    };
    h.advance(Duration::from_millis(10));
    for bad in [tsval.wrapping_add(9999), tsval.wrapping_sub(1)] {
        h.inject(peer80(), syn.src, synack(bad));
        let rst = h.one();
        assert!(rst.is(TcpFlags::RST), "{rst:?}");
        assert_eq!(rst.seq, syn.seq + 1);
        assert_eq!(rst.ts, None, "an RST in reply carries no timestamps");
        assert_eq!(h.ep.state(c), Ok(State::SynSent));
    }
    h.inject(peer80(), syn.src, synack(tsval));
    let ack = h.one();
    assert!(ack.is(ACK) && !ack.is(TcpFlags::RST), "{ack:?}");
    assert_eq!(h.ep.state(c), Ok(State::Established));
}

#[test]
fn icmp_port_unreachable_fails_a_connect() {
    use synack_core::wire::IcmpRepr;
    let mut h = Harness::new(config());
    let (c, _) = start(&mut h);
    let quoted = h.raw[0][..28].to_vec(); // our SYN's IP header and first 8 TCP bytes
    let err = IcmpRepr::DstUnreachable {
        code: 3,
        invoking: &quoted,
    };
    let p = icmp_packet(err);
    h.inject_raw(&p);
    assert_eq!(h.ep.state(c).unwrap(), State::Closed);
    assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::ConnectionRefused));
}

/// Each IPv4 destination-unreachable code fails a connect with Linux's errno for it
/// (`icmp_err_convert`): protocol unreachable is ENOPROTOOPT (before, "connection
/// refused"), a source route failure EOPNOTSUPP, a destination net unknown or an isolated
/// source ENETUNREACH (before, "host unreachable"); EHOSTDOWN has no variant and stays the
/// nearest, "host unreachable".
#[test]
fn icmp_unreachable_codes_fail_a_connect_with_linux_errnos() {
    use synack_core::wire::IcmpRepr;
    for (code, want) in [
        (0, Error::NetworkUnreachable),
        (1, Error::HostUnreachable),
        (2, Error::ProtocolNotAvailable),
        (5, Error::OperationNotSupported),
        (6, Error::NetworkUnreachable),
        (7, Error::HostUnreachable),
        (8, Error::NetworkUnreachable),
        (11, Error::NetworkUnreachable),
        (13, Error::HostUnreachable),
    ] {
        let mut h = Harness::new(config());
        let (c, _) = start(&mut h);
        let quoted = h.raw[0][..28].to_vec();
        let p = icmp_packet(IcmpRepr::DstUnreachable {
            code,
            invoking: &quoted,
        });
        h.inject_raw(&p);
        assert_eq!(h.ep.state(c).unwrap(), State::Closed, "code {code}");
        assert_eq!(h.ep.take_error(c).unwrap(), Some(want), "code {code}");
    }
}

#[test]
fn icmp_host_unreachable_with_a_stale_sequence_is_ignored() {
    use synack_core::wire::IcmpRepr;
    let mut h = Harness::new(config());
    let (c, _) = start(&mut h);
    let mut quoted = h.raw[0][..28].to_vec();
    // Corrupt the quoted sequence number: RFC 5927 says ignore it.
    quoted[24] ^= 0x80;
    let err = IcmpRepr::DstUnreachable {
        code: 1,
        invoking: &quoted,
    };
    let p = icmp_packet(err);
    h.inject_raw(&p);
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
}

/// Linux's tcp_v4_err ignores unreachable codes past RFC 792's 15, and any ICMP error whose
/// quote is not of its own family (an ICMPv4 error quoting an IPv6 packet): neither fails a
/// connect.
#[test]
fn icmp_errors_with_unknown_codes_or_a_foreign_quote_are_ignored() {
    use synack_core::wire::IcmpRepr;
    let mut h = Harness::new(config());
    let (c, _) = start(&mut h);
    let quoted = h.raw[0][..28].to_vec();
    let p = icmp_packet(IcmpRepr::DstUnreachable {
        code: 16,
        invoking: &quoted,
    });
    h.inject_raw(&p);
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    let mut as_v6 = quoted.clone();
    as_v6[0] = 0x60 | (as_v6[0] & 0x0f);
    let dropped = h.ep.stats().drop_malformed;
    let p = icmp_packet(IcmpRepr::DstUnreachable {
        code: 1,
        invoking: &as_v6,
    });
    h.inject_raw(&p);
    assert_eq!(h.ep.state(c).unwrap(), State::SynSent);
    assert_eq!(h.ep.stats().drop_malformed, dropped + 1);
}

/// An ICMP error about a listener's SYN-ACK ends the half-open connection only for the codes
/// Linux's tcp_req_err aborts on (IPv4: net or host unreachable); "administratively
/// prohibited" leaves it to the handshake, which the peer's ACK still completes.
#[test]
fn icmp_errors_end_a_half_open_connection_only_for_net_or_host_unreachable() {
    use synack_core::wire::IcmpRepr;
    for (code, ends) in [(13u8, false), (1, true)] {
        let mut h = Harness::new(config());
        let (l, server, client, sa) = passive_syn(&mut h);
        assert_eq!(h.ep.connection_count(), 1);
        let quoted = h.raw.last().unwrap()[..28].to_vec();
        let p = icmp_packet(IcmpRepr::DstUnreachable {
            code,
            invoking: &quoted,
        });
        h.inject_raw(&p);
        let _ = h.drain();
        h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
        if ends {
            assert_eq!(h.ep.accept(l), Err(Error::WouldBlock), "code {code}");
        } else {
            let c = h.ep.accept(l).unwrap();
            assert_eq!(h.ep.state(c), Ok(State::Established), "code {code}");
        }
    }
}

/// A parameter problem about a SYN ends the connect with `ProtocolError` (EPROTO, Linux's
/// `tcp_v4_err` and `tcp_done_with_error`), and one about a listener's SYN-ACK ends the
/// half-open connection (`tcp_req_err`, fatal); synack ignored the type
/// (`icmp-parameter-problem.pkt`).
#[test]
fn a_parameter_problem_ends_an_opening_connection() {
    use synack_core::wire::IcmpRepr;
    let problem = |h: &mut Harness| {
        let quoted = h.raw.last().unwrap()[..28].to_vec();
        let p = icmp_packet(IcmpRepr::ParamProblem {
            code: 0,
            pointer: 0,
            invoking: &quoted,
        });
        h.inject_raw(&p);
        let _ = h.drain();
    };
    let mut h = Harness::new(config());
    let conn = h.ep.connect(h.now, SocketAddr::new(PEER, 80)).unwrap();
    let _ = h.one();
    problem(&mut h);
    assert_eq!(h.ep.state(conn), Ok(State::Closed));
    assert_eq!(h.ep.take_error(conn), Ok(Some(Error::ProtocolError)));

    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn(&mut h);
    problem(&mut h);
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
}

// === Resource limits =============================================================================

#[test]
fn total_memory_budget_refuses_new_connections() {
    let mut c = config();
    c.max_memory(100_000);
    let mut h = Harness::new(c);
    // Two connections whose writes fill the budget: the second is cut short at the cap.
    let mut conns = Vec::new();
    for (port, fits) in [(1u16, 60_000), (2, 40_000)] {
        let peer = SocketAddr::new(PEER, port);
        let conn = h.ep.connect(h.now, peer).unwrap();
        let syn = h.one();
        h.inject(
            peer,
            syn.src,
            Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1).mss(1460),
        );
        let _ = h.drain();
        assert_eq!(h.ep.send(conn, &[0u8; 60_000]).unwrap(), fits);
        let _ = h.drain();
        conns.push(conn);
    }
    assert_eq!(h.ep.memory(), 100_000);
    assert_eq!(h.ep.send_capacity(conns[0]), Ok(0));
    assert_eq!(h.ep.send(conns[0], b"more"), Err(Error::WouldBlock));
    assert_eq!(
        h.ep.connect(h.now, SocketAddr::new(PEER, 3)),
        Err(Error::NoBufferSpace)
    );
    // A listener drops SYNs while the budget is spent...
    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1, 0));
    h.none();
    assert_eq!(h.ep.stats().drop_memory, 1);
    assert_eq!(h.ep.stats().refused_memory, 2, "the connect and the SYN");
    assert_eq!(h.ep.stats().drop_listen_overflow, 0);
    // ...and takes them again once a connection is gone.
    h.ep.abort(conns[0]).unwrap();
    let _ = h.drain();
    assert_eq!(h.ep.memory(), 40_000);
    h.inject(client(), server(), Out::new(SYN, 1, 0));
    assert!(h.one().is(SYN | ACK));
}

#[test]
fn max_connections_is_enforced() {
    let mut c = config();
    c.max_connections(3).syncookies(SynCookies::Off);
    let mut h = Harness::new(c);
    for port in 1..=3u16 {
        h.ep.connect(h.now, SocketAddr::new(PEER, port)).unwrap();
    }
    assert_eq!(
        h.ep.connect(h.now, SocketAddr::new(PEER, 4)),
        Err(Error::NoBufferSpace)
    );
    let _l = h.ep.listen(server(), 16).unwrap();
    let _ = h.drain();
    h.inject(client(), server(), Out::new(SYN, 1, 0));
    h.none();
    assert_eq!(h.ep.connection_count(), 3);
}

// === Socket options =============================================================================

#[test]
fn socket_options_shape_the_syn() {
    let mut h = Harness::new(config());
    let opts = SocketOptions {
        recv_buffer: Some(32 * 1024),
        max_segment: Some(1200),
        ..Default::default()
    };
    let local = SocketAddr::new(US, 40_001);
    let c =
        h.ep.connect_with(h.now, peer80(), Some(local), &opts)
            .unwrap();
    let syn = h.one();
    assert_eq!(syn.src, local, "bound before connecting");
    assert_eq!(syn.mss, Some(1200));
    assert_eq!(syn.window, 32 * 1024);
    assert_eq!(syn.wscale, Some(0), "32 KiB needs no scaling");
    // The same 4-tuple again is taken: EADDRNOTAVAIL, as Linux's connect(2).
    assert_eq!(
        h.ep.connect_with(h.now, peer80(), Some(local), &opts),
        Err(Error::AddrNotAvailable)
    );
    // The window stays within the buffer after the handshake (no auto-tuning past it).
    h.inject(
        peer80(),
        syn.src,
        Out::new(SYN | ACK, 1, 0)
            .ackn(syn.seq + 1)
            .mss(1460)
            .wscale(7),
    );
    let ack = h.one();
    assert!(usize::from(ack.window) <= 32 * 1024, "{}", ack.window);
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
}

#[test]
fn a_listeners_options_shape_the_syn_ack() {
    let mut h = Harness::new(config());
    let opts = SocketOptions {
        recv_buffer: Some(1 << 20),
        max_segment: Some(1000),
        nodelay: Some(true),
        ..Default::default()
    };
    let l = h.ep.listen_with(server(), 8, &opts).unwrap();
    h.inject(
        client(),
        server(),
        Out::new(SYN, 1000, 0).wscale(7).mss(1460),
    );
    let sa = h.one();
    assert_eq!(sa.mss, Some(1000));
    assert_eq!(
        sa.wscale,
        Some(5),
        "1 MiB >> 4 is one more than 65535: a shift of 5"
    );
    h.inject(client(), server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    assert!(h.ep.nodelay(c).unwrap());
    // Our segments are at most the MSS we set.
    h.ep.send(c, &[1u8; 3000]).unwrap();
    let segs = h.drain();
    assert!(segs.iter().all(|s| s.payload.len() <= 1000), "{segs:?}");
}

#[test]
fn options_set_on_a_listening_socket_shape_later_syn_acks() {
    // Linux's TCP_MAXSEG on a listener (mss-setsockopt-tcp_maxseg-server.pkt).
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 8).unwrap();
    let opts = SocketOptions {
        max_segment: Some(1100),
        ..Default::default()
    };
    h.ep.set_listener_options(l, &opts).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0).mss(1300));
    let sa = h.one();
    assert_eq!(sa.mss, Some(1100));
    let stale = synack_core::ListenerHandle(usize::MAX);
    assert_eq!(
        h.ep.set_listener_options(stale, &opts),
        Err(Error::InvalidHandle)
    );
}

#[test]
fn keepalive_from_socket_options_probes_an_idle_connection() {
    let mut h = Harness::new(config());
    let opts = SocketOptions {
        keepalive: Some(KeepaliveConfig {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            probes: 3,
        }),
        ..Default::default()
    };
    h.ep.connect_with(h.now, peer80(), None, &opts).unwrap();
    let syn = h.one();
    h.inject(
        peer80(),
        syn.src,
        Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1).mss(1460),
    );
    let _ = h.one();
    let t0 = h.now;
    let (t, probe) = h.next_timeout();
    assert_eq!(t - t0, Duration::from_secs(10));
    assert_eq!(probe.len(), 1);
    assert_eq!(
        probe[0].seq, syn.seq,
        "a keepalive probe sits one below SND.NXT"
    );
}

/// `SO_KEEPALIVE` off on a socket turns probing off where the endpoint's `Config::keepalive`
/// has every connection probe: an active open's and a listener's accepted connections stay
/// silent however long they idle. There was no way to say it: a socket's options could
/// only turn keepalive on.
#[test]
fn keepalive_off_in_socket_options_beats_the_endpoints_keepalive() {
    let mut cfg = config();
    cfg.keepalive(Some(KeepaliveConfig {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(2),
        probes: 3,
    }));
    let off = SocketOptions {
        keepalive_off: true,
        ..Default::default()
    };
    for listener in [false, true] {
        for opts in [SocketOptions::default(), off] {
            let mut h = Harness::new(cfg.clone());
            if listener {
                let l = h.ep.listen_with(server(), 16, &opts).unwrap();
                h.inject(client(), server(), Out::new(SYN, 10, 0).mss(1460));
                let sa = h.one();
                h.inject(client(), server(), Out::new(ACK, 11, 0).ackn(sa.seq + 1));
                h.ep.accept(l).unwrap();
            } else {
                h.ep.connect_with(h.now, peer80(), None, &opts).unwrap();
                let syn = h.one();
                h.inject(
                    peer80(),
                    syn.src,
                    Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1).mss(1460),
                );
                let _ = h.one();
            }
            let t0 = h.now;
            let probes = match h.ep.poll_timeout() {
                Some(_) => h.next_timeout().1.len(),
                None => 0,
            };
            let probing = !opts.keepalive_off;
            assert_eq!(
                probes,
                usize::from(probing),
                "listener {listener}, {opts:?}"
            );
            if probing {
                assert_eq!(h.now - t0, Duration::from_secs(10));
            }
        }
    }
}

/// A connection reset with data in flight gives back all it held while the application
/// still holds its handle: the send queue (Linux's `tcp_write_queue_purge`) and the record
/// of the segments sent (`tcp_rtx_queue_purge`), which used to stay (with a peer of MSS 48
/// sending thousands of entries, hundreds of KiB uncharged).
#[test]
fn a_reset_connection_holds_no_memory() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(server(), 16).unwrap();
    // With SACK, which RACK's record of the segments sent serves.
    h.inject(client(), server(), Out::new(SYN, 10, 0).mss(1000).sack_ok());
    let sa = h.one();
    h.inject(client(), server(), Out::new(ACK, 11, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.send(c, &[9u8; 100_000]).unwrap(), 100_000);
    let sent = h.drain();
    assert!(sent.len() >= 10, "{}", sent.len());
    assert!(h.ep.memory_usage().allocated > 0);
    h.inject(client(), server(), Out::new(RST, 11, 0));
    assert_eq!(h.ep.state(c), Ok(State::Closed));
    assert_eq!(h.ep.memory_usage().allocated, 0);
}

/// Keepalive timing Linux's `setsockopt` refuses (EINVAL) is refused wherever a socket's
/// options reach the endpoint, before anything is made: no SYN leaves, no listener opens.
#[test]
fn keepalive_timing_out_of_range_is_refused_in_socket_options() {
    let mut h = Harness::new(config());
    let bad = [
        (0, 2, 3),
        (10, 0, 3),
        (10, 2, 0),
        (32_768, 2, 3),
        (10, 2, 128),
    ];
    let bad = bad
        .map(|(idle, interval, probes)| {
            (
                Duration::from_secs(idle),
                Duration::from_secs(interval),
                probes,
            )
        })
        .into_iter()
        // Under the core clock's microsecond, which counts them as none: a probe every round
        // trip, or a connection failed as soon as it idles (these passed before).
        .chain([
            (Duration::from_nanos(500), Duration::from_secs(2), 3),
            (Duration::from_secs(10), Duration::from_nanos(999), 3),
        ]);
    for (idle, interval, probes) in bad {
        let opts = SocketOptions {
            keepalive: Some(KeepaliveConfig {
                idle,
                interval,
                probes,
            }),
            ..Default::default()
        };
        assert_eq!(opts.check(), Err(Error::InvalidInput));
        assert_eq!(
            h.ep.connect_with(h.now, peer80(), None, &opts),
            Err(Error::InvalidInput)
        );
        assert_eq!(
            h.ep.listen_with(server(), 16, &opts),
            Err(Error::InvalidInput)
        );
        let l = h.ep.listen(server(), 16).unwrap();
        assert_eq!(
            h.ep.set_listener_options(l, &opts),
            Err(Error::InvalidInput)
        );
        h.ep.close_listener(h.now, l).unwrap();
    }
    h.none();
}

/// RFC 6298 §5.7: "If the timer expires awaiting the ACK of a SYN segment and the TCP
/// implementation is using an RTO less than 3 seconds, the RTO MUST be re-initialized to
/// 3 seconds when data transmission begins (i.e., after the three-way handshake
/// completes)." Linux: tcp_init_metrics sets icsk_rto = TCP_TIMEOUT_FALLBACK (3 s) when the
/// handshake gave no RTT sample. A listener's SYN-ACK times out after 1 s, so a path with an
/// RTT between 1 and 2 s always retransmits it; Karn's rule then leaves no sample, and the
/// first data RTO must not be the 1 s initial one, which would fire spuriously there.
#[test]
fn data_rto_after_a_retransmitted_synack_is_three_seconds() {
    let mut c = config();
    c.timestamps(false);
    let mut h = Harness::new(c);
    let l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 1000, 0).mss(1460));
    let sa = h.one();
    assert!(sa.is(SYN | ACK));
    // A 1.5 s RTT: the SYN-ACK is resent at 1 s, the ACK of the first arrives at 1.5 s.
    h.advance(Duration::from_millis(1500));
    assert_eq!(h.sent.len(), 2, "the SYN-ACK was retransmitted once");
    h.inject(client(), server(), Out::new(ACK, 1001, 0).ackn(sa.seq + 1));
    let conn = h.ep.accept(l).expect("established");
    h.ep.send(conn, &[7u8; 100]).unwrap();
    let t0 = h.now;
    let data = h.one();
    assert_eq!(data.payload.len(), 100);
    // The first timeout for that data: 3 s by RFC 6298 §5.7 and Linux (no tail loss probe
    // is due before an RTT sample exists).
    let (t, _) = h.next_timeout();
    assert!(
        t - t0 >= Duration::from_secs(3),
        "first data timeout after {:?}, RFC 6298 §5.7 wants 3 s",
        t - t0
    );
}

/// With timestamps, though, the ACK's echo names the SYN-ACK it answers (RFC 7323 §4.3): an
/// echo of the resend is a sample of the path (50 ms here) despite the retransmission, as
/// Linux's `tcp_ack_update_rtt` takes it, and the first data's timers follow it, not the
/// 3 s fallback.
#[test]
fn an_echo_of_the_resent_synack_gives_the_data_an_rtt() {
    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn_ts(&mut h);
    h.advance(Duration::from_millis(1000));
    let (_, again) = h.sent.last().expect("the SYN-ACK again").clone();
    assert!(again.is(SYN | ACK), "the SYN-ACK was retransmitted");
    let echo = again.ts.expect("timestamps").tsval;
    h.advance(Duration::from_millis(50));
    h.inject(
        client,
        server,
        Out::new(ACK, 101, 0).ackn(sa.seq + 1).ts(1100, echo),
    );
    let conn = h.ep.accept(l).expect("established");
    let srtt = h.ep.info(h.now, conn).unwrap().rtt;
    assert_eq!(srtt, Duration::from_millis(50), "the echo's sample");
    h.ep.send(conn, &[7u8; 100]).unwrap();
    let t0 = h.now;
    assert_eq!(h.one().payload.len(), 100);
    let (t, _) = h.next_timeout();
    assert!(
        t - t0 < Duration::from_secs(1),
        "first data timer after {:?}, not the 3 s fallback",
        t - t0
    );
}

/// A listener on US:8080 and a SYN with timestamps (TSval 1000) from PEER:40000 (ISN 100):
/// the listener, the server's and the client's addresses, and our SYN-ACK.
fn passive_syn_ts(h: &mut Harness) -> (synack_core::ListenerHandle, SocketAddr, SocketAddr, Seg) {
    let server = SocketAddr::new(US, 8080);
    let client = SocketAddr::new(PEER, 40000);
    let l = h.ep.listen(server, 8).unwrap();
    h.inject(
        client,
        server,
        Out::new(SYN, 100, 0)
            .mss(1000)
            .sack_ok()
            .wscale(7)
            .ts(1000, 0),
    );
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    (l, server, client, synack)
}

/// A passive open's half-open connection judges PAWS as Linux's request socket does
/// (`tcp_check_req`, `tcp_paws_reject`), not as an established connection: no tick of
/// slack (the handshake's ACK one tick stale is answered with an ACK and dropped, where
/// synack completed the handshake), an RST not exempt (one with a stale TSval is dropped,
/// where it ended the half-open connection), and a retransmitted SYN failing it is no
/// retransmission (a bare ACK echoing TS.Recent, where synack resent the SYN-ACK echoing
/// the stale TSval). A review's tests; each passes on the kernel as a packetdrill script.
#[test]
fn a_half_open_connection_judges_paws_as_linuxs_request_socket() {
    // One tick stale.
    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn_ts(&mut h);
    let ecr = sa.ts.unwrap().tsval;
    h.advance(Duration::from_millis(100));
    let _ = h.drain();
    h.inject(
        client,
        server,
        Out::new(ACK, 101, 0).ackn(sa.seq + 1).ts(999, ecr),
    );
    assert_eq!(
        h.ep.accept(l),
        Err(Error::WouldBlock),
        "the stale ACK completed it"
    );
    let a = h.one();
    assert!(a.is(ACK) && !a.is(SYN) && a.ack == SeqNumber(101), "{a:?}");
    assert_eq!(a.ts.unwrap().tsecr, 1000);
    h.inject(
        client,
        server,
        Out::new(ACK, 101, 0).ackn(sa.seq + 1).ts(1001, ecr),
    );
    assert!(h.ep.accept(l).is_ok());

    // An RST at RCV.NXT with a stale TSval.
    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn_ts(&mut h);
    let ecr = sa.ts.unwrap().tsval;
    h.advance(Duration::from_millis(100));
    let _ = h.drain();
    h.inject(client, server, Out::new(RST, 101, 0).ts(500, ecr));
    h.none();
    h.inject(
        client,
        server,
        Out::new(ACK, 101, 0).ackn(sa.seq + 1).ts(1001, ecr),
    );
    assert!(
        h.ep.accept(l).is_ok(),
        "the stale RST ended the half-open connection"
    );

    // A retransmitted SYN with a stale TSval.
    let mut h = Harness::new(config());
    let (_l, server, client, _) = passive_syn_ts(&mut h);
    h.advance(Duration::from_millis(100));
    let _ = h.drain();
    h.inject(
        client,
        server,
        Out::new(SYN, 100, 0)
            .mss(1000)
            .sack_ok()
            .wscale(7)
            .ts(900, 0),
    );
    let a = h.one();
    assert!(
        a.is(ACK) && !a.is(SYN),
        "Linux answers with a bare ACK: {a:?}"
    );
    assert_eq!(a.ts.unwrap().tsecr, 1000, "TS.Recent went back");
}

/// A SYN in the window of a passive open's half-open connection, other than the client's
/// own, is answered with an RST (at SEG.ACK, or RST|ACK for one without ACK) and the
/// half-open connection is gone, as Linux's request socket does (`tcp_check_req`,
/// `syn-received-in-window-rst-syn.pkt` on the kernel); synack sent a challenge ACK. An RST
/// in the window still draws the challenge ACK, as on the kernel.
#[test]
fn a_syn_in_a_half_open_connections_window_resets_it() {
    for with_ack in [false, true] {
        let mut h = Harness::new(config());
        let (l, server, client, sa) = passive_syn(&mut h);
        let mut syn = Out::new(SYN, 150, 0);
        if with_ack {
            syn = Out::new(SYN | ACK, 150, 0).ackn(sa.seq + 1);
        }
        h.inject(client, server, syn);
        let r = h.one();
        if with_ack {
            assert!(r.is(RST) && r.seq == sa.seq + 1, "{r:?}");
        } else {
            assert!(r.is(RST | ACK) && r.ack == SeqNumber(151), "{r:?}");
        }
        // Gone: the handshake's ACK is refused.
        h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
        assert!(h.one().is(RST));
        assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
    }
    // A SYN-ACK at the client's ISN acknowledging our SYN: no crossing SYN-ACK in a passive
    // open (a full socket's rule), but a segment outside the request's window, answered
    // with an ACK; the connection is not accepted (`syn-received-syn-ack-at-isn.pkt`).
    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn(&mut h);
    h.inject(client, server, Out::new(SYN | ACK, 100, 0).ackn(sa.seq + 1));
    let a = h.one();
    assert!(a.is(ACK) && !a.is(SYN) && !a.is(RST), "{a:?}");
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
    // An RST in the window: a challenge ACK, and the handshake still completes.
    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn(&mut h);
    h.inject(client, server, Out::new(RST, 150, 0));
    let a = h.one();
    assert!(a.is(ACK) && !a.is(RST), "{a:?}");
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
    assert!(h.ep.accept(l).is_ok());
}

// === The link's MTU changed =====================================================================

/// `ip link set DEV mtu 9000` between handshakes: the next SYN, SYN-ACK and cookie SYN-ACK
/// advertise the MSS the new MTU allows, as Linux's read the route each time; a connection
/// already open keeps its own. Out-of-range MTUs are refused.
#[test]
fn a_new_link_mtu_shapes_the_handshakes_that_follow() {
    let mut h = Harness::new(config());
    let (first, syn) = start(&mut h);
    assert_eq!(syn.mss, Some(1460));

    h.ep.set_mtu(9000).unwrap();
    let second = h.ep.connect(h.now, SocketAddr::new(PEER, 81)).unwrap();
    assert_eq!(h.one().mss, Some(9000 - 40));
    // The first one's SYN, resent after its timeout, still offers what it did.
    let (_, again) = h.next_timeout();
    let again: Vec<_> = again.iter().map(|s| (s.dst, s.mss)).collect();
    assert!(again.contains(&(peer80(), Some(1460))), "{again:?}");
    // A lower MTU lowers what both SYNs offer when they go again (Linux's
    // `tcp_advertise_mss` reads the route at each SYN and only ever lowers it).
    h.ep.set_mtu(1200).unwrap();
    let (_, again) = h.next_timeout();
    let mut again: Vec<_> = again.iter().map(|s| s.mss).collect();
    again.dedup();
    assert_eq!(again, [Some(1160)]);
    h.ep.abort(first).unwrap();
    h.ep.abort(second).unwrap();
    let _ = h.drain();
    h.ep.set_mtu(9000).unwrap();

    let _l = h.ep.listen(server(), 16).unwrap();
    h.inject(client(), server(), Out::new(SYN, 7000, 0).mss(8960));
    let sa = h.one();
    assert!(sa.is(SYN | ACK));
    assert_eq!(sa.mss, Some(8960));

    assert_eq!(
        h.ep.set_mtu(synack_core::MIN_MTU - 1),
        Err(Error::InvalidInput)
    );
    assert_eq!(
        h.ep.set_mtu(synack_core::MAX_MTU + 1),
        Err(Error::InvalidInput)
    );
    h.ep.set_mtu(1280).unwrap();
    h.inject(
        SocketAddr::new(PEER, 2),
        server(),
        Out::new(SYN, 9000, 0).mss(1460),
    );
    assert_eq!(h.one().mss, Some(1240), "down as well as up");
}

/// A cookie's SYN-ACK takes the MSS from the new MTU too: over IPv6 at 9000, the largest
/// entry of Linux's IPv6 cookie table, 9000 - 60 (the kernel selftest
/// `tcp_syncookies_ip6_9k`).
#[test]
fn a_cookie_syn_ack_offers_the_new_link_mss() {
    let mut cfg = config();
    cfg.syncookies(SynCookies::Always);
    let mut h = Harness::new(cfg);
    h.ep.set_mtu(9000).unwrap();
    let server6 = SocketAddr::new(US6, 8080);
    let l = h.ep.listen(server6, 16).unwrap();
    let syn = Out::new(SYN, 7000, 0)
        .mss(8940)
        .sack_ok()
        .ts(100, 0)
        .wscale(10);
    h.inject(SocketAddr::new(PEER6, 40000), server6, syn);
    let sa = h.one();
    assert!(sa.is(SYN | ACK));
    assert_eq!(sa.mss, Some(8940));
    assert_eq!(h.ep.stats().syncookies_sent, 1);
    let ack = Out::new(ACK, 7001, 0)
        .ackn(sa.seq + 1)
        .ts(110, sa.ts.unwrap().tsval)
        .window(1024);
    h.inject(SocketAddr::new(PEER6, 40000), server6, ack);
    let c = h.ep.accept(l).expect("rebuilt from the cookie");
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!(info.snd_mss, 8940 - 12);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (10, sa.wscale.unwrap()));
    assert_eq!(info.options & 7, 7, "timestamps, SACK and window scaling");
}

/// TCP_USER_TIMEOUT bounds a connect, counted from the first SYN (Linux's
/// `tcp_write_timeout`): the first timeout still resends the SYN, and the connect fails
/// with `TimedOut` at once after it when the user timeout is shorter; a timer run late
/// (the user timeout long past when it runs) leaves no deadline behind the time it ran at,
/// which a fuzzer found (`fuzz/regressions/endpoint/user-timeout-syn-late-timer.bin`).
#[test]
fn a_user_timeout_bounds_a_connect() {
    let mut c = config();
    c.user_timeout(Some(Duration::from_millis(300)));
    let mut h = Harness::new(c);
    let t0 = h.now;
    let conn = h.ep.connect(h.now, SocketAddr::new(PEER, 80)).unwrap();
    assert!(h.one().is(SYN));
    // The timer runs 39 s late: the SYN goes again, and the next deadline is still ahead.
    h.now = t0 + Duration::from_secs(39);
    h.ep.handle_timeout(h.now);
    assert!(h.one().is(SYN));
    let next = h.ep.poll_timeout().expect("a deadline");
    assert!(next > h.now, "{next:?} not after {:?}", h.now);
    let (_, segs) = h.next_timeout();
    assert!(segs.is_empty(), "{segs:?}");
    assert_eq!(h.ep.take_error(conn).unwrap(), Some(Error::TimedOut));
}

/// RFC 6056's double-hash port selection (Algorithm 4): the ephemeral ports of connects to
/// one server step through a counter of their own, so the server cannot tell from two of
/// our connects to it how many we made elsewhere in between. With one counter for every
/// destination (Algorithm 3, as before), the gap between its two ports was exactly one more
/// than that number.
#[test]
fn connects_elsewhere_do_not_move_a_servers_ports() {
    let mut h = Harness::new(config());
    let server = SocketAddr::new(PEER, 80);
    let first = ephemeral_port_to(&mut h, server);
    for i in 1..=5u16 {
        // Other servers, behind the same peer address and elsewhere.
        ephemeral_port_to(&mut h, SocketAddr::new(PEER, 8000 + i));
    }
    let second = ephemeral_port_to(&mut h, server);
    assert!(
        (1..=8).contains(&port_gap(first, second)),
        "five connects elsewhere moved this server's ports from {first} to {second}"
    );
}

/// The port of a connect to `to`, whose SYN is then dropped with the connection.
fn ephemeral_port_to(h: &mut Harness, to: SocketAddr) -> u16 {
    let c = h.ep.connect(h.now, to).unwrap();
    let syn = h.one();
    assert!(syn.is(SYN));
    h.ep.abort(c).unwrap();
    let _ = h.drain();
    syn.src.port()
}

/// How far `b` is past `a` in the default ephemeral range (32768-60999), round its top.
fn port_gap(a: u16, b: u16) -> i32 {
    (i32::from(b) - i32::from(a)).rem_euclid(60999 - 32768 + 1)
}

/// Linux's "small random increments to the source port": one server's ports step by one
/// to eight, at random, not by one: from two of its ports a server cannot count our
/// connects that shared its counter (one more apiece), which with a table of 256 counters
/// let it find which of its addresses share a counter, a set fixed by our key that tracked
/// a device across networks (Kol, Klein and Gilad, USENIX Security 2023). And the table is
/// Linux's 65,536 counters, so that few destinations share one.
#[test]
fn a_servers_ephemeral_ports_step_by_a_random_few() {
    let mut h = Harness::new(config());
    let server = SocketAddr::new(PEER, 443);
    let mut ports = vec![ephemeral_port_to(&mut h, server)];
    for _ in 0..64 {
        ports.push(ephemeral_port_to(&mut h, server));
    }
    let gaps: Vec<i32> = ports.windows(2).map(|w| port_gap(w[0], w[1])).collect();
    assert!(gaps.iter().all(|g| (1..=8).contains(g)), "{gaps:?}");
    let mut seen = gaps.clone();
    seen.sort_unstable();
    seen.dedup();
    assert!(seen.len() >= 5, "steps {seen:?} of {gaps:?}");
    // 256 KiB of counters, counted as the endpoint's state.
    assert!(h.ep.memory_usage().state >= (1 << 16) * 4);
}
