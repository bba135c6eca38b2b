//! A socket's timeout with `socket.settimeout` semantics, shared by
//! Connection and UdpSocket: None blocks, zero is non-blocking.

use super::stack::timeout_arg;
use crate::time::Duration;
use pyo3::exceptions::PyValueError;
use pyo3::PyResult;
use std::sync::Mutex;

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
        Ok(RecvFlags {
            peek: flags & libc::MSG_PEEK != 0,
            wait_all: flags & libc::MSG_WAITALL != 0,
            dont_wait: flags & libc::MSG_DONTWAIT != 0,
        })
    }
    /// How long this call may block, given the socket's timeout.
    pub fn timeout(self, socket: Option<Duration>) -> Option<Duration> {
        if self.dont_wait {
            Some(Duration::ZERO)
        } else {
            socket
        }
    }
}
