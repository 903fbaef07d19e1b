//! IPv4 headers (RFC 791).

use std::net::Ipv4Addr;

use super::checksum;
use super::protocol::IpProtocol;
use super::WireError;

/// The length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// Field offsets, RFC 791 §3.1.
mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// RFC 791 §3.1 flags: bit 1 "Don't Fragment", bit 2 "More Fragments".
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// A zero-copy view of an IPv4 header and its payload.
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

    /// Ensures every getter is in bounds: the buffer holds 20 bytes, IHL ≥ 5, the buffer holds
    /// the IHL-sized header, and the total length covers the header and fits the buffer.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let header_len = self.header_len();
        // RFC 791 §3.1: "the minimum value for a correct header is 5" (32-bit words).
        if header_len < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if header_len > len {
            return Err(WireError::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(WireError::Malformed);
        }
        if total_len > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 for IPv4).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// The type-of-service / DSCP+ECN byte.
    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    /// The total length field: header plus payload.
    pub fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// The identification field.
    pub fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// The Don't Fragment flag.
    pub fn dont_frag(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_DF != 0
    }

    /// The More Fragments flag.
    pub fn more_frags(&self) -> bool {
        read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FLAG_MF != 0
    }

    /// The fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (read_u16(self.buffer.as_ref(), field::FLG_OFF.start) & FRAG_OFFSET_MASK) << 3
    }

    /// The time-to-live field.
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// The protocol field.
    pub fn protocol(&self) -> IpProtocol {
        IpProtocol::from(self.buffer.as_ref()[field::PROTOCOL])
    }

    /// The header checksum field.
    pub fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The source address.
    pub fn src_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// The destination address.
    pub fn dst_addr(&self) -> Ipv4Addr {
        read_addr(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// Whether the header checksum (over IHL × 4 bytes, options included) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::partial(
            &self.buffer.as_ref()[..self.header_len()],
        ))
    }

    /// The payload: from the end of the header to the total length. Call `check_len` first.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version (4) and header length in bytes (a multiple of 4).
    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    /// Sets the type-of-service byte.
    pub fn set_tos(&mut self, value: u8) {
        self.buffer.as_mut()[field::TOS] = value;
    }

    /// Sets the total length field.
    pub fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH.start, value);
    }

    /// Sets the identification field.
    pub fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT.start, value);
    }

    /// Sets flags and fragment offset (in bytes, a multiple of 8).
    pub fn set_flags_and_offset(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut v = (offset >> 3) & FRAG_OFFSET_MASK;
        if dont_frag {
            v |= FLAG_DF;
        }
        if more_frags {
            v |= FLAG_MF;
        }
        write_u16(self.buffer.as_mut(), field::FLG_OFF.start, v);
    }

    /// Sets the time-to-live.
    pub fn set_hop_limit(&mut self, value: u8) {
        self.buffer.as_mut()[field::TTL] = value;
    }

    /// Sets the protocol.
    pub fn set_protocol(&mut self, value: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = value.into();
    }

    /// Sets the checksum field to a raw value.
    pub fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM.start, value);
    }

    /// Sets the source address.
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum over IHL × 4 bytes.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let c = checksum::finish(checksum::partial(&self.buffer.as_ref()[..len]));
        self.set_checksum(c);
    }
}

/// RFC 791 §3.1: option type 0, End of Option List.
const OPT_END: u8 = 0;
/// Option type 1, No Operation.
const OPT_NOOP: u8 = 1;
/// Option type 131, Loose Source and Record Route.
const OPT_LSRR: u8 = 131;
/// Option type 137, Strict Source and Record Route.
const OPT_SSRR: u8 = 137;

/// Checks the options of an IPv4 header (the bytes between the fixed header and IHL × 4),
/// which an end host otherwise skips (none of record route, timestamps or security
/// matters to its TCP or UDP):
/// - a length below 2 or past the header is `Malformed`, as Linux's `ip_options_compile`
///   refuses it (with a parameter problem, which synack does not send);
/// - a source route (LSRR, SSRR) is `Unsupported`: Linux drops every source-routed
///   datagram by default (`accept_source_route` 0, in `ip_rcv_options`), finished or not,
///   as RFC 1122 §3.3.5 lets a host, and one whose route is not finished names us as a
///   hop on the way, not its end.
pub fn check_options(options: &[u8]) -> Result<(), WireError> {
    let mut rest = options;
    while let Some(&kind) = rest.first() {
        match kind {
            OPT_END => break,
            OPT_NOOP => rest = &rest[1..],
            _ => {
                let len = usize::from(*rest.get(1).ok_or(WireError::Malformed)?);
                if len < 2 || len > rest.len() {
                    return Err(WireError::Malformed);
                }
                if kind == OPT_LSRR || kind == OPT_SSRR {
                    return Err(WireError::Unsupported);
                }
                rest = &rest[len..];
            }
        }
    }
    Ok(())
}

