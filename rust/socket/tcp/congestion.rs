//! Congestion control: CUBIC (RFC 9438) by default, NewReno (RFC 5681,
//! RFC 6582) selectable. Windows are in bytes; CUBIC reasons in segments.

use crate::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    #[default]
    Cubic,
    NewReno,
}

/// RFC 9438 §4.6: multiplicative decrease factor.
const BETA: f64 = 0.7;
/// RFC 9438 §5: the scaling constant C.
const C: f64 = 0.4;
/// RFC 5681 §3.1: initial window, and RFC 6928's ten segments.
const INITIAL_SEGMENTS: usize = 10;

#[derive(Debug, Clone)]
pub struct Congestion {
    algorithm: Algorithm,
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// NewReno's congestion avoidance: bytes acked since the last increase.
    acked_since: usize,
    cubic: Cubic,
}

#[derive(Debug, Clone, Default)]
struct Cubic {
    w_max: f64,
    k: f64,
    origin: f64,
    epoch_start: Option<Instant>,
    /// The Reno-friendly estimate W_est (RFC 9438 §4.3), in segments.
    w_est: f64,
}

impl Congestion {
    pub fn new(algorithm: Algorithm, mss: usize) -> Self {
        Congestion {
            algorithm,
            mss,
            cwnd: INITIAL_SEGMENTS * mss,
            ssthresh: usize::MAX,
            acked_since: 0,
            cubic: Cubic::default(),
        }
    }
    pub fn window(&self) -> usize {
        self.cwnd
    }
    #[cfg(test)]
    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
    pub fn set_mss(&mut self, mss: usize) {
        self.mss = mss;
        self.cwnd = INITIAL_SEGMENTS * mss;
    }

    /// New data acknowledged outside loss recovery.
    pub fn on_ack(&mut self, now: Instant, acked: usize, srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1 slow start, byte counting (RFC 3465).
            self.cwnd += acked.min(2 * self.mss);
            return;
        }
        match self.algorithm {
            Algorithm::NewReno => {
                self.acked_since += acked;
                if self.acked_since >= self.cwnd {
                    self.acked_since -= self.cwnd;
                    self.cwnd += self.mss;
                }
            }
            Algorithm::Cubic => self.cubic_ack(now, acked, srtt.unwrap_or(Duration::ZERO)),
        }
    }

    /// RFC 9438 §4.1–§4.5, once per ACK in congestion avoidance.
    fn cubic_ack(&mut self, now: Instant, acked: usize, rtt: Duration) {
        let mss = self.mss as f64;
        let cwnd = self.cwnd as f64 / mss;
        let c = &mut self.cubic;
        let start = *c.epoch_start.get_or_insert_with(|| {
            if cwnd < c.w_max {
                c.k = ((c.w_max - cwnd) / C).cbrt();
                c.origin = c.w_max;
            } else {
                c.k = 0.0;
                c.origin = cwnd;
            }
            c.w_est = cwnd;
            now
        });
        let t = now.saturating_since(start).total_micros() as f64 / 1e6;
        let w_cubic = |t: f64| C * (t - c.k).powi(3) + c.origin;
        let segments = acked as f64 / mss;
        let alpha = 3.0 * (1.0 - BETA) / (1.0 + BETA);
        c.w_est += alpha * segments / cwnd;
        let rtt = rtt.total_micros() as f64 / 1e6;
        let next = if w_cubic(t) < c.w_est {
            c.w_est
        } else {
            let target = w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * segments
        };
        self.cwnd = ((next * mss) as usize).max(self.cwnd);
    }

    /// Loss detected by duplicate ACKs or SACK: entering fast recovery.
    pub fn on_loss(&mut self, flight: usize) {
        match self.algorithm {
            // RFC 5681 §3.2 (2).
            Algorithm::NewReno => self.ssthresh = (flight / 2).max(2 * self.mss),
            // RFC 9438 §4.6, with fast convergence (§4.7).
            Algorithm::Cubic => {
                let cwnd = self.cwnd as f64 / self.mss as f64;
                let c = &mut self.cubic;
                c.w_max = if cwnd < c.w_max {
                    cwnd * (1.0 + BETA) / 2.0
                } else {
                    cwnd
                };
                c.epoch_start = None;
                self.ssthresh = ((self.cwnd as f64 * BETA) as usize).max(2 * self.mss);
            }
        }
        self.cwnd = self.ssthresh;
        self.acked_since = 0;
    }

    /// Recovery ended with a full acknowledgment (RFC 6582 §3.2 step 3).
    pub fn on_recovered(&mut self) {
        self.cwnd = self.ssthresh.max(2 * self.mss);
    }

    /// RFC 5681 §3.1 (4): the retransmission timer expired.
    pub fn on_timeout(&mut self, flight: usize) {
        if self.algorithm == Algorithm::Cubic {
            self.cubic.w_max = self.cwnd as f64 / self.mss as f64;
            self.cubic.epoch_start = None;
        }
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.acked_since = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_decrease() {
        for algorithm in [Algorithm::Cubic, Algorithm::NewReno] {
            let mut c = Congestion::new(algorithm, 1000);
            assert_eq!(c.window(), 10_000);
            let t = Instant::from_secs(1);
            c.on_ack(t, 1000, None);
            assert_eq!(c.window(), 11_000);
            c.on_loss(11_000);
            let after = c.window();
            assert!((5_000..=7_700).contains(&after), "{algorithm:?}: {after}");
            // Congestion avoidance grows, but by less than slow start would.
            for i in 0..100 {
                c.on_ack(
                    t + Duration::from_millis(i * 10),
                    1000,
                    Some(Duration::from_millis(10)),
                );
            }
            assert!(c.window() > after && c.window() < after + 100_000);
            c.on_timeout(20_000);
            assert_eq!((c.window(), c.ssthresh()), (1000, 10_000));
        }
    }

    #[test]
    fn cubic_returns_to_w_max_after_k() {
        let mut c = Congestion::new(Algorithm::Cubic, 1000);
        c.cwnd = 100_000;
        c.ssthresh = 100_000;
        c.on_loss(100_000);
        assert_eq!(c.window(), 70_000);
        // K = cbrt(100·0.3/0.4) ≈ 4.2 s: after 5 s of ACKs cwnd is back near 100.
        let mut t = Instant::from_secs(10);
        for _ in 0..500 {
            c.on_ack(t, 1000, Some(Duration::from_millis(10)));
            t += Duration::from_millis(10);
        }
        let w = c.window() / 1000;
        assert!((95..=130).contains(&w), "{w}");
    }
}
