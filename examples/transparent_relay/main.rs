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
//! Never relayed (see [`destination`]): a destination on the TUN's own link (the stack's
//! addresses and the prefixes of --host-addr and --host-addr6), since the upstream socket
//! would be routed straight back into the TUN; and a loopback, unspecified, 0.0.0.0/8,
//! broadcast, multicast or link-local destination (169.254.0.0/16, where clouds keep their
//! metadata service; fe80::/10), IPv4-mapped or not, since anything can be written into a
//! TUN and an upstream socket to 127.0.0.1 would reach the relay host's own services. A SYN there is refused (an RST), a datagram dropped; both are counted in the
//! summary ("own-link", "martian").
//!
//! Bounded everywhere, since anything can be sent into a TUN: at most `--max-flows` relayed
//! TCP flows (a SYN beyond it is dropped unanswered; the client retransmits) and
//! `--max-pending-connects` upstream connects at once (a SYN beyond it cancels one at
//! random, a client's retry last, whose SYN is dropped unanswered, so a SYN flood to random
//! destinations opens no more sockets than that and cannot starve new clients, nor those
//! whose upstream is slow: see [`tcp::Connects`]); at most `--max-udp-sessions` UDP
//! sessions (a new one evicts the longest idle unanswered one, and while sessions churn,
//! waits for its client's retry: see [`udp::UdpSessions`]) and 4 MiB of datagrams queued
//! upstream; a copy buffer only while bytes are moving or wait to be written (see
//! [`buffers`]); and the stack's own bounds on held SYNs. At start the relay raises its
//! open-file limit as far as it may (each flow and session holds an upstream socket), and
//! warns if that is still short of the limits above.
//!
//! The modules: [`args`] (the command line), [`tcp`] (flows and the splice), [`buffers`]
//! (the copy buffers and the copy loop), [`udp`] (sessions), [`upstream`] (kernel sockets,
//! here or in another namespace, and the way through a proxy), [`socks5`] (the proxy
//! protocol), [`destination`] (what is never relayed), [`stats`] (the summary) and [`sys`]
//! (the one system call std has no wrapper for).
//!
//! ```sh
//! ip netns exec C transparent_relay --egress-netns E -v   # then: ip route add PREFIX dev synack0
//! ```
//! README.md, "Transparent relay", has the whole set-up.
#![deny(unsafe_code)]

#[path = "../common/mod.rs"]
mod common;

mod args;
mod buffers;
mod destination;
mod socks5;
mod stats;
mod sys;
mod tcp;
mod udp;
mod upstream;

use std::io;
use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::NetArgs;
use synack::core::InterceptConfig;
use tokio::sync::Semaphore;

use crate::args::Args;
use crate::stats::Stats;
use crate::tcp::Connects;
use crate::upstream::{Egress, Upstream};

fn main() -> ExitCode {
    let args = Args::parse_command_line();
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

/// -v is the stack's debug log, as for every example (DESIGN.md's command line), and the
/// relay's one line per flow on stdout besides; -vv the trace (RUST_LOG overrides the log).
fn init_tracing(verbose: u8) {
    common::init_tracing_at(match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    });
}

