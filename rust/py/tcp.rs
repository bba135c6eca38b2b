//! `mipfast.Connection` and `mipfast.Listener`: TCP with the manners of a
//! blocking `socket.socket`. Every wait releases the GIL and answers Ctrl-C.

use super::address::address_tuple;
use super::call::{
    self, run_op, timeout_arg, Export, RawSlice, Readable, RecvFlags, SendFlags, SocketTimeout,
};
use super::device_poller::PyDevicePoller;
use super::errors;
use super::fresh_bytes::FreshBytes;
use super::linger;
use super::live_ref::LiveRef;
use super::shared_bytes::shareable;
use crate::phy::stream_fd::{self, StreamFd};
use crate::runtime::bridge::BridgeFate;
use crate::runtime::ops::{self, ReadMode};
use crate::runtime::{errno, LiveStack, Watched};
use crate::socket::tcp::{self, Connection, Endpoint, Handle, Keepalive, State};
use crate::time::Duration;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::os::fd::{IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const SOL_SOCKET: i32 = libc::SOL_SOCKET;
const IPPROTO_TCP: i32 = libc::IPPROTO_TCP;

fn connection_closed() -> PyErr {
    errors::closed("connection")
}

/// `socket.<name>` (AF_INET, SOCK_STREAM, …), so that code checking a
/// socket's `family` or `type` sees the stdlib's own enum values.
pub(super) fn socket_constant(py: Python<'_>, name: &str) -> PyResult<Py<PyAny>> {
    Ok(py.import("socket")?.getattr(name)?.unbind())
}

/// The keepalive idle time option as the platform's `socket` module names
/// it: TCP_KEEPIDLE, or TCP_KEEPALIVE on macOS. TCP_USER_TIMEOUT exists on
/// Linux only, so elsewhere it is ENOPROTOOPT, as there.
#[cfg(not(any(target_os = "macos", target_os = "ios")))]
const TCP_KEEPIDLE: i32 = libc::TCP_KEEPIDLE;
#[cfg(any(target_os = "macos", target_os = "ios"))]
const TCP_KEEPIDLE: i32 = libc::TCP_KEEPALIVE;

/// A call of `mipfast._io` that composes this connection's own calls.
fn io_helper<'py>(obj: &Bound<'py, PyConnection>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    obj.py().import("mipfast._io")?.getattr(name)
}

#[pyclass(name = "Connection", module = "mipfast._native", frozen, weakref)]
pub struct PyConnection {
    live: LiveRef,
    handle: Handle,
    open: AtomicBool,
    timeout: SocketTimeout,
    local: Endpoint,
    remote: Endpoint,
    /// File objects from `makefile` still open; `close()` waits for them
    /// (the stdlib's `_io_refs`), so http.client can close the socket
    /// while its response is still being read.
    io_refs: AtomicUsize,
    close_requested: AtomicBool,
    /// Set while the connection is bridged: how the bridge ended.
    bridge_fate: Mutex<Option<Arc<BridgeFate>>>,
    /// The SO_LINGER time in ms while it is on and not zero (`NO_LINGER`
    /// otherwise): `close()` waits up to it for the FIN exchange.
    linger_ms: AtomicU64,
}

const NO_LINGER: u64 = u64::MAX;

impl PyConnection {
    /// Wraps a connection the user now holds.
    pub fn open(
        py: Python<'_>,
        live: Arc<LiveStack>,
        handle: Handle,
        timeout: Option<Duration>,
    ) -> PyResult<Self> {
        let (local, remote) = py
            .detach(|| live.act(|s, _| ops::endpoints(s, handle)))
            .map_err(errors::to_py)?;
        Ok(PyConnection {
            live: LiveRef::new(live),
            handle,
            open: AtomicBool::new(true),
            timeout: SocketTimeout::new(timeout),
            local,
            remote,
            io_refs: AtomicUsize::new(0),
            close_requested: AtomicBool::new(false),
            bridge_fate: Mutex::new(None),
            linger_ms: AtomicU64::new(NO_LINGER),
        })
    }

    /// The connection as the runtime's readiness knows it.
    pub(super) fn watched(&self) -> Watched {
        Watched::Tcp(self.handle)
    }

