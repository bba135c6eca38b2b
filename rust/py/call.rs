//! What every binding's call shares: running a wait without the GIL,
//! Python buffers seen from Rust, timeouts with `socket.settimeout`
//! semantics, `MSG_*` flags, and host names resolved through the stack.

use super::errors;
use crate::runtime::{calls::Interrupt, LiveStack, Op};
use crate::service::dns::{DnsError, Family};
use crate::socket::tcp::LentBuffer;
use crate::time::Duration;
use pyo3::exceptions::PyValueError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::io;
use std::net::IpAddr;
use std::sync::Mutex;

/// Runs `f` without the GIL; `f` gets a hook that turns Ctrl-C (or any
/// pending signal handler's exception) into an `Interrupted` error, and the
/// Python exception is raised once the GIL is back.
pub fn blocking<T: Send>(
    py: Python<'_>,
    f: impl FnOnce(Interrupt<'_>) -> io::Result<T> + Send,
) -> PyResult<T> {
    let mut pending: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut interrupt = || -> io::Result<()> {
            Python::attach(|py| py.check_signals()).map_err(|e| {
                pending = Some(e);
                io::Error::from(io::ErrorKind::Interrupted)
            })
        };
        f(&mut interrupt)
    });
    if let Some(e) = pending {
        return Err(e);
    }
    result.map_err(errors::to_py)
}

/// Runs `op` to its end within `timeout`: at once with the GIL kept if it
/// can complete now (see [`LiveStack::try_now`]), else waiting without it.
pub fn run_op<O: Op + Send>(
    py: Python<'_>,
    live: &LiveStack,
    mut op: O,
    timeout: Option<Duration>,
) -> PyResult<O::Output>
where
    O::Output: Send,
{
    if let Some(done) = live.try_now(&mut op) {
        return Ok(done);
    }
    blocking(py, move |interrupt| live.run(&mut op, timeout, interrupt))
}

/// A timeout argument in seconds: None blocks; negative or NaN is refused.
pub fn timeout_arg(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(
            "timeout must be a non-negative number or None",
        )),
        Some(t) => Ok(Some(Duration::from_micros(
            (t * 1e6).min(u64::MAX as f64 / 2.0) as u64,
        ))),
    }
}

/// The bytes of a `setsockopt` value that is a C struct (`struct linger`,
/// `ip_mreq`, …): an int is EINVAL, as the kernel finds it too short.
pub fn option_struct(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if value.is_instance_of::<pyo3::types::PyInt>() {
        return Err(errors::os_error(libc::EINVAL));
    }
    Ok(Readable::of(value)?.raw.get().to_vec())
}

/// Both families, in the order glibc's getaddrinfo asks for AF_UNSPEC.
pub const ANY_FAMILY: &[Family] = &[Family::Ipv6, Family::Ipv4];

/// The addresses of `host` of `families` (itself if an address of one of
/// them: an IPv6 one may carry a `%zone`); unknown names, and an address of
/// another family, raise socket.gaierror, a wait that runs out TimeoutError.
pub fn resolve_host(
    py: Python<'_>,
    live: &LiveStack,
    (host, families): (&str, &[Family]),
    timeout: Option<Duration>,
) -> PyResult<Vec<IpAddr>> {
    if let Some(ip) = super::address::ip_literal(host) {
        // No lookup, so no need to let go of the GIL.
        let family = match ip {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        };
        return match families.contains(&family) {
            true => Ok(vec![ip]),
            false => Err(errors::gaierror(py, host, DnsError::NotFound)),
        };
    }
    match blocking(py, |interrupt| {
        live.resolve((host, families), timeout, interrupt)
    })? {
        Ok(addresses) => Ok(addresses),
        Err(e) => Err(errors::gaierror(py, host, e)),
    }
}

/// A Python buffer export taken as plain bytes, whatever its items, as the
/// stdlib's `socket` takes one (`PyBUF_SIMPLE`): an `array('i')` or a
/// C-contiguous 2-D memoryview sends (or receives into) its raw bytes, and
/// an exporter that cannot give one contiguous run refuses (BufferError).
pub struct Export(Box<ffi::Py_buffer>);

