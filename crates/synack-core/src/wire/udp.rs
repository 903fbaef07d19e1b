//! UDP (RFC 768): a zero-copy view and a validated repr.
//!
//! The checksum rules differ by family, and this is the one place that knows them:
//! - IPv4 (RFC 768, "Fields"): "An all zero transmitted checksum value means that the
//!   transmitter generated no checksum", so a zero field is accepted unchecked; and "if the
//!   computed checksum is zero, it is transmitted as all ones", so a sum of zero leaves as
//!   0xFFFF.
//! - IPv6 (RFC 8200 §8.1): "Unlike IPv4, the default behavior when UDP packets are originated
//!   by an IPv6 node is that the UDP checksum is not optional ... IPv6 receivers must discard
//!   UDP packets containing a zero checksum". (RFC 6935's tunnel exception needs a per-port
//!   opt-in that synack has no use for.)
//!
//! The length field: RFC 768 counts header and data. One longer than the IP payload is a
//! truncated datagram and is refused; one shorter leaves trailing bytes that are ignored, as
//! Linux does (`__udp4_lib_rcv` trims the skb to the UDP length). Below 8 is malformed.

use std::net::IpAddr;

use super::checksum;
use super::ip::IpProtocol;
use super::WireError;

/// The UDP header: source port, destination port, length, checksum.
pub const HEADER_LEN: usize = 8;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

/// A zero-copy view of a UDP datagram.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wraps a buffer without checking anything; getters may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> UdpPacket<T> {
        UdpPacket { buffer }
    }

    /// Wraps a buffer after [`check_len`](Self::check_len).
    pub fn new_checked(buffer: T) -> Result<UdpPacket<T>, WireError> {
        let packet = UdpPacket::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Ensures the header is present, the length field is at least the header (RFC 768: "the
    /// minimum value of the length is eight") and no longer than the buffer. A buffer
    /// longer than the length field is fine: the rest is ignored.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let claimed = usize::from(self.len());
        if claimed < HEADER_LEN {
            return Err(WireError::Malformed);
        }
        if claimed > len {
            return Err(WireError::Truncated);
        }
        Ok(())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Source port (0: none, RFC 768 "an optional field").
    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    /// Destination port.
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length field: header and data.
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    /// Whether the length field says there is no data.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The datagram as the length field bounds it. Call `check_len` first.
    fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.len())]
    }

    /// The payload, up to the length field. Call `check_len` first.
    pub fn payload(&self) -> &[u8] {
        &self.datagram()[HEADER_LEN..]
    }

    /// Whether the checksum verifies against the pseudo-header of `src`, `dst` (over the
    /// length field's bytes only). False when the families differ. The zero rules are the
    /// caller's ([`UdpRepr::parse`]).
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        let data = self.datagram();
        match checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(self.len())) {
            Some(pseudo) => checksum::verifies(pseudo + checksum::partial(data)),
            None => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the source port.
    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16(field::SRC_PORT, v);
    }

    /// Sets the destination port.
    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16(field::DST_PORT, v);
    }

    /// Sets the length field.
    pub fn set_len(&mut self, v: u16) {
        self.set_u16(field::LENGTH, v);
    }

    /// Sets the checksum field.
    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16(field::CHECKSUM, v);
    }

    /// Computes and writes the full checksum over the length field's bytes. RFC 768: a
    /// computed zero is sent as all ones, since zero means "no checksum" (IPv4) or is
    /// invalid (IPv6).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = self.len();
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Udp, u32::from(len))
            .expect("UDP over mixed address families");
        let sum = checksum::finish(pseudo + checksum::partial(self.datagram()));
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }
}

/// A validated UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The data.
    pub payload: &'a [u8],
}

