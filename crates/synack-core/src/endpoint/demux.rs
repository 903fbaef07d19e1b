//! Demultiplexing (RFC 9293 §3.10.7): each received packet is parsed once (`wire`), checked
//! and counted, and its TCP segment handed to the connection its 4-tuple names (a hash map
//! lookup, O(1)), else to a compact TIME-WAIT entry, else to a listener, else answered with
//! an RST; ICMP goes to `icmp`.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::output::Own;
use super::table::Tuple;
use super::time_wait::Reuse;
use super::{ConnectionHandle, Endpoint, Owner};
use crate::error::Error;
use crate::seq::SeqNumber;
use crate::tcp::connection::{InputVerdict, SegmentMeta};
use crate::tcp::recv_buffer::Frame;
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::fragment::Fragment;
use crate::wire::{self, Ecn, IcmpRepr, IpProtocol, IpRepr, TcpFlags, TcpRepr, WireError};

/// What the device knows about one received packet, handed to [`Endpoint::handle_packet`]
/// with it: the mirror of [`Transmit`](crate::Transmit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes of the IP packet at the start of the buffer.
    pub len: usize,
    /// The device verified the transport checksum (receive checksum offload: Linux's
    /// `CHECKSUM_UNNECESSARY`, virtio-net's `VIRTIO_NET_HDR_F_DATA_VALID`), or computed it
    /// itself; the core skips it. Everything else is still checked. Set it only for packets
    /// the device vouches for.
    pub checksum_verified: bool,
    /// GRO: `Some(n)` when the packet is TCP segments of `n` payload bytes coalesced into
    /// one. The core takes it as one segment and uses `n` as the peer's segment size where
    /// Linux reads `gso_size` (`tcp_measure_rcv_mss`: the receive MSS estimate behind the
    /// delayed-ACK decisions).
    pub segment_size: Option<usize>,
}

impl RecvMeta {
    /// A plain packet of `len` bytes: checksum to be verified, one segment.
    pub fn new(len: usize) -> RecvMeta {
        RecvMeta {
            len,
            ..RecvMeta::default()
        }
    }
}

/// Whether `addr` is a unicast address by its class: not unspecified, the limited
/// broadcast address or multicast. [`Endpoint::is_unicast`] adds the link's broadcasts.
fn is_unicast(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_broadcast() && !a.is_multicast(),
        IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast(),
    }
}

/// The source a per-source limit counts a packet under: an IPv4 address, or an IPv6
/// address's /64. A host is given a /64 and may send from any interface identifier in it
/// (RFC 4291 §2.5.1, RFC 8981's temporary addresses), so counting /128s would let one host
/// past any per-source limit with as many addresses as it likes.
pub(super) fn source_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & !u128::from(u64::MAX)).into()),
    }
}

/// Whether `addr` is one no link carries, as source or destination: a loopback address
/// (127/8, `::1`; RFC 1122 §3.2.1.3, RFC 4291 §2.5.3), IPv4's "this network" 0/8 (RFC 1122
/// §3.2.1.3), or, in an IPv6 header, an IPv4-mapped address (RFC 4291 §2.5.5.2; Linux's
/// TCP refuses one as a source, `tcp_v6_conn_request`). Linux drops such packets arriving
/// on any device but loopback as martians (`ip_route_input_slow`, `ip6_rcv_core`). Above
/// all, in intercept mode a packet to 127.0.0.1 must not become a flow the application
/// relays to its own host's loopback. Broadcast and multicast sources, which Linux counts
/// as martians too, are not this function's: see [`Endpoint::is_unicast`], which the TCP,
/// UDP and ICMP paths apply to the source where they need it.
pub(super) fn is_martian(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_loopback() || a.octets()[0] == 0,
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some(),
    }
}

/// Whether `addr` names no peer without a link to say which (RFC 4007 §6): an IPv6
/// link-local unicast address (fe80::/10) or an interface- or link-local multicast group
/// (ff01::/16, ff02::/16), as Linux's `__ipv6_addr_needs_scope_id`. A connect to one needs
/// a scope id: Linux's `tcp_v6_connect` and `__ip6_datagram_connect` fail with EINVAL
/// without one (unless the socket is bound to a device), and show it back on `getpeername`.
pub fn needs_scope_id(addr: SocketAddr) -> bool {
    let SocketAddr::V6(v6) = addr else {
        return false;
    };
    let first = v6.ip().segments()[0];
    let link_local = first & 0xffc0 == 0xfe80;
    link_local || (v6.ip().is_multicast() && matches!(first & 0x000f, 1 | 2))
}

