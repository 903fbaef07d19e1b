//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) in one repr, covering what a TCP endpoint needs:
//! echo (to answer pings) and the errors that name a connection.

use std::net::{IpAddr, Ipv6Addr};

use super::checksum;
use super::ip::IpProtocol;
use super::{ipv4, ipv6, WireError};
use crate::seq::SeqNumber;

/// Every ICMP message starts with type, code, checksum and four type-specific bytes.
pub const HEADER_LEN: usize = 8;

/// ICMPv4 types (RFC 792).
mod v4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    /// Destination Unreachable code 4: "fragmentation needed and DF set" (RFC 792); RFC 1191
    /// §4 puts the next-hop MTU in the low 16 bits of the unused word.
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 types (RFC 4443 §2.1).
mod v6 {
    pub const DST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
}

/// An ICMP message of either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IcmpRepr<'a> {
    /// Echo request (v4 type 8, v6 type 128).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data, echoed back verbatim.
        data: &'a [u8],
    },
    /// Echo reply (v4 type 0, v6 type 129).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
        /// Data.
        data: &'a [u8],
    },
    /// v4 type 3 (codes other than 4), v6 type 1. `invoking` = the quoted original packet.
    DstUnreachable {
        /// The code: which kind of unreachable.
        code: u8,
        /// The quoted original packet.
        invoking: &'a [u8],
    },
    /// v6 type 2, and v4 type 3 code 4 ("fragmentation needed", next-hop MTU in bytes 6..8).
    PacketTooBig {
        /// The next-hop MTU.
        mtu: u32,
        /// The quoted original packet.
        invoking: &'a [u8],
    },
    /// v4 type 11, v6 type 3.
    TimeExceeded {
        /// 0: hop limit exceeded in transit; 1: fragment reassembly time exceeded.
        code: u8,
        /// The quoted original packet.
        invoking: &'a [u8],
    },
    /// Parameter problem: v4 type 12 (RFC 792: the pointer is the word's first byte), v6
    /// type 4 (RFC 4443 §3.4: code 0 erroneous header field, 1 unrecognized Next Header, 2
    /// unrecognized IPv6 option; the pointer is the whole word).
    ParamProblem {
        /// The code.
        code: u8,
        /// The offset in the quoted packet of the octet where the problem was found.
        pointer: u32,
        /// The quoted original packet.
        invoking: &'a [u8],
    },
    /// Any other type: parsed (checksum verified) but not acted on.
    Other {
        /// The type.
        icmp_type: u8,
        /// The code.
        code: u8,
    },
}

impl<'a> IcmpRepr<'a> {
    /// Parses an ICMPv4 message (the IPv4 payload) and verifies its checksum (RFC 792: "the
    /// 16-bit one's complement of the one's complement sum of the ICMP message").
    pub fn parse_v4(data: &'a [u8]) -> Result<Self, WireError> {
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if !checksum::verifies(checksum::partial(data)) {
            return Err(WireError::Checksum);
        }
        let (icmp_type, code, rest) = (data[0], data[1], &data[HEADER_LEN..]);
        Ok(match icmp_type {
            v4::ECHO_REQUEST => IcmpRepr::EchoRequest {
                ident: be16(data, 4),
                seq_no: be16(data, 6),
                data: rest,
            },
            v4::ECHO_REPLY => IcmpRepr::EchoReply {
                ident: be16(data, 4),
                seq_no: be16(data, 6),
                data: rest,
            },
            v4::DST_UNREACHABLE if code == v4::CODE_FRAG_NEEDED => IcmpRepr::PacketTooBig {
                mtu: u32::from(be16(data, 6)),
                invoking: rest,
            },
            v4::DST_UNREACHABLE => IcmpRepr::DstUnreachable {
                code,
                invoking: rest,
            },
            v4::TIME_EXCEEDED => IcmpRepr::TimeExceeded {
                code,
                invoking: rest,
            },
            v4::PARAM_PROBLEM => IcmpRepr::ParamProblem {
                code,
                pointer: u32::from(data[4]),
                invoking: rest,
            },
            _ => IcmpRepr::Other { icmp_type, code },
        })
    }

