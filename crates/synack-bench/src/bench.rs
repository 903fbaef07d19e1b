//! The run: which measurements, in which order, on which namespaces; medians into rows.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use synack_tokio::device::{TunConfig, PLAIN_TUN_MTU};
use synack_tokio::netns::NetNs;
use synack_tokio::TcpListener;

use crate::net::{self, Helper, PORT_HANDSHAKE, PORT_SERVE, TUN_HOST, TUN_STACK, VETH_B};
use crate::proto::{Header, Op, Outcome};
use crate::report::{median, Cell, HttpRow, Row, WorkersRow};
use crate::{smol_side, synack_side};

/// Sizes and durations of one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Repetitions of each bulk measurement (the median is reported).
    pub reps: usize,
    /// How long each bulk transfer runs, at most.
    pub bulk_time: Duration,
    /// How many bytes each bulk transfer moves, at most.
    pub bulk_limit: u64,
    /// How long the kernel clients hammer the listener.
    pub handshake_time: Duration,
    /// Client threads in the handshake benchmark.
    pub handshake_threads: usize,
    /// How long the ping-pong runs.
    pub pingpong_time: Duration,
    /// Bytes each way under loss.
    pub loss_bytes: u64,
    /// When a transfer under loss gives up.
    pub loss_timeout: Duration,
    /// The loss rates, in percent.
    pub loss_rates: Vec<u32>,
    /// Repetitions of each loss measurement (the median is reported).
    pub loss_reps: usize,
    /// `--loss-only`: only the loss rows, synack and kernel.
    pub loss_only: bool,
    /// `--kernel-cc NAME`: the kernel's congestion control in every namespace (else the
    /// machine's default).
    pub kernel_cc: Option<String>,
    /// How long each wrk run of the HTTP rows lasts.
    pub http_time: Duration,
    /// Repetitions of each HTTP row (the median is reported).
    pub http_reps: usize,
    /// `--plain-bulk`: only the bulk rows of synack on the plain TUN and of smoltcp.
    pub plain_bulk_only: bool,
    /// `--offload-bulk`: only the bulk rows of synack on the offload TUN and of the kernel
    /// over veth.
    pub offload_bulk_only: bool,
    /// `--http`: only the HTTP rows.
    pub http_only: bool,
    /// `--handshakes`: only the handshake row, synack and kernel.
    pub handshakes_only: bool,
    /// `--spawn-client`: synack's bulk client runs in a task of its own (`tokio::spawn`)
    /// rather than in the harness's own future (`block_on`).
    pub spawn_client: bool,
    /// Concurrent idle flows held through the relay for its memory row (0: none).
    pub relay_flows: usize,
    /// Bytes of each transfer through the relay and of its direct counterpart.
    pub relay_bytes: u64,
    /// When one of those transfers gives up.
    pub relay_timeout: Duration,
}

impl Settings {
    /// The full run (about two to three minutes on two cores).
    pub fn full() -> Settings {
        Settings {
            reps: 3,
            bulk_time: Duration::from_secs(2),
            bulk_limit: 1 << 40,
            handshake_time: Duration::from_secs(3),
            handshake_threads: 4,
            pingpong_time: Duration::from_secs(2),
            loss_bytes: 16 << 20,
            loss_timeout: Duration::from_secs(15),
            loss_rates: vec![1, 5],
            loss_reps: 3,
            loss_only: false,
            kernel_cc: None,
            http_time: Duration::from_secs(3),
            http_reps: 3,
            plain_bulk_only: false,
            offload_bulk_only: false,
            http_only: false,
            handshakes_only: false,
            spawn_client: false,
            relay_flows: 10_000,
            relay_bytes: 1 << 30,
            relay_timeout: Duration::from_secs(60),
        }
    }

    /// `--quick`: a correctness pass in seconds.
    pub fn quick() -> Settings {
        Settings {
            reps: 1,
            bulk_time: Duration::from_secs(2),
            bulk_limit: 256 << 10,
            handshake_time: Duration::from_millis(300),
            handshake_threads: 2,
            pingpong_time: Duration::from_millis(200),
            loss_bytes: 128 << 10,
            // As long as a full run's: at 5 % loss each way a handshake or a tail can lose
            // three packets in a row, and 1 + 2 + 4 s of backed-off timeouts outlast 5 s (a
            // fresh-clone CI run saw the kernel's own download time out so). It is a
            // deadline, not a duration: only such a run waits longer.
            loss_timeout: Duration::from_secs(15),
            loss_rates: vec![1, 5],
            loss_reps: 1,
            loss_only: false,
            kernel_cc: None,
            http_time: Duration::from_secs(1),
            http_reps: 1,
            plain_bulk_only: false,
            offload_bulk_only: false,
            http_only: false,
            handshakes_only: false,
            spawn_client: false,
            relay_flows: 100,
            relay_bytes: 4 << 20,
            relay_timeout: Duration::from_secs(20),
        }
    }

