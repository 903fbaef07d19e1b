//! The sender's SACK scoreboard (RFC 6675 §3): which bytes above SND.UNA the receiver holds,
//! so that loss recovery resends only the holes and counts only what is really in flight.

use crate::seq::SeqNumber;

/// RFC 6675 §2: "DupThresh ... 3".
pub(crate) const DUP_THRESH: usize = 3;

/// SACKed ranges above SND.UNA, sorted and merged, at most `MAX_RANGES` of them (a hostile
/// receiver cannot make us hold more).
#[derive(Debug, Default, Clone)]
pub(crate) struct Scoreboard {
    ranges: Vec<(SeqNumber, SeqNumber)>,
}

const MAX_RANGES: usize = 64;

impl Scoreboard {
    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// Bytes of heap the ranges hold.
    pub fn allocated(&self) -> usize {
        self.ranges.capacity() * core::mem::size_of::<(SeqNumber, SeqNumber)>()
    }

    /// Whether no range is held but storage is.
    pub fn idle_storage(&self) -> bool {
        self.ranges.is_empty() && self.ranges.capacity() > 0
    }

    /// Gives the storage back if no range is held.
    pub fn release_if_empty(&mut self) {
        if self.ranges.is_empty() {
            self.ranges = Vec::new();
        }
    }

    /// Record a SACK block. Blocks not wholly inside `(una, max]`, empty or inverted, are
    /// ignored (RFC 2018 §5 leaves validation to the sender; RFC 6675 §5 uses only valid
    /// blocks). One that starts at or below `una` (the ACK's, if it is new) is no report of
    /// data held above a hole, and is not trimmed into one: Linux's
    /// `tcp_is_sackblock_valid` ignores it unless it is a D-SACK, wholly below.
    pub fn add(&mut self, left: SeqNumber, right: SeqNumber, una: SeqNumber, max: SeqNumber) {
        if left >= right || right > max || left <= una {
            return;
        }
        // Insert keeping order, then merge neighbours that touch or overlap.
        let at = self
            .ranges
            .iter()
            .position(|&(l, _)| l > left)
            .unwrap_or(self.ranges.len());
        if self.ranges.len() >= MAX_RANGES && at == self.ranges.len() {
            return;
        }
        self.ranges.insert(at, (left, right));
        let mut merged: Vec<(SeqNumber, SeqNumber)> = Vec::with_capacity(self.ranges.len());
        for &(l, r) in &self.ranges {
            match merged.last_mut() {
                Some(last) if l <= last.1 => last.1 = last.1.max(r),
                _ => merged.push((l, r)),
            }
        }
        merged.truncate(MAX_RANGES);
        self.ranges = merged;
    }

