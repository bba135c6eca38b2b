//! A reader's buffer lent to a connection while its `recv` waits: text that
//! arrives in order while the receive ring is empty is copied straight into
//! it, one copy fewer than through the ring (the kernel's receiver does the
//! same when a reader waits: `tcp_rcv_established` copies into the waiting
//! task's iovec before queueing). What arrives beyond the buffer, or out of
//! order, takes the ring as before.
//!
//! The engine sees the buffer only through [`LentBuffer`]; the memory behind
//! it (a Python buffer pinned for the call) is the bindings' to vouch for.

/// Where a waiting reader's bytes go.
pub trait LentBuffer: Send {
    /// Appends as much of `data` as fits; returns how much.
    fn put(&mut self, data: &[u8]) -> usize;
}

/// The buffer lent, and how much went into it.
pub(crate) struct Lent {
    buffer: Box<dyn LentBuffer>,
    filled: usize,
}

impl Lent {
    pub fn new(buffer: Box<dyn LentBuffer>) -> Self {
        Lent { buffer, filled: 0 }
    }

    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = self.buffer.put(data);
        self.filled += n;
        n
    }
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent")
            .field("filled", &self.filled)
            .finish()
    }
}
