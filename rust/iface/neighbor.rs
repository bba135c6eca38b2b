//! The ARP neighbour cache (RFC 826) with aging, retries and a small queue of
//! frames waiting for resolution (RFC 1122 §2.3.2.2: keep at least one);
//! IPv6's neighbor discovery uses it too.
//!
//! An entry that ages out while in use is not dropped: it is confirmed with
//! requests sent to the neighbor's own MAC while frames go on to it (RFC
//! 4861 §7.3's STALE/PROBE, as Linux's ARP does), so that a long transfer
//! does not stop to resolve again, its frames queued or lost, every time
//! the entry ages. Only a neighbor that answers none of them is forgotten.

use crate::time::{Duration, Instant};
use crate::wire::{Ipv4Addr, MacAddress};
use std::cell::Cell;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct NeighborConfig {
    /// Most entries kept; the stalest is evicted for a new one.
    pub capacity: usize,
    /// How long a learnt mapping is trusted (RFC 1122 §2.3.2.1 asks for a timeout).
    pub reachable_time: Duration,
    /// Interval between ARP requests for an unresolved address.
    pub retry_interval: Duration,
    /// Requests sent before giving up and dropping the queued frames.
    pub max_requests: u8,
    /// Frames held while waiting for resolution, over all addresses.
    pub max_queued_frames: usize,
}

impl Default for NeighborConfig {
    fn default() -> Self {
        NeighborConfig {
            capacity: 64,
            reachable_time: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_requests: 3,
            // Room for a 64 KiB datagram's fragments (45 at MTU 1500).
            max_queued_frames: 64,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    Reachable {
        mac: MacAddress,
        expires_at: Instant,
    },
    /// Aged out while in use: still used, and asked for to its MAC.
    Probing {
        mac: MacAddress,
        probes_sent: u8,
        next_probe: Instant,
    },
    Incomplete {
        requests_sent: u8,
        next_request: Instant,
    },
}

#[derive(Debug, Clone)]
struct Entry<A> {
    ip: A,
    state: State,
    touched: Instant,
    /// When a frame last went to this neighbor (set by lookups).
    used: Cell<Option<Instant>>,
}

/// A frame built for `next_hop` whose destination MAC is filled on resolution.
#[derive(Debug)]
struct Waiting<A> {
    next_hop: A,
    frame: Vec<u8>,
}

/// A neighbor as listed for the user: resolved (with the time left before
/// it must be confirmed again, zero once stale) or still being asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbor<A = Ipv4Addr> {
    pub ip: A,
    pub mac: Option<MacAddress>,
    pub expires_in: Option<Duration>,
}

#[derive(Debug)]
pub struct NeighborCache<A = Ipv4Addr> {
    config: NeighborConfig,
    entries: Vec<Entry<A>>,
    waiting: VecDeque<Waiting<A>>,
}

/// What [`NeighborCache::poll`] asks the interface to do.
#[derive(Debug, PartialEq, Eq)]
pub enum NeighborAction<A = Ipv4Addr> {
    SendRequest(A),
    /// Confirm a neighbor in use whose entry aged: ask it at its MAC.
    SendProbe(A, MacAddress),
    /// Resolution failed: this many waiting frames were dropped.
    GaveUp(A, usize),
}

impl<A: Copy + PartialEq> NeighborCache<A> {
    pub fn new(config: NeighborConfig) -> Self {
        NeighborCache {
            config,
            entries: Vec::new(),
            waiting: VecDeque::new(),
        }
    }

    fn find(&self, ip: A) -> Option<usize> {
        self.entries.iter().position(|e| e.ip == ip)
    }

    /// The MAC for `ip` if known and not aged out (or being confirmed).
    /// Marks the neighbor as in use.
    pub fn lookup(&self, now: Instant, ip: A) -> Option<MacAddress> {
        let entry = &self.entries[self.find(ip)?];
        let mac = match entry.state {
            State::Reachable { mac, expires_at } if expires_at > now => mac,
            State::Probing { mac, .. } => mac,
            _ => return None,
        };
        entry.used.set(Some(now));
        Some(mac)
    }

