//! The virtio-net header (`struct virtio_net_hdr`, include/uapi/linux/
//! virtio_net.h) that a Linux packet socket with `PACKET_VNET_HDR` puts
//! before each frame: how the kernel wants a burst cut and its checksum
//! finished on the way out, and on the way in what it already knows (a
//! super-frame's segment size, a checksum left partial or verified).
//! Fields are little-endian on a packet socket (a legacy header on a
//! little-endian host; the socket follows the host's byte order).

use crate::iface::RxChecksum;
use crate::wire::{ethernet, ipv4, ipv6, tcp};

pub const PACKET_VNET_HDR: libc::c_int = 15;
pub const LEN: usize = 10;

const F_NEEDS_CSUM: u8 = 1;
const F_DATA_VALID: u8 = 2;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
/// Set with a TCP GSO type when the burst carries ECN's CWR.
const GSO_ECN: u8 = 0x80;
/// Where the TCP checksum field sits in its header.
const TCP_CHECKSUM_OFFSET: u16 = 16;
/// The most of a burst a packet socket is asked to hold in one linear
/// buffer ([`VnetHeader::linear`]): with the kernel's headroom and its
/// `struct skb_shared_info` the buffer stays one 64 KiB allocation. (A whole
/// 64 KiB burst needs a 128 KiB one, measured 7% slower.) A longer burst's
/// last bytes go in a page.
const LINEAR_BURST_MAX: usize = 64 * 1024 - 1024;
// With 64 bytes of headroom and skb_shared_info's 320 the buffer stays within 64 KiB.
const _: () = assert!(LINEAR_BURST_MAX + 64 + 320 <= 64 * 1024);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VnetHeader {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHeader {
    pub fn parse(b: &[u8; LEN]) -> Self {
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHeader {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        }
    }

    pub fn emit(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// For a TCP burst we built (Ethernet + IPv4 without options, or IPv6
    /// without extension headers, + TCP, its headers at the start of
    /// `frame`): cut at `segment_size`, finish the TCP checksum, whose field
    /// holds the pseudo-header sum. A burst of one segment
    /// (`iface::CHECKSUM_ONLY`) is not cut, only summed. A whole frame
    /// (`segment_size` 0) needs nothing: its checksums are done.
    pub fn for_tcp_burst(frame: &[u8], segment_size: u16) -> Self {
        if segment_size == 0 {
            return VnetHeader::default();
        }
        let be16 = |at: usize| {
            frame
                .get(at..at + 2)
                .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]) as usize)
        };
        let ip = ethernet::HEADER_LEN;
        // The IP header's length and where the packet ends, per family.
        let (ip_header, end, gso) = if be16(12) == ethernet::ETHERTYPE_IPV6 as usize {
            let end = ip + ipv6::HEADER_LEN + be16(ip + 4);
            (ipv6::HEADER_LEN, end, GSO_TCPV6)
        } else {
            (ipv4::HEADER_LEN, ip + be16(ip + 2), GSO_TCPV4)
        };
        let tcp_start = ip + ip_header;
        let data_offset = frame
            .get(tcp_start + 12)
            .map_or(tcp::HEADER_LEN, |b| (b >> 4) as usize * 4);
        let headers = tcp_start + data_offset;
        let payload = end.saturating_sub(headers);
        let cut = payload > segment_size as usize;
        VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: if cut { gso } else { 0 },
            hdr_len: headers as u16,
            gso_size: if cut { segment_size } else { 0 },
            csum_start: tcp_start as u16,
            csum_offset: TCP_CHECKSUM_OFFSET,
        }
    }

    /// Asks a packet socket to copy the burst of `burst_len` bytes into one
    /// linear buffer. It copies `hdr_len` bytes there and the rest into
    /// pages of their own (net/packet/af_packet.c, `packet_alloc_skb`: up to
    /// 32 KiB each since Linux 6.6, 4 KiB before): one allocation and one
    /// contiguous copy for a 64 KiB burst instead of three or seventeen, and
    /// a receiver copies the text out in one piece. Only for a device that cuts
    /// bursts itself: the kernel's software GSO references a burst's pages
    /// in the segments it makes, but copies every segment out of a linear
    /// buffer. A whole frame is left as it is.
    pub fn linear(mut self, burst_len: usize) -> Self {
        if self.gso_type != 0 {
            let linear = burst_len.min(LINEAR_BURST_MAX) as u16;
            self.hdr_len = self.hdr_len.max(linear);
        }
        self
    }

    /// What a received frame's header says of its transport checksum.
    pub fn checksum(&self) -> RxChecksum {
        if self.flags & F_NEEDS_CSUM != 0 {
            RxChecksum::Partial {
                start: self.csum_start,
                offset: self.csum_offset,
            }
        } else if self.flags & F_DATA_VALID != 0 {
            RxChecksum::Verified
        } else {
            RxChecksum::Unverified
        }
    }

    /// The GSO type without the ECN bit.
    pub fn gso_kind(&self) -> u8 {
        self.gso_type & !GSO_ECN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_the_checksum_state() {
        let h = VnetHeader {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let b = h.emit();
        assert_eq!(b, [1, 0x81, 66, 0, 0xa8, 0x05, 34, 0, 16, 0]);
        assert_eq!(VnetHeader::parse(&b), h);
        assert_eq!(h.gso_kind(), GSO_TCPV4);
        assert_eq!(
            h.checksum(),
            RxChecksum::Partial {
                start: 34,
                offset: 16
            }
        );
        let valid = VnetHeader {
            flags: F_DATA_VALID,
            ..Default::default()
        };
        assert_eq!(valid.checksum(), RxChecksum::Verified);
        assert_eq!(VnetHeader::default().checksum(), RxChecksum::Unverified);
    }

    /// Ethernet, IPv4 and a 32-byte TCP header, for `payload` bytes.
    fn tcp_headers(payload: usize) -> Vec<u8> {
        let mut head = vec![0u8; 66];
        let ip_len = (ipv4::HEADER_LEN + 32 + payload) as u16;
        head[ethernet::HEADER_LEN + 2..ethernet::HEADER_LEN + 4]
            .copy_from_slice(&ip_len.to_be_bytes());
        head[ethernet::HEADER_LEN + ipv4::HEADER_LEN + 12] = 8 << 4;
        head
    }

    #[test]
    fn a_burst_is_cut_a_lone_segment_only_summed_a_whole_frame_left_alone() {
        assert_eq!(
            VnetHeader::for_tcp_burst(&[0; 60], 0),
            VnetHeader::default()
        );
        let h = VnetHeader::for_tcp_burst(&tcp_headers(3000), 1000);
        assert_eq!(
            (h.gso_type, h.hdr_len, h.csum_start, h.gso_size),
            (GSO_TCPV4, 66, 34, 1000)
        );
        assert_eq!(
            h.checksum(),
            RxChecksum::Partial {
                start: 34,
                offset: 16
            }
        );
        for payload in [0, 64, 1000] {
            let lone = VnetHeader::for_tcp_burst(&tcp_headers(payload), 1000);
            assert_eq!(
                (lone.flags, lone.gso_type, lone.gso_size),
                (F_NEEDS_CSUM, 0, 0),
                "{payload}"
            );
            assert_eq!((lone.csum_start, lone.csum_offset), (34, 16));
        }
    }

    #[test]
    fn an_ipv6_burst_is_cut_as_tcpv6_after_its_fixed_header() {
        let at = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
        let mut head = vec![0u8; at + 32];
        head[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV6.to_be_bytes());
        let ip_payload = (32 + 3000u16).to_be_bytes();
        head[ethernet::HEADER_LEN + 4..ethernet::HEADER_LEN + 6].copy_from_slice(&ip_payload);
        head[at + 12] = 8 << 4;
        let h = VnetHeader::for_tcp_burst(&head, 1428);
        assert_eq!(
            (h.flags, h.gso_type, h.hdr_len, h.gso_size),
            (F_NEEDS_CSUM, GSO_TCPV6, 86, 1428)
        );
        assert_eq!((h.csum_start, h.csum_offset), (54, 16));
        let lone = VnetHeader::for_tcp_burst(&head, 3000);
        assert_eq!((lone.gso_type, lone.gso_size, lone.csum_start), (0, 0, 54));
    }

    #[test]
    fn a_linear_burst_fits_one_64_kib_allocation_and_never_exceeds_the_frame() {
        let burst = VnetHeader::for_tcp_burst(&tcp_headers(65_000), 1448);
        assert_eq!(burst.linear(30_000).hdr_len, 30_000);
        assert_eq!(burst.linear(65_535).hdr_len as usize, LINEAR_BURST_MAX);
        // Never less than the headers the checksum needs, never more than the frame.
        assert_eq!(burst.linear(10).hdr_len, 66);
        assert_eq!(VnetHeader::default().linear(30_000), VnetHeader::default());
    }
}
