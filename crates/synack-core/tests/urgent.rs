//! Urgent data received (RFC 9293 §3.8.5, RFC 6093) with Linux's semantics, against a
//! scripted peer in virtual time: the byte before the urgent pointer leaves the stream, reads
//! stop at the mark, `recv_urgent` hands it out once, `SO_OOBINLINE` keeps it in the stream,
//! and odd pointers never panic.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{ConnectionHandle, Error, SeqNumber};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;

struct Conn {
    h: Harness,
    c: ConnectionHandle,
    us: SocketAddr,
    peer: SocketAddr,
    our_nxt: SeqNumber,
    /// The peer's first data byte.
    isn1: SeqNumber,
}

impl Conn {
    fn open() -> Conn {
        let mut h = Harness::new(config());
        let peer = SocketAddr::new(PEER, 80);
        let c = h.ep.connect(h.now, peer).unwrap();
        let syn = h.one();
        let sa = Out::new(SYN | ACK, 10_000, 0)
            .ackn(syn.seq + 1)
            .mss(1000)
            .window(65535);
        h.inject(peer, syn.src, sa);
        let _ = h.drain();
        let _ = h.events();
        Conn {
            h,
            c,
            us: syn.src,
            peer,
            our_nxt: syn.seq + 1,
            isn1: SeqNumber(10_001),
        }
    }

    /// The peer's data at `offset` bytes into its stream, with URG and `ptr` if given.
    fn data(&mut self, offset: usize, d: &[u8], urg: Option<u16>) {
        let mut o = Out::new(ACK, 0, 0)
            .seqn(self.isn1 + offset)
            .ackn(self.our_nxt)
            .data(d);
        if let Some(p) = urg {
            o = o.urg(p);
        }
        self.h.inject(self.peer, self.us, o);
        let _ = self.h.drain();
    }