    /// Parses an ICMPv6 message (the upper-layer payload) and verifies its checksum, which
    /// covers the pseudo-header (RFC 4443 §2.3, RFC 8200 §8.1).
    pub fn parse_v6(data: &'a [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Self, WireError> {
        if data.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let len = u32::try_from(data.len()).map_err(|_| WireError::Malformed)?;
        let pseudo = checksum::pseudo_header_v6(src, dst, IpProtocol::Icmpv6, len);
        if !checksum::verifies(pseudo + checksum::partial(data)) {
            return Err(WireError::Checksum);
        }
        let (icmp_type, code, rest) = (data[0], data[1], &data[HEADER_LEN..]);
        Ok(match icmp_type {
            v6::ECHO_REQUEST => IcmpRepr::EchoRequest {
                ident: be16(data, 4),
                seq_no: be16(data, 6),
                data: rest,
            },
            v6::ECHO_REPLY => IcmpRepr::EchoReply {
                ident: be16(data, 4),
                seq_no: be16(data, 6),
                data: rest,
            },
            v6::DST_UNREACHABLE => IcmpRepr::DstUnreachable {
                code,
                invoking: rest,
            },
            // RFC 4443 §3.2: the MTU is the whole 32-bit word.
            v6::PACKET_TOO_BIG => IcmpRepr::PacketTooBig {
                mtu: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                invoking: rest,
            },
            v6::TIME_EXCEEDED => IcmpRepr::TimeExceeded {
                code,
                invoking: rest,
            },
            v6::PARAM_PROBLEM => IcmpRepr::ParamProblem {
                code,
                pointer: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                invoking: rest,
            },
            _ => IcmpRepr::Other { icmp_type, code },
        })
    }

