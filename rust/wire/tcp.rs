//! TCP segments (RFC 9293 §3.1) with the options of RFC 9293 (MSS),
//! RFC 7323 (window scale, timestamps) and RFC 2018 (SACK).

use super::checksum::{self, PseudoHeader};
use super::ipv4::PROTO_TCP;
use super::{be16, be32, Error, Result};

pub const HEADER_LEN: usize = 20;
/// The most SACK blocks an option can carry (40 bytes of options).
pub const MAX_SACK_BLOCKS: usize = 4;

/// Control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: Flags = Flags(0x01);
    pub const SYN: Flags = Flags(0x02);
    pub const RST: Flags = Flags(0x04);
    pub const PSH: Flags = Flags(0x08);
    pub const ACK: Flags = Flags(0x10);

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl core::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// The options we understand; others are skipped by their length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (timestamp value, echo reply), RFC 7323 §3.
    pub timestamps: Option<(u32, u32)>,
    pub sack_blocks: [(u32, u32); MAX_SACK_BLOCKS],
    pub sack_count: u8,
}

const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WINDOW_SCALE: u8 = 3;
const OPT_SACK_PERMITTED: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMPS: u8 = 8;

impl Options {
    /// Parses the option bytes of a header. A length that is below 2 or runs
    /// past the header is `Malformed` (RFC 9293 §3.1 "Options").
    pub fn parse(mut buf: &[u8]) -> Result<Options> {
        let mut o = Options::default();
        while let Some((&kind, rest)) = buf.split_first() {
            match kind {
                OPT_END => break,
                OPT_NOP => {
                    buf = rest;
                    continue;
                }
                _ => {}
            }
            let len = *rest.first().ok_or(Error::Malformed)? as usize;
            if len < 2 || len > buf.len() {
                return Err(Error::Malformed);
            }
            let data = &buf[2..len];
            match (kind, data.len()) {
                (OPT_MSS, 2) => o.mss = Some(be16(data, 0)),
                (OPT_WINDOW_SCALE, 1) => o.window_scale = Some(data[0].min(14)), // RFC 7323 §2.3
                (OPT_SACK_PERMITTED, 0) => o.sack_permitted = true,
                (OPT_TIMESTAMPS, 8) => o.timestamps = Some((be32(data, 0), be32(data, 4))),
                (OPT_SACK, n) if n % 8 == 0 && n > 0 => {
                    for (i, block) in data.chunks_exact(8).take(MAX_SACK_BLOCKS).enumerate() {
                        o.sack_blocks[i] = (be32(block, 0), be32(block, 4));
                        o.sack_count = i as u8 + 1;
                    }
                }
                (
                    OPT_MSS | OPT_WINDOW_SCALE | OPT_SACK_PERMITTED | OPT_TIMESTAMPS | OPT_SACK,
                    _,
                ) => return Err(Error::Malformed),
                _ => {}
            }
            buf = &buf[len..];
        }
        Ok(o)
    }

    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack_blocks[..self.sack_count as usize]
    }

    /// Bytes the options take on the wire: every option sits in its own
    /// 32-bit-aligned slot (see `Options::emit`), so no padding is needed.
    pub fn wire_len(&self) -> usize {
        let mut n = 0;
        n += if self.mss.is_some() { 4 } else { 0 };
        n += if self.window_scale.is_some() { 4 } else { 0 };
        n += match (self.sack_permitted, self.timestamps.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        n += if self.sack_count > 0 {
            4 + 8 * self.sack_count as usize
        } else {
            0
        };
        n
    }

    /// Writes the options into `buf[..wire_len()]` in the layout of RFC 7323
    /// Appendix A: each one NOP-padded to a 32-bit boundary in front, so that
    /// a data segment's options are exactly `NOP NOP TS`. Linux takes its
    /// header-prediction fast path (and coalesces and ACKs less) only for
    /// that layout; a timestamp at another offset sends every segment down
    /// its slow path.
    fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            put(&[OPT_MSS, 4, m[0], m[1]]);
        }
        match (self.sack_permitted, self.timestamps) {
            (sack_permitted, Some((val, ecr))) => {
                put(&if sack_permitted {
                    [OPT_SACK_PERMITTED, 2]
                } else {
                    [OPT_NOP, OPT_NOP]
                });
                put(&[OPT_TIMESTAMPS, 10]);
                put(&val.to_be_bytes());
                put(&ecr.to_be_bytes());
            }
            (true, None) => put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(ws) = self.window_scale {
            put(&[OPT_NOP, OPT_WINDOW_SCALE, 3, ws]);
        }
        if self.sack_count > 0 {
            put(&[OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * self.sack_count]);
            for (l, r) in self.sack_blocks() {
                put(&l.to_be_bytes());
                put(&r.to_be_bytes());
            }
        }
    }
}

