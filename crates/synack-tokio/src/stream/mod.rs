//! [`TcpStream`] and its halves.
//!
//! Every read and write is one command on the core under the shared lock: `recv`/`send`
//! either make progress or return `WouldBlock`, in which case the task's waker is stored
//! *under the same lock*, so the driver's `Readable`/`Writable` event cannot slip in between
//! and be lost. The core's bounded buffers are the only buffers: there is no channel between a
//! stream and the driver, so backpressure is exact.

use crate::addr::{first_ok, ToSocketAddrs};
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BufMut;
use synack_core::{Bytes, SocketOptions};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf, Ready};

use crate::stack::Stack;
use crate::state::Waiter;

mod conn;
mod race;

pub(crate) use conn::ConnRef;

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
/// `TcpStream` and its halves have them. For an `impl` of a type with a `conn()` that returns
/// its [`ConnRef`].
macro_rules! read_methods {
    () => {
        /// Receives bytes without removing them: the next read returns them again. Waits
        /// while nothing has arrived; `Ok(0)` at the end of the stream.
        pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
            crate::state::wait_listed(
                |cx| self.conn().poll_peek(cx, buf, Waiter::Every),
                |w| self.conn().forget_waiter(w),
            )
            .await
        }

        /// Polls for [`peek`](Self::peek): fills `buf` with bytes that stay to be read, and
        /// returns how many.
        pub fn poll_peek(
            &self,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<usize>> {
            let unfilled = buf.initialize_unfilled();
            let n = std::task::ready!(self.conn().poll_peek(cx, unfilled, Waiter::Latest))?;
            buf.advance(n);
            Poll::Ready(Ok(n))
        }

        /// Waits until a read would not block (data, the end of the stream, or an error),
        /// for use with [`try_read`](Self::try_read). Several tasks may wait at once (on a
        /// shared stream): each is woken.
        pub async fn readable(&self) -> io::Result<()> {
            crate::state::wait_listed(
                |cx| self.conn().poll_read_ready(cx, Waiter::Every),
                |w| self.conn().forget_waiter(w),
            )
            .await
        }

        /// Polls for [`readable`](Self::readable). The waker is kept until the stream is
        /// readable; a later call's replaces it.
        pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.conn().poll_read_ready(cx, Waiter::Latest)
        }

        /// Reads what has arrived without waiting: `WouldBlock` when nothing has, `Ok(0)` at
        /// the end of the stream.
        pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
            self.conn().try_read(buf)
        }

        /// [`try_read`](Self::try_read) into several buffers, filled in turn.
        pub fn try_read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            self.conn().try_read_vectored(bufs)
        }

        /// [`try_read`](Self::try_read) into `buf`'s spare room, advancing it, as tokio's
        /// `try_read_buf`: at most what `buf.chunk_mut()` offers (a full `BytesMut` or `Vec`
        /// makes some room), written in place, never zeroed first.
        pub fn try_read_buf<B: BufMut>(&self, buf: &mut B) -> io::Result<usize> {
            self.conn().try_read_buf(buf)
        }

        /// [`try_read`](Self::try_read) as one [`Bytes`] of at most `max` bytes, empty at the
        /// end of the stream (see `read_bytes`), and for a `max` of 0.
        pub fn try_read_bytes(&self, max: usize) -> io::Result<Bytes> {
            self.conn().try_read_bytes(max)
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
            crate::state::wait_listed(
                |cx| self.conn().poll_write_ready(cx, Waiter::Every),
                |w| self.conn().forget_waiter(w),
            )
            .await
        }

        /// Polls for [`writable`](Self::writable). The waker is kept until the stream is
        /// writable; a later call's replaces it.
        pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.conn().poll_write_ready(cx, Waiter::Latest)
        }

        /// Queues as much of `buf` as the send buffer takes, without waiting: `WouldBlock`
        /// when it takes nothing.
        pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
            self.conn().try_write(buf)
        }

        /// [`try_write`](Self::try_write) from several buffers in turn, under one lock.
        pub fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.conn().try_write_vectored(bufs)
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
            crate::state::wait_ready(
                interest,
                |cx| self.conn().poll_ready(cx, interest),
                |w| self.conn().forget_waiter(w),
            )
            .await
        }
    };
}

