//! A tun2socks-style relay: every TCP flow and UDP datagram the kernel routes into the TUN,
//! whatever its destination, is carried to that destination through a kernel socket (in
//! this namespace, or in the one `--egress-netns` names) or through a SOCKS5 proxy
//! (`--socks5`: CONNECT, and UDP ASSOCIATE with one association per UDP session).
//!
//! The client's SYN is held (synack's transparent mode) while the relay opens the upstream
//! connection, and answered only with the upstream's answer: connected, the handshake
//! completes and bytes flow; refused, the client gets an RST; unreachable, an ICMP
//! destination unreachable; no answer within `--connect-timeout`, or any other failure (the
//! proxy down or failing, no file descriptors), nothing at all, so the client's SYN times
//! out as it would on the direct path (after gVisor's `tcp.Forwarder`).
//! Once upstream has connected, the client's handshake gets `--connect-timeout` as well;
//! past it the upstream connection is reset and the half-open one dropped, so that spoofed
//! SYNs to listening destinations do not hold flow slots for a minute of SYN-ACK
//! retransmissions ("accept-timed-out" in the summary).
//!
//! Never relayed: a destination on the TUN's own link (the stack's addresses and the
//! prefixes of --host-addr and --host-addr6), since the upstream socket would be routed
//! straight back into the TUN. A SYN there is refused (an RST), a datagram dropped; both
//! are counted in the summary ("own-link").
//!
//! Bounded everywhere, since anything can be sent into a TUN: at most `--max-flows` relayed
//! TCP flows (a SYN beyond it is dropped unanswered; the client retransmits) and
//! `--max-pending-connects` upstream connects at once (a SYN beyond it cancels the oldest
//! connect, whose SYN is dropped unanswered, so a SYN flood to random destinations opens no
//! more sockets than that and cannot starve new clients); at most `--max-udp-sessions` UDP
//! sessions (a new one evicts the longest idle unanswered one, and while those churn, waits
//! for its client's retry: see `UdpSessions`) and 4 MiB of datagrams queued upstream; a
//! copy buffer only while bytes are moving or wait to be written (256 KiB while fewer than
//! 256 are held across all flows, else 16 KiB: at most 64 MiB of large ones however many
//! peers stop reading); and the stack's own bounds on held SYNs.
//!
//! ```sh
//! ip netns exec C transparent_relay --egress-netns E -v   # then: ip route add PREFIX dev synack0
//! ```
//! README.md, "Transparent relay", has the whole set-up.

mod common;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use clap::Parser;
use common::NetArgs;
use synack::core::InterceptConfig;
use synack::tokio::intercept::{IncomingSyn, Interceptor};
use synack::tokio::UdpInterceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// Relays every TCP flow routed into the TUN to its original destination.
#[derive(Parser, Debug)]
#[command(name = "transparent_relay")]
struct Args {
    #[command(flatten)]
    net: NetArgs,
    /// Open upstream sockets inside this network namespace (/var/run/netns/NAME, made by
    /// `ip netns add`) instead of the relay's own. With --socks5, the proxy is reached from
    /// there.
    #[arg(long, value_name = "NAME")]
    egress_netns: Option<String>,
    /// Relay through this SOCKS5 proxy (RFC 1928, no authentication): CONNECT for TCP, UDP
    /// ASSOCIATE for UDP. HOST:PORT; a name is looked up once, at start.
    #[arg(long, value_name = "HOST:PORT")]
    socks5: Option<String>,
    /// Seconds to wait for the upstream connection; a SYN whose upstream has not answered by
    /// then is dropped unanswered (the client's connect times out). Once upstream has
    /// connected, the client's handshake gets as long again; past it both are dropped.
    #[arg(long, default_value_t = 4.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Upstream connects in progress at once; a SYN beyond it cancels the oldest connect
    /// (whose SYN is dropped; its client retransmits), so that a flood of SYNs to silent
    /// destinations holds no more sockets than this and cannot starve new clients.
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_pending_connects: usize,
    /// Relayed TCP flows at once (connecting or connected); SYNs beyond it are dropped.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_flows: usize,
    /// Seconds a UDP session (one client address and port to one destination) lives
    /// without a datagram either way.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    udp_timeout: f64,
    /// UDP sessions at once; a new one beyond it evicts the longest idle that never had a
    /// reply, else the longest idle (a flood from spoofed sources so costs at most this
    /// many upstream sockets, and evicts its own sessions first).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    max_udp_sessions: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.net.verbose);
    // One thread: the driver and the copying tasks wake each other every round, and on a
    // machine with few cores those wake-ups are cheaper on one thread (README, "Benchmarks").
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return common::report("transparent_relay", Err(e)),
    };
    common::report("transparent_relay", runtime.block_on(run(args)))
}

/// -v prints one line per flow on stdout; the stack's own debug log needs -vv (RUST_LOG
/// overrides both).
fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 | 1 => "warn",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .init();
}

