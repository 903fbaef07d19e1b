//! UdpSocket and UdpInterceptor between two stacks joined by an in-memory link: the client on
//! 198.18.0.2, the server on 198.18.0.1. Every test is bounded in time.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;

use bytes::BytesMut;
use synack_tokio::device::MemoryDevice;
use synack_tokio::{Config, InterceptConfig, Stack, UdpSocket};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));

fn stacks(intercept: bool) -> (Stack, Stack) {
    let (a, b) = MemoryDevice::pair();
    let mut server = Config::default();
    if intercept {
        server.intercept(Some(InterceptConfig::default()));
    }
    (
        Stack::new(Config::default(), a, &[CLIENT]).unwrap(),
        Stack::new(server, b, &[SERVER]).unwrap(),
    )
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("timed out")
}

#[tokio::test]
async fn many_datagrams_with_backpressure() {
    within(async {
        let (client, server) = stacks(false);
        let rx = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9000))
            .await
            .unwrap();
        let tx = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        tx.connect(SocketAddr::new(SERVER, 9000)).await.unwrap();
        // More than the own-packet queue holds: senders park and resume.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let mut got = 0usize;
            while got < 50 {
                let (n, _) = rx.recv_from(&mut buf).await.unwrap();
                assert_eq!(&buf[..n], &[got as u8 % 251; 1000][..n]);
                got += 1;
            }
            rx
        });
        for i in 0..2000usize {
            tx.send(&[i as u8 % 251; 1000]).await.unwrap();
            if i < 50 {
                tokio::task::yield_now().await;
            }
        }
        let _rx = reader.await.unwrap();
        // Counted as they leave the stack, which the last few have yet to do when `send`
        // returns (queued): wait for them, a bounded while.
        for _ in 0..200 {
            if client.stats().udp_datagrams_out == 2000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(client.stats().udp_datagrams_out, 2000);
        // The receiver stopped reading: its queue is bounded, the rest is counted.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = server.stats();
        assert!(s.drop_udp_queue_full > 0, "{s:?}");
        assert!(server.memory() <= 212_992 + 1256);
    })
    .await;
}

