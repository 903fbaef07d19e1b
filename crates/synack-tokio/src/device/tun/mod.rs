//! Linux TUN devices: the kernel routes IP packets to them, and the stack answers through them.
//!
//! [`TunDevice`] is the device users get by default. It is one of two, which share one way of
//! creating the interface:
//! - [`OffloadTun`], with the virtio-net header (`vnet.rs`) and the kernel's checksum and
//!   TCP segmentation offloads: one system call moves up to 64 KiB of TCP. The default,
//!   whenever the kernel supports it.
//! - [`PlainTun`]: one `read(2)` or `write(2)` per IP packet. The fallback, with a one-line
//!   warning saying why, and what [`TunConfig::offload`] `false` (the examples'
//!   `--no-offload`) asks for.
//!
//! **One way to make a TUN.** Both open `/dev/net/tun` themselves (`sys.rs`, `IFF_TUN |
//! IFF_NO_PI`, plus `IFF_VNET_HDR` for the offload device) and configure the link with the
//! classic interface ioctls. We dropped tokio-tun and did not take tun-rs: the offload device
//! needs every frame raw, virtio-net header included, read straight into the driver's buffer
//! (a kernel super-packet goes to the stack whole) and written with `writev` from the
//! stack's own buffer (a TSO header in front of the core's super-segment, no copy). tun-rs's
//! offload path instead cuts and coalesces in user space over batches of its own buffers,
//! which would duplicate `synack_core::wire::gso` and copy every payload, and tokio-tun has no
//! offload at all. The cost is a few ioctls, all in `sys.rs`, the only module of the crate
//! allowed `unsafe`.
//!
//! **Multi-queue.** Both devices are opened with `IFF_MULTI_QUEUE` unless
//! [`TunConfig::multi_queue`] is off: then [`Device::open_queue`](super::Device::open_queue) opens `/dev/net/tun` again
//! with the same name and flags, which attaches one more queue (file) to the interface, and a
//! stack runs one shard per queue (see [`crate::shard`]). The queue is opened in the network
//! namespace the interface was created in (the creating thread's, remembered as an open
//! `/proc/thread-self/ns/net`), from a short-lived thread that joins it when the caller is
//! elsewhere: in any other namespace the same name would create a new interface. The kernel
//! chooses the queue of each packet it sends us: a flow it has seen us write on goes to that
//! queue (its flow table, `tun_flow_update`), any other by its flow hash.
//!
//! **Attaching.** [`TunDevice::attach`] takes an interface that exists already instead of
//! creating one: a persistent TUN an administrator made for the user that runs the stack
//! (`ip tuntap add dev NAME mode tun user USER [multi_queue]`), with its addresses, routes
//! and MTU. Every call it makes is allowed to the interface's owner, so the stack runs
//! without privileges. It refuses what would take another program's packets: a TAP, an
//! interface that is not persistent (a running program's own), one that a file reads
//! already (the kernel counts them for a multi-queue interface: `rtnl.rs` asks it, before
//! joining and after; a single-queue one refuses a second file itself). Since the kernel
//! keeps a persistent interface's offloads and steering program from one reader to the
//! next, the plain device turns the offloads off when it attaches, and an attached device
//! takes off both when it is dropped.
//!
//! **A file from elsewhere.** [`TunDevice::from_fd`] takes a TUN file another program opened
//! and attached (a privileged helper, Android's `VpnService`): the process running the stack
//! then opens nothing, and the file's own flags (`TUNGETIFF`) say its interface and framing.
//!
//! In raw-IP mode every read is one whole IP packet and every write must be one. The
//! kernel-side addresses given in [`TunConfig::host_addr`] (IPv4) and
//! [`TunConfig::host_addr6`] (IPv6), either or both, put connected routes on the device:
//! every other address of those subnets, such as the stack's own `198.18.0.2` or
//! `2001:2::2`, is reached through the TUN. IPv6 is set with the same ioctl (`SIOCSIFADDR`,
//! on an `AF_INET6` socket), after turning duplicate address detection off on the device so
//! that the address works at once. The kernel also gives an IPv6 device a link-local address
//! and sends router solicitations and MLD reports from it; those are not for the stack,
//! which drops and counts them (`Stats::drop_not_for_us`).

mod attach;
mod config;
mod device;
mod file;
mod offload;
mod plain;
mod rtnl;
mod steering;
mod sys;
mod vnet;

pub use config::{
    Ipv4Cidr, Ipv6Cidr, ParseCidrError, TunConfig, OFFLOAD_TUN_MTU, PLAIN_TUN_MTU, TUN_TX_QUEUE_LEN,
};
pub use device::TunDevice;
use file::Tun;
pub use offload::{OffloadCounters, OffloadStats, OffloadTun};
pub use plain::PlainTun;

