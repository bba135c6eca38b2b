//! IPv4 headers (RFC 791).

use super::checksum;
use super::{be16, ipv4_at, Error, Ipv4Addr, Result};

pub const HEADER_LEN: usize = 20;
/// The smallest MTU that carries IPv4: every module must pass a 68-octet
/// datagram unfragmented (RFC 791 §3.2).
pub const MIN_MTU: usize = 68;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IGMP: u8 = 2;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// A checked view of an IPv4 packet. The view ends at the header's total
/// length, so Ethernet padding is never taken for payload.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks version, header length and total length against the buffer.
    /// The header checksum is checked separately by [`Packet::verify_checksum`].
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if buf[0] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let header_len = ((buf[0] & 0x0f) as usize) * 4;
        let total_len = be16(buf, 2) as usize;
        if header_len < HEADER_LEN || total_len < header_len {
            return Err(Error::Malformed);
        }
        if buf.len() < total_len {
            return Err(Error::Truncated);
        }
        Ok(Packet {
            buf: &buf[..total_len],
        })
    }
    pub fn header_len(&self) -> usize {
        ((self.buf[0] & 0x0f) as usize) * 4
    }
    pub fn total_len(&self) -> usize {
        self.buf.len()
    }
    pub fn ident(&self) -> u16 {
        be16(self.buf, 4)
    }
    pub fn dont_fragment(&self) -> bool {
        self.buf[6] & 0x40 != 0
    }
    pub fn more_fragments(&self) -> bool {
        self.buf[6] & 0x20 != 0
    }
    /// Fragment offset in bytes.
    pub fn fragment_offset(&self) -> usize {
        ((be16(self.buf, 6) & 0x1fff) as usize) * 8
    }
    /// A fragment of a larger datagram (RFC 791 §3.2: MF set or a non-zero offset).
    pub fn is_fragment(&self) -> bool {
        self.more_fragments() || self.fragment_offset() != 0
    }
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }
    pub fn src(&self) -> Ipv4Addr {
        ipv4_at(self.buf, 12)
    }
    pub fn dst(&self) -> Ipv4Addr {
        ipv4_at(self.buf, 16)
    }
    /// RFC 791 §3.1: the checksum covers the header only, options included.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buf[..self.header_len()]) == 0
    }
    /// The whole packet, header included, up to the total length.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// The payload after the header and any options (options are skipped, not interpreted).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..]
    }
    /// The option bytes between the fixed header and the payload.
    pub fn options(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..self.header_len()]
    }
}

/// RFC 791 §3.1 option types.
pub const OPTION_END: u8 = 0;
pub const OPTION_NOP: u8 = 1;
pub const OPTION_RECORD_ROUTE: u8 = 7;
/// Options fill at most 40 bytes (a 60-byte header).
pub const MAX_OPTIONS_LEN: usize = 40;

/// The Record Route option (RFC 791 §3.1) among `options`, as its bytes
/// (type, length, pointer, route data), if present and well formed.
pub fn record_route(options: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at < options.len() {
        match options[at] {
            OPTION_END => return None,
            OPTION_NOP => at += 1,
            kind => {
                let len = *options.get(at + 1)? as usize;
                let option = options.get(at..at + len).filter(|_| len >= 2)?;
                if kind == OPTION_RECORD_ROUTE {
                    // The pointer (1-based) names the next free slot: at least
                    // 4, on a slot boundary, at most one past the end.
                    let pointer = *option.get(2)? as usize;
                    let valid = len >= 3 && pointer >= 4 && (pointer - 4) % 4 == 0;
                    return (valid && pointer <= len + 1).then_some(option);
                }
                at += len;
            }
        }
    }
    None
}

/// Header options for an outgoing packet, padded to a multiple of 4 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderOptions {
    bytes: [u8; MAX_OPTIONS_LEN],
    len: u8,
}

impl HeaderOptions {
    pub const NONE: HeaderOptions = HeaderOptions {
        bytes: [0; MAX_OPTIONS_LEN],
        len: 0,
    };

