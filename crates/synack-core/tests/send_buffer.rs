//! The send buffer as the application sees it, in virtual time: how much a write takes
//! (bytes, or Linux's skbs with `Config::skb_accounting`), TCP_NOTSENT_LOWAT, when a waiting
//! writer is told `Writable`, and the time `Endpoint::info` says the sender spent busy,
//! limited by the peer's window or by the send buffer.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{Config, ConnectionHandle, Error, Event, SeqNumber};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;

/// A connection opened to a peer that offers `window` (no scaling) and an MSS of 1000.
struct Conn {
    h: Harness,
    c: ConnectionHandle,
    us: SocketAddr,
    peer: SocketAddr,
    /// Our first data byte's sequence number.
    base: SeqNumber,
}

impl Conn {
    fn open(mut config: Config, window: u16) -> Conn {
        config.seed(Some([7; 32])).gso_max_size(65535);
        let mut h = Harness::new(config);
        let peer = SocketAddr::new(PEER, 80);
        let c = h.ep.connect(h.now, peer).unwrap();
        let syn = h.one();
        let sa = Out::new(SYN | ACK, 10_000, 0)
            .ackn(syn.seq + 1)
            .mss(1000)
            .wscale(0)
            .window(window);
        h.inject(peer, syn.src, sa);
        assert!(h.one().is(ACK));
        let _ = h.events();
        Conn {
            h,
            c,
            us: syn.src,
            peer,
            base: syn.seq + 1,
        }
    }

    /// The peer acknowledges our first `bytes` data bytes and offers `window`.
    fn ack(&mut self, bytes: usize, window: u16) {
        let o = Out::new(ACK, 10_001, 0)
            .ackn(self.base + bytes)
            .window(window);
        self.h.inject(self.peer, self.us, o);
    }

    /// Payload bytes sent now.
    fn sent(&mut self) -> usize {
        self.h.drain().iter().map(|s| s.payload.len()).sum()
    }

    /// The payload of each packet sent now, a segmentation-offload packet counted whole.
    fn packets(&mut self) -> Vec<usize> {
        let mut buf = vec![0u8; 65_536];
        let mut lens = Vec::new();
        self.h.drain_with(&mut buf, |packet, _| {
            if let Some(seg) = parse_out(packet) {
                lens.push(seg.payload.len());
            }
            std::ops::ControlFlow::Continue(())
        });
        lens
    }

    fn writable(&mut self) -> bool {
        self.h.events().contains(&Event::Writable(self.c))
    }
}

fn linux() -> Config {
    Config::linux()
}

/// Linux's `blocking-write.pkt`: with skb accounting a write fills whole skbs of the size
/// goal (half the peer's window: 25 000 bytes) while less than the buffer is charged, the
/// first goes out as far as the initial window lets it and its rest takes more data; a
/// waiting writer is woken only once a third of the buffer is free again.
#[test]
fn skb_accounting_sizes_writes_and_wakes_as_linux() {
    let mut k = Conn::open(linux(), 50_000);
    k.h.ep.set_send_buffer(k.c, 42_000).unwrap();
    // skb 1 (25 000) is pushed 10 000 far and split; its rest takes 10 000 more; skb 3
    // takes 25 000 with 2 skbs' overhead + 35 000 charged < 42 000, and then it is full.
    assert_eq!(k.h.ep.send(k.c, &[1; 61_000]).unwrap(), 60_000);
    assert_eq!(k.h.ep.send(k.c, &[1; 1000]), Err(Error::WouldBlock));
    assert_eq!(k.sent(), 10_000);
    k.ack(10_000, 50_000);
    assert_eq!(k.sent(), 20_000);
    assert!(!k.writable(), "50 000 bytes in three skbs still charged");
    k.ack(30_000, 50_000);
    assert_eq!(k.sent(), 30_000);
    assert!(
        !k.writable(),
        "30 000 bytes in two skbs: more than 2/3 of the buffer"
    );
    k.ack(36_000, 50_000);
    assert!(k.writable(), "24 000 bytes in one skb");
    assert_eq!(k.h.ep.send(k.c, &[1; 1000]).unwrap(), 1000);
}

