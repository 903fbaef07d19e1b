//! A deterministic simulated network of sans-IO endpoints, after quinn-proto's test `Pair`.
//!
//! Every endpoint sits on one virtual clock. Packets travel over per-direction links that add
//! latency, optionally serialize them at a bandwidth behind a bounded queue (tail drop, like a
//! router's FIFO), and inject seeded faults: loss, duplication, reordering (an extra random
//! delay) and corruption (one flipped byte, which a checksum must catch). The driver advances
//! time straight to the earliest of the next packet arrival, an endpoint deadline and an
//! application wake-up, so minutes of virtual time cost microseconds of real time, and the same
//! seed always replays the same run.

use core::ops::ControlFlow;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{describe, drain, inspect, payload_len, seed_bytes, v4, v6};
use crate::wire;
use crate::wire::gso::{self, TcpChecksum};
use crate::{Config, Endpoint, Instant, RecvMeta};

/// Faults a link injects, each drawn independently per packet from the network's seeded
/// generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faults {
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Probability a packet is delivered twice (the copy takes its own path delay).
    pub duplicate: f64,
    /// Probability a packet is held back by an extra delay in `(0, reorder_delay]`, so that
    /// later packets overtake it.
    pub reorder: f64,
    /// The largest extra delay of a reordered packet.
    pub reorder_delay: Duration,
    /// Probability one byte of the packet is flipped in transit.
    pub corrupt: f64,
}

impl Faults {
    /// A perfect link.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
        corrupt: 0.0,
    };

    /// Only loss.
    pub fn loss(p: f64) -> Faults {
        Faults {
            loss: p,
            ..Faults::NONE
        }
    }

    /// Only duplication.
    pub fn duplicate(p: f64) -> Faults {
        Faults {
            duplicate: p,
            ..Faults::NONE
        }
    }

    /// Only reordering, by up to `delay` extra.
    pub fn reorder(p: f64, delay: Duration) -> Faults {
        Faults {
            reorder: p,
            reorder_delay: delay,
            ..Faults::NONE
        }
    }

    /// Only corruption.
    pub fn corrupt(p: f64) -> Faults {
        Faults {
            corrupt: p,
            ..Faults::NONE
        }
    }

    /// Everything at once: the harshest mix the task asks the stack to survive.
    pub fn mixed() -> Faults {
        Faults {
            loss: 0.10,
            duplicate: 0.05,
            reorder: 0.10,
            reorder_delay: Duration::from_millis(15),
            corrupt: 0.05,
        }
    }
}

/// One direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Serialization rate in bytes per second; `None` for infinitely fast.
    pub bandwidth: Option<u64>,
    /// Packets the link's queue holds while it serializes (tail drop beyond). Only matters
    /// with a bandwidth.
    pub queue: usize,
    /// What goes wrong in transit.
    pub faults: Faults,
}

impl LinkConfig {
    /// A clean link with one-way delay `latency`.
    pub fn latency(latency: Duration) -> LinkConfig {
        LinkConfig {
            latency,
            bandwidth: None,
            queue: usize::MAX,
            faults: Faults::NONE,
        }
    }

    /// The same link with `faults`.
    pub fn with_faults(mut self, faults: Faults) -> LinkConfig {
        self.faults = faults;
        self
    }

    /// The same link limited to `bytes_per_sec` behind a queue of `queue` packets.
    pub fn with_bandwidth(mut self, bytes_per_sec: u64, queue: usize) -> LinkConfig {
        self.bandwidth = Some(bytes_per_sec);
        self.queue = queue;
        self
    }
}

#[derive(Debug)]
struct Link {
    config: LinkConfig,
    up: bool,
    /// When the transmitter finishes the last packet it accepted.
    busy_until: Instant,
    /// Departure times of packets still being serialized (the queue occupancy).
    queued: VecDeque<Instant>,
}

