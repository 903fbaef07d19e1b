//! Turning what `output` decided to send into a packet: the TCP header with its options
//! (timestamps, SACK blocks, RFC 7323 and RFC 2018), the IP header's marks (identification,
//! DF, TTL or hop limit, DSCP and ECN, flow label), and the record each segment leaves for
//! retransmission, RACK and the RTT.

use std::net::IpAddr;

use super::output::{write_segment, Emit, Sent, HOP_LIMIT};
use super::{Connection, TimedSegment};
use crate::seq::SeqNumber;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::ip::IpMarks;
use crate::wire::{TcpFlags, TcpRepr, TcpTimestamp};

impl Connection {
    /// The RST that answers `seg` (RFC 9293 §3.10.7.1, as Linux's `tcp_v4_send_reset`): at
    /// SEG.ACK if it has one, else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`.
    pub(super) fn reset_reply_to(&self, seg: &TcpRepr<'_>) -> (SeqNumber, Option<SeqNumber>) {
        if seg.flags.contains(TcpFlags::ACK) {
            (seg.ack_number, None)
        } else {
            (SeqNumber(0), Some(seg.seq_number + seg.seq_len()))
        }
    }

    /// An RST segment. RFC 9293 §3.10.7: `<SEQ=seq><CTL=RST>`, or with an ACK
    /// `<SEQ=seq><ACK=ack><CTL=RST,ACK>`.
    pub(super) fn rst_repr(&self, seq: SeqNumber, ack: Option<SeqNumber>) -> TcpRepr<'static> {
        let mut flags = TcpFlags::RST;
        if ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        TcpRepr::new(
            self.local.port(),
            self.remote.port(),
            flags,
            seq,
            ack.unwrap_or(SeqNumber(0)),
        )
    }

    /// The options every synchronized segment carries: timestamps, and SACK blocks while we
    /// hold out-of-order data (`fill_sack_blocks`).
    fn fill_common(&self, now: Instant, seg: &mut TcpRepr<'_>) {
        // RFC 3168 §6.1.3: every ACK echoes a congestion mark until CWR arrives.
        if self.ecn.ok && self.ecn.demand_cwr {
            seg.flags |= TcpFlags::ECE;
        }
        if self.ts.enabled {
            seg.timestamp = Some(TcpTimestamp {
                tsval: self.ts_now(now),
                tsecr: self.ts.recent,
            });
        }
        self.fill_sack_blocks(seg);
        let wnd = self.advertisable_window();
        seg.window_len = self.window_field(self.rcv.nxt, wnd);
        self.mark_urgent(seg);
    }

    /// The SACK blocks while we hold out-of-order data, or owe a D-SACK (RFC 2018 §4: up to 3
    /// blocks next to timestamps, 4 without). Linux's `tcp_established_options` adds them to
    /// every segment of a synchronized connection, its own RSTs included.
    pub(super) fn fill_sack_blocks(&self, seg: &mut TcpRepr<'_>) {
        // A FIN held out of order is reported too: Linux's out-of-order queue holds it in an
        // skb whose `end_seq` counts it, so it closes the block that ends where it stands,
        // or, past a hole of its own, is a block by itself (`lone_fin_block`).
        let fin = self.held_fin();
        if self.sack_ok
            && (self.rcv.dsack.is_some() || self.rcv.buffer.ooo_ranges() > 0 || fin.is_some())
        {
            let max = if self.ts.enabled { 3 } else { 4 };
            // RFC 2883 §4: "If the data packet being acknowledged is a duplicate ... the
            // first SACK block ... should specify the contiguous sequence space of the
            // duplicate"; the usual blocks follow.
            let dsack = self.rcv.dsack.into_iter();
            let lone_fin = self.lone_fin_block();
            let held = self.rcv.buffer.sack_ranges(max).into_iter();
            let held = held.map(|(start, end)| {
                let (start, end) = (self.rcv.nxt + start, self.rcv.nxt + end);
                (start, if Some(end) == fin { end + 1 } else { end })
            });
            for (slot, block) in dsack.chain(lone_fin).chain(held).enumerate().take(max) {
                seg.sack_ranges[slot] = Some(block);
            }
        }
    }

    /// The peer's FIN, held out of order: data before it is still missing.
    pub(super) fn held_fin(&self) -> Option<SeqNumber> {
        self.rcv.fin_seq.filter(|&f| f > self.rcv.nxt)
    }

    /// The SACK block of a FIN held out of order past a hole of its own, with no held data
    /// right before it: its one sequence number, taken as the newest block (a FIN is the
    /// last a peer sends).
    pub(super) fn lone_fin_block(&self) -> Option<(SeqNumber, SeqNumber)> {
        let fin = self.held_fin()?;
        let after_held = self.rcv.buffer.range_ends_at(fin - self.rcv.nxt);
        (!after_held).then_some((fin, fin + 1))
    }

    /// The window field for an ACK of `ack` offering `wnd` bytes: scaled down (RFC 7323
    /// §2.3), and rounded up where rounding down would move the right edge left of one
    /// already offered (RCV.NXT advances by amounts that are no multiple of the scale):
    /// RFC 9293 §3.8.6.2.2 and RFC 7323 §2.4 ask that the edge never moves left, and
    /// Linux's `tcp_select_window` aligns the window up to the scale for that. Only as far
    /// as the receive buffer can take, though: a window offered up to the buffer's end (the
    /// application not reading) may still lose a few bytes to the rounding, where Linux's
    /// memory accounting has slack and synack's buffer has none; and under memory pressure
    /// no window grows, not even by the rounding. An ACK point (`send_ack_point`) rounds
    /// down: its edge may not pass the one the ACK of RCV.NXT after it offers.
    pub(super) fn window_field(&self, ack: SeqNumber, wnd: usize) -> u16 {
        let shift = self.rcv.wscale;
        let mut field = wnd >> shift;
        if ack + (field << shift) < self.rcv.adv && !self.mem.pressure {
            let buffer_end = self.rcv.nxt + self.rcv.buffer.window();
            if ack + ((field + 1) << shift) <= buffer_end {
                field += 1;
            }
        }
        field.min(u16::MAX as usize) as u16
    }

    /// A pure ACK with the given sequence number.
    pub(super) fn ack_repr(&self, now: Instant, seq: SeqNumber) -> TcpRepr<'static> {
        let mut seg = TcpRepr::new(
            self.local.port(),
            self.remote.port(),
            TcpFlags::ACK,
            seq,
            self.rcv.nxt,
        );
        self.fill_common(now, &mut seg);
        seg
    }

    /// Retransmit one segment of at most `max_len` bytes starting at `seq` (fast retransmit,
    /// a partial ACK, or a SACK hole).
    pub(super) fn send_data_at(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seq: SeqNumber,
        max_len: usize,
    ) -> Option<Sent> {
        self.send_data_at_most(now, buf, seq, max_len, None)
    }

    /// `send_data_at`, or with `packet = Some((bytes, segments))` one packet of up to
    /// `segments` whole segments within the first `bytes` from `seq` (see `hole_segments`).
    pub(super) fn send_data_at_most(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seq: SeqNumber,
        max_len: usize,
        packet: Option<(usize, usize)>,
    ) -> Option<Sent> {
        let data_start = self.snd.data_start();
        let buffered_end = data_start + self.snd.buffer.len();
        let room = self.payload_room();
        // A retransmission does not merge records either (tcp_retrans_try_collapse checks
        // tcp_skb_can_collapse), nor run on into data never sent (it walks the
        // retransmit queue alone): it ends at SND.MAX.
        let limit = self
            .record_end(seq)
            .unwrap_or(buffered_end)
            .min(self.snd.max);
        let avail = limit - seq.min(limit);
        // A window the peer shrank bounds retransmissions too, as Linux's
        // `__tcp_retransmit_skb` bounds them: nothing at or past its right edge goes, but the
        // segment at SND.UNA, which goes whole, as the zero-window probe RFC 9293 §3.8.6.2.1
        // requires (MUST-35) when the window is closed; one that runs past the edge is cut
        // to whole segments within it, or to what is left of the window if that is less than
        // one. (Linux cuts the segment at SND.UNA to a window of less than one segment too;
        // a receiver that avoids silly windows never offers one, but synack's own, at its
        // memory cap, offers the segments it will take anyway rounded down to the window
        // scale, and a sliver each time would slow that connection down.)
        let wnd_edge = self.snd.una + self.snd.wnd;
        let in_window = if seq == self.snd.una {
            (wnd_edge - seq).max(room)
        } else if seq < wnd_edge {
            wnd_edge - seq
        } else {
            return None;
        };
        let avail = if avail > in_window {
            match in_window - in_window % room {
                0 => in_window,
                whole => whole,
            }
        } else {
            avail
        };
        let len = avail.min(room).min(max_len);
        let len = match packet {
            Some((bytes, segments)) if bytes > room => {
                let segments = segments.min(self.offload_cap(buf.len()) / room);
                let most = avail.min(max_len).min(bytes);
                let cap = segments.saturating_mul(room);
                // Whole segments, or all of the rest of the packet when it fits (its short
                // tail included, as the skb holds it).
                if segments < 2 {
                    len
                } else if most <= cap {
                    most
                } else {
                    cap
                }
            }
            _ => len,
        };
        let with_fin =
            self.snd.fin_seq.is_some() && seq + len == buffered_end && self.fin_rides_with(len);
        if len == 0 && !with_fin {
            return None;
        }
        self.emit_data(
            now,
            buf,
            seq,
            len,
            with_fin,
            Emit::Retransmit,
            len.min(room),
        )
    }

    /// Whether our FIN may ride on a segment of `len` bytes that ends where the data does: not
    /// on data once it first left on its own (`fin_alone`). Linux's `tcp_send_fin` then
    /// queued it as an skb of its own, and a retransmission resends an skb as it is (the
    /// retransmission timeout the head, the data before the FIN without it); the FIN goes
    /// again by itself once the data is acknowledged, or as the last segment's tail loss
    /// probe.
    pub(super) fn fin_rides_with(&self, len: usize) -> bool {
        len == 0 || !self.snd.fin_alone
    }

    /// The most payload one packet may carry under segmentation offload: the device's
    /// largest packet (and `buf`) less the IP header and a TCP header with the most options.
    fn offload_cap(&self, buf_len: usize) -> usize {
        let ip_header = if self.local.is_ipv6() { 40 } else { 20 };
        self.cfg
            .gso_max_size
            .min(buf_len)
            .saturating_sub(ip_header + 60)
    }

    /// Emit a data (and/or FIN) segment for `[seq, seq+len)` and update the send state. When
    /// `len` exceeds `segment`, the packet is a super-segment that the device cuts into
    /// `segment`-byte segments (segmentation offload); each is logged as sent on its own.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_data(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        seq: SeqNumber,
        len: usize,
        fin: bool,
        kind: Emit,
        segment: usize,
    ) -> Option<Sent> {
        let mut flags = TcpFlags::ACK;
        // RFC 9293 §3.9.1.2: PSH on the last segment of what the application wrote (unless
        // it wrote with MSG_MORE), and on the segment that ends a MSG_EOR record. Linux also
        // ends every multi-segment (TSO) burst with PSH, the window or the congestion window
        // having cut it short of the queue's end (packetdrill's slow-start, PRR and
        // limited-transmit scripts expect it), but not while a cork or MSG_MORE holds the
        // rest; the device keeps it on the last segment.
        //
        // With the skb view (`Config::skb_accounting`, the Linux profile) the flag is kept per
        // skb as Linux keeps it (`SkbQueue::psh_within`): a segment carries it when it ends
        // an skb that carries it, the end of a write or a forced push half a window after
        // the last, new data or resent alike (a retransmission carries the flags of the skb
        // it comes from, `__tcp_retransmit_skb`).
        let end = seq + len;
        let data_start = self.snd.data_start();
        let queue_end = data_start + self.snd.buffer.len();
        let held = self.cork || self.more;
        let marked = match self.snd.skbs.as_deref() {
            Some(q) if self.cfg.skb_accounting => q.psh_within(seq - data_start, end - data_start),
            _ => end == queue_end && self.snd.push_at_end,
        };
        // The burst's PSH goes on a burst that ends the queue only if the last write asked
        // for one: what a MSG_MORE write left, sent once an ACK or the cork's removal lets
        // it go, carries none (its skb is not marked: `tcp_push` skipped it).
        let push = marked
            || self.record_end(seq) == Some(end)
            || kind == Emit::Wakeup
            || (len > segment && !held && (end < queue_end || self.snd.push_at_end));
        if len > 0 && push {
            flags |= TcpFlags::PSH;
        }
        if kind == Emit::Wakeup && len > 0 && !marked {
            // The override timeout (or a probe into a window that opened short of a
            // segment) pushes what it sends for good (Linux's tcp_write_wakeup sets PSH on
            // the skb): resent, it carries PSH again. Without the skb view only the end of
            // the queue can carry the mark.
            if end == queue_end {
                self.snd.push_at_end = true;
            }
            if self.cfg.skb_accounting {
                if let Some(q) = self.snd.skbs.as_mut() {
                    q.mark_push_at(end - data_start);
                }
            }
        }
        if fin {
            flags |= TcpFlags::FIN;
        }
        let mut seg = TcpRepr::new(
            self.local.port(),
            self.remote.port(),
            flags,
            seq,
            self.rcv.nxt,
        );
        self.fill_common(now, &mut seg);
        let offset = seq - self.snd.data_start();
        let retransmit = kind == Emit::Retransmit || seq < self.snd.max;
        // The bytes sent before: all of a retransmission (one never runs on past SND.MAX,
        // see `send_new_data`).
        let resent = if retransmit { len } else { 0 };
        debug_assert!(
            seq >= self.snd.max || seq + len <= self.snd.max,
            "a resend runs on past SND.MAX"
        );
        // RFC 3168 §6.1.2: the first new data segment after a window reduction carries CWR;
        // new data goes out ECN-capable, retransmissions not (§6.1.5).
        let new_data = !retransmit && len > 0;
        let cwr = new_data && self.ecn.ok && std::mem::take(&mut self.ecn.queue_cwr);
        if cwr {
            seg.flags |= TcpFlags::CWR;
        }
        let seg_len = len + usize::from(fin);
        let end = seq + seg_len;
        if !retransmit && !len.is_multiple_of(segment.max(1)) {
            // New data ending in a short segment: Nagle's reference point (Linux
            // tcp_minshall_update).
            self.snd.small_end = seq + len;
        }
        if fin {
            if self.snd.fin_seq.is_none() {
                self.snd.fin_alone = len == 0;
            }
            self.snd.fin_seq = Some(seq + len);
        }
        if end > self.snd.nxt {
            self.snd.nxt = end;
        }
        if end > self.snd.max {
            self.snd.max = end;
        }
        if self.recovery.recover.is_some() || self.recovery.cwr.is_some() {
            // RFC 6937 §3: "On any data transmission or retransmission: prr_out += (data
            // sent)"; in segments as Linux's packets (`tcp_skb_pcount`), with
            // `Config::recovery_in_packets`.
            let out = if self.prr_packets() {
                len.div_ceil(segment.max(1)).max(1)
            } else {
                seg_len
            };
            self.recovery.prr_out = self.recovery.prr_out.saturating_add(out);
        }
        if retransmit {
            // In segments, as Linux's `total_retrans += tcp_skb_pcount(skb)`.
            let segments = len.div_ceil(segment.max(1)).max(1);
            self.retransmits = self
                .retransmits
                .saturating_add(u32::try_from(segments).unwrap_or(u32::MAX));
            if self.recovery.undo_marker.is_some() {
                self.recovery.undo_retrans += segments;
            }
            // The first retransmission still outstanding, whatever resent it (a recovery,
            // a timeout, a probe), as Linux's `retrans_stamp`.
            if self.ts.enabled && self.recovery.undo_tsval.is_none() {
                self.recovery.undo_tsval = Some(self.ts_now(now));
            }
            if end > self.recovery.high_rxt {
                self.recovery.high_rxt = end;
            }
            if self.sack_ok {
                self.snd.rack.on_retransmit(seq, end, segment, now);
            }
            // Karn's rule: a retransmitted segment gives no RTT sample.
            if matches!(self.rtt_seq, Some(timed) if timed.seq >= seq) {
                self.rtt_seq = None;
            }
        } else if self.rtt_seq.is_none() && !self.ts.enabled && seg_len > 0 {
            self.rtt_seq = Some(TimedSegment { seq, sent: now });
        }
        if !retransmit && len > 0 && self.cfg.skb_accounting {
            let packet_end = seq + len - self.snd.data_start();
            if let Some(q) = self.snd.skbs.as_mut() {
                q.note_packet(packet_end);
            }
        }
        if !retransmit && seg_len > 0 && self.sack_ok {
            // One record per segment on the wire, so that RACK and the SACK scoreboard see
            // the losses of a cut super-segment one segment at a time.
            let data_end = seq + len;
            let mut start = seq;
            while start < end {
                let piece_end = if data_end - start > segment {
                    start + segment
                } else {
                    end
                };
                self.snd.rack.on_send(start, piece_end, now);
                start = piece_end;
            }
        }
        if seg_len > 0 {
            if self.timers.retransmit.is_none() {
                self.timers.retransmit = Some(now + self.current_rto());
            } else if retransmit && seq == self.snd.una && self.recovery.recover.is_some() {
                // A fast recovery that resends SND.UNA (its fast retransmit, or again once
                // RACK found that lost) waits a whole RTO from then, as Linux's
                // `tcp_xmit_retransmit_queue` restarts the timer when it resends the head:
                // armed from the original flight, it fired while the resend was on its way.
                let mut deadline = now + self.current_rto();
                if let (Some(limit), Some(since)) =
                    (self.cfg.user_timeout, self.retransmitting_since)
                {
                    deadline = deadline.min(since + limit);
                }
                self.timers.retransmit = Some(deadline);
            }
            // RFC 8985 §7.2: the probe timer is (re)started after new data is sent, as
            // Linux's tcp_schedule_loss_probe after every burst: a probe counts from the
            // last new segment (a FIN sent after its data is probed 2 * SRTT after the FIN),
            // and one standing in the RTO's place (a lone segment's, `arm_tlp`) moves for
            // what follows. In loss recovery a probe already armed stays.
            let restart = !retransmit && !self.in_loss_recovery();
            let tlp_free =
                self.timers.tlp.is_none() || self.timers.tlp == self.timers.retransmit || restart;
            if (!retransmit || self.in_loss_recovery()) && tlp_free {
                self.arm_tlp(now);
            }
        }
        let segments = if len > segment {
            len.div_ceil(segment)
        } else {
            1
        };
        let ip = self.ip_header(&seg, new_data, segments);
        let partial = self.checksum_partial(len);
        // The payload of a super-segment whose checksum the device finishes is left for the
        // endpoint to place (`Connection::place_payload`): by reference for a caller that
        // gathers (`Endpoint::poll_transmit_gather`), saving the copy, or copied into `buf`.
        // Anything else, whose payload is summed here or is a segment's few bytes, is copied
        // now.
        let deferred = partial && len > segment;
        let buffer = &self.snd.buffer;
        let fill = |out: &mut [u8]| {
            if !deferred {
                buffer.copy_out(offset, &mut out[..len]);
            }
        };
        let packet_len = write_segment(buf, ip, &seg, len, fill, partial)?;
        if len > 0 {
            // New data with nothing in flight: the controller learns how long the flow sent
            // nothing (Linux's `tcp_event_data_sent`, CA_EVENT_TX_START, before lsndtime moves).
            if let (Some(last), false) = (self.cwnd_use.last_sent, retransmit) {
                if self.snd.una == self.snd.max {
                    self.cc.on_transmit_start(now, last);
                }
            }
            // Linux's lsndtime, which slow start after idle measures from.
            self.cwnd_use.last_sent = Some(now);
            // Data answering data: request/response (checked before `after_send`, which may
            // end quick-ACK mode, as Linux's tcp_event_data_sent runs first).
            self.rcv.delack.on_data_sent(now);
        }
        self.count_sent(
            &seg,
            u32::try_from(segments).unwrap_or(u32::MAX),
            len,
            resent,
        );
        self.after_send(&seg);
        let mut sent = Sent::single(packet_len, retransmit, false);
        sent.checksum_partial = partial;
        sent.cwr = cwr;
        if deferred {
            sent.head_len = packet_len - len;
            sent.payload_at = offset;
        }
        if len > segment {
            sent.segment_size = Some(segment);
            sent.segments = u32::try_from(segments).unwrap_or(u32::MAX);
        }
        Some(sent)
    }

    /// Emit a segment without send-buffer payload.
    pub(super) fn finish(
        &mut self,
        buf: &mut [u8],
        seg: &TcpRepr<'_>,
        retransmit: bool,
        rst: bool,
    ) -> Option<Sent> {
        let partial = self.checksum_partial(seg.payload.len());
        let ip = self.ip_header(seg, false, 1);
        let len = write_segment(buf, ip, seg, 0, |_| {}, partial)?;
        if retransmit {
            self.retransmits = self.retransmits.saturating_add(1);
        }
        // Judged before `after_send`, which hands TIME-WAIT's later segments to the control
        // socket: the ACK that starts TIME-WAIT is the socket's own.
        let resent = if retransmit { seg.payload.len() } else { 0 };
        self.count_sent(seg, 1, seg.payload.len(), resent);
        if !rst {
            self.after_send(seg);
        }
        let mut sent = Sent::single(len, retransmit, rst);
        sent.checksum_partial = partial;
        Some(sent)
    }

    /// Whether a segment carrying `payload` bytes leaves with its checksum for the device to
    /// finish ([`Config::tx_checksum_offload`](crate::Config::tx_checksum_offload)): only a
    /// segment with data, where the device saves summing it. A control segment (SYN,
    /// SYN-ACK, a bare ACK, FIN, RST) is summed here, over a header's few bytes, so that a
    /// capture on the device (tcpdump, tshark) shows every handshake and ACK with a valid
    /// checksum, as a capture of a NIC's transmissions shows only its offloaded data as
    /// "incorrect".
    pub(super) fn checksum_partial(&self, payload: usize) -> bool {
        self.cfg.tx_checksum_offload && payload > 0
    }

    /// The addresses and the marks of the IP header for `seg` (see `write_segment`): its
    /// `IP_TOS`, and ECT(0) for `new_data` (see `ds_byte`), its `IP_TTL`, and for IPv4 its
    /// next identification ([`ip_id`](Connection::ip_id), advanced by the `segments` the
    /// packet stands for, as a TSO device numbers them) and DF unless the path MTU is
    /// locked.
    ///
    /// Linux sends some of a connection's packets from elsewhere than its socket, and those
    /// carry ID 0: what a passive open sends before its handshake ends comes from the
    /// request sock (the SYN-ACK, `ip_build_and_send_pkt`, with the listener's TTL; any
    /// other answer from a control socket, `tcp_v4_reqsk_send_ack`, with the default TTL),
    /// and what [`control_socket`](Connection::control_socket) covers from a control socket
    /// with the default TTL. A Fast Open child is a whole socket from its SYN on.
    pub(super) fn ip_header(
        &mut self,
        seg: &TcpRepr<'_>,
        new_data: bool,
        segments: usize,
    ) -> (IpAddr, IpAddr, IpMarks) {
        let request_sock =
            self.passive && self.state == State::SynReceived && !self.is_fast_open_child();
        let control = self.control_socket || (request_sock && !seg.flags.contains(TcpFlags::SYN));
        let mut marks = IpMarks {
            ds: self.ds_byte(new_data),
            hop_limit: if control { HOP_LIMIT } else { self.hop_limit },
            ident: 0,
            dont_frag: true,
        };
        if self.local.is_ipv4() && !control && !request_sock {
            marks.ident = self.ip_id;
            // Truncation is intended: the field counts modulo 2^16.
            self.ip_id = self.ip_id.wrapping_add(segments as u16);
            marks.dont_frag = !self.pmtu.locked;
        }
        (self.local.ip(), self.remote.ip(), marks)
    }

    /// `IP_TTL` / `IPV6_UNICAST_HOPS`: the TTL or hop limit of the packets sent from now on.
    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.hop_limit = hop_limit;
    }

    /// The TTL or hop limit set with `set_hop_limit` ([`HOP_LIMIT`] by default).
    pub fn hop_limit(&self) -> u8 {
        self.hop_limit
    }

    /// Which path of the flow the connection is on, for its IPv6 flow label
    /// ([`Secrets::flow_label`](crate::isn::Secrets::flow_label)): the retransmission
    /// timeouts it has survived, SYN and SYN-ACK timeouts included, and the times data came
    /// again under a new label (`note_flow_label` in `input.rs`). Linux draws a new label at
    /// each (`sk_rethink_txhash` in `tcp_write_timeout`, `tcp_rtx_synack` and
    /// `tcp_rcv_spurious_retrans`), so that a flow whose path failed may hash to another
    /// one; a tail loss probe keeps it.
    pub fn flow_rehash(&self) -> u32 {
        let counts = self.counters.get();
        counts.rto.wrapping_add(counts.dup_data_rehash)
    }

    /// Counts a packet that left, of `segments` segments and `payload` data bytes (`resent`
    /// of them sent before), for
    /// TCP_INFO, as Linux counts what `__tcp_transmit_skb` sends: not a SYN-ACK, which a
    /// request sock sends (a Fast Open child's too), nor what the control socket or
    /// TIME-WAIT's sock sends. Every path that writes a segment of the connection's calls
    /// it before `after_send`.
    pub(super) fn count_sent(
        &mut self,
        seg: &TcpRepr<'_>,
        segments: u32,
        payload: usize,
        resent: usize,
    ) {
        let synack = self.passive && seg.flags.contains(TcpFlags::SYN);
        if !self.control_socket && !synack {
            self.segments.on_sent(segments, payload, resent);
        }
    }

    /// Bookkeeping after any segment left: it carried our latest ACK and window.
    pub(super) fn after_send(&mut self, seg: &TcpRepr<'_>) {
        if self.state == State::TimeWait {
            // The ACK of the FIN that ended the connection left from the socket, with its
            // TTL and ID; Linux answers anything later from TIME-WAIT's control socket
            // (`tcp_v4_timewait_ack`, `tcp_v6_timewait_ack`).
            self.control_socket = true;
        }
        if seg.flags.contains(TcpFlags::ACK) {
            // Every segment carries our ACK, and counts as one of the duplicates owed.
            self.rcv.dup_acks_owed = self.rcv.dup_acks_owed.saturating_sub(1);
            self.rcv.ack_now = self.rcv.dup_acks_owed > 0;
            let owed = self.rcv.unacked_segments > 0 || self.rcv.ack_scheduled;
            self.rcv.delack.on_ack_sent(self.rcv.nxt, owed);
            self.rcv.unacked_segments = 0;
            self.rcv.ack_scheduled = false;
            self.rcv.ack_points_len = 0;
            self.rcv.sack_changed = false;
            self.rcv.sack_compressed = 0;
            if self.rcv.dsack.take().is_some() && self.sack_ok {
                self.counters.add(|c| &mut c.dsacks_sent, 1);
            }
            self.timers.delayed_ack = None;
            if !seg.flags.contains(TcpFlags::SYN) {
                let wnd = (seg.window_len as usize) << self.rcv.wscale;
                let edge = self.rcv.nxt + wnd;
                if edge > self.rcv.adv {
                    self.rcv.adv = edge;
                }
                // The memory budget, not the buffer or pressure's clamp, kept the window
                // small: the endpoint reopens it once memory drains.
                if self.mem.room < self.rcv.buffer.window().min(2 * self.rcv.mss) {
                    self.mem.starved = true;
                }
            }
        }
    }
}
