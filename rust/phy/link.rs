//! An in-memory Ethernet link between two stacks, with simulated time and a
//! fault injector per direction: the ground for deterministic tests.

use super::fault::{FaultConfig, FaultInjector, FaultStats};
use super::{Device, FrameSink, RxChecksum};
use crate::time::Instant;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::rc::Rc;

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Instant,
    seq: u64,
    frame: Vec<u8>,
}

#[derive(Debug)]
struct Direction {
    faults: FaultInjector,
    queue: BinaryHeap<Reverse<InFlight>>,
}

#[derive(Debug)]
struct Wire {
    /// `dirs[i]` carries frames sent by end `i`.
    dirs: [Direction; 2],
    seq: u64,
}

/// One end of a [`pair`].
#[derive(Debug, Clone)]
pub struct LinkEnd {
    wire: Rc<RefCell<Wire>>,
    side: usize,
}

/// Two connected ends; frames from each end pass through its own fault injector.
pub fn pair(faults: FaultConfig, seed: u64) -> (LinkEnd, LinkEnd) {
    let dir = |s| Direction {
        faults: FaultInjector::new(faults.clone(), s),
        queue: BinaryHeap::new(),
    };
    let wire = Rc::new(RefCell::new(Wire {
        dirs: [dir(seed), dir(seed ^ 0x9e37_79b9_7f4a_7c15)],
        seq: 0,
    }));
    (
        LinkEnd {
            wire: wire.clone(),
            side: 0,
        },
        LinkEnd { wire, side: 1 },
    )
}

impl LinkEnd {
    /// When the next frame toward this end arrives, if any is in flight.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.wire.borrow().dirs[1 - self.side]
            .queue
            .peek()
            .map(|Reverse(f)| f.at)
    }
    /// What the injector did to frames sent from this end.
    pub fn fault_stats(&self) -> FaultStats {
        self.wire.borrow().dirs[self.side].faults.stats()
    }
    /// Puts a frame on the wire toward the other end, as if this end sent it.
    pub fn inject(&self, now: Instant, frame: &[u8]) {
        let mut wire = self.wire.borrow_mut();
        let Wire { dirs, seq } = &mut *wire;
        let dir = &mut dirs[self.side];
        let queue = &mut dir.queue;
        dir.faults.apply(now, frame, |at, frame| {
            *seq += 1;
            queue.push(Reverse(InFlight {
                at,
                seq: *seq,
                frame,
            }));
        });
    }
}

impl Device for LinkEnd {
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        let mut n = 0;
        loop {
            let frame = {
                let mut wire = self.wire.borrow_mut();
                let queue = &mut wire.dirs[1 - self.side].queue;
                match queue.peek() {
                    Some(Reverse(f)) if f.at <= now => queue.pop().map(|Reverse(f)| f.frame),
                    _ => None,
                }
            };
            let Some(frame) = frame else { return Ok(n) };
            n += 1;
            if sink(&frame, RxChecksum::Unverified, None).is_break() {
                return Ok(n);
            }
        }
    }

    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()> {
        self.inject(now, frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn frames_arrive_after_the_delay_in_order() {
        let (mut a, mut b) = pair(FaultConfig::latency(Duration::from_millis(5)), 1);
        a.transmit(Instant::ZERO, b"one").unwrap();
        a.transmit(Instant::ZERO, b"two").unwrap();
        assert_eq!(b.next_arrival(), Some(Instant::from_millis(5)));
        let mut got = vec![];
        b.receive(Instant::from_millis(4), &mut |f, _, _| {
            got.push(f.to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert!(got.is_empty());
        b.receive(Instant::from_millis(5), &mut |f, _, _| {
            got.push(f.to_vec());
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(a.next_arrival(), None);
    }
}
