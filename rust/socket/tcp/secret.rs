//! Keyed hashes for what an attacker must not predict: initial sequence
//! numbers (RFC 6528) and ephemeral port offsets (RFC 6056 §3.3.3).

use super::{AddressBytes, Endpoint};
use crate::time::Instant;
use core::hash::Hasher;
use siphasher::sip::SipHasher24;
use std::net::IpAddr;

#[derive(Debug, Clone)]
pub struct Secret {
    key: [u8; 16],
    shared: Option<SharedClock>,
}

/// A clock that every stack of a machine shares, for initial sequence
/// numbers and timestamps: a key for their hashes and where this stack's
/// time zero lies on it (set by the runtime: a key kept for the machine's
/// uptime, and its monotonic clock). A new stack's numbers for a 4-tuple
/// then continue those of an earlier stack (a program run again through the
/// patch), as the kernel's continue across processes. A peer that still
/// holds the tuple in TIME-WAIT then takes the new SYN (RFC 6191, by
/// timestamps; RFC 9293 §3.6.1, by sequence numbers) instead of answering
/// with an ACK that costs a reset and a second's retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedClock {
    pub key: [u8; 16],
    /// This stack's time zero on the shared clock, in µs.
    pub base_micros: u64,
}

impl Secret {
    pub fn new(key: [u8; 16]) -> Self {
        Secret { key, shared: None }
    }

    /// ISNs and timestamps on `shared` (see [`SharedClock`]).
    pub fn with_shared_clock(mut self, shared: Option<SharedClock>) -> Self {
        self.shared = shared;
        self
    }

    /// The key for ISNs and timestamps, and this stack's time zero on their clock.
    fn clock(&self) -> ([u8; 16], u64) {
        self.shared
            .map_or((self.key, 0), |c| (c.key, c.base_micros))
    }
    #[cfg(test)]
    pub(crate) fn key(&self) -> [u8; 16] {
        self.key
    }

    /// A keyed hash of `parts`; `domain` separates the uses of one key.
    pub(super) fn hash(&self, domain: u8, parts: &[&[u8]]) -> u64 {
        keyed_hash(&self.key, domain, parts)
    }

    /// RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport, key),
    /// M a 4 µs clock, so that a reused 4-tuple starts above its old numbers.
    pub fn isn(&self, now: Instant, local: Endpoint, remote: Endpoint) -> u32 {
        let (key, base) = self.clock();
        let f = keyed_hash(&key, 0, &tuple(local, remote).parts());
        let m = ((base as i64).wrapping_add(now.total_micros()) / 4) as u32;
        m.wrapping_add(f as u32)
    }

    /// RFC 7323 §5.4: a timestamp clock offset per 4-tuple (from this
    /// stack's time zero: the shared clock's time then included).
    pub fn timestamp_offset(&self, local: Endpoint, remote: Endpoint) -> u32 {
        let (key, base) = self.clock();
        let offset = keyed_hash(&key, 2, &tuple(local, remote).parts()) as u32;
        offset.wrapping_add((base / 1000) as u32)
    }

    /// RFC 6056 §3.3.3 (Algorithm 3): the per-destination starting offset.
    pub fn port_offset(&self, local: IpAddr, remote: Endpoint) -> u32 {
        let (local, remote_ip) = (AddressBytes::of(local), AddressBytes::of(remote.0));
        self.hash(
            1,
            &[
                local.as_slice(),
                remote_ip.as_slice(),
                &remote.1.to_be_bytes(),
            ],
        ) as u32
    }
}

/// SipHash-2-4 of `parts` under `key`, `domain` first.
fn keyed_hash(key: &[u8; 16], domain: u8, parts: &[&[u8]]) -> u64 {
    let mut h = SipHasher24::new_with_key(key);
    h.write_u8(domain);
    for p in parts {
        h.write(p);
    }
    h.finish()
}

/// A 4-tuple's bytes, in the order the hashes take them (for IPv4, the
/// 12 bytes they always took).
fn tuple(local: Endpoint, remote: Endpoint) -> TupleBytes {
    let (mut b, mut n) = ([0u8; 36], 0);
    for (ip, port) in [local, remote] {
        let address = AddressBytes::of(ip);
        let address = address.as_slice();
        b[n..n + address.len()].copy_from_slice(address);
        b[n + address.len()..n + address.len() + 2].copy_from_slice(&port.to_be_bytes());
        n += address.len() + 2;
    }
    TupleBytes(b, n)
}

struct TupleBytes([u8; 36], usize);

impl TupleBytes {
    fn parts(&self) -> [&[u8]; 1] {
        [&self.0[..self.1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn isn_is_keyed_and_increasing() {
        let a = (Ipv4Addr::new(10, 0, 0, 1).into(), 1000);
        let b = (Ipv4Addr::new(10, 0, 0, 2).into(), 80);
        let s1 = Secret::new([1; 16]);
        let s2 = Secret::new([2; 16]);
        let t = Instant::from_secs(5);
        assert_ne!(s1.isn(t, a, b), s2.isn(t, a, b));
        assert_ne!(s1.isn(t, a, b), s1.isn(t, b, a));
        let later = s1.isn(t + crate::time::Duration::from_micros(400), a, b);
        assert_eq!(later.wrapping_sub(s1.isn(t, a, b)), 100);
    }

    #[test]
    fn a_later_stack_on_the_shared_clock_numbers_a_tuple_after_an_earlier_one() {
        let a = (Ipv4Addr::new(10, 0, 0, 1).into(), 50000);
        let b = (Ipv4Addr::new(10, 0, 0, 2).into(), 80);
        let clock = |base_micros| SharedClock {
            key: [9; 16],
            base_micros,
        };
        // Each with a key of its own, the second started 5 s after the first.
        let first = Secret::new([1; 16]).with_shared_clock(Some(clock(7_000_000)));
        let second = Secret::new([2; 16]).with_shared_clock(Some(clock(12_000_000)));
        let (end, start) = (Instant::from_secs(4), Instant::ZERO);
        let isn_step = second.isn(start, a, b).wrapping_sub(first.isn(end, a, b));
        assert_eq!(
            isn_step, 250_000,
            "1 s later on the shared clock, in 4 µs steps"
        );
        let ts = |s: &Secret, now: Instant| {
            ((now.total_micros() / 1000) as u32).wrapping_add(s.timestamp_offset(a, b))
        };
        assert_eq!(
            ts(&second, start).wrapping_sub(ts(&first, end)),
            1000,
            "1 s later, in ms"
        );
        // Without it, two stacks number the tuple independently.
        let own = Secret::new([2; 16]);
        assert_ne!(
            own.isn(start, a, b).wrapping_sub(first.isn(end, a, b)),
            250_000
        );
    }
}
