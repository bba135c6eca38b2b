//! Segment arrival (RFC 9293 §3.10.7): the acceptability test, RST, SYN
//! and ACK processing in the order the RFC gives, with PAWS (RFC 7323 §5)
//! and the RFC 5961 defences.

use super::{millis, AckDue, Connection, State, CHALLENGE_ACK_INTERVAL};
use crate::socket::tcp::seq::Seq;
use crate::socket::tcp::{Emit, Error, Incoming};
use crate::time::{Duration, Instant};
use crate::wire::tcp::Flags;

impl Connection {
    /// Room for text: what the receive buffer (SO_RCVBUF) has left, and
    /// never less than the window already offered. A buffer made smaller
    /// keeps the right edge where it was (RFC 9293 §3.8.6.2.2: a receiver
    /// should not shrink the window) and closes the window as the peer
    /// fills it.
    pub(super) fn rcv_space(&self) -> usize {
        let left = self.config.rx_buffer.saturating_sub(self.rx.len());
        left.max(self.rcv_adv.saturating_since(self.rcv_nxt))
    }

    /// Handles a segment for this connection.
    pub fn process(&mut self, now: Instant, seg: &Incoming<'_>, out: &mut Emit<'_>) {
        self.process_segment(now, seg, out);
        self.check_invariants(false);
    }

