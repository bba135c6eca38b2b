//! `mipfast.Connection` and `mipfast.Listener`: TCP with the manners of a
//! blocking `socket.socket`. Every wait releases the GIL and answers Ctrl-C.

use super::errors;
use super::stack::{blocking, timeout_arg};
use super::timeout::{RecvFlags, SocketTimeout};
use crate::phy::live::LiveStack;
use crate::socket::tcp::{self, Connection, Endpoint, Handle, Keepalive, State};
use crate::stack::Stack;
use crate::time::{Duration, Instant};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::{PyOSError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

const SOL_SOCKET: i32 = libc::SOL_SOCKET;
const IPPROTO_TCP: i32 = libc::IPPROTO_TCP;

/// The errno a connection error surfaces as; Python's OSError picks the
/// matching subclass (ConnectionRefusedError, ConnectionResetError, …).
pub fn tcp_error(e: tcp::Error) -> io::Error {
    io::Error::from_raw_os_error(match e {
        tcp::Error::Refused => libc::ECONNREFUSED,
        tcp::Error::Reset => libc::ECONNRESET,
        tcp::Error::TimedOut => libc::ETIMEDOUT,
        tcp::Error::BrokenPipe => libc::EPIPE,
        tcp::Error::NotConnected => libc::ENOTCONN,
    })
}

fn connection_closed() -> PyErr {
    PyOSError::new_err((libc::EBADF, "the connection is closed"))
}

fn ebadf() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}

/// A pointer into a Python buffer, used while the GIL is released. The
/// `PyBuffer` that produced it stays alive for the whole call, and an
/// exported buffer cannot be resized or freed meanwhile.
#[derive(Clone, Copy)]
pub(super) struct RawSlice {
    ptr: *mut u8,
    len: usize,
}
// SAFETY: see above; the pointer is only used during the call that owns the export.
unsafe impl Send for RawSlice {}

