//! What the memory tests do to every connection of a peak (`peak_memory`,
//! `survivor_memory`): a test binary includes it with `#[path = "common/exchange.rs"] mod
//! exchange;`, beside its counting allocator.

use synack_core::testing::Pair;
use synack_core::{ConnectionHandle, ListenerHandle};

/// Opens `count` connections to listener `l` on port 80 at once, and sends a request and a
/// response on each, read at the other end, so that every connection has built its buffers.
/// The pairs of handles, client's first.
pub fn open_and_exchange(
    pair: &mut Pair,
    l: ListenerHandle,
    count: usize,
) -> Vec<(ConnectionHandle, ConnectionHandle)> {
    let conns: Vec<_> = (0..count).map(|_| pair.connect(l, 80)).collect();
    for &(c, s) in &conns {
        pair.client.send(c, b"request").unwrap();
        pair.server.send(s, b"response").unwrap();
    }
    pair.pump();
    let mut buf = [0u8; 16];
    for &(c, s) in &conns {
        assert_eq!(pair.server.recv(pair.now, s, &mut buf), Ok(7));
        assert_eq!(pair.client.recv(pair.now, c, &mut buf), Ok(8));
    }
    conns
}
