//! A reader's buffer lent to a connection while its `recv` waits: text that
//! arrives in order while the receive ring is empty is copied straight into
//! it, one copy fewer than through the ring (the kernel's receiver does the
//! same when a reader waits: `tcp_rcv_established` copies into the waiting
//! task's iovec before queueing). What arrives beyond the buffer, or out of
//! order, takes the ring as before.

use std::ptr::NonNull;

/// The buffer and how much of it was filled.
#[derive(Debug)]
pub struct PostedBuffer {
    start: NonNull<u8>,
    len: usize,
    filled: usize,
}

// SAFETY: the buffer is written only under the engine's lock, by whichever
// thread runs the round; the lender waits meanwhile and takes it back under
// the same lock (see `Connection::post_receive`).
unsafe impl Send for PostedBuffer {}

impl PostedBuffer {
    /// # Safety
    /// `start..start + len` is valid for writes and used by nobody else
    /// until the buffer is taken back.
    pub unsafe fn new(start: NonNull<u8>, len: usize) -> Self {
        PostedBuffer {
            start,
            len,
            filled: 0,
        }
    }

    pub fn filled(&self) -> usize {
        self.filled
    }

    pub fn room(&self) -> usize {
        self.len - self.filled
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.room());
        // SAFETY: `filled + n <= len` and the lender's promise in `new`;
        // `data` is the engine's own frame, never the lent buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.start.as_ptr().add(self.filled), n);
        }
        self.filled += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_up_to_its_length_and_no_further() {
        let mut backing = [0u8; 8];
        let start = NonNull::new(backing.as_mut_ptr()).unwrap();
        let mut posted = unsafe { PostedBuffer::new(start, 6) };
        assert_eq!(posted.fill(b"abcd"), 4);
        assert_eq!(posted.fill(b"efgh"), 2);
        assert_eq!(posted.fill(b"ij"), 0);
        assert_eq!((posted.filled(), posted.room()), (6, 0));
        assert_eq!(&backing, b"abcdef\0\0");
    }
}
