//! The boundary between the engine and a link. The trait is pure; its
//! implementations (pcap, in-memory link) do the I/O.

use crate::iface::{RxChecksum, TxFrame};
use crate::time::Instant;
use crate::wire::Held;
use std::io;
use std::ops::ControlFlow;

/// Takes each received frame, with what is known of its checksum, and says
/// whether to go on ([`ControlFlow::Continue`]) or to stop after it
/// ([`ControlFlow::Break`]: a waiting reader's buffer is full, the frames
/// still queued are better left for its next one, see
/// `socket/tcp/posted.rs`). Frames a device already took from the kernel
/// (a `recvmmsg` batch, a libpcap buffer) go to the sink regardless.
///
/// A device may keep a TCP frame's text where it is and hand on the frame
/// with its text [`Held`] (`wire/held_text.rs`): the engine then has the
/// text copied straight to where it belongs.
pub type FrameSink<'a> = dyn FnMut(&[u8], RxChecksum, Held<'_>) -> ControlFlow<()> + 'a;

/// Runs `take` on the whole of a received frame: a held text is read first
/// (for a wrapper that looks at every byte: a trace, injected faults).
/// `None` if the device could not read it (it counted that).
pub fn whole_frame<R>(frame: &[u8], held: Held<'_>, take: impl FnOnce(&[u8]) -> R) -> Option<R> {
    match held {
        None => Some(take(frame)),
        Some(held) => held.borrow_mut().whole_frame().map(take),
    }
}

/// The link under a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkState {
    #[default]
    Up,
    /// Taken down: no frame comes or goes until it is up again.
    Down,
    /// Deleted: the device waits for an interface of its name.
    Gone,
}

impl LinkState {
    /// As `stack.stats()["link"]` says it.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Gone => "gone",
        }
    }
}

/// What a device knows of its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Link {
    pub state: LinkState,
    /// How many times it came back after it was down or gone: the stack
    /// then forgets its neighbors and verifies its lease
    /// (`Stack::link_returned`).
    pub returns: u64,
    /// The interface's MTU, which the stack's follows (never above its own
    /// configured one); 0 where the device cannot tell.
    pub mtu: usize,
}

/// A link that moves whole Ethernet frames.
pub trait Device {
    /// Hands every frame available now to `sink`, until it says stop,
    /// without blocking; returns how many.
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize>;
    /// Sends one frame.
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()>;
    /// Sends `frames` in order and returns how many wire frames failed. A
    /// device that can hand the kernel many frames per system call, or cut
    /// TCP bursts itself, overrides it; by default bursts are cut here.
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        transmit_each(self, now, frames)
    }
    /// True if the last [`Device::receive`] emptied the device's queue as
    /// far as it can tell (a batch that came back short), so that the
    /// caller need not ask again before sleeping: one system call saved per
    /// round. False when it cannot tell.
    fn drained(&self) -> bool {
        false
    }
    /// The largest TCP burst (IPv4 packet) the device cuts into segments
    /// itself, as the kernel's segmentation offload does; 0 if it cannot.
    fn burst_capacity(&self) -> usize {
        0
    }
    /// The link under the device as it last saw it (`link_watch.rs`).
    fn link(&self) -> Link {
        Link::default()
    }
    /// When the device has work of its own due (frames a fault injector
    /// holds back), so that whoever runs the engine wakes for it.
    fn poll_at(&self) -> Option<Instant> {
        None
    }
}

/// Sends `frames` one wire frame at a time through `device.transmit`,
/// cutting bursts first; returns how many failed.
pub fn transmit_each<D: Device + ?Sized>(
    device: &mut D,
    now: Instant,
    frames: &[TxFrame],
) -> usize {
    let mut failed = 0;
    for frame in frames {
        frame.for_each_segment(&mut |f| failed += device.transmit(now, f).is_err() as usize);
    }
    failed
}
