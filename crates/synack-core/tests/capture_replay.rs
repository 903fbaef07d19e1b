//! Real Linux segments fed to the core (tests/data/linux-handshakes.pcap): the core plays the
//! server of each captured flow, then the client, and its replies are checked against what
//! Linux itself answered.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;

use common::capture::packets;
use common::{parse_out, Seg};
use synack_core::wire::{self, IpProtocol, IpRepr, TcpFlags, TcpRepr};
use synack_core::{testing, Config, Endpoint, Error, Instant, RecvMeta, SeqNumber};

/// One captured TCP segment with its addresses.
struct Captured {
    ip: IpRepr,
    raw: &'static [u8],
}

impl Captured {
    fn tcp(&self) -> TcpRepr<'static> {
        let (ip, payload) = wire::ip::parse(self.raw).unwrap();
        TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).unwrap()
    }
    fn src(&self) -> SocketAddr {
        SocketAddr::new(self.ip.src_addr(), self.tcp().src_port)
    }
    fn dst(&self) -> SocketAddr {
        SocketAddr::new(self.ip.dst_addr(), self.tcp().dst_port)
    }
}

fn captured() -> Vec<Captured> {
    packets()
        .into_iter()
        .map(|raw| {
            let (ip, _) = wire::ip::parse(raw).unwrap();
            assert_eq!(ip.protocol(), IpProtocol::Tcp);
            Captured { ip, raw }
        })
        .collect()
}

/// The flows of the capture, in order, each as its list of segments (split at each client SYN).
fn flows() -> Vec<Vec<Captured>> {
    let mut flows: Vec<Vec<Captured>> = Vec::new();
    for c in captured() {
        let t = c.tcp();
        if t.flags == TcpFlags::SYN {
            flows.push(Vec::new());
        }
        flows.last_mut().expect("capture starts with a SYN").push(c);
    }
    flows
}

/// Re-emit a captured segment with its sequence and acknowledgment numbers rewritten, so the
/// kernel's bytes can be replayed against our ISNs.
/// `c` sent from `src` to `dst` with `seq` and `ack`, and its TSecr moved by `tsecr_shift`:
/// from the captured Linux peer's clock onto ours, so that it echoes what we sent.
fn rewrite(
    c: &Captured,
    src: SocketAddr,
    dst: SocketAddr,
    seq: SeqNumber,
    ack: SeqNumber,
    tsecr_shift: u32,
) -> Vec<u8> {
    let mut t = c.tcp();
    t.src_port = src.port();
    t.dst_port = dst.port();
    t.seq_number = seq;
    t.ack_number = ack;
    if let Some(ts) = t.timestamp.as_mut() {
        ts.tsecr = ts.tsecr.wrapping_add(tsecr_shift);
    }
    let ip = IpRepr::new(src.ip(), dst.ip(), IpProtocol::Tcp, t.buffer_len(), 64).unwrap();
    let mut buf = vec![0u8; ip.buffer_len()];
    ip.emit(&mut buf[..ip.header_len()]);
    t.emit(&mut buf[ip.header_len()..], src.ip(), dst.ip());
    buf
}

fn endpoint(addrs: &[IpAddr]) -> Endpoint {
    let mut c = Config::default();
    c.seed(Some([3; 32]));
    Endpoint::new(c, addrs)
}

fn drain(ep: &mut Endpoint, now: Instant) -> (Vec<Seg>, Vec<Vec<u8>>) {
    let mut segs = Vec::new();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 2048];
    testing::drain(ep, now, &mut buf, |packet, _| {
        raw.push(packet.to_vec());
        if let Some(s) = parse_out(packet) {
            segs.push(s);
        }
        ControlFlow::Continue(())
    });
    (segs, raw)
}

/// The option kinds of a segment's header, in order (NOP = 1 included), to compare layouts.
fn option_kinds(packet: &[u8]) -> Vec<u8> {
    let (ip, payload) = wire::ip::parse(packet).unwrap();
    let _ = ip;
    let header_len = usize::from(payload[12] >> 4) * 4;
    let opts = &payload[20..header_len];
    let mut kinds = Vec::new();
    let mut i = 0;
    while i < opts.len() {
        let kind = opts[i];
        kinds.push(kind);
        match kind {
            0 => break,
            1 => i += 1,
            _ => i += usize::from(opts[i + 1]).max(2),
        }
    }
    kinds
}

