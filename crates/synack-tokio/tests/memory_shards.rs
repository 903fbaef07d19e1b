//! A sharded stack without a kernel: two workers over an in-memory link whose "queues" all
//! read from the one link, so that any packet may reach either shard's driver, as a
//! multi-queue TUN's first packets of a flow do. Every flow must still end on its owner
//! (through the hand-off), in both directions, for TCP and UDP, with every byte intact.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use synack_core::{RecvMeta, Transmit};
use synack_tokio::device::{Device, DeviceCapabilities, MemoryDevice};
use synack_tokio::{Stack, TcpListener, TcpStream, UdpSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One end of a memory link shared by any number of queues: each queue receives whatever
/// the link holds when it asks, whoever owns it. A queue given a flag fails its `check`
/// once the flag is set, as a TUN queue whose file went bad would.
struct SharedLink(Arc<Mutex<MemoryDevice>>, Option<Arc<AtomicBool>>);

impl SharedLink {
    fn with<T>(&self, f: impl FnOnce(&mut MemoryDevice) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Device for SharedLink {
    fn capabilities(&self) -> DeviceCapabilities {
        self.with(|d| d.capabilities())
    }

    fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<RecvMeta>> {
        // The link keeps one waker, the last queue's to ask: that driver is woken and reads
        // whatever arrives, handing the other shard its flows' packets, so nothing waits
        // for a driver that was not told.
        self.with(|d| d.poll_recv(cx, buf))
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<std::io::Result<()>> {
        self.with(|d| d.poll_send(cx, packet, transmit))
    }

    fn max_queues(&self) -> usize {
        2
    }

    fn open_queue(&mut self) -> std::io::Result<SharedLink> {
        Ok(SharedLink(Arc::clone(&self.0), None))
    }

    fn check(&mut self) -> std::io::Result<()> {
        match &self.1 {
            Some(failed) if failed.load(Ordering::Relaxed) => {
                Err(std::io::Error::other("this queue failed"))
            }
            _ => Ok(()),
        }
    }
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn within<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("not done within {secs} s"))
}

/// The sharded stack at 198.18.0.2 and a one-worker peer at 198.18.0.1.
fn stacks() -> (Stack, Stack) {
    stacks_with(synack_core::Config::default())
}

/// [`stacks`], the sharded one with `config`.
fn stacks_with(config: synack_core::Config) -> (Stack, Stack) {
    stacks_failing(config, None)
}

/// [`stacks_with`], the first queue failing once `failing` is set.
fn stacks_failing(config: synack_core::Config, failing: Option<Arc<AtomicBool>>) -> (Stack, Stack) {
    let (a, b) = MemoryDevice::pair();
    let sharded = Stack::builder()
        .address("198.18.0.2".parse().unwrap())
        .workers(2)
        .config(config)
        .build(SharedLink(Arc::new(Mutex::new(a)), failing))
        .unwrap();
    let peer = Stack::builder()
        .address("198.18.0.1".parse().unwrap())
        .workers(1)
        .build(b)
        .unwrap();
    assert_eq!(sharded.workers(), 2);
    assert_eq!(peer.workers(), 1);
    (sharded, peer)
}

/// [`stacks`], the sharded one's ephemeral ports `first..=last`.
fn stacks_with_ports(first: u16, last: u16) -> (Stack, Stack) {
    let mut config = synack_core::Config::default();
    config.ephemeral_ports((first, last));
    stacks_with(config)
}

/// The peer's listener at 198.18.0.1:9000, where the sharded stack's connects go.
async fn peer_listener(peer: &Stack) -> TcpListener {
    TcpListener::bind(peer, sa("198.18.0.1:9000"))
        .await
        .unwrap()
}

/// Echoes `n` connections accepted on `listener`.
fn echo(listener: TcpListener, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().await.expect("accept");
            tasks.push(tokio::spawn(async move {
                let (mut rx, mut tx) = s.split();
                tokio::io::copy(&mut rx, &mut tx).await.expect("echo");
                tx.shutdown().await.expect("FIN");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
}

/// `n` connections from `from` to `to`, each sending `len` bytes and reading the echo.
async fn clients(from: &Stack, to: SocketAddr, n: usize, len: usize) {
    let mut tasks = Vec::new();
    for i in 0..n {
        let stack = from.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&stack, to).await.expect("connect");
            let sent = data(len, i as u8);
            let (mut rx, mut tx) = s.split();
            let write = async {
                tx.write_all(&sent).await.expect("write");
                tx.shutdown().await.expect("FIN");
            };
            let mut got = Vec::new();
            let ((), r) = tokio::join!(write, rx.read_to_end(&mut got));
            r.expect("read");
            assert!(got == sent, "connection {i}: {} of {len} bytes", got.len());
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_serve_and_connect_with_every_byte() {
    const N: usize = 24;
    let (sharded, peer) = stacks();

    // Into the sharded stack: its listener is on both shards.
    let listener = TcpListener::bind(&sharded, sa("198.18.0.2:7"))
        .await
        .unwrap();
    assert_eq!(listener.local_addr().unwrap(), sa("198.18.0.2:7"));
    let server = echo(listener, N);
    within(30, clients(&peer, sa("198.18.0.2:7"), N, 50_000)).await;
    within(10, server).await.unwrap();

    // Out of it: each connect on the shard its port hashes to.
    let listener = TcpListener::bind(&peer, sa("198.18.0.1:9")).await.unwrap();
    let server = echo(listener, N);
    within(30, clients(&sharded, sa("198.18.0.1:9"), N, 50_000)).await;
    within(10, server).await.unwrap();

    within(10, sharded.shutdown(Duration::from_secs(5)))
        .await
        .unwrap();
    let shards = sharded.shard_stats();
    let total = sharded.stats();
    assert_eq!(total.connections_established, 2 * N as u64);
    for s in &shards {
        assert!(s.stats.connections_established > 0, "{shards:#?}");
        assert_eq!(s.handoff_dropped, 0);
    }
    let handed: u64 = shards.iter().map(|s| s.handed_off).sum();
    let received: u64 = shards.iter().map(|s| s.handoffs_received).sum();
    assert_eq!(handed, received);
    // Either queue reads any packet here, so many are handed off: the hand-off is what kept
    // every flow on its owner.
    assert!(handed > 0);
    assert_eq!(
        shards.iter().map(|s| s.stats.packets_in).sum::<u64>(),
        total.packets_in
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_lives_on_shard_zero_whatever_queue_reads_it() {
    let (sharded, peer) = stacks();
    let socket = UdpSocket::bind(&sharded, sa("0.0.0.0:53")).await.unwrap();
    let client = UdpSocket::bind(&peer, sa("198.18.0.1:0")).await.unwrap();
    for i in 0..50u8 {
        client
            .send_to(&[i; 100], sa("198.18.0.2:53"))
            .await
            .unwrap();
        let mut buf = [0u8; 200];
        let (n, from) = within(5, socket.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], &[i; 100]);
        socket.send_to(&buf[..n], from).await.unwrap();
        let (n, _) = within(5, client.recv_from(&mut buf)).await.unwrap();
        assert_eq!(&buf[..n], &[i; 100]);
    }
    let shards = sharded.shard_stats();
    assert_eq!(shards[0].stats.udp_datagrams_in, 50);
    assert_eq!(shards[1].stats.udp_datagrams_in, 0);
}

/// A listener's ephemeral port, picked at `bind` (port 0), is one that no shard's
/// connection uses, as Linux's `bind(2)` never hands out a port a connected socket holds:
/// every shard listens on it, and shard 0 alone knows only its own connections. In a
/// range of 32 ports, with four connections spread over both shards (each shard owns the
/// ports whose flows hash to it, about half), listeners take the other 28 and then fail
/// with `AddrInUse`, as Linux's bind to port 0 with the range used up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_listener_port_is_free_on_every_shard() {
    let (sharded, peer) = stacks_with_ports(40_000, 40_031);
    within(20, async {
        let server = peer_listener(&peer).await;
        let mut streams = Vec::new();
        for _ in 0..4 {
            // The handshake completes into the accept queue: no need to accept first.
            let c = TcpStream::connect(&sharded, sa("198.18.0.1:9000"))
                .await
                .unwrap();
            let (s, _) = server.accept().await.unwrap();
            streams.push((c, s));
        }
        let used: Vec<u16> = streams
            .iter()
            .map(|(c, _)| c.local_addr().unwrap().port())
            .collect();
        let mut listeners = Vec::new();
        for _ in 0..40 {
            match TcpListener::bind(&sharded, sa("198.18.0.2:0")).await {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
                    break;
                }
            }
        }
        let taken: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(
            taken.len(),
            28,
            "listeners on {taken:?}, connections on {used:?}"
        );
        for port in &taken {
            assert!((40_000..=40_031).contains(port), "{port}");
            assert!(!used.contains(port), "{port} is a connection's: {used:?}");
        }
        // Every one of them takes connections, on either shard.
        for port in taken {
            let to = SocketAddr::new("198.18.0.2".parse().unwrap(), port);
            let l = listeners
                .iter()
                .find(|l| l.local_addr().unwrap() == to)
                .unwrap();
            let _c = TcpStream::connect(&peer, to).await.unwrap();
            l.accept().await.unwrap();
        }
    })
    .await;
}

/// A port a socket binds is held on every shard, as Linux reserves it at `bind(2)`: no
/// shard's connect takes it as an ephemeral port, and a port any shard's connection uses
/// cannot be bound unless both that connection's socket and the binding one set
/// SO_REUSEADDR. In a range of 8 ports with two held (one named, one picked), connects take
/// the other 6 and then fail with `AddrNotAvailable`; once the sockets are dropped their
/// ports are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_port_is_held_on_every_shard() {
    let (sharded, peer) = stacks_with_ports(40_000, 40_007);
    within(20, async {
        let server = peer_listener(&peer).await;
        let named = synack_tokio::TcpSocket::new_v4(&sharded).unwrap();
        named.bind(sa("198.18.0.2:40003")).unwrap();
        let picked = synack_tokio::TcpSocket::new_v4(&sharded).unwrap();
        picked.bind(sa("198.18.0.2:0")).unwrap();
        let held = [named.local_addr().unwrap(), picked.local_addr().unwrap()];
        assert!((40_000..=40_007).contains(&held[1].port()), "{held:?}");
        assert_ne!(held[0], held[1]);

        // Every other connection from a socket with SO_REUSEADDR.
        let mut streams = Vec::new();
        loop {
            let connected = match streams.len() % 2 {
                0 => TcpStream::connect(&sharded, sa("198.18.0.1:9000")).await,
                _ => {
                    let s = synack_tokio::TcpSocket::new_v4(&sharded).unwrap();
                    s.set_reuseaddr(true).unwrap();
                    s.connect(sa("198.18.0.1:9000")).await
                }
            };
            match connected {
                Ok(c) => streams.push((c, server.accept().await.unwrap().0)),
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
                    break;
                }
            }
            assert!(streams.len() <= 8, "more connections than ports");
        }
        let used: Vec<SocketAddr> = streams
            .iter()
            .map(|(c, _)| c.local_addr().unwrap())
            .collect();
        assert_eq!(used.len(), 6, "connections from {used:?}, held {held:?}");
        assert!(used.iter().all(|a| !held.contains(a)), "{used:?} {held:?}");
        // Whichever shard owns a connection, its port is not bound again without
        // SO_REUSEADDR, and with it only if the connection's socket set it too.
        for (k, a) in used.iter().enumerate() {
            let s = synack_tokio::TcpSocket::new_v4(&sharded).unwrap();
            let e = s.bind(*a).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{a}");
            s.set_reuseaddr(true).unwrap();
            match k % 2 {
                0 => assert_eq!(
                    s.bind(*a).unwrap_err().kind(),
                    std::io::ErrorKind::AddrInUse
                ),
                _ => s.bind(*a).unwrap(),
            }
        }

        drop((named, picked));
        for _ in 0..2 {
            let c = TcpStream::connect(&sharded, sa("198.18.0.1:9000"))
                .await
                .unwrap();
            assert!(held.contains(&c.local_addr().unwrap()));
            streams.push((c, server.accept().await.unwrap().0));
        }
    })
    .await;
}

/// Connections from the sharded stack to its own listener loop back inside the shard that
/// opened each (both ends live there; the listener is on every shard): eight echoed
/// connections, every byte intact, spread over both shards, and nothing on the link. Eight
/// more to `0.0.0.0`, which means this host (Linux connects those to itself too), the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_address_connections_loop_back_on_every_shard() {
    let (sharded, peer) = stacks();
    within(20, async {
        let to = sa("198.18.0.2:9100");
        let listener = TcpListener::bind(&sharded, to).await.unwrap();
        let peer_in = peer.stats().packets_in;
        let server = echo(listener, 17);
        clients(&sharded, to, 8, 300_000).await;
        clients(&sharded, sa("0.0.0.0:9100"), 8, 300_000).await;
        let s = TcpStream::connect(&sharded, "0.0.0.0:9100").await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), to);
        drop(s);
        server.await.unwrap();
        assert_eq!(
            peer.stats().packets_in,
            peer_in,
            "something reached the link"
        );
        let per_shard: Vec<u64> = sharded
            .shard_stats()
            .iter()
            .map(|s| s.stats.looped_back)
            .collect();
        assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    })
    .await;
}

/// A socket's `bind` and a listener's `bind` of one port, racing on two threads over two
/// shards: exactly one wins each time, as on Linux, where the port's bind bucket decides.
/// (Each holds the port shard by shard; without one decision for the whole stack, each
/// could find the other's hold on some shard and both fail.)
#[test]
fn racing_binds_of_one_port_leave_one_winner() {
    let runtime = two_thread_runtime();
    let _entered = runtime.enter();
    let (sharded, _peer) = stacks();
    for round in 0..20_000u16 {
        let addr = SocketAddr::new("198.18.0.2".parse().unwrap(), 10_000 + round);
        let start = Arc::new(std::sync::Barrier::new(2));
        let socket = {
            let (stack, start) = (sharded.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                let s = synack_tokio::TcpSocket::new_v4(&stack).unwrap();
                start.wait();
                s.bind(addr).map(|()| s)
            })
        };
        start.wait();
        let listener = futures_now(TcpListener::bind(&sharded, addr));
        let socket = socket.join().unwrap();
        let won = usize::from(socket.is_ok()) + usize::from(listener.is_ok());
        assert_eq!(
            won,
            1,
            "round {round}: socket {:?}, listener {:?}",
            socket.as_ref().err(),
            listener.as_ref().err()
        );
    }
}

