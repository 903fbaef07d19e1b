//! IP reassembly (RFC 791 §3.2, RFC 8200 §4.5; RFC 1122 §3.3.2 requires it of hosts): the
//! fragments of UDP and ICMP datagrams held until the datagram is whole, then handed on as
//! if it had come in one piece.
//!
//! Bounded as Linux bounds it: every datagram is given up `Config::fragment_timeout` after
//! its first piece came (`ipfrag_time`, 30 s), with an ICMP time exceeded (code 1) to the
//! sender if the piece at offset 0 was there (`ip_expire`, `ip6_expire_frag_queue`); and the
//! pieces held take at most `Config::fragment_memory` bytes (`ipfrag_high_thresh`, 4 MiB),
//! each charged for its data and its bookkeeping. Past that, the oldest datagrams are given
//! up to make room: a sender that never completes its datagrams cannot keep the next
//! sender's out for the whole timeout. A piece that overlaps another is fatal to its whole
//! datagram (RFC 5722, which Linux applies to IPv4 too since 4.19: overlaps are how filters
//! are evaded and teardrop-style bugs reached); an exact duplicate is ignored.
//!
//! TCP is not reassembled: a TCP sender sizes its segments to the path (MSS and path MTU
//! discovery with DF set, RFC 9293 §3.7.1), so a fragmented segment is a middlebox's doing
//! or an attack's, and a shard of a multi-queue stack could not tell which shard owns a
//! flow from a fragment without ports. Its fragments are dropped (`drop_fragment`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use super::output::Own;
use super::Endpoint;
use crate::time::Instant;
use crate::wire::fragment::{self, Fragment};
use crate::wire::{IcmpRepr, IpProtocol};

/// What a held piece costs beyond its data: its entry and allocation (about Linux's skb
/// overhead for a small fragment), so that tiny pieces cannot hold more than the cap says.
pub(super) const PIECE_OVERHEAD: usize = 128;

/// What names a datagram: its addresses, identification and protocol (RFC 791 §3.2; RFC
/// 8200 §4.5 names it without the protocol, which every piece of it carries alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    ident: u32,
    protocol: u8,
}

/// The pieces of one datagram so far.
#[derive(Debug)]
struct Datagram {
    /// When its first piece came: it is given up `fragment_timeout` after.
    born: Instant,
    /// The piece at offset 0's headers (empty until it comes) and where in them the Next
    /// Header field that named the Fragment header is (IPv6).
    header: Vec<u8>,
    next_header_at: usize,
    /// Held pieces, by offset, none overlapping another: a tree, so that pieces arriving in
    /// any order cost a logarithm each, however many a sender cuts its datagram into.
    pieces: BTreeMap<usize, Vec<u8>>,
    /// The payload's length, known once the last piece (MF clear) came.
    len: Option<usize>,
    /// Data bytes held.
    held: usize,
    /// What it is charged against `fragment_memory`.
    charge: usize,
}

/// The datagrams being reassembled.
#[derive(Debug, Default)]
pub(super) struct Reassembly {
    datagrams: HashMap<Key, Datagram>,
    /// Datagrams in the order their first piece came, with that time: expiry and eviction
    /// take the front. An entry whose datagram is gone, or is a younger one of the same key,
    /// is skipped.
    order: VecDeque<(Instant, Key)>,
    /// Bytes charged in all.
    memory: usize,
}

impl Reassembly {
    /// Bytes the held pieces are charged.
    pub(super) fn memory(&self) -> usize {
        self.memory
    }

    /// When the oldest datagram is to be given up.
    fn next_expiry(&self, timeout: std::time::Duration) -> Option<Instant> {
        self.order.front().map(|&(born, _)| born + timeout)
    }

    /// Forgets `key`'s datagram; returns it.
    fn remove(&mut self, key: &Key) -> Option<Datagram> {
        let d = self.datagrams.remove(key)?;
        self.memory -= d.charge;
        Some(d)
    }

