//! A reader's buffer lent to a connection while its `recv` waits: text that
//! arrives in order while the receive ring is empty is copied straight into
//! it, one copy fewer than through the ring (the kernel's receiver does the
//! same when a reader waits: `tcp_rcv_established` copies into the waiting
//! task's iovec before queueing). What arrives beyond the buffer, or out of
//! order, takes the ring as before.
//!
//! The engine sees the buffer only through [`LentBuffer`]; the memory behind
//! it (a Python buffer pinned for the call) is the bindings' to vouch for.
//!
//! The first time the buffer refuses bytes, the round taking frames is told
//! (`TcpSockets::take_lent_filled`) and stops early: the frames still in the
//! device then go into the reader's next buffer rather than through the
//! ring, a copy each spared (`Stack::poll`).

/// Where a waiting reader's bytes go.
pub trait LentBuffer: Send {
    /// The part not yet filled.
    fn spare(&mut self) -> &mut [u8];
    /// The first `n` bytes of [`LentBuffer::spare`] now hold text.
    fn advance(&mut self, n: usize);
}

/// The buffer lent, and how much went into it.
pub(crate) struct Lent {
    buffer: Box<dyn LentBuffer>,
    filled: usize,
    /// The buffer refused bytes: whatever comes next takes the ring.
    full: bool,
    /// `full` is yet to be reported ([`Lent::take_just_filled`]).
    unreported: bool,
}

impl Lent {
    pub fn new(buffer: Box<dyn LentBuffer>) -> Self {
        Lent {
            buffer,
            filled: 0,
            full: false,
            unreported: false,
        }
    }

    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Where the next text goes: the part not yet filled (none once the
    /// buffer refused bytes).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.full {
            return &mut [];
        }
        self.buffer.spare()
    }

    /// `n` bytes of a text of `wanted` went into [`Lent::spare`].
    pub fn commit(&mut self, n: usize, wanted: usize) {
        self.buffer.advance(n);
        self.filled += n;
        if n < wanted && !self.full {
            (self.full, self.unreported) = (true, true);
        }
    }

    /// True once, after the buffer first refused bytes.
    pub fn take_just_filled(&mut self) -> bool {
        std::mem::take(&mut self.unreported)
    }
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent")
            .field("filled", &self.filled)
            .field("full", &self.full)
            .finish()
    }
}
