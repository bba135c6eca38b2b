//! Loss recovery: the pipe and IsLost of RFC 6675 §4, early retransmit
//! (RFC 5827), tail loss probes (RFC 8985 §7) and the retransmission
//! timeout (RFC 6298 §5, RFC 5681 §3.1).

use super::{Connection, Recovery, DUP_THRESHOLD, MIN_PROBE_TIMEOUT};
use crate::socket::tcp::seq::Seq;
use crate::socket::tcp::{Emit, Error};
use crate::time::{Duration, Instant};
use crate::wire::tcp::Flags;

impl Connection {
    /// After an ACK: enter recovery when the duplicate ACKs reach DupThresh
    /// (RFC 5681 §3.2) or, with SACK, when IsLost holds for SND.UNA
    /// (RFC 6675 §5 (4)).
    pub(super) fn detect_loss(&mut self) {
        // RFC 6582 §3.2 (2) guards against a second reduction for one
        // window without SACK; with SACK, losses are known, not guessed.
        let may_enter = self.sack || self.snd_una > self.recover_floor;
        if self.recovery.is_none() && self.snd_max > self.snd_una && may_enter {
            let threshold = self.dup_threshold();
            let lost = self.dupacks >= threshold
                || (self.sack
                    && self
                        .scoreboard
                        .lost_below(self.snd_una, self.lost_bytes_threshold())
                        > self.snd_una);
            if lost {
                // RFC 6675 §5 (4) / RFC 6582 §3.2 (2).
                let flight = self.snd_max.offset_from(self.snd_una);
                self.cc.on_loss(flight);
                self.recovery = Some(Recovery {
                    point: self.snd_max,
                    high_rxt: self.snd_una,
                    first_pending: true,
                    head_fence: None,
                });
                self.recover_floor = self.snd_max;
                self.timed = None;
                self.timers.tlp = None;
            }
        }
    }

    /// RFC 6298 §5.4–§5.7, RFC 5681 §3.1 (4), RFC 6675 §5.1.
    pub(super) fn on_rto(&mut self, now: Instant) {
        self.timers.rto = None;
        let unsent = !self.tx.is_empty() || (self.fin_queued && !self.fin_acked);
        if self.snd_una == self.snd_max && !unsent {
            return;
        }
        // A zero-window probe the peer answers keeps the connection open
        // for as long as it keeps answering (RFC 9293 §3.8.6.1).
        let probing = self.snd_wnd == 0 && self.last_rx_at >= self.last_tx_at && self.syn_acked;
        if !probing {
            self.retries += 1;
            let since = *self.stalled_since.get_or_insert(now);
            let limit = if self.state.is_synchronized() {
                self.config.data_retries
            } else {
                self.config.syn_retries
            };
            let over_time = self
                .config
                .user_timeout
                .is_some_and(|t| now.saturating_since(since) >= t);
            if self.retries > limit || over_time {
                if self.state.is_synchronized() {
                    self.rst_pending = true;
                }
                return self.enter_closed(Some(Error::TimedOut));
            }
            self.cc.on_timeout(self.snd_max.offset_from(self.snd_una));
        }
        log::debug!("retransmission timeout: {}", self.summary());
        self.timers.tlp = None;
        self.rtt.back_off();
        self.recovery = None;
        self.recover_floor = self.snd_max;
        self.dupacks = 0;
        // RFC 6675 §5.1 lets the scoreboard guide the retransmissions after
        // a timeout; a second timeout in a row drops it, in case the peer
        // reneged on what it SACKed (RFC 2018 §8). A SACKed block at SND.UNA
        // is reneging for sure (a receiver never SACKs what it could ACK):
        // the data is resent now, not skipped as held.
        if self.retries >= 2 || self.scoreboard.sacked_at(self.snd_una).is_some() {
            self.scoreboard.clear();
        }
        self.timed = None;
        self.snd_nxt = self.snd_una;
        if !self.syn_acked {
            self.snd_nxt = self.iss; // resend the SYN
        }
        if probing {
            self.probe_due = true;
        }
        // RFC 6298 §5.5–5.6: the timer restarts with the backed-off RTO,
        // whether or not this round manages to send anything.
        self.timers.rto = Some(now + self.rtt.rto());
    }

