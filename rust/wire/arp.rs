//! ARP for IPv4 over Ethernet (RFC 826).

use super::{be16, ipv4_at, Error, Ipv4Addr, MacAddress, Result};

pub const PACKET_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub sender_mac: MacAddress,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddress,
    pub target_ip: Ipv4Addr,
}

impl Repr {
    /// Parses an ARP packet; other hardware or protocol types are `Unsupported`.
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        if buf.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if be16(buf, 0) != 1 || be16(buf, 2) != 0x0800 || buf[4] != 6 || buf[5] != 4 {
            return Err(Error::Unsupported);
        }
        let operation = match be16(buf, 6) {
            1 => Operation::Request,
            2 => Operation::Reply,
            _ => return Err(Error::Malformed),
        };
        Ok(Repr {
            operation,
            sender_mac: MacAddress::from_bytes(&buf[8..14]),
            sender_ip: ipv4_at(buf, 14),
            target_mac: MacAddress::from_bytes(&buf[18..24]),
            target_ip: ipv4_at(buf, 24),
        })
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&1u16.to_be_bytes());
        buf[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        buf[4] = 6;
        buf[5] = 4;
        let op: u16 = match self.operation {
            Operation::Request => 1,
            Operation::Reply => 2,
        };
        buf[6..8].copy_from_slice(&op.to_be_bytes());
        buf[8..14].copy_from_slice(&self.sender_mac.0);
        buf[14..18].copy_from_slice(&self.sender_ip.octets());
        buf[18..24].copy_from_slice(&self.target_mac.0);
        buf[24..28].copy_from_slice(&self.target_ip.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Repr {
        Repr {
            operation: Operation::Request,
            sender_mac: MacAddress([2, 0, 1, 2, 3, 0x77]),
            sender_ip: Ipv4Addr::new(10, 77, 0, 2),
            target_mac: MacAddress::ZERO,
            target_ip: Ipv4Addr::new(10, 77, 0, 1),
        }
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; PACKET_LEN];
        sample().emit(&mut buf);
        assert_eq!(Repr::parse(&buf).unwrap(), sample());
    }

    #[test]
    fn rejects_bad_input() {
        let mut buf = [0u8; PACKET_LEN];
        sample().emit(&mut buf);
        assert_eq!(Repr::parse(&buf[..27]), Err(Error::Truncated));
        let mut bad = buf;
        bad[7] = 9;
        assert_eq!(Repr::parse(&bad), Err(Error::Malformed));
        let mut other = buf;
        other[4] = 8;
        assert_eq!(Repr::parse(&other), Err(Error::Unsupported));
    }
}
