//! ICMP for UDP: port unreachable for a datagram no socket takes, destination unreachable
//! for one an application answers for ([`Endpoint::udp_unreachable`]), within the endpoint's
//! ICMP token bucket; and the destination unreachable errors reported to the connected
//! sockets that drew them.
//!
//! A hard ICMP destination unreachable about a datagram a connected socket sent (port or
//! protocol unreachable: `ConnectionRefused`; the administratively prohibited and unknown
//! network or host codes: `NetworkUnreachable` or `HostUnreachable`) fails that socket's
//! next `recv` or `send` once, as Linux reports a hard ICMP error on a connected UDP socket
//! (`__udp4_lib_err`: only hard errors, only when connected, without `IP_RECVERR`). Soft
//! ones (network or host unreachable, fragmentation needed) are not reported; the table is
//! at `unreachable_error`.

use std::net::{IpAddr, SocketAddr};

use crate::endpoint::output::Own;
use crate::endpoint::{Endpoint, Event, Unreachable};
use crate::error::Error;
use crate::tcp::connection::output::HOP_LIMIT;
use crate::time::Instant;
use crate::wire::{self, IcmpRepr, IpProtocol, IpRepr, UdpRepr};

/// The most of the offending datagram an ICMP error quotes: RFC 1812 §4.3.2.3 lets an IPv4
/// error grow to 576 bytes, RFC 4443 §2.4(c) an ICMPv6 one to the IPv6 minimum MTU (1280).
pub(in crate::endpoint) fn quote_max(v6: bool) -> usize {
    if v6 {
        1280 - 40 - 8
    } else {
        576 - 20 - 8
    }
}

impl Endpoint {
    /// RFC 1122 §4.1.3.1: ICMP port unreachable (v4 type 3 code 3, RFC 792; v6 type 1 code 4,
    /// RFC 4443 §3.1) from the address the datagram was sent to, quoting it, within the
    /// ICMP rate limit.
    ///
    /// The datagram is already counted under `drop_udp_no_socket`: an answer that finds the
    /// own-packet queue full is counted apart (not as a second drop, `Stats` counts each
    /// packet under one `drop_*` reason) and checked for first, so that it spends no
    /// rate-limit token.
    pub(super) fn udp_port_unreachable(&mut self, now: Instant, ip: &IpRepr, packet: &[u8]) {
        self.udp_unreachable_for(now, ip, packet, Unreachable::Port);
    }

    /// [`udp_port_unreachable`](Self::udp_port_unreachable) with the code for `why`, counted
    /// and limited as it is.
    fn udp_unreachable_for(&mut self, now: Instant, ip: &IpRepr, packet: &[u8], why: Unreachable) {
        if self.control_full() {
            self.stats.udp_port_unreachable_queue_full += 1;
            return;
        }
        if !self.icmp_allowed(now, ip.src_addr()) {
            self.stats.udp_port_unreachable_limited += 1;
            return;
        }
        let v6 = matches!(ip, IpRepr::Ipv6(_));
        let quote = &packet[..packet.len().min(quote_max(v6))];
        let error = IcmpRepr::DstUnreachable {
            code: why.icmp_code(v6),
            invoking: quote,
        };
        self.send_icmp(ip.dst_addr(), ip.src_addr(), &error, Own::PortUnreachable);
    }

    /// Whether an ICMP error to `peer` may go now, within the endpoint's limits (see
    /// `icmp_limit`: six to a destination, then one a second; fifty at once in all, then a
    /// thousand a second); if so it is charged to them.
    pub(in crate::endpoint) fn icmp_allowed(&mut self, now: Instant, peer: IpAddr) -> bool {
        self.icmp_limit.allow(now, peer, &self.secrets)
    }

    /// An ICMP error quoting a datagram we sent, `error` if hard (a destination unreachable's
    /// from [`unreachable_error`], a parameter problem's EPROTO), `None` if soft: reported to
    /// the connected socket that sent it if Linux would report it there. Linux reports only
    /// "hard" (fatal) errors on a socket without `IP_RECVERR`, and only once connected
    /// (`__udp4_lib_err`, `__udp6_lib_err`), and classes them in `icmp_err_convert`
    /// (net/ipv4/icmp.c) and `icmpv6_err_convert` (net/ipv6/icmp.c). Soft errors (RFC 1122
    /// §3.2.2.1: network, host and source-route unreachable are transient) and unconnected
    /// sockets hear nothing; the message is counted under `drop_other`.
    pub(in crate::endpoint) fn udp_icmp_error(&mut self, error: Option<Error>, invoking: &[u8]) {
        let Some((osrc, sport, odst, dport)) = wire::icmp::invoking_udp(invoking) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let Some(error) = error else {
            self.stats.drop_other += 1;
            return;
        };
        let remote = SocketAddr::new(odst, dport);
        let h = match self.udp_lookup(SocketAddr::new(osrc, sport), remote) {
            Some(h) => h,
            None => {
                self.stats.drop_other += 1;
                return;
            }
        };
        let Ok(sock) = self.udp.socket_mut(h) else {
            return;
        };
        if !sock
            .peer
            .is_some_and(|peer| super::peer_matches(peer, remote))
        {
            self.stats.drop_other += 1;
            return;
        }
        sock.error = Some(error);
        self.push_event(Event::UdpReadable(h));
    }

