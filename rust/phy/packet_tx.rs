//! The sending half of the live device: a packet socket of our own, bound to
//! the interface, that takes many frames per `sendmmsg`.
//!
//! With segmentation offload it carries a virtio-net header before each
//! frame (`PACKET_VNET_HDR`, as tap and virtio drivers use): a TCP burst
//! then goes to the kernel as one packet and is cut into wire segments by
//! its GSO, in software or by the NIC, as the kernel's own TCP output is.
//! Frames pass the interface's queueing discipline, as the kernel's own do,
//! so `tc` shaping and netem apply to the stack too.

use super::packet_socket::{self, device_segments_tcp};
use super::sockopt::{set_buffer, set_int, Buffer};
use super::vnet::{self, VnetHeader, PACKET_VNET_HDR};
use crate::iface::TxFrame;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// The largest IPv4 packet, and so the largest burst the kernel takes.
const MAX_BURST: usize = 65535;
/// Most messages per system call (the kernel's UIO_MAXIOV).
const MAX_MESSAGES: usize = 1024;
/// Send buffer: a round's bursts must fit while a NIC drains them.
const SEND_BUFFER: libc::c_int = 4 << 20;

pub struct PacketSender {
    fd: OwnedFd,
    /// Frames go with a virtio-net header (segmentation offload on).
    vnet: bool,
    iovecs: Vec<libc::iovec>,
    /// Where each message's iovecs end in `iovecs`.
    ends: Vec<usize>,
    headers: Vec<libc::mmsghdr>,
    vnet_headers: Vec<[u8; vnet::LEN]>,
    /// Bursts are cut here, in user space: no offload, or the kernel refused one.
    cut_bursts: bool,
    /// Bursts go in one linear buffer ([`VnetHeader::linear`]): the device
    /// cut them itself when the sender opened. (Asked once: the question
    /// takes the kernel's RTNL lock, which a busy host may hold for
    /// milliseconds. Should `ethtool -K` turn TSO off later, the bursts
    /// still arrive whole, only cut at a higher cost.)
    linear_bursts: bool,
}

// SAFETY: the raw pointers in the scratch arrays are only meaningful during
// `send`, which rebuilds them from borrowed frames each time.
unsafe impl Send for PacketSender {}

impl PacketSender {
    /// A sender on interface `name`; `offload` asks for segmentation offload,
    /// which a kernel without `PACKET_VNET_HDR` cannot give (see
    /// [`PacketSender::burst_capacity`]).
    pub fn open(name: &str, offload: bool) -> io::Result<Self> {
        // Protocol 0: the socket receives nothing; the receiver's socket does that.
        let (fd, _) = packet_socket::open(name, 0, libc::SOCK_CLOEXEC)?;
        // Root may exceed wmem_max; otherwise the ordinary limit applies.
        set_buffer(fd.as_raw_fd(), Buffer::Send, SEND_BUFFER);
        let vnet = offload && set_int(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_VNET_HDR, 1).is_ok();
        // Where the device cannot be asked, bursts go in pages, which suits either way.
        let linear_bursts = vnet && device_segments_tcp(fd.as_raw_fd(), name).unwrap_or(false);
        log::debug!("{name} cuts TCP bursts itself: {linear_bursts}");
        Ok(PacketSender {
            fd,
            vnet,
            iovecs: Vec::new(),
            ends: Vec::new(),
            headers: Vec::new(),
            vnet_headers: Vec::new(),
            cut_bursts: !vnet,
            linear_bursts,
        })
    }

    /// Sends on interface `index` from now on: one made again under `name`
    /// (`link_watch.rs`), which is asked again whether it cuts bursts itself.
    pub fn bind(&mut self, name: &str, index: u32) -> io::Result<()> {
        packet_socket::bind(self.fd.as_raw_fd(), 0, index)?;
        self.linear_bursts =
            self.vnet && device_segments_tcp(self.fd.as_raw_fd(), name).unwrap_or(false);
        Ok(())
    }

    /// The largest TCP burst the kernel cuts for us; 0 without offload.
    pub fn burst_capacity(&self) -> usize {
        if self.vnet {
            MAX_BURST
        } else {
            0
        }
    }