/// The IPv4 address an IPv4 connection of a dual-stack socket leaves from: its bound one
/// unmapped, or the IPv4 unspecified address for `[::]`. A real IPv6 one cannot send IPv4
/// (Linux gives such a socket a placeholder IPv4 address no route takes: ENETUNREACH).
fn unmapped_local(local: SocketAddr) -> io::Result<SocketAddr> {
    match local {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => Ok(SocketAddr::new(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
            v6.port(),
        )),
        SocketAddr::V6(_) => crate::addr::unmapped(local)
            .ok_or_else(|| synack_core::Error::NetworkUnreachable.into()),
        SocketAddr::V4(_) => Ok(local),
    }
}

impl TcpStream {
    pub(crate) fn from_conn(conn: ConnRef) -> TcpStream {
        TcpStream { conn }
    }

    /// The connection, as the halves reach it too (see `as_ref_stream`).
    fn conn(&self) -> &ConnRef {
        &self.conn
    }

    /// Opens a connection to `addr` from one of the stack's addresses and an ephemeral port.
    ///
    /// Fails with `ConnectionRefused` if the peer answers with RST, and `TimedOut` once the
    /// configured SYN retries run out. One of the stack's own addresses is looped back
    /// inside the stack (a client and a server on one stack talk to each other), and the
    /// unspecified address (`0.0.0.0`, `[::]`) means this host, as on Linux: the bound
    /// address, else the stack's first of the family. The stack has no loopback link, so a
    /// loopback address (127.0.0.1, `::1`) fails at once with `NetworkUnreachable`, as does
    /// a broadcast or multicast one (TCP has no groups). An
    /// IPv4-mapped address (`::ffff:a.b.c.d`, as a dual-stack listener shows its IPv4
    /// clients) connects over IPv4, and the stream shows its addresses mapped, as Linux's
    /// dual-stack sockets do. A link-local IPv6 address (fe80::/10) needs a scope id
    /// (`fe80::1%3`): without one it is `InvalidInput`, as Linux's EINVAL; the stack has one
    /// link, which any scope id names, and the stream shows it back on its link-local
    /// addresses. Cancelling the future abandons the attempt.
    ///
    /// `addr` is anything tokio::net's `connect` takes; with several addresses, each is
    /// tried in turn until one connects, else the last error is returned. A host name is
    /// looked up through the stack's resolver (see [`ToSocketAddrs`]), and its addresses are
    /// tried as RFC 8305 (Happy Eyeballs) tries them: the A and AAAA queries go out apart
    /// (unless a search list could answer them for different names: see
    /// `integration::hickory::StackResolver`) and the first attempt
    /// starts with the AAAA answer, or 50 ms after the A answer if that comes first; the
    /// families alternate, and an address that has not answered within 250 ms gets the next
    /// one started beside it, the first to connect winning. So a family whose path is broken
    /// costs a quarter of a second, and one whose name server never answers costs 50 ms (but
    /// for an error, which waits for every answer: one still to come may connect).
    pub async fn connect(stack: &Stack, addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        match crate::addr::name_of(&addr)? {
            Some((name, port)) => race::first_to_connect(stack, stack.lookups(&name, port)?).await,
            None => {
                first_ok(stack, &addr, |a| async move {
                    Self::connect_with(stack, a, None, &SocketOptions::default(), None).await
                })
                .await
            }
        }
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
        // An IPv4-mapped destination is an IPv4 connection shown mapped, as Linux's
        // `tcp_v6_connect` hands one to `tcp_v4_connect`.
        let (addr, local, mapped) = match crate::addr::unmapped(addr) {
            Some(v4) => (v4, local.map(unmapped_local).transpose()?, true),
            None => (addr, local, false),
        };
        let (conn, deferred) = {
            // On the shard that will own the flow (see `crate::shard`).
            let (shard, mut inner, handle) = stack.open_connection(addr, local, options)?;
            let mut conn = ConnRef::register(stack, shard, handle, false, &mut inner)
                .with_scope(crate::addr::link_scope(addr));
            if mapped {
                conn = conn.map_to_v6();
            }
            if let Some(c) = inner.conns.get_mut(&handle) {
                c.linger = linger;
            }
            // TCP_FASTOPEN_CONNECT with a cookie: the SYN waits for the first write, and
            // connect returns now, as Linux's (`tcp_fastopen_defer_connect`).
            let deferred = inner.endpoint.fast_open_syn_room(handle).unwrap_or(0) > 0;
            inner.wake_driver();
            (conn, deferred)
        };
        if !deferred {
            std::future::poll_fn(|cx| conn.poll_connected(cx)).await?;
        }
        Ok(TcpStream { conn })
    }

