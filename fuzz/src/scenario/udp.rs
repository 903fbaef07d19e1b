//! The endpoint scenario's UDP ops: sockets bound, connected, used and closed by the
//! application, multicast groups joined, left and sent to, and datagrams from the peer (to
//! bound ports, closed ones, foreign addresses and groups; with good, zero or wrong
//! checksums and lying length fields).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use synack_core::wire::{IpProtocol, IpRepr, UdpRepr};
use synack_core::UdpHandle;

use super::{Harness, FOREIGN, FOREIGN6, MAX_APP_IO, MAX_PAYLOAD, PEER, PEER6, US, US6};

/// A UDP op.
#[derive(Debug, Arbitrary)]
pub enum UdpOp {
    /// `udp_bind`: `at` 0 an own address, 1 the unspecified one, 2 a foreign one (refused
    /// unless intercepting), 3 a multicast group (`port` picks it); port 0 ephemeral.
    Bind {
        /// IPv6 rather than IPv4.
        v6: bool,
        /// Where.
        at: u8,
        /// The port (small, so that binds collide).
        port: u8,
    },
    /// `udp_connect` a socket (modulo how many; one past the end is stale) to the peer.
    Connect {
        /// Which socket.
        sock: u8,
        /// The peer's port (0 is invalid).
        port: u16,
    },
    /// `udp_send_to` the peer (or a group), or `udp_send` when `port` is 0.
    Send {
        /// Which socket.
        sock: u8,
        /// The peer's port; 0: the connected peer.
        port: u16,
        /// To this multicast group (see `group`) at `port` rather than to the peer.
        group: Option<u8>,
        /// Payload bytes (past the MTU: MessageTooLong).
        len: u16,
    },
    /// `udp_recv_from` into a buffer of this size.
    Recv {
        /// Which socket.
        sock: u8,
        /// Buffer size.
        len: u16,
    },
    /// `udp_close`.
    Close(u8),
    /// A multicast option on a socket: `op` 0 joins `group`, 1 leaves it, 2 sets the loop
    /// (on for an even `group`), 3 sets the multicast hops to `group`.
    Multicast {
        /// Which socket.
        sock: u8,
        /// Which group (see `group`), or the option's value.
        group: u8,
        /// What to do.
        op: u8,
    },
    /// A datagram from the peer.
    In(UdpInput),
    /// Read one datagram from the catch-all queue and, if `reply`, answer it from its
    /// original destination with `udp_send_from`.
    Intercepted {
        /// Buffer size.
        len: u16,
        /// Answer it.
        reply: bool,
    },
}

/// A UDP datagram from the peer.
#[derive(Debug, Arbitrary)]
pub struct UdpInput {
    /// IPv6 rather than IPv4.
    v6: bool,
    /// 0: to a bound socket's port (`sock` picks it), 1: a port nothing binds, 2: a foreign
    /// address (the catch-all in intercept mode), 3: a multicast group (`sock` picks it) at
    /// a bound socket's port.
    to: u8,
    /// Which socket.
    sock: u8,
    /// The peer's port.
    from_port: u16,
    /// 0: a good checksum, 1: zero, 2: wrong.
    checksum: u8,
    /// Added to the UDP length field: a lie (`Some(0)` is the truth).
    length_lie: Option<i8>,
    /// Payload bytes (cut to 4096).
    len: u16,
    /// Sent in IP fragments, as the input says.
    fragments: Option<FragmentInput>,
}

/// How a datagram goes in fragments (`wire::fragment::split`), and how the pieces arrive.
#[derive(Debug, Arbitrary)]
pub struct FragmentInput {
    /// The MTU it is cut at: 68 plus this, modulo 1,500 (a datagram that fits goes whole).
    mtu: u16,
    /// The identification.
    ident: u32,
    /// The pieces arrive rotated by this many.
    rotate: u8,
    /// This piece (modulo their number) arrives twice.
    repeat: Option<u8>,
    /// This piece never arrives (the datagram waits for its timeout).
    lose: Option<u8>,
    /// This piece arrives with its offset moved by this many 8-byte units (an overlap or a
    /// hole; the IPv4 header checksum is fixed, IPv6 has none).
    shift: Option<(u8, i8)>,
}

