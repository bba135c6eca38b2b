//! A stack running on a live interface: the engine behind one lock, a real
//! clock, the pcap descriptor and a wake-up eventfd to sleep on, and an
//! optional driver thread. Knows nothing of Python: blocking calls take an
//! `interrupt` hook that the bindings use to honour Ctrl-C.

use super::bridge::{BridgeFate, Bridges};
use super::errno;
use super::handoff::send_handed_off;
use super::ready_set::{Event, ReadySet, ReadySets};
use super::wait::{LEASE, LOOK_SLACK, LOOP_LOOK_MAX, REST, REST_LOOK};
use super::waiters::{self, Leader, Pending, Waiters};
use super::watch::{Watched, Watches};
use crate::iface::DropReason;
use crate::phy::capture::{self, CaptureInfo, CaptureRing};
use crate::phy::fault::{FaultConfig, FaultStats};
use crate::phy::faulty::Faulty;
use crate::phy::file_claim::FileClaim;
use crate::phy::interface_claim;
use crate::phy::live_device::{Arrivals, DeviceKind, LiveDevice, RxLosses};
use crate::phy::owner::Owner;
use crate::phy::poll::{self, Interest};
use crate::phy::stream_fd::StreamFd;
use crate::phy::timer_slack::Widened;
use crate::phy::trace::{TraceWriter, Traced};
use crate::phy::wake::WakeFd;
use crate::phy::Device;
use crate::socket::tcp::Handle;
use crate::stack::{Stack, StackConfig};
use crate::time::{earliest, Duration, Instant};
use std::cell::Cell;
use std::io;
use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

#[derive(Debug, Clone)]
pub struct LiveConfig {
    pub interface: String,
    pub bpf: Option<String>,
    pub pcap_out: Option<PathBuf>,
    /// Spin this long after activity before sleeping (latency over CPU).
    pub busy_poll: Duration,
    /// Faults injected on the live device (testing only).
    pub faults: Option<FaultConfig>,
    /// Hand TCP bursts to the kernel to cut into segments (its GSO), when
    /// the kernel can and no faults are injected.
    pub segment_offload: bool,
    /// How frames leave (see [`DeviceKind`]).
    pub device: DeviceKind,
    pub stack: StackConfig,
}

/// The state behind the lock.
pub struct Engine {
    pub stack: Stack,
    pub(super) device: Traced<Faulty<LiveDevice>>,
    pub(super) origin: std::time::Instant,
    /// Readiness descriptors handed out, kept current after every change.
    pub(super) watches: Watches,
    /// The readiness lists of event loops that poll the device themselves.
    pub(super) ready_sets: ReadySets,
    /// Connections joined to kernel sockets, pumped every round.
    pub(super) bridges: Bridges,
    /// The device's losses already counted in the stack's drops.
    pub(super) losses_seen: RxLosses,
    /// Threads blocked in a call, woken for what they wait on.
    pub(super) waiters: Waiters,
    /// Wake-ups owed, delivered when the lock is released ([`Locked`]).
    pub(super) pending: Pending,
    /// Scratch: the connections marked since the last [`Engine::publish`].
    pub(super) changed: Vec<Handle>,
    /// The blocked call that polls the device itself; the driver steps
    /// aside meanwhile.
    pub(super) leader: Option<Leader>,
    /// Numbers the leaders, so that one taken over can tell.
    pub(super) leaders: u64,
    /// The driver sleeps on [`Shared::driver_resume`] until the leader goes.
    pub(super) driver_aside: bool,
    /// Rounds that made progress (what `poll()` on a driven stack waits for).
    pub(super) rounds: u64,
    /// The time, read once per hold of the lock ([`Engine::now`]).
    clock: Cell<Option<Instant>>,
}

impl Engine {
    /// The time, as of this hold of the lock: what a call, a round and the
    /// wait after them all do under one hold happens at one instant, and
    /// the clock is read once, not at every step (a request/response read
    /// it some 15 times, 5% of its time in the stack).
    pub fn now(&self) -> Instant {
        self.clock.get().unwrap_or_else(|| {
            let now = Instant::from_micros(self.origin.elapsed().as_micros() as i64);
            self.clock.set(Some(now));
            now
        })
    }

    /// Handles every pending frame and due timer; returns frames received
    /// plus one if a timer was due (so that callers see progress). The
    /// leader (see [`Shared`]) is woken if the round touched its socket,
    /// unless it ran the round itself.
    pub(super) fn run_once(&mut self, by_leader: bool) -> io::Result<usize> {
        let now = self.now();
        let timer_due = self.next_due().is_some_and(|t| t <= now);
        let n = self.stack.poll(now, &mut self.device)?;
        if n > 0 {
            self.count_device_losses();
        }
        let pumped = self.pump_bridges(now);
        if let Some(trace) = &mut self.device.trace {
            trace.flush()?;
        }
        let handled = n + timer_due as usize + pumped as usize;
        if handled > 0 {
            self.rounds += 1;
        }
        self.publish(handled > 0, true, by_leader);
        Ok(handled)
    }

    /// Steps the bridges whose connection changed (or that are due) and
    /// sends what they queued: bytes, a FIN, windows. Whether bytes moved.
    fn pump_bridges(&mut self, now: Instant) -> bool {
        if self.bridges.is_empty() {
            return false;
        }
        // What the round marked stays for `publish`, which appends to it.
        self.stack.tcp_mut().take_changed(&mut self.changed);
        let pumped = self.bridges.pump(&mut self.stack, &self.changed, now) > 0;
        self.stack.flush(now, &mut self.device);
        pumped
    }