/// The scope id of an IPv6 socket address (0 for IPv4).
pub(super) fn scope_id(addr: SocketAddr) -> u32 {
    match addr {
        SocketAddr::V6(v6) => v6.scope_id(),
        SocketAddr::V4(_) => 0,
    }
}

/// `addr` with `scope` as its scope id if it [needs one](needs_scope_id): how a socket
/// connected with a scope id shows its addresses, as Linux's `getpeername` and
/// `getsockname` show `sk_bound_dev_if` for a link-local address and 0 for any other.
pub(super) fn scoped(addr: SocketAddr, scope: u32) -> SocketAddr {
    match addr {
        SocketAddr::V6(mut v6) if needs_scope_id(addr) => {
            v6.set_scope_id(scope);
            SocketAddr::V6(v6)
        }
        _ => addr,
    }
}

/// `addr` without an IPv6 flow label or scope id, as every address a socket is given
/// (bound, connected or sent to) is taken: Linux ignores `sin6_flowinfo` unless
/// `IPV6_FLOWINFO_SEND` is on, and the scope id names an interface, of which a stack has
/// one; `getsockname` and `getpeername` then show both as 0, but for a link-local address
/// connected to with a scope id, which a UDP socket (and the runtime's stream) shows back
/// (see [`needs_scope_id`]). Kept, they would make a flow's addresses differ from the ones
/// its packets carry, and no segment would find it.
pub fn plain(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port())
}

/// The IPv4 address an IPv4-mapped one (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2) stands for,
/// with its port; `None` for any other address. The inverse of [`ipv4_mapped`].
pub fn unmapped(addr: SocketAddr) -> Option<SocketAddr> {
    match addr {
        SocketAddr::V6(v6) => v6
            .ip()
            .to_ipv4_mapped()
            .map(|v4| SocketAddr::new(v4.into(), v6.port())),
        SocketAddr::V4(_) => None,
    }
}

/// `addr` as a dual-stack IPv6 socket sees an IPv4 one: `::ffff:a.b.c.d` (RFC 4291
/// §2.5.5.2); an IPv6 address as it is. What a socket on `[::]` shows of its IPv4 peers.
pub fn ipv4_mapped(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    }
}

impl Endpoint {
    /// Whether `addr` can be a peer's or a flow's address: unicast by its class, and not one
    /// of the link's broadcast addresses (see [`crate::Config::broadcast_addresses`]).
    pub(super) fn is_unicast(&self, addr: IpAddr) -> bool {
        is_unicast(addr) && !self.config.is_link_broadcast(addr)
    }

    /// Whether `addr` is a broadcast address: the limited one (255.255.255.255) or one of
    /// the link's. A UDP socket without `SO_BROADCAST` may not send to one (Linux's
    /// EACCES); TCP never goes to one.
    pub(super) fn is_broadcast(&self, addr: IpAddr) -> bool {
        matches!(addr, IpAddr::V4(a) if a.is_broadcast()) || self.config.is_link_broadcast(addr)
    }

    /// Feed one IP packet received from the link: `&buf[..meta.len]`, with what the device
    /// says about it (see [`RecvMeta`]; `RecvMeta::new(len)` for a plain packet). A `len`
    /// past the end of `buf` is dropped as malformed.
    pub fn handle_packet(&mut self, now: Instant, buf: &[u8], meta: RecvMeta) {
        self.handle_link_packet(now, buf, meta, None);
    }

    /// Like [`handle_packet`](Self::handle_packet), for a packet in shared memory: the
    /// packet is `&buf[..meta.len]`, and `buf` is the whole buffer it was read into.
    ///
    /// The in-order payload of a large TCP segment may then be kept in the receive buffer by
    /// reference instead of being copied, until the application reads it. It holds all of
    /// `buf` alive meanwhile, and is charged `buf.len()` against the memory cap, as Linux
    /// charges an skb's truesize; it is kept only when it fills at least half of `buf`.
    /// So a driver reads each packet into a buffer of its own, and gets the buffer back to
    /// reuse once it is the only handle left (`Bytes::try_into_mut`).
    pub fn handle_packet_shared(&mut self, now: Instant, buf: &Bytes, meta: RecvMeta) {
        self.handle_link_packet(now, buf, meta, Some(buf));
    }

