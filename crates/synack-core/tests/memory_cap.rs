//! The global memory cap (`Config::max_memory`) under flows that would need far more: peers
//! that send flat out to an application that does not read, and an application that writes
//! flat out to peers that do not read. Memory stays under the cap at every step, windows
//! stop opening, new connections are refused and counted, data beyond the cap is dropped
//! and counted; once the application reads, every byte arrives intact and in order on every
//! connection and new connections are accepted again.
//!
//! Virtual time on the test kit's `Net`, seeded: every run is the same.

use std::net::SocketAddr;
use std::time::Duration;

use synack_core::testing::{pattern, v4, Faults, LinkConfig, Net};
use synack_core::{
    Config, ConnectionHandle, Endpoint, Error, Instant, ListenerHandle, SeqNumber, State,
};

/// The server's cap: 2 MiB, against 50 connections with 256 KiB buffers (12.5 MiB).
const CAP: usize = 2 << 20;
/// Connections.
const FLOWS: usize = 50;
/// Bytes sent on each: 10 MB in all, five times the cap.
const BYTES: u64 = 200_000;
/// The MSS on this link (a 1500-byte MTU).
const MSS: usize = 1460;

const CLIENT: usize = 0;
const SERVER: usize = 1;

/// One connection: its two ends, and how far each side of the stream got.
struct Flow {
    client: ConnectionHandle,
    server: ConnectionHandle,
    written: u64,
    read: u64,
    eof: bool,
    /// The right edge of the server's receive window, as last seen (bytes from the start).
    edge: u64,
}

fn server_addr() -> SocketAddr {
    SocketAddr::new(v4(SERVER), 80)
}

/// A client and a server capped at `CAP`, joined by a 1 ms link with `loss`, and `FLOWS`
/// connections between them.
fn setup(seed: u64, loss: f64, client_buffer: usize) -> (Net, ListenerHandle, Vec<Flow>) {
    let mut client = Config::default();
    client
        .seed(Some([1; 32]))
        .recv_buffer(client_buffer)
        .recv_buffer_max(client_buffer);
    let mut server = Config::default();
    server.seed(Some([2; 32])).max_memory(CAP);
    let link = LinkConfig::latency(Duration::from_millis(1)).with_faults(Faults::loss(loss));
    let mut net = Net::new(seed, vec![client, server], link);
    let l = net.nodes[SERVER].listen(server_addr(), 128).unwrap();
    let mut clients = Vec::new();
    for _ in 0..FLOWS {
        let now = net.now;
        clients.push(net.nodes[CLIENT].connect(now, server_addr()).unwrap());
    }
    let mut flows = Vec::new();
    for _ in 0..10_000 {
        while let Ok(s) = net.nodes[SERVER].accept(l) {
            let peer = net.nodes[SERVER].peer_addr(s).unwrap();
            let c = *clients
                .iter()
                .find(|&&c| net.nodes[CLIENT].local_addr(c).unwrap() == peer)
                .expect("the client end");
            flows.push(Flow {
                client: c,
                server: s,
                written: 0,
                read: 0,
                eof: false,
                edge: 0,
            });
        }
        if flows.len() == FLOWS {
            break;
        }
        assert!(net.step(None), "handshakes stalled");
    }
    assert_eq!(flows.len(), FLOWS);
    (net, l, flows)
}

/// The stream of flow `i`.
fn stream_seed(i: usize) -> u64 {
    0x5eed_0000 + i as u64
}

/// Write as much of each flow's stream as `from` takes now, then FIN; returns the bytes
/// taken. `WouldBlock` (and a short write) is the cap at work.
fn write_all(ep: &mut Endpoint, flows: &mut [Flow], from_server: bool) -> (u64, u64) {
    let mut buf = vec![0u8; 32 * 1024];
    let (mut taken, mut refused) = (0, 0);
    for (i, f) in flows.iter_mut().enumerate() {
        let conn = if from_server { f.server } else { f.client };
        while f.written < BYTES {
            let n = ((BYTES - f.written) as usize).min(buf.len());
            pattern(stream_seed(i), f.written, &mut buf[..n]);
            match ep.send(conn, &buf[..n]) {
                Ok(k) => {
                    assert!(k <= n);
                    f.written += k as u64;
                    taken += k as u64;
                    if k < n {
                        break;
                    }
                }
                Err(Error::WouldBlock) => {
                    refused += 1;
                    break;
                }
                Err(e) => panic!("flow {i}: send failed: {e}"),
            }
        }
        if f.written == BYTES {
            // A second shutdown is a no-op or an error; either is fine here.
            let _ = ep.shutdown(conn);
        }
    }
    (taken, refused)
}

