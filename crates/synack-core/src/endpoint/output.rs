//! Output: packets and events. `poll_transmit` sends the endpoint's own packets first (RSTs
//! for closed ports, SYN-cookie SYN-ACKs, TIME-WAIT ACKs, echo replies: a bounded queue),
//! then asks the connections in the "dirty" FIFO in turn; `poll_event` hands out the
//! application's events.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::connections::Owner;
use super::{Endpoint, Event, RecvMeta};
use crate::shrink::shrink_after_peak;
use crate::tcp::connection::output::{write_segment, HOP_LIMIT};
use crate::time::Instant;
use crate::wire::ip::IpMarks;
use crate::wire::{self, IpProtocol, TcpRepr};

/// One packet written by [`Endpoint::poll_transmit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes of the IP packet at the start of the buffer.
    pub len: usize,
    /// `Some(n)` for a super-segment, sent only when
    /// [`Config::gso_max_size`](crate::Config::gso_max_size) allows: a TCP packet whose
    /// payload is to be cut into segments of `n` bytes (the last may be shorter), each with
    /// a copy of the header and its own sequence number, as a device does for TSO and
    /// Linux's GSO does in software. Only the last segment keeps PSH and
    /// FIN. The packet's own checksums are complete, so a receiver may also take it whole
    /// (GRO), unless `checksum_partial` says they are not complete.
    pub segment_size: Option<usize>,
    /// CHECKSUM_PARTIAL: the TCP checksum field holds only the folded pseudo-header sum
    /// (not complemented, over the packet's whole TCP length), and the device must finish
    /// it over the TCP header and payload (csum_start = the start of the TCP header,
    /// csum_offset = 16). Only with
    /// [`Config::tx_checksum_offload`](crate::Config::tx_checksum_offload), and only for a
    /// connection's TCP segments that carry data; everything else leaves complete.
    pub checksum_partial: bool,
    /// The bytes of the packet at the start of the buffer: all `len` of them, unless
    /// [`Endpoint::poll_transmit_gather`] left a super-segment's payload where the send
    /// buffer holds it, as `Bytes` in its `payload` list, after a head of IP and TCP headers.
    pub head_len: usize,
}

impl Transmit {
    /// A packet of `len` bytes, whole in its buffer: one segment, its checksum complete.
    pub fn new(len: usize) -> Transmit {
        Transmit {
            len,
            segment_size: None,
            checksum_partial: false,
            head_len: len,
        }
    }

    /// Whether the payload is not in the buffer but in `poll_transmit_gather`'s list.
    pub fn is_gathered(&self) -> bool {
        self.head_len < self.len
    }
}

/// What a packet the endpoint sends on its own is, for the counters it moves when it leaves
/// ([`Endpoint::poll_transmit`]): counted then, not when queued, so that one lost to a buffer
/// too small (counted in `drop_other`) is not also counted as sent. Its TCP segments count
/// in `segments_out` too, as Linux's `tcp_v4_send_reset`, `tcp_v4_send_ack` and
/// `tcp_make_synack` count theirs in `OutSegs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Own {
    /// An RST answering a segment (`rsts_sent`).
    Rst,
    /// A SYN-ACK carrying a SYN cookie (`syncookies_sent`).
    SynCookie,
    /// An ICMP echo reply (`echo_replies`).
    EchoReply,
    /// A UDP datagram, or the last fragment of one (`udp_datagrams_out`).
    Datagram,
    /// A fragment of a UDP datagram but its last (`fragments_sent`).
    Fragment,
    /// ICMP port unreachable for a UDP datagram nothing takes, or the destination unreachable
    /// an application answers one with (`udp_port_unreachable_sent`).
    PortUnreachable,
    /// ICMP unreachable for an intercepted SYN (`intercept_unreachable_sent`).
    InterceptUnreachable,
    /// A compact TIME-WAIT's ACK.
    TimeWaitAck,
    /// ICMP time exceeded for a datagram whose reassembly timed out
    /// (`fragments_time_exceeded_sent`).
    TimeExceeded,
    /// ICMP protocol unreachable or ICMPv6 parameter problem for a packet of a protocol or
    /// with a header synack does not process (`unsupported_answered`).
    Unsupported,
}

/// Packets the endpoint itself sends (RSTs for closed ports, echo replies) wait in a queue
/// this long at most; past it, more are dropped rather than held (bounded memory under a
/// flood).
pub(super) const MAX_CONTROL_PACKETS: usize = 1024;

