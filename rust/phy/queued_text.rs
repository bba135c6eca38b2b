//! A super-frame's text left on the packet socket's queue until the engine
//! says where it goes (`wire/held_text.rs`): one `recvmsg` then scatters it
//! there, the headers into our own buffer. Without it the frame was read
//! into that buffer whole and its text copied again.
//!
//! The ring slot beside the queued frame (`TP_STATUS_COPY`) carries its
//! first bytes, so the engine works from those; the headers read with the
//! text are compared with them, so that a queue out of step with the ring
//! costs a segment (the peer resends it), never wrong bytes.

use super::vnet;
use crate::wire::HeldText;
use std::io;
use std::os::fd::RawFd;

/// At most this many places for one text (a reader's buffer and the two
/// halves of the receive ring, as the engine asks today).
const MOST_PARTS: usize = 6;

/// The frame at the head of `fd`'s queue, its headers known.
pub struct QueuedText<'a> {
    fd: RawFd,
    /// The frame's headers, as the ring slot has them; the text starts
    /// right after.
    headers: &'a [u8],
    frame_len: usize,
    /// Our buffer: the virtio-net header and the frame's headers land here
    /// (the whole frame, for [`HeldText::whole_frame`]).
    spill: &'a mut [u8],
    /// Taken off the queue by a read (good or not).
    dequeued: bool,
    /// Asked for and not delivered: the segment is lost (the peer resends).
    lost: bool,
}

impl<'a> QueuedText<'a> {
    pub fn new(fd: RawFd, headers: &'a [u8], frame_len: usize, spill: &'a mut [u8]) -> Self {
        QueuedText {
            fd,
            headers,
            frame_len,
            spill,
            dequeued: false,
            lost: false,
        }
    }

    /// Takes the frame off the queue if nobody read it (a duplicate, a
    /// segment for no connection, a read refused): it must not be taken for
    /// the next slot's. False if the engine asked for it and did not get it.
    pub fn finish(self) -> bool {
        if !self.dequeued {
            // SAFETY: a zero-length read with MSG_TRUNC dequeues the datagram.
            let _ = recv_retrying(|| unsafe {
                libc::recv(
                    self.fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            });
        }
        !self.lost
    }

    /// May the engine have the frame? Once only.
    fn first_ask(&mut self) -> bool {
        let first = !self.dequeued && !self.lost;
        self.lost = true; // until the read succeeds
        first
    }

    /// One `recvmsg` into `parts`: true if it read this frame.
    fn read(&mut self, parts: &mut [libc::iovec]) -> bool {
        // SAFETY: an all-zero msghdr is valid (no name, no control).
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = parts.as_mut_ptr();
        message.msg_iovlen = parts.len() as _;
        // SAFETY: every iovec points into memory borrowed mutably for this
        // call (our buffer or the engine's parts), of the length given.
        let read = recv_retrying(|| unsafe {
            libc::recvmsg(self.fd, &mut message, libc::MSG_DONTWAIT | libc::MSG_TRUNC)
        });
        self.dequeued = read.is_ok();
        self.lost = !read.is_ok_and(|n| self.matches(n));
        !self.lost
    }

    /// The read was of this frame: its length and headers are the slot's.
    fn matches(&self, read: usize) -> bool {
        let headers = vnet::LEN..vnet::LEN + self.headers.len();
        read == vnet::LEN + self.frame_len && self.spill[headers] == *self.headers
    }
}

impl HeldText for QueuedText<'_> {
    fn len(&self) -> usize {
        self.frame_len - self.headers.len()
    }

    fn scatter(&mut self, skip: usize, parts: &mut [&mut [u8]]) -> bool {
        let wanted: usize = parts.iter().map(|p| p.len()).sum();
        if !self.first_ask() || parts.len() > MOST_PARTS || skip + wanted > self.len() {
            return false;
        }
        // Our buffer takes the headers and the text skipped, then whatever
        // follows the parts (text beyond the window: dropped).
        let before = vnet::LEN + self.headers.len() + skip;
        if before > self.spill.len() {
            return false;
        }
        let (head, tail) = self.spill.split_at_mut(before);
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MOST_PARTS + 2];
        let mut n = 0;
        for region in std::iter::once(head)
            .chain(parts.iter_mut().map(|p| &mut **p))
            .chain(std::iter::once(tail))
        {
            iov[n] = libc::iovec {
                iov_base: region.as_mut_ptr().cast(),
                iov_len: region.len(),
            };
            n += 1;
        }
        self.read(&mut iov[..n])
    }

    fn whole_frame(&mut self) -> Option<&[u8]> {
        if !self.first_ask() {
            return None;
        }
        let mut iov = [libc::iovec {
            iov_base: self.spill.as_mut_ptr().cast(),
            iov_len: self.spill.len(),
        }];
        let end = vnet::LEN + self.frame_len;
        if !self.read(&mut iov) {
            return None;
        }
        self.spill.get(vnet::LEN..end)
    }
}

