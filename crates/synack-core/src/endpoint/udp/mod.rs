//! UDP sockets (RFC 768), by handle, and the datagrams that reach no socket.
//!
//! A socket is bound to a local address: one of the stack's, or the unspecified address of
//! a family (then every stack address of that family), or in intercept mode any unicast
//! address (Linux's `IP_TRANSPARENT`). It may be connected to a peer; a connected socket
//! receives only from its peer, as Linux's does (`udp4_lib_lookup` scores a connected
//! socket's remote address as a must-match). A datagram that finds no socket:
//! - in intercept mode ([`Config::intercept`](crate::Config::intercept)) goes to the
//!   catch-all queue, read with [`Endpoint::udp_recv_intercepted`] with its original source
//!   and destination, to be answered with [`Endpoint::udp_send_from`] from any address;
//! - otherwise is answered with ICMP port unreachable (RFC 1122 §4.1.3.1: "If a datagram
//!   arrives addressed to a UDP port for which there is no pending LISTEN call, UDP SHOULD
//!   send an ICMP Port Unreachable message"), within a token bucket after Linux's
//!   `icmp_msgs_per_sec` (1000) and `icmp_msgs_burst` (50), as RFC 1812 §4.3.2.8 and RFC
//!   4443 §2.4(f) ask of ICMP errors (the same bucket holds the unreachables an
//!   application sends for intercepted SYNs: see [`Endpoint::unreachable_intercepted`]).
//!
//! Bounds: each socket's receive queue holds at most `Config::udp_recv_buffer` bytes,
//! counting each datagram's payload plus [`DATAGRAM_OVERHEAD`] (Linux charges an skb's
//! truesize against `SO_RCVBUF` likewise); the catch-all queue at most
//! [`CATCH_ALL_DATAGRAMS`] datagrams, `InterceptConfig::udp_max_per_source` (by default
//! [`CATCH_ALL_PER_SOURCE`]) from one source address, and
//! [`CATCH_ALL_BYTES`] bytes; and every queued byte is
//! counted in the endpoint's `memory`, which `Config::max_memory` caps. What does not fit is
//! dropped and counted (`drop_udp_queue_full`). Sending goes through the endpoint's
//! own-packet queue, which returns `WouldBlock` past [`SEND_QUEUE_PACKETS`] packets
//! ([`Event::UdpWritable`] follows). A payload larger than one packet of the MTU (the path's,
//! once an ICMP error lowered it: `endpoint/path_mtu.rs`) goes in IP fragments (`Endpoint::push_in_fragments`), up to [`UDP_MAX_PAYLOAD`], past which it is
//! `MessageTooLong` (EMSGSIZE); fragments that come in are reassembled
//! (`endpoint/reassembly.rs`).
//!
//! This file holds the socket table, the datagrams in and the sockets' commands. Three
//! modules add their own `impl Endpoint` blocks:
//!
//! - `multicast`: joining and leaving groups, the multicast TTL and loop, and a group's
//!   datagrams handed to every socket on their port;
//! - `intercept`: intercept mode's catch-all queue ([`Endpoint::udp_recv_intercepted`]) and
//!   sending from any address ([`Endpoint::udp_send_from`]);
//! - `icmp`: ICMP port unreachable for the datagrams nothing takes, destination unreachable
//!   for those an application answers for ([`Endpoint::udp_unreachable`]), within the ICMP
//!   limits; the ICMP
//!   errors reported to connected sockets; and Packet Too Big, which lowers a path's MTU
//!   in the table TCP shares (`endpoint/path_mtu.rs`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::demux::{ipv4_mapped, is_martian, needs_scope_id, scope_id, scoped, RecvMeta};
use super::handle::{ConnectionHandle, UdpHandle};
use super::output::Own;
use super::output::MAX_CONTROL_PACKETS;
use super::slab::Slab;
use super::table::{table, Table};
use super::{Endpoint, Event};
use crate::error::Error;
use crate::shrink::shrink_after_peak;
use crate::tcp::connection::output::HOP_LIMIT;
use crate::time::Instant;
use crate::wire::{self, udp, IpProtocol, IpRepr, UdpRepr};

mod icmp;
mod intercept;
mod multicast;

pub(super) use icmp::{quote_max, unreachable_errno, unreachable_error};
pub use intercept::{
    InterceptedDatagram, CATCH_ALL_BYTES, CATCH_ALL_DATAGRAMS, CATCH_ALL_PER_SOURCE,
};
use multicast::Membership;
pub use multicast::{MAX_MEMBERSHIPS, MAX_MEMBERSHIPS_V6, MULTICAST_HOPS};

/// Bytes each queued datagram is charged beyond its payload: its addresses and queue entry,
/// in the spirit of the skb overhead Linux charges to the receive buffer.
pub const DATAGRAM_OVERHEAD: usize = 256;

/// Packets in the endpoint's own-packet queue past which sending a datagram is `WouldBlock`:
/// half the queue, so that RSTs and ICMP replies still find room.
pub const SEND_QUEUE_PACKETS: usize = MAX_CONTROL_PACKETS / 2;

/// The largest UDP payload to an IPv4 and to an IPv6 address: what the length fields allow
/// (65,535 bytes of IPv4 datagram less its 20-byte header and the UDP header; 65,535 bytes
/// of IPv6 payload less the UDP header), as Linux's `udp_sendmsg` allows. Past the MTU it
/// goes in fragments.
pub const UDP_MAX_PAYLOAD: [usize; 2] = [65_535 - 20 - 8, 65_535 - 8];

/// One datagram a socket or the catch-all queue holds.
#[derive(Debug)]
struct Datagram {
    src: SocketAddr,
    dst: SocketAddr,
    data: Bytes,
}

impl Datagram {
    fn cost(&self) -> usize {
        self.data.len() + DATAGRAM_OVERHEAD
    }
}

