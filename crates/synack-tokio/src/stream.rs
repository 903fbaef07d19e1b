//! [`TcpStream`] and its halves.
//!
//! Every read and write is one command on the core under the shared lock: `recv`/`send`
//! either make progress or return `WouldBlock`, in which case the task's waker is stored
//! *under the same lock*, so the driver's `Readable`/`Writable` event cannot slip in between
//! and be lost. The core's bounded buffers are the only buffers: there is no channel between a
//! stream and the driver, so backpressure is exact.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use synack_core::{Bytes, ConnectionHandle, Endpoint, Error, SocketOptions, State};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};
use tracing::debug;

use crate::stack::{park, register, ConnState, Stack, Waiter};

/// A connection the runtime refers to; dropping it closes the connection gracefully.
pub(crate) struct ConnRef {
    stack: Stack,
    /// The shard whose endpoint holds the connection.
    shard: usize,
    handle: ConnectionHandle,
}

impl ConnRef {
    /// Registers `handle` with the runtime and wraps it, so that from here on every exit path
    /// releases it.
    pub(crate) fn register(
        stack: &Stack,
        shard: usize,
        handle: ConnectionHandle,
        connected: bool,
        inner: &mut crate::stack::Inner,
    ) -> ConnRef {
        let span = tracing::debug_span!(
            "conn",
            id = handle.0,
            local = ?inner.endpoint.local_addr(handle).ok(),
            peer = ?inner.endpoint.peer_addr(handle).ok(),
        );
        inner.conns.insert(handle, ConnState::new(connected, span));
        ConnRef {
            stack: stack.clone(),
            shard,
            handle,
        }
    }

