//! [`TcpListener`]: passive opens.
//!
//! The core completes handshakes on its own and parks finished connections in the listener's
//! accept queue (RFC 9293 leaves how completed passive opens wait for the application to the
//! implementation; the core follows Linux's accept queue). `accept` only ever *takes* a connection from that queue inside the same
//! `poll` that returns it, so dropping an `accept` future (e.g. the losing branch of a
//! `select!`) can never lose one: it simply stays queued for the next call.
//!
//! With several shards (see [`crate::shard`]) the listener is registered on every shard's
//! endpoint, on one port: each completes the handshakes of the flows it owns, and `accept`
//! takes from whichever shard has a connection ready. The accept queue's bound is the
//! socket's, over every shard (`synack_core::SharedBacklog`: each shard's listener counts
//! its queue in one shared count), so that the listener as a whole holds as many unaccepted
//! connections as a Linux listener with that backlog; the SYN queue's bound is shared out
//! among the shards (each takes its share, rounded up), so that a SYN flood still meets SYN
//! cookies at about the same total.

use crate::addr::{first_ok, ToSocketAddrs};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use synack_core::{Error, ListenerHandle, SocketOptions};
use tracing::debug;

use crate::stack::PortHold;
use crate::stack::Stack;
use crate::state::{register_many, ListenerState};
use crate::stream::{ConnRef, TcpStream};

/// The backlog tokio's `TcpListener::bind` gives `listen(2)`: 1024, which holds 1025
/// connections on Linux (one more than it is told), at most one more than the core's
/// `max_backlog` (somaxconn).
const BACKLOG: usize = 1024;

/// A listening socket on a synack [`Stack`]. Dropping it stops listening; connections still
/// in its accept queue are released by the core.
pub struct TcpListener {
    stack: Stack,
    /// The listener on each shard, by shard number.
    handles: Vec<ListenerHandle>,
    /// SO_LINGER for every stream it hands out.
    linger: Option<std::time::Duration>,
    /// The address it is bound to (its port chosen if 0 was asked for): fixed at bind, so
    /// it answers after the stack shut down too, as a kernel socket's `getsockname`.
    local: SocketAddr,
}

impl TcpListener {
    /// Listens on `addr`, which must be one of the stack's addresses (or unspecified) with a
    /// free port.
    ///
    /// `[::]` is dual stack, as Linux's default (`net.ipv6.bindv6only` 0): it takes IPv4
    /// clients too, whose addresses `accept`, `peer_addr` and `local_addr` show
    /// IPv4-mapped (`::ffff:a.b.c.d`). Unlike Linux, a listener on `0.0.0.0` may be bound
    /// beside it on the same port (Linux refuses that unless the first is `IPV6_V6ONLY`);
    /// it then takes the IPv4 clients, so a server written for that pattern works as on
    /// Linux with `IPV6_V6ONLY`. `0.0.0.0` takes IPv4 only.
    ///
    /// `addr` is anything tokio::net's `bind` takes, a host name looked up through the
    /// stack's resolver (see [`ToSocketAddrs`]); with several addresses, the first that
    /// binds is taken, else the last error is returned.
    pub async fn bind(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        first_ok(stack, &addr, |a| async move {
            let options = SocketOptions::default();
            // An IPv4-mapped address is its IPv4 one, shown mapped (as tokio's on Linux).
            match crate::addr::unmapped(a) {
                Some(v4) => Self::listen_with(stack, v4, None, BACKLOG + 1, &options, None)
                    .map(TcpListener::map_to_v6),
                None => Self::listen_with(stack, a, None, BACKLOG + 1, &options, None),
            }
        })
        .await
    }