    fn fate_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<BridgeFate>>> {
        self.bridge_fate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands the connection to a bridge to `socket` (see `bridge`).
    fn join(&self, py: Python<'_>, socket: StreamFd, hold: usize) -> PyResult<()> {
        if !self.open.swap(false, Ordering::SeqCst) {
            return Err(connection_closed());
        }
        let (live, h) = (&self.live, self.handle);
        let fate = py
            .detach(|| live.bridge(h, socket, hold))
            .map_err(errors::to_py)?;
        *self.fate_slot() = Some(fate);
        Ok(())
    }

    /// A socketpair made here, one end joined to the connection's bridge;
    /// the other, the application's.
    fn join_pair(&self, py: Python<'_>) -> PyResult<UnixStream> {
        self.check_open()?;
        let (socket, end) = StreamFd::pair().map_err(errors::to_py)?;
        self.join(py, socket, 0)?;
        Ok(end)
    }

    /// A direct read of the bridged connection into `buf` (see
    /// `_direct_recv_into`).
    fn direct_read(
        &self,
        py: Python<'_>,
        fd: i32,
        buf: RawSlice,
        timeout: Option<Duration>,
    ) -> PyResult<Option<usize>> {
        // (The engine lock is never waited for with the GIL held: its holder may log.)
        let (live, h) = (&self.live, self.handle);
        if buf.len == 0 || !self.bridged() || !py.detach(|| live.begin_direct_read(h, fd)) {
            return Ok(None);
        }
        // SAFETY: as in `receive`: the region outlives the call, and
        // `Receive` takes back what it lent before the call returns.
        let lend = |region: &mut [u8]| unsafe { call::lend(region) };
        let op = ops::Receive::new(self.handle, buf.get_mut(), ReadMode::Some).lending(&lend);
        let outcome = run_op(py, live, op, timeout);
        py.detach(|| live.end_direct_read(h));
        match outcome {
            Ok(Ok(n)) if n > 0 => Ok(Some(n)),
            // The end of stream, a failure, or the stack closed: the descriptor tells.
            Ok(_) => Ok(None),
            Err(_) if self.live.is_shut() => Ok(None),
            Err(e) => Err(e), // the timeout, or an exception from a signal handler
        }
    }

    /// `read` counted as an early read (see `_early_recv`); None, unread,
    /// once the connection has its bridge.
    fn early_read<T>(
        &self,
        py: Python<'_>,
        read: impl FnOnce(&Self) -> PyResult<T>,
    ) -> PyResult<Option<T>> {
        let (live, h) = (&self.live, self.handle);
        if !py.detach(|| live.begin_early_read(h)) {
            return Ok(None);
        }
        let outcome = read(self);
        py.detach(|| live.end_direct_read(h));
        outcome.map(Some)
    }

    /// Handed to a bridge, which has not given it back.
    fn bridged(&self) -> bool {
        self.fate_slot().is_some()
    }

    fn check_open(&self) -> PyResult<()> {
        errors::check_owner(&self.live)?;
        if self.open.load(Ordering::SeqCst) && !self.live.is_shut() {
            Ok(())
        } else {
            Err(connection_closed())
        }
    }

    /// Runs `op` within `timeout` (see [`run_op`]).
    fn run<O: ops::Op + Send>(
        &self,
        py: Python<'_>,
        op: O,
        timeout: Option<Duration>,
    ) -> PyResult<O::Output>
    where
        O::Output: Send,
    {
        self.check_open()?;
        run_op(py, &self.live, op, timeout)
    }

    /// A read into `buf` as `flags` say, within the socket's timeout.
    fn receive(&self, py: Python<'_>, flags: RecvFlags, buf: RawSlice) -> PyResult<usize> {
        // SAFETY: the region lies in a Python buffer whose export lives for
        // the whole call (`RawSlice`), and `Receive` takes what it lent back
        // before the call returns (its next attempt, `unpark` or `give_up`).
        let lend = |region: &mut [u8]| unsafe { call::lend(region) };
        let op = ops::Receive::new(self.handle, buf.get_mut(), flags.mode()).lending(&lend);
        self.run(py, op, flags.timeout(self.timeout.get()))?
            .map_err(errors::to_py)
    }

    fn with_conn<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Connection) -> T + Send,
    ) -> PyResult<T> {
        self.check_open()?;
        self.with_engine_conn(py, f)
    }

    /// As [`PyConnection::with_conn`], also once the connection is handed
    /// to a bridge: its socket options stay the bridged socket's to set, as
    /// a kernel socket's are (urllib3 sets `TCP_NODELAY` on every socket).
    fn with_options<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Connection) -> T + Send,
    ) -> PyResult<T> {
        if !self.bridged() || self.live.is_shut() {
            return self.with_conn(py, f);
        }
        self.with_engine_conn(py, f)
    }

    /// Runs `f` on the engine's connection, while it exists.
    fn with_engine_conn<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Connection) -> T + Send,
    ) -> PyResult<T> {
        let (live, h) = (&self.live, self.handle);
        py.detach(move || live.act(|s, _| s.tcp_mut().get_mut(h).map(f)))
            .ok_or_else(connection_closed)
    }

    fn release(&self, abort: bool) {
        if self.open.swap(false, Ordering::SeqCst) {
            self.live.release(self.handle, abort);
        }
    }

    /// An int option's value (see `getsockopt`).
    fn int_option(&self, py: Python<'_>, level: i32, optname: i32) -> PyResult<i64> {
        let value = self.with_options(py, move |c| {
            let cfg = c.config();
            let k = cfg.keepalive.unwrap_or_default();
            Some(match (level, optname) {
                (SOL_SOCKET, libc::SO_ERROR) => c
                    .error()
                    .and_then(|e| errno::tcp(e).raw_os_error())
                    .unwrap_or(0) as i64,
                (IPPROTO_TCP, libc::TCP_NODELAY) => cfg.nodelay as i64,
                (SOL_SOCKET, libc::SO_KEEPALIVE) => cfg.keepalive.is_some() as i64,
                (IPPROTO_TCP, TCP_KEEPIDLE) => k.idle.secs() as i64,
                (IPPROTO_TCP, libc::TCP_KEEPINTVL) => k.interval.secs() as i64,
                (IPPROTO_TCP, libc::TCP_KEEPCNT) => k.probes as i64,
                #[cfg(target_os = "linux")]
                (IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => {
                    cfg.user_timeout.map_or(0, |d| d.total_millis() as i64)
                }
                (SOL_SOCKET, libc::SO_SNDBUF) => cfg.tx_buffer as i64,
                (SOL_SOCKET, libc::SO_RCVBUF) => cfg.rx_buffer as i64,
                (IPPROTO_TCP, libc::TCP_MAXSEG) => c.mss() as i64,
                _ => return None,
            })
        })?;
        value.ok_or_else(|| PyOSError::new_err((libc::ENOPROTOOPT, "Protocol not available")))
    }

    /// The user's close: with SO_LINGER on for a time, the FIN goes and the
    /// call waits up to that time for the exchange to settle, as a kernel
    /// socket's does (Ctrl-C ends the wait, and the close goes on).
    fn close_now(&self, py: Python<'_>) -> PyResult<()> {
        let linger = self.linger_ms.load(Ordering::SeqCst);
        let mut waited = Ok(());
        if linger != NO_LINGER
            && self.open.load(Ordering::SeqCst)
            && self.live.in_owner()
            && !self.live.is_shut()
        {
            let h = self.handle;
            py.detach(|| {
                self.live
                    .act(|s, _| s.tcp_mut().get_mut(h).map(|c| c.close()))
            });
            let op = ops::Linger { handle: h };
            waited = match run_op(py, &self.live, op, Some(Duration::from_millis(linger))) {
                // The stack closed meanwhile: nothing left to wait for, and a
                // close does not fail for it. A signal's exception goes up.
                Err(e) if e.is_instance_of::<PyOSError>(py) => Ok(()),
                other => other,
            };
        }
        py.detach(|| self.release(false));
        waited
    }
}

