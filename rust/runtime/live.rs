//! A stack running on a live interface: the engine behind one lock, a real
//! clock, the pcap descriptor and a wake-up eventfd to sleep on, and an
//! optional driver thread. Knows nothing of Python: blocking calls take an
//! `interrupt` hook that the bindings use to honour Ctrl-C.

use super::bridge::Bridges;
use super::watch::{Watched, Watches};
use crate::iface::DropReason;
use crate::phy::capture::{self, CaptureInfo, CaptureRing};
use crate::phy::fault::{FaultConfig, FaultStats};
use crate::phy::faulty::Faulty;
use crate::phy::live_device::{DeviceKind, LiveDevice, RxLosses};
use crate::phy::poll::{self, wait_readable, Interest};
use crate::phy::stream_fd::StreamFd;
use crate::phy::trace::{TraceWriter, Traced};
use crate::phy::wake::WakeFd;
use crate::phy::Device;
use crate::socket::tcp::Handle;
use crate::stack::{Stack, StackConfig};
use crate::time::{Duration, Instant};
use std::io;
use std::os::unix::io::RawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Longest sleep between two checks of the interrupt hook.
const INTERRUPT_SLICE: Duration = Duration::from_millis(100);

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
    device: Traced<Faulty<LiveDevice>>,
    origin: std::time::Instant,
    /// Readiness descriptors handed out, kept current after every change.
    watches: Watches,
    /// Connections joined to kernel sockets, pumped every round.
    bridges: Bridges,
    /// The device's losses already counted in the stack's drops.
    losses_seen: RxLosses,
}

impl Engine {
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as i64)
    }

    /// Handles every pending frame and due timer; returns frames received
    /// plus one if a timer was due (so that callers see progress).
    fn run_once(&mut self) -> io::Result<usize> {
        let now = self.now();
        let timer_due = self.stack.poll_at().is_some_and(|t| t <= now);
        let n = self.stack.poll(now, &mut self.device)?;
        if n > 0 {
            self.count_device_losses();
        }
        let pumped = !self.bridges.is_empty() && self.bridges.pump(&mut self.stack) > 0;
        if pumped {
            // Send what the bridges queued and the windows they opened.
            self.stack.dispatch(now);
            self.stack.flush(now, &mut self.device);
        }
        if let Some(trace) = &mut self.device.trace {
            trace.flush()?;
        }
        if n > 0 || timer_due || pumped {
            self.watches.update(&mut self.stack);
        }
        Ok(n + timer_due as usize + pumped as usize)
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

    /// Time until the engine's next timer, if any.
    fn timer_wait(&self) -> Option<Duration> {
        self.stack.poll_at().map(|t| t.saturating_since(self.now()))
    }

    /// What the driver sleeps on besides the device and its wake-up.
    fn bridge_interests(&self, out: &mut Vec<Interest>) {
        self.bridges.interests(&self.stack, out);
    }
}

struct Shared {
    engine: Mutex<Engine>,
    /// Signalled after every round that made progress.
    progress: Condvar,
    /// Counts rounds that made progress, so waiters can tell a real wake-up.
    rounds: AtomicU64,
    pcap_fd: RawFd,
    wake: WakeFd,
    stop: AtomicBool,
    /// Set by [`LiveStack::shut`]: every later user call fails.
    shut: AtomicBool,
    busy_poll: Duration,
    /// Callers blocked in [`LiveStack::poll`] on the driver's progress.
    waiters: AtomicUsize,
}

/// A [`Stack`] on a live interface.
pub struct LiveStack {
    shared: Arc<Shared>,
    driver: Mutex<Option<JoinHandle<()>>>,
}

impl LiveStack {
    pub fn open(config: LiveConfig) -> io::Result<Self> {
        let pcap = LiveDevice::open(
            &config.interface,
            config.bpf.as_deref(),
            config.segment_offload,
            config.device,
        )?;
        let pcap_fd = pcap.fd();
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
        let mut engine = Engine {
            stack: Stack::new(stack_config, Instant::ZERO),
            device,
            origin,
            watches: Watches::default(),
            bridges: Bridges::default(),
            losses_seen: RxLosses::default(),
        };
        engine.run_once()?; // the first DISCOVER or gratuitous ARP goes out now
        Ok(LiveStack {
            shared: Arc::new(Shared {
                engine: Mutex::new(engine),
                progress: Condvar::new(),
                rounds: AtomicU64::new(0),
                pcap_fd,
                wake,
                stop: AtomicBool::new(false),
                shut: AtomicBool::new(false),
                busy_poll: config.busy_poll,
                waiters: AtomicUsize::new(0),
            }),
            driver: Mutex::new(None),
        })
    }