/// A checked view of a TCP segment.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    buf: &'a [u8],
}

impl<'a> Segment<'a> {
    /// Checks the data offset against the buffer and the checksum with the pseudo-header.
    pub fn new_checked<A: PseudoHeader>(buf: &'a [u8], src: A, dst: A) -> Result<Self> {
        let segment = Self::new_unverified(buf)?;
        let acc = A::pseudo_header(src, dst, PROTO_TCP, buf.len());
        if checksum::fold(checksum::accumulate(acc, buf)) != 0xffff {
            return Err(Error::Checksum);
        }
        Ok(segment)
    }

    /// Checks the data offset only: for a segment whose checksum the
    /// host's kernel vouches for (see `iface::RxChecksum`).
    pub fn new_unverified(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = (buf[12] >> 4) as usize * 4;
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if header_len > buf.len() {
            return Err(Error::Truncated);
        }
        Ok(Segment { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn seq(&self) -> u32 {
        be32(self.buf, 4)
    }
    pub fn ack(&self) -> u32 {
        be32(self.buf, 8)
    }
    pub fn header_len(&self) -> usize {
        (self.buf[12] >> 4) as usize * 4
    }
    pub fn flags(&self) -> Flags {
        Flags(self.buf[13])
    }
    pub fn window(&self) -> u16 {
        be16(self.buf, 14)
    }
    pub fn options(&self) -> Result<Options> {
        Options::parse(&self.buf[HEADER_LEN..self.header_len()])
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..]
    }
    /// Sequence space the segment occupies: payload plus one for SYN and one for FIN.
    pub fn seq_len(&self) -> u32 {
        let f = self.flags();
        self.payload().len() as u32 + f.contains(Flags::SYN) as u32 + f.contains(Flags::FIN) as u32
    }
}

/// The fields of an outgoing segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: Flags,
    pub window: u16,
    pub options: Options,
}

impl Repr {
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.wire_len()
    }

    /// Writes the header into `buf[..header_len()]`, over a payload already in
    /// `buf[header_len()..header_len() + payload_len]`, and computes the checksum.
    pub fn emit<A: PseudoHeader>(&self, buf: &mut [u8], payload_len: usize, src: A, dst: A) {
        let len = self.header_len() + payload_len;
        let acc = self.emit_header(buf, len, src, dst);
        let c = !checksum::fold(checksum::accumulate(acc, &buf[..len]));
        buf[16..18].copy_from_slice(&c.to_be_bytes());
    }

    /// As [`Repr::emit`] with the payload elsewhere: `buf` takes the header
    /// alone, and the checksum covers the `text` that will follow it.
    pub fn emit_with_text<A: PseudoHeader>(
        &self,
        buf: &mut [u8],
        text: (&[u8], &[u8]),
        src: A,
        dst: A,
    ) {
        let header_len = self.header_len();
        let len = header_len + text.0.len() + text.1.len();
        let acc = self.emit_header(buf, len, src, dst);
        let acc = checksum::accumulate_parts(acc, &[&buf[..header_len], text.0, text.1]);
        buf[16..18].copy_from_slice(&(!checksum::fold(acc)).to_be_bytes());
    }