    /// The local address and port of the connection.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.conn().local_addr()
    }

    /// The peer's address and port; `NotConnected` once the connection is closed (reset,
    /// timed out, or both sides' FINs exchanged), as tokio's.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.conn().peer_addr()
    }

    /// Disables (true) or enables (false) Nagle's algorithm (RFC 9293 §3.7.4).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.conn().set_nodelay(nodelay)
    }

    /// Whether Nagle's algorithm is disabled.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.conn().nodelay()
    }

    /// TCP_QUICKACK, as tokio's: `true` leaves request/response mode, where ACKs wait to
    /// ride on the reply, and sends an acknowledgement that waits for the delayed-ACK timer
    /// now if everything received has been read (else at the read that empties the
    /// queue); `false` enters that mode. As in Linux, neither lasts: the stack enters and
    /// leaves the mode again as the exchange goes, so set it again after reads if needed.
    pub fn set_quickack(&self, quickack: bool) -> io::Result<()> {
        self.conn().set_quickack(quickack)
    }

    /// TCP_QUICKACK as Linux reads it back: whether the connection is out of
    /// request/response mode, so that ACKs are not held for a reply.
    pub fn quickack(&self) -> io::Result<bool> {
        self.conn().quickack()
    }

    /// IP_TOS (IPv4) / IPV6_TCLASS (IPv6), as tokio's `TcpSocket::set_tos`: the DS byte of
    /// the packets the connection sends from now on. Only the six DSCP bits are used; the
    /// two ECN bits are the stack's (RFC 3168). The value is read as Linux reads the option
    /// of the stream's family: IP_TOS keeps its low eight bits, and IPV6_TCLASS past 255 is
    /// `InvalidInput`. On an IPv6 stream this departs from tokio's, which sets IP_TOS
    /// whatever the family (only IPv4-mapped traffic would use it): synack sets the traffic
    /// class of the IPv6 packets.
    pub fn set_tos(&self, tos: u32) -> io::Result<()> {
        self.conn().set_tos(tos)
    }

    /// The DSCP bits set with [`set_tos`](Self::set_tos) (the ECN bits read as zero).
    pub fn tos(&self) -> io::Result<u32> {
        self.conn().tos()
    }

    /// IP_TTL (IPv4) / IPV6_UNICAST_HOPS (IPv6), as tokio's `TcpStream::set_ttl`: the TTL or
    /// hop limit of the packets the connection sends from now on. 1 to 255, or `u32::MAX` (-1,
    /// as tokio passes it on) for the default, 64; anything else is `InvalidInput`. What
    /// TIME-WAIT answers after the ACK that began it goes with the default, as Linux's does.
    /// On an IPv6 stream this departs from tokio's, which sets IP_TTL whatever the family and
    /// so leaves the IPv6 packets' hop limit at 64: synack sets their hop limit.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.conn().set_ttl(ttl)
    }

    /// The connection's TTL: what [`set_ttl`](Self::set_ttl), the
    /// [`TcpSocket`](crate::TcpSocket) or the listener set, else 64.
    pub fn ttl(&self) -> io::Result<u32> {
        self.conn().ttl()
    }

    /// TCP_NOTSENT_LOWAT: writes stop while `lowat` bytes or more wait unsent, and the
    /// stream becomes writable again once fewer than half as many do, so that little data
    /// waits queued behind the congestion window (the application decides later what to
    /// send, and a priority change takes effect sooner). `None` returns to the stack's
    /// [`Config::notsent_lowat`](synack_core::Config::notsent_lowat) (no bound by default).
    pub fn set_notsent_lowat(&self, lowat: Option<usize>) -> io::Result<()> {
        self.conn().set_notsent_lowat(lowat)
    }

    /// SO_LINGER. `Some(Duration::ZERO)` makes dropping the stream reset the connection at
    /// once, discarding what is still queued, as `close` does on a kernel socket with
    /// linger 0. Any other value (or `None`, the default) closes gracefully in the
    /// background; a drop never blocks the task. The time is kept in whole seconds, as
    /// Linux's `l_linger` is (the fraction is dropped: less than a second is zero).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.conn().set_linger(crate::sockopt::linger_secs(linger))
    }

    /// The SO_LINGER value [`set_linger`](Self::set_linger) set.
    pub fn linger(&self) -> io::Result<Option<Duration>> {
        self.conn().linger()
    }

    /// SO_LINGER of zero, as tokio's `set_zero_linger`: dropping the stream resets the
    /// connection at once, discarding what is still queued, and leaves no TIME-WAIT.
    /// The same as `set_linger(Some(Duration::ZERO))`.
    pub fn set_zero_linger(&self) -> io::Result<()> {
        self.set_linger(Some(Duration::ZERO))
    }

    /// The error the connection failed with (the peer's RST, a timeout, an ICMP error), if
    /// any, as SO_ERROR reports it: once. As on Linux, a connection's failure goes to the
    /// first call that reports it (this one, a read or a write); after that reads return 0
    /// and writes fail with `BrokenPipe`, and this returns `None`. A connection that has not
    /// failed reports, once, an ICMP error it carried on after (a soft error, Linux's
    /// `sk_err_soft`), which it then no longer fails with if it times out.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.conn().take_error()
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
        self.conn().try_read_urgent()
    }

    /// Queues `buf` with `send(MSG_OOB)`, without waiting: its last byte is urgent, and the
    /// segments carry URG and the urgent pointer until the peer acknowledges it.
    pub fn try_write_urgent(&self, buf: &[u8]) -> io::Result<usize> {
        self.conn().try_write_urgent(buf)
    }

    /// `SIOCATMARK`: whether the next read starts at the urgent mark (reads stop there).
    pub fn at_urgent_mark(&self) -> io::Result<bool> {
        self.conn().at_urgent_mark()
    }

    /// `SO_OOBINLINE`: keep the urgent byte in the stream, where reads return it.
    pub fn set_oob_inline(&self, inline: bool) -> io::Result<()> {
        self.conn().set_oob_inline(inline)
    }

    /// A snapshot of the connection after Linux's `TCP_INFO` (what `ss -ti` shows): state,
    /// RTT, RTO, congestion window, segments in flight, SACKed and lost, retransmissions.
    pub fn info(&self) -> io::Result<synack_core::tcp::info::TcpInfo> {
        self.conn().info()
    }

    /// Borrowed halves, usable from two tasks at once (e.g. inside one `join!`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf { stream: self }, WriteHalf { stream: self })
    }

    /// Owned halves that can move to different tasks. Dropping the write half sends FIN, as
    /// tokio's does; the connection is released once both halves are gone.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let stream = Arc::new(self);
        (
            OwnedReadHalf {
                stream: Arc::clone(&stream),
            },
            OwnedWriteHalf {
                stream,
                shutdown_on_drop: true,
            },
        )
    }
}

