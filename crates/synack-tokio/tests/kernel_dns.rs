//! Names looked up through the stack (`integration::hickory`) against a real name server:
//! Debian's dnsmasq, on the kernel's side of a dual-stack TUN in a namespace of the test's
//! own, answering for `synack.test` only (`--local`: anything else there is NXDOMAIN) and
//! logging every query with the address it came from.

mod kernel_support;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use kernel_support::{require_tool, Net, Proc, HOST, HOST6, STACK, STACK6};
use synack_tokio::device::TunConfig;
use synack_tokio::integration::hickory::hickory_resolver::config::{
    NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use synack_tokio::integration::hickory::{resolver, StackResolver, TCP_IDLE_CLOSE};
use synack_tokio::integration::hyper::HyperConnector;
use synack_tokio::netns::require_tun;
use synack_tokio::{lookup_host, Stack, TcpStream};

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

fn require(test: &str) -> bool {
    require_tun(test) && require_tool(test, "dnsmasq") && require_tool(test, "python3")
}

/// How many addresses `many.synack.test` has: enough that the answer (16 bytes each) is
/// past the 512 bytes a DNS message over UDP may have without EDNS (RFC 1035 §4.2.1).
const MANY: u8 = 60;

/// The `many.synack.test` addresses: 198.18.2.1 and up.
fn many() -> BTreeSet<IpAddr> {
    (1..=MANY)
        .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 2, i)))
        .collect()
}

