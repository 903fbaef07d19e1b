//! Closing: FIN in every order, half-close, TIME-WAIT, close and abort, state by state.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use synack_core::wire::TcpFlags;
use synack_core::{
    ConnectionHandle, Error, Event, Instant, Linger2, SeqNumber, SocketOptions, State, SynCookies,
};

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;

struct Conn {
    h: Harness,
    c: ConnectionHandle,
    us: SocketAddr,
    peer: SocketAddr,
    our_nxt: SeqNumber,
    peer_nxt: SeqNumber,
}

fn open() -> Conn {
    open_with(|syn_ack| syn_ack)
}

/// An open connection whose peer's SYN-ACK `options` adds options to.
fn open_with(options: impl FnOnce(Out) -> Out) -> Conn {
    let mut h = Harness::new(config());
    let peer = SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    let syn_ack = Out::new(SYN | ACK, 20_000, 0).ackn(syn.seq + 1).mss(1460);
    h.inject(peer, syn.src, options(syn_ack));
    let _ = h.one();
    let _ = h.events();
    Conn {
        h,
        c,
        us: syn.src,
        peer,
        our_nxt: syn.seq + 1,
        peer_nxt: SeqNumber(20_001),
    }
}

impl Conn {
    fn peer_sends(&mut self, flags: TcpFlags, data: &[u8]) {
        let o = Out::new(flags, 0, 0)
            .seqn(self.peer_nxt)
            .ackn(self.our_nxt)
            .data(data);
        self.h.inject(self.peer, self.us, o);
        self.peer_nxt += data.len() + usize::from(flags.contains(FIN));
    }
    fn state(&self) -> State {
        self.h.ep.state(self.c).unwrap()
    }
    fn read(&mut self) -> Result<Vec<u8>, Error> {
        let mut buf = [0u8; 8192];
        let n = self.h.ep.recv(self.h.now, self.c, &mut buf)?;
        Ok(buf[..n].to_vec())
    }
}

// === Active close ===============================================================================

#[test]
fn active_close_walks_fin_wait_1_2_and_time_wait() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    assert_eq!(k.state(), State::FinWait1);
    let fin = k.h.one();
    assert!(fin.is(FIN | ACK));
    assert_eq!(fin.seq, k.our_nxt);
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    assert_eq!(k.state(), State::FinWait2);
    k.peer_sends(FIN | ACK, b"");
    assert_eq!(k.state(), State::TimeWait);
    let a = k.h.one();
    assert_eq!(a.ack, k.peer_nxt);
    assert!(k.h.events().contains(&Event::Closed(k.c, None)));
    // TIME-WAIT lasts 60 s by default.
    k.h.advance(Duration::from_secs(59));
    assert_eq!(k.state(), State::TimeWait);
    k.h.advance(Duration::from_secs(1));
    assert_eq!(k.state(), State::Closed);
}

#[test]
fn data_queued_before_shutdown_goes_out_before_the_fin() {
    let mut k = open();
    k.h.ep.send(k.c, b"last words").unwrap();
    k.h.ep.shutdown(k.c).unwrap();
    let segs = k.h.drain();
    let fin = segs.iter().find(|s| s.has(FIN)).expect("a FIN");
    assert_eq!(fin.seq + fin.payload.len(), k.our_nxt + 10);
    let sent: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(sent, b"last words");
}

#[test]
fn half_close_keeps_receiving() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    assert_eq!(k.state(), State::FinWait2);
    for i in 0..5u8 {
        k.peer_sends(ACK, &[i; 100]);
    }
    let mut got = Vec::new();
    while let Ok(d) = k.read() {
        if d.is_empty() {
            break;
        }
        got.extend(d);
    }
    assert_eq!(got.len(), 500);
    assert_eq!(k.h.ep.send(k.c, b"no"), Err(Error::BrokenPipe));
    k.peer_sends(FIN | ACK, b"");
    assert_eq!(k.read().unwrap(), b"", "EOF");
}

#[test]
fn fin_is_retransmitted_until_acked() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let fin = k.h.one();
    let (_, r) = k.h.next_timeout();
    assert_eq!(r.len(), 1);
    assert!(r[0].has(FIN));
    assert_eq!(r[0].seq, fin.seq);
}

/// A retransmission that came due but had not gone out when the peer's ACK of everything
/// arrived is not sent: nothing is left to resend. The tail loss probe of a lone FIN went
/// out as a second FIN one past the first, and the orphan's FIN-WAIT-2 kept the probe's
/// deadlines, long past, for good (`fuzz/regressions/endpoint/probe-after-fin-acked.bin`,
/// over loopback). The timeout's go-back is checked the same way.
#[test]
fn a_resend_due_when_everything_is_acknowledged_is_not_sent() {
    for timeouts_first in [1, 2] {
        // With SACK, the first timer is the tail loss probe's (RFC 8985 §7.2).
        let mut k = open_with(Out::sack_ok);
        k.h.ep.close(k.h.now, k.c).unwrap();
        let fin = k.h.one();
        assert!(fin.is(FIN | ACK));
        let mut resent = Vec::new();
        for _ in 1..timeouts_first {
            let (_, segs) = k.h.next_timeout();
            resent.extend(segs);
        }
        assert!(resent.iter().all(|s| s.seq == fin.seq), "{resent:?}");
        // The timer runs; before anything is polled, the ACK of the FIN comes in.
        let t = k.h.ep.poll_timeout().expect("the FIN's timer");
        k.h.now = t;
        k.h.ep.handle_timeout(t);
        k.our_nxt += 1;
        k.peer_sends(ACK, b"");
        k.h.none();
        assert_eq!(k.h.ep.connection_count(), 1, "in FIN-WAIT-2");
        // Long past FIN-WAIT-2's end, one run of the timers ends it, leaving nothing due.
        k.h.now = t + Duration::from_secs(300);
        k.h.ep.handle_timeout(k.h.now);
        k.h.none();
        assert_eq!(
            k.h.ep.poll_timeout(),
            None,
            "after {timeouts_first} timeouts"
        );
        assert_eq!(k.h.ep.connection_count(), 0);
    }
}

#[test]
fn time_wait_reacks_a_retransmitted_fin_and_restarts() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(FIN | ACK, b"");
    let _ = k.h.drain();
    assert_eq!(k.state(), State::TimeWait);
    k.h.advance(Duration::from_secs(30));
    // The peer did not get our ACK and sends its FIN again.
    let o = Out::new(FIN | ACK, 0, 0)
        .seqn(k.peer_nxt - 1)
        .ackn(k.our_nxt);
    k.h.inject(k.peer, k.us, o);
    let a = k.h.one();
    assert_eq!(a.ack, k.peer_nxt);
    k.h.advance(Duration::from_secs(59));
    assert_eq!(k.state(), State::TimeWait, "2 MSL restarted");
    k.h.advance(Duration::from_secs(2));
    assert_eq!(k.state(), State::Closed);
}

#[test]
fn configurable_time_wait() {
    let mut cfg = config();
    cfg.time_wait(Duration::from_secs(5));
    let mut h = Harness::new(cfg);
    let peer = SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    h.inject(peer, syn.src, Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1));
    let _ = h.one();
    h.ep.shutdown(c).unwrap();
    let _ = h.one();
    h.inject(peer, syn.src, Out::new(FIN | ACK, 2, 0).ackn(syn.seq + 2));
    assert_eq!(h.ep.state(c).unwrap(), State::TimeWait);
    h.advance(Duration::from_secs(5));
    assert_eq!(h.ep.state(c).unwrap(), State::Closed);
}

// === Passive close ==============================================================================

#[test]
fn passive_close_walks_close_wait_and_last_ack() {
    let mut k = open();
    k.peer_sends(FIN | ACK, b"");
    assert_eq!(k.state(), State::CloseWait);
    let a = k.h.one();
    assert_eq!(a.ack, k.peer_nxt, "the FIN is acked at once");
    assert_eq!(k.read().unwrap(), b"", "EOF");
    assert!(k.h.events().contains(&Event::Readable(k.c)));
    // We can still send in CLOSE-WAIT.
    k.h.ep.send(k.c, b"reply").unwrap();
    k.h.ep.shutdown(k.c).unwrap();
    assert_eq!(k.state(), State::LastAck);
    let segs = k.h.drain();
    assert!(segs.last().unwrap().has(FIN));
    k.our_nxt += 6;
    k.peer_sends(ACK, b"");
    assert_eq!(k.state(), State::Closed);
    assert!(k.h.events().contains(&Event::Closed(k.c, None)));
}