/// A multi-thread runtime with two workers, for the tests whose other racer is a plain
/// thread.
fn two_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls a future that completes without waiting (a bind) to its end, once.
fn futures_now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("a bind waited"),
    }
}

/// Port-0 binds on one thread while another opens connections, over two shards: no
/// connection ever takes a port a bound socket holds, as Linux keeps a bound port out of
/// every ephemeral pick. (When shard 0 picked the bind's port from a copy of what the other
/// shard's connections used, a connect there could take it before it was held there, and
/// did, hundreds of times in a soak run; the bind now decides with every shard locked.)
#[test]
fn a_port_zero_bind_never_shares_its_port_with_a_connect_on_another_shard() {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    let runtime = two_thread_runtime();
    let _entered = runtime.enter();
    let (sharded, peer) = stacks_with_ports(40_000, 40_999);
    let held: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let binder = {
        let (stack, held, done) = (sharded.clone(), Arc::clone(&held), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut sockets = std::collections::VecDeque::new();
            // Until the connects are done (bounded in time): a binder that ended first would
            // drop its sockets while `held` still named their ports.
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while !done.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                let s = synack_tokio::TcpSocket::new_v4(&stack).unwrap();
                if s.bind(sa("198.18.0.2:0")).is_ok() {
                    held.lock().unwrap().insert(s.local_addr().unwrap().port());
                    sockets.push_back(s);
                }
                if sockets.len() > 100 {
                    let s = sockets.pop_front().unwrap();
                    held.lock().unwrap().remove(&s.local_addr().unwrap().port());
                }
            }
            held.lock().unwrap().clear();
        })
    };
    let shared = runtime.block_on(async {
        within(60, async {
            let server = peer_listener(&peer).await;
            let accepting = tokio::spawn(async move {
                let mut kept = std::collections::VecDeque::new();
                while let Ok((s, _)) = server.accept().await {
                    kept.push_back(s);
                    if kept.len() > 200 {
                        kept.pop_front();
                    }
                }
            });
            let (mut shared, mut open) = (0, std::collections::VecDeque::new());
            for _ in 0..3_000 {
                let Ok(c) = TcpStream::connect(&sharded, sa("198.18.0.1:9000")).await else {
                    continue;
                };
                let port = c.local_addr().unwrap().port();
                if held.lock().unwrap().contains(&port) {
                    shared += 1;
                }
                open.push_back(c);
                if open.len() > 200 {
                    open.pop_front();
                }
            }
            accepting.abort();
            shared
        })
        .await
    });
    done.store(true, Ordering::Relaxed);
    binder.join().unwrap();
    assert_eq!(shared, 0, "connections on ports bound sockets held");
}

