//! UDP (RFC 768).

use super::checksum;
use super::ipv4::PROTO_UDP;
use super::ipv6::Ipv6Addr;
use super::{be16, Error, Ipv4Addr, Result};

pub const HEADER_LEN: usize = 8;

/// A checked view of a UDP datagram, ending at the length field.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    buf: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Checks the length field against the buffer and, when the checksum is
    /// not zero (RFC 768: zero means "not computed"), the checksum with the pseudo-header.
    pub fn new_checked(buf: &'a [u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<Self> {
        let datagram = Self::new_unverified(buf)?;
        let buf = datagram.buf;
        if be16(buf, 6) != 0 {
            let acc = checksum::pseudo_header(src, dst, PROTO_UDP, buf.len() as u16);
            if checksum::fold(checksum::accumulate(acc, buf)) != 0xffff {
                return Err(Error::Checksum);
            }
        }
        Ok(datagram)
    }

    /// Checks the length and the checksum over IPv6, where it is mandatory
    /// (RFC 8200 §8.1: a zero checksum is discarded).
    pub fn new_checked_v6(buf: &'a [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Self> {
        let datagram = Self::new_unverified(buf)?;
        let buf = datagram.buf;
        let acc = checksum::pseudo_header_v6(src, dst, PROTO_UDP, buf.len() as u32);
        if be16(buf, 6) == 0 || checksum::fold(checksum::accumulate(acc, buf)) != 0xffff {
            return Err(Error::Checksum);
        }
        Ok(datagram)
    }

    /// Checks the length only: for a datagram whose checksum the host's
    /// kernel vouches for (see `iface::RxChecksum`).
    pub fn new_unverified(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = be16(buf, 4) as usize;
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > buf.len() {
            return Err(Error::Truncated);
        }
        Ok(Datagram { buf: &buf[..len] })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// The fields of an outgoing UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl Repr {
    /// Writes the header into `buf[..8]`, over a payload already in
    /// `buf[8..8 + payload_len]`, and computes the checksum over both.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = (HEADER_LEN + payload_len) as u16;
        let acc = checksum::pseudo_header(src, dst, PROTO_UDP, len);
        self.emit_with(buf, len, acc);
    }

    /// As [`Repr::emit`], with the IPv6 pseudo-header (RFC 8200 §8.1).
    pub fn emit_v6(&self, buf: &mut [u8], payload_len: usize, src: Ipv6Addr, dst: Ipv6Addr) {
        let len = (HEADER_LEN + payload_len) as u16;
        let acc = checksum::pseudo_header_v6(src, dst, PROTO_UDP, u32::from(len));
        self.emit_with(buf, len, acc);
    }

    fn emit_with(&self, buf: &mut [u8], len: u16, pseudo_header: u64) {
        buf[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[4..6].copy_from_slice(&len.to_be_bytes());
        buf[6..8].copy_from_slice(&[0, 0]);
        let mut c = !checksum::fold(checksum::accumulate(pseudo_header, &buf[..len as usize]));
        if c == 0 {
            c = 0xffff; // RFC 768: a computed zero is sent as all ones.
        }
        buf[6..8].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_ipv6_the_checksum_is_required() {
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fe80::1".parse().unwrap(), "fe80::2".parse().unwrap());
        let mut buf = [0u8; 13];
        buf[8..].copy_from_slice(b"hello");
        let repr = Repr {
            src_port: 5353,
            dst_port: 9,
        };
        repr.emit_v6(&mut buf, 5, a, b);
        let d = Datagram::new_checked_v6(&buf, a, b).unwrap();
        assert_eq!(
            (d.src_port(), d.dst_port(), d.payload()),
            (5353, 9, &b"hello"[..])
        );
        assert_eq!(
            Datagram::new_checked_v6(&buf, a, a).unwrap_err(),
            Error::Checksum
        );
        buf[6..8].fill(0);
        assert_eq!(
            Datagram::new_checked_v6(&buf, a, b).unwrap_err(),
            Error::Checksum
        );
    }

    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

    fn sample() -> [u8; 13] {
        let mut buf = [0u8; 13];
        buf[8..].copy_from_slice(b"hello");
        Repr {
            src_port: 68,
            dst_port: 67,
        }
        .emit(&mut buf, 5, A, B);
        buf
    }

    #[test]
    fn round_trip() {
        let buf = sample();
        let d = Datagram::new_checked(&buf, A, B).unwrap();
        assert_eq!(
            (d.src_port(), d.dst_port(), d.payload()),
            (68, 67, &b"hello"[..])
        );
    }

    #[test]
    fn rejects_bad_input() {
        let buf = sample();
        assert_eq!(
            Datagram::new_checked(&buf[..7], A, B).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Datagram::new_checked(&buf[..12], A, B).unwrap_err(),
            Error::Truncated
        );
        // Wrong pseudo-header: the datagram was meant for someone else.
        assert_eq!(
            Datagram::new_checked(&buf, A, A).unwrap_err(),
            Error::Checksum
        );
        let mut short = buf;
        short[4..6].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(
            Datagram::new_checked(&short, A, B).unwrap_err(),
            Error::Malformed
        );
        let mut unchecked = buf;
        unchecked[6..8].copy_from_slice(&[0, 0]);
        unchecked[12] = b'!';
        assert_eq!(
            Datagram::new_checked(&unchecked, A, B).unwrap().payload(),
            b"hell!"
        );
    }
}
