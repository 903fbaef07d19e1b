//! Version-independent IP: the protocol number, a repr over both families, and [`parse`], the
//! entry point for a packet read from a TUN device.

use std::net::{IpAddr, SocketAddr};

use super::ipv4::{self, Ipv4Repr};
use super::ipv6::{self, Ipv6Repr};
use super::WireError;

// The protocol number lives in a leaf module that `ipv4`, `ipv6`, `checksum` and
// `fragment` import without importing this one, which imports them.
pub use super::protocol::IpProtocol;

/// The IP header of either family, as this stack emits it: no IPv4 options, no IPv6
/// extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpRepr {
    /// An IPv4 header.
    Ipv4(Ipv4Repr),
    /// An IPv6 header.
    Ipv6(Ipv6Repr),
}

impl IpRepr {
    /// A header for `payload_len` bytes of `protocol` from `src` to `dst`.
    ///
    /// `Err(Malformed)` if the families differ or the payload does not fit the family's length
    /// field (65,515 bytes for IPv4, 65,535 for IPv6; we send no jumbograms).
    pub fn new(
        src: IpAddr,
        dst: IpAddr,
        protocol: IpProtocol,
        payload_len: usize,
        hop_limit: u8,
    ) -> Result<IpRepr, WireError> {
        match (src, dst) {
            (IpAddr::V4(src_addr), IpAddr::V4(dst_addr)) => {
                if payload_len > usize::from(u16::MAX) - ipv4::HEADER_LEN {
                    return Err(WireError::Malformed);
                }
                Ok(IpRepr::Ipv4(Ipv4Repr {
                    src_addr,
                    dst_addr,
                    protocol,
                    payload_len,
                    hop_limit,
                }))
            }
            (IpAddr::V6(src_addr), IpAddr::V6(dst_addr)) => {
                if payload_len > usize::from(u16::MAX) {
                    return Err(WireError::Malformed);
                }
                Ok(IpRepr::Ipv6(Ipv6Repr {
                    src_addr,
                    dst_addr,
                    next_header: protocol,
                    payload_len,
                    hop_limit,
                }))
            }
            _ => Err(WireError::Malformed),
        }
    }

    /// The source address.
    pub fn src_addr(&self) -> IpAddr {
        match self {
            IpRepr::Ipv4(r) => IpAddr::V4(r.src_addr),
            IpRepr::Ipv6(r) => IpAddr::V6(r.src_addr),
        }
    }

    /// The destination address.
    pub fn dst_addr(&self) -> IpAddr {
        match self {
            IpRepr::Ipv4(r) => IpAddr::V4(r.dst_addr),
            IpRepr::Ipv6(r) => IpAddr::V6(r.dst_addr),
        }
    }

    /// The upper-layer protocol (for IPv6, after any extension headers).
    pub fn protocol(&self) -> IpProtocol {
        match self {
            IpRepr::Ipv4(r) => r.protocol,
            IpRepr::Ipv6(r) => r.next_header,
        }
    }

    /// The upper-layer payload length in bytes.
    pub fn payload_len(&self) -> usize {
        match self {
            IpRepr::Ipv4(r) => r.payload_len,
            IpRepr::Ipv6(r) => r.payload_len,
        }
    }

    /// The TTL (IPv4) or hop limit (IPv6).
    pub fn hop_limit(&self) -> u8 {
        match self {
            IpRepr::Ipv4(r) => r.hop_limit,
            IpRepr::Ipv6(r) => r.hop_limit,
        }
    }

    /// The emitted header length: 20 for IPv4, 40 for IPv6.
    pub fn header_len(&self) -> usize {
        match self {
            IpRepr::Ipv4(_) => ipv4::HEADER_LEN,
            IpRepr::Ipv6(_) => ipv6::HEADER_LEN,
        }
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len()
    }

    /// Writes the header (only) into `buf[..header_len()]`, IPv4 header checksum included.
    ///
    /// # Panics
    /// If `buf` is shorter than [`header_len`](Self::header_len).
    pub fn emit(&self, buf: &mut [u8]) {
        match self {
            IpRepr::Ipv4(r) => r.emit(buf),
            IpRepr::Ipv6(r) => r.emit(buf),
        }
    }