#[test]
fn data_then_fin_in_one_segment() {
    let mut k = open();
    k.peer_sends(FIN | ACK | TcpFlags::PSH, b"bye");
    assert_eq!(k.read().unwrap(), b"bye");
    assert_eq!(k.read().unwrap(), b"");
    assert_eq!(k.state(), State::CloseWait);
}

#[test]
fn fin_ahead_of_missing_data_waits_for_the_hole() {
    let mut k = open();
    let base = k.peer_nxt;
    let o = Out::new(FIN | ACK, 0, 0)
        .seqn(base + 5)
        .ackn(k.our_nxt)
        .data(b"world");
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::Established, "FIN not yet in order");
    let o = Out::new(ACK, 0, 0)
        .seqn(base)
        .ackn(k.our_nxt)
        .data(b"hello");
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::CloseWait);
    assert_eq!(k.read().unwrap(), b"helloworld");
    assert_eq!(k.read().unwrap(), b"");
    let acks = k.h.drain();
    assert_eq!(acks.last().unwrap().ack, base + 11);
}

// === Simultaneous close =========================================================================

#[test]
fn simultaneous_close_walks_closing() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let _fin = k.h.one();
    // The peer's FIN crosses ours (it has not seen our FIN: ACK is the old value).
    k.peer_sends(FIN | ACK, b"");
    assert_eq!(k.state(), State::Closing);
    let _ = k.h.drain();
    k.our_nxt += 1;
    let o = Out::new(ACK, 0, 0).seqn(k.peer_nxt).ackn(k.our_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::TimeWait);
}

#[test]
fn fin_ack_of_our_fin_goes_straight_to_time_wait() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(FIN | ACK, b"");
    assert_eq!(k.state(), State::TimeWait);
}

// === Close, abort and resets ====================================================================

#[test]
fn close_releases_the_handle_and_finishes_in_the_background() {
    let mut k = open();
    k.h.ep.send(k.c, b"data").unwrap();
    k.h.ep.close(k.h.now, k.c).unwrap();
    assert_eq!(k.h.ep.state(k.c), Err(Error::InvalidHandle));
    let segs = k.h.drain();
    assert!(segs.iter().any(|s| s.has(FIN)));
    k.our_nxt += 5;
    k.peer_sends(FIN | ACK, b"");
    let _ = k.h.drain();
    assert_eq!(k.h.ep.connection_count(), 1, "in TIME-WAIT");
    k.h.advance(Duration::from_secs(61));
    let _ = k.h.drain();
    assert_eq!(k.h.ep.connection_count(), 0);
}

#[test]
fn close_with_unread_data_sends_rst() {
    let mut k = open();
    k.peer_sends(ACK, b"unread");
    let _ = k.h.drain();
    k.h.ep.close(k.h.now, k.c).unwrap();
    let segs = k.h.drain();
    assert_eq!(segs.len(), 1);
    assert!(segs[0].has(RST));
    assert_eq!(k.h.ep.connection_count(), 0);
}

/// Closed with data unread after its FIN went (LAST-ACK: the peer's request and FIN came,
/// the answer and our FIN went, nothing was read), the connection still resets: Linux's
/// `__tcp_close` sends the RST in every state but CLOSE (RFC 2525 §2.17), where ABORT's
/// rule (RFC 9293 §3.10.5) spares LAST-ACK. It used to vanish silently, and a lost FIN
/// was never sent again.
#[test]
fn close_with_unread_data_after_our_fin_still_resets() {
    let mut k = open();
    k.peer_sends(ACK, b"request");
    k.peer_sends(FIN | ACK, b"");
    let _ = k.h.drain();
    assert_eq!(k.state(), State::CloseWait);
    assert_eq!(k.h.ep.send(k.c, b"answer"), Ok(6));
    k.h.ep.shutdown(k.c).unwrap();
    let segs = k.h.drain();
    assert!(segs.last().unwrap().has(FIN), "{segs:#?}");
    assert_eq!(k.state(), State::LastAck);
    k.h.ep.close(k.h.now, k.c).unwrap();
    let segs = k.h.drain();
    assert_eq!(segs.len(), 1, "{segs:#?}");
    assert!(segs[0].has(RST));
    assert_eq!(segs[0].seq, k.our_nxt + 7);
    assert_eq!(k.h.ep.connection_count(), 0);
}

/// SO_LINGER 0 (`Endpoint::abort`) in LAST-ACK with the FIN still unsent resets, as
/// Linux's `tcp_disconnect` does in CLOSING and LAST-ACK while `snd_nxt != write_seq`; with
/// everything sent, it goes silently, as there.
#[test]
fn abort_in_last_ack_resets_while_the_fin_is_unsent() {
    for fin_sent in [false, true] {
        let mut k = open();
        k.peer_sends(FIN | ACK, b"");
        let _ = k.h.drain();
        assert_eq!(k.read(), Ok(vec![]));
        k.h.ep.shutdown(k.c).unwrap();
        assert_eq!(k.state(), State::LastAck);
        if fin_sent {
            assert!(k.h.one().has(FIN));
        }
        k.h.ep.abort(k.c).unwrap();
        let segs = k.h.drain();
        assert_eq!(segs.iter().any(|s| s.has(RST)), !fin_sent, "{segs:#?}");
        assert_eq!(k.h.ep.connection_count(), 0);
    }
}

/// A server that answers early (a 413 before the upload is read) and closes with the
/// request unread: the answer it wrote goes out before the RST, as it would have from
/// inside Linux's `write`, and the RST follows it in sequence; nothing of it is sent again.
/// Past the peer's window nothing more goes: Linux's `tcp_close` discards the rest.
#[test]
fn close_with_unread_data_sends_what_was_written_then_rst() {
    let mut k = open();
    k.peer_sends(ACK, b"POST /upload, 50 MB to follow");
    let _ = k.h.drain();
    let answer = b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(k.h.ep.send(k.c, answer), Ok(answer.len()));
    k.h.ep.close(k.h.now, k.c).unwrap();
    let segs = k.h.drain();
    assert_eq!(segs.len(), 2, "{segs:#?}");
    assert_eq!(
        (segs[0].seq, &segs[0].payload[..]),
        (k.our_nxt, &answer[..])
    );
    assert!(segs[1].has(RST));
    assert_eq!(segs[1].seq, k.our_nxt + answer.len());
    assert_eq!(k.h.ep.connection_count(), 0);
    k.h.advance(Duration::from_secs(5));
    k.h.none();

    // As hyper ends a connection: the answer written, then shutdown, then the drop. The
    // answer and the FIN go, then the RST. The same with more of the upload arriving
    // between the drop and the flush (the driver running on another thread than the
    // application): the data that a closed connection can never read does not reset it
    // before its answer and FIN have gone (it used to, and the client saw the RST at the
    // answer's first byte, a few times in a hundred under load in
    // `kernel_client_gets_an_early_answer_before_the_reset`).
    for more_upload in [false, true] {
        let mut k = open();
        k.peer_sends(ACK, b"POST /upload, 50 MB to follow");
        let _ = k.h.drain();
        assert_eq!(k.h.ep.send(k.c, answer), Ok(answer.len()));
        k.h.ep.shutdown(k.c).unwrap();
        k.h.ep.close(k.h.now, k.c).unwrap();
        if more_upload {
            k.peer_sends(ACK, &[b'x'; 1000]);
        }
        let segs = k.h.drain();
        assert_eq!(segs.len(), 2, "more upload {more_upload}: {segs:#?}");
        assert_eq!(
            (segs[0].seq, &segs[0].payload[..]),
            (k.our_nxt, &answer[..])
        );
        assert!(segs[0].has(FIN), "{:?}", segs[0]);
        assert!(segs[1].has(RST));
        assert_eq!(segs[1].seq, k.our_nxt + answer.len() + 1);
        assert_eq!(k.h.ep.connection_count(), 0);
    }

    // A peer whose window is shut gets the RST alone.
    let mut k = open();
    let o = Out::new(ACK, 0, 0)
        .seqn(k.peer_nxt)
        .ackn(k.our_nxt)
        .window(0)
        .data(b"unread");
    k.h.inject(k.peer, k.us, o);
    let _ = k.h.drain();
    assert_eq!(k.h.ep.send(k.c, answer), Ok(answer.len()));
    let _ = k.h.drain();
    k.h.ep.close(k.h.now, k.c).unwrap();
    let segs = k.h.drain();
    assert_eq!(segs.len(), 1, "{segs:#?}");
    assert!(segs[0].has(RST));
    assert_eq!(segs[0].seq, k.our_nxt);
}

