//! Round-trip properties of the wire layer.
//!
//! Parsing hostile bytes must return a value or a typed error (a panic is the bug libFuzzer
//! reports by itself). What parses must also mean the same thing after being emitted again:
//! `parse(emit(parse(bytes)))` equals `parse(bytes)`, up to the normalisations the emitters
//! document (IPv4 options and IPv6 extension headers are not re-emitted; SACK blocks that do
//! not fit beside the other options are dropped).

use std::net::IpAddr;

use arbitrary::Arbitrary;
use synack_core::wire::{
    self, checksum, icmp, ipv4, tcp, FastOpenCookie, IcmpRepr, IpProtocol, IpRepr, TcpFlags,
    TcpRepr, TcpTimestamp,
};
use synack_core::SeqNumber;

/// The fixed address pairs the TCP target parses against.
pub const V4_PAIR: (IpAddr, IpAddr) = (
    IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 1)),
    IpAddr::V4(std::net::Ipv4Addr::new(198, 18, 0, 2)),
);
/// The IPv6 pair (documentation prefix, RFC 3849).
pub const V6_PAIR: (IpAddr, IpAddr) = (
    IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 2)),
);

// ------------------------------------------------------------------------------------------
// ip_parse
// ------------------------------------------------------------------------------------------

/// The `ip_parse` target: byte 0 says which checksums to repair, the rest is an IP packet.
///
/// Random mutations almost never keep a checksum valid, so without repair the fuzzer would
/// only ever see `WireError::Checksum` past the first mutation. Bit 0 repairs the IPv4 header
/// checksum, bit 1 the TCP/ICMP checksum; the seeds from the Linux capture set both.
pub fn ip_packet(data: &[u8]) {
    let Some((&control, packet)) = data.split_first() else {
        return;
    };
    // One copy of an input libFuzzer already bounds (-max_len): not an unbounded allocation.
    let mut packet = packet.to_vec();
    if control & 1 != 0 {
        repair_ipv4_header(&mut packet);
    }
    if control & 2 != 0 {
        repair_upper_checksum(&mut packet);
    }
    check_ip(&packet);
    check_gso(&packet, 1 + usize::from(control >> 2) * 23);
    check_fragments(&packet, 68 + usize::from(control >> 2) * 151);
}

/// Fragments (`wire::fragment`): what `parse` calls a fragment parses as one without a panic,
/// its slices inside the packet; and a packet cut at `mtu` gives pieces within the MTU whose
/// data, in order, is the packet's, and which put back together give a packet of the same
/// length that parses as the original did.
fn check_fragments(packet: &[u8], mtu: usize) {
    use synack_core::testing::join_fragments;
    use synack_core::wire::fragment::{split, Fragment};
    if let Ok(f) = Fragment::parse(packet) {
        assert!(
            f.header.len() + f.data.len() <= packet.len(),
            "a fragment's slices"
        );
        let _ = f.max_payload();
    }
    let Some(pieces) = split(packet, mtu, 0x0102_0304) else {
        return;
    };
    assert!(
        pieces.iter().all(|p| p.len() <= mtu),
        "a piece past the MTU"
    );
    let whole = join_fragments(&pieces);
    let data: usize = pieces
        .iter()
        .map(|p| Fragment::parse(p).map_or(0, |f| f.data.len()))
        .sum();
    let header = Fragment::parse(&pieces[0]).map_or(0, |f| f.header.len());
    assert_eq!(whole.len(), header + data);
    if let Ok((ip, payload)) = wire::ip::parse(packet) {
        let (ip2, payload2) = wire::ip::parse(&whole).expect("the rebuilt packet parses");
        assert_eq!(
            (ip2.protocol(), payload2),
            (ip.protocol(), payload),
            "rebuilt"
        );
    }
}

/// GSO and GRO on the same bytes (`wire::gso`): cutting at `size` never panics, and when it
/// succeeds the segments carry the packet's payload, in order, each under the same headers;
/// gluing them back never panics and, when every segment is taken, gives back that payload.
fn check_gso(packet: &[u8], size: usize) {
    use synack_core::wire::gso::{self, TcpChecksum, TcpLayout};
    let Ok(segments) = gso::split(packet, size, TcpChecksum::Complete) else {
        return;
    };
    let layout = TcpLayout::parse(packet).expect("split parsed it");
    let payload = &packet[layout.header_len..layout.len];
    let mut joined = Vec::with_capacity(payload.len());
    let mut coalescer = gso::Coalescer::new();
    let mut all_taken = true;
    for s in &segments {
        let l = TcpLayout::parse(s).expect("a segment parses as the packet did");
        assert_eq!(
            l.header_len, layout.header_len,
            "a segment's headers changed length"
        );
        assert!(
            l.payload_len() <= size,
            "a segment is larger than the segment size"
        );
        joined.extend_from_slice(&s[l.header_len..l.len]);
        all_taken &= coalescer.push(s);
    }
    assert_eq!(
        joined, payload,
        "the segments do not carry the packet's payload"
    );
    if let Some(out) = coalescer.finish(TcpChecksum::Complete) {
        if all_taken {
            let l = out.layout;
            assert_eq!(
                &out.packet[l.header_len..l.len],
                payload,
                "gluing lost bytes"
            );
        }
    }
}

