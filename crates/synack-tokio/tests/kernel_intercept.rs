//! Transparent mode against the kernel: the namespace routes 198.19.0.0/16 (addresses the
//! stack does not own) into the TUN, the kernel's python3 clients dial them, and the stack
//! intercepts each SYN and accepts, refuses, answers unreachable or drops it.

mod kernel_support;

use std::time::Duration;

use kernel_support::{stack_addr, Net, Proc, HOST};
use synack_tokio::netns::require_tun;
use synack_tokio::{InterceptConfig, TcpListener, Unreachable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

/// A python3 client in the namespace: connects to ADDR:PORT with a timeout, sends a line,
/// prints what comes back, or the errno of the failure as `ERR <name>`.
const CLIENT: &str = r#"
import errno, socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    peer = s.getpeername()[0]
    s.sendall(b"hello through the proxy\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    print("OK", data.decode().strip(), peer)
except socket.timeout:
    print("ERR timeout")
except OSError as e:
    print("ERR", errno.errorcode.get(e.errno, e.errno))
"#;

fn net(test: &str) -> Net {
    let mut config = synack_core::Config::default();
    config.intercept(Some(InterceptConfig {
        decision_timeout: Duration::from_secs(10),
        ..InterceptConfig::default()
    }));
    let net = Net::new(test, config, None);
    let out = net
        .ns
        .command("ip")
        .args(["route", "add", "198.19.0.0/16", "dev", "synack0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    net
}

fn client(net: &Net, addr: &str, port: u16, timeout_secs: u32) -> Proc {
    net.python(
        CLIENT,
        &[addr, &port.to_string(), &timeout_secs.to_string()],
    )
}

async fn said(p: Proc) -> String {
    let out = p.finish(Duration::from_secs(20)).await;
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Accepted: the stream's local address is the one the client dialled, data flows both
/// ways, and the client sees that address as its peer. A listener on the stack's own
/// address keeps working beside the interception.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_client_reaches_any_address_through_an_accepted_syn() {
    let test = "kernel_client_reaches_any_address_through_an_accepted_syn";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    let net = net("synack-icpt-ok");
    let interceptor = net.stack.intercept().unwrap();
    let listener = TcpListener::bind(&net.stack, stack_addr(7)).await.unwrap();

    let c = client(&net, "198.19.4.5", 443, 10);
    let syn = within(10, interceptor.next()).await.unwrap();
    assert_eq!(syn.local_addr(), "198.19.4.5:443".parse().unwrap());
    assert_eq!(syn.peer_addr().ip(), HOST);
    assert_eq!(syn.info().mss, Some(1460));
    let mut stream = within(10, syn.accept()).await.unwrap();
    assert_eq!(
        stream.local_addr().unwrap(),
        "198.19.4.5:443".parse().unwrap()
    );
    let mut got = Vec::new();
    within(10, stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"hello through the proxy\n");
    stream.write_all(b"answer from 198.19.4.5").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(said(c).await, "OK answer from 198.19.4.5 198.19.4.5");

    // The ordinary listener on 198.18.0.2:7 still takes its own connections.
    let c = client(&net, "198.18.0.2", 7, 10);
    let (mut s, _) = within(10, listener.accept()).await.unwrap();
    let mut got = Vec::new();
    within(10, s.read_to_end(&mut got)).await.unwrap();
    s.write_all(b"from the listener").await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(said(c).await, "OK from the listener 198.18.0.2");
    drop(s);
    within(10, net.stack.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
}

/// Refused with an RST: the kernel's connect fails with ECONNREFUSED. Answered unreachable:
/// the error for the reason given (EHOSTUNREACH, ENETUNREACH, ...). Dropped: the client's
/// connect times out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_client_sees_refused_unreachable_and_dropped() {
    let test = "kernel_client_sees_refused_unreachable_and_dropped";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    let net = net("synack-icpt-no");
    let interceptor = net.stack.intercept().unwrap();

    let c = client(&net, "198.19.0.1", 80, 10);
    within(10, interceptor.next())
        .await
        .unwrap()
        .refuse()
        .unwrap();
    assert_eq!(said(c).await, "ERR ECONNREFUSED");

    // Each reason the application gives, as the kernel's connect reports it
    // (`icmp_err_convert`): a filter's "communication administratively prohibited" is
    // EHOSTUNREACH over IPv4.
    for (i, (why, errno)) in [
        (Unreachable::Host, "EHOSTUNREACH"),
        (Unreachable::Network, "ENETUNREACH"),
        (Unreachable::Port, "ECONNREFUSED"),
        (Unreachable::Prohibited, "EHOSTUNREACH"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = client(&net, &format!("198.19.0.{}", 20 + i), 80, 10);
        let sent = within(10, interceptor.next())
            .await
            .unwrap()
            .unreachable(why)
            .unwrap();
        assert!(sent, "{why:?}");
        assert_eq!(said(c).await, format!("ERR {errno}"), "{why:?}");
    }

    // Dropped, and its retransmissions dropped too: the client gives up on its own.
    let c = client(&net, "198.19.0.3", 80, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Ok(syn)) = tokio::time::timeout_at(deadline, interceptor.next()).await {
        assert_eq!(syn.local_addr(), "198.19.0.3:80".parse().unwrap());
        drop(syn);
    }
    assert_eq!(said(c).await, "ERR timeout");
    let stats = net.stack.stats();
    assert!(stats.intercepted_syns >= 3, "{stats:?}");
    assert_eq!(stats.intercept_unreachable_sent, 4);
}

/// `Stack::shutdown` refuses what transparent mode holds, as a closing listener resets what
/// it had not handed out: a SYN handed to the application and not decided on, one still
/// queued, and one that arrives later all get an RST (the kernel's connect fails with
/// ECONNREFUSED, not a timeout), and `Interceptor::next` fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_held_and_later_syns() {
    let test = "shutdown_refuses_held_and_later_syns";
    if !require_tun(test) || !kernel_support::require_tool(test, "python3") {
        return;
    }
    let net = net("synack-icpt-shut");
    let interceptor = net.stack.intercept().unwrap();

    let taken = client(&net, "198.19.0.7", 80, 10);
    let syn = within(10, interceptor.next()).await.unwrap();
    assert_eq!(syn.local_addr(), "198.19.0.7:80".parse().unwrap());
    let queued = client(&net, "198.19.0.8", 80, 10);
    // Bounded: until the second SYN is held too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while net.stack.stats().intercepted_syns < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "second SYN not held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    within(10, net.stack.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(said(taken).await, "ERR ECONNREFUSED");
    assert_eq!(said(queued).await, "ERR ECONNREFUSED");
    let e = within(10, interceptor.next()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
    let e = within(10, syn.accept()).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");

    let later = client(&net, "198.19.0.9", 80, 10);
    assert_eq!(said(later).await, "ERR ECONNREFUSED");
}
