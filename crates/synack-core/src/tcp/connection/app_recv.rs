//! The application's side of receiving: reads and peeks, what a read returns once the
//! stream has ended or failed, and the receive buffer's auto-tuning (Linux's
//! `tcp_rcv_space_adjust`) that reads drive.

use std::time::Duration;

use bytes::Bytes;

use super::Connection;
use crate::error::Error;
use crate::tcp::recv_buffer::RecvBuffer;
use crate::tcp::State;
use crate::time::Instant;

impl Connection {
    /// Whether a reader waiting for data should be woken, and a poll say `POLLIN`: enough
    /// data queued (see [`Connection::rcvlowat_reached`]), the end of the stream, or an error.
    /// `recv` itself returns whatever is queued.
    pub fn recv_ready(&self) -> bool {
        self.rcvlowat_reached()
            || self.rcv.fin_received
            || self.read_shut
            || self.error.is_some()
            || self.state == State::Closed
    }

    /// Linux's `tcp_epollin_ready` with `SO_RCVLOWAT` as the target (what `tcp_poll` and
    /// `tcp_data_ready` ask): data queued, and at least the low-water mark of it, or less
    /// when waiting for more could stall the connection: the receive buffer nearly full
    /// (`tcp_rmem_pressure`: more than seven eighths of it used, or memory pressure), or the
    /// window left to the peer no more than a segment (`tcp_receive_window` at most
    /// `icsk_ack.rcv_mss`), so that the sender could not bring the rest.
    fn rcvlowat_reached(&self) -> bool {
        let avail = self.readable_bytes();
        if avail == 0 {
            return false;
        }
        let cap = self.rcv.buffer.capacity();
        avail >= self.cfg.rcvlowat
            || self.mem.pressure
            || self.rcv.buffer.len() > cap - cap / 8
            || (self.is_synchronized() && self.rcv.adv - self.rcv.nxt <= self.rcv.delack.rcv_mss)
    }

    /// `SO_RCVLOWAT` (Linux's `tcp_set_rcvlowat`): a reader is woken, and a poll says
    /// `POLLIN`, once this many bytes are queued (a blocking read then waits for as many,
    /// which the caller of `recv` implements; `recv` returns what there is). At most half the
    /// buffer `set_recv_buffer` fixed (`SO_RCVBUF`), or else of the largest auto-tuning may
    /// reach, at least 1 (0 means 1, as in Linux); a buffer not fixed that is smaller than the
    /// mark grows to hold it, as Linux raises `sk_rcvbuf`, so that the window can open wide
    /// enough for the mark to be reached. Returns the mark in force, as `getsockopt` reads it back. A connection the
    /// mark now makes readable says so (`tcp_set_rcvlowat` calls `tcp_data_ready`).
    pub fn set_rcvlowat(&mut self, lowat: usize) -> usize {
        let locked = self.cfg.recv_buffer_locked;
        let cap = locked.unwrap_or(self.cfg.recv_buffer_max) / 2;
        let lowat = lowat.min(cap).max(1);
        std::sync::Arc::make_mut(&mut self.cfg).rcvlowat = lowat;
        if locked.is_none() && lowat > self.rcv.buffer.capacity() && !self.mem.pressure {
            self.rcv.buffer.set_capacity(lowat);
        }
        if self.recv_ready() {
            self.notify.readable = true;
        }
        lowat
    }

    /// The `SO_RCVLOWAT` in force (1 unless set).
    pub fn rcvlowat(&self) -> usize {
        self.cfg.rcvlowat
    }

    /// `TCP_QUICKACK` (Linux `__tcp_sock_set_quickack`). `true` leaves request/response
    /// (ping-pong) mode, where ACKs wait to ride on the reply, and sends an ACK that is
    /// waiting for its delayed-ACK timer now if the application has read everything (else
    /// at the read that does), in ESTABLISHED and CLOSE-WAIT. `false` enters ping-pong
    /// mode. Neither is for good, as in Linux: the delayed-ACK engine enters and leaves
    /// ping-pong mode again as the exchange goes (see `tcp::delayed_ack`).
    pub fn set_quickack(&mut self, on: bool) {
        if !on {
            self.rcv.delack.pingpong = true;
            return;
        }
        self.rcv.delack.pingpong = false;
        if matches!(self.state, State::Established | State::CloseWait)
            && self.timers.delayed_ack.is_some()
        {
            self.rcv.delack.mark_pushed();
            self.ack_on_read();
        }
    }

