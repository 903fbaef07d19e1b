//! A slab of connections indexed by handle, after quinn-proto's use of `slab`: O(1) lookups
//! with no hashing, and handles that never alias a later connection.
//!
//! A handle packs a slot index (low 32 bits) with the slot's generation (high bits); freeing
//! a slot bumps its generation, so a stale handle finds nothing instead of someone else's
//! connection.
//!
//! Each value lives in an allocation of its own, which the slot points to, as Linux
//! allocates each socket on its own: a connection is well over a kilobyte, and its memory
//! goes back the moment it is removed, whatever its neighbours do. Values stored inline in
//! shared pages kept a whole page for any one survivor: 313 connections that outlived a
//! peak of 20,000 held 30 MB, where on their own they hold 0.6 MB
//! (`tests/survivor_memory.rs`). A value never moves once built.
//!
//! The slots themselves (a generation and a pointer) live in fixed pages of [`PAGE`]
//! rather than one vector, which would hold up to twice the slots in use after it doubled,
//! and would never give them back. A page whose slots have all been freed is given back,
//! but one: the spare, so that a count of connections that swings across a page's edge
//! does not build and free a page on each swing. A new value takes the lowest free slot of
//! the lowest page with one, so that values gather in the first pages and the last ones
//! empty as a peak passes. A page given back keeps the generation each of its slots reached
//! (4 bytes a slot), and each starts there when it is built again, so that handles from
//! before still find nothing; a single generation for the page (the highest) would let a
//! slot that had wrapped past `u32::MAX` give out a handle it freed a moment before.

use std::collections::BTreeSet;

use super::handle::ConnectionHandle;

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<Box<T>>,
}

/// Slots per page: one bit each in [`Page::used`].
pub(crate) const PAGE: usize = 64;

#[derive(Debug)]
struct Page<T> {
    /// The slots, or `None` while the page is given back (or not yet built).
    slots: Option<Box<[Entry<T>]>>,
    /// Which slots hold a value: bit `i` for slot `i`.
    used: u64,
    /// While given back, the generation each slot reached: past every handle it gave out.
    generations: Option<Box<[u32]>>,
}

impl<T> Page<T> {
    /// Builds the slots, each at the generation it reached before the page was given
    /// back, or at 1 (so that no valid handle is ever 0).
    fn build(&mut self) -> &mut [Entry<T>] {
        let generations = &mut self.generations;
        self.slots.get_or_insert_with(|| {
            let kept = generations.take();
            (0..PAGE)
                .map(|i| Entry {
                    generation: kept.as_ref().map_or(1, |g| g[i]),
                    value: None,
                })
                .collect()
        })
    }

    /// Gives the slots back, keeping the generation each reached (each moved past its last
    /// handle when that was freed).
    fn give_back(&mut self) {
        if let Some(slots) = self.slots.take() {
            self.generations = Some(slots.iter().map(|e| e.generation).collect());
        }
    }
}

/// Values addressed by [`ConnectionHandle`].
#[derive(Debug)]
pub(crate) struct Slab<T> {
    pages: Vec<Page<T>>,
    /// Built pages with a free slot.
    open: BTreeSet<u32>,
    /// Pages given back, to build again before a new page is added.
    given_back: BTreeSet<u32>,
    /// The one built page with no value kept, if any (see the module documentation).
    spare: Option<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            pages: Vec::new(),
            open: BTreeSet::new(),
            given_back: BTreeSet::new(),
            spare: None,
            len: 0,
        }
    }
}

fn split(h: ConnectionHandle) -> (usize, u32) {
    (h.0 & 0xffff_ffff, (h.0 >> 32) as u32)
}

