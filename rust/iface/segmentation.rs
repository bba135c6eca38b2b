//! Cutting a TCP burst into segments: our own segmentation offload. A burst
//! is one Ethernet + IP + TCP frame (IPv4, or IPv6 with no extension
//! header) whose payload spans several segments of `segment_size` bytes,
//! built once by the stack. A device that cannot cut it itself (the
//! kernel's GSO behind the live device can) sends what this module makes:
//! each segment with its own sequence number, lengths and checksums, FIN
//! and PSH on the last only, and over IPv4 the identification counting up,
//! as Linux's GSO does.
//!
//! The same cut undoes a UDP burst (`UDP_SEGMENT`, GSO type UDP_L4) that a
//! peer's kernel hands us whole: datagrams of `segment_size` bytes, each
//! with its own length and checksum.

use crate::wire::checksum::{self, PseudoHeader};
use crate::wire::{ethernet, ipv4, ipv6, tcp, udp, Ipv4Addr};
use std::net::{IpAddr, Ipv6Addr};

const FIN_PSH: u8 = tcp::Flags::FIN.0 | tcp::Flags::PSH.0;

/// The segment size of a frame that goes whole but leaves its transport
/// checksum to the device (holding the pseudo-header sum, as a burst's
/// does): a burst of one segment, whatever its length.
pub const CHECKSUM_ONLY: u16 = u16::MAX;

/// The frames and bytes `frame` becomes on the wire, cut into segments of
/// `segment_size` (0: the frame goes as it is).
pub fn wire_size(frame: &[u8], segment_size: usize) -> (usize, usize) {
    if segment_size == 0 || segment_size == CHECKSUM_ONLY as usize {
        return (1, frame.len()); // one frame: no header parsing
    }
    match layout(frame) {
        Some(l) if segment_size > 0 && l.payload_len() > segment_size => {
            let n = l.payload_len().div_ceil(segment_size);
            (n, l.end + (n - 1) * l.payload_start)
        }
        _ => (1, frame.len()),
    }
}

/// Calls `out` with each segment of the burst `frame`, in order, its
/// checksums finished. A frame that fits one segment is a burst of one (its
/// checksum left to the device, see [`CHECKSUM_ONLY`]); a frame that is not
/// IPv4 TCP or UDP, or `segment_size` 0, goes out unchanged.
pub fn segment_burst(frame: &[u8], segment_size: usize, out: &mut dyn FnMut(&[u8])) {
    let Some(l) = layout(frame).filter(|_| segment_size > 0) else {
        return out(frame);
    };
    let headers = &frame[..l.payload_start];
    let payload = &frame[l.payload_start..l.end];
    let t = l.transport;
    let seq = u32::from_be_bytes(frame[t + 4..t + 8].try_into().unwrap());
    let mut segment = Vec::with_capacity(l.payload_start + segment_size.min(payload.len()));
    let count = payload.len().div_ceil(segment_size).max(1);
    for i in 0..count {
        let chunk = &payload[i * segment_size..payload.len().min((i + 1) * segment_size)];
        segment.clear();
        segment.extend_from_slice(headers);
        segment.extend_from_slice(chunk);
        l.fix_ip_header(&mut segment, i);
        let transport_len = segment.len() - t;
        let field = if l.protocol == ipv4::PROTO_TCP {
            let s = seq.wrapping_add((i * segment_size) as u32);
            segment[t + 4..t + 8].copy_from_slice(&s.to_be_bytes());
            if i + 1 < count {
                segment[t + 13] &= !FIN_PSH;
            }
            t + TCP_CHECKSUM
        } else {
            segment[t + 4..t + 6].copy_from_slice(&(transport_len as u16).to_be_bytes());
            t + UDP_CHECKSUM
        };
        segment[field..field + 2].fill(0);
        let acc = match (l.src, l.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                Ipv4Addr::pseudo_header(s, d, l.protocol, transport_len)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                Ipv6Addr::pseudo_header(s, d, l.protocol, transport_len)
            }
            _ => unreachable!("one packet, one family"),
        };
        let mut c = !checksum::fold(checksum::accumulate(acc, &segment[t..]));
        if c == 0 && l.protocol == ipv4::PROTO_UDP {
            c = 0xffff; // RFC 768: zero means "no checksum"
        }
        segment[field..field + 2].copy_from_slice(&c.to_be_bytes());
        out(&segment);
    }
}

/// Where the checksum sits in a TCP and in a UDP header.
const TCP_CHECKSUM: usize = 16;
const UDP_CHECKSUM: usize = 6;

/// Where the headers of an IPv4 or IPv6 TCP or UDP frame start and end.
struct Layout {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    ip: usize,
    transport: usize,
    payload_start: usize,
    end: usize,
    /// The burst's IPv4 identification (the `i`th segment takes `ident + i`).
    ident: u16,
}

