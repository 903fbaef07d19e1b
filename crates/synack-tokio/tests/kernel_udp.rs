//! UDP against the Linux kernel's own UDP, each test in a network namespace of its own with a
//! dual-stack TUN (kernel 198.18.0.1 and 2001:2::1, synack 198.18.0.2 and 2001:2::2) on the
//! default, offloading device, so that the kernel's partial UDP checksums (`NEEDS_CSUM`)
//! are finished on the way in. python3 is the kernel side: an echo server, a client, and
//! connected sockets that see the ICMP errors.

mod kernel_support;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kernel_support::{errno, pattern, Net, Proc, HOST, HOST6, STACK, STACK6};
use synack_core::endpoint::UDP_MAX_PAYLOAD;
use synack_tokio::netns::require_tun;
use synack_tokio::{InterceptConfig, UdpSocket};

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
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
    let net = Net::dual("synack-udp-rt", synack_core::Config::default());
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
    let net = Net::dual("synack-udp-unr", synack_core::Config::default());
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
    let net = Net::dual("synack-udp-icpt", config);
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
    let net = Net::dual("synack-udp-ttl", synack_core::Config::default());
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
    let net = Net::dual("synack-udp-bcast", synack_core::Config::default());
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
    let net = Net::dual("synack-udp-dual", synack_core::Config::default());
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
    let net = Net::dual("synack-udp-mcast", synack_core::Config::default());
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

/// A UDP socket of either kind: tokio's on a kernel socket in the test's namespace, or
/// synack's on its stack; the calls the comparisons below make, in both.
enum Sock {
    Kernel(tokio::net::UdpSocket),
    Synack(UdpSocket),
}

impl Sock {
    /// Binds `addr`: a kernel socket inside `net`'s namespace, or a synack one on its stack.
    async fn bind(net: &Net, kernel: bool, addr: SocketAddr) -> io::Result<Sock> {
        if !kernel {
            return UdpSocket::bind(&net.stack, addr).await.map(Sock::Synack);
        }
        net.kernel_udp(addr).map(Sock::Kernel)
    }

    async fn connect(&self, to: SocketAddr) -> io::Result<()> {
        match self {
            Sock::Kernel(s) => s.connect(to).await,
            Sock::Synack(s) => s.connect(to).await,
        }
    }

    async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Kernel(s) => s.send(buf).await,
            Sock::Synack(s) => s.send(buf).await,
        }
    }

    async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            Sock::Kernel(s) => s.send_to(buf, to).await,
            Sock::Synack(s) => s.send_to(buf, to).await,
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Sock::Kernel(s) => s.peer_addr(),
            Sock::Synack(s) => s.peer_addr(),
        }
    }

    async fn ready(&self, interest: tokio::io::Interest) -> io::Result<tokio::io::Ready> {
        match self {
            Sock::Kernel(s) => s.ready(interest).await,
            Sock::Synack(s) => s.ready(interest).await,
        }
    }

    fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Sock::Kernel(s) => s.take_error(),
            Sock::Synack(s) => s.take_error(),
        }
    }
}

