//! TCP Fast Open, the server's side (RFC 7413 §4.2.2), against a scripted client in virtual
//! time: a cookie request answered, a valid cookie's data taken at once and the connection
//! handed to `accept` before the final ACK, a wrong cookie's data dropped, the listener's
//! "no cookie" flag, the bound on pending Fast Open connections (§5.1), and RSTs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_core::wire::{FastOpenCookie, TcpFlags};
use synack_core::{
    ConnectionHandle, Error, Event, FastOpenKey, ListenerHandle, SeqNumber, SocketOptions, State,
};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const RST: TcpFlags = TcpFlags::RST;
const KEY: [u8; 16] = [0x5a; 16];

fn us80() -> SocketAddr {
    SocketAddr::new(US, 80)
}

fn client(port: u16) -> SocketAddr {
    SocketAddr::new(PEER, port)
}

/// The cookie a client at `PEER` must present.
fn cookie() -> FastOpenCookie {
    FastOpenKey::new(KEY).cookie(PEER, US)
}

/// A listener on port 80 with Fast Open (a queue of `queue`), under `KEY`.
fn listener(queue: u32, no_cookie: bool) -> (Harness, ListenerHandle) {
    let mut h = Harness::new(config());
    h.ep.set_fast_open_key(FastOpenKey::new(KEY));
    let opts = SocketOptions {
        fast_open: Some(queue),
        fast_open_no_cookie: Some(no_cookie),
        ..SocketOptions::default()
    };
    let l = h.ep.listen_with(us80(), 16, &opts).unwrap();
    (h, l)
}

/// A SYN from `port` with `data` and a Fast Open option of `cookie` (`None`: no option).
fn syn(port: u16, cookie: Option<&[u8]>, data: &[u8]) -> (SocketAddr, Out) {
    let mut out = Out::new(SYN, 1000, 0).mss(1460).data(data);
    if let Some(c) = cookie {
        out = out.fast_open(c);
    }
    (client(port), out)
}

fn incoming(h: &mut Harness) -> bool {
    h.events().iter().any(|e| matches!(e, Event::Incoming(_)))
}

/// A SYN with a valid cookie and data: the SYN-ACK acknowledges the data; returns the
/// accepted connection and the SYN-ACK.
fn fast_open_child(h: &mut Harness, l: ListenerHandle, port: u16) -> (ConnectionHandle, Seg) {
    let (from, out) = syn(port, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(synack.ack, SeqNumber(1006), "the SYN and its 5 bytes");
    assert_eq!(synack.fast_open, None, "a valid cookie is not sent back");
    assert!(incoming(h), "handed to accept before the final ACK");
    let c = h.ep.accept(l).unwrap();
    (c, synack)
}

/// A Fast Open child is the application's from its SYN: on a listener with
/// TCP_DEFER_ACCEPT too, its bare final ACK completes its handshake, not held (Linux's
/// `tcp_check_req` returns a Fast Open child before it looks at the deferral).
#[test]
fn a_fast_open_childs_final_ack_is_not_deferred() {
    let (mut h, l) = listener(16, false);
    let opts = SocketOptions {
        fast_open: Some(16),
        fast_open_no_cookie: Some(false),
        defer_accept: Some(std::time::Duration::from_secs(2)),
        ..SocketOptions::default()
    };
    h.ep.set_listener_options(l, &opts).unwrap();
    let (c, synack) = fast_open_child(&mut h, l, 40000);
    h.inject(
        client(40000),
        us80(),
        Out::new(ACK, 1006, 0).ackn(synack.seq + 1),
    );
    assert_eq!(h.ep.state(c), Ok(State::Established));
    assert_eq!(h.ep.stats().drop_defer_accept, 0);
}

#[test]
fn a_cookie_request_is_answered_in_the_syn_ack_and_the_data_dropped() {
    let (mut h, l) = listener(16, false);
    let (from, out) = syn(40000, Some(&[]), b"early");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(synack.ack, SeqNumber(1001), "only the SYN is acknowledged");
    assert_eq!(synack.fast_open, Some(cookie()));
    assert!(!incoming(&mut h));
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
    assert_eq!(h.ep.stats().fast_open_cookie_requests, 1);
    // A SYN-ACK sent again carries no cookie (Linux's inet_rtx_syn_ack).
    let (_, again) = h.next_timeout();
    assert_eq!(again.len(), 1);
    assert!(again[0].is(SYN | ACK));
    assert_eq!(again[0].fast_open, None);
}

#[test]
fn a_valid_cookie_has_the_data_readable_and_the_server_writing_before_the_final_ack() {
    let (mut h, l) = listener(16, false);
    let (c, synack) = fast_open_child(&mut h, l, 40000);
    assert_eq!(h.ep.state(c), Ok(State::SynReceived));
    assert_eq!(h.ep.is_fast_open_pending(c), Ok(true));
    let mut buf = [0u8; 16];
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Err(Error::WouldBlock));
    // The answer leaves at once, before the client's ACK.
    assert_eq!(h.ep.send(c, b"world"), Ok(5));
    let data = h.one();
    assert_eq!(data.seq, synack.seq + 1);
    assert_eq!(data.ack, SeqNumber(1006));
    assert_eq!(data.payload, b"world");
    assert_eq!(h.ep.info(h.now, c).unwrap().options & 32, 32);
    // The final ACK, acknowledging the data too, completes the handshake.
    h.inject(
        client(40000),
        us80(),
        Out::new(ACK, 1006, 0).ackn(synack.seq + 6),
    );
    assert_eq!(h.ep.state(c), Ok(State::Established));
    assert_eq!(h.ep.is_fast_open_pending(c), Ok(false));
    assert_eq!(h.ep.stats().fast_open_passive, 1);
    // Nothing is left to send again.
    let (_, later) = h.next_timeout();
    assert!(later.iter().all(|s| s.payload.is_empty()), "{later:?}");
}

