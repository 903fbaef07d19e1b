//! Packet devices: where the stack's IP packets come from and go to.
//!
//! The driver task owns exactly one [`Device`] and polls it from a single task, so a device
//! needs no internal locking of its own; it only has to be `Send` to move into that task.

use std::io;
use std::task::{Context, Poll};

pub mod memory;
pub mod offload;
pub mod pcap;
pub mod tun;

pub use memory::MemoryDevice;
pub use offload::{OffloadCounters, OffloadStats, OffloadTun};
pub use pcap::PcapDevice;
pub use tun::{TunConfig, TunDevice};

/// A source and sink of raw IP packets (no link-layer header).
pub trait Device: Send + 'static {
    /// The largest IP packet the device carries.
    fn mtu(&self) -> usize;
    /// Receive one IP packet into `buf`. Pending until one arrives.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Whether the packet that the last successful `poll_recv` returned has a TCP checksum
    /// the device already verified or computed itself (receive checksum offload, Linux
    /// `CHECKSUM_UNNECESSARY`), so that the stack need not verify it again. A device that
    /// cannot tell keeps the default, `false`.
    fn checksum_verified(&self) -> bool {
        false
    }
    /// Queue one IP packet for sending.
    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>>;
    /// Whether the device still works. The driver asks about once a second, because a
    /// device can vanish without a single read or write failing: a TUN whose interface was
    /// deleted gets no readiness event at all. An error stops the stack, and every pending
    /// and later operation reports it as the cause. The default: always working.
    fn check(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// The largest super-segment the device takes, in bytes of IP packet (segmentation
    /// offload, Linux's `gso_max_size`), or 0, the default, for one segment per packet. The
    /// stack sets [`Config::gso_max_size`](synack_core::Config::gso_max_size) from it.
    fn gso_max_size(&self) -> usize {
        0
    }
    /// Queue a super-segment: a TCP packet whose payload is to be cut into segments of
    /// `segment_size` bytes, as [`Transmit::segment_size`](synack_core::Transmit) describes,
    /// or handed whole to a receiver that takes it so (GRO). Called only on a device whose
    /// `gso_max_size` is not 0; the default refuses it.
    fn poll_send_segments(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        segment_size: usize,
    ) -> Poll<io::Result<()>> {
        let _ = (cx, segment_size);
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "a super-segment of {} bytes for a device without segmentation offload",
                packet.len()
            ),
        )))
    }
}
