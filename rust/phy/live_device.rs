//! The live device: one network interface, promiscuous and non-blocking,
//! with a pollable descriptor. Two paths:
//! - Linux: packet sockets of our own both ways, with virtio-net headers,
//!   so that the kernel's offloads work for us: `recvmmsg` of super-frames
//!   and offloaded checksums (`packet_rx.rs`), `sendmmsg` of bursts the
//!   kernel cuts (`packet_tx.rs`).
//! - libpcap alone (immediate mode, direction in, `pcap_sendpacket`): the
//!   portable path that macOS and the BSDs take and Linux can choose.

use super::device::transmit_each;
#[cfg(linux_fast_path)]
use super::link_watch::{is_link_error, LinkProbe, LinkWatch};
#[cfg(linux_fast_path)]
use super::packet_ring::{ArrivalPeek, PacketRing};
#[cfg(linux_fast_path)]
use super::packet_rx::PacketReceiver;
#[cfg(linux_fast_path)]
use super::packet_socket;
#[cfg(linux_fast_path)]
use super::packet_tx::PacketSender;
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

/// How the Linux path reads frames: a mapped ring where the kernel has it
/// with virtio-net headers (`MIPFAST_PACKET_RING=0` turns it off), else
/// `recvmmsg` batches.
#[cfg(linux_fast_path)]
enum Receiver {
    Ring(PacketRing),
    Batch(Box<PacketReceiver>),
}

#[cfg(linux_fast_path)]
impl Receiver {
    fn open(name: &str) -> io::Result<Self> {
        if !matches!(std::env::var("MIPFAST_PACKET_RING").as_deref(), Ok("0")) {
            match PacketRing::open(name) {
                Ok(ring) => return Ok(Receiver::Ring(ring)),
                Err(e) => log::debug!("no receive ring on {name} ({e}): reading with recvmmsg"),
            }
        }
        PacketReceiver::open(name).map(|r| Receiver::Batch(Box::new(r)))
    }

    fn fd(&self) -> RawFd {
        match self {
            Receiver::Ring(r) => r.fd(),
            Receiver::Batch(r) => r.fd(),
        }
    }

    fn losses(&self) -> RxLosses {
        match self {
            Receiver::Ring(r) => r.losses(),
            Receiver::Batch(r) => r.losses(),
        }
    }

    fn drained(&self) -> bool {
        match self {
            Receiver::Ring(r) => r.drained(),
            Receiver::Batch(r) => r.drained(),
        }
    }

    fn arrivals(&self) -> Arrivals {
        match self {
            Receiver::Ring(r) => Arrivals(Some(r.arrival_peek())),
            Receiver::Batch(_) => Arrivals::default(),
        }
    }

    fn receive(&mut self, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        match self {
            Receiver::Ring(r) => r.receive(sink),
            Receiver::Batch(r) => r.receive(sink),
        }
    }
}

/// The Linux path: its two sockets, and the watch on their interface's link.
#[cfg(linux_fast_path)]
struct PacketPath {
    rx: Receiver,
    tx: PacketSender,
    watch: LinkWatch,
}

#[cfg(linux_fast_path)]
impl PacketPath {
    fn receive(&mut self, name: &str, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        let (received, error) = match self.rx.receive(sink) {
            Ok(0) => (0, None),
            Ok(n) => {
                self.watch.frames_came();
                return Ok(n);
            }
            // `recvmmsg` gives the socket's error instead of frames.
            Err(e) if is_link_error(&e) => (0, Some(e)),
            Err(e) => return Err(e),
        };
        let mut probe = PacketLink {
            name,
            rx: &self.rx,
            tx: &mut self.tx,
        };
        self.watch.idle(now, error, &mut probe);
        Ok(received)
    }
}

/// What the link watch asks of the Linux path's sockets.
#[cfg(linux_fast_path)]
struct PacketLink<'a> {
    name: &'a str,
    rx: &'a Receiver,
    tx: &'a mut PacketSender,
}

#[cfg(linux_fast_path)]
impl LinkProbe for PacketLink<'_> {
    fn take_error(&mut self) -> Option<io::Error> {
        packet_socket::take_error(self.rx.fd())
    }
    fn index_now(&mut self) -> Option<u32> {
        packet_socket::index_of(self.name).ok()
    }
    fn is_up(&mut self) -> bool {
        packet_socket::is_up(self.rx.fd(), self.name).unwrap_or(false)
    }
    fn bind(&mut self, index: u32) -> io::Result<()> {
        let fd = self.rx.fd();
        packet_socket::bind(fd, libc::ETH_P_ALL as u16, index)?;
        packet_socket::join_promiscuous(fd, index)?;
        self.tx.bind(self.name, index)
    }
    fn mtu(&mut self) -> Option<usize> {
        packet_socket::mtu(self.rx.fd(), self.name).ok()
    }
}

