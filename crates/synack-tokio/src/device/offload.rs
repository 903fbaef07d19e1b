//! An offloading TUN device: one syscall moves up to 64 KiB of TCP instead of one segment.
//!
//! [`TunDevice`](super::TunDevice) pays a `read(2)` or `write(2)` per IP packet, and at
//! 1500-byte packets those syscalls, not TCP, bound the stack's throughput. Linux lets a TUN
//! reader take part in the kernel's segmentation offloads instead, the way a virtio-net guest
//! does:
//!
//! - The device is opened with `IFF_VNET_HDR`, so every read and write carries a 10-byte
//!   `struct virtio_net_hdr` (include/uapi/linux/virtio_net.h) in front of the IP packet.
//! - `TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6` tells the kernel that we
//!   finish checksums and segment TCP ourselves. The kernel then hands the TUN whole TSO
//!   "super-packets" (one IP/TCP header, up to 64 KiB of payload, `gso_size` = the MSS).
//!
//! **Receive**: a super-packet whose checksum the kernel vouches for (`NEEDS_CSUM`, local data
//! it never summed, or `DATA_VALID`) goes to the stack whole, read straight into the driver's
//! buffer, and the stack takes it as one large verified segment, as Linux's TCP takes a GRO
//! or `CHECKSUM_PARTIAL` packet. Any other ([`Segmenter`]) is cut into `gso_size` segments
//! exactly as the kernel's software GSO would (net/ipv4/tcp_offload.c `tcp_gso_segment`,
//! af_inet.c `inet_gso_segment`): per segment the IPv4 total length, identification and
//! header checksum (or the IPv6 payload length), the TCP sequence number, FIN/PSH only on the
//! last segment and CWR only on the first, and a full TCP checksum. The segments are produced
//! lazily from the buffered super-packet, one per `poll_recv`, with no further syscall.
//!
//! **Send** ([`Coalescer`]): segments the driver sends back to back on one flow, contiguous,
//! of one size (the last may be shorter), with identical headers apart from the lengths, the
//! IPv4 identification, the sequence number and the timestamp values, are glued into one
//! super-packet written with `gso_type` TCPV4/TCPV6 and `NEEDS_CSUM`; the kernel either
//! delivers it to its own TCP whole (as GRO would have) or segments it on the way out.
//! Anything else is written alone behind an all-zero header ("no offload, checksum complete").
//! The device also reports a `gso_max_size` of 64 KiB, so the stack mostly builds the
//! super-packets itself (whole segments under one header, see `synack_core::Transmit`);
//! [`SuperFrame`] puts the TSO header and a copy of the headers with the partial checksum in
//! front, and the payload is written from the stack's own buffer.
//!
//! **When a batch is flushed.** Holding a packet is only safe if something is sure to come
//! back for it. Here: (1) when the next packet does not fit, or the batch is closed by a
//! short or PSH segment or ~64 KiB; (2) at the start of every `poll_recv`, because synack's
//! driver receives at the start of each round, so its transmit phase is over by then; and (3)
//! whenever a batch starts, `poll_send` wakes the caller's task, so that next round is already
//! scheduled even if nothing else happens: a batch never outlives the round that filled it.
//! [`OffloadTun::poll_flush`] flushes explicitly, and dropping the device makes one last
//! non-blocking attempt.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use synack_core::wire::checksum;
use synack_core::wire::IpProtocol;
use tokio::io::unix::AsyncFd;

use super::tun::TunConfig;
use super::Device;
use crate::netns::NetNs;

// ---------------------------------------------------------------------------------------------
// The virtio-net header
// ---------------------------------------------------------------------------------------------

/// Bytes of `struct virtio_net_hdr` (without `num_buffers`), set with `TUNSETVNETHDRSZ`.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the bytes from `csum_start` to the end still have to be added.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel has verified the checksum (`CHECKSUM_UNNECESSARY`).
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`: one ordinary packet.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: an IPv4 TCP super-packet to be cut at `gso_size`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: an IPv6 TCP super-packet to be cut at `gso_size`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`: the super-packet carries CWR (only with `TUN_F_TSO_ECN`).
pub const GSO_ECN: u8 = 0x80;

/// The largest super-packet built on send: an IPv4 total length is 16 bits.
const MAX_SUPER: usize = 65535;
/// The receive buffer: a header plus the largest IPv6 packet without jumbograms (RFC 8200 §3:
/// a 16-bit payload length behind a 40-byte header).
const RX_BUF: usize = VNET_HDR_LEN + 40 + 65535;
/// Reads per `poll_recv` that may be dropped as malformed before it yields.
const MAX_DROPS_PER_POLL: usize = 64;

/// `struct virtio_net_hdr`, as the TUN driver reads and writes it.
///
/// Multi-byte fields are in the host's byte order: without `TUNSETVNETLE`/`TUNSETVNETBE` a TUN
/// uses the legacy virtio layout, which is native-endian (drivers/net/tun.c `tun16_to_cpu`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID` or 0.
    pub flags: u8,
    /// `GSO_NONE`, `GSO_TCPV4` or `GSO_TCPV6`, possibly with `GSO_ECN`.
    pub gso_type: u8,
    /// IP plus TCP header length of a super-packet (a hint; we parse the headers ourselves).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub csum_start: u16,
    /// Where, after `csum_start`, the checksum goes (16 for TCP).
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`VNET_HDR_LEN`] bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Result<VnetHdr, OffloadError> {
        let b: &[u8; VNET_HDR_LEN] = buf
            .get(..VNET_HDR_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(OffloadError::Truncated)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header's wire bytes.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

/// Why a packet read from (or offered to) the device could not be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than the headers it claims.
    Truncated,
    /// An IP/TCP header field is inconsistent (version, lengths, fragment, protocol).
    Malformed,
    /// A `gso_type` we did not ask for (UDP, or a version that disagrees with the packet).
    UnsupportedGso(u8),
    /// `gso_size` 0 on a super-packet.
    ZeroGsoSize,
    /// The checksum position lies outside the packet.
    BadChecksumOffset,
    /// The caller's buffer cannot hold the segment.
    BufferTooSmall,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::Truncated => f.write_str("packet truncated"),
            OffloadError::Malformed => f.write_str("malformed IP/TCP header"),
            OffloadError::UnsupportedGso(t) => write!(f, "unsupported gso_type {t:#x}"),
            OffloadError::ZeroGsoSize => f.write_str("super-packet with gso_size 0"),
            OffloadError::BadChecksumOffset => f.write_str("checksum offset outside the packet"),
            OffloadError::BufferTooSmall => f.write_str("buffer too small for the segment"),
        }
    }
}

impl std::error::Error for OffloadError {}

// ---------------------------------------------------------------------------------------------
// Header arithmetic shared by both directions
// ---------------------------------------------------------------------------------------------

/// TCP header control bits (RFC 9293 §3.1, byte 13), as the offload rules name them.
const FIN: u8 = 0x01;
#[cfg(test)]
const SYN: u8 = 0x02;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const CWR: u8 = 0x80;

/// Where the IP and TCP headers of a TCP packet lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TcpLayout {
    v6: bool,
    /// IP header length (where TCP starts).
    ip_len: usize,
    /// IP plus TCP header length (where the payload starts).
    hdr_len: usize,
    /// The packet's end by its own length field (trailing bytes beyond it are ignored).
    end: usize,
}

impl TcpLayout {
    /// Locates the headers of an IPv4 or IPv6 TCP packet, refusing IPv4 fragments and IPv6
    /// extension headers (neither GSO nor GRO handles them for TCP).
    fn parse(p: &[u8]) -> Result<TcpLayout, OffloadError> {
        let first = *p.first().ok_or(OffloadError::Truncated)?;
        let (v6, ip_len, end) = match first >> 4 {
            4 => {
                if p.len() < 20 {
                    return Err(OffloadError::Truncated);
                }
                let ihl = usize::from(first & 0x0f) * 4;
                let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
                // RFC 791 §3.1: IHL ≥ 5 words; the total length covers the header.
                if ihl < 20 || total < ihl {
                    return Err(OffloadError::Malformed);
                }
                if total > p.len() {
                    return Err(OffloadError::Truncated);
                }
                // MF set or a non-zero fragment offset: a fragment, never a TSO packet.
                if p[6] & 0x20 != 0 || u16::from_be_bytes([p[6] & 0x1f, p[7]]) != 0 {
                    return Err(OffloadError::Malformed);
                }
                if p[9] != 6 {
                    return Err(OffloadError::Malformed);
                }
                (false, ihl, total)
            }
            6 => {
                if p.len() < 40 {
                    return Err(OffloadError::Truncated);
                }
                let end = 40 + usize::from(u16::from_be_bytes([p[4], p[5]]));
                if end > p.len() {
                    return Err(OffloadError::Truncated);
                }
                // RFC 8200 §4: anything but TCP directly after the fixed header is an
                // extension header (or another protocol).
                if p[6] != 6 {
                    return Err(OffloadError::Malformed);
                }
                (true, 40, end)
            }
            _ => return Err(OffloadError::Malformed),
        };
        if end < ip_len + 20 {
            return Err(OffloadError::Truncated);
        }
        // RFC 9293 §3.1: data offset in 32-bit words, at least 5.
        let doff = usize::from(p[ip_len + 12] >> 4) * 4;
        if doff < 20 {
            return Err(OffloadError::Malformed);
        }
        if ip_len + doff > end {
            return Err(OffloadError::Truncated);
        }
        Ok(TcpLayout {
            v6,
            ip_len,
            hdr_len: ip_len + doff,
            end,
        })
    }

