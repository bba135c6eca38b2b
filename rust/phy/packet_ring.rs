//! The receiving half of the Linux device without a system call per batch:
//! a `PACKET_RX_RING` (TPACKET_V2, Documentation/networking/packet_mmap.rst)
//! mapped into our memory. The kernel copies each frame into a free slot
//! of the ring as it arrives — in the sender's context, for a peer on the
//! same host — and flips the slot's status word; we read frames in place
//! and hand the slot back. No `recvmmsg`, no socket-queue lock, no skb
//! freed on our thread: those were a quarter of the receiving thread's
//! time (`bench/README.md`).
//!
//! Slots are sized for the interface's MTU (2 KiB for 1500 bytes, up to
//! 16 KiB for jumbo frames). A larger frame (a peer's TSO burst, a GRO run)
//! is queued whole on the socket as well
//! (`PACKET_COPY_THRESH`): its slot says `TP_STATUS_COPY` and carries a
//! truncated copy, and the frame itself is read with one `recv` — one
//! system call per 64 KiB, as before. Virtio-net headers (`vnet.rs`) sit
//! just before each frame in its slot. TPACKET_V3 was not taken: its
//! blocks reach us when full or after a timeout of milliseconds, which a
//! ping or a request/response would wait out (libpcap, too, uses V2 in
//! immediate mode).

use super::live_device::RxLosses;
use super::packet_rx::deliver;
use super::packet_socket::{self, ignore_outgoing, join_promiscuous, PACKET_OUTGOING};
use super::queued_text::QueuedText;
use super::sockopt::{set_buffer, set_int, Buffer};
use super::vnet::{self, VnetHeader, PACKET_VNET_HDR};
use super::FrameSink;
use crate::wire::held_tcp_text;
use std::cell::RefCell;
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_COPY_THRESH: libc::c_int = 7;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;

/// `tp_status` bits (include/uapi/linux/if_packet.h).
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_COPY: u32 = 1 << 1;
const TP_STATUS_LOSING: u32 = 1 << 2;

/// Field offsets in a slot's `struct tpacket2_hdr`.
const STATUS: usize = 0;
const LEN: usize = 4;
const SNAPLEN: usize = 8;
const MAC: usize = 12;
/// The `struct sockaddr_ll` after the header (TPACKET_ALIGN(32)), and its
/// `sll_pkttype`.
const PKTTYPE: usize = 32 + 10;

/// What a slot holds besides the frame: the `tpacket2_hdr`, the address,
/// alignment, the virtio-net header (the frame starts 90 bytes in), and a
/// VLAN tag.
const SLOT_OVERHEAD: usize = 128;
/// Slot sizes: 2 KiB holds a 1500-byte frame; jumbo frames up to 9,000 or
/// so get 16 KiB slots; larger ones take the socket's queue.
const SMALLEST_SLOT: usize = 2048;
const LARGEST_SLOT: usize = 16384;
/// 8 MiB, what the socket's receive buffer held before: 4,096 slots at a
/// 1500-byte MTU, a few milliseconds of a 10 Gbit/s sender while we are busy.
const RING_BYTES: usize = 8 << 20;
/// A block is physically contiguous kernel memory, some slots' worth.
const BLOCK_BYTES: usize = 64 << 10;

/// Linux fills virtio-net headers into ring slots from 5.6 on (commit
/// 58d19b19cd99, "packet: vnet_hdr support for tpacket_rcv"); before, it
/// accepts `PACKET_VNET_HDR` on a ring socket and leaves the room out, so
/// a frame with a partial checksum (a local peer's offload) could not be
/// told from a corrupt one. Such kernels read with `recvmmsg`, which has
/// carried the headers since 2.6.
fn kernel_fills_vnet_headers(release: &str) -> bool {
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    (major, minor) >= (5, 6)
}

