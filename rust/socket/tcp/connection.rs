//! One TCP connection: the transmission control block of RFC 9293 §3.3.1
//! and its state machine (§3.10), with RFC 7323 options, SACK (RFC 2018,
//! RFC 6675), RFC 6298 timers, NewReno/CUBIC and RFC 5961 defences.

use super::assembler::Assembler;
use super::congestion::Congestion;
use super::path_mtu;
use super::ring::Ring;
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::seq::Seq;
use super::{Emit, Endpoint, Error, Incoming, Outgoing, TcpConfig};
use crate::time::{Duration, Instant};
use crate::wire::tcp::{Flags, Options, Repr, MAX_SACK_BLOCKS};

/// RFC 9293 §3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

impl State {
    /// Past the handshake (RFC 9293 "synchronized states").
    pub fn is_synchronized(self) -> bool {
        !matches!(self, State::SynSent | State::SynReceived | State::Closed)
    }
    pub fn name(self) -> &'static str {
        match self {
            State::SynSent => "SYN_SENT",
            State::SynReceived => "SYN_RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT_1",
            State::FinWait2 => "FIN_WAIT_2",
            State::CloseWait => "CLOSE_WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST_ACK",
            State::TimeWait => "TIME_WAIT",
            State::Closed => "CLOSED",
        }
    }
}

/// RFC 7323 §2.3: the largest shift.
const MAX_WINDOW_SHIFT: u8 = 14;
/// RFC 9293 §3.7.1: the MSS assumed when the peer announces none.
const DEFAULT_MSS: usize = 536;
/// Bytes of the timestamp option with its padding.
const TIMESTAMP_OPTION_LEN: usize = 12;
/// IPv4 header plus the longest TCP header: what a burst needs beside its payload.
const MAX_HEADERS: usize = 20 + 60;
/// RFC 5961 §7: at most one challenge ACK per this interval per connection.
const CHALLENGE_ACK_INTERVAL: Duration = Duration::from_millis(100);
/// RFC 5681 §3.2: duplicate ACKs that signal loss.
const DUP_THRESHOLD: u32 = 3;
/// RFC 8985 §7.2 leaves the floor to the implementation; Linux uses 10 ms.
const MIN_PROBE_TIMEOUT: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckDue {
    No,
    At(Instant),
    Now,
}

#[derive(Debug, Clone, Copy)]
struct Recovery {
    /// RFC 6582 `recover`: recovery ends when this is acknowledged.
    point: Seq,
    /// RFC 6675 HighRxt: retransmitted up to here.
    high_rxt: Seq,
    /// The first retransmission goes out whatever the pipe says (RFC 6675 §5 (4.3)).
    first_pending: bool,
    /// The hole at SND.UNA was resent when SND.MAX was here: SACKs beyond
    /// it mean later segments arrived and the resent one was lost too
    /// (the lost-retransmission case RACK, RFC 8985 §6.2, catches).
    head_fence: Option<Seq>,
}

#[derive(Debug)]
pub struct Connection {
    local: Endpoint,
    remote: Endpoint,
    state: State,
    config: TcpConfig,
    error: Option<Error>,

    // Send side (RFC 9293 §3.3.1 plus SND.MAX for go-back-N after a timeout).
    iss: Seq,
    snd_una: Seq,
    snd_nxt: Seq,
    snd_max: Seq,
    snd_wnd: usize,
    max_snd_wnd: usize,
    snd_wl1: Seq,
    snd_wl2: Seq,
    snd_shift: u8,
    /// Payload bytes per segment after options.
    mss: usize,
    tx: Ring,
    /// The user will send no more: a FIN follows the data.
    fin_queued: bool,
    syn_acked: bool,
    fin_acked: bool,

    // Receive side.
    irs: Seq,
    rcv_nxt: Seq,
    rcv_shift: u8,
    /// Right edge of the window last advertised.
    rcv_adv: Seq,
    rx: Ring,
    ooo: Assembler,
    /// A FIN seen beyond a hole, processed when the data before it arrives.
    fin_at: Option<Seq>,
    fin_received: bool,
    read_shut: bool,
    ack_due: AckDue,
    unacked_bytes: usize,

    // Options.
    sack: bool,
    /// RFC 7323 §4.3 TS.Recent when timestamps are on.
    ts_recent: Option<u32>,
    ts_offset: u32,
    last_ack_sent: Seq,