    /// Number of entries, resolved or not.
    /// Every entry as `arp -n` would list it, oldest first.
    pub fn entries(&self, now: Instant) -> Vec<Neighbor<A>> {
        self.entries
            .iter()
            .map(|e| match e.state {
                State::Reachable { mac, expires_at } => Neighbor {
                    ip: e.ip,
                    mac: Some(mac),
                    expires_in: Some(expires_at.saturating_since(now)),
                },
                State::Probing { mac, .. } => Neighbor {
                    ip: e.ip,
                    mac: Some(mac),
                    expires_in: Some(Duration::ZERO),
                },
                State::Incomplete { .. } => Neighbor {
                    ip: e.ip,
                    mac: None,
                    expires_in: None,
                },
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every resolved address, as Linux does when a link goes down
    /// (`neigh_ifdown`): a link that comes back may lead elsewhere, or its
    /// neighbors may have changed their MACs (a peer made again). Addresses
    /// still being asked for keep their queued frames.
    pub fn forget_resolved(&mut self) {
        self.entries
            .retain(|e| matches!(e.state, State::Incomplete { .. }));
    }

    /// Records `ip` → `mac`. RFC 826's merge: an existing entry is always
    /// updated; a new one is made only if `create` (the packet was for us).
    /// Frames waiting for `ip` are handed to `release` with their MAC set.
    pub fn learn(
        &mut self,
        now: Instant,
        ip: A,
        mac: MacAddress,
        create: bool,
        mut release: impl FnMut(&[u8]),
    ) {
        let state = State::Reachable {
            mac,
            expires_at: now + self.config.reachable_time,
        };
        match self.find(ip) {
            Some(i) => {
                self.entries[i].state = state;
                self.entries[i].touched = now;
            }
            None if create => self.insert(Entry {
                ip,
                state,
                touched: now,
                used: Cell::new(None),
            }),
            None => return,
        }
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        for mut w in self.waiting.drain(..) {
            if w.next_hop == ip {
                w.frame[0..6].copy_from_slice(&mac.0);
                release(&w.frame);
            } else {
                kept.push_back(w);
            }
        }
        self.waiting = kept;
    }

    fn insert(&mut self, entry: Entry<A>) {
        if self.entries.len() >= self.config.capacity {
            // Evict the least recently touched entry, preferring ones that never resolved.
            let victim = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (matches!(e.state, State::Reachable { .. }), e.touched))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                let ip = self.entries.swap_remove(i).ip;
                self.waiting.retain(|w| w.next_hop != ip);
            }
        }
        self.entries.push(entry);
    }

    /// Queues `frame` until `next_hop` resolves. Returns `Ok(true)` when an
    /// ARP request should go out now (a new resolution), `Err` when the queue is full.
    pub fn enqueue(&mut self, now: Instant, next_hop: A, frame: Vec<u8>) -> Result<bool, Vec<u8>> {
        if self.waiting.len() >= self.config.max_queued_frames {
            return Err(frame);
        }
        self.waiting.push_back(Waiting { next_hop, frame });
        let incomplete = State::Incomplete {
            requests_sent: 1,
            next_request: now + self.config.retry_interval,
        };
        match self.find(next_hop) {
            Some(i) if matches!(self.entries[i].state, State::Incomplete { .. }) => Ok(false),
            Some(i) => {
                // Aged out: resolve again.
                self.entries[i].state = incomplete;
                self.entries[i].touched = now;
                self.entries[i].used.set(Some(now));
                Ok(true)
            }
            None => {
                self.insert(Entry {
                    ip: next_hop,
                    state: incomplete,
                    touched: now,
                    used: Cell::new(Some(now)),
                });
                Ok(true)
            }
        }
    }

    /// Retries and expiries due at `now`.
    pub fn poll(&mut self, now: Instant, mut act: impl FnMut(NeighborAction<A>)) {
        let reachable = self.config.reachable_time;
        let mut i = 0;
        while i < self.entries.len() {
            let e = &mut self.entries[i];
            match e.state {
                State::Incomplete {
                    requests_sent,
                    next_request,
                } if next_request <= now => {
                    if requests_sent >= self.config.max_requests {
                        let ip = e.ip;
                        self.entries.swap_remove(i);
                        let before = self.waiting.len();
                        self.waiting.retain(|w| w.next_hop != ip);
                        act(NeighborAction::GaveUp(ip, before - self.waiting.len()));
                        continue;
                    }
                    e.state = State::Incomplete {
                        requests_sent: requests_sent + 1,
                        next_request: now + self.config.retry_interval,
                    };
                    act(NeighborAction::SendRequest(e.ip));
                }
                // Aged out while in use: confirm it at its MAC, using it meanwhile.
                State::Reachable { mac, expires_at }
                    if expires_at <= now && in_use(e.used.get(), expires_at, reachable) =>
                {
                    e.state = State::Probing {
                        mac,
                        probes_sent: 1,
                        next_probe: now + self.config.retry_interval,
                    };
                    act(NeighborAction::SendProbe(e.ip, mac));
                }
                State::Probing {
                    mac,
                    probes_sent,
                    next_probe,
                } if next_probe <= now => {
                    if probes_sent >= self.config.max_requests {
                        // No answer to any: forgotten, to be resolved anew if used.
                        self.entries.swap_remove(i);
                        continue;
                    }
                    e.state = State::Probing {
                        mac,
                        probes_sent: probes_sent + 1,
                        next_probe: now + self.config.retry_interval,
                    };
                    act(NeighborAction::SendProbe(e.ip, mac));
                }
                // Long-expired entries are removed so the table does not fill with the dead.
                State::Reachable { expires_at, .. }
                    if expires_at + self.config.reachable_time <= now =>
                {
                    self.entries.swap_remove(i);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }

    /// When [`NeighborCache::poll`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        self.entries
            .iter()
            .filter_map(|e| match e.state {
                State::Incomplete { next_request, .. } => Some(next_request),
                State::Probing { next_probe, .. } => Some(next_probe),
                State::Reachable { expires_at, .. } => {
                    in_use(e.used.get(), expires_at, self.config.reachable_time)
                        .then_some(expires_at)
                }
            })
            .min()
    }
}

/// Whether a frame went to a neighbor (last `used`) since its entry,
/// expiring at `expires_at`, was last confirmed.
fn in_use(used: Option<Instant>, expires_at: Instant, reachable_time: Duration) -> bool {
    used.is_some_and(|used| used >= expires_at - reachable_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const M: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);

    fn t(ms: i64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn merge_rule_creates_only_when_asked() {
        let mut c = NeighborCache::new(NeighborConfig::default());
        c.learn(t(0), A, M, false, |_| {});
        assert_eq!(c.lookup(t(0), A), None);
        c.learn(t(0), A, M, true, |_| {});
        assert_eq!(c.lookup(t(0), A), Some(M));
    }

    #[test]
    fn a_link_that_returns_forgets_resolved_entries_and_keeps_waiting_frames() {
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let mut c = NeighborCache::new(NeighborConfig::default());
        c.learn(t(0), A, M, true, |_| {});
        assert_eq!(c.enqueue(t(0), b, vec![0u8; 60]), Ok(true));
        c.forget_resolved();
        assert_eq!(c.lookup(t(1), A), None, "asked for again");
        let mut released = 0;
        c.learn(t(2), b, M, false, |_| released += 1);
        assert_eq!(
            released, 1,
            "the frame waiting for b went out once b answered"
        );
    }

    #[test]
    fn entries_age_out() {
        let mut c = NeighborCache::new(NeighborConfig::default());
        c.learn(t(0), A, M, true, |_| {});
        assert_eq!(c.poll_at(), None, "not in use: nothing to confirm");
        c.poll(t(60_000), |_| panic!("nothing to do"));
        assert_eq!(c.lookup(t(60_000), A), None);
        c.poll(t(120_000), |_| {});
        assert!(c.is_empty());
    }

    #[test]
    fn an_entry_in_use_is_confirmed_at_its_mac_and_kept_while_it_answers() {
        let mut c = NeighborCache::new(NeighborConfig::default());
        c.learn(t(0), A, M, true, |_| {});
        assert_eq!(c.lookup(t(1_000), A), Some(M));
        assert_eq!(c.poll_at(), Some(t(60_000)));
        let mut actions = vec![];
        c.poll(t(60_000), |a| actions.push(a));
        assert_eq!(actions, vec![NeighborAction::SendProbe(A, M)]);
        assert_eq!(
            c.lookup(t(60_500), A),
            Some(M),
            "used while it is confirmed"
        );
        c.learn(t(60_600), A, M, false, |_| {}); // it answered
        assert_eq!(c.poll_at(), None, "confirmed, and not used since");
        // In use again, and silent: three probes a second apart, then forgotten.
        assert_eq!(c.lookup(t(61_000), A), Some(M));
        for at in [120_600, 121_600, 122_600] {
            let mut actions = vec![];
            c.poll(t(at), |a| actions.push(a));
            assert_eq!(actions, vec![NeighborAction::SendProbe(A, M)], "{at}");
            assert_eq!(c.lookup(t(at), A), Some(M));
        }
        c.poll(t(123_600), |_| panic!("no more probes"));
        assert_eq!(c.lookup(t(123_600), A), None);
        assert!(c.is_empty());
    }

    #[test]
    fn waiting_frames_released_on_resolution() {
        let mut c = NeighborCache::new(NeighborConfig::default());
        assert_eq!(c.enqueue(t(0), A, vec![0; 60]), Ok(true));
        assert_eq!(c.enqueue(t(0), A, vec![1; 60]), Ok(false));
        let mut out = vec![];
        c.learn(t(5), A, M, false, |f| out.push(f.to_vec()));
        assert_eq!(out.len(), 2);
        assert_eq!(&out[0][0..6], &M.0);
        assert_eq!(out[1][6], 1);
    }

    #[test]
    fn gives_up_after_retries() {
        let mut c = NeighborCache::new(NeighborConfig::default());
        c.enqueue(t(0), A, vec![0; 60]).unwrap();
        let mut actions = vec![];
        for ms in [1000, 2000, 3000] {
            assert_eq!(c.poll_at(), Some(t(ms)));
            c.poll(t(ms), |a| actions.push(a));
        }
        assert_eq!(
            actions,
            vec![
                NeighborAction::SendRequest(A),
                NeighborAction::SendRequest(A),
                NeighborAction::GaveUp(A, 1)
            ]
        );
        assert!(c.is_empty() && c.poll_at().is_none());
    }

    #[test]
    fn bounded() {
        let cfg = NeighborConfig {
            capacity: 4,
            max_queued_frames: 2,
            ..Default::default()
        };
        let mut c = NeighborCache::new(cfg);
        for i in 0..10u8 {
            c.learn(t(i as i64), Ipv4Addr::new(10, 0, 0, i), M, true, |_| {});
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.lookup(t(10), Ipv4Addr::new(10, 0, 0, 9)), Some(M));
        assert_eq!(c.lookup(t(10), Ipv4Addr::new(10, 0, 0, 0)), None);
        c.enqueue(t(0), A, vec![0; 60]).unwrap();
        c.enqueue(t(0), A, vec![0; 60]).unwrap();
        assert!(c.enqueue(t(0), A, vec![0; 60]).is_err());
    }
}
