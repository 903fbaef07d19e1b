//! Intercept mode (transparent proxying): SYNs to any address held for the application,
//! then accepted, refused with an RST, answered with ICMP unreachable, dropped or left to
//! expire, against a scripted peer in virtual time.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::*;
use synack_core::wire::{IcmpRepr, TcpFlags};
use synack_core::{
    ConnectionHandle, Error, Event, InterceptConfig, SocketOptions, State, SynHandle, Unreachable,
};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const RST: TcpFlags = TcpFlags::RST;

/// A destination that is not one of the endpoint's addresses: what a proxy's clients dial.
fn elsewhere(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 19, 7, 9)), port)
}

fn client(port: u16) -> SocketAddr {
    SocketAddr::new(PEER, port)
}

fn intercepting(cfg: InterceptConfig) -> Harness {
    let mut c = config();
    c.intercept(Some(cfg));
    Harness::new(c)
}

fn syn(h: &mut Harness, from: SocketAddr, to: SocketAddr, seq: u32) {
    h.inject(
        from,
        to,
        Out::new(SYN, seq, 0)
            .mss(1400)
            .wscale(7)
            .sack_ok()
            .ts(100, 0),
    );
}

fn held(h: &mut Harness) -> Vec<SynHandle> {
    h.events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Intercepted(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[test]
fn without_intercept_a_foreign_destination_is_not_ours() {
    let mut h = Harness::new(config());
    syn(&mut h, client(40000), elsewhere(443), 1);
    h.none();
    assert_eq!(h.ep.stats().drop_not_for_us, 1);
}

/// With TCP interception off (no application takes held SYNs), a SYN no listener takes is
/// reset as at a closed port, and turning it off resets what was held; on again, SYNs are
/// held again. Held and left, a client would wait out its SYN retries.
#[test]
fn with_tcp_interception_off_a_syn_is_reset() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(443), 1);
    h.none();
    assert_eq!(held(&mut h).len(), 1);
    h.ep.set_tcp_interception(false);
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!(
        (rst.src, rst.dst, rst.ack.0),
        (elsewhere(443), client(40000), 2)
    );
    syn(&mut h, client(40001), elsewhere(80), 7);
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!(
        (rst.src, rst.dst, rst.ack.0),
        (elsewhere(80), client(40001), 8)
    );
    assert!(held(&mut h).is_empty());
    h.ep.set_tcp_interception(true);
    syn(&mut h, client(40002), elsewhere(80), 1);
    h.none();
    assert_eq!(held(&mut h).len(), 1);
}

/// Port 0 names no socket even in intercept mode: a SYN to it is reset at once, as
/// Linux's own stack resets it, not held for the application (whose upstream connect to
/// port 0 could only be refused).
#[test]
fn a_syn_to_port_zero_is_reset_not_intercepted() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(0), 1);
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!((rst.src, rst.dst), (elsewhere(0), client(40000)));
    assert!(held(&mut h).is_empty());
    assert_eq!(h.ep.stats().drop_malformed, 0);
    // Any other port is held as before.
    syn(&mut h, client(40001), elsewhere(1), 1);
    h.none();
    assert_eq!(held(&mut h).len(), 1);
}

/// Martians are nobody's, even in intercept mode: a SYN to a loopback address (or 0/8, or
/// an IPv4-mapped IPv6 one) must not become a flow the application relays to its own host,
/// and one from such an address, or from one of our own, is not answered (Linux drops
/// them all on any device but loopback). Each is counted as not for us.
#[test]
fn martian_addresses_are_not_intercepted() {
    let v4 = |a: [u8; 4], port| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port);
    let v6 = |a: &str, port| SocketAddr::new(a.parse().unwrap(), port);
    let ours = SocketAddr::new(US, 40000);
    let cases = [
        (client(40000), v4([127, 0, 0, 1], 22)),
        (client(40000), v4([127, 3, 4, 5], 22)),
        (client(40000), v4([0, 1, 2, 3], 22)),
        (v4([127, 0, 0, 1], 40000), elsewhere(443)),
        (v4([0, 0, 0, 7], 40000), elsewhere(443)),
        (ours, elsewhere(443)),
        (v6("2001:2::5", 40000), v6("::1", 22)),
        (v6("2001:2::5", 40000), v6("::ffff:127.0.0.1", 22)),
        (v6("::1", 40000), v6("2001:2::9", 443)),
        (v6("::ffff:198.19.0.5", 40000), v6("2001:2::9", 443)),
    ];
    for (i, (from, to)) in cases.into_iter().enumerate() {
        let mut h = intercepting(InterceptConfig::default());
        syn(&mut h, from, to, 1);
        h.none();
        assert!(held(&mut h).is_empty(), "case {i}: {from} -> {to}");
        assert_eq!(h.ep.stats().drop_not_for_us, 1, "case {i}: {from} -> {to}");
    }
    // The same SYN from an ordinary client to an ordinary address is held.
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(443), 1);
    assert_eq!(held(&mut h).len(), 1);
}

/// In intercept mode a listener may take a foreign address (as a Linux socket with
/// IP_TRANSPARENT), and it wins over the interception for its port; a martian stays
/// unbindable.
#[test]
fn a_listener_on_a_foreign_address_wins_over_interception() {
    let mut h = intercepting(InterceptConfig::default());
    let l = h.ep.listen(elsewhere(53), 4).unwrap();
    syn(&mut h, client(40000), elsewhere(53), 1);
    assert!(h.one().is(SYN | ACK));
    assert!(held(&mut h).is_empty());
    syn(&mut h, client(40001), elsewhere(54), 1);
    h.none();
    assert_eq!(held(&mut h).len(), 1);
    assert_eq!(h.ep.listener_addr(l).unwrap(), elsewhere(53));
    let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53);
    assert_eq!(h.ep.listen(lo, 4), Err(Error::AddrNotAvailable));
    // Without intercept mode, a foreign address is not ours to listen on.
    let mut h = Harness::new(config());
    assert_eq!(h.ep.listen(elsewhere(53), 4), Err(Error::AddrNotAvailable));
}