    /// [`emit`](Self::emit) with the fields a sender chooses (`marks`); the hop limit is the
    /// repr's own. An IPv6 header takes the DS byte only.
    ///
    /// # Panics
    /// If `buf` is shorter than [`header_len`](Self::header_len).
    pub fn emit_marked(&self, buf: &mut [u8], marks: IpMarks) {
        match self {
            IpRepr::Ipv4(r) => r.emit_marked(buf, marks.ds, marks.ident, marks.dont_frag),
            IpRepr::Ipv6(r) => r.emit_marked(buf, marks.ds),
        }
    }
}

/// The fields of an IP header its sender chooses, beyond the addresses, the protocol and the
/// lengths: what a connection marks its packets with (its `IP_TOS` and ECN, `IP_TTL`, and
/// the IPv4 identification and DF as Linux sets them), written with the header at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMarks {
    /// The DS byte (IPv4 TOS, IPv6 traffic class): DSCP and ECN.
    pub ds: u8,
    /// The IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    /// The IPv4 identification (no IPv6 header has one).
    pub ident: u16,
    /// The IPv4 Don't Fragment flag (IPv6 routers never fragment).
    pub dont_frag: bool,
}

/// The ECN field of an IP header (RFC 3168 §5): the low two bits of the IPv4 TOS byte and
/// of the IPv6 traffic class, beside the six bits of DSCP (RFC 2474 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ecn {
    /// `00`: the transport is not ECN-capable.
    #[default]
    NotEct,
    /// `01`: ECN-capable transport, ECT(1).
    Ect1,
    /// `10`: ECN-capable transport, ECT(0), the codepoint RFC 3168 senders use.
    Ect0,
    /// `11`: congestion experienced, set by a router instead of dropping.
    Ce,
}

impl Ecn {
    /// The ECN bits within a DS byte.
    pub const MASK: u8 = 0b11;

    /// The codepoint in the low two bits of a TOS or traffic-class byte.
    pub fn from_ds(ds: u8) -> Ecn {
        match ds & Self::MASK {
            0 => Ecn::NotEct,
            1 => Ecn::Ect1,
            2 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }

    /// The two bits of this codepoint.
    pub fn bits(self) -> u8 {
        match self {
            Ecn::NotEct => 0,
            Ecn::Ect1 => 1,
            Ecn::Ect0 => 2,
            Ecn::Ce => 3,
        }
    }
}

/// The DS byte (DSCP and ECN: the IPv4 TOS byte, the IPv6 traffic class) of a packet that
/// [`parse`] accepted; 0 for anything too short to have one.
pub fn ds_field(packet: &[u8]) -> u8 {
    match (packet.first().map(|b| b >> 4), packet.get(..2)) {
        (Some(4), Some(b)) => b[1],
        // Version, then the traffic class across the next two nibbles.
        (Some(6), Some(b)) => (b[0] << 4) | (b[1] >> 4),
        _ => 0,
    }
}

/// The flow label (RFC 6437) of an IPv6 packet; 0 (unlabelled) for IPv4 or anything too short.
pub fn flow_label(packet: &[u8]) -> u32 {
    if is_ipv6_header(packet) {
        ipv6::Packet::new_unchecked(packet).flow_label()
    } else {
        0
    }
}

/// Whether `packet` starts with a whole IPv6 fixed header.
fn is_ipv6_header(packet: &[u8]) -> bool {
    packet.len() >= ipv6::HEADER_LEN && packet[0] >> 4 == 6
}

/// Set the DS byte of a finished IP packet, keeping the IPv4 header checksum right (the test
/// kit marks a peer's packets with it; a sender marks its own as it writes their header,
/// [`IpRepr::emit_marked`]). A packet of another version is left alone.
pub fn set_ds_field(packet: &mut [u8], ds: u8) {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= ipv4::HEADER_LEN => {
            let mut p = ipv4::Packet::new_unchecked(&mut packet[..]);
            p.set_tos(ds);
            p.fill_checksum();
        }
        Some(6) if packet.len() >= ipv6::HEADER_LEN => {
            packet[0] = 0x60 | (ds >> 4);
            packet[1] = (packet[1] & 0x0f) | (ds << 4);
        }
        _ => {}
    }
}

