//! Outgoing frames waiting for the device. Buffers are reused, so the steady
//! state allocates nothing per frame.

use super::segmentation::{segment_burst, wire_size};
use crate::wire::ethernet::MIN_FRAME_LEN;

/// The most frames held between two drains; beyond it frames are dropped.
pub const TX_QUEUE_LIMIT: usize = 4096;
const TYPICAL_FRAME: usize = 1514;

/// A frame for the device: one Ethernet frame, or a TCP burst that becomes
/// several on the wire (see [`TxFrame::segment_size`]).
#[derive(Debug, Default, Clone)]
pub struct TxFrame {
    pub bytes: Vec<u8>,
    /// 0 for one frame; else the TCP payload of each segment the burst is
    /// cut into, by the device's segmentation offload or by
    /// [`TxFrame::for_each_segment`]. Its TCP checksum holds the
    /// pseudo-header sum only.
    pub segment_size: u16,
}

impl TxFrame {
    /// Calls `out` with each frame this becomes on the wire.
    pub fn for_each_segment(&self, out: &mut dyn FnMut(&[u8])) {
        if self.segment_size == 0 {
            out(&self.bytes)
        } else {
            segment_burst(&self.bytes, self.segment_size as usize, out)
        }
    }
    /// The frames and bytes this becomes on the wire.
    pub fn wire_size(&self) -> (usize, usize) {
        wire_size(&self.bytes, self.segment_size as usize)
    }
}

#[derive(Debug, Default)]
pub struct TxQueue {
    frames: Vec<TxFrame>,
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
            .map(|f| f.wire_size().0)
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
        if self.len == TX_QUEUE_LIMIT {
            return None;
        }
        if self.len == self.frames.len() {
            self.frames.push(TxFrame {
                bytes: Vec::with_capacity(TYPICAL_FRAME),
                segment_size: 0,
            });
        }
        let frame = &mut self.frames[self.len];
        self.len += 1;
        frame.segment_size = segment_size;
        let padded = len.max(MIN_FRAME_LEN);
        // Grows with zeros, or shrinks keeping the old bytes; then zeroes
        // all that the caller does not write.
        frame.bytes.resize(padded, 0);
        frame.bytes[..written_from.min(len)].fill(0);
        frame.bytes[len..].fill(0);
        Some(&mut frame.bytes)
    }
    /// Hands all queued frames to `send` at once, oldest first, and empties the queue.
    pub fn drain_batch(&mut self, send: impl FnOnce(&[TxFrame])) {
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
}
