//! RFC 6528 initial sequence numbers, and the endpoint's other per-connection secrets.
//!
//! Every value an off-path attacker could use to inject segments or fingerprint the host is
//! derived here from a keyed pseudo-random function: SipHash-2-4 (Aumasson and Bernstein,
//! "SipHash: a fast short-input PRF", 2012), the same PRF Linux uses for the same purpose.
//!
//! Each use gets its own 128-bit key, so that an attacker who learns outputs of one function
//! (a timestamp offset echoed in every segment, say) learns nothing about another (the ISNs).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::seq::SeqNumber;
use crate::time::Instant;

/// SipHash-2-4 of `data` under a 128-bit `key` (two compression rounds per 8-byte word, four
/// finalization rounds).
///
/// Written out here rather than taken from `std::hash::SipHasher`, which is deprecated and whose
/// output std does not promise to keep stable.
pub fn siphash24(key: &[u8; 16], data: &[u8]) -> u64 {
    let k0 = u64_le(&key[..8]);
    let k1 = u64_le(&key[8..]);
    // The initialization constants are the ASCII of "somepseudorandomlygeneratedbytes".
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];

    let mut words = data.chunks_exact(8);
    for word in words.by_ref() {
        compress(&mut v, u64_le(word));
    }
    // The last word holds the 0..=7 leftover bytes, little-endian, and the message length
    // modulo 256 in its top byte.
    let tail = words.remainder();
    let mut last = (data.len() as u64 & 0xff) << 56;
    for (i, &byte) in tail.iter().enumerate() {
        last |= u64::from(byte) << (8 * i);
    }
    compress(&mut v, last);

    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

/// Absorbs one message word with c = 2 SipRounds.
fn compress(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    sip_round(v);
    sip_round(v);
    v[0] ^= m;
}

/// One SipRound: the add-rotate-xor network of the paper's §2.
fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

/// A little-endian u64 from exactly eight bytes (callers slice them so).
fn u64_le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// 32 bytes of entropy from the operating system, without an I/O crate.
///
/// The core may not depend on `getrandom` or `libc`, but std already reads the OS's random
/// source for us: [`RandomState`] is documented as randomly keyed, to resist HashDoS. In
/// std's current implementation each thread's first `RandomState` is keyed from the OS
/// (`getrandom(2)` on Linux) and later ones on the same thread reuse those keys with one of
/// them incremented. Hashing a counter through four fresh `RandomState`s therefore yields 256
/// output bits that carry the thread's 128 bits of OS entropy: plenty for a ChaCha20 seed
/// whose job is to make ISNs and cookies unguessable, though not a general-purpose CSPRNG.
/// On a target where std has no entropy source, `RandomState` is weak and so is this.
///
/// The runtime may pass a seed of its own (from `getrandom`, say) to [`Secrets::new`] instead.
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_exact_mut(8).enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(i);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    seed
}

/// The endpoint's secrets: one independent 128-bit SipHash key per use (the ISN and the
/// timestamp offset are two halves of one hash, see [`Secrets::isn_and_ts_offset`]).
///
/// The keys are drawn from a ChaCha20 generator, so one 32-byte seed (fixed in tests for
/// reproducibility, from [`os_seed`] otherwise) yields them all.
#[derive(Clone)]
pub struct Secrets {
    /// Keys F of RFC 6528 (the ISN) and the timestamp offset: one 64-bit SipHash output of
    /// the 4-tuple serves both, its low half for the ISN and its high half for the offset.
    isn_key: [u8; 16],
    cookie_key: [u8; 16],
    port_key: [u8; 16],
    /// The TCP Fast Open server key (RFC 7413 §4.1.2), until the user sets one.
    fast_open_key: [u8; 16],
}

impl core::fmt::Debug for Secrets {
    /// Never prints the keys: a `Debug` dump in a log must not leak them.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secrets { .. }")
    }
}

