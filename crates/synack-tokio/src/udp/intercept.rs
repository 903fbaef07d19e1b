//! [`UdpInterceptor`]: transparent mode's datagrams, those no bound socket takes, and the
//! token whose last holder turns the interception off.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use synack_core::{Error, InterceptedDatagram, Unreachable};

use super::sent;
use crate::state::register_many;
use crate::Stack;

/// Transparent mode's datagrams: those to any destination that no bound
/// [`UdpSocket`](super::UdpSocket) takes, with their original source and destination, and
/// replies from any address; from [`Stack::intercept_udp`]. Clones share one queue: each datagram goes to one reader.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use synack_tokio::{device::MemoryDevice, InterceptConfig, Stack, UdpSocket};
///
/// let (a, b) = MemoryDevice::pair();
/// let client = Stack::builder().address("198.18.0.2".parse().unwrap()).build(a)?;
/// let proxy = Stack::builder()
///     .address("198.18.0.1".parse().unwrap())
///     .intercept(InterceptConfig::default())
///     .build(b)?;
/// let interceptor = proxy.intercept_udp()?;
///
/// // A destination the proxy does not own.
/// let dns = "198.19.0.53:53".parse().unwrap();
/// let socket = UdpSocket::bind(&client, "0.0.0.0:0").await?;
/// socket.send_to(b"query", dns).await?;
///
/// let mut buf = [0u8; 512];
/// let d = interceptor.recv(&mut buf).await?;
/// assert_eq!((&buf[..d.len], d.dst), (&b"query"[..], dns));
/// interceptor.send_from(b"answer", d.dst, d.src).await?; // from the original destination
///
/// let (n, from) = socket.recv_from(&mut buf).await?;
/// assert_eq!((&buf[..n], from), (&b"answer"[..], dns));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct UdpInterceptor {
    stack: Stack,
    /// Shared by every interceptor of the stack: when the last is dropped, datagrams are
    /// answered as at a closed port again.
    _live: Arc<InterceptorToken>,
}

/// Held by the live [`UdpInterceptor`]s; dropping the last turns interception off.
pub(crate) struct InterceptorToken {
    stack: Stack,
}

impl Drop for InterceptorToken {
    /// Turns interception off on every shard, under shard 0's lock, which `intercept_udp`
    /// holds while it installs a token and turns it on: unless a new interceptor came
    /// between the last one's end and this, when interception stays on for it.
    fn drop(&mut self) {
        let Some(mut first) = self.stack.lock_for_drop(0) else {
            return;
        };
        if first.udp_interceptors.strong_count() > 0 {
            return;
        }
        first.endpoint.set_udp_interception(false);
        for shard in 1..self.stack.workers() {
            if let Some(mut inner) = self.stack.lock_for_drop(shard) {
                inner.endpoint.set_udp_interception(false);
            }
        }
    }
}

impl Stack {
    /// The datagrams of a stack in transparent mode that no socket takes. `InvalidInput` if
    /// the stack was not built to intercept (see
    /// [`StackBuilder::intercept`](crate::StackBuilder::intercept)).
    ///
    /// While no interceptor lives (before the first call, and once every one is dropped),
    /// such datagrams are answered with ICMP port unreachable, as at a closed port: a proxy
    /// that intercepts TCP only tells its clients' UDP at once that nothing is there, and
    /// nothing is queued that no one reads (dropping the last interceptor drops what it
    /// left unread). One that intercepts UDP only turns TCP's interception off with
    /// [`Stack::set_tcp_interception`].
    pub fn intercept_udp(&self) -> io::Result<UdpInterceptor> {
        if self.with_config(|c| c.intercept_config().is_none()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "synack: this stack does not intercept (StackBuilder::intercept)",
            ));
        }
        // Shard 0's lock is held throughout, as the last token's `drop` holds it to turn
        // interception off: the two cannot interleave.
        let mut first = self.lock_shard(0)?;
        let live = match first
            .udp_interceptors
            .upgrade()
            .and_then(|live| live.downcast::<InterceptorToken>().ok())
        {
            Some(live) => live,
            None => {
                let live = Arc::new(InterceptorToken {
                    stack: self.clone(),
                });
                first.udp_interceptors = Arc::downgrade(&live) as std::sync::Weak<InterceptorToken>;
                live
            }
        };
        first.endpoint.set_udp_interception(true);
        let mut on = Ok(());
        for shard in 1..self.workers() {
            match self.lock_shard(shard) {
                Ok(mut inner) => inner.endpoint.set_udp_interception(true),
                Err(e) => {
                    on = Err(e);
                    break;
                }
            }
        }
        // Released before `live` can be dropped on an error: its `drop` takes this lock.
        drop(first);
        on?;
        Ok(UdpInterceptor {
            stack: self.clone(),
            _live: live,
        })
    }
}