    /// [`Engine::pump_bridges`] outside a round (a call's thread), the
    /// waiters it concerns woken.
    fn pump_bridges_now(&mut self) {
        let now = self.now();
        let moved = self.pump_bridges(now);
        self.publish(moved, true, false);
    }

    /// Sends the frames the engine has queued (what a loop's calls handed
    /// off to the driver, see `handoff.rs`).
    pub(super) fn flush_tx(&mut self) {
        let now = self.now();
        self.stack.flush(now, &mut self.device);
        if self.stack.take_delivered_to_self() {
            self.publish(true, true, false); // (else the marks wait for the next publish)
        }
    }

    /// Brings readiness descriptors up to date with what changed and, if
    /// `wake`, wakes the blocked calls it concerns: the followers on their
    /// condition variables, the leader (unless it is the caller) on its
    /// descriptor, since it sleeps in `poll()` on the device.
    ///
    /// Frames a flush delivered to ourselves (`stack/loopback.rs`) count as
    /// progress and wake, whatever the caller says: a blocked call's own
    /// attempt, which wakes no one else, may have changed another socket.
    pub(super) fn publish(&mut self, progress: bool, wake: bool, by_leader: bool) {
        let looped = self.stack.take_delivered_to_self();
        let (progress, wake) = (progress || looped, wake || looped);
        self.stack.tcp_mut().take_changed(&mut self.changed);
        self.watches.update(&self.stack, &self.changed);
        self.ready_sets.update(&self.stack, &self.changed);
        if wake {
            let pending = &mut self.pending;
            self.waiters
                .wake(&self.stack, &self.changed, progress, &mut pending.waiters);
            if let Some(leader) = self.leader.as_ref().filter(|_| !by_leader) {
                if waiters::touched(&self.stack, leader.key, &self.changed, progress) {
                    pending.leader = Some(leader.wake.clone());
                }
            }
        }
        self.changed.clear();
    }

    /// What ready set `set` has ready, into `out`.
    fn collect(&mut self, set: Option<u64>, out: &mut Vec<Event>) {
        if let Some(s) = set.and_then(|id| self.ready_sets.get_mut(id)) {
            s.collect(&self.stack, out);
        }
    }

    /// Ready set `set`'s loop runs a round (`on`) and collects after it.
    fn collecting(&mut self, set: Option<u64>, on: bool) {
        if let Some(s) = set.and_then(|id| self.ready_sets.get_mut(id)) {
            s.collecting(on);
        }
    }

    /// Frames the device dropped before the engine, as the stack's drops.
    fn count_device_losses(&mut self) {
        let losses = self.device.inner.inner.losses();
        let seen = std::mem::replace(&mut self.losses_seen, losses);
        let stack = &mut self.stack;
        stack.count_device_drops(DropReason::RxTruncated, losses.truncated - seen.truncated);
        stack.count_device_drops(
            DropReason::RxUndescribed,
            losses.undescribed - seen.undescribed,
        );
        stack.count_device_drops(DropReason::RxRingFull, losses.ring_full - seen.ring_full);
        stack.count_device_drops(DropReason::RxUnread, losses.unread - seen.unread);
    }

    /// Starts an in-memory capture of every frame in and out, up to
    /// `limit` bytes of `.pcap` (the oldest frames go first); replaces the last one.
    pub fn capture_start(&mut self, limit: usize) {
        let now = self.now();
        self.device.capture = Some(CaptureRing::start(limit, now));
    }

    /// Stops capturing; what was captured stays for download.
    pub fn capture_stop(&mut self) {
        if let Some(c) = &mut self.device.capture {
            c.stop();
        }
    }

    pub fn capture_info(&self) -> CaptureInfo {
        self.device
            .capture
            .as_ref()
            .map(|c| c.info())
            .unwrap_or_default()
    }

    /// The capture as a `.pcap` file (an empty capture if none was started).
    pub fn capture_pcap(&self) -> Vec<u8> {
        match &self.device.capture {
            Some(c) => c.to_pcap(),
            None => capture::empty_file(),
        }
    }

    /// Injects `faults` on the device from now on (None: stops).
    pub fn set_faults(&mut self, faults: Option<FaultConfig>) {
        self.device.inner.configure(faults);
    }

    pub fn faults(&self) -> Option<&FaultConfig> {
        self.device.inner.config()
    }

    pub fn device_kind(&self) -> DeviceKind {
        self.device.inner.inner.kind()
    }

    /// What the fault injector did to (received, transmitted) frames.
    pub fn fault_stats(&self) -> Option<(FaultStats, FaultStats)> {
        self.device.inner.stats()
    }

    /// The engine's next timer, or the device's (frames a fault holds back).
    fn next_due(&self) -> Option<Instant> {
        earliest(self.stack.poll_at(), self.device.poll_at())
    }

    /// Time until the engine's next timer, if any.
    pub(super) fn timer_wait(&self) -> Option<Duration> {
        self.next_due().map(|t| t.saturating_since(self.now()))
    }

    /// No bridge to pump (bridges are the driver's: it sleeps on their sockets).
    pub(super) fn bridges_idle(&self) -> bool {
        self.bridges.is_empty()
    }

    /// Only calls want what the device brings: no call waits for the
    /// driver's rounds, and no bridge, listener or UDP socket takes frames
    /// no call asked for. A client's request may then leave the device to
    /// its caller (a lease, and the driver's rest, see `try_now`).
    pub(super) fn serves_only_calls(&self) -> bool {
        self.bridges_idle()
            && self.waiters.is_empty()
            && self.stack.tcp().listeners().next().is_none()
            && self.stack.udp().is_empty()
    }

