//! The threads blocked in a socket call, each registered with what it waits
//! on, so that a round wakes only the threads whose socket it touched
//! rather than every blocked thread (fifty `recv`s on fifty connections
//! would otherwise all wake for every frame, take the engine lock, find
//! nothing and sleep again).
//!
//! Everything here is changed under the engine lock; a waiter sleeps on a
//! condition variable of its own, paired with that lock.

use super::watch::{readiness_of, Watched};
use crate::phy::wake::WakeFd;
use crate::socket::tcp::Handle;
use crate::stack::Stack;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar};

/// The blocked call that polls the device itself (see `wait.rs`): what it
/// waits on (`None`: any progress) and its thread's wake-up descriptor.
#[derive(Debug)]
pub struct Leader {
    pub id: u64,
    pub key: Option<Watched>,
    pub wake: Arc<WakeFd>,
    /// When it began to lead.
    pub since: std::time::Instant,
}

/// One blocked call: its own condition variable and whether it was woken.
#[derive(Debug, Default)]
pub struct Waiter {
    pub cond: Condvar,
    woken: AtomicBool,
}

impl Waiter {
    /// Marks it woken; true the first time since it last looked, when it
    /// must be notified (once the lock is released: see `Locked`).
    fn mark(&self) -> bool {
        !self.woken.swap(true, Ordering::SeqCst)
    }

    fn wake(&self) {
        self.mark();
        self.cond.notify_one();
    }

    /// True once, after a wake-up (later calls: false until the next one).
    pub fn take_woken(&self) -> bool {
        self.woken.swap(false, Ordering::SeqCst)
    }
}

/// The registry of blocked calls.
#[derive(Debug, Default)]
pub struct Waiters {
    /// Waiting on one connection: woken when a round or call marked it.
    tcp: HashMap<Handle, Vec<Arc<Waiter>>>,
    /// Waiting on a listener or a UDP socket (woken when it turns
    /// readable), or on any progress of the engine (`None`: a DNS answer,
    /// a ping reply, the lease).
    others: Vec<(Option<Watched>, Arc<Waiter>)>,
}

impl Waiters {
    /// No call waits on a socket or on the engine.
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.others.is_empty()
    }

    pub fn add(&mut self, key: Option<Watched>, waiter: &Arc<Waiter>) {
        match key {
            Some(Watched::Tcp(h)) => self.tcp.entry(h).or_default().push(waiter.clone()),
            other => self.others.push((other, waiter.clone())),
        }
    }

    pub fn remove(&mut self, key: Option<Watched>, waiter: &Arc<Waiter>) {
        match key {
            Some(Watched::Tcp(h)) => {
                if let Some(list) = self.tcp.get_mut(&h) {
                    list.retain(|w| !Arc::ptr_eq(w, waiter));
                    if list.is_empty() {
                        self.tcp.remove(&h);
                    }
                }
            }
            _ => self.others.retain(|(_, w)| !Arc::ptr_eq(w, waiter)),
        }
    }

    /// Marks woken whoever waits on a connection in `changed`, on a
    /// listener or UDP socket that is now readable, and (after a round that
    /// made `progress`) on the engine at large; those to notify go to `out`.
    pub fn wake(
        &self,
        stack: &Stack,
        changed: &[Handle],
        progress: bool,
        out: &mut Vec<Arc<Waiter>>,
    ) {
        let mut wake = |w: &Arc<Waiter>| {
            if w.mark() {
                out.push(w.clone());
            }
        };
        if !self.tcp.is_empty() {
            for h in changed {
                for w in self.tcp.get(h).into_iter().flatten() {
                    wake(w);
                }
            }
        }
        for (key, w) in &self.others {
            if touched(stack, *key, changed, progress) {
                wake(w);
            }
        }
    }

    /// Wakes one waiter, if any (to take over polling the device).
    pub fn wake_one(&self) {
        let mut all = self.tcp.values().flatten();
        if let Some(w) = all.next().or_else(|| self.others.first().map(|(_, w)| w)) {
            w.wake();
        }
    }

    /// The stack closed: every waiter wakes and finds it so.
    pub fn wake_all(&self) {
        for w in self.tcp.values().flatten() {
            w.wake();
        }
        for (_, w) in &self.others {
            w.wake();
        }
    }
}

/// Wake-ups owed once the engine lock is released.
#[derive(Debug, Default)]
pub struct Pending {
    pub waiters: Vec<Arc<Waiter>>,
    pub leader: Option<Arc<WakeFd>>,
}

impl Pending {
    pub fn deliver(self) {
        for w in self.waiters {
            w.cond.notify_one();
        }
        if let Some(leader) = self.leader {
            leader.wake();
        }
    }
}

/// Whether a waiter on `key` has something to look at: its connection was
/// marked, its listener or UDP socket is readable (or failed), or (`None`)
/// the engine made `progress`. Followers and the leader alike.
pub fn touched(stack: &Stack, key: Option<Watched>, changed: &[Handle], progress: bool) -> bool {
    match key {
        None => progress,
        Some(Watched::Tcp(h)) => changed.contains(&h),
        Some(k) => {
            let r = readiness_of(stack, k);
            r.readable || r.error
        }
    }
}
