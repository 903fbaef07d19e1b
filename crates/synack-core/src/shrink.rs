//! Giving back what a peak grew a collection to: the one rule that the endpoint's tables
//! and queues and a connection's per-segment records follow once the peak has passed.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

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
    if oversized(c, live) {
        c.shrink_to(2 * live.max(c.len()).max(SHRINK_FLOOR));
    }
}

/// Whether [`shrink_after_peak`] would shrink `c`.
pub(crate) fn oversized(c: &impl Shrink, live: usize) -> bool {
    c.capacity() > 4 * live.max(c.len()).max(SHRINK_FLOOR)
}

/// `Shrink` for a std collection, whose own methods of the same names it forwards to.
macro_rules! shrink_by_std {
    ([$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> Shrink for $ty {
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
    };
}

shrink_by_std!([K: Eq + Hash, V, S: BuildHasher] HashMap<K, V, S>);
shrink_by_std!([T] Vec<T>);
shrink_by_std!([T] VecDeque<T>);
shrink_by_std!([T: Ord] BinaryHeap<T>);