    fn bulk(&self, op: Op) -> Header {
        Header {
            op,
            limit: self.bulk_limit,
            duration: self.bulk_time,
        }
    }

    fn bulk_timeout(&self) -> Duration {
        self.bulk_time + Duration::from_secs(10)
    }

    fn lossy(&self, op: Op) -> Header {
        Header {
            op,
            limit: self.loss_bytes,
            duration: self.loss_timeout * 2,
        }
    }

    /// Every step, for the progress counter.
    fn steps(&self) -> usize {
        // synack on the plain TUN: 2 bulk x reps at its default MTU and at 1500, ping-pong,
        // handshakes x reps, 2 x 2 loss; synack on the offload TUN: 2 bulk x reps; smoltcp:
        // 2 x reps at 1500 and at synack's plain MTU; kernel: 2 bulk x reps, ping-pong,
        // handshakes x reps, loss.
        if self.plain_bulk_only {
            return 4 * 2 * self.reps;
        }
        if self.offload_bulk_only {
            return 2 * 2 * self.reps;
        }
        if self.handshakes_only {
            return 2 * self.reps;
        }
        if self.http_only {
            return 0;
        }
        let loss = 2 * 2 * self.loss_rates.len() * self.loss_reps;
        if self.loss_only {
            return loss;
        }
        6 * 2 * self.reps + 2 * (1 + self.reps) + loss
    }
}

/// Row order in the table. The plain-TUN bulk rows: each stack as a user gets it, synack's
/// plain TUN at its default MTU ([`PLAIN_TUN_MTU`]) and smoltcp's on a TUN as Linux creates
/// it (MTU 1500).
const BULK_UP: usize = 0;
const BULK_DOWN: usize = 1;
/// The plain-TUN bulk rows with both stacks at MTU 1500 (synack's column measured again,
/// smoltcp's repeating the rows above).
const PLAIN_1500_UP: usize = 2;
const PLAIN_1500_DOWN: usize = 3;
/// The plain-TUN bulk rows with both stacks at synack's plain MTU (synack's column repeating
/// the rows above, smoltcp's measured again).
const PLAIN_BIG_UP: usize = 4;
const PLAIN_BIG_DOWN: usize = 5;
/// The bulk rows again with synack on the offloading TUN (the kernel column repeats the
/// veth numbers, for the ratio).
const OFFLOAD_UP: usize = 6;
const OFFLOAD_DOWN: usize = 7;
const HANDSHAKES: usize = 8;
const PINGPONG: usize = 9;
/// Then the loss rows: rate index * 2 + (0 up, 1 down).
const LOSS: usize = 10;

/// The table's rows, empty.
pub fn rows(s: &Settings) -> Vec<Row> {
    let mut rows = vec![
        Row::new(
            "bulk, stack → kernel, plain TUN at each stack's default MTU",
            "Gbit/s",
        ),
        Row::new(
            "bulk, kernel → stack, plain TUN at each stack's default MTU",
            "Gbit/s",
        ),
        Row::new(
            "bulk, stack → kernel, plain TUN, both at MTU 1500",
            "Gbit/s",
        ),
        Row::new(
            "bulk, kernel → stack, plain TUN, both at MTU 1500",
            "Gbit/s",
        ),
        Row::new(
            format!("bulk, stack → kernel, plain TUN, both at MTU {PLAIN_TUN_MTU}"),
            "Gbit/s",
        ),
        Row::new(
            format!("bulk, kernel → stack, plain TUN, both at MTU {PLAIN_TUN_MTU}"),
            "Gbit/s",
        ),
        Row::new("bulk, stack → kernel, synack on the offload TUN", "Gbit/s"),
        Row::new("bulk, kernel → stack, synack on the offload TUN", "Gbit/s"),
        Row::new("handshakes (kernel clients → listener)", "conn/s"),
        Row::new("1-byte ping-pong, one connection", "round trips/s"),
    ];
    for &rate in &s.loss_rates {
        rows.push(Row::new(
            format!(
                "{} MiB stack → kernel, {rate} % loss",
                s.loss_bytes as f64 / f64::from(1 << 20)
            ),
            "Mbit/s",
        ));
        rows.push(Row::new(
            format!(
                "{} MiB kernel → stack, {rate} % loss",
                s.loss_bytes as f64 / f64::from(1 << 20)
            ),
            "Mbit/s",
        ));
    }
    rows
}