#[test]
fn a_held_syn_is_answered_only_when_accepted() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(443), 1000);
    // Nothing goes out until the application decides.
    h.none();
    let s = held(&mut h);
    assert_eq!(s.len(), 1);
    let info = h.ep.intercepted(s[0]).unwrap();
    assert_eq!(info.local, elsewhere(443));
    assert_eq!(info.remote, client(40000));
    assert_eq!(info.mss, Some(1400));
    assert_eq!(info.window_scale, Some(7));
    assert!(info.sack_permitted && info.timestamps);
    // Its retransmission is absorbed, not a second event.
    h.advance(Duration::from_secs(1));
    syn(&mut h, client(40000), elsewhere(443), 1000);
    h.none();
    assert!(held(&mut h).is_empty());
    assert_eq!(h.ep.stats().intercept_duplicates, 1);

    let c =
        h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default())
            .unwrap();
    let synack = h.one();
    assert!(synack.is(SYN | ACK));
    assert_eq!(
        synack.src,
        elsewhere(443),
        "answered from the original destination"
    );
    assert_eq!(synack.ack.0, 1001);
    assert_eq!(synack.mss, Some(1460));
    assert!(synack.ts.is_some() && synack.sack_permitted && synack.wscale.is_some());
    // The decision is final: the handle is gone.
    assert_eq!(h.ep.intercepted(s[0]), Err(Error::InvalidHandle));
    assert_eq!(h.ep.intercepted_count(), 0);

    h.inject(
        client(40000),
        elsewhere(443),
        Out::new(ACK, 1001, 0)
            .ackn(synack.seq + 1)
            .ts(101, synack.ts.unwrap().tsval)
            .data(b"hello"),
    );
    assert!(h.events().contains(&Event::Connected(c)));
    assert_eq!(h.ep.state(c).unwrap(), State::Established);
    assert_eq!(h.ep.local_addr(c).unwrap(), elsewhere(443));
    assert_eq!(h.ep.peer_addr(c).unwrap(), client(40000));
    let mut buf = [0u8; 16];
    let n = h.ep.recv(h.now, c, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    h.ep.send(c, b"world").unwrap();
    let out = h.drain();
    assert!(out
        .iter()
        .any(|s| s.payload == b"world" && s.src == elsewhere(443)));
}

/// A stack intercepting, with one SYN from `client(40000)` to `elsewhere(443)` accepted and
/// its SYN-ACK out: the connection waits for the client's ACK.
fn accepting() -> (Harness, ConnectionHandle) {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(443), 1000);
    let s = held(&mut h);
    let c =
        h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default())
            .unwrap();
    assert!(h.one().is(SYN | ACK));
    (h, c)
}

/// How many SYN-ACKs `h` sends over the next ten seconds.
fn syn_acks_in_ten_seconds(h: &mut Harness) -> usize {
    let t0 = h.now;
    h.advance(Duration::from_secs(10));
    h.sent
        .iter()
        .filter(|(t, s)| *t > t0 && s.is(SYN | ACK))
        .count()
}

/// An intercepted accept the application gives up before the client's ACK (closes: a
/// relay's accept timeout, or a tokio accept future dropped) resets the connection at once,
/// ABORT in SYN-RECEIVED (RFC 9293 §3.10.5), as Linux drops a request whose listener went
/// away. A close used to queue a FIN: the SYN-ACK went on for a minute, holding a connection
/// that no half-open limit counts.
#[test]
fn a_given_up_intercepted_accept_resets_at_once() {
    let (mut h, c) = accepting();
    h.ep.close(h.now, c).unwrap();
    let rst = h.one();
    assert!(rst.is(RST | ACK), "{rst:?}");
    assert_eq!(
        syn_acks_in_ten_seconds(&mut h),
        0,
        "SYN-ACKs after the close"
    );
    assert_eq!(h.ep.connection_count(), 0);
}

/// A host unreachable about an intercepted connection's SYN-ACK, while the application
/// waits for the client's ACK, ends the connection with that error, as a TPROXY listener's
/// request is dropped (`tcp_req_err`): no more SYN-ACKs, and the accept learns why. It used
/// to be a soft error: the SYN-ACK went on for a minute, then `ConnectionAborted`. A
/// destination unreachable of a code that does not end a listener's half-open connection
/// either (administratively prohibited) changes nothing.
#[test]
fn an_icmp_error_about_the_syn_ack_ends_an_intercepted_accept() {
    for (code, ends) in [(13u8, false), (1, true)] {
        let (mut h, c) = accepting();
        let synack = h.raw.last().unwrap().clone();
        // From a router on the way to the client, to the address the SYN-ACK came from.
        let icmp = IcmpRepr::DstUnreachable {
            code,
            invoking: &synack[..28],
        };
        let router = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 1));
        let ip = synack_core::wire::IpRepr::new(
            router,
            elsewhere(443).ip(),
            synack_core::wire::IpProtocol::Icmp,
            icmp.buffer_len(),
            64,
        )
        .unwrap();
        let mut p = vec![0u8; ip.buffer_len()];
        ip.emit(&mut p[..20]);
        icmp.emit_v4(&mut p[20..]);
        h.inject_raw(&p);
        let resent = syn_acks_in_ten_seconds(&mut h);
        if ends {
            assert_eq!(resent, 0, "code {code}");
            assert_eq!(h.ep.state(c), Ok(State::Closed), "code {code}");
            assert_eq!(h.ep.take_error(c), Ok(Some(Error::HostUnreachable)));
        } else {
            assert!(resent > 0, "code {code}");
            assert_eq!(h.ep.state(c), Ok(State::SynReceived), "code {code}");
        }
    }
}

