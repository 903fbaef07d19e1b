//! The namespaces, links and kernel-side processes the measurements run on.
//!
//! Every namespace is a [`NetNs`] (deleted on drop, killing what runs inside), every helper
//! process a [`Helper`] (killed on drop), so that every exit path, including an error, a
//! panic, or Ctrl-C (which `main` turns into a drop of the running benchmark), leaves nothing
//! behind. Only addresses in 198.18.0.0/15 (RFC 2544) are used:
//!
//! - TUN namespaces: kernel 198.18.0.1/24, user-space stack 198.18.0.2;
//! - the veth pair: 198.18.1.1/24 (client side) and 198.18.1.2/24 (server side).

use std::io::{self, BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use synack_tokio::netns::NetNs;

use crate::proto::Outcome;

/// The prefix of every namespace the harness makes (`synack-bench-PID-N`).
pub const NS_PREFIX: &str = "synack-bench";
/// The kernel's address on a TUN.
pub const TUN_HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The user-space stack's address on a TUN.
pub const TUN_STACK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The veth client side's address.
pub const VETH_A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The veth server side's address.
pub const VETH_B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
/// The veth interfaces' names (one in each namespace).
pub const VETH_A_IF: &str = "sbva";
/// See [`VETH_A_IF`].
pub const VETH_B_IF: &str = "sbvb";
/// The kernel-side protocol server's port.
pub const PORT_SERVE: u16 = 5001;
/// The port of the listener under test in the handshake benchmark.
pub const PORT_HANDSHAKE: u16 = 5002;

/// Runs `cmd` to completion; a non-zero exit is an error carrying its stderr.
pub use synack_tokio::netns::run_checked as run;

/// `ip -n NS ARGS...`.
pub fn ip(ns: &str, args: &[&str]) -> io::Result<()> {
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// A new namespace, with a wide ephemeral port range so that thousands of short connections
/// per second never run out of ports.
pub fn namespace() -> io::Result<NetNs> {
    let ns = NetNs::new(NS_PREFIX)?;
    run(ns
        .command("sysctl")
        .args(["-qw", "net.ipv4.ip_local_port_range=10000 65000"]))?;
    Ok(ns)
}

/// Deletes `synack-bench-PID-N` namespaces whose process is gone: the leftovers of a run that
/// was killed with SIGKILL, the one exit path no destructor sees.
pub fn remove_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(&format!("{NS_PREFIX}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing stale namespace {name}");
            let _ = run(Command::new("ip").args(["netns", "delete", name]));
        }
    }
}

/// Our namespaces that still exist (the test checks that none is left).
pub fn own_namespaces(pid: u32) -> Vec<String> {
    let prefix = format!("{NS_PREFIX}-{pid}-");
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(&prefix))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Two namespaces joined by a veth pair with the default 1500-byte MTU (and the kernel's
/// default offloads: this is the practical ceiling, GSO included).
pub struct Veth {
    /// The client side (198.18.1.1).
    pub a: NetNs,
    /// The server side (198.18.1.2).
    pub b: NetNs,
}

impl Veth {
    /// Makes both namespaces and the link.
    pub fn new() -> io::Result<Veth> {
        let veth = Veth {
            a: namespace()?,
            b: namespace()?,
        };
        let (a, b) = (veth.a.name(), veth.b.name());
        ip(
            a,
            &[
                "link", "add", VETH_A_IF, "type", "veth", "peer", "name", VETH_B_IF, "netns", b,
            ],
        )?;
        ip(
            a,
            &["addr", "add", &format!("{VETH_A}/24"), "dev", VETH_A_IF],
        )?;
        ip(
            b,
            &["addr", "add", &format!("{VETH_B}/24"), "dev", VETH_B_IF],
        )?;
        ip(a, &["link", "set", VETH_A_IF, "up"])?;
        ip(b, &["link", "set", VETH_B_IF, "up"])?;
        Ok(veth)
    }
}

/// Makes `percent` % of the packets through `iface` in `ns` vanish, in both directions, with
/// nft's random number generator (this kernel has no netem). `0` removes the rule.
///
/// The kernel hands the netfilter hooks whole GSO super-packets (up to 64 KiB), so a drop
/// there would remove dozens of segments at once. Setting `gso_max_segs 1` on the interface
/// makes every packet the hooks see a single segment, so the loss rate is per segment, as for
/// the user-space stacks (which never batch).
pub fn set_loss(ns: &NetNs, iface: &str, percent: u32) -> io::Result<()> {
    let nft = |args: &[&str]| run(ns.command("nft").args(args));
    // Start from nothing (the table may not exist yet: ignore that error).
    let _ = nft(&["delete", "table", "inet", "sbloss"]);
    if percent == 0 {
        return Ok(());
    }
    ip(
        ns.name(),
        &["link", "set", "dev", iface, "gso_max_segs", "1"],
    )?;
    nft(&["add", "table", "inet", "sbloss"])?;
    for (chain, hook, dir) in [("in", "input", "iifname"), ("out", "output", "oifname")] {
        nft(&[
            "add",
            "chain",
            "inet",
            "sbloss",
            chain,
            &format!("{{ type filter hook {hook} priority 0 ; policy accept ; }}"),
        ])?;
        nft(&[
            "add",
            "rule",
            "inet",
            "sbloss",
            chain,
            dir,
            iface,
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            &percent.to_string(),
            "drop",
        ])?;
    }
    Ok(())
}

/// Sets the kernel's congestion control in `ns` (`None`: leave the machine's default).
pub fn set_kernel_cc(ns: &NetNs, cc: Option<&str>) -> io::Result<()> {
    match cc {
        Some(cc) => run(ns
            .command("sysctl")
            .args(["-qw", &format!("net.ipv4.tcp_congestion_control={cc}")])),
        None => Ok(()),
    }
}

/// The kernel's SNMP and TcpExt counters in `ns` (`nstat -saz`: absolute values, no history
/// file touched); empty if nstat fails.
pub fn nstat(ns: &NetNs) -> std::collections::BTreeMap<String, u64> {
    let Ok(out) = ns.command("nstat").args(["-saz"]).output() else {
        return Default::default();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            let value = it.next()?.parse().ok()?;
            Some((name.to_owned(), value))
        })
        .collect()
}

