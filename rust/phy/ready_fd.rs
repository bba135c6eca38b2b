//! A descriptor that shows a socket's readiness to `select`, `poll`,
//! `epoll`/`kqueue` and every event loop built on them.
//!
//! One end of an AF_UNIX stream pair is handed out; the runtime keeps the
//! other and steers the handed-out end's two conditions independently:
//! *readable* while a byte we wrote from the inner end waits in it, and
//! *not writable* while its own send buffer (made as small as the kernel
//! allows) is full of bytes we wrote into the inner end and left unread.
//! So all four combinations exist, level-triggered, with one descriptor per
//! socket, and a change costs one system call. Nobody reads or writes the
//! handed-out end but the runtime.

use super::sockopt::set_int;
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What `fill` writes at once: more than a minimal send buffer holds.
const FILL: usize = 16 * 1024;

#[derive(Debug)]
pub struct ReadyFd {
    /// The end `select` waits on.
    shown: OwnedFd,
    /// The end the runtime writes from and drains.
    inner: OwnedFd,
    readable: bool,
    writable: bool,
}

impl ReadyFd {
    /// Starts not readable and writable.
    pub fn new() -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for the call.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: socketpair succeeded, so both descriptors are new and ours.
        let (shown, inner) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        for fd in [&shown, &inner] {
            set_flags(fd.as_raw_fd())?;
        }
        // The kernel raises it to its minimum.
        let _ = set_int(shown.as_raw_fd(), libc::SOL_SOCKET, libc::SO_SNDBUF, 1);
        Ok(ReadyFd {
            shown,
            inner,
            readable: false,
            writable: true,
        })
    }

    /// The descriptor to hand out.
    pub fn fd(&self) -> RawFd {
        self.shown.as_raw_fd()
    }

    /// Makes the descriptor poll readable and writable as given.
    pub fn show(&mut self, readable: bool, writable: bool) {
        if readable != self.readable {
            if readable {
                write_some(self.inner.as_raw_fd(), 1);
            } else {
                drain(self.shown.as_raw_fd());
            }
            self.readable = readable;
        }
        if writable != self.writable {
            if writable {
                drain(self.inner.as_raw_fd());
            } else {
                write_some(self.shown.as_raw_fd(), FILL);
            }
            self.writable = writable;
        }
    }
}

impl ReadyFd {
    /// What `poll()` says of the handed-out end now: (readable, writable).
    pub fn polled(&self) -> (bool, bool) {
        let mut p = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call, no wait.
        unsafe { libc::poll(&mut p, 1, 0) };
        (
            p.revents & libc::POLLIN != 0,
            p.revents & libc::POLLOUT != 0,
        )
    }
}

fn set_flags(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd_flags = libc::fcntl(fd, libc::F_GETFD);
        if fd_flags < 0 || libc::fcntl(fd, libc::F_SETFD, fd_flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn write_some(fd: RawFd, n: usize) {
    let buf = [0u8; FILL];
    // SAFETY: writes at most FILL bytes from a live buffer to our non-blocking descriptor.
    unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, n.min(FILL)) };
}

fn drain(fd: RawFd) {
    let mut buf = [0u8; FILL];
    loop {
        // SAFETY: reads into a live buffer of the length given, from our non-blocking descriptor.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 || (n as usize) < buf.len() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_each_combination_and_back() {
        let mut fd = ReadyFd::new().unwrap();
        assert_eq!(fd.polled(), (false, true));
        for (r, w) in [
            (true, true),
            (true, false),
            (false, false),
            (false, true),
            (true, false),
        ] {
            fd.show(r, w);
            assert_eq!(fd.polled(), (r, w), "showing {r} {w}");
            fd.show(r, w); // the same again changes nothing
            assert_eq!(fd.polled(), (r, w));
        }
    }
}
