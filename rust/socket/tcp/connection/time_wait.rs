//! A connection in TIME-WAIT that nobody holds, kept as a small record
//! instead of its whole block (about 900 bytes): what TIME-WAIT's answers
//! need (RFC 9293 §3.10.7.4: the acceptability test, an ACK for a FIN sent
//! again, RFC 5961's challenge ACK and exact-match RST, RFC 7323 PAWS, the
//! RFC 6191 takeover by a new SYN) and when it ends. Linux does the same
//! with its `tcp_timewait_sock`.
//!
//! A segment for the tuple is rare (a FIN sent again, a stray ACK, a new
//! SYN): the set makes the record a connection again for it, which answers
//! as any connection in TIME-WAIT does, and keeps the record again after
//! (`set.rs`). So TIME-WAIT's logic stays in one place.

use super::{AckDue, Connection, State, Traffic};
use crate::socket::tcp::seq::Seq;
use crate::socket::tcp::{Endpoint, TcpConfig};
use crate::time::Instant;

/// What a connection in TIME-WAIT needs to answer its peer until it ends.
#[derive(Debug, Clone, Copy)]
pub struct TimeWaitRecord {
    local: Endpoint,
    remote: Endpoint,
    iss: Seq,
    irs: Seq,
    snd_una: Seq,
    snd_max: Seq,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: Seq,
    snd_wl2: Seq,
    rcv_nxt: Seq,
    rcv_adv: Seq,
    last_ack_sent: Seq,
    ts_recent: Option<u32>,
    ts_offset: u32,
    /// The connection's own receive buffer size (SO_RCVBUF), for the window.
    rx_buffer: u32,
    mss: u16,
    snd_shift: u8,
    rcv_shift: u8,
    sack: bool,
    dont_fragment: bool,
    /// TIME-WAIT ends here (2·MSL from the last FIN, on a tick).
    ends_at: Instant,
    last_challenge: Option<Instant>,
    traffic: Traffic,
}

impl TimeWaitRecord {
    pub fn local(&self) -> Endpoint {
        self.local
    }
    pub fn remote(&self) -> Endpoint {
        self.remote
    }
    pub fn ends_at(&self) -> Instant {
        self.ends_at
    }
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }
}

impl Connection {
    /// The record of this connection, if it is in TIME-WAIT with nothing
    /// left to send, receive or time but TIME-WAIT's end.
    pub fn time_wait_record(&self) -> Option<TimeWaitRecord> {
        let quiet = self.state == State::TimeWait
            && self.ack_due == AckDue::No
            && self.reply_rst.is_none()
            && !self.rst_pending
            && self.snd_una == self.snd_max
            && self.snd_nxt == self.snd_max
            && self.rx.is_empty()
            && self.posted.is_none();
        if !quiet {
            return None;
        }
        Some(TimeWaitRecord {
            local: self.local,
            remote: self.remote,
            iss: self.iss,
            irs: self.irs,
            snd_una: self.snd_una,
            snd_max: self.snd_max,
            snd_wnd: u32::try_from(self.snd_wnd).ok()?,
            max_snd_wnd: u32::try_from(self.max_snd_wnd).ok()?,
            snd_wl1: self.snd_wl1,
            snd_wl2: self.snd_wl2,
            rcv_nxt: self.rcv_nxt,
            rcv_adv: self.rcv_adv,
            last_ack_sent: self.last_ack_sent,
            ts_recent: self.ts_recent,
            ts_offset: self.ts_offset,
            rx_buffer: u32::try_from(self.config.rx_buffer).ok()?,
            mss: u16::try_from(self.mss).ok()?,
            snd_shift: self.snd_shift,
            rcv_shift: self.rcv_shift,
            sack: self.sack,
            dont_fragment: self.dont_fragment,
            ends_at: self.timers.close?,
            last_challenge: self.last_challenge,
            traffic: self.traffic,
        })
    }

    /// The connection `record` was made from, in TIME-WAIT, orphaned, its
    /// buffers empty, to take a segment (the set keeps the record again if
    /// it stays in TIME-WAIT).
    pub fn from_time_wait_record(mut config: TcpConfig, now: Instant, r: &TimeWaitRecord) -> Self {
        config.rx_buffer = r.rx_buffer as usize;
        let mut c = Connection::new(config, now, r.local, r.remote, r.iss);
        c.state = State::TimeWait; // (not a transition: no log line)
        c.irs = r.irs;
        c.snd_una = r.snd_una;
        c.snd_nxt = r.snd_max;
        c.snd_max = r.snd_max;
        c.snd_wnd = r.snd_wnd as usize;
        c.max_snd_wnd = r.max_snd_wnd as usize;
        c.snd_wl1 = r.snd_wl1;
        c.snd_wl2 = r.snd_wl2;
        c.recover_floor = r.snd_una;
        c.rcv_nxt = r.rcv_nxt;
        c.rcv_adv = r.rcv_adv;
        c.last_ack_sent = r.last_ack_sent;
        c.ts_recent = r.ts_recent;
        c.ts_offset = r.ts_offset;
        c.mss = r.mss as usize;
        c.snd_shift = r.snd_shift;
        c.rcv_shift = r.rcv_shift;
        c.sack = r.sack;
        c.dont_fragment = r.dont_fragment;
        c.timers.close = Some(r.ends_at);
        c.last_challenge = r.last_challenge;
        c.traffic = r.traffic;
        c.syn_acked = true;
        c.fin_queued = true;
        c.fin_acked = true;
        c.fin_received = true;
        c.read_shut = true;
        c.orphan = true;
        c
    }
}