async fn run(args: Args) -> io::Result<()> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    if !(args.connect_timeout > 0.0 && args.connect_timeout <= 600.0) {
        return Err(invalid(format!(
            "--connect-timeout {} must be between 0 and 600 seconds",
            args.connect_timeout
        )));
    }
    if !(args.udp_timeout > 0.0 && args.udp_timeout <= 86400.0) {
        return Err(invalid(format!(
            "--udp-timeout {} must be between 0 and 86400 seconds",
            args.udp_timeout
        )));
    }
    if args.max_pending_connects == 0 || args.max_flows == 0 || args.max_udp_sessions == 0 {
        return Err(invalid(
            "--max-pending-connects, --max-flows and --max-udp-sessions must be at least 1".into(),
        ));
    }
    let connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    let egress = match &args.egress_netns {
        Some(name) => Egress::in_netns(name).await?,
        None => Egress::Direct,
    };
    let socks5 = match &args.socks5 {
        Some(proxy) => Some(
            tokio::net::lookup_host(proxy.as_str())
                .await
                .map_err(|e| invalid(format!("--socks5 {proxy}: {e}")))?
                .next()
                .ok_or_else(|| invalid(format!("--socks5 {proxy}: no address")))?,
        ),
        None => None,
    };
    let upstream = Upstream { egress, socks5 };
    let stack = args.net.open_stack_with(|config| {
        // The stack must not give up on a SYN before the relay has: its own decision
        // timeout stays well past the connect timeout, so that "no answer" is always the
        // relay's drop (and a SYN is never left to the stack's timer while a connect runs).
        config.intercept(Some(InterceptConfig {
            decision_timeout: connect_timeout + Duration::from_secs(2),
            ..InterceptConfig::default()
        }));
    })?;
    let interceptor = stack.intercept()?;
    let udp_interceptor = stack.intercept_udp()?;
    let relay = Arc::new(Relay {
        link: args.net.clone(),
        upstream,
        connect_timeout,
        connects: Mutex::new(Connects::default()),
        connect_permits: Arc::new(Semaphore::new(args.max_pending_connects)),
        flows: Arc::new(AtomicUsize::new(0)),
        max_flows: args.max_flows,
        verbose: args.net.verbose > 0,
        stats: Stats::default(),
        udp_timeout: Duration::from_secs_f64(args.udp_timeout),
        udp_permits: Arc::new(Semaphore::new(args.max_udp_sessions)),
        udp_queued: Arc::new(AtomicUsize::new(0)),
        epoch: Instant::now(),
    });
    eprintln!(
        "transparent_relay: relaying what is routed into {} ({}), upstream {}",
        args.net.tun,
        args.net.host_addr,
        relay.upstream.describe(args.egress_netns.as_deref()),
    );

    let tcp = tokio::spawn(tcp_loop(interceptor, Arc::clone(&relay)));
    let udp = tokio::spawn(udp_loop(udp_interceptor, Arc::clone(&relay)));
    let joined = |what: &str, r: Result<io::Result<()>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!(
            "the {what} relay task failed: {e}"
        ))),
    };
    let result = tokio::select! {
        r = tcp => joined("TCP", r),
        r = udp => joined("UDP", r),
        r = shutdown_signal() => r,
    };
    relay.stats.print_summary();
    // Where the stack itself dropped what it read, next to the relay's own counts.
    let s = stack.stats();
    println!(
        "summary: stack: packets in {}; udp datagrams in {} intercepted {} dropped at a full \
         queue {}; syns held {} dropped at a full hold {}; fragments dropped {}; other drops {}",
        s.packets_in,
        s.udp_datagrams_in,
        s.udp_intercepted,
        s.drop_udp_queue_full,
        s.intercepted_syns,
        s.drop_intercept_overflow,
        s.drop_fragment,
        s.drop_malformed
            + s.drop_checksum
            + s.drop_bad_option
            + s.drop_not_for_us
            + s.drop_unsupported
            + s.drop_memory
            + s.drop_other,
    );
    result
}

/// Waits for Ctrl-C or SIGTERM.
async fn shutdown_signal() -> io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

/// What every flow task shares.
struct Relay {
    /// The TUN's own link (--host-addr, --host-addr6, the stack's addresses): destinations
    /// there are never relayed (see [`NetArgs::on_tun_link`]).
    link: NetArgs,
    upstream: Upstream,
    connect_timeout: Duration,
    /// The upstream connects in progress.
    connects: Mutex<Connects>,
    /// One per connect in progress (--max-pending-connects), held until its socket is
    /// closed or has become a relayed flow's.
    connect_permits: Arc<Semaphore>,
    /// Relayed flows now (connecting or connected).
    flows: Arc<AtomicUsize>,
    max_flows: usize,
    verbose: bool,
    stats: Stats,
    udp_timeout: Duration,
    /// One per UDP session (--max-udp-sessions), held until its socket is closed.
    udp_permits: Arc<Semaphore>,
    /// Bytes of client datagrams queued for upstream in all sessions together.
    udp_queued: Arc<AtomicUsize>,
    /// The origin of the sessions' idle clocks.
    epoch: Instant,
}

/// Holds one of [`Relay::flows`] until dropped.
struct FlowSlot(Arc<AtomicUsize>);

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

// ---------------------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------------------

/// The upstream connects in progress, oldest first, each with the sender whose drop
/// cancels it.
#[derive(Default)]
struct Connects {
    next_id: u64,
    queue: VecDeque<(u64, oneshot::Sender<()>)>,
}

impl Relay {
    fn connects(&self) -> std::sync::MutexGuard<'_, Connects> {
        // Nothing panics while holding it; a poisoned lock still holds a usable queue.
        self.connects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new upstream connect. Returns its id and the receiver that fires on
    /// cancellation.
    fn start_connect(&self) -> (u64, oneshot::Receiver<()>) {
        let (cancel, cancelled) = oneshot::channel();
        let mut connects = self.connects();
        let id = connects.next_id;
        connects.next_id += 1;
        connects.queue.push_back((id, cancel));
        (id, cancelled)
    }