    /// Listens with a chosen backlog and the options every accepted connection takes (what
    /// [`TcpSocket::listen`](crate::TcpSocket::listen) calls), on the port a bound socket
    /// holds (`bound`, whose address `addr` is), or on `addr`.
    pub(crate) fn listen_with(
        stack: &Stack,
        addr: SocketAddr,
        mut bound: Option<PortHold>,
        backlog: usize,
        options: &SocketOptions,
        linger: Option<std::time::Duration>,
    ) -> io::Result<TcpListener> {
        // No other bind or listen decides until this one has listened on every shard, or
        // has failed and closed what it opened (`listener` drops first).
        let deciding = stack.lock_binding();
        let mut listener = TcpListener {
            stack: stack.clone(),
            handles: Vec::with_capacity(stack.workers()),
            linger,
            local: addr,
        };
        // An ephemeral port is one that no shard's connections use (shard 0's own `listen`
        // would look only at its own), held on every shard until it listens there; every
        // shard listens on it. A failure on any shard drops `listener`, which closes those
        // that succeeded, and the hold, which gives the port back where it is still held.
        let n = stack.workers();
        let mut addr = addr;
        if addr.port() == 0 && n > 1 {
            let hold = PortHold::bind_deciding(stack, addr, true.into())?;
            addr = hold.local();
            bound = Some(hold);
        }
        // The accept queue is bounded for the socket, over every shard, as Linux bounds one
        // listener's (`SharedBacklog`); each shard's share bounds its own SYN queue.
        let shared = (n > 1).then(|| {
            let most = stack.lock_shard(0).map_or(backlog, |inner| {
                inner.endpoint.config().get_max_backlog().saturating_add(1)
            });
            synack_core::SharedBacklog::new(backlog.clamp(1, most))
        });
        let backlog = backlog.div_ceil(n);
        for shard in 0..n {
            let mut inner = stack.lock_shard(shard)?;
            inner.check_open()?;
            // The socket's own binding gives way to its listener, in the same critical
            // section, so that no other socket binds the port in between.
            if let Some(hold) = &mut bound {
                hold.release_on(shard, &mut inner.endpoint);
            }
            let handle = inner.endpoint.listen_with(addr, backlog, options)?;
            if let Some(shared) = &shared {
                // A listener that has queued nothing yet: this cannot fail.
                inner.endpoint.share_backlog(handle, shared.clone())?;
            }
            addr = inner.endpoint.listener_addr(handle)?;
            inner.listeners.insert(handle, ListenerState::new());
            debug!(listener = handle.0, shard, %addr, backlog, "listening");
            listener.handles.push(handle);
        }
        drop(deciding);
        listener.local = addr;
        Ok(listener)
    }

    /// Shows the listener's address, and its clients', IPv4-mapped: an IPv6 socket bound to
    /// an IPv4-mapped address listens on the IPv4 one.
    pub(crate) fn map_to_v6(mut self) -> TcpListener {
        self.local = synack_core::endpoint::ipv4_mapped(self.local);
        self
    }

