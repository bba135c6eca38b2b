//! How a blocked call waits (see [`Shared`](super::live) for the roles): the
//! first caller to block leads, polling the device and running the rounds
//! itself; the others follow, each on its own condition variable, woken by
//! the rounds for their own socket only. Every wait is cut into slices of
//! [`INTERRUPT_SLICE`] so that Ctrl-C is seen; the interrupt hook (which
//! takes the GIL) runs only when a slice ends, not at every wake-up.

use super::live::{round, Engine, LiveStack, Locked, Shared};
use super::waiters::{Leader, Waiter};
use super::watch::Watched;
use crate::phy::poll::{self, readable_each, wait_readable, Interest};
use crate::phy::wake::WakeFd;
use crate::stack::Stack;
use crate::time::{Duration, Instant};
use std::io;
use std::os::unix::io::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant as Clock;

/// Longest sleep between two checks of the interrupt hook.
const INTERRUPT_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a leader that led briefly keeps the driver aside after its
/// call returns (see [`LiveStack::resign`]).
pub(super) const LEASE: std::time::Duration = std::time::Duration::from_millis(1);
/// After a client's request (see `LiveStack::try_now`) the driver leaves
/// the device to the client's calls this long, looking at it every
/// [`REST_LOOK`] (at the tick, with [`LOOK_SLACK`]) instead of sleeping on
/// it: the reply to a request made every few milliseconds then wakes no
/// one (a thread switch on one core, an IPI across two), as a kernel
/// client's does not. Frames no call asks for wait up to a look meanwhile.
pub(super) const REST: std::time::Duration = std::time::Duration::from_millis(20);
/// How often a resting driver looks at the device, timers and wake-ups.
pub(super) const REST_LOOK: std::time::Duration = LEASE;
/// How late the driver's look after a lease may come: up to one scheduler
/// tick (4 ms at the common 250 Hz), so that it rides on the tick's
/// interrupt. A frame that arrives just as a series of calls ends waits at
/// most this much longer for the driver; the calls themselves lose nothing.
pub(super) const LOOK_SLACK: std::time::Duration = std::time::Duration::from_millis(4);
/// The longest the driver goes without looking whether an event loop that
/// polls the device has left frames waiting (a loop busy in a callback):
/// frames wait at most this long for the driver's help, while an idle
/// stack under a loop wakes the driver some 60 times a second, not 1,000.
pub(super) const LOOP_LOOK_MAX: std::time::Duration = std::time::Duration::from_millis(16);
/// Without busy-poll, a leader whose predecessor's frame came this soon
/// spins this long (looking, yielding its core) before it sleeps: a
/// request/response then saves our side's cross-CPU wake-up, and a wait
/// that turns out long stops the spinning until waits are short again
/// (adaptive, as glibc's adaptive mutexes and Linux's hybrid polling).
pub(super) const ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

impl LiveStack {
    /// Repeats `attempt` (as [`LiveStack::act`], under the lock) until it
    /// yields a value, waiting on `key` in between (`None`: on any progress
    /// of the engine); `None` once `timeout` has passed.
    pub fn wait_for<T>(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
        key: Option<Watched>,
        mut attempt: impl FnMut(&mut Stack, Instant) -> Option<T>,
    ) -> io::Result<Option<T>> {
        self.wait_engine(timeout, interrupt, key, |live, engine| {
            live.act_locked(engine, &mut attempt, false, false)
        })
    }

    /// Blocks until `ready(stack)` holds or `timeout` passes; true if it holds.
    pub fn wait_until(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
        ready: &dyn Fn(&Stack) -> bool,
    ) -> io::Result<bool> {
        let outcome = self.wait_engine(timeout, interrupt, None, |_, engine| {
            ready(&engine.stack).then_some(())
        })?;
        Ok(outcome.is_some())
    }

