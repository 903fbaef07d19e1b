//! TCP Fast Open, the client's side (RFC 7413 §4.2), against a scripted server in virtual
//! time: asking for a cookie, keeping it, data in the SYN, and what happens when the server
//! takes only the SYN.

mod common;

use std::net::SocketAddr;

use common::*;
use synack_core::wire::{FastOpenCookie, TcpFlags};
use synack_core::{ConnectionHandle, Event, SocketOptions, State};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const COOKIE: [u8; 8] = [0xab, 0xcd, 0x12, 0x34, 5, 6, 7, 8];

fn server() -> SocketAddr {
    SocketAddr::new(PEER, 80)
}

fn fast_open_connect() -> SocketOptions {
    SocketOptions {
        fast_open_connect: Some(true),
        ..SocketOptions::default()
    }
}

/// A first connection that asks for a cookie and gets `COOKIE`; returns the harness.
fn with_cookie() -> Harness {
    let mut h = Harness::new(config());
    let c =
        h.ep.connect_with(h.now, server(), None, &fast_open_connect())
            .unwrap();
    let syn = h.one();
    assert!(syn.is(SYN));
    assert_eq!(
        syn.fast_open,
        Some(FastOpenCookie::REQUEST),
        "a cookie request"
    );
    assert!(syn.payload.is_empty());
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 5000, 0)
            .ackn(syn.seq + 1)
            .mss(1460)
            .fast_open(&COOKIE),
    );
    let ack = h.one();
    assert_eq!(ack.ack, SeqNumber(5001));
    assert_eq!(h.ep.state(c), Ok(State::Established));
    assert_eq!(h.ep.fast_open_cookie(PEER), FastOpenCookie::new(&COOKIE));
    h
}

use synack_core::SeqNumber;

/// `sendto(MSG_FASTOPEN)` of `data` to the server, with default options: the connection and
/// how much of `data` the SYN takes.
fn sendto_fast_open(h: &mut Harness, data: &[u8]) -> (ConnectionHandle, usize) {
    h.ep.connect_fast_open(h.now, server(), None, &SocketOptions::default(), data)
        .unwrap()
}

#[test]
fn a_cookie_request_keeps_the_servers_cookie() {
    let _ = with_cookie();
}

#[test]
fn with_a_cookie_the_syn_carries_the_data_and_the_server_takes_it() {
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(n, 18);
    let syn = h.one();
    assert!(syn.is(SYN));
    assert_eq!(syn.fast_open, FastOpenCookie::new(&COOKIE));
    assert_eq!(syn.payload, b"GET / HTTP/1.1\r\n\r\n");
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9000, 0).ackn(syn.seq + 19).mss(1460),
    );
    let ack = h.one();
    assert_eq!(ack.seq, syn.seq + 19);
    assert!(
        ack.payload.is_empty(),
        "the data was taken: nothing to send again"
    );
    assert_eq!(h.ep.state(c), Ok(State::Established));
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!(info.options & 32, 32);
    // TCP_INFO counts the SYN and its data as sent, as Linux's `__tcp_transmit_skb` does
    // (the SYN's own write path left them out: `bytes_acked` then read more than was sent,
    // which the fuzz target's invariant caught), and the SYN-ACK's ACK.
    assert_eq!(
        (
            info.segs_out,
            info.data_segs_out,
            info.bytes_sent,
            info.bytes_acked
        ),
        (2, 1, 18, 19),
        "{info:?}"
    );
    // Nothing is left to retransmit.
    let (_, later) = h.next_timeout();
    assert!(later.iter().all(|s| s.payload.is_empty()), "{later:?}");
}

#[test]
fn data_the_server_did_not_take_is_sent_again_at_once() {
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, &[7; 3000]);
    assert_eq!(
        n, 1420,
        "only what the SYN carries is taken, as Linux's sendto(MSG_FASTOPEN) returns"
    );
    let syn = h.one();
    assert_eq!(syn.payload.len(), 1420);
    // The server acknowledges only the SYN (RFC 7413 §4.2.2: no valid cookie, or no TFO).
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9000, 0).ackn(syn.seq + 1).mss(1460),
    );
    // The application writes the rest, as after a short sendto.
    assert_eq!(h.ep.send(c, &[7; 3000 - 1420]), Ok(3000 - 1420));
    let segs = h.drain();
    let data: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(data, vec![7; 3000]);
    assert_eq!(
        segs.iter().find(|s| !s.payload.is_empty()).unwrap().seq,
        syn.seq + 1
    );
}

