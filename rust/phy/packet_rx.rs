//! The receiving half of the Linux device: a packet socket of our own,
//! bound to the interface, read many frames per `recvmmsg`.
//!
//! With `PACKET_VNET_HDR` each frame comes after a virtio-net header
//! (`vnet.rs`), so the host's kernel can hand over what its offloads made:
//! a peer's TSO/GSO burst or a GRO-merged run of segments arrives as one
//! super-frame of up to 64 KiB and goes through the engine once, and a
//! checksum the kernel left to "hardware" (`CHECKSUM_PARTIAL`) or that a
//! NIC verified is marked so, not dropped as wrong. libpcap cannot tell us
//! either (the portable path needs the peer's checksum offload off).
//! A UDP burst (GSO type UDP_L4) is cut into its datagrams here.

use super::live_device::RxLosses;
use super::packet_socket::{self, ignore_outgoing, join_promiscuous, PACKET_OUTGOING};
use super::sockopt::{set_buffer, set_int, Buffer};
use super::vnet::{self, VnetHeader, PACKET_VNET_HDR};
use super::FrameSink;
use crate::iface::{segment_burst, RxChecksum};
use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// The largest frame: a 64 KiB IPv4 burst behind an Ethernet (and VLAN) header.
const SLOT: usize = 65_535 + 18;
/// Frames per `recvmmsg`: enough to empty a burst of ACKs or small
/// segments in one call; pages of unused slots are never touched.
const BATCH: usize = 64;
/// The socket's receive buffer (root may exceed rmem_max).
const RECEIVE_BUFFER: libc::c_int = 8 << 20;

pub struct PacketReceiver {
    fd: OwnedFd,
    vnet: bool,
    /// `BATCH` slots of `SLOT` bytes, in one allocation.
    slots: Box<[u8]>,
    headers: Box<[[u8; vnet::LEN]]>,
    addresses: Box<[libc::sockaddr_ll]>,
    /// Owned here for `messages`, which point into it.
    _iovecs: Box<[[libc::iovec; 2]]>,
    messages: Box<[libc::mmsghdr]>,
    losses: RxLosses,
    /// The last batch came back short: nothing was left queued.
    drained: bool,
}

// SAFETY: the raw pointers in `iovecs` and `messages` point into the boxed
// slices this value owns, which never move or change size.
unsafe impl Send for PacketReceiver {}

