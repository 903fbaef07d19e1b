//! A device wrapper that records every packet, both directions, to a pcap file.
//!
//! The file is the classic libpcap format (not pcapng) with link type `LINKTYPE_RAW` (101):
//! each record is a bare IPv4 or IPv6 packet, exactly what a TUN device carries, so Wireshark,
//! tshark and tcpdump read it without a made-up Ethernet header. Records are buffered, and the
//! buffer is written out whenever the device goes idle (a receive finds nothing waiting) and
//! when the wrapper is dropped, so a capture is complete a moment after traffic stops.
//!
//! Recording must never stop the stack: if writing the file fails, the wrapper logs it once,
//! stops recording, and keeps passing packets.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use synack_core::{RecvMeta, Transmit};

use super::{Device, DeviceCapabilities};

/// The pcap magic for microsecond timestamps, written in native byte order (readers detect
/// the order from it).
const PCAP_MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// pcap format version 2.4, the only one in use.
const PCAP_VERSION: (u16, u16) = (2, 4);
/// `LINKTYPE_RAW`: the packet begins with an IPv4 or IPv6 header (tcpdump.org link types).
pub const LINKTYPE_RAW: u32 = 101;
/// The largest record length we claim to capture; packets are never truncated below it.
const SNAPLEN: u32 = 262_144;

/// Wraps a [`Device`] and writes every packet it receives or sends to a pcap file.
pub struct PcapDevice<D> {
    inner: D,
    path: PathBuf,
    /// `None` once writing failed: recording stopped, traffic goes on.
    out: Option<BufWriter<File>>,
    /// Records written since the last flush.
    dirty: bool,
}

impl<D: std::fmt::Debug> std::fmt::Debug for PcapDevice<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapDevice")
            .field("inner", &self.inner)
            .field("path", &self.path)
            .field("recording", &self.out.is_some())
            .finish()
    }
}

impl<D: Device> PcapDevice<D> {
    /// Creates (or truncates) the file at `path`, writes the pcap header, and wraps `inner`.
    pub fn new(inner: D, path: impl AsRef<Path>) -> io::Result<PcapDevice<D>> {
        let path = path.as_ref().to_path_buf();
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(&path)?);
        write_header(&mut out)?;
        // The header alone is already a valid, empty capture.
        out.flush()?;
        Ok(PcapDevice {
            inner,
            path,
            out: Some(out),
            dirty: false,
        })
    }

    /// The wrapped device.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably (packets sent through it directly are not recorded).
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The capture file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => {
                let result = out.flush();
                self.dirty = false;
                if result.is_err() {
                    self.out = None;
                }
                result
            }
            None => Err(io::Error::other("pcap recording stopped after an error")),
        }
    }

    fn record(&mut self, packet: &[u8]) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        match write_record(out, SystemTime::now(), packet) {
            Ok(()) => self.dirty = true,
            Err(e) => self.fail(e),
        }
    }

    /// Records `packet`, with its transport checksum computed whole first if `partial` (a
    /// copy, only while a recording is open; the packet itself is left as it is).
    fn record_summed(&mut self, packet: &[u8], partial: bool) {
        if partial && self.out.is_some() {
            let mut whole = packet.to_vec();
            recompute_checksum(&mut whole);
            self.record(&whole);
        } else {
            self.record(packet);
        }
    }

    fn fail(&mut self, e: io::Error) {
        tracing::warn!(path = %self.path.display(), error = %e, "pcap recording stopped");
        self.out = None;
    }
}

impl<D: Device> Device for PcapDevice<D> {
    /// The inner device's, but for gathered transmit: the recording needs every packet
    /// whole, which the core then writes into the driver's buffer at no extra cost.
    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities().with_tx_gather(false)
    }

    fn check(&mut self) -> io::Result<()> {
        self.inner.check()
    }

    fn link_mtu(&mut self) -> Option<usize> {
        self.inner.link_mtu()
    }

    fn broadcast_addresses(&self) -> Vec<std::net::Ipv4Addr> {
        self.inner.broadcast_addresses()
    }

    fn interface_name(&self) -> Option<String> {
        self.inner.interface_name()
    }

    /// Records the packet as the device gave it, a coalesced or super-packet whole, but with
    /// the transport checksum of one the device vouches for (`checksum_verified`) computed
    /// afresh: the kernel hands an offloading TUN its own TCP and UDP packets with only the
    /// pseudo-header summed (`VIRTIO_NET_HDR_F_NEEDS_CSUM`), which a recording would show
    /// as "incorrect" (a correct sum is rewritten unchanged).
    fn poll_recv(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<RecvMeta>> {
        match self.inner.poll_recv(cx, buf) {
            Poll::Ready(Ok(meta)) => {
                // A device never reports more than it was given; `get` keeps a faulty one
                // from making us panic.
                if let Some(packet) = buf.get(..meta.len) {
                    self.record_summed(packet, meta.checksum_verified);
                }
                Poll::Ready(Ok(meta))
            }
            Poll::Pending => {
                // Idle: a good moment to make the file current.
                if self.dirty {
                    if let Err(e) = self.flush() {
                        self.fail(e);
                    }
                }
                Poll::Pending
            }
            other => other,
        }
    }

    /// Records the packet as the core wrote it, a super-segment whole (as tcpdump on a Linux
    /// host shows the GSO packets its TCP hands the device), but with a partial checksum
    /// completed, as the device completes it: the recording shows every checksum valid,
    /// where a capture of an offloading NIC's transmissions shows "incorrect" ones that are
    /// no fault (checked with tshark's TCP checksum validation in the kernel tests).
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        packet: &[u8],
        transmit: &Transmit,
    ) -> Poll<io::Result<()>> {
        let result = self.inner.poll_send(cx, packet, transmit);
        if let Poll::Ready(Ok(())) = result {
            self.record_summed(packet, transmit.checksum_partial);
        }
        result
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_flush(cx)
    }
}