/// What every half has: `ready`, the addresses, and the connection's error.
macro_rules! half_methods {
    () => {
        ready_method!();

        /// The peer's address and port; `NotConnected` once the connection is closed.
        pub fn peer_addr(&self) -> io::Result<SocketAddr> {
            self.conn().peer_addr()
        }

        /// The local address and port.
        pub fn local_addr(&self) -> io::Result<SocketAddr> {
            self.conn().local_addr()
        }

        /// The connection's error, once, as [`TcpStream::take_error`]: a read returns 0 after
        /// the peer's FIN even once an RST followed it (as Linux's does), and this still
        /// shows it, unless a write reported it first.
        pub fn take_error(&self) -> io::Result<Option<io::Error>> {
            self.conn().take_error()
        }
    };
}

/// The read half of [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a> {
    stream: &'a TcpStream,
}

/// The write half of [`TcpStream::split`].
#[derive(Debug)]
pub struct WriteHalf<'a> {
    stream: &'a TcpStream,
}

/// The read half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf {
    stream: Arc<TcpStream>,
}

/// The write half of [`TcpStream::into_split`]; dropping it sends FIN.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    stream: Arc<TcpStream>,
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

/// The stream behind a half, for what the halves do not offer themselves (`set_nodelay`,
/// `set_linger`, `info`, ...), as tokio's halves give `AsRef<TcpStream>`.
macro_rules! as_ref_stream {
    ($($ty:ty),*) => {$(
        impl AsRef<TcpStream> for $ty {
            fn as_ref(&self) -> &TcpStream {
                &self.stream
            }
        }

        impl $ty {
            fn conn(&self) -> &ConnRef {
                &self.stream.conn
            }
        }
    )*};
}

