//! io::Error → the stdlib exception a Python user expects.

use crate::time::Duration;
use pyo3::exceptions::{
    PyBlockingIOError, PyOSError, PyPermissionError, PyTimeoutError, PyValueError,
};
use pyo3::{PyErr, PyResult};
use std::io;

pub fn to_py(e: io::Error) -> PyErr {
    let msg = e.to_string();
    if let Some(errno) = e.raw_os_error() {
        // OSError(errno, …) becomes the matching subclass in Python
        // (ConnectionRefusedError, TimeoutError, …); the message is strerror's.
        let text = msg.split(" (os error").next().unwrap_or(&msg).to_string();
        return PyOSError::new_err((errno, text));
    }
    match e.kind() {
        io::ErrorKind::NotFound => PyOSError::new_err((libc::ENODEV, msg)),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err((libc::EPERM, msg)),
        io::ErrorKind::InvalidInput => PyValueError::new_err(msg),
        io::ErrorKind::TimedOut => PyTimeoutError::new_err(msg),
        _ => match e.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, msg)),
            None => PyOSError::new_err(msg),
        },
    }
}

/// A byte count from Python, lenient as the stdlib's `socket`: any int,
/// negative ones refused with its ValueError ("negative buffersize in recv").
pub fn buffer_size(n: isize, call: &str) -> PyResult<usize> {
    usize::try_from(n).map_err(|_| PyValueError::new_err(format!("negative buffersize in {call}")))
}

/// Linux's SOMAXCONN: `listen()` silently caps a larger backlog to it.
const SOMAXCONN: i64 = 4096;

/// A `listen()` backlog as the stdlib takes it: any int; negative means 0,
/// larger than SOMAXCONN means SOMAXCONN. (Linux admits one connection
/// even with a backlog of 0, and so does the listener.)
pub fn backlog(n: i64) -> usize {
    n.clamp(0, SOMAXCONN) as usize
}

pub fn value_error(e: impl ToString) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// An operation on a stack that was closed.
pub fn closed() -> PyErr {
    PyOSError::new_err((libc::EBADF, "the stack is closed"))
}

/// The end of a socket wait: its result, or BlockingIOError when the socket
/// is non-blocking (timeout zero), or TimeoutError when the timeout passed.
pub fn waited<T>(result: Option<io::Result<T>>, timeout: Option<Duration>) -> PyResult<T> {
    match result {
        Some(r) => r.map_err(to_py),
        None if timeout == Some(Duration::ZERO) => Err(PyBlockingIOError::new_err((
            libc::EAGAIN,
            "Resource temporarily unavailable",
        ))),
        None => Err(PyTimeoutError::new_err("timed out")),
    }
}