    /// Waits for the next established connection and returns it with the peer's address.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection is lost.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        crate::state::wait_listed(|cx| self.poll_accept(cx), |w| self.forget_waiter(w)).await
    }

    /// A finished or cancelled `accept`'s clean-up ([`crate::state::wait_listed`]): the task
    /// leaves every shard's list of waiting acceptors; whether it was in one.
    fn forget_waiter(&self, waker: &std::task::Waker) -> bool {
        let mut found = false;
        for (shard, handle) in self.handles.iter().enumerate() {
            if let Some(mut inner) = self.stack.lock_for_drop(shard) {
                if let Some(state) = inner.listeners.get_mut(handle) {
                    found |= crate::state::unlist(&mut state.accept_wakers, waker);
                }
            }
        }
        found
    }

    /// Polls for the next established connection, as [`accept`](Self::accept) does.
    ///
    /// The shard whose next connection was queued first is asked first, so that
    /// connections are accepted in the order they were established, over all the shards,
    /// as from Linux's one first-in, first-out accept queue (the shards number what they
    /// queue from one counter: [`Endpoint::accept_order`](synack_core::Endpoint::accept_order)).
    /// The others are asked after, in turn; the task is registered with every shard that has
    /// nothing, under that shard's lock, so that no connection's arrival is missed.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let n = self.handles.len();
        let first = self.oldest_shard().unwrap_or(0);
        // A shard whose driver stopped (its queue failed) fails only when every shard has:
        // the others' connections are still there to accept.
        let mut stopped = None;
        for k in 0..n {
            let shard = first.wrapping_add(k) % n;
            match self.poll_accept_on(cx, shard) {
                Poll::Ready(Err(e)) if self.stack.lock_shard(shard).is_err() => stopped = Some(e),
                Poll::Ready(r) => return Poll::Ready(r),
                Poll::Pending => {}
            }
        }
        match stopped {
            Some(e) if (0..n).all(|shard| self.stack.lock_shard(shard).is_err()) => {
                Poll::Ready(Err(e))
            }
            _ => Poll::Pending,
        }
    }

    /// The shard whose accept queue's head was queued first, if any has one.
    fn oldest_shard(&self) -> Option<usize> {
        if self.handles.len() == 1 {
            return None;
        }
        let head = |shard: usize| {
            let inner = self.stack.lock_shard(shard).ok()?;
            let order = inner.endpoint.accept_order(self.handles[shard]).ok()??;
            Some((order, shard))
        };
        (0..self.handles.len())
            .filter_map(head)
            .min()
            .map(|(_, shard)| shard)
    }

    /// One shard's part of [`poll_accept`](Self::poll_accept).
    fn poll_accept_on(
        &self,
        cx: &mut Context<'_>,
        shard: usize,
    ) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let handle = self.handles[shard];
        let mut inner = self.stack.lock_shard(shard)?;
        match inner.endpoint.accept(handle) {
            Ok(conn) => {
                let peer = match inner.endpoint.peer_addr(conn) {
                    Ok(peer) => peer,
                    Err(e) => {
                        let now = inner.now();
                        let _ = inner.endpoint.close(now, conn);
                        inner.wake_driver();
                        return Poll::Ready(Err(e.into()));
                    }
                };
                let handle = conn;
                let mut conn = ConnRef::register(&self.stack, shard, handle, true, &mut inner);
                let mut peer = peer;
                // An IPv4 client of a listener on `[::]` (dual stack): its addresses show
                // IPv4-mapped, as on Linux.
                if self.local.is_ipv6() && peer.is_ipv4() {
                    conn = conn.map_to_v6();
                    peer = synack_core::endpoint::ipv4_mapped(peer);
                }
                if let Some(c) = inner.conns.get_mut(&handle) {
                    c.linger = self.linger;
                }
                drop(inner);
                Poll::Ready(Ok((TcpStream::from_conn(conn), peer)))
            }
            Err(Error::WouldBlock) => {
                if let Some(state) = inner.listeners.get_mut(&handle) {
                    register_many(&mut state.accept_wakers, cx);
                }
                Poll::Pending
            }
            // The core no longer knows the listener: `Stack::shutdown` closed it.
            Err(Error::InvalidHandle) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "synack: the listener was closed (Stack::shutdown)",
            ))),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// IP_TTL (IPv4) / IPV6_UNICAST_HOPS (IPv6), as tokio's `TcpListener::set_ttl`: the TTL
    /// or hop limit of the SYN-ACKs the listener sends from now on and of the connections
    /// it accepts after (a stream can change its own with
    /// [`TcpStream::set_ttl`](crate::TcpStream::set_ttl)). 1 to 255, or `u32::MAX` (-1) for
    /// the default, 64; anything else is `InvalidInput`. On an IPv6 listener it sets the hop
    /// limit, where tokio's sets IP_TTL whatever the family.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = crate::sockopt::hop_limit(ttl)?;
        for (shard, &handle) in self.handles.iter().enumerate() {
            let mut inner = self.stack.lock_shard(shard)?;
            let mut options = inner.endpoint.listener_options(handle)?;
            options.hop_limit = Some(ttl);
            inner.endpoint.set_listener_options(handle, &options)?;
        }
        Ok(())
    }

    /// The listener's TTL: what [`set_ttl`](Self::set_ttl) or the
    /// [`TcpSocket`](crate::TcpSocket) it came from set, else 64.
    pub fn ttl(&self) -> io::Result<u32> {
        let inner = self.stack.lock_shard(0)?;
        let options = inner.endpoint.listener_options(self.handles[0])?;
        Ok(u32::from(
            options.hop_limit.unwrap_or(synack_core::DEFAULT_HOP_LIMIT),
        ))
    }

    /// Whether the listener can never accept again: `Stack::shutdown` closed it, or the
    /// stack is gone.
    #[cfg(feature = "axum")]
    pub(crate) fn is_closed(&self) -> bool {
        self.stack.lock_shard(0).map_or(true, |inner| {
            inner.endpoint.listener_addr(self.handles[0]).is_err()
        })
    }

    /// The address the listener is bound to. Always `Ok` (as tokio's, whose `getsockname`
    /// answers for a listening socket whatever happens): it was fixed at bind.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        for (shard, &handle) in self.handles.iter().enumerate() {
            let Some(mut inner) = self.stack.lock_for_drop(shard) else {
                continue;
            };
            inner.listeners.remove(&handle);
            if !inner.driver_gone {
                let now = inner.now();
                let _ = inner.endpoint.close_listener(now, handle);
                inner.wake_driver();
            }
            debug!(listener = handle.0, shard, "closed");
        }
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.local)
            .field("handle", &self.handles.first().map(|h| h.0))
            .finish()
    }
}
