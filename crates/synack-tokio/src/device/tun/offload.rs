//! An offloading TUN device: one syscall moves up to 64 KiB of TCP instead of one segment.
//!
//! [`PlainTun`](super::PlainTun) pays a `read(2)` or `write(2)` per IP packet, and at
//! 1500-byte packets those syscalls, not TCP, bound the stack's throughput. Linux lets a TUN
//! reader take part in the kernel's segmentation offloads instead, the way a virtio-net guest
//! does: the device is opened with `IFF_VNET_HDR` and `TUNSETOFFLOAD` (see `sys`), so every
//! frame carries a [`VnetHdr`](super::vnet) and the kernel hands us, and takes from us, TSO
//! "super-packets" (one IP/TCP header, up to 64 KiB of payload, `gso_size` = the MSS).
//!
//! Its [`DeviceCapabilities`]: a `gso_max_size` of 64 KiB, receive checksum offload and
//! transmit checksum offload, so the stack builds super-segments itself and leaves their TCP
//! checksum partial.
//!
//! **Receive.** A super-packet whose checksum the kernel vouches for (`NEEDS_CSUM`, local data
//! it never summed, or `DATA_VALID`) goes to the stack whole, read straight into the driver's
//! buffer, with [`RecvMeta::segment_size`] = `gso_size` and
//! [`RecvMeta::checksum_verified`], as Linux's TCP takes a GRO or `CHECKSUM_PARTIAL` packet.
//! Any other is cut by the core's [`gso::Segmenter`] exactly as the kernel's software GSO
//! would, one segment per `poll_recv`, from the buffered super-packet with no further syscall.
//! An ordinary packet with `NEEDS_CSUM` has its checksum completed here.
//!
//! **Send.** A super-segment the stack built ([`Transmit::segment_size`]) is written behind a
//! TSO header whose `NEEDS_CSUM` points at the partial checksum the core left
//! ([`Transmit::checksum_partial`]); the payload goes with `writev` straight from the stack's
//! send buffer (the device gathers: [`Device::poll_send_gather`]), so the kernel's copy is
//! its only one after the application's write, and the kernel either delivers it whole to
//! its own TCP or cuts it. An ordinary packet with a partial checksum goes behind a
//! `NEEDS_CSUM` header without GSO. Single data segments sent back to back on one flow (when
//! the stack's GSO is off, say) are glued by the core's [`gso::Coalescer`] into one
//! super-packet; anything else is written alone.
//!
//! **When a batch is written.** A glued batch is written when the next packet does not fit,
//! when a short or PSH segment or ~64 KiB closes it, and at [`Device::poll_flush`], which the
//! driver calls after every burst of sends: a batch never outlives the burst that filled it.
//! Dropping the device makes one last non-blocking attempt.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use synack_core::wire::gso::{self, TcpChecksum, TcpLayout};
use synack_core::wire::{tcp, TcpFlags};
use synack_core::{Bytes, RecvMeta, Transmit};

use super::vnet::{VnetHdr, F_DATA_VALID, GSO_NONE, VNET_HDR_LEN};
use super::{Tun, TunConfig};
use crate::device::{Device, DeviceCapabilities};
#[cfg(feature = "netns")]
use crate::netns::NetNs;
use crate::shard::FlowSteering;

/// The largest super-packet either way: an IPv4 total length is 16 bits (RFC 791 §3.1).
const MAX_SUPER: usize = gso::MAX_IPV4_LEN;
/// The receive buffer: a header plus the largest IPv6 packet without jumbograms.
const RX_BUF: usize = VNET_HDR_LEN + gso::MAX_IPV6_LEN;
/// Reads per `poll_recv` that may be dropped as malformed before it yields.
const MAX_DROPS_PER_POLL: usize = 64;

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