#[test]
fn an_abortive_close_carries_the_timestamp_option() {
    // Linux's tcp_send_active_reset sends the RST with the connection's options: RFC 7323
    // §3.2 puts timestamps on every segment once negotiated (reset_tsval.pkt).
    let mut h = Harness::new(config());
    let peer = SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    let sa = Out::new(SYN | ACK, 10_000, 0)
        .ackn(syn.seq + 1)
        .mss(1460)
        .ts(200, syn.ts.unwrap().tsval);
    h.inject(peer, syn.src, sa);
    let _ = h.one();
    let o = Out::new(ACK, 10_001, 0)
        .ackn(syn.seq + 1)
        .ts(300, 0)
        .data(b"unread");
    h.inject(peer, syn.src, o);
    let _ = h.drain();
    h.advance(Duration::from_secs(1));
    h.ep.close(h.now, c).unwrap();
    let rst = h.one();
    assert!(rst.has(RST));
    let ts = rst.ts.expect("a timestamp on the RST");
    assert_eq!(ts.tsecr, 300, "echoes TS.Recent");
}

#[test]
fn orphaned_fin_wait_2_times_out() {
    let mut k = open();
    k.h.ep.close(k.h.now, k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    let o = Out::new(ACK, 0, 0).seqn(k.peer_nxt).ackn(k.our_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.h.ep.connection_count(), 1);
    let sent_before = k.h.sent.len();
    k.h.advance(Duration::from_secs(59));
    assert_eq!(k.h.ep.connection_count(), 1);
    k.h.advance(Duration::from_secs(2));
    assert_eq!(k.h.ep.connection_count(), 0);
    assert_eq!(
        k.h.sent.len(),
        sent_before,
        "it ends silently, as Linux's does"
    );
}

/// An orphan in FIN-WAIT-2 whose `TCP_LINGER2` passes TIME-WAIT's length hands over to a
/// FIN_WAIT2 timewait sock when the excess is up; a timer due by then as well (here the
/// delayed ACK of data taken just before the close, with the driver back 31 s late) runs in
/// the same `handle_timeout`. The handover returned early and left it behind `now`.
#[test]
fn no_deadline_is_left_behind_when_fin_wait_2_hands_over() {
    let mut k = open();
    k.h.ep
        .set_linger2(k.c, Some(Linger2::Timeout(Duration::from_secs(90))))
        .unwrap();
    k.h.ep.shutdown(k.c).unwrap();
    assert!(k.h.one().has(FIN));
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    k.h.none();
    assert_eq!(k.state(), State::FinWait2);
    k.h.ep.set_quickack(k.c, false).unwrap();
    k.peer_sends(ACK, &[5; 100]);
    k.h.none();
    assert_eq!(k.read().unwrap().len(), 100);
    k.h.ep.close(k.h.now, k.c).unwrap();
    k.h.now += Duration::from_secs(31);
    k.h.ep.handle_timeout(k.h.now);
    let next = k.h.ep.poll_timeout();
    assert!(next.is_none_or(|t| t > k.h.now), "{next:?}");
    let ack = k.h.one();
    assert_eq!(ack.ack, k.peer_nxt, "the delayed ACK");
}

/// `TCP_LINGER2` (`Endpoint::set_linger2`), as Linux's `tcp_fin_time` and its callers use
/// it for an orphan whose FIN was acknowledged: a time of its own in place of
/// `Config::fin_timeout` (2 s: gone silently then); one past TIME-WAIT's 60 s lasting twice
/// its excess (65 s: 10 s); no wait at all (`Abort`): the ACK of the FIN is answered with an
/// RST at its acknowledgment number, and a close in FIN-WAIT-2 resets at once.
#[test]
fn linger2_sets_or_skips_an_orphans_fin_wait_2() {
    let orphan_after_ack = |linger2| {
        let mut k = open();
        k.h.ep.set_linger2(k.c, Some(linger2)).unwrap();
        k.h.ep.close(k.h.now, k.c).unwrap();
        let _ = k.h.one();
        k.our_nxt += 1;
        k.peer_sends(ACK, b"");
        k
    };
    for (secs, lasts) in [(2, 2), (65, 10)] {
        let mut k = orphan_after_ack(Linger2::Timeout(Duration::from_secs(secs)));
        assert_eq!(k.h.ep.connection_count(), 1);
        let sent = k.h.sent.len();
        k.h.advance(Duration::from_millis(lasts * 1000 - 100));
        assert_eq!(k.h.ep.connection_count(), 1, "linger2 {secs}");
        k.h.advance(Duration::from_millis(200));
        assert_eq!(k.h.ep.connection_count(), 0, "linger2 {secs}");
        assert_eq!(k.h.sent.len(), sent, "silently");
    }
    // No wait: the ACK of our FIN draws an RST at its acknowledgment number.
    let mut k = open();
    k.h.ep.set_linger2(k.c, Some(Linger2::Abort)).unwrap();
    assert_eq!(k.h.ep.linger2(k.c), Ok(Some(Linger2::Abort)));
    k.h.ep.close(k.h.now, k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    let o = Out::new(ACK, 0, 0).seqn(k.peer_nxt).ackn(k.our_nxt);
    k.h.inject(k.peer, k.us, o);
    let rst = k.h.one();
    assert!(rst.is(RST), "{rst:?}");
    assert_eq!(rst.seq, k.our_nxt);
    assert_eq!(k.h.ep.connection_count(), 0);
    // Closed in FIN-WAIT-2 (after a shutdown): an RST|ACK at once.
    let mut k = open();
    k.h.ep.set_linger2(k.c, Some(Linger2::Abort)).unwrap();
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    k.h.ep.close(k.h.now, k.c).unwrap();
    let rst = k.h.one();
    assert!(rst.is(RST | ACK), "{rst:?}");
    assert_eq!((rst.seq, rst.ack), (k.our_nxt, k.peer_nxt));
    assert_eq!(k.h.ep.connection_count(), 0);
}

/// A listener's `SocketOptions::linger2` passes to the connections it accepts, as Linux's
/// children copy the listener's `linger2`; set on a connection, a time past 120 s is 120 s
/// (`TCP_FIN_TIMEOUT_MAX`), and zero is none.
#[test]
fn a_listeners_linger2_passes_to_its_connections() {
    let mut h = Harness::new(config());
    let server = SocketAddr::new(US, 8080);
    let opts = SocketOptions {
        linger2: Some(Linger2::Abort),
        ..SocketOptions::default()
    };
    let l = h.ep.listen_with(server, 8, &opts).unwrap();
    let client = SocketAddr::new(PEER, 40000);
    h.inject(client, server, Out::new(SYN, 100, 0));
    let sa = h.one();
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.linger2(c), Ok(Some(Linger2::Abort)));
    let long = Linger2::Timeout(Duration::from_secs(200));
    h.ep.set_linger2(c, Some(long)).unwrap();
    let capped = Linger2::Timeout(Duration::from_secs(120));
    assert_eq!(h.ep.linger2(c), Ok(Some(capped)));
    h.ep.set_linger2(c, Some(Linger2::Timeout(Duration::ZERO)))
        .unwrap();
    assert_eq!(h.ep.linger2(c), Ok(None));
}

/// An orphaned FIN-WAIT-2 (closed, our FIN acknowledged by a bare ACK) is Linux's TIME-WAIT
/// sock in its FIN_WAIT2 substate (`tcp_timewait_state_process`): an RST inside the window
/// ends it in silence, a SYN at or past RCV.NXT draws an RST (at SEG.ACK, or RST|ACK for
/// one without ACK) and ends it, a duplicate ACK is taken in silence, and a segment outside
/// the window (old data too) still draws an ACK. synack kept RFC 5961's challenge ACKs there (a
/// review's tests; `fw2-orphan-rst.pkt` and `fw2-orphan-syn.pkt` pass on the kernel). A
/// FIN-WAIT-2 the application still holds keeps them.
#[test]
fn an_orphaned_fin_wait_2_takes_segments_as_linuxs_time_wait_sock() {
    let orphan = || {
        let mut k = open();
        k.h.ep.close(k.h.now, k.c).unwrap();
        let _ = k.h.one();
        k.our_nxt += 1;
        k.peer_sends(ACK, b"");
        k.h.none();
        assert_eq!(k.h.ep.connection_count(), 1);
        k
    };
    // An RST inside the window, not at RCV.NXT.
    let mut k = orphan();
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt + 99);
    k.h.inject(k.peer, k.us, o);
    k.h.none();
    assert_eq!(k.h.ep.connection_count(), 0);
    // A SYN inside it, with ACK and without.
    for with_ack in [true, false] {
        let mut k = orphan();
        let mut o = Out::new(SYN, 0, 0).seqn(k.peer_nxt + 99);
        if with_ack {
            o = Out::new(SYN | ACK, 0, 0)
                .seqn(k.peer_nxt + 99)
                .ackn(k.our_nxt);
        }
        k.h.inject(k.peer, k.us, o);
        let r = k.h.one();
        if with_ack {
            assert!(r.is(RST) && r.seq == k.our_nxt, "{r:?}");
        } else {
            assert!(r.is(RST | ACK) && r.ack == k.peer_nxt + 100, "{r:?}");
        }
        assert_eq!(k.h.ep.connection_count(), 0);
    }
    // A bare duplicate ACK: taken in silence. Old data and what lies beyond the window:
    // outside it (`tcp_in_window`), an ACK.
    let mut k = orphan();
    k.peer_sends(ACK, b"");
    k.h.none();
    let o = Out::new(ACK, 0, 0)
        .seqn(k.peer_nxt - 5)
        .ackn(k.our_nxt)
        .data(b"again");
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.h.one().ack, k.peer_nxt);
    let o = Out::new(ACK, 0, 0)
        .seqn(k.peer_nxt + 1_000_000)
        .ackn(k.our_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.h.one().ack, k.peer_nxt);
    assert_eq!(k.h.ep.connection_count(), 1);
    // An RST outside the window: an ACK too (`tcp_timewait_check_oow_rate_limit`).
    let mut k = orphan();
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt + 1_000_000);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.h.one().ack, k.peer_nxt);
    assert_eq!(k.h.ep.connection_count(), 1);
    // Held (shut down, not closed): RFC 5961's challenge ACK, and it goes on; once closed
    // there, it is Linux's TIME-WAIT sock at once (`tcp_close`), which the RST ends.
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt + 99);
    k.h.inject(k.peer, k.us, o.clone());
    assert_eq!(k.h.one().ack, k.peer_nxt, "a challenge ACK");
    assert_eq!(k.state(), State::FinWait2);
    k.h.ep.close(k.h.now, k.c).unwrap();
    k.h.inject(k.peer, k.us, o);
    k.h.none();
    assert_eq!(k.h.ep.connection_count(), 0);
}