#[test]
fn refuse_sends_the_rst_a_closed_port_would() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40001), elsewhere(80), 5000);
    let s = held(&mut h);
    h.ep.refuse_intercepted(s[0]).unwrap();
    let rst = h.one();
    assert!(rst.is(RST | ACK));
    assert_eq!(rst.src, elsewhere(80));
    assert_eq!(rst.seq.0, 0);
    assert_eq!(rst.ack.0, 5001);
    assert_eq!(h.ep.refuse_intercepted(s[0]), Err(Error::InvalidHandle));
}

#[test]
fn unreachable_sends_icmp_quoting_the_syn() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40002), elsewhere(22), 7);
    let s = held(&mut h);
    assert!(h
        .ep
        .unreachable_intercepted(h.now, s[0], Unreachable::Host)
        .unwrap());
    assert!(h.drain().is_empty(), "no TCP answer");
    let icmp = h.raw.last().expect("an ICMP packet").clone();
    let (ip, payload) = synack_core::wire::ip::parse(&icmp).unwrap();
    assert_eq!(ip.src_addr(), elsewhere(22).ip());
    assert_eq!(ip.dst_addr(), PEER);
    match IcmpRepr::parse_v4(payload).unwrap() {
        IcmpRepr::DstUnreachable { code, invoking } => {
            assert_eq!(code, 1, "host unreachable");
            let quoted = synack_core::wire::icmp::invoking_tcp(invoking).unwrap();
            assert_eq!(quoted.0, PEER);
            assert_eq!((quoted.1, quoted.3), (40002, 22));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ep.stats().intercept_unreachable_sent, 1);
}

/// An IPv6 SYN behind 200 bytes of extension headers is quoted as far as its TCP header,
/// ports and sequence number included, so that the client's kernel can match the error to
/// its connect. Before, the quote stopped at 120 bytes, inside the Routing header.
#[test]
fn unreachable_quotes_an_ipv6_syn_past_its_extension_headers() {
    use synack_core::testing::peer::PEER6;
    let mut h = intercepting(InterceptConfig::default());
    let from = SocketAddr::new(PEER6, 40003);
    let to: SocketAddr = "[2001:2:0:7::9]:22".parse().unwrap();
    let p = Out::new(SYN, 7, 0).mss(1400).sack_ok().packet(from, to);
    // A Routing header of type 0 with no segments left (ignored, RFC 5095 §3), 200 bytes,
    // between the fixed header and TCP; the TCP checksum does not cover it.
    let mut routing = vec![p[6], 24, 0, 0, 0, 0, 0, 0];
    routing.resize(200, 0);
    let mut q = p[..40].to_vec();
    q[6] = 43;
    let len = u16::from_be_bytes([q[4], q[5]]) + 200;
    q[4..6].copy_from_slice(&len.to_be_bytes());
    q.extend_from_slice(&routing);
    q.extend_from_slice(&p[40..]);
    h.inject_raw(&q);
    let s = held(&mut h);
    assert_eq!(s.len(), 1, "held");
    assert!(h
        .ep
        .unreachable_intercepted(h.now, s[0], Unreachable::Host)
        .unwrap());
    assert!(h.drain().is_empty(), "no TCP answer");
    let icmp = h.raw.last().expect("an ICMPv6 packet").clone();
    let (ip, payload) = synack_core::wire::ip::parse(&icmp).unwrap();
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip.src_addr(), ip.dst_addr()) else {
        panic!("{ip:?}");
    };
    match IcmpRepr::parse_v6(payload, src, dst).unwrap() {
        IcmpRepr::DstUnreachable { invoking, .. } => {
            assert_eq!(invoking, &q[..invoking.len()], "the SYN as it came");
            assert!(invoking.len() >= q.len(), "to the end of its TCP header");
            let quoted = synack_core::wire::icmp::invoking_tcp(invoking).unwrap();
            assert_eq!((quoted.1, quoted.3), (40003, 22));
        }
        other => panic!("{other:?}"),
    }
}

/// ICMP unreachable answers to held SYNs keep the ICMP rate limits (to one peer a burst of
/// 6, then one a second, as Linux's `icmp_ratelimit`, within the endpoint's burst of 50 and
/// 1,000 a second, `icmp_msgs_burst` and `icmp_msgs_per_sec`): spoofed SYNs to dead
/// destinations cannot draw ICMP at their own rate. Past the limit the SYN is dropped
/// without an answer, and counted. Every one was answered before.
#[test]
fn unreachable_answers_keep_the_icmp_rate_limit() {
    let mut h = intercepting(InterceptConfig::default());
    let mut sent = 0;
    for i in 0..200 {
        syn(&mut h, client(41000 + i), elsewhere(22), 7);
        for s in held(&mut h) {
            sent += usize::from(
                h.ep.unreachable_intercepted(h.now, s, Unreachable::Host)
                    .unwrap(),
            );
        }
        assert!(h.drain().is_empty(), "no TCP answer");
    }
    assert_eq!(sent, 6);
    assert_eq!(h.ep.stats().intercept_unreachable_sent, 6);
    assert_eq!(h.ep.stats().intercept_unreachable_limited, 194);
    assert_eq!(h.ep.intercepted_count(), 0, "the SYNs are gone either way");
    // The peer's bucket refills at one a second.
    h.advance(Duration::from_secs(2));
    let mut later = 0;
    for i in 0..20 {
        syn(&mut h, client(42000 + i), elsewhere(22), 7);
        for s in held(&mut h) {
            later += usize::from(
                h.ep.unreachable_intercepted(h.now, s, Unreachable::Host)
                    .unwrap(),
            );
        }
    }
    assert_eq!(later, 2, "one a second");
}

