//! [`ConnRef`]: the runtime's handle on one connection, which every stream and half holds,
//! and the commands it runs on the core under its shard's lock: reads, writes and peeks,
//! readiness, options, shutdown, and the close or reset when it is dropped.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use synack_core::{Bytes, ConnectionHandle, Endpoint, Error, State};
use tokio::io::{Interest, ReadBuf, Ready};
use tracing::debug;

use crate::stack::Stack;
use crate::state::{park, register, remove_handle, ConnState, Inner, Waiter};

/// A connection the runtime refers to; dropping it closes the connection gracefully.
pub(crate) struct ConnRef {
    pub(super) stack: Stack,
    /// The shard whose endpoint holds the connection.
    pub(super) shard: usize,
    pub(super) handle: ConnectionHandle,
    /// An IPv4 connection accepted by a listener on `[::]` (dual stack): its addresses are
    /// shown IPv4-mapped, as Linux's `getsockname`/`getpeername` on such a socket show them.
    mapped: bool,
    /// The scope id an outgoing connection to a link-local peer was given (the stack's one
    /// link, which any scope id names): shown back with its link-local addresses, as Linux's
    /// `getpeername` and `getsockname` show `sk_bound_dev_if` for them (0 otherwise).
    scope_id: u32,
    /// The local address and port, fixed for the connection's life: `local_addr` answers
    /// from here, as `getsockname` answers on any open socket, even once the driver has
    /// stopped.
    local: Option<SocketAddr>,
}

impl ConnRef {
    /// Registers `handle` with the runtime and wraps it, so that from here on every exit path
    /// releases it.
    pub(crate) fn register(
        stack: &Stack,
        shard: usize,
        handle: ConnectionHandle,
        connected: bool,
        inner: &mut crate::state::Inner,
    ) -> ConnRef {
        let local = inner.endpoint.local_addr(handle).ok();
        let span = tracing::debug_span!(
            "conn",
            id = handle.0,
            local = ?local,
            peer = ?inner.endpoint.peer_addr(handle).ok(),
        );
        inner.conns.insert(handle, ConnState::new(connected, span));
        ConnRef {
            stack: stack.clone(),
            shard,
            handle,
            mapped: false,
            scope_id: 0,
            local,
        }
    }

    /// Shows the connection's link-local addresses with `scope_id` (see `scope_id`).
    pub(crate) fn with_scope(mut self, scope_id: u32) -> ConnRef {
        self.scope_id = scope_id;
        self
    }

    /// Shows the connection's addresses IPv4-mapped from now on (see `mapped`).
    pub(crate) fn map_to_v6(mut self) -> ConnRef {
        self.mapped = true;
        self
    }

    fn shown(&self, addr: SocketAddr) -> SocketAddr {
        crate::addr::scoped(crate::addr::shown(addr, self.mapped), self.scope_id)
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

    pub(super) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        if buf.remaining() == 0 {
            // No room: ready once a read would return something (bytes, the end or an
            // error), as tokio's `poll_read` waits for readiness first; never a read that
            // spins, whatever the caller's loop. Then a read of nothing, as tokio's makes
            // one: Linux's `recvmsg` reports (and takes) a pending error even so, as
            // `try_read(&mut [])` does here.
            return match inner.endpoint.recv_ready(self.handle) {
                Ok(false) => {
                    if let Some(c) = inner.conns.get_mut(&self.handle) {
                        register(&mut c.read_waker, cx);
                    }
                    Poll::Pending
                }
                Ok(true) | Err(_) => {
                    drop(inner);
                    Poll::Ready(match self.try_read(&mut []) {
                        Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
                        _ => Ok(()),
                    })
                }
            };
        }
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

    /// A read as one `Bytes` of at most `max` bytes (empty at the end of the stream); waits
    /// while nothing has arrived, as [`poll_read`](Self::poll_read).
    pub(super) fn poll_read_bytes(
        &self,
        cx: &mut Context<'_>,
        max: usize,
    ) -> Poll<io::Result<Bytes>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        match inner.endpoint.recv_bytes(now, self.handle, max) {
            Ok(bytes) => {
                inner.wake_driver();
                Poll::Ready(Ok(bytes))
            }
            Err(Error::WouldBlock) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    register(&mut c.read_waker, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(
                inner
                    .report_failure(self.handle, e)
                    .map_or(Ok(Bytes::new()), Err),
            ),
        }
    }

    pub(super) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_bufs(cx, &[IoSlice::new(buf)])
    }