#[test]
fn data_after_close_draws_an_rst() {
    // RFC 1122 §4.2.2.13, as Linux: nobody will read it, so the sender is told.
    let mut k = open();
    k.h.ep.close(k.h.now, k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    k.peer_sends(ACK | TcpFlags::PSH, b"too late");
    let rst = k.h.one();
    assert!(rst.is(RST), "{rst:?}");
    assert_eq!(rst.seq, k.our_nxt);
    assert_eq!(k.h.ep.connection_count(), 0);
}

#[test]
fn data_after_the_read_side_is_shut_is_read_until_our_fin_then_draws_an_rst() {
    // shutdown(SHUT_RD), as Linux: what comes in ESTABLISHED is still taken and read, then
    // reads end the stream.
    let mut k = open();
    assert_eq!(k.read(), Err(Error::WouldBlock));
    k.h.ep.shutdown_read(k.c).unwrap();
    assert!(k.h.ep.recv_ready(k.c).unwrap(), "a waiting reader wakes");
    assert_eq!(k.read(), Ok(Vec::new()), "the end of the stream");
    k.peer_sends(ACK | TcpFlags::PSH, b"still taken");
    assert_eq!(k.h.one().ack, k.peer_nxt);
    assert_eq!(k.read(), Ok(b"still taken".to_vec()));
    assert_eq!(k.read(), Ok(Vec::new()));
    // After our FIN, new data can never be read: RFC 1122 §4.2.2.13's reset, as after close
    // (Linux's `tcp_rcv_state_process` once `RCV_SHUTDOWN` is set), but the application
    // still holds the socket, and the reset is its error.
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.one();
    k.our_nxt += 1;
    k.peer_sends(ACK, b"");
    assert_eq!(k.state(), State::FinWait2);
    k.peer_sends(ACK | TcpFlags::PSH, b"too late");
    let rst = k.h.one();
    assert!(rst.is(RST), "{rst:?}");
    assert_eq!(rst.seq, k.our_nxt);
    k.h.none();
    assert_eq!(k.state(), State::Closed);
    assert_eq!(
        k.h.ep.take_error(k.c).unwrap(),
        Some(Error::ConnectionReset)
    );
}

#[test]
fn abort_sends_rst_and_frees() {
    let mut k = open();
    let offered = k.h.ep.info(k.h.now, k.c).unwrap().rcv_wnd;
    k.h.ep.abort(k.c).unwrap();
    let rst = k.h.one();
    assert!(rst.has(RST));
    assert_eq!(rst.seq, k.our_nxt);
    // Linux's tcp_send_active_reset goes through tcp_transmit_skb: the RST offers the
    // connection's window, where an RST in reply to a segment offers none.
    assert!(offered > 0);
    assert_eq!(u32::from(rst.window), offered.min(65535), "{rst:?}");
    assert_eq!(k.h.ep.connection_count(), 0);
    assert_eq!(k.h.ep.send(k.c, b"x"), Err(Error::InvalidHandle));
}

#[test]
fn abort_in_syn_sent_sends_nothing() {
    let mut h = Harness::new(config());
    let c = h.ep.connect(h.now, SocketAddr::new(PEER, 80)).unwrap();
    let _ = h.one();
    h.ep.abort(c).unwrap();
    h.none();
    assert_eq!(h.ep.connection_count(), 0);
}

#[test]
fn rst_in_close_wait_is_broken_pipe() {
    // Linux's tcp_reset: in CLOSE-WAIT the peer had finished sending; what fails is our
    // writing side, EPIPE.
    let mut k = open();
    k.peer_sends(FIN | ACK, b"");
    let _ = k.h.drain();
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::Closed);
    assert_eq!(k.h.ep.take_error(k.c).unwrap(), Some(Error::BrokenPipe));
    assert_eq!(k.h.ep.send(k.c, b"x"), Err(Error::BrokenPipe));
    // The peer's FIN came before the RST: reading still ends cleanly.
    assert_eq!(k.read(), Ok(Vec::new()));
}

#[test]
fn rst_in_last_ack_and_closing_is_connection_reset() {
    // Linux reports ECONNRESET in every state but SYN-SENT and CLOSE-WAIT.
    let mut k = open();
    k.peer_sends(FIN | ACK, b"");
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.drain();
    assert_eq!(k.state(), State::LastAck);
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::Closed);
    assert_eq!(
        k.h.ep.take_error(k.c).unwrap(),
        Some(Error::ConnectionReset)
    );

    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    let _ = k.h.drain();
    k.peer_sends(FIN | ACK, b"");
    let _ = k.h.drain();
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::Closed);
    assert_eq!(
        k.h.ep.take_error(k.c).unwrap(),
        Some(Error::ConnectionReset)
    );
}