    /// Cancels the oldest connect in progress: dropping its sender wakes that flow's task,
    /// which drops its SYN and its socket.
    fn cancel_oldest_connect(&self) {
        if self.connects().queue.pop_front().is_some() {
            self.stats.tcp_busy.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Forgets connect `id` once it has finished (at most --max-pending-connects entries to
    /// look through).
    fn end_connect(&self, id: u64) {
        let mut connects = self.connects();
        if let Some(i) = connects.queue.iter().position(|(c, _)| *c == id) {
            connects.queue.remove(i);
        }
    }
}

/// Takes each held SYN and starts its flow (dropping it at --max-flows; the client
/// retransmits). At --max-pending-connects the oldest connect makes room, so a flood of
/// SYNs to random destinations costs no more than that many upstream sockets. Returns only
/// when the stack stops.
async fn tcp_loop(interceptor: Interceptor, relay: Arc<Relay>) -> io::Result<()> {
    loop {
        let syn = interceptor.next().await?;
        // The stack's own addresses and the TUN's prefixes: an upstream socket to them is
        // routed back into the TUN, which would hand it to this loop again, forever. Refused
        // here (an RST), before any limit is taken or any socket made.
        let dst = syn.local_addr();
        if relay.link.on_tun_link(dst.ip()) {
            let client = syn.peer_addr();
            let _ = syn.refuse();
            relay.stats.record(Outcome::OwnLink, 0, 0);
            if relay.verbose {
                println!(
                    "tcp {client} -> {dst} {} up 0 B down 0 B 0.000 s (the TUN's own link)",
                    Outcome::OwnLink.name()
                );
            }
            continue;
        }
        let Some(slot) = FlowSlot::take(&relay.flows, relay.max_flows) else {
            relay.stats.tcp_busy.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // At the limit the oldest connect makes room, and this waits until its task has
        // let go of its socket: the bound is on sockets, not only on tasks.
        let permit = match Arc::clone(&relay.connect_permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                relay.cancel_oldest_connect();
                let Ok(p) = Arc::clone(&relay.connect_permits).acquire_owned().await else {
                    return Ok(()); // never closed
                };
                p
            }
        };
        let (id, cancelled) = relay.start_connect();
        tokio::spawn(Arc::clone(&relay).tcp_flow(syn, permit, id, cancelled, slot));
    }
}

/// How a TCP flow ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
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
}

impl Outcome {
    fn name(self) -> &'static str {
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
            Ok(Err(Fail::Unreachable)) => {
                let _ = syn.unreachable();
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
                    Ok(Ok(inbound)) => splice(inbound, upstream).await,
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
        self.stats.record(outcome, up, down);
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
async fn splice(
    mut inbound: synack::tokio::TcpStream,
    mut upstream: tokio::net::TcpStream,
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
            pump(&mut in_r, &mut up_w, &up).await?;
            let _ = client_done.send(());
            tokio::select! {
                _ = server_done_rx => Ok::<(), io::Error>(()),
                e = reset_after_eof_synack(&in_r) => Err(e),
            }
        };
        let server_to_client = async {
            pump(&mut up_r, &mut in_w, &down).await?;
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

/// How often an upstream that has sent its FIN is checked for a later RST while the client's
/// direction still runs: a FIN then an RST while the client is idle would otherwise leave
/// the flow open for good.
const HALF_CLOSED_CHECK: Duration = Duration::from_secs(1);

/// Returns the error that ends the upstream side after its FIN (its RST). A kernel socket
/// reads 0 after a FIN even once it has been reset, but SO_ERROR holds the reset (EPIPE in
/// CLOSE_WAIT), so that is looked at every [`HALF_CLOSED_CHECK`].
async fn reset_after_eof_tokio(r: &tokio::net::tcp::ReadHalf<'_>) -> io::Error {
    loop {
        tokio::time::sleep(HALF_CLOSED_CHECK).await;
        match r.as_ref().take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return e,
        }
    }
}

/// As [`reset_after_eof_tokio`], for the client's side: synack's reads return 0 after the
/// client's FIN even once its RST followed, and the connection's error shows the RST.
async fn reset_after_eof_synack(r: &synack::tokio::ReadHalf<'_>) -> io::Error {
    loop {
        tokio::time::sleep(HALF_CLOSED_CHECK).await;
        match r.take_error() {
            Ok(None) => {}
            Ok(Some(e)) | Err(e) => return e,
        }
    }
}

/// The largest read of one copy step: 256 KiB, so that a busy flow crosses into the kernel
/// in few large writes (in the harness, on this noisy 2-core machine: with 64 KiB, freshly
/// zeroed per burst, the relay ran at 0.41 and 0.61x the direct path; with 64 KiB from the
/// pool below at 0.73 and 0.77x; with 256 KiB from the pool at 0.98 and 1.08x, and 0.63 and
/// 0.89x in a run beside two compiling builds). A flow holds its buffer while its write
/// waits, so a peer that never reads pins one per direction: hence [`LARGE_MAX`].
const CHUNK: usize = 256 * 1024;
/// Large buffers held by flows at once, across all of them: 256, i.e. 64 MiB. Beyond it a
/// flow copies through a [`SMALL_CHUNK`] buffer, so that stalled peers cannot pin
/// --max-flows x 2 x 256 KiB (2 GiB at the defaults). The copy buffers in use are so at
/// most 64 MiB plus 16 KiB per direction of the other flows (128 MiB more at 4096 flows, all
/// stalled), and the pools below keep at most 4 MiB + 1 MiB idle.
const LARGE_MAX: usize = 256;
/// The copy buffer of a flow past [`LARGE_MAX`].
const SMALL_CHUNK: usize = 16 * 1024;
/// Idle large copy buffers kept for reuse, at most (4 MiB).
const POOL_MAX: usize = 16;
/// Idle small copy buffers kept for reuse, at most (1 MiB).
const SMALL_POOL_MAX: usize = 64;

/// Large buffers taken and not given back, across all threads (the pools are per thread,
/// the budget is not).
static LARGE_IN_USE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Copy buffers between uses, large and small. The relay runs on one thread; a buffer
    /// goes back here whenever its flow has nothing to read, and the next flow with bytes
    /// takes it as it is, with no allocation and no zeroing of a whole buffer per burst.
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// The same for [`SMALL_CHUNK`] buffers.
    static SMALL_POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer from the pool, or a new one: a large one while fewer than [`LARGE_MAX`]
/// are held, else a small one.
fn take_buffer() -> Vec<u8> {
    if LARGE_IN_USE.fetch_add(1, Ordering::Relaxed) < LARGE_MAX {
        return POOL
            .with(|p| p.borrow_mut().pop())
            .unwrap_or_else(|| vec![0; CHUNK]);
    }
    LARGE_IN_USE.fetch_sub(1, Ordering::Relaxed);
    SMALL_POOL
        .with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; SMALL_CHUNK])
}

/// Gives a copy buffer back to its pool (or frees it, when the pool is full), and a large
/// one back to the budget.
fn give_buffer(b: Vec<u8>) {
    let large = b.len() == CHUNK;
    if large {
        LARGE_IN_USE.fetch_sub(1, Ordering::Relaxed);
    }
    let (pool, max) = if large {
        (&POOL, POOL_MAX)
    } else {
        (&SMALL_POOL, SMALL_POOL_MAX)
    };
    pool.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < max {
            p.push(b);
        }
    });
}

/// Copies `r` to `w` until `r` ends, then shuts `w`'s sending side down (FIN). The flow
/// holds a buffer only while bytes move: it goes back to the pool whenever `r` has nothing
/// to read, so an idle flow holds none. A write that waits on a peer that does not read
/// keeps it, which is why large ones are budgeted ([`LARGE_MAX`]).
async fn pump<R, W>(r: &mut R, w: &mut W, count: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf: Option<Vec<u8>> = None;
    let result = async {
        loop {
            let n = poll_fn(|cx| {
                let b = buf.get_or_insert_with(take_buffer);
                let mut read = ReadBuf::new(b);
                match Pin::new(&mut *r).poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => {
                        if let Some(b) = buf.take() {
                            give_buffer(b);
                        }
                        Poll::Pending
                    }
                }
            })
            .await?;
            if n == 0 {
                return w.shutdown().await;
            }
            if let Some(b) = buf.as_deref() {
                w.write_all(&b[..n]).await?;
            }
            count.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
    .await;
    if let Some(b) = buf.take() {
        give_buffer(b);
    }
    result
}

// ---------------------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------------------

/// Client datagrams queued for upstream, across all sessions, at most (a flood fills this,
/// not the memory).
const UDP_QUEUE_BYTES: usize = 4 << 20;
/// Client datagrams one session queues while its upstream socket is busy or being opened.
const UDP_SESSION_QUEUE: usize = 64;

/// One client datagram on its way upstream; its bytes count against [`UDP_QUEUE_BYTES`]
/// until it is dropped.
struct Queued {
    data: Vec<u8>,
    budget: Arc<AtomicUsize>,
}

impl Queued {
    fn take(budget: &Arc<AtomicUsize>, data: &[u8]) -> Option<Queued> {
        let len = data.len();
        if budget.fetch_add(len, Ordering::Relaxed) + len > UDP_QUEUE_BYTES {
            budget.fetch_sub(len, Ordering::Relaxed);
            return None;
        }
        Some(Queued {
            data: data.to_vec(),
            budget: Arc::clone(budget),
        })
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.budget.fetch_sub(self.data.len(), Ordering::Relaxed);
    }
}

/// The dispatcher's handle on a session task.
struct Session {
    to_upstream: mpsc::Sender<Queued>,
    activity: Arc<Activity>,
    /// Dropped with the session's entry: ends the task even while it opens its upstream.
    _cancel: oneshot::Sender<()>,
}

/// What the dispatcher and a session task both see of the session.
struct Activity {
    /// Milliseconds since [`Relay::epoch`] of the last datagram either way.
    last: AtomicU64,
    /// Whether a reply ever came back from the destination.
    replied: AtomicBool,
}

impl Activity {
    fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }

    fn replied(&self) -> bool {
        self.replied.load(Ordering::Relaxed)
    }
}