/// Read whatever each flow has, checking every byte against its stream.
fn read_all(ep: &mut Endpoint, now: Instant, flows: &mut [Flow], at_server: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut want = vec![0u8; 16 * 1024];
    for (i, f) in flows.iter_mut().enumerate() {
        let conn = if at_server { f.server } else { f.client };
        loop {
            match ep.recv(now, conn, &mut buf) {
                Ok(0) => {
                    f.eof = true;
                    break;
                }
                Ok(n) => {
                    pattern(stream_seed(i), f.read, &mut want[..n]);
                    assert!(
                        buf[..n] == want[..n],
                        "flow {i}: wrong bytes at offset {}",
                        f.read
                    );
                    f.read += n as u64;
                }
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("flow {i}: recv failed: {e}"),
            }
        }
    }
}

/// The right edge of the server's window on each flow never moves left (RFC 9293
/// §3.8.6.2.2, RFC 7323 §2.4), and one that moves right under memory pressure offers at
/// most two segments (Linux `tcp_clamp_window`). Returns how many moved right.
fn check_edges(net: &Net, flows: &mut [Flow], pressure: bool) -> usize {
    let mut opened = 0;
    for (i, f) in flows.iter_mut().enumerate() {
        let info = net.nodes[SERVER].info(net.now, f.server).unwrap();
        // `bytes_received` counts the peer's FIN too, as Linux's does: RCV.NXT's offset.
        let edge = info.bytes_received + u64::from(info.rcv_wnd);
        assert!(
            edge >= f.edge,
            "flow {i}: the window's right edge moved left"
        );
        if edge > f.edge {
            opened += 1;
            assert!(
                !pressure || info.rcv_wnd as usize <= 2 * MSS,
                "flow {i}: a window of {} opened under pressure",
                info.rcv_wnd
            );
        }
        f.edge = edge;
    }
    opened
}

/// Whether the server is under memory pressure.
fn pressure(net: &Net) -> bool {
    net.nodes[SERVER].memory_usage().pressure
}

fn assert_under_cap(net: &Net) {
    let used = net.nodes[SERVER].memory();
    assert!(used <= CAP, "memory {used} over the cap {CAP}");
}

/// [`assert_under_cap`] for a receiving server, but for the floor each connection keeps: in-
/// order data is taken whatever the cap while the connection holds less than two segments
/// unread (`Connection::receive_floor`, Linux's `tcp_rmem[0]`), so each connection holding
/// at most two unread may be up to two segments over its share. Any other excess fails.
fn assert_under_cap_but_floors(net: &Net, flows: &[Flow]) {
    let used = net.nodes[SERVER].memory();
    let floors = flows
        .iter()
        .filter(|f| {
            net.nodes[SERVER]
                .info(net.now, f.server)
                .is_ok_and(|i| i.bytes_received.saturating_sub(f.read) <= 2 * MSS as u64)
        })
        .count();
    let slack = floors * 2 * MSS;
    assert!(
        used <= CAP + slack,
        "memory {used} over the cap {CAP} and the floors of {floors} connections"
    );
}

