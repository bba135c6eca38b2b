//! Handing a busy event loop's transmissions to the driver thread.
//!
//! On a veth (as on loopback) the peer's receive runs inside the sender's
//! `sendmmsg`: its TCP input, its socket's wake-up. A kernel socket's
//! `send` pays the same. An event loop that is behind (requests wait at the
//! device, or sockets the driver made ready wait to be collected) pays it
//! for every reply, one after the other, while the driver thread sits idle
//! on the other core. So such a loop's call leaves a reply of several
//! frames queued, and the driver, woken once for all that gather, sends
//! them in one `sendmmsg` (frames the loop's own next round finds are sent
//! by it: whoever comes first). A loop with nothing waiting, or a reply of
//! one frame, sends at once: there the driver's wake-up and its turn at the
//! engine lock cost more than the peer's work saved (asyncio echo of 64
//! bytes on 100 connections fell from 2.5x the kernel to 1.6x when every
//! reply was handed off, while the dashboard rose 0.98x -> 1.16x).

use super::live::{Engine, LiveStack, Shared};
use super::ready_set::ReadySets;
use crate::stack::Stack;
use std::sync::atomic::Ordering;

/// The fewest queued frames (as on the wire) worth handing off.
const HAND_OFF_FRAMES: usize = 2;
/// The most left queued for the driver: a loop that goes on writing while
/// the driver has not had its turn sends them itself, long before the
/// device's queue (`TX_QUEUE_LIMIT` entries) could overflow.
const HAND_OFF_MOST: usize = 512;

impl LiveStack {
    /// Whether the frames a loop's call just queued are left to the driver
    /// (which is woken once for all that gather before it runs).
    pub(super) fn hand_off_transmit(&self, stack: &Stack, ready_sets: &ReadySets) -> bool {
        let s = &self.shared;
        let driver_free = s.loop_pollers.load(Ordering::Relaxed) > 0
            && s.driving.load(Ordering::Relaxed)
            && !s.leading.load(Ordering::Relaxed);
        let behind = || ready_sets.any_queued() || s.frames_waiting();
        if !worth_handing_off(driver_free, || stack.tx_queued(), behind) {
            return false;
        }
        if !s.handed_off.swap(true, Ordering::AcqRel) {
            s.wake.wake();
        }
        true
    }
}

/// The policy: a driver that runs under a loop and is not stepping aside
/// for a leader (checked first: blocking calls without a loop pay nothing
/// more), a reply of several frames (not so many that the device's queue
/// could fill before the driver's turn), and a loop that is behind (asked
/// last: it may cost a `poll`).
fn worth_handing_off(
    driver_free: bool,
    queued: impl FnOnce() -> usize,
    behind: impl FnOnce() -> bool,
) -> bool {
    driver_free && (HAND_OFF_FRAMES..=HAND_OFF_MOST).contains(&queued()) && behind()
}

/// The driver's side: sends what loops handed off. Checked before every
/// sleep, so that a wake-up drained with the flag still set is not lost.
pub(super) fn send_handed_off(shared: &Shared, engine: &mut Engine) {
    if shared.handed_off.swap(false, Ordering::AcqRel) {
        engine.flush_tx();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(queued: usize, driver_free: bool, behind: bool) -> bool {
        worth_handing_off(driver_free, || queued, || behind)
    }

    #[test]
    fn only_a_reply_of_several_frames_from_a_loop_that_is_behind_is_handed_off() {
        assert!(decide(2, true, true));
        assert!(decide(HAND_OFF_MOST, true, true));
        assert!(!decide(1, true, true), "one frame goes at once");
        assert!(
            !decide(HAND_OFF_MOST + 1, true, true),
            "so many frames go at once, before the device's queue could fill"
        );
        assert!(!decide(4, false, true), "no driver free");
        assert!(!decide(4, true, false), "a loop that keeps up");
    }

    #[test]
    fn the_costly_questions_come_last() {
        let (mut counted, mut asked) = (false, false);
        let no_driver = worth_handing_off(
            false,
            || {
                counted = true;
                4
            },
            || {
                asked = true;
                true
            },
        );
        assert!(
            !no_driver && !counted && !asked,
            "no driver: nothing counted or asked"
        );
        let one_frame = worth_handing_off(
            true,
            || 1,
            || {
                asked = true;
                true
            },
        );
        assert!(
            !one_frame && !asked,
            "nothing to hand off: the loop is not asked about"
        );
    }
}