/// The non-waiting calls tokio's UdpSocket has: `try_send_to` until the send queue is full
/// (`WouldBlock`), `writable` once it drains; `readable` then `try_recv_from` until
/// `WouldBlock`; a refused datagram's error read with `take_error`, once.
/// SO_BINDTODEVICE on a device without an interface name (a memory pair): every name is
/// ENODEV, as Linux's for a name no interface has; `None` and an empty name unbind.
#[tokio::test]
async fn bind_device_without_an_interface_is_enodev() {
    let (a, _b) = stacks(false);
    assert_eq!(a.interface_name(), None);
    let socket = UdpSocket::bind(&a, "0.0.0.0:0").await.unwrap();
    let e = socket.bind_device(Some(b"synack0")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    socket.bind_device(None).unwrap();
    socket.bind_device(Some(b"")).unwrap();
    assert_eq!(socket.device().unwrap(), None);
    let tcp = synack_tokio::TcpSocket::new_v4(&a).unwrap();
    let e = tcp.bind_device(Some(b"lo")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
    assert_eq!(tcp.device().unwrap(), None);
}

#[tokio::test]
async fn try_calls_and_readiness() {
    within(async {
        let (client, server) = stacks(false);
        let rx = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9001))
            .await
            .unwrap();
        let tx = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        let to = SocketAddr::new(SERVER, 9001);
        let mut buf = [0u8; 64];
        assert_eq!(
            rx.try_recv_from(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        // Without yielding, the driver writes nothing: the queue fills.
        let mut queued = 0usize;
        let full = loop {
            match tx.try_send_to(&[7u8; 10], to) {
                Ok(10) => queued += 1,
                Ok(n) => panic!("a datagram of 10 sent as {n}"),
                Err(e) => break e,
            }
            assert!(queued < 100_000, "the send queue never filled");
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        assert!(queued > 0);
        within(tx.writable()).await.unwrap();
        tx.try_send_to(&[8u8; 10], to).unwrap();

        // A peek shows the first datagram and leaves it.
        within(rx.readable()).await.unwrap();
        let (n, from) = rx.try_peek_from(&mut buf).unwrap();
        assert_eq!((n, from.ip(), buf[0]), (10, CLIENT, 7));
        let (n, again) = within(rx.peek_from(&mut buf)).await.unwrap();
        assert_eq!((n, again), (10, from));

        // The receiver takes what its queue kept, and then would block.
        let mut got = 0usize;
        loop {
            within(rx.readable()).await.unwrap();
            match rx.try_recv_from(&mut buf) {
                Ok((n, from)) => {
                    assert_eq!((n, from.ip()), (10, CLIENT));
                    got += 1;
                    if buf[0] == 8 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(got > 0);
        assert!(rx.take_error().unwrap().is_none());

        // A connected socket's ICMP error: SO_ERROR takes it, and the next recv waits.
        let s = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        s.connect(SocketAddr::new(SERVER, 9)).await.unwrap();
        s.try_send(b"anyone?").unwrap();
        // `ready(ERROR)` alone sees it, as tokio's does (EPOLLERR while sk_err is set).
        let r = within(s.ready(Interest::ERROR)).await.unwrap();
        assert!(r.is_error(), "{r:?}");
        // It is not readable: Linux's udp_poll says EPOLLERR, not EPOLLIN, so tokio's
        // readiness and its `try_` receives (which ask the readiness first) do not see it.
        let r = within(s.ready(Interest::READABLE | Interest::WRITABLE))
            .await
            .unwrap();
        assert!(r.is_writable() && !r.is_readable(), "{r:?}");
        // EPOLLERR | EPOLLOUT, which mio reads as write-closed.
        assert!(r.is_write_closed() && !r.is_read_closed(), "{r:?}");
        let waited = tokio::time::timeout(Duration::from_millis(100), s.readable()).await;
        assert!(waited.is_err(), "readable on an error alone");
        let nothing_to_take = |buf: &mut [u8]| {
            let kinds = (
                s.try_recv(buf).unwrap_err().kind(),
                s.try_peek_from(buf).unwrap_err().kind(),
            );
            assert_eq!(
                kinds,
                (io::ErrorKind::WouldBlock, io::ErrorKind::WouldBlock)
            );
        };
        nothing_to_take(&mut buf);
        let e = s.take_error().unwrap().expect("port unreachable");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(s.take_error().unwrap().is_none());
        nothing_to_take(&mut buf);
        // Taken, nothing is closed any more.
        let r = within(s.ready(Interest::WRITABLE)).await.unwrap();
        assert_eq!(r, tokio::io::Ready::WRITABLE);
    })
    .await;
}

/// While a connected socket's ICMP error is pending, `WRITABLE` interest is answered
/// `WRITABLE | WRITE_CLOSED`, as tokio's socket on the kernel answers it (Linux's
/// `udp_poll`: `EPOLLERR | EPOLLOUT`; `kernel_udp_errors_as_tokio_gets_them_on_the_kernel`
/// compares the two), and the next send, not a write that waits, reports the error once.
#[tokio::test]
async fn a_pending_error_reads_write_closed_until_a_send_takes_it() {
    within(async {
        let (client, _server) = stacks(false);
        let s = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        s.connect(SocketAddr::new(SERVER, 9)).await.unwrap();
        let r = within(s.ready(Interest::WRITABLE)).await.unwrap();
        assert_eq!(r, tokio::io::Ready::WRITABLE);
        s.send(b"anyone?").await.unwrap();
        assert!(within(s.ready(Interest::ERROR)).await.unwrap().is_error());
        let r = within(s.ready(Interest::WRITABLE)).await.unwrap();
        assert!(r.is_writable() && r.is_write_closed(), "{r:?}");
        within(s.writable()).await.unwrap();
        let e = s.try_send(b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert!(s.take_error().unwrap().is_none());
        let r = within(s.ready(Interest::WRITABLE)).await.unwrap();
        assert_eq!(r, tokio::io::Ready::WRITABLE);
    })
    .await;
}

/// tokio's peeks, `ready`, the `BufMut` receives and `set_tos`: the sender learned without
/// a buffer and the datagram left queued; `ready` for reading and writing; a datagram put
/// whole into a growing buffer, cut to a fixed one's room; `set_tos`'s range (the kernel
/// test `kernel_udp_reads_the_ttl_and_tos_we_set_both_families` reads the byte itself).
#[tokio::test]
async fn peeks_ready_bufmut_receives_and_tos() {
    within(async {
        let (client, server) = stacks(false);
        let rx = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9002))
            .await
            .unwrap();
        let tx = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        tx.connect(SocketAddr::new(SERVER, 9002)).await.unwrap();
        let from = tx.local_addr().unwrap();
        assert_eq!(
            rx.try_peek_sender().unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        let ready = rx.ready(Interest::WRITABLE).await.unwrap();
        assert!(ready.is_writable() && !ready.is_readable());

        assert_eq!(tx.tos().unwrap(), 0);
        tx.set_tos(0xb8 | 0b01).unwrap();
        assert_eq!(tx.tos().unwrap(), 0xb9);
        // IP_TOS keeps the low eight bits of its int, as Linux stores it in a byte.
        tx.set_tos(0x100 | 0xb9).unwrap();
        assert_eq!(tx.tos().unwrap(), 0xb9);
        // tokio 1.54's family-specific names: IP_TOS on this IPv4 socket; IPV6_TCLASS fails
        // on it as on Linux (ENOPROTOOPT to set, EOPNOTSUPP to read).
        tx.set_tos_v4(0x28).unwrap();
        assert_eq!((tx.tos_v4().unwrap(), tx.tos().unwrap()), (0x28, 0x28));
        let e = tx.set_tclass_v6(0xb8).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        let e = tx.tclass_v6().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP));
        assert_eq!(tx.tos().unwrap(), 0x28);
        tx.set_tos(0xb9).unwrap();
        assert!(!tx.broadcast().unwrap());
        let big: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
        tx.send(&big).await.unwrap();
        tx.send(b"second").await.unwrap();

        let ready = within(rx.ready(Interest::READABLE)).await.unwrap();
        assert!(ready.is_readable() && !ready.is_writable());
        let both = rx
            .ready(Interest::READABLE | Interest::WRITABLE)
            .await
            .unwrap();
        assert!(both.is_readable() && both.is_writable(), "{both:?}");
        assert_eq!(within(rx.peek_sender()).await.unwrap(), from);
        assert_eq!(rx.try_peek_sender().unwrap(), from);
        let polled = within(std::future::poll_fn(|cx| rx.poll_peek_sender(cx)))
            .await
            .unwrap();
        assert_eq!(polled, from);
        let mut head = [0u8; 4];
        assert_eq!(within(rx.peek(&mut head)).await.unwrap(), 4);
        assert_eq!(rx.try_peek(&mut head).unwrap(), 4);
        assert_eq!(head, big[..4]);

        // Into a `BytesMut` with room for it: the whole datagram.
        let mut room = BytesMut::with_capacity(2048);
        let (n, sender) = within(rx.recv_buf_from(&mut room)).await.unwrap();
        assert_eq!((n, sender), (1200, from));
        assert_eq!(&room[..], &big[..]);
        // Into a fixed slice: what fits; the rest of that datagram is gone.
        let mut fixed = [0u8; 3];
        assert_eq!(rx.try_recv_buf(&mut &mut fixed[..]).unwrap(), 3);
        assert_eq!(&fixed, b"sec");
        assert_eq!(
            rx.try_recv_buf_from(&mut room).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );

        // As tokio's, into the buffer's next chunk only, never grown to fit (measured with
        // tokio on Linux: 16 bytes of 100 into `Vec::with_capacity(16)`, 64 into
        // `Vec::new()`, the room `BufMut` reserves, 10 into `BytesMut::with_capacity(10)`).
        tx.send(&big[..100]).await.unwrap();
        tx.send(&big[..100]).await.unwrap();
        tx.send(&big[..100]).await.unwrap();
        let mut vec = Vec::with_capacity(16);
        assert_eq!(within(rx.recv_buf(&mut vec)).await.unwrap(), 16);
        assert_eq!(vec, big[..16]);
        let mut vec = Vec::new();
        assert_eq!(within(rx.recv_buf(&mut vec)).await.unwrap(), 64);
        assert_eq!(vec, big[..64]);
        let mut small = BytesMut::with_capacity(10);
        let (n, _) = within(rx.recv_buf_from(&mut small)).await.unwrap();
        assert_eq!((n, &small[..]), (10, &big[..10]));
    })
    .await;
}

#[tokio::test]
async fn connected_socket_is_refused_and_drop_frees_the_port() {
    within(async {
        let (client, server) = stacks(false);
        let s = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        s.connect(SocketAddr::new(SERVER, 9)).await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), SocketAddr::new(SERVER, 9));
        s.send(b"hello?").await.unwrap();
        let mut buf = [0u8; 16];
        let e = s.recv(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(server.stats().udp_port_unreachable_sent, 1);

        let addr = SocketAddr::new(SERVER, 53);
        let a = UdpSocket::bind(&server, addr).await.unwrap();
        let e = UdpSocket::bind(&server, addr).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(a);
        let _b = UdpSocket::bind(&server, addr).await.unwrap();
        let unconnected = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        let e = unconnected.peer_addr().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotConnected);
        let e = unconnected.send_to(&[0u8; 65_508], addr).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "message too long");
    })
    .await;
}

/// A pending ICMP error as Linux keeps it (measured with tokio on Linux): a receive with a
/// datagram behind it reports the error first, once, then the datagram (`__skb_recv_udp`
/// asks `sock_error` before the queue); connecting elsewhere leaves it pending
/// (`ip4_datagram_connect` does not touch `sk_err`).
#[tokio::test]
async fn a_pending_error_comes_before_a_datagram_and_outlives_a_connect() {
    within(async {
        let (client, server) = stacks(false);
        let closed = SocketAddr::new(SERVER, 9401);
        let s = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        s.connect(closed).await.unwrap();
        s.send(b"anyone?").await.unwrap();
        assert!(within(s.ready(Interest::ERROR)).await.unwrap().is_error());
        // The port opens and answers: the datagram is readable, the error still first.
        let peer = UdpSocket::bind(&server, closed).await.unwrap();
        peer.send_to(b"here", s.local_addr().unwrap())
            .await
            .unwrap();
        within(s.readable()).await.unwrap();
        let mut buf = [0u8; 16];
        let e = s.try_recv(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
        assert_eq!(s.try_recv(&mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"here");
        assert!(s.take_error().unwrap().is_none());

        // Refused again, then connected to the port that answers: still pending.
        drop(peer);
        s.send(b"again?").await.unwrap();
        assert!(within(s.ready(Interest::ERROR)).await.unwrap().is_error());
        let open = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9402))
            .await
            .unwrap();
        s.connect(open.local_addr().unwrap()).await.unwrap();
        let e = s.take_error().unwrap().expect("kept across the connect");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    })
    .await;
}

/// `bind`, `connect` and `send_to` take what tokio::net's do: strings and `(host, port)`
/// pairs; `send_to` uses the first of several addresses, `bind` the first that binds. Host
/// names are refused, never looked up.
#[tokio::test]
async fn addresses_as_tokio_net_takes_them_but_no_names() {
    within(async {
        let (client, server) = stacks(false);
        let echo = UdpSocket::bind(&server, ("198.18.0.1", 5353))
            .await
            .unwrap();
        // The first address is not the client's own: the second binds.
        let tries: [SocketAddr; 2] = [
            "198.18.0.9:0".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
        ];
        let s = UdpSocket::bind(&client, &tries[..]).await.unwrap();
        let two = ["198.18.0.1:5353".to_string(), "198.18.0.1:9".to_string()];
        let first: Vec<SocketAddr> = two.iter().map(|a| a.parse().unwrap()).collect();
        s.send_to(b"one", &first[..]).await.unwrap();
        let mut buf = [0u8; 8];
        let (n, from) = echo.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        echo.send_to(b"two", from.to_string()).await.unwrap();
        let (n, _) = s.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"two");
        s.connect("198.18.0.1:5353").await.unwrap();
        assert_eq!(s.peer_addr().unwrap(), SocketAddr::new(SERVER, 5353));
        for e in [
            s.send_to(b"x", "dns.example:53").await.unwrap_err(),
            s.connect(("dns.example", 53)).await.unwrap_err(),
            UdpSocket::bind(&client, "localhost:0").await.unwrap_err(),
        ] {
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
        let none: &[SocketAddr] = &[];
        let e = s.send_to(b"x", none).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

        // An IPv4-mapped address binds its IPv4 one, as a Linux IPv6 socket does, and the
        // socket shows its addresses mapped.
        let mapped = UdpSocket::bind(&server, "[::ffff:198.18.0.1]:5354")
            .await
            .unwrap();
        assert_eq!(
            mapped.local_addr().unwrap(),
            "[::ffff:198.18.0.1]:5354".parse().unwrap()
        );
        let e = UdpSocket::bind(&server, "198.18.0.1:5354")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        s.send_to(b"three", "198.18.0.1:5354").await.unwrap();
        let (n, from) = mapped.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"three");
        let own = s.local_addr().unwrap();
        let own_mapped = SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(198, 18, 0, 2).to_ipv6_mapped()),
            own.port(),
        );
        assert_eq!(from, own_mapped);
    })
    .await;
}