    // Timers and recovery.
    rtt: RttEstimator,
    rto_at: Option<Instant>,
    /// RFC 6298 §3 / Karn: one segment timed at a time.
    timed: Option<(Seq, Instant)>,
    retries: u32,
    stalled_since: Option<Instant>,
    persist_at: Option<Instant>,
    probe_due: bool,
    cc: Congestion,
    scoreboard: Scoreboard,
    dupacks: u32,
    recovery: Option<Recovery>,
    recover_floor: Seq,
    last_rx_at: Instant,
    last_tx_at: Instant,
    keepalive_probes: u32,
    close_at: Option<Instant>,
    last_challenge: Option<Instant>,
    rst_pending: bool,
    /// A reset answering an unacceptable ACK, with this sequence number.
    reply_rst: Option<Seq>,
    keepalive_due: bool,
    /// RFC 8985 §7 tail loss probe: when it fires, and whether one is out.
    tlp_at: Option<Instant>,
    tlp_sent: bool,
    /// The user closed it: nobody will read or write any more.
    orphan: bool,

    // Path MTU discovery (RFC 1191).
    /// The path MTU learnt for this connection's destination, if smaller
    /// than the link's.
    path_mtu: Option<usize>,
    /// Segments go with DF set, unless the path reported an MTU below
    /// [`path_mtu::MIN_PATH_MTU`].
    dont_fragment: bool,
}

fn window_shift(buffer: usize) -> u8 {
    let mut shift = 0;
    while shift < MAX_WINDOW_SHIFT && (buffer >> shift) > 0xffff {
        shift += 1;
    }
    shift
}

fn millis(now: Instant) -> u32 {
    (now.total_micros() / 1000) as u32
}

impl Connection {
    fn new(config: TcpConfig, now: Instant, local: Endpoint, remote: Endpoint, iss: Seq) -> Self {
        Connection {
            local,
            remote,
            state: State::Closed,
            config,
            error: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: Seq(0),
            snd_wl2: iss,
            snd_shift: 0,
            mss: DEFAULT_MSS,
            tx: Ring::default(),
            fin_queued: false,
            syn_acked: false,
            fin_acked: false,
            irs: Seq(0),
            rcv_nxt: Seq(0),
            rcv_shift: if config.window_scale {
                window_shift(config.rx_buffer)
            } else {
                0
            },
            rcv_adv: Seq(0),
            rx: Ring::default(),
            ooo: Assembler::default(),
            fin_at: None,
            fin_received: false,
            read_shut: false,
            ack_due: AckDue::No,
            unacked_bytes: 0,
            sack: false,
            ts_recent: None,
            ts_offset: 0,
            last_ack_sent: Seq(0),
            rtt: RttEstimator::default(),
            rto_at: None,
            timed: None,
            retries: 0,
            stalled_since: None,
            persist_at: None,
            probe_due: false,
            cc: Congestion::new(config.algorithm, DEFAULT_MSS),
            scoreboard: Scoreboard::default(),
            dupacks: 0,
            recovery: None,
            recover_floor: iss,
            last_rx_at: now,
            last_tx_at: now,
            keepalive_probes: 0,
            close_at: None,
            last_challenge: None,
            rst_pending: false,
            reply_rst: None,
            keepalive_due: false,
            tlp_at: None,
            tlp_sent: false,
            orphan: false,
            path_mtu: None,
            dont_fragment: true,
        }
    }

    /// RFC 7323 §5.4: timestamps start at a per-4-tuple offset, so that a
    /// new incarnation of a tuple continues its predecessor's clock.
    pub fn with_timestamp_offset(mut self, offset: u32) -> Self {
        self.ts_offset = offset;
        self
    }

    /// Active open (RFC 9293 §3.10.1): the SYN goes out on the next dispatch.
    pub fn connect(
        config: TcpConfig,
        now: Instant,
        local: Endpoint,
        remote: Endpoint,
        iss: Seq,
    ) -> Self {
        let mut c = Connection::new(config, now, local, remote, iss);
        c.state = State::SynSent;
        c
    }

    /// Passive open: a SYN reached a listener (RFC 9293 §3.10.7.2).
    pub fn accept(
        config: TcpConfig,
        now: Instant,
        local: Endpoint,
        seg: &Incoming<'_>,
        iss: Seq,
    ) -> Self {
        let remote = (seg.src, seg.src_port);
        let mut c = Connection::new(config, now, local, remote, iss);
        c.state = State::SynReceived;
        c.take_syn(seg);
        c
    }

    /// A passive open rebuilt from a returning SYN cookie: `syn` is the SYN
    /// the cookie stands for, and our SYN-ACK (ISN `iss`) counts as sent.
    pub fn from_cookie(
        config: TcpConfig,
        now: Instant,
        local: Endpoint,
        syn: &Incoming<'_>,
        iss: Seq,
    ) -> Self {
        let mut c = Connection::accept(config, now, local, syn, iss);
        c.snd_nxt = iss + 1;
        c.snd_max = c.snd_nxt;
        c
    }

