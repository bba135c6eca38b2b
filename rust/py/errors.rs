//! io::Error → the stdlib exception a Python user expects.

use crate::runtime::errno::{NoAddress, NotOurs};
use crate::service::dns::DnsError;
use pyo3::exceptions::{
    PyBlockingIOError, PyOSError, PyPermissionError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use std::io;

pub fn to_py(e: io::Error) -> PyErr {
    let msg = e.to_string();
    if let Some(errno) = e.raw_os_error() {
        // OSError(errno, …) becomes the matching subclass in Python
        // (ConnectionRefusedError, TimeoutError, …); the message is strerror's.
        let text = msg.split(" (os error").next().unwrap_or(&msg).to_string();
        return PyOSError::new_err((errno, text));
    }
    if e.get_ref().is_some_and(|inner| inner.is::<NoAddress>()) {
        return PyOSError::new_err((libc::ENETUNREACH, msg));
    }
    if e.get_ref().is_some_and(|inner| inner.is::<NotOurs>()) {
        let advice = "make a socket with mipfast.bridge.socket_for() before the fork, \
                      or open a Stack of its own in the child, with another MAC";
        return PyOSError::new_err((libc::EBADF, format!("{msg} ({advice})")));
    }
    match e.kind() {
        io::ErrorKind::NotFound => PyOSError::new_err((libc::ENODEV, msg)),
        io::ErrorKind::PermissionDenied => PyPermissionError::new_err((libc::EPERM, msg)),
        io::ErrorKind::InvalidInput => PyValueError::new_err(msg),
        io::ErrorKind::TimedOut => timed_out("timed out"),
        io::ErrorKind::WouldBlock => {
            PyBlockingIOError::new_err((libc::EAGAIN, "Resource temporarily unavailable"))
        }
        io::ErrorKind::Unsupported => PyOSError::new_err((libc::EOPNOTSUPP, msg)),
        io::ErrorKind::AddrInUse => PyOSError::new_err((libc::EADDRINUSE, msg)),
        _ => PyOSError::new_err(msg),
    }
}

/// OSError(`code`) with strerror's text, as the kernel's refusal of a call.
pub fn os_error(code: i32) -> PyErr {
    to_py(io::Error::from_raw_os_error(code))
}

/// The stdlib's `socket.timeout` with `msg` and no errno, as its sockets
/// raise it: an alias of TimeoutError from Python 3.10, but in 3.9 an
/// OSError subclass of its own, which urllib3, http.client and user code
/// catch by that name (a TimeoutError would pass them by).
pub fn timed_out(msg: impl Into<String>) -> PyErr {
    let msg = msg.into();
    Python::attach(|py| {
        let timeout = py.import("socket").and_then(|s| s.getattr("timeout"));
        match timeout.and_then(|cls| cls.call1((msg.as_str(),))) {
            Ok(err) => PyErr::from_value(err),
            Err(_) => PyTimeoutError::new_err(msg),
        }
    })
}

/// socket.gaierror with the code and message glibc's getaddrinfo gives.
pub fn gaierror(py: Python<'_>, host: &str, e: DnsError) -> PyErr {
    let (code, text) = match e {
        DnsError::NotFound | DnsError::InvalidName => ("EAI_NONAME", "Name or service not known"),
        DnsError::NoData => ("EAI_NODATA", "No address associated with hostname"),
        DnsError::Unreachable | DnsError::NoServers | DnsError::Busy => {
            ("EAI_AGAIN", "Temporary failure in name resolution")
        }
    };
    let make = || -> PyResult<PyErr> {
        let socket = py.import("socket")?;
        let code = socket
            .getattr(code)
            .or_else(|_| socket.getattr("EAI_NONAME"))?;
        let err = socket
            .getattr("gaierror")?
            .call1((code, format!("{text}: {host:?}")))?;
        Ok(PyErr::from_value(err))
    };
    make().unwrap_or_else(|e| e)
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

/// The error for a call on `live` from a process forked from its own (see
/// `LiveStack::owner`), if this is one: it comes before "closed", since to
/// such a child every stack is shut.
pub fn check_owner(live: &crate::runtime::LiveStack) -> PyResult<()> {
    live.check_owner().map_err(to_py)
}

/// An operation on a socket (or stack) that was closed.
pub fn closed(what: &str) -> PyErr {
    PyOSError::new_err((libc::EBADF, format!("the {what} is closed")))
}
