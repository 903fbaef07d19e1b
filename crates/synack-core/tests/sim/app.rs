//! The applications on top of the simulated network: each [`Flow`] is one connection whose
//! two [`Side`]s each write a seeded byte stream, read and verify the other's, half-close when
//! done writing and close when both directions ended.

use std::net::SocketAddr;
use std::time::Duration;

use synack_core::{ConnectionHandle, Error, Instant, ListenerHandle, State};

use synack_core::testing::{pattern, Net};

/// Bytes written or read per call.
const CHUNK: usize = 64 * 1024;

/// One end of a flow.
#[derive(Debug)]
pub struct Side {
    /// The node it runs on.
    pub node: usize,
    /// Its connection, once connected or accepted.
    pub conn: Option<ConnectionHandle>,
    /// Bytes it writes in total.
    pub to_send: u64,
    /// Bytes written so far.
    pub sent: u64,
    /// Bytes read (and verified) so far.
    pub received: u64,
    /// The stream it writes.
    pub send_seed: u64,
    /// The stream it expects to read.
    pub recv_seed: u64,
    /// It has shut down its sending side.
    pub shut: bool,
    /// It has read end of stream.
    pub eof: bool,
    /// It has released its handle.
    pub closed: bool,
    /// Write only after reading end of stream (the peer half-closed first).
    pub send_after_eof: bool,
    /// Read at most this many bytes per interval: a slow reader, to close the window.
    pub read_limit: Option<(usize, Duration)>,
    /// Offer `send` whole chunks, whatever fits, as tokio's `write_all` does, rather than
    /// what `send_capacity` says fits: a write that does not fit is what grows the send
    /// buffer (Linux's `SOCK_NOSPACE` before `tcp_sndbuf_expand`).
    pub whole_writes: bool,
    next_read: Instant,
    /// The first error an operation returned.
    pub error: Option<Error>,
    /// When it read end of stream.
    pub eof_at: Option<Instant>,
    /// When it released the handle.
    pub closed_at: Option<Instant>,
}

impl Side {
    fn new(node: usize, to_send: u64, send_seed: u64, recv_seed: u64) -> Side {
        Side {
            node,
            conn: None,
            to_send,
            sent: 0,
            received: 0,
            send_seed,
            recv_seed,
            shut: false,
            eof: false,
            closed: false,
            send_after_eof: false,
            read_limit: None,
            whole_writes: false,
            next_read: Instant::ZERO,
            error: None,
            eof_at: None,
            closed_at: None,
        }
    }

    /// Do everything the connection allows now; returns when it wants to be woken up even if
    /// nothing else happens (a slow reader's next read).
    pub fn drive(&mut self, net: &mut Net) -> Option<Instant> {
        let conn = self.conn?;
        if self.closed {
            return None;
        }
        let now = net.now;
        let ep = &mut net.nodes[self.node];
        match ep.state(conn) {
            Ok(State::SynSent | State::SynReceived) => return None,
            Ok(_) => {}
            Err(e) => {
                self.error.get_or_insert(e);
                return None;
            }
        }
        let mut buf = vec![0u8; CHUNK];

        // Read and verify first: reading end of stream may allow writing (`send_after_eof`).
        let mut wake = None;
        let mut budget = usize::MAX;
        if let Some((per, interval)) = self.read_limit {
            if now < self.next_read {
                budget = 0;
                wake = Some(self.next_read);
            } else {
                budget = per;
                self.next_read = now + interval;
            }
        }
        while !self.eof && self.error.is_none() && budget > 0 {
            let n = budget.min(CHUNK);
            match ep.recv(now, conn, &mut buf[..n]) {
                Ok(0) => {
                    self.eof = true;
                    self.eof_at = Some(now);
                }
                Ok(k) => {
                    let mut want = vec![0u8; k];
                    pattern(self.recv_seed, self.received, &mut want);
                    if let Some(i) = (0..k).find(|&i| buf[i] != want[i]) {
                        panic!(
                            "node {} read a wrong byte at stream offset {}",
                            self.node,
                            self.received + i as u64
                        );
                    }
                    self.received += k as u64;
                    budget -= k;
                }
                Err(Error::WouldBlock) => break,
                Err(e) => self.error = Some(e),
            }
        }
        if self.read_limit.is_some() && !self.eof && wake.is_none() {
            wake = Some(self.next_read);
        }

        // Write.
        let may_send = !self.send_after_eof || self.eof;
        while may_send && self.sent < self.to_send && self.error.is_none() {
            let cap = match self.whole_writes {
                true => CHUNK,
                false => ep.send_capacity(conn).unwrap_or(0),
            };
            let n = cap.min(CHUNK).min((self.to_send - self.sent) as usize);
            if n == 0 {
                break;
            }
            pattern(self.send_seed, self.sent, &mut buf[..n]);
            match ep.send(conn, &buf[..n]) {
                Ok(k) => self.sent += k as u64,
                Err(Error::WouldBlock) => break,
                Err(e) => {
                    self.error = Some(e);
                }
            }
        }
        if may_send && self.sent == self.to_send && !self.shut && self.error.is_none() {
            match ep.shutdown(conn) {
                Ok(()) => self.shut = true,
                Err(e) => self.error = Some(e),
            }
        }

        // Close once both directions are done (or the connection failed).
        if (self.eof && self.shut) || self.error.is_some() {
            let _ = ep.close(now, conn);
            self.closed = true;
            self.closed_at = Some(now);
            return None;
        }
        wake
    }
}

