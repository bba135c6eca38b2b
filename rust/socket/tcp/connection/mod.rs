//! One TCP connection: the transmission control block of RFC 9293 §3.3.1
//! and its state machine (§3.10), with RFC 7323 options, SACK (RFC 2018,
//! RFC 6675), RFC 6298 timers, NewReno/CUBIC and RFC 5961 defences.
//!
//! The block and its life (creation, state, teardown, invariants) are here;
//! the rest is split along the RFCs:
//! * [`user`]: the user calls (RFC 9293 §3.10.1–§3.10.6);
//! * [`input`]: segment arrival, the §3.10.7 event processing and ACKs;
//! * [`receive`]: segment text, FIN, the receive window (§3.8.6.2.2);
//! * [`output`]: what is sent and when: segment selection, Nagle, headers;
//! * [`recovery`]: loss recovery (RFC 6675, RFC 6582, tail loss probes of
//!   RFC 8985) and the retransmission timeout (RFC 6298 §5);
//! * [`timers`]: every timer of the connection in one [`timers::Timers`];
//! * [`path`]: path MTU discovery (RFC 1191, RFC 5927).

mod input;
mod output;
mod path;
mod receive;
mod recovery;
#[cfg(test)]
mod tests;
mod time_wait;
mod timers;
mod user;

pub use self::time_wait::TimeWaitRecord;

use self::timers::Timers;
use super::assembler::Assembler;
use super::congestion::Congestion;
use super::posted::Lent;
use super::ring::Ring;
use super::rtt::RttEstimator;
use super::scoreboard::Scoreboard;
use super::send_buffer::SendBuffer;
use super::seq::Seq;
use super::{Endpoint, Error, Incoming, TcpConfig};
use crate::time::{Duration, Instant};

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
/// The tick TIME-WAIT ends on (see `enter_time_wait`), at most a sixteenth
/// of the wait: it lasts up to this much longer than 2·MSL, never less.
const TIME_WAIT_TICK: Duration = Duration::from_millis(64);

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
    tx: SendBuffer,
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
    /// A waiting reader's buffer, filled before the ring (see `posted.rs`).
    posted: Option<Lent>,
    ooo: Assembler,
    /// A FIN seen beyond a hole, processed when the data before it arrives.
    fin_at: Option<Seq>,
    fin_received: bool,
    read_shut: bool,
    ack_due: AckDue,
    unacked_bytes: usize,
    /// Text that came twice, for the next ACK's first SACK block (D-SACK,
    /// RFC 2883): the sender learns that its retransmission was not needed
    /// (the original was reordered, not lost) and tolerates more reordering.
    dsack: Option<(Seq, Seq)>,

    // Options.
    sack: bool,
    /// RFC 7323 §4.3 TS.Recent when timestamps are on.
    ts_recent: Option<u32>,
    ts_offset: u32,
    last_ack_sent: Seq,

    // Timers and recovery.
    rtt: RttEstimator,
    timers: Timers,
    /// RFC 6298 §3 / Karn: one segment timed at a time.
    timed: Option<(Seq, Instant)>,
    retries: u32,
    stalled_since: Option<Instant>,
    probe_due: bool,
    cc: Congestion,
    scoreboard: Scoreboard,
    dupacks: u32,
    recovery: Option<Recovery>,
    recover_floor: Seq,
    last_rx_at: Instant,
    last_tx_at: Instant,
    keepalive_probes: u32,
    last_challenge: Option<Instant>,
    rst_pending: bool,
    /// A reset answering an unacceptable ACK, with this sequence number.
    reply_rst: Option<Seq>,
    keepalive_due: bool,
    /// RFC 8985 §7: a tail loss probe is out.
    tlp_sent: bool,
    /// The user closed it: nobody will read or write any more.
    orphan: bool,
    /// A read emptied the receive ring (see `timers::BUFFER_KEEP`).
    rx_drained: bool,

    // Path MTU discovery (RFC 1191).
    /// The path MTU learnt for this connection's destination, if smaller
    /// than the link's.
    path_mtu: Option<usize>,
    /// Segments go with DF set, unless the path reported an MTU below
    /// [`crate::socket::tcp::path_mtu::MIN_PATH_MTU`].
    dont_fragment: bool,

    traffic: Traffic,
}

