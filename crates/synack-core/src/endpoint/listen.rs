//! Listeners: passive opens (RFC 9293 §3.10.7.2), their SYN and accept queues, and SYN
//! cookies (RFC 4987 §3.6) when a SYN queue overflows; the `listen`, `accept` and
//! `close_listener` commands.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::bind::PortSharing;
use super::fast_open::{FastOpenQueue, FastOpenVerdict};
use super::output::Own;
use super::{ConnectionHandle, Endpoint, Event, ListenerHandle, Owner};
use crate::config::SynCookies;
use crate::error::Error;
use crate::options::SocketOptions;
use crate::seq::SeqNumber;
use crate::syncookie;
use crate::tcp::connection::handshake::{Identity, PeerOptions, SynOffer};
use crate::tcp::connection::output::HOP_LIMIT;
use crate::tcp::connection::{default_mss, PortClaim, SegmentMeta};
use crate::tcp::State;
use crate::time::Instant;
use crate::wire::{Ecn, TcpFlags, TcpRepr};

/// The bound of one socket's accept queue, shared by the listeners of several endpoints that
/// stand for it (a runtime's shards, each with the listener and its own share of the
/// connections): Linux holds at most backlog + 1 connections waiting for `accept` on a
/// listening socket (`sk_acceptq_is_full`), and a queue split over shards, each bounded on
/// its own, held more in all. Each listener counts here what its queue holds, and takes a
/// connection only while the count is under the bound (checked, not reserved, as Linux's
/// own lockless check: shards racing for the last place may pass it by one each).
///
/// It also keeps the queues' joint order: each connection queued takes the next number
/// from a counter they share, so that a runtime accepting over them can take the oldest
/// first ([`Endpoint::accept_order`]), as from Linux's one first-in, first-out queue.
#[derive(Clone, Debug)]
pub struct SharedBacklog {
    queued: Arc<AtomicUsize>,
    limit: usize,
    order: Arc<AtomicU64>,
}