/// Progress on stderr: `[ 3/30] what: result`.
struct Progress {
    step: usize,
    total: usize,
}

impl Progress {
    fn report(&mut self, what: &str, r: &io::Result<Outcome>, unit: Unit) {
        self.step += 1;
        let shown = match r {
            Ok(o) => {
                let v = unit.value(o);
                let mut s = format!("{v:.3} {}", unit.name());
                if o.timed_out {
                    s.push_str(" (timed out)");
                } else if !o.intact {
                    s.push_str(" (CORRUPT)");
                }
                s
            }
            Err(e) => format!("error: {e}"),
        };
        eprintln!("[{:>2}/{}] {what}: {shown}", self.step, self.total);
    }
}

/// How an outcome becomes a table value.
#[derive(Clone, Copy)]
pub(crate) enum Unit {
    Gbits,
    Mbits,
    PerSec,
}

impl Unit {
    fn value(self, o: &Outcome) -> f64 {
        match self {
            Unit::Gbits => o.gbits(),
            Unit::Mbits => o.gbits() * 1e3,
            Unit::PerSec => o.rate(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Gbits => "Gbit/s",
            Unit::Mbits => "Mbit/s",
            Unit::PerSec => "/s",
        }
    }
}

/// The median of the repetitions, or the first failure among them.
pub(crate) fn cell(results: &[io::Result<Outcome>], unit: Unit, need: Option<u64>) -> Cell {
    let mut values = Vec::new();
    let mut intact = true;
    let mut timed_out = false;
    for r in results {
        match r {
            Ok(o) => {
                values.push(unit.value(o));
                timed_out |= o.timed_out;
                // Under loss the whole fixed amount must arrive, not just a correct prefix.
                intact &= o.timed_out || (o.intact && need.is_none_or(|n| o.count == n));
            }
            Err(e) => return Cell::Failed(e.to_string()),
        }
    }
    let Some(median) = median(&mut values) else {
        return Cell::Failed("no result".into());
    };
    if timed_out {
        Cell::TimedOut { value: median }
    } else {
        Cell::Value {
            value: median,
            intact,
        }
    }
}

/// Runs everything; fills `rows` as results come, so that an error still leaves the rows
/// measured before it.
pub async fn run(
    s: &Settings,
    rows: &mut [Row],
    http_rows: &mut [HttpRow],
    workers_rows: &mut [WorkersRow],
) -> io::Result<()> {
    let mut p = Progress {
        step: 0,
        total: s.steps(),
    };
    if s.loss_only {
        synack_loss_phase(s, rows, &mut p).await?;
        return kernel_loss_phase(s, rows, &mut p).await;
    }
    if s.handshakes_only {
        return handshake_phase(s, rows, &mut p).await;
    }
    if s.offload_bulk_only {
        synack_offload_phase(s, rows, &mut p).await?;
        let veth = net::Veth::new()?;
        net::set_kernel_cc(&veth.a, s.kernel_cc.as_deref())?;
        net::set_kernel_cc(&veth.b, s.kernel_cc.as_deref())?;
        let server = Helper::server(&veth.b, &args(&["serve", &PORT_SERVE.to_string()]))?;
        kernel_bulk(s, rows, &mut p, &veth).await;
        drop(server);
        drop(veth);
        return Ok(());
    }
    if !s.http_only {
        synack_phase(s, rows, &mut p).await?;
        if s.plain_bulk_only {
            return smoltcp_phase(s, rows, &mut p).await;
        }
        synack_offload_phase(s, rows, &mut p).await?;
        smoltcp_phase(s, rows, &mut p).await?;
        kernel_phase(s, rows, &mut p).await?;
        handshake_phase(s, rows, &mut p).await?;
        workers_phase(s, workers_rows).await?;
    }
    let (reps, time) = (s.http_reps, s.http_time);
    let mut filled = http_rows.to_vec();
    filled = tokio::task::spawn_blocking(move || {
        let r = crate::http::run(reps, time, &mut filled);
        r.map(|()| filled)
    })
    .await
    .map_err(io::Error::other)??;
    http_rows.clone_from_slice(&filled);
    Ok(())
}

/// The bulk measurements of synack against the kernel-side server: each (row, direction,
/// label) `s.reps` times, the median in the row.
async fn synack_bulk(
    s: &Settings,
    rows: &mut [Row],
    p: &mut Progress,
    stack: &synack_tokio::Stack,
    target: SocketAddr,
    bulk: [(usize, Op, &str); 2],
) {
    for (row, op, what) in bulk {
        let mut results = Vec::new();
        for rep in 1..=s.reps {
            let r = if s.spawn_client {
                let (stack, header, timeout) = (stack.clone(), s.bulk(op), s.bulk_timeout());
                tokio::spawn(
                    async move { synack_side::client(&stack, target, header, timeout).await },
                )
                .await
                .map_err(io::Error::other)
                .and_then(|r| r)
            } else {
                synack_side::client(stack, target, s.bulk(op), s.bulk_timeout()).await
            };
            p.report(&format!("bulk {what} #{rep}"), &r, Unit::Gbits);
            results.push(r);
        }
        rows[row].synack = cell(&results, Unit::Gbits, None);
    }
}

/// The plain TUN the synack rows use.
const PLAIN_TUN: &str = "sbtun0";

/// synack on a plain TUN in a namespace of its own, with the kernel-side server there: the
/// set-up of the plain-TUN rows and of `--loss-only`. The loss rows take MTU 1500, as the
/// veth pair they are compared with has: netem stands for an Internet path there. Field
/// order is drop order: the server and the stack go before their namespace.
struct PlainTun {
    /// Held for its drop, which kills it.
    _server: Helper,
    stack: synack_tokio::Stack,
    ns: NetNs,
    target: SocketAddr,
}

impl PlainTun {
    /// `mtu`: 0 for the plain TUN's default.
    fn new(mtu: usize) -> io::Result<PlainTun> {
        let ns = net::namespace()?;
        let tun_config = TunConfig {
            name: PLAIN_TUN.into(),
            mtu,
            ..TunConfig::default()
        };
        let (stack, _) = synack_side::stack_on(
            &ns,
            &tun_config,
            synack_side::Tun::Plain,
            &[IpAddr::V4(TUN_STACK)],
        )?;
        let server = Helper::server(&ns, &args(&["serve", &PORT_SERVE.to_string()]))?;
        let target = SocketAddr::new(TUN_HOST.into(), PORT_SERVE);
        Ok(PlainTun {
            _server: server,
            stack,
            ns,
            target,
        })
    }
}

/// synack on a plain TUN, the kernel-side server in the TUN's namespace: at the TUN's
/// default MTU the bulk rows, ping-pong and handshakes; at MTU 1500 the bulk rows again and
/// the loss rows.
async fn synack_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    synack_default_mtu(s, rows, p).await?;
    let plain = PlainTun::new(1500)?;
    let bulk = [
        (PLAIN_1500_UP, Op::Upload, "synack → kernel, MTU 1500"),
        (PLAIN_1500_DOWN, Op::Download, "kernel → synack, MTU 1500"),
    ];
    synack_bulk(s, rows, p, &plain.stack, plain.target, bulk).await;
    if !s.plain_bulk_only {
        synack_loss(s, rows, p, &plain).await?;
    }
    Ok(())
}

