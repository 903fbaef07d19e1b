//! A tun2socks-style relay: every TCP flow the kernel routes into the TUN, whatever its
//! destination, is carried to that destination through a kernel socket (in this namespace,
//! or in the one `--egress-netns` names) or through a SOCKS5 proxy (`--socks5`).
//!
//! The client's SYN is held (synack's transparent mode) while the relay opens the upstream
//! connection, and answered only with the upstream's answer: connected, the handshake
//! completes and bytes flow; refused, the client gets an RST; unreachable, an ICMP
//! destination unreachable; no answer within `--connect-timeout`, nothing at all, so the
//! client's SYN times out as it would on the direct path (after gVisor's `tcp.Forwarder`).
//!
//! Bounded everywhere, since anything can be sent into a TUN: at most
//! `--max-pending-connects` upstream connects at once and `--max-flows` relayed flows (a SYN
//! beyond either is dropped, so a SYN flood to random destinations opens no more sockets than
//! that), a copy buffer only while bytes are moving, and the stack's own bounds on held SYNs.
//!
//! ```sh
//! ip netns exec C transparent_relay --egress-netns E -v   # then: ip route add PREFIX dev synack0
//! ```
//! README.md, "Transparent relay", has the whole set-up.

mod common;

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use clap::Parser;
use common::NetArgs;
use synack::core::InterceptConfig;
use synack::tokio::intercept::{IncomingSyn, Interceptor};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

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
    /// Relay through this SOCKS5 proxy (RFC 1928, no authentication; an IP address and
    /// port): CONNECT for TCP, UDP ASSOCIATE for UDP.
    #[arg(long, value_name = "IP:PORT")]
    socks5: Option<SocketAddr>,
    /// Seconds to wait for the upstream connection; a SYN whose upstream has not answered by
    /// then is dropped unanswered (the client's connect times out).
    #[arg(long, default_value_t = 4.0, value_name = "SECS")]
    connect_timeout: f64,
    /// Upstream connects in progress at once; SYNs beyond it are dropped (the client
    /// retransmits).
    #[arg(long, default_value_t = 256, value_name = "N")]
    max_pending_connects: usize,
    /// Relayed TCP flows at once (connecting or connected); SYNs beyond it are dropped.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_flows: usize,
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
    if args.max_pending_connects == 0 || args.max_flows == 0 {
        return Err(invalid(
            "--max-pending-connects and --max-flows must be at least 1".into(),
        ));
    }
    let connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    let egress = match &args.egress_netns {
        Some(name) => Egress::in_netns(name).await?,
        None => Egress::Direct,
    };
    let upstream = Upstream {
        egress,
        socks5: args.socks5,
    };
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
    let relay = Arc::new(Relay {
        upstream,
        connect_timeout,
        connects: Arc::new(Semaphore::new(args.max_pending_connects)),
        flows: Arc::new(AtomicUsize::new(0)),
        max_flows: args.max_flows,
        verbose: args.net.verbose > 0,
        stats: Stats::default(),
    });
    eprintln!(
        "transparent_relay: relaying what is routed into {} ({}), upstream {}",
        args.net.tun,
        args.net.host_addr,
        relay.upstream.describe(args.egress_netns.as_deref()),
    );

    let tcp = tokio::spawn(tcp_loop(interceptor, Arc::clone(&relay)));
    let result = tokio::select! {
        r = tcp => match r {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(format!("the TCP relay task failed: {e}"))),
        },
        r = shutdown_signal() => r,
    };
    relay.stats.print_summary();
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
    upstream: Upstream,
    connect_timeout: Duration,
    /// One permit per upstream connect in progress.
    connects: Arc<Semaphore>,
    /// Relayed flows now (connecting or connected).
    flows: Arc<AtomicUsize>,
    max_flows: usize,
    verbose: bool,
    stats: Stats,
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

