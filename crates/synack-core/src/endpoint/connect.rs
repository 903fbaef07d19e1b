//! The active open: `connect` and its variants, the ephemeral port search (RFC 6056) and
//! the client side of TCP Fast Open's cache.
//!
//! A connect picks the local address (the one given, or ours of the destination's family, or
//! the destination itself when it is one of ours), the port (the one given, or one from the
//! keyed ephemeral search), takes over a TIME-WAIT tuple where Linux would, makes room under
//! the memory cap and sends the SYN through the connection's own `open_active`. An
//! unspecified destination means this host ([`resolve_unspecified`]).

use std::net::{IpAddr, SocketAddr};

use super::connections::Owner;
use super::demux::{is_martian, needs_scope_id, plain, scope_id};
use super::table::Tuple;
use super::time_wait::Takeover;
use super::{ConnectionHandle, Endpoint, FastOpenCached};
use crate::error::Error;
use crate::options::{SendFlags, SocketOptions};
use crate::tcp::connection::PortClaim;
use crate::time::Instant;

/// How many counters the ephemeral ports of connects step through, each shared by the
/// destinations a keyed hash puts together (RFC 6056 §3.3.4's table): as many as Linux's
/// `table_perturb` since 5.19 (`INET_TABLE_PERTURB_ORDER` 16), 256 KiB made on the first
/// connect. With 256, as Linux had before, a server that made a device connect to a few
/// hundred of its addresses found which of them shared a counter, from ports that moved
/// by more than one, and that set, fixed by the device's key, followed the device from
/// network to network (Kol, Klein and Gilad, "Device Tracking via Linux's New TCP Source
/// Port Selection Algorithm", USENIX Security 2023).
pub(super) const EPHEMERAL_COUNTERS: usize = 1 << 16;

/// A counter moves past the port it gave by at least a keyed, per-step pseudo-random
/// `0..EPHEMERAL_JITTER`, not only by the ports it tried (Linux's "small random increments
/// to the source port", `get_random_u32_below(8)`): a server no longer learns from two
/// ports of its own how many connects shared its counter in between.
const EPHEMERAL_JITTER: u32 = 8;

/// Where a connection or datagram to `remote` goes when its address is unspecified
/// (`0.0.0.0`, `[::]`): to this host, as on Linux, where a zero IPv4 destination takes the
/// source address, or loopback (`ip_route_output_key_hash_rcu`), and an IPv6 one loopback
/// (`tcp_v6_connect`, `udpv6_sendmsg`). The stack has no loopback link, so this host is
/// `local` (a bound source address) if it has `remote`'s family, else the first of
/// `addresses` that has; the connection is then looped back inside the endpoint, and shows
/// that address as its peer (Linux's shows 127.0.0.1 or `::1`). Any other `remote`, and an
/// unspecified one of a family the stack has no address of, comes back as it is.
pub fn resolve_unspecified(
    remote: SocketAddr,
    local: Option<IpAddr>,
    addresses: &[IpAddr],
) -> SocketAddr {
    if !remote.ip().is_unspecified() {
        return remote;
    }
    let same_family = |ip: &IpAddr| ip.is_ipv4() == remote.is_ipv4() && !ip.is_unspecified();
    local
        .filter(same_family)
        .or_else(|| addresses.iter().copied().find(same_family))
        .map_or(remote, |ip| SocketAddr::new(ip, remote.port()))
}

impl Endpoint {
    /// Whether a connection or a TIME-WAIT entry holds the tuple `local` → `remote`
    /// (`__inet_check_established`). An ephemeral connect skips such a tuple but for a
    /// loopback one in TIME-WAIT, as Linux's `tcp_tw_reuse` default lets it
    /// (`loopback_time_wait_reusable`); [`connect_with`](Self::connect_with) from a port the
    /// socket bound takes a TIME-WAIT tuple over.
    pub fn tuple_in_use(&self, local: SocketAddr, remote: SocketAddr) -> bool {
        let tuple = Tuple(local, remote);
        self.by_tuple.contains_key(&tuple) || self.time_wait.contains(&tuple)
    }

    /// Whether a connection or a TIME-WAIT entry whose port a bind gave (a socket's
    /// `bind(2)`, or the listener that accepted it) uses `port`, on any address: no
    /// ephemeral connect takes such a port, as Linux's `__inet_hash_connect` skips a bind
    /// bucket that `bind(2)` made (`fastreuse >= 0`) for as long as anything is in it. A
    /// runtime whose shards share the stack's ports asks every shard.
    pub fn port_bound_by_bind(&self, port: u16) -> bool {
        self.conn_ports.bound_port(port) || self.time_wait.ports().bound_port(port)
    }

