//! synack's TCP against the Linux kernel's, over a TUN device, each test in a network
//! namespace of its own on 198.18.0.0/24 (kernel 198.18.0.1, synack 198.18.0.2).
//!
//! What is on the wire is checked with tshark, not with synack's own parser.

mod kernel_support;

use std::io;
use std::time::{Duration, Instant};

use kernel_support::{
    host, pattern, require_tool, snd_mss_becomes, stack_addr, tshark, Net, ECHO_CLIENTS, HOST,
    STACK,
};
use synack_tokio::netns::require_tun;
use synack_tokio::{TcpListener, TcpStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn config() -> synack_core::Config {
    synack_core::Config::default()
}

/// Bounds every test's wait on the stack, so a hang fails instead of stalling the suite.
async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

// ---- connection set-up and failure -------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_closed_port_refuses_at_once() {
    if !require_tun("kernel_closed_port_refuses_at_once") {
        return;
    }
    let net = Net::new("synack-refused", config(), None);
    let start = Instant::now();
    // Nothing listens on port 9: the kernel answers our SYN with RST (RFC 9293 §3.10.7.1).
    let Err(err) = within(10, TcpStream::connect(&net.stack, host(9))).await else {
        panic!("connect to a closed port succeeded");
    };
    let elapsed = start.elapsed();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // A retransmitted SYN would come after 2 s; the RST answers the first.
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_silent_port_times_out_after_syn_retries() {
    let test = "kernel_silent_port_times_out_after_syn_retries";
    if !require_tun(test) || !require_tool(test, "nft") || !require_tool(test, "tshark") {
        return;
    }
    let mut cfg = config();
    cfg.syn_retries(2);
    let net = Net::new("synack-silent", cfg, Some("silent.pcap"));
    // The kernel drops SYNs to port 9999 without a word, like a host behind a firewall.
    net.nft(
        "add table inet synack_test; \
         add chain inet synack_test input { type filter hook input priority 0; }; \
         add rule inet synack_test input tcp dport 9999 drop",
    )
    .await;

    let start = Instant::now();
    let Err(err) = within(30, TcpStream::connect(&net.stack, host(9999))).await else {
        panic!("connect through a drop rule succeeded");
    };
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    // SYN RTO 2 s, doubled per retry: SYNs at 0, 2, 6 s, and the last one's 8 s run out at 14.
    assert!(
        (13.5..15.5).contains(&elapsed),
        "timed out after {elapsed} s"
    );

    // The pcap is flushed when the device goes idle; retry briefly until it is.
    let pcap = net.dir.path().join("silent.pcap");
    let filter = format!("ip.src == {STACK} && tcp.dstport == 9999 && tcp.flags.syn == 1");
    let mut syns = Vec::new();
    for _ in 0..20 {
        syns = tshark(&pcap, &filter, &["frame.time_epoch"]).await;
        if syns.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let times: Vec<f64> = syns
        .iter()
        .map(|row| row[0].parse().expect("time"))
        .collect();
    assert_eq!(times.len(), 3, "SYNs at {times:?}");
    let offsets: Vec<f64> = times.iter().map(|t| t - times[0]).collect();
    for (got, want) in offsets.iter().zip([0.0, 2.0, 6.0]) {
        assert!((got - want).abs() < 0.3, "SYN offsets {offsets:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_sees_our_handshake_options_and_valid_checksums() {
    let test = "kernel_sees_our_handshake_options_and_valid_checksums";
    if !require_tun(test) || !require_tool(test, "tshark") {
        return;
    }
    let net = Net::new("synack-options", config(), Some("options.pcap"));
    let server = net.python(
        "import socket, sys\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind((sys.argv[1], 8001)); s.listen(1)\n\
         c, _ = s.accept(); c.sendall(b'hello from the kernel'); c.close()\n",
        &[&HOST.to_string()],
    );
    net.wait_listening(8001).await;

    let mut stream = within(10, TcpStream::connect(&net.stack, host(8001)))
        .await
        .expect("connect");
    assert_eq!(stream.peer_addr().unwrap(), host(8001));
    assert_eq!(stream.local_addr().unwrap().ip(), STACK);
    let mut got = Vec::new();
    within(10, stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"hello from the kernel");
    drop(stream);
    let server = server.finish(Duration::from_secs(10)).await;
    assert!(server.status.success(), "{server:?}");

    let pcap = net.dir.path().join("options.pcap");
    // Our SYN: what tshark (not our parser) reads in it.
    let syn_filter = format!("ip.src == {STACK} && tcp.flags.syn == 1 && tcp.flags.ack == 0");
    let fields = [
        "tcp.options.mss_val",
        "tcp.options.sack_perm",
        "tcp.options.timestamp.tsval",
        "tcp.options.wscale.shift",
        "tcp.checksum.status",
        "ip.checksum.status",
    ];
    let mut syn = Vec::new();
    for _ in 0..20 {
        syn = tshark(&pcap, &syn_filter, &fields).await;
        let ours_fin = tshark(
            &pcap,
            &format!("ip.src == {STACK} && tcp.flags.fin == 1"),
            &["frame.number"],
        )
        .await;
        if !syn.is_empty() && !ours_fin.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(syn.len(), 1, "{syn:?}");
    let syn = &syn[0];
    assert_eq!(syn[0], "1460", "MSS for MTU 1500 (RFC 9293 §3.7.1)");
    assert!(!syn[1].is_empty(), "no SACK-permitted option");
    assert!(!syn[2].is_empty(), "no timestamp option");
    assert!(!syn[3].is_empty(), "no window-scale option");
    assert_eq!((syn[4].as_str(), syn[5].as_str()), ("1", "1"), "checksums");

    // Every packet we sent has good IP and TCP checksums (status 1 = good), and there were
    // some.
    let ours = tshark(
        &pcap,
        &format!("ip.src == {STACK} && tcp"),
        &["tcp.checksum.status", "ip.checksum.status"],
    )
    .await;
    assert!(ours.len() >= 3, "{ours:?}");
    for row in &ours {
        assert_eq!(row, &["1", "1"], "bad checksum in {ours:?}");
    }

    // As Linux numbers a connection's packets: DF on each, and IPv4 identifications one
    // apart, from the SYN on (as tshark reads them).
    let ours = format!("ip.src == {STACK} && tcp");
    let ids = tshark(&pcap, &ours, &["ip.id"]).await;
    let with_df = tshark(&pcap, &format!("{ours} && ip.flags.df == 1"), &["ip.id"]).await;
    assert_eq!(with_df, ids, "DF on each");
    let parsed: Vec<u16> = ids
        .iter()
        .map(|row| u16::from_str_radix(row[0].trim_start_matches("0x"), 16).expect("ip.id"))
        .collect();
    assert!(
        parsed.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{ids:?}"
    );
}

/// The stack follows its TUN's MTU, as the kernel's sockets follow their device's: after
/// `ip link set dev synack0 mtu 1280` an open connection's next segments fit 1280 bytes,
/// and a new connection's SYN offers MSS 1240; after `mtu 1500` the open connection's
/// segments are full-sized again. tshark reads the sizes; the kernel's server echoes the
/// bytes back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_link_mtu_changes_are_followed() {
    let test = "kernel_link_mtu_changes_are_followed";
    if !require_tun(test) || !require_tool(test, "tshark") {
        return;
    }
    const PHASE: usize = 30_000;
    let net = Net::new("synack-mtu", config(), Some("mtu.pcap"));
    // Two connections, each read to its end and echoed back whole, on a thread of its own.
    let server = net.python(
        "import socket, sys, threading\n\
         def serve(c):\n\
         \x20   data = bytearray()\n\
         \x20   while True:\n\
         \x20       b = c.recv(65536)\n\
         \x20       if not b: break\n\
         \x20       data += b\n\
         \x20   c.sendall(data); c.close()\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind((sys.argv[1], 8010)); s.listen(2)\n\
         ts = []\n\
         for _ in range(2):\n\
         \x20   t = threading.Thread(target=serve, args=(s.accept()[0],)); t.start(); ts.append(t)\n\
         for t in ts: t.join()\n",
        &[&HOST.to_string()],
    );
    net.wait_listening(8010).await;

    let body = pattern(3 * PHASE, 77);
    let mut a = within(10, TcpStream::connect(&net.stack, host(8010)))
        .await
        .expect("connect");
    let a_port = a.local_addr().unwrap().port();
    assert_eq!(a.info().unwrap().snd_mss, 1448);
    within(10, a.write_all(&body[..PHASE])).await.unwrap();

    let ip = ["link", "set", "dev", "synack0", "mtu"];
    let out = net.run("ip", &[&ip[..], &["1280"]].concat()).await;
    assert!(out.status.success(), "{out:?}");
    snd_mss_becomes(&a, 1228).await;
    within(10, a.write_all(&body[PHASE..2 * PHASE]))
        .await
        .unwrap();
    // A handshake meanwhile offers the MSS the link allows now.
    let mut b = within(10, TcpStream::connect(&net.stack, host(8010)))
        .await
        .expect("connect");
    let b_port = b.local_addr().unwrap().port();
    within(10, b.write_all(b"small")).await.unwrap();
    b.shutdown().await.unwrap();
    let mut echo = Vec::new();
    within(10, b.read_to_end(&mut echo)).await.unwrap();
    assert_eq!(echo, b"small");

    let out = net.run("ip", &[&ip[..], &["1500"]].concat()).await;
    assert!(out.status.success(), "{out:?}");
    snd_mss_becomes(&a, 1448).await;
    within(10, a.write_all(&body[2 * PHASE..])).await.unwrap();
    a.shutdown().await.unwrap();
    let mut echo = Vec::new();
    within(20, a.read_to_end(&mut echo)).await.unwrap();
    assert!(echo == body, "the echo differs ({} bytes)", echo.len());
    let server = server.finish(Duration::from_secs(10)).await;
    assert!(server.status.success(), "{server:?}");
    drop((a, b));

    // tshark's view: each phase's data segments, by relative sequence number.
    let pcap = net.dir.path().join("mtu.pcap");
    let data = format!("ip.src == {STACK} && tcp.srcport == {a_port} && tcp.len > 0");
    let rows = tshark(&pcap, &data, &["tcp.seq", "ip.len"]).await;
    let mut largest = [0usize; 3];
    for row in &rows {
        let seq: usize = row[0].parse().expect("tcp.seq");
        let len: usize = row[1].parse().expect("ip.len");
        let phase = (seq - 1) / PHASE;
        largest[phase.min(2)] = largest[phase.min(2)].max(len);
    }
    assert_eq!(
        largest,
        [1500, 1280, 1500],
        "largest packet of each phase: {rows:?}"
    );
    let syn = format!("ip.src == {STACK} && tcp.srcport == {b_port} && tcp.flags.syn == 1");
    let mss = tshark(&pcap, &syn, &["tcp.options.mss_val"]).await;
    assert_eq!(mss, [["1240"]], "the second SYN's MSS");
}

/// An ICMP error about an open connection is a soft error, as on Linux (`tcp_v4_err` sets
/// `sk_err_soft`): the connection carries on, and `take_error` (SO_ERROR) reads the error
/// once. The kernel rejects our data with "host unreachable" (nft's `reject`) until the
/// rule goes; the data then gets through on its retransmission, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_icmp_error_on_an_open_connection_is_taken_once() {
    let test = "kernel_icmp_error_on_an_open_connection_is_taken_once";
    if !require_tun(test) || !require_tool(test, "nft") {
        return;
    }
    let net = Net::new("synack-softerr", config(), None);
    let server = net
        .kernel_server(
            8012,
            "n = 0\n\
             while True:\n\
             \x20   b = c.recv(65536)\n\
             \x20   if not b: break\n\
             \x20   n += len(b)\n\
             c.sendall(str(n).encode()); c.close()\n",
        )
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8012)))
        .await
        .unwrap();
    within(10, stream.write_all(b"before")).await.unwrap();
    assert!(stream.take_error().unwrap().is_none());

    net.nft(&format!(
        "add table inet synack_softerr; \
         add chain inet synack_softerr input {{ type filter hook input priority 0; }}; \
         add rule inet synack_softerr input ip saddr {STACK} tcp dport 8012 \
         reject with icmp type host-unreachable"
    ))
    .await;
    within(10, stream.write_all(b"during")).await.unwrap();
    let mut taken = None;
    for _ in 0..300 {
        taken = stream.take_error().unwrap();
        if taken.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = taken.expect("no soft error within 3 s");
    assert_eq!(err.raw_os_error(), Some(libc::EHOSTUNREACH), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::HostUnreachable, "{err}");
    assert!(stream.take_error().unwrap().is_none(), "taken twice");

    let out = net
        .run("nft", &["delete", "table", "inet", "synack_softerr"])
        .await;
    assert!(out.status.success(), "{out:?}");
    within(10, stream.write_all(b"after")).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut count = String::new();
    within(20, stream.read_to_string(&mut count)).await.unwrap();
    assert_eq!(count, "17", "bytes the kernel received");
    let server = server.finish(Duration::from_secs(10)).await;
    assert!(server.status.success(), "{server:?}");
}

/// On the default, offloading TUN, what a user captures shows valid checksums where they
/// can be: tcpdump on the device sees every control segment we send (SYN, ACKs, FIN) summed
/// whole (only data is left for the device to finish, as a NIC's offloaded transmissions
/// show), and our own `PcapDevice` recording shows every packet valid, data included,
/// completed as the device completes it, and the kernel's super-packets too, which reach
/// us with their checksums left partial. tshark judges, with checksum validation on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_captures_on_the_offloading_device_show_valid_checksums() {
    let test = "kernel_captures_on_the_offloading_device_show_valid_checksums";
    if !require_tun(test) || !require_tool(test, "tshark") || !require_tool(test, "tcpdump") {
        return;
    }
    let (net, offloads) = Net::recorded_offload("synack-csum", config(), "own.pcap");
    let wire = net.dir.path().join("wire.pcap");
    let mut tcpdump = net.ns.command("tcpdump");
    tcpdump
        .args(["-i", "synack0", "-U", "-nn", "-w"])
        .arg(&wire)
        .arg("tcp");
    let tcpdump = kernel_support::Proc::spawn(tcpdump);
    // tcpdump creates the file once it captures.
    for _ in 0..50 {
        if wire.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = net
        .kernel_server(
            8002,
            "n = 0\n\
             while n < 200000:\n    d = c.recv(65536)\n    if not d: break\n    n += len(d)\n\
             c.sendall(b'x' * 300000 + b'ok %d' % n); c.close()\n",
        )
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8002)))
        .await
        .expect("connect");
    within(20, stream.write_all(&pattern(200_000, 3)))
        .await
        .unwrap();
    let mut got = Vec::new();
    within(10, stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got.len(), 300_009);
    assert!(got[..300_000].iter().all(|&b| b == b'x'));
    assert_eq!(&got[300_000..], b"ok 200000");
    drop(stream);
    let server = server.finish(Duration::from_secs(10)).await;
    assert!(server.status.success(), "{server:?}");

    // Our FIN in both captures before they are read.
    let fin = format!("ip.src == {STACK} && tcp.flags.fin == 1");
    for pcap in [&wire, &net.dir.path().join("own.pcap")] {
        for _ in 0..30 {
            if !tshark(pcap, &fin, &["frame.number"]).await.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(tcpdump);
    let fields = ["tcp.len", "tcp.checksum.status", "ip.checksum.status"];
    let control = tshark(
        &wire,
        &format!("ip.src == {STACK} && tcp && tcp.len == 0"),
        &fields,
    )
    .await;
    // tshark's verdicts, TCP's and IP's checksum status: 1, good.
    let all_valid = |rows: &[Vec<String>], what: &str| {
        for row in rows {
            assert_eq!(row[1..], ["1", "1"], "{what}: {rows:?}");
        }
    };
    assert!(control.len() >= 3, "SYN, ACKs, FIN: {control:?}");
    all_valid(&control, "on the wire");
    let own = tshark(
        &net.dir.path().join("own.pcap"),
        &format!("ip.src == {STACK} && tcp"),
        &fields,
    )
    .await;
    let data = own.iter().filter(|r| r[0] != "0").count();
    assert!(data > 0 && own.len() > data, "{own:?}");
    all_valid(&own, "in the recording");
    // And what the kernel sent us, its data in super-packets when the device offloads,
    // which it hands over with only the pseudo-header summed: recorded with full sums.
    let theirs = tshark(
        &net.dir.path().join("own.pcap"),
        &format!("ip.src == {HOST} && tcp"),
        &fields,
    )
    .await;
    let big = theirs
        .iter()
        .filter(|r| r[0].parse::<usize>().is_ok_and(|n| n > 1460))
        .count();
    assert!(
        !offloads || big > 0,
        "no super-packet from the kernel: {theirs:?}"
    );
    all_valid(&theirs, "the kernel's, in the recording");
    if offloads {
        // The data on the wire was left for the device: what makes this test worth having.
        let partial = tshark(
            &wire,
            &format!("ip.src == {STACK} && tcp.len > 0 && tcp.checksum.status == 0"),
            &["frame.number"],
        )
        .await;
        assert!(!partial.is_empty(), "no partial checksum on the wire");
    }
}

// ---- data transfer -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_clients_echo_through_many_concurrent_connections() {
    if !require_tun("kernel_clients_echo_through_many_concurrent_connections") {
        return;
    }
    let net = Net::new("synack-echo", config(), None);
    let listener = TcpListener::bind(&net.stack, stack_addr(7))
        .await
        .expect("bind");
    assert_eq!(listener.local_addr().unwrap(), stack_addr(7));
    let server = tokio::spawn(async move {
        let mut served = 0usize;
        loop {
            let (mut stream, peer) = listener.accept().await.expect("accept");
            assert_eq!(peer.ip(), HOST);
            served += 1;
            tokio::spawn(async move {
                let (mut rx, mut tx) = stream.split();
                tokio::io::copy(&mut rx, &mut tx).await.expect("echo");
                tx.shutdown().await.expect("FIN");
            });
            if served == 40 {
                return served;
            }
        }
    });
    let conns = "40";
    let client = net.python(ECHO_CLIENTS, &[&STACK.to_string(), "7", conns, "200000"]);
    let out = client.finish(Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "ok 40");
    assert_eq!(within(10, server).await.unwrap(), 40);
    assert!(net.stack.stats().connections_established >= 40);
}