impl Export {
    pub fn of(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        // SAFETY: a zeroed `Py_buffer` is what `PyObject_GetBuffer` fills
        // in; `obj` is alive (borrowed with the GIL held), and a view it
        // fills holds its own reference until `drop` releases it.
        let mut view = Box::new(unsafe { std::mem::zeroed::<ffi::Py_buffer>() });
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) } == -1 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Export(view))
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        // SAFETY: releases the view `of` filled, once, with the GIL.
        Python::attach(|_| unsafe { ffi::PyBuffer_Release(&mut *self.0) });
    }
}

/// A pointer into a Python buffer, used while the GIL is released. The
/// [`Export`] that produced it stays alive for the whole call, and an
/// exported buffer cannot be resized or freed meanwhile.
#[derive(Clone, Copy)]
pub struct RawSlice {
    ptr: *mut u8,
    pub len: usize,
}
// SAFETY: see above; the pointer is only used during the call that owns the export.
unsafe impl Send for RawSlice {}

impl RawSlice {
    pub fn of(export: &Export, writable: bool) -> PyResult<Self> {
        let view = &export.0;
        if writable && view.readonly != 0 {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "the buffer must be writable (bytearray, memoryview, …)",
            ));
        }
        Ok(RawSlice {
            ptr: view.buf.cast(),
            len: view.len as usize,
        })
    }
    /// A Rust buffer that outlives the call it is passed to.
    pub fn of_vec(v: &mut [u8]) -> Self {
        RawSlice {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }
    /// SAFETY: the export is alive (see the type's comment).
    pub fn get(&self) -> &[u8] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    /// SAFETY: as `get`, and the buffer was checked writable.
    #[allow(clippy::mut_from_ref)]
    pub fn get_mut(&self) -> &mut [u8] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// The bytes a send reads: a `bytes` object's own (immutable, and kept
/// alive by the caller for the whole call), or else a buffer export,
/// which costs an allocation and a release per call.
pub struct Readable {
    _export: Option<Export>,
    pub raw: RawSlice,
}

impl Readable {
    pub fn of(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = data.cast_exact::<PyBytes>() {
            let text = bytes.as_bytes();
            let raw = RawSlice {
                ptr: text.as_ptr() as *mut u8, // never written: `get` only
                len: text.len(),
            };
            return Ok(Readable { _export: None, raw });
        }
        let export = Export::of(data)?;
        let raw = RawSlice::of(&export, false)?;
        Ok(Readable {
            _export: Some(export),
            raw,
        })
    }
}

/// A socket's timeout with `socket.settimeout` semantics, shared by
/// Connection and UdpSocket: None blocks, zero is non-blocking.
#[derive(Debug)]
pub struct SocketTimeout(Mutex<Option<Duration>>);

impl SocketTimeout {
    pub fn new(t: Option<Duration>) -> Self {
        SocketTimeout(Mutex::new(t))
    }
    pub fn get(&self) -> Option<Duration> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn put(&self, t: Option<Duration>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }
    /// `settimeout(value)`: seconds, or None.
    pub fn set_seconds(&self, value: Option<f64>) -> PyResult<()> {
        let t =
            timeout_arg(value).map_err(|_| PyValueError::new_err("Timeout value out of range"))?;
        self.put(t);
        Ok(())
    }
    /// `gettimeout()`.
    pub fn seconds(&self) -> Option<f64> {
        self.get().map(|d| d.total_micros() as f64 / 1e6)
    }
    /// `setblocking(flag)`.
    pub fn set_blocking(&self, flag: bool) {
        self.put(if flag { None } else { Some(Duration::ZERO) });
    }
    /// `getblocking()`.
    pub fn blocking(&self) -> bool {
        self.get() != Some(Duration::ZERO)
    }
}

/// The `flags` of a receive call: MSG_PEEK (look, leave the data queued),
/// MSG_DONTWAIT (this call does not block) and MSG_WAITALL (a stream read
/// waits for the whole buffer; datagrams ignore it, as Linux does) are
/// honoured; any other flag is an OSError(EOPNOTSUPP) rather than silently
/// ignored, since a caller that meant to peek would lose data.
#[derive(Debug, Clone, Copy)]
pub struct RecvFlags {
    pub peek: bool,
    pub wait_all: bool,
    dont_wait: bool,
}

impl RecvFlags {
    pub fn parse(flags: i32) -> PyResult<Self> {
        let known = libc::MSG_PEEK | libc::MSG_DONTWAIT | libc::MSG_WAITALL;
        if flags & !known != 0 {
            return Err(pyo3::exceptions::PyOSError::new_err((
                libc::EOPNOTSUPP,
                format!("recv flags {:#x} are not supported", flags & !known),
            )));
        }
        if flags & libc::MSG_PEEK != 0 && flags & libc::MSG_WAITALL != 0 {
            return Err(pyo3::exceptions::PyOSError::new_err((
                libc::EOPNOTSUPP,
                "MSG_WAITALL with MSG_PEEK is not supported",
            )));
        }
        Ok(RecvFlags {
            peek: flags & libc::MSG_PEEK != 0,
            wait_all: flags & libc::MSG_WAITALL != 0,
            dont_wait: flags & libc::MSG_DONTWAIT != 0,
        })
    }
    /// How a stream read with these flags waits.
    pub fn mode(self) -> crate::runtime::ops::ReadMode {
        use crate::runtime::ops::ReadMode;
        if self.peek {
            ReadMode::Peek
        } else if self.wait_all {
            ReadMode::All
        } else {
            ReadMode::Some
        }
    }
    /// How long this call may block, given the socket's timeout.
    pub fn timeout(self, socket: Option<Duration>) -> Option<Duration> {
        call_timeout(self.dont_wait, socket)
    }
}

/// `MSG_DONTWAIT` makes one call non-blocking, whatever the socket's timeout.
fn call_timeout(dont_wait: bool, socket: Option<Duration>) -> Option<Duration> {
    if dont_wait {
        Some(Duration::ZERO)
    } else {
        socket
    }
}

/// `send`/`sendall` flags: `MSG_DONTWAIT`, and on Linux `MSG_NOSIGNAL` (this
/// stack never raises SIGPIPE: a broken connection is BrokenPipeError
/// already) and `MSG_MORE` (a hint to hold a small segment back, which it
/// may ignore); any other flag is OSError(EOPNOTSUPP), as for receives.
#[derive(Debug, Clone, Copy)]
pub struct SendFlags {
    dont_wait: bool,
}

impl SendFlags {
    pub fn parse(flags: i32) -> PyResult<Self> {
        #[cfg(target_os = "linux")]
        let known = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE;
        #[cfg(not(target_os = "linux"))]
        let known = libc::MSG_DONTWAIT;
        if flags & !known != 0 {
            return Err(pyo3::exceptions::PyOSError::new_err((
                libc::EOPNOTSUPP,
                format!("send flags {:#x} are not supported", flags & !known),
            )));
        }
        Ok(SendFlags {
            dont_wait: flags & libc::MSG_DONTWAIT != 0,
        })
    }
    /// How long this call may block, given the socket's timeout.
    pub fn timeout(self, socket: Option<Duration>) -> Option<Duration> {
        call_timeout(self.dont_wait, socket)
    }
}

/// A region of a Python buffer lent to a connection while a `recv_into`
/// waits (see `socket::tcp::posted`): the connection writes into it
/// through this pointer, under the engine lock.
struct LentRegion {
    start: *mut u8,
    len: usize,
    filled: usize,
}

// SAFETY: written only under the engine lock, by whichever thread runs the
// round, while the call that lent it waits (see `lend`'s contract).
unsafe impl Send for LentRegion {}

impl LentBuffer for LentRegion {
    fn spare(&mut self) -> &mut [u8] {
        // SAFETY: `filled <= len`, so this is inside the region, which
        // nobody else touches while lent (see `lend`).
        unsafe {
            std::slice::from_raw_parts_mut(self.start.add(self.filled), self.len - self.filled)
        }
    }
    fn advance(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.len);
    }
}

/// What a `recv_into` lends the connection ([`crate::runtime::ops::Lender`]).
///
/// # Safety
/// `region` stays valid, and nobody else reads or writes it, until the
/// connection gives the buffer back (`take_posted`) or is dropped.
pub(super) unsafe fn lend(region: &mut [u8]) -> Box<dyn LentBuffer> {
    Box::new(LentRegion {
        start: region.as_mut_ptr(),
        len: region.len(),
        filled: 0,
    })
}