    /// After a read, or `TCP_QUICKACK`: the ACK that waits for the delayed-ACK timer goes
    /// now if the delayed-ACK engine says so (`tcp_cleanup_rbuf`'s `time_to_ack`). Held
    /// out-of-order data keeps the queue from counting as emptied, as it keeps Linux's
    /// `sk_rmem_alloc` above zero.
    fn ack_on_read(&mut self) {
        if self.timers.delayed_ack.is_none() || self.rcv.ack_now {
            return;
        }
        let emptied = self.rcv.buffer.is_empty() && self.rcv.buffer.ooo_bytes() == 0;
        if self.rcv.delack.ack_on_read(self.rcv.nxt, emptied) {
            self.rcv.ack_now = true;
        }
    }

    /// `TCP_QUICKACK` as Linux's `getsockopt` reads it: not in ping-pong mode.
    pub fn quickack(&self) -> bool {
        !self.rcv.delack.pingpong
    }

    /// Receive-buffer auto-tuning (after Linux `tcp_rcv_space_adjust`, "dynamic right-sizing"):
    /// once per round trip, if the application read more than ever before in one, let the
    /// buffer (and so the window) hold twice that, up to the configured ceiling. The round
    /// trip is the send side's estimate, or without one the receiver's own
    /// ([`RcvSpace::rtt_us`](super::RcvSpace::rtt_us)); with neither, a millisecond.
    fn tune_receive_buffer(&mut self, now: Instant, read: usize) {
        let space = &mut self.rcv_space;
        space.read = space
            .read
            .saturating_add(u32::try_from(read).unwrap_or(u32::MAX));
        let own = (space.rtt_us > 0).then(|| Duration::from_micros(u64::from(space.rtt_us)));
        let rtt = self
            .rtt
            .srtt()
            .or(own)
            .unwrap_or(Duration::from_millis(1))
            .max(Duration::from_millis(1));
        if now - space.since < rtt {
            return;
        }
        if space.read > space.best {
            space.best = space.read;
            let want = (2 * space.best as usize).min(self.cfg.recv_buffer_max);
            if want > self.rcv.buffer.capacity() && !self.mem.pressure {
                self.rcv.buffer.set_capacity(want);
            }
        }
        space.read = 0;
        space.since = now;
    }

    /// A full-sized in-order data segment echoing a timestamp not seen before: a sample of
    /// the receiver's round trip, from the time that TSval left to now, into
    /// [`RcvSpace::rtt_us`](super::RcvSpace::rtt_us) with a gain of 1/8 (Linux's
    /// `tcp_rcv_rtt_measure_ts` and `tcp_rcv_rtt_update`). Taken only while the send side
    /// has no estimate, the one time the tuning needs it.
    pub(super) fn measure_receive_rtt(&mut self, now: Instant, tsecr: u32, len: usize) {
        if self.rtt.srtt().is_some() || tsecr == 0 || len < self.rcv.delack.rcv_mss {
            return;
        }
        if self.rcv_space.last_tsecr == tsecr {
            return;
        }
        self.rcv_space.last_tsecr = tsecr;
        let elapsed_ms = self.ts_now(now).wrapping_sub(tsecr);
        // An echo from the future, or absurdly old, is no sample.
        if elapsed_ms >= 60_000 {
            return;
        }
        // The clock is in milliseconds: a sample under one counts as one, as Linux's
        // `tcp_rtt_tsopt_us` takes no sample below its tick as zero.
        let sample = u64::from(elapsed_ms.max(1)) * 1000;
        let old = u64::from(self.rcv_space.rtt_us);
        let smoothed = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        self.rcv_space.rtt_us = u32::try_from(smoothed).unwrap_or(u32::MAX);
    }

    /// Application read (RFC 9293 §3.10.3 RECEIVE) of at most `max` bytes, handed to `sink`
    /// in order (in slices as the receive buffer holds them), so that the caller's
    /// destination needs no buffer of its own in between. `Ok(0)` is end of stream. A read
    /// stops at the urgent mark, and skips the urgent byte there (see `urgent.rs`).
    pub fn recv_with(
        &mut self,
        now: Instant,
        max: usize,
        sink: impl FnMut(&[u8]),
    ) -> Result<usize, Error> {
        let read = self.read(now, max, |buffer, take| {
            let n = buffer.read_with(take, sink);
            (n, n)
        });
        read.map(Option::unwrap_or_default)
    }

