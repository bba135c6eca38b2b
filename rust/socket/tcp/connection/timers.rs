//! Every timer of a connection, and what happens when one fires.

use super::{AckDue, Connection, State};
use crate::socket::tcp::Error;
use crate::time::{earliest, Duration, Instant};

/// When each timer of a connection fires; `None` when it is not running.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Timers {
    /// RFC 6298: the retransmission timer.
    pub rto: Option<Instant>,
    /// RFC 9293 §3.8.6.1: the persist timer, probing a shut window.
    pub persist: Option<Instant>,
    /// TIME-WAIT's 2·MSL, or an orphan's FIN-WAIT-2 limit.
    pub close: Option<Instant>,
    /// RFC 8985 §7.2: the tail loss probe.
    pub tlp: Option<Instant>,
    /// When drained buffers are given back, if the connection stays quiet
    /// (see [`BUFFER_KEEP`]).
    pub buffers: Option<Instant>,
}

/// How long a drained send or receive buffer stays allocated after the
/// last segment: a connection that keeps moving data does not free and
/// regrow (zero, copy) its rings at every drain, and an idle one holds
/// no buffer memory once this has passed.
pub(super) const BUFFER_KEEP: Duration = Duration::from_millis(500);

impl Timers {
    /// Stops every timer (the connection closed).
    pub fn clear(&mut self) {
        *self = Timers::default();
    }
}

impl Connection {
    /// The earliest time [`Connection::dispatch`] has timer work.
    pub fn poll_at(&self) -> Option<Instant> {
        let delayed_ack = match self.ack_due {
            AckDue::At(at) => Some(at),
            _ => None,
        };
        let Timers {
            rto,
            persist,
            close,
            tlp,
            buffers,
        } = self.timers;
        [
            persist,
            close,
            tlp,
            buffers,
            delayed_ack,
            self.keepalive_at(),
        ]
        .into_iter()
        .fold(rto, earliest)
    }

    pub(super) fn keepalive_at(&self) -> Option<Instant> {
        let k = self.config.keepalive?;
        if !matches!(self.state, State::Established | State::CloseWait)
            || self.snd_max != self.snd_una
        {
            return None;
        }
        let wait = if self.keepalive_probes == 0 {
            k.idle
        } else {
            k.interval
        };
        Some(self.last_tx_at.max(self.last_rx_at) + wait)
    }

    /// A ring ran empty: it is given back after [`BUFFER_KEEP`] of quiet,
    /// or at once once the peer's FIN came (nothing more will fill it: a
    /// server's closed connections then wait in TIME-WAIT without them).
    pub(super) fn buffers_drained(&mut self, now: Instant) {
        if self.fin_received {
            self.release_buffers(now);
        } else if self.timers.buffers.is_none() {
            self.timers.buffers = Some(now + BUFFER_KEEP);
        }
    }

    /// Frees the empty rings once the connection has been quiet for
    /// [`BUFFER_KEEP`] (the receive ring at once after the peer's FIN);
    /// else looks again when it will have been quiet.
    fn release_buffers(&mut self, now: Instant) {
        let quiet_from = self.last_rx_at + BUFFER_KEEP;
        let quiet = now >= quiet_from;
        self.timers.buffers = None;
        if self.rx_ring_idle() && (quiet || self.fin_received) {
            self.rx.release_if_empty();
        }
        if self.tx_ring_idle() && quiet {
            self.tx.release_if_empty();
        }
        if (self.rx_ring_idle() || self.tx_ring_idle()) && !quiet {
            self.timers.buffers = Some(quiet_from);
        }
    }

    /// The receive ring is allocated and holds nothing, in order or not.
    fn rx_ring_idle(&self) -> bool {
        self.rx.is_empty() && self.rx.allocated() > 0 && self.ooo.is_empty()
    }

    /// The send ring is allocated and holds nothing.
    fn tx_ring_idle(&self) -> bool {
        self.tx.is_empty() && self.tx.allocated() > 0
    }

    pub(super) fn run_timers(&mut self, now: Instant) {
        if self.rx_drained {
            self.rx_drained = false;
            self.buffers_drained(now);
        }
        if self.timers.buffers.is_some_and(|t| t <= now) {
            self.release_buffers(now);
        }
        if self.timers.close.is_some_and(|t| t <= now) {
            // TIME-WAIT over, or an orphan gave up in FIN-WAIT-2.
            self.enter_closed(None);
            return;
        }
        if self.timers.rto.is_some_and(|t| t <= now) {
            self.on_rto(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.timers.persist.is_some_and(|t| t <= now) {
            self.timers.persist = None;
            self.probe_due = true;
            self.rtt.back_off();
        }
        if matches!(self.ack_due, AckDue::At(t) if t <= now) {
            self.ack_due = AckDue::Now;
        }
        if self.keepalive_at().is_some_and(|t| t <= now) {
            let k = self.config.keepalive.unwrap_or_default();
            if self.keepalive_probes >= k.probes {
                self.rst_pending = true;
                return self.enter_closed(Some(Error::TimedOut));
            }
            self.keepalive_probes += 1;
            self.last_tx_at = now;
            self.keepalive_due = true;
        }
    }

    pub(super) fn arm_rto(&mut self, now: Instant) {
        if self.timers.rto.is_none() {
            self.timers.rto = Some(now + self.rtt.rto());
        }
    }
}