#[test]
fn as_the_server_of_each_flow_we_answer_like_linux() {
    let flows = flows();
    assert_eq!(flows.len(), 5);
    for (n, flow) in flows.iter().take(4).enumerate() {
        let syn = &flow[0];
        let linux_synack = &flow[1];
        assert_eq!(linux_synack.tcp().flags, TcpFlags::SYN | TcpFlags::ACK);
        let server = syn.dst();
        let mut ep = endpoint(&[server.ip()]);
        let l = ep.listen(server, 16).unwrap();
        let now = Instant::from_secs(10);
        ep.handle_packet(now, syn.raw, RecvMeta::new(syn.raw.len()));
        let (segs, raw) = drain(&mut ep, now);
        assert_eq!(segs.len(), 1, "flow {}: one SYN-ACK", n + 1);
        let ours = &segs[0];
        let theirs = linux_synack.tcp();
        assert_eq!(ours.flags, theirs.flags);
        assert_eq!(ours.ack, theirs.ack_number, "flow {}", n + 1);
        assert_eq!(ours.mss, theirs.max_seg_size, "flow {}: MSS", n + 1);
        assert_eq!(ours.sack_permitted, theirs.sack_permitted, "flow {}", n + 1);
        assert_eq!(
            ours.ts.is_some(),
            theirs.timestamp.is_some(),
            "flow {}",
            n + 1
        );
        assert_eq!(
            ours.wscale.is_some(),
            theirs.window_scale.is_some(),
            "flow {}",
            n + 1
        );
        assert_eq!(
            option_kinds(&raw[0]),
            option_kinds(linux_synack.raw),
            "flow {}: the same option layout as Linux",
            n + 1
        );
        if let (Some(a), Some(b)) = (ours.ts, theirs.timestamp) {
            assert_eq!(a.tsecr, b.tsecr, "the client's TSval is echoed");
        }

        // The client's handshake ACK and its HTTP request, rewritten onto our ISN and clock.
        let client = syn.src();
        let tsecr_shift = match (ours.ts, theirs.timestamp) {
            (Some(a), Some(b)) => a.tsval.wrapping_sub(b.tsval),
            _ => 0,
        };
        let our_isn = ours.seq;
        let linux_isn = theirs.seq_number;
        let mut request = Vec::new();
        for c in flow.iter().skip(2).filter(|c| c.src() == client) {
            let t = c.tcp();
            if t.flags.contains(TcpFlags::FIN) {
                break;
            }
            let ack = our_isn + (t.ack_number - linux_isn);
            let p = rewrite(c, client, server, t.seq_number, ack, tsecr_shift);
            ep.handle_packet(now, &p, RecvMeta::new(p.len()));
            request.extend_from_slice(t.payload);
        }
        let conn = ep
            .accept(l)
            .expect("handshake completed from Linux's own ACK");
        let mut buf = vec![0u8; 4096];
        let got = ep.recv(now, conn, &mut buf).unwrap();
        assert!(!request.is_empty());
        assert_eq!(&buf[..got], &request[..], "flow {}", n + 1);
        assert!(buf[..got].starts_with(b"GET /"));
        assert_eq!(ep.stats().drop_checksum + ep.stats().drop_malformed, 0);
    }
}

#[test]
fn as_the_client_we_read_linuxs_whole_response() {
    let flows = flows();
    for (n, flow) in flows.iter().take(4).enumerate() {
        let client_syn = flow[0].tcp();
        let server = flow[0].dst();
        let linux_client = flow[0].src();
        let mut ep = endpoint(&[linux_client.ip()]);
        let now = Instant::from_secs(10);
        let conn = ep.connect(now, server).unwrap();
        let (segs, _) = drain(&mut ep, now);
        let our_syn = &segs[0];
        let us = our_syn.src;
        // The server echoes the captured client's TSvals: moved onto our SYN's.
        let tsecr_shift = match (our_syn.ts, client_syn.timestamp) {
            (Some(a), Some(b)) => a.tsval.wrapping_sub(b.tsval),
            _ => 0,
        };
        let request: Vec<u8> = flow
            .iter()
            .filter(|c| c.src() == linux_client)
            .flat_map(|c| c.tcp().payload.to_vec())
            .collect();
        let mut expected = Vec::new();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        for (i, c) in flow.iter().filter(|c| c.src() == server).enumerate() {
            if i == 1 {
                // After the SYN-ACK: our client sends the request Linux's client sent.
                assert_eq!(ep.send(conn, &request).unwrap(), request.len());
                let (out, _) = drain(&mut ep, now);
                let sent: Vec<u8> = out.iter().flat_map(|s| s.payload.clone()).collect();
                assert_eq!(sent, request);
            }
            let t = c.tcp();
            // Map the captured client's sequence space onto ours.
            let ack = our_syn.seq + (t.ack_number - client_syn.seq_number);
            let p = rewrite(c, server, us, t.seq_number, ack, tsecr_shift);
            ep.handle_packet(now, &p, RecvMeta::new(p.len()));
            expected.extend_from_slice(t.payload);
            let _ = drain(&mut ep, now);
            loop {
                match ep.recv(now, conn, &mut buf) {
                    Ok(0) | Err(Error::WouldBlock) => break,
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                    Err(e) => panic!("flow {}: {e}", n + 1),
                }
            }
        }
        assert!(
            expected.len() > 20_000,
            "flow {}: the whole HTTP response",
            n + 1
        );
        assert!(
            got == expected,
            "flow {}: {} of {} bytes intact",
            n + 1,
            got.len(),
            expected.len()
        );
        assert!(got.starts_with(b"HTTP/1."));
    }
}

#[test]
fn a_syn_to_a_closed_port_gets_linuxs_exact_rst() {
    let flows = flows();
    let flow = &flows[4];
    let syn = &flow[0];
    let linux_rst = &flow[1];
    assert!(linux_rst.tcp().flags.contains(TcpFlags::RST));
    let mut ep = endpoint(&[syn.dst().ip()]);
    let now = Instant::from_secs(1);
    ep.handle_packet(now, syn.raw, RecvMeta::new(syn.raw.len()));
    let (_, raw) = drain(&mut ep, now);
    assert_eq!(raw.len(), 1);
    // Byte for byte, but for the IPv4 identification Linux fills (we send 0 with DF).
    let mut theirs = linux_rst.raw.to_vec();
    let mut ours = raw[0].clone();
    for p in [&mut theirs, &mut ours] {
        p[4..6].fill(0);
        p[10..12].fill(0);
    }
    assert_eq!(ours, theirs);
}
