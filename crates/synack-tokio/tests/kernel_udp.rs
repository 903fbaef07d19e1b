//! UDP against the Linux kernel's own UDP, each test in a network namespace of its own with a
//! dual-stack TUN (kernel 198.18.0.1 and 2001:2::1, synack 198.18.0.2 and 2001:2::2) on the
//! default, offloading device, so that the kernel's partial UDP checksums (`NEEDS_CSUM`)
//! are finished on the way in. python3 is the kernel side: an echo server, a client, and
//! connected sockets that see the ICMP errors.

mod kernel_support;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kernel_support::{pattern, Net, Proc, HOST, HOST6, STACK, STACK6};
use synack_core::endpoint::UDP_MAX_PAYLOAD;
use synack_tokio::device::TunConfig;
use synack_tokio::netns::require_tun;
use synack_tokio::{InterceptConfig, UdpSocket};

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

fn dual(prefix: &str, config: synack_core::Config) -> Net {
    let tun_config = TunConfig {
        host_addr6: Some("2001:2::1/64".parse().unwrap()),
        ..TunConfig::default()
    };
    Net::with_tun(
        prefix,
        config,
        &tun_config,
        &[IpAddr::V4(STACK), IpAddr::V6(STACK6)],
    )
}

/// The unspecified address of a family, port 0: a bind to every stack address, any port.
fn unspecified(v6: bool) -> SocketAddr {
    if v6 { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap()
}

fn require(test: &str) -> bool {
    require_tun(test) && kernel_support::require_tool(test, "python3")
}

async fn said(p: Proc, secs: u64) -> String {
    let out = p.finish(Duration::from_secs(secs)).await;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "python: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A kernel UDP echo server on ADDR:PORT for N datagrams; prints "ready" once bound.
const ECHO_SERVER: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, port))
print("ready", flush=True)
s.settimeout(20)
for _ in range(n):
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
print("done", flush=True)
"#;

/// A kernel UDP client: sends each size of random bytes to ADDR:PORT and checks the echo
/// is the same bytes, from ADDR:PORT.
const ECHO_CLIENT: &str = r#"
import os, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
sizes = [int(x) for x in sys.argv[3].split(",")]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for size in sizes:
    data = os.urandom(size)
    s.sendto(data, (addr, port))
    got, peer = s.recvfrom(65536)
    if got != data or peer[0] != addr or peer[1] != port:
        print(f"mismatch at {size}: {len(got)} bytes from {peer}")
        sys.exit(1)
print("ok", len(sizes))
"#;

/// Datagram sizes from empty to the largest one packet of a 1500-byte MTU carries, then
/// past it, in fragments (each side cuts what it sends and puts together what it gets), up
/// to the largest the length fields allow.
fn sizes(v6: bool) -> Vec<usize> {
    let max = if v6 { 1452 } else { 1472 };
    let mut v = vec![0, 1, 2, 7, 8, 100, 512, 1000, 1200, 1400];
    v.extend(max - 3..=max + 3);
    v.extend([3000, 9000, 40_000, UDP_MAX_PAYLOAD[usize::from(v6)]]);
    v
}