/// Computes the TCP or UDP checksum of `packet` from scratch (IPv4 options and IPv6
/// extension headers skipped), as a device completes a CHECKSUM_PARTIAL one (see
/// [`Transmit::checksum_partial`]): for what the core left partial and for a received packet
/// whose checksum field the device may have left partial. A packet that does not parse, carries something else, or is UDP
/// without a checksum (a zero field) is left as it is.
fn recompute_checksum(packet: &mut [u8]) {
    use synack_core::wire::{ip, tcp, udp, IpProtocol};
    let Ok((header, payload)) = ip::parse(packet) else {
        return;
    };
    let start = payload.as_ptr() as usize - packet.as_ptr() as usize;
    let end = start + payload.len();
    let (src, dst, protocol) = (header.src_addr(), header.dst_addr(), header.protocol());
    let Some(segment) = packet.get_mut(start..end) else {
        return;
    };
    match protocol {
        IpProtocol::Tcp => {
            if let Ok(mut t) = tcp::Packet::new_checked(segment) {
                t.fill_checksum(src, dst);
            }
        }
        IpProtocol::Udp => {
            // A zero field is no partial sum (the kernel's never is): over IPv4 it means no
            // checksum (RFC 768), over IPv6 a datagram the stack drops (RFC 8200 §8.1); the
            // recording keeps it as it came.
            if let Ok(mut u) = udp::UdpPacket::new_checked(segment) {
                if u.checksum() != 0 {
                    u.fill_checksum(src, dst);
                }
            }
        }
        _ => {}
    }
}

impl<D> Drop for PcapDevice<D> {
    fn drop(&mut self) {
        if let Some(out) = self.out.as_mut() {
            if let Err(e) = out.flush() {
                tracing::warn!(path = %self.path.display(), error = %e, "pcap flush failed");
            }
        }
    }
}

/// The 24-byte pcap global header.
fn write_header(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&PCAP_MAGIC_MICROS.to_ne_bytes())?;
    out.write_all(&PCAP_VERSION.0.to_ne_bytes())?;
    out.write_all(&PCAP_VERSION.1.to_ne_bytes())?;
    out.write_all(&0i32.to_ne_bytes())?; // thiszone: timestamps are UTC
    out.write_all(&0u32.to_ne_bytes())?; // sigfigs: always 0
    out.write_all(&SNAPLEN.to_ne_bytes())?;
    out.write_all(&LINKTYPE_RAW.to_ne_bytes())
}

