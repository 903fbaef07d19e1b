//! A scripted peer for state-by-state tests: one [`Endpoint`] under test at [`US`] (and
//! [`US6`]) and a hand-driven remote at [`PEER`] (and [`PEER6`]) whose segments the test
//! writes one by one ([`Out`]), in virtual time; what the endpoint sends comes back parsed
//! ([`Seg`]).

use core::ops::ControlFlow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{deliver, drain};
use crate::wire::{self, Ecn, FastOpenCookie, IpProtocol, IpRepr, TcpFlags, TcpRepr, TcpTimestamp};
use crate::{Config, Endpoint, Event, Instant, SeqNumber, Transmit};

/// The endpoint under test.
pub const US: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
/// The scripted peer.
pub const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
/// The endpoint under test, IPv6.
pub const US6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 2));
/// The scripted peer, IPv6.
pub const PEER6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1));

/// A TCP segment we sent, copied out of the packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Control bits.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: SeqNumber,
    /// Acknowledgment number.
    pub ack: SeqNumber,
    /// Window field, unscaled.
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window Scale option.
    pub wscale: Option<u8>,
    /// SACK-Permitted option.
    pub sack_permitted: bool,
    /// SACK blocks.
    pub sack: Vec<(SeqNumber, SeqNumber)>,
    /// Timestamps option.
    pub ts: Option<TcpTimestamp>,
    /// TCP Fast Open option.
    pub fast_open: Option<FastOpenCookie>,
    /// Data.
    pub payload: Vec<u8>,
    /// The IP header's DS byte (IPv4 TOS, IPv6 traffic class): DSCP and ECN.
    pub ds: u8,
    /// The IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    /// The IPv6 flow label (0 for IPv4).
    pub flow_label: u32,
    /// The IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// The IPv4 Don't Fragment flag (false for IPv6).
    pub dont_frag: bool,
    /// The urgent pointer field (meaningful with URG).
    pub urgent: u16,
}

impl Seg {
    /// Whether every flag of `f` is set.
    pub fn has(&self, f: TcpFlags) -> bool {
        self.flags.contains(f)
    }
    /// Whether the flags are exactly `f`.
    pub fn is(&self, f: TcpFlags) -> bool {
        self.flags == f
    }
    /// The sequence space it occupies: data, SYN and FIN.
    pub fn seq_len(&self) -> usize {
        self.payload.len()
            + usize::from(self.has(TcpFlags::SYN))
            + usize::from(self.has(TcpFlags::FIN))
    }
}

/// Parses one packet the endpoint sent: `None` for a valid non-TCP packet.
///
/// # Panics
/// If it is not a valid IP packet, or not valid TCP: everything the endpoint emits must be.
pub fn parse_out(packet: &[u8]) -> Option<Seg> {
    let (ip, payload) = wire::ip::parse(packet).expect("we emit valid IP");
    if ip.protocol() != IpProtocol::Tcp {
        return None;
    }
    let t =
        TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).expect("we emit valid TCP");
    let (ip_id, dont_frag) = match ip {
        IpRepr::Ipv4(_) => {
            let p = wire::ipv4::Packet::new_unchecked(packet);
            (p.ident(), p.dont_frag())
        }
        IpRepr::Ipv6(_) => (0, false),
    };
    Some(Seg {
        src: SocketAddr::new(ip.src_addr(), t.src_port),
        dst: SocketAddr::new(ip.dst_addr(), t.dst_port),
        flags: t.flags,
        seq: t.seq_number,
        ack: t.ack_number,
        window: t.window_len,
        mss: t.max_seg_size,
        wscale: t.window_scale,
        sack_permitted: t.sack_permitted,
        sack: t.sack_ranges.iter().flatten().copied().collect(),
        ts: t.timestamp,
        fast_open: t.fast_open,
        payload: t.payload.to_vec(),
        ds: wire::ip::ds_field(packet),
        hop_limit: ip.hop_limit(),
        flow_label: wire::ip::flow_label(packet),
        ip_id,
        dont_frag,
        urgent: t.urgent_pointer,
    })
}