/// The part of [`synack_phase`] at the plain TUN's default MTU.
async fn synack_default_mtu(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let plain = PlainTun::new(0)?;
    let (stack, target) = (&plain.stack, plain.target);

    let bulk = [
        (BULK_UP, Op::Upload, "synack → kernel"),
        (BULK_DOWN, Op::Download, "kernel → synack"),
    ];
    synack_bulk(s, rows, p, stack, target, bulk).await;
    rows[PLAIN_BIG_UP].synack = rows[BULK_UP].synack.clone();
    rows[PLAIN_BIG_DOWN].synack = rows[BULK_DOWN].synack.clone();
    if s.plain_bulk_only {
        return Ok(());
    }

    let header = Header {
        op: Op::PingPong,
        limit: 0,
        duration: s.pingpong_time,
    };
    let r = synack_side::client(stack, target, header, s.bulk_timeout()).await;
    p.report("ping-pong synack ↔ kernel", &r, Unit::PerSec);
    rows[PINGPONG].synack = cell(&[r], Unit::PerSec, None);
    Ok(())
}

/// The handshake row: kernel clients against a listener that accepts and closes, synack's on
/// the plain TUN at its default MTU and the kernel's over veth, `s.reps` runs each; the
/// medians. The two take turns, one run each per repetition, so that a slow spell of the
/// machine falls on both columns alike.
async fn handshake_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let plain = PlainTun::new(0)?;
    let listener = TcpListener::bind(
        &plain.stack,
        SocketAddr::new(TUN_STACK.into(), PORT_HANDSHAKE),
    )
    .await?;
    let accepted = Arc::new(AtomicU64::new(0));
    let acceptor = tokio::spawn(synack_side::accept_and_close(
        listener,
        Arc::clone(&accepted),
    ));
    let veth = net::Veth::new()?;
    let closer = Helper::server(
        &veth.b,
        &args(&["serve-close", &PORT_HANDSHAKE.to_string()]),
    )?;
    let targets = [
        (
            &plain.ns,
            SocketAddr::new(TUN_STACK.into(), PORT_HANDSHAKE),
            "kernel → synack",
        ),
        (
            &veth.a,
            SocketAddr::new(VETH_B.into(), PORT_HANDSHAKE),
            "kernel → kernel",
        ),
    ];
    let mut results = [Vec::new(), Vec::new()];
    for rep in 1..=s.reps {
        for (i, &(ns, target, what)) in targets.iter().enumerate() {
            let r = connect_loop(ns, target, s).await;
            p.report(&format!("handshakes {what} #{rep}"), &r, Unit::PerSec);
            results[i].push(r);
        }
    }
    rows[HANDSHAKES].synack = cell(&results[0], Unit::PerSec, None);
    rows[HANDSHAKES].kernel = cell(&results[1], Unit::PerSec, None);
    acceptor.abort();
    drop(closer);
    drop(veth);
    drop(plain);
    Ok(())
}

