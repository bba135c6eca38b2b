//! `DevicePoller`: an event loop's handle on its stack's device, so that
//! the loop itself wakes on frames and runs the stack's rounds (see
//! `LiveStack::loop_round`), and on its ready set, through which the loop
//! learns which of its sockets are ready without a descriptor per socket
//! (see `runtime/ready_set.rs`); `mipfast.asyncio` registers one per loop.

use super::errors;
use super::live_ref::LiveRef;
use super::tcp::{PyConnection, PyListener};
use crate::runtime::ready_set::Event;
use crate::runtime::{LiveStack, Watched};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

#[pyclass(name = "DevicePoller", module = "mipfast._native", frozen)]
pub struct PyDevicePoller {
    live: LiveRef,
    polling: AtomicBool,
    /// The ready set's number while polling (0: none).
    set: AtomicU64,
    set_fd: AtomicU64,
}

impl PyDevicePoller {
    pub fn new(live: Arc<LiveStack>) -> Self {
        PyDevicePoller {
            live: LiveRef::new(live),
            polling: AtomicBool::new(false),
            set: AtomicU64::new(0),
            set_fd: AtomicU64::new(u64::MAX),
        }
    }

    fn set(&self) -> Option<u64> {
        Some(self.set.load(Ordering::SeqCst)).filter(|&id| id != 0)
    }

    fn stop(&self) {
        let id = self.set.swap(0, Ordering::SeqCst);
        self.set_fd.store(u64::MAX, Ordering::SeqCst);
        if id != 0 {
            self.live.ready_set_close(id);
        }
        self.live.loop_polls(false);
    }
}

impl Drop for PyDevicePoller {
    /// A loop that ends (or lets go of its poller) without saying so: the
    /// driver has the device again. (The GIL is let go first: see
    /// `live_ref.rs`.)
    fn drop(&mut self) {
        if self.polling.swap(false, Ordering::SeqCst) {
            Python::attach(|py| py.detach(|| self.stop()));
        }
    }
}

/// The runtime's key for a `Connection` or a `Listener`.
fn watched(sock: &Bound<'_, PyAny>) -> PyResult<Watched> {
    if let Ok(conn) = sock.cast::<PyConnection>() {
        return Ok(conn.get().watched());
    }
    if let Ok(listener) = sock.cast::<PyListener>() {
        return Ok(listener.get().watched());
    }
    Err(PyTypeError::new_err(
        "expected a mipfast Connection or Listener",
    ))
}

#[pymethods]
impl PyDevicePoller {
    /// The device's descriptor (-1 once the stack is closed).
    fn fileno(&self) -> i32 {
        if self.live.is_shut() {
            -1
        } else {
            self.live.device_fd()
        }
    }

    /// The ready set's descriptor, readable while ready sockets wait to be
    /// collected (-1 unless polling).
    fn ready_fileno(&self) -> i32 {
        match self.set_fd.load(Ordering::SeqCst) {
            u64::MAX => -1,
            fd => fd as i32,
        }
    }

    /// The loop now watches the descriptors (`True`) or no longer does: the
    /// driver thread leaves the device to it meanwhile.
    fn polling(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        if self.polling.swap(on, Ordering::SeqCst) == on {
            return Ok(());
        }
        if !on {
            py.detach(|| self.stop());
            return Ok(());
        }
        match py.detach(|| self.live.ready_set_open()) {
            Ok((id, fd)) => {
                self.set_fd.store(fd as u64, Ordering::SeqCst);
                self.set.store(id, Ordering::SeqCst);
                py.detach(|| self.live.loop_polls(true));
                Ok(())
            }
            Err(e) => {
                self.polling.store(false, Ordering::SeqCst);
                Err(errors::to_py(e))
            }
        }
    }

    /// The loop waits for `sock` (a Connection or Listener) to be readable
    /// and/or writable, reported under `token`; neither forgets it.
    fn interest(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        token: u64,
        read: bool,
        write: bool,
    ) -> PyResult<()> {
        let key = watched(sock)?;
        if let Some(id) = self.set() {
            py.detach(|| self.live.ready_set_interest(id, key, token, read, write));
        }
        Ok(())
    }

    /// One round of the stack, for a readable device descriptor: the
    /// sockets it made ready, as (token, readable, writable). Once the
    /// stack is closed, every socket waited on (EBADF awaits them), then
    /// OSError.
    fn round(&self, py: Python<'_>) -> PyResult<Vec<Event>> {
        let mut ready = Vec::new();
        match py.detach(|| self.live.loop_round(self.set(), &mut ready)) {
            Err(e) if ready.is_empty() => Err(errors::to_py(e)),
            _ => Ok(ready),
        }
    }

    /// The sockets ready now, for a readable ready-set descriptor.
    fn collect(&self, py: Python<'_>) -> Vec<Event> {
        let mut ready = Vec::new();
        if let Some(id) = self.set() {
            py.detach(|| self.live.ready_set_collect(id, &mut ready));
        }
        ready
    }
}