/// Domain tags, so that the same key could never give the same output for two uses even if
/// two keys were somehow equal.
const TAG_ISN: u8 = 1;
const TAG_COOKIE: u8 = 2;
const TAG_PORT: u8 = 4;
const TAG_FLOW: u8 = 5;
const TAG_IP_ID: u8 = 6;
const TAG_FRAGMENT_ID: u8 = 7;
const TAG_REUSEPORT: u8 = 8;
const TAG_ICMP_CREDIT: u8 = 9;
const TAG_BIND_PORT: u8 = 10;
const TAG_PORT_TABLE: u8 = 11;
const TAG_PORT_JITTER: u8 = 12;

/// The longest hash input: tag, two IPv6 socket addresses (1 + 16 + 2 each), a protocol
/// number and a u32.
const MAX_INPUT: usize = 1 + 2 * 19 + 1 + 4;

/// A fixed-size, allocation-free buffer that hash inputs are serialized into.
struct Input {
    buf: [u8; MAX_INPUT],
    len: usize,
}

impl Input {
    fn new(tag: u8) -> Input {
        let mut input = Input {
            buf: [0; MAX_INPUT],
            len: 0,
        };
        input.put(&[tag]);
        input
    }

    fn put(&mut self, bytes: &[u8]) {
        // Inputs are built only by this module, from at most MAX_INPUT bytes.
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// An address with its family, so that an IPv4 address and an IPv6 address whose bytes
    /// start alike never serialize the same.
    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(v4) => {
                self.put(&[4]);
                self.put(&v4.octets());
            }
            IpAddr::V6(v6) => {
                self.put(&[6]);
                self.put(&v6.octets());
            }
        }
    }

    fn socket(&mut self, addr: SocketAddr) {
        self.ip(addr.ip());
        self.put(&addr.port().to_be_bytes());
    }

    fn hash(&self, key: &[u8; 16]) -> u64 {
        siphash24(key, &self.buf[..self.len])
    }
}

impl Secrets {
    /// Secrets drawn from `seed`, or from [`os_seed`] when `None`.
    pub fn new(seed: Option<[u8; 32]>) -> Secrets {
        let mut rng = ChaCha20Rng::from_seed(seed.unwrap_or_else(os_seed));
        let mut key = || {
            let mut k = [0u8; 16];
            rng.fill_bytes(&mut k);
            k
        };
        Secrets {
            isn_key: key(),
            cookie_key: key(),
            port_key: key(),
            // Drawn last, so that the keys before it are what they always were for a seed.
            fast_open_key: key(),
        }
    }

    /// The random key a TCP Fast Open server computes its cookies with (RFC 7413 §4.1.2),
    /// unless the user sets another (see `Endpoint::set_fast_open_key`).
    pub fn fast_open_key(&self) -> [u8; 16] {
        self.fast_open_key
    }

    /// The keyed hash of a 4-tuple that a connection's identity comes from: its low 32 bits
    /// are RFC 6528's F, its high 32 bits the timestamp offset. SipHash-2-4 is a PRF, so the
    /// two halves of one output are as unrelated as two outputs: a peer that learns the
    /// offset (TSval minus an uptime it would have to guess) learns nothing of F. A new
    /// connection so costs one SipHash instead of two.
    fn tuple_hash(&self, local: SocketAddr, remote: SocketAddr) -> u64 {
        let mut input = Input::new(TAG_ISN);
        input.socket(local);
        input.socket(remote);
        input.hash(&self.isn_key)
    }