#[test]
fn a_wrong_cookie_drops_the_data_and_the_syn_ack_brings_a_fresh_cookie() {
    let (mut h, l) = listener(16, false);
    let (from, out) = syn(40000, Some(&[0xaa; 8]), b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert_eq!(synack.ack, SeqNumber(1001));
    assert_eq!(synack.fast_open, Some(cookie()));
    assert!(!incoming(&mut h));
    assert_eq!(h.ep.stats().fast_open_passive_fail, 1);
    // A plain handshake from here: the data comes again after it.
    h.inject(
        client(40000),
        us80(),
        Out::new(ACK, 1001, 0).ackn(synack.seq + 1).data(b"hello"),
    );
    let c = h.ep.accept(l).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Ok(5));
    assert_eq!(h.ep.info(h.now, c).unwrap().options & 32, 0);
}

#[test]
fn without_fast_open_on_the_listener_the_option_is_ignored() {
    let mut h = Harness::new(config());
    let l = h.ep.listen(us80(), 16).unwrap();
    let (from, out) = syn(40000, Some(&[]), b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert_eq!(synack.ack, SeqNumber(1001));
    assert_eq!(synack.fast_open, None);
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
}

#[test]
fn the_no_cookie_flag_takes_any_syn_with_data() {
    let (mut h, l) = listener(16, true);
    let (from, out) = syn(40000, None, b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert_eq!(synack.ack, SeqNumber(1006));
    assert_eq!(synack.fast_open, None);
    let c = h.ep.accept(l).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Ok(5));
    // A SYN without data or option is a plain SYN still.
    let (from, out) = syn(40001, None, b"");
    h.inject(from, us80(), out);
    assert_eq!(h.one().ack, SeqNumber(1001));
    assert_eq!(h.ep.accept(l), Err(Error::WouldBlock));
}

#[test]
fn the_queue_of_pending_fast_open_connections_is_bounded() {
    let (mut h, l) = listener(1, false);
    let (_c, synack) = fast_open_child(&mut h, l, 40000);
    // The second one waits for the first to finish its handshake: a plain SYN meanwhile,
    // not even a cookie in its SYN-ACK (Linux's tcp_fastopen_queue_check comes first).
    let (from, out) = syn(40001, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out);
    let plain = h.one();
    assert_eq!(plain.ack, SeqNumber(1001));
    assert_eq!(plain.fast_open, None);
    assert_eq!(h.ep.stats().fast_open_listen_overflow, 1);
    h.inject(
        client(40000),
        us80(),
        Out::new(ACK, 1006, 0).ackn(synack.seq + 1),
    );
    let _ = fast_open_child(&mut h, l, 40002);
}

#[test]
fn an_rst_before_accept_leaves_the_data_then_the_error() {
    let (mut h, l) = listener(16, false);
    let (from, out) = syn(40000, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert!(incoming(&mut h));
    h.inject(
        client(40000),
        us80(),
        Out::new(RST | ACK, 1006, 0).ackn(synack.seq + 1),
    );
    h.none();
    let c = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.state(c), Ok(State::Closed));
    let mut buf = [0u8; 16];
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Ok(5));
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Err(Error::ConnectionReset));
}