impl Drop for PyConnection {
    /// A connection dropped without `close()` is closed gracefully, as a
    /// garbage-collected socket is.
    fn drop(&mut self) {
        if self.open.load(Ordering::SeqCst) {
            Python::attach(|py| py.detach(|| self.release(false)));
        }
    }
}

#[pymethods]
impl PyConnection {
    /// Queue some of `data`; returns how many bytes were taken (blocks
    /// while the send buffer is full). `flags`: see `SendFlags`.
    #[pyo3(signature = (data, flags=0))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<usize> {
        let timeout = SendFlags::parse(flags)?.timeout(self.timeout.get());
        let view = Readable::of(data)?;
        let raw = view.raw;
        if raw.len == 0 {
            return Ok(0);
        }
        let op = ops::Send::new(self.handle, raw.get(), false).sharing(shareable(data, raw.get()));
        self.run(py, op, timeout)?.map_err(errors::to_py)
    }

    /// Queue all of `data`, blocking as needed.
    #[pyo3(signature = (data, flags=0))]
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<()> {
        let timeout = SendFlags::parse(flags)?.timeout(self.timeout.get());
        let view = Readable::of(data)?;
        let raw = view.raw;
        let op = ops::Send::new(self.handle, raw.get(), true).sharing(shareable(data, raw.get()));
        self.run(py, op, timeout)?.map(drop).map_err(errors::to_py)
    }

    /// Up to `bufsize` bytes; b"" at end of stream.
    #[pyo3(signature = (bufsize, flags=0))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let flags = RecvFlags::parse(flags)?;
        let bufsize = errors::buffer_size(bufsize, "recv")?;
        if bufsize == 0 {
            return Ok(PyBytes::new(py, b""));
        }
        if flags.mode() == ReadMode::Some {
            // What is queued already: a `bytes` of its size, one copy.
            self.check_open()?;
            let mut op = ops::TakeQueued {
                handle: self.handle,
                max: bufsize,
                make: |n| FreshBytes::new(py, n).ok(),
            };
            if let Some(Some((bytes, n))) = self.live.try_now(&mut op) {
                return Ok(bytes.finish(py, n));
            }
        }
        // Else a `bytes` of `bufsize`, filled as `recv_into` fills its buffer
        // (lent to the connection while the call waits), cut to what came.
        let mut fresh = FreshBytes::new(py, bufsize)?;
        let n = self.receive(py, flags, RawSlice::of_vec(fresh.as_mut()))?;
        Ok(fresh.finish(py, n))
    }

    /// `recv` with the sender's address, which a connected stream socket
    /// gives as None, as the kernel's does.
    #[pyo3(signature = (bufsize, flags=0))]
    fn recvfrom<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<(Bound<'py, PyBytes>, Option<()>)> {
        Ok((self.recv(py, bufsize, flags)?, None))
    }

    /// `recv_into` with the sender's address (None, as for `recvfrom`).
    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recvfrom_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: i32,
    ) -> PyResult<(usize, Option<()>)> {
        Ok((self.recv_into(py, buffer, nbytes, flags)?, None))
    }

    /// `socket.sendmsg` without ancillary data (which TCP has none of):
    /// the buffers' bytes in order, as one `send`.
    #[pyo3(signature = (buffers, ancdata=None, flags=0, address=None))]
    fn sendmsg<'py>(
        slf: &Bound<'py, Self>,
        buffers: &Bound<'py, PyAny>,
        ancdata: Option<&Bound<'py, PyAny>>,
        flags: i32,
        address: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        io_helper(slf, "sendmsg")?.call1((slf, buffers, ancdata, flags, address))
    }

    /// `socket.recvmsg`: (data, [], msg flags, None); no ancillary data.
    #[pyo3(signature = (bufsize, ancbufsize=0, flags=0))]
    fn recvmsg<'py>(
        slf: &Bound<'py, Self>,
        bufsize: isize,
        ancbufsize: isize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyAny>> {
        io_helper(slf, "recvmsg")?.call1((slf, bufsize, ancbufsize, flags))
    }

    /// `socket.recvmsg_into`: one read scattered over `buffers` in order.
    #[pyo3(signature = (buffers, ancbufsize=0, flags=0))]
    fn recvmsg_into<'py>(
        slf: &Bound<'py, Self>,
        buffers: &Bound<'py, PyAny>,
        ancbufsize: isize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyAny>> {
        io_helper(slf, "recvmsg_into")?.call1((slf, buffers, ancbufsize, flags))
    }

    /// `socket.sendfile`: `count` bytes of a binary file from `offset` (to
    /// its end if None), read in blocks and sent; returns the bytes sent and
    /// leaves the file's position after them, as the stdlib does.
    #[pyo3(signature = (file, offset=0, count=None))]
    fn sendfile<'py>(
        slf: &Bound<'py, Self>,
        file: &Bound<'py, PyAny>,
        offset: i64,
        count: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        io_helper(slf, "sendfile")?.call1((slf, file, offset, count))
    }

    /// The socket's timeout, as `socket.socket.timeout` gives it.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout.seconds()
    }

    /// Read into a writable buffer; returns the byte count (0 at end of stream).
    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: i32,
    ) -> PyResult<usize> {
        let nbytes = errors::buffer_size(nbytes, "recv_into")?;
        let flags = RecvFlags::parse(flags)?;
        let buf = Export::of(buffer)?;
        let mut raw = RawSlice::of(&buf, true)?;
        if nbytes > raw.len {
            return Err(PyValueError::new_err(
                "nbytes is greater than the length of the buffer",
            ));
        }
        if nbytes > 0 {
            raw.len = nbytes;
        }
        if raw.len == 0 {
            return Ok(0);
        }
        self.receive(py, flags, raw)
    }

    /// socket.SHUT_RD, SHUT_WR or SHUT_RDWR.
    fn shutdown(&self, py: Python<'_>, how: i32) -> PyResult<()> {
        if !(0..=2).contains(&how) {
            return Err(PyOSError::new_err((libc::EINVAL, "invalid shutdown mode")));
        }
        let r = self.with_conn(py, move |c| {
            if !c.state().is_synchronized() && c.state() != State::Closed {
                return Err(tcp::Error::NotConnected);
            }
            if how != 1 {
                c.shutdown_read();
            }
            if how != 0 {
                c.shutdown_write();
            }
            Ok(())
        })?;
        r.map_err(|e| errors::to_py(errno::tcp(e)))
    }

    /// Close gracefully (FIN after queued data); idempotent. With files
    /// from `makefile` still open, the close happens when the last one closes.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.close_requested.store(true, Ordering::SeqCst);
        if self.io_refs.load(Ordering::SeqCst) == 0 {
            return self.close_now(py);
        }
        Ok(())
    }

    /// Hands the connection to the stack's driver thread, which moves the
    /// bytes between it and the kernel stream socket `fd` (duplicated: the
    /// caller may close its own) both ways, passing end of stream on, until
    /// both directions end. A reset on either side aborts the other. This
    /// object is closed from now on, but for `setsockopt`/`getsockopt`
    /// while the connection lives. How `mipfast.bridge` makes genuine
    /// `socket.socket` objects. The socket's first `hold` bytes are not the
    /// application's: they hold the other end unwritable until the
    /// connection can send (a non-blocking `connect()`), and are dropped.
    #[pyo3(signature = (fd, hold = 0))]
    fn bridge(&self, py: Python<'_>, fd: i32, hold: usize) -> PyResult<()> {
        self.check_open()?;
        let socket = StreamFd::dup_of(fd).map_err(errors::to_py)?;
        self.join(py, socket, hold)
    }

    /// As `bridge`, to a socketpair made here, whose other end then takes
    /// the place of descriptor `fd` (as `dup2` would; close-on-exec, and
    /// non-blocking if asked: the mode of the socket object that owns `fd`).
    /// How a patched socket's `connect()` becomes the bridge's end, in one
    /// call and the fewest system calls.
    fn bridge_onto(&self, py: Python<'_>, fd: i32, nonblocking: bool) -> PyResult<()> {
        let end = self.join_pair(py)?;
        stream_fd::put_in_place(end, fd, nonblocking).map_err(errors::to_py)
    }

    /// As `bridge_onto`, the socketpair's other end returned as a new
    /// descriptor (close-on-exec, blocking) for the caller to own: what
    /// `socket.socket(fileno=...)` takes.
    fn bridge_end(&self, py: Python<'_>) -> PyResult<i32> {
        Ok(OwnedFd::from(self.join_pair(py)?).into_raw_fd())
    }

    /// A bridged socket's own `recv_into`, straight from the connection into
    /// `buffer` when nothing waits in the socket (descriptor `fd`, the
    /// socket's) or in the bridge: the byte count, within `timeout`. None
    /// where the socket must read its descriptor instead: that test fails,
    /// or the stream ended or failed (the descriptor then says so, as it
    /// would have). The bridge carries everything else on as before.
    #[pyo3(signature = (fd, buffer, nbytes = 0, timeout = None))]
    fn _direct_recv_into(
        &self,
        py: Python<'_>,
        fd: i32,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        timeout: Option<f64>,
    ) -> PyResult<Option<usize>> {
        let t = timeout_arg(timeout)?;
        let nbytes = errors::buffer_size(nbytes, "recv_into")?;
        // A buffer that cannot be exported whole, or read-only: the descriptor's call refuses it.
        let Ok(buf) = Export::of(buffer) else {
            return Ok(None);
        };
        let Ok(mut raw) = RawSlice::of(&buf, true) else {
            return Ok(None);
        };
        if nbytes > raw.len {
            return Ok(None); // the descriptor's call raises the stdlib's ValueError
        }
        if nbytes > 0 {
            raw.len = nbytes;
        }
        self.direct_read(py, fd, raw, t)
    }

    /// A plain `recv` by the patch's socket that will hold this connection's
    /// bridge, made only when its descriptor is needed: as `recv`, counted so
    /// that a bridge made meanwhile by another thread holds back what this
    /// read waits for (`Bridges::begin_early_read`). None, nothing read,
    /// once the bridge exists: the socket then reads as a bridged one.
    fn _early_recv<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.early_read(py, |c| c.recv(py, bufsize, 0))
    }

    /// `_early_recv` into a buffer, as `recv_into`.
    #[pyo3(signature = (buffer, nbytes = 0))]
    fn _early_recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
    ) -> PyResult<Option<usize>> {
        self.early_read(py, |c| c.recv_into(py, buffer, nbytes, 0))
    }

    /// `_direct_recv_into` into a new `bytes` of at most `bufsize`.
    #[pyo3(signature = (fd, bufsize, timeout = None))]
    fn _direct_recv<'py>(
        &self,
        py: Python<'py>,
        fd: i32,
        bufsize: isize,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let t = timeout_arg(timeout)?;
        let bufsize = errors::buffer_size(bufsize, "recv")?;
        let mut fresh = FreshBytes::new(py, bufsize)?;
        let n = self.direct_read(py, fd, RawSlice::of_vec(fresh.as_mut()), t)?;
        Ok(n.map(|n| fresh.finish(py, n)))
    }

    /// A bridged socket's own `sendall` (`all`) or `send`, straight onto the
    /// connection when every byte written to the socket before has reached
    /// it: True and the count sent, within `timeout`. (False, 0) where the
    /// socket must write to its descriptor instead: that test fails, or the
    /// connection failed (the descriptor then says so).
    #[pyo3(signature = (data, all, timeout = None))]
    fn _direct_send(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        all: bool,
        timeout: Option<f64>,
    ) -> PyResult<(bool, usize)> {
        let t = timeout_arg(timeout)?;
        let Ok(view) = Readable::of(data) else {
            return Ok((false, 0)); // the descriptor's call takes or refuses it
        };
        let raw = view.raw;
        // (The engine lock is never waited for with the GIL held: its holder may log.)
        let (live, h) = (&self.live, self.handle);
        if raw.len == 0 || !self.bridged() || !py.detach(|| live.may_send_direct(h)) {
            return Ok((false, 0));
        }
        let op = ops::Send::new(self.handle, raw.get(), all).sharing(shareable(data, raw.get()));
        match run_op(py, &self.live, op, t) {
            Ok(Ok(n)) => Ok((true, n)),
            // A failure, or the stack closed: the descriptor tells.
            Ok(Err(_)) => Ok((false, 0)),
            Err(_) if self.live.is_shut() => Ok((false, 0)),
            Err(e) => Err(e), // the timeout, or an exception from a signal handler
        }
    }

    /// A bridged socket shut for reading (`shutdown(SHUT_RD)`): the
    /// connection's reads end too, so that a direct read waiting in another
    /// thread returns, as a kernel socket's `recv` does (its socket's
    /// descriptor, shut already, then says end of stream).
    fn _shutdown_read_bridged(&self, py: Python<'_>) {
        if self.bridged() && !self.live.is_shut() {
            let _ = self.with_engine_conn(py, |c| c.shutdown_read()); // gone already: nothing waits
        }
    }

    /// Ends the bridge and makes this object the connection's again, open:
    /// returns the bytes the bridge read from the connection and has not
    /// written to its socket (they follow what the socket holds), or None
    /// where the bridge goes on (see `Bridges::release`). For an event loop
    /// that adopts a bridged socket with a transport of ours.
    fn _unbridge<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if !self.bridged() {
            return None;
        }
        let (live, h) = (&self.live, self.handle);
        let pending = py.detach(|| live.unbridge(h))?;
        *self.fate_slot() = None;
        self.open.store(true, Ordering::SeqCst);
        Some(PyBytes::new(py, &pending))
    }

    /// The errno of the failure that ended this connection's bridge (a
    /// reset, a timeout), None while it runs or after a clean end: what
    /// the bridged socket raises at its end of stream.
    fn _bridge_failure(&self) -> Option<i32> {
        self.fate_slot().as_ref().and_then(|f| f.failure())
    }

    /// Close at once with a reset, discarding queued data; on a bridged
    /// connection, the bridge ends too (its socket reads end of stream).
    fn abort(&self, py: Python<'_>) {
        if self.bridged() {
            let (live, h) = (&self.live, self.handle);
            py.detach(|| live.abort_bridge(h));
            return;
        }
        py.detach(|| self.release(true));
    }

    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        self.timeout.set_seconds(value)
    }

    fn gettimeout(&self) -> Option<f64> {
        self.timeout.seconds()
    }

    fn setblocking(&self, flag: bool) {
        self.timeout.set_blocking(flag)
    }

    fn getblocking(&self) -> bool {
        self.timeout.blocking()
    }

    fn getpeername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.check_open()?;
        address_tuple(py, self.remote)
    }

    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.check_open()?;
        address_tuple(py, self.local)
    }

    /// TCP_NODELAY, TCP_KEEPIDLE/KEEPINTVL/KEEPCNT, TCP_USER_TIMEOUT (ms),
    /// SO_KEEPALIVE, SO_SNDBUF, SO_RCVBUF and SO_LINGER (a `struct linger`,
    /// `struct.pack("ii", onoff, seconds)`); anything else is ENOPROTOOPT.
    fn setsockopt(
        &self,
        py: Python<'_>,
        level: i32,
        optname: i32,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if (level, optname) == (SOL_SOCKET, libc::SO_LINGER) {
            let linger = linger::parse(value)?;
            self.with_options(py, move |c| c.config_mut().linger = linger)?;
            let ms = match linger {
                Some(d) if d > Duration::ZERO => d.total_millis(),
                _ => NO_LINGER,
            };
            self.linger_ms.store(ms, Ordering::SeqCst);
            return Ok(());
        }
        let v: i64 = value
            .extract()
            .map_err(|_| PyValueError::new_err("option values must be integers"))?;
        let secs = |v: i64| -> PyResult<Duration> {
            if v < 1 {
                return Err(PyOSError::new_err((libc::EINVAL, "Invalid argument")));
            }
            Ok(Duration::from_secs(v as u64))
        };
        let opt = (level, optname);
        let apply: Box<dyn FnOnce(&mut Connection) + Send> = match opt {
            (IPPROTO_TCP, libc::TCP_NODELAY) => Box::new(move |c| c.set_nodelay(v != 0)),
            (SOL_SOCKET, libc::SO_KEEPALIVE) => Box::new(move |c| {
                let k = &mut c.config_mut().keepalive;
                *k = if v != 0 {
                    Some(k.unwrap_or_default())
                } else {
                    None
                };
            }),
            (IPPROTO_TCP, TCP_KEEPIDLE) => {
                let d = secs(v)?;
                Box::new(move |c| keepalive_mut(c).idle = d)
            }
            (IPPROTO_TCP, libc::TCP_KEEPINTVL) => {
                let d = secs(v)?;
                Box::new(move |c| keepalive_mut(c).interval = d)
            }
            (IPPROTO_TCP, libc::TCP_KEEPCNT) => {
                if v < 1 {
                    return Err(PyOSError::new_err((libc::EINVAL, "Invalid argument")));
                }
                Box::new(move |c| keepalive_mut(c).probes = v as u32)
            }
            #[cfg(target_os = "linux")]
            (IPPROTO_TCP, libc::TCP_USER_TIMEOUT) => {
                if v < 0 {
                    return Err(PyOSError::new_err((libc::EINVAL, "Invalid argument")));
                }
                Box::new(move |c| {
                    c.config_mut().user_timeout = (v > 0).then(|| Duration::from_millis(v as u64))
                })
            }
            (SOL_SOCKET, libc::SO_SNDBUF) => {
                if v < 1 {
                    return Err(PyOSError::new_err((libc::EINVAL, "Invalid argument")));
                }
                Box::new(move |c| c.config_mut().tx_buffer = (v as usize).max(4096))
            }
            (SOL_SOCKET, libc::SO_RCVBUF) => {
                if v < 1 {
                    return Err(PyOSError::new_err((libc::EINVAL, "Invalid argument")));
                }
                Box::new(move |c| c.set_rx_buffer((v as usize).max(4096)))
            }
            _ => {
                return Err(PyOSError::new_err((
                    libc::ENOPROTOOPT,
                    "Protocol not available",
                )))
            }
        };
        self.with_options(py, apply)
    }

    /// Reads back the options `setsockopt` accepts: an int, or with
    /// `buflen` the option's bytes (`struct linger` for SO_LINGER, whose int
    /// alone is its on/off), as `socket.getsockopt` returns them.
    #[pyo3(signature = (level, optname, buflen=None))]
    fn getsockopt<'py>(
        &self,
        py: Python<'py>,
        level: i32,
        optname: i32,
        buflen: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let size = match buflen {
            None => None,
            Some(n @ 1..=1024) => Some(n as usize),
            Some(_) => return Err(PyOSError::new_err("getsockopt buflen out of range")),
        };
        if (level, optname) == (SOL_SOCKET, libc::SO_LINGER) {
            let raw = linger::encode(self.with_options(py, |c| c.config().linger)?);
            return Ok(match size {
                None => (raw[..4] != [0; 4])
                    .into_pyobject(py)?
                    .to_owned()
                    .into_any(),
                Some(n) => PyBytes::new(py, &raw[..n.min(raw.len())]).into_any(),
            });
        }
        let value = self.int_option(py, level, optname)?;
        Ok(match size {
            None => value.into_pyobject(py)?.into_any(),
            Some(n) => {
                let raw = (value as libc::c_int).to_ne_bytes();
                PyBytes::new(py, &raw[..n.min(raw.len())]).into_any()
            }
        })
    }

    /// A file object over the connection, as `socket.makefile` gives.
    #[pyo3(signature = (mode="r", buffering=None, *, encoding=None, errors=None, newline=None))]
    fn makefile<'py>(
        slf: &Bound<'py, Self>,
        mode: &str,
        buffering: Option<isize>,
        encoding: Option<&str>,
        errors: Option<&str>,
        newline: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let file =
            io_helper(slf, "makefile")?.call1((slf, mode, buffering, encoding, errors, newline))?;
        slf.get().io_refs.fetch_add(1, Ordering::SeqCst);
        Ok(file)
    }

    /// TLS over this connection with the stdlib's `ssl` (a
    /// `mipfast.tls.TlsConnection`); the default context verifies.
    #[pyo3(signature = (context=None, *, server_side=false, server_hostname=None))]
    fn wrap_tls<'py>(
        slf: &Bound<'py, Self>,
        context: Option<Bound<'py, PyAny>>,
        server_side: bool,
        server_hostname: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("server_side", server_side)?;
        kwargs.set_item("server_hostname", server_hostname)?;
        py.import("mipfast.tls")?
            .getattr("wrap")?
            .call((slf, context), Some(&kwargs))
    }

    /// Called by `socket.SocketIO` when a file from `makefile` closes.
    fn _decref_socketios(&self, py: Python<'_>) -> PyResult<()> {
        let left = self
            .io_refs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .map_or(0, |n| n.saturating_sub(1));
        if left == 0 && self.close_requested.load(Ordering::SeqCst) {
            return self.close_now(py);
        }
        Ok(())
    }

    /// RFC 9293 state name, e.g. "ESTABLISHED".
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<&'static str> {
        if self.bridged() {
            // The bridge's while it lives: a handshake under way shows.
            return Ok(self
                .with_options(py, |c| c.state().name())
                .unwrap_or("CLOSED"));
        }
        if !self.open.load(Ordering::SeqCst) {
            return Ok("CLOSED");
        }
        self.with_conn(py, |c| c.state().name())
    }

    #[getter]
    fn closed(&self) -> bool {
        !self.open.load(Ordering::SeqCst)
    }

    /// A descriptor that `select`, `selectors` and asyncio can wait on:
    /// readable when `recv` would not block (data, end of stream, an
    /// error), writable when `send` would not. Only for waiting: never read
    /// or write it. Starts the driver thread; closed with the connection,
    /// after which this is -1, as for a closed `socket.socket`.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        if self.check_open().is_err() {
            return Ok(-1);
        }
        let key = Watched::Tcp(self.handle);
        py.detach(|| self.live.watch(key)).map_err(errors::to_py)
    }

    /// The stack's device, for an event loop to poll (`mipfast.asyncio`).
    fn _device_poller(&self) -> PyDevicePoller {
        PyDevicePoller::new(self.live.clone())
    }

    /// socket.AF_INET, or socket.AF_INET6 for a connection over IPv6.
    #[getter]
    fn family(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let name = if self.remote.0.is_ipv6() {
            "AF_INET6"
        } else {
            "AF_INET"
        };
        socket_constant(py, name)
    }

    /// socket.SOCK_STREAM.
    #[getter]
    fn r#type(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        socket_constant(py, "SOCK_STREAM")
    }

    /// socket.IPPROTO_TCP.
    #[getter]
    fn proto(&self) -> i32 {
        libc::IPPROTO_TCP
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = self.state(py).unwrap_or("CLOSED");
        format!(
            "<mipfast.Connection {}:{} -> {}:{} {state}>",
            self.local.0, self.local.1, self.remote.0, self.remote.1
        )
    }
}