    /// The initial sequence number for a connection and its timestamp offset (see
    /// [`Secrets::isn`] and [`Secrets::ts_offset`]), from one hash.
    pub fn isn_and_ts_offset(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> (SeqNumber, u32) {
        let h = self.tuple_hash(local, remote);
        (Self::isn_from(h, now), (h >> 32) as u32)
    }

    /// The initial sequence number for a connection.
    ///
    /// RFC 6528 §3: `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`, where M
    /// is "a 4 microsecond timer" and F a keyed PRF. The hash hides the sequence space of one
    /// connection from observers of another; the clock keeps successive incarnations of the
    /// same 4-tuple moving forward (RFC 9293 §3.4.1), about 2^32 per 4.77 hours.
    pub fn isn(&self, local: SocketAddr, remote: SocketAddr, now: Instant) -> SeqNumber {
        Self::isn_from(self.tuple_hash(local, remote), now)
    }

    fn isn_from(hash: u64, now: Instant) -> SeqNumber {
        // Truncation is intended: M counts modulo 2^32, F is the hash's low half.
        let m = (now.total_micros() / 4) as u32;
        SeqNumber(m.wrapping_add(hash as u32))
    }

    /// The offset added to the timestamp clock in this connection's TSval.
    ///
    /// A bare TSval is the sender's uptime, which lets a peer estimate it and tell hosts behind
    /// one address apart, so TSval gets a secret per-connection offset, as in Linux since 4.10
    /// (`tcp_timestamps = 1`). RFC 7323 only requires the clock to be monotonic within a
    /// connection. Deriving the offset from the 4-tuple keeps it the same for a new
    /// incarnation of the same connection, so the peer's PAWS check (RFC 7323 §5) on a
    /// TIME-WAIT reuse still sees timestamps that only move forward.
    pub fn ts_offset(&self, local: SocketAddr, remote: SocketAddr) -> u32 {
        (self.tuple_hash(local, remote) >> 32) as u32
    }

    /// The per-destination offset into the ephemeral port range.
    ///
    /// RFC 6056 §3.3.3 (Algorithm 3, "Simple Hash-Based Port Selection"): `offset =
    /// F(local_IP, remote_IP, remote_port, secret_key)`; the caller probes ports from
    /// `min_ephemeral + (offset + counter) % num_ephemeral`, with the counter
    /// [`port_table_index`](Self::port_table_index) picks (Algorithm 4). The local port is
    /// left out on purpose: it is the value being chosen.
    pub fn port_offset(&self, local: IpAddr, remote: SocketAddr) -> u32 {
        let mut input = Input::new(TAG_PORT);
        input.ip(local);
        input.socket(remote);
        input.hash(&self.port_key) as u32
    }

    /// Which of `buckets` counters the ephemeral ports from `local` to `remote` step through
    /// (RFC 6056 §3.3.4, Algorithm 4's second hash `G`): keyed apart from
    /// [`port_offset`](Self::port_offset), so that the destinations that share a counter
    /// cannot be told from the ports either gives. `buckets` is not 0.
    pub fn port_table_index(&self, local: IpAddr, remote: SocketAddr, buckets: usize) -> usize {
        let mut input = Input::new(TAG_PORT_TABLE);
        input.ip(local);
        input.socket(remote);
        (input.hash(&self.port_key) % buckets as u64) as usize
    }

    /// The pseudo-random step an ephemeral port counter takes past a connect's port (see
    /// `EPHEMERAL_JITTER` in `endpoint/connect.rs`): a keyed hash of the counter's index and
    /// value, which an outsider, who knows neither the index nor the value, cannot predict.
    pub fn port_jitter(&self, index: usize, counter: u32) -> u32 {
        let mut input = Input::new(TAG_PORT_JITTER);
        input.put(&(index as u64).to_be_bytes());
        input.put(&counter.to_be_bytes());
        input.hash(&self.port_key) as u32
    }

    /// Where the search for the `nth` port a bind to port 0 on `local` takes starts: a keyed
    /// hash of the address and of how many such binds came before, so that each starts
    /// anywhere in the range, as Linux's `udp_lib_get_port` and `inet_csk_find_open_port`
    /// start theirs at random. With [`port_offset`](Self::port_offset) alone, the only
    /// input a bind has, its address, gave every bind the same start, and a counter walked
    /// the ports one by one: whoever saw one port knew the next (RFC 6056 §2.1, RFC 5452 §4
    /// on DNS clients).
    pub fn bind_port_offset(&self, local: IpAddr, nth: u32) -> u32 {
        let mut input = Input::new(TAG_BIND_PORT);
        input.ip(local);
        input.put(&nth.to_be_bytes());
        input.hash(&self.port_key) as u32
    }

    /// The IPv6 flow label (RFC 6437) of the packets from `local` to `remote` of IP protocol
    /// `protocol`, for the `rehash`-th path of the flow: 20 bits, never 0 (0 means
    /// "unlabelled").
    ///
    /// RFC 6437 §3 asks a source to label each flow with a value that is uniformly
    /// distributed and hard to guess, and suggests a keyed hash of the 5-tuple; Linux labels
    /// every flow so (`auto_flowlabels`) from the socket's random hash, and draws a new one
    /// when a retransmission timeout suggests the path failed (`sk_rethink_txhash`), which
    /// `rehash` stands for here: a flow keeps its label for as long as it keeps its path, and
    /// every packet of one flow gets the same one whichever part of the stack sends it.
    pub fn flow_label(
        &self,
        local: SocketAddr,
        remote: SocketAddr,
        protocol: u8,
        rehash: u32,
    ) -> u32 {
        let mut input = Input::new(TAG_FLOW);
        input.socket(local);
        input.socket(remote);
        input.put(&[protocol]);
        input.put(&rehash.to_be_bytes());
        let h = input.hash(&self.port_key);
        let label = ((h ^ (h >> 32)) as u32) & 0x000f_ffff;
        label.max(1)
    }

    /// The IPv4 identification of a connection's first packet (its SYN, or what follows
    /// its SYN-ACK), counting up by one a packet from there (Linux's `inet_id`). Linux
    /// draws it at random for each connection; a keyed hash of the 4-tuple and the ISN is
    /// as unpredictable to anyone without the key and differs between incarnations.
    pub fn ip_id(&self, local: SocketAddr, remote: SocketAddr, iss: SeqNumber) -> u16 {
        let mut input = Input::new(TAG_IP_ID);
        input.socket(local);
        input.socket(remote);
        input.put(&iss.0.to_be_bytes());
        input.hash(&self.port_key) as u16
    }

    /// What the identification of a fragmented datagram from `src` to `dst` is drawn from
    /// (see `Endpoint::fragment_ident`): a keyed hash of the pair, as Linux's
    /// `ip_select_ident` hashes it to pick one of its counters and perturb it (RFC 7739 §5:
    /// identifications no onlooker can predict or use to count what went elsewhere).
    pub fn fragment_ident(&self, src: IpAddr, dst: IpAddr) -> u64 {
        let mut input = Input::new(TAG_FRAGMENT_ID);
        input.ip(src);
        input.ip(dst);
        input.hash(&self.port_key)
    }

    /// Which of the listeners sharing a port with SO_REUSEPORT takes the connection from
    /// `remote` to `local`: a keyed hash of the 4-tuple, as Linux's
    /// `reuseport_select_sock` scales the tuple's `inet_ehashfn`, so that every segment of
    /// one handshake (a SYN cookie's ACK too) finds the same listener and no client can aim
    /// at one.
    pub fn reuseport_hash(&self, local: SocketAddr, remote: SocketAddr) -> u32 {
        let mut input = Input::new(TAG_REUSEPORT);
        input.socket(local);
        input.socket(remote);
        input.hash(&self.port_key) as u32
    }

    /// The global ICMP credit the `n`th ICMP error spends: 0, 1 or 2, unpredictable (a keyed
    /// hash of the count), 1 on average, as Linux's `icmp_global_consume` draws it
    /// (`get_random_u32_below(3)`) so that an onlooker cannot count what the bucket spent
    /// on others (the side channel of CVE-2020-25705).
    pub fn icmp_credit(&self, n: u64) -> u64 {
        let mut input = Input::new(TAG_ICMP_CREDIT);
        input.put(&n.to_be_bytes());
        input.hash(&self.port_key) % 3
    }

    /// A seed for the endpoint's hash tables, so that an attacker who picks 4-tuples cannot
    /// aim them at one bucket without knowing it (derived from the port key, which no output
    /// reveals directly).
    pub fn table_seed(&self) -> u64 {
        siphash24(&self.port_key, b"synack hash table seed")
    }

    /// The keyed hash a SYN cookie is built from: F(4-tuple, count) under the cookie key,
    /// where `count` is the caller's slowly advancing time counter, so that a cookie can only
    /// be validated within a bounded time.
    pub fn cookie_hash(&self, local: SocketAddr, remote: SocketAddr, count: u32) -> u32 {
        let mut input = Input::new(TAG_COOKIE);
        input.socket(local);
        input.socket(remote);
        input.put(&count.to_be_bytes());
        input.hash(&self.cookie_key) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn paper_key() -> [u8; 16] {
        core::array::from_fn(|i| i as u8)
    }

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 18, 0, a)), port)
    }

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn siphash_paper_vector_15_bytes() {
        // SipHash paper, Appendix A: key 00..0f, message 00..0e.
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(&paper_key(), &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn siphash_empty_message_vector() {
        assert_eq!(siphash24(&paper_key(), &[]), 0x726f_db47_dd0e_0e31);
    }

    /// Cross-checks every message length 0..64 (so every tail length and several whole words)
    /// against std's SipHasher, which is SipHash-2-4 too.
    #[test]
    #[allow(deprecated)]
    fn siphash_matches_std_for_all_tail_lengths() {
        let key = paper_key();
        let msg: Vec<u8> = (0u8..64).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
        for len in 0..msg.len() {
            let mut std_hasher = std::hash::SipHasher::new_with_keys(
                u64::from_le_bytes(key[..8].try_into().unwrap()),
                u64::from_le_bytes(key[8..].try_into().unwrap()),
            );
            std_hasher.write(&msg[..len]);
            assert_eq!(
                siphash24(&key, &msg[..len]),
                std_hasher.finish(),
                "len {len}"
            );
        }
    }

    #[test]
    fn siphash_depends_on_key_and_length() {
        let other: [u8; 16] = core::array::from_fn(|i| i as u8 ^ 0x80);
        assert_ne!(siphash24(&paper_key(), b"abc"), siphash24(&other, b"abc"));
        // Trailing zero bytes change the length byte, hence the hash.
        assert_ne!(
            siphash24(&paper_key(), &[0]),
            siphash24(&paper_key(), &[0, 0])
        );
    }

    #[test]
    fn os_seed_is_not_constant() {
        let a = os_seed();
        let b = os_seed();
        assert_ne!(a, [0; 32]);
        assert_ne!(a, b, "fresh RandomStates must give fresh bytes");
        // The four 8-byte words come from different hashers and differ.
        assert_ne!(a[..8], a[8..16]);
    }

    #[test]
    fn isn_differs_across_four_tuples() {
        let s = Secrets::new(Some(SEED));
        let t = Instant::from_secs(1);
        let base = s.isn(v4(2, 40000), v4(1, 80), t);
        assert_ne!(base, s.isn(v4(2, 40001), v4(1, 80), t), "local port");
        assert_ne!(base, s.isn(v4(2, 40000), v4(1, 81), t), "remote port");
        assert_ne!(base, s.isn(v4(3, 40000), v4(1, 80), t), "local address");
        assert_ne!(base, s.isn(v4(2, 40000), v4(4, 80), t), "remote address");
        assert_ne!(base, s.isn(v4(1, 80), v4(2, 40000), t), "direction");
    }

    #[test]
    fn isn_advances_one_per_four_microseconds() {
        let s = Secrets::new(Some(SEED));
        let (l, r) = (v4(2, 40000), v4(1, 80));
        let t0 = Instant::from_micros(1_000_000);
        let a = s.isn(l, r, t0);
        assert_eq!(s.isn(l, r, Instant::from_micros(1_000_003)), a);
        assert_eq!(s.isn(l, r, Instant::from_micros(1_000_004)), a + 1);
        assert_eq!(
            s.isn(l, r, t0 + std::time::Duration::from_secs(1)),
            a + 250_000
        );
    }

    #[test]
    fn isn_wraps_modulo_2_32() {
        let s = Secrets::new(Some(SEED));
        let (l, r) = (v4(2, 40000), v4(1, 80));
        let a = s.isn(l, r, Instant::ZERO);
        // 2^32 ticks of 4 µs later, the clock term has wrapped back to where it started.
        let later = Instant::from_micros(4 << 32);
        assert_eq!(s.isn(l, r, later), a);
    }

    #[test]
    fn same_seed_same_secrets_different_seed_different() {
        let (l, r, t) = (v4(2, 40000), v4(1, 80), Instant::from_secs(3));
        let a = Secrets::new(Some(SEED));
        let b = Secrets::new(Some(SEED));
        let c = Secrets::new(Some([8; 32]));
        assert_eq!(a.isn(l, r, t), b.isn(l, r, t));
        assert_eq!(a.ts_offset(l, r), b.ts_offset(l, r));
        assert_eq!(a.port_offset(l.ip(), r), b.port_offset(l.ip(), r));
        assert_eq!(a.cookie_hash(l, r, 9), b.cookie_hash(l, r, 9));
        assert_ne!(a.isn(l, r, t), c.isn(l, r, t));
        assert_ne!(a.ts_offset(l, r), c.ts_offset(l, r));
        assert_ne!(a.cookie_hash(l, r, 9), c.cookie_hash(l, r, 9));
    }

    #[test]
    fn os_seeded_secrets_differ() {
        let (l, r) = (v4(2, 40000), v4(1, 80));
        let a = Secrets::new(None);
        let b = Secrets::new(None);
        assert_ne!(a.isn(l, r, Instant::ZERO), b.isn(l, r, Instant::ZERO));
    }

    #[test]
    fn keys_are_independent() {
        let s = Secrets::new(Some(SEED));
        let keys = [s.isn_key, s.cookie_key, s.port_key, s.fast_open_key];
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        // The same 4-tuple gives unrelated values from different functions.
        let (l, r) = (v4(2, 40000), v4(1, 80));
        assert_ne!(s.isn(l, r, Instant::ZERO).0, s.ts_offset(l, r));
    }

    #[test]
    fn one_hash_gives_the_isn_and_the_offset() {
        let s = Secrets::new(Some(SEED));
        let (l, r, t) = (v4(2, 40000), v4(1, 80), Instant::from_secs(7));
        assert_eq!(
            s.isn_and_ts_offset(l, r, t),
            (s.isn(l, r, t), s.ts_offset(l, r))
        );
        // The offset belongs to the 4-tuple, not to the clock.
        assert_eq!(
            s.isn_and_ts_offset(l, r, Instant::ZERO).1,
            s.ts_offset(l, r)
        );
        assert_ne!(s.ts_offset(l, r), s.ts_offset(l, v4(1, 81)));
    }

    #[test]
    fn port_offset_ignores_nothing_it_should_use() {
        let s = Secrets::new(Some(SEED));
        let local = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2));
        let base = s.port_offset(local, v4(1, 80));
        assert_eq!(base, s.port_offset(local, v4(1, 80)));
        assert_ne!(base, s.port_offset(local, v4(1, 443)));
        assert_ne!(base, s.port_offset(local, v4(9, 80)));
        assert_ne!(
            base,
            s.port_offset(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)), v4(1, 80))
        );
    }

    #[test]
    fn cookie_hash_depends_on_count() {
        let s = Secrets::new(Some(SEED));
        let (l, r) = (v4(2, 40000), v4(1, 80));
        assert_ne!(s.cookie_hash(l, r, 1), s.cookie_hash(l, r, 2));
        assert_ne!(s.cookie_hash(l, r, 1), s.cookie_hash(r, l, 1));
    }

    #[test]
    fn ipv6_and_ipv4_tuples_hash_apart() {
        let s = Secrets::new(Some(SEED));
        let a6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 80);
        let b6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 80);
        let a4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 80);
        assert_ne!(s.ts_offset(a6, b6), s.ts_offset(b6, a6));
        assert_ne!(s.ts_offset(a6, a4), s.ts_offset(a4, a6));
        // Longest input (two IPv6 addresses plus a count) fits the fixed buffer.
        let _ = s.cookie_hash(a6, b6, u32::MAX);
    }

    #[test]
    fn debug_hides_keys() {
        let s = Secrets::new(Some(SEED));
        assert_eq!(format!("{s:?}"), "Secrets { .. }");
    }
}
