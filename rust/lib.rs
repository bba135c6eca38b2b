//! mipfast: a TCP/IP stack in user space, over pcap, driven from Python.
//!
//! Dependencies point one way: `wire` ← `iface`/`socket`/`service` ← `stack` ←
//! `phy` (I/O), `runtime` (threads, blocking, readiness) and `py` (bindings).
//! Only `phy`, `runtime` and `py` touch the OS or Python.

pub mod entropy;
pub mod iface;
pub mod phy;
pub mod runtime;
pub mod service;
pub mod socket;
pub mod stack;
pub mod time;
pub mod wire;

#[cfg(feature = "python")]
mod py;

#[cfg(feature = "python")]
#[pyo3::pymodule]
fn _native(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    py::register(m)
}
