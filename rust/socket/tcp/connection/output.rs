//! The send side: what a dispatch sends (handshake, data, retransmissions,
//! probes, ACKs), segment selection with Nagle and sender SWS avoidance
//! (RFC 896, RFC 9293 §3.8.6.2.1), bursts, and the headers.

use super::{AckDue, Connection, State, MAX_HEADERS};
use crate::socket::tcp::seq::Seq;
use crate::socket::tcp::{Emit, Outgoing};
use crate::time::Instant;
use crate::wire::tcp::{Flags, Options, Repr, MAX_SACK_BLOCKS};

impl Connection {
    /// Sends what is due: handshake, data, retransmissions, probes, ACKs.
    pub fn dispatch(&mut self, now: Instant, out: &mut Emit<'_>) {
        self.dispatch_due(now, out);
        self.check_invariants(true);
    }

    pub(super) fn dispatch_due(&mut self, now: Instant, out: &mut Emit<'_>) {
        if let Some(ack) = self.reply_rst.take() {
            self.emit_rst(ack, out);
        }
        if self.state != State::Closed {
            self.run_timers(now);
        }
        // An abort, or a timer that gave up, tells the peer once.
        if self.rst_pending {
            self.rst_pending = false;
            let seq = self.snd_max;
            self.emit_rst(seq, out);
        }
        if self.state == State::Closed {
            return;
        }
        match self.state {
            State::SynSent | State::SynReceived => {
                if self.snd_nxt == self.iss {
                    self.send_syn(now, out);
                }
            }
            State::TimeWait => {}
            _ => self.send_data(now, out),
        }
        if self.ack_due == AckDue::Now {
            self.send_ack(now, out);
        }
    }

    pub(super) fn send_syn(&mut self, now: Instant, out: &mut Emit<'_>) {
        let mut options = Options {
            mss: Some(self.own_mss() as u16),
            ..Default::default()
        };
        let active = self.state == State::SynSent;
        if self.config.window_scale && (active || self.snd_shift > 0 || self.rcv_shift > 0) {
            options.window_scale = Some(self.rcv_shift);
        }
        options.sack_permitted = if active { self.config.sack } else { self.sack };
        let ts = if active {
            self.config.timestamps
        } else {
            self.ts_recent.is_some()
        };
        if ts {
            options.timestamps = Some((self.ts_now(now), self.ts_recent.unwrap_or(0)));
        }
        let flags = if active {
            Flags::SYN
        } else {
            Flags::SYN | Flags::ACK
        };
        let repr = Repr {
            src_port: self.local.1,
            dst_port: self.remote.1,
            seq: self.iss.0,
            ack: if active { 0 } else { self.rcv_nxt.0 },
            flags,
            // RFC 7323 §2.2: the window in a SYN is not scaled.
            window: self.rcv_space().min(0xffff) as u16,
            options,
        };
        if self.emit(repr, (&[], &[]), out) {
            self.snd_nxt = self.iss + 1;
            self.snd_max = self.snd_max.max(self.snd_nxt);
            if self.timed.is_none() && self.retries == 0 {
                self.timed = Some((self.iss, now));
            }
            self.arm_rto(now);
        }
    }

    pub(super) fn send_data(&mut self, now: Instant, out: &mut Emit<'_>) {
        if self.timers.tlp.is_some_and(|t| t <= now) {
            self.timers.tlp = None;
            self.send_tlp(now, out);
        }
        self.send_segments(now, out);
        if self.timers.tlp.is_none() {
            self.arm_tlp(now);
        }
    }