#[test]
fn undecided_syns_expire_and_drop_is_silent() {
    let cfg = InterceptConfig {
        decision_timeout: Duration::from_secs(3),
        ..InterceptConfig::default()
    };
    let mut h = intercepting(cfg);
    syn(&mut h, client(40003), elsewhere(443), 1);
    syn(&mut h, client(40004), elsewhere(443), 1);
    let s = held(&mut h);
    assert_eq!(s.len(), 2);
    h.ep.drop_intercepted(s[1]).unwrap();
    h.none();
    // The endpoint wakes for the expiry on its own.
    assert_eq!(h.ep.poll_timeout(), Some(h.now + Duration::from_secs(3)));
    h.advance(Duration::from_secs(3));
    assert_eq!(h.ep.intercepted_count(), 0);
    assert_eq!(h.ep.stats().intercept_expired, 1);
    assert_eq!(
        h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default()),
        Err(Error::InvalidHandle)
    );
    h.none();
    // A new SYN of the same flow is held afresh.
    syn(&mut h, client(40003), elsewhere(443), 1);
    assert_eq!(held(&mut h).len(), 1);
}

#[test]
fn held_syns_are_bounded_per_source_and_in_total() {
    let cfg = InterceptConfig {
        max_pending: 10,
        max_per_source: 4,
        ..InterceptConfig::default()
    };
    let mut h = intercepting(cfg);
    for port in 0..6 {
        syn(&mut h, client(41000 + port), elsewhere(443), 1);
    }
    assert_eq!(h.ep.intercepted_count(), 4, "per source");
    for i in 0..20u8 {
        let from = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 9, i + 1)), 42000);
        syn(&mut h, from, elsewhere(443), 1);
    }
    assert_eq!(h.ep.intercepted_count(), 10, "in total");
    assert_eq!(h.ep.stats().drop_intercept_overflow, 2 + 14);
    h.none();
}

/// What a held SYN says of itself.
fn info(h: &Harness, s: SynHandle) -> synack_core::InterceptedSyn {
    h.ep.intercepted(s).unwrap()
}

#[test]
fn a_syn_whose_first_went_unanswered_is_a_retransmission() {
    let cfg = InterceptConfig {
        decision_timeout: Duration::from_secs(3),
        ..InterceptConfig::default()
    };
    let mut h = intercepting(cfg);
    syn(&mut h, client(40010), elsewhere(443), 1);
    syn(&mut h, client(40011), elsewhere(443), 1);
    let s = held(&mut h);
    assert!(!info(&h, s[0]).retransmission && !info(&h, s[1]).retransmission);
    // One expires undecided, the other is dropped by the application.
    h.ep.drop_intercepted(s[1]).unwrap();
    h.advance(Duration::from_secs(3));
    assert_eq!(h.ep.intercepted_count(), 0);
    syn(&mut h, client(40010), elsewhere(443), 1);
    syn(&mut h, client(40011), elsewhere(443), 1);
    syn(&mut h, client(40012), elsewhere(443), 1);
    let again = held(&mut h);
    let marks: Vec<bool> = again.iter().map(|&s| info(&h, s).retransmission).collect();
    assert_eq!(marks, [true, true, false]);
    // One the application answered is no longer unanswered: refused, its retry is new.
    h.ep.refuse_intercepted(again[2]).unwrap();
    let _ = h.drain();
    syn(&mut h, client(40012), elsewhere(443), 2);
    let last = held(&mut h);
    assert!(!info(&h, last[0]).retransmission);
}

#[test]
fn at_a_full_table_a_retransmission_takes_the_newest_first_syns_place() {
    let cfg = InterceptConfig {
        max_pending: 4,
        max_per_source: 4,
        ..InterceptConfig::default()
    };
    let mut h = intercepting(cfg);
    let from = |i: u8| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 9, i)), 42000);
    for i in 1..=4 {
        syn(&mut h, from(i), elsewhere(443), 1);
    }
    let first = held(&mut h);
    assert_eq!(first.len(), 4);
    // A client's first SYN finds the table full and is dropped...
    syn(&mut h, client(40020), elsewhere(443), 1);
    assert!(held(&mut h).is_empty());
    assert_eq!(h.ep.stats().drop_intercept_overflow, 1);
    // ... its retransmission takes the newest first SYN's place.
    syn(&mut h, client(40020), elsewhere(443), 1);
    let retry = held(&mut h);
    assert_eq!(retry.len(), 1);
    assert!(info(&h, retry[0]).retransmission);
    assert_eq!(h.ep.intercepted_count(), 4);
    assert_eq!(h.ep.intercepted(first[3]), Err(Error::InvalidHandle));
    assert!(h.ep.intercepted(first[0]).is_ok());
    assert_eq!(h.ep.stats().drop_intercept_overflow, 2);
    // The SYN it displaced is now unanswered: its own retry takes the next first SYN's place.
    syn(&mut h, from(4), elsewhere(443), 1);
    let displaced = held(&mut h);
    assert_eq!(displaced.len(), 1);
    assert!(info(&h, displaced[0]).retransmission);
    assert_eq!(h.ep.intercepted(first[2]), Err(Error::InvalidHandle));
    // The two displaced in turn take the last first SYNs' places; then a retransmission
    // finds only retransmissions held, and takes the oldest one's place: the first retry.
    syn(&mut h, from(3), elsewhere(443), 1);
    assert_eq!(held(&mut h).len(), 1);
    syn(&mut h, from(2), elsewhere(443), 1);
    assert_eq!(held(&mut h).len(), 1);
    assert_eq!(h.ep.intercepted_count(), 4);
    syn(&mut h, client(40021), elsewhere(443), 1);
    assert!(held(&mut h).is_empty(), "a first SYN at a full table");
    syn(&mut h, client(40021), elsewhere(443), 1);
    let last = held(&mut h);
    assert_eq!(last.len(), 1);
    assert_eq!(info(&h, last[0]).remote, client(40021));
    assert_eq!(h.ep.intercepted(retry[0]), Err(Error::InvalidHandle));
    assert!(h.ep.intercepted(displaced[0]).is_ok());
    assert_eq!(h.ep.intercepted_count(), 4);
    h.none();
}

