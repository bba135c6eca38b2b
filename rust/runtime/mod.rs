//! The runtime: the engine behind its lock on a live device, the driver
//! thread, blocking socket calls with timeouts, and readiness descriptors
//! that `select` and event loops wait on. Knows nothing of Python: waits
//! take an `interrupt` hook through which the bindings honour Ctrl-C. The
//! descriptors themselves (wake-up, readiness) are `phy`'s, where the `unsafe`
//! system calls live.

pub mod bridge;
pub mod calls;
pub mod deferred_log;
pub mod errno;
mod handoff;
pub mod live;
pub mod ops;
pub mod readiness;
pub mod ready_set;
pub mod status;
mod wait;
mod waiters;
pub mod watch;

pub use live::{LiveConfig, LiveStack};
pub use ops::Op;
pub use readiness::Readiness;
pub use watch::Watched;
