//! IGMP version 2 (RFC 2236) as a host speaks it: membership queries in,
//! reports and leaves out. A version 3 query (RFC 3376 §4.1: 12 bytes or
//! more) is read as the version 2 query it begins with, as an older host
//! must (RFC 3376 §7.2.1); a version 1 query carries no response time, and
//! 10 s is taken (RFC 2236 §4).

use super::checksum;
use super::{Error, Ipv4Addr, Result};
use crate::time::Duration;

pub const HEADER_LEN: usize = 8;

pub const TYPE_QUERY: u8 = 0x11;
pub const TYPE_V1_REPORT: u8 = 0x12;
pub const TYPE_V2_REPORT: u8 = 0x16;
pub const TYPE_LEAVE: u8 = 0x17;
pub const TYPE_V3_REPORT: u8 = 0x22;

/// 224.0.0.1, which every multicast host belongs to and never reports.
pub const ALL_SYSTEMS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);
/// 224.0.0.2, where leaves go (RFC 2236 §3).
pub const ALL_ROUTERS: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 2);

/// The response time a version 1 query implies.
const V1_MAX_RESPONSE: Duration = Duration::from_secs(10);

/// One IGMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// `group` None: a general query. Reports are due within `max_response`.
    Query {
        group: Option<Ipv4Addr>,
        max_response: Duration,
    },
    /// A membership report (version 1 or 2), ours or another host's.
    Report {
        group: Ipv4Addr,
    },
    Leave {
        group: Ipv4Addr,
    },
}

impl Message {
    /// Checks the length and the checksum (over the whole message).
    /// Version 3 reports, which routers read, are `Unsupported`.
    pub fn parse(buf: &[u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if checksum::checksum(buf) != 0 {
            return Err(Error::Checksum);
        }
        let group = Ipv4Addr::new(buf[4], buf[5], buf[6], buf[7]);
        match buf[0] {
            TYPE_QUERY => {
                let max_response = match buf[1] {
                    0 if buf.len() == HEADER_LEN => V1_MAX_RESPONSE,
                    code if buf.len() == HEADER_LEN => tenths(u32::from(code)),
                    code => tenths(v3_code(code)),
                };
                Ok(Message::Query {
                    group: (!group.is_unspecified()).then_some(group),
                    max_response,
                })
            }
            TYPE_V1_REPORT | TYPE_V2_REPORT if group.is_multicast() => {
                Ok(Message::Report { group })
            }
            TYPE_LEAVE if group.is_multicast() => Ok(Message::Leave { group }),
            TYPE_V1_REPORT | TYPE_V2_REPORT | TYPE_LEAVE => Err(Error::Malformed),
            _ => Err(Error::Unsupported),
        }
    }

    /// Writes the message into `buf` (`HEADER_LEN` bytes): version 2
    /// reports and leaves; a query with its response time in tenths.
    pub fn emit(&self, buf: &mut [u8]) {
        let (kind, code, group) = match *self {
            Message::Query {
                group,
                max_response,
            } => {
                let t = (max_response.total_millis() / 100).clamp(1, 255) as u8;
                (TYPE_QUERY, t, group.unwrap_or(Ipv4Addr::UNSPECIFIED))
            }
            Message::Report { group } => (TYPE_V2_REPORT, 0, group),
            Message::Leave { group } => (TYPE_LEAVE, 0, group),
        };
        buf[0] = kind;
        buf[1] = code;
        buf[2..4].copy_from_slice(&[0, 0]);
        buf[4..8].copy_from_slice(&group.octets());
        let c = checksum::checksum(&buf[..HEADER_LEN]);
        buf[2..4].copy_from_slice(&c.to_be_bytes());
    }
}

fn tenths(t: u32) -> Duration {
    Duration::from_millis(u64::from(t) * 100)
}

/// RFC 3376 §4.1.1: a code of 128 or more is a floating-point value.
fn v3_code(code: u8) -> u32 {
    if code < 128 {
        return u32::from(code);
    }
    let (exp, mant) = (u32::from((code >> 4) & 0x07), u32::from(code & 0x0f));
    (mant | 0x10) << (exp + 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitted(m: Message) -> [u8; HEADER_LEN] {
        let mut buf = [0; HEADER_LEN];
        m.emit(&mut buf);
        buf
    }

    #[test]
    fn messages_round_trip_and_a_bad_checksum_is_refused() {
        let group = Ipv4Addr::new(239, 1, 2, 3);
        for m in [
            Message::Report { group },
            Message::Leave { group },
            Message::Query {
                group: None,
                max_response: Duration::from_secs(10),
            },
            Message::Query {
                group: Some(group),
                max_response: Duration::from_millis(1000),
            },
        ] {
            assert_eq!(Message::parse(&emitted(m)), Ok(m));
        }
        let mut buf = emitted(Message::Report { group });
        assert_eq!(buf[0], TYPE_V2_REPORT);
        buf[7] ^= 1;
        assert_eq!(Message::parse(&buf), Err(Error::Checksum));
        assert_eq!(Message::parse(&buf[..7]), Err(Error::Truncated));
    }

    #[test]
    fn version_1_and_3_queries_are_read_as_version_2() {
        let mut v1 = [TYPE_QUERY, 0, 0, 0, 0, 0, 0, 0];
        let c = checksum::checksum(&v1);
        v1[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Message::parse(&v1),
            Ok(Message::Query {
                group: None,
                max_response: V1_MAX_RESPONSE
            })
        );
        // A version 3 general query with code 0x8a: (0xa | 0x10) << 3 = 208 tenths.
        let mut v3 = [TYPE_QUERY, 0x8a, 0, 0, 0, 0, 0, 0, 0x02, 125, 0, 0];
        let c = checksum::checksum(&v3);
        v3[2..4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(
            Message::parse(&v3),
            Ok(Message::Query {
                group: None,
                max_response: Duration::from_millis(20_800)
            })
        );
    }
}