#[test]
fn data_not_yet_read_survives_an_rst() {
    // Linux's tcp_reset purges the write queue only: what arrived before the RST is still
    // read, and the error comes after it.
    let mut k = open();
    k.peer_sends(ACK | TcpFlags::PSH, b"last words");
    let _ = k.h.drain();
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.state(), State::Closed);
    assert_eq!(k.read(), Ok(b"last words".to_vec()));
    assert_eq!(k.read(), Err(Error::ConnectionReset));
}

#[test]
fn send_after_shutdown_is_broken_pipe() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    assert_eq!(k.h.ep.send(k.c, b"late"), Err(Error::BrokenPipe));
    let err: std::io::Error = Error::BrokenPipe.into();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
}

#[test]
fn shutdown_is_idempotent() {
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    k.h.ep.shutdown(k.c).unwrap();
    let segs = k.h.drain();
    assert_eq!(segs.iter().filter(|s| s.has(FIN)).count(), 1);
}

/// A shutdown while connecting ends the attempt, as Linux's `inet_shutdown` disconnects a
/// socket in SYN_SENT (RFC 9293 §3.10.4: "Delete the TCB"): no RST, the connect fails with
/// ECONNRESET, and no SYN is resent. A late SYN-ACK finds nothing and is
/// answered with an RST.
#[test]
fn shutdown_while_connecting_ends_the_attempt() {
    let mut h = Harness::new(config());
    let peer = SocketAddr::new(PEER, 80);
    let c = h.ep.connect(h.now, peer).unwrap();
    let syn = h.one();
    let _ = h.events();
    h.ep.shutdown(c).unwrap();
    h.none();
    assert_eq!(h.ep.state(c).unwrap(), State::Closed);
    assert!(h
        .events()
        .contains(&Event::Closed(c, Some(Error::ConnectionReset))));
    assert_eq!(h.ep.take_error(c).unwrap(), Some(Error::ConnectionReset));
    // The core keeps the reason; the runtime reports it once, then EPIPE.
    assert_eq!(h.ep.send(c, b"x"), Err(Error::ConnectionReset));
    // Nothing is resent: the SYN's retransmission timer went with the attempt.
    h.advance(Duration::from_secs(10));
    h.none();
    h.inject(peer, syn.src, Out::new(SYN | ACK, 1, 0).ackn(syn.seq + 1));
    let rst = h.one();
    assert!(rst.has(RST), "{rst:?}");
    assert_eq!(rst.seq, syn.seq + 1);
}

/// A new SYN from a tuple in TIME-WAIT opens a new connection whose ISN follows the old
/// one's. With SYN cookies always on too: such a SYN becomes a request "without
/// limitations" (Linux's `tcp_conn_request`, `&& !isn`), never a cookie, whose ISN would not
/// follow the old one; it used to get one.
#[test]
fn new_syn_reuses_a_time_wait_tuple_on_a_listener() {
    for cookies in [SynCookies::OnOverflow, SynCookies::Always] {
        let mut c = config();
        c.syncookies(cookies);
        let mut h = Harness::new(c);
        let (l, server, client, sa) = passive_syn(&mut h);
        h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
        let c = h.ep.accept(l).unwrap();
        // We close first: TIME-WAIT is on our side.
        h.ep.close(h.now, c).unwrap();
        let _ = h.drain();
        h.inject(client, server, Out::new(FIN | ACK, 101, 0).ackn(sa.seq + 2));
        let _ = h.drain();
        assert_eq!(h.ep.connection_count(), 1);
        let cookies_sent = h.ep.stats().syncookies_sent;
        // A new SYN from the same tuple with a higher sequence number opens a new connection.
        h.inject(client, server, Out::new(SYN, 50_000, 0));
        let sa2 = h.one();
        assert!(sa2.is(SYN | ACK));
        assert_eq!(sa2.ack, SeqNumber(50_001));
        // Its ISN starts past all the old one sent (our SYN and FIN): Linux's tw_isn,
        // SND.NXT + 65535 + 2, so that no old segment can fall into the new window.
        assert_eq!(sa2.seq, sa.seq + 2 + 65_537, "{cookies:?}");
        assert_eq!(h.ep.stats().syncookies_sent, cookies_sent, "{cookies:?}");
        h.inject(client, server, Out::new(ACK, 50_001, 0).ackn(sa2.seq + 1));
        let c2 = h.ep.accept(l).unwrap();
        assert_eq!(h.ep.state(c2), Ok(State::Established));
    }
}

#[test]
fn a_new_syn_takes_a_held_time_wait_tuple_and_the_old_data_stays_readable() {
    let mut h = Harness::new(config());
    let (l, server, client, sa) = passive_syn(&mut h);
    h.inject(client, server, Out::new(ACK, 101, 0).ackn(sa.seq + 1));
    let c = h.ep.accept(l).unwrap();
    // Half-close, and the peer's FIN comes with data we do not read yet: TIME-WAIT, the
    // handle still ours.
    h.ep.shutdown(c).unwrap();
    let _ = h.drain();
    h.inject(
        client,
        server,
        Out::new(FIN | ACK, 101, 0)
            .ackn(sa.seq + 2)
            .data(b"unread bytes"),
    );
    let _ = h.drain();
    assert_eq!(h.ep.state(c), Ok(State::TimeWait));
    // A new incarnation takes the tuple (Linux's TIME-WAIT sock had replaced the socket in
    // its tables), with an ISN past the old one's.
    h.inject(client, server, Out::new(SYN, 50_000, 0));
    let sa2 = h.one();
    assert!(sa2.is(SYN | ACK));
    assert_eq!(sa2.seq, sa.seq + 2 + 65_537);
    h.inject(client, server, Out::new(ACK, 50_001, 0).ackn(sa2.seq + 1));
    let c2 = h.ep.accept(l).unwrap();
    assert_eq!(h.ep.state(c2), Ok(State::Established));
    // The old connection is closed, and what it received is still there, then its end.
    assert_eq!(h.ep.state(c), Ok(State::Closed));
    let mut buf = [0u8; 64];
    let n = h.ep.recv(h.now, c, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"unread bytes");
    assert_eq!(h.ep.recv(h.now, c, &mut buf), Ok(0));
    // Releasing it leaves the new connection alone.
    h.ep.close(h.now, c).unwrap();
    let _ = h.drain();
    assert_eq!(h.ep.state(c2), Ok(State::Established));
}

// === Compact TIME-WAIT ===========================================================================

/// Open a connection with timestamps to `PEER:port`, shut it down from our side first
/// (with `close`, releasing it, or with `shutdown`, keeping it) and finish the FIN exchange
/// (the peer's last TSval 2): a connection in TIME-WAIT. Returns its handle, our address,
/// the peer's and our SND.NXT.
fn time_wait(
    h: &mut Harness,
    port: u16,
    release: bool,
) -> (ConnectionHandle, SocketAddr, SocketAddr, SeqNumber) {
    let peer = SocketAddr::new(PEER, port);
    // With SO_REUSEADDR, so that a test may listen on its port while it is in TIME-WAIT
    // (a listener shares it only then, as on Linux).
    let reuse = SocketOptions {
        reuse_address: Some(true),
        ..SocketOptions::default()
    };
    let c = h.ep.connect_with(h.now, peer, None, &reuse).unwrap();
    let syn = h.one();
    let echo = syn.ts.unwrap().tsval;
    h.inject(
        peer,
        syn.src,
        Out::new(SYN | ACK, 500, 0).ackn(syn.seq + 1).ts(1, echo),
    );
    let _ = h.drain();
    if release {
        h.ep.close(h.now, c).unwrap();
    } else {
        h.ep.shutdown(c).unwrap();
    }
    let _ = h.drain();
    h.inject(
        peer,
        syn.src,
        Out::new(FIN | ACK, 501, 0).ackn(syn.seq + 2).ts(2, echo),
    );
    let _ = h.drain();
    (c, syn.src, peer, syn.seq + 2)
}