/// What the network did to the packets it carried.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetStats {
    /// Packets the endpoints emitted.
    pub sent: u64,
    /// Copies handed to a receiving endpoint.
    pub delivered: u64,
    /// Dropped by the loss fault.
    pub lost: u64,
    /// Extra copies made by the duplication fault.
    pub duplicated: u64,
    /// Packets given an extra reordering delay.
    pub reordered: u64,
    /// Delivered copies with a flipped byte.
    pub corrupted: u64,
    /// Tail drops at a full link queue.
    pub queue_drops: u64,
    /// Dropped because the link was down.
    pub link_down: u64,
    /// Addressed to no node.
    pub unroutable: u64,
    /// Emitted packets that did not parse as valid IP + TCP (must stay zero).
    pub invalid_emitted: u64,
    /// Emitted TCP segments advertising a zero window (flow control at work).
    pub zero_windows: u64,
    /// Super-segments emitted (segmentation offload).
    pub super_segments: u64,
    /// Payload bytes emitted in super-segments.
    pub super_segment_bytes: u64,
    /// Packets of several segments handed to a receiver by coalescing ([`Net::coalesce`]).
    pub coalesced: u64,
    /// The segments in them.
    pub coalesced_segments: u64,
}

/// A packet on the wire, ordered by arrival time and then by send order (stable, so equal
/// arrival times keep FIFO order and runs stay deterministic).
#[derive(Debug, PartialEq, Eq)]
struct InFlight {
    at: Instant,
    order: u64,
    from: usize,
    to: usize,
    corrupted: bool,
    /// The segment size of a super-segment carried whole.
    segment_size: Option<usize>,
    bytes: Vec<u8>,
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Most packets one endpoint may emit in one flush; a runaway emitter fails the test rather
/// than hanging it.
const MAX_FLUSH: usize = 1_000_000;

/// The simulated network: endpoints (`nodes`), the links between every two of them, and the
/// virtual clock.
///
/// The application drives the endpoints through `nodes` between calls to [`Net::step`],
/// which moves packets and time:
///
/// ```
/// use std::net::SocketAddr;
/// use std::time::Duration;
/// use synack_core::testing::{v4, Faults, LinkConfig, Net};
/// use synack_core::Config;
///
/// // Two nodes, 5 ms apart each way, losing one packet in twenty.
/// let link = LinkConfig::latency(Duration::from_millis(5)).with_faults(Faults::loss(0.05));
/// let mut net = Net::pair(7, &Config::default(), link);
/// let server = SocketAddr::new(v4(1), 80);
/// let listener = net.nodes[1].listen(server, 16).unwrap();
/// let now = net.now;
/// net.nodes[0].connect(now, server).unwrap();
/// while net.nodes[1].accept(listener).is_err() {
///     assert!(net.step(None), "nothing left to happen");
/// }
/// assert!(net.now >= synack_core::Instant::from_secs(1) + Duration::from_millis(10));
/// ```
pub struct Net {
    /// The endpoints; node `i` owns `v4(i)` and `v6(i)`.
    pub nodes: Vec<Endpoint>,
    /// The virtual clock.
    pub now: Instant,
    /// What the links did.
    pub stats: NetStats,
    /// Print every packet put on a link (for debugging a failing seed).
    pub trace: bool,
    /// What happens to a super-segment (segmentation offload): `true` cuts it into its
    /// segments before the link, as a TSO device does, so that faults hit single segments;
    /// `false` carries it whole, as Linux's veth and loopback carry GSO packets to a GRO
    /// receiver.
    pub cut_super_segments: bool,
    /// How a super-segment carried whole is handed to its receiver: `true` with its segment
    /// size in [`RecvMeta::segment_size`], as a device reports a GRO packet; `false` (the
    /// default) as a plain packet.
    pub gro: bool,
    /// Whether receivers coalesce (GRO, with [`gso::Coalescer`]): segments that arrive at the
    /// same moment for the same node, consecutive on one flow and with verified checksums, are
    /// handed over as one packet with [`RecvMeta::segment_size`]; the node answers once per
    /// packet handed over. Off by default: every packet is handed over alone.
    pub coalesce: bool,
    coalescer: gso::Coalescer,
    rng: ChaCha8Rng,
    default_link: LinkConfig,
    links: HashMap<(usize, usize), Link>,
    wire: BinaryHeap<Reverse<InFlight>>,
    order: u64,
    buf: Vec<u8>,
    /// Packets taken from one node in one flush, before they go on their links.
    outbox: Vec<(Vec<u8>, Option<usize>)>,
    /// Where a super-segment's segments are cut.
    cut: Vec<u8>,
}

impl Net {
    /// `configs.len()` nodes joined pairwise by `link` in every direction; `seed` drives the
    /// faults.
    pub fn new(seed: u64, configs: Vec<Config>, link: LinkConfig) -> Net {
        let nodes = configs
            .into_iter()
            .enumerate()
            .map(|(i, c)| Endpoint::new(c, &[v4(i), v6(i)]))
            .collect();
        Net {
            nodes,
            now: Instant::from_secs(1),
            stats: NetStats::default(),
            trace: false,
            cut_super_segments: false,
            gro: false,
            coalesce: false,
            coalescer: gso::Coalescer::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            default_link: link,
            links: HashMap::new(),
            wire: BinaryHeap::new(),
            order: 0,
            buf: vec![0u8; 65536],
            outbox: Vec::new(),
            cut: vec![0u8; 65536],
        }
    }