/// Waits for a python server's "ready" line: its socket is bound.
async fn ready(net: &Net, script: &str, args: &[&str]) -> Proc {
    let p = net.python(script, args);
    // Bound within a second in practice; the ss check keeps it exact.
    let port = args[1];
    for _ in 0..200 {
        let out = net.run("ss", &["-Hlun", &format!("sport = :{port}")]).await;
        if !out.stdout.is_empty() {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing bound UDP port {port} after 10 s");
}

/// synack sends datagrams of every size up to the MTU's limit and past it (in fragments) to a
/// kernel echo server and gets the same bytes back from it, over IPv4 and IPv6; then the
/// kernel is the client of a synack echo server. One byte more than the largest is
/// `InvalidInput` (EMSGSIZE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_round_trips_both_ways_both_families() {
    let test = "kernel_udp_round_trips_both_ways_both_families";
    if !require(test) {
        return;
    }
    let net = dual("synack-udp-rt", synack_core::Config::default());
    for (host, stack) in [
        (IpAddr::V4(HOST), IpAddr::V4(STACK)),
        (IpAddr::V6(HOST6), IpAddr::V6(STACK6)),
    ] {
        let v6 = host.is_ipv6();
        let sizes = sizes(v6);
        // synack the client.
        let server = ready(
            &net,
            ECHO_SERVER,
            &[&host.to_string(), "7000", &sizes.len().to_string()],
        )
        .await;
        let any = unspecified(v6);
        let sock = UdpSocket::bind(&net.stack, any).await.unwrap();
        let target = SocketAddr::new(host, 7000);
        for (i, &size) in sizes.iter().enumerate() {
            let data = pattern(size, i as u32 + 1);
            assert_eq!(sock.send_to(&data, target).await.unwrap(), size);
            let mut buf = vec![0u8; 65_536];
            let (n, from) = within(10, sock.recv_from(&mut buf)).await.unwrap();
            assert_eq!(from, target);
            assert_eq!(&buf[..n], &data[..], "size {size}");
        }
        let too_big = vec![0u8; sizes[sizes.len() - 1] + 1];
        let e = sock.send_to(&too_big, target).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "message too long");
        assert_eq!(said(server, 20).await, "ready\ndone");

        // The kernel the client.
        let echo = UdpSocket::bind(&net.stack, SocketAddr::new(stack, 7001))
            .await
            .unwrap();
        let n = sizes.len();
        let serve = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            for _ in 0..n {
                let (len, from) = echo.recv_from(&mut buf).await.unwrap();
                assert_eq!(from.ip(), host);
                echo.send_to(&buf[..len], from).await.unwrap();
            }
        });
        let list: Vec<String> = sizes.iter().map(ToString::to_string).collect();
        let client = net.python(ECHO_CLIENT, &[&stack.to_string(), "7001", &list.join(",")]);
        assert_eq!(said(client, 30).await, format!("ok {n}"));
        within(10, serve).await.unwrap();
    }
    let stats = net.stack.stats();
    assert_eq!(stats.drop_checksum, 0, "{stats:?}");
    assert_eq!(stats.drop_udp_queue_full, 0, "{stats:?}");
    // Each family: 7 sizes past the MTU each way.
    assert_eq!(stats.fragments_reassembled, 2 * 2 * 7, "{stats:?}");
    assert_eq!(stats.drop_fragment, 0, "{stats:?}");
    assert_eq!(net.stack.memory_usage().reassembly, 0);
}

/// A kernel socket connected to a synack port with nothing bound gets ECONNREFUSED from the
/// ICMP port unreachable synack sends; a connected synack socket gets ConnectionRefused from
/// the kernel's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_port_unreachable_both_ways() {
    let test = "kernel_udp_port_unreachable_both_ways";
    if !require(test) {
        return;
    }
    const REFUSED: &str = r#"
import errno, socket, sys
addr, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect((addr, port))
s.send(b"anyone there?")
try:
    s.recv(100)
    print("answered")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#;
    let net = dual("synack-udp-unr", synack_core::Config::default());
    for (host, stack) in [
        (IpAddr::V4(HOST), IpAddr::V4(STACK)),
        (IpAddr::V6(HOST6), IpAddr::V6(STACK6)),
    ] {
        let p = net.python(REFUSED, &[&stack.to_string(), "9999"]);
        assert_eq!(said(p, 20).await, "refused", "{host}");

        let any = unspecified(host.is_ipv6());
        let sock = UdpSocket::bind(&net.stack, any).await.unwrap();
        sock.connect(SocketAddr::new(host, 9998)).await.unwrap();
        assert_eq!(sock.local_addr().unwrap().ip(), stack);
        sock.send(b"anyone there?").await.unwrap();
        let mut buf = [0u8; 64];
        let e = within(10, sock.recv(&mut buf)).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{host}");
    }
    assert_eq!(net.stack.stats().udp_port_unreachable_sent, 2);
}

/// Transparent mode: the namespace routes 198.19.0.0/16 and 2001:2:0:ff00::/56 into the
/// TUN; python sends to several foreign addresses and ports and checks that each reply comes
/// from the address and port it sent to, which the test's UdpInterceptor answers from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_catch_all_answers_from_the_original_destination() {
    let test = "kernel_udp_catch_all_answers_from_the_original_destination";
    if !require(test) {
        return;
    }
    const CLIENT: &str = r#"
