//! TCP segmentation offload in software: cutting a super-segment into segments (GSO/TSO) and
//! gluing consecutive segments back into one (GRO).
//!
//! A *super-segment* is one IP/TCP header followed by the payload of several segments of
//! `segment_size` bytes each (the last may be shorter), as the core emits it when
//! [`Transmit::segment_size`](crate::Transmit::segment_size) is `Some`, and as Linux hands a
//! TUN reader a TSO packet. This module is the one place where such packets are cut and
//! glued; the runtime's devices and the test kit's simulated network both use it.
//!
//! - [`Segmenter`] (and the helpers [`segments`] and [`split`]) cuts a super-segment the way
//!   Linux's software GSO does (net/ipv4/tcp_offload.c `tcp_gso_segment`, af_inet.c
//!   `inet_gso_segment`): per segment the IPv4 total length, identification and header
//!   checksum or the IPv6 payload length, the sequence number, FIN and PSH on the last segment
//!   only, CWR on the first only, and a TCP checksum either complete or left partial
//!   ([`TcpChecksum`]).
//! - [`Coalescer`] glues segments the way Linux's `tcp_gro_receive` does: consecutive,
//!   in-order data segments of one flow, all of one size but the last, with identical headers
//!   apart from the lengths, the IPv4 identification, the sequence number, PSH and the
//!   timestamp values.
//!
//! Both read and write packets only through the [`ipv4`], [`ipv6`] and [`tcp`] views and sum
//! with [`checksum`]. IPv4 options and IPv6 extension headers (walked by
//! [`ipv6::skip_ext_headers`], as the stack walks them) are copied into every cut segment,
//! as Linux's `ipv6_gso_segment` copies them: the kernel's TCP hands a TUN such super-packets
//! from a socket with `IPV6_DSTOPTS`, say. The gluing leaves them out. Any byte string is safe
//! input: a bad packet is a [`GsoError`], never a panic.

use super::{checksum, ipv4, ipv6, tcp, IpProtocol, TcpFlags, TcpRepr, WireError};
use crate::seq::SeqNumber;
use core::net::IpAddr;

/// The largest IPv4 packet: the total length is a 16-bit field (RFC 791 §3.1).
pub const MAX_IPV4_LEN: usize = u16::MAX as usize;
/// The largest IPv6 packet without jumbograms: a 16-bit payload length behind the 40-byte
/// fixed header (RFC 8200 §3).
pub const MAX_IPV6_LEN: usize = ipv6::HEADER_LEN + u16::MAX as usize;

/// Why a packet cannot be cut or glued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GsoError {
    /// The IP or TCP header is truncated, malformed, a fragment, or of an unknown IP version.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The upper-layer protocol, after any IPv6 extension headers, is not TCP.
    #[error("not a TCP packet")]
    NotTcp,
    /// A segment size of zero.
    #[error("segment size 0")]
    ZeroSegmentSize,
    /// The output buffer cannot hold the segment.
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// What each cut (or glued) segment's TCP checksum field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpChecksum {
    /// The complete checksum (RFC 9293 §3.1), as the wire wants it.
    #[default]
    Complete,
    /// Only the folded, uncomplemented pseudo-header sum over the segment's TCP length, for a
    /// device that finishes it (Linux `CHECKSUM_PARTIAL`, virtio-net `NEEDS_CSUM`:
    /// `csum_start` = [`TcpLayout::ip_header_len`], `csum_offset` = 16).
    Partial,
}

/// Where the headers of an IPv4 or IPv6 TCP packet lie, found through the wire views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpLayout {
    /// IPv6 rather than IPv4.
    pub ipv6: bool,
    /// The IP header length, IPv4 options or IPv6 extension headers included: where the TCP
    /// header starts (`csum_start`).
    pub ip_header_len: usize,
    /// IP plus TCP header length: where the payload starts.
    pub header_len: usize,
    /// The packet's length by its own IP length field; bytes past it (link padding) are not
    /// part of it.
    pub len: usize,
}

impl TcpLayout {
    /// Locates the headers of an IPv4 or IPv6 TCP packet. Checks lengths (as
    /// [`ipv4::Packet::check_len`], [`ipv6::Packet::check_len`] and [`tcp::Packet::check_len`]
    /// do), the version, and refuses IPv4 fragments and IPv6 packets whose extension headers
    /// the stack would refuse (see [`ipv6::skip_ext_headers`]). Checksums are not verified: a
    /// super-segment's may be partial.
    pub fn parse(packet: &[u8]) -> Result<TcpLayout, GsoError> {
        Self::locate(packet, None)
    }

    /// [`TcpLayout::parse`] for a packet of `len` bytes of which only the first, `head`, are
    /// at hand, its IP and TCP headers among them: a super-segment whose payload lies
    /// elsewhere ([`Transmit::head_len`](crate::Transmit::head_len)). Its IP length must be
    /// `len`.
    pub fn parse_head(head: &[u8], len: usize) -> Result<TcpLayout, GsoError> {
        Self::locate(head, Some(len))
    }

