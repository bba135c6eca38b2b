//! The blocking socket calls on a live stack: each runs an [`Op`] until it
//! yields, the timeout passes or the caller is interrupted, and undoes it
//! when given up. Timeouts follow `socket.settimeout`: `None` blocks,
//! zero never waits (WouldBlock), anything else ends in TimedOut.

use super::live::{LiveStack, Locked};
use super::ops::{self, Op};
use crate::service::dns::{Family, Lookup};
use crate::service::ping::ProbeId;
use crate::socket::tcp::{Endpoint, Families, Handle};
use crate::time::Duration;
use crate::wire::Ipv4Addr;
use std::cell::RefCell;
use std::io;
use std::sync::atomic::Ordering;

/// The hook a blocking call checks between waits (Ctrl-C).
pub type Interrupt<'a> = &'a mut dyn FnMut() -> io::Result<()>;

/// What a wait that ran out is: EAGAIN for a non-blocking call, else a
/// timeout ("timed out", as the stdlib's `socket.timeout`).
pub fn ran_out(timeout: Option<Duration>) -> io::Error {
    if timeout == Some(Duration::ZERO) {
        io::Error::from(io::ErrorKind::WouldBlock)
    } else {
        io::Error::new(io::ErrorKind::TimedOut, "timed out")
    }
}

impl LiveStack {
    /// Runs `op` to its end within `timeout`.
    pub fn run<O: Op>(
        &self,
        op: &mut O,
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
    ) -> io::Result<O::Output> {
        let key = op.key();
        let waits = timeout != Some(Duration::ZERO);
        // The attempts and the interrupt hook take turns with the op.
        let op = RefCell::new(op);
        let mut checked_interrupt = || {
            if self.act(|s, _| op.borrow_mut().unpark(s)) {
                return Ok(()); // done: the next attempt returns it
            }
            interrupt()
        };
        let outcome = self.wait_for(timeout, &mut checked_interrupt, key, |s, now| {
            let mut op = op.borrow_mut();
            let done = op.attempt(s, now);
            if done.is_none() && waits {
                op.park(s);
            }
            done
        });
        let op = op.into_inner();
        match outcome {
            Ok(Some(v)) => Ok(v),
            other => {
                let partial = self.act(|s, _| op.give_up(s));
                match (other, partial) {
                    // Interrupted or shut: the error wins, as with a kernel call.
                    (Err(e), _) => Err(e),
                    (_, Some(v)) => Ok(v),
                    _ => Err(ran_out(timeout)),
                }
            }
        }
    }

    /// One attempt at `op`, if the engine lock is free this instant: a call
    /// whose data or room is already there completes at once, and a caller
    /// holding the GIL keeps it (releasing it hands it to another thread
    /// when several wait, a futex wake and a switch per call, where the
    /// call itself is a copy). `None` if the lock is taken or `op` is not
    /// done yet; what it did is kept for the blocking path to go on from.
    /// Never blocks: with the GIL held, waiting for the lock could deadlock
    /// against a lock holder that logs through Python. What the call
    /// queued is sent at once, or, from an event loop that is behind, by
    /// the driver thread (`handoff.rs`).
    pub fn try_now<O: Op>(&self, op: &mut O) -> Option<O::Output> {
        if self.is_shut() {
            return None; // the blocking path says so
        }
        let mut engine = Locked::try_new(&self.shared.engine)?;
        // A client's request sent while only calls want what the device
        // brings (no loop either): its caller takes the reply itself, under
        // a lease, as after a round in passing, and the driver rests from
        // the device after it (`REST`). The lease starts before the request
        // leaves: on a veth the peer may answer within our `sendmmsg`, and a
        // driver woken by that answer would otherwise queue on the lock we
        // hold and be woken again to take it (four thread switches a request
        // after a pause, where the kernel's client has none). A server's
        // reply must not start one: new connections and requests would wait
        // for the lease to end (`wrk` with a connection per request fell to
        // 0.4x).
        let lease = op.awaits_reply()
            && engine.leader.is_none()
            && self.shared.loop_pollers.load(Ordering::Relaxed) == 0
            && engine.serves_only_calls();
        let shared = &self.shared;
        let done = self.act_locked(
            &mut engine,
            |s, now| {
                let done = op.attempt(s, now);
                if lease && done.is_some() {
                    shared.start_client_lease_at(now);
                }
                done
            },
            false,
            true,
        );
        if done.is_some() || engine.leader.is_some() || !self.shared.frames_surely_waiting() {
            return done;
        }
        // Frames wait and no call polls for them: the reply to a request,
        // come in while its caller was away. Taking them now spares the
        // caller the blocking path (GIL released and taken back, a turn
        // as leader) for a round it would run at once anyway. Like a brief
        // leader it holds the device for a lease: the driver, were it to
        // race it for the next reply from another core, would cost a
        // cross-core wake-up and leave the caller waiting on its round.
        // A reader lends its buffer for the round, as before a wait: a
        // stream's text then goes straight into it, not through the ring
        // (the attempt below takes it back, whatever the round's outcome;
        // a failed round is the blocking path's to report).
        op.park(&mut engine.stack);
        if engine.run_once(false).is_ok() {
            engine.stack.count_round_in_passing();
            if engine.bridges_idle() {
                // (Bridges are pumped on their sockets' readiness, which no
                // one would watch during a lease: the driver must not stand
                // back for them.)
                self.shared.start_lease_at(engine.now());
            }
        }
        self.act_locked(&mut engine, |s, now| op.attempt(s, now), false, true)
    }

