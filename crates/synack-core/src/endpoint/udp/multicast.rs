//! UDP multicast (RFC 1112 host extensions, level 2 without the group-management protocol;
//! RFC 4291 §2.7 for IPv6 groups): a socket joins a group, the stack then takes in the
//! group's datagrams from the link, and a socket may send to a group.
//!
//! As Linux, membership is the host's: a group's datagrams are taken in while any socket
//! has it joined (`ip_check_mc_rcu`), or always for the groups every host belongs to (all
//! hosts, all nodes: see `always_joined`), and then go to every socket on their port, bound to
//! the group or to the unspecified address, joined or not (`IP_MULTICAST_ALL` and
//! `IPV6_MULTICAST_ALL`, both on by default; `__udp4_lib_mcast_deliver`). A datagram sent
//! to a group leaves with the multicast TTL or hop limit (1 until set, as
//! `IP_MULTICAST_TTL` and `IPV6_MULTICAST_HOPS`; at 0 it stays on this host), and, while
//! the host has the group joined and the socket's multicast loop is on (the default; an
//! IPv6 socket's is `IPV6_MULTICAST_LOOP` whatever the group's family, as Linux's
//! `sk_mc_loop`), a copy is delivered to the own sockets too (Linux's `ip_mc_output` loops
//! one back).
//!
//! What synack does not do: announce its memberships (IGMP, MLD; RFC 3376, RFC 3810). Its
//! link is a TUN whose other end is the host's own kernel, which sends a group's datagrams
//! into the TUN by its routes (or a sender's `IP_MULTICAST_IF`), not by reports. Source
//! filters (`IP_ADD_SOURCE_MEMBERSHIP`) are not offered, and a group's datagram in
//! fragments is not reassembled (as a broadcast one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{unspecified, Endpoint, Socket, UdpHandle};
use crate::error::Error;

/// IPv4 groups one socket may join: Linux's `net.ipv4.igmp_max_memberships` default; past
/// it a join is `NoBufferSpace` (ENOBUFS).
pub const MAX_MEMBERSHIPS: usize = 20;

/// IPv6 groups one socket may join. Linux counts none: `ipv6_sock_mc_join` charges each
/// membership (a 56-byte `ipv6_mc_socklist`) to the socket's option memory, and refuses
/// one past `net.core.optmem_max`, 128 KiB by default: about 2,340 groups. Linux's errno
/// there is ENOMEM (`sock_kmalloc` fails); synack answers `NoBufferSpace`, which is
/// `io::ErrorKind::OutOfMemory` as ENOMEM is, and ENOBUFS as a raw errno.
pub const MAX_MEMBERSHIPS_V6: usize = 131_072 / 56;

/// The TTL or hop limit of a datagram to a group until the socket sets one: 1, the link
/// only (RFC 1112 §6.1, RFC 3493 §5.2).
pub const MULTICAST_HOPS: u8 = 1;

/// A socket's multicast state.
#[derive(Debug, Clone)]
pub(super) struct Membership {
    /// The groups the socket joined.
    pub(super) groups: Vec<IpAddr>,
    /// `IP_MULTICAST_LOOP`, `IPV6_MULTICAST_LOOP`: by family, IPv4 first.
    pub(super) loop_back: [bool; 2],
    /// `IP_MULTICAST_TTL`, `IPV6_MULTICAST_HOPS`: by family, IPv4 first.
    pub(super) hops: [u8; 2],
}

impl Default for Membership {
    fn default() -> Membership {
        Membership {
            groups: Vec::new(),
            loop_back: [true; 2],
            hops: [MULTICAST_HOPS; 2],
        }
    }
}

