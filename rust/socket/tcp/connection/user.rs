//! The user calls of RFC 9293 §3.10.2–§3.10.6: SEND, RECEIVE, CLOSE (half
//! and whole), ABORT, and what an ICMP error does to a connection.

use super::{Connection, Seq, State};
use crate::socket::tcp::posted::{Lent, LentBuffer};
use crate::socket::tcp::Error;
use crate::socket::tcp::SharedText;
use crate::time::Duration;
use std::sync::Arc;

impl Connection {
    /// Bytes the user can read now.
    pub fn recv_available(&self) -> usize {
        self.rx.len()
    }

    /// Room in the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.config.tx_buffer.saturating_sub(self.tx.len())
    }

    /// `len` bytes of the send buffer from `seq`, if all are still held
    /// (not acknowledged yet): a segment's text, sent from here.
    pub fn send_buffer_text(&self, seq: Seq, len: usize) -> Option<(&[u8], &[u8])> {
        if seq < self.snd_una {
            return None;
        }
        let offset = seq.offset_from(self.snd_una);
        let (a, b) = self.tx.peek(offset, len);
        (a.len() + b.len() == len).then_some((a, b))
    }

    /// Bytes queued but not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.tx.len()
    }

    /// The peer sent FIN and every byte before it was read.
    pub fn at_eof(&self) -> bool {
        (self.fin_received || self.read_shut) && self.rx.is_empty()
    }

    /// No more can be sent: a FIN is queued, or the connection ended.
    pub fn write_closed(&self) -> bool {
        self.fin_queued
            || !matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
    }

    pub fn can_send(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait) && !self.fin_queued
    }

    /// Queues data; returns how much fit (0 when the buffer is full).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check_sendable()?;
        Ok(self.tx.push(data, self.config.tx_buffer))
    }

    /// Queues `text.bytes()[from..to]` by reference, kept until acknowledged
    /// (see `send_buffer.rs`); returns how much fit.
    pub fn send_shared(
        &mut self,
        text: &Arc<dyn SharedText>,
        from: usize,
        to: usize,
    ) -> Result<usize, Error> {
        self.check_sendable()?;
        Ok(self.tx.push_shared(text, from, to, self.config.tx_buffer))
    }

    fn check_sendable(&self) -> Result<(), Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived => Err(Error::NotConnected),
            State::Established | State::CloseWait if !self.fin_queued => Ok(()),
            _ => Err(Error::BrokenPipe),
        }
    }

    /// Reads into `out`. `Ok(0)` is end of stream; `Ok(None)` means nothing yet.
    pub fn recv(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if !self.rx.is_empty() {
            let n = self.rx.pop(out);
            // Given back later if it stays empty (the next dispatch, which
            // knows the time, arms that).
            self.rx_drained |= self.rx.is_empty();
            self.maybe_window_update();
            return Ok(Some(n));
        }
        self.recv_empty()
    }

    /// Lends a waiting reader's buffer: text that arrives in order while
    /// nothing is queued goes straight into it (see `posted.rs`). False,
    /// and nothing lent, if another reader's buffer is there already or
    /// reading is over.
    pub fn post_receive(&mut self, buffer: Box<dyn LentBuffer>) -> bool {
        if self.posted.is_some() || self.read_shut || self.fin_received {
            return false;
        }
        self.posted = Some(Lent::new(buffer));
        true
    }

    /// Takes the lent buffer back: how many bytes went into it. They
    /// precede whatever the ring holds now.
    pub fn take_posted(&mut self) -> usize {
        self.posted.take().map_or(0, |p| p.filled())
    }

    /// True once after the lent buffer first refused bytes: the reader has
    /// all it asked for.
    pub fn take_lent_filled(&mut self) -> bool {
        self.posted.as_mut().is_some_and(|p| p.take_just_filled())
    }

    /// As [`Connection::recv`], but the data stays queued (MSG_PEEK).
    pub fn peek(&self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if !self.rx.is_empty() {
            let (a, b) = self.rx.peek(0, out.len());
            out[..a.len()].copy_from_slice(a);
            out[a.len()..a.len() + b.len()].copy_from_slice(b);
            return Ok(Some(a.len() + b.len()));
        }
        self.recv_empty()
    }

    /// What a read finds when nothing is queued: `Ok(None)` to wait, the
    /// end of the stream, or the error.
    pub fn recv_empty(&self) -> Result<Option<usize>, Error> {
        if self.fin_received || self.read_shut {
            return Ok(Some(0));
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived => Err(Error::NotConnected),
            State::Closed => Ok(Some(0)),
            _ => Ok(None),
        }
    }

    /// `shutdown(SHUT_WR)`: a FIN after the queued data (RFC 9293 §3.10.4).
    pub fn shutdown_write(&mut self) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::Established => self.set_state(State::FinWait1),
            State::CloseWait => self.set_state(State::LastAck),
            State::SynSent => {
                self.set_state(State::Closed);
                return;
            }
            // RFC 9293 §3.10.4: queued until ESTABLISHED would be entered;
            // the ACK of our SYN then moves to FIN-WAIT-1 and the FIN goes.
            State::SynReceived => {}
            _ => return,
        }
        self.fin_queued = true;
    }

    /// `shutdown(SHUT_RD)`: what arrives from now on is acknowledged and discarded.
    pub fn shutdown_read(&mut self) {
        self.read_shut = true;
        self.rx.discard(self.rx.len());
    }

    /// `close()`: graceful unless data we were sent was never read, in
    /// which case the peer is told with a reset (RFC 2525 §2.17, as Linux).
    pub fn close(&mut self) {
        if self.config.linger == Some(Duration::ZERO) {
            return self.abort(); // SO_LINGER with no time: a reset, as Linux sends
        }
        self.orphan = true;
        if !self.rx.is_empty() && self.state.is_synchronized() {
            return self.abort();
        }
        match self.state {
            State::SynSent | State::Closed => self.set_state(State::Closed),
            _ => self.shutdown_write(),
        }
    }

    /// After `close`, whether a lingering close (SO_LINGER with a time) may
    /// return: the FIN and all before it acknowledged, or the connection
    /// over. Linux's `sk_stream_wait_close` waits out FIN-WAIT-1, CLOSING and
    /// LAST-ACK the same way.
    pub fn close_settled(&self) -> bool {
        !matches!(
            self.state,
            State::SynReceived | State::FinWait1 | State::Closing | State::LastAck
        )
    }

    /// Sends a reset and forgets the connection (RFC 9293 §3.10.5 ABORT).
    pub fn abort(&mut self) {
        self.orphan = true;
        if !matches!(self.state, State::Closed | State::SynSent | State::TimeWait) {
            self.rst_pending = true;
        }
        self.enter_closed(None);
    }

    /// Its next hop's link address could not be resolved (see
    /// `TcpSockets::unreachable_through`): an opening connection fails.
    pub fn host_unreachable(&mut self) {
        if self.state == State::SynSent {
            self.enter_closed(Some(Error::HostUnreachable));
        }
    }

    /// An ICMP destination unreachable about this connection (RFC 1122
    /// §4.2.3.9): fatal while connecting, a soft error afterwards.
    pub fn icmp_unreachable(&mut self) {
        if self.state == State::SynSent {
            self.enter_closed(Some(Error::Refused));
        }
    }
}