    /// The message length: 8 plus echo data or the quoted packet. `Other` emits 8 bytes.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN
            + match self {
                IcmpRepr::EchoRequest { data, .. } | IcmpRepr::EchoReply { data, .. } => data.len(),
                IcmpRepr::DstUnreachable { invoking, .. }
                | IcmpRepr::PacketTooBig { invoking, .. }
                | IcmpRepr::TimeExceeded { invoking, .. }
                | IcmpRepr::ParamProblem { invoking, .. } => invoking.len(),
                IcmpRepr::Other { .. } => 0,
            }
    }

    /// Writes type, code and body into `buf[..buffer_len()]`, without the checksum.
    fn emit_body(&self, buf: &mut [u8], v6: bool) {
        let (icmp_type, code, word, body): (u8, u8, [u8; 4], &[u8]) = match *self {
            IcmpRepr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                let t = if v6 {
                    v6::ECHO_REQUEST
                } else {
                    v4::ECHO_REQUEST
                };
                (t, 0, echo_word(ident, seq_no), data)
            }
            IcmpRepr::EchoReply {
                ident,
                seq_no,
                data,
            } => {
                let t = if v6 { v6::ECHO_REPLY } else { v4::ECHO_REPLY };
                (t, 0, echo_word(ident, seq_no), data)
            }
            IcmpRepr::DstUnreachable { code, invoking } => {
                let t = if v6 {
                    v6::DST_UNREACHABLE
                } else {
                    v4::DST_UNREACHABLE
                };
                (t, code, [0; 4], invoking)
            }
            IcmpRepr::PacketTooBig { mtu, invoking } => {
                if v6 {
                    (v6::PACKET_TOO_BIG, 0, mtu.to_be_bytes(), invoking)
                } else {
                    // RFC 1191 §4: 16 unused bits, then the 16-bit next-hop MTU.
                    let m = u16::try_from(mtu).unwrap_or(u16::MAX).to_be_bytes();
                    (
                        v4::DST_UNREACHABLE,
                        v4::CODE_FRAG_NEEDED,
                        [0, 0, m[0], m[1]],
                        invoking,
                    )
                }
            }
            IcmpRepr::TimeExceeded { code, invoking } => {
                let t = if v6 {
                    v6::TIME_EXCEEDED
                } else {
                    v4::TIME_EXCEEDED
                };
                (t, code, [0; 4], invoking)
            }
            IcmpRepr::ParamProblem {
                code,
                pointer,
                invoking,
            } => {
                if v6 {
                    (v6::PARAM_PROBLEM, code, pointer.to_be_bytes(), invoking)
                } else {
                    // RFC 792: the pointer is one octet, then three unused.
                    let p = u8::try_from(pointer).unwrap_or(u8::MAX);
                    (v4::PARAM_PROBLEM, code, [p, 0, 0, 0], invoking)
                }
            }
            IcmpRepr::Other { icmp_type, code } => (icmp_type, code, [0; 4], &[]),
        };
        buf[0] = icmp_type;
        buf[1] = code;
        buf[2..4].fill(0);
        buf[4..8].copy_from_slice(&word);
        buf[HEADER_LEN..HEADER_LEN + body.len()].copy_from_slice(body);
    }

    /// Writes an ICMPv4 message, checksum included, into `buf[..buffer_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit_v4(&self, buf: &mut [u8]) {
        let len = self.buffer_len();
        self.emit_body(buf, false);
        let c = checksum::finish(checksum::partial(&buf[..len]));
        buf[2..4].copy_from_slice(&c.to_be_bytes());
    }

    /// Writes an ICMPv6 message, pseudo-header checksum included, into `buf[..buffer_len()]`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit_v6(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        let len = self.buffer_len();
        self.emit_body(buf, true);
        let pseudo = checksum::pseudo_header_v6(
            src,
            dst,
            IpProtocol::Icmpv6,
            u32::try_from(len).unwrap_or(u32::MAX),
        );
        let c = checksum::finish(pseudo + checksum::partial(&buf[..len]));
        buf[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

/// The TCP connection an ICMP error names.
///
/// Parses the quoted IP header (v4 or v6; IPv6 extension headers are walked without judging
/// their options) and the first 8 bytes of the TCP header behind it: RFC 792 guarantees only
/// "the internet header + 64 bits of the original data datagram", which is exactly ports and
/// sequence number. Lengths and checksums in the quote are not checked, since the quote is
/// cut short by design. Returns `(orig_src, orig_src_port, orig_dst, orig_dst_port, orig_seq)`,
/// or `None` if the quote is not TCP, is a non-first fragment, or is too short. A first
/// fragment is read past its Fragment header (IPv6) as past its header (IPv4).
pub fn invoking_tcp(invoking: &[u8]) -> Option<(IpAddr, u16, IpAddr, u16, SeqNumber)> {
    let (src, dst, tcp) = invoking_transport(invoking, IpProtocol::Tcp)?;
    if tcp.len() < 8 {
        return None;
    }
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((src, be16(tcp, 0), dst, be16(tcp, 2), SeqNumber(seq)))
}

/// The UDP socket an ICMP error names: `(orig_src, orig_src_port, orig_dst, orig_dst_port)`
/// from the quoted IP header and the first 4 bytes of the UDP header, as [`invoking_tcp`]
/// reads a TCP quote; `None` if the quote is not UDP, a non-first fragment, or too short.
pub fn invoking_udp(invoking: &[u8]) -> Option<(IpAddr, u16, IpAddr, u16)> {
    let (src, dst, udp) = invoking_transport(invoking, IpProtocol::Udp)?;
    if udp.len() < 4 {
        return None;
    }
    Some((src, be16(udp, 0), dst, be16(udp, 2)))
}

/// The addresses of a quoted packet of `protocol`, and the quoted bytes from its transport
/// header on.
fn invoking_transport(invoking: &[u8], protocol: IpProtocol) -> Option<(IpAddr, IpAddr, &[u8])> {
    let version = invoking.first()? >> 4;
    match version {
        4 => {
            if invoking.len() < ipv4::HEADER_LEN {
                return None;
            }
            let p = ipv4::Packet::new_unchecked(invoking);
            // A non-first fragment carries no transport header.
            if p.protocol() != protocol || p.frag_offset() != 0 {
                return None;
            }
            let header_len = p.header_len();
            if header_len < ipv4::HEADER_LEN {
                return None;
            }
            Some((
                IpAddr::V4(p.src_addr()),
                IpAddr::V4(p.dst_addr()),
                invoking.get(header_len..)?,
            ))
        }
        6 => {
            if invoking.len() < ipv6::HEADER_LEN {
                return None;
            }
            let p = ipv6::Packet::new_unchecked(invoking);
            let rest = &invoking[ipv6::HEADER_LEN..];
            let (found, offset) = match ipv6::walk_to(u8::from(p.next_header()), rest, true) {
                Ok(ipv6::Walked::Upper(found, offset)) => (found, offset),
                // The first piece of a datagram we cut up (a UDP one larger than the link)
                // carries its transport header behind the Fragment header: a Packet Too Big
                // about it is what path MTU discovery lives on (RFC 8201 §4), and Linux's
                // `icmpv6_notify` steps over a Fragment header at offset 0
                // (`ipv6_skip_exthdr`). A later piece carries none.
                Ok(ipv6::Walked::Fragment { at, .. }) => {
                    let fragment = rest.get(at..at + 8)?;
                    if u16::from_be_bytes([fragment[2], fragment[3]]) & 0xfff8 != 0 {
                        return None;
                    }
                    let behind = at + 8;
                    let (found, offset) = ipv6::walk(fragment[0], &rest[behind..], true).ok()?;
                    (found, behind + offset)
                }
                Err(_) => return None,
            };
            if found != protocol {
                return None;
            }
            Some((
                IpAddr::V6(p.src_addr()),
                IpAddr::V6(p.dst_addr()),
                rest.get(offset..)?,
            ))
        }
        _ => None,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn echo_word(ident: u16, seq_no: u16) -> [u8; 4] {
    let i = ident.to_be_bytes();
    let s = seq_no.to_be_bytes();
    [i[0], i[1], s[0], s[1]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{TcpFlags, TcpRepr};
    use crate::wire::IpRepr;
    use std::net::Ipv4Addr;

    fn a6() -> Ipv6Addr {
        "2001:2::1".parse().unwrap()
    }
    fn b6() -> Ipv6Addr {
        "2001:2::2".parse().unwrap()
    }

    #[test]
    fn echo_round_trip_v4() {
        let req = IcmpRepr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
            data: b"ping data",
        };
        let mut buf = vec![0u8; req.buffer_len()];
        req.emit_v4(&mut buf);
        assert_eq!(&buf[..2], &[8, 0]);
        assert_eq!(&buf[4..8], &[0x12, 0x34, 0, 7]);
        assert_eq!(IcmpRepr::parse_v4(&buf).unwrap(), req);
        let reply = IcmpRepr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data: b"ping data",
        };
        reply.emit_v4(&mut buf);
        assert_eq!(buf[0], 0);
        assert_eq!(IcmpRepr::parse_v4(&buf).unwrap(), reply);
    }

    #[test]
    fn echo_round_trip_v6() {
        let req = IcmpRepr::EchoRequest {
            ident: 1,
            seq_no: 2,
            data: &[0xde, 0xad, 0xbe],
        };
        let mut buf = vec![0u8; req.buffer_len()];
        req.emit_v6(&mut buf, a6(), b6());
        assert_eq!(buf[0], 128);
        assert_eq!(IcmpRepr::parse_v6(&buf, a6(), b6()).unwrap(), req);
        // The pseudo-header is covered: a different destination fails.
        assert_eq!(
            IcmpRepr::parse_v6(&buf, a6(), a6()),
            Err(WireError::Checksum)
        );
        let reply = IcmpRepr::EchoReply {
            ident: 1,
            seq_no: 2,
            data: &[],
        };
        let mut buf = vec![0u8; reply.buffer_len()];
        reply.emit_v6(&mut buf, b6(), a6());
        assert_eq!(buf[0], 129);
        assert_eq!(IcmpRepr::parse_v6(&buf, b6(), a6()).unwrap(), reply);
    }

    #[test]
    fn errors_round_trip_both_families() {
        let quote = [0x45u8; 28];
        let cases = [
            IcmpRepr::DstUnreachable {
                code: 3,
                invoking: &quote,
            },
            IcmpRepr::PacketTooBig {
                mtu: 1280,
                invoking: &quote,
            },
            IcmpRepr::TimeExceeded {
                code: 0,
                invoking: &quote,
            },
            IcmpRepr::Other {
                icmp_type: 13,
                code: 0,
            },
        ];
        for repr in cases {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit_v4(&mut buf);
            assert_eq!(IcmpRepr::parse_v4(&buf).unwrap(), repr);
            repr.emit_v6(&mut buf, a6(), b6());
            assert_eq!(IcmpRepr::parse_v6(&buf, a6(), b6()).unwrap(), repr);
        }
    }

    #[test]
    fn frag_needed_is_packet_too_big() {
        // RFC 1191 §4 layout: type 3, code 4, unused 16 bits, next-hop MTU 1400.
        let mut msg = [3u8, 4, 0, 0, 0, 0, 0x05, 0x78];
        let c = checksum::finish(checksum::partial(&msg));
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            IcmpRepr::parse_v4(&msg).unwrap(),
            IcmpRepr::PacketTooBig {
                mtu: 1400,
                invoking: &[]
            }
        );
    }

    #[test]
    fn v6_packet_too_big_uses_32_bits() {
        let repr = IcmpRepr::PacketTooBig {
            mtu: 70_000,
            invoking: &[],
        };
        let mut buf = [0u8; 8];
        repr.emit_v6(&mut buf, a6(), b6());
        assert_eq!(&buf[..2], &[2, 0]);
        assert_eq!(&buf[4..8], &70_000u32.to_be_bytes());
        assert_eq!(IcmpRepr::parse_v6(&buf, a6(), b6()).unwrap(), repr);
    }

    #[test]
    fn short_and_corrupt_messages() {
        assert_eq!(IcmpRepr::parse_v4(&[8, 0, 0]), Err(WireError::Truncated));
        assert_eq!(
            IcmpRepr::parse_v6(&[128; 7], a6(), b6()),
            Err(WireError::Truncated)
        );
        let req = IcmpRepr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"x",
        };
        let mut buf = [0u8; 9];
        req.emit_v4(&mut buf);
        buf[8] ^= 0x40;
        assert_eq!(IcmpRepr::parse_v4(&buf), Err(WireError::Checksum));
    }

    /// Builds a full IP+TCP packet to quote.
    fn tcp_packet(src: IpAddr, dst: IpAddr) -> Vec<u8> {
        let tcp = TcpRepr::new(
            40000,
            443,
            TcpFlags::SYN,
            crate::SeqNumber(0xdead_beef),
            crate::SeqNumber(0),
        );
        let ip = IpRepr::new(src, dst, IpProtocol::Tcp, tcp.buffer_len(), 64).unwrap();
        let mut buf = vec![0u8; ip.buffer_len()];
        ip.emit(&mut buf);
        tcp.emit(&mut buf[ip.header_len()..], src, dst);
        buf
    }

    #[test]
    fn invoking_tcp_v4_full_and_cut() {
        let src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let dst = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let pkt = tcp_packet(src, dst);
        let want = Some((src, 40000, dst, 443, SeqNumber(0xdead_beef)));
        assert_eq!(invoking_tcp(&pkt), want);
        // RFC 792 quote: header + 8 bytes.
        assert_eq!(invoking_tcp(&pkt[..28]), want);
        assert_eq!(invoking_tcp(&pkt[..27]), None);
        assert_eq!(invoking_tcp(&pkt[..10]), None);
        assert_eq!(invoking_tcp(&[]), None);
    }

    #[test]
    fn invoking_tcp_v6_full_and_cut() {
        let src = IpAddr::V6(a6());
        let dst = IpAddr::V6(b6());
        let pkt = tcp_packet(src, dst);
        let want = Some((src, 40000, dst, 443, SeqNumber(0xdead_beef)));
        assert_eq!(invoking_tcp(&pkt), want);
        assert_eq!(invoking_tcp(&pkt[..48]), want);
        assert_eq!(invoking_tcp(&pkt[..47]), None);
    }

    #[test]
    fn invoking_tcp_rejects_other_protocols_and_fragments() {
        let src = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let dst = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
        let mut pkt = tcp_packet(src, dst);
        pkt[9] = 17; // UDP
        assert_eq!(invoking_tcp(&pkt), None);
        pkt[9] = 6;
        pkt[6..8].copy_from_slice(&[0x00, 0x10]); // offset 128 bytes
        assert_eq!(invoking_tcp(&pkt), None);
        let mut v6 = tcp_packet(IpAddr::V6(a6()), IpAddr::V6(b6()));
        v6[6] = 58;
        assert_eq!(invoking_tcp(&v6), None);
        assert_eq!(invoking_tcp(&[0x75; 60]), None);
    }

    /// A UDP datagram larger than the link leaves in pieces; a Packet Too Big quotes the
    /// piece that met the narrower hop. The first carries the UDP header behind its
    /// Fragment header, and names the socket; a later one carries none, and names nothing.
    #[test]
    fn invoking_udp_reads_a_quoted_first_fragment() {
        let (src, dst) = (IpAddr::V6(a6()), IpAddr::V6(b6()));
        let data = vec![7u8; 3000];
        let udp = crate::wire::UdpRepr {
            src_port: 5000,
            dst_port: 9000,
            payload: &data,
        };
        let ip = IpRepr::new(src, dst, IpProtocol::Udp, udp.buffer_len(), 64).unwrap();
        let mut packet = vec![0u8; ip.buffer_len()];
        ip.emit(&mut packet);
        udp.emit(&mut packet[ip.header_len()..], src, dst);
        let pieces = super::super::fragment::split(&packet, 1500, 1).unwrap();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces[0][6], 44, "a Fragment header follows the fixed one");
        let want = Some((src, 5000, dst, 9000));
        assert_eq!(invoking_udp(&packet), want);
        assert_eq!(invoking_udp(&pieces[0]), want);
        // As much as an ICMPv6 error quotes (RFC 4443 §2.4: up to the minimum MTU), and
        // down to the four bytes that hold the ports.
        assert_eq!(invoking_udp(&pieces[0][..1232]), want);
        assert_eq!(invoking_udp(&pieces[0][..52]), want);
        assert_eq!(invoking_udp(&pieces[0][..51]), None);
        assert_eq!(invoking_udp(&pieces[1]), None);
        assert_eq!(invoking_udp(&pieces[2]), None);
        assert_eq!(invoking_tcp(&pieces[0]), None);
    }

    #[test]
    fn invoking_tcp_walks_v6_ext_headers() {
        let src = IpAddr::V6(a6());
        let dst = IpAddr::V6(b6());
        let pkt = tcp_packet(src, dst);
        // Insert a Destination Options header between the fixed header and TCP.
        let mut quoted = pkt[..40].to_vec();
        quoted[6] = 60;
        quoted.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        quoted.extend_from_slice(&pkt[40..48]);
        assert_eq!(
            invoking_tcp(&quoted),
            Some((src, 40000, dst, 443, SeqNumber(0xdead_beef)))
        );
    }
}