#[cfg(test)]
mod tests {
    use std::io;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::file::*;
    use super::*;
    use crate::device::{Device, DeviceCapabilities};
    #[cfg(feature = "netns")]
    use crate::netns::NetNs;

    /// `writev` writes every piece of a frame, up to `MAX_IOV` of them, and refuses more
    /// rather than cutting the frame short (it once took only the first three).
    #[test]
    fn writev_writes_every_piece_or_refuses() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let data: Vec<u8> = (0..sys::MAX_IOV * 3).map(|i| i as u8).collect();
        let parts: Vec<&[u8]> = data.chunks(3).collect();
        assert_eq!(parts.len(), sys::MAX_IOV);
        assert_eq!(sys::writev(a.as_raw_fd(), &parts).unwrap(), data.len());
        let mut got = vec![0; data.len()];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, data);
        let more: Vec<&[u8]> = data.chunks(2).collect();
        let e = sys::writev(a.as_raw_fd(), &more).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

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

    /// A prefix too long, built by hand past `new` (the fields are public), is a host
    /// route's, not a wrapped shift's (a /0 in release: every address routed in); a TUN
    /// refuses it before it is made.
    #[tokio::test]
    async fn a_hand_built_prefix_too_long_is_refused() {
        let v4 = Ipv4Cidr {
            addr: Ipv4Addr::new(198, 18, 0, 1),
            prefix_len: 33,
        };
        assert_eq!(v4.netmask(), Ipv4Addr::BROADCAST);
        assert!(!v4.contains(Ipv4Addr::new(8, 8, 8, 8)));
        let v6 = Ipv6Cidr {
            addr: "2001:2::1".parse().unwrap(),
            prefix_len: 200,
        };
        assert!(v6.contains("2001:2::1".parse().unwrap()));
        assert!(!v6.contains("2001:2::2".parse().unwrap()));
        for config in [
            TunConfig {
                host_addr: Some(v4),
                ..TunConfig::default()
            },
            TunConfig {
                host_addr6: Some(v6),
                ..TunConfig::default()
            },
        ] {
            let e = Tun::open(&config, false).err().expect("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        }
    }

    #[test]
    fn default_config_is_the_documented_one() {
        let c = TunConfig::default();
        assert_eq!(c.name, "synack0");
        assert_eq!(c.host_addr.unwrap().to_string(), "198.18.0.1/24");
        assert_eq!(c.host_addr6, None);
        assert_eq!(c.mtu, 0);
        assert!(c.offload);
        assert!(c.multi_queue);
    }

    #[test]
    fn ipv6_cidr_parses_and_prints() {
        let c: Ipv6Cidr = "2001:2::1/64".parse().unwrap();
        assert_eq!(c.addr, "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(c.prefix_len, 64);
        assert_eq!(c.to_string(), "2001:2::1/64");
        assert!(c.contains("2001:2::2".parse().unwrap()));
        assert!(c.contains("2001:2::ffff:1:2:3".parse().unwrap()));
        assert!(!c.contains("2001:2:0:1::2".parse().unwrap()));
        let all: Ipv6Cidr = "::/0".parse().unwrap();
        assert!(all.contains("fe80::1".parse().unwrap()));
        let host: Ipv6Cidr = "2001:2::1/128".parse().unwrap();
        assert!(host.contains("2001:2::1".parse().unwrap()));
        assert!(!host.contains("2001:2::2".parse().unwrap()));
        for bad in [
            "2001:2::1",
            "2001:2::1/129",
            "198.18.0.1/24",
            "2001:2::g/64",
            "2001:2::1/-1",
            "/64",
            "",
        ] {
            let err = bad.parse::<Ipv6Cidr>().unwrap_err();
            assert!(err.to_string().contains("IPv6"), "{bad}: {err}");
        }
        // And the other way round: an IPv6 CIDR is no IPv4 one.
        let err = "2001:2::1/64".parse::<Ipv4Cidr>().unwrap_err();
        assert!(err.to_string().contains("IPv4"), "{err}");
    }

    /// A device with no address at all, or an IPv6 one on a link too small for IPv6, is
    /// refused before anything is created.
    #[tokio::test]
    async fn configs_that_cannot_work_are_refused() {
        let none = TunConfig {
            host_addr: None,
            ..TunConfig::default()
        };
        let err = Tun::open(&none, false).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("address"), "{err}");
        let small = TunConfig {
            host_addr6: Some("2001:2::1/64".parse().unwrap()),
            mtu: 1279,
            ..TunConfig::default()
        };
        let err = Tun::open(&small, false).err().expect("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("1280"), "{err}");
        for mtu in [68, 87, 65536] {
            let bad = TunConfig {
                mtu,
                ..TunConfig::default()
            };
            let err = Tun::open(&bad, false).err().expect("refused");
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("88 and 65535"), "{mtu}: {err}");
        }
    }

    /// A device with an IPv6 address is handed over only once the kernel can receive on
    /// that address: its local route is in place the moment the device is (before, the
    /// route came later, from an asynchronous work item, and about one first SYN in thirty
    /// written at once was dropped as not for a local address). Checked on the thread that
    /// created the device, at once, as a program that starts its stack and connects would.
    #[cfg(feature = "netns")]
    #[test]
    fn an_ipv6_device_is_ready_when_created() {
        if !crate::netns::require_tun("an_ipv6_device_is_ready_when_created") {
            return;
        }
        let ns = NetNs::new("synack-v6ready").unwrap();
        let missing = ns
            .run_in(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let _entered = rt.enter();
                let mut missing = Vec::new();
                for i in 0..60 {
                    let config = TunConfig {
                        name: format!("sk-v6ready{i}"),
                        host_addr6: Some("2001:2::1/64".parse().unwrap()),
                        ..TunConfig::default()
                    };
                    let tun = Tun::open(&config, i % 2 == 0).unwrap();
                    let routes =
                        std::fs::read_to_string("/proc/thread-self/net/ipv6_route").unwrap();
                    if !routes
                        .lines()
                        .any(|l| l.starts_with("20010002000000000000000000000001 80 "))
                    {
                        missing.push(i);
                    }
                    drop(tun);
                }
                missing
            })
            .unwrap();
        assert!(
            missing.is_empty(),
            "no local route for 2001:2::1 yet: {missing:?}"
        );
    }

    /// A failed creation says which step failed: the fallback's warning on a kernel without
    /// TUN offloads names TUNSETOFFLOAD, not the creation of the interface.
    #[test]
    fn creation_errors_name_the_call_that_failed() {
        let busy = creating_error("sk0", io::Error::from_raw_os_error(libc::EBUSY));
        assert_eq!(busy.kind(), io::ErrorKind::AlreadyExists);
        let setiff = creating_error("sk0", io::Error::from_raw_os_error(libc::EPERM));
        assert!(setiff.to_string().contains("TUNSETIFF"), "{setiff}");
        let offload = sys::refused(
            io::Error::from_raw_os_error(libc::EINVAL),
            "TUNSETOFFLOAD (checksum, TSO4, TSO6)",
        );
        let offload = creating_error("sk0", offload).to_string();
        assert!(
            offload.contains("TUNSETOFFLOAD") && !offload.contains("TUNSETIFF"),
            "{offload}"
        );
        assert!(offload.contains("os error 22"), "{offload}");
    }

    /// Where the offloading device cannot be had, the default device falls back to the plain
    /// one rather than failing; with `offload` false it does not even try.
    #[cfg(feature = "netns")]
    #[tokio::test]
    async fn the_default_device_falls_back_to_the_plain_tun() {
        if !crate::netns::require_tun("the_default_device_falls_back_to_the_plain_tun") {
            return;
        }
        // What the stack logs, to count its warnings.
        #[derive(Clone, Default)]
        struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl io::Write for Log {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let warnings = || {
            let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
            text.matches("offloads unavailable").count()
        };
        let ns = NetNs::new("synack-fallback").unwrap();
        // Each device gets a name of its own: a dropped TUN can outlive its file for a moment
        // (a child forked by a parallel test holds it until it execs), and a second device
        // of the same name would then find it busy.
        let config = TunConfig {
            name: "sk-fallback0".into(),
            ..TunConfig::default()
        };
        let refused = || io::Error::from_raw_os_error(libc::EINVAL);
        let tun = TunDevice::choose(&config, |_| Err(refused()), |c| PlainTun::create_in(&ns, c))
            .unwrap();
        assert!(!tun.is_offloaded());
        assert_eq!(warnings(), 1, "one line says why");
        // The plain device's own MTU, not the offloading one's.
        assert_eq!(tun.capabilities(), DeviceCapabilities::new(PLAIN_TUN_MTU));
        drop(tun);

        let off = TunConfig {
            name: "sk-fallback1".into(),
            offload: false,
            ..TunConfig::default()
        };
        let tried = std::cell::Cell::new(false);
        let tun = TunDevice::choose(
            &off,
            |_| {
                tried.set(true);
                Err(refused())
            },
            |c| PlainTun::create_in(&ns, c),
        )
        .unwrap();
        assert!(!tried.get() && !tun.is_offloaded());
        drop(tun);

        // Nothing about offloads (here: a name too long for any TUN, or one the kernel
        // refuses) fails both, and the plain device's error is the one reported, with no
        // word of offloads.
        for name in ["a-name-far-too-long-for-linux", "a b"] {
            let bad = TunConfig {
                name: name.into(),
                ..TunConfig::default()
            };
            let err = TunDevice::create_in(&ns, &bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{name}: {err}");
        }
        assert_eq!(warnings(), 1, "a configuration's error blamed on offloads");
    }
}
