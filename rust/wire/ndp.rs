//! Neighbor Discovery messages (RFC 4861 §4) and their options (§4.6), as a
//! host reads and writes them. The ICMPv6 checksum is `icmpv6`'s.

use super::icmpv6;
use super::ipv6::{ipv6_at, Ipv6Addr};
use super::{be16, be32, Error, MacAddress, Result};

pub const TYPE_ROUTER_SOLICIT: u8 = 133;
pub const TYPE_ROUTER_ADVERT: u8 = 134;
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
pub const TYPE_REDIRECT: u8 = 137;

/// Option types (§4.6).
const OPTION_SOURCE_LINK_ADDRESS: u8 = 1;
const OPTION_TARGET_LINK_ADDRESS: u8 = 2;
const OPTION_PREFIX_INFORMATION: u8 = 3;
const OPTION_MTU: u8 = 5;
/// Recursive DNS Server (RFC 8106 §5.1).
const OPTION_RDNSS: u8 = 25;
/// A link-layer address option for Ethernet: 8 bytes (RFC 2464 §6).
const LINK_ADDRESS_OPTION_LEN: usize = 8;

/// A valid or preferred lifetime of all ones means forever (§4.6.2).
pub const INFINITE_LIFETIME: u32 = u32::MAX;

/// A Prefix Information option (§4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    /// L: the prefix is on the link.
    pub on_link: bool,
    /// A: addresses may be made from it (RFC 4862 §5.5.3).
    pub autonomous: bool,
    /// Seconds; [`INFINITE_LIFETIME`] for ever.
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
}

/// DNS servers a router names, for `lifetime` seconds (RFC 8106 §5.1;
/// [`INFINITE_LIFETIME`] for ever, 0: no longer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServers {
    pub lifetime: u32,
    pub servers: Vec<Ipv6Addr>,
}

/// A Router Advertisement (§4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvert {
    /// 0: unspecified by this router.
    pub cur_hop_limit: u8,
    pub managed: bool,
    pub other: bool,
    /// Seconds as a default router; 0: not one.
    pub router_lifetime: u16,
    /// Milliseconds; 0: unspecified.
    pub reachable_time: u32,
    pub retrans_timer: u32,
    pub source_mac: Option<MacAddress>,
    pub mtu: Option<u32>,
    pub prefixes: Vec<PrefixInfo>,
    pub dns_servers: Vec<DnsServers>,
}

/// A message of neighbor discovery, checked per §6.1 and §7.1 (the hop
/// limit of 255, which proves it came from the link, is the caller's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    RouterSolicit {
        source_mac: Option<MacAddress>,
    },
    RouterAdvert(RouterAdvert),
    NeighborSolicit {
        target: Ipv6Addr,
        source_mac: Option<MacAddress>,
    },
    NeighborAdvert {
        router: bool,
        solicited: bool,
        override_entry: bool,
        target: Ipv6Addr,
        target_mac: Option<MacAddress>,
    },
    /// A redirect (§4.5): packets to `destination` are better sent to
    /// `target` (a router nearer it, or the destination itself, on the link).
    Redirect {
        target: Ipv6Addr,
        destination: Ipv6Addr,
        target_mac: Option<MacAddress>,
    },
}