    pub(super) fn send_segments(&mut self, now: Instant, out: &mut Emit<'_>) {
        if self.nothing_to_send() {
            return self.send_keepalive(now, out);
        }
        loop {
            let data_end = self.snd_una + self.tx.len();
            let lost_end = self.lost_end();
            let (seq, limit, retransmit) = match self.recovery {
                Some(r) => {
                    // RFC 6675 §4 NextSeg (1): the first lost, unSACKed, unsent-again byte.
                    let mut s = r.high_rxt.max(self.snd_una);
                    while let Some(e) = self.scoreboard.sacked_at(s) {
                        s = e;
                    }
                    if s < lost_end && s < self.snd_max {
                        let next = self.scoreboard.next_sacked_after(s).unwrap_or(self.snd_max);
                        (s, next.min(self.snd_max).offset_from(s), true)
                    } else {
                        (self.snd_max, usize::MAX, false) // (2): new data
                    }
                }
                None => {
                    let mut s = self.snd_nxt;
                    while s < self.snd_max {
                        match self.scoreboard.sacked_at(s) {
                            Some(e) => s = e,
                            None => break,
                        }
                    }
                    self.snd_nxt = s;
                    if s < self.snd_max {
                        let next = self.scoreboard.next_sacked_after(s).unwrap_or(self.snd_max);
                        (s, next.min(self.snd_max).offset_from(s), true)
                    } else {
                        (s, usize::MAX, false)
                    }
                }
            };
            let force = self.probe_due || self.recovery.is_some_and(|r| r.first_pending);
            // RFC 3042 limited transmit: the first two duplicate ACKs each let
            // one new segment out, to keep the ACK clock going.
            let limited = if self.recovery.is_none() {
                self.dupacks.min(2) as usize * self.mss
            } else {
                0
            };
            let cwnd_room = (self.cc.window() + limited).saturating_sub(self.pipe(lost_end));
            let wnd_room = (self.snd_una + self.snd_wnd).saturating_since(seq);
            let avail = data_end.saturating_since(seq);
            // Where the send buffer's text stops being two slices (a piece
            // held by reference ends, see `send_buffer.rs`): a segment ends there.
            let reach = self.tx.reach(seq.offset_from(self.snd_una));
            let mss = self.segment_payload_max();
            let mut len = avail.min(mss).min(limit).min(reach);
            if !force {
                len = len.min(cwnd_room).min(wnd_room);
            } else {
                // Forced segments ignore the congestion window, not the peer's:
                // into a closed window goes one byte, a probe (RFC 9293 §3.8.6.1).
                len = len.min(wnd_room.max(1));
            }
            if self.probe_due && len == 0 && avail > 0 {
                len = 1; // RFC 9293 §3.8.6.1: probe a zero window with one byte
            }
            // Full segments that may all leave now go as one burst when the
            // device cuts bursts itself: the same segments, fewer packets.
            let mut segment_size = 0;
            if len == mss && !force && self.config.device_cuts_bursts() {
                let cap = self.config.burst_capacity.saturating_sub(MAX_HEADERS);
                let room = avail
                    .min(limit)
                    .min(cwnd_room)
                    .min(wnd_room)
                    .min(cap)
                    .min(reach);
                if room >= 2 * mss {
                    len = room - room % mss;
                    segment_size = mss as u16;
                }
            }
            let fin = self.fin_queued
                && !self.fin_acked
                && seq + len == data_end
                && matches!(
                    self.state,
                    State::FinWait1 | State::Closing | State::LastAck
                );
            if len == 0 && !fin {
                if avail > 0
                    && wnd_room == 0
                    && self.snd_max == self.snd_una
                    && self.timers.persist.is_none()
                {
                    self.timers.persist = Some(now + self.rtt.rto());
                }
                break;
            }
            if len == 0 && !retransmit && !force && cwnd_room == 0 {
                break; // a lone FIN waits for the congestion window like data
            }
            if !retransmit && !fin && len < mss && !force {
                // Nagle (RFC 896) and sender SWS avoidance (RFC 9293 §3.8.6.2.1).
                let everything = len == avail;
                let idle = self.snd_max == self.snd_una;
                // With nothing in flight, a segment the window cuts short goes
                // anyway: waiting (RFC 9293's override timer) would gain nothing.
                let window_bound = idle && len == wnd_room;
                // Nor does one cut short where a piece of text ends.
                let piece_bound = len == reach && reach < avail;
                let ok = (everything && (self.config.nodelay || idle))
                    || len >= self.max_snd_wnd / 2
                    || window_bound
                    || piece_bound;
                if !ok {
                    break;
                }
            }
            let mut flags = Flags::ACK;
            if fin {
                flags = flags | Flags::FIN;
            }
            if len > 0 && seq + len == data_end {
                flags = flags | Flags::PSH;
            }
            if !self.emit_data(now, (seq, len, segment_size), flags, out) {
                // Not queued (no route, full queue): the timer tries again.
                self.arm_rto(now);
                break;
            }
            self.probe_due = false;
            let end = seq + len + fin as usize;
            let snd_max = self.snd_max;
            let una = self.snd_una;
            if let Some(r) = self.recovery.as_mut() {
                r.first_pending = false;
                if retransmit {
                    r.high_rxt = end;
                    if seq == una {
                        r.head_fence = Some(snd_max);
                    }
                }
            }
            if retransmit {
                self.traffic.retransmits += 1;
                if self.timed.is_some_and(|(t, _)| t >= seq && t < end) {
                    self.timed = None; // Karn's rule
                }
            } else if self.timed.is_none() && len > 0 {
                self.timed = Some((seq, now));
            }
            if self.recovery.is_none() || !retransmit {
                self.snd_nxt = self.snd_nxt.max(end);
            }
            self.snd_max = self.snd_max.max(end);
            self.arm_rto(now);
            if fin || self.tx.is_empty() && end >= data_end || self.nothing_to_send() {
                break;
            }
        }
        self.send_keepalive(now, out);
    }

