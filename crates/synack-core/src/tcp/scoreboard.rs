//! The sender's SACK scoreboard (RFC 6675 §3): which bytes above SND.UNA the receiver holds,
//! so that loss recovery resends only the holes and counts only what is really in flight.

use crate::seq::SeqNumber;
use crate::shrink::{oversized, shrink_after_peak};

/// RFC 6675 §2: "DupThresh ... 3".
pub(crate) const DUP_THRESH: usize = 3;

/// SACKed ranges above SND.UNA, sorted and merged, at most `MAX_RANGES` of them (a hostile
/// receiver cannot make us hold more). Boxed, and only while a peer SACKs: most connections
/// never see a hole, and an idle one holds a pointer's worth.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scoreboard {
    held: Option<Box<Held>>,
}

#[derive(Debug, Default, Clone)]
struct Held {
    ranges: Vec<(SeqNumber, SeqNumber)>,
    /// What the blocks of the ACK being processed newly SACKed (see [`Scoreboard::add`]), in
    /// sequence order once [`Scoreboard::sort_fresh`] ran: RACK walks only these, as Linux's
    /// `tcp_sacktag_write_queue` skips what its `recv_sack_cache` says was tagged before.
    fresh: Vec<(SeqNumber, SeqNumber)>,
}

/// The most ranges held: more holes than a window of thousands of segments shows at a few
/// percent of loss (Linux keeps SACK state per skb, without a cap), in 8 KiB.
const MAX_RANGES: usize = 1024;

impl Scoreboard {
    pub fn clear(&mut self) {
        if let Some(held) = &mut self.held {
            held.ranges.clear();
            held.fresh.clear();
        }
    }

