//! What a TUN device is made with: [`TunConfig`], the address-and-prefix types it takes, and
//! the default queue length and MTUs.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 address with a prefix length, as in `198.18.0.1/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// The number of leading one bits in the netmask (0..=32).
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// `addr/prefix_len`; `None` if the prefix is longer than 32 bits.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Ipv4Cidr> {
        (prefix_len <= 32).then_some(Ipv4Cidr { addr, prefix_len })
    }

    /// The netmask, e.g. `255.255.255.0` for `/24` (a prefix over 32, built by hand, counts
    /// as 32).
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32u32.saturating_sub(u32::from(self.prefix_len)))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }

    /// The subnet's directed broadcast address (RFC 919, RFC 922: all host bits set), which
    /// Linux routes as broadcast for a prefix shorter than 31 bits (`fib_add_ifaddr`); a
    /// /31 (RFC 3021) or /32 has none.
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        (self.prefix_len < 31)
            .then(|| Ipv4Addr::from(u32::from(self.addr) | !u32::from(self.netmask())))
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// An IPv6 address with a prefix length, as in `2001:2::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    /// The address.
    pub addr: Ipv6Addr,
    /// The number of leading bits that name the subnet (0..=128).
    pub prefix_len: u8,
}

impl Ipv6Cidr {
    /// `addr/prefix_len`; `None` if the prefix is longer than 128 bits.
    pub fn new(addr: Ipv6Addr, prefix_len: u8) -> Option<Ipv6Cidr> {
        (prefix_len <= 128).then_some(Ipv6Cidr { addr, prefix_len })
    }

    /// The subnet mask as a number, e.g. the top 64 bits set for `/64` (a prefix over 128,
    /// built by hand, counts as 128).
    fn mask(&self) -> u128 {
        u128::MAX
            .checked_shl(128u32.saturating_sub(u32::from(self.prefix_len)))
            .unwrap_or(0)
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv6Addr) -> bool {
        let mask = self.mask();
        u128::from(ip) & mask == u128::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not an IPv4 or IPv6 CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCidrError {
    input: String,
    ipv6: bool,
}

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (family, example) = if self.ipv6 {
            ("IPv6", "2001:2::1/64")
        } else {
            ("IPv4", "198.18.0.1/24")
        };
        write!(
            f,
            "invalid {family} CIDR {:?} (expected e.g. {example})",
            self.input
        )
    }
}

impl std::error::Error for ParseCidrError {}

/// Splits `addr/len` and parses both halves; `None` if either does not parse.
pub(super) fn parse_cidr<A: FromStr>(s: &str) -> Option<(A, u8)> {
    let (addr, len) = s.split_once('/')?;
    Some((addr.parse().ok()?, len.parse().ok()?))
}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s)
            .and_then(|(addr, len)| Ipv4Cidr::new(addr, len))
            .ok_or_else(|| ParseCidrError {
                input: s.to_owned(),
                ipv6: false,
            })
    }
}

impl FromStr for Ipv6Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_cidr(s)
            .and_then(|(addr, len)| Ipv6Cidr::new(addr, len))
            .ok_or_else(|| ParseCidrError {
                input: s.to_owned(),
                ipv6: true,
            })
    }
}

