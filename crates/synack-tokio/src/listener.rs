//! [`TcpListener`]: passive opens.
//!
//! The core completes handshakes on its own and parks finished connections in the listener's
//! accept queue (RFC 9293 leaves how completed passive opens wait for the application to the
//! implementation; the core follows Linux's accept queue). `accept` only ever *takes* a connection from that queue inside the same
//! `poll` that returns it, so dropping an `accept` future (e.g. the losing branch of a
//! `select!`) can never lose one: it simply stays queued for the next call.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::task::{Context, Poll};

use synack_core::{Error, ListenerHandle, SocketOptions};
use tracing::debug;

use crate::stack::{register_many, ListenerState, Stack};
use crate::stream::{ConnRef, TcpStream};

/// The accept-queue length we ask for; the core caps it at its `max_backlog` (tokio uses the
/// same 1024).
const BACKLOG: usize = 1024;

/// A listening socket on a synack [`Stack`]. Dropping it stops listening; connections still
/// in its accept queue are released by the core.
pub struct TcpListener {
    stack: Stack,
    handle: ListenerHandle,
    /// SO_LINGER for every stream it hands out.
    linger: Option<std::time::Duration>,
}

impl TcpListener {
    /// Listens on `addr`, which must be one of the stack's addresses (or unspecified) with a
    /// free port.
    pub async fn bind(stack: &Stack, addr: SocketAddr) -> io::Result<TcpListener> {
        Self::listen_with(stack, addr, BACKLOG, &SocketOptions::default(), None)
    }

    /// Listens with a chosen backlog and the options every accepted connection takes (what
    /// [`TcpSocket::listen`](crate::TcpSocket::listen) calls).
    pub(crate) fn listen_with(
        stack: &Stack,
        addr: SocketAddr,
        backlog: usize,
        options: &SocketOptions,
        linger: Option<std::time::Duration>,
    ) -> io::Result<TcpListener> {
        let mut inner = stack.lock()?;
        inner.check_open()?;
        let handle = inner.endpoint.listen_with(addr, backlog, options)?;
        inner.listeners.insert(handle, ListenerState::default());
        debug!(listener = handle.0, %addr, backlog, "listening");
        Ok(TcpListener {
            stack: stack.clone(),
            handle,
            linger,
        })
    }

    /// Waits for the next established connection and returns it with the peer's address.
    ///
    /// Cancel-safe: if the future is dropped before it completes, no connection is lost.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next established connection, as [`accept`](Self::accept) does.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let mut inner = self.stack.lock()?;
        match inner.endpoint.accept(self.handle) {
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
                let conn = ConnRef::register(&self.stack, handle, true, &mut inner);
                if let Some(c) = inner.conns.get_mut(&handle) {
                    c.linger = self.linger;
                }
                drop(inner);
                Poll::Ready(Ok((TcpStream::from_conn(conn), peer)))
            }
            Err(Error::WouldBlock) => {
                if let Some(state) = inner.listeners.get_mut(&self.handle) {
                    register_many(&mut state.accept_wakers, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        let inner = self.stack.lock()?;
        Ok(inner.endpoint.listener_addr(self.handle)?)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let Some(mut inner) = self.stack.lock_for_drop() else {
            return;
        };
        inner.listeners.remove(&self.handle);
        if !inner.driver_gone {
            let now = inner.now();
            let _ = inner.endpoint.close_listener(now, self.handle);
            inner.wake_driver();
        }
        debug!(listener = self.handle.0, "closed");
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TcpListener").field(&self.handle.0).finish()
    }
}