/// A flood that sends each SYN twice makes them all retransmissions; a client's retry still
/// gets in, in the place of the oldest held. It was dropped: a retransmission took only the
/// place of a first SYN among the newest 64 places, and never another retransmission (a
/// review's test).
#[test]
fn a_flood_that_repeats_its_syns_does_not_shut_out_a_clients_retry() {
    let cfg = InterceptConfig {
        max_pending: 64,
        max_per_source: 64,
        decision_timeout: Duration::from_secs(30),
        ..InterceptConfig::default()
    };
    let mut h = intercepting(cfg);
    let from = |i: u32| {
        let ip = Ipv4Addr::new(198, 18, 100 + (i / 250) as u8, (i % 250) as u8 + 1);
        SocketAddr::new(IpAddr::V4(ip), 10_000)
    };
    for _ in 0..2 {
        for i in 0..200 {
            syn(&mut h, from(i), elsewhere(443), i);
        }
    }
    let flood = held(&mut h);
    let oldest = flood
        .iter()
        .copied()
        .find(|&s| h.ep.intercepted(s).is_ok())
        .unwrap();
    assert!(info(&h, oldest).retransmission);
    syn(&mut h, client(40_030), elsewhere(443), 7);
    assert!(held(&mut h).is_empty(), "the table is full");
    syn(&mut h, client(40_030), elsewhere(443), 7);
    let retry = held(&mut h);
    assert_eq!(retry.len(), 1, "the client's retry was shut out");
    assert_eq!(info(&h, retry[0]).remote, client(40_030));
    assert_eq!(h.ep.intercepted(oldest), Err(Error::InvalidHandle));
    assert_eq!(h.ep.intercepted_count(), 64);
    // What they hold is in the memory figures (64 SYNs of 44 bytes quoted, at least).
    assert!(
        h.ep.memory_usage().state >= 64 * 44,
        "{:?}",
        h.ep.memory_usage()
    );
}

#[test]
fn a_bound_listener_wins_and_other_segments_get_rsts() {
    let mut h = intercepting(InterceptConfig::default());
    // A listener on our own address takes its SYNs as always.
    let l = h.ep.listen(SocketAddr::new(US, 80), 8).unwrap();
    syn(&mut h, client(40005), SocketAddr::new(US, 80), 1);
    assert!(h.one().is(SYN | ACK));
    assert!(held(&mut h).is_empty());
    // A wildcard listener does not catch foreign destinations: those are held (a listener
    // on a foreign address does: `a_listener_on_a_foreign_address_wins_over_interception`).
    let any =
        h.ep.listen(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080), 8)
            .unwrap();
    syn(&mut h, client(40006), elsewhere(8080), 1);
    h.none();
    assert_eq!(held(&mut h).len(), 1);
    // A stray ACK to a foreign address with no connection is answered as a closed port.
    h.inject(client(40007), elsewhere(9), Out::new(ACK, 1, 77));
    let rst = h.one();
    assert!(rst.is(RST) && rst.seq.0 == 77 && rst.src == elsewhere(9));
    let _ = (l, any);
}

#[test]
fn intercept_works_for_ipv6() {
    let mut h = intercepting(InterceptConfig::default());
    let dst: SocketAddr = "[2001:2::77]:443".parse().unwrap();
    let src = SocketAddr::new(PEER6, 40010);
    syn(&mut h, src, dst, 9);
    let s = held(&mut h);
    assert_eq!(h.ep.intercepted(s[0]).unwrap().local, dst);
    h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default())
        .unwrap();
    let synack = h.one();
    assert!(synack.is(SYN | ACK) && synack.src == dst);

    syn(&mut h, SocketAddr::new(PEER6, 40011), dst, 9);
    let s = held(&mut h);
    assert!(h
        .ep
        .unreachable_intercepted(h.now, s[0], Unreachable::Host)
        .unwrap());
    assert!(h.drain().is_empty(), "no TCP answer");
    let icmp = h.raw.last().unwrap().clone();
    let (ip, payload) = synack_core::wire::ip::parse(&icmp).unwrap();
    let (IpAddr::V6(from), IpAddr::V6(to)) = (ip.src_addr(), ip.dst_addr()) else {
        panic!("not IPv6");
    };
    match IcmpRepr::parse_v6(payload, from, to).unwrap() {
        IcmpRepr::DstUnreachable { code, .. } => assert_eq!(code, 3, "address unreachable"),
        other => panic!("{other:?}"),
    }
}