impl Message {
    /// Parses the ICMPv6 message (header included; its checksum checked
    /// already). Code not 0, too short, a target that is multicast, or an
    /// option of length 0 is `Malformed`; other ICMPv6 types `Unsupported`.
    pub fn parse(icmp: &icmpv6::Packet<'_>) -> Result<Self> {
        let buf = icmp.as_bytes();
        if icmp.code() != 0 {
            return Err(Error::Malformed);
        }
        let (min_len, options_at) = match icmp.msg_type() {
            TYPE_ROUTER_SOLICIT => (8, 8),
            TYPE_ROUTER_ADVERT => (16, 16),
            TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT => (24, 24),
            TYPE_REDIRECT => (40, 40),
            _ => return Err(Error::Unsupported),
        };
        if buf.len() < min_len {
            return Err(Error::Truncated);
        }
        let options = Options::parse(&buf[options_at..])?;
        let target = || {
            let target = ipv6_at(buf, 8);
            match target.is_multicast() {
                true => Err(Error::Malformed),
                false => Ok(target),
            }
        };
        Ok(match icmp.msg_type() {
            TYPE_ROUTER_SOLICIT => Message::RouterSolicit {
                source_mac: options.source_mac,
            },
            TYPE_ROUTER_ADVERT => Message::RouterAdvert(RouterAdvert {
                cur_hop_limit: buf[4],
                managed: buf[5] & 0x80 != 0,
                other: buf[5] & 0x40 != 0,
                router_lifetime: be16(buf, 6),
                reachable_time: be32(buf, 8),
                retrans_timer: be32(buf, 12),
                source_mac: options.source_mac,
                mtu: options.mtu,
                prefixes: options.prefixes,
                dns_servers: options.dns_servers,
            }),
            TYPE_NEIGHBOR_SOLICIT => Message::NeighborSolicit {
                target: target()?,
                source_mac: options.source_mac,
            },
            TYPE_NEIGHBOR_ADVERT => Message::NeighborAdvert {
                router: buf[4] & 0x80 != 0,
                solicited: buf[4] & 0x40 != 0,
                override_entry: buf[4] & 0x20 != 0,
                target: target()?,
                target_mac: options.target_mac,
            },
            _ => {
                // §8.1: the destination is never multicast; the target is
                // link-local, or the destination itself (it is on the link).
                let (target, destination) = (ipv6_at(buf, 8), ipv6_at(buf, 24));
                let link_local = target.segments()[0] & 0xffc0 == 0xfe80;
                if destination.is_multicast() || !(link_local || target == destination) {
                    return Err(Error::Malformed);
                }
                Message::Redirect {
                    target,
                    destination,
                    target_mac: options.target_mac,
                }
            }
        })
    }
}

/// The options a host reads; others are skipped (§4.6: "silently ignore").
#[derive(Debug, Default)]
struct Options {
    source_mac: Option<MacAddress>,
    target_mac: Option<MacAddress>,
    mtu: Option<u32>,
    prefixes: Vec<PrefixInfo>,
    dns_servers: Vec<DnsServers>,
}

impl Options {
    fn parse(mut buf: &[u8]) -> Result<Self> {
        let mut options = Options::default();
        while !buf.is_empty() {
            let len = usize::from(*buf.get(1).ok_or(Error::Truncated)?) * 8;
            if len == 0 {
                return Err(Error::Malformed); // §4.6: a length of 0 is invalid
            }
            let option = buf.get(..len).ok_or(Error::Truncated)?;
            match option[0] {
                OPTION_SOURCE_LINK_ADDRESS if len == LINK_ADDRESS_OPTION_LEN => {
                    options.source_mac = Some(MacAddress::from_bytes(&option[2..8]));
                }
                OPTION_TARGET_LINK_ADDRESS if len == LINK_ADDRESS_OPTION_LEN => {
                    options.target_mac = Some(MacAddress::from_bytes(&option[2..8]));
                }
                OPTION_MTU if len == 8 => options.mtu = Some(be32(option, 4)),
                // Bounded by the message, which the MTU bounds.
                OPTION_PREFIX_INFORMATION if len == 32 => options.prefixes.push(PrefixInfo {
                    prefix_len: option[2],
                    on_link: option[3] & 0x80 != 0,
                    autonomous: option[3] & 0x40 != 0,
                    valid_lifetime: be32(option, 4),
                    preferred_lifetime: be32(option, 8),
                    prefix: ipv6_at(option, 16),
                }),
                // §5.1: a length of 3 or more (units of 8 bytes), odd; an
                // option otherwise is invalid and ignored (§5.3.1).
                OPTION_RDNSS if len >= 24 && (len / 8) % 2 == 1 => {
                    options.dns_servers.push(DnsServers {
                        lifetime: be32(option, 4),
                        servers: option[8..].chunks(16).map(|a| ipv6_at(a, 0)).collect(),
                    });
                }
                _ => {}
            }
            buf = &buf[len..];
        }
        Ok(options)
    }
}