impl PacketReceiver {
    /// A promiscuous receiver on interface `name`, with virtio-net headers
    /// where the kernel has them. Frames the host itself sends out on the
    /// interface (ours, or its own) are not received.
    pub fn open(name: &str) -> io::Result<Self> {
        let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
        let (fd, index) = packet_socket::open(name, libc::ETH_P_ALL as u16, flags)?;
        let vnet = set_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_VNET_HDR, 1).is_ok();
        ignore_outgoing(fd.as_raw_fd());
        set_buffer(fd.as_raw_fd(), Buffer::Receive, RECEIVE_BUFFER);
        join_promiscuous(fd.as_raw_fd(), index)?;
        Ok(Self::with_socket(fd, vnet))
    }

    fn with_socket(fd: OwnedFd, vnet: bool) -> Self {
        let mut slots = vec![0u8; BATCH * SLOT].into_boxed_slice();
        let mut headers = vec![[0u8; vnet::LEN]; BATCH].into_boxed_slice();
        // SAFETY: all-zero sockaddr_ll, iovec and mmsghdr values are valid.
        let zero_addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut addresses = vec![zero_addr; BATCH].into_boxed_slice();
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iovecs = vec![[empty, empty]; BATCH].into_boxed_slice();
        // SAFETY: as above.
        let zero_message: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut messages = vec![zero_message; BATCH].into_boxed_slice();
        let skip = !vnet as usize;
        for i in 0..BATCH {
            iovecs[i][0] = libc::iovec {
                iov_base: headers[i].as_mut_ptr().cast(),
                iov_len: vnet::LEN,
            };
            iovecs[i][1] = libc::iovec {
                iov_base: slots[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut messages[i].msg_hdr;
            h.msg_iov = iovecs[i][skip..].as_mut_ptr();
            h.msg_iovlen = 2 - skip;
            h.msg_name = (&mut addresses[i] as *mut libc::sockaddr_ll).cast();
        }
        PacketReceiver {
            fd,
            vnet,
            slots,
            headers,
            addresses,
            _iovecs: iovecs,
            messages,
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

    /// The last [`PacketReceiver::receive`] left nothing queued.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Reads one batch and hands each frame to `sink`, all of them: they are
    /// out of the kernel's queue; returns how many frames came (0: none
    /// waiting).
    pub fn receive(&mut self, sink: &mut FrameSink<'_>) -> io::Result<usize> {
        let n = loop {
            for m in self.messages.iter_mut() {
                m.msg_len = 0;
                m.msg_hdr.msg_flags = 0;
                m.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            }
            // SAFETY: every message points at this value's own header, slot and
            // address buffers, alive and unmoved for the whole call.
            let rc = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    self.messages.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                self.drained = (rc as usize) < BATCH;
                break rc as usize;
            }
            let error = io::Error::last_os_error();
            self.drained = true;
            match error.raw_os_error() {
                Some(libc::EAGAIN) => return Ok(0),
                Some(libc::EINTR) => continue,
                // The frame at the head could not be described (a GSO type
                // the header has no name for); the kernel dropped it.
                Some(libc::EINVAL) if self.vnet => self.losses.undescribed += 1,
                // ENETDOWN (the socket's error: the link went down) and the
                // like go to the link watch (`packet_path.rs`).
                _ => return Err(error),
            }
        };
        let header_len = if self.vnet { vnet::LEN } else { 0 };
        for i in 0..n {
            let m = &self.messages[i];
            if self.addresses[i].sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.losses.truncated += 1;
                continue;
            }
            let len = (m.msg_len as usize).saturating_sub(header_len).min(SLOT);
            let frame = &mut self.slots[i * SLOT..i * SLOT + len];
            let header = if self.vnet {
                VnetHeader::parse(&self.headers[i])
            } else {
                VnetHeader::default()
            };
            let _ = deliver(frame, &header, sink);
        }
        Ok(n)
    }
}

/// Hands on one received frame as the header describes it; what the sink
/// said after it.
pub(super) fn deliver(
    frame: &[u8],
    header: &VnetHeader,
    sink: &mut FrameSink<'_>,
) -> ControlFlow<()> {
    if header.gso_kind() == vnet::GSO_UDP_L4 && header.gso_size > 0 {
        // Each datagram gets its own length and a finished checksum.
        let mut flow = ControlFlow::Continue(());
        segment_burst(frame, header.gso_size as usize, &mut |d| {
            if sink(d, RxChecksum::Unverified, None).is_break() {
                flow = ControlFlow::Break(());
            }
        });
        return flow;
    }
    // A TCP burst is one segment (the engine takes super-frames whole);
    // other types (UFO: one large datagram) are whole packets too.
    sink(frame, header.checksum(), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    /// A receiver over one end of an AF_UNIX datagram pair: `recvmmsg`,
    /// slot and header handling without a network interface or root.
    fn pair(vnet: bool) -> (PacketReceiver, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let rc = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0);
        // SAFETY: both descriptors were just opened and are ours.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        (PacketReceiver::with_socket(a, vnet), b)
    }

    fn send(fd: &OwnedFd, bytes: &[u8]) {
        // SAFETY: `bytes` is alive for the call.
        let rc = unsafe { libc::send(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        assert_eq!(rc, bytes.len() as isize);
    }

    #[test]
    fn reads_frames_after_their_headers_with_the_checksum_state() {
        let (mut rx, peer) = pair(true);
        let partial = VnetHeader {
            flags: 1,
            csum_start: 34,
            csum_offset: 16,
            ..Default::default()
        };
        let mut one = partial.emit().to_vec();
        one.extend_from_slice(&[0xaa; 60]);
        let mut two = VnetHeader {
            flags: 2,
            ..Default::default()
        }
        .emit()
        .to_vec();
        two.extend_from_slice(&[0xbb; 9000]);
        send(&peer, &one);
        send(&peer, &two);
        let mut got = vec![];
        let n = rx
            .receive(&mut |f, c, _| {
                got.push((f.to_vec(), c));
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(got[0].0, vec![0xaa; 60]);
        assert_eq!(
            got[0].1,
            RxChecksum::Partial {
                start: 34,
                offset: 16
            }
        );
        assert_eq!((got[1].0.len(), got[1].1), (9000, RxChecksum::Verified));
        assert_eq!(
            rx.receive(&mut |_, _, _| panic!("nothing left")).unwrap(),
            0
        );
    }

    #[test]
    fn a_frame_longer_than_a_slot_is_dropped_and_counted() {
        let (mut rx, peer) = pair(false);
        send(&peer, &vec![1u8; SLOT + 100]);
        send(&peer, &[2u8; 64]);
        let mut got = vec![];
        rx.receive(&mut |f, c, _| {
            got.push((f.to_vec(), c));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(got, vec![(vec![2u8; 64], RxChecksum::Unverified)]);
        assert_eq!(rx.losses().truncated, 1);
    }

    #[test]
    fn more_frames_than_a_batch_take_several_calls() {
        let (mut rx, peer) = pair(false);
        for i in 0..BATCH + 5 {
            send(&peer, &[i as u8; 100]);
        }
        let mut seen = 0;
        assert_eq!(
            rx.receive(&mut |_, _, _| {
                seen += 1;
                std::ops::ControlFlow::Continue(())
            })
            .unwrap(),
            BATCH
        );
        assert_eq!(
            rx.receive(&mut |_, _, _| {
                seen += 1;
                std::ops::ControlFlow::Continue(())
            })
            .unwrap(),
            5
        );
        assert_eq!(seen, BATCH + 5);
    }
}
