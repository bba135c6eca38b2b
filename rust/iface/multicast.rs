//! The multicast groups this host belongs to, and when each is reported
//! (IGMP version 2, RFC 2236 §3, a host's part): a group joined is
//! reported at once and once more shortly after, in case the first report
//! was lost; a query schedules a report at a random time within its
//! response time; another host's report for the group first makes ours
//! unneeded; the last member to leave says so. 224.0.0.1 is always joined
//! and never reported.

use crate::time::{Duration, Instant};
use crate::wire::igmp::ALL_SYSTEMS;
use crate::wire::Ipv4Addr;
use rand::{Rng, RngExt};
use std::collections::BTreeMap;

/// The unsolicited report's repetition comes this long after the first
/// (RFC 2236 §8.10 allows 10 s; Linux repeats within one second).
pub const REPEAT_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Default, Clone, Copy)]
struct Group {
    /// Sockets that joined it.
    members: usize,
    /// Our report is due then.
    report_at: Option<Instant>,
    /// Whether we sent the last report heard for it (so our leave matters).
    reported_last: bool,
    /// Unsolicited reports still to repeat after the first.
    repeats: u8,
}

#[derive(Debug, Default)]
pub struct Memberships {
    groups: BTreeMap<Ipv4Addr, Group>,
}

impl Memberships {
    /// Whether datagrams to `group` are ours.
    pub fn is_member(&self, group: Ipv4Addr) -> bool {
        group == ALL_SYSTEMS || self.groups.contains_key(&group)
    }

    /// Whether `group` may be joined: a multicast address (224.0.0.1 too,
    /// which every host is in already: joining it changes nothing, as on Linux).
    pub fn joinable(group: Ipv4Addr) -> bool {
        group.is_multicast()
    }

    /// One more member of `group`; true if the host has just joined it,
    /// its first report due now (and its repetition after `REPEAT_AFTER`).
    pub fn join(&mut self, now: Instant, group: Ipv4Addr) -> bool {
        let g = self.groups.entry(group).or_default();
        g.members += 1;
        if g.members > 1 || group == ALL_SYSTEMS {
            return false; // (224.0.0.1 is never reported, RFC 2236 §3)
        }
        g.report_at = Some(now);
        g.repeats = 1;
        true
    }

    /// One member fewer; true if the host has left `group` and should say
    /// so (it sent the last report heard for it, RFC 2236 §3).
    pub fn leave(&mut self, group: Ipv4Addr) -> bool {
        let Some(g) = self.groups.get_mut(&group) else {
            return false;
        };
        g.members -= 1;
        if g.members > 0 {
            return false;
        }
        let said = g.reported_last;
        self.groups.remove(&group);
        said
    }

    /// A query for `group` (None: every group): a report due at a random
    /// time within `max_response`, or sooner if one was due already.
    pub fn query(
        &mut self,
        now: Instant,
        group: Option<Ipv4Addr>,
        max_response: Duration,
        rng: &mut impl Rng,
    ) {
        for (&address, g) in self.groups.iter_mut() {
            if group.is_some_and(|q| q != address) || address == ALL_SYSTEMS {
                continue;
            }
            let delay = Duration::from_micros(rng.random_range(0..=max_response.total_micros()));
            let at = now + delay;
            g.report_at = Some(g.report_at.map_or(at, |due| due.min(at)));
        }
    }

    /// The host has an address (again): every group is reported at the
    /// next poll, and once more after, as when joined (reports need a
    /// source address, so a group joined before one was not reported).
    pub fn report_all_again(&mut self) {
        for (&address, g) in self.groups.iter_mut() {
            if address != ALL_SYSTEMS {
                g.report_at = Some(Instant::ZERO);
                g.repeats = 1;
            }
        }
    }

    /// Another host reported `group`: our answer to a query is not needed
    /// this time (an unsolicited report still goes: it announces our join).
    pub fn heard_report(&mut self, group: Ipv4Addr) {
        if let Some(g) = self.groups.get_mut(&group) {
            if g.repeats == 0 {
                g.report_at = None;
            }
            g.reported_last = false;
        }
    }