    /// What the driver sleeps on besides the device and its wake-up.
    pub(super) fn bridge_interests(&self, out: &mut Vec<Interest>) {
        self.bridges.interests(&self.stack, out);
    }
}

/// A blocked call does not hand its wake-up to another thread when it can
/// avoid it: the first caller to block becomes the *leader* and polls the
/// device itself, so the frame it waits for wakes it directly (one thread
/// hop, as with a kernel socket, instead of device → driver → caller). The
/// driver thread steps aside meanwhile (the leader also watches the
/// bridges' sockets, and pumps them in its rounds); other blocked callers
/// sleep on their own condition variables and are woken by the leader's
/// rounds only for their own sockets. When the leader's call returns, the
/// driver (or, without one, another blocked caller) takes over: at once
/// while bridges are up, else after a lease.
pub(super) struct Shared {
    pub(super) engine: Mutex<Engine>,
    pub(super) pcap_fd: RawFd,
    /// Whether frames wait, without a system call where the device can tell.
    arrivals: Arrivals,
    /// The driver's wake-up (or a `poll()` caller's, without a driver).
    pub(super) wake: WakeFd,
    /// Signalled when the leader goes, for the driver that stepped aside.
    pub(super) driver_resume: Condvar,
    /// The engine's clock origin, for [`Shared::loop_polled`].
    pub(super) origin: std::time::Instant,
    /// A mirror of `Engine::leader.is_some()`, read without the lock.
    pub(super) leading: AtomicBool,
    /// Event loops that watch the device themselves and run rounds when it
    /// is readable ([`LiveStack::loop_round`]); while any does, the driver
    /// stops polling the device and only steps in for timers and for a
    /// loop that has not taken waiting frames within a lease (it is busy).
    pub(super) loop_pollers: AtomicUsize,
    /// When a loop last ran a round, in µs since [`Shared::origin`].
    pub(super) loop_polled: AtomicU64,
    /// A loop's call left frames for the driver to send (`handoff.rs`).
    pub(super) handed_off: AtomicBool,
    /// When a brief leader left without waking the driver, or a call last
    /// ran a round in passing (their lease, see `step_aside`): µs since
    /// [`Shared::origin`], plus one (0: none). Read without the lock, so
    /// that the driver waits a lease out without ever queueing on the
    /// engine lock behind the call: the call's unlock would then have to
    /// wake it, a cross-core wake-up (15 µs on this VM) in a round trip.
    lease_from: AtomicU64,
    /// Until when the driver leaves the device to a client's calls (see
    /// [`REST`]): µs since [`Shared::origin`] (0: not resting).
    rest_until: AtomicU64,
    /// The driver sleeps out a lease (parked, not on the engine's lock).
    pub(super) driver_parked: AtomicBool,
    /// The driver thread runs.
    pub(super) driving: AtomicBool,
    pub(super) stop: AtomicBool,
    /// Set by [`LiveStack::shut`]: every later user call fails.
    pub(super) shut: AtomicBool,
    pub(super) busy_poll: Duration,
    /// The last leader's frame came within [`super::wait::ADAPTIVE_SPIN`] of
    /// its sleep: the next leader spins that long before sleeping.
    pub(super) spin_pays: AtomicBool,
}

impl Shared {
    /// A lease starts at `now` (see [`Shared::lease_from`]).
    pub(super) fn start_lease(&self, now: std::time::Instant) {
        let since = now.saturating_duration_since(self.origin).as_micros();
        self.start_lease_at(Instant::from_micros(since as i64));
    }

    /// A lease starts at the engine's time `now` (a hold's clock, see
    /// [`Engine::now`]): the call that ran a round in passing reads no
    /// clock of its own for it.
    pub(super) fn start_lease_at(&self, now: Instant) {
        let from = now.total_micros().max(0) as u64;
        self.lease_from.store(from + 1, Ordering::SeqCst);
    }

    /// What is left at `now` of the last lease; `None` once it ran out.
    pub(super) fn lease_left(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        let from = self.lease_from.load(Ordering::SeqCst).checked_sub(1)?;
        let end = self.origin + std::time::Duration::from_micros(from) + LEASE;
        (now < end).then(|| end - now)
    }

    /// A client's request went out at the engine's time `now`: a lease, and
    /// a rest of the driver from the device after it (see [`REST`]).
    pub(super) fn start_client_lease_at(&self, now: Instant) {
        self.start_lease_at(now);
        let until = now.total_micros().max(0) as u64 + REST.as_micros() as u64;
        self.rest_until.store(until, Ordering::SeqCst);
    }

    /// What is left at `now` of the driver's rest; `None` once it ran out.
    pub(super) fn rest_left(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        let until = self.rest_until.load(Ordering::SeqCst);
        let end = self.origin + std::time::Duration::from_micros(until);
        (until > 0 && now < end).then(|| end - now)
    }

    /// For a thread that spins: whether frames wait on the device and
    /// whether `wake` was signalled, looked at without a system call where
    /// the device has a receive ring.
    pub(super) fn look(&self, wake: &WakeFd) -> io::Result<[bool; 2]> {
        match self.arrivals.frames_waiting() {
            Some(frames) => Ok([frames, wake.is_signalled()]),
            None => poll::readable_each([self.pcap_fd, wake.fd()], Some(Duration::ZERO)),
        }
    }

    /// Frames wait on the device, as far as it can tell without a system
    /// call (false where it cannot).
    pub(super) fn frames_surely_waiting(&self) -> bool {
        self.arrivals.frames_waiting() == Some(true)
    }

