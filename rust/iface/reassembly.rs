//! Reassembly of IPv4 (RFC 791 §3.2, RFC 815) and IPv6 (RFC 8200 §4.5)
//! datagrams: fragments are gathered per (source, destination, protocol,
//! identification) — IPv6 has no protocol in the key — until the datagram is
//! whole. Bounded in time (a datagram not complete within the timeout is
//! dropped), in datagrams and in bytes held, both families together; a
//! fragment that overlaps one already held (other than an exact duplicate)
//! discards the whole datagram, as RFC 5722 requires for IPv6, so that no
//! teardrop-style overlap is ever resolved one way or the other. When full,
//! the oldest datagram gives way to the newcomer (as Linux's evictor does):
//! fragment trains that never complete cannot lock reassembly out for a
//! whole timeout.

use super::{Counters, DropReason};
use crate::time::{Duration, Instant};
use crate::wire::{checksum, icmp, icmpv6, ipv4, ipv6, Ipv4Addr};
use std::net::{IpAddr, Ipv6Addr};

#[derive(Debug, Clone, Copy)]
pub struct ReassemblyConfig {
    /// RFC 791 suggests 15 s upward; Linux uses 30 s (ipfrag_time).
    pub timeout: Duration,
    /// RFC 8200 §4.5: 60 s for IPv6 (Linux's ip6frag_time too).
    pub timeout_v6: Duration,
    /// Datagrams being reassembled at once.
    pub max_datagrams: usize,
    /// Payload bytes held across all of them (Linux: ipfrag_high_thresh 4 MiB).
    pub max_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            timeout: Duration::from_secs(30),
            timeout_v6: Duration::from_secs(60),
            max_datagrams: 64,
            max_bytes: 4 << 20,
        }
    }
}

/// The largest IPv4 payload: the total length field is 16 bits.
const MAX_PAYLOAD: usize = 65535 - ipv4::HEADER_LEN;
/// The largest IPv6 payload without jumbograms (RFC 8200 §4.5).
const MAX_PAYLOAD_V6: usize = 65535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        ident: u16,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
        ident: u32,
    },
}

impl Key {
    fn is_v6(&self) -> bool {
        matches!(self, Key::V6 { .. })
    }
}

/// One fragment's part in its datagram.
struct Piece<'a> {
    key: Key,
    start: usize,
    more: bool,
    payload: &'a [u8],
    /// The header the whole datagram gets back, if this is fragment zero.
    header: &'a [u8],
}

#[derive(Debug)]
struct Datagram {
    key: Key,
    /// Fragment data placed at its offset.
    data: Vec<u8>,
    /// Received byte ranges, sorted and disjoint.
    ranges: Vec<(usize, usize)>,
    /// Known once the last fragment (MF clear) arrived.
    total: Option<usize>,
    expires: Instant,
    /// The header of fragment zero, once it arrived: what the whole
    /// datagram is given (IPv4's TTL, IPv6's next header from fragment
    /// zero, RFC 8200 §4.5) and what a time exceeded message quotes.
    first_header: Option<Vec<u8>>,
}

impl Datagram {
    fn held(&self) -> usize {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }
    fn complete(&self) -> bool {
        self.total
            .is_some_and(|t| self.ranges.len() == 1 && self.ranges[0] == (0, t))
    }
}

/// A datagram given up on at its timeout.
#[derive(Debug, PartialEq, Eq)]
pub struct TimedOut {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// Fragment zero's header and the data after it, if fragment zero came:
    /// RFC 1122 §3.3.2 (and RFC 8200 §4.5 for IPv6) then ask for a time
    /// exceeded to the source.
    pub quote: Option<Vec<u8>>,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Held; the datagram is not whole yet.
    Held,
    /// The datagram is whole: a complete packet of its family, header
    /// rebuilt (over IPv6, the fixed header alone: extension headers before
    /// the fragment header were read from each fragment already).
    Complete(Vec<u8>),
    /// The fragment (and perhaps its datagram) was dropped for this reason.
    Dropped(DropReason),
}

#[derive(Debug, Default)]
pub struct Reassembler {
    config: ReassemblyConfig,
    datagrams: Vec<Datagram>,
    bytes: usize,
    /// Expired datagrams not yet reported (see [`Reassembler::take_timed_out`]).
    timed_out: Vec<TimedOut>,
    /// Datagrams evicted to make room, not yet reported: IPv4's, IPv6's.
    evicted: [usize; 2],
}