    fn payload_len(&self) -> usize {
        self.end - self.hdr_len
    }

    /// The unfolded pseudo-header sum for a TCP segment of `tcp_len` bytes (RFC 9293 §3.1,
    /// RFC 8200 §8.1), from the addresses in `p`.
    fn pseudo_sum(&self, p: &[u8], tcp_len: usize) -> u64 {
        // The IPv4 pseudo-header length is 16 bits; `MAX_SUPER` and the 16-bit length fields
        // keep `tcp_len` below 2^16 + 40, so the conversion never truncates for IPv6 either.
        let len = u32::try_from(tcp_len).unwrap_or(u32::MAX);
        if self.v6 {
            let src = Ipv6Addr::from(octets::<16>(&p[8..24]));
            let dst = Ipv6Addr::from(octets::<16>(&p[24..40]));
            checksum::pseudo_header_v6(src, dst, IpProtocol::Tcp, len)
        } else {
            let src = Ipv4Addr::from(octets::<4>(&p[12..16]));
            let dst = Ipv4Addr::from(octets::<4>(&p[16..20]));
            checksum::pseudo_header_v4(src, dst, IpProtocol::Tcp, len)
        }
    }

    /// What `NEEDS_CSUM` wants in the TCP checksum field of `p`, a whole super-packet with
    /// these headers: the folded, uncomplemented pseudo-header sum over its TCP length, which
    /// the kernel (`tcp_gso_segment`) adjusts per segment, or local delivery trusts as
    /// CHECKSUM_PARTIAL.
    fn partial_checksum(&self, p: &[u8]) -> [u8; 2] {
        checksum::fold(self.pseudo_sum(p, p.len() - self.ip_len)).to_be_bytes()
    }

    /// The header that hands a super-packet with these headers to the kernel as TSO: cut at
    /// `gso_size`, the TCP checksum at `csum_start + 16` left to it (`NEEDS_CSUM`).
    fn tso_header(&self, gso_size: u16) -> VnetHdr {
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if self.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: self.hdr_len as u16,
            gso_size,
            csum_start: self.ip_len as u16,
            csum_offset: 16,
        }
    }
}