/// A TUN device with the virtio-net header and TCP segmentation offload in both directions.
///
/// One system call moves up to 64 KiB of TCP: the kernel hands over its TSO super-packets,
/// which go to the stack whole (GRO) when the kernel vouches for their checksum and are cut
/// into segments otherwise; the stack's own super-segments go out behind a TSO header with
/// their checksum left partial for the kernel to finish; single segments sent back to back
/// are glued into one super-packet, written at the latest when the driver ends its burst
/// with [`Device::poll_flush`]. [`OffloadTun::counters`] shows what the offloads did.
///
/// Created like [`PlainTun`](super::PlainTun) (same [`TunConfig`], same address, MTU and
/// link handling); the interface lives as long as this value.
pub struct OffloadTun {
    tun: Tun,
    /// A frame read into our own buffer (header and packet): a super-packet being cut, or a
    /// read the caller's buffer was too small for.
    rx: Box<[u8]>,
    rx_len: usize,
    /// The header of the last read made straight into the caller's buffer.
    rx_hdr: [u8; VNET_HDR_LEN],
    /// The super-packet in `rx` being handed out segment by segment.
    split: Option<gso::Segmenter>,
    /// Single segments held to be written as one super-packet.
    batch: gso::Coalescer,
    /// The batch's first segment came with a partial checksum (alone, it is written so).
    batch_partial: bool,
    counters: OffloadCounters,
}

impl fmt::Debug for OffloadTun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OffloadTun")
            .field("name", &self.tun.name)
            .field("mtu", &self.tun.mtu)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

impl OffloadTun {
    /// Creates the device in the calling thread's network namespace, gives the kernel its
    /// address and MTU, and brings the link up. Must be called within a tokio runtime.
    pub fn create(config: &TunConfig) -> io::Result<OffloadTun> {
        Tun::open(config, true).map(OffloadTun::new)
    }

    /// Creates the device inside `ns` (on a thread that has joined it) and returns it here,
    /// as [`PlainTun::create_in`](super::PlainTun::create_in) does.
    #[cfg(feature = "netns")]
    pub fn create_in(ns: &NetNs, config: &TunConfig) -> io::Result<OffloadTun> {
        Tun::in_netns(ns, config, true, Tun::open).map(OffloadTun::new)
    }

    /// Attaches to a TUN interface that exists already, with the offloads; see
    /// [`TunDevice::attach`](super::TunDevice::attach).
    pub fn attach(config: &TunConfig) -> io::Result<OffloadTun> {
        Tun::attach(config, true).map(OffloadTun::new)
    }

    /// [`attach`](Self::attach) inside `ns`, on a thread that has joined it.
    #[cfg(feature = "netns")]
    pub fn attach_in(ns: &NetNs, config: &TunConfig) -> io::Result<OffloadTun> {
        Tun::in_netns(ns, config, true, Tun::attach).map(OffloadTun::new)
    }

    /// Takes a TUN file another program opened with `IFF_VNET_HDR` (`InvalidInput`
    /// without it), and turns the offloads on; see
    /// [`TunDevice::from_fd`](super::TunDevice::from_fd).
    pub fn from_fd(fd: std::os::fd::OwnedFd) -> io::Result<OffloadTun> {
        Tun::adopt(fd, Some(true)).map(OffloadTun::new)
    }

    pub(super) fn new(tun: Tun) -> OffloadTun {
        Self::with_counters(tun, OffloadCounters(Arc::default()))
    }

    /// A device on `tun` adding to `counters` (every queue of an interface shares one set).
    fn with_counters(tun: Tun, counters: OffloadCounters) -> OffloadTun {
        OffloadTun {
            tun,
            rx: vec![0; RX_BUF].into_boxed_slice(),
            rx_len: 0,
            rx_hdr: [0; VNET_HDR_LEN],
            split: None,
            batch: gso::Coalescer::with_max_len(MAX_SUPER),
            batch_partial: false,
            counters,
        }
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.tun.name
    }

    /// A handle on the counters, readable after the device has moved into a stack.
    pub fn counters(&self) -> OffloadCounters {
        self.counters.clone()
    }