    fn recv(&mut self, len: usize) -> Result<Vec<u8>, Error> {
        let mut buf = vec![0u8; len];
        let n = self.h.ep.recv(self.h.now, self.c, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn mark(&self) -> Option<usize> {
        self.h.ep.urgent_mark(self.c).unwrap()
    }
}

#[test]
fn the_urgent_byte_leaves_the_stream_and_reads_stop_at_the_mark() {
    let mut k = Conn::open();
    // "abcdeXfgh" with the pointer one past X (RFC 6093 §3): X is urgent.
    k.data(0, b"abcdeXfgh", Some(6));
    assert_eq!(k.mark(), Some(5));
    assert!(k.h.ep.urgent_pending(k.c).unwrap());
    // A read that would cross the mark returns the bytes before it.
    assert_eq!(k.recv(100).unwrap(), b"abcde");
    assert_eq!(k.mark(), Some(0), "at the mark (SIOCATMARK)");
    // The urgent byte, once, out of band.
    assert_eq!(k.h.ep.peek_urgent(k.c), Ok(Some(b'X')));
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(Some(b'X')));
    assert_eq!(k.h.ep.recv_urgent(k.c), Err(Error::InvalidInput));
    assert!(!k.h.ep.urgent_pending(k.c).unwrap());
    // The next read skips it, and the mark is gone.
    assert_eq!(k.recv(100).unwrap(), b"fgh");
    assert_eq!(k.mark(), None);
    assert_eq!(k.recv(100), Err(Error::WouldBlock));
}

#[test]
fn a_read_into_a_bufmut_stops_at_the_mark_and_skips_the_byte() {
    let mut k = Conn::open();
    k.data(0, b"abcdeXfgh", Some(6));
    let mut buf = BytesMut::with_capacity(64);
    assert_eq!(k.h.ep.recv_buf(k.h.now, k.c, &mut buf), Ok(5));
    assert_eq!(&buf[..], b"abcde");
    assert_eq!(k.h.ep.recv_buf(k.h.now, k.c, &mut buf), Ok(3));
    assert_eq!(
        &buf[..],
        b"abcdefgh",
        "appended after the skipped urgent byte"
    );
    assert_eq!(
        k.h.ep.recv_buf(k.h.now, k.c, &mut buf),
        Err(Error::WouldBlock)
    );
}

#[test]
fn a_read_into_a_bufmut_takes_at_most_its_next_chunk() {
    let mut k = Conn::open();
    k.data(0, &[7; 300], None);
    // A fixed slice: what it holds. A full `Vec`: the room its `chunk_mut` makes.
    let mut small = [0u8; 100];
    assert_eq!(k.h.ep.recv_buf(k.h.now, k.c, &mut &mut small[..]), Ok(100));
    let mut full = Vec::with_capacity(8);
    full.extend_from_slice(&[1; 8]);
    let room = {
        let mut probe = full.clone();
        probe.chunk_mut().len()
    };
    let n = k.h.ep.recv_buf(k.h.now, k.c, &mut full).unwrap();
    assert_eq!(n, room.min(200));
    assert_eq!(full.len(), 8 + n);
    assert!(full[8..].iter().all(|&b| b == 7));
    assert_eq!(k.h.ep.recv_queue_len(k.c), Ok(200 - n));
}

#[test]
fn a_normal_read_skips_an_urgent_byte_never_read_out_of_band() {
    let mut k = Conn::open();
    k.data(0, b"abcX", Some(4));
    assert_eq!(k.recv(2).unwrap(), b"ab");
    assert_eq!(k.recv(100).unwrap(), b"c");
    // Only the urgent byte is left: not readable, and a read skips it and finds nothing.
    assert!(!k.h.ep.recv_ready(k.c).unwrap());
    assert_eq!(k.h.ep.recv_queue_len(k.c), Ok(1));
    assert_eq!(k.recv(100), Err(Error::WouldBlock));
    assert_eq!(k.h.ep.recv_queue_len(k.c), Ok(0));
    assert_eq!(k.mark(), None);
    // Too late for MSG_OOB: the mark was read past.
    assert_eq!(k.h.ep.recv_urgent(k.c), Err(Error::InvalidInput));
    k.data(4, b"rest", None);
    assert_eq!(k.recv(100).unwrap(), b"rest");
}

/// A read that only skips the urgent byte, with nothing after it to return, still changes
/// the connection (its emptied buffer arms the timer that gives the storage back), and the
/// endpoint schedules it as it does any read. Found by the endpoint fuzz target: the timer
/// stayed out of the endpoint's schedule, and its deadline came back, long past, once
/// something else touched the connection.
#[test]
fn a_read_that_only_skips_the_urgent_byte_is_scheduled_as_any_read() {
    let mut k = Conn::open();
    let mut d = vec![b'a'; 999];
    d.push(b'X');
    k.data(0, &d, Some(1000));
    assert_eq!(k.recv(2000).unwrap(), &d[..999]);
    // Whatever storage that read left idle is given back, the urgent byte's kept.
    k.h.advance(Duration::from_secs(2));
    assert_eq!(k.recv(100), Err(Error::WouldBlock));
    assert_eq!(k.h.ep.recv_queue_len(k.c), Ok(0));
    assert!(
        k.h.ep.poll_timeout().is_some(),
        "the emptied buffer's reclaim timer is on the endpoint's schedule"
    );
    k.h.advance(Duration::from_secs(10));
    // Anything that has the endpoint look at the connection again.
    k.data(1000, b"more", None);
    let now = k.h.now;
    let next = k.h.ep.poll_timeout();
    assert!(
        next.is_none_or(|t| t >= now),
        "a deadline at {next:?}, before now ({now:?})"
    );
    assert_eq!(k.recv(100).unwrap(), b"more");
}

#[test]
fn with_oobinline_the_byte_stays_in_the_stream() {
    let mut k = Conn::open();
    k.h.ep.set_oob_inline(k.c, true).unwrap();
    k.data(0, b"abXcd", Some(3));
    assert_eq!(k.h.ep.recv_urgent(k.c), Err(Error::InvalidInput));
    // The read still stops at the mark, then returns the urgent byte as data.
    assert_eq!(k.recv(100).unwrap(), b"ab");
    assert_eq!(k.mark(), Some(0));
    assert_eq!(k.recv(100).unwrap(), b"Xcd");
    assert_eq!(k.mark(), None);
}

#[test]
fn no_urgent_pointer_means_einval_for_msg_oob() {
    let mut k = Conn::open();
    k.data(0, b"plain", None);
    assert_eq!(k.h.ep.recv_urgent(k.c), Err(Error::InvalidInput));
    assert_eq!(k.mark(), None);
    assert_eq!(k.recv(100).unwrap(), b"plain");
}

#[test]
fn a_second_urgent_pointer_replaces_the_first() {
    let mut k = Conn::open();
    k.data(0, b"aXb", Some(2));
    k.data(3, b"cdYe", Some(3));
    // Only the newer mark counts: X is ordinary data now, Y is urgent.
    assert_eq!(k.mark(), Some(5));
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(Some(b'Y')));
    assert_eq!(k.recv(100).unwrap(), b"aXbcd");
    assert_eq!(k.recv(100).unwrap(), b"e");
}

