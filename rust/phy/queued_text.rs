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

/// What became of the queued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Read,
    Failed,
}

/// The frame at the head of `fd`'s queue, its headers known.
pub struct QueuedText<'a> {
    fd: RawFd,
    /// The frame's headers, as the ring slot has them; the text starts
    /// right after.
    headers: &'a [u8],
    frame_len: usize,
    text_len: usize,
    /// Our buffer: the virtio-net header and the frame's headers land here
    /// (the whole frame, for [`HeldText::whole_frame`]).
    spill: &'a mut [u8],
    state: State,
}

impl<'a> QueuedText<'a> {
    pub fn new(fd: RawFd, headers: &'a [u8], frame_len: usize, spill: &'a mut [u8]) -> Self {
        QueuedText {
            fd,
            headers,
            frame_len,
            text_len: frame_len - headers.len(),
            spill,
            state: State::Queued,
        }
    }

    /// Takes the frame off the queue if nobody read it (a duplicate, a
    /// segment for no connection): it must not be taken for the next
    /// slot's. True if it was read, or dropped unread, as it should be.
    pub fn finish(self) -> bool {
        match self.state {
            State::Read => true,
            State::Failed => false,
            // SAFETY: a zero-length read with MSG_TRUNC dequeues the datagram.
            State::Queued => recv_retrying(|| unsafe {
                libc::recv(
                    self.fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                )
            })
            .is_ok(),
        }
    }

    /// One `recvmsg` into `parts`; the frame's full length on success.
    fn read(&mut self, parts: &mut [libc::iovec]) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is valid (no name, no control).
        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
        message.msg_iov = parts.as_mut_ptr();
        message.msg_iovlen = parts.len() as _;
        // SAFETY: every iovec points into memory borrowed mutably for this
        // call (our buffer or the engine's parts), of the length given.
        recv_retrying(|| unsafe {
            libc::recvmsg(self.fd, &mut message, libc::MSG_DONTWAIT | libc::MSG_TRUNC)
        })
    }

    /// The read was of this frame: its length and headers are the slot's.
    fn matches(&self, read: usize) -> bool {
        let headers = vnet::LEN..vnet::LEN + self.headers.len();
        read == vnet::LEN + self.frame_len && self.spill[headers] == *self.headers
    }
}

impl HeldText for QueuedText<'_> {
    fn len(&self) -> usize {
        self.text_len
    }

    fn scatter(&mut self, skip: usize, parts: &mut [&mut [u8]]) -> bool {
        let wanted: usize = parts.iter().map(|p| p.len()).sum();
        if self.state != State::Queued || parts.len() > MOST_PARTS || skip + wanted > self.text_len
        {
            return false;
        }
        self.state = State::Failed;
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
        match self.read(&mut iov[..n]) {
            Ok(read) if self.matches(read) => {
                self.state = State::Read;
                true
            }
            _ => false,
        }
    }

    fn whole_frame(&mut self) -> Option<&[u8]> {
        if self.state != State::Queued {
            return None;
        }
        self.state = State::Failed;
        let mut iov = [libc::iovec {
            iov_base: self.spill.as_mut_ptr().cast(),
            iov_len: self.spill.len(),
        }];
        match self.read(&mut iov) {
            Ok(read) if self.matches(read) => {
                self.state = State::Read;
                Some(&self.spill[vnet::LEN..read])
            }
            _ => None,
        }
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
