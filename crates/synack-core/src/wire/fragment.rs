//! IP fragments: what a fragment says about the datagram it is a piece of (RFC 791 §2.3 and
//! §3.2 for IPv4, RFC 8200 §4.5 for IPv6), the datagram rebuilt once every piece is in, and
//! a datagram of our own cut into pieces ([`split`]). The bookkeeping between the first two,
//! which pieces have come and for how long they are kept, is the endpoint's
//! (`endpoint/reassembly.rs`).

use std::net::IpAddr;

use super::ipv4;
use super::ipv6::{self, Walked};
use super::protocol::IpProtocol;
use super::WireError;

/// One fragment of an IPv4 or IPv6 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The source address.
    pub src: IpAddr,
    /// The destination address.
    pub dst: IpAddr,
    /// The identification: IPv4's 16 bits, IPv6's 32. With the addresses (and IPv4's
    /// protocol), what names the datagram (RFC 791 §3.2, RFC 8200 §4.5).
    pub ident: u32,
    /// The upper-layer protocol of the datagram (IPv6: the Fragment header's Next Header).
    pub protocol: IpProtocol,
    /// Where the data goes in the datagram's payload, in bytes (a multiple of 8).
    pub offset: usize,
    /// More fragments follow (IPv4's MF, IPv6's M).
    pub more: bool,
    /// What goes in front of the rebuilt datagram, from the fragment at offset 0: IPv4's
    /// header (options included), IPv6's fixed header and the extension headers before the
    /// Fragment header (the "Unfragmentable Part").
    pub header: &'a [u8],
    /// IPv6: where in `header` the Next Header field that names the Fragment header is.
    pub next_header_at: usize,
    /// The fragment's data.
    pub data: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Parses a packet that [`super::ip::parse`] refused with [`WireError::Fragment`]: its
    /// header as `parse` checks it (version, lengths, IPv4's header checksum, IPv6's
    /// extension-header walk up to the Fragment header). `Malformed` for a packet that is not
    /// a fragment after all.
    pub fn parse(packet: &'a [u8]) -> Result<Fragment<'a>, WireError> {
        match packet.first().map(|b| b >> 4) {
            Some(4) => Self::parse_v4(packet),
            Some(6) => Self::parse_v6(packet),
            Some(_) => Err(WireError::Unsupported),
            None => Err(WireError::Truncated),
        }
    }

    fn parse_v4(packet: &'a [u8]) -> Result<Fragment<'a>, WireError> {
        let ip = ipv4::Packet::new_checked(packet)?;
        if !ip.verify_checksum() {
            return Err(WireError::Checksum);
        }
        if !ip.more_frags() && ip.frag_offset() == 0 {
            return Err(WireError::Malformed);
        }
        let (hl, total) = (ip.header_len(), usize::from(ip.total_len()));
        ipv4::check_options(&packet[ipv4::HEADER_LEN..hl])?;
        Ok(Fragment {
            src: IpAddr::V4(ip.src_addr()),
            dst: IpAddr::V4(ip.dst_addr()),
            ident: u32::from(ip.ident()),
            protocol: ip.protocol(),
            offset: usize::from(ip.frag_offset()),
            more: ip.more_frags(),
            header: &packet[..hl],
            next_header_at: 0,
            data: &packet[hl..total],
        })
    }

    fn parse_v6(packet: &'a [u8]) -> Result<Fragment<'a>, WireError> {
        if packet.len() < ipv6::HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let ip = ipv6::Packet::new_unchecked(packet);
        ip.check_len()?;
        let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
        let payload = &packet[ipv6::HEADER_LEN..end];
        let (at, named_by) = match ipv6::walk_to(u8::from(ip.next_header()), payload, false)? {
            Walked::Fragment { at, named_by } => (at, named_by),
            Walked::Upper(..) => return Err(WireError::Malformed),
        };
        // RFC 8200 §4.5: Next Header, reserved, Fragment Offset (13 bits, in 8-octet units),
        // two reserved bits and M, then the 32-bit Identification. `walk_to` saw 8 bytes.
        let frag = &payload[at..at + 8];
        let offset_and_more = u16::from_be_bytes([frag[2], frag[3]]);
        let start = ipv6::HEADER_LEN + at;
        Ok(Fragment {
            src: IpAddr::V6(ip.src_addr()),
            dst: IpAddr::V6(ip.dst_addr()),
            ident: u32::from_be_bytes([frag[4], frag[5], frag[6], frag[7]]),
            protocol: IpProtocol::from(frag[0]),
            offset: usize::from(offset_and_more & !7),
            more: offset_and_more & 1 != 0,
            header: &packet[..start],
            // The fixed header's Next Header is its byte 6; an extension header's, its first.
            next_header_at: named_by.map_or(6, |h| ipv6::HEADER_LEN + h),
            data: &packet[start + 8..end],
        })
    }

    /// The most payload the rebuilt datagram may carry past `header`: a datagram's length
    /// field is 16 bits (IPv4's total length counts the header, IPv6's payload length the
    /// extension headers in front).
    pub fn max_payload(&self) -> usize {
        match self.src {
            IpAddr::V4(_) => usize::from(u16::MAX) - self.header.len(),
            IpAddr::V6(_) => usize::from(u16::MAX) + ipv6::HEADER_LEN - self.header.len(),
        }
    }
}

/// The whole datagram from the first fragment's `header` (and, for IPv6, `next_header_at`
/// and the datagram's `protocol`) and the reassembled `payload`: no longer a fragment (IPv4:
/// MF and the offset cleared, total length and header checksum anew; IPv6: the Fragment
/// header gone, its Next Header in the field that named it, payload length anew). `None` if
/// the payload is longer than the length fields allow (see [`Fragment::max_payload`]).
pub fn rebuild(
    header: &[u8],
    next_header_at: usize,
    protocol: IpProtocol,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len() + payload.len());
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    match header.first().map(|b| b >> 4) {
        Some(4) => {
            let total = u16::try_from(out.len()).ok()?;
            let mut ip = ipv4::Packet::new_unchecked(&mut out[..]);
            ip.set_total_len(total);
            ip.set_flags_and_offset(false, false, 0);
            ip.fill_checksum();
        }
        Some(6) => {
            let len = u16::try_from(out.len() - ipv6::HEADER_LEN).ok()?;
            out[4..6].copy_from_slice(&len.to_be_bytes());
            *out.get_mut(next_header_at)? = u8::from(protocol);
        }
        _ => return None,
    }
    Some(out)
}

/// How many bytes of a datagram's payload go in each piece but the last at `mtu`, behind an
/// IP header of `header_len` bytes (and IPv6's 8-byte Fragment header): a multiple of 8
/// (RFC 791 §3.2, RFC 8200 §4.5). `None` if the MTU leaves no room for 8.
pub fn piece_data(mtu: usize, header_len: usize, v6: bool) -> Option<usize> {
    let per = mtu.checked_sub(header_len + if v6 { 8 } else { 0 })? & !7;
    (per > 0).then_some(per)
}

/// Cuts a packet this stack built (IPv4 without options, or IPv6 without extension
/// headers) into fragments of at most `mtu` bytes, every piece's data but the last's a
/// multiple of 8 bytes, all carrying `ident` (IPv4: its low 16 bits): RFC 791 §3.2's
/// fragmentation procedure, RFC 8200 §4.5's Fragment header. The IPv4 pieces go without DF;
/// the IPv6 ones keep the fixed header as it is (its flow label included), their Next
/// Header now the Fragment header's. `None` if the packet fits the MTU whole (there is
/// nothing to cut), if the MTU leaves no room for 8 bytes of data a piece, or if the packet
/// is not one of ours.
pub fn split(packet: &[u8], mtu: usize, ident: u32) -> Option<Vec<Vec<u8>>> {
    let (hl, extra, data) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = ipv4::Packet::new_checked(packet).ok()?;
            let hl = ip.header_len();
            // Options a receiver would refuse are none of ours (each piece carries them).
            ipv4::check_options(&packet[ipv4::HEADER_LEN..hl]).ok()?;
            (hl, 0, packet.get(hl..usize::from(ip.total_len()))?)
        }
        Some(6) => {
            let ip = ipv6::Packet::new_checked(packet).ok()?;
            let end = ipv6::HEADER_LEN + usize::from(ip.payload_len());
            (ipv6::HEADER_LEN, 8, packet.get(ipv6::HEADER_LEN..end)?)
        }
        _ => return None,
    };
    if hl + data.len() <= mtu {
        return None;
    }
    let per = piece_data(mtu, hl, extra == 8)?;
    let header = &packet[..hl];
    let mut pieces = Vec::with_capacity(data.len().div_ceil(per));
    for (i, chunk) in data.chunks(per).enumerate() {
        let offset = i * per;
        let more = offset + chunk.len() < data.len();
        let mut out = Vec::with_capacity(hl + extra + chunk.len());
        out.extend_from_slice(header);
        if extra == 0 {
            out.extend_from_slice(chunk);
            let total = u16::try_from(out.len()).ok()?;
            let mut ip = ipv4::Packet::new_unchecked(&mut out[..]);
            ip.set_total_len(total);
            ip.set_ident(ident as u16);
            ip.set_flags_and_offset(false, more, u16::try_from(offset).ok()?);
            ip.fill_checksum();
        } else {
            let protocol = out[6];
            out[6] = ipv6::ext::FRAGMENT;
            let len = u16::try_from(8 + chunk.len()).ok()?;
            out[4..6].copy_from_slice(&len.to_be_bytes());
            let offset_and_more = u16::try_from(offset).ok()? | u16::from(more);
            out.extend_from_slice(&[protocol, 0]);
            out.extend_from_slice(&offset_and_more.to_be_bytes());
            out.extend_from_slice(&ident.to_be_bytes());
            out.extend_from_slice(chunk);
        }
        pieces.push(out);
    }
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::{self, IpRepr};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const V4: (Ipv4Addr, Ipv4Addr) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));

    /// An IPv4 fragment of a UDP datagram: `data` at `offset`, identification 77.
    fn v4_fragment(offset: u16, more: bool, data: &[u8]) -> Vec<u8> {
        let repr = IpRepr::new(
            IpAddr::V4(V4.0),
            IpAddr::V4(V4.1),
            IpProtocol::Udp,
            data.len(),
            64,
        )
        .unwrap();
        let mut p = vec![0u8; repr.buffer_len()];
        repr.emit(&mut p);
        p[20..].copy_from_slice(data);
        let mut view = ipv4::Packet::new_unchecked(&mut p[..]);
        view.set_ident(77);
        view.set_flags_and_offset(false, more, offset);
        view.fill_checksum();
        p
    }

    #[test]
    fn ipv4_fragment_parses_and_rebuilds() {
        let first = v4_fragment(0, true, &[1; 16]);
        assert_eq!(ip::parse(&first).unwrap_err(), WireError::Fragment);
        let f = Fragment::parse(&first).unwrap();
        assert_eq!((f.ident, f.offset, f.more), (77, 0, true));
        assert_eq!(
            (f.protocol, f.header.len(), f.data.len()),
            (IpProtocol::Udp, 20, 16)
        );
        let last = v4_fragment(16, false, &[2; 5]);
        let g = Fragment::parse(&last).unwrap();
        assert_eq!((g.offset, g.more), (16, false));

        let mut payload = f.data.to_vec();
        payload.extend_from_slice(g.data);
        let whole = rebuild(f.header, f.next_header_at, f.protocol, &payload).unwrap();
        let (repr, body) = ip::parse(&whole).unwrap();
        assert_eq!(repr.protocol(), IpProtocol::Udp);
        assert_eq!(body, &payload[..]);
        // An unfragmented packet is not a fragment.
        let whole_packet = v4_fragment(0, false, &[3; 8]);
        assert_eq!(
            Fragment::parse(&whole_packet).unwrap_err(),
            WireError::Malformed
        );
    }

    #[test]
    fn ipv6_fragment_behind_an_extension_header_parses_and_rebuilds() {
        let (src, dst) = (
            Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2),
        );
        // Fixed header, Destination Options (8 bytes of PadN), Fragment header, data.
        let data = [9u8; 24];
        let mut p = vec![0u8; 40 + 8 + 8 + data.len()];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&((8 + 8 + data.len()) as u16).to_be_bytes());
        p[6] = 60; // Destination Options
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p[40] = 44; // next: Fragment
        p[41] = 0;
        p[42..48].copy_from_slice(&[1, 4, 0, 0, 0, 0]);
        p[48] = 17; // next: UDP
        p[50..52].copy_from_slice(&((8u16 << 3) | 1).to_be_bytes()); // offset 64 bytes, M
        p[52..56].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        p[56..].copy_from_slice(&data);
        assert_eq!(ip::parse(&p).unwrap_err(), WireError::Fragment);
        let f = Fragment::parse(&p).unwrap();
        assert_eq!((f.ident, f.offset, f.more), (0xdead_beef, 64, true));
        assert_eq!(
            (f.protocol, f.header.len(), f.next_header_at),
            (IpProtocol::Udp, 48, 40)
        );
        assert_eq!(f.data, &data[..]);
        assert_eq!(f.max_payload(), 65_535 - 8);

        let whole = rebuild(f.header, f.next_header_at, f.protocol, &[5; 12]).unwrap();
        assert_eq!(whole.len(), 48 + 12);
        assert_eq!(
            whole[40], 17,
            "the Destination Options header now names UDP"
        );
        assert_eq!(u16::from_be_bytes([whole[4], whole[5]]), 8 + 12);
        let (repr, body) = ip::parse(&whole).unwrap();
        assert_eq!(repr.protocol(), IpProtocol::Udp);
        assert_eq!(body, &[5; 12]);
    }

    /// Every piece of a 3,000-byte UDP datagram cut at MTU 1280 fits it, and the pieces,
    /// parsed and put back in order, give the datagram again; in both families.
    #[test]
    fn split_pieces_rebuild_the_packet() {
        let (s6, d6) = (
            IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1)),
            IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2)),
        );
        for (src, dst) in [(IpAddr::V4(V4.0), IpAddr::V4(V4.1)), (s6, d6)] {
            let repr = IpRepr::new(src, dst, IpProtocol::Udp, 3000, 64).unwrap();
            let mut whole = vec![0u8; repr.buffer_len()];
            repr.emit(&mut whole);
            let hl = repr.header_len();
            for (i, b) in whole[hl..].iter_mut().enumerate() {
                *b = (i * 7) as u8;
            }
            let pieces = split(&whole, 1280, 0x1234_5678).unwrap();
            assert_eq!(pieces.len(), 3);
            let mut payload = Vec::new();
            let mut first = None;
            for (i, piece) in pieces.iter().enumerate() {
                assert!(piece.len() <= 1280);
                let f = Fragment::parse(piece).unwrap();
                assert_eq!(f.offset, payload.len());
                assert_eq!(f.more, i < 2);
                assert_eq!(f.protocol, IpProtocol::Udp);
                assert_eq!(f.ident, if src.is_ipv4() { 0x5678 } else { 0x1234_5678 });
                payload.extend_from_slice(f.data);
                first.get_or_insert((f.header.to_vec(), f.next_header_at));
            }
            let (header, at) = first.unwrap();
            let rebuilt = rebuild(&header, at, IpProtocol::Udp, &payload).unwrap();
            assert_eq!(ip::parse(&rebuilt).unwrap().1, &whole[hl..]);
        }
        // An MTU with no room for 8 bytes of data.
        let repr = IpRepr::new(IpAddr::V4(V4.0), IpAddr::V4(V4.1), IpProtocol::Udp, 100, 64);
        let mut small = vec![0u8; 120];
        repr.unwrap().emit(&mut small);
        assert!(split(&small, 27, 1).is_none());
    }

    #[test]
    fn oversized_rebuild_is_refused() {
        let first = v4_fragment(0, true, &[1; 16]);
        let f = Fragment::parse(&first).unwrap();
        assert!(rebuild(f.header, 0, f.protocol, &vec![0; f.max_payload()]).is_some());
        assert!(rebuild(f.header, 0, f.protocol, &vec![0; f.max_payload() + 1]).is_none());
    }
}