/// At the smallest MTU the stack takes (`synack_core::MIN_MTU`, 88 bytes) TCP with the
/// kernel carries data both ways: the kernel's segments, 48 bytes of data at the least
/// (`tcp_min_snd_mss`) whatever MSS synack offers, just fit, and none comes in fragments
/// (which synack would drop); synack's MSS both ways is 48 too. Below 88 the device and
/// the stack refuse to start (unit tests); at 68, IPv4's own floor, the kernel's data never
/// arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_tcp_at_the_smallest_mtu_carries_data_both_ways() {
    if !require_tun("kernel_tcp_at_the_smallest_mtu_carries_data_both_ways") {
        return;
    }
    for offload in [false, true] {
        let tun_config = synack_tokio::device::TunConfig {
            offload,
            mtu: synack_core::MIN_MTU,
            ..Default::default()
        };
        let net = Net::with_tun(
            "synack-mtu88",
            config(),
            &tun_config,
            &[std::net::IpAddr::V4(STACK)],
        );
        let listener = TcpListener::bind(&net.stack, stack_addr(7)).await.unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.expect("accept");
                // What the MTU leaves for a segment, 48 bytes, is what both ends send: no
                // packet of ours is larger than the link. TCP_INFO counts the data beside
                // the timestamps, when the kernel took them (Linux's mss_cache).
                let info = stream.info().expect("TCP_INFO");
                let mss = 48 - if info.options & 1 != 0 { 12 } else { 0 };
                assert_eq!((info.snd_mss, info.advmss), (mss, mss), "{info:?}");
                tokio::spawn(async move {
                    let (mut rx, mut tx) = stream.split();
                    tokio::io::copy(&mut rx, &mut tx).await.expect("echo");
                    tx.shutdown().await.expect("FIN");
                });
            }
        });
        let client = net.python(ECHO_CLIENTS, &[&STACK.to_string(), "7", "2", "20000"]);
        let out = client.finish(Duration::from_secs(60)).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "offload {offload}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout.trim(), "ok 2", "offload {offload}");
        within(10, server).await.unwrap();
        assert_eq!(net.stack.stats().drop_fragment, 0, "offload {offload}");
    }
}