    /// A read of at most `max` bytes as one handle: a payload kept where it arrived is handed
    /// over without a copy (see `recv_buffer`), at most one such payload a read. Empty at the
    /// end of the stream; otherwise as [`recv_with`](Self::recv_with).
    pub fn recv_bytes(&mut self, now: Instant, max: usize) -> Result<Bytes, Error> {
        let read = self.read(now, max, |buffer, take| {
            let bytes = buffer.read_bytes(take);
            (bytes.len(), bytes)
        });
        read.map(Option::unwrap_or_default)
    }

    /// A read of at most `max` bytes by `take`, which removes up to as many as it is given
    /// and says how many: `Ok(Some(_))` if it took any, `Ok(None)` at the end of the stream
    /// (or for `max` 0), else the error a read gets with nothing buffered.
    fn read<T>(
        &mut self,
        now: Instant,
        max: usize,
        take: impl FnOnce(&mut RecvBuffer, usize) -> (usize, T),
    ) -> Result<Option<T>, Error> {
        if !self.rcv.buffer.is_empty() {
            if max == 0 {
                return Ok(None);
            }
            let (skip, want) = self.urgent_read_plan(max);
            self.rcv.buffer.skip(skip);
            let (n, out) = take(&mut self.rcv.buffer, want);
            self.after_urgent_read();
            if self.is_synchronized() {
                self.tune_receive_buffer(now, n + skip);
            }
            if n + skip > 0 {
                self.ack_on_read();
            }
            self.after_read();
            self.arm_reclaim(now);
            if n > 0 {
                return Ok(Some(out));
            }
        }
        self.recv_empty().map(|_| None)
    }

    /// What a read returns with nothing buffered: end of stream, the connection's error,
    /// or `WouldBlock` while data may still come.
    fn recv_empty(&self) -> Result<usize, Error> {
        // The peer's FIN came first: the stream ended cleanly, whatever happened after (an
        // RST in CLOSE-WAIT fails writes, not reads: Linux's tcp_recvmsg sees SOCK_DONE
        // before the socket error).
        if self.rcv.fin_received {
            return Ok(0);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        // Linux's `tcp_recvmsg` looks at `RCV_SHUTDOWN` after the socket's error.
        if self.read_shut || self.state == State::Closed {
            return Ok(0);
        }
        match self.state {
            State::SynSent
            | State::SynReceived
            | State::Established
            | State::FinWait1
            | State::FinWait2 => Err(Error::WouldBlock),
            _ => Ok(0),
        }
    }

    /// Like [`Connection::recv_with`], but the bytes stay buffered for the next read (MSG_PEEK).
    pub fn peek(&self, buf: &mut [u8]) -> Result<usize, Error> {
        if !self.rcv.buffer.is_empty() && !buf.is_empty() {
            let (skip, take) = self.urgent_read_plan(buf.len());
            if skip == 0 {
                return Ok(self.rcv.buffer.peek(&mut buf[..take]));
            }
            if take > 0 {
                let mut tmp = vec![0; skip + take];
                self.rcv.buffer.peek(&mut tmp);
                buf[..take].copy_from_slice(&tmp[skip..]);
                return Ok(take);
            }
        } else if !self.rcv.buffer.is_empty() {
            return Ok(0);
        }
        self.recv_empty()
    }

    /// After the application read: open the window if it grew enough (receiver SWS
    /// avoidance, RFC 9293 §3.8.6.2.2), and say so with a window update.
    fn after_read(&mut self) {
        if !self.is_synchronized() || self.rcv.fin_received {
            return;
        }
        let advertised = self.rcv.adv - self.rcv.nxt;
        // What the window field can carry caps what a read can open: a buffer larger than
        // 64 KiB << wscale opens nothing the peer could see, so no update for it (Linux's
        // `__tcp_cleanup_rbuf` compares against `__tcp_select_window`, which is clamped the
        // same way; the selftest tcp_close_no_rst sees no ACK after a read).
        let max = self.max_window_field();
        let potential = self.window_room(advertised).min(max);
        let threshold = (self.rcv.buffer.capacity() / 2).min(self.rcv.mss);
        if potential >= advertised + threshold
            && (advertised < self.rcv.mss || potential >= 2 * advertised)
        {
            self.rcv.ack_now = true;
        }
    }
}