    /// Drops `order` entries whose datagram is gone from the front, and the whole queue's
    /// stale entries once they outnumber the live ones (bounded memory under churn).
    fn tidy(&mut self) {
        while let Some(&(born, key)) = self.order.front() {
            match self.datagrams.get(&key) {
                Some(d) if d.born == born => break,
                _ => {
                    self.order.pop_front();
                }
            }
        }
        if self.order.len() > 2 * self.datagrams.len() + 64 {
            let datagrams = &self.datagrams;
            self.order
                .retain(|(born, key)| datagrams.get(key).is_some_and(|d| d.born == *born));
        }
    }
}

/// Whether a fragment of `protocol` is reassembled (see the module's comment on TCP).
fn reassembled(protocol: IpProtocol) -> bool {
    matches!(
        protocol,
        IpProtocol::Udp | IpProtocol::Icmp | IpProtocol::Icmpv6
    )
}

impl Endpoint {
    /// A fragment (see [`Fragment::parse`]), already taken as ours: held
    /// with the other pieces of its datagram, and the datagram handed on when whole.
    pub(super) fn handle_fragment(&mut self, now: Instant, frag: Fragment<'_>) {
        if !reassembled(frag.protocol) {
            self.stats.drop_fragment += 1;
            return;
        }
        // RFC 8200 §4.5 (and RFC 791's 8-octet offsets): every piece but the last carries a
        // multiple of 8 bytes, none is empty, and none reaches past the largest datagram.
        let end = frag.offset + frag.data.len();
        if frag.data.is_empty()
            || frag.more && !frag.data.len().is_multiple_of(8)
            || end > frag.max_payload()
        {
            self.stats.drop_malformed += 1;
            return;
        }
        let key = Key {
            src: frag.src,
            dst: frag.dst,
            ident: frag.ident,
            protocol: u8::from(frag.protocol),
        };
        let cost = frag.data.len() + PIECE_OVERHEAD;
        // Room is made by giving up the oldest datagrams, this one's among them if it is.
        if !self.make_room_for_fragment(cost) {
            self.stats.drop_fragment += 1;
            return;
        }
        let Reassembly {
            datagrams,
            order,
            memory,
        } = &mut self.reassembly;
        let d = datagrams.entry(key).or_insert_with(|| {
            order.push_back((now, key));
            Datagram {
                born: now,
                header: Vec::new(),
                next_header_at: 0,
                pieces: BTreeMap::new(),
                len: None,
                held: 0,
                charge: 0,
            }
        });
        match place(d, &frag, end) {
            Placed::Held => {}
            Placed::Duplicate => {
                self.stats.drop_fragment += 1;
                return;
            }
            Placed::Fatal => {
                // This piece and every one held: the datagram is given up.
                let given_up = self.reassembly.remove(&key).map_or(0, |d| d.pieces.len());
                self.stats.drop_fragment += 1 + given_up as u64;
                self.reassembly.tidy();
                return;
            }
        }
        d.charge += cost;
        *memory += cost;
        if frag.offset == 0 {
            d.header = frag.header.to_vec();
            d.next_header_at = frag.next_header_at;
        }
        if d.header.is_empty() || d.len != Some(d.held) {
            return;
        }
        // Whole: pieces that do not overlap and add up to the length cover it all.
        let Some(d) = self.reassembly.remove(&key) else {
            return;
        };
        self.reassembly.tidy();
        let mut payload = Vec::with_capacity(d.held);
        for piece in d.pieces.values() {
            payload.extend_from_slice(piece);
        }
        match fragment::rebuild(&d.header, d.next_header_at, frag.protocol, &payload) {
            Some(whole) => {
                self.stats.fragments_reassembled += 1;
                self.handle_ip(now, &whole, super::RecvMeta::new(whole.len()));
            }
            None => self.stats.drop_malformed += 1,
        }
    }

