//! HTTP/1.1 request rates: wrk against the `http_server` example on synack, against the same
//! example on the kernel's TCP (`--kernel`, over veth), and against nginx with one worker
//! (Debian's nginx-light, over veth), each serving the same 1 KB file.
//!
//! The example runs as users run it: its own process, `#[tokio::main]`'s multi-thread
//! runtime, its default device. The harness builds it if it is missing.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use synack_tokio::netns::NetNs;

use crate::net::{self, TUN_STACK, VETH_B};
use crate::report::{median, Cell, HttpRow};

/// The file every server serves: 1,000 bytes, as issue-sized responses are.
const BODY_LEN: usize = 1000;
/// The port of the example (on synack and on the kernel).
const PORT_EXAMPLE: u16 = 8080;
/// nginx's port.
const PORT_NGINX: u16 = 8081;

/// One wrk configuration: connections, and whether each request has a connection of its own.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    /// What the row says.
    pub name: &'static str,
    /// wrk's `-c`.
    pub connections: usize,
    /// `Connection: close` on every request.
    pub close: bool,
}

/// The rows, in order.
pub const LOADS: [Load; 3] = [
    Load {
        name: "HTTP/1.1 keep-alive, 200 connections, 1 KB",
        connections: 200,
        close: false,
    },
    Load {
        name: "HTTP/1.1 keep-alive, 1 connection, 1 KB",
        connections: 1,
        close: false,
    },
    Load {
        name: "HTTP/1.1 connection per request, 50 connections, 1 KB",
        connections: 50,
        close: true,
    },
];

/// The rows, empty.
pub fn rows() -> Vec<HttpRow> {
    LOADS.iter().map(|l| HttpRow::new(l.name)).collect()
}

/// A process killed (and reaped) on drop.
struct Server {
    child: Child,
    what: String,
}

impl Server {
    fn spawn(mut cmd: Command, what: &str) -> io::Result<Server> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("{what}: {e}")))?;
        Ok(Server {
            child,
            what: what.to_owned(),
        })
    }

    /// Waits (at most 10 s) until `url` answers 200 from `ns`.
    fn wait_ready(&mut self, ns: &NetNs, url: &str) -> io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("{} exited: {status}", self.what)));
            }
            let out = ns
                .command("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "1",
                ])
                .arg(url)
                .stdin(Stdio::null())
                .output()?;
            if out.stdout == b"200" {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(io::Error::other(format!(
            "{}: {url} not answering after 10 s",
            self.what
        )))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory with the served file, removed on drop.
struct DocRoot(PathBuf);

impl DocRoot {
    /// Named at random and created, not found, so that no local user can have put a
    /// symlink there first for the harness, run as root, to write through; 0755, for nginx's
    /// workers (www-data).
    fn new() -> io::Result<DocRoot> {
        use std::hash::{BuildHasher, Hasher};
        use std::os::unix::fs::DirBuilderExt;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let dir = std::env::temp_dir().join(format!("synack-bench-http-{random:016x}"));
        std::fs::DirBuilder::new().mode(0o755).create(&dir)?;
        let body: Vec<u8> = (0..BODY_LEN).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(dir.join("1k"), body)?;
        Ok(DocRoot(dir))
    }
}

impl Drop for DocRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The example `name` next to this binary (target/PROFILE/examples), brought up to date first
/// with this binary's profile: a stale example would be measured otherwise.
/// `SYNACK_BENCH_NO_BUILD=1` skips the build (the harness's own test sets it: `cargo test
/// --workspace` has just built the examples, and a nested cargo would wait for its lock).
pub(crate) fn example(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .ok_or_else(|| io::Error::other("the harness has no directory"))?;
    let path = dir.join("examples").join(name);
    if std::env::var_os("SYNACK_BENCH_NO_BUILD").is_none() {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--example", name, "--manifest-path"])
            .arg(manifest);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        eprintln!("building the {name} example: {cmd:?}");
        match cmd.status() {
            Ok(status) if status.success() => {}
            // Without cargo (a copied binary), an example already there is used as it is.
            result if path.exists() => {
                eprintln!("could not build the {name} example ({result:?}); using {path:?}")
            }
            result => {
                return Err(io::Error::other(format!(
                    "could not build the {name} example: {result:?}"
                )))
            }
        }
    }
    if !path.exists() {
        return Err(io::Error::other(format!("no {name} example at {path:?}")));
    }
    Ok(path)
}

/// `wrk` in `ns` against `url`: requests per second, or why not (an error, non-2xx
/// answers, or socket errors other than the read errors a closing server causes), with the
/// number of requests it completed.
fn wrk(ns: &NetNs, url: &str, load: Load, duration: Duration) -> io::Result<(f64, u64)> {
    let mut cmd = ns.command("wrk");
    cmd.args(["-t", "1", "-c", &load.connections.to_string()])
        // wrk takes whole seconds (its time units are s, m and h).
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .args(["--timeout", "5s"]);
    if load.close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(url).stdin(Stdio::null()).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "wrk: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if let Some(line) = text.lines().find(|l| l.contains("Non-2xx")) {
        return Err(io::Error::other(format!("wrk: {}", line.trim())));
    }
    if let Some(line) = text.lines().find(|l| l.contains("Socket errors")) {
        // "Socket errors: connect 0, read 0, write 0, timeout 0"
        let count = |what: &str| -> u64 {
            line.split(',')
                .find(|p| p.contains(what))
                .and_then(|p| p.split_whitespace().last())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let bad = count("connect") + count("write") + count("timeout");
        if bad > 0 {
            return Err(io::Error::other(format!("wrk: {}", line.trim())));
        }
    }
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("wrk printed no rate: {text}")))?;
    // "  123456 requests in 3.00s, 130.01MB read"
    let total = text
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other(format!("wrk printed no request count: {text}")))?;
    Ok((rate, total))
}