impl<T> Slab<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Pages built, the spare included.
    #[cfg(test)]
    fn built(&self) -> usize {
        self.pages.iter().filter(|p| p.slots.is_some()).count()
    }

    /// Stores the value `make` builds, in an allocation of its own, made first so that the
    /// value can be built straight into it rather than moved in (a connection is over a
    /// kilobyte).
    #[inline(always)]
    pub fn insert_with(&mut self, make: impl FnOnce() -> T) -> (ConnectionHandle, &mut T) {
        let p = match self.open.first() {
            Some(&p) => p as usize,
            None => {
                let p = match self.given_back.pop_first() {
                    Some(p) => p as usize,
                    None => {
                        self.pages.push(Page {
                            slots: None,
                            used: 0,
                            generations: None,
                        });
                        self.pages.len() - 1
                    }
                };
                self.open.insert(p as u32);
                p
            }
        };
        if self.spare == Some(p as u32) {
            self.spare = None;
        }
        self.len += 1;
        let page = &mut self.pages[p];
        let i = page.used.trailing_ones() as usize;
        page.used |= 1 << i;
        if page.used == u64::MAX {
            self.open.remove(&(p as u32));
        }
        let entry = &mut page.build()[i];
        let h = ConnectionHandle(((entry.generation as usize) << 32) | (p * PAGE + i));
        (h, entry.value.insert(Box::write(Box::new_uninit(), make())))
    }

    fn entry(&self, index: usize) -> Option<&Entry<T>> {
        self.pages
            .get(index / PAGE)?
            .slots
            .as_ref()?
            .get(index % PAGE)
    }

    fn entry_mut(&mut self, index: usize) -> Option<&mut Entry<T>> {
        self.pages
            .get_mut(index / PAGE)?
            .slots
            .as_mut()?
            .get_mut(index % PAGE)
    }

    pub fn get(&self, h: &ConnectionHandle) -> Option<&T> {
        let (index, generation) = split(*h);
        let entry = self.entry(index)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_deref()
    }

    pub fn get_mut(&mut self, h: &ConnectionHandle) -> Option<&mut T> {
        let (index, generation) = split(*h);
        let entry = self.entry_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_deref_mut()
    }

    /// Takes the value out, in the allocation it lived in.
    pub fn remove(&mut self, h: &ConnectionHandle) -> Option<Box<T>> {
        let (index, generation) = split(*h);
        let entry = self.entry_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1).max(1);
        self.len -= 1;
        let p = index / PAGE;
        let page = &mut self.pages[p];
        page.used &= !(1 << (index % PAGE));
        self.open.insert(p as u32);
        if page.used == 0 {
            self.emptied(p as u32);
        }
        Some(value)
    }

    /// Page `p` holds no value now: it becomes the spare, and of it and an older spare the
    /// higher is given back (the lower is where the next value goes).
    fn emptied(&mut self, p: u32) {
        let back = match self.spare {
            None => {
                self.spare = Some(p);
                return;
            }
            Some(spare) if spare < p => p,
            Some(spare) => {
                self.spare = Some(p);
                spare
            }
        };
        self.pages[back as usize].give_back();
        self.open.remove(&back);
        self.given_back.insert(back);
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.pages
            .iter_mut()
            .filter_map(|p| p.slots.as_deref_mut())
            .flat_map(|s| s.iter_mut())
            .filter_map(|e| e.value.as_deref_mut())
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnectionHandle, &T)> {
        self.pages
            .iter()
            .enumerate()
            .filter_map(|(p, page)| Some((p, page.slots.as_deref()?)))
            .flat_map(|(p, slots)| {
                slots.iter().enumerate().filter_map(move |(i, e)| {
                    e.value.as_deref().map(|v| {
                        (
                            ConnectionHandle(((e.generation as usize) << 32) | (p * PAGE + i)),
                            v,
                        )
                    })
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_find_nothing() {
        let mut s = Slab::default();
        let (a, _) = s.insert_with(|| "a");
        assert_eq!(s.get(&a), Some(&"a"));
        assert_eq!(s.remove(&a), Some(Box::new("a")));
        let (b, _) = s.insert_with(|| "b");
        assert_ne!(a, b, "the slot is reused with a new generation");
        assert_eq!(s.get(&a), None);
        assert_eq!(s.remove(&a), None);
        assert_eq!(s.get(&b), Some(&"b"));
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.iter().map(|(h, v)| (h, *v)).collect::<Vec<_>>(),
            vec![(b, "b")]
        );
        assert_eq!(s.get(&ConnectionHandle(usize::MAX)), None);
    }

    #[test]
    fn pages_fill_before_another_is_made() {
        let mut s = Slab::default();
        let handles: Vec<_> = (0..PAGE * 2 + 1).map(|i| s.insert_with(|| i).0).collect();
        assert_eq!(s.pages.len(), 3);
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(s.get(h), Some(&i));
        }
        assert_eq!(s.remove(&handles[PAGE + 3]), Some(Box::new(PAGE + 3)));
        let (h, _) = s.insert_with(|| 999);
        assert_eq!(s.pages.len(), 3, "a freed slot is reused first");
        assert_eq!(s.get(&h), Some(&999));
        assert_eq!(s.iter().count(), PAGE * 2 + 1);
    }

    #[test]
    fn pages_are_given_back_after_a_peak() {
        let mut s = Slab::default();
        let handles: Vec<_> = (0..PAGE * 10).map(|i| s.insert_with(|| i).0).collect();
        assert_eq!(s.built(), 10);
        // Each page keeps one value: nothing can go yet.
        for (i, h) in handles.iter().enumerate() {
            if i % PAGE != 0 {
                s.remove(h).unwrap();
            }
        }
        assert_eq!(s.built(), 10);
        for h in handles.iter().step_by(PAGE) {
            s.remove(h).unwrap();
        }
        assert_eq!((s.len(), s.built()), (0, 1), "one spare page is kept");
        assert_eq!(s.iter().count(), 0);
        // A peak again builds pages again, and no handle from before finds anything.
        let again: Vec<_> = (0..PAGE * 10).map(|i| s.insert_with(|| i).0).collect();
        assert_eq!(s.built(), 10);
        for h in &handles {
            assert_eq!(s.get(h), None, "{h:?} is stale");
            assert_eq!(s.get_mut(h), None);
        }
        for (i, h) in again.iter().enumerate() {
            assert_eq!(s.get(h), Some(&i));
        }
        assert!(handles.iter().all(|h| !again.contains(h)));
        assert_eq!(s.iter().count(), PAGE * 10);
        assert_eq!(s.values_mut().count(), PAGE * 10);
    }

    #[test]
    fn new_values_take_the_lowest_free_slot() {
        let mut s = Slab::default();
        let handles: Vec<_> = (0..PAGE * 3).map(|i| s.insert_with(|| i).0).collect();
        s.remove(&handles[2 * PAGE + 5]).unwrap();
        s.remove(&handles[7]).unwrap();
        s.remove(&handles[3]).unwrap();
        let order: Vec<_> = (0..3)
            .map(|i| split(s.insert_with(|| 1000 + i).0).0)
            .collect();
        assert_eq!(order, [3, 7, 2 * PAGE + 5]);
        // A spare page that is emptied below a later one changes places with it.
        let late: Vec<_> = (0..PAGE).map(|i| s.insert_with(|| i).0).collect();
        for h in &late {
            s.remove(h).unwrap();
        }
        assert_eq!(s.built(), 4, "page 3 is the spare");
        for h in &handles[PAGE..2 * PAGE] {
            s.remove(h).unwrap();
        }
        assert_eq!(s.built(), 3, "page 1 is the spare, page 3 went back");
        assert_eq!(split(s.insert_with(|| 0).0).0, PAGE);
    }

    proptest::proptest! {
        /// Against a model: every live handle finds its value, every freed one finds
        /// nothing (even after its page was given back and built again), and once all are
        /// freed only the spare page is left.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u8..4, 0usize..4096), 1..400)) {
            let mut s = Slab::default();
            let mut live = std::collections::HashMap::new();
            let mut dead = Vec::new();
            let mut next = 0u64;
            for (op, n) in ops {
                match op {
                    // A burst of inserts, a peak of up to 4,096.
                    0 | 1 => {
                        for _ in 0..n % 300 {
                            next += 1;
                            let (h, _) = s.insert_with(|| next);
                            proptest::prop_assert!(live.insert(h, next).is_none());
                        }
                    }
                    // Frees: a few, or most of what is live.
                    _ => {
                        let keys: Vec<_> = live.keys().copied().collect();
                        let take = if op == 2 { n % 64 } else { keys.len() * 7 / 8 };
                        for h in keys.into_iter().take(take) {
                            proptest::prop_assert_eq!(s.remove(&h).map(|v| *v), live.remove(&h));
                            dead.push(h);
                        }
                    }
                }
                proptest::prop_assert_eq!(s.len(), live.len());
            }
            for (h, v) in &live {
                proptest::prop_assert_eq!(s.get(h), Some(v));
            }
            for h in &dead {
                proptest::prop_assert_eq!(s.get(h), None);
            }
            proptest::prop_assert_eq!(s.iter().count(), live.len());
            for h in live.keys().copied().collect::<Vec<_>>() {
                s.remove(&h).unwrap();
            }
            proptest::prop_assert!(s.built() <= 1, "{} pages left", s.built());
        }
    }

    /// A slot whose generation wrapped past `u32::MAX` while others on its page did not:
    /// the page given back and built again must not give out, a few reuses later, the
    /// handle freed just before it went (found by review: the page kept only the highest
    /// generation of its slots).
    #[test]
    fn a_rebuilt_page_never_gives_out_a_recent_handle_again() {
        let mut s = Slab::default();
        let first: Vec<_> = (0..PAGE).map(|i| s.insert_with(|| i).0).collect();
        let (a, _) = s.insert_with(|| 1000); // page 1, slot 0
        let (b, _) = s.insert_with(|| 1001); // page 1, slot 1
        let slots = s.pages[1].slots.as_mut().unwrap();
        slots[0].generation = u32::MAX;
        slots[1].generation = u32::MAX - 3;
        let a = ConnectionHandle((a.0 & 0xffff_ffff) | ((u32::MAX as usize) << 32));
        let b = ConnectionHandle((b.0 & 0xffff_ffff) | (((u32::MAX - 3) as usize) << 32));
        assert!(s.remove(&a).is_some());
        assert!(s.remove(&b).is_some());
        for h in &first {
            s.remove(h).unwrap();
        }
        assert!(s.pages[1].slots.is_none(), "page 1 was given back");
        for i in 0..PAGE {
            s.insert_with(|| i);
        }
        for n in 0..8 {
            let (h, _) = s.insert_with(|| 2000 + n);
            assert_ne!(
                h, a,
                "reuse {n} of slot 0 gives out the handle freed before"
            );
            assert_eq!(s.get(&a), None);
            s.remove(&h).unwrap();
        }
    }
}