impl Layout {
    fn payload_len(&self) -> usize {
        self.end - self.payload_start
    }

    /// The IP header of the `i`th segment, `segment` long: its length (and
    /// over IPv4 its identification and checksum).
    fn fix_ip_header(&self, segment: &mut [u8], i: usize) {
        let ip = self.ip;
        if self.src.is_ipv6() {
            let payload_len = (segment.len() - ip - ipv6::HEADER_LEN) as u16;
            segment[ip + 4..ip + 6].copy_from_slice(&payload_len.to_be_bytes());
            return;
        }
        let ip_total = (segment.len() - ip) as u16;
        segment[ip + 2..ip + 4].copy_from_slice(&ip_total.to_be_bytes());
        let id = self.ident.wrapping_add(i as u16);
        segment[ip + 4..ip + 6].copy_from_slice(&id.to_be_bytes());
        segment[ip + 10..ip + 12].fill(0);
        let c = checksum::checksum(&segment[ip..self.transport]);
        segment[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    }
}

fn layout(frame: &[u8]) -> Option<Layout> {
    let ip = ethernet::HEADER_LEN;
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    let (src, dst, protocol, transport, end, ident) = match eth.ethertype() {
        ethernet::ETHERTYPE_IPV4 => {
            let packet = ipv4::Packet::new_checked(eth.payload()).ok()?;
            if packet.is_fragment() {
                return None;
            }
            let (src, dst) = (packet.src().into(), packet.dst().into());
            let transport = ip + packet.header_len();
            (
                src,
                dst,
                packet.protocol(),
                transport,
                ip + packet.total_len(),
                packet.ident(),
            )
        }
        // Our bursts carry no extension header, nor do the kernel's.
        ethernet::ETHERTYPE_IPV6 => {
            let packet = ipv6::Packet::new_checked(eth.payload()).ok()?;
            let (src, dst) = (packet.src().into(), packet.dst().into());
            let end = ip + packet.as_bytes().len();
            (
                src,
                dst,
                packet.next_header(),
                ip + ipv6::HEADER_LEN,
                end,
                0,
            )
        }
        _ => return None,
    };
    let header_len = match protocol {
        ipv4::PROTO_TCP => {
            let data_offset = (*frame.get(transport + 12)? >> 4) as usize * 4;
            (data_offset >= tcp::HEADER_LEN).then_some(data_offset)?
        }
        ipv4::PROTO_UDP => udp::HEADER_LEN,
        _ => return None,
    };
    let payload_start = transport + header_len;
    (payload_start <= end).then_some(Layout {
        src,
        dst,
        protocol,
        ip,
        transport,
        payload_start,
        end,
        ident,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tcp::{Flags, Repr, Segment};
    use crate::wire::MacAddress;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    /// A burst frame carrying `payload`, as the stack builds it.
    fn burst(payload: &[u8], flags: Flags) -> Vec<u8> {
        let tcp = Repr {
            src_port: 1,
            dst_port: 2,
            seq: u32::MAX - 100, // wraps inside the burst
            ack: 9,
            flags,
            window: 100,
            options: Default::default(),
        };
        let tcp_len = tcp.header_len() + payload.len();
        let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + tcp_len];
        ethernet::Repr {
            dst: MacAddress::BROADCAST,
            src: MacAddress::ZERO,
            ethertype: ethernet::ETHERTYPE_IPV4,
        }
        .emit(&mut frame);
        let ip = ipv4::Repr {
            src: A,
            dst: B,
            protocol: ipv4::PROTO_TCP,
            payload_len: tcp_len,
            ttl: 64,
            ident: u16::MAX,
            dont_fragment: false,
            options: ipv4::HeaderOptions::NONE,
        };
        ip.emit(&mut frame[ethernet::HEADER_LEN..]);
        let at = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        frame[at + tcp.header_len()..].copy_from_slice(payload);
        tcp.emit_partial(&mut frame[at..], payload.len(), A, B);
        frame
    }

    #[test]
    fn cuts_a_burst_into_checked_segments() {
        let payload: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let frame = burst(&payload, Flags::ACK | Flags::PSH | Flags::FIN);
        assert_eq!(wire_size(&frame, 1000), (3, frame.len() + 2 * 54));
        let mut got = vec![];
        segment_burst(&frame, 1000, &mut |s| got.push(s.to_vec()));
        assert_eq!(got.len(), 3);
        let mut joined = vec![];
        for (i, s) in got.iter().enumerate() {
            assert_eq!(s.len(), 54 + [1000, 1000, 500][i]);
            let ip = ipv4::Packet::new_checked(&s[ethernet::HEADER_LEN..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.ident(), u16::MAX.wrapping_add(i as u16));
            let seg = Segment::new_checked(ip.payload(), A, B).unwrap();
            assert_eq!(seg.seq(), (u32::MAX - 100).wrapping_add(1000 * i as u32));
            let last = i == 2;
            assert_eq!(seg.flags().contains(Flags::FIN), last);
            assert_eq!(seg.flags().contains(Flags::PSH), last);
            assert!(seg.flags().contains(Flags::ACK));
            joined.extend_from_slice(seg.payload());
        }
        assert_eq!(joined, payload);
    }

    /// An IPv6 burst as the stack builds it: no extension header.
    fn burst_v6(payload: &[u8], flags: Flags) -> Vec<u8> {
        let (a, b) = (
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
            Ipv6Addr::LOCALHOST,
        );
        let tcp = Repr {
            src_port: 1,
            dst_port: 2,
            seq: 77,
            ack: 9,
            flags,
            window: 100,
            options: Default::default(),
        };
        let tcp_len = tcp.header_len() + payload.len();
        let at = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
        let mut frame = vec![0u8; at + tcp_len];
        ethernet::Repr {
            dst: MacAddress::BROADCAST,
            src: MacAddress::ZERO,
            ethertype: ethernet::ETHERTYPE_IPV6,
        }
        .emit(&mut frame);
        ipv6::Repr {
            src: a,
            dst: b,
            next_header: ipv6::NEXT_TCP,
            hop_limit: 64,
            payload_len: tcp_len,
        }
        .emit(&mut frame[ethernet::HEADER_LEN..]);
        frame[at + tcp.header_len()..].copy_from_slice(payload);
        tcp.emit_partial(&mut frame[at..], payload.len(), a, b);
        frame
    }

    #[test]
    fn cuts_an_ipv6_burst_into_checked_segments() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i * 3) as u8).collect();
        let frame = burst_v6(&payload, Flags::ACK | Flags::PSH);
        let headers = ethernet::HEADER_LEN + ipv6::HEADER_LEN + tcp::HEADER_LEN;
        assert_eq!(wire_size(&frame, 1220), (3, frame.len() + 2 * headers));
        let mut joined = vec![];
        let mut sizes = vec![];
        segment_burst(&frame, 1220, &mut |s| {
            let ip = ipv6::Packet::new_checked(&s[ethernet::HEADER_LEN..]).unwrap();
            assert_eq!(
                ip.as_bytes().len(),
                s.len() - ethernet::HEADER_LEN,
                "payload length"
            );
            let seg = Segment::new_checked(ip.payload(), ip.src(), ip.dst()).unwrap();
            assert_eq!(seg.seq(), 77 + joined.len() as u32);
            let last = joined.len() + seg.payload().len() == payload.len();
            assert_eq!(seg.flags().contains(Flags::PSH), last);
            sizes.push(seg.payload().len());
            joined.extend_from_slice(seg.payload());
        });
        assert_eq!((sizes, joined), (vec![1220, 1220, 560], payload));
    }