import socket, sys
ok = 0
for target in sys.argv[1:]:
    addr, port = target.rsplit(":", 1)
    addr = addr.strip("[]")
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(b"query for " + target.encode(), (addr, int(port)))
    data, peer = s.recvfrom(1500)
    if peer[0] != addr or peer[1] != int(port):
        print(f"reply to {target} came from {peer}")
        sys.exit(1)
    if data != b"answer from " + target.encode():
        print(f"reply to {target}: {data!r}")
        sys.exit(1)
    ok += 1
print("ok", ok)
"#;
    let mut config = synack_core::Config::default();
    config.intercept(Some(InterceptConfig::default()));
    let net = dual("synack-udp-icpt", config);
    for route in [
        &["-4", "route", "add", "198.19.0.0/16", "dev", "synack0"][..],
        &["-6", "route", "add", "2001:2:0:ff00::/56", "dev", "synack0"][..],
    ] {
        let out = net.run("ip", route).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let targets = [
        "198.19.0.53:53",
        "198.19.7.9:4433",
        "198.19.255.1:9",
        "[2001:2:0:ff00::53]:53",
        "[2001:2:0:ff12::1]:443",
    ];
    let interceptor = net.stack.intercept_udp().unwrap();
    let answer = tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..targets.len() {
            let d = interceptor.recv(&mut buf).await.unwrap();
            let query = String::from_utf8_lossy(&buf[..d.len]).into_owned();
            assert_eq!(query, format!("query for {}", d.dst));
            assert!(d.src.ip() == IpAddr::V4(HOST) || d.src.ip() == IpAddr::V6(HOST6));
            let reply = format!("answer from {}", d.dst);
            interceptor
                .send_from(reply.as_bytes(), d.dst, d.src)
                .await
                .unwrap();
        }
    });
    let client = net.python(CLIENT, &targets);
    assert_eq!(said(client, 30).await, format!("ok {}", targets.len()));
    within(10, answer).await.unwrap();
    let stats = net.stack.stats();
    assert_eq!(stats.udp_intercepted, targets.len() as u64, "{stats:?}");
    assert_eq!(stats.udp_port_unreachable_sent, 0);
}

/// A kernel UDP receiver on ADDR:PORT that asks for each datagram's TTL or hop limit and its
/// DS byte (IP_RECVTTL and IP_RECVTOS; IPV6_RECVHOPLIMIT and IPV6_RECVTCLASS) and prints
/// `payload=ttl/ds` for N of them.
const TTL_RECEIVER: &str = r#"
import socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v6 = ":" in addr
s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
if v6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    s.setsockopt(socket.IPPROTO_IPV6, 66, 1)  # IPV6_RECVTCLASS
    TTL, DS = (socket.IPPROTO_IPV6, 52), (socket.IPPROTO_IPV6, 67)  # IPV6_HOPLIMIT, IPV6_TCLASS
else:
    s.setsockopt(socket.IPPROTO_IP, 12, 1)  # IP_RECVTTL
    s.setsockopt(socket.IPPROTO_IP, 13, 1)  # IP_RECVTOS
    TTL, DS = (socket.IPPROTO_IP, 2), (socket.IPPROTO_IP, 1)  # IP_TTL, IP_TOS (one byte)
s.bind((addr, port))
s.settimeout(10)
out = []
for _ in range(n):
    data, anc, _, _ = s.recvmsg(2048, 256)
    got = {(level, kind): d for (level, kind, d) in anc}
    ttl = int.from_bytes(got[TTL][:4], sys.byteorder)
    ds = got[DS][0]
    out.append(f"{data.decode()}={ttl}/{ds}")
print(" ".join(out), flush=True)
"#;