    /// Writes the held batch, if any: pending while the kernel's queue is full; a frame the
    /// kernel refuses is dropped (counted in `tx_dropped`) and reported as `Ok`, like a lost
    /// packet.
    fn poll_write_batch(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some((hdr, frame, segments)) = batch_frame(&mut self.batch, self.batch_partial) else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(self.tun.poll_write(cx, &[&hdr.to_bytes(), frame]));
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

    /// Writes a super-segment the stack built behind a TSO header (`gso_size` = the segment
    /// size), the payload straight from `packet`: the kernel cuts it, or delivers it whole to
    /// its own TCP. A complete checksum is turned back into the partial one `NEEDS_CSUM` asks
    /// for, in a copy of the headers.
    fn poll_send_super(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
        segment_size: usize,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_batch(cx))?;
        let c = &self.counters.0;
        let layout = TcpLayout::parse(packet)
            .ok()
            .filter(|l| tso_describes(l, packet, packet.len(), segment_size));
        let (Some(layout), Ok(gso_size @ 1..)) = (layout, u16::try_from(segment_size)) else {
            // The stack builds only what a TSO header describes; anything else is lost.
            bump(&c.tx_dropped, 1);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a super-segment that TSO cannot describe",
            )));
        };
        let hdr = tso_header(&layout, packet, gso_size).to_bytes();
        let segments = layout.payload_len().div_ceil(segment_size) as u64;
        let mut head = [0u8; MAX_HEAD];
        let parts: [&[u8]; 3] = if transmit.checksum_partial {
            [&hdr, packet, &[]]
        } else {
            let Some(head) = head.get_mut(..layout.header_len) else {
                bump(&c.tx_dropped, 1);
                return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
            };
            head.copy_from_slice(&packet[..layout.header_len]);
            let sum = layout.partial_checksum(packet, layout.len - layout.ip_header_len);
            let at = layout.ip_header_len + usize::from(super::vnet::TCP_CSUM_OFFSET);
            head[at..at + 2].copy_from_slice(&sum.to_be_bytes());
            [&hdr, head, &packet[layout.header_len..]]
        };
        let result = ready!(self.tun.poll_write(cx, &parts));
        Poll::Ready(self.count_built(result, segments))
    }

    /// Writes a super-segment given in pieces ([`Device::poll_send_gather`]): behind its TSO
    /// header, `head` (its IP and TCP headers, checksum partial) and the payload from the
    /// stack's send buffer, in one `writev`, so that the kernel's copy is the payload's only
    /// one after the application's write.
    fn poll_send_pieces(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        payload: &[Bytes],
        transmit: &Transmit,
        segment_size: usize,
    ) -> Poll<io::Result<()>> {
        ready!(self.poll_write_batch(cx))?;
        let payload_len: usize = payload.iter().map(Bytes::len).sum();
        let layout = TcpLayout::parse_head(head, transmit.len).ok().filter(|l| {
            l.header_len == head.len()
                && head.len() + payload_len == transmit.len
                && tso_describes(l, head, transmit.len, segment_size)
        });
        let (Some(layout), Ok(gso_size @ 1..)) = (layout, u16::try_from(segment_size)) else {
            bump(&self.counters.0.tx_dropped, 1);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a super-segment that TSO cannot describe",
            )));
        };
        let hdr = tso_header(&layout, head, gso_size).to_bytes();
        let segments = layout.payload_len().div_ceil(segment_size) as u64;
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + payload.len());
        parts.push(&hdr);
        parts.push(head);
        parts.extend(payload.iter().map(|piece| &piece[..]));
        let result = ready!(self.tun.poll_write(cx, &parts));
        Poll::Ready(self.count_built(result, segments))
    }

    /// Counts the write of a super-segment the stack built, of `segments` segments.
    fn count_built(&self, result: io::Result<()>, segments: u64) -> io::Result<()> {
        let c = &self.counters.0;
        match result {
            Ok(()) => {
                bump(&c.super_packets_out, 1);
                bump(&c.super_packets_built, 1);
                bump(&c.segments_coalesced, segments);
                Ok(())
            }
            Err(e) => {
                bump(&c.tx_dropped, segments);
                Err(e)
            }
        }
    }

    /// Holds `packet` in the batch if it may join; `false` if it was not taken.
    fn hold(&mut self, cx: &mut Context<'_>, packet: &[u8], partial: bool) -> bool {
        let starts = self.batch.is_empty();
        if !self.batch.push(packet) {
            return false;
        }
        if starts {
            self.batch_partial = partial;
        }
        if self.batch.is_closed() {
            // Taken either way; a full kernel queue keeps the batch for the next call.
            let _ = self.poll_write_batch(cx);
        }
        true
    }

    /// A super-packet goes to the stack whole: counted, and vouched for.
    fn took_whole(&self, len: usize, hdr: &VnetHdr) -> RecvMeta {
        let c = &self.counters.0;
        bump(&c.gso_packets_in, 1);
        bump(&c.gso_packets_whole, 1);
        RecvMeta {
            len,
            checksum_verified: true,
            segment_size: Some(usize::from(hdr.gso_size)),
        }
    }

    /// A read made straight into `buf` (`n` bytes with the header, which went to `rx_hdr`):
    /// a super-packet the stack takes whole stays where it is; anything else goes the
    /// buffered way, as if it had been read into `rx`.
    fn take_direct(&mut self, buf: &mut [u8], n: usize) -> Option<RecvMeta> {
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            bump(&self.counters.0.rx_dropped, 1);
            return None;
        };
        if let Some(hdr) = VnetHdr::parse(&self.rx_hdr) {
            if hdr.gso_type != GSO_NONE && whole(&hdr, &buf[..len]) {
                return Some(self.took_whole(len, &hdr));
            }
        }
        self.rx[..VNET_HDR_LEN].copy_from_slice(&self.rx_hdr);
        self.rx[VNET_HDR_LEN..n].copy_from_slice(&buf[..len]);
        self.take_read(buf, n)
    }

    /// One read into `rx`, turned into the next packet for the stack, or `None` if it was
    /// dropped (a super-packet leaves its segmenter in `split`).
    fn take_read(&mut self, buf: &mut [u8], n: usize) -> Option<RecvMeta> {
        let c = &self.counters.0;
        let Some(hdr) = VnetHdr::parse(&self.rx[..n]) else {
            bump(&c.rx_dropped, 1);
            return None;
        };
        self.rx_len = n;
        let packet = &mut self.rx[VNET_HDR_LEN..n];
        if hdr.gso_type == GSO_NONE {
            // NEEDS_CSUM on an ordinary packet (the kernel leaves TCP and UDP so): finish the
            // sum here, where the header says it lies, whatever the headers before it (a
            // capture then shows it whole). Anything else the stack checks.
            let completed = hdr.complete_checksum(packet);
            let Some(out) = buf.get_mut(..packet.len()) else {
                bump(&c.rx_dropped, 1);
                return None;
            };
            out.copy_from_slice(packet);
            bump(&c.packets_in, 1);
            return Some(RecvMeta {
                len: packet.len(),
                checksum_verified: completed || hdr.flags & F_DATA_VALID != 0,
                segment_size: None,
            });
        }
        if whole(&hdr, packet) {
            if let Some(out) = buf.get_mut(..packet.len()) {
                out.copy_from_slice(packet);
                let len = packet.len();
                return Some(self.took_whole(len, &hdr));
            }
        }
        match gso::Segmenter::new(packet, usize::from(hdr.gso_size), TcpChecksum::Complete) {
            Ok(s) if hdr.describes(&s.layout(), packet.len()) => {
                bump(&c.gso_packets_in, 1);
                self.split = Some(s);
            }
            other => {
                tracing::debug!(result = ?other.err(), gso_type = hdr.gso_type, "dropping a super-packet");
                bump(&c.rx_dropped, 1);
            }
        }
        None
    }
}