    /// The headers in `bytes`: the whole packet (`whole_len` `None`), or its first bytes of
    /// `whole_len` in all.
    fn locate(bytes: &[u8], whole_len: Option<usize>) -> Result<TcpLayout, GsoError> {
        let first = *bytes.first().ok_or(WireError::Truncated)?;
        let (ipv6, ip_header_len, len) = match first >> 4 {
            4 => {
                let ip = match whole_len {
                    None => ipv4::Packet::new_checked(bytes)?,
                    // `check_len` but for the total length, which counts bytes not here.
                    Some(_) => {
                        if bytes.len() < ipv4::HEADER_LEN {
                            return Err(WireError::Truncated.into());
                        }
                        let ip = ipv4::Packet::new_unchecked(bytes);
                        let header = ip.header_len();
                        if header < ipv4::HEADER_LEN || usize::from(ip.total_len()) < header {
                            return Err(WireError::Malformed.into());
                        }
                        if header > bytes.len() {
                            return Err(WireError::Truncated.into());
                        }
                        ip
                    }
                };
                // RFC 791 §3.2: MF or a non-zero offset is a fragment, never a TSO packet.
                if ip.more_frags() || ip.frag_offset() != 0 {
                    return Err(WireError::Fragment.into());
                }
                if ip.protocol() != IpProtocol::Tcp {
                    return Err(GsoError::NotTcp);
                }
                (false, ip.header_len(), usize::from(ip.total_len()))
            }
            6 => {
                let ip = match whole_len {
                    None => ipv6::Packet::new_checked(bytes)?,
                    Some(_) if bytes.len() < ipv6::HEADER_LEN => {
                        return Err(WireError::Truncated.into())
                    }
                    Some(_) => ipv6::Packet::new_unchecked(bytes),
                };
                let len = ipv6::HEADER_LEN + usize::from(ip.payload_len());
                // RFC 8200 §4: TCP may follow extension headers, which lie in `bytes` (a
                // head holds all the headers).
                let ip_header_len = match ip.next_header() {
                    IpProtocol::Tcp => ipv6::HEADER_LEN,
                    IpProtocol::Unknown(first) => {
                        let exts = &bytes[ipv6::HEADER_LEN..len.min(bytes.len())];
                        match ipv6::skip_ext_headers(first, exts)? {
                            (IpProtocol::Tcp, at) => ipv6::HEADER_LEN + at,
                            _ => return Err(GsoError::NotTcp),
                        }
                    }
                    _ => return Err(GsoError::NotTcp),
                };
                (true, ip_header_len, len)
            }
            _ => return Err(WireError::Unsupported.into()),
        };
        if whole_len.is_some_and(|whole| whole != len) {
            return Err(WireError::Malformed.into());
        }
        let segment = tcp::Packet::new_checked(&bytes[ip_header_len..len.min(bytes.len())])?;
        Ok(TcpLayout {
            ipv6,
            ip_header_len,
            header_len: ip_header_len + segment.header_len(),
            len,
        })
    }

    /// Payload bytes.
    pub fn payload_len(&self) -> usize {
        self.len - self.header_len
    }

    /// The source and destination addresses of `packet` (the packet this layout describes).
    fn addrs(&self, packet: &[u8]) -> (IpAddr, IpAddr) {
        if self.ipv6 {
            let ip = ipv6::Packet::new_unchecked(packet);
            (IpAddr::V6(ip.src_addr()), IpAddr::V6(ip.dst_addr()))
        } else {
            let ip = ipv4::Packet::new_unchecked(packet);
            (IpAddr::V4(ip.src_addr()), IpAddr::V4(ip.dst_addr()))
        }
    }

    /// What [`TcpChecksum::Partial`] puts in the checksum field of `packet` (the packet this
    /// layout describes, or a segment with the same headers) for a TCP length of `tcp_len`:
    /// the folded, uncomplemented pseudo-header sum (RFC 9293 §3.1, RFC 8200 §8.1).
    pub fn partial_checksum(&self, packet: &[u8], tcp_len: usize) -> u16 {
        let (src, dst) = self.addrs(packet);
        // A TCP length is below 2^16 + 40 in every packet these layouts describe.
        let len = u32::try_from(tcp_len).unwrap_or(u32::MAX);
        checksum::fold(checksum::pseudo_header(src, dst, IpProtocol::Tcp, len).unwrap_or(0))
    }

    /// Rewrites the IP length field (and the IPv4 header checksum) of `packet[..len]`, and
    /// fills its TCP checksum as `mode` says. `packet` has these headers.
    fn finish(&self, packet: &mut [u8], len: usize, mode: TcpChecksum) {
        let packet = &mut packet[..len];
        if self.ipv6 {
            // RFC 8200 §3: the payload length counts everything after the fixed header.
            let plen = u16::try_from(len - ipv6::HEADER_LEN).unwrap_or(u16::MAX);
            ipv6::Packet::new_unchecked(&mut *packet).set_payload_len(plen);
        } else {
            let mut ip = ipv4::Packet::new_unchecked(&mut *packet);
            ip.set_total_len(u16::try_from(len).unwrap_or(u16::MAX));
            ip.fill_checksum();
        }
        let (src, dst) = self.addrs(packet);
        let partial = self.partial_checksum(packet, len - self.ip_header_len);
        let mut segment = tcp::Packet::new_unchecked(&mut packet[self.ip_header_len..]);
        match mode {
            TcpChecksum::Complete => segment.fill_checksum(src, dst),
            TcpChecksum::Partial => segment.set_checksum(partial),
        }
    }
}

