//! A listening port with a bounded backlog (RFC 9293 §3.10.1 passive OPEN).
//!
//! Two queues, like a kernel: connections still in the handshake
//! (SYN-RECEIVED) and established ones waiting for `accept`. Each is bounded
//! by the backlog, so a SYN flood costs at most `backlog` connection blocks.
//! When the handshake queue is full a SYN is answered with a SYN cookie
//! (see `cookie.rs`; or dropped when cookies are off); when the accept queue
//! is full it is dropped and counted, and the peer retransmits it (RFC 9293
//! §3.8.1), so legitimate clients get in once `accept` makes room.

use super::set::Handle;
use crate::time::Instant;
use std::collections::VecDeque;
use std::net::IpAddr;

/// The address families whose connections a listener takes: a socket
/// of one family never meets a peer of the other (an `AF_INET` server
/// has no name for an IPv6 peer); a dual-stack one takes both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Families {
    #[default]
    Both,
    Ipv4,
    Ipv6,
}

impl Families {
    /// Whether a connection from `peer` is ours to take.
    pub fn take(self, peer: IpAddr) -> bool {
        match self {
            Families::Both => true,
            Families::Ipv4 => peer.is_ipv4(),
            Families::Ipv6 => peer.is_ipv6(),
        }
    }
}

#[derive(Debug)]
pub struct Listener {
    pub port: u16,
    pub families: Families,
    pub backlog: usize,
    /// Connections in SYN-RECEIVED.
    pub embryonic: usize,
    /// Established connections waiting for `accept`, oldest first.
    pub ready: VecDeque<Handle>,
    /// SYNs dropped because a queue was full.
    pub overflows: u64,
    /// SYNs answered with a cookie.
    pub cookies_sent: u64,
    /// When the last cookie went out: returning ACKs are checked for one
    /// only for a while after.
    pub last_cookie_at: Option<Instant>,
}

impl Listener {
    pub fn new(port: u16, backlog: usize, families: Families) -> Self {
        Listener {
            port,
            families,
            backlog: backlog.max(1),
            embryonic: 0,
            ready: VecDeque::new(),
            overflows: 0,
            cookies_sent: 0,
            last_cookie_at: None,
        }
    }
    /// Room in the accept queue.
    pub fn can_queue(&self) -> bool {
        self.ready.len() < self.backlog
    }
    /// Room for one more handshake.
    pub fn has_room(&self) -> bool {
        self.embryonic < self.backlog && self.ready.len() < self.backlog
    }
}
