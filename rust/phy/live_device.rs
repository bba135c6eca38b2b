//! The live device: one network interface, promiscuous and non-blocking,
//! with a pollable descriptor. Two paths:
//! - Linux: packet sockets of our own both ways, with virtio-net headers,
//!   so that the kernel's offloads work for us: `recvmmsg` of super-frames
//!   and offloaded checksums (`packet_rx.rs`), `sendmmsg` of bursts the
//!   kernel cuts (`packet_tx.rs`).
//! - libpcap alone (immediate mode, direction in, `pcap_sendpacket`): the
//!   portable path that macOS and the BSDs take and Linux can choose.

use super::device::transmit_each;
use super::owner::Owner;
#[cfg(linux_fast_path)]
use super::packet_path::PacketPath;
#[cfg(linux_fast_path)]
use super::packet_ring::ArrivalPeek;
use super::{Device, FrameSink, Link, LinkState, RxChecksum};
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

/// What the receiver could not hand on.
#[derive(Debug, Default, Clone, Copy)]
pub struct RxLosses {
    /// Frames longer than a slot (cut by the kernel): dropped.
    pub truncated: u64,
    /// Frames the kernel could not describe in a virtio-net header: dropped by it.
    pub undescribed: u64,
    /// Frames the kernel dropped for want of a free slot in our receive ring.
    pub ring_full: u64,
    /// Frames left on the socket's queue that could not be read when the
    /// engine asked for them (`queued_text.rs`): dropped.
    pub unread: u64,
}

enum Path {
    /// Sockets of our own (`packet_path.rs`).
    #[cfg(linux_fast_path)]
    Packet(Box<PacketPath>),
    /// A libpcap handle both ways, `pcap_sendpacket` a frame at a time;
    /// `gone` once its interface was deleted (the handle then only fails).
    Pcap(Capture<Active>, bool),
}

/// Whether frames wait on the device, answered without a system call where
/// it has a receive ring (`ArrivalPeek`): a spinning thread looks often.
/// `None`: this device cannot tell; ask `poll()`.
#[derive(Clone, Default)]
pub struct Arrivals(#[cfg(linux_fast_path)] pub(super) Option<ArrivalPeek>);

impl Arrivals {
    pub fn frames_waiting(&self) -> Option<bool> {
        #[cfg(linux_fast_path)]
        if let Some(peek) = &self.0 {
            return Some(peek.frames_waiting());
        }
        None
    }
}

pub struct LiveDevice {
    path: Path,
    name: String,
    /// A forked child's copy takes nothing from the interface and sends
    /// nothing on it: the socket, its ring and the wire are its parent's.
    owner: Owner,
}

/// Names of the interfaces libpcap can open.
pub fn interfaces() -> io::Result<Vec<String>> {
    let devices = pcap::Device::list().map_err(|e| io::Error::other(e.to_string()))?;
    Ok(devices.into_iter().map(|d| d.name).collect())
}

impl LiveDevice {
    /// Opens `name`. A missing interface is `NotFound` (the message lists the
    /// ones that exist); lacking privileges is `PermissionDenied` with the fix.
    /// `offload`: TCP bursts are cut into segments by the kernel (see
    /// `PacketSender` in `packet_tx.rs`).
    pub fn open(
        name: &str,
        bpf: Option<&str>,
        offload: bool,
        kind: DeviceKind,
    ) -> io::Result<Self> {
        let known = pcap::Device::list().unwrap_or_default();
        let Some(device) = known.iter().find(|d| d.name == name) else {
            let names: Vec<&str> = known.iter().map(|d| d.name.as_str()).collect();
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no interface named {name:?}; interfaces: {}",
                    names.join(", ")
                ),
            ));
        };
        // Said once the interface is open: lacking privileges is the error to fix first.
        let loopback = device.flags.is_loopback();
        let path = match kind {
            #[cfg(linux_fast_path)]
            DeviceKind::Auto => Path::Packet(Box::new(PacketPath::open(name, bpf, offload)?)),
            _ => {
                let _ = offload; // libpcap sends frame by frame
                let capture = open_pcap(name, bpf)?;
                let link = capture.get_datalink();
                if link != pcap::Linktype::ETHERNET {
                    let what = link
                        .get_name()
                        .unwrap_or_else(|_| format!("link type {}", link.0));
                    return Err(not_ethernet(name, &what));
                }
                Path::Pcap(capture, false)
            }
        };
        if loopback {
            return Err(not_ethernet(name, "the loopback interface"));
        }
        Ok(LiveDevice {
            path,
            name: name.to_string(),
            owner: Owner::here(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> DeviceKind {
        match self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(..) => DeviceKind::Auto,
            Path::Pcap(..) => DeviceKind::Pcap,
        }
    }

    /// The descriptor that becomes readable when frames arrive.
    pub fn fd(&self) -> RawFd {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.fd(),
            Path::Pcap(capture, _) => capture.as_raw_fd(),
        }
    }

    /// Whether frames wait, for a thread that spins (see [`Arrivals`]).
    pub fn arrivals(&self) -> Arrivals {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.arrivals(),
            Path::Pcap(..) => Arrivals::default(),
        }
    }

    /// Frames the receiver itself lost (the packet path; none on libpcap's).
    pub fn losses(&self) -> RxLosses {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.losses(),
            Path::Pcap(..) => RxLosses::default(),
        }
    }
}