    /// Gives up the oldest datagrams until `cost` more bytes fit under
    /// `Config::fragment_memory`; `false` if they cannot (a cap below one piece).
    fn make_room_for_fragment(&mut self, cost: usize) -> bool {
        let cap = self.config.fragment_memory;
        if cost > cap {
            return false;
        }
        while self.reassembly.memory + cost > cap {
            let Some((_, key)) = self.reassembly.order.pop_front() else {
                break;
            };
            if let Some(d) = self.reassembly.remove(&key) {
                self.stats.drop_fragment += d.pieces.len() as u64;
                self.stats.fragments_evicted += 1;
            }
            self.reassembly.tidy();
        }
        self.reassembly.memory + cost <= cap
    }

    /// When the oldest datagram being reassembled is to be given up.
    pub(super) fn next_fragment_expiry(&self) -> Option<Instant> {
        self.reassembly.next_expiry(self.config.fragment_timeout)
    }

    /// Gives up every datagram whose first piece came `Config::fragment_timeout` ago or
    /// more, telling its sender with an ICMP time exceeded, code 1, if the piece at offset
    /// 0 was in (RFC 792, RFC 4443 §3.3; Linux's `ip_expire`, which quotes that piece).
    pub(super) fn expire_fragments(&mut self, now: Instant) {
        let timeout = self.config.fragment_timeout;
        while let Some(&(born, key)) = self.reassembly.order.front() {
            if born + timeout > now {
                break;
            }
            self.reassembly.order.pop_front();
            let Some(d) = self.reassembly.datagrams.get(&key) else {
                continue;
            };
            if d.born != born {
                continue;
            }
            let Some(d) = self.reassembly.remove(&key) else {
                continue;
            };
            self.stats.drop_fragment += d.pieces.len() as u64;
            self.stats.fragments_expired += 1;
            if let Some((0, first)) = d.pieces.first_key_value() {
                self.fragment_time_exceeded(now, &key, &d.header, first);
            }
        }
        self.reassembly.tidy();
    }

    /// ICMP time exceeded, "fragment reassembly time exceeded", to a datagram's sender,
    /// quoting its first piece's headers and first 8 data bytes (RFC 792), within the ICMP
    /// rate limit.
    fn fragment_time_exceeded(&mut self, now: Instant, key: &Key, header: &[u8], first: &[u8]) {
        if header.is_empty() || self.control_full() || !self.icmp_allowed(now) {
            return;
        }
        let mut quote = header.to_vec();
        quote.extend_from_slice(&first[..first.len().min(8)]);
        let error = IcmpRepr::TimeExceeded {
            code: 1,
            invoking: &quote,
        };
        self.send_icmp(key.dst, key.src, &error, Own::TimeExceeded);
    }
}

/// What placing a piece did.
enum Placed {
    /// It is held.
    Held,
    /// It repeats a piece held, whole: ignored (as Linux's IPFRAG_DUP).
    Duplicate,
    /// It overlaps a piece held, disagrees on the datagram's length, or reaches past it:
    /// the datagram is given up.
    Fatal,
}

/// Puts `frag` (data ending at `end`) among `d`'s pieces.
fn place(d: &mut Datagram, frag: &Fragment<'_>, end: usize) -> Placed {
    if !frag.more {
        // The last piece fixes the length: a second last piece must agree, and nothing
        // held may lie past it.
        if d.len.is_some_and(|len| len != end)
            || d.pieces
                .last_key_value()
                .is_some_and(|(o, p)| o + p.len() > end)
        {
            return Placed::Fatal;
        }
    } else if d.len.is_some_and(|len| end >= len) {
        return Placed::Fatal;
    }
    // The first piece held at or after this one's offset; the one before it may reach in.
    if let Some((&o, p)) = d.pieces.range(frag.offset..).next() {
        if o == frag.offset && p.len() == frag.data.len() {
            return Placed::Duplicate;
        }
        if o < end {
            return Placed::Fatal;
        }
    }
    if let Some((&o, p)) = d.pieces.range(..frag.offset).next_back() {
        if o + p.len() > frag.offset {
            return Placed::Fatal;
        }
    }
    d.pieces.insert(frag.offset, frag.data.to_vec());
    d.held += frag.data.len();
    if !frag.more {
        d.len = Some(end);
    }
    Placed::Held
}
