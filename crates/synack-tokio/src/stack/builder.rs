//! [`StackBuilder`], the way a [`Stack`] is configured step by step, and [`StackError`],
//! why one could not be started.

use std::fmt;
use std::io;
use std::net::IpAddr;

use synack_core::{Config, InterceptConfig};

use super::Stack;
use crate::device::Device;

/// Why a [`Stack`] could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StackError {
    /// The configuration's `gso_max_size` ([`Config::gso_max_size`]) asks for super-segments
    /// larger than the device takes
    /// ([`DeviceCapabilities::gso_max_size`](crate::DeviceCapabilities::gso_max_size)); the
    /// core would build packets the device must refuse. Leave it unset to take the device's, or choose
    /// at most `device` (0 turns segmentation offload off).
    GsoMaxSize {
        /// What the configuration asked for.
        requested: usize,
        /// The most the device takes (0: no segmentation offload at all).
        device: usize,
    },
    /// The configuration's MTU ([`Config::mtu`]) is larger than the device's
    /// ([`DeviceCapabilities::mtu`](crate::DeviceCapabilities::mtu)): the core would advertise
    /// an MSS, and build packets, that the link cannot carry. Leave it unset to take the
    /// device's, or choose at most `device`.
    Mtu {
        /// What the configuration asked for.
        requested: usize,
        /// The device's MTU.
        device: usize,
    },
    /// A setting no connection could work with ([`Config::check`](synack_core::Config::check)):
    /// a buffer below 1024 bytes, a retransmission timeout of zero, keepalive timing Linux
    /// refuses, an MTU (chosen, or the device's) below
    /// [`MIN_MTU`](synack_core::MIN_MTU), or below
    /// [`IPV6_MIN_MTU`](synack_core::IPV6_MIN_MTU) with an IPv6 address.
    Config(synack_core::InvalidConfig),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::GsoMaxSize { requested, device } => write!(
                f,
                "Config::gso_max_size is {requested} bytes, but the device takes super-segments \
                 of at most {device} bytes"
            ),
            StackError::Mtu { requested, device } => write!(
                f,
                "Config::mtu is {requested} bytes, but the device's MTU is {device} bytes"
            ),
            StackError::Config(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StackError {}

impl From<StackError> for io::Error {
    /// An [`io::ErrorKind::InvalidInput`] carrying the [`StackError`] (see
    /// [`io::Error::get_ref`]), for code that works in `io::Result`.
    fn from(e: StackError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Builds a [`Stack`]: its configuration, addresses and workers, then the device it runs on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use synack_tokio::{device::MemoryDevice, Config, Stack};
///
/// let (device, _peer) = MemoryDevice::pair();
/// let mut config = Config::default();
/// config.nodelay(true);
/// let stack = Stack::builder()
///     .config(config)
///     .address("198.18.0.2".parse().unwrap())
///     .build(device)
///     .unwrap();
/// # drop(stack); }
/// ```
#[derive(Debug, Default)]
pub struct StackBuilder {
    config: Config,
    addresses: Vec<IpAddr>,
    workers: Option<usize>,
    /// Set by `steer_flows(false)`.
    no_steering: bool,
}

impl StackBuilder {
    /// The core's configuration (`Config::default()` if not given).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Transparent mode: the stack takes connections to any address routed into its device,
    /// handed out by [`Stack::intercept`], and datagrams, handed out by
    /// [`Stack::intercept_udp`] (sets [`Config::intercept`]).
    pub fn intercept(mut self, intercept: InterceptConfig) -> Self {
        self.config.intercept(Some(intercept));
        self
    }

    /// One more address the stack owns and answers on.
    pub fn address(mut self, address: IpAddr) -> Self {
        self.addresses.push(address);
        self
    }

    /// More addresses the stack owns.
    pub fn addresses(mut self, addresses: impl IntoIterator<Item = IpAddr>) -> Self {
        self.addresses.extend(addresses);
        self
    }

    /// How many shards the stack runs: each its own endpoint, driver task and device queue,
    /// owning the flows a secret hash gives it (see [`crate::shard`]). The default is the
    /// machine's parallelism ([`std::thread::available_parallelism`]). Either is clamped to
    /// what the device supports ([`Device::max_queues`]): one for the in-memory and pcap
    /// devices and for a TUN opened without multi-queue, 256 for a multi-queue TUN (Linux's
    /// `MAX_TAP_QUEUES`), and to how many queues the device could actually open; a number
    /// asked for here and clamped is logged as a warning. 0 counts as 1.
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Whether to ask the device to deliver each flow on its owner's queue
    /// ([`Device::steer_flows`]; see [`Stack::flows_steered`]). On by default. Off, a
    /// multi-queue TUN keeps the kernel's own queue choice (learned per flow from the queue
    /// we write on), and packets that arrive on another shard's queue are handed over: for a
    /// TUN whose steering program someone else sets, say.
    pub fn steer_flows(mut self, on: bool) -> Self {
        self.no_steering = !on;
        self
    }

    /// Starts the stack on `device`: spawns its driver tasks on the current tokio runtime, as
    /// [`Stack::new`] does, and fails as it does when the configuration asks for more than
    /// the device can do.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn build<D: Device>(self, device: D) -> Result<Stack, StackError> {
        Stack::start(
            self.config,
            device,
            &self.addresses,
            self.workers,
            !self.no_steering,
        )
    }
}

/// The workers a stack runs when not told: one per core the machine offers.
pub(super) fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