fn keepalive_mut(c: &mut Connection) -> &mut Keepalive {
    c.config_mut()
        .keepalive
        .get_or_insert_with(Keepalive::default)
}

#[pyclass(name = "Listener", module = "mipfast._native", frozen, weakref)]
pub struct PyListener {
    live: LiveRef,
    port: u16,
    ip: String,
    open: AtomicBool,
    /// `settimeout`: what `accept()` waits when given no timeout of its own.
    timeout: SocketTimeout,
}

impl PyListener {
    pub fn new(live: Arc<LiveStack>, port: u16, ip: String) -> Self {
        PyListener {
            live: LiveRef::new(live),
            port,
            ip,
            open: AtomicBool::new(true),
            timeout: SocketTimeout::new(None),
        }
    }
    pub(super) fn watched(&self) -> Watched {
        Watched::Listener(self.port)
    }

    fn release(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            self.live.unlisten(self.port);
        }
    }
}

impl Drop for PyListener {
    fn drop(&mut self) {
        if self.open.load(Ordering::SeqCst) {
            Python::attach(|py| py.detach(|| self.release()));
        }
    }
}

#[pymethods]
impl PyListener {
    /// The next established connection and its peer's (ip, port), or
    /// (ip, port, flowinfo, scope_id) for a peer over IPv6; raises
    /// TimeoutError after `timeout` seconds (default: the listener's own,
    /// see `settimeout`; BlockingIOError when non-blocking).
    #[pyo3(signature = (timeout=None))]
    fn accept(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<(PyConnection, Py<PyTuple>)> {
        errors::check_owner(&self.live)?;
        if !self.open.load(Ordering::SeqCst) || self.live.is_shut() {
            return Err(PyOSError::new_err((libc::EBADF, "the listener is closed")));
        }
        let t = match timeout {
            Some(_) => timeout_arg(timeout)?,
            None => self.timeout.get(),
        };
        let handle =
            run_op(py, &self.live, ops::Accept { port: self.port }, t)?.map_err(errors::to_py)?;
        let conn = PyConnection::open(py, self.live.clone(), handle, None)?;
        let peer = address_tuple(py, conn.remote)?.unbind();
        Ok((conn, peer))
    }

    /// A descriptor that is readable while a connection waits for
    /// `accept()` (see `Connection.fileno`).
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        if !self.open.load(Ordering::SeqCst) || self.live.is_shut() {
            return Ok(-1);
        }
        let key = Watched::Listener(self.port);
        py.detach(|| self.live.watch(key)).map_err(errors::to_py)
    }