#[test]
fn a_new_mark_while_the_reader_sits_at_the_old_byte_drops_that_byte() {
    let mut k = Conn::open();
    k.data(0, b"aXb", Some(2));
    assert_eq!(k.recv(100).unwrap(), b"a");
    assert_eq!(k.mark(), Some(0));
    k.data(3, b"Yc", Some(1));
    // X would have been skipped by the next read; the new mark does not bring it back.
    assert_eq!(k.mark(), Some(1));
    assert_eq!(k.recv(100).unwrap(), b"b");
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(Some(b'Y')));
    assert_eq!(k.recv(100).unwrap(), b"c");
}

#[test]
fn a_pointer_beyond_the_data_waits_for_the_byte() {
    let mut k = Conn::open();
    // The pointer says the urgent byte is the 10th; only 4 bytes came.
    k.data(0, b"abcd", Some(10));
    assert_eq!(k.mark(), Some(9));
    assert!(!k.h.ep.urgent_pending(k.c).unwrap());
    // The byte has not come: EAGAIN, never a block (Linux tcp_recv_urg).
    assert_eq!(k.h.ep.recv_urgent(k.c), Err(Error::WouldBlock));
    assert_eq!(k.recv(100).unwrap(), b"abcd");
    // The rest arrives, without URG: the byte is taken from it.
    k.data(4, b"efghiZjk", None);
    assert!(k.h.ep.urgent_pending(k.c).unwrap());
    assert_eq!(k.recv(100).unwrap(), b"efghi");
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(Some(b'Z')));
    assert_eq!(k.recv(100).unwrap(), b"jk");
}

#[test]
fn an_urgent_byte_arriving_out_of_order_is_caught() {
    let mut k = Conn::open();
    k.data(4, b"efZ", Some(3));
    assert_eq!(k.mark(), Some(6));
    assert!(k.h.ep.urgent_pending(k.c).unwrap());
    k.data(0, b"abcd", None);
    assert_eq!(k.recv(100).unwrap(), b"abcdef");
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(Some(b'Z')));
}

#[test]
fn stale_and_odd_pointers_are_ignored_without_panic() {
    let mut k = Conn::open();
    k.data(0, b"abcdef", None);
    assert_eq!(k.recv(100).unwrap(), b"abcdef");
    // A retransmission of read data with URG pointing into it: no replay.
    k.data(0, b"abcdef", Some(3));
    assert_eq!(k.mark(), None);
    // URG on a bare ACK with the largest pointer: a mark 64 KiB ahead, nothing more.
    k.data(6, b"", Some(u16::MAX));
    assert_eq!(k.mark(), Some(usize::from(u16::MAX) - 1));
    assert_eq!(k.h.ep.recv_urgent(k.c), Err(Error::WouldBlock));
    // A pointer of zero names the segment's first byte (as Linux takes it), and being newer
    // than nothing older... it is older than the pending mark: ignored.
    k.data(6, b"gh", Some(0));
    assert_eq!(k.mark(), Some(usize::from(u16::MAX) - 1));
    assert_eq!(k.recv(100).unwrap(), b"gh");
    // URG on a segment outside the window is dropped with the segment.
    k.data(1 << 20, b"zz", Some(1));
    assert_eq!(k.mark(), Some(usize::from(u16::MAX) - 3));
    // End of stream with the byte never sent: MSG_OOB reads 0 (Linux returns 0 after the FIN).
    let fin = Out::new(FIN | ACK, 0, 0).seqn(k.isn1 + 8).ackn(k.our_nxt);
    k.h.inject(k.peer, k.us, fin);
    let _ = k.h.drain();
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(None));
    assert_eq!(k.recv(100), Ok(vec![]));
}

