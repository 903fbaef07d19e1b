//! TCP: the loop that takes each held SYN, the bounds on flows and on upstream connects in
//! progress, one flow's life (upstream first, then the answer to the client's SYN), and the
//! splice that carries bytes, half-closes and resets between the two connections.

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synack::tokio::intercept::{IncomingSyn, Interceptor};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use crate::buffers::pump;
use crate::destination::{self, NotRelayed};
use crate::stats::Stats;
use crate::upstream::Fail;
use crate::Relay;

/// Holds one of [`Relay::flows`] until dropped.
pub(crate) struct FlowSlot(Arc<AtomicUsize>);

impl FlowSlot {
    fn take(flows: &Arc<AtomicUsize>, max: usize) -> Option<FlowSlot> {
        if flows.fetch_add(1, Ordering::Relaxed) >= max {
            flows.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(FlowSlot(Arc::clone(flows)))
    }
}

impl Drop for FlowSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The upstream connects in progress, each with the sender whose drop cancels it, and the
/// flows whose connect was cancelled lately.
///
/// At --max-pending-connects one connect makes room for a new SYN: one drawn at random, and
/// if that one is a client's retry of a cancelled flow (the same source and destination, as
/// a kernel's SYN retransmission is), or a SYN the stack marked a retransmission (its first
/// went unanswered in the stack's table, behind a flood the relay could not keep up with),
/// one drawn again, whatever it is. Cancelling the oldest
/// would starve every upstream that takes longer than the pool over the flood's rate (256
/// connects at 300 SYNs a second: 0.85 s) to connect, retry after retry; at random a connect
/// that needs T seconds survives a flood of R SYNs a second with a chance of about
/// exp(-R T / pool), and a retry among first SYNs is cancelled about a pool's times less
/// often than they are. A flood that retries its own SYNs gains nothing by it: a first SYN
/// among retries is cancelled at most twice as often as a retry, never with certainty.
#[derive(Default)]
pub(crate) struct Connects {
    next_id: u64,
    queue: Vec<Connect>,
    /// Flows whose connect was cancelled, oldest first (at most [`CANCELLED_KEPT`]).
    cancelled: VecDeque<(SocketAddr, SocketAddr)>,
    cancelled_set: HashSet<(SocketAddr, SocketAddr)>,
    /// The state of the generator that picks what to cancel (xorshift; seeded on first use).
    rng: u64,
}

/// A connect in progress.
struct Connect {
    id: u64,
    flow: (SocketAddr, SocketAddr),
    /// A retry of a flow whose connect was cancelled: cancelled last.
    retry: bool,
    /// Dropped to cancel the connect.
    _cancel: oneshot::Sender<()>,
}

/// How many cancelled flows are remembered, to know a client's retry of one: through a
/// client's first retransmissions at a flood of a few thousand SYNs a second, in about 2 MB.
const CANCELLED_KEPT: usize = 16_384;

impl Connects {
    /// A number from 0 to `n` - 1 (xorshift64*, seeded from the standard library's random
    /// hash keys: what to cancel must not be predictable to whoever floods).
    fn pick(&mut self, n: usize) -> usize {
        if self.rng == 0 {
            use std::hash::BuildHasher;
            self.rng = std::collections::hash_map::RandomState::new().hash_one(0u64) | 1;
        }
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }

    /// Takes a connect out to cancel it (see [`Connects`]). Returns its flow.
    fn cancel_one(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        let n = self.queue.len();
        if n == 0 {
            return None;
        }
        let mut i = self.pick(n);
        if self.queue[i].retry {
            i = self.pick(n);
        }
        let gone = self.queue.swap_remove(i);
        self.note_cancelled(gone.flow);
        Some(gone.flow)
    }

