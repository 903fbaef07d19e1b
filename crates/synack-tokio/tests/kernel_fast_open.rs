//! TCP Fast Open's server side against the Linux kernel's client, over a TUN device in a
//! namespace of its own (kernel 198.18.0.1, synack 198.18.0.2): the kernel's first connect
//! asks for a cookie, its second sends the request in the SYN with it, and the synack
//! listener answers before the handshake's final ACK.

mod kernel_support;

use std::time::Duration;

use kernel_support::{stack_addr, Net, STACK};
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