/// Recomputes an IPv4 header checksum in place, when the header is there to checksum.
fn repair_ipv4_header(packet: &mut [u8]) {
    let Some(&first) = packet.first() else {
        return;
    };
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 == 4 && ihl >= ipv4::HEADER_LEN && ihl <= packet.len() {
        ipv4::Packet::new_unchecked(&mut packet[..]).fill_checksum();
    }
}

/// Recomputes the TCP, ICMPv4 or ICMPv6 checksum of a packet whose IP layer parses.
fn repair_upper_checksum(packet: &mut [u8]) {
    let Ok((ip, payload)) = wire::ip::parse(packet) else {
        return;
    };
    // Where the upper-layer payload starts: `parse` returns a subslice of `packet`.
    let start = payload.as_ptr() as usize - packet.as_ptr() as usize;
    let range = start..start + payload.len();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let upper = &mut packet[range];
    match (ip.protocol(), src, dst) {
        (IpProtocol::Tcp, _, _) if upper.len() >= tcp::HEADER_LEN => {
            tcp::Packet::new_unchecked(upper).fill_checksum(src, dst);
        }
        (IpProtocol::Udp, _, _) => {
            // Only a datagram whose length field fits: else there is nothing to sum.
            if let Ok(mut u) = wire::udp::UdpPacket::new_checked(upper) {
                u.fill_checksum(src, dst);
            }
        }
        (IpProtocol::Icmp, IpAddr::V4(_), _) if upper.len() >= icmp::HEADER_LEN => {
            upper[2..4].fill(0);
            let c = checksum::finish(checksum::partial(upper));
            upper[2..4].copy_from_slice(&c.to_be_bytes());
        }
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d)) if upper.len() >= icmp::HEADER_LEN => {
            upper[2..4].fill(0);
            let len = u32::try_from(upper.len()).unwrap_or(u32::MAX);
            let pseudo = checksum::pseudo_header_v6(s, d, IpProtocol::Icmpv6, len);
            let c = checksum::finish(pseudo + checksum::partial(upper));
            upper[2..4].copy_from_slice(&c.to_be_bytes());
        }
        _ => {}
    }
}

/// Parses an IP packet and everything inside it, checking every round trip on the way.
pub fn check_ip(packet: &[u8]) {
    let Ok((ip, payload)) = wire::ip::parse(packet) else {
        return;
    };
    assert_eq!(
        ip.payload_len(),
        payload.len(),
        "repr length = payload slice"
    );

    // IP round trip: header emitted without options / extension headers, same meaning.
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut buf);
    buf[ip.header_len()..].copy_from_slice(payload);
    let (ip2, payload2) = wire::ip::parse(&buf).expect("an emitted IP header parses");
    assert_eq!(ip2, ip, "IP repr round trip");
    assert_eq!(payload2, payload, "IP payload round trip");

    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match (ip.protocol(), src, dst) {
        (IpProtocol::Tcp, _, _) => {
            if let Ok(seg) = TcpRepr::parse(payload, src, dst, false) {
                check_tcp_round_trip(&seg, src, dst);
            }
        }
        (IpProtocol::Udp, _, _) => {
            if let Ok(d) = wire::UdpRepr::parse(payload, src, dst, false) {
                check_udp_round_trip(&d, src, dst);
            }
        }
        (IpProtocol::Icmp, IpAddr::V4(_), _) => {
            if let Ok(msg) = IcmpRepr::parse_v4(payload) {
                check_icmp_round_trip(&msg, None);
            }
        }
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d)) => {
            if let Ok(msg) = IcmpRepr::parse_v6(payload, s, d) {
                check_icmp_round_trip(&msg, Some((s, d)));
            }
        }
        _ => {}
    }
}

/// UDP (RFC 768): what parses emits into a datagram that parses to the same ports and
/// payload, with a checksum that verifies (never the zero of "no checksum").
fn check_udp_round_trip(d: &wire::UdpRepr<'_>, src: IpAddr, dst: IpAddr) {
    let mut buf = vec![0u8; d.buffer_len()];
    d.emit(&mut buf, src, dst);
    let again = wire::UdpRepr::parse(&buf, src, dst, false).expect("an emitted datagram parses");
    assert_eq!(
        (again.src_port, again.dst_port, again.payload),
        (d.src_port, d.dst_port, d.payload),
        "UDP round trip"
    );
    assert_ne!(&buf[6..8], &[0, 0], "an emitted UDP checksum is never zero");
}