#[test]
fn an_rst_after_accept_holds_its_place_in_the_queue_for_a_minute() {
    let (mut h, l) = listener(1, false);
    let (c, synack) = fast_open_child(&mut h, l, 40000);
    h.inject(
        client(40000),
        us80(),
        Out::new(RST, 1006, 0).ackn(synack.seq + 1),
    );
    assert_eq!(h.ep.state(c), Ok(State::Closed));
    // A spoofed SYN reusing the cookie does not get in while the place is held.
    let (from, out) = syn(40001, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out);
    assert_eq!(h.one().ack, SeqNumber(1001));
    h.advance(Duration::from_secs(61));
    let _ = h.drain();
    let _ = fast_open_child(&mut h, l, 40002);
}

#[test]
fn closing_the_listener_resets_its_fast_open_children() {
    let (mut h, l) = listener(16, false);
    let (from, out) = syn(40000, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    h.ep.close_listener(h.now, l).unwrap();
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!(rst.seq, synack.seq + 1);
    assert_eq!(rst.ack, SeqNumber(1006));
}

#[test]
fn a_cookie_under_the_backup_key_is_taken_and_replaced() {
    let (mut h, l) = listener(16, false);
    let new = [0x77; 16];
    h.ep.set_listener_fast_open_key(l, FastOpenKey::with_backup(new, KEY))
        .unwrap();
    let (from, out) = syn(40000, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out);
    let synack = h.one();
    assert_eq!(synack.ack, SeqNumber(1006));
    assert_eq!(
        synack.fast_open,
        Some(FastOpenKey::new(new).cookie(PEER, US))
    );
    assert!(h.ep.accept(l).is_ok());
}

#[test]
fn the_experimental_option_is_answered_in_kind() {
    let (mut h, _l) = listener(16, false);
    let (from, mut out) = syn(40000, None, b"");
    out.fast_open = Some(FastOpenCookie::REQUEST.experimental(true));
    h.inject(from, us80(), out);
    let synack = h.one();
    let got = synack.fast_open.unwrap();
    assert!(got.is_experimental());
    assert_eq!(got.as_bytes(), cookie().as_bytes());
}

#[test]
fn a_syn_ack_timeout_resends_only_the_syn_ack_and_then_the_child_fails() {
    let (mut h, l) = listener(16, false);
    let (c, synack) = fast_open_child(&mut h, l, 40000);
    assert_eq!(h.ep.send(c, b"world"), Ok(5));
    assert_eq!(h.one().payload, b"world");
    // Unanswered: the SYN-ACK goes again on its own schedule, the data does not.
    let (_, again) = h.next_timeout();
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].is(SYN | ACK));
    assert_eq!(again[0].seq, synack.seq);
    assert!(again[0].payload.is_empty());
    // The client's ACK then takes both.
    h.inject(
        client(40000),
        us80(),
        Out::new(ACK, 1006, 0).ackn(synack.seq + 6),
    );
    assert_eq!(h.ep.state(c), Ok(State::Established));
    // Another child that never hears back fails with a timeout, after one more SYN-ACK
    // than a plain passive open sends (Linux's tcp_fastopen_synack_timer).
    let (c2, _) = fast_open_child(&mut h, l, 40001);
    let mut synacks = 0;
    for _ in 0..20 {
        if h.ep.state(c2) == Ok(State::Closed) {
            break;
        }
        let (_, segs) = h.next_timeout();
        synacks += segs.iter().filter(|s| s.is(SYN | ACK)).count();
    }
    assert_eq!(h.ep.state(c2), Ok(State::Closed));
    // The default `synack_retries` is 5: six SYN-ACKs sent again.
    assert_eq!(synacks, 5 + 1);
    let mut buf = [0u8; 16];
    assert_eq!(h.ep.recv(h.now, c2, &mut buf), Ok(5));
    assert_eq!(h.ep.recv(h.now, c2, &mut buf), Err(Error::TimedOut));
}