/// Set the flow label (RFC 6437) of an IPv6 packet, leaving its traffic class as it is; an
/// IPv4 packet, or one too short for the header, is left alone. No checksum covers it.
pub fn set_flow_label(packet: &mut [u8], label: u32) {
    if is_ipv6_header(packet) {
        let mut p = ipv6::Packet::new_unchecked(&mut packet[..]);
        let traffic_class = p.traffic_class();
        p.set_ver_tc_flow(traffic_class, label);
    }
}

/// The 4-tuple and protocol of an IPv6 packet the stack built (no extension headers): its
/// source and destination socket addresses (ports 0 for a protocol without them) and next
/// header. `None` for anything else, a fragment among them (it was labelled as its whole
/// datagram before it was cut: see [`super::fragment::split`]).
pub fn ipv6_flow(packet: &[u8]) -> Option<(SocketAddr, SocketAddr, u8)> {
    if !is_ipv6_header(packet) {
        return None;
    }
    let p = ipv6::Packet::new_unchecked(packet);
    let protocol = p.next_header();
    if u8::from(protocol) == ipv6::ext::FRAGMENT {
        return None;
    }
    let ports = match protocol {
        IpProtocol::Tcp | IpProtocol::Udp if packet.len() >= ipv6::HEADER_LEN + 4 => {
            let at = ipv6::HEADER_LEN;
            (
                u16::from_be_bytes([packet[at], packet[at + 1]]),
                u16::from_be_bytes([packet[at + 2], packet[at + 3]]),
            )
        }
        _ => (0, 0),
    };
    Some((
        SocketAddr::new(IpAddr::V6(p.src_addr()), ports.0),
        SocketAddr::new(IpAddr::V6(p.dst_addr()), ports.1),
        u8::from(protocol),
    ))
}

/// Parses one IP packet as read from a TUN device.
///
/// Dispatches on the version nibble (neither 4 nor 6 is `Unsupported`), then validates the
/// family's header as [`Ipv4Repr::parse`] and [`Ipv6Repr::parse`] describe. Returns the repr,
/// whose protocol and payload length describe the upper-layer payload, and that payload.
/// Bytes past the header's total length (link padding) are ignored.
pub fn parse(packet: &[u8]) -> Result<(IpRepr, &[u8]), WireError> {
    let first = *packet.first().ok_or(WireError::Truncated)?;
    match first >> 4 {
        4 => Ipv4Repr::parse(packet).map(|(r, p)| (IpRepr::Ipv4(r), p)),
        6 => Ipv6Repr::parse(packet).map(|(r, p)| (IpRepr::Ipv6(r), p)),
        _ => Err(WireError::Unsupported),
    }
}