#[tokio::test]
async fn interceptor_answers_from_the_original_destination() {
    within(async {
        let (client, proxy) = stacks(true);
        assert!(client.intercept_udp().is_err());
        let interceptor = proxy.intercept_udp().unwrap();
        let server = tokio::spawn({
            let interceptor = interceptor.clone();
            async move {
                let mut buf = [0u8; 1500];
                for _ in 0..3 {
                    let d = interceptor.recv(&mut buf).await.unwrap();
                    let reply = [&buf[..d.len], d.dst.to_string().as_bytes()].concat();
                    interceptor.send_from(&reply, d.dst, d.src).await.unwrap();
                }
            }
        });
        let socket = Arc::new(UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap());
        for dst in ["198.19.0.53:53", "198.19.1.1:443", "198.19.200.7:9"] {
            let dst: SocketAddr = dst.parse().unwrap();
            socket.send_to(b"q:", dst).await.unwrap();
            let mut buf = [0u8; 64];
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, dst);
            assert_eq!(&buf[..n], format!("q:{dst}").as_bytes());
        }
        server.await.unwrap();
        assert_eq!(proxy.stats().udp_intercepted, 3);
    })
    .await;
}

/// UDP is caught only while an interceptor lives: before the first and after the last,
/// a datagram no socket takes meets a closed port (a connected client socket gets
/// `ConnectionRefused`), and nothing is left queued.
#[tokio::test]
async fn datagrams_are_caught_only_while_an_interceptor_lives() {
    within(async {
        let (client, proxy) = stacks(true);
        let dst: SocketAddr = "198.19.0.53:53".parse().unwrap();
        let socket = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        socket.connect(dst).await.unwrap();
        let mut buf = [0u8; 16];
        socket.send(b"early").await.unwrap();
        let e = socket.recv(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);

        let first = proxy.intercept_udp().unwrap();
        let second = first.clone();
        drop(first);
        socket.send(b"caught").await.unwrap();
        let d = second.recv(&mut buf).await.unwrap();
        assert_eq!((&buf[..d.len], d.dst), (&b"caught"[..], dst));

        // Left unread when the last interceptor goes: dropped, memory given back.
        socket.send(b"unread").await.unwrap();
        let queued = async {
            while proxy.memory_usage().buffered == 0 {
                tokio::task::yield_now().await;
            }
        };
        queued.await;
        drop(second);
        assert_eq!(proxy.memory_usage().buffered, 0);
        socket.send(b"late").await.unwrap();
        let e = socket.recv(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    })
    .await;
}

/// `Stack::shutdown` ends a UDP interceptor's wait, as it ends the TCP interceptor's: a
/// relay that shuts its stack down and joins its loops sees the UDP loop end too, after the
/// datagrams already queued. Before, `recv` waited on, holding the stack.
#[tokio::test]
async fn shutdown_ends_a_udp_interceptors_wait_after_what_was_queued() {
    within(async {
        let (client, proxy) = stacks(true);
        let interceptor = proxy.intercept_udp().unwrap();
        let socket = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        let dst: SocketAddr = "198.19.0.53:53".parse().unwrap();
        socket.send_to(b"queued", dst).await.unwrap();
        while proxy.memory_usage().buffered == 0 {
            tokio::task::yield_now().await;
        }
        let waiting = tokio::spawn({
            let interceptor = interceptor.clone();
            async move {
                let mut buf = [0u8; 64];
                let first = interceptor
                    .recv(&mut buf)
                    .await
                    .map(|d| buf[..d.len].to_vec());
                (first, interceptor.recv(&mut buf).await.map(|d| d.len))
            }
        });
        tokio::task::yield_now().await;
        proxy.shutdown(Duration::from_secs(1)).await.unwrap();
        let (first, second) = waiting.await.unwrap();
        assert_eq!(first.unwrap(), b"queued");
        assert_eq!(second.unwrap_err().kind(), io::ErrorKind::NotConnected);
    })
    .await;
}

/// Sockets and interceptors are shared between tasks, as tokio's are.
#[test]
fn handles_are_send_and_sync() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<UdpSocket>();
    shared::<synack_tokio::UdpInterceptor>();
    shared::<synack_tokio::InterceptedDatagram>();
}

