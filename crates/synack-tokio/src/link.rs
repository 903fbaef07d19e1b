//! A shard's device, with the packet it has yet to take: the one way out of the stack.
//!
//! It lives in the shard's [`Inner`](crate::stack::Inner), behind the shard's lock, so that
//! two kinds of task can hand the core's packets to the device, never both at once:
//! - the driver (`driver.rs`), which also reads from it, and sends what packets and timers
//!   made due;
//! - a task whose command made a packet due (a write, a shutdown, a close, a connect, a UDP
//!   send): it sends it itself, under the lock it already holds
//!   ([`Inner::push`](crate::stack::Inner::push)), as Linux's `tcp_sendmsg` transmits from
//!   the caller's context, rather than waking the driver to do it. A request/response
//!   connection's response then costs a round of the driver less (BENCHMARKS.md, fortieth
//!   session).
//!
//! Which task sends never reorders packets: the core hands them out in order, and the one
//! the device refused stays here ([`Link::transmit`]) until whichever task comes next.

use std::io;
use std::task::{Context, Poll};

use synack_core::{Endpoint, Instant, Transmit};
use tracing::{debug, trace};

use crate::device::Device;

/// A device and the core's packet it has not taken yet.
pub(crate) struct Link {
    device: Box<dyn Device>,
    /// Where the core writes each packet it hands out.
    buf: Box<[u8]>,
    /// A packet in `buf` that the device has not taken yet (it was full).
    pending: Option<Transmit>,
}

/// How a burst of sends ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Burst {
    /// The core had nothing more to send, and the device took everything.
    Drained,
    /// The burst's bound was reached with more perhaps due: the driver must come back.
    Limit,
    /// The device is full (a packet, or what it held to batch, is still waiting): it wakes
    /// the task whose context it was given once it has room.
    Blocked,
}

impl Link {
    pub(crate) fn new(device: Box<dyn Device>) -> Link {
        // Room for any IP packet the core may build: at least the MTU, and a super-segment of
        // up to the largest IP packet (an IPv6 header and 65535 bytes of payload).
        let len = device.capabilities().mtu.max(40 + usize::from(u16::MAX));
        Link {
            device,
            buf: vec![0; len].into_boxed_slice(),
            pending: None,
        }
    }

    pub(crate) fn device(&mut self) -> &mut dyn Device {
        &mut *self.device
    }

    /// Hands the core's packets to the device, the one it refused last time first, at most
    /// `limit` of them; then tells the device the burst is over ([`Device::poll_flush`]), so
    /// that what it holds to batch goes out now. A packet the device rejects is lost on the
    /// wire, and TCP recovers from that.
    pub(crate) fn transmit(
        &mut self,
        endpoint: &mut Endpoint,
        now: Instant,
        cx: &mut Context<'_>,
        limit: usize,
    ) -> Burst {
        let mut sent = 0;
        let burst = loop {
            if let Some(t) = self.pending {
                let len = t.len;
                let packet = &self.buf[..len.min(self.buf.len())];
                match self.device.poll_send(cx, packet, &t) {
                    Poll::Ready(Ok(())) => trace!(len, "packet out"),
                    Poll::Ready(Err(e)) => debug!(error = %e, len, "device dropped a packet"),
                    Poll::Pending => break Burst::Blocked,
                }
                self.pending = None;
                sent += 1;
            }
            if sent >= limit {
                break Burst::Limit;
            }
            match endpoint.poll_transmit(now, &mut self.buf) {
                Some(t) => self.pending = Some(t),
                None => break Burst::Drained,
            }
        };
        // Every burst, even one that sent nothing, so that a flush the device could not
        // finish is retried.
        match self.flush(cx) {
            Poll::Pending if burst == Burst::Drained => Burst::Blocked,
            _ => burst,
        }
    }

    /// Ends a burst of sends. A device that cannot write now wakes the task whose context
    /// it was given when it can; an error is a lost packet, as in `transmit`.
    fn flush(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.device.poll_flush(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                debug!(error = %e, "device dropped what it held");
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Whether the device still works ([`Device::check`]).
    pub(crate) fn check(&mut self) -> io::Result<()> {
        self.device.check()
    }
}