impl SharedBacklog {
    /// A bound of `limit` connections waiting for `accept`, in all the queues that share it.
    pub fn new(limit: usize) -> SharedBacklog {
        SharedBacklog {
            queued: Arc::new(AtomicUsize::new(0)),
            limit,
            order: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many connections the queues that share it hold now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub(super) struct Listener {
    pub(super) local: SocketAddr,
    /// Bounds the SYN queue, and the accept queue unless `shared` does.
    pub(super) backlog: usize,
    pub(super) syn_queue: usize,
    /// Established connections waiting for `accept`, each with its place in the socket's
    /// accept order: changed only through `enqueue`, `dequeue` and `forget`, which keep
    /// `shared`'s count.
    accept_queue: VecDeque<(ConnectionHandle, u64)>,
    /// The place the next connection queued takes, unless `shared` numbers it.
    next_order: u64,
    /// The accept queue's bound shared with other endpoints' listeners for the same socket
    /// (see [`Endpoint::share_backlog`]).
    shared: Option<SharedBacklog>,
    /// When the SYN queue last overflowed: cookie ACKs are checked only for a while after
    /// (Linux `tcp_synq_no_recent_overflow`).
    pub(super) last_overflow: Option<Instant>,
    /// What every connection it accepts takes.
    pub(super) options: SocketOptions,
    /// TCP Fast Open's server side (`options.fast_open`).
    pub(super) fast_open: FastOpenQueue,
}

impl Listener {
    /// Whether the accept queue is full: its own backlog, or the bound it shares.
    pub(super) fn accept_full(&self) -> bool {
        match &self.shared {
            Some(s) => s.queued() >= s.limit,
            None => self.accept_queue.len() >= self.backlog,
        }
    }

    /// Queue an established connection for `accept`.
    pub(super) fn enqueue(&mut self, h: ConnectionHandle) {
        let order = match &self.shared {
            Some(s) => {
                s.queued.fetch_add(1, Ordering::Relaxed);
                s.order.fetch_add(1, Ordering::Relaxed)
            }
            None => {
                self.next_order += 1;
                self.next_order - 1
            }
        };
        self.accept_queue.push_back((h, order));
    }

    /// The connection `accept` takes next.
    fn dequeue(&mut self) -> Option<ConnectionHandle> {
        let (h, _) = self.accept_queue.pop_front()?;
        if let Some(s) = &self.shared {
            s.queued.fetch_sub(1, Ordering::Relaxed);
        }
        Some(h)
    }

    /// Take `h` out of the accept queue (it was released before anyone accepted it).
    pub(super) fn forget(&mut self, h: ConnectionHandle) {
        let before = self.accept_queue.len();
        self.accept_queue.retain(|&(c, _)| c != h);
        if let Some(s) = &self.shared {
            s.queued
                .fetch_sub(before - self.accept_queue.len(), Ordering::Relaxed);
        }
    }
}

impl Drop for Listener {
    /// A listener closed with connections in its queue gives their places back to the
    /// bound it shares (the connections themselves are reset by `close_listener`).
    fn drop(&mut self) {
        if let Some(s) = &self.shared {
            s.queued
                .fetch_sub(self.accept_queue.len(), Ordering::Relaxed);
        }
    }
}

impl Endpoint {
    /// A new connection's identity: its ISN, RFC 6528's unless `iss` gives the one a
    /// successor of a TIME-WAIT connection must take ([`Reuse::Yes`](super::time_wait::Reuse)),
    /// its own timestamp offset and its first IPv4 identification.
    pub(super) fn identity(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
        iss: Option<SeqNumber>,
    ) -> Identity {
        let (clock_iss, ts_offset) = self.secrets.isn_and_ts_offset(local, remote, now);
        let iss = iss.unwrap_or(clock_iss);
        Identity {
            local,
            remote,
            iss,
            ts_offset,
            ip_id: self.secrets.ip_id(local, remote, iss),
        }
    }

    /// How a connection a listener accepted uses its port: with the listener's
    /// SO_REUSEADDR (on unless its socket said otherwise, as tokio's `TcpListener::bind`
    /// sets it), and on a port a bind gave, as Linux's child joins the listener's bucket
    /// (`__inet_inherit_port`).
    pub(super) fn accepted_claim(options: &SocketOptions) -> PortClaim {
        PortClaim::new(options.reuse_address.unwrap_or(true), true)
            .with_reuse_port(options.reuse_port)
    }

    /// What binding a socket to `local` gives, as Linux's `bind(2)` decides it for a socket
    /// that will listen: `local` itself, or for port 0 an ephemeral port that no listener,
    /// no bound socket and no connection here uses. `AddrNotAvailable` for an address that
    /// is not ours (an own address or all of them; in intercept mode any address routed to
    /// us, as a Linux socket with IP_TRANSPARENT binds a foreign one, which then wins over
    /// the interception for its port); `AddrInUse` when no ephemeral port is free, or for a
    /// port a listener holds (see `listener_clash`), or that a socket bound without
    /// SO_REUSEADDR holds or a connection or TIME-WAIT entry without it uses (see
    /// [`bind_socket`](Self::bind_socket)). The listener binds with SO_REUSEADDR, as tokio's
    /// `TcpListener::bind`; [`listen_with`](Self::listen_with) takes the socket's own.
    pub fn check_bind(&mut self, local: SocketAddr) -> Result<SocketAddr, Error> {
        self.check_bind_among(local, &[])
    }

    /// [`check_bind`](Self::check_bind) on an endpoint that shares the stack's ports with
    /// `others` (a runtime's shards, each with its own connections; listeners and bound
    /// sockets are on every one): their connections and TIME-WAIT entries count too.
    pub fn check_bind_among(
        &mut self,
        local: SocketAddr,
        others: &[&Endpoint],
    ) -> Result<SocketAddr, Error> {
        // A listener binds with SO_REUSEADDR, as tokio's `TcpListener::bind`.
        self.check_bind_with(local, true, others)
    }

    /// What binding a socket to `local` that shares its port as `sharing` says gives
    /// (Linux's `inet_csk_get_port`): `local`, unless a listener, a bound socket or a
    /// connection or TIME-WAIT entry here or in `others` holds the port on an overlapping
    /// address and the options do not let them share it (see
    /// [`bind_socket`](Self::bind_socket)); for port 0, an ephemeral port nothing uses
    /// (`AddrInUse` if there is none).
    /// Each look is one lookup of the port (`port_use`), not a walk over the connections.
    pub(super) fn check_bind_with(
        &mut self,
        local: SocketAddr,
        sharing: impl Into<PortSharing>,
        others: &[&Endpoint],
    ) -> Result<SocketAddr, Error> {
        let sharing = sharing.into();
        let ip = local.ip();
        // Linux's `__inet6_bind`, before it asks whether the address is ours: a stream
        // socket takes no IPv6 multicast address, and a link-local one names no address
        // without its interface (RFC 4007 §6): EINVAL.
        if let SocketAddr::V6(v6) = local {
            let unscoped = super::demux::needs_scope_id(local) && v6.scope_id() == 0;
            if v6.ip().is_multicast() || unscoped {
                return Err(Error::InvalidInput);
            }
        }
        if !ip.is_unspecified() && !self.may_own(ip) {
            return Err(Error::AddrNotAvailable);
        }
        if local.port() != 0 {
            // `inet_bind_conflict`: a connection or a TIME-WAIT entry shares its port only
            // if both its socket and this one set SO_REUSEADDR, or both SO_REUSEPORT.
            let in_use = std::iter::once(&*self)
                .chain(others.iter().copied())
                .any(|e| {
                    e.conn_ports.clash(local, sharing) || e.time_wait.ports().clash(local, sharing)
                });
            return match in_use
                || self.listener_clash(local, sharing.reuse_port)
                || self.bindings.clash(local, sharing)
            {
                true => Err(Error::AddrInUse),
                false => Ok(local),
            };
        }
        // From a start anywhere in the range, afresh for each bind (`bind_port_offset`,
        // as Linux's `inet_csk_find_open_port` starts at random), past every port a
        // connection, a TIME-WAIT entry, a bound socket or a clashing listener uses.
        let (min, max) = self.config.ephemeral_ports;
        if min == 0 || max < min {
            return Err(Error::AddrNotAvailable);
        }
        let used = |ep: &Endpoint, port: u16| {
            std::iter::once(ep)
                .chain(others.iter().copied())
                .any(|e| e.conn_ports.port(port) || e.time_wait.ports().port(port))
        };
        let num = u32::from(max - min) + 1;
        let offset = self.secrets.bind_port_offset(ip, self.next_ephemeral);
        self.next_ephemeral = self.next_ephemeral.wrapping_add(1);
        for count in 0..num {
            let port = min + (offset.wrapping_add(count) % num) as u16;
            let a = SocketAddr::new(ip, port);
            if !used(self, port) && !self.listener_clash(a, false) && !self.bindings.holds(a) {
                return Ok(a);
            }
        }
        // Every port of the range is in use: EADDRINUSE, as Linux's `inet_csk_get_port`
        // fails a bind or listen to port 0 (a connect's search says EADDRNOTAVAIL).
        Err(Error::AddrInUse)
    }

    /// The local addresses this endpoint's connections and TIME-WAIT entries use, each with
    /// whether every one of them that uses it set SO_REUSEADDR.
    pub fn used_local_addrs(&self) -> HashMap<SocketAddr, bool> {
        let mut used = HashMap::new();
        for (a, reuse) in self
            .conn_ports
            .addrs()
            .chain(self.time_wait.ports().addrs())
        {
            *used.entry(a).or_insert(true) &= reuse;
        }
        used
    }

    /// Whether a listener on `local` would share a port with one that exists (see
    /// `bind::overlaps`; Linux's `inet_csk_bind_conflict`:
    /// SO_REUSEADDR does not let two sockets listen on one port). The families do not
    /// clash: a listener on `0.0.0.0` beside one on `[::]` takes the IPv4 clients from it
    /// (see [`find_listener`](Self::find_listener)), where Linux would refuse the second
    /// bind unless the first were `IPV6_V6ONLY`.
    ///
    /// Listeners that all set SO_REUSEPORT share a port (`reuse_port`: whether the new one
    /// does), on one address (a group a 4-tuple picks from:
    /// [`reuseport_pick`](Self::reuseport_pick)) or on overlapping ones (the more specific
    /// address wins, as for any two).
    fn listener_clash(&self, local: SocketAddr, reuse_port: bool) -> bool {
        self.by_local.iter().any(|(&a, l)| {
            super::bind::overlaps(a, local)
                && !(reuse_port && self.listeners.get(l).is_some_and(|l| l.options.reuse_port))
        })
    }

    /// The listener among those sharing `listener`'s address with SO_REUSEPORT that takes
    /// the connection from `remote` to `local`: a keyed hash of the 4-tuple scaled to the
    /// group, as Linux's `reuseport_select_sock` (`reciprocal_scale`), so that every
    /// segment of one handshake finds the same one. `listener` itself when it has no group.
    pub(super) fn reuseport_pick(
        &self,
        listener: ListenerHandle,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> ListenerHandle {
        if self.reuseport_groups.is_empty() {
            return listener;
        }
        let Some(group) = self
            .listeners
            .get(&listener)
            .and_then(|l| self.reuseport_groups.get(&l.local))
        else {
            return listener;
        };
        let hash = u64::from(self.secrets.reuseport_hash(local, remote));
        group[((hash * group.len() as u64) >> 32) as usize]
    }

    pub(super) fn find_listener(&self, local: SocketAddr) -> Option<ListenerHandle> {
        if let Some(&l) = self.by_local.get(&local) {
            return Some(l);
        }
        // A listener on the unspecified address takes our own addresses only: in intercept
        // mode a SYN to another address is the interception's (as a Linux socket on
        // 0.0.0.0 sees no foreign destinations without IP_TRANSPARENT).
        if !self.addresses.contains(&local.ip()) {
            return None;
        }
        let any: IpAddr = match local.ip() {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        if let Some(&l) = self.by_local.get(&SocketAddr::new(any, local.port())) {
            return Some(l);
        }
        // Dual stack, as Linux's default (`net.ipv6.bindv6only` 0): a listener on `[::]`
        // takes IPv4 clients too, where no IPv4 listener takes the port. The connection is
        // IPv4 on the wire; the runtime shows its addresses IPv4-mapped (`::ffff:a.b.c.d`),
        // as Linux's `accept` on such a socket does.
        if local.is_ipv4() {
            let any6 = SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), local.port());
            return self.by_local.get(&any6).copied();
        }
        None
    }

    /// RFC 9293 §3.10.7.2: a segment arrives for a LISTEN socket. `iss`: the initial
    /// sequence number a SYN that replaces a TIME-WAIT connection must take
    /// ([`Reuse::Yes`](super::time_wait::Reuse)); otherwise RFC 6528's.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_listen(
        &mut self,
        now: Instant,
        l: ListenerHandle,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
        rx: SegmentMeta<'_>,
        iss: Option<SeqNumber>,
    ) {
        let flags = seg.flags;
        // "First, check for a RST: an incoming RST segment could not be valid since it could
        // not have been sent in response to anything sent by this incarnation."
        if flags.contains(TcpFlags::RST) {
            self.stats.drop_other += 1;
            return;
        }
        // "Second, check for an ACK: ... form <SEQ=SEG.ACK><CTL=RST>" — unless it completes a
        // SYN-cookie handshake.
        if flags.contains(TcpFlags::ACK) {
            if !flags.contains(TcpFlags::SYN) && self.cookies_active(l, now) {
                if self.accept_cookie(now, l, local, remote, seg, rx) {
                    return;
                }
                self.stats.syncookies_failed += 1;
            }
            self.reply_rst(local, remote, seg);
            return;
        }
        // "Third, check for a SYN". A SYN with FIN is nonsense; Linux drops it.
        if !flags.contains(TcpFlags::SYN) || flags.contains(TcpFlags::FIN) {
            self.stats.drop_other += 1;
            return;
        }
        let Some(listener) = self.listeners.get(&l) else {
            return;
        };
        let options = listener.options;
        let syn_queue_full = listener.syn_queue >= listener.backlog;
        // A full accept queue drops the SYN even with cookies, as Linux does: the application
        // is not keeping up, and more connections would only wait.
        if listener.accept_full() {
            self.stats.drop_listen_overflow += 1;
            return;
        }
        if self.memory_full_after_pruning(now) {
            self.stats.drop_memory += 1;
            self.stats.refused_memory += 1;
            return;
        }
        let room = self.make_room();
        let overflow = syn_queue_full || self.half_open >= self.config.max_half_open || !room;
        // A SYN that takes over a TIME-WAIT entry (`iss`: the ISN it must take, past the old
        // connection's sequence space, RFC 1122 §4.2.2.13) becomes a request "without
        // limitations", as Linux's `tcp_conn_request` has it (`&& !isn`): a cookie's ISN
        // would not follow the old one, and a full SYN queue would lose a connection whose
        // TIME-WAIT entry is already gone. Only a table with no room at all refuses it.
        if iss.is_some() {
            if !room {
                self.stats.drop_listen_overflow += 1;
                return;
            }
        } else {
            match (self.config.syncookies, overflow) {
                (SynCookies::Always, _) | (SynCookies::OnOverflow, true) => {
                    if overflow {
                        if let Some(listener) = self.listeners.get_mut(&l) {
                            listener.last_overflow = Some(now);
                        }
                    }
                    self.send_cookie(now, local, remote, seg, rx.ecn, &options);
                    return;
                }
                (SynCookies::Off, true) => {
                    self.stats.drop_listen_overflow += 1;
                    return;
                }
                _ => {}
            }
        }
        let verdict = self.fast_open_verdict(now, l, local, remote, seg);
        let id = self.identity(local, remote, now, iss);
        let claim = Self::accepted_claim(&options);
        let (h, conn) = self.insert(now, id, Owner::Nobody, claim);
        conn.apply_options(&options);
        match verdict {
            FastOpenVerdict::Child(reply) => {
                conn.accept_syn_fast_open(now, seg, rx.ecn, reply);
                // RFC 7413 §4.2.2: the connection goes to the application at once, before the
                // handshake's final ACK; it counts in the Fast Open queue, not the SYN queue.
                self.stats.fast_open_passive += 1;
                if let Some(slot) = self.connections.get_mut(&h) {
                    slot.owner = Owner::AcceptQueue(l);
                    slot.fast_open_of = Some(l);
                }
                if let Some(listener) = self.listeners.get_mut(&l) {
                    listener.enqueue(h);
                    listener.fast_open.pending += 1;
                }
                self.push_event(Event::Incoming(l));
                self.after(h);
                return;
            }
            FastOpenVerdict::Cookie(cookie) => {
                conn.accept_syn(now, seg, rx.ecn);
                conn.set_synack_cookie(cookie);
            }
            FastOpenVerdict::Plain => conn.accept_syn(now, seg, rx.ecn),
        }
        if let Some(slot) = self.connections.get_mut(&h) {
            slot.syn_of = Some(l);
        }
        if let Some(listener) = self.listeners.get_mut(&l) {
            listener.syn_queue += 1;
        }
        self.half_open += 1;
        self.after(h);
    }

    /// Whether ACKs to listener `l` may carry SYN cookies now: cookies are always on, or its
    /// SYN queue overflowed less than two cookie periods ago.
    pub(super) fn cookies_active(&self, l: ListenerHandle, now: Instant) -> bool {
        match self.config.syncookies {
            SynCookies::Off => false,
            SynCookies::Always => true,
            SynCookies::OnOverflow => self
                .listeners
                .get(&l)
                .and_then(|l| l.last_overflow)
                .is_some_and(|t| now - t < syncookie::COOKIE_PERIOD * syncookie::MAX_AGE),
        }
    }

    /// What a SYN-ACK for a listener with `options` offers: its connections' window, shift
    /// and MSS (see [`SynOffer`]).
    fn syn_offer(&self, options: &SocketOptions, ipv6: bool) -> SynOffer {
        SynOffer::for_socket(&self.config, &self.conn_config, options, ipv6)
    }

    /// Answer a SYN statelessly (RFC 4987 §3.6): the ISN is a cookie, and the peer's window
    /// scale and whether SACK was agreed ride in our TSval's low bits; without timestamps
    /// neither is offered.
    pub(super) fn send_cookie(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpRepr<'_>,
        ecn: Ecn,
        options: &SocketOptions,
    ) {
        let ipv6 = local.is_ipv6();
        // The listener's offer, as its stateful SYN-ACKs make it: a receive buffer or an MSS
        // it was given changes the shift, the window and the MSS.
        let offer = self.syn_offer(options, ipv6);
        let peer_mss = PeerOptions::mss_of(syn).unwrap_or(default_mss(ipv6) as u16);
        // The peer's MSS as the connection will clamp it (Linux keeps `mss_clamp`, the
        // lower of the peer's and TCP_MAXSEG).
        let mss = peer_mss.min(offer.mss);
        let iss = syncookie::cookie_isn(&self.secrets, local, remote, syn.seq_number, now, mss);
        let mut synack = TcpRepr::new(
            local.port(),
            remote.port(),
            TcpFlags::SYN | TcpFlags::ACK,
            iss,
            syn.seq_number + 1,
        );
        synack.window_len = offer.window;
        synack.max_seg_size = Some(offer.mss);
        if let (true, Some(ts)) = (self.config.timestamps, syn.timestamp) {
            // The peer's shift is what its windows need, so it is what the cookie keeps, as
            // Linux's cookie_init_timestamp keeps `snd_wscale`; ours is the endpoint's, and
            // the connection the ACK rebuilds takes it again.
            let peer_wscale = syn.window_scale.filter(|_| self.config.window_scaling);
            let sack = self.config.sack && syn.sack_permitted;
            // ECN as a connection would agree to it (RFC 3168 §6.1.1), remembered in the
            // TSval as Linux's cookie_init_timestamp does; without timestamps the cookie has
            // no room for it, and ECN is not offered.
            let asks = syn.flags.contains(TcpFlags::ECE) && syn.flags.contains(TcpFlags::CWR);
            let ecn_ok = asks && ecn == Ecn::NotEct && self.config.ecn.accepts();
            let offset = self.secrets.ts_offset(local, remote);
            let ts_now = (now.total_millis() as u32).wrapping_add(offset);
            synack.timestamp = Some(crate::wire::TcpTimestamp {
                tsval: syncookie::encode_ts_options(ts_now, peer_wscale, sack, ecn_ok),
                tsecr: ts.tsval,
            });
            synack.window_scale = peer_wscale.map(|_| offer.shift);
            synack.sack_permitted = sack;
            if ecn_ok {
                synack.flags |= TcpFlags::ECE;
            }
        }
        // The listener's IP_TOS and IP_TTL, as on the SYN-ACKs its connections send.
        let ds = options.tos.unwrap_or(0) & !Ecn::MASK;
        let hop_limit = options.hop_limit.unwrap_or(HOP_LIMIT);
        self.queue_segment_marked(local, remote, &synack, (ds, hop_limit, 0), Own::SynCookie);
    }

    /// An ACK reached a listener: if it carries a valid cookie, rebuild the connection and
    /// queue it for `accept`. Returns whether it did.
    pub(super) fn accept_cookie(
        &mut self,
        now: Instant,
        l: ListenerHandle,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
        rx: SegmentMeta<'_>,
    ) -> bool {
        let Some(mss) = syncookie::check_cookie(
            &self.secrets,
            local,
            remote,
            seg.seq_number - 1,
            seg.ack_number - 1,
            now,
        ) else {
            return false;
        };
        let full = self.listeners.get(&l).is_none_or(|l| l.accept_full());
        if !full && self.memory_full_after_pruning(now) {
            self.stats.drop_memory += 1;
            self.stats.refused_memory += 1;
            return true;
        }
        if full || !self.make_room() {
            self.stats.drop_listen_overflow += 1;
            return true;
        }
        // The options we agreed to come back in TSecr; without timestamps, none were offered.
        let (wscale, sack, ecn, tsval) = match (self.config.timestamps, seg.timestamp) {
            (true, Some(ts)) => {
                let (wscale, sack, ecn) = syncookie::decode_ts_options(ts.tsecr);
                (wscale, sack, ecn, Some(ts.tsval))
            }
            _ => (None, false, false, None),
        };
        let peer = PeerOptions {
            mss: Some(mss),
            wscale,
            sack_permitted: sack,
            tsval,
        };
        // The ISN is the cookie the peer echoed.
        let iss = seg.ack_number - 1;
        let id = Identity {
            local,
            remote,
            iss,
            ts_offset: self.secrets.ts_offset(local, remote),
            ip_id: self.secrets.ip_id(local, remote, iss),
        };
        let options = self
            .listeners
            .get(&l)
            .map(|l| l.options)
            .unwrap_or_default();
        let offer = self.syn_offer(&options, local.is_ipv6());
        let claim = Self::accepted_claim(&options);
        let (h, conn) = self.insert(now, id, Owner::Nobody, claim);
        conn.apply_options(&options);
        conn.open_from_cookie(now, peer, seg, ecn, offer);
        self.stats.syncookies_validated += 1;
        self.stats.connections_established += 1;
        if let Some(listener) = self.listeners.get_mut(&l) {
            listener.enqueue(h);
        }
        if let Some(slot) = self.connections.get_mut(&h) {
            slot.owner = Owner::AcceptQueue(l);
            // Data riding on the cookie ACK is processed like any other segment.
            if !seg.payload.is_empty() || seg.flags.contains(TcpFlags::FIN) {
                let verdict = slot.conn.handle_segment(now, seg, rx);
                self.count_verdict(verdict);
            }
        }
        self.push_event(Event::Incoming(l));
        self.after(h);
        true
    }

    /// Listen on `local` (an own address, or the unspecified address for all of them). Port 0
    /// picks an ephemeral port. The backlog bounds both the SYN queue and the accept queue:
    /// it is how many connections wait (Linux's `listen(2)` backlog plus one, as
    /// `sk_acceptq_is_full` holds one more than it is told), at most one more than
    /// `Config::max_backlog`, as Linux clamps the backlog to somaxconn and then holds one
    /// more.
    pub fn listen(&mut self, local: SocketAddr, backlog: usize) -> Result<ListenerHandle, Error> {
        self.listen_with(local, backlog, &SocketOptions::default())
    }

    /// [`Endpoint::listen`] with a socket's options, which every connection the listener
    /// accepts takes.
    pub fn listen_with(
        &mut self,
        local: SocketAddr,
        backlog: usize,
        opts: &SocketOptions,
    ) -> Result<ListenerHandle, Error> {
        opts.check()?;
        // SO_REUSEADDR unless the socket said otherwise, as tokio's `TcpListener::bind`
        // sets it; the connections it accepts take it.
        let mut opts = *opts;
        let sharing = PortSharing {
            reuse_address: *opts.reuse_address.get_or_insert(true),
            reuse_port: opts.reuse_port,
        };
        let local = self.check_bind_with(super::demux::plain(local), sharing, &[])?;
        let backlog = backlog.clamp(1, self.config.max_backlog.saturating_add(1));
        let l = ListenerHandle(self.next_handle);
        self.next_handle += 1;
        self.listeners.insert(
            l,
            Listener {
                local,
                backlog,
                syn_queue: 0,
                accept_queue: VecDeque::new(),
                next_order: 0,
                shared: None,
                last_overflow: None,
                options: opts,
                fast_open: FastOpenQueue::default(),
            },
        );
        match self.by_local.get(&local) {
            // Another listener with SO_REUSEPORT on this very address (the check let it be).
            Some(&first) => self
                .reuseport_groups
                .entry(local)
                .or_insert_with(|| vec![first])
                .push(l),
            None => {
                self.by_local.insert(local, l);
            }
        }
        Ok(l)
    }

    /// Bound `listener`'s accept queue together with other endpoints' listeners for the same
    /// socket, by `shared` (a runtime whose shards each listen for one socket: see
    /// [`SharedBacklog`]), instead of by its own backlog, which then bounds its SYN queue
    /// only. Call it before the listener queues anything.
    pub fn share_backlog(
        &mut self,
        listener: ListenerHandle,
        shared: SharedBacklog,
    ) -> Result<(), Error> {
        let l = self
            .listeners
            .get_mut(&listener)
            .ok_or(Error::InvalidHandle)?;
        if !l.accept_queue.is_empty() {
            return Err(Error::InvalidInput);
        }
        l.shared = Some(shared);
        Ok(())
    }

    /// Replace the options a listener gives the connections it accepts from now on (a
    /// `setsockopt` on a listening socket: Linux's `TCP_MAXSEG` on a listener shapes the
    /// SYN-ACKs it sends after).
    pub fn set_listener_options(
        &mut self,
        listener: ListenerHandle,
        opts: &SocketOptions,
    ) -> Result<(), Error> {
        opts.check()?;
        let l = self
            .listeners
            .get_mut(&listener)
            .ok_or(Error::InvalidHandle)?;
        // The listener's SO_REUSEADDR stays on unless the socket says otherwise; its
        // SO_REUSEPORT stays what it was at `listen`, when it joined its group or not.
        l.options = SocketOptions {
            reuse_address: Some(opts.reuse_address.unwrap_or(true)),
            reuse_port: l.options.reuse_port,
            ..*opts
        };
        Ok(())
    }

    /// The options a listener gives the connections it accepts, as
    /// [`listen_with`](Self::listen_with) or [`set_listener_options`](Self::set_listener_options)
    /// last set them.
    pub fn listener_options(&self, listener: ListenerHandle) -> Result<SocketOptions, Error> {
        let l = self.listeners.get(&listener).ok_or(Error::InvalidHandle)?;
        Ok(l.options)
    }

    /// The place in the socket's accept order of the connection [`accept`](Self::accept)
    /// would take next, or `None` while the queue is empty. Listeners that share a
    /// [`SharedBacklog`] number their connections from one counter, in the order each was
    /// queued, so a runtime accepting for them all takes from the one whose number is
    /// smallest: Linux's accept queue is first in, first out (`reqsk_queue_add` appends,
    /// `reqsk_queue_remove` takes the head).
    pub fn accept_order(&self, listener: ListenerHandle) -> Result<Option<u64>, Error> {
        let l = self.listeners.get(&listener).ok_or(Error::InvalidHandle)?;
        Ok(l.accept_queue.front().map(|&(_, order)| order))
    }

    /// Take an established connection from a listener's accept queue.
    pub fn accept(&mut self, listener: ListenerHandle) -> Result<ConnectionHandle, Error> {
        let l = self
            .listeners
            .get_mut(&listener)
            .ok_or(Error::InvalidHandle)?;
        let h = l.dequeue().ok_or(Error::WouldBlock)?;
        if let Some(slot) = self.connections.get_mut(&h) {
            slot.owner = Owner::App;
            // What happened while it waited in the queue is news to the application now.
            let readable = slot.conn.recv_ready();
            let closed = (slot.conn.state() == State::Closed).then_some(slot.conn.error());
            if readable {
                self.push_event(Event::Readable(h));
            }
            if let Some(error) = closed {
                self.push_event(Event::Closed(h, error));
            }
        }
        Ok(h)
    }

    /// Stop listening. Connections still in its queues are reset, as Linux does.
    pub fn close_listener(&mut self, now: Instant, listener: ListenerHandle) -> Result<(), Error> {
        let l = self
            .listeners
            .remove(&listener)
            .ok_or(Error::InvalidHandle)?;
        match self.reuseport_groups.get_mut(&l.local) {
            Some(group) => {
                group.retain(|&g| g != listener);
                if self.by_local.get(&l.local) == Some(&listener) {
                    self.by_local.insert(l.local, group[0]);
                }
                if group.len() == 1 {
                    self.reuseport_groups.remove(&l.local);
                }
            }
            None => {
                self.by_local.remove(&l.local);
            }
        }
        let doomed: Vec<ConnectionHandle> = self
            .connections
            .iter()
            .filter(|(_, s)| s.syn_of == Some(listener) || s.owner == Owner::AcceptQueue(listener))
            .map(|(h, _)| h)
            .collect();
        for h in doomed {
            if let Some(slot) = self.connections.get_mut(&h) {
                slot.owner = Owner::Nobody;
                if slot.syn_of.take().is_some() {
                    self.half_open = self.half_open.saturating_sub(1);
                }
                slot.conn.abort();
                slot.conn.close(now);
            }
            self.after(h);
        }
        Ok(())
    }
}
