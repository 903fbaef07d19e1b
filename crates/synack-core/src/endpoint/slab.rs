//! A slab of connections indexed by handle, after quinn-proto's use of `slab`: O(1) lookups
//! with no hashing, and handles that never alias a later connection.
//!
//! A handle packs a slot index (low 32 bits) with the slot's generation (high bits); freeing
//! a slot bumps its generation, so a stale handle finds nothing instead of someone else's
//! connection.
//!
//! Slots live in fixed pages of [`PAGE`] rather than one vector: a vector that doubles
//! would hold up to twice the slots in use, and a connection's slot is well over a
//! kilobyte (10,000 connections paid for 16,384 slots, 60% more than their own state). A
//! page is allocated only when every slot before it is taken, so at most one page is spare,
//! and a slot never moves once built.

use super::handle::ConnectionHandle;

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Slots per page.
pub(crate) const PAGE: usize = 64;

/// Values addressed by [`ConnectionHandle`].
#[derive(Debug)]
pub(crate) struct Slab<T> {
    pages: Vec<Box<[Entry<T>]>>,
    /// Slots ever built (the next new one's index).
    built: usize,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            pages: Vec::new(),
            built: 0,
            free: Vec::new(),
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

    /// Stores the value `make` builds, straight into its slot: the value is built in place
    /// rather than moved in (a connection is over a kilobyte).
    #[inline(always)]
    pub fn insert_with(&mut self, make: impl FnOnce() -> T) -> (ConnectionHandle, &mut T) {
        self.len += 1;
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                if self.built == self.pages.len() * PAGE {
                    let page = (0..PAGE)
                        .map(|_| Entry {
                            // Generation 1, so that no valid handle is ever 0.
                            generation: 1,
                            value: None,
                        })
                        .collect();
                    self.pages.push(page);
                }
                self.built += 1;
                self.built - 1
            }
        };
        let entry = &mut self.pages[index / PAGE][index % PAGE];
        let h = ConnectionHandle(((entry.generation as usize) << 32) | index);
        (h, entry.value.insert(make()))
    }

    fn entry(&self, index: usize) -> Option<&Entry<T>> {
        self.pages.get(index / PAGE)?.get(index % PAGE)
    }

    fn entry_mut(&mut self, index: usize) -> Option<&mut Entry<T>> {
        self.pages.get_mut(index / PAGE)?.get_mut(index % PAGE)
    }

    pub fn get(&self, h: &ConnectionHandle) -> Option<&T> {
        let (index, generation) = split(*h);
        let entry = self.entry(index)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_ref()
    }

    pub fn get_mut(&mut self, h: &ConnectionHandle) -> Option<&mut T> {
        let (index, generation) = split(*h);
        let entry = self.entry_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        entry.value.as_mut()
    }

    pub fn remove(&mut self, h: &ConnectionHandle) -> Option<T> {
        let (index, generation) = split(*h);
        let entry = self.entry_mut(index)?;
        if entry.generation != generation {
            return None;
        }
        let value = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1).max(1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.pages
            .iter_mut()
            .flat_map(|p| p.iter_mut())
            .filter_map(|e| e.value.as_mut())
    }

    pub fn iter(&self) -> impl Iterator<Item = (ConnectionHandle, &T)> {
        self.pages
            .iter()
            .flat_map(|p| p.iter())
            .enumerate()
            .filter_map(|(i, e)| {
                e.value
                    .as_ref()
                    .map(|v| (ConnectionHandle(((e.generation as usize) << 32) | i), v))
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
        assert_eq!(s.remove(&a), Some("a"));
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
        assert_eq!(s.remove(&handles[PAGE + 3]), Some(PAGE + 3));
        let (h, _) = s.insert_with(|| 999);
        assert_eq!(s.pages.len(), 3, "a freed slot is reused first");
        assert_eq!(s.get(&h), Some(&999));
        assert_eq!(s.iter().count(), PAGE * 2 + 1);
    }
}