/// A segment the peer sends, built field by field.
#[derive(Debug, Clone)]
pub struct Out {
    /// Control bits.
    pub flags: TcpFlags,
    /// Sequence number.
    pub seq: SeqNumber,
    /// Acknowledgment number.
    pub ack: SeqNumber,
    /// Window field, unscaled (65535 unless set).
    pub window: u16,
    /// MSS option.
    pub mss: Option<u16>,
    /// Window Scale option.
    pub wscale: Option<u8>,
    /// SACK-Permitted option.
    pub sack_permitted: bool,
    /// SACK blocks (up to four are sent).
    pub sack: Vec<(SeqNumber, SeqNumber)>,
    /// Timestamps option.
    pub ts: Option<TcpTimestamp>,
    /// TCP Fast Open option.
    pub fast_open: Option<FastOpenCookie>,
    /// Data.
    pub payload: Vec<u8>,
    /// The ECN field of the IP header (not-ECT unless set).
    pub ecn: Ecn,
    /// The urgent pointer field (0 unless set).
    pub urgent: u16,
    /// Option bytes after those above, as given (a multiple of 4 bytes): one no emitter of
    /// ours writes, such as a TCP MD5 signature.
    pub extra_options: Vec<u8>,
}

impl Out {
    /// A segment with these flags and numbers, a 65535 window, no options and no data.
    pub fn new(flags: TcpFlags, seq: u32, ack: u32) -> Out {
        Out {
            flags,
            seq: SeqNumber(seq),
            ack: SeqNumber(ack),
            window: 65535,
            mss: None,
            wscale: None,
            sack_permitted: false,
            sack: Vec::new(),
            ts: None,
            fast_open: None,
            payload: Vec::new(),
            ecn: Ecn::NotEct,
            urgent: 0,
            extra_options: Vec::new(),
        }
    }
    /// With this sequence number.
    pub fn seqn(mut self, seq: SeqNumber) -> Self {
        self.seq = seq;
        self
    }
    /// With this acknowledgment number.
    pub fn ackn(mut self, ack: SeqNumber) -> Self {
        self.ack = ack;
        self
    }
    /// With this window field.
    pub fn window(mut self, w: u16) -> Self {
        self.window = w;
        self
    }
    /// With an MSS option.
    pub fn mss(mut self, m: u16) -> Self {
        self.mss = Some(m);
        self
    }
    /// With a Window Scale option.
    pub fn wscale(mut self, s: u8) -> Self {
        self.wscale = Some(s);
        self
    }
    /// With SACK-Permitted.
    pub fn sack_ok(mut self) -> Self {
        self.sack_permitted = true;
        self
    }
    /// With a Timestamps option.
    pub fn ts(mut self, tsval: u32, tsecr: u32) -> Self {
        self.ts = Some(TcpTimestamp { tsval, tsecr });
        self
    }
    /// With these SACK blocks.
    pub fn sack(mut self, blocks: &[(u32, u32)]) -> Self {
        self.sack = blocks
            .iter()
            .map(|&(a, b)| (SeqNumber(a), SeqNumber(b)))
            .collect();
        self
    }
    /// With a TCP Fast Open option (a cookie request if `cookie` is empty).
    pub fn fast_open(mut self, cookie: &[u8]) -> Self {
        self.fast_open = if cookie.is_empty() {
            Some(FastOpenCookie::REQUEST)
        } else {
            Some(FastOpenCookie::new(cookie).expect("a cookie of 4 to 16 bytes, even"))
        };
        self
    }
    /// With this data.
    pub fn data(mut self, d: &[u8]) -> Self {
        self.payload = d.to_vec();
        self
    }
    /// With URG and this urgent pointer (RFC 9293 §3.8.5: one past the urgent byte, RFC
    /// 6093 §3, counted from the segment's sequence number).
    pub fn urg(mut self, ptr: u16) -> Self {
        self.flags = TcpFlags(self.flags.0 | TcpFlags::URG.0);
        self.urgent = ptr;
        self
    }
    /// With this ECN field in the IP header (RFC 3168 §5).
    pub fn ecn(mut self, ecn: Ecn) -> Self {
        self.ecn = ecn;
        self
    }
    /// With these option bytes after the others (padded with NOPs to a multiple of 4).
    pub fn raw_options(mut self, options: &[u8]) -> Self {
        self.extra_options = options.to_vec();
        while !self.extra_options.len().is_multiple_of(4) {
            self.extra_options.push(1);
        }
        self
    }