    /// Whether an ephemeral connect from `local` to `remote` may have `local`'s port: no
    /// listener or bound socket holds it, no connection or TIME-WAIT entry holds the tuple
    /// (but a loopback TIME-WAIT entry Linux would reuse: `loopback_time_wait_reusable`),
    /// and nothing from a bind uses the port (`port_bound_by_bind`).
    fn ephemeral_may_take(&self, now: Instant, local: SocketAddr, remote: SocketAddr) -> bool {
        let tuple = Tuple(local, remote);
        (!self.tuple_in_use(local, remote) || self.loopback_time_wait_reusable(now, &tuple))
            && self.find_listener(local).is_none()
            && !self.bindings.holds(local)
            && !self.port_bound_by_bind(local.port())
    }

    /// RFC 6056 §3.3.4 (Algorithm 4, "double-hash"): a per-destination offset from a keyed
    /// hash plus a counter, one of [`EPHEMERAL_COUNTERS`] that a second keyed hash of the
    /// destination picks, so ports are hard to guess and reuse of one tuple is rare. With one
    /// counter for all (Algorithm 3, as before), a server saw from two of our connects to it
    /// how many we made elsewhere in between; as Linux's `table_perturb`, it now sees only
    /// those to the destinations that share its counter.
    fn ephemeral_port(
        &mut self,
        now: Instant,
        local_ip: IpAddr,
        remote: SocketAddr,
    ) -> Result<u16, Error> {
        let (min, max) = self.config.ephemeral_ports;
        if min == 0 || max < min {
            return Err(Error::AddrNotAvailable);
        }
        let num = u32::from(max - min) + 1;
        let offset = self.secrets.port_offset(local_ip, remote);
        let index = self
            .secrets
            .port_table_index(local_ip, remote, EPHEMERAL_COUNTERS);
        if self.ephemeral_counters.is_empty() {
            self.ephemeral_counters = vec![0; EPHEMERAL_COUNTERS];
        }
        let counter = self.ephemeral_counters[index];
        for count in 0..num {
            let port = min + (counter.wrapping_add(offset).wrapping_add(count) % num) as u16;
            if self.ephemeral_may_take(now, SocketAddr::new(local_ip, port), remote) {
                // As Linux's `__inet_hash_connect`: past the ports tried, or a few more at
                // random when there were fewer (the randomness counts most when the range
                // is quiet, and nothing when it is crowded).
                let jitter = self.secrets.port_jitter(index, counter) % EPHEMERAL_JITTER;
                self.ephemeral_counters[index] = counter.wrapping_add(count.max(jitter) + 1);
                return Ok(port);
            }
        }
        Err(Error::AddrNotAvailable)
    }

    /// The TCP Fast Open cookie kept for `server`, if one of its SYN-ACKs gave one.
    pub fn fast_open_cookie(&self, server: IpAddr) -> Option<crate::wire::FastOpenCookie> {
        self.fast_open_cookies.server(server).cookie
    }

    /// Everything the client side of TCP Fast Open keeps of `server` (its cookie, its MSS,
    /// the form a cookie request takes), to be copied with
    /// [`set_fast_open_cached`](Self::set_fast_open_cached) into another endpoint that
    /// speaks from the same addresses, such as a runtime's other shards (Linux keeps one
    /// cache for the host, per network namespace). A server makes its cookie for our
    /// address, so any of them may present it.
    pub fn fast_open_cached(&self, server: IpAddr) -> Option<FastOpenCached> {
        self.fast_open_cookies.get(server)
    }

    /// Takes `cached` (from [`fast_open_cached`](Self::fast_open_cached)) as what is known
    /// of `server`, replacing what was.
    pub fn set_fast_open_cached(&mut self, server: IpAddr, cached: FastOpenCached) {
        self.fast_open_cookies.put(server, cached);
    }

    /// Open a connection to `remote` (RFC 9293 §3.10.1, active OPEN). The SYN goes out with
    /// the next `poll_transmit`; [`Event::Connected`](crate::Event::Connected) or
    /// [`Event::Closed`](crate::Event::Closed) follows.
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<ConnectionHandle, Error> {
        self.connect_with(now, remote, None, &SocketOptions::default())
    }