/// Two tasks reading one socket through an `Arc` share its datagrams: each is read once.
#[tokio::test]
async fn two_readers_share_one_socket() {
    within(async {
        let (client, server) = stacks(false);
        let rx = Arc::new(
            UdpSocket::bind(&server, SocketAddr::new(SERVER, 9100))
                .await
                .unwrap(),
        );
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let rx = Arc::clone(&rx);
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 8];
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(300), rx.recv(&mut buf)).await
                    {
                        got.push(buf[..n].to_vec());
                    }
                    got
                })
            })
            .collect();
        let tx = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        for i in 0..20u8 {
            tx.send_to(&[i], SocketAddr::new(SERVER, 9100))
                .await
                .unwrap();
            tokio::task::yield_now().await;
        }
        let mut all = Vec::new();
        for r in readers {
            all.extend(r.await.unwrap());
        }
        all.sort();
        assert_eq!(all, (0..20u8).map(|i| vec![i]).collect::<Vec<_>>());
    })
    .await;
}

/// `poll_recv_from` into an uninitialised buffer: a datagram longer than it is truncated
/// to it, as `recv_from(2)` truncates, and a shorter one initialises only its own bytes.
#[tokio::test]
async fn recv_into_uninitialised_buffers_truncates_and_zeroes_nothing() {
    within(async {
        let (client, server) = stacks(false);
        let rx = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9003))
            .await
            .unwrap();
        let tx = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        let datagram: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..2 {
            tx.send_to(&datagram, SocketAddr::new(SERVER, 9003))
                .await
                .unwrap();
        }
        let mut small = vec![std::mem::MaybeUninit::<u8>::uninit(); 600];
        let mut buf = tokio::io::ReadBuf::uninit(&mut small);
        let from = std::future::poll_fn(|cx| rx.poll_recv_from(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(from.ip(), CLIENT);
        assert_eq!(buf.filled(), &datagram[..600]);
        let mut large = vec![std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        let mut buf = tokio::io::ReadBuf::uninit(&mut large);
        std::future::poll_fn(|cx| rx.poll_recv_from(cx, &mut buf))
            .await
            .unwrap();
        assert_eq!(buf.filled(), &datagram[..]);
        assert_eq!(buf.initialized().len(), datagram.len());
    })
    .await;
}

/// Multicast between two stacks over the memory link, with tokio's methods: a member hears
/// the group and a non-member socket elsewhere does not; the options answer as Linux's
/// (through socket2, as tokio passes them): an interface that is not ours is ENODEV to a join
/// and EADDRNOTAVAIL to a leave, a TTL of `u32::MAX` (tokio's -1) restores the default, 256
/// is `InvalidInput`, an IPv6 interface index but 0 is ENODEV.
#[tokio::test]
async fn multicast_between_stacks_and_the_options_as_linux() {
    let (client, server) = stacks(false);
    within(async {
        let group = Ipv4Addr::new(239, 7, 7, 7);
        let member = UdpSocket::bind(&server, "0.0.0.0:7700").await.unwrap();
        let foreign = Ipv4Addr::new(198, 18, 9, 9);
        let e = member.join_multicast_v4(group, foreign).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        member
            .join_multicast_v4(group, Ipv4Addr::UNSPECIFIED)
            .unwrap();
        let e = member.leave_multicast_v4(group, foreign).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrNotAvailable);
        let e = member
            .join_multicast_v6(&"ff0e::7".parse().unwrap(), 3)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));

        let tx = UdpSocket::bind(&client, "0.0.0.0:0").await.unwrap();
        assert_eq!(tx.multicast_ttl_v4().unwrap(), 1);
        assert!(tx.multicast_loop_v4().unwrap());
        tx.set_multicast_ttl_v4(9).unwrap();
        assert_eq!(tx.multicast_ttl_v4().unwrap(), 9);
        tx.set_multicast_ttl_v4(u32::MAX).unwrap();
        assert_eq!(tx.multicast_ttl_v4().unwrap(), 1);
        let e = tx.set_multicast_ttl_v4(256).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);

        let to = SocketAddr::new(group.into(), 7700);
        tx.send_to(b"to the group", to).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = member.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..n], from.ip()), (&b"to the group"[..], CLIENT));

        // Left: the group is nobody's on the server, and the next datagram is not taken in.
        member
            .leave_multicast_v4(group, Ipv4Addr::UNSPECIFIED)
            .unwrap();
        let dropped = server.stats().drop_not_for_us;
        tx.send_to(b"unheard", to).await.unwrap();
        for _ in 0..100 {
            if server.stats().drop_not_for_us > dropped {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(server.stats().drop_not_for_us, dropped + 1);
        let e = member.try_recv_from(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    })
    .await;
}

