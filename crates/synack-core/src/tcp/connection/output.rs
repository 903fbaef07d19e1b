//! What to send next: SYNs, retransmissions, new data under the peer's window and the
//! congestion window, FIN, probes and ACKs (RFC 9293 §3.8.6, §3.7.4; RFC 5681; RFC 6582).

use std::net::IpAddr;

use super::{Connection, Frto, PaceBucket, TimedSegment};
use crate::seq::SeqNumber;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::ip::IpMarks;
use crate::wire::{IpProtocol, IpRepr, TcpFlags, TcpRepr, TcpTimestamp};

/// The hop limit / TTL of everything we send unless a socket sets its own (Linux's
/// `ip_default_ttl`, and IPv6's default `hop_limit`); public as [`crate::DEFAULT_HOP_LIMIT`].
pub const HOP_LIMIT: u8 = 64;

/// Write an IP packet from `src` to `dst` carrying `seg` into `buf`, its header marked with
/// `marks`. The payload is taken from `seg.payload`, or produced in place by `fill` when
/// `fill_len` is non-zero (the send buffer copies straight into the packet). With
/// `checksum_partial` the TCP checksum field holds only the pseudo-header sum, for the device
/// to complete (`Transmit::checksum_partial`), and the payload is never summed. Returns the
/// packet's length, or `None` if `buf` is too small.
pub(crate) fn write_segment(
    buf: &mut [u8],
    (src, dst, marks): (IpAddr, IpAddr, IpMarks),
    seg: &TcpRepr<'_>,
    fill_len: usize,
    fill: impl FnOnce(&mut [u8]),
    checksum_partial: bool,
) -> Option<usize> {
    let payload_len = if fill_len > 0 {
        fill_len
    } else {
        seg.payload.len()
    };
    let header_len = seg.header_len();
    let tcp_len = header_len + payload_len;
    let ip = IpRepr::new(src, dst, IpProtocol::Tcp, tcp_len, marks.hop_limit).ok()?;
    let ip_len = ip.header_len();
    let total = ip_len + tcp_len;
    if buf.len() < total {
        return None;
    }
    ip.emit_marked(&mut buf[..ip_len], marks);
    let tcp = &mut buf[ip_len..total];
    if fill_len > 0 {
        fill(&mut tcp[header_len..]);
    } else {
        tcp[header_len..].copy_from_slice(seg.payload);
    }
    let mut packet = seg.emit_header(tcp, payload_len);
    if checksum_partial {
        packet.fill_checksum_partial(src, dst);
    } else {
        packet.fill_checksum(src, dst);
    }
    Some(total)
}

/// Why a data segment goes out, for `emit_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Emit {
    /// New data under the windows and Nagle's rules.
    New,
    /// New data the persist timer let out past SWS avoidance, Nagle or a cork; it carries
    /// PSH, as Linux's `tcp_write_wakeup` sets it.
    Wakeup,
    /// Data sent before, sent again.
    Retransmit,
}

/// What kind of segment `poll_transmit` produced, for the endpoint's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    pub len: usize,
    pub retransmit: bool,
    pub rst: bool,
    /// For a super-segment (segmentation offload): the payload bytes of each segment it is to
    /// be cut into. `None` for a packet that is one segment.
    pub segment_size: Option<usize>,
    /// The segments the packet stands for: 1, or more for a super-segment.
    pub segments: u32,
    /// The TCP checksum is left for the device to complete (`Transmit::checksum_partial`).
    pub checksum_partial: bool,
    /// It carries CWR (RFC 3168 §6.1.2), for the endpoint's counters.
    pub cwr: bool,
    /// The bytes of the packet written into the buffer: all `len` of them, or only the
    /// headers of a super-segment whose payload is still to be placed
    /// ([`Connection::place_payload`]).
    pub head_len: usize,
    /// Where that payload starts in the send buffer.
    pub payload_at: usize,
}

impl Sent {
    /// A packet that is one segment.
    pub(super) fn single(len: usize, retransmit: bool, rst: bool) -> Sent {
        Sent {
            len,
            retransmit,
            rst,
            segment_size: None,
            segments: 1,
            checksum_partial: false,
            cwr: false,
            head_len: len,
            payload_at: 0,
        }
    }
}

impl Connection {
    /// Places the payload a [`Sent`] left out of `buf` (`head_len < len`, the payload of a
    /// super-segment whose checksum the device finishes): as handles on the send buffer's
    /// bytes appended to `gather`, or, without it, copied into `buf` after the headers.
    /// Called by the endpoint at once, before anything can acknowledge those bytes.
    pub(crate) fn place_payload(
        &mut self,
        sent: &mut Sent,
        buf: &mut [u8],
        gather: Option<&mut Vec<bytes::Bytes>>,
    ) {
        let (at, len) = (sent.payload_at, sent.len - sent.head_len);
        if len == 0 {
            return;
        }
        match gather {
            Some(list) => {
                self.snd.buffer.slices(at, len, list);
            }
            None => {
                self.snd
                    .buffer
                    .copy_out(at, &mut buf[sent.head_len..sent.len]);
                sent.head_len = sent.len;
            }
        }
    }