/// Whether a TSO header can hand `packet` (with headers `layout`) to the kernel cut at
/// `segment_size`: TCP data under ACK (PSH and FIN allowed: `tcp_gso_segment` keeps them for
/// the last segment; ECE and CWR too, see [`tso_header`]; no SYN, RST or URG), no IPv4
/// options, no bytes past the IP length, more than one segment, at most 64 KiB.
/// `head` holds the packet's headers at least, `len` is its length.
fn tso_describes(layout: &TcpLayout, head: &[u8], len: usize, segment_size: usize) -> bool {
    let flags = tcp::Packet::new_unchecked(&head[layout.ip_header_len..]).flags();
    let riders = TcpFlags::PSH.0 | TcpFlags::FIN.0 | TcpFlags::ECE.0 | TcpFlags::CWR.0;
    let others = TcpFlags(flags.0 & !riders);
    others == TcpFlags::ACK
        && (layout.ipv6 || layout.ip_header_len == 20)
        && layout.len == len
        && len <= MAX_SUPER
        && layout.header_len <= MAX_HEAD
        && layout.payload_len() > segment_size
}

/// The TSO header for a super-segment that [`tso_describes`], cut at `gso_size`. An ECN
/// connection's super-segments carry ECE while it echoes a congestion mark, which every
/// segment the kernel cuts keeps (`tcp_gso_segment` copies the header), as RFC 3168 §6.1.3
/// has every ACK carry it; and CWR on the first new data after a window reduction, which
/// must stay on the first segment only (§6.1.2): `GSO_ECN` says so, as Linux's own TCP
/// marks such an skb `SKB_GSO_TCP_ECN` (`tcp_ecn_send`). Without these the device refused
/// the packet, and an ECN connection lost 64 KiB at each reduction, its CWR among them.
fn tso_header(layout: &TcpLayout, head: &[u8], gso_size: u16) -> VnetHdr {
    let mut hdr = VnetHdr::partial(layout, Some(gso_size));
    let flags = tcp::Packet::new_unchecked(&head[layout.ip_header_len..]).flags();
    if flags.contains(TcpFlags::CWR) {
        hdr.gso_type |= super::vnet::GSO_ECN;
    }
    hdr
}

