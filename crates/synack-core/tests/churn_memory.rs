//! Memory under connection churn levels off: an endpoint serving one short connection after
//! another, minutes of virtual time long, holds what its live connections and its bounded
//! TIME-WAIT table need, not something per connection it ever served.
//!
//! The heap is measured by a counting global allocator, so this file holds exactly one test:
//! another test running on a second thread would count into it. It drives the endpoint with
//! a small loop of its own rather than `common::Harness`, which keeps every segment sent
//! for its tests to inspect: here that record would be the growth measured.

mod common;
#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::Duration;

use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{testing, ConnectionHandle, Endpoint, Instant, KeepaliveConfig, ListenerHandle};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const PSH: TcpFlags = TcpFlags::PSH;

/// Connections served per virtual second.
const RATE: usize = 300;
/// Virtual seconds of churn.
const SECONDS: usize = 300;
/// When the baseline is taken: past the 60 s that a closing connection's timers (FIN-WAIT-2,
/// TIME-WAIT) and the TIME-WAIT table's entries live, so that everything bounded by them has
/// reached its size.
const BASELINE: usize = 100;

struct Server {
    ep: Endpoint,
    l: ListenerHandle,
    now: Instant,
    buf: Vec<u8>,
}

impl Server {
    /// Everything the server sends now, parsed.
    fn drain(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        testing::drain(&mut self.ep, self.now, &mut self.buf, |packet, _| {
            out.extend(parse_out(packet));
            ControlFlow::Continue(())
        });
        while self.ep.poll_event().is_some() {}
        out
    }

    fn inject(&mut self, from: SocketAddr, to: SocketAddr, seg: Out) {
        let p = seg.packet(from, to);
        testing::deliver(&mut self.ep, self.now, &p);
    }

    /// One HTTP/1.0-like exchange: the client connects and sends a request, the server
    /// answers and closes first (as a server answering `Connection: close` does), the client
    /// acknowledges and closes, and the server holds the TIME-WAIT.
    fn serve_one(&mut self, client: SocketAddr) {
        let server = SocketAddr::new(US, 80);
        self.inject(client, server, Out::new(SYN, 1000, 0).mss(1460));
        let sa = self.drain().pop().expect("a SYN-ACK");
        assert!(sa.is(SYN | ACK), "{sa:?}");
        let ours = sa.seq + 1;
        // The handshake completes before the request comes: an idle ESTABLISHED connection,
        // whose only timer is keepalive's, two hours away.
        self.inject(client, server, Out::new(ACK, 1001, 0).ackn(ours));
        assert!(self.drain().is_empty());
        self.inject(
            client,
            server,
            Out::new(PSH | ACK, 1001, 0).ackn(ours).data(&[b'r'; 100]),
        );
        let c = self.accept();
        let mut request = [0u8; 200];
        assert_eq!(self.ep.recv(self.now, c, &mut request), Ok(100));
        assert_eq!(self.ep.send(c, &[b'a'; 1000]), Ok(1000));
        self.ep.close(self.now, c).unwrap();
        let sent: usize = self.drain().iter().map(Seg::seq_len).sum();
        assert_eq!(sent, 1001, "the response and our FIN");
        // The client acknowledges the response and our FIN before it closes its side, as a
        // kernel client does: the server passes through FIN-WAIT-2, and its timer (60 s) is
        // armed before the client's FIN ends it.
        self.inject(client, server, Out::new(ACK, 1101, 0).ackn(ours + 1001));
        assert!(self.drain().is_empty());
        self.inject(
            client,
            server,
            Out::new(FIN | ACK, 1101, 0).ackn(ours + 1001),
        );
        let last = self.drain();
        assert!(last.iter().all(|s| s.is(ACK)), "{last:?}");
    }

    fn accept(&mut self) -> ConnectionHandle {
        self.ep.accept(self.l).expect("an established connection")
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            match self.ep.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.ep.handle_timeout(self.now);
                    self.drain();
                }
                _ => break,
            }
        }
        self.now = end;
        self.ep.handle_timeout(self.now);
        self.drain();
    }
}

#[test]
fn memory_levels_off_under_connection_churn() {
    let mut cfg = config();
    // A small TIME-WAIT table fills within seconds, so that what follows measures whatever
    // else grows; its own bound is tested in teardown.rs.
    cfg.max_time_wait(1000);
    // Keepalive with Linux's timing: every connection arms a timer two hours away, and timers
    // that far out must not pile up for the connections long gone.
    cfg.keepalive(Some(KeepaliveConfig::default()));
    let mut ep = Endpoint::new(cfg, &[US]);
    let l = ep.listen(SocketAddr::new(US, 80), 128).unwrap();
    let mut s = Server {
        ep,
        l,
        now: Instant::from_secs(1000),
        buf: vec![0; 2048],
    };
    // One client stays connected and idle throughout, as a keep-alive client of a busy
    // server does: the endpoint is never empty while the others come and go.
    let idle = SocketAddr::new(PEER, 1999);
    s.inject(
        idle,
        SocketAddr::new(US, 80),
        Out::new(SYN, 1000, 0).mss(1460),
    );
    let sa = s.drain().pop().expect("a SYN-ACK");
    s.inject(
        idle,
        SocketAddr::new(US, 80),
        Out::new(ACK, 1001, 0).ackn(sa.seq + 1),
    );
    let _idle = s.accept();
    let mut samples = Vec::new();
    let mut served = 0usize;
    for second in 0..SECONDS {
        for _ in 0..RATE {
            // 90,000 connections over 60,000 ports: a port comes back after 200 s, long
            // after its TIME-WAIT ended.
            let port = 2000 + (served % 60_000) as u16;
            s.serve_one(SocketAddr::new(PEER, port));
            served += 1;
        }
        s.advance(Duration::from_secs(1));
        if second % 10 == 9 {
            samples.push((second + 1, counting_alloc::live()));
        }
    }
    assert_eq!(s.ep.stats().connections_established, served as u64 + 1);
    assert_eq!(s.ep.time_wait_count(), 1000);
    assert_eq!(
        s.ep.connection_count(),
        1001,
        "the idle client and TIME-WAIT"
    );
    println!("live heap bytes by virtual second: {samples:?}");
    // From the baseline on the heap may only wobble, never climb with the connections
    // served: 60,000 more of them after it. Each left a two-hour keepalive deadline behind,
    // which the timer heap kept until it came due: 16 bytes a connection, 1.5 MB here. The
    // allowance is for the TIME-WAIT table's hash table, which grows once (about 200 KB) when
    // the tombstones of removed entries first fill it.
    let (_, early) = samples[BASELINE / 10 - 1];
    let (_, late) = *samples.last().unwrap();
    assert!(
        late <= early + 512 * 1024,
        "heap grew from {early} to {late} bytes while {} connections were served: {samples:?}",
        RATE * (SECONDS - BASELINE)
    );
}
