//! Multicast Listener Discovery as a host speaks it: queries (version 1,
//! RFC 2710, and 2, RFC 3810) in, version 2 reports out (RFC 3810 §5.2).

use super::icmpv6;
use super::ipv6::{ipv6_at, Ipv6Addr};
use super::{be16, Error, Result};
use crate::time::Duration;

pub const TYPE_QUERY: u8 = 130;
pub const TYPE_V1_REPORT: u8 = 131;
pub const TYPE_V1_DONE: u8 = 132;
pub const TYPE_V2_REPORT: u8 = 143;

/// Record types of a version 2 report (RFC 3810 §5.2.12): what a listener
/// with no source filter reports when asked, and when it joins or leaves.
pub const MODE_IS_EXCLUDE: u8 = 2;
pub const CHANGE_TO_EXCLUDE: u8 = 4;
pub const CHANGE_TO_INCLUDE: u8 = 3;

/// A query: `group` None for a general one; reports are due within `max_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub group: Option<Ipv6Addr>,
    pub max_response: Duration,
}

impl Query {
    /// Parses a query (type 130, checksum checked already): 24 bytes for
    /// version 1, 28 or more for version 2; other MLD types are `Unsupported`.
    pub fn parse(icmp: &icmpv6::Packet<'_>) -> Result<Self> {
        let buf = icmp.as_bytes();
        if icmp.msg_type() != TYPE_QUERY {
            return Err(Error::Unsupported);
        }
        if buf.len() < 24 || (buf.len() > 24 && buf.len() < 28) {
            return Err(Error::Truncated);
        }
        let code = u32::from(be16(buf, 4));
        // RFC 3810 §5.1.3: codes from 32768 are a mantissa and exponent.
        let millis = match code < 32768 || buf.len() == 24 {
            true => code,
            false => ((code & 0x0fff) | 0x1000) << (((code >> 12) & 0x7) + 3),
        };
        let group = ipv6_at(buf, 8);
        Ok(Query {
            group: (!group.is_unspecified()).then_some(group),
            max_response: Duration::from_millis(u64::from(millis)),
        })
    }
}

/// A version 2 report of `records` (type and group), for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report<'a> {
    pub record_type: u8,
    pub groups: &'a [Ipv6Addr],
}

impl Report<'_> {
    pub fn len(&self) -> usize {
        8 + 20 * self.groups.len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Writes the report into `buf` (exactly [`Report::len`] bytes), checksum included.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        buf[..8].fill(0);
        buf[0] = TYPE_V2_REPORT;
        buf[6..8].copy_from_slice(&(self.groups.len() as u16).to_be_bytes());
        for (record, group) in buf[8..].chunks_exact_mut(20).zip(self.groups) {
            record[..4].copy_from_slice(&[self.record_type, 0, 0, 0]);
            record[4..].copy_from_slice(&group.octets());
        }
        icmpv6::fill_checksum(buf, src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_then_queries() {
        let (src, dst) = ("fe80::1".parse().unwrap(), "ff02::16".parse().unwrap());
        let groups = ["ff02::1:ff02:377".parse().unwrap()];
        let report = Report {
            record_type: CHANGE_TO_EXCLUDE,
            groups: &groups,
        };
        let mut buf = vec![0u8; report.len()];
        report.emit(&mut buf, src, dst);
        let p = icmpv6::Packet::new_checked(&buf, src, dst).unwrap();
        assert_eq!(
            (p.msg_type(), &buf[6..9], &buf[12..28]),
            (143, &[0, 1, 4][..], &groups[0].octets()[..])
        );
        assert_eq!(Query::parse(&p), Err(Error::Unsupported));

        let mut q = [0u8; 28];
        q[0] = TYPE_QUERY;
        q[4..6].copy_from_slice(&10_000u16.to_be_bytes());
        icmpv6::fill_checksum(&mut q, src, dst);
        let p = icmpv6::Packet::new_checked(&q, src, dst).unwrap();
        assert_eq!(
            Query::parse(&p),
            Ok(Query {
                group: None,
                max_response: Duration::from_millis(10_000)
            })
        );
        // An exponential code: mantissa 0, exponent 1 → 0x1000 << 4.
        q[4..6].copy_from_slice(&0x9000u16.to_be_bytes());
        q[8] = 0xff;
        icmpv6::fill_checksum(&mut q, src, dst);
        let p = icmpv6::Packet::new_checked(&q, src, dst).unwrap();
        let query = Query::parse(&p).unwrap();
        assert_eq!(query.max_response, Duration::from_millis(0x1000 << 4));
        assert!(query.group.is_some());
        let mut short = [0u8; 26];
        short.copy_from_slice(&q[..26]);
        icmpv6::fill_checksum(&mut short, src, dst);
        let p = icmpv6::Packet::new_checked(&short, src, dst).unwrap();
        assert_eq!(Query::parse(&p), Err(Error::Truncated));
    }
}
