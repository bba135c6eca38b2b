//! Round-trip time and the retransmission timeout (RFC 6298).

use crate::time::Duration;

/// RFC 6298 §2.1: before any sample.
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
/// RFC 6298 §2.4 rounds up to 1 s; like Linux we use 200 ms.
pub const MIN_RTO: Duration = Duration::from_millis(200);
/// RFC 6298 §2.5 allows a maximum of at least 60 s.
pub const MAX_RTO: Duration = Duration::from_secs(60);
/// Clock granularity G of RFC 6298 §2.
const GRANULARITY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// Doublings since the last new acknowledgment (RFC 6298 §5.5).
    backoff: u32,
}

impl Default for RttEstimator {
    fn default() -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: INITIAL_RTO,
            backoff: 0,
        }
    }
}

impl RttEstimator {
    /// RFC 6298 §2.2 and §2.3.
    pub fn sample(&mut self, rtt: Duration) {
        let r = rtt.total_micros();
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = Duration::from_micros(r / 2);
            }
            Some(srtt) => {
                let s = srtt.total_micros();
                let var = (3 * self.rttvar.total_micros() + s.abs_diff(r)) / 4;
                self.rttvar = Duration::from_micros(var);
                self.srtt = Some(Duration::from_micros((7 * s + r) / 8));
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        let k = Duration::from_micros(4 * self.rttvar.total_micros()).max(GRANULARITY);
        self.rto = (srtt + k).clamp(MIN_RTO, MAX_RTO);
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
    /// The timeout to arm, with backoff applied.
    pub fn rto(&self) -> Duration {
        let factor = 1u64 << self.backoff.min(16);
        Duration::from_micros(self.rto.total_micros().saturating_mul(factor)).min(MAX_RTO)
    }
    /// RFC 6298 §5.5: the timer expired.
    pub fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }
    /// New data was acknowledged: the backoff ends.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc6298() {
        let mut e = RttEstimator::default();
        assert_eq!(e.rto(), INITIAL_RTO);
        e.sample(Duration::from_millis(100));
        // srtt 100, rttvar 50: rto = 100 + 200 = 300 ms
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(100));
        // rttvar = 3/4·50 = 37.5 → 250 ms
        assert_eq!(e.rto(), Duration::from_micros(250_000));
        for _ in 0..50 {
            e.sample(Duration::from_micros(50));
        }
        assert_eq!(e.rto(), MIN_RTO);
        e.back_off();
        e.back_off();
        assert_eq!(e.rto(), Duration::from_millis(800));
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), MAX_RTO);
        e.reset_backoff();
        assert_eq!(e.rto(), MIN_RTO);
    }
}
