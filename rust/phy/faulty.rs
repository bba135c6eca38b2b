//! Fault injection on any device, both directions: for testing recovery
//! against a real peer over a live interface. Loss, duplication and
//! corruption apply at once; a frame delayed (reordering, latency) is held
//! here until its time, which [`Device::poll_at`] tells the engine, so that
//! the frames behind it pass it. Bounded: past [`HELD_MAX`] held frames a
//! direction delivers at once.

use super::device::transmit_each;
use super::fault::{FaultConfig, FaultInjector, FaultStats};
use super::{whole_frame, Device, FrameSink, Link, RxChecksum};
use crate::iface::TxFrame;
use crate::time::{earliest, Instant};
use crate::wire::checksum::finish_partial;
use std::io;
use std::ops::ControlFlow;

/// Frames held back per direction at most.
pub const HELD_MAX: usize = 1024;

pub struct Faulty<D> {
    pub inner: D,
    faults: Option<(FaultInjector, FaultInjector)>,
    config: Option<FaultConfig>,
    seed: u64,
    /// Received frames delayed, by release time (earliest last).
    held_rx: Held,
    /// Transmitted frames delayed.
    held_tx: Held,
}

/// Frames held until their time, earliest at the end.
#[derive(Default)]
struct Held(Vec<(Instant, Vec<u8>)>);

impl Held {
    /// Holds `frame` until `at`; false (not held) when full.
    fn hold(&mut self, at: Instant, frame: Vec<u8>) -> bool {
        if self.0.len() >= HELD_MAX {
            return false;
        }
        // Later frames first: one released at the same time as an earlier
        // one keeps its order behind it.
        let i = self.0.partition_point(|(t, _)| *t > at);
        self.0.insert(i, (at, frame));
        true
    }

    /// The next frame due by `now`.
    fn due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.0.last() {
            Some((t, _)) if *t <= now => self.0.pop().map(|(_, f)| f),
            _ => None,
        }
    }

    fn next(&self) -> Option<Instant> {
        self.0.last().map(|(t, _)| *t)
    }
}

impl<D> Faulty<D> {
    /// `config` None passes every frame untouched at no cost.
    pub fn new(inner: D, config: Option<FaultConfig>, seed: u64) -> Self {
        let mut faulty = Faulty {
            inner,
            faults: None,
            config: None,
            seed,
            held_rx: Held::default(),
            held_tx: Held::default(),
        };
        faulty.configure(config);
        faulty
    }

    /// Changes the faults from now on (None: none); counts start again.
    /// Frames held back stay until their time.
    pub fn configure(&mut self, config: Option<FaultConfig>) {
        let seed = self.seed;
        self.faults = config.clone().map(|c| {
            (
                FaultInjector::new(c.clone(), seed),
                FaultInjector::new(c, seed ^ 0x5851_f42d_4c95_7f2d),
            )
        });
        self.config = config;
    }

    pub fn config(&self) -> Option<&FaultConfig> {
        self.config.as_ref()
    }
    /// What was done to (received, transmitted) frames.
    pub fn stats(&self) -> Option<(FaultStats, FaultStats)> {
        self.faults
            .as_ref()
            .map(|(rx, tx)| (rx.stats(), tx.stats()))
    }
}

impl<D: Device> Faulty<D> {
    /// Sends the held transmitted frames whose time has come.
    fn release_tx(&mut self, now: Instant) -> io::Result<()> {
        let mut result = Ok(());
        while let Some(frame) = self.held_tx.due(now) {
            if let Err(e) = self.inner.transmit(now, &frame) {
                result = Err(e);
            }
        }
        result
    }
}