/// One record: a 16-byte header (seconds, microseconds, captured and original lengths) and
/// the packet.
fn write_record(out: &mut impl Write, at: SystemTime, packet: &[u8]) -> io::Result<()> {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    // The classic format has 32-bit seconds; that lasts until 2106.
    let secs = u32::try_from(since_epoch.as_secs()).unwrap_or(u32::MAX);
    let len = u32::try_from(packet.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "packet too large for pcap"))?;
    let captured = len.min(SNAPLEN);
    out.write_all(&secs.to_ne_bytes())?;
    out.write_all(&since_epoch.subsec_micros().to_ne_bytes())?;
    out.write_all(&captured.to_ne_bytes())?;
    out.write_all(&len.to_ne_bytes())?;
    out.write_all(&packet[..captured as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn header_is_classic_pcap_with_raw_ip() {
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        assert_eq!(out.len(), 24);
        assert_eq!(
            u32::from_ne_bytes(out[0..4].try_into().unwrap()),
            0xa1b2c3d4
        );
        assert_eq!(u16::from_ne_bytes(out[4..6].try_into().unwrap()), 2);
        assert_eq!(u16::from_ne_bytes(out[6..8].try_into().unwrap()), 4);
        assert_eq!(u32::from_ne_bytes(out[16..20].try_into().unwrap()), SNAPLEN);
        assert_eq!(u32::from_ne_bytes(out[20..24].try_into().unwrap()), 101);
    }

    /// An IPv4 packet from `src` to `dst` (198.18.0.x, x given) carrying a TCP header and
    /// 5 bytes of data, its TCP checksum field holding only the pseudo-header's sum: what
    /// an offloading device leaves for the other side to finish.
    fn partial_tcp_v4(src: u8, dst: u8) -> (Vec<u8>, std::net::IpAddr, std::net::IpAddr) {
        use synack_core::wire::{checksum, IpProtocol};
        let (s, d) = ([198, 18, 0, src], [198, 18, 0, dst]);
        let mut packet = vec![0u8; 45];
        packet[..12].copy_from_slice(&[0x45, 0, 0, 45, 0, 0, 0x40, 0, 64, 6, 0, 0]);
        packet[12..16].copy_from_slice(&s);
        packet[16..20].copy_from_slice(&d);
        let ip_sum = checksum::finish(checksum::partial(&packet[..20]));
        packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        packet[20..24].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        packet[32] = 5 << 4;
        packet[33] = 0x18;
        packet[40..].copy_from_slice(b"hello");
        let (src, dst) = (s.into(), d.into());
        let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, 25).unwrap();
        packet[36..38].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        (packet, src, dst)
    }

    /// A partial checksum is recorded complete: the TCP checksum of the recorded packet
    /// verifies against its addresses.
    #[test]
    fn partial_checksums_are_completed_in_the_record() {
        use synack_core::wire::TcpRepr;
        let (mut packet, src, dst) = partial_tcp_v4(2, 1);
        assert!(
            TcpRepr::parse(&packet[20..], src, dst, false).is_err(),
            "partial"
        );
        recompute_checksum(&mut packet);
        assert!(
            TcpRepr::parse(&packet[20..], src, dst, false).is_ok(),
            "completed"
        );
    }

    /// A received packet's checksum is computed afresh: a partial one (TCP over IPv4, UDP
    /// over IPv6 behind a Hop-by-Hop header) becomes whole, a whole one stays as it was, and
    /// what does not parse (a UDP length past the packet) is left alone.
    #[test]
    fn received_checksums_are_recomputed_in_the_record() {
        use std::net::IpAddr;
        use synack_core::wire::{checksum, IpProtocol, TcpRepr, UdpRepr};
        let (mut tcp, src, dst) = partial_tcp_v4(1, 2);
        assert!(TcpRepr::parse(&tcp[20..], src, dst, false).is_err());
        recompute_checksum(&mut tcp);
        assert!(TcpRepr::parse(&tcp[20..], src, dst, false).is_ok());
        let whole = tcp.clone();
        recompute_checksum(&mut tcp);
        assert_eq!(tcp, whole);

        let (src6, dst6): (IpAddr, IpAddr) =
            ("2001:2::1".parse().unwrap(), "2001:2::2".parse().unwrap());
        let mut udp = vec![0x60, 0, 0, 0, 0, 21, 0, 64];
        for a in [src6, dst6] {
            let IpAddr::V6(a) = a else { unreachable!() };
            udp.extend_from_slice(&a.octets());
        }
        udp.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        udp.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 13, 0, 0]);
        udp.extend_from_slice(b"query");
        let pseudo = checksum::pseudo_header(src6, dst6, IpProtocol::Udp, 13).unwrap();
        udp[54..56].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
        assert!(UdpRepr::parse(&udp[48..], src6, dst6, false).is_err());
        recompute_checksum(&mut udp);
        assert!(UdpRepr::parse(&udp[48..], src6, dst6, false).is_ok());
        let mut long = udp.clone();
        long[52..54].copy_from_slice(&200u16.to_be_bytes());
        let before = long.clone();
        recompute_checksum(&mut long);
        assert_eq!(long, before);
        // A zero UDP checksum is none over IPv4 and invalid over IPv6 (the stack drops
        // that datagram): recorded as it came, not with a sum it never had.
        let mut v4 = vec![
            0x45, 0, 0, 33, 0, 0, 0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        let ip_sum = checksum::finish(checksum::partial(&v4[..20]));
        v4[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        v4.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 13, 0, 0]);
        v4.extend_from_slice(b"query");
        let mut zero6 = udp.clone();
        zero6[54..56].fill(0);
        for zero in [v4, zero6] {
            let mut recorded = zero.clone();
            recompute_checksum(&mut recorded);
            assert_eq!(recorded, zero);
        }
    }

    #[test]
    fn record_carries_time_lengths_and_bytes() {
        let mut out = Vec::new();
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        write_record(&mut out, at, &[0x45, 1, 2, 3, 4]).unwrap();
        let word = |i: usize| u32::from_ne_bytes(out[i..i + 4].try_into().unwrap());
        assert_eq!(word(0), 1_700_000_000);
        assert_eq!(word(4), 123_456);
        assert_eq!(word(8), 5);
        assert_eq!(word(12), 5);
        assert_eq!(&out[16..], &[0x45, 1, 2, 3, 4]);
    }
}
