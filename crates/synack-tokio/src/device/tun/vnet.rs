//! The virtio-net header (`struct virtio_net_hdr`, include/uapi/linux/virtio_net.h; virtio
//! 1.1 §5.1.6) that a TUN opened with `IFF_VNET_HDR` puts in front of every packet, both ways.
//!
//! It says how the packet's checksum stands (complete, partial, or verified by the kernel)
//! and whether the packet is a TSO super-packet to be cut at `gso_size`. This module only
//! reads and writes the header; the packet under it is read, cut and glued with the core's
//! `wire::gso`.

use synack_core::wire::checksum;
use synack_core::wire::gso::TcpLayout;

/// Bytes of `struct virtio_net_hdr` (without `num_buffers`), set with `TUNSETVNETHDRSZ`.
pub(crate) const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the bytes from `csum_start` to the end still have to be added.
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the kernel has verified the checksum (`CHECKSUM_UNNECESSARY`).
pub(crate) const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`: one ordinary packet.
pub(crate) const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: an IPv4 TCP super-packet to be cut at `gso_size`.
pub(crate) const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: an IPv6 TCP super-packet to be cut at `gso_size`.
pub(crate) const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_ECN`: the super-packet carries CWR, to be kept on its first segment
/// only. The kernel takes it on a frame we write whatever offloads we asked for
/// (`virtio_net_hdr_to_skb`); it sets it on a frame we read only with `TUN_F_TSO_ECN`.
pub(crate) const GSO_ECN: u8 = 0x80;
/// Where the checksum lies in a TCP header (RFC 9293 §3.1): the `csum_offset` of TCP.
pub(crate) const TCP_CSUM_OFFSET: u16 = 16;

/// `struct virtio_net_hdr`, as the TUN driver reads and writes it.
///
/// Multi-byte fields are in the host's byte order: without `TUNSETVNETLE`/`TUNSETVNETBE` a TUN
/// uses the legacy virtio layout, which is native-endian (drivers/net/tun.c `tun16_to_cpu`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID` or 0.
    pub(crate) flags: u8,
    /// `GSO_NONE`, `GSO_TCPV4` or `GSO_TCPV6`, possibly with `GSO_ECN`.
    pub(crate) gso_type: u8,
    /// IP plus TCP header length of a super-packet (a hint; we parse the headers ourselves).
    pub(crate) hdr_len: u16,
    /// Payload bytes per segment.
    pub(crate) gso_size: u16,
    /// Where checksumming starts (the transport header).
    pub(crate) csum_start: u16,
    /// Where, after `csum_start`, the checksum goes (16 for TCP).
    pub(crate) csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`VNET_HDR_LEN`] bytes of `buf`; `None` if it is
    /// shorter.
    pub(crate) fn parse(buf: &[u8]) -> Option<VnetHdr> {
        let b: &[u8; VNET_HDR_LEN] = buf.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header's wire bytes.
    pub(crate) fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// Whether the stack need not verify the checksum of a packet read with this header:
    /// with `NEEDS_CSUM` the kernel never summed local data and the field holds the
    /// pseudo-header sum (like Linux's TCP with a `CHECKSUM_PARTIAL` packet, nobody sums it),
    /// or the device has just completed it; with `DATA_VALID` the kernel has verified it.
    /// Without either flag (a packet the kernel forwarded from some wire, say) the stack
    /// verifies it.
    pub(crate) fn checksum_vouched(&self) -> bool {
        self.flags & (F_NEEDS_CSUM | F_DATA_VALID) != 0
    }

    /// The header that hands a TCP packet with headers `layout` to the kernel with its TCP
    /// checksum left partial (`NEEDS_CSUM`: the field at `csum_start + 16` holds the
    /// pseudo-header sum) and, for `Some(gso_size)`, as a TSO super-packet to be cut at
    /// `gso_size`: `tcp_gso_segment` adjusts the partial sum per segment, and local delivery
    /// trusts it as `CHECKSUM_PARTIAL`.
    pub(crate) fn partial(layout: &TcpLayout, gso_size: Option<u16>) -> VnetHdr {
        let (gso_type, gso_size) = match gso_size {
            Some(size) if layout.ipv6 => (GSO_TCPV6, size),
            Some(size) => (GSO_TCPV4, size),
            None => (GSO_NONE, 0),
        };
        VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: u16::try_from(layout.header_len).unwrap_or(u16::MAX),
            gso_size,
            csum_start: u16::try_from(layout.ip_header_len).unwrap_or(u16::MAX),
            csum_offset: TCP_CSUM_OFFSET,
        }
    }

    /// Finishes the checksum that a `NEEDS_CSUM` packet read with this header leaves partial,
    /// where the header says it lies: the sum of the bytes from `csum_start` to the end goes
    /// in the field at `csum_start + csum_offset`, which holds the pseudo-header's (virtio
    /// 1.1 §5.1.6.2, as the kernel's `skb_checksum_help` finishes it), TCP or UDP, whatever
    /// comes before the transport header. `false` if the header points outside the packet or
    /// asks for nothing.
    pub(crate) fn complete_checksum(&self, packet: &mut [u8]) -> bool {
        let start = usize::from(self.csum_start);
        let at = start + usize::from(self.csum_offset);
        if self.flags & F_NEEDS_CSUM == 0 || at + 2 > packet.len() {
            return false;
        }
        let sum = match checksum::finish(checksum::partial(&packet[start..])) {
            // 0 is "no checksum" to UDP (RFC 768); its complement verifies the same.
            0 => 0xffff,
            sum => sum,
        };
        packet[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        true
    }

    /// Whether a super-packet read with this header, whose headers are `layout` and which is
    /// `len` bytes long, is one we asked for: TCP of the IP version the header names (TSO,
    /// possibly with ECN), a non-zero `gso_size`, and no bytes past the IP length.
    pub(crate) fn describes(&self, layout: &TcpLayout, len: usize) -> bool {
        let kind_matches = match self.gso_type & !GSO_ECN {
            GSO_TCPV4 => !layout.ipv6,
            GSO_TCPV6 => layout.ipv6,
            _ => false,
        };
        kind_matches && self.gso_size > 0 && layout.len == len
    }
}