    /// Whether frames wait on the device that no one has taken yet.
    pub(super) fn frames_waiting(&self) -> bool {
        self.arrivals.frames_waiting().unwrap_or_else(|| {
            poll::readable_each([self.pcap_fd], Some(Duration::ZERO)).is_ok_and(|[r]| r)
        })
    }
}

/// A [`Stack`] on a live interface.
pub struct LiveStack {
    pub(super) shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
    /// The process that opened the stack. A forked child (a forking server)
    /// holds a copy of it without a driver, on its parent's socket, ring and
    /// wire (`phy/owner.rs`): to the child the stack is shut, its calls fail
    /// with [`errno::not_ours`], closing it lets go of the copy alone, and
    /// its bridged sockets use their descriptors, which the parent's driver
    /// serves.
    owner: Owner,
    /// This stack's claim on its interface and MAC, let go of once shut.
    claim: Mutex<Option<FileClaim>>,
}

impl LiveStack {
    pub fn open(config: LiveConfig) -> io::Result<Self> {
        let pcap = LiveDevice::open(
            &config.interface,
            config.bpf.as_deref(),
            config.segment_offload,
            config.device,
        )?;
        // Claimed once the interface is known to exist and fit: no file for a name that is none.
        let claim = interface_claim::claim(
            &interface_claim::default_dir(),
            &config.interface,
            config.stack.interface.mac,
        )?;
        let pcap_fd = pcap.fd();
        let arrivals = pcap.arrivals();
        let origin = std::time::Instant::now();
        let trace = match &config.pcap_out {
            Some(path) => Some(TraceWriter::create(path, Instant::ZERO)?),
            None => None,
        };
        let wake = WakeFd::new()?;
        // Faults are seen on the wire: their stream is one of their own.
        let faulty = Faulty::new(pcap, config.faults, fault_seed(config.stack.seed));
        let device = Traced::new(faulty, trace);
        let mut stack_config = config.stack;
        stack_config.tcp.burst_capacity = device.burst_capacity();
        stack_config.tcp.shared_clock = crate::phy::shared_clock::for_stack(origin);
        let mut engine = Engine {
            stack: Stack::new(stack_config, Instant::ZERO),
            device,
            origin,
            watches: Watches::default(),
            ready_sets: ReadySets::default(),
            bridges: Bridges::default(),
            losses_seen: RxLosses::default(),
            waiters: Waiters::default(),
            changed: Vec::new(),
            pending: Pending::default(),
            leader: None,
            leaders: 0,
            driver_aside: false,
            rounds: 0,
            clock: Cell::new(None),
        };
        // Readiness descriptors and blocked calls learn what a round touched.
        engine.stack.tcp_mut().follow_changes();
        engine.run_once(false)?; // the first DISCOVER or gratuitous ARP goes out now
        Ok(LiveStack {
            shared: Arc::new(Shared {
                engine: Mutex::new(engine),
                pcap_fd,
                arrivals,
                wake,
                driver_resume: Condvar::new(),
                leading: AtomicBool::new(false),
                loop_pollers: AtomicUsize::new(0),
                loop_polled: AtomicU64::new(0),
                handed_off: AtomicBool::new(false),
                lease_from: AtomicU64::new(0),
                rest_until: AtomicU64::new(0),
                driver_parked: AtomicBool::new(false),
                driving: AtomicBool::new(false),
                origin,
                stop: AtomicBool::new(false),
                shut: AtomicBool::new(false),
                busy_poll: config.busy_poll,
                spin_pays: AtomicBool::new(false),
            }),
            driver: Mutex::new(None),
            owner: Owner::here(),
            claim: Mutex::new(claim),
        })
    }