/// Peers send flat out to a server whose application does not read, then it reads.
fn receive_side(seed: u64, loss: f64) {
    let (mut net, l, mut flows) = setup(seed, loss, 256 * 1024);
    let tick = Duration::from_millis(10);
    // Phase 1: nobody reads at the server, for 20 s of virtual time.
    let end = net.now + Duration::from_secs(20);
    let mut full_since: Option<Instant> = None;
    let mut opened_under_pressure = 0;
    let mut late = None;
    while net.now < end {
        write_all(&mut net.nodes[CLIENT], &mut flows, false);
        let before = pressure(&net);
        let wake = net.now + tick;
        net.step(Some(wake));
        assert_under_cap_but_floors(&net, &flows);
        let under = before && pressure(&net);
        let opened = check_edges(&net, &mut flows, under);
        if under {
            opened_under_pressure += opened;
        }
        // Within a sixteenth of the cap (at most 64 KiB), new connections are refused.
        if full_since.is_none() && CAP - net.nodes[SERVER].memory() <= 64 * 1024 {
            // A new connection each way while the cap is spent. Unless pruning out-of-order
            // data first makes room (it runs at most every `PRUNE_INTERVAL`): the connection
            // is then allowed, and the next time the cap is near, it is tried again.
            let now = net.now;
            let pruned = net.nodes[SERVER].stats().ooo_pruned;
            match net.nodes[SERVER].connect(now, SocketAddr::new(v4(CLIENT), 9)) {
                Err(Error::NoBufferSpace) => {
                    full_since = Some(net.now);
                    late = Some(net.nodes[CLIENT].connect(now, server_addr()).unwrap());
                }
                Ok(_) => {
                    let room = CAP - net.nodes[SERVER].memory();
                    assert!(
                        net.nodes[SERVER].stats().ooo_pruned > pruned && room > 64 * 1024,
                        "a connection at the cap: {room} bytes of room"
                    );
                }
                Err(e) => panic!("connect at the cap: {e:?}"),
            }
        }
    }
    let usage = net.nodes[SERVER].memory_usage();
    let stats = net.nodes[SERVER].stats().clone();
    println!(
        "seed {seed}, loss {loss}: after 20 s unread: {usage:?}; drop_memory {}, \
         refused_memory {}, windows opened under pressure {opened_under_pressure}",
        stats.drop_memory, stats.refused_memory
    );
    assert!(full_since.is_some(), "the cap was never reached");
    assert!(usage.pressure);
    assert!(usage.buffered + 64 * 1024 >= CAP, "memory sits at the cap");
    assert_eq!(
        usage.allocated, usage.buffered,
        "what is counted is the heap held"
    );
    assert!(stats.drop_memory > 0, "data beyond the cap is dropped");
    assert!(
        stats.refused_memory >= 2,
        "the connect and at least one SYN were refused for memory: {stats:?}"
    );
    let late = late.unwrap();
    assert!(net.nodes[SERVER].accept(l).is_err(), "no connection got in");

    // Phase 2: the application reads everything; the stalled flows resume.
    let start = net.now;
    let end = net.now + Duration::from_secs(600);
    while flows.iter().any(|f| !f.eof) {
        assert!(net.now < end, "flows stalled: {:?}", progress(&flows));
        write_all(&mut net.nodes[CLIENT], &mut flows, false);
        let now = net.now;
        read_all(&mut net.nodes[SERVER], now, &mut flows, true);
        let wake = net.now + tick;
        net.step(Some(wake));
        assert_under_cap_but_floors(&net, &flows);
        check_edges(&net, &mut flows, false);
    }
    for f in &flows {
        assert_eq!(f.read, BYTES, "every byte, in order");
    }
    println!(
        "seed {seed}: every flow read to its end {:?} after reading began",
        net.now - start
    );
    // The late connection's SYN is retried and now accepted.
    let end = net.now + Duration::from_secs(120);
    let s = loop {
        if let Ok(s) = net.nodes[SERVER].accept(l) {
            break s;
        }
        assert!(net.now < end, "the late connection was never accepted");
        net.step(Some(net.now + tick));
    };
    assert_eq!(
        net.nodes[SERVER].peer_addr(s).unwrap(),
        net.nodes[CLIENT].local_addr(late).unwrap()
    );
    let now = net.now;
    assert!(net.nodes[SERVER]
        .connect(now, SocketAddr::new(v4(CLIENT), 9))
        .is_ok());
    assert!(!net.nodes[SERVER].memory_usage().pressure);
}

