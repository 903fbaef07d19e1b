//! IP reassembly (RFC 791 §3.2, RFC 8200 §4.5; RFC 1122 §3.3.2 requires it of hosts): the
//! fragments of UDP and ICMP datagrams held until the datagram is whole, then handed on as
//! if it had come in one piece.
//!
//! Bounded as Linux bounds it: every datagram is given up `Config::fragment_timeout` after
//! its first piece came (`ipfrag_time`, 30 s), with an ICMP time exceeded (code 1) to the
//! sender if the piece at offset 0 was there (`ip_expire`, `ip6_expire_frag_queue`); and the
//! datagrams held take at most `Config::fragment_memory` bytes (`ipfrag_high_thresh`, 4 MiB),
//! each charged for its pieces' data, its first piece's headers and the bookkeeping of both,
//! so that the cap bounds the heap whatever the pieces' sizes (Linux charges each skb's
//! truesize and each queue). Past that, the oldest datagrams are given up to make room, so
//! that a sender that never completes its datagrams cannot keep the next sender's out for
//! the whole timeout; here synack departs from Linux, which since 4.17 drops every new
//! fragment while over `ipfrag_high_thresh` (`inet_frag_find`). A piece that overlaps another is fatal to its whole datagram (RFC 5722,
//! which Linux applies to IPv4 too since 4.19: overlaps are how filters are evaded and
//! teardrop-style bugs reached); one wholly within what is held is a repeat, and ignored.
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
pub const PIECE_OVERHEAD: usize = 128;

/// What a datagram being reassembled costs beyond its pieces and its first piece's headers
/// (which are charged as they are): its table entries and the first node of its pieces'
/// tree, so that a flood of one-piece datagrams holds no more heap than the cap says.
pub const DATAGRAM_OVERHEAD: usize = 1024;

/// What names a datagram: its addresses, identification and, for IPv4, protocol (RFC 791
/// §3.2). RFC 8200 §4.5 names an IPv6 one without it (its pieces' Next Header values may
/// differ; the first piece's is the datagram's), as Linux's `ip6_frag_queue` does: 0 here.
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
    /// The piece at offset 0's headers (empty until it comes), where in them the Next
    /// Header field that named the Fragment header is (IPv6), and its protocol: the
    /// datagram's.
    header: Vec<u8>,
    next_header_at: usize,
    protocol: IpProtocol,
    /// Held pieces, by offset, none overlapping another: a tree, so that pieces arriving in
    /// any order cost a logarithm each, however many a sender cuts its datagram into.
    pieces: BTreeMap<usize, Piece>,
    /// The payload's length, known once the last piece (MF clear) came.
    len: Option<usize>,
    /// Data bytes held.
    held: usize,
    /// What it is charged against `fragment_memory`.
    charge: usize,
}

