//! The offloading TUN against the real kernel, each test in its own network namespace.
//!
//! The kernel's TCP (a python3 peer) and synack move megabytes through an [`OffloadTun`];
//! the tests check that the bytes arrive intact *and* that the offloads really happened, from
//! the device's counters: super-packets read from the kernel and split, segments coalesced
//! into super-packets written to it. The kernel's own counters confirm that none of what we
//! built failed its checksums.

mod kernel_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kernel_support::Proc;
use synack_core::Config;
use synack_tokio::device::{OffloadCounters, OffloadTun, TunConfig};
use synack_tokio::netns::{require_tun, NetNs};
use synack_tokio::{Stack, TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const STACK: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const BYTES: usize = 16 << 20;

/// The test data, shared with the python side: byte `i` is `BLOCK[i % P]` with a prime `P`,
/// so a dropped, duplicated or reordered chunk anywhere shows up as a mismatch.
const P: usize = 65521;
const PY_PATTERN: &str = "P = 65521\n\
block = bytes(((i * 7 + i // 251) & 0xff) for i in range(P))\n\
big = block * ((1 << 20) // P + 3)\n";

fn block() -> Vec<u8> {
    (0..P).map(|i| ((i * 7 + i / 251) & 0xff) as u8).collect()
}

/// The first `n` bytes of the pattern.
fn pattern_of(n: usize) -> Vec<u8> {
    let block = block();
    let mut data = Vec::with_capacity(n);
    while data.len() < n {
        let o = data.len() % P;
        let k = (P - o).min(n - data.len());
        data.extend_from_slice(&block[o..o + k]);
    }
    data
}

/// The namespace, the stack on an offload TUN, and the device's counters.
struct World {
    stack: Stack,
    counters: OffloadCounters,
    ns: NetNs,
}

impl World {
    fn new(prefix: &str) -> World {
        let ns = NetNs::new(prefix).expect("namespace");
        let tun = OffloadTun::create_in(&ns, &TunConfig::default()).expect("offload TUN");
        assert_eq!(tun.name(), "synack0");
        let counters = tun.counters();
        let stack = Stack::new(Config::default(), tun, &[IpAddr::V4(STACK)]).unwrap();
        World {
            stack,
            counters,
            ns,
        }
    }

    fn python(&self, script: &str, args: &[&str]) -> Proc {
        let mut cmd = self.ns.command("python3");
        cmd.arg("-c").arg(script).args(args);
        Proc::spawn(cmd)
    }

    async fn run(&self, program: &str, args: &[&str]) -> String {
        let mut cmd = self.ns.command(program);
        cmd.args(args);
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect(program);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (at most 10 s) until a kernel socket in the namespace listens on `port`.
    async fn wait_listening(&self, port: u16) {
        for _ in 0..200 {
            if !self
                .run("ss", &["-Hltn", &format!("sport = :{port}")])
                .await
                .trim()
                .is_empty()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nothing listens on port {port} after 10 s");
    }

    /// A field of the `Tcp:` line of the namespace's /proc/net/snmp.
    async fn tcp_mib(&self, field: &str) -> u64 {
        let snmp = self.run("cat", &["/proc/net/snmp"]).await;
        let mut lines = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (
            lines.next().expect("Tcp names"),
            lines.next().expect("Tcp values"),
        );
        let at = names
            .split_whitespace()
            .position(|n| n == field)
            .unwrap_or_else(|| panic!("no {field} in {names}"));
        values
            .split_whitespace()
            .nth(at)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no value for {field} in {values}"))
    }
}

/// Connects to the stack and sends `BYTES` of the pattern in 1 MiB `sendall`s, then closes.
const PY_SENDER: &str = "import socket, sys\n\
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)\n\
n = int(sys.argv[3]); off = 0\n\
while off < n:\n    o = off % P\n    k = min(1 << 20, n - off)\n    s.sendall(big[o:o + k])\n    off += k\n\
s.shutdown(socket.SHUT_WR)\n\
s.recv(1)\n\
print('sent', off, flush=True)\n";

/// Accepts one connection, checks everything it receives against the pattern, prints the
/// count and the verdict.
const PY_SINK: &str = "import socket, sys\n\
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1); l.settimeout(30)\n\
c, _ = l.accept(); c.settimeout(30)\n\
n = 0; ok = True\n\
while True:\n    d = c.recv(1 << 20)\n    if not d: break\n    o = n % P\n    ok = ok and d == big[o:o + len(d)]\n    n += len(d)\n\
print(n, 'intact' if ok else 'corrupt', flush=True)\n\
c.close()\n";

#[tokio::test]
async fn kernel_super_packets_arrive_whole_and_intact() {
    if !require_tun("kernel_super_packets_arrive_whole_and_intact") {
        return;
    }
    let w = World::new("synack-offload-rx");
    let listener = TcpListener::bind(&w.stack, SocketAddr::new(IpAddr::V4(STACK), 5001))
        .await
        .unwrap();
    let sender = w.python(
        &format!("{PY_PATTERN}{PY_SENDER}"),
        &[&STACK.to_string(), "5001", &BYTES.to_string()],
    );
    let transfer = async {
        let (mut stream, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), IpAddr::V4(HOST));
        let block = block();
        let mut buf = vec![0u8; 256 << 10];
        let (mut n, mut bad) = (0usize, None);
        loop {
            let k = stream.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            for (i, &b) in buf[..k].iter().enumerate() {
                if bad.is_none() && b != block[(n + i) % P] {
                    bad = Some(n + i);
                }
            }
            n += k;
        }
        stream.shutdown().await.unwrap();
        (n, bad)
    };
    let (n, bad) = tokio::time::timeout(Duration::from_secs(60), transfer)
        .await
        .expect("16 MB from the kernel within 60 s");
    assert_eq!(n, BYTES);
    assert_eq!(bad, None, "first corrupt byte");
    let out = sender.finish(Duration::from_secs(10)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let c = w.counters.snapshot();
    eprintln!("offload counters: {c:?}");
    // The kernel did hand us super-packets, and the stack took them whole (GRO): local data
    // the kernel vouches for (NEEDS_CSUM), so nobody sums it, as Linux's TCP trusts a
    // CHECKSUM_PARTIAL packet; every byte was still checked against the pattern above, and
    // nothing was dropped as malformed.
    assert!(c.gso_packets_in > 0, "{c:?}");
    assert_eq!(c.gso_packets_whole, c.gso_packets_in, "{c:?}");
    assert_eq!(c.rx_dropped, 0, "{c:?}");
    let stats = w.stack.stats();
    assert!(stats.checksum_offloaded >= c.gso_packets_whole, "{stats:?}");
    assert_eq!(stats.drop_checksum, 0, "{stats:?}");
    // Most of the data came in them: far fewer segments than MSS-sized pieces of it.
    assert!(
        (stats.segments_in as usize) < BYTES / 1448 / 2,
        "{} segments for {BYTES} bytes",
        stats.segments_in
    );
}

#[tokio::test]
async fn synack_super_packets_reach_the_kernel_intact() {
    if !require_tun("synack_super_packets_reach_the_kernel_intact") {
        return;
    }
    let w = World::new("synack-offload-tx");
    let csum_errors = w.tcp_mib("InCsumErrors").await;
    let sink = w.python(
        &format!("{PY_PATTERN}{PY_SINK}"),
        &[&HOST.to_string(), "5002"],
    );
    w.wait_listening(5002).await;

    let transfer = async {
        let mut stream = TcpStream::connect(&w.stack, SocketAddr::new(IpAddr::V4(HOST), 5002))
            .await
            .unwrap();
        stream.write_all(&pattern_of(BYTES)).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    };
    tokio::time::timeout(Duration::from_secs(60), transfer)
        .await
        .expect("16 MB to the kernel within 60 s");
    let out = sink.finish(Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), format!("{BYTES} intact"));

    let c = w.counters.snapshot();
    eprintln!("offload counters: {c:?}");
    assert!(c.super_packets_out > 0, "{c:?}");
    assert!(c.segments_coalesced >= 2 * c.super_packets_out, "{c:?}");
    // The stack built most of them itself (segmentation offload), not the device.
    assert!(2 * c.super_packets_built > c.super_packets_out, "{c:?}");
    // Most of the data went out in super-packets.
    assert!(c.segments_coalesced as usize * 1448 >= BYTES / 2, "{c:?}");
    assert_eq!(c.tx_dropped, 0, "{c:?}");
    // The kernel verified (or trusted, as CHECKSUM_PARTIAL) everything we wrote.
    assert_eq!(w.tcp_mib("InCsumErrors").await, csum_errors);
}

/// Connects to the stack, checks everything it receives against the pattern, prints the
/// count and the verdict.
const PY_RECEIVER: &str = "import socket, sys\n\
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)\n\
n = 0; ok = True\n\
while True:\n    d = s.recv(1 << 20)\n    if not d: break\n    o = n % P\n    ok = ok and d == big[o:o + len(d)]\n    n += len(d)\n\
print(n, 'intact' if ok else 'corrupt', flush=True)\n";

/// An ECN connection's super-segments reach the kernel too. The kernel's client asks for
/// ECN (`tcp_ecn` 1) and the stack agrees (RFC 3168 §6.1.1); nft drops every 40th packet
/// of what the stack sends, so the stack cuts its window again and again, and the first
/// new data after each cut carries CWR (§6.1.2), in a super-segment. The device used to
/// refuse such a packet: 64 KiB lost at every cut, CWR with it. Now every byte arrives and
/// the device drops nothing.
#[tokio::test]
async fn ecn_super_segments_reach_the_kernel_after_a_reduction() {
    let test = "ecn_super_segments_reach_the_kernel_after_a_reduction";
    if !require_tun(test) || !kernel_support::require_tool(test, "nft") {
        return;
    }
    let w = World::new("synack-offload-ecn");
    w.run("sysctl", &["-qw", "net.ipv4.tcp_ecn=1"]).await;
    let out = w
        .run(
            "nft",
            &["add table ip synack_ecn; \
               add chain ip synack_ecn input { type filter hook input priority 0; }; \
               add rule ip synack_ecn input iifname synack0 tcp sport 5003 \
               numgen inc mod 40 == 39 counter drop; \
               list ruleset"],
        )
        .await;
    assert!(out.contains("synack_ecn"), "nft: {out}");
    // Every 40th, not one in 40 at random: 8 MB leave in about 140 super-packets, and at
    // random none of them was dropped in about one run in 30 (no cut, no CWR).
    let listener = TcpListener::bind(&w.stack, SocketAddr::new(IpAddr::V4(STACK), 5003))
        .await
        .unwrap();
    const N: usize = 8 << 20;
    let receiver = w.python(
        &format!("{PY_PATTERN}{PY_RECEIVER}"),
        &[&STACK.to_string(), "5003"],
    );
    let transfer = async {
        let (mut stream, _) = listener.accept().await.unwrap();
        stream.write_all(&pattern_of(N)).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(90), transfer)
        .await
        .expect("8 MB to the kernel within 90 s");
    let out = receiver.finish(Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), format!("{N} intact"));
    let c = w.counters.snapshot();
    let stats = w.stack.stats();
    eprintln!("offload counters: {c:?}; cwr sent {}", stats.ecn_cwr_sent);
    assert!(
        stats.ecn_cwr_sent > 0,
        "no window reduction was signalled: {stats:?}"
    );
    assert!(c.super_packets_built > 0, "{c:?}");
    assert_eq!(c.tx_dropped, 0, "{c:?}");
}

/// The Internet checksum (RFC 1071) of `data` plus an unfolded `initial` sum.
fn inet_checksum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = initial;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A segment the device holds to glue to the next is written at `poll_flush`, which the driver
/// calls after every burst of sends; nothing else has to come along for it.
#[tokio::test]
async fn a_held_segment_is_written_at_the_flush() {
    use std::future::poll_fn;
    use std::task::{Context, Poll, Waker};
    use synack_core::Transmit;
    use synack_tokio::Device;

    if !require_tun("a_held_segment_is_written_at_the_flush") {
        return;
    }
    let ns = NetNs::new("synack-offload-hold").unwrap();
    let mut tun = OffloadTun::create_in(&ns, &TunConfig::default()).unwrap();
    let counters = tun.counters();
    // ACK + 100 bytes from 198.18.0.2:40000 to a closed kernel port: a coalescing candidate,
    // which the kernel answers with an RST once it arrives (RFC 9293 §3.10.7.1).
    let mut p = vec![0x45, 0, 0, 140, 0, 1, 0x40, 0, 64, 6, 0, 0];
    p.extend_from_slice(&STACK.octets());
    p.extend_from_slice(&HOST.octets());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&9u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
    p.extend(std::iter::repeat_n(b'x', 100));
    let ip_sum = inet_checksum(0, &p[..20]);
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let pseudo: u32 = [&p[12..14], &p[14..16], &p[16..18], &p[18..20]]
        .iter()
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>()
        + 6
        + 120;
    let tcp_sum = inet_checksum(pseudo, &p[20..]);
    p[36..38].copy_from_slice(&tcp_sum.to_be_bytes());

    let mut cx = Context::from_waker(Waker::noop());
    let plain = Transmit::new(p.len());
    assert!(matches!(
        tun.poll_send(&mut cx, &p, &plain),
        Poll::Ready(Ok(()))
    ));
    // Held in the batch until the burst is over.
    assert_eq!(counters.snapshot().packets_out, 0);
    assert!(matches!(tun.poll_flush(&mut cx), Poll::Ready(Ok(()))));
    assert_eq!(counters.snapshot().packets_out, 1);

    // The kernel's RST proves it arrived intact.
    let mut buf = vec![0u8; 2048];
    let rst = tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..20 {
            let n = poll_fn(|cx| tun.poll_recv(cx, &mut buf)).await.unwrap().len;
            let pkt = &buf[..n];
            if n >= 40 && pkt[9] == 6 && pkt[20..22] == 9u16.to_be_bytes() && pkt[33] & 0x04 != 0 {
                return true;
            }
        }
        false
    })
    .await
    .expect("an RST within 5 s");
    assert!(rst, "no RST from the kernel");
    let c = counters.snapshot();
    assert_eq!((c.packets_out, c.super_packets_out), (1, 0), "{c:?}");
}