    /// A Packet Too Big (IPv4: fragmentation needed) quoting a datagram one of our sockets
    /// sent: the path MTU to its destination goes down for `Config::pmtu_expires`, and
    /// later datagrams to it larger than that go in fragments (see `path_mtu`), as Linux's
    /// `__udp4_lib_err` and `__udp6_lib_err` update the route (`ipv4_sk_update_pmtu`,
    /// `ip6_sk_update_pmtu`) for the socket the quote names. A quote no socket of ours
    /// sent (its source not ours, or no socket on that port for that peer) is ignored
    /// (`drop_other`), as is a report that lowers nothing. In intercept mode a relay
    /// answers from the flows' original destinations with no socket
    /// ([`Endpoint::udp_send_from`]), as a TPROXY relay answers from a transparent socket
    /// whose route a report lowers all the same: a quote from any address the stack
    /// answers for is taken, so that a large reply through a narrower hop is not lost at
    /// it every time.
    pub(in crate::endpoint) fn udp_packet_too_big(
        &mut self,
        now: Instant,
        mtu: u32,
        invoking: &[u8],
    ) {
        let Some((osrc, sport, odst, dport)) = wire::icmp::invoking_udp(invoking) else {
            self.stats.drop_malformed += 1;
            return;
        };
        let local = SocketAddr::new(osrc, sport);
        let remote = SocketAddr::new(odst, dport);
        if !self.may_own(osrc) || (!self.intercepts() && self.udp_lookup(local, remote).is_none()) {
            self.stats.drop_other += 1;
            return;
        }
        let link = self.config.get_mtu();
        let expires = now + self.config.pmtu_expires;
        if !self.path_mtus.lower(odst, mtu, link, expires) {
            self.stats.drop_other += 1;
        }
    }

    /// Answers a datagram from `to` to `from` with ICMP destination unreachable from `from`,
    /// with the code for `why` (port unreachable, v4 type 3 code 3 and v6 type 1 code 4, is
    /// what a closed port at `from` would answer), quoting such a datagram (its IP and UDP
    /// headers, which is what the sender's stack matches its socket by: Linux's
    /// `__udp4_lib_err`), within the ICMP rate limit. For a proxy whose upstream socket
    /// learnt of a hard ICMP error (`ECONNREFUSED`; `EHOSTUNREACH` or `EACCES`, which only
    /// an administratively prohibited code makes hard), so that the client's connected
    /// socket learns it at once, as it would without the proxy. `from` is an own address, or
    /// in intercept mode any unicast address routed to us; `Ok(false)` when the rate limit
    /// or a full queue dropped the message (counted, as for a closed port).
    pub fn udp_unreachable(
        &mut self,
        now: Instant,
        from: SocketAddr,
        to: SocketAddr,
        why: Unreachable,
    ) -> Result<bool, Error> {
        if from.port() == 0 || to.port() == 0 || from.is_ipv4() != to.is_ipv4() {
            return Err(Error::InvalidInput);
        }
        if !self.may_own(from.ip()) || !self.is_unicast(to.ip()) {
            return Err(Error::AddrNotAvailable);
        }
        // The datagram the client sent: from it, to `from`, with no payload.
        let repr = UdpRepr {
            src_port: to.port(),
            dst_port: from.port(),
            payload: &[],
        };
        let ip = IpRepr::new(
            to.ip(),
            from.ip(),
            IpProtocol::Udp,
            repr.buffer_len(),
            HOP_LIMIT,
        )
        .map_err(|_| Error::InvalidInput)?;
        let hl = ip.header_len();
        let mut invoking = vec![0u8; ip.buffer_len()];
        ip.emit_marked(
            &mut invoking[..hl],
            wire::ip::IpMarks {
                ds: 0,
                hop_limit: HOP_LIMIT,
                ident: 0,
                dont_frag: true,
            },
        );
        repr.emit(&mut invoking[hl..], to.ip(), from.ip());
        let before =
            self.stats.udp_port_unreachable_limited + self.stats.udp_port_unreachable_queue_full;
        self.udp_unreachable_for(now, &ip, &invoking, why);
        Ok(
            self.stats.udp_port_unreachable_limited + self.stats.udp_port_unreachable_queue_full
                == before,
        )
    }
}