fn progress(flows: &[Flow]) -> Vec<(u64, u64)> {
    flows.iter().map(|f| (f.written, f.read)).collect()
}

#[test]
fn unread_data_stays_under_the_cap_and_resumes() {
    receive_side(1, 0.0);
}

#[test]
fn unread_data_stays_under_the_cap_and_resumes_with_loss() {
    receive_side(2, 0.02);
}

/// The server writes flat out to peers that do not read: its writes are cut short at the
/// cap instead of growing without bound, and complete once the peers read.
#[test]
fn writes_stop_at_the_cap_and_resume() {
    // The peers' buffers hold 16 KiB each: the rest waits in the server's send buffers.
    let (mut net, _l, mut flows) = setup(3, 0.0, 16 * 1024);
    let tick = Duration::from_millis(10);
    let end = net.now + Duration::from_secs(20);
    let mut refused = 0;
    while net.now < end {
        let (_, r) = write_all(&mut net.nodes[SERVER], &mut flows, true);
        refused += r;
        let wake = net.now + tick;
        net.step(Some(wake));
        assert_under_cap(&net);
    }
    let usage = net.nodes[SERVER].memory_usage();
    println!("writes at the cap: {usage:?}, {refused} writes refused");
    assert!(refused > 0, "writes were refused at the cap");
    assert!(
        usage.buffered + 64 * 1024 >= CAP,
        "the send buffers filled the cap"
    );
    assert_eq!(net.nodes[SERVER].send_capacity(flows[0].server), Ok(0));
    let unfinished = flows.iter().filter(|f| f.written < BYTES).count();
    assert!(unfinished > 0, "not everything fit");
    // The peers read: every byte arrives, and the writers finish.
    let end = net.now + Duration::from_secs(600);
    while flows.iter().any(|f| !f.eof) {
        assert!(net.now < end, "flows stalled: {:?}", progress(&flows));
        write_all(&mut net.nodes[SERVER], &mut flows, true);
        let now = net.now;
        read_all(&mut net.nodes[CLIENT], now, &mut flows, false);
        let wake = net.now + tick;
        net.step(Some(wake));
        assert_under_cap(&net);
    }
    for f in &flows {
        assert_eq!((f.written, f.read), (BYTES, BYTES));
    }
}