/// The CPU time (user + system, all threads) process `pid` has used so far, from
/// `/proc/PID/stat` (fields 14 and 15, in clock ticks of 10 ms).
pub(crate) fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let ticks: u64 = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // The ticks are USER_HZ, which Linux fixes at 100 for user space on every architecture.
    Some(Duration::from_millis(ticks * 10))
}

fn to_cell(r: io::Result<f64>) -> Cell {
    match r {
        Ok(value) => Cell::Value {
            value,
            intact: true,
        },
        Err(e) => Cell::Failed(e.to_string()),
    }
}

/// Which cell of a row a server's results go to.
type CellOf = fn(&mut HttpRow) -> &mut Cell;

/// Where a server's CPU time a request goes in a row.
type CpuOf = fn(&mut HttpRow) -> &mut Option<f64>;

/// A server under test, running, and where wrk reaches it from.
struct Target<'a> {
    who: String,
    ns: &'a NetNs,
    url: String,
    cell: CellOf,
    /// The server's pid and the row's slot for its CPU time a request, when that is counted.
    cpu: Option<(u32, CpuOf)>,
    /// Killed when the measurement is over.
    _server: Server,
}

/// Runs every load against every target, `reps` times each; the medians into the rows.
/// The targets take turns within each repetition, so that a slow spell of this shared
/// machine (they last tens of seconds) falls on every column alike instead of on whichever
/// server was being measured then: the ratios between columns are what the rows are for.
fn measure(targets: &[Target<'_>], reps: usize, duration: Duration, rows: &mut [HttpRow]) {
    for (row, load) in rows.iter_mut().zip(LOADS) {
        let mut values: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
        let mut failures: Vec<Option<io::Error>> = targets.iter().map(|_| None).collect();
        for rep in 1..=reps {
            for (i, t) in targets.iter().enumerate() {
                if failures[i].is_some() {
                    continue;
                }
                let pid = t.cpu.map(|(pid, _)| pid);
                let before = pid.and_then(cpu_time);
                match wrk(t.ns, &t.url, load, duration) {
                    Ok((v, total)) => {
                        let used = before.zip(pid.and_then(cpu_time)).map(|(b, a)| a - b);
                        let per = used
                            .filter(|_| total > 0)
                            .map(|u| u.as_secs_f64() * 1e6 / total as f64);
                        match per {
                            Some(us) => eprintln!(
                                "[http] {}, {}, #{rep}: {v:.0} requests/s, {us:.1} µs CPU a request",
                                t.who, load.name
                            ),
                            None => eprintln!(
                                "[http] {}, {}, #{rep}: {v:.0} requests/s",
                                t.who, load.name
                            ),
                        }
                        values[i].push(v);
                        cpus[i].extend(per);
                    }
                    Err(e) => {
                        eprintln!("[http] {}, {}, #{rep}: {e}", t.who, load.name);
                        failures[i] = Some(e);
                    }
                }
            }
        }
        for (i, t) in targets.iter().enumerate() {
            *(t.cell)(row) = match failures[i].take() {
                Some(e) => to_cell(Err(e)),
                None => to_cell(median(&mut values[i]).ok_or_else(|| io::Error::other("no run"))),
            };
            if let Some((_, cpu_of)) = t.cpu {
                *cpu_of(row) = median(&mut cpus[i]);
            }
        }
    }
}

/// nginx, one worker, serving `root` on `addr`, its files in `root` too.
fn nginx(ns: &NetNs, root: &Path, addr: Ipv4Addr) -> io::Result<Server> {
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\n\
             daemon off;\n\
             pid {root}/nginx.pid;\n\
             error_log {root}/nginx-error.log;\n\
             events {{ worker_connections 4096; }}\n\
             http {{\n\
             access_log off;\n\
             keepalive_requests 1000000;\n\
             client_body_temp_path {root}/tmp;\n\
             proxy_temp_path {root}/tmp;\n\
             fastcgi_temp_path {root}/tmp;\n\
             uwsgi_temp_path {root}/tmp;\n\
             scgi_temp_path {root}/tmp;\n\
             server {{ listen {addr}:{PORT_NGINX}; root {root}; }}\n\
             }}\n",
            root = root.display()
        ),
    )?;
    let mut cmd = ns.command("nginx");
    cmd.arg("-c").arg(&conf).arg("-p").arg(root);
    Server::spawn(cmd, "nginx")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The whole HTTP phase. `rows` come from [`rows`].
