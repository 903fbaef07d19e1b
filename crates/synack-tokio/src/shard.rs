//! Sharding: one sans-IO endpoint per worker, each owning the flows a keyed hash gives it.
//!
//! A stack with `N` workers ([`StackBuilder::workers`](crate::StackBuilder::workers)) runs
//! `N` shards. Each shard is a whole synack-core [`Endpoint`](synack_core::Endpoint) with its
//! own lock, its own driver task and its own device queue (a multi-queue TUN,
//! `IFF_MULTI_QUEUE`, opens one file per queue). The core stays single-threaded per shard;
//! nothing on the packet path is shared between shards but the bounded hand-off channels
//! below, so `N` shards on `N` cores run side by side.
//!
//! **Who owns a flow.** A TCP connection belongs to the shard that `Flows::owner` names: the
//! flow hash of [`FlowSteering`], SipHash-2-4 under a secret 128-bit key drawn for each stack,
//! over words that stay the same when the two ends are swapped, so that both directions of a
//! flow hash alike, and an outsider who does not know the key cannot aim a flood of flows at
//! one shard. With one shard there is no hashing at all.
//!
//! **Steering: the kernel delivers each flow to its owner.** The kernel picks a TUN queue for
//! each packet itself. Where it can, the TUN is given a steering program
//! (`TUNSETSTEERINGEBPF`: an eBPF socket filter whose return value, modulo the queue count,
//! picks the queue instead of the kernel's own choice) that computes the same keyed hash
//! from the packet's headers ([`Device::steer_flows`](crate::Device::steer_flows); see
//! `device::tun::steering`). Then every TCP packet of a flow, the client's first SYN
//! included, arrives on its owner's queue, and everything else on queue 0, where UDP lives.
//! [`Stack::flows_steered`](crate::Stack::flows_steered) says whether the device took it.
//!
//! **Packets on the wrong queue** are still handled, for devices that cannot steer (the
//! kernel refused the program: no `bpf(2)` for this process, say) and for what the program
//! leaves to queue 0 (IPv6 behind extension headers other than one Hop-by-Hop header, which
//! the kernel's own IPv6 super-packets carry while it picks their queue; ICMP errors). A shard's driver looks at
//! every packet it reads (`Flows::route`): one whose flow another shard owns is copied into
//! that shard's bounded hand-off channel (512 packets, `HANDOFF_QUEUE`; counted in
//! [`ShardStats::handed_off`], and dropped and counted in [`ShardStats::handoff_dropped`]
//! when the channel is full: TCP recovers as from any loss). Without a steering program,
//! Linux's TUN learns, for each flow, the queue the *reader* last wrote that flow's packets on
//! (`tun_flow_update` on write, `tun_automq_select_queue` on the way out, both keyed by the
//! kernel's symmetric flow hash), and steers the flow's later packets to that queue. The
//! owner writes its SYN-ACK, or its SYN, on its own queue, and from then on the kernel
//! delivers the flow to the owner directly. Only the handshake may cross: the client's SYN
//! lands by the kernel's hash, and the kernel records the queue of a packet we write only
//! after its own TCP has processed it, so its immediate answer (the SYN-ACK to our SYN, the
//! ACK to our SYN-ACK) may still go by hash. That is at most about one hand-off per
//! connection in either direction (half of them cross on two queues), and none afterwards
//! (`kernel_multiqueue.rs` measures both cases). A flow that stays silent for longer than the
//! kernel remembers it (about 3 s) may be handed off once more when it wakes.
//!
//! **Outbound connects** land on their owner without any hand-off: the runtime chooses the
//! shard (round robin) and then an ephemeral port whose 4-tuple hashes to it
//! (`Flows::ports_for`, a random start in the ephemeral range as RFC 6056 §3.3.1 asks), and
//! opens the connection on that shard's endpoint. A socket bound to a port before it connects
//! opens on the shard its 4-tuple hashes to.
//!
//! **Listeners** are registered on every shard's endpoint, with one port;
//! [`TcpListener::accept`](crate::TcpListener::accept) takes from the shard whose next
//! connection was queued first (the shards number what they queue from one counter), so
//! that connections are accepted in the order they were established, as from Linux's one
//! accept queue.
//!
//! **UDP and the rest.** A UDP socket must see every datagram for its port whatever the
//! 4-tuple, and a socket bound to the unspecified address matches many; so UDP sockets, the
//! transparent mode's datagram queue and their ICMP errors all live on shard 0, and other
//! shards hand UDP over to it. TCP in transparent mode is sharded like any TCP: a held SYN
//! waits on its owner's endpoint. ICMP errors go to the shard that owns the flow they quote;
//! anything else (echo requests, what the core drops as malformed or not for us) is handled
//! where it arrived, since every shard answers it alike.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use synack_core::isn::{os_seed, siphash24};
use synack_core::wire::fragment::Fragment;
use synack_core::wire::{icmp, ipv4, tcp, IcmpRepr, IpProtocol, Ipv6Repr};
use synack_core::RecvMeta;