/// What one side's UDP calls gave, in order, for comparing with the other side's.
type Outcomes = Vec<(&'static str, String)>;

/// The calls of items that earlier reviews found differing from Linux, on one side: `own`
/// is this side's address of the family, `peer` the other side's (where no UDP port 9 is
/// open). Returns each call's outcome, errnos by number.
async fn udp_calls(net: &Net, kernel: bool, own: IpAddr, peer: IpAddr) -> Outcomes {
    use tokio::io::Interest;
    let mut out: Outcomes = Vec::new();
    let mut note = |what: &'static str, v: String| out.push((what, v));
    let v6 = own.is_ipv6();
    let s = Sock::bind(net, kernel, unspecified(v6)).await.unwrap();
    let zero = SocketAddr::new(peer, 0);
    note(
        "send unconnected",
        format!("{:?}", errno(s.send(b"x").await)),
    );
    note(
        "peer_addr unconnected",
        format!("{:?}", errno(s.peer_addr())),
    );
    note(
        "send_to port 0",
        format!("{:?}", errno(s.send_to(b"x", zero).await)),
    );
    note(
        "connect port 0",
        format!("{:?}", errno(s.connect(zero).await)),
    );
    note("peer_addr at port 0", format!("{:?}", errno(s.peer_addr())));
    note(
        "send to port 0",
        format!("{:?}", errno(s.send(b"zero").await)),
    );
    // The peer's port unreachable comes back: EPOLLERR | EPOLLOUT.
    let r = within(5, s.ready(Interest::ERROR)).await.unwrap();
    note("ready(ERROR)", format!("{}", r.is_error()));
    let r = within(5, s.ready(Interest::WRITABLE)).await.unwrap();
    let bits = (r.is_writable(), r.is_write_closed(), r.is_error());
    note("ready(WRITABLE) with an error", format!("{bits:?}"));
    let r = within(5, s.ready(Interest::READABLE | Interest::WRITABLE))
        .await
        .unwrap();
    note("readable with an error", format!("{}", r.is_readable()));
    note(
        "send_to port 0 with an error",
        format!("{:?}", errno(s.send_to(b"x", zero).await)),
    );
    note(
        "send with an error",
        format!("{:?}", errno(s.send(b"x").await)),
    );
    note(
        "send after it",
        format!("{:?}", errno(s.send(b"again").await)),
    );
    // That one was refused too: SO_ERROR takes it, once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let taken = errno(s.take_error().map(|e| e.map(|e| errno::<()>(Err(e)))));
    note("take_error", format!("{taken:?}"));
    note(
        "take_error again",
        format!("{:?}", errno(s.take_error().map(|e| e.is_some()))),
    );
    let nine = SocketAddr::new(peer, 9);
    note(
        "connect port 9",
        format!("{:?}", errno(s.connect(nine).await)),
    );
    note("peer_addr at port 9", format!("{:?}", errno(s.peer_addr())));
    out
}

/// The same UDP calls on tokio's socket over the kernel (in the test's namespace, to
/// synack's address) and on synack's (to the kernel's), both families, give the same
/// outcomes: an unconnected send EDESTADDRREQ (synack's of kind `NotConnected`, its errno
/// inside), a connect to port 0 taken with `peer_addr` ENOTCONN and the send going to port
/// 0, send_to port 0 EINVAL, and an ICMP port unreachable pending as Linux keeps it:
/// `ERROR` and `WRITABLE | WRITE_CLOSED` (EPOLLERR | EPOLLOUT), not readable, the next
/// send ECONNREFUSED once (not a send_to refused for its argument), SO_ERROR once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_errors_as_tokio_gets_them_on_the_kernel() {
    let test = "kernel_udp_errors_as_tokio_gets_them_on_the_kernel";
    if !require(test) {
        return;
    }
    let net = Net::dual("synack-udp-err", synack_core::Config::default());
    within(60, async {
        for (host, stack) in [
            (IpAddr::V4(HOST), IpAddr::V4(STACK)),
            (IpAddr::V6(HOST6), IpAddr::V6(STACK6)),
        ] {
            let kernel = udp_calls(&net, true, host, stack).await;
            let synack = udp_calls(&net, false, stack, host).await;
            let nine = |ip: IpAddr| SocketAddr::new(ip, 9);
            for ((what, k), (_, s)) in kernel.iter().zip(&synack) {
                // The peer port 9 is the other side's address.
                let k = k.replace(&format!("{:?}", nine(stack)), "PEER:9");
                let s = s.replace(&format!("{:?}", nine(host)), "PEER:9");
                assert_eq!(k, s, "{host}: {what}: kernel {k}, synack {s}");
            }
            eprintln!("{host}: {kernel:?}");
        }
    })
    .await;
}

/// Family mismatches on one side: an IPv4 socket given IPv6 addresses, an IPv6 one bound to
/// an IPv6 address given IPv4 ones (plain and IPv4-mapped), and one bound IPv4-mapped given
/// an IPv6 one; `own` and `peer` are this side's and the other side's addresses, IPv4 then
/// IPv6. Returns each call's outcome, errnos by number.
async fn family_calls(net: &Net, kernel: bool, own: [IpAddr; 2], peer: [IpAddr; 2]) -> Outcomes {
    let mut out: Outcomes = Vec::new();
    let at = |ip: IpAddr| SocketAddr::new(ip, 9);
    let mapped = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), 9),
        IpAddr::V6(_) => unreachable!(),
    };
    let v4 = Sock::bind(net, kernel, unspecified(false)).await.unwrap();
    let r = errno(v4.send_to(b"x", at(peer[1])).await);
    out.push(("v4 socket: send_to IPv6", format!("{r:?}")));
    let r = errno(v4.connect(at(peer[1])).await);
    out.push(("v4 socket: connect IPv6", format!("{r:?}")));
    let r = errno(v4.connect(mapped(peer[0])).await);
    out.push(("v4 socket: connect IPv4-mapped", format!("{r:?}")));
    for (what, to) in [("IPv4", at(peer[0])), ("IPv4-mapped", mapped(peer[0]))] {
        let v6 = Sock::bind(net, kernel, SocketAddr::new(own[1], 0))
            .await
            .unwrap();
        let r = errno(v6.send_to(b"x", to).await);
        out.push((what, format!("v6 socket: send_to {r:?}")));
        let r = errno(v6.connect(to).await);
        out.push((what, format!("v6 socket: connect {r:?}")));
    }
    let on_mapped = Sock::bind(net, kernel, mapped(own[0]).with_port0())
        .await
        .unwrap();
    let r = errno(on_mapped.send_to(b"x", at(peer[1])).await);
    out.push(("bound IPv4-mapped: send_to IPv6", format!("{r:?}")));
    let r = errno(on_mapped.connect(at(peer[1])).await);
    out.push(("bound IPv4-mapped: connect IPv6", format!("{r:?}")));
    out
}