#[test]
fn the_syns_data_sent_again_counts_as_retransmitted_until_acknowledged() {
    // Linux's tcp_rcv_fastopen_synack marks the SYN's data lost and retransmits it: it is in
    // TCP_INFO's tcpi_retrans (retrans_out) until acknowledged or SACKed, and the new data
    // after it is not (packetdrill's fastopen/client/syn-data-only-syn-acked).
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, &[7; 6000]);
    assert_eq!(n, 1420);
    let syn = h.one();
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9000, 0)
            .ackn(syn.seq + 1)
            .mss(1460)
            .sack_ok(),
    );
    assert_eq!(h.ep.send(c, &[7; 6000 - 1420]), Ok(6000 - 1420));
    let segs = h.drain();
    let data: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(data, vec![7; 6000]);
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!(info.retrans, 1, "the SYN's data, one segment: {info:?}");
    assert_eq!(info.unacked, 5);
    assert_eq!(info.total_retrans, 1);
    // The server SACKs the new data: the resent SYN data is still out, and counted.
    let first = (syn.seq + 1).0;
    h.inject(
        server(),
        syn.src,
        Out::new(ACK, 9001, 0)
            .ackn(syn.seq + 1)
            .sack(&[(first + 1420, first + 6000)]),
    );
    assert_eq!(h.ep.info(h.now, c).unwrap().retrans, 1);
    h.inject(
        server(),
        syn.src,
        Out::new(ACK, 9001, 0).ackn(syn.seq + 6001),
    );
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!((info.retrans, info.unacked), (0, 0));
}

#[test]
fn a_partly_acknowledged_syn_data_resent_in_a_super_segment_counts_each_segment() {
    // packetdrill's fastopen/client/syn-data-partial-or-over-ack: the server takes 100 of the
    // SYN's 1420 bytes and offers MSS 1000; the other 1320 go again as one super-segment of
    // two segments, both counted in tcpi_retrans until a SACK and the ACK cover them.
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, &[3; 4000]);
    assert_eq!(n, 1420);
    let syn = h.one();
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9999, 0)
            .ackn(syn.seq + 101)
            .mss(1000)
            .sack_ok(),
    );
    let resent: Vec<usize> = h.drain().iter().map(|s| s.payload.len()).collect();
    assert_eq!(resent, [1000, 320]);
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!((info.unacked, info.retrans), (2, 2), "{info:?}");
    assert_eq!(
        info.options & 32,
        0,
        "TCPI_OPT_SYN_DATA only when all of the SYN's data was acknowledged"
    );
    assert_eq!(h.ep.send(c, &[3; 4000]), Ok(4000));
    let _ = h.drain();
    assert_eq!(h.ep.info(h.now, c).unwrap().retrans, 2);
    let first = (syn.seq + 1).0;
    h.inject(
        server(),
        syn.src,
        Out::new(ACK, 10000, 0)
            .ackn(syn.seq + 101)
            .sack(&[(first + 1100, first + 5420)]),
    );
    let _ = h.drain();
    h.inject(
        server(),
        syn.src,
        Out::new(ACK, 10000, 0).ackn(syn.seq + 5421),
    );
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!((info.unacked, info.retrans), (0, 0), "{info:?}");
}

#[test]
fn a_syn_with_data_too_big_for_the_path_goes_again_at_once_without_it() {
    // Fragmentation needed for a SYN that carried data: Linux's tcp_simple_retransmit sends a
    // SYN without data at once, offering the path's MSS (packetdrill's
    // fastopen/client/syn-data-icmp-unreach-frag-needed); the data follows the handshake.
    use synack_core::wire::IcmpRepr;
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, &[5; 1000]);
    assert_eq!(n, 1000);
    let syn = h.one();
    assert_eq!((syn.payload.len(), syn.mss), (1000, Some(1460)));
    let quoted = h.raw.last().unwrap()[..48].to_vec();
    // A path MTU above the one in use changes nothing.
    h.inject_raw(&icmp_packet(IcmpRepr::PacketTooBig {
        mtu: 9000,
        invoking: &quoted,
    }));
    assert!(h.drain().is_empty());
    h.inject_raw(&icmp_packet(IcmpRepr::PacketTooBig {
        mtu: 800,
        invoking: &quoted,
    }));
    let again = h.one();
    assert!(again.is(SYN), "{again:?}");
    assert!(again.payload.is_empty());
    assert_eq!(again.fast_open, None);
    assert_eq!(again.mss, Some(760), "the path's MSS, 800 - 40");
    assert_eq!(h.ep.state(c), Ok(State::SynSent));
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9000, 0).ackn(syn.seq + 1).mss(1040),
    );
    let data: Vec<u8> = h.drain().iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(data, vec![5; 1000]);
}

