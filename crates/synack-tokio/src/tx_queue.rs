//! The driver's transmit queue: packets the core made under the shard's lock, written to the
//! device after the lock is released.
//!
//! A write to a TUN is where the kernel takes the packet in, and for a packet to one of its
//! own sockets it runs that socket's receive there and then: tens of microseconds for a
//! 64 KiB super-segment. Held through those writes, the shard's lock kept every task of the
//! shard out for the whole burst, so that on a multi-thread runtime an application writing
//! or reading on another thread waited for the driver instead of working beside it. The
//! driver now fills this queue under the lock and writes it without.
//!
//! The queue is bounded in packets (the driver's batch) and in bytes: whole packets and the
//! heads of gathered ones are written back to back into one buffer, and filling stops once
//! the room left could not hold the largest packet. Gathered payloads are handles on the send
//! buffer's own bytes, held until the queue is written.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use synack_core::{Bytes, Endpoint, Instant, Transmit};
use tracing::{debug, trace};

use crate::device::Device;

/// Whole packets of this many bytes at most are queued beside the largest one: with 64 KiB
/// packets (a plain TUN at its default MTU) four a fill; with 1,500-byte ones or gathered
/// heads the packet bound comes first.
const BYTES: usize = 192 * 1024;

/// One queued packet: its bytes in the buffer from `at` (all of them, or its head), and its
/// payload's pieces in `payload[pieces]` if gathered.
#[derive(Clone, Copy)]
struct Queued {
    transmit: Transmit,
    at: usize,
    pieces: (usize, usize),
}

pub(crate) struct TxQueue {
    /// Packets (or heads) back to back, from 0 to `used`.
    buf: Box<[u8]>,
    used: usize,
    /// The room `poll_transmit` needs for one packet: the largest the core may make.
    packet_room: usize,
    packets: VecDeque<Queued>,
    /// The gathered packets' payload pieces, in order.
    payload: Vec<Bytes>,
    /// `poll_transmit_gather`'s own list, moved onto `payload` after each packet.
    scratch: Vec<Bytes>,
    /// The device writes packets from pieces (`DeviceCapabilities::tx_gather`).
    gather: bool,
}

impl TxQueue {
    /// A queue for packets of up to `packet_room` bytes, gathered if the device can.
    pub(crate) fn new(packet_room: usize, gather: bool) -> TxQueue {
        TxQueue {
            buf: vec![0; BYTES + packet_room].into_boxed_slice(),
            used: 0,
            packet_room,
            packets: VecDeque::new(),
            payload: Vec::new(),
            scratch: Vec::new(),
            gather,
        }
    }

    /// Whether every queued packet has been handed to the device.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Whether the buffer has no room for another packet of the largest size.
    pub(crate) fn is_full(&self) -> bool {
        self.buf.len() - self.used < self.packet_room
    }

    /// Takes up to `max` packets from the core, as far as the buffer holds them; returns how
    /// many. Call with the shard's lock held.
    pub(crate) fn fill(&mut self, endpoint: &mut Endpoint, now: Instant, max: usize) -> usize {
        let mut taken = 0;
        while taken < max && !self.is_full() {
            let room = &mut self.buf[self.used..];
            let transmit = if self.gather {
                endpoint.poll_transmit_gather(now, room, &mut self.scratch)
            } else {
                endpoint.poll_transmit(now, room)
            };
            let Some(transmit) = transmit else { break };
            let first = self.payload.len();
            self.payload.append(&mut self.scratch);
            self.packets.push_back(Queued {
                transmit,
                at: self.used,
                pieces: (first, self.payload.len()),
            });
            self.used += transmit.head_len.min(transmit.len);
            taken += 1;
        }
        taken
    }