    /// A packet from the link, and its memory if shared.
    fn handle_link_packet(
        &mut self,
        now: Instant,
        buf: &[u8],
        meta: RecvMeta,
        shared: Option<&Bytes>,
    ) {
        self.stats.packets_in += 1;
        // UDP's lowered path MTUs have no timer of their own (a comparison when none is due).
        self.expire_path_mtus(now);
        let Some(packet) = buf.get(..meta.len) else {
            self.stats.drop_malformed += 1;
            return;
        };
        if meta.checksum_verified {
            self.stats.checksum_offloaded += 1;
        }
        self.handle_ip(now, packet, meta, shared);
    }

    /// An IP packet taken in, or a datagram reassembled from fragments: checked for being
    /// ours, then handed to its protocol (a fragment to reassembly). `shared` is the memory
    /// a packet from the link came in, if shared (see `handle_packet_shared`).
    pub(super) fn handle_ip(
        &mut self,
        now: Instant,
        packet: &[u8],
        meta: RecvMeta,
        shared: Option<&Bytes>,
    ) {
        let packet = wire::ip::trim_padding(packet);
        let parsed = wire::ip::parse(packet);
        let fragment = match parsed {
            Err(WireError::Fragment) => match Fragment::parse(packet) {
                Ok(frag) => Some(frag),
                Err(e) => return self.count_wire_error(e),
            },
            _ => None,
        };
        let (src, dst, protocol) = match (&parsed, &fragment) {
            (Ok((ip, _)), _) => (ip.src_addr(), ip.dst_addr(), ip.protocol()),
            (_, Some(frag)) => (frag.src, frag.dst, frag.protocol),
            (Err(e), None) => {
                // An IPv6 extension header the walk refused, or Hop-by-Hop out of its place
                // (IPv4 parses any protocol).
                if matches!(e, WireError::Unsupported | WireError::Malformed) && packet[0] >> 4 == 6
                {
                    self.answer_unsupported(now, packet);
                }
                return self.count_wire_error(*e);
            }
        };
        // In intercept mode every unicast address routed to us is ours, for TCP and UDP, and
        // for the ICMP errors about what we sent from it (a router's "fragmentation needed"
        // for an intercepted connection, as Linux's TPROXY delivers them to transparent
        // sockets); an echo request to it is not ours to answer (`handle_icmp`). A whole UDP
        // datagram to a broadcast address, or to a multicast group a socket has joined, is
        // for the sockets on its port (`handle_udp`); synack reassembles none (nor does it
        // answer one). Other broadcast and multicast destinations are nobody's.
        // A later piece of an IPv6 datagram names no protocol of its own: only the first
        // piece's Next Header counts (RFC 8200 §4.5), and reassembly judges by that one.
        let later_ipv6_piece = fragment
            .as_ref()
            .is_some_and(|f| f.src.is_ipv6() && f.offset != 0);
        let ours = self.addresses.contains(&dst)
            || (protocol == IpProtocol::Udp
                && fragment.is_none()
                && (self.is_broadcast(dst) || self.udp_joined(dst)))
            || (self.intercepts()
                && (matches!(
                    protocol,
                    IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmp | IpProtocol::Icmpv6
                ) || later_ipv6_piece)
                && self.is_unicast(dst));
        // Martians (see `is_martian`), a source that is one of our own addresses (a LAND
        // attack: Linux's `fib_validate_source` refuses a local source without
        // `accept_local`), and a source that is the link's broadcast address (its route is
        // RTN_BROADCAST: `ip_route_input_slow`'s `martian_source`; answering it would
        // reflect to the whole link). A packet of ours looped back is none of these, and
        // neither is one to an own address of a stack whose own addresses are all loopback
        // ones (a loopback link, as Linux's `lo`). A loopback address beside a real one is
        // out of the link's reach: a packet from the link to it is a martian destination
        // (Linux's, on any device but `lo`), whatever its source. And on a loopback link a
        // packet to any other address (in intercept mode) is still judged as a martian.
        let loopback_link = self.looping || (self.loopback_only && self.addresses.contains(&dst));
        let martian = !loopback_link
            && (is_martian(src)
                || is_martian(dst)
                || self.addresses.contains(&src)
                || self.config.is_link_broadcast(src));
        if !ours || martian {
            self.stats.drop_not_for_us += 1;
            return;
        }
        if let Some(frag) = fragment {
            return self.handle_fragment(now, frag, packet);
        }
        let Ok((ip, payload)) = parsed else {
            return;
        };
        match (ip.protocol(), &ip) {
            (IpProtocol::Tcp, _) => self.handle_tcp(now, &ip, payload, meta, packet, shared),
            (IpProtocol::Udp, _) => self.handle_udp(now, &ip, payload, meta, packet),
            (IpProtocol::Icmp, IpRepr::Ipv4(_)) => match IcmpRepr::parse_v4(payload) {
                Ok(icmp) => self.handle_icmp(now, &ip, icmp),
                Err(e) => self.count_wire_error(e),
            },
            (IpProtocol::Icmpv6, IpRepr::Ipv6(v6)) => {
                match IcmpRepr::parse_v6(payload, v6.src_addr, v6.dst_addr) {
                    Ok(icmp) => self.handle_icmp(now, &ip, icmp),
                    Err(e) => self.count_wire_error(e),
                }
            }
            _ => {
                self.stats.drop_unsupported += 1;
                self.answer_unsupported(now, packet);
            }
        }
    }