impl<'a> UdpRepr<'a> {
    /// Parses the IP payload `datagram` sent from `src` to `dst`.
    ///
    /// `checksum_verified` says the device vouches for the checksum (see
    /// [`RecvMeta::checksum_verified`](crate::RecvMeta::checksum_verified)); the zero rule of
    /// IPv6 still applies then, since a zero field is not a checksum a device can verify.
    /// Errors: `Truncated` (shorter than 8 bytes, or than the length field), `Malformed`
    /// (length field below 8, mixed families), `Checksum` (a sum that
    /// does not verify, or a zero checksum over IPv6).
    pub fn parse(
        datagram: &'a [u8],
        src: IpAddr,
        dst: IpAddr,
        checksum_verified: bool,
    ) -> Result<UdpRepr<'a>, WireError> {
        let packet = UdpPacket::new_checked(datagram)?;
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(WireError::Malformed);
        }
        match (packet.checksum(), dst.is_ipv6()) {
            // RFC 8200 §8.1: IPv6 receivers discard a zero UDP checksum.
            (0, true) => return Err(WireError::Checksum),
            // RFC 768: the sender computed none; nothing to verify.
            (0, false) => {}
            _ if checksum_verified => {}
            _ => {
                if !packet.verify_checksum(src, dst) {
                    return Err(WireError::Checksum);
                }
            }
        }
        // Port 0 is reserved (IANA) but not malformed: a source port of 0 is allowed (RFC
        // 768: "if not used, a value of zero is inserted"), and a destination port of 0
        // names no socket, so the datagram is answered as at a closed port, as Linux's
        // `__udp4_lib_rcv` answers it.
        let len = usize::from(packet.len());
        Ok(UdpRepr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: &datagram[HEADER_LEN..len],
        })
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes header, payload and the full checksum into `buf[..buffer_len()]`. synack
    /// always sums UDP itself, even where the device could finish a partial checksum: the
    /// datagrams go out through the endpoint's own-packet queue, whose packets are all
    /// complete (see [`Transmit::checksum_partial`](crate::Transmit::checksum_partial)).
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len), if the datagram exceeds
    /// 65,535 bytes, or if `src` and `dst` are of different families.
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) {
        let len = self.buffer_len();
        let len16 = u16::try_from(len).expect("UDP datagram over 65535 bytes");
        buf[HEADER_LEN..len].copy_from_slice(self.payload);
        let mut packet = UdpPacket::new_unchecked(&mut buf[..len]);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len16);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, last))
    }

    fn v6(last: u16) -> IpAddr {
        IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, last))
    }

    fn emitted(src: IpAddr, dst: IpAddr, payload: &[u8]) -> Vec<u8> {
        let repr = UdpRepr {
            src_port: 5353,
            dst_port: 53,
            payload,
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf, src, dst);
        buf
    }

    #[test]
    fn emit_then_parse_both_families() {
        for (src, dst) in [(v4(1), v4(2)), (v6(1), v6(2))] {
            for payload in [&b""[..], b"x", b"hello, world"] {
                let buf = emitted(src, dst, payload);
                assert_ne!(UdpPacket::new_unchecked(&buf).checksum(), 0);
                let repr = UdpRepr::parse(&buf, src, dst, false).unwrap();
                assert_eq!((repr.src_port, repr.dst_port), (5353, 53));
                assert_eq!(repr.payload, payload);
                // A wrong pseudo-header (another destination) does not verify.
                assert_eq!(
                    UdpRepr::parse(&buf, src, src, false),
                    Err(WireError::Checksum)
                );
            }
        }
    }

    #[test]
    fn zero_checksum_rules() {
        let mut v4buf = emitted(v4(1), v4(2), b"data");
        v4buf[6..8].fill(0);
        // RFC 768: no checksum computed, accepted.
        assert!(UdpRepr::parse(&v4buf, v4(1), v4(2), false).is_ok());
        let mut v6buf = emitted(v6(1), v6(2), b"data");
        v6buf[6..8].fill(0);
        // RFC 8200 §8.1: refused, even if a device claims to have verified it.
        assert_eq!(
            UdpRepr::parse(&v6buf, v6(1), v6(2), true),
            Err(WireError::Checksum)
        );
    }

    #[test]
    fn a_computed_zero_is_sent_as_all_ones() {
        // Find a payload whose sum comes out as zero: vary two bytes until it does.
        let (src, dst) = (v4(1), v4(2));
        for word in 0..=u16::MAX {
            let buf = emitted(src, dst, &word.to_be_bytes());
            let packet = UdpPacket::new_unchecked(&buf);
            if packet.checksum() == 0xffff {
                // All ones verifies exactly as zero would have (RFC 1071: -0 and +0).
                assert!(UdpRepr::parse(&buf, src, dst, false).is_ok());
                return;
            }
            assert_ne!(packet.checksum(), 0);
        }
        panic!("no payload summed to zero");
    }

    #[test]
    fn length_field_against_the_ip_payload() {
        let (src, dst) = (v4(1), v4(2));
        let buf = emitted(src, dst, b"hello");
        // Trailing bytes past the length field are ignored (Linux trims to it).
        let mut longer = buf.clone();
        longer.extend_from_slice(b"junk");
        assert_eq!(
            UdpRepr::parse(&longer, src, dst, false).unwrap().payload,
            b"hello"
        );
        // A length field past the IP payload: truncated.
        assert_eq!(
            UdpRepr::parse(&buf[..buf.len() - 1], src, dst, false),
            Err(WireError::Truncated)
        );
        // Below the header: malformed.
        let mut short = buf.clone();
        short[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpRepr::parse(&short, src, dst, true),
            Err(WireError::Malformed)
        );
        for n in 0..HEADER_LEN {
            assert_eq!(
                UdpRepr::parse(&buf[..n], src, dst, false),
                Err(WireError::Truncated)
            );
        }
        // Port 0 either way parses (the endpoint answers it as a closed port).
        let mut port0 = buf.clone();
        port0[0..4].fill(0);
        let repr = UdpRepr::parse(&port0, src, dst, true).unwrap();
        assert_eq!((repr.src_port, repr.dst_port), (0, 0));
        assert_eq!(
            UdpRepr::parse(&buf, src, v6(2), true),
            Err(WireError::Malformed)
        );
    }
}
