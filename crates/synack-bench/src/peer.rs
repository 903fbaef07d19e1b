//! The kernel's side of every measurement: a server and clients on `std::net` sockets.
//!
//! The harness runs these by re-executing its own binary under `ip netns exec NS` with the
//! hidden first argument `__peer`, so that the kernel endpoint lives in the namespace under
//! test while the harness (and the user-space stack it measures) stays outside. Each helper
//! prints one line on stdout: `ready` once a server listens, or an [`Outcome`] line once a
//! client is done.
//!
//! ```text
//! synack-bench __peer serve PORT
//! synack-bench __peer serve-close PORT
//! synack-bench __peer client IP:PORT upload|download|pingpong LIMIT DURATION_MS TIMEOUT_MS
//! synack-bench __peer connect-loop IP:PORT THREADS DURATION_MS
//! ```

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pattern::{self, Checker};
use crate::proto::{encode_reply, Header, Op, Outcome, HEADER_LEN, REPLY_LEN};

/// Runs the helper named by `args` (after `__peer`); returns the process's exit code.
pub fn main(args: &[String]) -> i32 {
    let result = match args {
        [cmd, port] if cmd == "serve" => parse(port).and_then(|p| serve(p, false)),
        [cmd, port] if cmd == "serve-close" => parse(port).and_then(|p| serve(p, true)),
        [cmd, addr, op, limit, dur, timeout] if cmd == "client" => (|| {
            let op = Op::from_name(op).ok_or_else(|| invalid(op))?;
            let header = Header {
                op,
                limit: parse(limit)?,
                duration: Duration::from_millis(parse(dur)?),
            };
            let out = client(parse(addr)?, header, Duration::from_millis(parse(timeout)?))?;
            println!("{}", out.to_line());
            Ok(())
        })(),
        [cmd, addr, threads, dur] if cmd == "connect-loop" => (|| {
            let out = connect_loop(
                parse(addr)?,
                parse(threads)?,
                Duration::from_millis(parse(dur)?),
            );
            println!("{}", out.to_line());
            Ok(())
        })(),
        _ => Err(invalid(&args.join(" "))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("synack-bench __peer: {e}");
            1
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidInput, format!("bad argument {what:?}"))
}

fn parse<T: std::str::FromStr>(s: &str) -> io::Result<T> {
    s.parse().map_err(|_| invalid(s))
}

/// Listens on every address of the namespace, says `ready`, and serves connections until it
/// is killed (the harness kills it, and deleting the namespace kills whatever is left).
fn serve(port: u16, close_at_once: bool) -> io::Result<()> {
    let listener = TcpListener::bind(("0.0.0.0", port))?;
    println!("ready");
    io::stdout().flush()?;
    loop {
        let (conn, _) = match listener.accept() {
            Ok(c) => c,
            // ECONNABORTED and friends: that client is gone, the listener is fine.
            Err(_) => continue,
        };
        if close_at_once {
            // The handshake benchmark: the server closes first, so TIME-WAIT stays on the
            // stack under test and the kernel clients never run out of ports.
            drop(conn);
            continue;
        }
        std::thread::spawn(move || {
            if let Err(e) = handle(conn) {
                eprintln!("synack-bench __peer serve: {e}");
            }
        });
    }
}

/// Serves one connection of the protocol in `proto`.
fn handle(mut conn: TcpStream) -> io::Result<()> {
    let mut head = [0; HEADER_LEN];
    conn.read_exact(&mut head)?;
    let header = Header::decode(&head).ok_or_else(|| invalid("header"))?;
    let mut buf = vec![0; pattern::MAX_SLICE];
    match header.op {
        Op::Upload => {
            let mut check = Checker::new();
            loop {
                match conn.read(&mut buf)? {
                    0 => break,
                    n => check.feed(&buf[..n]),
                }
            }
            conn.write_all(&encode_reply(check.bytes, check.intact))?;
        }
        Op::Download => {
            let start = Instant::now();
            let mut sent = 0u64;
            while sent < header.limit && start.elapsed() < header.duration {
                let want = usize::try_from(header.limit - sent).unwrap_or(usize::MAX);
                let n = conn.write(pattern::slice(sent, want))?;
                sent += n as u64;
            }
            conn.shutdown(Shutdown::Write)?;
            // Wait for the client's FIN, so that our close cannot reset unread data.
            while conn.read(&mut buf)? > 0 {}
        }
        Op::PingPong => {
            conn.set_nodelay(true)?;
            loop {
                match conn.read(&mut buf)? {
                    0 => break,
                    n => conn.write_all(&buf[..n])?,
                }
            }
        }
    }
    Ok(())
}

/// Whether an I/O error is a socket timeout (`SO_RCVTIMEO`/`SO_SNDTIMEO` expiring).
fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// One run of the protocol as a kernel client (the kernel-over-veth baseline).
pub fn client(addr: SocketAddr, header: Header, timeout: Duration) -> io::Result<Outcome> {
    let start = Instant::now();
    let mut out = Outcome {
        count: 0,
        secs: 0.0,
        intact: false,
        timed_out: false,
    };
    let result = client_inner(addr, header, timeout, start, &mut out);
    out.secs = start.elapsed().as_secs_f64();
    match result {
        Ok(()) => Ok(out),
        Err(e) if is_timeout(&e) => {
            out.timed_out = true;
            out.intact = false;
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

fn client_inner(
    addr: SocketAddr,
    header: Header,
    timeout: Duration,
    start: Instant,
    out: &mut Outcome,
) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    // Every blocking call gives up at the run's timeout at the latest; the loops below also
    // stop at it, so a run is bounded by about twice the timeout in the worst case.
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let past = |start: Instant| start.elapsed() >= timeout;
    s.write_all(&header.encode())?;
    let mut buf = vec![0; pattern::MAX_SLICE];
    match header.op {
        Op::Upload => {
            let mut sent = 0u64;
            while sent < header.limit && start.elapsed() < header.duration {
                if past(start) {
                    return Err(ErrorKind::TimedOut.into());
                }
                let want = usize::try_from(header.limit - sent).unwrap_or(usize::MAX);
                sent += s.write(pattern::slice(sent, want))? as u64;
            }
            s.shutdown(Shutdown::Write)?;
            let mut reply = [0; REPLY_LEN];
            s.read_exact(&mut reply)?;
            out.take_reply(&reply, sent);
        }
        Op::Download => {
            let mut check = Checker::new();
            loop {
                if past(start) {
                    out.count = check.bytes;
                    return Err(ErrorKind::TimedOut.into());
                }
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => check.feed(&buf[..n]),
                    Err(e) => {
                        out.count = check.bytes;
                        return Err(e);
                    }
                }
            }
            out.count = check.bytes;
            out.intact = check.intact;
        }
        Op::PingPong => {
            s.set_nodelay(true)?;
            out.intact = true;
            while start.elapsed() < header.duration {
                let byte = [out.count as u8];
                s.write_all(&byte)?;
                let mut back = [0];
                s.read_exact(&mut back)?;
                out.intact &= back == byte;
                out.count += 1;
            }
            s.shutdown(Shutdown::Write)?;
            while s.read(&mut buf)? > 0 {}
        }
    }
    Ok(())
}

/// `threads` kernel clients that connect, wait for the server's FIN, and close, again and
/// again for `duration`. The count is completed connections; `intact` is false if any
/// attempt failed.
pub fn connect_loop(addr: SocketAddr, threads: usize, duration: Duration) -> Outcome {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..threads.clamp(1, 64))
        .map(|_| {
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            std::thread::spawn(move || {
                while start.elapsed() < duration {
                    match one_connection(addr) {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("synack-bench __peer connect-loop: {failed} attempts failed");
    }
    Outcome {
        count: done.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
        intact: failed == 0,
        timed_out: false,
    }
}

fn one_connection(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut b = [0; 16];
    // The server closes at once: a clean EOF proves the handshake and the FIN both worked.
    match s.read(&mut b)? {
        0 => Ok(()),
        _ => Err(invalid("data from a server that should close at once")),
    }
}