/// A held batch as a frame to write: its virtio-net header, the packet, and how many segments
/// it holds; `None` if nothing is held. Several segments become a TSO super-packet with the
/// checksum left partial; a single one goes as it came, behind `NEEDS_CSUM` if it came so.
fn batch_frame(batch: &mut gso::Coalescer, partial: bool) -> Option<(VnetHdr, &[u8], u64)> {
    let done = batch.finish(TcpChecksum::Partial)?;
    let hdr = match done.segment_size {
        Some(size) => {
            let size = u16::try_from(size).unwrap_or(u16::MAX);
            VnetHdr::partial(&done.layout, Some(size))
        }
        None if partial => VnetHdr::partial(&done.layout, None),
        None => VnetHdr::default(),
    };
    Some((hdr, done.packet, done.segments as u64))
}

/// The most header bytes of a TCP packet: an IPv6 header and a TCP header with 40 bytes of
/// options.
const MAX_HEAD: usize = 40 + 60;

/// GRO: whether a super-packet read with `hdr` goes to the stack whole, as one large segment
/// (the stack counts it as the segments it holds, as Linux does). Only one whose checksum the
/// kernel vouches for is offered (see [`VnetHdr::checksum_vouched`]): like Linux's own TCP
/// with a `CHECKSUM_PARTIAL` packet, the stack then takes it as verified and nobody sums the
/// bytes; a capture shows the partial checksum field, as captures of offloaded packets do on
/// Linux. Anything else is left to the segmenter.
fn whole(hdr: &VnetHdr, packet: &[u8]) -> bool {
    hdr.checksum_vouched()
        && TcpLayout::parse(packet).is_ok_and(|layout| hdr.describes(&layout, packet.len()))
}