    /// Handles everything pending; if nothing was, blocks until a frame, a
    /// timer or `timeout`. Returns how much was handled (0 on timeout).
    /// With a driver thread: waits for its next round that made progress.
    pub fn poll(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<usize> {
        if self.is_driven() {
            let mut seen = None;
            let outcome = self.wait_engine(timeout, interrupt, None, |_, engine| {
                let before = *seen.get_or_insert(engine.rounds);
                (engine.rounds != before).then_some(1)
            })?;
            return Ok(outcome.unwrap_or(0));
        }
        self.check_open()?;
        let shared = &self.shared;
        let seen = self.engine().rounds;
        let n = round(shared)?;
        if n > 0 || timeout == Some(Duration::ZERO) {
            return Ok(n);
        }
        let deadline = timeout.map(|t| Clock::now() + t.into());
        loop {
            self.check_open()?;
            let timer = self.engine().timer_wait();
            let wait = bounded_wait(Clock::now(), deadline, timer);
            match wait_readable(&[shared.pcap_fd, shared.wake.fd()], Some(wait)) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
            self.check_open()?;
            shared.wake.drain();
            interrupt()?;
            let n = round(shared)?;
            if n > 0 || deadline.is_some_and(|d| Clock::now() >= d) {
                return Ok(n);
            }
            // Another thread's round took the frames this one waited for
            // (an ACK that frees send-buffer room): let the caller look again.
            if self.engine().rounds != seen {
                return Ok(0);
            }
        }
    }

    /// The wait itself: `attempt` under the lock, then lead or follow until
    /// something may have changed, until it yields or time runs out.
    fn wait_engine<T>(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
        key: Option<Watched>,
        mut attempt: impl FnMut(&LiveStack, &mut Engine) -> Option<T>,
    ) -> io::Result<Option<T>> {
        // As of the last wake-up: the clock is read once per turn.
        let mut now = Clock::now();
        let deadline = timeout.map(|t| now + t.into());
        let mut slice_end = now + INTERRUPT_SLICE;
        let mut waiter: Option<Arc<Waiter>> = None;
        let mut leading: Option<(u64, Arc<WakeFd>)> = None;
        let mut fresh = true;
        let mut engine = self.engine();
        let result = loop {
            if let Err(e) = self.check_open() {
                break Err(e);
            }
            if let Some(v) = attempt(self, &mut engine) {
                break Ok(Some(v));
            }
            if deadline.is_some_and(|d| now >= d) {
                break Ok(None);
            }
            let until = deadline.map_or(slice_end, |d| d.min(slice_end));
            if let Some((id, _)) = &leading {
                if !engine.leader.as_ref().is_some_and(|l| l.id == *id) {
                    leading = None; // taken over by a newer call: follow now
                }
            } else if fresh && may_take_over(&engine) {
                leading = self.claim(&mut engine, key, now);
            }
            fresh = false;
            engine = if let Some((_, wake)) = &leading {
                match self.lead_once(engine, wake, until, now) {
                    (guard, Ok(woke)) => {
                        now = woke;
                        guard
                    }
                    (guard, Err(e)) => {
                        engine = guard;
                        break Err(e);
                    }
                }
            } else {
                let w = waiter.get_or_insert_with(Default::default);
                let guard = self.follow(engine, key, w, until);
                // Handed over by a leader that left (no driver to take it).
                if guard.leader.is_none() && guard.bridges_idle() && !self.is_driven() {
                    fresh = true;
                }
                now = Clock::now();
                guard
            };
            if now >= slice_end {
                drop(engine);
                let checked = interrupt();
                engine = self.engine();
                if let Err(e) = checked {
                    break Err(e);
                }
                now = Clock::now();
                slice_end = now + INTERRUPT_SLICE;
            }
        };
        if let Some((id, _)) = leading {
            if engine.leader.as_ref().is_some_and(|l| l.id == id) {
                self.resign(&mut engine, now);
            }
        } else if waiter.is_some() && engine.leader.is_none() && !self.is_driven() {
            // A follower handed the device (or woken for its own socket as
            // it was) leaves without leading: the next one must take it, or
            // the rest would wait for their slices to end with no one polling.
            engine.waiters.wake_one();
        }
        result
    }

    /// Makes this call the leader, taking over from the one before (see
    /// [`may_take_over`]) and waking it to follow.
    /// `None` if this thread has no wake-up descriptor to sleep on.
    fn claim(
        &self,
        engine: &mut Engine,
        key: Option<Watched>,
        now: Clock,
    ) -> Option<(u64, Arc<WakeFd>)> {
        let wake = own_wake()?; // a stale signal costs one early look, no more
        engine.leaders += 1;
        let id = engine.leaders;
        let before = engine.leader.replace(Leader {
            id,
            key,
            wake: wake.clone(),
            since: now,
        });
        if let Some(before) = before {
            before.wake.wake();
            // The driver aside behind an old leader sleeps until woken (see
            // `step_aside`); this one may leave within its lease without
            // waking it, so it must look again now, or no one would poll.
            if engine.driver_aside {
                self.shared.driver_resume.notify_one();
            }
        }
        self.shared.leading.store(true, Ordering::SeqCst);
        // The driver steps aside from now on: what a loop left for it goes now.
        super::handoff::send_handed_off(&self.shared, engine);
        Some((id, wake))
    }

    /// The leader's turn from `now`: sleeps on the device and its own
    /// wake-up (spinning first if busy-polling) until a frame, a wake-up,
    /// the next timer or `until`, then runs a round. When it woke.
    fn lead_once<'a>(
        &'a self,
        engine: Locked<'a>,
        wake: &WakeFd,
        until: Clock,
        now: Clock,
    ) -> (Locked<'a>, io::Result<Clock>) {
        let shared = &self.shared;
        let fds = [shared.pcap_fd, wake.fd()];
        let wait = bounded_wait(now, Some(until), engine.timer_wait());
        // The bridges' sockets too, which the driver aside no longer watches.
        let mut bridged = Vec::new();
        engine.bridge_interests(&mut bridged);
        drop(engine);
        let mut ready = None;
        let adaptive = shared.busy_poll == Duration::ZERO;
        let spin = spin_window(shared.busy_poll, shared.spin_pays.load(Ordering::Relaxed));
        if spin > Duration::ZERO && bridged.is_empty() {
            ready = spin_until_ready(shared, wake, now, spin.min(wait));
        }
        let mut sockets = Vec::new();
        let ready = match ready {
            Some(ready) => ready,
            None if !bridged.is_empty() => match wait_with_bridges(fds, bridged, wait) {
                Ok((ready, reported)) => {
                    sockets = reported;
                    ready
                }
                Err(e) => return (self.engine(), Err(e)),
            },
            None => match readable_each(fds, Some(wait)) {
                Ok(ready) => ready,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => [false, true],
                Err(e) => return (self.engine(), Err(e)),
            },
        };
        let woke = Clock::now();
        if adaptive {
            let pays = spin_pays_after(ready[0], woke - now);
            shared.spin_pays.store(pays, Ordering::Relaxed);
        }
        if ready[1] {
            wake.drain();
        }
        let mut engine = self.engine();
        if !sockets.is_empty() {
            engine.bridges.sockets_ready(&sockets);
        }
        let outcome = engine.run_once(true).map(|_| woke);
        (engine, outcome)
    }