/// [`time_wait`], released: a compact TIME-WAIT entry.
fn released_time_wait(h: &mut Harness, port: u16) -> (SocketAddr, SocketAddr, SeqNumber) {
    let (_, us, peer, our_nxt) = time_wait(h, port, true);
    (us, peer, our_nxt)
}

#[test]
fn released_time_wait_is_held_compactly_and_still_answers() {
    let mut h = Harness::new(config());
    let (us, peer, our_nxt) = released_time_wait(&mut h, 80);
    assert_eq!(h.ep.time_wait_count(), 1);
    assert_eq!(h.ep.connection_count(), 1);
    // A retransmitted FIN is acknowledged from the compact entry.
    h.advance(Duration::from_secs(10));
    let segments = h.ep.stats().segments_out;
    h.inject(peer, us, Out::new(FIN | ACK, 501, 0).ackn(our_nxt).ts(3, 1));
    let a = h.one();
    assert!(a.is(ACK));
    assert_eq!(
        h.ep.stats().segments_out,
        segments + 1,
        "counted as Linux's OutSegs"
    );
    assert_eq!(a.seq, our_nxt);
    assert_eq!(a.ack, SeqNumber(502));
    assert!(a.ts.is_some(), "timestamps still carried");
    // A bare in-sequence ACK gets no answer (no ACK ping-pong between two TIME-WAITs).
    h.inject(peer, us, Out::new(ACK, 502, 0).ackn(our_nxt).ts(4, 1));
    h.none();
    // The restart counts from the retransmitted FIN: gone 60 s after it, not before.
    h.advance(Duration::from_secs(59));
    assert_eq!(h.ep.time_wait_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.ep.time_wait_count(), 0);
    assert_eq!(h.ep.poll_timeout(), None);
}

#[test]
fn compact_time_wait_answers_bare_acks_and_syns_at_most_twice_a_second() {
    let mut h = Harness::new(config());
    let (us, peer, our_nxt) = released_time_wait(&mut h, 80);
    // An old duplicate ACK is answered, the next ones within 500 ms are not
    // (tcp_invalid_ratelimit; Linux tcp_timewait_check_oow_rate_limit).
    h.inject(peer, us, Out::new(ACK, 450, 0).ackn(our_nxt).ts(3, 1));
    assert_eq!(h.one().ack, SeqNumber(502));
    for _ in 0..100 {
        h.inject(peer, us, Out::new(ACK, 450, 0).ackn(our_nxt).ts(3, 1));
    }
    // Nor a SYN that starts no new incarnation (neither its sequence number nor its
    // timestamp is beyond the old connection's).
    h.inject(peer, us, Out::new(SYN, 400, 0).ts(1, 0));
    h.none();
    assert_eq!(h.ep.stats().time_wait_acks_limited, 101);
    // A retransmitted FIN and data are answered every time.
    h.inject(peer, us, Out::new(FIN | ACK, 501, 0).ackn(our_nxt).ts(3, 1));
    assert_eq!(h.one().ack, SeqNumber(502));
    h.inject(
        peer,
        us,
        Out::new(ACK, 502, 0).ackn(our_nxt).ts(3, 1).data(b"late"),
    );
    assert_eq!(h.one().ack, SeqNumber(502));
    // 500 ms after the last answer to a bare ACK, one is answered again.
    h.advance(Duration::from_millis(500));
    h.inject(peer, us, Out::new(ACK, 450, 0).ackn(our_nxt).ts(4, 1));
    assert_eq!(h.one().ack, SeqNumber(502));
    assert_eq!(h.ep.time_wait_count(), 1);
}

/// A SYN that would start a new incarnation (its sequence number beyond RCV.NXT), with no
/// listener to take it, gets the old connection's ACK every time, held or compact: Linux's
/// `tcp_v4_rcv` falls through from TCP_TW_SYN to `tcp_v4_timewait_ack`, which no rate
/// limit holds. It answered once per 500 ms.
#[test]
fn time_wait_acks_every_new_syn_when_nothing_listens() {
    for release in [true, false] {
        let mut h = Harness::new(config());
        let (_, us, peer, our_nxt) = time_wait(&mut h, 80, release);
        for i in 0..3u32 {
            h.advance(Duration::from_millis(100));
            let _ = h.drain();
            h.inject(peer, us, Out::new(SYN, 10_000 + i * 1000, 0).ts(10 + i, 0));
            let a = h.drain();
            assert_eq!(a.len(), 1, "released {release}, SYN {i}: {a:?}");
            assert_eq!((a[0].seq, a[0].ack), (our_nxt, SeqNumber(502)));
        }
    }
}

/// A caller's clock that steps back leaves a compact entry's PAWS on: TS.Recent's age was a
/// wrapping count of seconds, 136 years after a step of one second back, and an RST at
/// RCV.NXT with an old TSval then ended TIME-WAIT. A held connection's was right.
#[test]
fn compact_time_wait_paws_survives_a_clock_step_back() {
    for release in [true, false] {
        let mut h = Harness::new(config());
        let (c, us, peer, _) = time_wait(&mut h, 80, release);
        h.now = Instant::from_micros(h.now.total_micros() - 1_000_000);
        h.inject(peer, us, Out::new(RST, 502, 0).ts(1, 0));
        let in_time_wait = if release {
            h.ep.time_wait_count() == 1
        } else {
            h.ep.state(c) == Ok(State::TimeWait)
        };
        assert!(in_time_wait, "released {release}");
    }
}

/// An RST at RCV.NXT ends TIME-WAIT, compact or held (Linux's default, `tcp_rfc1337` = 0);
/// any other RST is ignored. With `Config::rfc1337` on it is ignored too (RFC 1337 §3, against
/// TIME-WAIT assassination): no answer, the 2 MSL not restarted, and its TSval taken as
/// TS.Recent, as Linux's `tcp_timewait_state_process` takes it.
#[test]
fn rst_at_rcv_nxt_ends_time_wait_unless_rfc1337() {
    // (rfc1337, then: whether to look at TS.Recent, or at the 2 MSL not restarted)
    let cases = [(false, false), (true, false), (true, true)];
    for (rfc1337, look_at_ts) in cases {
        for release in [true, false] {
            let mut cfg = config();
            cfg.rfc1337(rfc1337);
            let mut h = Harness::new(cfg);
            let (c, us, peer, our_nxt) = time_wait(&mut h, 80, release);
            let in_time_wait = |h: &Harness| {
                if release {
                    h.ep.time_wait_count() == 1
                } else {
                    h.ep.state(c) == Ok(State::TimeWait)
                }
            };
            let case = format!("rfc1337 {rfc1337}, released {release}, {look_at_ts}");
            h.inject(peer, us, Out::new(RST, 400, 0));
            assert!(in_time_wait(&h), "{case}: an RST elsewhere is ignored");
            h.advance(Duration::from_secs(30));
            h.inject(peer, us, Out::new(RST, 502, 0).ts(5, 0));
            h.none();
            assert_eq!(in_time_wait(&h), rfc1337, "{case}");
            if !rfc1337 {
                continue;
            }
            if look_at_ts {
                // TS.Recent is the RST's 5: a bare ACK with TSval 4 fails PAWS, and is
                // answered (one with 2, the FIN's, before the RST, would not be).
                h.inject(peer, us, Out::new(ACK, 502, 0).ackn(our_nxt).ts(4, 1));
                assert_eq!(h.one().ack, SeqNumber(502), "{case}");
            } else {
                // The 2 MSL still counts from the FIN: over 60 s after it.
                h.advance(Duration::from_secs(29));
                assert!(in_time_wait(&h), "{case}");
                h.advance(Duration::from_secs(2));
                assert!(!in_time_wait(&h), "{case}");
            }
        }
    }
}