    /// Locks the engine. Callers from Python must not hold the GIL here.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        lock(&self.shared.engine)
    }

    pub fn is_driven(&self) -> bool {
        lock(&self.driver).is_some()
    }

    /// Starts the driver thread; a no-op if it runs already.
    pub fn start(&self) -> io::Result<()> {
        let mut driver = lock(&self.driver);
        if driver.is_none() {
            self.shared.stop.store(false, Ordering::SeqCst);
            let shared = self.shared.clone();
            let handle = std::thread::Builder::new()
                .name("mipfast-driver".into())
                .spawn(move || drive(&shared))?;
            *driver = Some(handle);
        }
        Ok(())
    }

    /// Stops the driver thread and waits for it.
    pub fn stop(&self) {
        let handle = lock(&self.driver).take();
        if let Some(handle) = handle {
            self.shared.stop.store(true, Ordering::SeqCst);
            self.shared.wake.wake();
            let _ = handle.join();
        }
    }

    /// Stops the driver and refuses further user calls; connections that
    /// still hold the stack see it closed.
    /// Every thread blocked in a call on this stack returns at once with
    /// EBADF: condition-variable waiters are woken (under the lock, so none
    /// misses it), and the wake-up descriptor stays signalled for those
    /// sleeping in `poll()` or about to.
    pub fn shut(&self) {
        self.shared.shut.store(true, Ordering::SeqCst);
        {
            let mut engine = self.engine();
            let Engine {
                stack,
                watches,
                bridges,
                ..
            } = &mut *engine;
            bridges.shut(stack);
            watches.shut();
            self.shared.progress.notify_all();
        }
        self.shared.wake.wake();
        self.stop();
    }

    /// EBADF once the stack is shut: what a blocked call returns then.
    fn check_open(&self) -> io::Result<()> {
        if self.is_shut() {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        Ok(())
    }
    pub fn is_shut(&self) -> bool {
        self.shared.shut.load(Ordering::SeqCst)
    }

    /// Wakes the driver so that it acts on new work at once.
    pub fn notify(&self) {
        self.shared.wake.wake();
    }

    /// Handles everything pending; if nothing was, blocks until a frame, a
    /// timer or `timeout`. Returns how much was handled (0 on timeout).
    pub fn poll(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
    ) -> io::Result<usize> {
        let start = std::time::Instant::now();
        let left = |start: std::time::Instant| {
            timeout.map(|t| {
                t.total_micros()
                    .saturating_sub(start.elapsed().as_micros() as u64)
            })
        };
        if self.is_driven() {
            let seen = self.shared.rounds.load(Ordering::SeqCst);
            loop {
                let slice = left(start).map_or(INTERRUPT_SLICE, |l| {
                    Duration::from_micros(l).min(INTERRUPT_SLICE)
                });
                let guard = self.engine();
                self.check_open()?;
                self.shared.waiters.fetch_add(1, Ordering::SeqCst);
                let _ = self.shared.progress.wait_timeout(guard, slice.into());
                self.shared.waiters.fetch_sub(1, Ordering::SeqCst);
                self.check_open()?;
                interrupt()?;
                if self.shared.rounds.load(Ordering::SeqCst) != seen {
                    return Ok(1);
                }
                if left(start) == Some(0) {
                    return Ok(0);
                }
            }
        }
        self.check_open()?;
        let seen = self.shared.rounds.load(Ordering::SeqCst);
        let n = self.round()?;
        if n > 0 || timeout == Some(Duration::ZERO) {
            return Ok(n);
        }
        loop {
            self.check_open()?;
            let timer = self.engine().timer_wait();
            let mut wait = INTERRUPT_SLICE;
            for bound in [timer, left(start).map(Duration::from_micros)]
                .into_iter()
                .flatten()
            {
                wait = wait.min(bound);
            }
            match wait_readable(&[self.shared.pcap_fd, self.shared.wake.fd()], Some(wait)) {
                Err(e) if e.kind() != io::ErrorKind::Interrupted => return Err(e),
                _ => {}
            }
            self.check_open()?;
            self.shared.wake.drain();
            interrupt()?;
            let n = self.round()?;
            if n > 0 || left(start) == Some(0) {
                return Ok(n);
            }
            // Another thread's round took the frames this one waited for
            // (an ACK that frees send-buffer room): let the caller look again.
            if self.shared.rounds.load(Ordering::SeqCst) != seen {
                return Ok(0);
            }
        }
    }

    /// One locked round; spins for the busy-poll window after activity.
    fn round(&self) -> io::Result<usize> {
        round(&self.shared)
    }

    /// Runs a user call on the engine, then sends what it queued (TCP data,
    /// ACKs, window updates) from this thread, without waiting for a round.
    pub fn act<T>(&self, f: impl FnOnce(&mut Stack, Instant) -> T) -> T {
        let mut engine = self.engine();
        let now = engine.now();
        let value = f(&mut engine.stack, now);
        let Engine {
            stack,
            device,
            watches,
            ..
        } = &mut *engine;
        stack.dispatch(now);
        stack.flush(now, device); // send failures are counted, not returned
        watches.update(stack); // cheap when nothing is watched
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
    /// `socket`: the driver moves the bytes both ways from now on and
    /// releases the connection when both directions have ended.
    pub fn bridge(&self, handle: Handle, socket: StreamFd) -> io::Result<()> {
        if let Err(e) = self.check_open().and_then(|()| self.start()) {
            self.release(handle, true);
            return Err(e);
        }
        self.unwatch(Watched::Tcp(handle)); // the connection is no longer the user's
        self.engine().bridges.add(handle, socket);
        self.notify();
        Ok(())
    }

    /// Bridges still moving bytes.
    pub fn bridges(&self) -> usize {
        self.engine().bridges.len()
    }

    /// Closes `key`'s readiness descriptor, if it has one.
    pub fn unwatch(&self, key: Watched) {
        self.engine().watches.remove(key);
    }

    /// Repeats `attempt` (as [`LiveStack::act`]) until it yields a value,
    /// making progress in between; `None` once `timeout` has passed.
    pub fn wait_for<T>(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
        mut attempt: impl FnMut(&mut Stack, Instant) -> Option<T>,
    ) -> io::Result<Option<T>> {
        let start = std::time::Instant::now();
        loop {
            self.check_open()?;
            if let Some(v) = self.act(&mut attempt) {
                return Ok(Some(v));
            }
            let left = timeout.map(|t| {
                t.total_micros()
                    .saturating_sub(start.elapsed().as_micros() as u64)
            });
            if left == Some(0) {
                return Ok(None);
            }
            self.poll(left.map(Duration::from_micros), interrupt)?;
        }
    }

    /// Blocks until `ready(stack)` holds or `timeout` passes; true if it holds.
    pub fn wait_until(
        &self,
        timeout: Option<Duration>,
        interrupt: &mut dyn FnMut() -> io::Result<()>,
        ready: &dyn Fn(&Stack) -> bool,
    ) -> io::Result<bool> {
        let start = std::time::Instant::now();
        loop {
            self.check_open()?;
            if ready(&self.engine().stack) {
                return Ok(true);
            }
            let left = timeout.map(|t| {
                t.total_micros()
                    .saturating_sub(start.elapsed().as_micros() as u64)
            });
            if left == Some(0) {
                return Ok(false);
            }
            self.poll(left.map(Duration::from_micros), interrupt)?;
        }
    }
}

impl Drop for LiveStack {
    fn drop(&mut self) {
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not make every later call panic too.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn round(shared: &Shared) -> io::Result<usize> {
    let mut total = lock(&shared.engine).run_once()?;
    if total > 0 {
        shared.rounds.fetch_add(1, Ordering::SeqCst);
        shared.progress.notify_all();
        if shared.busy_poll > Duration::ZERO {
            total += spin(shared)?;
        }
    }
    Ok(total)
}

/// Busy-polling after activity, for latency: for `busy_poll` after the last
/// frame, and for as long as a caller is blocked waiting on the stack. The
/// spinner takes the engine lock only when the device has frames or the
/// wake-up descriptor is signalled, and yields its core between looks, so
/// that the Python threads it serves keep running on a small machine.
fn spin(shared: &Shared) -> io::Result<usize> {
    let window = std::time::Duration::from(shared.busy_poll);
    let mut until = std::time::Instant::now() + window;
    let fds = [shared.pcap_fd, shared.wake.fd()];
    let mut total = 0;
    let going = || !shared.stop.load(Ordering::SeqCst) && !shared.shut.load(Ordering::SeqCst);
    while going() {
        let now = std::time::Instant::now();
        if shared.waiters.load(Ordering::SeqCst) > 0 {
            until = until.max(now + window);
        } else if now >= until {
            break;
        }
        if !wait_readable(&fds, Some(Duration::ZERO)).unwrap_or(true) {
            std::thread::yield_now();
            continue;
        }
        let n = lock(&shared.engine).run_once()?;
        if n > 0 {
            total += n;
            until = std::time::Instant::now() + window;
            shared.rounds.fetch_add(1, Ordering::SeqCst);
            shared.progress.notify_all();
        } else if going() {
            shared.wake.drain(); // a call's wake-up, its work done by this round
        }
    }
    Ok(total)
}

/// The driver thread: rounds, then sleep on the pcap and wake-up descriptors
/// until the next timer.
fn drive(shared: &Shared) {
    let mut interests = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        if let Err(e) = round(shared) {
            log::error!("driver: {e}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        interests.clear();
        interests.push(Interest::readable(shared.pcap_fd));
        interests.push(Interest::readable(shared.wake.fd()));
        let wait = {
            let engine = lock(&shared.engine);
            engine.bridge_interests(&mut interests);
            engine.timer_wait()
        };
        let _ = poll::wait(&interests, wait);
        if !shared.shut.load(Ordering::SeqCst) {
            shared.wake.drain(); // once shut, it stays signalled for every waiter
        }
    }
}