/// A hostile peer opens connections and scatters single bytes across each one's window, one
/// in every kilobyte: each costs a block of out-of-order storage, and the blocks are what the
/// cap counts. Memory stays under the cap at every step. At the cap, what those bytes hold
/// is pruned (Linux's `tcp_prune_ofo_queue`), largest first: every SYN is still answered,
/// and a connection that sat idle through it all takes its next data in order. (Before, a
/// few thousand such bytes, a few hundred kilobytes on the wire, filled a 1 GiB cap for as
/// long as the peer liked, refusing every new connection and starving the rest.)
#[test]
fn scattered_bytes_are_pruned_at_the_cap_not_held_against_others() {
    use synack_core::testing::peer::{config, Harness, Out, PEER, US};
    use synack_core::wire::TcpFlags;
    const SMALL_CAP: usize = 1 << 20;
    let mut c = config();
    c.max_memory(SMALL_CAP);
    let mut h = Harness::new(c);
    let local = SocketAddr::new(US, 80);
    let l = h.ep.listen(local, 128).unwrap();
    let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);

    // The connection that must keep working: established, a first request read.
    let victim = SocketAddr::new(PEER, 999);
    h.inject(victim, local, Out::new(syn, 5000, 0).mss(1460));
    let synack = h.drain().into_iter().find(|s| s.is(syn | ack)).unwrap();
    let va = synack.seq + 1;
    h.inject(victim, local, Out::new(ack, 5001, 0).ackn(va));
    let v = h.ep.accept(l).unwrap();
    h.inject(
        victim,
        local,
        Out::new(ack, 5001, 0).ackn(va).data(b"first"),
    );
    let mut buf = [0u8; 64];
    assert_eq!(h.ep.recv(h.now, v, &mut buf), Ok(5));
    let _ = h.drain();

    let mut answered = 0;
    for port in 1..=40u16 {
        let peer = SocketAddr::new(PEER, port);
        h.inject(peer, local, Out::new(syn, 1000, 0).mss(1460));
        let Some(synack) = h.drain().into_iter().find(|s| s.is(syn | ack)) else {
            continue;
        };
        answered += 1;
        assert_eq!(synack.window, 65_535);
        h.inject(peer, local, Out::new(ack, 1001, 0).ackn(synack.seq + 1));
        while h.ep.accept(l).is_ok() {}
        // A byte in every kilobyte of the window, up to just inside its right edge.
        for k in 1..=63 {
            let far = Out::new(ack, 1001 + k * 1031, 0)
                .ackn(synack.seq + 1)
                .data(b"x");
            h.inject(peer, local, far);
            let _ = h.drain();
            assert!(h.ep.memory() <= SMALL_CAP, "{:?}", h.ep.memory_usage());
        }
        h.advance(Duration::from_millis(20));
    }
    let stats = h.ep.stats();
    println!(
        "scattered bytes: {answered} connections answered, {:?}, drop_memory {}, \
         refused_memory {}, ooo_pruned {}",
        h.ep.memory_usage(),
        stats.drop_memory,
        stats.refused_memory,
        stats.ooo_pruned
    );
    assert_eq!(answered, 40, "every SYN answered");
    assert_eq!(stats.refused_memory, 0);
    assert!(stats.ooo_pruned > 0);

    // The idle connection's next request arrives in order and is taken.
    h.inject(
        victim,
        local,
        Out::new(ack, 5006, 0).ackn(va).data(b"second"),
    );
    assert_eq!(h.ep.recv(h.now, v, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"second");
    assert!(h.ep.memory() <= SMALL_CAP);
}

/// A hostile peer's single byte at the far edge of each connection's window costs about a
/// kilobyte, what it holds, not a ring the size of the window: 400 such connections hold
/// less than half a megabyte, and nothing is pruned or dropped. (Before, each byte cost the
/// whole 64 KiB window, and 16 of them filled this cap.)
#[test]
fn a_far_byte_costs_what_it_holds_not_the_window() {
    use synack_core::testing::peer::{config, Harness, Out, PEER, US};
    use synack_core::wire::TcpFlags;
    const SMALL_CAP: usize = 1 << 20;
    const CONNECTIONS: u16 = 400;
    let mut c = config();
    c.max_memory(SMALL_CAP);
    let mut h = Harness::new(c);
    let local = SocketAddr::new(US, 80);
    let l = h.ep.listen(local, 1024).unwrap();
    let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);
    let idle = h.ep.memory();
    for port in 1..=CONNECTIONS {
        let peer = SocketAddr::new(PEER, port);
        h.inject(peer, local, Out::new(syn, 1000, 0).mss(1460).sack_ok());
        let synack = h
            .drain()
            .into_iter()
            .find(|s| s.is(syn | ack))
            .expect("SYN-ACK");
        h.inject(peer, local, Out::new(ack, 1001, 0).ackn(synack.seq + 1));
        while h.ep.accept(l).is_ok() {}
        let far = Out::new(ack, 1001 + 65_000, 0)
            .ackn(synack.seq + 1)
            .data(b"x");
        h.inject(peer, local, far);
        let acks = h.drain();
        assert!(
            acks.iter()
                .any(|a| a.sack == [(SeqNumber(66_001), SeqNumber(66_002))]),
            "the byte is held and SACKed: {acks:?}"
        );
    }
    let held = h.ep.memory() - idle;
    let per = held / usize::from(CONNECTIONS);
    println!("far bytes: {held} bytes held for {CONNECTIONS}, {per} each");
    assert!(per <= 2048, "{per} bytes held for one byte");
    let stats = h.ep.stats();
    assert_eq!(stats.ooo_pruned, 0);
    assert_eq!(stats.drop_memory, 0);
    assert_eq!(stats.refused_memory, 0);
}

