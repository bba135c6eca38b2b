//! The Internet checksum (RFC 1071): one's complement sum of 16-bit words.

use super::ipv6::Ipv6Addr;
use super::Ipv4Addr;

/// Adds `data` to a running 32-bit accumulator (unfolded).
pub fn accumulate(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Summing 32-bit halves into a u64 defers carries; folding later is exact (RFC 1071 §2).
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
        acc += u32::from_be_bytes([c[4], c[5], c[6], c[7]]) as u64;
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc += u16::from_be_bytes([p[0], p[1]]) as u64;
    }
    if let [last] = pairs.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

/// Adds the bytes of `parts`, one after the other, as if they were one
/// slice: a part that starts at an odd offset has its sum byte-swapped
/// (RFC 1071 §2(B): the sum does not depend on byte order).
pub fn accumulate_parts(mut acc: u64, parts: &[&[u8]]) -> u64 {
    let mut odd = false;
    for part in parts {
        let sum = fold(accumulate(0, part));
        acc += if odd { sum.swap_bytes() } else { sum } as u64;
        odd ^= part.len() % 2 == 1;
    }
    acc
}

/// Folds an accumulator into the 16-bit one's complement sum.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data` (the complement of the folded sum).
pub fn checksum(data: &[u8]) -> u16 {
    !fold(accumulate(0, data))
}

/// The accumulator for the IPv4 pseudo-header of UDP and TCP (RFC 768, RFC 9293 §3.1).
pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u64 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc + protocol as u64 + length as u64
}

/// The accumulator for the IPv6 pseudo-header of ICMPv6, UDP and TCP
/// (RFC 8200 §8.1): both addresses, the upper-layer length and next header.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, length: u32) -> u64 {
    let mut acc = accumulate(0, &src.octets());
    acc = accumulate(acc, &dst.octets());
    acc + u64::from(length) + u64::from(next_header)
}

/// An address family's pseudo-header, for code that checksums TCP over either.
pub trait PseudoHeader: Copy {
    /// The accumulator for a segment of `length` bytes of `protocol` from `src` to `dst`.
    fn pseudo_header(src: Self, dst: Self, protocol: u8, length: usize) -> u64;
}

impl PseudoHeader for Ipv4Addr {
    fn pseudo_header(src: Self, dst: Self, protocol: u8, length: usize) -> u64 {
        pseudo_header(src, dst, protocol, length as u16)
    }
}

impl PseudoHeader for Ipv6Addr {
    fn pseudo_header(src: Self, dst: Self, protocol: u8, length: usize) -> u64 {
        pseudo_header_v6(src, dst, protocol, length as u32)
    }
}

/// Completes a partial checksum in place, as a NIC would on the way out:
/// the one's-complement sum from `start` to the end, which the field
/// (holding the pseudo-header sum) is part of. For recordings and fault
/// injection, which must see what a wire would carry. A frame too short
/// for the offsets is left alone (the engine then drops it, counted).
/// The sum runs to the end of `frame`: it must carry no Ethernet padding,
/// which frames from the host's own kernel never do.
pub fn finish_partial(frame: &mut [u8], start: u16, offset: u16) {
    let (start, field) = (start as usize, start as usize + offset as usize);
    if field + 2 > frame.len() {
        return;
    }
    let value = checksum(&frame[start..]);
    frame[field..field + 2].copy_from_slice(&value.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the sum of these words is 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(accumulate(0, &data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_and_verification() {
        let mut data = vec![
            0x45, 0x00, 0x00, 0x1c, 0xab, 0xcd, 0x00, 0x00, 0x40, 0x11, 0, 0, 10, 0, 0, 1, 10, 0,
            0, 2,
        ];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&data), 0);
        assert_eq!(fold(accumulate(0, &[0xab])), 0xab00);
    }

    #[test]
    fn parts_sum_as_their_concatenation() {
        let data: Vec<u8> = (0..301u32).map(|i| (i * 37 + 11) as u8).collect();
        let whole = fold(accumulate(7, &data));
        for (i, j) in [
            (0, 0),
            (1, 2),
            (3, 3),
            (10, 151),
            (150, 300),
            (301, 301),
            (2, 299),
        ] {
            let parts = [&data[..i], &data[i..j], &data[j..]];
            assert_eq!(
                fold(accumulate_parts(7, &parts)),
                whole,
                "split at {i}, {j}"
            );
        }
    }

    #[test]
    fn a_partial_checksum_finished_verifies() {
        let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        // Two bytes of "link header", then a UDP datagram (odd length).
        let mut frame = vec![
            0xee, 0xee, 0x12, 0x34, 0x00, 0x35, 0, 11, 0, 0, b'a', b'b', b'c',
        ];
        let pseudo = fold(pseudo_header(src, dst, 17, 11));
        frame[8..10].copy_from_slice(&pseudo.to_be_bytes());
        finish_partial(&mut frame, 2, 6);
        let acc = pseudo_header(src, dst, 17, 11);
        assert_eq!(fold(accumulate(acc, &frame[2..])), 0xffff);
        // Offsets past the end: left alone.
        let before = frame.clone();
        finish_partial(&mut frame, 2, 200);
        assert_eq!(frame, before);
    }
}