#[test]
fn a_syn_without_data_waits_for_its_timeout_after_fragmentation_needed() {
    use synack_core::wire::IcmpRepr;
    let mut h = Harness::new(config());
    let _c = h.ep.connect(h.now, server()).unwrap();
    let syn = h.one();
    assert!(syn.payload.is_empty());
    let quoted = h.raw.last().unwrap()[..40].to_vec();
    h.inject_raw(&icmp_packet(IcmpRepr::PacketTooBig {
        mtu: 800,
        invoking: &quoted,
    }));
    assert!(h.drain().is_empty(), "nothing was too big: no early resend");
    let (_, again) = h.next_timeout();
    assert_eq!(
        again[0].mss,
        Some(760),
        "the resent SYN offers the path's MSS"
    );
}

#[test]
fn the_mss_the_server_offered_last_sizes_the_next_syns_data() {
    // Linux keeps the MSS of each Fast Open SYN-ACK with the cookie (tcp_fastopen_cache_set)
    // and sizes the next SYN's data by it, less 40 bytes of option room: 940 gives 900
    // (packetdrill's fastopen/client/blocking-sendto.pkt).
    let mut h = with_cookie();
    let (_, n) = sendto_fast_open(&mut h, &[1; 1000]);
    assert_eq!(n, 1000);
    let syn = h.one();
    assert_eq!(syn.payload.len(), 1000);
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 7000, 0)
            .ackn(syn.seq + 1001)
            .mss(940)
            .fast_open(&[0x12; 8]),
    );
    let _ = h.drain();
    assert_eq!(h.ep.fast_open_cookie(PEER), FastOpenCookie::new(&[0x12; 8]));
    let (_, n) = sendto_fast_open(&mut h, &[2; 1900]);
    assert_eq!(n, 900);
    let syn = h.one();
    assert_eq!(syn.payload, vec![2; 900]);
    assert_eq!(syn.fast_open, FastOpenCookie::new(&[0x12; 8]));
}

#[test]
fn an_empty_first_write_sends_the_deferred_syn_without_data() {
    // Linux's sendto(fd, buf, 0) on a TCP_FASTOPEN_CONNECT socket sends the SYN with the
    // cookie and no data (packetdrill's fastopen/client/nonblocking-connect-bypass-errno).
    let mut h = with_cookie();
    let c: ConnectionHandle =
        h.ep.connect_with(h.now, server(), None, &fast_open_connect())
            .unwrap();
    h.none();
    assert_eq!(h.ep.send(c, b""), Ok(0));
    let syn = h.one();
    assert!(syn.is(SYN));
    assert!(syn.payload.is_empty());
    assert_eq!(syn.fast_open, FastOpenCookie::new(&COOKIE));
}

#[test]
fn a_waiting_writer_holds_the_handshakes_ack_for_its_data() {
    // Linux's tcp_rcv_synsent_state_process with sk_write_pending (a blocking sendto whose
    // data the SYN could not all carry): no bare ACK for the SYN-ACK; the rest of the write
    // carries it, and leaving at once makes the exchange request/response, so the server's
    // answer waits for a delayed ACK (fastopen/client/blocking-sendto.pkt).
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, &[3; 2000]);
    assert_eq!(n, 1420);
    h.ep.set_write_pending(c, true).unwrap();
    let syn = h.one();
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 7000, 0)
            .ackn(syn.seq + 1421)
            .mss(1460)
            .fast_open(&COOKIE),
    );
    h.none();
    h.ep.set_write_pending(c, false).unwrap();
    assert_eq!(h.ep.send(c, &[3; 580]), Ok(580));
    let data = h.one();
    assert_eq!(data.payload.len(), 580);
    assert_eq!(data.ack, SeqNumber(7001), "the data carries the held ACK");
    h.inject(
        server(),
        syn.src,
        Out::new(ACK, 7001, 0).ackn(syn.seq + 2001).data(b"answer"),
    );
    h.none();
}

#[test]
fn fast_open_connect_with_a_cookie_waits_for_the_first_write() {
    let mut h = with_cookie();
    let _ = h.events();
    let c: ConnectionHandle =
        h.ep.connect_with(h.now, server(), None, &fast_open_connect())
            .unwrap();
    h.none();
    assert!(
        h.events().contains(&Event::Writable(c)),
        "writable at once, as Linux's poll"
    );
    // What the first write may put in the SYN: the MSS less 40 bytes of option room.
    assert_eq!(h.ep.fast_open_syn_room(c), Ok(1420));
    assert_eq!(h.ep.send(c, b"hello").unwrap(), 5);
    let syn = h.one();
    assert_eq!(h.ep.fast_open_syn_room(c), Ok(0), "the SYN has left");
    assert!(syn.is(SYN));
    assert_eq!(syn.payload, b"hello");
    assert_eq!(syn.fast_open, FastOpenCookie::new(&COOKIE));
}

