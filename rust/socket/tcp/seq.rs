//! Sequence numbers: arithmetic modulo 2^32 (RFC 9293 §3.4).
//!
//! There is deliberately no `Seq - Seq`: a difference is either signed
//! ([`Seq::diff`]), known to be non-negative ([`Seq::offset_from`], checked
//! in debug builds), or clamped on purpose ([`Seq::saturating_since`]).

use core::cmp::Ordering;
use core::ops::Add;

/// A TCP sequence number. Comparison is by signed distance, so it holds for
/// numbers less than 2^31 apart, which the window guarantees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Seq(pub u32);

impl Seq {
    pub fn max(self, other: Seq) -> Seq {
        if self > other {
            self
        } else {
            other
        }
    }
    pub fn min(self, other: Seq) -> Seq {
        if self < other {
            self
        } else {
            other
        }
    }

    /// `self - other` as a signed distance modulo 2^32 (RFC 9293 §3.4):
    /// negative when `self` comes before `other`.
    pub fn diff(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// Bytes from `earlier` up to `self`, where the caller knows `earlier`
    /// is not later. A debug build stops at a violation (an ordering bug);
    /// a release build answers 0 rather than a huge length.
    pub fn offset_from(self, earlier: Seq) -> usize {
        let d = self.diff(earlier);
        debug_assert!(d >= 0, "sequence {} lies before {}", self.0, earlier.0);
        d.max(0) as usize
    }

    /// Bytes from `earlier` up to `self`, zero when `earlier` is not
    /// earlier: for "how much lies beyond", where either order is normal.
    pub fn saturating_since(self, earlier: Seq) -> usize {
        self.diff(earlier).max(0) as usize
    }

    /// `earlier <= self < earlier + len` in sequence space.
    pub fn in_range(self, start: Seq, len: usize) -> bool {
        start <= self && self.diff(start) < len.min(i32::MAX as usize) as i32
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        // Not a total order over all of u32 (no modular order is), hence
        // no `Ord`; it is one over any span shorter than 2^31, which TCP keeps.
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<usize> for Seq {
    type Output = Seq;
    fn add(self, n: usize) -> Seq {
        Seq(self.0.wrapping_add(n as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_distance_hold_across_the_wrap() {
        let a = Seq(u32::MAX - 1);
        let b = a + 10;
        assert_eq!(b, Seq(8));
        assert!(a < b);
        assert!(b > a);
        assert!(Seq(1) <= Seq(1));
        assert_eq!(b.diff(a), 10);
        assert_eq!(a.diff(b), -10);
        assert_eq!(b.offset_from(a), 10);
        assert_eq!(a.saturating_since(b), 0);
        assert_eq!(b.saturating_since(a), 10);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
    }

    #[test]
    fn the_half_space_decides_the_order() {
        let zero = Seq(0);
        // Just under 2^31 ahead is later; 2^31 ahead reads as earlier.
        assert!(Seq(0x7fff_ffff) > zero);
        assert_eq!(Seq(0x7fff_ffff).diff(zero), i32::MAX);
        assert!(Seq(0x8000_0000) < zero);
        assert_eq!(Seq(0x8000_0000).diff(zero), i32::MIN);
        assert!(Seq(u32::MAX) < zero);
        assert_eq!(Seq(u32::MAX).diff(zero), -1);
    }

    #[test]
    fn in_range_at_the_wrap() {
        let start = Seq(u32::MAX - 3);
        assert!(start.in_range(start, 1));
        assert!(Seq(2).in_range(start, 7));
        assert!(!Seq(3).in_range(start, 7));
        assert!(!Seq(u32::MAX - 4).in_range(start, 7));
        assert!(!start.in_range(start, 0));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "lies before")]
    fn a_negative_offset_is_an_ordering_bug_in_debug_builds() {
        let _ = Seq(5).offset_from(Seq(6));
    }
}
