//! Packet devices: where the stack's IP packets come from and go to.
//!
//! The driver task owns exactly one [`Device`] and polls it from a single task, so a device
//! needs no internal locking of its own; it only has to be `Send` to move into that task.
//!
//! The contract is explicit, after smoltcp's `DeviceCapabilities` and quinn-udp's
//! `RecvMeta`/`Transmit`: a device states once what it can do ([`DeviceCapabilities`]), says
//! per received packet what it knows about it ([`RecvMeta`]), takes each outgoing packet with
//! the core's description of it ([`Transmit`]), and is told when a burst of sends is over
//! ([`Device::poll_flush`]). The stack configures the core from the capabilities (see
//! [`Stack::new`](crate::Stack::new)), so the core never builds a packet the device cannot
//! take.

use std::io;
use std::net::Ipv4Addr;
use std::task::{Context, Poll};

use crate::shard::FlowSteering;
use synack_core::{Bytes, RecvMeta, Transmit};

pub mod memory;
pub mod pcap;
pub mod tun;

pub use memory::MemoryDevice;
pub use pcap::PcapDevice;
pub use tun::{
    OffloadCounters, OffloadStats, OffloadTun, PlainTun, TunConfig, TunDevice, OFFLOAD_TUN_MTU,
    PLAIN_TUN_MTU, TUN_TX_QUEUE_LEN,
};

/// What a device can do, asked once when the stack starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceCapabilities {
    /// The largest IP packet the device carries (one segment).
    pub mtu: usize,
    /// The largest super-segment it takes, in bytes of IP packet (segmentation offload,
    /// Linux's `gso_max_size`): a TCP packet holding several segments under one header, cut
    /// where [`Transmit::segment_size`] says, or handed whole to a receiver that takes it so
    /// (GRO). 0: one segment per packet.
    pub gso_max_size: usize,
    /// Receive checksum offload: [`RecvMeta::checksum_verified`] may be set (Linux's
    /// `CHECKSUM_UNNECESSARY`).
    pub rx_checksum: bool,
    /// Transmit checksum offload: the device completes a TCP checksum that
    /// [`Transmit::checksum_partial`] leaves partial (Linux's `CHECKSUM_PARTIAL`).
    pub tx_checksum_partial: bool,
    /// Gathered transmit: the device writes a packet from its head and the payload's pieces
    /// where the stack's send buffer holds them ([`Device::poll_send_gather`], a `writev`),
    /// so the driver takes super-segments with
    /// [`Endpoint::poll_transmit_gather`](synack_core::Endpoint::poll_transmit_gather) and
    /// saves copying their payload out of the send buffer.
    pub tx_gather: bool,
}

impl DeviceCapabilities {
    /// A device carrying packets of up to `mtu` bytes, with no offload at all.
    pub fn new(mtu: usize) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu,
            gso_max_size: 0,
            rx_checksum: false,
            tx_checksum_partial: false,
            tx_gather: false,
        }
    }

    /// With segmentation offload up to `max` bytes per packet (0: none).
    pub fn with_gso_max_size(mut self, max: usize) -> DeviceCapabilities {
        self.gso_max_size = max;
        self
    }

    /// With (or without) receive checksum offload.
    pub fn with_rx_checksum(mut self, on: bool) -> DeviceCapabilities {
        self.rx_checksum = on;
        self
    }

    /// With (or without) transmit checksum offload.
    pub fn with_tx_checksum_partial(mut self, on: bool) -> DeviceCapabilities {
        self.tx_checksum_partial = on;
        self
    }

    /// With (or without) gathered transmit ([`DeviceCapabilities::tx_gather`]).
    pub fn with_tx_gather(mut self, on: bool) -> DeviceCapabilities {
        self.tx_gather = on;
        self
    }
}