impl Relay {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// How long the session that would be evicted must have been quiet, when it never had a
/// reply, before the first datagram of a new pair may take its place (see [`UdpSessions`]).
const UDP_SETTLE_MS: u64 = 1000;

/// How many pairs whose first datagram was held back are remembered, as 32-bit tags
/// (512 KiB): a flood reaching the dispatcher at 50,000 new pairs a second takes over 2 s
/// to overwrite a given slot, longer than a resolver waits before it retries.
const UDP_HELD_BACK_SLOTS: usize = 1 << 17;

/// The UDP sessions by (client, destination), and who gets one when all
/// `--max-udp-sessions` are taken.
///
/// Anything can be sent into a TUN, so a flood of datagrams from spoofed sources to random
/// destinations must neither evict real clients' sessions nor keep new ones out. Two rules:
/// - As with Linux conntrack's early drop, a session that never had a reply is evicted
///   before one that has, the longest idle first. A flood's sessions get no replies, so they
///   evict one another and leave answered sessions alone.
/// - While the sessions churn (the one to evict never had a reply and was active less than
///   [`UDP_SETTLE_MS`] ago), the first datagram of a pair seen for the first time is
///   dropped and the pair remembered by a keyed hash; its retry gets a session. Real
///   clients retry (a resolver after a second or so, QUIC and DTLS their handshakes) and a
///   flood of one datagram to each random pair does not, so the flood costs a hash lookup a
///   datagram instead of a socket, the dispatcher keeps up with it, and a retry is not lost
///   in the stack's queue behind it.
struct UdpSessions {
    map: HashMap<(SocketAddr, SocketAddr), Session>,
    /// Tags of held-back pairs, by their hash; 0 is an empty slot.
    held_back: Box<[u32]>,
    /// Keyed per process: a sender cannot choose pairs that overwrite a given slot.
    hasher: RandomState,
    /// Before this time (ms since [`Relay::epoch`]) the sessions churn: the oldest
    /// unanswered session, when last looked at, had been active after it minus
    /// [`UDP_SETTLE_MS`], and a datagram, a reply or an eviction only makes the oldest
    /// unanswered one younger. So a flood's datagrams are held back without a scan of the
    /// table. (Should every unanswered session go, holding back goes on until this time: at
    /// most [`UDP_SETTLE_MS`].)
    churn_until: u64,
}

/// What [`UdpSessions::make_room`] decided for a new pair at the limit.
enum Room {
    /// A session was evicted (or one is ending on its own): wait for its permit.
    Wait,
    /// The datagram is held back; the pair is remembered.
    HeldBack,
}

impl UdpSessions {
    fn new() -> UdpSessions {
        UdpSessions {
            map: HashMap::new(),
            held_back: vec![0; UDP_HELD_BACK_SLOTS].into_boxed_slice(),
            hasher: RandomState::new(),
            churn_until: 0,
        }
    }

    /// Removes the entries of sessions that ended on their own (idle, failed).
    fn sweep(&mut self) {
        self.map.retain(|_, s| !s.to_upstream.is_closed());
    }

    /// All sessions are taken and `key` has none: evicts one, or holds the datagram back.
    fn make_room(&mut self, key: (SocketAddr, SocketAddr), now_ms: u64) -> Room {
        // While the sessions are known to churn, a new pair costs a hash lookup, no scan.
        if now_ms < self.churn_until && !self.is_retry(key) {
            return Room::HeldBack;
        }
        let retried = now_ms < self.churn_until;
        self.sweep();
        // The victim: unanswered before answered, then the longest idle.
        let victim = self
            .map
            .iter()
            .map(|(k, s)| (*k, s.activity.replied(), s.activity.last()))
            .min_by_key(|&(_, replied, last)| (replied, last));
        let Some((victim, replied, last)) = victim else {
            // Every permit is held by a session that is ending: its permit comes back.
            return Room::Wait;
        };
        let settled = last.saturating_add(UDP_SETTLE_MS);
        if !replied && now_ms < settled {
            self.churn_until = settled;
            if !retried && !self.is_retry(key) {
                return Room::HeldBack;
            }
        }
        self.map.remove(&victim);
        Room::Wait
    }

