//! ICMP for IPv4 (RFC 792): echo request and reply, and the generic header.

use super::checksum;
use super::{be16, Error, Result};

pub const HEADER_LEN: usize = 8;

pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;

/// A checked view of an ICMP message.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the length and the checksum (RFC 792: over the whole message).
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if checksum::checksum(buf) != 0 {
            return Err(Error::Checksum);
        }
        Ok(Packet { buf })
    }
    pub fn msg_type(&self) -> u8 {
        self.buf[0]
    }
    pub fn code(&self) -> u8 {
        self.buf[1]
    }
    /// Identifier of an echo message.
    pub fn echo_ident(&self) -> u16 {
        be16(self.buf, 4)
    }
    /// Sequence number of an echo message.
    pub fn echo_seq(&self) -> u16 {
        be16(self.buf, 6)
    }
    /// The next-hop MTU of a "fragmentation needed" message (RFC 1191 §4:
    /// the low 16 bits of the otherwise unused word).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buf, 6)
    }
    /// What follows the 8-byte header: echo data, or the quoted datagram of an error.
    pub fn data(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// An echo request or reply, for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo<'a> {
    pub reply: bool,
    pub ident: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

impl Echo<'_> {
    pub fn len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Writes the message, checksum included, into the first [`Echo::len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = if self.reply {
            TYPE_ECHO_REPLY
        } else {
            TYPE_ECHO_REQUEST
        };
        buf[1] = 0;
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..6].copy_from_slice(&self.ident.to_be_bytes());
        buf[6..8].copy_from_slice(&self.seq.to_be_bytes());
        buf[HEADER_LEN..self.len()].copy_from_slice(self.data);
        let c = checksum::checksum(&buf[..self.len()]);
        buf[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trip() {
        let echo = Echo {
            reply: false,
            ident: 7,
            seq: 9,
            data: b"hello",
        };
        let mut buf = [0u8; 13];
        echo.emit(&mut buf);
        let p = Packet::new_checked(&buf).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), p.echo_ident(), p.echo_seq()),
            (TYPE_ECHO_REQUEST, 0, 7, 9)
        );
        assert_eq!(p.data(), b"hello");
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(
            Packet::new_checked(&[8, 0, 0]).unwrap_err(),
            Error::Truncated
        );
        let mut buf = [0u8; 12];
        Echo {
            reply: true,
            ident: 1,
            seq: 2,
            data: b"abcd",
        }
        .emit(&mut buf);
        buf[11] ^= 0xff;
        assert_eq!(Packet::new_checked(&buf).unwrap_err(), Error::Checksum);
    }
}

/// Code 3 of destination unreachable: port unreachable (RFC 792).
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Code 4: fragmentation needed and DF set (RFC 792; the MTU per RFC 1191 §4).
pub const CODE_FRAGMENTATION_NEEDED: u8 = 4;
/// RFC 1812 §4.3.2.3: an error carries as much of the offending datagram as
/// fits in 576 bytes (IP header 20 + ICMP header 8 leave 548).
pub const MAX_QUOTED_LEN: usize = 548;

/// Type 11, time exceeded (RFC 792); code 1: fragment reassembly time exceeded.
pub const TYPE_TIME_EXCEEDED: u8 = 11;
pub const CODE_REASSEMBLY_TIME_EXCEEDED: u8 = 1;

/// An error message (destination unreachable, time exceeded) quoting the
/// start of `original`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorMessage<'a> {
    pub msg_type: u8,
    pub code: u8,
    /// The next-hop MTU of a "fragmentation needed" (0 otherwise).
    pub next_hop_mtu: u16,
    /// The offending IPv4 packet, header first; cut to [`MAX_QUOTED_LEN`].
    pub original: &'a [u8],
}

impl ErrorMessage<'_> {
    fn quoted(&self) -> &[u8] {
        &self.original[..self.original.len().min(MAX_QUOTED_LEN)]
    }
    pub fn len(&self) -> usize {
        HEADER_LEN + self.quoted().len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn emit(&self, buf: &mut [u8]) {
        let len = self.len();
        buf[0] = self.msg_type;
        buf[1] = self.code;
        buf[2..6].fill(0);
        buf[6..8].copy_from_slice(&self.next_hop_mtu.to_be_bytes());
        buf[HEADER_LEN..len].copy_from_slice(self.quoted());
        let c = checksum::checksum(&buf[..len]);
        buf[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

#[cfg(test)]
mod unreachable_tests {
    use super::*;

    #[test]
    fn quotes_and_checksums() {
        let original = [0x45u8; 600];
        let m = ErrorMessage {
            msg_type: TYPE_DEST_UNREACHABLE,
            code: CODE_PORT_UNREACHABLE,
            next_hop_mtu: 0,
            original: &original,
        };
        let mut buf = vec![0u8; m.len()];
        m.emit(&mut buf);
        assert_eq!(buf.len(), 8 + 548);
        let p = Packet::new_checked(&buf).unwrap();
        assert_eq!((p.msg_type(), p.code()), (TYPE_DEST_UNREACHABLE, 3));
        assert_eq!(p.data(), &original[..548]);
    }
}