/// A hostile peer gives each connection one byte in order (a small ring), then many
/// one-byte segments at every other offset, all inside that ring: the ring does not grow, but
/// the list of out-of-order ranges does, and that list is memory too. Memory stays under the
/// cap at every step, and what does not fit is dropped under `drop_memory`.
#[test]
fn scattered_ranges_inside_the_ring_cannot_grow_past_the_cap() {
    use synack_core::testing::peer::{config, Harness, Out, PEER, US};
    use synack_core::wire::TcpFlags;
    const SMALL_CAP: usize = 1 << 20;
    let mut c = config();
    c.max_memory(SMALL_CAP);
    let mut h = Harness::new(c);
    let local = SocketAddr::new(US, 80);
    let l = h.ep.listen(local, 128).unwrap();
    let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);
    // First every connection gets its byte in order (and with it a 1 KiB ring)...
    let mut open = Vec::new();
    for port in 1..=400u16 {
        let peer = SocketAddr::new(PEER, port);
        h.inject(peer, local, Out::new(syn, 1000, 0).mss(1460).sack_ok());
        let Some(synack) = h.drain().into_iter().find(|s| s.is(syn | ack)) else {
            continue;
        };
        let a = synack.seq + 1;
        h.inject(peer, local, Out::new(ack, 1001, 0).ackn(a));
        while h.ep.accept(l).is_ok() {}
        h.inject(peer, local, Out::new(ack, 1001, 0).ackn(a).data(b"x"));
        let _ = h.drain();
        assert!(h.ep.memory() <= SMALL_CAP, "{:?}", h.ep.memory_usage());
        open.push((peer, a));
    }
    let answered = open.len();
    // ...then 255 single bytes at every other offset, all inside that ring.
    let dropped_before = h.ep.stats().drop_memory;
    for &(peer, a) in &open {
        for k in 1..=255u32 {
            let seg = Out::new(ack, 1002 + 2 * k, 0).ackn(a).data(b"y");
            h.inject(peer, local, seg);
            assert!(
                h.ep.memory() <= SMALL_CAP,
                "{peer}, range {k}: {:?}",
                h.ep.memory_usage()
            );
        }
        let _ = h.drain();
    }
    let stats = h.ep.stats();
    println!(
        "scattered ranges: {answered} answered, {:?}, drop_memory {}, refused_memory {}",
        h.ep.memory_usage(),
        stats.drop_memory,
        stats.refused_memory
    );
    assert!(h.ep.memory() <= SMALL_CAP);
    assert!(
        stats.drop_memory > dropped_before,
        "out-of-order bytes beyond the cap are dropped and counted"
    );
}

/// The event queue is bounded too: past `MAX_EVENTS` undrained, events are dropped and
/// counted, and `take_event_overflow` says so, once, so that a runtime that parks tasks until
/// their event can wake them all to look again (an abort of tens of thousands of
/// connections at once, as a shutdown that ran out of time does, is such a burst).
#[test]
fn undrained_events_are_bounded_and_their_loss_is_reported() {
    let mut config = Config::default();
    config.seed(Some([3; 32]));
    let mut ep = Endpoint::new(config, &[v4(CLIENT)]);
    let now = Instant::ZERO;
    let mut conns = Vec::new();
    // Distinct peers' ports, so that each connect has a tuple of its own.
    for port in 1..=30_000u16 {
        conns.push(ep.connect(now, SocketAddr::new(v4(SERVER), port)).unwrap());
    }
    assert!(!ep.take_event_overflow());
    ep.abort_unfinished();
    assert!(ep.take_event_overflow(), "30 000 aborts overflow the queue");
    assert!(!ep.take_event_overflow(), "reported once");
    let dropped = ep.stats().events_dropped;
    assert!(dropped > 0);
    let mut kept = 0;
    while ep.poll_event().is_some() {
        kept += 1;
    }
    assert_eq!(kept, synack_core::endpoint::MAX_EVENTS);
    // Whatever was lost, each handle still tells its own story.
    for c in conns {
        assert_eq!(ep.state(c), Ok(State::Closed));
        assert_eq!(ep.take_error(c), Ok(Some(Error::ConnectionAborted)));
    }
}