    /// Waits for the handshake to finish (an active open, or an intercepted SYN accepted).
    pub(crate) fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let state = inner.endpoint.state(self.handle);
        let inner = &mut *inner;
        let Some(c) = inner.conns.get_mut(&self.handle) else {
            return Poll::Ready(Err(Error::InvalidHandle.into()));
        };
        if let Some(e) = c.error {
            return Poll::Ready(Err(e.into()));
        }
        // The event is the normal path; the state check only guards against an event that the
        // core merged away (e.g. data and FIN arriving with the handshake's last ACK).
        let synchronized = matches!(
            state,
            Ok(s) if !matches!(s, State::SynSent | State::SynReceived | State::Closed)
        );
        if c.connected || synchronized {
            c.connected = true;
            return Poll::Ready(Ok(()));
        }
        // The state, not only the event: an event the core had to drop (see
        // `Endpoint::take_event_overflow`) must not leave a closed connect waiting.
        if c.closed || matches!(state, Ok(State::Closed) | Err(_)) {
            let e = inner
                .endpoint
                .take_error(self.handle)
                .ok()
                .flatten()
                .unwrap_or(Error::ConnectionAborted);
            return Poll::Ready(Err(e.into()));
        }
        register(&mut c.write_waker, cx);
        Poll::Pending
    }

    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        // Written in place as a `BufMut`: a caller's uninitialised buffer (hyper's read
        // buffer, 8 KiB and growing, through `TokioIo`) is never zeroed first, a memset that
        // cost more than the TCP receive path of a small request.
        match inner.endpoint.recv_buf(now, self.handle, buf) {
            Ok(_) => {
                // Reading opened the receive window: the driver may owe the peer an update.
                inner.wake_driver();
                Poll::Ready(Ok(()))
            }
            Err(Error::WouldBlock) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    register(&mut c.read_waker, cx);
                }
                Poll::Pending
            }
            // The failure reported already: the stream has ended.
            Err(e) => Poll::Ready(inner.report_failure(self.handle, e).map_or(Ok(()), Err)),
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Copies received bytes without consuming them; waits while there are none.
    fn poll_peek(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        waiter: Waiter,
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner.endpoint.peek(self.handle, buf) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(Error::WouldBlock) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    park(c, false, waiter, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(inner.report_failure(self.handle, e).map_or(Ok(0), Err)),
        }
    }

    /// Ready once a read would not block: data, the end of the stream, or an error.
    fn poll_read_ready(&self, cx: &mut Context<'_>, waiter: Waiter) -> Poll<io::Result<()>> {
        self.poll_read_readiness(cx, waiter).map_ok(drop)
    }

    /// [`poll_read_ready`](Self::poll_read_ready) with what `ready` reports: `READABLE`,
    /// and `READ_CLOSED` too once the peer's FIN came or the connection closed.
    fn poll_read_readiness(&self, cx: &mut Context<'_>, waiter: Waiter) -> Poll<io::Result<Ready>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let inner = &mut *inner;
        match inner.endpoint.recv_ready(self.handle) {
            Ok(true) => {
                let closed = closed_bits(
                    inner.endpoint.state(self.handle),
                    inner.conns.get(&self.handle),
                );
                Poll::Ready(Ok(Ready::READABLE | (closed & Ready::READ_CLOSED)))
            }
            Ok(false) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    park(c, false, waiter, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(inner.conn_error(self.handle, e))),
        }
    }

    /// Ready once a write would not block: room in the send buffer, or a write that would
    /// fail at once (after a shutdown, or on a closed connection).
    fn poll_write_ready(&self, cx: &mut Context<'_>, waiter: Waiter) -> Poll<io::Result<()>> {
        self.poll_write_readiness(cx, waiter).map_ok(drop)
    }

    /// [`poll_write_ready`](Self::poll_write_ready) with what `ready` reports: `WRITABLE`,
    /// and `WRITE_CLOSED` too once the connection is shut down both ways or closed.
    fn poll_write_readiness(
        &self,
        cx: &mut Context<'_>,
        waiter: Waiter,
    ) -> Poll<io::Result<Ready>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let inner = &mut *inner;
        // Lists the connection for a `Writable` once memory drains if the cap is what
        // leaves no room (no refused write may have listed it yet).
        let room = inner.endpoint.send_capacity_or_wait(self.handle);
        let state = inner.endpoint.state(self.handle);
        let open = matches!(
            state,
            Ok(State::SynSent | State::SynReceived | State::Established | State::CloseWait)
        );
        let closed = closed_bits(state, inner.conns.get(&self.handle));
        let writable = Ready::WRITABLE | (closed & Ready::WRITE_CLOSED);
        let Some(c) = inner.conns.get_mut(&self.handle) else {
            return Poll::Ready(Ok(writable));
        };
        if !matches!(room, Ok(0)) || !open || c.write_shutdown || c.error.is_some() {
            return Poll::Ready(Ok(writable));
        }
        park(c, true, waiter, cx);
        Poll::Pending
    }

    /// The readiness `interest` asks for, once some of it holds (for `ready`, an `async fn`:
    /// every task waiting is woken).
    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<Ready>> {
        crate::stack::poll_interest_bits(
            cx,
            interest,
            |cx| self.poll_read_readiness(cx, Waiter::Every),
            |cx| self.poll_write_readiness(cx, Waiter::Every),
        )
    }

    /// A read that never waits: `WouldBlock` when nothing is buffered.
    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_read_with(|ep, now, h| ep.recv(now, h, buf))
    }

    /// [`try_read`](Self::try_read) into a `BufMut`'s room, written in place.
    fn try_read_buf<B: BufMut + ?Sized>(&self, buf: &mut B) -> io::Result<usize> {
        self.try_read_with(|ep, now, h| ep.recv_buf(now, h, buf))
    }

    /// A read command that never waits, under the lock: a read that took bytes may have
    /// opened the window, so the driver is woken to tell the peer.
    fn try_read_with(
        &self,
        read: impl FnOnce(&mut Endpoint, synack_core::Instant, ConnectionHandle) -> Result<usize, Error>,
    ) -> io::Result<usize> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        match read(&mut inner.endpoint, now, self.handle) {
            Ok(n) => {
                inner.wake_driver();
                Ok(n)
            }
            Err(e) => inner.report_failure(self.handle, e).map_or(Ok(0), Err),
        }
    }

    /// A read into several buffers in turn that never waits, under one lock: `WouldBlock`
    /// when nothing is buffered.
    fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        let mut total = 0;
        for buf in bufs.iter_mut().filter(|b| !b.is_empty()) {
            match inner.endpoint.recv(now, self.handle, buf) {
                Ok(n) => {
                    total += n;
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if total == 0 => {
                    return inner.report_failure(self.handle, e).map_or(Ok(0), Err)
                }
                // Report what was read; the error (or WouldBlock) comes with the next read.
                Err(_) => break,
            }
        }
        if total > 0 {
            inner.wake_driver();
        }
        Ok(total)
    }

    /// A write that never waits: `WouldBlock` when the send buffer is full.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)], None)
    }

    /// Runs one core command on the connection under its shard's lock; a core error comes
    /// back as the connection's (`conn_error`).
    fn command<T>(
        &self,
        f: impl FnOnce(&mut Endpoint, ConnectionHandle) -> Result<T, Error>,
    ) -> io::Result<T> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let r = f(&mut inner.endpoint, self.handle);
        r.map_err(|e| inner.conn_error(self.handle, e))
    }

    fn nodelay(&self) -> io::Result<bool> {
        self.command(|ep, h| ep.nodelay(h))
    }

    fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner.conns.get_mut(&self.handle) {
            Some(c) => {
                c.linger = linger;
                Ok(())
            }
            None => Err(Error::InvalidHandle.into()),
        }
    }

    fn linger(&self) -> io::Result<Option<Duration>> {
        let inner = self.stack.lock_shard(self.shard)?;
        inner
            .conns
            .get(&self.handle)
            .map(|c| c.linger)
            .ok_or_else(|| Error::InvalidHandle.into())
    }

    /// SO_ERROR: the connection's failure, once (Linux's `sock_error` clears it); `None`
    /// after it was returned, here or by a read or write.
    fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner.endpoint.take_error(self.handle) {
            Ok(None) => Ok(None),
            Ok(Some(e)) => Ok(inner.report_failure(self.handle, e)),
            // A handle the core released: the failure the runtime kept, if there is one.
            Err(e) => match inner.conns.get(&self.handle).and_then(|c| c.error) {
                Some(_) => Ok(inner.report_failure(self.handle, e)),
                None => Err(inner.conn_error(self.handle, e)),
            },
        }
    }

    /// Queues as many of `bufs`' bytes as the send buffer takes, in order.
    fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.write_vectored(bufs, Some(cx)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        }
    }

    /// A vectored write that never waits: `WouldBlock` when the send buffer takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_vectored(bufs, None)
    }

    /// Queues `bufs` in turn, under one lock, as far as the send buffer takes them. When it
    /// takes nothing: `WouldBlock`, with `cx`'s task registered for the `Writable` event
    /// that follows.
    fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        cx: Option<&mut Context<'_>>,
    ) -> io::Result<usize> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let mut inner = self.stack.lock_shard(self.shard)?;
        let mut total = 0;
        for buf in bufs.iter().filter(|b| !b.is_empty()) {
            match inner.endpoint.send(self.handle, buf) {
                Ok(n) => {
                    total += n;
                    if n < buf.len() {
                        break;
                    }
                }
                Err(Error::WouldBlock) => break,
                Err(e) if total == 0 => {
                    return Err(inner
                        .report_failure(self.handle, e)
                        .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into()))
                }
                // Report the bytes already queued; the error comes back on the next write.
                Err(_) => break,
            }
        }
        if total > 0 {
            inner.wake_driver();
            return Ok(total);
        }
        // A full send buffer (`WouldBlock`, or a zero-byte `send`): the `Writable` event wakes
        // the task.
        if let (Some(cx), Some(c)) = (cx, inner.conns.get_mut(&self.handle)) {
            register(&mut c.write_waker, cx);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Queues as much of `data` as the send buffer takes, without copying it; returns how
    /// much that was.
    fn poll_write_bytes(&self, cx: &mut Context<'_>, data: &Bytes) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner.endpoint.send_bytes(self.handle, data.clone()) {
            Ok(n) => {
                inner.wake_driver();
                Poll::Ready(Ok(n))
            }
            Err(Error::WouldBlock) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    register(&mut c.write_waker, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(inner
                .report_failure(self.handle, e)
                .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into()))),
        }
    }

    /// Sends our FIN; reads continue until the peer's (RFC 9293 §3.10.4, half-close).
    fn poll_shutdown(&self) -> Poll<io::Result<()>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        if inner
            .conns
            .get(&self.handle)
            .is_some_and(|c| c.write_shutdown)
        {
            return Poll::Ready(Ok(()));
        }
        match inner.endpoint.shutdown(self.handle) {
            Ok(()) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    c.write_shutdown = true;
                    c.span.in_scope(|| debug!("shutdown (FIN queued)"));
                }
                inner.wake_driver();
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(inner.conn_error(self.handle, e))),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.command(|ep, h| ep.local_addr(h))
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.command(|ep, h| ep.peer_addr(h))
    }

    /// A MSG_OOB read: the urgent byte, never waiting (`None` at the end of the stream).
    fn try_read_urgent(&self) -> io::Result<Option<u8>> {
        self.command(|ep, h| ep.recv_urgent(h))
    }

    /// A MSG_OOB write that never waits, as [`ConnRef::try_write`].
    fn try_write_urgent(&self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner
            .endpoint
            .send_urgent(self.handle, buf, Default::default())
        {
            Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
            Ok(n) => {
                inner.wake_driver();
                Ok(n)
            }
            Err(e) => Err(inner.conn_error(self.handle, e)),
        }
    }

    /// SIOCATMARK: whether the next byte read is at the urgent mark.
    fn at_urgent_mark(&self) -> io::Result<bool> {
        self.command(|ep, h| ep.urgent_mark(h).map(|m| m == Some(0)))
    }

    /// A command whose effect the driver must act on: the driver is woken after it.
    fn command_and_wake<T>(
        &self,
        f: impl FnOnce(&mut Endpoint, ConnectionHandle) -> Result<T, Error>,
    ) -> io::Result<T> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let r = f(&mut inner.endpoint, self.handle);
        inner.wake_driver();
        r.map_err(|e| inner.conn_error(self.handle, e))
    }

    /// An urgent byte held out of band becomes readable in line: the driver hands the
    /// waiting reader its `Readable`.
    fn set_oob_inline(&self, inline: bool) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_oob_inline(h, inline))
    }

    /// Turning Nagle off sends what it held back, now (Linux's `TCP_NODELAY` pushes the
    /// pending frames), not at the next packet or timer.
    fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_nodelay(h, nodelay))
    }

    fn set_tos(&self, tos: u32) -> io::Result<()> {
        let tos = u8::try_from(tos).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.command(|ep, h| ep.set_tos(h, tos))
    }

    fn tos(&self) -> io::Result<u32> {
        self.command(|ep, h| ep.tos(h).map(u32::from))
    }

    fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = crate::socket::hop_limit(ttl)?;
        self.command(|ep, h| ep.set_hop_limit(h, ttl))
    }

    fn ttl(&self) -> io::Result<u32> {
        self.command(|ep, h| ep.hop_limit(h).map(u32::from))
    }

    /// A larger mark may owe a waiting writer its `Writable`: the driver hands it on.
    fn set_notsent_lowat(&self, lowat: Option<usize>) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_notsent_lowat(h, lowat))
    }

    fn info(&self) -> io::Result<synack_core::tcp::info::TcpInfo> {
        let inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        inner
            .endpoint
            .info(now, self.handle)
            .map_err(|e| inner.conn_error(self.handle, e))
    }
}

