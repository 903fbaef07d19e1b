//! Core-to-core benchmarks: two sans-IO endpoints joined in memory by a zero-latency,
//! loss-free wire, on a virtual clock. They measure the cost of the TCP machinery alone
//! (parse, state machine, emit, checksums, buffer copies), with no device or runtime.
//!
//! Two ways of running the pair:
//!
//! - Both ends on one core (`bulk`, `segments`, `handshakes`): one thread runs the client and
//!   the server and the time is the pair's. A figure per core for *both* ends together.
//! - One side per core (`per_side`): the same work, but the wire is two queues of at most
//!   64 packets, like a device queue, and the ends take turns: each drains what reached it,
//!   runs its application, and fills the queue the other way. The time each end spends in
//!   its own turns is counted apart, and criterion is given the busier end's time: what one
//!   core running that end would need, as with a client and a server on their own cores.
//!
//! - `bulk`: payload throughput of one connection (Gbit/s of payload), the application
//!   writing byte slices (`send`, copied) or `Bytes` it holds (`send_bytes`, not copied);
//!   one 1448-byte segment per packet, or (`offload`) with segmentation offload: up to 64 KiB
//!   of whole segments per packet, taken whole by the receiver (TSO/GSO and GRO, as Linux's
//!   TCP runs over veth and loopback);
//! - `segments`: the same transfer counted in TCP segments moved (data and ACKs);
//! - `handshakes`: full connect + accept + close cycles, TIME-WAIT expiry included; and the
//!   three-way handshake alone (connect to accept), teardown untimed.
//!
//! Run: `cargo bench --bench core -- --quick` (see BENCHMARKS.md).

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synack_core::testing::{self, Pair};
use synack_core::{Bytes, Config, ConnectionHandle, Endpoint, Instant, ListenerHandle};

const PORT: u16 = 5001;

/// The pair of the kit (`synack_core::testing::Pair`: client and server on a perfect wire,
/// seeded, on a virtual clock) listening on `PORT`. Its ends send super-segments of up to
/// `gso_max_size` bytes, carried whole (segmentation offload on a wire that, like Linux's
/// veth or loopback, hands them to a GRO receiver); 0 for one segment per packet.
fn pair(gso_max_size: usize) -> (Pair, ListenerHandle) {
    let mut config = Config::default();
    config.gso_max_size(gso_max_size);
    let mut pair = Pair::new(config);
    let listener = pair
        .server
        .listen(SocketAddr::new(Pair::SERVER, PORT), 1024)
        .expect("listen");
    (pair, listener)
}

/// Client sends `total` bytes to the server, which reads them all.
fn transfer(p: &mut Pair, c: ConnectionHandle, s: ConnectionHandle, total: usize, chunk: &Chunk) {
    let mut sent = 0;
    let mut received = 0;
    let mut rbuf = vec![0u8; 64 * 1024];
    for _ in 0..10_000_000 {
        sent += chunk.write_until_full(&mut p.client, c, total - sent);
        let moved = p.pump();
        received += read_available(&mut p.server, p.now, s, &mut rbuf);
        if received == total {
            // Let the final ACKs through so the next round starts clean.
            p.pump();
            return;
        }
        if !moved && !p.server.recv_ready(s).unwrap_or(false) {
            assert!(p.advance(), "transfer stalled at {received}/{total}");
        }
    }
    panic!("transfer did not finish");
}

/// Packets one end hands the other per turn: the runtime's driver also moves at most 64
/// packets a round.
const TURN: usize = 64;

/// A pair of endpoints with a queue each way and a clock per side (see the module docs).
struct Sides {
    pair: Pair,
    listener: ListenerHandle,
    /// Packets in flight to the server and to the client: buffers and their lengths.
    to_server: Vec<(Vec<u8>, usize)>,
    to_client: Vec<(Vec<u8>, usize)>,
    /// Spare packet buffers, so that a turn allocates nothing.
    spare: Vec<Vec<u8>>,
    /// Real time spent in each end's turns.
    client_time: Duration,
    server_time: Duration,
}

impl Sides {
    fn new() -> Sides {
        let (pair, listener) = pair(0);
        Sides {
            pair,
            listener,
            to_server: Vec::with_capacity(TURN),
            to_client: Vec::with_capacity(TURN),
            spare: (0..2 * TURN).map(|_| vec![0u8; 2048]).collect(),
            client_time: Duration::ZERO,
            server_time: Duration::ZERO,
        }
    }

    /// The busier end's time.
    fn busier(&self) -> Duration {
        self.client_time.max(self.server_time)
    }

    fn reset_clocks(&mut self) {
        self.client_time = Duration::ZERO;
        self.server_time = Duration::ZERO;
    }