#[test]
fn a_zero_pointer_on_fresh_data_marks_its_first_byte() {
    let mut k = Conn::open();
    k.data(0, b"Xab", Some(0));
    assert_eq!(k.mark(), Some(0));
    assert_eq!(k.h.ep.recv_urgent(k.c), Ok(Some(b'X')));
    assert_eq!(k.recv(100).unwrap(), b"ab");
}

#[test]
fn peek_stops_at_the_mark_and_skips_the_byte_as_a_read_does() {
    let mut k = Conn::open();
    k.data(0, b"abXcd", Some(3));
    let mut buf = [0u8; 10];
    assert_eq!(k.h.ep.peek(k.c, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"ab");
    assert_eq!(k.recv(100).unwrap(), b"ab");
    assert_eq!(k.h.ep.peek(k.c, &mut buf), Ok(2));
    assert_eq!(&buf[..2], b"cd");
    assert_eq!(k.recv(100).unwrap(), b"cd");
}

#[test]
fn a_msg_oob_write_marks_its_last_byte_urgent_until_acknowledged() {
    let mut k = Conn::open();
    let c = k.c;
    let n =
        k.h.ep
            .send_urgent(c, b"abcdef", Default::default())
            .unwrap();
    assert_eq!(n, 6);
    let seg = k.h.one();
    assert!(seg.has(TcpFlags::URG), "{seg:?}");
    // One past the urgent byte (RFC 6093 §3), as Linux sends it.
    assert_eq!(seg.urgent, 6);
    assert_eq!(seg.payload, b"abcdef");
    // More data before the ACK: Nagle holds nothing back in urgent mode, and a segment
    // starting at or past SND.UP carries no URG.
    k.h.ep.send(c, b"gh").unwrap();
    let seg = k.h.one();
    assert!(!seg.has(TcpFlags::URG));
    assert_eq!(seg.payload, b"gh");
    let ack = Out::new(ACK, 0, 0).seqn(k.isn1).ackn(k.our_nxt + 8);
    k.h.inject(k.peer, k.us, ack);
    let _ = k.h.drain();
    // Acknowledged: urgent mode is over.
    k.h.ep.send(c, b"ij").unwrap();
    let seg = k.h.one();
    assert!(!seg.has(TcpFlags::URG));
    assert_eq!(seg.urgent, 0);
}

#[test]
fn segments_below_snd_up_all_carry_the_pointer() {
    let mut k = Conn::open();
    let c = k.c;
    // 2500 bytes with MSG_OOB over a 1000-byte MSS: three segments, each with URG and the
    // pointer to the end of the write from its own start, none merged into one TSO packet.
    let data = vec![7u8; 2500];
    assert_eq!(k.h.ep.send_urgent(c, &data, Default::default()), Ok(2500));
    let segs = k.h.drain();
    let data_segs: Vec<_> = segs.iter().filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(data_segs.len(), 3, "{segs:?}");
    for s in data_segs {
        assert!(s.has(TcpFlags::URG));
        assert_eq!(usize::from(s.urgent), (k.our_nxt + 2500) - s.seq);
    }
}

#[test]
fn random_urgent_pointers_never_stall_reads_or_panic() {
    // Segments in and out of order, each with a random URG pointer or none, reads of random
    // sizes in between: every byte ends up read (or taken out of band, at most one per
    // mark), and the reader never sees WouldBlock with bytes it could read.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for round in 0..40 {
        let mut k = Conn::open();
        if round % 4 == 3 {
            k.h.ep.set_oob_inline(k.c, true).unwrap();
        }
        let total = 3000usize;
        let data: Vec<u8> = (0..total).map(|i| i as u8).collect();
        let mut sent = 0usize;
        let mut got = 0usize;
        let mut oob = 0usize;
        let mut urgs = 0usize;
        while sent < total {
            let len = (1 + rnd(400) as usize).min(total - sent);
            let urg = match rnd(3) {
                0 => None,
                1 => Some(rnd(len as u64 + 2) as u16),
                _ => Some(rnd(u64::from(u16::MAX) + 1) as u16),
            };
            // Now and then a segment ahead of a hole, then the in-order one.
            if rnd(4) == 0 && sent + len + 10 <= total {
                k.data(sent + 10, &data[sent + 10..sent + len + 10], urg);
            }
            k.data(sent, &data[sent..sent + len], urg);
            sent += len;
            urgs += usize::from(urg.is_some());
            let want = 1 + rnd(500) as usize;
            if let Ok(b) = k.recv(want) {
                got += b.len();
            }
            if let Ok(Some(_)) = k.h.ep.recv_urgent(k.c) {
                oob += 1;
            }
        }
        // Drain: a read returns bytes while any are readable.
        for _ in 0..10_000 {
            let _ = k.h.ep.recv_urgent(k.c);
            match k.recv(512) {
                Ok(b) if !b.is_empty() => got += b.len(),
                _ => {
                    if k.h.ep.recv_queue_len(k.c).unwrap() == 0 {
                        break;
                    }
                }
            }
        }
        assert_eq!(k.h.ep.recv_queue_len(k.c), Ok(0), "round {round}");
        // Inline, every byte is read; out of band, only urgent bytes (one per mark, each
        // from a segment with URG) are missing.
        if round % 4 == 3 {
            assert_eq!(got, total, "round {round}");
            assert_eq!(oob, 0);
        } else {
            assert!(
                got <= total && got + urgs >= total,
                "round {round}: {got} {urgs}"
            );
        }
    }
}