/// A connection that read its receive buffer empty before memory pressure began kept the
/// buffer's storage for a while (`RECLAIM_AFTER`), to spare the next burst an allocation.
/// Once under pressure, the next time it is read empty its storage goes back at once, as
/// for any other connection: before, the timer armed earlier held it, charged, while the
/// cap refused other connections' data (the receiving test above went over the cap so).
#[test]
fn a_ring_read_empty_under_pressure_goes_back_at_once_whatever_its_timer() {
    use synack_core::testing::peer::{config, Harness, Out, PEER, US};
    use synack_core::wire::TcpFlags;
    const SMALL_CAP: usize = 256 * 1024;
    let mut c = config();
    c.max_memory(SMALL_CAP);
    let mut h = Harness::new(c);
    let local = SocketAddr::new(US, 80);
    let l = h.ep.listen(local, 16).unwrap();
    let (syn, ack) = (TcpFlags::SYN, TcpFlags::ACK);
    let mut buf = vec![0u8; 64 * 1024];
    // Opens a connection from `port`; returns it and the next sequence numbers each way.
    let open = |h: &mut Harness, port: u16| {
        let peer = SocketAddr::new(PEER, port);
        h.inject(peer, local, Out::new(syn, 1000, 0).mss(1460));
        let synack = h.drain().into_iter().find(|s| s.is(syn | ack)).unwrap();
        h.inject(peer, local, Out::new(ack, 1001, 0).ackn(synack.seq + 1));
        (h.ep.accept(l).unwrap(), peer, synack.seq + 1)
    };
    let (v, vpeer, va) = open(&mut h, 1);
    let mut vseq = 1001;
    // Data read at once, with no pressure: the emptied ring keeps its storage.
    for _ in 0..5 {
        h.inject(
            vpeer,
            local,
            Out::new(ack, vseq, 0).ackn(va).data(&[7; 1000]),
        );
        vseq += 1000;
    }
    assert_eq!(h.ep.recv(h.now, v, &mut buf), Ok(5000));
    let held = h.ep.memory();
    assert!(held >= 5000, "the ring is kept for the next burst: {held}");
    h.inject(
        vpeer,
        local,
        Out::new(ack, vseq, 0).ackn(va).data(&[8; 1000]),
    );
    // Four other connections' peers send 60 KB each that nobody reads: pressure.
    for port in 2..=5 {
        let (_, peer, a) = open(&mut h, port);
        for i in 0..50u32 {
            let seq = 1001 + i * 1200;
            h.inject(peer, local, Out::new(ack, seq, 0).ackn(a).data(&[9; 1200]));
        }
    }
    let _ = h.drain();
    assert!(h.ep.memory_usage().pressure, "{:?}", h.ep.memory_usage());
    let before = h.ep.memory();
    assert_eq!(h.ep.recv(h.now, v, &mut buf), Ok(1000));
    let after = h.ep.memory();
    assert!(
        after + held <= before,
        "the ring read empty under pressure went back: {before} -> {after}"
    );
}