    /// One end's turn: take in what reached it, let its application act, then queue up to
    /// `TURN` packets for the other end. Returns whether any packet moved either way.
    fn turn<A: FnMut(&mut Endpoint, Instant)>(&mut self, client: bool, mut app: A) -> bool {
        let started = std::time::Instant::now();
        let now = self.pair.now;
        let (ep, inbox, outbox) = if client {
            (
                &mut self.pair.client,
                &mut self.to_client,
                &mut self.to_server,
            )
        } else {
            (
                &mut self.pair.server,
                &mut self.to_server,
                &mut self.to_client,
            )
        };
        let received = inbox.len();
        for (buf, len) in inbox.drain(..) {
            testing::deliver(ep, now, &buf[..len]);
            self.spare.push(buf);
        }
        app(ep, now);
        let mut sent = 0;
        while outbox.len() < TURN {
            let mut buf = self.spare.pop().expect("a spare buffer");
            match ep.poll_transmit(now, &mut buf) {
                Some(t) => {
                    outbox.push((buf, t.len));
                    sent += 1;
                }
                None => {
                    self.spare.push(buf);
                    break;
                }
            }
        }
        let spent = started.elapsed();
        if client {
            self.client_time += spent;
        } else {
            self.server_time += spent;
        }
        self.pair.packets += sent as u64;
        received + sent > 0
    }

    /// Client sends `total` bytes to the server, which reads them as they arrive.
    fn transfer(&mut self, c: ConnectionHandle, s: ConnectionHandle, total: usize, chunk: &Chunk) {
        let mut sent = 0;
        let mut received = 0;
        let mut rbuf = vec![0u8; 64 * 1024];
        for _ in 0..10_000_000 {
            let moved_c = self.turn(true, |ep, _now| {
                sent += chunk.write_until_full(ep, c, total - sent);
            });
            let moved_s = self.turn(false, |ep, now| {
                received += read_available(ep, now, s, &mut rbuf);
            });
            if received == total && self.to_client.is_empty() && self.to_server.is_empty() {
                // The final ACK reaches the client so that the next round starts clean.
                return;
            }
            if !moved_c && !moved_s {
                assert!(
                    self.pair.advance(),
                    "transfer stalled at {received}/{total}"
                );
            }
        }
        panic!("transfer did not finish");
    }

    /// `n` three-way handshakes at once: the client opens `n` connections in its turn, the
    /// server answers the SYNs in its turn, and so on until all are accepted. Returns both
    /// ends' handles.
    fn handshakes(&mut self, n: usize) -> Vec<(ConnectionHandle, ConnectionHandle)> {
        let server = SocketAddr::new(Pair::SERVER, PORT);
        let listener = self.listener;
        let mut clients = Vec::with_capacity(n);
        let mut accepted = Vec::with_capacity(n);
        self.turn(true, |ep, now| {
            for _ in 0..n {
                clients.push(ep.connect(now, server).expect("connect"));
            }
        });
        for _ in 0..100 {
            let moved_s = self.turn(false, |ep, _| {
                while let Ok(h) = ep.accept(listener) {
                    accepted.push(h);
                }
            });
            if accepted.len() == n && self.to_client.is_empty() && self.to_server.is_empty() {
                return clients.into_iter().zip(accepted).collect();
            }
            let moved_c = self.turn(true, |_, _| {});
            if !moved_c && !moved_s {
                assert!(self.pair.advance(), "handshakes stalled");
            }
        }
        panic!("handshakes did not complete");
    }
}

/// Bytes per measured transfer.
const BULK: usize = 8 * 1024 * 1024;

/// What the sending application writes, 64 KiB at a time: a byte slice, copied into the
/// send buffer (`send`), or `Bytes` it already holds, queued without a copy (`send_bytes`).
enum Chunk {
    Copied(Vec<u8>),
    Shared(Bytes),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Copied(v) => v.len(),
            Chunk::Shared(b) => b.len(),
        }
    }

    /// The sending application: writes chunks until `left` bytes are written or the send
    /// buffer is full, and returns how many it wrote.
    fn write_until_full(&self, ep: &mut Endpoint, c: ConnectionHandle, left: usize) -> usize {
        let mut written = 0;
        while written < left {
            let n = self.len().min(left - written);
            let taken = match self {
                Chunk::Copied(v) => ep.send(c, &v[..n]),
                Chunk::Shared(b) => ep.send_bytes(c, b.slice(..n)),
            };
            match taken {
                Ok(k) => written += k,
                Err(_) => break,
            }
        }
        written
    }
}

/// The receiving application: reads everything there is to read now, and returns how much.
fn read_available(ep: &mut Endpoint, now: Instant, s: ConnectionHandle, buf: &mut [u8]) -> usize {
    let mut read = 0;
    while let Ok(n) = ep.recv(now, s, buf) {
        if n == 0 {
            break;
        }
        read += n;
    }
    read
}

