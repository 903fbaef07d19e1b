//! Memory goes back after a peak: an endpoint that once held many connections, all since
//! closed and out of TIME-WAIT, holds about what a fresh one does, as Linux frees each
//! socket. Without this a single flood of connections would cost its memory for the
//! endpoint's whole life.
//!
//! The heap is measured by a counting global allocator, so this file holds exactly one test
//! (see `churn_memory.rs`).

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
#[path = "common/exchange.rs"]
mod exchange;

use std::net::SocketAddr;
use std::time::Duration;

use synack_core::testing::Pair;
use synack_core::{Config, Endpoint};

/// Connections open at once at the peak.
const PEAK: usize = 20_000;
/// What an endpoint may keep after the peak beyond what a fresh one holds: a spare slab
/// page and tables sized for a few dozen connections, far below the peak's ~30 MB.
const SLACK: usize = 256 * 1024;

/// The heap `ep` holds, measured as what dropping it frees.
fn heap_of(ep: Endpoint) -> usize {
    let before = counting_alloc::live();
    drop(ep);
    before - counting_alloc::live()
}

/// The server as it was before the peak: listening on port 80.
fn fresh_server(config: &Config) -> Endpoint {
    let mut ep = Endpoint::new(config.clone(), &[Pair::SERVER]);
    ep.listen(SocketAddr::new(Pair::SERVER, 80), 4096).unwrap();
    ep
}

/// The client as it is after its first connect, gone: with the table that ephemeral port
/// choice makes on the first connect (RFC 6056 §3.3.4's table, a fixed size).
fn fresh_client(config: &Config) -> Endpoint {
    let mut ep = Endpoint::new(config.clone(), &[Pair::CLIENT]);
    let now = synack_core::Instant::from_secs(1);
    let c = ep.connect(now, SocketAddr::new(Pair::SERVER, 80)).unwrap();
    ep.abort(c).unwrap();
    let mut buf = vec![0u8; 2048];
    synack_core::testing::drain(&mut ep, now, &mut buf, |_, _| {
        std::ops::ControlFlow::Continue(())
    });
    while ep.poll_event().is_some() {}
    assert_eq!(ep.connection_count(), 0);
    ep
}

#[test]
fn memory_goes_back_after_a_peak_of_connections() {
    let mut client_config = Config::default();
    client_config.seed(Some([1; 32]));
    let mut server_config = Config::default();
    server_config.seed(Some([2; 32]));
    let mut pair = Pair::with_configs(client_config.clone(), server_config.clone());
    let l = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 4096)
        .unwrap();
    let conns = exchange::open_and_exchange(&mut pair, l, PEAK);
    // The client closes first and holds the TIME-WAITs, as a client does.
    for &(c, _) in &conns {
        pair.client.close(pair.now, c).unwrap();
    }
    pair.pump();
    for &(_, s) in &conns {
        pair.server.close(pair.now, s).unwrap();
    }
    // Past every FIN, TIME-WAIT and reclaim timer.
    pair.run_until(pair.now + Duration::from_secs(600));
    while pair.server.poll_event().is_some() {}
    while pair.client.poll_event().is_some() {}
    for ep in [&pair.client, &pair.server] {
        assert_eq!((ep.connection_count(), ep.time_wait_count()), (0, 0));
    }

    let server_base = heap_of(fresh_server(&server_config));
    let client_base = heap_of(fresh_client(&client_config));
    let server = heap_of(std::mem::replace(
        &mut pair.server,
        fresh_server(&server_config),
    ));
    let client = heap_of(std::mem::replace(
        &mut pair.client,
        fresh_client(&client_config),
    ));
    eprintln!(
        "after a peak of {PEAK}: server {server} bytes (fresh {server_base}), \
         client {client} bytes (fresh {client_base})"
    );
    assert!(
        server <= server_base + SLACK,
        "the server kept {server} bytes after a peak of {PEAK}, a fresh one holds {server_base}"
    );
    assert!(
        client <= client_base + SLACK,
        "the client kept {client} bytes after a peak of {PEAK}, a fresh one holds {client_base}"
    );
}