    /// Hands queued packets to the device in order, without the lock; returns how many.
    /// Pending once the device is full: it wakes the task when it has room, and the rest
    /// waits here, ahead of anything the core makes later.
    pub(crate) fn poll_write<D: Device>(
        &mut self,
        device: &mut D,
        cx: &mut Context<'_>,
    ) -> Poll<usize> {
        let mut written = 0;
        while let Some(&q) = self.packets.front() {
            let t = q.transmit;
            let r = if t.is_gathered() {
                let head = &self.buf[q.at..q.at + t.head_len];
                device.poll_send_gather(cx, head, &self.payload[q.pieces.0..q.pieces.1], &t)
            } else {
                device.poll_send(cx, &self.buf[q.at..q.at + t.len], &t)
            };
            match r {
                Poll::Ready(Ok(())) => trace!(len = t.len, "packet out"),
                // A packet the device rejects is lost on the wire; TCP recovers from it.
                Poll::Ready(Err(e)) => debug!(error = %e, len = t.len, "device dropped a packet"),
                Poll::Pending => return Poll::Pending,
            }
            self.packets.pop_front();
            written += 1;
        }
        // All written: the payload's bytes are the send buffer's to free, and the buffer
        // starts over.
        self.payload.clear();
        self.used = 0;
        Poll::Ready(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::DeviceCapabilities;
    use std::io;
    use synack_core::RecvMeta;

    /// A device that takes `room` packets and then is full, recording what it took.
    struct Recorder {
        room: usize,
        taken: Vec<Vec<u8>>,
    }

    impl Device for Recorder {
        fn capabilities(&self) -> DeviceCapabilities {
            DeviceCapabilities::new(1500)
        }
        fn poll_recv(&mut self, _: &mut Context<'_>, _: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
            Poll::Pending
        }
        fn poll_send(
            &mut self,
            _: &mut Context<'_>,
            packet: &[u8],
            _: &Transmit,
        ) -> Poll<io::Result<()>> {
            if self.taken.len() == self.room {
                return Poll::Pending;
            }
            self.taken.push(packet.to_vec());
            Poll::Ready(Ok(()))
        }
    }

    fn queued(q: &mut TxQueue, packets: &[&[u8]]) {
        for p in packets {
            q.buf[q.used..q.used + p.len()].copy_from_slice(p);
            q.packets.push_back(Queued {
                transmit: Transmit::new(p.len()),
                at: q.used,
                pieces: (0, 0),
            });
            q.used += p.len();
        }
    }

    #[test]
    fn fills_up_to_the_packet_bound_and_as_far_as_the_buffer_holds() {
        let local = std::net::IpAddr::from([198, 18, 0, 1]);
        let mut ep = Endpoint::new(synack_core::Config::default(), &[local]);
        let now = Instant::ZERO;
        for port in 1..=5 {
            let remote = std::net::SocketAddr::from(([198, 18, 0, 2], port));
            ep.connect(now, remote).unwrap();
        }
        // Room for 100-byte packets: the buffer holds every SYN, the bound stops at 2.
        let mut q = TxQueue::new(100, false);
        assert_eq!(q.fill(&mut ep, now, 2), 2);
        assert_eq!(q.packets.len(), 2);
        // A packet room as large as the whole buffer: one packet, then no room.
        let mut big = TxQueue::new(BYTES * 4, false);
        big.used = BYTES;
        assert_eq!(big.fill(&mut ep, now, 10), 1);
        assert_eq!(big.fill(&mut ep, now, 10), 0, "no room for another");
        // The rest, in order after what was queued before.
        assert_eq!(q.fill(&mut ep, now, 10), 2);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut dev = Recorder {
            room: 10,
            taken: Vec::new(),
        };
        assert_eq!(q.poll_write(&mut dev, &mut cx), Poll::Ready(4));
        let ports: Vec<u16> = dev
            .taken
            .iter()
            .map(|p| u16::from_be_bytes([p[22], p[23]]))
            .collect();
        assert_eq!(
            ports,
            [1, 2, 4, 5],
            "each SYN whole, to its own port, in order"
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_device_keeps_the_rest_in_order() {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut q = TxQueue::new(100, false);
        queued(&mut q, &[b"one", b"two", b"three"]);
        let mut dev = Recorder {
            room: 2,
            taken: Vec::new(),
        };
        assert!(q.poll_write(&mut dev, &mut cx).is_pending());
        assert_eq!(dev.taken, [b"one".to_vec(), b"two".to_vec()]);
        assert!(!q.is_empty());
        dev.room = 3;
        assert_eq!(q.poll_write(&mut dev, &mut cx), Poll::Ready(1));
        assert_eq!(dev.taken[2], b"three");
        assert!(q.is_empty());
        assert_eq!(q.used, 0, "the buffer starts over once written");
    }
}
