//! Packet devices: where the stack's IP packets come from and go to.
//!
//! MINIMAL VERSION on the `devices` branch, to compile the TUN and pcap devices; the runtime
//! branch owns this file and its version wins at merge.

use std::io;
use std::task::{Context, Poll};

pub mod pcap;
pub mod tun;

pub use pcap::PcapDevice;
pub use tun::{TunConfig, TunDevice};

/// A source and sink of raw IP packets (no link-layer header).
pub trait Device: Send + 'static {
    /// The largest IP packet the device carries.
    fn mtu(&self) -> usize;
    /// Receive one IP packet into `buf`. Pending until one arrives.
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>>;
    /// Queue one IP packet for sending.
    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>>;
}
