//! IPv6 headers (RFC 8200) and the addresses a host derives (RFC 4291).

use super::{be16, Error, MacAddress, Result};
pub use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;
/// Every link that carries IPv6 carries 1280-byte packets (RFC 8200 §5).
pub const MIN_MTU: usize = 1280;

/// Next-header values (IANA "Assigned Internet Protocol Numbers").
pub const NEXT_HOP_BY_HOP: u8 = 0;
pub const NEXT_TCP: u8 = 6;
pub const NEXT_UDP: u8 = 17;
pub const NEXT_ROUTING: u8 = 43;
pub const NEXT_FRAGMENT: u8 = 44;
pub const NEXT_ICMPV6: u8 = 58;
pub const NEXT_NONE: u8 = 59;
pub const NEXT_DESTINATION_OPTIONS: u8 = 60;

/// ff02::1, every node on the link (RFC 4291 §2.7.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ff02::2, every router on the link.
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// ff02::16, where MLDv2 reports go (RFC 3810 §5.2.14).
pub const ALL_MLDV2_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x16);

/// A checked view of an IPv6 packet. The view ends at the payload length,
/// so Ethernet padding is never taken for payload.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Checks the version and the payload length against the buffer. A
    /// payload length of 0 with a hop-by-hop header would be a jumbogram
    /// (RFC 2675), which no Ethernet carries: it reads as an empty payload.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if buf[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        let end = HEADER_LEN + be16(buf, 4) as usize;
        if buf.len() < end {
            return Err(Error::Truncated);
        }
        Ok(Packet { buf: &buf[..end] })
    }
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buf, 0) >> 4) as u8
    }
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }
    pub fn src(&self) -> Ipv6Addr {
        ipv6_at(self.buf, 8)
    }
    pub fn dst(&self) -> Ipv6Addr {
        ipv6_at(self.buf, 24)
    }
    /// What follows the fixed header: extension headers, then the upper layer.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }
    /// The whole packet, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
}

pub(crate) fn ipv6_at(buf: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&buf[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// The fields of an IPv6 header, for emitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub payload_len: usize,
}

impl Repr {
    /// Writes the fixed header into the first [`HEADER_LEN`] bytes of `buf`
    /// (traffic class and flow label zero).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        buf[4..6].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
        buf[6] = self.next_header;
        buf[7] = self.hop_limit;
        buf[8..24].copy_from_slice(&self.src.octets());
        buf[24..40].copy_from_slice(&self.dst.octets());
    }
}

/// The upper layer of a packet once its extension headers are walked
/// (RFC 8200 §4): its protocol and bytes, and where in the packet the
/// next-header field that names it sits (for a parameter problem's pointer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    pub protocol: u8,
    pub payload: &'a [u8],
    pub next_header_at: usize,
}

/// Why a packet's extension headers stop it (RFC 8200 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProblem {
    /// Cut short or inconsistent.
    Malformed,
    /// A hop-by-hop header not first (§4.3 requires it first).
    MisplacedHopByHop { at: usize },
    /// An option whose type says "discard" (§4.2: the two high bits not 00);
    /// `report`: the type asks for a parameter problem (10, or 11 and the
    /// destination was not multicast, which the caller checks), at `at`.
    UnknownOption { at: usize, report: bool },
    /// A routing header with segments left, which only a router acts on
    /// (§4.4: a parameter problem pointing at the routing type).
    RoutingSegmentsLeft { at: usize },
    /// A fragment header at `at`: the packet is one piece of a larger one
    /// (§4.5), whose upper layer only reassembly reveals.
    Fragment { at: usize },
}

/// The fragment header's length (RFC 8200 §4.5).
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// A fragment header (RFC 8200 §4.5): which piece of which packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// The first header of the fragmentable part (read from fragment zero).
    pub next_header: u8,
    /// Where this piece goes, in bytes (a multiple of 8).
    pub offset: usize,
    /// More fragments follow (the M flag).
    pub more: bool,
    pub ident: u32,
}

