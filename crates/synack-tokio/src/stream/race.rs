//! Connecting to a host name's addresses: Happy Eyeballs (RFC 8305), so that a family whose
//! path is broken (an IPv6 route into a black hole, the usual case on VPNs) costs a name a
//! quarter of a second, not the 246 s of SYN retries before one attempt gives up.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use synack_core::SocketOptions;
use tokio::task::JoinSet;

use super::TcpStream;
use crate::Stack;

/// RFC 8305 §5: "the recommended value for the Connection Attempt Delay is 250
/// milliseconds": how long an attempt has before the next one starts beside it.
pub(crate) const CONNECTION_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// `addrs` in the order RFC 8305 §4 tries them: the families alternate, starting with the
/// first address's (the resolver's preference), each family's addresses in their order.
pub(crate) fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut first_family, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(first_family.len() + other.len());
    let (mut a, mut b) = (first_family.drain(..), other.drain(..));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return out,
            (x, y) => out.extend(x.into_iter().chain(y)),
        }
    }
}

/// Connects to the first of `addrs` that answers, RFC 8305 §5's way: one attempt at a
/// time, the next started when the last fails or has had [`CONNECTION_ATTEMPT_DELAY`]
/// without an answer, the earlier ones still running beside it. The first connection made
/// wins, and the attempts still running are abandoned (their tasks aborted, as a cancelled
/// `connect` is); if every attempt fails, the last error is returned.
pub(crate) async fn first_to_connect(
    stack: &Stack,
    addrs: Vec<SocketAddr>,
) -> io::Result<TcpStream> {
    let mut pending = interleave(addrs).into_iter().peekable();
    let mut attempts = JoinSet::new();
    let mut last = None;
    let start = |attempts: &mut JoinSet<io::Result<TcpStream>>, addr: SocketAddr| {
        let stack = stack.clone();
        attempts.spawn(async move {
            TcpStream::connect_with(&stack, addr, None, &SocketOptions::default(), None).await
        });
    };
    match pending.next() {
        Some(addr) => start(&mut attempts, addr),
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "could not resolve to any address",
            ))
        }
    }
    loop {
        let more = pending.peek().is_some();
        tokio::select! {
            joined = attempts.join_next() => match joined {
                Some(Ok(Ok(stream))) => return Ok(stream),
                Some(Ok(Err(e))) => {
                    last = Some(e);
                    // A failed attempt starts the next at once (RFC 8305 §5).
                    if let Some(addr) = pending.next() {
                        start(&mut attempts, addr);
                    }
                }
                Some(Err(joined)) if joined.is_panic() => {
                    std::panic::resume_unwind(joined.into_panic())
                }
                // Cancelled: only the runtime shutting down does that.
                Some(Err(joined)) => last = Some(io::Error::other(joined)),
                None => {
                    return Err(last.unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
                    }))
                }
            },
            () = tokio::time::sleep(CONNECTION_ATTEMPT_DELAY), if more => {
                if let Some(addr) = pending.next() {
                    start(&mut attempts, addr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn families_alternate_from_the_first() {
        let got = interleave(addrs(&[
            "[2001:2::1]:80",
            "[2001:2::2]:80",
            "[2001:2::3]:80",
            "198.18.0.1:80",
            "198.18.0.2:80",
        ]));
        assert_eq!(
            got,
            addrs(&[
                "[2001:2::1]:80",
                "198.18.0.1:80",
                "[2001:2::2]:80",
                "198.18.0.2:80",
                "[2001:2::3]:80",
            ])
        );
        let v4_first = interleave(addrs(&["198.18.0.1:80", "[2001:2::1]:80", "198.18.0.2:80"]));
        assert_eq!(
            v4_first,
            addrs(&["198.18.0.1:80", "[2001:2::1]:80", "198.18.0.2:80"])
        );
        assert!(interleave(Vec::new()).is_empty());
    }
}