/// What a connection has carried, for statistics (`ss -i`'s bytes_acked,
/// bytes_received, retrans).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Payload bytes the peer acknowledged.
    pub bytes_acked: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Segments sent again (fast retransmits, timeouts, loss probes).
    pub retransmits: u64,
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
            tx: SendBuffer::default(),
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
            posted: None,
            ooo: Assembler::default(),
            fin_at: None,
            fin_received: false,
            read_shut: false,
            ack_due: AckDue::No,
            dsack: None,
            unacked_bytes: 0,
            sack: false,
            ts_recent: None,
            ts_offset: 0,
            last_ack_sent: Seq(0),
            rtt: RttEstimator::default(),
            timers: Timers::default(),
            timed: None,
            retries: 0,
            stalled_since: None,
            probe_due: false,
            cc: Congestion::new(config.algorithm, DEFAULT_MSS),
            scoreboard: Scoreboard::default(),
            dupacks: 0,
            recovery: None,
            recover_floor: iss,
            last_rx_at: now,
            last_tx_at: now,
            keepalive_probes: 0,
            last_challenge: None,
            rst_pending: false,
            reply_rst: None,
            keepalive_due: false,
            tlp_sent: false,
            orphan: false,
            rx_drained: false,
            path_mtu: None,
            dont_fragment: true,
            traffic: Traffic::default(),
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
        c.set_state(State::SynSent);
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
        c.set_state(State::SynReceived);
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
        let mut mss = peer_mss.min(self.own_mss());
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
    /// What an IPv6 header takes beyond an IPv4 one: 20 bytes less for
    /// each segment (RFC 8200 §3; RFC 9293 §3.7.1 sizes the MSS from the MTU).
    fn extra_ip_header(&self) -> usize {
        match self.remote().0 {
            std::net::IpAddr::V4(_) => 0,
            std::net::IpAddr::V6(_) => 20,
        }
    }

    /// The MSS we announce: the configured one (from the link's MTU, for
    /// IPv4 headers) less what an IPv6 header takes beyond that.
    pub(super) fn own_mss(&self) -> usize {
        self.config
            .mss
            .saturating_sub(self.extra_ip_header())
            .max(64)
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
    pub fn traffic(&self) -> Traffic {
        self.traffic
    }
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

    /// SO_RCVBUF: the most received bytes held for the user from now on.
    /// Larger, the window opens up to what the scale agreed in the
    /// handshake can say (a window update goes if it grew a lot); smaller,
    /// the window already offered is kept, and closes as it fills.
    pub fn set_rx_buffer(&mut self, bytes: usize) {
        self.config.rx_buffer = bytes;
        self.maybe_window_update();
    }

    /// The variables that explain a stuck connection, for test failures and logs.
    pub fn summary(&self) -> String {
        format!(
            "{} una={} nxt={} max={} wnd={} cwnd={} tx={} fin_q={} fin_acked={} | rcv_nxt={} rx={} ooo={} fin_at={:?} | rto={:?} persist={:?} ack={:?} recovery={:?} dupacks={} retries={} sacked={}",
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
            self.timers.rto,
            self.timers.persist,
            self.ack_due,
            self.recovery.map(|r| (r.point.0.wrapping_sub(self.iss.0), r.high_rxt.0.wrapping_sub(self.iss.0))),
            self.dupacks,
            self.retries,
            self.scoreboard.sacked(),
        )
    }

    /// Out-of-order ranges held above RCV.NXT (each reported by SACK).
    pub fn out_of_order_ranges(&self) -> usize {
        self.ooo.len()
    }

    /// Every state transition goes through here (and is logged at debug
    /// level, with the connection's endpoints).
    fn set_state(&mut self, next: State) {
        if next != self.state {
            log::debug!(
                "TCP {}:{} -> {}:{}: {} -> {}",
                self.local.0,
                self.local.1,
                self.remote.0,
                self.remote.1,
                self.state.name(),
                next.name()
            );
            self.state = next;
        }
    }

    fn enter_closed(&mut self, error: Option<Error>) {
        if self.error.is_none() {
            self.error = error;
        }
        self.set_state(State::Closed);
        self.timers.clear();
        self.ack_due = AckDue::No;
        self.tx = SendBuffer::default();
        self.ooo.clear();
        self.scoreboard.clear();
    }

    /// Ends TIME-WAIT before its time (the stack holds too many).
    pub fn end_time_wait(&mut self) {
        if self.state == State::TimeWait {
            self.enter_closed(None);
        }
    }

    fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        self.timers.rto = None;
        self.timers.persist = None;
        // It ends on a tick, as a kernel's timer wheel ends its long timers:
        // a server's closed connections then leave in batches, a wake-up per
        // tick, not one each (a round of its own costs several times what
        // freeing a connection does).
        let tick = TIME_WAIT_TICK.min(Duration::from_micros(
            self.config.time_wait.total_micros() / 16,
        ));
        self.timers.close = Some((now + self.config.time_wait).ceil_to(tick));
        self.tx = SendBuffer::default();
        self.scoreboard.clear();
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
        if self.tx.len() > self.config.tx_buffer {
            fail("the send buffer holds more than its limit");
        }
        // Beyond the receive buffer (made smaller), only text within the
        // window offered before (and the FIN's octet).
        let offered = self.rcv_adv + self.fin_received as usize;
        if self.rx.len() > self.config.rx_buffer && self.rcv_nxt > offered {
            fail("the receive buffer holds more than its limit or the window offered");
        }
        if let (Some(low), Some(high)) = (self.scoreboard.lowest(), self.scoreboard.highest()) {
            if low < self.snd_una || high > self.snd_max {
                fail("SACK scoreboard outside [SND.UNA, SND.MAX]");
            }
        }
        if let Some((low, high)) = self.ooo.span() {
            let window_end = self.rcv_nxt + self.rcv_space();
            if low <= self.rcv_nxt || high > window_end {
                fail("out-of-order data outside the receive window");
            }
        }
        // RFC 6298 §5 (1): data outstanding ⇒ the retransmission timer runs
        // (or the persist timer, while the peer's window is shut).
        let outstanding = self.snd_una != self.snd_max;
        let timed = self.timers.rto.is_some() || self.timers.persist.is_some() || self.probe_due;
        if settled && outstanding && self.state != State::TimeWait && !timed {
            fail("data outstanding and no retransmission timer");
        }
    }

    fn ts_now(&self, now: Instant) -> u32 {
        millis(now).wrapping_add(self.ts_offset)
    }
}