/// Each reason a proxy passes on has its own code in each family (RFC 792, RFC 1812
/// §5.2.7.1, RFC 4443 §3.1), so that the client's connect fails as on the direct path:
/// ENETUNREACH, EHOSTUNREACH, ECONNREFUSED, and for a filter EHOSTUNREACH (IPv4) or EACCES
/// (IPv6).
#[test]
fn unreachable_answers_with_the_code_for_its_reason() {
    use synack_core::testing::peer::PEER6;
    let reasons = [
        (Unreachable::Network, 0, 0),
        (Unreachable::Host, 1, 3),
        (Unreachable::Port, 3, 4),
        (Unreachable::Prohibited, 13, 1),
    ];
    let mut h = intercepting(InterceptConfig::default());
    for (i, &(why, v4_code, v6_code)) in reasons.iter().enumerate() {
        let port = 40100 + i as u16;
        for v6 in [false, true] {
            let (src, dst) = if v6 {
                (
                    SocketAddr::new(PEER6, port),
                    "[2001:2::99]:443".parse().unwrap(),
                )
            } else {
                (client(port), elsewhere(443))
            };
            syn(&mut h, src, dst, 11);
            let s = held(&mut h);
            assert!(h.ep.unreachable_intercepted(h.now, s[0], why).unwrap());
            assert!(h.drain().is_empty(), "no TCP answer");
            let icmp = h.raw.last().unwrap().clone();
            let (ip, payload) = synack_core::wire::ip::parse(&icmp).unwrap();
            assert_eq!(ip.src_addr(), dst.ip());
            let parsed = match (ip.src_addr(), ip.dst_addr()) {
                (IpAddr::V6(from), IpAddr::V6(to)) => IcmpRepr::parse_v6(payload, from, to),
                _ => IcmpRepr::parse_v4(payload),
            };
            match parsed.unwrap() {
                IcmpRepr::DstUnreachable { code, .. } => {
                    let want = if v6 { v6_code } else { v4_code };
                    assert_eq!(code, want, "{why:?}, IPv6 {v6}");
                }
                other => panic!("{other:?}"),
            }
            // The answered SYN is gone.
            assert_eq!(
                h.ep.unreachable_intercepted(h.now, s[0], why),
                Err(Error::InvalidHandle)
            );
        }
    }
    // What a proxy's own connect learnt maps onto the reasons; a timeout says nothing, and
    // neither does EPERM, a refusal on the proxy's own host, though std gives it the same
    // kind as a prohibit route's EACCES.
    use std::io::{Error as IoError, ErrorKind as K};
    let os = |errno| Unreachable::from_io_error(&IoError::from_raw_os_error(errno));
    assert_eq!(os(101), Some(Unreachable::Network), "ENETUNREACH");
    assert_eq!(os(113), Some(Unreachable::Host), "EHOSTUNREACH");
    assert_eq!(os(111), Some(Unreachable::Port), "ECONNREFUSED");
    assert_eq!(os(13), Some(Unreachable::Prohibited), "EACCES");
    assert_eq!(os(1), None, "EPERM");
    assert_eq!(Unreachable::from_io_error(&K::TimedOut.into()), None);
    // A UDP socket's: only hard errors reach it, and only hard ones are passed on, so that
    // the client's socket reports them too.
    let udp = |errno| Unreachable::from_udp_io_error(&IoError::from_raw_os_error(errno));
    assert_eq!(udp(111), Some(Unreachable::Port), "ECONNREFUSED");
    assert_eq!(udp(113), Some(Unreachable::Prohibited), "EHOSTUNREACH");
    assert_eq!(udp(13), Some(Unreachable::Prohibited), "EACCES");
    assert_eq!(udp(101), None, "ENETUNREACH");
    assert_eq!(udp(1), None, "EPERM");
}

/// The per-source bound counts an IPv6 source by its /64: one host may send from any
/// address of its prefix, and each /128 counted apart let it hold the whole table. Another
/// /64 has a bound of its own.
#[test]
fn the_per_source_bound_counts_an_ipv6_prefix() {
    let cfg = InterceptConfig {
        max_pending: 64,
        max_per_source: 4,
        ..InterceptConfig::default()
    };
    let mut h = intercepting(cfg);
    let dst: SocketAddr = "[2001:2::77]:443".parse().unwrap();
    for i in 0..20u16 {
        let src: std::net::Ipv6Addr = format!("2001:2:0:9::{:x}", i + 1).parse().unwrap();
        syn(&mut h, SocketAddr::new(IpAddr::V6(src), 40_000), dst, 1);
    }
    assert_eq!(h.ep.intercepted_count(), 4, "one /64");
    assert_eq!(h.ep.stats().drop_intercept_overflow, 16);
    let other: std::net::Ipv6Addr = "2001:2:0:a::1".parse().unwrap();
    syn(&mut h, SocketAddr::new(IpAddr::V6(other), 40_000), dst, 1);
    assert_eq!(h.ep.intercepted_count(), 5, "another /64");
}

/// SYNs decided as fast as they come leave nothing behind: the held table and its expiry
/// queue stay bounded by what is still undecided.
#[test]
fn many_decided_syns_leave_nothing_behind() {
    let mut h = intercepting(InterceptConfig::default());
    for i in 0..20_000u32 {
        let from = SocketAddr::new(PEER, 1024 + (i % 60_000) as u16);
        syn(&mut h, from, elsewhere(443), i);
        for s in held(&mut h) {
            h.ep.drop_intercepted(s).unwrap();
        }
    }
    assert_eq!(h.ep.intercepted_count(), 0);
    assert_eq!(h.ep.stats().intercepted_syns, 20_000);
    h.none();
}