    pub(super) fn count_wire_error(&mut self, e: WireError) {
        let s = &mut self.stats;
        match e {
            WireError::Truncated | WireError::Malformed => s.drop_malformed += 1,
            WireError::Checksum => s.drop_checksum += 1,
            WireError::BadOption => s.drop_bad_option += 1,
            WireError::Fragment => s.drop_fragment += 1,
            WireError::Unsupported => s.drop_unsupported += 1,
        }
    }

    pub(super) fn handle_tcp(
        &mut self,
        now: Instant,
        ip: &IpRepr,
        payload: &[u8],
        meta: RecvMeta,
        packet: &[u8],
        shared: Option<&Bytes>,
    ) {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let seg = match TcpRepr::parse(payload, src, dst, meta.checksum_verified) {
            Ok(seg) => seg,
            Err(e) => return self.count_wire_error(e),
        };
        // RFC 9293 §3.10.7.2 / RFC 1122 §4.2.3.10: segments from broadcast or multicast
        // sources are not for a connection.
        if !self.is_unicast(src) {
            self.stats.drop_malformed += 1;
            return;
        }
        self.stats.segments_in += 1;
        let local = SocketAddr::new(dst, seg.dst_port);
        let remote = SocketAddr::new(src, seg.src_port);
        let rx = SegmentMeta {
            segment_size: meta.segment_size,
            ecn: Ecn::from_ds(wire::ip::ds_field(packet)),
            flow_label: wire::ip::flow_label(packet),
            frame: shared.map(|bytes| Frame { bytes }),
        };

        let tuple = Tuple(local, remote);
        let mut iss = None;
        if let Some(&h) = self.by_tuple.get(&tuple) {
            match self.reuse_time_wait(now, h, &seg) {
                Reuse::No if seg.signed && !self.in_time_wait(h) => {
                    self.stats.drop_signed += 1;
                    return;
                }
                Reuse::No => {
                    self.deliver(now, h, &seg, rx);
                    return;
                }
                Reuse::Yes { iss: next } => {
                    iss = next;
                    self.release_tuple(h);
                }
            }
        } else if self.time_wait.contains(&tuple) {
            match self.handle_time_wait(now, local, remote, &seg) {
                Reuse::No => return,
                Reuse::Yes { iss: next } => iss = next,
            }
        }
        // A signed segment that no connection of ours takes (TIME-WAIT answers one as any
        // other) is dropped: a listener or an interceptor has no key to check it with
        // (Linux's `tcp_inbound_hash`), and with no socket Linux's `tcp_v4_send_reset` sends
        // no reset for one, finding no key either. A SYN that reused a TIME-WAIT has ended
        // it, as Linux's TCP_TW_SYN has before the listener drops it.
        if seg.signed {
            self.stats.drop_signed += 1;
            return;
        }
        if let Some(l) = self.find_listener(local) {
            let l = self.reuseport_pick(l, local, remote);
            self.handle_listen(now, l, local, remote, &seg, rx, iss);
            return;
        }
        // Port 0 names no socket, intercepted or not: the SYN is reset at once, as by
        // Linux's own stack (an upstream connect to port 0 would only be refused). Nor is
        // our own SYN looped back a client's to intercept (Linux's TPROXY rules never see
        // its loopback device): an interceptor that connects upstream through this stack
        // to an own closed port would intercept itself, again and again.
        if self.catches_syns()
            && local.port() != 0
            && !self.looping
            && self.handle_intercept(now, local, remote, &seg, packet, iss)
        {
            return;
        }
        self.reply_rst(local, remote, &seg);
    }

