//! Sleeping on descriptors: the driver waits for its device, its wake-up
//! descriptor and the kernel sockets of its bridges with one `poll()`.

use crate::time::Duration;
use std::io;
use std::os::unix::io::RawFd;

/// What to wait for on one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    pub fn readable(fd: RawFd) -> Self {
        Interest {
            fd,
            readable: true,
            writable: false,
        }
    }
}

/// Sleeps until one of `interests` is ready or `timeout` passes (`None`: no
/// limit). Returns `Ok(true)` if a descriptor is ready; `Interrupted` on a signal.
pub fn wait(interests: &[Interest], timeout: Option<Duration>) -> io::Result<bool> {
    wait_ready(interests, timeout, &mut Vec::new())
}

/// As [`wait`], adding the descriptors that are ready (for what was asked,
/// or with an error or hang-up) to `ready`.
pub fn wait_ready(
    interests: &[Interest],
    timeout: Option<Duration>,
    ready: &mut Vec<RawFd>,
) -> io::Result<bool> {
    let mut polls: Vec<libc::pollfd> = interests
        .iter()
        .map(|i| libc::pollfd {
            fd: i.fd,
            events: if i.readable { libc::POLLIN } else { 0 }
                | if i.writable { libc::POLLOUT } else { 0 },
            revents: 0,
        })
        .collect();
    let ms = poll_ms(timeout);
    // SAFETY: `polls` is a valid array of `polls.len()` pollfd structs for the whole call.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    ready.extend(polls.iter().filter(|p| p.revents != 0).map(|p| p.fd));
    Ok(rc > 0)
}

/// Sleeps until one of `fds` is readable or `timeout` passes.
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<bool> {
    let interests: Vec<Interest> = fds.iter().map(|&fd| Interest::readable(fd)).collect();
    wait(&interests, timeout)
}

/// As [`wait_readable`], without allocating (for the hot paths), telling
/// which of `fds` are readable (an error or hang-up counts as readable).
pub fn readable_each<const N: usize>(
    fds: [RawFd; N],
    timeout: Option<Duration>,
) -> io::Result<[bool; N]> {
    let mut polls = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let ms = poll_ms(timeout);
    // SAFETY: `polls` is a valid array of N pollfd structs for the whole call.
    let rc = unsafe { libc::poll(polls.as_mut_ptr(), N as libc::nfds_t, ms) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(polls.map(|p| p.revents != 0))
}

/// `poll()`'s timeout in milliseconds (-1: none), rounded up so that a
/// deadline 300 µs away does not become a busy loop.
fn poll_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(d) => d.total_micros().div_ceil(1000).min(i32::MAX as u64) as i32,
    }
}