/// Packets each shard's hand-off channel holds. A burst larger than this (say, many SYNs of
/// new flows on the wrong queue at once) loses the excess, which TCP retransmits.
pub(crate) const HANDOFF_QUEUE: usize = 512;

/// A packet read on one shard's queue for a flow another shard owns.
pub(crate) struct Handoff {
    /// The whole IP packet (a GRO super-packet stays whole).
    pub(crate) packet: Box<[u8]>,
    /// What the device said about it; `len` is `packet.len()`.
    pub(crate) meta: RecvMeta,
}

/// Counters of one shard, from [`Stack::shard_stats`](crate::Stack::shard_stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardStats {
    /// The shard's endpoint's counters.
    pub stats: synack_core::Stats,
    /// Connections the shard holds in every state (see
    /// [`Stack::connection_count`](crate::Stack::connection_count)).
    pub connections: usize,
    /// Packets this shard read from its queue and handed to the flow's owner.
    pub handed_off: u64,
    /// Packets other shards handed to this one.
    pub handoffs_received: u64,
    /// Packets this shard could not hand off: the owner's channel was full, or the owner
    /// had stopped. Lost, as on a wire.
    pub handoff_dropped: u64,
}

/// Which queue of a multi-queue device each TCP flow belongs on: what a device that can
/// steer flows ([`Device::steer_flows`](crate::Device::steer_flows)) must compute for every
/// packet it delivers.
///
/// The hash is SipHash-2-4 under the stack's secret 128-bit key over a message of 64-bit
/// words, one for each 32-bit word of the two IP addresses (one for IPv4, four for IPv6, in
/// header order) and a last one for the two ports. Each word combines the two ends' values
/// `x` and `y` (as unsigned 32-bit numbers, from the big-endian header fields) as
/// `(x ^ y) << 32 | (x + y) mod 2^32`, which is the same whichever end is the source, and
/// the message is hashed as the little-endian bytes of its words. The queue is the hash's
/// low 16 bits modulo the queue count: what the Linux TUN does with a steering program's
/// result (`tun_ebpf_select_queue` keeps a `u16`).
#[derive(Clone)]
pub struct FlowSteering {
    key: [u8; 16],
    queues: usize,
}

impl fmt::Debug for FlowSteering {
    /// Never prints the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlowSteering")
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl FlowSteering {
    /// How many queues the flows are spread over.
    pub fn queues(&self) -> usize {
        self.queues
    }

    /// The queue of the TCP flow between `a` and `b`, in either orientation.
    pub fn queue_of(&self, a: SocketAddr, b: SocketAddr) -> usize {
        usize::from(flow_hash(&self.key, a, b) as u16) % self.queues
    }

    /// The secret key, for a device that computes the hash itself.
    pub(crate) fn key(&self) -> &[u8; 16] {
        &self.key
    }
}

/// One word of the flow hash's message (see [`FlowSteering`]): symmetric in `x` and `y`.
pub(crate) fn flow_word(x: u32, y: u32) -> u64 {
    (u64::from(x ^ y) << 32) | u64::from(x.wrapping_add(y))
}

/// The 64-bit flow hash of [`FlowSteering`].
fn flow_hash(key: &[u8; 16], a: SocketAddr, b: SocketAddr) -> u64 {
    let words = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => [u32::from(v4), 0, 0, 0],
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [0, 4, 8, 12].map(|i| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]))
        }
    };
    // A flow has one family; a mixed pair (never a real flow) hashes as IPv6.
    let (n, wa, wb) = match (a.ip(), b.ip()) {
        (IpAddr::V4(x), IpAddr::V4(y)) => (1, words(x.into()), words(y.into())),
        (x, y) => (4, words(to_v6(x)), words(to_v6(y))),
    };
    let mut message = [0u8; 40];
    for i in 0..n {
        message[8 * i..8 * i + 8].copy_from_slice(&flow_word(wa[i], wb[i]).to_le_bytes());
    }
    let ports = flow_word(a.port().into(), b.port().into());
    message[8 * n..8 * n + 8].copy_from_slice(&ports.to_le_bytes());
    siphash24(key, &message[..8 * (n + 1)])
}

