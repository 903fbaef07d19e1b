//! The endpoint's hash tables and their key, the 4-tuple: shared by the connection index and
//! the TIME-WAIT table.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// Superseded entries a lazily-deleted queue (the timer heap, the TIME-WAIT expiry queue)
/// may hold beyond twice its live ones before it is rebuilt.
pub(crate) const COMPACT_SLACK: usize = 1024;

/// A table or queue keeps up to this many entries' room however empty it gets: below it,
/// giving memory back saves less than the reallocation costs.
pub(crate) const SHRINK_FLOOR: usize = 64;

/// A collection whose capacity can be given back.
pub(crate) trait Shrink {
    fn len(&self) -> usize;
    fn capacity(&self) -> usize;
    fn shrink_to(&mut self, capacity: usize);
}

/// Gives back what a collection grew to at a peak (a flood of connections, say) once the
/// peak has passed: when it has room for over four times `live` (what it holds, or serves,
/// now) and [`SHRINK_FLOOR`], it keeps room for twice that. The gap between the two keeps a
/// collection that swings around one size from being reallocated on each swing, so the
/// cost is amortised O(1) per removal. Linux frees each socket and its hash chain entry as
/// it goes; without this an endpoint would hold a flood's tables for its whole life.
pub(crate) fn shrink_after_peak(c: &mut impl Shrink, live: usize) {
    let live = live.max(c.len());
    if c.capacity() > 4 * live.max(SHRINK_FLOOR) {
        c.shrink_to(2 * live.max(SHRINK_FLOOR));
    }
}

impl<K: Eq + Hash, V, S: BuildHasher> Shrink for HashMap<K, V, S> {
    fn len(&self) -> usize {
        self.len()
    }
    fn capacity(&self) -> usize {
        self.capacity()
    }
    fn shrink_to(&mut self, capacity: usize) {
        self.shrink_to(capacity);
    }
}

impl<T> Shrink for Vec<T> {
    fn len(&self) -> usize {
        self.len()
    }
    fn capacity(&self) -> usize {
        self.capacity()
    }
    fn shrink_to(&mut self, capacity: usize) {
        self.shrink_to(capacity);
    }
}

impl<T> Shrink for VecDeque<T> {
    fn len(&self) -> usize {
        self.len()
    }
    fn capacity(&self) -> usize {
        self.capacity()
    }
    fn shrink_to(&mut self, capacity: usize) {
        self.shrink_to(capacity);
    }
}

impl<T: Ord> Shrink for BinaryHeap<T> {
    fn len(&self) -> usize {
        self.len()
    }
    fn capacity(&self) -> usize {
        self.capacity()
    }
    fn shrink_to(&mut self, capacity: usize) {
        self.shrink_to(capacity);
    }
}

/// The endpoint's hash maps keyed by addresses a peer chooses: foldhash (fast on small keys),
/// with a per-endpoint secret seed so collisions cannot be aimed (std's SipHash cost a sixth
/// of the time per handshake).
pub(crate) type Table<K, V> = HashMap<K, V, foldhash::fast::SeedableRandomState>;

pub(crate) fn table<K, V>(seed: u64) -> Table<K, V> {
    HashMap::with_hasher(foldhash::fast::SeedableRandomState::with_seed(
        seed,
        foldhash::SharedSeed::global_fixed(),
    ))
}

/// A connection's 4-tuple, `(local, remote)`, as a table key.
///
/// It is hashed for every segment that arrives, so it feeds the hasher a few whole words
/// (both IPv4 addresses in one, both ports in another) instead of going through
/// `SocketAddr`'s field-by-field `Hash`, which makes eight hasher calls per address.
/// Equality is still on the full addresses: an IPv4 and an IPv6 tuple never compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tuple(pub SocketAddr, pub SocketAddr);

impl Hash for Tuple {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let ports = u32::from(self.0.port()) << 16 | u32::from(self.1.port());
        match (self.0.ip(), self.1.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                state.write_u64(u64::from(u32::from(l)) << 32 | u64::from(u32::from(r)));
            }
            (l, r) => {
                state.write_u128(ip_bits(l));
                state.write_u128(ip_bits(r));
            }
        }
        state.write_u32(ports);
    }
}

/// An address as 128 bits (IPv4 mapped into IPv6), for hashing only.
fn ip_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}