    /// A Record Route option copied from a received one with `address`
    /// recorded in its next free slot, if any (RFC 791 §3.1: a full route
    /// is passed on unchanged).
    pub fn record_route_with(received: &[u8], address: Ipv4Addr) -> HeaderOptions {
        let mut o = HeaderOptions::NONE;
        let n = received.len().min(MAX_OPTIONS_LEN);
        o.bytes[..n].copy_from_slice(&received[..n]);
        let pointer = o.bytes[2] as usize;
        if pointer + 3 <= n {
            o.bytes[pointer - 1..pointer + 3].copy_from_slice(&address.octets());
            o.bytes[2] = (pointer + 4) as u8;
        }
        o.len = n.div_ceil(4) as u8 * 4; // padded with END
        o
    }
    /// Router Alert (RFC 2113), which IGMP messages carry (RFC 2236 §2).
    pub const ROUTER_ALERT: HeaderOptions = {
        let mut bytes = [0; MAX_OPTIONS_LEN];
        bytes[0] = 0x94;
        bytes[1] = 4;
        HeaderOptions { bytes, len: 4 }
    };

    pub fn len(&self) -> usize {
        self.len as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len()]
    }
}

/// The fields of an outgoing IPv4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
    pub ident: u16,
    /// DF (RFC 791 §3.1): routers drop the packet rather than fragment it,
    /// and say so with ICMP; path MTU discovery rests on it (RFC 1191).
    pub dont_fragment: bool,
    pub options: HeaderOptions,
}

pub const DEFAULT_TTL: u8 = 64;