fn to_v6(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    }
}

/// The keyed flow hash of one stack, and the shard count it maps onto.
#[derive(Debug)]
pub(crate) struct Flows {
    steering: FlowSteering,
    /// A second secret, for [`Flows::port_start`].
    port_key: [u8; 16],
}

impl Flows {
    /// Fresh secret keys for `shards` shards (at least one).
    pub(crate) fn new(shards: usize) -> Flows {
        let seed = os_seed();
        let (key, port_key) = seed.split_at(16);
        Flows {
            steering: FlowSteering {
                key: key.try_into().expect("16 of 32 bytes"),
                queues: shards.max(1),
            },
            port_key: port_key.try_into().expect("16 of 32 bytes"),
        }
    }

    /// What a device needs to deliver each flow to its owner.
    pub(crate) fn steering(&self) -> &FlowSteering {
        &self.steering
    }

    /// The shard owning the TCP flow between `a` and `b`, in either orientation.
    pub(crate) fn owner(&self, a: SocketAddr, b: SocketAddr) -> usize {
        if self.steering.queues == 1 {
            return 0;
        }
        self.steering.queue_of(a, b)
    }

    /// The shard that must handle `packet`, or `None` if any shard may (the one it arrived
    /// on does): TCP goes to its flow's owner, UDP to shard 0, an ICMP error to the owner of
    /// the flow it quotes, and a fragment of what the core reassembles (UDP, ICMP) to shard
    /// 0, where its datagram's other pieces go. Reads the IP header and the ports (and an
    /// ICMP error's quote) with the core's parsers, without a TCP or UDP checksum; what does
    /// not parse is left to the endpoint where it arrived, which drops and counts it (TCP
    /// fragments among it: the core does not reassemble them).
    pub(crate) fn route(&self, packet: &[u8]) -> Option<usize> {
        if self.steering.queues == 1 {
            return None;
        }
        let Some(ip) = parse_ip(packet) else {
            return Fragment::parse(packet)
                .ok()
                .filter(|f| f.protocol != IpProtocol::Tcp)
                .map(|_| 0);
        };
        match ip {
            (src, dst, IpProtocol::Tcp, segment) => {
                let (sp, dp) = ports(segment)?;
                Some(self.owner(SocketAddr::new(src, sp), SocketAddr::new(dst, dp)))
            }
            (_, _, IpProtocol::Udp, _) => Some(0),
            _ => self.route_quoted(icmp_quote(ip)?),
        }
    }

    /// The owner of the packet an ICMP error quotes (one we sent: its source is ours), read
    /// as the core reads it when the error arrives (`invoking_tcp`, `invoking_udp`: only
    /// the first 8 bytes of the transport header need be there, RFC 792).
    fn route_quoted(&self, quoted: &[u8]) -> Option<usize> {
        if let Some((src, sp, dst, dp, _)) = icmp::invoking_tcp(quoted) {
            return Some(self.owner(SocketAddr::new(src, sp), SocketAddr::new(dst, dp)));
        }
        icmp::invoking_udp(quoted).map(|_| 0)
    }

    /// Ephemeral ports in `range` from which a connection from `local` to `remote` would
    /// belong to `shard`, in the order to try them: from a random point of the range
    /// (`start`, from [`Flows::port_start`]) onwards, wrapping (RFC 6056 §3.3.1). About one
    /// port in `shards` qualifies.
    pub(crate) fn ports_for(
        &self,
        local: IpAddr,
        remote: SocketAddr,
        shard: usize,
        range: (u16, u16),
        start: u32,
    ) -> impl Iterator<Item = u16> + '_ {
        let (min, max) = range;
        let num = if min == 0 || max < min {
            0
        } else {
            u32::from(max - min) + 1
        };
        (0..num)
            // From `start`'s place in the range, round it once: every port once, however
            // close `start` is to the top of its type.
            .map(move |i| min + ((start % num + i) % num) as u16)
            .filter(move |&port| self.owner(SocketAddr::new(local, port), remote) == shard)
    }

    /// A start for [`Flows::ports_for`] that an outsider cannot predict: the keyed hash of
    /// the destination and a per-stack counter.
    pub(crate) fn port_start(&self, remote: SocketAddr, counter: u64) -> u32 {
        let mut input = [0u8; 26];
        match remote.ip() {
            IpAddr::V4(v4) => input[..4].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => input[..16].copy_from_slice(&v6.octets()),
        }
        input[16..18].copy_from_slice(&remote.port().to_be_bytes());
        input[18..].copy_from_slice(&counter.to_le_bytes());
        siphash24(&self.port_key, &input) as u32
    }
}