    /// Locks the engine. Callers from Python must not hold the GIL here.
    pub fn engine(&self) -> Locked<'_> {
        Locked::new(&self.shared.engine)
    }

    pub fn is_driven(&self) -> bool {
        lock(&self.driver).is_some()
    }

    /// Has the driver look again now if it sleeps out a lease.
    pub(super) fn unpark_driver(&self) {
        if let Some(driver) = lock(&self.driver).as_ref() {
            driver.thread().unpark();
        }
    }

    /// Starts the driver thread; a no-op if it runs already.
    pub fn start(&self) -> io::Result<()> {
        self.check_owner()?;
        let mut driver = lock(&self.driver);
        if driver.is_none() {
            self.shared.stop.store(false, Ordering::SeqCst);
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("mipfast-driver".into())
                .spawn(move || drive(&shared))?;
            *driver = Some(handle);
            self.shared.driving.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Stops the driver thread and waits for it.
    pub fn stop(&self) {
        if !self.in_owner() {
            return; // the driver is the parent's
        }
        let handle = lock(&self.driver).take();
        if let Some(handle) = handle {
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.wake.wake();
            handle.thread().unpark();
            {
                let _engine = self.engine(); // so that a driver about to step aside sees it
                self.shared.driver_resume.notify_all();
            }
            let _ = handle.join();
            self.shared.driving.store(false, Ordering::SeqCst);
            // What a loop handed off and the driver had not sent yet.
            send_handed_off(&self.shared, &mut self.engine());
        }
    }

    /// Stops the driver and refuses further user calls; connections that
    /// still hold the stack see it closed.
    /// Every thread blocked in a call on this stack returns at once with
    /// EBADF: condition-variable waiters are woken (under the lock, so none
    /// misses it), and the wake-up descriptors stay signalled for those
    /// sleeping in `poll()` or about to.
    pub fn shut(&self) {
        if !self.in_owner() {
            return; // the parent's, to shut
        }
        self.shared.shut.store(true, Ordering::SeqCst);
        {
            let mut engine = self.engine();
            // Caches on the link forget our mDNS names at once (RFC 6762 §10.1).
            let now = engine.now();
            engine.stack.mdns_goodbye(now);
            engine.flush_tx();
            let Engine {
                stack,
                watches,
                ready_sets,
                bridges,
                waiters,
                ..
            } = &mut *engine;
            bridges.shut(stack);
            watches.shut();
            ready_sets.shut();
            waiters.wake_all();
            if let Some(leader) = &engine.leader {
                leader.wake.wake();
            }
        }
        self.shared.wake.wake();
        self.stop();
        // Shut, it answers nothing more: another stack may take its place.
        lock(&self.claim).take();
    }

    /// EBADF once the stack is shut: what a blocked call returns then.
    pub(super) fn check_open(&self) -> io::Result<()> {
        self.check_owner()?;
        if self.is_shut() {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        Ok(())
    }
    /// Shut, or not this process's (a forked child's copy).
    pub fn is_shut(&self) -> bool {
        self.shared.shut.load(Ordering::SeqCst) || !self.in_owner()
    }

    /// Wakes whoever polls the device (the leader, else the driver) so that
    /// it acts on new work at once.
    pub fn notify(&self) {
        if self.shared.leading.load(Ordering::SeqCst) {
            if let Some(leader) = &self.engine().leader {
                leader.wake.wake();
            }
        }
        self.shared.wake.wake();
    }

    /// The device's descriptor, for an event loop that polls it itself
    /// (see [`LiveStack::loop_round`]).
    pub fn device_fd(&self) -> RawFd {
        self.shared.pcap_fd
    }

    /// An event loop starts (`true`) or stops polling the device; the
    /// driver is told, since it polls the device only while none does.
    pub fn loop_polls(&self, polling: bool) {
        let pollers = &self.shared.loop_pollers;
        if polling {
            pollers.fetch_add(1, Ordering::SeqCst);
        } else {
            let _ = pollers.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
        self.shared.wake.wake();
    }

    /// A round run by an event loop whose device descriptor turned
    /// readable: the frame wakes the loop directly, and the readiness
    /// descriptors it shows are current before the loop looks at them.
    /// With the loop's ready set `set`, what the round made ready is
    /// collected into `ready` instead of signalled (see `ready_set.rs`).
    pub fn loop_round(&self, set: Option<u64>, ready: &mut Vec<Event>) -> io::Result<usize> {
        let mut engine = self.engine();
        if self.is_shut() {
            engine.collect(set, ready); // every socket, ready with EBADF
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        engine.collecting(set, true);
        let n = engine.run_once(false);
        engine.collecting(set, false);
        engine.collect(set, ready);
        drop(engine);
        let now = self.shared.origin.elapsed().as_micros() as u64;
        self.shared.loop_polled.store(now, Ordering::SeqCst);
        n
    }

    /// A ready set for an event loop (see `ready_set.rs`): its number and
    /// descriptor. Starts the driver, which keeps the timers meanwhile.
    pub fn ready_set_open(&self) -> io::Result<(u64, RawFd)> {
        self.check_open()?;
        self.start()?;
        let set = ReadySet::new()?;
        let fd = set.fd();
        Ok((self.engine().ready_sets.add(set), fd))
    }

    pub fn ready_set_close(&self, id: u64) {
        if !self.in_owner() {
            return; // (the parent's engine: see `owner`)
        }
        self.engine().ready_sets.remove(id);
    }

    /// Set `id` waits for `key` as given under `token` (neither: forgets it).
    pub fn ready_set_interest(&self, id: u64, key: Watched, token: u64, read: bool, write: bool) {
        let mut engine = self.engine();
        let Engine {
            stack, ready_sets, ..
        } = &mut *engine;
        if let Some(s) = ready_sets.get_mut(id) {
            s.set(stack, key, token, read, write);
        }
    }

    /// What set `id` has ready now (its descriptor turned readable).
    pub fn ready_set_collect(&self, id: u64, ready: &mut Vec<Event>) {
        let mut engine = self.engine();
        let Engine {
            stack, ready_sets, ..
        } = &mut *engine;
        if let Some(s) = ready_sets.get_mut(id) {
            s.collect(stack, ready);
        }
    }

    /// Runs a user call on the engine, then sends what it queued (TCP data,
    /// ACKs, window updates) from this thread, without waiting for a round,
    /// and wakes the blocked calls on what it changed.
    pub fn act<T>(&self, f: impl FnOnce(&mut Stack, Instant) -> T) -> T {
        let mut engine = self.engine();
        self.act_locked(&mut engine, f, true, false)
    }

    /// As [`LiveStack::act`], the lock held; `wake: false` for the attempts
    /// of a blocked call, whose own marks concern no other waiter (two
    /// threads blocked on one connection would otherwise wake each other
    /// for ever). `may_hand_off`: the frames may be left to the driver
    /// while an event loop is behind (`handoff.rs`).
    pub(super) fn act_locked<T>(
        &self,
        engine: &mut Engine,
        f: impl FnOnce(&mut Stack, Instant) -> T,
        wake: bool,
        may_hand_off: bool,
    ) -> T {
        let now = engine.now();
        let value = f(&mut engine.stack, now);
        let Engine {
            stack,
            device,
            ready_sets,
            ..
        } = engine;
        stack.dispatch(now);
        if may_hand_off && self.hand_off_transmit(stack, ready_sets) {
            stack.count_tx_handoff();
        } else {
            stack.flush(now, device); // send failures are counted, not returned
        }
        engine.publish(false, wake, false);
        value
    }

    /// A descriptor that shows `key`'s readiness (see `ready_fd.rs`). It is
    /// kept current by whoever runs the engine, so the driver thread is
    /// started: an event loop sleeping on the descriptor polls nothing.
    pub fn watch(&self, key: Watched) -> io::Result<RawFd> {
        self.check_open()?;
        self.start()?;
        let mut engine = self.engine();
        let Engine { stack, watches, .. } = &mut *engine;
        watches.fd(stack, key)
    }

    /// Joins the user's connection `handle` to the kernel stream socket
    /// `socket`, whose first `hold` bytes are not the application's
    /// (`bridge.rs`): the driver moves the bytes both ways from now on and
    /// releases the connection when both directions have ended.
    pub fn bridge(
        &self,
        handle: Handle,
        socket: StreamFd,
        hold: usize,
    ) -> io::Result<Arc<BridgeFate>> {
        if let Err(e) = self.check_open().and_then(|()| self.start()) {
            self.release(handle, true);
            return Err(e);
        }
        let mut engine = self.engine();
        engine.watches.remove(Watched::Tcp(handle)); // the connection is no longer the user's
        let watched = engine.bridges.joins_watched_set();
        let fate = engine.bridges.add(handle, socket, hold);
        if hold > 0 {
            // A handshake over by now frees a connecting socket's end before its
            // event loop even waits, instead of after two thread hops (driver, loop).
            self.round_in_passing(&mut engine);
        }
        // Its first step here: what the connection already holds goes to the
        // socket now, not at the driver's next round.
        engine.pump_bridges_now();
        drop(engine);
        if !watched {
            self.notify(); // the driver (or a leader) sleeps on sockets without it
        }
        Ok(fate)
    }

    /// Runs a round now if frames surely wait at the device and no call
    /// leads: what a veth's peer answered within our own send (a SYN-ACK to
    /// our SYN) is taken by this caller, under the lock it holds, not by the
    /// driver woken for it, which would then wake whoever waits for it.
    pub(super) fn round_in_passing(&self, engine: &mut Engine) {
        if engine.leader.is_none() && self.shared.frames_surely_waiting() {
            let _ = engine.run_once(false); // a failed round is the driver's to report
        }
    }

    /// Ends `handle`'s bridge at once, the connection aborted (see
    /// [`Bridges::abort`]); false if it has none (any more).
    pub fn abort_bridge(&self, handle: Handle) -> bool {
        if !self.in_owner() {
            return false; // the parent's bridge goes on (see `owner`)
        }
        let mut engine = self.engine();
        let Engine { stack, bridges, .. } = &mut *engine;
        let found = bridges.abort(stack, handle);
        self.act_locked(&mut engine, |_, _| (), true, false); // what the abort sends
        found
    }

    /// Ends `handle`'s bridge and gives the connection back to its user (see
    /// [`Bridges::release`]): the bytes read from it that its socket has not
    /// had, or None where the bridge goes on.
    pub fn unbridge(&self, handle: Handle) -> Option<Vec<u8>> {
        if !self.in_owner() {
            return None; // as `abort_bridge`
        }
        let mut engine = self.engine();
        let Engine { stack, bridges, .. } = &mut *engine;
        let pending = bridges.release(stack, handle)?;
        self.act_locked(&mut engine, |_, _| (), true, false); // what the socket had written
        Some(pending)
    }

    /// Whether the application may read `handle`'s bridged connection
    /// straight into its buffer (see [`Bridges::begin_direct_read`]); if so,
    /// [`LiveStack::end_direct_read`] must follow.
    pub fn begin_direct_read(&self, handle: Handle, python_end: RawFd) -> bool {
        self.in_owner() && self.engine().bridges.begin_direct_read(handle, python_end)
    }

    /// Whether a read of `handle`'s connection, which has no bridge yet, is
    /// counted as its future bridge's direct reader (see
    /// [`Bridges::begin_early_read`]); if so, [`LiveStack::end_direct_read`]
    /// must follow.
    pub fn begin_early_read(&self, handle: Handle) -> bool {
        self.in_owner() && self.engine().bridges.begin_early_read(handle)
    }

    /// A direct read ended: what came meanwhile, or the end of stream, goes
    /// on to the socket now, not at the driver's next round.
    pub fn end_direct_read(&self, handle: Handle) {
        let mut engine = self.engine();
        if engine.bridges.end_direct_read(handle) {
            engine.pump_bridges_now();
        }
    }

    /// Whether the application may send on `handle`'s bridged connection
    /// directly (see [`Bridges::may_send_direct`]).
    pub fn may_send_direct(&self, handle: Handle) -> bool {
        self.in_owner() && self.engine().bridges.may_send_direct(handle)
    }

    /// Whether this is the process that opened the stack (see `owner`).
    pub fn in_owner(&self) -> bool {
        self.owner.is_here()
    }

    /// The error a forked child's call gets, if this is one.
    pub fn check_owner(&self) -> io::Result<()> {
        if self.in_owner() {
            Ok(())
        } else {
            Err(errno::not_ours(self.owner.pid()))
        }
    }

    /// Bridges still moving bytes, and the reads and sends their sockets
    /// made on the connections directly.
    pub fn bridges(&self) -> (usize, u64, u64) {
        let engine = self.engine();
        let b = &engine.bridges;
        (b.len(), b.direct_reads, b.direct_sends)
    }

    /// Closes `key`'s readiness descriptor, if it has one.
    pub fn unwatch(&self, key: Watched) {
        if !self.in_owner() {
            return;
        }
        self.engine().watches.remove(key);
    }
}

impl Drop for LiveStack {
    fn drop(&mut self) {
        if !self.in_owner() {
            // A forked child's copy is left as it is: its driver handle names
            // a thread the child does not have, its device's descriptors and
            // trace are the parent's (a flush would write the parent's frames
            // again), and the engine's lock may have been held at the fork.
            let driver = self.driver.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::forget(driver.take());
            std::mem::forget(Arc::clone(&self.shared));
            return;
        }
        self.stop();
        if let Some(trace) = &mut self.engine().device.trace {
            let _ = trace.flush();
        }
    }
}

fn fault_seed(seed: u64) -> u64 {
    use rand::RngExt;
    crate::entropy::stream(seed, crate::entropy::Purpose::Faults).random()
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not make every later call panic too.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The engine, locked. The wake-ups a change owes to blocked calls are
/// collected under the lock and delivered once it is released, so that a
/// woken thread does not run only to block on the lock still held. Log
/// records wait for the release too (`deferred_log`).
pub struct Locked<'a> {
    guard: Option<MutexGuard<'a, Engine>>,
}

impl<'a> Locked<'a> {
    fn new(engine: &'a Mutex<Engine>) -> Self {
        Self::held(lock(engine))
    }

    /// A new hold: the clock is read afresh.
    fn held(guard: MutexGuard<'a, Engine>) -> Self {
        guard.clock.set(None);
        super::deferred_log::hold_begins();
        Locked { guard: Some(guard) }
    }

    /// The lock if it is free this instant.
    pub(super) fn try_new(engine: &'a Mutex<Engine>) -> Option<Self> {
        let guard = match engine.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Self::held(guard))
    }

    /// Sleeps on `cond` (at most `timeout`), the lock released meanwhile.
    pub(super) fn wait_on(mut self, cond: &Condvar, timeout: Option<std::time::Duration>) -> Self {
        let mut guard = self.guard.take().expect("locked");
        std::mem::take(&mut guard.pending).deliver(); // none is due to oneself
        let guard = match timeout {
            Some(t) => match cond.wait_timeout(guard, t) {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            },
            None => cond.wait(guard).unwrap_or_else(|p| p.into_inner()),
        };
        Self::held(guard)
    }
}

impl std::ops::Deref for Locked<'_> {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.guard.as_ref().expect("locked")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Engine {
        self.guard.as_mut().expect("locked")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            let pending = std::mem::take(&mut guard.pending);
            drop(guard);
            pending.deliver();
        }
        // Last: the records logged under the lock (one per hold, `wait_on`'s
        // successor included).
        super::deferred_log::hold_ends();
    }
}

