//! Independent random streams, one per purpose, derived from the stack's
//! seed.
//!
//! Some random values go out in clear (DHCP transaction IDs, DNS IDs and
//! ports, ping identifiers); others must stay secret (the key behind ISNs,
//! SYN cookies and port offsets). Drawing both from one generator, or
//! seeding two generators alike, lets whoever reads the clear values learn
//! the secret ones. Each purpose gets its own ChaCha stream keyed by a
//! keyed hash (SipHash-2-4, 128-bit) of the seed and the purpose's label,
//! so no stream's output says anything about another's key.

use core::hash::Hasher;
use rand::rngs::StdRng;
use rand::SeedableRng;
use siphasher::sip128::{Hasher128, SipHasher24};

/// What a stream is for; the label enters the derivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The TCP secret: ISN offsets (RFC 6528), SYN cookies, port offsets.
    TcpSecret,
    /// Where the RFC 6056 ephemeral-port counter starts.
    TcpPorts,
    /// DHCP transaction IDs and retransmission jitter (sent in clear).
    Dhcp,
    /// DNS query IDs and source ports (sent in clear).
    Dns,
    /// UDP ephemeral ports and ping identifiers (sent in clear).
    Datagrams,
    /// The fault injector (testing only).
    Faults,
    /// mDNS probe timing (sent in clear).
    Mdns,
    /// IPv6 probe, solicitation and report timing (sent in clear).
    Ipv6,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::TcpSecret => b"mipfast tcp secret",
            Purpose::TcpPorts => b"mipfast tcp ports",
            Purpose::Dhcp => b"mipfast dhcp",
            Purpose::Dns => b"mipfast dns",
            Purpose::Datagrams => b"mipfast datagrams",
            Purpose::Faults => b"mipfast faults",
            Purpose::Mdns => b"mipfast mdns",
            Purpose::Ipv6 => b"mipfast ipv6",
        }
    }
}

/// The 32-byte ChaCha key of `purpose`'s stream.
pub fn stream_key(seed: u64, purpose: Purpose) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (half, chunk) in key.chunks_exact_mut(16).enumerate() {
        let mut h = SipHasher24::new_with_keys(seed, !seed);
        h.write(purpose.label());
        h.write_u8(half as u8);
        chunk.copy_from_slice(&h.finish128().as_bytes());
    }
    key
}

/// The generator for `purpose`.
pub fn stream(seed: u64, purpose: Purpose) -> StdRng {
    StdRng::from_seed(stream_key(seed, purpose))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[test]
    fn streams_differ_by_purpose_and_seed_and_repeat_for_both() {
        let purposes = [
            Purpose::TcpSecret,
            Purpose::TcpPorts,
            Purpose::Dhcp,
            Purpose::Dns,
            Purpose::Datagrams,
            Purpose::Faults,
        ];
        let keys: Vec<_> = purposes.iter().map(|&p| stream_key(1, p)).collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j]);
            }
        }
        assert_ne!(stream_key(1, Purpose::Dhcp), stream_key(2, Purpose::Dhcp));
        let a: u64 = stream(7, Purpose::Dns).random();
        let b: u64 = stream(7, Purpose::Dns).random();
        assert_eq!(a, b, "a seed reproduces its streams");
    }
}