/// The closed bits of tokio's `Ready` that hold for a connection in `state` (`c`: the
/// runtime's view of it, gone once released), the ones a tokio stream over a kernel socket
/// gets, so that code written against tokio's sees the same: Linux's `tcp_poll` reports
/// `EPOLLRDHUP` once the peer's FIN has come, which mio turns into `READ_CLOSED`, and
/// `EPOLLHUP` once the connection is shut down both ways or closed (a reset, a timeout),
/// which it turns into both closed bits. Our own shutdown alone sets neither: the kernel
/// reports only `EPOLLOUT` then (a write fails with `BrokenPipe`).
fn closed_bits(state: Result<State, Error>, c: Option<&ConnState>) -> Ready {
    let reported = match c {
        Some(c) => c.closed || c.error.is_some(),
        None => true,
    };
    let closed = reported || matches!(state, Ok(State::Closed) | Err(_));
    let peer_fin = matches!(
        state,
        Ok(State::CloseWait | State::Closing | State::LastAck | State::TimeWait)
    );
    let our_fin = matches!(
        state,
        Ok(State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck | State::TimeWait)
    ) || c.is_some_and(|c| c.write_shutdown);
    if closed || (peer_fin && our_fin) {
        Ready::READ_CLOSED | Ready::WRITE_CLOSED
    } else if peer_fin {
        Ready::READ_CLOSED
    } else {
        Ready::EMPTY
    }
}

