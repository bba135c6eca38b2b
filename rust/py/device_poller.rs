//! `DevicePoller`: an event loop's handle on its stack's device, so that
//! the loop itself wakes on frames and runs the stack's rounds (see
//! `LiveStack::loop_round`); `mipfast.asyncio` registers one per loop.

use super::errors;
use crate::runtime::LiveStack;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[pyclass(name = "DevicePoller", module = "mipfast._native", frozen)]
pub struct PyDevicePoller {
    live: Arc<LiveStack>,
    polling: AtomicBool,
}

impl PyDevicePoller {
    pub fn new(live: Arc<LiveStack>) -> Self {
        PyDevicePoller {
            live,
            polling: AtomicBool::new(false),
        }
    }
}

impl Drop for PyDevicePoller {
    fn drop(&mut self) {
        if self.polling.swap(false, Ordering::SeqCst) {
            self.live.loop_polls(false);
        }
    }
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

    /// The loop now watches the descriptor (`True`) or no longer does: the
    /// driver thread leaves the device to it meanwhile.
    fn polling(&self, py: Python<'_>, on: bool) {
        if self.polling.swap(on, Ordering::SeqCst) != on {
            py.detach(|| self.live.loop_polls(on));
        }
    }

    /// One round of the stack, for a readable descriptor; frames handled.
    fn round(&self, py: Python<'_>) -> PyResult<usize> {
        py.detach(|| self.live.loop_round()).map_err(errors::to_py)
    }
}
