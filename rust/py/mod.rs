//! The Python bindings: convert arguments, release the GIL around every
//! engine call, map errors to the stdlib's exceptions. Nothing more.

mod address;
mod call;
mod device_poller;
mod errors;
mod file_claim;
mod fresh_bytes;
mod linger;
mod live_ref;
mod multicast;
mod shared_bytes;
mod stack;
mod status;
mod tcp;
mod udp;

use crate::runtime::deferred_log::DeferredLog;
use pyo3::prelude::*;
use std::sync::OnceLock;

static LOG_RESET: OnceLock<pyo3_log::ResetHandle> = OnceLock::new();

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust `log` records go to Python's `logging`, under the logger "mipfast",
    // once the engine lock is let go (the handler may want the GIL or the stack).
    let logger = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::LoggersAndLevels)?;
    let handle = logger.reset_handle();
    if log::set_boxed_logger(Box::new(DeferredLog::new(logger))).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
        let _ = LOG_RESET.set(handle);
    }
    m.add_class::<stack::PyStack>()?;
    m.add_class::<tcp::PyConnection>()?;
    m.add_class::<tcp::PyListener>()?;
    m.add_class::<udp::PyUdpSocket>()?;
    m.add_class::<device_poller::PyDevicePoller>()?;
    m.add_class::<file_claim::PyFileClaim>()?;
    m.add_function(wrap_pyfunction!(interfaces, m)?)?;
    m.add_function(wrap_pyfunction!(reset_logging, m)?)?;
    m.add("DEFAULT_MAC", crate::iface::DEFAULT_MAC.to_string())?;
    Ok(())
}

/// Names of the interfaces a Stack can open.
#[pyfunction]
fn interfaces(py: Python<'_>) -> PyResult<Vec<String>> {
    py.detach(crate::phy::live_device::interfaces)
        .map_err(errors::to_py)
}

/// Makes Rust logging pick up changed Python logger levels (levels are cached).
#[pyfunction]
fn reset_logging() {
    if let Some(handle) = LOG_RESET.get() {
        handle.reset();
    }
}
