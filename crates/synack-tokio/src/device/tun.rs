//! A Linux TUN device: the kernel routes IP packets to it, and the stack answers through it.
//!
//! The device is made with tokio-tun in raw-IP mode (`IFF_TUN | IFF_NO_PI`: no 4-byte packet
//! information header), so every read is one whole IP packet and every write must be one.
//! The kernel-side address given in [`TunConfig::host_addr`] puts a connected route on the
//! device: every other address of that subnet, such as the stack's own `198.18.0.2`, is
//! reached through the TUN.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tun::Tun;

use super::Device;
#[cfg(feature = "netns")]
use crate::netns::NetNs;

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

    /// The netmask, e.g. `255.255.255.0` for `/24`.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Whether `ip` lies in this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask());
        u32::from(ip) & mask == u32::from(self.addr) & mask
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Why a string is not an IPv4 CIDR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseCidrError(String);

impl fmt::Display for ParseCidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid IPv4 CIDR {:?} (expected e.g. 198.18.0.1/24)",
            self.0
        )
    }
}

impl std::error::Error for ParseCidrError {}

impl FromStr for Ipv4Cidr {
    type Err = ParseCidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseCidrError(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        let len: u8 = len.parse().map_err(|_| err())?;
        Ipv4Cidr::new(addr, len).ok_or_else(err)
    }
}

/// How to make a [`TunDevice`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunConfig {
    /// The interface name (at most 15 bytes, Linux's IFNAMSIZ less the NUL).
    pub name: String,
    /// The kernel's own address on the device, and with it the subnet routed to the device.
    pub host_addr: Ipv4Cidr,
    /// The device MTU: the largest IP packet either side sends through it.
    pub mtu: usize,
}

impl Default for TunConfig {
    /// `synack0`, `198.18.0.1/24` (RFC 2544's benchmarking range, never routed on the
    /// Internet), MTU 1500.
    fn default() -> Self {
        TunConfig {
            name: "synack0".into(),
            host_addr: Ipv4Cidr {
                addr: Ipv4Addr::new(198, 18, 0, 1),
                prefix_len: 24,
            },
            mtu: 1500,
        }
    }
}

/// A TUN device carrying raw IP packets between the kernel and the stack.
///
/// The device exists while this value (its file descriptor) lives; dropping it deletes the
/// interface.
pub struct TunDevice {
    tun: Tun,
    name: String,
    mtu: usize,
}

impl fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .finish_non_exhaustive()
    }
}

impl TunDevice {
    /// Creates the TUN device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up.
    ///
    /// Must be called within a tokio runtime (the file descriptor is registered with its
    /// reactor). To create it inside a test namespace, use `create_in` (the `netns` feature).
    pub fn create(config: &TunConfig) -> io::Result<TunDevice> {
        if config.name.is_empty() || config.name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN name {:?} must be 1 to 15 bytes", config.name),
            ));
        }
        let mtu = i32::try_from(config.mtu)
            .ok()
            .filter(|&m| m >= 68)
            .ok_or_else(|| {
                // RFC 791: every IPv4 link carries at least 68-byte packets.
                io::Error::new(io::ErrorKind::InvalidInput, "TUN MTU must be at least 68")
            })?;
        let mut tuns = Tun::builder()
            .name(&config.name)
            .mtu(mtu)
            .address(config.host_addr.addr)
            .netmask(config.host_addr.netmask())
            .up()
            .build()
            .map_err(|e| match e {
                tokio_tun::Error::IoError(e) => e,
                other => io::Error::other(format!("creating TUN {}: {other}", config.name)),
            })?;
        let tun = tuns
            .pop()
            .ok_or_else(|| io::Error::other("tokio-tun returned no queue"))?;
        tracing::debug!(name = %config.name, host_addr = %config.host_addr, mtu, "TUN up");
        Ok(TunDevice {
            tun,
            name: config.name.clone(),
            mtu: config.mtu,
        })
    }

    /// Creates the TUN device inside `ns` (on a thread that has joined it) and returns it here.
    ///
    /// The device lives in `ns` for good; reading and writing it works from any namespace. Must
    /// be called within a tokio runtime, whose reactor the device is registered with.
    #[cfg(feature = "netns")]
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<TunDevice> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("TunDevice::create_in: {e}")))?;
        let config = config.clone();
        ns.run_in(move || {
            let _guard = runtime.enter();
            TunDevice::create(&config)
        })?
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Device for TunDevice {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn check(&mut self) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        super::offload::sys::tun_attached(self.tun.as_raw_fd())
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut read = ReadBuf::new(buf);
        match Pin::new(&mut self.tun).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(read.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        // A TUN's queue almost always has room: write at once, and wait for readiness only
        // when the kernel says it is full. The direct write also works while the runtime is
        // shutting down and its reactor is gone, which is when the driver's last RSTs leave.
        let written = match self.tun.try_send(packet) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Pin::new(&mut self.tun).poll_write(cx, packet)
            }
            done => Poll::Ready(done),
        };
        match written {
            // A TUN write takes the whole packet or fails; a short count would be a kernel bug,
            // reported rather than silently sending half a packet.
            Poll::Ready(Ok(n)) if n == packet.len() => Poll::Ready(Ok(())),
            Poll::Ready(Ok(n)) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("TUN took {n} of {} bytes", packet.len()),
            ))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_prints() {
        let c: Ipv4Cidr = "198.18.0.1/24".parse().unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(c.prefix_len, 24);
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.to_string(), "198.18.0.1/24");
        assert!(c.contains(Ipv4Addr::new(198, 18, 0, 2)));
        assert!(!c.contains(Ipv4Addr::new(198, 18, 1, 2)));
    }

    #[test]
    fn cidr_edges() {
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.netmask(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        let host: Ipv4Cidr = "198.18.0.1/32".parse().unwrap();
        assert_eq!(host.netmask(), Ipv4Addr::BROADCAST);
        for bad in [
            "198.18.0.1",
            "198.18.0.1/33",
            "198.18.0/24",
            "x/24",
            "1.2.3.4/-1",
            "",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn default_config_is_the_documented_one() {
        let c = TunConfig::default();
        assert_eq!(c.name, "synack0");
        assert_eq!(c.host_addr.to_string(), "198.18.0.1/24");
        assert_eq!(c.mtu, 1500);
    }
}