/// Events beyond this many undrained are dropped (and [`Endpoint::take_event_overflow`] says
/// so): an application that never drains them must not make the endpoint grow.
pub const MAX_EVENTS: usize = 1 << 16;

/// Packets to our own addresses taken back in by one [`Endpoint::poll_transmit`] call at
/// most: past it the call returns (`None` if nothing is for the link) and
/// [`Endpoint::poll_timeout`] says the rest is due at once, so that a bulk flow between two
/// of our own sockets takes its turn with the link's traffic and the application.
pub(super) const LOOPBACK_BURST: usize = 64;

/// The destination address of an IP packet we wrote.
fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 => <[u8; 4]>::try_from(packet.get(16..20)?)
            .ok()
            .map(IpAddr::from),
        6 => <[u8; 16]>::try_from(packet.get(24..40)?)
            .ok()
            .map(IpAddr::from),
        _ => None,
    }
}

impl Endpoint {
    /// Write the next packet to send into `buf` (which should hold at least the MTU).
    ///
    /// A packet to one of our own addresses never reaches the link: it is taken in at once,
    /// as Linux's loopback device takes a packet to a local address (RFC 1122 §3.2.1.3:
    /// "internal host loopback"), whole (a super-segment as one, its checksum trusted), and
    /// the next packet is written in its place; at most 64 (`LOOPBACK_BURST`) in one call.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        self.poll_transmit_into(now, buf, None)
    }

    /// [`poll_transmit`](Self::poll_transmit) for a device that writes a packet from several
    /// pieces (`writev`): a super-segment whose checksum is left partial
    /// ([`Transmit::segment_size`] and [`Transmit::checksum_partial`]) comes as its IP and
    /// TCP headers in `buf` (the first [`Transmit::head_len`] bytes) and its payload in
    /// `payload`, handles on the send buffer's own bytes, in order. That saves copying up to
    /// 64 KiB a packet out of the send buffer: after the application's write into it, the
    /// device's write is the payload's one copy. Every other packet is written whole into
    /// `buf`, as `poll_transmit` writes it, and `payload` is left empty. `buf` must still hold
    /// the whole packet (the MTU, or the largest super-segment): a packet to one of our own
    /// addresses is put together there and taken in.
    ///
    /// The handles keep the bytes alive after the peer acknowledges them; drop them (clear
    /// `payload`) once the device has written the packet.
    #[must_use]
    pub fn poll_transmit_gather(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        payload: &mut Vec<Bytes>,
    ) -> Option<Transmit> {
        payload.clear();
        self.poll_transmit_into(now, buf, Some(payload))
    }

    fn poll_transmit_into(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mut payload: Option<&mut Vec<Bytes>>,
    ) -> Option<Transmit> {
        self.loopback_due = None;
        for _ in 0..LOOPBACK_BURST {
            let t = self.poll_transmit_link(now, buf, payload.as_deref_mut())?;
            if !destination(&buf[..t.head_len]).is_some_and(|d| self.addresses.contains(&d)) {
                return Some(t);
            }
            if t.is_gathered() {
                // Put the packet together to take it in.
                let mut at = t.head_len;
                for piece in payload.as_deref_mut().into_iter().flat_map(|p| p.drain(..)) {
                    buf[at..at + piece.len()].copy_from_slice(&piece);
                    at += piece.len();
                }
                debug_assert_eq!(at, t.len, "the payload fills the packet");
            }
            let packet = &buf[..t.len];
            self.stats.looped_back += 1;
            let meta = RecvMeta {
                len: t.len,
                checksum_verified: true,
                segment_size: t.segment_size,
            };
            self.looping = true;
            self.stats.packets_in += 1;
            self.handle_ip(now, packet, meta, None);
            self.looping = false;
        }
        self.loopback_due = Some(now);
        None
    }

    /// The next packet for the link or for ourselves (see `poll_transmit`).
    fn poll_transmit_link(
        &mut self,
        now: Instant,
        buf: &mut [u8],
        mut payload: Option<&mut Vec<Bytes>>,
    ) -> Option<Transmit> {
        while let Some((packet, own)) = self.control.pop_front() {
            self.udp_after_output();
            if buf.len() >= packet.len() {
                buf[..packet.len()].copy_from_slice(&packet);
                self.stats.packets_out += 1;
                self.count_own(own);
                return Some(Transmit::new(packet.len()));
            }
            // A buffer smaller than the MTU, against this method's contract: the packet is
            // lost, as one the device refused would be, and counted.
            self.stats.drop_other += 1;
        }
        while let Some(&h) = self.dirty.front() {
            let Some(slot) = self.connections.get_mut(&h) else {
                self.dirty.pop_front();
                continue;
            };
            match slot.conn.poll_transmit(now, buf) {
                Some(mut sent) => {
                    slot.conn
                        .place_payload(&mut sent, buf, payload.as_deref_mut());
                    if buf.first().is_some_and(|b| b >> 4 == 6) {
                        // RFC 6437: the connection's label, the same until a timeout rehashes
                        // it. One SipHash a packet (a super-packet on an offload device),
                        // rather than a word more in every connection.
                        let (local, remote) = (slot.conn.local(), slot.conn.remote());
                        let (tcp, rehash) = (u8::from(IpProtocol::Tcp), slot.conn.flow_rehash());
                        let label = self.secrets.flow_label(local, remote, tcp, rehash);
                        wire::ip::set_flow_label(&mut buf[..sent.head_len], label);
                    }
                    self.stats.packets_out += 1;
                    self.stats.segments_out += u64::from(sent.segments);
                    if sent.retransmit {
                        self.stats.retransmits += u64::from(sent.segments);
                    }
                    if sent.rst {
                        self.stats.rsts_sent += 1;
                    }
                    if sent.cwr {
                        self.stats.ecn_cwr_sent += 1;
                    }
                    // Sending may arm a timer; it is rescheduled when the connection has
                    // sent all it has (below), or when a deadline is asked for before that.
                    if !slot.stale {
                        slot.stale = true;
                        self.stale.push(h);
                    }
                    return Some(Transmit {
                        len: sent.len,
                        segment_size: sent.segment_size,
                        checksum_partial: sent.checksum_partial,
                        head_len: sent.head_len,
                    });
                }
                None => {
                    slot.dirty = false;
                    // Sending stopped: the write-space check (and what limited the sender).
                    if slot.conn.after_transmit(now) && slot.owner == Owner::App {
                        self.push_event(Event::Writable(h));
                    }
                    let Some(slot) = self.connections.get_mut(&h) else {
                        continue;
                    };
                    // Declining to send can arm a timer too (pacing, the persist timer), so
                    // the deadline is recomputed whether or not it was already current.
                    slot.stale = true;
                    // An ACK it sent had its window kept small by the memory cap.
                    let starved = slot.conn.take_memory_starved();
                    self.dirty.pop_front();
                    if starved {
                        self.wait_for_memory(h);
                    }
                    self.schedule(h);
                    self.maybe_remove(h);
                }
            }
        }
        // All sent: the queues give back what a peak grew them to.
        let live = self.connections.len();
        shrink_after_peak(&mut self.control, live);
        shrink_after_peak(&mut self.dirty, live);
        None
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.events.pop_front();
        if event.is_none() {
            shrink_after_peak(&mut self.events, self.connections.len());
        }
        event
    }

    /// Whether events were dropped since the last call: more than [`MAX_EVENTS`] were left
    /// undrained (a timeout round that expired tens of thousands of connections at once, an
    /// `abort_unfinished` of as many). A runtime that parks tasks until their event must then
    /// wake every task it has parked, each to look at its connection, listener or socket
    /// afresh, since any of their events may have been among the lost. Counted in
    /// [`Stats::events_dropped`](crate::Stats::events_dropped).
    pub fn take_event_overflow(&mut self) -> bool {
        std::mem::take(&mut self.events_overflowed)
    }

    pub(super) fn push_event(&mut self, event: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(event);
        } else {
            self.events_overflowed = true;
            self.stats.events_dropped += 1;
        }
    }

    /// The counter a packet of ours moves as it leaves.
    fn count_own(&mut self, own: Own) {
        let s = &mut self.stats;
        match own {
            Own::Rst => {
                s.rsts_sent += 1;
                s.segments_out += 1;
            }
            Own::SynCookie => {
                s.syncookies_sent += 1;
                s.segments_out += 1;
            }
            Own::TimeWaitAck => s.segments_out += 1,
            Own::EchoReply => s.echo_replies += 1,
            Own::Datagram => s.udp_datagrams_out += 1,
            Own::Fragment => s.fragments_sent += 1,
            Own::PortUnreachable => s.udp_port_unreachable_sent += 1,
            Own::InterceptUnreachable => s.intercept_unreachable_sent += 1,
            Own::TimeExceeded => s.fragments_time_exceeded_sent += 1,
            Own::Unsupported => s.unsupported_answered += 1,
        }
    }

    /// Queue a segment the endpoint sends on its own (no connection behind it), `own` saying
    /// what it is. Returns whether it was queued.
    pub(super) fn queue_segment(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
        own: Own,
    ) -> bool {
        self.queue_segment_marked(local, remote, seg, (0, HOP_LIMIT, 0), own)
    }

    /// [`queue_segment`](Self::queue_segment) with `ds` as the IP header's DS byte,
    /// `hop_limit` as its TTL or hop limit (a listener's `IP_TOS` and `IP_TTL`), and, for
    /// IPv6, the label of a flow that moved `rehash` times (a compact TIME-WAIT's, after its
    /// connection's retransmission timeouts).
    pub(super) fn queue_segment_marked(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
        (ds, hop_limit, rehash): (u8, u8, u32),
        own: Own,
    ) -> bool {
        let mut buf = vec![0u8; 120];
        // Complete checksums: these are few and small (see `Transmit::checksum_partial`).
        // ID 0 with DF, as from Linux's request and control sockets (`Connection::ip_id`).
        let marks = IpMarks {
            ds,
            hop_limit,
            ident: 0,
            dont_frag: true,
        };
        let ip = (local.ip(), remote.ip(), marks);
        match write_segment(&mut buf, ip, seg, 0, |_| {}, false) {
            Some(len) => {
                buf.truncate(len);
                self.push_control_in_flow(buf, rehash, own)
            }
            None => false,
        }
    }

    /// Queues `packet`, one of our own from `src` to `dst` larger than the MTU, in fragments
    /// (`wire::fragment::split`): every piece with the whole packet's flow label (RFC 6437)
    /// and an identification no other datagram between these addresses has had lately (RFC
    /// 791 §3.2; RFC 7739 §5: not a global counter's next value, which would tell an onlooker
    /// how many datagrams went elsewhere), `own` on the last piece and [`Own::Fragment`] on
    /// the others. Queues nothing and returns `false` if it cannot be cut or its pieces do
    /// not all fit the queue (counted under `drop_other`).
    pub(super) fn push_in_fragments(
        &mut self,
        mut packet: Vec<u8>,
        (src, dst): (IpAddr, IpAddr),
        mtu: usize,
        own: Own,
    ) -> bool {
        if let Some((s, d, p)) = wire::ip::ipv6_flow(&packet) {
            let label = self.secrets.flow_label(s, d, p, 0);
            wire::ip::set_flow_label(&mut packet, label);
        }
        let ident = self.fragment_ident(src, dst);
        let pieces = match wire::fragment::split(&packet, mtu, ident) {
            Some(pieces) if self.control.len() + pieces.len() <= MAX_CONTROL_PACKETS => pieces,
            _ => {
                self.stats.drop_other += 1;
                return false;
            }
        };
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let kind = if i == last { own } else { Own::Fragment };
            self.push_control(piece, kind);
        }
        true
    }

    /// Whether the own-packet queue is full: a `push_control` now would fail.
    pub(super) fn control_full(&self) -> bool {
        self.control.len() >= MAX_CONTROL_PACKETS
    }

    pub(super) fn push_control(&mut self, packet: Vec<u8>, own: Own) -> bool {
        self.push_control_in_flow(packet, 0, own)
    }

    /// [`push_control`](Self::push_control) for a flow whose label moved `rehash` times.
    fn push_control_in_flow(&mut self, mut packet: Vec<u8>, rehash: u32, own: Own) -> bool {
        if self.control_full() {
            self.stats.drop_other += 1;
            return false;
        }
        // RFC 6437: an IPv6 packet carries its flow's label, the one a connection of that
        // 4-tuple has on its first path (a SYN cookie's SYN-ACK and the connection its ACK
        // makes, an RST and the connection it answers, label alike), or a UDP flow's.
        if let Some((src, dst, protocol)) = wire::ip::ipv6_flow(&packet) {
            let label = self.secrets.flow_label(src, dst, protocol, rehash);
            wire::ip::set_flow_label(&mut packet, label);
        }
        self.control.push_back((packet, own));
        true
    }
}
