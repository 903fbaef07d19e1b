//! IPv6 headers (RFC 8200) and the extension-header walk of RFC 8200 §4.

use std::net::Ipv6Addr;

use super::protocol::IpProtocol;
use super::WireError;

/// The length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;

/// Field offsets, RFC 8200 §3.
mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

/// Next-header values for the extension headers (IANA "IPv6 Extension Header Types").
pub(crate) mod ext {
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AUTH: u8 = 51;
    pub const NO_NEXT_HEADER: u8 = 59;
    pub const DEST_OPTS: u8 = 60;
    pub const MOBILITY: u8 = 135;
    pub const HIP: u8 = 139;
    pub const SHIM6: u8 = 140;
    pub const EXPERIMENT_1: u8 = 253;
    pub const EXPERIMENT_2: u8 = 254;
}

/// More extension headers than any sane packet carries. Each one is at least 8 bytes, so the
/// walk is bounded by the packet length anyway; this bounds it by a constant as well.
const MAX_EXT_HEADERS: usize = 8;

/// A zero-copy view of an IPv6 header and its payload.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking anything; getters may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the buffer holds the fixed header and the payload length it claims.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + usize::from(self.payload_len()) > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn ver_tc_flow(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The version field (6 for IPv6).
    pub fn version(&self) -> u8 {
        (self.ver_tc_flow() >> 28) as u8
    }

    /// The traffic class (DSCP + ECN).
    pub fn traffic_class(&self) -> u8 {
        (self.ver_tc_flow() >> 20) as u8
    }

    /// The 20-bit flow label.
    pub fn flow_label(&self) -> u32 {
        self.ver_tc_flow() & 0x000f_ffff
    }

    /// The payload length field: everything after the fixed header, extension headers
    /// included.
    pub fn payload_len(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    /// The next-header field of the fixed header.
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::NXT_HDR])
    }

    /// The hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv6Addr {
        read_addr(&self.buffer.as_ref()[field::SRC_ADDR])
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv6Addr {
        read_addr(&self.buffer.as_ref()[field::DST_ADDR])
    }

    /// The payload (extension headers included), up to the payload length. Call `check_len`
    /// first.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets version 6, the traffic class and the flow label in one go.
    pub fn set_ver_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let v = (6u32 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        self.buffer.as_mut()[field::VER_TC_FLOW].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the payload length field.
    pub fn set_payload_len(&mut self, value: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next-header field.
    pub fn set_next_header(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::NXT_HDR] = value.into();
    }

    /// Sets the hop limit.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = value;
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv6Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }
}

/// A validated IPv6 header. `next_header` and `payload_len` describe the upper-layer
/// protocol after any extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src_addr: Ipv6Addr,
    /// Destination address.
    pub dst_addr: Ipv6Addr,
    /// The upper-layer protocol.
    pub next_header: IpProtocol,
    /// The upper-layer payload length in bytes.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
}