pub fn run(reps: usize, duration: Duration, rows: &mut [HttpRow]) -> io::Result<()> {
    if !have("wrk") {
        for r in rows.iter_mut() {
            r.synack = Cell::Failed("wrk is not installed (apt install wrk)".into());
            r.synack_1 = r.synack.clone();
        }
        return Ok(());
    }
    let example = example("http_server")?;
    let root = DocRoot::new()?;
    let path = "/1k";
    // Every server runs from the start, each in its namespace, and they take turns under
    // wrk (see `measure`); an idle one costs the others nothing measurable.
    let mut targets = Vec::new();

    // synack: the example in a namespace of its own, on its default TUN (kernel
    // 198.18.0.1/24, synack 198.18.0.2), wrk on the kernel's side of it; with one worker
    // and with two (the default on a 2-core machine), the server's CPU time counted.
    let synack_ns = [net::namespace()?, net::namespace()?];
    let columns: [(usize, CellOf, CpuOf); 2] = [
        (1, |r| &mut r.synack_1, |r| &mut r.cpu_us[0]),
        (2, |r| &mut r.synack, |r| &mut r.cpu_us[1]),
    ];
    for (ns, (workers, cell, cpu_of)) in synack_ns.iter().zip(columns) {
        let mut cmd = ns.command(example.to_str().unwrap_or("http_server"));
        cmd.arg("--root")
            .arg(&root.0)
            .args(["--port", &PORT_EXAMPLE.to_string()])
            .args(["--workers", &workers.to_string()]);
        let who = format!("http_server on synack, {workers} worker(s)");
        let mut server = Server::spawn(cmd, &who)?;
        let url = format!(
            "http://{}{path}",
            SocketAddr::new(TUN_STACK.into(), PORT_EXAMPLE)
        );
        server.wait_ready(ns, &url)?;
        // `ip netns exec` execs the example: the child's pid is the server's.
        let pid = server.child.id();
        targets.push(Target {
            who,
            ns,
            url,
            cell,
            cpu: Some((pid, cpu_of)),
            _server: server,
        });
    }

    // The kernel: the same example with --kernel, and nginx, in the veth pair's server
    // namespace; wrk in the client namespace.
    let veth = net::Veth::new()?;
    let mut cmd = veth.b.command(example.to_str().unwrap_or("http_server"));
    cmd.arg("--kernel")
        .arg("--root")
        .arg(&root.0)
        .args(["--addr", &VETH_B.to_string()])
        .args(["--port", &PORT_EXAMPLE.to_string()]);
    let mut server = Server::spawn(cmd, "http_server --kernel")?;
    let url = format!(
        "http://{}{path}",
        SocketAddr::new(VETH_B.into(), PORT_EXAMPLE)
    );
    server.wait_ready(&veth.a, &url)?;
    let pid = server.child.id();
    targets.push(Target {
        who: "hyper on the kernel".into(),
        ns: &veth.a,
        url,
        cell: |r| &mut r.hyper,
        cpu: Some((pid, |r| &mut r.hyper_cpu_us)),
        _server: server,
    });
    if have("nginx") {
        std::fs::create_dir_all(root.0.join("tmp"))?;
        let mut server = nginx(&veth.b, &root.0, VETH_B)?;
        let url = format!(
            "http://{}{path}",
            SocketAddr::new(VETH_B.into(), PORT_NGINX)
        );
        server.wait_ready(&veth.a, &url)?;
        targets.push(Target {
            who: "nginx".into(),
            ns: &veth.a,
            url,
            cell: |r| &mut r.nginx,
            cpu: None,
            _server: server,
        });
    } else {
        eprintln!(
            "[http] nginx is not installed (apt install nginx-light): its column stays empty"
        );
    }
    measure(&targets, reps, duration, rows);
    // The servers go before their namespaces.
    drop(targets);
    Ok(())
}