/// A fixed-size copy of `b` (whose length the caller has checked), zero-padded otherwise.
fn octets<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    let n = b.len().min(N);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Rewrites the IPv4 header checksum over `ip_hdr` (RFC 791 §3.1).
fn fill_ipv4_checksum(ip_hdr: &mut [u8]) {
    ip_hdr[10..12].fill(0);
    let sum = checksum::finish(checksum::partial(ip_hdr));
    ip_hdr[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// Completes a `NEEDS_CSUM` packet: the field at `start + offset` holds the pseudo-header sum,
/// and the one's complement sum from `start` to the end, that field included, is stored there
/// complemented (virtio 1.1 §5.1.6.2; Linux `skb_checksum_help`).
pub fn complete_checksum(
    packet: &mut [u8],
    start: usize,
    offset: usize,
) -> Result<(), OffloadError> {
    let at = start
        .checked_add(offset)
        .filter(|&at| at.checked_add(2).is_some_and(|e| e <= packet.len()))
        .ok_or(OffloadError::BadChecksumOffset)?;
    let sum = checksum::finish(checksum::partial(&packet[start..]));
    // RFC 768: a computed UDP checksum of zero is sent as all ones (zero means "none"); for
    // TCP the two are the same value in one's complement, so this is right for both.
    let sum = if sum == 0 { 0xffff } else { sum };
    packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Receive: cutting a super-packet into segments
// ---------------------------------------------------------------------------------------------

/// A received TSO super-packet being cut into `gso_size` segments, one per call.
///
/// It holds only offsets: the packet itself stays in the caller's buffer, and each segment is
/// copied from it straight into the buffer the segment is wanted in.
#[derive(Debug, Clone)]
pub struct Segmenter {
    layout: TcpLayout,
    mss: usize,
    /// Offset of the next segment's payload; `None` once the last segment went out.
    next: Option<usize>,
    /// Segments produced so far.
    index: u16,
}

impl Segmenter {
    /// Checks a super-packet against its header. `packet` is the IP packet after the header.
    pub fn new(hdr: &VnetHdr, packet: &[u8]) -> Result<Segmenter, OffloadError> {
        let layout = TcpLayout::parse(packet)?;
        match (hdr.gso_type & !GSO_ECN, layout.v6) {
            (GSO_TCPV4, false) | (GSO_TCPV6, true) => {}
            (other, _) => return Err(OffloadError::UnsupportedGso(other)),
        }
        if hdr.gso_size == 0 {
            return Err(OffloadError::ZeroGsoSize);
        }
        Ok(Segmenter {
            layout,
            mss: usize::from(hdr.gso_size),
            next: Some(layout.hdr_len),
            index: 0,
        })
    }

    /// Segments still to come.
    pub fn remaining(&self) -> usize {
        match self.next {
            // A header-only super-packet still yields its one (empty) segment.
            Some(at) => (self.layout.end - at).div_ceil(self.mss).max(1),
            None => 0,
        }
    }

    /// Writes the next segment of `packet` (the same bytes given to [`Segmenter::new`]) into
    /// `out` and returns its length, or `None` after the last one.
    pub fn next_segment(
        &mut self,
        packet: &[u8],
        out: &mut [u8],
    ) -> Option<Result<usize, OffloadError>> {
        let at = self.next?;
        let l = self.layout;
        if packet.len() < l.end {
            self.next = None;
            return Some(Err(OffloadError::Truncated));
        }
        let take = (l.end - at).min(self.mss);
        let last = at + take >= l.end;
        let len = l.hdr_len + take;
        let Some(seg) = out.get_mut(..len) else {
            self.next = None;
            return Some(Err(OffloadError::BufferTooSmall));
        };
        seg[..l.hdr_len].copy_from_slice(&packet[..l.hdr_len]);
        seg[l.hdr_len..].copy_from_slice(&packet[at..at + take]);

        let (ip, tcp) = seg.split_at_mut(l.ip_len);
        if l.v6 {
            // RFC 8200 §3: the payload length counts everything after the fixed header.
            let plen = (len - 40) as u16;
            ip[4..6].copy_from_slice(&plen.to_be_bytes());
        } else {
            // Linux inet_gso_segment: total length per segment, and the identification counts
            // up from the super-packet's (no SKB_GSO_TCP_FIXEDID from a TUN).
            ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            let id = u16::from_be_bytes([ip[4], ip[5]]).wrapping_add(self.index);
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            fill_ipv4_checksum(ip);
        }
        // tcp_gso_segment: each segment's sequence number is the first one plus the payload
        // before it (mod 2^32, RFC 9293 §3.4).
        let seq0 = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let seq = seq0.wrapping_add((at - l.hdr_len) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        // FIN and PSH belong to the end of the data, so only the last segment keeps them;
        // CWR (RFC 3168 §6.1.2) signals one reduction, so only the first keeps it.
        if !last {
            tcp[13] &= !(FIN | PSH);
        }
        if self.index > 0 {
            tcp[13] &= !CWR;
        }
        // The super-packet's checksum field is partial (NEEDS_CSUM) or covers other bytes:
        // compute each segment's in full.
        tcp[16..18].fill(0);
        let sum = l.pseudo_sum(packet, len - l.ip_len) + checksum::partial(tcp);
        tcp[16..18].copy_from_slice(&checksum::finish(sum).to_be_bytes());

        self.index = self.index.wrapping_add(1);
        self.next = (!last).then_some(at + take);
        Some(Ok(len))
    }
}

/// Cuts a whole super-packet into owned segments (for tests and tools; the device itself
/// uses [`Segmenter`] without allocating).
pub fn split_super_packet(hdr: &VnetHdr, packet: &[u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut seg = Segmenter::new(hdr, packet)?;
    let mut out = Vec::with_capacity(seg.remaining());
    let mut buf = vec![0; packet.len()];
    while let Some(r) = seg.next_segment(packet, &mut buf) {
        out.push(buf[..r?].to_vec());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Send: gluing segments into a super-packet
// ---------------------------------------------------------------------------------------------

/// Whether `p` may join a super-packet at all: TCP with data, no IP options, flags ACK or
/// ACK|PSH (as Linux GRO: SYN/FIN/RST/URG/ECE/CWR segments always travel alone).
fn candidate(p: &[u8]) -> Option<TcpLayout> {
    let l = TcpLayout::parse(p).ok()?;
    let flags = p[l.ip_len + 13];
    // No IPv4 options (IPv6 extension headers were already refused by the layout).
    let ok = (l.v6 || l.ip_len == 20)
        && (flags == ACK || flags == ACK | PSH)
        && l.payload_len() > 0
        && l.end == p.len();
    ok.then_some(l)
}

/// The byte range of the Timestamps option's values (RFC 7323 §3.2: kind 8, length 10) in a
/// TCP option area, if there is one.
fn timestamp_values(opts: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind == 8 && len == 10 {
                    return Some(i + 2..i + 10);
                }
                i += len;
            }
        }
    }
    None
}

/// Whether two TCP headers of the same length agree in everything but the sequence number,
/// the checksum, PSH, and the timestamp values: same ports, ACK number, flags, window, urgent
/// pointer and option bytes. The super-packet keeps the first header, so a later segment's
/// newer TSval/TSecr is replaced by the first one's: an older echo only makes the peer's RTT
/// sample a little longer, and an older TSval stays within PAWS (RFC 7323 §5) because it was
/// already acceptable when sent first.
fn same_tcp_header(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() || a[..4] != b[..4] || a[8..13] != b[8..13] {
        return false;
    }
    if a[13] & !PSH != b[13] & !PSH || a[14..16] != b[14..16] || a[18..20] != b[18..20] {
        return false;
    }
    let (oa, ob) = (&a[20..], &b[20..]);
    if oa == ob {
        return true;
    }
    match (timestamp_values(oa), timestamp_values(ob)) {
        (Some(ra), Some(rb)) if ra == rb => {
            oa[..ra.start] == ob[..rb.start] && oa[ra.end..] == ob[rb.end..]
        }
        _ => false,
    }
}

/// Whether two IP headers of the same layout agree in everything but the lengths, the IPv4
/// identification and the IPv4 header checksum.
fn same_ip_header(v6: bool, a: &[u8], b: &[u8]) -> bool {
    if v6 {
        // Version/class/flow label, next header/hop limit, addresses.
        a[..4] == b[..4] && a[6..40] == b[6..40]
    } else {
        // Version/IHL/TOS, flags/fragment/TTL/protocol, addresses.
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    }
}

/// Consecutive TCP segments of one flow, glued into one super-packet.
///
/// The buffer holds the first segment's headers followed by every segment's payload; the
/// length fields and checksums are fixed up only when the batch is written.
#[derive(Debug)]
pub struct Coalescer {
    buf: Vec<u8>,
    layout: Option<TcpLayout>,
    /// Payload bytes per segment: the first segment's.
    mss: usize,
    segments: usize,
    /// The sequence number the next segment must carry.
    next_seq: u32,
    /// A short or PSH segment ended the batch, or it was offered for writing.
    closed: bool,
}

impl Default for Coalescer {
    fn default() -> Self {
        Coalescer::new()
    }
}

impl Coalescer {
    /// An empty batch with room for a whole super-packet.
    pub fn new() -> Coalescer {
        Coalescer {
            buf: Vec::with_capacity(MAX_SUPER),
            layout: None,
            mss: 0,
            segments: 0,
            next_seq: 0,
            closed: false,
        }
    }

    /// Segments in the batch.
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    /// Whether the batch takes no more segments and should be written now.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Adds `packet` if it is a candidate and continues the batch (or starts an empty one);
    /// `false` means it was not taken: write the batch, then offer it again or send it alone.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Some(l) = candidate(packet) else {
            return false;
        };
        let seq = u32::from_be_bytes(octets::<4>(&packet[l.ip_len + 4..l.ip_len + 8]));
        let payload = &packet[l.hdr_len..];
        let psh = packet[l.ip_len + 13] & PSH != 0;
        match self.layout {
            None => {
                self.buf.clear();
                self.buf.extend_from_slice(packet);
                self.layout = Some(l);
                self.mss = payload.len();
                self.segments = 1;
            }
            Some(first) => {
                let head = &self.buf[..first.hdr_len];
                let fits = !self.closed
                    && first.v6 == l.v6
                    && first.hdr_len == l.hdr_len
                    && seq == self.next_seq
                    && payload.len() <= self.mss
                    && self.buf.len() + payload.len() <= MAX_SUPER
                    && same_ip_header(l.v6, &head[..l.ip_len], &packet[..l.ip_len])
                    && same_tcp_header(&head[l.ip_len..], &packet[l.ip_len..l.hdr_len]);
                if !fits {
                    return false;
                }
                self.buf.extend_from_slice(payload);
                self.segments += 1;
                if psh {
                    // Linux tcp_gro_receive ORs PSH into the merged header and ends the flow.
                    self.buf[first.ip_len + 13] |= PSH;
                }
            }
        }
        self.next_seq = seq.wrapping_add(payload.len() as u32);
        // A short segment must be the last (all but the last are exactly `gso_size`), PSH
        // ends the data the sender had, and a full-size segment more might not fit.
        if payload.len() < self.mss || psh || self.buf.len() + self.mss > MAX_SUPER {
            self.closed = true;
        }
        true
    }

    /// Closes the batch and returns the frame to write: a single segment unchanged behind a
    /// zero header, or the super-packet with its lengths, IPv4 header checksum and partial
    /// TCP checksum filled in. `None` if empty. Idempotent until [`Coalescer::clear`].
    pub fn frame(&mut self) -> Option<(VnetHdr, &[u8])> {
        let l = self.layout?;
        self.closed = true;
        if self.segments == 1 {
            return Some((VnetHdr::default(), &self.buf));
        }
        let len = self.buf.len();
        if l.v6 {
            let plen = (len - 40) as u16;
            self.buf[4..6].copy_from_slice(&plen.to_be_bytes());
        } else {
            self.buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            fill_ipv4_checksum(&mut self.buf[..l.ip_len]);
        }
        let partial = l.partial_checksum(&self.buf);
        self.buf[l.ip_len + 16..l.ip_len + 18].copy_from_slice(&partial);
        Some((l.tso_header(self.mss as u16), &self.buf))
    }

    /// Empties the batch.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.layout = None;
        self.segments = 0;
        self.mss = 0;
        self.closed = false;
    }
}

/// The most header bytes of a TCP packet: an IPv6 header and a TCP header with 40 bytes of
/// options.
const MAX_HEAD: usize = 40 + 60;

/// What goes in front of a super-segment the stack built itself (segmentation offload: whole
/// segments under one header, see `synack_core::Transmit`) so that the kernel takes it as a
/// TSO packet: the virtio-net header, and a copy of the packet's IP and TCP headers whose
/// checksum field holds the partial (pseudo-header) sum that `NEEDS_CSUM` asks for. The
/// payload itself is written from where it lies, not copied.
#[derive(Debug, Clone)]
pub struct SuperFrame {
    /// The TSO header: `gso_size` = the segment size, `NEEDS_CSUM` at the TCP checksum.
    pub hdr: VnetHdr,
    head: [u8; MAX_HEAD],
    head_len: usize,
}

impl SuperFrame {
    /// The frame for `packet` cut at `segment_size`, or `None` if a TSO header cannot describe
    /// it: not TCP data under ACK (PSH and FIN allowed: the kernel's `tcp_gso_segment` keeps
    /// them for the last segment), IPv4 options or bytes past the IP length, one segment or
    /// less, or more than 64 KiB.
    pub fn new(packet: &[u8], segment_size: usize) -> Option<SuperFrame> {
        let l = TcpLayout::parse(packet).ok()?;
        let flags = packet[l.ip_len + 13];
        let describable = flags & !(PSH | FIN) == ACK
            && (l.v6 || l.ip_len == 20)
            && l.end == packet.len()
            && packet.len() <= MAX_SUPER
            && segment_size > 0
            && packet.len() - l.hdr_len > segment_size
            && l.hdr_len <= MAX_HEAD;
        if !describable {
            return None;
        }
        let mut head = [0u8; MAX_HEAD];
        head[..l.hdr_len].copy_from_slice(&packet[..l.hdr_len]);
        // The lengths and the IPv4 header checksum are already those of the whole packet;
        // only the TCP checksum becomes the partial one.
        head[l.ip_len + 16..l.ip_len + 18].copy_from_slice(&l.partial_checksum(packet));
        Some(SuperFrame {
            hdr: l.tso_header(u16::try_from(segment_size).ok()?),
            head,
            head_len: l.hdr_len,
        })
    }

    /// The IP and TCP headers to write in place of the packet's own.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len]
    }

    /// The segments the kernel will cut the packet of `len` bytes into.
    fn segments(&self, len: usize) -> u64 {
        (len - self.head_len).div_ceil(usize::from(self.hdr.gso_size)) as u64
    }
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

/// What the device's offloads have done, as a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OffloadStats {
    /// GSO super-packets read from the kernel.
    pub gso_packets_in: u64,
    /// Of those, the ones handed to the stack whole (GRO: their checksum vouched for by the
    /// kernel, see `NEEDS_CSUM` and `DATA_VALID`).
    pub gso_packets_whole: u64,
    /// Segments cut from the others and handed to the stack.
    pub segments_split: u64,
    /// Ordinary packets read (no GSO).
    pub packets_in: u64,
    /// Super-packets written (two or more segments each).
    pub super_packets_out: u64,
    /// Segments that went out inside those super-packets.
    pub segments_coalesced: u64,
    /// Of `super_packets_out`, those the stack built itself (segmentation offload) rather
    /// than the device glued from single segments.
    pub super_packets_built: u64,
    /// Packets written alone.
    pub packets_out: u64,
    /// Reads dropped as malformed (bad header, unsupported GSO, bad checksum offset).
    pub rx_dropped: u64,
    /// Writes the kernel refused (the segments are lost; TCP retransmits them).
    pub tx_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    gso_packets_in: AtomicU64,
    gso_packets_whole: AtomicU64,
    segments_split: AtomicU64,
    packets_in: AtomicU64,
    super_packets_out: AtomicU64,
    segments_coalesced: AtomicU64,
    super_packets_built: AtomicU64,
    packets_out: AtomicU64,
    rx_dropped: AtomicU64,
    tx_dropped: AtomicU64,
}