    /// The addresses of the name `host` of `families`, as the stack's
    /// resolver finds them (see `ops::Resolve`).
    pub fn resolve(
        &self,
        (host, families): (&str, &[Family]),
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
    ) -> io::Result<Lookup> {
        self.check_open()?;
        let mut op = self.act(|s, now| ops::Resolve::start(s, now, host, families));
        self.run(&mut op, timeout, interrupt)
    }

    /// Opens a connection to `remote` and waits for the handshake; a
    /// connection that fails or runs out of time is aborted.
    pub fn connect(
        &self,
        remote: Endpoint,
        source_port: Option<u16>,
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
    ) -> io::Result<Handle> {
        self.check_open()?;
        let mut op = {
            let mut engine = self.engine();
            let op = self.act_locked(
                &mut engine,
                |s, now| ops::Connect::start(s, now, remote, source_port),
                true,
                false,
            )?;
            // The SYN-ACK, if it came within our SYN's send: the first attempt
            // then finds the connection open, where a caller that cannot lead
            // (bridges are up) would wait for the driver to take it and wake it.
            self.round_in_passing(&mut engine);
            op
        };
        self.run(&mut op, timeout, interrupt)?
    }

    /// Starts opening a connection and returns at once, the handshake in
    /// progress (a non-blocking `connect()`): its readiness shows writable
    /// once established, error once it failed.
    pub fn connect_start(&self, remote: Endpoint, source_port: Option<u16>) -> io::Result<Handle> {
        self.check_open()?;
        let mut engine = self.engine();
        let handle = self.act_locked(
            &mut engine,
            |s, now| ops::Connect::start(s, now, remote, source_port).map(|op| op.handle()),
            true,
            false,
        )?;
        self.round_in_passing(&mut engine); // the SYN-ACK, if it came within our SYN's send
        Ok(handle)
    }

    /// Listens on `port` (0: a free ephemeral one); returns the port and
    /// the address it is reached at (unspecified before one is configured).
    pub fn listen(
        &self,
        port: u16,
        (backlog, families): (usize, Families),
    ) -> io::Result<(u16, Ipv4Addr)> {
        self.check_open()?;
        self.act(|s, _| {
            let port = ops::listen(s, port, (backlog, families))?;
            Ok((port, s.ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED)))
        })
    }

    /// The next established connection on `port`.
    pub fn accept(
        &self,
        port: u16,
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
    ) -> io::Result<Handle> {
        self.run(&mut ops::Accept { port }, timeout, interrupt)?
    }

    /// `count` echo requests of `size` data bytes to `dst`, one after the
    /// other, each waiting up to `timeout` for its reply: the round-trip
    /// times, `None` for the lost ones.
    pub fn ping(
        &self,
        dst: std::net::IpAddr,
        count: u16,
        size: usize,
        timeout: Option<Duration>,
        interrupt: Interrupt<'_>,
    ) -> io::Result<Vec<Option<Duration>>> {
        self.check_open()?;
        let ident = self.act(|s, _| s.ping_ident());
        let mut rtts = Vec::with_capacity(count as usize);
        for seq in 0..count {
            let id = ProbeId { ident, seq };
            let mut probe = self.act(|s, now| ops::Probe::send(s, now, dst, id, size))?;
            match self.run(&mut probe, timeout, interrupt) {
                Ok(rtt) => rtts.push(Some(rtt)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                    ) =>
                {
                    rtts.push(None)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(rtts)
    }

    /// Closes a connection the user holds: gracefully, or with a reset.
    /// A forked child lets go of its copy alone: the parent's connection
    /// is not closed under it (see `LiveStack::owner`).
    pub fn release(&self, h: Handle, abort: bool) {
        if !self.in_owner() {
            return;
        }
        self.unwatch(super::Watched::Tcp(h));
        self.act(|s, _| s.tcp_mut().release(h, abort));
    }

    /// Stops listening on `port`; connections not yet accepted are reset.
    pub fn unlisten(&self, port: u16) {
        if !self.in_owner() {
            return; // as `release`
        }
        self.unwatch(super::Watched::Listener(port));
        self.act(|s, _| s.tcp_mut().unlisten(port));
    }
}
