//! `synack-bench`: synack against smoltcp and the kernel, side by side, in one command.
//!
//! ```text
//! sudo cargo run --release -p synack-bench                 # full run (~3 min), rewrites BENCHMARKS.md
//! sudo cargo run --release -p synack-bench -- --quick      # seconds; correctness only
//! options: --quick, --no-write, --output FILE (instead of the workspace's BENCHMARKS.md),
//!          --plain-bulk (only the plain-TUN bulk rows, synack and smoltcp; never writes),
//!          --offload-bulk (only the offload-TUN bulk rows, synack and the kernel; never
//!          writes),
//!          --relay (only the transparent relay's rows; never writes),
//!          --http (only the HTTP rows; never writes),
//!          --handshakes [--handshake-threads N] (only the handshake row; never writes),
//!          --multi-thread (synack on tokio's default multi-thread runtime),
//!          --loss-only [--repeat N] [--loss-rate N] [--kernel-cc NAME] (only the loss rows,
//!          with both sides' recovery counters per run on stderr; never writes)
//! ```
//!
//! It needs root (network namespaces, TUN devices, nft). It makes its own namespaces and
//! deletes them on every exit path (errors, panics, Ctrl-C/SIGTERM; a SIGKILLed run's
//! leftovers are removed by the next run), uses only 198.18.0.0/15, and bounds every loop
//! by a byte count and a timeout. Progress goes to stderr, the table to stdout, and the table
//! with the machine, the date and the command into the section of BENCHMARKS.md between
//! `<!-- harness:begin -->` and `<!-- harness:end -->` (the rest of the file is kept).
//!
//! What it measures, each against the same kernel-side server (this binary re-executed as
//! `__peer` under `ip netns exec`, on `std::net` sockets):
//!
//! - bulk throughput both ways: synack over a TUN, smoltcp 0.14 over a TUN (256 KiB socket
//!   buffers, like synack's defaults), and a kernel client over a 1500-MTU veth pair (the
//!   practical ceiling: the kernel on both ends, with GSO); each a few seconds, 3 times,
//!   median. On the plain TUN each stack at its default MTU, and both at 1500 and both at
//!   synack's plain-TUN MTU;
//! - handshakes per second: kernel clients (several threads of connect, wait for FIN, close)
//!   against a synack listener, and against a kernel listener over veth;
//! - 1-byte ping-pong round trips per second on one connection, synack and kernel-over-veth;
//! - goodput of 16 MiB each way under 1 % and 5 % random loss (nft `numgen random`), synack
//!   and kernel, with a timeout, checked byte for byte;
//! - HTTP request rates with wrk (`http`), synack's with one worker and with two, and its
//!   server CPU time a request;
//! - bulk throughput with one worker and with two (two flows at once on the offload TUN), and
//!   the CPU time a GiB;
//! - the `transparent_relay` example: 1 GiB each way through it beside the same transfer over
//!   veth, and its memory with 10,000 idle relayed flows (`relay`).
//!
//! Every byte of every transfer is checked against a pattern (see `pattern`); a run that
//! delivers corrupted data, or fails, makes the command exit non-zero.

mod bench;
mod http;
mod net;
mod pattern;
mod peer;
mod proto;
mod relay;
mod report;
mod smol_side;
mod synack_side;

use std::io;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use report::{HttpRow, Row, WorkersRow};

/// The command line of the harness itself.
struct Options {
    quick: bool,
    /// Only the bulk rows of synack on the plain TUN and of smoltcp: a quick look at the
    /// per-packet path (about 40 s).
    plain_bulk: bool,
    /// Only the bulk rows of synack on the offload TUN and of the kernel over veth.
    offload_bulk: bool,
    /// synack on tokio's default multi-thread runtime instead of a current-thread one.
    multi_thread: bool,
    /// Only the relay rows.
    relay_only: bool,
    /// Only the HTTP rows.
    http_only: bool,
    /// Only the handshake row.
    handshakes_only: bool,
    /// synack's bulk client in a spawned task rather than in `block_on`.
    spawn_client: bool,
    /// Only the loss rows, synack and kernel, with recovery counters per run.
    loss_only: bool,
    /// Repetitions of each loss row.
    repeat: Option<usize>,
    /// Only this loss rate (percent).
    loss_rate: Option<u32>,
    /// The kernel's congestion control in the namespaces (else the machine's default).
    kernel_cc: Option<String>,
    /// Client threads of the handshake row (else the settings' default).
    handshake_threads: Option<usize>,
    output: Option<PathBuf>,
    /// The arguments as given, for the "exact command" line.
    given: Vec<String>,
}