/// The `poll_` forms wake only the latest call's waker, as tokio's: a caller polling with a
/// new waker each time (each future of a `FuturesUnordered`) left every one of them in the
/// socket's lists, and a `poll_send_to` that parked for room joined the receivers' list too,
/// which a send-only socket never empties. The latest waker is still woken.
#[tokio::test]
async fn poll_calls_keep_only_the_latest_waker() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Wake, Waker};
    struct Holding(#[allow(dead_code)] Arc<()>, AtomicBool);
    impl Wake for Holding {
        fn wake(self: Arc<Self>) {
            self.1.store(true, Ordering::SeqCst);
        }
    }
    within(async {
        let (client, server) = stacks(false);
        let sink = UdpSocket::bind(&client, SocketAddr::new(CLIENT, 9300))
            .await
            .unwrap();
        let to = sink.local_addr().unwrap();
        let tx = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9301))
            .await
            .unwrap();
        let (sent, mut parked) = (Arc::new(()), 0);
        for _ in 0..200 {
            // Fill the send queue without letting the driver run, then park a send.
            while tx.try_send_to(&[5u8; 1200], to).is_ok() {}
            let waker = Waker::from(Arc::new(Holding(Arc::clone(&sent), AtomicBool::new(false))));
            let r = tx.poll_send_to(&mut Context::from_waker(&waker), &[6u8; 1200], to);
            parked += usize::from(r.is_pending());
            tokio::time::sleep(Duration::from_millis(1)).await; // the driver drains it
        }
        assert!(parked > 100, "only {parked} of 200 sends parked");
        let rx = UdpSocket::bind(&server, SocketAddr::new(SERVER, 9302))
            .await
            .unwrap();
        let received = Arc::new(());
        let mut buf = [0u8; 64];
        let mut last = None;
        for _ in 0..10_000 {
            let holding = Arc::new(Holding(Arc::clone(&received), AtomicBool::new(false)));
            let waker = Waker::from(Arc::clone(&holding));
            let mut read = tokio::io::ReadBuf::new(&mut buf);
            let r = rx.poll_recv_from(&mut Context::from_waker(&waker), &mut read);
            assert!(r.is_pending());
            last = Some(holding);
        }
        let (kept_send, kept_recv) = (
            Arc::strong_count(&sent) - 1,
            Arc::strong_count(&received) - 1,
        );
        assert!(
            kept_send <= 1 && kept_recv <= 1,
            "wakers kept: {kept_send} of {parked} parked poll_send_to, \
             {kept_recv} of 10,000 poll_recv_from"
        );
        // The latest is still listed: a datagram wakes it.
        sink.send_to(b"wake", SocketAddr::new(SERVER, 9302))
            .await
            .unwrap();
        let last = last.unwrap();
        for _ in 0..1000 {
            if last.1.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(
            last.1.load(Ordering::SeqCst),
            "the latest waker was not woken"
        );
    })
    .await;
}