/// A connection idle with one byte unread after a 4 MB burst (a reader waiting for the
/// rest of a message) gives back the ring the burst grew, once the reclaim timer runs: it
/// kept all of it, since only an empty ring was given back and pressure prunes only
/// out-of-order data; seven such held 25 MB of a 32 MiB cap, and kept the endpoint under
/// pressure for good. The unread byte is still there.
#[test]
fn a_ring_holding_a_few_unread_bytes_after_a_burst_shrinks_to_them() {
    use synack_core::testing::Pair;
    const BIG_CAP: usize = 32 << 20;
    const BURST: usize = 4 << 20;
    const CONNS: usize = 7;
    let mut client = Config::default();
    client
        .seed(Some([1; 32]))
        .send_buffer(BURST)
        .send_buffer_max(BURST);
    let mut server = Config::default();
    server
        .seed(Some([2; 32]))
        .max_memory(BIG_CAP)
        .recv_buffer(BURST)
        .recv_buffer_max(BURST);
    let mut pair = Pair::with_configs(client, server);
    let l = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 128)
        .unwrap();
    let (data, mut buf) = (vec![7u8; BURST], vec![0u8; 64 * 1024]);
    let mut servers = Vec::new();
    for _ in 0..CONNS {
        let (c, s) = pair.connect(l, 80);
        servers.push(s);
        let mut sent = 0;
        while sent < BURST {
            sent += pair.client.send(c, &data[sent..]).unwrap_or(0);
            if !pair.pump() {
                pair.advance();
            }
        }
        pair.pump();
        let mut read = 0; // the application reads all but the last byte
        while read < BURST - 1 {
            let want = (BURST - 1 - read).min(buf.len());
            read += pair.server.recv(pair.now, s, &mut buf[..want]).unwrap();
            pair.pump();
        }
    }
    pair.run_until(pair.now + Duration::from_secs(3600)); // an hour of quiet
    let usage = pair.server.memory_usage();
    assert!(
        usage.allocated <= CONNS * 64 * 1024,
        "{CONNS} idle connections with 1 unread byte each hold {} bytes ({} each), charged {} \
         of the {BIG_CAP}-byte cap; pressure: {}",
        usage.allocated,
        usage.allocated / CONNS,
        pair.server.memory(),
        usage.pressure
    );
    assert!(!usage.pressure);
    for s in servers {
        let mut last = [0u8; 2];
        assert_eq!(pair.server.recv(pair.now, s, &mut last), Ok(1));
        assert_eq!(last[0], 7);
    }
}

/// A sender whose peer stopped reading after a burst keeps only what it still has queued
/// (and a couple of chunks for its next writes): the chunks the burst's acknowledged data
/// left as spares are given back once the reclaim timer runs. It kept them for as long as
/// anything stayed queued (here, for as long as the peer's window stayed shut), charged to
/// the endpoint's memory. Linux keeps none (`sk_mem_uncharge` gives back forward-allocated
/// memory past a page at once).
#[test]
fn a_sender_with_little_queued_after_a_burst_gives_its_spare_chunks_back() {
    use synack_core::testing::Pair;
    const BURST: usize = 4 << 20;
    let mut client = Config::default();
    client
        .seed(Some([1; 32]))
        .send_buffer(BURST)
        .send_buffer_max(BURST);
    let mut server = Config::default();
    server
        .seed(Some([2; 32]))
        .recv_buffer(3 << 20)
        .recv_buffer_max(3 << 20);
    let mut pair = Pair::with_configs(client, server);
    let l = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 128)
        .unwrap();
    let (c, s) = pair.connect(l, 80);
    // The burst: the server's application reads none of it, and the window shuts with
    // some of it still queued.
    let data = vec![7u8; BURST];
    let mut sent = 0;
    for _ in 0..100_000 {
        if sent == BURST {
            break;
        }
        sent += pair.client.send(c, &data[sent..]).unwrap_or(0);
        if !pair.pump() && !pair.advance() {
            break;
        }
    }
    assert_eq!(sent, BURST);
    pair.pump();
    let queued = pair.client.info(pair.now, c).unwrap().send_queued as usize;
    assert!(
        queued > 0 && queued < BURST / 2,
        "{queued} bytes still queued"
    );
    let before = pair.client.memory_usage().allocated;
    pair.run_until(pair.now + Duration::from_secs(60)); // a minute of zero-window probes
    let after = pair.client.memory_usage().allocated;
    assert!(
        after <= queued + 4 * 64 * 1024 + 64 * 1024,
        "{queued} bytes queued hold {after} bytes (held {before} after the burst)"
    );
    assert!(pair.client.memory() <= after);
    // Everything arrives once the server reads.
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    for _ in 0..100_000 {
        match pair.server.recv(pair.now, s, &mut buf) {
            Ok(n) if n > 0 => {
                assert!(buf[..n].iter().all(|&b| b == 7));
                read += n;
            }
            _ => {
                if !pair.pump() && !pair.advance() {
                    break;
                }
            }
        }
        if read == BURST {
            break;
        }
    }
    assert_eq!(read, BURST);
}
