//! Sending, and delivering to ourselves what we address to ourselves.
//!
//! A connection, datagram or ping to the stack's own address never reaches
//! the wire: its frames (the only ones addressed to our own MAC) are taken
//! out of each batch for the device and handed to our own receive path
//! within the same flush, as a kernel passes them through its loopback
//! interface. They are delivered whole, a TCP burst as the one super-frame
//! it is, and their checksums are not checked again: they crossed no wire.
//! Like loopback traffic on Linux, they are not in the trace of the device.

use super::Stack;
use crate::iface::{DropReason, RxChecksum, TxFrame};
use crate::phy::Device;
use crate::time::Instant;
use crate::wire::MacAddress;

/// The most rounds one flush delivers to ourselves: a local exchange
/// settles in a few (text, its ACK, a window update). What a longer one
/// leaves waits for the next flush (`Stack::poll_at` says it is due).
const ROUNDS: usize = 16;

impl Stack {
    /// Sends the queued frames, and delivers those to ourselves (see the
    /// module's comment), until nothing more is queued.
    pub fn flush(&mut self, now: Instant, device: &mut dyn Device) {
        for _ in 0..ROUNDS {
            let mut looped = std::mem::take(&mut self.looped);
            self.transmit(now, device, &mut looped);
            if looped.is_empty() {
                return;
            }
            self.iface.set_looping(true);
            for frame in &looped {
                self.process_received(now, frame, RxChecksum::Verified, None);
            }
            self.iface.set_looping(false);
            self.delivered_to_self = true;
            self.dispatch(now);
        }
        let mut left = Vec::new();
        self.transmit(now, device, &mut left);
        self.looped = left;
    }

    /// Whether frames to ourselves wait for the next flush.
    pub(super) fn looped_waiting(&self) -> bool {
        !self.looped.is_empty()
    }

    /// Whether a flush since the last call delivered frames to ourselves:
    /// what they changed is news to every waiter, as a received frame's is,
    /// not only to the caller whose send made them.
    pub fn take_delivered_to_self(&mut self) -> bool {
        std::mem::take(&mut self.delivered_to_self)
    }

    /// Hands the queued frames to the device, but for those addressed to
    /// ourselves, which are appended to `looped`.
    fn transmit(&mut self, now: Instant, device: &mut dyn Device, looped: &mut Vec<Vec<u8>>) {
        let mut failed = 0;
        let mut not_out = (0, 0, 0); // wire frames, bytes, bursts
        let own = self.iface.mac();
        let tcp = &self.tcp;
        self.iface.drain_tx_batch(
            |t| tcp.sent_text(t.owner, t.from, t.len),
            |frames| {
                if !frames.iter().any(|f| addressed_to(f, own)) {
                    failed = device.transmit_batch(now, frames);
                    return;
                }
                let (ours, wire): (Vec<TxFrame<'_>>, Vec<TxFrame<'_>>) =
                    frames.iter().copied().partition(|f| addressed_to(f, own));
                for f in &ours {
                    let (count, bytes) = f.wire_size();
                    not_out.0 += count as u64;
                    not_out.1 += bytes as u64;
                    not_out.2 += (count > 1) as u64;
                    looped.push(f.contiguous().into_owned());
                }
                if !wire.is_empty() {
                    failed = device.transmit_batch(now, &wire);
                }
            },
        );
        self.iface.uncount_out(not_out);
        for _ in 0..failed {
            self.iface.count_drop(DropReason::TxError);
        }
    }
}

/// Whether `frame` goes to `mac` (its head holds the Ethernet header).
fn addressed_to(frame: &TxFrame<'_>, mac: MacAddress) -> bool {
    frame.head.get(..mac.0.len()) == Some(&mac.0[..])
}
