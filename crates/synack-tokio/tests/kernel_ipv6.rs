//! IPv6 on the TUN device against the Linux kernel's own TCP, ping and addrconf, each test in
//! a network namespace of its own on 2001:2::/64 (kernel 2001:2::1, synack 2001:2::2; RFC
//! 5180's benchmarking range), on both devices: the default, offloading TUN (TSO for IPv6,
//! `GSO_TCPV6`, and checksum offload both ways) and the plain one. A dual-stack device adds
//! 198.18.0.0/24 beside it.

mod kernel_support;

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kernel_support::{
    errno, host6, pattern, require_tool, snd_mss_becomes, stack6_addr, stack_addr, Net, Proc,
    ScratchDir, HOST, HOST6, STACK, STACK6,
};
use synack_tokio::device::{OffloadCounters, TunConfig, TunDevice};
use synack_tokio::netns::{require_tun, NetNs};
use synack_tokio::{Stack, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes moved each way in the bulk tests: enough for many super-packets and a grown
/// window.
const BULK: usize = 4 << 20;

fn config() -> synack_core::Config {
    synack_core::Config::default()
}

/// An IPv6-only device: no IPv4 address at all.
fn v6_only(offload: bool) -> TunConfig {
    TunConfig {
        host_addr: None,
        host_addr6: Some("2001:2::1/64".parse().unwrap()),
        offload,
        ..TunConfig::default()
    }
}

/// A namespace with an IPv6-only TUN and a stack on 2001:2::2, plus the offload counters
/// when the device is the offloading one.
fn v6_net(prefix: &str, offload: bool) -> (Net, Option<OffloadCounters>) {
    let ns = NetNs::new(prefix).expect("create namespace");
    let dir = ScratchDir::new(ns.name());
    let tun = TunDevice::create_in(&ns, &v6_only(offload)).expect("create TUN");
    assert_eq!(tun.is_offloaded(), offload, "this kernel has TUN offloads");
    let counters = tun.offload_counters();
    let stack = Stack::builder()
        .config(config())
        .address(IpAddr::V6(STACK6))
        .build(tun)
        .expect("start the stack");
    (Net { stack, dir, ns }, counters)
}

/// Bounds every test's wait on the stack, so a hang fails instead of stalling the suite.
async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

/// A kernel client: connects to `ADDR PORT` (either family), sends SIZE random bytes and
/// half-closes while reading the echo; exits 0 if the echo is the bytes it sent, and prints
/// the family it used. A fourth argument `dstopts` puts a Destination Options header (a PadN
/// option) on every IPv6 packet it sends (`IPV6_DSTOPTS`).
const ECHO_CLIENT: &str = r#"
import os, socket, sys, threading
addr, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(size)
if sys.argv[4:] == ["dstopts"]:
    s = socket.socket(socket.AF_INET6)
    s.settimeout(30)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
    s.connect((addr, port))
else:
    s = socket.create_connection((addr, port), timeout=30)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    got += b
t.join()
fam = "v6" if s.family == socket.AF_INET6 else "v4"
if bytes(got) == data:
    print(f"ok {fam}")
    sys.exit(0)
print(f"mismatch {fam}: {len(got)} of {size} bytes", file=sys.stderr)
sys.exit(1)
"#;

/// A kernel server on `[ADDR]:PORT` for one connection: `send` writes the file PATH to it
/// and closes; `recv` writes what arrives to PATH until the FIN. Prints the peer's address.
const FILE_SERVER: &str = r#"
import socket, sys
mode, path, addr, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(1)
c, peer = s.accept()
print(peer[0], flush=True)
if mode == "send":
    with open(path, "rb") as f:
        c.sendall(f.read())
else:
    with open(path, "wb") as f:
        while True:
            b = c.recv(1 << 16)
            if not b:
                break
            f.write(b)
c.close()
"#;

/// Shuts `stream` down, waits for the `recv` `FILE_SERVER` to exit 0 within `secs`, and
/// checks that the file it wrote, `file`, holds `data`.
async fn upload_arrived(
    stream: &mut TcpStream,
    server: Proc,
    file: &std::path::Path,
    data: &[u8],
    secs: u64,
) {
    within(secs, stream.shutdown()).await.unwrap();
    let out = server.finish(Duration::from_secs(secs)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = std::fs::read(file).unwrap();
    assert!(
        got == data,
        "{} of {} bytes, or corrupt",
        got.len(),
        data.len()
    );
}

/// Over IPv6 on the default (offloading) TUN, an open connection follows the link's MTU
/// down and back up (1500, 1400, 1500: MSS 1440, 1340, 1440 less the timestamps), as the
/// kernel's own sockets follow their device's, and an upload across both changes arrives
/// intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ipv6_link_mtu_changes_are_followed() {
    if !require_tun("kernel_ipv6_link_mtu_changes_are_followed") {
        return;
    }
    let (net, _) = v6_net("synack-mtu6", true);
    let data = pattern(3 * BULK / 4, 9);
    let third = data.len() / 3;
    let file = net.dir.path().join("up.bin");
    let path = file.to_str().unwrap();
    let server = net.python(FILE_SERVER, &["recv", path, &HOST6.to_string(), "8602"]);
    net.wait_listening(8602).await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host6(8602)))
        .await
        .expect("connect");
    assert_eq!(stream.info().unwrap().snd_mss, 1428);
    within(60, stream.write_all(&data[..third])).await.unwrap();
    for (mtu, mss, part) in [("1400", 1328, 1), ("1500", 1428, 2)] {
        let ip = ["link", "set", "dev", "synack0", "mtu", mtu];
        let out = net.run("ip", &ip).await;
        assert!(out.status.success(), "{out:?}");
        snd_mss_becomes(&stream, mss).await;
        let end = if part == 2 { data.len() } else { 2 * third };
        within(60, stream.write_all(&data[part * third..end]))
            .await
            .unwrap();
    }
    upload_arrived(&mut stream, server, &file, &data, 60).await;
}