impl Drop for ConnRef {
    /// Releases the handle with `close`: the core finishes the FIN exchange on its own (or
    /// resets, if unread data is left, as Linux does), and a pending `connect` is abandoned.
    fn drop(&mut self) {
        let Some(mut inner) = self.stack.lock_for_drop(self.shard) else {
            return;
        };
        let reset = match inner.conns.remove(&self.handle) {
            Some(c) => {
                c.span.in_scope(|| debug!(linger = ?c.linger, "released"));
                c.linger == Some(Duration::ZERO)
            }
            None => false,
        };
        if !inner.driver_gone {
            let now = inner.now();
            // SO_LINGER 0: an RST now, and queued data is thrown away (as Linux's close).
            let _ = if reset {
                inner.endpoint.abort(self.handle)
            } else {
                inner.endpoint.close(now, self.handle)
            };
            inner.wake_driver();
        }
    }
}

impl fmt::Debug for ConnRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Conn").field(&self.handle.0).finish()
    }
}

/// A TCP connection over a synack [`Stack`], with tokio's `AsyncRead` and `AsyncWrite`.
///
/// `poll_flush` returns at once: it does not wait for ACKs, as tokio's `TcpStream` does not.
/// `poll_shutdown` sends FIN and leaves the read side open. Dropping the stream closes it
/// gracefully (or resets it, if data arrived that was never read, as Linux does): the stack
/// delivers what was written and finishes the FIN exchange in the background, for as long
/// as the stack's driver runs (see [`Stack`] and [`Stack::shutdown`]).
#[derive(Debug)]
pub struct TcpStream {
    conn: ConnRef,
}