    /// Whether `key` was held back before (and is now let through); if not, remembers it.
    fn is_retry(&mut self, key: (SocketAddr, SocketAddr)) -> bool {
        let h = self.hasher.hash_one(key);
        // The low bits pick the slot, the high ones are the tag; never 0.
        let slot = &mut self.held_back[(h as usize) & (UDP_HELD_BACK_SLOTS - 1)];
        let tag = (h >> 32) as u32 | 1;
        if *slot == tag {
            *slot = 0;
            true
        } else {
            *slot = tag;
            false
        }
    }
}

/// Hands each intercepted datagram to the session of its (client, destination) pair, making
/// one if needed: one upstream socket per pair, so replies find their client. At
/// `--max-udp-sessions`, [`UdpSessions`] says which session goes, or whether the datagram
/// waits for its client's retry. Returns only when the stack stops.
async fn udp_loop(interceptor: UdpInterceptor, relay: Arc<Relay>) -> io::Result<()> {
    let mut sessions = UdpSessions::new();
    let mut buf = vec![0u8; 65535];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        let d = tokio::select! {
            d = interceptor.recv(&mut buf) => d?,
            _ = sweep.tick() => {
                sessions.sweep();
                continue;
            }
        };
        let stats = &relay.stats;
        stats.udp_datagrams_in.fetch_add(1, Ordering::Relaxed);
        if !relayable(d.dst) || d.src.port() == 0 {
            stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // The stack's own addresses and the TUN's prefixes: a socket to them is routed back
        // into the TUN and its datagrams would come back here, forever.
        if relay.link.on_tun_link(d.dst.ip()) {
            stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            stats.udp_own_link.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let key = (d.src, d.dst);
        let Some(queued) = Queued::take(&relay.udp_queued, &buf[..d.len]) else {
            stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if let Some(s) = sessions.map.get(&key) {
            match s.to_upstream.try_send(queued) {
                Ok(()) => {
                    s.activity.last.store(relay.now_ms(), Ordering::Relaxed);
                    continue;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                // Ended meanwhile (idle, failed): a new session takes over.
                Err(mpsc::error::TrySendError::Closed(queued)) => {
                    sessions.map.remove(&key);
                    start_session(&relay, &interceptor, &mut sessions, key, queued).await;
                    continue;
                }
            }
        }
        start_session(&relay, &interceptor, &mut sessions, key, queued).await;
    }
}

/// Whether a datagram to `dst` may be relayed: a unicast address and a port (the stack
/// already drops what is not addressed to a unicast address; this keeps the relay from
/// sending to a broadcast or multicast address upstream whatever reaches it).
fn relayable(dst: SocketAddr) -> bool {
    if dst.port() == 0 {
        return false;
    }
    match dst.ip() {
        IpAddr::V4(ip) => {
            !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback())
        }
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_loopback()),
    }
}

/// Starts the session of `key` with its first datagram. At --max-udp-sessions a session is
/// evicted first, and this waits until its task has closed its socket: the bound is on
/// sockets, not only on map entries. Or the datagram is held back (see [`UdpSessions`]).
async fn start_session(
    relay: &Arc<Relay>,
    interceptor: &UdpInterceptor,
    sessions: &mut UdpSessions,
    key: (SocketAddr, SocketAddr),
    first: Queued,
) {
    let permit = match Arc::clone(&relay.udp_permits).try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            match sessions.make_room(key, relay.now_ms()) {
                Room::HeldBack => {
                    relay.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                    relay.stats.udp_held_back.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Room::Wait => {
                    relay.stats.udp_evicted.fetch_add(1, Ordering::Relaxed);
                }
            }
            let Ok(p) = Arc::clone(&relay.udp_permits).acquire_owned().await else {
                return; // never closed
            };
            p
        }
    };
    let (tx, rx) = mpsc::channel(UDP_SESSION_QUEUE);
    // Cannot fail: the channel is new and empty.
    let _ = tx.try_send(first);
    let (cancel, cancelled) = oneshot::channel();
    let activity = Arc::new(Activity {
        last: AtomicU64::new(relay.now_ms()),
        replied: AtomicBool::new(false),
    });
    sessions.map.insert(
        key,
        Session {
            to_upstream: tx,
            activity: Arc::clone(&activity),
            _cancel: cancel,
        },
    );
    let session = Arc::clone(relay).udp_session(interceptor.clone(), key, rx, cancelled, activity);
    tokio::spawn(async move {
        session.await;
        drop(permit);
    });
}

/// How a UDP session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UdpEnd {
    /// Nothing either way for --udp-timeout.
    Idle,
    /// Evicted to make room, or the relay is ending.
    Evicted,
    /// The upstream socket or association could not be opened, or failed.
    Failed,
}

