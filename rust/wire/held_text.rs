//! A received segment's text that a device still holds: the engine reads
//! the headers, decides where the text belongs (a waiting reader's buffer,
//! the receive ring, both), and the device copies it there in one go.
//!
//! On Linux a peer's 64 KiB super-frame is larger than a receive-ring slot
//! and waits on the packet socket's queue (`phy/packet_ring.rs`). Read into
//! a buffer of ours first, its text took two copies on our thread, the first
//! from memory the sender's core just wrote; the kernel's own receiver copies
//! once, from the skb into the reader's buffer. With the text held, so do we:
//! one `recvmsg` scatters it straight to its places.
//!
//! The frame handed to the engine beside a held text has the real headers
//! and the real length, but its text bytes are not the frame's: nothing may
//! read them. [`held_tcp_text`] is the engine's check that a frame is
//! one whose text only TCP's receive path touches (through
//! [`SegmentText`]); any other frame is read whole first
//! ([`HeldText::whole_frame`]).

use super::{ethernet, ipv4, tcp};
use std::cell::RefCell;
use std::ops::Range;

/// The text of a frame still held by its device.
pub trait HeldText {
    /// The text's length in bytes.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the frame and copies its text from byte `skip` on into `parts`,
    /// in order (the parts' total no more than `len() - skip`). One read per
    /// frame: false if it was read before or the device failed (it counts
    /// the failure); then no part holds the text.
    fn scatter(&mut self, skip: usize, parts: &mut [&mut [u8]]) -> bool;
    /// Reads the whole frame, headers and text, for a consumer that needs
    /// its bytes (a trace, a frame that is not plain TCP); `None` if it was
    /// read before or the device failed.
    fn whole_frame(&mut self) -> Option<&[u8]>;
}

/// A held text as a device hands it on (shared: the engine's segment views
/// are shared borrows).
pub type Held<'a> = Option<&'a RefCell<dyn HeldText + 'a>>;

/// The text of a segment being received: bytes in memory, or held by the
/// device.
#[derive(Clone, Copy)]
pub struct SegmentText<'a> {
    bytes: &'a [u8],
    held: Held<'a>,
    /// Asked of a held text once, not at every look.
    len: usize,
}

impl<'a> SegmentText<'a> {
    pub fn here(bytes: &'a [u8]) -> Self {
        SegmentText {
            bytes,
            held: None,
            len: bytes.len(),
        }
    }

    /// `held`'s text, of `held.len()` bytes.
    pub fn held(held: &'a RefCell<dyn HeldText + 'a>) -> Self {
        SegmentText {
            bytes: &[],
            held: Some(held),
            len: held.borrow().len(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies the text from `skip` on into `parts`, in order; once per
    /// segment. False if a device could not read it (nothing was copied).
    pub fn scatter(&self, skip: usize, parts: &mut [&mut [u8]]) -> bool {
        if let Some(held) = self.held {
            return held.borrow_mut().scatter(skip, parts);
        }
        let mut at = skip;
        for part in parts.iter_mut() {
            let n = part.len();
            part.copy_from_slice(&self.bytes[at..at + n]);
            at += n;
        }
        true
    }
}

impl std::fmt::Debug for SegmentText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentText")
            .field("len", &self.len())
            .field("held", &self.held.is_some())
            .finish()
    }
}

/// Where `frame`'s TCP text lies if it is an Ethernet frame carrying an
/// unfragmented IPv4 TCP segment, whose text nothing but TCP's receive path
/// reads (its checksum vouched for below us); `None` for anything else.
/// Only the headers are read.
pub fn held_tcp_text(frame: &[u8]) -> Option<Range<usize>> {
    let eth = ethernet::Frame::new_checked(frame).ok()?;
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    if ip.is_fragment() || ip.protocol() != ipv4::PROTO_TCP {
        return None;
    }
    let segment = tcp::Segment::new_unverified(ip.payload()).ok()?;
    let start = ethernet::HEADER_LEN + ip.header_len() + segment.header_len();
    Some(start..ethernet::HEADER_LEN + ip.total_len())
}

/// A frame in memory handed on with its text held, as a device that
/// places text itself would hand it (tests, fuzzing): the engine gets
/// [`HeldInMemory::hollow`], whose text bytes are not the frame's.
pub struct HeldInMemory<'a> {
    frame: &'a [u8],
    text_at: usize,
    read: bool,
}

/// What a hollow frame carries where its text would be.
const HOLLOW_FILL: u8 = 0xEE;

impl<'a> HeldInMemory<'a> {
    /// `frame` with its TCP text held; a frame that is not plain TCP has
    /// none (the engine reads it whole).
    pub fn new(frame: &'a [u8]) -> Self {
        let text_at = held_tcp_text(frame).map_or(frame.len(), |text| text.start);
        HeldInMemory {
            frame,
            text_at,
            read: false,
        }
    }

    /// The frame as the engine sees it: its headers, then filler.
    pub fn hollow(&self) -> Vec<u8> {
        let mut hollow = vec![HOLLOW_FILL; self.frame.len()];
        hollow[..self.text_at].copy_from_slice(&self.frame[..self.text_at]);
        hollow
    }

    /// The text bytes themselves (what a read hands out).
    fn text(&self) -> &'a [u8] {
        &self.frame[self.text_at..]
    }
}

impl HeldText for HeldInMemory<'_> {
    fn len(&self) -> usize {
        self.text().len()
    }
    fn scatter(&mut self, skip: usize, parts: &mut [&mut [u8]]) -> bool {
        let wanted: usize = parts.iter().map(|p| p.len()).sum();
        if std::mem::replace(&mut self.read, true) || skip + wanted > self.len() {
            return false;
        }
        SegmentText::here(self.text()).scatter(skip, parts)
    }
    fn whole_frame(&mut self) -> Option<&[u8]> {
        (!std::mem::replace(&mut self.read, true)).then_some(self.frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_memory_scatters_from_an_offset() {
        let text = SegmentText::here(b"0123456789");
        let (mut a, mut b) = ([0u8; 3], [0u8; 4]);
        assert!(text.scatter(2, &mut [&mut a, &mut b]));
        assert_eq!((&a, &b), (b"234", b"5678"));
        assert_eq!(text.len(), 10);
    }

    #[test]
    fn a_frame_in_memory_is_read_once() {
        let mut frame = vec![0u8; 14 + 20 + 20 + 5];
        frame[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV4.to_be_bytes());
        frame[14] = 0x45;
        frame[16..18].copy_from_slice(&45u16.to_be_bytes());
        frame[23] = ipv4::PROTO_TCP;
        frame[14 + 20 + 12] = 5 << 4;
        frame[54..].copy_from_slice(b"hello");
        assert_eq!(held_tcp_text(&frame), Some(54..59));
        let mut held = HeldInMemory::new(&frame);
        assert_eq!(held.hollow()[..54], frame[..54]);
        assert_eq!(held.hollow()[54..], [HOLLOW_FILL; 5]);
        let mut part = [0u8; 3];
        assert!(held.scatter(1, &mut [&mut part]));
        assert_eq!(&part, b"ell");
        assert!(!held.scatter(0, &mut [&mut part]));
        assert_eq!(held.whole_frame(), None);
        // Not TCP: nothing held, the frame is read whole.
        frame[23] = ipv4::PROTO_UDP;
        let mut held = HeldInMemory::new(&frame);
        assert_eq!((held.len(), held.hollow()), (0, frame.clone()));
        assert_eq!(held.whole_frame(), Some(&frame[..]));
    }
}
