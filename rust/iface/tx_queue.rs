//! Outgoing frames waiting for the device. Buffers are reused, so the steady
//! state allocates nothing per frame.

use crate::wire::ethernet::MIN_FRAME_LEN;

/// The most frames held between two drains; beyond it frames are dropped.
pub const TX_QUEUE_LIMIT: usize = 4096;
const TYPICAL_FRAME: usize = 1514;

#[derive(Debug, Default)]
pub struct TxQueue {
    frames: Vec<Vec<u8>>,
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
    /// A zeroed buffer of `len` bytes (padded to the Ethernet minimum) at the
    /// tail of the queue, or `None` when the queue is full.
    pub fn push(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.len == TX_QUEUE_LIMIT {
            return None;
        }
        if self.len == self.frames.len() {
            self.frames.push(Vec::with_capacity(TYPICAL_FRAME));
        }
        let frame = &mut self.frames[self.len];
        self.len += 1;
        frame.clear();
        frame.resize(len.max(MIN_FRAME_LEN), 0);
        Some(frame)
    }
    /// Hands each queued frame to `send`, oldest first, and empties the queue.
    pub fn drain(&mut self, mut send: impl FnMut(&[u8])) {
        self.drain_batch(|frames| frames.iter().for_each(|f| send(f)));
    }
    /// Hands all queued frames to `send` at once, oldest first, and empties the queue.
    pub fn drain_batch(&mut self, send: impl FnOnce(&[Vec<u8>])) {
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
        q.drain(|f| seen.push((f.len(), f[0])));
        assert_eq!(seen, vec![(60, 7), (100, 0)]);
        assert!(q.is_empty());
        assert_eq!(q.push(20).unwrap()[0], 0, "reused buffers come back zeroed");
        for _ in 1..TX_QUEUE_LIMIT {
            q.push(60).unwrap();
        }
        assert!(q.push(60).is_none());
    }
}