/// SO_REUSEPORT: two `TcpSocket`s with `set_reuseport` bind one address and listen side
/// by side on a two-worker stack; the kernel's 40 clients are shared between their accept
/// loops (each gets some: all 40 to one has odds of 2^-39) and every echo comes back whole.
/// A third socket without the option is refused the port, as on Linux.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_clients_are_shared_by_reuseport_listeners() {
    if !require_tun("kernel_clients_are_shared_by_reuseport_listeners") {
        return;
    }
    let tun_config = synack_tokio::device::TunConfig {
        mtu: 1500,
        ..Default::default()
    };
    let net = Net::with_tun(
        "synack-reuseport",
        config(),
        &tun_config,
        &[std::net::IpAddr::V4(STACK)],
    );
    assert_eq!(net.stack.workers(), 2);
    let mut loops = Vec::new();
    for _ in 0..2 {
        let socket = synack_tokio::TcpSocket::new_v4(&net.stack).unwrap();
        socket.set_reuseport(true).unwrap();
        assert!(socket.reuseport().unwrap());
        socket.bind(stack_addr(8080)).unwrap();
        let listener = socket.listen(64).unwrap();
        loops.push(tokio::spawn(async move {
            let mut served = 0usize;
            while let Ok(Ok((mut stream, _))) =
                tokio::time::timeout(Duration::from_secs(3), listener.accept()).await
            {
                served += 1;
                tokio::spawn(async move {
                    let (mut rx, mut tx) = stream.split();
                    tokio::io::copy(&mut rx, &mut tx).await.expect("echo");
                    tx.shutdown().await.expect("FIN");
                });
            }
            served
        }));
    }
    let other = synack_tokio::TcpSocket::new_v4(&net.stack).unwrap();
    assert_eq!(
        other.bind(stack_addr(8080)).unwrap_err().kind(),
        io::ErrorKind::AddrInUse
    );
    let client = net.python(ECHO_CLIENTS, &[&STACK.to_string(), "8080", "40", "2000"]);
    let out = client.finish(Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "ok 40");
    let mut served = Vec::new();
    for l in loops {
        served.push(within(30, l).await.unwrap());
    }
    assert_eq!(served.iter().sum::<usize>(), 40, "{served:?}");
    assert!(served.iter().all(|&n| n > 0), "{served:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_peer_keeps_sending_after_our_fin() {
    if !require_tun("kernel_peer_keeps_sending_after_our_fin") {
        return;
    }
    let net = Net::new("synack-halfclose", config(), None);
    // The kernel side reads to EOF (our FIN), then sends 1 MB back on its open half.
    let server = net.python(
        "import socket, sys\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind((sys.argv[1], 8002)); s.listen(1)\n\
         c, _ = s.accept(); c.settimeout(30)\n\
         got = bytearray()\n\
         while True:\n\
         \x20   b = c.recv(65536)\n\
         \x20   if not b: break\n\
         \x20   got += b\n\
         c.sendall(b'got %d:' % len(got) + bytes(got) + bytes(i % 251 for i in range(1 << 20)))\n\
         c.close()\n",
        &[&HOST.to_string()],
    );
    net.wait_listening(8002).await;

    let mut stream = within(10, TcpStream::connect(&net.stack, host(8002)))
        .await
        .expect("connect");
    let hello = pattern(100_000, 7);
    within(20, stream.write_all(&hello)).await.unwrap();
    within(10, stream.shutdown()).await.unwrap();
    let mut got = Vec::new();
    within(30, stream.read_to_end(&mut got)).await.unwrap();

    let mut want = format!("got {}:", hello.len()).into_bytes();
    want.extend_from_slice(&hello);
    want.extend((0..1usize << 20).map(|i| (i % 251) as u8));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the data after our FIN differs");
    let out = server.finish(Duration::from_secs(10)).await;
    assert!(out.status.success(), "{out:?}");
}

