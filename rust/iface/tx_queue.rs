//! Outgoing frames waiting for the device. Buffers are reused, so the steady
//! state allocates nothing per frame.
//!
//! A TCP segment's text need not be copied in: a queued frame may hold its
//! headers alone and say where its text lies ([`TextRef`], in the
//! connection's send buffer, which keeps it until acknowledged). Whoever
//! drains the queue looks the text up and hands the device a [`TxFrame`]
//! of borrowed parts, so the bytes are copied once, by the kernel, as its
//! own TCP copies them once from the sending process.

use super::segmentation::{segment_burst, wire_size};
use crate::wire::ethernet::MIN_FRAME_LEN;
use std::borrow::Cow;

/// The most frames held between two drains; beyond it frames are dropped.
pub const TX_QUEUE_LIMIT: usize = 4096;
const TYPICAL_FRAME: usize = 1514;

/// Where a queued frame's text lies: `len` bytes of `owner`'s stream from
/// sequence number `from`. The queue does not know whose; the stack does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRef {
    pub owner: u64,
    pub from: u32,
    pub len: usize,
}

/// A frame for the device, borrowed: its headers (or the whole frame) and
/// the text that follows them, in up to two parts. A TCP burst (see
/// [`TxFrame::segment_size`]) becomes several frames on the wire.
#[derive(Debug, Clone, Copy)]
pub struct TxFrame<'a> {
    pub head: &'a [u8],
    pub text: [&'a [u8]; 2],
    /// 0 for one frame; else the TCP payload of each segment the burst is
    /// cut into, by the device's segmentation offload or by
    /// [`TxFrame::for_each_segment`] ([`CHECKSUM_ONLY`](super::CHECKSUM_ONLY): one segment, not
    /// cut). Its TCP checksum holds the pseudo-header sum only.
    pub segment_size: u16,
}

impl<'a> TxFrame<'a> {
    /// A frame in one piece.
    pub fn whole(bytes: &'a [u8], segment_size: u16) -> Self {
        TxFrame {
            head: bytes,
            text: [&[], &[]],
            segment_size,
        }
    }
    pub fn len(&self) -> usize {
        self.head.len() + self.text_len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn text_len(&self) -> usize {
        self.text[0].len() + self.text[1].len()
    }
    /// The pieces, in order, empty ones left out (for a gathering write).
    pub fn parts(&self) -> impl Iterator<Item = &'a [u8]> {
        [self.head, self.text[0], self.text[1]]
            .into_iter()
            .filter(|p| !p.is_empty())
    }
    /// The frame in one piece: borrowed when it is, else joined.
    pub fn contiguous(&self) -> Cow<'a, [u8]> {
        if self.text_len() == 0 {
            return Cow::Borrowed(self.head);
        }
        Cow::Owned([self.head, self.text[0], self.text[1]].concat())
    }
    /// Calls `out` with each frame this becomes on the wire.
    pub fn for_each_segment(&self, out: &mut dyn FnMut(&[u8])) {
        let whole = self.contiguous();
        if self.segment_size == 0 {
            out(&whole)
        } else {
            segment_burst(&whole, self.segment_size as usize, out)
        }
    }
    /// The frames and bytes this becomes on the wire.
    pub fn wire_size(&self) -> (usize, usize) {
        sizes(self.head, self.text_len(), self.segment_size)
    }
}

/// The frames and bytes of a frame of `head` followed by `text` bytes: a
/// frame with text apart holds its headers alone in `head`.
fn sizes(head: &[u8], text: usize, segment_size: u16) -> (usize, usize) {
    let segment_size = segment_size as usize;
    if text == 0 {
        return wire_size(head, segment_size);
    }
    if segment_size == 0 || text <= segment_size {
        return (1, head.len() + text);
    }
    let n = text.div_ceil(segment_size);
    (n, n * head.len() + text)
}

/// A queued frame: the bytes we wrote, and where its text is if not here.
#[derive(Debug, Default, Clone)]
pub struct QueuedFrame {
    pub bytes: Vec<u8>,
    pub segment_size: u16,
    pub text: Option<TextRef>,
}

impl QueuedFrame {
    /// The frame for the device, with its text as `find` gives it; `None`
    /// if the text is gone (acknowledged meanwhile: a retransmission an
    /// earlier copy made useless, or the connection is no more).
    pub fn view<'a, 't: 'a>(
        &'a self,
        find: &impl Fn(&TextRef) -> Option<(&'t [u8], &'t [u8])>,
    ) -> Option<TxFrame<'a>> {
        let mut frame = TxFrame::whole(&self.bytes, self.segment_size);
        if let Some(at) = &self.text {
            let (a, b) = find(at)?;
            if a.len() + b.len() != at.len {
                return None;
            }
            frame.text = [a, b];
        }
        Some(frame)
    }
    /// The frames this becomes on the wire.
    pub fn wire_frames(&self) -> usize {
        let text = self.text.map_or(0, |t| t.len);
        sizes(&self.bytes, text, self.segment_size).0
    }
}

#[derive(Debug, Default)]
pub struct TxQueue {
    frames: Vec<QueuedFrame>,
    len: usize,
}

