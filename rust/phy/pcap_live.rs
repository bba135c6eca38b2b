//! The live device: one network interface opened through libpcap, in
//! promiscuous, immediate, non-blocking mode with a pollable descriptor.

use super::Device;
use crate::time::{Duration, Instant};
use pcap::{Active, Capture, Direction};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};

const SNAPLEN: i32 = 65535;
/// Kernel ring size: room for bursts between two wake-ups.
const BUFFER_BYTES: i32 = 8 << 20;

pub struct PcapDevice {
    capture: Capture<Active>,
    name: String,
    /// Scratch for `sendmmsg`, kept to avoid an allocation per batch.
    batch: SendBatch,
}

/// Names of the interfaces libpcap can open.
pub fn interfaces() -> io::Result<Vec<String>> {
    let devices = pcap::Device::list().map_err(|e| io::Error::other(e.to_string()))?;
    Ok(devices.into_iter().map(|d| d.name).collect())
}

impl PcapDevice {
    /// Opens `name`. A missing interface is `NotFound` (the message lists the
    /// ones that exist); lacking privileges is `PermissionDenied` with the fix.
    pub fn open(name: &str, bpf: Option<&str>) -> io::Result<Self> {
        let known = interfaces().unwrap_or_default();
        if !known.iter().any(|n| n == name) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no interface named {name:?}; interfaces: {}",
                    known.join(", ")
                ),
            ));
        }
        let map = |e: pcap::Error| open_error(name, e);
        let capture = Capture::from_device(name)
            .map_err(map)?
            .promisc(true)
            .immediate_mode(true)
            .snaplen(SNAPLEN)
            .buffer_size(BUFFER_BYTES)
            .open()
            .map_err(map)?;
        // Only frames arriving from the wire: not the ones we inject.
        capture.direction(Direction::In).map_err(map)?;
        let mut capture = capture.setnonblock().map_err(map)?;
        bypass_qdisc(capture.as_raw_fd());
        if let Some(filter) = bpf {
            capture.filter(filter, true).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad BPF filter {filter:?}: {e}"),
                )
            })?;
        }
        Ok(PcapDevice {
            capture,
            name: name.to_string(),
            batch: SendBatch::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The descriptor that becomes readable when frames arrive.
    pub fn fd(&self) -> RawFd {
        self.capture.as_raw_fd()
    }
}

/// Frames we send skip the interface's queueing discipline and go straight to
/// the driver (`PACKET_QDISC_BYPASS`, Linux 3.14+): the engine paces its own
/// output, and the qdisc lock is the costliest step of an injected frame. A
/// kernel without it keeps the qdisc, so the result is not checked.
fn bypass_qdisc(fd: RawFd) {
    const PACKET_QDISC_BYPASS: libc::c_int = 20;
    let on: libc::c_int = 1;
    // SAFETY: `fd` is the open packet socket; `on` outlives the call and its size is passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn open_error(name: &str, e: pcap::Error) -> io::Error {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if lower.contains("permission") || lower.contains("not permitted") {
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "cannot open {name}: {text}. Run as root, or give Python CAP_NET_RAW and \
                 CAP_NET_ADMIN: sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))"
            ),
        )
    } else if lower.contains("no such device") {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}: {text}"),
        )
    } else {
        io::Error::other(format!("cannot open {name}: {text}"))
    }
}

impl Device for PcapDevice {
    fn receive(&mut self, _now: Instant, sink: &mut dyn FnMut(&[u8])) -> io::Result<usize> {
        match self.capture.dispatch(None, |packet| sink(packet.data)) {
            Ok(n) => Ok(n),
            Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => Ok(0),
            Err(e) => Err(io::Error::other(e.to_string())),
        }
    }

    fn transmit(&mut self, _now: Instant, frame: &[u8]) -> io::Result<()> {
        self.capture
            .sendpacket(frame)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// One `sendmmsg` for many frames: the packet socket pcap opened is bound
    /// to the interface, so each message is one frame on the wire.
    fn transmit_batch(&mut self, _now: Instant, frames: &[Vec<u8>]) -> usize {
        self.batch.send(self.capture.as_raw_fd(), frames)
    }
}

/// Reusable `iovec`/`mmsghdr` arrays for `sendmmsg`.
#[derive(Default)]
struct SendBatch {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in the arrays are only meaningful during `send`,
// which rebuilds them from borrowed frames each time.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Most messages per system call (the kernel's UIO_MAXIOV).
    const MAX: usize = 1024;

    /// Sends `frames` on `fd`; returns how many could not be sent.
    fn send(&mut self, fd: RawFd, frames: &[Vec<u8>]) -> usize {
        let mut failed = 0;
        for chunk in frames.chunks(Self::MAX) {
            self.iovecs.clear();
            self.iovecs.extend(chunk.iter().map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            }));
            self.headers.clear();
            for iov in &mut self.iovecs {
                // SAFETY: an all-zero mmsghdr is a valid empty message.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                self.headers.push(h);
            }
            let mut sent = 0;
            while sent < self.headers.len() {
                let rest = &mut self.headers[sent..];
                // SAFETY: `rest` points at `rest.len()` initialised headers whose iovecs
                // point into `chunk`, all alive and unmoved for the whole call.
                let rc =
                    unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
                if rc > 0 {
                    sent += rc as usize;
                } else if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                    continue;
                } else {
                    // The message at `sent` failed (queue full, link down): count it, go on.
                    failed += 1;
                    sent += 1;
                }
            }
        }
        failed
    }
}

/// Sleeps until one of `fds` is readable or `timeout` passes (`None`: no limit).
/// Returns `Ok(true)` if a descriptor is readable; `Interrupted` on a signal.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<bool> {
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = match timeout {
        None => -1,
        // Round up so that a deadline 300 µs away does not become a busy loop.
        Some(d) => d.total_micros().div_ceil(1000).min(i32::MAX as u64) as i32,
    };
    // SAFETY: `polls` is a valid array of `polls.len()` pollfd structs for the whole call.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc > 0)
}
