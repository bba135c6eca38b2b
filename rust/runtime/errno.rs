//! Engine errors → the errno a kernel gives for the same failure, so that
//! every binding raises what the stdlib's `socket` module would.

use crate::socket::tcp;
use crate::stack::UdpSendError;
use std::io;

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// A connection's error; Python's OSError picks the matching subclass
/// (ConnectionRefusedError, ConnectionResetError, …).
pub fn tcp(e: tcp::Error) -> io::Error {
    errno(match e {
        tcp::Error::Refused => libc::ECONNREFUSED,
        tcp::Error::Reset => libc::ECONNRESET,
        tcp::Error::TimedOut => libc::ETIMEDOUT,
        tcp::Error::BrokenPipe => libc::EPIPE,
        tcp::Error::NotConnected => libc::ENOTCONN,
        tcp::Error::HostUnreachable => libc::EHOSTUNREACH,
    })
}

/// An active open that could not start.
pub fn connect(e: tcp::ConnectError) -> io::Error {
    errno(match e {
        tcp::ConnectError::AddressInUse => libc::EADDRINUSE,
        tcp::ConnectError::NoPortAvailable => libc::EADDRNOTAVAIL,
    })
}

/// A datagram that could not be sent (or a socket that could not bind).
pub fn udp(e: UdpSendError) -> io::Error {
    errno(match e {
        UdpSendError::Closed => libc::EBADF,
        UdpSendError::NoRoute => libc::ENETUNREACH,
        UdpSendError::TooBig => libc::EMSGSIZE,
        UdpSendError::BroadcastDenied => libc::EACCES,
        UdpSendError::InvalidDestination => libc::EINVAL,
        UdpSendError::Refused => libc::ECONNREFUSED,
        UdpSendError::NoBuffers => libc::ENOBUFS,
        UdpSendError::AddressInUse => libc::EADDRINUSE,
        UdpSendError::AddressNotAvailable => libc::EADDRNOTAVAIL,
    })
}

/// A socket (or the stack under it) that was closed.
pub fn closed() -> io::Error {
    errno(libc::EBADF)
}

/// A stack used by a process forked from the one that opened it (see
/// `phy/owner.rs`); the bindings raise it as EBADF with this text.
#[derive(Debug)]
pub struct NotOurs {
    pub owner: u32,
}

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "this stack serves process {}, and this process was forked from it: a child cannot \
             use its parent's stack or connections",
            self.owner
        )
    }
}

impl std::error::Error for NotOurs {}

pub fn not_ours(owner: u32) -> io::Error {
    io::Error::other(NotOurs { owner })
}

/// The stack has no address yet, so nothing can be sent from it; the
/// bindings raise it as ENETUNREACH with this text.
#[derive(Debug)]
pub struct NoAddress;

impl std::fmt::Display for NoAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no address yet (is the stack ready?)")
    }
}

impl std::error::Error for NoAddress {}

pub fn no_address() -> io::Error {
    io::Error::other(NoAddress)
}