/// The addresses, protocol and payload of an IPv4 or IPv6 packet, read with the core's own
/// parsers so that a shard routes what the core will parse and nothing else; `None` for
/// anything short, of another version, or a fragment (whose ports may be missing: see
/// [`Flows::route`]).
///
/// IPv4 goes through the header view, not `wire::ip::parse`: that verifies the header
/// checksum, which the owner's endpoint does anyway, and routing runs on every packet a
/// shard reads. The view's `check_len` is the same length check `parse` makes (IHL at least
/// 5, header and total length within the buffer). IPv6 has no header checksum, so it goes
/// through [`Ipv6Repr::parse`] as in the core, extension-header walk included (RFC 8200 §4:
/// Hop-by-Hop, Routing and Destination Options headers may come before the transport
/// header, and the flow is the same; a chain the walk refuses, a fragment or a malformed
/// header, the core drops on whichever shard).
fn parse_ip(p: &[u8]) -> Option<(IpAddr, IpAddr, IpProtocol, &[u8])> {
    match p.first()? >> 4 {
        4 => {
            let ip = ipv4::Packet::new_checked(p).ok()?;
            // More fragments, or a fragment offset (RFC 791 §3.1).
            if ip.more_frags() || ip.frag_offset() != 0 {
                return None;
            }
            // The view's `payload` borrows the view; its bounds, which `check_len` vouched
            // for, borrow the packet.
            let payload = p.get(ip.header_len()..usize::from(ip.total_len()))?;
            Some((
                IpAddr::V4(ip.src_addr()),
                IpAddr::V4(ip.dst_addr()),
                ip.protocol(),
                payload,
            ))
        }
        6 => {
            let (ip, payload) = Ipv6Repr::parse(p).ok()?;
            Some((
                IpAddr::V6(ip.src_addr),
                IpAddr::V6(ip.dst_addr),
                ip.next_header,
                payload,
            ))
        }
        _ => None,
    }
}

/// The source and destination ports of a TCP segment, through the core's header view
/// (whose `check_len` wants a whole header: what is shorter the core drops as malformed,
/// wherever it lands). The checksum is left to the owner's endpoint.
fn ports(segment: &[u8]) -> Option<(u16, u16)> {
    let tcp = tcp::Packet::new_checked(segment).ok()?;
    Some((tcp.src_port(), tcp.dst_port()))
}