impl RawSlice {
    pub(super) fn of(buf: &PyBuffer<u8>, writable: bool) -> PyResult<Self> {
        if !buf.is_c_contiguous() {
            return Err(PyValueError::new_err("the buffer must be contiguous"));
        }
        if writable && buf.readonly() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "the buffer must be writable (bytearray, memoryview, …)",
            ));
        }
        Ok(RawSlice {
            ptr: buf.buf_ptr() as *mut u8,
            len: buf.len_bytes(),
        })
    }
    /// SAFETY: the export is alive (see the type's comment).
    fn get(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    /// SAFETY: as `get`, and the buffer was checked writable.
    #[allow(clippy::mut_from_ref)]
    pub(super) fn get_mut(&self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

fn endpoint_tuple(e: Endpoint) -> (String, u16) {
    (e.0.to_string(), e.1)
}

#[pyclass(name = "Connection", module = "mipfast._native", frozen, weakref)]
pub struct PyConnection {
    live: Arc<LiveStack>,
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
}

impl PyConnection {
    pub fn new(
        live: Arc<LiveStack>,
        handle: Handle,
        timeout: Option<Duration>,
    ) -> io::Result<Self> {
        let (local, remote) = live.act(|s, _| {
            s.tcp()
                .get(handle)
                .map(|c| (c.local(), c.remote()))
                .ok_or_else(ebadf)
        })?;
        Ok(PyConnection {
            live,
            handle,
            open: AtomicBool::new(true),
            timeout: SocketTimeout::new(timeout),
            local,
            remote,
            io_refs: AtomicUsize::new(0),
            close_requested: AtomicBool::new(false),
        })
    }

    fn check_open(&self) -> PyResult<()> {
        if self.open.load(Ordering::SeqCst) && !self.live.is_shut() {
            Ok(())
        } else {
            Err(connection_closed())
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout.get()
    }

    /// Retries `attempt` on this connection until it yields, within the
    /// connection's timeout (TimeoutError) or at once if non-blocking
    /// (BlockingIOError).
    fn wait<T: Send>(
        &self,
        py: Python<'_>,
        attempt: impl FnMut(&mut Connection) -> Option<io::Result<T>> + Send,
    ) -> PyResult<T> {
        self.wait_up_to(py, self.timeout(), attempt)
    }

    /// As [`PyConnection::wait`], within `timeout` instead of the connection's.
    fn wait_up_to<T: Send>(
        &self,
        py: Python<'_>,
        timeout: Option<Duration>,
        mut attempt: impl FnMut(&mut Connection) -> Option<io::Result<T>> + Send,
    ) -> PyResult<T> {
        self.check_open()?;
        let (live, h) = (self.live.clone(), self.handle);
        let result = blocking(py, move |interrupt| {
            live.wait_for(timeout, interrupt, |stack, _| {
                match stack.tcp_mut().get_mut(h) {
                    None => Some(Err(ebadf())),
                    Some(c) => attempt(c),
                }
            })
        })?;
        errors::waited(result, timeout)
    }

    /// MSG_WAITALL: fills `buf` unless the stream ends, fails or the wait
    /// runs out first; what was read by then is returned, never lost (the
    /// error, if any, comes with the next call).
    fn receive_all(&self, py: Python<'_>, flags: RecvFlags, buf: &mut [u8]) -> PyResult<usize> {
        if flags.peek {
            return Err(PyOSError::new_err((
                libc::EOPNOTSUPP,
                "MSG_WAITALL with MSG_PEEK is not supported",
            )));
        }
        let want = buf.len();
        let filled = AtomicUsize::new(0);
        let result = self.wait_up_to(py, flags.timeout(self.timeout()), |c| {
            let at = filled.load(Ordering::Relaxed);
            match c.recv(&mut buf[at..]) {
                Ok(Some(0)) => Some(Ok(at)), // end of stream
                Ok(Some(n)) if at + n == want => Some(Ok(want)),
                Ok(Some(n)) => {
                    filled.store(at + n, Ordering::Relaxed);
                    None
                }
                Ok(None) => None,
                Err(_) if at > 0 => Some(Ok(at)),
                Err(e) => Some(Err(tcp_error(e))),
            }
        });
        let at = filled.load(Ordering::Relaxed);
        match result {
            Err(e)
                if at > 0
                    && (e.is_instance_of::<PyTimeoutError>(py)
                        || e.is_instance_of::<pyo3::exceptions::PyBlockingIOError>(py)) =>
            {
                Ok(at)
            }
            other => other,
        }
    }

    fn with_conn<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Connection) -> T + Send,
    ) -> PyResult<T> {
        self.check_open()?;
        let (live, h) = (self.live.clone(), self.handle);
        py.detach(move || live.act(|s, _| s.tcp_mut().get_mut(h).map(f)))
            .ok_or_else(connection_closed)
    }

    fn release(&self, abort: bool) {
        if self.open.swap(false, Ordering::SeqCst) {
            let h = self.handle;
            self.live.act(|s, _| s.tcp_mut().release(h, abort));
        }
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
    /// while the send buffer is full).
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let buf = PyBuffer::<u8>::get(data)?;
        let raw = RawSlice::of(&buf, false)?;
        if raw.len == 0 {
            return Ok(0);
        }
        self.wait(py, move |c| match c.send(raw.get()) {
            Ok(0) => None,
            Ok(n) => Some(Ok(n)),
            Err(e) => Some(Err(tcp_error(e))),
        })
    }

    /// Queue all of `data`, blocking as needed.
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = PyBuffer::<u8>::get(data)?;
        let raw = RawSlice::of(&buf, false)?;
        let mut sent = 0;
        self.wait(py, move |c| {
            let data = raw.get();
            while sent < data.len() {
                match c.send(&data[sent..]) {
                    Ok(0) => return None,
                    Ok(n) => sent += n,
                    Err(e) => return Some(Err(tcp_error(e))),
                }
            }
            Some(Ok(()))
        })
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
        if bufsize < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv"));
        }
        if bufsize == 0 {
            return Ok(PyBytes::new(py, b""));
        }
        if flags.wait_all {
            let mut v = vec![0u8; bufsize as usize];
            let n = self.receive_all(py, flags, &mut v)?;
            return Ok(PyBytes::new(py, &v[..n]));
        }
        let data = self.wait_up_to(py, flags.timeout(self.timeout()), move |c| {
            let ready = c.recv_available().min(bufsize as usize);
            if ready > 0 {
                let mut v = vec![0u8; ready];
                let n = read(c, &mut v, flags.peek).ok().flatten().unwrap_or(0);
                v.truncate(n);
                return Some(Ok(v));
            }
            match c.recv(&mut []) {
                Ok(Some(_)) => Some(Ok(Vec::new())),
                Ok(None) => None,
                Err(e) => Some(Err(tcp_error(e))),
            }
        })?;
        Ok(PyBytes::new(py, &data))
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
        let buf = PyBuffer::<u8>::get(buffer)?;
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
        if flags.wait_all {
            return self.receive_all(py, flags, raw.get_mut());
        }
        self.wait_up_to(py, flags.timeout(self.timeout()), move |c| {
            match read(c, raw.get_mut(), flags.peek) {
                Ok(Some(n)) => Some(Ok(n)),
                Ok(None) => None,
                Err(e) => Some(Err(tcp_error(e))),
            }
        })
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
        r.map_err(|e| errors::to_py(tcp_error(e)))
    }

    /// Close gracefully (FIN after queued data); idempotent. With files
    /// from `makefile` still open, the close happens when the last one closes.
    fn close(&self, py: Python<'_>) {
        self.close_requested.store(true, Ordering::SeqCst);
        if self.io_refs.load(Ordering::SeqCst) == 0 {
            py.detach(|| self.release(false));
        }
    }

    /// Close at once with a reset, discarding queued data.
    fn abort(&self, py: Python<'_>) {
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

    fn getpeername(&self) -> PyResult<(String, u16)> {
        self.check_open()?;
        Ok(endpoint_tuple(self.remote))
    }

    fn getsockname(&self) -> PyResult<(String, u16)> {
        self.check_open()?;
        Ok(endpoint_tuple(self.local))
    }

    /// TCP_NODELAY, TCP_KEEPIDLE/KEEPINTVL/KEEPCNT, TCP_USER_TIMEOUT (ms),
    /// SO_KEEPALIVE and SO_SNDBUF; anything else is ENOPROTOOPT.
    fn setsockopt(
        &self,
        py: Python<'_>,
        level: i32,
        optname: i32,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
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
            (IPPROTO_TCP, libc::TCP_KEEPIDLE) => {
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
            _ => {
                return Err(PyOSError::new_err((
                    libc::ENOPROTOOPT,
                    "Protocol not available",
                )))
            }
        };
        self.with_conn(py, apply)
    }

    /// Reads back the options `setsockopt` accepts.
    fn getsockopt(&self, py: Python<'_>, level: i32, optname: i32) -> PyResult<i64> {
        let value = self.with_conn(py, move |c| {
            let cfg = c.config();
            let k = cfg.keepalive.unwrap_or_default();
            Some(match (level, optname) {
                (IPPROTO_TCP, libc::TCP_NODELAY) => cfg.nodelay as i64,
                (SOL_SOCKET, libc::SO_KEEPALIVE) => cfg.keepalive.is_some() as i64,
                (IPPROTO_TCP, libc::TCP_KEEPIDLE) => k.idle.secs() as i64,
                (IPPROTO_TCP, libc::TCP_KEEPINTVL) => k.interval.secs() as i64,
                (IPPROTO_TCP, libc::TCP_KEEPCNT) => k.probes as i64,
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
        let py = slf.py();
        let file = py
            .import("mipfast._io")?
            .getattr("makefile")?
            .call1((slf, mode, buffering, encoding, errors, newline))?;
        slf.get().io_refs.fetch_add(1, Ordering::SeqCst);
        Ok(file)
    }

    /// Called by `socket.SocketIO` when a file from `makefile` closes.
    fn _decref_socketios(&self, py: Python<'_>) {
        let left = self
            .io_refs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(1))
            })
            .map_or(0, |n| n.saturating_sub(1));
        if left == 0 && self.close_requested.load(Ordering::SeqCst) {
            py.detach(|| self.release(false));
        }
    }

    /// RFC 9293 state name, e.g. "ESTABLISHED".
    #[getter]
    fn state(&self, py: Python<'_>) -> PyResult<&'static str> {
        if !self.open.load(Ordering::SeqCst) {
            return Ok("CLOSED");
        }
        self.with_conn(py, |c| c.state().name())
    }

    #[getter]
    fn closed(&self) -> bool {
        !self.open.load(Ordering::SeqCst)
    }

    /// Always -1: there is no OS descriptor behind a mipfast connection.
    fn fileno(&self) -> i32 {
        -1
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
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
    live: Arc<LiveStack>,
    port: u16,
    ip: String,
    open: AtomicBool,
}

impl PyListener {
    pub fn new(live: Arc<LiveStack>, port: u16, ip: String) -> Self {
        PyListener {
            live,
            port,
            ip,
            open: AtomicBool::new(true),
        }
    }
    fn release(&self) {
        if self.open.swap(false, Ordering::SeqCst) {
            let port = self.port;
            self.live.act(|s, _| s.tcp_mut().unlisten(port));
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
    /// The next established connection and its peer's (ip, port); raises
    /// TimeoutError after `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn accept(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
    ) -> PyResult<(PyConnection, (String, u16))> {
        if !self.open.load(Ordering::SeqCst) || self.live.is_shut() {
            return Err(PyOSError::new_err((libc::EBADF, "the listener is closed")));
        }
        let t = timeout_arg(timeout)?;
        let (live, port) = (self.live.clone(), self.port);
        let handle = blocking(py, move |interrupt| {
            live.wait_for(t, interrupt, |s, _| s.tcp_mut().accept(port))
        })?;
        let Some(handle) = handle else {
            return Err(PyTimeoutError::new_err("timed out"));
        };
        let live = self.live.clone();
        let conn = py
            .detach(move || PyConnection::new(live, handle, None))
            .map_err(errors::to_py)?;
        let peer = endpoint_tuple(conn.remote);
        Ok((conn, peer))
    }

    /// Stop listening; connections not yet accepted are reset.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.release());
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

/// Opens a connection and waits for the handshake (Stack.connect).
pub fn connect(
    py: Python<'_>,
    live: Arc<LiveStack>,
    remote: Endpoint,
    timeout: Option<Duration>,
    source_port: Option<u16>,
) -> PyResult<PyConnection> {
    let l = live.clone();
    let handle = py
        .detach(move || {
            l.act(|s: &mut Stack, now: Instant| {
                let ip = s
                    .ipv4()
                    .ok_or_else(|| io::Error::other("no address yet (is the stack ready?)"))?;
                s.tcp_mut()
                    .connect(now, ip, remote, source_port)
                    .map_err(|e| {
                        io::Error::from_raw_os_error(match e {
                            tcp::ConnectError::AddressInUse => libc::EADDRINUSE,
                            tcp::ConnectError::NoPortAvailable => libc::EADDRNOTAVAIL,
                        })
                    })
            })
        })
        .map_err(|e| match e.raw_os_error() {
            Some(_) => errors::to_py(e),
            None => PyOSError::new_err((libc::ENETUNREACH, e.to_string())),
        })?;
    let l = live.clone();
    let outcome = blocking(py, move |interrupt| {
        l.wait_for(timeout, interrupt, |s, _| match s.tcp().get(handle) {
            None => Some(Err(ebadf())),
            Some(c) if c.state().is_synchronized() => Some(Ok(())),
            Some(c) => c.error().map(|e| Err(tcp_error(e))),
        })
    });
    let result = match outcome {
        Ok(Some(Ok(()))) => Ok(()),
        Ok(Some(Err(e))) => Err(errors::to_py(e)),
        Ok(None) => Err(PyTimeoutError::new_err("timed out")),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let l = live.clone();
        py.detach(move || l.act(|s, _| s.tcp_mut().release(handle, true)));
        return Err(e);
    }
    py.detach(move || PyConnection::new(live, handle, timeout))
        .map_err(errors::to_py)
}

/// Reads into `out`, or with `peek` copies without consuming (MSG_PEEK).
fn read(c: &mut Connection, out: &mut [u8], peek: bool) -> Result<Option<usize>, tcp::Error> {
    if peek {
        c.peek(out)
    } else {
        c.recv(out)
    }
}