/// A handle on a device's counters that stays readable after the device moved into a stack.
#[derive(Debug, Clone)]
pub struct OffloadCounters(Arc<Counters>);

impl OffloadCounters {
    /// The counters now.
    pub fn snapshot(&self) -> OffloadStats {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        OffloadStats {
            gso_packets_in: get(&c.gso_packets_in),
            gso_packets_whole: get(&c.gso_packets_whole),
            segments_split: get(&c.segments_split),
            packets_in: get(&c.packets_in),
            super_packets_out: get(&c.super_packets_out),
            segments_coalesced: get(&c.segments_coalesced),
            super_packets_built: get(&c.super_packets_built),
            packets_out: get(&c.packets_out),
            rx_dropped: get(&c.rx_dropped),
            tx_dropped: get(&c.tx_dropped),
        }
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------------------------

/// A TUN device with the virtio-net header and TCP segmentation offload in both directions.
///
/// Created like [`TunDevice`](super::TunDevice) (same [`TunConfig`], same address, MTU and
/// link handling); the interface lives as long as this value.
pub struct OffloadTun {
    fd: AsyncFd<OwnedFd>,
    name: String,
    mtu: usize,
    /// The last read: header and packet.
    rx: Box<[u8]>,
    rx_len: usize,
    /// The header of the last read made straight into the caller's buffer.
    rx_hdr: [u8; VNET_HDR_LEN],
    /// The super-packet in `rx` being handed out segment by segment.
    split: Option<Segmenter>,
    /// Whether the packet `poll_recv` returned last has a checksum we computed or the kernel
    /// verified (see [`checksum_vouched`]).
    verified: bool,
    batch: Coalescer,
    counters: OffloadCounters,
}

impl fmt::Debug for OffloadTun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadTun")
            .field("name", &self.name)
            .field("mtu", &self.mtu)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl OffloadTun {
    /// Creates the device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up. Must be called within a tokio runtime.
    pub fn create(config: &TunConfig) -> io::Result<OffloadTun> {
        if config.name.is_empty() || config.name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TUN name {:?} must be 1 to 15 bytes", config.name),
            ));
        }
        let mtu = i32::try_from(config.mtu)
            .ok()
            .filter(|&m| (68..=65535).contains(&m))
            .ok_or_else(|| {
                // RFC 791: every IPv4 link carries at least 68-byte packets.
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "TUN MTU must be between 68 and 65535",
                )
            })?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")?;
        let fd = OwnedFd::from(file);
        sys::attach(fd.as_raw_fd(), &config.name)?;
        sys::configure_link(
            &config.name,
            config.host_addr.addr,
            config.host_addr.netmask(),
            mtu,
        )?;
        tracing::debug!(name = %config.name, host_addr = %config.host_addr, mtu, "offload TUN up");
        // SAFETY: `OwnedFd` owns an open descriptor and `as_raw_fd` returns that same one for
        // as long as the `AsyncFd` owns it; nothing else closes or replaces it.
        let fd = unsafe { AsyncFd::register(fd) }?;
        Ok(OffloadTun {
            fd,
            name: config.name.clone(),
            mtu: config.mtu,
            rx: vec![0; RX_BUF].into_boxed_slice(),
            rx_len: 0,
            rx_hdr: [0; VNET_HDR_LEN],
            split: None,
            verified: false,
            batch: Coalescer::new(),
            counters: OffloadCounters(Arc::default()),
        })
    }

    /// Creates the device inside `ns` (on a thread that has joined it) and returns it here,
    /// as [`TunDevice::create_in`](super::TunDevice::create_in) does.
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<OffloadTun> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("OffloadTun::create_in: {e}")))?;
        let config = config.clone();
        ns.run_in(move || {
            let _guard = runtime.enter();
            OffloadTun::create(&config)
        })?
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on the counters, readable after the device has moved into a stack.
    pub fn counters(&self) -> OffloadCounters {
        self.counters.clone()
    }

    /// Writes the held batch, if any. Pending while the kernel's queue is full; a frame the
    /// kernel refuses is dropped (counted in `tx_dropped`) and reported as `Ok`, like a lost
    /// packet.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let segments = self.batch.segments() as u64;
        let Some((hdr, frame)) = self.batch.frame() else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(poll_write_frame(&self.fd, cx, &[&hdr.to_bytes(), frame]));
        let c = &self.counters.0;
        match result {
            Ok(()) if segments > 1 => {
                bump(&c.super_packets_out, 1);
                bump(&c.segments_coalesced, segments);
            }
            Ok(()) => bump(&c.packets_out, 1),
            Err(e) => {
                tracing::debug!(error = %e, segments, "TUN refused a batch");
                bump(&c.tx_dropped, segments);
            }
        }
        self.batch.clear();
        Poll::Ready(Ok(()))
    }

    /// A super-packet goes to the stack whole (see [`whole`]): counted, and vouched for.
    fn took_whole(&mut self) {
        let c = &self.counters.0;
        bump(&c.gso_packets_in, 1);
        bump(&c.gso_packets_whole, 1);
        self.verified = true;
    }

    /// A read made straight into `buf` (`n` bytes with the header, which went to `rx_hdr`):
    /// a super-packet the stack takes whole stays where it is; anything else goes the
    /// buffered way, as if it had been read into `rx`.
    fn take_direct(&mut self, buf: &mut [u8], n: usize) -> Option<usize> {
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            bump(&self.counters.0.rx_dropped, 1);
            return None;
        };
        if let Ok(hdr) = VnetHdr::parse(&self.rx_hdr) {
            if hdr.gso_type != GSO_NONE
                && checksum_vouched(&hdr)
                && whole(&hdr, &buf[..len]).is_ok()
            {
                self.took_whole();
                return Some(len);
            }
        }
        self.rx[..VNET_HDR_LEN].copy_from_slice(&self.rx_hdr);
        self.rx[VNET_HDR_LEN..n].copy_from_slice(&buf[..len]);
        self.take_read(buf, n)
    }

    /// One read into `rx`, turned into the next packet for the stack, or `None` if it was
    /// dropped (a super-packet leaves its segmenter in `split`).
    fn take_read(&mut self, buf: &mut [u8], n: usize) -> Option<usize> {
        let c = &self.counters.0;
        let hdr = match VnetHdr::parse(&self.rx[..n]) {
            Ok(h) => h,
            Err(_) => {
                bump(&c.rx_dropped, 1);
                return None;
            }
        };
        self.rx_len = n;
        let packet = &mut self.rx[VNET_HDR_LEN..n];
        if hdr.gso_type == GSO_NONE {
            if hdr.flags & F_NEEDS_CSUM != 0
                && complete_checksum(
                    packet,
                    usize::from(hdr.csum_start),
                    usize::from(hdr.csum_offset),
                )
                .is_err()
            {
                bump(&c.rx_dropped, 1);
                return None;
            }
            let Some(out) = buf.get_mut(..packet.len()) else {
                bump(&c.rx_dropped, 1);
                return None;
            };
            out.copy_from_slice(packet);
            bump(&c.packets_in, 1);
            self.verified = checksum_vouched(&hdr);
            return Some(packet.len());
        }
        if checksum_vouched(&hdr) && whole(&hdr, packet).is_ok() {
            if let Some(out) = buf.get_mut(..packet.len()) {
                out.copy_from_slice(packet);
                let n = packet.len();
                self.took_whole();
                return Some(n);
            }
        }
        match Segmenter::new(&hdr, packet) {
            Ok(s) => {
                bump(&c.gso_packets_in, 1);
                self.split = Some(s);
            }
            Err(e) => {
                tracing::debug!(error = %e, "dropping a super-packet");
                bump(&c.rx_dropped, 1);
            }
        }
        None
    }
}