/// ICMP: emit then parse gives the same repr; the quoted packet of an error never panics the
/// connection lookup.
fn check_icmp_round_trip(msg: &IcmpRepr<'_>, v6: Option<(std::net::Ipv6Addr, std::net::Ipv6Addr)>) {
    let mut buf = vec![0u8; msg.buffer_len()];
    let again = match v6 {
        None => {
            msg.emit_v4(&mut buf);
            IcmpRepr::parse_v4(&buf)
        }
        Some((s, d)) => {
            msg.emit_v6(&mut buf, s, d);
            IcmpRepr::parse_v6(&buf, s, d)
        }
    };
    assert_eq!(again.as_ref(), Ok(msg), "ICMP round trip");
    if let IcmpRepr::DstUnreachable { invoking, .. }
    | IcmpRepr::PacketTooBig { invoking, .. }
    | IcmpRepr::TimeExceeded { invoking, .. } = *msg
    {
        let _ = icmp::invoking_tcp(invoking);
    }
}

// ------------------------------------------------------------------------------------------
// TCP
// ------------------------------------------------------------------------------------------

/// The SACK blocks `emit` keeps for `seg`: the given blocks, front-filled, cut to what fits
/// in the 40-byte option area after the other options in the layout `emit` documents (MSS 4,
/// timestamps 12 or SACK-permitted 4, window scale 4, Fast Open 2 + cookie padded to a
/// word, then 4 + 8n).
pub fn expected_sack_after_emit(seg: &TcpRepr<'_>) -> [Option<(SeqNumber, SeqNumber)>; 4] {
    let mut used = 0;
    if seg.max_seg_size.is_some() {
        used += 4;
    }
    if seg.timestamp.is_some() {
        used += 12;
    } else if seg.sack_permitted {
        used += 4;
    }
    if seg.window_scale.is_some() {
        used += 4;
    }
    if let Some(cookie) = seg.fast_open {
        used += (2 + cookie.as_bytes().len()).div_ceil(4) * 4;
    }
    let room = (tcp::MAX_OPTIONS_LEN.saturating_sub(used + 4)) / 8;
    let mut out = [None; 4];
    for (slot, block) in out
        .iter_mut()
        .zip(seg.sack_ranges.iter().flatten().take(room))
    {
        *slot = Some(*block);
    }
    out
}

/// TCP: emit then parse gives the same repr, SACK blocks normalised as `emit` documents; the
/// emitted header is a legal length and carries a valid checksum (parse checks it).
pub fn check_tcp_round_trip(seg: &TcpRepr<'_>, src: IpAddr, dst: IpAddr) {
    let header_len = seg.header_len();
    assert!(
        (tcp::HEADER_LEN..=tcp::MAX_HEADER_LEN).contains(&header_len)
            && header_len.is_multiple_of(4),
        "emitted header length {header_len}"
    );
    let mut buf = vec![0u8; seg.buffer_len()];
    seg.emit(&mut buf, src, dst);
    let again = TcpRepr::parse(&buf, src, dst, false);
    let mut expected = *seg;
    expected.sack_ranges = expected_sack_after_emit(seg);
    // A signature is parsed, never emitted: synack signs nothing.
    expected.signed = false;
    assert_eq!(again, Ok(expected), "TCP round trip");
}

/// The `tcp_options` target's input: a TCP header with fuzzed fields and a fuzzed option
/// area, or a repr with fuzzed fields to emit.
#[derive(Debug, Arbitrary)]
pub enum TcpInput {
    /// Bytes → parse → emit → parse.
    Header(HeaderInput),
    /// Repr → emit → parse.
    Repr(ReprInput),
}

/// A TCP header built from fields; the checksum is filled in unless `bad_checksum`.
#[derive(Debug, Arbitrary)]
pub struct HeaderInput {
    v6: bool,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    ack: u32,
    /// Overrides the data offset nibble (else: 5 + option words).
    data_offset: Option<u8>,
    /// Byte 12's low nibble: reserved bits and the historic NS bit.
    reserved: u8,
    flags: u8,
    window: u16,
    urgent: u16,
    /// The option area; cut to 40 bytes and padded with `pad` to a word.
    options: Vec<u8>,
    pad: u8,
    /// Payload length, bytes taken from the options pattern (cut to 256).
    payload_len: u8,
    bad_checksum: bool,
}

