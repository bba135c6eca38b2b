//! When a socket call would not block, with the meaning `select`/`poll`
//! give it for kernel sockets: readable when `recv`/`accept`/`recvfrom`
//! would return at once (data, end of stream, an error, a connection
//! waiting), writable when `send` would. Pure functions of the engine's
//! state; `watch.rs` turns them into descriptors.

use crate::socket::tcp::{Connection, Listener, State};
use crate::socket::udp::UdpSocket;

/// What a socket is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// A pending error (POLLERR): the next call raises it.
    pub error: bool,
    /// Both directions are finished (POLLHUP).
    pub hangup: bool,
}

/// Room that makes a connection writable: a third of its send buffer, as
/// Linux's `sk_stream_is_writeable`, so that a writer is woken for a
/// useful amount rather than for every acknowledged segment.
pub fn write_low_water(c: &Connection) -> usize {
    (c.config().tx_buffer / 3).max(1)
}

pub fn tcp(c: &Connection) -> Readiness {
    let error = c.error().is_some();
    let closed = c.state() == State::Closed;
    let connecting = matches!(c.state(), State::SynSent | State::SynReceived);
    let readable = !connecting && (c.recv_available() > 0 || c.at_eof() || error || closed);
    // A send that fails at once (EPIPE, the error) does not block either.
    let writable =
        !connecting && (error || c.write_closed() || c.send_capacity() >= write_low_water(c));
    Readiness {
        readable,
        writable,
        error,
        hangup: closed || (c.at_eof() && c.write_closed() && c.send_queued() == 0),
    }
}

pub fn listener(l: &Listener) -> Readiness {
    Readiness {
        readable: !l.ready.is_empty(),
        ..Readiness::default()
    }
}

/// A datagram socket never blocks on send here: the stack queues or drops.
pub fn udp(u: &UdpSocket) -> Readiness {
    let error = u.remote().is_some() && u.has_error();
    Readiness {
        readable: u.queued() > 0 || error,
        writable: true,
        error,
        hangup: false,
    }
}

/// A socket that is gone: everything at once, so that a waiter calls and
/// gets its EBADF rather than sleeping forever.
pub const GONE: Readiness = Readiness {
    readable: true,
    writable: true,
    error: true,
    hangup: true,
};
