//! ICMP echo (RFC 792, and RFC 4443 §4 over IPv6) from our side: probes sent, replies matched by
//! address, identifier, sequence number and data, round-trip times taken
//! from the time passed in.

use crate::time::{Duration, Instant};
use std::collections::HashMap;
use std::net::IpAddr;

/// Identifies one probe until [`Pinger::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProbeId {
    pub ident: u16,
    pub seq: u16,
}

#[derive(Debug)]
struct Probe {
    dst: IpAddr,
    sent: Instant,
    size: usize,
    rtt: Option<Duration>,
}

/// Probes waiting for replies.
#[derive(Debug, Default)]
pub struct Pinger {
    probes: HashMap<ProbeId, Probe>,
}

/// Most probes outstanding at once; a flood of callers cannot grow the table.
pub const MAX_PROBES: usize = 1024;

/// The data carried by a probe of `size` bytes: recognisable, so that a
/// reply whose data was damaged is not taken for an answer.
pub fn probe_data(id: ProbeId, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u16).wrapping_add(id.seq).wrapping_mul(31) as u8 ^ id.ident as u8)
        .collect()
}

impl Pinger {
    /// Records a probe just sent; false when too many are outstanding.
    pub fn sent(&mut self, now: Instant, id: ProbeId, dst: IpAddr, size: usize) -> bool {
        if self.probes.len() >= MAX_PROBES {
            return false;
        }
        self.probes.insert(
            id,
            Probe {
                dst,
                sent: now,
                size,
                rtt: None,
            },
        );
        true
    }

    /// Handles an echo reply; true if it answered one of our probes.
    pub fn reply(&mut self, now: Instant, src: IpAddr, id: ProbeId, data: &[u8]) -> bool {
        match self.probes.get_mut(&id) {
            Some(p) if p.dst == src && p.rtt.is_none() && data == probe_data(id, p.size) => {
                p.rtt = Some(now.saturating_since(p.sent));
                true
            }
            _ => false,
        }
    }

    /// The round-trip time, once the reply came.
    pub fn rtt(&self, id: ProbeId) -> Option<Duration> {
        self.probes.get(&id).and_then(|p| p.rtt)
    }

    /// Forgets a probe (answered, or given up by its caller).
    pub fn finish(&mut self, id: ProbeId) {
        self.probes.remove(&id);
    }
}