impl<D: Device> Device for Faulty<D> {
    /// Faults strike what a wire carries: a partial checksum is finished
    /// first, and every frame is then verified by the engine (so that a
    /// corrupted one is caught).
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        let _ = self.release_tx(now); // send failures are the engine's counted drops either way
        let mut released = 0;
        // Frames held back were taken already: all go on, as a batch read does.
        while let Some(frame) = self.held_rx.due(now) {
            let _ = sink(&frame, RxChecksum::Unverified, None);
            released += 1;
        }
        let held = &mut self.held_rx;
        let n = match &mut self.faults {
            None => self.inner.receive(now, sink)?,
            Some((rx, _)) => self.inner.receive(now, &mut |frame, checksum, held_text| {
                whole_frame(frame, held_text, |frame| {
                    let mut flow = ControlFlow::Continue(());
                    let mut deliver = |at: Instant, f: Vec<u8>| {
                        if (at <= now || !held.hold(at, f.clone()))
                            && sink(&f, RxChecksum::Unverified, None).is_break()
                        {
                            flow = ControlFlow::Break(());
                        }
                    };
                    match checksum {
                        RxChecksum::Partial { start, offset } => {
                            let mut whole = frame.to_vec();
                            finish_partial(&mut whole, start, offset);
                            rx.apply(now, &whole, &mut deliver)
                        }
                        _ => rx.apply(now, frame, &mut deliver),
                    }
                    flow
                })
                .unwrap_or(ControlFlow::Continue(()))
            })?,
        };
        Ok(n + released)
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()> {
        self.release_tx(now)?;
        match &mut self.faults {
            None => self.inner.transmit(now, frame),
            Some((_, tx)) => {
                let mut result = Ok(());
                let inner = &mut self.inner;
                let held = &mut self.held_tx;
                tx.apply(now, frame, |at, f| {
                    if at > now && held.hold(at, f.clone()) {
                        return;
                    }
                    if let Err(e) = inner.transmit(now, &f) {
                        result = Err(e);
                    }
                });
                result
            }
        }
    }
    fn link(&self) -> Link {
        self.inner.link()
    }
    fn poll_at(&self) -> Option<Instant> {
        let held = earliest(self.held_rx.next(), self.held_tx.next());
        earliest(held, self.inner.poll_at())
    }
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        match self.faults {
            None => self.inner.transmit_batch(now, frames),
            // Faults strike wire frames: bursts are cut first.
            Some(_) => transmit_each(self, now, frames),
        }
    }
    fn drained(&self) -> bool {
        self.inner.drained()
    }
    fn burst_capacity(&self) -> usize {
        match self.faults {
            None => self.inner.burst_capacity(),
            Some(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use std::collections::VecDeque;

    /// A device that hands out its `rx` frames at once and keeps what is sent.
    #[derive(Default)]
    struct Script {
        rx: VecDeque<Vec<u8>>,
        tx: Vec<Vec<u8>>,
    }

    impl Device for Script {
        fn receive(&mut self, _now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
            let n = self.rx.len();
            for f in self.rx.drain(..) {
                let _ = sink(&f, RxChecksum::Unverified, None);
            }
            Ok(n)
        }
        fn transmit(&mut self, _now: Instant, frame: &[u8]) -> io::Result<()> {
            self.tx.push(frame.to_vec());
            Ok(())
        }
    }

    fn numbered(n: u8) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i; 60]).collect()
    }

    #[test]
    fn reordered_frames_are_held_until_their_time_then_delivered_once_each() {
        let delay = Duration::from_millis(3);
        let config = FaultConfig {
            reorder: 0.3,
            reorder_delay: delay,
            ..FaultConfig::default()
        };
        let mut dev = Faulty::new(Script::default(), Some(config), 7);
        let t0 = Instant::from_millis(10);
        dev.inner.rx.extend(numbered(50));
        let mut got = Vec::new();
        dev.receive(t0, &mut |f, _, _| {
            got.push(f[0]);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        for f in numbered(50) {
            dev.transmit(t0, &f).unwrap();
        }
        let (rx, tx) = dev.stats().unwrap();
        assert!(rx.reordered > 5 && tx.reordered > 5, "{rx:?} {tx:?}");
        assert_eq!(got.len() as u64, 50 - rx.reordered, "the held ones wait");
        assert_eq!(dev.inner.tx.len() as u64, 50 - tx.reordered);
        assert_eq!(dev.poll_at(), Some(t0 + delay), "the engine is told when");

        dev.receive(t0 + delay - Duration::from_micros(1), &mut |f, _, _| {
            got.push(f[0]);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(got.len() as u64, 50 - rx.reordered, "not before their time");
        dev.receive(t0 + delay, &mut |f, _, _| {
            got.push(f[0]);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(dev.poll_at(), None, "nothing held any more");
        let sent: Vec<u8> = dev.inner.tx.iter().map(|f| f[0]).collect();
        for order in [&got, &sent] {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..50).collect::<Vec<u8>>(), "each frame once");
            assert_ne!(*order, sorted, "later frames passed the held ones");
        }
    }

    #[test]
    fn a_full_hold_delivers_at_once_rather_than_grow() {
        let config = FaultConfig {
            delay: Duration::from_millis(5),
            ..FaultConfig::default()
        };
        let mut dev = Faulty::new(Script::default(), Some(config), 1);
        let frame = [0u8; 60];
        for _ in 0..HELD_MAX + 10 {
            dev.transmit(Instant::ZERO, &frame).unwrap();
        }
        assert_eq!(
            dev.inner.tx.len(),
            10,
            "past the bound, frames pass undelayed"
        );
    }
}
