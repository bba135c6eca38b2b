//! The boundary between the engine and a link. The trait is pure; its
//! implementations (pcap, in-memory link) do the I/O.

use crate::time::Instant;
use std::io;

/// A link that moves whole Ethernet frames.
pub trait Device {
    /// Hands every frame available now to `sink` without blocking; returns how many.
    fn receive(&mut self, now: Instant, sink: &mut dyn FnMut(&[u8])) -> io::Result<usize>;
    /// Sends one frame.
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()>;
    /// Sends `frames` in order and returns how many failed. A device that can
    /// hand the kernel many frames per system call overrides it.
    fn transmit_batch(&mut self, now: Instant, frames: &[Vec<u8>]) -> usize {
        frames
            .iter()
            .filter(|frame| self.transmit(now, frame).is_err())
            .count()
    }
}
