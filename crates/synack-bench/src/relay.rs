//! The transparent relay, measured as its users run it: the `transparent_relay` example in a
//! namespace of its own (C), relaying every flow routed into its TUN to kernel sockets in an
//! egress namespace (E, `--egress-netns`), where the servers are.
//!
//! - Throughput: 1 GiB each way between a kernel client in C and the kernel-side server in E,
//!   through the relay (kernel TCP → TUN → synack → relay → kernel TCP), beside the same
//!   transfer between two namespaces over veth with no relay. The same `__peer` client and
//!   server, every byte checked.
//! - Memory: the relay's resident set before and after 10,000 concurrent idle relayed
//!   connections (a Python client in C holds them open to a Python server in E), per flow.

use std::io::{self, BufRead, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use synack_tokio::netns::NetNs;

use crate::net::{self, Helper, PORT_SERVE, VETH_B};
use crate::proto::{Header, Op, Outcome};
use crate::report::Cell;

/// The destination the relayed clients dial: an address only E holds, routed into the TUN
/// in C.
const DEST: Ipv4Addr = Ipv4Addr::new(198, 19, 10, 1);
/// The prefix C routes into the relay's TUN.
const ROUTED: &str = "198.19.0.0/16";
/// The port of E's connection holder (the memory row).
const PORT_HOLD: u16 = 5003;

/// What the relay rows measured.
#[derive(Debug, Clone)]
pub struct Results {
    /// Gbit/s through the relay: client sends, client receives.
    pub relay: [Cell; 2],
    /// Gbit/s over veth without a relay, same directions.
    pub direct: [Cell; 2],
    /// Bytes of each transfer.
    pub bytes: u64,
    /// Flows held for the memory row.
    pub flows: usize,
    /// The relay's resident set before and with the flows, in bytes; `None` when the
    /// memory row was not run (only some rows asked for).
    pub rss: Option<Result<(u64, u64), String>>,
}

impl Results {
    /// Nothing measured yet.
    pub fn new() -> Results {
        Results {
            relay: [Cell::NotMeasured, Cell::NotMeasured],
            direct: [Cell::NotMeasured, Cell::NotMeasured],
            bytes: 0,
            flows: 0,
            rss: None,
        }
    }

    /// What made the run fail, if anything.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, cell) in [
            ("relay upload", &self.relay[0]),
            ("relay download", &self.relay[1]),
            ("direct upload", &self.direct[0]),
            ("direct download", &self.direct[1]),
        ] {
            if let Cell::Failed(e) = cell {
                out.push(format!("{what}: {e}"));
            } else if cell.is_failure() {
                out.push(format!("{what}: corrupted"));
            }
        }
        if let Some(Err(e)) = &self.rss {
            out.push(format!("relay memory: {e}"));
        }
        out
    }

    /// The relay table as Markdown.
    pub fn table(&self) -> String {
        let mut t = String::new();
        t.push_str(
            "| measurement | unit | through `transparent_relay` (TUN → synack → kernel socket) | direct, kernel↔kernel (veth) | relay/direct |\n",
        );
        t.push_str("|---|---|---:|---:|---:|\n");
        let size = if self.bytes >= 1 << 30 {
            format!("{} GiB", self.bytes >> 30)
        } else {
            format!("{} MiB", self.bytes >> 20)
        };
        for (i, what) in ["client sends", "client receives"].iter().enumerate() {
            t.push_str(&format!(
                "| {size} through one flow, {what} | Gbit/s | {} | {} | {} |\n",
                self.relay[i].show(),
                self.direct[i].show(),
                crate::report::ratio(&self.relay[i], &self.direct[i]),
            ));
        }
        match &self.rss {
            Some(Ok((before, after))) => {
                let per = after.saturating_sub(*before) as f64 / self.flows.max(1) as f64;
                t.push_str(&format!(
                    "| {} idle relayed TCP flows: relay RSS before → with them | MiB | {:.1} → {:.1} | — | — |\n",
                    self.flows,
                    *before as f64 / 1048576.0,
                    *after as f64 / 1048576.0,
                ));
                t.push_str(&format!(
                    "| the same, per flow (a synack connection, the relay's tasks, its upstream socket's registration) | bytes | {per:.0} | — | — |\n"
                ));
            }
            Some(Err(e)) => t.push_str(&format!(
                "| idle relayed TCP flows, memory | bytes | FAILED ({e}) | — | — |\n"
            )),
            None => t.push_str("| idle relayed TCP flows, memory | bytes | — | — | — |\n"),
        }
        t
    }
}