    /// Forget what SND.UNA has passed.
    pub fn prune(&mut self, una: SeqNumber) {
        self.ranges.retain(|&(_, r)| r > una);
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < una {
                first.0 = una;
            }
        }
    }

    /// The right edge of the highest SACKed range.
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.ranges.last().map(|&(_, r)| r)
    }

    /// Bytes SACKed.
    pub fn sacked_bytes(&self) -> usize {
        self.ranges.iter().map(|&(l, r)| r - l).sum()
    }

    /// Whether `[start, end)` lies wholly inside one SACKed range.
    pub fn covers(&self, start: SeqNumber, end: SeqNumber) -> bool {
        self.sacked_end_at(start).is_some_and(|e| e >= end)
    }

    /// If `seq` lies in a SACKed range, that range's end. (The ranges are sorted and
    /// disjoint: a binary search.)
    pub fn sacked_end_at(&self, seq: SeqNumber) -> Option<SeqNumber> {
        let i = self.ranges.partition_point(|&(_, r)| r <= seq);
        self.ranges
            .get(i)
            .filter(|&&(l, r)| seq.in_range(l, r))
            .map(|&(_, r)| r)
    }

    /// RFC 6675 §4 IsLost: every un-SACKed byte below the returned sequence number is lost,
    /// because at least DupThresh SACKed ranges, or more than (DupThresh - 1) * SMSS SACKed
    /// bytes, lie above it.
    pub fn lost_boundary(&self, mss: usize) -> Option<SeqNumber> {
        let mut bytes = 0;
        for (count, &(l, r)) in self.ranges.iter().rev().enumerate() {
            bytes += r - l;
            if count + 1 >= DUP_THRESH || bytes > (DUP_THRESH - 1) * mss {
                return Some(l);
            }
        }
        None
    }

    /// The first un-SACKed hole `[a, b)` at or after `from` and below `limit`: below a SACK
    /// block (RFC 6675's holes).
    pub fn next_hole(&self, from: SeqNumber, limit: SeqNumber) -> Option<(SeqNumber, SeqNumber)> {
        self.first_unsacked(from, limit, false)
    }

    /// The first un-SACKed range `[a, b)` at or after `from` and below `limit`, whether or
    /// not anything above it is SACKed: RACK (RFC 8985 §6.2) finds losses by time, so a
    /// lost segment need not lie below a SACK block (it may follow the last one, or no
    /// block may be left at all).
    pub fn next_unsacked(
        &self,
        from: SeqNumber,
        limit: SeqNumber,
    ) -> Option<(SeqNumber, SeqNumber)> {
        self.first_unsacked(from, limit, true)
    }

    /// The first un-SACKed range at or after `from` below `limit`; past the last SACK
    /// block only if `open_ended`.
    fn first_unsacked(
        &self,
        from: SeqNumber,
        limit: SeqNumber,
        open_ended: bool,
    ) -> Option<(SeqNumber, SeqNumber)> {
        let mut start = from;
        for &(l, r) in &self.ranges {
            if r <= start {
                continue;
            }
            if l > start {
                let end = l.min(limit);
                return (start < end).then_some((start, end));
            }
            start = r;
        }
        (open_ended && start < limit).then_some((start, limit))
    }

    /// Un-SACKed bytes in `[from, to)`.
    pub fn unsacked_between(&self, from: SeqNumber, to: SeqNumber) -> usize {
        if from >= to {
            return 0;
        }
        let mut total = to - from;
        for &(l, r) in &self.ranges {
            let a = l.max(from);
            let b = r.min(to);
            if a < b {
                total -= b - a;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn merges_and_prunes() {
        let mut sb = Scoreboard::default();
        sb.add(s(300), s(400), s(100), s(1000));
        sb.add(s(200), s(300), s(100), s(1000));
        sb.add(s(600), s(700), s(100), s(1000));
        assert_eq!(sb.ranges, vec![(s(200), s(400)), (s(600), s(700))]);
        assert_eq!(sb.sacked_bytes(), 300);
        sb.prune(s(350));
        assert_eq!(sb.ranges, vec![(s(350), s(400)), (s(600), s(700))]);
        sb.prune(s(800));
        assert!(sb.ranges.is_empty());
    }

    #[test]
    fn rejects_invalid_blocks() {
        let mut sb = Scoreboard::default();
        sb.add(s(500), s(400), s(100), s(1000)); // inverted
        sb.add(s(900), s(2000), s(100), s(1000)); // past SND.MAX
        sb.add(s(10), s(100), s(100), s(1000)); // below SND.UNA
        sb.add(s(50), s(300), s(100), s(1000)); // across SND.UNA
        sb.add(s(100), s(300), s(100), s(1000)); // from SND.UNA
        sb.add(s(5), s(5), s(0), s(1000)); // empty
        assert!(sb.ranges.is_empty());
        // Across the wrap.
        sb.add(s(u32::MAX - 10), s(20), s(u32::MAX - 100), s(100));
        assert_eq!(sb.sacked_bytes(), 31);
    }

    #[test]
    fn bounded_ranges() {
        let mut sb = Scoreboard::default();
        for i in 0..1000u32 {
            sb.add(s(i * 10), s(i * 10 + 5), s(0), s(100_000));
        }
        assert!(sb.ranges.len() <= MAX_RANGES);
    }

    #[test]
    fn is_lost_by_bytes_or_by_count() {
        let mut sb = Scoreboard::default();
        // One range of 2 MSS + 1 byte: everything below it is lost.
        sb.add(s(2000), s(4001), s(0), s(10_000));
        assert_eq!(sb.lost_boundary(1000), Some(s(2000)));
        let mut sb = Scoreboard::default();
        sb.add(s(2000), s(2100), s(0), s(10_000));
        sb.add(s(3000), s(3100), s(0), s(10_000));
        assert_eq!(
            sb.lost_boundary(1000),
            None,
            "two small ranges are not enough"
        );
        sb.add(s(4000), s(4100), s(0), s(10_000));
        assert_eq!(
            sb.lost_boundary(1000),
            Some(s(2000)),
            "three discontiguous ranges"
        );
    }

    #[test]
    fn holes_and_unsacked_bytes() {
        let mut sb = Scoreboard::default();
        sb.add(s(200), s(300), s(0), s(1000));
        sb.add(s(500), s(600), s(0), s(1000));
        assert_eq!(sb.next_hole(s(0), s(1000)), Some((s(0), s(200))));
        assert_eq!(sb.next_hole(s(200), s(1000)), Some((s(300), s(500))));
        assert_eq!(
            sb.next_hole(s(550), s(1000)),
            None,
            "nothing SACKed above: not a hole"
        );
        assert_eq!(sb.next_hole(s(300), s(400)), Some((s(300), s(400))));
        // RACK's losses need nothing SACKed above them.
        assert_eq!(sb.next_unsacked(s(550), s(1000)), Some((s(600), s(1000))));
        assert_eq!(sb.next_unsacked(s(0), s(1000)), Some((s(0), s(200))));
        assert_eq!(sb.next_unsacked(s(600), s(600)), None);
        assert_eq!(
            Scoreboard::default().next_unsacked(s(7), s(9)),
            Some((s(7), s(9)))
        );
        assert_eq!(sb.unsacked_between(s(0), s(1000)), 800);
        assert_eq!(sb.unsacked_between(s(250), s(550)), 200);
        assert_eq!(sb.sacked_end_at(s(250)), Some(s(300)));
        assert_eq!(sb.sacked_end_at(s(300)), None);
    }
}
