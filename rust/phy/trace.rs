//! Records every frame in and out of a device into a `.pcap` file that
//! tcpdump and Wireshark open.

use super::capture::CaptureRing;
use super::{whole_frame, Device, FrameSink, Link, RxChecksum};
use crate::iface::TxFrame;
use crate::time::Instant;
use crate::wire::checksum::finish_partial;
use pcap::{Capture, Linktype, Packet, PacketHeader, Savefile};
use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// What `pcap_open_dead` writes as the file's snapshot length.
const TRACE_SNAPLEN: usize = 65_535;

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
            // The file's snapshot length (libpcap's dead handle): a
            // longer super-frame is kept truncated, its length whole.
            caplen: frame.len().min(TRACE_SNAPLEN) as u32,
            len: frame.len() as u32,
        };
        let frame = &frame[..frame.len().min(TRACE_SNAPLEN)];
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

/// A device whose traffic, both ways, is also written to a trace file and
/// to an in-memory capture when they are set.
pub struct Traced<D> {
    pub inner: D,
    pub trace: Option<TraceWriter>,
    pub capture: Option<CaptureRing>,
}

impl<D> Traced<D> {
    pub fn new(inner: D, trace: Option<TraceWriter>) -> Self {
        Traced {
            inner,
            trace,
            capture: None,
        }
    }

    fn records(&self) -> bool {
        self.trace.is_some() || self.capture.as_ref().is_some_and(|c| c.is_running())
    }
}

/// Records `frame` wherever recording is on.
fn record(
    trace: &mut Option<TraceWriter>,
    capture: &mut Option<CaptureRing>,
    now: Instant,
    frame: &[u8],
) {
    if let Some(t) = trace {
        t.record(now, frame);
    }
    if let Some(c) = capture {
        c.record(now, frame);
    }
}

impl<D: Device> Device for Traced<D> {
    /// A frame whose checksum the kernel left to "hardware" is recorded
    /// with it finished, as a wire would carry it; a super-frame (a
    /// peer's TSO or GRO burst, larger than the MTU) is recorded whole.
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        if !self.records() {
            return self.inner.receive(now, sink);
        }
        let (trace, capture) = (&mut self.trace, &mut self.capture);
        self.inner.receive(now, &mut |frame, checksum, held| {
            whole_frame(frame, held, |frame| {
                if let RxChecksum::Partial { start, offset } = checksum {
                    let mut whole = frame.to_vec();
                    finish_partial(&mut whole, start, offset);
                    record(trace, capture, now, &whole);
                } else {
                    record(trace, capture, now, frame);
                }
                sink(frame, checksum, None)
            })
            .unwrap_or(ControlFlow::Continue(()))
        })
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> io::Result<()> {
        record(&mut self.trace, &mut self.capture, now, frame);
        self.inner.transmit(now, frame)
    }
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        if self.records() {
            // Recordings show the wire: a burst as the segments it becomes.
            let (trace, capture) = (&mut self.trace, &mut self.capture);
            for frame in frames {
                frame.for_each_segment(&mut |f| record(trace, capture, now, f));
            }
        }
        self.inner.transmit_batch(now, frames)
    }
    fn drained(&self) -> bool {
        self.inner.drained()
    }
    fn burst_capacity(&self) -> usize {
        self.inner.burst_capacity()
    }
    fn link(&self) -> Link {
        self.inner.link()
    }
    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
}