/// Writes a link-layer address option of `kind` at the start of `buf`.
fn emit_link_address(buf: &mut [u8], kind: u8, mac: MacAddress) {
    buf[0] = kind;
    buf[1] = 1;
    buf[2..8].copy_from_slice(&mac.0);
}

/// A Neighbor Solicitation (§4.3), for emitting. `source_mac` is left out
/// when the source is unspecified (duplicate address detection, §7.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solicit {
    pub target: Ipv6Addr,
    pub source_mac: Option<MacAddress>,
}

impl Solicit {
    pub fn len(&self) -> usize {
        24 + self.source_mac.map_or(0, |_| LINK_ADDRESS_OPTION_LEN)
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Writes the message into `buf` (exactly [`Solicit::len`] bytes), checksum included.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        buf[..8].copy_from_slice(&[TYPE_NEIGHBOR_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
        buf[8..24].copy_from_slice(&self.target.octets());
        if let Some(mac) = self.source_mac {
            emit_link_address(&mut buf[24..], OPTION_SOURCE_LINK_ADDRESS, mac);
        }
        icmpv6::fill_checksum(buf, src, dst);
    }
}

/// A Neighbor Advertisement (§4.4) of one of our addresses, for emitting,
/// always with our link-layer address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    pub solicited: bool,
    pub override_entry: bool,
    pub target: Ipv6Addr,
    pub target_mac: MacAddress,
}

impl Advert {
    pub const LEN: usize = 24 + LINK_ADDRESS_OPTION_LEN;

    /// Writes the message into `buf` (exactly [`Advert::LEN`] bytes), checksum included.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        let flags = (u8::from(self.solicited) << 6) | (u8::from(self.override_entry) << 5);
        buf[..8].copy_from_slice(&[TYPE_NEIGHBOR_ADVERT, 0, 0, 0, flags, 0, 0, 0]);
        buf[8..24].copy_from_slice(&self.target.octets());
        emit_link_address(&mut buf[24..], OPTION_TARGET_LINK_ADDRESS, self.target_mac);
        icmpv6::fill_checksum(buf, src, dst);
    }
}

/// A Router Solicitation (§4.1), for emitting; with our link-layer address
/// unless the source is unspecified (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterSolicit {
    pub source_mac: Option<MacAddress>,
}