impl Reassembler {
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler {
            config,
            datagrams: Vec::new(),
            bytes: 0,
            timed_out: Vec::new(),
            evicted: [0; 2],
        }
    }

    /// Datagrams evicted for room since the last call: IPv4's, IPv6's.
    pub fn take_evicted(&mut self) -> [usize; 2] {
        std::mem::take(&mut self.evicted)
    }

    /// Counts the datagrams evicted since the last call, each under its family.
    pub fn count_evicted(&mut self, counters: &mut Counters) {
        let [v4, v6] = self.take_evicted();
        for _ in 0..v4 {
            counters.count_drop(DropReason::Ipv4ReassemblyFull);
        }
        for _ in 0..v6 {
            counters.count_drop(DropReason::Ipv6ReassemblyFull);
        }
    }

    /// Drops the datagram that would expire first, other than `keep`.
    fn evict_oldest(&mut self, keep: Option<Key>) -> bool {
        let oldest = (0..self.datagrams.len())
            .filter(|&i| Some(self.datagrams[i].key) != keep)
            .min_by_key(|&i| self.datagrams[i].expires);
        let Some(i) = oldest else { return false };
        self.evicted[self.datagrams[i].key.is_v6() as usize] += 1;
        self.discard(i);
        true
    }

    /// Datagrams in progress and payload bytes they hold.
    pub fn usage(&self) -> (usize, usize) {
        (self.datagrams.len(), self.bytes)
    }

    /// Adds one IPv4 fragment (a checked packet with MF set or a non-zero offset).
    pub fn add(&mut self, now: Instant, packet: &ipv4::Packet<'_>) -> Outcome {
        let piece = Piece {
            key: Key::V4 {
                src: packet.src(),
                dst: packet.dst(),
                protocol: packet.protocol(),
                ident: packet.ident(),
            },
            start: packet.fragment_offset(),
            more: packet.more_fragments(),
            payload: packet.payload(),
            header: &packet.as_bytes()[..packet.header_len()],
        };
        self.insert(now, piece)
    }

    /// Adds one IPv6 fragment: `packet`, whose fragment header is at
    /// `fragment_at`. Drop reasons are IPv4's names; the caller maps them.
    pub fn add_v6(
        &mut self,
        now: Instant,
        packet: &ipv6::Packet<'_>,
        fragment_at: usize,
        fragment: ipv6::FragmentHeader,
    ) -> Outcome {
        let bytes = packet.as_bytes();
        let mut header = [0u8; ipv6::HEADER_LEN];
        header.copy_from_slice(&bytes[..ipv6::HEADER_LEN]);
        header[6] = fragment.next_header;
        let piece = Piece {
            key: Key::V6 {
                src: packet.src(),
                dst: packet.dst(),
                ident: fragment.ident,
            },
            start: fragment.offset,
            more: fragment.more,
            payload: &bytes[fragment_at + ipv6::FRAGMENT_HEADER_LEN..],
            header: &header,
        };
        self.insert(now, piece)
    }

    fn insert(&mut self, now: Instant, piece: Piece<'_>) -> Outcome {
        self.expire(now);
        let Piece {
            key,
            start,
            more,
            payload,
            header,
        } = piece;
        let end = start + payload.len();
        // RFC 791, RFC 8200 §4.5: every fragment but the last carries a
        // multiple of 8 bytes.
        if more && (payload.is_empty() || payload.len() % 8 != 0) {
            return Outcome::Dropped(DropReason::Ipv4FragmentMalformed);
        }
        let max = if key.is_v6() {
            MAX_PAYLOAD_V6
        } else {
            MAX_PAYLOAD
        };
        if end > max {
            return Outcome::Dropped(DropReason::Ipv4FragmentMalformed); // "ping of death"
        }
        if !self.datagrams.iter().any(|d| d.key == key) {
            if self.datagrams.len() >= self.config.max_datagrams {
                self.evict_oldest(None);
            }
            self.datagrams.push(Datagram {
                key,
                data: Vec::new(),
                ranges: Vec::new(),
                total: None,
                expires: now
                    + match key.is_v6() {
                        true => self.config.timeout_v6,
                        false => self.config.timeout,
                    },
                first_header: None,
            });
        }
        while self.bytes + payload.len() > self.config.max_bytes {
            if !self.evict_oldest(Some(key)) {
                let index = self
                    .datagrams
                    .iter()
                    .position(|d| d.key == key)
                    .unwrap_or(0);
                self.discard(index);
                return Outcome::Dropped(DropReason::Ipv4ReassemblyFull);
            }
        }
        let index = self
            .datagrams
            .iter()
            .position(|d| d.key == key)
            .expect("eviction keeps the datagram being added to");
        let d = &mut self.datagrams[index];
        // A duplicate (already held, same bytes) is ignored; any other
        // overlap poisons the datagram.
        let covered = d.ranges.iter().any(|&(s, e)| s <= start && end <= e);
        let consistent_end = more || d.total == Some(end);
        if covered && consistent_end && d.data[start..end] == *payload {
            return Outcome::Dropped(DropReason::Ipv4FragmentDuplicate);
        }
        let overlaps = d.ranges.iter().any(|&(s, e)| start < e && s < end);
        let beyond_last = d.total.is_some_and(|t| end > t || (!more && end != t));
        let before_seen = !more && d.ranges.last().is_some_and(|&(_, e)| e > end);
        if overlaps || beyond_last || before_seen {
            self.discard(index);
            return Outcome::Dropped(DropReason::Ipv4FragmentOverlap);
        }
        if !more {
            d.total = Some(end);
        }
        if d.data.len() < end {
            d.data.resize(end, 0);
        }
        d.data[start..end].copy_from_slice(payload);
        if start == 0 {
            d.first_header = Some(header.to_vec());
        }
        let at = d.ranges.partition_point(|&(s, _)| s < start);
        d.ranges.insert(at, (start, end));
        merge_adjacent(&mut d.ranges);
        self.bytes += payload.len();
        if !d.complete() {
            return Outcome::Held;
        }
        let d = self.datagrams.swap_remove(index);
        self.bytes -= d.held();
        Outcome::Complete(rebuild(&d))
    }

    /// Drops datagrams whose time is up; returns how many.
    /// Gives up on datagrams whose time is up; returns how many. Each is
    /// also kept for [`Reassembler::take_timed_out`].
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.datagrams.len();
        let mut freed = 0;
        let timed_out = &mut self.timed_out;
        self.datagrams.retain(|d| {
            let keep = d.expires > now;
            if !keep {
                freed += d.held();
                let max_quote = match d.key.is_v6() {
                    true => icmpv6::MAX_QUOTED_LEN,
                    false => icmp::MAX_QUOTED_LEN,
                };
                let (src, dst) = match d.key {
                    Key::V4 { src, dst, .. } => (src.into(), dst.into()),
                    Key::V6 { src, dst, .. } => (src.into(), dst.into()),
                };
                timed_out.push(TimedOut {
                    src,
                    dst,
                    quote: d.first_header.as_ref().map(|header| {
                        let room = max_quote.saturating_sub(header.len());
                        let data = &d.data[..d.ranges[0].1.min(room)];
                        [header.as_slice(), data].concat()
                    }),
                });
            }
            keep
        });
        self.bytes -= freed;
        before - self.datagrams.len()
    }

    /// The datagrams given up on since the last call, oldest first.
    pub fn take_timed_out(&mut self) -> Vec<TimedOut> {
        std::mem::take(&mut self.timed_out)
    }

    /// When the oldest datagram in progress expires.
    pub fn poll_at(&self) -> Option<Instant> {
        self.datagrams.iter().map(|d| d.expires).min()
    }

    fn discard(&mut self, index: usize) {
        let d = self.datagrams.swap_remove(index);
        self.bytes -= d.held();
    }
}