/// Finishes a TCP packet whose checksum field holds the partial (pseudo-header) sum: the sum
/// over the TCP header and payload, that field included, is stored there complemented (Linux
/// `skb_checksum_help`, virtio 1.1 §5.1.6.2). Used where a device would finish a
/// [`TcpChecksum::Partial`] packet, such as a simulated link.
pub fn complete_checksum(packet: &mut [u8]) -> Result<(), GsoError> {
    let layout = TcpLayout::parse(packet)?;
    let segment = &mut packet[layout.ip_header_len..layout.len];
    let sum = checksum::finish(checksum::partial(segment));
    tcp::Packet::new_unchecked(segment).set_checksum(sum);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Cutting
// ---------------------------------------------------------------------------------------------

/// A super-segment being cut into segments of `segment_size` payload bytes, one per call.
///
/// It holds only offsets: the super-segment stays in the caller's buffer and is passed to
/// every [`next_segment`](Segmenter::next_segment) call, which writes one segment into another
/// buffer. So a device can cut a packet it holds in its own receive buffer without copying it
/// first.
#[derive(Debug, Clone)]
pub struct Segmenter {
    layout: TcpLayout,
    segment_size: usize,
    checksum: TcpChecksum,
    /// Offset of the next segment's payload; `None` once the last segment is out.
    next: Option<usize>,
    /// Segments produced so far.
    index: usize,
}

impl Segmenter {
    /// Checks `packet`, an IPv4 or IPv6 TCP packet, and prepares to cut it at
    /// `segment_size` payload bytes with TCP checksums as `checksum` says.
    pub fn new(
        packet: &[u8],
        segment_size: usize,
        checksum: TcpChecksum,
    ) -> Result<Segmenter, GsoError> {
        let layout = TcpLayout::parse(packet)?;
        if segment_size == 0 {
            return Err(GsoError::ZeroSegmentSize);
        }
        Ok(Segmenter {
            layout,
            segment_size,
            checksum,
            next: Some(layout.header_len),
            index: 0,
        })
    }

    /// The headers of the packet being cut.
    pub fn layout(&self) -> TcpLayout {
        self.layout
    }

    /// Segments still to come. A packet without payload is one (header-only) segment.
    pub fn remaining(&self) -> usize {
        match self.next {
            Some(at) => (self.layout.len - at).div_ceil(self.segment_size).max(1),
            None => 0,
        }
    }

    /// The length of the longest segment: what an output buffer must hold.
    pub fn max_segment_len(&self) -> usize {
        self.layout.header_len + self.layout.payload_len().min(self.segment_size)
    }

    /// Writes the next segment of `packet` (the bytes given to [`Segmenter::new`]) into `out`
    /// and returns its length, or `None` after the last one. After an error it is done.
    pub fn next_segment(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Option<Result<usize, GsoError>> {
        let at = self.next?;
        let l = self.layout;
        if packet.len() < l.len {
            self.next = None;
            return Some(Err(WireError::Truncated.into()));
        }
        let take = (l.len - at).min(self.segment_size);
        let last = at + take >= l.len;
        let len = l.header_len + take;
        let Some(seg) = out.get_mut(..len) else {
            self.next = None;
            return Some(Err(GsoError::BufferTooSmall));
        };
        seg[..l.header_len].copy_from_slice(&packet[..l.header_len]);
        seg[l.header_len..].copy_from_slice(&packet[at..at + take]);

        if !l.ipv6 {
            // Linux inet_gso_segment: the identification counts up from the super-segment's
            // (a TUN never asks for SKB_GSO_TCP_FIXEDID).
            let mut ip = ipv4::Packet::new_unchecked(&mut *seg);
            ip.set_ident(ip.ident().wrapping_add(self.index as u16));
        }
        let mut tcp = tcp::Packet::new_unchecked(&mut seg[l.ip_header_len..]);
        // tcp_gso_segment: each segment's sequence number is the first one plus the payload
        // before it (mod 2^32, RFC 9293 §3.4).
        tcp.set_seq_number(tcp.seq_number() + (at - l.header_len));
        // FIN and PSH belong to the end of the data, so only the last segment keeps them;
        // CWR (RFC 3168 §6.1.2) signals one reduction, so only the first keeps it.
        let mut flags = tcp.flags().0;
        if !last {
            flags &= !(TcpFlags::FIN.0 | TcpFlags::PSH.0);
        }
        if self.index > 0 {
            flags &= !TcpFlags::CWR.0;
        }
        tcp.set_flags(TcpFlags(flags));
        l.finish(seg, len, self.checksum);

        self.index += 1;
        self.next = (!last).then_some(at + take);
        Some(Ok(len))
    }
}

/// Cuts `packet` at `segment_size` payload bytes, writing each segment into `scratch` and
/// handing it to `each`; returns how many segments there were.
///
/// Every check (the packet, the segment size, the room in `scratch`) is made before the
/// first segment, so an error means `each` was never called.
pub fn segments(
    packet: &[u8],
    segment_size: usize,
    checksum: TcpChecksum,
    scratch: &mut [u8],
    mut each: impl FnMut(&[u8]),
) -> Result<usize, GsoError> {
    let mut cut = Segmenter::new(packet, segment_size, checksum)?;
    if scratch.len() < cut.max_segment_len() {
        return Err(GsoError::BufferTooSmall);
    }
    let mut n = 0;
    while let Some(len) = cut.next_segment(packet, scratch) {
        each(&scratch[..len?]);
        n += 1;
    }
    Ok(n)
}

/// Cuts `packet` at `segment_size` payload bytes into owned segments.
pub fn split(
    packet: &[u8],
    segment_size: usize,
    checksum: TcpChecksum,
) -> Result<Vec<Vec<u8>>, GsoError> {
    let mut out = Vec::new();
    let mut scratch = vec![0u8; packet.len()];
    segments(packet, segment_size, checksum, &mut scratch, |s| {
        out.push(s.to_vec())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Gluing
// ---------------------------------------------------------------------------------------------

/// What a [`Coalescer`] needs to know of one candidate segment.
struct Candidate<'a> {
    layout: TcpLayout,
    tcp: TcpRepr<'a>,
}

/// Whether `packet` may join a super-segment at all: TCP with data, no IPv4 options or IPv6
/// extension headers (which [`same_ip_header`] does not compare), no bytes past the IP
/// length, valid options, and flags ACK or ACK|PSH (as Linux GRO: SYN, FIN, RST, URG, ECE and
/// CWR segments always travel alone).
fn candidate(packet: &[u8]) -> Option<Candidate<'_>> {
    let layout = TcpLayout::parse(packet).ok()?;
    let (src, dst) = layout.addrs(packet);
    // The checksum is the receiver's to judge (or the device's to finish): only the structure
    // is checked here, options included.
    let tcp = TcpRepr::parse(&packet[layout.ip_header_len..layout.len], src, dst, true).ok()?;
    let flags = tcp.flags;
    let fixed_header = if layout.ipv6 {
        ipv6::HEADER_LEN
    } else {
        ipv4::HEADER_LEN
    };
    let ok = layout.ip_header_len == fixed_header
        && (flags == TcpFlags::ACK || flags == TcpFlags::ACK | TcpFlags::PSH)
        && layout.payload_len() > 0
        && layout.len == packet.len();
    ok.then_some(Candidate { layout, tcp })
}

/// Whether two IP headers of one family agree in everything but the lengths, the IPv4
/// identification and the IPv4 header checksum.
fn same_ip_header(ipv6: bool, a: &[u8], b: &[u8]) -> bool {
    if ipv6 {
        let (a, b) = (
            ipv6::Packet::new_unchecked(a),
            ipv6::Packet::new_unchecked(b),
        );
        a.traffic_class() == b.traffic_class()
            && a.flow_label() == b.flow_label()
            && a.next_header() == b.next_header()
            && a.hop_limit() == b.hop_limit()
            && a.src_addr() == b.src_addr()
            && a.dst_addr() == b.dst_addr()
    } else {
        let (a, b) = (
            ipv4::Packet::new_unchecked(a),
            ipv4::Packet::new_unchecked(b),
        );
        a.header_len() == b.header_len()
            && a.tos() == b.tos()
            && a.dont_frag() == b.dont_frag()
            && a.hop_limit() == b.hop_limit()
            && a.protocol() == b.protocol()
            && a.src_addr() == b.src_addr()
            && a.dst_addr() == b.dst_addr()
    }
}

/// Whether two TCP headers of one length agree in everything but the sequence number, the
/// checksum, PSH and the timestamp values: same ports, ACK number, flags, window, urgent
/// pointer and option bytes.
///
/// The super-segment keeps the first header, so a later segment's newer TSval/TSecr gives way
/// to the first one's: an older echo only makes the peer's RTT sample a little longer, and an
/// older TSval stays within PAWS (RFC 7323 §5) because it was acceptable when sent first.
fn same_tcp_header(ta: &TcpRepr<'_>, a_hdr: &[u8], tb: &TcpRepr<'_>, b_hdr: &[u8]) -> bool {
    let fixed = a_hdr.len() == b_hdr.len()
        && ta.src_port == tb.src_port
        && ta.dst_port == tb.dst_port
        && ta.ack_number == tb.ack_number
        && TcpFlags(ta.flags.0 & !TcpFlags::PSH.0) == TcpFlags(tb.flags.0 & !TcpFlags::PSH.0)
        && ta.window_len == tb.window_len
        && ta.urgent_pointer == tb.urgent_pointer;
    if !fixed {
        return false;
    }
    let (oa, ob) = (&a_hdr[tcp::HEADER_LEN..], &b_hdr[tcp::HEADER_LEN..]);
    if oa == ob {
        return true;
    }
    // The option areas differ. They may still differ only in the Timestamps values: then some
    // offset `i` holds kind 8, length 10 and the parsed values in both (RFC 7323 §3.2), and
    // the bytes before and after it are equal. This is sound without walking the options: if
    // such an `i` lay inside another option's data, every real Timestamps option would sit in
    // the equal bytes, so both would parse to the same values, and the equal ten bytes at `i`
    // would make the areas equal after all.
    let (Some(sa), Some(sb)) = (ta.timestamp, tb.timestamp) else {
        return false;
    };
    let value = |ts: super::TcpTimestamp| {
        let mut v = [8u8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
        v[2..6].copy_from_slice(&ts.tsval.to_be_bytes());
        v[6..].copy_from_slice(&ts.tsecr.to_be_bytes());
        v
    };
    let (va, vb) = (value(sa), value(sb));
    (0..oa.len().saturating_sub(9)).any(|i| {
        oa[i..i + 10] == va
            && ob[i..i + 10] == vb
            && oa[..i] == ob[..i]
            && oa[i + 10..] == ob[i + 10..]
    })
}

/// Consecutive TCP segments of one flow, glued into one super-segment (GRO).
///
/// Segments are offered with [`push`](Coalescer::push); [`finish`](Coalescer::finish) hands
/// out the result. The rules, after Linux's `tcp_gro_receive`:
/// - only data segments with flags ACK or ACK|PSH join, without IPv4 options, IPv6 extension
///   headers or bytes past the IP length;
/// - a segment joins when it continues the sequence space exactly, its IP and TCP headers
///   equal the first one's apart from the lengths, IPv4 identification, sequence number,
///   PSH and timestamp values, its payload is at most the first one's (the segment size),
///   and the result still fits the IP length field (or the limit given);
/// - the batch is closed by a shorter segment (all but the last are of the segment size), by
///   PSH (merged into the header: the sender had no more), and when another full segment
///   would not fit.
///
/// The buffer holds the first segment's headers followed by every segment's payload; the
/// length fields and checksums are written by `finish`.
#[derive(Debug, Clone)]
pub struct Coalescer {
    buf: Vec<u8>,
    layout: Option<TcpLayout>,
    /// The first segment's TCP header fields, which later ones must match.
    first_tcp: TcpRepr<'static>,
    /// Payload bytes per segment: the first segment's.
    segment_size: usize,
    segments: usize,
    /// The sequence number the next segment must carry.
    next_seq: SeqNumber,
    /// A short or PSH segment ended the batch, or it was finished.
    closed: bool,
    /// The largest super-segment to build, below the family's own limit.
    max_len: usize,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

impl Coalescer {
    /// An empty batch that builds packets up to the largest the IP length field allows
    /// ([`MAX_IPV4_LEN`], [`MAX_IPV6_LEN`]).
    pub fn new() -> Coalescer {
        Coalescer::with_max_len(MAX_IPV6_LEN)
    }

    /// An empty batch that builds packets of at most `max_len` bytes (and never past the IP
    /// length field).
    pub fn with_max_len(max_len: usize) -> Coalescer {
        Coalescer {
            buf: Vec::new(),
            layout: None,
            first_tcp: TcpRepr::new(0, 0, TcpFlags::empty(), SeqNumber(0), SeqNumber(0)),
            segment_size: 0,
            segments: 0,
            next_seq: SeqNumber(0),
            closed: false,
            max_len,
        }
    }

    /// Segments in the batch.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// The batch's segment size: the first segment's payload length (0 when empty).
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Whether the batch takes no more segments and should be finished now.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The largest packet of the batch's family.
    fn limit(&self, ipv6: bool) -> usize {
        self.max_len
            .min(if ipv6 { MAX_IPV6_LEN } else { MAX_IPV4_LEN })
    }

    /// Adds `packet` if it may join and continues the batch (or starts an empty one).
    /// `false` means it was not taken: finish the batch, then offer it again or pass it on
    /// alone.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Some(c) = candidate(packet) else {
            return false;
        };
        let l = c.layout;
        let payload_len = l.payload_len();
        let psh = c.tcp.flags.contains(TcpFlags::PSH);
        match self.layout {
            None => {
                if packet.len() > self.limit(l.ipv6) {
                    return false;
                }
                self.buf.clear();
                self.buf.extend_from_slice(packet);
                self.layout = Some(l);
                self.first_tcp = TcpRepr {
                    payload: &[],
                    ..c.tcp
                };
                self.segment_size = payload_len;
                self.segments = 1;
                self.closed = false;
            }
            Some(first) => {
                if self.closed
                    || first.ipv6 != l.ipv6
                    || first.header_len != l.header_len
                    || c.tcp.seq_number != self.next_seq
                    || payload_len > self.segment_size
                    || self.buf.len() + payload_len > self.limit(l.ipv6)
                {
                    return false;
                }
                let head = &self.buf[..first.header_len];
                let fits = same_ip_header(l.ipv6, head, packet)
                    && same_tcp_header(
                        &self.first_tcp,
                        &head[first.ip_header_len..],
                        &c.tcp,
                        &packet[l.ip_header_len..l.header_len],
                    );
                if !fits {
                    return false;
                }
                self.buf.extend_from_slice(&packet[l.header_len..]);
                self.segments += 1;
                if psh {
                    // Linux tcp_gro_receive ORs PSH into the merged header and ends the flow.
                    let mut t = tcp::Packet::new_unchecked(&mut self.buf[first.ip_header_len..]);
                    t.set_flags(t.flags() | TcpFlags::PSH);
                }
            }
        }
        self.next_seq = c.tcp.seq_number + payload_len;
        // A short segment must be the last (all but the last are exactly the segment size),
        // PSH ends the data the sender had, and a full segment more might not fit.
        if payload_len < self.segment_size
            || psh
            || self.buf.len() + self.segment_size > self.limit(l.ipv6)
        {
            self.closed = true;
        }
        true
    }

    /// Closes the batch and returns it, or `None` if it is empty. A single segment comes back
    /// as it was pushed. Several come back as one packet under the first one's headers, with
    /// the IP length, the IPv4 header checksum and the TCP checksum (as `checksum` says)
    /// written. May be called again until [`Coalescer::clear`].
    pub fn finish(&mut self, checksum: TcpChecksum) -> Option<Coalesced<'_>> {
        let layout = self.layout?;
        self.closed = true;
        if self.segments == 1 {
            return Some(Coalesced {
                packet: &self.buf,
                layout,
                segment_size: None,
                segments: 1,
            });
        }
        let len = self.buf.len();
        layout.finish(&mut self.buf, len, checksum);
        Some(Coalesced {
            packet: &self.buf,
            layout: TcpLayout { len, ..layout },
            segment_size: Some(self.segment_size),
            segments: self.segments,
        })
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.layout = None;
        self.segments = 0;
        self.segment_size = 0;
        self.closed = false;
    }
}

/// A batch handed out by [`Coalescer::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coalesced<'a> {
    /// The packet: a single segment unchanged, or the super-segment.
    pub packet: &'a [u8],
    /// Where its headers lie.
    pub layout: TcpLayout,
    /// `Some(n)` for a super-segment of segments of `n` payload bytes (the last may be
    /// shorter); `None` for a single segment.
    pub segment_size: Option<usize>,
    /// How many segments it holds.
    pub segments: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ip, IpRepr, TcpTimestamp};
    use proptest::prelude::*;

    const A4: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(198, 18, 0, 1));
    const B4: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(198, 18, 0, 2));
    const A6: IpAddr = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2));

    /// A complete IP/TCP packet as the core emits it.
    fn packet(v6: bool, flags: TcpFlags, seq: u32, ts: Option<(u32, u32)>, data: &[u8]) -> Vec<u8> {
        let (src, dst) = if v6 { (A6, B6) } else { (A4, B4) };
        let mut t = TcpRepr::new(40000, 80, flags, SeqNumber(seq), SeqNumber(77));
        t.window_len = 1000;
        t.timestamp = ts.map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr });
        t.payload = data;
        let ip = IpRepr::new(src, dst, IpProtocol::Tcp, t.buffer_len(), 64).unwrap();
        let mut buf = vec![0u8; ip.buffer_len()];
        ip.emit(&mut buf);
        t.emit(&mut buf[ip.header_len()..], src, dst);
        buf
    }

    /// The packet parsed with every checksum verified.
    fn parse(p: &[u8]) -> TcpRepr<'_> {
        let (ip, payload) = ip::parse(p).expect("valid IP");
        TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).expect("valid TCP")
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn cuts_with_per_segment_fields() {
        for v6 in [false, true] {
            let ack_psh_fin = TcpFlags::ACK | TcpFlags::PSH | TcpFlags::FIN;
            let d = data(2500);
            let p = packet(v6, ack_psh_fin, u32::MAX - 100, Some((5, 6)), &d);
            let segs = split(&p, 1000, TcpChecksum::Complete).unwrap();
            assert_eq!(segs.len(), 3);
            for (i, s) in segs.iter().enumerate() {
                let t = parse(s);
                assert_eq!(t.seq_number, SeqNumber(u32::MAX - 100) + i * 1000);
                assert_eq!(t.payload, &d[i * 1000..(i * 1000 + 1000).min(2500)]);
                assert_eq!(t.timestamp, Some(TcpTimestamp { tsval: 5, tsecr: 6 }));
                let want = if i == 2 { ack_psh_fin } else { TcpFlags::ACK };
                assert_eq!(t.flags, want);
                if !v6 {
                    assert_eq!(ipv4::Packet::new_unchecked(&s[..]).ident(), i as u16);
                }
            }
        }
    }

    #[test]
    fn partial_checksums_complete_to_the_real_ones() {
        for v6 in [false, true] {
            let p = packet(v6, TcpFlags::ACK, 1, None, &data(3001));
            let full = split(&p, 1000, TcpChecksum::Complete).unwrap();
            let partial = split(&p, 1000, TcpChecksum::Partial).unwrap();
            for (f, mut q) in full.into_iter().zip(partial) {
                assert_ne!(f, q);
                complete_checksum(&mut q).unwrap();
                assert_eq!(f, q);
            }
        }
    }

    #[test]
    fn only_the_first_keeps_cwr_and_empty_is_one_segment() {
        let p = packet(false, TcpFlags::ACK | TcpFlags::CWR, 1, None, &data(20));
        let segs = split(&p, 10, TcpChecksum::Complete).unwrap();
        assert_eq!(parse(&segs[0]).flags, TcpFlags::ACK | TcpFlags::CWR);
        assert_eq!(parse(&segs[1]).flags, TcpFlags::ACK);
        let empty = packet(true, TcpFlags::ACK, 1, None, &[]);
        assert_eq!(
            split(&empty, 10, TcpChecksum::Complete).unwrap(),
            vec![empty]
        );
    }

    #[test]
    fn refuses_bad_input_with_typed_errors() {
        let p = packet(false, TcpFlags::ACK, 1, None, &data(100));
        assert_eq!(
            Segmenter::new(&p, 0, TcpChecksum::Complete).unwrap_err(),
            GsoError::ZeroSegmentSize
        );
        assert_eq!(
            Segmenter::new(&p[..30], 10, TcpChecksum::Complete).unwrap_err(),
            GsoError::Wire(WireError::Truncated)
        );
        let mut udp = p.clone();
        udp[9] = 17;
        assert_eq!(TcpLayout::parse(&udp).unwrap_err(), GsoError::NotTcp);
        let mut frag = p.clone();
        frag[6] |= 0x20;
        assert_eq!(
            TcpLayout::parse(&frag).unwrap_err(),
            GsoError::Wire(WireError::Fragment)
        );
        let mut small = [0u8; 60];
        assert_eq!(
            segments(&p, 50, TcpChecksum::Complete, &mut small, |_| {
                panic!("no segment before the check")
            }),
            Err(GsoError::BufferTooSmall)
        );
        assert_eq!(
            TcpLayout::parse(&[]).unwrap_err(),
            WireError::Truncated.into()
        );
        assert_eq!(
            TcpLayout::parse(&[0x50]).unwrap_err(),
            WireError::Unsupported.into()
        );
    }

    /// The headers alone, with the packet's length, give the layout the whole packet gives;
    /// a length other than the IP header's, or a head short of the headers, is refused.
    #[test]
    fn a_head_is_located_as_its_whole_packet() {
        for v6 in [false, true] {
            let p = packet(v6, TcpFlags::ACK, 1, Some((1, 2)), &data(3000));
            let whole = TcpLayout::parse(&p).unwrap();
            let head = &p[..whole.header_len];
            assert_eq!(TcpLayout::parse_head(head, p.len()), Ok(whole));
            assert_eq!(TcpLayout::parse_head(&p, p.len()), Ok(whole));
            assert_eq!(
                TcpLayout::parse_head(head, p.len() - 1).unwrap_err(),
                WireError::Malformed.into()
            );
            assert_eq!(
                TcpLayout::parse_head(&head[..whole.header_len - 1], p.len()).unwrap_err(),
                WireError::Truncated.into()
            );
            for cut in 0..whole.header_len {
                assert!(TcpLayout::parse_head(&head[..cut], p.len()).is_err());
            }
        }
        let mut udp = packet(false, TcpFlags::ACK, 1, None, &data(10));
        udp[9] = 17;
        assert_eq!(
            TcpLayout::parse_head(&udp[..40], udp.len()).unwrap_err(),
            GsoError::NotTcp
        );
    }

    /// `packet` (an IPv6 one) with extension header `ext` (its first byte, Next Header, is
    /// filled in) between the fixed header and TCP, whose number is `kind`.
    fn with_ext_header(packet: &[u8], kind: u8, ext: &[u8]) -> Vec<u8> {
        let mut p = packet[..ipv6::HEADER_LEN].to_vec();
        let plen = u16::from_be_bytes([p[4], p[5]]) + ext.len() as u16;
        p[4..6].copy_from_slice(&plen.to_be_bytes());
        p[6] = kind;
        p.push(packet[6]);
        p.extend_from_slice(&ext[1..]);
        p.extend_from_slice(&packet[ipv6::HEADER_LEN..]);
        p
    }

    /// The kernel's TCP hands a TUN super-packets behind the extension headers a socket asks
    /// for (`IPV6_DSTOPTS`): each segment is cut with them, as `ipv6_gso_segment` cuts it, its
    /// payload length counting them. They used to be refused, and the offload TUN dropped a
    /// bulk upload from such a socket. Gluing still leaves them out; headers the stack refuses
    /// are refused here too.
    #[test]
    fn super_segments_behind_extension_headers_are_cut_with_them() {
        const DEST_OPTS: u8 = 60;
        const ROUTING: u8 = 43;
        let d = data(2500);
        let plain = packet(true, TcpFlags::ACK | TcpFlags::PSH, 7, Some((1, 2)), &d);
        let pad_n = [0, 0, 1, 4, 0, 0, 0, 0];
        let p = with_ext_header(&plain, DEST_OPTS, &pad_n);
        let layout = TcpLayout::parse(&p).unwrap();
        assert_eq!(layout.ip_header_len, ipv6::HEADER_LEN + 8);
        assert_eq!(
            layout.header_len,
            TcpLayout::parse(&plain).unwrap().header_len + 8
        );
        assert_eq!(
            TcpLayout::parse_head(&p[..layout.header_len], p.len()),
            Ok(layout)
        );
        let segs = split(&p, 1000, TcpChecksum::Complete).unwrap();
        assert_eq!(segs.len(), 3);
        for (i, s) in segs.iter().enumerate() {
            assert_eq!(s[6], DEST_OPTS);
            assert_eq!(
                s[ipv6::HEADER_LEN..ipv6::HEADER_LEN + 8],
                [6, 0, 1, 4, 0, 0, 0, 0]
            );
            let plen = usize::from(u16::from_be_bytes([s[4], s[5]]));
            assert_eq!(plen + ipv6::HEADER_LEN, s.len());
            let t = parse(s);
            assert_eq!(t.seq_number, SeqNumber(7) + i * 1000);
            assert_eq!(t.payload, &d[i * 1000..(i * 1000 + 1000).min(2500)]);
        }
        for (full, mut q) in segs
            .into_iter()
            .zip(split(&p, 1000, TcpChecksum::Partial).unwrap())
        {
            complete_checksum(&mut q).unwrap();
            assert_eq!(full, q);
        }
        // A Routing header with nothing left to visit is passed over (RFC 8200 §4.4); one
        // with segments left, a fragment's header or a walk ending at UDP is not cut.
        let routing = |left| [0, 0, 0, left, 0, 0, 0, 0];
        assert!(TcpLayout::parse(&with_ext_header(&plain, ROUTING, &routing(0))).is_ok());
        assert_eq!(
            TcpLayout::parse(&with_ext_header(&plain, ROUTING, &routing(1))).unwrap_err(),
            WireError::Unsupported.into()
        );
        let fragment = [0, 0, 0, 8, 0, 0, 0, 1];
        assert_eq!(
            TcpLayout::parse(&with_ext_header(&plain, 44, &fragment)).unwrap_err(),
            WireError::Fragment.into()
        );
        let mut udp = p.clone();
        udp[ipv6::HEADER_LEN] = 17;
        assert_eq!(TcpLayout::parse(&udp).unwrap_err(), GsoError::NotTcp);
        let mut c = Coalescer::new();
        assert!(!c.push(&p));
        assert!(c.is_empty());
    }

    #[test]
    fn coalescer_stops_where_linux_gro_stops() {
        let d = data(100);
        let seg = |seq, flags, len: usize| packet(false, flags, seq, Some((9, 9)), &d[..len]);
        let mut c = Coalescer::new();
        // Out of order: not taken.
        assert!(c.push(&seg(0, TcpFlags::ACK, 50)));
        assert!(!c.push(&seg(60, TcpFlags::ACK, 50)));
        // Larger than the segment size: not taken.
        assert!(!c.push(&seg(50, TcpFlags::ACK, 60)));
        // Another flow (an IPv6 one): not taken.
        assert!(!c.push(&packet(true, TcpFlags::ACK, 50, Some((9, 9)), &d[..50])));
        // FIN never joins.
        assert!(!c.push(&seg(50, TcpFlags::ACK | TcpFlags::FIN, 50)));
        // A short one joins and closes.
        assert!(c.push(&seg(50, TcpFlags::ACK, 20)));
        assert!(c.is_closed());
        assert!(!c.push(&seg(70, TcpFlags::ACK, 20)));
        let out = c.finish(TcpChecksum::Complete).unwrap();
        assert_eq!(out.segment_size, Some(50));
        assert_eq!(out.segments, 2);
        assert_eq!(parse(out.packet).payload, [&d[..50], &d[..20]].concat());
        c.clear();
        assert!(c.finish(TcpChecksum::Complete).is_none());

        // PSH joins, is kept, and closes; newer timestamps join under the first one's.
        assert!(c.push(&seg(0, TcpFlags::ACK, 50)));
        let later = packet(
            false,
            TcpFlags::ACK | TcpFlags::PSH,
            50,
            Some((10, 11)),
            &d[..50],
        );
        assert!(c.push(&later));
        assert!(c.is_closed());
        let out = c.finish(TcpChecksum::Complete).unwrap();
        let t = parse(out.packet);
        assert_eq!(t.flags, TcpFlags::ACK | TcpFlags::PSH);
        assert_eq!(t.timestamp, Some(TcpTimestamp { tsval: 9, tsecr: 9 }));

        // A different window or ACK never joins; nor does a segment without timestamps
        // after one with them.
        c.clear();
        assert!(c.push(&seg(0, TcpFlags::ACK, 50)));
        assert!(!c.push(&packet(false, TcpFlags::ACK, 50, None, &d[..50])));
        let mut w = seg(50, TcpFlags::ACK, 50);
        w[20 + 14] ^= 1;
        assert!(!c.push(&w));
        // A single segment comes back unchanged.
        let one = seg(0, TcpFlags::ACK, 50);
        assert_eq!(c.finish(TcpChecksum::Partial).unwrap().packet, &one[..]);
    }

    #[test]
    fn coalescer_respects_its_limit() {
        let d = data(1000);
        let mut c = Coalescer::with_max_len(20 + 32 + 2500);
        for i in 0..2 {
            assert!(c.push(&packet(false, TcpFlags::ACK, i * 1000, None, &d)));
        }
        // A third full segment would pass the limit: the batch is closed.
        assert!(c.is_closed());
        assert!(!c.push(&packet(false, TcpFlags::ACK, 2000, None, &d)));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            size in 0usize..64,
            v6 in any::<bool>(),
        ) {
            // Raw bytes, and the same bytes behind a plausible version nibble.
            let mut shaped = bytes.clone();
            if let Some(b) = shaped.first_mut() {
                *b = (*b & 0x0f) | if v6 { 0x60 } else { 0x45 };
            }
            for p in [&bytes, &shaped] {
                let _ = split(p, size, TcpChecksum::Complete);
                let _ = split(p, size, TcpChecksum::Partial);
                let _ = TcpLayout::parse_head(p, size * 1000);
                let mut q = p.clone();
                let _ = complete_checksum(&mut q);
                let mut c = Coalescer::new();
                c.push(p);
                c.push(p);
                let _ = c.finish(TcpChecksum::Complete);
                if let Ok(mut s) = Segmenter::new(p, size.max(1), TcpChecksum::Complete) {
                    let mut out = vec![0u8; 40];
                    while s.next_segment(&p[..p.len() / 2], &mut out).is_some() {}
                }
            }
        }

        #[test]
        fn segmenting_then_coalescing_gives_back_the_packet(
            v6 in any::<bool>(),
            len in 1usize..20_000,
            size in 1usize..3000,
            seq in any::<u32>(),
            psh in any::<bool>(),
            ts in proptest::option::of(any::<(u32, u32)>()),
        ) {
            let flags = if psh { TcpFlags::ACK | TcpFlags::PSH } else { TcpFlags::ACK };
            let original = packet(v6, flags, seq, ts, &data(len));
            let segs = split(&original, size, TcpChecksum::Complete).unwrap();
            prop_assert_eq!(segs.len(), len.div_ceil(size));
            let mut c = Coalescer::new();
            for s in &segs {
                parse(s);
                prop_assert!(c.push(s));
            }
            let out = c.finish(TcpChecksum::Complete).unwrap();
            prop_assert_eq!(out.segment_size, (segs.len() > 1).then_some(size));
            prop_assert_eq!(out.packet, &original[..]);
        }
    }
}
