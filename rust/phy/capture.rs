//! A capture of the stack's own frames into memory, for the dashboard's
//! "capture" button: bounded by bytes (the oldest frames go first once the
//! limit is reached), written out on demand in the classic `.pcap` format
//! (libpcap 2.4, microsecond timestamps, Ethernet) that tcpdump and
//! Wireshark open.

use crate::time::Instant;
use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// The classic pcap file header: magic, version 2.4, zone, accuracy,
/// snapshot length, link type.
const PCAP_MAGIC: u32 = 0xa1b2_c3d4;
const PCAP_VERSION: (u16, u16) = (2, 4);
/// libpcap's largest, so that a super-frame (TSO/GRO, up to 64 KiB + headers) is kept whole.
const SNAPLEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u32 = 1;
const FILE_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// What a capture holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureInfo {
    pub running: bool,
    pub frames: usize,
    /// Size of the `.pcap` file it would make.
    pub file_bytes: usize,
    /// Frames pushed out by newer ones.
    pub dropped: u64,
    pub limit: usize,
}

#[derive(Debug)]
pub struct CaptureRing {
    /// (wall-clock microseconds, frame)
    frames: VecDeque<(i64, Vec<u8>)>,
    bytes: usize,
    limit: usize,
    dropped: u64,
    running: bool,
    /// Wall-clock microseconds at engine time zero.
    epoch_micros: i64,
}

impl CaptureRing {
    /// Starts capturing, up to `limit` bytes of file. `now` is the engine's time now.
    pub fn start(limit: usize, now: Instant) -> Self {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        CaptureRing {
            frames: VecDeque::new(),
            bytes: FILE_HEADER_LEN,
            limit: limit.max(FILE_HEADER_LEN + RECORD_HEADER_LEN + 64),
            dropped: 0,
            running: true,
            epoch_micros: wall - now.total_micros(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.running
    }

    pub fn stop(&mut self) {
        self.running = false;
    }

    pub fn record(&mut self, now: Instant, frame: &[u8]) {
        if !self.running {
            return;
        }
        let frame = &frame[..frame.len().min(SNAPLEN as usize)];
        self.bytes += RECORD_HEADER_LEN + frame.len();
        self.frames
            .push_back((self.epoch_micros + now.total_micros(), frame.to_vec()));
        while self.bytes > self.limit {
            let Some((_, old)) = self.frames.pop_front() else {
                break;
            };
            self.bytes -= RECORD_HEADER_LEN + old.len();
            self.dropped += 1;
        }
    }

    pub fn info(&self) -> CaptureInfo {
        CaptureInfo {
            running: self.running,
            frames: self.frames.len(),
            file_bytes: self.bytes,
            dropped: self.dropped,
            limit: self.limit,
        }
    }

    /// The capture as a `.pcap` file.
    pub fn to_pcap(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes);
        file_header(&mut out);
        for (t, frame) in &self.frames {
            let (secs, micros) = (t.div_euclid(1_000_000), t.rem_euclid(1_000_000));
            out.extend_from_slice(&(secs as u32).to_le_bytes());
            out.extend_from_slice(&(micros as u32).to_le_bytes());
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes()); // captured
            out.extend_from_slice(&(frame.len() as u32).to_le_bytes()); // on the wire
            out.extend_from_slice(frame);
        }
        out
    }
}

/// A `.pcap` file with no frames.
pub fn empty_file() -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER_LEN);
    file_header(&mut out);
    out
}

fn file_header(out: &mut Vec<u8>) {
    out.extend_from_slice(&PCAP_MAGIC.to_le_bytes());
    out.extend_from_slice(&PCAP_VERSION.0.to_le_bytes());
    out.extend_from_slice(&PCAP_VERSION.1.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // this zone: UTC
    out.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
    out.extend_from_slice(&SNAPLEN.to_le_bytes());
    out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;

    #[test]
    fn libpcap_reads_back_what_was_captured() {
        let mut ring = CaptureRing::start(1 << 20, Instant::ZERO);
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 60 + i as usize]).collect();
        for (i, f) in frames.iter().enumerate() {
            ring.record(Instant::ZERO + Duration::from_millis(i as u64 * 10), f);
        }
        let file = ring.to_pcap();
        assert_eq!(file.len(), ring.info().file_bytes);
        let path =
            std::env::temp_dir().join(format!("mipfast-capture-{}.pcap", std::process::id()));
        std::fs::write(&path, &file).unwrap();
        let mut cap = pcap::Capture::from_file(&path).unwrap();
        assert_eq!(cap.get_datalink(), pcap::Linktype::ETHERNET);
        let mut read = Vec::new();
        let mut stamps = Vec::new();
        while let Ok(p) = cap.next_packet() {
            read.push(p.data.to_vec());
            // time_t and suseconds_t are not i64 on every platform.
            #[allow(clippy::useless_conversion)]
            stamps.push(i64::from(p.header.ts.tv_sec) * 1_000_000 + i64::from(p.header.ts.tv_usec));
        }
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read, frames);
        assert_eq!(
            stamps[4] - stamps[0],
            40_000,
            "timestamps keep their spacing"
        );
    }

    #[test]
    fn the_oldest_frames_go_once_the_limit_is_reached() {
        let limit = FILE_HEADER_LEN + 10 * (RECORD_HEADER_LEN + 100);
        let mut ring = CaptureRing::start(limit, Instant::ZERO);
        for i in 0..25u8 {
            ring.record(Instant::ZERO, &[i; 100]);
        }
        let info = ring.info();
        assert_eq!((info.frames, info.dropped), (10, 15));
        assert!(info.file_bytes <= limit);
        assert_eq!(
            ring.frames.front().unwrap().1[0],
            15,
            "the newest ten are kept"
        );
        ring.stop();
        ring.record(Instant::ZERO, &[99; 100]);
        assert_eq!(ring.info().frames, 10, "a stopped capture takes nothing");
    }
}