/// A validated IPv4 header, as far as this stack cares about one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src_addr: Ipv4Addr,
    /// Destination address.
    pub dst_addr: Ipv4Addr,
    /// Upper-layer protocol.
    pub protocol: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time to live.
    pub hop_limit: u8,
}

impl Ipv4Repr {
    /// Parses an IPv4 packet: lengths as [`Packet::check_len`], version 4, header checksum,
    /// options checked and skipped ([`check_options`]), fragments refused (`Fragment`: see
    /// [`super::fragment`]). Returns the repr and the payload (up to the total length; bytes
    /// past it are link padding and are ignored).
    pub fn parse(buf: &[u8]) -> Result<(Ipv4Repr, &[u8]), WireError> {
        let packet = Packet::new_checked(buf)?;
        if packet.version() != 4 {
            return Err(WireError::Unsupported);
        }
        // RFC 1122 §3.2.1.2: "A host MUST verify the IP header checksum on every received
        // datagram and silently discard every datagram that has a bad checksum."
        if !packet.verify_checksum() {
            return Err(WireError::Checksum);
        }
        // RFC 791 §3.2: a datagram with MF set or a non-zero offset is a fragment, not a
        // whole datagram to parse: see `wire::fragment` and the endpoint's reassembly.
        if packet.more_frags() || packet.frag_offset() != 0 {
            return Err(WireError::Fragment);
        }
        // RFC 791 §3.1 Options: IHL > 5 means options follow; the payload starts after them.
        check_options(&buf[HEADER_LEN..packet.header_len()])?;
        let repr = Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            hop_limit: packet.hop_limit(),
        };
        let payload = &buf[packet.header_len()..usize::from(packet.total_len())];
        Ok((repr, payload))
    }

    /// The header length this repr emits.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header into `buf[..20]`: TOS 0, ident 0, DF set (RFC 1191 path MTU
    /// discovery: we never want routers to fragment our segments), checksum filled in.
    ///
    /// # Panics
    /// If `buf` is shorter than 20 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        self.emit_marked(buf, 0, 0, true);
    }

    /// [`emit`](Self::emit) with the TOS byte, the identification and DF given: a
    /// connection's own (see [`IpMarks`](super::ip::IpMarks)), the checksum summed once over
    /// the finished header.
    ///
    /// # Panics
    /// If `buf` is shorter than 20 bytes.
    pub fn emit_marked(&self, buf: &mut [u8], tos: u8, ident: u16, dont_frag: bool) {
        let mut packet = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        packet.set_version_and_header_len(HEADER_LEN);
        packet.set_tos(tos);
        // `IpRepr::new` bounds payload_len; saturate rather than wrap if a caller built the
        // struct by hand with a larger one.
        packet.set_total_len(u16::try_from(self.buffer_len()).unwrap_or(u16::MAX));
        // RFC 6864 §4.1: the ID field of an atomic datagram (DF set, MF clear, offset 0) has
        // no meaning, so a constant 0 is allowed; one without DF needs a unique one.
        packet.set_ident(ident);
        packet.set_flags_and_offset(dont_frag, false, 0);
        packet.set_hop_limit(self.hop_limit);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
    }
}

fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