#[derive(Debug)]
struct Socket {
    local: SocketAddr,
    peer: Option<SocketAddr>,
    queue: VecDeque<Datagram>,
    /// Bytes charged for `queue`.
    queued: usize,
    /// A hard ICMP error for a connected socket, reported once.
    error: Option<Error>,
    /// `IP_TTL` / `IPV6_UNICAST_HOPS` of its datagrams.
    hop_limit: u8,
    /// `IP_TOS` / `IPV6_TCLASS`: the DS byte of its datagrams, ECN bits included.
    tos: u8,
    /// `SO_BROADCAST`: it may send to a broadcast address.
    broadcast: bool,
    /// The scope id a connect to a link-local peer gave (the stack's one link, which any
    /// scope id names), shown back with the peer and a link-local local address.
    scope_id: u32,
    /// An IPv6 socket bound to an IPv4-mapped address (`local` is its IPv4 one): it speaks
    /// IPv4 only and sees its addresses mapped, as Linux's.
    mapped: bool,
    /// Its groups and multicast options (`multicast`).
    multicast: Membership,
}

/// The endpoint's UDP state.
#[derive(Debug)]
pub(super) struct Udp {
    sockets: Slab<Socket>,
    by_local: Table<SocketAddr, UdpHandle>,
    /// Sockets per (IPv6?, port) over every local address: an unspecified bind takes the
    /// port from all of them.
    ports: HashMap<(bool, u16), usize>,
    next_ephemeral: u32,
    caught: VecDeque<Datagram>,
    caught_bytes: usize,
    /// Datagrams in `caught` per source (`demux::source_key`: an IPv6 source's /64).
    caught_per_source: HashMap<IpAddr, usize>,
    /// A send found the own-packet queue full: [`Event::UdpWritable`] is owed once this many
    /// packets fit (the fewest any blocked send needs: a datagram in fragments needs one a
    /// piece, and waking it sooner would only have it fail again). 0: none owed.
    send_blocked: usize,
    /// In intercept mode, datagrams no socket takes are caught for the application
    /// ([`Endpoint::set_udp_interception`]); else they are answered as at a closed port.
    catching: bool,
    /// The counters fragmented datagrams' identifications count on, one per bucket of
    /// address pairs (see [`Endpoint::fragment_ident`]).
    ident_counters: [u32; IDENT_BUCKETS],
    /// The multicast groups the host has joined: how many sockets have each (`multicast`).
    joined: HashMap<IpAddr, usize>,
}

/// How many counters the identifications of fragmented datagrams are spread over: pairs of
/// addresses in different buckets cannot see each other's datagrams in their numbers.
const IDENT_BUCKETS: usize = 64;

impl Udp {
    pub(super) fn new(seed: u64) -> Udp {
        Udp {
            sockets: Slab::default(),
            by_local: table(seed),
            ports: HashMap::new(),
            next_ephemeral: 0,
            caught: VecDeque::new(),
            caught_bytes: 0,
            caught_per_source: HashMap::new(),
            send_blocked: 0,
            catching: true,
            ident_counters: [0; IDENT_BUCKETS],
            joined: HashMap::new(),
        }
    }

    fn socket(&self, h: UdpHandle) -> Result<&Socket, Error> {
        self.sockets
            .get(&ConnectionHandle(h.0))
            .ok_or(Error::InvalidHandle)
    }

    fn socket_mut(&mut self, h: UdpHandle) -> Result<&mut Socket, Error> {
        self.sockets
            .get_mut(&ConnectionHandle(h.0))
            .ok_or(Error::InvalidHandle)
    }

    /// A socket's binding moved from `from` to `to` (a connect gave it its source): the
    /// port is counted under `to`'s family from now on.
    fn move_port(&mut self, from: SocketAddr, to: SocketAddr) {
        self.release_port(from);
        *self.ports.entry((to.is_ipv6(), to.port())).or_insert(0) += 1;
    }

    /// A socket bound to `local` let go of it.
    fn release_port(&mut self, local: SocketAddr) {
        let key = (local.is_ipv6(), local.port());
        if let Some(n) = self.ports.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.ports.remove(&key);
                shrink_after_peak(&mut self.ports, 0);
            }
        }
    }

    fn port_free(&self, ip: IpAddr, port: u16) -> bool {
        if ip.is_unspecified() {
            return !self.ports.contains_key(&(ip.is_ipv6(), port));
        }
        !self.by_local.contains_key(&SocketAddr::new(ip, port))
            && !self
                .by_local
                .contains_key(&SocketAddr::new(unspecified(ip.is_ipv6()), port))
    }
}