impl FragmentHeader {
    /// Reads the header at the start of `buf`; None if `buf` is shorter.
    pub fn parse(buf: &[u8]) -> Option<Self> {
        let b = buf.get(..FRAGMENT_HEADER_LEN)?;
        let field = be16(b, 2);
        Some(FragmentHeader {
            next_header: b[0],
            offset: (field & !7) as usize,
            more: field & 1 == 1,
            ident: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        })
    }

    /// Writes the header into `buf` (at least [`FRAGMENT_HEADER_LEN`] bytes).
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0] = self.next_header;
        buf[1] = 0;
        let field = (self.offset as u16 & !7) | self.more as u16;
        buf[2..4].copy_from_slice(&field.to_be_bytes());
        buf[4..8].copy_from_slice(&self.ident.to_be_bytes());
    }
}

/// Pad1 and PadN (RFC 8200 §4.2), and Router Alert (RFC 2711), which MLD carries.
const OPTION_PAD1: u8 = 0;
const OPTION_PADN: u8 = 1;
const OPTION_ROUTER_ALERT: u8 = 5;

/// Walks the hop-by-hop, destination options and routing headers to the upper layer.
pub fn upper_layer<'a>(packet: &Packet<'a>) -> core::result::Result<UpperLayer<'a>, HeaderProblem> {
    let bytes = packet.as_bytes();
    let mut protocol = packet.next_header();
    let mut next_header_at = 6;
    let mut at = HEADER_LEN;
    loop {
        match protocol {
            NEXT_HOP_BY_HOP | NEXT_DESTINATION_OPTIONS | NEXT_ROUTING => {
                if protocol == NEXT_HOP_BY_HOP && at != HEADER_LEN {
                    return Err(HeaderProblem::MisplacedHopByHop { at: next_header_at });
                }
                let header = bytes.get(at..at + 8).ok_or(HeaderProblem::Malformed)?;
                let len = (header[1] as usize + 1) * 8;
                let header = bytes.get(at..at + len).ok_or(HeaderProblem::Malformed)?;
                if protocol == NEXT_ROUTING {
                    if header[3] != 0 {
                        return Err(HeaderProblem::RoutingSegmentsLeft { at: at + 2 });
                    }
                } else {
                    check_options(&header[2..], at + 2)?;
                }
                protocol = header[0];
                next_header_at = at;
                at += len;
            }
            NEXT_FRAGMENT => return Err(HeaderProblem::Fragment { at }),
            _ => {
                return Ok(UpperLayer {
                    protocol,
                    payload: &bytes[at..],
                    next_header_at,
                })
            }
        }
    }
}

/// RFC 8200 §4.2: every option is skipped if known or marked "skip"; the
/// first other one stops the packet. `base`: where `options` starts in the packet.
fn check_options(options: &[u8], base: usize) -> core::result::Result<(), HeaderProblem> {
    let mut at = 0;
    while at < options.len() {
        let kind = options[at];
        if kind == OPTION_PAD1 {
            at += 1;
            continue;
        }
        let len = *options.get(at + 1).ok_or(HeaderProblem::Malformed)? as usize;
        if at + 2 + len > options.len() {
            return Err(HeaderProblem::Malformed);
        }
        let known = kind == OPTION_PADN || kind == OPTION_ROUTER_ALERT;
        if !known && kind >> 6 != 0 {
            return Err(HeaderProblem::UnknownOption {
                at: base + at,
                report: kind >> 6 >= 2,
            });
        }
        at += 2 + len;
    }
    Ok(())
}

/// The hop-by-hop header MLD reports carry: Router Alert, MLD (RFC 2711,
/// RFC 3810 §5), and a PadN to 8 bytes.
pub const ROUTER_ALERT_HEADER_LEN: usize = 8;

/// Writes that header, naming `next` as what follows.
pub fn emit_router_alert_header(buf: &mut [u8], next: u8) {
    buf[..8].copy_from_slice(&[next, 0, OPTION_ROUTER_ALERT, 2, 0, 0, OPTION_PADN, 0]);
}