/// GRO: whether a super-packet can go to the stack whole, as one large segment (the stack
/// counts it as the segments it holds, as Linux does). Only one whose checksum the kernel
/// vouches for is offered: `NEEDS_CSUM` (local data the kernel never summed; the field holds
/// the pseudo-header sum) or `DATA_VALID` (verified). Like Linux's own TCP with a
/// `CHECKSUM_PARTIAL` packet, the stack then takes it as verified and nobody sums the bytes;
/// a capture shows the partial checksum field, as captures of offloaded packets do on Linux.
/// An error leaves the packet to the [`Segmenter`].
fn whole(hdr: &VnetHdr, packet: &[u8]) -> Result<(), OffloadError> {
    let l = TcpLayout::parse(packet)?;
    match (hdr.gso_type & !GSO_ECN, l.v6) {
        (GSO_TCPV4, false) | (GSO_TCPV6, true) => {}
        (other, _) => return Err(OffloadError::UnsupportedGso(other)),
    }
    // Trailing bytes past the IP length: leave such a packet to the segmenter, which cuts by
    // the length fields.
    if l.end != packet.len() {
        return Err(OffloadError::Malformed);
    }
    Ok(())
}

/// Whether an ordinary (not super-) packet read with `hdr` needs no checksum check in the
/// stack: with `NEEDS_CSUM` we have just completed the checksum ourselves; with `DATA_VALID`
/// the kernel has verified it. Without either flag (a packet the kernel forwarded from some
/// wire, say) the stack verifies it.
fn checksum_vouched(hdr: &VnetHdr) -> bool {
    hdr.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0
}

impl Device for OffloadTun {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn check(&mut self) -> io::Result<()> {
        sys::tun_attached(self.fd.as_raw_fd())
    }

    fn checksum_verified(&self) -> bool {
        self.verified
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        // The driver's transmit phase is over when it comes back to receive: write what the
        // last round left in the batch. If the kernel is full the write stays queued and its
        // readiness wakes us.
        if !self.batch.is_empty() {
            let _ = self.poll_flush(cx);
        }
        for _ in 0..MAX_DROPS_PER_POLL {
            if let Some(seg) = &mut self.split {
                match seg.next_segment(&self.rx[VNET_HDR_LEN..self.rx_len], buf) {
                    Some(Ok(n)) => {
                        bump(&self.counters.0.segments_split, 1);
                        // The segmenter has just computed this segment's checksum.
                        self.verified = true;
                        return Poll::Ready(Ok(n));
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "dropping the rest of a super-packet");
                        bump(&self.counters.0.rx_dropped, 1);
                        self.split = None;
                    }
                    None => self.split = None,
                }
                continue;
            }
            if buf.len() >= RX_BUF - VNET_HDR_LEN {
                // Room for any frame: read straight into the caller's buffer, so that a
                // super-packet the stack takes whole (bulk data) is not copied again.
                // (At most what `rx` holds, so that anything can still fall back to it.)
                let room = &mut buf[..RX_BUF - VNET_HDR_LEN];
                let n = ready!(poll_read_split(&self.fd, cx, &mut self.rx_hdr, room))?;
                if let Some(len) = self.take_direct(buf, n) {
                    return Poll::Ready(Ok(len));
                }
                continue;
            }
            let n = ready!(poll_read(&self.fd, cx, &mut self.rx))?;
            if let Some(len) = self.take_read(buf, n) {
                return Poll::Ready(Ok(len));
            }
        }
        // A run of malformed reads: let other tasks in, then come back for more.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_send(&mut self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<()>> {
        if !self.batch.is_closed() && !self.batch.is_empty() && self.batch.push(packet) {
            if self.batch.is_closed() {
                // Taken either way; a full kernel queue keeps the batch for the next call.
                let _ = self.poll_flush(cx);
            }
            return Poll::Ready(Ok(()));
        }
        // The packet does not continue the batch: the batch goes first.
        ready!(self.poll_flush(cx))?;
        if self.batch.push(packet) {
            if self.batch.is_closed() {
                let _ = self.poll_flush(cx);
            } else {
                // Held: make sure the driver comes back (and flushes in `poll_recv`) even if
                // nothing else wakes it.
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(Ok(()));
        }
        match ready!(poll_write_frame(
            &self.fd,
            cx,
            &[&[0; VNET_HDR_LEN], packet]
        )) {
            Ok(()) => bump(&self.counters.0.packets_out, 1),
            Err(e) => {
                bump(&self.counters.0.tx_dropped, 1);
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn gso_max_size(&self) -> usize {
        MAX_SUPER
    }

    /// Writes the stack's own super-segment behind a TSO header (`gso_size` = the segment
    /// size), the payload straight from `packet`: the kernel cuts it, or delivers it whole to
    /// its own TCP. Pending while the kernel's queue is full (the driver keeps the packet).
    fn poll_send_segments(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        segment_size: usize,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        let c = &self.counters.0;
        let Some(frame) = SuperFrame::new(packet, segment_size) else {
            // The stack builds only what a TSO header describes; anything else is lost.
            bump(&c.tx_dropped, 1);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a super-segment that TSO cannot describe",
            )));
        };
        let parts = [
            &frame.hdr.to_bytes()[..],
            frame.head(),
            &packet[frame.head().len()..],
        ];
        let segments = frame.segments(packet.len());
        match ready!(poll_write_frame(&self.fd, cx, &parts)) {
            Ok(()) => {
                bump(&c.super_packets_out, 1);
                bump(&c.super_packets_built, 1);
                bump(&c.segments_coalesced, segments);
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                bump(&c.tx_dropped, segments);
                Poll::Ready(Err(e))
            }
        }
    }
}

impl Drop for OffloadTun {
    /// One last non-blocking attempt at a held batch: the driver's final flush may end with
    /// packets still in it.
    fn drop(&mut self) {
        if let Some((hdr, frame)) = self.batch.frame() {
            let _ = sys::writev(self.fd.get_ref().as_raw_fd(), &[&hdr.to_bytes(), frame]);
        }
    }
}

/// Reads one frame when the fd is readable.
fn poll_read(
    fd: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    loop {
        let mut guard = ready!(fd.poll_read_ready(cx))?;
        match guard.try_io(|fd| sys::read(fd.get_ref().as_raw_fd(), buf)) {
            Ok(result) => return Poll::Ready(result),
            // Readiness was stale: `try_io` cleared it, so polling again registers the waker.
            Err(_would_block) => continue,
        }
    }
}

/// Writes `parts` (the virtio-net header first) as one frame when the fd is writable.
fn poll_write_frame(
    fd: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    parts: &[&[u8]],
) -> Poll<io::Result<()>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    loop {
        let mut guard = ready!(fd.poll_write_ready(cx))?;
        match guard.try_io(|fd| sys::writev(fd.get_ref().as_raw_fd(), parts)) {
            Ok(Ok(n)) if n == len => return Poll::Ready(Ok(())),
            // A TUN write takes the whole frame or fails; a short count would be a kernel bug.
            Ok(Ok(n)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("TUN took {n} of {len} bytes"),
                )))
            }
            Ok(Err(e)) => return Poll::Ready(Err(e)),
            Err(_would_block) => continue,
        }
    }
}

/// Reads one frame when the fd is readable: its virtio-net header into `hdr`, the packet
/// straight into `buf`.
fn poll_read_split(
    fd: &AsyncFd<OwnedFd>,
    cx: &mut Context<'_>,
    hdr: &mut [u8; VNET_HDR_LEN],
    buf: &mut [u8],
) -> Poll<io::Result<usize>> {
    loop {
        let mut guard = ready!(fd.poll_read_ready(cx))?;
        match guard.try_io(|fd| sys::readv(fd.get_ref().as_raw_fd(), hdr, buf)) {
            Ok(result) => return Poll::Ready(result),
            Err(_would_block) => continue,
        }
    }
}

/// The few system calls, each in its own small `unsafe` block.
pub(super) mod sys {
    use std::io;
    use std::net::Ipv4Addr;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use super::VNET_HDR_LEN;