impl Relay {
    /// One session: opens the upstream socket (or SOCKS5 association), then carries
    /// datagrams both ways until it idles out, is evicted, or fails.
    async fn udp_session(
        self: Arc<Self>,
        interceptor: UdpInterceptor,
        (client, dst): (SocketAddr, SocketAddr),
        mut rx: mpsc::Receiver<Queued>,
        mut cancelled: oneshot::Receiver<()>,
        activity: Arc<Activity>,
    ) {
        let start = Instant::now();
        let (mut up_b, mut up_n, mut down_b, mut down_n) = (0u64, 0u64, 0u64, 0u64);
        let mut detail = String::new();
        let opened = tokio::select! {
            r = tokio::time::timeout(self.connect_timeout, self.upstream.open_udp(dst)) => Some(r),
            _ = &mut cancelled => None,
        };
        let end = match opened {
            None => UdpEnd::Evicted,
            Some(Err(_)) => {
                detail = " (upstream did not answer)".into();
                UdpEnd::Failed
            }
            Some(Ok(Err(e))) => {
                detail = format!(" ({e})");
                UdpEnd::Failed
            }
            Some(Ok(Ok(mut up))) => loop {
                let idle_at =
                    self.epoch + Duration::from_millis(activity.last()) + self.udp_timeout;
                tokio::select! {
                    _ = &mut cancelled => break UdpEnd::Evicted,
                    q = rx.recv() => match q {
                        None => break UdpEnd::Evicted,
                        Some(q) => match up.send(dst, &q.data).await {
                            Ok(()) => {
                                up_b += q.data.len() as u64;
                                up_n += 1;
                            }
                            // One datagram lost (e.g. ECONNREFUSED from an earlier ICMP
                            // port unreachable); the session goes on, as UDP does.
                            Err(_) => {
                                self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    },
                    r = up.recv(dst) => match r {
                        Ok(Some(reply)) => {
                            activity.last.store(self.now_ms(), Ordering::Relaxed);
                            activity.replied.store(true, Ordering::Relaxed);
                            if interceptor.send_from(&reply, dst, client).await.is_ok() {
                                down_b += reply.len() as u64;
                                down_n += 1;
                            } else {
                                self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(None) => {
                            self.stats.udp_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            detail = format!(" ({e})");
                            break UdpEnd::Failed;
                        }
                    },
                    _ = tokio::time::sleep_until(idle_at.into()) => {
                        let quiet = self.now_ms().saturating_sub(activity.last());
                        if Duration::from_millis(quiet) >= self.udp_timeout {
                            break UdpEnd::Idle;
                        }
                    }
                }
            },
        };
        // What is still queued is dropped here, its budget returned.
        drop(rx);
        self.stats.record_udp(end, up_b, up_n, down_b, down_n);
        if self.verbose {
            let name = match end {
                UdpEnd::Idle => "idle",
                UdpEnd::Evicted => "evicted",
                UdpEnd::Failed => "failed",
            };
            println!(
                "udp {client} -> {dst} {name} up {up_b} B ({up_n} datagrams) down {down_b} B \
                 ({down_n} datagrams) {:.3} s{detail}",
                start.elapsed().as_secs_f64()
            );
        }
    }
}

thread_local! {
    /// Where upstream datagrams land before they are copied out at their size: the largest
    /// UDP payload, once per thread (the relay runs on one).
    static UDP_SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; 65535]);
}

/// A session's way out: a kernel UDP socket connected to the destination, or one that
/// talks to a SOCKS5 proxy's UDP relay, with the TCP connection that holds the association.
struct UdpUpstream {
    socket: tokio::net::UdpSocket,
    /// With SOCKS5: the association's control connection (RFC 1928 §7: the association
    /// ends when it closes).
    control: Option<tokio::net::TcpStream>,
}

impl UdpUpstream {
    async fn send(&mut self, dst: SocketAddr, data: &[u8]) -> io::Result<()> {
        match self.control {
            None => self.socket.send(data).await.map(drop),
            Some(_) => {
                let mut packet = Vec::with_capacity(22 + data.len());
                socks5::put_udp_header(&mut packet, dst);
                packet.extend_from_slice(data);
                self.socket.send(&packet).await.map(drop)
            }
        }
    }

    /// The next reply from `dst`: `Ok(None)` for one to drop (from elsewhere, fragmented,
    /// malformed), `Err` when the session must end (the proxy closed the association).
    async fn recv(&mut self, dst: SocketAddr) -> io::Result<Option<Vec<u8>>> {
        let socket = &self.socket;
        let received = async {
            loop {
                // Received into the thread's one scratch buffer and copied out at the
                // datagram's size: an idle session holds no buffer, and a busy one neither
                // zeroes nor keeps 64 KiB per datagram.
                socket.readable().await?;
                let got = UDP_SCRATCH.with(|b| {
                    let mut b = b.borrow_mut();
                    socket.try_recv(&mut b).map(|n| b[..n].to_vec())
                });
                match got {
                    Ok(datagram) => return Ok(Some(datagram)),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    // An ICMP error reported on the connected socket: that datagram is
                    // lost, the session goes on.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        match &mut self.control {
            None => received.await,
            Some(control) => {
                let mut probe = [0u8; 1];
                tokio::select! {
                    r = received => Ok(r?.and_then(|packet| socks5::strip_udp_header(&packet, dst))),
                    _ = control.read(&mut probe) => Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the SOCKS5 proxy ended the UDP association",
                    )),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Upstream: kernel sockets here or in another namespace, optionally through SOCKS5
// ---------------------------------------------------------------------------------------

/// Why an upstream connect failed, as the client should hear it.
#[derive(Debug)]
enum Fail {
    /// An RST (ECONNREFUSED), or SOCKS5 reply 5.
    Refused,
    /// ENETUNREACH, EHOSTUNREACH or EACCES (a prohibit route), or SOCKS5 replies 2, 3, 4.
    Unreachable,
    /// Anything else (a blackhole route's EINVAL, the proxy down or speaking nonsense, no
    /// file descriptors left): the SYN is dropped and the client retries.
    Other(io::Error),
}

impl Fail {
    fn into_io(self) -> io::Error {
        match self {
            Fail::Refused => io::Error::from(io::ErrorKind::ConnectionRefused),
            Fail::Unreachable => io::Error::other("unreachable"),
            Fail::Other(e) => e,
        }
    }
}

// Linux's errno values (asm-generic/errno.h), for the kinds std has no stable name for
// at this crate's minimum Rust version.
const EACCES: i32 = 13;
const ENETUNREACH: i32 = 101;
const EHOSTUNREACH: i32 = 113;

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            return Fail::Refused;
        }
        match e.raw_os_error() {
            Some(ENETUNREACH | EHOSTUNREACH | EACCES) => Fail::Unreachable,
            _ => Fail::Other(e),
        }
    }
}

/// Where upstream sockets are made.
enum Egress {
    /// In the relay's own namespace. The kernel must not route the destinations back into
    /// the TUN (a routing loop): route only prefixes into the TUN that this namespace
    /// reaches some other way, or use --egress-netns.
    Direct,
    /// By a thread that has entered another namespace; sockets keep the namespace they were
    /// made in.
    Netns(std::sync::mpsc::Sender<SocketRequest>),
}

/// A request to the egress thread.
struct SocketRequest {
    udp: bool,
    v6: bool,
    reply: oneshot::Sender<io::Result<Made>>,
}

/// A socket the egress thread made.
enum Made {
    Tcp(tokio::net::TcpSocket),
    Udp(std::net::UdpSocket),
}

impl Egress {
    /// Starts the thread that makes sockets inside namespace `name`, and waits until it is
    /// there (a missing namespace is an error here, not at the first flow).
    async fn in_netns(name: &str) -> io::Result<Egress> {
        let (tx, rx) = std::sync::mpsc::channel::<SocketRequest>();
        let (ready_tx, ready_rx) = oneshot::channel::<io::Result<()>>();
        let ready_tx = Arc::new(Mutex::new(Some(ready_tx)));
        let name = name.to_owned();
        std::thread::Builder::new()
            .name("egress".into())
            .spawn(move || {
                let ready = Arc::clone(&ready_tx);
                let served = synack::tokio::netns::run_in_named(&name, move || {
                    if let Some(t) = ready.lock().ok().and_then(|mut t| t.take()) {
                        let _ = t.send(Ok(()));
                    }
                    // Until every sender is gone, i.e. until the relay ends.
                    for req in rx {
                        // Its flow was cancelled while the request waited: no socket.
                        if req.reply.is_closed() {
                            continue;
                        }
                        let made = make_socket(req.udp, req.v6);
                        let _ = req.reply.send(made);
                    }
                });
                if let Err(e) = served {
                    if let Some(t) = ready_tx.lock().ok().and_then(|mut t| t.take()) {
                        let _ = t.send(Err(e));
                    }
                }
            })?;
        ready_rx
            .await
            .map_err(|_| io::Error::other("the egress thread ended before it started"))??;
        Ok(Egress::Netns(tx))
    }

    async fn make(&self, udp: bool, v6: bool) -> io::Result<Made> {
        match self {
            Egress::Direct => make_socket(udp, v6),
            Egress::Netns(requests) => {
                let (reply, made) = oneshot::channel();
                let gone = || io::Error::other("the egress namespace's thread has ended");
                requests
                    .send(SocketRequest { udp, v6, reply })
                    .map_err(|_| gone())?;
                made.await.map_err(|_| gone())?
            }
        }
    }

    /// A TCP socket, not connected yet, for `dst`'s family.
    async fn tcp_socket(&self, dst: SocketAddr) -> io::Result<tokio::net::TcpSocket> {
        match self.make(false, dst.is_ipv6()).await? {
            Made::Tcp(s) => Ok(s),
            Made::Udp(_) => Err(io::Error::other("the egress thread made the wrong socket")),
        }
    }

    /// A UDP socket on an ephemeral port of the wildcard address of `dst`'s family.
    async fn udp_socket(&self, dst: SocketAddr) -> io::Result<tokio::net::UdpSocket> {
        match self.make(true, dst.is_ipv6()).await? {
            Made::Udp(s) => tokio::net::UdpSocket::from_std(s),
            Made::Tcp(_) => Err(io::Error::other("the egress thread made the wrong socket")),
        }
    }
}

/// Makes a socket in the calling thread's namespace. A UDP socket is bound and
/// non-blocking, ready for tokio's `UdpSocket::from_std`.
fn make_socket(udp: bool, v6: bool) -> io::Result<Made> {
    if udp {
        let any = if v6 {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        let s = std::net::UdpSocket::bind(any)?;
        s.set_nonblocking(true)?;
        Ok(Made::Udp(s))
    } else if v6 {
        Ok(Made::Tcp(tokio::net::TcpSocket::new_v6()?))
    } else {
        Ok(Made::Tcp(tokio::net::TcpSocket::new_v4()?))
    }
}

/// Where flows go: kernel sockets made by [`Egress`], straight to the destination or to a
/// SOCKS5 proxy.
struct Upstream {
    egress: Egress,
    socks5: Option<SocketAddr>,
}

impl Upstream {
    fn describe(&self, netns: Option<&str>) -> String {
        let via = match self.socks5 {
            Some(proxy) => format!("through SOCKS5 proxy {proxy}"),
            None => "direct".to_owned(),
        };
        match netns {
            Some(ns) => format!("{via}, sockets in namespace {ns}"),
            None => via,
        }
    }

    /// A connection to `dst`, directly or through the proxy's CONNECT.
    async fn connect_tcp(&self, dst: SocketAddr) -> Result<tokio::net::TcpStream, Fail> {
        match self.socks5 {
            None => Ok(self.egress.tcp_socket(dst).await?.connect(dst).await?),
            Some(proxy) => {
                let mut control = self.proxy_connection(proxy).await?;
                socks5::request(&mut control, socks5::CONNECT, dst).await?;
                Ok(control)
            }
        }
    }

    /// A session's upstream for `dst`: a kernel UDP socket connected to it, or a SOCKS5 UDP
    /// association (RFC 1928 §7) and a socket connected to the proxy's relay address.
    async fn open_udp(&self, dst: SocketAddr) -> io::Result<UdpUpstream> {
        match self.socks5 {
            None => {
                let socket = self.egress.udp_socket(dst).await?;
                socket.connect(dst).await?;
                Ok(UdpUpstream {
                    socket,
                    control: None,
                })
            }
            Some(proxy) => {
                let mut control = self.proxy_connection(proxy).await.map_err(Fail::into_io)?;
                // We do not know our own address as the proxy sees it: zeros (§7).
                let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
                let bound = socks5::request(&mut control, socks5::UDP_ASSOCIATE, any)
                    .await
                    .map_err(Fail::into_io)?;
                // The relay's address is where every datagram goes: a name (which we cannot
                // resolve) or port 0 would send them to the proxy's port 0.
                let mut relay_at = match bound {
                    Some(a) if a.port() != 0 => a,
                    _ => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "SOCKS5 proxy {proxy}: UDP ASSOCIATE replied no usable relay \
                                 address (a name, or port 0)"
                            ),
                        ))
                    }
                };
                // A proxy that answers with the unspecified address means its own.
                if relay_at.ip().is_unspecified() {
                    relay_at.set_ip(proxy.ip());
                }
                let socket = self.egress.udp_socket(relay_at).await?;
                socket.connect(relay_at).await?;
                Ok(UdpUpstream {
                    socket,
                    control: Some(control),
                })
            }
        }
    }

    /// A connection to the proxy that has passed the method negotiation. A proxy that
    /// refuses or cannot be reached is the relay's problem, not the destination's: the SYN
    /// is dropped ([`Fail::Other`]), not refused.
    async fn proxy_connection(&self, proxy: SocketAddr) -> Result<tokio::net::TcpStream, Fail> {
        let proxy_down = |e: io::Error| {
            Fail::Other(io::Error::new(
                e.kind(),
                format!("SOCKS5 proxy {proxy}: {e}"),
            ))
        };
        let socket = self.egress.tcp_socket(proxy).await.map_err(proxy_down)?;
        let mut s = socket.connect(proxy).await.map_err(proxy_down)?;
        let _ = s.set_nodelay(true);
        socks5::negotiate(&mut s).await.map_err(proxy_down)?;
        Ok(s)
    }
}

/// A SOCKS5 client (RFC 1928): the no-authentication method, CONNECT and UDP ASSOCIATE
/// with IPv4 and IPv6 addresses.
mod socks5 {
    use super::*;