/// Link-local unicast, fe80::/10 (RFC 4291 §2.5.6).
pub fn is_link_local(addr: Ipv6Addr) -> bool {
    addr.segments()[0] & 0xffc0 == 0xfe80
}

/// The solicited-node group of `addr`: ff02::1:ff00:0/104 and its low 24
/// bits (RFC 4291 §2.7.1), where neighbor solicitations for it go.
pub fn solicited_node(addr: Ipv6Addr) -> Ipv6Addr {
    let o = addr.octets();
    Ipv6Addr::from([
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15],
    ])
}

/// The Ethernet address of a multicast group: 33:33 and its low 32 bits (RFC 2464 §7).
pub fn multicast_mac(group: Ipv6Addr) -> MacAddress {
    let o = group.octets();
    MacAddress([0x33, 0x33, o[12], o[13], o[14], o[15]])
}

/// The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A,
/// RFC 2464 §4): ff:fe in the middle, the universal/local bit inverted.
pub fn interface_id(mac: MacAddress) -> [u8; 8] {
    let m = mac.0;
    [m[0] ^ 0x02, m[1], m[2], 0xff, 0xfe, m[3], m[4], m[5]]
}

/// `prefix` (its first 64 bits) joined to an interface identifier.
pub fn with_interface_id(prefix: Ipv6Addr, id: [u8; 8]) -> Ipv6Addr {
    let mut o = prefix.octets();
    o[8..].copy_from_slice(&id);
    Ipv6Addr::from(o)
}