    /// Copies received bytes without consuming them; waits while there are none.
    pub(super) fn poll_peek(
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
    pub(super) fn poll_read_ready(
        &self,
        cx: &mut Context<'_>,
        waiter: Waiter,
    ) -> Poll<io::Result<()>> {
        self.poll_read_readiness(cx, waiter).map_ok(drop)
    }

    /// [`poll_read_ready`](Self::poll_read_ready) with what `ready` reports: `READABLE`,
    /// and `READ_CLOSED` too once the peer's FIN came or the connection closed.
    pub(super) fn poll_read_readiness(
        &self,
        cx: &mut Context<'_>,
        waiter: Waiter,
    ) -> Poll<io::Result<Ready>> {
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
    pub(super) fn poll_write_ready(
        &self,
        cx: &mut Context<'_>,
        waiter: Waiter,
    ) -> Poll<io::Result<()>> {
        self.poll_write_readiness(cx, waiter).map_ok(drop)
    }

    /// [`poll_write_ready`](Self::poll_write_ready) with what `ready` reports: `WRITABLE`,
    /// and `WRITE_CLOSED` too once the connection is shut down both ways or closed.
    pub(super) fn poll_write_readiness(
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
        let blocked = self.write_blocked(inner);
        let Some(c) = inner.conns.get_mut(&self.handle) else {
            return Poll::Ready(Ok(writable));
        };
        let room = !matches!(room, Ok(0)) && !blocked;
        if room || !open || c.write_shutdown || c.error.is_some() {
            return Poll::Ready(Ok(writable));
        }
        park(c, true, waiter, cx);
        Poll::Pending
    }

    /// The readiness `interest` asks for, once some of it holds (for `ready`, an `async fn`:
    /// every task waiting is woken).
    pub(super) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<io::Result<Ready>> {
        crate::state::poll_interest_bits(
            cx,
            interest,
            |cx| self.poll_read_readiness(cx, Waiter::Every),
            |cx| self.poll_write_readiness(cx, Waiter::Every),
            |cx, interest| self.poll_other_readiness(cx, interest),
        )
    }

    /// `ERROR` while a failure waits to be reported (Linux's `EPOLLERR` while `sk_err` is
    /// set: the next read, write or `take_error` takes it), `PRIORITY` while an urgent byte
    /// waits (`EPOLLPRI`), with `READ_CLOSED` once the read side is closed; otherwise the
    /// task waits with the readers, whom a FIN, a reset and urgent data wake.
    fn poll_other_readiness(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<io::Result<Ready>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let inner = &mut *inner;
        let mut ready = Ready::EMPTY;
        if interest.is_error() {
            let core = inner.endpoint.take_error(self.handle).ok().flatten();
            let pending = inner
                .conns
                .get(&self.handle)
                .is_some_and(|c| !c.error_reported && (core.is_some() || c.error.is_some()));
            if pending {
                ready |= Ready::ERROR;
            }
        }
        if interest.is_priority() {
            if inner.endpoint.urgent_pending(self.handle) == Ok(true) {
                ready |= Ready::PRIORITY;
            }
            // tokio's `Ready::from_interest` counts READ_CLOSED as part of PRIORITY, so
            // over a kernel socket `ready(PRIORITY)` answers once the peer's FIN or a reset
            // is in (`EPOLLRDHUP`, `EPOLLHUP`), urgent data or not.
            let state = inner.endpoint.state(self.handle);
            ready |= closed_bits(state, inner.conns.get(&self.handle)) & Ready::READ_CLOSED;
        }
        if !ready.is_empty() {
            return Poll::Ready(Ok(ready));
        }
        if let Some(c) = inner.conns.get_mut(&self.handle) {
            park(c, false, Waiter::Every, cx);
        }
        Poll::Pending
    }

    /// A finished or cancelled wait's clean-up ([`crate::state::wait_listed`]): the task
    /// leaves the connection's lists of waiting readers and writers; whether it was in one.
    pub(super) fn forget_waiter(&self, waker: &std::task::Waker) -> bool {
        let Some(mut inner) = self.stack.lock_for_drop(self.shard) else {
            return false;
        };
        inner.conns.get_mut(&self.handle).is_some_and(|c| {
            crate::state::unlist(&mut c.read_waiters, waker)
                | crate::state::unlist(&mut c.write_waiters, waker)
        })
    }

    /// A read that never waits: `WouldBlock` when nothing is buffered.
    pub(super) fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.try_read_with(|ep, now, h| ep.recv(now, h, buf))
    }

    /// [`try_read`](Self::try_read) into a `BufMut`'s room, written in place.
    pub(super) fn try_read_buf<B: BufMut + ?Sized>(&self, buf: &mut B) -> io::Result<usize> {
        self.try_read_with(|ep, now, h| ep.recv_buf(now, h, buf))
    }

    /// [`try_read`](Self::try_read) as one `Bytes` of at most `max` bytes (empty at the
    /// end of the stream), a payload kept where it arrived handed over without a copy.
    pub(super) fn try_read_bytes(&self, max: usize) -> io::Result<Bytes> {
        self.try_read_with(|ep, now, h| ep.recv_bytes(now, h, max))
    }

    /// A read command that never waits, under the lock: a read that took bytes may have
    /// opened the window, so the driver is woken to tell the peer. A failure reported
    /// already reads as the end of the stream (`T::default()`: 0 bytes, an empty `Bytes`).
    pub(super) fn try_read_with<T: Default>(
        &self,
        read: impl FnOnce(&mut Endpoint, synack_core::Instant, ConnectionHandle) -> Result<T, Error>,
    ) -> io::Result<T> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        match read(&mut inner.endpoint, now, self.handle) {
            Ok(n) => {
                inner.wake_driver();
                Ok(n)
            }
            Err(e) => inner
                .report_failure(self.handle, e)
                .map_or(Ok(T::default()), Err),
        }
    }