// ---- ending a program ---------------------------------------------------------------------

/// The kernel's client for the tests below: connects (retrying while the server starts),
/// reads to the end and prints how it ended: `EOF n` after a FIN, `RESET n` after an RST.
/// An RST that comes before `connect` has returned (the server accepted and reset at
/// once, within the client's system call) is reported by `connect` itself, as
/// ECONNRESET: that is `RESET 0`, not a reason to try again.
const READ_TO_END: &str = "import socket, sys, time\n\
    deadline = time.time() + 20\n\
    while True:\n\
    \x20   try:\n\
    \x20       s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)\n\
    \x20       break\n\
    \x20   except ConnectionResetError:\n\
    \x20       print('RESET 0'); sys.exit(0)\n\
    \x20   except OSError:\n\
    \x20       if time.time() > deadline: raise\n\
    \x20       time.sleep(0.05)\n\
    s.settimeout(20)\n\
    n = 0\n\
    try:\n\
    \x20   while True:\n\
    \x20       b = s.recv(1 << 16)\n\
    \x20       if not b: print('EOF', n); break\n\
    \x20       n += len(b)\n\
    except ConnectionResetError:\n\
    \x20   print('RESET', n)\n";

/// How a program in `serve_and_exit` ends, once it has written.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// `Stack::shutdown`, the documented way.
    Shutdown,
    /// Drops everything and returns.
    Return,
    /// Waits until the peer has acknowledged everything written, then returns with the
    /// stream still held (as a task that owns it does when the runtime ends).
    ReturnIdle,
    /// Sets linger 0 (an abort on drop: an RST), drops everything and returns.
    Abort,
}

