//! Ethernet II framing (IEEE 802.3 with an EtherType).

use super::{be16, Error, MacAddress, Result};

pub const HEADER_LEN: usize = 14;
/// Frames shorter than this (without FCS) are padded on transmit.
pub const MIN_FRAME_LEN: usize = 60;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

/// A checked view of an Ethernet II frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    buf: &'a [u8],
}

impl<'a> Frame<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Frame { buf })
    }
    pub fn dst(&self) -> MacAddress {
        MacAddress::from_bytes(&self.buf[0..6])
    }
    pub fn src(&self) -> MacAddress {
        MacAddress::from_bytes(&self.buf[6..12])
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.buf, 12)
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
}

/// The fields of an Ethernet II header, for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub dst: MacAddress,
    pub src: MacAddress,
    pub ethertype: u16,
}

impl Repr {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..6].copy_from_slice(&self.dst.0);
        buf[6..12].copy_from_slice(&self.src.0);
        buf[12..14].copy_from_slice(&self.ethertype.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let repr = Repr {
            dst: MacAddress::BROADCAST,
            src: MacAddress([2, 0, 1, 2, 3, 0x77]),
            ethertype: ETHERTYPE_ARP,
        };
        let mut buf = [0u8; 20];
        repr.emit(&mut buf);
        let f = Frame::new_checked(&buf).unwrap();
        assert_eq!(
            (f.dst(), f.src(), f.ethertype()),
            (repr.dst, repr.src, repr.ethertype)
        );
        assert_eq!(f.payload().len(), 6);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Frame::new_checked(&[0u8; 13]).unwrap_err(),
            Error::Truncated
        );
    }
}
