//! The relay's command line: the flags every TUN example takes ([`NetArgs`]), where upstream
//! sockets are made, and the relay's own timeouts and limits, with their checks.

use std::io;
use std::net::SocketAddr;

use crate::common::NetArgs;

/// File descriptors the relay holds besides its flows' and sessions' sockets: the TUN's
/// queues, the runtime's epoll and signal pipes, stdio, and a margin for the pcap file and
/// the egress thread's requests in flight.
const FDS_BESIDES_FLOWS: usize = 64;

/// The most any of the limits may be: far more sockets than a process gets (and a tokio
/// semaphore takes at most 2^61 - 1 permits, which a larger number would panic).
const MAX_LIMIT: usize = 1 << 24;

/// Relays every TCP flow and UDP datagram routed into the TUN to its original destination.
#[derive(clap::Parser, Debug)]
#[command(name = "transparent_relay")]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    /// Open upstream sockets inside this network namespace (/var/run/netns/NAME, made by
    /// `ip netns add`) instead of the relay's own. With --socks5, the proxy is reached from
    /// there.
    #[arg(long, value_name = "NAME")]
    pub(crate) egress_netns: Option<String>,
    /// Relay through this SOCKS5 proxy (RFC 1928, no authentication): CONNECT for TCP, UDP
    /// ASSOCIATE for UDP. HOST:PORT; a name is looked up once, at start.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) socks5: Option<String>,
    /// Seconds to wait for the upstream connection; a SYN whose upstream has not answered by
    /// then is dropped unanswered (the client's connect times out). Once upstream has
    /// connected, the client's handshake gets as long again; past it both are dropped.
    #[arg(long, default_value_t = 4.0, value_name = "SECS")]
    pub(crate) connect_timeout: f64,
    /// Upstream connects in progress at once; a SYN beyond it cancels one at random, a
    /// client's retry last (its SYN is dropped; its client retransmits), so that a flood of
    /// SYNs to silent destinations holds no more sockets than this and cannot starve new
    /// clients, slow upstreams included.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub(crate) max_pending_connects: usize,
    /// Relayed TCP flows at once (connecting or connected); SYNs beyond it are dropped.
    /// Each holds an upstream socket: the relay raises its open-file limit to the hard
    /// limit at start, and warns if that is below this plus --max-udp-sessions (twice that
    /// with --socks5) plus 64.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub(crate) max_flows: usize,
    /// Seconds a UDP session (one client address and port to one destination) lives
    /// without a datagram either way.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub(crate) udp_timeout: f64,
    /// UDP sessions at once; a new one beyond it evicts the longest idle that never had a
    /// reply, else the longest idle (a flood from spoofed sources so costs at most this
    /// many upstream sockets, and evicts its own sessions first).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub(crate) max_udp_sessions: usize,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}

impl Args {
    /// The command line, with what `-v` adds for the relay in its help (the examples' shared
    /// flags say "-v: debug"; the relay prints its per-flow lines then too).
    pub(crate) fn parse_command_line() -> Args {
        use clap::{CommandFactory, FromArgMatches};
        let command = Args::command().mut_arg("verbose", |a| {
            a.help("-v: debug log, and one line per flow on stdout; -vv: trace; RUST_LOG overrides the log")
        });
        Args::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// Refuses timeouts and limits the relay cannot work with.
    pub(crate) fn check(&self) -> io::Result<()> {
        if !(self.connect_timeout > 0.0 && self.connect_timeout <= 600.0) {
            return Err(invalid(format!(
                "--connect-timeout {} must be between 0 and 600 seconds",
                self.connect_timeout
            )));
        }
        if !(self.udp_timeout > 0.0 && self.udp_timeout <= 86400.0) {
            return Err(invalid(format!(
                "--udp-timeout {} must be between 0 and 86400 seconds",
                self.udp_timeout
            )));
        }
        let limits = [
            self.max_pending_connects,
            self.max_flows,
            self.max_udp_sessions,
        ];
        if limits.iter().any(|n| !(1..=MAX_LIMIT).contains(n)) {
            return Err(invalid(format!(
                "--max-pending-connects, --max-flows and --max-udp-sessions must be between 1 \
                 and {MAX_LIMIT}"
            )));
        }
        Ok(())
    }

    /// The file descriptors the limits may take at once: an upstream socket per flow (a
    /// pending connect is a flow already), one per UDP session and, through SOCKS5, its
    /// association's control connection too.
    pub(crate) fn fds_needed(&self) -> usize {
        let per_session = if self.socks5.is_some() { 2 } else { 1 };
        self.max_flows
            .saturating_add(self.max_udp_sessions.saturating_mul(per_session))
            .saturating_add(FDS_BESIDES_FLOWS)
    }
}

/// The address of `--socks5 HOST:PORT`, looked up once (in the relay's own namespace).
pub(crate) async fn resolve_proxy(proxy: &str) -> io::Result<SocketAddr> {
    tokio::net::lookup_host(proxy)
        .await
        .map_err(|e| invalid(format!("--socks5 {proxy}: {e}")))?
        .next()
        .ok_or_else(|| invalid(format!("--socks5 {proxy}: no address")))
}
