//! The process an object serves: the one that made it, not a child forked
//! from that one since.
//!
//! A child of `fork()` holds a copy of every stack of its parent, on the
//! very same kernel objects: the packet socket, its receive ring (shared
//! memory), the trace file. The copy cannot run: the driver thread is not
//! in the child, and frames the child took from the ring or sent for its
//! copy of a connection would be lost to the parent or reset its peer.
//! So what touches those objects asks [`Owner::is_here`] first.
//!
//! A fork is counted by a `pthread_atfork` handler rather than noticed by
//! comparing `getpid()`: a check on every call then costs an atomic load,
//! not a system call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Forks since the handler was installed, as this process sees them: a
/// child starts from its parent's count plus one.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn forked_child() {
    // Only an atomic add: the child runs this before anything else, with
    // only the forking thread alive.
    FORKS.fetch_add(1, Ordering::SeqCst);
}

fn forks() -> u64 {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only adds to an atomic; failure
        // (ENOMEM) leaves forks uncounted, as before this existed.
        unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
    });
    FORKS.load(Ordering::SeqCst)
}

/// The process that made an object, taken at [`Owner::here`].
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    pid: u32,
    forks: u64,
}

impl Owner {
    pub fn here() -> Self {
        Owner {
            forks: forks(),
            pid: std::process::id(),
        }
    }

    /// Whether this is still the process that made it (no fork since).
    pub fn is_here(&self) -> bool {
        forks() == self.forks
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forks, runs `child` there and returns what it exited with.
    fn in_child(child: impl FnOnce() -> bool) -> bool {
        // SAFETY: the child only runs `child` (no locks taken, no
        // allocation needed) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = child();
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just made.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
    }

    #[test]
    fn an_owner_is_here_until_a_fork_and_not_in_the_child() {
        let owner = Owner::here();
        assert!(owner.is_here());
        assert_eq!(owner.pid(), std::process::id());
        assert!(in_child(|| !owner.is_here()));
        assert!(
            in_child(|| Owner::here().is_here()),
            "the child's own objects are its own"
        );
        assert!(owner.is_here(), "the parent is still the owner");
    }
}