    /// Bytes in the network as RFC 6675 §4 SetPipe counts them; outside
    /// recovery, what was sent since SND.UNA minus what was SACKed.
    pub(super) fn pipe(&self, lost_end: Seq) -> usize {
        let Some(r) = self.recovery else {
            let sent = self.snd_nxt.offset_from(self.snd_una);
            return sent - self.scoreboard.sacked_between(self.snd_una, self.snd_nxt);
        };
        let outstanding = self.snd_max.offset_from(self.snd_una);
        let sacked = if self.sack {
            self.scoreboard.sacked()
        } else {
            // Without SACK each duplicate ACK means a segment left the network.
            (self.dupacks as usize * self.mss).min(outstanding)
        };
        let from = r.high_rxt.max(self.snd_una);
        let lost_unsent =
            lost_end.saturating_since(from) - self.scoreboard.sacked_between(from, lost_end);
        (outstanding - sacked).saturating_sub(lost_unsent)
    }

    /// Unacknowledged data below this is taken as lost (RFC 6675 IsLost),
    /// and so is SND.UNA in recovery until it has been resent.
    pub(super) fn lost_end(&self) -> Seq {
        let Some(r) = self.recovery else {
            return self.snd_una;
        };
        let mut end = if self.sack {
            self.scoreboard
                .lost_below(self.snd_una, self.lost_bytes_threshold())
        } else {
            self.snd_una
        };
        if r.high_rxt <= self.snd_una {
            end = end.max(self.snd_una + 1);
        }
        end
    }

    /// RFC 5681 DupThresh, lowered by early retransmit (RFC 5827 §3.1)
    /// when so few segments are in flight that three duplicates cannot come.
    pub(super) fn dup_threshold(&self) -> u32 {
        let segments = (self.snd_max.offset_from(self.snd_una)).div_ceil(self.mss.max(1)) as u32;
        if segments <= DUP_THRESHOLD {
            segments.saturating_sub(1).max(1)
        } else {
            DUP_THRESHOLD
        }
    }

    /// RFC 6675 IsLost: more than (DupThresh − 1)·SMSS bytes SACKed above.
    pub(super) fn lost_bytes_threshold(&self) -> usize {
        (self.dup_threshold() as usize - 1) * self.mss
    }

    /// RFC 8985 §7.2: the probe timeout, 2·SRTT (at least 10 ms), plus a
    /// delayed ACK's worth when a single segment is out.
    pub(super) fn probe_timeout(&self) -> Duration {
        let srtt = self.rtt.srtt().unwrap_or(Duration::from_millis(100));
        let mut pto = Duration::from_micros(2 * srtt.total_micros()).max(MIN_PROBE_TIMEOUT);
        if self.snd_max.offset_from(self.snd_una) <= self.mss {
            pto = pto + self.config.delayed_ack;
        }
        pto
    }

    /// Arms the tail loss probe after sending, unless one is out already.
    pub(super) fn arm_tlp(&mut self, now: Instant) {
        if self.snd_max == self.snd_una
            || self.recovery.is_some()
            || self.tlp_sent
            || !self.syn_acked
        {
            self.timers.tlp = None;
            return;
        }
        let at = now + self.probe_timeout();
        if self.timers.rto.map_or(true, |rto| at < rto) {
            self.timers.tlp = Some(at);
        }
    }

    /// RFC 8985 §7.3: send one segment so that the ACK it draws reveals a
    /// lost tail: new data if any may go, else the last segment again.
    pub(super) fn send_tlp(&mut self, now: Instant, out: &mut Emit<'_>) {
        self.tlp_sent = true;
        let data_end = self.snd_una + self.tx.len();
        let fin_sent = self.fin_queued && self.snd_max == data_end + 1;
        let window_end = self.snd_una + self.snd_wnd;
        if self.snd_max < data_end && self.snd_max < window_end {
            let seq = self.snd_max;
            let len = data_end
                .offset_from(self.snd_max)
                .min(window_end.offset_from(self.snd_max))
                .min(self.segment_payload_max())
                .min(self.tx.reach(seq.offset_from(self.snd_una)));
            if self.emit_data(now, (seq, len, 0), Flags::ACK | Flags::PSH, out) {
                self.snd_max = seq + len;
                self.snd_nxt = self.snd_nxt.max(self.snd_max);
            }
            return;
        }
        let len = data_end
            .offset_from(self.snd_una)
            .min(self.segment_payload_max())
            .min(self.tx.tail_reach());
        let seq = Seq(data_end.0.wrapping_sub(len as u32));
        let flags = if fin_sent {
            Flags::ACK | Flags::FIN
        } else {
            Flags::ACK
        };
        if self.timed.is_some_and(|(t, _)| t >= seq) {
            self.timed = None; // Karn's rule
        }
        self.emit_data(now, (seq, len, 0), flags, out);
    }
}