/// A repr built field by field.
#[derive(Debug, Arbitrary)]
pub struct ReprInput {
    v6: bool,
    src_port: u16,
    dst_port: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    urgent: u16,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    sack: [Option<(u32, u32)>; 4],
    timestamp: Option<(u32, u32)>,
    /// A Fast Open option: empty is a cookie request; lengths the wire layer refuses leave
    /// the option out.
    fast_open: Option<Vec<u8>>,
    payload: Vec<u8>,
}

/// The `tcp_options` target.
pub fn tcp_input(input: &TcpInput) {
    match input {
        TcpInput::Header(h) => tcp_header(h),
        TcpInput::Repr(r) => tcp_repr(r),
    }
}

fn pair(v6: bool) -> (IpAddr, IpAddr) {
    if v6 {
        V6_PAIR
    } else {
        V4_PAIR
    }
}

fn tcp_header(h: &HeaderInput) {
    let (src, dst) = pair(h.v6);
    let options = &h.options[..h.options.len().min(tcp::MAX_OPTIONS_LEN)];
    let option_words = options.len().div_ceil(4);
    let header_len = tcp::HEADER_LEN + option_words * 4;
    let payload_len = usize::from(h.payload_len);
    let mut seg = vec![0u8; header_len + payload_len];
    seg[0..2].copy_from_slice(&h.src_port.to_be_bytes());
    seg[2..4].copy_from_slice(&h.dst_port.to_be_bytes());
    seg[4..8].copy_from_slice(&h.seq.to_be_bytes());
    seg[8..12].copy_from_slice(&h.ack.to_be_bytes());
    // `option_words` ≤ 10, so the default offset is at most 15 and fits the nibble.
    let offset = h.data_offset.map_or(5 + option_words as u8, |o| o & 0x0f);
    seg[12] = (offset << 4) | (h.reserved & 0x0f);
    seg[13] = h.flags;
    seg[14..16].copy_from_slice(&h.window.to_be_bytes());
    seg[18..20].copy_from_slice(&h.urgent.to_be_bytes());
    seg[tcp::HEADER_LEN..tcp::HEADER_LEN + options.len()].copy_from_slice(options);
    seg[tcp::HEADER_LEN + options.len()..header_len].fill(h.pad);
    for (i, b) in seg[header_len..].iter_mut().enumerate() {
        *b = i as u8;
    }
    tcp::Packet::new_unchecked(&mut seg[..]).fill_checksum(src, dst);
    if h.bad_checksum {
        seg[16] ^= 0x5a;
    }
    let Ok(repr) = TcpRepr::parse(&seg, src, dst, false) else {
        return;
    };
    assert!(!h.bad_checksum, "a corrupted checksum was accepted");
    assert_eq!(repr.flags, TcpFlags(h.flags), "flags byte kept as received");
    let data_offset = usize::from(seg[12] >> 4) * 4;
    assert_eq!(
        repr.payload,
        &seg[data_offset..],
        "payload starts at the data offset"
    );
    check_tcp_round_trip(&repr, src, dst);
}

fn tcp_repr(r: &ReprInput) {
    let (src, dst) = pair(r.v6);
    let payload = &r.payload[..r.payload.len().min(512)];
    let mut repr = TcpRepr::new(
        r.src_port,
        r.dst_port,
        TcpFlags(r.flags),
        SeqNumber(r.seq),
        SeqNumber(r.ack),
    );
    repr.window_len = r.window;
    repr.urgent_pointer = r.urgent;
    repr.max_seg_size = r.mss;
    repr.window_scale = r.window_scale;
    repr.sack_permitted = r.sack_permitted;
    for (slot, block) in repr.sack_ranges.iter_mut().zip(r.sack) {
        *slot = block.map(|(a, b)| (SeqNumber(a), SeqNumber(b)));
    }
    repr.timestamp = r
        .timestamp
        .map(|(tsval, tsecr)| TcpTimestamp { tsval, tsecr });
    repr.fast_open = r.fast_open.as_deref().and_then(|c| {
        if c.is_empty() {
            Some(FastOpenCookie::REQUEST)
        } else {
            FastOpenCookie::new(c)
        }
    });
    repr.payload = payload;
    check_tcp_round_trip(&repr, src, dst);
}

/// Builds one IP+TCP packet from `repr`, as a peer would send it.
pub fn tcp_packet(src: IpAddr, dst: IpAddr, repr: &TcpRepr<'_>) -> Option<Vec<u8>> {
    let ip = IpRepr::new(src, dst, IpProtocol::Tcp, repr.buffer_len(), 64).ok()?;
    let mut buf = vec![0u8; ip.buffer_len()];
    let header_len = ip.header_len();
    ip.emit(&mut buf[..header_len]);
    repr.emit(&mut buf[header_len..], src, dst);
    Some(buf)
}
