//! Interception (transparent mode): SYNs to any address and port, held for the application
//! to decide on, after gVisor's `tcp.Forwarder`.
//!
//! With [`Config::intercept`] set, the endpoint owns every address routed into its device,
//! not only its own. A SYN that no bound listener takes is not answered: it is held, and
//! the application hears of it as [`Event::Intercepted`]. It then completes the handshake
//! ([`Endpoint::accept_intercepted`], the connection's local address is the SYN's original
//! destination), refuses it with an RST ([`Endpoint::refuse_intercepted`]), or answers it
//! with ICMP destination unreachable ([`Endpoint::unreachable_intercepted`]). A proxy can
//! so open its upstream connection first and answer the client only once it knows. While
//! no application takes them ([`Endpoint::set_tcp_interception`] off), such SYNs are reset
//! as at a closed port instead.
//!
//! Held SYNs are bounded in total and per source address (a SYN flood fills the table and
//! is dropped and counted, never grows memory), and a SYN not decided on within
//! `InterceptConfig::decision_timeout` is dropped: the client's own SYN retransmissions
//! then either find a decision-less table again or give up. Retransmitted SYNs of a held
//! one are absorbed. A SYN whose earlier SYN of the same 4-tuple was held and went
//! unanswered (dropped at a full table, expired, or dropped by the application) is marked a
//! retransmission ([`InterceptedSyn::retransmission`]): at a full table it takes the place of
//! the newest first SYN, so that a client's retry is not lost behind a flood of fresh SYNs
//! the application cannot keep up with. Accepted connections are ordinary passive
//! connections from then on, under `max_connections` and `max_memory` like any other.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use super::demux::{is_martian, source_key};
use super::output::Own;
use super::table::{Tuple, COMPACT_SLACK};
use super::{ConnectionHandle, Endpoint, Event, Owner, Unreachable};
use crate::config::InterceptConfig;
use crate::error::Error;
use crate::options::SocketOptions;
use crate::seq::SeqNumber;
use crate::time::Instant;
use crate::wire::{IcmpRepr, TcpFlags, TcpRepr, TcpTimestamp};

/// A held SYN, named in [`Event::Intercepted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SynHandle(pub u64);

/// What a held SYN asked for: where it was going, where it came from, and the options it
/// offered (RFC 9293 §3.1, RFC 7323, RFC 2018).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InterceptedSyn {
    /// Its original destination: the address and port the client wants.
    pub local: SocketAddr,
    /// The client.
    pub remote: SocketAddr,
    /// The MSS it offered.
    pub mss: Option<u16>,
    /// The window scale it offered.
    pub window_scale: Option<u8>,
    /// Whether it offered SACK.
    pub sack_permitted: bool,
    /// Whether it sent a timestamp.
    pub timestamps: bool,
    /// Whether an earlier SYN of the same 4-tuple was held and went unanswered (dropped at a
    /// full table, expired undecided, or dropped by the application): most likely a
    /// client's retry, which a flood of fresh SYNs is not. It took a first SYN's place if
    /// the table was full; an application that must shed load may keep it over first SYNs
    /// too (the runtime hands such SYNs out first).
    pub retransmission: bool,
}

/// What the ICMP errors an intercepted SYN quotes hold at least: its IP and TCP headers, as
/// far as they go (RFC 792 asks for the IP header and 64 bits; RFC 4443 §3.1 for as much as
/// fits, and the headers are what a client matches on). An IPv6 SYN's extension headers
/// may take it further, up to what the minimum MTU carries ([`Held::quote`]).
const QUOTE_MAX: usize = 120;

/// How much of a held SYN `len` bytes long, `payload` of them data, its quote keeps.
fn quote_len(len: usize, payload: usize, v6: bool) -> usize {
    let headers = len.saturating_sub(payload);
    headers
        .max(QUOTE_MAX)
        .min(super::udp::quote_max(v6))
        .min(len)
}

