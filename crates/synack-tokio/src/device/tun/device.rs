//! [`TunDevice`]: the TUN device users get by default, an [`OffloadTun`](super::OffloadTun)
//! where the kernel supports it, else a [`PlainTun`](super::PlainTun).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::task::{Context, Poll};

use synack_core::{RecvMeta, Transmit};

use super::config::TunConfig;
use super::file::Tun;
use super::{OffloadCounters, OffloadTun, PlainTun};
use crate::device::{Device, DeviceCapabilities};
#[cfg(feature = "netns")]
use crate::netns::NetNs;
use crate::shard::FlowSteering;

/// The TUN device users get by default: an [`OffloadTun`] whenever the kernel supports it,
/// else a [`PlainTun`], after a one-line warning saying why.
///
/// A device made with [`create`](Self::create) exists while this value (its file
/// descriptor) lives; dropping it deletes the interface. One that [`attach`](Self::attach)ed
/// to an interface made beforehand leaves it as it found it, as does one made
/// [`from_fd`](Self::from_fd) a file another program opened (whose interface goes when its
/// last file closes, unless it is persistent).
#[derive(Debug)]
pub struct TunDevice {
    inner: Inner,
}

/// One per stack, so the variants' sizes do not matter; boxing the larger would put a
/// pointer hop on every packet's path.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Inner {
    Offload(OffloadTun),
    Plain(PlainTun),
}

impl TunDevice {
    /// Creates the TUN device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up: with the kernel's offloads if
    /// [`TunConfig::offload`] asks for them and the kernel has them.
    ///
    /// An interface of that name must not exist already (another stack's, or one made with
    /// `ip tuntap`): that is `AlreadyExists`, rather than a device that would take a share
    /// of the other's packets. Errors name the interface and the step that failed.
    ///
    /// Must be called within a tokio runtime (the file descriptor is registered with its
    /// reactor). To create it inside a test namespace, use `create_in` (the `netns` feature).
    pub fn create(config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(config, OffloadTun::create, PlainTun::create)
    }