/// A source and sink of raw IP packets (no link-layer header).
pub trait Device: Send + 'static {
    /// What the device can do. Asked once, when the stack starts; the answer must not change.
    fn capabilities(&self) -> DeviceCapabilities;

    /// Receive one IP packet (or, with segmentation offload, one GRO super-segment) into the
    /// start of `buf`, which the driver makes large enough for any IP packet. Pending until
    /// one arrives. The [`RecvMeta`] gives its length and what the device knows about it.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>>;

    /// Queue one packet or super-segment as the core described it in `transmit`: a
    /// [`Transmit::segment_size`] only if [`DeviceCapabilities::gso_max_size`] allows it, a
    /// [`Transmit::checksum_partial`] only if [`DeviceCapabilities::tx_checksum_partial`] is
    /// set. Pending when the device is full (the driver keeps the packet and comes back when
    /// woken). An error means the packet is lost; TCP recovers from that.
    ///
    /// A device may hold packets to send them together; it must then send them at the next
    /// [`poll_flush`](Device::poll_flush) at the latest.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>>;

    /// [`poll_send`](Device::poll_send) for a packet given in pieces: `head`, then the
    /// `payload` handles in order, [`Transmit::len`] bytes in all. Called, if
    /// [`DeviceCapabilities::tx_gather`] is set, for a super-segment whose checksum is left
    /// partial ([`Transmit::is_gathered`]): `head` is its IP and TCP headers
    /// ([`Transmit::head_len`] bytes), the payload still in the stack's send buffer. The
    /// default puts the packet together and hands it to `poll_send`, which a device that
    /// writes with `writev` does better by writing the pieces where they lie.
    fn poll_send_gather(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        payload: &[Bytes],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        let (packet, whole) = assemble(head, payload, transmit);
        self.poll_send(cx, &packet, &whole)
    }

    /// Push out whatever the device holds back to batch it. The driver calls it after every
    /// burst of sends, so that nothing waits for the next round. The default: nothing held.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// Whether the device still works. The driver asks about once a second, because a
    /// device can vanish without a single read or write failing: a TUN whose interface was
    /// deleted gets no readiness event at all. An error stops the stack, and every pending
    /// and later operation reports it as the cause. The default: always working.
    fn check(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The link's MTU as it is now, if it may change while the stack runs (an
    /// administrator's `ip link set dev tun0 mtu 1280`, a VPN client fitting its tunnel).
    /// The driver asks with every [`check`](Device::check), and the stack follows it, as
    /// Linux's sockets follow their device's: handshakes from then on advertise the MSS it
    /// allows, open connections send with it from their next segment (never above the
    /// peer's MSS), and UDP sizes its datagrams and fragments by it. A [`Config::mtu`]
    /// chosen below it stays the ceiling. It may exceed
    /// [`DeviceCapabilities::mtu`], the MTU when the stack started: the driver's buffers
    /// hold any IP packet. The default: `None`, a link whose MTU does not change.
    ///
    /// [`Config::mtu`]: synack_core::Config::mtu
    fn link_mtu(&mut self) -> Option<usize> {
        None
    }

    /// How many queues the device can have at most: a stack runs one shard (worker) per
    /// queue, each reading and writing its own (see [`crate::shard`]). The default: one.
    fn max_queues(&self) -> usize {
        1
    }

    /// Opens one more queue of the same link: a device of its own for another shard's
    /// driver, with the same capabilities, carrying a share of the link's packets (a
    /// multi-queue TUN's next file). Called by the stack before it starts, at most
    /// [`max_queues`](Device::max_queues) − 1 times. The default: `Unsupported`.
    fn open_queue(&mut self) -> io::Result<Self>
    where
        Self: Sized,
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the device has a single queue",
        ))
    }

    /// The link's directed broadcast addresses (`198.18.0.255` on a `198.18.0.0/24`
    /// link): the stack gives them to the core ([`Config::broadcast_addresses`]), which
    /// answers no packet from one and takes none to one, as Linux treats its broadcast
    /// routes. Asked once, when the stack starts. The default: none (a link without
    /// IPv4 prefixes, or whose prefixes the device does not know).
    ///
    /// [`Config::broadcast_addresses`]: synack_core::Config::broadcast_addresses
    fn broadcast_addresses(&self) -> Vec<Ipv4Addr> {
        Vec::new()
    }

    /// The name of the link's interface (`synack0`), if it has one: the name a socket's
    /// `bind_device` (SO_BINDTODEVICE) may give. Asked once, when the stack starts. The
    /// default: none (a link no interface stands for, such as a memory pair).
    fn interface_name(&self) -> Option<String> {
        None
    }

    /// Makes the device deliver every packet of a TCP flow on the queue that `steering`
    /// names for it ([`FlowSteering::queue_of`]), and what is not TCP on queue 0; called
    /// once, on the first queue, after [`open_queue`](Device::open_queue), when the stack
    /// runs more than one shard. A device that delivers packets on other queues still
    /// works: the stack hands them to the right shard, at the cost of a copy and a
    /// cross-thread wake-up each. The default: `Unsupported`, and the stack does that.
    fn steer_flows(&mut self, steering: &FlowSteering) -> io::Result<()> {
        let _ = steering;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the device cannot steer flows",
        ))
    }
}

/// A packet given in pieces ([`Device::poll_send_gather`]) put together, with its
/// description as a whole packet's.
pub(crate) fn assemble(head: &[u8], payload: &[Bytes], transmit: &Transmit) -> (Vec<u8>, Transmit) {
    let mut packet = Vec::with_capacity(transmit.len);
    packet.extend_from_slice(head);
    for piece in payload {
        packet.extend_from_slice(piece);
    }
    let whole = Transmit {
        len: packet.len(),
        head_len: packet.len(),
        ..*transmit
    };
    (packet, whole)
}

/// Refuses what a device without offloads cannot send: a super-segment, or a packet whose
/// checksum is left for the device to finish. The stack never configures the core to build
/// either for such a device; this guards a caller using the device directly.
pub(crate) fn plain_packet(transmit: &Transmit) -> io::Result<()> {
    if let Some(size) = transmit.segment_size {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "a super-segment of {} bytes (segments of {size}) for a device without \
                 segmentation offload",
                transmit.len
            ),
        ));
    }
    if transmit.checksum_partial {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a partial checksum for a device without transmit checksum offload",
        ));
    }
    Ok(())
}
