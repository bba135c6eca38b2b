//! Many sockets behind one descriptor, edge-triggered (Linux's epoll): the
//! driver sleeps on this one descriptor instead of handing `poll()` every
//! bridge socket at every sleep, and learns which sockets had an event.
//! Edges suffice because a bridge is also stepped whenever its connection
//! changes (see `runtime/bridge.rs`): what an edge does not repeat, the
//! connection's next change does. Other systems keep `poll()` on each socket.

use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Events taken per look; more wait for the next.
const BATCH: usize = 256;

#[derive(Debug)]
pub struct EdgeSet {
    epoll: OwnedFd,
}

impl EdgeSet {
    pub fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: epoll_create1 succeeded, so the descriptor is new and ours.
        Ok(EdgeSet {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Readable while an event waits to be taken.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Reports `fd` when it turns readable or hangs up, and when it turns
    /// writable if `out` (asked only under back-pressure: a socket's
    /// writability changes at every read its peer makes).
    pub fn add(&self, fd: RawFd, out: bool) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, out)
    }

    /// Changes what `fd` is reported for (see [`EdgeSet::add`]).
    pub fn modify(&self, fd: RawFd, out: bool) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, out)
    }

    fn control(&self, op: i32, fd: RawFd, out: bool) -> io::Result<()> {
        let mut events = libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET;
        if out {
            events |= libc::EPOLLOUT;
        }
        let mut event = libc::epoll_event {
            events: events as u32,
            u64: fd as u64,
        };
        // SAFETY: a valid epoll descriptor and a live event struct.
        let rc = unsafe { libc::epoll_ctl(self.fd(), op, fd, &mut event) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops reporting `fd` (before it is closed).
    pub fn remove(&self, fd: RawFd) {
        // SAFETY: a valid epoll descriptor; a null event is allowed for DEL.
        unsafe { libc::epoll_ctl(self.fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    /// Adds the descriptors that had an event since the last look, without waiting.
    pub fn take(&self, out: &mut Vec<RawFd>) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        // SAFETY: `events` is a valid array of BATCH event structs for the call.
        let n = unsafe { libc::epoll_wait(self.fd(), events.as_mut_ptr(), BATCH as i32, 0) };
        for e in events.iter().take(n.max(0) as usize) {
            out.push(e.u64 as RawFd);
        }
    }
}
