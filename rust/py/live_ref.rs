//! A Python object's hold on a live stack. The last hold's drop stops the
//! driver thread and waits for it; from a Python object's deallocation that
//! happens with the GIL held, and a driver that is handing log records to
//! Python's `logging` (`runtime/deferred_log.rs`) waits for the GIL: it
//! would wait for us for ever. So the last hold lets go of the GIL first, as
//! every call into the engine does.

use crate::runtime::LiveStack;
use pyo3::prelude::*;
use std::ops::Deref;
use std::sync::Arc;

pub struct LiveRef(Option<Arc<LiveStack>>);

impl LiveRef {
    pub fn new(live: Arc<LiveStack>) -> Self {
        LiveRef(Some(live))
    }

    /// The hold itself, for a caller that lets go of it without the GIL.
    pub fn into_inner(mut self) -> Arc<LiveStack> {
        self.0.take().expect("held until dropped")
    }
}

impl Deref for LiveRef {
    type Target = Arc<LiveStack>;
    fn deref(&self) -> &Arc<LiveStack> {
        self.0.as_ref().expect("held until dropped")
    }
}

impl Drop for LiveRef {
    fn drop(&mut self) {
        let Some(live) = self.0.take() else {
            return;
        };
        // (Dropped by a Python object, so with the GIL; `attach` only finds it.)
        if Arc::strong_count(&live) == 1 {
            Python::attach(|py| py.detach(move || drop(live)));
        }
    }
}
