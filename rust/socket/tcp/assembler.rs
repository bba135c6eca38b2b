//! Out-of-order arrivals above `RCV.NXT`: the ranges held, sorted, merged.
//! Any number of holes up to [`MAX_RANGES`] (RFC 9293 §3.10.7.4 lets a
//! receiver keep segments beyond `RCV.NXT` for later processing).

use super::seq::Seq;

/// A bound on the bookkeeping one connection can be made to hold; a segment
/// that would open more ranges is dropped (the sender will resend it).
pub const MAX_RANGES: usize = 1024;

#[derive(Debug, Default)]
pub struct Assembler {
    /// Sorted, disjoint, non-adjacent `[start, end)` ranges.
    ranges: Vec<(Seq, Seq)>,
    /// The range most recently added to, reported first in SACK (RFC 2018 §4).
    latest: Option<Seq>,
}

impl Assembler {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ranges.len()
    }
    pub fn clear(&mut self) {
        self.ranges = Vec::new();
        self.latest = None;
    }
    /// Forgets what lies at or beyond `end` (the end of the stream, once a
    /// FIN put it there).
    pub fn truncate(&mut self, end: Seq) {
        self.ranges.retain(|&(s, _)| s < end);
        if let Some(last) = self.ranges.last_mut() {
            last.1 = last.1.min(end);
        }
        if self.latest.is_some_and(|l| l >= end) {
            self.latest = None;
        }
    }
    /// From the start of the lowest range held to the end of the highest.
    pub fn span(&self) -> Option<(Seq, Seq)> {
        Some((self.ranges.first()?.0, self.ranges.last()?.1))
    }

    /// Records `[start, end)`; false if that would exceed [`MAX_RANGES`].
    pub fn add(&mut self, start: Seq, end: Seq) -> bool {
        if start >= end {
            return true;
        }
        // First range that ends at or after `start` (could merge).
        let i = self.ranges.partition_point(|&(_, e)| e < start);
        // Ranges from i that start at or before `end` overlap or touch.
        let mut j = i;
        while j < self.ranges.len() && self.ranges[j].0 <= end {
            j += 1;
        }
        if i == j {
            if self.ranges.len() >= MAX_RANGES {
                return false;
            }
            self.ranges.insert(i, (start, end));
        } else {
            let merged = (start.min(self.ranges[i].0), end.max(self.ranges[j - 1].1));
            self.ranges[i] = merged;
            self.ranges.drain(i + 1..j);
        }
        self.latest = Some(start);
        true
    }

    /// The part of `[start, end)` held already, in the first range it
    /// meets (a duplicate to report, RFC 2883).
    pub fn overlap(&self, start: Seq, end: Seq) -> Option<(Seq, Seq)> {
        self.ranges
            .iter()
            .find(|&&(s, e)| s < end && start < e)
            .map(|&(s, e)| (start.max(s), end.min(e)))
    }

    /// With `RCV.NXT` at `next`, returns how far the contiguous data now
    /// reaches (dropping the ranges that became in-order).
    pub fn advance(&mut self, next: Seq) -> Seq {
        let mut next = next;
        let mut n = 0;
        for &(s, e) in &self.ranges {
            if s > next {
                break;
            }
            next = next.max(e);
            n += 1;
        }
        self.ranges.drain(..n);
        if self.ranges.is_empty() {
            self.latest = None;
        }
        next
    }

    /// Up to `max` SACK blocks: the range holding the latest arrival first,
    /// then the others from the highest down (RFC 2018 §4).
    pub fn sack_blocks(&self, max: usize, out: &mut [(u32, u32)]) -> usize {
        let mut n = 0;
        let latest = self
            .latest
            .and_then(|l| self.ranges.iter().position(|&(s, e)| s <= l && l < e));
        if let Some(i) = latest {
            out[n] = (self.ranges[i].0 .0, self.ranges[i].1 .0);
            n += 1;
        }
        for (i, &(s, e)) in self.ranges.iter().enumerate().rev() {
            if n >= max {
                break;
            }
            if Some(i) != latest {
                out[n] = (s.0, e.0);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_advances() {
        let mut a = Assembler::default();
        assert!(a.add(Seq(20), Seq(30)));
        assert!(a.add(Seq(40), Seq(50)));
        assert!(a.add(Seq(25), Seq(42)));
        assert_eq!(a.len(), 1);
        assert!(a.add(Seq(60), Seq(70)));
        let mut out = [(0, 0); 4];
        assert_eq!(a.sack_blocks(4, &mut out), 2);
        assert_eq!(out[0], (60, 70));
        assert_eq!(a.advance(Seq(10)), Seq(10));
        assert_eq!(a.advance(Seq(20)), Seq(50));
        assert_eq!(a.len(), 1);
        assert_eq!(a.advance(Seq(65)), Seq(70));
        assert!(a.is_empty());
        let mut a = Assembler::default();
        for i in 0..MAX_RANGES as u32 {
            assert!(a.add(Seq(i * 10), Seq(i * 10 + 1)));
        }
        assert!(!a.add(Seq(u32::MAX / 4), Seq(u32::MAX / 4 + 1)));
        assert!(a.add(Seq(0), Seq(5)), "merging never needs room");
    }
}