/// With SACK on, as Linux's clients send it, the data a Fast Open child wrote before the
/// final ACK is no tail loss probe's: the SYN-ACK's timer resends the SYN-ACK after the
/// initial RTO, as Linux's `tcp_schedule_loss_probe` returns while `fastopen_rsk` is set.
/// With no RTT sample yet, synack's probe at the initial RTO took the timer's place, sent
/// the data instead and pushed the SYN-ACK a whole RTO further.
#[test]
fn a_fast_open_childs_early_data_is_not_probed_before_its_syn_ack_goes_again() {
    let (mut h, l) = listener(16, false);
    let (from, out) = syn(40000, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out.sack_ok());
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    let c = h.ep.accept(l).unwrap();
    let sent = h.now;
    assert_eq!(h.ep.send(c, b"world"), Ok(5));
    assert_eq!(h.one().payload, b"world");
    let (t, again) = h.next_timeout();
    assert_eq!(t - sent, Duration::from_secs(1));
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].is(SYN | ACK), "{again:?}");
    assert!(again[0].payload.is_empty());
    assert_eq!(h.ep.info(h.now, c).unwrap().tlp_count, 0);
}

#[test]
fn data_sent_before_the_final_ack_is_retransmitted_if_that_ack_does_not_cover_it() {
    let (mut h, l) = listener(16, false);
    let (c, synack) = fast_open_child(&mut h, l, 40000);
    assert_eq!(h.ep.send(c, b"world"), Ok(5));
    assert_eq!(h.one().payload, b"world");
    // The ACK covers the SYN-ACK only: the data was lost.
    h.inject(
        client(40000),
        us80(),
        Out::new(ACK, 1006, 0).ackn(synack.seq + 1),
    );
    assert_eq!(h.ep.state(c), Ok(State::Established));
    let _ = h.drain();
    let (_, again) = h.next_timeout();
    assert!(
        again.iter().any(|s| s.payload == b"world"),
        "the RTO resends it: {again:?}"
    );
}

/// Until the handshake's ACK a Fast Open child is judged by PAWS as a request socket is, with
/// no tick of slack: Linux passes its segments through `tcp_check_req` (`fastopen = true`)
/// before the full socket's checks. A segment one tick behind TS.Recent is dropped and
/// answered with an ACK; at TS.Recent it is taken (`fastopen-child-paws.pkt` checks both
/// against the kernel).
#[test]
fn a_fast_open_child_applies_paws_without_slack_until_the_final_ack() {
    let (mut h, l) = listener(16, false);
    let (from, out) = syn(40000, Some(cookie().as_bytes()), b"hello");
    h.inject(from, us80(), out.ts(100, 0));
    let synack = h.one();
    let c = h.ep.accept(l).unwrap();
    let ours = synack.ts.unwrap().tsval;
    let data = |tsval| {
        Out::new(ACK, 1006, 0)
            .ackn(synack.seq + 1)
            .ts(tsval, ours)
            .data(b"world")
    };
    h.inject(from, us80(), data(99));
    let ack = h.one();
    assert!(ack.is(ACK) && ack.payload.is_empty());
    assert_eq!(
        ack.ack,
        SeqNumber(1006),
        "the data one tick behind is dropped"
    );
    assert_eq!(h.ep.state(c).unwrap(), State::SynReceived);
    h.inject(from, us80(), data(100));
    let _ = h.drain();
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    let mut buf = [0u8; 16];
    let n = h.ep.recv(h.now, c, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"helloworld");
}

/// `synack_retries` at its largest: a Fast Open child's SYN-ACK timer counts one retry more
/// than it (Linux's `tcp_fastopen_synack_timer`), which overflowed at `u32::MAX` (a panic in
/// a build with overflow checks, a child failed at its first timeout without). `check`
/// now refuses more than 255, Linux's bound; the sans-IO user who skips it still gets a
/// SYN-ACK sent again.
#[test]
fn a_fast_open_child_with_the_largest_synack_retries_resends_its_syn_ack() {
    let mut cfg = config();
    cfg.synack_retries(u32::MAX);
    assert_eq!(cfg.check().unwrap_err().setting, "synack_retries");
    let mut h = Harness::new(cfg);
    h.ep.set_fast_open_key(FastOpenKey::new(KEY));
    let opts = SocketOptions {
        fast_open: Some(16),
        ..SocketOptions::default()
    };
    let l = h.ep.listen_with(us80(), 16, &opts).unwrap();
    let (c, synack) = fast_open_child(&mut h, l, 40000);
    let (_, again) = h.next_timeout();
    assert!(
        again.iter().any(|s| s.is(SYN | ACK) && s.seq == synack.seq),
        "{again:?}"
    );
    assert_ne!(h.ep.state(c), Ok(State::Closed));
}