impl Repr {
    /// A header with the default TTL, DF clear and no options.
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload_len: usize, ident: u16) -> Self {
        Repr {
            src,
            dst,
            protocol,
            payload_len,
            ttl: DEFAULT_TTL,
            ident,
            dont_fragment: false,
            options: HeaderOptions::NONE,
        }
    }

    /// The header's length with its options.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Writes the header with the checksum filled in.
    pub fn emit(&self, buf: &mut [u8]) {
        self.emit_fragment(buf, 0, false);
    }

    /// Writes the header of one fragment (RFC 791 §3.2): `payload_len` is the
    /// fragment's, `offset` (a multiple of 8) where it starts in the datagram,
    /// `more` whether fragments follow.
    pub fn emit_fragment(&self, buf: &mut [u8], offset: usize, more: bool) {
        debug_assert!(offset % 8 == 0 && offset / 8 <= 0x1fff);
        let header_len = self.header_len();
        let total = (header_len + self.payload_len) as u16;
        let df = if self.dont_fragment { 0x4000 } else { 0 };
        let flags_offset = ((offset / 8) as u16 & 0x1fff) | if more { 0x2000 } else { 0 } | df;
        buf[0] = 0x40 | (header_len / 4) as u8;
        buf[1] = 0;
        buf[2..4].copy_from_slice(&total.to_be_bytes());
        buf[4..6].copy_from_slice(&self.ident.to_be_bytes());
        buf[6..8].copy_from_slice(&flags_offset.to_be_bytes());
        buf[8] = self.ttl;
        buf[9] = self.protocol;
        buf[10..12].copy_from_slice(&[0, 0]);
        buf[12..16].copy_from_slice(&self.src.octets());
        buf[16..20].copy_from_slice(&self.dst.octets());
        buf[HEADER_LEN..header_len].copy_from_slice(self.options.as_bytes());
        let c = checksum::checksum(&buf[..header_len]);
        buf[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Repr {
        Repr::new(
            Ipv4Addr::new(10, 77, 0, 2),
            Ipv4Addr::new(10, 77, 0, 1),
            PROTO_UDP,
            4,
            0x1234,
        )
    }

    #[test]
    fn dont_fragment_and_record_route_are_written_and_read() {
        let hop = Ipv4Addr::new(10, 77, 0, 9);
        // A 9-slot route (39 bytes) with one hop recorded already.
        let mut received = vec![OPTION_RECORD_ROUTE, 39, 8];
        received.extend_from_slice(&hop.octets());
        received.resize(39, 0);
        let options = [&[OPTION_NOP][..], &received].concat();
        assert_eq!(record_route(&options), Some(&received[..]));
        let me = Ipv4Addr::new(10, 77, 0, 2);
        let repr = Repr {
            dont_fragment: true,
            options: HeaderOptions::record_route_with(&received, me),
            ..sample()
        };
        assert_eq!(repr.header_len(), 60);
        let mut buf = [0u8; 64];
        repr.emit(&mut buf);
        let p = Packet::new_checked(&buf).unwrap();
        assert!(p.verify_checksum() && p.dont_fragment() && !p.is_fragment());
        assert_eq!(p.payload().len(), 4);
        let route = record_route(p.options()).unwrap();
        assert_eq!(route[2], 12, "the pointer moved past our slot");
        assert_eq!(&route[3..11], &[hop.octets(), me.octets()].concat()[..]);
        // A full route stays as it was; bad pointers and lengths are refused.
        let mut full = received.clone();
        full[2] = 40;
        let o = HeaderOptions::record_route_with(&full, me);
        assert_eq!(&o.as_bytes()[..39], &full[..]);
        for bad in [
            vec![OPTION_RECORD_ROUTE, 39, 5],
            vec![OPTION_RECORD_ROUTE, 39, 8],
            vec![OPTION_RECORD_ROUTE, 1],
            vec![OPTION_RECORD_ROUTE, 7, 44, 0, 0, 0, 0],
            vec![68, 0, 5],
        ] {
            assert_eq!(record_route(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn round_trip_and_padding_trimmed() {
        let mut buf = [0u8; 30];
        sample().emit(&mut buf);
        buf[20..24].copy_from_slice(b"abcd");
        let p = Packet::new_checked(&buf).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(
            (p.src(), p.dst(), p.protocol(), p.ttl(), p.ident()),
            (sample().src, sample().dst, 17, 64, 0x1234)
        );
        assert_eq!(p.payload(), b"abcd");
        assert!(!p.is_fragment());
    }

    #[test]
    fn options_are_skipped() {
        let mut buf = [0u8; 28];
        sample().emit(&mut buf);
        // Rewrite as a 24-byte header with one NOP option row.
        buf.copy_within(20..24, 24);
        buf[0] = 0x46;
        buf[2..4].copy_from_slice(&28u16.to_be_bytes());
        buf[20..24].copy_from_slice(&[1, 1, 1, 0]);
        buf[10..12].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&buf[..24]);
        buf[10..12].copy_from_slice(&c.to_be_bytes());
        let p = Packet::new_checked(&buf).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn rejects_bad_input() {
        let mut buf = [0u8; 24];
        sample().emit(&mut buf);
        assert_eq!(
            Packet::new_checked(&buf[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&buf[..23]).unwrap_err(),
            Error::Truncated
        );
        let mut v6 = buf;
        v6[0] = 0x65;
        assert_eq!(Packet::new_checked(&v6).unwrap_err(), Error::Malformed);
        let mut short_ihl = buf;
        short_ihl[0] = 0x44;
        assert_eq!(
            Packet::new_checked(&short_ihl).unwrap_err(),
            Error::Malformed
        );
        let mut bad_total = buf;
        bad_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&bad_total).unwrap_err(),
            Error::Malformed
        );
        let mut corrupt = buf;
        corrupt[8] ^= 1;
        assert!(!Packet::new_checked(&corrupt).unwrap().verify_checksum());
    }

    #[test]
    fn fragments_are_recognised() {
        let mut buf = [0u8; 24];
        sample().emit(&mut buf);
        buf[6] = 0x20; // MF
        assert!(Packet::new_checked(&buf).unwrap().is_fragment());
        buf[6] = 0x00;
        buf[7] = 0x03; // offset 24
        let p = Packet::new_checked(&buf).unwrap();
        assert!(p.is_fragment());
        assert_eq!(p.fragment_offset(), 24);
    }
}
