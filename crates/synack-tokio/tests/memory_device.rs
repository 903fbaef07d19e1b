//! The in-memory link on its own: FIFO order, backpressure and wake-ups, MTU, and the
//! unplugged-cable behaviour when one end is dropped. Polled by hand with a counting waker, so
//! every step is deterministic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use synack_core::{RecvMeta, Transmit};
use synack_tokio::device::{Device, DeviceCapabilities, MemoryDevice};

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counter() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter::default());
    (Arc::clone(&c), Waker::from(c))
}

/// The core's description of a plain packet of `len` bytes.
fn plain(len: usize) -> Transmit {
    Transmit::new(len)
}

fn send(dev: &mut MemoryDevice, waker: &Waker, packet: &[u8]) -> Poll<std::io::Result<()>> {
    dev.poll_send(
        &mut Context::from_waker(waker),
        packet,
        &plain(packet.len()),
    )
}

fn recv_meta(
    dev: &mut MemoryDevice,
    waker: &Waker,
    buf: &mut [u8],
) -> Poll<std::io::Result<RecvMeta>> {
    dev.poll_recv(&mut Context::from_waker(waker), buf)
}

fn recv(dev: &mut MemoryDevice, waker: &Waker, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
    recv_meta(dev, waker, buf).map_ok(|meta| meta.len)
}

#[test]
fn packets_arrive_whole_and_in_order_both_ways() {
    let (mut a, mut b) = MemoryDevice::pair();
    let (_, w) = counter();
    for i in 0..5u8 {
        assert!(matches!(send(&mut a, &w, &[i; 10]), Poll::Ready(Ok(()))));
    }
    assert!(matches!(send(&mut b, &w, b"back"), Poll::Ready(Ok(()))));
    assert_eq!(b.pending(), 5);
    let mut buf = [0u8; 1500];
    for i in 0..5u8 {
        match recv(&mut b, &w, &mut buf) {
            Poll::Ready(Ok(n)) => assert_eq!(&buf[..n], &[i; 10]),
            other => panic!("expected packet {i}, got {other:?}"),
        }
    }
    assert!(recv(&mut b, &w, &mut buf).is_pending());
    match recv(&mut a, &w, &mut buf) {
        Poll::Ready(Ok(n)) => assert_eq!(&buf[..n], b"back"),
        other => panic!("expected the reverse packet, got {other:?}"),
    }
}

#[test]
fn a_waiting_receiver_is_woken_by_a_send() {
    let (mut a, mut b) = MemoryDevice::pair();
    let (rx_count, rx_waker) = counter();
    let (_, tx_waker) = counter();
    let mut buf = [0u8; 64];
    assert!(recv(&mut b, &rx_waker, &mut buf).is_pending());
    assert_eq!(rx_count.0.load(Ordering::SeqCst), 0);
    assert!(send(&mut a, &tx_waker, b"x").is_ready());
    assert_eq!(rx_count.0.load(Ordering::SeqCst), 1);
}

#[test]
fn a_full_queue_applies_backpressure_and_wakes_the_sender_when_drained() {
    let (mut a, mut b) = MemoryDevice::pair_with(2, 1500);
    let (tx_count, tx_waker) = counter();
    let (_, rx_waker) = counter();
    assert!(send(&mut a, &tx_waker, b"1").is_ready());
    assert!(send(&mut a, &tx_waker, b"2").is_ready());
    // Third packet: no room, nothing dropped, the sender is parked.
    assert!(send(&mut a, &tx_waker, b"3").is_pending());
    assert_eq!(b.pending(), 2);
    assert_eq!(tx_count.0.load(Ordering::SeqCst), 0);

    let mut buf = [0u8; 8];
    assert!(matches!(
        recv(&mut b, &rx_waker, &mut buf),
        Poll::Ready(Ok(1))
    ));
    assert_eq!(buf[0], b'1');
    assert_eq!(
        tx_count.0.load(Ordering::SeqCst),
        1,
        "draining wakes the sender"
    );
    assert!(send(&mut a, &tx_waker, b"3").is_ready());

    let mut got = Vec::new();
    while let Poll::Ready(Ok(n)) = recv(&mut b, &rx_waker, &mut buf) {
        got.push(buf[..n].to_vec());
    }
    assert_eq!(got, vec![b"2".to_vec(), b"3".to_vec()]);
}

