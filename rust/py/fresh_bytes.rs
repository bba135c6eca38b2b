//! A `bytes` written in place before anyone sees it, as CPython's own
//! `socket.recv` makes its result: allocated at the size asked, filled by
//! the stack (while the call waits, without the GIL: nothing else can see
//! it yet), then cut to what came. Built on `PyBytesWriter` (Python 3.15's
//! API, which pyo3 provides for the versions before).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::ptr::NonNull;

pub struct FreshBytes {
    writer: NonNull<ffi::compat::PyBytesWriter>,
    len: usize,
}

impl FreshBytes {
    /// `len` bytes to fill; MemoryError if they cannot be had.
    pub fn new(py: Python<'_>, len: usize) -> PyResult<Self> {
        let size =
            isize::try_from(len).map_err(|_| pyo3::exceptions::PyMemoryError::new_err(()))?;
        // SAFETY: the GIL is held (`py`); the result is checked.
        let writer = unsafe { ffi::compat::PyBytesWriter_Create(size) };
        NonNull::new(writer)
            .map(|writer| FreshBytes { writer, len })
            .ok_or_else(|| PyErr::fetch(py))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The first `len` bytes (those filled) as a `bytes`.
    pub fn finish(self, py: Python<'_>, len: usize) -> PyResult<Bound<'_, PyBytes>> {
        assert!(len <= self.len);
        let writer = std::mem::ManuallyDrop::new(self).writer;
        // SAFETY: the writer is ours, and finishing consumes it (success or
        // not); the GIL is held; `len` is within what it holds.
        let object =
            unsafe { ffi::compat::PyBytesWriter_FinishWithSize(writer.as_ptr(), len as isize) };
        // SAFETY: a new reference to a `bytes`, or null with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, object) }
            .map(|b| b.cast_into::<PyBytes>().expect("PyBytesWriter makes bytes"))
    }
}

impl AsMut<[u8]> for FreshBytes {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the writer holds `len` bytes at its data pointer, ours to
        // write until it is finished or discarded.
        unsafe {
            std::slice::from_raw_parts_mut(
                ffi::compat::PyBytesWriter_GetData(self.writer.as_ptr()).cast(),
                self.len,
            )
        }
    }
}

impl Drop for FreshBytes {
    fn drop(&mut self) {
        let writer = self.writer.as_ptr();
        // SAFETY: not finished (that forgets the value), so ours to discard,
        // with the GIL.
        Python::attach(|_| unsafe { ffi::compat::PyBytesWriter_Discard(writer) });
    }
}
