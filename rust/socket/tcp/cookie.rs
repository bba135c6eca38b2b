//! SYN cookies (RFC 4987 §3.6): when a listener's handshake queue is full,
//! the SYN-ACK's sequence number carries what the handshake needs, so that
//! nothing is kept until the peer's ACK proves it saw the SYN-ACK.
//!
//! ISN = H1(4-tuple) + peer ISN + (count << 24) + ((H2(4-tuple, count) + MSS
//! index) mod 2^24), with `count` a 64-second clock: a cookie is good for two
//! counts after the one it was made in, and forging one means guessing 24
//! keyed bits. The peer's window scale and SACK-permitted ride in the low
//! bits of our timestamp, which its ACK echoes (as Linux does); a peer without
//! timestamps gets neither.

use super::secret::Secret;
use super::{AddressBytes, Endpoint};
use crate::time::{Duration, Instant};

/// The MSS values a cookie can carry (Linux's table for IPv4).
const MSS_TABLE: [u16; 4] = [536, 1300, 1440, 1460];
const COUNT_PERIOD_SECS: i64 = 64;
/// Counts a cookie stays good for after the one it was made in.
const MAX_AGE: u32 = 2;
/// Timestamp bits: window scale (15: none) and SACK-permitted.
const TS_BITS: u32 = 5;
const NO_WINDOW_SCALE: u32 = 15;

/// How long a listener keeps checking cookies after it last sent one.
pub fn lifetime() -> Duration {
    Duration::from_secs((COUNT_PERIOD_SECS * (MAX_AGE as i64 + 1)) as u64)
}

fn count(now: Instant) -> u32 {
    (now.total_micros() / 1_000_000 / COUNT_PERIOD_SECS) as u32
}

fn hashes(secret: &Secret, local: Endpoint, remote: Endpoint, count: u32) -> (u32, u32) {
    let (local_ip, remote_ip) = (AddressBytes::of(local.0), AddressBytes::of(remote.0));
    let tuple = [
        local_ip.as_slice(),
        &local.1.to_be_bytes(),
        remote_ip.as_slice(),
        &remote.1.to_be_bytes(),
    ];
    let h1 = secret.hash(3, &tuple) as u32;
    let h2 = secret.hash(
        4,
        &[tuple[0], tuple[1], tuple[2], tuple[3], &count.to_be_bytes()],
    ) as u32;
    (h1, h2)
}

/// The cookie ISN answering a SYN with sequence number `peer_isn` that
/// offered `peer_mss`, and the MSS it stands for (the largest in the table
/// not above `peer_mss`).
pub fn make(
    secret: &Secret,
    now: Instant,
    local: Endpoint,
    remote: Endpoint,
    peer_isn: u32,
    peer_mss: u16,
) -> (u32, u16) {
    let index = MSS_TABLE.iter().rposition(|&m| m <= peer_mss).unwrap_or(0);
    let c = count(now);
    let (h1, h2) = hashes(secret, local, remote, c);
    let low = h2.wrapping_add(index as u32) & 0x00ff_ffff;
    let isn = h1
        .wrapping_add(peer_isn)
        .wrapping_add(c << 24)
        .wrapping_add(low);
    (isn, MSS_TABLE[index])
}

/// The MSS a returning cookie stands for, if it is ours and fresh: `cookie`
/// is the ACK's acknowledgment number minus one, `peer_isn` its sequence
/// number minus one.
pub fn check(
    secret: &Secret,
    now: Instant,
    local: Endpoint,
    remote: Endpoint,
    peer_isn: u32,
    cookie: u32,
) -> Option<u16> {
    let now_count = count(now);
    let (h1, _) = hashes(secret, local, remote, 0);
    let rest = cookie.wrapping_sub(h1).wrapping_sub(peer_isn);
    let made = rest >> 24;
    if (now_count.wrapping_sub(made)) & 0xff > MAX_AGE {
        return None;
    }
    // The count's full value: the one at most MAX_AGE behind now whose low 8 bits match.
    let full = now_count.wrapping_sub(now_count.wrapping_sub(made) & 0xff);
    let (_, h2) = hashes(secret, local, remote, full);
    let index = (rest & 0x00ff_ffff).wrapping_sub(h2) & 0x00ff_ffff;
    MSS_TABLE.get(index as usize).copied()
}

/// `ts` with its low bits replaced by the peer's window scale and SACK
/// permission, never above `ts`, so that our clock never steps back.
pub fn encode_timestamp(ts: u32, window_scale: Option<u8>, sack: bool) -> u32 {
    let ws = window_scale.map_or(NO_WINDOW_SCALE, |w| w.min(14) as u32);
    let bits = ws << 1 | sack as u32;
    let mask = (1 << TS_BITS) - 1;
    ts.wrapping_sub(ts.wrapping_sub(bits) & mask)
}

/// What [`encode_timestamp`] put in an echoed timestamp.
pub fn decode_timestamp(echo: u32) -> (Option<u8>, bool) {
    let bits = echo & ((1 << TS_BITS) - 1);
    let ws = bits >> 1;
    ((ws != NO_WINDOW_SCALE).then_some(ws as u8), bits & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Addr;
    use std::net::IpAddr;

    const L: Endpoint = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80);
    const R: Endpoint = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 40000);

    #[test]
    fn a_cookie_returns_its_mss_while_fresh_and_only_for_its_tuple() {
        let s = Secret::new([7; 16]);
        let t = Instant::from_secs(1000);
        for (offered, mss) in [(1460, 1460), (1400, 1300), (9000, 1460), (100, 536)] {
            let (isn, got) = make(&s, t, L, R, 12345, offered);
            assert_eq!(got, mss);
            assert_eq!(check(&s, t, L, R, 12345, isn), Some(mss));
            let later = t + Duration::from_secs(2 * 64);
            assert_eq!(check(&s, later, L, R, 12345, isn), Some(mss));
            let too_late = t + Duration::from_secs(4 * 64);
            assert_eq!(check(&s, too_late, L, R, 12345, isn), None);
            assert_eq!(check(&s, t, L, R, 99_999, isn), None);
            assert_eq!(check(&s, t, L, (R.0, R.1 + 1), 12345, isn), None);
            assert_eq!(check(&Secret::new([8; 16]), t, L, R, 12345, isn), None);
        }
        // Guessing: of 100,000 neighbouring numbers none passes.
        let (isn, _) = make(&s, t, L, R, 1, 1460);
        let passing = (1..100_000u32)
            .filter(|d| check(&s, t, L, R, 1, isn.wrapping_add(*d)).is_some())
            .count();
        assert_eq!(passing, 0);
    }

    #[test]
    fn timestamps_carry_window_scale_and_sack_without_stepping_back() {
        for ts in [0u32, 31, 32, 1000, u32::MAX] {
            for (ws, sack) in [
                (Some(7), true),
                (None, false),
                (Some(0), false),
                (Some(14), true),
            ] {
                let e = encode_timestamp(ts, ws, sack);
                assert!(ts.wrapping_sub(e) < 32, "{ts} {e}");
                assert_eq!(decode_timestamp(e), (ws, sack));
            }
        }
    }
}
