//! An in-memory link: two [`MemoryDevice`]s joined back to back, for tests and examples.
//!
//! Each direction is a bounded FIFO of whole IP packets. A full FIFO applies **backpressure**:
//! `poll_send` returns `Pending` until the peer reads a packet, and nothing is ever dropped.
//! We chose backpressure over drop-oldest so that a test sees loss only when it asks for it
//! (drop-oldest would make the 1 MB echo depend on retransmission timers), and so that a slow
//! reader slows the writer, which is what bounded buffers are for.
//!
//! Like Linux's veth, the link carries super-segments (segmentation offload, up to
//! [`DEFAULT_GSO_MAX_SIZE`] unless [`MemoryDevice::with_gso_max_size`] says otherwise) whole
//! to the peer's stack, which takes them as one large segment each (GRO, with the segment
//! size in [`RecvMeta::segment_size`]). Checksums are always complete on the link: the
//! device offers no checksum offload, so every packet is summed by its sender and verified
//! by its receiver, which keeps the checksum code under test.
//!
//! The one exception is an unplugged cable: once an end is dropped, packets sent towards it
//! vanish (`poll_send` succeeds) and its peer's `poll_recv` stays pending, so the surviving stack
//! sees a silent link and times out as it would on a real one.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use synack_core::{RecvMeta, Transmit};

use super::{Device, DeviceCapabilities};

/// Packets each direction holds before `poll_send` applies backpressure.
pub const DEFAULT_CAPACITY: usize = 1024;
/// The MTU of [`MemoryDevice::pair`]: Ethernet's.
pub const DEFAULT_MTU: usize = 1500;
/// The largest super-segment a [`MemoryDevice`] carries unless told otherwise: the largest IP
/// packet, as Linux's veth and loopback devices carry GSO packets.
pub const DEFAULT_GSO_MAX_SIZE: usize = 65535;

/// A packet on the link, with the segment size of a super-segment.
struct Packet {
    bytes: Box<[u8]>,
    segment_size: Option<usize>,
}

/// One direction of the link.
struct Queue {
    packets: VecDeque<Packet>,
    capacity: usize,
    /// The receiving end, parked in `poll_recv` on an empty queue.
    rx_waker: Option<Waker>,
    /// The sending end, parked in `poll_send` on a full queue.
    tx_waker: Option<Waker>,
    /// The receiving end still exists.
    receiver_alive: bool,
}

impl Queue {
    fn new(capacity: usize) -> Arc<Mutex<Queue>> {
        Arc::new(Mutex::new(Queue {
            packets: VecDeque::new(),
            capacity,
            rx_waker: None,
            tx_waker: None,
            receiver_alive: true,
        }))
    }
}

/// Locks a queue. Every critical section leaves the queue consistent, so a poisoned lock (a
/// panic elsewhere while it was held) is still safe to use.
fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// One end of an in-memory link; see the [module documentation](self).
pub struct MemoryDevice {
    mtu: usize,
    gso_max_size: usize,
    /// Packets this end sends.
    tx: Arc<Mutex<Queue>>,
    /// Packets this end receives.
    rx: Arc<Mutex<Queue>>,
}

impl MemoryDevice {
    /// Two ends of one link, [`DEFAULT_CAPACITY`] packets each way, MTU [`DEFAULT_MTU`].
    pub fn pair() -> (MemoryDevice, MemoryDevice) {
        MemoryDevice::pair_with(DEFAULT_CAPACITY, DEFAULT_MTU)
    }

    /// Two ends of one link holding `capacity` packets each way (at least one) with the given
    /// MTU.
    pub fn pair_with(capacity: usize, mtu: usize) -> (MemoryDevice, MemoryDevice) {
        let capacity = capacity.max(1);
        let a_to_b = Queue::new(capacity);
        let b_to_a = Queue::new(capacity);
        let a = MemoryDevice {
            mtu,
            gso_max_size: DEFAULT_GSO_MAX_SIZE,
            tx: Arc::clone(&a_to_b),
            rx: Arc::clone(&b_to_a),
        };
        let b = MemoryDevice {
            mtu,
            gso_max_size: DEFAULT_GSO_MAX_SIZE,
            tx: b_to_a,
            rx: a_to_b,
        };
        (a, b)
    }

    /// This end with segmentation offload up to `max` bytes per packet (see
    /// [`DeviceCapabilities::gso_max_size`]); 0 turns it off, so that every packet is one segment of at
    /// most the MTU. Super-segments cross the link whole and the peer's stack takes them
    /// whole, as Linux's veth carries GSO packets to a GRO receiver.
    pub fn with_gso_max_size(mut self, max: usize) -> MemoryDevice {
        self.gso_max_size = max.min(DEFAULT_GSO_MAX_SIZE);
        self
    }

    /// Whether the other end has been dropped (the cable is unplugged).
    pub fn peer_closed(&self) -> bool {
        !lock(&self.tx).receiver_alive
    }

    /// Packets queued towards this end that it has not received yet.
    pub fn pending(&self) -> usize {
        lock(&self.rx).packets.len()
    }
}

impl fmt::Debug for MemoryDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDevice")
            .field("mtu", &self.mtu)
            .field("gso_max_size", &self.gso_max_size)
            .field("pending", &self.pending())
            .field("peer_closed", &self.peer_closed())
            .finish()
    }
}

impl Device for MemoryDevice {
    /// The MTU and segmentation offload this end was made with; no checksum offload.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new(self.mtu).with_gso_max_size(self.gso_max_size)
    }

    /// Copies the oldest packet into `buf`. A packet longer than `buf` is truncated, as a
    /// datagram socket truncates; the driver's buffer is never shorter than the largest
    /// packet.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        let mut q = lock(&self.rx);
        match q.packets.pop_front() {
            Some(packet) => {
                let n = packet.bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&packet.bytes[..n]);
                if let Some(w) = q.tx_waker.take() {
                    w.wake();
                }
                Poll::Ready(Ok(RecvMeta {
                    segment_size: packet.segment_size,
                    ..RecvMeta::new(n)
                }))
            }
            None => {
                register(&mut q.rx_waker, cx);
                Poll::Pending
            }
        }
    }

    /// Queues the packet towards the peer; a super-segment crosses the link whole and the
    /// peer's stack takes it as one large segment.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        let (limit, what) = match transmit.segment_size {
            Some(_) => (self.gso_max_size.max(self.mtu), "gso_max_size"),
            None => (self.mtu, "MTU"),
        };
        if packet.len() > limit {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "packet of {} bytes exceeds the {what} {limit}",
                    packet.len()
                ),
            )));
        }
        if transmit.checksum_partial {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a partial checksum for a device without transmit checksum offload",
            )));
        }
        let mut q = lock(&self.tx);
        if !q.receiver_alive {
            // The cable is unplugged: the packet is lost on the wire.
            return Poll::Ready(Ok(()));
        }
        if q.packets.len() >= q.capacity {
            register(&mut q.tx_waker, cx);
            return Poll::Pending;
        }
        q.packets.push_back(Packet {
            bytes: packet.into(),
            segment_size: transmit.segment_size,
        });
        if let Some(w) = q.rx_waker.take() {
            w.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for MemoryDevice {
    fn drop(&mut self) {
        let mut q = lock(&self.rx);
        q.receiver_alive = false;
        q.packets.clear();
        // A sender parked on our full queue can now "send" into the void.
        if let Some(w) = q.tx_waker.take() {
            w.wake();
        }
    }
}
