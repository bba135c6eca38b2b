//! Our IPv6 addresses and their states (RFC 4862 §5.5.4): tentative while
//! duplicate address detection runs, then preferred until the preferred
//! lifetime ends, deprecated until the valid lifetime ends, then gone.

use crate::time::{Duration, Instant};
use crate::wire::ipv6::Ipv6Addr;
use crate::wire::ndp::INFINITE_LIFETIME;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressState {
    /// Duplicate address detection is running (RFC 4862 §5.4): the address
    /// is not used, and only neighbor discovery addressed to it is read.
    Tentative {
        probes_sent: u8,
        next_probe: Instant,
    },
    Preferred,
    /// Still ours, but new communication should use another (§5.5.4).
    Deprecated,
    /// Another node holds it (§5.4.5): never used.
    Duplicate,
}

impl AddressState {
    /// Packets to it are taken and it may be a source.
    pub fn is_usable(self) -> bool {
        matches!(self, AddressState::Preferred | AddressState::Deprecated)
    }
    /// The name shown to users (as `ip -6 addr` says it).
    pub fn name(self) -> &'static str {
        match self {
            AddressState::Tentative { .. } => "tentative",
            AddressState::Preferred => "preferred",
            AddressState::Deprecated => "deprecated",
            AddressState::Duplicate => "duplicate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressOrigin {
    /// fe80:: and the interface identifier (RFC 4862 §5.3).
    LinkLocal,
    /// A router's prefix and the interface identifier (RFC 4862 §5.5.3).
    Autoconfigured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddress {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    pub origin: AddressOrigin,
    pub state: AddressState,
    /// None: for ever.
    pub valid_until: Option<Instant>,
    pub preferred_until: Option<Instant>,
}

/// RFC 4862 §5.5.3 (e): the two hours below which an advertisement may not
/// shorten a valid lifetime, lest a forged one take an address away.
const TWO_HOURS: Duration = Duration::from_secs(2 * 3600);

/// A lifetime in seconds from an advertisement as a deadline; None for ever.
pub(super) fn deadline(now: Instant, seconds: u32) -> Option<Instant> {
    (seconds != INFINITE_LIFETIME).then(|| now + Duration::from_secs(u64::from(seconds)))
}

impl HostAddress {
    /// Takes in the lifetimes of a prefix advertised again (RFC 4862 §5.5.3 (e)).
    pub(super) fn refresh(&mut self, now: Instant, valid: u32, preferred: u32) {
        self.preferred_until = deadline(now, preferred);
        if self.state == AddressState::Deprecated && preferred > 0 {
            self.state = AddressState::Preferred;
        }
        let new_valid = deadline(now, valid);
        let remaining = self.valid_until.map(|t| t.saturating_since(now));
        let longer = match (new_valid, self.valid_until) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(new), Some(old)) => new > old,
        };
        if longer || u64::from(valid) > TWO_HOURS.total_micros() / 1_000_000 {
            self.valid_until = new_valid;
        } else if remaining.is_some_and(|r| r > TWO_HOURS) {
            self.valid_until = Some(now + TWO_HOURS);
        }
        // Otherwise (two hours or less left) the advertisement is ignored.
    }

    /// Moves along the lifetimes at `now`: false once the address is invalid.
    pub(super) fn age(&mut self, now: Instant) -> bool {
        if self.valid_until.is_some_and(|t| t <= now) {
            return false;
        }
        if self.state == AddressState::Preferred && self.preferred_until.is_some_and(|t| t <= now) {
            self.state = AddressState::Deprecated;
        }
        true
    }

    /// When [`HostAddress::age`] next changes something.
    pub(super) fn age_at(&self) -> Option<Instant> {
        let preferred = match self.state {
            AddressState::Preferred => self.preferred_until,
            _ => None,
        };
        crate::time::earliest(self.valid_until, preferred)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs as i64 * 1000)
    }

    fn slaac(valid: u32, preferred: u32) -> HostAddress {
        HostAddress {
            address: "fd77::1".parse().unwrap(),
            prefix_len: 64,
            origin: AddressOrigin::Autoconfigured,
            state: AddressState::Preferred,
            valid_until: deadline(at(0), valid),
            preferred_until: deadline(at(0), preferred),
        }
    }

    #[test]
    fn the_two_hour_rule() {
        // A longer lifetime is always taken.
        let mut a = slaac(3 * 3600, 3600);
        a.refresh(at(0), 4 * 3600, 3600);
        assert_eq!(a.valid_until, Some(at(4 * 3600)));
        // A short one cannot cut a long remainder below two hours.
        a.refresh(at(0), 60, 30);
        assert_eq!(a.valid_until, Some(at(2 * 3600)));
        assert_eq!(a.preferred_until, Some(at(30)));
        // With two hours or less left, a shorter one is ignored.
        let mut a = slaac(3600, 3600);
        a.refresh(at(0), 60, 60);
        assert_eq!(a.valid_until, Some(at(3600)));
        // Infinite lifetimes.
        a.refresh(at(0), INFINITE_LIFETIME, INFINITE_LIFETIME);
        assert_eq!((a.valid_until, a.preferred_until), (None, None));
    }

    #[test]
    fn ages_to_deprecated_then_gone() {
        let mut a = slaac(100, 50);
        assert_eq!(a.age_at(), Some(at(50)));
        assert!(a.age(at(49)) && a.state == AddressState::Preferred);
        assert!(a.age(at(50)) && a.state == AddressState::Deprecated);
        assert_eq!(a.age_at(), Some(at(100)));
        assert!(!a.age(at(100)));
        // A new preferred lifetime brings a deprecated address back.
        let mut a = slaac(100, 0);
        assert!(a.age(at(1)) && a.state == AddressState::Deprecated);
        a.refresh(at(1), 100, 50);
        assert_eq!(a.state, AddressState::Preferred);
    }
}