impl Ipv6Repr {
    /// Parses an IPv6 packet: version 6, payload length within the buffer (trailing bytes
    /// ignored), then the extension-header walk of [`skip_ext_headers`]. Returns the repr and
    /// the upper-layer payload.
    pub fn parse(buf: &[u8]) -> Result<(Ipv6Repr, &[u8]), WireError> {
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let packet = Packet::new_unchecked(buf);
        if packet.version() != 6 {
            return Err(WireError::Unsupported);
        }
        packet.check_len()?;
        let payload = &buf[HEADER_LEN..HEADER_LEN + usize::from(packet.payload_len())];
        let (protocol, offset) = skip_ext_headers(u8::from(packet.next_header()), payload)?;
        let upper = &payload[offset..];
        let repr = Ipv6Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: protocol,
            payload_len: upper.len(),
            hop_limit: packet.hop_limit(),
        };
        Ok((repr, upper))
    }

    /// The header length this repr emits (no extension headers).
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes the 40-byte fixed header into `buf[..40]`, with traffic class and flow label 0.
    ///
    /// # Panics
    /// If `buf` is shorter than 40 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        self.emit_marked(buf, 0);
    }

    /// [`emit`](Self::emit) with the traffic class given (DSCP and ECN).
    ///
    /// # Panics
    /// If `buf` is shorter than 40 bytes.
    pub fn emit_marked(&self, buf: &mut [u8], traffic_class: u8) {
        let mut packet = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        // RFC 6437 §3: a flow label of zero is always allowed ("unlabelled").
        packet.set_ver_tc_flow(traffic_class, 0);
        packet.set_payload_len(u16::try_from(self.payload_len).unwrap_or(u16::MAX));
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// The most options other than padding one Hop-by-Hop or Destination Options header may
/// carry: Linux's `max_hbh_opts_cnt` and `max_dst_opts_cnt` defaults, past which
/// `ip6_parse_tlv` drops the packet (a cheap way to make a host walk a long list).
const MAX_OPTIONS: usize = 8;

/// Routing Type 3: RPL's Source Routing Header (RFC 6554).
const ROUTING_RPL: u8 = 3;
/// Routing Type 4: the Segment Routing Header (RFC 8754).
const ROUTING_SEGMENT: u8 = 4;

/// Walks the extension headers that start `payload` (whose first header type is
/// `next_header`) and returns the upper-layer protocol and its offset in `payload`.
///
/// RFC 8200 §4 rules, as an end host that does not forward:
/// - Hop-by-Hop Options only directly after the fixed header (§4.1); elsewhere `Malformed`.
/// - Hop-by-Hop and Destination Options: options walked by §4.2; an unrecognised option whose
///   action bits say "discard" is `Unsupported`.
/// - Routing with Segments Left 0 is skipped (§4.4: "the node must ignore the Routing header
///   and proceed to process the next header"); otherwise we would have to forward:
///   `Unsupported`. RPL's and Segment Routing's are `Unsupported` either way, as Linux drops
///   them where they are not enabled.
/// - Fragment: `Fragment` (a piece to reassemble, see [`super::fragment`]), but for an
///   atomic fragment (RFC 6946), which is skipped as the whole packet it is.
/// - No Next Header, ESP, AH and the other extension-header numbers: `Unsupported`.
/// - Anything else is an upper-layer protocol and ends the walk.
///
/// The walk stops with `Unsupported` after eight extension headers.
pub fn skip_ext_headers(next_header: u8, payload: &[u8]) -> Result<(IpProtocol, usize), WireError> {
    walk(next_header, payload, false)
}

/// The walk behind [`skip_ext_headers`]. With `lenient` (for the quoted packet in an ICMP
/// error), option contents are not judged.
pub(crate) fn walk(
    next_header: u8,
    payload: &[u8],
    lenient: bool,
) -> Result<(IpProtocol, usize), WireError> {
    match walk_to(next_header, payload, lenient)? {
        Walked::Upper(protocol, offset) => Ok((protocol, offset)),
        Walked::Fragment { .. } => Err(WireError::Fragment),
    }
}

/// Where an extension-header walk ended.
pub(crate) enum Walked {
    /// At the upper-layer header: its protocol, and its offset in the payload.
    Upper(IpProtocol, usize),
    /// At a Fragment header that is not an atomic fragment's: its offset in the payload, and
    /// that of the header naming it (`None`: the fixed header's Next Header field).
    Fragment { at: usize, named_by: Option<usize> },
}

/// [`walk`], telling where a (non-atomic) Fragment header is instead of refusing it: what
/// reassembly needs (see [`super::fragment`]).
pub(crate) fn walk_to(
    mut next_header: u8,
    payload: &[u8],
    lenient: bool,
) -> Result<Walked, WireError> {
    let mut offset = 0usize;
    let mut named_by = None;
    for index in 0..=MAX_EXT_HEADERS {
        match next_header {
            ext::HOP_BY_HOP | ext::DEST_OPTS | ext::ROUTING => {
                if index == MAX_EXT_HEADERS {
                    return Err(WireError::Unsupported);
                }
                // RFC 8200 §4.1: Hop-by-Hop "must immediately follow the IPv6 header".
                if next_header == ext::HOP_BY_HOP && index != 0 {
                    return Err(WireError::Malformed);
                }
                let rest = &payload[offset..];
                if rest.len() < 8 {
                    return Err(WireError::Truncated);
                }
                // RFC 8200 §4.3/§4.4/§4.6: Hdr Ext Len counts 8-octet units past the first 8.
                let len = (usize::from(rest[1]) + 1) * 8;
                if len > rest.len() {
                    return Err(WireError::Truncated);
                }
                let header = &rest[..len];
                if next_header == ext::ROUTING {
                    // RFC 8200 §4.4: Segments Left is the fourth byte. RPL's (RFC 6554) and
                    // Segment Routing's (RFC 8754) headers go to their own handlers in Linux,
                    // which drop them, whatever is left, where they are not enabled (the
                    // default: `seg6_enabled`, `rpl_seg_enabled` 0).
                    if header[3] != 0
                        || (!lenient && matches!(header[2], ROUTING_RPL | ROUTING_SEGMENT))
                    {
                        return Err(WireError::Unsupported);
                    }
                } else if !lenient {
                    check_options(&header[2..])?;
                }
                next_header = header[0];
                named_by = Some(offset);
                offset += len;
            }
            ext::FRAGMENT => {
                // RFC 8200 §4.5: Next Header, reserved, then the offset (13 bits), two
                // reserved bits and M. An atomic fragment, offset 0 and M clear, is a whole
                // packet with a Fragment header (RFC 6946 §4: "MUST process that packet in
                // isolation", as Linux's ipv6_frag_rcv does); any other is a fragment.
                let rest = &payload[offset..];
                if rest.len() < 8 {
                    return Err(WireError::Truncated);
                }
                let offset_and_more = u16::from_be_bytes([rest[2], rest[3]]);
                if offset_and_more & 0xfff9 != 0 {
                    return Ok(Walked::Fragment {
                        at: offset,
                        named_by,
                    });
                }
                next_header = rest[0];
                named_by = Some(offset);
                offset += 8;
            }
            ext::ESP
            | ext::AUTH
            | ext::NO_NEXT_HEADER
            | ext::MOBILITY
            | ext::HIP
            | ext::SHIM6
            | ext::EXPERIMENT_1
            | ext::EXPERIMENT_2 => return Err(WireError::Unsupported),
            upper => return Ok(Walked::Upper(IpProtocol::from(upper), offset)),
        }
    }
    Err(WireError::Unsupported)
}

/// What RFC 8200 has a host answer with an ICMPv6 Parameter Problem (RFC 4443 §3.4) for
/// `packet` (from its IPv6 header), which [`skip_ext_headers`] refused or which ends at an
/// upper-layer protocol for which `handled` is false: `(code, pointer)`, the pointer an offset
/// into `packet`. `None` where the packet is to be dropped in silence (truncated, a
/// non-first fragment, No Next Header, an option whose action is plain "discard" or whose
/// length runs past its header, padding past its bound or too many options before any
/// option that would be answered, too many headers), and where the packet is itself an
/// ICMPv6 error (RFC 4443 §2.4 (e.1), Linux's `is_ineligible`).
///
/// - An unrecognised option whose type's high bits are 10, or 11 with a unicast destination
///   (§4.2): code 2, at the option's type.
/// - A Routing header with Segments Left above 0, which a host does not forward (§4.4):
///   code 0, at its Routing Type; but for RPL (3) and Segment Routing (4), which Linux drops
///   in silence, whatever is left, when, as by default, it does not take them.
/// - Hop-by-Hop anywhere but first (§4.1), an extension header synack does not process, or
///   an upper-layer protocol it does not handle (§4: "discard the packet and send an ICMP
///   Parameter Problem message ... with an ICMP Code value of 1"): code 1, at the Next Header
///   field that names it, as Linux's `ip6_input_finish` points.
pub fn parameter_problem(packet: &[u8], handled: impl Fn(u8) -> bool) -> Option<(u8, u32)> {
    if packet.len() < HEADER_LEN || packet[0] >> 4 != 6 {
        return None;
    }
    let payload_len = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
    let end = (HEADER_LEN + payload_len).min(packet.len());
    let found = problem_in(packet, end, handled)?;
    (!carries_icmpv6_error(packet, end)).then_some(found)
}

/// [`parameter_problem`]'s walk, in `packet[..end]`.
fn problem_in(packet: &[u8], end: usize, handled: impl Fn(u8) -> bool) -> Option<(u8, u32)> {
    let multicast_dst = packet[24] == 0xff;
    let mut next_header = packet[6];
    let mut named_at = 6usize;
    let mut offset = HEADER_LEN;
    let at = |p: usize| u32::try_from(p).ok();
    for index in 0..=MAX_EXT_HEADERS {
        match next_header {
            ext::HOP_BY_HOP if index != 0 => return Some((1, at(named_at)?)),
            ext::HOP_BY_HOP | ext::DEST_OPTS | ext::ROUTING => {
                if index == MAX_EXT_HEADERS || offset + 8 > end {
                    return None;
                }
                let len = (usize::from(packet[offset + 1]) + 1) * 8;
                let header_end = offset + len;
                if header_end > end {
                    return None;
                }
                if next_header == ext::ROUTING {
                    let routing_type = packet[offset + 2];
                    if matches!(routing_type, ROUTING_RPL | ROUTING_SEGMENT) {
                        return None;
                    }
                    if packet[offset + 3] != 0 {
                        return Some((0, at(offset + 2)?));
                    }
                } else {
                    // Options walked as the parser walks them (Linux's `ip6_parse_tlv`): a
                    // malformed list (a length past the header, padding past its bound, too
                    // many options) is dropped in silence, and the first unrecognised option
                    // whose action says so is answered.
                    match walk_options(&packet[offset + 2..header_end]) {
                        Ok(()) => {}
                        Err((WireError::Unsupported, o)) => {
                            let o = offset + 2 + o;
                            match packet[o] >> 6 {
                                1 => return None,
                                3 if multicast_dst => return None,
                                _ => return Some((2, at(o)?)),
                            }
                        }
                        Err(_) => return None,
                    }
                }
                next_header = packet[offset];
                named_at = offset;
                offset = header_end;
            }
            ext::FRAGMENT => {
                // An atomic fragment (RFC 6946) is the whole packet: on past it. Any other is
                // reassembly's. Atomic as `walk_to` judges it, reserved bits ignored: the
                // two disagreed, and an atomic fragment with a reserved bit set in front of an
                // unknown header was dropped unanswered.
                if offset + 8 > end
                    || u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]) & 0xfff9 != 0
                {
                    return None;
                }
                next_header = packet[offset];
                named_at = offset;
                offset += 8;
            }
            ext::NO_NEXT_HEADER => return None,
            upper if handled(upper) => return None,
            _ => return Some((1, at(named_at)?)),
        }
    }
    None
}