/// The readiness and non-blocking reads a stream and its read halves share, as tokio's
/// `TcpStream` and its halves have them. For an `impl` of a type whose `conn` field derefs
/// to [`ConnRef`].
macro_rules! read_methods {
    () => {
        /// Receives bytes without removing them: the next read returns them again. Waits
        /// while nothing has arrived; `Ok(0)` at the end of the stream.
        pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
            std::future::poll_fn(|cx| self.conn.poll_peek(cx, buf, Waiter::Every)).await
        }

        /// Polls for [`peek`](Self::peek): fills `buf` with bytes that stay to be read, and
        /// returns how many.
        pub fn poll_peek(
            &self,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<usize>> {
            let unfilled = buf.initialize_unfilled();
            let n = std::task::ready!(self.conn.poll_peek(cx, unfilled, Waiter::Latest))?;
            buf.advance(n);
            Poll::Ready(Ok(n))
        }

        /// Waits until a read would not block (data, the end of the stream, or an error),
        /// for use with [`try_read`](Self::try_read). Several tasks may wait at once (on a
        /// shared stream): each is woken.
        pub async fn readable(&self) -> io::Result<()> {
            std::future::poll_fn(|cx| self.conn.poll_read_ready(cx, Waiter::Every)).await
        }

        /// Polls for [`readable`](Self::readable). The waker is kept until the stream is
        /// readable; a later call's replaces it.
        pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.conn.poll_read_ready(cx, Waiter::Latest)
        }

        /// Reads what has arrived without waiting: `WouldBlock` when nothing has, `Ok(0)` at
        /// the end of the stream.
        pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
            self.conn.try_read(buf)
        }

        /// [`try_read`](Self::try_read) into several buffers, filled in turn.
        pub fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            self.conn.try_read_vectored(bufs)
        }

        /// [`try_read`](Self::try_read) into `buf`'s spare room, advancing it, as tokio's
        /// `try_read_buf`: at most what `buf.chunk_mut()` offers (a full `BytesMut` or `Vec`
        /// makes some room), written in place, never zeroed first.
        pub fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
            self.conn.try_read_buf(buf)
        }
    };
}

