//! Inputs the fuzz targets (fuzz/, see FUZZING.md) found interesting, replayed as plain tests.
//!
//! `tests/data/fuzz/ip_parse/*` are raw `ip_parse` inputs: one control byte (bit 0: repair the
//! IPv4 header checksum, bit 1: repair the TCP/ICMP checksum), then an IP packet. Each is run
//! through the same property as the target: nothing panics, and what parses round-trips
//! through emit. Inputs of the structured targets (`tcp_options`, `endpoint`) are encoded for
//! `arbitrary`, which this crate does not depend on, so their findings are written out below
//! as ordinary scenarios.

use std::net::IpAddr;
use std::path::PathBuf;

use synack_core::wire::{self, checksum, icmp, ipv4, tcp, IcmpRepr, IpProtocol, TcpRepr};
use synack_core::SeqNumber;

fn data_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target)
}

/// Every file of a regression directory, sorted by name; at least one, so a test over an
/// empty or missing directory fails instead of passing vacuously.
fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = data_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("read input"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    files
}

// ------------------------------------------------------------------------------------------
// ip_parse
// ------------------------------------------------------------------------------------------

/// Applies the input's checksum repairs, as the `ip_parse` target does.
fn repaired(input: &[u8]) -> Vec<u8> {
    let Some((&control, packet)) = input.split_first() else {
        return Vec::new();
    };
    let mut packet = packet.to_vec();
    if control & 1 != 0 {
        if let Some(&first) = packet.first() {
            let ihl = usize::from(first & 0x0f) * 4;
            if first >> 4 == 4 && ihl >= ipv4::HEADER_LEN && ihl <= packet.len() {
                ipv4::Packet::new_unchecked(&mut packet[..]).fill_checksum();
            }
        }
    }
    if control & 2 != 0 {
        if let Ok((ip, payload)) = wire::ip::parse(&packet) {
            let start = payload.as_ptr() as usize - packet.as_ptr() as usize;
            let range = start..start + payload.len();
            let (src, dst) = (ip.src_addr(), ip.dst_addr());
            let upper = &mut packet[range];
            match (ip.protocol(), src, dst) {
                (IpProtocol::Tcp, _, _) if upper.len() >= tcp::HEADER_LEN => {
                    tcp::Packet::new_unchecked(upper).fill_checksum(src, dst);
                }
                (IpProtocol::Icmp, IpAddr::V4(_), _) if upper.len() >= icmp::HEADER_LEN => {
                    upper[2..4].fill(0);
                    let c = checksum::finish(checksum::partial(upper));
                    upper[2..4].copy_from_slice(&c.to_be_bytes());
                }
                (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d))
                    if upper.len() >= icmp::HEADER_LEN =>
                {
                    upper[2..4].fill(0);
                    let len = u32::try_from(upper.len()).unwrap();
                    let pseudo = checksum::pseudo_header_v6(s, d, IpProtocol::Icmpv6, len);
                    let c = checksum::finish(pseudo + checksum::partial(upper));
                    upper[2..4].copy_from_slice(&c.to_be_bytes());
                }
                _ => {}
            }
        }
    }
    packet
}

/// The SACK blocks `TcpRepr::emit` keeps: front-filled, as many as fit after the other
/// options (MSS 4, timestamps 12 or SACK-permitted 4, window scale 4, then 4 + 8n ≤ 40).
fn sack_after_emit(seg: &TcpRepr<'_>) -> [Option<(SeqNumber, SeqNumber)>; 4] {
    let mut used = 4 * usize::from(seg.max_seg_size.is_some());
    used += if seg.timestamp.is_some() {
        12
    } else {
        4 * usize::from(seg.sack_permitted)
    };
    used += 4 * usize::from(seg.window_scale.is_some());
    let room = 40usize.saturating_sub(used + 4) / 8;
    let mut out = [None; 4];
    for (slot, block) in out
        .iter_mut()
        .zip(seg.sack_ranges.iter().flatten().take(room))
    {
        *slot = Some(*block);
    }
    out
}