/// A SYN from `client(40000)` to `elsewhere(443)` (seq 1000) intercepted, accepted and
/// answered by the client's ACK: the connection, established, and its SYN-ACK.
fn intercepted_and_established(h: &mut Harness) -> (ConnectionHandle, Seg) {
    syn(h, client(40000), elsewhere(443), 1000);
    let s = held(h);
    let c =
        h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default())
            .unwrap();
    let synack = h.one();
    h.inject(
        client(40000),
        elsewhere(443),
        Out::new(ACK, 1001, 0)
            .ackn(synack.seq + 1)
            .ts(101, synack.ts.unwrap().tsval),
    );
    assert_eq!(h.ep.state(c), Ok(State::Established));
    (c, synack)
}

/// An ICMP message from `from` to `to`, in its IPv4 packet.
fn icmp_to(from: IpAddr, to: IpAddr, icmp: IcmpRepr<'_>) -> Vec<u8> {
    use synack_core::wire::{IpProtocol, IpRepr};
    let ip = IpRepr::new(from, to, IpProtocol::Icmp, icmp.buffer_len(), 64).unwrap();
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p[..20]);
    icmp.emit_v4(&mut p[20..]);
    p
}

/// Path MTU discovery works for an intercepted connection: a router's "fragmentation
/// needed" about what it sent is addressed to the original destination, which is not one of
/// ours, and reaches the connection all the same (as TPROXY delivers ICMP errors to Linux's
/// transparent sockets). An echo request to that address is not ours to answer.
#[test]
fn icmp_errors_reach_intercepted_connections() {
    let mut h = intercepting(InterceptConfig::default());
    let (c, _) = intercepted_and_established(&mut h);
    h.ep.send(c, &[7u8; 3000]).unwrap();
    let sent = h.drain();
    assert!(sent.iter().any(|s| s.payload.len() > 536));
    let quoted = h.raw.last().unwrap()[..48].to_vec();
    let router = IpAddr::V4(Ipv4Addr::new(198, 18, 9, 1));
    let frag_needed = icmp_to(
        router,
        elsewhere(443).ip(),
        IcmpRepr::PacketTooBig {
            mtu: 576,
            invoking: &quoted,
        },
    );
    h.inject_raw(&frag_needed);
    let again = h.drain();
    assert!(!again.is_empty(), "what was in flight is sent again");
    assert!(again.iter().all(|s| s.payload.len() <= 536 - 12));
    assert!(again.iter().all(|s| s.src == elsewhere(443)));

    let before = h.ep.stats().drop_not_for_us;
    let echo = icmp_to(
        client(40000).ip(),
        elsewhere(443).ip(),
        IcmpRepr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"ping",
        },
    );
    h.inject_raw(&echo);
    h.none();
    assert_eq!(h.ep.stats().drop_not_for_us, before + 1);
}

/// A new SYN for an intercepted tuple in TIME-WAIT, beyond the old connection's sequence
/// space, is intercepted again (as TPROXY hands it to the transparent listener), not
/// answered with the old connection's ACK; once accepted, its ISN starts past the old one's.
#[test]
fn a_new_syn_reuses_an_intercepted_tuple_in_time_wait() {
    const FIN: TcpFlags = TcpFlags::FIN;
    let mut h = intercepting(InterceptConfig::default());
    let (c, synack) = intercepted_and_established(&mut h);
    let tsecr = synack.ts.unwrap().tsval;
    // We close first; the client's FIN puts the tuple in TIME-WAIT, on our side.
    h.ep.close(h.now, c).unwrap();
    let _ = h.drain();
    h.inject(
        client(40000),
        elsewhere(443),
        Out::new(FIN | ACK, 1001, 0)
            .ackn(synack.seq + 2)
            .ts(102, tsecr),
    );
    let _ = h.drain();
    assert_eq!(h.ep.time_wait_count(), 1);
    let _ = h.events();

    h.advance(Duration::from_secs(1));
    h.inject(
        client(40000),
        elsewhere(443),
        Out::new(SYN, 90_000, 0).mss(1400).ts(200, 0),
    );
    h.none();
    let s = held(&mut h);
    assert_eq!(s.len(), 1, "intercepted again");
    assert_eq!(h.ep.time_wait_count(), 0);
    h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default())
        .unwrap();
    let synack2 = h.one();
    assert!(synack2.is(SYN | ACK));
    assert_eq!(synack2.seq, synack.seq + 2 + 65_537);
    assert_eq!(synack2.ack.0, 90_001);
}

/// A runtime that lost `Event::Intercepted` to an event overflow (more events undrained than
/// the core keeps) finds the held SYNs again with `held_syns`: in arrival order, the ones
/// decided on left out, so that those newer than the last it was told of are the ones it
/// missed.
#[test]
fn held_syns_are_found_again_after_their_announcements_were_dropped() {
    let mut h = intercepting(InterceptConfig::default());
    // Fill the event queue: connects that nobody answers, aborted at once.
    for port in 1..=30_000u16 {
        h.ep.connect(h.now, SocketAddr::new(PEER, port)).unwrap();
    }
    h.ep.abort_unfinished();
    assert!(h.ep.take_event_overflow());
    let dropped = h.ep.stats().events_dropped;
    for port in 0..3 {
        syn(&mut h, client(40_000 + port), elsewhere(443), 1000);
    }
    assert!(
        h.ep.take_event_overflow(),
        "the SYNs' announcements were lost"
    );
    assert_eq!(h.ep.stats().events_dropped, dropped + 3);
    assert!(held(&mut h).is_empty());
    let found: Vec<SynHandle> = h.ep.held_syns().collect();
    assert_eq!(found.len(), 3);
    assert!(found.windows(2).all(|w| w[0] < w[1]), "arrival order");
    for (&syn, port) in found.iter().zip(40_000..) {
        assert_eq!(h.ep.intercepted(syn).unwrap().remote, client(port));
    }
    h.ep.refuse_intercepted(found[1]).unwrap();
    assert_eq!(h.ep.held_syns().collect::<Vec<_>>(), [found[0], found[2]]);
}