/// A synack echo server on `listener`: accepts `n` connections and echoes each until its
/// FIN; returns each one's peer and local address as accepted, sorted.
fn echo_server(listener: TcpListener, n: usize) -> tokio::task::JoinHandle<Vec<(IpAddr, IpAddr)>> {
    tokio::spawn(async move {
        let mut echoes = Vec::new();
        let mut seen = Vec::new();
        for _ in 0..n {
            let (mut stream, from) = listener.accept().await.expect("accept");
            assert_eq!(stream.peer_addr().unwrap(), from);
            seen.push((from.ip(), stream.local_addr().unwrap().ip()));
            echoes.push(tokio::spawn(async move {
                let (mut rx, mut tx) = stream.split();
                tokio::io::copy(&mut rx, &mut tx).await.expect("echo");
                tx.shutdown().await.expect("FIN");
            }));
        }
        for e in echoes {
            e.await.expect("echo task");
        }
        seen.sort();
        seen
    })
}

/// Runs the kernel's echo client against `addr:port` of the stack and checks the echo.
async fn kernel_echo(net: &Net, addr: IpAddr, port: u16, size: usize) -> String {
    kernel_echo_with(net, addr, port, size, &[]).await
}

/// [`kernel_echo`] with more arguments for the client (`dstopts`).
async fn kernel_echo_with(
    net: &Net,
    addr: IpAddr,
    port: u16,
    size: usize,
    more: &[&str],
) -> String {
    let (addr, port, size) = (addr.to_string(), port.to_string(), size.to_string());
    let args: Vec<&str> = [addr.as_str(), &port, &size]
        .into_iter()
        .chain(more.iter().copied())
        .collect();
    let client = net.python(ECHO_CLIENT, &args);
    let out = client.finish(Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The kernel's python3 connects to a synack listener over IPv6, and synack's client
/// downloads then uploads `BULK` bytes from and to a kernel server; every byte is checked.
async fn tcp_both_ways(net: &Net) {
    // Kernel client -> synack listener, echoed back.
    let listener = TcpListener::bind(&net.stack, stack6_addr(7))
        .await
        .expect("bind");
    let server = echo_server(listener, 1);
    assert_eq!(kernel_echo(net, IpAddr::V6(STACK6), 7, BULK).await, "ok v6");
    let seen = within(10, server).await.unwrap();
    assert_eq!(seen, [(IpAddr::V6(HOST6), IpAddr::V6(STACK6))]);

    // synack client <- kernel server: a download.
    let data = pattern(BULK, 6);
    let file = net.dir.path().join("down.bin");
    std::fs::write(&file, &data).unwrap();
    let path = file.to_str().unwrap();
    let server = net.python(FILE_SERVER, &["send", path, &HOST6.to_string(), "8600"]);
    net.wait_listening(8600).await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host6(8600)))
        .await
        .expect("connect");
    assert_eq!(stream.local_addr().unwrap().ip(), IpAddr::V6(STACK6));
    let mut got = Vec::with_capacity(BULK);
    within(60, stream.read_to_end(&mut got)).await.unwrap();
    assert!(
        got == data,
        "download: {} of {BULK} bytes, or corrupt",
        got.len()
    );
    drop(stream);
    let out = server.finish(Duration::from_secs(10)).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        STACK6.to_string()
    );

    // synack client -> kernel server: an upload.
    let data = pattern(BULK, 7);
    let file = net.dir.path().join("up.bin");
    let path = file.to_str().unwrap();
    let server = net.python(FILE_SERVER, &["recv", path, &HOST6.to_string(), "8601"]);
    net.wait_listening(8601).await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host6(8601)))
        .await
        .expect("connect");
    within(60, stream.write_all(&data)).await.unwrap();
    upload_arrived(&mut stream, server, &file, &data, 60).await;
}

