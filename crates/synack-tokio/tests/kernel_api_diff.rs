//! Differential tests: the same sequence of API calls on tokio::net over the Linux kernel
//! (sockets made inside the test's namespace, talking over its loopback to a kernel peer on
//! 198.18.0.1 / 2001:2::1) and on synack-tokio (talking over the TUN to the same kernel
//! peer), outcome for outcome: return values, `io::ErrorKind` and errno, readiness, and what
//! the kernel peer observes.
//!
//! `same_*` tests guard behaviour that agrees. `departs_*` tests guard a difference that
//! synack keeps on purpose (CONFORMANCE.md's "tokio::net on the kernel" lists them, with
//! why): the steps they name differ, and every other step agrees, so that a departure that
//! goes away, or a new one, fails them.

mod kernel_support;

use std::fmt::Debug;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use kernel_support::{Net, HOST, HOST6, STACK, STACK6};
use synack_tokio::netns::require_tun;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest, Ready};

type Outcomes = Vec<(&'static str, String)>;

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The kernel's address (the peer's) of a family.
fn kaddr(v6: bool, port: u16) -> SocketAddr {
    match v6 {
        false => SocketAddr::new(IpAddr::V4(HOST), port),
        true => SocketAddr::new(IpAddr::V6(HOST6), port),
    }
}

/// The subject's own address of a family: the kernel's for tokio::net, the stack's for synack.
fn own(kernel: bool, v6: bool, port: u16) -> SocketAddr {
    match (kernel, v6) {
        (true, _) => kaddr(v6, port),
        (false, false) => SocketAddr::new(IpAddr::V4(STACK), port),
        (false, true) => SocketAddr::new(IpAddr::V6(STACK6), port),
    }
}

/// An address on the link that is nobody's.
fn foreign(v6: bool, port: u16) -> SocketAddr {
    match v6 {
        false => SocketAddr::new("198.18.0.77".parse().unwrap(), port),
        true => SocketAddr::new("2001:2::77".parse().unwrap(), port),
    }
}

fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()?
            .downcast_ref::<synack_core::Error>()
            .map(|i| i.errno())
    })
}

fn show_err(e: &io::Error) -> String {
    // tokio's own WouldBlock (its readiness said no) carries no errno; the kernel's EAGAIN
    // does: the same thing.
    if e.kind() == io::ErrorKind::WouldBlock {
        return "Err(WouldBlock)".into();
    }
    format!("Err({:?}, errno {:?})", e.kind(), errno_of(e))
}

fn show<T: Debug>(r: &io::Result<T>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => show_err(e),
    }
}

/// Errors by kind and errno, successes as `Ok` only (for values that differ by side:
/// addresses, ports).
fn show_ok<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => show_err(e),
    }
}

fn bits(r: Ready) -> String {
    let mut v = Vec::new();
    for (on, name) in [
        (r.is_readable(), "R"),
        (r.is_writable(), "W"),
        (r.is_read_closed(), "RC"),
        (r.is_write_closed(), "WC"),
        (r.is_error(), "ERR"),
    ] {
        if on {
            v.push(name);
        }
    }
    v.join("|")
}

/// Compares the two sides' outcomes, printing both: every step agrees but those named in
/// `departs`, which differ (a departure synack keeps on purpose).
fn compare(kernel: &Outcomes, synack: &Outcomes, departs: &[&str]) {
    eprintln!("kernel: {kernel:#?}\nsynack: {synack:#?}");
    assert_eq!(kernel.len(), synack.len(), "different call counts");
    for step in departs {
        assert!(
            kernel.iter().any(|(what, _)| what == step),
            "no step {step:?}"
        );
    }
    let mut wrong = Vec::new();
    for ((what, k), (_, s)) in kernel.iter().zip(synack) {
        match (k == s, departs.contains(what)) {
            (false, false) => wrong.push(format!("{what}: kernel {k}, synack {s}")),
            (true, true) => wrong.push(format!("{what}: both {k}, where synack departs")),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "differences:\n{}", wrong.join("\n"));
}

// ---- TCP ---------------------------------------------------------------------------------

/// A kernel listener in the namespace (the peer), as tokio's.
fn klisten(net: &Net, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let std = net
        .ns
        .run_in(move || {
            let l = std::net::TcpListener::bind(addr)?;
            l.set_nonblocking(true)?;
            Ok::<_, io::Error>(l)
        })
        .unwrap()?;
    tokio::net::TcpListener::from_std(std)
}

/// A kernel TCP socket made in the namespace.
fn ksocket(net: &Net, v6: bool) -> tokio::net::TcpSocket {
    net.ns
        .run_in(move || match v6 {
            true => tokio::net::TcpSocket::new_v6(),
            false => tokio::net::TcpSocket::new_v4(),
        })
        .unwrap()
        .unwrap()
}

/// A socket under test: tokio's on the kernel (`K`) or synack's (`S`).
#[allow(clippy::large_enum_variant)]
enum Side<K, S> {
    K(K),
    S(S),
}

/// Runs `$e` on either side's socket, bound to `$x`.
macro_rules! on {
    ($s:expr, $x:ident => $e:expr) => {
        match $s {
            Side::K($x) => $e,
            Side::S($x) => $e,
        }
    };
}

/// The stream under test.
type St = Side<tokio::net::TcpStream, synack_tokio::TcpStream>;

async fn connect(net: &Net, kernel: bool, to: SocketAddr) -> io::Result<St> {
    if kernel {
        ksocket(net, to.is_ipv6()).connect(to).await.map(St::K)
    } else {
        synack_tokio::TcpStream::connect(&net.stack, to)
            .await
            .map(St::S)
    }
}

/// A connection from the side under test to a kernel peer on `port`: (subject, peer).
async fn pair(net: &Net, kernel: bool, v6: bool, port: u16) -> (St, tokio::net::TcpStream) {
    let l = klisten(net, kaddr(v6, port)).unwrap();
    let s = within(10, connect(net, kernel, kaddr(v6, port)))
        .await
        .unwrap();
    let (p, _) = within(10, l.accept()).await.unwrap();
    (s, p)
}

/// What a kernel peer reads until the end, an error, or `ms` of silence.
async fn peer_sees(peer: &mut tokio::net::TcpStream, ms: u64) -> String {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_millis(ms), peer.read(&mut buf)).await {
            Err(_) => return format!("{:?}, then nothing", String::from_utf8_lossy(&got)),
            Ok(Ok(0)) => return format!("{:?}, EOF", String::from_utf8_lossy(&got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return format!("{:?}, {}", String::from_utf8_lossy(&got), show_err(&e)),
        }
    }
}

async fn ready_now(s: &St, interest: Interest) -> String {
    match on!(s, x => tokio::time::timeout(Duration::from_millis(200), x.ready(interest)).await) {
        Err(_) => "pending".into(),
        Ok(Ok(r)) => bits(r),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn read_once(s: &mut St, len: usize) -> String {
    let mut buf = vec![0u8; len];
    match on!(s, x => tokio::time::timeout(Duration::from_millis(500), x.read(&mut buf)).await) {
        Err(_) => "pending".into(),
        Ok(Ok(n)) => format!("Ok({n}, {:?})", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn peek_once(s: &St, len: usize) -> String {
    let mut buf = vec![0u8; len];
    match on!(s, x => tokio::time::timeout(Duration::from_millis(500), x.peek(&mut buf)).await) {
        Err(_) => "pending".into(),
        Ok(Ok(n)) => format!("Ok({n}, {:?})", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn write_once(s: &mut St, data: &[u8]) -> String {
    match on!(s, x => tokio::time::timeout(Duration::from_millis(500), x.write(data)).await) {
        Err(_) => "pending".into(),
        Ok(r) => show(&r),
    }
}

async fn shutdown(s: &mut St) -> String {
    show(&on!(s, x => x.shutdown().await))
}

fn try_read(s: &St, len: usize) -> String {
    let mut buf = vec![0u8; len];
    show(&on!(s, x => x.try_read(&mut buf)))
}

fn take_error(s: &St) -> String {
    match on!(s, x => x.take_error()) {
        Ok(Some(e)) => format!("Some({})", show_err(&e)),
        r => show(&r),
    }
}

/// Which outcome of a connect: `Ok`, or its error.
async fn connect_outcome(net: &Net, kernel: bool, to: SocketAddr) -> String {
    show_ok(&within(10, connect(net, kernel, to)).await)
}

async fn tcp_connect_errors(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    out.push((
        "connect closed port",
        connect_outcome(net, kernel, kaddr(v6, 9)).await,
    ));
    out.push((
        "connect port 0",
        connect_outcome(net, kernel, kaddr(v6, 0)).await,
    ));
    out
}

async fn tcp_peer_fin(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"abc").await.unwrap();
    p.shutdown().await.unwrap();
    settle().await;
    out.push((
        "ready(R|W) after FIN",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("read", read_once(&mut s, 100).await));
    out.push(("read at EOF", read_once(&mut s, 100).await));
    out.push(("read at EOF again", read_once(&mut s, 100).await));
    out.push(("try_read at EOF", try_read(&s, 100)));
    let mut buf = [0u8; 10];
    out.push(("peek at EOF", show(&on!(&s, x => x.peek(&mut buf).await))));
    out.push(("ready(R) at EOF", ready_now(&s, Interest::READABLE).await));
    out.push(("ready(W) at EOF", ready_now(&s, Interest::WRITABLE).await));
    out.push(("write in CLOSE-WAIT", write_once(&mut s, b"late").await));
    out.push((
        "peer_addr in CLOSE-WAIT",
        show_ok(&on!(&s, x => x.peer_addr())),
    ));
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("peer sees", peer_sees(&mut p, 1000).await));
    settle().await;
    out.push((
        "ready(R|W) closed",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("peer_addr closed", show_ok(&on!(&s, x => x.peer_addr()))));
    out.push(("local_addr closed", show_ok(&on!(&s, x => x.local_addr()))));
    out.push(("write closed", write_once(&mut s, b"x").await));
    out.push(("shutdown closed", shutdown(&mut s).await));
    out.push(("take_error closed", take_error(&s)));
    out
}

/// The peer resets; then the subject calls `order` first.
async fn tcp_peer_rst(net: &Net, kernel: bool, v6: bool, port: u16, order: &str) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push((
        "ready(R|W|ERR) after RST",
        ready_now(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await,
    ));
    out.push(("peer_addr after RST", show_ok(&on!(&s, x => x.peer_addr()))));
    out.push((
        "local_addr after RST",
        show_ok(&on!(&s, x => x.local_addr())),
    ));
    for step in order.split(',') {
        let r = match step {
            "write" => write_once(&mut s, b"x").await,
            "read" => read_once(&mut s, 10).await,
            "try_read" => try_read(&s, 10),
            "try_write" => show(&on!(&s, x => x.try_write(b"x"))),
            "take_error" => take_error(&s),
            "shutdown" => shutdown(&mut s).await,
            "peek" => {
                let mut buf = [0u8; 4];
                show(&on!(&s, x => x.peek(&mut buf).await))
            }
            "ready" => {
                ready_now(
                    &s,
                    Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
                )
                .await
            }
            _ => unreachable!(),
        };
        out.push((step_name(step), r));
    }
    out
}

fn step_name(step: &str) -> &'static str {
    match step {
        "write" => "write",
        "read" => "read",
        "try_read" => "try_read",
        "try_write" => "try_write",
        "take_error" => "take_error",
        "shutdown" => "shutdown",
        "peek" => "peek",
        "ready" => "ready",
        _ => "?",
    }
}

async fn tcp_own_shutdown(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("shutdown twice", shutdown(&mut s).await));
    out.push(("write after shutdown", write_once(&mut s, b"x").await));
    out.push(("write after shutdown again", write_once(&mut s, b"x").await));
    out.push((
        "try_write after shutdown",
        show(&on!(&s, x => x.try_write(b"x"))),
    ));
    out.push(("write empty after shutdown", write_once(&mut s, b"").await));
    out.push((
        "ready(W) after shutdown",
        ready_now(&s, Interest::WRITABLE).await,
    ));
    out.push((
        "ready(R) after shutdown",
        ready_now(&s, Interest::READABLE).await,
    ));
    out.push(("try_read after shutdown", try_read(&s, 10)));
    out.push(("take_error after shutdown", take_error(&s)));
    out.push(("peer sees", peer_sees(&mut p, 500).await));
    p.write_all(b"back").await.unwrap();
    settle().await;
    out.push(("read after own FIN", read_once(&mut s, 10).await));
    p.shutdown().await.unwrap();
    settle().await;
    out.push(("read after both FINs", read_once(&mut s, 10).await));
    out.push((
        "ready(R|W) both FINs",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("shutdown after both FINs", shutdown(&mut s).await));
    out.push((
        "peer_addr after both FINs",
        show_ok(&on!(&s, x => x.peer_addr())),
    ));
    out.push(("write after both FINs", write_once(&mut s, b"x").await));
    out
}

async fn tcp_nothing_ready(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("try_read nothing", try_read(&s, 10)));
    out.push(("try_read empty buf", try_read(&s, 0)));
    out.push(("read empty buf", read_once(&mut s, 0).await));
    out.push(("ready(R) nothing", ready_now(&s, Interest::READABLE).await));
    out.push(("ready(W) fresh", ready_now(&s, Interest::WRITABLE).await));
    out.push(("ready(ERR) fresh", ready_now(&s, Interest::ERROR).await));
    out.push(("take_error fresh", take_error(&s)));
    out.push(("try_write", show(&on!(&s, x => x.try_write(b"hi")))));
    out.push(("try_write empty", show(&on!(&s, x => x.try_write(b"")))));
    let mut buf = [0u8; 2];
    p.read_exact(&mut buf).await.unwrap();
    // Fill the send buffer: the peer does not read.
    let chunk = vec![7u8; 65536];
    let mut full = "never".to_string();
    for i in 0..2000 {
        match on!(&s, x => x.try_write(&chunk)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                full = format!("WouldBlock (after >0 writes: {})", i > 0);
                break;
            }
            Err(e) => {
                full = show_err(&e);
                break;
            }
        }
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    out.push(("try_write until full", full));
    out
}

async fn tcp_peek(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"hello").await.unwrap();
    settle().await;
    let mut buf = [0u8; 2];
    let r = on!(&s, x => x.peek(&mut buf).await);
    out.push(("peek 2", format!("{} {:?}", show(&r), buf)));
    let mut buf = [0u8; 10];
    out.push(("peek 10", show(&on!(&s, x => x.peek(&mut buf).await))));
    let mut empty = [0u8; 0];
    out.push((
        "peek empty buf",
        show(&on!(&s, x => x.peek(&mut empty).await)),
    ));
    out.push(("read 10", read_once(&mut s, 10).await));
    out.push(("try_read", try_read(&s, 10)));
    let mut buf = [0u8; 10];
    let r = on!(&s, x => tokio::time::timeout(Duration::from_millis(200), x.peek(&mut buf)).await);
    out.push(("peek nothing", r.map_or("pending".into(), |r| show(&r))));
    out
}

async fn tcp_drop(net: &Net, kernel: bool, v6: bool, port: u16, how: &str) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    match how {
        "linger0" => {
            on!(&s, x => x.set_zero_linger()).unwrap();
            #[allow(deprecated)]
            let l = on!(&s, x => x.linger());
            out.push(("linger", show(&l)));
        }
        "unread" => {
            p.write_all(b"unread").await.unwrap();
            settle().await;
        }
        "unread+fin" => {
            p.write_all(b"unread").await.unwrap();
            p.shutdown().await.unwrap();
            settle().await;
        }
        "fin-read" => {
            p.shutdown().await.unwrap();
            settle().await;
        }
        "queued" => {
            on!(&s, x => x.try_write(b"queued")).unwrap();
        }
        "shut+unread" => {
            let mut s = s;
            out.push(("shutdown", shutdown(&mut s).await));
            out.push(("peer sees our FIN", peer_sees(&mut p, 300).await));
            p.write_all(b"unread").await.unwrap();
            settle().await;
            drop(s);
            settle().await;
            out.push(("peer writes after the drop", show(&p.write(b"more").await)));
            settle().await;
            out.push(("peer writes again", show(&p.write(b"more").await)));
            out.push(("peer sees", peer_sees(&mut p, 1000).await));
            return out;
        }
        _ => {}
    }
    drop(s);
    out.push(("peer sees", peer_sees(&mut p, 1000).await));
    out
}

/// `into_split`, the halves dropped in `order`; the peer's view after each.
async fn tcp_split(net: &Net, kernel: bool, v6: bool, port: u16, write_first: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    enum R {
        K(tokio::net::tcp::OwnedReadHalf),
        S(synack_tokio::OwnedReadHalf),
    }
    enum W {
        K(tokio::net::tcp::OwnedWriteHalf),
        S(synack_tokio::OwnedWriteHalf),
    }
    let (mut r, mut w) = match s {
        St::K(s) => {
            let (r, w) = s.into_split();
            (R::K(r), W::K(w))
        }
        St::S(s) => {
            let (r, w) = s.into_split();
            (R::S(r), W::S(w))
        }
    };
    if write_first {
        drop(w);
        out.push((
            "peer after write half dropped",
            peer_sees(&mut p, 500).await,
        ));
        p.write_all(b"still").await.unwrap();
        let mut buf = [0u8; 10];
        let n = match &mut r {
            R::K(r) => r.read(&mut buf).await,
            R::S(r) => r.read(&mut buf).await,
        };
        out.push(("read half reads", show(&n)));
        let pa = match &r {
            R::K(r) => r.peer_addr().map(drop),
            R::S(r) => r.peer_addr().map(drop),
        };
        out.push(("read half peer_addr", show(&pa)));
        p.write_all(b"unread").await.unwrap();
        settle().await;
        drop(r);
        out.push((
            "peer after read half dropped (unread data)",
            peer_sees(&mut p, 500).await,
        ));
    } else {
        drop(r);
        out.push(("peer after read half dropped", peer_sees(&mut p, 300).await));
        p.write_all(b"to nobody").await.unwrap();
        settle().await;
        let n = match &mut w {
            W::K(w) => w.write(b"z").await,
            W::S(w) => w.write(b"z").await,
        };
        out.push(("write half writes", show(&n)));
        out.push(("peer reads", peer_sees(&mut p, 300).await));
        drop(w);
        out.push((
            "peer after write half dropped",
            peer_sees(&mut p, 500).await,
        ));
    }
    out
}

async fn tcp_sockopts(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, _p) = pair(net, kernel, v6, port).await;
    out.push(("nodelay default", show(&on!(&s, x => x.nodelay()))));
    out.push(("set_nodelay true", show(&on!(&s, x => x.set_nodelay(true)))));
    out.push(("nodelay", show(&on!(&s, x => x.nodelay()))));
    out.push(("ttl default", show(&on!(&s, x => x.ttl()))));
    for t in [0u32, 256, 1000, 255, 1, u32::MAX] {
        let r = on!(&s, x => x.set_ttl(t));
        out.push((
            "set_ttl",
            format!("{t}: {} -> ttl {}", show(&r), show(&on!(&s, x => x.ttl()))),
        ));
    }
    #[allow(deprecated)]
    {
        out.push(("linger default", show(&on!(&s, x => x.linger()))));
        for l in [
            Some(Duration::from_millis(1500)),
            Some(Duration::from_millis(500)),
            None,
        ] {
            let r = on!(&s, x => x.set_linger(l));
            out.push((
                "set_linger",
                format!("{l:?}: {} -> {}", show(&r), show(&on!(&s, x => x.linger()))),
            ));
        }
    }
    out
}

// ---- listeners ---------------------------------------------------------------------------

type Lst = Side<tokio::net::TcpListener, synack_tokio::TcpListener>;

async fn listen(net: &Net, kernel: bool, addr: SocketAddr) -> io::Result<Lst> {
    match kernel {
        true => klisten(net, addr).map(Lst::K),
        false => synack_tokio::TcpListener::bind(&net.stack, addr)
            .await
            .map(Lst::S),
    }
}

async fn tcp_listener_binds(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let a = listen(net, kernel, own(kernel, v6, port)).await;
    out.push(("bind", show_ok(&a)));
    let b = listen(net, kernel, own(kernel, v6, port)).await;
    out.push(("bind in use", show_ok(&b)));
    let unspec = SocketAddr::new(
        if v6 {
            "::".parse().unwrap()
        } else {
            "0.0.0.0".parse().unwrap()
        },
        port,
    );
    let c = listen(net, kernel, unspec).await;
    out.push(("bind unspecified, same port", show_ok(&c)));
    let d = listen(net, kernel, foreign(v6, 0)).await;
    out.push(("bind foreign address", show_ok(&d)));
    let e = listen(net, kernel, own(kernel, v6, 0)).await.unwrap();
    let port0 = match &e {
        Lst::K(l) => l.local_addr(),
        Lst::S(l) => l.local_addr(),
    };
    out.push((
        "port 0 picks a port",
        format!("{}", port0.unwrap().port() != 0),
    ));
    let ttl = match &e {
        Lst::K(l) => (l.ttl(), l.set_ttl(0), l.set_ttl(256), l.set_ttl(7), l.ttl()),
        Lst::S(l) => (l.ttl(), l.set_ttl(0), l.set_ttl(256), l.set_ttl(7), l.ttl()),
    };
    out.push((
        "listener ttl",
        format!(
            "{} {} {} {} {}",
            show(&ttl.0),
            show(&ttl.1),
            show(&ttl.2),
            show(&ttl.3),
            show(&ttl.4)
        ),
    ));
    // TcpSocket: bind a port a listener holds, and a foreign address.
    let (x, y) = match kernel {
        true => {
            let s = ksocket(net, v6);
            let x = s.bind(own(kernel, v6, port));
            let s = ksocket(net, v6);
            (x, s.bind(foreign(v6, 0)))
        }
        false => {
            let s = match v6 {
                true => synack_tokio::TcpSocket::new_v6(&net.stack).unwrap(),
                false => synack_tokio::TcpSocket::new_v4(&net.stack).unwrap(),
            };
            let x = s.bind(own(kernel, v6, port));
            let s = synack_tokio::TcpSocket::new_v4(&net.stack).unwrap();
            let s = if v6 {
                synack_tokio::TcpSocket::new_v6(&net.stack).unwrap()
            } else {
                s
            };
            (x, s.bind(foreign(v6, 0)))
        }
    };
    out.push(("TcpSocket bind listener's port", show_ok(&x)));
    out.push(("TcpSocket bind foreign", show_ok(&y)));
    out
}

/// A listener with `backlog` that never accepts; kernel clients connect one after the other.
async fn tcp_backlog(net: &Net, kernel: bool, v6: bool, port: u16, backlog: u32) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = match kernel {
        true => {
            let s = ksocket(net, v6);
            s.set_reuseaddr(true).unwrap();
            s.bind(at).unwrap();
            Lst::K(s.listen(backlog).unwrap())
        }
        false => {
            let s = match v6 {
                true => synack_tokio::TcpSocket::new_v6(&net.stack).unwrap(),
                false => synack_tokio::TcpSocket::new_v4(&net.stack).unwrap(),
            };
            s.bind(at).unwrap();
            Lst::S(s.listen(backlog).unwrap())
        }
    };
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = ksocket(net, v6);
        let r = tokio::time::timeout(Duration::from_millis(1500), c.connect(at)).await;
        out.push((
            "client connect",
            match &r {
                Err(_) => "timeout".into(),
                Ok(r) => show_ok(r),
            },
        ));
        if let Ok(Ok(c)) = r {
            clients.push(c);
        }
    }
    let mut accepted = 0;
    for _ in 0..6 {
        let r = match &l {
            Lst::K(l) => tokio::time::timeout(Duration::from_millis(300), l.accept())
                .await
                .map(|r| r.map(drop)),
            Lst::S(l) => tokio::time::timeout(Duration::from_millis(300), l.accept())
                .await
                .map(|r| r.map(drop)),
        };
        match r {
            Ok(Ok(())) => accepted += 1,
            _ => break,
        }
    }
    out.push(("accepted", accepted.to_string()));
    out
}

/// Twelve kernel clients connect one after another to a listener that has not accepted
/// yet; `accept` then hands them out in the order they connected, as from Linux's one
/// first-in, first-out accept queue (synack's runtime has a queue per shard, numbered in
/// one order).
async fn tcp_accept_order(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = listen(net, kernel, at).await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..12 {
        let c = within(5, ksocket(net, v6).connect(at)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        clients.push(c.local_addr().unwrap());
    }
    settle().await;
    let mut order = Vec::new();
    for _ in 0..12 {
        let peer = on!(&l, x => within(5, x.accept()).await.map(|(_, peer)| peer)).unwrap();
        order.push(clients.iter().position(|&c| c == peer));
    }
    out.push(("clients accepted, by connect order", format!("{order:?}")));
    out
}

/// Connections in the accept queue when the listener is dropped.
async fn tcp_drop_listener(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = listen(net, kernel, at).await.unwrap();
    let mut c1 = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    let mut c2 = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    c2.write_all(b"request").await.unwrap();
    settle().await;
    drop(l);
    out.push(("idle client sees", peer_sees(&mut c1, 1000).await));
    out.push(("client with data sees", peer_sees(&mut c2, 1000).await));
    let r = within(5, ksocket(net, v6).connect(at)).await;
    out.push(("connect after drop", show_ok(&r)));
    out
}

// ---- the tests: TCP ----------------------------------------------------------------------

macro_rules! differential {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, |$net:ident, $kernel:ident| $body:expr) => {
        differential!(
            $(#[$meta])* $name, $prefix, setup |_net| async {}, departs [],
            |$net, $kernel| $body
        );
    };
    (
        $(#[$meta:meta])* $name:ident, $prefix:literal, departs [$($step:literal),*],
        |$net:ident, $kernel:ident| $body:expr
    ) => {
        differential!(
            $(#[$meta])* $name, $prefix, setup |_net| async {}, departs [$($step),*],
            |$net, $kernel| $body
        );
    };
    (
        $(#[$meta:meta])* $name:ident, $prefix:literal, setup |$snet:ident| $setup:expr,
        |$net:ident, $kernel:ident| $body:expr
    ) => {
        differential!(
            $(#[$meta])* $name, $prefix, setup |$snet| $setup, departs [],
            |$net, $kernel| $body
        );
    };
    // `setup` runs once on the namespace (nft rules, sysctls) before both runs; the steps
    // in `departs` are those where synack departs on purpose.
    (
        $(#[$meta:meta])* $name:ident, $prefix:literal, setup |$snet:ident| $setup:expr,
        departs [$($step:literal),*], |$net:ident, $kernel:ident| $body:expr
    ) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$meta])*
        async fn $name() {
            if !require_tun(stringify!($name)) {
                return;
            }
            let owned = Net::dual($prefix, synack_core::Config::default());
            {
                let $snet = &owned;
                $setup.await;
            }
            let $net = &owned;
            let k = {
                let $kernel = true;
                within(60, $body).await
            };
            let s = {
                let $kernel = false;
                within(60, $body).await
            };
            compare(&k, &s, &[$($step),*]);
        }
    };
}

differential!(
    same_tcp_connect_refused_and_port_0,
    "synack-d-conn4",
    |net, kernel| tcp_connect_errors(net, kernel, false)
);
differential!(
    same_tcp_connect_refused_and_port_0_v6,
    "synack-d-conn6",
    |net, kernel| tcp_connect_errors(net, kernel, true)
);
differential!(
    same_tcp_read_after_peer_fin,
    "synack-d-fin",
    |net, kernel| tcp_peer_fin(net, kernel, false, if kernel { 7001 } else { 7002 })
);
differential!(
    same_tcp_read_after_peer_fin_v6,
    "synack-d-fin6",
    |net, kernel| tcp_peer_fin(net, kernel, true, if kernel { 7001 } else { 7002 })
);
differential!(
    same_tcp_write_after_peer_rst,
    "synack-d-rstw",
    |net, kernel| tcp_peer_rst(
        net,
        kernel,
        false,
        if kernel { 7011 } else { 7012 },
        "write,write,read,take_error,shutdown"
    )
);
differential!(
    same_tcp_read_after_peer_rst,
    "synack-d-rstr",
    |net, kernel| tcp_peer_rst(
        net,
        kernel,
        false,
        if kernel { 7011 } else { 7012 },
        "read,read,write,take_error,peek,try_read"
    )
);
differential!(
    same_tcp_take_error_after_peer_rst,
    "synack-d-rste",
    |net, kernel| tcp_peer_rst(
        net,
        kernel,
        false,
        if kernel { 7011 } else { 7012 },
        "take_error,take_error,read,write,try_write"
    )
);
differential!(
    same_tcp_shutdown_after_peer_rst,
    "synack-d-rsts",
    |net, kernel| tcp_peer_rst(
        net,
        kernel,
        false,
        if kernel { 7011 } else { 7012 },
        "shutdown,read,write"
    )
);
differential!(
    same_tcp_peek_after_peer_rst,
    "synack-d-rstp",
    |net, kernel| tcp_peer_rst(
        net,
        kernel,
        false,
        if kernel { 7011 } else { 7012 },
        "peek,peek,try_read,try_write"
    )
);
differential!(
    same_tcp_write_after_peer_rst_v6,
    "synack-d-rst6",
    |net, kernel| tcp_peer_rst(
        net,
        kernel,
        true,
        if kernel { 7011 } else { 7012 },
        "write,write,read,take_error"
    )
);
differential!(
    same_tcp_write_and_shutdown_after_own_shutdown,
    "synack-d-shut",
    |net, kernel| tcp_own_shutdown(net, kernel, false, if kernel { 7021 } else { 7022 })
);
differential!(
    same_tcp_try_read_try_write_nothing_ready,
    "synack-d-none",
    |net, kernel| tcp_nothing_ready(net, kernel, false, if kernel { 7031 } else { 7032 })
);
differential!(same_tcp_peek, "synack-d-peek", |net, kernel| tcp_peek(
    net,
    kernel,
    false,
    if kernel { 7041 } else { 7042 }
));
differential!(
    same_tcp_drop_with_linger_0_resets,
    "synack-d-dl0",
    |net, kernel| tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7051 } else { 7052 },
        "linger0"
    )
);
differential!(
    same_tcp_drop_with_unread_data_resets,
    "synack-d-dun",
    |net, kernel| tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7051 } else { 7052 },
        "unread"
    )
);
differential!(
    same_tcp_drop_with_unread_data_and_fin_resets,
    "synack-d-dunf",
    |net, kernel| tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7051 } else { 7052 },
        "unread+fin"
    )
);
differential!(
    same_tcp_drop_after_peer_fin_sends_fin,
    "synack-d-dfin",
    |net, kernel| tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7051 } else { 7052 },
        "fin-read"
    )
);
differential!(
    same_tcp_drop_after_own_fin_with_unread_data_resets,
    "synack-d-dsu",
    |net, kernel| tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7053 } else { 7054 },
        "shut+unread"
    )
);
differential!(same_tcp_drop_sends_fin, "synack-d-dpl", |net, kernel| {
    tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7051 } else { 7052 },
        "plain",
    )
});
differential!(
    same_tcp_drop_delivers_queued_data,
    "synack-d-dq",
    |net, kernel| tcp_drop(
        net,
        kernel,
        false,
        if kernel { 7051 } else { 7052 },
        "queued"
    )
);
differential!(
    same_tcp_into_split_write_half_dropped_first,
    "synack-d-spw",
    |net, kernel| tcp_split(net, kernel, false, if kernel { 7061 } else { 7062 }, true)
);
differential!(
    same_tcp_into_split_read_half_dropped_first,
    "synack-d-spr",
    |net, kernel| tcp_split(net, kernel, false, if kernel { 7061 } else { 7062 }, false)
);
differential!(same_tcp_stream_options, "synack-d-opt", |net, kernel| {
    tcp_sockopts(net, kernel, false, if kernel { 7071 } else { 7072 })
});
differential!(
    same_tcp_stream_options_v6,
    "synack-d-opt6",
    |net, kernel| tcp_sockopts(net, kernel, true, if kernel { 7071 } else { 7072 })
);
differential!(same_tcp_listener_binds, "synack-d-lb", |net, kernel| {
    tcp_listener_binds(net, kernel, false, 7081)
});
differential!(same_tcp_listener_binds_v6, "synack-d-lb6", |net, kernel| {
    tcp_listener_binds(net, kernel, true, 7081)
});
differential!(
    same_tcp_backlog_overflow_drops_syns,
    "synack-d-bl",
    |net, kernel| tcp_backlog(net, kernel, false, 7091, 1)
);
differential!(
    same_tcp_backlog_0_holds_one,
    "synack-d-bl0",
    |net, kernel| tcp_backlog(net, kernel, false, 7092, 0)
);
differential!(
    same_tcp_drop_listener_resets_its_queue,
    "synack-d-dlst",
    |net, kernel| tcp_drop_listener(net, kernel, false, 7101)
);

// ---- more TCP ----------------------------------------------------------------------------

/// The peer closes (FIN, no unread data), the subject writes into it: the peer's kernel
/// answers with RST, in CLOSE-WAIT (Linux's `tcp_reset`: EPIPE there).
async fn tcp_write_to_closed_peer(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    drop(p);
    settle().await;
    out.push((
        "write after peer's close",
        write_once(&mut s, b"first").await,
    ));
    settle().await;
    out.push((
        "ready after the RST",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("take_error", take_error(&s)));
    out.push(("write again", write_once(&mut s, b"second").await));
    out.push(("write once more", write_once(&mut s, b"third").await));
    out.push(("read", read_once(&mut s, 10).await));
    out
}

/// Same, the error read first.
async fn tcp_write_to_closed_peer_read(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    drop(p);
    settle().await;
    out.push((
        "write after peer's close",
        write_once(&mut s, b"first").await,
    ));
    settle().await;
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("read again", read_once(&mut s, 10).await));
    out.push(("write", write_once(&mut s, b"second").await));
    out
}

/// A client that resets (or closes) before the listener accepts it.
async fn tcp_accept_after_client_gone(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    rst: bool,
) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = listen(net, kernel, at).await.unwrap();
    let mut c = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    c.write_all(b"hi").await.unwrap();
    if rst {
        c.set_zero_linger().unwrap();
    } else {
        c.shutdown().await.unwrap();
    }
    drop(c);
    settle().await;
    let r = match &l {
        Lst::K(l) => tokio::time::timeout(Duration::from_millis(500), l.accept())
            .await
            .map(|r| r.map(|(s, _)| St::K(s))),
        Lst::S(l) => tokio::time::timeout(Duration::from_millis(500), l.accept())
            .await
            .map(|r| r.map(|(s, _)| St::S(s))),
    };
    match r {
        Err(_) => out.push(("accept", "pending".into())),
        Ok(Err(e)) => out.push(("accept", show_err(&e))),
        Ok(Ok(mut s)) => {
            out.push(("accept", "Ok".into()));
            out.push(("peer_addr", show_ok(&on!(&s, x => x.peer_addr()))));
            // tokio's first readiness of a just-accepted socket comes from the driver's
            // next epoll round: let it come.
            settle().await;
            out.push((
                "ready",
                ready_now(
                    &s,
                    Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
                )
                .await,
            ));
            out.push(("read", read_once(&mut s, 10).await));
            out.push(("read again", read_once(&mut s, 10).await));
            out.push(("write", write_once(&mut s, b"x").await));
        }
    }
    out
}

/// Writable readiness once the send buffer is full and the peer has made a little room:
/// Linux's `tcp_poll` says EPOLLOUT only once a third of the send buffer is free
/// (`sk_stream_is_writeable`), so tokio's `ready(WRITABLE)` and `try_write` wait.
async fn tcp_write_threshold(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    // The peer's receive buffer small: its window stays a few KiB.
    let ls = ksocket(net, v6);
    ls.set_recv_buffer_size(4096).unwrap();
    ls.set_reuseaddr(true).unwrap();
    ls.bind(kaddr(v6, port)).unwrap();
    let l = ls.listen(8).unwrap();
    let mut s = within(10, connect(net, kernel, kaddr(v6, port)))
        .await
        .unwrap();
    let (mut p, _) = within(10, l.accept()).await.unwrap();
    let chunk = vec![7u8; 16384];
    // Fill, twice, with a pause: the peer's window closed, nothing in flight moves.
    for _ in 0..2 {
        for _ in 0..10_000 {
            match on!(&s, x => x.try_write(&chunk)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    out.push(("ready(W) full", ready_now(&s, Interest::WRITABLE).await));
    // The peer takes what it holds (a few KiB): that much room comes free on our side.
    let mut buf = vec![0u8; 65536];
    let mut taken = 0;
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), p.read(&mut buf)).await {
        taken += n;
        if taken > 16384 {
            break;
        }
    }
    out.push((
        "peer took a little",
        format!("{}", taken > 0 && taken <= 16384 + 65536),
    ));
    settle().await;
    out.push((
        "ready(W) with a little room",
        ready_now(&s, Interest::WRITABLE).await,
    ));
    let r = on!(&s, x => x.try_write(&chunk));
    out.push(("try_write with a little room", show_ok(&r)));
    // How much room there was (synack: far less than the third of the send buffer Linux
    // waits for).
    let mut room = r.unwrap_or(0);
    while let Ok(n) = on!(&s, x => x.try_write(&chunk)) {
        room += n;
    }
    eprintln!("kernel {kernel}: room when asked: {room} bytes");
    let _ = &mut s;
    out
}

/// Connect through a drop rule: how long until TimedOut, with 2 SYN retries on both
/// (sysctl for the kernel, `Config::syn_retries` for synack).
async fn tcp_connect_timeout(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let start = std::time::Instant::now();
    let r = within(40, connect(net, kernel, kaddr(false, 9999))).await;
    out.push(("connect", show_ok(&r)));
    let secs = start.elapsed().as_secs_f64();
    out.push(("seconds (rounded)", format!("{}", secs.round())));
    out
}

differential!(
    same_tcp_write_after_rst_in_close_wait,
    "synack-d-wcp",
    |net, kernel| tcp_write_to_closed_peer(net, kernel, false, if kernel { 7111 } else { 7112 })
);
differential!(
    same_tcp_read_after_rst_in_close_wait,
    "synack-d-wcpr",
    |net, kernel| tcp_write_to_closed_peer_read(
        net,
        kernel,
        false,
        if kernel { 7111 } else { 7112 }
    )
);
differential!(
    same_tcp_accept_after_client_rst,
    "synack-d-acr",
    |net, kernel| tcp_accept_after_client_gone(net, kernel, false, 7121, true)
);
differential!(
    same_tcp_accept_after_client_fin,
    "synack-d-acf",
    |net, kernel| tcp_accept_after_client_gone(net, kernel, false, 7121, false)
);
differential!(
    same_tcp_writable_with_little_room,
    "synack-d-wthr",
    |net, kernel| tcp_write_threshold(net, kernel, false, if kernel { 7131 } else { 7132 })
);

/// The first SYN retry waits 2 s (`Config::initial_syn_rto`), as synack's handshake is
/// specified; Linux's waits 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departs_tcp_connect_timeout_shape() {
    if !require_tun("departs_tcp_connect_timeout_shape") {
        return;
    }
    let mut cfg = synack_core::Config::default();
    cfg.syn_retries(2);
    let net = Net::dual("synack-d-cto", cfg);
    let out = net
        .run("sysctl", &["-qw", "net.ipv4.tcp_syn_retries=2"])
        .await;
    assert!(out.status.success(), "{out:?}");
    net.nft(
        "add table inet d; add chain inet d input { type filter hook input priority 0; }; \
         add rule inet d input tcp dport 9999 drop",
    )
    .await;
    let (k, s) = tokio::join!(
        tcp_connect_timeout(&net, true),
        tcp_connect_timeout(&net, false)
    );
    compare(&k, &s, &["seconds (rounded)"]);
}

// ---- UDP ---------------------------------------------------------------------------------

type Ud = Side<tokio::net::UdpSocket, synack_tokio::UdpSocket>;

async fn ubind(net: &Net, kernel: bool, addr: SocketAddr) -> io::Result<Ud> {
    match kernel {
        true => net.kernel_udp(addr).map(Ud::K),
        false => synack_tokio::UdpSocket::bind(&net.stack, addr)
            .await
            .map(Ud::S),
    }
}

fn unspec(v6: bool) -> SocketAddr {
    if v6 { "[::]:0" } else { "0.0.0.0:0" }.parse().unwrap()
}

async fn urecv_from(s: &Ud, len: usize, peer: SocketAddr) -> String {
    let mut buf = vec![0u8; len];
    match on!(s, x => tokio::time::timeout(Duration::from_millis(500), x.recv_from(&mut buf)).await)
    {
        Err(_) => "pending".into(),
        Ok(Ok((n, from))) => format!(
            "Ok({n}, {:?}, from peer {})",
            String::from_utf8_lossy(&buf[..n]),
            from == peer
        ),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn urecv(s: &Ud, len: usize) -> String {
    let mut buf = vec![0u8; len];
    match on!(s, x => tokio::time::timeout(Duration::from_millis(500), x.recv(&mut buf)).await) {
        Err(_) => "pending".into(),
        Ok(Ok(n)) => format!("Ok({n}, {:?})", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn upeek_from(s: &Ud, len: usize, peer: SocketAddr) -> String {
    let mut buf = vec![0u8; len];
    match on!(s, x => tokio::time::timeout(Duration::from_millis(500), x.peek_from(&mut buf)).await)
    {
        Err(_) => "pending".into(),
        Ok(Ok((n, from))) => format!(
            "Ok({n}, {:?}, from peer {})",
            String::from_utf8_lossy(&buf[..n.min(len)]),
            from == peer
        ),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn uready(s: &Ud, interest: Interest) -> String {
    match on!(s, x => tokio::time::timeout(Duration::from_millis(200), x.ready(interest)).await) {
        Err(_) => "pending".into(),
        Ok(Ok(r)) => bits(r),
        Ok(Err(e)) => show_err(&e),
    }
}

fn utake_error(s: &Ud) -> String {
    match on!(s, x => x.take_error()) {
        Ok(Some(e)) => format!("Some({})", show_err(&e)),
        r => show(&r),
    }
}

/// The kernel peer's receive: what came (length, bytes), and whether from the subject.
async fn kpeer_recv(p: &tokio::net::UdpSocket) -> String {
    let mut buf = [0u8; 100];
    match tokio::time::timeout(Duration::from_millis(500), p.recv_from(&mut buf)).await {
        Err(_) => "nothing".into(),
        Ok(Ok((n, _))) => format!("{n} {:?}", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(e)) => show_err(&e),
    }
}

async fn udp_basics(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push(("take_error fresh", utake_error(&s)));
    out.push((
        "peer_addr unconnected",
        show_ok(&on!(&s, x => x.peer_addr())),
    ));
    out.push(("try_recv_from nothing", {
        let mut b = [0u8; 10];
        show(&on!(&s, x => x.try_recv_from(&mut b)))
    }));
    out.push(("ready(R) nothing", uready(&s, Interest::READABLE).await));
    out.push(("ready(W)", uready(&s, Interest::WRITABLE).await));
    out.push((
        "send_to",
        show(&on!(&s, x => x.send_to(b"hello", peer_addr).await)),
    ));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push((
        "send_to empty",
        show(&on!(&s, x => x.send_to(b"", peer_addr).await)),
    ));
    out.push(("peer got empty", kpeer_recv(&p).await));
    let me = on!(&s, x => x.local_addr()).unwrap();
    let me = SocketAddr::new(own(kernel, v6, 0).ip(), me.port());
    p.send_to(b"0123456789", me).await.unwrap();
    p.send_to(b"second", me).await.unwrap();
    p.send_to(b"", me).await.unwrap();
    p.send_to(b"fourth", me).await.unwrap();
    p.send_to(b"fifth", me).await.unwrap();
    settle().await;
    out.push(("ready(R) with data", uready(&s, Interest::READABLE).await));
    out.push(("peek_from 4 of 10", upeek_from(&s, 4, peer_addr).await));
    out.push(("peek_from all", upeek_from(&s, 100, peer_addr).await));
    out.push(("recv_from 4 of 10", urecv_from(&s, 4, peer_addr).await));
    out.push(("recv_from next", urecv_from(&s, 100, peer_addr).await));
    out.push((
        "recv_from empty datagram",
        urecv_from(&s, 100, peer_addr).await,
    ));
    out.push((
        "recv_from with empty buffer",
        urecv_from(&s, 0, peer_addr).await,
    ));
    out.push((
        "recv_from after the empty-buffer one",
        urecv_from(&s, 100, peer_addr).await,
    ));
    out.push(("recv_from none left", urecv_from(&s, 100, peer_addr).await));
    out.push(("try_peek_from nothing", {
        let mut b = [0u8; 10];
        show(&on!(&s, x => x.try_peek_from(&mut b)))
    }));
    out
}

async fn udp_connected(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let a_addr = kaddr(v6, port);
    let b_addr = kaddr(v6, port + 100);
    let a = net.kernel_udp(a_addr).unwrap();
    let b = net.kernel_udp(b_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push(("connect", show(&on!(&s, x => x.connect(a_addr).await))));
    out.push((
        "peer_addr",
        format!(
            "{:?}",
            on!(&s, x => x.peer_addr())
                .map(|x| x == a_addr)
                .map_err(|e| e.kind())
        ),
    ));
    let local = on!(&s, x => x.local_addr()).unwrap();
    out.push((
        "local_addr after connect on unspecified",
        format!("ip unspecified: {}", local.ip().is_unspecified()),
    ));
    out.push(("send", show(&on!(&s, x => x.send(b"to a").await))));
    out.push(("a got", kpeer_recv(&a).await));
    out.push((
        "send_to b while connected",
        show(&on!(&s, x => x.send_to(b"to b", b_addr).await)),
    ));
    out.push(("b got", kpeer_recv(&b).await));
    let me = SocketAddr::new(own(kernel, v6, 0).ip(), local.port());
    b.send_to(b"from b", me).await.unwrap();
    a.send_to(b"from a", me).await.unwrap();
    settle().await;
    out.push(("recv", urecv(&s, 100).await));
    out.push(("recv again", urecv(&s, 100).await));
    out.push(("connect to b", show(&on!(&s, x => x.connect(b_addr).await))));
    b.send_to(b"from b again", me).await.unwrap();
    settle().await;
    out.push(("recv after reconnect", urecv(&s, 100).await));
    out
}

async fn udp_refused(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let closed = kaddr(v6, 9);
    // Unconnected: no error comes back.
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push((
        "unconnected send_to closed",
        show(&on!(&u, x => x.send_to(b"x", closed).await)),
    ));
    settle().await;
    out.push((
        "unconnected ready(R|ERR)",
        uready(&u, Interest::READABLE | Interest::ERROR).await,
    ));
    out.push(("unconnected recv_from", urecv_from(&u, 10, closed).await));
    out.push(("unconnected take_error", utake_error(&u)));
    // Connected.
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&s, x => x.connect(closed).await).unwrap();
    out.push(("send", show(&on!(&s, x => x.send(b"x").await))));
    settle().await;
    out.push(("recv", urecv(&s, 10).await));
    out.push(("recv again", urecv(&s, 10).await));
    out.push(("send again", show(&on!(&s, x => x.send(b"y").await))));
    settle().await;
    out.push(("try_recv", {
        let mut b = [0u8; 10];
        show(&on!(&s, x => x.try_recv(&mut b)))
    }));
    out.push(("peek", {
        let mut b = [0u8; 10];
        match on!(&s, x => tokio::time::timeout(Duration::from_millis(300), x.peek(&mut b)).await) {
            Err(_) => "pending".into(),
            Ok(r) => show(&r),
        }
    }));
    out.push(("take_error", utake_error(&s)));
    out
}

async fn udp_broadcast(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    // Bound to the side's own address: the namespace has no default route, which the
    // kernel would need to send to 255.255.255.255 from an unbound socket.
    let s = ubind(net, kernel, own(kernel, false, 0)).await.unwrap();
    out.push(("broadcast()", show(&on!(&s, x => x.broadcast()))));
    let all: SocketAddr = "255.255.255.255:9".parse().unwrap();
    out.push((
        "send_to 255.255.255.255",
        show(&on!(&s, x => x.send_to(b"x", all).await)),
    ));
    out.push((
        "connect 255.255.255.255",
        show(&on!(&s, x => x.connect(all).await)),
    ));
    let link: SocketAddr = "198.18.0.255:9".parse().unwrap();
    out.push((
        "send_to 198.18.0.255",
        show(&on!(&s, x => x.send_to(b"x", link).await)),
    ));
    out.push(("set_broadcast", show(&on!(&s, x => x.set_broadcast(true)))));
    out.push(("broadcast() after", show(&on!(&s, x => x.broadcast()))));
    out.push((
        "send_to 255.255.255.255 allowed",
        show(&on!(&s, x => x.send_to(b"x", all).await)),
    ));
    out.push((
        "send_to 198.18.0.255 allowed",
        show(&on!(&s, x => x.send_to(b"x", link).await)),
    ));
    out
}

async fn udp_binds(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let a = ubind(net, kernel, own(kernel, v6, port)).await;
    out.push(("bind", show_ok(&a)));
    out.push((
        "bind in use",
        show_ok(&ubind(net, kernel, own(kernel, v6, port)).await),
    ));
    out.push((
        "bind foreign",
        show_ok(&ubind(net, kernel, foreign(v6, 0)).await),
    ));
    let s = a.unwrap();
    out.push(("ttl default", show(&on!(&s, x => x.ttl()))));
    for t in [0u32, 256, 255, u32::MAX] {
        let r = on!(&s, x => x.set_ttl(t));
        out.push((
            "set_ttl",
            format!("{t}: {} -> {}", show(&r), show(&on!(&s, x => x.ttl()))),
        ));
    }
    out.push((
        "send_to port 0",
        show(&on!(&s, x => x.send_to(b"x", kaddr(v6, 0)).await)),
    ));
    out
}

differential!(same_udp_basics, "synack-d-ub", |net, kernel| udp_basics(
    net,
    kernel,
    false,
    if kernel { 7201 } else { 7202 }
));
differential!(
    same_udp_basics_v6,
    "synack-d-ub6",
    |net, kernel| udp_basics(net, kernel, true, if kernel { 7201 } else { 7202 })
);
differential!(same_udp_connected_filters, "synack-d-uc", |net, kernel| {
    udp_connected(net, kernel, false, if kernel { 7211 } else { 7212 })
});
differential!(
    same_udp_connected_filters_v6,
    "synack-d-uc6",
    |net, kernel| udp_connected(net, kernel, true, if kernel { 7211 } else { 7212 })
);
differential!(
    same_udp_refused_after_connect,
    "synack-d-ur",
    |net, kernel| udp_refused(net, kernel, false)
);
differential!(
    same_udp_refused_after_connect_v6,
    "synack-d-ur6",
    |net, kernel| udp_refused(net, kernel, true)
);
differential!(
    same_udp_broadcast_needs_set_broadcast,
    "synack-d-ubc",
    |net, kernel| udp_broadcast(net, kernel)
);
differential!(same_udp_binds, "synack-d-ubd", |net, kernel| udp_binds(
    net, kernel, false, 7221
));
differential!(same_udp_binds_v6, "synack-d-ubd6", |net, kernel| udp_binds(
    net, kernel, true, 7221
));

// ---- dual stack, TcpSocket options, hop limits -------------------------------------------

async fn dual_binds(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let any6: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let any4: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let a = listen(net, kernel, any6).await;
    out.push(("TCP listen [::]", show_ok(&a)));
    out.push((
        "TCP listen 0.0.0.0 same port",
        show_ok(&listen(net, kernel, any4).await),
    ));
    let u = ubind(net, kernel, any6).await;
    out.push(("UDP bind [::]", show_ok(&u)));
    out.push((
        "UDP bind 0.0.0.0 same port",
        show_ok(&ubind(net, kernel, any4).await),
    ));
    out
}

/// `TcpSocket`'s getters after the setters, both families.
#[allow(deprecated)]
async fn tcp_socket_options(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    macro_rules! both {
        ($what:literal, |$x:ident| $e:expr) => {{
            let r = match kernel {
                true => {
                    let $x = ksocket(net, v6);
                    format!("{:?}", $e)
                }
                false => {
                    let $x = match v6 {
                        true => synack_tokio::TcpSocket::new_v6(&net.stack).unwrap(),
                        false => synack_tokio::TcpSocket::new_v4(&net.stack).unwrap(),
                    };
                    format!("{:?}", $e)
                }
            };
            out.push(($what, r));
        }};
    }
    both!("defaults", |s| (
        s.keepalive().ok(),
        s.reuseaddr().ok(),
        s.reuseport().ok(),
        s.nodelay().ok(),
        s.linger().ok(),
        s.local_addr().ok(),
        s.take_error().map(|e| e.is_some()).ok()
    ));
    both!("keepalive", |s| (
        s.set_keepalive(true).is_ok(),
        s.keepalive().ok()
    ));
    both!("reuseaddr", |s| (
        s.set_reuseaddr(true).is_ok(),
        s.reuseaddr().ok()
    ));
    both!("reuseport", |s| (
        s.set_reuseport(true).is_ok(),
        s.reuseport().ok()
    ));
    both!("nodelay", |s| (
        s.set_nodelay(true).is_ok(),
        s.nodelay().ok()
    ));
    both!("linger 1.5 s", |s| (
        s.set_linger(Some(Duration::from_millis(1500))).is_ok(),
        s.linger().ok()
    ));
    // Each family's own option (the other's: departs_ip_tos_on_an_ipv6_socket,
    // departs_errors_without_a_std_kind).
    if !v6 {
        both!("tos_v4 0xff", |s| (
            show(&s.set_tos_v4(0xff)),
            show(&s.tos_v4())
        ));
    } else {
        both!("tclass_v6 0xff", |s| (
            show(&s.set_tclass_v6(0xff)),
            show(&s.tclass_v6())
        ));
        both!("tclass_v6 256", |s| (
            show(&s.set_tclass_v6(256)),
            show(&s.tclass_v6())
        ));
    }
    both!("bind twice", |s| {
        let a = s.bind(own(kernel, v6, 0));
        let port = s.local_addr().map(|a| a.port() != 0);
        (show(&a), show(&port), show(&s.bind(own(kernel, v6, 0))))
    });
    out
}

/// `set_ttl` on a stream and a UDP socket, and what hop limit the kernel sees on their
/// packets (nft counts them at the input hook).
async fn ttl_on_the_wire(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    on!(&s, x => x.set_ttl(7)).unwrap();
    out.push(("stream ttl()", show(&on!(&s, x => x.ttl()))));
    on!(&mut s, x => x.write_all(b"seven").await).unwrap();
    let mut buf = [0u8; 5];
    p.read_exact(&mut buf).await.unwrap();
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    let k = net.kernel_udp(kaddr(v6, port + 1)).unwrap();
    on!(&u, x => x.set_ttl(7)).unwrap();
    out.push(("udp ttl()", show(&on!(&u, x => x.ttl()))));
    on!(&u, x => x.send_to(b"seven", kaddr(v6, port + 1)).await).unwrap();
    out.push(("udp peer got", kpeer_recv(&k).await));
    // UDP set_tos (tokio's: IP_TOS) to DSCP CS1.
    let u2 = ubind(net, kernel, unspec(v6)).await.unwrap();
    let k2 = net.kernel_udp(kaddr(v6, port + 2)).unwrap();
    #[allow(deprecated)]
    let r = on!(&u2, x => x.set_tos(0x20));
    out.push(("udp set_tos(0x20)", show(&r)));
    on!(&u2, x => x.send_to(b"cs1", kaddr(v6, port + 2)).await).unwrap();
    out.push(("udp peer got", kpeer_recv(&k2).await));
    settle().await;
    let family = if v6 { "ip6" } else { "ip" };
    let tcp7 = net.nft_count("d", "input", &format!("tcp{port}")).await;
    let udp7 = net.nft_count("d", "input", &format!("udp{port}")).await;
    let cs1 = net.nft_count("d", "input", &format!("tos{port}")).await;
    out.push((
        "packets with TTL/hop limit 7",
        format!("{family}: TCP {}, UDP {}", tcp7 > 0, udp7 > 0),
    ));
    out.push((
        "UDP packets with DSCP CS1",
        format!("{family}: {}", cs1 > 0),
    ));
    out
}

async fn ttl_rules(net: &Net, ports: &[u16]) {
    let mut rules = String::from(
        "add table inet d\nadd chain inet d input { type filter hook input priority 0; }\n",
    );
    for &port in ports {
        let (v6, _) = (port % 2 == 0, ());
        let _ = v6;
        rules += &format!(
            "add rule inet d input meta nfproto ipv4 tcp dport {port} ip ttl 7 counter comment \"tcp{port}\"\n\
             add rule inet d input meta nfproto ipv4 udp dport {p1} ip ttl 7 counter comment \"udp{port}\"\n\
             add rule inet d input meta nfproto ipv4 udp dport {p2} ip dscp cs1 counter comment \"tos{port}\"\n",
            p1 = port + 1,
            p2 = port + 2
        );
    }
    net.nft(&rules).await;
}

async fn ttl6_rules(net: &Net, ports: &[u16]) {
    let mut rules = String::from(
        "add table inet d\nadd chain inet d input { type filter hook input priority 0; }\n",
    );
    for &port in ports {
        rules += &format!(
            "add rule inet d input meta nfproto ipv6 tcp dport {port} ip6 hoplimit 7 counter comment \"tcp{port}\"\n\
             add rule inet d input meta nfproto ipv6 udp dport {p1} ip6 hoplimit 7 counter comment \"udp{port}\"\n\
             add rule inet d input meta nfproto ipv6 udp dport {p2} ip6 dscp cs1 counter comment \"tos{port}\"\n",
            p1 = port + 1,
            p2 = port + 2
        );
    }
    net.nft(&rules).await;
}

differential!(
    /// The families do not clash: a listener or socket on 0.0.0.0 beside one on [::] takes the IPv4
    /// traffic.
    departs_dual_stack_bind_beside_unspecified,
    "synack-d-dual",
    departs ["TCP listen 0.0.0.0 same port", "UDP bind 0.0.0.0 same port"],
    |net, kernel| dual_binds(net, kernel, 7301)
);
differential!(same_tcp_socket_options, "synack-d-sopt", |net, kernel| {
    tcp_socket_options(net, kernel, false)
});
differential!(
    same_tcp_socket_options_v6,
    "synack-d-sopt6",
    |net, kernel| tcp_socket_options(net, kernel, true)
);

differential!(
    same_ttl_and_tos_on_the_wire_v4,
    "synack-d-ttl4",
    setup | net | ttl_rules(net, &[7401, 7411]),
    |net, kernel| ttl_on_the_wire(net, kernel, false, if kernel { 7401 } else { 7411 })
);
differential!(
    /// `set_ttl` and `set_tos` set an IPv6 socket's hop limit and traffic class; tokio's set IP_TTL
    /// and IP_TOS, which only IPv4-mapped traffic uses.
    departs_ipv6_set_ttl_and_set_tos_change_ipv6_packets,
    "synack-d-ttl6",
    setup | net | ttl6_rules(net, &[7401, 7411]),
    departs ["packets with TTL/hop limit 7", "UDP packets with DSCP CS1"],
    |net, kernel| ttl_on_the_wire(net, kernel, true, if kernel { 7401 } else { 7411 })
);

// ---- options on a closed stream, data before a reset, UDP queue at connect ---------------

/// Socket options on a stream whose connection is gone: `how` is "rst" (the peer reset,
/// the error taken) or "fin" (both FINs exchanged).
async fn tcp_options_after_close(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    how: &str,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    match how {
        "rst" => {
            p.set_zero_linger().unwrap();
            drop(p);
            settle().await;
            out.push(("read", read_once(&mut s, 10).await));
        }
        _ => {
            p.shutdown().await.unwrap();
            settle().await;
            out.push(("read", read_once(&mut s, 10).await));
            out.push(("shutdown", shutdown(&mut s).await));
            settle().await;
            out.push(("peer sees", peer_sees(&mut p, 500).await));
            drop(p);
        }
    }
    out.push(("nodelay", show(&on!(&s, x => x.nodelay()))));
    out.push(("set_nodelay", show(&on!(&s, x => x.set_nodelay(true)))));
    out.push(("ttl", show(&on!(&s, x => x.ttl()))));
    out.push(("set_ttl", show(&on!(&s, x => x.set_ttl(9)))));
    out.push(("ttl after set", show(&on!(&s, x => x.ttl()))));
    #[allow(deprecated)]
    {
        out.push(("linger", show(&on!(&s, x => x.linger()))));
        out.push((
            "set_linger",
            show(&on!(&s, x => x.set_linger(Some(Duration::from_secs(3))))),
        ));
    }
    // (TCP_QUICKACK after a bare FIN: same_tcp_quickack_after_a_bare_fin.)
    if how == "rst" {
        out.push(("quickack", show(&on!(&s, x => x.quickack()))));
        out.push(("set_quickack", show(&on!(&s, x => x.set_quickack(true)))));
    }
    out.push(("local_addr", show_ok(&on!(&s, x => x.local_addr()))));
    out.push(("take_error", take_error(&s)));
    out
}

/// The peer sends data and then resets before the subject read it.
async fn tcp_rst_with_data(net: &Net, kernel: bool, v6: bool, port: u16, first: &str) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"data").await.unwrap();
    settle().await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push((
        "ready",
        ready_now(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await,
    ));
    if first == "take_error" {
        out.push(("take_error", take_error(&s)));
    }
    if first == "peek" {
        let mut b = [0u8; 10];
        out.push(("peek", show(&on!(&s, x => x.peek(&mut b).await))));
    }
    out.push(("read 2", read_once(&mut s, 2).await));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("read again", read_once(&mut s, 10).await));
    out.push(("take_error after", take_error(&s)));
    out
}

/// Vectored reads with no room after the peer reset: `readv` of no bytes is 0 from the VFS
/// (`vfs_readv` returns before the socket sees it), so the reset is left for the next read.
async fn tcp_rst_then_reads_with_no_room(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use std::io::IoSliceMut;
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    let mut z = [0u8; 0];
    let mut zero = [IoSliceMut::new(&mut z)];
    out.push((
        "try_read_vectored empty slice",
        show(&on!(&s, x => x.try_read_vectored(&mut zero))),
    ));
    let mut none: [IoSliceMut; 0] = [];
    out.push((
        "try_read_vectored no slices",
        show(&on!(&s, x => x.try_read_vectored(&mut none))),
    ));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("read again", read_once(&mut s, 10).await));
    out
}

/// Datagrams from another sender that were queued before `connect`.
async fn udp_queued_before_connect(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let a_addr = kaddr(v6, port);
    let b_addr = kaddr(v6, port + 100);
    let a = net.kernel_udp(a_addr).unwrap();
    let b = net.kernel_udp(b_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let local = on!(&s, x => x.local_addr()).unwrap();
    let me = SocketAddr::new(own(kernel, v6, 0).ip(), local.port());
    b.send_to(b"from b before", me).await.unwrap();
    settle().await;
    out.push(("connect to a", show(&on!(&s, x => x.connect(a_addr).await))));
    out.push(("ready(R)", uready(&s, Interest::READABLE).await));
    let mut buf = [0u8; 20];
    out.push((
        "try_peek_sender",
        format!(
            "{:?}",
            on!(&s, x => x.try_peek_sender())
                .map(|f| f == b_addr)
                .map_err(|e| e.kind())
        ),
    ));
    let _ = &mut buf;
    a.send_to(b"from a", me).await.unwrap();
    settle().await;
    out.push(("recv_from", urecv_from(&s, 100, b_addr).await));
    out.push(("recv_from again", urecv_from(&s, 100, a_addr).await));
    out
}

differential!(same_tcp_options_after_rst, "synack-d-oar", |net, kernel| {
    tcp_options_after_close(net, kernel, false, if kernel { 7501 } else { 7502 }, "rst")
});
differential!(same_tcp_options_after_fin, "synack-d-oaf", |net, kernel| {
    tcp_options_after_close(net, kernel, false, if kernel { 7501 } else { 7502 }, "fin")
});
differential!(
    same_tcp_rst_with_data_read_first,
    "synack-d-rwd",
    |net, kernel| tcp_rst_with_data(net, kernel, false, if kernel { 7511 } else { 7512 }, "read")
);
differential!(
    same_tcp_rst_with_data_take_error_first,
    "synack-d-rwde",
    |net, kernel| tcp_rst_with_data(
        net,
        kernel,
        false,
        if kernel { 7511 } else { 7512 },
        "take_error"
    )
);
differential!(
    same_tcp_rst_with_data_peek_first,
    "synack-d-rwdp",
    |net, kernel| tcp_rst_with_data(net, kernel, false, if kernel { 7511 } else { 7512 }, "peek")
);
differential!(
    same_tcp_rst_then_reads_with_no_room,
    "synack-d-rstnr",
    |net, kernel| tcp_rst_then_reads_with_no_room(
        net,
        kernel,
        false,
        if kernel { 14011 } else { 14012 }
    )
);
differential!(
    same_udp_queued_before_connect,
    "synack-d-uqc",
    |net, kernel| udp_queued_before_connect(net, kernel, false, if kernel { 7521 } else { 7522 })
);

/// TCP_QUICKACK as read back along a connection's life.
async fn tcp_quickack_life(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("fresh", show(&on!(&s, x => x.quickack()))));
    p.write_all(b"req").await.unwrap();
    settle().await;
    out.push(("data in", show(&on!(&s, x => x.quickack()))));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("after read", show(&on!(&s, x => x.quickack()))));
    on!(&mut s, x => x.write_all(b"resp").await).unwrap();
    settle().await;
    out.push(("after reply", show(&on!(&s, x => x.quickack()))));
    let mut b = [0u8; 4];
    p.read_exact(&mut b).await.unwrap();
    p.shutdown().await.unwrap();
    settle().await;
    out.push(("peer FIN", show(&on!(&s, x => x.quickack()))));
    out.push(("read EOF", read_once(&mut s, 10).await));
    out.push(("after EOF", show(&on!(&s, x => x.quickack()))));
    out.push(("shutdown", shutdown(&mut s).await));
    settle().await;
    out.push(("closed", show(&on!(&s, x => x.quickack()))));
    out
}

/// Our FIN first, then the peer's.
async fn tcp_quickack_active_close(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("fresh", show(&on!(&s, x => x.quickack()))));
    out.push(("shutdown", shutdown(&mut s).await));
    settle().await;
    out.push(("FIN-WAIT-2", show(&on!(&s, x => x.quickack()))));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    p.shutdown().await.unwrap();
    settle().await;
    out.push(("TIME-WAIT", show(&on!(&s, x => x.quickack()))));
    out
}

differential!(same_tcp_quickack_life, "synack-d-qal", |net, kernel| {
    tcp_quickack_life(net, kernel, false, if kernel { 7531 } else { 7532 })
});
differential!(
    same_tcp_quickack_active_close,
    "synack-d-qac",
    |net, kernel| tcp_quickack_active_close(net, kernel, false, if kernel { 7531 } else { 7532 })
);

/// TCP_QUICKACK read back after each other option is set.
async fn tcp_quickack_after_options(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    closed: bool,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    if closed {
        p.shutdown().await.unwrap();
        settle().await;
        read_once(&mut s, 10).await;
        shutdown(&mut s).await;
        settle().await;
    }
    out.push(("start", show(&on!(&s, x => x.quickack()))));
    on!(&s, x => x.nodelay()).unwrap();
    out.push(("after nodelay()", show(&on!(&s, x => x.quickack()))));
    on!(&s, x => x.set_nodelay(true)).unwrap();
    out.push(("after set_nodelay(true)", show(&on!(&s, x => x.quickack()))));
    on!(&s, x => x.set_ttl(9)).unwrap();
    out.push(("after set_ttl", show(&on!(&s, x => x.quickack()))));
    #[allow(deprecated)]
    on!(&s, x => x.set_linger(Some(Duration::from_secs(3)))).unwrap();
    out.push(("after set_linger", show(&on!(&s, x => x.quickack()))));
    out
}
differential!(
    same_tcp_quickack_after_options,
    "synack-d-qao",
    |net, kernel| tcp_quickack_after_options(
        net,
        kernel,
        false,
        if kernel { 7541 } else { 7542 },
        false
    )
);

// ---- ICMP errors answering a SYN ---------------------------------------------------------

/// Connects to ports the kernel rejects with each ICMP (ICMPv6) error: Linux fails a
/// connect in SYN-SENT at once on any destination unreachable (`tcp_v4_err`).
async fn tcp_connect_icmp(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    for (what, port) in [
        ("port-unreachable", 9901u16),
        ("host-unreachable", 9902),
        ("net-unreachable", 9903),
        ("admin-prohibited", 9904),
        ("tcp reset", 9905),
    ] {
        let start = std::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(4),
            connect(net, kernel, kaddr(v6, port)),
        )
        .await;
        let r = match r {
            Err(_) => "still connecting after 4 s".to_string(),
            Ok(r) => {
                eprintln!("{what}: {:?}", start.elapsed());
                format!(
                    "{} within 3 s: {}",
                    show_ok(&r),
                    start.elapsed() < Duration::from_secs(3)
                )
            }
        };
        out.push((what, r));
    }
    out
}

async fn icmp_rules(net: &Net) {
    net.nft(
        "add table inet d\n\
         add chain inet d input { type filter hook input priority 0; }\n\
         add rule inet d input meta nfproto ipv4 tcp dport 9901 reject with icmp type port-unreachable\n\
         add rule inet d input meta nfproto ipv4 tcp dport 9902 reject with icmp type host-unreachable\n\
         add rule inet d input meta nfproto ipv4 tcp dport 9903 reject with icmp type net-unreachable\n\
         add rule inet d input meta nfproto ipv4 tcp dport 9904 reject with icmp type admin-prohibited\n\
         add rule inet d input meta nfproto ipv6 tcp dport 9901 reject with icmpv6 type port-unreachable\n\
         add rule inet d input meta nfproto ipv6 tcp dport 9902 reject with icmpv6 type addr-unreachable\n\
         add rule inet d input meta nfproto ipv6 tcp dport 9903 reject with icmpv6 type no-route\n\
         add rule inet d input meta nfproto ipv6 tcp dport 9904 reject with icmpv6 type admin-prohibited\n\
         add rule inet d input tcp dport 9905 reject with tcp reset\n",
    )
    .await;
}

differential!(
    same_tcp_connect_icmp_errors,
    "synack-d-icmp4",
    setup | net | icmp_rules(net),
    |net, kernel| tcp_connect_icmp(net, kernel, false)
);
differential!(
    same_tcp_connect_icmp_errors_v6,
    "synack-d-icmp6",
    setup | net | icmp_rules(net),
    |net, kernel| tcp_connect_icmp(net, kernel, true)
);

// ---- ports of connections, self and unspecified peers, data after our close --------------

fn new_tcp_socket(net: &Net, kernel: bool, v6: bool) -> Sock {
    match kernel {
        true => Sock::K(ksocket(net, v6)),
        false => Sock::S(match v6 {
            true => synack_tokio::TcpSocket::new_v6(&net.stack).unwrap(),
            false => synack_tokio::TcpSocket::new_v4(&net.stack).unwrap(),
        }),
    }
}

type Sock = Side<tokio::net::TcpSocket, synack_tokio::TcpSocket>;

impl Sock {
    fn bind(&self, a: SocketAddr) -> io::Result<()> {
        match self {
            Sock::K(s) => s.bind(a),
            Sock::S(s) => s.bind(a),
        }
    }
    fn set_reuseaddr(&self, on: bool) -> io::Result<()> {
        match self {
            Sock::K(s) => s.set_reuseaddr(on),
            Sock::S(s) => s.set_reuseaddr(on),
        }
    }
    fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Sock::K(s) => s.local_addr(),
            Sock::S(s) => s.local_addr(),
        }
    }
    async fn connect(self, a: SocketAddr) -> io::Result<St> {
        match self {
            Sock::K(s) => s.connect(a).await.map(St::K),
            Sock::S(s) => s.connect(a).await.map(St::S),
        }
    }
    fn listen(self, backlog: u32) -> io::Result<Lst> {
        match self {
            Sock::K(s) => s.listen(backlog).map(Lst::K),
            Sock::S(s) => s.listen(backlog).map(Lst::S),
        }
    }
}

fn lst_addr(l: &Lst) -> SocketAddr {
    match l {
        Lst::K(l) => l.local_addr().unwrap(),
        Lst::S(l) => l.local_addr().unwrap(),
    }
}

/// Binding the port an open connection (or its TIME-WAIT) uses.
async fn tcp_port_of_a_connection(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let local = on!(&s, x => x.local_addr()).unwrap();
    let at = own(kernel, v6, local.port());
    out.push((
        "TcpListener::bind a connection's port",
        show_ok(&listen(net, kernel, at).await),
    ));
    let t = new_tcp_socket(net, kernel, v6);
    out.push(("TcpSocket bind it", show_ok(&t.bind(at))));
    let t = new_tcp_socket(net, kernel, v6);
    t.set_reuseaddr(true).unwrap();
    out.push(("TcpSocket bind it, reuseaddr", show_ok(&t.bind(at))));
    // We close first: TIME-WAIT on our side.
    shutdown(&mut s).await;
    peer_sees(&mut p, 300).await;
    drop(p);
    settle().await;
    out.push(("read EOF", read_once(&mut s, 10).await));
    drop(s);
    settle().await;
    let t = new_tcp_socket(net, kernel, v6);
    out.push(("TcpSocket bind a TIME-WAIT port", show_ok(&t.bind(at))));
    let t = new_tcp_socket(net, kernel, v6);
    t.set_reuseaddr(true).unwrap();
    out.push((
        "TcpSocket bind a TIME-WAIT port, reuseaddr",
        show_ok(&t.bind(at)),
    ));
    let r = within(5, t.connect(kaddr(v6, port))).await;
    out.push((
        "connect from it to the same peer (no listener now)",
        show_ok(&r),
    ));
    out.push((
        "TcpListener::bind a TIME-WAIT port",
        show_ok(&listen(net, kernel, at).await),
    ));
    out
}

/// A socket never bound listens (autobind); connecting to oneself; connecting to the
/// unspecified address.
async fn tcp_self_and_unspecified(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let l = new_tcp_socket(net, kernel, v6).listen(8).unwrap();
    let a = lst_addr(&l);
    out.push((
        "listen unbound: address",
        format!(
            "unspecified {} port>0 {}",
            a.ip().is_unspecified(),
            a.port() != 0
        ),
    ));
    // Connecting to the unspecified address with the listener's port reaches it (where
    // from: departs_connect_to_the_unspecified_address).
    let any = SocketAddr::new(a.ip(), a.port());
    let r = within(5, connect(net, kernel, any)).await;
    out.push(("connect to unspecified:port", show_ok(&r)));
    // Self-connect: bound to a port, connect to the same address and port.
    let t = new_tcp_socket(net, kernel, v6);
    t.bind(own(kernel, v6, 0)).unwrap();
    let me = t.local_addr().unwrap();
    let r = tokio::time::timeout(Duration::from_secs(3), t.connect(me)).await;
    out.push((
        "self-connect",
        match &r {
            Err(_) => "pending".into(),
            Ok(r) => show_ok(r),
        },
    ));
    if let Ok(Ok(mut c)) = r {
        on!(&mut c, x => x.write_all(b"echo").await).unwrap();
        out.push((
            "self-connect reads its own bytes",
            read_once(&mut c, 10).await,
        ));
    }
    out
}

/// The subject closes; the peer keeps writing.
async fn tcp_data_after_our_close(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    drop(s);
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    out.push(("peer writes", show(&p.write(b"more").await)));
    settle().await;
    out.push(("peer reads", peer_sees(&mut p, 300).await));
    out.push(("peer writes again", show(&p.write(b"more").await)));
    out
}

/// UDP connect to the unspecified address.
async fn udp_connect_unspecified(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, own(kernel, v6, 0)).await.unwrap();
    let any = SocketAddr::new(unspec(v6).ip(), 7777);
    out.push((
        "connect unspecified",
        show(&on!(&s, x => x.connect(any).await)),
    ));
    let pa = on!(&s, x => x.peer_addr());
    out.push((
        "peer_addr",
        format!(
            "{:?}",
            pa.map(|a| (
                a.ip() == own(kernel, v6, 0).ip(),
                a.ip().is_unspecified(),
                a.port()
            ))
            .map_err(|e| e.kind())
        ),
    ));
    out
}

differential!(
    same_tcp_bind_port_of_a_connection,
    "synack-d-poc",
    |net, kernel| tcp_port_of_a_connection(net, kernel, false, if kernel { 7601 } else { 7602 })
);
differential!(
    same_tcp_bind_port_of_a_connection_v6,
    "synack-d-poc6",
    |net, kernel| tcp_port_of_a_connection(net, kernel, true, if kernel { 7601 } else { 7602 })
);
differential!(
    same_tcp_autobind_and_self_connect,
    "synack-d-self",
    |net, kernel| tcp_self_and_unspecified(net, kernel, false)
);
differential!(
    same_tcp_autobind_and_self_connect_v6,
    "synack-d-self6",
    |net, kernel| tcp_self_and_unspecified(net, kernel, true)
);
differential!(
    same_tcp_data_after_our_close_is_reset,
    "synack-d-dac",
    |net, kernel| tcp_data_after_our_close(net, kernel, false, if kernel { 7611 } else { 7612 })
);
differential!(
    same_udp_connect_unspecified,
    "synack-d-ucu",
    |net, kernel| udp_connect_unspecified(net, kernel, false)
);

/// What an accepted stream inherits from its listener's socket.
async fn tcp_accept_inherits(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let sock = new_tcp_socket(net, kernel, v6);
    match &sock {
        Sock::K(s) => {
            s.set_nodelay(true).unwrap();
            #[allow(deprecated)]
            s.set_linger(Some(Duration::from_secs(3))).unwrap();
            s.set_keepalive(true).unwrap();
        }
        Sock::S(s) => {
            s.set_nodelay(true).unwrap();
            s.set_linger(Some(Duration::from_secs(3))).unwrap();
            s.set_keepalive(true).unwrap();
        }
    }
    sock.bind(at).unwrap();
    let l = sock.listen(8).unwrap();
    match &l {
        Lst::K(l) => l.set_ttl(9).unwrap(),
        Lst::S(l) => l.set_ttl(9).unwrap(),
    }
    let _c = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    let s = match &l {
        Lst::K(l) => St::K(within(5, l.accept()).await.unwrap().0),
        Lst::S(l) => St::S(within(5, l.accept()).await.unwrap().0),
    };
    out.push(("nodelay", show(&on!(&s, x => x.nodelay()))));
    #[allow(deprecated)]
    out.push(("linger", show(&on!(&s, x => x.linger()))));
    out.push(("ttl", show(&on!(&s, x => x.ttl()))));
    out.push(("quickack", show(&on!(&s, x => x.quickack()))));
    out.push((
        "listener ttl",
        show(&match &l {
            Lst::K(l) => l.ttl(),
            Lst::S(l) => l.ttl(),
        }),
    ));
    out
}
differential!(same_tcp_accept_inherits, "synack-d-inh", |net, kernel| {
    tcp_accept_inherits(net, kernel, false, 7701)
});
differential!(
    same_tcp_accept_inherits_v6,
    "synack-d-inh6",
    |net, kernel| tcp_accept_inherits(net, kernel, true, 7701)
);

/// Each receive-side call as the first after a port unreachable on a connected socket.
async fn udp_refused_each_call(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let closed = kaddr(v6, 9);
    for op in [
        "recv",
        "recv_from",
        "peek",
        "peek_from",
        "peek_sender",
        "try_recv",
        "try_peek",
        "try_peek_sender",
        "try_recv_buf",
        "recv_buf",
        "readable",
        "ready(R)",
        "try_send",
        "send_to other",
        "writable",
    ] {
        let s = ubind(net, kernel, unspec(v6)).await.unwrap();
        on!(&s, x => x.connect(closed).await).unwrap();
        on!(&s, x => x.send(b"x").await).unwrap();
        settle().await;
        let mut buf = [0u8; 10];
        let mut v: Vec<u8> = Vec::with_capacity(10);
        let d = Duration::from_millis(300);
        let r: String = match op {
            "recv" => on!(&s, x => tokio::time::timeout(d, x.recv(&mut buf)).await)
                .map_or("pending".into(), |r| show(&r)),
            "recv_from" => on!(&s, x => tokio::time::timeout(d, x.recv_from(&mut buf)).await)
                .map_or("pending".into(), |r| show_ok(&r)),
            "peek" => on!(&s, x => tokio::time::timeout(d, x.peek(&mut buf)).await)
                .map_or("pending".into(), |r| show(&r)),
            "peek_from" => on!(&s, x => tokio::time::timeout(d, x.peek_from(&mut buf)).await)
                .map_or("pending".into(), |r| show_ok(&r)),
            "peek_sender" => on!(&s, x => tokio::time::timeout(d, x.peek_sender()).await)
                .map_or("pending".into(), |r| show_ok(&r)),
            "try_recv" => show(&on!(&s, x => x.try_recv(&mut buf))),
            "try_peek" => show(&on!(&s, x => x.try_peek(&mut buf))),
            "try_peek_sender" => show_ok(&on!(&s, x => x.try_peek_sender())),
            "try_recv_buf" => show(&on!(&s, x => x.try_recv_buf(&mut v))),
            "recv_buf" => on!(&s, x => tokio::time::timeout(d, x.recv_buf(&mut v)).await)
                .map_or("pending".into(), |r| show(&r)),
            "readable" => on!(&s, x => tokio::time::timeout(d, x.readable()).await)
                .map_or("pending".into(), |r| show(&r)),
            "ready(R)" => uready(&s, Interest::READABLE).await,
            "try_send" => show(&on!(&s, x => x.try_send(b"y"))),
            "send_to other" => show(&on!(&s, x => x.send_to(b"y", kaddr(v6, 10)).await)),
            "writable" => on!(&s, x => tokio::time::timeout(d, x.writable()).await)
                .map_or("pending".into(), |r| show(&r)),
            _ => unreachable!(),
        };
        out.push((op, format!("{r}; then take_error {}", utake_error(&s))));
    }
    out
}
/// Port unreachables towards synack are rate limited per destination (towards the kernel's
/// own loopback they are not): off, for tests that draw many.
async fn no_icmp_ratelimit(net: &Net) {
    for knob in ["net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"] {
        let out = net.run("sysctl", &["-qw", knob]).await;
        assert!(out.status.success(), "{out:?}");
    }
}

differential!(
    same_udp_refused_each_call,
    "synack-d-urec",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_each_call(net, kernel, false)
);
differential!(
    same_udp_refused_each_call_v6,
    "synack-d-urec6",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_each_call(net, kernel, true)
);

/// UDP socket options read back after being set.
async fn udp_options(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    // Each family's own options only (the other family's:
    // same_udp_ipv6_options_on_an_ipv4_socket).
    #[allow(deprecated)]
    if !v6 {
        out.push(("tos default", show(&on!(&s, x => x.tos()))));
        for t in [0xffu32, 0x1c, 256, u32::MAX] {
            let r = on!(&s, x => x.set_tos(t));
            out.push((
                "set_tos",
                format!("{t:#x}: {} -> {}", show(&r), show(&on!(&s, x => x.tos()))),
            ));
        }
    }
    for t in [0xffu32, 0x1c, 256] {
        if v6 {
            break;
        }
        let r = on!(&s, x => x.set_tos_v4(t));
        out.push((
            "set_tos_v4",
            format!(
                "{t:#x}: {} -> {}",
                show(&r),
                show(&on!(&s, x => x.tos_v4()))
            ),
        ));
    }
    for t in [0xffu32, 0x1c, 256, u32::MAX] {
        if !v6 {
            break;
        }
        let r = on!(&s, x => x.set_tclass_v6(t));
        out.push((
            "set_tclass_v6",
            format!(
                "{t:#x}: {} -> {}",
                show(&r),
                show(&on!(&s, x => x.tclass_v6()))
            ),
        ));
    }
    out.push((
        "multicast_ttl_v4",
        show(&on!(&s, x => x.multicast_ttl_v4())),
    ));
    for t in [0u32, 255, 256] {
        let r = on!(&s, x => x.set_multicast_ttl_v4(t));
        out.push((
            "set_multicast_ttl_v4",
            format!(
                "{t}: {} -> {}",
                show(&r),
                show(&on!(&s, x => x.multicast_ttl_v4()))
            ),
        ));
    }
    out.push((
        "multicast_loop_v4",
        show(&on!(&s, x => x.multicast_loop_v4())),
    ));
    if v6 {
        out.push((
            "multicast_loop_v6",
            show(&on!(&s, x => x.multicast_loop_v6())),
        ));
    }
    out.push((
        "set_multicast_loop_v4 false",
        show(&on!(&s, x => x.set_multicast_loop_v4(false))),
    ));
    out.push((
        "multicast_loop_v4 after",
        show(&on!(&s, x => x.multicast_loop_v4())),
    ));
    if v6 {
        out.push((
            "set_multicast_loop_v6 false",
            show(&on!(&s, x => x.set_multicast_loop_v6(false))),
        ));
        out.push((
            "multicast_loop_v6 after",
            show(&on!(&s, x => x.multicast_loop_v6())),
        ));
    }
    out.push(("broadcast", show(&on!(&s, x => x.broadcast()))));
    out.push(("set_broadcast", show(&on!(&s, x => x.set_broadcast(true)))));
    out.push(("broadcast after", show(&on!(&s, x => x.broadcast()))));
    let g4: std::net::Ipv4Addr = "239.1.2.3".parse().unwrap();
    // The interface by its address: the namespace has no route for groups.
    let any4 = match own(kernel, false, 0).ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    out.push((
        "join_multicast_v4",
        show(&on!(&s, x => x.join_multicast_v4(g4, any4))),
    ));
    out.push((
        "join_multicast_v4 again",
        show(&on!(&s, x => x.join_multicast_v4(g4, any4))),
    ));
    out.push((
        "leave_multicast_v4",
        show(&on!(&s, x => x.leave_multicast_v4(g4, any4))),
    ));
    out.push((
        "leave_multicast_v4 again",
        show(&on!(&s, x => x.leave_multicast_v4(g4, any4))),
    ));
    out.push((
        "join_multicast_v4 unicast",
        show(&on!(&s, x => x.join_multicast_v4("198.18.0.9".parse().unwrap(), any4))),
    ));
    if !v6 {
        return out;
    }
    let g6: std::net::Ipv6Addr = "ff0e::1:7".parse().unwrap();
    out.push((
        "join_multicast_v6",
        show(&on!(&s, x => x.join_multicast_v6(&g6, 0))),
    ));
    out.push((
        "join_multicast_v6 again",
        show(&on!(&s, x => x.join_multicast_v6(&g6, 0))),
    ));
    out.push((
        "leave_multicast_v6",
        show(&on!(&s, x => x.leave_multicast_v6(&g6, 0))),
    ));
    out.push((
        "leave_multicast_v6 again",
        show(&on!(&s, x => x.leave_multicast_v6(&g6, 0))),
    ));
    out
}
differential!(
    same_udp_options,
    "synack-d-uopt",
    |net, kernel| udp_options(net, kernel, false)
);
differential!(same_udp_options_v6, "synack-d-uopt6", |net, kernel| {
    udp_options(net, kernel, true)
});

/// Talking to one's own address (the kernel's loopback; synack's loop inside the stack).
async fn own_address(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    out.push((
        "TCP connect own closed port",
        connect_outcome(net, kernel, own(kernel, v6, 9)).await,
    ));
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&u, x => x.connect(own(kernel, v6, 9)).await).unwrap();
    out.push((
        "UDP send to own closed port",
        show(&on!(&u, x => x.send(b"x").await)),
    ));
    settle().await;
    out.push(("UDP recv after", urecv(&u, 10).await));
    let a = ubind(net, kernel, own(kernel, v6, 0)).await.unwrap();
    let b = ubind(net, kernel, own(kernel, v6, 0)).await.unwrap();
    let b_addr = on!(&b, x => x.local_addr()).unwrap();
    let a_addr = on!(&a, x => x.local_addr()).unwrap();
    out.push((
        "UDP send_to own other socket",
        show(&on!(&a, x => x.send_to(b"self", b_addr).await)),
    ));
    out.push((
        "UDP other socket receives",
        urecv_from(&b, 10, a_addr).await,
    ));
    out
}
differential!(same_own_address, "synack-d-own", |net, kernel| own_address(
    net, kernel, false
));
differential!(same_own_address_v6, "synack-d-own6", |net, kernel| {
    own_address(net, kernel, true)
});

/// SO_LINGER 0 and a drop after a half close (ours, the peer's, or both).
async fn tcp_linger0_after(net: &Net, kernel: bool, v6: bool, port: u16, how: &str) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    on!(&s, x => x.set_zero_linger()).unwrap();
    if how == "ours" || how == "both" {
        shutdown(&mut s).await;
        out.push(("peer sees our FIN", peer_sees(&mut p, 300).await));
    }
    if how == "peer" || how == "both" {
        p.shutdown().await.unwrap();
        settle().await;
        out.push(("we read", read_once(&mut s, 10).await));
    }
    settle().await;
    drop(s);
    settle().await;
    if how == "peer" {
        out.push(("peer sees", peer_sees(&mut p, 300).await));
    } else {
        out.push(("peer writes", show(&p.write(b"x").await)));
        settle().await;
        out.push(("peer reads", peer_sees(&mut p, 300).await));
    }
    out
}
differential!(
    same_tcp_linger0_after_our_fin,
    "synack-d-l0o",
    |net, kernel| tcp_linger0_after(net, kernel, false, if kernel { 7801 } else { 7802 }, "ours")
);
differential!(
    same_tcp_linger0_after_peer_fin,
    "synack-d-l0p",
    |net, kernel| tcp_linger0_after(net, kernel, false, if kernel { 7801 } else { 7802 }, "peer")
);
differential!(
    same_tcp_linger0_after_both_fins,
    "synack-d-l0b",
    |net, kernel| tcp_linger0_after(net, kernel, false, if kernel { 7801 } else { 7802 }, "both")
);

// ---- focused differences -----------------------------------------------------------------

/// SO_RCVBUF / SO_SNDBUF read back: Linux doubles what was set (half for its overhead).
async fn tcp_buffer_sizes(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let sock = new_tcp_socket(net, kernel, v6);
    let r = match &sock {
        Sock::K(s) => (
            s.set_recv_buffer_size(65536).map(drop),
            s.recv_buffer_size(),
            s.set_send_buffer_size(65536).map(drop),
            s.send_buffer_size(),
        ),
        Sock::S(s) => (
            s.set_recv_buffer_size(65536),
            s.recv_buffer_size(),
            s.set_send_buffer_size(65536),
            s.send_buffer_size(),
        ),
    };
    out.push((
        "set_recv_buffer_size(65536) -> recv_buffer_size()",
        format!("{} {}", show(&r.0), show(&r.1)),
    ));
    out.push((
        "set_send_buffer_size(65536) -> send_buffer_size()",
        format!("{} {}", show(&r.2), show(&r.3)),
    ));
    out
}
differential!(
    /// Buffer sizes read back as set; Linux doubles them for its overhead.
    departs_tcp_socket_buffer_size_readback,
    "synack-d-bufs",
    departs ["set_recv_buffer_size(65536) -> recv_buffer_size()", "set_send_buffer_size(65536) -> send_buffer_size()"],
    |net, kernel| tcp_buffer_sizes(net, kernel, false)
);

/// TCP_QUICKACK read back once the peer's bare FIN (no data before it) was taken: Linux
/// enters request/response mode at the FIN (`tcp_fin`), and its delayed-ACK timer, armed
/// with an ATO of 0 since no data came, fires at once and leaves the mode again
/// (`tcp_delack_timer_handler`): `true`.
async fn tcp_quickack_bare_fin(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.shutdown().await.unwrap();
    settle().await;
    out.push((
        "quickack after a bare FIN",
        show(&on!(&s, x => x.quickack())),
    ));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    out.push(("quickack closed", show(&on!(&s, x => x.quickack()))));
    out
}
differential!(
    same_tcp_quickack_after_a_bare_fin,
    "synack-d-qbf",
    |net, kernel| tcp_quickack_bare_fin(net, kernel, false, if kernel { 7901 } else { 7902 })
);

/// Connecting to the unspecified address: Linux goes to loopback (127.0.0.1 for an unbound
/// TCP socket; ::1 for an IPv6 UDP socket even when bound), where synack, which has no
/// loopback link, goes to its own address.
async fn connect_unspecified(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let l = new_tcp_socket(net, kernel, false).listen(8).unwrap();
    let port = lst_addr(&l).port();
    let any: SocketAddr = format!("0.0.0.0:{port}").parse().unwrap();
    let c = within(5, connect(net, kernel, any)).await.unwrap();
    let pa = on!(&c, x => x.peer_addr()).unwrap();
    out.push((
        "TCP connect 0.0.0.0: peer_addr is loopback",
        format!("{}", pa.ip().is_loopback()),
    ));
    let u = ubind(net, kernel, own(kernel, true, 0)).await.unwrap();
    on!(&u, x => x.connect("[::]:7777".parse::<SocketAddr>().unwrap()).await).unwrap();
    let pa = on!(&u, x => x.peer_addr()).unwrap();
    out.push((
        "UDP (bound IPv6) connect [::]: peer_addr is loopback",
        format!("{}", pa.ip().is_loopback()),
    ));
    out
}
differential!(
    /// Synack has no loopback link: a connect to the unspecified address goes to its own address.
    departs_connect_to_the_unspecified_address,
    "synack-d-cun",
    departs ["TCP connect 0.0.0.0: peer_addr is loopback", "UDP (bound IPv6) connect [::]: peer_addr is loopback"],
    |net, kernel| connect_unspecified(net, kernel)
);

/// IPv6 multicast options on an IPv4 UDP socket: Linux refuses them (ENOPROTOOPT to set,
/// EOPNOTSUPP to get), as it does IPV6_TCLASS there.
async fn udp_v6_options_on_v4(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(false)).await.unwrap();
    let errno_only = |r: &io::Result<_>| match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("errno {:?}", errno_of(e)),
    };
    out.push((
        "multicast_loop_v6",
        errno_only(&on!(&s, x => x.multicast_loop_v6()).map(|v| v as u8)),
    ));
    out.push((
        "set_multicast_loop_v6(false)",
        errno_only(&on!(&s, x => x.set_multicast_loop_v6(false)).map(|_| 0u8)),
    ));
    let g6: std::net::Ipv6Addr = "ff0e::1:7".parse().unwrap();
    out.push((
        "leave_multicast_v6 (never joined)",
        errno_only(&on!(&s, x => x.leave_multicast_v6(&g6, 0)).map(|_| 0u8)),
    ));
    out
}
differential!(
    same_udp_ipv6_options_on_an_ipv4_socket,
    "synack-d-u6o4",
    |net, kernel| udp_v6_options_on_v4(net, kernel)
);

/// IP_TOS on an IPv6 socket (tokio's `set_tos_v4`, and `set_tos`, its deprecated
/// name), UDP and TCP: Linux keeps it (for IPv4-mapped traffic) and reads it back, the low eight bits
/// of any value.
async fn udp_ip_tos_on_v6(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(true)).await.unwrap();
    let r = on!(&s, x => x.set_tos_v4(0x1c));
    out.push((
        "UDP set_tos_v4(0x1c) -> tos_v4()",
        format!("{} {}", show(&r), show(&on!(&s, x => x.tos_v4()))),
    ));
    #[allow(deprecated)]
    let r = on!(&s, x => x.set_tos(256));
    out.push(("UDP set_tos(256)", show(&r)));
    let t = new_tcp_socket(net, kernel, true);
    let r = match &t {
        Sock::K(t) => (t.set_tos_v4(0x1c), t.tos_v4()),
        Sock::S(t) => (t.set_tos_v4(0x1c), t.tos_v4()),
    };
    out.push((
        "TcpSocket set_tos_v4(0x1c) -> tos_v4()",
        format!("{} {}", show(&r.0), show(&r.1)),
    ));
    out
}
differential!(
    /// Synack keeps one DS byte a socket, which set_tclass_v6 sets for both families.
    departs_ip_tos_on_an_ipv6_socket,
    "synack-d-utos6",
    departs ["UDP set_tos_v4(0x1c) -> tos_v4()", "UDP set_tos(256)", "TcpSocket set_tos_v4(0x1c) -> tos_v4()"],
    |net, kernel| udp_ip_tos_on_v6(net, kernel)
);

/// Errnos that std gives no `ErrorKind` of their own: tokio's errors are
/// `from_raw_os_error` (kind `Uncategorized`, `raw_os_error` the errno); synack's carry a
/// kind it chose and no `raw_os_error`.
async fn errors_without_a_std_kind(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let raw = |r: io::Result<()>| match r {
        Ok(()) => "Ok".to_string(),
        Err(e) => format!("kind {:?}, raw_os_error {:?}", e.kind(), e.raw_os_error()),
    };
    let s = ubind(net, kernel, unspec(false)).await.unwrap();
    out.push((
        "UDP send unconnected (EDESTADDRREQ)",
        raw(on!(&s, x => x.send(b"x").await).map(drop)),
    ));
    out.push((
        "UDP set_tclass_v6 on IPv4 (ENOPROTOOPT)",
        raw(on!(&s, x => x.set_tclass_v6(8))),
    ));
    let big = vec![0u8; 70_000];
    out.push((
        "UDP send_to 70000 bytes (EMSGSIZE)",
        raw(on!(&s, x => x.send_to(&big, kaddr(false, 9)).await).map(drop)),
    ));
    let t = new_tcp_socket(net, kernel, false);
    out.push((
        "TCP IPv4 socket bind IPv6 (EAFNOSUPPORT)",
        raw(t.bind(own(kernel, true, 0))),
    ));
    out
}
differential!(
    /// An errno std has no kind for keeps a kind a caller can match, and carries synack_core::Error
    /// rather than the errno.
    departs_errors_without_a_std_kind,
    "synack-d-ekind",
    departs ["UDP send unconnected (EDESTADDRREQ)", "UDP set_tclass_v6 on IPv4 (ENOPROTOOPT)", "UDP send_to 70000 bytes (EMSGSIZE)", "TCP IPv4 socket bind IPv6 (EAFNOSUPPORT)"],
    |net, kernel| errors_without_a_std_kind(net, kernel)
);

/// `ready(ERROR)` after the peer's reset once a write has taken the error: tokio's
/// readiness on the kernel keeps the EPOLLERR it was told (nothing clears it), so the stream
/// stays ready for ERROR; synack's reports ERROR only while the error waits.
async fn tcp_error_readiness_after_taken(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push((
        "ready(ERROR) with the error pending",
        ready_now(&s, Interest::ERROR).await,
    ));
    out.push(("write", write_once(&mut s, b"x").await));
    out.push((
        "ready(ERROR) once taken",
        ready_now(&s, Interest::ERROR).await,
    ));
    out
}
differential!(
    /// Tokio's cached readiness keeps ERROR after the error is taken; synack's reflects the socket.
    departs_tcp_error_readiness_after_the_error_is_taken,
    "synack-d-errr",
    departs["ready(ERROR) once taken"],
    |net, kernel| tcp_error_readiness_after_taken(
        net,
        kernel,
        false,
        if kernel { 7911 } else { 7912 }
    )
);

/// SO_LINGER of 2^32 seconds: tokio passes `as_secs() as c_int`, which wraps to 0 there,
/// so on the kernel the linger is 0 and the drop resets; synack keeps it at `i32::MAX`
/// seconds (`sockopt::linger_secs`) and closes gracefully.
#[allow(deprecated)]
async fn tcp_linger_2_32(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    let d = Duration::from_secs(1 << 32);
    let r = on!(&s, x => x.set_linger(Some(d)));
    out.push((
        "set_linger(2^32 s) -> linger()",
        format!("{} -> {}", show(&r), show(&on!(&s, x => x.linger()))),
    ));
    drop(s);
    out.push(("peer sees after the drop", peer_sees(&mut p, 1000).await));
    out
}
differential!(
    /// Tokio casts the seconds to a C int, which wraps 2^32 s to 0; synack clamps.
    departs_tcp_linger_of_2_pow_32_seconds,
    "synack-d-lx",
    departs ["set_linger(2^32 s) -> linger()", "peer sees after the drop"],
    |net, kernel| tcp_linger_2_32(net, kernel, false, if kernel { 7921 } else { 7922 })
);

// ---- half closes carrying data, vectored I/O, bulk transfers -----------------------------

/// Reads from the kernel peer until EOF (or 10 s): whether it got exactly `want`, and how
/// the stream ended.
async fn peer_reads_all(p: &mut tokio::net::TcpStream, want: &[u8]) -> String {
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(10), p.read_to_end(&mut got)).await;
    let end = match r {
        Err(_) => "then nothing".to_string(),
        Ok(Ok(_)) => "EOF".to_string(),
        Ok(Err(e)) => show_err(&e),
    };
    format!("intact {}, {end}", got == want)
}

/// Reads `len` bytes from the subject, `chunk` at a time, pausing `pause_ms` between reads.
async fn read_exactly(s: &mut St, len: usize, chunk: usize, pause_ms: u64) -> io::Result<Vec<u8>> {
    let mut got = Vec::with_capacity(len);
    let mut buf = vec![0u8; chunk];
    while got.len() < len {
        let n = on!(s, x => x.read(&mut buf).await)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if pause_ms > 0 {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
    }
    Ok(got)
}

/// The peer half-closes; the subject, in CLOSE-WAIT, writes a MiB that the peer reads
/// whole, then closes.
async fn tcp_write_in_close_wait(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.shutdown().await.unwrap();
    settle().await;
    out.push(("read EOF", read_once(&mut s, 10).await));
    out.push((
        "ready(R|W) in CLOSE-WAIT",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    let data = kernel_support::pattern(1 << 20, 11);
    let (w, r) = tokio::join!(
        async { show(&on!(&mut s, x => within(10, x.write_all(&data)).await)) },
        async {
            let mut got = vec![0u8; data.len()];
            let r = within(10, p.read_exact(&mut got)).await;
            format!("{} intact {}", show_ok(&r), got == data)
        }
    );
    out.push(("write_all 1 MiB in CLOSE-WAIT", w));
    out.push(("peer reads it", r));
    out.push((
        "ready(R|W) after",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("peer sees", peer_sees(&mut p, 500).await));
    out
}

/// The subject half-closes; the peer, in its CLOSE-WAIT, writes a MiB that the subject
/// (in FIN-WAIT-2) reads whole, then closes.
async fn tcp_read_in_fin_wait(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    out.push((
        "ready(R|W) in FIN-WAIT-2",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    let data = kernel_support::pattern(1 << 20, 13);
    let (w, r) = tokio::join!(
        async {
            let w = within(10, p.write_all(&data)).await;
            p.shutdown().await.unwrap();
            show(&w)
        },
        async {
            let r = within(10, read_exactly(&mut s, data.len() + 1, 65536, 0)).await;
            match r {
                Ok(got) => format!("{} bytes, intact {}", got.len(), got == data),
                Err(e) => show_err(&e),
            }
        }
    );
    out.push(("peer writes 1 MiB", w));
    out.push(("subject reads it to EOF", r));
    out.push((
        "ready(R|W) after both FINs",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("read at EOF", read_once(&mut s, 10).await));
    out
}

/// Four MiB each way through a slow reader: the bytes arrive whole and in order.
async fn tcp_bulk_slow_reader(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let data = kernel_support::pattern(4 << 20, 17);
    let (w, r) = tokio::join!(
        async {
            let w = on!(&mut s, x => within(20, x.write_all(&data)).await);
            (show(&w), on!(&mut s, x => x.shutdown().await).is_ok())
        },
        async {
            // 16 KiB a millisecond at most.
            let mut got = Vec::new();
            let mut buf = vec![0u8; 16384];
            loop {
                match p.read(&mut buf).await {
                    Ok(0) => break "EOF".to_string(),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break show_err(&e),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            .to_string()
                + &format!(" after {} bytes, intact {}", got.len(), got == data)
        }
    );
    out.push(("write_all 4 MiB, shutdown", format!("{w:?}")));
    out.push(("slow peer reads", r));
    let back = kernel_support::pattern(4 << 20, 19);
    let (w, r) = tokio::join!(
        async {
            let w = within(20, p.write_all(&back)).await;
            p.shutdown().await.unwrap();
            show(&w)
        },
        async {
            match within(20, read_exactly(&mut s, back.len() + 1, 16384, 1)).await {
                Ok(got) => format!("{} bytes, intact {}", got.len(), got == back),
                Err(e) => show_err(&e),
            }
        }
    );
    out.push(("peer writes 4 MiB", w));
    out.push(("slow subject reads to EOF", r));
    out
}

/// Fills the subject's send buffer (the peer not reading): how many bytes it took.
async fn fill(s: &St) -> usize {
    let chunk = vec![7u8; 65536];
    let mut sent = 0;
    for i in 0..2000 {
        match on!(s, x => x.try_write(&chunk)) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        if i % 16 == 15 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    sent
}

/// `flush`, `shutdown` and a drop (`how`: "shutdown", "drop", or "linger", a drop with a
/// linger of a second) while the send buffer is full and the peer not reading: none waits
/// for the data to go (the linger's close, on the kernel, a second), and the peer gets all
/// of it, then the FIN (Linux goes on sending once a linger runs out: socket(7)).
async fn tcp_close_with_full_buffer(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    how: &str,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let sent = fill(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = sent + fill(&s).await;
    out.push(("send buffer full", format!("{}", sent > 0)));
    let r = on!(&mut s, x => tokio::time::timeout(Duration::from_millis(500), x.flush()).await);
    out.push(("flush", r.map_or("pending".into(), |r| show(&r))));
    if how == "linger" {
        #[allow(deprecated)]
        let r = on!(&s, x => x.set_linger(Some(Duration::from_secs(1))));
        out.push(("set_linger 1 s", show(&r)));
    }
    if how != "shutdown" {
        drop(s);
    } else {
        let r =
            on!(&mut s, x => tokio::time::timeout(Duration::from_millis(500), x.shutdown()).await);
        out.push(("shutdown", r.map_or("pending".into(), |r| show(&r))));
        out.push(("write after", write_once(&mut s, b"x").await));
    }
    out.push((
        "peer reads to the end",
        peer_reads_all(&mut p, &vec![7u8; sent]).await,
    ));
    out
}

/// Vectored and `BufMut` reads and writes: many slices, empty ones, none; empty buffers.
async fn tcp_vectored(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use std::io::{IoSlice, IoSliceMut};
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let parts: Vec<Vec<u8>> = (0..100).map(|i| format!("{i:02}").into_bytes()).collect();
    let slices: Vec<IoSlice> = parts.iter().map(|v| IoSlice::new(v)).collect();
    out.push((
        "try_write_vectored 100 slices",
        show(&on!(&s, x => x.try_write_vectored(&slices))),
    ));
    out.push((
        "try_write_vectored no slices",
        show(&on!(&s, x => x.try_write_vectored(&[]))),
    ));
    let empty = [IoSlice::new(b""), IoSlice::new(b"")];
    out.push((
        "try_write_vectored empty slices",
        show(&on!(&s, x => x.try_write_vectored(&empty))),
    ));
    let mixed = [
        IoSlice::new(b""),
        IoSlice::new(b"<a"),
        IoSlice::new(b""),
        IoSlice::new(b"b>"),
    ];
    out.push((
        "try_write_vectored mixed",
        show(&on!(&s, x => x.try_write_vectored(&mixed))),
    ));
    let r = on!(&mut s, x => x.write_vectored(&mixed).await);
    out.push(("write_vectored mixed", show(&r)));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    p.write_all(b"0123456789abcdefghij").await.unwrap();
    settle().await;
    let (mut a, mut b, mut c) = ([0u8; 3], [0u8; 0], [0u8; 5]);
    let mut bufs = [
        IoSliceMut::new(&mut a),
        IoSliceMut::new(&mut b),
        IoSliceMut::new(&mut c),
    ];
    let r = on!(&s, x => x.try_read_vectored(&mut bufs));
    out.push((
        "try_read_vectored 3+0+5",
        format!("{} {:?} {:?}", show(&r), a, c),
    ));
    let mut none: [IoSliceMut; 0] = [];
    out.push((
        "try_read_vectored no slices",
        show(&on!(&s, x => x.try_read_vectored(&mut none))),
    ));
    let mut z = [0u8; 0];
    let mut zero = [IoSliceMut::new(&mut z)];
    out.push((
        "try_read_vectored empty slice",
        show(&on!(&s, x => x.try_read_vectored(&mut zero))),
    ));
    let mut v: Vec<u8> = Vec::with_capacity(4);
    let r = on!(&s, x => x.try_read_buf(&mut v));
    out.push((
        "try_read_buf capacity 4",
        format!("{} {:?}", show(&r), String::from_utf8_lossy(&v)),
    ));
    let mut e: &mut [u8] = &mut [];
    out.push((
        "try_read_buf no room",
        show(&on!(&s, x => x.try_read_buf(&mut e))),
    ));
    let mut v = Vec::new();
    let r = on!(&mut s, x => x.read_buf(&mut v).await);
    out.push((
        "read_buf rest",
        format!("{} {:?}", show(&r), String::from_utf8_lossy(&v)),
    ));
    let mut v = Vec::new();
    out.push((
        "try_read_buf nothing",
        show(&on!(&s, x => x.try_read_buf(&mut v))),
    ));
    p.shutdown().await.unwrap();
    settle().await;
    let mut v = Vec::with_capacity(8);
    out.push((
        "try_read_buf at EOF",
        show(&on!(&s, x => x.try_read_buf(&mut v))),
    ));
    let mut a = [0u8; 4];
    let mut bufs = [IoSliceMut::new(&mut a)];
    out.push((
        "try_read_vectored at EOF",
        show(&on!(&s, x => x.try_read_vectored(&mut bufs))),
    ));
    out.push((
        "try_write_vectored in CLOSE-WAIT",
        show(&on!(&s, x => x.try_write_vectored(&mixed))),
    ));
    out.push(("shutdown", shutdown(&mut s).await));
    out.push((
        "try_write_vectored after shutdown",
        show(&on!(&s, x => x.try_write_vectored(&mixed))),
    ));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    out
}

/// More slices than `IOV_MAX` (1024): one vectored call takes the first 1024, as std's
/// `writev` and `readv` pass no more (the rest wait for the next call); 1024 empty slices
/// first make a write of none.
async fn tcp_vectored_past_iov_max(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use std::io::{IoSlice, IoSliceMut};
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let data = kernel_support::pattern(1500, 7);
    let slices: Vec<IoSlice> = data.chunks(1).map(IoSlice::new).collect();
    out.push((
        "try_write_vectored 1500 slices",
        show(&on!(&s, x => x.try_write_vectored(&slices))),
    ));
    let r = on!(&mut s, x => x.write_vectored(&slices).await);
    out.push(("write_vectored 1500 slices", show(&r)));
    let mut empty_first = vec![IoSlice::new(b""); 1024];
    empty_first.push(IoSlice::new(b"late"));
    out.push((
        "try_write_vectored 1024 empty, then 4 bytes",
        show(&on!(&s, x => x.try_write_vectored(&empty_first))),
    ));
    let mut got = vec![0u8; 2048];
    within(5, p.read_exact(&mut got)).await.unwrap();
    out.push((
        "peer got the first 1024 bytes twice",
        (got[..1024] == data[..1024] && got[1024..] == data[..1024]).to_string(),
    ));
    p.write_all(&data).await.unwrap();
    settle().await;
    let mut room = vec![[0u8; 1]; 1500];
    let mut bufs: Vec<IoSliceMut> = room.iter_mut().map(|b| IoSliceMut::new(b)).collect();
    out.push((
        "try_read_vectored 1500 one-byte slices",
        show(&on!(&s, x => x.try_read_vectored(&mut bufs))),
    ));
    out
}

/// Zero-length reads and writes on a reset stream.
async fn tcp_empty_io_after_rst(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push(("try_write empty", show(&on!(&s, x => x.try_write(b"")))));
    out.push(("try_read empty buf", try_read(&s, 0)));
    out.push(("write empty", write_once(&mut s, b"").await));
    out.push(("read empty buf", read_once(&mut s, 0).await));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("write empty after", write_once(&mut s, b"").await));
    out.push(("read empty buf after", read_once(&mut s, 0).await));
    out.push(("take_error", take_error(&s)));
    out
}

differential!(
    same_tcp_write_a_mib_in_close_wait,
    "synack-d-hcw",
    |net, kernel| tcp_write_in_close_wait(net, kernel, false, if kernel { 8001 } else { 8002 })
);
differential!(
    same_tcp_write_a_mib_in_close_wait_v6,
    "synack-d-hcw6",
    |net, kernel| tcp_write_in_close_wait(net, kernel, true, if kernel { 8001 } else { 8002 })
);
differential!(
    same_tcp_read_a_mib_in_fin_wait,
    "synack-d-hcr",
    |net, kernel| tcp_read_in_fin_wait(net, kernel, false, if kernel { 8011 } else { 8012 })
);
differential!(
    same_tcp_bulk_through_slow_readers,
    "synack-d-bulk",
    |net, kernel| tcp_bulk_slow_reader(net, kernel, false, if kernel { 8021 } else { 8022 })
);
differential!(
    same_tcp_shutdown_with_a_full_send_buffer,
    "synack-d-fsh",
    |net, kernel| tcp_close_with_full_buffer(
        net,
        kernel,
        false,
        if kernel { 8031 } else { 8032 },
        "shutdown"
    )
);
differential!(
    same_tcp_drop_with_a_full_send_buffer,
    "synack-d-fdr",
    |net, kernel| tcp_close_with_full_buffer(
        net,
        kernel,
        false,
        if kernel { 8031 } else { 8032 },
        "drop"
    )
);
differential!(
    same_tcp_drop_with_a_full_send_buffer_and_linger,
    "synack-d-fdl",
    |net, kernel| tcp_close_with_full_buffer(
        net,
        kernel,
        false,
        if kernel { 8031 } else { 8032 },
        "linger"
    )
);
differential!(same_tcp_vectored_io, "synack-d-vec", |net, kernel| {
    tcp_vectored(net, kernel, false, if kernel { 8041 } else { 8042 })
});
differential!(
    same_tcp_vectored_past_iov_max,
    "synack-d-iovm",
    |net, kernel| {
        tcp_vectored_past_iov_max(net, kernel, false, if kernel { 8073 } else { 8074 })
    }
);
differential!(
    same_tcp_empty_io_after_rst,
    "synack-d-erst",
    |net, kernel| tcp_empty_io_after_rst(net, kernel, false, if kernel { 8061 } else { 8062 })
);

// ---- UDP: big datagrams, receive variants, IPv4-mapped -----------------------------------

/// The largest datagrams each family carries (65507 bytes over IPv4, 65527 over IPv6) and
/// one byte more, each way; over the TUN they go in fragments.
async fn udp_largest(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    let max = if v6 { 65527 } else { 65507 };
    let errno = |r: io::Result<usize>| match r {
        Ok(n) => format!("Ok({n})"),
        Err(e) => format!("Err(errno {:?})", errno_of(&e)),
    };
    let mut buf = vec![0u8; 70_000];
    for len in [1473, max, max + 1] {
        let data = kernel_support::pattern(len, len as u32);
        let r = on!(&s, x => x.send_to(&data, peer_addr).await);
        let got = tokio::time::timeout(Duration::from_millis(500), p.recv_from(&mut buf)).await;
        let got = match got {
            Err(_) => "nothing".to_string(),
            Ok(Ok((n, _))) => format!("{n}, intact {}", buf[..n] == data[..]),
            Ok(Err(e)) => show_err(&e),
        };
        out.push(("send_to", format!("{len}: {}; peer got {got}", errno(r))));
        let r = p.send_to(&data, me).await;
        let got = on!(&s, x => tokio::time::timeout(Duration::from_millis(500), x.recv_from(&mut buf)).await);
        let got = match got {
            Err(_) => "nothing".to_string(),
            Ok(Ok((n, from))) => format!(
                "{n}, intact {}, from peer {}",
                buf[..n] == data[..],
                from == peer_addr
            ),
            Ok(Err(e)) => show_err(&e),
        };
        out.push(("peer send_to", format!("{len}: {}; got {got}", errno(r))));
    }
    out
}

/// `peek_sender`, `recv_buf_from` into a small `Vec`, a zero-length `try_recv_from`,
/// `try_recv_buf_from`, and `recv_buf` on an unconnected socket.
async fn udp_recv_variants(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    let r = on!(&s, x => tokio::time::timeout(Duration::from_millis(200), x.peek_sender()).await);
    out.push((
        "peek_sender nothing",
        r.map_or("pending".into(), |r| show_ok(&r)),
    ));
    for d in [&b"0123456789"[..], b"second", b"third", b"", b"fifth"] {
        p.send_to(d, me).await.unwrap();
    }
    settle().await;
    out.push((
        "peek_sender",
        format!(
            "{:?}",
            on!(&s, x => x.peek_sender().await)
                .map(|a| a == peer_addr)
                .map_err(|e| e.kind())
        ),
    ));
    let mut v: Vec<u8> = Vec::with_capacity(4);
    let r = on!(&s, x => x.recv_buf_from(&mut v).await);
    out.push((
        "recv_buf_from capacity 4",
        format!(
            "{:?} {:?}",
            r.map(|(n, a)| (n, a == peer_addr)).map_err(|e| e.kind()),
            String::from_utf8_lossy(&v)
        ),
    ));
    let mut z = [0u8; 0];
    out.push((
        "try_recv_from empty buffer",
        format!(
            "{:?}",
            on!(&s, x => x.try_recv_from(&mut z))
                .map(|(n, a)| (n, a == peer_addr))
                .map_err(|e| e.kind())
        ),
    ));
    let mut v: Vec<u8> = Vec::with_capacity(100);
    let r = on!(&s, x => x.try_recv_buf_from(&mut v));
    out.push((
        "try_recv_buf_from",
        format!(
            "{:?} {:?}",
            r.map(|(n, a)| (n, a == peer_addr)).map_err(|e| e.kind()),
            String::from_utf8_lossy(&v)
        ),
    ));
    let mut v: Vec<u8> = Vec::with_capacity(100);
    let r = on!(&s, x => x.recv_buf(&mut v).await);
    out.push((
        "recv_buf unconnected, empty datagram",
        format!("{} {:?}", show(&r), v),
    ));
    let mut v: Vec<u8> = Vec::new();
    let r = on!(&s, x => x.try_recv_buf(&mut v));
    out.push((
        "try_recv_buf into an empty Vec",
        format!("{} {:?}", show(&r), String::from_utf8_lossy(&v)),
    ));
    let mut v: Vec<u8> = Vec::with_capacity(100);
    out.push((
        "try_recv_buf_from nothing",
        show_ok(&on!(&s, x => x.try_recv_buf_from(&mut v))),
    ));
    out.push((
        "try_peek_sender nothing",
        show_ok(&on!(&s, x => x.try_peek_sender())),
    ));
    out
}

/// IPv4 peers of `[::]` sockets: an accepted stream's addresses and a datagram's sender
/// are IPv4-mapped, and a reply to the mapped address reaches the IPv4 peer.
async fn dual_mapped(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let mapped = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    };
    let any6: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let l = listen(net, kernel, any6).await.unwrap();
    let c = within(5, ksocket(net, false).connect(own(kernel, false, port)))
        .await
        .unwrap();
    let (s, from) = match &l {
        Lst::K(l) => {
            let (s, a) = within(5, l.accept()).await.unwrap();
            (St::K(s), a)
        }
        Lst::S(l) => {
            let (s, a) = within(5, l.accept()).await.unwrap();
            (St::S(s), a)
        }
    };
    out.push((
        "accept: from the client, mapped",
        format!("{}", from == mapped(c.local_addr().unwrap())),
    ));
    out.push((
        "peer_addr is it",
        format!("{:?}", on!(&s, x => x.peer_addr()).map(|a| a == from)),
    ));
    out.push((
        "local_addr: the client's peer, mapped",
        format!(
            "{:?}",
            on!(&s, x => x.local_addr()).map(|a| a == mapped(c.peer_addr().unwrap()))
        ),
    ));
    // A v6 TcpSocket connecting to a mapped address.
    let _k = klisten(net, kaddr(false, port + 1)).unwrap();
    let t = new_tcp_socket(net, kernel, true);
    let r = within(5, t.connect(mapped(kaddr(false, port + 1)))).await;
    out.push(("v6 socket connects to a mapped address", show_ok(&r)));
    if let Ok(t) = r {
        out.push((
            "its local_addr",
            format!(
                "{:?}",
                on!(&t, x => x.local_addr()).map(|a| a.ip() == mapped(own(kernel, false, 0)).ip())
            ),
        ));
        out.push((
            "its peer_addr",
            format!(
                "{:?}",
                on!(&t, x => x.peer_addr()).map(|a| a == mapped(kaddr(false, port + 1)))
            ),
        ));
    }
    // UDP.
    let u = ubind(net, kernel, any6).await.unwrap();
    let p = net.kernel_udp(kaddr(false, port + 2)).unwrap();
    p.send_to(b"v4 in", own(kernel, false, port)).await.unwrap();
    out.push((
        "UDP [::] receives from IPv4",
        urecv_from(&u, 10, mapped(kaddr(false, port + 2))).await,
    ));
    out.push((
        "UDP [::] send_to mapped",
        show(&on!(&u, x => x.send_to(b"v4 out", mapped(kaddr(false, port + 2))).await)),
    ));
    out.push(("IPv4 peer got", kpeer_recv(&p).await));
    out.push((
        "UDP [::] send_to plain IPv4",
        show(&on!(&u, x => x.send_to(b"plain", kaddr(false, port + 2)).await)),
    ));
    out
}

differential!(
    same_udp_largest_datagrams,
    "synack-d-umax",
    |net, kernel| { udp_largest(net, kernel, false, if kernel { 8101 } else { 8102 }) }
);
differential!(
    same_udp_largest_datagrams_v6,
    "synack-d-umax6",
    |net, kernel| udp_largest(net, kernel, true, if kernel { 8101 } else { 8102 })
);
differential!(same_udp_receive_variants, "synack-d-urv", |net, kernel| {
    udp_recv_variants(net, kernel, false, if kernel { 8111 } else { 8112 })
});
differential!(
    same_udp_receive_variants_v6,
    "synack-d-urv6",
    |net, kernel| udp_recv_variants(net, kernel, true, if kernel { 8111 } else { 8112 })
);
differential!(
    same_ipv4_peers_of_dual_stack_sockets,
    "synack-d-map",
    |net, kernel| dual_mapped(net, kernel, if kernel { 8121 } else { 8131 })
);

// ---- TcpSocket before connect and listen, connect lists, reuseport ------------------------

/// `TcpStream::connect` with several addresses (tokio's in the namespace: its own runtime
/// on a thread there).
async fn connect_list(net: &Net, kernel: bool, to: Vec<SocketAddr>) -> io::Result<St> {
    if kernel {
        let std = net
            .ns
            .run_in(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async { tokio::net::TcpStream::connect(&to[..]).await?.into_std() })
            })
            .unwrap()?;
        tokio::net::TcpStream::from_std(std).map(St::K)
    } else {
        synack_tokio::TcpStream::connect(&net.stack, &to[..])
            .await
            .map(St::S)
    }
}

async fn tcp_connect_lists(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let _l4 = klisten(net, kaddr(false, port)).unwrap();
    let _l6 = klisten(net, kaddr(true, port)).unwrap();
    let peer = |r: &io::Result<St>| match r {
        Ok(s) => format!(
            "{:?}",
            on!(s, x => x.peer_addr())
                .map(|a| (a.ip(), a.port() == port))
                .map_err(|e| e.kind())
        ),
        Err(e) => show_err(e),
    };
    for (what, list) in [
        (
            "refused, then v4",
            vec![kaddr(false, 9), kaddr(false, port)],
        ),
        (
            "refused v6, then v4",
            vec![kaddr(true, 9), kaddr(false, port)],
        ),
        ("v6, then v4", vec![kaddr(true, port), kaddr(false, port)]),
        ("refused, refused", vec![kaddr(false, 9), kaddr(true, 10)]),
        ("port 0, refused", vec![kaddr(false, 0), kaddr(false, 9)]),
        ("none", vec![]),
    ] {
        let r = within(10, connect_list(net, kernel, list)).await;
        out.push((what, peer(&r)));
    }
    out
}

/// A `TcpSocket` bound before `connect` keeps its address; options set before `connect`
/// hold on the stream.
async fn tcp_socket_then_connect(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let l = klisten(net, kaddr(v6, port)).unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    t.bind(own(kernel, v6, port + 1)).unwrap();
    let s = within(5, t.connect(kaddr(v6, port))).await.unwrap();
    out.push((
        "bound to a port: local_addr",
        format!(
            "{:?}",
            on!(&s, x => x.local_addr()).map(|a| a == own(kernel, v6, port + 1))
        ),
    ));
    let (_p, from) = within(5, l.accept()).await.unwrap();
    out.push((
        "the peer sees that port",
        format!("{}", from.port() == port + 1),
    ));
    let t = new_tcp_socket(net, kernel, v6);
    t.bind(SocketAddr::new(unspec(v6).ip(), port + 2)).unwrap();
    let s2 = within(5, t.connect(kaddr(v6, port))).await.unwrap();
    out.push((
        "bound to unspecified:port: local_addr",
        format!(
            "{:?}",
            on!(&s2, x => x.local_addr()).map(|a| a == own(kernel, v6, port + 2))
        ),
    ));
    let _p2 = within(5, l.accept()).await.unwrap();
    // Options on the socket, then connect.
    let t = new_tcp_socket(net, kernel, v6);
    match &t {
        Sock::K(x) => {
            x.set_nodelay(true).unwrap();
            #[allow(deprecated)]
            x.set_linger(Some(Duration::ZERO)).unwrap();
        }
        Sock::S(x) => {
            x.set_nodelay(true).unwrap();
            x.set_linger(Some(Duration::ZERO)).unwrap();
        }
    }
    let s3 = within(5, t.connect(kaddr(v6, port))).await.unwrap();
    let (mut p3, _) = within(5, l.accept()).await.unwrap();
    out.push(("nodelay", show(&on!(&s3, x => x.nodelay()))));
    #[allow(deprecated)]
    out.push(("linger", show(&on!(&s3, x => x.linger()))));
    drop(s3);
    out.push(("peer sees the drop", peer_sees(&mut p3, 500).await));
    // Refused with linger 0 set.
    let t = new_tcp_socket(net, kernel, v6);
    match &t {
        #[allow(deprecated)]
        Sock::K(x) => x.set_linger(Some(Duration::ZERO)).unwrap(),
        Sock::S(x) => x.set_linger(Some(Duration::ZERO)).unwrap(),
    }
    let r = within(5, t.connect(kaddr(v6, 9))).await;
    out.push(("linger 0, connect refused", show_ok(&r)));
    out
}

/// SO_RCVBUF and SO_SNDBUF of 0 and of `u32::MAX` before connect: Linux clamps both (to
/// its minimum, to `rmem_max`/`wmem_max`), and the connection carries data.
async fn tcp_buffer_bounds(net: &Net, kernel: bool, v6: bool, port: u16, size: u32) -> Outcomes {
    let mut out = Outcomes::new();
    let l = klisten(net, kaddr(v6, port)).unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    let r = match &t {
        Sock::K(x) => (x.set_recv_buffer_size(size), x.set_send_buffer_size(size)),
        Sock::S(x) => (x.set_recv_buffer_size(size), x.set_send_buffer_size(size)),
    };
    out.push((
        "set_recv_buffer_size, set_send_buffer_size",
        format!("{} {}", show(&r.0), show(&r.1)),
    ));
    let mut s = within(5, t.connect(kaddr(v6, port))).await.unwrap();
    let (mut p, _) = within(5, l.accept()).await.unwrap();
    let data = kernel_support::pattern(256 << 10, 23);
    let (w, r) = tokio::join!(
        async {
            let w = on!(&mut s, x => within(20, x.write_all(&data)).await);
            let _ = on!(&mut s, x => x.shutdown().await);
            show(&w)
        },
        peer_reads_all(&mut p, &data)
    );
    out.push(("write 256 KiB", w));
    out.push(("peer reads", r));
    let (w, r) = tokio::join!(
        async {
            let w = within(20, p.write_all(&data)).await;
            drop(p);
            show(&w)
        },
        async {
            match within(20, read_exactly(&mut s, data.len() + 1, 65536, 0)).await {
                Ok(got) => format!("intact {}", got == data),
                Err(e) => show_err(&e),
            }
        }
    );
    out.push(("peer writes 256 KiB", w));
    out.push(("subject reads to EOF", r));
    out
}

/// Two listeners on one port, both with SO_REUSEPORT: the connections are spread over
/// them; without it on the second, its bind fails.
async fn tcp_reuseport(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let mk = |reuse: bool| {
        let t = new_tcp_socket(net, kernel, v6);
        match &t {
            Sock::K(x) => x.set_reuseport(reuse).unwrap(),
            Sock::S(x) => x.set_reuseport(reuse).unwrap(),
        }
        t
    };
    let a = mk(true);
    out.push(("bind a", show(&a.bind(at))));
    let b = mk(true);
    out.push(("bind b", show(&b.bind(at))));
    let c = mk(false);
    out.push(("bind c, no reuseport", show_ok(&c.bind(at))));
    let a = a.listen(64).unwrap();
    let b = b.listen(64).unwrap();
    let mut clients = Vec::new();
    for _ in 0..24 {
        clients.push(within(5, ksocket(net, v6).connect(at)).await.unwrap());
    }
    let mut counts = [0; 2];
    for (i, l) in [&a, &b].into_iter().enumerate() {
        loop {
            let r = match l {
                Lst::K(l) => tokio::time::timeout(Duration::from_millis(300), l.accept())
                    .await
                    .map(|r| r.map(drop)),
                Lst::S(l) => tokio::time::timeout(Duration::from_millis(300), l.accept())
                    .await
                    .map(|r| r.map(drop)),
            };
            match r {
                Ok(Ok(())) => counts[i] += 1,
                _ => break,
            }
        }
    }
    out.push((
        "accepted",
        format!(
            "all {}, both some {}",
            counts[0] + counts[1] == 24,
            counts[0] > 0 && counts[1] > 0
        ),
    ));
    drop(a);
    let d = mk(true);
    out.push(("bind d beside b alone", show(&d.bind(at))));
    out
}

/// A stream's addresses in FIN-WAIT-2 and once closed; an accepted stream's local address
/// on a listener bound to the unspecified address; TCP and UDP on one port.
async fn tcp_addresses(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let (l0, p0) = (
        on!(&s, x => x.local_addr()).unwrap(),
        on!(&s, x => x.peer_addr()).unwrap(),
    );
    shutdown(&mut s).await;
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    out.push((
        "FIN-WAIT-2 local_addr, peer_addr",
        format!(
            "{} {}",
            show(&on!(&s, x => x.local_addr()).map(|a| a == l0)),
            show(&on!(&s, x => x.peer_addr()).map(|a| a == p0))
        ),
    ));
    drop(p);
    settle().await;
    out.push(("read EOF", read_once(&mut s, 10).await));
    out.push((
        "TIME-WAIT local_addr, peer_addr",
        format!(
            "{} {}",
            show(&on!(&s, x => x.local_addr()).map(|a| a == l0)),
            show(&on!(&s, x => x.peer_addr()).map(|a| a == p0))
        ),
    ));
    let at = SocketAddr::new(unspec(v6).ip(), port + 1);
    let l = listen(net, kernel, at).await.unwrap();
    let _c = within(5, ksocket(net, v6).connect(own(kernel, v6, port + 1)))
        .await
        .unwrap();
    let a = match &l {
        Lst::K(l) => within(5, l.accept()).await.unwrap().0.local_addr(),
        Lst::S(l) => within(5, l.accept()).await.unwrap().0.local_addr(),
    };
    out.push((
        "accepted on an unspecified listener: local_addr",
        format!("{:?}", a.map(|a| a == own(kernel, v6, port + 1))),
    ));
    out.push((
        "UDP bind the listener's port",
        show_ok(&ubind(net, kernel, own(kernel, v6, port + 1)).await),
    ));
    let u = ubind(net, kernel, own(kernel, v6, port + 2)).await.unwrap();
    out.push((
        "TCP listen on a UDP socket's port",
        show_ok(&listen(net, kernel, own(kernel, v6, port + 2)).await),
    ));
    drop(u);
    out
}

differential!(same_tcp_connect_lists, "synack-d-clst", |net, kernel| {
    tcp_connect_lists(net, kernel, if kernel { 8201 } else { 8202 })
});
differential!(
    same_tcp_socket_bound_then_connected,
    "synack-d-sbc",
    |net, kernel| tcp_socket_then_connect(net, kernel, false, if kernel { 8211 } else { 8221 })
);
differential!(
    same_tcp_socket_bound_then_connected_v6,
    "synack-d-sbc6",
    |net, kernel| tcp_socket_then_connect(net, kernel, true, if kernel { 8211 } else { 8221 })
);
differential!(
    same_tcp_buffer_sizes_of_0,
    "synack-d-buf0",
    |net, kernel| tcp_buffer_bounds(net, kernel, false, if kernel { 8231 } else { 8232 }, 0)
);
differential!(
    same_tcp_buffer_sizes_of_u32_max,
    "synack-d-bufx",
    |net, kernel| tcp_buffer_bounds(
        net,
        kernel,
        false,
        if kernel { 8231 } else { 8232 },
        u32::MAX
    )
);
differential!(same_tcp_reuseport, "synack-d-rport", |net, kernel| {
    tcp_reuseport(net, kernel, false, 8241)
});
differential!(
    same_tcp_addresses_in_each_state,
    "synack-d-addr",
    |net, kernel| tcp_addresses(net, kernel, false, if kernel { 8251 } else { 8261 })
);
differential!(
    same_tcp_addresses_in_each_state_v6,
    "synack-d-addr6",
    |net, kernel| tcp_addresses(net, kernel, true, if kernel { 8251 } else { 8261 })
);

// ---- reads and writes waiting when the peer ends, peeks across segments, special addresses

/// What a read (or, with the send buffer full, a write) waiting when the peer ends the
/// connection (`how`: "fin" or "rst") returns.
async fn tcp_pending_at_end(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    write: bool,
    how: &str,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    if write {
        // Twice, with a pause: what was in flight lands and the window closes.
        fill(&s).await;
        settle().await;
        fill(&s).await;
        settle().await;
        out.push((
            "try_write when full",
            show(&on!(&s, x => x.try_write(b"x"))),
        ));
    }
    let mut p = Some(p);
    let end = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match how {
            "fin" => p.as_mut().unwrap().shutdown().await.unwrap(),
            _ => {
                let p = p.take().unwrap();
                p.set_zero_linger().unwrap();
                drop(p);
            }
        }
    };
    let chunk = vec![7u8; 65536];
    let waiting = async {
        match write {
            true => write_once(&mut s, &chunk).await,
            false => read_once(&mut s, 10).await,
        }
    };
    // write_once and read_once give up after half a second: the end comes in 0.3.
    let (r, ()) = tokio::join!(waiting, end);
    out.push((
        if write {
            "waiting write"
        } else {
            "waiting read"
        },
        r,
    ));
    out.push(("read after", read_once(&mut s, 10).await));
    out.push(("take_error after", take_error(&s)));
    out
}

/// Peeks and reads over data that came in several segments.
async fn tcp_peek_across_segments(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.set_nodelay(true).unwrap();
    for b in [b'a', b'b', b'c'] {
        p.write_all(&[b; 1000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle().await;
    let count = |buf: &[u8]| {
        [b'a', b'b', b'c']
            .map(|c| buf.iter().filter(|&&x| x == c).count())
            .to_vec()
    };
    let mut buf = vec![0u8; 10000];
    let r = on!(&s, x => x.peek(&mut buf).await);
    out.push((
        "peek 10000",
        format!(
            "{} {:?}",
            show(&r),
            count(&buf[..*r.as_ref().unwrap_or(&0)])
        ),
    ));
    let mut buf = vec![0u8; 1500];
    let r = on!(&mut s, x => x.read(&mut buf).await);
    out.push((
        "read 1500",
        format!(
            "{} {:?}",
            show(&r),
            count(&buf[..*r.as_ref().unwrap_or(&0)])
        ),
    ));
    let mut buf = vec![0u8; 10000];
    let r = on!(&s, x => x.peek(&mut buf).await);
    out.push((
        "peek 10000 again",
        format!(
            "{} {:?}",
            show(&r),
            count(&buf[..*r.as_ref().unwrap_or(&0)])
        ),
    ));
    let r = on!(&s, x => x.try_read(&mut buf));
    out.push((
        "try_read 10000",
        format!(
            "{} {:?}",
            show(&r),
            count(&buf[..*r.as_ref().unwrap_or(&0)])
        ),
    ));
    out
}

/// Connects to addresses that are no host's (broadcast, multicast, link-local without a
/// scope): Linux's `tcp_v4_connect` and `tcp_v6_connect` refuse them at once; UDP binds a
/// group's address.
async fn special_addresses(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    for a in [
        "198.18.0.255:80",
        "255.255.255.255:80",
        "224.0.0.1:80",
        "239.1.2.3:80",
        "[ff02::1]:80",
        "[ff0e::1:7]:80",
        "[fe80::1]:80",
        "[::ffff:198.18.0.255]:80",
    ] {
        let to: SocketAddr = a.parse().unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), connect(net, kernel, to)).await;
        out.push((
            "TCP connect",
            format!("{a}: {}", r.map_or("pending".into(), |r| show_ok(&r))),
        ));
    }
    // A group's address, for its datagrams.
    for a in ["239.1.2.3", "[ff0e::1:7]"] {
        let at: SocketAddr = format!("{a}:{port}").parse().unwrap();
        out.push((
            "UDP bind",
            format!("{a}: {}", show_ok(&ubind(net, kernel, at).await)),
        ));
    }
    out
}

differential!(
    same_tcp_read_waiting_at_peer_fin,
    "synack-d-prf",
    |net, kernel| tcp_pending_at_end(
        net,
        kernel,
        false,
        if kernel { 8301 } else { 8302 },
        false,
        "fin"
    )
);
differential!(
    same_tcp_read_waiting_at_peer_rst,
    "synack-d-prr",
    |net, kernel| tcp_pending_at_end(
        net,
        kernel,
        false,
        if kernel { 8301 } else { 8302 },
        false,
        "rst"
    )
);
differential!(
    same_tcp_write_waiting_at_peer_rst,
    "synack-d-pwr",
    |net, kernel| tcp_pending_at_end(
        net,
        kernel,
        false,
        if kernel { 8301 } else { 8302 },
        true,
        "rst"
    )
);
differential!(
    same_tcp_write_waiting_at_peer_fin,
    "synack-d-pwf",
    |net, kernel| tcp_pending_at_end(
        net,
        kernel,
        false,
        if kernel { 8301 } else { 8302 },
        true,
        "fin"
    )
);
differential!(
    same_tcp_peek_across_segments,
    "synack-d-pks",
    |net, kernel| tcp_peek_across_segments(net, kernel, false, if kernel { 8311 } else { 8312 })
);
differential!(same_special_addresses, "synack-d-spec", |net, kernel| {
    special_addresses(net, kernel, 8321)
});

// ---- bounded receive queues --------------------------------------------------------------

/// A receiver that does not read: the peer's writes stop (the window closes) long before
/// 16 MiB, and the subject then reads what was taken, intact.
async fn tcp_receiver_not_reading(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    let chunk = kernel_support::pattern(65536, 29);
    let mut taken = 0usize;
    for _ in 0..256 {
        match tokio::time::timeout(Duration::from_millis(500), p.writable()).await {
            Err(_) => break,
            Ok(r) => r.unwrap(),
        }
        match p.try_write(&chunk[taken % 65536..]) {
            Ok(n) => taken += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    out.push((
        "peer blocked before 16 MiB",
        format!("{}", taken < 16 << 20),
    ));
    let mut want = Vec::with_capacity(taken);
    while want.len() < taken {
        want.extend_from_slice(&chunk[want.len() % 65536..]);
    }
    want.truncate(taken);
    drop(p);
    let r = within(20, read_exactly(&mut s, taken + 1, 65536, 0)).await;
    out.push((
        "subject reads all it took, then EOF",
        match r {
            Ok(got) => format!("intact {}", got == want),
            Err(e) => show_err(&e),
        },
    ));
    out
}

/// A UDP socket that does not read while 400 datagrams of 1400 bytes come: its queue
/// (SO_RCVBUF, 208 KiB) holds some, not all.
async fn udp_queue_bound(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let p = net.kernel_udp(kaddr(v6, port)).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    let d = [9u8; 1400];
    for i in 0..400 {
        p.send_to(&d, me).await.unwrap();
        if i % 20 == 19 {
            // The TUN's queue (500 packets) is not the bound under test.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    settle().await;
    let mut n = 0;
    let mut buf = [0u8; 2000];
    while on!(&s, x => x.try_recv(&mut buf)).is_ok() {
        n += 1;
    }
    eprintln!("kernel {kernel}: {n} of 400 datagrams queued");
    out.push((
        "datagrams queued",
        format!("some {}, all {}", n >= 20, n == 400),
    ));
    out
}

differential!(
    same_tcp_receiver_not_reading_closes_the_window,
    "synack-d-rnr",
    |net, kernel| tcp_receiver_not_reading(net, kernel, false, if kernel { 8401 } else { 8402 })
);
differential!(
    same_udp_receive_queue_is_bounded,
    "synack-d-uqb",
    |net, kernel| { udp_queue_bound(net, kernel, false, if kernel { 8411 } else { 8412 }) }
);

// ---- UDP: ICMP errors of each kind, binds that overlap, group traffic ---------------------

/// A connected UDP socket's send answered by each ICMP (ICMPv6) error: Linux reports only
/// the "hard" ones without IP_RECVERR (`udp_err`: `icmp_err_convert[code].fatal`), so a
/// net or host unreachable is no error and a prohibited one is.
async fn udp_icmp_errors(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    for (what, port) in [
        ("port-unreachable", 9911u16),
        ("host-unreachable", 9912),
        ("net-unreachable", 9913),
        ("admin-prohibited", 9914),
    ] {
        let s = ubind(net, kernel, unspec(v6)).await.unwrap();
        on!(&s, x => x.connect(kaddr(v6, port)).await).unwrap();
        on!(&s, x => x.send(b"x").await).unwrap();
        settle().await;
        let r = urecv(&s, 10).await;
        out.push((what, format!("{r}; then take_error {}", utake_error(&s))));
    }
    out
}

async fn udp_icmp_rules(net: &Net) {
    no_icmp_ratelimit(net).await;
    net.nft(
        "add table inet d\n\
         add chain inet d input { type filter hook input priority 0; }\n\
         add rule inet d input meta nfproto ipv4 udp dport 9911 reject with icmp type port-unreachable\n\
         add rule inet d input meta nfproto ipv4 udp dport 9912 reject with icmp type host-unreachable\n\
         add rule inet d input meta nfproto ipv4 udp dport 9913 reject with icmp type net-unreachable\n\
         add rule inet d input meta nfproto ipv4 udp dport 9914 reject with icmp type admin-prohibited\n\
         add rule inet d input meta nfproto ipv6 udp dport 9911 reject with icmpv6 type port-unreachable\n\
         add rule inet d input meta nfproto ipv6 udp dport 9912 reject with icmpv6 type addr-unreachable\n\
         add rule inet d input meta nfproto ipv6 udp dport 9913 reject with icmpv6 type no-route\n\
         add rule inet d input meta nfproto ipv6 udp dport 9914 reject with icmpv6 type admin-prohibited\n",
    )
    .await;
}

/// UDP binds of one port on the unspecified and a specific address, either order.
async fn udp_overlapping_binds(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let any = SocketAddr::new(unspec(v6).ip(), port);
    let a = ubind(net, kernel, any).await;
    out.push(("bind unspecified", show_ok(&a)));
    out.push((
        "bind own address, same port",
        show_ok(&ubind(net, kernel, own(kernel, v6, port)).await),
    ));
    drop(a);
    let any = SocketAddr::new(unspec(v6).ip(), port + 1);
    let b = ubind(net, kernel, own(kernel, v6, port + 1)).await;
    out.push(("bind own address", show_ok(&b)));
    out.push((
        "bind unspecified, same port",
        show_ok(&ubind(net, kernel, any).await),
    ));
    out
}

/// A socket that joins a group receives what the kernel peer sends to it, and stops when it
/// leaves.
async fn udp_group_traffic(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let group: IpAddr = match v6 {
        false => "239.1.2.3".parse().unwrap(),
        true => "ff0e::1:7".parse().unwrap(),
    };
    let s = ubind(net, kernel, SocketAddr::new(unspec(v6).ip(), port))
        .await
        .unwrap();
    let join = |on: bool| match (group, own(kernel, false, 0).ip()) {
        (IpAddr::V4(g), IpAddr::V4(i)) => match on {
            true => on!(&s, x => x.join_multicast_v4(g, i)),
            false => on!(&s, x => x.leave_multicast_v4(g, i)),
        },
        (IpAddr::V6(g), _) => match on {
            true => on!(&s, x => x.join_multicast_v6(&g, 0)),
            false => on!(&s, x => x.leave_multicast_v6(&g, 0)),
        },
        _ => unreachable!(),
    };
    let p = net.kernel_udp(kaddr(v6, port + 1)).unwrap();
    let to = SocketAddr::new(group, port);
    p.send_to(b"before", to).await.unwrap();
    out.push((
        "before joining",
        urecv_from(&s, 20, kaddr(v6, port + 1)).await,
    ));
    out.push(("join", show(&join(true))));
    settle().await;
    p.send_to(b"joined", to).await.unwrap();
    out.push(("joined", urecv_from(&s, 20, kaddr(v6, port + 1)).await));
    out.push(("leave", show(&join(false))));
    settle().await;
    p.send_to(b"left", to).await.unwrap();
    out.push((
        "after leaving",
        urecv_from(&s, 20, kaddr(v6, port + 1)).await,
    ));
    out
}

/// A route for IPv4 groups on the TUN (IPv6 has ff00::/8 on every interface), for the
/// kernel peer to send to a group.
async fn group_route(net: &Net) {
    let out = net
        .run("ip", &["route", "add", "224.0.0.0/4", "dev", "synack0"])
        .await;
    assert!(out.status.success(), "{out:?}");
}

differential!(
    same_udp_icmp_errors,
    "synack-d-uicmp4",
    setup | net | udp_icmp_rules(net),
    |net, kernel| udp_icmp_errors(net, kernel, false)
);
differential!(
    same_udp_icmp_errors_v6,
    "synack-d-uicmp6",
    setup | net | udp_icmp_rules(net),
    |net, kernel| udp_icmp_errors(net, kernel, true)
);
differential!(same_udp_overlapping_binds, "synack-d-uob", |net, kernel| {
    udp_overlapping_binds(net, kernel, false, 8501)
});
differential!(
    same_udp_overlapping_binds_v6,
    "synack-d-uob6",
    |net, kernel| udp_overlapping_binds(net, kernel, true, 8501)
);
differential!(
    same_udp_group_traffic,
    "synack-d-ugrp",
    setup | net | group_route(net),
    |net, kernel| udp_group_traffic(net, kernel, false, if kernel { 8511 } else { 8521 })
);
differential!(
    same_udp_group_traffic_v6,
    "synack-d-ugrp6",
    setup | net | group_route(net),
    |net, kernel| udp_group_traffic(net, kernel, true, if kernel { 8511 } else { 8521 })
);

// ---- ICMP errors on an established connection --------------------------------------------

/// Data segments of an established connection answered by each ICMP (ICMPv6) error: Linux
/// keeps the connection (`tcp_v4_err`, `tcp_v6_err`: without IP_RECVERR an established
/// socket only notes a soft error), which no read or write reports and `take_error`
/// (SO_ERROR, `sk_err_soft` when there is no hard one) takes.
async fn tcp_icmp_established(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    for (what, port) in [
        ("port-unreachable", 9921u16),
        ("host-unreachable", 9922),
        ("net-unreachable", 9923),
        ("admin-prohibited", 9924),
    ] {
        let port = if kernel { port } else { port + 10 };
        let (mut s, _p) = pair(net, kernel, v6, port).await;
        let r = write_once(&mut s, &[b'x'; 200]).await;
        settle().await;
        let ready = ready_now(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await;
        out.push((
            what,
            format!(
                "write {r}; ready {ready}; take_error {}; read {}; write {}",
                take_error(&s),
                read_once(&mut s, 10).await,
                write_once(&mut s, b"y").await
            ),
        ));
    }
    out
}

async fn tcp_icmp_established_rules(net: &Net) {
    no_icmp_ratelimit(net).await;
    let mut rules = String::from(
        "add table inet d\nadd chain inet d input { type filter hook input priority 0; }\n",
    );
    for port in [9921, 9922, 9923, 9924, 9931, 9932, 9933, 9934] {
        let (t4, t6) = match port % 10 {
            1 => ("port-unreachable", "port-unreachable"),
            2 => ("host-unreachable", "addr-unreachable"),
            3 => ("net-unreachable", "no-route"),
            _ => ("admin-prohibited", "admin-prohibited"),
        };
        rules += &format!(
            "add rule inet d input meta nfproto ipv4 tcp dport {port} meta length > 150 reject with icmp type {t4}\n\
             add rule inet d input meta nfproto ipv6 tcp dport {port} meta length > 150 reject with icmpv6 type {t6}\n"
        );
    }
    net.nft(&rules).await;
}

differential!(
    same_tcp_icmp_errors_on_an_established_connection,
    "synack-d-eicmp4",
    setup | net | tcp_icmp_established_rules(net),
    |net, kernel| tcp_icmp_established(net, kernel, false)
);
differential!(
    same_tcp_icmp_errors_on_an_established_connection_v6,
    "synack-d-eicmp6",
    setup | net | tcp_icmp_established_rules(net),
    |net, kernel| tcp_icmp_established(net, kernel, true)
);

// ---- IPv6 sockets bound to IPv6 or IPv4-mapped addresses, crossing families --------------

fn mapped(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
        v6 => v6,
    }
}

/// `Ok`, or the errno alone (EAFNOSUPPORT's kind differs: departs_errors_without_a_std_kind).
fn show_errno<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "Ok".into(),
        Err(e) => format!("errno {:?}", errno_of(e)),
    }
}

/// An IPv6 socket bound to the side's IPv6 address reaching an IPv4-mapped peer (Linux:
/// ENETUNREACH), and one bound to its IPv4-mapped address reaching an IPv6 peer
/// (EAFNOSUPPORT) and an IPv4 one.
async fn cross_family_binds(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let _k4 = klisten(net, kaddr(false, port)).unwrap();
    let _k6 = klisten(net, kaddr(true, port)).unwrap();
    let p4 = net.kernel_udp(kaddr(false, port)).unwrap();
    let p6 = net.kernel_udp(kaddr(true, port)).unwrap();
    let v6own = own(kernel, true, 0);
    let v4mapped = mapped(own(kernel, false, 0));
    for (what, at) in [("bound IPv6", v6own), ("bound IPv4-mapped", v4mapped)] {
        let t = new_tcp_socket(net, kernel, true);
        out.push(("TcpSocket bind", format!("{what}: {}", show(&t.bind(at)))));
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            t.connect(mapped(kaddr(false, port))),
        )
        .await;
        out.push((
            "TCP connect IPv4-mapped peer",
            format!("{what}: {}", r.map_or("pending".into(), |r| show_ok(&r))),
        ));
        let t = new_tcp_socket(net, kernel, true);
        t.bind(at).unwrap();
        let r = tokio::time::timeout(Duration::from_secs(3), t.connect(kaddr(true, port))).await;
        out.push((
            "TCP connect IPv6 peer",
            format!("{what}: {}", r.map_or("pending".into(), |r| show_errno(&r))),
        ));
        let u = ubind(net, kernel, at).await;
        out.push(("UDP bind", format!("{what}: {}", show_ok(&u))));
        let u = u.unwrap();
        let r = on!(&u, x => x.send_to(b"to 4", mapped(kaddr(false, port))).await);
        out.push((
            "UDP send_to IPv4-mapped peer",
            format!("{what}: {}; peer got {}", show(&r), kpeer_recv(&p4).await),
        ));
        let r = on!(&u, x => x.send_to(b"to 6", kaddr(true, port)).await);
        out.push((
            "UDP send_to IPv6 peer",
            format!(
                "{what}: {}; peer got {}",
                show_errno(&r),
                kpeer_recv(&p6).await
            ),
        ));
        let r = on!(&u, x => x.connect(mapped(kaddr(false, port))).await);
        out.push((
            "UDP connect IPv4-mapped peer",
            format!("{what}: {}", show(&r)),
        ));
    }
    // A listener on the IPv4-mapped address takes IPv4 clients.
    let l = listen(net, kernel, mapped(own(kernel, false, port + 1))).await;
    out.push(("listen on IPv4-mapped address", show_ok(&l)));
    if let Ok(l) = l {
        let c = within(5, ksocket(net, false).connect(own(kernel, false, port + 1))).await;
        out.push(("IPv4 client connects", show_ok(&c)));
        let a = match &l {
            Lst::K(l) => tokio::time::timeout(Duration::from_secs(1), l.accept())
                .await
                .map(|r| r.map(|(_, a)| a)),
            Lst::S(l) => tokio::time::timeout(Duration::from_secs(1), l.accept())
                .await
                .map(|r| r.map(|(_, a)| a)),
        };
        out.push((
            "accepted from",
            match a {
                Err(_) => "pending".into(),
                Ok(r) => format!(
                    "{:?}",
                    r.map(|a| a == mapped(c.unwrap().local_addr().unwrap()))
                        .map_err(|e| e.kind())
                ),
            },
        ));
    }
    out
}

differential!(same_cross_family_binds, "synack-d-xfam", |net, kernel| {
    cross_family_binds(net, kernel, if kernel { 8601 } else { 8611 })
});

// ---- SO_REUSEADDR across the unspecified and a specific address ---------------------------

/// Sockets with SO_REUSEADDR on the unspecified and the side's own address, one port: both
/// bind while neither listens, the second `listen` fails (Linux's `inet_csk_listen_start`
/// checks again), a listener blocks a later bind, and a dropped socket frees its port.
async fn tcp_reuseaddr_wildcard(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let any = SocketAddr::new(unspec(v6).ip(), port);
    let mine = own(kernel, v6, port);
    let sock = |reuse: bool| {
        let t = new_tcp_socket(net, kernel, v6);
        t.set_reuseaddr(reuse).unwrap();
        t
    };
    let a = sock(true);
    out.push(("bind unspecified", show(&a.bind(any))));
    let b = sock(true);
    out.push(("bind own address, both reuseaddr", show(&b.bind(mine))));
    let c = sock(false);
    out.push(("bind own address, no reuseaddr", show_ok(&c.bind(mine))));
    let la = a.listen(8);
    out.push(("listen unspecified", show_ok(&la)));
    let lb = b.listen(8);
    out.push(("listen own address", show_ok(&lb)));
    let d = sock(true);
    out.push(("bind own address beside a listener", show_ok(&d.bind(mine))));
    drop((la, lb, c, d));
    let e = sock(false);
    out.push(("bind after all dropped", show(&e.bind(mine))));
    out
}

differential!(
    same_tcp_reuseaddr_unspecified_and_own_address,
    "synack-d-rua",
    |net, kernel| tcp_reuseaddr_wildcard(net, kernel, false, if kernel { 8701 } else { 8702 })
);
differential!(
    same_tcp_reuseaddr_unspecified_and_own_address_v6,
    "synack-d-rua6",
    |net, kernel| tcp_reuseaddr_wildcard(net, kernel, true, if kernel { 8701 } else { 8702 })
);

// ---- urgent data at a reader that does not ask for it -------------------------------------

/// The peer sends "ab", an urgent "X" (MSG_OOB), then "cd": without SO_OOBINLINE Linux takes
/// the urgent byte out of the stream, and a read stops at its mark
/// (`tcp_recvmsg_locked`), so reads give "ab" then "cd".
/// A connected pair whose peer has sent "ab", an urgent "X" (MSG_OOB), then "cd", each
/// settled before the next.
async fn urgent_between(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
) -> (St, tokio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let (s, mut p) = pair(net, kernel, v6, port).await;
    p.set_nodelay(true).unwrap();
    p.write_all(b"ab").await.unwrap();
    settle().await;
    // SAFETY: a one-byte send on the peer's open socket.
    let n = unsafe { libc::send(p.as_raw_fd(), b"X".as_ptr().cast(), 1, libc::MSG_OOB) };
    assert_eq!(n, 1, "{}", io::Error::last_os_error());
    settle().await;
    p.write_all(b"cd").await.unwrap();
    settle().await;
    (s, p)
}

async fn tcp_urgent_unaware(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = urgent_between(net, kernel, v6, port).await;
    out.push(("peek", peek_once(&s, 10).await));
    out.push(("read", read_once(&mut s, 10).await));
    // (tokio took the short read for a drained socket: the next read waits for more.)
    p.write_all(b"ef").await.unwrap();
    settle().await;
    out.push(("read past the mark", read_once(&mut s, 10).await));
    out.push(("try_read nothing left", try_read(&s, 10)));
    out
}

differential!(
    same_tcp_urgent_data_at_an_unaware_reader,
    "synack-d-urg",
    |net, kernel| tcp_urgent_unaware(net, kernel, false, if kernel { 8801 } else { 8802 })
);

// ---- a reset after our own FIN -------------------------------------------------------------

/// The subject half-closes (FIN-WAIT-2), then the peer resets: Linux's `tcp_reset` gives
/// ECONNRESET there, to the first read or `take_error`.
async fn tcp_rst_in_fin_wait_2(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    first: &str,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push((
        "ready(R|W|ERR)",
        ready_now(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await,
    ));
    if first == "take_error" {
        out.push(("take_error", take_error(&s)));
    }
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("read again", read_once(&mut s, 10).await));
    out.push(("write", write_once(&mut s, b"x").await));
    out.push(("shutdown again", shutdown(&mut s).await));
    out.push(("peer_addr", show_ok(&on!(&s, x => x.peer_addr()))));
    out.push(("take_error after", take_error(&s)));
    out
}

differential!(same_tcp_rst_in_fin_wait_2, "synack-d-rfw", |net, kernel| {
    tcp_rst_in_fin_wait_2(net, kernel, false, if kernel { 8901 } else { 8902 }, "read")
});
differential!(
    same_tcp_rst_in_fin_wait_2_take_error_first,
    "synack-d-rfwe",
    |net, kernel| tcp_rst_in_fin_wait_2(
        net,
        kernel,
        false,
        if kernel { 8901 } else { 8902 },
        "take_error"
    )
);

// ---- ephemeral ports -----------------------------------------------------------------------

/// The ports picked for a connect, a listener and a UDP socket bound to port 0: Linux's
/// `ip_local_port_range`, 32768 to 60999 by default, each different.
async fn ephemeral_ports(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let l = klisten(net, kaddr(v6, port)).unwrap();
    let in_range = |p: u16| (32768..=60999).contains(&p);
    let mut ports = std::collections::BTreeSet::new();
    let mut conns = Vec::new();
    for _ in 0..20 {
        let s = within(5, connect(net, kernel, kaddr(v6, port)))
            .await
            .unwrap();
        ports.insert(on!(&s, x => x.local_addr()).unwrap().port());
        conns.push((s, within(5, l.accept()).await.unwrap()));
    }
    out.push((
        "20 connects: ports distinct, in range",
        format!(
            "{} {}",
            ports.len() == 20,
            ports.iter().all(|&p| in_range(p))
        ),
    ));
    let l0 = listen(net, kernel, own(kernel, v6, 0)).await.unwrap();
    out.push((
        "listener on port 0: in range",
        format!("{}", in_range(lst_addr(&l0).port())),
    ));
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push((
        "UDP on port 0: in range",
        format!("{}", in_range(on!(&u, x => x.local_addr()).unwrap().port())),
    ));
    let t = new_tcp_socket(net, kernel, v6);
    t.bind(own(kernel, v6, 0)).unwrap();
    out.push((
        "TcpSocket bind port 0: in range",
        format!("{}", in_range(t.local_addr().unwrap().port())),
    ));
    out
}

differential!(same_ephemeral_ports, "synack-d-eph", |net, kernel| {
    ephemeral_ports(net, kernel, false, if kernel { 8911 } else { 8912 })
});
differential!(same_ephemeral_ports_v6, "synack-d-eph6", |net, kernel| {
    ephemeral_ports(net, kernel, true, if kernel { 8911 } else { 8912 })
});

differential!(same_tcp_accept_order, "synack-d-aord4", |net, kernel| {
    tcp_accept_order(net, kernel, false, if kernel { 8975 } else { 8976 })
});
differential!(same_tcp_accept_order_v6, "synack-d-aord6", |net, kernel| {
    tcp_accept_order(net, kernel, true, if kernel { 8977 } else { 8978 })
});

// ---- the order of datagrams from many senders ----------------------------------------------

/// Datagrams from twelve senders, one after another, are received in the order they came
/// (a socket's one receive queue).
async fn udp_order_across_senders(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    let mut senders = Vec::new();
    for i in 0..12u16 {
        let p = net.kernel_udp(kaddr(v6, port + i)).unwrap();
        p.send_to(&[i as u8], me).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        senders.push(p);
    }
    settle().await;
    let mut order = Vec::new();
    let mut buf = [0u8; 4];
    while let Ok((_, from)) = on!(&s, x => x.try_recv_from(&mut buf)) {
        order.push((buf[0], from.port() - port));
    }
    out.push(("datagrams (sender, port) in order", format!("{order:?}")));
    out
}

differential!(
    same_udp_order_across_senders,
    "synack-d-uord",
    |net, kernel| udp_order_across_senders(net, kernel, false, if kernel { 8931 } else { 8951 })
);

// ---- one read takes all that waits ---------------------------------------------------------

/// A read with a large buffer takes everything that waits, as Linux's `tcp_recvmsg` copies
/// every in-order byte queued (32 KiB, sent in many segments).
async fn tcp_read_takes_all(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let data = kernel_support::pattern(32768, 31);
    for c in data.chunks(1000) {
        p.write_all(c).await.unwrap();
    }
    settle().await;
    let mut buf = vec![0u8; 1 << 20];
    let r = on!(&mut s, x => x.read(&mut buf).await);
    out.push((
        "read 1 MiB",
        format!(
            "{} intact {}",
            show(&r),
            r.as_ref().is_ok_and(|&n| buf[..n] == data[..n])
        ),
    ));
    let r = on!(&s, x => x.try_read(&mut buf));
    out.push(("try_read after", show(&r)));
    p.write_all(&data).await.unwrap();
    settle().await;
    let mut v = Vec::with_capacity(1 << 20);
    let r = on!(&s, x => x.try_read_buf(&mut v));
    out.push((
        "try_read_buf 1 MiB",
        format!("{} intact {}", show(&r), v == data),
    ));
    out
}

differential!(same_tcp_read_takes_all, "synack-d-rall", |net, kernel| {
    tcp_read_takes_all(net, kernel, false, if kernel { 8961 } else { 8962 })
});

// ---- the DS byte of TCP on the wire ----------------------------------------------------------

/// `TcpSocket::set_tos_v4` (IPv4) or `set_tclass_v6` (IPv6) to CS1 before `connect`, and on
/// a listener's socket before `listen`: the connection's packets each way carry it (an
/// accepted connection takes its listener's, Linux's `tcp_v4_syn_recv_sock` without
/// `tcp_reflect_tos`). nft counts them at the kernel's input hook.
async fn tcp_ds_on_the_wire(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let set = |t: &Sock| match (t, v6) {
        (Sock::K(x), false) => x.set_tos_v4(0x20),
        (Sock::K(x), true) => x.set_tclass_v6(0x20),
        (Sock::S(x), false) => x.set_tos_v4(0x20),
        (Sock::S(x), true) => x.set_tclass_v6(0x20),
    };
    let l = klisten(net, kaddr(v6, port)).unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    out.push(("set on the connecting socket", show(&set(&t))));
    let mut s = within(5, t.connect(kaddr(v6, port))).await.unwrap();
    let (mut p, _) = within(5, l.accept()).await.unwrap();
    on!(&mut s, x => x.write_all(b"cs1").await).unwrap();
    let mut b = [0u8; 3];
    p.read_exact(&mut b).await.unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    out.push(("set on the listening socket", show(&set(&t))));
    t.bind(own(kernel, v6, port + 1)).unwrap();
    let l2 = t.listen(8).unwrap();
    let mut c = within(5, ksocket(net, v6).connect(own(kernel, v6, port + 1)))
        .await
        .unwrap();
    let mut a = match &l2 {
        Lst::K(l) => St::K(within(5, l.accept()).await.unwrap().0),
        Lst::S(l) => St::S(within(5, l.accept()).await.unwrap().0),
    };
    on!(&mut a, x => x.write_all(b"cs1").await).unwrap();
    c.read_exact(&mut b).await.unwrap();
    settle().await;
    let nf = if v6 { "ipv6" } else { "ipv4" };
    let sent = net.nft_count("d", "input", &format!("out{port}{nf}")).await;
    let synack = net
        .nft_count("d", "input", &format!("synack{port}{nf}"))
        .await;
    let accepted = net.nft_count("d", "input", &format!("acc{port}{nf}")).await;
    out.push((
        "CS1 on the wire",
        format!(
            "connect's data {}, listener's SYN-ACK {}, accepted's data {}",
            sent > 0,
            synack > 0,
            accepted > 0
        ),
    ));
    out
}

async fn ds_rules(net: &Net, ports: &[u16]) {
    let mut rules = String::from(
        "add table inet d\nadd chain inet d input { type filter hook input priority 0; }\n",
    );
    for &port in ports {
        let p1 = port + 1;
        for (proto, ds) in [("ip", "ip dscp cs1"), ("ip6", "ip6 dscp cs1")] {
            let nf = if proto == "ip" { "ipv4" } else { "ipv6" };
            rules += &format!(
                "add rule inet d input meta nfproto {nf} tcp dport {port} tcp flags & (syn | fin | rst | psh) == psh {ds} counter comment \"out{port}{nf}\"\n\
                 add rule inet d input meta nfproto {nf} tcp sport {p1} tcp flags & (syn | ack) == syn | ack {ds} counter comment \"synack{port}{nf}\"\n\
                 add rule inet d input meta nfproto {nf} tcp sport {p1} tcp flags & (syn | fin | rst | psh) == psh {ds} counter comment \"acc{port}{nf}\"\n"
            );
        }
    }
    net.nft(&rules).await;
}

differential!(
    same_tcp_ds_byte_on_the_wire,
    "synack-d-tds4",
    setup | net | ds_rules(net, &[8971, 8981]),
    |net, kernel| tcp_ds_on_the_wire(net, kernel, false, if kernel { 8971 } else { 8981 })
);
differential!(
    same_tcp_ds_byte_on_the_wire_v6,
    "synack-d-tds6",
    setup | net | ds_rules(net, &[8971, 8981]),
    |net, kernel| tcp_ds_on_the_wire(net, kernel, true, if kernel { 8971 } else { 8981 })
);

/// A member of a group that sends to it receives its own datagram back while
/// IP_MULTICAST_LOOP (IPV6_MULTICAST_LOOP) is on, the default, and not once it is off; a
/// second socket of the side, also a member, likewise.
async fn udp_group_loop(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let group: IpAddr = match v6 {
        false => "239.1.2.3".parse().unwrap(),
        true => "ff0e::1:7".parse().unwrap(),
    };
    let at = SocketAddr::new(unspec(v6).ip(), port);
    let s = ubind(net, kernel, at).await.unwrap();
    let other = ubind(net, kernel, SocketAddr::new(unspec(v6).ip(), port + 1))
        .await
        .unwrap();
    for u in [&s, &other] {
        let r = match (group, own(kernel, false, 0).ip()) {
            (IpAddr::V4(g), IpAddr::V4(i)) => on!(u, x => x.join_multicast_v4(g, i)),
            (IpAddr::V6(g), _) => on!(u, x => x.join_multicast_v6(&g, 0)),
            _ => unreachable!(),
        };
        r.unwrap();
    }
    let me = SocketAddr::new(own(kernel, v6, 0).ip(), port);
    let set_loop = |on: bool| match v6 {
        false => on!(&s, x => x.set_multicast_loop_v4(on)),
        true => on!(&s, x => x.set_multicast_loop_v6(on)),
    };
    for on in [true, false] {
        set_loop(on).unwrap();
        let r = on!(&s, x => x.send_to(b"self", SocketAddr::new(group, port)).await);
        out.push((
            "send to the group's port",
            format!(
                "loop {on}: {}; self gets {}",
                show(&r),
                urecv_from(&s, 10, me).await
            ),
        ));
        let r = on!(&s, x => x.send_to(b"other", SocketAddr::new(group, port + 1)).await);
        out.push((
            "send to the other member's port",
            format!(
                "loop {on}: {}; other gets {}",
                show(&r),
                urecv_from(&other, 10, me).await
            ),
        ));
    }
    out
}

differential!(
    same_udp_group_loop,
    "synack-d-uglp",
    setup | net | group_route(net),
    |net, kernel| udp_group_loop(net, kernel, false, if kernel { 9001 } else { 9011 })
);
differential!(
    same_udp_group_loop_v6,
    "synack-d-uglp6",
    setup | net | group_route(net),
    |net, kernel| udp_group_loop(net, kernel, true, if kernel { 9001 } else { 9011 })
);

/// A small SO_SNDBUF set before `connect` bounds what a write takes at once.
async fn tcp_small_send_buffer(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let l = klisten(net, kaddr(v6, port)).unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    match &t {
        Sock::K(x) => x.set_send_buffer_size(4096).unwrap(),
        Sock::S(x) => x.set_send_buffer_size(4096).unwrap(),
    }
    let s = within(5, t.connect(kaddr(v6, port))).await.unwrap();
    let (mut p, _) = within(5, l.accept()).await.unwrap();
    let data = kernel_support::pattern(1 << 20, 37);
    let r = on!(&s, x => x.try_write(&data));
    eprintln!("kernel {kernel}: first try_write {r:?}");
    out.push((
        "try_write 1 MiB",
        format!("{:?}", r.as_ref().map(|&n| n > 0 && n <= 65536)),
    ));
    let n = *r.as_ref().unwrap();
    drop(s);
    out.push(("peer reads", peer_reads_all(&mut p, &data[..n]).await));
    out
}

differential!(same_tcp_small_send_buffer, "synack-d-ssb", |net, kernel| {
    tcp_small_send_buffer(net, kernel, false, if kernel { 9021 } else { 9022 })
});

/// IPv4 sockets given IPv6 (and IPv4-mapped) addresses: Linux's EAFNOSUPPORT (the errno
/// alone: its kind departs, departs_errors_without_a_std_kind).
async fn family_mismatches(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let v6peer = kaddr(true, port);
    let mapped_peer = mapped(kaddr(false, port));
    let u = ubind(net, kernel, unspec(false)).await.unwrap();
    out.push((
        "UDP v4 send_to IPv6",
        show_errno(&on!(&u, x => x.send_to(b"x", v6peer).await)),
    ));
    out.push((
        "UDP v4 send_to IPv4-mapped",
        show_errno(&on!(&u, x => x.send_to(b"x", mapped_peer).await)),
    ));
    out.push((
        "UDP v4 connect IPv6",
        show_errno(&on!(&u, x => x.connect(v6peer).await)),
    ));
    let t = new_tcp_socket(net, kernel, false);
    out.push((
        "TcpSocket v4 connect IPv6",
        show_errno(&within(5, t.connect(v6peer)).await),
    ));
    let t = new_tcp_socket(net, kernel, false);
    out.push((
        "TcpSocket v4 connect IPv4-mapped",
        show_errno(&within(5, t.connect(mapped_peer)).await),
    ));
    let t = new_tcp_socket(net, kernel, false);
    out.push((
        "TcpSocket v4 bind IPv4-mapped",
        show_errno(&t.bind(mapped(own(kernel, false, 0)))),
    ));
    out
}

differential!(same_family_mismatches, "synack-d-fmis", |net, kernel| {
    family_mismatches(net, kernel, 9031)
});

// ---- UDP sends in a burst ------------------------------------------------------------------

/// 3000 datagrams of 1400 bytes sent as fast as `send_to` goes: every send succeeds (a full
/// send buffer makes it wait, never fail); then `try_send_to` in a burst: successes until,
/// perhaps, WouldBlock, never another error.
async fn udp_burst(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let _p = net.kernel_udp(kaddr(v6, port)).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let d = [5u8; 1400];
    let mut failed = None;
    for _ in 0..3000 {
        if let Err(e) = on!(&s, x => x.send_to(&d, kaddr(v6, port)).await) {
            failed = Some(show_err(&e));
            break;
        }
    }
    out.push(("3000 send_to", format!("{failed:?}")));
    let mut other = None;
    for _ in 0..3000 {
        match on!(&s, x => x.try_send_to(&d, kaddr(v6, port))) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => {
                other = Some(show_err(&e));
                break;
            }
        }
    }
    out.push((
        "3000 try_send_to",
        format!("errors other than WouldBlock: {other:?}"),
    ));
    out
}

differential!(same_udp_send_burst, "synack-d-uburst", |net, kernel| {
    udp_burst(net, kernel, false, if kernel { 9041 } else { 9042 })
});

/// A listener's `set_ttl` reaches its SYN-ACKs and what its accepted connections send
/// (IPv4: on IPv6, departs_ipv6_set_ttl_and_set_tos_change_ipv6_packets).
async fn listener_ttl_on_the_wire(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let l = listen(net, kernel, own(kernel, v6, port)).await.unwrap();
    let r = match &l {
        Lst::K(l) => l.set_ttl(7),
        Lst::S(l) => l.set_ttl(7),
    };
    out.push(("listener set_ttl(7)", show(&r)));
    let mut c = within(5, ksocket(net, v6).connect(own(kernel, v6, port)))
        .await
        .unwrap();
    let mut a = match &l {
        Lst::K(l) => St::K(within(5, l.accept()).await.unwrap().0),
        Lst::S(l) => St::S(within(5, l.accept()).await.unwrap().0),
    };
    on!(&mut a, x => x.write_all(b"seven").await).unwrap();
    let mut b = [0u8; 5];
    c.read_exact(&mut b).await.unwrap();
    settle().await;
    let synack = net.nft_count("d", "input", &format!("s{port}")).await;
    let data = net.nft_count("d", "input", &format!("d{port}")).await;
    out.push((
        "TTL 7 on the wire",
        format!("SYN-ACK {}, data {}", synack > 0, data > 0),
    ));
    out
}

async fn listener_ttl_rules(net: &Net, ports: &[u16]) {
    let mut rules = String::from(
        "add table inet d\nadd chain inet d input { type filter hook input priority 0; }\n",
    );
    for &port in ports {
        rules += &format!(
            "add rule inet d input meta nfproto ipv4 tcp sport {port} tcp flags & (syn | ack) == syn | ack ip ttl 7 counter comment \"s{port}\"\n\
             add rule inet d input meta nfproto ipv4 tcp sport {port} tcp flags & (syn | fin | rst | psh) == psh ip ttl 7 counter comment \"d{port}\"\n"
        );
    }
    net.nft(&rules).await;
}

differential!(
    same_listener_ttl_on_the_wire,
    "synack-d-lttl4",
    setup | net | listener_ttl_rules(net, &[9051, 9052]),
    |net, kernel| listener_ttl_on_the_wire(net, kernel, false, if kernel { 9051 } else { 9052 })
);

/// Broadcasts from the kernel peer (to the link's broadcast address, 198.18.0.255, and to
/// 255.255.255.255) reach a socket bound to 0.0.0.0 on their port.
async fn udp_broadcast_receive(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, SocketAddr::new(unspec(false).ip(), port))
        .await
        .unwrap();
    let p = net.kernel_udp(kaddr(false, port + 1)).unwrap();
    p.set_broadcast(true).unwrap();
    for to in ["198.18.0.255", "255.255.255.255"] {
        let r = p
            .send_to(b"bcast", SocketAddr::new(to.parse().unwrap(), port))
            .await;
        out.push((
            "peer broadcasts",
            format!(
                "to {to}: {}; received {}",
                show(&r),
                urecv_from(&s, 10, kaddr(false, port + 1)).await
            ),
        ));
    }
    out
}

differential!(same_udp_broadcast_receive, "synack-d-ubr", |net, kernel| {
    udp_broadcast_receive(net, kernel, if kernel { 9061 } else { 9071 })
});

/// What a socket bound to a specific address receives: one on the side's own address takes
/// no broadcast and no group traffic (Linux matches the bound address against the
/// destination, `compute_score`), one on a group's address takes the group's and no unicast.
async fn udp_bound_address_filters(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let g: std::net::Ipv4Addr = "239.1.2.3".parse().unwrap();
    let iface = match own(kernel, false, 0).ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    let p = net.kernel_udp(kaddr(false, port + 5)).unwrap();
    p.set_broadcast(true).unwrap();
    let from = kaddr(false, port + 5);
    // Bound to the own address, a member of the group.
    let s = ubind(net, kernel, own(kernel, false, port)).await.unwrap();
    on!(&s, x => x.join_multicast_v4(g, iface)).unwrap();
    p.send_to(
        b"bcast",
        SocketAddr::new("198.18.0.255".parse().unwrap(), port),
    )
    .await
    .unwrap();
    out.push(("own address: a broadcast", urecv_from(&s, 10, from).await));
    p.send_to(b"group", SocketAddr::new(g.into(), port))
        .await
        .unwrap();
    out.push(("own address: group traffic", urecv_from(&s, 10, from).await));
    p.send_to(b"unicast", own(kernel, false, port))
        .await
        .unwrap();
    out.push(("own address: unicast", urecv_from(&s, 10, from).await));
    drop(s);
    // Bound to the group's address, a member.
    let s = ubind(net, kernel, SocketAddr::new(g.into(), port + 1))
        .await
        .unwrap();
    on!(&s, x => x.join_multicast_v4(g, iface)).unwrap();
    p.send_to(b"group", SocketAddr::new(g.into(), port + 1))
        .await
        .unwrap();
    out.push((
        "group address: group traffic",
        urecv_from(&s, 10, from).await,
    ));
    p.send_to(b"unicast", own(kernel, false, port + 1))
        .await
        .unwrap();
    out.push(("group address: unicast", urecv_from(&s, 10, from).await));
    out
}

differential!(
    same_udp_bound_address_filters,
    "synack-d-ubaf",
    setup | net | group_route(net),
    |net, kernel| udp_bound_address_filters(net, kernel, if kernel { 9081 } else { 9091 })
);

/// A broadcast the side sends is looped back to its own socket on the port, as Linux's
/// `ip_mc_output` loops one back; a socket may be bound to a broadcast address, and then
/// takes the broadcasts to it and nothing else.
async fn udp_broadcast_to_this_host(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let r = ubind(net, kernel, SocketAddr::new(unspec(false).ip(), port))
        .await
        .unwrap();
    // Bound to the own address, as `udp_broadcast` explains.
    let tx = ubind(net, kernel, own(kernel, false, 0)).await.unwrap();
    let me = on!(&tx, x => x.local_addr()).unwrap();
    on!(&tx, x => x.set_broadcast(true)).unwrap();
    for to in ["198.18.0.255", "255.255.255.255"] {
        let sent = on!(&tx, x => x.send_to(b"bcast", (to, port)).await);
        let got = urecv_from(&r, 10, me).await;
        out.push((
            "own broadcast",
            format!("to {to}: {}; received {got}", show(&sent)),
        ));
    }
    let link: IpAddr = "198.18.0.255".parse().unwrap();
    let b = ubind(net, kernel, SocketAddr::new(link, port + 1)).await;
    out.push(("bind 198.18.0.255", show_ok(&b)));
    let all = ubind(net, kernel, "255.255.255.255:0".parse().unwrap()).await;
    out.push(("bind 255.255.255.255", show_ok(&all)));
    if let Ok(b) = b {
        let p = net.kernel_udp(kaddr(false, port + 2)).unwrap();
        p.set_broadcast(true).unwrap();
        let from = kaddr(false, port + 2);
        let to = [
            ("198.18.0.255", link),
            ("255.255.255.255", "255.255.255.255".parse().unwrap()),
            ("the side's own address", own(kernel, false, 0).ip()),
        ];
        for (name, to) in to {
            p.send_to(b"to b", (to, port + 1)).await.unwrap();
            let got = urecv_from(&b, 10, from).await;
            out.push((
                "bound to 198.18.0.255",
                format!("peer sends to {name}: {got}"),
            ));
        }
    }
    out
}

differential!(
    same_udp_broadcast_to_this_host,
    "synack-d-ubth",
    |net, kernel| udp_broadcast_to_this_host(net, kernel, if kernel { 9101 } else { 9111 })
);

/// Every host belongs to the all-hosts group 224.0.0.1 and the all-nodes group ff02::1
/// from the start: what the kernel peer sends to them reaches a socket on the port, with no
/// join (on the kernel's side, through its multicast loop).
async fn udp_all_nodes(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let r4 = ubind(net, kernel, SocketAddr::new(unspec(false).ip(), port))
        .await
        .unwrap();
    let r6 = ubind(net, kernel, SocketAddr::new(unspec(true).ip(), port + 1))
        .await
        .unwrap();
    let p4 = net.kernel_udp(kaddr(false, port + 2)).unwrap();
    p4.send_to(
        b"all hosts",
        SocketAddr::new("224.0.0.1".parse().unwrap(), port),
    )
    .await
    .unwrap();
    out.push((
        "to 224.0.0.1",
        urecv_from(&r4, 16, kaddr(false, port + 2)).await,
    ));
    let link = net.run("cat", &["/sys/class/net/synack0/ifindex"]).await;
    let index: u32 = String::from_utf8_lossy(&link.stdout)
        .trim()
        .parse()
        .unwrap();
    let p6 = net.kernel_udp(kaddr(true, port + 3)).unwrap();
    let all_nodes = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), port + 1, 0, index);
    p6.send_to(b"all nodes", all_nodes).await.unwrap();
    out.push((
        "to ff02::1",
        urecv_from(&r6, 16, kaddr(true, port + 3)).await,
    ));
    out
}

differential!(
    same_udp_all_hosts_and_all_nodes,
    "synack-d-uall",
    setup | net | group_route(net),
    |net, kernel| udp_all_nodes(net, kernel, if kernel { 9121 } else { 9131 })
);

/// Joining a group on the unspecified interface (the group's route picks it, as most code
/// does it) and on an address that is no interface's (Linux: ENODEV); the group's traffic
/// then comes.
async fn udp_join_interfaces(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let g: std::net::Ipv4Addr = "239.1.2.4".parse().unwrap();
    let any = std::net::Ipv4Addr::UNSPECIFIED;
    let s = ubind(net, kernel, SocketAddr::new(unspec(false).ip(), port))
        .await
        .unwrap();
    out.push((
        "join on a foreign address",
        show(&on!(&s, x => x.join_multicast_v4(g, "198.18.0.77".parse().unwrap()))),
    ));
    out.push((
        "join on 0.0.0.0",
        show(&on!(&s, x => x.join_multicast_v4(g, any))),
    ));
    let p = net.kernel_udp(kaddr(false, port + 1)).unwrap();
    p.send_to(b"group", SocketAddr::new(g.into(), port))
        .await
        .unwrap();
    out.push((
        "group traffic",
        urecv_from(&s, 10, kaddr(false, port + 1)).await,
    ));
    out.push((
        "leave on 0.0.0.0",
        show(&on!(&s, x => x.leave_multicast_v4(g, any))),
    ));
    out.push((
        "leave again",
        show(&on!(&s, x => x.leave_multicast_v4(g, any))),
    ));
    out
}

differential!(
    same_udp_join_interfaces,
    "synack-d-ujif",
    setup | net | group_route(net),
    |net, kernel| udp_join_interfaces(net, kernel, if kernel { 9101 } else { 9111 })
);

/// `OwnedWriteHalf::forget`: no FIN goes until the read half, the last of the stream, is
/// dropped; `reunite` of halves of one stream gives it back whole.
async fn tcp_forget_write_half(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    let r = match s {
        St::K(s) => {
            let (r, w) = s.into_split();
            let (r, w) = r.reunite(w).unwrap().into_split();
            w.forget();
            Side::K(r)
        }
        St::S(s) => {
            let (r, w) = s.into_split();
            let (r, w) = r.reunite(w).unwrap().into_split();
            w.forget();
            Side::S(r)
        }
    };
    out.push(("peer after forget", peer_sees(&mut p, 300).await));
    p.write_all(b"still").await.unwrap();
    settle().await;
    let mut buf = [0u8; 10];
    let n = on!(&r, x => x.try_read(&mut buf));
    out.push(("read half reads", show(&n)));
    drop(r);
    out.push(("peer after read half dropped", peer_sees(&mut p, 500).await));
    out
}

differential!(same_tcp_forget_write_half, "synack-d-fgt", |net, kernel| {
    tcp_forget_write_half(net, kernel, false, if kernel { 9121 } else { 9122 })
});

/// A UDP socket connected to its own address and port talks to itself.
async fn udp_to_self(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let me = own(kernel, false, port);
    let s = ubind(net, kernel, me).await.unwrap();
    out.push((
        "connect to itself",
        show(&on!(&s, x => x.connect(me).await)),
    ));
    out.push(("send", show(&on!(&s, x => x.send(b"self").await))));
    out.push(("recv", urecv(&s, 10).await));
    out
}

differential!(same_udp_to_self, "synack-d-uself", |net, kernel| {
    udp_to_self(net, kernel, if kernel { 9131 } else { 9141 })
});

/// Group traffic at a socket that did not join: Linux delivers a group's datagrams to every
/// socket on the port while any socket of the host is a member (IP_MULTICAST_ALL and
/// IPV6_MULTICAST_ALL, on by default).
async fn udp_multicast_all(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let group: IpAddr = match v6 {
        false => "239.1.2.5".parse().unwrap(),
        true => "ff0e::1:8".parse().unwrap(),
    };
    let s = ubind(net, kernel, SocketAddr::new(unspec(v6).ip(), port))
        .await
        .unwrap();
    let member = ubind(net, kernel, SocketAddr::new(unspec(v6).ip(), port + 1))
        .await
        .unwrap();
    let r = match (group, own(kernel, false, 0).ip()) {
        (IpAddr::V4(g), IpAddr::V4(i)) => on!(&member, x => x.join_multicast_v4(g, i)),
        (IpAddr::V6(g), _) => on!(&member, x => x.join_multicast_v6(&g, 0)),
        _ => unreachable!(),
    };
    r.unwrap();
    settle().await;
    let p = net.kernel_udp(kaddr(v6, port + 2)).unwrap();
    p.send_to(b"group", SocketAddr::new(group, port))
        .await
        .unwrap();
    out.push((
        "another socket's group, to our port",
        urecv_from(&s, 10, kaddr(v6, port + 2)).await,
    ));
    out
}

differential!(
    same_udp_multicast_all,
    "synack-d-umall",
    setup | net | group_route(net),
    |net, kernel| udp_multicast_all(net, kernel, false, if kernel { 9151 } else { 9161 })
);
differential!(
    same_udp_multicast_all_v6,
    "synack-d-umall6",
    |net, kernel| udp_multicast_all(net, kernel, true, if kernel { 9151 } else { 9161 })
);

/// A vectored write of no bytes on a stream that can no longer send: 0, as `writev` of a
/// total length of 0 never reaches a kernel socket (`vfs_writev`), and the reset stays
/// pending; a plain write of no bytes reports the state.
async fn tcp_empty_vectored_write_closed(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use std::io::IoSlice;
    let mut out = Outcomes::new();
    let none = [IoSlice::new(b"")];
    let (mut s, _p) = pair(net, kernel, v6, port).await;
    out.push(("shutdown", shutdown(&mut s).await));
    out.push((
        "try_write empty after shutdown",
        show(&on!(&s, x => x.try_write(b""))),
    ));
    out.push((
        "try_write_vectored empty after shutdown",
        show(&on!(&s, x => x.try_write_vectored(&none))),
    ));
    out.push((
        "write_vectored empty after shutdown",
        show(&on!(&mut s, x => x.write_vectored(&none).await)),
    ));
    let (s, p) = pair(net, kernel, v6, port + 100).await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push((
        "try_write_vectored empty after RST",
        show(&on!(&s, x => x.try_write_vectored(&none))),
    ));
    out.push(("take_error after", take_error(&s)));
    out
}
differential!(
    same_tcp_empty_vectored_write_when_closed,
    "synack-d-evw",
    |net, kernel| tcp_empty_vectored_write_closed(
        net,
        kernel,
        false,
        if kernel { 8071 } else { 8072 }
    )
);

/// A specific IPv4 address beside a dual-stack `[::]` on one port.
async fn ipv4_beside_dual_stack(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let any6: SocketAddr = format!("[::]:{port}").parse().unwrap();
    let _l = listen(net, kernel, any6).await.unwrap();
    out.push((
        "TCP listen own IPv4 beside [::]",
        show_ok(&listen(net, kernel, own(kernel, false, port)).await),
    ));
    let _u6 = ubind(net, kernel, any6).await.unwrap();
    out.push((
        "UDP bind own IPv4 beside [::]",
        show_ok(&ubind(net, kernel, own(kernel, false, port)).await),
    ));
    out
}
differential!(
    /// The families do not clash (as `departs_dual_stack_bind_beside_unspecified`): an own
    /// IPv4 address beside a dual-stack `[::]` binds, and takes the IPv4 traffic to it.
    departs_ipv4_beside_dual_stack,
    "synack-d-d4s",
    departs ["TCP listen own IPv4 beside [::]", "UDP bind own IPv4 beside [::]"],
    |net, kernel| ipv4_beside_dual_stack(net, kernel, 9211)
);

/// "ab", an urgent "X", "cd", all waiting: a read of 10 takes "ab" (Linux stops at the
/// mark); then a peek and a read.
async fn tcp_read_after_urgent_mark(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, _p) = urgent_between(net, kernel, v6, port).await;
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("peek after the mark", peek_once(&s, 10).await));
    out.push(("read again", read_once(&mut s, 10).await));
    out
}
differential!(
    /// tokio's own: it clears read readiness after a short read (`poll_evented.rs`), and
    /// Linux's read stopping at the urgent mark is one, with no new edge to come, so the
    /// bytes after the mark wait for more data; synack hands them over at once.
    departs_tcp_read_after_the_urgent_mark,
    "synack-d-urg2",
    departs ["peek after the mark", "read again"],
    |net, kernel| tcp_read_after_urgent_mark(net, kernel, false, if kernel { 8803 } else { 8804 })
);

// ---- review 70: halves, poll readiness, cancelled accepts, unbound listens, UDP recv ------

/// Readiness of a stream by each of its single-direction calls: `readable()`,
/// `writable()`, `poll_read_ready`, `poll_write_ready` (each given 200 ms).
async fn ready_fns(s: &St) -> String {
    let d = Duration::from_millis(200);
    let f = |r: Result<io::Result<()>, tokio::time::error::Elapsed>| match r {
        Err(_) => "pending".to_string(),
        Ok(r) => show(&r),
    };
    let a = f(on!(s, x => tokio::time::timeout(d, x.readable()).await));
    let b = f(on!(s, x => tokio::time::timeout(d, x.writable()).await));
    let c = f(
        on!(s, x => tokio::time::timeout(d, std::future::poll_fn(|cx| x.poll_read_ready(cx))).await),
    );
    let e = f(
        on!(s, x => tokio::time::timeout(d, std::future::poll_fn(|cx| x.poll_write_ready(cx))).await),
    );
    format!("readable {a}, writable {b}, poll_read_ready {c}, poll_write_ready {e}")
}

/// `readable`/`writable`/`poll_*_ready` through a connection's life: fresh, data waiting,
/// drained, own shutdown, peer FIN, then the peer's RST.
async fn tcp_ready_fns(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    settle().await;
    out.push(("fresh", ready_fns(&s).await));
    p.write_all(b"data").await.unwrap();
    settle().await;
    out.push(("data waiting", ready_fns(&s).await));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("try_read drained", try_read(&s, 10)));
    out.push(("drained", ready_fns(&s).await));
    out.push(("shutdown", shutdown(&mut s).await));
    settle().await;
    out.push(("after own shutdown", ready_fns(&s).await));
    p.shutdown().await.unwrap();
    settle().await;
    out.push(("after both FINs", ready_fns(&s).await));
    out.push(("read at EOF", read_once(&mut s, 10).await));
    out
}

async fn tcp_ready_fns_rst(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    p.set_zero_linger().unwrap();
    drop(p);
    settle().await;
    out.push(("after peer RST", ready_fns(&s).await));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("after the error is read", ready_fns(&s).await));
    out.push(("write", write_once(&mut s, b"x").await));
    out
}

differential!(
    same_tcp_single_readiness_calls,
    "synack-d-q70rf",
    |net, kernel| tcp_ready_fns(net, kernel, false, if kernel { 12001 } else { 12002 })
);
differential!(
    same_tcp_single_readiness_calls_after_rst,
    "synack-d-q70rr",
    |net, kernel| tcp_ready_fns_rst(net, kernel, false, if kernel { 12003 } else { 12004 })
);

/// `split()`'s borrowed halves: a read through the read half, a write, a shutdown and a
/// late write through the write half, the addresses through both; then the whole stream.
async fn tcp_borrowed_split(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"ping").await.unwrap();
    settle().await;
    let r = on!(&mut s, x => {
        let (mut r, mut w) = x.split();
        let mut buf = [0u8; 10];
        let n = within(5, r.read(&mut buf)).await;
        let n = format!("{} {:?}", show(&n), String::from_utf8_lossy(&buf[..*n.as_ref().unwrap_or(&0)]));
        let wr = show(&within(5, w.write(b"pong")).await);
        let tw = show(&w.try_write(b"!"));
        let sh = show(&within(5, w.shutdown()).await);
        let late = show(&within(5, w.write(b"late")).await);
        let tlate = show(&w.try_write(b"late"));
        let addrs = format!(
            "{} {} {} {}",
            show_ok(&r.peer_addr()),
            show_ok(&r.local_addr()),
            show_ok(&w.peer_addr()),
            show_ok(&w.local_addr())
        );
        let tr = {
            let mut b = [0u8; 4];
            show(&r.try_read(&mut b))
        };
        [n, wr, tw, sh, late, tlate, addrs, tr]
    });
    for (what, v) in [
        "read half read",
        "write half write",
        "write half try_write",
        "write half shutdown",
        "write half write after shutdown",
        "write half try_write after shutdown",
        "addresses through the halves",
        "read half try_read nothing",
    ]
    .into_iter()
    .zip(r)
    {
        out.push((what, v));
    }
    out.push(("peer sees", peer_sees(&mut p, 500).await));
    p.write_all(b"more").await.unwrap();
    settle().await;
    out.push(("stream reads after halves", read_once(&mut s, 10).await));
    out.push(("stream write", write_once(&mut s, b"x").await));
    drop(s);
    p.write_all(b"after drop").await.unwrap();
    settle().await;
    out.push(("peer sees after the drop", peer_sees(&mut p, 500).await));
    out
}

differential!(
    same_tcp_borrowed_split_halves,
    "synack-d-q70bs",
    |net, kernel| tcp_borrowed_split(net, kernel, false, if kernel { 12011 } else { 12012 })
);

/// `into_split`: shutdown through the owned write half, a read through the read half,
/// reunite with a half of another stream (refused, both ways), then with its own; the
/// stream after, and what the peer sees when it goes.
async fn tcp_owned_shutdown_reunite(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    let (s2, mut p2) = pair(net, kernel, v6, port + 1).await;
    macro_rules! body {
        ($a:expr, $b:expr, $wrap:path) => {{
            let (mut ar, mut aw) = $a.into_split();
            let (br, bw) = $b.into_split();
            out.push((
                "owned write half shutdown",
                show(&within(5, aw.shutdown()).await),
            ));
            out.push((
                "owned write half write after",
                show(&within(5, aw.write(b"x")).await),
            ));
            out.push(("peer sees", peer_sees(&mut p, 500).await));
            p.write_all(b"reply").await.unwrap();
            settle().await;
            let mut buf = [0u8; 10];
            let n = within(5, ar.read(&mut buf)).await;
            out.push(("owned read half read", show(&n)));
            let (ar, bw) = match ar.reunite(bw) {
                Ok(_) => panic!("reunited halves of two streams"),
                Err(e) => {
                    out.push(("read half reunite, another's write half", "Err".into()));
                    (e.0, e.1)
                }
            };
            let (br, aw) = match aw.reunite(br) {
                Ok(_) => panic!("reunited halves of two streams"),
                Err(e) => {
                    out.push(("write half reunite, another's read half", "Err".into()));
                    (e.0, e.1)
                }
            };
            let a = ar.reunite(aw).map(|s| $wrap(s)).ok();
            out.push(("reunite own halves", format!("{}", a.is_some())));
            // The other stream's halves reunited too, then dropped: one FIN.
            let b = br.reunite(bw).ok();
            out.push(("other reunited", format!("{}", b.is_some())));
            drop(b);
            a.unwrap()
        }};
    }
    let mut s = match (s, s2) {
        (St::K(a), St::K(b)) => body!(a, b, St::K),
        (St::S(a), St::S(b)) => body!(a, b, St::S),
        _ => unreachable!(),
    };
    out.push(("other's peer sees", peer_sees(&mut p2, 500).await));
    out.push(("reunited: write", write_once(&mut s, b"x").await));
    out.push(("reunited: read", read_once(&mut s, 10).await));
    out.push((
        "reunited: ready(R|W)",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    p.write_all(b"again").await.unwrap();
    settle().await;
    out.push(("reunited: read again", read_once(&mut s, 10).await));
    drop(s);
    out.push(("peer sees the drop", peer_sees(&mut p, 500).await));
    out
}

differential!(
    same_tcp_owned_halves_shutdown_and_reunite,
    "synack-d-q70ru",
    |net, kernel| tcp_owned_shutdown_reunite(
        net,
        kernel,
        false,
        if kernel { 12021 } else { 12023 }
    )
);

/// An `accept` given up before any client came, and one woken by a client but dropped
/// before it ran again: the client waits for the next `accept`, as in Linux's queue.
async fn tcp_accept_cancelled(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = listen(net, kernel, at).await.unwrap();
    let r =
        on!(&l, x => tokio::time::timeout(Duration::from_millis(200), x.accept()).await.is_err());
    out.push(("accept with nobody, given up", format!("{r}")));
    let c1 = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    settle().await;
    let r = on!(&l, x => within(5, x.accept()).await.map(|(_, peer)| peer));
    out.push((
        "next accept: the client",
        format!(
            "{:?}",
            r.map(|a| a == c1.local_addr().unwrap())
                .map_err(|e| e.kind())
        ),
    ));
    let r = on!(&l, x => {
        // The accept future lives in this block: dropped at its end, never polled again.
        let mut fut = Box::pin(x.accept());
        let first = tokio::time::timeout(Duration::from_millis(100), &mut fut).await.is_err();
        let c = within(5, ksocket(net, v6).connect(at)).await.unwrap();
        settle().await;
        drop(fut);
        (first, c)
    });
    out.push((
        "accept pending, then dropped after a client came",
        format!("{}", r.0),
    ));
    let c2 = r.1;
    let r = on!(&l, x => tokio::time::timeout(Duration::from_millis(500), x.accept()).await.map(|r| r.map(|(_, a)| a)));
    out.push((
        "next accept: that client",
        match r {
            Err(_) => "pending".into(),
            Ok(r) => format!(
                "{:?}",
                r.map(|a| a == c2.local_addr().unwrap())
                    .map_err(|e| e.kind())
            ),
        },
    ));
    let r =
        on!(&l, x => tokio::time::timeout(Duration::from_millis(200), x.accept()).await.is_err());
    out.push(("accept again: nobody", format!("{r}")));
    out
}

differential!(
    same_tcp_cancelled_accept_keeps_the_client,
    "synack-d-q70ac",
    |net, kernel| tcp_accept_cancelled(net, kernel, false, 12031)
);
differential!(
    same_tcp_cancelled_accept_keeps_the_client_v6,
    "synack-d-q70ac6",
    |net, kernel| tcp_accept_cancelled(net, kernel, true, 12031)
);

/// `TcpSocket::listen` with no bind: Linux's `inet_listen` takes an ephemeral port on the
/// unspecified address (`inet_csk_get_port` with port 0), and clients reach it there.
async fn tcp_listen_unbound(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let l = new_tcp_socket(net, kernel, v6).listen(8);
    out.push(("listen unbound", show_ok(&l)));
    let Ok(l) = l else { return out };
    let a = lst_addr(&l);
    out.push((
        "local_addr",
        format!(
            "unspecified {}, v6 {}, port set {}",
            a.ip().is_unspecified(),
            a.is_ipv6(),
            a.port() != 0
        ),
    ));
    let c = within(5, ksocket(net, v6).connect(own(kernel, v6, a.port()))).await;
    out.push(("client connects", show_ok(&c)));
    let r = on!(&l, x => tokio::time::timeout(Duration::from_millis(500), x.accept()).await.map(|r| r.map(|(_, a)| a)));
    out.push((
        "accept",
        match r {
            Err(_) => "pending".into(),
            Ok(r) => show_ok(&r),
        },
    ));
    out
}

differential!(
    same_tcp_listen_without_bind,
    "synack-d-q70lu",
    |net, kernel| tcp_listen_unbound(net, kernel, false)
);
differential!(
    same_tcp_listen_without_bind_v6,
    "synack-d-q70lu6",
    |net, kernel| tcp_listen_unbound(net, kernel, true)
);

/// `recv`, `try_recv`, `peek` and `readable` on a UDP socket that never connected: they
/// take datagrams from anyone (Linux's recvmsg has no peer to filter by).
async fn udp_unconnected_recv(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let a = net.kernel_udp(kaddr(v6, port)).unwrap();
    let b = net.kernel_udp(kaddr(v6, port + 1)).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let d = Duration::from_millis(200);
    let r = on!(&s, x => tokio::time::timeout(d, x.readable()).await);
    out.push(("readable nothing", r.map_or("pending".into(), |r| show(&r))));
    let r = on!(&s, x => tokio::time::timeout(d, x.writable()).await);
    out.push(("writable", r.map_or("pending".into(), |r| show(&r))));
    let r = on!(&s, x => tokio::time::timeout(d, std::future::poll_fn(|cx| x.poll_recv_ready(cx))).await);
    out.push((
        "poll_recv_ready nothing",
        r.map_or("pending".into(), |r| show(&r)),
    ));
    let r = on!(&s, x => tokio::time::timeout(d, std::future::poll_fn(|cx| x.poll_send_ready(cx))).await);
    out.push(("poll_send_ready", r.map_or("pending".into(), |r| show(&r))));
    let local = on!(&s, x => x.local_addr()).unwrap();
    let me = SocketAddr::new(own(kernel, v6, 0).ip(), local.port());
    a.send_to(b"from a", me).await.unwrap();
    b.send_to(b"from b", me).await.unwrap();
    a.send_to(b"from a again", me).await.unwrap();
    settle().await;
    let r = on!(&s, x => tokio::time::timeout(d, x.readable()).await);
    out.push((
        "readable with data",
        r.map_or("pending".into(), |r| show(&r)),
    ));
    let mut buf = [0u8; 4];
    let r = on!(&s, x => x.peek(&mut buf).await);
    out.push((
        "peek 4",
        format!("{} {:?}", show(&r), String::from_utf8_lossy(&buf)),
    ));
    out.push(("recv", urecv(&s, 100).await));
    let mut buf = [0u8; 100];
    let r = on!(&s, x => x.try_recv(&mut buf));
    out.push((
        "try_recv",
        format!(
            "{} {:?}",
            show(&r),
            String::from_utf8_lossy(&buf[..*r.as_ref().unwrap_or(&0)])
        ),
    ));
    let mut buf = [0u8; 100];
    let r = on!(&s, x => x.try_peek(&mut buf));
    out.push((
        "try_peek",
        format!(
            "{} {:?}",
            show(&r),
            String::from_utf8_lossy(&buf[..*r.as_ref().unwrap_or(&0)])
        ),
    ));
    out.push(("recv 4 of 12", urecv(&s, 4).await));
    out.push(("recv nothing", urecv(&s, 100).await));
    let mut buf = [0u8; 100];
    out.push((
        "try_recv nothing",
        show(&on!(&s, x => x.try_recv(&mut buf))),
    ));
    out
}

differential!(
    same_udp_recv_without_connect,
    "synack-d-q70ur",
    |net, kernel| udp_unconnected_recv(net, kernel, false, if kernel { 12041 } else { 12043 })
);
differential!(
    same_udp_recv_without_connect_v6,
    "synack-d-q70ur6",
    |net, kernel| udp_unconnected_recv(net, kernel, true, if kernel { 12041 } else { 12043 })
);

/// A UDP connect to port 0: Linux's `__ip4_datagram_connect` takes it (no port check), and
/// `udp_sendmsg` on the connected socket sends to port 0 (only an address given with the
/// call is checked for port 0, EINVAL).
async fn udp_connect_port_0(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push((
        "connect port 0",
        show(&on!(&s, x => x.connect(kaddr(v6, 0)).await)),
    ));
    out.push((
        "peer_addr",
        format!(
            "{:?}",
            on!(&s, x => x.peer_addr())
                .map(|a| a == kaddr(v6, 0))
                .map_err(|e| e.kind())
        ),
    ));
    out.push(("send", show(&on!(&s, x => x.send(b"x").await))));
    out.push((
        "send_to port 0",
        show(&on!(&s, x => x.send_to(b"x", kaddr(v6, 0)).await)),
    ));
    settle().await;
    out.push(("take_error", utake_error(&s)));
    out
}

differential!(same_udp_connect_port_0, "synack-d-q70u0", |net, kernel| {
    udp_connect_port_0(net, kernel, false)
});
differential!(
    same_udp_connect_port_0_v6,
    "synack-d-q70u06",
    |net, kernel| udp_connect_port_0(net, kernel, true)
);

/// Empty datagrams on a connected socket: `send` of nothing, and `recv`/`try_recv`/`peek`
/// into an empty buffer (Linux's `udp_recvmsg` truncates to nothing and drops the datagram
/// unless peeking).
async fn udp_connected_empty(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let pa = kaddr(v6, port);
    let p = net.kernel_udp(pa).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&s, x => x.connect(pa).await).unwrap();
    out.push(("send empty", show(&on!(&s, x => x.send(b"").await))));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push(("try_send empty", show(&on!(&s, x => x.try_send(b"")))));
    out.push(("peer got again", kpeer_recv(&p).await));
    let local = on!(&s, x => x.local_addr()).unwrap();
    let me = SocketAddr::new(own(kernel, v6, 0).ip(), local.port());
    p.send_to(b"abc", me).await.unwrap();
    p.send_to(b"def", me).await.unwrap();
    p.send_to(b"", me).await.unwrap();
    settle().await;
    let mut e = [0u8; 0];
    out.push(("peek empty buf", show(&on!(&s, x => x.peek(&mut e).await))));
    out.push(("recv empty buf", show(&on!(&s, x => x.recv(&mut e).await))));
    out.push((
        "try_recv empty buf",
        show(&on!(&s, x => x.try_recv(&mut e))),
    ));
    out.push(("recv: the empty datagram", urecv(&s, 10).await));
    out.push(("recv nothing left", urecv(&s, 10).await));
    out
}

differential!(
    same_udp_connected_empty_datagrams_and_buffers,
    "synack-d-q70ue",
    |net, kernel| udp_connected_empty(net, kernel, false, if kernel { 12051 } else { 12052 })
);

/// What `lookup_host` gives for a string or a host and port: the addresses, or the error's
/// kind. tokio::net's parses a socket address, else hands the string to std's
/// `to_socket_addrs` on its blocking pool (glibc's `getaddrinfo`, which reads a numeric
/// host with `inet_aton`); the kernel side calls that inside the namespace, so a name that
/// reaches the name service stays there.
async fn lookup(net: &Net, kernel: bool, host: &str) -> String {
    let r: io::Result<Vec<SocketAddr>> = match kernel {
        true => match host.parse::<SocketAddr>() {
            Ok(a) => Ok(vec![a]),
            Err(_) => {
                let h = host.to_string();
                net.ns
                    .run_in(move || {
                        std::net::ToSocketAddrs::to_socket_addrs(&h).map(|i| i.collect())
                    })
                    .unwrap()
            }
        },
        false => within(10, synack_tokio::lookup_host(&net.stack, host))
            .await
            .map(|i| i.collect()),
    };
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({:?})", e.kind()),
    }
}

async fn lookup_pair(net: &Net, kernel: bool, host: &str, port: u16) -> String {
    let r: io::Result<Vec<SocketAddr>> = match kernel {
        true => match host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => {
                let h = host.to_string();
                net.ns
                    .run_in(move || {
                        std::net::ToSocketAddrs::to_socket_addrs(&(h.as_str(), port))
                            .map(|i| i.collect())
                    })
                    .unwrap()
            }
        },
        false => within(10, synack_tokio::lookup_host(&net.stack, (host, port)))
            .await
            .map(|i| i.collect()),
    };
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({:?})", e.kind()),
    }
}

/// Socket-address strings both parse alike, and malformed ones both refuse.
async fn lookup_forms(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    for (what, s) in [
        ("ipv4:port", "198.18.0.1:80"),
        ("[ipv6]:port", "[2001:2::1]:80"),
        ("ipv6:port without brackets", "2001:2::1:80"),
        ("[ipv6]:port with a scope", "[fe80::1%1]:80"),
        ("ipv4 without a port", "198.18.0.1"),
        ("[ipv6] without a port", "[2001:2::1]"),
        ("port too large", "198.18.0.1:65536"),
        ("port not a number", "198.18.0.1:http"),
        ("empty", ""),
    ] {
        out.push((what, lookup(net, kernel, s).await));
    }
    out.push((
        "(ipv4, port)",
        lookup_pair(net, kernel, "198.18.0.1", 80).await,
    ));
    out.push((
        "(ipv6, port)",
        lookup_pair(net, kernel, "2001:2::1", 80).await,
    ));
    out
}

differential!(
    same_lookup_host_address_forms,
    "synack-d-q70lk",
    |net, kernel| { lookup_forms(net, kernel) }
);

/// IPv4 in `inet_aton`'s shorthands (`a.b.c`, `a.b`, one 32-bit number, hex and octal
/// parts): glibc's `getaddrinfo` reads them as addresses (`__inet_aton_exact` in
/// `gaih_inet`), so tokio's `lookup_host` and `connect("198.18.1:80")` take them, and
/// synack's reads them alike (`inet_aton` in addr.rs).
async fn lookup_shorthands(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    for (what, s) in [
        ("a.b.c", "198.18.1:80"),
        ("a.b", "198.1179649:80"),
        ("one number", "3323068417:80"),
        ("hex parts", "0xc6.0x12.0.0x1:80"),
        ("octal parts", "0306.022.0.01:80"),
    ] {
        out.push((what, lookup(net, kernel, s).await));
    }
    out.push((
        "(a.b.c, port)",
        lookup_pair(net, kernel, "198.18.1", 80).await,
    ));
    out
}

/// Hosts that are no IP address and that synack's `lookup_host` refuses as never a name
/// (`InvalidInput`): an empty host with a port, an IPv6 address in brackets given with a
/// separate port. tokio's hands them to `getaddrinfo`, which fails its name lookup
/// (EAI_NONAME or EAI_AGAIN: std's `Uncategorized` "failed to lookup address information").
/// synack departs on purpose: its error says what is wrong with the string, and has a kind
/// a caller can match (std's `Uncategorized` is not one).
async fn lookup_non_names(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    out.push(("only a port", lookup(net, kernel, ":80").await));
    out.push((
        "([ipv6], port)",
        lookup_pair(net, kernel, "[2001:2::1]", 80).await,
    ));
    out
}

differential!(
    departs_lookup_host_non_names,
    "synack-d-q70ln",
    departs ["only a port", "([ipv6], port)"],
    |net, kernel| lookup_non_names(net, kernel)
);

differential!(
    same_lookup_host_ipv4_shorthands,
    "synack-d-q70la",
    |net, kernel| lookup_shorthands(net, kernel)
);

/// `write_all` of a MiB, then the stream dropped at once: the peer reads all of it, then
/// EOF (Linux's `tcp_close` sends what is queued, then FIN).
async fn tcp_write_all_then_drop(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let data = kernel_support::pattern(1 << 20, 71);
    let (w, r) = tokio::join!(
        async {
            let w = on!(&mut s, x => within(20, x.write_all(&data)).await);
            drop(s);
            show(&w)
        },
        async {
            // The peer starts reading only after a while: the write fills the buffers.
            tokio::time::sleep(Duration::from_millis(300)).await;
            peer_reads_all(&mut p, &data).await
        }
    );
    out.push(("write_all 1 MiB", w));
    out.push(("peer reads", r));
    out
}

differential!(
    same_tcp_write_all_then_drop_delivers_everything,
    "synack-d-q70wd",
    |net, kernel| tcp_write_all_then_drop(net, kernel, false, if kernel { 12071 } else { 12072 })
);

/// A drop with unread data and a linger of a second set: RST at once (Linux's `tcp_close`
/// resets for unread data before it looks at the linger), the peer's data lost.
async fn tcp_linger_unread_drop(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    #[allow(deprecated)]
    let r = on!(&s, x => x.set_linger(Some(Duration::from_secs(1))));
    out.push(("set_linger 1 s", show(&r)));
    out.push(("write", write_once(&mut s, b"sent").await));
    p.write_all(b"unread").await.unwrap();
    settle().await;
    drop(s);
    out.push(("peer sees", peer_sees(&mut p, 1000).await));
    out
}

differential!(
    same_tcp_drop_with_linger_and_unread_data_resets,
    "synack-d-q70lr",
    |net, kernel| tcp_linger_unread_drop(net, kernel, false, if kernel { 12081 } else { 12082 })
);

/// Options set on a `TcpSocket` after its bind: Linux takes SO_REUSEADDR and SO_REUSEPORT
/// at any time (`sk_setsockopt`), and reads them back.
async fn tcp_socket_options_after_bind(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let t = new_tcp_socket(net, kernel, v6);
    t.bind(own(kernel, v6, 0)).unwrap();
    let r = on!(&t, x => (
        show(&x.set_reuseaddr(true)),
        show(&x.reuseaddr()),
        show(&x.set_reuseport(true)),
        show(&x.reuseport()),
        show(&x.set_keepalive(true)),
        show(&x.keepalive()),
        show(&x.set_nodelay(true)),
        show(&x.nodelay()),
    ));
    out.push((
        "after bind: reuseaddr, reuseport, keepalive, nodelay",
        format!("{r:?}"),
    ));
    let r = on!(&t, x => (
        show(&x.set_reuseaddr(false)),
        show(&x.reuseaddr()),
        show(&x.set_reuseport(false)),
        show(&x.reuseport()),
    ));
    out.push(("cleared again", format!("{r:?}")));
    let l = t.listen(4).map(|l| lst_addr(&l).port() != 0);
    out.push(("listen", show(&l)));
    out
}

differential!(
    same_tcp_socket_options_after_bind,
    "synack-d-q70ob",
    |net, kernel| tcp_socket_options_after_bind(net, kernel, false)
);
differential!(
    same_tcp_socket_options_after_bind_v6,
    "synack-d-q70ob6",
    |net, kernel| tcp_socket_options_after_bind(net, kernel, true)
);

/// A TCP port and the same UDP port are different ports: each binds beside the other.
async fn tcp_and_udp_one_port(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let u = ubind(net, kernel, own(kernel, v6, port)).await;
    out.push(("UDP bind", show_ok(&u)));
    let l = listen(net, kernel, own(kernel, v6, port)).await;
    out.push(("TCP listen on the UDP port", show_ok(&l)));
    let t = new_tcp_socket(net, kernel, v6);
    out.push((
        "TcpSocket bind",
        show_ok(&t.bind(own(kernel, v6, port + 1))),
    ));
    let u2 = ubind(net, kernel, own(kernel, v6, port + 1)).await;
    out.push(("UDP bind on the TcpSocket's port", show_ok(&u2)));
    let l3 = listen(net, kernel, SocketAddr::new(unspec(v6).ip(), port + 2)).await;
    out.push(("TCP listen unspecified", show_ok(&l3)));
    let u3 = ubind(net, kernel, own(kernel, v6, port + 2)).await;
    out.push(("UDP bind own address on its port", show_ok(&u3)));
    // Traffic still finds each.
    let c = within(5, ksocket(net, v6).connect(own(kernel, v6, port))).await;
    out.push(("TCP client connects", show_ok(&c)));
    let k = net.kernel_udp(kaddr(v6, port + 3)).unwrap();
    k.send_to(b"udp", own(kernel, v6, port)).await.unwrap();
    settle().await;
    let u = u.unwrap();
    out.push((
        "UDP socket receives",
        urecv_from(&u, 10, kaddr(v6, port + 3)).await,
    ));
    out
}

differential!(
    same_tcp_and_udp_share_a_port_number,
    "synack-d-q70tu",
    |net, kernel| tcp_and_udp_one_port(net, kernel, false, 12091)
);
differential!(
    same_tcp_and_udp_share_a_port_number_v6,
    "synack-d-q70tu6",
    |net, kernel| tcp_and_udp_one_port(net, kernel, true, 12091)
);

/// Both directions at once through `split()`'s halves: half a MiB each way.
async fn tcp_split_duplex(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, p) = pair(net, kernel, v6, port).await;
    let up = kernel_support::pattern(512 << 10, 3);
    let down = kernel_support::pattern(512 << 10, 9);
    let (mut pr, mut pw) = p.into_split();
    let peer = async {
        let (a, b) = tokio::join!(
            async {
                let mut got = Vec::new();
                let r = within(20, pr.read_to_end(&mut got)).await;
                format!("{} intact {}", show_ok(&r), got == up)
            },
            async {
                let r = within(20, pw.write_all(&down)).await;
                drop(pw);
                show(&r)
            }
        );
        (a, b)
    };
    let subject = async {
        on!(&mut s, x => {
            let (mut r, mut w) = x.split();
            tokio::join!(
                async {
                    let mut got = Vec::new();
                    let n = within(20, r.read_to_end(&mut got)).await;
                    format!("{} intact {}", show_ok(&n), got == down)
                },
                async {
                    let a = within(20, w.write_all(&up)).await;
                    let b = w.shutdown().await;
                    format!("{} {}", show(&a), show(&b))
                }
            )
        })
    };
    let ((pa, pb), (sa, sb)) = tokio::join!(peer, subject);
    out.push(("peer reads", pa));
    out.push(("peer writes", pb));
    out.push(("read half reads to EOF", sa));
    out.push(("write half writes, shuts down", sb));
    out
}

differential!(
    same_tcp_split_halves_full_duplex,
    "synack-d-q70dx",
    |net, kernel| tcp_split_duplex(net, kernel, false, if kernel { 12101 } else { 12102 })
);

/// A `TcpSocket`'s buffer sizes before any are set. Linux reads back `tcp_wmem[1]` and
/// `tcp_rmem[1]` (16 KiB and 128 KiB, `tcp_init_sock`) and grows the buffers behind them as
/// the connection runs (auto-tuning); synack departs on purpose: it reads back what its
/// buffers hold (`Config`'s 256 KiB each, in payload bytes), which is what it uses.
async fn tcp_default_buffer_sizes(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let t = new_tcp_socket(net, kernel, v6);
    out.push((
        "send_buffer_size",
        show(&on!(&t, x => x.send_buffer_size())),
    ));
    out.push((
        "recv_buffer_size",
        show(&on!(&t, x => x.recv_buffer_size())),
    ));
    out
}

differential!(
    departs_tcp_default_buffer_sizes,
    "synack-d-q70db",
    departs ["send_buffer_size", "recv_buffer_size"],
    |net, kernel| tcp_default_buffer_sizes(net, kernel, false)
);

/// Two sockets bound to one address and port (both SO_REUSEADDR, neither listening), each
/// connecting out: Linux's `__inet_hash_connect` takes a bound port shared by others if
/// the four-tuple is new (`__inet_check_established`), and refuses a second connection to
/// the same peer with EADDRNOTAVAIL.
async fn tcp_shared_bound_port(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let l1 = klisten(net, kaddr(v6, port)).unwrap();
    let _l2 = klisten(net, kaddr(v6, port + 1)).unwrap();
    let at = own(kernel, v6, port + 2);
    let mk = || {
        let t = new_tcp_socket(net, kernel, v6);
        t.set_reuseaddr(true).unwrap();
        t
    };
    let (a, b, c) = (mk(), mk(), mk());
    out.push(("bind a", show(&a.bind(at))));
    out.push(("bind b, same address", show(&b.bind(at))));
    out.push(("bind c, same address", show(&c.bind(at))));
    let sa = within(5, a.connect(kaddr(v6, port))).await;
    out.push(("a connects to peer 1", show_ok(&sa)));
    let sb = within(5, b.connect(kaddr(v6, port + 1))).await;
    out.push(("b connects to peer 2", show_ok(&sb)));
    let sc = within(5, c.connect(kaddr(v6, port))).await;
    out.push(("c connects to peer 1 too", show_ok(&sc)));
    let (_p, from) = within(5, l1.accept()).await.unwrap();
    out.push((
        "peer 1 sees the bound port",
        format!("{}", from.port() == port + 2),
    ));
    out
}

differential!(
    same_tcp_connects_from_a_shared_bound_port,
    "synack-d-q70sp",
    |net, kernel| tcp_shared_bound_port(net, kernel, false, if kernel { 12111 } else { 12115 })
);
differential!(
    same_tcp_connects_from_a_shared_bound_port_v6,
    "synack-d-q70sp6",
    |net, kernel| tcp_shared_bound_port(net, kernel, true, if kernel { 12111 } else { 12115 })
);

/// A UDP socket connected to a kernel peer, then connected to `to`, which fails: the
/// error, `peer_addr` after, and where its sends go.
///
/// To another family (`same_udp_connect_to_another_family_keeps_the_peer`): Linux's
/// `__ip4_datagram_connect` returns EAFNOSUPPORT before it changes anything, and every send
/// reaches the peer.
///
/// To the broadcast address without SO_BROADCAST
/// (`departs_udp_refused_broadcast_connect_keeps_the_peer`): EACCES, and `peer_addr` still
/// gives the old peer, but on Linux only the first send after goes there:
/// `__ip4_datagram_connect` had already reset the cached route and let `ip_route_connect`
/// write the broadcast flow into `inet->cork.fl.u.ip4`; the first send routes anew to
/// `inet_daddr` and caches that route, and each later send takes the cached route with the
/// flow in `cork.fl` (`udp_sendmsg`), whose destination is the broadcast address. (Checked
/// with plain sockets: the later datagrams reach a wildcard socket on the port, as
/// broadcasts.) synack departs on purpose: it sends each to the old peer, which
/// `peer_addr` names, and nothing goes to a broadcast address without SO_BROADCAST.
async fn udp_failed_connect(net: &Net, kernel: bool, port: u16, to: SocketAddr) -> Outcomes {
    let mut out = Outcomes::new();
    let pa = kaddr(false, port);
    let p = net.kernel_udp(pa).unwrap();
    let s = ubind(net, kernel, unspec(false)).await.unwrap();
    out.push(("connect peer", show(&on!(&s, x => x.connect(pa).await))));
    out.push(("send", show(&on!(&s, x => x.send(b"one").await))));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push((
        "the failing connect",
        show_errno(&on!(&s, x => x.connect(to).await)),
    ));
    let peer = on!(&s, x => x.peer_addr());
    out.push((
        "peer_addr after",
        format!("{:?}", peer.map(|a| a == pa).map_err(|e| e.kind())),
    ));
    for (what, got) in [
        ("first send", "peer got the first"),
        ("second send", "peer got the second"),
        ("third send", "peer got the third"),
    ] {
        out.push((what, show(&on!(&s, x => x.send(what.as_bytes()).await))));
        out.push((got, kpeer_recv(&p).await));
    }
    out
}

differential!(
    same_udp_connect_to_another_family_keeps_the_peer,
    "synack-d-q70uf",
    |net, kernel| {
        let port = if kernel { 12121 } else { 12122 };
        udp_failed_connect(net, kernel, port, kaddr(true, port))
    }
);

differential!(
    departs_udp_refused_broadcast_connect_keeps_the_peer,
    "synack-d-q70ub",
    departs ["peer got the second", "peer got the third"],
    |net, kernel| {
        let port = if kernel { 12123 } else { 12124 };
        udp_failed_connect(net, kernel, port, SocketAddr::new([198, 18, 0, 255].into(), port))
    }
);

/// `is_write_vectored` of a stream and of its halves (tokio's: true for all), and
/// `try_read_buf` into a `Vec` with no capacity: `BufMut::chunk_mut` grows it by 64 bytes,
/// so 64 of 100 waiting bytes come.
async fn tcp_buf_details(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use tokio::io::AsyncWrite;
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let r = on!(&mut s, x => {
        let a = x.is_write_vectored();
        let (_, w) = x.split();
        (a, w.is_write_vectored())
    });
    out.push(("is_write_vectored: stream, write half", format!("{r:?}")));
    p.write_all(&[b'z'; 100]).await.unwrap();
    settle().await;
    let mut v: Vec<u8> = Vec::new();
    let r = on!(&s, x => x.try_read_buf(&mut v));
    out.push((
        "try_read_buf into Vec::new()",
        format!("{} len {}", show(&r), v.len()),
    ));
    let mut v: Vec<u8> = Vec::with_capacity(10);
    v.extend_from_slice(b"0123456789");
    let r = on!(&s, x => x.try_read_buf(&mut v));
    out.push((
        "try_read_buf into a full Vec",
        format!("{} len {}", show(&r), v.len()),
    ));
    let mut v = bytes::BytesMut::new();
    let r = on!(&s, x => x.try_read_buf(&mut v));
    out.push((
        "try_read_buf into BytesMut::new()",
        format!("{} len {}", show(&r), v.len()),
    ));
    let r = on!(s, x => {
        let (_, w) = x.into_split();
        w.is_write_vectored()
    });
    out.push(("is_write_vectored: owned write half", format!("{r:?}")));
    out
}

differential!(
    same_tcp_buf_mut_reads_and_write_vectored_flags,
    "synack-d-q70bm",
    |net, kernel| tcp_buf_details(net, kernel, false, if kernel { 12131 } else { 12132 })
);

/// A linger under a second: tokio hands SO_LINGER whole seconds (`as_secs()`), so 500 ms is
/// a linger of 0, and the drop resets (Linux's `tcp_close`: SOCK_LINGER with no linger
/// time is `tcp_disconnect`).
async fn tcp_linger_under_a_second(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    #[allow(deprecated)]
    let r = on!(&s, x => x.set_linger(Some(Duration::from_millis(500))));
    out.push(("set_linger 500 ms", show(&r)));
    #[allow(deprecated)]
    out.push(("linger", show(&on!(&s, x => x.linger()))));
    out.push(("write", write_once(&mut s, b"data").await));
    settle().await;
    drop(s);
    out.push(("peer sees", peer_sees(&mut p, 1000).await));
    // The same, set on the TcpSocket before connect.
    let l = klisten(net, kaddr(v6, port + 1)).unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    #[allow(deprecated)]
    let r = on!(&t, x => x.set_linger(Some(Duration::from_millis(999))));
    out.push(("TcpSocket set_linger 999 ms", show(&r)));
    let s = within(5, t.connect(kaddr(v6, port + 1))).await.unwrap();
    let (mut p, _) = within(5, l.accept()).await.unwrap();
    #[allow(deprecated)]
    out.push(("stream linger", show(&on!(&s, x => x.linger()))));
    drop(s);
    out.push(("peer sees that drop", peer_sees(&mut p, 1000).await));
    out
}

differential!(
    same_tcp_linger_under_a_second_resets,
    "synack-d-q70l5",
    |net, kernel| tcp_linger_under_a_second(net, kernel, false, if kernel { 12141 } else { 12143 })
);

/// Both ends shut down at once (a simultaneous close through CLOSING), then each call.
async fn tcp_simultaneous_close(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let (a, b) = tokio::join!(shutdown(&mut s), p.shutdown());
    out.push(("both shut down", format!("{a} {}", show(&b))));
    settle().await;
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("write", write_once(&mut s, b"x").await));
    out.push((
        "ready(R|W)",
        ready_now(&s, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("peer_addr", show_ok(&on!(&s, x => x.peer_addr()))));
    out.push(("take_error", take_error(&s)));
    out.push(("peer sees", peer_sees(&mut p, 300).await));
    drop(s);
    out.push(("peer writes after the drop", show(&p.write(b"late").await)));
    out
}

differential!(
    same_tcp_simultaneous_close,
    "synack-d-q70sc",
    |net, kernel| tcp_simultaneous_close(net, kernel, false, if kernel { 12151 } else { 12152 })
);

/// Destinations off every link (198.19.0.5, 2001:2:1::5). The namespace's kernel has no
/// route there (no default route): ENETUNREACH from `ip_route_output_key_hash_rcu` (IPv4)
/// and `ip6_dst_lookup_tail` (IPv6) for every call. synack sends anything not its own into
/// the TUN, as through a default route: UDP sends and connects succeed; an IPv4 SYN is
/// dropped by the kernel (no forwarding, `ip_error` sends no ICMP then), so the connect
/// waits; an IPv6 SYN draws ICMPv6 no-route (`ip6_pkt_drop`), so it fails as the kernel's.
/// A difference of topology more than of API, kept on purpose: the test's kernel has no
/// route that the stack's TUN stands for, and the stack cannot know what lies beyond it.
async fn off_link(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let to: SocketAddr = match v6 {
        false => format!("198.19.0.5:{port}").parse().unwrap(),
        true => format!("[2001:2:1::5]:{port}").parse().unwrap(),
    };
    let r = tokio::time::timeout(Duration::from_secs(3), connect(net, kernel, to)).await;
    out.push(("TCP connect", r.map_or("pending".into(), |r| show_ok(&r))));
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push((
        "UDP send_to",
        show(&on!(&u, x => x.send_to(b"x", to).await)),
    ));
    out.push(("UDP connect", show(&on!(&u, x => x.connect(to).await))));
    out.push(("UDP peer_addr", show_ok(&on!(&u, x => x.peer_addr()))));
    out
}

differential!(
    departs_off_link_destinations,
    "synack-d-q70ol",
    departs ["TCP connect", "UDP send_to", "UDP connect", "UDP peer_addr"],
    |net, kernel| off_link(net, kernel, false, 12161)
);
differential!(
    departs_off_link_destinations_v6,
    "synack-d-q70ol6",
    departs ["UDP send_to", "UDP connect", "UDP peer_addr"],
    |net, kernel| off_link(net, kernel, true, 12161)
);

/// A connection between two of the subject's own sockets (the kernel's loopback; synack's
/// own addresses, looped back inside the stack): bulk one way, a half close, a reset by a
/// drop with unread data.
async fn tcp_own_loopback(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = listen(net, kernel, at).await.unwrap();
    let mut c = within(5, connect(net, kernel, at)).await.unwrap();
    let mut a = match &l {
        Lst::K(l) => St::K(within(5, l.accept()).await.unwrap().0),
        Lst::S(l) => St::S(within(5, l.accept()).await.unwrap().0),
    };
    let data = kernel_support::pattern(512 << 10, 13);
    let (w, r) = tokio::join!(
        async { show(&on!(&mut c, x => within(20, x.write_all(&data)).await)) },
        async {
            match within(20, read_exactly(&mut a, data.len(), 65536, 0)).await {
                Ok(got) => format!("intact {}", got == data),
                Err(e) => show_err(&e),
            }
        }
    );
    out.push(("client writes 512 KiB", w));
    out.push(("accepted reads", r));
    out.push(("accepted shuts down", shutdown(&mut a).await));
    settle().await;
    out.push(("client reads EOF", read_once(&mut c, 10).await));
    out.push(("client writes after", write_once(&mut c, b"x").await));
    settle().await;
    out.push(("accepted reads it", read_once(&mut a, 10).await));
    out.push((
        "accepted writes after its shutdown",
        write_once(&mut a, b"y").await,
    ));
    out.push(("client writes unread", write_once(&mut c, b"unread").await));
    settle().await;
    drop(a);
    settle().await;
    out.push((
        "client ready after the drop",
        ready_now(&c, Interest::READABLE | Interest::WRITABLE).await,
    ));
    out.push(("client reads", read_once(&mut c, 10).await));
    out.push(("client writes", write_once(&mut c, b"z").await));
    out.push(("client peer_addr", show_ok(&on!(&c, x => x.peer_addr()))));
    out
}

differential!(
    same_tcp_between_own_sockets,
    "synack-d-q70lo",
    |net, kernel| tcp_own_loopback(net, kernel, false, 12171)
);
differential!(
    same_tcp_between_own_sockets_v6,
    "synack-d-q70lo6",
    |net, kernel| tcp_own_loopback(net, kernel, true, 12171)
);

/// Large datagrams between two of the subject's own UDP sockets, and one past the limit.
async fn udp_own_loopback_large(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let a = ubind(net, kernel, own(kernel, v6, 0)).await.unwrap();
    let b = ubind(net, kernel, own(kernel, v6, 0)).await.unwrap();
    let to = on!(&b, x => x.local_addr()).unwrap();
    let max = if v6 { 65527 } else { 65507 };
    for len in [1472usize, 9000, max] {
        let data = kernel_support::pattern(len, len as u32);
        let r = on!(&a, x => x.send_to(&data, to).await);
        let mut buf = vec![0u8; 70000];
        let got = on!(&b, x => tokio::time::timeout(Duration::from_millis(500), x.recv_from(&mut buf)).await);
        out.push((
            "send_to, recv_from",
            format!(
                "{len}: {} {}",
                show(&r),
                match got {
                    Err(_) => "nothing".into(),
                    Ok(Ok((n, _))) => format!("intact {}", buf[..n] == data[..]),
                    Ok(Err(e)) => show_err(&e),
                }
            ),
        ));
    }
    let big = vec![1u8; max + 1];
    out.push((
        "send_to past the limit",
        show_errno(&on!(&a, x => x.send_to(&big, to).await)),
    ));
    out
}

differential!(
    same_udp_large_datagrams_between_own_sockets,
    "synack-d-q70ul",
    |net, kernel| udp_own_loopback_large(net, kernel, false)
);
differential!(
    same_udp_large_datagrams_between_own_sockets_v6,
    "synack-d-q70ul6",
    |net, kernel| udp_own_loopback_large(net, kernel, true)
);

fn waited(r: Result<io::Result<()>, tokio::time::error::Elapsed>) -> String {
    match r {
        Err(_) => "pending".into(),
        Ok(r) => show(&r),
    }
}

/// Several tasks waiting on one stream at once (tokio's readiness wakes every waiter):
/// two in `readable()` when data comes, two in `writable()` when a full send buffer drains.
async fn tcp_many_waiters(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, mut p) = pair(net, kernel, v6, port).await;
    let s = std::sync::Arc::new(s);
    let d = Duration::from_secs(3);
    let spawn_readable = |s: std::sync::Arc<St>| {
        tokio::spawn(
            async move { waited(on!(&*s, x => tokio::time::timeout(d, x.readable()).await)) },
        )
    };
    let r1 = spawn_readable(s.clone());
    let r2 = spawn_readable(s.clone());
    settle().await;
    p.write_all(b"wake").await.unwrap();
    out.push((
        "two readable() waiters",
        format!("{} {}", r1.await.unwrap(), r2.await.unwrap()),
    ));
    out.push(("try_read", try_read(&s, 10)));
    let sent = fill(&s).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = sent + fill(&s).await;
    let spawn_writable = |s: std::sync::Arc<St>| {
        tokio::spawn(
            async move { waited(on!(&*s, x => tokio::time::timeout(d, x.writable()).await)) },
        )
    };
    let w1 = spawn_writable(s.clone());
    let w2 = spawn_writable(s.clone());
    settle().await;
    out.push((
        "writers waiting",
        format!("{} {}", w1.is_finished(), w2.is_finished()),
    ));
    let mut buf = vec![0u8; 65536];
    let mut taken = 0;
    while taken < sent {
        match tokio::time::timeout(Duration::from_secs(2), p.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => taken += n,
            _ => break,
        }
    }
    out.push((
        "two writable() waiters, the peer drained it",
        format!("{} {}", w1.await.unwrap(), w2.await.unwrap()),
    ));
    out
}

differential!(
    same_tcp_several_tasks_wait_on_one_stream,
    "synack-d-q70mw",
    |net, kernel| tcp_many_waiters(net, kernel, false, if kernel { 12181 } else { 12182 })
);

/// The halves in two tasks, a read and a `write_all` (into a full window) both waiting,
/// when the peer resets: each wakes (which gets ECONNRESET, the first to take the socket
/// error, varies; the other then sees EPIPE, or EOF for the read).
async fn tcp_halves_blocked_at_rst(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (s, p) = pair(net, kernel, v6, port).await;
    let big = vec![5u8; 16 << 20];
    macro_rules! body {
        ($s:expr) => {{
            let (mut r, mut w) = $s.into_split();
            let rt = tokio::spawn(async move {
                let mut b = [0u8; 10];
                match tokio::time::timeout(Duration::from_secs(5), r.read(&mut b)).await {
                    Err(_) => "pending".to_string(),
                    Ok(r) => show(&r),
                }
            });
            let wt = tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(5), w.write_all(&big)).await {
                    Err(_) => "pending".to_string(),
                    Ok(r) => show(&r),
                }
            });
            (rt, wt)
        }};
    }
    let (rt, wt) = match s {
        St::K(s) => body!(s),
        St::S(s) => body!(s),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    out.push((
        "both waiting",
        format!("{} {}", rt.is_finished(), wt.is_finished()),
    ));
    p.set_zero_linger().unwrap();
    drop(p);
    let (r, w) = (rt.await.unwrap(), wt.await.unwrap());
    eprintln!("kernel {kernel}: read {r}, write_all {w}");
    // The read that comes second after the error was taken reads EOF (Ok(0)).
    out.push((
        "both end, one with ConnectionReset, the write_all with an error",
        format!(
            "{} {} {}",
            r != "pending" && w != "pending",
            r.contains("ConnectionReset") || w.contains("ConnectionReset"),
            w.starts_with("Err")
        ),
    ));
    out
}

differential!(
    same_tcp_halves_in_two_tasks_at_a_reset,
    "synack-d-q70hr",
    |net, kernel| tcp_halves_blocked_at_rst(net, kernel, false, if kernel { 12191 } else { 12192 })
);

/// Two `accept`s waiting at once on one listener, then two clients: each gets one.
async fn tcp_concurrent_accepts(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = std::sync::Arc::new(listen(net, kernel, at).await.unwrap());
    let spawn_accept = |l: std::sync::Arc<Lst>| {
        tokio::spawn(async move {
            let r = on!(&*l, x => tokio::time::timeout(Duration::from_secs(3), x.accept())
                .await
                .map(|r| r.map(|(_, a)| a)));
            r.ok().and_then(Result::ok)
        })
    };
    let a1 = spawn_accept(l.clone());
    let a2 = spawn_accept(l.clone());
    settle().await;
    let c1 = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    let c2 = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    let (x, y) = (a1.await.unwrap(), a2.await.unwrap());
    let mut got: Vec<_> = [x, y].into_iter().flatten().collect();
    got.sort();
    let mut want = vec![c1.local_addr().unwrap(), c2.local_addr().unwrap()];
    want.sort();
    out.push((
        "each accept got a client, both clients",
        format!("{}", got == want),
    ));
    out
}

differential!(
    same_tcp_two_accepts_waiting_at_once,
    "synack-d-q70ca",
    |net, kernel| tcp_concurrent_accepts(net, kernel, false, 12201)
);

/// Two tasks in `recv_from` on one UDP socket: a datagram wakes one of them, the next the
/// other.
async fn udp_concurrent_recvs(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let p = net.kernel_udp(kaddr(v6, port)).unwrap();
    let s = std::sync::Arc::new(ubind(net, kernel, unspec(v6)).await.unwrap());
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&*s, x => x.local_addr()).unwrap().port(),
    );
    let spawn_recv = |s: std::sync::Arc<Ud>| {
        tokio::spawn(async move {
            let mut b = [0u8; 10];
            match on!(&*s, x => tokio::time::timeout(Duration::from_secs(2), x.recv_from(&mut b)).await)
            {
                Err(_) => "pending".to_string(),
                Ok(Ok((n, _))) => String::from_utf8_lossy(&b[..n]).into_owned(),
                Ok(Err(e)) => show_err(&e),
            }
        })
    };
    let r1 = spawn_recv(s.clone());
    let r2 = spawn_recv(s.clone());
    settle().await;
    p.send_to(b"one", me).await.unwrap();
    settle().await;
    let done = r1.is_finished() as u8 + r2.is_finished() as u8;
    out.push(("tasks done after one datagram", done.to_string()));
    p.send_to(b"two", me).await.unwrap();
    let mut v = vec![r1.await.unwrap(), r2.await.unwrap()];
    v.sort();
    out.push(("the two got", format!("{v:?}")));
    out
}

differential!(
    same_udp_two_tasks_receiving_at_once,
    "synack-d-q70cr",
    |net, kernel| udp_concurrent_recvs(net, kernel, false, if kernel { 12211 } else { 12212 })
);

/// An IPv6 socket bound to the IPv4-mapped unspecified address `::ffff:0.0.0.0`: an IPv4
/// wildcard in IPv6 clothes (Linux's `__inet6_bind` takes it as INADDR_ANY for IPv4 only,
/// `ipv6only` off and `sk_ipv6only` cleared), so IPv4 clients and datagrams reach it and
/// IPv6 ones do not.
async fn mapped_unspecified(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at: SocketAddr = format!("[::ffff:0.0.0.0]:{port}").parse().unwrap();
    let l = listen(net, kernel, at).await;
    out.push(("TCP listen [::ffff:0.0.0.0]", show_ok(&l)));
    if let Ok(l) = &l {
        out.push(("listener local_addr", format!("{}", lst_addr(l) == at)));
        let c4 = within(5, ksocket(net, false).connect(own(kernel, false, port))).await;
        out.push(("IPv4 client connects", show_ok(&c4)));
        if let Ok(c4) = &c4 {
            let r = on!(l, x => tokio::time::timeout(Duration::from_millis(500), x.accept())
                .await
                .map(|r| r.map(|(s, a)| (s.local_addr().map(|a| a.is_ipv6()), a))));
            out.push((
                "accepted: local is IPv6, peer is the client mapped",
                match r {
                    Err(_) => "pending".into(),
                    Ok(Ok((la, pa))) => {
                        format!("{:?} {}", la, pa == mapped(c4.local_addr().unwrap()))
                    }
                    Ok(Err(e)) => show_err(&e),
                },
            ));
        }
        let c6 = tokio::time::timeout(
            Duration::from_secs(2),
            ksocket(net, true).connect(own(kernel, true, port)),
        )
        .await;
        out.push((
            "IPv6 client connects",
            c6.map_or("pending".into(), |r| show_ok(&r)),
        ));
    }
    let uat: SocketAddr = format!("[::ffff:0.0.0.0]:{}", port + 1).parse().unwrap();
    let u = ubind(net, kernel, uat).await;
    out.push(("UDP bind [::ffff:0.0.0.0]", show_ok(&u)));
    if let Ok(u) = &u {
        let k4 = net.kernel_udp(kaddr(false, port + 2)).unwrap();
        let k6 = net.kernel_udp(kaddr(true, port + 2)).unwrap();
        k6.send_to(b"from v6", own(kernel, true, port + 1))
            .await
            .unwrap();
        k4.send_to(b"from v4", own(kernel, false, port + 1))
            .await
            .unwrap();
        settle().await;
        out.push((
            "UDP receives",
            urecv_from(u, 20, mapped(kaddr(false, port + 2))).await,
        ));
        out.push((
            "UDP receives again",
            urecv_from(u, 20, mapped(kaddr(false, port + 2))).await,
        ));
        out.push((
            "UDP send_to an IPv4-mapped peer",
            show(&on!(u, x => x.send_to(b"to v4", mapped(kaddr(false, port + 2))).await)),
        ));
        out.push(("IPv4 peer got", kpeer_recv(&k4).await));
        out.push((
            "UDP send_to an IPv6 peer",
            show_errno(&on!(u, x => x.send_to(b"to v6", kaddr(true, port + 2)).await)),
        ));
        out.push(("IPv6 peer got", kpeer_recv(&k6).await));
    }
    out
}

differential!(
    same_ipv4_mapped_unspecified_binds,
    "synack-d-q70mu",
    |net, kernel| mapped_unspecified(net, kernel, if kernel { 12221 } else { 12225 })
);

/// IPv6 link-local addresses that are nobody's, with and without a scope id: binds (Linux's
/// `__inet6_bind`: EINVAL without a scope id or bound device, before it looks for the
/// address), a UDP send and connect.
async fn link_local(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let ll: SocketAddr = format!("[fe80::77]:{port}").parse().unwrap();
    out.push((
        "TCP listen fe80::77",
        show_ok(&listen(net, kernel, ll).await),
    ));
    out.push(("UDP bind fe80::77", show_ok(&ubind(net, kernel, ll).await)));
    let t = new_tcp_socket(net, kernel, true);
    out.push(("TcpSocket bind fe80::77", show_ok(&t.bind(ll))));
    let u = ubind(net, kernel, unspec(true)).await.unwrap();
    out.push((
        "UDP connect fe80::77 unscoped",
        show(&on!(&u, x => x.connect(ll).await)),
    ));
    let u = ubind(net, kernel, unspec(true)).await.unwrap();
    out.push((
        "UDP send_to ff02::1 (link scope, no scope id)",
        show(&on!(&u, x => x.send_to(b"x", format!("[ff02::1]:{port}").parse::<SocketAddr>().unwrap()).await)),
    ));
    out
}

differential!(
    same_ipv6_link_local_binds,
    "synack-d-q70ll",
    |net, kernel| link_local(net, kernel, 12231)
);

/// The `poll_*` calls that fill a `ReadBuf`, given one already part filled ("ab" of 6
/// bytes): they fill on after what is there, only as far as its room, and return what they
/// added. A TCP stream (`poll_peek`, `AsyncRead::poll_read`) and a UDP socket
/// (`poll_peek_from`, `poll_peek`, `poll_recv_from`, `poll_recv`; a datagram longer than the
/// room is cut, the rest lost).
async fn poll_into_filled_bufs(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use tokio::io::{AsyncRead, ReadBuf};
    let mut out = Outcomes::new();
    fn filled(b: &ReadBuf) -> String {
        format!("{:?}", String::from_utf8_lossy(b.filled()))
    }
    // `$poll` (on `$x`, with `cx` and `b`) into `$room` bytes that hold "ab" already: what
    // it returns, and what the buffer then holds.
    macro_rules! into_ab {
        ($side:expr, $room:literal, |$x:ident, $cx:ident, $b:ident| $poll:expr) => {{
            let mut mem = [0u8; $room];
            let mut $b = ReadBuf::new(&mut mem);
            $b.put_slice(b"ab");
            let r = on!($side, $x => within(5, std::future::poll_fn(|$cx| $poll)).await);
            (r, filled(&$b))
        }};
    }
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"hello world").await.unwrap();
    settle().await;
    let (r, got) = into_ab!(&s, 6, |x, cx, b| x.poll_peek(cx, &mut b));
    out.push(("TCP poll_peek", format!("{} {got}", show(&r))));
    let (r, got) = into_ab!(&mut s, 6, |x, cx, b| std::pin::Pin::new(&mut *x)
        .poll_read(cx, &mut b));
    out.push(("TCP poll_read", format!("{} {got}", show(&r))));
    out.push(("TCP read the rest", read_once(&mut s, 20).await));

    let pa = kaddr(v6, port + 100);
    let k = net.kernel_udp(pa).unwrap();
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&u, x => x.local_addr()).unwrap().port(),
    );
    for d in [
        &b"first datagram"[..],
        b"second datagram",
        b"third",
        b"fourth datagram",
    ] {
        k.send_to(d, me).await.unwrap();
    }
    settle().await;
    let from_peer =
        |r: io::Result<SocketAddr>| format!("{:?}", r.map(|a| a == pa).map_err(|e| e.kind()));
    let (r, got) = into_ab!(&u, 6, |x, cx, b| x.poll_peek_from(cx, &mut b));
    out.push(("UDP poll_peek_from", format!("{} {got}", from_peer(r))));
    let (r, got) = into_ab!(&u, 6, |x, cx, b| x.poll_peek(cx, &mut b));
    out.push(("UDP poll_peek", format!("{} {got}", show(&r))));
    let (r, got) = into_ab!(&u, 6, |x, cx, b| x.poll_recv_from(cx, &mut b));
    out.push(("UDP poll_recv_from", format!("{} {got}", from_peer(r))));
    let (r, got) = into_ab!(&u, 6, |x, cx, b| x.poll_recv(cx, &mut b));
    out.push(("UDP poll_recv", format!("{} {got}", show(&r))));
    let (r, got) = into_ab!(&u, 2, |x, cx, b| x.poll_recv(cx, &mut b));
    out.push(("UDP poll_recv, no room", format!("{} {got}", show(&r))));
    out.push(("UDP recv the next", urecv(&u, 30).await));
    out
}

differential!(
    same_poll_calls_fill_a_part_filled_read_buf,
    "synack-d-q70rb",
    |net, kernel| poll_into_filled_bufs(net, kernel, false, if kernel { 12241 } else { 12242 })
);

/// SO_BINDTODEVICE on a `TcpSocket` and a `UdpSocket`, with the TUN's name (the link both
/// sides share), that name with more after its 15th byte or after a NUL (Linux's
/// `sock_setbindtodevice` reads at most IFNAMSIZ - 1 bytes, up to a NUL), a name nobody
/// has (ENODEV), an empty name and `None` (both unbind); `device()` after each.
async fn bind_device(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let tun = net.stack.interface_name().unwrap().as_bytes().to_vec();
    let mut long = tun.clone();
    long.resize(15, b'x');
    let mut longer = long.clone();
    longer.extend_from_slice(b"yz");
    let mut nul = tun.clone();
    nul.extend_from_slice(b"\0junk");
    let names: Vec<(&'static str, Option<Vec<u8>>)> = vec![
        ("the TUN", Some(tun.clone())),
        ("a name nobody has", Some(b"nosuchdev0".to_vec())),
        ("empty", Some(Vec::new())),
        ("the TUN, then a NUL and more", Some(nul)),
        ("None", None),
        ("15 bytes nobody has", Some(long)),
        ("17 bytes, the first 15 nobody's", Some(longer)),
    ];
    let dev = |d: io::Result<Option<Vec<u8>>>, tun: &[u8]| match d {
        Ok(Some(n)) if n == tun => "Ok(the TUN)".to_string(),
        Ok(Some(n)) => format!("Ok({:?})", String::from_utf8_lossy(&n)),
        Ok(None) => "Ok(None)".into(),
        Err(e) => show_err(&e),
    };
    let t = new_tcp_socket(net, kernel, v6);
    out.push((
        "TcpSocket device fresh",
        dev(on!(&t, x => x.device()), &tun),
    ));
    for (what, name) in &names {
        let r = on!(&t, x => x.bind_device(name.as_deref()));
        out.push((
            what,
            format!(
                "TCP {} -> {}",
                show(&r),
                dev(on!(&t, x => x.device()), &tun)
            ),
        ));
    }
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push((
        "UdpSocket device fresh",
        dev(on!(&u, x => x.device()), &tun),
    ));
    for (what, name) in &names {
        let r = on!(&u, x => x.bind_device(name.as_deref()));
        out.push((
            what,
            format!(
                "UDP {} -> {}",
                show(&r),
                dev(on!(&u, x => x.device()), &tun)
            ),
        ));
    }
    // Bound to the TUN, traffic to the peer goes.
    on!(&u, x => x.bind_device(Some(&tun))).unwrap();
    let k = net.kernel_udp(kaddr(v6, port)).unwrap();
    out.push((
        "UDP bound to the TUN: send_to",
        show(&on!(&u, x => x.send_to(b"via tun", kaddr(v6, port)).await)),
    ));
    out.push(("peer got", kpeer_recv(&k).await));
    let l = klisten(net, kaddr(v6, port + 1)).unwrap();
    let t = new_tcp_socket(net, kernel, v6);
    on!(&t, x => x.bind_device(Some(&tun))).unwrap();
    let c = within(5, t.connect(kaddr(v6, port + 1))).await;
    out.push(("TCP bound to the TUN: connect", show_ok(&c)));
    let a = tokio::time::timeout(Duration::from_millis(500), l.accept()).await;
    out.push(("peer accepts", a.map_or("pending".into(), |r| show_ok(&r))));
    out
}

differential!(same_bind_device, "synack-d-q70bd", |net, kernel| {
    bind_device(net, kernel, false, if kernel { 12251 } else { 12253 })
});
differential!(same_bind_device_v6, "synack-d-q70bd6", |net, kernel| {
    bind_device(net, kernel, true, if kernel { 12251 } else { 12253 })
});

/// A `connect` future polled once (its SYN goes) and dropped after the handshake has
/// completed underneath: the socket closes as an idle established one (Linux's `tcp_close`
/// sends FIN), so the peer accepts a connection that ends at once.
async fn tcp_connect_dropped(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let l = klisten(net, kaddr(v6, port)).unwrap();
    {
        let fut = connect(net, kernel, kaddr(v6, port));
        tokio::pin!(fut);
        // Done or not by then (on the kernel's loopback the handshake is often through
        // before the timer), the stream goes: not an outcome.
        let first = tokio::time::timeout(Duration::from_micros(1), &mut fut).await;
        eprintln!("kernel {kernel}: connect after one poll: {}", first.is_ok());
        out.push(("connect polled once, then dropped", "-".into()));
        settle().await;
    }
    settle().await;
    let a = tokio::time::timeout(Duration::from_millis(500), l.accept()).await;
    match a {
        Err(_) => out.push(("peer accepts", "pending".into())),
        Ok(Err(e)) => out.push(("peer accepts", show_err(&e))),
        Ok(Ok((mut p, _))) => {
            out.push(("peer accepts", "Ok".into()));
            out.push(("peer sees", peer_sees(&mut p, 500).await));
            out.push(("peer writes", show(&p.write(b"anyone?").await)));
            settle().await;
            out.push(("peer writes again", show(&p.write(b"anyone?").await)));
        }
    }
    out
}

differential!(
    same_tcp_connect_future_dropped_after_the_handshake,
    "synack-d-q70cd",
    |net, kernel| tcp_connect_dropped(net, kernel, false, if kernel { 12261 } else { 12262 })
);

/// A `connect` future dropped while its SYN is unanswered (nft drops the listener's first
/// SYN-ACKs, then lets the retransmission through): Linux closes the socket in SYN-SENT
/// (`tcp_close`: nothing sent), the late SYN-ACK finds no socket and draws an RST
/// (`tcp_v4_send_reset`), and the listener's request goes: nothing to accept.
async fn tcp_connect_dropped_in_syn_sent(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    net.nft(&format!(
        "add table inet r70; add chain inet r70 out {{ type filter hook output priority 0; }}; \
         add rule inet r70 out tcp sport {port} tcp flags & (syn | ack) == syn | ack drop"
    ))
    .await;
    let l = klisten(net, kaddr(v6, port)).unwrap();
    {
        let fut = connect(net, kernel, kaddr(v6, port));
        let r = tokio::time::timeout(Duration::from_millis(300), fut).await;
        out.push((
            "connect within 300 ms",
            r.map_or("pending".into(), |r| show_ok(&r)),
        ));
    }
    net.nft("delete table inet r70").await;
    // The listener retransmits its SYN-ACK at 1 s, 3 s.
    let a = tokio::time::timeout(Duration::from_millis(4000), l.accept()).await;
    match a {
        Err(_) => out.push(("peer accepts", "pending".into())),
        Ok(Err(e)) => out.push(("peer accepts", show_err(&e))),
        Ok(Ok((mut p, _))) => {
            out.push(("peer accepts", "Ok".into()));
            out.push(("peer sees", peer_sees(&mut p, 500).await));
        }
    }
    out
}

differential!(
    same_tcp_connect_future_dropped_in_syn_sent,
    "synack-d-q70cs",
    |net, kernel| tcp_connect_dropped_in_syn_sent(
        net,
        kernel,
        false,
        if kernel { 12271 } else { 12272 }
    )
);

/// A UDP socket on the unspecified address that joined a group, then connects: to the
/// sender (Linux's connect fixes the socket's local address, `inet_rcv_saddr` in
/// `__ip4_datagram_connect`, and `__udp_is_mcast_sock` then wants the group to be that
/// address: the group's datagrams stop, even from the peer), and to the group itself (no
/// datagram comes from a group's address).
async fn udp_group_then_connect(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let group: IpAddr = match v6 {
        false => "239.1.2.4".parse().unwrap(),
        true => "ff0e::1:8".parse().unwrap(),
    };
    let s = ubind(net, kernel, SocketAddr::new(unspec(v6).ip(), port))
        .await
        .unwrap();
    let r = match (group, own(kernel, false, 0).ip()) {
        (IpAddr::V4(g), IpAddr::V4(i)) => on!(&s, x => x.join_multicast_v4(g, i)),
        (IpAddr::V6(g), _) => on!(&s, x => x.join_multicast_v6(&g, 0)),
        _ => unreachable!(),
    };
    out.push(("join", show(&r)));
    settle().await;
    let pa = kaddr(v6, port + 1);
    let p = net.kernel_udp(pa).unwrap();
    let to = SocketAddr::new(group, port);
    p.send_to(b"to the group", to).await.unwrap();
    out.push(("unconnected receives", urecv_from(&s, 20, pa).await));
    out.push((
        "connect to the sender",
        show(&on!(&s, x => x.connect(pa).await)),
    ));
    p.send_to(b"to the group", to).await.unwrap();
    out.push((
        "connected to the sender, group datagram",
        urecv(&s, 20).await,
    ));
    p.send_to(b"unicast", own(kernel, v6, port)).await.unwrap();
    out.push(("connected to the sender, unicast", urecv(&s, 20).await));
    out.push((
        "connect to the group",
        show(&on!(&s, x => x.connect(to).await)),
    ));
    p.send_to(b"to the group", to).await.unwrap();
    out.push((
        "connected to the group, group datagram",
        urecv(&s, 20).await,
    ));
    out
}

differential!(
    same_udp_group_member_that_connects,
    "synack-d-q70gc",
    setup | net | group_route(net),
    |net, kernel| udp_group_then_connect(net, kernel, false, if kernel { 12281 } else { 12283 })
);
differential!(
    same_udp_group_member_that_connects_v6,
    "synack-d-q70gc6",
    |net, kernel| udp_group_then_connect(net, kernel, true, if kernel { 12281 } else { 12283 })
);

/// Out-of-range values for the byte-sized IP options: a `TcpSocket`'s IP_TOS (Linux keeps
/// the low byte, and for TCP the ECN bits stay the kernel's: `__ip_sock_set_tos`) and
/// IPV6_TCLASS (-1, `u32::MAX` as an int, is the default; others outside 0..=255 EINVAL),
/// a UDP socket's IP_MULTICAST_TTL (-1 is 1, `do_ip_setsockopt`).
async fn byte_options_out_of_range(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let t = new_tcp_socket(net, kernel, v6);
    if !v6 {
        for v in [0x1fu32, 0x100, 0x1fc, u32::MAX] {
            let r = on!(&t, x => x.set_tos_v4(v));
            out.push((
                "TCP set_tos_v4",
                format!(
                    "{v:#x}: {} -> {}",
                    show(&r),
                    show(&on!(&t, x => x.tos_v4()))
                ),
            ));
        }
    } else {
        for v in [0x1fu32, u32::MAX, u32::MAX - 1, 0x100] {
            let r = on!(&t, x => x.set_tclass_v6(v));
            out.push((
                "TCP set_tclass_v6",
                format!(
                    "{v:#x}: {} -> {}",
                    show(&r),
                    show(&on!(&t, x => x.tclass_v6()))
                ),
            ));
        }
    }
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    for v in [7u32, u32::MAX, u32::MAX - 1] {
        let r = on!(&u, x => x.set_multicast_ttl_v4(v));
        out.push((
            "UDP set_multicast_ttl_v4",
            format!(
                "{v:#x}: {} -> {}",
                show(&r),
                show(&on!(&u, x => x.multicast_ttl_v4()))
            ),
        ));
    }
    out
}

differential!(
    same_byte_options_out_of_range,
    "synack-d-q70bo",
    |net, kernel| byte_options_out_of_range(net, kernel, false)
);
differential!(
    same_byte_options_out_of_range_v6,
    "synack-d-q70bo6",
    |net, kernel| byte_options_out_of_range(net, kernel, true)
);

/// A listener owned by a task waiting in `accept`, the task aborted: the listener goes with
/// it (a connect is refused, the port binds again), and a stream with a linger of a second
/// and nothing unsent closes with a FIN.
async fn tcp_listener_dropped_in_accept(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let at = own(kernel, v6, port);
    let l = listen(net, kernel, at).await.unwrap();
    let task = tokio::spawn(async move { on!(&l, x => x.accept().await.map(drop)) });
    settle().await;
    task.abort();
    let r = task.await;
    out.push((
        "task",
        format!(
            "cancelled {}",
            r.map_or_else(|e| e.is_cancelled(), |_| false)
        ),
    ));
    settle().await;
    let c = within(5, ksocket(net, v6).connect(at)).await;
    out.push(("connect after", show_ok(&c)));
    let l2 = listen(net, kernel, at).await;
    out.push(("listen on the port again", show_ok(&l2)));
    let l2 = l2.unwrap();
    let mut c = within(5, ksocket(net, v6).connect(at)).await.unwrap();
    let s = match &l2 {
        Lst::K(l) => St::K(within(5, l.accept()).await.unwrap().0),
        Lst::S(l) => St::S(within(5, l.accept()).await.unwrap().0),
    };
    #[allow(deprecated)]
    let r = on!(&s, x => x.set_linger(Some(Duration::from_secs(1))));
    out.push(("accepted: set_linger 1 s", show(&r)));
    drop(s);
    out.push(("client sees the drop", peer_sees(&mut c, 1000).await));
    out
}

differential!(
    same_tcp_listener_dropped_while_in_accept,
    "synack-d-q70la2",
    |net, kernel| tcp_listener_dropped_in_accept(net, kernel, false, 12291)
);

// ---- review 70a: more calls, limits and own-address errors --------------------------------

/// The calls `same_udp_refused_each_call` leaves out, each on a fresh socket connected to a
/// closed port whose send drew a port unreachable: the `poll_*` forms, the `*_from` and
/// `*_buf_from` receives, sends of each kind, and readiness for ERROR and WRITABLE; then
/// `take_error`.
async fn udp_refused_other_calls(
    net: &Net,
    kernel: bool,
    v6: bool,
    ops: &[&'static str],
) -> Outcomes {
    use tokio::io::ReadBuf;
    let mut out = Outcomes::new();
    let closed = kaddr(v6, 9);
    for &op in ops {
        let s = ubind(net, kernel, unspec(v6)).await.unwrap();
        on!(&s, x => x.connect(closed).await).unwrap();
        on!(&s, x => x.send(b"x").await).unwrap();
        settle().await;
        let mut mem = [0u8; 10];
        let mut v: Vec<u8> = Vec::with_capacity(10);
        let d = Duration::from_millis(300);
        macro_rules! polled {
            (|$x:ident, $cx:ident| $poll:expr) => {
                on!(&s, $x => tokio::time::timeout(d, std::future::poll_fn(|$cx| $poll)).await)
            };
        }
        let r: String = match op {
            "try_recv_from" => show_ok(&on!(&s, x => x.try_recv_from(&mut mem))),
            "try_peek_from" => show_ok(&on!(&s, x => x.try_peek_from(&mut mem))),
            "recv_buf_from" => on!(&s, x => tokio::time::timeout(d, x.recv_buf_from(&mut v)).await)
                .map_or("pending".into(), |r| show_ok(&r)),
            "try_recv_buf_from" => show_ok(&on!(&s, x => x.try_recv_buf_from(&mut v))),
            "poll_recv" => {
                let mut b = ReadBuf::new(&mut mem);
                polled!(|x, cx| x.poll_recv(cx, &mut b)).map_or("pending".into(), |r| show(&r))
            }
            "poll_recv_from" => {
                let mut b = ReadBuf::new(&mut mem);
                polled!(|x, cx| x.poll_recv_from(cx, &mut b))
                    .map_or("pending".into(), |r| show_ok(&r))
            }
            "poll_peek" => {
                let mut b = ReadBuf::new(&mut mem);
                polled!(|x, cx| x.poll_peek(cx, &mut b)).map_or("pending".into(), |r| show(&r))
            }
            "poll_peek_from" => {
                let mut b = ReadBuf::new(&mut mem);
                polled!(|x, cx| x.poll_peek_from(cx, &mut b))
                    .map_or("pending".into(), |r| show_ok(&r))
            }
            "poll_peek_sender" => {
                polled!(|x, cx| x.poll_peek_sender(cx)).map_or("pending".into(), |r| show_ok(&r))
            }
            "poll_recv_ready" => {
                polled!(|x, cx| x.poll_recv_ready(cx)).map_or("pending".into(), |r| show(&r))
            }
            "poll_send_ready" => {
                polled!(|x, cx| x.poll_send_ready(cx)).map_or("pending".into(), |r| show(&r))
            }
            "poll_send" => {
                polled!(|x, cx| x.poll_send(cx, b"y")).map_or("pending".into(), |r| show(&r))
            }
            "poll_send_to other" => polled!(|x, cx| x.poll_send_to(cx, b"y", kaddr(v6, 10)))
                .map_or("pending".into(), |r| show(&r)),
            "try_send_to other" => show(&on!(&s, x => x.try_send_to(b"y", kaddr(v6, 10)))),
            "send" => show(&on!(&s, x => x.send(b"y").await)),
            "send_to other" => show(&on!(&s, x => x.send_to(b"y", kaddr(v6, 10)).await)),
            "ready(ERR)" => uready(&s, Interest::ERROR).await,
            "ready(W)" => uready(&s, Interest::WRITABLE).await,
            "ready(R|W|ERR)" => {
                uready(
                    &s,
                    Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
                )
                .await
            }
            _ => unreachable!(),
        };
        out.push((op, format!("{r}; then take_error {}", utake_error(&s))));
    }
    out
}

const REFUSED_OTHER_CALLS: &[&str] = &[
    "try_recv_from",
    "try_peek_from",
    "recv_buf_from",
    "try_recv_buf_from",
    "poll_recv_ready",
    "poll_send_ready",
    "poll_send",
    "poll_send_to other",
    "try_send_to other",
    "send",
    "send_to other",
    "ready(ERR)",
    "ready(W)",
    "ready(R|W|ERR)",
];

/// The `poll_*` receives: tokio's wait for READABLE alone (`poll_read_io`, Direction::Read),
/// which a pending ICMP error does not set (`datagram_poll` gives EPOLLERR|EPOLLOUT, no
/// EPOLLIN), where its async receives ask for `READABLE | ERROR`. synack departs on purpose:
/// its `poll_*` receives report the error at once, as its (and tokio's) async ones do,
/// rather than wait for a datagram that may never come with the error left in `take_error`.
const REFUSED_POLL_RECEIVES: &[&str] = &[
    "poll_recv",
    "poll_recv_from",
    "poll_peek",
    "poll_peek_from",
    "poll_peek_sender",
];

differential!(
    same_udp_refused_other_calls,
    "synack-d-r70uo",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_other_calls(net, kernel, false, REFUSED_OTHER_CALLS)
);
differential!(
    same_udp_refused_other_calls_v6,
    "synack-d-r70uo6",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_other_calls(net, kernel, true, REFUSED_OTHER_CALLS)
);
differential!(
    departs_udp_refused_poll_receives,
    "synack-d-r70up",
    setup | net | no_icmp_ratelimit(net),
    departs [
        "poll_recv", "poll_recv_from", "poll_peek", "poll_peek_from", "poll_peek_sender"
    ],
    |net, kernel| udp_refused_other_calls(net, kernel, false, REFUSED_POLL_RECEIVES)
);
differential!(
    departs_udp_refused_poll_receives_v6,
    "synack-d-r70up6",
    setup | net | no_icmp_ratelimit(net),
    departs [
        "poll_recv", "poll_recv_from", "poll_peek", "poll_peek_from", "poll_peek_sender"
    ],
    |net, kernel| udp_refused_other_calls(net, kernel, true, REFUSED_POLL_RECEIVES)
);

/// Datagrams past the largest (65508 bytes over IPv4, 65528 over IPv6, 65536, 200000)
/// through each send call, unconnected and connected: EMSGSIZE (the errno alone: its kind
/// departs, departs_errors_without_a_std_kind) from every one, and nothing reaches the
/// peer; a small send after goes through.
async fn udp_oversize_sends(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use std::future::poll_fn;
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    let c = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&c, x => x.connect(peer_addr).await).unwrap();
    let max = if v6 { 65527 } else { 65507 };
    for len in [max + 1, 65536, 200_000] {
        let data = vec![b'z'; len];
        let d = &data[..];
        let r = [
            show_errno(&on!(&u, x => x.send_to(d, peer_addr).await)),
            show_errno(&on!(&u, x => x.try_send_to(d, peer_addr))),
            show_errno(
                &on!(&u, x => within(5, poll_fn(|cx| x.poll_send_to(cx, d, peer_addr))).await),
            ),
            show_errno(&on!(&c, x => x.send(d).await)),
            show_errno(&on!(&c, x => x.try_send(d))),
            show_errno(&on!(&c, x => within(5, poll_fn(|cx| x.poll_send(cx, d))).await)),
            show_errno(&on!(&c, x => x.send_to(d, peer_addr).await)),
        ];
        out.push((
            "send_to, try_send_to, poll_send_to; send, try_send, poll_send, send_to connected",
            format!("{len}: {}", r.join(", ")),
        ));
    }
    out.push(("peer got", kpeer_recv(&p).await));
    out.push(("take_error", utake_error(&u)));
    out.push(("take_error connected", utake_error(&c)));
    out.push((
        "small send_to",
        show(&on!(&u, x => x.send_to(b"ok", peer_addr).await)),
    ));
    out.push(("small send", show(&on!(&c, x => x.send(b"ok2").await))));
    out.push(("peer got small", kpeer_recv(&p).await));
    out.push(("peer got small 2", kpeer_recv(&p).await));
    out
}

differential!(same_udp_oversize_sends, "synack-d-r70big", |net, kernel| {
    udp_oversize_sends(net, kernel, false, 13011)
});
differential!(
    same_udp_oversize_sends_v6,
    "synack-d-r70bg6",
    |net, kernel| udp_oversize_sends(net, kernel, true, 13011)
);

/// A membership step: its name, join (or leave), the group, the interface index.
type GroupStep = (&'static str, bool, &'static str, u32);

/// IPv6 group membership errors: a unicast, an IPv4-mapped and the unspecified address
/// (EINVAL to join), an interface index nobody has (ENODEV), leaving on an index other than
/// the join's or a group never joined (EADDRNOTAVAIL), joining twice (EADDRINUSE), and the
/// all-nodes groups.
const V6_GROUP_STEPS: &[GroupStep] = &[
    ("join unicast", true, "2001:2::9", 0),
    ("join own address", true, "2001:2::1", 0),
    ("join IPv4-mapped group", true, "::ffff:239.1.2.3", 0),
    ("join unspecified", true, "::", 0),
    ("join on index 9999", true, "ff0e::1:7", 9999),
    ("leave never joined", false, "ff0e::1:8", 0),
    ("join", true, "ff0e::1:7", 0),
    ("join again", true, "ff0e::1:7", 0),
    ("leave on index 9999", false, "ff0e::1:7", 9999),
    ("leave", false, "ff0e::1:7", 0),
    ("leave again", false, "ff0e::1:7", 0),
    ("join ff02::1", true, "ff02::1", 0),
    ("join ff01::1", true, "ff01::1", 0),
    ("join ff02::2", true, "ff02::2", 0),
    ("leave ff02::1", false, "ff02::1", 0),
    ("leave ff02::1 again", false, "ff02::1", 0),
];

/// Leaving addresses that are no group: Linux's `ipv6_sock_mc_drop` checks
/// `ipv6_addr_is_multicast` first (EINVAL).
const V6_LEAVE_NON_GROUPS: &[GroupStep] = &[
    ("leave unicast", false, "2001:2::9", 0),
    ("leave IPv4-mapped group", false, "::ffff:239.1.2.3", 0),
    ("leave unspecified", false, "::", 0),
];

/// The membership `steps` on a fresh IPv6 socket, each one's outcome.
async fn udp_v6_group_errors(net: &Net, kernel: bool, steps: &[GroupStep]) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(true)).await.unwrap();
    for &(what, join, group, index) in steps {
        let group: std::net::Ipv6Addr = group.parse().unwrap();
        let r = match join {
            true => on!(&s, x => x.join_multicast_v6(&group, index)),
            false => on!(&s, x => x.leave_multicast_v6(&group, index)),
        };
        out.push((what, show(&r)));
    }
    out
}

differential!(
    same_udp_v6_group_errors,
    "synack-d-r70g6e",
    |net, kernel| udp_v6_group_errors(net, kernel, V6_GROUP_STEPS)
);
differential!(
    same_udp_v6_leave_non_groups,
    "synack-d-r70g6l",
    |net, kernel| udp_v6_group_errors(net, kernel, V6_LEAVE_NON_GROUPS)
);

/// How many groups one socket may join: 21 groups, and after the 21st fails or not, a
/// leave and another join.
async fn udp_group_count(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let any4 = match own(kernel, false, 0).ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    let join = |i: u16| -> io::Result<()> {
        match v6 {
            false => {
                on!(&s, x => x.join_multicast_v4(std::net::Ipv4Addr::new(239, 1, 3, i as u8), any4))
            }
            true => {
                on!(&s, x => x.join_multicast_v6(&std::net::Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 3, i), 0))
            }
        }
    };
    let mut res = Vec::new();
    // The errno alone: ENOBUFS's kind departs (departs_errors_without_a_std_kind).
    for i in 1..=21u16 {
        res.push(show_errno(&join(i)));
    }
    // Runs of one outcome: "20 x Ok(()), 1 x Err(..)".
    let mut runs: Vec<(String, usize)> = Vec::new();
    for r in res {
        match runs.last_mut() {
            Some((last, n)) if *last == r => *n += 1,
            _ => runs.push((r, 1)),
        }
    }
    out.push((
        "21 joins",
        runs.iter()
            .map(|(r, n)| format!("{n} x {r}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    let leave = match v6 {
        false => on!(&s, x => x.leave_multicast_v4(std::net::Ipv4Addr::new(239, 1, 3, 1), any4)),
        true => {
            on!(&s, x => x.leave_multicast_v6(&std::net::Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 3, 1), 0))
        }
    };
    out.push(("leave the first", show_errno(&leave)));
    out.push(("join a 22nd", show_errno(&join(22))));
    out.push(("join a 23rd", show_errno(&join(23))));
    out
}

differential!(
    same_udp_group_count_limit,
    "synack-d-r70gc",
    |net, kernel| udp_group_count(net, kernel, false)
);
differential!(
    same_udp_group_count_limit_v6,
    "synack-d-r70gc6",
    |net, kernel| udp_group_count(net, kernel, true)
);

/// An IPv6 socket bound to its IPv4-mapped address sending to IPv4 broadcast addresses in
/// IPv4-mapped form: EACCES without SO_BROADCAST (Linux's `udp_sendmsg`, which
/// `udpv6_sendmsg` hands mapped destinations to), sent with it; and a connect likewise.
async fn udp_mapped_broadcast(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let p = net
        .kernel_udp(format!("0.0.0.0:{port}").parse().unwrap())
        .unwrap();
    let at = mapped(own(kernel, false, 0));
    let s = ubind(net, kernel, at).await.unwrap();
    let link: SocketAddr = format!("[::ffff:198.18.0.255]:{port}").parse().unwrap();
    let all: SocketAddr = format!("[::ffff:255.255.255.255]:{port}").parse().unwrap();
    out.push(("broadcast()", show(&on!(&s, x => x.broadcast()))));
    out.push((
        "send_to link broadcast",
        show(&on!(&s, x => x.send_to(b"a", link).await)),
    ));
    out.push((
        "send_to 255.255.255.255",
        show(&on!(&s, x => x.send_to(b"b", all).await)),
    ));
    out.push((
        "try_send_to link broadcast",
        show(&on!(&s, x => x.try_send_to(b"c", link))),
    ));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push(("set_broadcast", show(&on!(&s, x => x.set_broadcast(true)))));
    out.push((
        "send_to link broadcast allowed",
        show(&on!(&s, x => x.send_to(b"d", link).await)),
    ));
    out.push(("peer got d", kpeer_recv(&p).await));
    out.push((
        "send_to 255.255.255.255 allowed",
        show(&on!(&s, x => x.send_to(b"e", all).await)),
    ));
    out.push(("peer got e", kpeer_recv(&p).await));
    let c = ubind(net, kernel, at).await.unwrap();
    out.push((
        "connect link broadcast",
        show(&on!(&c, x => x.connect(link).await)),
    ));
    out.push(("peer_addr after", show_ok(&on!(&c, x => x.peer_addr()))));
    out.push(("take_error", utake_error(&s)));
    out
}

differential!(
    same_udp_mapped_broadcast_needs_set_broadcast,
    "synack-d-r70mb",
    |net, kernel| udp_mapped_broadcast(net, kernel, 13021)
);

/// The subject's own address on a port nobody has: a TCP connect refused, and a connected
/// UDP socket's send answered by a port unreachable from its own host (ECONNREFUSED to the
/// next receive and `take_error`), as the kernel's loopback does.
async fn own_closed_port(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let closed = own(kernel, v6, 13999);
    out.push(("TCP connect", connect_outcome(net, kernel, closed).await));
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push(("UDP connect", show(&on!(&s, x => x.connect(closed).await))));
    out.push(("UDP send", show(&on!(&s, x => x.send(b"x").await))));
    settle().await;
    out.push((
        "UDP ready(R|ERR)",
        uready(&s, Interest::READABLE | Interest::ERROR).await,
    ));
    out.push(("UDP recv", urecv(&s, 10).await));
    out.push(("UDP send again", show(&on!(&s, x => x.send(b"y").await))));
    settle().await;
    out.push(("UDP take_error", utake_error(&s)));
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push((
        "unconnected UDP send_to",
        show(&on!(&u, x => x.send_to(b"x", closed).await)),
    ));
    settle().await;
    out.push(("unconnected UDP take_error", utake_error(&u)));
    out
}

differential!(
    same_own_closed_port,
    "synack-d-r70oc",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| own_closed_port(net, kernel, false)
);
differential!(
    same_own_closed_port_v6,
    "synack-d-r70oc6",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| own_closed_port(net, kernel, true)
);

/// Zero-length reads with data waiting (`try_read`, `read`, `peek`, `try_read_vectored`
/// with no slices and with an empty one, `try_read_buf` into a full `Vec`'s view): none
/// takes a byte; then after the peer's FIN.
async fn tcp_empty_reads_with_data(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"hello").await.unwrap();
    settle().await;
    for round in ["data waiting", "after FIN"] {
        out.push(("round", round.to_string()));
        out.push(("try_read empty", try_read(&s, 0)));
        out.push(("read empty", read_once(&mut s, 0).await));
        out.push(("peek empty", peek_once(&s, 0).await));
        out.push((
            "try_read_vectored no slices",
            show(&on!(&s, x => x.try_read_vectored(&mut []))),
        ));
        let mut e = [0u8; 0];
        out.push((
            "try_read_vectored one empty slice",
            show(&on!(&s, x => x.try_read_vectored(&mut [io::IoSliceMut::new(&mut e)]))),
        ));
        out.push(("ready(R)", ready_now(&s, Interest::READABLE).await));
        out.push(("read", read_once(&mut s, 3).await));
        out.push(("read rest", read_once(&mut s, 10).await));
        if round == "data waiting" {
            p.write_all(b"more").await.unwrap();
            p.shutdown().await.unwrap();
            settle().await;
        }
    }
    out
}

differential!(
    same_tcp_empty_reads_with_data_waiting,
    "synack-d-r70er",
    |net, kernel| tcp_empty_reads_with_data(net, kernel, false, 13031)
);
differential!(
    same_tcp_empty_reads_with_data_waiting_v6,
    "synack-d-r70er6",
    |net, kernel| tcp_empty_reads_with_data(net, kernel, true, 13031)
);

/// `ready(ERROR)` alone (and with the others) through a close without error: after the
/// peer's FIN, our shutdown, and both; no error ever holds.
async fn tcp_error_interest_through_close(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    let all = Interest::READABLE | Interest::WRITABLE | Interest::ERROR;
    p.shutdown().await.unwrap();
    settle().await;
    out.push(("ready(ERR) after FIN", ready_now(&s, Interest::ERROR).await));
    out.push(("ready(all) after FIN", ready_now(&s, all).await));
    out.push(("shutdown", shutdown(&mut s).await));
    out.push(("peer sees", peer_sees(&mut p, 500).await));
    settle().await;
    out.push(("ready(ERR) closed", ready_now(&s, Interest::ERROR).await));
    out.push(("ready(all) closed", ready_now(&s, all).await));
    out.push((
        "ready(W|ERR) closed",
        ready_now(&s, Interest::WRITABLE | Interest::ERROR).await,
    ));
    out.push(("take_error closed", take_error(&s)));
    out.push(("write closed", write_once(&mut s, b"x").await));
    out.push((
        "ready(ERR) after the write",
        ready_now(&s, Interest::ERROR).await,
    ));
    out.push(("take_error after the write", take_error(&s)));
    out
}

differential!(
    same_tcp_error_interest_through_close,
    "synack-d-r70ei",
    |net, kernel| tcp_error_interest_through_close(net, kernel, false, 13041)
);
differential!(
    same_tcp_error_interest_through_close_v6,
    "synack-d-r70ei6",
    |net, kernel| tcp_error_interest_through_close(net, kernel, true, 13041)
);

/// IPv4 group membership errors on an IPv4 socket: addresses that are no group (EINVAL
/// to join), leaving one never joined or a unicast address, or on an interface other than
/// the join's (EADDRNOTAVAIL), joining twice (EADDRINUSE); a leave on the unspecified
/// interface finds the join's through the group's route (`group_route`: without one,
/// Linux's `ip_mc_leave_group` says ENODEV).
async fn udp_v4_group_errors(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(false)).await.unwrap();
    let me = match own(kernel, false, 0).ip() {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => unreachable!(),
    };
    let any = std::net::Ipv4Addr::UNSPECIFIED;
    let ip = |a: &str| a.parse::<std::net::Ipv4Addr>().unwrap();
    let steps: Vec<(&'static str, bool, std::net::Ipv4Addr, std::net::Ipv4Addr)> = vec![
        ("join unicast", true, ip("198.18.0.9"), me),
        ("join own address", true, me, me),
        ("join 0.0.0.0", true, any, me),
        ("join 255.255.255.255", true, ip("255.255.255.255"), me),
        ("join 198.18.0.255", true, ip("198.18.0.255"), me),
        ("leave never joined", false, ip("239.1.2.8"), me),
        ("leave unicast", false, ip("198.18.0.9"), me),
        ("join", true, ip("239.1.2.7"), me),
        ("join again", true, ip("239.1.2.7"), me),
        (
            "leave on 198.18.0.77",
            false,
            ip("239.1.2.7"),
            ip("198.18.0.77"),
        ),
        ("leave on 0.0.0.0", false, ip("239.1.2.7"), any),
        ("leave again", false, ip("239.1.2.7"), me),
        ("join 224.0.0.1", true, ip("224.0.0.1"), me),
        ("join 224.0.0.1 again", true, ip("224.0.0.1"), me),
        ("leave 224.0.0.1", false, ip("224.0.0.1"), me),
    ];
    for (what, join, group, at) in steps {
        let r = match join {
            true => on!(&s, x => x.join_multicast_v4(group, at)),
            false => on!(&s, x => x.leave_multicast_v4(group, at)),
        };
        out.push((what, show(&r)));
    }
    out
}

differential!(
    same_udp_v4_group_errors,
    "synack-d-r70g4e",
    setup | net | group_route(net),
    |net, kernel| udp_v4_group_errors(net, kernel)
);

/// A connected UDP socket with a datagram from its peer waiting when a port unreachable
/// comes back (the peer gone): Linux's `__skb_try_recv_datagram` reports `sk_err` before
/// any queued datagram, to a receive or a peek alike (either takes it), and the datagram
/// comes next. `first` is the call made first.
async fn udp_refused_with_data(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    first: &str,
) -> Outcomes {
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&s, x => x.connect(peer_addr).await).unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    p.send_to(b"queued", me).await.unwrap();
    drop(p);
    settle().await;
    out.push((
        "send to the gone peer",
        show(&on!(&s, x => x.send(b"x").await)),
    ));
    settle().await;
    out.push((
        "ready(R|W|ERR)",
        uready(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await,
    ));
    let mut b = [0u8; 20];
    let r = match first {
        "recv" => urecv(&s, 20).await,
        "peek" => {
            match on!(&s, x => tokio::time::timeout(Duration::from_millis(500), x.peek(&mut b)).await)
            {
                Err(_) => "pending".into(),
                Ok(r) => show(&r),
            }
        }
        "try_recv" => show(&on!(&s, x => x.try_recv(&mut b))),
        "recv_from" => urecv_from(&s, 20, peer_addr).await,
        "take_error" => utake_error(&s),
        _ => unreachable!(),
    };
    out.push(("first", format!("{first}: {r}")));
    out.push(("recv", urecv(&s, 20).await));
    out.push(("recv again", urecv(&s, 20).await));
    out.push(("take_error", utake_error(&s)));
    out
}

differential!(
    same_udp_refused_with_data_recv_first,
    "synack-d-r70rd1",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_with_data(net, kernel, false, 13051, "recv")
);
differential!(
    same_udp_refused_with_data_peek_first,
    "synack-d-r70rd2",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_with_data(net, kernel, false, 13051, "peek")
);
differential!(
    same_udp_refused_with_data_try_recv_first,
    "synack-d-r70rd3",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_with_data(net, kernel, false, 13051, "try_recv")
);
differential!(
    same_udp_refused_with_data_recv_from_first_v6,
    "synack-d-r70rd4",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_with_data(net, kernel, true, 13051, "recv_from")
);
differential!(
    same_udp_refused_with_data_take_error_first_v6,
    "synack-d-r70rd5",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_refused_with_data(net, kernel, true, 13051, "take_error")
);

/// An IPv6 socket's IPv4-mapped peer on a closed port: the ICMP port unreachable (IPv4)
/// reaches the IPv6 socket, a connected UDP one as ECONNREFUSED (Linux's `udp_err` finds
/// the dual-stack socket by its IPv4 lookup), and a TCP connect is refused by the RST.
async fn mapped_refused(net: &Net, kernel: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let closed = mapped(kaddr(false, 9));
    out.push(("TCP connect", connect_outcome(net, kernel, closed).await));
    let s = ubind(net, kernel, unspec(true)).await.unwrap();
    out.push(("UDP connect", show(&on!(&s, x => x.connect(closed).await))));
    out.push(("UDP send", show(&on!(&s, x => x.send(b"x").await))));
    settle().await;
    out.push((
        "UDP ready(R|W|ERR)",
        uready(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await,
    ));
    out.push(("UDP recv", urecv(&s, 10).await));
    out.push(("UDP send again", show(&on!(&s, x => x.send(b"y").await))));
    settle().await;
    out.push(("UDP take_error", utake_error(&s)));
    out
}

differential!(
    same_ipv4_mapped_peer_refused,
    "synack-d-r70mr",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| mapped_refused(net, kernel)
);

/// `ready(Interest::PRIORITY)` with no urgent data: tokio's `Ready::from_interest` counts
/// READ_CLOSED as part of PRIORITY, so once the peer's FIN (or RST) is in, the call is ready
/// with RC alone; before it, it waits. (An urgent byte, which only synack reports, is left
/// out: CONFORMANCE.md's "Left".)
async fn tcp_priority_interest(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
    end: &str,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    out.push(("ready(PRI) fresh", ready_now(&s, Interest::PRIORITY).await));
    p.write_all(b"data").await.unwrap();
    settle().await;
    out.push((
        "ready(PRI) with data waiting",
        ready_now(&s, Interest::PRIORITY).await,
    ));
    out.push(("shutdown", shutdown(&mut s).await));
    settle().await;
    out.push((
        "ready(PRI) after own shutdown",
        ready_now(&s, Interest::PRIORITY).await,
    ));
    match end {
        "fin" => p.shutdown().await.unwrap(),
        _ => {
            p.set_zero_linger().unwrap();
            drop(p);
        }
    }
    settle().await;
    out.push((
        "ready(PRI) after the peer's end",
        ready_now(&s, Interest::PRIORITY).await,
    ));
    out.push((
        "ready(PRI|W) after the peer's end",
        ready_now(&s, Interest::PRIORITY | Interest::WRITABLE).await,
    ));
    out.push(("read", read_once(&mut s, 10).await));
    out.push(("read again", read_once(&mut s, 10).await));
    out.push((
        "ready(PRI) at the end",
        ready_now(&s, Interest::PRIORITY).await,
    ));
    out
}

differential!(
    same_tcp_priority_interest_at_peer_fin,
    "synack-d-r70pf",
    |net, kernel| tcp_priority_interest(net, kernel, false, 13061, "fin")
);
differential!(
    same_tcp_priority_interest_at_peer_rst_v6,
    "synack-d-r70pr6",
    |net, kernel| tcp_priority_interest(net, kernel, true, 13061, "rst")
);

/// `ready(Interest::PRIORITY)` on UDP sockets: nothing ever holds (no urgent data, no
/// READ_CLOSED), with datagrams waiting or after a port unreachable.
async fn udp_priority_interest(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    out.push(("ready(PRI) fresh", uready(&s, Interest::PRIORITY).await));
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    p.send_to(b"d", me).await.unwrap();
    settle().await;
    out.push((
        "ready(PRI) with a datagram",
        uready(&s, Interest::PRIORITY).await,
    ));
    out.push((
        "ready(PRI|R)",
        uready(&s, Interest::PRIORITY | Interest::READABLE).await,
    ));
    on!(&s, x => x.connect(kaddr(v6, 9)).await).unwrap();
    on!(&s, x => x.send(b"x").await).unwrap();
    settle().await;
    out.push((
        "ready(PRI) after a port unreachable",
        uready(&s, Interest::PRIORITY).await,
    ));
    out.push(("take_error", utake_error(&s)));
    out
}

differential!(
    same_udp_priority_interest,
    "synack-d-r70up4",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_priority_interest(net, kernel, false, 13071)
);

/// Peeks and receives with no room (an empty slice, a `ReadBuf` of 0 bytes), in each of the
/// `try_`, async and `poll_` forms, over "hello", an empty datagram and "x": a peek takes
/// nothing and leaves the datagram; a receive into no room takes the datagram whole (Linux's
/// `udp_recvmsg` truncates it to nothing).
async fn udp_no_room(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    use std::future::poll_fn;
    use tokio::io::ReadBuf;
    let mut out = Outcomes::new();
    let peer_addr = kaddr(v6, port);
    let p = net.kernel_udp(peer_addr).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    for d in [&b"hello"[..], b"", b"x", b"last"] {
        p.send_to(d, me).await.unwrap();
    }
    settle().await;
    let from = |r: io::Result<(usize, SocketAddr)>| {
        format!(
            "{:?}",
            r.map(|(n, a)| (n, a == peer_addr)).map_err(|e| e.kind())
        )
    };
    let sender = |r: io::Result<SocketAddr>| {
        format!("{:?}", r.map(|a| a == peer_addr).map_err(|e| e.kind()))
    };
    let mut z = [0u8; 0];
    out.push((
        "peek_from no room",
        from(on!(&s, x => within(5, x.peek_from(&mut z)).await)),
    ));
    out.push((
        "try_peek_from no room",
        from(on!(&s, x => x.try_peek_from(&mut z))),
    ));
    out.push(("try_peek no room", show(&on!(&s, x => x.try_peek(&mut z)))));
    out.push((
        "peek no room",
        show(&on!(&s, x => within(5, x.peek(&mut z)).await)),
    ));
    let mut b = ReadBuf::new(&mut z);
    let r = on!(&s, x => within(5, poll_fn(|cx| x.poll_peek_from(cx, &mut b))).await);
    out.push((
        "poll_peek_from no room",
        format!("{} {}", sender(r), b.filled().len()),
    ));
    let mut b = ReadBuf::new(&mut z);
    let r = on!(&s, x => within(5, poll_fn(|cx| x.poll_peek(cx, &mut b))).await);
    out.push((
        "poll_peek no room",
        format!("{} {}", show(&r), b.filled().len()),
    ));
    let r = on!(&s, x => within(5, poll_fn(|cx| x.poll_peek_sender(cx))).await);
    out.push(("poll_peek_sender", sender(r)));
    out.push(("recv_from 2", urecv_from(&s, 2, peer_addr).await));
    out.push((
        "peek_sender at the empty one",
        sender(on!(&s, x => within(5, x.peek_sender()).await)),
    ));
    let mut room = [0u8; 10];
    let mut b = ReadBuf::new(&mut room);
    let r = on!(&s, x => within(5, poll_fn(|cx| x.poll_peek_from(cx, &mut b))).await);
    out.push((
        "poll_peek_from the empty one",
        format!("{} {}", sender(r), b.filled().len()),
    ));
    let mut b = ReadBuf::new(&mut z);
    let r = on!(&s, x => within(5, poll_fn(|cx| x.poll_recv_from(cx, &mut b))).await);
    out.push((
        "poll_recv_from no room, the empty one",
        format!("{} {}", sender(r), b.filled().len()),
    ));
    out.push((
        "try_peek_sender at x",
        sender(on!(&s, x => x.try_peek_sender())),
    ));
    let mut b = ReadBuf::new(&mut z);
    let r = on!(&s, x => within(5, poll_fn(|cx| x.poll_recv(cx, &mut b))).await);
    out.push((
        "poll_recv no room, x",
        format!("{} {}", show(&r), b.filled().len()),
    ));
    out.push((
        "try_recv no room, last",
        show(&on!(&s, x => x.try_recv(&mut z))),
    ));
    out.push((
        "try_recv_from none left",
        from(on!(&s, x => x.try_recv_from(&mut z))),
    ));
    let mut b = ReadBuf::new(&mut z);
    let r = on!(&s, x => tokio::time::timeout(Duration::from_millis(300), poll_fn(|cx| x.poll_peek(cx, &mut b))).await);
    out.push((
        "poll_peek none left",
        r.map_or("pending".into(), |r| show(&r)),
    ));
    out
}

differential!(
    same_udp_peeks_and_receives_with_no_room,
    "synack-d-r70nr",
    |net, kernel| udp_no_room(net, kernel, false, 13081)
);
differential!(
    same_udp_peeks_and_receives_with_no_room_v6,
    "synack-d-r70nr6",
    |net, kernel| udp_no_room(net, kernel, true, 13081)
);

/// Read readiness once every byte or datagram was taken by a read that filled its buffer
/// (tokio clears readiness only on WouldBlock, or after a short stream read): a stream's
/// `read` and `try_read` of exactly what waits, a UDP socket's `recv_from` and `try_recv`
/// of its only datagram; then `ready(R)`, a `try_` read (WouldBlock) and `ready(R)` again.
/// synack departs on purpose: its readiness is the buffer's, never stale, so `ready(R)`
/// waits for more (a spurious wake-up costs tokio's users only a WouldBlock, but it is not
/// worth copying).
async fn read_readiness_after_exact_reads(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    p.write_all(b"abcd").await.unwrap();
    settle().await;
    out.push(("TCP read of exactly 4", read_once(&mut s, 4).await));
    out.push(("TCP ready(R)", ready_now(&s, Interest::READABLE).await));
    out.push(("TCP try_read", try_read(&s, 10)));
    out.push((
        "TCP ready(R) after",
        ready_now(&s, Interest::READABLE).await,
    ));
    p.write_all(b"efgh").await.unwrap();
    settle().await;
    out.push(("TCP try_read of exactly 4", try_read(&s, 4)));
    out.push((
        "TCP ready(R) again",
        ready_now(&s, Interest::READABLE).await,
    ));
    out.push(("TCP try_read again", try_read(&s, 10)));
    out.push((
        "TCP ready(R) again after",
        ready_now(&s, Interest::READABLE).await,
    ));

    let pa = kaddr(v6, port + 100);
    let k = net.kernel_udp(pa).unwrap();
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&u, x => x.local_addr()).unwrap().port(),
    );
    k.send_to(b"one", me).await.unwrap();
    settle().await;
    out.push(("UDP recv_from the only one", urecv_from(&u, 10, pa).await));
    out.push(("UDP ready(R)", uready(&u, Interest::READABLE).await));
    let mut b = [0u8; 10];
    out.push(("UDP try_recv", show(&on!(&u, x => x.try_recv(&mut b)))));
    out.push(("UDP ready(R) after", uready(&u, Interest::READABLE).await));
    k.send_to(b"two", me).await.unwrap();
    settle().await;
    out.push((
        "UDP try_recv the only one",
        show(&on!(&u, x => x.try_recv(&mut b))),
    ));
    out.push(("UDP ready(R) again", uready(&u, Interest::READABLE).await));
    out
}

differential!(
    departs_read_readiness_after_exact_reads,
    "synack-d-r70xr",
    departs [
        "TCP ready(R)",
        "TCP ready(R) again",
        "UDP ready(R)",
        "UDP ready(R) again"
    ],
    |net, kernel| read_readiness_after_exact_reads(net, kernel, false, 13091)
);

/// A scope id and a flow label given with a global IPv6 address: Linux heeds a scope id
/// only where the address needs one (`__ipv6_addr_needs_scope_id`: link-local, multicast of
/// a small scope), and sends no flow label unless IPV6_FLOWINFO_SEND is on, so both are
/// ignored: binds, connects and sends succeed, and the addresses read back carry neither.
async fn v6_scope_on_global(net: &Net, kernel: bool, port: u16) -> Outcomes {
    use std::net::SocketAddrV6;
    let mut out = Outcomes::new();
    let with = |a: SocketAddr| match a {
        SocketAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(*a.ip(), a.port(), 0x12345, 99)),
        v4 => v4,
    };
    let extras = |r: io::Result<SocketAddr>| match r {
        Ok(SocketAddr::V6(a)) => format!("flowinfo {:#x}, scope {}", a.flowinfo(), a.scope_id()),
        Ok(a) => format!("{a}"),
        Err(e) => show_err(&e),
    };
    let l = klisten(net, kaddr(true, port)).unwrap();
    let c = within(10, connect(net, kernel, with(kaddr(true, port)))).await;
    out.push(("TCP connect", show_ok(&c)));
    if let Ok(c) = &c {
        out.push(("TCP peer_addr", show(&on!(c, x => x.peer_addr()))));
        out.push(("TCP local_addr", extras(on!(c, x => x.local_addr()))));
        let (a, from) = within(10, l.accept()).await.unwrap();
        out.push((
            "the peer sees the subject's address",
            format!("{}", from.ip() == own(kernel, true, 0).ip()),
        ));
        drop(a);
    }
    let lst = listen(net, kernel, with(own(kernel, true, port + 1))).await;
    out.push(("TCP listen", show_ok(&lst)));
    if let Ok(lst) = &lst {
        out.push(("TCP listener local_addr", extras(Ok(lst_addr(lst)))));
    }
    let pa = kaddr(true, port + 2);
    let p = net.kernel_udp(pa).unwrap();
    let u = ubind(net, kernel, with(own(kernel, true, 0))).await;
    out.push(("UDP bind", show_ok(&u)));
    let u = u.unwrap();
    out.push(("UDP local_addr", extras(on!(&u, x => x.local_addr()))));
    out.push((
        "UDP send_to",
        show(&on!(&u, x => x.send_to(b"to", with(pa)).await)),
    ));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push((
        "UDP connect",
        show(&on!(&u, x => x.connect(with(pa)).await)),
    ));
    out.push(("UDP peer_addr", show(&on!(&u, x => x.peer_addr()))));
    out.push(("UDP send", show(&on!(&u, x => x.send(b"conn").await))));
    out.push(("peer got after connect", kpeer_recv(&p).await));
    let me = on!(&u, x => x.local_addr()).unwrap();
    p.send_to(b"back", me).await.unwrap();
    let mut b = [0u8; 10];
    let r = on!(&u, x => within(5, x.recv_from(&mut b)).await);
    out.push(("UDP recv_from: the sender", show(&r.map(|(_, a)| a))));
    out
}

differential!(
    same_ipv6_scope_and_flow_label_on_global_addresses,
    "synack-d-r70sc",
    |net, kernel| v6_scope_on_global(net, kernel, 13101)
);

/// A connected UDP socket's ERROR readiness through its port unreachable: ready, taken by
/// `take_error`, then a receive that finds nothing. synack departs on purpose, as
/// `departs_tcp_error_readiness_after_taken` does for TCP: once taken, the error is not
/// reported as ready again (tokio's cached ERR lasts until a receive's WouldBlock).
async fn udp_error_readiness_after_taken(net: &Net, kernel: bool, v6: bool) -> Outcomes {
    let mut out = Outcomes::new();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&s, x => x.connect(kaddr(v6, 9)).await).unwrap();
    on!(&s, x => x.send(b"x").await).unwrap();
    settle().await;
    out.push(("ready(ERR)", uready(&s, Interest::ERROR).await));
    out.push(("take_error", utake_error(&s)));
    out.push((
        "ready(ERR) after take_error",
        uready(&s, Interest::ERROR).await,
    ));
    out.push(("recv", urecv(&s, 10).await));
    out.push((
        "ready(ERR) after the recv",
        uready(&s, Interest::ERROR).await,
    ));
    out
}

differential!(
    departs_udp_error_readiness_after_the_error_is_taken,
    "synack-d-r70ue",
    setup | net | no_icmp_ratelimit(net),
    departs["ready(ERR) after take_error"],
    |net, kernel| udp_error_readiness_after_taken(net, kernel, false)
);

/// Address lists given to a UDP socket (tokio's `ToSocketAddrs`): `connect` takes the first
/// that connects (an IPv6 address on an IPv4 socket fails, EAFNOSUPPORT) and fails with the
/// last error, or InvalidInput for none; `send_to` sends to the first address only; a
/// string and an `(IpAddr, u16)` are taken too.
async fn udp_address_lists(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let pa = kaddr(false, port);
    let p = net.kernel_udp(pa).unwrap();
    let v6a = kaddr(true, port);
    let v6b = kaddr(true, port + 1);
    let s = ubind(net, kernel, unspec(false)).await.unwrap();
    let none: &[SocketAddr] = &[];
    out.push((
        "send_to [v6, v4]",
        show_errno(&on!(&s, x => x.send_to(b"a", &[v6a, pa][..]).await)),
    ));
    out.push((
        "send_to []",
        show(&on!(&s, x => x.send_to(b"b", none).await).map_err(|e| io::Error::from(e.kind()))),
    ));
    out.push((
        "send_to a string",
        show(&on!(&s, x => x.send_to(b"c", pa.to_string()).await)),
    ));
    out.push((
        "send_to (IpAddr, u16)",
        show(&on!(&s, x => x.send_to(b"d", (pa.ip(), pa.port())).await)),
    ));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push(("peer got 2", kpeer_recv(&p).await));
    out.push(("peer got 3", kpeer_recv(&p).await));
    out.push((
        "connect []",
        show(&on!(&s, x => x.connect(none).await).map_err(|e| io::Error::from(e.kind()))),
    ));
    out.push((
        "connect [v6, v6]",
        show_errno(&on!(&s, x => x.connect(&[v6a, v6b][..]).await)),
    ));
    out.push((
        "peer_addr after",
        show(&on!(&s, x => x.peer_addr()).map(|a| a == pa)),
    ));
    out.push((
        "connect [v6, v4]",
        show(&on!(&s, x => x.connect(&[v6a, pa][..]).await)),
    ));
    out.push((
        "peer_addr",
        show(&on!(&s, x => x.peer_addr()).map(|a| a == pa)),
    ));
    out.push(("send", show(&on!(&s, x => x.send(b"e").await))));
    out.push(("peer got e", kpeer_recv(&p).await));
    out
}

differential!(same_udp_address_lists, "synack-d-r70al", |net, kernel| {
    udp_address_lists(net, kernel, 13111)
});

/// A `try_write`, a `write` and a vectored write of 4 MiB on a fresh connection (the peer
/// not reading): each takes a part, what the send buffer has room for (Linux's
/// `tcp_sendmsg` copies what fits and returns that), neither nothing nor all.
async fn tcp_partial_writes(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let big = vec![7u8; 4 << 20];
    let part = |r: io::Result<usize>| match r {
        Ok(n) if n > 0 && n < big.len() => "a part".to_string(),
        r => show(&r),
    };
    let (s, _p) = pair(net, kernel, v6, port).await;
    out.push(("try_write 4 MiB", part(on!(&s, x => x.try_write(&big)))));
    let (mut s, _p) = pair(net, kernel, v6, port + 1).await;
    out.push((
        "write 4 MiB",
        part(on!(&mut s, x => within(5, x.write(&big)).await)),
    ));
    let (s, _p) = pair(net, kernel, v6, port + 2).await;
    let halves = [
        io::IoSlice::new(&big[..2 << 20]),
        io::IoSlice::new(&big[2 << 20..]),
    ];
    out.push((
        "try_write_vectored 2 x 2 MiB",
        part(on!(&s, x => x.try_write_vectored(&halves))),
    ));
    out
}

differential!(same_tcp_partial_writes, "synack-d-r70pw", |net, kernel| {
    tcp_partial_writes(net, kernel, false, 13121)
});

/// Writes of nothing once the send buffer is full (the peer not reading; filled until
/// WouldBlock, then again after a pause): tokio's `try_` calls look at the cached readiness
/// first, which the WouldBlock cleared, so they say WouldBlock without asking the socket, and
/// `write` waits; synack's answer for each.
async fn tcp_empty_writes_when_full(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, _p) = pair(net, kernel, v6, port).await;
    let chunk = vec![7u8; 65536];
    for round in 0..2 {
        let mut ended = "never".to_string();
        for i in 0..4000 {
            match on!(&s, x => x.try_write(&chunk)) {
                Ok(_) => {}
                Err(e) => {
                    ended = show_err(&e);
                    break;
                }
            }
            if i % 16 == 15 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        out.push(("fill", format!("round {round}: {ended}")));
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    out.push(("try_write nothing", show(&on!(&s, x => x.try_write(b"")))));
    out.push((
        "try_write_vectored no slices",
        show(&on!(&s, x => x.try_write_vectored(&[]))),
    ));
    out.push((
        "try_write_vectored one empty slice",
        show(&on!(&s, x => x.try_write_vectored(&[io::IoSlice::new(b"")]))),
    ));
    out.push(("write nothing", write_once(&mut s, b"").await));
    out.push(("ready(W)", ready_now(&s, Interest::WRITABLE).await));
    out
}

differential!(
    same_tcp_empty_writes_when_the_send_buffer_is_full,
    "synack-d-r70ew",
    |net, kernel| tcp_empty_writes_when_full(net, kernel, false, 13131)
);

/// Receives into no room while nothing waits: a stream's `peek` and `poll_peek`; a UDP socket's `try_recv`, `try_recv_from`, `try_peek`,
/// `recv`, `peek_from` and `poll_recv`. tokio waits for read readiness (or says
/// WouldBlock) before it asks the socket, so none returns 0 for "nothing".
async fn empty_receives_with_nothing_waiting(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
) -> Outcomes {
    use std::future::poll_fn;
    use tokio::io::ReadBuf;
    let mut out = Outcomes::new();
    let d = Duration::from_millis(300);
    let pend = |r: Result<io::Result<String>, tokio::time::error::Elapsed>| match r {
        Err(_) => "pending".to_string(),
        Ok(Ok(v)) => format!("Ok({v})"),
        Ok(Err(e)) => show_err(&e),
    };
    let (s, _p) = pair(net, kernel, v6, port).await;
    settle().await;
    let mut z = [0u8; 0];
    out.push((
        "TCP peek no room",
        pend(
            on!(&s, x => tokio::time::timeout(d, x.peek(&mut z)).await)
                .map(|r| r.map(|n| n.to_string())),
        ),
    ));
    let mut b = ReadBuf::new(&mut z);
    out.push((
        "TCP poll_peek no room",
        pend(
            on!(&s, x => tokio::time::timeout(d, poll_fn(|cx| x.poll_peek(cx, &mut b))).await)
                .map(|r| r.map(|n| n.to_string())),
        ),
    ));
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    settle().await;
    out.push((
        "UDP try_recv no room",
        show(&on!(&u, x => x.try_recv(&mut z))),
    ));
    out.push((
        "UDP try_recv_from no room",
        show_ok(&on!(&u, x => x.try_recv_from(&mut z))),
    ));
    out.push((
        "UDP try_peek no room",
        show(&on!(&u, x => x.try_peek(&mut z))),
    ));
    out.push((
        "UDP recv no room",
        pend(
            on!(&u, x => tokio::time::timeout(d, x.recv(&mut z)).await)
                .map(|r| r.map(|n| n.to_string())),
        ),
    ));
    out.push((
        "UDP peek_from no room",
        pend(
            on!(&u, x => tokio::time::timeout(d, x.peek_from(&mut z)).await)
                .map(|r| r.map(|(n, _)| n.to_string())),
        ),
    ));
    let mut b = ReadBuf::new(&mut z);
    out.push((
        "UDP poll_recv no room",
        pend(
            on!(&u, x => tokio::time::timeout(d, poll_fn(|cx| x.poll_recv(cx, &mut b))).await)
                .map(|r| r.map(|()| String::new())),
        ),
    ));
    out
}

differential!(
    same_empty_receives_with_nothing_waiting,
    "synack-d-r70en",
    |net, kernel| empty_receives_with_nothing_waiting(net, kernel, false, 13141)
);
differential!(
    same_empty_receives_with_nothing_waiting_v6,
    "synack-d-r70en6",
    |net, kernel| empty_receives_with_nothing_waiting(net, kernel, true, 13141)
);

/// `try_read_vectored` with no slices and with one empty slice while nothing waits: tokio's
/// `try_io` finds no read readiness and says WouldBlock before `readv` is called.
async fn tcp_empty_vectored_reads_nothing_waiting(
    net: &Net,
    kernel: bool,
    v6: bool,
    port: u16,
) -> Outcomes {
    let mut out = Outcomes::new();
    let (mut s, mut p) = pair(net, kernel, v6, port).await;
    settle().await;
    out.push((
        "try_read_vectored no slices",
        show(&on!(&s, x => x.try_read_vectored(&mut []))),
    ));
    let mut e = [0u8; 0];
    out.push((
        "try_read_vectored one empty slice",
        show(&on!(&s, x => x.try_read_vectored(&mut [io::IoSliceMut::new(&mut e)]))),
    ));
    p.write_all(b"data").await.unwrap();
    settle().await;
    out.push(("read", read_once(&mut s, 10).await));
    out.push((
        "try_read_vectored no slices, drained",
        show(&on!(&s, x => x.try_read_vectored(&mut []))),
    ));
    out
}

differential!(
    same_tcp_empty_vectored_reads_with_nothing_waiting,
    "synack-d-r70ev",
    |net, kernel| tcp_empty_vectored_reads_nothing_waiting(net, kernel, false, 13151)
);

/// `try_read_buf` / `try_recv_buf` / `try_recv_buf_from` / `recv_buf` into a `BufMut` with
/// no room at all (an empty `&mut [u8]`, whose `chunk_mut` cannot grow), with nothing
/// waiting (tokio: WouldBlock or a wait, from the readiness) and with data waiting (a read
/// of 0; a UDP datagram is taken whole).
async fn no_room_bufmut(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let d = Duration::from_millis(300);
    let (s, mut p) = pair(net, kernel, v6, port).await;
    settle().await;
    let mut z = [0u8; 0];
    out.push((
        "TCP try_read_buf, nothing waiting",
        show(&on!(&s, x => x.try_read_buf(&mut &mut z[..]))),
    ));
    p.write_all(b"data").await.unwrap();
    settle().await;
    out.push((
        "TCP try_read_buf, data waiting",
        show(&on!(&s, x => x.try_read_buf(&mut &mut z[..]))),
    ));
    out.push(("TCP try_read after", try_read(&s, 10)));

    let pa = kaddr(v6, port + 100);
    let k = net.kernel_udp(pa).unwrap();
    let u = ubind(net, kernel, unspec(v6)).await.unwrap();
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&u, x => x.local_addr()).unwrap().port(),
    );
    settle().await;
    out.push((
        "UDP try_recv_buf, nothing waiting",
        show(&on!(&u, x => x.try_recv_buf(&mut &mut z[..]))),
    ));
    out.push((
        "UDP try_recv_buf_from, nothing waiting",
        show_ok(&on!(&u, x => x.try_recv_buf_from(&mut &mut z[..]))),
    ));
    out.push((
        "UDP recv_buf, nothing waiting",
        on!(&u, x => tokio::time::timeout(d, x.recv_buf(&mut &mut z[..])).await)
            .map_or("pending".into(), |r| show(&r)),
    ));
    for dg in [&b"one"[..], b"two", b"three"] {
        k.send_to(dg, me).await.unwrap();
    }
    settle().await;
    out.push((
        "UDP try_recv_buf, one waiting",
        show(&on!(&u, x => x.try_recv_buf(&mut &mut z[..]))),
    ));
    out.push((
        "UDP try_recv_buf_from, the next",
        format!(
            "{:?}",
            on!(&u, x => x.try_recv_buf_from(&mut &mut z[..]))
                .map(|(n, a)| (n, a == pa))
                .map_err(|e| e.kind())
        ),
    ));
    out.push((
        "UDP recv_buf, the last",
        show(&on!(&u, x => within(5, x.recv_buf(&mut &mut z[..])).await)),
    ));
    out.push(("UDP recv after", urecv(&u, 10).await));
    out
}

differential!(
    same_buf_mut_receives_with_no_room,
    "synack-d-r70bm",
    |net, kernel| no_room_bufmut(net, kernel, false, 13161)
);

/// A UDP socket's port unreachable still pending when it connects to another peer, which
/// then sends: Linux's connect leaves `sk_err` as it is (`__ip4_datagram_connect`,
/// `__ip6_datagram_connect` never touch it), so the next receive reports ECONNREFUSED, and
/// the datagram comes after.
async fn udp_error_across_reconnect(net: &Net, kernel: bool, v6: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let pa = kaddr(v6, port);
    let p = net.kernel_udp(pa).unwrap();
    let s = ubind(net, kernel, unspec(v6)).await.unwrap();
    on!(&s, x => x.connect(kaddr(v6, 9)).await).unwrap();
    on!(&s, x => x.send(b"x").await).unwrap();
    settle().await;
    out.push((
        "connect to a live peer",
        show(&on!(&s, x => x.connect(pa).await)),
    ));
    let me = SocketAddr::new(
        own(kernel, v6, 0).ip(),
        on!(&s, x => x.local_addr()).unwrap().port(),
    );
    p.send_to(b"hi", me).await.unwrap();
    settle().await;
    out.push((
        "ready(R|W|ERR)",
        uready(
            &s,
            Interest::READABLE | Interest::WRITABLE | Interest::ERROR,
        )
        .await,
    ));
    out.push(("recv", urecv(&s, 10).await));
    out.push(("recv again", urecv(&s, 10).await));
    out.push(("send", show(&on!(&s, x => x.send(b"ok").await))));
    out.push(("peer got", kpeer_recv(&p).await));
    out.push(("take_error", utake_error(&s)));
    out
}

differential!(
    same_udp_error_pending_across_a_reconnect,
    "synack-d-r70rc",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_error_across_reconnect(net, kernel, false, 13171)
);
differential!(
    same_udp_error_pending_across_a_reconnect_v6,
    "synack-d-r70rc6",
    setup | net | no_icmp_ratelimit(net),
    |net, kernel| udp_error_across_reconnect(net, kernel, true, 13171)
);

/// The TTL of what a UDP socket sends to an IPv4 group: 1 until `set_multicast_ttl_v4`
/// (Linux's `mc_ttl`), then the value set, which `set_ttl` does not change; unicast
/// datagrams take `set_ttl`'s. nft counts them at the kernel's input hook (the kernel
/// side's own group datagrams come back to it through its multicast loop).
async fn multicast_ttl_on_the_wire(net: &Net, kernel: bool, port: u16) -> Outcomes {
    let mut out = Outcomes::new();
    let g = |p: u16| SocketAddr::new("239.1.2.3".parse().unwrap(), p);
    // The kernel's membership, without which it drops the group's datagrams before its
    // input hook (`ip_route_input_slow`: not ours, no forwarding).
    let member = net
        .kernel_udp(format!("0.0.0.0:{port}").parse().unwrap())
        .unwrap();
    member
        .join_multicast_v4("239.1.2.3".parse().unwrap(), HOST)
        .unwrap();
    let u = ubind(net, kernel, own(kernel, false, 0)).await.unwrap();
    out.push((
        "send to the group",
        show(&on!(&u, x => x.send_to(b"a", g(port)).await)),
    ));
    out.push((
        "set_multicast_ttl_v4(9)",
        show(&on!(&u, x => x.set_multicast_ttl_v4(9))),
    ));
    out.push((
        "send to the group again",
        show(&on!(&u, x => x.send_to(b"b", g(port + 1)).await)),
    ));
    out.push(("set_ttl(7)", show(&on!(&u, x => x.set_ttl(7)))));
    out.push((
        "send to the group after set_ttl",
        show(&on!(&u, x => x.send_to(b"c", g(port + 2)).await)),
    ));
    let k = net.kernel_udp(kaddr(false, port + 3)).unwrap();
    out.push((
        "send to the kernel peer",
        show(&on!(&u, x => x.send_to(b"d", kaddr(false, port + 3)).await)),
    ));
    out.push(("peer got", kpeer_recv(&k).await));
    out.push(("member got", kpeer_recv(&member).await));
    settle().await;
    let mut seen = Vec::new();
    for (p, ttl) in [(port, 1), (port + 1, 9), (port + 2, 9), (port + 3, 7)] {
        let n = net.nft_count("d", "input", &format!("m{p}t{ttl}")).await;
        seen.push(format!("port +{}: TTL {ttl} {}", p - port, n > 0));
    }
    out.push(("datagrams seen", seen.join(", ")));
    out
}

/// Counters for each side's ports (the kernel's run, then synack's, share one table).
async fn multicast_ttl_rules(net: &Net, ports: &[u16]) {
    group_route(net).await;
    let mut rules = String::from(
        "add table inet d\nadd chain inet d input { type filter hook input priority 0; }\n",
    );
    let each = ports
        .iter()
        .flat_map(|&port| [(port, 1), (port + 1, 9), (port + 2, 9), (port + 3, 7)]);
    for (p, ttl) in each {
        rules += &format!(
            "add rule inet d input meta nfproto ipv4 udp dport {p} ip ttl {ttl} counter comment \"m{p}t{ttl}\"\n"
        );
    }
    net.nft(&rules).await;
}

differential!(
    same_udp_multicast_ttl_on_the_wire,
    "synack-d-r70mt",
    setup | net | multicast_ttl_rules(net, &[13181, 13191]),
    |net, kernel| multicast_ttl_on_the_wire(net, kernel, if kernel { 13181 } else { 13191 })
);
