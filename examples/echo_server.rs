//! `echo_server [--port 7]`: sends back whatever each client sends (RFC 862), until the
//! client's FIN; then it sends its own FIN. Every connection is its own task.
//!
//! Run it inside a network namespace that has nothing else in it; it creates the TUN device
//! there and listens on `--addr` (198.18.0.2):
//!
//! ```text
//! ip netns add synack
//! ip netns exec synack cargo run --example echo_server &
//! # until it has built, made synack0 and brought it up (its route to 198.18.0.2 is there):
//! until ip -n synack route get 198.18.0.2 >/dev/null 2>&1; do sleep 0.1; done
//! ip netns exec synack python3 -c 'import socket; s=socket.create_connection(("198.18.0.2", 7)); s.sendall(b"hi"); print(s.recv(2))'
//! ```
//!
//! It runs until Ctrl-C or SIGTERM; `--stats` then prints the stack's counters.

mod common;

use std::io;
use std::process::ExitCode;

use clap::Parser;
use tokio::io::AsyncWriteExt;

/// An echo server on the synack stack.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The TCP port to listen on.
    #[arg(long, default_value_t = 7)]
    port: u16,
    #[command(flatten)]
    net: common::NetArgs,
}

async fn run(args: Args) -> io::Result<()> {
    let stack = args.net.open_stack()?;
    let listeners = common::Listeners::bind(&stack, &args.net, args.port).await?;
    for addr in listeners.local_addrs()? {
        eprintln!("echoing on {addr}");
    }
    let stop = common::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listeners.accept() => accepted?,
            r = &mut stop => {
                common::finish(&stack).await;
                args.net.print_stats(&stack);
                return r;
            }
        };
        tokio::spawn(async move {
            let (mut rx, mut tx) = stream.split();
            let result = async {
                let n = tokio::io::copy(&mut rx, &mut tx).await?;
                // The client half-closed: finish our direction too.
                tx.shutdown().await?;
                io::Result::Ok(n)
            }
            .await;
            match result {
                Ok(n) => tracing::debug!(%peer, bytes = n, "echoed"),
                Err(e) => tracing::debug!(%peer, error = %e, "echo failed"),
            }
        });
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    args.net.init_tracing();
    common::report("echo_server", run(args).await)
}