#[test]
fn compact_time_wait_applies_paws() {
    // Linux's TIME-WAIT sock checks timestamps too (`tcp_paws_reject`): a bare ACK at
    // RCV.NXT with a TSval well behind TS.Recent is an old duplicate, answered rather than
    // taken in silence, and an RST with one does not end TIME-WAIT.
    let mut h = Harness::new(config());
    let (us, peer, our_nxt) = released_time_wait(&mut h, 80);
    h.inject(peer, us, Out::new(ACK, 502, 0).ackn(our_nxt).ts(1_000, 1));
    h.none();
    h.advance(Duration::from_secs(1));
    h.inject(peer, us, Out::new(ACK, 502, 0).ackn(our_nxt).ts(10, 1));
    let a = h.one();
    assert_eq!((a.seq, a.ack), (our_nxt, SeqNumber(502)));
    // TS.Recent is the in-sequence ACK's TSval now, and the answer echoes it.
    assert_eq!(a.ts.unwrap().tsecr, 1_000);
    assert_eq!(h.ep.stats().drop_paws, 1);
    h.inject(peer, us, Out::new(RST, 502, 0).ts(10, 0));
    assert_eq!(h.ep.time_wait_count(), 1, "an RST failing PAWS is ignored");
    h.inject(peer, us, Out::new(RST, 502, 0).ts(1_001, 0));
    assert_eq!(h.ep.time_wait_count(), 0);
}

#[test]
fn time_wait_paws_allows_no_tick_of_slack_and_reads_ts_in_modular_order() {
    // Linux's TIME-WAIT checks PAWS with no slack (`tcp_paws_check(rx_opt, 0)`), where an
    // established connection lets a TSval one tick behind through.
    let mut h = Harness::new(config());
    let (us, peer, our_nxt) = released_time_wait(&mut h, 80);
    // TS.Recent is 2 (the FIN's): a bare ACK at RCV.NXT with TSval 1 is an old duplicate.
    h.inject(peer, us, Out::new(ACK, 502, 0).ackn(our_nxt).ts(1, 1));
    assert_eq!(h.one().ack, SeqNumber(502));
    assert_eq!(h.ep.stats().drop_paws, 1);
    // A TSval half the number space ahead is newer (RFC 7323's modular order): a SYN with it
    // starts a new incarnation, though its sequence number lies below RCV.NXT.
    let _listener = h.ep.listen(us, 8).unwrap();
    h.inject(
        peer,
        us,
        Out::new(SYN, 300, 0).ts(2u32.wrapping_add(1 << 31), 0),
    );
    let synack = h.one();
    assert!(synack.is(SYN | ACK), "{synack:?}");
    assert_eq!(h.ep.time_wait_count(), 0);
}

/// Linux's `tcp_paws_reject` exempts an RST from PAWS once TS.Recent is 60 s old
/// (`TCP_PAWS_MSL`), which a TIME-WAIT restarted by retransmitted FINs reaches (their
/// TSvals do not replace TS.Recent). For a compact entry and a held connection alike.
#[test]
fn time_wait_takes_an_old_tsval_rst_once_ts_recent_is_60_s_old() {
    for release in [true, false] {
        let mut h = Harness::new(config());
        let (c, us, peer, our_nxt) = time_wait(&mut h, 80, release);
        let ended = |h: &Harness| {
            if release {
                h.ep.time_wait_count() == 0
            } else {
                h.ep.state(c) != Ok(State::TimeWait)
            }
        };
        // TS.Recent is 2, from the FIN. 50 s on, the FIN comes again and restarts the 2 MSL.
        h.advance(Duration::from_secs(50));
        h.inject(peer, us, Out::new(FIN | ACK, 501, 0).ackn(our_nxt).ts(3, 1));
        assert_eq!(h.one().ack, SeqNumber(502));
        // 59 s after TS.Recent was set, an RST with an older TSval fails PAWS.
        h.advance(Duration::from_secs(9));
        h.inject(peer, us, Out::new(RST, 502, 0).ts(1, 0));
        assert!(
            !ended(&h),
            "release {release}: an RST failing PAWS is ignored"
        );
        // At 60 s it does not fail it any more: TIME-WAIT ends.
        h.advance(Duration::from_secs(1));
        h.inject(peer, us, Out::new(RST, 502, 0).ts(1, 0));
        assert!(ended(&h), "release {release}: the RST is taken");
    }
}

/// [`time_wait`], held by the application.
fn held_time_wait() -> Conn {
    let mut h = Harness::new(config());
    let (c, us, peer, our_nxt) = time_wait(&mut h, 80, false);
    let _ = h.events();
    let k = Conn {
        h,
        c,
        us,
        peer,
        our_nxt,
        peer_nxt: SeqNumber(502),
    };
    assert_eq!(k.state(), State::TimeWait);
    assert_eq!(k.h.ep.time_wait_count(), 0, "held, not compact");
    k
}

#[test]
fn held_time_wait_answers_as_the_compact_entry_does() {
    // Linux moves every socket reaching TIME-WAIT to its TIME-WAIT sock, held or not; a held
    // connection takes segments by the same rules as a compact entry.
    let mut k = held_time_wait();
    // An RST inside what was the window draws no challenge ACK, and changes nothing.
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt + 100);
    k.h.inject(k.peer, k.us, o);
    k.h.none();
    assert_eq!(k.state(), State::TimeWait);
    assert_eq!(k.h.ep.stats().challenge_acks, 0);
    // A retransmitted FIN is acknowledged, echoing TS.Recent as it was (the FIN's TSval
    // does not replace it), and restarts the 2 MSL.
    k.h.advance(Duration::from_secs(30));
    let o = Out::new(FIN | ACK, 0, 0)
        .seqn(k.peer_nxt - 1)
        .ackn(k.our_nxt)
        .ts(50, 1);
    k.h.inject(k.peer, k.us, o.clone());
    let a = k.h.one();
    assert_eq!((a.seq, a.ack), (k.our_nxt, k.peer_nxt));
    assert_eq!(a.ts.unwrap().tsecr, 2);
    // Again, with the same TSval: the same answer (TS.Recent still 2).
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.h.one().ts.unwrap().tsecr, 2);
    // A bare ACK at RCV.NXT is taken in silence, and its TSval becomes TS.Recent.
    let o = Out::new(ACK, 0, 0)
        .seqn(k.peer_nxt)
        .ackn(k.our_nxt)
        .ts(60, 1);
    k.h.inject(k.peer, k.us, o);
    k.h.none();
    let o = Out::new(FIN | ACK, 0, 0)
        .seqn(k.peer_nxt - 1)
        .ackn(k.our_nxt)
        .ts(61, 1);
    k.h.inject(k.peer, k.us, o);
    assert_eq!(k.h.one().ts.unwrap().tsecr, 60);
    k.h.advance(Duration::from_secs(59));
    assert_eq!(k.state(), State::TimeWait, "2 MSL restarted");
    // An RST at RCV.NXT ends it.
    let o = Out::new(RST, 0, 0).seqn(k.peer_nxt).ts(62, 0);
    k.h.inject(k.peer, k.us, o);
    k.h.none();
    assert_eq!(k.state(), State::Closed);
}

#[test]
fn time_wait_table_recycles_the_oldest_under_pressure() {
    let mut cfg = config();
    cfg.max_time_wait(2);
    let mut h = Harness::new(cfg);
    for port in 0..5u16 {
        released_time_wait(&mut h, 1000 + port);
        h.advance(Duration::from_secs(1));
    }
    assert_eq!(h.ep.time_wait_count(), 2);
    assert_eq!(h.ep.stats().time_wait_recycled, 3);
}