/// Linux's `timestamping/partial.pkt`: under a send buffer of Linux's minimum (4608 bytes
/// charged) and a peer window of 2000, the size goal is one segment (half the window), and
/// each skb the write fills at the head of the unsent data is pushed on its own while the
/// write goes on (`tcp_push_one`): two packets of one segment each, never one packet of
/// two, though segmentation offload could carry it. The write ends at the third skb.
#[test]
fn skb_accounting_sends_each_skb_a_write_pushed_as_its_own_packet() {
    let mut k = Conn::open(linux(), 2000);
    k.h.ep.set_send_buffer(k.c, 4608).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 10_000]).unwrap(), 3000);
    assert_eq!(k.packets(), vec![1000, 1000]);
    // The third skb waits for the window; once open, it goes.
    k.ack(2000, 20_000);
    assert_eq!(k.packets(), vec![1000]);
}

/// Where no write pushed an skb on its own, queued skbs still leave together: the peer's
/// window held them all back while they were written, and when it opens the sender fills
/// the packet from as many skbs as it takes (Linux 6.10's `tcp_grow_skb`).
#[test]
fn skb_accounting_joins_skbs_that_no_push_sent() {
    let mut k = Conn::open(linux(), 2000);
    k.h.ep.set_send_buffer(k.c, 4608).unwrap();
    // A zero window: nothing may be pushed while the write goes on.
    k.ack(0, 0);
    let _ = k.h.drain();
    assert_eq!(k.h.ep.send(k.c, &[1; 10_000]).unwrap(), 3000);
    assert!(k.h.drain().iter().all(|s| s.payload.is_empty()));
    k.ack(0, 2000);
    let lens = k.packets();
    assert_eq!(lens, vec![2000]);
}

/// Without skb accounting the buffer holds its size in bytes, and a waiting writer is
/// woken once a third of it is free (Linux's `sk_stream_write_space`), not per ACK.
#[test]
fn writable_waits_for_a_third_of_the_buffer() {
    let mut k = Conn::open(common::config(), 65_535);
    k.h.ep.set_send_buffer(k.c, 30_000).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 40_000]).unwrap(), 30_000);
    assert_eq!(k.sent(), 10_000);
    k.ack(5_000, 65_535);
    let _ = k.sent();
    assert!(!k.writable(), "a sixth free");
    k.ack(10_000, 65_535);
    assert!(k.writable(), "a third free");
    // Nobody waits any more: no more wake-ups.
    k.ack(20_000, 65_535);
    assert!(!k.writable());
}

/// TCP_NOTSENT_LOWAT: a write stops at the mark's bytes unsent, and the writer is woken
/// once fewer than half as many are (Linux's `tcp_stream_memory_free` with `wake`).
#[test]
fn notsent_lowat_bounds_unsent_bytes() {
    let mut k = Conn::open(common::config(), 2000);
    k.h.ep.set_notsent_lowat(k.c, Some(4000)).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 59_000]).unwrap(), 4000);
    assert_eq!(k.sent(), 2000, "the peer's window");
    assert!(!k.writable(), "2000 unsent: not under half the mark");
    k.ack(2000, 1000);
    assert_eq!(k.sent(), 1000);
    assert!(k.writable(), "1000 unsent");
    assert_eq!(k.h.ep.send(k.c, &[1; 59_000]).unwrap(), 3000);
}

/// A mark of 0 is no mark, as in Linux (`tcp_notsent_lowat`): taken literally it would allow
/// no write ever, and a writer would wait for a `Writable` that never comes.
#[test]
fn notsent_lowat_zero_is_the_default() {
    let mut k = Conn::open(common::config(), 2000);
    k.h.ep.set_notsent_lowat(k.c, Some(0)).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 5000]).unwrap(), 5000);
    let mut cfg = common::config();
    cfg.notsent_lowat(Some(0));
    let mut k = Conn::open(cfg, 2000);
    assert_eq!(k.h.ep.send(k.c, &[1; 5000]).unwrap(), 5000);
}

/// With skb accounting the mark is checked per skb, as Linux's `tcp_sendmsg` checks it:
/// `notsent-lowat-setsockopt.pkt`'s 26 000 of a 59 000-byte write.
#[test]
fn notsent_lowat_with_skb_accounting() {
    let mut k = Conn::open(linux(), 32_792);
    k.h.ep.set_notsent_lowat(k.c, Some(4000)).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 59_000]).unwrap(), 26_000);
    assert_eq!(k.sent(), 10_000);
}

