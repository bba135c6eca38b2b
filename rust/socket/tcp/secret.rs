//! Keyed hashes for what an attacker must not predict: initial sequence
//! numbers (RFC 6528) and ephemeral port offsets (RFC 6056 §3.3.3).

use crate::time::Instant;
use crate::wire::Ipv4Addr;
use core::hash::Hasher;
use siphasher::sip::SipHasher24;

#[derive(Debug, Clone)]
pub struct Secret {
    key: [u8; 16],
}

impl Secret {
    pub fn new(key: [u8; 16]) -> Self {
        Secret { key }
    }
    #[cfg(test)]
    pub(crate) fn key(&self) -> [u8; 16] {
        self.key
    }

    /// A keyed hash of `parts`; `domain` separates the uses of one key.
    pub(super) fn hash(&self, domain: u8, parts: &[&[u8]]) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write_u8(domain);
        for p in parts {
            h.write(p);
        }
        h.finish()
    }

    /// RFC 6528 §3: ISN = M + F(localip, localport, remoteip, remoteport, key),
    /// M a 4 µs clock, so that a reused 4-tuple starts above its old numbers.
    pub fn isn(&self, now: Instant, local: (Ipv4Addr, u16), remote: (Ipv4Addr, u16)) -> u32 {
        let f = self.hash(
            0,
            &[
                &local.0.octets(),
                &local.1.to_be_bytes(),
                &remote.0.octets(),
                &remote.1.to_be_bytes(),
            ],
        );
        let m = (now.total_micros() / 4) as u32;
        m.wrapping_add(f as u32)
    }

    /// RFC 7323 §5.4: a timestamp clock offset per 4-tuple.
    pub fn timestamp_offset(&self, local: (Ipv4Addr, u16), remote: (Ipv4Addr, u16)) -> u32 {
        self.hash(
            2,
            &[
                &local.0.octets(),
                &local.1.to_be_bytes(),
                &remote.0.octets(),
                &remote.1.to_be_bytes(),
            ],
        ) as u32
    }

    /// RFC 6056 §3.3.3 (Algorithm 3): the per-destination starting offset.
    pub fn port_offset(&self, local: Ipv4Addr, remote: (Ipv4Addr, u16)) -> u32 {
        self.hash(
            1,
            &[&local.octets(), &remote.0.octets(), &remote.1.to_be_bytes()],
        ) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isn_is_keyed_and_increasing() {
        let a = (Ipv4Addr::new(10, 0, 0, 1), 1000);
        let b = (Ipv4Addr::new(10, 0, 0, 2), 80);
        let s1 = Secret::new([1; 16]);
        let s2 = Secret::new([2; 16]);
        let t = Instant::from_secs(5);
        assert_ne!(s1.isn(t, a, b), s2.isn(t, a, b));
        assert_ne!(s1.isn(t, a, b), s1.isn(t, b, a));
        let later = s1.isn(t + crate::time::Duration::from_micros(400), a, b);
        assert_eq!(later.wrapping_sub(s1.isn(t, a, b)), 100);
    }
}
