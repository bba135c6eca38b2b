//! The live device: one network interface opened through libpcap, in
//! promiscuous, immediate, non-blocking mode with a pollable descriptor.
//! Frames arrive through libpcap everywhere. They leave through a packet
//! socket of our own on Linux (`sendmmsg`, kernel segmentation: see
//! `packet_tx.rs`), or through libpcap itself (`pcap_sendpacket`), the
//! portable path that macOS and the BSDs take and Linux can choose.

use super::device::transmit_each;
#[cfg(target_os = "linux")]
use super::packet_tx::PacketSender;
use super::Device;
use crate::iface::TxFrame;
use crate::time::Instant;
use pcap::{Active, Capture, Direction};
use std::io;
use std::os::unix::io::{AsRawFd, RawFd};

const SNAPLEN: i32 = 65535;
/// Kernel ring size: room for bursts between two wake-ups.
const BUFFER_BYTES: i32 = 8 << 20;

/// Which way frames leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceKind {
    /// The fastest the platform has: the packet socket on Linux, libpcap elsewhere.
    #[default]
    Auto,
    /// libpcap alone, as on macOS (selectable on Linux so that this path is tested).
    Pcap,
}

impl DeviceKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(DeviceKind::Auto),
            "pcap" => Some(DeviceKind::Pcap),
            _ => None,
        }
    }
}

enum Sender {
    /// A socket of our own (see [`PacketSender`]).
    #[cfg(target_os = "linux")]
    Packet(PacketSender),
    /// `pcap_sendpacket` on the capture handle, a frame at a time.
    Pcap,
}

pub struct PcapDevice {
    capture: Capture<Active>,
    name: String,
    sender: Sender,
}

/// Names of the interfaces libpcap can open.
pub fn interfaces() -> io::Result<Vec<String>> {
    let devices = pcap::Device::list().map_err(|e| io::Error::other(e.to_string()))?;
    Ok(devices.into_iter().map(|d| d.name).collect())
}

impl PcapDevice {
    /// Opens `name`. A missing interface is `NotFound` (the message lists the
    /// ones that exist); lacking privileges is `PermissionDenied` with the fix.
    /// `offload`: TCP bursts are cut into segments by the kernel (see
    /// [`PacketSender`]).
    pub fn open(
        name: &str,
        bpf: Option<&str>,
        offload: bool,
        kind: DeviceKind,
    ) -> io::Result<Self> {
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
        #[cfg(target_os = "linux")]
        ignore_outgoing(capture.as_raw_fd());
        let sender = match kind {
            #[cfg(target_os = "linux")]
            DeviceKind::Auto => Sender::Packet(PacketSender::open(name, offload)?),
            _ => {
                let _ = offload; // libpcap sends frame by frame
                Sender::Pcap
            }
        };
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
            sender,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> DeviceKind {
        match self.sender {
            #[cfg(target_os = "linux")]
            Sender::Packet(_) => DeviceKind::Auto,
            Sender::Pcap => DeviceKind::Pcap,
        }
    }

    /// The descriptor that becomes readable when frames arrive.
    pub fn fd(&self) -> RawFd {
        self.capture.as_raw_fd()
    }
}

/// Our own frames, sent on the other socket, are not copied back into
/// pcap's ring (`PACKET_IGNORE_OUTGOING`, Linux 4.20+): without it the
/// kernel clones every outgoing frame for us only to have libpcap drop it
/// (direction "in"). An older kernel keeps the copies, so the result is not checked.
#[cfg(target_os = "linux")]
fn ignore_outgoing(fd: RawFd) {
    const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
    let _ = super::sockopt::set_int(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
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
        match &mut self.sender {
            #[cfg(target_os = "linux")]
            Sender::Packet(p) => p.send_frame(frame),
            Sender::Pcap => self
                .capture
                .sendpacket(frame)
                .map_err(|e| io::Error::other(format!("pcap_sendpacket: {e}"))),
        }
    }

    /// Linux: one `sendmmsg` for many frames, bursts whole when the kernel
    /// cuts them. libpcap: a frame at a time.
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        match &mut self.sender {
            #[cfg(target_os = "linux")]
            Sender::Packet(p) => p.send(frames),
            Sender::Pcap => transmit_each(self, now, frames),
        }
    }

    fn burst_capacity(&self) -> usize {
        match &self.sender {
            #[cfg(target_os = "linux")]
            Sender::Packet(p) => p.burst_capacity(),
            Sender::Pcap => 0,
        }
    }
}