/// One locked round by the driver (or a `poll()` caller); spins for the
/// busy-poll window after activity.
pub(super) fn round(shared: &Shared) -> io::Result<usize> {
    let mut total = locked_round(shared)?;
    if total > 0 && shared.busy_poll > Duration::ZERO {
        total += spin(shared)?;
    }
    Ok(total)
}

/// A round by a thread other than the leader.
fn locked_round(shared: &Shared) -> io::Result<usize> {
    Locked::new(&shared.engine).run_once(false)
}

/// Busy-polling after activity, for latency: for `busy_poll` after the last
/// frame. The spinner takes the engine lock only when the device has frames
/// or the wake-up descriptor is signalled, and yields its core between
/// looks, so that the Python threads it serves keep running on a small
/// machine; a leader spins for itself (see `wait.rs`), so the driver stops.
fn spin(shared: &Shared) -> io::Result<usize> {
    let window = std::time::Duration::from(shared.busy_poll);
    let mut until = std::time::Instant::now() + window;
    let mut total = 0;
    let going = || {
        !shared.stop.load(Ordering::SeqCst)
            && !shared.shut.load(Ordering::SeqCst)
            && !shared.leading.load(Ordering::SeqCst)
    };
    while going() && std::time::Instant::now() < until {
        if !shared
            .look(&shared.wake)
            .map_or(true, |r| r.contains(&true))
        {
            std::thread::yield_now();
            continue;
        }
        let n = {
            if shared.lease_left(std::time::Instant::now()).is_some() {
                break; // a call takes its replies itself (a lease): no race for them
            }
            Locked::new(&shared.engine).run_once(false)?
        };
        if n > 0 {
            total += n;
            until = std::time::Instant::now() + window;
        } else if going() {
            shared.wake.drain(); // a call's wake-up, its work done by this round
        }
    }
    Ok(total)
}