/// Port 0 of an address.
trait WithPort0 {
    fn with_port0(self) -> SocketAddr;
}

impl WithPort0 for SocketAddr {
    fn with_port0(mut self) -> SocketAddr {
        self.set_port(0);
        self
    }
}

/// Family mismatches fail as tokio's sockets on the kernel fail them, errno for errno
/// (EAFNOSUPPORT inside synack's `InvalidInput`, ENETUNREACH, EINVAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_family_mismatches_fail_as_on_the_kernel() {
    let test = "kernel_udp_family_mismatches_fail_as_on_the_kernel";
    if !require(test) {
        return;
    }
    let net = Net::dual("synack-udp-fam", synack_core::Config::default());
    let host = [IpAddr::V4(HOST), IpAddr::V6(HOST6)];
    let stack = [IpAddr::V4(STACK), IpAddr::V6(STACK6)];
    within(30, async {
        let kernel = family_calls(&net, true, host, stack).await;
        let synack = family_calls(&net, false, stack, host).await;
        eprintln!("kernel: {kernel:?}\nsynack: {synack:?}");
        assert_eq!(kernel, synack);
    })
    .await;
}

/// A connect to a link-local address without a scope id is EINVAL on both, UDP (fe80::1,
/// and the link-local group ff02::1) and TCP; with the TUN's index as the scope id a UDP
/// socket connects and shows it back on its peer, on both. Sending to one needs no scope
/// id, on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_udp_link_local_connects_as_on_the_kernel() {
    let test = "kernel_udp_link_local_connects_as_on_the_kernel";
    if !require(test) {
        return;
    }
    let net = Net::dual("synack-udp-ll", synack_core::Config::default());
    let index = net.run("cat", &["/sys/class/net/synack0/ifindex"]).await;
    let index: u32 = String::from_utf8_lossy(&index.stdout)
        .trim()
        .parse()
        .unwrap();
    let link = |ip: &str, scope| {
        SocketAddr::V6(std::net::SocketAddrV6::new(
            ip.parse().unwrap(),
            7,
            0,
            scope,
        ))
    };
    within(30, async {
        let mut outcomes = Vec::new();
        for kernel in [true, false] {
            let mut out: Outcomes = Vec::new();
            for to in [
                link("fe80::1", 0),
                link("ff02::1", 0),
                link("fe80::1", index),
            ] {
                let s = Sock::bind(&net, kernel, unspecified(true)).await.unwrap();
                let r = errno(s.connect(to).await);
                out.push(("UDP connect", format!("{to}: {r:?}")));
                let r = errno(s.peer_addr());
                out.push(("peer_addr", format!("{r:?}")));
            }
            let s = Sock::bind(&net, kernel, unspecified(true)).await.unwrap();
            let r = errno(s.send_to(b"x", link("fe80::1", 0)).await);
            out.push(("UDP send_to", format!("{r:?}")));
            let to = link("fe80::1", 0);
            let r = match kernel {
                true => net
                    .ns
                    .run_in(move || std::net::TcpStream::connect(to).map(drop))
                    .unwrap(),
                false => synack_tokio::TcpStream::connect(&net.stack, to)
                    .await
                    .map(drop),
            };
            out.push(("TCP connect", format!("{:?}", errno(r))));
            outcomes.push(out);
        }
        eprintln!("kernel: {:?}\nsynack: {:?}", outcomes[0], outcomes[1]);
        assert_eq!(outcomes[0], outcomes[1]);
    })
    .await;
}
