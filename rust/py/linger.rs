//! SO_LINGER as the stdlib's `socket` passes it: a `struct linger`
//! (`struct.pack("ii", onoff, seconds)`) in and out, as Linux reads and
//! writes it.

use super::call::option_struct;
use super::errors::os_error;
use crate::time::Duration;
use pyo3::prelude::*;

const SIZE: usize = 2 * std::mem::size_of::<libc::c_int>();

/// The linger a `setsockopt(SOL_SOCKET, SO_LINGER, value)` asks for: None
/// when off. An int, or fewer bytes than the struct, is EINVAL, as the
/// kernel's length check makes it. Seconds are taken unsigned, as Linux
/// takes them: a negative time lingers without end.
pub fn parse(value: &Bound<'_, PyAny>) -> PyResult<Option<Duration>> {
    let bytes = option_struct(value)?;
    if bytes.len() < SIZE {
        return Err(os_error(libc::EINVAL));
    }
    let int = |i: usize| libc::c_int::from_ne_bytes(bytes[i..i + 4].try_into().unwrap());
    let (onoff, seconds) = (int(0), int(4));
    Ok((onoff != 0).then(|| Duration::from_secs(u64::from(seconds as u32))))
}

/// The struct as `getsockopt(SOL_SOCKET, SO_LINGER, buflen)` returns it.
pub fn encode(linger: Option<Duration>) -> [u8; SIZE] {
    let (onoff, seconds) = match linger {
        Some(d) => (1, d.secs().min(u64::from(u32::MAX)) as u32 as libc::c_int),
        None => (0, 0),
    };
    let mut out = [0; SIZE];
    out[..4].copy_from_slice(&libc::c_int::to_ne_bytes(onoff));
    out[4..].copy_from_slice(&libc::c_int::to_ne_bytes(seconds));
    out
}
