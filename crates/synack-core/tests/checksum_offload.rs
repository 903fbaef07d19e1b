//! Checksum offload, both ways: `Config::tx_checksum_offload` leaves CHECKSUM_PARTIAL packets
//! (the pseudo-header sum only) that a device completes, and `RecvMeta::checksum_verified`
//! lets a device vouch for a received checksum.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use synack_core::wire::{self, checksum, IpProtocol, TcpRepr};
use synack_core::{Config, ConnectionHandle, Endpoint, Event, Instant, RecvMeta, Transmit};

/// Where the TCP checksum field sits in the TCP header (RFC 9293 §3.1).
const CHECKSUM_OFFSET: usize = 16;

/// What every packet of a transfer looked like on the way.
#[derive(Default)]
struct Seen {
    partial_single: usize,
    partial_super: usize,
    complete: usize,
    /// Packets whose payload came by reference (`poll_transmit_gather`).
    gathered: usize,
    /// Every packet, as the wire carried it.
    packets: Vec<Vec<u8>>,
}

/// Completes a CHECKSUM_PARTIAL packet as a device does, by a sum of its own from the start
/// of the TCP header to the end, the field (holding the pseudo-header sum) included; checks
/// the result against the full checksum computed from scratch; and returns the packet as
/// the wire carries it.
fn complete(packet: &mut [u8], t: &Transmit, seen: &mut Seen) {
    let (ip, _) = wire::ip::parse(packet).expect("the endpoint emits valid IP");
    let start = ip.header_len();
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    if !t.checksum_partial {
        seen.complete += 1;
        return;
    }
    assert_eq!(ip.protocol(), IpProtocol::Tcp, "only TCP is left partial");
    let header = usize::from(packet[start + 12] >> 4) * 4;
    assert!(
        packet.len() > start + header,
        "only data is left partial: control segments are summed whole, for captures"
    );
    if t.segment_size.is_some() {
        seen.partial_super += 1;
    } else {
        seen.partial_single += 1;
    }
    let tcp = &mut packet[start..];
    let field = CHECKSUM_OFFSET..CHECKSUM_OFFSET + 2;
    // The field holds the folded pseudo-header sum over the whole TCP length, not inverted.
    let len = u32::try_from(tcp.len()).unwrap();
    let pseudo = checksum::pseudo_header(src, dst, IpProtocol::Tcp, len).unwrap();
    assert_eq!(tcp[field.clone()], checksum::fold(pseudo).to_be_bytes());
    // The device: sum from csum_start to the end, store the complement at csum_offset.
    let completed = checksum::finish(checksum::partial(tcp));
    // The reference: the full checksum over the pseudo-header, the header with a zero field,
    // and the payload.
    let mut zeroed = tcp.to_vec();
    zeroed[field.clone()].fill(0);
    let reference = checksum::finish(pseudo + checksum::partial(&zeroed));
    assert_eq!(completed, reference);
    tcp[field].copy_from_slice(&completed.to_be_bytes());
    assert!(
        TcpRepr::parse(tcp, src, dst, false).is_ok(),
        "completed sums verify"
    );
}

/// Carries everything `from` has to send to `to`, completing partial checksums on the way;
/// a super-segment goes whole, as GRO would hand it over. With `gather`, packets are taken
/// with `poll_transmit_gather` and put together from their head and payload handles, as a
/// device's `writev` does.
fn carry(
    from: &mut Endpoint,
    to: &mut Endpoint,
    now: Instant,
    buf: &mut [u8],
    seen: &mut Seen,
    gather: bool,
) {
    let mut payload = Vec::new();
    loop {
        let t = if gather {
            from.poll_transmit_gather(now, buf, &mut payload)
        } else {
            from.poll_transmit(now, buf)
        };
        let Some(t) = t else { break };
        let mut packet = buf[..t.head_len].to_vec();
        if t.is_gathered() {
            // Only a super-segment left partial, its head exactly the IP and TCP headers.
            assert!(t.segment_size.is_some() && t.checksum_partial);
            let (ip, _) = wire::ip::parse(&buf[..t.len]).expect("valid headers");
            let tcp_header = usize::from(buf[ip.header_len() + 12] >> 4) * 4;
            assert_eq!(t.head_len, ip.header_len() + tcp_header);
            assert!(payload.iter().all(|b: &synack_core::Bytes| !b.is_empty()));
            packet.extend(payload.iter().flat_map(|b| b.iter().copied()));
            seen.gathered += 1;
        } else {
            assert!(
                payload.is_empty(),
                "nothing by reference for a packet written whole"
            );
        }
        assert_eq!(packet.len(), t.len);
        complete(&mut packet, &t, seen);
        let meta = RecvMeta {
            segment_size: t.segment_size,
            ..RecvMeta::new(t.len)
        };
        to.handle_packet(now, &packet, meta);
        seen.packets.push(packet);
    }
}

