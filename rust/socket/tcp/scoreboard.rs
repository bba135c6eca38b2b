//! The sender's record of SACKed data (RFC 6675 §3), and the loss and
//! pipe estimates built on it.

use super::seq::Seq;

/// At most this many disjoint SACKed ranges are remembered; the peer can
/// only report what it holds in its window, so more means nonsense.
const MAX_RANGES: usize = 256;

#[derive(Debug, Default)]
pub struct Scoreboard {
    /// Sorted, disjoint `[start, end)` ranges above `SND.UNA`.
    ranges: Vec<(Seq, Seq)>,
    sacked: usize,
}

impl Scoreboard {
    pub fn clear(&mut self) {
        self.ranges = Vec::new();
        self.sacked = 0;
    }
    /// Bytes SACKed in total.
    pub fn sacked(&self) -> usize {
        self.sacked
    }
    pub fn lowest(&self) -> Option<Seq> {
        self.ranges.first().map(|r| r.0)
    }
    pub fn highest(&self) -> Option<Seq> {
        self.ranges.last().map(|r| r.1)
    }

    /// Adds a block the peer reported; returns true if it taught us something.
    pub fn add(&mut self, start: Seq, end: Seq) -> bool {
        if start >= end {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, e)| e < start);
        let mut j = i;
        while j < self.ranges.len() && self.ranges[j].0 <= end {
            j += 1;
        }
        let before: usize = self.ranges[i..j]
            .iter()
            .map(|&(s, e)| e.offset_from(s))
            .sum();
        let merged = if i == j {
            if self.ranges.len() >= MAX_RANGES {
                return false;
            }
            self.ranges.insert(i, (start, end));
            (start, end)
        } else {
            let m = (start.min(self.ranges[i].0), end.max(self.ranges[j - 1].1));
            self.ranges[i] = m;
            self.ranges.drain(i + 1..j);
            m
        };
        let after = merged.1.offset_from(merged.0);
        self.sacked += after - before;
        after > before
    }

    /// Forgets what `SND.UNA` moved past.
    pub fn advance(&mut self, una: Seq) {
        let mut n = 0;
        for r in self.ranges.iter_mut() {
            if r.1 <= una {
                self.sacked -= r.1.offset_from(r.0);
                n += 1;
            } else {
                if r.0 < una {
                    self.sacked -= una.offset_from(r.0);
                    r.0 = una;
                }
                break;
            }
        }
        self.ranges.drain(..n);
    }

    /// The end of the SACKed range holding `seq`, if any.
    pub fn sacked_at(&self, seq: Seq) -> Option<Seq> {
        self.ranges
            .iter()
            .find(|&&(s, e)| s <= seq && seq < e)
            .map(|r| r.1)
    }
    /// Start of the first SACKed range above `seq`.
    pub fn next_sacked_after(&self, seq: Seq) -> Option<Seq> {
        self.ranges.iter().find(|&&(s, _)| s > seq).map(|r| r.0)
    }
    /// SACKed bytes within `[from, to)`.
    pub fn sacked_between(&self, from: Seq, to: Seq) -> usize {
        self.ranges
            .iter()
            .map(|&(s, e)| e.min(to).saturating_since(s.max(from)))
            .sum()
    }

    /// RFC 6675 §4 IsLost, as a boundary: unSACKed bytes below the returned
    /// sequence have more than `threshold` bytes SACKed above them.
    pub fn lost_below(&self, una: Seq, threshold: usize) -> Seq {
        let mut above = 0;
        for &(s, e) in self.ranges.iter().rev() {
            above += e.offset_from(s);
            if above > threshold {
                return s.max(una);
            }
        }
        una
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_estimates() {
        let mut b = Scoreboard::default();
        assert!(b.add(Seq(3000), Seq(4000)));
        assert!(!b.add(Seq(3000), Seq(3500)));
        assert!(b.add(Seq(5000), Seq(7000)));
        assert!(b.add(Seq(3900), Seq(4200)));
        assert_eq!(b.sacked(), 1200 + 2000);
        assert_eq!(b.sacked_at(Seq(3100)), Some(Seq(4200)));
        assert_eq!(b.next_sacked_after(Seq(4500)), Some(Seq(5000)));
        assert_eq!(b.sacked_between(Seq(4000), Seq(6000)), 200 + 1000);
        assert_eq!(b.lost_below(Seq(1000), 2500), Seq(3000));
        assert_eq!(b.lost_below(Seq(1000), 1500), Seq(5000));
        assert_eq!(b.lost_below(Seq(1000), 5000), Seq(1000));
        b.advance(Seq(3500));
        assert_eq!(b.sacked(), 700 + 2000);
        b.advance(Seq(8000));
        assert!(b.highest().is_none() && b.sacked() == 0);
    }
}