    #[test]
    fn leaves_other_frames_alone() {
        let arp = vec![0xffu8; 60];
        let mut got = vec![];
        segment_burst(&arp, 1000, &mut |s| got.push(s.to_vec()));
        assert_eq!(got, vec![arp.clone()]);
        assert_eq!(wire_size(&arp, 1000), (1, 60));
        // A burst that fits one segment is already a segment.
        let small = burst(&[7; 500], Flags::ACK);
        assert_eq!(wire_size(&small, 1000), (1, small.len()));
        // A truncated burst is not cut (its headers cannot be trusted).
        let cut = &burst(&[7; 3000], Flags::ACK)[..100];
        assert_eq!(wire_size(cut, 1000), (1, 100));
    }

    #[test]
    fn cuts_a_udp_burst_into_datagrams() {
        let payload: Vec<u8> = (0..2100u32).map(|i| (i * 7) as u8).collect();
        let udp_len = udp::HEADER_LEN + payload.len();
        let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp_len];
        ethernet::Repr {
            dst: MacAddress::BROADCAST,
            src: MacAddress::ZERO,
            ethertype: ethernet::ETHERTYPE_IPV4,
        }
        .emit(&mut frame);
        ipv4::Repr::new(A, B, ipv4::PROTO_UDP, udp_len, 7).emit(&mut frame[ethernet::HEADER_LEN..]);
        let at = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
        frame[at..at + 8].copy_from_slice(&[0, 53, 0, 54, 0, 0, 0, 0]);
        frame[at + 8..].copy_from_slice(&payload);
        let mut joined = vec![];
        let mut count = 0;
        segment_burst(&frame, 1000, &mut |d| {
            let ip = ipv4::Packet::new_checked(&d[ethernet::HEADER_LEN..]).unwrap();
            assert!(ip.verify_checksum());
            let datagram = udp::Datagram::new_checked(ip.payload(), A, B).unwrap();
            assert_eq!((datagram.src_port(), datagram.dst_port()), (53, 54));
            joined.extend_from_slice(datagram.payload());
            count += 1;
        });
        assert_eq!((count, joined), (3, payload));
    }
}