    /// [`Endpoint::connect`] from a chosen local address (bind before connect: an own
    /// address or the unspecified one, and a port, 0 for an ephemeral one), with a socket's
    /// options. A local address and port already connected to `remote` is
    /// `AddrNotAvailable`, as Linux's `connect(2)` fails with EADDRNOTAVAIL
    /// (`__inet_check_established`); one in TIME-WAIT with it (in the compact table, or a
    /// connection the application still holds) is taken over if that connection used
    /// timestamps, and `AddrNotAvailable` otherwise (Linux's `tcp_twsk_unique` for a bound
    /// port), and a closed one the application holds gives it up (see `may_take_over`). A
    /// loopback destination is `NetworkUnreachable` at once; one of our own addresses is
    /// looped back inside the endpoint (see [`poll_transmit`](Self::poll_transmit)), and the
    /// unspecified one means this host ([`resolve_unspecified`]), as on Linux. A link-local
    /// destination without a scope id ([`needs_scope_id`])
    /// is `InvalidInput`, as Linux's EINVAL; any scope id names the stack's one link. A port
    /// given so counts as a bind's: no ephemeral connect shares it while the connection or
    /// its TIME-WAIT entry lasts (see [`port_bound_by_bind`](Self::port_bound_by_bind)).
    /// In intercept mode the local address may be any that is routed to us
    /// ([`check_bind`](Self::check_bind)), as with IP_TRANSPARENT.
    ///
    /// With [`SocketOptions::fast_open_connect`] (`TCP_FASTOPEN_CONNECT`), the SYN asks for
    /// a TCP Fast Open cookie, or, with a cookie from an earlier connection to the server,
    /// waits for the first write and carries its first segment (see
    /// [`Endpoint::connect_fast_open`]); the connection reports
    /// [`Event::Writable`](crate::Event::Writable) at once.
    pub fn connect_with(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        opts: &SocketOptions,
    ) -> Result<ConnectionHandle, Error> {
        self.open(now, remote, local, opts, FastOpen::Off, PortOrigin::Bind)
            .map(|(h, _)| h)
    }

    /// [`connect_with`](Self::connect_with) from `local`, whose port the caller picked in an
    /// ephemeral search of its own (a runtime whose shards share the stack's ports, each
    /// searching the ports whose flows it owns). The port counts as an ephemeral connect's,
    /// as if this endpoint had picked it: another ephemeral connect may share it, and it
    /// must be one an ephemeral connect may take here (no listener or bound socket holds
    /// it, nothing holds the tuple but a loopback TIME-WAIT entry, which is taken over as
    /// the endpoint's own search would, and nothing from a bind uses the port: else
    /// `AddrNotAvailable`). The caller asks the other endpoints
    /// ([`port_bound_by_bind`](Self::port_bound_by_bind)).
    pub fn connect_from_ephemeral(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: SocketAddr,
        opts: &SocketOptions,
    ) -> Result<ConnectionHandle, Error> {
        let origin = PortOrigin::Ephemeral;
        self.open(now, remote, Some(local), opts, FastOpen::Off, origin)
            .map(|(h, _)| h)
    }