/// The link's broadcast address (`Config::broadcast_addresses`, which a runtime fills from
/// its device's prefix) is nobody's, in transparent mode too: a SYN or an echo request from
/// it is a martian and goes unanswered (Linux's `ip_route_input_slow`), a SYN to it is not
/// intercepted, a connection to it is `NetworkUnreachable` (`tcp_v4_connect`) and a
/// datagram to it `PermissionDenied` (EACCES without `SO_BROADCAST`), as for the limited
/// broadcast address.
#[test]
fn the_link_broadcast_address_is_nobodys() {
    let bcast = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 255));
    let echo = icmp_to(
        bcast,
        US,
        IcmpRepr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"ping",
        },
    );
    // Without the link's prefix the core cannot tell: the SYN and the ping are answered.
    let mut h = intercepting(InterceptConfig::default());
    h.ep.listen(SocketAddr::new(US, 80), 8).unwrap();
    syn(
        &mut h,
        SocketAddr::new(bcast, 4000),
        SocketAddr::new(US, 80),
        1,
    );
    assert!(h.one().is(SYN | ACK));
    h.inject_raw(&echo);
    let _ = h.drain();
    assert_eq!(h.raw.len(), 2, "the SYN-ACK and the echo reply");

    let mut c = config();
    c.intercept(Some(InterceptConfig::default()))
        .broadcast_addresses([Ipv4Addr::new(198, 18, 0, 255)]);
    let mut h = Harness::new(c);
    h.ep.listen(SocketAddr::new(US, 80), 8).unwrap();
    syn(
        &mut h,
        SocketAddr::new(bcast, 4000),
        SocketAddr::new(US, 80),
        1,
    );
    h.none();
    h.inject_raw(&echo);
    syn(&mut h, client(40000), SocketAddr::new(bcast, 80), 1);
    h.none();
    assert!(h.raw.is_empty(), "{:?}", h.raw);
    assert_eq!(h.ep.stats().drop_not_for_us, 3);
    assert!(h.events().is_empty());
    assert_eq!(h.ep.held_syns().count(), 0);
    // A SYN from an ordinary client to the same listener is answered.
    syn(&mut h, client(40001), SocketAddr::new(US, 80), 1);
    assert!(h.one().is(SYN | ACK));

    for to in [bcast, IpAddr::V4(Ipv4Addr::BROADCAST)] {
        let dst = SocketAddr::new(to, 80);
        assert_eq!(
            h.ep.connect(h.now, dst).err(),
            Some(Error::NetworkUnreachable)
        );
        let u = h.ep.udp_bind(SocketAddr::new(US, 0)).unwrap();
        assert_eq!(h.ep.udp_send_to(u, dst, b"x"), Err(Error::PermissionDenied));
        assert_eq!(h.ep.udp_connect(u, dst), Err(Error::PermissionDenied));
    }
    h.none();
}

/// A held SYN whose tuple the application took meanwhile (its own connect from the SYN's
/// destination to its source, which intercept mode lets it make) is dropped when accepted:
/// `AddrNotAvailable`, and the application's connection keeps the tuple. It was accepted
/// over the connection, which lost its tuple for good.
#[test]
fn a_held_syn_whose_tuple_was_taken_meanwhile_is_not_accepted() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(443), 1000);
    let s = held(&mut h);
    let own =
        h.ep.connect_with(
            h.now,
            client(40000),
            Some(elsewhere(443)),
            &SocketOptions::default(),
        )
        .unwrap();
    assert!(h.one().is(SYN));
    let accepted =
        h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default());
    assert_eq!(accepted, Err(Error::AddrNotAvailable));
    assert_eq!(h.ep.intercepted_count(), 0);
    h.none();
    assert_eq!(h.ep.state(own), Ok(State::SynSent));
    assert_eq!(h.ep.local_addr(own), Ok(elsewhere(443)));
}

/// Options Linux's `setsockopt` would refuse (keepalive with no probes) are refused when
/// the held SYN is accepted, and the SYN stays held: accepted again with good options, it
/// becomes its connection.
#[test]
fn accepting_with_bad_options_is_refused_and_the_syn_still_held() {
    let mut h = intercepting(InterceptConfig::default());
    syn(&mut h, client(40000), elsewhere(443), 1000);
    let s = held(&mut h);
    let bad = SocketOptions {
        keepalive: Some(synack_core::KeepaliveConfig {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            probes: 0,
        }),
        ..Default::default()
    };
    assert_eq!(
        h.ep.accept_intercepted(h.now, s[0], &bad),
        Err(Error::InvalidInput)
    );
    h.none();
    assert!(h.ep.intercepted(s[0]).is_ok());
    h.ep.accept_intercepted(h.now, s[0], &SocketOptions::default())
        .unwrap();
    assert!(h.one().is(SYN | ACK));
}