/// The readiness and non-blocking writes a stream and its write halves share; see
/// [`read_methods`].
macro_rules! write_methods {
    () => {
        /// Waits until a write would not block, for use with [`try_write`](Self::try_write).
        /// Several tasks may wait at once: each is woken.
        pub async fn writable(&self) -> io::Result<()> {
            std::future::poll_fn(|cx| self.conn.poll_write_ready(cx, Waiter::Every)).await
        }

        /// Polls for [`writable`](Self::writable). The waker is kept until the stream is
        /// writable; a later call's replaces it.
        pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.conn.poll_write_ready(cx, Waiter::Latest)
        }

        /// Queues as much of `buf` as the send buffer takes, without waiting: `WouldBlock`
        /// when it takes nothing.
        pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            self.conn.try_write(buf)
        }

        /// [`try_write`](Self::try_write) from several buffers in turn, under one lock.
        pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.conn.try_write_vectored(bufs)
        }
    };
}

/// `ready`, for a stream and each half.
macro_rules! ready_method {
    () => {
        /// Waits until the stream is ready for any of `interest`, and says which. Several
        /// tasks may wait at once, and a half's `ready` leaves the other half's waiting task
        /// in place.
        pub async fn ready(&self, interest: Interest) -> io::Result<Ready> {
            std::future::poll_fn(|cx| self.conn.poll_ready(cx, interest)).await
        }
    };
}

impl TcpStream {
    pub(crate) fn from_conn(conn: ConnRef) -> TcpStream {
        TcpStream { conn }
    }

    /// Opens a connection to `addr` from one of the stack's addresses and an ephemeral port.
    ///
    /// Fails with `ConnectionRefused` if the peer answers with RST, and `TimedOut` once the
    /// configured SYN retries run out. Cancelling the future abandons the attempt.
    pub async fn connect(stack: &Stack, addr: SocketAddr) -> io::Result<TcpStream> {
        Self::connect_with(stack, addr, None, &SocketOptions::default(), None).await
    }

    /// Connects from `local` (if bound) with a socket's options and linger (what
    /// [`TcpSocket::connect`](crate::TcpSocket::connect) calls).
    pub(crate) async fn connect_with(
        stack: &Stack,
        addr: SocketAddr,
        local: Option<SocketAddr>,
        options: &SocketOptions,
        linger: Option<Duration>,
    ) -> io::Result<TcpStream> {
        let conn = {
            // On the shard that will own the flow (see `crate::shard`).
            let (shard, mut inner, handle) = stack.open_connection(addr, local, options)?;
            let conn = ConnRef::register(stack, shard, handle, false, &mut inner);
            if let Some(c) = inner.conns.get_mut(&handle) {
                c.linger = linger;
            }
            inner.wake_driver();
            conn
        };
        std::future::poll_fn(|cx| conn.poll_connected(cx)).await?;
        Ok(TcpStream { conn })
    }

