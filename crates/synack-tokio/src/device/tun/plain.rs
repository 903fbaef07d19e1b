//! [`PlainTun`]: the TUN device without offloads, one system call per IP packet.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

use synack_core::{RecvMeta, Transmit};

use super::config::TunConfig;
use super::file::Tun;
use crate::device::{Device, DeviceCapabilities};
#[cfg(feature = "netns")]
use crate::netns::NetNs;
use crate::shard::FlowSteering;

/// A TUN device carrying raw IP packets between the kernel and the stack, one system call per
/// packet: what [`TunDevice`](super::TunDevice) falls back to where the kernel has no TUN offloads, or when
/// told not to use them; see [`OffloadTun`](super::OffloadTun) for the one that moves 64 KiB at a time.
///
/// A created device exists while this value (its file descriptor) lives; dropping it deletes
/// the interface (an attached one stays: [`TunDevice::attach`](super::TunDevice::attach); for one from a file, see
/// [`TunDevice::from_fd`](super::TunDevice::from_fd)).
pub struct PlainTun {
    pub(super) tun: Tun,
}

impl fmt::Debug for PlainTun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainTun")
            .field("name", &self.tun.name)
            .field("mtu", &self.tun.mtu)
            .finish_non_exhaustive()
    }
}

impl PlainTun {
    /// Creates the TUN device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up.
    ///
    /// Must be called within a tokio runtime (the file descriptor is registered with its
    /// reactor). To create it inside a test namespace, use `create_in` (the `netns` feature).
    pub fn create(config: &TunConfig) -> io::Result<PlainTun> {
        Tun::open(config, false).map(|tun| PlainTun { tun })
    }

    /// Creates the TUN device inside `ns` (on a thread that has joined it) and returns it here.
    ///
    /// The device lives in `ns` for good; reading and writing it works from any namespace. Must
    /// be called within a tokio runtime, whose reactor the device is registered with.
    #[cfg(feature = "netns")]
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<PlainTun> {
        Tun::in_netns(ns, config, false, Tun::open).map(|tun| PlainTun { tun })
    }

    /// Attaches to a TUN interface that exists already; see [`TunDevice::attach`](super::TunDevice::attach).
    pub fn attach(config: &TunConfig) -> io::Result<PlainTun> {
        Tun::attach(config, false).map(|tun| PlainTun { tun })
    }

    /// [`attach`](Self::attach) inside `ns`, on a thread that has joined it.
    #[cfg(feature = "netns")]
    pub fn attach_in(ns: &NetNs, config: &TunConfig) -> io::Result<PlainTun> {
        Tun::in_netns(ns, config, false, Tun::attach).map(|tun| PlainTun { tun })
    }

    /// Takes a TUN file another program opened without `IFF_VNET_HDR` (`InvalidInput` if
    /// it has it); see [`TunDevice::from_fd`](super::TunDevice::from_fd).
    pub fn from_fd(fd: OwnedFd) -> io::Result<PlainTun> {
        Tun::adopt(fd, Some(false)).map(|tun| PlainTun { tun })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.tun.name
    }
}

impl Device for PlainTun {
    /// No offloads: the kernel hands over and takes only whole, fully summed packets.
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new(self.tun.mtu)
    }

    fn check(&mut self) -> io::Result<()> {
        self.tun.check()
    }

    /// The interface's MTU now (`ip link set dev NAME mtu N`).
    fn link_mtu(&mut self) -> Option<usize> {
        self.tun.link_mtu()
    }

    fn max_queues(&self) -> usize {
        self.tun.max_queues()
    }

    /// The broadcast address of [`TunConfig::host_addr`]'s prefix.
    fn broadcast_addresses(&self) -> Vec<Ipv4Addr> {
        self.tun.broadcast.into_iter().collect()
    }

    fn interface_name(&self) -> Option<String> {
        Some(self.tun.name.clone())
    }

    /// One more queue of the interface (see [`TunConfig::multi_queue`]).
    fn open_queue(&mut self) -> io::Result<PlainTun> {
        Ok(PlainTun {
            tun: self.tun.open_queue()?,
        })
    }

    fn steer_flows(&mut self, steering: &FlowSteering) -> io::Result<()> {
        self.tun.steer_flows(steering)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        self.tun.poll_read(cx, buf).map_ok(RecvMeta::new)
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = crate::device::plain_packet(transmit) {
            return Poll::Ready(Err(e));
        }
        self.tun.poll_write(cx, &[packet])
    }
}