/// Port-0 listeners on one thread while another opens connections from a narrow range,
/// over two shards: a port-0 listen never fails, as Linux's, which picks and reserves the
/// port in one step. (When the listener's port was picked with every shard locked but held
/// on none, a connect on a shard the listener had not reached yet took it, and that
/// shard's listen failed with `AddrInUse`, within a second every time.)
#[test]
fn a_port_zero_listener_never_loses_its_port_to_a_connect_on_another_shard() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let runtime = two_thread_runtime();
    let _entered = runtime.enter();
    let (sharded, peer) = stacks_with_ports(40_000, 40_063);
    let done = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let listener = {
        let (stack, done, failed) = (sharded.clone(), Arc::clone(&done), Arc::clone(&failed));
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + Duration::from_secs(30);
            while !done.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                if let Err(e) = futures_now(TcpListener::bind(&stack, sa("198.18.0.2:0"))) {
                    eprintln!("port-0 listen: {e}");
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let connected = runtime.block_on(within(60, async {
        let server = peer_listener(&peer).await;
        // The peer closes first, so that the ports come back without TIME-WAIT here.
        let accepting = tokio::spawn(async move {
            while let Ok((s, _)) = server.accept().await {
                drop(s);
            }
        });
        let mut connected = 0;
        for _ in 0..1_500 {
            if failed.load(Ordering::Relaxed) > 0 {
                break;
            }
            let Ok(mut c) = TcpStream::connect(&sharded, sa("198.18.0.1:9000")).await else {
                continue;
            };
            connected += 1;
            let mut end = Vec::new();
            c.read_to_end(&mut end).await.unwrap();
        }
        accepting.abort();
        connected
    }));
    done.store(true, Ordering::Relaxed);
    listener.join().unwrap();
    assert!(connected > 100, "{connected} connections");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "port-0 listens failed");
}