    /// A read into several buffers in turn that never waits, under one lock: `WouldBlock`
    /// when nothing is buffered.
    pub(super) fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let taken = bufs.len().min(IOV_MAX);
        let bufs = &mut bufs[..taken];
        if bufs.iter().all(|b| b.is_empty()) {
            // No room: `WouldBlock` until the connection is readable (tokio asks for read
            // readiness before it calls `readv`), then 0 without reading, as `vfs_readv`
            // returns for no bytes before the socket sees the call: an error waits for the
            // next read.
            let inner = self.stack.lock_shard(self.shard)?;
            return match inner.endpoint.recv_ready(self.handle) {
                Ok(true) => Ok(0),
                Ok(false) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(inner.conn_error(self.handle, e)),
            };
        }
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
    pub(super) fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)], None)
    }

    /// Runs one core command on the connection under its shard's lock; a core error comes
    /// back as the connection's (`conn_error`).
    pub(super) fn command<T>(
        &self,
        f: impl FnOnce(&mut Endpoint, ConnectionHandle) -> Result<T, Error>,
    ) -> io::Result<T> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let r = f(&mut inner.endpoint, self.handle);
        r.map_err(|e| inner.conn_error(self.handle, e))
    }

    pub(super) fn nodelay(&self) -> io::Result<bool> {
        self.command(|ep, h| ep.nodelay(h))
    }

    pub(super) fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner.conns.get_mut(&self.handle) {
            Some(c) => {
                c.linger = linger;
                Ok(())
            }
            None => Err(Error::InvalidHandle.into()),
        }
    }

    pub(super) fn linger(&self) -> io::Result<Option<Duration>> {
        let inner = self.stack.lock_shard(self.shard)?;
        inner
            .conns
            .get(&self.handle)
            .map(|c| c.linger)
            .ok_or_else(|| Error::InvalidHandle.into())
    }

    /// SO_ERROR: the connection's failure, once (Linux's `sock_error` clears it); `None`
    /// after it was returned, here or by a read or write. Without one, the soft error an
    /// ICMP report left, taken (`sk_err_soft`).
    pub(super) fn take_error(&self) -> io::Result<Option<io::Error>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        match inner.endpoint.take_error(self.handle) {
            Ok(None) => Ok(inner
                .endpoint
                .take_soft_error(self.handle)
                .ok()
                .flatten()
                .map(io::Error::from)),
            Ok(Some(e)) => Ok(inner.report_failure(self.handle, e)),
            // A handle the core released: the failure the runtime kept, if there is one.
            Err(e) => match inner.conns.get(&self.handle).and_then(|c| c.error) {
                Some(_) => Ok(inner.report_failure(self.handle, e)),
                None => Err(inner.conn_error(self.handle, e)),
            },
        }
    }

    /// Queues as many of `bufs`' bytes as the send buffer takes, in order.
    pub(super) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        if no_bytes(bufs) {
            return Poll::Ready(Ok(0));
        }
        self.poll_write_bufs(cx, bufs)
    }

    /// [`write_vectored`](Self::write_vectored) as a poll: `Pending` for `WouldBlock`.
    fn poll_write_bufs(
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
    pub(super) fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let bufs = &bufs[..bufs.len().min(IOV_MAX)];
        if no_bytes(bufs) && !self.write_blocked(&mut *self.stack.lock_shard(self.shard)?) {
            return Ok(0);
        }
        self.write_vectored(bufs, None)
    }

    /// Queues `bufs` in turn, under one lock, as far as the send buffer takes them. When it
    /// takes nothing: `WouldBlock`, with `cx`'s task registered for the `Writable` event
    /// that follows.
    pub(super) fn write_vectored(
        &self,
        bufs: &[IoSlice<'_>],
        cx: Option<&mut Context<'_>>,
    ) -> io::Result<usize> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let inner = &mut *inner;
        // Blocked, a write of no bytes waits too: tokio asks for write readiness, which the
        // last `WouldBlock` cleared, before it calls `write`.
        if self.write_blocked(inner) {
            if let (Some(cx), Some(c)) = (cx, inner.conns.get_mut(&self.handle)) {
                register(&mut c.write_waker, cx);
            }
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if no_bytes(bufs) {
            return self.write_nothing(inner);
        }
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
                        .unwrap_or_else(|| Error::BrokenPipe.into()))
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
        // the task, and writes wait for it.
        if let Some(c) = inner.conns.get_mut(&self.handle) {
            c.write_blocked = true;
            if let Some(cx) = cx {
                register(&mut c.write_waker, cx);
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Whether a write that took nothing is still waiting for the `Writable` that follows
    /// (see `ConnState::write_blocked`): the send buffer may have some room again, but not
    /// the third of it that Linux's `sk_stream_write_space` waits for. Never once a write
    /// would fail at once (our own shutdown, a failure, a closed connection): that it
    /// reports, as the kernel's state change makes tokio's readiness report it.
    fn write_blocked(&self, inner: &mut Inner) -> bool {
        inner
            .conns
            .get(&self.handle)
            .is_some_and(|c| c.write_blocked && !c.write_shutdown && !c.closed && c.error.is_none())
            && inner.endpoint.poll_writable(self.handle) == Ok(false)
    }

    /// A write of no bytes. It queues nothing but still reports the connection's state, as
    /// Linux's `send(fd, "", 0)` does (`tcp_sendmsg` checks the socket before the length):
    /// EPIPE after our own shutdown or once the connection is closed, and a reset or
    /// time-out once, as any write would. It also lets go of a SYN that
    /// `TCP_FASTOPEN_CONNECT` held back for data.
    fn write_nothing(&self, inner: &mut Inner) -> io::Result<usize> {
        match inner.endpoint.send(self.handle, &[]) {
            Ok(_) => {
                inner.wake_driver();
                Ok(0)
            }
            Err(e) => Err(inner
                .report_failure(self.handle, e)
                .unwrap_or_else(|| Error::BrokenPipe.into())),
        }
    }

    /// Queues as much of `data` as the send buffer takes, without copying it; returns how
    /// much that was.
    pub(super) fn poll_write_bytes(
        &self,
        cx: &mut Context<'_>,
        data: &Bytes,
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let inner = &mut *inner;
        let sent = match self.write_blocked(inner) {
            true => Err(Error::WouldBlock),
            false if data.is_empty() => return Poll::Ready(self.write_nothing(inner)),
            false => inner.endpoint.send_bytes(self.handle, data.clone()),
        };
        match sent {
            Ok(n) => {
                inner.wake_driver();
                Poll::Ready(Ok(n))
            }
            Err(Error::WouldBlock) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    c.write_blocked = true;
                    register(&mut c.write_waker, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(inner
                .report_failure(self.handle, e)
                .unwrap_or_else(|| Error::BrokenPipe.into()))),
        }
    }

    /// Sends our FIN; reads continue until the peer's (RFC 9293 §3.10.4, half-close).
    pub(super) fn poll_shutdown(&self) -> Poll<io::Result<()>> {
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
            // A closed connection (an RST, a time-out, both FINs): Linux's `inet_shutdown`
            // says ENOTCONN, which tokio's `TcpStream` takes as done (`shutdown_std`), so
            // that a relay's `shutdown().await?` does not fail because the peer reset
            // first. Whatever ended it is for reads and writes to report, once.
            Err(Error::InvalidHandle | Error::NotConnected) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(inner.conn_error(self.handle, e))),
        }
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self.local {
            Some(a) => Ok(self.shown(a)),
            None => self
                .command(|ep, h| ep.local_addr(h))
                .map(|a| self.shown(a)),
        }
    }

    /// The peer's address while the connection is up: `NotConnected` once it is closed (a
    /// reset, a time-out, both FINs), as Linux's `getpeername` in TCP_CLOSE (`inet_getname`),
    /// which tokio's `peer_addr` returns.
    pub(super) fn peer_addr(&self) -> io::Result<SocketAddr> {
        let inner = self.stack.lock_shard(self.shard)?;
        match inner.endpoint.state(self.handle) {
            Ok(State::Closed | State::TimeWait | State::SynSent) | Err(_) => {
                Err(Error::NotConnected.into())
            }
            Ok(_) => inner
                .endpoint
                .peer_addr(self.handle)
                .map(|a| self.shown(a))
                .map_err(|e| inner.conn_error(self.handle, e)),
        }
    }

    /// A MSG_OOB read: the urgent byte, never waiting (`None` at the end of the stream).
    pub(super) fn try_read_urgent(&self) -> io::Result<Option<u8>> {
        self.command(|ep, h| ep.recv_urgent(h))
    }

    /// A MSG_OOB write that never waits, as [`ConnRef::try_write`].
    pub(super) fn try_write_urgent(&self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.stack.lock_shard(self.shard)?;
        let inner = &mut *inner;
        if buf.is_empty() && !self.write_blocked(inner) {
            return self.write_nothing(inner);
        }
        let sent = match self.write_blocked(inner) {
            true => Ok(0),
            false => inner
                .endpoint
                .send_urgent(self.handle, buf, Default::default()),
        };
        match sent {
            Ok(0) => {
                if let Some(c) = inner.conns.get_mut(&self.handle) {
                    c.write_blocked = true;
                }
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(n) => {
                inner.wake_driver();
                Ok(n)
            }
            // As a write: the failure once, then EPIPE (Linux's `tcp_sendmsg`).
            Err(e) => Err(inner
                .report_failure(self.handle, e)
                .unwrap_or_else(|| Error::BrokenPipe.into())),
        }
    }

    /// SIOCATMARK: whether the next byte read is at the urgent mark.
    pub(super) fn at_urgent_mark(&self) -> io::Result<bool> {
        self.command(|ep, h| ep.urgent_mark(h).map(|m| m == Some(0)))
    }

    /// A command whose effect the driver must act on: the driver is woken after it.
    pub(super) fn command_and_wake<T>(
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
    pub(super) fn set_oob_inline(&self, inline: bool) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_oob_inline(h, inline))
    }

    /// Turning Nagle off sends what it held back, now (Linux's `TCP_NODELAY` pushes the
    /// pending frames), not at the next packet or timer.
    pub(super) fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_nodelay(h, nodelay))
    }

    /// An ACK waiting for its timer leaves now: the driver sends it.
    pub(super) fn set_quickack(&self, on: bool) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_quickack(h, on))
    }

    pub(super) fn quickack(&self) -> io::Result<bool> {
        self.command(|ep, h| ep.quickack(h))
    }

    pub(super) fn set_tos(&self, tos: u32) -> io::Result<()> {
        let tos = crate::sockopt::ds_byte(tos, self.local_addr()?.is_ipv6())?;
        self.command(|ep, h| ep.set_tos(h, tos))
    }

    pub(super) fn tos(&self) -> io::Result<u32> {
        self.command(|ep, h| ep.tos(h).map(u32::from))
    }

    pub(super) fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        let ttl = crate::sockopt::hop_limit(ttl)?;
        self.command(|ep, h| ep.set_hop_limit(h, ttl))
    }

    pub(super) fn ttl(&self) -> io::Result<u32> {
        self.command(|ep, h| ep.hop_limit(h).map(u32::from))
    }

    /// A larger mark may owe a waiting writer its `Writable`: the driver hands it on.
    pub(super) fn set_notsent_lowat(&self, lowat: Option<usize>) -> io::Result<()> {
        self.command_and_wake(|ep, h| ep.set_notsent_lowat(h, lowat))
    }

    pub(super) fn info(&self) -> io::Result<synack_core::tcp::info::TcpInfo> {
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
        let reset = match remove_handle(&mut inner.conns, &self.handle) {
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

/// The most slices one vectored read or write takes: Linux's `UIO_MAXIOV` (`IOV_MAX`), the
/// most `readv` and `writev` accept, and so the most std's vectored calls (which tokio's
/// make) pass on; the slices past it wait for the next call.
const IOV_MAX: usize = 1024;

/// Whether `bufs` hold no bytes at all. A vectored write of none is 0 whatever the
/// connection's state, as tokio's `writev` on a kernel socket gets from `vfs_writev` (a total
/// length of 0 never reaches the socket, so a pending error stays pending), where a `write`
/// of no bytes reports it (`write_nothing`).
fn no_bytes(bufs: &[IoSlice<'_>]) -> bool {
    bufs.iter().all(|b| b.is_empty())
}