impl Device for OffloadTun {
    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities::new(self.tun.mtu)
            .with_gso_max_size(MAX_SUPER)
            .with_rx_checksum(true)
            .with_tx_checksum_partial(true)
            .with_tx_gather(true)
    }

    fn check(&mut self) -> io::Result<()> {
        self.tun.check()
    }

    /// The interface's MTU now (`ip link set dev NAME mtu N`).
    fn link_mtu(&mut self) -> Option<usize> {
        self.tun.link_mtu()
    }

    fn max_queues(&self) -> usize {
        self.tun.max_queues()
    }

    /// The broadcast address of [`TunConfig::host_addr`](super::TunConfig::host_addr)'s
    /// prefix.
    fn broadcast_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.tun.broadcast.into_iter().collect()
    }

    fn interface_name(&self) -> Option<String> {
        Some(self.tun.name.clone())
    }

    /// One more queue of the interface (see
    /// [`TunConfig::multi_queue`](super::TunConfig::multi_queue)), adding to the same
    /// counters.
    fn open_queue(&mut self) -> io::Result<OffloadTun> {
        Ok(OffloadTun::with_counters(
            self.tun.open_queue()?,
            self.counters.clone(),
        ))
    }

    fn steer_flows(&mut self, steering: &FlowSteering) -> io::Result<()> {
        self.tun.steer_flows(steering)
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        for _ in 0..MAX_DROPS_PER_POLL {
            if let Some(seg) = &mut self.split {
                match seg.next_segment(&self.rx[VNET_HDR_LEN..self.rx_len], buf) {
                    Some(Ok(len)) => {
                        bump(&self.counters.0.segments_split, 1);
                        // The segmenter has just computed this segment's checksum.
                        return Poll::Ready(Ok(RecvMeta {
                            len,
                            checksum_verified: true,
                            segment_size: None,
                        }));
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
                let n = ready!(self.tun.poll_read_split(cx, &mut self.rx_hdr, room))?;
                if let Some(meta) = self.take_direct(buf, n) {
                    return Poll::Ready(Ok(meta));
                }
                continue;
            }
            let n = ready!(self.tun.poll_read(cx, &mut self.rx))?;
            if let Some(meta) = self.take_read(buf, n) {
                return Poll::Ready(Ok(meta));
            }
        }
        // A run of malformed reads: let other tasks in, then come back for more.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        if let Some(size) = transmit.segment_size {
            return self.poll_send_super(cx, packet, transmit, size);
        }
        let partial = transmit.checksum_partial;
        // Continue the held batch, or write it first and start a new one.
        if !self.batch.is_empty() && self.hold(cx, packet, partial) {
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_write_batch(cx))?;
        if self.hold(cx, packet, partial) {
            return Poll::Ready(Ok(()));
        }
        let hdr = match TcpLayout::parse(packet) {
            Ok(layout) if partial => VnetHdr::partial(&layout, None),
            // A partial checksum on a packet we cannot place: the kernel would drop it.
            Err(_) if partial => {
                bump(&self.counters.0.tx_dropped, 1);
                return Poll::Ready(Err(io::ErrorKind::InvalidInput.into()));
            }
            _ => VnetHdr::default(),
        };
        match ready!(self.tun.poll_write(cx, &[&hdr.to_bytes(), packet])) {
            Ok(()) => bump(&self.counters.0.packets_out, 1),
            Err(e) => {
                bump(&self.counters.0.tx_dropped, 1);
                return Poll::Ready(Err(e));
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_send_gather(
        &mut self,
        cx: &mut Context<'_>,
        head: &[u8],
        payload: &[Bytes],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        match transmit.segment_size {
            Some(size) if transmit.checksum_partial && 2 + payload.len() <= super::sys::MAX_IOV => {
                self.poll_send_pieces(cx, head, payload, transmit, size)
            }
            // The stack gathers nothing else, and its payload is in a few chunks; anything
            // else goes whole.
            _ => {
                let (packet, whole) = crate::device::assemble(head, payload, transmit);
                self.poll_send(cx, &packet, &whole)
            }
        }
    }

    /// Writes the held batch, if any.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_batch(cx)
    }
}

impl Drop for OffloadTun {
    /// One last non-blocking attempt at a held batch: the driver's final flush may end with
    /// packets still in it.
    fn drop(&mut self) {
        if let Some((hdr, frame, _)) = batch_frame(&mut self.batch, self.batch_partial) {
            let hdr = hdr.to_bytes();
            let _ = self.tun.try_write(&[&hdr, frame]);
        }
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
#[path = "offload_tests.rs"]
mod tests;