/// The loss rows of synack on `plain` (whose kernel-side server is up),
/// each `s.loss_reps` times, with the recovery counters of both sides after each run.
async fn synack_loss(
    s: &Settings,
    rows: &mut [Row],
    p: &mut Progress,
    plain: &PlainTun,
) -> io::Result<()> {
    let (ns, stack, target) = (&plain.ns, &plain.stack, plain.target);
    net::set_kernel_cc(ns, s.kernel_cc.as_deref())?;
    for (i, &rate) in s.loss_rates.iter().enumerate() {
        net::set_loss(ns, PLAIN_TUN, rate)?;
        for (j, op) in [Op::Upload, Op::Download].into_iter().enumerate() {
            let mut results = Vec::new();
            for rep in 1..=s.loss_reps {
                let before = net::nstat(ns);
                let stats = stack.stats();
                let (r, info) =
                    synack_side::client_info(stack, target, s.lossy(op), s.loss_timeout).await;
                p.report(
                    &format!("{rate} % loss, synack {} #{rep}", op.name()),
                    &r,
                    Unit::Mbits,
                );
                let after = stack.stats();
                eprintln!(
                    "    synack: segs_in={} segs_out={} {}",
                    after.segments_in - stats.segments_in,
                    after.segments_out - stats.segments_out,
                    info.map(|i| synack_side::loss_counters(&i))
                        .unwrap_or_default()
                );
                eprintln!("    kernel: {}", net::nstat_delta(&before, &net::nstat(ns)));
                results.push(r);
            }
            rows[LOSS + 2 * i + j].synack = cell(&results, Unit::Mbits, Some(s.loss_bytes));
        }
    }
    net::set_loss(ns, PLAIN_TUN, 0)
}

/// `--loss-only`: synack on a plain TUN, only the loss rows.
async fn synack_loss_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let plain = PlainTun::new(1500)?;
    synack_loss(s, rows, p, &plain).await
}

/// synack on the offloading TUN (`OffloadTun`), bulk only: the rows that per-packet syscalls
/// bound.
async fn synack_offload_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let ns = net::namespace()?;
    net::set_kernel_cc(&ns, s.kernel_cc.as_deref())?;
    let tun_config = TunConfig {
        name: "sbotun0".into(),
        ..TunConfig::default()
    };
    let (stack, counters) = synack_side::stack_on(
        &ns,
        &tun_config,
        synack_side::Tun::Offload,
        &[IpAddr::V4(TUN_STACK)],
    )?;
    let server = Helper::server(&ns, &args(&["serve", &PORT_SERVE.to_string()]))?;
    let target = SocketAddr::new(TUN_HOST.into(), PORT_SERVE);
    let bulk = [
        (OFFLOAD_UP, Op::Upload, "synack (offload TUN) → kernel"),
        (OFFLOAD_DOWN, Op::Download, "kernel → synack (offload TUN)"),
    ];
    synack_bulk(s, rows, p, &stack, target, bulk).await;
    if let Some(c) = counters {
        eprintln!("offload TUN counters: {:?}", c.snapshot());
    }
    drop(server);
    drop(stack);
    drop(ns);
    Ok(())
}