    /// The packet from `from` to `to`.
    pub fn packet(&self, from: SocketAddr, to: SocketAddr) -> Vec<u8> {
        let mut t = TcpRepr::new(from.port(), to.port(), self.flags, self.seq, self.ack);
        t.window_len = self.window;
        t.max_seg_size = self.mss;
        t.window_scale = self.wscale;
        t.sack_permitted = self.sack_permitted;
        for (i, b) in self.sack.iter().take(4).enumerate() {
            t.sack_ranges[i] = Some(*b);
        }
        t.timestamp = self.ts;
        t.fast_open = self.fast_open;
        t.payload = &self.payload;
        t.urgent_pointer = self.urgent;
        let mut tcp = vec![0u8; t.buffer_len()];
        t.emit(&mut tcp, from.ip(), to.ip());
        if !self.extra_options.is_empty() {
            let header_len = wire::tcp::Packet::new_unchecked(&tcp[..]).header_len();
            let at = header_len..header_len;
            tcp.splice(at, self.extra_options.iter().copied());
            let mut p = wire::tcp::Packet::new_unchecked(&mut tcp[..]);
            p.set_header_len(header_len + self.extra_options.len());
            p.fill_checksum(from.ip(), to.ip());
        }
        let ip = IpRepr::new(from.ip(), to.ip(), IpProtocol::Tcp, tcp.len(), 64).unwrap();
        let mut buf = vec![0u8; ip.buffer_len()];
        let hl = ip.header_len();
        ip.emit(&mut buf[..hl]);
        buf[hl..].copy_from_slice(&tcp);
        if self.ecn != Ecn::NotEct {
            wire::ip::set_ds_field(&mut buf, self.ecn.bits());
        }
        buf
    }
}

/// The endpoint under test plus a virtual clock.
pub struct Harness {
    /// The endpoint under test, at [`US`] and [`US6`].
    pub ep: Endpoint,
    /// The virtual clock.
    pub now: Instant,
    /// Every TCP segment [`Harness::drain`] collected, with when it was sent.
    pub sent: Vec<(Instant, Seg)>,
    /// Every packet [`Harness::drain`] collected, TCP or not.
    pub raw: Vec<Vec<u8>>,
}

/// A config with a fixed seed (reproducible ISNs).
pub fn config() -> Config {
    let mut c = Config::default();
    c.seed(Some([7; 32]));
    c
}

impl Harness {
    /// The endpoint with `config`, at virtual time 1000 s.
    pub fn new(config: Config) -> Harness {
        Harness {
            ep: Endpoint::new(config, &[US, US6]),
            now: Instant::from_secs(1000),
            sent: Vec::new(),
            raw: Vec::new(),
        }
    }

    /// Deliver a raw packet to the endpoint.
    pub fn inject_raw(&mut self, packet: &[u8]) {
        deliver(&mut self.ep, self.now, packet);
    }

    /// Deliver a segment from `from` to `to`.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, seg: Out) {
        let p = seg.packet(from, to);
        deliver(&mut self.ep, self.now, &p);
    }

    /// Everything the endpoint sends now, parsed (non-TCP packets kept in `raw` only); at
    /// most 10,000 packets.
    pub fn drain(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        let (now, sent, raw) = (self.now, &mut self.sent, &mut self.raw);
        let mut n = 0;
        drain(&mut self.ep, now, &mut buf, |packet, _| {
            if let Some(seg) = parse_out(packet) {
                sent.push((now, seg.clone()));
                out.push(seg);
            }
            raw.push(packet.to_vec());
            n += 1;
            if n == 10_000 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        out
    }

    /// Hands everything the endpoint sends now to `each`, written into `buf`, without
    /// recording it; returns how many packets there were (see [`super::drain`]).
    pub fn drain_with(
        &mut self,
        buf: &mut [u8],
        each: impl FnMut(&[u8], &Transmit) -> ControlFlow<()>,
    ) -> usize {
        drain(&mut self.ep, self.now, buf, each)
    }

    /// Exactly one segment must go out now.
    pub fn one(&mut self) -> Seg {
        let mut v = self.drain();
        assert_eq!(v.len(), 1, "expected exactly one segment, got {v:#?}");
        v.pop().unwrap()
    }

    /// Nothing may go out now.
    pub fn none(&mut self) {
        let v = self.drain();
        assert!(v.is_empty(), "expected silence, got {v:#?}");
    }

    /// Advance virtual time by `d`, firing due timers at each deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            match self.ep.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.ep.handle_timeout(self.now);
                    // Collected but not returned: callers use `sent`.
                    let _ = self.drain();
                }
                _ => break,
            }
        }
        self.now = end;
        self.ep.handle_timeout(self.now);
    }

    /// Advance to the next deadline and return what went out then.
    pub fn next_timeout(&mut self) -> (Instant, Vec<Seg>) {
        let t = self.ep.poll_timeout().expect("a deadline");
        self.now = self.now.max(t);
        self.ep.handle_timeout(self.now);
        (self.now, self.drain())
    }

    /// Every event the endpoint has queued.
    pub fn events(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = self.ep.poll_event() {
            v.push(e);
        }
        v
    }
}