    /// The active open behind `connect_with` and `connect_fast_open`.
    fn open(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        opts: &SocketOptions,
        fast_open: FastOpen<'_>,
        origin: PortOrigin,
    ) -> Result<(ConnectionHandle, usize), Error> {
        opts.check()?;
        let mut sent = 0;
        let unscoped = needs_scope_id(remote) && scope_id(remote) == 0;
        let (remote, local) = (plain(remote), local.map(plain));
        let remote = resolve_unspecified(remote, local.map(|l| l.ip()), &self.addresses);
        // Port 0 is a destination like any other, as for Linux's `tcp_v4_connect`: the SYN
        // goes, and the RST that answers it refuses the connection.
        // A broadcast or multicast destination has no TCP (Linux's `tcp_v4_connect`:
        // ENETUNREACH for an RTCF_BROADCAST or RTCF_MULTICAST route).
        if !self.is_unicast(remote.ip()) {
            return Err(Error::NetworkUnreachable);
        }
        // RFC 4007 §6: a link-local address names no peer without its link. Linux's
        // `tcp_v6_connect` fails with EINVAL without a scope id (or a bound device); the
        // stack has one link, which any scope id names.
        if unscoped {
            return Err(Error::InvalidInput);
        }
        // A SYN to a loopback address (or 0/8, or an IPv4-mapped one) would go out on the
        // link, which never answers it (the kernel drops it as a martian), and the connect
        // would wait out every SYN retry. Fail at once instead, as Linux does for a
        // destination it has no route to. (One of our own addresses is looped back: see
        // `poll_transmit`.)
        if is_martian(remote.ip()) {
            return Err(Error::NetworkUnreachable);
        }
        let local_ip = match local {
            Some(l) if !l.ip().is_unspecified() => {
                if l.is_ipv4() != remote.is_ipv4() {
                    return Err(Error::AddressFamilyNotSupported);
                }
                if !self.may_own(l.ip()) {
                    return Err(Error::AddrNotAvailable);
                }
                l.ip()
            }
            // To one of our own addresses, from it, as Linux's local route has it.
            _ if self.addresses.contains(&remote.ip()) => remote.ip(),
            // No address of the destination's family: no route there (ENETUNREACH, as
            // Linux's connect to IPv6 on a host with none).
            _ => self
                .addresses
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == remote.is_ipv4())
                .ok_or(Error::NetworkUnreachable)?,
        };
        let mut takeover = None;
        let local_port = local.map_or(0, |l| l.port());
        let port = match (local_port, origin) {
            (0, _) => None,
            (port, PortOrigin::Bind) => {
                takeover = self.may_take_over(&Tuple(SocketAddr::new(local_ip, port), remote))?;
                Some(port)
            }
            (port, PortOrigin::Ephemeral) => {
                if !self.ephemeral_may_take(now, SocketAddr::new(local_ip, port), remote) {
                    return Err(Error::AddrNotAvailable);
                }
                Some(port)
            }
        };
        // A port given by a bind (a bound socket's) is claimed as one: no ephemeral connect
        // shares it; an ephemeral one may be shared by others.
        let bound = port.is_some() && origin == PortOrigin::Bind;
        if self.memory_full_after_pruning(now) {
            self.stats.refused_memory += 1;
            return Err(Error::NoBufferSpace);
        }
        let port = match port {
            Some(port) => port,
            None => self.ephemeral_port(now, local_ip, remote)?,
        };
        let local = SocketAddr::new(local_ip, port);
        // An ephemeral port whose loopback tuple is in TIME-WAIT (`ephemeral_may_take`).
        if origin == PortOrigin::Ephemeral || local_port == 0 {
            let tuple = Tuple(local, remote);
            if self.time_wait.contains(&tuple) {
                takeover = Some(Takeover::Compact(tuple));
            }
        }
        // A compact TIME-WAIT entry taken over frees its own slot: it ends before room is
        // made, so that no other entry is recycled for the new connection (nor this one, whose
        // SND.NXT the new ISS comes from).
        let mut iss = None;
        if let Some(compact @ Takeover::Compact(_)) = takeover {
            iss = self.take_over(compact);
        }
        if !self.make_room() {
            return Err(Error::NoBufferSpace);
        }
        if let Some(held @ (Takeover::HeldTimeWait(_) | Takeover::Closed(_))) = takeover {
            iss = self.take_over(held);
        }
        let id = self.identity(local, remote, now, iss);
        let server = self.fast_open_cookies.server(remote.ip());
        let claim = PortClaim::new(opts.reuse_address.unwrap_or(false), bound)
            .with_reuse_port(opts.reuse_port);
        let (h, conn) = self.insert(now, id, Owner::App, claim);
        conn.apply_options(opts);
        match fast_open {
            // TCP_FASTOPEN_CONNECT: the SYN waits for the first write if a cookie is known.
            FastOpen::Off if opts.fast_open_connect == Some(true) => {
                conn.open_active_fast_open(server, true)
            }
            FastOpen::Off => conn.open_active(),
            FastOpen::With(data) => {
                conn.open_active_fast_open(server, false);
                // As Linux's tcp_sendmsg_fastopen: what the SYN carries is taken (queued
                // before the SYN is formed), and only that; without a cookie nothing is, and
                // the SYN asks for one. The rest is the caller's to write once connected.
                let room = conn.fast_open_syn_room();
                if room > 0 {
                    let first = &data[..data.len().min(room)];
                    sent = conn.send(first, SendFlags::default()).unwrap_or(0);
                }
            }
        }
        tracing::debug!(?h, %local, %remote, "connect");
        self.after(h);
        Ok((h, sent))
    }

    /// TCP Fast Open (RFC 7413 §4.2, `sendto(MSG_FASTOPEN)`): connect to `remote` and send
    /// `data` in the SYN. With a cookie from an earlier connection to the same server, the
    /// SYN carries it and as much of `data` as it may (the smaller of our MSS and the MSS the
    /// server offered last time, less 40 bytes of option room, as Linux sizes it), and the
    /// call returns how many bytes that was: only those are queued, the rest is the caller's
    /// to send once connected, as Linux's `sendto` returns. Without a cookie, the SYN asks
    /// the server for one, nothing is queued and the call returns 0.
    pub fn connect_fast_open(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local: Option<SocketAddr>,
        opts: &SocketOptions,
        data: &[u8],
    ) -> Result<(ConnectionHandle, usize), Error> {
        self.open(
            now,
            remote,
            local,
            opts,
            FastOpen::With(data),
            PortOrigin::Bind,
        )
    }
}

/// Where an active open's nonzero local port comes from (see `Endpoint::open`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortOrigin {
    /// A bound socket's port (`connect_with`): its own, which it may take back from
    /// TIME-WAIT, and which no ephemeral connect shares.
    Bind,
    /// An ephemeral port a runtime's own search picked (`connect_from_ephemeral`).
    Ephemeral,
}

/// How an active open uses TCP Fast Open.
enum FastOpen<'a> {
    /// Not at all, unless the socket options ask (`TCP_FASTOPEN_CONNECT`).
    Off,
    /// `sendto(MSG_FASTOPEN)`: this data in the SYN, with a cookie.
    With(&'a [u8]),
}