    /// Whether [`Connection::send_segments`] would find nothing to send: no
    /// recovery, nothing to send again, no new text, no FIN or probe due.
    /// Most dispatches after a call or an ACK are such; this spares them
    /// the loop's window and send-buffer arithmetic.
    fn nothing_to_send(&self) -> bool {
        self.recovery.is_none()
            && !self.probe_due
            && (!self.fin_queued || self.fin_acked)
            && self.snd_nxt >= self.snd_max
            && self.snd_una + self.tx.len() <= self.snd_nxt
    }

    fn send_keepalive(&mut self, now: Instant, out: &mut Emit<'_>) {
        if self.keepalive_due {
            self.keepalive_due = false;
            // RFC 9293 §3.8.4: a segment with SEG.SEQ = SND.NXT-1 elicits an ACK.
            let repr = self.header(now, Seq(self.snd_una.0.wrapping_sub(1)), Flags::ACK);
            self.emit(repr, (&[], &[]), out);
        }
    }

    /// Payload that fits a segment beside the SACK blocks it will carry
    /// (the timestamp option is already counted in `mss`).
    pub(super) fn segment_payload_max(&self) -> usize {
        if !self.sack || self.ooo.is_empty() {
            return self.mss;
        }
        let max = if self.ts_recent.is_some() {
            3
        } else {
            MAX_SACK_BLOCKS
        };
        let blocks = self.ooo.len().min(max);
        let bytes = (2 + 8 * blocks).div_ceil(4) * 4;
        self.mss.saturating_sub(bytes).max(1)
    }

    /// The common header of a segment from this connection.
    pub(super) fn header(&self, now: Instant, seq: Seq, flags: Flags) -> Repr {
        let mut options = Options::default();
        if self.ts_recent.is_some() {
            options.timestamps = Some((self.ts_now(now), self.ts_recent.unwrap_or(0)));
        }
        if self.sack && !self.ooo.is_empty() {
            let max = if self.ts_recent.is_some() {
                3
            } else {
                MAX_SACK_BLOCKS
            };
            let n = self.ooo.sack_blocks(max, &mut options.sack_blocks);
            options.sack_count = n as u8;
        }
        let window = (self.window_to_advertise() >> self.rcv_shift).min(0xffff) as u16;
        Repr {
            src_port: self.local.1,
            dst_port: self.remote.1,
            seq: seq.0,
            ack: self.rcv_nxt.0,
            flags,
            window,
            options,
        }
    }