/// A client with transmit checksum offload (and `gso` for segmentation offload) sends
/// `len` bytes to a server that checks every checksum; returns what went by.
fn transfer(client_ip: IpAddr, server_ip: IpAddr, gso: usize, len: usize) -> Seen {
    transfer_gathering(client_ip, server_ip, gso, len, false)
}

/// [`transfer`], the client's packets taken with `poll_transmit_gather` if `gather`.
fn transfer_gathering(
    client_ip: IpAddr,
    server_ip: IpAddr,
    gso: usize,
    len: usize,
    gather: bool,
) -> Seen {
    let mut cc = Config::default();
    cc.seed(Some([1; 32]))
        .tx_checksum_offload(true)
        .gso_max_size(gso);
    let mut sc = Config::default();
    sc.seed(Some([2; 32]));
    let mut client = Endpoint::new(cc, &[client_ip]);
    let mut server = Endpoint::new(sc, &[server_ip]);
    let addr = SocketAddr::new(server_ip, 80);
    server.listen(addr, 16).unwrap();
    let mut now = Instant::ZERO;
    let conn = client.connect(now, addr).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut sent = 0;
    let mut accepted: Option<ConnectionHandle> = None;
    let mut received = Vec::new();
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65_536];
    for _ in 0..10_000 {
        if received.len() == len {
            break;
        }
        if client.state(conn) == Ok(synack_core::State::Established) && sent < len {
            sent += client.send(conn, &data[sent..]).unwrap_or(0);
        }
        carry(&mut client, &mut server, now, &mut buf, &mut seen, gather);
        carry(&mut server, &mut client, now, &mut buf, &mut seen, false);
        while let Some(e) = server.poll_event() {
            if let Event::Incoming(l) = e {
                accepted = server.accept(l).ok();
            }
        }
        while client.poll_event().is_some() {}
        if let Some(c) = accepted {
            let mut chunk = vec![0u8; 65_536];
            while let Ok(n @ 1..) = server.recv(now, c, &mut chunk) {
                received.extend_from_slice(&chunk[..n]);
            }
        }
        now = client
            .poll_timeout()
            .into_iter()
            .chain(server.poll_timeout())
            .min()
            .unwrap_or(now + Duration::from_millis(1))
            .max(now + Duration::from_micros(100));
        client.handle_timeout(now);
        server.handle_timeout(now);
    }
    assert_eq!(received, data, "every byte arrived intact");
    assert_eq!(server.stats().drop_checksum, 0);
    seen
}

#[test]
fn partial_checksums_complete_to_the_full_ones_ipv4() {
    let seen = transfer(
        "198.18.0.2".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        0,
        100_000,
    );
    assert!(seen.partial_single > 10);
    assert_eq!(seen.partial_super, 0);
}

#[test]
fn partial_checksums_complete_to_the_full_ones_ipv6() {
    let seen = transfer(
        "2001:2::2".parse().unwrap(),
        "2001:2::1".parse().unwrap(),
        0,
        100_000,
    );
    assert!(seen.partial_single > 10);
}

#[test]
fn partial_super_segment_checksums_complete_to_the_full_ones_ipv4() {
    let seen = transfer(
        "198.18.0.2".parse().unwrap(),
        "198.18.0.1".parse().unwrap(),
        65_535,
        1_000_000,
    );
    // Every packet's sum is checked as it goes by (`complete`); single segments, which a
    // flow sized for offload sends only when its window is small, are the test above's.
    assert!(seen.partial_super > 0);
}

#[test]
fn partial_super_segment_checksums_complete_to_the_full_ones_ipv6() {
    let seen = transfer(
        "2001:2::2".parse().unwrap(),
        "2001:2::1".parse().unwrap(),
        65_535,
        1_000_000,
    );
    assert!(seen.partial_super > 0);
}

