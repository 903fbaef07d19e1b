//! ICMP: echo replies, and errors mapped onto the connections they name (RFC 1122 §4.2.3.9,
//! RFC 5927 §4.1); what an error does to a connection, a lower path MTU (RFC 8201 / RFC
//! 1191) included, is the connection's business.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::demux::is_martian;
use super::output::Own;
use super::table::Tuple;
use super::udp::{unreachable_errno, unreachable_error};
use super::{Endpoint, Owner};
use crate::error::Error;
use crate::tcp::connection::output::HOP_LIMIT;
use crate::time::Instant;
use crate::wire::{self, IcmpRepr, IpProtocol, IpRepr};

/// Why a destination cannot be reached: the ICMP destination unreachable with which transparent
/// mode answers for it (an intercepted SYN, [`Endpoint::unreachable_intercepted`], or a
/// datagram, [`Endpoint::udp_unreachable`]), so that the client fails as it would on the
/// direct path, with the error a router's answer gives it.
///
/// What a Linux client makes of each (`icmp_err_convert`, `icmpv6_err_convert`): a TCP
/// connect fails on any of them, with the error named below. A connected UDP socket reports
/// only the hard ones, [`Port`](Self::Port) and [`Prohibited`](Self::Prohibited); a
/// network or host unreachable is a soft error it ignores, on either family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unreachable {
    /// No route to the destination's network: IPv4 net unreachable (RFC 792, code 0), IPv6
    /// no route to destination (RFC 4443 §3.1, code 0). TCP: `ENETUNREACH`.
    Network,
    /// The destination host does not answer: IPv4 host unreachable (code 1), IPv6 address
    /// unreachable (code 3). TCP: `EHOSTUNREACH`.
    Host,
    /// Nothing listens on the destination port: port unreachable (IPv4 code 3, IPv6 code 4).
    /// `ECONNREFUSED`. (A TCP client learns the same from an RST:
    /// [`Endpoint::refuse_intercepted`].)
    Port,
    /// A filter refuses the destination: IPv4 communication administratively prohibited
    /// (RFC 1812 §5.2.7.1, code 13), IPv6 administratively prohibited (code 1).
    /// `EHOSTUNREACH` over IPv4, `EACCES` over IPv6.
    Prohibited,
}

/// `EACCES` (Linux's asm-generic/errno-base.h, and the BSDs'): what a connect to a prohibit
/// route fails with, where `EPERM`, which std gives the same kind, is a local refusal.
const EACCES: i32 = 13;

impl Unreachable {
    /// The ICMP destination unreachable code (type 3 for IPv4, type 1 for IPv6).
    pub fn icmp_code(self, ipv6: bool) -> u8 {
        match (self, ipv6) {
            (Unreachable::Network, _) => 0,
            (Unreachable::Host, false) => 1,
            (Unreachable::Host, true) => 3,
            (Unreachable::Port, false) => 3,
            (Unreachable::Port, true) => 4,
            (Unreachable::Prohibited, false) => 13,
            (Unreachable::Prohibited, true) => 1,
        }
    }