    /// Creates the TUN device inside `ns` (on a thread that has joined it) and returns it here.
    ///
    /// The device lives in `ns` for good; reading and writing it works from any namespace. Must
    /// be called within a tokio runtime, whose reactor the device is registered with.
    #[cfg(feature = "netns")]
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(
            config,
            |c| OffloadTun::create_in(ns, c),
            |c| PlainTun::create_in(ns, c),
        )
    }

    /// Attaches to a TUN interface that exists already, rather than creating one: the
    /// offloading device if [`TunConfig::offload`] asks for it and the kernel has it, else
    /// the plain one, as [`create`](Self::create) chooses.
    ///
    /// This is how a stack runs without privileges. An administrator makes the interface
    /// persistent and gives it to the user that runs the stack, with its addresses, routes
    /// and link state, once:
    ///
    /// ```text
    /// ip tuntap add dev tun0 mode tun user alice multi_queue
    /// ip addr add 198.18.0.1/24 dev tun0
    /// ip link set dev tun0 up
    /// ```
    ///
    /// The stack then needs no capability: attaching, the offloads, more queues and the
    /// device's own reads and writes are all allowed to the interface's owner (the kernel's
    /// `tun_not_capable`), given that the user may open `/dev/net/tun` (most distributions
    /// make it 0666). An interface made with neither `user` nor `group` is anyone's who
    /// may open that file. Only [`Stack::flows_steered`](crate::Stack::flows_steered) may be
    /// off, where the kernel lets no unprivileged program load the steering program; the
    /// shards then hand each other the packets of their flows.
    ///
    /// Of `config`, only [`name`](TunConfig::name), [`offload`](TunConfig::offload) and
    /// [`multi_queue`](TunConfig::multi_queue) apply: the interface keeps the addresses,
    /// MTU ([`mtu`](TunConfig::mtu) must be 0 or the interface's own) and queue length the
    /// administrator gave it. The stack starts with the interface's MTU and follows a later
    /// change (`ip link set dev tun0 mtu 1280`) within half a second, as on a TUN it creates
    /// ([`Device::link_mtu`], asked with every [`Device::check`]). On a multi-queue interface (`ip tuntap add ... multi_queue`) a stack opens
    /// a queue for each of its workers, as on a TUN it creates, unless `multi_queue` is
    /// `false`; a single-queue one runs a single worker. [`TUN_TX_QUEUE_LEN`](super::TUN_TX_QUEUE_LEN) is the queue
    /// length we recommend (`ip link set dev tun0 txqueuelen 2048`).
    ///
    /// It takes only an interface that is there for it, and creates none. Before a file
    /// joins it, the kernel is asked about it (route netlink, `RTM_GETLINK`, as `ip -d link`
    /// asks), and once joined asked again, before any setting of ours touches it. Errors,
    /// each naming the interface: `NotFound` if there is none of that name in the calling
    /// thread's network namespace; `InvalidInput` if it is not a TUN (a TAP, a veth) or its
    /// MTU is out of range; `PermissionDenied` if it belongs to another user or group (its
    /// owner named), or `/dev/net/tun` may not be opened; `AlreadyExists` if it is not
    /// persistent, that is another program made it and reads it; the kernel's EBUSY if
    /// another program reads it (its flows would be split between the two, and our
    /// settings would be its). A multi-queue interface says how many files read it only
    /// over route netlink (Linux 4.15): where the process may not use `AF_NETLINK`, one is
    /// refused, since whether it is free cannot be told.
    ///
    /// The interface outlives the device, which leaves it without the offloads and the
    /// steering program it gave it, and with the virtio-net header length it had: the
    /// kernel keeps all three for the interface's next reader.
    pub fn attach(config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(config, OffloadTun::attach, PlainTun::attach)
    }

    /// [`attach`](Self::attach) inside `ns`, on a thread that has joined it; the device
    /// comes back here.
    #[cfg(feature = "netns")]
    pub fn attach_in(ns: &NetNs, config: &TunConfig) -> io::Result<TunDevice> {
        Self::choose(
            config,
            |c| OffloadTun::attach_in(ns, c),
            |c| PlainTun::attach_in(ns, c),
        )
    }

    /// Takes a TUN file that another program opened and attached to its interface: a
    /// privileged helper that made the interface and handed the file over (inherited, or
    /// sent over a Unix socket), a service manager, or a platform's VPN service (Android's
    /// `VpnService.Builder.establish()` gives a descriptor of this kind). The process that
    /// runs the stack then needs no privilege at all, not even access to `/dev/net/tun`.
    ///
    /// The file decides the device: opened with `IFF_VNET_HDR`, it is the offloading
    /// device, which sets the interface's virtio-net header to its 10 bytes and turns on
    /// the checksum and TSO offloads (calls the file itself may make); without, the plain
    /// one, which turns the offloads off where the kernel lets it (another reader may have
    /// left them on). It must be a TUN (`IFF_TUN`) in raw-IP mode (`IFF_NO_PI`), attached
    /// to an interface of the calling thread's network namespace, where its name, MTU (88
    /// to 65535) and IPv4 broadcast address are read, once. Nothing else is set on the
    /// interface: its addresses, routes and link state are the giver's. The file becomes
    /// non-blocking and close-on-exec (flags its copies in the giver share).
    ///
    /// One file is one queue, and its stack runs one worker. The kernel spreads a
    /// multi-queue interface's flows over its enabled queues, so a file is refused while
    /// the interface has another, and one detached from it (`TUNSETQUEUE`), which gets
    /// nothing. Dropping the device closes the file, after turning the offloads off and
    /// putting back the header length it changed: the interface outlives it if it is
    /// persistent or another copy of the file is open.
    ///
    /// Errors: `InvalidInput` if the file is not a TUN, is attached to no interface, is a
    /// TAP, a detached queue, carries the packet information prefix, or its interface's
    /// MTU is out of range; the kernel's EBUSY if the interface has another enabled queue;
    /// `NotFound` if the interface is not in the calling thread's network namespace (none
    /// of its name, or one whose flags are not the file's). The file is closed on every
    /// error. Part of this only route netlink can tell (`RTM_GETLINK`, as `ip -d link`
    /// asks, Linux 4.15): where the process may not use it, a file whose `TUNGETIFF` leaves
    /// the prefix in doubt (it reports its own `IFF_NOFILTER` in the `IFF_NO_PI` bit) is
    /// taken to be in raw-IP mode, as VPN services make theirs, and the other queues go
    /// uncounted. Must be called within a tokio runtime.
    pub fn from_fd(fd: OwnedFd) -> io::Result<TunDevice> {
        let tun = Tun::adopt(fd, None)?;
        Ok(TunDevice {
            inner: if tun.vnet_hdr {
                Inner::Offload(OffloadTun::new(tun))
            } else {
                Inner::Plain(PlainTun { tun })
            },
        })
    }

    /// The offloading device if asked for and it opens, else the plain one. Any failure of
    /// the former falls back: a kernel without `IFF_VNET_HDR` or TSO for TUN refuses it with
    /// `EINVAL`; anything that is not about offloads (a bad name, no permission) fails the
    /// plain device too, and its error is the one returned, with no word of offloads (the
    /// one-line warning is logged only once the plain device stands).
    pub(super) fn choose(
        config: &TunConfig,
        offload: impl FnOnce(&TunConfig) -> io::Result<OffloadTun>,
        plain: impl FnOnce(&TunConfig) -> io::Result<PlainTun>,
    ) -> io::Result<TunDevice> {
        if config.offload {
            match offload(config) {
                Ok(device) => {
                    return Ok(TunDevice {
                        inner: Inner::Offload(device),
                    })
                }
                // A taken name or a missing privilege fails the plain TUN alike: say so, not
                // that offloads are missing.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AlreadyExists | io::ErrorKind::PermissionDenied
                    ) =>
                {
                    return Err(e)
                }
                // The warning waits for the plain device: an error that fails it too (a
                // name or address the kernel refuses, an MTU out of range) is the
                // configuration's, and is returned alone, not blamed on offloads.
                Err(e) => {
                    let device = plain(config)?;
                    tracing::warn!(
                        tun = %config.name,
                        "TUN offloads unavailable ({e}): using the plain TUN, one system call per packet"
                    );
                    return Ok(TunDevice {
                        inner: Inner::Plain(device),
                    });
                }
            }
        }
        plain(config).map(|device| TunDevice {
            inner: Inner::Plain(device),
        })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        match &self.inner {
            Inner::Offload(d) => d.name(),
            Inner::Plain(d) => d.name(),
        }
    }

    /// Whether this is the offloading device.
    pub fn is_offloaded(&self) -> bool {
        matches!(self.inner, Inner::Offload(_))
    }

    /// The offloading device's counters, if it is that one.
    pub fn offload_counters(&self) -> Option<OffloadCounters> {
        match &self.inner {
            Inner::Offload(d) => Some(d.counters()),
            Inner::Plain(_) => None,
        }
    }
}