    /// A follower's turn: sleeps on its condition variable until a round or
    /// a call touches `key`, the leader hands over, or `until`.
    fn follow<'a>(
        &'a self,
        mut engine: Locked<'a>,
        key: Option<Watched>,
        waiter: &Arc<Waiter>,
        until: Clock,
    ) -> Locked<'a> {
        engine.waiters.add(key, waiter);
        while !waiter.take_woken() && !self.is_shut() {
            let left = until.saturating_duration_since(Clock::now());
            if left.is_zero() {
                break;
            }
            engine = engine.wait_on(&waiter.cond, Some(left));
        }
        engine.waiters.remove(key, waiter);
        engine
    }

    /// The leader's call is over: the driver takes the device back, or,
    /// without one, a follower becomes the leader. A call that led briefly
    /// leaves without waking the driver: it is one of a series of requests
    /// and replies and will be back within the lease ([`LEASE`]), before
    /// which the driver looks again by itself (see `drive`); waking it at
    /// every reply would cost a thread switch per round trip.
    fn resign(&self, engine: &mut Engine, now: Clock) {
        let Some(leader) = engine.leader.take() else {
            return;
        };
        self.shared.leading.store(false, Ordering::SeqCst);
        let parked = self.shared.driver_parked.load(Ordering::SeqCst);
        if engine.driver_aside || parked {
            // Bridges need someone on their sockets at once: no lease.
            if now.saturating_duration_since(leader.since) < LEASE && engine.bridges_idle() {
                self.shared.start_lease(now);
            } else {
                self.shared.driver_resume.notify_one();
                self.unpark_driver();
            }
        } else if !self.is_driven() {
            engine.waiters.wake_one();
        }
    }
}