/// `TcpInfo::rwnd_limited` counts while the peer's window, not the congestion window,
/// holds data back; `busy_time` while anything is queued or in flight.
#[test]
fn info_counts_busy_and_rwnd_limited_time() {
    let mut k = Conn::open(linux(), 0);
    let start = k.h.now;
    let info = k.h.ep.info(k.h.now, k.c).unwrap();
    assert_eq!(
        (info.busy_time, info.rwnd_limited),
        (Duration::ZERO, Duration::ZERO)
    );
    assert_eq!(k.h.ep.send(k.c, &[1; 1000]).unwrap(), 1000);
    assert_eq!(k.sent(), 0);
    k.h.advance(Duration::from_millis(100));
    let info = k.h.ep.info(k.h.now, k.c).unwrap();
    assert_eq!(info.rwnd_limited, Duration::from_millis(100));
    k.ack(0, 2000);
    assert_eq!(k.sent(), 1000);
    k.h.advance(Duration::from_millis(30));
    k.ack(1000, 2000);
    let _ = k.sent();
    let busy = k.h.now - start;
    k.h.advance(Duration::from_millis(50));
    let info = k.h.ep.info(k.h.now, k.c).unwrap();
    assert_eq!(info.rwnd_limited, Duration::from_millis(100));
    assert_eq!(info.busy_time, busy, "idle once all is acknowledged");
    assert_eq!(info.sndbuf_limited, Duration::ZERO);
}

/// `TcpInfo::sndbuf_limited` counts while all that is queued is sent, the congestion
/// window has room, and the application waits for buffer space.
#[test]
fn info_counts_sndbuf_limited_time() {
    let mut k = Conn::open(common::config(), 65_535);
    k.h.ep.set_send_buffer(k.c, 4000).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 10_000]).unwrap(), 4000);
    assert_eq!(k.sent(), 4000);
    k.h.advance(Duration::from_millis(20));
    k.ack(4000, 65_535);
    assert!(k.writable());
    let info = k.h.ep.info(k.h.now, k.c).unwrap();
    assert_eq!(info.sndbuf_limited, Duration::from_millis(20));
    assert_eq!(info.busy_time, Duration::from_millis(20));
}

/// With skb accounting the buffer starts as Linux's `tcp_init_buffer_space` sets it: room
/// for twice the initial window of ten segments at 2304 bytes of memory each (a 1000-byte
/// MSS), above `tcp_wmem[1]`'s 16 KiB; and grows with the congestion window when a waiting
/// writer finds the window not full (`tcp_new_space`), unless `SO_SNDBUF` pinned it.
#[test]
fn skb_accounting_grows_the_buffer_with_the_window() {
    let mut k = Conn::open(linux(), 10_000);
    assert_eq!(k.h.ep.info(k.h.now, k.c).unwrap().send_buffer, 46_080);
    // skbs of 5000 (half the peer's window) while less than 46 080 is charged: eight.
    assert_eq!(k.h.ep.send(k.c, &[1; 100_000]).unwrap(), 40_000);
    assert_eq!(k.sent(), 10_000);
    // The ACK doubles the congestion window to 20 segments, the peer's keeps ten in
    // flight: the congestion window is not full, so the buffer grows to twice 20
    // segments' memory, and the writer is woken.
    k.ack(10_000, 10_000);
    assert_eq!(k.sent(), 10_000);
    assert_eq!(k.h.ep.info(k.h.now, k.c).unwrap().send_buffer, 92_160);
    assert!(k.writable());

    let mut k = Conn::open(linux(), 10_000);
    k.h.ep.set_send_buffer(k.c, 46_080).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 100_000]).unwrap(), 40_000);
    let _ = k.sent();
    k.ack(10_000, 10_000);
    let _ = k.sent();
    assert_eq!(
        k.h.ep.info(k.h.now, k.c).unwrap().send_buffer,
        46_080,
        "pinned"
    );
    assert!(!k.writable());
}

// === PSH kept per skb (Config::skb_accounting) ==================================================

/// Where the data segments sent now end, as offsets from the first data byte, for those that
/// carry PSH.
fn pushed_ends(k: &mut Conn) -> Vec<usize> {
    let base = k.base;
    k.h.drain()
        .iter()
        .filter(|s| !s.payload.is_empty() && s.flags.contains(TcpFlags::PSH))
        .map(|s| s.seq + s.payload.len() - base)
        .collect()
}