impl TxQueue {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The frames the queue becomes on the wire (bursts cut into segments).
    pub fn wire_frames(&self) -> usize {
        self.frames[..self.len]
            .iter()
            .map(QueuedFrame::wire_frames)
            .sum()
    }
    /// A zeroed buffer of `len` bytes (padded to the Ethernet minimum) at the
    /// tail of the queue, or `None` when the queue is full.
    pub fn push(&mut self, len: usize) -> Option<&mut [u8]> {
        self.push_burst(len, 0, len)
    }
    /// As [`TxQueue::push`], for a TCP burst of segments of `segment_size`
    /// payload bytes (0: an ordinary frame), whose bytes from `written_from`
    /// to `len` the caller writes, every one: those are left as a reused
    /// buffer has them instead of being zeroed first (a 64 KiB burst's
    /// payload would be written twice; the zeroing was 4% of a sending
    /// thread). Padding up to the minimum frame is zeroed always.
    pub fn push_burst(
        &mut self,
        len: usize,
        segment_size: u16,
        written_from: usize,
    ) -> Option<&mut [u8]> {
        let frame = self.next()?;
        frame.segment_size = segment_size;
        let padded = len.max(MIN_FRAME_LEN);
        // Grows with zeros, or shrinks keeping the old bytes; then zeroes
        // all that the caller does not write.
        frame.bytes.resize(padded, 0);
        frame.bytes[..written_from.min(len)].fill(0);
        frame.bytes[len..].fill(0);
        Some(&mut frame.bytes)
    }
    /// A zeroed buffer for the `len` bytes of headers of a frame whose
    /// `text` stays where it is (see [`TextRef`]). No padding: the caller
    /// sends text enough for a frame of the minimum size.
    pub fn push_headers(
        &mut self,
        len: usize,
        segment_size: u16,
        text: TextRef,
    ) -> Option<&mut [u8]> {
        debug_assert!(len + text.len >= MIN_FRAME_LEN);
        let frame = self.next()?;
        frame.segment_size = segment_size;
        frame.text = Some(text);
        frame.bytes.clear();
        frame.bytes.resize(len, 0);
        Some(&mut frame.bytes)
    }
    /// The next entry, reset, or `None` when the queue is full.
    fn next(&mut self) -> Option<&mut QueuedFrame> {
        if self.len == TX_QUEUE_LIMIT {
            return None;
        }
        if self.len == self.frames.len() {
            self.frames.push(QueuedFrame {
                bytes: Vec::with_capacity(TYPICAL_FRAME),
                ..QueuedFrame::default()
            });
        }
        let frame = &mut self.frames[self.len];
        self.len += 1;
        frame.text = None;
        Some(frame)
    }
    /// Hands all queued frames to `send` at once, oldest first, and empties the queue.
    pub fn drain_batch(&mut self, send: impl FnOnce(&[QueuedFrame])) {
        send(&self.frames[..self.len]);
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_reuses_and_bounds() {
        let mut q = TxQueue::new();
        q.push(14).unwrap()[0] = 7;
        q.push(100).unwrap();
        let mut seen = vec![];
        q.drain_batch(|frames| seen.extend(frames.iter().map(|f| (f.bytes.len(), f.bytes[0]))));
        assert_eq!(seen, vec![(60, 7), (100, 0)]);
        assert!(q.is_empty());
        assert_eq!(q.push(20).unwrap()[0], 0, "reused buffers come back zeroed");
        q.drain_batch(|_| {});
        // Bytes the caller writes itself are not zeroed first; all else is.
        q.push_burst(100, 0, 100).unwrap().fill(9);
        q.drain_batch(|_| {});
        let buf = q.push_burst(80, 0, 20).unwrap();
        assert_eq!((buf.len(), &buf[..20], buf[20]), (80, &[0u8; 20][..], 9));
        q.drain_batch(|_| {});
        let short = q.push_burst(30, 0, 10).unwrap();
        assert_eq!(&short[30..], &[0u8; 30][..], "padding is zeroed");
        q.drain_batch(|_| {});
        for _ in 0..TX_QUEUE_LIMIT {
            q.push(60).unwrap();
        }
        assert!(q.push(60).is_none());
    }

    #[test]
    fn a_frame_with_its_text_apart_is_sent_with_it_or_not_at_all() {
        let mut q = TxQueue::new();
        let at = TextRef {
            owner: 3,
            from: 1000,
            len: 100,
        };
        q.push_headers(54, 0, at).unwrap().fill(1);
        q.push(60).unwrap();
        assert_eq!(q.wire_frames(), 2);
        let text = [5u8; 100];
        let found = |r: &TextRef| (r.owner == 3).then(|| (&text[..40], &text[40..]));
        q.drain_batch(|frames| {
            let f = frames[0].view(&found).unwrap();
            assert_eq!((f.len(), f.wire_size()), (154, (1, 154)));
            assert_eq!(f.parts().count(), 3);
            let whole = f.contiguous();
            assert_eq!((&whole[..54], &whole[54..]), (&[1u8; 54][..], &text[..]));
            assert!(frames[1].view(&found).unwrap().text_len() == 0);
            // Text that is gone, or shorter than the frame said: not sent.
            assert!(frames[0].view(&|_| None).is_none());
            assert!(frames[0].view(&|_| Some((&text[..10], &[][..]))).is_none());
        });
        // A reused entry forgets the text it had.
        q.push(60).unwrap();
        q.drain_batch(|frames| assert_eq!(frames[0].text, None));
    }

    #[test]
    fn a_burst_with_its_text_apart_counts_its_segments() {
        let head = [0u8; 66];
        let text = [0u8; 3000];
        let f = TxFrame {
            head: &head,
            text: [&text[..1000], &text[1000..]],
            segment_size: 1448,
        };
        assert_eq!(f.wire_size(), (3, 3 * 66 + 3000));
    }
}
