//! The TUN and pcap devices against the real kernel, each test in its own network namespace.
//!
//! These tests use the devices directly (no stack): the packets are parsed and built by hand
//! here, so that a bug in synack's own wire code cannot hide a bug in the device.

use std::future::poll_fn;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use synack_core::Transmit;
use synack_tokio::device::{
    Device, DeviceCapabilities, PcapDevice, TunConfig, TunDevice, OFFLOAD_TUN_MTU, PLAIN_TUN_MTU,
    TUN_TX_QUEUE_LEN,
};
use synack_tokio::netns::{require_tun, NetNs};

mod kernel_support;
use kernel_support::ScratchDir;

const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const STACK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// The core's description of a plain packet of `len` bytes.
fn plain(len: usize) -> Transmit {
    Transmit::new(len)
}

/// The Internet checksum (RFC 1071): one's complement of the one's complement sum.
fn inet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = match chunk {
            [a, b] => u16::from_be_bytes([*a, *b]),
            [a] => u16::from_be_bytes([*a, 0]),
            _ => 0,
        };
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo request from `src` to `dst`, if `packet` is one.
fn echo_request(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let version = packet.first()? >> 4;
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if version != 4 || ihl < 20 || packet.len() < ihl + 8 {
        return None;
    }
    let protocol = packet[9];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let icmp_type = packet[ihl];
    (protocol == 1 && icmp_type == 8).then_some((src, dst))
}

