//! A seeded fault injector: loss, duplication, corruption, reordering and
//! delay, applied to frames as they cross a link.

use crate::time::{Duration, Instant};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Probabilities are per frame, in 0.0..=1.0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    pub loss: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// Chance that a frame is held back by `reorder_delay`, letting later frames pass it.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// Latency every frame has; plus a uniform `jitter`.
    pub delay: Duration,
    pub jitter: Duration,
}

impl FaultConfig {
    /// A perfect link with the given one-way latency.
    pub fn latency(delay: Duration) -> Self {
        FaultConfig {
            delay,
            ..Default::default()
        }
    }
}

/// Counts of what the injector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub passed: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
}

#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    rng: StdRng,
    stats: FaultStats,
}

impl FaultInjector {
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        FaultInjector {
            config,
            rng: StdRng::seed_from_u64(seed),
            stats: FaultStats::default(),
        }
    }
    pub fn stats(&self) -> FaultStats {
        self.stats
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.random::<f64>() < p
    }

    /// Decides the fate of `frame` sent at `now`: `deliver` is called zero,
    /// one or two times with the delivery time and the (maybe corrupted) bytes.
    pub fn apply(&mut self, now: Instant, frame: &[u8], mut deliver: impl FnMut(Instant, Vec<u8>)) {
        if self.chance(self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if self.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut bytes = frame.to_vec();
            if !bytes.is_empty() && self.chance(self.config.corrupt) {
                self.stats.corrupted += 1;
                let at = self.rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << self.rng.random_range(0..8u32);
            }
            let mut at = now + self.config.delay;
            if self.config.jitter > Duration::ZERO {
                at += Duration::from_micros(
                    self.rng.random_range(0..=self.config.jitter.total_micros()),
                );
            }
            if self.chance(self.config.reorder) {
                self.stats.reordered += 1;
                at += self.config.reorder_delay;
            }
            self.stats.passed += 1;
            deliver(at, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_roughly_calibrated() {
        let cfg = FaultConfig {
            loss: 0.1,
            duplicate: 0.05,
            corrupt: 0.05,
            ..Default::default()
        };
        let run = |seed| {
            let mut f = FaultInjector::new(cfg.clone(), seed);
            let mut delivered = 0;
            for _ in 0..10_000 {
                f.apply(Instant::ZERO, &[0u8; 64], |_, _| delivered += 1);
            }
            (f.stats(), delivered)
        };
        let (stats, delivered) = run(7);
        assert_eq!(run(7).0, stats, "same seed, same faults");
        assert!((800..1200).contains(&stats.lost), "{stats:?}");
        assert!((350..650).contains(&stats.duplicated), "{stats:?}");
        assert_eq!(delivered as u64, stats.passed);
        assert_eq!(stats.passed, 10_000 - stats.lost + stats.duplicated);
    }

    #[test]
    fn corruption_changes_one_bit() {
        let cfg = FaultConfig {
            corrupt: 1.0,
            ..Default::default()
        };
        let mut f = FaultInjector::new(cfg, 1);
        f.apply(Instant::ZERO, &[0u8; 16], |_, b| {
            assert_eq!(b.iter().map(|x| x.count_ones()).sum::<u32>(), 1)
        });
    }
}