/// The loss-recovery counters that moved between two [`nstat`] snapshots, `Name=delta`.
pub fn nstat_delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> String {
    const KEYS: &[&str] = &[
        "TcpOutSegs",
        "TcpRetransSegs",
        "TcpExtTCPTimeouts",
        "TcpExtTCPLossProbes",
        "TcpExtTCPLossProbeRecovery",
        "TcpExtTCPSackRecovery",
        "TcpExtTCPLostRetransmit",
        "TcpExtTCPSpuriousRTOs",
        "TcpExtTCPSpuriousRtxHostQueues",
        "TcpExtTCPDSACKUndo",
        "TcpExtTCPLossUndo",
        "TcpExtTCPFullUndo",
        "TcpExtTCPPartialUndo",
        "TcpExtTCPDSACKRecv",
        "TcpExtTCPDSACKOldSent",
        "TcpExtTCPDSACKOfoSent",
        "TcpExtTCPOFOQueue",
        "TcpExtTCPOFODrop",
        "TcpExtTCPRcvQDrop",
        "TcpExtTCPZeroWindowDrop",
        "TcpExtTCPToZeroWindowAdv",
        "TcpExtTCPFromZeroWindowAdv",
        "TcpExtTCPSACKReneging",
        "TcpExtTCPFastRetrans",
        "TcpExtTCPSlowStartRetrans",
        "TcpExtTCPLossFailures",
        "TcpExtTCPSackFailures",
        "TcpExtTCPRenoRecovery",
        "TcpExtPruneCalled",
        "TcpExtTCPOFOMerge",
    ];
    let mut s = String::new();
    for k in KEYS {
        let d = after
            .get(*k)
            .unwrap_or(&0)
            .saturating_sub(*before.get(*k).unwrap_or(&0));
        if d > 0 {
            s.push_str(&format!("{}={d} ", k.trim_start_matches("TcpExt")));
        }
    }
    s
}

/// A kernel-side helper: this binary re-executed as `__peer ...` inside a namespace. Its
/// stdout lines arrive on a channel, so that waits on it are bounded. Killed on drop.
pub struct Helper {
    child: Child,
    lines: Receiver<String>,
    what: String,
}

impl Helper {
    /// Starts `synack-bench __peer ARGS...` in `ns`.
    pub fn spawn(ns: &NetNs, args: &[String]) -> io::Result<Helper> {
        let exe = std::env::current_exe()?;
        let exe = exe
            .to_str()
            .ok_or_else(|| io::Error::other("the harness's path is not UTF-8"))?;
        let mut child = ns
            .command(exe)
            .arg("__peer")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper {
            child,
            lines,
            what: args.join(" "),
        })
    }

    /// Starts a server helper and waits (at most 10 s) for its `ready`.
    pub fn server(ns: &NetNs, args: &[String]) -> io::Result<Helper> {
        let mut h = Helper::spawn(ns, args)?;
        match h.next_line(Duration::from_secs(10))?.as_str() {
            "ready" => Ok(h),
            other => Err(io::Error::other(format!("{}: said {other:?}", h.what))),
        }
    }

    fn next_line(&mut self, limit: Duration) -> io::Result<String> {
        match self.lines.recv_timeout(limit) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("__peer {}: no answer within {limit:?}", self.what),
            )),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait()?;
                Err(io::Error::other(format!(
                    "__peer {} exited ({status}) without an answer",
                    self.what
                )))
            }
        }
    }

    /// Waits (at most `limit`) for a client helper's outcome line.
    pub fn outcome(mut self, limit: Duration) -> io::Result<Outcome> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_line(left)?;
            if let Some(o) = Outcome::from_line(&line) {
                let _ = self.child.wait();
                return Ok(o);
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