    /// What an upstream TCP connect's error says of its destination, for a proxy that
    /// answers the client with it: `ENETUNREACH`, `EHOSTUNREACH`, `ECONNREFUSED`, and
    /// `EACCES` (a prohibit route, or an ICMP administratively prohibited). `None` for any
    /// other error, which says nothing about the destination: a timeout is no answer, and
    /// the client's own timeout is its faithful copy; `EPERM` is a refusal on the proxy's
    /// own host (a netfilter DROP, a BPF or seccomp filter), silence on the direct path.
    /// A connected UDP socket's connect and send fail in their route lookup as a TCP
    /// connect does, and are read by this too; the ICMP errors it receives take
    /// [`from_udp_io_error`](Self::from_udp_io_error).
    pub fn from_io_error(error: &std::io::Error) -> Option<Unreachable> {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::NetworkUnreachable => Some(Unreachable::Network),
            K::HostUnreachable => Some(Unreachable::Host),
            K::ConnectionRefused => Some(Unreachable::Port),
            K::PermissionDenied if error.raw_os_error() == Some(EACCES) => {
                Some(Unreachable::Prohibited)
            }
            _ => None,
        }
    }

    /// What an upstream connected UDP socket's error says of its destination, for a proxy
    /// that answers the client's datagram with it, so that the client's socket reports the
    /// same error. Such a socket learns only hard ICMP errors (Linux's `__udp4_lib_err`,
    /// `__udp6_lib_err`): `ECONNREFUSED`, a port unreachable; and `EHOSTUNREACH` or
    /// `EACCES`, which only an administratively prohibited code makes hard, passed on as
    /// [`Prohibited`](Self::Prohibited) (a host unreachable would be a soft error to the
    /// client, ignored). `None` for the rest: a hard `ENETUNREACH` has no code a client's
    /// socket reports alike.
    pub fn from_udp_io_error(error: &std::io::Error) -> Option<Unreachable> {
        use std::io::ErrorKind as K;
        match error.kind() {
            K::ConnectionRefused => Some(Unreachable::Port),
            K::HostUnreachable => Some(Unreachable::Prohibited),
            K::PermissionDenied if error.raw_os_error() == Some(EACCES) => {
                Some(Unreachable::Prohibited)
            }
            _ => None,
        }
    }
}

/// What an ICMP error says about the connection whose segment it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IcmpReport {
    /// Destination unreachable or time exceeded, as the error a connection may fail with.
    /// `drops_half_open`: whether it ends a passive connection still waiting for the
    /// handshake's last ACK (Linux's `tcp_req_err` with its `abort`). `reverts_backoff`:
    /// whether it undoes a step of the RTO's backoff (RFC 6069: an IPv4 net or host
    /// unreachable, as Linux's `tcp_v4_err` calls `tcp_ld_RTO_revert` for those two).
    Unreachable {
        error: Error,
        drops_half_open: bool,
        reverts_backoff: bool,
    },
    /// Fragmentation needed / Packet Too Big, with the next hop's MTU.
    PacketTooBig { mtu: u32 },
}