/// A finished or cancelled interceptor wait's clean-up ([`crate::state::wait_listed`]): the
/// task leaves the lists of tasks waiting for intercepted datagrams and for room to send;
/// whether it was in one.
fn forget_intercept_waiter(stack: &Stack, waker: &Waker) -> bool {
    let Some(mut inner) = stack.lock_for_drop(0) else {
        return false;
    };
    let received = crate::state::unlist(&mut inner.udp_intercept_wakers, waker);
    crate::state::unlist(&mut inner.udp_send_wakers, waker) | received
}

impl UdpInterceptor {
    /// The next datagram, truncated to `buf` (as `recv_from`): `src` is the client, `dst`
    /// where it was sent. Cancel-safe. Once `Stack::shutdown` began, and what was queued
    /// before has been taken, it fails with `NotConnected`, as the TCP [`Interceptor`]'s
    /// `next` does, so that a relay's UDP loop ends with its TCP one.
    ///
    /// [`Interceptor`]: crate::Interceptor
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<InterceptedDatagram> {
        crate::state::wait_listed(
            |cx| self.poll_recv(cx, buf),
            |w| forget_intercept_waiter(&self.stack, w),
        )
        .await
    }

    /// Polls for the next datagram, as [`recv`](Self::recv) does.
    pub fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<InterceptedDatagram>> {
        let mut inner = self.stack.lock_udp()?;
        match inner.endpoint.udp_recv_intercepted(buf) {
            Ok(d) => Poll::Ready(Ok(d)),
            Err(Error::WouldBlock) => {
                inner.check_open()?;
                register_many(&mut inner.udp_intercept_wakers, cx);
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// A reply from any address (normally the original destination) to the client.
    pub async fn send_from(
        &self,
        buf: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> io::Result<usize> {
        crate::state::wait_listed(
            |cx| self.poll_send_from(cx, buf, from, to),
            |w| forget_intercept_waiter(&self.stack, w),
        )
        .await
    }

    /// Polls to send, as [`send_from`](Self::send_from) does.
    pub fn poll_send_from(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        from: SocketAddr,
        to: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        let mut inner = self.stack.lock_udp()?;
        let result = inner.endpoint.udp_send_from(from, to, buf);
        sent(&mut inner, cx, result)
    }

    /// Answers `to` with ICMP destination unreachable from `from`, normally a datagram's
    /// original destination, with the code for `why`: [`Unreachable::Port`] is what a
    /// closed port at `from` answers. For a proxy whose upstream socket learnt of a hard
    /// ICMP error ([`Unreachable::from_udp_io_error`]): the client's connected socket learns
    /// it at once, as it would without the proxy, where it would otherwise wait out its own
    /// timeout. (A network or host unreachable is a soft error a connected UDP socket
    /// ignores: see [`Unreachable`].) Within the stack's ICMP rate limit; `Ok(false)` when
    /// that (or a full queue) dropped it.
    pub fn unreachable(
        &self,
        from: SocketAddr,
        to: SocketAddr,
        why: Unreachable,
    ) -> io::Result<bool> {
        let mut inner = self.stack.lock_udp()?;
        let now = inner.now();
        let sent = inner.endpoint.udp_unreachable(now, from, to, why)?;
        inner.wake_driver();
        Ok(sent)
    }
}

impl fmt::Debug for UdpInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpInterceptor").finish_non_exhaustive()
    }
}
