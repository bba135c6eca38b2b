//! Engine time. The engine never reads a clock: every call takes `now`.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in time, in microseconds since an arbitrary origin chosen by the caller.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    micros: i64,
}

/// A span of time, in microseconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    micros: u64,
}

impl Instant {
    pub const ZERO: Instant = Instant { micros: 0 };

    pub const fn from_micros(micros: i64) -> Self {
        Instant { micros }
    }
    pub const fn from_millis(millis: i64) -> Self {
        Instant {
            micros: millis * 1000,
        }
    }
    pub const fn from_secs(secs: i64) -> Self {
        Instant {
            micros: secs * 1_000_000,
        }
    }
    pub const fn total_micros(self) -> i64 {
        self.micros
    }
    /// `self`, or the next multiple of `step` after it (a zero step: `self`).
    pub fn ceil_to(self, step: Duration) -> Instant {
        let step = step.total_micros().min(i64::MAX as u64) as i64;
        if step <= 1 {
            return self;
        }
        Instant {
            micros: self.micros.saturating_add(step - 1).div_euclid(step) * step,
        }
    }
    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.micros.saturating_sub(earlier.micros).max(0) as u64)
    }
}

/// The earlier of two optional deadlines. (Folding a list of deadlines
/// with it costs a fraction of `.into_iter().flatten().min()`, and the
/// engine asks for its next deadline after every round and call.)
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Duration {
    pub const ZERO: Duration = Duration { micros: 0 };

    pub const fn from_micros(micros: u64) -> Self {
        Duration { micros }
    }
    pub const fn from_millis(millis: u64) -> Self {
        Duration {
            micros: millis * 1000,
        }
    }
    pub const fn from_secs(secs: u64) -> Self {
        Duration {
            micros: secs * 1_000_000,
        }
    }
    pub const fn total_micros(self) -> u64 {
        self.micros
    }
    pub const fn total_millis(self) -> u64 {
        self.micros / 1000
    }
    pub const fn secs(self) -> u64 {
        self.micros / 1_000_000
    }
    pub fn mul_f64(self, factor: f64) -> Duration {
        Duration::from_micros((self.micros as f64 * factor).max(0.0) as u64)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant {
            micros: self
                .micros
                .saturating_add(rhs.micros.min(i64::MAX as u64) as i64),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant {
            micros: self
                .micros
                .saturating_sub(rhs.micros.min(i64::MAX as u64) as i64),
        }
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration {
            micros: self.micros.saturating_add(rhs.micros),
        }
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.micros / 1_000_000,
            (self.micros % 1_000_000).abs()
        )
    }
}

impl fmt::Debug for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.micros / 1_000_000,
            self.micros % 1_000_000
        )
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration::from_micros(d.as_micros().min(u64::MAX as u128) as u64)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        std::time::Duration::from_micros(d.micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_orders() {
        let t = Instant::from_secs(2) + Duration::from_millis(500);
        assert_eq!(t.total_micros(), 2_500_000);
        assert_eq!(t.saturating_since(Instant::from_secs(3)), Duration::ZERO);
        assert_eq!(
            t.saturating_since(Instant::from_secs(2)).total_millis(),
            500
        );
        assert!(Instant::ZERO + Duration::from_micros(u64::MAX) > t);
        assert_eq!(Duration::from_secs(10).mul_f64(0.5), Duration::from_secs(5));
    }

    #[test]
    fn ceil_to_moves_later_onto_a_multiple() {
        let step = Duration::from_millis(64);
        assert_eq!(
            Instant::from_micros(1).ceil_to(step),
            Instant::from_millis(64)
        );
        assert_eq!(
            Instant::from_millis(64).ceil_to(step),
            Instant::from_millis(64)
        );
        assert_eq!(
            Instant::from_micros(64_001).ceil_to(step),
            Instant::from_millis(128)
        );
        assert_eq!(
            Instant::from_micros(5).ceil_to(Duration::ZERO),
            Instant::from_micros(5)
        );
        assert_eq!(Instant::from_micros(-5).ceil_to(step), Instant::ZERO);
    }
}
