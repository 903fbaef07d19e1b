//! `quickstart`: synack end to end, with nothing to set up but root.
//!
//! 1. makes its own network namespace and a TUN device in it (the kernel is 198.18.0.1, the
//!    stack 198.18.0.2);
//! 2. starts the kernel-side HTTP server `python3 -m http.server` on 198.18.0.1:8000 in that
//!    namespace, serving a file it generates;
//! 3. fetches the file through synack with hyper, checks it byte for byte, and prints the
//!    three-way handshake as it went over the wire (with the TCP options), the transfer rate
//!    and the stack's counters;
//! 4. stops the server and deletes the namespace (and with it the device), also on failure.
//!
//! ```text
//! sudo -E env "PATH=$PATH:/usr/sbin:/sbin" cargo run --release --example quickstart [-- --pcap quickstart.pcap]
//! ```

mod common;

use std::io;
use std::net::Ipv4Addr;
use std::process::{Child, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::Parser;
use synack::core::{Bytes, RecvMeta, Transmit};
use synack::tokio::device::{Device, DeviceCapabilities, TunDevice};
use synack::tokio::netns::NetNs;

/// Fetch a file from the kernel through synack, in a namespace of its own.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Size of the generated file, in bytes (at most 1 GiB: it is made in memory).
    #[arg(long, default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(..=1 << 30))]
    size: u64,
    #[command(flatten)]
    net: common::NetArgs,
}

/// The kernel-side HTTP server's port.
const HTTP_PORT: u16 = 8000;
/// Packets kept for the handshake printout (only their first bytes).
const TAP_PACKETS: usize = 512;
/// Bytes kept of each: an IPv4 header with options (60) and a TCP header with options (60).
const TAP_BYTES: usize = 120;

/// Which way a packet went.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    /// From the stack to the kernel.
    Out,
    /// From the kernel to the stack.
    In,
}

/// The first packets through the device, and when they passed.
type Log = Arc<Mutex<Vec<(Instant, Dir, Vec<u8>)>>>;

/// A device wrapper that keeps the first bytes of the first packets, so that the handshake
/// can be shown as it really went over the wire.
struct Tap<D> {
    inner: D,
    log: Log,
}

impl<D> Tap<D> {
    fn keep(&self, dir: Dir, packet: &[u8]) {
        self.keep_pieces(dir, [packet]);
    }

    /// [`keep`](Self::keep) for a packet given in pieces: its first bytes, across them.
    fn keep_pieces<'a>(&self, dir: Dir, pieces: impl IntoIterator<Item = &'a [u8]>) {
        if let Ok(mut log) = self.log.lock() {
            if log.len() < TAP_PACKETS {
                let mut kept = Vec::with_capacity(TAP_BYTES);
                for piece in pieces {
                    let n = piece.len().min(TAP_BYTES - kept.len());
                    kept.extend_from_slice(&piece[..n]);
                }
                log.push((Instant::now(), dir, kept));
            }
        }
    }
}

impl<D: Device> Device for Tap<D> {
    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        let result = self.inner.poll_recv(cx, buf);
        if let Poll::Ready(Ok(meta)) = result {
            if let Some(p) = buf.get(..meta.len) {
                self.keep(Dir::In, p);
            }
        }
        result
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        let result = self.inner.poll_send(cx, packet, transmit);
        if let Poll::Ready(Ok(())) = result {
            self.keep(Dir::Out, packet);
        }
        result
    }

    // Every other method of the trait passes through too, defaults included: a wrapper
    // that kept them would copy each gathered super-segment whole, run one worker whatever
    // `--workers` says, lose the link's broadcast address and interface name (so that
    // `bind_device` finds no interface), and leave flows unsteered.
    fn poll_send_gather(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        payload: &[Bytes],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        let result = self.inner.poll_send_gather(cx, head, payload, transmit);
        if let Poll::Ready(Ok(())) = result {
            let pieces = std::iter::once(head).chain(payload.iter().map(|b| &b[..]));
            self.keep_pieces(Dir::Out, pieces);
        }
        result
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }

    fn check(&mut self) -> io::Result<()> {
        self.inner.check()
    }

    fn link_mtu(&mut self) -> Option<usize> {
        self.inner.link_mtu()
    }

    fn max_queues(&self) -> usize {
        self.inner.max_queues()
    }

    fn open_queue(&mut self) -> io::Result<Self> {
        Ok(Tap {
            inner: self.inner.open_queue()?,
            log: self.log.clone(),
        })
    }

    fn broadcast_addresses(&self) -> Vec<Ipv4Addr> {
        self.inner.broadcast_addresses()
    }

    fn interface_name(&self) -> Option<String> {
        self.inner.interface_name()
    }

    fn steer_flows(&mut self, steering: &synack::tokio::FlowSteering) -> io::Result<()> {
        self.inner.steer_flows(steering)
    }
}

