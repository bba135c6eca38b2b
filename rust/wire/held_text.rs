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
}

impl<'a> SegmentText<'a> {
    pub fn here(bytes: &'a [u8]) -> Self {
        SegmentText { bytes, held: None }
    }

    /// `held`'s text, of `held.len()` bytes.
    pub fn held(held: &'a RefCell<dyn HeldText + 'a>) -> Self {
        SegmentText {
            bytes: &[],
            held: Some(held),
        }
    }

    pub fn len(&self) -> usize {
        match self.held {
            Some(h) => h.borrow().len(),
            None => self.bytes.len(),
        }
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
}