/// Concurrent flows in each run of the workers rows: one per worker at most, so that two
/// workers each own one (connects go to the shards in turn).
pub const WORKER_FLOWS: usize = 2;

/// The workers table's rows, empty.
pub fn workers_rows() -> Vec<WorkersRow> {
    vec![
        WorkersRow::new(
            format!("bulk, {WORKER_FLOWS} flows, stack → kernel, offload TUN"),
            "Gbit/s",
        ),
        WorkersRow::new(
            format!("bulk, {WORKER_FLOWS} flows, kernel → stack, offload TUN"),
            "Gbit/s",
        ),
    ]
}

/// The workers rows: synack on the offload TUN with `Stack::builder().workers(1)` and then
/// `workers(2)`, on a tokio multi-thread runtime of two threads (the default runtime of a
/// 2-core machine), [`WORKER_FLOWS`] bulk flows at once each way, with the harness
/// process's CPU time per GiB. Runs on a thread of its own, as the rest of the harness runs
/// on a current-thread runtime.
pub async fn workers_phase(s: &Settings, rows: &mut [WorkersRow]) -> io::Result<()> {
    let s = s.clone();
    let mut filled = rows.to_vec();
    let filled = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        for (i, workers) in [1, 2].into_iter().enumerate() {
            runtime.block_on(workers_run(&s, workers, i, &mut filled))?;
        }
        Ok::<_, io::Error>(filled)
    })
    .await
    .map_err(io::Error::other)??;
    rows.clone_from_slice(&filled);
    Ok(())
}

/// One column of the workers rows: a stack with `workers` shards, both directions.
async fn workers_run(
    s: &Settings,
    workers: usize,
    column: usize,
    rows: &mut [WorkersRow],
) -> io::Result<()> {
    let ns = net::namespace()?;
    let tun_config = TunConfig {
        name: "sbwtun0".into(),
        ..TunConfig::default()
    };
    let device = synack_tokio::device::OffloadTun::create_in(&ns, &tun_config)?;
    let stack = synack_tokio::Stack::builder()
        .address(IpAddr::V4(TUN_STACK))
        .workers(workers)
        .build(device)?;
    let server = Helper::server(&ns, &args(&["serve", &PORT_SERVE.to_string()]))?;
    let target = SocketAddr::new(TUN_HOST.into(), PORT_SERVE);
    let me = std::process::id();
    for (row, op) in rows.iter_mut().zip([Op::Upload, Op::Download]) {
        let mut results = Vec::new();
        let mut cpus = Vec::new();
        for rep in 1..=s.reps {
            let before = crate::http::cpu_time(me);
            let flows: Vec<_> = (0..WORKER_FLOWS)
                .map(|_| {
                    let stack = stack.clone();
                    let (header, timeout) = (s.bulk(op), s.bulk_timeout());
                    tokio::spawn(async move {
                        synack_side::client(&stack, target, header, timeout).await
                    })
                })
                .collect();
            let mut total = Outcome {
                count: 0,
                secs: 0.0,
                intact: true,
                timed_out: false,
            };
            let mut failed = None;
            for flow in flows {
                match flow.await.map_err(io::Error::other).and_then(|r| r) {
                    Ok(o) => {
                        total.count += o.count;
                        total.secs = total.secs.max(o.secs);
                        total.intact &= o.intact;
                        total.timed_out |= o.timed_out;
                    }
                    Err(e) => failed = Some(e),
                }
            }
            let used = before.zip(crate::http::cpu_time(me)).map(|(b, a)| a - b);
            let r = match failed {
                Some(e) => Err(e),
                None => Ok(total),
            };
            let shown = match &r {
                Ok(o) => format!("{:.3} Gbit/s", o.gbits()),
                Err(e) => format!("error: {e}"),
            };
            let gib = total.count as f64 / f64::from(1 << 30);
            let per_gib = used
                .filter(|_| gib > 0.0)
                .map(|u| u.as_secs_f64() * 1e3 / gib);
            if let Some(ms) = per_gib {
                cpus.push(ms);
            }
            eprintln!(
                "[workers] {}, {workers} worker(s) #{rep}: {shown}, {} ms CPU a GiB",
                row.name,
                per_gib.map_or("?".into(), |ms| format!("{ms:.0}"))
            );
            results.push(r);
        }
        row.cells[column] = cell(&results, Unit::Gbits, None);
        row.cpu_ms_per_gib[column] = median(&mut cpus);
    }
    drop(server);
    drop(stack);
    drop(ns);
    Ok(())
}

