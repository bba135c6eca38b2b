//! Path MTU discovery for TCP (RFC 1191): what ICMP "fragmentation needed"
//! taught us per destination, with aging.
//!
//! Segments leave with DF set. A router whose next hop cannot carry one
//! drops it and reports the hop's MTU; the connection it quotes (checked
//! against that connection's numbers, RFC 5927 §4.1) lowers its MSS and
//! resends at once, and the destination's entry here gives later
//! connections the smaller size from the start. Entries age out after ten
//! minutes (RFC 1191 §6.3), so a path that grew is found again.

use crate::time::{Duration, Instant};
use std::collections::HashMap;
use std::net::IpAddr;

/// RFC 1191 §6.3 suggests 10 minutes before trying a larger size again.
pub const AGING: Duration = Duration::from_secs(600);
/// The smallest path MTU believed (Linux's `min_pmtu`): a report below it
/// is taken as this much, and segments then go without DF, so that a
/// forged tiny MTU cannot shrink segments to a few bytes.
pub const MIN_PATH_MTU: usize = 552;
/// RFC 1191 §7: the plateaus used when a router reports no MTU.
const PLATEAUS: [usize; 10] = [32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68];
/// Destinations remembered at most; the oldest entry gives way.
const MAX_ENTRIES: usize = 4096;

/// The path MTU an ICMP message reports: its next-hop MTU, or (RFC 1191
/// §5, old routers) the plateau below the quoted datagram's length.
pub fn reported_mtu(next_hop_mtu: u16, quoted_len: u16) -> usize {
    if next_hop_mtu != 0 {
        return next_hop_mtu as usize;
    }
    let quoted = quoted_len as usize;
    PLATEAUS.into_iter().find(|&p| p < quoted).unwrap_or(68)
}

#[derive(Debug, Default)]
pub struct PathMtuCache {
    /// Destination → (path MTU, when the entry expires).
    entries: HashMap<IpAddr, (usize, Instant)>,
}

impl PathMtuCache {
    /// The path MTU toward `dst`, if a live entry knows one.
    pub fn get(&self, now: Instant, dst: IpAddr) -> Option<usize> {
        self.entries
            .get(&dst)
            .filter(|(_, expires)| *expires > now)
            .map(|(mtu, _)| *mtu)
    }

    /// Records a (validated) smaller path MTU toward `dst`.
    pub fn learn(&mut self, now: Instant, dst: IpAddr, mtu: usize) {
        if self.entries.len() >= MAX_ENTRIES && !self.entries.contains_key(&dst) {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= MAX_ENTRIES {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    self.entries.remove(&k);
                }
            }
        }
        let mtu = match self.get(now, dst) {
            Some(known) => known.min(mtu),
            None => mtu,
        };
        self.entries.insert(dst, (mtu, now + AGING));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_the_smallest_and_age_out() {
        let dst = std::net::Ipv4Addr::new(10, 0, 0, 1).into();
        let mut c = PathMtuCache::default();
        c.learn(Instant::ZERO, dst, 1400);
        c.learn(Instant::from_secs(1), dst, 1450);
        assert_eq!(c.get(Instant::from_secs(2), dst), Some(1400));
        assert_eq!(c.get(Instant::from_secs(601), dst), None, "aged out");
        assert_eq!(reported_mtu(1280, 1500), 1280);
        assert_eq!(reported_mtu(0, 1500), 1492);
        assert_eq!(reported_mtu(0, 1492), 1006);
        assert_eq!(reported_mtu(0, 60), 68);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = PathMtuCache::default();
        for i in 0..(MAX_ENTRIES as u32 + 100) {
            let dst = std::net::Ipv4Addr::from_bits(0x0a00_0000 + i).into();
            c.learn(Instant::from_micros(i as i64), dst, 1400);
        }
        assert_eq!(c.len(), MAX_ENTRIES);
    }
}
