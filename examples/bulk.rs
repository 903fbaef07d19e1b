//! `bulk`: one bulk TCP transfer through synack, timed.
//!
//! ```text
//! bulk send HOST:PORT --bytes N    connect, send N bytes, half-close, wait for the peer's FIN
//! bulk recv [--port 5001]          accept one connection, read until its FIN, close
//! ```
//!
//! Both print the byte count, the seconds and the rate in Gbit/s. Like the other examples they
//! create the TUN in the network namespace they run in and refuse the host's own:
//!
//! ```text
//! ip netns add synack
//! ip netns exec synack sysctl -qw net.ipv4.ip_nonlocal_bind=1
//! ip netns exec synack nc -l 198.18.0.1 5001 >/dev/null &
//! ip netns exec synack cargo run --release --example bulk -- send 198.18.0.1:5001 --bytes 1G
//! ip netns delete synack
//! ```
//!
//! 198.18.0.1, the kernel's side of the TUN, exists only once `bulk` has created the device,
//! so `nc` may bind to it beforehand only with `ip_nonlocal_bind` (a setting of the
//! namespace's own, gone with it); `nc -l 5001` on every address needs no sysctl.
//!
//! The sender stops its clock at the peer's FIN rather than at its own last write: a write
//! only means the bytes are in synack's send buffer, while the peer's FIN (sent after it read
//! our FIN, as `nc` and the kernel-side sinks of `synack-bench` do) means they all arrived.
//! For the full comparison with the kernel and smoltcp, see `synack-bench` (BENCHMARKS.md).

mod common;

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use synack::tokio::TcpStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bulk TCP transfer over the synack stack.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Connect to HOST:PORT and send --bytes bytes, then half-close.
    Send {
        /// The receiver, e.g. 198.18.0.1:5001 (an IP address and port; names are for
        /// http_get, whose --dns looks them up through the stack).
        target: SocketAddr,
        /// How much to send: a number with an optional K, M or G suffix (powers of 1024).
        #[arg(long, value_parser = parse_size)]
        bytes: u64,
        #[command(flatten)]
        net: common::NetArgs,
    },
    /// Accept one connection on --port and read until its sender half-closes.
    Recv {
        /// The TCP port to listen on.
        #[arg(long, default_value_t = 5001)]
        port: u16,
        #[command(flatten)]
        net: common::NetArgs,
    },
}

/// The size of the chunks handed to `write` and `read`.
const CHUNK: usize = 64 * 1024;

/// `123`, `64K`, `10M`, `1G` (binary multiples, as iperf reads them).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.as_bytes().last().map(u8::to_ascii_uppercase) {
        Some(b'K') => (&s[..s.len() - 1], 10),
        Some(b'M') => (&s[..s.len() - 1], 20),
        Some(b'G') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 1000, 64K, 10M, 1G)"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Prints the line both modes end with.
fn print_rate(what: &str, bytes: u64, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{what} {bytes} bytes in {secs:.3} s: {:.3} Gbit/s",
        bytes as f64 * 8.0 / secs.max(1e-9) / 1e9
    );
}

async fn send(target: SocketAddr, bytes: u64, net: &common::NetArgs) -> io::Result<()> {
    let stack = net.open_stack()?;
    let started = Instant::now();
    let mut stream = TcpStream::connect(&stack, target).await?;
    // A repeating non-zero pattern, so that a receiver can spot misplaced data if it checks.
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let mut left = bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        stream.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    stream.shutdown().await?;
    // Wait for the receiver's FIN: it comes after all our data (RFC 9293 §3.10.4). Anything
    // the receiver says before it is counted and ignored.
    let mut sink = vec![0; CHUNK];
    let mut echoed = 0u64;
    loop {
        match stream.read(&mut sink).await? {
            0 => break,
            n => echoed += n as u64,
        }
    }
    print_rate("sent", bytes, started.elapsed());
    if echoed > 0 {
        eprintln!("(the receiver sent {echoed} bytes back; ignored)");
    }
    drop(stream);
    let done = stack.shutdown(Duration::from_secs(5)).await;
    net.print_stats(&stack);
    done
}

async fn recv(port: u16, net: &common::NetArgs) -> io::Result<()> {
    let stack = net.open_stack()?;
    let listeners = common::Listeners::bind(&stack, net, port).await?;
    for addr in listeners.local_addrs()? {
        eprintln!("waiting on {addr}");
    }
    let (mut stream, peer) = listeners.accept().await?;
    // The clock starts at accept: the handshake is done, the data follows.
    let started = Instant::now();
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).await? {
            0 => break,
            n => total += n as u64,
        }
    }
    let elapsed = started.elapsed();
    stream.shutdown().await?;
    print_rate(&format!("received from {peer}:"), total, elapsed);
    // Our FIN is on its way: wait for its ACK before the process (and the stack) ends.
    drop(stream);
    let done = stack.shutdown(Duration::from_secs(5)).await;
    net.print_stats(&stack);
    done
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let run = async {
        match &args.mode {
            Mode::Send { target, bytes, net } => {
                net.init_tracing();
                send(*target, *bytes, net).await
            }
            Mode::Recv { port, net } => {
                net.init_tracing();
                recv(*port, net).await
            }
        }
    };
    common::report("bulk", common::until_signal(run).await)
}