/// A SYN-ACK that carries text and URG: the text is not taken (Linux's
/// `tcp_rcv_state_process` frees the segment after the handshake), but its urgent pointer
/// is, as an offset from the SYN's sequence number, which the text follows, so the urgent
/// byte is the one before SEG.SEQ + pointer, and it is taken from the text (Linux's
/// `tcp_check_urg` and `tcp_urg`, which subtract the SYN, run on it). When the peer sends
/// the text again the mark stands where it was. A pointer that names only the SYN marks
/// nothing.
#[test]
fn urgent_data_on_a_syn_ack_counts_from_the_syn() {
    for (ptr, mark, byte) in [
        (3u16, Some(1), Some(b'X')),
        (1, None, None),
        (0, None, None),
    ] {
        let mut h = Harness::new(config());
        let peer = SocketAddr::new(PEER, 80);
        let c = h.ep.connect(h.now, peer).unwrap();
        let syn = h.one();
        // "aXbc" from 10_001: with the pointer 3 from the SYN at 10_000, X (10_002) is urgent.
        let sa = Out::new(SYN | ACK, 10_000, 0)
            .ackn(syn.seq + 1)
            .mss(1000)
            .window(65535)
            .data(b"aXbc")
            .urg(ptr);
        h.inject(peer, syn.src, sa);
        let acks = h.drain();
        assert_eq!(
            acks.iter().map(|a| a.ack).collect::<Vec<_>>(),
            [SeqNumber(10_001)],
            "the SYN alone is acknowledged"
        );
        assert_eq!(h.ep.urgent_mark(c).unwrap(), mark, "pointer {ptr}");
        assert_eq!(
            h.ep.urgent_pending(c).unwrap(),
            byte.is_some(),
            "pointer {ptr}"
        );
        let mut buf = [0u8; 16];
        assert_eq!(h.ep.recv(h.now, c, &mut buf), Err(Error::WouldBlock));
        let mut again = Out::new(ACK, 10_001, 0).ackn(syn.seq + 1).data(b"aXbc");
        if byte.is_some() {
            again = again.urg(2);
        }
        h.inject(peer, syn.src, again);
        match byte {
            Some(b) => {
                assert_eq!(h.ep.recv_urgent(c), Ok(Some(b)));
                let n = h.ep.recv(h.now, c, &mut buf).unwrap();
                assert_eq!(&buf[..n], b"a");
                let n = h.ep.recv(h.now, c, &mut buf).unwrap();
                assert_eq!(&buf[..n], b"bc");
            }
            None => {
                assert_eq!(h.ep.recv_urgent(c), Err(Error::InvalidInput));
                let n = h.ep.recv(h.now, c, &mut buf).unwrap();
                assert_eq!(&buf[..n], b"aXbc");
            }
        }
    }
}
