//! Fault injection on any device, both directions: for testing recovery
//! against a real peer over a live interface. Delays are ignored here (a
//! live device has no simulated clock); loss, duplication and corruption apply.

use super::device::transmit_each;
use super::fault::{FaultConfig, FaultInjector, FaultStats};
use super::{Device, RxChecksum};
use crate::iface::TxFrame;
use crate::time::Instant;
use crate::wire::checksum::finish_partial;
use std::io;

pub struct Faulty<D> {
    pub inner: D,
    faults: Option<(FaultInjector, FaultInjector)>,
    config: Option<FaultConfig>,
    seed: u64,
}

impl<D> Faulty<D> {
    /// `config` None passes every frame untouched at no cost.
    pub fn new(inner: D, config: Option<FaultConfig>, seed: u64) -> Self {
        let mut faulty = Faulty {
            inner,
            faults: None,
            config: None,
            seed,
        };
        faulty.configure(config);
        faulty
    }

    /// Changes the faults from now on (None: none); counts start again.
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

impl<D: Device> Device for Faulty<D> {
    /// Faults strike what a wire carries: a partial checksum is finished
    /// first, and every frame is then verified by the engine (so that a
    /// corrupted one is caught).
    fn receive(
        &mut self,
        now: Instant,
        sink: &mut dyn FnMut(&[u8], RxChecksum),
    ) -> io::Result<usize> {
        match &mut self.faults {
            None => self.inner.receive(now, sink),
            Some((rx, _)) => self.inner.receive(now, &mut |frame, checksum| {
                let deliver = |_, f: Vec<u8>| sink(&f, RxChecksum::Unverified);
                match checksum {
                    RxChecksum::Partial { start, offset } => {
                        let mut whole = frame.to_vec();
                        finish_partial(&mut whole, start, offset);
                        rx.apply(now, &whole, deliver)
                    }
                    _ => rx.apply(now, frame, deliver),
                }
            }),
        }
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()> {
        match &mut self.faults {
            None => self.inner.transmit(now, frame),
            Some((_, tx)) => {
                let mut result = Ok(());
                let inner = &mut self.inner;
                tx.apply(now, frame, |_, f| {
                    if let Err(e) = inner.transmit(now, &f) {
                        result = Err(e);
                    }
                });
                result
            }
        }
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