/// One connection from `a` (the client) to `b` (the server).
#[derive(Debug)]
pub struct Flow {
    /// The connecting side.
    pub a: Side,
    /// The accepting side (or the other connecting side, in a simultaneous open).
    pub b: Side,
    /// The client's local address, to match the server's accepted connection.
    pub client_addr: Option<SocketAddr>,
}

impl Flow {
    /// A flow where `a` on node `a_node` sends `a_bytes` and `b` on `b_node` sends `b_bytes`.
    pub fn new(a_node: usize, b_node: usize, a_bytes: u64, b_bytes: u64, seed: u64) -> Flow {
        let (sa, sb) = (seed.wrapping_mul(2) + 1, seed.wrapping_mul(2) + 2);
        Flow {
            a: Side::new(a_node, a_bytes, sa, sb),
            b: Side::new(b_node, b_bytes, sb, sa),
            client_addr: None,
        }
    }

    /// Actively open the client side towards `server`.
    pub fn connect(&mut self, net: &mut Net, server: SocketAddr) {
        let now = net.now;
        let ep = &mut net.nodes[self.a.node];
        let h = ep.connect(now, server).expect("connect");
        self.client_addr = Some(ep.local_addr(h).expect("local addr"));
        self.a.conn = Some(h);
    }

    /// Both sides closed.
    pub fn done(&self) -> bool {
        self.a.closed && self.b.closed
    }

    /// The flow ended cleanly with every byte delivered in both directions.
    pub fn assert_complete(&self) {
        for (me, peer) in [(&self.a, &self.b), (&self.b, &self.a)] {
            assert_eq!(me.error, None, "node {} failed: {self:?}", me.node);
            assert!(
                me.eof && me.shut,
                "node {} did not finish: {self:?}",
                me.node
            );
            assert_eq!(me.sent, me.to_send);
            assert_eq!(me.received, peer.to_send, "node {} short read", me.node);
        }
    }
}

/// Move accepted connections from `listener` on `node` to the flow whose client they are.
fn accept_all(net: &mut Net, flows: &mut [Flow], node: usize, listener: ListenerHandle) {
    while let Ok(h) = net.nodes[node].accept(listener) {
        let peer = net.nodes[node].peer_addr(h).expect("accepted handle");
        let flow = flows
            .iter_mut()
            .find(|f| f.b.node == node && f.b.conn.is_none() && f.client_addr == Some(peer))
            .unwrap_or_else(|| panic!("accepted {peer} that no flow opened"));
        flow.b.conn = Some(h);
    }
}

/// Run the flows until every side closed, then let TIME-WAIT and every other timer run out.
/// Returns the virtual time at which the last side closed. Panics (failing the test) on a
/// stall or when `limit` of virtual time passes first.
pub fn run(
    net: &mut Net,
    flows: &mut [Flow],
    listeners: &[(usize, ListenerHandle)],
    limit: Duration,
) -> Instant {
    let start = net.now;
    let end = start + limit;
    for _ in 0..20_000_000u64 {
        for &(node, l) in listeners {
            accept_all(net, flows, node, l);
        }
        let mut wake: Option<Instant> = None;
        for f in flows.iter_mut() {
            for side in [&mut f.a, &mut f.b] {
                if let Some(t) = side.drive(net) {
                    wake = Some(wake.map_or(t, |w| w.min(t)));
                }
            }
        }
        if flows.iter().all(Flow::done) {
            return net.now;
        }
        assert!(
            net.now <= end,
            "flows not done after {limit:?} of virtual time: {:#?}\n{:?}",
            progress(flows),
            net.stats
        );
        assert!(
            net.step(wake),
            "stalled at {:?}: nothing pending: {:#?}\n{:?}",
            net.now,
            progress(flows),
            net.stats
        );
    }
    panic!("iteration bound reached: {:#?}", progress(flows));
}

/// A short summary of each unfinished flow.
fn progress(flows: &[Flow]) -> Vec<String> {
    flows
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.done())
        .take(8)
        .map(|(i, f)| {
            format!(
                "flow {i}: a sent {}/{} recv {} eof {} shut {} err {:?} | b sent {}/{} recv {} eof {} shut {} err {:?}",
                f.a.sent, f.a.to_send, f.a.received, f.a.eof, f.a.shut, f.a.error,
                f.b.sent, f.b.to_send, f.b.received, f.b.eof, f.b.shut, f.b.error
            )
        })
        .collect()
}