impl Device for TunDevice {
    fn capabilities(&self) -> DeviceCapabilities {
        match &self.inner {
            Inner::Offload(d) => d.capabilities(),
            Inner::Plain(d) => d.capabilities(),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_recv(cx, buf),
            Inner::Plain(d) => d.poll_recv(cx, buf),
        }
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_send(cx, packet, transmit),
            Inner::Plain(d) => d.poll_send(cx, packet, transmit),
        }
    }

    fn poll_send_gather(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        payload: &[synack_core::Bytes],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_send_gather(cx, head, payload, transmit),
            Inner::Plain(d) => d.poll_send_gather(cx, head, payload, transmit),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Inner::Offload(d) => d.poll_flush(cx),
            Inner::Plain(d) => d.poll_flush(cx),
        }
    }

    fn check(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Offload(d) => d.check(),
            Inner::Plain(d) => d.check(),
        }
    }

    fn link_mtu(&mut self) -> Option<usize> {
        match &mut self.inner {
            Inner::Offload(d) => d.link_mtu(),
            Inner::Plain(d) => d.link_mtu(),
        }
    }

    fn max_queues(&self) -> usize {
        match &self.inner {
            Inner::Offload(d) => d.max_queues(),
            Inner::Plain(d) => d.max_queues(),
        }
    }

    fn broadcast_addresses(&self) -> Vec<Ipv4Addr> {
        match &self.inner {
            Inner::Offload(d) => d.broadcast_addresses(),
            Inner::Plain(d) => d.broadcast_addresses(),
        }
    }

    fn interface_name(&self) -> Option<String> {
        Some(self.name().to_owned())
    }

    fn open_queue(&mut self) -> io::Result<TunDevice> {
        let inner = match &mut self.inner {
            Inner::Offload(d) => Inner::Offload(d.open_queue()?),
            Inner::Plain(d) => Inner::Plain(d.open_queue()?),
        };
        Ok(TunDevice { inner })
    }

    fn steer_flows(&mut self, steering: &FlowSteering) -> io::Result<()> {
        match &mut self.inner {
            Inner::Offload(d) => d.steer_flows(steering),
            Inner::Plain(d) => d.steer_flows(steering),
        }
    }
}