    /// RFC 1928 §4: the CONNECT command.
    pub const CONNECT: u8 = 1;
    /// RFC 1928 §4: the UDP ASSOCIATE command.
    pub const UDP_ASSOCIATE: u8 = 3;

    fn protocol(what: &str) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, format!("SOCKS5: {what}"))
    }

    /// RFC 1928 §3: offer only "no authentication required" (X'00') and insist on it.
    pub async fn negotiate(s: &mut tokio::net::TcpStream) -> io::Result<()> {
        s.write_all(&[5, 1, 0]).await?;
        let mut choice = [0u8; 2];
        s.read_exact(&mut choice).await?;
        match choice {
            [5, 0] => Ok(()),
            [5, 0xff] => Err(protocol(
                "the proxy accepts none of our methods (no authentication)",
            )),
            _ => Err(protocol("unexpected method selection")),
        }
    }

    /// RFC 1928 §5: ATYP, DST.ADDR and DST.PORT of `addr` appended to `out`.
    pub fn put_addr(out: &mut Vec<u8>, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => {
                out.push(1);
                out.extend_from_slice(&ip.octets());
            }
            IpAddr::V6(ip) => {
                out.push(4);
                out.extend_from_slice(&ip.octets());
            }
        }
        out.extend_from_slice(&addr.port().to_be_bytes());
    }

    /// RFC 1928 §7: the header of a datagram to the proxy's relay, RSV X'0000', FRAG 0
    /// (whole datagram), then the destination (10 bytes for IPv4, 22 for IPv6).
    pub fn put_udp_header(out: &mut Vec<u8>, dst: SocketAddr) {
        out.extend_from_slice(&[0, 0, 0]);
        put_addr(out, dst);
    }

    /// RFC 1928 §7: the payload of a datagram from the proxy's relay, if it is whole (FRAG
    /// 0: this client does no reassembly, and "an implementation that does not support
    /// fragmentation MUST drop any datagram whose FRAG field is other than X'00'") and
    /// comes from `dst`; `None` to drop it.
    pub fn strip_udp_header(packet: &[u8], dst: SocketAddr) -> Option<Vec<u8>> {
        let (&[0, 0, frag, atyp], rest) = packet.split_first_chunk::<4>()? else {
            return None;
        };
        if frag != 0 {
            return None;
        }
        let (from, payload) = match atyp {
            1 => {
                let (a, rest) = rest.split_first_chunk::<6>()?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                (
                    SocketAddr::from((ip, u16::from_be_bytes([a[4], a[5]]))),
                    rest,
                )
            }
            4 => {
                let (a, rest) = rest.split_first_chunk::<18>()?;
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&a[..16]);
                let ip = Ipv6Addr::from(ip);
                (
                    SocketAddr::from((ip, u16::from_be_bytes([a[16], a[17]]))),
                    rest,
                )
            }
            _ => return None,
        };
        // Compare as the destination's family (a proxy may write an IPv4 source mapped).
        let same = from == dst
            || matches!((from.ip(), dst.ip()), (IpAddr::V6(f), IpAddr::V4(d))
                if f.to_ipv4_mapped() == Some(d) && from.port() == dst.port());
        same.then(|| payload.to_vec())
    }

    /// RFC 1928 §4-6: sends a request and reads the reply; Ok with BND.ADDR:BND.PORT on
    /// success (X'00'; `None` when it is a domain name, which this client cannot resolve),
    /// else the reply code mapped onto what the client should see. An error on the control
    /// connection itself (even EHOSTUNREACH or ECONNREFUSED) is the proxy's, not the
    /// destination's: [`Fail::Other`], so the SYN is dropped rather than answered.
    pub async fn request(
        s: &mut tokio::net::TcpStream,
        command: u8,
        addr: SocketAddr,
    ) -> Result<Option<SocketAddr>, Fail> {
        let mut req = vec![5, command, 0];
        put_addr(&mut req, addr);
        s.write_all(&req).await.map_err(Fail::Other)?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await.map_err(Fail::Other)?;
        if head[0] != 5 {
            return Err(Fail::Other(protocol("reply of another version")));
        }
        // RFC 1928 §6, REP.
        match head[1] {
            0 => {}
            5 => return Err(Fail::Refused),
            2..=4 => return Err(Fail::Unreachable),
            // 1 general failure, 6 TTL expired, 7/8 unsupported, others unassigned: the
            // client retries as after a lost SYN.
            code => return Err(Fail::Other(protocol(&format!("the proxy replied {code}")))),
        }
        let bound = match head[3] {
            1 => {
                let mut a = [0u8; 6];
                s.read_exact(&mut a).await.map_err(Fail::Other)?;
                Some(SocketAddr::from((
                    [a[0], a[1], a[2], a[3]],
                    u16::from_be_bytes([a[4], a[5]]),
                )))
            }
            4 => {
                let mut a = [0u8; 18];
                s.read_exact(&mut a).await.map_err(Fail::Other)?;
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&a[..16]);
                Some(SocketAddr::from((ip, u16::from_be_bytes([a[16], a[17]]))))
            }
            3 => {
                // A name we cannot use (no DNS here); read past it.
                let len = s.read_u8().await.map_err(Fail::Other)?;
                let mut skip = vec![0u8; usize::from(len) + 2];
                s.read_exact(&mut skip).await.map_err(Fail::Other)?;
                None
            }
            _ => return Err(Fail::Other(protocol("unknown address type in the reply"))),
        };
        Ok(bound)
    }
}

