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
}