    /// Sends `len` bytes from `seq`, as one segment or (`segment_size` > 0)
    /// a burst of segments of that size.
    pub(super) fn emit_data(
        &mut self,
        now: Instant,
        (seq, len, segment_size): (Seq, usize, u16),
        flags: Flags,
        out: &mut Emit<'_>,
    ) -> bool {
        let repr = self.header(now, seq, flags);
        let offset = seq.offset_from(self.snd_una);
        let (a, b) = self.tx.peek(offset, len);
        debug_assert_eq!(
            a.len() + b.len(),
            len,
            "a segment's text is two slices at most"
        );
        let ok = out(&Outgoing {
            src: self.local.0,
            dst: self.remote.0,
            repr,
            payload: (a, b),
            from_send_buffer: true,
            owner: None,
            segment_size,
            dont_fragment: self.dont_fragment,
        });
        if ok {
            self.sent_ack(now, &repr);
        }
        ok
    }

    pub(super) fn emit(&mut self, repr: Repr, payload: (&[u8], &[u8]), out: &mut Emit<'_>) -> bool {
        let ok = out(&Outgoing {
            src: self.local.0,
            dst: self.remote.0,
            repr,
            payload,
            from_send_buffer: false,
            owner: None,
            segment_size: 0,
            dont_fragment: self.dont_fragment,
        });
        if ok && repr.flags.contains(Flags::ACK) {
            self.after_ack_sent(&repr);
        }
        ok
    }

    pub(super) fn sent_ack(&mut self, now: Instant, repr: &Repr) {
        self.last_tx_at = now;
        self.after_ack_sent(repr);
    }

    pub(super) fn after_ack_sent(&mut self, repr: &Repr) {
        self.ack_due = AckDue::No;
        self.dsack = None; // said once (RFC 2883 §4), or not at all
        self.unacked_bytes = 0;
        self.last_ack_sent = self.rcv_nxt;
        // RFC 7323 §2.2: a SYN's window is not scaled.
        let shift = if repr.flags.contains(Flags::SYN) {
            0
        } else {
            self.rcv_shift
        };
        let right = self.rcv_nxt + ((repr.window as usize) << shift);
        self.rcv_adv = self.rcv_adv.max(right);
    }

    /// A bare ACK, carrying SACK blocks when out-of-order data is held.
    pub(super) fn send_ack(&mut self, now: Instant, out: &mut Emit<'_>) {
        // SND.MAX, not our retransmission point: the peer's receive window
        // starts beyond what we already sent. But never past the window the
        // peer offers: after a zero-window probe SND.MAX lies beyond it, and
        // a peer drops a segment outside its window, ACK and all (RFC 9293
        // §3.10.7.4 acceptability test).
        let window_end = self.snd_una + self.snd_wnd;
        let seq = if window_end < self.snd_max {
            window_end
        } else {
            self.snd_max
        };
        let mut repr = self.header(now, seq, Flags::ACK);
        if let Some(duplicate) = self.dsack {
            self.put_dsack(&mut repr.options, duplicate);
        }
        self.emit(repr, (&[], &[]), out);
    }

    /// The D-SACK block first, the SACK blocks after it, as many as fit
    /// (RFC 2883 §4). Bare ACKs only: a burst of data segments would repeat
    /// it in each, and a D-SACK must be said once.
    fn put_dsack(&self, options: &mut Options, (start, end): (Seq, Seq)) {
        let max = if self.ts_recent.is_some() {
            3
        } else {
            MAX_SACK_BLOCKS
        };
        let n = (options.sack_count as usize).min(max - 1);
        options.sack_blocks.copy_within(..n, 1);
        options.sack_blocks[0] = (start.0, end.0);
        options.sack_count = n as u8 + 1;
    }

    pub(super) fn emit_rst(&mut self, seq: Seq, out: &mut Emit<'_>) {
        let repr = Repr {
            src_port: self.local.1,
            dst_port: self.remote.1,
            seq: seq.0,
            ack: 0,
            flags: Flags::RST,
            window: 0,
            options: Options::default(),
        };
        out(&Outgoing {
            src: self.local.0,
            dst: self.remote.0,
            repr,
            payload: (&[], &[]),
            from_send_buffer: false,
            owner: None,
            segment_size: 0,
            dont_fragment: self.dont_fragment,
        });
    }
}