/// Takes each held SYN and starts its flow, or drops it when the relay is at a limit (the
/// client retransmits; a flood of SYNs to random destinations so costs no more than
/// `--max-pending-connects` sockets). Returns only when the stack stops.
async fn tcp_loop(interceptor: Interceptor, relay: Arc<Relay>) -> io::Result<()> {
    loop {
        let syn = interceptor.next().await?;
        let Ok(permit) = Arc::clone(&relay.connects).try_acquire_owned() else {
            relay.stats.tcp_busy.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let Some(slot) = FlowSlot::take(&relay.flows, relay.max_flows) else {
            relay.stats.tcp_busy.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        tokio::spawn(Arc::clone(&relay).tcp_flow(syn, permit, slot));
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
    /// Upstream connected but the client's handshake did not complete.
    AcceptFailed,
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
        }
    }
}

impl Relay {
    /// One flow: upstream first, then the answer to the SYN, then the bytes.
    async fn tcp_flow(
        self: Arc<Self>,
        syn: IncomingSyn,
        permit: OwnedSemaphorePermit,
        slot: FlowSlot,
    ) {
        let _slot = slot;
        let start = Instant::now();
        let (client, dst) = (syn.peer_addr(), syn.local_addr());
        let attempt =
            tokio::time::timeout(self.connect_timeout, self.upstream.connect_tcp(dst)).await;
        drop(permit);
        let mut detail = String::new();
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
            Ok(Ok(upstream)) => match syn.accept().await {
                Ok(inbound) => splice(inbound, upstream).await,
                Err(e) => {
                    // The client went away: so does the upstream connection, at once.
                    let _ = upstream.set_zero_linger();
                    detail = format!(" ({e})");
                    (Outcome::AcceptFailed, 0, 0)
                }
            },
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
/// error on either side resets both. Returns the outcome and the bytes sent upstream and
/// down.
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
        tokio::try_join!(
            pump(&mut in_r, &mut up_w, &up),
            pump(&mut up_r, &mut in_w, &down)
        )
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

/// The largest read of one copy step.
const CHUNK: usize = 64 * 1024;

/// Copies `r` to `w` until `r` ends, then shuts `w`'s sending side down (FIN). The buffer
/// exists only while bytes move: it is freed whenever `r` has nothing to read, so an idle
/// flow holds none.
async fn pump<R, W>(r: &mut R, w: &mut W, count: &AtomicU64) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf: Option<Vec<u8>> = None;
    loop {
        let n = poll_fn(|cx| {
            let b = buf.get_or_insert_with(|| vec![0; CHUNK]);
            let mut read = ReadBuf::new(b);
            match Pin::new(&mut *r).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => {
                    buf = None;
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
    #[allow(dead_code)]
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
    #[allow(dead_code)]
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

    /// RFC 1928 §4-6: sends a request and reads the reply; Ok with BND.ADDR:BND.PORT on
    /// success (X'00'), else the reply code mapped onto what the client should see.
    pub async fn request(
        s: &mut tokio::net::TcpStream,
        command: u8,
        addr: SocketAddr,
    ) -> Result<SocketAddr, Fail> {
        let mut req = vec![5, command, 0];
        put_addr(&mut req, addr);
        s.write_all(&req).await?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await?;
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
                s.read_exact(&mut a).await?;
                SocketAddr::from(([a[0], a[1], a[2], a[3]], u16::from_be_bytes([a[4], a[5]])))
            }
            4 => {
                let mut a = [0u8; 18];
                s.read_exact(&mut a).await?;
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&a[..16]);
                SocketAddr::from((ip, u16::from_be_bytes([a[16], a[17]])))
            }
            3 => {
                // A name we cannot use (no DNS here); read past it.
                let len = s.read_u8().await?;
                let mut skip = vec![0u8; usize::from(len) + 2];
                s.read_exact(&mut skip).await?;
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
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
    /// SYNs dropped at a limit (--max-pending-connects, --max-flows).
    tcp_busy: AtomicU64,
    tcp_bytes_up: AtomicU64,
    tcp_bytes_down: AtomicU64,
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
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.tcp_bytes_up.fetch_add(up, Ordering::Relaxed);
        self.tcp_bytes_down.fetch_add(down, Ordering::Relaxed);
    }

    fn print_summary(&self) {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        println!(
            "summary: tcp flows: closed {} reset {} refused {} unreachable {} timed-out {} \
             failed {} accept-failed {} dropped-at-limit {}; bytes up {} down {}",
            g(&self.tcp_closed),
            g(&self.tcp_reset),
            g(&self.tcp_refused),
            g(&self.tcp_unreachable),
            g(&self.tcp_timed_out),
            g(&self.tcp_failed),
            g(&self.tcp_accept_failed),
            g(&self.tcp_busy),
            g(&self.tcp_bytes_up),
            g(&self.tcp_bytes_down),
        );
    }
}