/// A program on synack that serves one client: writes `len` bytes, then ends as `ending`
/// says, and ends its runtime, as returning from `main` does.
fn serve_and_exit(ns: &synack_tokio::netns::NetNs, multi_thread: bool, len: usize, ending: Ending) {
    let mut builder = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = builder.enable_all().build().unwrap();
    let held = runtime.block_on(async {
        let tun = synack_tokio::device::TunDevice::create_in(
            ns,
            &synack_tokio::device::TunConfig::default(),
        )
        .expect("TUN");
        let stack = synack_tokio::Stack::new(config(), tun, &[STACK.into()]).unwrap();
        let listener = TcpListener::bind(&stack, stack_addr(8100)).await.unwrap();
        let (mut stream, _) = within(30, listener.accept()).await.unwrap();
        within(30, stream.write_all(&vec![7u8; len])).await.unwrap();
        if ending == Ending::Abort {
            stream.set_linger(Some(Duration::ZERO)).unwrap();
        }
        if ending == Ending::ReturnIdle {
            for _ in 0..500 {
                let info = stream.info().unwrap();
                if info.bytes_acked == len as u64 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(stream.info().unwrap().bytes_acked, len as u64);
            // The runtime ends with the stream and listener still held: the driver goes
            // first, as when the task that owns a stream outlives it.
            return Some((stream, listener));
        }
        drop(stream);
        drop(listener);
        if ending == Ending::Shutdown {
            within(60, stack.shutdown(Duration::from_secs(30)))
                .await
                .expect("shutdown");
        }
        None
    });
    // The runtime ends here, with the stack's driver task in it.
    drop(runtime);
    drop(held);
}

/// In a namespace of its own (`name`), the kernel's `READ_TO_END` client against
/// `serve_and_exit`: what the client printed, and how long the whole took.
fn read_while_exiting(
    name: &str,
    multi_thread: bool,
    len: usize,
    ending: Ending,
) -> (String, Duration) {
    let ns = synack_tokio::netns::NetNs::new(name).unwrap();
    let mut client = ns.command("python3");
    client
        .args(["-c", READ_TO_END, &STACK.to_string(), "8100"])
        .stdout(std::process::Stdio::piped());
    let client = client.spawn().unwrap();
    let started = Instant::now();
    serve_and_exit(&ns, multi_thread, len, ending);
    let out = client.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (report, started.elapsed())
}

/// The documented way to end a program: a server writes 8 MiB, calls `Stack::shutdown`,
/// and returns from "main"; the kernel's client gets every byte and a FIN, on both runtime
/// flavours.
#[test]
fn kernel_shutdown_then_exit_delivers_every_byte() {
    let test = "kernel_shutdown_then_exit_delivers_every_byte";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    for multi_thread in [false, true] {
        let (report, _) =
            read_while_exiting("synack-exit", multi_thread, 8 << 20, Ending::Shutdown);
        assert_eq!(
            report,
            format!("EOF {}", 8 << 20),
            "multi_thread {multi_thread}"
        );
    }
}

/// Returning from "main" without it: the stack cannot outlive its process, but it does not
/// leave the client hanging either. The connection is reset as the runtime ends, and the
/// client learns that within seconds, on both runtime flavours.
#[test]
fn kernel_exit_without_shutdown_resets_rather_than_hangs() {
    let test = "kernel_exit_without_shutdown_resets_rather_than_hangs";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    for multi_thread in [false, true] {
        let (report, took) =
            read_while_exiting("synack-exit-rst", multi_thread, 8 << 20, Ending::Return);
        assert!(
            report.starts_with("RESET") || report == format!("EOF {}", 8 << 20),
            "multi_thread {multi_thread}: {report}"
        );
        assert!(took < Duration::from_secs(20));
    }
}

/// Returning from "main" with an idle connection, everything written acknowledged and
/// nothing unread: as Linux closes a process's sockets at exit, the client reads every byte
/// and the end of the stream (a FIN), not a reset, on both runtime flavours.
#[test]
fn kernel_exit_with_an_idle_connection_sends_a_fin() {
    let test = "kernel_exit_with_an_idle_connection_sends_a_fin";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    for multi_thread in [false, true] {
        let (report, took) =
            read_while_exiting("synack-exit-fin", multi_thread, 100_000, Ending::ReturnIdle);
        assert_eq!(report, "EOF 100000", "multi_thread {multi_thread}");
        assert!(took < Duration::from_secs(20));
    }
}

/// Linger 0 and then returning from "main": the RST the drop queued still reaches the
/// client as the runtime ends (the driver hands the device whatever the core has queued,
/// not only the resets of connections left unfinished), on both runtime flavours. A lost
/// RST would leave the client waiting out its 20 s timeout.
#[test]
fn kernel_linger_zero_then_exit_resets_the_client() {
    let test = "kernel_linger_zero_then_exit_resets_the_client";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    for multi_thread in [false, true] {
        let (report, took) =
            read_while_exiting("synack-exit-abort", multi_thread, 1000, Ending::Abort);
        assert!(
            report.starts_with("RESET"),
            "multi_thread {multi_thread}: {report:?} after {took:?}"
        );
        assert!(took < Duration::from_secs(10));
    }
}

/// The device vanishes under a running stack (`ip link del`): every pending operation, and
/// every later one, fails within a second with an error that names the device's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_device_deleted_fails_pending_and_later_operations() {
    let test = "kernel_device_deleted_fails_pending_and_later_operations";
    if !require_tun(test) {
        return;
    }
    let net = Net::new("synack-vanish", synack_core::Config::default(), None);
    let listener = TcpListener::bind(&net.stack, stack_addr(8200))
        .await
        .unwrap();
    let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = net.run("ip", &["link", "del", "synack0"]).await;
    assert!(out.status.success(), "{out:?}");
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(2), accept)
        .await
        .expect("accept still pending 2 s after the device went away")
        .unwrap()
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("device"), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::NetworkDown, "{err}");
    let err = TcpStream::connect(&net.stack, host(80)).await.unwrap_err();
    assert!(err.to_string().contains("device"), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::NetworkDown, "{err}");
}

