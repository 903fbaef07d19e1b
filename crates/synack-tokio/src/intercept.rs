//! Transparent mode: connections to any address that reaches the device, each decided on
//! before it is answered.
//!
//! A stack built with [`StackBuilder::intercept`](crate::StackBuilder::intercept) (or a
//! [`Config::intercept`](synack_core::Config::intercept)) holds every SYN that no listener
//! takes, whatever its destination, and [`Stack::intercept`] hands them out as
//! [`IncomingSyn`]s. For each, the application chooses: [`IncomingSyn::accept`] completes
//! the handshake and gives a [`TcpStream`] whose `local_addr()` is the address the client
//! dialled; [`IncomingSyn::refuse`] answers with an RST; [`IncomingSyn::unreachable`] with an
//! ICMP destination unreachable; dropping it drops the SYN. A SYN nobody decides on is
//! dropped after `InterceptConfig::decision_timeout`. A proxy so opens its upstream
//! connection first, and the client sees the upstream's answer (after gVisor's
//! `tcp.Forwarder`, which tailscale and wireguard-go use).
//!
//! The kernel must route the traffic into the device, e.g. `ip route add default dev
//! synack0` in the namespace whose traffic is to be intercepted.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! use synack_tokio::{device::MemoryDevice, InterceptConfig, Stack, TcpStream};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let (a, b) = MemoryDevice::pair();
//! let client = Stack::builder().address("198.18.0.2".parse().unwrap()).build(a)?;
//! let proxy = Stack::builder()
//!     .address("198.18.0.1".parse().unwrap())
//!     .intercept(InterceptConfig::default())
//!     .build(b)?;
//!
//! // Any destination: here one the proxy does not own.
//! let dialled = "198.19.0.80:443".parse().unwrap();
//! let connecting = tokio::spawn({
//!     let client = client.clone();
//!     async move { TcpStream::connect(&client, dialled).await }
//! });
//! let interceptor = proxy.intercept()?;
//! let syn = interceptor.next().await?;
//! assert_eq!(syn.local_addr(), dialled);
//! let mut inbound = syn.accept().await?; // only now does the client get its SYN-ACK
//! assert_eq!(inbound.local_addr()?, dialled);
//!
//! let mut outbound = connecting.await.unwrap()?;
//! outbound.write_all(b"ping").await?;
//! let mut buf = [0u8; 4];
//! inbound.read_exact(&mut buf).await?;
//! assert_eq!(&buf, b"ping");
//! # Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use synack_core::{InterceptedSyn, SocketOptions, SynHandle, Unreachable};

use crate::state::register_many;
use crate::stream::ConnRef;
use crate::{Stack, TcpStream};

/// Where a stack in transparent mode hands out the SYNs it holds; from [`Stack::intercept`].
/// Several may exist: each SYN goes to one of them.
pub struct Interceptor {
    stack: Stack,
    /// The shard to ask first, next time.
    next: AtomicUsize,
}

impl Clone for Interceptor {
    fn clone(&self) -> Interceptor {
        Interceptor {
            stack: self.stack.clone(),
            next: AtomicUsize::new(self.next.load(Ordering::Relaxed)),
        }
    }
}

impl Stack {
    /// The held SYNs of a stack in transparent mode. `InvalidInput` if the stack was not
    /// built to intercept (see [`StackBuilder::intercept`](crate::StackBuilder::intercept)).
    pub fn intercept(&self) -> io::Result<Interceptor> {
        if self.with_config(|c| c.intercept_config().is_none()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "synack: this stack does not intercept (StackBuilder::intercept)",
            ));
        }
        Ok(Interceptor {
            stack: self.clone(),
            next: AtomicUsize::new(0),
        })
    }

    /// Whether the SYNs of a stack in transparent mode that no listener takes are held for
    /// [`Stack::intercept`] (from the start, whether or not an interceptor lives yet) or
    /// reset, as at a closed port. An application that intercepts UDP only
    /// ([`Stack::intercept_udp`]) turns it off, so that its clients' TCP is refused at once
    /// rather than held to no one until each SYN's decision time runs out, again on every
    /// SYN retry. Turning it off resets the SYNs held, any an [`IncomingSyn`] still holds
    /// included. `InvalidInput` if the stack was not built to intercept.
    pub fn set_tcp_interception(&self, on: bool) -> io::Result<()> {
        if self.with_config(|c| c.intercept_config().is_none()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "synack: this stack does not intercept (StackBuilder::intercept)",
            ));
        }
        for shard in 0..self.workers() {
            let mut inner = self.lock_shard(shard)?;
            inner.endpoint.set_tcp_interception(on);
            inner.wake_driver();
        }
        Ok(())
    }
}

impl Interceptor {
    /// Waits for the next held SYN. Cancel-safe: a SYN is taken only when this returns it.
    /// Fails once the stack has stopped, or [`Stack::shutdown`] began (`NotConnected`).
    pub async fn next(&self) -> io::Result<IncomingSyn> {
        crate::state::wait_listed(|cx| self.poll_next(cx), |w| self.forget_waiter(w)).await
    }