    /// As [`Repr::emit`], for a burst that is cut into segments later (see
    /// `iface::segment_burst`, or the kernel's segmentation offload): the
    /// checksum field holds the folded pseudo-header sum alone, Linux's
    /// CHECKSUM_PARTIAL convention, and the payload is not summed here.
    pub fn emit_partial<A: PseudoHeader>(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        src: A,
        dst: A,
    ) {
        let acc = self.emit_header(buf, self.header_len() + payload_len, src, dst);
        buf[16..18].copy_from_slice(&checksum::fold(acc).to_be_bytes());
    }

    /// Writes every header field but the checksum (left zero); returns the
    /// pseudo-header accumulator for a segment of `len` bytes.
    fn emit_header<A: PseudoHeader>(&self, buf: &mut [u8], len: usize, src: A, dst: A) -> u64 {
        let header_len = self.header_len();
        buf[0..2].copy_from_slice(&self.src_port.to_be_bytes());
        buf[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        buf[4..8].copy_from_slice(&self.seq.to_be_bytes());
        buf[8..12].copy_from_slice(&self.ack.to_be_bytes());
        buf[12] = ((header_len / 4) as u8) << 4;
        buf[13] = self.flags.0;
        buf[14..16].copy_from_slice(&self.window.to_be_bytes());
        buf[16..20].copy_from_slice(&[0, 0, 0, 0]);
        self.options.emit(&mut buf[HEADER_LEN..header_len]);
        A::pseudo_header(src, dst, PROTO_TCP, len)
    }

    /// RFC 9293 §3.10.7.1: the reset answering `seg` when no connection
    /// exists; `None` for an incoming reset (never answer a RST).
    pub fn reset_for(seg: &Segment<'_>) -> Option<Repr> {
        let flags = seg.flags();
        if flags.contains(Flags::RST) {
            return None;
        }
        let mut r = Repr {
            src_port: seg.dst_port(),
            dst_port: seg.src_port(),
            ..Default::default()
        };
        if flags.contains(Flags::ACK) {
            r.seq = seg.ack();
            r.flags = Flags::RST;
        } else {
            r.ack = seg.seq().wrapping_add(seg.seq_len());
            r.flags = Flags::RST | Flags::ACK;
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Ipv4Addr;

    const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

    fn syn() -> Repr {
        let mut options = Options {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((11, 0)),
            ..Default::default()
        };
        options.sack_blocks[0] = (100, 200);
        options.sack_count = 1;
        Repr {
            src_port: 40000,
            dst_port: 80,
            seq: 7,
            ack: 0,
            flags: Flags::SYN,
            window: 64240,
            options,
        }
    }

    fn emit(r: &Repr, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; r.header_len() + payload.len()];
        buf[r.header_len()..].copy_from_slice(payload);
        r.emit(&mut buf, payload.len(), A, B);
        buf
    }

    #[test]
    fn round_trip_with_options() {
        let r = syn();
        let buf = emit(&r, b"data");
        assert_eq!(r.header_len() % 4, 0);
        let s = Segment::new_checked(&buf, A, B).unwrap();
        assert_eq!(
            (s.src_port(), s.dst_port(), s.seq(), s.ack(), s.window()),
            (40000, 80, 7, 0, 64240)
        );
        assert_eq!(s.flags(), Flags::SYN);
        assert_eq!(s.options().unwrap(), r.options);
        assert_eq!(s.payload(), b"data");
        assert_eq!(s.seq_len(), 5);
    }

    #[test]
    fn a_header_written_apart_from_its_text_has_the_same_checksum() {
        let r = syn();
        let text = b"an odd-sized text, split anywhere";
        let whole = emit(&r, text);
        for cut in [0, 1, 8, 17, text.len()] {
            let mut head = vec![0u8; r.header_len()];
            r.emit_with_text(&mut head, (&text[..cut], &text[cut..]), A, B);
            assert_eq!(head[..], whole[..r.header_len()], "cut at {cut}");
        }
    }

    #[test]
    fn options_use_the_aligned_layout_of_rfc_7323_appendix_a() {
        let data = Repr {
            flags: Flags::ACK,
            options: Options {
                timestamps: Some((0x01020304, 0x05060708)),
                ..Default::default()
            },
            ..syn()
        };
        let buf = emit(&data, b"x");
        assert_eq!(data.header_len(), 32);
        assert_eq!(&buf[20..32], &[1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8]);
        let full = syn();
        let buf = emit(&full, b"");
        assert_eq!(full.header_len(), 20 + 4 + 12 + 4 + 12);
        assert_eq!(&buf[20..24], &[2, 4, 0x05, 0xb4]);
        assert_eq!(&buf[24..28], &[4, 2, 8, 10]);
        assert_eq!(&buf[36..40], &[1, 3, 3, 7]);
        assert_eq!(&buf[40..44], &[1, 1, 5, 10]);
        // Three SACK blocks still fit beside the timestamps (40 bytes of options).
        let mut most = data;
        most.options.sack_count = 3;
        assert_eq!(most.header_len(), 60);
        let buf = emit(&most, b"");
        let s = Segment::new_checked(&buf, A, B).unwrap();
        assert_eq!(s.options().unwrap(), most.options);
    }

    #[test]
    fn rejects_bad_input() {
        let buf = emit(&syn(), b"");
        assert_eq!(
            Segment::new_checked(&buf[..19], A, B).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Segment::new_checked(&buf, A, A).unwrap_err(),
            Error::Checksum
        );
        let mut short_offset = emit(
            &Repr {
                options: Options::default(),
                ..syn()
            },
            b"",
        );
        short_offset[12] = 0x40;
        assert_eq!(
            Segment::new_checked(&short_offset, A, B).unwrap_err(),
            Error::Malformed
        );
        let mut long_offset = short_offset.clone();
        long_offset[12] = 0xf0;
        assert_eq!(
            Segment::new_checked(&long_offset, A, B).unwrap_err(),
            Error::Truncated
        );
        for bad in [
            &[2u8, 4, 5][..],
            &[2, 0],
            &[2, 1, 0, 0],
            &[8, 12, 0, 0],
            &[5, 3, 0],
            &[3],
        ] {
            assert_eq!(Options::parse(bad), Err(Error::Malformed), "{bad:?}");
        }
        // Unknown options are skipped; END stops parsing.
        assert_eq!(
            Options::parse(&[30, 3, 9, 1, 0, 2, 4]).unwrap(),
            Options::default()
        );
    }

    #[test]
    fn resets_follow_rfc9293() {
        let syn_buf = emit(
            &Repr {
                options: Options::default(),
                ..syn()
            },
            b"",
        );
        let s = Segment::new_checked(&syn_buf, A, B).unwrap();
        let rst = Repr::reset_for(&s).unwrap();
        assert_eq!(
            (rst.flags, rst.seq, rst.ack, rst.src_port, rst.dst_port),
            (Flags::RST | Flags::ACK, 0, 8, 80, 40000)
        );
        let ack = Repr {
            flags: Flags::ACK,
            ack: 999,
            options: Options::default(),
            ..syn()
        };
        let ack_buf = emit(&ack, b"xy");
        let rst = Repr::reset_for(&Segment::new_checked(&ack_buf, A, B).unwrap()).unwrap();
        assert_eq!((rst.flags, rst.seq), (Flags::RST, 999));
        let r = Repr {
            flags: Flags::RST,
            options: Options::default(),
            ..syn()
        };
        let r_buf = emit(&r, b"");
        assert!(Repr::reset_for(&Segment::new_checked(&r_buf, A, B).unwrap()).is_none());
    }
}