/// One held SYN: enough of it to answer in any of the three ways.
#[derive(Debug)]
struct Held {
    info: InterceptedSyn,
    seq: SeqNumber,
    window: u16,
    tsval: Option<u32>,
    deadline: Instant,
    /// The start of the packet, for an ICMP error's quote: at least its headers, TCP's
    /// included, within the minimum MTU. Cut at [`QUOTE_MAX`] alone, an IPv6 SYN behind
    /// long extension headers was quoted without its ports, and the client's kernel, which
    /// could not match the error to its connect, waited out its SYN retries.
    quote: Vec<u8>,
    /// The ISN its connection must take if it replaced one in TIME-WAIT ([`Reuse::Yes`](super::time_wait::Reuse)).
    iss: Option<SeqNumber>,
}

/// The held SYNs, by handle and by 4-tuple, with their expiry order.
#[derive(Debug, Default)]
pub(super) struct Intercepts {
    held: HashMap<SynHandle, Held>,
    by_tuple: HashMap<Tuple, SynHandle>,
    /// Held SYNs per source (`demux::source_key`: an IPv6 source's /64).
    per_source: HashMap<IpAddr, usize>,
    /// Handles in arrival order: with one timeout for all, also deadline order. Decided
    /// handles stay until they reach the front (lazy deletion), at most `max_pending` more.
    expiry: VecDeque<SynHandle>,
    /// The held SYNs that are first SYNs, not retransmissions: those a retransmission may
    /// take the place of at a full table, newest first (handles grow with arrival).
    firsts: BTreeSet<SynHandle>,
    next: u64,
    /// 4-tuples whose held SYN went unanswered lately, oldest first, at most
    /// [`UNANSWERED_KEPT`], and the same as a set: a later SYN of one is a retransmission.
    unanswered: VecDeque<Tuple>,
    unanswered_set: HashSet<Tuple>,
    /// No application takes held SYNs (see [`Endpoint::set_tcp_interception`]): a SYN no
    /// listener takes is reset, as at a closed port.
    refusing: bool,
}

/// How many unanswered 4-tuples are remembered: a client's SYN retransmissions (1 s, 3 s,
/// 7 s ... after its first) through a flood of a few hundred fresh SYNs a second, in about
/// 2 MB at most, allocated only as SYNs go unanswered.
const UNANSWERED_KEPT: usize = 16_384;

impl Intercepts {
    fn remove(&mut self, h: SynHandle) -> Option<Held> {
        let held = self.held.remove(&h)?;
        self.firsts.remove(&h);
        self.by_tuple
            .remove(&Tuple(held.info.local, held.info.remote));
        let source = source_key(held.info.remote.ip());
        if let Some(n) = self.per_source.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
        Some(held)
    }

    /// How many SYNs are held undecided.
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    /// Bytes the held SYNs take: each one's record, the packet it quotes and its index
    /// entries (from the types' sizes, not counting the tables' spare capacity).
    pub(super) fn memory(&self) -> usize {
        let entry = std::mem::size_of::<(SynHandle, Held)>()
            + std::mem::size_of::<(Tuple, SynHandle)>()
            + 2 * std::mem::size_of::<SynHandle>();
        self.held.values().map(|h| entry + h.quote.capacity()).sum()
    }

    /// Removes held SYN `h` that goes unanswered (expired, dropped, or displaced), and
    /// remembers its 4-tuple so that a retry of it is known for one.
    fn remove_unanswered(&mut self, h: SynHandle) -> Option<Held> {
        let held = self.remove(h)?;
        self.note_unanswered(Tuple(held.info.local, held.info.remote));
        Some(held)
    }

    /// Remembers that the SYN of `tuple` went unanswered.
    fn note_unanswered(&mut self, tuple: Tuple) {
        if self.unanswered_set.insert(tuple) {
            self.unanswered.push_back(tuple);
            if self.unanswered.len() > UNANSWERED_KEPT {
                if let Some(old) = self.unanswered.pop_front() {
                    self.unanswered_set.remove(&old);
                }
            }
        }
    }