enum Path {
    /// Sockets of our own (see [`PacketReceiver`], [`PacketSender`]).
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
pub struct Arrivals(#[cfg(linux_fast_path)] Option<ArrivalPeek>);

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
        let path = match kind {
            #[cfg(linux_fast_path)]
            DeviceKind::Auto => {
                let map = |e: io::Error| packet_open_error(name, e);
                let receiver = Receiver::open(name).map_err(map)?;
                if let Some(filter) = bpf {
                    attach_filter(receiver.fd(), filter)?;
                }
                let sender = PacketSender::open(name, offload).map_err(map)?;
                let index = packet_socket::index_of(name).map_err(map)?;
                let mtu = packet_socket::mtu(receiver.fd(), name).unwrap_or(0);
                Path::Packet(Box::new(PacketPath {
                    rx: receiver,
                    tx: sender,
                    watch: LinkWatch::new(name, index, mtu, Instant::ZERO),
                }))
            }
            _ => {
                let _ = offload; // libpcap sends frame by frame
                Path::Pcap(open_pcap(name, bpf)?, false)
            }
        };
        Ok(LiveDevice {
            path,
            name: name.to_string(),
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
            Path::Packet(p) => p.rx.fd(),
            Path::Pcap(capture, _) => capture.as_raw_fd(),
        }
    }

    /// Whether frames wait, for a thread that spins (see [`Arrivals`]).
    pub fn arrivals(&self) -> Arrivals {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.rx.arrivals(),
            Path::Pcap(..) => Arrivals::default(),
        }
    }

    /// Frames the receiver itself lost (the packet path; none on libpcap's).
    pub fn losses(&self) -> RxLosses {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.rx.losses(),
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

fn bad_filter(filter: &str, e: pcap::Error) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("bad BPF filter {filter:?}: {e}"),
    )
}

/// Compiles `filter` with libpcap (for Ethernet) and attaches it to our
/// receive socket (`SO_ATTACH_FILTER`), where the kernel runs it before
/// a frame is queued for us.
#[cfg(linux_fast_path)]
fn attach_filter(fd: RawFd, filter: &str) -> io::Result<()> {
    let dead = Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| bad_filter(filter, e))?;
    let program = dead
        .compile(filter, true)
        .map_err(|e| bad_filter(filter, e))?;
    let instructions = program.get_instructions();
    let fprog = libc::sock_fprog {
        len: instructions.len() as u16,
        // SAFETY (layout): pcap's BpfInstruction is a transparent bpf_insn,
        // {u16 code, u8 jt, u8 jf, u32 k}, which is the kernel's sock_filter.
        filter: instructions.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: `fprog` points at `program`'s instructions, alive for the call;
    // the kernel copies them.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The packet sockets' errors, with the fix for the usual one.
#[cfg(linux_fast_path)]
fn packet_open_error(name: &str, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "cannot open {name}: {e}. Run as root, or give Python CAP_NET_RAW and \
                 CAP_NET_ADMIN: sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))"
            ),
        ),
        Some(libc::ENODEV | libc::ENXIO) => io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}: {e}"),
        ),
        _ => io::Error::new(e.kind(), format!("cannot open {name}: {e}")),
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

impl Device for LiveDevice {
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> io::Result<usize> {
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
        match &mut self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.tx.send_frame(frame),
            Path::Pcap(capture, _) => capture
                .sendpacket(frame)
                .map_err(|e| io::Error::other(format!("pcap_sendpacket: {e}"))),
        }
    }

    /// Linux: one `sendmmsg` for many frames, bursts whole when the kernel
    /// cuts them. libpcap: a frame at a time.
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame]) -> usize {
        match &mut self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.tx.send(frames),
            Path::Pcap(..) => transmit_each(self, now, frames),
        }
    }

    fn drained(&self) -> bool {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.rx.drained(),
            Path::Pcap(..) => false,
        }
    }

    fn burst_capacity(&self) -> usize {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.tx.burst_capacity(),
            Path::Pcap(..) => 0,
        }
    }

    fn link(&self) -> Link {
        match &self.path {
            #[cfg(linux_fast_path)]
            Path::Packet(p) => p.watch.link(),
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
            Path::Packet(p) => p.watch.poll_at(),
            Path::Pcap(..) => None,
        }
    }
}