    /// Two nodes with the same config (seeded differently so ISNs differ).
    pub fn pair(seed: u64, config: &Config, link: LinkConfig) -> Net {
        let mut a = config.clone();
        a.seed(Some(seed_bytes(seed, 1)));
        let mut b = config.clone();
        b.seed(Some(seed_bytes(seed, 2)));
        Net::new(seed, vec![a, b], link)
    }

    fn link(&mut self, from: usize, to: usize) -> &mut Link {
        let default = self.default_link;
        self.links.entry((from, to)).or_insert_with(|| Link {
            config: default,
            up: true,
            busy_until: Instant::ZERO,
            queued: VecDeque::new(),
        })
    }

    /// Gives the link from `from` to `to` (that direction only) its own latency, bandwidth,
    /// queue and faults; packets already on it keep the delays they were given.
    pub fn set_link(&mut self, from: usize, to: usize, config: LinkConfig) {
        self.link(from, to).config = config;
    }

    /// Cut (`false`) or restore the link from `from` to `to`; a cut link drops everything,
    /// including packets already on it.
    pub fn set_up(&mut self, from: usize, to: usize, up: bool) {
        self.link(from, to).up = up;
        if !up {
            let before = self.wire.len();
            let wire = std::mem::take(&mut self.wire);
            self.wire = wire
                .into_iter()
                .filter(|Reverse(p)| !(p.from == from && p.to == to))
                .collect();
            self.stats.link_down += (before - self.wire.len()) as u64;
        }
    }

    /// Collect every packet every endpoint wants to send now and put it on its link.
    pub fn flush(&mut self) {
        for from in 0..self.nodes.len() {
            self.flush_node(from);
        }
    }

    fn flush_node(&mut self, from: usize) {
        let mut outbox = std::mem::take(&mut self.outbox);
        let mut n = 0;
        drain(
            &mut self.nodes[from],
            self.now,
            &mut self.buf,
            |packet, t| {
                n += 1;
                assert!(n < MAX_FLUSH, "node {from} emits without end");
                let mut packet = packet.to_vec();
                if t.checksum_partial {
                    // The device finishes the TCP checksum (CHECKSUM_PARTIAL) before the wire.
                    gso::complete_checksum(&mut packet)
                        .unwrap_or_else(|e| panic!("a partial checksum on a bad packet: {e}"));
                }
                outbox.push((packet, t.segment_size));
                ControlFlow::Continue(())
            },
        );
        for (packet, segment_size) in outbox.drain(..) {
            if let Some(size) = segment_size {
                self.stats.super_segments += 1;
                self.stats.super_segment_bytes += payload_len(&packet) as u64;
                assert!(
                    payload_len(&packet) > size,
                    "a super-segment of one segment: {}",
                    describe(&packet)
                );
            }
            match segment_size {
                Some(size) if self.cut_super_segments => {
                    // What a TSO device does with it: segments of `size` bytes, each under a
                    // copy of the header with its own sequence number and checksums.
                    let mut segments = Vec::new();
                    gso::segments(&packet, size, TcpChecksum::Complete, &mut self.cut, |s| {
                        segments.push(s.to_vec())
                    })
                    .unwrap_or_else(|e| panic!("a super-segment cannot be cut: {e}"));
                    for segment in segments {
                        self.transmit(from, segment, None);
                    }
                }
                _ => self.transmit(from, packet, segment_size),
            }
        }
        self.outbox = outbox;
    }