/// What an ICMP message quotes, if it is an error the core acts on (destination
/// unreachable, packet too big, time exceeded: what `IcmpRepr` gives an `invoking` packet
/// for); other types the core answers or ignores alike on every shard.
///
/// This parse verifies the ICMP checksum: the core has no view of an ICMP header that does
/// not. ICMP is not the flows' path, and a message that fails is one the core drops
/// wherever it lands.
fn icmp_quote(ip: (IpAddr, IpAddr, IpProtocol, &[u8])) -> Option<&[u8]> {
    let icmp = match ip {
        (IpAddr::V4(_), IpAddr::V4(_), IpProtocol::Icmp, payload) => {
            IcmpRepr::parse_v4(payload).ok()?
        }
        (IpAddr::V6(src), IpAddr::V6(dst), IpProtocol::Icmpv6, payload) => {
            IcmpRepr::parse_v6(payload, src, dst).ok()?
        }
        _ => return None,
    };
    match icmp {
        IcmpRepr::DstUnreachable { invoking, .. }
        | IcmpRepr::PacketTooBig { invoking, .. }
        | IcmpRepr::TimeExceeded { invoking, .. } => Some(invoking),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    /// Protocol numbers, for building packets.
    const TCP: u8 = 6;
    const UDP: u8 = 17;
    const ICMP: u8 = 1;
    const ICMPV6: u8 = 58;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// An IPv4 header (20 bytes) for `proto` from `src` to `dst`, then `l4`.
    fn v4(proto: u8, src: [u8; 4], dst: [u8; 4], l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(l4);
        let len = p.len() as u16;
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    /// Sums an IPv4 header made by [`v4`] (which leaves it 0: routing does not check it, but
    /// a fragment is parsed as the core parses it).
    fn fix_v4_checksum(p: &mut [u8]) {
        ipv4::Packet::new_unchecked(&mut p[..]).fill_checksum();
    }

    fn v6(proto: u8, src: Ipv6Addr, dst: Ipv6Addr, l4: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(&[proto, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(l4);
        p
    }

    fn tcp_ports(sp: u16, dp: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sp.to_be_bytes());
        t[2..4].copy_from_slice(&dp.to_be_bytes());
        t[12] = 5 << 4;
        t
    }

    #[test]
    fn owner_is_symmetric_and_in_range() {
        let flows = Flows::new(4);
        for port in 30000..31000 {
            let a = sa(&format!("198.18.0.2:{port}"));
            let b = sa("198.18.0.1:80");
            let o = flows.owner(a, b);
            assert!(o < 4);
            assert_eq!(o, flows.owner(b, a));
        }
    }

    #[test]
    fn owner_spreads_flows_over_the_shards() {
        let flows = Flows::new(2);
        let mut count = [0usize; 2];
        for port in 40000..42000 {
            count[flows.owner(sa(&format!("198.18.0.1:{port}")), sa("198.18.0.2:443"))] += 1;
        }
        // 2000 flows, a fair coin each: far from either edge.
        assert!(count[0] > 800 && count[1] > 800, "{count:?}");
    }

    #[test]
    fn the_key_is_per_stack() {
        // Two stacks disagree on some flow: the hash is keyed, not a fixed function of the
        // 4-tuple an outsider could compute.
        let a = Flows::new(2);
        let b = Flows::new(2);
        let differs = (1..200u16).any(|p| {
            let (x, y) = (sa(&format!("198.18.0.1:{p}")), sa("198.18.0.2:80"));
            a.owner(x, y) != b.owner(x, y)
        });
        assert!(differs);
    }

    #[test]
    fn one_shard_owns_everything_without_parsing() {
        let flows = Flows::new(1);
        assert_eq!(flows.owner(sa("198.18.0.1:1"), sa("198.18.0.2:2")), 0);
        assert_eq!(flows.route(&[0x45]), None);
    }

    #[test]
    fn tcp_routes_to_the_owner_both_ways() {
        let flows = Flows::new(2);
        for port in 50000..50100 {
            let inbound = v4(TCP, [198, 18, 0, 1], [198, 18, 0, 2], &tcp_ports(port, 80));
            let outbound = v4(TCP, [198, 18, 0, 2], [198, 18, 0, 1], &tcp_ports(80, port));
            let owner = flows.owner(sa(&format!("198.18.0.1:{port}")), sa("198.18.0.2:80"));
            assert_eq!(flows.route(&inbound), Some(owner));
            assert_eq!(flows.route(&outbound), Some(owner));
        }
        let a: Ipv6Addr = "2001:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:2::2".parse().unwrap();
        let p = v6(TCP, a, b, &tcp_ports(1234, 443));
        assert_eq!(
            flows.route(&p),
            Some(flows.owner(sa("[2001:2::1]:1234"), sa("[2001:2::2]:443")))
        );
    }

    /// TCP behind IPv6 extension headers (Destination Options here, as a router may add, or
    /// a Hop-by-Hop header) is its flow's, like TCP right after the header: the shard it
    /// arrives on hands it over rather than answering it with an RST.
    #[test]
    fn tcp_behind_ipv6_extension_headers_is_routed_by_its_ports() {
        let flows = Flows::new(4);
        let a: Ipv6Addr = "2001:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:2::2".parse().unwrap();
        for port in 40000..40100 {
            let owner = flows.owner(sa(&format!("[2001:2::1]:{port}")), sa("[2001:2::2]:443"));
            for ext in [60u8, 0] {
                // Next header TCP, length 0 (8 bytes), a PadN option filling the rest.
                let mut l4 = vec![TCP, 0, 1, 4, 0, 0, 0, 0];
                l4.extend_from_slice(&tcp_ports(port, 443));
                assert_eq!(flows.route(&v6(ext, a, b, &l4)), Some(owner));
            }
        }
        // A TCP fragment is no one's in particular: the core drops it wherever it lands. A
        // UDP one goes where its datagram's other pieces go, to shard 0.
        let mut frag = vec![TCP, 0, 0, 1, 0, 0, 0, 1];
        frag.extend_from_slice(&tcp_ports(40000, 443));
        assert_eq!(flows.route(&v6(44, a, b, &frag)), None);
        frag[0] = UDP;
        assert_eq!(flows.route(&v6(44, a, b, &frag)), Some(0));
    }

    #[test]
    fn udp_goes_to_shard_zero() {
        let flows = Flows::new(3);
        let p = v4(
            UDP,
            [198, 18, 0, 1],
            [198, 18, 0, 2],
            &[0, 53, 0, 53, 0, 8, 0, 0],
        );
        assert_eq!(flows.route(&p), Some(0));
    }

    /// An ICMPv4 message as the core emits it, checksum included.
    fn icmp_v4(icmp: IcmpRepr<'_>) -> Vec<u8> {
        let mut m = vec![0u8; icmp.buffer_len()];
        icmp.emit_v4(&mut m);
        m
    }

    #[test]
    fn icmp_errors_follow_the_quoted_flow() {
        let flows = Flows::new(2);
        for port in 1000..1100 {
            // What we sent: 198.18.0.2:port -> 198.18.0.1:80, quoted after the ICMP header.
            let sent = v4(TCP, [198, 18, 0, 2], [198, 18, 0, 1], &tcp_ports(port, 80));
            let owner = flows.owner(sa(&format!("198.18.0.2:{port}")), sa("198.18.0.1:80"));
            for error in [
                IcmpRepr::PacketTooBig {
                    mtu: 1500,
                    invoking: &sent[..28],
                },
                IcmpRepr::DstUnreachable {
                    code: 1,
                    invoking: &sent[..28],
                },
                IcmpRepr::TimeExceeded {
                    code: 0,
                    invoking: &sent[..28],
                },
            ] {
                let err = v4(ICMP, [198, 18, 0, 1], [198, 18, 0, 2], &icmp_v4(error));
                assert_eq!(flows.route(&err), Some(owner));
            }
        }
        let a: Ipv6Addr = "2001:2::1".parse().unwrap();
        let b: Ipv6Addr = "2001:2::2".parse().unwrap();
        let sent = v6(TCP, b, a, &tcp_ports(40000, 22));
        let error = IcmpRepr::PacketTooBig {
            mtu: 1280,
            invoking: &sent[..48],
        };
        let mut icmp = vec![0u8; error.buffer_len()];
        error.emit_v6(&mut icmp, a, b);
        let err = v6(ICMPV6, a, b, &icmp);
        assert_eq!(
            flows.route(&err),
            Some(flows.owner(sa("[2001:2::2]:40000"), sa("[2001:2::1]:22")))
        );
        // A quoted datagram is shard 0's, where UDP lives.
        let sent = v4(
            UDP,
            [198, 18, 0, 2],
            [198, 18, 0, 1],
            &[0, 53, 0, 53, 0, 8, 0, 0],
        );
        let unreachable = IcmpRepr::DstUnreachable {
            code: 3,
            invoking: &sent,
        };
        let err = v4(
            ICMP,
            [198, 18, 0, 1],
            [198, 18, 0, 2],
            &icmp_v4(unreachable),
        );
        assert_eq!(flows.route(&err), Some(0));
        // An echo request is anyone's; so is a quote too short to carry ports.
        let echo = IcmpRepr::EchoRequest {
            ident: 1,
            seq_no: 1,
            data: b"ping",
        };
        let echo = v4(ICMP, [198, 18, 0, 1], [198, 18, 0, 2], &icmp_v4(echo));
        assert_eq!(flows.route(&echo), None);
        let short = IcmpRepr::DstUnreachable {
            code: 3,
            invoking: &[],
        };
        let short = v4(ICMP, [198, 18, 0, 1], [198, 18, 0, 2], &icmp_v4(short));
        assert_eq!(flows.route(&short), None);
    }

    /// What the core would drop or ignore on any shard stays where it arrived: an ICMP error
    /// whose checksum fails, and the types the core does not act on (a redirect here).
    #[test]
    fn icmp_the_core_does_not_act_on_stays_where_it_arrived() {
        let flows = Flows::new(2);
        let sent = v4(TCP, [198, 18, 0, 2], [198, 18, 0, 1], &tcp_ports(1234, 80));
        let mut bad = icmp_v4(IcmpRepr::DstUnreachable {
            code: 1,
            invoking: &sent[..28],
        });
        bad[2] ^= 0xff;
        assert_eq!(
            flows.route(&v4(ICMP, [198, 18, 0, 1], [198, 18, 0, 2], &bad)),
            None
        );
        // A redirect (RFC 792 type 5) quoting the flow, its checksum made anew.
        let mut redirect = icmp_v4(IcmpRepr::DstUnreachable {
            code: 1,
            invoking: &sent[..28],
        });
        redirect[0] = 5;
        redirect[2..4].fill(0);
        let sum =
            synack_core::wire::checksum::finish(synack_core::wire::checksum::partial(&redirect));
        redirect[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(
            flows.route(&v4(ICMP, [198, 18, 0, 1], [198, 18, 0, 2], &redirect)),
            None
        );
    }

    #[test]
    fn what_does_not_parse_stays_where_it_arrived() {
        let flows = Flows::new(2);
        assert_eq!(flows.route(&[]), None);
        assert_eq!(flows.route(&[0x45, 0, 0]), None);
        assert_eq!(flows.route(&[0x60; 39]), None);
        assert_eq!(flows.route(&[0x20; 60]), None);
        // A TCP header cut before its ports.
        let cut = v4(TCP, [198, 18, 0, 1], [198, 18, 0, 2], &[0, 80]);
        assert_eq!(flows.route(&cut), None);
        // A TCP fragment (a UDP one goes to shard 0 for reassembly).
        let mut frag = v4(TCP, [198, 18, 0, 1], [198, 18, 0, 2], &tcp_ports(1, 2));
        frag[6] = 0x20;
        fix_v4_checksum(&mut frag);
        assert_eq!(flows.route(&frag), None);
        let mut frag = v4(UDP, [198, 18, 0, 1], [198, 18, 0, 2], &tcp_ports(1, 2));
        frag[6] = 0x20;
        fix_v4_checksum(&mut frag);
        assert_eq!(flows.route(&frag), Some(0));
        // An IHL below 5.
        let mut ihl = v4(TCP, [198, 18, 0, 1], [198, 18, 0, 2], &tcp_ports(1, 2));
        ihl[0] = 0x44;
        assert_eq!(flows.route(&ihl), None);
    }

    #[test]
    fn ports_for_a_shard_hash_to_it_and_cover_the_range() {
        let flows = Flows::new(2);
        let local: IpAddr = "198.18.0.2".parse().unwrap();
        let remote = sa("198.18.0.1:80");
        let range = (32768, 60999);
        for shard in 0..2 {
            let start = flows.port_start(remote, shard as u64);
            let ports: Vec<u16> = flows
                .ports_for(local, remote, shard, range, start)
                .collect();
            assert!(ports.len() > 10_000, "{}", ports.len());
            for &p in &ports {
                assert!((range.0..=range.1).contains(&p));
                assert_eq!(flows.owner(SocketAddr::new(local, p), remote), shard);
            }
            let mut sorted = ports.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), ports.len(), "each port once");
        }
        // The two shards' ports partition the range.
        let all: usize = (0..2)
            .map(|s| flows.ports_for(local, remote, s, range, 0).count())
            .sum();
        assert_eq!(all, usize::from(range.1 - range.0) + 1);
        // So they do from a start near the top of its type, where adding to it wraps.
        for start in [u32::MAX, u32::MAX - 3, u32::MAX - 28_231] {
            let mut all: Vec<u16> = (0..2)
                .flat_map(|s| flows.ports_for(local, remote, s, range, start))
                .collect();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), usize::from(range.1 - range.0) + 1, "{start}");
        }
        // No range, no ports.
        assert_eq!(flows.ports_for(local, remote, 0, (0, 10), 0).count(), 0);
        assert_eq!(flows.ports_for(local, remote, 0, (10, 9), 0).count(), 0);
        // The start moves with the counter.
        let starts: std::collections::HashSet<u32> =
            (0..16).map(|c| flows.port_start(remote, c)).collect();
        assert!(starts.len() > 1);
    }
}