as_ref_stream!(ReadHalf<'_>, WriteHalf<'_>, OwnedReadHalf, OwnedWriteHalf);

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
        if !Arc::ptr_eq(&self.stream, &other.stream) {
            return Err(ReuniteError(self, other));
        }
        // The write half goes without sending FIN; then this half holds the only reference.
        other.forget();
        let OwnedReadHalf { stream } = self;
        match Arc::try_unwrap(stream) {
            Ok(stream) => Ok(stream),
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
            let _ = self.conn().poll_shutdown();
        }
    }
}

/// `AsyncRead` + `AsyncWrite` for a type with a `conn()` that returns its [`ConnRef`].
macro_rules! async_io {
    (read: $($ty:ty),*) => {$(
        impl AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.conn().poll_read(cx, buf)
            }
        }

        impl $ty {
            /// Reads what has arrived as one [`Bytes`] of at most `max` bytes, waiting while
            /// nothing has; empty at the end of the stream, and at once for a `max` of 0 (as
            /// tokio's `read` of an empty buffer returns 0: not the end then, so a loop that
            /// reads up to a limit stops asking at the limit). The payload of a large segment the
            /// stack kept where it was read (bulk data on the offload TUN) is handed over
            /// without a copy, where `read` copies it: one such payload a call at most, so a
            /// call may return less than has arrived. The handle holds that packet's buffer
            /// for as long as it is kept.
            pub async fn read_bytes(&mut self, max: usize) -> io::Result<Bytes> {
                std::future::poll_fn(|cx| self.conn().poll_read_bytes(cx, max)).await
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
                self.conn().poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.conn().poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            /// Segments leave as soon as the driver runs; flushing does not wait for ACKs.
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.conn().poll_shutdown()
            }
        }

        impl $ty {
            /// Writes all of `data`, which the stack keeps and sends from without copying it
            /// into its send buffer (`write_all` copies): for bytes the application already
            /// holds as [`Bytes`], an HTTP body or a cached file. Pieces under 1 KiB
            /// are copied after all, as a queued reference would cost more than their
            /// bytes. If the future is dropped
            /// early, a prefix of `data` may have been queued, as with `write_all`.
            pub async fn write_bytes(&mut self, mut data: Bytes) -> io::Result<()> {
                while !data.is_empty() {
                    let n = std::future::poll_fn(|cx| self.conn().poll_write_bytes(cx, &data)).await?;
                    data = data.slice(n..);
                }
                Ok(())
            }
        }
    )*};
}

async_io!(read: TcpStream, ReadHalf<'_>, OwnedReadHalf);
async_io!(write: TcpStream, WriteHalf<'_>, OwnedWriteHalf);