/// `max_connections` counts TIME-WAIT entries too (`connection_count`), and a TIME-WAIT
/// entry yields to a new connection rather than refusing it. The `endpoint` fuzz target found
/// four connections under a limit of three: the opening paths counted only live ones
/// (fuzz/regressions/endpoint/max-connections-time-wait.bin).
#[test]
fn max_connections_counts_time_wait_and_recycles_it_for_new_ones() {
    let mut cfg = config();
    cfg.max_connections(3);
    let mut h = Harness::new(cfg);
    let server = SocketAddr::new(US, 8080);
    h.ep.listen(server, 8).unwrap();
    released_time_wait(&mut h, 1000);
    released_time_wait(&mut h, 1001);
    assert_eq!(h.ep.time_wait_count(), 2);
    // A third connection fits beside the two TIME-WAIT entries.
    let live = h.ep.connect(h.now, SocketAddr::new(PEER, 1002)).unwrap();
    let _ = h.drain();
    assert_eq!(h.ep.connection_count(), 3);
    // A fourth, active, takes the oldest TIME-WAIT entry's place.
    h.ep.connect(h.now, SocketAddr::new(PEER, 1003)).unwrap();
    let _ = h.drain();
    assert_eq!(h.ep.connection_count(), 3);
    assert_eq!(h.ep.time_wait_count(), 1);
    assert_eq!(h.ep.stats().time_wait_recycled, 1);
    // A fifth, passive, takes the last one's.
    let client = SocketAddr::new(PEER, 40000);
    h.inject(client, server, Out::new(SYN, 100, 0));
    let sa = h.one();
    assert!(sa.is(SYN | ACK), "{sa:?}");
    assert_eq!(h.ep.connection_count(), 3);
    assert_eq!(h.ep.time_wait_count(), 0);
    // With only live connections left, the limit refuses: a typed error for connect, and no
    // state for a SYN (which gets a stateless cookie, since the queue "overflowed").
    assert_eq!(
        h.ep.connect(h.now, SocketAddr::new(PEER, 1004)),
        Err(Error::NoBufferSpace)
    );
    h.inject(SocketAddr::new(PEER, 40001), server, Out::new(SYN, 100, 0));
    let _ = h.drain();
    assert_eq!(h.ep.connection_count(), 3);
    h.ep.abort(live).unwrap();
    let _ = h.drain();
    assert_eq!(h.ep.connection_count(), 2);
}

#[test]
fn abort_after_a_timeout_uses_the_highest_sequence_sent() {
    let mut k = open();
    k.h.ep.send(k.c, &[1u8; 2920]).unwrap();
    let sent: usize = k.h.drain().iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, 2920);
    // The retransmission timeout moves SND.NXT back to SND.UNA; the RST must still carry the
    // sequence number the peer expects next, or RFC 5961 makes it a mere challenge.
    let (_, r) = k.h.next_timeout();
    assert!(!r.is_empty());
    k.h.ep.abort(k.c).unwrap();
    let rst =
        k.h.drain()
            .into_iter()
            .find(|s| s.has(RST))
            .expect("an RST");
    assert_eq!(rst.seq, k.our_nxt + 2920);
}

#[test]
fn a_fin_riding_on_retransmitted_data_is_taken() {
    // Linux selftest tcp_close_no_rst: the peer resends data we already have, with its FIN
    // behind it. The data is a duplicate, the FIN at RCV.NXT is new: it is accepted and
    // ACKed (RFC 9293 §3.10.7.4: the segment is trimmed to the window, then its FIN taken).
    let mut k = open();
    k.peer_sends(ACK, &[7; 1000]);
    let _ = k.h.drain();
    assert_eq!(k.read().unwrap().len(), 1000);
    k.peer_nxt = SeqNumber(k.peer_nxt.0.wrapping_sub(1000));
    k.peer_sends(FIN | ACK, &[7; 1000]);
    assert_eq!(k.state(), State::CloseWait);
    let acks = k.h.drain();
    assert_eq!(acks.last().expect("an ACK").ack, k.peer_nxt);
    assert_eq!(k.read().unwrap(), b"", "EOF");
}

#[test]
fn a_read_sends_no_window_update_the_window_field_cannot_show() {
    // Linux selftest tcp_close_no_rst: no window scaling, a 540 kB buffer. Reading 1000
    // bytes frees room, but the window field already shows its most (65535), so no update
    // goes out; the next segment is the ACK of the peer's FIN.
    let mut cfg = synack_core::Config::linux();
    cfg.seed(Some([7; 32]));
    cfg.recv_buffer(540_000);
    let mut h = Harness::new(cfg);
    let us = SocketAddr::new(US, 8080);
    let peer = SocketAddr::new(PEER, 5000);
    let l = h.ep.listen(us, 8).unwrap();
    h.inject(
        peer,
        us,
        Out::new(SYN, 0, 0).window(32792).mss(1000).sack_ok(),
    );
    let sa = h.one();
    assert_eq!(sa.wscale, None);
    let ack = |flags| Out::new(flags, 1, 0).ackn(sa.seq + 1).window(32792);
    h.inject(peer, us, ack(ACK));
    let c = h.ep.accept(l).unwrap();
    h.inject(peer, us, ack(ACK).data(&[1; 1000]));
    let a = h.one();
    assert_eq!((a.ack, a.window), (SeqNumber(1001), 65535));
    let mut buf = [0u8; 2000];
    assert_eq!(h.ep.recv(h.now, c, &mut buf).unwrap(), 1000);
    h.none();
    h.inject(peer, us, ack(FIN | ACK).data(&[1; 1000]));
    let a = h.one();
    assert_eq!(
        a.ack,
        SeqNumber(1002),
        "the FIN behind the duplicate data is taken"
    );
}

// === The process ends (`Endpoint::end_unfinished`) ================================================

/// A connection with everything it sent acknowledged and nothing unread ends with its FIN,
/// as Linux closes a socket when its process exits: the peer reads the end of the stream,
/// not a reset; the exchange finishes if the peer answers.
#[test]
fn an_idle_connection_ends_with_a_fin() {
    let mut k = open();
    k.h.ep.send(k.c, b"all acknowledged").unwrap();
    let _ = k.h.drain();
    k.our_nxt += 16;
    k.peer_sends(ACK, b"");
    let ended = k.h.ep.end_unfinished(k.h.now);
    assert_eq!((ended.closed, ended.reset, ended.lost), (1, 0, 0));
    let segs = k.h.drain();
    assert_eq!(segs.len(), 1, "{segs:?}");
    assert!(segs[0].is(FIN | ACK));
    assert_eq!(segs[0].seq, k.our_nxt);
    // The handle stays the application's (a stream still held elsewhere learns from its
    // runtime that the stack is gone).
    assert_eq!(k.state(), State::FinWait1);
    k.our_nxt += 1;
    k.peer_sends(FIN | ACK, b"");
    assert_eq!(k.state(), State::TimeWait);
    assert!(k.h.drain().iter().all(|s| !s.has(RST)));
}

/// What would need a retransmission no one will make is reset instead, with the bytes it
/// held counted: data written and not acknowledged, data never read; and so is a connection
/// nobody accepted (as Linux resets what a closed listener's queue held). A FIN already on
/// its way with everything before it acknowledged is left to go.
#[test]
fn what_cannot_end_cleanly_is_reset() {
    // Unacknowledged data.
    let mut k = open();
    k.h.ep.send(k.c, b"in flight").unwrap();
    let _ = k.h.drain();
    let ended = k.h.ep.end_unfinished(k.h.now);
    assert_eq!((ended.closed, ended.reset, ended.lost), (0, 1, 9));
    let segs = k.h.drain();
    assert!(segs.len() == 1 && segs[0].has(RST), "{segs:?}");

    // Unread data.
    let mut k = open();
    k.peer_sends(ACK, b"unread");
    let _ = k.h.drain();
    let ended = k.h.ep.end_unfinished(k.h.now);
    assert_eq!((ended.closed, ended.reset), (0, 1));
    assert!(k.h.drain().iter().any(|s| s.has(RST)));

    // A FIN sent, unacknowledged, everything before it acknowledged: nothing more.
    let mut k = open();
    k.h.ep.shutdown(k.c).unwrap();
    assert!(k.h.one().has(FIN));
    let ended = k.h.ep.end_unfinished(k.h.now);
    assert_eq!((ended.closed, ended.reset), (1, 0));
    assert!(k.h.drain().is_empty());

    // Established in a listener's queue, never accepted.
    let mut h = Harness::new(config());
    let server = SocketAddr::new(US, 8080);
    let client = SocketAddr::new(PEER, 40000);
    let _l = h.ep.listen(server, 16).unwrap();
    h.inject(client, server, Out::new(SYN, 1000, 0));
    let syn_ack = h.one();
    h.inject(client, server, Out::new(ACK, 1001, 0).ackn(syn_ack.seq + 1));
    let _ = h.drain();
    let ended = h.ep.end_unfinished(h.now);
    assert_eq!((ended.closed, ended.reset), (0, 1));
    assert!(h.drain().iter().any(|s| s.has(RST)));
}
