//! synack's side of the measurements: the protocol client on a synack [`TcpStream`], and the
//! listener of the handshake benchmark.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synack_core::tcp::info::TcpInfo;
use synack_tokio::device::{OffloadCounters, OffloadTun, PlainTun, TunConfig};
use synack_tokio::netns::NetNs;
use synack_tokio::{Stack, TcpListener, TcpStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::pattern::{self, Checker};
use crate::proto::{Header, Op, Outcome, REPLY_LEN};

/// Which TUN device synack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tun {
    /// `TunDevice`: one syscall per packet.
    Plain,
    /// `OffloadTun`: virtio-net header, TSO super-packets both ways.
    Offload,
}

/// A synack stack on a TUN of the chosen kind in `ns`, with the offload counters if any.
pub fn stack_on(
    ns: &NetNs,
    tun_config: &TunConfig,
    tun: Tun,
    addrs: &[std::net::IpAddr],
) -> io::Result<(Stack, Option<OffloadCounters>)> {
    // The core takes the device's MTU (`Stack::new`).
    let config = synack_core::Config::default();
    Ok(match tun {
        Tun::Plain => {
            let dev = PlainTun::create_in(ns, tun_config)?;
            (Stack::new(config, dev, addrs)?, None)
        }
        Tun::Offload => {
            let dev = OffloadTun::create_in(ns, tun_config)?;
            let counters = dev.counters();
            (Stack::new(config, dev, addrs)?, Some(counters))
        }
    })
}

/// One run of the protocol through `stack`, given up after `timeout`; a timeout is an
/// outcome (with the bytes delivered so far), not an error.
pub async fn client(
    stack: &Stack,
    addr: SocketAddr,
    header: Header,
    timeout: Duration,
) -> io::Result<Outcome> {
    client_info(stack, addr, header, timeout).await.0
}

/// [`client`], with the connection's `TcpInfo` when the run ends (finished or timed out).
pub async fn client_info(
    stack: &Stack,
    addr: SocketAddr,
    header: Header,
    timeout: Duration,
) -> (io::Result<Outcome>, Option<TcpInfo>) {
    let start = Instant::now();
    let mut out = Outcome {
        count: 0,
        secs: 0.0,
        intact: false,
        timed_out: false,
    };
    let mut info = None;
    let run = async {
        let mut stream = TcpStream::connect(stack, addr).await?;
        if header.op == Op::PingPong {
            stream.set_nodelay(true)?;
        }
        let deadline = tokio::time::Instant::from_std(start + timeout);
        let r = tokio::select! {
            r = speak(&mut stream, header, start, &mut out) => Some(r),
            () = tokio::time::sleep_until(deadline) => None,
        };
        info = stream.info().ok();
        r.ok_or(())
            .map_err(|()| io::Error::from(io::ErrorKind::TimedOut))
            .and_then(|r| r)
    };
    let result = match tokio::time::timeout(timeout + Duration::from_secs(1), run).await {
        Ok(Err(e)) if e.kind() == io::ErrorKind::TimedOut => Err(()),
        Ok(r) => Ok(r),
        Err(_) => Err(()),
    };
    out.secs = start.elapsed().as_secs_f64();
    (finish(result, out), info)
}

/// The connection's loss-recovery counters, one line.
pub fn loss_counters(i: &TcpInfo) -> String {
    format!(
        "retrans={} rto={} tlp={} recoveries={} lost_retrans={} undos={} dsack_recv={} \
         ooo_recv={} ooo_drop={} dsack_sent={} rtt={:?} min_rtt={:?} rto_now={:?} cwnd={} ssthresh={} reordering={}",
        i.total_retrans,
        i.rto_count,
        i.tlp_count,
        i.recoveries,
        i.lost_retransmits,
        i.undos,
        i.dsacks_received,
        i.ooo_received,
        i.ooo_dropped,
        i.dsacks_sent,
        i.rtt,
        i.min_rtt,
        i.rto,
        i.snd_cwnd,
        i.snd_ssthresh,
        i.reordering,
    )
}

fn finish(result: Result<io::Result<()>, ()>, mut out: Outcome) -> io::Result<Outcome> {
    match result {
        Ok(Ok(())) => Ok(out),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            out.timed_out = true;
            out.intact = false;
            Ok(out)
        }
    }
}

/// The client's half of the protocol over any async stream; progress lands in `out` as it
/// happens, so that a timeout still reports how far it got.
async fn speak<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    header: Header,
    start: Instant,
    out: &mut Outcome,
) -> io::Result<()> {
    s.write_all(&header.encode()).await?;
    let mut buf = vec![0; pattern::MAX_SLICE];
    match header.op {
        Op::Upload => {
            let mut sent = 0u64;
            while sent < header.limit && start.elapsed() < header.duration {
                let want = usize::try_from(header.limit - sent).unwrap_or(usize::MAX);
                let n = s.write(pattern::slice(sent, want)).await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                sent += n as u64;
            }
            s.shutdown().await?;
            let mut reply = [0; REPLY_LEN];
            s.read_exact(&mut reply).await?;
            out.take_reply(&reply, sent);
        }
        Op::Download => {
            let mut check = Checker::new();
            loop {
                match s.read(&mut buf).await? {
                    0 => break,
                    n => {
                        check.feed(&buf[..n]);
                        out.count = check.bytes;
                    }
                }
            }
            out.intact = check.intact;
        }
        Op::PingPong => {
            out.intact = true;
            while start.elapsed() < header.duration {
                let byte = [out.count as u8];
                s.write_all(&byte).await?;
                let mut back = [0];
                s.read_exact(&mut back).await?;
                out.intact &= back == byte;
                out.count += 1;
            }
            s.shutdown().await?;
            while s.read(&mut buf).await? > 0 {}
        }
    }
    Ok(())
}

/// A listener that accepts and closes at once, counting; runs until the task is aborted.
pub async fn accept_and_close(listener: TcpListener, accepted: Arc<AtomicU64>) -> io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        // Dropping closes: the FIN goes out, and TIME-WAIT stays with synack.
        drop(stream);
        accepted.fetch_add(1, Ordering::Relaxed);
    }
}