    /// The stack's device, for an event loop to poll (`mipfast.asyncio`).
    fn _device_poller(&self) -> PyDevicePoller {
        PyDevicePoller::new(self.live.clone())
    }

    /// Stop listening; connections not yet accepted are reset.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.release());
    }

    /// As `socket.settimeout`: seconds `accept()` waits, None to block.
    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        self.timeout.set_seconds(value)
    }

    fn gettimeout(&self) -> Option<f64> {
        self.timeout.seconds()
    }

    fn setblocking(&self, flag: bool) {
        self.timeout.set_blocking(flag)
    }

    fn getblocking(&self) -> bool {
        self.timeout.blocking()
    }

    #[getter]
    fn port(&self) -> u16 {
        self.port
    }

    #[getter]
    fn closed(&self) -> bool {
        !self.open.load(Ordering::SeqCst)
    }

    fn getsockname(&self) -> (String, u16) {
        (self.ip.clone(), self.port)
    }

    /// socket.AF_INET.
    #[getter]
    fn family(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        socket_constant(py, "AF_INET")
    }

    /// socket.SOCK_STREAM.
    #[getter]
    fn r#type(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        socket_constant(py, "SOCK_STREAM")
    }

    /// socket.IPPROTO_TCP.
    #[getter]
    fn proto(&self) -> i32 {
        libc::IPPROTO_TCP
    }

    /// The listener's timeout, as `socket.socket.timeout` gives it.
    #[getter]
    fn timeout(&self) -> Option<f64> {
        self.timeout.seconds()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { "closed" } else { "listening" };
        format!("<mipfast.Listener {}:{} {state}>", self.ip, self.port)
    }
}