/// A process killed (and reaped) on drop, with its stdout lines on a channel.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    stdin: Option<ChildStdin>,
    what: &'static str,
}

impl Proc {
    fn spawn(mut cmd: Command, what: &'static str, keep_stdin: bool) -> io::Result<Proc> {
        cmd.stdin(if keep_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::other(format!("{what}: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            child,
            lines,
            stdin,
            what,
        })
    }

    /// Waits (bounded) for a line starting with `prefix`; the others are skipped.
    fn wait_for(&mut self, prefix: &str, limit: Duration) -> io::Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => {}
                Err(_) => {
                    let status = self.child.try_wait()?;
                    return Err(io::Error::other(format!(
                        "{}: no {prefix:?} within {limit:?} (exited: {status:?})",
                        self.what
                    )));
                }
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident set of `pid`, in bytes (VmRSS of /proc/PID/status).
fn rss(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

/// E's side of the memory row: accepts and holds every connection.
const HOLD_SERVER: &str = r#"
import resource, socket, sys
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1])))
ls.listen(4096)
print("ready", flush=True)
held = []
while True:
    c, _ = ls.accept()
    held.append(c)
"#;

/// C's side: opens N connections one after another, says how long that took, and holds them
/// until its stdin closes.
const HOLD_CLIENT: &str = r#"
import resource, socket, sys, time
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n, ip, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
held = []
t0 = time.monotonic()
for i in range(n):
    held.append(socket.create_connection((ip, port), timeout=10))
print("connected %d %.2f" % (len(held), time.monotonic() - t0), flush=True)
sys.stdin.read()
"#;

/// The whole relay phase: `flows` for the memory row (0 skips it), `limit` bytes per
/// transfer.
pub fn run(flows: usize, limit: u64, timeout: Duration) -> io::Result<Results> {
    let mut results = Results::new();
    results.bytes = limit;
    let example = crate::http::example("transparent_relay")?;
    let c = net::namespace()?;
    let e = net::namespace()?;
    net::ip(e.name(), &["link", "set", "lo", "up"])?;
    net::ip(
        e.name(),
        &["addr", "add", &format!("{DEST}/32"), "dev", "lo"],
    )?;
    let server = Helper::server(&e, &args(&["serve", &PORT_SERVE.to_string()]))?;

    // The relay as a user runs it, with room for the memory row's sockets (one kernel socket
    // per flow): the hard limit on open files.
    let relay_cmd = format!(
        "ulimit -n $(ulimit -Hn) && exec {} --egress-netns {} --max-flows {}",
        example.display(),
        e.name(),
        flows.max(1000) * 2
    );
    let mut cmd = c.command("sh");
    cmd.args(["-c", &relay_cmd]);
    let mut relay = Proc::spawn(cmd, "transparent_relay", false)?;
    wait_for_link(&c, "synack0", Duration::from_secs(10))?;
    net::ip(c.name(), &["route", "add", ROUTED, "dev", "synack0"])?;
    let pid = relay.child.id();

    let target = SocketAddr::new(DEST.into(), PORT_SERVE);
    for (i, op) in [Op::Upload, Op::Download].into_iter().enumerate() {
        let r = client(&c, target, op, limit, timeout);
        eprintln!("[relay] through the relay, {}: {}", op.name(), show(&r));
        results.relay[i] = crate::bench::cell(&[r], crate::bench::Unit::Gbits, Some(limit));
    }

    if flows > 0 {
        results.flows = flows;
        let rss = hold(&c, &e, pid, flows).map_err(|e| e.to_string());
        match &rss {
            Ok((b, a)) => eprintln!(
                "[relay] {flows} idle flows: RSS {b} -> {a} bytes, {:.0} per flow",
                a.saturating_sub(*b) as f64 / flows as f64
            ),
            Err(e) => eprintln!("[relay] idle flows: {e}"),
        }
        results.rss = Some(rss);
    }
    if let Ok(Some(status)) = relay.child.try_wait() {
        return Err(io::Error::other(format!("the relay exited: {status}")));
    }
    drop(relay);
    drop(server);
    drop((c, e));

    let veth = net::Veth::new()?;
    let server = Helper::server(&veth.b, &args(&["serve", &PORT_SERVE.to_string()]))?;
    let target = SocketAddr::new(VETH_B.into(), PORT_SERVE);
    for (i, op) in [Op::Upload, Op::Download].into_iter().enumerate() {
        let r = client(&veth.a, target, op, limit, timeout);
        eprintln!("[relay] direct over veth, {}: {}", op.name(), show(&r));
        results.direct[i] = crate::bench::cell(&[r], crate::bench::Unit::Gbits, Some(limit));
    }
    drop(server);
    Ok(results)
}