/// `__peer connect-loop` in `ns` against `target`, waited for off the async threads.
async fn connect_loop(ns: &NetNs, target: SocketAddr, s: &Settings) -> io::Result<Outcome> {
    let helper = Helper::spawn(
        ns,
        &args(&[
            "connect-loop",
            &target.to_string(),
            &s.handshake_threads.to_string(),
            &s.handshake_time.as_millis().to_string(),
        ]),
    )?;
    let limit = s.handshake_time + Duration::from_secs(10);
    tokio::task::spawn_blocking(move || helper.outcome(limit))
        .await
        .map_err(io::Error::other)?
}

/// Sets a flag when dropped: tells the smoltcp thread that the run was abandoned (Ctrl-C).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// smoltcp on its own TUN in its own namespace, the same kernel-side server: on a TUN as
/// Linux makes it (MTU 1500), then at synack's plain-TUN MTU.
async fn smoltcp_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let (up, down) = smoltcp_bulk(s, p, None).await?;
    rows[BULK_UP].smoltcp = up.clone();
    rows[BULK_DOWN].smoltcp = down.clone();
    rows[PLAIN_1500_UP].smoltcp = up.clone();
    rows[PLAIN_1500_DOWN].smoltcp = down.clone();
    // The same smoltcp numbers against synack on the offload TUN, for the ratio: smoltcp
    // has no offloading device, so this is each stack at its best on a TUN as Linux makes it.
    rows[OFFLOAD_UP].smoltcp = up;
    rows[OFFLOAD_DOWN].smoltcp = down;
    let (up, down) = smoltcp_bulk(s, p, Some(PLAIN_TUN_MTU)).await?;
    rows[PLAIN_BIG_UP].smoltcp = up;
    rows[PLAIN_BIG_DOWN].smoltcp = down;
    Ok(())
}

/// smoltcp's bulk runs, up then down, on a TUN of `mtu` (`None`: as Linux makes it): the
/// median cells.
async fn smoltcp_bulk(
    s: &Settings,
    p: &mut Progress,
    mtu: Option<usize>,
) -> io::Result<(Cell, Cell)> {
    let ns = net::namespace()?;
    let server = Helper::server(&ns, &args(&["serve", &PORT_SERVE.to_string()]))?;
    let mut plan = Vec::new();
    for op in [Op::Upload, Op::Download] {
        for _ in 0..s.reps {
            plan.push((s.bulk(op), s.bulk_timeout()));
        }
    }
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = Arc::clone(&cancel.0);
    let (first_step, total, reps) = (p.step, p.total, s.reps);
    let name = ns.name().to_owned();
    // The namespace moves into the blocking task and is dropped there, after the thread that
    // uses its TUN has finished, even if this future is abandoned.
    let results = tokio::task::spawn_blocking(move || {
        let run = ns.run_in(move || {
            let mut step = first_step;
            smol_side::run_plan(&name, mtu, &plan, &flag, |i, r| {
                step += 1;
                let what = if i < reps {
                    "smoltcp → kernel"
                } else {
                    "kernel → smoltcp"
                };
                let what = match mtu {
                    Some(mtu) => format!("{what}, MTU {mtu}"),
                    None => what.to_owned(),
                };
                let shown = match r {
                    Ok(o) if o.intact => format!("{:.3} Gbit/s", o.gbits()),
                    Ok(o) => format!("{:.3} Gbit/s (not intact/timed out)", o.gbits()),
                    Err(e) => format!("error: {e}"),
                };
                eprintln!("[{step:>2}/{total}] bulk {what} #{}: {shown}", i % reps + 1);
            })
        });
        drop(server);
        drop(ns);
        run
    })
    .await
    .map_err(io::Error::other)???;
    drop(cancel);
    p.step += results.len();
    let (up, down) = results.split_at(s.reps.min(results.len()));
    Ok((cell(up, Unit::Gbits, None), cell(down, Unit::Gbits, None)))
}