    /// The local address and port of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conn.local_addr()
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.conn.peer_addr()
    }

    /// Disables (true) or enables (false) Nagle's algorithm (RFC 9293 §3.7.4).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.conn.set_nodelay(nodelay)
    }

    /// Whether Nagle's algorithm is disabled.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.conn.nodelay()
    }

    /// IP_TOS (IPv4) / IPV6_TCLASS (IPv6), as tokio's `TcpSocket::set_tos`: the DS byte of
    /// the packets the connection sends from now on. Only the six DSCP bits are used; the
    /// two ECN bits are the stack's (RFC 3168). More than 255 is `InvalidInput`.
    pub fn set_tos(&self, tos: u32) -> io::Result<()> {
        self.conn.set_tos(tos)
    }

    /// The DSCP bits set with [`set_tos`](Self::set_tos) (the ECN bits read as zero).
    pub fn tos(&self) -> io::Result<u32> {
        self.conn.tos()
    }

    /// IP_TTL (IPv4) / IPV6_UNICAST_HOPS (IPv6), as tokio's `TcpStream::set_ttl`: the TTL or
    /// hop limit of the packets the connection sends from now on. 1 to 255; anything else
    /// is `InvalidInput`. What TIME-WAIT answers after the ACK that began it goes with the
    /// default, as Linux's does.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.conn.set_ttl(ttl)
    }

    /// The connection's TTL: what [`set_ttl`](Self::set_ttl), the
    /// [`TcpSocket`](crate::TcpSocket) or the listener set, else 64.
    pub fn ttl(&self) -> io::Result<u32> {
        self.conn.ttl()
    }

    /// TCP_NOTSENT_LOWAT: writes stop while `lowat` bytes or more wait unsent, and the
    /// stream becomes writable again once fewer than half as many do, so that little data
    /// waits queued behind the congestion window (the application decides later what to
    /// send, and a priority change takes effect sooner). `None` returns to the stack's
    /// [`Config::notsent_lowat`](synack_core::Config::notsent_lowat) (no bound by default).
    pub fn set_notsent_lowat(&self, lowat: Option<usize>) -> io::Result<()> {
        self.conn.set_notsent_lowat(lowat)
    }

    /// SO_LINGER. `Some(Duration::ZERO)` makes dropping the stream reset the connection at
    /// once, discarding what is still queued, as `close` does on a kernel socket with
    /// linger 0. Any other value (or `None`, the default) closes gracefully in the
    /// background; a drop never blocks the task.
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.conn.set_linger(linger)
    }

    /// The SO_LINGER value [`set_linger`](Self::set_linger) set.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.conn.linger()
    }

    /// The error the connection failed with (the peer's RST, a timeout, an ICMP error), if
    /// any, as SO_ERROR reports it: once. As on Linux, a connection's failure goes to the
    /// first call that reports it (this one, a read or a write); after that reads return 0
    /// and writes fail with `BrokenPipe`, and this returns `None`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.conn.take_error()
    }

    read_methods!();
    write_methods!();
    ready_method!();

    /// Reads the urgent byte (`recv(MSG_OOB)`, RFC 9293 §3.8.5 with Linux's semantics: the
    /// byte before the peer's urgent pointer, taken out of the stream), once and without
    /// waiting. `Ok(None)` at the end of the stream; `InvalidInput` when there is none (or
    /// it was read, or [`set_oob_inline`](Self::set_oob_inline) keeps it in the stream);
    /// `WouldBlock` while the pointer came ahead of the byte. Reads stop at the byte's
    /// place, [`at_urgent_mark`](Self::at_urgent_mark). RFC 6093 §5 advises new protocols
    /// against urgent data; this is for those that use it (telnet, FTP's ABOR).
    pub fn try_read_urgent(&self) -> io::Result<Option<u8>> {
        self.conn.try_read_urgent()
    }

    /// Queues `buf` with `send(MSG_OOB)`, without waiting: its last byte is urgent, and the
    /// segments carry URG and the urgent pointer until the peer acknowledges it.
    pub fn try_write_urgent(&self, buf: &[u8]) -> io::Result<usize> {
        self.conn.try_write_urgent(buf)
    }

    /// `SIOCATMARK`: whether the next read starts at the urgent mark (reads stop there).
    pub fn at_urgent_mark(&self) -> io::Result<bool> {
        self.conn.at_urgent_mark()
    }

    /// `SO_OOBINLINE`: keep the urgent byte in the stream, where reads return it.
    pub fn set_oob_inline(&self, inline: bool) -> io::Result<()> {
        self.conn.set_oob_inline(inline)
    }

    /// A snapshot of the connection after Linux's `TCP_INFO` (what `ss -ti` shows): state,
    /// RTT, RTO, congestion window, segments in flight, SACKed and lost, retransmissions.
    pub fn info(&self) -> io::Result<synack_core::tcp::info::TcpInfo> {
        self.conn.info()
    }

    /// Borrowed halves, usable from two tasks at once (e.g. inside one `join!`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (
            ReadHalf { conn: &self.conn },
            WriteHalf { conn: &self.conn },
        )
    }

    /// Owned halves that can move to different tasks. Dropping the write half sends FIN, as
    /// tokio's does; the connection is released once both halves are gone.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let conn = Arc::new(self.conn);
        (
            OwnedReadHalf {
                conn: Arc::clone(&conn),
            },
            OwnedWriteHalf {
                conn,
                shutdown_on_drop: true,
            },
        )
    }
}