// ---- the stream API against the kernel -----------------------------------------------------

/// `peek` returns what arrived without consuming it; the reads after it see it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_peek_leaves_the_data_for_the_next_read() {
    let test = "kernel_peek_leaves_the_data_for_the_next_read";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    let net = Net::new("synack-peek", config(), None);
    let server = net
        .kernel_server(8300, "c.sendall(b'hello world'); c.close()\n")
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8300)))
        .await
        .unwrap();
    let mut buf = [0u8; 5];
    let n = within(10, stream.peek(&mut buf)).await.unwrap();
    assert_eq!(&buf[..n], &b"hello"[..n]);
    assert!(n > 0);
    let mut again = [0u8; 5];
    assert_eq!(within(10, stream.peek(&mut again)).await.unwrap(), n);
    assert_eq!(again[..n], buf[..n]);
    let mut all = Vec::new();
    within(10, stream.read_to_end(&mut all)).await.unwrap();
    assert_eq!(all, b"hello world");
    assert!(server
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());
}

/// `readable`/`writable` with `try_read`/`try_write`, against the kernel's echo server;
/// `nodelay` reports what `set_nodelay` set; a healthy stream has no error to take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_try_read_and_try_write_echo() {
    let test = "kernel_try_read_and_try_write_echo";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    let net = Net::new("synack-try", config(), None);
    let server = net
        .kernel_server(
            8301,
            "while True:\n\
             \x20   b = c.recv(65536)\n\
             \x20   if not b: break\n\
             \x20   c.sendall(b)\n\
             c.close()\n",
        )
        .await;
    let stream = within(10, TcpStream::connect(&net.stack, host(8301)))
        .await
        .unwrap();
    assert!(!stream.nodelay().unwrap());
    stream.set_nodelay(true).unwrap();
    assert!(stream.nodelay().unwrap());
    assert!(stream.take_error().unwrap().is_none());
    // Nothing has arrived: try_read would block.
    let mut buf = [0u8; 64];
    assert_eq!(
        stream.try_read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::WouldBlock
    );
    let data = b"ping over try_write";
    let mut sent = 0;
    while sent < data.len() {
        within(10, stream.writable()).await.unwrap();
        match stream.try_write(&data[sent..]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("try_write: {e}"),
        }
    }
    let mut got = Vec::new();
    while got.len() < data.len() {
        within(10, stream.readable()).await.unwrap();
        match stream.try_read(&mut buf) {
            Ok(0) => panic!("EOF before the echo"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("try_read: {e}"),
        }
    }
    assert_eq!(got, data);
    drop(stream);
    assert!(server
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());
}

/// Linger 0: dropping the stream resets the connection, and the kernel's reader sees
/// ECONNRESET, not an orderly EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_linger_zero_drop_resets() {
    let test = "kernel_linger_zero_drop_resets";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    let net = Net::new("synack-linger", config(), None);
    let server = net
        .kernel_server(
            8302,
            "c.settimeout(10)\n\
             n = 0\n\
             try:\n\
             \x20   while True:\n\
             \x20       b = c.recv(65536)\n\
             \x20       if not b: print('EOF', n); break\n\
             \x20       n += len(b)\n\
             except ConnectionResetError:\n\
             \x20   print('RESET', n)\n",
        )
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8302)))
        .await
        .unwrap();
    within(10, stream.write_all(b"before the reset"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.set_linger(Some(Duration::ZERO)).unwrap();
    assert_eq!(stream.linger().unwrap(), Some(Duration::ZERO));
    drop(stream);
    let out = server.finish(Duration::from_secs(15)).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.starts_with("RESET"), "{report}");
    assert!(net.stack.stats().rsts_sent >= 1);
}

/// A `TcpSocket`'s options are on the wire, as the kernel's capture shows them: bound before
/// connecting, its port is the SYN's source; its receive buffer is the SYN's window and sets
/// no scale beyond it; its MSS is the SYN's MSS option; its keepalive timing paces probes
/// that tshark recognises; and a listener built from one takes connections with its backlog.
/// It binds to the TUN's interface by name (SO_BINDTODEVICE; another name is ENODEV, as on
/// Linux) and connects through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_tcp_socket_options_show_on_the_wire() {
    let test = "kernel_tcp_socket_options_show_on_the_wire";
    if !require_tun(test)
        || !kernel_support::require_tool(test, "python3")
        || !kernel_support::require_tool(test, "tshark")
    {
        return;
    }
    let net = Net::new("synack-socket", config(), Some("socket.pcap"));
    let server = net.kernel_server(8400, "time.sleep(4); c.close()\n").await;
    let socket = synack_tokio::TcpSocket::new_v4(&net.stack).unwrap();
    socket.set_recv_buffer_size(20_000).unwrap();
    socket.set_mss(1000).unwrap();
    socket
        .set_keepalive_config(Some(synack_tokio::KeepaliveConfig {
            idle: Duration::from_secs(1),
            interval: Duration::from_millis(500),
            probes: 5,
        }))
        .unwrap();
    socket.bind(stack_addr(41_000)).unwrap();
    assert_eq!(net.stack.interface_name(), Some("synack0"));
    let enodev = socket.bind_device(Some(b"synack9")).unwrap_err();
    assert_eq!(enodev.raw_os_error(), Some(libc::ENODEV));
    assert_eq!(socket.device().unwrap(), None);
    socket.bind_device(Some(b"synack0")).unwrap();
    assert_eq!(socket.device().unwrap().as_deref(), Some(&b"synack0"[..]));
    assert!(socket.keepalive().unwrap());
    let stream = within(10, socket.connect(host(8400))).await.unwrap();
    assert_eq!(stream.local_addr().unwrap(), stack_addr(41_000));
    // Idle: the keepalive probes go out (and the kernel answers them) until it closes.
    let mut stream = stream;
    let mut rest = Vec::new();
    within(10, stream.read_to_end(&mut rest)).await.unwrap();
    drop(stream);
    assert!(server
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());

    // A listener from a socket, with a backlog of 4, and the kernel connecting to it.
    let socket = synack_tokio::TcpSocket::new_v4(&net.stack).unwrap();
    socket.set_mss(900).unwrap();
    socket.bind(stack_addr(8401)).unwrap();
    let listener = socket.listen(4).unwrap();
    let client = net.python(
        "import socket, sys\n\
         c = socket.create_connection((sys.argv[1], 8401), timeout=5); c.close()\n",
        &[&STACK.to_string()],
    );
    let (_accepted, _) = within(10, listener.accept()).await.unwrap();
    assert!(client
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());

    let pcap = net.dir.path().join("socket.pcap");
    let mut syn = Vec::new();
    let mut probes = Vec::new();
    let mut synack = Vec::new();
    for _ in 0..20 {
        syn = kernel_support::tshark(
            &pcap,
            &format!("ip.src == {STACK} && tcp.flags.syn == 1 && tcp.flags.ack == 0"),
            &[
                "tcp.srcport",
                "tcp.window_size_value",
                "tcp.options.mss_val",
                "tcp.options.wscale.shift",
            ],
        )
        .await;
        probes = kernel_support::tshark(
            &pcap,
            &format!("ip.src == {STACK} && tcp.analysis.keep_alive"),
            &["frame.time_relative"],
        )
        .await;
        synack = kernel_support::tshark(
            &pcap,
            &format!("ip.src == {STACK} && tcp.flags.syn == 1 && tcp.flags.ack == 1"),
            &["tcp.options.mss_val"],
        )
        .await;
        if !syn.is_empty() && probes.len() >= 2 && !synack.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(syn.len(), 1, "{syn:?}");
    assert_eq!(syn[0][0], "41000");
    assert_eq!(syn[0][1], "20000", "the SYN's window is the receive buffer");
    assert_eq!(syn[0][2], "1000");
    assert_eq!(syn[0][3], "0", "no scaling for a 20 000-byte buffer");
    assert!(probes.len() >= 2, "keepalive probes: {probes:?}");
    assert_eq!(synack.len(), 1, "{synack:?}");
    assert_eq!(synack[0][0], "900");
}