/// The memory row: the relay's RSS before and with `flows` idle relayed connections.
fn hold(c: &NetNs, e: &NetNs, pid: u32, flows: usize) -> io::Result<(u64, u64)> {
    let mut cmd = e.command("python3");
    cmd.args(["-c", HOLD_SERVER, &PORT_HOLD.to_string()]);
    let mut holder = Proc::spawn(cmd, "the connection holder", false)?;
    holder.wait_for("ready", Duration::from_secs(10))?;
    // Let the transfers' buffers go back first.
    std::thread::sleep(Duration::from_secs(1));
    let before = rss(pid)?;
    let mut cmd = c.command("python3");
    cmd.args([
        "-c",
        HOLD_CLIENT,
        &flows.to_string(),
        &DEST.to_string(),
        &PORT_HOLD.to_string(),
    ]);
    let mut clients = Proc::spawn(cmd, "the connecting client", true)?;
    let line = clients.wait_for("connected", Duration::from_secs(300))?;
    eprintln!("[relay] {line}");
    std::thread::sleep(Duration::from_secs(1));
    let after = rss(pid)?;
    if let Some(stdin) = clients.stdin.as_mut() {
        let _ = stdin.flush();
    }
    drop(clients);
    drop(holder);
    Ok((before, after))
}

/// Waits until `link` exists in `ns`.
fn wait_for_link(ns: &NetNs, link: &str, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let ok = ns
            .command("ip")
            .args(["link", "show", link])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::other(format!("no {link} after {limit:?}")))
}

/// One `__peer client` transfer of `limit` bytes, waited for.
fn client(
    ns: &NetNs,
    target: SocketAddr,
    op: Op,
    limit: u64,
    timeout: Duration,
) -> io::Result<Outcome> {
    let header = Header {
        op,
        limit,
        duration: timeout,
    };
    let helper = Helper::spawn(
        ns,
        &args(&[
            "client",
            &target.to_string(),
            header.op.name(),
            &header.limit.to_string(),
            &header.duration.as_millis().to_string(),
            &timeout.as_millis().to_string(),
        ]),
    )?;
    helper.outcome(timeout * 2 + Duration::from_secs(5))
}

fn show(r: &io::Result<Outcome>) -> String {
    match r {
        Ok(o) => format!(
            "{:.2} Gbit/s, {} bytes, intact {}",
            o.gbits(),
            o.count,
            o.intact
        ),
        Err(e) => e.to_string(),
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}