    /// A finished or cancelled `next`'s clean-up ([`crate::state::wait_listed`]): the task
    /// leaves every shard's list of waiting interceptors; whether it was in one.
    fn forget_waiter(&self, waker: &std::task::Waker) -> bool {
        let mut found = false;
        for shard in 0..self.stack.workers() {
            if let Some(mut inner) = self.stack.lock_for_drop(shard) {
                found |= crate::state::unlist(&mut inner.intercept_wakers, waker);
            }
        }
        found
    }

    /// Polls for the next held SYN, as [`next`](Self::next) does.
    ///
    /// A held SYN waits on the shard that owns its flow (see [`crate::shard`]); the shards
    /// are asked in turn, from a rotating start so that none is favoured.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<io::Result<IncomingSyn>> {
        let n = self.stack.workers();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        for k in 0..n {
            let shard = first.wrapping_add(k) % n;
            let mut inner = self.stack.lock_shard(shard)?;
            inner.check_open()?;
            while let Some(handle) = inner.intercepted.pop_front() {
                // Skipped: SYNs that expired or were decided on while queued.
                if let Ok(info) = inner.endpoint.intercepted(handle) {
                    return Poll::Ready(Ok(IncomingSyn {
                        stack: self.stack.clone(),
                        shard,
                        handle,
                        info,
                        decided: false,
                    }));
                }
            }
            register_many(&mut inner.intercept_wakers, cx);
        }
        Poll::Pending
    }
}

impl fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interceptor").finish_non_exhaustive()
    }
}

/// A held SYN, not answered yet. Dropping it without a decision drops the SYN (the client
/// retransmits it, and may be intercepted again).
pub struct IncomingSyn {
    stack: Stack,
    /// The shard whose endpoint holds the SYN (and will hold the connection).
    shard: usize,
    handle: SynHandle,
    info: InterceptedSyn,
    decided: bool,
}

impl IncomingSyn {
    /// Where the client wants to go: the SYN's original destination.
    pub fn local_addr(&self) -> SocketAddr {
        self.info.local
    }

    /// The client.
    pub fn peer_addr(&self) -> SocketAddr {
        self.info.remote
    }

    /// The SYN's addresses and the options it offered.
    pub fn info(&self) -> &InterceptedSyn {
        &self.info
    }

    /// Completes the handshake and waits for the client's ACK. The stream's `local_addr()`
    /// is the original destination. `InvalidInput` (from the core's `InvalidHandle`) if the
    /// SYN expired before the decision; the handshake's own errors otherwise (an RST from
    /// the client, SYN-ACK retries exhausted).
    pub async fn accept(self) -> io::Result<TcpStream> {
        self.accept_with(&SocketOptions::default()).await
    }

    /// [`accept`](Self::accept) with a socket's options (buffer sizes, nodelay, keepalive),
    /// as a listener's would give its connections.
    pub async fn accept_with(mut self, options: &SocketOptions) -> io::Result<TcpStream> {
        let conn = {
            let mut inner = self.stack.lock_shard(self.shard)?;
            inner.check_open()?;
            let now = inner.now();
            self.decided = true;
            let h = inner
                .endpoint
                .accept_intercepted(now, self.handle, options)?;
            let conn = ConnRef::register(&self.stack, self.shard, h, false, &mut inner);
            inner.wake_driver();
            conn
        };
        // Dropped before the client's ACK (a relay's timeout, say), `conn` closes the
        // connection, which the core then resets at once (`Endpoint::close`).
        std::future::poll_fn(|cx| conn.poll_connected(cx)).await?;
        Ok(TcpStream::from_conn(conn))
    }

    /// Refuses the connection with an RST, as a closed port would: the client's connect fails
    /// with `ConnectionRefused`.
    pub fn refuse(mut self) -> io::Result<()> {
        self.decided = true;
        let mut inner = self.stack.lock_shard(self.shard)?;
        inner.endpoint.refuse_intercepted(self.handle)?;
        inner.wake_driver();
        Ok(())
    }

    /// Answers with ICMP destination unreachable from the original destination, with the
    /// code for `why`: a Linux client's connect fails with the error [`Unreachable`] names,
    /// as on the direct path. A proxy passes on what its own connect learnt
    /// ([`Unreachable::from_io_error`]). Within the stack's ICMP rate limit, as its
    /// other ICMP errors; `Ok(false)` when that (or a full queue) dropped the message, and
    /// the SYN with it.
    pub fn unreachable(mut self, why: Unreachable) -> io::Result<bool> {
        self.decided = true;
        let mut inner = self.stack.lock_shard(self.shard)?;
        let now = inner.now();
        let sent = inner
            .endpoint
            .unreachable_intercepted(now, self.handle, why)?;
        inner.wake_driver();
        Ok(sent)
    }
}

impl Drop for IncomingSyn {
    fn drop(&mut self) {
        if !self.decided {
            if let Some(mut inner) = self.stack.lock_for_drop(self.shard) {
                let _ = inner.endpoint.drop_intercepted(self.handle);
            }
        }
    }
}

impl fmt::Debug for IncomingSyn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingSyn")
            .field("local", &self.info.local)
            .field("remote", &self.info.remote)
            .finish_non_exhaustive()
    }
}