/// What every half has: `ready`, the addresses, and the connection's error.
macro_rules! half_methods {
    () => {
        ready_method!();

        /// The peer's address and port.
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.conn.peer_addr()
        }

        /// The local address and port.
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.conn.local_addr()
        }

        /// The connection's error, once, as [`TcpStream::take_error`]: a read returns 0 after
        /// the peer's FIN even once an RST followed it (as Linux's does), and this still
        /// shows it, unless a write reported it first.
        pub fn take_error(&self) -> io::Result<Option<io::Error>> {
            self.conn.take_error()
        }
    };
}

/// The read half of [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a> {
    conn: &'a ConnRef,
}

/// The write half of [`TcpStream::split`].
#[derive(Debug)]
pub struct WriteHalf<'a> {
    conn: &'a ConnRef,
}

/// The read half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    conn: Arc<ConnRef>,
}

/// The write half of [`TcpStream::into_split`]; dropping it sends FIN.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    conn: Arc<ConnRef>,
    shutdown_on_drop: bool,
}

impl ReadHalf<'_> {
    read_methods!();
    half_methods!();
}

impl WriteHalf<'_> {
    write_methods!();
    half_methods!();
}

/// The halves given to [`OwnedReadHalf::reunite`] or [`OwnedWriteHalf::reunite`] came from
/// different streams; here they are back.
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same stream")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    read_methods!();
    half_methods!();

    /// Puts the stream back together from the halves [`TcpStream::into_split`] made, or
    /// gives them back if they come from different streams.
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.conn, &other.conn) {
            return Err(ReuniteError(self, other));
        }
        // The write half goes without sending FIN; then this half holds the only reference.
        other.forget();
        let OwnedReadHalf { conn } = self;
        match Arc::try_unwrap(conn) {
            Ok(conn) => Ok(TcpStream::from_conn(conn)),
            Err(_) => unreachable!("the two halves held the only references"),
        }
    }
}

impl OwnedWriteHalf {
    write_methods!();
    half_methods!();

    /// Drops the half without sending FIN (the connection stays open for writing until the
    /// read half is dropped too).
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }

    /// [`OwnedReadHalf::reunite`] from this side, as tokio has both: the stream again, with
    /// no FIN sent, or both halves back if they come from different streams.
    pub fn reunite(self, other: OwnedReadHalf) -> Result<TcpStream, ReuniteError> {
        other.reunite(self)
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.conn.poll_shutdown();
        }
    }
}

/// `AsyncRead` + `AsyncWrite` for a type with a `conn` field that derefs to [`ConnRef`].
macro_rules! async_io {
    (read: $($ty:ty),*) => {$(
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.conn.poll_read(cx, buf)
            }
        }
    )*};
    (write: $($ty:ty),*) => {$(
        impl AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.conn.poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.conn.poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Segments leave as soon as the driver runs; flushing does not wait for ACKs.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.conn.poll_shutdown()
            }
        }

        impl $ty {
            /// Writes all of `data`, which the stack keeps and sends from without copying it
            /// into its send buffer (`write_all` copies): for bytes the application already
            /// holds as [`Bytes`], an HTTP body or a cached file. If the future is dropped
            /// early, a prefix of `data` may have been queued, as with `write_all`.
            pub async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
                while !data.is_empty() {
                    let n = std::future::poll_fn(|cx| self.conn.poll_write_bytes(cx, &data)).await?;
                    data = data.slice(n..);
                }
                Ok(())
            }
        }
    )*};
}

async_io!(read: TcpStream, ReadHalf<'_>, OwnedReadHalf);
async_io!(write: TcpStream, WriteHalf<'_>, OwnedWriteHalf);