    /// The groups whose report is due by `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<Ipv4Addr> {
        let mut due = Vec::new();
        for (&address, g) in self.groups.iter_mut() {
            if g.report_at.is_some_and(|at| at <= now) {
                g.report_at = (g.repeats > 0).then(|| now + REPEAT_AFTER);
                g.repeats = g.repeats.saturating_sub(1);
                g.reported_last = true;
                due.push(address);
            }
        }
        due
    }

    /// When the next report is due.
    pub fn poll_at(&self) -> Option<Instant> {
        self.groups.values().filter_map(|g| g.report_at).min()
    }

    /// The groups joined, with how many members each.
    pub fn groups(&self) -> impl Iterator<Item = (Ipv4Addr, usize)> + '_ {
        self.groups.iter().map(|(&a, g)| (a, g.members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 1, 1);

    fn at(ms: u64) -> Instant {
        Instant::ZERO + Duration::from_millis(ms)
    }

    #[test]
    fn the_host_reports_a_group_once_for_all_its_members_and_leaves_with_the_last() {
        let mut m = Memberships::default();
        assert!(m.join(at(0), GROUP), "the first member: reported");
        assert!(
            !m.join(at(0), GROUP),
            "a second member: the host is in already"
        );
        assert_eq!(m.take_due(at(0)), vec![GROUP]);
        assert_eq!(m.poll_at(), Some(at(0) + REPEAT_AFTER), "then once more");
        assert_eq!(m.take_due(at(1000)), vec![GROUP]);
        assert_eq!(m.poll_at(), None);
        assert!(!m.leave(GROUP), "one member left");
        assert!(m.is_member(GROUP));
        assert!(
            m.leave(GROUP),
            "the last: says so, having sent the last report"
        );
        assert!(!m.is_member(GROUP));
    }

    #[test]
    fn groups_are_reported_again_when_the_host_gets_an_address() {
        let mut m = Memberships::default();
        m.join(at(0), GROUP);
        m.join(at(0), ALL_SYSTEMS);
        m.take_due(at(0));
        m.take_due(at(1000));
        m.report_all_again();
        assert_eq!(
            m.take_due(at(5000)),
            vec![GROUP],
            "at the next poll, 224.0.0.1 not"
        );
        assert_eq!(m.take_due(at(6000)), vec![GROUP], "and once more");
        assert_eq!(m.poll_at(), None);
    }

    #[test]
    fn all_systems_is_joined_but_never_reported_nor_left_aloud() {
        let mut m = Memberships::default();
        assert!(
            Memberships::joinable(ALL_SYSTEMS)
                && !Memberships::joinable(Ipv4Addr::new(10, 0, 0, 1))
        );
        assert!(m.is_member(ALL_SYSTEMS), "always");
        assert!(!m.join(at(0), ALL_SYSTEMS));
        m.query(
            at(0),
            None,
            Duration::from_secs(1),
            &mut StdRng::seed_from_u64(1),
        );
        assert_eq!(m.poll_at(), None);
        assert!(!m.leave(ALL_SYSTEMS));
        assert!(m.is_member(ALL_SYSTEMS));
    }

    #[test]
    fn a_query_is_answered_within_its_time_unless_another_host_answers_first() {
        let mut m = Memberships::default();
        m.join(at(0), GROUP);
        m.take_due(at(0));
        m.take_due(at(1000));
        let mut rng = StdRng::seed_from_u64(7);
        m.query(at(2000), Some(GROUP), Duration::from_millis(500), &mut rng);
        let due = m.poll_at().unwrap();
        assert!(at(2000) <= due && due <= at(2500), "{due:?}");
        m.heard_report(GROUP);
        assert_eq!(m.poll_at(), None, "suppressed");
        assert!(
            !m.leave(GROUP),
            "another host reported last: no leave needed"
        );
    }
}
