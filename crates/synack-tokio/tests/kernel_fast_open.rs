//! TCP Fast Open against the Linux kernel, over a TUN device in a namespace of its own
//! (kernel 198.18.0.1, synack 198.18.0.2). Server side: the kernel's first connect asks for
//! a cookie, its second sends the request in the SYN with it, and the synack listener
//! answers before the handshake's final ACK. Client side: synack's `TCP_FASTOPEN_CONNECT`
//! gets a cookie from a kernel Fast Open listener, then sends its second request in the
//! SYN, which the kernel counts as taken (`TCPFastOpenPassive`).

mod kernel_support;

use std::time::Duration;

use kernel_support::{host, stack_addr, Net, HOST, STACK};
use synack_tokio::netns::require_tun;
use synack_tokio::TcpSocket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Two connects with `TCP_FASTOPEN_CONNECT` (Linux 4.11+): each sends "hello N" and prints
/// the reply.
const CLIENT: &str = r#"
import socket, sys
TCP_FASTOPEN_CONNECT = 30
for i in range(2):
    s = socket.socket()
    s.settimeout(10)
    s.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b"hello %d" % i)
    print(s.recv(100).decode())
    s.close()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_fast_open_client_sends_its_request_in_the_syn() {
    if !require_tun("kernel_fast_open_client_sends_its_request_in_the_syn") {
        return;
    }
    let net = Net::new("synack-tfo", synack_core::Config::default(), None);
    let socket = TcpSocket::new_v4(&net.stack).unwrap();
    socket.set_fast_open(16).unwrap();
    assert_eq!(socket.fast_open().unwrap(), 16);
    socket.bind(stack_addr(8080)).unwrap();
    let listener = socket.listen(16).unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 100];
            let n = stream.read(&mut buf).await.unwrap();
            let reply = format!("re: {}", String::from_utf8_lossy(&buf[..n]));
            stream.write_all(reply.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
        }
    });
    let client = net.python(CLIENT, &[&STACK.to_string(), "8080"]);
    let out = client.finish(Duration::from_secs(30)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "re: hello 0\nre: hello 1");
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("server done")
        .unwrap();
    let stats = net.stack.stats();
    assert_eq!(stats.fast_open_cookie_requests, 1, "{stats:?}");
    assert_eq!(
        stats.fast_open_passive, 1,
        "the second SYN's data was taken: {stats:?}"
    );
    assert_eq!(stats.fast_open_passive_fail, 0);
}

/// A kernel Fast Open listener (`net.ipv4.tcp_fastopen` 3 in the namespace, `TCP_FASTOPEN`
/// on the socket) that echoes one request on each of two connections, then prints the
/// namespace's `TcpExt` counters for Fast Open as `name value` lines.
const SERVER: &str = r#"
import socket, sys
open("/proc/sys/net/ipv4/tcp_fastopen", "w").write("3")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 16)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
for i in range(2):
    c, _ = s.accept()
    c.settimeout(10)
    c.sendall(c.recv(100))
    c.close()
lines = [l.split() for l in open("/proc/net/netstat") if l.startswith("TcpExt:")]
for name, value in zip(lines[0][1:], lines[1][1:]):
    if name.startswith("TCPFastOpen"):
        print(name, value)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_open_connect_sends_its_request_in_the_syn_to_the_kernel() {
    if !require_tun("fast_open_connect_sends_its_request_in_the_syn_to_the_kernel") {
        return;
    }
    let net = Net::new("synack-tfoc", synack_core::Config::default(), None);
    let server = net.python(SERVER, &[&HOST.to_string(), "8081"]);
    net.wait_listening(8081).await;
    let mut syn_data = Vec::new();
    for round in 0..2u8 {
        let socket = TcpSocket::new_v4(&net.stack).unwrap();
        socket.set_fast_open_connect(true).unwrap();
        let mut c = socket.connect(host(8081)).await.unwrap();
        let request = format!("request {round}");
        c.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut reply))
            .await
            .expect("the reply in time")
            .unwrap();
        assert_eq!(reply, request.as_bytes());
        // TCPI_OPT_SYN_DATA: the kernel's SYN-ACK acknowledged the data in our SYN.
        syn_data.push(c.info().unwrap().options & 32 != 0);
    }
    let out = server.finish(Duration::from_secs(10)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(syn_data, [false, true], "{stdout}");
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counter = |name: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    assert_eq!(counter("TCPFastOpenCookieReqd "), 1, "{stdout}");
    assert_eq!(
        counter("TCPFastOpenPassive "),
        1,
        "the kernel took the second SYN's data: {stdout}"
    );
    assert_eq!(counter("TCPFastOpenPassiveFail "), 0, "{stdout}");
}