/// `poll_transmit_gather` leaves the payload of a partial super-segment in the send buffer
/// and hands out handles on it; put together, every packet is the one `poll_transmit` writes
/// whole, byte for byte, in the same order (both runs are seeded alike), IPv4 and IPv6.
#[test]
fn gathered_packets_are_the_packets_written_whole() {
    for (client_ip, server_ip) in [("198.18.0.2", "198.18.0.1"), ("2001:2::2", "2001:2::1")] {
        let (client_ip, server_ip): (IpAddr, IpAddr) =
            (client_ip.parse().unwrap(), server_ip.parse().unwrap());
        let whole = transfer_gathering(client_ip, server_ip, 65_535, 1_000_000, false);
        let gathered = transfer_gathering(client_ip, server_ip, 65_535, 1_000_000, true);
        assert_eq!(whole.gathered, 0);
        assert!(gathered.gathered > 0);
        assert_eq!(gathered.gathered, gathered.partial_super);
        assert_eq!(whole.packets.len(), gathered.packets.len());
        for (i, (a, b)) in whole.packets.iter().zip(&gathered.packets).enumerate() {
            assert!(a == b, "packet {i} differs");
        }
        // Without segmentation offload nothing is a super-segment: all is written whole.
        let single = transfer_gathering(client_ip, server_ip, 0, 100_000, true);
        assert_eq!(single.gathered, 0);
        assert!(single.partial_single > 10);
    }
}

/// Without the device completing it, a partial checksum is a bad one: the receiver drops and
/// counts it, unless the device says it verified it. (The SYN goes out summed whole, as every
/// control segment does; its field is set here to what a partial one holds.)
#[test]
fn bad_checksums_are_dropped_unless_the_device_verified_them() {
    for (client_ip, server_ip) in [("198.18.0.2", "198.18.0.1"), ("2001:2::2", "2001:2::1")] {
        let (client_ip, server_ip): (IpAddr, IpAddr) =
            (client_ip.parse().unwrap(), server_ip.parse().unwrap());
        let mut cc = Config::default();
        cc.tx_checksum_offload(true);
        let mut client = Endpoint::new(cc, &[client_ip]);
        let mut server = Endpoint::new(Config::default(), &[server_ip]);
        let addr = SocketAddr::new(server_ip, 80);
        server.listen(addr, 16).unwrap();
        let now = Instant::ZERO;
        client.connect(now, addr).unwrap();
        let mut buf = vec![0u8; 2048];
        let t = client.poll_transmit(now, &mut buf).expect("a SYN");
        assert!(!t.checksum_partial, "a control segment is summed whole");
        let start = if client_ip.is_ipv4() { 20 } else { 40 };
        let tcp_len = u32::try_from(t.len - start).unwrap();
        let pseudo = checksum::pseudo_header(client_ip, server_ip, IpProtocol::Tcp, tcp_len);
        let field = start + CHECKSUM_OFFSET..start + CHECKSUM_OFFSET + 2;
        buf[field].copy_from_slice(&checksum::fold(pseudo.unwrap()).to_be_bytes());
        server.handle_packet(now, &buf, RecvMeta::new(t.len));
        assert_eq!(server.stats().drop_checksum, 1);
        assert!(server.poll_transmit(now, &mut [0u8; 2048]).is_none());
        let verified = RecvMeta {
            checksum_verified: true,
            ..RecvMeta::new(t.len)
        };
        server.handle_packet(now, &buf, verified);
        assert_eq!(server.stats().drop_checksum, 1);
        assert_eq!(server.stats().checksum_offloaded, 1);
        assert!(
            server.poll_transmit(now, &mut [0u8; 2048]).is_some(),
            "a SYN-ACK"
        );
    }
}

/// A length past the end of the buffer is malformed input, dropped and counted.
#[test]
fn a_length_past_the_buffer_is_dropped() {
    let ip: IpAddr = "198.18.0.1".parse().unwrap();
    let mut ep = Endpoint::new(Config::default(), &[ip]);
    ep.handle_packet(Instant::ZERO, &[0u8; 40], RecvMeta::new(41));
    assert_eq!(ep.stats().drop_malformed, 1);
    assert_eq!(ep.stats().packets_in, 1);
}