async fn run(args: Args) -> io::Result<()> {
    args.check()?;
    check_fd_limit(&args);
    let connect_timeout = Duration::from_secs_f64(args.connect_timeout);
    let egress = match &args.egress_netns {
        Some(name) => Egress::in_netns(name).await?,
        None => Egress::Direct,
    };
    let socks5 = match &args.socks5 {
        Some(proxy) => Some(args::resolve_proxy(proxy).await?),
        None => None,
    };
    let upstream = Upstream { egress, socks5 };
    let stack = args.net.open_stack_with(|config| {
        let defaults = InterceptConfig::default();
        // At least as many held SYNs as the relay connects for at once, so that the relay's
        // bound, which makes room by cancelling a connect, is the one that acts.
        let max_pending = defaults.max_pending.max(args.max_pending_connects);
        config.intercept(Some(InterceptConfig {
            max_pending,
            // Every flow of a tun2socks set-up comes from one source (the kernel's address
            // on the TUN, or the one router in front of it): a per-source share would cap
            // the whole relay at it. The total bound still holds.
            max_per_source: max_pending,
            // The stack must not give up on a SYN before the relay has: its own decision
            // timeout stays well past the connect timeout, so that "no answer" is always
            // the relay's drop (and a SYN is never left to the stack's timer while a
            // connect runs).
            decision_timeout: connect_timeout + Duration::from_secs(2),
            // The same for datagrams: the catch-all queue's whole size for the one source.
            udp_max_per_source: synack::core::endpoint::CATCH_ALL_DATAGRAMS,
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
        stack.interface_name().unwrap_or(&args.net.tun),
        args.net.host_addr,
        relay.upstream.describe(args.egress_netns.as_deref()),
    );

    let tcp = tokio::spawn(tcp::tcp_loop(interceptor, Arc::clone(&relay)));
    let udp = tokio::spawn(udp::udp_loop(udp_interceptor, Arc::clone(&relay)));
    let joined = |what: &str, r: Result<io::Result<()>, tokio::task::JoinError>| match r {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!(
            "the {what} relay task failed: {e}"
        ))),
    };
    let result = tokio::select! {
        r = tcp => joined("TCP", r),
        r = udp => joined("UDP", r),
        r = common::shutdown_signal() => r,
    };
    relay.stats.print_summary();
    args.net.print_stats(&stack);
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
            + s.drop_signed
            + s.drop_not_for_us
            + s.drop_unsupported
            + s.drop_memory
            + s.drop_other,
    );
    result
}

/// Raises the open-file limit to its hard limit (each relayed flow and UDP session holds
/// an upstream socket, two for a UDP session through SOCKS5, and the usual soft limit of
/// 1024 is far below --max-flows: past it a SYN would meet EMFILE and be dropped), and
/// warns once if even that is short of what the limits ask for.
fn check_fd_limit(args: &Args) {
    let limit = match sys::raise_fd_limit() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("cannot raise the open-file limit: {e}");
            return;
        }
    };
    let needed = args.fds_needed();
    if usize::try_from(limit).unwrap_or(usize::MAX) < needed {
        tracing::warn!(
            "the open-file limit is {limit}, but --max-flows {} and \
             --max-udp-sessions {} may need {needed}; beyond it new flows fail (raise the hard \
             limit, e.g. ulimit -Hn, or lower those)",
            args.max_flows,
            args.max_udp_sessions,
        );
    }
}

/// What every flow task shares.
pub(crate) struct Relay {
    /// The TUN's own link (--host-addr, --host-addr6, the stack's addresses): destinations
    /// there are never relayed (see [`destination::not_relayed`]).
    pub(crate) link: NetArgs,
    pub(crate) upstream: Upstream,
    pub(crate) connect_timeout: Duration,
    /// The upstream connects in progress.
    pub(crate) connects: Mutex<Connects>,
    /// One per connect in progress (--max-pending-connects), held until its socket is
    /// closed or has become a relayed flow's.
    pub(crate) connect_permits: Arc<Semaphore>,
    /// Relayed flows now (connecting or connected).
    pub(crate) flows: Arc<AtomicUsize>,
    pub(crate) max_flows: usize,
    pub(crate) verbose: bool,
    pub(crate) stats: Stats,
    pub(crate) udp_timeout: Duration,
    /// One per UDP session (--max-udp-sessions), held until its socket is closed.
    pub(crate) udp_permits: Arc<Semaphore>,
    /// Bytes of client datagrams queued for upstream in all sessions together.
    pub(crate) udp_queued: Arc<AtomicUsize>,
    /// The origin of the sessions' idle clocks.
    pub(crate) epoch: Instant,
}

impl Relay {
    /// Milliseconds since [`Relay::epoch`]: the sessions' idle clocks.
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