/// The TCP header fields the printout shows, parsed by hand from an IPv4 packet.
struct Segment<'a> {
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    options: &'a [u8],
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

fn parse_segment(p: &[u8]) -> Option<Segment<'_>> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if p.first()? >> 4 != 4 || *p.get(9)? != 6 || ihl < 20 {
        return None;
    }
    let ip = |i: usize| {
        Some(Ipv4Addr::new(
            *p.get(i)?,
            *p.get(i + 1)?,
            *p.get(i + 2)?,
            *p.get(i + 3)?,
        ))
    };
    let t = p.get(ihl..)?;
    let u16_at = |i: usize| Some(u16::from_be_bytes([*t.get(i)?, *t.get(i + 1)?]));
    let u32_at = |i: usize| Some(u32::from_be_bytes(t.get(i..i + 4)?.try_into().ok()?));
    let data_offset = usize::from(t.get(12)? >> 4) * 4;
    Some(Segment {
        src: (ip(12)?, u16_at(0)?),
        dst: (ip(16)?, u16_at(2)?),
        seq: u32_at(4)?,
        ack: u32_at(8)?,
        flags: *t.get(13)?,
        window: u16_at(14)?,
        // Kept bytes may end inside the options; show what we have.
        options: t.get(20..data_offset.min(t.len()).max(20))?,
    })
}