impl Harness {
    /// Runs one of the UDP ops.
    pub(super) fn udp_op(&mut self, op: &UdpOp) {
        match op {
            UdpOp::Bind { v6, at, port } => {
                let ip = match (at % 4, v6) {
                    (0, false) => US,
                    (0, true) => US6,
                    (1, false) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                    (1, true) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                    (2, false) => FOREIGN,
                    (2, true) => FOREIGN6,
                    (_, v6) => group(*v6, *port),
                };
                let port = if *port == 0 {
                    0
                } else {
                    5000 + u16::from(port % 8)
                };
                if let Ok(h) = self.script.ep.udp_bind(SocketAddr::new(ip, port)) {
                    if self.udp.len() >= 16 {
                        self.udp.pop_front();
                    }
                    self.udp.push_back(h);
                }
            }
            UdpOp::Connect { sock, port } => {
                let h = self.udp_handle(*sock);
                let v6 = self.script.ep.udp_local_addr(h).is_ok_and(|a| a.is_ipv6());
                let ip = if v6 { PEER6 } else { PEER };
                let _ = self.script.ep.udp_connect(h, SocketAddr::new(ip, *port));
            }
            UdpOp::Send {
                sock,
                port,
                group: to_group,
                len,
            } => {
                let h = self.udp_handle(*sock);
                let len = usize::from(*len).min(MAX_APP_IO);
                let data = &self.data[..len];
                let sent = if *port == 0 {
                    self.script.ep.udp_send(h, data)
                } else {
                    let v6 = self.script.ep.udp_local_addr(h).is_ok_and(|a| a.is_ipv6());
                    let ip = match to_group {
                        Some(g) => group(v6, *g),
                        None if v6 => PEER6,
                        None => PEER,
                    };
                    self.script
                        .ep
                        .udp_send_to(h, SocketAddr::new(ip, *port), data)
                };
                if let Ok(n) = sent {
                    assert_eq!(n, len, "a datagram is sent whole or not at all");
                }
            }
            UdpOp::Recv { sock, len } => {
                let h = self.udp_handle(*sock);
                let mut buf = vec![0u8; usize::from(*len)];
                if let Ok((n, _)) = self.script.ep.udp_recv_from(h, &mut buf) {
                    assert!(
                        n <= buf.len(),
                        "udp_recv_from returned {n} into {}",
                        buf.len()
                    );
                }
            }
            UdpOp::Close(i) => {
                let _ = self.script.ep.udp_close(self.udp_handle(*i));
            }
            UdpOp::Multicast { sock, group: g, op } => {
                let h = self.udp_handle(*sock);
                let v6 = self.script.ep.udp_local_addr(h).is_ok_and(|a| a.is_ipv6());
                let ep = &mut self.script.ep;
                let _ = match op % 4 {
                    0 => ep.udp_join_multicast(h, group(v6, *g)),
                    1 => ep.udp_leave_multicast(h, group(v6, *g)),
                    2 => ep.udp_set_multicast_loop(h, v6, g % 2 == 0),
                    _ => ep.udp_set_multicast_hops(h, v6, *g),
                };
                if let Ok(groups) = ep.udp_multicast_groups(h) {
                    assert!(groups.len() <= 2 * synack_core::endpoint::MAX_MEMBERSHIPS);
                }
            }
            UdpOp::In(u) => {
                let p = self.udp_datagram(u);
                match &u.fragments {
                    None => self.inject(&p),
                    Some(f) => {
                        for piece in fragments(&p, f) {
                            self.inject(&piece);
                        }
                    }
                }
            }
            UdpOp::Intercepted { len, reply } => {
                let mut buf = vec![0u8; usize::from(*len)];
                if let Ok(d) = self.script.ep.udp_recv_intercepted(&mut buf) {
                    assert!(d.len <= buf.len());
                    if *reply {
                        let _ = self.script.ep.udp_send_from(d.dst, d.src, &buf[..d.len]);
                    }
                }
            }
        }
    }

    /// UDP socket `i` modulo the count; one past the end names none.
    fn udp_handle(&self, i: u8) -> UdpHandle {
        let i = usize::from(i) % (self.udp.len() + 1);
        self.udp.get(i).copied().unwrap_or(UdpHandle(0))
    }

