//! What an idle connection costs: 10,000 established connections between two endpoints of
//! the test kit, each after a small request and response that were read and acknowledged,
//! and the server's heap divided among them.
//!
//! The heap is measured by a counting global allocator (the bytes the process holds
//! allocated, not a model of them), so this file holds exactly one test: another test
//! running on a second thread would count into it. The server's share is what dropping the
//! server endpoint gives back, less what an endpoint with a listener and no connection
//! holds. Run with `--nocapture` to see the figures.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use std::net::SocketAddr;
use std::time::Duration;

use synack_core::testing::Pair;
use synack_core::{Config, Endpoint};

/// Idle connections held.
const N: usize = 10_000;

/// The most heap bytes an idle server-side connection may cost, its share of the endpoint's
/// tables included. Measured: see the figure the test prints (and BENCHMARKS.md).
const LIMIT: usize = 2048;

/// Heap bytes `ep` holds, measured by dropping it.
fn heap_of(ep: Endpoint) -> usize {
    let before = counting_alloc::live();
    drop(ep);
    before - counting_alloc::live()
}

/// An endpoint as the server is made, with its listener and no connection.
fn empty_server(config: &Config) -> Endpoint {
    let mut c = config.clone();
    c.seed(Some([2; 32]));
    let mut ep = Endpoint::new(c, &[Pair::SERVER]);
    ep.listen(SocketAddr::new(Pair::SERVER, 80), 4096).unwrap();
    ep
}

/// Run every timer due within `d` and move what they send.
fn settle(pair: &mut Pair, d: Duration) {
    let end = pair.now + d;
    pair.pump();
    loop {
        let next = [pair.client.poll_timeout(), pair.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= end => {
                pair.now = pair.now.max(t);
                pair.client.handle_timeout(pair.now);
                pair.server.handle_timeout(pair.now);
                pair.pump();
            }
            _ => break,
        }
    }
    pair.now = end;
}

/// Opens `N` connections, with or without a small exchange on each, lets them go idle, and
/// returns the server's heap bytes per connection.
fn per_connection(config: &Config, exchange: bool) -> (usize, usize) {
    let mut pair = Pair::new(config.clone());
    let l = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 4096)
        .unwrap();
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        conns.push(pair.connect(l, 80));
    }
    if exchange {
        let mut buf = [0u8; 512];
        for &(c, s) in &conns {
            assert_eq!(pair.client.send(c, &[b'q'; 100]), Ok(100));
            pair.pump();
            assert_eq!(pair.server.recv(pair.now, s, &mut buf), Ok(100));
            assert_eq!(pair.server.send(s, &[b'r'; 300]), Ok(300));
            pair.pump();
            assert_eq!(pair.client.recv(pair.now, c, &mut buf), Ok(300));
        }
    }
    // Delayed ACKs go out, and whatever waits on a quiet connection runs. The events are
    // the application's to take; undrained they would count here.
    settle(&mut pair, Duration::from_secs(5));
    while pair.server.poll_event().is_some() {}
    let usage = pair.server.memory_usage();
    assert_eq!(usage.connections, N);
    assert_eq!(usage.buffered, 0, "every byte was read and acknowledged");
    assert_eq!(usage.allocated, 0, "empty buffers are given back");
    let spare = empty_server(config);
    let base = heap_of(empty_server(config));
    let server = std::mem::replace(&mut pair.server, spare);
    let total = heap_of(server);
    ((total - base) / N, base)
}

#[test]
fn idle_connections_stay_small() {
    let config = Config::default();
    let (handshake, base) = per_connection(&config, false);
    let (exchanged, _) = per_connection(&config, true);
    println!(
        "server heap per idle connection ({N} connections, default Config): {handshake} bytes \
         after the handshake, {exchanged} bytes after a 100-byte request and 300-byte \
         response; an endpoint with a listener and no connection: {base} bytes"
    );
    assert!(
        handshake <= LIMIT && exchanged <= LIMIT,
        "an idle connection costs {handshake} / {exchanged} bytes, over {LIMIT}"
    );
}