    /// At a full table, a retransmission takes the place of the newest held first SYN, one
    /// the application is least likely to have begun on; with none held, of the oldest
    /// retransmission, the one the application has had longest to decide on. That SYN goes
    /// unanswered (and is remembered so). A flood can make its SYNs retransmissions by
    /// sending each twice, so retransmissions cannot be kept for good: a flood of them
    /// pushes the held SYNs through in arrival order, and a client's retry still gets in
    /// and is announced at once ([`Event::Intercepted`]), held until as many SYNs again as
    /// the table holds have come after it. Returns whether a place was found.
    fn make_room_for_retransmission(&mut self) -> bool {
        let victim = self.firsts.last().copied().or_else(|| {
            // Decided handles wait in `expiry` (lazy deletion, bounded by its compaction):
            // the first live one is the oldest held.
            self.expiry
                .iter()
                .copied()
                .find(|h| self.held.contains_key(h))
        });
        victim.and_then(|h| self.remove_unanswered(h)).is_some()
    }
}

impl Endpoint {
    /// Whether interception takes packets for `dst`, which is not one of our addresses.
    pub(super) fn intercepts(&self) -> bool {
        self.config.intercept.is_some()
    }

    /// Whether a socket may bind, or a packet leave from, `ip`: one of ours, or in intercept
    /// mode any unicast address but a martian (which no packet routed to us can have had as
    /// its destination), as a Linux socket with IP_TRANSPARENT binds and connects from a
    /// foreign address.
    pub fn may_own(&self, ip: IpAddr) -> bool {
        self.addresses.contains(&ip)
            || (self.intercepts() && self.is_unicast(ip) && !is_martian(ip))
    }

    /// A SYN that no connection, TIME-WAIT entry or listener took, in intercept mode: hold it
    /// for the application. Returns `false` if it is not one to hold (not a lone SYN), for
    /// the caller's ordinary answer. `iss`: the ISN its connection must take, if it replaces
    /// one in TIME-WAIT ([`Reuse::Yes`](super::time_wait::Reuse)).
    pub(super) fn handle_intercept(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<'_>,
        packet: &[u8],
        iss: Option<SeqNumber>,
    ) -> bool {
        let Some(cfg): Option<InterceptConfig> = self.config.intercept else {
            return false;
        };
        let f = seg.flags;
        let other = [TcpFlags::ACK, TcpFlags::RST, TcpFlags::FIN];
        if !f.contains(TcpFlags::SYN) || other.into_iter().any(|o| f.contains(o)) {
            return false;
        }
        let tuple = Tuple(local, remote);
        if self.intercepts.by_tuple.contains_key(&tuple) {
            // A retransmission of a SYN the application is still deciding on.
            self.stats.intercept_duplicates += 1;
            return true;
        }
        self.expire_intercepts(now);
        let from_source = self
            .intercepts
            .per_source
            .get(&source_key(remote.ip()))
            .copied()
            .unwrap_or(0);
        let retransmission = self.intercepts.unanswered_set.contains(&tuple);
        let full = self.intercepts.len() >= cfg.max_pending;
        if from_source >= cfg.max_per_source
            || (full && !(retransmission && self.intercepts.make_room_for_retransmission()))
        {
            self.stats.drop_intercept_overflow += 1;
            self.intercepts.note_unanswered(tuple);
            return true;
        }
        if full {
            // A retransmission took a first SYN's place: that one is dropped at the limit.
            self.stats.drop_intercept_overflow += 1;
        }
        let h = SynHandle(self.intercepts.next);
        self.intercepts.next += 1;
        let info = InterceptedSyn {
            local,
            remote,
            mss: seg.max_seg_size,
            window_scale: seg.window_scale,
            sack_permitted: seg.sack_permitted,
            timestamps: seg.timestamp.is_some(),
            retransmission,
        };
        self.intercepts.held.insert(
            h,
            Held {
                info,
                seq: seg.seq_number,
                window: seg.window_len,
                tsval: seg.timestamp.map(|t| t.tsval),
                deadline: now + cfg.decision_timeout,
                quote: packet[..quote_len(packet.len(), seg.payload.len(), remote.is_ipv6())]
                    .to_vec(),
                iss,
            },
        );
        self.intercepts.by_tuple.insert(tuple, h);
        if !retransmission {
            self.intercepts.firsts.insert(h);
        }
        *self
            .intercepts
            .per_source
            .entry(source_key(remote.ip()))
            .or_insert(0) += 1;
        self.intercepts.expiry.push_back(h);
        // Decided handles wait in the expiry queue until they reach its front; SYNs decided
        // as fast as they come would make it grow with the rate. Past twice the live ones,
        // it keeps only those.
        if self.intercepts.expiry.len() > 2 * self.intercepts.held.len() + COMPACT_SLACK {
            let held = &self.intercepts.held;
            self.intercepts.expiry.retain(|h| held.contains_key(h));
        }
        self.stats.intercepted_syns += 1;
        self.push_event(Event::Intercepted(h));
        true
    }

