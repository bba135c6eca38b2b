//! A kernel stream socket that the runtime moves bytes through: one end of a
//! bridge (a socketpair end handed to Python, or a TCP connection to a local
//! server). Reads and writes never block and never raise SIGPIPE; the write
//! half closes on its own; an abortive close resets a TCP peer.

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
use super::sockopt::set_int;
use super::sockopt::{get_int, set_buffer, Buffer};
use std::io;
use std::os::unix::io::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Kept off SIGPIPE per call where the platform can (Linux), else per socket.
#[cfg(target_os = "linux")]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
#[cfg(not(target_os = "linux"))]
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT;

/// Send buffer asked for (the kernel doubles it for its bookkeeping).
const SEND_BUFFER: libc::c_int = 2 << 20;

#[derive(Debug)]
pub struct StreamFd(OwnedFd);

impl StreamFd {
    /// A duplicate of the stream socket `raw`, which the caller keeps (and
    /// may close). EBADF if `raw` is not open, ENOTSOCK or EINVAL if it is not
    /// a stream socket.
    pub fn dup_of(raw: RawFd) -> io::Result<Self> {
        if raw < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        // SAFETY: the descriptor is only borrowed for the duplication, which
        // the kernel checks (EBADF if it is not open).
        let owned = unsafe { BorrowedFd::borrow_raw(raw) }.try_clone_to_owned()?;
        StreamFd::new(owned)
    }

    /// Takes `fd`, which must be a stream socket.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        let kind = get_int(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TYPE)?;
        if kind != libc::SOCK_STREAM {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let stream = StreamFd(fd);
        #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
        let _ = set_int(stream.fd(), libc::SOL_SOCKET, libc::SO_NOSIGPIPE, 1);
        stream.enlarge_send_buffer();
        Ok(stream)
    }

    /// A connected pair of local stream sockets: the runtime's end, and the
    /// one for the application ([`put_in_place`]); both close on exec.
    pub fn pair() -> io::Result<(Self, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        Ok((StreamFd::new(ours.into())?, theirs))
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Reads what is there: `Ok(0)` is end of stream, WouldBlock if nothing is.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is live and writable for `buf.len()` bytes.
        let n = unsafe {
            libc::recv(
                self.fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        result(n)
    }

    /// Whether a read would find nothing now: no bytes and no end of stream.
    pub fn is_drained(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: `byte` is live and writable for the one byte asked for.
        let n = unsafe {
            libc::recv(
                self.fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }

    /// Writes what fits: WouldBlock if nothing does, EPIPE once the peer is gone.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is live and readable for `buf.len()` bytes.
        let n = unsafe { libc::send(self.fd(), buf.as_ptr().cast(), buf.len(), SEND_FLAGS) };
        result(n)
    }

    /// Sends end of stream; reading goes on.
    pub fn shutdown_write(&self) {
        // SAFETY: no pointers; an error (the peer is gone) changes nothing.
        unsafe { libc::shutdown(self.fd(), libc::SHUT_WR) };
    }

    /// Closes so that a TCP peer sees a reset (SO_LINGER with zero time);
    /// a socketpair's peer sees the end of stream.
    pub fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `linger` is live and sized as passed.
        unsafe {
            libc::setsockopt(
                self.fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }

    /// A send buffer of [`SEND_BUFFER`] where allowed: a bridge's socket
    /// takes what a connection received in one go instead of a few hundred
    /// KiB at a time (one write and one wake-up of the reader per chunk).
    /// Beyond `wmem_max` only with CAP_NET_ADMIN (`SO_SNDBUFFORCE`, Linux).
    fn enlarge_send_buffer(&self) {
        set_buffer(self.fd(), Buffer::Send, SEND_BUFFER);
    }
}

/// Bytes waiting to be read from stream socket `fd` (`FIONREAD`); None if
/// the kernel cannot say.
pub fn unread(fd: RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    (rc == 0).then_some(n.max(0) as usize)
}

/// Makes descriptor `target` refer to `end`'s socket, as `dup2` does, in
/// one step and close-on-exec (as the sockets Python makes are); `end`'s own
/// descriptor is closed. `nonblocking` is the mode the socket object that owns
/// `target` expects (a Python socket with a timeout is non-blocking).
pub fn put_in_place(end: UnixStream, target: RawFd, nonblocking: bool) -> io::Result<()> {
    end.set_nonblocking(nonblocking)?;
    // SAFETY: no pointers; `end` is open for the call, and `target` is the
    // caller's descriptor to replace (EBADF if it is not open).
    #[cfg(target_os = "linux")]
    let rc = unsafe { libc::dup3(end.as_raw_fd(), target, libc::O_CLOEXEC) };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above; the flag is set on `target` once it is ours.
    let rc = unsafe {
        match libc::dup2(end.as_raw_fd(), target) {
            rc if rc < 0 => rc,
            _ => libc::fcntl(target, libc::F_SETFD, libc::FD_CLOEXEC),
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn result(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixStream};

    #[test]
    fn moves_bytes_and_ends_without_blocking() {
        let (a, b) = UnixStream::pair().unwrap();
        let a = StreamFd::new(a.into()).unwrap();
        let b = StreamFd::new(b.into()).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            a.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        assert!(a.is_drained());
        assert_eq!(b.write(b"hello").unwrap(), 5);
        assert!(!a.is_drained(), "bytes wait");
        assert_eq!(unread(a.fd()), Some(5));
        assert_eq!(a.read(&mut buf).unwrap(), 5);
        assert!(a.is_drained());
        b.shutdown_write();
        assert!(!a.is_drained(), "the end of stream waits");
        assert_eq!(a.read(&mut buf).unwrap(), 0);
        drop(a);
        assert_eq!(b.write(b"x").unwrap_err().raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn a_pair_end_put_in_place_of_a_descriptor_carries_the_pair() {
        let (ours, theirs) = StreamFd::pair().unwrap();
        let (placeholder, _) = UnixDatagram::pair().unwrap();
        let target = placeholder.as_raw_fd();
        put_in_place(theirs, target, true).unwrap();
        // SAFETY: no pointers.
        let (fd_flags, fl_flags) = unsafe {
            (
                libc::fcntl(target, libc::F_GETFD),
                libc::fcntl(target, libc::F_GETFL),
            )
        };
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "close-on-exec kept");
        assert_ne!(fl_flags & libc::O_NONBLOCK, 0, "the mode asked for");
        let mut buf = [0u8; 8];
        assert_eq!(ours.write(b"hi").unwrap(), 2);
        // SAFETY: `buf` is live and writable for its length.
        let n = unsafe { libc::recv(target, buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(&buf[..n as usize], b"hi");
        let (_, other) = StreamFd::pair().unwrap();
        assert_eq!(
            put_in_place(other, -1, false).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }

    #[test]
    fn refuses_what_is_not_a_stream_socket() {
        let (d, _) = UnixDatagram::pair().unwrap();
        let e = StreamFd::new(d.into()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        assert_eq!(
            StreamFd::dup_of(-1).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