/// `uname -r`.
fn kernel_release() -> io::Result<String> {
    // SAFETY: an all-zero utsname is valid, and uname fills it.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `names` is live and of the type uname writes.
    if unsafe { libc::uname(&mut names) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes: Vec<u8> = names
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The slot size for an interface's MTU: a frame of that size fits, as a
/// power of two (slots must tile the blocks), within the bounds above.
fn slot_size(mtu: usize) -> usize {
    (mtu + SLOT_OVERHEAD)
        .next_power_of_two()
        .clamp(SMALLEST_SLOT, LARGEST_SLOT)
}

/// Frames handed on per [`PacketRing::receive`]: the engine then answers
/// (ACKs) before taking more, as with one `recvmmsg` batch.
const BATCH: usize = 64;
/// The largest frame read from the socket's queue: a 64 KiB burst.
const SPILL: usize = 65_535 + 18;
/// Ethernet, IPv4 and TCP headers with all their options fit in this.
const HEADERS_MOST: usize = 14 + 60 + 60;
/// Room on the socket's queue for bursts (`TP_STATUS_COPY`).
const RECEIVE_BUFFER: libc::c_int = 8 << 20;

/// `struct tpacket_req`.
#[repr(C)]
struct RingRequest {
    block_size: u32,
    block_count: u32,
    frame_size: u32,
    frame_count: u32,
}

/// The ring, mapped; unmapped on drop (when the last [`ArrivalPeek`] is
/// gone too).
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory. Slots are read only by the
// ring's owner, which has them from the kernel (status word protocol);
// other threads only load status words, atomically ([`ArrivalPeek`]).
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// The status word of the slot at byte offset `at`, shared with the kernel.
    fn status(&self, at: usize) -> &AtomicU32 {
        assert!(at + 4 <= self.len && at % 4 == 0);
        // SAFETY: in the mapping (checked) and aligned; the kernel writes
        // this word only as an aligned u32.
        unsafe { AtomicU32::from_ptr(self.base.add(at).cast()) }
    }
}

/// Whether frames wait in the ring, asked from any thread without a system
/// call or the reader's lock: a thread spinning for a reply looks at the
/// status word of the slot the reader takes next. A hint, not a promise:
/// it may be a batch late either way, and `poll()` on the socket remains
/// the authority for a thread about to sleep.
#[derive(Clone)]
pub struct ArrivalPeek {
    ring: Arc<Mapping>,
    /// Byte offset of the reader's next slot.
    head: Arc<AtomicUsize>,
}

impl ArrivalPeek {
    pub fn frames_waiting(&self) -> bool {
        let at = self.head.load(Ordering::Relaxed);
        self.ring.status(at + STATUS).load(Ordering::Relaxed) & TP_STATUS_USER != 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing
        // borrows the ring once its owner is dropped.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

pub struct PacketRing {
    // Field order: the mapping goes before the socket that backs it. An
    // `ArrivalPeek` may keep it longer: a mapping stays valid (and means
    // nothing) once its socket is closed.
    ring: Arc<Mapping>,
    fd: OwnedFd,
    /// Bytes per slot, and slots.
    slot: usize,
    slots: usize,
    /// The next slot the kernel fills and we read, in order.
    head: usize,
    /// Its byte offset, for [`ArrivalPeek`]s.
    published_head: Arc<AtomicUsize>,
    /// A frame that came whole through the socket's queue: header, then frame.
    spill: Box<[u8]>,
    /// A queued frame as the engine sees it while its text stays queued:
    /// the headers copied from the slot, then bytes nobody reads.
    hollow: Box<[u8]>,
    losses: RxLosses,
    drained: bool,
}

impl PacketRing {
    /// A promiscuous ring receiver on interface `name`, with virtio-net
    /// headers. Fails where the kernel lacks either (the caller then reads
    /// with `recvmmsg`, `packet_rx.rs`).
    pub fn open(name: &str) -> io::Result<Self> {
        if !kernel_fills_vnet_headers(&kernel_release()?) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a receive ring has virtio-net headers from Linux 5.6",
            ));
        }
        let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        let mut ring = None;
        // The ring is set up before the socket is bound: frames queued on
        // the socket before it would otherwise stay there, readable forever.
        let (fd, index) = packet_socket::open_with(name, libc::ETH_P_ALL as u16, flags, |fd| {
            let slot = slot_size(packet_socket::mtu(fd.as_raw_fd(), name)?);
            ring = Some((Self::map_ring(fd, slot)?, slot));
            Ok(())
        })?;
        let (ring, slot) = ring.expect("configured before bind");
        join_promiscuous(fd.as_raw_fd(), index)?;
        Ok(Self::with_socket(fd, ring, slot))
    }

    /// Asks `fd` for a TPACKET_V2 ring of `slot`-byte slots with virtio-net
    /// headers, and maps it.
    fn map_ring(fd: &OwnedFd, slot: usize) -> io::Result<Mapping> {
        let raw = fd.as_raw_fd();
        set_int(raw, libc::SOL_PACKET, PACKET_VERSION, TPACKET_V2)?;
        set_int(raw, libc::SOL_PACKET, PACKET_VNET_HDR, 1)?;
        ignore_outgoing(raw);
        set_int(raw, libc::SOL_PACKET, PACKET_COPY_THRESH, 1)?;
        set_buffer(raw, Buffer::Receive, RECEIVE_BUFFER);
        let request = RingRequest {
            block_size: BLOCK_BYTES as u32,
            block_count: (RING_BYTES / BLOCK_BYTES) as u32,
            frame_size: slot as u32,
            frame_count: (RING_BYTES / slot) as u32,
        };
        // SAFETY: `request` is a live tpacket_req and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_PACKET,
                PACKET_RX_RING,
                (&request as *const RingRequest).cast(),
                std::mem::size_of::<RingRequest>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let len = RING_BYTES;
        // SAFETY: maps the ring the kernel just made for `raw`; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            base: base.cast(),
            len,
        })
    }

    fn with_socket(fd: OwnedFd, ring: Mapping, slot: usize) -> Self {
        PacketRing {
            ring: Arc::new(ring),
            fd,
            slot,
            slots: RING_BYTES / slot,
            head: 0,
            published_head: Arc::default(),
            spill: vec![0u8; vnet::LEN + SPILL].into_boxed_slice(),
            hollow: vec![0u8; SPILL].into_boxed_slice(),
            losses: RxLosses::default(),
            drained: false,
        }
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn losses(&self) -> RxLosses {
        self.losses
    }

    /// The last [`PacketRing::receive`] left nothing in the ring.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// The status word of slot `i`, shared with the kernel.
    fn status(&self, i: usize) -> &AtomicU32 {
        self.ring.status(i * self.slot + STATUS)
    }

    /// Starts loading slot `i`'s status word while this frame goes through
    /// the engine: a slot is touched once per trip round 8 MiB of ring, so
    /// the next one is never in the cache or the TLB, and looking at it
    /// after the frame stalled a request/response for a sixth of its time
    /// in the stack's own code (`perf annotate`).
    fn prefetch_status(&self, i: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            let word = self.status(i) as *const AtomicU32;
            // SAFETY: a prefetch only hints the cache; the address is in the mapping.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(word.cast())
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = i;
    }

    pub fn arrival_peek(&self) -> ArrivalPeek {
        ArrivalPeek {
            ring: self.ring.clone(),
            head: self.published_head.clone(),
        }
    }

    /// Hands on up to a batch of frames, fewer if the sink says stop;
    /// returns how many slots were read.
    pub fn receive(&mut self, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        let mut n = 0;
        self.drained = false;
        while n < BATCH {
            let slot = self.head;
            // Acquire: the frame's bytes, written before the status, are visible.
            let status = self.status(slot).load(Ordering::Acquire);
            if status & TP_STATUS_USER == 0 {
                self.drained = true;
                break;
            }
            // SAFETY: the slot is ours (TP_STATUS_USER) until we hand it back
            // below; the kernel does not write it meanwhile.
            let bytes = unsafe {
                std::slice::from_raw_parts(self.ring.base.add(slot * self.slot), self.slot)
            };
            if status & TP_STATUS_LOSING != 0 {
                self.count_ring_drops();
            }
            self.prefetch_status((slot + 1) % self.slots);
            let flow = self.take(bytes, status, sink);
            // Release: we are done reading before the kernel may write again.
            self.status(slot).store(0, Ordering::Release);
            self.head = (slot + 1) % self.slots;
            n += 1;
            if flow.is_break() {
                break;
            }
        }
        self.published_head
            .store(self.head * self.slot, Ordering::Relaxed);
        Ok(n)
    }

    /// Hands on the frame in slot `bytes`.
    fn take(&mut self, bytes: &[u8], status: u32, sink: &mut FrameSink<'_>) -> ControlFlow<()> {
        let outgoing = bytes[PKTTYPE] == PACKET_OUTGOING;
        let word = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let mac = u16::from_ne_bytes([bytes[MAC], bytes[MAC + 1]]) as usize;
        let (len, snaplen) = (word(LEN), word(SNAPLEN));
        let sane = mac >= vnet::LEN && mac + snaplen <= bytes.len();
        if status & TP_STATUS_COPY != 0 {
            // The whole frame waits on the socket's queue, in ring order.
            if outgoing || !sane {
                return self.take_spilled(outgoing, sink);
            }
            let header: &[u8; vnet::LEN] = bytes[mac - vnet::LEN..mac].try_into().unwrap();
            return self.take_queued(&bytes[mac..mac + snaplen], len, header, sink);
        }
        if outgoing {
            return ControlFlow::Continue(());
        }
        if snaplen < len || !sane {
            // Too long for the slot, and no room left on the queue for it.
            self.losses.truncated += 1;
            return ControlFlow::Continue(());
        }
        let header: &[u8; vnet::LEN] = bytes[mac - vnet::LEN..mac].try_into().unwrap();
        deliver(&bytes[mac..mac + snaplen], &VnetHeader::parse(header), sink)
    }

    /// A frame queued whole beside its slot, whose slot holds its first
    /// `snap` bytes: a TCP segment's text stays queued until the engine
    /// says where it goes (`queued_text.rs`), anything else is read whole.
    fn take_queued(
        &mut self,
        snap: &[u8],
        len: usize,
        header: &[u8; vnet::LEN],
        sink: &mut FrameSink<'_>,
    ) -> ControlFlow<()> {
        let header = VnetHeader::parse(header);
        let checksum = header.checksum();
        let headers = snap.len().min(HEADERS_MOST).min(len);
        if !checksum.trusted() || header.gso_kind() == vnet::GSO_UDP_L4 || len > self.hollow.len() {
            return self.take_spilled(false, sink);
        }
        // The engine reads the headers from a frame of the real length whose
        // text it never looks at.
        self.hollow[..headers].copy_from_slice(&snap[..headers]);
        let frame = &self.hollow[..len];
        let text = match held_tcp_text(frame) {
            Some(text) if text.start <= headers && text.end == len => text,
            _ => return self.take_spilled(false, sink),
        };
        let queued = RefCell::new(QueuedText::new(
            self.fd.as_raw_fd(),
            &snap[..text.start],
            len,
            &mut self.spill,
        ));
        let flow = sink(frame, checksum, Some(&queued));
        if !queued.into_inner().finish() {
            self.losses.unread += 1;
        }
        flow
    }

    /// Reads the frame the kernel queued whole beside its slot.
    fn take_spilled(&mut self, outgoing: bool, sink: &mut FrameSink<'_>) -> ControlFlow<()> {
        let rc = loop {
            // SAFETY: `spill` is ours and its length is passed.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.spill.as_mut_ptr().cast(),
                    self.spill.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            };
            if rc >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                break rc;
            }
        };
        if rc < 0 {
            // The header could not be made (EINVAL) or the queue was empty.
            self.losses.undescribed += 1;
            return ControlFlow::Continue(());
        }
        let total = rc as usize;
        if outgoing {
            return ControlFlow::Continue(());
        }
        if total > self.spill.len() || total < vnet::LEN {
            self.losses.truncated += 1;
            return ControlFlow::Continue(());
        }
        let (header, frame) = self.spill[..total].split_at(vnet::LEN);
        deliver(frame, &VnetHeader::parse(header.try_into().unwrap()), sink)
    }

    /// Frames the kernel dropped for want of a free slot since last asked
    /// (`PACKET_STATISTICS` clears on read).
    fn count_ring_drops(&mut self) {
        let mut stats = [0u32; 2]; // struct tpacket_stats { tp_packets, tp_drops }
        let mut len = std::mem::size_of_val(&stats) as libc::socklen_t;
        // SAFETY: `stats` and `len` are live and describe each other.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                stats.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.losses.ring_full += stats[1] as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::poll::wait_readable;
    use crate::time::Duration;
    use std::os::fd::FromRawFd;

    /// Runs `test` on a thread of its own, moved into a network namespace
    /// of its own whose loopback is up: frames sent there reach nobody else.
    /// Needs root; without it the test says so and passes, except under
    /// `CI=true`, where a missing lab is a failure.
    fn in_private_netns(test: impl FnOnce() + Send + 'static) {
        let outcome = std::thread::spawn(move || {
            // SAFETY: unshare takes no pointers; it moves this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            set_loopback_up()?;
            test();
            Ok(())
        })
        .join()
        .expect("the test thread panicked");
        if let Err(e) = outcome {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "no network namespace for the ring tests: {e}"
            );
            eprintln!("skipped: no network namespace ({e}); run as root");
        }
    }

    fn set_loopback_up() -> io::Result<()> {
        // SAFETY: socket takes no pointers; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` was just opened and is ours.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero ifreq is valid.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (to, from) in request.ifr_name.iter_mut().zip(b"lo") {
            *to = *from as libc::c_char;
        }
        // SAFETY: the ioctls read and write `request`, alive for both calls;
        // the flags member is the one SIOC[GS]IFFLAGS use.
        let rc = unsafe {
            if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) < 0 {
                -1
            } else {
                request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &request)
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// A sending packet socket on `lo` and its index.
    fn sender() -> (OwnedFd, u32) {
        packet_socket::open("lo", 0, libc::SOCK_CLOEXEC).expect("a packet socket on lo")
    }

    /// An Ethernet frame of `len` bytes to a made-up host, local ethertype,
    /// its payload numbered by `tag`.
    fn frame(len: usize, tag: u8) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        f
    }

    fn send(fd: &OwnedFd, index: u32, bytes: &[u8]) {
        // SAFETY: an all-zero sockaddr_ll is valid; the fields needed are set.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_ifindex = index as i32;
        to.sll_halen = 6;
        // SAFETY: `bytes` and `to` are alive for the call and their sizes passed.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, bytes.len() as isize, "{}", io::Error::last_os_error());
    }

    /// The bytes of every frame waiting, in order.
    fn drain(ring: &mut PacketRing) -> Vec<Vec<u8>> {
        let mut got = vec![];
        while ring
            .receive(&mut |f, _, _| {
                got.push(f.to_vec());
                std::ops::ControlFlow::Continue(())
            })
            .unwrap()
            > 0
        {}
        assert!(ring.drained());
        got
    }

    #[test]
    fn kernels_before_5_6_leave_the_headers_out_of_ring_slots() {
        for (release, fills) in [
            ("6.1.0-18-amd64", true),
            ("5.6.0", true),
            ("5.10.209-1", true),
            ("5.5.19", false),
            ("4.18.0-553.el8_10.x86_64", false),
            ("3.10.0", false),
            ("", false),
        ] {
            assert_eq!(kernel_fills_vnet_headers(release), fills, "{release}");
        }
        assert!(kernel_fills_vnet_headers(&kernel_release().unwrap()));
    }

    #[test]
    fn slots_fit_the_interfaces_frames_within_bounds() {
        assert_eq!(slot_size(576), 2048);
        assert_eq!(slot_size(1500), 2048);
        assert_eq!(slot_size(4000), 8192);
        assert_eq!(slot_size(9000), 16384);
        assert_eq!(slot_size(65536), 16384, "larger frames take the queue");
        for mtu in [1500, 9000] {
            assert!(RING_BYTES % BLOCK_BYTES == 0 && BLOCK_BYTES % slot_size(mtu) == 0);
        }
    }

    #[test]
    fn a_sink_that_says_stop_leaves_the_next_frames_in_the_ring() {
        in_private_netns(|| {
            let mut ring = PacketRing::open("lo").expect("a ring on lo");
            let (tx, index) = sender();
            let sent = [frame(60, 1), frame(60_000, 2), frame(60, 3), frame(60, 4)];
            for f in &sent {
                send(&tx, index, f);
            }
            assert!(wait_readable(&[ring.fd()], Some(Duration::from_secs(1))).unwrap());
            let mut got = vec![];
            let n = ring
                .receive(&mut |f, _, _| {
                    got.push(f.to_vec());
                    match got.len() {
                        2 => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    }
                })
                .unwrap();
            assert_eq!((n, &got[..]), (2, &sent[..2]), "stopped after the second");
            assert!(!ring.drained());
            assert_eq!(drain(&mut ring), sent[2..], "the rest, in order");
        });
    }

    #[test]
    fn frames_come_in_order_small_in_their_slots_and_large_whole_from_the_queue() {
        in_private_netns(|| {
            let mut ring = PacketRing::open("lo").expect("a ring on lo");
            let (tx, index) = sender();
            // Slot-sized, then larger than a slot (queued whole), mixed
            // (lo's MTU is 64 KiB: its slots are the largest, 16 KiB).
            let sent = [
                frame(60, 1),
                frame(1514, 2),
                frame(9014, 3),
                frame(200, 4),
                frame(60_000, 5),
                frame(1000, 6),
            ];
            for f in &sent {
                send(&tx, index, f);
            }
            assert!(wait_readable(&[ring.fd()], Some(Duration::from_secs(1))).unwrap());
            let got = drain(&mut ring);
            assert_eq!(got, sent, "frames, their bytes and their order");
            assert_eq!(ring.losses().truncated + ring.losses().undescribed, 0);
            // Nothing left: the descriptor is no longer readable.
            assert!(!wait_readable(&[ring.fd()], Some(Duration::ZERO)).unwrap());
        });
    }

    #[test]
    fn a_peek_from_another_thread_sees_frames_waiting_until_they_are_read() {
        in_private_netns(|| {
            let mut ring = PacketRing::open("lo").expect("a ring on lo");
            let peek = ring.arrival_peek();
            let (tx, index) = sender();
            let from_elsewhere = |p: &ArrivalPeek| {
                let p = p.clone();
                std::thread::spawn(move || p.frames_waiting())
                    .join()
                    .unwrap()
            };
            assert!(!from_elsewhere(&peek), "an empty ring");
            for i in 0..3 {
                send(&tx, index, &frame(100, i));
            }
            assert!(wait_readable(&[ring.fd()], Some(Duration::from_secs(1))).unwrap());
            assert!(from_elsewhere(&peek));
            assert_eq!(drain(&mut ring).len(), 3);
            assert!(!from_elsewhere(&peek), "all read");
            // It follows the reader along the ring.
            send(&tx, index, &frame(100, 9));
            assert!(wait_readable(&[ring.fd()], Some(Duration::from_secs(1))).unwrap());
            assert!(from_elsewhere(&peek));
            drop(ring);
            assert!(peek.frames_waiting(), "the mapping outlives the ring");
        });
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_then_goes_on() {
        in_private_netns(|| {
            let mut ring = PacketRing::open("lo").expect("a ring on lo");
            let (tx, index) = sender();
            let extra = 500;
            let slots = ring.slots;
            for i in 0..slots + extra {
                send(&tx, index, &frame(100, i as u8));
            }
            let first = drain(&mut ring);
            assert_eq!(first.len(), slots, "the ring holds its slots' worth");
            assert_eq!(first[0], frame(100, 0));
            // The next frame in reports the drops.
            send(&tx, index, &frame(100, 7));
            assert_eq!(drain(&mut ring), vec![frame(100, 7)]);
            let dropped = ring.losses().ring_full;
            assert!(dropped > 0 && dropped <= extra as u64, "{dropped}");
        });
    }
}