#[test]
fn packets_over_the_mtu_are_rejected() {
    let (mut a, b) = MemoryDevice::pair_with(4, 100);
    let (_, w) = counter();
    assert_eq!(a.capabilities().mtu, 100);
    match send(&mut a, &w, &[0; 101]) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(send(&mut a, &w, &[0; 100]).is_ready());
    assert_eq!(b.pending(), 1);
}

#[test]
fn a_short_receive_buffer_truncates() {
    let (mut a, mut b) = MemoryDevice::pair();
    let (_, w) = counter();
    assert!(send(&mut a, &w, b"abcdef").is_ready());
    let mut buf = [0u8; 4];
    assert!(matches!(recv(&mut b, &w, &mut buf), Poll::Ready(Ok(4))));
    assert_eq!(&buf, b"abcd");
}

#[test]
fn dropping_an_end_unplugs_the_cable() {
    let (mut a, b) = MemoryDevice::pair_with(1, 1500);
    let (tx_count, tx_waker) = counter();
    assert!(!a.peer_closed());
    assert!(send(&mut a, &tx_waker, b"1").is_ready());
    assert!(send(&mut a, &tx_waker, b"2").is_pending());
    drop(b);
    assert!(a.peer_closed());
    assert_eq!(
        tx_count.0.load(Ordering::SeqCst),
        1,
        "a parked sender is released"
    );
    // Sends now vanish instead of blocking forever; receives stay pending.
    for _ in 0..10 {
        assert!(matches!(send(&mut a, &tx_waker, b"x"), Poll::Ready(Ok(()))));
    }
    let mut buf = [0u8; 8];
    assert!(recv(&mut a, &tx_waker, &mut buf).is_pending());
}

#[test]
fn capabilities_say_what_the_link_does() {
    let (a, b) = MemoryDevice::pair_with(4, 1400);
    let caps = a.capabilities();
    assert_eq!(
        caps,
        DeviceCapabilities::new(1400)
            .with_gso_max_size(synack_tokio::device::memory::DEFAULT_GSO_MAX_SIZE)
    );
    // No checksum offload: every packet is summed and verified.
    assert!(!caps.rx_checksum && !caps.tx_checksum_partial);
    assert_eq!(
        b.with_gso_max_size(0).capabilities(),
        DeviceCapabilities::new(1400)
    );
}

#[test]
fn a_super_segment_crosses_whole_with_its_segment_size() {
    let (a, mut b) = MemoryDevice::pair_with(4, 1500);
    let mut a = a.with_gso_max_size(9000);
    let (_, w) = counter();
    let mut cx = Context::from_waker(&w);
    let gso = Transmit {
        segment_size: Some(1460),
        ..plain(5000)
    };
    assert!(matches!(
        a.poll_send(&mut cx, &[7; 5000], &gso),
        Poll::Ready(Ok(()))
    ));
    // Past gso_max_size, or partial checksums the link does not finish: refused.
    let big = Transmit {
        segment_size: Some(1460),
        ..plain(9001)
    };
    assert!(matches!(
        a.poll_send(&mut cx, &[7; 9001], &big),
        Poll::Ready(Err(_))
    ));
    let partial = Transmit {
        checksum_partial: true,
        ..plain(100)
    };
    assert!(matches!(
        a.poll_send(&mut cx, &[7; 100], &partial),
        Poll::Ready(Err(_))
    ));
    // A plain packet never exceeds the MTU, whatever the GSO size.
    assert!(matches!(
        a.poll_send(&mut cx, &[7; 1501], &plain(1501)),
        Poll::Ready(Err(_))
    ));
    assert!(a.poll_flush(&mut cx).is_ready());

    let mut buf = vec![0u8; 65575];
    match recv_meta(&mut b, &w, &mut buf) {
        Poll::Ready(Ok(meta)) => {
            assert_eq!(meta.len, 5000);
            assert_eq!(meta.segment_size, Some(1460));
            assert!(!meta.checksum_verified);
        }
        other => panic!("expected the super-segment, got {other:?}"),
    }
    assert!(recv(&mut b, &w, &mut buf).is_pending());
}