fn flag_names(flags: u8) -> String {
    let names = [
        (SYN, "SYN"),
        (FIN, "FIN"),
        (RST, "RST"),
        (PSH, "PSH"),
        (ACK, "ACK"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    set.join(",")
}

/// The TCP options in tcpdump's words (RFC 9293 §3.2, RFC 7323, RFC 2018).
fn option_names(mut opts: &[u8]) -> String {
    let mut out = Vec::new();
    while let Some(&kind) = opts.first() {
        match kind {
            0 => {
                out.push("eol".to_string());
                break;
            }
            1 => {
                out.push("nop".to_string());
                opts = &opts[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = opts.get(1) else { break };
        let Some(body) = opts.get(2..usize::from(len)) else {
            out.push(format!("malformed option {kind}"));
            break;
        };
        out.push(match (kind, body) {
            (2, [a, b]) => format!("mss {}", u16::from_be_bytes([*a, *b])),
            (3, [shift]) => format!("wscale {shift}"),
            (4, []) => "sackOK".to_string(),
            (8, [v0, v1, v2, v3, e0, e1, e2, e3]) => {
                let val = u32::from_be_bytes([*v0, *v1, *v2, *v3]);
                let ecr = u32::from_be_bytes([*e0, *e1, *e2, *e3]);
                format!("TS val {val} ecr {ecr}")
            }
            _ => format!("option {kind} ({len} bytes)"),
        });
        opts = &opts[usize::from(len).max(2)..];
    }
    out.join(", ")
}

/// Prints our last SYN, the SYN-ACK to it and our first ACK after it.
fn print_handshake(log: &[(Instant, Dir, Vec<u8>)]) {
    let parsed: Vec<(Instant, Dir, Segment<'_>)> = log
        .iter()
        .filter_map(|(t, d, p)| Some((*t, *d, parse_segment(p)?)))
        .collect();
    let Some(syn_at) = parsed
        .iter()
        .rposition(|(_, d, s)| *d == Dir::Out && s.flags & (SYN | ACK) == SYN)
    else {
        println!("  (no SYN captured)");
        return;
    };
    let port = parsed[syn_at].2.src.1;
    let start = parsed[syn_at].0;
    let mut shown = 0;
    for (t, dir, s) in &parsed[syn_at..] {
        let ours = (*dir == Dir::Out && s.src.1 == port) || (*dir == Dir::In && s.dst.1 == port);
        if !ours {
            continue;
        }
        let label = match shown {
            0 => "SYN    ",
            1 => "SYN-ACK",
            _ => "ACK    ",
        };
        println!(
            "  {label} {:>7.3} ms  {}:{} > {}:{}  [{}] seq {} ack {} win {}",
            t.duration_since(start).as_secs_f64() * 1e3,
            s.src.0,
            s.src.1,
            s.dst.0,
            s.dst.1,
            flag_names(s.flags),
            s.seq,
            s.ack,
            s.window,
        );
        if !s.options.is_empty() {
            println!("           options: {}", option_names(s.options));
        }
        shown += 1;
        if shown == 3 {
            break;
        }
    }
}

/// The file the server serves: a fixed pattern, so corruption anywhere shows.
fn generate(size: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..size)
        .map(|_| {
            // xorshift32: cheap, deterministic, and not periodic at TCP-segment scale.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Kills and reaps the kernel-side server when dropped (every exit path).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the temporary directory when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    /// A new directory of our own under the system's temp dir, only root's to read (0700):
    /// named at random and created, not found, so that no one can have put a directory or a
    /// symlink there first for root to write the file through.
    fn new(prefix: &str) -> io::Result<TempDir> {
        use std::hash::{BuildHasher, Hasher};
        use std::os::unix::fs::DirBuilderExt;
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let path = std::env::temp_dir().join(format!("{prefix}-{random:016x}"));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TempDir(path))
    }
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(args: Args) -> io::Result<()> {
    args.net.check()?;
    if args.net.attach || args.net.tun_fd.is_some() {
        // The tour makes its namespace and its TUN itself, so there is nothing to attach to.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "quickstart creates its own namespace and TUN: --attach and --tun-fd are for the \
             other examples",
        ));
    }
    // The kernel-side server is python3's: say so now, not as a refused connection later.
    if !on_path("python3") {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "python3 is needed for the kernel-side HTTP server (Debian: apt install python3)",
        ));
    }
    let ns = NetNs::new("synack-quickstart").map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => {
                " (run as root, or with CAP_NET_ADMIN and CAP_SYS_ADMIN)"
            }
            io::ErrorKind::NotFound => " (is iproute2's `ip` installed?)",
            _ => "",
        };
        io::Error::new(
            e.kind(),
            format!("cannot create a network namespace{hint}: {e}"),
        )
    })?;
    println!("network namespace {} created", ns.name());
    let tun = TunDevice::create_in(&ns, &args.net.tun_config())?;
    println!(
        "TUN {}: kernel {} <-> synack {} (MTU {})",
        tun.name(),
        args.net.host_addr,
        args.net.addr,
        tun.capabilities().mtu
    );

    let dir = TempDir::new(ns.name())?;
    let content = generate(args.size as usize);
    std::fs::write(dir.0.join("file.bin"), &content)?;
    let host = args.net.host_addr.addr;
    let _server = Server(
        ns.command("python3")
            .args(["-m", "http.server", &HTTP_PORT.to_string(), "--bind"])
            .arg(host.to_string())
            .arg("--directory")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("starting python3 -m http.server: {e}"))
            })?,
    );
    println!("kernel-side server: python3 -m http.server on {host}:{HTTP_PORT}");

    let log: Log = Arc::default();
    let stack = args.net.start(Tap {
        inner: tun,
        log: log.clone(),
    })?;
    let url: hyper::Uri = format!("http://{host}:{HTTP_PORT}/file.bin")
        .parse()
        .map_err(io::Error::other)?;

    // The server takes a moment to start: until it listens, the kernel answers RST. Bounded:
    // 100 tries, 100 ms apart.
    let mut body = Vec::with_capacity(content.len());
    let mut tries = 0;
    let (status, elapsed) = loop {
        body.clear();
        let started = Instant::now();
        match common::http_get(&stack, &url, |chunk| {
            body.extend_from_slice(chunk);
            Ok(())
        })
        .await
        {
            Ok((status, _)) => break (status, started.elapsed()),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };

    println!("\nhandshake (as written to and read from the TUN):");
    if let Ok(log) = log.lock() {
        print_handshake(&log);
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "\nGET {url}: {status}, {} bytes in {:.3} s ({:.1} Mbit/s)",
        body.len(),
        secs,
        body.len() as f64 * 8.0 / secs.max(1e-9) / 1e6
    );
    if !status.is_success() {
        return Err(io::Error::other(format!("server answered {status}")));
    }
    if body != content {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the body differs from the file served",
        ));
    }
    println!(
        "content verified: identical to the {} bytes served",
        content.len()
    );
    println!("\nstack statistics:\n{:#?}", stack.stats());
    if let Some(path) = &args.net.pcap {
        println!("\npcap written to {} (wireshark {0})", path.display());
    }
    // The connection closes in the background: its FIN exchange finishes before the stack
    // goes (the documented way to end a program that used the stack).
    stack.shutdown(Duration::from_secs(5)).await?;
    drop(stack);
    drop(_server);
    drop(ns);
    println!("\ncleaned up: server stopped, namespace and TUN deleted");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    args.net.init_tracing();
    // Ctrl-C or SIGTERM ends the run like an error: `run`'s future is dropped, and with it
    // the stack, the kernel-side server and the namespace, which clean up as they go.
    let result = common::until_signal(run(args)).await;
    common::report("quickstart", result)
}