    /// Remembers that `flow`'s connect was cancelled.
    fn note_cancelled(&mut self, flow: (SocketAddr, SocketAddr)) {
        if self.cancelled_set.insert(flow) {
            self.cancelled.push_back(flow);
            if self.cancelled.len() > CANCELLED_KEPT {
                if let Some(old) = self.cancelled.pop_front() {
                    self.cancelled_set.remove(&old);
                }
            }
        }
    }
}

impl Relay {
    fn connects(&self) -> std::sync::MutexGuard<'_, Connects> {
        // Nothing panics while holding it; a poisoned lock still holds a usable queue.
        self.connects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new upstream connect for the flow from `client` to `dst`. Returns its id
    /// and the receiver that fires on cancellation.
    fn start_connect(
        &self,
        client: SocketAddr,
        dst: SocketAddr,
        retransmission: bool,
    ) -> (u64, oneshot::Receiver<()>) {
        let (cancel, cancelled) = oneshot::channel();
        let mut connects = self.connects();
        let id = connects.next_id;
        connects.next_id += 1;
        let flow = (client, dst);
        // A retry of a flow cancelled here, or a SYN the stack knows for a retransmission (its
        // first went unanswered there: dropped at a full table, or expired before we took it).
        let retry = retransmission || connects.cancelled_set.contains(&flow);
        connects.queue.push(Connect {
            id,
            flow,
            retry,
            _cancel: cancel,
        });
        (id, cancelled)
    }

    /// Cancels a connect in progress to make room (see [`Connects`]): dropping its sender
    /// wakes that flow's task, which drops its SYN and its socket, and counts the flow as
    /// dropped at a limit. (A task whose connect had finished meanwhile takes its result
    /// instead, and counts that: each flow is counted once.)
    fn cancel_a_connect(&self) {
        self.connects().cancel_one();
    }

    /// Forgets connect `id` once it has finished (at most --max-pending-connects entries to
    /// look through).
    fn end_connect(&self, id: u64) {
        let mut connects = self.connects();
        if let Some(i) = connects.queue.iter().position(|c| c.id == id) {
            // A cancelled flow stays remembered until it ages out of `cancelled`, whose
            // entries the set mirrors one for one.
            connects.queue.swap_remove(i);
        }
    }
}

/// Takes each held SYN and starts its flow (dropping it at --max-flows; the client
/// retransmits). At --max-pending-connects a connect makes room (see [`Connects`]), so a
/// flood of SYNs to random destinations costs no more than that many upstream sockets.
/// Returns only when the stack stops.
pub(crate) async fn tcp_loop(interceptor: Interceptor, relay: Arc<Relay>) -> io::Result<()> {
    loop {
        let syn = interceptor.next().await?;
        // Loopback and other martian destinations (the relay host's own services), and the
        // TUN's own link (an upstream socket there is routed back into the TUN, which would
        // hand it to this loop again, forever): refused here (an RST), before any limit is
        // taken or any socket made.
        let dst = syn.local_addr();
        if let Some(why) = destination::not_relayed(&relay.link, dst.ip()) {
            let client = syn.peer_addr();
            let _ = syn.refuse();
            let outcome = match why {
                NotRelayed::Martian => Outcome::Martian,
                NotRelayed::OwnLink => Outcome::OwnLink,
            };
            relay.stats.record(outcome);
            if relay.verbose {
                println!(
                    "tcp {client} -> {dst} {} up 0 B down 0 B 0.000 s ({})",
                    outcome.name(),
                    why.reason()
                );
            }
            continue;
        }
        let Some(slot) = FlowSlot::take(&relay.flows, relay.max_flows) else {
            relay.stats.tcp_busy.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // At the limit a connect makes room, and this waits until its task has let go of
        // its socket: the bound is on sockets, not only on tasks.
        let permit = match Arc::clone(&relay.connect_permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                relay.cancel_a_connect();
                let Ok(p) = Arc::clone(&relay.connect_permits).acquire_owned().await else {
                    return Ok(()); // never closed
                };
                p
            }
        };
        let (id, cancelled) = relay.start_connect(syn.peer_addr(), dst, syn.info().retransmission);
        tokio::spawn(Arc::clone(&relay).tcp_flow(syn, permit, id, cancelled, slot));
    }
}

/// How a TCP flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Relayed, and closed with FINs both ways.
    Closed,
    /// Relayed, and ended by an RST or an error on one side (the other side was reset).
    Reset,
    /// Upstream refused: the client got an RST.
    Refused,
    /// Upstream unreachable: the client got an ICMP destination unreachable.
    Unreachable,
    /// Upstream did not answer in time: the SYN was dropped unanswered.
    TimedOut,
    /// Upstream failed otherwise (the proxy, a local error): the SYN was dropped.
    Failed,
    /// Upstream connected but the client's handshake failed.
    AcceptFailed,
    /// Upstream connected but the client's handshake did not complete within
    /// --connect-timeout (a spoofed SYN, or a client gone): both sides were dropped.
    AcceptTimedOut,
    /// The destination is on the TUN's own link: refused (an RST) without an upstream
    /// attempt, as relaying it would loop back into the TUN.
    OwnLink,
    /// The destination is loopback, unspecified, broadcast or multicast: refused (an RST)
    /// without an upstream attempt, as it would reach the relay host itself.
    Martian,
}