    /// Drop the held SYNs whose time to be decided on has passed.
    pub(super) fn expire_intercepts(&mut self, now: Instant) {
        while let Some(&h) = self.intercepts.expiry.front() {
            match self.intercepts.held.get(&h) {
                Some(held) if held.deadline > now => break,
                Some(_) => {
                    self.intercepts.remove_unanswered(h);
                    self.stats.intercept_expired += 1;
                }
                None => {}
            }
            self.intercepts.expiry.pop_front();
        }
    }

    /// When the oldest held SYN expires.
    pub(super) fn next_intercept_expiry(&self) -> Option<Instant> {
        self.intercepts
            .expiry
            .iter()
            .find_map(|h| self.intercepts.held.get(h))
            .map(|held| held.deadline)
    }

    /// What a held SYN asked for; `InvalidHandle` once it was decided on or expired.
    pub fn intercepted(&self, syn: SynHandle) -> Result<InterceptedSyn, Error> {
        self.intercepts
            .held
            .get(&syn)
            .map(|h| h.info)
            .ok_or(Error::InvalidHandle)
    }

    /// The SYNs held undecided, in the order they arrived: how a runtime that lost
    /// [`Event::Intercepted`] events to an overflow ([`Endpoint::take_event_overflow`])
    /// finds them again. Handles grow with arrival, so those newer than the last one it was
    /// told of are the ones it missed.
    pub fn held_syns(&self) -> impl Iterator<Item = SynHandle> + '_ {
        self.intercepts
            .expiry
            .iter()
            .copied()
            .filter(|h| self.intercepts.held.contains_key(h))
    }

    /// How many SYNs are held undecided.
    pub fn intercepted_count(&self) -> usize {
        self.intercepts.len()
    }

    /// Complete the handshake of a held SYN: a connection in SYN-RECEIVED whose local
    /// address is the SYN's original destination answers with a SYN-ACK, with `options` as
    /// a listener's would give it (SO_REUSEADDR on unless they say otherwise, as for what a
    /// listener accepts). The application holds it from here: it reports
    /// [`Event::Connected`] when the client's ACK arrives, or [`Event::Closed`] if the
    /// handshake fails. Errors: `InvalidHandle` for a SYN no longer held, `AddrNotAvailable`
    /// if the connection table or memory is full, or if a connection (the application's own
    /// connect from the SYN's destination to its source) has taken the tuple meanwhile (the
    /// SYN is dropped).
    pub fn accept_intercepted(
        &mut self,
        now: Instant,
        syn: SynHandle,
        options: &SocketOptions,
    ) -> Result<ConnectionHandle, Error> {
        options.check()?;
        let held = self.intercepts.remove(syn).ok_or(Error::InvalidHandle)?;
        if self.tuple_in_use(held.info.local, held.info.remote) {
            self.stats.drop_other += 1;
            return Err(Error::AddrNotAvailable);
        }
        if self.memory_full_after_pruning(now) {
            self.stats.drop_memory += 1;
            self.stats.refused_memory += 1;
            return Err(Error::AddrNotAvailable);
        }
        if !self.make_room() {
            self.stats.drop_intercept_overflow += 1;
            return Err(Error::AddrNotAvailable);
        }
        let info = held.info;
        let mut seg = TcpRepr::new(
            info.remote.port(),
            info.local.port(),
            TcpFlags::SYN,
            held.seq,
            SeqNumber(0),
        );
        seg.window_len = held.window;
        seg.max_seg_size = info.mss;
        seg.window_scale = info.window_scale;
        seg.sack_permitted = info.sack_permitted;
        seg.timestamp = held.tsval.map(|tsval| TcpTimestamp { tsval, tsecr: 0 });
        let id = self.identity(info.local, info.remote, now, held.iss);
        // The port as a listener's accepted connection uses it: a TPROXY child is in its
        // transparent listener's bucket.
        let claim = Self::accepted_claim(options);
        let (h, conn) = self.insert(now, id, Owner::App, claim);
        conn.apply_options(options);
        // The held SYN's ECN flags are not kept: an intercepted connection goes without.
        conn.accept_syn(now, &seg, crate::wire::Ecn::NotEct);
        self.after(h);
        Ok(h)
    }

    /// In intercept mode, whether the SYNs no listener takes are held for the application
    /// (the default) or reset, as a closed port resets them. An application that intercepts
    /// UDP only turns it off (the runtime's `Stack::set_tcp_interception`), as gVisor's stack
    /// resets a SYN when no forwarder is installed: otherwise every client would wait out
    /// its SYN retries on a SYN no one will decide on. Turning it off resets the SYNs held.
    pub fn set_tcp_interception(&mut self, on: bool) {
        self.intercepts.refusing = !on;
        if !on {
            let held: Vec<SynHandle> = self.intercepts.held.keys().copied().collect();
            for h in held {
                let _ = self.refuse_intercepted(h);
            }
        }
    }

    /// Whether SYNs no listener takes are held for the application
    /// ([`set_tcp_interception`](Self::set_tcp_interception)).
    pub(super) fn catches_syns(&self) -> bool {
        self.intercepts() && !self.intercepts.refusing
    }

    /// Refuse a held SYN with an RST, as a closed port would (RFC 9293 §3.10.7.1:
    /// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`).
    pub fn refuse_intercepted(&mut self, syn: SynHandle) -> Result<(), Error> {
        let held = self.intercepts.remove(syn).ok_or(Error::InvalidHandle)?;
        let (local, remote) = (held.info.local, held.info.remote);
        let rst = TcpRepr::new(
            local.port(),
            remote.port(),
            TcpFlags::RST | TcpFlags::ACK,
            SeqNumber(0),
            held.seq + 1,
        );
        self.queue_segment(local, remote, &rst, Own::Rst);
        Ok(())
    }

    /// Answer a held SYN with ICMP destination unreachable from its original destination,
    /// with the code for `why` (Linux's TCP fails the connect with the error
    /// [`Unreachable`] names: a proxy passes on what its own connect upstream learnt).
    /// Within the ICMP rate limit every ICMP error of the endpoint's keeps (Linux's
    /// `icmp_global_allow`; a Linux router answering for a dead destination is held to it
    /// too), so that spoofed SYNs cannot turn the endpoint into a source of ICMP at their
    /// rate: `Ok(false)` when the limit (or a full queue of our own packets) dropped the
    /// message, counted in `intercept_unreachable_limited`. The SYN is gone either way; its
    /// client times out, as behind a rate-limited router.
    pub fn unreachable_intercepted(
        &mut self,
        now: Instant,
        syn: SynHandle,
        why: Unreachable,
    ) -> Result<bool, Error> {
        let held = self.intercepts.remove(syn).ok_or(Error::InvalidHandle)?;
        if self.control_full() || !self.icmp_allowed(now, held.info.remote.ip()) {
            self.stats.intercept_unreachable_limited += 1;
            return Ok(false);
        }
        let error = IcmpRepr::DstUnreachable {
            code: why.icmp_code(held.info.local.is_ipv6()),
            invoking: &held.quote,
        };
        let (src, dst) = (held.info.local.ip(), held.info.remote.ip());
        self.send_icmp(src, dst, &error, Own::InterceptUnreachable);
        Ok(true)
    }

    /// Drop a held SYN without an answer, as a firewall's DROP would.
    pub fn drop_intercepted(&mut self, syn: SynHandle) -> Result<(), Error> {
        self.intercepts
            .remove_unanswered(syn)
            .ok_or(Error::InvalidHandle)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Config;

    #[test]
    fn defaults_are_bounded() {
        let c = InterceptConfig::default();
        assert!(c.max_pending > 0 && c.max_per_source <= c.max_pending);
        assert!(c.decision_timeout > Duration::ZERO);
        let mut config = Config::default();
        config.intercept(Some(c));
        assert_eq!(config.intercept, Some(c));
    }
}