/// While a call leads, the driver sleeps: until the leader wakes it, or,
/// for a leader that began less than a lease ago (it may leave without
/// waking the driver), a lease at a time; after a brief leader left, or a
/// call ran a round in passing, until that lease runs out. That last wait
/// is parked, away from the engine's lock: a series of requests and
/// replies holds the lock for much of each trip, and a driver that woke to
/// queue on it would have to be woken again by the call's unlock, from the
/// other core.
fn step_aside(shared: &Shared) {
    let now = std::time::Instant::now();
    if !shared.leading.load(Ordering::SeqCst)
        && shared.lease_left(now).is_none()
        && shared.rest_left(now).is_none()
    {
        return; // the common case without leaders or leases, without the lock
    }
    // Each look costs a timer interrupt of its own unless it can wait for
    // the next tick; during a series of short calls it finds them going on
    // and would cost one every lease for nothing.
    let _late = Widened::new(LOOK_SLACK);
    while !shared.stop.load(Ordering::SeqCst) {
        let now = std::time::Instant::now();
        if !shared.leading.load(Ordering::SeqCst) {
            let Some(left) = shared.lease_left(now) else {
                if let Some(left) = shared.rest_left(now) {
                    if !rest_a_look(shared, left) {
                        break; // frames, a wake-up or a timer: a round
                    }
                    continue;
                }
                break;
            };
            shared.driver_parked.store(true, Ordering::SeqCst);
            // A leader that came meanwhile and left after a lease unparks it.
            if !shared.leading.load(Ordering::SeqCst) {
                std::thread::park_timeout(left);
            }
            shared.driver_parked.store(false, Ordering::SeqCst);
            continue;
        }
        let mut engine = Locked::new(&shared.engine);
        let wait = match &engine.leader {
            Some(l) if now - l.since < LEASE => Some(LEASE),
            Some(_) => None,
            None => continue, // it left: a lease, or none
        };
        engine.driver_aside = true;
        engine = engine.wait_on(&shared.driver_resume, wait);
        engine.driver_aside = false;
    }
}