/// On two shards, as on one, an ephemeral connect takes no port whose tuple towards the
/// server is in TIME-WAIT: with all four ports of the range in TIME-WAIT after four
/// connections the client closed first, the next connect is `AddrNotAvailable`, as Linux's
/// ephemeral search (a TIME-WAIT tuple goes only to a connect from a port its socket
/// bound). It took the tuples over once connects from a bound port could.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_connect_takes_no_tuple_in_time_wait() {
    let (sharded, peer) = stacks_with_ports(40_000, 40_003);
    within(20, async {
        let server = peer_listener(&peer).await;
        for _ in 0..4 {
            let (c, s) = tokio::join!(
                TcpStream::connect(&sharded, sa("198.18.0.1:9000")),
                server.accept()
            );
            let (mut c, (mut s, _)) = (c.unwrap(), s.unwrap());
            // The client closes first: its end of the tuple waits in TIME-WAIT.
            c.shutdown().await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            drop(s);
            c.read_to_end(&mut rest).await.unwrap();
        }
        while sharded.connection_count() > 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let e = TcpStream::connect(&sharded, sa("198.18.0.1:9000"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
    })
    .await;
}

/// On two shards, a port a socket bound stays out of every ephemeral connect's reach while
/// its connection lasts, whichever shard the connection and the connect are on, as Linux's
/// ephemeral search skips a port `bind(2)` gave (its bind bucket is the host's). With four
/// ephemeral ports, one a bound socket's connection uses, three ephemeral connects get the
/// other three and a fourth is `AddrNotAvailable`; one of them took the bound port before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ephemeral_connect_on_any_shard_takes_a_port_a_bind_gave() {
    let (sharded, peer) = stacks_with_ports(40_000, 40_003);
    within(20, async {
        let _server = peer_listener(&peer).await;
        let _other = TcpListener::bind(&peer, sa("198.18.0.1:9001"))
            .await
            .unwrap();
        let socket = synack_tokio::TcpSocket::new_v4(&sharded).unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(sa("198.18.0.2:40000")).unwrap();
        let bound = socket.connect(sa("198.18.0.1:9000")).await.unwrap();
        let mut open = Vec::new();
        for _ in 0..3 {
            let c = TcpStream::connect(&sharded, sa("198.18.0.1:9001"))
                .await
                .unwrap();
            assert_ne!(c.local_addr().unwrap().port(), 40_000);
            open.push(c);
        }
        let e = TcpStream::connect(&sharded, sa("198.18.0.1:9001"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrNotAvailable);
        drop(bound);
    })
    .await;
}

/// One shard's driver stopping (its queue failed) leaves the other running, and
/// `Stack::shutdown` still shuts that one down: its stream sends its FIN, and only then is
/// the stopped shard's error the result. `shutdown` used to return that error at once, the
/// other shard never told; and `accept` failed whenever its turn came to the stopped shard.
#[tokio::test]
async fn a_stopped_shard_does_not_stop_the_shutdown_of_the_others() {
    let failing = Arc::new(AtomicBool::new(false));
    let (sharded, peer) = stacks_failing(synack_core::Config::default(), Some(failing.clone()));
    let listener = peer_listener(&peer).await;
    let (a, b) = within(10, async {
        tokio::join!(
            TcpStream::connect(&sharded, sa("198.18.0.1:9000")),
            TcpStream::connect(&sharded, sa("198.18.0.1:9000"))
        )
    })
    .await;
    let _held = (a.unwrap(), b.unwrap());
    let mut ends = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = within(10, listener.accept()).await.unwrap();
        ends.push(tokio::spawn(async move {
            let mut buf = [0u8; 16];
            matches!(
                tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
                Ok(Ok(0))
            )
        }));
    }
    // A listener on the sharded stack, to accept from after the stop.
    let ours = TcpListener::bind(&sharded, sa("198.18.0.2:7000"))
        .await
        .unwrap();
    failing.store(true, Ordering::Relaxed);
    // The driver checks its device every half second.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let accepted = tokio::time::timeout(Duration::from_millis(500), ours.accept()).await;
    assert!(
        accepted.is_err(),
        "accept gave up while a shard runs: {accepted:?}"
    );

    let e = within(10, sharded.shutdown(Duration::from_secs(2)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("this queue failed"), "{e}");
    let mut fins = 0;
    for end in ends {
        fins += usize::from(end.await.unwrap());
    }
    assert_eq!(fins, 1, "the running shard's stream sends its FIN");
}
