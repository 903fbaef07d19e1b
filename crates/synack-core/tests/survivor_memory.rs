//! Memory after a peak follows the connections that outlive it: an endpoint that once held
//! many connections, of which one in [`EVERY`] is still open, holds about what an endpoint
//! that only ever held those survivors does. A long-lived connection among many short ones
//! (a server's idle keep-alive client after a burst of requests) must not keep the memory
//! of the short ones that shared its allocation: Linux frees each socket on its own.
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
/// One connection in this many outlives the peak: spread over the whole peak, as
/// long-lived connections are among short ones.
const EVERY: usize = 64;
/// What an endpoint may keep beyond one that only ever held the survivors: tables sized
/// for a few hundred connections (each keeps room for up to four times what it holds after
/// a peak), far below the peak's ~30 MB.
const SLACK: usize = 256 * 1024;
/// And for each survivor: the page of connection slots it may keep alone (64 slots of a
/// generation and a pointer each), where its connection itself is a few kilobytes.
const PER_SURVIVOR: usize = 1024;

/// The heap `ep` holds, measured as what dropping it frees.
fn heap_of(ep: Endpoint) -> usize {
    let before = counting_alloc::live();
    drop(ep);
    before - counting_alloc::live()
}

fn configs() -> (Config, Config) {
    let mut client = Config::default();
    client.seed(Some([1; 32]));
    let mut server = Config::default();
    server.seed(Some([2; 32]));
    (client, server)
}

/// A pair that opens `count` connections at once, with a request and a response on each,
/// then closes (client first) all but every `keep`-th, and runs past every FIN, TIME-WAIT
/// and reclaim timer. Its survivors are idle and established.
fn after_peak(count: usize, keep: usize) -> Pair {
    let (client, server) = configs();
    let mut pair = Pair::with_configs(client, server);
    let l = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 4096)
        .unwrap();
    let conns = exchange::open_and_exchange(&mut pair, l, count);
    let closing = || conns.iter().enumerate().filter(|(i, _)| i % keep != 0);
    for (_, &(c, _)) in closing() {
        pair.client.close(pair.now, c).unwrap();
    }
    pair.pump();
    for (_, &(_, s)) in closing() {
        pair.server.close(pair.now, s).unwrap();
    }
    pair.run_until(pair.now + Duration::from_secs(600));
    while pair.server.poll_event().is_some() {}
    while pair.client.poll_event().is_some() {}
    let survivors = count.div_ceil(keep);
    for ep in [&pair.client, &pair.server] {
        assert_eq!(
            (ep.connection_count(), ep.time_wait_count()),
            (survivors, 0)
        );
    }
    pair
}

#[test]
fn memory_after_a_peak_follows_the_connections_that_outlive_it() {
    let survivors = PEAK.div_ceil(EVERY);
    let only = after_peak(survivors, 1);
    let (client_base, server_base) = (heap_of(only.client), heap_of(only.server));
    let peak = after_peak(PEAK, EVERY);
    let (client, server) = (heap_of(peak.client), heap_of(peak.server));
    eprintln!(
        "{survivors} survivors of a peak of {PEAK}: server {server} bytes (without the \
         peak {server_base}), client {client} bytes (without the peak {client_base})"
    );
    let slack = SLACK + survivors * PER_SURVIVOR;
    assert!(
        server <= server_base + slack,
        "the server kept {server} bytes for {survivors} survivors of a peak of {PEAK}; \
         without the peak it holds {server_base}"
    );
    assert!(
        client <= client_base + slack,
        "the client kept {client} bytes for {survivors} survivors of a peak of {PEAK}; \
         without the peak it holds {client_base}"
    );
}