    /// Sends `frames` in order; returns how many wire frames failed.
    pub fn send(&mut self, frames: &[TxFrame<'_>]) -> usize {
        if self.cut_bursts && frames.iter().any(|f| f.segment_size > 0) {
            let wire = cut(frames);
            let whole: Vec<TxFrame<'_>> = wire.iter().map(|f| TxFrame::whole(f, 0)).collect();
            return self.send(&whole);
        }
        let mut failed = 0;
        let mut at = 0;
        while at < frames.len() {
            let chunk = &frames[at..frames.len().min(at + MAX_MESSAGES)];
            let (chunk_failed, refused) = self.send_chunk(chunk);
            failed += chunk_failed;
            let Some(i) = refused else {
                at += chunk.len();
                continue;
            };
            // A kernel that will not cut our bursts must not stall every
            // connection: from here on they are cut in user space.
            log::warn!("the kernel refused a TCP burst; cutting bursts in user space from now on");
            self.cut_bursts = true;
            return failed + self.send(&frames[at + i..]);
        }
        failed
    }

    /// Sends one whole frame (no burst).
    pub fn send_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let header = [0u8; vnet::LEN];
        let mut iovecs = [
            libc::iovec {
                iov_base: header.as_ptr() as *mut libc::c_void,
                iov_len: vnet::LEN,
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut libc::c_void,
                iov_len: frame.len(),
            },
        ];
        let skip = !self.vnet as usize;
        // SAFETY: an all-zero msghdr is a valid empty message.
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = iovecs[skip..].as_mut_ptr();
        message.msg_iovlen = 2 - skip;
        // SAFETY: `message` points at live iovecs over `header` and `frame` for the whole call.
        let rc = unsafe { libc::sendmsg(self.fd.as_raw_fd(), &message, libc::MSG_DONTWAIT) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sends up to [`MAX_MESSAGES`] frames; returns the wire frames that
    /// failed, and where it stopped if the kernel refused a burst itself
    /// (not for want of room).
    fn send_chunk(&mut self, frames: &[TxFrame<'_>]) -> (usize, Option<usize>) {
        self.vnet_headers.clear();
        if self.vnet {
            let linear = self.linear_bursts;
            self.vnet_headers.extend(frames.iter().map(|f| {
                let header = VnetHeader::for_tcp_burst(f.head, f.segment_size);
                if linear {
                    header.linear(f.len())
                } else {
                    header
                }
                .emit()
            }));
        }
        // Each message gathers its pieces: the virtio-net header, the
        // frame's headers, the text where it lies.
        self.iovecs.clear();
        self.ends.clear();
        for (i, frame) in frames.iter().enumerate() {
            if self.vnet {
                self.iovecs.push(libc::iovec {
                    iov_base: self.vnet_headers[i].as_ptr() as *mut libc::c_void,
                    iov_len: vnet::LEN,
                });
            }
            for part in frame.parts() {
                self.iovecs.push(libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                });
            }
            self.ends.push(self.iovecs.len());
        }
        self.headers.clear();
        let mut start = 0;
        for &end in &self.ends {
            // SAFETY: an all-zero mmsghdr is a valid empty message.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = self.iovecs[start..end].as_mut_ptr();
            h.msg_hdr.msg_iovlen = end - start;
            self.headers.push(h);
            start = end;
        }
        let mut failed = 0;
        let mut sent = 0;
        while sent < self.headers.len() {
            let rest = &mut self.headers[sent..];
            // SAFETY: `rest` points at `rest.len()` initialised headers whose iovecs point
            // into `frames` (headers and text) and `vnet_headers`, all alive and unmoved for the whole call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                sent += rc as usize;
                continue;
            }
            let error = io::Error::last_os_error();
            if rc < 0 && error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if frames[sent].segment_size > 0 && refuses_bursts(error.raw_os_error()) {
                return (failed, Some(sent));
            }
            // The message at `sent` failed (buffer full, link down): count it, go on.
            failed += frames[sent].wire_size().0;
            sent += 1;
        }
        (failed, None)
    }
}

/// Whether a burst's failure says the kernel will not cut our bursts, as
/// opposed to the socket's buffer being full or the link being down or
/// gone (set down, unplugged, deleted): there the frames are lost and sent
/// again later, and bursts stay whole (a link flap must not cost every
/// later burst a cut in user space).
fn refuses_bursts(errno: Option<i32>) -> bool {
    !matches!(
        errno,
        Some(libc::EAGAIN | libc::ENOBUFS | libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

/// The frames the wire will carry for `frames`, each whole.
fn cut(frames: &[TxFrame<'_>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for frame in frames {
        frame.for_each_segment(&mut |f| out.push(f.to_vec()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refusal_turns_bursts_into_frames_cut_here() {
        assert!(
            refuses_bursts(Some(libc::EINVAL)),
            "a header the kernel rejects"
        );
        assert!(refuses_bursts(Some(libc::EMSGSIZE)));
        for errno in [
            libc::EAGAIN,
            libc::ENOBUFS,
            libc::ENETDOWN,
            libc::ENXIO,
            libc::ENODEV,
        ] {
            assert!(!refuses_bursts(Some(errno)), "errno {errno}");
        }
    }
}