/// IP_TTL on the wire, as the kernel reads the headers that reach it (nftables counters by
/// TTL): a `TcpSocket`'s TTL marks its SYN and all after, through its FIN; a listener's marks
/// its SYN-ACK and the connection it accepts, through the ACK that takes it to TIME-WAIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_sees_the_ttl_we_set() {
    let test = "kernel_sees_the_ttl_we_set";
    if !require_tun(test)
        || !kernel_support::require_tool(test, "python3")
        || !kernel_support::require_tool(test, "nft")
    {
        return;
    }
    let net = Net::new("synack-ttl", config(), None);
    let rules = format!(
        "add table inet synack_ttl; \
         add chain inet synack_ttl input {{ type filter hook input priority 0; }}; \
         add rule inet synack_ttl input ip saddr {STACK} tcp dport 8500 ip ttl 7 counter comment \"open-7\"; \
         add rule inet synack_ttl input ip saddr {STACK} tcp dport 8500 ip ttl != 7 counter comment \"open-other\"; \
         add rule inet synack_ttl input ip saddr {STACK} tcp sport 8501 ip ttl 9 counter comment \"listen-9\"; \
         add rule inet synack_ttl input ip saddr {STACK} tcp sport 8501 ip ttl != 9 counter comment \"listen-other\""
    );
    net.nft(&rules).await;

    // An active open with TTL 7; the kernel closes first, so we end in LAST-ACK, not
    // TIME-WAIT: every packet of ours is the socket's.
    let server = net
        .kernel_server(8500, "c.sendall(b'hi'); c.close()\n")
        .await;
    let socket = synack_tokio::TcpSocket::new_v4(&net.stack).unwrap();
    assert_eq!(socket.ttl().unwrap(), 64);
    assert_eq!(
        socket.set_ttl(0).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        socket.set_ttl(256).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    socket.set_ttl(7).unwrap();
    let mut stream = within(10, socket.connect(host(8500))).await.unwrap();
    assert_eq!(stream.ttl().unwrap(), 7);
    let mut got = Vec::new();
    within(10, stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"hi");
    stream.write_all(b"bye").await.unwrap();
    drop(stream);
    assert!(server
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());

    // A listener with TTL 9; we close first, so our last ACK takes us to TIME-WAIT.
    let listener = TcpListener::bind(&net.stack, stack_addr(8501))
        .await
        .unwrap();
    listener.set_ttl(9).unwrap();
    assert_eq!(listener.ttl().unwrap(), 9);
    let client = net.python(
        "import socket, sys\n\
         c = socket.create_connection((sys.argv[1], 8501), timeout=5)\n\
         got = b''\n\
         while True:\n\
         \x20   d = c.recv(100)\n\
         \x20   if not d: break\n\
         \x20   got += d\n\
         c.close()\n\
         assert got == b'hello', got\n",
        &[&STACK.to_string()],
    );
    let (mut accepted, _) = within(10, listener.accept()).await.unwrap();
    assert_eq!(accepted.ttl().unwrap(), 9);
    accepted.write_all(b"hello").await.unwrap();
    drop(accepted);
    assert!(client
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());

    // The kernel's FIN has reached us and been answered once the counters show it: our
    // SYN-ACK, data and FIN, and that ACK.
    let mut counts = [0u64; 4];
    for _ in 0..50 {
        counts = [
            net.nft_count("synack_ttl", "input", "open-7").await,
            net.nft_count("synack_ttl", "input", "open-other").await,
            net.nft_count("synack_ttl", "input", "listen-9").await,
            net.nft_count("synack_ttl", "input", "listen-other").await,
        ];
        if counts[2] >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let [open7, open_other, listen9, listen_other] = counts;
    // SYN, the handshake's ACK, and our data and FIN (one segment or two) at the least.
    assert!(open7 >= 3, "{counts:?}");
    assert_eq!(open_other, 0, "{counts:?}");
    // SYN-ACK, our data and FIN (one segment or two), and the last ACK.
    assert!(listen9 >= 3, "{counts:?}");
    assert_eq!(listen_other, 0, "{counts:?}");
}

// ---- readiness: the closed bits -----------------------------------------------------------

/// `ready`'s closed bits against the kernel, in the three ways a connection closes, and the
/// kernel's own epoll bits where it stands where we stood: tokio turns `EPOLLRDHUP` into
/// `READ_CLOSED` and `EPOLLHUP` into both closed bits (mio's mapping), so a kernel socket
/// that has the peer's FIN and not its own reports what our stream reports in that place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_ready_reports_the_closed_bits_as_the_kernel_does() {
    use tokio::io::{Interest, Ready};
    if !require_tun("kernel_ready_reports_the_closed_bits_as_the_kernel_does") {
        return;
    }
    let net = Net::new("synack-ready", config(), None);
    let both = Interest::READABLE | Interest::WRITABLE;
    let all = Ready::READABLE | Ready::READ_CLOSED | Ready::WRITABLE | Ready::WRITE_CLOSED;

    // The kernel's FIN first: our read side is closed, our write side open until our FIN.
    let server = net
        .kernel_server(
            8600,
            "c.shutdown(socket.SHUT_WR)\n\
             c.settimeout(10)\n\
             assert c.recv(10) == b''\n",
        )
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8600)))
        .await
        .unwrap();
    let r = within(10, stream.ready(Interest::READABLE)).await.unwrap();
    assert_eq!(r, Ready::READABLE | Ready::READ_CLOSED);
    assert_eq!(
        within(10, stream.ready(both)).await.unwrap(),
        Ready::READABLE | Ready::READ_CLOSED | Ready::WRITABLE
    );
    stream.shutdown().await.unwrap();
    assert_eq!(within(10, stream.ready(both)).await.unwrap(), all);
    assert!(server
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());

    // Our FIN first: nothing closed here yet (the kernel waits half a second before its
    // FIN, for us to look); the kernel, with our FIN and not its own, reports RDHUP without
    // HUP (READ_CLOSED alone), and HUP once it has shut down too.
    let server = net
        .kernel_server(
            8601,
            "import select\n\
             def events():\n\
             \x20   e = select.epoll()\n\
             \x20   e.register(c.fileno(), select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP)\n\
             \x20   got = e.poll(1)\n\
             \x20   e.close()\n\
             \x20   return got[0][1] if got else 0\n\
             c.settimeout(10)\n\
             assert c.recv(10) == b''\n\
             ev = events()\n\
             assert ev & select.EPOLLRDHUP and not ev & select.EPOLLHUP, ev\n\
             time.sleep(0.5)\n\
             c.shutdown(socket.SHUT_WR)\n\
             ev = events()\n\
             assert ev & select.EPOLLRDHUP and ev & select.EPOLLHUP, ev\n",
        )
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8601)))
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(
        within(10, stream.ready(both)).await.unwrap(),
        Ready::WRITABLE
    );
    let r = within(10, stream.ready(Interest::READABLE)).await.unwrap();
    assert_eq!(r, Ready::READABLE | Ready::READ_CLOSED);
    assert_eq!(within(10, stream.ready(both)).await.unwrap(), all);
    let out = server.finish(Duration::from_secs(10)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The kernel's RST (once our byte shows we are connected): both closed at once, and
    // the read gives the reset.
    let server = net
        .kernel_server(
            8602,
            "import struct\n\
             c.settimeout(10)\n\
             assert c.recv(1) == b'x'\n\
             c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))\n\
             c.close()\n",
        )
        .await;
    let mut stream = within(10, TcpStream::connect(&net.stack, host(8602)))
        .await
        .unwrap();
    stream.write_all(b"x").await.unwrap();
    let r = within(10, stream.ready(Interest::READABLE)).await.unwrap();
    assert!(r.is_read_closed(), "{r:?}");
    assert_eq!(within(10, stream.ready(both)).await.unwrap(), all);
    let mut buf = [0u8; 1];
    assert_eq!(
        stream.try_read(&mut buf).unwrap_err().kind(),
        io::ErrorKind::ConnectionReset
    );
    assert!(server
        .finish(Duration::from_secs(10))
        .await
        .status
        .success());
}