    /// Turns a -1 return into the thread's `errno`.
    fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(rc)
        }
    }

    /// An `ifreq` naming `name` (checked by the caller to fit IFNAMSIZ with its NUL).
    fn ifreq(name: &str) -> libc::ifreq {
        // SAFETY: `ifreq` is plain old data (a byte array and a union of integers, sockaddrs
        // and a pointer); all-zero bytes are a valid value of each, and the kernel reads a
        // zeroed union as "no value".
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = src as libc::c_char;
        }
        req
    }

    /// Whether the TUN file `fd` is still attached to its interface. Deleting the interface
    /// (`ip link del`) detaches every file from it without waking a reader or a writer; the
    /// next system call on it fails with EBADFD. TUNGETIFF asks without a side effect (a
    /// zero-length write would count a drop on the interface).
    pub(crate) fn tun_attached(fd: RawFd) -> io::Result<()> {
        let mut req = ifreq("");
        // SAFETY: TUNGETIFF writes one `ifreq`, which `req` is and which outlives the call;
        // on a file that is not a TUN the kernel refuses it with an error, touching nothing.
        check(unsafe { libc::ioctl(fd, libc::TUNGETIFF as _, &mut req) }).map(drop)
    }

    /// Binds the open `/dev/net/tun` to a new interface `name` in raw-IP mode with the virtio
    /// header, sets the header size, and turns on checksum and TCP segmentation offload.
    pub(super) fn attach(fd: RawFd, name: &str) -> io::Result<()> {
        let mut req = ifreq(name);
        // IFF_TUN: IP packets, no Ethernet; IFF_NO_PI: no 4-byte protocol prefix;
        // IFF_VNET_HDR: the virtio-net header in front of every packet.
        req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as _;
        // SAFETY: TUNSETIFF reads and writes one `ifreq`, which `req` is and which outlives
        // the call; `fd` is the open TUN control file.
        check(unsafe { libc::ioctl(fd, libc::TUNSETIFF as _, &mut req) })?;
        let size = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one `int` through the pointer; `size` lives across
        // the call.
        check(unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ as _, &size) })?;
        let offload = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
        // SAFETY: TUNSETOFFLOAD takes its flags by value, not through a pointer: no memory is
        // touched.
        check(unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD as _, libc::c_ulong::from(offload)) })?;
        Ok(())
    }

    /// A `sockaddr` holding an `AF_INET` address with port 0, as SIOCSIFADDR wants it.
    fn sockaddr_v4(addr: Ipv4Addr) -> libc::sockaddr {
        let mut data = [0 as libc::c_char; 14];
        // struct sockaddr_in: family, then a 2-byte port, then the address in network order.
        for (dst, &b) in data[2..6].iter_mut().zip(&addr.octets()) {
            *dst = b as libc::c_char;
        }
        libc::sockaddr {
            sa_family: libc::AF_INET as libc::sa_family_t,
            sa_data: data,
        }
    }

    /// Gives `name` the kernel's address, netmask and MTU, and brings it up, with the classic
    /// interface ioctls on a throw-away UDP socket (in the calling thread's namespace).
    pub(super) fn configure_link(
        name: &str,
        addr: Ipv4Addr,
        mask: Ipv4Addr,
        mtu: i32,
    ) -> io::Result<()> {
        // SAFETY: socket(2) takes integers only; a non-negative result is a descriptor that
        // nothing else owns, handed straight to `OwnedFd`, which closes it.
        let sock = unsafe {
            OwnedFd::from_raw_fd(check(libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                0,
            ))?)
        };
        let s = sock.as_raw_fd();
        let set = |request: libc::c_ulong, req: &mut libc::ifreq| -> io::Result<()> {
            // SAFETY: each SIOC* request used here reads (and SIOCGIFFLAGS writes) one
            // `ifreq`, which `req` is and which outlives the call.
            check(unsafe { libc::ioctl(s, request as _, req as *mut libc::ifreq) }).map(drop)
        };

        let mut req = ifreq(name);
        req.ifr_ifru.ifru_addr = sockaddr_v4(addr);
        set(libc::SIOCSIFADDR, &mut req)?;
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_netmask = sockaddr_v4(mask);
        set(libc::SIOCSIFNETMASK, &mut req)?;
        let mut req = ifreq(name);
        req.ifr_ifru.ifru_mtu = mtu;
        set(libc::SIOCSIFMTU, &mut req)?;
        let mut req = ifreq(name);
        set(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS just filled `ifru_flags`, so that is the union's live field.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        set(libc::SIOCSIFFLAGS, &mut req)
    }

    /// read(2) into `buf`.
    pub(super) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, which is valid and
        // exclusively borrowed for the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// writev(2) of up to three parts (header, head, payload) as one frame, so none of them
    /// is copied into a frame buffer first.
    pub(super) fn writev(fd: RawFd, parts: &[&[u8]]) -> io::Result<usize> {
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty, empty, empty];
        let n = parts.len().min(iov.len());
        for (v, p) in iov.iter_mut().zip(&parts[..n]) {
            *v = libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            };
        }
        // SAFETY: the first `n` iovecs point into slices borrowed for the call, with their
        // true lengths; writev only reads through them (the `*mut` is the C type's spelling).
        let n = unsafe { libc::writev(fd, iov.as_ptr(), n as libc::c_int) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// readv(2) of one frame: the virtio-net header into `hdr`, the packet into `buf`.
    pub(super) fn readv(
        fd: RawFd,
        hdr: &mut [u8; VNET_HDR_LEN],
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let iov = [
            libc::iovec {
                iov_base: hdr.as_mut_ptr().cast(),
                iov_len: hdr.len(),
            },
            libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            },
        ];
        // SAFETY: both iovecs point into buffers exclusively borrowed for the call, with their
        // true lengths; the kernel writes at most that much into each.
        let n = unsafe { libc::readv(fd, iov.as_ptr(), iov.len() as libc::c_int) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synack_core::wire::{ip, TcpFlags, TcpRepr};

    const V4_SRC: [u8; 4] = [198, 18, 0, 2];
    const V4_DST: [u8; 4] = [198, 18, 0, 1];
    const V6_SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const V6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    #[test]
    fn only_completed_or_kernel_verified_checksums_are_vouched_for() {
        let hdr = |flags| VnetHdr {
            flags,
            ..VnetHdr::default()
        };
        assert!(checksum_vouched(&hdr(F_NEEDS_CSUM)));
        assert!(checksum_vouched(&hdr(F_DATA_VALID)));
        // A packet the kernel passes on as it came: the stack checks it.
        assert!(!checksum_vouched(&hdr(0)));
    }

    /// What a test segment looks like; `Default` is a plain full-size ACK.
    #[derive(Clone)]
    struct Seg {
        v6: bool,
        seq: u32,
        ack: u32,
        flags: u8,
        id: u16,
        tsval: u32,
        ports: (u16, u16),
        /// Options after the timestamp (a multiple of 4 bytes).
        extra_opts: Vec<u8>,
        payload: Vec<u8>,
    }

    impl Default for Seg {
        fn default() -> Self {
            Seg {
                v6: false,
                seq: 1000,
                ack: 77,
                flags: ACK,
                id: 0x1234,
                tsval: 5,
                ports: (40000, 5001),
                extra_opts: Vec::new(),
                payload: Vec::new(),
            }
        }
    }

    fn pattern(from: usize, len: usize) -> Vec<u8> {
        (from..from + len)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect()
    }

    /// An IP/TCP packet with correct checksums and a NOP NOP Timestamps option.
    fn build(s: &Seg) -> Vec<u8> {
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&s.ports.0.to_be_bytes());
        tcp.extend_from_slice(&s.ports.1.to_be_bytes());
        tcp.extend_from_slice(&s.seq.to_be_bytes());
        tcp.extend_from_slice(&s.ack.to_be_bytes());
        let hlen = 20 + 12 + s.extra_opts.len();
        tcp.push(((hlen / 4) as u8) << 4);
        tcp.push(s.flags);
        tcp.extend_from_slice(&1000u16.to_be_bytes()); // window
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        tcp.extend_from_slice(&[1, 1, 8, 10]);
        tcp.extend_from_slice(&s.tsval.to_be_bytes());
        tcp.extend_from_slice(&9u32.to_be_bytes()); // TSecr
        tcp.extend_from_slice(&s.extra_opts);
        tcp.extend_from_slice(&s.payload);
        let mut p = if s.v6 {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            h.extend_from_slice(&[6, 64]);
            h.extend_from_slice(&V6_SRC);
            h.extend_from_slice(&V6_DST);
            h
        } else {
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + tcp.len()) as u16).to_be_bytes());
            h.extend_from_slice(&s.id.to_be_bytes());
            h.extend_from_slice(&[0x40, 0, 64, 6, 0, 0]);
            h.extend_from_slice(&V4_SRC);
            h.extend_from_slice(&V4_DST);
            fill_ipv4_checksum(&mut h);
            h
        };
        let ip_len = p.len();
        p.extend_from_slice(&tcp);
        let l = TcpLayout::parse(&p).unwrap();
        let sum = l.pseudo_sum(&p, p.len() - ip_len) + checksum::partial(&p[ip_len..]);
        p[ip_len + 16..ip_len + 18].copy_from_slice(&checksum::finish(sum).to_be_bytes());
        p
    }

    /// Parses with synack's own wire code, which verifies every checksum.
    fn parse(p: &[u8]) -> (ip::IpRepr, TcpRepr<'_>) {
        let (ip, payload) = ip::parse(p).expect("IP header");
        let tcp =
            TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).expect("TCP segment");
        (ip, tcp)
    }

    /// A super-packet the way the kernel hands it over: one header, all the payload,
    /// NEEDS_CSUM with only the pseudo-header sum in the checksum field.
    fn kernel_super(s: &Seg, mss: u16) -> (VnetHdr, Vec<u8>) {
        let mut p = build(s);
        let l = TcpLayout::parse(&p).unwrap();
        let pseudo = checksum::fold(l.pseudo_sum(&p, p.len() - l.ip_len));
        p[l.ip_len + 16..l.ip_len + 18].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if s.v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: l.hdr_len as u16,
            gso_size: mss,
            csum_start: l.ip_len as u16,
            csum_offset: 16,
        };
        (hdr, p)
    }

    // ---- the header ----------------------------------------------------------------------

    #[test]
    fn vnet_header_round_trips_and_refuses_short_input() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 72,
            gso_size: 1428,
            csum_start: 40,
            csum_offset: 16,
        };
        assert_eq!(VnetHdr::parse(&h.to_bytes()), Ok(h));
        assert_eq!(
            VnetHdr::parse(&h.to_bytes()[..9]),
            Err(OffloadError::Truncated)
        );
        assert_eq!(VnetHdr::default().to_bytes(), [0; VNET_HDR_LEN]);
    }

    // ---- receive: splitting ----------------------------------------------------------------

    fn check_split(v6: bool) {
        let first = Seg {
            v6,
            seq: u32::MAX - 2000, // the sequence numbers wrap inside the super-packet
            flags: ACK | PSH | FIN | CWR,
            id: u16::MAX, // and so does the IPv4 identification
            payload: pattern(0, 4000),
            ..Seg::default()
        };
        let (hdr, packet) = kernel_super(&first, 1448);
        let segs = split_super_packet(&hdr, &packet).unwrap();
        assert_eq!(segs.len(), 3);
        let mut data = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            let (ip, tcp) = parse(seg);
            let want = if i < 2 { 1448 } else { 4000 - 2 * 1448 };
            assert_eq!(tcp.payload.len(), want, "segment {i}");
            assert_eq!(ip.payload_len(), 32 + want);
            assert_eq!(tcp.seq_number.0, first.seq.wrapping_add(1448 * i as u32));
            assert_eq!(tcp.ack_number.0, 77);
            let last = i == 2;
            assert_eq!(tcp.flags.contains(TcpFlags::FIN), last, "FIN on {i}");
            assert_eq!(tcp.flags.contains(TcpFlags::PSH), last, "PSH on {i}");
            assert_eq!(tcp.flags.contains(TcpFlags::CWR), i == 0, "CWR on {i}");
            assert!(tcp.flags.contains(TcpFlags::ACK));
            assert_eq!(tcp.timestamp.map(|t| t.tsval), Some(5));
            if !v6 {
                let id = u16::from_be_bytes([seg[4], seg[5]]);
                assert_eq!(id, u16::MAX.wrapping_add(i as u16));
            }
            data.extend_from_slice(tcp.payload);
        }
        assert_eq!(data, first.payload);
    }

    #[test]
    fn ipv4_super_packet_splits_like_kernel_gso() {
        check_split(false);
    }

    #[test]
    fn ipv6_super_packet_splits_like_kernel_gso() {
        check_split(true);
    }

    fn check_taken_whole(v6: bool) {
        let data = pattern(0, 1448 * 5 + 7);
        let s = Seg {
            v6,
            flags: ACK | PSH,
            payload: data.clone(),
            ..Seg::default()
        };
        let (hdr, p) = kernel_super(&s, 1448);
        assert!(whole(&hdr, &p).is_ok());
        // Taken as it is: one segment carrying it all, its checksum field left partial (the
        // stack is told it is verified, so it parses without the check).
        let (ip, payload) = ip::parse(&p).unwrap();
        let tcp = TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), true).unwrap();
        assert_eq!(tcp.payload, &data[..]);
        assert_eq!(tcp.seq_number.0, 1000);
        assert!(tcp.flags.contains(TcpFlags::PSH));
    }

    #[test]
    fn a_kernel_super_packet_is_taken_whole() {
        check_taken_whole(false);
        check_taken_whole(true);
    }

    #[test]
    fn only_sound_super_packets_are_taken_whole() {
        let s = Seg {
            payload: pattern(0, 3000),
            ..Seg::default()
        };
        // Trailing bytes past the IP length.
        let (hdr, mut p) = kernel_super(&s, 1448);
        p.extend_from_slice(&[0; 4]);
        assert!(whole(&hdr, &p).is_err());
        // A UDP GSO type on a TCP packet.
        let (mut hdr, p) = kernel_super(&s, 1448);
        hdr.gso_type = 5;
        assert!(whole(&hdr, &p).is_err());
        // An IPv6 GSO type on an IPv4 packet.
        let (mut hdr, p) = kernel_super(&s, 1448);
        hdr.gso_type = GSO_TCPV6;
        assert!(whole(&hdr, &p).is_err());
        // Truncated.
        let (hdr, p) = kernel_super(&s, 1448);
        assert!(whole(&hdr, &p[..100]).is_err());
    }

    #[test]
    fn exact_multiple_and_header_only_super_packets() {
        let s = Seg {
            payload: pattern(0, 3 * 1000),
            ..Seg::default()
        };
        let (hdr, p) = kernel_super(&s, 1000);
        let segs = split_super_packet(&hdr, &p).unwrap();
        assert_eq!(segs.len(), 3);
        assert!(segs.iter().all(|g| parse(g).1.payload.len() == 1000));
        let (hdr, p) = kernel_super(&Seg::default(), 1000);
        let segs = split_super_packet(&hdr, &p).unwrap();
        assert_eq!(segs.len(), 1);
        assert!(parse(&segs[0]).1.payload.is_empty());
    }

    #[test]
    fn splitting_refuses_inconsistent_super_packets() {
        let s = Seg {
            payload: pattern(0, 3000),
            ..Seg::default()
        };
        let (hdr, p) = kernel_super(&s, 1448);
        let v6 = VnetHdr {
            gso_type: GSO_TCPV6,
            ..hdr
        };
        assert_eq!(
            Segmenter::new(&v6, &p).unwrap_err(),
            OffloadError::UnsupportedGso(GSO_TCPV6)
        );
        let udp = VnetHdr { gso_type: 3, ..hdr };
        assert_eq!(
            Segmenter::new(&udp, &p).unwrap_err(),
            OffloadError::UnsupportedGso(3)
        );
        let zero = VnetHdr { gso_size: 0, ..hdr };
        assert_eq!(
            Segmenter::new(&zero, &p).unwrap_err(),
            OffloadError::ZeroGsoSize
        );
        // A buffer too small for a segment is an error, not a panic or a truncated packet.
        let mut seg = Segmenter::new(&hdr, &p).unwrap();
        let mut small = [0u8; 100];
        assert_eq!(
            seg.next_segment(&p, &mut small),
            Some(Err(OffloadError::BufferTooSmall))
        );
        assert_eq!(seg.next_segment(&p, &mut small), None);
        // Every truncation of the packet is refused cleanly.
        for cut in 0..p.len() {
            assert!(Segmenter::new(&hdr, &p[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // A deterministic scramble of a valid super-packet, under every gso type.
        let s = Seg {
            payload: pattern(0, 600),
            ..Seg::default()
        };
        let (hdr, good) = kernel_super(&s, 100);
        let mut state = 0x9e37_79b9u32;
        let mut out = vec![0u8; 2048];
        for round in 0..2000 {
            let mut p = good.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = state as usize % p.len();
                p[at] = (state >> 24) as u8;
            }
            let h = VnetHdr {
                gso_type: [GSO_TCPV4, GSO_TCPV6, GSO_TCPV4 | GSO_ECN][round % 3],
                gso_size: (state % 300) as u16,
                ..hdr
            };
            if let Ok(mut seg) = Segmenter::new(&h, &p) {
                let mut n = 0;
                while let Some(r) = seg.next_segment(&p, &mut out) {
                    if r.is_err() {
                        break;
                    }
                    n += 1;
                    assert!(n <= 700, "a segmenter must end");
                }
            }
            let _ = complete_checksum(&mut p, usize::from(h.csum_start), (state % 64) as usize);
        }
    }

    #[test]
    fn partial_checksum_of_a_plain_packet_is_completed() {
        let s = Seg {
            payload: pattern(3, 333), // odd length
            ..Seg::default()
        };
        let (hdr, mut p) = kernel_super(&s, 0);
        assert!(ip::parse(&p)
            .map(|(ip, pl)| TcpRepr::parse(pl, ip.src_addr(), ip.dst_addr(), false).is_err())
            .unwrap());
        complete_checksum(&mut p, usize::from(hdr.csum_start), 16).unwrap();
        assert_eq!(parse(&p).1.payload, &s.payload[..]);
        let len = p.len();
        assert_eq!(
            complete_checksum(&mut p, 20, len),
            Err(OffloadError::BadChecksumOffset)
        );
        assert_eq!(
            complete_checksum(&mut p, usize::MAX, 16),
            Err(OffloadError::BadChecksumOffset)
        );
    }

    // ---- send: coalescing ----------------------------------------------------------------

    /// `n` contiguous segments of `mss` (the last one `last` bytes), IDs counting up, PSH on
    /// the last, as synack's core emits them.
    fn train(v6: bool, n: usize, mss: usize, last: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut off = 0;
        for i in 0..n {
            let len = if i + 1 == n { last } else { mss };
            out.push(build(&Seg {
                v6,
                seq: 7u32.wrapping_sub(1500).wrapping_add(off as u32),
                id: 100 + i as u16,
                flags: if i + 1 == n { ACK | PSH } else { ACK },
                payload: pattern(off, len),
                ..Seg::default()
            }));
            off += len;
        }
        out
    }

    fn check_coalesce_round_trip(v6: bool) {
        let segs = train(v6, 3, 1448, 500);
        let mut c = Coalescer::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(c.push(s), "segment {i}");
            assert_eq!(c.is_closed(), i == 2, "closed after {i}");
        }
        assert_eq!(c.segments(), 3);
        let (hdr, frame) = c.frame().unwrap();
        let frame = frame.to_vec();
        let ip_len = if v6 { 40 } else { 20 };
        assert_eq!(hdr.flags, F_NEEDS_CSUM);
        assert_eq!(hdr.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
        assert_eq!(usize::from(hdr.gso_size), 1448);
        assert_eq!(usize::from(hdr.csum_start), ip_len);
        assert_eq!(hdr.csum_offset, 16);
        assert_eq!(usize::from(hdr.hdr_len), ip_len + 32);
        assert_eq!(frame.len(), ip_len + 32 + 1448 * 2 + 500);

        // What the kernel does with CHECKSUM_PARTIAL: finish it; then it is a valid segment
        // carrying all the data, with PSH from the last one.
        let mut done = frame.clone();
        complete_checksum(&mut done, ip_len, 16).unwrap();
        let (ip, tcp) = parse(&done);
        assert_eq!(ip.payload_len(), 32 + 1448 * 2 + 500);
        assert!(tcp.flags.contains(TcpFlags::PSH));
        let all: Vec<u8> = pattern(0, 1448 * 2 + 500);
        assert_eq!(tcp.payload, &all[..]);

        // And cutting it again as GSO would gives back the very segments we glued.
        assert_eq!(split_super_packet(&hdr, &frame).unwrap(), segs);
        c.clear();
        assert!(c.is_empty() && c.frame().is_none());
    }

    #[test]
    fn ipv4_segments_coalesce_and_split_back_identically() {
        check_coalesce_round_trip(false);
    }

    #[test]
    fn ipv6_segments_coalesce_and_split_back_identically() {
        check_coalesce_round_trip(true);
    }

    fn check_built_super_packet(v6: bool) {
        // Three full segments and a short one under one header, PSH and FIN on the whole:
        // what synack's core sends with segmentation offload.
        let data = pattern(0, 1448 * 3 + 500);
        let whole = build(&Seg {
            v6,
            flags: ACK | PSH | FIN,
            payload: data.clone(),
            ..Seg::default()
        });
        let f = SuperFrame::new(&whole, 1448).unwrap();
        assert_eq!(f.hdr.flags, F_NEEDS_CSUM);
        assert_eq!(f.hdr.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
        assert_eq!(usize::from(f.hdr.gso_size), 1448);
        assert_eq!(f.segments(whole.len()), 4);
        // The frame as written: the head copy, then the payload from where it lies.
        let frame = [f.head(), &whole[f.head().len()..]].concat();
        assert_eq!(frame.len(), whole.len());
        // The kernel's GSO cuts it into the segments the core would have sent one by one:
        // consecutive sequence numbers, PSH and FIN on the last only, valid checksums.
        let segs = split_super_packet(&f.hdr, &frame).unwrap();
        assert_eq!(segs.len(), 4);
        for (i, seg) in segs.iter().enumerate() {
            let (_, tcp) = parse(seg);
            assert_eq!(tcp.seq_number.0, 1000 + (i * 1448) as u32);
            let last = i == 3;
            assert_eq!(tcp.flags.contains(TcpFlags::FIN), last, "segment {i}");
            assert_eq!(tcp.flags.contains(TcpFlags::PSH), last, "segment {i}");
            let end = ((i + 1) * 1448).min(data.len());
            assert_eq!(tcp.payload, &data[i * 1448..end]);
        }
        // And completing the partial checksum over the whole frame gives the packet the core
        // built, byte for byte.
        let mut done = frame.clone();
        let ip_len = if v6 { 40 } else { 20 };
        complete_checksum(&mut done, ip_len, 16).unwrap();
        assert_eq!(done, whole);
    }

    #[test]
    fn a_super_packet_the_stack_built_is_cut_like_the_kernel_cuts_it() {
        check_built_super_packet(false);
        check_built_super_packet(true);
    }

    #[test]
    fn only_data_super_packets_get_a_tso_header() {
        let one = build(&Seg {
            payload: pattern(0, 1448),
            ..Seg::default()
        });
        assert!(
            SuperFrame::new(&one, 1448).is_none(),
            "one segment is no super-packet"
        );
        let syn = build(&Seg {
            flags: TcpFlags::SYN.0 | ACK,
            payload: pattern(0, 3000),
            ..Seg::default()
        });
        assert!(
            SuperFrame::new(&syn, 1448).is_none(),
            "SYN never goes under TSO"
        );
        let two = build(&Seg {
            payload: pattern(0, 2896),
            ..Seg::default()
        });
        assert!(SuperFrame::new(&two, 0).is_none());
        assert!(SuperFrame::new(&two, 70_000).is_none());
        let mut trailing = two.clone();
        trailing.extend_from_slice(&[0; 3]);
        assert!(SuperFrame::new(&trailing, 1448).is_none());
        assert!(SuperFrame::new(&two, 1448).is_some());
    }

    #[test]
    fn a_single_segment_goes_out_unchanged_with_a_zero_header() {
        let segs = train(false, 2, 1448, 1448);
        let mut c = Coalescer::new();
        assert!(c.push(&segs[0]));
        let (hdr, frame) = c.frame().unwrap();
        assert_eq!(hdr, VnetHdr::default());
        assert_eq!(frame, &segs[0][..]);
        // frame() closes the batch: nothing joins a batch that was offered for writing.
        assert!(!c.push(&segs[1]));
    }

    #[test]
    fn only_matching_segments_coalesce() {
        let base = Seg {
            payload: pattern(0, 1000),
            ..Seg::default()
        };
        let next = Seg {
            seq: base.seq + 1000,
            id: base.id + 1,
            payload: pattern(1000, 1000),
            ..base.clone()
        };
        let refused: Vec<(&str, Seg)> = vec![
            (
                "gap",
                Seg {
                    seq: next.seq + 1,
                    ..next.clone()
                },
            ),
            (
                "overlap",
                Seg {
                    seq: next.seq - 1,
                    ..next.clone()
                },
            ),
            (
                "other ack",
                Seg {
                    ack: 78,
                    ..next.clone()
                },
            ),
            (
                "other port",
                Seg {
                    ports: (40001, 5001),
                    ..next.clone()
                },
            ),
            (
                "FIN",
                Seg {
                    flags: ACK | FIN,
                    ..next.clone()
                },
            ),
            (
                "SYN",
                Seg {
                    flags: ACK | SYN,
                    ..next.clone()
                },
            ),
            (
                "CWR",
                Seg {
                    flags: ACK | CWR,
                    ..next.clone()
                },
            ),
            (
                "no ACK",
                Seg {
                    flags: PSH,
                    ..next.clone()
                },
            ),
            (
                "pure ACK",
                Seg {
                    payload: Vec::new(),
                    ..next.clone()
                },
            ),
            (
                "bigger",
                Seg {
                    payload: pattern(1000, 1001),
                    ..next.clone()
                },
            ),
            (
                "other options",
                Seg {
                    extra_opts: vec![1, 1, 1, 0],
                    ..next.clone()
                },
            ),
            (
                "IPv6",
                Seg {
                    v6: true,
                    ..next.clone()
                },
            ),
        ];
        for (why, seg) in refused {
            let mut c = Coalescer::new();
            assert!(c.push(&build(&base)));
            assert!(!c.push(&build(&seg)), "{why} was coalesced");
            assert_eq!(c.segments(), 1, "{why}");
        }
        // Timestamp values may differ: the first header's are kept.
        let mut c = Coalescer::new();
        assert!(c.push(&build(&base)));
        assert!(c.push(&build(&Seg {
            tsval: 6,
            ..next.clone()
        })));
        // A short segment closes the batch.
        let short = Seg {
            seq: next.seq + 1000,
            payload: pattern(2000, 10),
            ..next.clone()
        };
        assert!(c.push(&build(&short)));
        assert!(c.is_closed());
        let after = Seg {
            seq: short.seq + 10,
            ..next.clone()
        };
        assert!(!c.push(&build(&after)));
        // Packets that are no TCP candidates at all never start a batch.
        let mut c = Coalescer::new();
        assert!(!c.push(&build(&Seg {
            flags: ACK | SYN,
            ..base.clone()
        })));
        assert!(!c.push(&[0x45, 0, 0]));
        assert!(c.is_empty());
    }

    #[test]
    fn a_batch_stops_short_of_64_kib() {
        let segs = train(false, 60, 1448, 1448);
        let mut c = Coalescer::new();
        let taken = segs.iter().take_while(|s| c.push(s)).count();
        let (_, frame) = c.frame().unwrap();
        assert!(frame.len() <= 65535);
        assert_eq!(taken, (65535 - 52) / 1448);
        assert!(c.is_closed());
    }
}