/// Runs a receiving call until it is not interrupted.
fn recv_retrying(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let rc = call();
        if rc >= 0 {
            return Ok(rc as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    /// Both ends of an AF_UNIX datagram pair: a queue of frames without a
    /// network interface or root.
    fn queue() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair writes two descriptors into `fds`.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        // SAFETY: both are fresh descriptors we own.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// Queues a frame as a packet socket has it: virtio-net header first.
    fn push(fd: &OwnedFd, frame: &[u8]) {
        let datagram = [&[0u8; vnet::LEN][..], frame].concat();
        // SAFETY: the buffer is live for the call and its length is passed.
        let rc = unsafe { libc::send(fd.as_raw_fd(), datagram.as_ptr().cast(), datagram.len(), 0) };
        assert_eq!(rc, datagram.len() as isize);
    }

    fn frame(headers: &[u8], text_len: usize, seed: u8) -> Vec<u8> {
        let text = (0..text_len).map(|i| (i as u8).wrapping_mul(seed));
        headers.iter().copied().chain(text).collect()
    }

    #[test]
    fn text_is_scattered_once_and_unasked_frames_leave_the_queue() {
        let (ours, theirs) = queue();
        let headers = [0x45u8; 54];
        let (first, second, third) = (
            frame(&headers, 3000, 3),
            frame(&headers, 100, 5),
            frame(&headers, 40, 7),
        );
        for f in [&first, &second, &third] {
            push(&theirs, f);
        }
        let mut spill = vec![0u8; vnet::LEN + 4096];
        let fd = ours.as_raw_fd();

        // The first: 200 bytes skipped, 1000 into one place, 1500 into
        // another, the last 300 dropped.
        let mut queued = QueuedText::new(fd, &headers, first.len(), &mut spill);
        assert_eq!(queued.len(), 3000);
        let (mut a, mut b) = (vec![0u8; 1000], vec![0u8; 1500]);
        assert!(queued.scatter(200, &mut [&mut a, &mut b]));
        assert_eq!(a, first[54 + 200..54 + 1200]);
        assert_eq!(b, first[54 + 1200..54 + 2700]);
        assert!(!queued.scatter(0, &mut [&mut a]), "once only");
        assert!(!queued.finish(), "asked twice: the second ask is a loss");

        // The second, never asked for, leaves the queue unread.
        assert!(QueuedText::new(fd, &headers, second.len(), &mut spill).finish());

        // The third, read whole.
        let mut queued = QueuedText::new(fd, &headers, third.len(), &mut spill);
        assert_eq!(queued.whole_frame(), Some(&third[..]));
        assert!(queued.finish());
    }

    #[test]
    fn a_frame_that_is_not_the_slots_is_a_counted_loss() {
        let (ours, theirs) = queue();
        let headers = [0x45u8; 54];
        push(&theirs, &frame(&[0x46; 54], 500, 3));
        push(&theirs, &frame(&headers, 500, 3));
        let mut spill = vec![0u8; vnet::LEN + 4096];
        let fd = ours.as_raw_fd();
        let mut queued = QueuedText::new(fd, &headers, 554, &mut spill);
        let mut part = vec![0u8; 500];
        assert!(!queued.scatter(0, &mut [&mut part]), "other headers");
        assert!(!queued.finish());
        // The queue goes on in step with the next frame.
        let mut queued = QueuedText::new(fd, &headers, 554, &mut spill);
        assert!(queued.scatter(0, &mut [&mut part]));
        assert!(queued.finish());
        // Nothing queued: the read fails, and so does the frame.
        let mut queued = QueuedText::new(fd, &headers, 554, &mut spill);
        assert_eq!(queued.whole_frame(), None);
        assert!(!queued.finish());
    }
}
