//! ICMPv6 (RFC 4443): the header, echo, and error messages. Neighbor
//! discovery is in `ndp.rs`, multicast listener discovery in `mld.rs`.

use super::checksum;
use super::ipv6::{self, Ipv6Addr};
use super::{be16, Error, Result};

pub const HEADER_LEN: usize = 8;

pub const TYPE_DEST_UNREACHABLE: u8 = 1;
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
pub const TYPE_TIME_EXCEEDED: u8 = 3;
pub const TYPE_PARAMETER_PROBLEM: u8 = 4;
pub const TYPE_ECHO_REQUEST: u8 = 128;
pub const TYPE_ECHO_REPLY: u8 = 129;

/// Destination unreachable, code 4: port unreachable (RFC 4443 §3.1).
pub const CODE_PORT_UNREACHABLE: u8 = 4;
/// Parameter problem codes (RFC 4443 §3.4).
pub const CODE_ERRONEOUS_HEADER: u8 = 0;
pub const CODE_UNRECOGNIZED_NEXT_HEADER: u8 = 1;
pub const CODE_UNRECOGNIZED_OPTION: u8 = 2;
/// RFC 7112 §5: the first fragment does not hold the whole header chain.
pub const CODE_INCOMPLETE_CHAIN: u8 = 3;

/// RFC 4443 §2.4 (c): an error carries as much of the offending packet as
/// fits in the minimum MTU (1280, less the IPv6 and ICMPv6 headers).
pub const MAX_QUOTED_LEN: usize = ipv6::MIN_MTU - ipv6::HEADER_LEN - HEADER_LEN;

/// A checked view of an ICMPv6 message.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the length and the checksum, which covers the IPv6
    /// pseudo-header (RFC 4443 §2.3).
    pub fn new_checked(buf: &'a [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let pseudo = checksum::pseudo_header_v6(src, dst, ipv6::NEXT_ICMPV6, buf.len() as u32);
        if checksum::fold(checksum::accumulate(pseudo, buf)) != 0xffff {
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
    pub fn echo_ident(&self) -> u16 {
        be16(self.buf, 4)
    }
    pub fn echo_seq(&self) -> u16 {
        be16(self.buf, 6)
    }
    /// The 32 bits after the checksum: a Packet Too Big's MTU, a Parameter
    /// Problem's pointer (RFC 4443 §3.2, §3.4).
    pub fn parameter(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }
    /// The whole message, header included (NDP and MLD parse it further).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// What follows the 8-byte header.
    pub fn data(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// Fills in the checksum of the ICMPv6 message that is the whole of `buf`.
pub fn fill_checksum(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
    buf[2..4].fill(0);
    let pseudo = checksum::pseudo_header_v6(src, dst, ipv6::NEXT_ICMPV6, buf.len() as u32);
    let c = !checksum::fold(checksum::accumulate(pseudo, buf));
    buf[2..4].copy_from_slice(&c.to_be_bytes());
}

/// An echo reply (RFC 4443 §4.2) or request, for emitting.
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
    /// Writes the message into `buf` (exactly [`Echo::len`] bytes), checksum included.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        buf[0] = if self.reply {
            TYPE_ECHO_REPLY
        } else {
            TYPE_ECHO_REQUEST
        };
        buf[1] = 0;
        buf[4..6].copy_from_slice(&self.ident.to_be_bytes());
        buf[6..8].copy_from_slice(&self.seq.to_be_bytes());
        buf[HEADER_LEN..].copy_from_slice(self.data);
        fill_checksum(buf, src, dst);
    }
}

/// An error message quoting the start of the offending packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorMessage<'a> {
    pub msg_type: u8,
    pub code: u8,
    /// The pointer of a parameter problem, the MTU of a packet too big, else 0.
    pub parameter: u32,
    /// The offending IPv6 packet, header first; cut to [`MAX_QUOTED_LEN`].
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
    /// Writes the message into `buf` (exactly [`ErrorMessage::len`] bytes).
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        buf[0] = self.msg_type;
        buf[1] = self.code;
        buf[4..8].copy_from_slice(&self.parameter.to_be_bytes());
        buf[HEADER_LEN..].copy_from_slice(self.quoted());
        fill_checksum(buf, src, dst);
    }
}

/// RFC 4443 §2.4 (e): errors are never answered with errors, and the
/// informational messages (type 128 and up) may be.
pub fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (Ipv6Addr, Ipv6Addr) {
        ("fe80::1".parse().unwrap(), "fe80::2".parse().unwrap())
    }

    #[test]
    fn echo_round_trip() {
        let (a, b) = addrs();
        let echo = Echo {
            reply: true,
            ident: 7,
            seq: 9,
            data: b"hello",
        };
        let mut buf = vec![0u8; echo.len()];
        echo.emit(&mut buf, a, b);
        let p = Packet::new_checked(&buf, a, b).unwrap();
        assert_eq!(
            (
                p.msg_type(),
                p.code(),
                p.echo_ident(),
                p.echo_seq(),
                p.data()
            ),
            (TYPE_ECHO_REPLY, 0, 7, 9, &b"hello"[..])
        );
        // The pseudo-header counts: the same bytes between other addresses fail.
        assert_eq!(
            Packet::new_checked(&buf, b, b).unwrap_err(),
            Error::Checksum
        );
        assert_eq!(
            Packet::new_checked(&buf[..7], a, b).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn errors_quote_at_most_the_minimum_mtu() {
        let (a, b) = addrs();
        let original = [0x60u8; 1500];
        let m = ErrorMessage {
            msg_type: TYPE_PARAMETER_PROBLEM,
            code: CODE_UNRECOGNIZED_NEXT_HEADER,
            parameter: 6,
            original: &original,
        };
        let mut buf = vec![0u8; m.len()];
        m.emit(&mut buf, a, b);
        assert_eq!(buf.len() + ipv6::HEADER_LEN, ipv6::MIN_MTU);
        let p = Packet::new_checked(&buf, a, b).unwrap();
        assert_eq!(
            (p.msg_type(), p.code(), &p.data()[..4]),
            (4, 1, &[0x60u8; 4][..])
        );
        assert_eq!(&buf[4..8], &[0, 0, 0, 6]);
        assert!(is_error(TYPE_PARAMETER_PROBLEM) && !is_error(TYPE_ECHO_REQUEST));
    }
}