/// Turns an echo request into its reply: swap the addresses, type 0, fix both checksums.
fn echo_reply(request: &[u8]) -> Vec<u8> {
    let mut p = request.to_vec();
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let (src, dst) = (p[12..16].to_vec(), p[16..20].to_vec());
    p[12..16].copy_from_slice(&dst);
    p[16..20].copy_from_slice(&src);
    p[8] = 64; // TTL
    p[10..12].fill(0);
    let ip_sum = inet_checksum(&p[..ihl]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    p[ihl] = 0; // echo reply (RFC 792)
    p[ihl + 2..ihl + 4].fill(0);
    let icmp_sum = inet_checksum(&p[ihl..]);
    p[ihl + 2..ihl + 4].copy_from_slice(&icmp_sum.to_be_bytes());
    p
}

/// Reads packets (at most 50, for at most 10 s) until one is an echo request.
async fn read_echo_request(dev: &mut impl Device) -> Vec<u8> {
    let mut buf = vec![0u8; dev.capabilities().mtu];
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        for _ in 0..50 {
            let n = poll_fn(|cx| dev.poll_recv(cx, &mut buf))
                .await
                .expect("TUN read")
                .len;
            if echo_request(&buf[..n]).is_some() {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
    .await;
    found
        .expect("no echo request within 10 s")
        .expect("50 packets and none was the echo request")
}

/// A counter from /sys/class/net/DEV/statistics inside the namespace.
fn link_counter(ns: &NetNs, dev: &str, counter: &str) -> u64 {
    let out = ns
        .command("cat")
        .arg(format!("/sys/class/net/{dev}/statistics/{counter}"))
        .output()
        .expect("cat");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no {counter} for {dev}: {out:?}"))
}

/// `ip -o OBJECT show dev DEV` in `ns`: the kernel's one-line view of the device.
fn ip_show(ns: &NetNs, object: &str, dev: &str) -> String {
    let out = ns
        .command("ip")
        .args(["-o", object, "show", "dev", dev])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[tokio::test]
async fn kernel_ping_reaches_the_tun_and_our_reply_reaches_ping() {
    if !require_tun("kernel_ping_reaches_the_tun_and_our_reply_reaches_ping") {
        return;
    }
    let ns = NetNs::new("synack-tun").unwrap();
    let config = TunConfig::default();
    let mut tun = TunDevice::create_in(&ns, &config).unwrap();
    // The default device takes the kernel's offloads (this kernel has them).
    assert!(tun.is_offloaded());
    let caps = tun.capabilities();
    assert_eq!(caps.mtu, OFFLOAD_TUN_MTU);
    assert!(caps.gso_max_size >= 1500 && caps.rx_checksum && caps.tx_checksum_partial);
    let plain_tun = TunDevice::create_in(
        &ns,
        &TunConfig {
            name: "synack1".into(),
            host_addr: Some("198.18.6.1/24".parse().unwrap()),
            offload: false,
            // The kernel's own queue length.
            tx_queue_len: 0,
            ..TunConfig::default()
        },
    )
    .unwrap();
    assert!(!plain_tun.is_offloaded() && plain_tun.offload_counters().is_none());
    assert_eq!(
        plain_tun.capabilities(),
        DeviceCapabilities::new(PLAIN_TUN_MTU)
    );
    // The kernel sees each device's own default MTU: the plain one moves a packet a system
    // call, so it takes the largest.
    let link = ip_show(&ns, "link", "synack1");
    assert!(
        link.contains("mtu 65535") && link.contains("qlen 500"),
        "{link}"
    );
    drop(plain_tun);
    // A queue length the ioctl cannot carry is refused before any device is made.
    let e = TunDevice::create_in(
        &ns,
        &TunConfig {
            name: "synack2".into(),
            tx_queue_len: usize::MAX,
            ..TunConfig::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    assert_eq!(ip_show(&ns, "link", "synack2"), "", "no device was made");

    // The kernel side sees the device with our address, MTU and state.
    let addr = ip_show(&ns, "addr", "synack0");
    assert!(addr.contains("inet 198.18.0.1/24"), "{addr}");
    let link = ip_show(&ns, "link", "synack0");
    assert!(link.contains("mtu 1500") && link.contains(",UP"), "{link}");
    // The kernel holds up to TUN_TX_QUEUE_LEN packets for us, not its own 500.
    assert!(link.contains(&format!("qlen {TUN_TX_QUEUE_LEN}")), "{link}");

    let rx_before = link_counter(&ns, "synack0", "rx_packets");
    let ping = ns
        .command("ping")
        .args(["-n", "-c", "1", "-W", "5", &STACK.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ping (iputils-ping) must be installed");

    let request = read_echo_request(&mut tun).await;
    assert_eq!(echo_request(&request), Some((HOST, STACK)));
    let reply = echo_reply(&request);
    poll_fn(|cx| tun.poll_send(cx, &reply, &plain(reply.len())))
        .await
        .unwrap();

    let out = tokio::task::spawn_blocking(move || ping.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ping failed: {text}");
    assert!(text.contains("1 received"), "{text}");
    // The kernel counted the packet we wrote as received on the device.
    assert!(link_counter(&ns, "synack0", "rx_packets") > rx_before);
}

/// A TUN whose name is taken, by another stack's device or by one `ip tuntap` made, is not
/// joined (a multi-queue device would have taken this file as one more of its queues, and a
/// share of the other stack's packets): creating it fails at once with `AlreadyExists`,
/// naming the interface, and the device that has the name goes on working.
#[tokio::test]
async fn kernel_a_taken_tun_name_is_refused_not_joined() {
    if !require_tun("kernel_a_taken_tun_name_is_refused_not_joined") {
        return;
    }
    let ns = NetNs::new("synack-tunx").unwrap();
    let mut first = TunDevice::create_in(&ns, &TunConfig::default()).unwrap();
    let e = TunDevice::create_in(&ns, &TunConfig::default()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("synack0"), "{e}");
    let made = ns
        .command("ip")
        .args(["tuntap", "add", "dev", "synack7", "mode", "tun"])
        .status()
        .unwrap();
    assert!(made.success());
    for offload in [true, false] {
        let config = TunConfig {
            name: "synack7".into(),
            host_addr: Some("198.18.7.1/24".parse().unwrap()),
            offload,
            ..TunConfig::default()
        };
        let e = TunDevice::create_in(&ns, &config).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        assert!(e.to_string().contains("synack7"), "{e}");
    }
    // The first device still has every packet: a ping's request comes to it.
    let ping = ns
        .command("ping")
        .args(["-n", "-c", "1", "-W", "5", &STACK.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping (iputils-ping) must be installed");
    let request = read_echo_request(&mut first).await;
    assert_eq!(echo_request(&request), Some((HOST, STACK)));
    let _ = tokio::task::spawn_blocking(move || ping.wait_with_output()).await;
}

#[tokio::test]
async fn kernel_counts_a_crafted_packet_and_device_goes_with_its_fd() {
    if !require_tun("kernel_counts_a_crafted_packet_and_device_goes_with_its_fd") {
        return;
    }
    let ns = NetNs::new("synack-tun").unwrap();
    let config = TunConfig {
        name: "sk-test1".into(),
        host_addr: Some("198.18.5.1/24".parse().unwrap()),
        mtu: 1400,
        ..TunConfig::default()
    };
    let mut tun = TunDevice::create_in(&ns, &config).unwrap();
    assert_eq!(tun.name(), "sk-test1");
    // A UDP datagram from 198.18.5.2 to the kernel's discard port, built by hand (UDP checksum
    // 0 = none, RFC 768).
    let mut packet = vec![
        0x45, 0, 0, 32, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 198, 18, 5, 2, 198, 18, 5, 1, //
        0x30, 0x39, 0, 9, 0, 12, 0, 0, b's', b'y', b'n', b'!',
    ];
    let sum = inet_checksum(&packet[..20]);
    packet[10..12].copy_from_slice(&sum.to_be_bytes());
    let before = link_counter(&ns, "sk-test1", "rx_packets");
    let before_bytes = link_counter(&ns, "sk-test1", "rx_bytes");
    poll_fn(|cx| tun.poll_send(cx, &packet, &plain(packet.len())))
        .await
        .unwrap();
    assert_eq!(link_counter(&ns, "sk-test1", "rx_packets"), before + 1);
    assert_eq!(link_counter(&ns, "sk-test1", "rx_bytes"), before_bytes + 32);
    let link = ip_show(&ns, "link", "sk-test1");
    assert!(link.contains("mtu 1400"), "{link}");

    // A non-persistent TUN disappears with its file descriptor: at once, or within a moment
    // when a child process forked by a parallel test still held the descriptor (O_CLOEXEC
    // closes it only at the child's exec).
    drop(tun);
    let mut gone = false;
    for _ in 0..20 {
        let out = ns
            .command("ip")
            .args(["link", "show", "dev", "sk-test1"])
            .output()
            .unwrap();
        if !out.status.success() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(gone, "the link outlived its device by a second");
}

#[tokio::test]
async fn pcap_of_a_tun_is_read_by_tcpdump() {
    if !require_tun("pcap_of_a_tun_is_read_by_tcpdump") {
        return;
    }
    if !tool_present("tcpdump") {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "tcpdump missing under CI"
        );
        eprintln!("skipping pcap_of_a_tun_is_read_by_tcpdump: no tcpdump");
        return;
    }
    let ns = NetNs::new("synack-pcap").unwrap();
    let dir = ScratchDir::new(ns.name());
    let path = dir.path().join("tun.pcap");
    let tun = TunDevice::create_in(&ns, &TunConfig::default()).unwrap();
    let mut dev = PcapDevice::new(tun, &path).unwrap();
    assert_eq!(dev.capabilities().mtu, 1500);

    let ping = ns
        .command("ping")
        .args(["-n", "-c", "1", "-W", "5", "-s", "100", &STACK.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let request = read_echo_request(&mut dev).await;
    poll_fn(|cx| {
        let reply = echo_reply(&request);
        dev.poll_send(cx, &reply, &plain(reply.len()))
    })
    .await
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let mut ping = ping;
        ping.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success());
    drop(dev); // flushes

    let out = Command::new("tcpdump")
        .args(["-r"])
        .arg(&path)
        .args(["-nn", "-v"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "tcpdump: {err}");
    assert!(err.contains("link-type RAW"), "{err}");
    assert!(
        text.contains("198.18.0.1 > 198.18.0.2: ICMP echo request"),
        "{text}"
    );
    assert!(
        text.contains("198.18.0.2 > 198.18.0.1: ICMP echo reply"),
        "{text}"
    );
    // tcpdump -v says "bad cksum" for a wrong IP checksum: ours is right.
    assert!(!text.contains("bad cksum"), "{text}");
}
