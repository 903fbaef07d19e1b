//! Receiving from shared memory (`Endpoint::handle_packet_shared`): the in-order payload of
//! a large segment stays in the frame it arrived in until the application reads it, charged
//! the whole frame; a payload that fills less than half its frame, one that arrives out of
//! order, and one whose frame the memory cap has no room for are copied as before. Every
//! byte arrives intact either way. `Endpoint::recv_bytes` hands a kept payload over as it
//! is, without a copy.
//!
//! Virtual time, one `Pair`: every run is the same.

use std::net::SocketAddr;

use synack_core::testing::Pair;
use synack_core::{Bytes, Config, ConnectionHandle, Error, RecvMeta};

/// Bytes the client sends: nine full segments and a short one at the 1500-byte MTU, all in
/// its initial window.
const LEN: usize = 14_000;

fn stream() -> Vec<u8> {
    (0..LEN).map(|i| (i * 7 % 251) as u8).collect()
}

/// A connection to a server with `config`, `LEN` bytes written on it, and the
/// packets that carry them, each at the start of a frame of its own, `slack` bytes longer
/// than the packet.
fn written(config: Config, slack: usize) -> (Pair, ConnectionHandle, Vec<(Bytes, usize)>) {
    let mut client = Config::default();
    client.seed(Some([1; 32]));
    let mut server = config;
    server.seed(Some([2; 32]));
    let mut pair = Pair::with_configs(client, server);
    let l = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, 80), 8)
        .unwrap();
    let (c, s) = pair.connect(l, 80);
    assert_eq!(pair.client.send(c, &stream()), Ok(LEN));
    let mut buf = vec![0; 65536];
    let mut frames = Vec::new();
    while let Some(t) = pair.client.poll_transmit(pair.now, &mut buf) {
        let mut frame = vec![0; t.len + slack];
        frame[..t.len].copy_from_slice(&buf[..t.len]);
        frames.push((Bytes::from(frame), t.len));
    }
    assert_eq!(frames.len(), 10, "one packet a segment");
    (pair, s, frames)
}

/// Hands a frame to the server.
fn hand(pair: &mut Pair, (frame, len): &(Bytes, usize)) {
    pair.server
        .handle_packet_shared(pair.now, frame, RecvMeta::new(*len));
}

/// Whether nothing but the test holds the frame.
fn let_go((frame, _): &(Bytes, usize)) -> bool {
    frame.is_unique()
}

/// Reads everything the server holds on `s`.
fn read_all(pair: &mut Pair, s: ConnectionHandle) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0; 4096];
    while let Ok(n @ 1..) = pair.server.recv(pair.now, s, &mut buf) {
        out.extend_from_slice(&buf[..n]);
    }
    out
}

/// Reads everything the server holds on `s`, and checks it is the stream, whole.
fn reads_the_stream(pair: &mut Pair, s: ConnectionHandle) {
    let read = read_all(pair, s);
    assert!(
        read == stream(),
        "{} bytes read, not the stream",
        read.len()
    );
}

#[test]
fn a_payload_in_order_stays_in_its_frame_until_read() {
    let (mut pair, s, frames) = written(Config::default(), 0);
    for f in &frames {
        hand(&mut pair, f);
    }
    // Every frame is held by the server (these are data packets), and charged whole.
    assert!(!frames.iter().any(let_go), "kept, not copied");
    let framed: usize = frames.iter().map(|(f, _)| f.len()).sum();
    let usage = pair.server.memory_usage();
    assert!(
        usage.allocated >= framed,
        "{} allocated for {framed} bytes of frames",
        usage.allocated
    );
    reads_the_stream(&mut pair, s);
    assert!(frames.iter().all(let_go), "read: every frame let go");
}

#[test]
fn a_payload_that_fills_less_than_half_its_frame_is_copied() {
    // A full segment's 1448 bytes of payload, in a packet of 1500, in a frame of 3000.
    let (mut pair, s, frames) = written(Config::default(), 1500);
    for f in &frames {
        hand(&mut pair, f);
    }
    assert!(frames.iter().all(let_go), "copied out at once");
    reads_the_stream(&mut pair, s);
}

#[test]
fn payloads_behind_a_hole_are_copied_and_reassemble() {
    let (mut pair, s, frames) = written(Config::default(), 0);
    // All but the first: out of order, held in the ring.
    for f in &frames[1..] {
        hand(&mut pair, f);
    }
    assert!(frames[1..].iter().all(let_go));
    // The first fills the hole: with bytes held behind it, it is copied too.
    hand(&mut pair, &frames[0]);
    assert!(let_go(&frames[0]));
    reads_the_stream(&mut pair, s);
}

#[test]
fn a_frame_the_memory_cap_has_no_room_for_is_not_kept() {
    // Frames of 2,800 bytes, each kept one charged that; the cap has room for a few, and
    // nothing is read: the frames past it are copied, or dropped at the cap as without
    // shared memory (the peer would send them again), and the cap holds.
    const CAP: usize = 16 * 1024;
    let mut config = Config::default();
    config.max_memory(CAP);
    let (mut pair, s, frames) = written(config, 1300);
    for f in &frames {
        hand(&mut pair, f);
        assert!(pair.server.memory_usage().allocated <= CAP);
    }
    let kept = frames.iter().filter(|f| !let_go(f)).count();
    assert!(
        kept > 0 && kept < frames.len(),
        "{kept} of {} kept",
        frames.len()
    );
    let read = read_all(&mut pair, s);
    assert!(read.len() >= kept * 1448, "{} bytes read", read.len());
    assert!(read[..] == stream()[..read.len()], "a prefix, intact");
    assert!(frames.iter().all(let_go));
}

#[test]
fn recv_bytes_hands_a_kept_payload_over_without_a_copy() {
    let (mut pair, s, frames) = written(Config::default(), 0);
    for f in &frames {
        hand(&mut pair, f);
    }
    let held = pair.server.memory_usage().allocated;
    let mut read = Vec::new();
    let mut handed = Vec::new();
    for (frame, len) in &frames {
        // One payload a call, wherever `max` would stop: the segment's own bytes, in its
        // frame's memory, at the end of the packet.
        let got = pair.server.recv_bytes(pair.now, s, 1 << 20).unwrap();
        let at = got.as_ptr() as usize - frame.as_ptr() as usize;
        assert_eq!(at + got.len(), *len, "the payload, where it arrived");
        read.extend_from_slice(&got);
        handed.push(got);
    }
    assert!(
        read == stream(),
        "{} bytes read, not the stream",
        read.len()
    );
    // Handed over: no longer the endpoint's to count, though the application holds them.
    assert!(pair.server.memory_usage().allocated < held);
    assert!(!frames.iter().any(let_go));
    drop(handed);
    assert!(frames.iter().all(let_go));
    assert_eq!(
        pair.server.recv_bytes(pair.now, s, 100),
        Err(Error::WouldBlock)
    );
}

#[test]
fn recv_bytes_copies_what_was_copied_in() {
    let (mut pair, s, frames) = written(Config::default(), 1500);
    for f in &frames {
        hand(&mut pair, f);
    }
    // Copied bytes come in one handle up to `max`, across segments.
    let first = pair.server.recv_bytes(pair.now, s, 5000).unwrap();
    assert_eq!(first.len(), 5000);
    let rest = pair.server.recv_bytes(pair.now, s, 1 << 20).unwrap();
    assert_eq!(first.len() + rest.len(), LEN);
    assert!(first[..] == stream()[..5000] && rest[..] == stream()[5000..]);
}
