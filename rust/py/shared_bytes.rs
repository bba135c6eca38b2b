//! A Python `bytes` lent to a connection's send buffer by reference (see
//! `socket/tcp/send_buffer.rs`): a large `sendall(bytes)` is then copied
//! once, by the kernel into the frame, instead of into the buffer first.
//! Only a `bytes` (or a `memoryview` of one) is taken: it cannot change while
//! we hold it. Any other buffer (a `bytearray`, a view of one) may, and is
//! copied.

use crate::socket::tcp::SharedText;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView};
use std::sync::Arc;

/// The object, and where its bytes are: read without the GIL, which the
/// object's immutability and our reference to it make sound. The reference
/// may be dropped on any thread: pyo3 then defers the decrement until a
/// thread next holds the GIL.
struct SharedBytes {
    _object: Py<PyBytes>,
    start: *const u8,
    len: usize,
}

// SAFETY: `start..start + len` is the immutable payload of `_object`, which
// this value keeps alive; reading it needs no lock and no GIL.
unsafe impl Send for SharedBytes {}
// SAFETY: as above; nothing is ever written through `start`.
unsafe impl Sync for SharedBytes {}

impl SharedText for SharedBytes {
    fn bytes(&self) -> &[u8] {
        // SAFETY: see the `Send` impl: a live, immutable region of `len` bytes.
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

/// `region` (the bytes of `data`'s buffer) held by reference, if `data` is a
/// `bytes`, or a `memoryview` of one, and the region long enough for that to pay.
pub fn shareable(data: &Bound<'_, PyAny>, region: &[u8]) -> Option<Arc<dyn SharedText>> {
    if region.len() < crate::socket::tcp::SHARE_MIN {
        return None;
    }
    let object = match data.cast_exact::<PyBytes>() {
        Ok(bytes) => bytes.clone(),
        Err(_) => data
            .cast_exact::<PyMemoryView>()
            .ok()?
            .getattr("obj")
            .ok()?
            .cast_exact::<PyBytes>()
            .ok()?
            .clone(),
    };
    let payload = object.as_bytes().as_ptr_range();
    let inside = payload.start <= region.as_ptr() && region.as_ptr_range().end <= payload.end;
    inside.then(|| {
        Arc::new(SharedBytes {
            start: region.as_ptr(),
            len: region.len(),
            _object: object.unbind(),
        }) as Arc<dyn SharedText>
    })
}
