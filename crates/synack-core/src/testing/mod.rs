//! A test kit: the one way tests, fuzz targets and benchmarks drive endpoints in virtual time.
//!
//! Compiled only with the `testing` cargo feature (off by default). It uses nothing but the
//! crate's public API, so what it does a user's own harness can do too.
//!
//! - [`drain`]: the one loop over [`Endpoint::poll_transmit`]; everything below pumps with it.
//! - [`Pair`]: two endpoints joined by a perfect, instant wire (the benchmarks' pair).
//! - [`Net`]: any number of endpoints joined by links with latency, bandwidth, a bounded
//!   queue, and seeded faults (loss, duplication, reordering, corruption), on one virtual
//!   clock, with super-segments optionally cut by a simulated TSO device ([`crate::wire::gso`]).
//! - [`peer`]: one endpoint under test and a scripted remote whose segments a test writes
//!   field by field ([`peer::Harness`], [`peer::Out`], [`peer::Seg`]).
//! - [`pattern`]: a seeded byte stream, so a receiver checks every byte without a copy.
//!
//! Everything is deterministic: randomness comes from a generator seeded by the caller, time
//! only moves when the caller (or [`Net::step`]) moves it.
//!
//! ```
//! use std::net::SocketAddr;
//! use synack_core::testing::Pair;
//!
//! let mut pair = Pair::new(synack_core::Config::default());
//! let listener = pair.server.listen(SocketAddr::new(Pair::SERVER, 80), 16).unwrap();
//! let (client, server) = pair.connect(listener, 80);
//! pair.client.send(client, b"hello").unwrap();
//! pair.pump();
//! let mut buf = [0u8; 16];
//! assert_eq!(pair.server.recv(pair.now, server, &mut buf), Ok(5));
//! ```

use core::ops::ControlFlow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::wire::{self, IpProtocol, TcpRepr};
use crate::{Endpoint, Instant, RecvMeta, Transmit};

mod net;
mod pair;
pub mod peer;

pub use net::{Faults, LinkConfig, Net, NetStats};
pub use pair::Pair;

/// Hands every packet `ep` has to send at `now` to `each`, written into `buf` (which must
/// hold the largest packet the endpoint may write), until the endpoint has nothing more or
/// `each` breaks. Returns how many packets `each` was given.
///
/// This is the whole of the sans-IO transmit loop; [`Pair`], [`Net`] and [`peer::Harness`]
/// are built on it.
pub fn drain(
    ep: &mut Endpoint,
    now: Instant,
    buf: &mut [u8],
    mut each: impl FnMut(&[u8], &Transmit) -> ControlFlow<()>,
) -> usize {
    let mut n = 0;
    while let Some(t) = ep.poll_transmit(now, buf) {
        assert!(
            t.len <= buf.len(),
            "transmit length {} past the buffer",
            t.len
        );
        n += 1;
        if each(&buf[..t.len], &t).is_break() {
            break;
        }
    }
    n
}

/// Delivers one received IP packet to `ep` at `now`, as a device without offloads would
/// ([`RecvMeta::new`]: checksums to be verified, no GRO).
pub fn deliver(ep: &mut Endpoint, now: Instant, packet: &[u8]) {
    ep.handle_packet(now, packet, RecvMeta::new(packet.len()));
}

/// A UDP datagram from `src` to `dst` made by hand, with a right checksum and the given TTL
/// or hop limit: what a test delivers as if the link had brought it.
pub fn udp_datagram(src: SocketAddr, dst: SocketAddr, payload: &[u8], hop_limit: u8) -> Vec<u8> {
    let udp = wire::UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        payload,
    };
    let len = udp.buffer_len();
    let ip = wire::IpRepr::new(src.ip(), dst.ip(), IpProtocol::Udp, len, hop_limit)
        .expect("addresses of one family");
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut buf);
    udp.emit(&mut buf[ip.header_len()..], src.ip(), dst.ip());
    buf
}

/// An IPv4 fragment made by hand: `data` at byte `offset` (a multiple of 8) of a datagram of
/// `protocol` from `src` to `dst`, identification `ident`, More Fragments as `more`, the
/// header checksum right; what a test of reassembly sends where [`wire::fragment::split`]
/// would cut too neatly.
pub fn ipv4_fragment(
    (src, dst): (Ipv4Addr, Ipv4Addr),
    protocol: IpProtocol,
    ident: u16,
    offset: u16,
    more: bool,
    data: &[u8],
) -> Vec<u8> {
    let ip = wire::IpRepr::new(IpAddr::V4(src), IpAddr::V4(dst), protocol, data.len(), 64)
        .expect("a fragment's data fits an IPv4 packet");
    let mut p = vec![0u8; ip.buffer_len()];
    ip.emit(&mut p);
    p[ip.header_len()..].copy_from_slice(data);
    let mut view = wire::ipv4::Packet::new_unchecked(&mut p[..]);
    view.set_ident(ident);
    view.set_flags_and_offset(false, more, offset);
    view.fill_checksum();
    p
}