/// The kernel on both ends: the client in one namespace, the server in the other, a veth
/// pair between them.
async fn kernel_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let veth = net::Veth::new()?;
    let server = Helper::server(&veth.b, &args(&["serve", &PORT_SERVE.to_string()]))?;
    let target = SocketAddr::new(VETH_B.into(), PORT_SERVE);
    kernel_bulk(s, rows, p, &veth).await;

    let header = Header {
        op: Op::PingPong,
        limit: 0,
        duration: s.pingpong_time,
    };
    let r = kernel_client(&veth.a, target, header, s.bulk_timeout()).await;
    p.report("ping-pong kernel ↔ kernel", &r, Unit::PerSec);
    rows[PINGPONG].kernel = cell(&[r], Unit::PerSec, None);

    kernel_loss(s, rows, p, &veth, target).await?;
    drop(server);
    drop(veth);
    Ok(())
}

/// The kernel's bulk rows over `veth`, against the server on its `b` side (also the
/// kernel column of the offload rows).
async fn kernel_bulk(s: &Settings, rows: &mut [Row], p: &mut Progress, veth: &net::Veth) {
    let target = SocketAddr::new(VETH_B.into(), PORT_SERVE);
    for (row, op, what) in [
        (BULK_UP, Op::Upload, "kernel → kernel (client sends)"),
        (BULK_DOWN, Op::Download, "kernel → kernel (server sends)"),
    ] {
        let mut results = Vec::new();
        for rep in 1..=s.reps {
            let r = kernel_client(&veth.a, target, s.bulk(op), s.bulk_timeout()).await;
            p.report(&format!("bulk {what} #{rep}"), &r, Unit::Gbits);
            results.push(r);
        }
        rows[row].kernel = cell(&results, Unit::Gbits, None);
    }
    rows[OFFLOAD_UP].kernel = rows[BULK_UP].kernel.clone();
    rows[OFFLOAD_DOWN].kernel = rows[BULK_DOWN].kernel.clone();
}

/// The loss rows of the kernel over the veth pair, each `s.loss_reps` times, with both
/// namespaces' recovery counters after each run (the client's in `a`, the server's in `b`).
async fn kernel_loss(
    s: &Settings,
    rows: &mut [Row],
    p: &mut Progress,
    veth: &net::Veth,
    target: SocketAddr,
) -> io::Result<()> {
    net::set_kernel_cc(&veth.a, s.kernel_cc.as_deref())?;
    net::set_kernel_cc(&veth.b, s.kernel_cc.as_deref())?;
    // Both directions are dropped on the server side's interface; the client side sends
    // single segments too (see `set_loss`).
    net::ip(
        veth.a.name(),
        &["link", "set", "dev", net::VETH_A_IF, "gso_max_segs", "1"],
    )?;
    for (i, &rate) in s.loss_rates.iter().enumerate() {
        net::set_loss(&veth.b, net::VETH_B_IF, rate)?;
        for (j, op) in [Op::Upload, Op::Download].into_iter().enumerate() {
            let mut results = Vec::new();
            for rep in 1..=s.loss_reps {
                let (a0, b0) = (net::nstat(&veth.a), net::nstat(&veth.b));
                let r = kernel_client(&veth.a, target, s.lossy(op), s.loss_timeout).await;
                p.report(
                    &format!("{rate} % loss, kernel {} #{rep}", op.name()),
                    &r,
                    Unit::Mbits,
                );
                eprintln!(
                    "    client: {}",
                    net::nstat_delta(&a0, &net::nstat(&veth.a))
                );
                eprintln!(
                    "    server: {}",
                    net::nstat_delta(&b0, &net::nstat(&veth.b))
                );
                results.push(r);
            }
            rows[LOSS + 2 * i + j].kernel = cell(&results, Unit::Mbits, Some(s.loss_bytes));
        }
    }
    Ok(())
}

/// `--loss-only`: the kernel on both ends of a veth pair, only the loss rows.
async fn kernel_loss_phase(s: &Settings, rows: &mut [Row], p: &mut Progress) -> io::Result<()> {
    let veth = net::Veth::new()?;
    let server = Helper::server(&veth.b, &args(&["serve", &PORT_SERVE.to_string()]))?;
    let target = SocketAddr::new(VETH_B.into(), PORT_SERVE);
    kernel_loss(s, rows, p, &veth, target).await?;
    drop(server);
    drop(veth);
    Ok(())
}

/// `__peer client` in `ns`, waited for off the async threads.
async fn kernel_client(
    ns: &NetNs,
    target: SocketAddr,
    header: Header,
    timeout: Duration,
) -> io::Result<Outcome> {
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
    // The helper bounds itself by about twice the timeout; past that it is stuck.
    let limit = timeout * 2 + Duration::from_secs(5);
    tokio::task::spawn_blocking(move || helper.outcome(limit))
        .await
        .map_err(io::Error::other)?
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}