/// `packet` without the bytes past its IP header's length (link padding: an Ethernet
/// minimum frame's, say), as Linux's `ip_rcv_core` and `ipv6_rcv` trim it
/// (`pskb_trim_rcsum`) before anything reads it: an ICMP error then quotes the datagram,
/// not the padding. A packet too short for its length field, or for a header at all, is
/// left whole, for the parser to refuse.
pub fn trim_padding(packet: &[u8]) -> &[u8] {
    let declared = match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 4 => usize::from(u16::from_be_bytes([packet[2], packet[3]])),
        Some(6) if packet.len() >= super::ipv6::HEADER_LEN => {
            super::ipv6::HEADER_LEN + usize::from(u16::from_be_bytes([packet[4], packet[5]]))
        }
        _ => return packet,
    };
    &packet[..declared.min(packet.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn padding_past_the_ip_length_is_trimmed() {
        for (src, dst) in [
            (
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            ),
            (
                IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2)),
            ),
        ] {
            let ip = IpRepr::new(src, dst, IpProtocol::Udp, 9, 64).unwrap();
            let mut packet = vec![0u8; ip.buffer_len()];
            ip.emit(&mut packet);
            let len = packet.len();
            packet.extend_from_slice(&[0xee; 17]);
            assert_eq!(trim_padding(&packet).len(), len);
            assert_eq!(
                trim_padding(&packet[..len - 1]).len(),
                len - 1,
                "short: whole"
            );
        }
        assert_eq!(trim_padding(&[0x45, 0]), &[0x45, 0]);
        assert!(trim_padding(&[]).is_empty());
    }

    #[test]
    fn protocol_numbers_round_trip() {
        for n in 0..=255u8 {
            assert_eq!(u8::from(IpProtocol::from(n)), n);
        }
        assert_eq!(IpProtocol::from(6), IpProtocol::Tcp);
        assert_eq!(IpProtocol::from(58), IpProtocol::Icmpv6);
        assert_eq!(IpProtocol::from(132), IpProtocol::Unknown(132));
    }

    #[test]
    fn new_refuses_mixed_families_and_oversize() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            IpRepr::new(v4, v6, IpProtocol::Tcp, 0, 64),
            Err(WireError::Malformed)
        );
        assert_eq!(
            IpRepr::new(v4, v4, IpProtocol::Tcp, 65_516, 64),
            Err(WireError::Malformed)
        );
        assert!(IpRepr::new(v4, v4, IpProtocol::Tcp, 65_515, 64).is_ok());
        assert!(IpRepr::new(v6, v6, IpProtocol::Tcp, 65_535, 64).is_ok());
        assert_eq!(
            IpRepr::new(v6, v6, IpProtocol::Tcp, 65_536, 64),
            Err(WireError::Malformed)
        );
    }

    #[test]
    fn accessors_and_lengths() {
        let a = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let r = IpRepr::new(a, b, IpProtocol::Tcp, 100, 64).unwrap();
        assert_eq!((r.src_addr(), r.dst_addr()), (a, b));
        assert_eq!(r.protocol(), IpProtocol::Tcp);
        assert_eq!(
            (r.header_len(), r.payload_len(), r.buffer_len()),
            (20, 100, 120)
        );
        assert_eq!(r.hop_limit(), 64);

        let a6 = IpAddr::V6("2001:2::1".parse().unwrap());
        let b6 = IpAddr::V6("2001:2::2".parse().unwrap());
        let r6 = IpRepr::new(a6, b6, IpProtocol::Icmpv6, 8, 255).unwrap();
        assert_eq!((r6.header_len(), r6.buffer_len()), (40, 48));
        assert_eq!(r6.protocol(), IpProtocol::Icmpv6);
    }

    #[test]
    fn emit_then_parse_both_families() {
        for (src, dst) in [
            (
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            ),
            (
                IpAddr::V6("2001:2::1".parse().unwrap()),
                IpAddr::V6("2001:2::2".parse().unwrap()),
            ),
        ] {
            let r = IpRepr::new(src, dst, IpProtocol::Udp, 5, 17).unwrap();
            let mut buf = vec![0u8; r.buffer_len() + 3];
            r.emit(&mut buf);
            buf[r.header_len()..r.buffer_len()].copy_from_slice(b"hello");
            let (parsed, payload) = parse(&buf).unwrap();
            assert_eq!(parsed, r);
            assert_eq!(payload, b"hello", "trailing padding is ignored");
        }
    }

    #[test]
    fn ds_field_round_trips_both_families() {
        for (src, dst) in [
            (
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)),
            ),
            (
                IpAddr::V6("2001:2::1".parse().unwrap()),
                IpAddr::V6("2001:2::2".parse().unwrap()),
            ),
        ] {
            let r = IpRepr::new(src, dst, IpProtocol::Tcp, 0, 64).unwrap();
            let mut buf = vec![0u8; r.buffer_len()];
            r.emit(&mut buf);
            assert_eq!(ds_field(&buf), 0);
            set_ds_field(&mut buf, 0xb8 | Ecn::Ect0.bits());
            let (parsed, _) = parse(&buf).expect("still valid, checksum included");
            assert_eq!(parsed, r);
            assert_eq!(ds_field(&buf), 0xba);
            assert_eq!(Ecn::from_ds(ds_field(&buf)), Ecn::Ect0);
        }
        assert_eq!(ds_field(&[]), 0);
        for e in [Ecn::NotEct, Ecn::Ect1, Ecn::Ect0, Ecn::Ce] {
            assert_eq!(Ecn::from_ds(0xfc | e.bits()), e);
        }
    }

    #[test]
    fn version_dispatch() {
        assert_eq!(parse(&[]), Err(WireError::Truncated));
        assert_eq!(parse(&[0x55; 40]), Err(WireError::Unsupported));
        assert_eq!(parse(&[0x00; 40]), Err(WireError::Unsupported));
        assert_eq!(parse(&[0x45]), Err(WireError::Truncated));
        assert_eq!(parse(&[0x60; 39]), Err(WireError::Truncated));
    }
}