/// One held piece.
#[derive(Debug)]
struct Piece {
    data: Vec<u8>,
    /// Where its run starts: pieces that came one after another at the end of what was held,
    /// back to back, make a run (Linux's `fragrun_append_to_last`); any other piece starts
    /// one of its own. A repeat must lie within one run.
    run: usize,
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
    pub(super) fn handle_fragment(&mut self, now: Instant, mut frag: Fragment<'_>, packet: &[u8]) {
        let key = Key {
            src: frag.src,
            dst: frag.dst,
            ident: frag.ident,
            protocol: if frag.src.is_ipv4() {
                u8::from(frag.protocol)
            } else {
                0
            },
        };
        // The datagram's protocol is in every IPv4 piece's header (RFC 791), but only in the
        // first IPv6 piece's Fragment header: "Only the value from the Offset zero fragment
        // packet is used for reassembly" (RFC 8200 §4.5); a later piece's may say anything,
        // and Linux's `ipv6_frag_rcv` never reads it. A first piece of a protocol not
        // reassembled gives up the pieces held for its datagram: it will never be whole.
        if (frag.src.is_ipv4() || frag.offset == 0) && !reassembled(frag.protocol) {
            let given_up = self.reassembly.remove(&key).map_or(0, |d| d.pieces.len());
            self.stats.drop_fragment += 1 + given_up as u64;
            self.reassembly.tidy();
            return;
        }
        // RFC 1122 §3.2.1.3: nothing from a broadcast or multicast source is taken, a piece
        // of one neither (it would be held, and its timeout answered to the group).
        if !self.is_unicast(frag.src) {
            self.stats.drop_malformed += 1;
            return;
        }
        // RFC 791's 8-octet offsets: an IPv4 piece but the last loses the bytes past its last
        // whole 8 (Linux's `ip_frag_queue` rounds `end` down); RFC 8200 §4.5 has an IPv6 one
        // that is not a multiple of 8 discarded. None may be empty or reach past the largest
        // datagram.
        if frag.more && frag.src.is_ipv4() {
            frag.data = &frag.data[..frag.data.len() & !7];
        }
        let end = frag.offset + frag.data.len();
        let past_max = end > frag.max_payload();
        let unaligned = frag.more && !frag.data.len().is_multiple_of(8);
        if frag.data.is_empty() || unaligned || past_max {
            self.stats.drop_malformed += 1;
            // RFC 8200 §4.5: an IPv6 piece that would take the datagram past 65,535 bytes
            // draws a parameter problem pointing at its Fragment Offset, one with more to
            // come whose length is not a multiple of 8 one pointing at its Payload Length
            // (Linux's `ip6_frag_queue`, in that order); an empty one goes in silence.
            if let (IpAddr::V6(_), false) = (frag.src, frag.data.is_empty()) {
                let pointer = if past_max { frag.header.len() + 2 } else { 4 };
                let pointer = u32::try_from(pointer).unwrap_or(u32::MAX);
                self.answer_problem(now, packet, frag.src, frag.dst, (4, 0, pointer));
            }
            return;
        }
        // The piece, its headers if it is the first (kept to rebuild the datagram), and the
        // datagram's own bookkeeping if it is new.
        let new = !self.reassembly.datagrams.contains_key(&key);
        let cost = frag.data.len()
            + PIECE_OVERHEAD
            + if frag.offset == 0 {
                frag.header.len()
            } else {
                0
            }
            + if new { DATAGRAM_OVERHEAD } else { 0 };
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
        if !new && !datagrams.contains_key(&key) {
            // Room was made by giving up this very datagram: this piece starts it again,
            // and would be charged too little.
            self.stats.drop_fragment += 1;
            return;
        }
        let d = datagrams.entry(key).or_insert_with(|| {
            order.push_back((now, key));
            Datagram {
                born: now,
                header: Vec::new(),
                next_header_at: 0,
                protocol: frag.protocol,
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
            d.protocol = frag.protocol;
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
            payload.extend_from_slice(&piece.data);
        }
        match fragment::rebuild(&d.header, d.next_header_at, d.protocol, &payload) {
            Some(whole) => {
                self.stats.fragments_reassembled += 1;
                self.handle_ip(now, &whole, super::RecvMeta::new(whole.len()), None);
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
                self.fragment_time_exceeded(now, &key, &d, &first.data);
            }
        }
        self.reassembly.tidy();
    }

    /// ICMP time exceeded, "fragment reassembly time exceeded", to a datagram's sender,
    /// quoting its first piece as it came, as much as an error may carry (RFC 792, RFC 1812
    /// §4.3.2.3, RFC 4443 §2.4), within the ICMP rate limit. Never about an ICMP error
    /// (RFC 1122 §3.2.2: no error about an error), nor to a source that is not unicast.
    fn fragment_time_exceeded(&mut self, now: Instant, key: &Key, d: &Datagram, first: &[u8]) {
        let (header, protocol) = (&d.header, d.protocol);
        let v6 = key.src.is_ipv6();
        let icmp_error = match (protocol, first.first()) {
            (IpProtocol::Icmp, Some(&t)) => matches!(t, 3 | 4 | 5 | 11 | 12),
            (IpProtocol::Icmpv6, Some(&t)) => t < 128,
            _ => false,
        };
        // Only for a datagram to one of our own addresses: in intercept mode one to
        // elsewhere is given up in silence, as Linux's `ip_expire` skips the message for a
        // destination that is not local.
        if header.is_empty()
            || icmp_error
            || !self.addresses.contains(&key.dst)
            || !self.is_unicast(key.src)
            || self.control_full()
            || !self.icmp_allowed(now, key.src)
        {
            return;
        }
        // The first piece as it came: its headers, IPv6's Fragment header (offset 0, M set,
        // the identification; the headers before it name it), its data.
        let mut quote = header.to_vec();
        if v6 {
            quote.extend_from_slice(&[u8::from(protocol), 0, 0, 1]);
            quote.extend_from_slice(&key.ident.to_be_bytes());
        }
        let max = super::udp::quote_max(v6);
        let room = max.saturating_sub(quote.len());
        quote.extend_from_slice(&first[..first.len().min(room)]);
        // Long extension headers alone may pass the limit: the message must still fit the
        // minimum MTU (RFC 4443 §2.4(c)), as Linux cuts every quote.
        quote.truncate(max);
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
                .is_some_and(|(o, p)| o + p.data.len() > end)
        {
            return Placed::Fatal;
        }
    } else if d.len.is_some_and(|len| end > len) {
        return Placed::Fatal;
    }
    // Linux's `inet_frag_queue_insert`: a piece that lies wholly within one run of held
    // pieces repeats them (IPFRAG_DUP, dropped, the datagram kept); one that overlaps what is
    // held otherwise is an overlap (RFC 5722, the datagram given up).
    let before = d.pieces.range(..=frag.offset).next_back();
    let covered_from = before.filter(|(o, p)| *o + p.data.len() > frag.offset);
    if let Some((&o, p)) = covered_from {
        // Walk the run this starts in, piece by piece.
        let run = p.run;
        let mut reach = o + p.data.len();
        for (&next, q) in d.pieces.range(o + 1..) {
            if reach >= end || next != reach || q.run != run {
                break;
            }
            reach += q.data.len();
        }
        return if reach >= end {
            Placed::Duplicate
        } else {
            Placed::Fatal
        };
    }
    // Starting in a gap: it must end before the next piece.
    if let Some((&o, _)) = d.pieces.range(frag.offset..).next() {
        if o < end {
            return Placed::Fatal;
        }
    }
    // It joins the last piece's run if it comes right after it, at the end of all that is
    // held.
    let run = match d.pieces.last_key_value() {
        Some((&o, last)) if o + last.data.len() == frag.offset => last.run,
        _ => frag.offset,
    };
    d.pieces.insert(
        frag.offset,
        Piece {
            data: frag.data.to_vec(),
            run,
        },
    );
    d.held += frag.data.len();
    if !frag.more {
        d.len = Some(end);
    }
    Placed::Held
}