impl Outcome {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Outcome::Closed => "closed",
            Outcome::Reset => "reset",
            Outcome::Refused => "refused",
            Outcome::Unreachable => "unreachable",
            Outcome::TimedOut => "timed-out",
            Outcome::Failed => "failed",
            Outcome::AcceptFailed => "accept-failed",
            Outcome::AcceptTimedOut => "accept-timed-out",
            Outcome::OwnLink => "own-link",
            Outcome::Martian => "martian",
        }
    }
}

impl Relay {
    /// One flow: upstream first, then the answer to the SYN, then the bytes.
    async fn tcp_flow(
        self: Arc<Self>,
        syn: IncomingSyn,
        permit: OwnedSemaphorePermit,
        connect_id: u64,
        cancelled: oneshot::Receiver<()>,
        slot: FlowSlot,
    ) {
        let _slot = slot;
        let start = Instant::now();
        let (client, dst) = (syn.peer_addr(), syn.local_addr());
        let attempt = tokio::select! {
            r = tokio::time::timeout(self.connect_timeout, self.upstream.connect_tcp(dst)) => Some(r),
            _ = cancelled => None,
        };
        self.end_connect(connect_id);
        // The connect's socket is closed by now, or is the relayed flow's (--max-flows).
        drop(permit);
        let mut detail = String::new();
        let Some(attempt) = attempt else {
            // Made room for a newer SYN: this one is dropped unanswered, as at a timeout
            // (counted as dropped at a limit).
            self.stats.tcp_busy.fetch_add(1, Ordering::Relaxed);
            if self.verbose {
                println!(
                    "tcp {client} -> {dst} cancelled up 0 B down 0 B {:.3} s (--max-pending-connects)",
                    start.elapsed().as_secs_f64()
                );
            }
            return;
        };
        let (outcome, up, down) = match attempt {
            // Nothing is sent: dropping the held SYN leaves the client to time out.
            Err(_elapsed) => (Outcome::TimedOut, 0, 0),
            Ok(Err(Fail::Refused)) => {
                let _ = syn.refuse();
                (Outcome::Refused, 0, 0)
            }
            Ok(Err(Fail::Unreachable(why))) => {
                detail = match syn.unreachable(why) {
                    Ok(true) => format!(" ({why:?})"),
                    Ok(false) => {
                        format!(" ({why:?}; not answered: ICMP rate limit or a full queue)")
                    }
                    Err(e) => format!(" ({why:?}; not answered: {e})"),
                };
                (Outcome::Unreachable, 0, 0)
            }
            Ok(Err(Fail::Other(e))) => {
                detail = format!(" ({e})");
                (Outcome::Failed, 0, 0)
            }
            // The handshake is bounded by the connect timeout too: otherwise a spoofed SYN
            // to a listening destination holds its --max-flows slot (and the upstream
            // connection) through all of the SYN-ACK's retransmissions, about a minute.
            Ok(Ok(upstream)) => {
                match tokio::time::timeout(self.connect_timeout, syn.accept()).await {
                    Ok(Ok(inbound)) => {
                        if self.verbose {
                            println!("tcp {client} -> {dst} relaying");
                        }
                        self.stats.tcp_open.fetch_add(1, Ordering::Relaxed);
                        let r = splice(inbound, upstream, &self.stats).await;
                        self.stats.tcp_open.fetch_sub(1, Ordering::Relaxed);
                        r
                    }
                    Ok(Err(e)) => {
                        // The client went away: so does the upstream connection, at once.
                        let _ = upstream.set_zero_linger();
                        detail = format!(" ({e})");
                        (Outcome::AcceptFailed, 0, 0)
                    }
                    Err(_elapsed) => {
                        // The accept's future is dropped with its half-open connection (the
                        // stack closes it); the upstream connection goes at once, with an RST.
                        let _ = upstream.set_zero_linger();
                        detail = " (the client's handshake did not complete in time)".into();
                        (Outcome::AcceptTimedOut, 0, 0)
                    }
                }
            }
        };
        self.stats.record(outcome);
        if self.verbose {
            println!(
                "tcp {client} -> {dst} {} up {up} B down {down} B {:.3} s{detail}",
                outcome.name(),
                start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Copies both ways until both directions have ended. A FIN from one side becomes a FIN
/// (write shutdown) to the other, and the other direction goes on (half-close); an RST or
/// error on either side resets both. An RST after a side's FIN, while the other side sends
/// nothing, is looked for every [`HALF_CLOSED_CHECK`] (reads return 0 after a FIN even once
/// an RST followed, as Linux's do; the socket's error still shows it). Returns the outcome
/// and the bytes sent upstream and down.
///
/// When one direction fails, `try_join!` drops the other where it stands, perhaps in the
/// middle of a write: [`pump`]'s buffer goes back to its pool on that drop too.
async fn splice(
    mut inbound: synack::tokio::TcpStream,
    mut upstream: tokio::net::TcpStream,
    stats: &Stats,
) -> (Outcome, u64, u64) {
    // The client did its own coalescing; the relay adds no delay of its own.
    let _ = inbound.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let result = {
        let (mut in_r, mut in_w) = inbound.split();
        let (mut up_r, mut up_w) = upstream.split();
        // Once a side's reader has ended, it is watched for an RST until the other
        // direction has ended too.
        let (client_done, client_done_rx) = oneshot::channel::<()>();
        let (server_done, server_done_rx) = oneshot::channel::<()>();
        let client_to_server = async {
            pump(&mut in_r, &mut up_w, &up, &stats.tcp_bytes_up).await?;
            let _ = client_done.send(());
            tokio::select! {
                _ = server_done_rx => Ok::<(), io::Error>(()),
                e = reset_after_eof_synack(&in_r) => Err(e),
            }
        };
        let server_to_client = async {
            pump(&mut up_r, &mut in_w, &down, &stats.tcp_bytes_down).await?;
            let _ = server_done.send(());
            tokio::select! {
                _ = client_done_rx => Ok(()),
                e = reset_after_eof_tokio(&up_r) => Err(e),
            }
        };
        tokio::try_join!(client_to_server, server_to_client)
    };
    let outcome = match result {
        Ok(_) => Outcome::Closed,
        Err(_) => {
            // Linger 0: dropping either stream now sends an RST and discards what is queued.
            let _ = inbound.set_linger(Some(Duration::ZERO));
            let _ = upstream.set_zero_linger();
            Outcome::Reset
        }
    };
    (outcome, up.into_inner(), down.into_inner())
}

/// How often a side that has sent its FIN is checked for a later RST while the other
/// direction still runs: a FIN then an RST while the other side is idle would otherwise
/// leave the flow open for good.
const HALF_CLOSED_CHECK: Duration = Duration::from_secs(1);

/// Whether an error a half-closed side's socket reports ends the flow: a reset (ECONNRESET,
/// or EPIPE in CLOSE_WAIT), an abort, or a connection that timed out. Not the soft errors
/// that both Linux's SO_ERROR and synack's `take_error` report too, once, when no hard
/// error is set: an ICMP destination unreachable, time exceeded or parameter problem about
/// the connection, on which RFC 1122 §4.2.3.9 says TCP "MUST NOT abort the connection"
/// (a route flap on either leg used to cut a streamed response short).
fn ends_the_flow(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::TimedOut
    )
}

/// Returns the error that ends the upstream side after its FIN (its RST). A kernel socket
/// reads 0 after a FIN even once it has been reset, but SO_ERROR holds the reset (EPIPE in
/// CLOSE_WAIT), so that is looked at every [`HALF_CLOSED_CHECK`]; a soft error there is
/// passed over (see [`ends_the_flow`]).
async fn reset_after_eof_tokio(r: &tokio::net::tcp::ReadHalf<'_>) -> io::Error {
    loop {
        tokio::time::sleep(HALF_CLOSED_CHECK).await;
        match r.as_ref().take_error() {
            Ok(Some(e)) | Err(e) if ends_the_flow(&e) => return e,
            _ => {}
        }
    }
}

/// As [`reset_after_eof_tokio`], for the client's side: synack's reads return 0 after the
/// client's FIN even once its RST followed, and the connection's error shows the RST.
async fn reset_after_eof_synack(r: &synack::tokio::ReadHalf<'_>) -> io::Error {
    loop {
        tokio::time::sleep(HALF_CLOSED_CHECK).await;
        match r.take_error() {
            Ok(Some(e)) | Err(e) if ends_the_flow(&e) => return e,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resets and timeouts end a half-closed flow; ICMP's soft errors, as the kernel's
    /// SO_ERROR and synack report them, do not.
    #[test]
    fn only_hard_errors_end_a_half_closed_flow() {
        use io::ErrorKind::*;
        for kind in [ConnectionReset, BrokenPipe, ConnectionAborted, TimedOut] {
            assert!(ends_the_flow(&kind.into()), "{kind:?}");
        }
        for errno in [libc::EHOSTUNREACH, libc::ENETUNREACH, libc::EPROTO] {
            let e = io::Error::from_raw_os_error(errno);
            assert!(!ends_the_flow(&e), "{e}");
        }
        for kind in [HostUnreachable, NetworkUnreachable, Other] {
            assert!(!ends_the_flow(&kind.into()), "{kind:?}");
        }
        assert!(ends_the_flow(&io::Error::from_raw_os_error(
            libc::ECONNRESET
        )));
        assert!(ends_the_flow(&io::Error::from_raw_os_error(libc::EPIPE)));
    }

    fn flow(i: u16) -> (SocketAddr, SocketAddr) {
        (
            SocketAddr::from(([198, 18, 0, 1], 40_000 + i)),
            SocketAddr::from(([198, 19, (i >> 8) as u8, i as u8], 443)),
        )
    }

    fn add(c: &mut Connects, f: (SocketAddr, SocketAddr)) -> oneshot::Receiver<()> {
        let (cancel, cancelled) = oneshot::channel();
        let retry = c.cancelled_set.contains(&f);
        let id = c.next_id;
        c.next_id += 1;
        c.queue.push(Connect {
            id,
            flow: f,
            retry,
            _cancel: cancel,
        });
        cancelled
    }

    /// A full pool of 256: one retry among first SYNs is cancelled about a pool's times less
    /// often than a first one (none would be, oldest first, until its turn came); one first
    /// SYN among retries (a flood that retries its own) at most about twice as often as a
    /// retry, never every time; and cancelling is not oldest first.
    #[test]
    fn cancellations_are_random_and_spare_retries() {
        let rounds = 20_000;
        // One retry among 255 first SYNs; each cancelled connect is replaced by another.
        let mut c = Connects::default();
        c.note_cancelled(flow(0));
        let mut receivers = vec![add(&mut c, flow(0))];
        for i in 1..256 {
            receivers.push(add(&mut c, flow(i)));
        }
        let mut retry_cancelled = 0;
        for round in 0..rounds {
            let gone = c.cancel_one().unwrap();
            if gone == flow(0) {
                retry_cancelled += 1;
                receivers.push(add(&mut c, flow(0)));
            } else {
                receivers.push(add(&mut c, flow(1000 + round as u16)));
            }
        }
        // About rounds / 256² = 0.3 expected; a first SYN's share is rounds / 256 = 78.
        assert!(
            retry_cancelled <= 5,
            "the retry cancelled {retry_cancelled} times"
        );

        // One first SYN among 255 retries.
        let mut c = Connects::default();
        for i in 1..256 {
            c.note_cancelled(flow(i));
            receivers.push(add(&mut c, flow(i)));
        }
        receivers.push(add(&mut c, flow(0)));
        let mut first_cancelled = 0;
        for _ in 0..rounds {
            let gone = c.cancel_one().unwrap();
            if gone == flow(0) {
                // It comes back as a first SYN again (a new client's, say).
                first_cancelled += 1;
                c.cancelled_set.remove(&flow(0));
            }
            receivers.push(add(&mut c, gone));
        }
        // About 2 × rounds / 256 = 156 expected: twice a retry's share, not every round.
        assert!(
            first_cancelled < rounds / 40,
            "the first SYN cancelled {first_cancelled} times"
        );

        // Not oldest first: of the 200 oldest of a pool, about 92 outlive 200 cancellations.
        let mut c = Connects::default();
        for i in 0..256 {
            receivers.push(add(&mut c, flow(3000 + i)));
        }
        for i in 0..200 {
            c.cancel_one().unwrap();
            receivers.push(add(&mut c, flow(4000 + i)));
        }
        let survivors = c.queue.iter().filter(|x| x.id < 200).count();
        assert!(survivors > 50, "{survivors} of the 200 oldest survived");
        let _ = receivers;
    }
}