impl Endpoint {
    pub(super) fn handle_icmp(&mut self, now: Instant, ip: &IpRepr, icmp: IcmpRepr<'_>) {
        let v6 = matches!(ip, IpRepr::Ipv6(_));
        // An ICMPv4 error quotes an IPv4 packet, an ICMPv6 error an IPv6 one (what we sent
        // over that family): anything else is forged or broken.
        if let IcmpRepr::DstUnreachable { invoking, .. }
        | IcmpRepr::PacketTooBig { invoking, .. }
        | IcmpRepr::TimeExceeded { invoking, .. }
        | IcmpRepr::ParamProblem { invoking, .. } = icmp
        {
            if invoking.first().map(|b| b >> 4) != Some(if v6 { 6 } else { 4 }) {
                self.stats.drop_malformed += 1;
                return;
            }
            // No router or host answers from a broadcast or multicast address: Linux drops
            // such a packet before ICMP reads it (a martian source in `ip_route_input_slow`,
            // a multicast one in `ip6_rcv_core`), so that one datagram to a group cannot
            // have an error about it taken from every member.
            if !self.is_unicast(ip.src_addr()) {
                self.stats.drop_other += 1;
                return;
            }
        }
        match icmp {
            IcmpRepr::EchoRequest {
                ident,
                seq_no,
                data,
            } => {
                if !self.addresses.contains(&ip.dst_addr()) {
                    // Intercept mode takes ICMP to any address for its errors; an echo
                    // request to an address not ours is for the host that has it.
                    self.stats.drop_not_for_us += 1;
                    return;
                }
                if !self.is_unicast(ip.src_addr()) {
                    self.stats.drop_other += 1;
                    return;
                }
                let reply = IcmpRepr::EchoReply {
                    ident,
                    seq_no,
                    data,
                };
                self.send_icmp(ip.dst_addr(), ip.src_addr(), &reply, Own::EchoReply);
            }
            IcmpRepr::DstUnreachable { code, invoking } => {
                // RFC 792 defines codes 0 to 15 (NR_ICMP_UNREACH); Linux's tcp_v4_err ignores
                // the rest rather than guess at an error.
                if !v6 && code > 15 {
                    self.stats.drop_other += 1;
                    return;
                }
                if wire::icmp::invoking_udp(invoking).is_some() {
                    return self.udp_icmp_error(unreachable_error(v6, code), invoking);
                }
                // Linux's errno for the code, hard or soft (RFC 1122 §4.2.3.9 makes protocol
                // and port unreachable hard): what a connect fails with, or the soft error.
                let error = unreachable_errno(v6, code);
                // Which end a half-open connection, as Linux decides: for IPv4 net and host
                // unreachable (tcp_v4_err), for IPv6 the codes icmpv6_err_convert calls fatal
                // (administratively prohibited, port unreachable, policy failure, reject
                // route, and any code it does not know), not "no route", "beyond scope" or
                // "address unreachable".
                let drops_half_open = if v6 {
                    !matches!(code, 0 | 2 | 3)
                } else {
                    matches!(code, 0 | 1)
                };
                // Which revert the RTO's backoff (RFC 6069): net and host unreachable for
                // IPv4 (`tcp_v4_err`), "no route to destination" for IPv6 (`tcp_v6_err`).
                let reverts_backoff = if v6 { code == 0 } else { matches!(code, 0 | 1) };
                let report = IcmpReport::Unreachable {
                    error,
                    drops_half_open,
                    reverts_backoff,
                };
                self.icmp_error(now, invoking, report);
            }
            IcmpRepr::PacketTooBig { mtu, invoking } => {
                if wire::icmp::invoking_udp(invoking).is_some() {
                    return self.udp_packet_too_big(now, mtu, invoking);
                }
                self.icmp_error(now, invoking, IcmpReport::PacketTooBig { mtu });
            }
            IcmpRepr::TimeExceeded { invoking, .. } => {
                // Fatal to a half-open connection for IPv4 (tcp_v4_err), not for IPv6.
                let report = IcmpReport::Unreachable {
                    error: Error::HostUnreachable,
                    drops_half_open: !v6,
                    reverts_backoff: false,
                };
                self.icmp_error(now, invoking, report);
            }
            IcmpRepr::ParamProblem { invoking, .. } => {
                // EPROTO, and a hard error, for a datagram of a connected UDP socket
                // (`__udp4_lib_err`; `icmpv6_err_convert` calls it fatal).
                if wire::icmp::invoking_udp(invoking).is_some() {
                    return self.udp_icmp_error(Some(Error::ProtocolError), invoking);
                }
                // EPROTO, and fatal to a half-open connection, for IPv4 (`tcp_v4_err`, which
                // passes it to `tcp_req_err` as fatal) and IPv6 (`icmpv6_err_convert` calls
                // it fatal): a connection still opening fails with it, an open one keeps it
                // as a soft error, reported if it later times out. It may quote a packet of
                // any protocol (a peer's answer to a header it does not take, as ours in
                // `answer_unsupported`): only one about TCP or UDP concerns a socket.
                if wire::icmp::invoking_tcp(invoking).is_none() {
                    self.stats.drop_other += 1;
                    return;
                }
                let report = IcmpReport::Unreachable {
                    error: Error::ProtocolError,
                    drops_half_open: true,
                    reverts_backoff: false,
                };
                self.icmp_error(now, invoking, report);
            }
            _ => self.stats.drop_other += 1,
        }
    }