/// A libpcap handle on `name`: promiscuous, immediate (BPF would hold
/// frames back on macOS otherwise), non-blocking, frames coming in only.
fn open_pcap(name: &str, bpf: Option<&str>) -> io::Result<Capture<Active>> {
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
    // Our own frames, sent on the other socket, are not copied into pcap's ring.
    #[cfg(linux_fast_path)]
    super::packet_socket::ignore_outgoing(capture.as_raw_fd());
    if let Some(filter) = bpf {
        capture
            .filter(filter, true)
            .map_err(|e| bad_filter(filter, e))?;
    }
    Ok(capture)
}

/// `name` is no Ethernet interface (`what` it is instead): the stack speaks
/// Ethernet and ARP, and would open it only to hear nothing.
pub(super) fn not_ethernet(name: &str, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{name} is not an Ethernet interface ({what}): mipfast needs one, such as a NIC, \
             a veth or feth pair's end, or a bridge port"
        ),
    )
}

pub(super) fn bad_filter(filter: &str, e: pcap::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("bad BPF filter {filter:?}: {e}"),
    )
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

/// Whether an interface named `name` exists (libpcap's handle fails alike
/// for an interface deleted and for other errors).
fn interface_exists(name: &str) -> bool {
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(c_name.as_ptr()) != 0 }
}

/// Every frame libpcap has now, checksums unverified (libpcap cannot say).
fn pcap_receive(capture: &mut Capture<Active>, sink: &mut FrameSink<'_>) -> io::Result<usize> {
    // libpcap's buffer is read already: every frame in it goes on.
    let mut take = |packet: pcap::Packet<'_>| {
        let _ = sink(packet.data, RxChecksum::Unverified, None);
    };
    match capture.dispatch(None, &mut take) {
        Ok(n) => Ok(n),
        Err(pcap::Error::TimeoutExpired) | Err(pcap::Error::NoMorePackets) => Ok(0),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// What a forked child's copy of the device answers (see `owner.rs`).
fn not_here() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

impl Device for LiveDevice {
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        if !self.owner.is_here() {
            return Err(not_here());
        }
        match &mut self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.receive(&self.name, now, sink),
            Path::Pcap(capture, gone) => {
                let _ = now; // libpcap takes the socket's errors itself
                let received = pcap_receive(capture, sink);
                if received.is_err() && !*gone {
                    *gone = !interface_exists(&self.name);
                }
                received
            }
        }
    }

    fn transmit(&mut self, _now: Instant, frame: &[u8]) -> io::Result<()> {
        if !self.owner.is_here() {
            return Err(not_here());
        }
        match &mut self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.send_frame(frame),
            Path::Pcap(capture, _) => capture
                .sendpacket(frame)
                .map_err(|e| io::Error::other(format!("pcap_sendpacket: {e}"))),
        }
    }

    /// Linux: one `sendmmsg` for many frames, bursts whole when the kernel
    /// cuts them. libpcap: a frame at a time.
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        if !self.owner.is_here() {
            return transmit_each(self, now, frames); // each refused
        }
        match &mut self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.send(frames),
            Path::Pcap(..) => transmit_each(self, now, frames),
        }
    }

    fn drained(&self) -> bool {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.drained(),
            Path::Pcap(..) => false,
        }
    }

    fn burst_capacity(&self) -> usize {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.burst_capacity(),
            Path::Pcap(..) => 0,
        }
    }

    fn link(&self) -> Link {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.link(),
            Path::Pcap(_, gone) => Link {
                state: if *gone {
                    LinkState::Gone
                } else {
                    LinkState::Up
                },
                returns: 0,
                mtu: 0,
            },
        }
    }

    /// A link that is down or gone is looked at now and then (`link_watch.rs`).
    fn poll_at(&self) -> Option<Instant> {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.poll_at(),
            Path::Pcap(..) => None,
        }
    }
}