const USAGE: &str =
    "usage: synack-bench [--quick] [--plain-bulk | --offload-bulk | --relay | --http | --handshakes] [--multi-thread]
                    [--spawn-client] [--no-write | --output FILE]
                    [--loss-only] [--repeat N] [--loss-rate N] [--kernel-cc NAME]
                    [--handshake-threads N]
  --quick        tiny sizes, one repetition: checks correctness, not speed (seconds)
  --plain-bulk   only the bulk rows of synack on the plain TUN and of smoltcp; never writes
  --offload-bulk only the bulk rows of synack on the offload TUN and of the kernel over veth;
                 never writes
  --relay        only the transparent relay's rows (throughput, memory); never writes
  --http         only the HTTP rows (wrk against http_server, the same code on the kernel, nginx);
                 never writes
  --handshakes   only the handshake row (synack on the plain TUN, the kernel over veth); never
                 writes
  --multi-thread synack on tokio's default multi-thread runtime (one worker per CPU)
  --spawn-client synack's bulk client in a task of its own (tokio::spawn), not in the
                 harness's block_on: on a multi-thread runtime, a worker's task rather than
                 the main thread
  --no-write     print the table only; do not touch BENCHMARKS.md
  --output FILE  write the harness section into FILE instead of the workspace's BENCHMARKS.md
  --loss-only    only the loss rows (synack and kernel), each run's recovery counters of both
                 sides on stderr (synack's TcpInfo, the kernel's nstat); never writes
  --repeat N     run each loss row N times (the median is shown; default 3, 1 with --quick)
  --loss-rate N  only N % loss (default: 1 and 5)
  --kernel-cc NAME  the kernel's congestion control in the namespaces (default: the machine's;
                 NAME must be in net.ipv4.tcp_allowed_congestion_control); never writes
  --handshake-threads N  kernel client threads in the handshake row (default 4, 1-256);
                 never writes";

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        plain_bulk: false,
        offload_bulk: false,
        multi_thread: false,
        relay_only: false,
        http_only: false,
        handshakes_only: false,
        spawn_client: false,
        loss_only: false,
        repeat: None,
        loss_rate: None,
        kernel_cc: None,
        handshake_threads: None,
        output: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("..")
                .join("BENCHMARKS.md"),
        ),
        given: args.to_vec(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--plain-bulk" => o.plain_bulk = true,
            "--offload-bulk" => o.offload_bulk = true,
            "--multi-thread" => o.multi_thread = true,
            "--relay" => o.relay_only = true,
            "--http" => o.http_only = true,
            "--handshakes" => o.handshakes_only = true,
            "--spawn-client" => o.spawn_client = true,
            "--no-write" => o.output = None,
            "--loss-only" => o.loss_only = true,
            "--repeat" => {
                let n = it.next().ok_or("--repeat needs N")?;
                o.repeat = Some(n.parse().ok().filter(|&n| n > 0).ok_or("bad --repeat")?);
            }
            "--loss-rate" => {
                let n = it.next().ok_or("--loss-rate needs N")?;
                o.loss_rate = Some(
                    n.parse()
                        .ok()
                        .filter(|&n| n <= 100)
                        .ok_or("bad --loss-rate")?,
                );
            }
            "--handshake-threads" => {
                let n = it.next().ok_or("--handshake-threads needs N")?;
                o.handshake_threads = Some(
                    n.parse()
                        .ok()
                        .filter(|&n| (1..=256).contains(&n))
                        .ok_or("bad --handshake-threads")?,
                );
            }
            "--kernel-cc" => {
                o.kernel_cc = Some(it.next().ok_or("--kernel-cc needs NAME")?.clone());
            }
            "--output" => {
                o.output = Some(PathBuf::from(it.next().ok_or("--output needs a FILE")?));
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__peer") {
        return match peer::main(&args[1..]) {
            0 => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        };
    }
    let options = match parse_options(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::FAILURE;
        }
    };
    match harness(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("synack-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the benchmark; `Ok(false)` if a measurement failed or data arrived corrupted.
fn harness(options: &Options) -> io::Result<bool> {
    let mut settings = if options.quick {
        bench::Settings::quick()
    } else {
        bench::Settings::full()
    };
    settings.plain_bulk_only = options.plain_bulk;
    settings.offload_bulk_only = options.offload_bulk;
    settings.loss_only = options.loss_only;
    settings.http_only = options.http_only;
    settings.handshakes_only = options.handshakes_only;
    settings.spawn_client = options.spawn_client;
    if let Some(n) = options.repeat {
        settings.loss_reps = n;
    }
    if let Some(rate) = options.loss_rate {
        settings.loss_rates = vec![rate];
    }
    settings.kernel_cc.clone_from(&options.kernel_cc);
    if let Some(n) = options.handshake_threads {
        settings.handshake_threads = n;
    }
    if cfg!(debug_assertions) && !options.quick {
        eprintln!("warning: a debug build; numbers are only meaningful with --release");
    }
    net::remove_stale_namespaces();
    // One thread for synack, as smoltcp gets one: on a 2-core machine a second worker only
    // competes with the kernel-side peer, and every wakeup between the driver task and the
    // application's task then crosses threads (futex wakes and context switches; the
    // kernel → stack rows ran at half speed on two workers here).
    let runtime = if options.multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    let load_before = loadavg();
    let started = Instant::now();
    let mut rows = bench::rows(&settings);
    let mut http_rows = if options.loss_only {
        Vec::new()
    } else {
        http::rows()
    };
    let mut workers_rows = if options.loss_only
        || options.http_only
        || options.plain_bulk
        || options.offload_bulk
        || options.handshakes_only
    {
        Vec::new()
    } else {
        bench::workers_rows()
    };
    let mut relay_results = relay::Results::new();
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // Dropping the benchmark's future on a signal runs every destructor: helpers are
        // killed and namespaces deleted before we exit.
        let all = async {
            if !options.relay_only {
                bench::run(&settings, &mut rows, &mut http_rows, &mut workers_rows).await?;
            }
            if !settings.plain_bulk_only
                && !settings.offload_bulk_only
                && !settings.loss_only
                && !settings.http_only
                && !settings.handshakes_only
            {
                let (flows, bytes, timeout) = (
                    settings.relay_flows,
                    settings.relay_bytes,
                    settings.relay_timeout,
                );
                relay_results = tokio::task::spawn_blocking(move || {
                    relay::run(flows, bytes, timeout)
                })
                .await
                .map_err(io::Error::other)??;
            }
            Ok::<(), io::Error>(())
        };
        tokio::select! {
            r = all => r,
            _ = tokio::signal::ctrl_c() => Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted")),
            _ = term.recv() => Err(io::Error::new(io::ErrorKind::Interrupted, "terminated")),
        }
    });
    drop(runtime);
    let elapsed = started.elapsed();
    let table = if options.relay_only {
        relay_results.table()
    } else if options.http_only {
        report::http_table(&http_rows)
    } else {
        format!(
            "{}\n{}\n{}\n{}",
            report::table(&rows),
            report::http_table(&http_rows),
            report::workers_table(&workers_rows),
            relay_results.table()
        )
    };
    println!("{table}");
    eprintln!("done in {:.0} s", elapsed.as_secs_f64());
    let failures: Vec<String> = rows
        .iter()
        .flat_map(Row::failures)
        .chain(http_rows.iter().flat_map(HttpRow::failures))
        .chain(workers_rows.iter().flat_map(WorkersRow::failures))
        .chain(relay_results.failures())
        .collect();
    for f in &failures {
        eprintln!("failed: {f}");
    }
    outcome?;
    let left = net::own_namespaces(std::process::id());
    if !left.is_empty() {
        return Err(io::Error::other(format!(
            "namespaces left behind: {}",
            left.join(", ")
        )));
    }
    let partial = options.plain_bulk
        || options.offload_bulk
        || options.handshakes_only
        || options.relay_only
        || options.http_only
        || options.loss_only
        || options.kernel_cc.is_some()
        || options.handshake_threads.is_some();
    if let Some(path) = options.output.as_ref().filter(|_| !partial) {
        let section = section(options, &settings, &table, &load_before, elapsed);
        report::write_section(path, &section)?;
        eprintln!("wrote the harness section of {}", path.display());
    }
    Ok(failures.is_empty())
}