fn bulk(c: &mut Criterion) {
    let chunk = Chunk::Copied(vec![0x5au8; 64 * 1024]);
    let mut g = c.benchmark_group("bulk");
    g.throughput(Throughput::Bytes(BULK as u64));
    g.bench_function("8MiB_one_connection", |b| {
        let (mut pair, l) = pair(0);
        let (cl, sv) = pair.connect(l, PORT);
        b.iter(|| transfer(&mut pair, cl, sv, black_box(BULK), &chunk));
    });
    // The same, the application handing over `Bytes` it holds: one copy fewer per byte.
    let shared = Chunk::Shared(Bytes::from(vec![0x5au8; 64 * 1024]));
    g.bench_function("8MiB_one_connection_send_bytes", |b| {
        let (mut pair, l) = pair(0);
        let (cl, sv) = pair.connect(l, PORT);
        b.iter(|| transfer(&mut pair, cl, sv, black_box(BULK), &shared));
    });
    // Segmentation offload: whole segments under one header, up to 64 KiB a packet, taken
    // whole by the receiver, as Linux's TCP sends over veth and loopback.
    for (name, chunk) in [("offload", &chunk), ("offload_send_bytes", &shared)] {
        g.bench_function(format!("8MiB_one_connection_{name}"), |b| {
            let (mut pair, l) = pair(65535);
            let (cl, sv) = pair.connect(l, PORT);
            b.iter(|| transfer(&mut pair, cl, sv, black_box(BULK), chunk));
        });
    }
    g.finish();

    // Segments: measure one transfer's packet count first (the run is deterministic), then
    // report the same work per segment.
    let (mut probe, l) = pair(0);
    let (cl, sv) = probe.connect(l, PORT);
    transfer(&mut probe, cl, sv, BULK, &chunk); // warm: past slow start
    let before = probe.packets;
    transfer(&mut probe, cl, sv, BULK, &chunk);
    let per_transfer = probe.packets - before;
    let mut g = c.benchmark_group("segments");
    g.throughput(Throughput::Elements(per_transfer));
    g.bench_function(format!("8MiB_{per_transfer}_segments"), |b| {
        let (mut pair, l) = pair(0);
        let (cl, sv) = pair.connect(l, PORT);
        transfer(&mut pair, cl, sv, BULK, &chunk);
        b.iter(|| transfer(&mut pair, cl, sv, black_box(BULK), &chunk));
    });
    g.finish();
}

fn handshakes(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshakes");
    g.throughput(Throughput::Elements(1));
    g.bench_function("connect_accept_close", |b| {
        let (mut pair, l) = pair(0);
        b.iter(|| {
            let (cl, sv) = pair.connect(l, PORT);
            pair.close(cl, sv);
        });
    });
    // The three-way handshake alone: SYN, SYN-ACK, ACK and accept, timed; the connections are
    // then reset outside the timed part so that state does not pile up.
    g.bench_function("three_way_only", |b| {
        let (mut pair, l) = pair(0);
        b.iter_custom(|iters| {
            // Handshakes are timed in groups of up to 64 (one clock read per group), then the
            // group is reset untimed.
            let mut timed = Duration::ZERO;
            let mut left = iters;
            let mut open = Vec::with_capacity(64);
            while left > 0 {
                let n = left.min(64);
                let start = std::time::Instant::now();
                for _ in 0..n {
                    open.push(pair.connect(l, PORT));
                }
                timed += start.elapsed();
                for (cl, sv) in open.drain(..) {
                    pair.client.abort(cl).expect("abort client");
                    pair.pump();
                    let _ = pair.server.abort(sv);
                    pair.pump();
                }
                left -= n;
            }
            timed
        });
    });
    g.finish();
}

/// Which time a `per_side` benchmark reports.
type Clock = fn(&Sides) -> Duration;

/// The bulk transfer and the three-way handshake over the queued wire. `busier_end` gives
/// criterion the busier end's time (one side per core, see the module docs); `both_ends` the
/// sum of both ends' times, the same work on one core, for comparison in the same run.
fn per_side(c: &mut Criterion) {
    let chunk = Chunk::Copied(vec![0x5au8; 64 * 1024]);
    let clocks: [(&str, Clock); 2] = [
        ("busier_end", Sides::busier),
        ("both_ends", |s| s.client_time + s.server_time),
    ];
    let mut g = c.benchmark_group("per_side");
    g.throughput(Throughput::Bytes(BULK as u64));
    for (name, clock) in clocks {
        g.bench_function(format!("bulk_8MiB_{name}"), |b| {
            let mut sides = Sides::new();
            let (cl, sv) = sides.pair.connect(sides.listener, PORT);
            sides.transfer(cl, sv, BULK, &chunk); // past slow start
            b.iter_custom(|iters| {
                sides.reset_clocks();
                for _ in 0..iters {
                    sides.transfer(cl, sv, black_box(BULK), &chunk);
                }
                clock(&sides)
            });
        });
    }
    const GROUP: usize = 64;
    g.throughput(Throughput::Elements(GROUP as u64));
    for (name, clock) in clocks {
        g.bench_function(format!("three_way_64_{name}"), |b| {
            let mut sides = Sides::new();
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    sides.reset_clocks();
                    let open = sides.handshakes(GROUP);
                    timed += clock(&sides);
                    // Untimed: reset the group so that state does not pile up.
                    let pair = &mut sides.pair;
                    for (cl, sv) in open {
                        pair.client.abort(cl).expect("abort client");
                        pair.pump();
                        let _ = pair.server.abort(sv);
                        pair.pump();
                    }
                }
                timed
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bulk, handshakes, per_side
}
criterion_main!(benches);
