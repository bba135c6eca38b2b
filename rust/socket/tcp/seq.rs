//! Sequence numbers: arithmetic modulo 2^32 (RFC 9293 §3.4).

use core::cmp::Ordering;
use core::ops::{Add, Sub};

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
    /// `self - earlier` in bytes, zero when `earlier` is not earlier.
    pub fn since(self, earlier: Seq) -> usize {
        let d = self.0.wrapping_sub(earlier.0) as i32;
        d.max(0) as usize
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some((self.0.wrapping_sub(other.0) as i32).cmp(&0))
    }
}

impl Add<usize> for Seq {
    type Output = Seq;
    fn add(self, n: usize) -> Seq {
        Seq(self.0.wrapping_add(n as u32))
    }
}

impl Sub<Seq> for Seq {
    type Output = usize;
    /// Distance in bytes; the caller knows `rhs` is not later.
    fn sub(self, rhs: Seq) -> usize {
        self.since(rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps() {
        let a = Seq(u32::MAX - 1);
        let b = a + 10;
        assert_eq!(b, Seq(8));
        assert!(a < b);
        assert!(b > a);
        assert!(Seq(1) <= Seq(1));
        assert_eq!(b - a, 10);
        assert_eq!(a - b, 0);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
    }
}