/// Whether `packet[..end]` carries an ICMPv6 error message (or an ICMPv6 message whose type
/// cannot be read), behind whatever extension headers: one that no ICMPv6 error may answer
/// (RFC 4443 §2.4 (e.1)), as Linux's `is_ineligible` skips the headers by their lengths
/// alone to see.
fn carries_icmpv6_error(packet: &[u8], end: usize) -> bool {
    const ICMPV6: u8 = 58;
    let mut next_header = packet[6];
    let mut offset = HEADER_LEN;
    let mut fragment_offset = 0u16;
    for _ in 0..=MAX_EXT_HEADERS {
        match next_header {
            ext::HOP_BY_HOP | ext::DEST_OPTS | ext::ROUTING | ext::FRAGMENT => {
                if offset + 8 > end {
                    return false;
                }
                if next_header == ext::FRAGMENT {
                    fragment_offset =
                        u16::from_be_bytes([packet[offset + 2], packet[offset + 3]]) & !7;
                    next_header = packet[offset];
                    offset += 8;
                } else {
                    next_header = packet[offset];
                    offset += (usize::from(packet[offset + 1]) + 1) * 8;
                }
            }
            ICMPV6 => {
                return match packet.get(offset).filter(|_| offset < end) {
                    // Informational messages are 128 and up (RFC 4443 §2.1).
                    Some(&kind) => kind < 128,
                    None => fragment_offset == 0,
                };
            }
            _ => return false,
        }
    }
    false
}