    /// The next packet this connection wants to send, written into `buf` (but for a payload
    /// left to [`Connection::place_payload`]).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Sent> {
        if let Some((seq, ack)) = self.reset_reply.take() {
            let seg = self.rst_repr(seq, ack);
            // An RST answering a segment leaves Linux from a control socket
            // (`tcp_v4_send_reset`): ID 0 and the default TTL, the connection's count
            // unmoved.
            let socket = std::mem::replace(&mut self.control_socket, true);
            let sent = self.finish(buf, &seg, false, true);
            self.control_socket = socket;
            return sent;
        }
        if self.rst_pending {
            self.rst_pending = false;
            // SND.MAX, not SND.NXT: after a timeout moved SND.NXT back, an RST below the
            // peer's RCV.NXT would only draw a challenge ACK (RFC 5961 §3.2).
            let mut seg = self.rst_repr(self.snd.max, Some(self.rcv.nxt));
            // An RST of our own (abort, close with unread data) is sent as Linux's
            // tcp_send_active_reset sends it: with the window the connection offers (an RST
            // in reply to a segment has none), its timestamp option (RFC 7323 §3.2: on
            // every segment once negotiated) and the SACK blocks of what it still holds out
            // of order (`tcp_established_options`; the queue is purged after the RST).
            seg.window_len =
                (self.advertisable_window() >> self.rcv.wscale).min(u16::MAX as usize) as u16;
            if self.state != State::SynSent {
                if self.ts.enabled {
                    seg.timestamp = Some(TcpTimestamp {
                        tsval: self.ts_now(now),
                        tsecr: self.ts.recent,
                    });
                }
                self.fill_sack_blocks(&mut seg);
            }
            return self.finish(buf, &seg, false, true);
        }
        self.expire_path_mtu(now);
        match self.state {
            State::Closed | State::Listen => return None,
            // A Fast Open child (RFC 7413 §4.2.2) sends data once its SYN-ACK is out, before
            // the handshake's final ACK, as in ESTABLISHED.
            State::SynReceived if !self.syn_pending && self.is_fast_open_child() => {}
            State::SynSent | State::SynReceived => {
                if !self.syn_pending {
                    // SYN-RECEIVED owes an ACK to an unacceptable segment (RFC 9293
                    // §3.10.7.4); SYN-SENT has nothing to acknowledge yet.
                    if self.state == State::SynReceived && self.rcv.ack_now {
                        let seg = self.ack_repr(now, self.snd.max);
                        return self.finish(buf, &seg, false, false);
                    }
                    return None;
                }
                self.syn_pending = false;
                let mut seg = self.syn_segment(now);
                let retransmit = self.snd.max > self.snd.iss;
                // TCP Fast Open (RFC 7413 §4.2): the first SYN may carry a cookie and data.
                let data = self.fast_open_syn(&mut seg);
                if self.state == State::SynReceived {
                    self.fast_open_syn_ack(&mut seg);
                }
                // A Fast Open child's SYN-ACK sent again leaves the data it sent since where
                // it is: only the SYN-ACK is resent (Linux's tcp_fastopen_synack_timer).
                let after_syn = self.snd.iss + 1 + data;
                self.snd.nxt = if self.is_fast_open_child() {
                    self.snd.nxt.max(after_syn)
                } else {
                    after_syn
                };
                self.snd.max = self.snd.max.max(self.snd.nxt);
                if self.timers.retransmit.is_none() {
                    self.timers.retransmit = Some(now + self.syn_rto());
                }
                if !retransmit {
                    self.rtt_seq = Some(TimedSegment {
                        seq: self.snd.iss,
                        sent: now,
                    });
                    if self.state == State::SynSent {
                        // The oldest TSval an answer to our SYNs can echo.
                        self.ts.min_echo = Some(self.ts_now(now));
                        // A user timeout bounds the connect from the first SYN, as Linux's
                        // `tcp_connect` sets `retrans_stamp`.
                        self.retransmitting_since = Some(now);
                    }
                } else {
                    self.rtt_seq = None;
                }
                if data > 0 {
                    // Never ECT on a SYN, data or not (RFC 3168 §6.1.1).
                    let ip = self.ip_header(&seg, false, 1);
                    // The data is the send buffer's first bytes (SND.UNA + 1 = the data's start).
                    let buffer = &self.snd.buffer;
                    let fill = |out: &mut [u8]| {
                        buffer.copy_out(0, &mut out[..data]);
                    };
                    let partial = self.checksum_partial(data);
                    let len = write_segment(buf, ip, &seg, data, fill, partial)?;
                    self.count_sent(&seg, 1, data, if retransmit { data } else { 0 });
                    self.after_send(&seg);
                    let mut sent = Sent::single(len, false, false);
                    sent.checksum_partial = partial;
                    return Some(sent);
                }
                return self.finish(buf, &seg, retransmit, false);
            }
            _ => {}
        }

