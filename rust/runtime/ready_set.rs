//! An event loop's own readiness list: the sockets it waits on, and which
//! of them are ready now — an epoll kept inside the engine. A loop that
//! runs the rounds itself ([`super::LiveStack::loop_round`]) gets the
//! ready sockets back from the round directly, with no descriptor flipped
//! per socket (two system calls and a loop iteration per message saved);
//! when someone else makes a socket ready (the driver's timers, a call from
//! another thread, the loop's own partial read) the set's one descriptor
//! turns readable, and the loop collects.
//!
//! Level-triggered by change: a socket is reported when its readiness
//! meets the interest at registration or after anything changed it, and
//! every user call and every segment marks its connection changed. So a
//! reader that leaves data behind is reported again (its `recv` changed the
//! connection); a callback that calls nothing is not, unlike `select`.

use super::readiness::Readiness;
use super::watch::{readiness_of, Watched};
use crate::phy::wake::WakeFd;
use crate::socket::tcp::Handle;
use crate::stack::Stack;
use std::collections::HashMap;
use std::io;
use std::os::unix::io::RawFd;

/// What the loop waits for on one socket, under the loop's own token.
#[derive(Debug, Clone, Copy)]
struct Interest {
    token: u64,
    read: bool,
    write: bool,
    /// In [`ReadySet::queued`] already.
    queued: bool,
}

/// A ready socket as the loop gets it: (token, readable, writable).
pub type Event = (u64, bool, bool);

#[derive(Debug)]
pub struct ReadySet {
    interests: HashMap<Watched, Interest>,
    /// Listeners and UDP sockets: few, looked at on every update.
    others: Vec<Watched>,
    /// Sockets that may be ready, each once.
    queued: Vec<Watched>,
    signal: WakeFd,
    signalled: bool,
    /// The loop is running a round and collects right after: no signal.
    collecting: bool,
    /// The stack is shut: every socket is ready for everything, for good.
    gone: bool,
}

impl ReadySet {
    pub fn new() -> io::Result<Self> {
        Ok(ReadySet {
            interests: HashMap::new(),
            others: Vec::new(),
            queued: Vec::new(),
            signal: WakeFd::new()?,
            signalled: false,
            collecting: false,
            gone: false,
        })
    }

    /// Readable while ready sockets wait to be collected.
    pub fn fd(&self) -> RawFd {
        self.signal.fd()
    }

    /// Waits for `key` as given under `token`; neither read nor write
    /// forgets it. A socket already ready is queued at once, as
    /// `epoll_ctl` reports the current state.
    pub fn set(&mut self, stack: &Stack, key: Watched, token: u64, read: bool, write: bool) {
        if !read && !write {
            if self.interests.remove(&key).is_some() {
                self.others.retain(|&k| k != key);
                // A stale entry in `queued` is skipped when collected.
            }
            return;
        }
        let entry = self.interests.entry(key).or_insert_with(|| {
            if !matches!(key, Watched::Tcp(_)) {
                self.others.push(key);
            }
            Interest {
                token,
                read,
                write,
                queued: false,
            }
        });
        entry.token = token;
        entry.read = read;
        entry.write = write;
        self.consider(stack, key);
    }

    /// After a round or a call: re-evaluates the connections in `changed`
    /// and every listener and UDP socket waited on.
    pub fn update(&mut self, stack: &Stack, changed: &[Handle]) {
        if self.interests.is_empty() {
            return;
        }
        for &h in changed {
            self.consider(stack, Watched::Tcp(h));
        }
        for i in 0..self.others.len() {
            self.consider(stack, self.others[i]);
        }
    }

    /// Queues `key` if it is waited on and ready for what is waited for.
    fn consider(&mut self, stack: &Stack, key: Watched) {
        let Some(interest) = self.interests.get_mut(&key) else {
            return;
        };
        if interest.queued {
            return;
        }
        let interest = *interest;
        if shown(interest, self.readiness(stack, key)) == (false, false) {
            return;
        }
        if let Some(i) = self.interests.get_mut(&key) {
            i.queued = true;
        }
        self.queued.push(key);
        if !self.collecting && !self.signalled {
            self.signal.wake();
            self.signalled = true;
        }
    }

    fn readiness(&self, stack: &Stack, key: Watched) -> Readiness {
        if self.gone {
            super::readiness::GONE
        } else {
            readiness_of(stack, key)
        }
    }

    /// A round by the loop starts: what it makes ready is collected after.
    pub fn collecting(&mut self, on: bool) {
        self.collecting = on;
    }

    /// The sockets ready now, in the order they turned ready; empties the
    /// list (a socket still ready after the loop's call is queued again by
    /// that call) and the descriptor.
    pub fn collect(&mut self, stack: &Stack, out: &mut Vec<Event>) {
        if self.signalled {
            self.signal.drain();
            self.signalled = false;
        }
        for key in std::mem::take(&mut self.queued) {
            let Some(interest) = self.interests.get_mut(&key) else {
                continue; // forgotten since it was queued
            };
            interest.queued = false;
            let interest = *interest;
            let (readable, writable) = shown(interest, self.readiness(stack, key));
            if readable || writable {
                out.push((interest.token, readable, writable));
            }
        }
    }

    /// The stack closed: every socket waited on shows everything, so that
    /// its callbacks run and learn EBADF.
    pub fn shut(&mut self) {
        self.gone = true;
        let keys: Vec<Watched> = self.interests.keys().copied().collect();
        for key in keys {
            if let Some(interest) = self.interests.get_mut(&key) {
                if !interest.queued {
                    interest.queued = true;
                    self.queued.push(key);
                }
            }
        }
        if !self.signalled {
            self.signal.wake();
            self.signalled = true;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.interests.is_empty()
    }

    /// Ready sockets wait for the loop to collect them.
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }
}

/// What the loop is told, (readable, writable): errors and hang-ups meet
/// every interest, as POLLERR/POLLHUP wake readers and writers alike.
fn shown(interest: Interest, r: Readiness) -> (bool, bool) {
    let urgent = r.error || r.hangup;
    (
        interest.read && (r.readable || urgent),
        interest.write && (r.writable || urgent),
    )
}

/// The sets of the loops that poll this stack, by number.
#[derive(Debug, Default)]
pub struct ReadySets {
    sets: Vec<(u64, ReadySet)>,
    next: u64,
}

impl ReadySets {
    /// A new, empty set; returns its number.
    pub fn add(&mut self, set: ReadySet) -> u64 {
        self.next += 1;
        self.sets.push((self.next, set));
        self.next
    }

    pub fn remove(&mut self, id: u64) {
        self.sets.retain(|(i, _)| *i != id);
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut ReadySet> {
        self.sets.iter_mut().find(|(i, _)| *i == id).map(|(_, s)| s)
    }

    pub fn update(&mut self, stack: &Stack, changed: &[Handle]) {
        for (_, set) in &mut self.sets {
            set.update(stack, changed);
        }
    }

    pub fn shut(&mut self) {
        for (_, set) in &mut self.sets {
            set.shut();
        }
    }

    /// Some loop has ready sockets it has not collected yet.
    pub fn any_queued(&self) -> bool {
        self.sets.iter().any(|(_, set)| set.has_queued())
    }
}