    /// A new connection toward a destination whose path MTU is known.
    pub fn with_path_mtu(mut self, mtu: Option<usize>) -> Self {
        if let Some(mtu) = mtu {
            self.path_mtu = Some(mtu.max(path_mtu::MIN_PATH_MTU));
            self.apply_path_mtu();
        }
        self
    }

    /// The MSS the path allows: its MTU less the IPv4 and TCP headers and
    /// the timestamp option, never more than negotiated.
    fn apply_path_mtu(&mut self) {
        let Some(mtu) = self.path_mtu else { return };
        let options = if self.ts_recent.is_some() {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        };
        let mss = mtu.saturating_sub(40 + options).max(64);
        if mss < self.mss {
            self.mss = mss;
            self.cc.set_mss(mss);
        }
    }

    /// ICMP "fragmentation needed" quoting this connection's segment that
    /// began at `quoted_seq` (RFC 1191 §6.2): lowers the MSS and resends
    /// what is in flight at once, without taking it for congestion (RFC
    /// 1191 §6.5). Only a quote of data in flight, [SND.UNA, SND.MAX),
    /// and only a smaller size is believed (RFC 5927 §4.1): a blind
    /// attacker cannot shrink a connection. Returns whether it was used.
    pub fn path_mtu_reduced(&mut self, reported: usize, quoted_seq: Seq) -> bool {
        if !self.state.is_synchronized()
            || !quoted_seq.in_range(self.snd_una, self.snd_max.offset_from(self.snd_una))
        {
            return false;
        }
        let mtu = reported.max(path_mtu::MIN_PATH_MTU);
        let before = self.mss;
        self.path_mtu = Some(self.path_mtu.map_or(mtu, |m| m.min(mtu)));
        self.apply_path_mtu();
        if self.mss == before {
            return false;
        }
        if reported < path_mtu::MIN_PATH_MTU {
            self.dont_fragment = false; // let routers fragment below the floor
        }
        log::debug!("path MTU {mtu}: MSS {before} -> {}", self.mss);
        // Everything in flight was cut too big: send it again now.
        self.snd_nxt = self.snd_una;
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = self.snd_una;
        }
        self.timed = None; // Karn: no RTT sample from what is resent
        self.tlp_at = None;
        true
    }

    /// The path MTU this connection uses, if discovery lowered it.
    pub fn path_mtu(&self) -> Option<usize> {
        self.path_mtu
    }

    /// For a cookie SYN-ACK: our timestamp now carries the peer's window
    /// scale and SACK permission in its low bits (see `cookie.rs`).
    pub fn carry_in_timestamp(&mut self, now: Instant, window_scale: Option<u8>, sack: bool) {
        let ts = self.ts_now(now);
        let carried = super::cookie::encode_timestamp(ts, window_scale, sack);
        self.ts_offset = self.ts_offset.wrapping_sub(ts.wrapping_sub(carried));
    }

    /// Records the peer's SYN: sequence numbers and negotiated options.
    fn take_syn(&mut self, seg: &Incoming<'_>) {
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        self.last_ack_sent = self.rcv_nxt;
        let o = &seg.options;
        // RFC 7323 §2.2: scaling only if both sides offer it.
        match (self.config.window_scale, o.window_scale) {
            (true, Some(shift)) => self.snd_shift = shift.min(MAX_WINDOW_SHIFT),
            _ => {
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        self.sack = self.config.sack && o.sack_permitted;
        self.ts_recent = match (self.config.timestamps, o.timestamps) {
            (true, Some((val, _))) => Some(val),
            _ => None,
        };
        let peer_mss = o.mss.map_or(DEFAULT_MSS, |m| m as usize).max(64);
        let mut mss = peer_mss.min(self.config.mss);
        if self.ts_recent.is_some() {
            mss -= TIMESTAMP_OPTION_LEN;
        }
        self.mss = mss;
        self.cc.set_mss(mss);
        self.apply_path_mtu();
        // The window of a SYN is never scaled (RFC 7323 §2.2).
        self.snd_wnd = seg.window as usize;
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
    }

    pub fn state(&self) -> State {
        self.state
    }
    pub fn local(&self) -> Endpoint {
        self.local
    }
    pub fn remote(&self) -> Endpoint {
        self.remote
    }
    pub fn error(&self) -> Option<Error> {
        self.error
    }
    pub fn is_orphan(&self) -> bool {
        self.orphan
    }
    pub fn mss(&self) -> usize {
        self.mss
    }
    pub fn cwnd(&self) -> usize {
        self.cc.window()
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }
    pub fn retries(&self) -> u32 {
        self.retries
    }
    /// The sequence number of the next new byte (SND.MAX).
    pub fn send_next(&self) -> Seq {
        self.snd_max
    }
    /// The oldest unacknowledged sequence number (SND.UNA).
    pub fn send_unacked(&self) -> Seq {
        self.snd_una
    }
    pub fn send_window(&self) -> usize {
        self.snd_wnd
    }
    pub fn sack_enabled(&self) -> bool {
        self.sack
    }
    pub fn timestamps_enabled(&self) -> bool {
        self.ts_recent.is_some()
    }
    pub fn window_shifts(&self) -> (u8, u8) {
        (self.snd_shift, self.rcv_shift)
    }
    /// Heap bytes held by the buffers (for memory accounting).
    pub fn buffer_bytes(&self) -> usize {
        self.tx.allocated() + self.rx.allocated()
    }
    pub fn config(&self) -> &TcpConfig {
        &self.config
    }
    pub fn config_mut(&mut self) -> &mut TcpConfig {
        &mut self.config
    }
    pub fn set_nodelay(&mut self, on: bool) {
        self.config.nodelay = on;
    }

    /// The variables that explain a stuck connection, for test failures and logs.
    pub fn summary(&self) -> String {
        format!(
            "{} una={} nxt={} max={} wnd={} cwnd={} tx={} fin_q={} fin_acked={} | rcv_nxt={} rx={} ooo={} fin_at={:?} | rto_at={:?} persist={:?} ack={:?} recovery={:?} dupacks={} retries={} sacked={}",
            self.state.name(),
            self.snd_una.0.wrapping_sub(self.iss.0),
            self.snd_nxt.0.wrapping_sub(self.iss.0),
            self.snd_max.0.wrapping_sub(self.iss.0),
            self.snd_wnd,
            self.cc.window(),
            self.tx.len(),
            self.fin_queued,
            self.fin_acked,
            self.rcv_nxt.0.wrapping_sub(self.irs.0),
            self.rx.len(),
            self.ooo.len(),
            self.fin_at.map(|s| s.0.wrapping_sub(self.irs.0)),
            self.rto_at,
            self.persist_at,
            self.ack_due,
            self.recovery.map(|r| (r.point.0.wrapping_sub(self.iss.0), r.high_rxt.0.wrapping_sub(self.iss.0))),
            self.dupacks,
            self.retries,
            self.scoreboard.sacked(),
        )
    }

    // ----- User calls (RFC 9293 §3.10.2 – §3.10.6) -----

    /// Out-of-order ranges held above RCV.NXT (each reported by SACK).
    pub fn out_of_order_ranges(&self) -> usize {
        self.ooo.len()
    }

    /// Bytes the user can read now.
    pub fn recv_available(&self) -> usize {
        self.rx.len()
    }
    /// Room in the send buffer.
    pub fn send_capacity(&self) -> usize {
        self.config.tx_buffer.saturating_sub(self.tx.len())
    }
    /// Bytes queued but not yet acknowledged.
    pub fn send_queued(&self) -> usize {
        self.tx.len()
    }
    /// The peer sent FIN and every byte before it was read.
    pub fn at_eof(&self) -> bool {
        (self.fin_received || self.read_shut) && self.rx.is_empty()
    }
    pub fn can_send(&self) -> bool {
        matches!(self.state, State::Established | State::CloseWait) && !self.fin_queued
    }

    /// Queues data; returns how much fit (0 when the buffer is full).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        if let Some(e) = self.error {
            return Err(e);
        }
        match self.state {
            State::SynSent | State::SynReceived => return Err(Error::NotConnected),
            State::Established | State::CloseWait if !self.fin_queued => {}
            _ => return Err(Error::BrokenPipe),
        }
        Ok(self.tx.push(data, self.config.tx_buffer))
    }

    /// Reads into `out`. `Ok(0)` is end of stream; `Ok(None)` means nothing yet.
    pub fn recv(&mut self, out: &mut [u8]) -> Result<Option<usize>, Error> {
        if !self.rx.is_empty() {
            let n = self.rx.pop(out);
            if self.rx.is_empty() && self.ooo.is_empty() {
                self.rx.release_if_empty();
            }
            self.maybe_window_update();
            return Ok(Some(n));
        }
        self.recv_empty()
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

    /// What a read finds when nothing is queued.
    fn recv_empty(&self) -> Result<Option<usize>, Error> {
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

    /// RFC 9293 §3.8.6.2.2: after a read, announce a window that grew a
    /// lot, so that a sender stalled on a small window resumes.
    fn maybe_window_update(&mut self) {
        if !self.state.is_synchronized() || self.fin_received {
            return;
        }
        let advertised = self.rcv_adv.saturating_since(self.rcv_nxt);
        let now_open = self.rcv_space();
        let limit = self.config.rx_buffer;
        if advertised < limit / 2 && now_open >= advertised + self.mss.min(limit / 2) {
            self.ack_due = AckDue::Now;
        }
    }

    /// `shutdown(SHUT_WR)`: a FIN after the queued data (RFC 9293 §3.10.4).
    pub fn shutdown_write(&mut self) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::Established => self.state = State::FinWait1,
            State::CloseWait => self.state = State::LastAck,
            State::SynSent => {
                self.state = State::Closed;
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
        self.orphan = true;
        if !self.rx.is_empty() && self.state.is_synchronized() {
            return self.abort();
        }
        match self.state {
            State::SynSent | State::Closed => self.state = State::Closed,
            _ => self.shutdown_write(),
        }
    }

    /// Sends a reset and forgets the connection (RFC 9293 §3.10.5 ABORT).
    pub fn abort(&mut self) {
        self.orphan = true;
        if !matches!(self.state, State::Closed | State::SynSent | State::TimeWait) {
            self.rst_pending = true;
        }
        self.enter_closed(None);
    }

    fn enter_closed(&mut self, error: Option<Error>) {
        if self.error.is_none() {
            self.error = error;
        }
        self.state = State::Closed;
        self.rto_at = None;
        self.persist_at = None;
        self.close_at = None;
        self.tlp_at = None;
        self.ack_due = AckDue::No;
        self.tx = Ring::default();
        self.ooo.clear();
        self.scoreboard.clear();
    }

    /// An ICMP destination unreachable about this connection (RFC 1122
    /// §4.2.3.9): fatal while connecting, a soft error afterwards.
    pub fn icmp_unreachable(&mut self) {
        if self.state == State::SynSent {
            self.enter_closed(Some(Error::Refused));
        }
    }

    /// The earliest time [`Connection::dispatch`] has timer work.
    pub fn poll_at(&self) -> Option<Instant> {
        let mut t = [
            self.rto_at,
            self.persist_at,
            self.close_at,
            None,
            None,
            self.tlp_at,
        ];
        if let AckDue::At(at) = self.ack_due {
            t[3] = Some(at);
        }
        t[4] = self.keepalive_at();
        t.into_iter().flatten().min()
    }

    fn keepalive_at(&self) -> Option<Instant> {
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

    // ----- Arrivals (RFC 9293 §3.10.7) -----

    fn rcv_space(&self) -> usize {
        self.config.rx_buffer.saturating_sub(self.rx.len())
    }

    /// Handles a segment for this connection.
    pub fn process(&mut self, now: Instant, seg: &Incoming<'_>, out: &mut Emit<'_>) {
        self.process_segment(now, seg, out);
        self.check_invariants(false);
    }

    fn process_segment(&mut self, now: Instant, seg: &Incoming<'_>, out: &mut Emit<'_>) {
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
            self.state = if self.fin_queued {
                State::FinWait1
            } else {
                State::Established
            };
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
                self.state = State::FinWait2;
                if self.orphan {
                    self.close_at = Some(now + self.config.fin_timeout);
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
    fn process_syn_sent(&mut self, now: Instant, seg: &Incoming<'_>) {
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
            self.rto_at = None;
            self.retries = 0;
            if let Some((_, sent)) = self.timed.take() {
                self.rtt.sample(now.saturating_since(sent));
            }
            self.rtt.reset_backoff();
            self.state = State::Established;
            self.ack_due = AckDue::Now;
        } else {
            // Simultaneous open: answer with SYN-ACK.
            self.state = State::SynReceived;
            self.snd_nxt = self.iss;
        }
    }

    fn process_ack(&mut self, now: Instant, seg: &Incoming<'_>) {
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
                self.persist_at = None;
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
                self.tlp_at = None;
            }
        }
    }

    /// An ACK that acknowledges new data (RFC 9293 §3.10.7.4, RFC 6298 §5).
    fn new_ack(&mut self, now: Instant, seg: &Incoming<'_>) {
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
        self.tx.discard(bytes.min(self.tx.len()));
        if self.tx.is_empty() {
            self.tx.release_if_empty();
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
        self.rto_at = (self.snd_una != self.snd_max).then(|| now + self.rtt.rto());
        // RFC 8985 §7.2: an ACK of new data rearms the probe.
        self.tlp_sent = false;
        self.tlp_at = None;
    }

    /// Stores text (RFC 9293 §3.10.7.4 seventh), trimmed to the window;
    /// out-of-order text is kept and acknowledged at once with SACK.
    fn process_data(&mut self, now: Instant, seq: Seq, payload: &[u8], out: &mut Emit<'_>) {
        if self.orphan && !self.read_shut {
            // Nobody will read it: tell the peer (RFC 2525 §2.17).
            return self.abort();
        }
        let (mut seq, mut data) = (seq, payload);
        if seq < self.rcv_nxt {
            let skip = self.rcv_nxt.offset_from(seq);
            if skip >= data.len() {
                self.ack_due = AckDue::Now;
                return;
            }
            data = &data[skip..];
            seq = self.rcv_nxt;
        }
        let offset = seq.offset_from(self.rcv_nxt);
        let room = self.rcv_space().saturating_sub(offset);
        data = &data[..data.len().min(room)];
        if let Some(fin) = self.fin_at {
            // Not past the FIN already seen beyond a hole.
            data = &data[..data.len().min(fin.saturating_since(seq))];
        }
        if data.is_empty() {
            self.ack_due = AckDue::Now;
            return;
        }
        self.rx
            .write_at(self.rx.len() + offset, data, self.config.rx_buffer);
        if offset == 0 {
            let filled_hole = !self.ooo.is_empty();
            let reach = self.ooo.advance(seq + data.len());
            let n = reach.offset_from(self.rcv_nxt);
            self.rx.commit(n);
            self.rcv_nxt = reach;
            self.unacked_bytes += n;
            if self.read_shut {
                self.rx.discard(self.rx.len());
            }
            if filled_hole || self.unacked_bytes >= 2 * self.mss {
                self.ack_due = AckDue::Now;
            } else if self.ack_due == AckDue::No {
                self.ack_due = AckDue::At(now + self.config.delayed_ack);
            }
        } else {
            // Out of order: keep it, and tell the sender now (RFC 5681 §4.2).
            self.ooo.add(seq, seq + data.len());
            self.send_ack(now, out);
        }
    }

    /// A FIN whose place in the stream is reached (RFC 9293 §3.10.7.4 eighth).
    fn take_fin(&mut self, now: Instant) {
        if self.fin_at != Some(self.rcv_nxt) {
            return;
        }
        self.fin_at = None;
        self.fin_received = true;
        self.ooo.clear();
        self.rcv_nxt = self.rcv_nxt + 1;
        self.ack_due = AckDue::Now;
        self.state = match self.state {
            State::Established => State::CloseWait,
            State::FinWait1 if self.fin_acked => {
                self.enter_time_wait(now);
                State::TimeWait
            }
            State::FinWait1 => State::Closing,
            State::FinWait2 => {
                self.enter_time_wait(now);
                State::TimeWait
            }
            s => s,
        };
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.state = State::TimeWait;
        self.rto_at = None;
        self.persist_at = None;
        self.close_at = Some(now + self.config.time_wait);
        self.tx = Ring::default();
        self.scoreboard.clear();
    }

    /// RFC 5961 §3.2/§4: answer a suspicious RST or SYN with an ACK, rate-limited.
    fn challenge_ack(&mut self, now: Instant) {
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
    fn reset_reply(&mut self, seg: &Incoming<'_>) {
        self.reply_rst = Some(seg.ack);
    }

    /// Whether a new SYN may take over this connection in TIME-WAIT
    /// (RFC 6191: a higher timestamp, or else a higher sequence number).
    pub fn time_wait_accepts(&self, seg: &Incoming<'_>) -> bool {
        if self.state != State::TimeWait {
            return false;
        }
        match (self.ts_recent, seg.options.timestamps) {
            (Some(recent), Some((val, _))) => (val.wrapping_sub(recent) as i32) > 0,
            _ => seg.seq > self.rcv_nxt,
        }
    }
}

// Sending and timers.
impl Connection {
    /// Sends what is due: handshake, data, retransmissions, probes, ACKs.
    pub fn dispatch(&mut self, now: Instant, out: &mut Emit<'_>) {
        self.dispatch_due(now, out);
        self.check_invariants(true);
    }

    /// What must hold between events, checked in debug builds after every
    /// segment and every dispatch (timers run there), so that tests and
    /// fuzzing catch logic errors and not only panics. `settled`: after a
    /// dispatch, when the timers are armed for what is outstanding.
    fn check_invariants(&self, settled: bool) {
        if !cfg!(debug_assertions) || self.state == State::Closed {
            return;
        }
        let fail = |what: &str| panic!("TCP invariant broken: {what}: {}", self.summary());
        // RFC 9293 §3.3.1 plus SND.MAX: SND.UNA ≤ SND.NXT ≤ SND.MAX.
        if !(self.snd_una <= self.snd_nxt && self.snd_nxt <= self.snd_max) {
            fail("SND.UNA <= SND.NXT <= SND.MAX");
        }
        // What was sent and not acknowledged is still in the send buffer
        // (besides the SYN's and FIN's octets).
        let control = (!self.syn_acked) as usize + (self.fin_queued && !self.fin_acked) as usize;
        if self.snd_max.offset_from(self.snd_una) > self.tx.len() + control {
            fail("sent data missing from the send buffer");
        }
        if self.tx.len() > self.config.tx_buffer || self.rx.len() > self.config.rx_buffer {
            fail("a buffer holds more than its limit");
        }
        if let (Some(low), Some(high)) = (self.scoreboard.lowest(), self.scoreboard.highest()) {
            if low < self.snd_una || high > self.snd_max {
                fail("SACK scoreboard outside [SND.UNA, SND.MAX]");
            }
        }
        if let Some((low, high)) = self.ooo.span() {
            let window_end = self.rcv_nxt + (self.config.rx_buffer - self.rx.len());
            if low <= self.rcv_nxt || high > window_end {
                fail("out-of-order data outside the receive window");
            }
        }
        // RFC 6298 §5 (1): data outstanding ⇒ the retransmission timer runs
        // (or the persist timer, while the peer's window is shut).
        let outstanding = self.snd_una != self.snd_max;
        let timed = self.rto_at.is_some() || self.persist_at.is_some() || self.probe_due;
        if settled && outstanding && self.state != State::TimeWait && !timed {
            fail("data outstanding and no retransmission timer");
        }
    }

    fn dispatch_due(&mut self, now: Instant, out: &mut Emit<'_>) {
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

    fn run_timers(&mut self, now: Instant) {
        if self.close_at.is_some_and(|t| t <= now) {
            // TIME-WAIT over, or an orphan gave up in FIN-WAIT-2.
            self.enter_closed(None);
            return;
        }
        if self.rto_at.is_some_and(|t| t <= now) {
            self.on_rto(now);
            if self.state == State::Closed {
                return;
            }
        }
        if self.persist_at.is_some_and(|t| t <= now) {
            self.persist_at = None;
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

    /// RFC 6298 §5.4–§5.7, RFC 5681 §3.1 (4), RFC 6675 §5.1.
    fn on_rto(&mut self, now: Instant) {
        self.rto_at = None;
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
        self.tlp_at = None;
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
        self.rto_at = Some(now + self.rtt.rto());
    }

    fn send_syn(&mut self, now: Instant, out: &mut Emit<'_>) {
        let mut options = Options {
            mss: Some(self.config.mss as u16),
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

    fn ts_now(&self, now: Instant) -> u32 {
        millis(now).wrapping_add(self.ts_offset)
    }

    fn arm_rto(&mut self, now: Instant) {
        if self.rto_at.is_none() {
            self.rto_at = Some(now + self.rtt.rto());
        }
    }

    /// Bytes in the network as RFC 6675 §4 SetPipe counts them; outside
    /// recovery, what was sent since SND.UNA minus what was SACKed.
    fn pipe(&self, lost_end: Seq) -> usize {
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
    fn lost_end(&self) -> Seq {
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
    fn dup_threshold(&self) -> u32 {
        let segments = (self.snd_max.offset_from(self.snd_una)).div_ceil(self.mss.max(1)) as u32;
        if segments <= DUP_THRESHOLD {
            segments.saturating_sub(1).max(1)
        } else {
            DUP_THRESHOLD
        }
    }

    /// RFC 6675 IsLost: more than (DupThresh − 1)·SMSS bytes SACKed above.
    fn lost_bytes_threshold(&self) -> usize {
        (self.dup_threshold() as usize - 1) * self.mss
    }

    /// RFC 8985 §7.2: the probe timeout, 2·SRTT (at least 10 ms), plus a
    /// delayed ACK's worth when a single segment is out.
    fn probe_timeout(&self) -> Duration {
        let srtt = self.rtt.srtt().unwrap_or(Duration::from_millis(100));
        let mut pto = Duration::from_micros(2 * srtt.total_micros()).max(MIN_PROBE_TIMEOUT);
        if self.snd_max.offset_from(self.snd_una) <= self.mss {
            pto = pto + self.config.delayed_ack;
        }
        pto
    }

    /// Arms the tail loss probe after sending, unless one is out already.
    fn arm_tlp(&mut self, now: Instant) {
        if self.snd_max == self.snd_una
            || self.recovery.is_some()
            || self.tlp_sent
            || !self.syn_acked
        {
            self.tlp_at = None;
            return;
        }
        let at = now + self.probe_timeout();
        if self.rto_at.map_or(true, |rto| at < rto) {
            self.tlp_at = Some(at);
        }
    }

    /// RFC 8985 §7.3: send one segment so that the ACK it draws reveals a
    /// lost tail: new data if any may go, else the last segment again.
    fn send_tlp(&mut self, now: Instant, out: &mut Emit<'_>) {
        self.tlp_sent = true;
        let data_end = self.snd_una + self.tx.len();
        let fin_sent = self.fin_queued && self.snd_max == data_end + 1;
        let window_end = self.snd_una + self.snd_wnd;
        if self.snd_max < data_end && self.snd_max < window_end {
            let len = data_end
                .offset_from(self.snd_max)
                .min(window_end.offset_from(self.snd_max))
                .min(self.segment_payload_max());
            let seq = self.snd_max;
            if self.emit_data(now, (seq, len, 0), Flags::ACK | Flags::PSH, out) {
                self.snd_max = seq + len;
                self.snd_nxt = self.snd_nxt.max(self.snd_max);
            }
            return;
        }
        let len = data_end
            .offset_from(self.snd_una)
            .min(self.segment_payload_max());
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

    fn send_data(&mut self, now: Instant, out: &mut Emit<'_>) {
        if self.tlp_at.is_some_and(|t| t <= now) {
            self.tlp_at = None;
            self.send_tlp(now, out);
        }
        self.send_segments(now, out);
        if self.tlp_at.is_none() {
            self.arm_tlp(now);
        }
    }

    fn send_segments(&mut self, now: Instant, out: &mut Emit<'_>) {
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
            let mss = self.segment_payload_max();
            let mut len = avail.min(mss).min(limit);
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
            if len == mss && !force && self.config.burst_capacity > 0 {
                let cap = self.config.burst_capacity.saturating_sub(MAX_HEADERS);
                let room = avail.min(limit).min(cwnd_room).min(wnd_room).min(cap);
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
                    && self.persist_at.is_none()
                {
                    self.persist_at = Some(now + self.rtt.rto());
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
                let ok = (everything && (self.config.nodelay || idle))
                    || len >= self.max_snd_wnd / 2
                    || window_bound;
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
            if fin || self.tx.is_empty() && end >= data_end {
                break;
            }
        }
        if self.keepalive_due {
            self.keepalive_due = false;
            // RFC 9293 §3.8.4: a segment with SEG.SEQ = SND.NXT-1 elicits an ACK.
            let repr = self.header(now, Seq(self.snd_una.0.wrapping_sub(1)), Flags::ACK);
            self.emit(repr, (&[], &[]), out);
        }
    }

    /// RFC 9293 §3.8.6.2.2 receiver SWS avoidance: the right edge moves
    /// only by at least min(buffer/2, MSS), never by dribbles.
    fn window_to_advertise(&self) -> usize {
        let space = self.rcv_space();
        let promised = self.rcv_adv.saturating_since(self.rcv_nxt).min(space);
        let step = (self.config.rx_buffer / 2).min(self.mss);
        if space >= promised + step {
            space
        } else {
            promised
        }
    }

    /// Payload that fits a segment beside the SACK blocks it will carry
    /// (the timestamp option is already counted in `mss`).
    fn segment_payload_max(&self) -> usize {
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
    fn header(&self, now: Instant, seq: Seq, flags: Flags) -> Repr {
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
    fn emit_data(
        &mut self,
        now: Instant,
        (seq, len, segment_size): (Seq, usize, u16),
        flags: Flags,
        out: &mut Emit<'_>,
    ) -> bool {
        let repr = self.header(now, seq, flags);
        let offset = seq.offset_from(self.snd_una);
        let (a, b) = self.tx.peek(offset, len);
        let ok = out(&Outgoing {
            src: self.local.0,
            dst: self.remote.0,
            repr,
            payload: (a, b),
            segment_size,
            dont_fragment: self.dont_fragment,
        });
        if ok {
            self.sent_ack(now, &repr);
        }
        ok
    }

    fn emit(&mut self, repr: Repr, payload: (&[u8], &[u8]), out: &mut Emit<'_>) -> bool {
        let ok = out(&Outgoing {
            src: self.local.0,
            dst: self.remote.0,
            repr,
            payload,
            segment_size: 0,
            dont_fragment: self.dont_fragment,
        });
        if ok && repr.flags.contains(Flags::ACK) {
            self.after_ack_sent(&repr);
        }
        ok
    }

    fn sent_ack(&mut self, now: Instant, repr: &Repr) {
        self.last_tx_at = now;
        self.after_ack_sent(repr);
    }

    fn after_ack_sent(&mut self, repr: &Repr) {
        self.ack_due = AckDue::No;
        self.unacked_bytes = 0;
        self.last_ack_sent = self.rcv_nxt;
        let right = self.rcv_nxt + ((repr.window as usize) << self.rcv_shift);
        self.rcv_adv = self.rcv_adv.max(right);
    }

    /// A bare ACK, carrying SACK blocks when out-of-order data is held.
    fn send_ack(&mut self, now: Instant, out: &mut Emit<'_>) {
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
        let repr = self.header(now, seq, Flags::ACK);
        self.emit(repr, (&[], &[]), out);
    }

    fn emit_rst(&mut self, seq: Seq, out: &mut Emit<'_>) {
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
            segment_size: 0,
            dont_fragment: self.dont_fragment,
        });
    }
}