    pub(super) fn process_segment(&mut self, now: Instant, seg: &Incoming<'_>, out: &mut Emit<'_>) {
        match self.state {
            State::Closed => return,
            State::SynSent => return self.process_syn_sent(now, seg),
            _ => {}
        }
        self.last_rx_at = now;
        self.keepalive_probes = 0;
        let rst = seg.has(Flags::RST);
        // RFC 7323 §5.3 PAWS: an old timestamp marks an old duplicate.
        if let (Some(recent), Some((val, _)), false) = (self.ts_recent, seg.options.timestamps, rst)
        {
            if (val.wrapping_sub(recent) as i32) < 0 {
                self.ack_due = AckDue::Now;
                return;
            }
        }
        // RFC 9293 §3.10.7.4 first: the acceptability test.
        let len = seg.seq_len();
        let wnd = self.rcv_space();
        let nxt = self.rcv_nxt;
        let starts_in = nxt <= seg.seq && seg.seq < nxt + wnd;
        let acceptable = match (len, wnd) {
            (0, 0) => seg.seq == nxt,
            (0, _) => starts_in,
            (_, 0) => false,
            _ => starts_in || (nxt <= seg.seq + (len - 1) && seg.seq + (len - 1) < nxt + wnd),
        };
        // A zero window still takes ACKs and RSTs (RFC 9293 §3.10.7.4).
        let ack_only = !acceptable && wnd == 0 && seg.seq == nxt;
        if !acceptable && !ack_only {
            if !rst {
                self.ack_due = AckDue::Now;
                if seg.seq < nxt {
                    // Old text again (RFC 2883 §4.1.1).
                    let end = seg.seq + seg.payload.len();
                    self.note_duplicate(seg.seq, if end <= nxt { end } else { nxt });
                }
                // RFC 9293 §3.10.7.4, TIME-WAIT: the peer's FIN sent again
                // (our ACK was lost) is acknowledged and restarts the 2·MSL
                // timeout, so that the peer's next try still finds us.
                if self.state == State::TimeWait && seg.has(Flags::FIN) && seg.seq + len == nxt {
                    self.enter_time_wait(now);
                }
            }
            return;
        }
        if ack_only && !seg.payload.is_empty() {
            self.ack_due = AckDue::Now; // tell the sender the window is still shut
        }
        // RFC 7323 §4.3: remember the timestamp of in-order segments.
        if let (Some(_), Some((val, _))) = (self.ts_recent, seg.options.timestamps) {
            if seg.seq <= self.last_ack_sent {
                self.ts_recent = Some(val);
            }
        }
        // Second: RST (RFC 5961 §3.2: only an exact match resets).
        if rst {
            if seg.seq == nxt {
                let error = match (self.state, self.orphan) {
                    (State::TimeWait, _) | (_, true) => None,
                    (State::SynReceived, _) => Some(Error::Refused),
                    _ => Some(Error::Reset),
                };
                self.enter_closed(error);
            } else {
                self.challenge_ack(now);
            }
            return;
        }
        // Fourth: SYN in a synchronized state (RFC 5961 §4).
        if seg.has(Flags::SYN) {
            if self.state == State::SynReceived && seg.seq == self.irs {
                self.snd_nxt = self.iss; // a retransmitted SYN: answer it again
            } else {
                self.challenge_ack(now);
            }
            return;
        }
        // Fifth: ACK.
        if !seg.has(Flags::ACK) {
            return;
        }
        if self.state == State::SynReceived {
            if !(self.snd_una < seg.ack && seg.ack <= self.snd_max) {
                return self.reset_reply(seg);
            }
            self.set_state(if self.fin_queued {
                State::FinWait1
            } else {
                State::Established
            });
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.snd_wnd = (seg.window as usize) << self.snd_shift;
            self.max_snd_wnd = self.snd_wnd;
        }
        if seg.ack > self.snd_max {
            self.ack_due = AckDue::Now;
            return;
        }
        // RFC 5961 §5.2: an ACK too old to be in any window is suspicious.
        if seg.ack < Seq(self.snd_una.0.wrapping_sub(self.max_snd_wnd.max(1) as u32)) {
            self.challenge_ack(now);
            return;
        }
        self.process_ack(now, seg);
        match self.state {
            State::FinWait1 if self.fin_acked => {
                self.set_state(State::FinWait2);
                if self.orphan {
                    self.timers.close = Some(now + self.config.fin_timeout);
                }
            }
            State::Closing if self.fin_acked => self.enter_time_wait(now),
            State::LastAck if self.fin_acked => {
                self.enter_closed(None);
                return;
            }
            State::TimeWait => {
                if seg.has(Flags::FIN) {
                    self.ack_due = AckDue::Now;
                    self.enter_time_wait(now);
                }
                return;
            }
            _ => {}
        }
        // Seventh: segment text.
        if !ack_only
            && !seg.payload.is_empty()
            && matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            )
        {
            self.process_data(now, seg.seq, seg.payload, out);
            if self.state == State::Closed {
                return;
            }
        }
        // Eighth: FIN.
        if !ack_only && seg.has(Flags::FIN) {
            let at = seg.seq + seg.payload.len();
            if at >= self.rcv_nxt && self.fin_at.is_none() && !self.fin_received {
                self.fin_at = Some(at);
                // Nothing follows the end of the stream: out-of-order data
                // beyond it is dropped (as Linux purges its queue).
                self.ooo.truncate(at);
            }
        }
        self.take_fin(now);
    }

    /// RFC 9293 §3.10.7.3.
    pub(super) fn process_syn_sent(&mut self, now: Instant, seg: &Incoming<'_>) {
        let ack_ok = seg.has(Flags::ACK) && self.iss < seg.ack && seg.ack <= self.snd_max;
        if seg.has(Flags::ACK) && !ack_ok {
            if !seg.has(Flags::RST) {
                self.reset_reply(seg);
            }
            return;
        }
        if seg.has(Flags::RST) {
            if ack_ok {
                self.enter_closed(Some(Error::Refused));
            }
            return;
        }
        if !seg.has(Flags::SYN) {
            return;
        }
        self.take_syn(seg);
        self.last_rx_at = now;
        if ack_ok {
            self.syn_acked = true;
            self.snd_una = seg.ack;
            self.snd_nxt = self.snd_nxt.max(self.snd_una);
            self.snd_wl2 = seg.ack;
            self.timers.rto = None;
            self.retries = 0;
            if let Some((_, sent)) = self.timed.take() {
                self.rtt.sample(now.saturating_since(sent));
            }
            self.rtt.reset_backoff();
            self.set_state(State::Established);
            self.ack_due = AckDue::Now;
        } else {
            // Simultaneous open: answer with SYN-ACK.
            self.set_state(State::SynReceived);
            self.snd_nxt = self.iss;
        }
    }

    pub(super) fn process_ack(&mut self, now: Instant, seg: &Incoming<'_>) {
        let ack = seg.ack;
        let mut news = false;
        if self.sack {
            for &(l, r) in seg.options.sack_blocks() {
                let (l, r) = (Seq(l), Seq(r));
                // Ignore D-SACK (RFC 2883) and blocks outside what is in flight.
                if l < r && self.snd_una < r && r <= self.snd_max {
                    news |= self.scoreboard.add(l.max(self.snd_una), r);
                }
            }
        }
        // RFC 9293 §3.10.7.4: window update rule.
        let window = (seg.window as usize) << self.snd_shift;
        let mut window_changed = false;
        if ack >= self.snd_una
            && (self.snd_wl1 < seg.seq || (self.snd_wl1 == seg.seq && self.snd_wl2 <= ack))
        {
            window_changed = window != self.snd_wnd;
            self.snd_wnd = window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = ack;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            if window > 0 {
                self.timers.persist = None;
            }
        }
        if let (Some(r), Some(high)) = (self.recovery.as_mut(), self.scoreboard.highest()) {
            if r.head_fence.is_some_and(|fence| high > fence) && r.high_rxt > self.snd_una {
                r.head_fence = None;
                r.high_rxt = self.snd_una; // resend the head again
            }
        }
        if ack > self.snd_una {
            self.new_ack(now, seg);
        } else if ack == self.snd_una
            && self.snd_max > self.snd_una
            && seg.payload.is_empty()
            && !seg.has(Flags::FIN)
            && (!window_changed || news)
        {
            // RFC 5681 §2 duplicate acknowledgment.
            self.dupacks += 1;
        }
        self.detect_loss();
    }

    /// An ACK that acknowledges new data (RFC 9293 §3.10.7.4, RFC 6298 §5).
    pub(super) fn new_ack(&mut self, now: Instant, seg: &Incoming<'_>) {
        let ack = seg.ack;
        // The acknowledged octets: SYN and FIN each take one sequence number
        // but no place in the send buffer.
        let mut bytes = ack.offset_from(self.snd_una);
        let syn_octet = !self.syn_acked as usize;
        let fin_seq = self.snd_una + syn_octet + self.tx.len();
        if !self.syn_acked {
            self.syn_acked = true;
            bytes = bytes.saturating_sub(1);
        }
        let fin_sent = self.fin_queued && self.snd_max == fin_seq + 1;
        if fin_sent && !self.fin_acked && ack == fin_seq + 1 {
            self.fin_acked = true;
            bytes = bytes.saturating_sub(1);
        }
        debug_assert!(
            bytes <= self.tx.len(),
            "ACK beyond the data: {}",
            self.summary()
        );
        let bytes = bytes.min(self.tx.len());
        self.tx.discard(bytes);
        self.traffic.bytes_acked += bytes as u64;
        if self.tx.is_empty() {
            self.buffers_drained(now);
        }
        // RTT: the timed segment (Karn), else the echoed timestamp (RFC 7323 §4).
        match self.timed {
            Some((seq, sent)) if ack > seq => {
                self.rtt.sample(now.saturating_since(sent));
                self.timed = None;
            }
            None => {
                if let (Some(_), Some((_, ecr))) = (self.ts_recent, seg.options.timestamps) {
                    let ms = millis(now).wrapping_add(self.ts_offset).wrapping_sub(ecr);
                    if ecr != 0 && ms < 60_000 {
                        self.rtt.sample(Duration::from_millis(ms as u64));
                    }
                }
            }
            _ => {}
        }
        self.rtt.reset_backoff();
        self.retries = 0;
        self.stalled_since = None;
        self.scoreboard.advance(ack);
        self.snd_una = ack;
        self.snd_nxt = self.snd_nxt.max(ack);
        self.dupacks = 0;
        match self.recovery {
            Some(r) if ack >= r.point => {
                self.recovery = None;
                self.cc.on_recovered();
            }
            Some(_) => {} // partial ACK: the hole at SND.UNA is resent (RFC 6582 §3.2 (5))
            None => self.cc.on_ack(now, bytes, self.rtt.srtt()),
        }
        self.timers.rto = (self.snd_una != self.snd_max).then(|| now + self.rtt.rto());
        // RFC 8985 §7.2: an ACK of new data rearms the probe.
        self.tlp_sent = false;
        self.timers.tlp = None;
    }

    /// RFC 5961 §3.2/§4: answer a suspicious RST or SYN with an ACK, rate-limited.
    pub(super) fn challenge_ack(&mut self, now: Instant) {
        if self
            .last_challenge
            .is_some_and(|t| now.saturating_since(t) < CHALLENGE_ACK_INTERVAL)
        {
            return;
        }
        self.last_challenge = Some(now);
        self.ack_due = AckDue::Now;
    }

    /// Remembers to answer an unacceptable segment with a reset (RFC 9293 §3.10.7.3/4).
    pub(super) fn reset_reply(&mut self, seg: &Incoming<'_>) {
        self.reply_rst = Some(seg.ack);
    }

    /// Whether a new SYN may take over this connection in TIME-WAIT
    /// (RFC 6191 §2: a higher timestamp; an equal one, or none, and a
    /// higher sequence number). An equal timestamp is common: a client that
    /// closed second over a link quicker than the timestamp clock's
    /// millisecond (a veth) reuses its port within the millisecond of its
    /// FIN; refused, its SYN waited out a second (Linux accepts it too).
    pub fn time_wait_accepts(&self, seg: &Incoming<'_>) -> bool {
        if self.state != State::TimeWait {
            return false;
        }
        let newer_seq = seg.seq > self.rcv_nxt;
        match (self.ts_recent, seg.options.timestamps) {
            (Some(recent), Some((val, _))) => match (val.wrapping_sub(recent) as i32).signum() {
                1 => true,
                0 => newer_seq,
                _ => false,
            },
            _ => newer_seq,
        }
    }
}