fn write_u16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn read_addr(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame 1 of the capture (the IPv4 SYN), Ethernet header stripped.
    const SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0xe3, 0x97, 0x40, 0x00, 0x40, 0x06, 0xca, 0xfa, 0xc6, 0x13, 0x00,
        0x01, 0xc6, 0x13, 0x00, 0x02, 0x82, 0xa6, 0x1f, 0x40, 0xe1, 0xea, 0x97, 0xb5, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x59, 0x85, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x9a, 0x30, 0xb1, 0xa5, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
    ];

    #[test]
    fn view_getters_on_captured_syn() {
        let p = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0xe397);
        assert!(p.dont_frag() && !p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.protocol(), IpProtocol::Tcp);
        assert_eq!(p.checksum(), 0xcafa);
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 19, 0, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 19, 0, 2));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 40);
    }

    #[test]
    fn parse_captured_syn_and_reemit_modulo_ident() {
        let (repr, payload) = Ipv4Repr::parse(&SYN).unwrap();
        assert_eq!(repr.payload_len, 40);
        assert_eq!(payload, &SYN[20..]);
        let mut out = [0u8; 20];
        repr.emit(&mut out);
        // Linux picked ident 0xe397; `emit` writes 0 (a connection writes its own count over
        // it). Everything else, checksum aside, is equal.
        let mut expect = [0u8; 20];
        expect.copy_from_slice(&SYN[..20]);
        expect[4..6].copy_from_slice(&[0, 0]);
        let mut p = Packet::new_unchecked(&mut expect[..]);
        p.fill_checksum();
        assert_eq!(out, expect);
    }

    #[test]
    fn setters_round_trip_through_getters() {
        let mut buf = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version_and_header_len(24);
        p.set_total_len(28);
        p.set_tos(0xb8);
        p.set_ident(0x1234);
        p.set_flags_and_offset(false, true, 1480);
        p.set_hop_limit(3);
        p.set_protocol(IpProtocol::Unknown(200));
        p.fill_checksum();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.tos(), 0xb8);
        assert_eq!(p.ident(), 0x1234);
        assert!(!p.dont_frag() && p.more_frags());
        assert_eq!(p.frag_offset(), 1480);
        assert_eq!(p.protocol(), IpProtocol::Unknown(200));
        assert!(p.verify_checksum());
        assert!(p.check_len().is_ok());
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn options_are_skipped() {
        // IHL 6: one word of options (NOP NOP NOP EOL), then 3 bytes of payload.
        let mut buf = [0u8; 27];
        {
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_version_and_header_len(24);
            p.set_total_len(27);
            p.set_hop_limit(64);
            p.set_protocol(IpProtocol::Tcp);
        }
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        buf[24..].copy_from_slice(b"abc");
        Packet::new_unchecked(&mut buf[..]).fill_checksum();
        let (repr, payload) = Ipv4Repr::parse(&buf).unwrap();
        assert_eq!(repr.payload_len, 3);
        assert_eq!(payload, b"abc");
    }

    /// A datagram with the given 8 bytes of options (IHL 7) and 3 bytes of payload.
    fn with_options(options: [u8; 8]) -> [u8; 31] {
        let mut buf = [0u8; 31];
        {
            let mut p = Packet::new_unchecked(&mut buf[..]);
            p.set_version_and_header_len(28);
            p.set_total_len(31);
            p.set_hop_limit(64);
            p.set_protocol(IpProtocol::Tcp);
        }
        buf[20..28].copy_from_slice(&options);
        buf[28..].copy_from_slice(b"abc");
        Packet::new_unchecked(&mut buf[..]).fill_checksum();
        buf
    }

    #[test]
    fn options_are_checked_and_source_routes_refused() {
        // Record route (7) with room for one address, then NOP: skipped.
        let rr = with_options([7, 7, 4, 0, 0, 0, 0, 1]);
        assert_eq!(Ipv4Repr::parse(&rr).unwrap().1, b"abc");
        // Timestamp option (68) of 4 bytes, then EOL and anything after it.
        let ts = with_options([68, 4, 5, 0, 0, 99, 99, 99]);
        assert!(Ipv4Repr::parse(&ts).is_ok());
        // Loose and strict source routes, finished or not: Linux drops them by default.
        for kind in [OPT_LSRR, OPT_SSRR] {
            for pointer in [4, 8] {
                let sr = with_options([1, kind, 7, pointer, 198, 18, 0, 9]);
                assert_eq!(Ipv4Repr::parse(&sr), Err(WireError::Unsupported));
                let mut fragment = sr;
                Packet::new_unchecked(&mut fragment[..]).set_flags_and_offset(false, true, 0);
                Packet::new_unchecked(&mut fragment[..]).fill_checksum();
                assert_eq!(
                    super::super::fragment::Fragment::parse(&fragment).unwrap_err(),
                    WireError::Unsupported
                );
            }
        }
        // Lengths below 2, past the header, or missing: malformed.
        for bad in [
            [7, 0, 0, 0, 0, 0, 0, 0],
            [7, 1, 0, 0, 0, 0, 0, 0],
            [1, 7, 9, 4, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 7],
        ] {
            assert_eq!(
                Ipv4Repr::parse(&with_options(bad)),
                Err(WireError::Malformed)
            );
        }
    }

    #[test]
    fn check_len_errors() {
        assert_eq!(
            Ipv4Repr::parse(&SYN[..19]).unwrap_err(),
            WireError::Truncated
        );
        let mut ihl4 = SYN;
        ihl4[0] = 0x44;
        assert_eq!(Ipv4Repr::parse(&ihl4).unwrap_err(), WireError::Malformed);
        let mut ihl15 = SYN;
        ihl15[0] = 0x4f;
        assert_eq!(
            Ipv4Repr::parse(&ihl15[..40]).unwrap_err(),
            WireError::Truncated
        );
        let mut short_total = SYN;
        short_total[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4Repr::parse(&short_total).unwrap_err(),
            WireError::Malformed
        );
    }
}