/// `UdpSocket::set_ttl` and `set_tos` as the kernel reads them: the TTL (IPv4) or hop limit
/// (IPv6) of each datagram, 64 until set, and its DS byte, ECN bits included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_reads_the_ttl_and_tos_we_set_both_families() {
    let test = "kernel_udp_reads_the_ttl_and_tos_we_set_both_families";
    if !require(test) {
        return;
    }
    let net = dual("synack-udp-ttl", synack_core::Config::default());
    for host in [IpAddr::V4(HOST), IpAddr::V6(HOST6)] {
        let receiver = ready(&net, TTL_RECEIVER, &[&host.to_string(), "7200", "3"]).await;
        let any = unspecified(host.is_ipv6());
        let sock = UdpSocket::bind(&net.stack, any).await.unwrap();
        let target = SocketAddr::new(host, 7200);
        assert_eq!(sock.ttl().unwrap(), 64);
        sock.send_to(b"default", target).await.unwrap();
        assert_eq!(
            sock.set_ttl(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        sock.set_ttl(5).unwrap();
        assert_eq!(sock.ttl().unwrap(), 5);
        sock.send_to(b"five", target).await.unwrap();
        // DSCP AF41 (34) with ECT(1).
        sock.set_tos(0x88 | 0b01).unwrap();
        sock.send_to(b"marked", target).await.unwrap();
        assert_eq!(
            said(receiver, 20).await,
            "default=64/0 five=5/0 marked=5/137",
            "{host}"
        );
    }
}

/// Broadcast on the TUN's link (198.18.0.255 on the kernel's 198.18.0.0/24): the kernel's
/// broadcast reaches a synack socket bound to `0.0.0.0` on its port, with no option; a
/// synack socket sends one only after `set_broadcast(true)` (before: `PermissionDenied`,
/// Linux's EACCES), and the kernel's socket bound to `0.0.0.0` gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_broadcast_both_ways() {
    let test = "kernel_udp_broadcast_both_ways";
    if !require(test) {
        return;
    }
    let net = dual("synack-udp-bcast", synack_core::Config::default());
    let bcast: IpAddr = "198.18.0.255".parse().unwrap();
    within(30, async {
        // The kernel broadcasts; synack's wildcard socket hears it.
        let rx = UdpSocket::bind(&net.stack, "0.0.0.0:6700").await.unwrap();
        let sender = net.python(
            r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
s.sendto(b"to all", (sys.argv[1], 6700))
print("sent", flush=True)
"#,
            &[&bcast.to_string()],
        );
        assert_eq!(said(sender, 10).await, "sent");
        let mut buf = [0u8; 64];
        let (n, from) = rx.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"to all");
        assert_eq!(from.ip(), IpAddr::V4(HOST));

        // synack broadcasts, once allowed to; the kernel's wildcard socket hears it.
        let listener = ready(
            &net,
            r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(10)
data, peer = s.recvfrom(100)
print(data.decode(), peer[0], flush=True)
"#,
            &["-", "6701"],
        )
        .await;
        let tx = UdpSocket::bind(&net.stack, unspecified(false))
            .await
            .unwrap();
        let to = SocketAddr::new(bcast, 6701);
        let e = tx.send_to(b"hello all", to).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        tx.set_broadcast(true).unwrap();
        assert!(tx.broadcast().unwrap());
        assert_eq!(tx.send_to(b"hello all", to).await.unwrap(), 9);
        let heard = said(listener, 15).await;
        assert_eq!(heard, format!("ready\nhello all {STACK}"));
    })
    .await;
}

/// Dual stack, as Linux's default: one synack socket on `[::]` serves the kernel's IPv4 and
/// IPv6 clients, seeing the IPv4 one's address IPv4-mapped and answering it in IPv4. Once
/// connected to an IPv4 peer, its local address is the IPv4-mapped source, as Linux's
/// getsockname says after such a connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_one_socket_on_the_ipv6_unspecified_address_serves_both_families() {
    let test = "kernel_udp_one_socket_on_the_ipv6_unspecified_address_serves_both_families";
    if !require(test) {
        return;
    }
    let net = dual("synack-udp-dual", synack_core::Config::default());
    let server = UdpSocket::bind(&net.stack, "[::]:5400").await.unwrap();
    let echo = tokio::spawn(async move {
        let mut peers = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..6 {
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            server.send_to(&buf[..n], from).await.unwrap();
            peers.push(from.ip());
        }
        (server, peers)
    });
    within(30, async {
        for host in [IpAddr::V4(STACK), IpAddr::V6(STACK6)] {
            let client = net.python(ECHO_CLIENT, &[&host.to_string(), "5400", "1,100,1400"]);
            assert_eq!(said(client, 15).await, "ok 3");
        }
        let (server, peers) = echo.await.unwrap();
        let v4 = IpAddr::V6(HOST.to_ipv6_mapped());
        server.connect((v4, 9)).await.unwrap();
        assert_eq!(
            server.local_addr().unwrap(),
            SocketAddr::new(IpAddr::V6(STACK.to_ipv6_mapped()), 5400)
        );
        assert_eq!(
            peers,
            [
                v4,
                v4,
                v4,
                IpAddr::V6(HOST6),
                IpAddr::V6(HOST6),
                IpAddr::V6(HOST6)
            ]
        );
    })
    .await;
}