/// Walks the TLV-encoded options of a Hop-by-Hop or Destination Options header (RFC 8200
/// §4.2).
fn check_options(options: &[u8]) -> Result<(), WireError> {
    walk_options(options).map_err(|(e, _)| e)
}

/// [`check_options`], with the offset in `options` of the option it stopped at. In order, as
/// Linux's `ip6_parse_tlv`: a length past the header is `Malformed`; padding is there to
/// align what follows to 8 octets, so a run of Pad1 and PadN longer than 7 octets, or PadN
/// carrying anything but zeros (a covert channel, RFC 4942 §2.1.9.5), is `Malformed`, and so
/// are more than [`MAX_OPTIONS`] other options; an unrecognised option whose action bits say
/// "discard" is `Unsupported`.
fn walk_options(options: &[u8]) -> Result<(), (WireError, usize)> {
    let (mut at, mut padding, mut count) = (0, 0, 0);
    while let Some(&kind) = options.get(at) {
        let malformed = (WireError::Malformed, at);
        // Pad1 is the one option without a length byte.
        if kind == 0 {
            padding += 1;
            if padding > 7 {
                return Err(malformed);
            }
            at += 1;
            continue;
        }
        let len = *options.get(at + 1).ok_or(malformed)?;
        let end = at + 2 + usize::from(len);
        if end > options.len() {
            return Err(malformed);
        }
        if kind == 1 {
            padding += end - at;
            if padding > 7 || options[at + 2..end].iter().any(|&b| b != 0) {
                return Err(malformed);
            }
        } else {
            padding = 0;
            count += 1;
            if count > MAX_OPTIONS {
                return Err(malformed);
            }
        }
        // PadN (1) and Router Alert (5) are understood. For anything else, RFC 8200 §4.2: the
        // two high-order bits of the type say what to do if it is unrecognised; 00 is "skip
        // over this option", every other value begins with "discard the packet".
        if kind != 1 && kind != 5 && kind >> 6 != 0 {
            return Err((WireError::Unsupported, at));
        }
        at = end;
    }
    Ok(())
}

