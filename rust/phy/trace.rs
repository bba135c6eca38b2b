//! Records every frame in and out of a device into a `.pcap` file that
//! tcpdump and Wireshark open.

use super::Device;
use crate::iface::TxFrame;
use crate::time::Instant;
use pcap::{Capture, Linktype, Packet, PacketHeader, Savefile};
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A `.pcap` writer; timestamps are `now` offset to wall-clock time.
pub struct TraceWriter {
    file: Savefile,
    /// Wall-clock microseconds at engine time zero.
    epoch_micros: i64,
    dirty: bool,
}

impl TraceWriter {
    /// Creates (truncates) `path`. `origin` is the engine instant that is "now" on the wall clock.
    pub fn create(path: &Path, origin: Instant) -> io::Result<Self> {
        let err =
            |e: pcap::Error| io::Error::other(format!("cannot write {}: {e}", path.display()));
        let dead = Capture::dead(Linktype::ETHERNET).map_err(err)?;
        let file = dead.savefile(path).map_err(err)?;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        Ok(TraceWriter {
            file,
            epoch_micros: wall - origin.total_micros(),
            dirty: false,
        })
    }

    pub fn record(&mut self, now: Instant, frame: &[u8]) {
        let t = self.epoch_micros + now.total_micros();
        let header = PacketHeader {
            ts: libc::timeval {
                tv_sec: (t / 1_000_000) as libc::time_t,
                tv_usec: (t % 1_000_000) as libc::suseconds_t,
            },
            caplen: frame.len() as u32,
            len: frame.len() as u32,
        };
        self.file.write(&Packet::new(&header, frame));
        self.dirty = true;
    }

    /// Pushes buffered records to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            self.dirty = false;
            self.file
                .flush()
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }
}

impl Drop for TraceWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// A device whose traffic, both ways, is also written to a trace when one is set.
pub struct Traced<D> {
    pub inner: D,
    pub trace: Option<TraceWriter>,
}

impl<D: Device> Device for Traced<D> {
    fn receive(&mut self, now: Instant, sink: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        match &mut self.trace {
            None => self.inner.receive(now, sink),
            Some(trace) => self.inner.receive(now, &mut |frame| {
                trace.record(now, frame);
                sink(frame)
            }),
        }
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()> {
        if let Some(trace) = &mut self.trace {
            trace.record(now, frame);
        }
        self.inner.transmit(now, frame)
    }
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        if let Some(trace) = &mut self.trace {
            // The trace shows the wire: a burst as the segments it becomes.
            for frame in frames {
                frame.for_each_segment(&mut |f| trace.record(now, f));
            }
        }
        self.inner.transmit_batch(now, frames)
    }
    fn burst_capacity(&self) -> usize {
        self.inner.burst_capacity()
    }
}