    /// The ranges held, in sequence order.
    fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        self.held.as_ref().map_or(&[], |h| &h.ranges)
    }

    /// Bytes of heap the ranges hold.
    pub fn allocated(&self) -> usize {
        self.held.as_ref().map_or(0, |h| {
            core::mem::size_of::<Held>()
                + (h.ranges.capacity() + h.fresh.capacity())
                    * core::mem::size_of::<(SeqNumber, SeqNumber)>()
        })
    }

    /// Whether no range is held but storage is.
    pub fn idle_storage(&self) -> bool {
        self.held.as_ref().is_some_and(|h| h.ranges.is_empty())
    }

    /// Whether the ranges keep room for far more than they hold (see `shrink::oversized`).
    pub fn oversized(&self) -> bool {
        self.held
            .as_deref()
            .is_some_and(|h| oversized(&h.ranges, 0) || oversized(&h.fresh, 0))
    }

    /// Gives back what [`oversized`](Self::oversized) ranges hold beyond twice their count.
    pub fn shrink_oversized(&mut self) {
        if let Some(h) = self.held.as_deref_mut() {
            shrink_after_peak(&mut h.ranges, 0);
            shrink_after_peak(&mut h.fresh, 0);
        }
    }

    /// Gives the storage back if no range is held.
    pub fn release_if_empty(&mut self) {
        if self.idle_storage() {
            self.held = None;
        }
    }

    /// Starts an ACK: forgets what the last one newly SACKed.
    pub fn begin_ack(&mut self) {
        if let Some(held) = &mut self.held {
            held.fresh.clear();
        }
    }

    /// Puts what this ACK's blocks newly SACKed in sequence order (they are disjoint, and all
    /// above `una`).
    pub fn sort_fresh(&mut self, una: SeqNumber) {
        if let Some(held) = &mut self.held {
            held.fresh.sort_unstable_by_key(|&(left, _)| left - una);
        }
    }

    /// The ranges this ACK's blocks newly SACKed: disjoint, sorted once
    /// [`sort_fresh`](Self::sort_fresh) ran. Their number is bounded by the ranges the
    /// blocks joined, which the board then holds as one, so walking them costs, over a
    /// connection, no more than the blocks ever recorded: a duplicate ACK that repeats
    /// known blocks, or names one that is invalid, has none.
    pub fn fresh(&self) -> &[(SeqNumber, SeqNumber)] {
        self.held.as_ref().map_or(&[], |h| &h.fresh)
    }

    /// Record a SACK block. Blocks not wholly inside `(una, max]`, empty or inverted, are
    /// ignored (RFC 2018 §5 leaves validation to the sender; RFC 6675 §5 uses only valid
    /// blocks). One that starts at or below `una` (the ACK's, if it is new) is no report of
    /// data held above a hole, and is not trimmed into one: Linux's
    /// `tcp_is_sackblock_valid` ignores it unless it is a D-SACK, wholly below.
    ///
    /// A block that grows or joins ranges held is always taken. A new range on a full board
    /// is taken only above every range held, in place of the lowest: the receiver reports
    /// first the block that holds its newest segment, and that block growing is what RACK
    /// and the pipe live on (RFC 6675 §5: record every valid block). The board used to
    /// refuse such a block, and then every later report of its range, for good.
    ///
    /// The parts of the block that no range held covered are noted as [`fresh`](Self::fresh).
    pub fn add(&mut self, left: SeqNumber, right: SeqNumber, una: SeqNumber, max: SeqNumber) {
        if left >= right || right > max || left <= una {
            return;
        }
        let Held { ranges, fresh } = &mut **self.held.get_or_insert_with(Box::default);
        // The ranges this block touches or overlaps: from the last one starting at or below
        // `left` if it reaches `left`, through every one starting at or below `right`.
        let at = ranges.partition_point(|&(l, _)| l <= left);
        let first = match at.checked_sub(1) {
            Some(prev) if ranges[prev].1 >= left => prev,
            _ => at,
        };
        let last = at + ranges[at..].partition_point(|&(l, _)| l <= right);
        if first == last {
            // A range of its own.
            if ranges.len() >= MAX_RANGES {
                if at < ranges.len() {
                    return;
                }
                ranges.remove(0);
            }
            ranges.insert(at.min(ranges.len()), (left, right));
            fresh.push((left, right));
            return;
        }
        // The gaps between the ranges joined, and past their ends, are new.
        let mut from = left;
        for &(l, r) in &ranges[first..last] {
            if l > from {
                fresh.push((from, l));
            }
            from = from.max(r);
        }
        if from < right {
            fresh.push((from, right));
        }
        let merged = (left.min(ranges[first].0), right.max(ranges[last - 1].1));
        ranges.splice(first..last, [merged]);
    }

    /// Forget what SND.UNA has passed.
    pub fn prune(&mut self, una: SeqNumber) {
        let Some(held) = &mut self.held else {
            return;
        };
        held.ranges.retain(|&(_, r)| r > una);
        if let Some(first) = held.ranges.first_mut() {
            if first.0 < una {
                first.0 = una;
            }
        }
    }

    /// The right edge of the highest SACKed range.
    pub fn highest_sacked(&self) -> Option<SeqNumber> {
        self.ranges().last().map(|&(_, r)| r)
    }

    /// Bytes SACKed.
    pub fn sacked_bytes(&self) -> usize {
        self.ranges().iter().map(|&(l, r)| r - l).sum()
    }

    /// Whether `[start, end)` lies wholly inside one SACKed range.
    pub fn covers(&self, start: SeqNumber, end: SeqNumber) -> bool {
        self.sacked_end_at(start).is_some_and(|e| e >= end)
    }

    /// If `seq` lies in a SACKed range, that range's end. (The ranges are sorted and
    /// disjoint: a binary search.)
    pub fn sacked_end_at(&self, seq: SeqNumber) -> Option<SeqNumber> {
        let i = self.ranges().partition_point(|&(_, r)| r <= seq);
        self.ranges()
            .get(i)
            .filter(|&&(l, r)| seq.in_range(l, r))
            .map(|&(_, r)| r)
    }

    /// RFC 6675 §4 IsLost: every un-SACKed byte below the returned sequence number is lost,
    /// because at least DupThresh SACKed ranges, or more than (DupThresh - 1) * SMSS SACKed
    /// bytes, lie above it.
    pub fn lost_boundary(&self, mss: usize) -> Option<SeqNumber> {
        let mut bytes = 0;
        for (count, &(l, r)) in self.ranges().iter().rev().enumerate() {
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
        for &(l, r) in self.ranges() {
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
        for &(l, r) in self.ranges() {
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
        assert_eq!(sb.ranges(), vec![(s(200), s(400)), (s(600), s(700))]);
        assert_eq!(sb.sacked_bytes(), 300);
        sb.prune(s(350));
        assert_eq!(sb.ranges(), vec![(s(350), s(400)), (s(600), s(700))]);
        sb.prune(s(800));
        assert!(sb.ranges().is_empty());
    }

    /// What an ACK's blocks newly SACK, for RACK to walk: the whole of a new block, only
    /// the gaps of one that joins ranges held, and nothing for a block repeated or refused.
    #[test]
    fn fresh_is_what_the_blocks_newly_sack() {
        let mut sb = Scoreboard::default();
        let (una, max) = (s(100), s(10_000));
        sb.begin_ack();
        sb.add(s(500), s(600), una, max);
        sb.add(s(300), s(400), una, max);
        sb.sort_fresh(una);
        assert_eq!(sb.fresh(), [(s(300), s(400)), (s(500), s(600))]);
        // The same blocks again, one past SND.MAX and one from SND.UNA: nothing new.
        sb.begin_ack();
        sb.add(s(300), s(400), una, max);
        sb.add(s(500), s(600), una, max);
        sb.add(s(101), s(1 << 30), una, max);
        sb.add(una, s(9_000), una, max);
        sb.sort_fresh(una);
        assert!(sb.fresh().is_empty());
        // A block across both ranges and past them: the gaps only.
        sb.begin_ack();
        sb.add(s(200), s(700), una, max);
        sb.sort_fresh(una);
        assert_eq!(
            sb.fresh(),
            [(s(200), s(300)), (s(400), s(500)), (s(600), s(700))]
        );
        assert_eq!(sb.ranges(), vec![(s(200), s(700))]);
        // Inside what is held: nothing.
        sb.begin_ack();
        sb.add(s(250), s(650), una, max);
        assert!(sb.fresh().is_empty());
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
        assert!(sb.ranges().is_empty());
        // Across the wrap.
        sb.add(s(u32::MAX - 10), s(20), s(u32::MAX - 100), s(100));
        assert_eq!(sb.sacked_bytes(), 31);
    }

    #[test]
    fn bounded_ranges() {
        let mut sb = Scoreboard::default();
        for i in 0..5000u32 {
            sb.add(s(i * 10), s(i * 10 + 5), s(0), s(100_000));
        }
        assert_eq!(sb.ranges().len(), MAX_RANGES);
    }

    /// On a full board the highest range still grows, and a new range above it takes the
    /// lowest one's place; a new range below the highest is refused. The board used to
    /// refuse the top range's growth, and to drop the top range for a new low one.
    #[test]
    fn a_full_board_keeps_the_newest_reports() {
        let mut sb = Scoreboard::default();
        let n = MAX_RANGES as u32;
        for i in 1..=n {
            sb.add(s(i * 100), s(i * 100 + 50), s(0), s(1_000_000));
        }
        assert_eq!(sb.ranges().len(), MAX_RANGES);
        let before = sb.sacked_bytes();
        // The top range grows.
        sb.add(s(n * 100), s(n * 100 + 500), s(0), s(1_000_000));
        assert_eq!(sb.sacked_bytes(), before + 450);
        assert_eq!(sb.highest_sacked(), Some(s(n * 100 + 500)));
        // A new low range is refused; the top stays.
        sb.add(s(20), s(30), s(0), s(1_000_000));
        assert_eq!(sb.ranges()[0], (s(100), s(150)));
        assert_eq!(sb.highest_sacked(), Some(s(n * 100 + 500)));
        // A new top range takes the lowest one's place.
        sb.add(s(n * 100 + 1000), s(n * 100 + 1100), s(0), s(1_000_000));
        assert_eq!(sb.ranges().len(), MAX_RANGES);
        assert_eq!(sb.ranges()[0], (s(200), s(250)));
        assert_eq!(sb.highest_sacked(), Some(s(n * 100 + 1100)));
        // Joining two ranges makes room.
        sb.add(s(250), s(300), s(0), s(1_000_000));
        assert_eq!(sb.ranges().len(), MAX_RANGES - 1);
        assert_eq!(sb.ranges()[0], (s(200), s(350)));
    }

    /// Whatever order blocks come in, the board is what merging them all gives.
    #[test]
    fn blocks_in_any_order_merge_alike() {
        let blocks = [
            (500u32, 600u32),
            (100, 200),
            (150, 250),
            (600, 700),
            (900, 950),
            (50, 1000),
            (300, 310),
        ];
        let mut sb = Scoreboard::default();
        let mut expect: Vec<(u32, u32)> = Vec::new();
        for &(l, r) in &blocks {
            sb.add(s(l), s(r), s(10), s(2000));
            expect.push((l, r));
            expect.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::new();
            for &(l, r) in &expect {
                match merged.last_mut() {
                    Some(last) if l <= last.1 => last.1 = last.1.max(r),
                    _ => merged.push((l, r)),
                }
            }
            let got: Vec<(u32, u32)> = sb.ranges().iter().map(|&(l, r)| (l.0, r.0)).collect();
            assert_eq!(got, merged, "after ({l}, {r})");
        }
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