/// The IPv6 name of a reason [`Reassembler::add_v6`] gives.
pub fn for_ipv6(reason: DropReason) -> DropReason {
    match reason {
        DropReason::Ipv4FragmentMalformed => DropReason::Ipv6FragmentMalformed,
        DropReason::Ipv4FragmentDuplicate => DropReason::Ipv6FragmentDuplicate,
        DropReason::Ipv4FragmentOverlap => DropReason::Ipv6FragmentOverlap,
        DropReason::Ipv4ReassemblyFull => DropReason::Ipv6ReassemblyFull,
        other => other,
    }
}

fn merge_adjacent(ranges: &mut Vec<(usize, usize)>) {
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for &(s, e) in ranges.iter() {
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    *ranges = out;
}

/// The whole datagram as one unfragmented packet, with a fresh header.
fn rebuild(d: &Datagram) -> Vec<u8> {
    let first = d
        .first_header
        .as_deref()
        .expect("a complete datagram has its fragment zero");
    match d.key {
        Key::V4 {
            src,
            dst,
            protocol,
            ident,
        } => {
            let mut packet = vec![0u8; ipv4::HEADER_LEN + d.data.len()];
            ipv4::Repr {
                src,
                dst,
                protocol,
                payload_len: d.data.len(),
                ttl: first[8],
                ident,
                dont_fragment: false,
                options: ipv4::HeaderOptions::NONE,
            }
            .emit(&mut packet);
            debug_assert_eq!(checksum::checksum(&packet[..ipv4::HEADER_LEN]), 0);
            packet[ipv4::HEADER_LEN..].copy_from_slice(&d.data);
            packet
        }
        Key::V6 { .. } => {
            let mut packet = [first, &d.data].concat();
            packet[4..6].copy_from_slice(&(d.data.len() as u16).to_be_bytes());
            packet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    fn fragment(ident: u16, payload: &[u8], offset: usize, more: bool) -> Vec<u8> {
        let mut buf = vec![0u8; ipv4::HEADER_LEN + payload.len()];
        ipv4::Repr {
            src: SRC,
            dst: DST,
            protocol: ipv4::PROTO_UDP,
            payload_len: payload.len(),
            ttl: 64,
            ident,
            dont_fragment: false,
            options: ipv4::HeaderOptions::NONE,
        }
        .emit_fragment(&mut buf, offset, more);
        buf[ipv4::HEADER_LEN..].copy_from_slice(payload);
        buf
    }

    fn add(r: &mut Reassembler, now: Instant, frag: &[u8]) -> Outcome {
        r.add(now, &ipv4::Packet::new_checked(frag).unwrap())
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    /// Splits `payload` into fragments of `size` bytes (a multiple of 8).
    fn split(ident: u16, payload: &[u8], size: usize) -> Vec<Vec<u8>> {
        payload
            .chunks(size)
            .enumerate()
            .map(|(i, c)| fragment(ident, c, i * size, (i + 1) * size < payload.len()))
            .collect()
    }

    fn payload_of(out: Outcome) -> Vec<u8> {
        match out {
            Outcome::Complete(p) => {
                let packet = ipv4::Packet::new_checked(&p).unwrap();
                assert!(packet.verify_checksum() && !packet.is_fragment());
                assert_eq!((packet.src(), packet.dst()), (SRC, DST));
                packet.payload().to_vec()
            }
            other => panic!("not complete: {other:?}"),
        }
    }

    #[test]
    fn any_order_with_duplicates() {
        let payload = data(20_000);
        let frags = split(7, &payload, 1480);
        // Reverse, interleaved, with every fragment twice.
        let mut order: Vec<usize> = (0..frags.len()).rev().collect();
        order.rotate_left(3);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let mut last = Outcome::Held;
        for (n, &i) in order.iter().enumerate() {
            last = add(&mut r, Instant::ZERO, &frags[i]);
            if n + 1 < order.len() {
                assert_eq!(last, Outcome::Held);
                assert_eq!(
                    add(&mut r, Instant::ZERO, &frags[i]),
                    Outcome::Dropped(DropReason::Ipv4FragmentDuplicate)
                );
            }
        }
        assert_eq!(payload_of(last), payload);
        assert_eq!(r.usage(), (0, 0));
    }

    #[test]
    fn overlap_discards_the_datagram() {
        let payload = data(4000);
        let frags = split(9, &payload, 1000);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert_eq!(add(&mut r, Instant::ZERO, &frags[0]), Outcome::Held);
        // Teardrop: a fragment starting inside the first one.
        let evil = fragment(9, &payload[992..2000], 992, true);
        assert_eq!(
            add(&mut r, Instant::ZERO, &evil),
            Outcome::Dropped(DropReason::Ipv4FragmentOverlap)
        );
        assert_eq!(r.usage(), (0, 0), "the whole datagram is gone");
        // The rest alone never completes it.
        for f in &frags[1..] {
            assert_eq!(add(&mut r, Instant::ZERO, f), Outcome::Held);
        }
    }

    #[test]
    fn missing_pieces_expire() {
        let payload = data(3000);
        let frags = split(11, &payload, 1000);
        let mut r = Reassembler::new(ReassemblyConfig::default());
        add(&mut r, Instant::ZERO, &frags[0]);
        add(&mut r, Instant::ZERO, &frags[2]);
        assert_eq!(r.poll_at(), Some(Instant::ZERO + Duration::from_secs(30)));
        assert_eq!(r.expire(Instant::ZERO + Duration::from_secs(29)), 0);
        assert_eq!(r.expire(Instant::ZERO + Duration::from_secs(30)), 1);
        assert_eq!(r.usage(), (0, 0));
        // Fragment zero came: its header and data are there to quote.
        let reports = r.take_timed_out();
        assert_eq!(reports.len(), 1);
        let quote = reports[0].quote.as_ref().unwrap();
        assert_eq!(quote[..], frags[0][..icmp::MAX_QUOTED_LEN]);
        assert_eq!(
            reports[0].src,
            ipv4::Packet::new_checked(&frags[0]).unwrap().src()
        );
        assert!(r.take_timed_out().is_empty());
        // The missing middle arriving late starts a new, incomplete datagram,
        // which expires (seen by the next fragment) with nothing to quote.
        let late = Instant::ZERO + Duration::from_secs(31);
        assert_eq!(add(&mut r, late, &frags[1]), Outcome::Held);
        let later = late + Duration::from_secs(30);
        assert_eq!(add(&mut r, later, &frags[2]), Outcome::Held);
        let reports = r.take_timed_out();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].quote, None);
    }

    #[test]
    fn memory_and_count_are_bounded() {
        let config = ReassemblyConfig {
            max_datagrams: 4,
            max_bytes: 10_000,
            ..Default::default()
        };
        let mut r = Reassembler::new(config);
        for ident in 0..4 {
            assert_eq!(
                add(&mut r, Instant::ZERO, &fragment(ident, &[0; 1000], 0, true)),
                Outcome::Held
            );
        }
        // A fifth datagram: the oldest gives way.
        let later = Instant::from_millis(1);
        assert_eq!(
            add(&mut r, later, &fragment(99, &[0; 8], 0, true)),
            Outcome::Held
        );
        assert_eq!((r.take_evicted(), r.usage()), ([1, 0], (4, 3008)));
        // Bytes: room is made by evicting the oldest others...
        let big = fragment(99, &[0; 8000], 8, true);
        assert_eq!(add(&mut r, later, &big), Outcome::Held);
        assert_eq!((r.take_evicted(), r.usage()), ([2, 0], (2, 9008)));
        // ...and a datagram larger than the limit by itself is dropped.
        let huge = fragment(99, &[0; 2000], 8008, true);
        assert_eq!(
            add(&mut r, later, &huge),
            Outcome::Dropped(DropReason::Ipv4ReassemblyFull)
        );
        assert_eq!((r.take_evicted(), r.usage()), ([1, 0], (0, 0)));
        // Complete datagrams still get through within the limits.
        let payload = data(2000);
        let frags = split(50, &payload, 1000);
        let mut r = Reassembler::new(config);
        add(&mut r, Instant::ZERO, &frags[1]);
        assert_eq!(payload_of(add(&mut r, Instant::ZERO, &frags[0])), payload);
    }

    #[test]
    fn malformed_fragments_are_refused() {
        let mut r = Reassembler::new(ReassemblyConfig::default());
        // Not a multiple of 8 with MF set.
        assert_eq!(
            add(&mut r, Instant::ZERO, &fragment(1, &[0; 100], 0, true)),
            Outcome::Dropped(DropReason::Ipv4FragmentMalformed)
        );
        // Past 65535 bytes in total ("ping of death").
        assert_eq!(
            add(&mut r, Instant::ZERO, &fragment(2, &[0; 100], 65520, false)),
            Outcome::Dropped(DropReason::Ipv4FragmentMalformed)
        );
        // Two different ends.
        add(&mut r, Instant::ZERO, &fragment(3, &[0; 16], 16, false));
        assert_eq!(
            add(&mut r, Instant::ZERO, &fragment(3, &[0; 16], 32, false)),
            Outcome::Dropped(DropReason::Ipv4FragmentOverlap)
        );
    }
}