#[test]
fn a_retransmitted_syn_carries_neither_cookie_nor_data() {
    let mut h = with_cookie();
    let (_c, _) = sendto_fast_open(&mut h, b"abc");
    let syn = h.one();
    assert_eq!(syn.payload, b"abc");
    let (_, again) = h.next_timeout();
    assert_eq!(again.len(), 1);
    assert!(again[0].is(SYN));
    assert_eq!(again[0].seq, syn.seq);
    assert!(again[0].payload.is_empty());
    assert_eq!(again[0].fast_open, None);
    // The SYN-ACK to the plain SYN: the data goes as ordinary data.
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9000, 0).ackn(syn.seq + 1).mss(1460),
    );
    let data: Vec<u8> = h.drain().iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(data, b"abc");
}

#[test]
fn without_a_cookie_sendto_fast_open_queues_nothing_and_asks_for_one() {
    let mut h = Harness::new(config());
    let (_c, n) = sendto_fast_open(&mut h, b"abc");
    assert_eq!(n, 0);
    let syn = h.one();
    assert_eq!(syn.fast_open, Some(FastOpenCookie::REQUEST));
    assert!(syn.payload.is_empty());
}

#[test]
fn the_syn_with_data_fits_the_mtu_with_all_its_options() {
    // Found by the endpoint fuzz target: a 721-byte SYN on a 685-byte MTU. The data in the
    // SYN is what the MTU leaves after the SYN's own options (MSS, SACK-permitted,
    // timestamps, window scale and a 16-byte cookie: 40 bytes).
    let mut cfg = config();
    cfg.mtu(685);
    let cookie = [9u8; 16];
    for v6 in [false, true] {
        let mut h = Harness::new(cfg.clone());
        let ip = if v6 { PEER6 } else { PEER };
        let server = SocketAddr::new(ip, 80);
        let opts = SocketOptions {
            fast_open_connect: Some(true),
            ..SocketOptions::default()
        };
        h.ep.connect_with(h.now, server, None, &opts).unwrap();
        let syn = h.one();
        h.inject(
            server,
            syn.src,
            Out::new(SYN | ACK, 5000, 0)
                .ackn(syn.seq + 1)
                .mss(1460)
                .fast_open(&cookie),
        );
        let _ = h.drain();
        let (_, n) =
            h.ep.connect_fast_open(h.now, server, None, &SocketOptions::default(), &[5; 3000])
                .unwrap();
        // Our MSS on this MTU, less the 40 bytes kept for options.
        let ip_header = if v6 { 40 } else { 20 };
        assert_eq!(n, 685 - ip_header - 20 - 40);
        let mut buf = vec![0u8; 2048];
        let mut largest = 0;
        synack_core::testing::drain(&mut h.ep, h.now, &mut buf, |_, t| {
            largest = largest.max(t.len);
            std::ops::ControlFlow::Continue(())
        });
        assert!(
            largest > 0 && largest <= 685,
            "a {largest}-byte packet on a 685-byte MTU"
        );
    }
}

/// The part of a SYN's data that the server did not take is resent alone, as Linux resends
/// the SYN's data skb (`tcp_rcv_fastopen_synack`), and the data queued since follows in
/// segments of its own. The resend ran on into the new data (a segment of 320 old bytes
/// and 680 new), and TCP_INFO then counted the whole segment as resent, so that
/// `bytes_acked` read more than the data's first transmissions (the fuzz target's
/// invariant found that).
#[test]
fn syn_data_resent_alone_before_new_data() {
    let mut h = with_cookie();
    let (c, n) = sendto_fast_open(&mut h, &[3; 1420]);
    assert_eq!(n, 1420);
    let syn = h.one();
    assert_eq!(h.ep.send(c, &[4; 3000]), Ok(3000));
    h.inject(
        server(),
        syn.src,
        Out::new(SYN | ACK, 9999, 0).ackn(syn.seq + 101).mss(1000),
    );
    let sent: Vec<usize> = h.drain().iter().map(|s| s.payload.len()).collect();
    assert_eq!(sent, [1000, 320, 1000, 1000, 1000]);
    let total = sent.iter().sum::<usize>() as u64;
    let info = h.ep.info(h.now, c).unwrap();
    assert_eq!(
        (info.bytes_sent, info.bytes_retrans),
        (1420 + total, 1320),
        "{sent:?} {info:?}"
    );
}