/// The error a connected UDP socket reports for an ICMP destination unreachable with `code`,
/// or `None` for a soft error, which it does not report. The hard codes and their errnos
/// are Linux's (`icmp_err_convert`, `icmpv6_err_convert`): the errno is [`unreachable_errno`],
/// what TCP is told too.
///
/// ICMPv4 (RFC 792, RFC 1122 §3.2.2.1, RFC 1812 §5.2.7.1):
///
/// | code | meaning | Linux errno, hard? | here |
/// |---|---|---|---|
/// | 0 | net unreachable | ENETUNREACH, soft | not reported |
/// | 1 | host unreachable | EHOSTUNREACH, soft | not reported |
/// | 2 | protocol unreachable | ENOPROTOOPT, hard | `ProtocolNotAvailable` |
/// | 3 | port unreachable | ECONNREFUSED, hard | `ConnectionRefused` |
/// | 4 | fragmentation needed | EMSGSIZE, soft | not reported (path MTU news) |
/// | 5 | source route failed | EOPNOTSUPP, soft | not reported |
/// | 6 | destination net unknown | ENETUNREACH, hard | `NetworkUnreachable` |
/// | 7 | destination host unknown | EHOSTDOWN, hard | `HostUnreachable` (nearest) |
/// | 8 | source host isolated | ENONET, hard | `NetworkUnreachable` (nearest) |
/// | 9 | net administratively prohibited | ENETUNREACH, hard | `NetworkUnreachable` |
/// | 10 | host administratively prohibited | EHOSTUNREACH, hard | `HostUnreachable` |
/// | 11, 12 | net, host unreachable for TOS | ENETUNREACH, EHOSTUNREACH, soft | not reported |
/// | 13 | communication administratively filtered | EHOSTUNREACH, hard | `HostUnreachable` |
/// | 14, 15 | precedence violation, cutoff | EHOSTUNREACH, hard | `HostUnreachable` |
/// | > 15 | unassigned | dropped by `icmp_unreach` | not reported |
///
/// ICMPv6 (RFC 4443 §3.1; table `tab_unreach`):
///
/// | code | meaning | Linux errno, hard? | here |
/// |---|---|---|---|
/// | 0 | no route | ENETUNREACH, soft | not reported |
/// | 1 | administratively prohibited | EACCES, hard | `PermissionDenied` |
/// | 2 | beyond the scope of the source | EHOSTUNREACH, soft | not reported |
/// | 3 | address unreachable | EHOSTUNREACH, soft | not reported |
/// | 4 | port unreachable | ECONNREFUSED, hard | `ConnectionRefused` |
/// | 5, 6 | source policy failed, reject route | EACCES, hard | `PermissionDenied` |
/// | > 6 | unassigned | EPROTO, hard | `ProtocolError` |
pub(in crate::endpoint) fn unreachable_error(v6: bool, code: u8) -> Option<Error> {
    let hard = if v6 {
        !matches!(code, 0 | 2 | 3)
    } else {
        matches!(code, 2 | 3 | 6..=10 | 13..=15)
    };
    hard.then(|| unreachable_errno(v6, code))
}

/// Linux's errno for an ICMP destination unreachable with `code`, soft or hard, as
/// `icmp_err_convert` and `icmpv6_err_convert` give it (see [`unreachable_error`]): what a
/// connection fails with, or reports as its soft error. [`Error`] has no variant for
/// EHOSTDOWN or ENONET: those two take the nearest.
pub(in crate::endpoint) fn unreachable_errno(v6: bool, code: u8) -> Error {
    if v6 {
        match code {
            0 => Error::NetworkUnreachable,
            1 | 5 | 6 => Error::PermissionDenied,
            2 | 3 => Error::HostUnreachable,
            4 => Error::ConnectionRefused,
            _ => Error::ProtocolError,
        }
    } else {
        match code {
            0 | 6 | 8 | 9 | 11 => Error::NetworkUnreachable,
            2 => Error::ProtocolNotAvailable,
            3 => Error::ConnectionRefused,
            4 => Error::MessageTooLong,
            5 => Error::OperationNotSupported,
            _ => Error::HostUnreachable,
        }
    }
}
