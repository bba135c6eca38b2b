//! TCP (RFC 9293): connections, listeners and the set that owns them.
//! Sans-IO: segments come in as [`Incoming`], go out through an [`Emit`]
//! callback, and time is always an argument.

mod assembler;
mod congestion;
mod connection;
mod cookie;
mod listener;
pub mod path_mtu;
mod posted;
mod ring;
mod rtt;
mod scoreboard;
mod secret;
mod send_buffer;
#[cfg(test)]
pub(crate) use secret::Secret;
pub use secret::SharedClock;
mod seq;
mod set;
mod time_waits;
mod tuple_map;

pub use congestion::Algorithm;
pub use connection::{Connection, State, TimeWaitRecord, Traffic};
pub use listener::{Families, Listener};
pub use posted::LentBuffer;
pub use send_buffer::{SharedText, SHARE_MIN};
pub use seq::Seq;
pub use set::{ConnectError, Handle, ListenError, TcpSockets, Unclaimed};

use crate::time::Duration;
use crate::wire::tcp::{Flags, Options};
use crate::wire::SegmentText;
use std::net::IpAddr;

/// An (address, port) pair, of either family.
pub type Endpoint = (IpAddr, u16);

/// An address's bytes, as the keyed hashes take them: 4 for IPv4, 16 for IPv6.
pub(crate) struct AddressBytes([u8; 16], usize);

impl AddressBytes {
    pub(crate) fn of(ip: IpAddr) -> Self {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V4(v4) => {
                b[..4].copy_from_slice(&v4.octets());
                AddressBytes(b, 4)
            }
            IpAddr::V6(v6) => AddressBytes(v6.octets(), 16),
        }
    }
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// Why a connection failed, as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// RST in answer to our SYN, or ICMP unreachable while connecting.
    Refused,
    /// The peer reset an established connection.
    Reset,
    /// Retransmissions or keepalive probes went unanswered.
    TimedOut,
    /// Writing after `shutdown(SHUT_WR)` or after the connection ended.
    BrokenPipe,
    /// Not connected (yet, or any more).
    NotConnected,
    /// The peer's link address could not be resolved (ARP went unanswered)
    /// while connecting, as Linux reports it.
    HostUnreachable,
}

/// Keepalive (RFC 9293 §3.8.4), off unless asked for, as in Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub probes: u32,
}

impl Default for Keepalive {
    /// Linux's tcp_keepalive_time, _intvl and _probes.
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            probes: 9,
        }
    }
}

/// Tunables shared by every connection of a stack; each connection copies
/// them at birth and some can be changed per connection afterwards.
#[derive(Debug, Clone, Copy)]
pub struct TcpConfig {
    /// MSS we announce: the MTU minus IPv4 and TCP headers.
    pub mss: usize,
    /// The most received bytes a connection holds for the user (SO_RCVBUF),
    /// hence the largest window it offers: 4 MiB keeps a reader that wakes
    /// late (a Python event loop) from stalling a fast sender. Allocated as
    /// data arrives and freed once read, so an idle connection holds none.
    pub rx_buffer: usize,
    /// The most unacknowledged plus unsent bytes a connection holds (SO_SNDBUF).
    /// Allocated as data arrives, so an idle connection holds none.
    pub tx_buffer: usize,
    pub algorithm: Algorithm,
    pub sack: bool,
    pub timestamps: bool,
    pub window_scale: bool,
    /// 2·MSL (RFC 9293 §3.4.2). Linux uses 60 s.
    pub time_wait: Duration,
    /// The most connections held in TIME-WAIT (Linux's tcp_max_tw_buckets):
    /// a server that closes first keeps one per connection for
    /// [`TcpConfig::time_wait`], about 1 KiB each, so its memory would grow
    /// with its connection rate. Past the bound a connection ends at once.
    pub max_time_wait: usize,
    /// An orphaned connection in FIN-WAIT-2 gives up after this (Linux tcp_fin_timeout).
    pub fin_timeout: Duration,
    /// Retransmissions of a SYN before giving up (Linux tcp_syn_retries).
    pub syn_retries: u32,
    /// Retransmissions of data before giving up (RFC 1122 §4.2.3.5 R2).
    pub data_retries: u32,
    /// RFC 1122 §4.2.3.2 allows 500 ms; the issue and Linux use 40 ms.
    pub delayed_ack: Duration,
    pub nodelay: bool,
    pub keepalive: Option<Keepalive>,
    /// Give up when data stays unacknowledged this long (TCP_USER_TIMEOUT).
    pub user_timeout: Option<Duration>,
    /// SO_LINGER: None, a close hands the FIN exchange to the stack; a
    /// time, the user's close waits up to it for the exchange to settle
    /// ([`Connection::close_settled`]); zero, a close aborts with a reset.
    pub linger: Option<Duration>,
    /// Answer SYNs with SYN cookies (RFC 4987 §3.6) while a listener's
    /// handshake queue is full, instead of dropping them.
    pub syn_cookies: bool,
    /// The largest IPv4 packet the device cuts into segments itself (its
    /// segmentation offload): full-sized segments that leave together go
    /// as one burst of up to this size. 0: one segment per packet.
    pub burst_capacity: usize,
    /// Initial sequence numbers and timestamps on a clock that every stack
    /// of this machine shares (see [`SharedClock`]); None: the stack's own.
    pub shared_clock: Option<SharedClock>,
}