/// Whether a datagram from `remote` is for a socket connected to `peer`: from the peer's
/// address, and from its port unless that is 0. A connect to port 0 restricts the address
/// alone, as Linux's `compute_score` matches the remote port only when `inet_dport` is set.
fn peer_matches(peer: SocketAddr, remote: SocketAddr) -> bool {
    peer.ip() == remote.ip() && (peer.port() == 0 || peer.port() == remote.port())
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl Endpoint {
    // ---------------------------------------------------------------------------------------
    // Input
    // ---------------------------------------------------------------------------------------

    /// A UDP datagram addressed to us (or, in intercept mode, to any unicast address).
    pub(super) fn handle_udp(
        &mut self,
        now: Instant,
        ip: &IpRepr,
        payload: &[u8],
        meta: RecvMeta,
        packet: &[u8],
    ) {
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let repr = match UdpRepr::parse(payload, src, dst, meta.checksum_verified) {
            Ok(repr) => repr,
            Err(e) => return self.count_wire_error(e),
        };
        // RFC 1122 §3.2.1.3: a datagram from a broadcast or multicast source is discarded.
        if !self.is_unicast(src) {
            self.stats.drop_malformed += 1;
            return;
        }
        self.stats.udp_datagrams_in += 1;
        let local = SocketAddr::new(dst, repr.dst_port);
        let remote = SocketAddr::new(src, repr.src_port);
        if self.is_broadcast(dst) {
            // Nothing answers a broadcast (RFC 1122 §3.2.2: no ICMP error about a datagram
            // to a broadcast address).
            if !self.udp_deliver_broadcast(local, remote, repr.payload) {
                self.stats.drop_udp_no_socket += 1;
            }
            return;
        }
        if dst.is_multicast() {
            // A group the host has joined (the demux took it in): see `multicast`.
            if self.udp_deliver_to_group(local, remote, repr.payload) == 0 {
                self.stats.drop_udp_no_socket += 1;
            }
            return;
        }
        if let Some(h) = self.udp_lookup(local, remote) {
            return self.udp_enqueue(h, local, remote, repr.payload);
        }
        // Port 0 names no socket, intercepted or not (a relay could not send to it).
        if self.intercepts() && self.udp.catching && local.port() != 0 {
            return self.udp_catch(local, remote, repr.payload);
        }
        self.stats.drop_udp_no_socket += 1;
        self.udp_port_unreachable(now, ip, packet);
    }

    /// Delivers a datagram to the broadcast address `local` (the link's, or
    /// 255.255.255.255): to the socket bound to that very address, else to the one bound to
    /// the unspecified address on its port (`0.0.0.0`, else a dual-stack `[::]`), as Linux
    /// delivers one (`__udp4_lib_mcast_deliver`, which matches a bound address against the
    /// destination), with no option needed to receive it; no one else takes it. Not a
    /// socket on the unspecified address once it connected: Linux's connect gives it our
    /// address to receive at (`udp_connect`, here too). Whether a socket took it.
    fn udp_deliver_broadcast(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) -> bool {
        let any = SocketAddr::new(unspecified(false), local.port());
        let any6 = SocketAddr::new(unspecified(true), local.port());
        // One bound to the broadcast address and connected takes its peer's alone.
        let bound = self.udp.by_local.get(&local).copied().filter(|&h| {
            (self.udp.socket(h)).is_ok_and(|s| s.peer.is_none_or(|p| peer_matches(p, remote)))
        });
        let socket = bound.or_else(|| {
            let h = self.udp.by_local.get(&any).or(self.udp.by_local.get(&any6));
            h.copied()
                .filter(|&h| self.udp.socket(h).is_ok_and(|s| s.peer.is_none()))
        });
        match socket {
            Some(h) => {
                self.udp_enqueue(h, local, remote, payload);
                true
            }
            None => false,
        }
    }

    /// The socket a datagram from `remote` to `local` is for: bound to `local` exactly, or to
    /// the unspecified address when `local` is one of ours; a connected one only if `remote`
    /// is its peer. An IPv4 datagram that no IPv4 socket takes goes to a socket on `[::]`
    /// (dual stack, as Linux's default `net.ipv6.bindv6only` 0), which sees its addresses
    /// IPv4-mapped.
    fn udp_lookup(&self, local: SocketAddr, remote: SocketAddr) -> Option<UdpHandle> {
        let h = match self.udp.by_local.get(&local) {
            Some(&h) => h,
            None if self.addresses.contains(&local.ip()) => {
                let any = SocketAddr::new(unspecified(local.is_ipv6()), local.port());
                let any6 = SocketAddr::new(unspecified(true), local.port());
                match self.udp.by_local.get(&any) {
                    Some(&h) => h,
                    None if local.is_ipv4() => *self.udp.by_local.get(&any6)?,
                    None => return None,
                }
            }
            None => return None,
        };
        let sock = self.udp.socket(h).ok()?;
        match sock.peer {
            Some(peer) if !peer_matches(peer, remote) => None,
            _ => Some(h),
        }
    }

    fn udp_enqueue(&mut self, h: UdpHandle, dst: SocketAddr, src: SocketAddr, data: &[u8]) {
        let limit = self.config.udp_recv_buffer;
        let cost = data.len() + DATAGRAM_OVERHEAD;
        let over_memory = self.memory + cost > self.config.max_memory;
        let Ok(sock) = self.udp.socket_mut(h) else {
            return;
        };
        // An empty queue takes one datagram whatever its size, so a small buffer still
        // receives; past that the buffer bounds the queue.
        if over_memory || (!sock.queue.is_empty() && sock.queued + cost > limit) {
            self.stats.drop_udp_queue_full += 1;
            return;
        }
        let was_empty = sock.queue.is_empty();
        // An IPv4 datagram on a dual-stack IPv6 socket (or one bound IPv4-mapped): its
        // addresses as that socket sees them, IPv4-mapped.
        let (dst, src) = if sock.local.is_ipv6() || sock.mapped {
            (ipv4_mapped(dst), ipv4_mapped(src))
        } else {
            (dst, src)
        };
        sock.queue.push_back(Datagram {
            src,
            dst,
            data: Bytes::copy_from_slice(data),
        });
        sock.queued += cost;
        self.memory += cost;
        self.memory_changed();
        if was_empty {
            self.push_event(Event::UdpReadable(h));
        }
    }

    /// The identification of a datagram from `src` to `dst` sent in fragments: a keyed hash
    /// of the pair picks one of [`IDENT_BUCKETS`] counters and offsets it (Linux's
    /// `ip_select_ident` with its `ip_idents` counters; `ipv6_select_ident` likewise), so
    /// that one pair's datagrams count up from a point no one else can guess.
    pub(super) fn fragment_ident(&mut self, src: IpAddr, dst: IpAddr) -> u32 {
        let h = self.secrets.fragment_ident(src, dst);
        let counter = &mut self.udp.ident_counters[(h as usize) % IDENT_BUCKETS];
        *counter = counter.wrapping_add(1);
        ((h >> 32) as u32).wrapping_add(*counter)
    }

    /// The own-packet queue drained enough for a send that found it full.
    pub(super) fn udp_after_output(&mut self) {
        let need = self.udp.send_blocked;
        if need > 0 && self.control.len() + need <= SEND_QUEUE_PACKETS {
            self.udp.send_blocked = 0;
            self.push_event(Event::UdpWritable);
        }
    }

    /// A send of `packets` packets found the own-packet queue full.
    fn udp_block(&mut self, packets: usize) {
        let need = &mut self.udp.send_blocked;
        *need = if *need == 0 {
            packets
        } else {
            (*need).min(packets)
        };
    }

    // ---------------------------------------------------------------------------------------
    // Commands
    // ---------------------------------------------------------------------------------------

    /// Bind a UDP socket to `local`. The address is one of the stack's, the unspecified
    /// address of a family (every stack address of it), a multicast group (the socket takes
    /// only the group's datagrams, while the host has it joined: Linux's `inet_bind` takes a
    /// multicast address; an interface- or link-local IPv6 one needs a scope id), a
    /// broadcast address (the link's or 255.255.255.255: the socket takes only the
    /// broadcasts to it, as Linux's `inet_bind` takes one too), or in
    /// intercept mode any unicast address; otherwise `AddrNotAvailable`. Port 0 picks an
    /// ephemeral port from `Config::ephemeral_ports` (`AddrInUse` if none is free, as Linux). A port another UDP
    /// socket holds on the same address, or on the unspecified one, is `AddrInUse` (no
    /// `SO_REUSEADDR`). TCP and UDP ports are apart. An IPv4-mapped address
    /// (`::ffff:a.b.c.d`, or `::ffff:0.0.0.0` for all IPv4 addresses) binds its IPv4 one, as
    /// a Linux IPv6 socket does: the port is held against IPv4 sockets, the socket sends and
    /// receives IPv4 only, and it sees every address mapped.
    pub fn udp_bind(&mut self, local: SocketAddr) -> Result<UdpHandle, Error> {
        let mapped = super::demux::unmapped(local);
        // RFC 4007 §6: a link-local address, or an interface- or link-local group, names
        // nothing without its link (Linux's `__inet6_bind`: EINVAL without a scope id, before
        // it asks whether the address is ours).
        if let SocketAddr::V6(v6) = local {
            let scope = v6.ip().segments()[0] & 0x000f;
            let local_group = v6.ip().is_multicast() && scope <= 2;
            if (local_group || needs_scope_id(local)) && v6.scope_id() == 0 {
                return Err(Error::InvalidInput);
            }
        }
        let local = mapped.unwrap_or(local);
        let ip = local.ip();
        if !self.sends_from_route(ip) && !self.may_own(ip) {
            return Err(Error::AddrNotAvailable);
        }
        let port = match local.port() {
            0 => self.udp_ephemeral_port(ip)?,
            port if self.udp.port_free(ip, port) => port,
            _ => return Err(Error::AddrInUse),
        };
        let local = SocketAddr::new(ip, port);
        let (ch, _) = self.udp.sockets.insert_with(|| Socket {
            local,
            peer: None,
            queue: VecDeque::new(),
            queued: 0,
            error: None,
            hop_limit: HOP_LIMIT,
            tos: 0,
            broadcast: false,
            scope_id: 0,
            mapped: mapped.is_some(),
            multicast: Membership::default(),
        });
        let h = UdpHandle(ch.0);
        self.udp.by_local.insert(local, h);
        *self.udp.ports.entry((ip.is_ipv6(), port)).or_insert(0) += 1;
        tracing::debug!(udp = h.0, %local, "udp bind");
        Ok(h)
    }

    /// A port for a bind to port 0, over the range the TCP side uses, skipping ports other
    /// UDP sockets hold: the search starts anywhere in it, afresh for each bind
    /// ([`Secrets::bind_port_offset`](crate::isn::Secrets::bind_port_offset)), as Linux's
    /// `udp_lib_get_port` starts at random.
    fn udp_ephemeral_port(&mut self, ip: IpAddr) -> Result<u16, Error> {
        let (min, max) = self.config.ephemeral_ports;
        if min == 0 || max < min {
            return Err(Error::AddrNotAvailable);
        }
        let num = u32::from(max - min) + 1;
        let offset = self.secrets.bind_port_offset(ip, self.udp.next_ephemeral);
        self.udp.next_ephemeral = self.udp.next_ephemeral.wrapping_add(1);
        for count in 0..num {
            let port = min + (offset.wrapping_add(count) % num) as u16;
            // Free in the other family too: a dual-stack `[::]` socket takes IPv4 on its
            // port, so an IPv4 socket given that port took the other's IPv4 traffic (and a
            // `[::]` socket given an IPv4 socket's port lost its own), where Linux's
            // `udp_lib_lport_inuse` counts a `[::]` bind as holding the port in both.
            // Explicit binds keep their documented leeway (README); a pick has no reason to
            // share.
            if self.udp.port_free(ip, port) && !self.udp.ports.contains_key(&(!ip.is_ipv6(), port))
            {
                return Ok(port);
            }
        }
        // Every port of the range is held: EADDRINUSE, as Linux's `udp_lib_get_port` fails
        // an autobind (TCP's connect says EADDRNOTAVAIL instead).
        Err(Error::AddrInUse)
    }

    /// Connect a UDP socket to `peer`: `udp_send` goes there, and only datagrams from it are
    /// received. A socket bound to the unspecified address takes the stack's first address
    /// of the peer's family as its own, as Linux picks a source at connect; an unspecified
    /// peer is this host (see `this_host`). A pending error stays for the next call, as
    /// Linux's `ip4_datagram_connect` leaves `sk_err` alone. A broadcast peer is
    /// `PermissionDenied` (Linux's EACCES without `SO_BROADCAST`).
    ///
    /// An IPv4 peer for an IPv6 socket bound to an IPv6 address is
    /// `AddressFamilyNotSupported`, as Linux's connect (its IPv4-mapped form, like a datagram
    /// to either, `NetworkUnreachable`: see `dual_stack_destination`).
    ///
    /// A link-local peer (see [`needs_scope_id`]) without a
    /// scope id is `InvalidInput` (Linux's EINVAL); the stack has one link, which any scope
    /// id names, and `udp_peer_addr` (and `udp_local_addr`, for a link-local source) show it
    /// back.
    ///
    /// Port 0 is taken, as Linux's connect takes it: the socket then receives only from the
    /// peer's address (from any port), `udp_peer_addr` is `NotConnected` (Linux's
    /// `inet_getname` says ENOTCONN while the remote port is 0), and `udp_send` sends to
    /// port 0, which the peer answers with port unreachable, reported as
    /// `ConnectionRefused` by the next call (all measured on Linux 6.18).
    ///
    /// A dual-stack socket (`[::]`) connected to an IPv4 peer becomes IPv4-mapped: it
    /// receives at, and reads back as its local address, the mapped IPv4 source
    /// (`::ffff:a.b.c.d`), and holds the port on IPv4 only, as Linux's
    /// `__ip6_datagram_connect` sets the socket's receive address to the mapped source
    /// and rehashes it. `AddrInUse` if another socket already holds the address the
    /// connect would give this one (only this stack lets an IPv4 socket and a `[::]` one
    /// share a port, so only such a pair meets it).
    pub fn udp_connect(&mut self, h: UdpHandle, peer: SocketAddr) -> Result<(), Error> {
        // RFC 4007 §6: a link-local peer needs its link named. Linux's
        // `__ip6_datagram_connect` fails with EINVAL without a scope id (or a bound device);
        // the stack has one link, which any scope id names, shown back with the peer.
        let scope = scope_id(peer);
        if needs_scope_id(peer) && scope == 0 {
            return Err(Error::InvalidInput);
        }
        let peer = super::demux::plain(peer);
        let sock = self.udp.socket(h)?;
        let (local, mapped) = (sock.local, sock.mapped);
        // An IPv4 peer for an IPv6 socket bound to an IPv6 address: Linux's
        // `__ip6_datagram_connect` hands an AF_INET address to `__ip4_datagram_connect`,
        // which finds no IPv4 source for it, EAFNOSUPPORT (measured on Linux 6.18; a
        // datagram sent to it is ENETUNREACH, and so is a connect to its IPv4-mapped form).
        let dual = local.ip() == unspecified(true);
        if peer.is_ipv4() && local.is_ipv6() && !dual && !mapped {
            return Err(Error::AddressFamilyNotSupported);
        }
        let peer = self.dual_stack_destination(local, mapped, peer)?;
        let peer = self.this_host(local, peer);
        self.check_udp_destination(peer, sock.broadcast)?;
        let becomes_mapped = local.is_ipv4() != peer.is_ipv4();
        let new_local = if local.ip().is_unspecified() {
            let ip = self.source_for(peer.ip())?;
            SocketAddr::new(ip, local.port())
        } else {
            local
        };
        if new_local != local {
            // The unspecified bind held the port on every address of its family, but a
            // dual-stack socket beside it may have taken this address by its own connect
            // (or this socket, going IPv4-mapped, may meet an IPv4 one): never two sockets
            // on one address.
            if self.udp.by_local.contains_key(&new_local) {
                return Err(Error::AddrInUse);
            }
            self.udp.by_local.remove(&local);
            self.udp.by_local.insert(new_local, h);
            self.udp.move_port(local, new_local);
        }
        let sock = self.udp.socket_mut(h)?;
        sock.local = new_local;
        sock.mapped = mapped || becomes_mapped;
        sock.peer = Some(peer);
        sock.scope_id = if needs_scope_id(peer) { scope } else { 0 };
        Ok(())
    }

    /// Where a datagram from a socket bound to `local` to `dst` really goes: on a socket
    /// bound to `[::]` (dual stack) an IPv4-mapped or IPv4 destination is IPv4; an IPv4-mapped
    /// one from any other IPv6 socket is `NetworkUnreachable` (Linux's ENETUNREACH), and an
    /// IPv6 one from an IPv4 socket `AddressFamilyNotSupported` (EAFNOSUPPORT), as from one
    /// bound IPv4-mapped (`mapped`, whose `local` is IPv4 and which takes either form of an
    /// IPv4 destination: measured on Linux).
    fn dual_stack_destination(
        &self,
        local: SocketAddr,
        mapped: bool,
        dst: SocketAddr,
    ) -> Result<SocketAddr, Error> {
        if mapped {
            // `[::]` is this host, which a mapped socket reaches over IPv4 (Linux's
            // `udpv6_sendmsg` takes it as `::ffff:127.0.0.1`).
            let any = (dst.ip().is_unspecified() && dst.is_ipv6())
                .then(|| SocketAddr::new(unspecified(false), dst.port()));
            return super::demux::unmapped(dst)
                .or(any)
                .or(dst.is_ipv4().then_some(dst))
                .ok_or(Error::AddressFamilyNotSupported);
        }
        let dual = local.ip() == unspecified(true);
        match dst {
            SocketAddr::V6(v6) if local.is_ipv6() => match v6.ip().to_ipv4_mapped() {
                Some(v4) if dual => Ok(SocketAddr::new(v4.into(), v6.port())),
                Some(_) => Err(Error::NetworkUnreachable),
                None => Ok(dst),
            },
            SocketAddr::V4(_) if local.is_ipv6() && !dual => Err(Error::NetworkUnreachable),
            SocketAddr::V4(_) if local.is_ipv6() => Ok(dst),
            _ if local.is_ipv4() != dst.is_ipv4() => Err(Error::AddressFamilyNotSupported),
            _ => Ok(dst),
        }
    }

    /// An unspecified `dst` (after `dual_stack_destination`) as this host, from a socket
    /// bound to `local` (see [`resolve_unspecified`](crate::endpoint::resolve_unspecified)):
    /// Linux loops such a datagram back, as it connects a socket to it. A socket bound to a
    /// group has no source address of its own (Linux's `inet_bind` leaves it unset), so
    /// this host is then the stack's first address of the family.
    fn this_host(&self, local: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let bound = Some(local.ip()).filter(|&ip| !self.sends_from_route(ip));
        crate::endpoint::resolve_unspecified(dst, bound, &self.addresses)
    }

    /// Whether a socket bound to `ip` has no source address of its own, and sends from the
    /// route's: bound to the unspecified address, to a group or to a broadcast address
    /// (Linux's `inet_bind` leaves `inet_saddr` unset for the last two).
    fn sends_from_route(&self, ip: IpAddr) -> bool {
        ip.is_unspecified() || ip.is_multicast() || self.is_broadcast(ip)
    }

    /// Whether a datagram may go to `dst` (after `dual_stack_destination` and `this_host`):
    /// `PermissionDenied` for a broadcast address unless `broadcast` (the sending socket's
    /// `SO_BROADCAST`: Linux's EACCES), `InvalidInput` for an address no datagram goes to,
    /// and `NetworkUnreachable`
    /// for an unspecified address (left so only when the stack has no address of its
    /// family) or a loopback, 0/8 or IPv4-mapped address, as TCP's connect
    /// refuses them (`is_martian`): such a datagram would go out on the link, which never
    /// delivers it. One of the stack's own addresses is looped back (`poll_transmit`).
    fn check_udp_destination(&self, dst: SocketAddr, broadcast: bool) -> Result<(), Error> {
        if self.is_broadcast(dst.ip()) {
            if !broadcast {
                return Err(Error::PermissionDenied);
            }
            return Ok(());
        }
        // This host, when the stack has no address of the family: no route, as for `::1`.
        if dst.ip().is_unspecified() {
            return Err(Error::NetworkUnreachable);
        }
        if !(self.is_unicast(dst.ip()) || dst.ip().is_multicast()) {
            return Err(Error::InvalidInput);
        }
        if is_martian(dst.ip()) {
            return Err(Error::NetworkUnreachable);
        }
        Ok(())
    }

    /// The stack address of `dst`'s family that a datagram to it leaves from (`dst` itself
    /// if it is ours, as Linux's local route has it): `NetworkUnreachable` if the stack has
    /// none of that family (Linux has no route then).
    fn source_for(&self, dst: IpAddr) -> Result<IpAddr, Error> {
        if self.addresses.contains(&dst) {
            return Ok(dst);
        }
        self.addresses
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == dst.is_ipv4())
            .ok_or(Error::NetworkUnreachable)
    }

    /// Send `payload` as one datagram to `dst`, from the socket's address. Returns its
    /// length; past the MTU it goes in fragments. Errors: a pending ICMP error (once),
    /// `MessageTooLong` past [`UDP_MAX_PAYLOAD`], `WouldBlock` when the own-packet queue is full
    /// ([`Event::UdpWritable`] follows), `PermissionDenied` for a broadcast destination
    /// without [`udp_set_broadcast`](Self::udp_set_broadcast) (Linux's EACCES),
    /// `InvalidInput` for a port 0, `AddressFamilyNotSupported` for another family than the
    /// socket's (see `dual_stack_destination`), `NetworkUnreachable` for a loopback or 0/8
    /// destination. One of our own addresses is looped back inside the endpoint, and so is
    /// the unspecified one (this host, as on Linux). A group's datagram leaves with the
    /// multicast TTL and loops back to the own members (see `multicast`).
    pub fn udp_send_to(
        &mut self,
        h: UdpHandle,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<usize, Error> {
        self.udp_send_dst(h, dst, payload, true)
    }

    /// [`udp_send_to`](Self::udp_send_to), to a destination the call gave (`given`), or to
    /// the connected peer. Only a given one may not be port 0 (Linux's `udp_sendmsg`: EINVAL,
    /// after the family's check); a peer connected at port 0 is sent to there, as Linux's.
    /// The pending error comes after the arguments' and the route's checks, as Linux's
    /// `sock_error` is read only once the datagram is being built (`sock_alloc_send_skb`).
    fn udp_send_dst(
        &mut self,
        h: UdpHandle,
        dst: SocketAddr,
        payload: &[u8],
        given: bool,
    ) -> Result<usize, Error> {
        let sock = self.udp.socket(h)?;
        let (local, marks, broadcast) = (sock.local, (sock.hop_limit, sock.tos), sock.broadcast);
        let (mapped, loops, hops) = (sock.mapped, sock.multicast.loop_back, sock.multicast.hops);
        // The loop is the socket's family's option, the TTL the datagram's (Linux's
        // `sk_mc_loop` reads IPV6_MULTICAST_LOOP on any IPv6 socket; an IPv4 datagram
        // takes IP_MULTICAST_TTL).
        let loops = loops[usize::from(local.is_ipv6() || mapped)];
        let dst = self.dual_stack_destination(local, mapped, super::demux::plain(dst))?;
        if given && dst.port() == 0 {
            return Err(Error::InvalidInput);
        }
        let dst = self.this_host(local, dst);
        self.check_udp_destination(dst, broadcast)?;
        // A socket bound to a group or a broadcast address sends from an address of ours,
        // as Linux's sends from the route's source.
        let src = if self.sends_from_route(local.ip()) {
            SocketAddr::new(self.source_for(dst.ip())?, local.port())
        } else {
            local
        };
        if let Some(e) = self.udp.socket_mut(h)?.error.take() {
            return Err(e);
        }
        if !dst.ip().is_multicast() {
            let sent = self.udp_emit(src, dst, payload, marks)?;
            // A broadcast is for this host too: Linux's `ip_mc_output` loops a copy of each
            // back (RTCF_BROADCAST), whatever the multicast loop option says.
            if self.is_broadcast(dst.ip()) {
                self.udp_deliver_broadcast(dst, src, payload);
            }
            return Ok(sent);
        }
        let hops = hops[usize::from(dst.is_ipv6())];
        // A TTL of 0 keeps the datagram on this host: only the loop has it (Linux's
        // `ip_mc_output` and `ip6_finish_output2` drop it before the device).
        let sent = match hops {
            0 if payload.len() > UDP_MAX_PAYLOAD[usize::from(dst.is_ipv6())] => {
                return Err(Error::MessageTooLong)
            }
            0 => payload.len(),
            _ => self.udp_emit(src, dst, payload, (hops, marks.1))?,
        };
        if loops && self.udp_joined(dst.ip()) {
            self.udp_deliver_to_group(dst, src, payload);
        }
        Ok(sent)
    }

    /// `IP_TTL` / `IPV6_UNICAST_HOPS`: the TTL or hop limit of the socket's datagrams from
    /// now on (64 until set; any value goes, as for
    /// [`Endpoint::set_hop_limit`](crate::Endpoint::set_hop_limit)).
    pub fn udp_set_hop_limit(&mut self, h: UdpHandle, hop_limit: u8) -> Result<(), Error> {
        self.udp.socket_mut(h)?.hop_limit = hop_limit;
        Ok(())
    }

    /// The socket's TTL or hop limit.
    pub fn udp_hop_limit(&self, h: UdpHandle) -> Result<u8, Error> {
        Ok(self.udp.socket(h)?.hop_limit)
    }

    /// `IP_TOS` / `IPV6_TCLASS`: the DS byte of the socket's datagrams from now on (0 until
    /// set). All eight bits are the application's, ECN's two included: unlike TCP's, a UDP
    /// socket's ECN codepoint is its own to choose (RFC 3168 §5; RFC 9000 §13.4 has QUIC set
    /// ECT on its datagrams), and Linux masks the ECN bits for stream sockets only.
    pub fn udp_set_tos(&mut self, h: UdpHandle, tos: u8) -> Result<(), Error> {
        self.udp.socket_mut(h)?.tos = tos;
        Ok(())
    }

    /// The socket's DS byte, as [`udp_set_tos`](Self::udp_set_tos) set it.
    pub fn udp_tos(&self, h: UdpHandle) -> Result<u8, Error> {
        Ok(self.udp.socket(h)?.tos)
    }

    /// `SO_BROADCAST`: whether the socket may send to (and connect to) a broadcast address,
    /// the limited one (255.255.255.255) or the link's
    /// ([`Config::broadcast_addresses`](crate::Config::broadcast_addresses)); without it
    /// that is `PermissionDenied`, as Linux's EACCES. Receiving a broadcast needs no option:
    /// it goes to the socket bound to the unspecified address on its port.
    pub fn udp_set_broadcast(&mut self, h: UdpHandle, broadcast: bool) -> Result<(), Error> {
        self.udp.socket_mut(h)?.broadcast = broadcast;
        Ok(())
    }

    /// Whether [`udp_set_broadcast`](Self::udp_set_broadcast) turned broadcast on.
    pub fn udp_broadcast(&self, h: UdpHandle) -> Result<bool, Error> {
        Ok(self.udp.socket(h)?.broadcast)
    }

    /// Send to the connected peer; `DestinationRequired` if there is none (its kind is
    /// `NotConnected`). As [`Endpoint::udp_send_to`] otherwise.
    pub fn udp_send(&mut self, h: UdpHandle, payload: &[u8]) -> Result<usize, Error> {
        // Linux's `udp_sendmsg` without a destination: EDESTADDRREQ.
        let peer = self.udp.socket(h)?.peer.ok_or(Error::DestinationRequired)?;
        self.udp_send_dst(h, peer, payload, false)
    }

    /// The largest payload a datagram to an address of this family can carry unfragmented:
    /// the MTU less the IP and UDP headers. A larger one, up to [`UDP_MAX_PAYLOAD`], goes in
    /// fragments.
    pub fn udp_max_payload(&self, v6: bool) -> usize {
        let ip = if v6 { 40 } else { 20 };
        self.config.get_mtu().saturating_sub(ip + udp::HEADER_LEN)
    }

    /// Queues one datagram from `src` to `dst` (which `check_udp_destination` passed), its
    /// IP header marked with the sending socket's `(hop limit, DS byte)`.
    fn udp_emit(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
        (hop_limit, tos): (u8, u8),
    ) -> Result<usize, Error> {
        let v6 = dst.is_ipv6();
        if payload.len() > UDP_MAX_PAYLOAD[usize::from(v6)] {
            return Err(Error::MessageTooLong);
        }
        // A datagram larger than the MTU goes in fragments, as Linux sends one from a socket
        // with the default IP_PMTUDISC_WANT (`ip_fragment`, `ip6_fragment`); they must all
        // fit the own-packet queue's send bound at once. The MTU is the path's, where an
        // ICMP error lowered it (`endpoint/path_mtu.rs`), else the link's.
        let (mtu, locked) = match self.path_mtus.get(dst.ip()) {
            Some((mtu, locked)) => (usize::from(mtu), locked),
            None => (self.config.get_mtu(), false),
        };
        let ip_header = if v6 { 40 } else { 20 };
        let whole = payload.len() <= mtu.saturating_sub(ip_header + udp::HEADER_LEN);
        let pieces = if whole {
            1
        } else {
            let Some(per) = wire::fragment::piece_data(mtu, ip_header, v6) else {
                return Err(Error::MessageTooLong);
            };
            (udp::HEADER_LEN + payload.len()).div_ceil(per)
        };
        if pieces > SEND_QUEUE_PACKETS {
            return Err(Error::MessageTooLong);
        }
        if self.control.len() + pieces > SEND_QUEUE_PACKETS {
            self.udp_block(pieces);
            return Err(Error::WouldBlock);
        }
        let repr = UdpRepr {
            src_port: src.port(),
            dst_port: dst.port(),
            payload,
        };
        let ip = IpRepr::new(
            src.ip(),
            dst.ip(),
            IpProtocol::Udp,
            repr.buffer_len(),
            hop_limit,
        )
        .map_err(|_| Error::InvalidInput)?;
        let hl = ip.header_len();
        let mut buf = vec![0u8; ip.buffer_len()];
        let marks = wire::ip::IpMarks {
            ds: tos,
            hop_limit,
            ident: 0,
            // A locked IPv4 path (a report below 552) takes its datagrams without DF.
            dont_frag: whole && !locked,
        };
        ip.emit_marked(&mut buf[..hl], marks);
        // Always a full checksum (see `UdpRepr::emit`).
        repr.emit(&mut buf[hl..], src.ip(), dst.ip());
        if whole {
            if !self.push_control(buf, Own::Datagram) {
                return Err(Error::WouldBlock);
            }
            return Ok(payload.len());
        }
        if !self.push_in_fragments(buf, (src.ip(), dst.ip()), mtu, Own::Datagram) {
            return Err(Error::WouldBlock);
        }
        Ok(payload.len())
    }

    /// Take the next datagram: copies it into `buf` (truncated to it; the rest is
    /// discarded, as `recv_from` does) and returns the bytes copied and the sender.
    /// `WouldBlock` when none is queued ([`Event::UdpReadable`] follows); a pending ICMP
    /// error first, once.
    pub fn udp_recv_from(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), Error> {
        let d = self.udp_take(h)?;
        let n = d.data.len().min(buf.len());
        buf[..n].copy_from_slice(&d.data[..n]);
        Ok((n, d.src))
    }

    /// `MSG_PEEK`: the next datagram copied into `buf` (truncated) with its sender, left
    /// queued for the next receive. As [`Endpoint::udp_recv_from`] otherwise: `WouldBlock`
    /// when none is queued, and a pending ICMP error first, taken (Linux's `sock_error`
    /// clears it on a peek too).
    pub fn udp_peek_from(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), Error> {
        let sock = self.udp.socket_mut(h)?;
        if let Some(e) = sock.error.take() {
            return Err(e);
        }
        let d = sock.queue.front().ok_or(Error::WouldBlock)?;
        let n = d.data.len().min(buf.len());
        buf[..n].copy_from_slice(&d.data[..n]);
        Ok((n, d.src))
    }

    /// Take the next datagram whole, without a copy: `(payload, source, destination)`. As
    /// [`Endpoint::udp_recv_from`] otherwise.
    pub fn udp_recv(&mut self, h: UdpHandle) -> Result<(Bytes, SocketAddr, SocketAddr), Error> {
        let d = self.udp_take(h)?;
        Ok((d.data, d.src, d.dst))
    }

    fn udp_take(&mut self, h: UdpHandle) -> Result<Datagram, Error> {
        let sock = self.udp.socket_mut(h)?;
        if let Some(e) = sock.error.take() {
            return Err(e);
        }
        let d = sock.queue.pop_front().ok_or(Error::WouldBlock)?;
        sock.queued -= d.cost();
        self.memory -= d.cost();
        self.memory_changed();
        Ok(d)
    }

    /// Whether a datagram is queued: readable, as Linux's `udp_poll` says `EPOLLIN`. A
    /// pending ICMP error alone is not (it is `EPOLLERR`: [`udp_error_pending`]), though
    /// `udp_recv_from` reports it first either way.
    ///
    /// [`udp_error_pending`]: Endpoint::udp_error_pending
    pub fn udp_recv_ready(&self, h: UdpHandle) -> Result<bool, Error> {
        Ok(!self.udp.socket(h)?.queue.is_empty())
    }

    /// Whether a datagram sent now would be queued: the own-packet queue is under its bound
    /// ([`SEND_QUEUE_PACKETS`]). When it is not, [`Event::UdpWritable`] follows once it
    /// drains, as after a send refused with `WouldBlock`.
    pub fn udp_send_ready(&mut self) -> bool {
        let ready = self.control.len() < SEND_QUEUE_PACKETS;
        if !ready {
            self.udp_block(1);
        }
        ready
    }

    /// Whether an ICMP error waits for the socket's next call (`udp_take_error` takes it).
    pub fn udp_error_pending(&self, h: UdpHandle) -> Result<bool, Error> {
        Ok(self.udp.socket(h)?.error.is_some())
    }

    /// The socket's pending error (a connected socket's ICMP error), taken: `SO_ERROR`. The
    /// next send or receive would have reported it once instead.
    pub fn udp_take_error(&mut self, h: UdpHandle) -> Result<Option<Error>, Error> {
        Ok(self.udp.socket_mut(h)?.error.take())
    }

    /// Close a UDP socket: its queued datagrams are dropped and its port is free again.
    pub fn udp_close(&mut self, h: UdpHandle) -> Result<(), Error> {
        let sock = self
            .udp
            .sockets
            .remove(&ConnectionHandle(h.0))
            .ok_or(Error::InvalidHandle)?;
        self.memory -= sock.queued;
        self.memory_changed();
        self.udp.by_local.remove(&sock.local);
        shrink_after_peak(&mut self.udp.by_local, 0);
        for &group in &sock.multicast.groups {
            self.udp_host_leaves(group);
        }
        self.udp.release_port(sock.local);
        Ok(())
    }

    /// The socket's local address (after `udp_connect`, the address it sends from); bound
    /// IPv4-mapped, mapped.
    pub fn udp_local_addr(&self, h: UdpHandle) -> Result<SocketAddr, Error> {
        let sock = self.udp.socket(h)?;
        Ok(match sock.mapped {
            true => ipv4_mapped(sock.local),
            false => scoped(sock.local, sock.scope_id),
        })
    }

    /// The connected peer; `NotConnected` if there is none, or if it was connected to port
    /// 0 (Linux's `inet_getname` and `inet6_getname`: ENOTCONN without a remote port). An
    /// IPv4 peer of a dual-stack IPv6 socket reads IPv4-mapped.
    pub fn udp_peer_addr(&self, h: UdpHandle) -> Result<SocketAddr, Error> {
        let sock = self.udp.socket(h)?;
        let peer = sock.peer.filter(|p| p.port() != 0);
        let peer = peer.ok_or(Error::NotConnected)?;
        Ok(if sock.local.is_ipv6() || sock.mapped {
            scoped(ipv4_mapped(peer), sock.scope_id)
        } else {
            peer
        })
    }

    /// How many UDP sockets are open.
    pub fn udp_socket_count(&self) -> usize {
        self.udp.sockets.len()
    }
}