/// packetdrill's cubic-rto-ss-ca-cwnd-bump, in its part about PSH: in a long write Linux marks
/// an skb filled to the size goal once the writes have run more than half the peer's
/// largest window past the last mark (`forced_push`, `tcp_mark_push` in
/// `tcp_sendmsg_locked`), and the last skb of the write at its end (`tcp_push`). A segment
/// carries the flag when it ends such an skb. Here the goal is 16 000 (half the window), the
/// first skb is pushed 10 000 far and its rest takes 10 000 more: 26 000 is 16 000 past the
/// start, and more than half the window.
#[test]
fn a_long_write_is_pushed_every_half_window_as_linux() {
    let mut k = Conn::open(linux(), 32_000);
    k.h.ep.set_send_buffer(k.c, 400_000).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 40_000]).unwrap(), 40_000);
    assert_eq!(pushed_ends(&mut k), Vec::<usize>::new(), "the first 10 000");
    k.ack(10_000, 32_000);
    assert_eq!(pushed_ends(&mut k), vec![26_000], "10 000 to 30 000");
    k.ack(30_000, 32_000);
    assert_eq!(pushed_ends(&mut k), vec![40_000], "the end of the write");
}

/// Without skb accounting only the end of a write (and of each multi-segment burst) is
/// pushed.
#[test]
fn the_default_profile_pushes_only_the_end_of_a_write() {
    let mut k = Conn::open(common::config(), 32_000);
    k.h.ep.set_send_buffer(k.c, 400_000).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 40_000]).unwrap(), 40_000);
    let _ = k.sent();
    k.ack(10_000, 32_000);
    assert_eq!(pushed_ends(&mut k), Vec::<usize>::new());
    k.ack(30_000, 32_000);
    assert_eq!(pushed_ends(&mut k), vec![40_000]);
}

/// A write whose first bytes go into the last skb takes that skb's PSH away
/// (`tcp_sendmsg_locked`: `if (!copied) tcp_flags &= ~TCPHDR_PSH`): a corked write of 700
/// is marked at its end, a second of 700 with `MSG_MORE` joins its skb and is not marked
/// (`tcp_push` marks nothing under `MSG_MORE`), so nothing carries PSH when TCP_NODELAY
/// pushes the lot.
#[test]
fn a_write_appended_to_the_last_skb_takes_its_push() {
    let mut k = Conn::open(linux(), 32_000);
    k.h.ep.set_cork(k.c, true).unwrap();
    assert_eq!(k.h.ep.send(k.c, &[1; 700]).unwrap(), 700);
    let more = synack_core::SendFlags::MORE;
    assert_eq!(k.h.ep.send_with(k.c, &[2; 700], more).unwrap(), 700);
    k.h.ep.set_cork(k.c, false).unwrap();
    k.h.ep.set_nodelay(k.c, true).unwrap();
    let base = k.base;
    let segs = k.h.drain();
    let sent: usize = segs.iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, 1400, "{segs:?}");
    let pushed: Vec<usize> = segs
        .iter()
        .filter(|s| s.flags.contains(TcpFlags::PSH))
        .map(|s| s.seq + s.payload.len() - base)
        .collect();
    assert_eq!(pushed, Vec::<usize>::new());
}

/// A retransmission carries the flags of the skb it comes from (`__tcp_retransmit_skb`
/// sends the skb as it stands): the first of two writes, resent after a timeout, is pushed
/// although it no longer ends the queue.
#[test]
fn a_retransmission_carries_the_push_of_its_skb() {
    let mut k = Conn::open(linux(), 32_000);
    assert_eq!(k.h.ep.send(k.c, &[1; 1000]).unwrap(), 1000);
    assert_eq!(pushed_ends(&mut k), vec![1000]);
    assert_eq!(k.h.ep.send(k.c, &[2; 1000]).unwrap(), 1000);
    assert_eq!(pushed_ends(&mut k), vec![2000]);
    let base = k.base;
    for _ in 0..4 {
        let (_, segs) = k.h.next_timeout();
        if let Some(first) = segs.iter().find(|s| s.seq == base) {
            assert!(first.flags.contains(TcpFlags::PSH), "{first:?}");
            return;
        }
    }
    panic!("the first segment was not resent");
}