impl TcpConfig {
    /// The device cuts bursts itself, and so finishes every TCP checksum
    /// (see [`TcpConfig::burst_capacity`]).
    pub fn device_cuts_bursts(&self) -> bool {
        self.burst_capacity > 0
    }
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            mss: 1460,
            rx_buffer: 4 << 20,
            // Linux's tcp_wmem maximum: at 1 MiB a sender fed from another
            // thread stalls whenever that thread is late by a millisecond.
            tx_buffer: 4 << 20,
            algorithm: Algorithm::Cubic,
            sack: true,
            timestamps: true,
            window_scale: true,
            time_wait: Duration::from_secs(60),
            max_time_wait: 65_536,
            fin_timeout: Duration::from_secs(60),
            syn_retries: 6,
            data_retries: 15,
            delayed_ack: Duration::from_millis(40),
            nodelay: false,
            keepalive: None,
            user_timeout: None,
            linger: None,
            syn_cookies: true,
            burst_capacity: 0,
            shared_clock: None,
        }
    }
}

/// A parsed segment addressed to us.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: Seq,
    pub ack: Seq,
    pub flags: Flags,
    pub window: u16,
    pub options: Options,
    pub payload: SegmentText<'a>,
}

impl Incoming<'_> {
    /// RFC 9293 §3.4: SEG.LEN counts SYN and FIN.
    pub fn seq_len(&self) -> usize {
        self.payload.len()
            + self.flags.contains(Flags::SYN) as usize
            + self.flags.contains(Flags::FIN) as usize
    }
    pub fn has(&self, f: Flags) -> bool {
        self.flags.contains(f)
    }
}

/// A segment to send: header fields and a payload that may wrap around the
/// send buffer (two slices).
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub repr: crate::wire::tcp::Repr,
    pub payload: (&'a [u8], &'a [u8]),
    /// The payload is the send buffer's text from `repr.seq` on, which
    /// stays there until acknowledged: it may be sent from there (see
    /// [`TcpSockets::sent_text`]) rather than copied.
    pub from_send_buffer: bool,
    /// Which connection (for [`TcpSockets::sent_text`]): set by the set
    /// as it hands the connection its way out; `None` from a connection alone.
    pub owner: Option<u64>,
    /// For a burst (a payload longer than one segment): the payload of each
    /// segment it is cut into. 0 for a single segment.
    pub segment_size: u16,
    /// Sent with DF set (path MTU discovery, RFC 1191).
    pub dont_fragment: bool,
}

impl Outgoing<'_> {
    pub fn payload_len(&self) -> usize {
        self.payload.0.len() + self.payload.1.len()
    }
}

/// Where segments go; returns false when the segment could not be queued,
/// so the sender stops for this round.
pub type Emit<'e> = dyn FnMut(&Outgoing<'_>) -> bool + 'e;
