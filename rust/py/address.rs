//! An AF_INET address argument taken as the stdlib's `socket` takes it: a
//! `(host, port)` tuple whose host is a `str`, or `bytes`/`bytearray` (as
//! CPython's `idna_converter` takes them), and whose port is an integer.
//! What `socket` refuses is refused with the same exception type.

use pyo3::exceptions::{PyOverflowError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyString, PyTuple};
use std::net::IpAddr;

/// `(host, port)` as given: the host as text, the port not yet range-checked
/// (each call has its own range: 0 binds a free port, connects nowhere).
pub struct Address {
    pub host: String,
    pub port: i64,
}

impl Address {
    /// Any address, a free port: what an unbound socket binds.
    pub const ANY: Address = Address {
        host: String::new(),
        port: 0,
    };

    pub fn of(address: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tuple = address.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!(
                "AF_INET address must be tuple, not {}",
                type_name(address)
            ))
        })?;
        if tuple.len() != 2 {
            return Err(PyTypeError::new_err(
                "AF_INET address must be a pair (host, port)",
            ));
        }
        let host = host_text(&tuple.get_item(0)?)?;
        let port = tuple.get_item(1)?;
        let port: i64 = match port.extract() {
            Ok(p) => p,
            // An int too big for i64 is out of range, not the wrong type.
            Err(_) if port.is_instance_of::<pyo3::types::PyInt>() => i64::MAX,
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "'{}' object cannot be interpreted as an integer",
                    type_name(&port)
                )))
            }
        };
        Ok(Address { host, port })
    }

    /// An AF_INET6 address: `(host, port[, flowinfo[, scope_id]])`, as the
    /// stdlib takes it. Flow labels and zones are checked and not kept: the
    /// stack sends no flow labels, and has one link.
    /// A pair, or anything not a tuple, is read (and refused) as [`Address::of`] reads it.
    pub fn of_ipv6(address: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tuple = match address.cast::<PyTuple>() {
            Ok(tuple) if tuple.len() != 2 => tuple,
            _ => return Self::of(address),
        };
        if !(2..=4).contains(&tuple.len()) {
            return Err(PyTypeError::new_err(
                "AF_INET6 address must be a tuple (host, port[, flowinfo[, scopeid]])",
            ));
        }
        let pair = PyTuple::new(address.py(), [tuple.get_item(0)?, tuple.get_item(1)?])?;
        if let Ok(flowinfo) = tuple.get_item(2) {
            let flowinfo: i64 = flowinfo.extract()?;
            if !(0..1 << 20).contains(&flowinfo) {
                return Err(PyOverflowError::new_err("flowinfo must be 0-1048575."));
            }
        }
        if let Ok(scope_id) = tuple.get_item(3) {
            let _: u32 = scope_id.extract()?;
        }
        let address = Self::of(pair.as_any())?;
        // A longer tuple is an AF_INET6 address only: with an IPv4 host it
        // is what AF_INET refuses.
        if matches!(ip_literal(&address.host), Some(IpAddr::V4(_))) {
            return Err(PyTypeError::new_err(
                "AF_INET address must be a pair (host, port)",
            ));
        }
        Ok(address)
    }

    /// The port to connect to: 1-65535.
    pub fn nonzero_port(&self) -> PyResult<u16> {
        u16::try_from(self.port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| PyOverflowError::new_err("port must be 1-65535"))
    }

    /// Any port, 0-65535 (0 binds a free one).
    pub fn port(&self) -> PyResult<u16> {
        u16::try_from(self.port).map_err(|_| PyOverflowError::new_err("port must be 0-65535"))
    }
}

fn host_text(host: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = host.cast::<PyString>() {
        return Ok(s.to_str()?.to_owned());
    }
    let bytes = if let Ok(b) = host.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(b) = host.cast::<PyByteArray>() {
        b.to_vec()
    } else {
        return Err(PyTypeError::new_err(format!(
            "str, bytes or bytearray expected, not {}",
            type_name(host)
        )));
    };
    // Not text at all: kept as the replacement characters, which name no
    // host, so resolving it fails with socket.gaierror as the stdlib's does.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// An IPv4 or IPv6 address as Python writes one; an IPv6 zone (`%eth0`)
/// is allowed and ignored: the stack has one link.
pub fn ip_literal(host: &str) -> Option<IpAddr> {
    let address = host
        .split_once('%')
        .map_or(host, |(address, _zone)| address);
    address.parse().ok()
}

/// An address as the stdlib's socket gives one back: `(host, port)` for
/// IPv4, `(host, port, flowinfo, scope_id)` for IPv6.
pub fn address_tuple(py: Python<'_>, (ip, port): (IpAddr, u16)) -> PyResult<Bound<'_, PyTuple>> {
    match ip {
        IpAddr::V4(ip) => PyTuple::new(
            py,
            [
                ip.to_string().into_pyobject(py)?.into_any(),
                port.into_pyobject(py)?.into_any(),
            ],
        ),
        IpAddr::V6(ip) => {
            let zero = 0u32.into_pyobject(py)?.into_any();
            PyTuple::new(
                py,
                [
                    ip.to_string().into_pyobject(py)?.into_any(),
                    port.into_pyobject(py)?.into_any(),
                    zero.clone(),
                    zero,
                ],
            )
        }
    }
}