    /// A packet to one of our addresses that synack cannot process, answered as Linux answers
    /// it, within the ICMP rate limit: IPv4 with protocol unreachable (RFC 1122 §3.2.2.1,
    /// `ip_local_deliver_finish`), but IGMP, which Linux takes in silence; IPv6 with the
    /// parameter problem RFC 8200 asks for, if any (see
    /// [`wire::ipv6::parameter_problem`]). Never to a source that is not a unicast peer, and
    /// the packet is quoted as far as an ICMP error may (RFC 792, RFC 4443 §2.4 (c)).
    pub(super) fn answer_unsupported(&mut self, now: Instant, packet: &[u8]) {
        const IGMP: u8 = 2;
        let handled = |p: u8| {
            matches!(
                IpProtocol::from(p),
                IpProtocol::Tcp | IpProtocol::Udp | IpProtocol::Icmpv6
            )
        };
        let (src, dst, error) = match packet.first().map(|b| b >> 4) {
            Some(4) if packet.len() >= 20 && packet[9] != IGMP => {
                let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
                let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
                (IpAddr::V4(src), IpAddr::V4(dst), (3, 2, 0))
            }
            Some(6) if packet.len() >= 40 => {
                let Some((code, pointer)) = wire::ipv6::parameter_problem(packet, handled) else {
                    return;
                };
                let addr = |b: &[u8]| {
                    let mut o = [0u8; 16];
                    o.copy_from_slice(b);
                    IpAddr::V6(Ipv6Addr::from(o))
                };
                (
                    addr(&packet[8..24]),
                    addr(&packet[24..40]),
                    (4, code, pointer),
                )
            }
            _ => return,
        };
        self.answer_problem(now, packet, src, dst, error);
    }

    /// Answers `packet`, from `src` to `dst`, with the ICMP error `(type, code, pointer)`:
    /// destination unreachable (type 3) or ICMPv6 parameter problem (type 4, `pointer` the
    /// offset of the field at fault). Never to a source that is not a unicast peer, and
    /// within the ICMP rate limit; the packet is quoted as far as an ICMP error may.
    pub(super) fn answer_problem(
        &mut self,
        now: Instant,
        packet: &[u8],
        src: IpAddr,
        dst: IpAddr,
        error: (u8, u8, u32),
    ) {
        if !self.addresses.contains(&dst)
            || !self.is_unicast(src)
            || is_martian(src)
            || self.addresses.contains(&src)
            || self.control_full()
            || !self.icmp_allowed(now, src)
        {
            return;
        }
        let v6 = src.is_ipv6();
        let invoking = &packet[..packet.len().min(super::udp::quote_max(v6))];
        let (kind, code, pointer) = error;
        let icmp = if kind == 3 {
            IcmpRepr::DstUnreachable { code, invoking }
        } else {
            IcmpRepr::ParamProblem {
                code,
                pointer,
                invoking,
            }
        };
        self.send_icmp(dst, src, &icmp, Own::Unsupported);
    }

    /// Queue an ICMP (IPv4) or ICMPv6 message from `src` to `dst`, `own` saying what it is.
    /// Returns whether it was queued.
    pub(super) fn send_icmp(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        icmp: &IcmpRepr<'_>,
        own: Own,
    ) -> bool {
        let proto = if src.is_ipv6() {
            IpProtocol::Icmpv6
        } else {
            IpProtocol::Icmp
        };
        let Ok(out_ip) = IpRepr::new(src, dst, proto, icmp.buffer_len(), HOP_LIMIT) else {
            return false;
        };
        let hl = out_ip.header_len();
        let mut buf = vec![0u8; out_ip.buffer_len()];
        out_ip.emit(&mut buf[..hl]);
        match (src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => icmp.emit_v6(&mut buf[hl..], s, d),
            _ => icmp.emit_v4(&mut buf[hl..]),
        }
        // An echo reply to a (reassembled) request larger than the MTU goes in fragments,
        // as Linux's does; an error never needs them (it quotes at most the minimum MTU).
        if buf.len() > self.config.get_mtu() {
            let mtu = self.config.get_mtu();
            return self.push_in_fragments(buf, (src, dst), mtu, own);
        }
        self.push_control(buf, own)
    }

