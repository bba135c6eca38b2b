//! The sockets whose readiness someone waits on through a descriptor,
//! brought up to date after every engine round and every user call.

use super::readiness::{self, Readiness};
use crate::phy::ready_fd::ReadyFd;
use crate::socket::tcp::Handle;
use crate::socket::udp::UdpHandle;
use crate::stack::Stack;
use std::collections::HashMap;
use std::io;
use std::os::unix::io::RawFd;

/// A socket as the runtime knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watched {
    Tcp(Handle),
    Listener(u16),
    Udp(UdpHandle),
}

/// The readiness of `key` now; a socket that is gone is ready for
/// everything, so that whoever waits on it calls and learns it.
pub fn readiness_of(stack: &Stack, key: Watched) -> Readiness {
    let r = match key {
        Watched::Tcp(h) => stack.tcp().get(h).map(readiness::tcp),
        Watched::Listener(port) => stack.tcp().listener(port).map(readiness::listener),
        Watched::Udp(h) => stack.udp().get(h).map(readiness::udp),
    };
    r.unwrap_or(readiness::GONE)
}

#[derive(Debug, Default)]
pub struct Watches {
    entries: HashMap<Watched, ReadyFd>,
    /// Listeners and UDP sockets watched: few, looked at on every update.
    others: Vec<Watched>,
    /// Set once the stack is shut: every descriptor shows everything.
    gone: bool,
}

impl Watches {
    /// The descriptor for `key`, made on first use and showing its state.
    pub fn fd(&mut self, stack: &Stack, key: Watched) -> io::Result<RawFd> {
        if let Some(e) = self.entries.get(&key) {
            return Ok(e.fd());
        }
        let mut ready = ReadyFd::new()?;
        show(&mut ready, readiness_of(stack, key));
        let fd = ready.fd();
        self.entries.insert(key, ready);
        if !matches!(key, Watched::Tcp(_)) {
            self.others.push(key);
        }
        Ok(fd)
    }

    /// Forgets `key` and closes its descriptor.
    pub fn remove(&mut self, key: Watched) {
        if self.entries.remove(&key).is_some() {
            self.others.retain(|&k| k != key);
        }
    }

    /// What `key`'s descriptor shows now, (readable, writable), as `poll()` sees it.
    pub fn shown(&self, key: Watched) -> Option<(bool, bool)> {
        self.entries.get(&key).map(|e| e.polled())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Shows the state now of every watched socket that may have changed:
    /// the connections in `changed` (those the engine marked since the last
    /// update, so a round costs what it touched, not what is watched), and
    /// every listener and UDP socket.
    pub fn update(&mut self, stack: &Stack, changed: &[Handle]) {
        if self.gone || self.entries.is_empty() {
            return; // every descriptor shows everything for good, or none is out
        }
        for &h in changed {
            let key = Watched::Tcp(h);
            if let Some(ready) = self.entries.get_mut(&key) {
                show(ready, readiness_of(stack, key));
            }
        }
        for key in &self.others {
            if let Some(ready) = self.entries.get_mut(key) {
                show(ready, readiness_of(stack, *key));
            }
        }
    }

    /// The stack closed: every waiter wakes and finds EBADF.
    pub fn shut(&mut self) {
        self.gone = true;
        for ready in self.entries.values_mut() {
            show(ready, readiness::GONE);
        }
    }
}

/// Errors and hang-ups show as both readable and writable, as a kernel
/// socket's POLLERR/POLLHUP wakes readers and writers alike.
fn show(fd: &mut ReadyFd, r: Readiness) {
    let urgent = r.error || r.hangup;
    fd.show(r.readable || urgent, r.writable || urgent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_wake_readers_and_writers() {
        let mut fd = ReadyFd::new().unwrap();
        fd.show(false, false);
        show(
            &mut fd,
            Readiness {
                error: true,
                ..Readiness::default()
            },
        );
        assert_eq!(fd.polled(), (true, true));
    }
}