impl RouterSolicit {
    pub fn len(&self) -> usize {
        8 + self.source_mac.map_or(0, |_| LINK_ADDRESS_OPTION_LEN)
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) {
        buf[..8].copy_from_slice(&[TYPE_ROUTER_SOLICIT, 0, 0, 0, 0, 0, 0, 0]);
        if let Some(mac) = self.source_mac {
            emit_link_address(&mut buf[8..], OPTION_SOURCE_LINK_ADDRESS, mac);
        }
        icmpv6::fill_checksum(buf, src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([2, 0, 1, 2, 3, 0x77]);

    fn parse(buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<Message> {
        icmpv6::fill_checksum(buf, src, dst);
        Message::parse(&icmpv6::Packet::new_checked(buf, src, dst)?)
    }

    #[test]
    fn solicit_and_advert_round_trip() {
        let (src, dst): (Ipv6Addr, Ipv6Addr) = (
            "fe80::1".parse().unwrap(),
            "ff02::1:ff00:2".parse().unwrap(),
        );
        let ns = Solicit {
            target: "fe80::2".parse().unwrap(),
            source_mac: Some(MAC),
        };
        let mut buf = vec![0u8; ns.len()];
        ns.emit(&mut buf, src, dst);
        assert_eq!(
            parse(&mut buf, src, dst),
            Ok(Message::NeighborSolicit {
                target: ns.target,
                source_mac: Some(MAC)
            })
        );
        let na = Advert {
            solicited: true,
            override_entry: true,
            target: ns.target,
            target_mac: MAC,
        };
        let mut buf = vec![0u8; Advert::LEN];
        na.emit(&mut buf, src, dst);
        assert_eq!(
            parse(&mut buf, src, dst),
            Ok(Message::NeighborAdvert {
                router: false,
                solicited: true,
                override_entry: true,
                target: ns.target,
                target_mac: Some(MAC)
            })
        );
        let rs = RouterSolicit { source_mac: None };
        let mut buf = vec![0u8; rs.len()];
        rs.emit(&mut buf, src, dst);
        assert_eq!(
            parse(&mut buf, src, dst),
            Ok(Message::RouterSolicit { source_mac: None })
        );
    }

    #[test]
    fn reads_a_router_advert() {
        let (src, dst) = ("fe80::9".parse().unwrap(), "ff02::1".parse().unwrap());
        let mut buf = vec![0u8; 16 + 8 + 8 + 32 + 8];
        buf[..16].copy_from_slice(&[
            134, 0, 0, 0, 64, 0x40, 0x07, 0x08, 0, 0, 0x75, 0x30, 0, 0, 0x03, 0xe8,
        ]);
        buf[16..24].copy_from_slice(&[1, 1, 0x02, 0, 0, 0, 0, 9]);
        buf[24..32].copy_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0xdc]);
        buf[32..36].copy_from_slice(&[3, 4, 64, 0xc0]);
        buf[36..40].copy_from_slice(&7200u32.to_be_bytes());
        buf[40..44].copy_from_slice(&3600u32.to_be_bytes());
        buf[48..64].copy_from_slice(&"fd77::".parse::<Ipv6Addr>().unwrap().octets());
        buf[64..72].copy_from_slice(&[99, 1, 0, 0, 0, 0, 0, 0]); // unknown: skipped
        let Ok(Message::RouterAdvert(ra)) = parse(&mut buf, src, dst) else {
            panic!("not read as a router advert");
        };
        assert_eq!(
            (
                ra.cur_hop_limit,
                ra.other,
                ra.router_lifetime,
                ra.reachable_time,
                ra.retrans_timer
            ),
            (64, true, 1800, 30_000, 1000)
        );
        assert_eq!(
            (ra.source_mac, ra.mtu),
            (Some(MacAddress([2, 0, 0, 0, 0, 9])), Some(1500))
        );
        assert_eq!(
            ra.prefixes,
            vec![PrefixInfo {
                prefix: "fd77::".parse().unwrap(),
                prefix_len: 64,
                on_link: true,
                autonomous: true,
                valid_lifetime: 7200,
                preferred_lifetime: 3600
            }]
        );
    }

    #[test]
    fn rejects_what_section_7_1_rejects() {
        let (src, dst) = ("fe80::1".parse().unwrap(), "fe80::2".parse().unwrap());
        // A zero-length option.
        let mut buf = [
            135, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0,
        ];
        assert_eq!(parse(&mut buf, src, dst), Err(Error::Malformed));
        // A multicast target.
        let mut buf = [0u8; 24];
        buf[0] = 135;
        buf[8] = 0xff;
        assert_eq!(parse(&mut buf, src, dst), Err(Error::Malformed));
        // A code other than 0; too short; an option running past the end.
        let mut buf = [0u8; 24];
        buf[0] = 136;
        buf[1] = 1;
        assert_eq!(parse(&mut buf, src, dst), Err(Error::Malformed));
        let mut buf = [136u8, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse(&mut buf, src, dst), Err(Error::Truncated));
        let mut buf = [0u8; 28];
        buf[0] = 136;
        buf[24] = 2;
        buf[25] = 1;
        assert_eq!(parse(&mut buf, src, dst), Err(Error::Truncated));
        let mut buf = [0u8; 8];
        buf[0] = 128;
        assert_eq!(parse(&mut buf, src, dst), Err(Error::Unsupported));
    }
}