    /// The peer's datagram, with the checksum and length field as the input asks.
    fn udp_datagram(&self, u: &UdpInput) -> Vec<u8> {
        let (src, us, foreign) = if u.v6 {
            (PEER6, US6, FOREIGN6)
        } else {
            (PEER, US, FOREIGN)
        };
        let bound = self
            .script
            .ep
            .udp_local_addr(self.udp_handle(u.sock))
            .ok()
            .filter(|a| a.is_ipv6() == u.v6);
        let dst = match (u.to % 4, bound) {
            (0, Some(a)) if a.ip().is_unspecified() || a.ip().is_multicast() => {
                SocketAddr::new(us, a.port())
            }
            (0, Some(a)) => a,
            (2, _) => SocketAddr::new(foreign, 53),
            (3, Some(a)) => SocketAddr::new(group(u.v6, u.sock), a.port()),
            _ => SocketAddr::new(us, 9),
        };
        let payload = &self.data[..usize::from(u.len).min(MAX_PAYLOAD)];
        let repr = UdpRepr {
            src_port: u.from_port,
            dst_port: dst.port(),
            payload,
        };
        let ip = IpRepr::new(src, dst.ip(), IpProtocol::Udp, repr.buffer_len(), 64)
            .expect("a small datagram");
        let hl = ip.header_len();
        let mut p = vec![0u8; ip.buffer_len()];
        ip.emit(&mut p);
        repr.emit(&mut p[hl..], src, dst.ip());
        match u.checksum % 3 {
            1 => p[hl + 6..hl + 8].fill(0),
            2 => p[hl + 6] ^= 0x5a,
            _ => {}
        }
        if let Some(lie) = u.length_lie {
            let len = (repr.buffer_len() as u16).wrapping_add_signed(i16::from(lie));
            p[hl + 4..hl + 6].copy_from_slice(&len.to_be_bytes());
        }
        p
    }
}

/// Multicast group `i` of a set of three per family, so that joins, sends and datagrams
/// meet; one index in four names an own unicast address instead (a join refused).
fn group(v6: bool, i: u8) -> IpAddr {
    match (i % 4, v6) {
        (3, false) => US,
        (3, true) => US6,
        (i, false) => IpAddr::V4(std::net::Ipv4Addr::new(239, 0, 0, i)),
        (i, true) => IpAddr::V6(Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 0, u16::from(i))),
    }
}

/// `packet` cut and mangled as `f` says, in the order it arrives.
fn fragments(packet: &[u8], f: &FragmentInput) -> Vec<Vec<u8>> {
    use synack_core::wire::{fragment, ipv4};
    let mtu = 68 + usize::from(f.mtu) % 1500;
    let Some(mut pieces) = fragment::split(packet, mtu, f.ident) else {
        return vec![packet.to_vec()];
    };
    let n = pieces.len();
    if let Some((i, by)) = f.shift {
        let piece = &mut pieces[usize::from(i) % n];
        let v4 = piece[0] >> 4 == 4;
        // The 13-bit offset in 8-byte units: IPv4's bytes 6-7, IPv6's Fragment header's 2-3.
        let at = if v4 { 6 } else { 42 };
        let word = u16::from_be_bytes([piece[at], piece[at + 1]]);
        let (units, rest) = if v4 {
            (word & 0x1fff, word & !0x1fff)
        } else {
            (word >> 3, word & 7)
        };
        let units = units.wrapping_add_signed(i16::from(by)) & 0x1fff;
        let word = if v4 {
            rest | units
        } else {
            (units << 3) | rest
        };
        piece[at..at + 2].copy_from_slice(&word.to_be_bytes());
        if v4 {
            ipv4::Packet::new_unchecked(&mut piece[..]).fill_checksum();
        }
    }
    if let Some(i) = f.repeat {
        let again = pieces[usize::from(i) % n].clone();
        pieces.push(again);
    }
    if let Some(i) = f.lose {
        pieces.remove(usize::from(i) % n);
    }
    let len = pieces.len();
    if len > 0 {
        pieces.rotate_left(usize::from(f.rotate) % len);
    }
    pieces
}