    fn transmit(&mut self, from: usize, packet: Vec<u8>, segment_size: Option<usize>) {
        self.stats.sent += 1;
        match inspect(&packet) {
            None => self.stats.invalid_emitted += 1,
            Some(Some(0)) => self.stats.zero_windows += 1,
            Some(_) => {}
        }
        if self.trace {
            eprintln!("{:?} {from} {}", self.now, describe(&packet));
        }
        let Some(to) = dst_addr(&packet).and_then(|a| node_of(a, self.nodes.len())) else {
            self.stats.unroutable += 1;
            return;
        };
        let now = self.now;
        let link = self.link(from, to);
        if !link.up {
            self.stats.link_down += 1;
            return;
        }
        let c = link.config;
        // The transmitter: serialize behind the packets already queued (tail drop when full).
        let mut depart = now;
        if let Some(bw) = c.bandwidth {
            while link.queued.front().is_some_and(|&t| t <= now) {
                link.queued.pop_front();
            }
            if link.queued.len() >= c.queue {
                self.stats.queue_drops += 1;
                return;
            }
            let tx = Duration::from_nanos((packet.len() as u64 * 1_000_000_000) / bw.max(1));
            depart = link.busy_until.max(now) + tx;
            link.busy_until = depart;
            link.queued.push_back(depart);
        }
        let f = c.faults;
        if self.chance(f.loss) {
            self.stats.lost += 1;
            return;
        }
        let mut copies = vec![packet];
        if self.chance(f.duplicate) {
            self.stats.duplicated += 1;
            copies.push(copies[0].clone());
        }
        for mut bytes in copies {
            let mut at = depart + c.latency;
            if self.chance(f.reorder) && !f.reorder_delay.is_zero() {
                self.stats.reordered += 1;
                let max = f.reorder_delay.as_micros() as u64;
                at += Duration::from_micros(1 + self.rng.next_u64() % max);
            }
            let corrupted = self.chance(f.corrupt) && self.corrupt(&mut bytes);
            self.order += 1;
            self.wire.push(Reverse(InFlight {
                at,
                order: self.order,
                from,
                to,
                corrupted,
                segment_size,
                bytes,
            }));
        }
    }

    /// Flip one byte that a checksum covers. IPv4: every byte (the header checksum covers
    /// the header, the TCP checksum with its pseudo-header the rest). IPv6 has no header
    /// checksum: version, traffic class, flow label and hop limit (bytes 0–3 and 7) are
    /// covered by nothing (RFC 8200 §8.1), so only the other bytes are candidates.
    fn corrupt(&mut self, bytes: &mut [u8]) -> bool {
        if bytes.is_empty() {
            return false;
        }
        let v6 = bytes[0] >> 4 == 6;
        let idx = loop {
            let i = (self.rng.next_u64() % bytes.len() as u64) as usize;
            if !v6 || (i >= 4 && i != 7) {
                break i;
            }
        };
        // A non-zero XOR always changes the byte.
        let mask = 1 + (self.rng.next_u32() % 255) as u8;
        bytes[idx] ^= mask;
        true
    }

    fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        // 53 random bits give a uniform f64 in [0, 1).
        let x = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// The earliest moment something happens: a packet arrives or an endpoint deadline.
    pub fn next_event(&mut self) -> Option<Instant> {
        let mut next = self.wire.peek().map(|Reverse(p)| p.at);
        for ep in &mut self.nodes {
            if let Some(t) = ep.poll_timeout() {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        next
    }

    /// Flush, then advance the clock to the next event (or to `wake`, an application
    /// wake-up, if that is sooner), deliver what arrives then and run due timers. Returns
    /// `false` if nothing at all was pending.
    pub fn step(&mut self, wake: Option<Instant>) -> bool {
        self.flush();
        let next = match (self.next_event(), wake) {
            (Some(a), Some(b)) => a.min(b),
            (a, None) => match a {
                Some(a) => a,
                None => return false,
            },
            (None, Some(b)) => b,
        };
        self.now = self.now.max(next);
        // With `coalesce`, the segments being glued and the node they are for.
        let mut batch: Option<usize> = None;
        while self.wire.peek().is_some_and(|Reverse(p)| p.at <= self.now) {
            let Some(Reverse(p)) = self.wire.pop() else {
                break;
            };
            self.stats.delivered += 1;
            if p.corrupted {
                self.stats.corrupted += 1;
            }
            if self.coalesce && p.segment_size.is_none() && checksums_verify(&p.bytes) {
                if batch == Some(p.to) && self.coalescer.push(&p.bytes) {
                    continue;
                }
                self.hand_over(batch.take());
                if self.coalescer.push(&p.bytes) {
                    batch = Some(p.to);
                    continue;
                }
            }
            self.hand_over(batch.take());
            // Each packet in memory of its own, as a driver reads it: the receiver may keep
            // its payload there (`handle_packet_shared`), so every simulation runs through
            // that path as well as the copying one.
            let frame = Bytes::from(p.bytes);
            let meta = RecvMeta {
                segment_size: p.segment_size.filter(|_| self.gro),
                ..RecvMeta::new(frame.len())
            };
            self.nodes[p.to].handle_packet_shared(self.now, &frame, meta);
            // Packets arrive one by one, as from a device without batching, so a receiver
            // answers each (duplicate ACKs included) before the next arrives.
            self.flush_node(p.to);
        }
        self.hand_over(batch.take());
        for ep in &mut self.nodes {
            ep.handle_timeout(self.now);
        }
        true
    }

    /// Hands the coalescer's batch to node `to` (GRO: one packet, with its segment size when
    /// it glued several), and lets the node answer.
    fn hand_over(&mut self, to: Option<usize>) {
        let Some(to) = to else {
            return;
        };
        if let Some(out) = self.coalescer.finish(TcpChecksum::Complete) {
            if out.segments > 1 {
                self.stats.coalesced += 1;
                self.stats.coalesced_segments += out.segments as u64;
            }
            let meta = RecvMeta {
                segment_size: out.segment_size,
                ..RecvMeta::new(out.packet.len())
            };
            self.nodes[to].handle_packet(self.now, out.packet, meta);
        }
        self.coalescer.clear();
        self.flush_node(to);
    }

    /// Run with no application until nothing is pending (every timer, TIME-WAIT included,
    /// has run out) or `limit` of virtual time passes. Returns whether it went idle.
    pub fn settle(&mut self, limit: Duration) -> bool {
        let end = self.now + limit;
        for _ in 0..1_000_000 {
            match self.next_event() {
                None => {
                    self.flush();
                    if self.next_event().is_none() {
                        return true;
                    }
                }
                Some(t) if t > end => return false,
                Some(_) => {}
            }
            self.step(None);
        }
        false
    }

    /// Packets each endpoint dropped as damaged: the counters a corrupted packet must land in,
    /// and that our own clean output must never reach.
    pub fn wire_drops(&self) -> u64 {
        self.nodes
            .iter()
            .map(|ep| {
                let s = ep.stats();
                s.drop_malformed
                    + s.drop_checksum
                    + s.drop_bad_option
                    + s.drop_signed
                    + s.drop_fragment
                    + s.drop_not_for_us
                    + s.drop_unsupported
            })
            .sum()
    }

    /// The invariants every run must end with: every packet we emitted parsed, no endpoint
    /// dropped anything as damaged except the copies the network corrupted, and every
    /// connection is gone.
    pub fn assert_clean_end(&self) {
        assert_eq!(self.stats.invalid_emitted, 0, "we emitted invalid packets");
        assert_eq!(
            self.wire_drops(),
            self.stats.corrupted,
            "damaged-packet drops must equal corrupted deliveries: {:?} / {:?}",
            self.stats,
            self.nodes
                .iter()
                .map(|e| e.stats().clone())
                .collect::<Vec<_>>()
        );
        for (i, ep) in self.nodes.iter().enumerate() {
            assert_eq!(ep.connection_count(), 0, "node {i} still holds connections");
        }
    }
}

fn dst_addr(packet: &[u8]) -> Option<IpAddr> {
    wire::ip::parse(packet).ok().map(|(ip, _)| ip.dst_addr())
}

/// The node that owns `addr` ([`v4`] or [`v6`] of its index), if any of `nodes` does.
fn node_of(addr: IpAddr, nodes: usize) -> Option<usize> {
    (0..nodes).find(|&i| addr == v4(i) || addr == v6(i))
}

/// Whether `packet` is IP whose TCP checksum (and IPv4 header checksum) verify: what a
/// receiving device checks before it coalesces a segment.
fn checksums_verify(packet: &[u8]) -> bool {
    wire::ip::parse(packet).is_ok_and(|(ip, payload)| {
        ip.protocol() == wire::IpProtocol::Tcp
            && wire::TcpRepr::parse(payload, ip.src_addr(), ip.dst_addr(), false).is_ok()
    })
}