/// Multicast with the kernel, both ways and both families, on the default (sharded) stack.
/// The kernel sends to a group out of the TUN (`IP_MULTICAST_IF`, `IPV6_MULTICAST_IF`);
/// a synack socket that joined it hears it, and a group nobody joined goes unheard. synack
/// sends to a group the kernel's socket joined on the TUN, which hears it with the TTL the
/// socket set (1 by default, as Linux's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_multicast_both_ways_both_families() {
    let test = "kernel_udp_multicast_both_ways_both_families";
    if !require(test) {
        return;
    }
    let net = dual("synack-udp-mcast", synack_core::Config::default());
    within(40, async {
        // The kernel sends to an unjoined group, then to the joined one; synack hears the
        // second only.
        for (any, joined, other) in [
            ("0.0.0.0:6800", "239.1.2.3", "239.1.2.4"),
            ("[::]:6801", "ff0e::1:3", "ff0e::1:4"),
        ] {
            let rx = UdpSocket::bind(&net.stack, any).await.unwrap();
            let port = rx.local_addr().unwrap().port().to_string();
            match joined.parse::<IpAddr>().unwrap() {
                IpAddr::V4(g) => rx.join_multicast_v4(g, std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(g) => rx.join_multicast_v6(&g, 0),
            }
            .unwrap();
            let sender = net.python(
                r#"
import socket, struct, sys
port = int(sys.argv[3])
if ":" in sys.argv[1]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, socket.if_nametoindex("synack0"))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("198.18.0.1"))
s.sendto(b"not joined", (sys.argv[2], port))
s.sendto(b"to the group", (sys.argv[1], port))
print("sent", flush=True)
"#,
                &[joined, other, &port],
            );
            assert_eq!(said(sender, 10).await, "sent");
            let mut buf = [0u8; 64];
            let (n, from) = rx.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"to the group", "{joined}");
            let host = if joined.contains(':') { IpAddr::V6(HOST6) } else { IpAddr::V4(HOST) };
            assert_eq!(from.ip(), host);
        }

        // synack sends to groups the kernel joined on the TUN.
        for (group, port, ttl) in [("239.1.2.5", "6802", None), ("239.1.2.6", "6803", Some(3))] {
            let listener = ready(
                &net,
                r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
mreq = struct.pack("4s4s", socket.inet_aton(sys.argv[1]), socket.inet_aton("198.18.0.1"))
s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
IP_RECVTTL = 12  # Linux's; Python's socket module lacks the name
s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
s.bind(("0.0.0.0", int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(10)
data, anc, _, peer = s.recvmsg(100, 64)
ttl = [struct.unpack("i", d)[0] for (l, t, d) in anc if t == socket.IP_TTL]
print(data.decode(), peer[0], ttl[0], flush=True)
"#,
                &[group, port],
            )
            .await;
            let tx = UdpSocket::bind(&net.stack, unspecified(false)).await.unwrap();
            assert_eq!(tx.multicast_ttl_v4().unwrap(), 1);
            if let Some(ttl) = ttl {
                tx.set_multicast_ttl_v4(ttl).unwrap();
            }
            let to = SocketAddr::new(group.parse().unwrap(), port.parse().unwrap());
            assert_eq!(tx.send_to(b"hello group", to).await.unwrap(), 11);
            let heard = said(listener, 15).await;
            let ttl = ttl.unwrap_or(1);
            assert_eq!(heard, format!("ready\nhello group {STACK} {ttl}"));
        }
        let listener = ready(
            &net,
            r#"
import socket, struct, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
mreq = socket.inet_pton(socket.AF_INET6, sys.argv[1]) + struct.pack("@I", socket.if_nametoindex("synack0"))
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
s.bind(("::", int(sys.argv[2])))
print("ready", flush=True)
s.settimeout(10)
data, peer = s.recvfrom(100)
print(data.decode(), peer[0], flush=True)
"#,
            &["ff0e::1:7", "6804"],
        )
        .await;
        let tx = UdpSocket::bind(&net.stack, unspecified(true)).await.unwrap();
        tx.send_to(b"hello six", "[ff0e::1:7]:6804").await.unwrap();
        let heard = said(listener, 15).await;
        assert_eq!(heard, format!("ready\nhello six {STACK6}"));
    })
    .await;
}
