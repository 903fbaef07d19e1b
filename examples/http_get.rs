//! `http_get URL [-o FILE] [--dns IP] [--stats]`: one HTTP/1.1 GET through synack, with hyper
//! over `TcpStream`.
//!
//! Run it inside a network namespace that has nothing else in it, for example:
//!
//! ```text
//! ip netns add synack
//! ip netns exec synack cargo run --example http_get -- http://198.18.0.1:8000/file -o out
//! ```
//!
//! It creates the TUN device (`--tun`, kernel side `--host-addr`) in the namespace it runs in,
//! so the kernel's own servers in that namespace are reachable at 198.18.0.1. The body goes
//! to FILE or stdout; the status and transfer rate go to stderr. A status other than 2xx
//! exits non-zero, as `curl -f` does.
//!
//! A URL's host may be a name when `--dns` gives a name server: the name is looked up with
//! hickory-resolver through the stack itself (UDP, and TCP for a truncated answer), never
//! with the host's resolver, whose network is not the stack's.

mod common;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

/// An HTTP/1.1 GET through the synack stack.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The URL to fetch: http://HOST[:PORT]/PATH, HOST an IP address, or a name with --dns.
    url: hyper::Uri,
    /// A name server (port 53) to look up the URL's host with, through the stack; repeat
    /// for more (asked two at a time, the fastest first).
    #[arg(long, value_name = "IP")]
    dns: Vec<std::net::IpAddr>,
    /// Write the body to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    output: Option<std::path::PathBuf>,
    #[command(flatten)]
    net: common::NetArgs,
}

async fn run(args: Args) -> io::Result<()> {
    let (host, _) = common::http_target(&args.url)?;
    if args.dns.is_empty() && host.parse::<std::net::IpAddr>().is_err() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{host} is a name: give a name server to look it up with, --dns IP"),
        ));
    }
    let stack = args.net.open_stack()?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    if !args.dns.is_empty() {
        let resolver = synack::tokio::integration::hickory::resolver(&stack, &args.dns)?;
        stack.set_resolver(Some(resolver));
    }
    let start = Instant::now();
    let (status, bytes) = common::http_get(&stack, &args.url, |chunk| out.write_all(chunk)).await?;
    out.flush()?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{status}: {bytes} bytes in {secs:.3} s ({:.1} Mbit/s)",
        bytes as f64 * 8.0 / secs.max(1e-9) / 1e6
    );
    // The connection closes in the background: let its FIN exchange finish before the
    // process (and with it the stack) ends.
    stack.shutdown(Duration::from_secs(5)).await?;
    args.net.print_stats(&stack);
    if status.is_success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("server answered {status}")))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    args.net.init_tracing();
    common::report("http_get", common::until_signal(run(args)).await)
}