/// How to make a [`TunDevice`](super::TunDevice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// The interface name (at most 15 bytes, Linux's IFNAMSIZ less the NUL).
    pub name: String,
    /// The kernel's own IPv4 address on the device, and with it the IPv4 subnet routed to
    /// the device; `None` for a device without IPv4 (then `host_addr6` must be set).
    pub host_addr: Option<Ipv4Cidr>,
    /// The kernel's own IPv6 address on the device, and with it the IPv6 subnet routed to
    /// the device (`None`, the default, for none). Either family alone, or both: a
    /// dual-stack device. The address is usable at once: duplicate address detection is
    /// off on the device (a point-to-point link has no one to collide with).
    pub host_addr6: Option<Ipv6Cidr>,
    /// The device MTU: the largest IP packet either side sends through it, 88
    /// ([`MIN_MTU`](synack_core::MIN_MTU): below it a Linux peer's TCP arrives in fragments)
    /// to 65535, and at least 1280 with an IPv6 address. 0
    /// (the default) takes the kind of device's own: [`OFFLOAD_TUN_MTU`] for the offloading
    /// device and [`PLAIN_TUN_MTU`] for the plain one (see there for why they differ), also
    /// when [`TunDevice::create`](super::TunDevice::create) falls back to the plain one.
    /// The stack follows a later change of the interface's MTU (`ip link set dev NAME mtu
    /// N`; see [`Device::link_mtu`](crate::device::Device::link_mtu)).
    pub mtu: usize,
    /// Whether [`TunDevice::create`](super::TunDevice::create) tries the offloading device first (default `true`);
    /// `false` makes it a [`PlainTun`](super::PlainTun) at once.
    pub offload: bool,
    /// Whether the interface is opened with `IFF_MULTI_QUEUE` (default `true`), so that a
    /// stack can run one worker per queue ([`StackBuilder::workers`](crate::StackBuilder::workers)).
    /// With `false` the device has a single queue and its stack a single worker.
    pub multi_queue: bool,
    /// How many packets the kernel holds for the stack on each queue of the device
    /// (`txqueuelen`), 1 to `i32::MAX`, or 0 for the kernel's own (500). Default
    /// [`TUN_TX_QUEUE_LEN`]; see there why it is larger than the kernel's.
    pub tx_queue_len: usize,
}

impl Default for TunConfig {
    /// `synack0`, `198.18.0.1/24` (RFC 2544's benchmarking range, never routed on the
    /// Internet) and no IPv6, the MTU chosen by the kind of device.
    fn default() -> Self {
        TunConfig {
            name: "synack0".into(),
            host_addr: Some(Ipv4Cidr {
                addr: Ipv4Addr::new(198, 18, 0, 1),
                prefix_len: 24,
            }),
            host_addr6: None,
            mtu: 0,
            offload: true,
            multi_queue: true,
            tx_queue_len: TUN_TX_QUEUE_LEN,
        }
    }
}

/// How many packets the kernel holds for the stack on each queue of a TUN unless
/// [`TunConfig::tx_queue_len`] says otherwise: 2048, where Linux gives a TUN 500.
///
/// The kernel puts each packet for the stack on the ring of the queue that reads it, and
/// drops it when that ring is full, whatever it is: no back-pressure reaches its sender.
/// Between two turns of the driver, hundreds of connections' ACKs and window updates (a
/// client's every read of what we sent makes one) arrive together with their SYNs, requests,
/// FINs and RSTs. With 500 parallel 10 MB downloads from `http_server`, 500 a queue dropped
/// 13 to 16 thousand packets a run, 1024 one to two thousand, and 2048 none or a few hundred
/// (BENCHMARKS.md, thirtieth session; the runs took 33 to 49 s, as much with the machine's
/// load as with the queue). A driver that keeps up holds the ring near empty, so its size
/// adds no delay in the steady state, and TCP senders fill it only as far as the windows the
/// stack advertised. (Linux's own receive backlog, `netdev_max_backlog`, is 1000 a CPU, but
/// the kernel runs it in softirq, not behind a user-space scheduler.)
pub const TUN_TX_QUEUE_LEN: usize = 2048;

/// The MTU of an [`OffloadTun`](super::OffloadTun) unless [`TunConfig::mtu`] says otherwise: Ethernet's. The
/// kernel sees an ordinary link (MSS 1460, as towards any Ethernet peer), and segmentation
/// offload still moves up to 64 KiB a system call each way.
pub const OFFLOAD_TUN_MTU: usize = 1500;

/// The MTU of a [`PlainTun`](super::PlainTun) unless [`TunConfig::mtu`] says otherwise: the largest IPv4
/// packet. A plain TUN carries one packet a system call and has no segmentation offload, so
/// the MTU alone decides how many bytes each read and write moves; at 1500 bytes the two
/// ends' system calls and the kernel's per-packet receive path bound a connection at about
/// what smoltcp reaches on the same device. The link is inside this host and synack ends
/// every TCP connection on it, as Linux's loopback (MTU 65536) ends its own, so no path
/// beyond it is sized by this MTU. Choose 1500 to have the TUN look like an Ethernet link
/// (for example to emulate an Internet path on it with netem).
pub const PLAIN_TUN_MTU: usize = 65535;
