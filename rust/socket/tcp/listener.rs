//! A listening port with a bounded backlog (RFC 9293 §3.10.1 passive OPEN).
//!
//! Two queues, like a kernel: connections still in the handshake
//! (SYN-RECEIVED) and established ones waiting for `accept`. Each is bounded
//! by the backlog. When either is full a new SYN is dropped and counted; the
//! peer retransmits it (RFC 9293 §3.8.1), so legitimate clients get in once
//! room is made, and a SYN flood costs at most `backlog` connection blocks.

use super::set::Handle;
use std::collections::VecDeque;

#[derive(Debug)]
pub struct Listener {
    pub port: u16,
    pub backlog: usize,
    /// Connections in SYN-RECEIVED.
    pub embryonic: usize,
    /// Established connections waiting for `accept`, oldest first.
    pub ready: VecDeque<Handle>,
    /// SYNs dropped because a queue was full.
    pub overflows: u64,
}

impl Listener {
    pub fn new(port: u16, backlog: usize) -> Self {
        Listener {
            port,
            backlog: backlog.max(1),
            embryonic: 0,
            ready: VecDeque::new(),
            overflows: 0,
        }
    }
    /// Room for one more handshake.
    pub fn has_room(&self) -> bool {
        self.embryonic < self.backlog && self.ready.len() < self.backlog
    }
}