/// One look of a resting driver: true if nothing needs it (no frame waits,
/// no call woke it, no timer is due), after sleeping until the next look
/// (a tick), the next timer or the rest's end, whichever comes first.
fn rest_a_look(shared: &Shared, left: std::time::Duration) -> bool {
    if shared
        .look(&shared.wake)
        .map_or(true, |r| r.contains(&true))
    {
        return false;
    }
    let timer = {
        let engine = Locked::new(&shared.engine);
        if !engine.serves_only_calls() || shared.loop_pollers.load(Ordering::SeqCst) > 0 {
            // A listener, a socket, a bridge, a loop or a waiting call came:
            // the device needs the driver again.
            shared.rest_until.store(0, Ordering::SeqCst);
            return false;
        }
        engine.timer_wait()
    };
    if timer == Some(Duration::ZERO) {
        return false;
    }
    let mut sleep = left.min(REST_LOOK);
    if let Some(t) = timer {
        sleep = sleep.min(t.into());
    }
    shared.driver_parked.store(true, Ordering::SeqCst);
    if !shared.leading.load(Ordering::SeqCst) {
        std::thread::park_timeout(sleep);
    }
    shared.driver_parked.store(false, Ordering::SeqCst);
    true
}

/// The driver thread: rounds, then sleep on the pcap and wake-up descriptors
/// until the next timer; aside while a leader polls. While an event loop
/// polls the device (and no bridge needs pumping), the driver leaves the
/// device to it and looks now and then (every lease after it had to help,
/// then backing off to [`LOOP_LOOK_MAX`]): a round only for due timers or
/// for frames a busy loop has left waiting.
fn drive(shared: &Shared) {
    let mut interests = Vec::new();
    let mut ready = Vec::new();
    // How often to look whether a polling loop needs help: every lease at
    // first, then less and less often while it never does (an idle loop
    // must not cost a thousand wake-ups a second), back to every lease
    // as soon as it does.
    let mut look_every = LEASE;
    // The error the last round failed with.
    let mut failing: Option<String> = None;
    while !shared.stop.load(Ordering::SeqCst) {
        step_aside(shared);
        let by_loop = shared.loop_pollers.load(Ordering::SeqCst) > 0
            && Locked::new(&shared.engine).bridges_idle();
        let help = by_loop && loop_needs_help(shared);
        if by_loop {
            look_every = if help {
                LEASE
            } else {
                (look_every * 2).min(LOOP_LOOK_MAX)
            };
        }
        if !by_loop || help {
            match round(shared) {
                Ok(_) => failing = None,
                Err(e) => {
                    // Said once: a device that stays broken (libpcap's, once
                    // its interface is deleted) fails every round alike.
                    let text = e.to_string();
                    if failing.as_ref() != Some(&text) {
                        log::error!("driver: {text}");
                    }
                    failing = Some(text);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        if shared.rest_left(std::time::Instant::now()).is_some() && !by_loop {
            // Resting: the looks in `step_aside` stand in for the device.
            if !shared.shut.load(Ordering::SeqCst) {
                shared.wake.drain();
            }
            continue;
        }
        interests.clear();
        if !by_loop {
            interests.push(Interest::readable(shared.pcap_fd));
        }
        interests.push(Interest::readable(shared.wake.fd()));
        let mut wait = {
            let mut engine = Locked::new(&shared.engine);
            send_handed_off(shared, &mut engine);
            engine.bridge_interests(&mut interests);
            engine.timer_wait()
        };
        if by_loop {
            let look = Duration::from(look_every);
            wait = Some(wait.map_or(look, |w| w.min(look)));
        }
        ready.clear();
        let _ = poll::wait_ready(&interests, wait, &mut ready);
        ready.retain(|&fd| fd != shared.pcap_fd && fd != shared.wake.fd());
        if !ready.is_empty() {
            Locked::new(&shared.engine).bridges.sockets_ready(&ready);
        }
        if !shared.shut.load(Ordering::SeqCst) {
            shared.wake.drain(); // once shut, it stays signalled for every waiter
        }
    }
}

/// With an event loop polling the device: whether a timer is due, or the
/// device holds frames and the loop has run no round for a lease.
fn loop_needs_help(shared: &Shared) -> bool {
    if Locked::new(&shared.engine).timer_wait() == Some(Duration::ZERO) {
        return true;
    }
    let now = shared.origin.elapsed().as_micros() as u64;
    let polled = shared.loop_polled.load(Ordering::SeqCst);
    let stale = now.saturating_sub(polled) > LEASE.as_micros() as u64;
    stale && shared.frames_waiting()
}