/// The groups a host belongs to from the start, on its link, with no socket joining them:
/// all hosts, 224.0.0.1 (RFC 1112 §4, as Linux's `ip_mc_init_dev` joins it), and the
/// interface- and link-local all-nodes groups ff01::1 and ff02::1 (RFC 4291 §2.7.1, as
/// `ipv6_add_dev` joins them).
fn always_joined(group: IpAddr) -> bool {
    const ALL_NODES: [Ipv6Addr; 2] = [
        Ipv6Addr::new(0xff01, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    ];
    match group {
        IpAddr::V4(a) => a == Ipv4Addr::new(224, 0, 0, 1),
        IpAddr::V6(a) => ALL_NODES.contains(&a),
    }
}

/// Whether a socket may join `group`: an IPv4 group any socket (Linux takes
/// `IP_ADD_MEMBERSHIP` on an IPv6 socket too), an IPv6 group an IPv6 one, bound IPv4-mapped
/// or not (membership is the host's, whatever the socket's own address).
fn family_fits(sock: &Socket, group: IpAddr) -> bool {
    group.is_ipv4() || is_ipv6_socket(sock)
}

/// An IPv6 socket (dual stack, or bound IPv4-mapped), which takes the IPv6 options as well
/// as the IPv4 ones. An IPv4 socket has none of the IPv6 options: Linux's `do_ip_setsockopt`
/// refuses another level with ENOPROTOOPT and `do_ip_getsockopt` with EOPNOTSUPP.
fn is_ipv6_socket(sock: &Socket) -> bool {
    sock.local.is_ipv6() || sock.mapped
}

/// The error for an IPv6 option on an IPv4 socket: setting it (`set`), or reading it.
fn v6_option(sock: &Socket, v6: bool, set: bool) -> Result<(), Error> {
    match (v6 && !is_ipv6_socket(sock), set) {
        (false, _) => Ok(()),
        (true, true) => Err(Error::ProtocolNotAvailable),
        (true, false) => Err(Error::OperationNotSupported),
    }
}

impl Endpoint {
    /// `IP_ADD_MEMBERSHIP` / `IPV6_ADD_MEMBERSHIP`: the socket joins `group`, and the stack
    /// takes the group's datagrams in from then on (see the module's notes: they go to every
    /// socket on their port). `ProtocolNotAvailable` for an IPv6 group on an IPv4 socket,
    /// `InvalidInput` for an address that is not a multicast one, `AddrInUse` if the socket
    /// has it joined already and `NoBufferSpace` past [`MAX_MEMBERSHIPS`] IPv4 groups or
    /// [`MAX_MEMBERSHIPS_V6`] IPv6 ones, as Linux answers each, in this order (ENOPROTOOPT
    /// from the option's level, then EINVAL, EADDRINUSE, ENOBUFS).
    pub fn udp_join_multicast(&mut self, h: UdpHandle, group: IpAddr) -> Result<(), Error> {
        let sock = self.udp.socket_mut(h)?;
        if !family_fits(sock, group) {
            return Err(Error::ProtocolNotAvailable);
        }
        if !group.is_multicast() {
            return Err(Error::InvalidInput);
        }
        let groups = &mut sock.multicast.groups;
        if groups.contains(&group) {
            return Err(Error::AddrInUse);
        }
        let most = if group.is_ipv4() {
            MAX_MEMBERSHIPS
        } else {
            MAX_MEMBERSHIPS_V6
        };
        if groups
            .iter()
            .filter(|g| g.is_ipv4() == group.is_ipv4())
            .count()
            >= most
        {
            return Err(Error::NoBufferSpace);
        }
        groups.push(group);
        *self.udp.joined.entry(group).or_insert(0) += 1;
        tracing::debug!(udp = h.0, %group, "multicast join");
        Ok(())
    }

    /// `IP_DROP_MEMBERSHIP` / `IPV6_DROP_MEMBERSHIP`: the socket leaves `group`; the stack
    /// stops taking the group in once no socket has it joined. `AddrNotAvailable` if the
    /// socket had not joined it (Linux's EADDRNOTAVAIL), `ProtocolNotAvailable` for an IPv6
    /// group on an IPv4 socket, as for a join, and `InvalidInput` for an IPv6 address that
    /// is not a multicast one (`ipv6_sock_mc_drop` checks that first; IPv4's
    /// `ip_mc_leave_group` does not, and finds no membership).
    pub fn udp_leave_multicast(&mut self, h: UdpHandle, group: IpAddr) -> Result<(), Error> {
        let sock = self.udp.socket_mut(h)?;
        v6_option(sock, group.is_ipv6(), true)?;
        if group.is_ipv6() && !group.is_multicast() {
            return Err(Error::InvalidInput);
        }
        let at = (sock.multicast.groups.iter())
            .position(|&g| g == group)
            .ok_or(Error::AddrNotAvailable)?;
        sock.multicast.groups.swap_remove(at);
        self.udp_host_leaves(group);
        Ok(())
    }

    /// One socket's membership of `group` ended (it left, or it closed).
    pub(super) fn udp_host_leaves(&mut self, group: IpAddr) {
        if let Some(n) = self.udp.joined.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                self.udp.joined.remove(&group);
            }
        }
    }

    /// Whether the stack has `group` joined: some socket is a member, or it is a group
    /// every host belongs to.
    pub(in crate::endpoint) fn udp_joined(&self, group: IpAddr) -> bool {
        always_joined(group) || self.udp.joined.contains_key(&group)
    }

    /// `IP_MULTICAST_LOOP` (`v6` false) / `IPV6_MULTICAST_LOOP`: whether the socket's
    /// datagrams to a group the stack has joined are delivered to the own sockets too (on
    /// until set off). The socket's family picks which one counts: an IPv6 socket's (dual
    /// stack or bound IPv4-mapped) is `IPV6_MULTICAST_LOOP`, for IPv4 groups too. An IPv4
    /// socket has no IPv6 one (`ProtocolNotAvailable`; `OperationNotSupported` to read it).
    pub fn udp_set_multicast_loop(
        &mut self,
        h: UdpHandle,
        v6: bool,
        on: bool,
    ) -> Result<(), Error> {
        let sock = self.udp.socket_mut(h)?;
        v6_option(sock, v6, true)?;
        sock.multicast.loop_back[usize::from(v6)] = on;
        Ok(())
    }

    /// The socket's multicast loop for a family (see
    /// [`udp_set_multicast_loop`](Self::udp_set_multicast_loop)).
    pub fn udp_multicast_loop(&self, h: UdpHandle, v6: bool) -> Result<bool, Error> {
        let sock = self.udp.socket(h)?;
        v6_option(sock, v6, false)?;
        Ok(sock.multicast.loop_back[usize::from(v6)])
    }

    /// `IP_MULTICAST_TTL` (`v6` false) / `IPV6_MULTICAST_HOPS`: the TTL or hop limit of the
    /// socket's datagrams to a group ([`MULTICAST_HOPS`] until set). An IPv4 socket has no
    /// IPv6 one, as for the loop.
    pub fn udp_set_multicast_hops(
        &mut self,
        h: UdpHandle,
        v6: bool,
        hops: u8,
    ) -> Result<(), Error> {
        let sock = self.udp.socket_mut(h)?;
        v6_option(sock, v6, true)?;
        sock.multicast.hops[usize::from(v6)] = hops;
        Ok(())
    }

    /// The socket's multicast TTL or hop limit for a family.
    pub fn udp_multicast_hops(&self, h: UdpHandle, v6: bool) -> Result<u8, Error> {
        let sock = self.udp.socket(h)?;
        v6_option(sock, v6, false)?;
        Ok(sock.multicast.hops[usize::from(v6)])
    }

    /// A datagram from `remote` to the group and port `local`, which the stack has joined
    /// (from the link, or looped back from an own socket): a copy for each socket on the
    /// port bound to the group (if connected, only from its peer), or unconnected to the
    /// unspecified address of its family or to `[::]` (dual stack) for an IPv4 group
    /// (`__udp4_lib_mcast_deliver`, `__udp6_lib_mcast_deliver`: a socket that connects takes
    /// our address as its own, and a group's datagram no longer matches it). Returns how
    /// many took it.
    /// Nothing answers one that none takes (RFC 1122 §3.2.2: no ICMP error about a datagram
    /// to a multicast address).
    pub(super) fn udp_deliver_to_group(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        payload: &[u8],
    ) -> usize {
        let port = local.port();
        let any = SocketAddr::new(unspecified(local.is_ipv6()), port);
        let any6 = SocketAddr::new(unspecified(true), port);
        let mut takers = [Some(local), Some(any), local.is_ipv4().then_some(any6)]
            .into_iter()
            .flatten()
            .filter_map(|at| self.udp.by_local.get(&at).copied())
            .filter(|&h| {
                (self.udp.socket(h)).is_ok_and(|s| match s.peer {
                    None => true,
                    Some(peer) => s.local.ip() == local.ip() && super::peer_matches(peer, remote),
                })
            })
            .collect::<Vec<_>>();
        takers.dedup();
        for &h in &takers {
            self.udp_enqueue(h, local, remote, payload);
        }
        takers.len()
    }

    /// The groups the socket has joined.
    pub fn udp_multicast_groups(&self, h: UdpHandle) -> Result<&[IpAddr], Error> {
        Ok(&self.udp.socket(h)?.multicast.groups)
    }
}