    /// Hand a segment to its connection.
    pub(super) fn deliver(
        &mut self,
        now: Instant,
        h: ConnectionHandle,
        seg: &TcpRepr<'_>,
        rx: SegmentMeta<'_>,
    ) {
        // The final ACK of a passive handshake waits while the accept queue is full (Linux
        // drops it and lets the SYN-ACK retransmission retry); an RST or a wrong ACK meanwhile
        // is answered as ever (`Connection::is_final_ack`). One without data waits for the
        // listener's TCP_DEFER_ACCEPT too (Linux's `tcp_check_req`, before the queue).
        if let Some(slot) = self.connections.get_mut(&h) {
            if slot.conn.is_final_ack(seg) && slot.conn.hold_for_defer_accept(now, seg) {
                self.stats.drop_defer_accept += 1;
                return;
            }
            if slot.conn.is_final_ack(seg) {
                if let Some(l) = slot.syn_of.and_then(|l| self.listeners.get(&l)) {
                    if l.accept_full() {
                        self.stats.drop_listen_overflow += 1;
                        return;
                    }
                }
            }
        }
        let (pressure, room) = (self.memory_pressure, self.memory_room());
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        // The budget as it stands: what this segment's data may take (`Config::max_memory`).
        slot.conn.set_memory_budget(pressure, room);
        let verdict = slot.conn.handle_segment(now, seg, rx);
        // An accepted Fast Open connection reset before its handshake ended holds its slot
        // in the listener's Fast Open queue a while longer (see `fast_open::RESET_HOLD`).
        if let (Some(l), Owner::App, Some(Error::ConnectionReset)) =
            (slot.fast_open_of, slot.owner, slot.conn.error())
        {
            if slot.conn.state() == State::Closed {
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener
                        .fast_open
                        .reset
                        .push_back(now + super::fast_open::RESET_HOLD);
                }
            }
        }
        self.count_verdict(verdict);
        self.after(h);
        if verdict.memory {
            // Its data found no room: what other connections hold out of order gives way
            // (the sender retransmits once the window update says so).
            self.prune_out_of_order(now);
        }
    }

    /// Count what a connection made of a segment.
    pub(super) fn count_verdict(&mut self, v: InputVerdict) {
        if v.out_of_window {
            self.stats.drop_out_of_window += 1;
        }
        if v.paws {
            self.stats.drop_paws += 1;
        }
        if v.memory {
            self.stats.drop_memory += 1;
        }
        if v.challenge_ack {
            self.stats.challenge_acks += 1;
        }
        if v.challenge_ack_limited {
            self.stats.challenge_acks_limited += 1;
        }
        if v.ce {
            self.stats.ecn_ce_received += 1;
        }
        if v.ece {
            self.stats.ecn_ece_received += 1;
        }
        if v.ignored {
            self.stats.drop_other += 1;
        }
    }

    /// RFC 9293 §3.10.7.1: "If the state is CLOSED ... a reset is sent in response to any
    /// incoming segment except another reset."
    pub(super) fn reply_rst(&mut self, local: SocketAddr, remote: SocketAddr, seg: &TcpRepr<'_>) {
        if seg.flags.contains(TcpFlags::RST) {
            self.stats.drop_other += 1;
            return;
        }
        let rst = if seg.flags.contains(TcpFlags::ACK) {
            // "<SEQ=SEG.ACK><CTL=RST>"
            TcpRepr::new(
                local.port(),
                remote.port(),
                TcpFlags::RST,
                seg.ack_number,
                SeqNumber(0),
            )
        } else {
            // "<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>"
            TcpRepr::new(
                local.port(),
                remote.port(),
                TcpFlags::RST | TcpFlags::ACK,
                SeqNumber(0),
                seg.seq_number + seg.seq_len(),
            )
        };
        self.queue_segment(local, remote, &rst, Own::Rst);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};

    use super::RecvMeta;
    use crate::{Config, Endpoint, Event, Instant};

    /// The receive MSS estimate the server's connection ends up with after a bulk transfer
    /// from a client that sends super-segments, handed over whole (GRO) with or without
    /// their segment size; with the segment size, also checks that the server counts the
    /// segments a GRO packet coalesced as the client counts those it sent (`TcpInfo`'s
    /// `data_segs_in` and `data_segs_out`, as Linux's `tcp_segs_in` reads `gso_segs`).
    fn rcv_mss_after_gro(tell_segment_size: bool) -> (usize, Option<usize>) {
        let (cip, sip): (IpAddr, IpAddr) =
            ("198.18.0.2".parse().unwrap(), "198.18.0.1".parse().unwrap());
        let mut cc = Config::default();
        cc.seed(Some([3; 32])).gso_max_size(65_535);
        let mut client = Endpoint::new(cc, &[cip]);
        let mut sc = Config::default();
        sc.seed(Some([4; 32]));
        let mut server = Endpoint::new(sc, &[sip]);
        let addr = SocketAddr::new(sip, 80);
        server.listen(addr, 4).unwrap();
        let now = Instant::ZERO;
        let conn = client.connect(now, addr).unwrap();
        let mut buf = vec![0u8; 65_536];
        let mut accepted = None;
        let mut seen = None;
        let mut sent = false;
        for _ in 0..20 {
            while let Some(t) = client.poll_transmit(now, &mut buf) {
                seen = seen.or(t.segment_size);
                let meta = RecvMeta {
                    segment_size: t.segment_size.filter(|_| tell_segment_size),
                    ..RecvMeta::new(t.len)
                };
                server.handle_packet(now, &buf, meta);
            }
            while let Some(t) = server.poll_transmit(now, &mut buf) {
                client.handle_packet(now, &buf, RecvMeta::new(t.len));
            }
            while let Some(e) = server.poll_event() {
                if let Event::Incoming(l) = e {
                    accepted = server.accept(l).ok();
                }
            }
            while let Some(e) = client.poll_event() {
                if e == Event::Connected(conn) && !sent {
                    client.send(conn, &[7u8; 100_000]).unwrap();
                    sent = true;
                }
            }
        }
        let h = accepted.expect("accepted");
        let (sent, got) = (
            client.info(now, conn).unwrap(),
            server.info(now, h).unwrap(),
        );
        assert_eq!((sent.bytes_sent, got.bytes_received), (100_000, 100_000));
        if tell_segment_size {
            assert!(sent.data_segs_out > 1, "{sent:?}");
            assert_eq!(got.data_segs_in, sent.data_segs_out);
        }
        let conn = &server.connections.get(&h).unwrap().conn;
        (conn.rcv.delack.rcv_mss, seen)
    }

    /// Linux's tcp_measure_rcv_mss reads gso_size before the packet's length: a GRO packet
    /// says how large the peer's segments are, where its length alone says only "at least
    /// our MSS".
    #[test]
    fn a_gro_segment_size_is_the_receive_mss_estimate() {
        let (told, segment) = rcv_mss_after_gro(true);
        let segment = segment.expect("the client sent super-segments");
        assert_eq!(told, segment);
        let (untold, _) = rcv_mss_after_gro(false);
        assert!(
            untold > segment,
            "{untold} vs {segment}: whole packets, capped at our MSS"
        );
    }

    /// A connection of the test kit's endpoint to a peer that announced an MSS of 100 and
    /// SACK, slow-started (every segment acknowledged) until more than 1,000 segments are in
    /// flight, between SND.UNA `una` and SND.MAX `max`.
    #[cfg(feature = "testing")]
    struct LongFlight {
        h: crate::testing::peer::Harness,
        c: crate::ConnectionHandle,
        peer: SocketAddr,
        us: SocketAddr,
        una: crate::SeqNumber,
        max: crate::SeqNumber,
    }

    #[cfg(feature = "testing")]
    impl LongFlight {
        fn new() -> LongFlight {
            use crate::testing::peer::{config, Harness, Out, PEER};
            use crate::wire::TcpFlags;
            const ACK: TcpFlags = TcpFlags::ACK;

            let mut h = Harness::new(config());
            let peer = SocketAddr::new(PEER, 80);
            let c = h.ep.connect(h.now, peer).unwrap();
            let syn = h.one();
            let us = syn.src;
            let syn_ack = Out::new(TcpFlags::SYN | ACK, 10_000, 0)
                .ackn(syn.seq + 1)
                .mss(100)
                .wscale(7)
                .sack_ok();
            h.inject(peer, us, syn_ack);
            let _ = h.drain();
            let _ = h.events();
            let queued = h.ep.send(c, &[7u8; 1 << 18]).unwrap();
            assert!(queued > 100_000, "{queued} bytes queued");
            let mut una = syn.seq + 1;
            let mut max = una;
            for _ in 0..20 {
                let sent = h.drain();
                if let Some(end) = sent.iter().map(|s| s.seq + s.payload.len()).max() {
                    max = max.max(end);
                }
                if max - una > 100_000 {
                    break;
                }
                una = max;
                h.inject(peer, us, Out::new(ACK, 10_001, 0).ackn(una).window(4096));
            }
            let flight = LongFlight {
                h,
                c,
                peer,
                us,
                una,
                max,
            };
            assert!(flight.segments() > 1000, "{} segments", flight.segments());
            flight
        }

        /// Segments in flight.
        fn segments(&self) -> usize {
            (self.max - self.una) / 100
        }

        /// The peer acknowledges SND.UNA again with one SACK block, `[left, right)`; whatever
        /// that makes us send is taken.
        fn sack(&mut self, left: crate::SeqNumber, right: crate::SeqNumber) {
            use crate::testing::peer::Out;
            let block = [(left.0, right.0)];
            let ack = Out::new(crate::wire::TcpFlags::ACK, 10_001, 0)
                .ackn(self.una)
                .window(4096)
                .sack(&block);
            self.h.inject(self.peer, self.us, ack);
            let _ = self.h.drain();
        }

        /// The records RACK looked at since the last call.
        fn rack_visits(&self) -> usize {
            let slot = self.h.ep.connections.get(&self.c).unwrap();
            slot.conn.snd.rack.take_visits()
        }
    }

    /// A receiver that keeps a hole open at SND.UNA and repeats, on every duplicate ACK, one
    /// SACK block over the rest of the flight has RACK walk that flight once when the block
    /// first SACKs it (and its detection pass once more), not again on each duplicate; a
    /// block past SND.MAX, which the scoreboard refuses, costs no walk. Both walked every
    /// segment in flight on every ACK: a few thousand duplicate ACKs a second held a core.
    #[cfg(feature = "testing")]
    #[test]
    fn repeated_wide_sack_blocks_walk_the_flight_once() {
        let mut f = LongFlight::new();
        let (una, max, flight) = (f.una, f.max, f.segments());
        f.rack_visits();
        // The first SACK walks what it SACKs, and RACK's detection pass then the
        // transmissions it delivered, once, to drop them; the same block again, nothing.
        f.sack(una + 100, max);
        let first = f.rack_visits();
        assert!(
            first >= flight - 1 && first <= 2 * flight + 4,
            "{first} of {flight}"
        );
        for _ in 0..100 {
            f.sack(una + 100, max);
            f.sack(una + 1, una + (1 << 30));
        }
        let repeated = f.rack_visits();
        assert!(
            repeated <= 10,
            "200 duplicate ACKs looked at {repeated} records"
        );
    }

    /// A receiver that keeps a hole open at SND.UNA and SACKs one more segment of a long
    /// flight on each ACK: every ACK delivers, so RACK's detection pass runs on each, and
    /// each pass looks at the hole and what arrived since the last, not at the whole flight
    /// sent before the newest delivery (which made the recovery quadratic in the flight:
    /// half of it a pass, on average).
    #[cfg(feature = "testing")]
    #[test]
    fn sacking_a_flight_a_segment_at_a_time_costs_each_ack_a_few_records() {
        let mut f = LongFlight::new();
        let (una, flight) = (f.una, f.segments());
        f.rack_visits();
        // Past RACK's reordering window, so that the hole is lost at the first SACK.
        f.h.advance(std::time::Duration::from_millis(50));
        for i in 1..flight {
            f.sack(una + 100, una + 100 * (i + 1));
        }
        let visits = f.rack_visits();
        let acks = flight - 1;
        assert!(visits < 8 * acks, "{acks} ACKs looked at {visits} records");
        let c = f.h.ep.connections.get(&f.c).unwrap();
        assert!(c.conn.recovery.recover.is_some(), "the hole was found lost");
    }
}
