//! A token bucket for rate limits (ICMP errors), refilled from the time passed in.

use crate::time::Instant;

/// A token bucket for rate limits, refilled from the time passed in.
#[derive(Debug)]
pub(super) struct TokenBucket {
    tokens: u64,
    burst: u64,
    per_sec: u64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub(super) fn new(per_sec: u64, burst: u64) -> Self {
        TokenBucket {
            tokens: burst,
            burst,
            per_sec,
            refilled_at: Instant::ZERO,
        }
    }
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let earned =
            now.saturating_since(self.refilled_at).total_micros() * self.per_sec / 1_000_000;
        if earned > 0 {
            self.tokens = (self.tokens + earned).min(self.burst);
            self.refilled_at = now;
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}
