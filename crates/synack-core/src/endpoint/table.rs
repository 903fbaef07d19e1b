//! The endpoint's hash tables and their key, the 4-tuple: shared by the connection index and
//! the TIME-WAIT table.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// Superseded entries a lazily-deleted queue (the timer heap, the TIME-WAIT expiry queue)
/// may hold beyond twice its live ones before it is rebuilt.
pub(crate) const COMPACT_SLACK: usize = 1024;

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