        if let Some(sent) = self.send_ack_point(now, buf) {
            return Some(sent);
        }
        // Without SACK, the head a partial ACK marked lost waits while PRR's window is full,
        // as Linux's `tcp_xmit_retransmit_queue` stops once the packets in flight reach
        // cwnd; the next ACK that delivers more lets it go. (The fast retransmit always
        // finds room: PRR forces it, `prr_on_ack`.)
        let head_held = !self.sack_ok
            && self.recovery.recover.is_some()
            && self.reno_pipe() >= self.recovery.prr_cwnd;
        if self.recovery.retransmit_head && !head_held {
            self.recovery.retransmit_head = false;
            let una = self.snd.una;
            // In SACK recovery in the Linux profile the head is the first lost hole, resent
            // as the others are (`hole_segments`).
            let linux = self.cfg.skb_accounting && self.sack_recovery();
            let (max_len, packet) = match self.snd.scoreboard.next_hole(una, self.snd.max) {
                Some((_, end)) if linux => (end - una, self.hole_segments(una)),
                _ => (usize::MAX, None),
            };
            if let Some(sent) = self.send_data_at_most(now, buf, una, max_len, packet) {
                return Some(sent);
            }
        }
        if self.sack_recovery() {
            if let Some(sent) = self.send_lost_hole(now, buf) {
                return Some(sent);
            }
        }
        // A probe for data in flight only: one that came due is sent when the connection is
        // next polled, and an ACK taken in between may have acknowledged everything (Linux
        // sends it from the timer itself). Nothing is left to probe then, and a "last
        // segment sent again" would be a FIN one past the FIN just acknowledged.
        if std::mem::take(&mut self.recovery.tlp_pending) && self.snd.una < self.snd.max {
            let open = !self.in_loss_recovery();
            let max_before = self.snd.max;
            // Linux's `tcp_send_loss_probe` sends none while an episode's probe is still
            // unanswered (`tlp_high_seq`), as RFC 8985 §7.3 allows one per episode: an ACK
            // that moved SND.UNA short of the probe's end (which let this timer be armed
            // anew, its first probe again) starts no episode of its own. synack's second
            // probe of an episode (`MAX_TLP_PROBES`) comes only when no ACK moved at all.
            let unanswered = self.recovery.tlp_high_seq.is_some() && self.recovery.tlp_probes == 1;
            let sent = if unanswered {
                None
            } else {
                self.send_probe(now, buf)
            };
            // RFC 8985 §7.3: "After attempting to send a loss probe, regardless of whether a
            // loss probe was sent, the sender MUST re-arm the RTO timer, not the PTO timer,
            // if the FlightSize is not empty". Linux's `tcp_rearm_rto` gives a whole RTO
            // from now after a probe that went; after none (the window cut it off, or one
            // is unanswered), only what is left of the RTO since the head was sent
            // (`tcp_rto_delta_us`, the probe timer still pending), which may be nothing.
            // Only for a probe of the open state, the one Linux has: in recovery, where
            // only synack probes, a probe with nothing to resend must not bring the
            // timeout forward (with it, the 1 % loss bulk rows fell by about a third).
            // Nothing left is one jiffy, as `usecs_to_jiffies` rounds Linux's 1 µs floor up
            // (and output never arms a timer that is already due).
            if self.snd.una < self.snd.max {
                let rto = self.current_rto();
                let head = self.snd.rack.head_xmit(self.snd.una);
                let soonest = now + std::time::Duration::from_millis(1);
                self.timers.retransmit = Some(match (&sent, head) {
                    (None, Some(head)) if open => (head + rto).max(soonest),
                    _ => now + rto,
                });
            }
            if let Some(sent) = sent {
                // Only a probe that went is one whose answer may reveal a loss (Linux sets
                // `tlp_high_seq` once `tcp_send_loss_probe` has sent; a window the peer
                // shrank may have let nothing go, see `send_data_at_most`).
                self.recovery.tlp_outstanding = true;
                self.counters.add(|c| &mut c.tlp, 1);
                // The episode whose end tells whether the probe repaired a loss (RFC 8985
                // §7.4, Linux's `tlp_high_seq` and `tlp_retrans`, set by
                // `tcp_send_loss_probe` for a probe of the open state only: Linux sends
                // none in recovery or after a timeout, where synack's probes leave the
                // window to the recovery's own reduction).
                if open && self.recovery.tlp_high_seq.is_none() {
                    self.recovery.tlp_high_seq = Some(self.snd.nxt);
                    self.recovery.tlp_retrans = self.snd.max == max_before;
                }
                // The next probe of the episode, if one is left (`MAX_TLP_PROBES`), when it
                // comes before the re-armed RTO.
                if self.timers.tlp.is_none() {
                    self.arm_tlp(now);
                }
                return Some(sent);
            }
        }
        if let Some(sent) = self.send_new_data(now, buf) {
            return Some(sent);
        }
        if self.reset_after_flush {
            // Closed with data unread: what could go has gone; now the RST.
            self.reset_unread();
            return self.poll_transmit(now, buf);
        }
        // An ACK owed at SND.MAX (a window update a read made, say) goes first: the probe,
        // at SND.UNA - 1, is dropped unread by the peer, and would take the owed ACK's place
        // (`after_send`). The probe follows at the next call, as Linux sends both: the
        // probe from its timer, the update from the read.
        if !self.rcv.ack_now
            && std::mem::take(&mut self.probe_pending)
            && self.snd.una == self.snd.max
        {
            // Zero-window and keepalive probes, Linux-style: an ACK carrying the already
            // acknowledged sequence number SND.UNA - 1, which the peer must answer with an ACK
            // showing its current window (RFC 9293 §3.8.4 allows the no-data form). Only
            // with nothing in flight, as Linux's `tcp_probe_timer` and
            // `tcp_keepalive_timer` send one: data written or let out by a window that
            // opened since the timer ran is its own probe.
            let seg = self.ack_repr(now, self.snd.una - 1);
            // From the socket, as Linux's timer sent it, even when a close since handed the
            // connection to a FIN_WAIT2 timewait sock (`become_fin_wait_2_sock`), which
            // sends no probes of its own.
            let socket = std::mem::replace(&mut self.control_socket, false);
            let sent = self.finish(buf, &seg, false, false);
            self.control_socket = socket;
            return sent;
        }
        if self.rcv.ack_now {
            // A pure ACK carries SND.MAX, not SND.NXT: after a timeout moved SND.NXT back, an
            // ACK with the older number would fall below the peer's RCV.NXT and be dropped
            // unread (BSD's tcp_output makes the same choice).
            let seg = self.ack_repr(now, self.snd.max);
            return self.finish(buf, &seg, false, false);
        }
        None
    }

    /// The SYN retransmission timeout: the configured initial SYN RTO, doubled per retry
    /// (after `syn_linear_timeouts` retries at the initial RTO, for an active open).
    pub(super) fn syn_rto(&self) -> std::time::Duration {
        self.syn_rto_after(self.backoff)
    }

    /// Linux's `tcp_model_timeout` for SYNs: how long `syn_retries` retries take when each
    /// doubles the RTO from the initial SYN RTO, the RTO capped at `max_rto`. Saturating:
    /// any configuration (an uncapped RTO, a microsecond's initial one, many retries) gives
    /// at most `Duration::MAX`, never an overflow.
    pub(super) fn syn_model_timeout(&self) -> std::time::Duration {
        let base = self
            .cfg
            .initial_syn_rto
            .max(std::time::Duration::from_micros(1));
        let max = self.cfg.max_rto.max(base);
        let thresh = ((max.as_micros() / base.as_micros()).max(1) as u64).ilog2();
        let retries = self.cfg.syn_retries;
        // 2^(n+1) - 1: the sum of the first n + 1 doublings of `base`.
        let doublings = |n: u32| {
            1u32.checked_shl(n.saturating_add(1))
                .map_or(u32::MAX, |f| f - 1)
        };
        if retries <= thresh {
            base.saturating_mul(doublings(retries))
        } else {
            base.saturating_mul(doublings(thresh))
                .saturating_add(max.saturating_mul(retries - thresh))
        }
    }

    /// The SYN (or SYN-ACK) retransmission timeout after `backoff` retransmissions. A
    /// passive open's SYN-ACK starts from the initial RTO (1 s, RFC 6298 §2.1), as Linux's
    /// request sockets start from `TCP_TIMEOUT_INIT`, so that a half-open connection is
    /// given up after 63 s with the default five retries, as there; only the active open's
    /// SYN takes `Config::initial_syn_rto`.
    pub(super) fn syn_rto_after(&self, backoff: u32) -> std::time::Duration {
        let (base, linear) = if self.passive {
            (self.cfg.initial_rto, 0)
        } else {
            (self.cfg.initial_syn_rto, self.cfg.syn_linear_timeouts)
        };
        let doublings = backoff.saturating_sub(linear);
        let factor = 1u32.checked_shl(doublings.min(31)).unwrap_or(u32::MAX);
        base.checked_mul(factor)
            .unwrap_or(self.cfg.max_rto)
            .min(self.cfg.max_rto.max(base))
    }

    /// Fast recovery driven by the SACK scoreboard (RFC 6675) rather than NewReno's.
    fn sack_recovery(&self) -> bool {
        self.sack_ok && self.recovery.recover.is_some()
    }

    /// RFC 6675 §5 step 4.2: during recovery the congestion window bounds the pipe estimate
    /// rather than SND.NXT - SND.UNA; that window is the one PRR set on the last ACK
    /// (RFC 6937 §3, `Connection::prr_on_ack`), so that what may be sent is its `sndcnt`
    /// less what was sent since.
    ///
    /// With [`Config::recovery_in_packets`](crate::Config::recovery_in_packets), the window
    /// and the pipe are in segments, as Linux's `tcp_cwnd_test` counts its quota in packets:
    /// each segment the window leaves room for may carry a full payload, and one sent
    /// shorter (a small `MSG_EOR` record) uses up a segment all the same.
    fn recovery_allowance(&self) -> usize {
        self.prr_allowance(self.recovery.high_rxt)
    }

    /// What PRR's window leaves room for beyond the pipe (see `recovery_allowance`), the
    /// pipe taken with `high_rxt`.
    fn prr_allowance(&self, high_rxt: SeqNumber) -> usize {
        let cwnd = self.recovery.prr_cwnd;
        if self.prr_packets() {
            let pipe = self.snd.pipe_segments(high_rxt, self.lost_boundary());
            return (cwnd / self.snd.mss.max(1))
                .saturating_sub(pipe)
                .saturating_mul(self.payload_room());
        }
        cwnd.saturating_sub(self.snd.pipe(high_rxt, self.lost_boundary()))
    }

    /// RFC 6675 §4 NextSeg rule 1: the first un-SACKed, lost hole at or above HighRxt.
    fn send_lost_hole(&mut self, now: Instant, buf: &mut [u8]) -> Option<Sent> {
        // A segment's payload (less than the MSS when options ride along) is what one
        // delivered segment lets PRR send again.
        if self.recovery_allowance() < self.payload_room() {
            return None;
        }
        let boundary = self.lost_boundary()?;
        let mut from = self.snd.una.max(self.recovery.high_rxt);
        // None when every lost hole was resent. A retransmission merely not acknowledged yet
        // is not resent again: only once RACK finds it lost, which moves HighRxt back to it
        // (`rack_detect_only`), as Linux resends only what RACK marks lost; the holes above
        // it whose retransmissions are still in flight are passed over (`from` grows at each
        // turn, and the scoreboard holds a bounded number of holes).
        let srtt = self.rtt.srtt().unwrap_or(self.current_rto());
        let (start, end) = loop {
            let (start, end) = self.snd.scoreboard.next_unsacked(from, boundary)?;
            let past = self.snd.rack.resent_in_flight_until(now, start, srtt);
            if past < end {
                break (past, end);
            }
            from = past;
        };
        let segments = self.hole_segments(start);
        // Nor, in a packet of several segments, what lies behind (a retransmission in flight
        // further into the hole), looked for only as far as this packet can reach (one
        // segment, or the rest of the packet that first carried `start` in at most the
        // segments the allowance gives it: see `send_data_at_most`). A hole may be
        // thousands of records long.
        let room = self.payload_room();
        let reach = segments
            .map_or(0, |(bytes, n)| bytes.min(n.saturating_mul(room)))
            .max(room);
        let limit = if end - start > reach {
            start + reach
        } else {
            end
        };
        let stop = self.snd.rack.resendable_until(now, start, limit, srtt);
        let end = stop.map_or(end, |s| s.min(end));
        self.send_data_at_most(now, buf, start, end - start, segments)
    }

    /// How many segments one retransmission of a lost hole starting at `seq` may carry. In
    /// the Linux profile (`Config::skb_accounting`), as Linux resends its retransmission
    /// queue skb by skb (`tcp_xmit_retransmit_queue`, `__tcp_retransmit_skb`): the rest of
    /// the packet that first carried `seq`, in one packet of as many segments as the
    /// recovery allowance (`cwnd - packets in flight`) and the TSO size (`tcp_tso_segs`)
    /// let go; such a packet carries PSH as every multi-segment packet does. Otherwise one
    /// segment.
    fn hole_segments(&self, seq: SeqNumber) -> Option<(usize, usize)> {
        if !self.cfg.skb_accounting {
            return None;
        }
        let room = self.payload_room();
        let offset = seq - self.snd.data_start();
        let end = self.snd.skbs.as_ref()?.packet_end(offset)?;
        let segments = (self.recovery_allowance() / room)
            .min(self.tso_segments(room))
            .max(1);
        Some((end - offset, segments))
    }

    /// A tail loss probe (RFC 8985 §7.3): one new segment if the peer's window allows, else
    /// the last segment sent again. In recovery or after a timeout (see `arm_tlp`), the
    /// first un-SACKed segment again: its retransmission is the one whose loss nothing else
    /// would reveal before the RTO.
    fn send_probe(&mut self, now: Instant, buf: &mut [u8]) -> Option<Sent> {
        if self.in_loss_recovery() {
            // SND.UNA is never SACKed: the segment there is the first hole.
            return self.send_data_at(now, buf, self.snd.una, usize::MAX);
        }
        let buffered_end = self.snd.data_start() + self.snd.buffer.len();
        let wnd_edge = self.snd.una + self.snd.wnd;
        if self.snd.nxt == self.snd.max && self.snd.max < buffered_end && self.snd.nxt < wnd_edge {
            let room = self.payload_room();
            let limit = self.record_end(self.snd.nxt).unwrap_or(buffered_end);
            let len = (limit - self.snd.nxt)
                .min(wnd_edge - self.snd.nxt)
                .min(room);
            return self.emit_data(now, buf, self.snd.nxt, len, false, Emit::New, room);
        }
        let data_end = buffered_end.min(self.snd.max);
        if self.snd.fin_alone && self.snd.fin_seq.is_some_and(|f| f == data_end) {
            // The last segment sent was the FIN on its own: the probe is the FIN again, as
            // Linux's tcp_send_loss_probe resends the last skb, which is the FIN's.
            return self.send_data_at(now, buf, data_end, 0);
        }
        let room = self.payload_room();
        let mut start = (data_end - room.min(data_end - self.snd.una)).max(self.snd.una);
        // The last segment sent never began before the end of the record it follows.
        if let Some(&end) = self.snd.records.iter().rev().find(|&&end| end < data_end) {
            start = start.max(end);
        }
        // In the Linux profile, the last segment as it went on the wire: Linux's
        // tcp_send_loss_probe resends the last skb of its retransmission queue (the last
        // packet sent), cut to its last MSS-sized piece counted from the packet's start
        // (`(pcount - 1) * mss`), so a packet of 2500 bytes is probed with its last 500,
        // and of two short packets the last goes alone.
        if let Some(q) = self.snd.skbs.as_ref() {
            let base = self.snd.data_start();
            if let Some(first) = q.packet_start(data_end - base) {
                let packet = base + first;
                let pieces = (data_end - packet).saturating_sub(1) / room.max(1);
                start = (packet + pieces * room).max(self.snd.una);
            }
        }
        if start >= data_end {
            // Only a FIN is out: resend it.
            return self.send_data_at(now, buf, self.snd.una, usize::MAX);
        }
        self.send_data_at(now, buf, start, data_end - start)
    }

    /// The oldest in-order ACK owed below RCV.NXT (`MAX_ACK_POINTS`), as a pure ACK that
    /// acknowledges up to its point and offers the same right window edge as an ACK of
    /// RCV.NXT would. The last point, RCV.NXT itself, is left to the ACK that does the
    /// bookkeeping (`after_send`).
    fn send_ack_point(&mut self, now: Instant, buf: &mut [u8]) -> Option<Sent> {
        while self.rcv.ack_points_len > 0 {
            let (point, tsecr) = self.rcv.ack_points[0];
            self.rcv.ack_points.copy_within(1.., 0);
            self.rcv.ack_points_len -= 1;
            if point >= self.rcv.nxt || !self.rcv.ack_now {
                continue;
            }
            let mut seg = self.ack_repr(now, self.snd.max);
            seg.ack_number = point;
            if let Some(ts) = seg.timestamp.as_mut() {
                ts.tsecr = tsecr;
            }
            // A D-SACK comes from a segment after the point (the ACK of RCV.NXT that follows
            // reports it, and clears it): Linux answered the point before it looked at that
            // segment. Repeated here, a sender that counts each report (`tcp_check_dsack`)
            // counted one duplicate twice.
            if self.rcv.dsack.is_some() {
                let rest = seg.sack_ranges;
                seg.sack_ranges = Default::default();
                for (slot, block) in rest.into_iter().skip(1).flatten().enumerate() {
                    seg.sack_ranges[slot] = Some(block);
                }
            }
            // Never an edge beyond the one the ACK of RCV.NXT right after it offers: the
            // kernel answers each ACK as it is written, and data it sent into a larger edge
            // would fall past the smaller one (rounded down, not with `window_field`).
            let wnd = (self.rcv.nxt - point) + ((seg.window_len as usize) << self.rcv.wscale);
            seg.window_len = (wnd >> self.rcv.wscale).min(u16::MAX as usize) as u16;
            let partial = self.checksum_partial(0);
            let ip = self.ip_header(&seg, false, 1);
            let len = write_segment(buf, ip, &seg, 0, |_| {}, partial)?;
            self.count_sent(&seg, 1, 0, 0);
            let mut sent = Sent::single(len, false, false);
            sent.checksum_partial = partial;
            return Some(sent);
        }
        None
    }

    /// The payload bytes our next data segment may carry given its options (RFC 9293 §3.7.1:
    /// the MSS counts data only, so the sender subtracts the options it sends; RFC 6691).
    ///
    /// Only the options' presence matters for their length, so this lays out a segment with
    /// the same options as `fill_common` would give (timestamps; as many SACK blocks as
    /// ranges are held, up to the limit) but with placeholder values: no window computation,
    /// no clock read, and no list of SACK ranges per data segment.
    pub(super) fn payload_room(&self) -> usize {
        let zero = SeqNumber(0);
        let mut seg = TcpRepr::new(0, 0, TcpFlags::ACK, zero, zero);
        if self.ts.enabled {
            seg.timestamp = Some(TcpTimestamp { tsval: 0, tsecr: 0 });
        }
        if self.sack_ok {
            let max = if self.ts.enabled { 3 } else { 4 };
            let dsack = usize::from(self.rcv.dsack.is_some());
            let fin = usize::from(self.lone_fin_block().is_some());
            let blocks = (dsack + fin + self.rcv.buffer.ooo_ranges()).min(max);
            for slot in seg.sack_ranges.iter_mut().take(blocks) {
                *slot = Some((zero, zero));
            }
        }
        let options = seg.header_len() - 20;
        let room = self.snd.mss.saturating_sub(options).max(1);
        // Linux's tcp_bound_to_half_wnd: no segment larger than half the largest window the
        // peer has offered (all of it while that is at most 536 bytes), so that a peer with
        // a small buffer gets two segments in flight rather than one (RFC 9293 §3.8.6.2.1's
        // sender SWS avoidance counts "half the maximum window" as a useful segment too);
        // but never below 68 bytes with the headers.
        let cutoff = self.half_max_window();
        if cutoff > 0 && room > cutoff {
            cutoff.max(68usize.saturating_sub(20 + options)).min(room)
        } else {
            room
        }
    }

    /// Linux's `tcp_bound_to_half_wnd` cutoff: half the largest window the peer has offered,
    /// or all of it while that is at most 536 bytes (0: no window seen yet, no bound).
    pub(super) fn half_max_window(&self) -> usize {
        let max_wnd = self.snd.max_wnd;
        if max_wnd > 536 {
            max_wnd / 2
        } else {
            max_wnd
        }
    }

    /// While F-RTO sends new data after a timeout (RFC 5682 §3 step 2b), what is in the
    /// network: the resent data not yet acknowledged and the new data sent since, as
    /// Linux's packets in flight count in its Loss state, where the timeout marked the rest
    /// lost. The go-back's `SND.UNA + cwnd` would let no new data out past a whole flight.
    fn frto_pipe(&self) -> Option<usize> {
        match self.recovery.frto {
            Some(Frto::NewData { resume, new_from })
                if self.snd.nxt == self.snd.max && self.after_rto() =>
            {
                let resent = resume.max(self.snd.una) - self.snd.una;
                Some(resent + (self.snd.nxt - new_from))
            }
            _ => None,
        }
    }

    /// Send new data (and/or our FIN) at SND.NXT if the windows, Nagle and SWS avoidance
    /// allow.
    fn send_new_data(&mut self, now: Instant, buf: &mut [u8]) -> Option<Sent> {
        let data_start = self.snd.data_start();
        let buffered_end = data_start + self.snd.buffer.len();
        let fin_to_send = self.fin_due();
        // Going back after a timeout: bytes the peer SACKed need not be sent again.
        if self.sack_ok && self.snd.nxt < self.snd.max {
            let mut nxt = self.snd.nxt;
            while let Some(end) = self.snd.scoreboard.sacked_end_at(nxt) {
                nxt = end.min(self.snd.max);
            }
            self.snd.nxt = nxt;
        }
        // Going back after a timeout: what was sent since the timeout (F-RTO's new data,
        // above `rto_recover`) is in flight, not lost, and is not sent again, as Linux
        // resends only what `tcp_timeout_mark_lost` marked.
        if let Some(r) = self.recovery.rto_recover {
            if self.after_rto() && self.snd.nxt >= r {
                self.snd.nxt = self.snd.max;
            }
        }
        let unsent = buffered_end - self.snd.nxt.min(buffered_end);
        if unsent == 0 && !fin_to_send {
            self.maybe_arm_persist(now, 0);
            return None;
        }
        // MSG_EOR: no segment crosses the end of a record. A segment cut there is not the
        // last of the queue, and Linux applies Nagle (and a cork) only to the last one
        // (tcp_write_xmit passes TCP_NAGLE_PUSH for the others).
        let in_record = self
            .record_end(self.snd.nxt)
            .map_or(unsent, |end| unsent.min(end - self.snd.nxt));
        // Nor, with skb accounting, does a packet that a write pushed on its own take in
        // what the write queued after it (`SkbQueue::note_pushed_one`).
        let in_record = match self.pushed_end(data_start) {
            Some(end) => in_record.min(end.saturating_sub(self.snd.nxt - data_start)),
            None => in_record,
        };
        // Nor does data sent again run on into data queued since it went: it ends at
        // SND.MAX, and the new data follows in segments of its own. Linux resends its skbs
        // as they went, merged only with others already sent (`tcp_retrans_try_collapse`
        // walks the retransmit queue alone), and so resends the part of a Fast Open SYN's
        // data that the server did not take alone (`tcp_rcv_fastopen_synack`).
        let in_record = if self.snd.nxt < self.snd.max {
            in_record.min(self.snd.max - self.snd.nxt)
        } else {
            in_record
        };
        let last = in_record == unsent;
        let room = self.payload_room();
        // The usable window: what the peer's window and the congestion window leave open.
        let mut wnd_edge = self.snd.una + self.snd.wnd;
        if self.snd.wnd == 0 && self.snd.nxt == self.snd.una && self.snd.una < self.snd.max {
            // A window shrunk to nothing under data in flight, and a timeout has gone back:
            // the segment at SND.UNA goes whole all the same, as the zero-window probe RFC
            // 9293 §3.8.6.2.1 requires (MUST-35) and as Linux's `__tcp_retransmit_skb` sends
            // it ("our retransmit of one segment serves as a zero window probe"). Held, with
            // the retransmission timer armed and so no persist timer, nothing would ask the
            // peer for its window again.
            wnd_edge = self.snd.una + room;
        }
        if unsent > 0 && self.cwnd_use.judge_idle {
            // A write or a window update since the last judgement asks whether what waits
            // leaves under a restarted window, whatever the peer's window says now (Linux
            // judges at `tcp_skb_entail` and at `tcp_ack_update_window`; the persist
            // timer's probes set nothing).
            self.cwnd_use.judge_idle = false;
            self.restart_after_idle(now);
        }
        let cwnd_edge = if let Some(pipe) = self.frto_pipe() {
            self.snd.nxt + self.cwnd().saturating_sub(pipe)
        } else if self.sack_recovery() {
            self.snd.nxt + self.recovery_allowance()
        } else if self.sack_ok
            && self.snd.nxt == self.snd.max
            && self.recovery.rto_recover.is_none()
        {
            // With SACK, cwnd bounds the pipe, not SND.NXT - SND.UNA, before recovery too:
            // each segment SACKed has left the network and lets one new segment go (RFC 6675
            // §5's pipe, as Linux's tcp_packets_in_flight; the effect of limited transmit,
            // RFC 3042, for the first duplicate ACKs). Not while going back after a timeout,
            // when what is outstanding is not known to be in the network.
            if self.recovery.cwr.is_some() && self.prr_packets() {
                // CWR's window is PRR's, in segments.
                self.snd.nxt + self.prr_allowance(self.snd.una)
            } else {
                let pipe = self.snd.pipe(self.snd.una, self.lost_boundary());
                self.snd.nxt + self.cwnd().saturating_sub(pipe)
            }
        } else if !self.sack_ok && self.recovery.recover.is_some() {
            // Fast recovery without SACK: PRR's window bounds the pipe that the duplicate
            // ACKs leave (`reno_pipe`), as Linux's tcp_cwnd_test counts packets in flight
            // with Reno's `sacked_out`.
            self.snd.nxt + self.recovery.prr_cwnd.saturating_sub(self.reno_pipe())
        } else if let Some(out) = self.loss_in_flight() {
            // Going back after a timeout: what is in flight (less, without SACK, a segment
            // for each duplicate ACK counted), so that the go-back that resumes once F-RTO
            // finds the loss real stays under cwnd with F-RTO's new data counted.
            let sacked = self.recovery.reno_sacked;
            let pipe = out.saturating_sub(sacked.saturating_mul(self.reno_segment()));
            self.snd.nxt + self.cwnd().saturating_sub(pipe)
        } else if !self.sack_ok && self.recovery.recover.is_none() {
            // Limited transmit without SACK (RFC 3042 §2): "a TCP sender SHOULD send a new
            // data segment in response to each of the first two duplicate acknowledgments",
            // each of which says a segment has left the network. Linux counts them as
            // SACKed segments (`tcp_add_reno_sack`), which lowers its packets in flight by
            // one each, to the same effect, never all that is out (`reno_sacked`); the third
            // starts fast recovery, or more once the path was seen to reorder
            // (`reno_dupthresh`), and each before it lets a segment go.
            let sacked = self
                .recovery
                .reno_sacked
                .min(self.reno_dupthresh().saturating_sub(1));
            self.snd.una + self.cwnd() + sacked * self.snd.mss
        } else {
            self.snd.una + self.cwnd()
        };
        let edge = wnd_edge.min(cwnd_edge);
        let usable = edge - self.snd.nxt.min(edge);
        let mut len = in_record.min(usable).min(room);
        let in_flight = self.snd.nxt > self.snd.una;

        if len < unsent || unsent == 0 {
            // Not all of the queued data fits.
            if len == 0 && unsent > 0 {
                // The override the persist timer left for this poll is for a small window;
                // one closed since is probed instead, and a later small window must wait for
                // the timer again (Linux's `tcp_write_wakeup` runs from the timer only).
                if self.snd.wnd == 0 {
                    self.sws_override = false;
                }
                self.note_cwnd_use(now, false);
                if !in_flight {
                    self.maybe_arm_persist(now, unsent);
                }
                return None;
            }
        }
        // Nagle's algorithm (RFC 9293 §3.7.4) in Minshall's form, as Linux has it
        // (tcp_nagle_check, tcp_minshall_check): a short segment waits only while an earlier
        // short segment is unacknowledged, not while any data is, so a write's short tail
        // follows its full segments at once. Off with nodelay, and for the FIN. TCP_CORK and
        // MSG_MORE hold a short segment whatever is in flight (tcp_nagle_check's
        // TCP_NAGLE_CORK); TCP_NODELAY's push passes them until the next write.
        let small_in_flight =
            self.snd.small_end > self.snd.una && self.snd.small_end <= self.snd.nxt;
        let corked = self.cork || self.more;
        // Nor for urgent data (Linux tcp_nagle_test, in urgent mode), nor for F-RTO's new data
        // after a timeout, which Linux pushes with TCP_NAGLE_OFF (`tcp_xmit_recovery`): held,
        // it would leave the go-back stopped until another timeout.
        let nagle_ok = self.push_now
            || self.frto_pipe().is_some()
            || self.reset_after_flush
            || self.snd.up.is_some()
            || !last
            || self.snd.fin_queued
            || (!corked && (self.nodelay || !in_flight || !small_in_flight));
        if len > 0 && len < room {
            // The end of a record counts as all there is, for this segment.
            let all_queued = len == in_record;
            // RFC 9293 §3.8.6.2.1 sender SWS avoidance: send a short segment only if it
            // carries all we have and Nagle allows, or it fills at least half the largest
            // window the peer offered.
            let half_window = len >= self.snd.max_wnd / 2 && self.snd.max_wnd > 0;
            // Going back after a timeout, data already sent goes again into what the peer's
            // window allows, short or not, as Linux's `tcp_retransmit_skb` sends the part of
            // a segment that fits the window (`avail_wnd`): held, with the retransmission
            // timer armed and so no persist timer, it would never leave. (Where the
            // congestion window is what cuts it short, it waits, as Linux's window counts
            // whole segments.)
            let resend = self.snd.nxt < self.snd.max && wnd_edge <= cwnd_edge;
            if !((all_queued && nagle_ok) || half_window || resend || self.sws_override) {
                // Nor does Nagle, a cork or MSG_MORE hold back what was sent before: the rest
                // of what went out, short because that was all there was, goes again as it
                // went (Linux's `tcp_retransmit_skb` applies none of them). Held, with the
                // retransmission timer armed, it would never leave, and the timer would fire
                // until the connection gave up.
                let sent_before = if self.snd.nxt < self.snd.max {
                    self.snd.max - self.snd.nxt
                } else {
                    0
                };
                if sent_before == 0 || sent_before > len {
                    if !in_flight {
                        self.maybe_arm_persist(now, unsent);
                    }
                    return None;
                }
                len = sent_before;
            }
        }
        // The override is for a short segment: a full one (a window opened between the
        // persist timer and this poll) goes as any other, without the wakeup's push.
        let wakeup = std::mem::take(&mut self.sws_override) && len < room;
        let seq = self.snd.nxt;
        if len == 0 {
            let fin_alone = fin_to_send && seq == buffered_end;
            // A FIN alone takes a sequence number of the peer's window too: into a closed
            // window it waits, probed for the window as data would be, as Linux's
            // `tcp_snd_wnd_test` counts it in `end_seq`. Sent, an RFC 9293 receiver would
            // refuse it (§3.10.7.4), and only a retransmission timeout would send it again
            // once the window opened. The congestion window holds it only when it goes
            // again, going back after a timeout: Linux's `tcp_cwnd_test` lets a first FIN
            // alone past a full window ("don't be strict about the congestion window for the
            // final FIN"), but `tcp_xmit_retransmit_queue` resends it only while fewer
            // packets are out than the window counts, here while a full segment would fit.
            let resent = seq < self.snd.max;
            let cwnd_room = cwnd_edge - seq.min(cwnd_edge);
            if !fin_alone || wnd_edge <= seq || (resent && cwnd_room < room) {
                if fin_alone && !in_flight {
                    self.maybe_arm_persist(now, 1);
                }
                return None;
            }
        }
        // Only new data goes under one header: going back after a timeout, each segment is
        // checked against the SACK scoreboard on its own (above), so none is resent that the
        // peer already holds. And only where a packet may carry more than the one segment:
        // without segmentation offload the sizing below is spared on every segment.
        let len = if len == room
            && self.may_offload(room, buf.len())
            && seq >= self.snd.max
            && !self.urgent_covers(seq)
        {
            let sendable = in_record.min(usable);
            let cap = self.tso_segments(room).saturating_mul(room);
            if sendable > cap {
                // More than one packet's worth: whole segments up to the cap, and the rest
                // in the next packet (Linux's tcp_mss_split_point returns max_segs * mss).
                self.offload_len(room, cap, buf.len())
            } else {
                let whole = self.offload_len(room, sendable, buf.len());
                // The short tail of what is queued, or of what the peer's window takes, rides
                // under the same header when it fits and Nagle would let it go now anyway
                // (Linux's tcp_mss_split_point): one packet for a whole write, as a TSO
                // sender sends it, and a window filled to its edge. (Not a tail that the
                // congestion window cuts: Linux's counts whole segments.)
                let tail = sendable - whole;
                let window_cut = sendable < in_record && wnd_edge <= cwnd_edge;
                // The IP header and a TCP header with the most options it may carry fit too.
                let fits = whole + tail + 100 <= self.cfg.gso_max_size.min(buf.len());
                if tail > 0
                    && tail < room
                    && (whole + tail == in_record || window_cut)
                    && nagle_ok
                    && fits
                {
                    whole + tail
                } else {
                    whole
                }
            }
        } else {
            len
        };
        let len = self.pace(now, len, room)?;
        let with_fin = fin_to_send && seq + len == buffered_end && self.fin_rides_with(len);
        let kind = if wakeup { Emit::Wakeup } else { Emit::New };
        // Only new data measures the window's use, as only Linux's `tcp_write_xmit` calls
        // `tcp_cwnd_validate`: the go-back's resends after a timeout leave the round and
        // its most outstanding as the flight before the timeout set them, and what the
        // persist timer lets out (`tcp_write_wakeup` transmits it itself) is measured at the
        // next ordinary send.
        let new_data = seq >= self.snd.max && !wakeup;
        let sent = self.emit_data(now, buf, seq, len, with_fin, kind, room)?;
        if new_data {
            self.note_cwnd_use(now, true);
        }
        Some(sent)
    }

    /// After new data went out (`sent`) or could not: whether the congestion window is what
    /// limits the flow now, kept per round as Linux's `tcp_cwnd_validate` keeps it. A round
    /// ends when SND.UNA passes the SND.NXT of its start; within one, being limited once
    /// counts, and the most bytes in flight is remembered.
    ///
    /// Then the application-limited rule (RFC 2861 §3, Linux's `tcp_cwnd_validate` and
    /// `tcp_cwnd_application_limited`, with
    /// [`Config::slow_start_after_idle`](crate::Config::slow_start_after_idle)): a window
    /// that did not limit the flow for a whole RTO shrinks half way to the most that was in
    /// flight meanwhile. Not during loss recovery, nor while the application is held back by
    /// a full send buffer (then the window was not what it left unused).
    fn note_cwnd_use(&mut self, now: Instant, sent: bool) {
        let out = self
            .loss_in_flight()
            .unwrap_or_else(|| self.snd.in_flight());
        // Linux: packets in flight >= cwnd; in bytes, no room for another full segment.
        let limited = out + self.snd.mss > self.cwnd();
        if !sent && !limited {
            return;
        }
        // The most outstanding is all that is unacknowledged, lost or not (Linux's
        // `max_packets_out` from `packets_out`).
        let outstanding = self.snd.max - self.snd.una;
        let usage = &mut self.cwnd_use;
        if self.snd.una >= usage.until || limited || (!usage.limited && outstanding > usage.max_out)
        {
            usage.limited = limited;
            usage.max_out = outstanding;
            usage.until = self.snd.max;
        }
        if self.cwnd_limited() {
            self.cwnd_use.used = 0;
            self.cwnd_use.stamp = now;
            return;
        }
        self.cwnd_use.used = self.cwnd_use.used.max(out);
        let rto = self.current_rto();
        if !self.cfg.slow_start_after_idle || now - self.cwnd_use.stamp < rto {
            return;
        }
        let open = !self.in_loss_recovery()
            && self.recovery.dupacks == 0
            && self.snd.scoreboard.sacked_bytes() == 0;
        if open && self.send_capacity() > 0 {
            let (cwnd, ssthresh, mss) = (self.cc.window(), self.cc.ssthresh(), self.snd.mss);
            let used = self.cwnd_use.used;
            if let Some((cwnd, ssthresh)) =
                crate::tcp::congestion::application_limited_window(cwnd, ssthresh, mss, used)
            {
                self.cc.on_window_validated(now, cwnd, ssthresh);
            }
            self.cwnd_use.used = 0;
        }
        self.cwnd_use.stamp = now;
    }

    /// Slow start after idle (RFC 5681 §4.1, Linux's `tcp_slow_start_after_idle_check`
    /// and `tcp_cwnd_restart`), before new data goes out: with nothing in flight and no data
    /// sent for longer than the RTO, cwnd falls towards the restart window (see
    /// [`Config::slow_start_after_idle`](crate::Config::slow_start_after_idle)). Judged
    /// where Linux judges it (see `CwndUse::judge_idle`), at the next transmission after
    /// the write or the window update, which the runtime makes at once.
    fn restart_after_idle(&mut self, now: Instant) {
        if !self.cfg.slow_start_after_idle || self.snd.una != self.snd.max {
            return;
        }
        let Some(last) = self.cwnd_use.last_sent else {
            return;
        };
        let idle = now - last;
        let rto = self.current_rto();
        if idle <= rto {
            return;
        }
        let (cwnd, ssthresh) = crate::tcp::congestion::restart_window(
            self.cc.window(),
            self.cc.ssthresh(),
            self.snd.mss,
            idle,
            rto,
        );
        self.cc.on_window_validated(now, cwnd, ssthresh);
        self.cwnd_use.stamp = now;
        self.cwnd_use.used = 0;
    }

    /// With skb accounting, the offset (from `data_start`) where the packet starting at
    /// SND.NXT must end because a write pushed it on its own (`SkbQueue::pushed_end_after`).
    fn pushed_end(&mut self, data_start: SeqNumber) -> Option<usize> {
        if !self.cfg.skb_accounting || self.snd.nxt < data_start {
            return None;
        }
        let from = self.snd.nxt - data_start;
        self.snd.skbs.as_mut()?.pushed_end_after(from)
    }

    /// How many segments of `room` bytes one packet of new data may carry, as Linux sizes
    /// a TSO packet: about a millisecond's worth at the pacing rate (`tcp_tso_autosize`:
    /// the rate is cwnd/SRTT times 2 in slow start, 1.2 after, and on a path of under a few
    /// milliseconds a share of the largest packet is added, `tcp_tso_rtt_log`), at least
    /// [`Config::min_tso_segs`](crate::Config::min_tso_segs); and never more than half the
    /// congestion window (`tcp_cwnd_test`: "ensure we have at least 2 GSO packets in
    /// flight", so that the ACKs of the first let the second go rather than the window
    /// going out as one burst and coming back as one stretch ACK).
    pub(super) fn tso_segments(&self, room: usize) -> usize {
        let mss = self.snd.mss.max(1);
        let room = room.max(1);
        // In fast recovery, PRR's window (with SACK or without), as Linux's cwnd is then.
        let cwnd = if self.recovery.recover.is_some() {
            self.recovery.prr_cwnd
        } else {
            self.cc.window()
        };
        let cwnd_segs = cwnd / mss;
        let half = (cwnd_segs / 2).max(1);
        let Some(srtt) = self.rtt.srtt() else {
            // Linux paces at no rate before the first RTT sample.
            return half;
        };
        let out_segs = self.snd.in_flight() / mss;
        // Linux compares cwnd with half of ssthresh here, unlike slow start itself.
        let ratio = if cwnd < self.cc.ssthresh() / 2 {
            2.0
        } else {
            1.2
        };
        let srtt_us = micros_f64(srtt).max(1.0);
        let rate = (mss * cwnd_segs.max(out_segs)) as f64 * ratio * 1e6 / srtt_us;
        // sk_pacing_shift 10: 1/1024 s of data.
        let mut bytes = (rate / 1024.0) as usize;
        let gso = self.cfg.gso_max_size;
        let min_rtt_us = self.rtt.min_rtt().unwrap_or(srtt).as_micros();
        // tcp_tso_rtt_log 9: the largest packet halved for every 512 us of the path's RTT.
        let shift = min_rtt_us >> 9;
        if shift < 32 {
            bytes = bytes.saturating_add(gso >> shift);
        }
        let autosize = (bytes.min(gso) / room).max(self.cfg.min_tso_segs);
        autosize.min(half)
    }

    /// Going back after a timeout: what is in flight, as Linux's `tcp_packets_in_flight`
    /// counts it in `TCP_CA_Loss`: what the go-back has resent, and new data sent since the
    /// timeout (F-RTO's, above `rto_recover`), SACKed bytes not counted, all else that was
    /// out at the timeout being lost (`tcp_timeout_mark_lost`) until resent. SND.NXT -
    /// SND.UNA would leave F-RTO's new data out, so that the go-back resumed when F-RTO
    /// finds the loss real overran cwnd and a window it filled did not count as used, and
    /// would count SACKed bytes the go-back skipped.
    fn loss_in_flight(&self) -> Option<usize> {
        let r = self.recovery.rto_recover.filter(|_| self.after_rto())?;
        let resent_to = self.snd.nxt.min(r);
        Some(if self.sack_ok {
            let board = &self.snd.scoreboard;
            board.unsacked_between(self.snd.una, resent_to)
                + board.unsacked_between(r, self.snd.max)
        } else {
            (resent_to - self.snd.una) + (self.snd.max - r)
        })
    }

    /// Whether an ACK may grow the congestion window (Linux's `tcp_is_cwnd_limited`): the
    /// window limited the flow this round, or, in slow start, it is less than twice the most
    /// that was outstanding, so that slow start still doubles what was used.
    pub(super) fn cwnd_limited(&self) -> bool {
        let cwnd = self.cc.window();
        self.cwnd_use.limited || (cwnd < self.cc.ssthresh() && cwnd < 2 * self.cwnd_use.max_out)
    }

    /// The end of the `MSG_EOR` record that holds `seq`, if a record ends above it.
    pub(super) fn record_end(&self, seq: SeqNumber) -> Option<SeqNumber> {
        self.snd.records.iter().copied().find(|&end| end > seq)
    }

    /// Segmentation offload (`gso_max_size`): how much new data goes in one packet when a
    /// full segment of `room` bytes is ready and `sendable` bytes are queued within the
    /// windows. Whole segments only, so that every segment the device cuts is full-sized
    /// and the sender-side SWS and Nagle rules above still decide about a short tail.
    fn offload_len(&self, room: usize, sendable: usize, buf_len: usize) -> usize {
        let headers = self.offload_headers();
        let packet = self.cfg.gso_max_size.min(buf_len);
        if packet < headers + 2 * room {
            return room;
        }
        (sendable.min(packet - headers) / room).max(1) * room
    }

    /// The IP header, and a TCP header with the most options it may carry.
    fn offload_headers(&self) -> usize {
        let ip_header = if self.local.is_ipv6() { 40 } else { 20 };
        ip_header + 60
    }

    /// Whether a packet may carry more new data than one full segment of `room` bytes:
    /// whole segments (`offload_len`), or a segment and a short tail (`send_new_data`).
    /// Never without segmentation offload (`gso_max_size` 0).
    fn may_offload(&self, room: usize, buf_len: usize) -> bool {
        let packet = self.cfg.gso_max_size.min(buf_len);
        packet >= self.offload_headers() + 2 * room || packet > room + 100
    }

    /// A token bucket at the pacing rate: how many of `len` bytes may leave now. A packet of
    /// several `segment`-sized segments shrinks to the whole segments the bucket holds (as
    /// Linux sizes TSO packets to the pacing rate); if not even one may leave, the pacing
    /// timer is set for when it may. Unpaced before the first RTT sample, and when the RTT
    /// is too small to matter.
    fn pace(&mut self, now: Instant, len: usize, segment: usize) -> Option<usize> {
        // Nor when the connection is about to be reset: what goes, goes now (see `close`).
        if !self.cfg.pacing || self.reset_after_flush {
            return Some(len);
        }
        if self.timers.pacing.is_some_and(|t| t > now) {
            return None;
        }
        self.timers.pacing = None;
        let srtt = match self.rtt.srtt() {
            Some(s) if s >= std::time::Duration::from_micros(100) => s,
            _ => return Some(len),
        };
        let cwnd = self.cc.window();
        // Linux: 200 % of cwnd/SRTT in slow start, 120 % in congestion avoidance.
        let ratio = if cwnd < self.cc.ssthresh() { 2.0 } else { 1.2 };
        let bytes_per_us = (cwnd as f64 * ratio / micros_f64(srtt)).max(1e-3);
        let PaceBucket {
            tokens,
            refilled: last,
        } = self.pace;
        let burst = ((bytes_per_us * 1000.0) as usize).max(10 * self.snd.mss);
        let earned = (micros_f64(now - last) * bytes_per_us) as usize;
        let tokens = tokens.saturating_add(earned).min(burst);
        if tokens >= len {
            self.pace = PaceBucket {
                tokens: tokens - len,
                refilled: now,
            };
            return Some(len);
        }
        if len > segment && tokens >= segment {
            let len = tokens / segment * segment;
            self.pace = PaceBucket {
                tokens: tokens - len,
                refilled: now,
            };
            return Some(len);
        }
        let need = len.min(segment);
        let wait_us = ((need - tokens) as f64 / bytes_per_us).ceil() as u64;
        self.pace = PaceBucket {
            tokens,
            refilled: now,
        };
        self.timers.pacing = Some(now + std::time::Duration::from_micros(wait_us.max(1)));
        None
    }

    /// Whether our FIN still has to go out (first time, or again after a go-back).
    fn fin_due(&self) -> bool {
        if !self.snd.fin_queued {
            return false;
        }
        let fin_seq = self.snd.data_start() + self.snd.buffer.len();
        match self.snd.fin_seq {
            None => true,
            Some(sent) => self.snd.nxt <= sent && sent == fin_seq,
        }
    }

    /// Arm the persist timer when data waits on a window that is closed or too small to use
    /// and nothing is in flight to bring an update (RFC 9293 §3.8.6.1).
    fn maybe_arm_persist(&mut self, now: Instant, waiting: usize) {
        if waiting == 0 {
            return;
        }
        if self.timers.persist.is_none() && self.timers.retransmit.is_none() {
            self.timers.persist = Some(now + self.rtt.backed_off(u32::from(self.persist_backoff)));
        }
    }
}

/// A duration in microseconds as an `f64`, through 64 bits: `as_micros` is a `u128`, and
/// converting that to a float is a call to `__floattidf` on every segment paced or sized.
/// Equal to the `u128` conversion for any duration under 2^53 microseconds (285 years).
fn micros_f64(d: std::time::Duration) -> f64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX) as f64
}
