//! The receive side: segment text in order and out of order (RFC 9293
//! §3.10.7.4 seventh), the FIN (eighth), and the window we advertise
//! (receiver SWS avoidance, §3.8.6.2.2).

use super::{AckDue, Connection, State};
use crate::socket::tcp::seq::Seq;
use crate::socket::tcp::Emit;
use crate::time::Instant;
use crate::wire::SegmentText;

impl Connection {
    /// RFC 9293 §3.8.6.2.2: after a read, announce a window that grew a
    /// lot, so that a sender stalled on a small window resumes.
    pub(super) fn maybe_window_update(&mut self) {
        if !self.state.is_synchronized() || self.fin_received {
            return;
        }
        // What a window field can say (a buffer made larger than the scale
        // agreed in the handshake allows is not worth an update per read).
        let most = 0xffff << self.rcv_shift;
        let advertised = self.rcv_adv.saturating_since(self.rcv_nxt);
        let now_open = self.rcv_space().min(most);
        let limit = self.config.rx_buffer.min(most);
        if advertised < limit / 2 && now_open >= advertised + self.mss.min(limit / 2) {
            self.ack_due = AckDue::Now;
        }
    }

    /// Stores text (RFC 9293 §3.10.7.4 seventh), trimmed to the window;
    /// out-of-order text is kept and acknowledged with SACK when the round
    /// that brought it ends (at once, one duplicate ACK each, without SACK).
    /// In-order text goes into a waiting reader's buffer as far as it has
    /// room, the rest into the receive ring: both places are decided first,
    /// and the text copied to them in one go (a device may hold it still,
    /// `wire/held_text.rs`).
    pub(super) fn process_data(
        &mut self,
        now: Instant,
        seq: Seq,
        payload: SegmentText<'_>,
        out: &mut Emit<'_>,
    ) {
        if self.orphan && !self.read_shut {
            // Nobody will read it: tell the peer (RFC 2525 §2.17).
            return self.abort();
        }
        let (mut seq, total) = (seq, payload.len());
        let mut skip = 0;
        if seq < self.rcv_nxt {
            skip = self.rcv_nxt.offset_from(seq);
            self.note_duplicate(seq, seq + skip.min(total));
            if skip >= total {
                self.ack_due = AckDue::Now;
                return;
            }
            seq = self.rcv_nxt;
        }
        let offset = seq.offset_from(self.rcv_nxt);
        let space = self.rcv_space();
        let ring_limit = self.rx.len() + space;
        let room = space.saturating_sub(offset);
        let mut len = (total - skip).min(room);
        if let Some(fin) = self.fin_at {
            // Not past the FIN already seen beyond a hole.
            len = len.min(fin.saturating_since(seq));
        }
        if len == 0 {
            self.ack_due = AckDue::Now;
            return;
        }
        // In order, with a reader waiting and nothing queued before it (nor
        // held beyond a hole, whose place in the ring is fixed relative to
        // the ring's head): its buffer first.
        let mut lent = match &mut self.posted {
            Some(posted)
                if offset == 0 && self.rx.is_empty() && self.ooo.is_empty() && !self.read_shut =>
            {
                Some(posted)
            }
            _ => None,
        };
        let lent_part = match lent.as_deref_mut() {
            Some(posted) => {
                let spare = posted.spare();
                let n = spare.len().min(len);
                &mut spare[..n]
            }
            None => &mut [][..],
        };
        let direct = lent_part.len();
        let ring_at = self.rx.len() + offset;
        let (ring_a, ring_b) = self.rx.spare_at(ring_at, len - direct, ring_limit);
        if !payload.scatter(skip, &mut [lent_part, ring_a, ring_b]) {
            // The device could not read it (and counted that): as if lost.
            self.ack_due = AckDue::Now;
            return;
        }
        if let Some(posted) = lent {
            posted.commit(direct, len);
        }
        if direct > 0 {
            self.take_in_order(now, direct, false);
            seq = seq + direct;
            if direct == len {
                return;
            }
        }
        let rest = len - direct;
        if offset == 0 {
            let filled_hole = !self.ooo.is_empty();
            let reach = self.ooo.advance(seq + rest);
            let n = reach.offset_from(self.rcv_nxt);
            self.rx.commit(n);
            self.take_in_order(now, n, filled_hole);
            if self.read_shut {
                self.rx.discard(self.rx.len());
            }
        } else {
            // Out of order: keep it, and tell the sender now (RFC 5681 §4.2).
            if let Some((start, end)) = self.ooo.overlap(seq, seq + rest) {
                self.note_duplicate(start, end);
            }
            self.ooo.add(seq, seq + rest);
            if self.sack {
                // Once the round is over, with what it brought: a segment
                // that was only late (a veth's per-CPU queues reorder) may
                // fill the hole within it, and a SACK sent before would
                // have the sender retransmit it for nothing.
                self.ack_due = AckDue::Now;
            } else {
                // Without SACK the sender counts duplicate ACKs: one each.
                self.send_ack(now, out);
            }
        }
    }

    /// Text already received came again: report it in the next ACK
    /// (RFC 2883 §4), if the peer does SACK.
    pub(super) fn note_duplicate(&mut self, start: Seq, end: Seq) {
        self.ack_due = AckDue::Now;
        if self.sack && start < end {
            self.dsack = Some((start, end));
        }
    }

    /// Bookkeeping for `n` bytes that became readable in order: RCV.NXT,
    /// counters, and when to acknowledge (RFC 5681 §4.2: at least every
    /// second full-sized segment, at once when a hole was filled).
    fn take_in_order(&mut self, now: Instant, n: usize, filled_hole: bool) {
        self.traffic.bytes_received += n as u64;
        self.rcv_nxt = self.rcv_nxt + n;
        self.unacked_bytes += n;
        if filled_hole || self.unacked_bytes >= 2 * self.mss {
            self.ack_due = AckDue::Now;
        } else if self.ack_due == AckDue::No {
            self.ack_due = AckDue::At(now + self.config.delayed_ack);
        }
    }

    /// A FIN whose place in the stream is reached (RFC 9293 §3.10.7.4 eighth).
    pub(super) fn take_fin(&mut self, now: Instant) {
        if self.fin_at != Some(self.rcv_nxt) {
            return;
        }
        self.fin_at = None;
        self.fin_received = true;
        self.ooo.clear();
        self.rcv_nxt = self.rcv_nxt + 1;
        self.ack_due = AckDue::Now;
        if self.rx.is_empty() {
            self.buffers_drained(now); // nothing more will fill it
        }
        match self.state {
            State::Established => self.set_state(State::CloseWait),
            State::FinWait1 if !self.fin_acked => self.set_state(State::Closing),
            State::FinWait1 | State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    /// RFC 9293 §3.8.6.2.2 receiver SWS avoidance: the right edge moves
    /// only by at least min(buffer/2, MSS), never by dribbles.
    pub(super) fn window_to_advertise(&self) -> usize {
        let space = self.rcv_space();
        let promised = self.rcv_adv.saturating_since(self.rcv_nxt).min(space);
        let step = (self.config.rx_buffer / 2).min(self.mss);
        if space >= promised + step {
            space
        } else {
            promised
        }
    }
}
