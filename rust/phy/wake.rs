//! A wake-up descriptor: user calls signal it so that a thread sleeping in
//! `poll()` on the device acts on new work at once. An eventfd on Linux; a
//! socketpair elsewhere (macOS has no eventfd).

use std::io;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, RawFd};
#[cfg(linux_fast_path)]
use std::os::unix::io::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(linux_fast_path)]
#[derive(Debug)]
pub struct WakeFd {
    fd: OwnedFd,
    signalled: Signalled,
}

#[cfg(linux_fast_path)]
impl WakeFd {
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd succeeded, so the descriptor is new and ours.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(WakeFd {
            fd,
            signalled: Signalled::default(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Signalled since the last drain, known without a system call.
    pub fn is_signalled(&self) -> bool {
        self.signalled.get()
    }

    /// Makes the descriptor readable until the next [`WakeFd::drain`].
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.fd(), &one as *const u64 as *const libc::c_void, 8) };
        self.signalled.set();
    }

    pub fn drain(&self) {
        self.signalled.clear();
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our non-blocking eventfd.
        unsafe { libc::read(self.fd(), &mut value as *mut u64 as *mut libc::c_void, 8) };
    }
}

/// The portable wake-up: a byte on a socketpair (a full pair is as awake as
/// it gets, so a failed write is fine). Compiled and tested on Linux too.
#[cfg(not(linux_fast_path))]
pub type WakeFd = PairWake;

#[derive(Debug)]
#[cfg_attr(linux_fast_path, allow(dead_code))]
pub struct PairWake {
    readable: UnixStream,
    writer: UnixStream,
    signalled: Signalled,
}

#[cfg_attr(linux_fast_path, allow(dead_code))]
impl PairWake {
    pub fn new() -> io::Result<Self> {
        let (readable, writer) = UnixStream::pair()?;
        readable.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(PairWake {
            readable,
            writer,
            signalled: Signalled::default(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.readable.as_raw_fd()
    }

    pub fn is_signalled(&self) -> bool {
        self.signalled.get()
    }

    pub fn wake(&self) {
        let _ = (&self.writer).write(&[1]);
        self.signalled.set();
    }

    pub fn drain(&self) {
        self.signalled.clear();
        let mut buf = [0u8; 256];
        while matches!((&self.readable).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// A flag beside the descriptor, for threads that spin: set after the
/// descriptor is written, cleared before it is read. So a clear flag means
/// any wake-up before it was drained, and a set one at worst a wake-up
/// already drained (one look for nothing).
#[derive(Debug, Default)]
struct Signalled(AtomicBool);

impl Signalled {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn clear(&self) {
        self.0.store(false, Ordering::Release);
    }

    fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phy::poll::wait_readable;
    use crate::time::Duration;

    macro_rules! wakes_until_drained {
        ($name:ident, $kind:ty) => {
            #[test]
            fn $name() {
                let wake = <$kind>::new().unwrap();
                let zero = Some(Duration::ZERO);
                assert!(!wait_readable(&[wake.fd()], zero).unwrap());
                assert!(!wake.is_signalled());
                wake.wake();
                wake.wake();
                assert!(wait_readable(&[wake.fd()], zero).unwrap());
                assert!(wake.is_signalled());
                wake.drain();
                assert!(!wait_readable(&[wake.fd()], zero).unwrap());
                assert!(!wake.is_signalled());
            }
        };
    }
    wakes_until_drained!(the_platform_wake_up, WakeFd);
    wakes_until_drained!(the_portable_wake_up, PairWake);
}
