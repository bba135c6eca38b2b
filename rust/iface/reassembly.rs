//! IPv4 reassembly (RFC 791 §3.2, RFC 815): fragments are gathered per
//! (source, destination, protocol, identification) until the datagram is
//! whole. Bounded in time (a datagram not complete within the timeout is
//! dropped), in datagrams and in bytes held; a fragment that overlaps one
//! already held (other than an exact duplicate) discards the whole datagram,
//! as RFC 5722 does for IPv6, so that no teardrop-style overlap is ever
//! resolved one way or the other. When full, the oldest datagram gives way
//! to the newcomer (as Linux's evictor does): fragment trains that never
//! complete cannot lock reassembly out for a whole timeout.

use super::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::{checksum, icmp, ipv4, Ipv4Addr};

#[derive(Debug, Clone, Copy)]
pub struct ReassemblyConfig {
    /// RFC 791 suggests 15 s upward; Linux uses 30 s (ipfrag_time).
    pub timeout: Duration,
    /// Datagrams being reassembled at once.
    pub max_datagrams: usize,
    /// Payload bytes held across all of them (Linux: ipfrag_high_thresh 4 MiB).
    pub max_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            timeout: Duration::from_secs(30),
            max_datagrams: 64,
            max_bytes: 4 << 20,
        }
    }
}

/// The largest IPv4 payload: the total length field is 16 bits.
const MAX_PAYLOAD: usize = 65535 - ipv4::HEADER_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    ident: u16,
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
    ttl: u8,
    expires: Instant,
    /// The IPv4 header of fragment zero, once it arrived: what a time
    /// exceeded message quotes.
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
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// Fragment zero's header and the data after it, if fragment zero came:
    /// RFC 1122 §3.3.2 then asks for an ICMP time exceeded to the source.
    pub quote: Option<Vec<u8>>,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Held; the datagram is not whole yet.
    Held,
    /// The datagram is whole: a complete IPv4 packet, header rebuilt.
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
    /// Datagrams evicted to make room, not yet reported.
    evicted: usize,
}

impl Reassembler {
    pub fn new(config: ReassemblyConfig) -> Self {
        Reassembler {
            config,
            datagrams: Vec::new(),
            bytes: 0,
            timed_out: Vec::new(),
            evicted: 0,
        }
    }

    /// Datagrams evicted for room since the last call.
    pub fn take_evicted(&mut self) -> usize {
        std::mem::take(&mut self.evicted)
    }

    /// Drops the datagram that would expire first, other than `keep`.
    fn evict_oldest(&mut self, keep: Option<Key>) -> bool {
        let oldest = (0..self.datagrams.len())
            .filter(|&i| Some(self.datagrams[i].key) != keep)
            .min_by_key(|&i| self.datagrams[i].expires);
        let Some(i) = oldest else { return false };
        self.discard(i);
        self.evicted += 1;
        true
    }

    /// Datagrams in progress and payload bytes they hold.
    pub fn usage(&self) -> (usize, usize) {
        (self.datagrams.len(), self.bytes)
    }

    /// Adds one fragment (a checked packet with MF set or a non-zero offset).
    pub fn add(&mut self, now: Instant, packet: &ipv4::Packet<'_>) -> Outcome {
        self.expire(now);
        let payload = packet.payload();
        let (start, more) = (packet.fragment_offset(), packet.more_fragments());
        let end = start + payload.len();
        // RFC 791: every fragment but the last carries a multiple of 8 bytes.
        if more && (payload.is_empty() || payload.len() % 8 != 0) {
            return Outcome::Dropped(DropReason::Ipv4FragmentMalformed);
        }
        if end > MAX_PAYLOAD {
            return Outcome::Dropped(DropReason::Ipv4FragmentMalformed); // "ping of death"
        }
        let key = Key {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            ident: packet.ident(),
        };
        if !self.datagrams.iter().any(|d| d.key == key) {
            if self.datagrams.len() >= self.config.max_datagrams {
                self.evict_oldest(None);
            }
            self.datagrams.push(Datagram {
                key,
                data: Vec::new(),
                ranges: Vec::new(),
                total: None,
                ttl: packet.ttl(),
                expires: now + self.config.timeout,
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
            d.first_header = Some(packet.as_bytes()[..packet.header_len()].to_vec());
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
                timed_out.push(TimedOut {
                    src: d.key.src,
                    dst: d.key.dst,
                    quote: d.first_header.as_ref().map(|header| {
                        let room = icmp::MAX_QUOTED_LEN.saturating_sub(header.len());
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
    let mut packet = vec![0u8; ipv4::HEADER_LEN + d.data.len()];
    ipv4::Repr {
        src: d.key.src,
        dst: d.key.dst,
        protocol: d.key.protocol,
        payload_len: d.data.len(),
        ttl: d.ttl,
        ident: d.key.ident,
        dont_fragment: false,
        options: ipv4::HeaderOptions::NONE,
    }
    .emit(&mut packet);
    debug_assert_eq!(checksum::checksum(&packet[..ipv4::HEADER_LEN]), 0);
    packet[ipv4::HEADER_LEN..].copy_from_slice(&d.data);
    packet
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
        assert_eq!((r.take_evicted(), r.usage()), (1, (4, 3008)));
        // Bytes: room is made by evicting the oldest others...
        let big = fragment(99, &[0; 8000], 8, true);
        assert_eq!(add(&mut r, later, &big), Outcome::Held);
        assert_eq!((r.take_evicted(), r.usage()), (2, (2, 9008)));
        // ...and a datagram larger than the limit by itself is dropped.
        let huge = fragment(99, &[0; 2000], 8008, true);
        assert_eq!(
            add(&mut r, later, &huge),
            Outcome::Dropped(DropReason::Ipv4ReassemblyFull)
        );
        assert_eq!((r.take_evicted(), r.usage()), (1, (0, 0)));
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