/// The machine, the date, the command, the table and how to read it.
fn section(
    options: &Options,
    s: &bench::Settings,
    table: &str,
    load_before: &str,
    elapsed: std::time::Duration,
) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut command = "sudo cargo run --release -p synack-bench".to_owned();
    if !options.given.is_empty() {
        command.push_str(" -- ");
        command.push_str(&options.given.join(" "));
    }
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let runtime = match (options.multi_thread, options.spawn_client) {
        (true, false) => {
            "tokio's default multi-thread runtime (one worker per CPU; the client runs in \
             `block_on` on the main thread, as in a `#[tokio::main]` function)"
        }
        (true, true) => {
            "tokio's default multi-thread runtime (one worker per CPU; the bulk client runs \
             in a task of its own, on a worker)"
        }
        (false, _) => "a current-thread tokio runtime, one thread",
    };
    let plain_mtu = synack_tokio::device::PLAIN_TUN_MTU;
    format!(
        "## Harness: synack against smoltcp and the kernel

Generated by `{command}` ({profile} build) on {date}, in {:.0} s.
Machine: {nproc} CPUs ({cpu}), Linux {kernel}. Load average before / after the run:
`{load_before}` / `{}` (other builds may have been running: treat differences under ~20 % as
noise).

{table}
How to read it:

- Every column talks to the same kernel-side server (`synack-bench __peer serve`, `std::net`)
  in a network namespace made for the run. synack and smoltcp 0.14 each run in the harness
  process on a TUN (synack: `synack_tokio::Stack` with its
  default buffers, 256 KiB auto-tuning up to 4 MiB send / 6 MiB receive as Linux's do, on
  {runtime}; smoltcp: a `phy::TunTapInterface` poll loop with 256 KiB
  buffers, on its own thread). The kernel column is a
  kernel client in one namespace and the server in another, over a 1500-MTU veth pair with
  the default offloads (GSO/TSO): the practical ceiling on this machine.
- Plain-TUN bulk rows: one packet a system call each way. \"each stack's default MTU\":
  synack's `PlainTun` as it comes ({plain_mtu} bytes, `PLAIN_TUN_MTU`: the link is inside
  the host and synack ends every connection on it, as the kernel's loopback, MTU 65536,
  does), smoltcp on a TUN as Linux makes it (1500; smoltcp's examples take the interface
  as it is). The \"both at MTU\" rows put the two stacks on equal MTUs, where the
  per-packet cost, mostly the kernel's, is the same for both.
  The loss rows run synack's plain TUN at 1500, as the veth pair has.
