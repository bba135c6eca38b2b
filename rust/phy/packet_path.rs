//! The Linux path of the live device: packet sockets of our own both ways
//! (`packet_ring.rs` or `packet_rx.rs` to receive, `packet_tx.rs` to send),
//! and the watch on their interface's link (`link_watch.rs`).

use super::link_watch::{is_link_error, LinkProbe, LinkWatch};
use super::live_device::{bad_filter, not_ethernet, Arrivals, RxLosses};
use super::packet_ring::PacketRing;
use super::packet_rx::PacketReceiver;
use super::packet_socket;
use super::packet_tx::PacketSender;
use super::{FrameSink, Link};
use crate::iface::TxFrame;
use crate::time::Instant;
use pcap::Capture;
use std::io;
use std::os::unix::io::RawFd;

/// How the Linux path reads frames: a mapped ring where the kernel has it
/// with virtio-net headers (`MIPFAST_PACKET_RING=0` turns it off), else
/// `recvmmsg` batches.
enum Receiver {
    Ring(PacketRing),
    Batch(Box<PacketReceiver>),
}

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
pub struct PacketPath {
    rx: Receiver,
    tx: PacketSender,
    watch: LinkWatch,
}

impl PacketPath {
    /// Both sockets on interface `name`, `bpf` filtering what is received;
    /// `offload`: TCP bursts are cut into segments by the kernel (see
    /// `PacketSender`).
    pub fn open(name: &str, bpf: Option<&str>, offload: bool) -> io::Result<Self> {
        let map = |e: io::Error| packet_open_error(name, e);
        let rx = Receiver::open(name).map_err(map)?;
        match packet_socket::hardware_type(rx.fd(), name) {
            Ok(kind) if kind != libc::ARPHRD_ETHER => {
                let what = match kind {
                    libc::ARPHRD_NONE => {
                        "no link-layer header: a tun, WireGuard or other IP device".into()
                    }
                    libc::ARPHRD_LOOPBACK => "the loopback interface".into(),
                    _ => format!("hardware type {kind}"),
                };
                return Err(not_ethernet(name, &what));
            }
            _ => {}
        }
        if let Some(filter) = bpf {
            attach_filter(rx.fd(), filter)?;
        }
        let tx = PacketSender::open(name, offload).map_err(map)?;
        let index = packet_socket::index_of(name).map_err(map)?;
        let mtu = packet_socket::mtu(rx.fd(), name).unwrap_or(0);
        Ok(PacketPath {
            rx,
            tx,
            watch: LinkWatch::new(name, index, mtu, Instant::ZERO),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.rx.fd()
    }

    pub fn arrivals(&self) -> Arrivals {
        self.rx.arrivals()
    }

    pub fn losses(&self) -> RxLosses {
        self.rx.losses()
    }

    pub fn drained(&self) -> bool {
        self.rx.drained()
    }

    pub fn link(&self) -> Link {
        self.watch.link()
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.watch.poll_at()
    }

    pub fn send(&mut self, frames: &[TxFrame]) -> usize {
        self.tx.send(frames)
    }

    pub fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.tx.send_frame(frame)
    }

    pub fn burst_capacity(&self) -> usize {
        self.tx.burst_capacity()
    }

    /// Hands on what the receiving socket has; when it has nothing, the
    /// link watch may look at the link.
    pub fn receive(
        &mut self,
        name: &str,
        now: Instant,
        sink: &mut FrameSink<'_>,
    ) -> io::Result<usize> {
        let (received, error) = match self.rx.receive(sink) {
            Ok(0) => (0, None),
            // Frames say nothing of the link: they may have been queued
            // before it went down.
            Ok(n) => return Ok(n),
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
struct PacketLink<'a> {
    name: &'a str,
    rx: &'a Receiver,
    tx: &'a mut PacketSender,
}

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

/// Compiles `filter` with libpcap (for Ethernet) and attaches it to our
/// receive socket (`SO_ATTACH_FILTER`), where the kernel runs it before
/// a frame is queued for us.
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