/// A leader's sleep while bridges are up: on the device, its wake-up `fds`
/// and the bridges' `sockets` until one is ready or `wait` passes. [frames,
/// woken], and the bridges' descriptors reported (for `sockets_ready`).
fn wait_with_bridges(
    fds: [RawFd; 2],
    mut interests: Vec<Interest>,
    wait: Duration,
) -> io::Result<([bool; 2], Vec<RawFd>)> {
    interests.extend(fds.map(Interest::readable));
    let mut reported = Vec::new();
    match poll::wait_ready(&interests, Some(wait), &mut reported) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(([false, true], Vec::new())),
        Err(e) => return Err(e),
    }
    let ready = fds.map(|fd| reported.contains(&fd));
    reported.retain(|fd| !fds.contains(fd));
    Ok((ready, reported))
}

/// How long a leader spins before it sleeps: the busy-poll window if one is
/// set, else [`ADAPTIVE_SPIN`] while spinning pays (see [`spin_pays_after`]).
fn spin_window(busy_poll: Duration, pays: bool) -> Duration {
    if busy_poll > Duration::ZERO {
        busy_poll
    } else if pays {
        ADAPTIVE_SPIN
    } else {
        Duration::ZERO
    }
}

/// Whether the next leader should spin: a frame came, and within the spin
/// window. A wake-up without a frame (another thread's call), or a frame
/// that took longer, stops the spinning until waits are short again.
fn spin_pays_after(frame: bool, waited: std::time::Duration) -> bool {
    frame && waited < std::time::Duration::from(ADAPTIVE_SPIN)
}

/// A new call leads if no one does, or takes over from a leader that has
/// waited longer than [`LEASE`]: that one is the less likely of the two to
/// be answered next (an accept loop, an idle connection). A younger leader
/// is left alone: among many busy connections, taking over at every call
/// would cost a wake-up each and answer no one sooner.
fn may_take_over(engine: &Engine) -> bool {
    match &engine.leader {
        None => true,
        Some(leader) => leader.since.elapsed() > LEASE,
    }
}

thread_local! {
    /// The descriptor a thread sleeps on while it leads, made on first use
    /// and closed when the thread ends.
    static OWN_WAKE: Option<Arc<WakeFd>> = WakeFd::new().ok().map(Arc::new);
}

fn own_wake() -> Option<Arc<WakeFd>> {
    OWN_WAKE.with(|w| w.clone())
}

/// How long to sleep from `now`: until `deadline`, the next timer, at most
/// a slice.
fn bounded_wait(now: Clock, deadline: Option<Clock>, timer: Option<Duration>) -> Duration {
    let mut wait = deadline.map_or(INTERRUPT_SLICE, |d| {
        d.saturating_duration_since(now).min(INTERRUPT_SLICE)
    });
    if let Some(t) = timer {
        wait = wait.min(t.into());
    }
    Duration::from_micros(wait.as_micros() as u64)
}

/// Looks at the device and `wake` without sleeping (see [`Shared::look`]),
/// yielding the core between looks, for up to `window` from `start`;
/// [frames, woken] as soon as either is.
fn spin_until_ready(
    shared: &Shared,
    wake: &WakeFd,
    start: Clock,
    window: Duration,
) -> Option<[bool; 2]> {
    let until = start + std::time::Duration::from(window);
    loop {
        match shared.look(wake) {
            Ok(ready) if ready.contains(&true) => return Some(ready),
            Err(_) => return None, // the sleeping poll reports it
            Ok(_) => {}
        }
        if Clock::now() >= until {
            return None;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spinning_follows_busy_poll_or_what_the_last_wait_showed() {
        let us = Duration::from_micros;
        assert_eq!(
            spin_window(us(200), false),
            us(200),
            "busy-poll spins always"
        );
        assert_eq!(spin_window(us(200), true), us(200));
        assert_eq!(spin_window(Duration::ZERO, true), ADAPTIVE_SPIN);
        assert_eq!(spin_window(Duration::ZERO, false), Duration::ZERO);
        let waited = std::time::Duration::from_micros;
        assert!(
            spin_pays_after(true, waited(10)),
            "a reply within the window"
        );
        assert!(
            !spin_pays_after(true, waited(500)),
            "a long wait: sleep at once next time"
        );
        assert!(
            !spin_pays_after(false, waited(10)),
            "a wake-up without a frame"
        );
    }
}