/// `ping -6` from the kernel to `addr` gets `count` replies.
async fn ping(net: &Net, addr: IpAddr, count: u32) {
    let family = if addr.is_ipv6() { "-6" } else { "-4" };
    let out = net
        .run(
            "ping",
            &[
                family,
                "-n",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-W",
                "5",
                &addr.to_string(),
            ],
        )
        .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ping {addr} failed: {text}");
    assert!(text.contains(&format!("{count} received")), "{text}");
}

/// The kernel's side of the device: its global IPv6 address (not tentative: no DAD) and the
/// connected route.
async fn assert_kernel_side(net: &Net) {
    let out = net
        .run("ip", &["-6", "-o", "addr", "show", "dev", "synack0"])
        .await;
    let addrs = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(addrs.contains("inet6 2001:2::1/64"), "{addrs}");
    assert!(!addrs.contains("tentative"), "{addrs}");
    let out = net
        .run("ip", &["-6", "route", "get", &STACK6.to_string()])
        .await;
    let route = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(route.contains("dev synack0"), "{route}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ipv6_tcp_both_ways_on_the_offload_tun() {
    if !require_tun("kernel_ipv6_tcp_both_ways_on_the_offload_tun") {
        return;
    }
    let (net, counters) = v6_net("synack-v6-off", true);
    assert_kernel_side(&net).await;
    tcp_both_ways(&net).await;
    // IPv6 went through the offloads: the kernel's GSO_TCPV6 super-packets came in, and the
    // stack's own went out behind a TSO header.
    let c = counters.expect("offload counters").snapshot();
    assert!(c.gso_packets_in > 0, "{c:?}");
    assert!(c.super_packets_built > 0, "{c:?}");
    assert_eq!(c.rx_dropped + c.tx_dropped, 0, "{c:?}");
    let s = net.stack.stats();
    assert!(s.checksum_offloaded > 0, "{s:?}");
    assert_eq!(s.drop_checksum, 0, "{s:?}");
}

/// The kernel's TCP behind a Destination Options header (a socket's `IPV6_DSTOPTS`): its
/// packets come over the offloading TUN with the checksum partial behind the extension
/// header, and the stack finishes the sum where the virtio-net header says it lies. They
/// used to be dropped, the SYN first: no connection at all. A bulk upload brings the
/// kernel's TSO super-packets behind the same header, which the device cuts or hands on
/// whole like any other; they too were dropped, and the upload stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ipv6_tcp_behind_destination_options_on_the_offload_tun() {
    if !require_tun("kernel_ipv6_tcp_behind_destination_options_on_the_offload_tun") {
        return;
    }
    let (net, counters) = v6_net("synack-v6-dstopts", true);
    let listener = TcpListener::bind(&net.stack, stack6_addr(7))
        .await
        .expect("bind");
    let server = echo_server(listener, 1);
    let echo = kernel_echo_with(&net, IpAddr::V6(STACK6), 7, 2_000_000, &["dstopts"]).await;
    assert_eq!(echo, "ok v6");
    within(10, server).await.unwrap();
    let c = counters.expect("offload counters").snapshot();
    assert!(c.gso_packets_in > 0, "{c:?}");
    assert_eq!(c.rx_dropped, 0, "{c:?}");
    let s = net.stack.stats();
    assert_eq!(s.drop_checksum, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ipv6_tcp_both_ways_on_the_plain_tun() {
    if !require_tun("kernel_ipv6_tcp_both_ways_on_the_plain_tun") {
        return;
    }
    let (net, counters) = v6_net("synack-v6-plain", false);
    assert!(counters.is_none());
    assert_kernel_side(&net).await;
    tcp_both_ways(&net).await;
    let s = net.stack.stats();
    assert_eq!(s.drop_checksum, 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ipv6_ping_gets_replies_on_both_tuns() {
    if !require_tun("kernel_ipv6_ping_gets_replies_on_both_tuns") {
        return;
    }
    for offload in [true, false] {
        let (net, _) = v6_net("synack-v6-ping", offload);
        ping(&net, IpAddr::V6(STACK6), 3).await;
        let s = net.stack.stats();
        assert!(s.echo_replies >= 3, "{s:?}");
    }
}

/// The kernel speaks on a new IPv6 link unasked: router solicitations and MLD reports to
/// multicast groups, from its link-local address. None of it is for the stack, which counts
/// it dropped and goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ipv6_link_chatter_is_dropped_and_counted() {
    if !require_tun("kernel_ipv6_link_chatter_is_dropped_and_counted") {
        return;
    }
    let (net, _) = v6_net("synack-v6-chatter", true);
    // MLD reports leave at once; the first router solicitation within about a second.
    let mut dropped = 0;
    for _ in 0..100 {
        let s = net.stack.stats();
        dropped = s.drop_not_for_us + s.drop_unsupported;
        if dropped >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dropped > 0, "{:?}", net.stack.stats());
    let s = net.stack.stats();
    assert_eq!(s.rsts_sent + s.echo_replies, 0, "answered chatter: {s:?}");
    ping(&net, IpAddr::V6(STACK6), 1).await;
}

/// One device with both families: the kernel's clients reach synack listeners over IPv4 and
/// IPv6 at the same time, synack's clients reach kernel servers of both, and ping works on
/// both addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_dual_stack_device_serves_both_families_at_once() {
    if !require_tun("kernel_dual_stack_device_serves_both_families_at_once") {
        return;
    }
    for offload in [true, false] {
        let tun_config = TunConfig {
            host_addr6: Some("2001:2::1/64".parse().unwrap()),
            offload,
            ..TunConfig::default()
        };
        let addrs = [IpAddr::V4(STACK), IpAddr::V6(STACK6)];
        let net = Net::with_tun("synack-dual", config(), &tun_config, &addrs);
        let l4 = TcpListener::bind(&net.stack, stack_addr(7)).await.unwrap();
        let l6 = TcpListener::bind(&net.stack, stack6_addr(7)).await.unwrap();
        let s4 = echo_server(l4, 2);
        let s6 = echo_server(l6, 2);
        let size = 1 << 20;
        let (a, b, c, d) = tokio::join!(
            kernel_echo(&net, IpAddr::V4(STACK), 7, size),
            kernel_echo(&net, IpAddr::V6(STACK6), 7, size),
            kernel_echo(&net, IpAddr::V4(STACK), 7, size),
            kernel_echo(&net, IpAddr::V6(STACK6), 7, size),
        );
        assert_eq!([a, b, c, d], ["ok v4", "ok v6", "ok v4", "ok v6"]);
        let v4 = (IpAddr::V4(HOST), IpAddr::V4(STACK));
        let v6 = (IpAddr::V6(HOST6), IpAddr::V6(STACK6));
        assert_eq!(within(10, s4).await.unwrap(), [v4, v4]);
        assert_eq!(within(10, s6).await.unwrap(), [v6, v6]);

        // synack's clients, one per family, at once.
        let data = pattern(1 << 20, 9);
        let file = net.dir.path().join("dual.bin");
        std::fs::write(&file, &data).unwrap();
        let path = file.to_str().unwrap();
        let k4 = net.python(FILE_SERVER, &["send", path, &HOST.to_string(), "8700"]);
        let k6 = net.python(FILE_SERVER, &["send", path, &HOST6.to_string(), "8701"]);
        net.wait_listening(8700).await;
        net.wait_listening(8701).await;
        let fetch = |to| {
            let stack = net.stack.clone();
            async move {
                let mut stream = TcpStream::connect(&stack, to).await.expect("connect");
                let mut got = Vec::new();
                stream.read_to_end(&mut got).await.expect("read");
                got
            }
        };
        let (g4, g6) = within(30, async {
            tokio::join!(fetch(kernel_support::host(8700)), fetch(host6(8701)))
        })
        .await;
        assert!(g4 == data && g6 == data, "{} {}", g4.len(), g6.len());
        let out4 = k4.finish(Duration::from_secs(10)).await;
        let out6 = k6.finish(Duration::from_secs(10)).await;
        assert_eq!(
            String::from_utf8_lossy(&out4.stdout).trim(),
            STACK.to_string()
        );
        assert_eq!(
            String::from_utf8_lossy(&out6.stdout).trim(),
            STACK6.to_string()
        );

        ping(&net, IpAddr::V4(STACK), 2).await;
        ping(&net, IpAddr::V6(STACK6), 2).await;
    }
}

/// RFC 4443 §3.1 end to end: the kernel answers our SYN with an ICMPv6 port unreachable
/// (a firewall's reject), and the connect fails at once as refused (RFC 1122 §4.2.3.9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_icmpv6_port_unreachable_refuses_a_connect() {
    let test = "kernel_icmpv6_port_unreachable_refuses_a_connect";
    if !require_tun(test) || !require_tool(test, "nft") {
        return;
    }
    for offload in [true, false] {
        let (net, _) = v6_net("synack-v6-unreach", offload);
        net.nft(
            "add table ip6 synack_test; \
             add chain ip6 synack_test input { type filter hook input priority 0; }; \
             add rule ip6 synack_test input tcp dport 9999 \
             reject with icmpv6 type port-unreachable",
        )
        .await;
        let start = Instant::now();
        let Err(err) = within(10, TcpStream::connect(&net.stack, host6(9999))).await else {
            panic!("connect through a reject rule succeeded");
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        // The ICMPv6 error answers the first SYN, or, should the kernel's ICMPv6 rate
        // limits (net.ipv6.icmp.ratelimit, icmp_msgs_per_sec) have eaten that one, the
        // SYN retransmitted after 2 s; without it the connect would run for a minute.
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        let s = net.stack.stats();
        assert_eq!(s.drop_checksum + s.drop_malformed, 0, "{s:?}");
    }
}

/// RFC 8201 end to end: a kernel router between the stack and a server in another namespace
/// forwards onto a link of 1280 bytes; the stack's 1500-byte segments (and, on the offload
/// TUN, its TSO super-packets cut at 1440) come back as ICMPv6 Packet Too Big, the stack
/// lowers its MSS to 1220, and the upload arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_icmpv6_packet_too_big_from_a_router_shrinks_our_segments() {
    let test = "kernel_icmpv6_packet_too_big_from_a_router_shrinks_our_segments";
    if !require_tun(test) {
        return;
    }
    for offload in [true, false] {
        let (net, _) = v6_net("synack-v6-ptb", offload);
        let far = NetNs::new("synack-v6-far").expect("create namespace");
        let sh = |ns: &NetNs, script: &str| {
            let mut cmd = ns.command("sh");
            cmd.args(["-ec", script]);
            synack_tokio::netns::run_checked(&mut cmd).unwrap_or_else(|e| panic!("{script}: {e}"));
        };
        // The router's side of the narrow link has MTU 1280; the server's has 1500, so the
        // server offers an MSS of 1440 and only the router knows better.
        sh(
            &net.ns,
            &format!(
                "ip link add ptb0 mtu 1280 type veth peer name ptb1 netns {far}\n\
                 ip -6 addr add 2001:2:1::1/64 dev ptb0 nodad\n\
                 ip link set ptb0 up\n\
                 sysctl -qw net.ipv6.conf.all.forwarding=1",
                far = far.name()
            ),
        );
        sh(
            &far,
            "ip link set ptb1 mtu 1500\n\
             ip -6 addr add 2001:2:1::2/64 dev ptb1 nodad\n\
             ip link set ptb1 up\n\
             ip -6 route add 2001:2::/64 via 2001:2:1::1",
        );

        let file = net.dir.path().join("ptb.bin");
        let path = file.to_str().unwrap();
        let mut cmd = far.command("python3");
        cmd.args(["-c", FILE_SERVER, "recv", path, "2001:2:1::2", "8800"]);
        let server = Proc::spawn(cmd);
        for i in 0.. {
            let out = far.command("ss").args(["-Hltn", "sport = :8800"]).output();
            if out.is_ok_and(|o| !o.stdout.is_empty()) {
                break;
            }
            assert!(i < 200, "the far server does not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let data = pattern(1 << 20, 11);
        let to = "[2001:2:1::2]:8800";
        let mut stream = within(10, TcpStream::connect(&net.stack, to))
            .await
            .expect("connect through the router");
        within(30, stream.write_all(&data)).await.unwrap();
        upload_arrived(&mut stream, server, &file, &data, 30).await;
        let s = net.stack.stats();
        assert!(s.retransmits > 0, "what was too big was sent again: {s:?}");
        drop(stream);
    }
}

/// Dual stack, as Linux's default: one synack listener on `[::]` serves the kernel's IPv4
/// and IPv6 clients, and shows the IPv4 one's address IPv4-mapped, as `accept` on a Linux
/// socket bound to `[::]` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_one_listener_on_the_ipv6_unspecified_address_serves_both_families() {
    if !require_tun("kernel_one_listener_on_the_ipv6_unspecified_address_serves_both_families") {
        return;
    }
    let tun_config = TunConfig {
        host_addr6: Some("2001:2::1/64".parse().unwrap()),
        ..TunConfig::default()
    };
    let addrs = [IpAddr::V4(STACK), IpAddr::V6(STACK6)];
    let net = Net::with_tun("synack-dual-any", config(), &tun_config, &addrs);
    let listener = TcpListener::bind(&net.stack, "[::]:9").await.unwrap();
    let server = echo_server(listener, 2);
    let (a, b) = tokio::join!(
        kernel_echo(&net, IpAddr::V4(STACK), 9, 1 << 20),
        kernel_echo(&net, IpAddr::V6(STACK6), 9, 1 << 20),
    );
    assert_eq!([a, b], ["ok v4", "ok v6"]);
    let peers = within(10, server).await.unwrap();
    let mut want = vec![
        (
            IpAddr::V6(HOST.to_ipv6_mapped()),
            IpAddr::V6(STACK.to_ipv6_mapped()),
        ),
        (IpAddr::V6(HOST6), IpAddr::V6(STACK6)),
    ];
    want.sort();
    assert_eq!(peers, want);
}

/// A TCP socket of either kind, for the family checks: tokio's over a kernel socket made in
/// the test's namespace, or synack's.
enum Tcp {
    Kernel(tokio::net::TcpSocket),
    Synack(Box<synack_tokio::TcpSocket>),
}

impl Tcp {
    fn new(net: &Net, kernel: bool, v6: bool) -> Tcp {
        match (kernel, v6) {
            (true, v6) => Tcp::Kernel(
                net.ns
                    .run_in(move || match v6 {
                        true => tokio::net::TcpSocket::new_v6(),
                        false => tokio::net::TcpSocket::new_v4(),
                    })
                    .unwrap()
                    .unwrap(),
            ),
            (false, true) => Tcp::Synack(Box::new(
                synack_tokio::TcpSocket::new_v6(&net.stack).unwrap(),
            )),
            (false, false) => Tcp::Synack(Box::new(
                synack_tokio::TcpSocket::new_v4(&net.stack).unwrap(),
            )),
        }
    }

    fn bind(&self, addr: std::net::SocketAddr) -> io::Result<()> {
        match self {
            Tcp::Kernel(s) => s.bind(addr),
            Tcp::Synack(s) => s.bind(addr),
        }
    }

    async fn connect(self, addr: std::net::SocketAddr) -> io::Result<()> {
        match self {
            Tcp::Kernel(s) => s.connect(addr).await.map(drop),
            Tcp::Synack(s) => (*s).connect(addr).await.map(drop),
        }
    }
}

/// TCP sockets given an address of the other family fail as the kernel's do, errno for
/// errno, through tokio's `TcpSocket` on both: an IPv4 socket EAFNOSUPPORT for an IPv6 or
/// IPv4-mapped address (bind and connect); an IPv6 one EINVAL for a plain IPv4 address
/// (Linux checks the length of an IPv6 address first: `inet6_bind`, `tcp_v6_connect`) and,
/// bound to an IPv6 address, ENETUNREACH for an IPv4-mapped peer; an IPv6 one bound
/// IPv4-mapped EAFNOSUPPORT for an IPv6 peer. Every peer is the other side's, port 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_tcp_family_mismatches_fail_as_on_the_kernel() {
    if !require_tun("kernel_tcp_family_mismatches_fail_as_on_the_kernel") {
        return;
    }
    let tun_config = TunConfig {
        host_addr6: Some("2001:2::1/64".parse().unwrap()),
        ..TunConfig::default()
    };
    let addrs = [IpAddr::V4(STACK), IpAddr::V6(STACK6)];
    let net = Net::with_tun("synack-tcp-fam", config(), &tun_config, &addrs);
    let at = |ip: IpAddr, port| std::net::SocketAddr::new(ip, port);
    let mapped = |ip: std::net::Ipv4Addr, port| at(IpAddr::V6(ip.to_ipv6_mapped()), port);
    let mut outcomes = Vec::new();
    for kernel in [true, false] {
        let (own4, own6, peer4, peer6) = match kernel {
            true => (HOST, HOST6, STACK, STACK6),
            false => (STACK, STACK6, HOST, HOST6),
        };
        let mut out: Vec<(&str, String)> = Vec::new();
        let s = Tcp::new(&net, kernel, false);
        out.push((
            "v4 bind IPv6",
            format!("{:?}", errno(s.bind(at(IpAddr::V6(own6), 0)))),
        ));
        let r = s.bind(mapped(own4, 0));
        out.push(("v4 bind IPv4-mapped", format!("{:?}", errno(r))));
        let r = within(10, s.connect(at(IpAddr::V6(peer6), 9))).await;
        out.push(("v4 connect IPv6", format!("{:?}", errno(r))));
        let s = Tcp::new(&net, kernel, false);
        let r = within(10, s.connect(mapped(peer4, 9))).await;
        out.push(("v4 connect IPv4-mapped", format!("{:?}", errno(r))));
        let s = Tcp::new(&net, kernel, true);
        out.push((
            "v6 bind IPv4",
            format!("{:?}", errno(s.bind(at(IpAddr::V4(own4), 0)))),
        ));
        let r = within(10, s.connect(at(IpAddr::V4(peer4), 9))).await;
        out.push(("v6 connect IPv4", format!("{:?}", errno(r))));
        let s = Tcp::new(&net, kernel, true);
        s.bind(at(IpAddr::V6(own6), 0)).unwrap();
        let r = within(10, s.connect(mapped(peer4, 9))).await;
        out.push(("v6 bound connect IPv4-mapped", format!("{:?}", errno(r))));
        let s = Tcp::new(&net, kernel, true);
        s.bind(mapped(own4, 0)).unwrap();
        let r = within(10, s.connect(at(IpAddr::V6(peer6), 9))).await;
        out.push(("bound IPv4-mapped connect IPv6", format!("{:?}", errno(r))));
        outcomes.push(out);
    }
    eprintln!("kernel: {:?}\nsynack: {:?}", outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0], outcomes[1]);
}