/// A kernel client uploading a request that the server refuses early (HTTP's 413, before
/// the body is read): the server writes its answer and drops the connection with the upload
/// unread, every other time after a shutdown. The client reads the answer whole before the reset, ten times in ten, as from a
/// Linux server, whose `write` sends the answer before `close` resets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_client_gets_an_early_answer_before_the_reset() {
    let test = "kernel_client_gets_an_early_answer_before_the_reset";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    const UPLOADER: &str = r#"
import socket, sys, threading
addr, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
got = 0
for _ in range(rounds):
    s = socket.create_connection((addr, port), timeout=10)
    def upload():
        try:
            s.sendall(b"POST /upload HTTP/1.1\r\ncontent-length: 4000000\r\n\r\n" + b"x" * 4000000)
        except OSError:
            pass
    t = threading.Thread(target=upload)
    t.start()
    answer = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            answer += b
    except ConnectionResetError:
        pass
    t.join()
    s.close()
    if answer.startswith(b"HTTP/1.1 413 "):
        got += 1
    else:
        print("round got", answer[:40])
print("answered", got)
"#;
    let net = Net::new("synack-early", config(), None);
    let listener = TcpListener::bind(&net.stack, stack_addr(8310))
        .await
        .unwrap();
    let rounds = 10;
    let server = tokio::spawn(async move {
        for round in 0..rounds {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 64];
            s.read_exact(&mut head).await.unwrap();
            s.write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            // Every other round as hyper ends a connection: a shutdown, then the drop.
            if round % 2 == 1 {
                s.shutdown().await.unwrap();
            }
            drop(s);
        }
    });
    let client = net.python(UPLOADER, &[&STACK.to_string(), "8310", &rounds.to_string()]);
    let out = client.finish(Duration::from_secs(60)).await;
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("answered {rounds}")), "{report}");
    within(10, server).await.unwrap();
}

/// A program that rebuilds its stack on the same TUN name (a VPN reconnecting): after
/// `shutdown` and the last handle's drop, `Stack::closed` says when the driver has closed
/// the TUN, and the kernel then lets the name be taken again. On a current-thread runtime
/// the driver has not run by the time the handle is dropped: before `closed`, the create
/// failed there with `AlreadyExists`, and nothing said when it would not.
#[tokio::test(flavor = "current_thread")]
async fn kernel_a_tun_name_is_free_once_the_stack_is_closed() {
    if !require_tun("kernel_a_tun_name_is_free_once_the_stack_is_closed") {
        return;
    }
    let ns = synack_tokio::netns::NetNs::new("synack-reopen").unwrap();
    let tun_config = synack_tokio::device::TunConfig::default();
    for round in 0..3 {
        let tun = synack_tokio::device::TunDevice::create_in(&ns, &tun_config)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        let stack = synack_tokio::Stack::new(config(), tun, &[STACK.into()]).unwrap();
        let listener = TcpListener::bind(&stack, stack_addr(8200)).await.unwrap();
        drop(listener);
        within(10, stack.shutdown(Duration::from_secs(5)))
            .await
            .unwrap();
        let closed = stack.closed();
        drop(stack);
        let e = synack_tokio::device::TunDevice::create_in(&ns, &tun_config).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        within(10, closed).await;
    }
}