    /// Forget the path MTUs whose time is up (see `path_mtu.rs`).
    pub(super) fn expire_path_mtus(&mut self, now: Instant) {
        self.path_mtus.expire(now);
    }

    /// Apply an ICMP error to the connection it names (RFC 5927 §4.1: only if the quoted
    /// sequence number is one we have sent and not yet seen acknowledged).
    pub(super) fn icmp_error(&mut self, now: Instant, invoking: &[u8], report: IcmpReport) {
        // Time exceeded about a datagram: a soft error Linux does not report on a UDP socket
        // either (a datagram's Packet Too Big goes to `udp_packet_too_big`).
        if wire::icmp::invoking_udp(invoking).is_some() {
            self.stats.drop_other += 1;
            return;
        }
        let Some((osrc, sport, odst, dport, seq)) = wire::icmp::invoking_tcp(invoking) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let local = SocketAddr::new(osrc, sport);
        let remote = SocketAddr::new(odst, dport);
        let Some(&h) = self.by_tuple.get(&Tuple(local, remote)) else {
            self.stats.drop_other += 1;
            return;
        };
        let Some(slot) = self.connections.get_mut(&h) else {
            return;
        };
        let accepting_intercepted = slot.accepting_intercepted();
        let c = &mut slot.conn;
        if !c.is_unacknowledged(seq) {
            self.stats.drop_other += 1;
            return;
        }
        match report {
            IcmpReport::PacketTooBig { mtu } => {
                c.handle_packet_too_big(now, mtu);
                // And on the route, as Linux's `__ip_rt_update_pmtu`: later connections
                // to this peer, and datagrams, start from it (`path_mtu.rs`). Not an IPv6
                // report below the minimum link MTU, which `tcp_v6_err` drops before it
                // reaches the route.
                if !(remote.is_ipv6() && mtu < crate::config::IPV6_MIN_MTU as u32) {
                    let link = self.config.get_mtu();
                    let expires = now + self.config.pmtu_expires;
                    self.path_mtus.lower(remote.ip(), mtu, link, expires);
                }
            }
            // A Fast Open connection still in the accept queue fails there (the application
            // reads the SYN's data, then the error), as Linux's tcp_v4_err; once accepted it
            // is treated like any connection.
            IcmpReport::Unreachable { error, .. }
                if c.is_fast_open_child() && matches!(slot.owner, Owner::AcceptQueue(_)) =>
            {
                c.enter_closed(Some(error));
            }
            // A half-open passive connection about whose SYN-ACK such an error comes goes
            // away, as Linux's tcp_req_err drops the request: POSIX has accept() report no
            // network errors.
            IcmpReport::Unreachable {
                drops_half_open: true,
                ..
            } if slot.syn_of.is_some() && c.awaits_final_ack() && seq == c.iss() => {
                c.enter_closed(None);
            }
            // An intercepted connection being accepted (no listener: the application waits
            // on this very connection for the client's ACK) ends too, as a TPROXY
            // listener's request would, and the accept fails with the error, which says why,
            // rather than resending its SYN-ACK for a minute and failing with
            // `ConnectionAborted`. (An accepted Fast Open child, also in SYN-RECEIVED,
            // takes it as a soft error, as Linux's full socket does.)
            IcmpReport::Unreachable {
                drops_half_open: true,
                error,
                ..
            } if accepting_intercepted && seq == c.iss() => {
                c.enter_closed(Some(error));
            }
            IcmpReport::Unreachable {
                error,
                reverts_backoff,
                ..
            } => {
                if reverts_backoff {
                    c.revert_rto_backoff(now, seq);
                }
                c.handle_icmp_error(error);
            }
        }
        self.after(h);
    }
}