/// The datagram that `pieces`, fragments in order and back to back (each starting where the
/// one before ended), were cut from: [`wire::fragment::rebuild`] from the first piece's
/// headers and protocol and every piece's data.
///
/// # Panics
/// If there is no piece, one is not a fragment, or one does not start where the one before
/// it ended: what a test of fragmenting asserts.
pub fn join_fragments(pieces: &[Vec<u8>]) -> Vec<u8> {
    let mut data = Vec::new();
    let mut first = None;
    for piece in pieces {
        let f = wire::fragment::Fragment::parse(piece).expect("a piece parses as a fragment");
        assert_eq!(f.offset, data.len(), "pieces in order, back to back");
        data.extend_from_slice(f.data);
        first.get_or_insert((f.header.to_vec(), f.next_header_at, f.protocol));
    }
    let (header, at, protocol) = first.expect("at least one piece");
    wire::fragment::rebuild(&header, at, protocol, &data).expect("what was cut fits again")
}

/// Node `i`'s IPv4 address in a [`Net`]: 198.18.0.(i+1), inside the benchmarking block RFC
/// 2544 reserves.
pub fn v4(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, (i + 1) as u8))
}

/// Node `i`'s IPv6 address in a [`Net`]: 2001:2::(i+1), in the benchmarking prefix (RFC
/// 5180) that every test of this project keeps to, with 198.18.0.0/15 for IPv4.
pub fn v6(i: usize) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, (i + 1) as u16))
}

/// 32 seed bytes for node `node` of a run seeded with `seed`, for [`crate::Config::seed`].
pub fn seed_bytes(seed: u64, node: u8) -> [u8; 32] {
    let mut s = [node; 32];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s
}

/// The TCP payload length of a valid IP/TCP packet (0 for anything else).
pub fn payload_len(packet: &[u8]) -> usize {
    wire::ip::parse(packet)
        .ok()
        .and_then(|(ip, p)| TcpRepr::parse(p, ip.src_addr(), ip.dst_addr(), false).ok())
        .map_or(0, |t| t.payload.len())
}

/// One line about a packet, for traces: addresses, ports, flags, sequence and
/// acknowledgment numbers, window, length, SACK blocks and timestamps.
pub fn describe(packet: &[u8]) -> String {
    let Ok((ip, payload)) = wire::ip::parse(packet) else {
        return "invalid IP".into();
    };
    let Ok(t) = TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false) else {
        return format!("{:?} {} -> {}", ip.protocol(), ip.src_addr(), ip.dst_addr());
    };
    format!(
        "{}:{} -> {}:{} {:?} seq={} ack={} win={} len={} sack={:?} ts={:?}",
        ip.src_addr(),
        t.src_port,
        ip.dst_addr(),
        t.dst_port,
        t.flags,
        t.seq_number.0,
        t.ack_number.0,
        t.window_len,
        t.payload.len(),
        t.sack_ranges.iter().flatten().collect::<Vec<_>>(),
        t.timestamp.map(|t| (t.tsval, t.tsecr))
    )
}

/// `None` unless `packet` is a well-formed IP packet carrying a well-formed TCP segment (or
/// anything else the IP layer accepts, such as ICMP); for TCP other than RST (whose window
/// means nothing) also the raw window field.
fn inspect(packet: &[u8]) -> Option<Option<u16>> {
    let (ip, payload) = wire::ip::parse(packet).ok()?;
    if ip.protocol() != IpProtocol::Tcp {
        return Some(None);
    }
    let t = TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).ok()?;
    Some((!t.flags.contains(wire::TcpFlags::RST)).then_some(t.window_len))
}

// -------------------------------------------------------------------------------------------
// The payload: a seeded pseudo-random byte stream, so the receiver checks every byte without
// keeping a copy.
// -------------------------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea and Flood 2014): a strong 64-bit mix, enough to make each 8-byte
/// word of the stream look random and differ between seeds.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with the byte stream `seed` from byte `offset` on: the same seed and offset
/// always give the same bytes, so a receiver verifies what it reads without a copy.
pub fn pattern(seed: u64, offset: u64, buf: &mut [u8]) {
    let word = |w: u64| splitmix(seed ^ w.wrapping_mul(0x2545_f491_4f6c_dd1d)).to_le_bytes();
    let mut current = word(offset / 8);
    for (pos, b) in (offset..).zip(buf.iter_mut()) {
        if pos & 7 == 0 {
            current = word(pos / 8);
        }
        *b = current[(pos & 7) as usize];
    }
}
