//! A `bytes` written in place before anyone sees it, as CPython's own
//! `socket.recv` makes its result: made uninitialised at the size asked
//! (`PyBytes_FromStringAndSize(NULL, n)`, in the stable ABI our wheels are
//! built for), filled by the stack (while the call waits, without the GIL:
//! nothing else can see it yet), then handed out. The stable ABI cannot
//! shrink a `bytes`, so one that came back short is copied into one of the
//! right size (CPython shrinks it in place).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

pub struct FreshBytes {
    object: Py<PyBytes>,
    data: *mut u8,
    len: usize,
}

impl FreshBytes {
    /// `len` bytes to fill; MemoryError if they cannot be had.
    pub fn new(py: Python<'_>, len: usize) -> PyResult<Self> {
        let size =
            isize::try_from(len).map_err(|_| pyo3::exceptions::PyMemoryError::new_err(()))?;
        // SAFETY: the GIL is held (`py`); a null source leaves the contents
        // for us to write; the result is checked.
        let object = unsafe {
            Bound::from_owned_ptr_or_err(py, ffi::PyBytes_FromStringAndSize(std::ptr::null(), size))
        }?;
        // SAFETY: `object` is a live `bytes`; its storage holds `len` bytes.
        let data = unsafe { ffi::PyBytes_AsString(object.as_ptr()) }.cast::<u8>();
        let object = object
            .cast_into::<PyBytes>()
            .expect("PyBytes_FromStringAndSize makes bytes");
        Ok(FreshBytes {
            object: object.unbind(),
            data,
            len,
        })
    }

    /// The first `len` bytes (those filled) as a `bytes`.
    pub fn finish(mut self, py: Python<'_>, len: usize) -> Bound<'_, PyBytes> {
        assert!(len <= self.len);
        if len == self.len {
            return self.object.into_bound(py);
        }
        PyBytes::new(py, &self.as_mut()[..len])
    }
}

impl AsMut<[u8]> for FreshBytes {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `data` holds `len` bytes of a `bytes` only we can reach.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }
}