// ---------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    tcp_closed: AtomicU64,
    tcp_reset: AtomicU64,
    tcp_refused: AtomicU64,
    tcp_unreachable: AtomicU64,
    tcp_timed_out: AtomicU64,
    tcp_failed: AtomicU64,
    tcp_accept_failed: AtomicU64,
    tcp_accept_timed_out: AtomicU64,
    /// SYNs to the TUN's own link, refused without an upstream attempt.
    tcp_own_link: AtomicU64,
    /// SYNs dropped at a limit (--max-flows), or whose connect made room for a newer one
    /// (--max-pending-connects).
    tcp_busy: AtomicU64,
    tcp_bytes_up: AtomicU64,
    tcp_bytes_down: AtomicU64,
    udp_idle: AtomicU64,
    udp_evicted_end: AtomicU64,
    udp_failed: AtomicU64,
    /// Sessions evicted to make room (--max-udp-sessions).
    udp_evicted: AtomicU64,
    /// Datagrams taken from the stack.
    udp_datagrams_in: AtomicU64,
    /// Datagrams dropped either way: queues full, not relayable (the TUN's own link among
    /// them), a failed send, a reply from elsewhere, fragmented or malformed (SOCKS5), or
    /// lost to an ICMP error.
    udp_dropped: AtomicU64,
    /// Of those, datagrams to the TUN's own link (never relayed: they would loop).
    udp_own_link: AtomicU64,
    /// Of those, first datagrams of new pairs dropped while the sessions churned, to be let
    /// through on their client's retry (see [`UdpSessions`]).
    udp_held_back: AtomicU64,
    udp_bytes_up: AtomicU64,
    udp_datagrams_up: AtomicU64,
    udp_bytes_down: AtomicU64,
    udp_datagrams_down: AtomicU64,
}

impl Stats {
    fn record(&self, outcome: Outcome, up: u64, down: u64) {
        let counter = match outcome {
            Outcome::Closed => &self.tcp_closed,
            Outcome::Reset => &self.tcp_reset,
            Outcome::Refused => &self.tcp_refused,
            Outcome::Unreachable => &self.tcp_unreachable,
            Outcome::TimedOut => &self.tcp_timed_out,
            Outcome::Failed => &self.tcp_failed,
            Outcome::AcceptFailed => &self.tcp_accept_failed,
            Outcome::AcceptTimedOut => &self.tcp_accept_timed_out,
            Outcome::OwnLink => &self.tcp_own_link,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.tcp_bytes_up.fetch_add(up, Ordering::Relaxed);
        self.tcp_bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    fn record_udp(&self, end: UdpEnd, up_b: u64, up_n: u64, down_b: u64, down_n: u64) {
        let counter = match end {
            UdpEnd::Idle => &self.udp_idle,
            UdpEnd::Evicted => &self.udp_evicted_end,
            UdpEnd::Failed => &self.udp_failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.udp_bytes_up.fetch_add(up_b, Ordering::Relaxed);
        self.udp_datagrams_up.fetch_add(up_n, Ordering::Relaxed);
        self.udp_bytes_down.fetch_add(down_b, Ordering::Relaxed);
        self.udp_datagrams_down.fetch_add(down_n, Ordering::Relaxed);
    }

    fn print_summary(&self) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!(
            "summary: tcp flows: closed {} reset {} refused {} unreachable {} timed-out {} \
             failed {} accept-failed {} accept-timed-out {} own-link {} dropped-at-limit {}; bytes up {} down {}",
            g(&self.tcp_closed),
            g(&self.tcp_reset),
            g(&self.tcp_refused),
            g(&self.tcp_unreachable),
            g(&self.tcp_timed_out),
            g(&self.tcp_failed),
            g(&self.tcp_accept_failed),
            g(&self.tcp_accept_timed_out),
            g(&self.tcp_own_link),
            g(&self.tcp_busy),
            g(&self.tcp_bytes_up),
            g(&self.tcp_bytes_down),
        );
        // Sessions still open at exit are not counted as ended.
        println!(
            "summary: udp sessions ended: idle {} evicted {} failed {} (evictions to make \
             room {}); datagrams in {} dropped {} (to the own link {}, held back for a retry {}); up {} B ({} datagrams) down {} B ({} \
             datagrams)",
            g(&self.udp_idle),
            g(&self.udp_evicted_end),
            g(&self.udp_failed),
            g(&self.udp_evicted),
            g(&self.udp_datagrams_in),
            g(&self.udp_dropped),
            g(&self.udp_own_link),
            g(&self.udp_held_back),
            g(&self.udp_bytes_up),
            g(&self.udp_datagrams_up),
            g(&self.udp_bytes_down),
            g(&self.udp_datagrams_down),
        );
    }
}