- Bulk rows: each transfer runs for {:.1} s (or {} bytes), {} time(s); the median is shown.
  Time runs from connect to the proof of delivery (the server's byte count for stack → kernel,
  the server's FIN for kernel → stack). Every byte is checked against a pattern; a corrupted
  transfer would show `CORRUPT`.
- \"offload TUN\" rows: the same bulk runs with synack on `synack_tokio::device::OffloadTun`
  (`IFF_VNET_HDR`, `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`): the kernel's TSO super-packets
  are read whole and handed to synack whole (GRO), and synack's own super-segments
  (segmentation offload, `gso_max_size` 64 KiB) are written behind a TSO header for the
  kernel to cut: up to 64 KiB per syscall each way. Their smoltcp and kernel columns repeat
  the plain-TUN smoltcp and veth bulk numbers of the same run (smoltcp has no offloading
  device: each stack at its best on a TUN).
- Handshakes: {} kernel client threads connect, wait for the server's FIN and close, for
  {:.1} s, {} time(s), the median; the listener accepts and closes at once (synack's on the
  plain TUN). synack's listener and the kernel's take turns, one run each per repetition.
  Ping-pong: one byte each way, nodelay,
  for {:.1} s.
- Loss rows: {} bytes each way with nft `numgen random mod 100 < N drop` on both directions of
  the TUN (or of the server's veth), with `gso_max_segs 1` so that a drop is one segment;
  {} time(s), the median: one run at random loss is a lottery (a few unlucky timeouts
  can cost a 16 MiB transfer at 5 % nine tenths of its rate). Timeout {:.0} s (`timeout`: the
  transfer did not finish in time). A cell counts only if every byte arrived intact.
- HTTP rows (the second table): `wrk -t1 -c N -d {:.1}s` ({} time(s), the median) for the
  1,000-byte file `/1k`, from the kernel's side. synack: the `http_server` example as users
  run it (its own process, tokio's default multi-thread runtime, its default device) in a
  namespace of its own, with `--workers 1` and with `--workers 2` (the default on two
  cores: one shard per core). Against it, the same example with `--kernel` (the same hyper
  code on tokio's `TcpListener`) and nginx (Debian's nginx-light, `worker_processes 1`), both
  over the veth pair. All four servers run throughout and take turns under wrk, one run
  each per repetition, so that a slow spell of the machine falls on every column alike.
  The ratios take synack's 2-worker column. The CPU columns are a
  server's own CPU time (user + system, every thread, from `/proc`) divided by the requests
  wrk completed: synack's with one worker and with two (wrk and the kernel share the same two
  cores, so this, not the request rate, shows what a second worker costs per request), then
  the `--kernel` server's. That last one is not like for like: the kernel runs a packet's
  receive path in the process that sent it, so wrk's sends pay for the kernel server's TCP
  receive, while synack's server runs all of its own TCP and the receive path of what it
  sends to wrk. Every
  server sets TCP_NODELAY (nginx's `tcp_nodelay` default). A run with non-2xx answers or
  connect/write/timeout socket errors shows `FAILED`.
- Workers rows (the third table): synack on the offload TUN built with
  `Stack::builder().workers(1)` and then `workers(2)`, on a tokio multi-thread runtime of
  two threads, {} bulk flows at once (connects go to the shards in turn, so with two
  workers each owns one), {:.1} s each way, {} time(s), the median. The last column is the
  harness process's CPU time (user + system, every thread: synack, its drivers and the
  system calls) per GiB delivered, with one worker and with two.
- Relay rows (the fourth table): the `transparent_relay` example as users run it, in a
  namespace with its TUN (the client's side, {} routed into the TUN), relaying to kernel
  sockets in an egress namespace (`--egress-netns`) where the server is: {} bytes each way with
  the same `__peer` client and server, checked byte for byte, beside the same transfer between
  two namespaces over veth. Memory: the relay's VmRSS before and while a Python client holds
  {} connections through it to a Python server in the egress namespace (each flow is a synack
  connection, the relay's two copy tasks and its kernel socket's user-space state).
- Ratios divide synack's number by the other's: above 1 means synack was faster.
",
        elapsed.as_secs_f64(),
        loadavg(),
        s.bulk_time.as_secs_f64(),
        s.bulk_limit,
        s.reps,
        s.handshake_threads,
        s.handshake_time.as_secs_f64(),
        s.reps,
        s.pingpong_time.as_secs_f64(),
        s.loss_bytes,
        s.loss_reps,
        s.loss_timeout.as_secs_f64(),
        s.http_time.as_secs_f64(),
        s.http_reps,
        bench::WORKER_FLOWS,
        s.bulk_time.as_secs_f64(),
        s.reps,
        "198.19.0.0/16",
        s.relay_bytes,
        s.relay_flows,
    )
}

/// The first three fields of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