/// What the `ip_parse` target checks. Returns what the input reached, for the caller to
/// assert on: "ip" (did not parse), "ip+tcp", "ip+icmp", or "ip+other".
fn ip_parse_property(input: &[u8]) -> &'static str {
    let packet = repaired(input);
    let Ok((ip, payload)) = wire::ip::parse(&packet) else {
        return "ip";
    };
    assert_eq!(ip.payload_len(), payload.len());
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut buf);
    buf[ip.header_len()..].copy_from_slice(payload);
    assert_eq!(wire::ip::parse(&buf), Ok((ip, payload)), "IP round trip");

    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    match (ip.protocol(), src, dst) {
        (IpProtocol::Tcp, _, _) => {
            let Ok(seg) = TcpRepr::parse(payload, src, dst, false) else {
                return "ip";
            };
            let mut out = vec![0u8; seg.buffer_len()];
            seg.emit(&mut out, src, dst);
            let mut expected = seg;
            expected.sack_ranges = sack_after_emit(&seg);
            // A signature is parsed, never emitted: synack signs nothing.
            expected.signed = false;
            assert_eq!(
                TcpRepr::parse(&out, src, dst, false),
                Ok(expected),
                "TCP round trip"
            );
            "ip+tcp"
        }
        (IpProtocol::Icmp, IpAddr::V4(_), _) => {
            let Ok(msg) = IcmpRepr::parse_v4(payload) else {
                return "ip";
            };
            let mut out = vec![0u8; msg.buffer_len()];
            msg.emit_v4(&mut out);
            assert_eq!(IcmpRepr::parse_v4(&out), Ok(msg), "ICMPv4 round trip");
            "ip+icmp"
        }
        (IpProtocol::Icmpv6, IpAddr::V6(s), IpAddr::V6(d)) => {
            let Ok(msg) = IcmpRepr::parse_v6(payload, s, d) else {
                return "ip";
            };
            let mut out = vec![0u8; msg.buffer_len()];
            msg.emit_v6(&mut out, s, d);
            assert_eq!(IcmpRepr::parse_v6(&out, s, d), Ok(msg), "ICMPv6 round trip");
            "ip+icmp"
        }
        _ => "ip+other",
    }
}

#[test]
fn ip_parse_inputs_round_trip() {
    let mut reached = Vec::new();
    for (name, input) in inputs("ip_parse") {
        let r = std::panic::catch_unwind(|| ip_parse_property(&input));
        match r {
            Ok(what) => reached.push(what),
            Err(_) => panic!("ip_parse regression input {name} fails"),
        }
    }
    // The committed inputs were chosen for reaching TCP and ICMP through IPv6 extension
    // headers and IPv4 options; if none does any more, the replay is not testing that.
    assert!(reached.contains(&"ip+tcp"), "{reached:?}");
    assert!(reached.contains(&"ip+icmp"), "{reached:?}");
}

// ------------------------------------------------------------------------------------------
// tcp_options
// ------------------------------------------------------------------------------------------

/// The `tcp_options` round trip's one normalisation, pinned: a peer may pack MSS, timestamps
/// and three SACK blocks into exactly 40 option bytes (no NOPs), but `emit` lays options out
/// as Linux does (`<nop,nop,TS>`, `<nop,nop,SACK>`), which leaves room for two blocks only;
/// the third (the oldest, RFC 2018 §4) is dropped and everything else survives.
#[test]
fn tcp_options_dense_option_area_keeps_first_two_sack_blocks() {
    let (src, dst) = (IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2]));
    let mut seg = vec![0u8; 60];
    seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
    seg[2..4].copy_from_slice(&80u16.to_be_bytes());
    seg[4..8].copy_from_slice(&1000u32.to_be_bytes());
    seg[8..12].copy_from_slice(&2000u32.to_be_bytes());
    seg[12] = 15 << 4;
    seg[13] = 0x10; // ACK
    seg[14..16].copy_from_slice(&512u16.to_be_bytes());
    let mut options = vec![2, 4, 0x05, 0xb4, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 5, 26];
    for block in 0..3u32 {
        options.extend_from_slice(&(3000 + 100 * block).to_be_bytes());
        options.extend_from_slice(&(3050 + 100 * block).to_be_bytes());
    }
    assert_eq!(options.len(), 40);
    seg[20..].copy_from_slice(&options);
    tcp::Packet::new_unchecked(&mut seg[..]).fill_checksum(src, dst);

    let parsed = TcpRepr::parse(&seg, src, dst, false).expect("a full, legal option area");
    let blocks: Vec<_> = parsed.sack_ranges.iter().flatten().collect();
    assert_eq!(blocks.len(), 3);
    assert_eq!(parsed.max_seg_size, Some(1460));

    let mut out = vec![0u8; parsed.buffer_len()];
    parsed.emit(&mut out, src, dst);
    let again = TcpRepr::parse(&out, src, dst, false).expect("emitted segment parses");
    assert_eq!(
        again.sack_ranges,
        [
            Some((SeqNumber(3000), SeqNumber(3050))),
            Some((SeqNumber(3100), SeqNumber(3150))),
            None,
            None
        ]
    );
    let mut expected = parsed;
    expected.sack_ranges = sack_after_emit(&parsed);
    assert_eq!(again, expected);
}
