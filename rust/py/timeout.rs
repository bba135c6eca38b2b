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