/// A namespace with a dual-stack TUN (kernel 198.18.0.1 and 2001:2::1, the stack .2 and ::2)
/// and dnsmasq on the kernel's addresses, port 53; returns once it answers.
async fn with_dnsmasq(prefix: &str) -> (Net, Proc) {
    let tun_config = TunConfig {
        host_addr6: Some("2001:2::1/64".parse().unwrap()),
        ..TunConfig::default()
    };
    let net = Net::with_tun(
        prefix,
        synack_core::Config::default(),
        &tun_config,
        &[IpAddr::V4(STACK), IpAddr::V6(STACK6)],
    );
    let mut args = vec![
        "--bind-interfaces".to_owned(),
        "--listen-address=198.18.0.1".to_owned(),
        "--listen-address=2001:2::1".to_owned(),
        "--port=53".to_owned(),
        "--host-record=www.synack.test,198.18.0.1,2001:2::1".to_owned(),
        // Its IPv6 address is nobody's: the kernel drops what the stack sends there.
        "--host-record=dual.synack.test,198.18.0.1,2001:2::99".to_owned(),
        // Its AAAA queries are dropped on their way in (`a_name_whose_aaaa_query_...`).
        "--host-record=quiet6.synack.test,198.18.0.1,2001:2::1".to_owned(),
        // An IPv4 name, and the same name under a search domain with an IPv6 address only.
        "--host-record=svc.synack.test,198.18.0.1".to_owned(),
        "--host-record=svc.synack.test.alt.synack.test,2001:2::1".to_owned(),
    ];
    args.extend(
        many()
            .into_iter()
            .map(|ip| format!("--host-record=many.synack.test,{ip}")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dnsmasq = kernel_support::dnsmasq(&net.ns, &args);
    for _ in 0..200 {
        let out = net.run("ss", &["-Hlun", "sport = :53"]).await;
        if String::from_utf8_lossy(&out.stdout).lines().count() >= 2 {
            return (net, dnsmasq);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("dnsmasq did not bind port 53 on both addresses within 10 s");
}

/// A resolver on `stack` asking only `server` (a protocol of the test's choosing), with
/// EDNS or without, and not the host's hosts file.
fn resolver_with(stack: &Stack, server: NameServerConfig, edns0: bool) -> StackResolver {
    let mut options = ResolverOpts::default();
    options.edns0 = edns0;
    options.use_hosts_file = ResolveHosts::Never;
    StackResolver::with_config(
        stack,
        ResolverConfig::from_name_servers(vec![server]),
        options,
    )
    .unwrap()
}

/// dnsmasq's log: every query with the address it came from.
async fn log(dnsmasq: Proc) -> String {
    let out = dnsmasq.terminate(Duration::from_secs(10)).await;
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A resolver on the stack asks dnsmasq over IPv4 and over IPv6 and gets its A and AAAA
/// records; a name the server says does not exist is NXDOMAIN; an answer too long for UDP
/// without EDNS comes truncated and is asked again over TCP, whole; a TCP-only server
/// answers too. dnsmasq's log shows every query came from the stack's own addresses, and
/// which came over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_resolve_through_the_stack() {
    let test = "names_resolve_through_the_stack";
    if !require(test) {
        return;
    }
    let (net, dnsmasq) = with_dnsmasq("synack-dns").await;
    let www: BTreeSet<IpAddr> = [IpAddr::V4(HOST), IpAddr::V6(HOST6)].into();

    for server in [IpAddr::V4(HOST), IpAddr::V6(HOST6)] {
        let r = resolver(&net.stack, &[server]).unwrap();
        let found: BTreeSet<IpAddr> = within(20, r.lookup_ip("www.synack.test."))
            .await
            .unwrap_or_else(|e| panic!("www.synack.test via {server}: {e}"))
            .iter()
            .collect();
        assert_eq!(found, www, "www.synack.test via {server}");

        let missing = within(20, r.lookup_ip("nowhere.synack.test."))
            .await
            .expect_err("a name the server does not have");
        assert!(missing.is_nx_domain(), "nowhere.synack.test: {missing}");
    }

    // Without EDNS, 60 addresses do not fit a UDP answer: dnsmasq sets TC, and only the
    // query again over TCP (RFC 7766 §5) brings them all.
    let r = resolver_with(
        &net.stack,
        NameServerConfig::udp_and_tcp(IpAddr::V4(HOST)),
        false,
    );
    let found: BTreeSet<IpAddr> = within(20, r.lookup_ip("many.synack.test."))
        .await
        .unwrap_or_else(|e| panic!("many.synack.test: {e}"))
        .iter()
        .collect();
    assert_eq!(found, many(), "many.synack.test over TCP");

    // Over TCP alone, too.
    let r = resolver_with(&net.stack, NameServerConfig::tcp(IpAddr::V6(HOST6)), true);
    let found: BTreeSet<IpAddr> = within(20, r.lookup_ip("www.synack.test."))
        .await
        .unwrap_or_else(|e| panic!("www.synack.test over TCP: {e}"))
        .iter()
        .collect();
    assert_eq!(found, www, "www.synack.test over TCP");

    let log = log(dnsmasq).await;
    // dnsmasq answers UDP itself and each TCP connection in a child of its own: the pid in
    // a line's `dnsmasq[PID]:` says which.
    let pid = |line: &str| {
        line.split(['[', ']'])
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
    };
    let main = log
        .lines()
        .find(|l| l.contains(": started,"))
        .and_then(pid)
        .unwrap_or_else(|| panic!("dnsmasq did not say it started:\n{log}"));
    let queries: Vec<&str> = log.lines().filter(|l| l.contains(" query[")).collect();
    for q in &queries {
        let from = q.split(" from ").nth(1).unwrap_or("");
        assert!(
            from == STACK.to_string() || from == STACK6.to_string(),
            "a query not from the stack: {q}"
        );
    }
    let over = |name: &str, tcp: bool| {
        queries
            .iter()
            .filter(|q| q.contains(&format!("query[A] {name} ")))
            .filter(|q| (pid(q) != Some(main)) == tcp)
            .count()
    };
    // www: asked over UDP (of each family's server; hickory asks again when an answer is
    // slow, so at least), and over TCP of the TCP-only one.
    assert!(over("www.synack.test", false) >= 2, "{queries:#?}");
    assert!(over("www.synack.test", true) >= 1, "{queries:#?}");
    // many: asked over UDP, and again over TCP once the answer came truncated.
    assert!(over("many.synack.test", false) >= 1, "{queries:#?}");
    assert!(over("many.synack.test", true) >= 1, "{queries:#?}");
}

/// A kernel HTTP server on both of the kernel's addresses.
const HTTP_SERVER: &str = r#"
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = (self.path + " " + self.headers["Host"] + "\n").encode() * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
S(("::", 8091), H).serve_forever()
"#;

/// With a resolver on the stack, socket calls take host names as tokio::net's do, looked up
/// through the stack: `lookup_host` gives both of www's addresses, `TcpStream::connect` by
/// name reaches the kernel's server, and hyper-util's client fetches a URL by name; a name
/// that does not exist is `NotFound`; a name whose IPv6 address is a black hole connects
/// over IPv4 at once (Happy Eyeballs). Taken away again, a name is `InvalidInput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_calls_and_hyper_take_names_with_a_resolver_on_the_stack() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let test = "socket_calls_and_hyper_take_names_with_a_resolver_on_the_stack";
    if !require(test) {
        return;
    }
    let (net, _dnsmasq) = with_dnsmasq("synack-dns-http").await;
    let _server = net.python(HTTP_SERVER, &[]);
    net.wait_listening(8091).await;
    net.stack
        .set_resolver(Some(resolver(&net.stack, &[IpAddr::V4(HOST)]).unwrap()));

    let found: BTreeSet<SocketAddr> = within(20, lookup_host(&net.stack, "www.synack.test:8091"))
        .await
        .unwrap()
        .collect();
    let www: BTreeSet<SocketAddr> = [
        SocketAddr::new(IpAddr::V4(HOST), 8091),
        SocketAddr::new(IpAddr::V6(HOST6), 8091),
    ]
    .into();
    assert_eq!(found, www);

    let mut stream = within(20, TcpStream::connect(&net.stack, "www.synack.test:8091"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /s HTTP/1.1\r\nHost: www.synack.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    within(20, stream.read_to_end(&mut response)).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(&"/s www.synack.test\n".repeat(1000)),
        "{response}"
    );

    let client = Client::builder(TokioExecutor::new())
        .build::<_, Empty<hyper::body::Bytes>>(HyperConnector::new(&net.stack));
    let response = within(
        20,
        client.get("http://www.synack.test:8091/a".parse().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let body = within(20, response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body, "/a www.synack.test:8091\n".repeat(1000).as_bytes());

    let missing = within(
        20,
        client.get("http://nowhere.synack.test:8091/".parse().unwrap()),
    )
    .await
    .expect_err("a name the server does not have");
    let cause = std::error::Error::source(&missing)
        .and_then(|e| e.downcast_ref::<std::io::Error>())
        .unwrap_or_else(|| panic!("no I/O error under {missing:?}"));
    assert_eq!(cause.kind(), std::io::ErrorKind::NotFound, "{cause}");
    let e = within(
        20,
        TcpStream::connect(&net.stack, ("nowhere.synack.test", 80)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");

    // A name whose IPv6 address leads nowhere: its IPv4 attempt starts 250 ms after the
    // IPv6 one (RFC 8305), rather than after the IPv6 SYN's 246 s of retries. Looked up
    // first, so that the time is the connection's (a lost UDP answer costs hickory 5 s).
    let dual: Vec<SocketAddr> = within(20, lookup_host(&net.stack, "dual.synack.test:8091"))
        .await
        .unwrap()
        .collect();
    assert_eq!(dual.len(), 2, "{dual:?}");
    assert!(dual[0].is_ipv6(), "IPv6 first: {dual:?}");
    let started = tokio::time::Instant::now();
    let stream = within(20, TcpStream::connect(&net.stack, "dual.synack.test:8091"))
        .await
        .unwrap();
    assert_eq!(
        stream.peer_addr().unwrap(),
        SocketAddr::new(IpAddr::V4(HOST), 8091)
    );
    let took = started.elapsed();
    // Not before the attempt delay (the IPv6 attempt went first), and long before the
    // IPv6 SYN's retries end.
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "{took:?} to fall back to IPv4"
    );

    net.stack.set_resolver(None);
    let e = within(20, TcpStream::connect(&net.stack, "www.synack.test:8091"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
}

/// The rule that drops AAAA queries for `quiet6.synack.test` on their way in: a query's
/// question starts 20 bytes into the UDP header (8 of it, 12 of DNS header), with the
/// name's first label, `\x06quiet6`; the name takes 20 bytes (RFC 1035 §4.1.2), so its type
/// is at byte 40, 28 for AAAA (RFC 3596 §2.1).
const DROP_QUIET6_AAAA: &str = "table inet quiet6 {
    chain input {
        type filter hook input priority 0;
        udp dport 53 @th,160,56 0x06717569657436 @th,320,16 28 counter drop comment \"aaaa\"
    }
}
";

/// A name whose AAAA query the name server never answers (a middlebox that drops them, as
/// some broken home routers and VPN gateways do) connects over IPv4 within a moment of the A
/// answer (RFC 8305 §3: the A and AAAA queries go apart, and the A answer waits 50 ms for
/// the AAAA one), not after the resolver's 5 s timeout for the AAAA query; the nft rule's
/// counter shows the AAAA queries were dropped, and dnsmasq's log that the A query came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_whose_aaaa_query_goes_unanswered_connects_over_ipv4_at_once() {
    let test = "a_name_whose_aaaa_query_goes_unanswered_connects_over_ipv4_at_once";
    if !require(test) || !require_tool(test, "nft") {
        return;
    }
    let (net, dnsmasq) = with_dnsmasq("synack-dns-quiet6").await;
    net.nft(DROP_QUIET6_AAAA).await;
    let _server = net.python(HTTP_SERVER, &[]);
    net.wait_listening(8091).await;
    net.stack
        .set_resolver(Some(resolver(&net.stack, &[IpAddr::V4(HOST)]).unwrap()));

    let started = tokio::time::Instant::now();
    let stream = within(
        30,
        TcpStream::connect(&net.stack, "quiet6.synack.test:8091"),
    )
    .await
    .unwrap();
    let took = started.elapsed();
    assert_eq!(
        stream.peer_addr().unwrap(),
        SocketAddr::new(IpAddr::V4(HOST), 8091)
    );
    // The A answer comes in a millisecond or two on this link; 50 ms on top. A second
    // leaves room for a loaded machine and none for hickory's 5 s query timeout.
    assert!(took < Duration::from_secs(1), "{took:?} to connect");

    let dropped = net.nft_count("quiet6", "input", "aaaa").await;
    assert!(dropped >= 1, "no AAAA query dropped");
    drop(stream);
    let log = log(dnsmasq).await;
    assert!(
        log.contains("query[A] quiet6.synack.test from 198.18.0.2"),
        "{log}"
    );
    assert!(!log.contains("query[AAAA] quiet6.synack.test"), "{log}");
}

/// With a search list, a name's A and AAAA queries each walk it, and need not stop at the
/// same name: `svc.synack.test` has an A record only, and the name after it in the list,
/// `svc.synack.test.alt.synack.test`, an AAAA record only. The name is the first that has an
/// address of either family (glibc's `getaddrinfo` and hickory's `lookup_ip` alike), so
/// `lookup_host` gives its IPv4 address alone, and `connect` reaches that one: not the other
/// name's IPv6 address, where a server listens too. Ending in `.`, the name is asked as it
/// is, and the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_list_gives_connect_the_addresses_lookup_host_gives() {
    let test = "a_search_list_gives_connect_the_addresses_lookup_host_gives";
    if !require(test) {
        return;
    }
    let (net, _dnsmasq) = with_dnsmasq("synack-dns-search").await;
    let _server = net.python(HTTP_SERVER, &[]);
    net.wait_listening(8091).await;
    let mut config =
        ResolverConfig::from_name_servers(vec![NameServerConfig::udp_and_tcp(IpAddr::V4(HOST))]);
    config.add_search("alt.synack.test".parse().unwrap());
    let mut options = ResolverOpts::default();
    options.use_hosts_file = ResolveHosts::Never;
    net.stack.set_resolver(Some(
        StackResolver::with_config(&net.stack, config, options).unwrap(),
    ));

    let v4 = SocketAddr::new(IpAddr::V4(HOST), 8091);
    for name in ["svc.synack.test:8091", "svc.synack.test.:8091"] {
        let found: Vec<SocketAddr> = within(20, lookup_host(&net.stack, name))
            .await
            .unwrap()
            .collect();
        assert_eq!(found, [v4], "{name}");
        let stream = within(20, TcpStream::connect(&net.stack, name))
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), v4, "{name}");
    }
}

/// A stack holding a resolver that has used TCP is still freed once its last handle is
/// dropped: hickory keeps a TCP connection to a name server for its next query, and that
/// stream holds the stack, so the connection ends itself after `TCP_IDLE_CLOSE` idle
/// (RFC 7766 §6.2.3). The stack's TUN, which goes with its driver, is then deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_whose_resolver_used_tcp_is_freed_with_its_last_handle() {
    let test = "a_stack_whose_resolver_used_tcp_is_freed_with_its_last_handle";
    if !require(test) {
        return;
    }
    let (net, _dnsmasq) = with_dnsmasq("synack-dns-free").await;
    let r = resolver_with(&net.stack, NameServerConfig::tcp(IpAddr::V4(HOST)), true);
    net.stack.set_resolver(Some(r));
    let found: Vec<SocketAddr> = within(20, lookup_host(&net.stack, "www.synack.test:80"))
        .await
        .unwrap()
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");

    let kernel_support::Net { stack, dir, ns } = net;
    drop(stack);
    let limit = TCP_IDLE_CLOSE + Duration::from_secs(20);
    let started = tokio::time::Instant::now();
    loop {
        let mut cmd = ns.command("ip");
        cmd.args(["link", "show", "synack0"]);
        if !kernel_support::output(cmd).await.status.success() {
            break;
        }
        assert!(
            started.elapsed() < limit,
            "the stack's TUN is still there {limit:?} after its last handle was dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop((dir, ns));
}