/// Whether `addr` lies in `prefix`/`len`.
pub fn in_prefix(addr: Ipv6Addr, prefix: Ipv6Addr, len: u8) -> bool {
    let len = u32::from(len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(addr) & mask == u128::from(prefix) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(next: u8, ext: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + ext.len() + payload.len()];
        Repr {
            src: "fe80::1".parse().unwrap(),
            dst: ALL_NODES,
            next_header: next,
            hop_limit: 255,
            payload_len: ext.len() + payload.len(),
        }
        .emit(&mut buf);
        buf[HEADER_LEN..HEADER_LEN + ext.len()].copy_from_slice(ext);
        buf[HEADER_LEN + ext.len()..].copy_from_slice(payload);
        buf
    }

    #[test]
    fn round_trip_and_padding() {
        let mut buf = packet(NEXT_ICMPV6, &[], b"abcd");
        buf.extend_from_slice(&[0; 10]); // Ethernet padding
        let p = Packet::new_checked(&buf).unwrap();
        assert_eq!(p.src(), "fe80::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(
            (p.dst(), p.next_header(), p.hop_limit()),
            (ALL_NODES, 58, 255)
        );
        assert_eq!(p.payload(), b"abcd");
        let upper = upper_layer(&p).unwrap();
        assert_eq!((upper.protocol, upper.payload), (NEXT_ICMPV6, &b"abcd"[..]));
    }

    #[test]
    fn rejects_bad_headers() {
        assert_eq!(
            Packet::new_checked(&[0x60; 39]).unwrap_err(),
            Error::Truncated
        );
        let mut buf = packet(NEXT_UDP, &[], b"xy");
        buf[0] = 0x40;
        assert_eq!(Packet::new_checked(&buf).unwrap_err(), Error::Malformed);
        let mut buf = packet(NEXT_UDP, &[], b"xy");
        buf[5] = 9; // claims more than there is
        assert_eq!(Packet::new_checked(&buf).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn walks_extension_headers() {
        let mut hbh = [0u8; 8];
        emit_router_alert_header(&mut hbh, NEXT_ICMPV6);
        let buf = packet(NEXT_HOP_BY_HOP, &hbh, b"mld");
        let upper = upper_layer(&Packet::new_checked(&buf).unwrap()).unwrap();
        assert_eq!(
            (upper.protocol, upper.payload, upper.next_header_at),
            (58, &b"mld"[..], 40)
        );
        // An unknown option of type 10xxxxxx: discard and report.
        let opts = [NEXT_UDP, 0, 0x80, 4, 0, 0, 0, 0];
        let buf = packet(NEXT_DESTINATION_OPTIONS, &opts, b"");
        assert_eq!(
            upper_layer(&Packet::new_checked(&buf).unwrap()),
            Err(HeaderProblem::UnknownOption {
                at: 42,
                report: true
            })
        );
        // Skippable unknown option (00xxxxxx), then a routing header with segments left.
        let ext = [
            NEXT_ROUTING,
            0,
            0x1e,
            4,
            0,
            0,
            0,
            0,
            NEXT_UDP,
            0,
            0,
            1,
            0,
            0,
            0,
            0,
        ];
        let buf = packet(NEXT_DESTINATION_OPTIONS, &ext, b"");
        assert_eq!(
            upper_layer(&Packet::new_checked(&buf).unwrap()),
            Err(HeaderProblem::RoutingSegmentsLeft { at: 50 })
        );
        // Hop-by-hop after another header; a header cut short; a fragment.
        let ext = [
            NEXT_HOP_BY_HOP,
            0,
            1,
            4,
            0,
            0,
            0,
            0,
            NEXT_UDP,
            0,
            1,
            4,
            0,
            0,
            0,
            0,
        ];
        let buf = packet(NEXT_DESTINATION_OPTIONS, &ext, b"");
        assert_eq!(
            upper_layer(&Packet::new_checked(&buf).unwrap()),
            Err(HeaderProblem::MisplacedHopByHop { at: 40 })
        );
        let buf = packet(NEXT_DESTINATION_OPTIONS, &[NEXT_UDP, 1, 1, 4], b"");
        assert_eq!(
            upper_layer(&Packet::new_checked(&buf).unwrap()),
            Err(HeaderProblem::Malformed)
        );
        let buf = packet(NEXT_FRAGMENT, &[NEXT_UDP, 0, 0, 1, 0, 0, 0, 1], b"");
        assert_eq!(
            upper_layer(&Packet::new_checked(&buf).unwrap()),
            Err(HeaderProblem::Fragment { at: 40 })
        );
        let header = FragmentHeader::parse(&buf[40..]).unwrap();
        assert_eq!(
            header,
            FragmentHeader {
                next_header: NEXT_UDP,
                offset: 0,
                more: true,
                ident: 1
            }
        );
        let mut emitted = [0u8; FRAGMENT_HEADER_LEN];
        FragmentHeader {
            offset: 1232,
            more: false,
            ..header
        }
        .emit(&mut emitted);
        assert_eq!(emitted, [NEXT_UDP, 0, 0x04, 0xd0, 0, 0, 0, 1]);
        assert_eq!(FragmentHeader::parse(&emitted[..7]), None);
    }

    #[test]
    fn derived_addresses() {
        let mac = MacAddress([0x02, 0x00, 0x01, 0x02, 0x03, 0x77]);
        let ll = with_interface_id("fe80::".parse().unwrap(), interface_id(mac));
        assert_eq!(ll, "fe80::1ff:fe02:377".parse::<Ipv6Addr>().unwrap());
        assert!(is_link_local(ll) && !is_link_local("fd77::1".parse().unwrap()));
        assert_eq!(
            solicited_node(ll),
            "ff02::1:ff02:377".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            multicast_mac(solicited_node(ll)).0,
            [0x33, 0x33, 0xff, 0x02, 0x03, 0x77]
        );
        let p: Ipv6Addr = "fd77:0:0:1::".parse().unwrap();
        assert!(in_prefix("fd77:0:0:1::5".parse().unwrap(), p, 64));
        assert!(!in_prefix("fd77:0:0:2::5".parse().unwrap(), p, 64));
        assert!(in_prefix("2001:db8::1".parse().unwrap(), p, 0));
    }
}