fn read_addr(b: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(b);
    Ipv6Addr::from(octets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + payload.len()];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_ver_tc_flow(0, 0x12345);
        p.set_payload_len(payload.len() as u16);
        p.set_next_header(IpProtocol::from(next_header));
        p.set_hop_limit(64);
        p.set_src_addr("2001:2::1".parse().unwrap());
        p.set_dst_addr("2001:2::2".parse().unwrap());
        buf[HEADER_LEN..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn view_getters() {
        let buf = packet(6, &[0; 20]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 20);
        assert_eq!(p.next_header(), IpProtocol::Tcp);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), "2001:2::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.payload().len(), 20);
    }

    #[test]
    fn hop_by_hop_and_dest_opts_are_skipped() {
        // HBH (PadN of 4) -> DestOpts (Pad1 x6) -> TCP payload "xyz".
        let mut payload = vec![60, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        payload.extend_from_slice(b"xyz");
        let buf = packet(0, &payload);
        let (repr, upper) = Ipv6Repr::parse(&buf).unwrap();
        assert_eq!(repr.next_header, IpProtocol::Tcp);
        assert_eq!(repr.payload_len, 3);
        assert_eq!(upper, b"xyz");
    }

    #[test]
    fn routing_with_segments_left_zero_is_skipped() {
        // Type 0 (deprecated source route) and 2 (Mobile IPv6) with nothing left: skipped.
        for routing_type in [0, 2] {
            let mut payload = vec![6, 0, routing_type, 0, 0, 0, 0, 0];
            payload.extend_from_slice(b"t");
            let buf = packet(43, &payload);
            let (repr, upper) = Ipv6Repr::parse(&buf).unwrap();
            assert_eq!(repr.next_header, IpProtocol::Tcp);
            assert_eq!(upper, b"t");
            payload[3] = 1;
            assert_eq!(
                Ipv6Repr::parse(&packet(43, &payload)).unwrap_err(),
                WireError::Unsupported
            );
        }
        // RPL's and Segment Routing's are dropped even with nothing left, as Linux drops
        // them where they are not enabled.
        for routing_type in [ROUTING_RPL, ROUTING_SEGMENT] {
            let payload = [6, 0, routing_type, 0, 0, 0, 0, 0, b't'];
            assert_eq!(
                Ipv6Repr::parse(&packet(43, &payload)).unwrap_err(),
                WireError::Unsupported
            );
        }
    }

    #[test]
    fn padding_and_option_count_are_bounded_as_linux_bounds_them() {
        // Six octets of padding, as PadN or as Pad1s, are fine; seven too.
        for ok in [[6, 0, 1, 4, 0, 0, 0, 0], [6, 0, 0, 0, 0, 0, 0, 0]] {
            assert!(Ipv6Repr::parse(&packet(60, &ok)).is_ok());
        }
        let mut seven = vec![6, 1, 0];
        seven.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
        seven.extend_from_slice(&[0x3e, 5, 0, 0, 0, 0, 0]);
        assert!(Ipv6Repr::parse(&packet(60, &seven)).is_ok());
        // Eight options to skip are taken, nine are not.
        let mut eight = vec![6, 2];
        eight.extend(std::iter::repeat_n([0x1e, 0], 8).flatten());
        eight.extend_from_slice(&[0; 6]);
        assert!(Ipv6Repr::parse(&packet(60, &eight)).is_ok());
        eight[18..20].copy_from_slice(&[0x1e, 0]);
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &eight)).unwrap_err(),
            WireError::Malformed
        );
        // Dropped in silence: no Parameter Problem for an unknown option behind them, as
        // Linux's `ip6_parse_tlv` stops at the first.
        let mut unknown_after = eight.clone();
        unknown_after[20] = 0x80;
        assert_eq!(
            parameter_problem(&packet(60, &unknown_after), |_| true),
            None
        );
        let srh_then_unknown = [6, 0, ROUTING_SEGMENT, 0, 0, 0, 0, 0];
        assert_eq!(
            parameter_problem(&packet(43, &srh_then_unknown), |_| false),
            None
        );
        // PadN carrying data, and fourteen octets of padding in a row: dropped.
        let dirty = [6, 0, 1, 4, 0, 0, 7, 0];
        let long = [6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        for bad in [&dirty[..], &long[..]] {
            assert_eq!(
                Ipv6Repr::parse(&packet(60, bad)).unwrap_err(),
                WireError::Malformed
            );
        }
    }

    #[test]
    fn hop_by_hop_after_the_first_is_malformed() {
        let payload = [0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &payload)).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn unknown_option_actions() {
        // Type 0x3e (action 00): skipped. Type 0x7e (action 01): discard.
        let skip = [6, 0, 0x3e, 2, 0, 0, 1, 0];
        assert!(Ipv6Repr::parse(&packet(60, &skip)).is_ok());
        let discard = [6, 0, 0x7e, 2, 0, 0, 1, 0];
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &discard)).unwrap_err(),
            WireError::Unsupported
        );
        // An option running past its header.
        let overrun = [6, 0, 1, 9, 0, 0, 0, 0];
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &overrun)).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn fragment_no_next_and_esp() {
        // A first fragment (M set), a later one (offset 1), then the atomic fragment of RFC
        // 6946 (offset 0, M clear; the reserved bits do not matter), which is the TCP
        // segment it carries.
        for frag in [[6, 0, 0, 1, 0, 0, 0, 1], [6, 0, 0, 8, 0, 0, 0, 1]] {
            assert_eq!(
                Ipv6Repr::parse(&packet(44, &frag)).unwrap_err(),
                WireError::Fragment
            );
        }
        let atomic = [6, 0, 0, 6, 0, 0, 0, 1];
        let (repr, _) = Ipv6Repr::parse(&packet(44, &atomic)).unwrap();
        assert_eq!(repr.next_header, IpProtocol::Tcp);
        // The same in front of a header nobody handles: a parameter problem (code 1) pointing
        // at the Fragment header's Next Header, whatever its reserved bits say (before, with
        // them set, the packet was dropped unanswered).
        let unknown_behind = [0xfd, 0, 0, 6, 0, 0, 0, 1];
        assert_eq!(
            parameter_problem(&packet(44, &unknown_behind), |_| false),
            Some((1, 40))
        );
        assert_eq!(
            Ipv6Repr::parse(&packet(44, &atomic[..4])).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Ipv6Repr::parse(&packet(59, &[])).unwrap_err(),
            WireError::Unsupported
        );
        assert_eq!(
            Ipv6Repr::parse(&packet(50, &[0; 16])).unwrap_err(),
            WireError::Unsupported
        );
    }

    #[test]
    fn ext_header_chain_is_bounded() {
        // Nine Destination Options headers in a row: one more than we walk.
        let mut payload = Vec::new();
        for _ in 0..9 {
            payload.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
        }
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &payload)).unwrap_err(),
            WireError::Unsupported
        );
    }

    #[test]
    fn truncated_ext_headers() {
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &[6, 0, 1])).unwrap_err(),
            WireError::Truncated
        );
        // Hdr Ext Len 1 says 16 bytes; only 8 present.
        assert_eq!(
            Ipv6Repr::parse(&packet(60, &[6, 1, 1, 4, 0, 0, 0, 0])).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn unknown_upper_layer_is_returned() {
        let buf = packet(132, b"sctp");
        let (repr, upper) = Ipv6Repr::parse(&buf).unwrap();
        assert_eq!(repr.next_header, IpProtocol::Unknown(132));
        assert_eq!(upper, b"sctp");
    }

    #[test]
    fn payload_length_past_buffer_is_truncated() {
        let mut buf = packet(6, &[0; 20]);
        buf.truncate(50);
        assert_eq!(Ipv6Repr::parse(&buf).unwrap_err(), WireError::Truncated);
        let mut v5 = packet(6, &[0; 20]);
        v5[0] = 0x50;
        assert_eq!(Ipv6Repr::parse(&v5).unwrap_err(), WireError::Unsupported);
    }

    #[test]
    fn emit_writes_a_plain_header() {
        let repr = Ipv6Repr {
            src_addr: "2001:2::1".parse().unwrap(),
            dst_addr: "2001:2::2".parse().unwrap(),
            next_header: IpProtocol::Tcp,
            payload_len: 40,
            hop_limit: 64,
        };
        let mut buf = [0xffu8; 80];
        repr.emit(&mut buf);
        assert_eq!(&buf[..8], &[0x60, 0, 0, 0, 0, 40, 6, 64]);
        let (parsed, _) = Ipv6Repr::parse(&buf).unwrap();
        assert_eq!(parsed, repr);
    }
}
