//! Devices: where frames come from and go to. Only this module (and `py`)
//! does I/O.

pub mod capture;
mod device;
#[cfg(linux_fast_path)]
pub mod edge_set;
pub mod fault;
pub mod faulty;
pub mod file_claim;
pub mod interface_claim;
pub mod link;
#[cfg(linux_fast_path)]
mod link_watch;
pub mod live_device;
pub mod owner;
#[cfg(linux_fast_path)]
mod packet_path;
#[cfg(linux_fast_path)]
mod packet_ring;
#[cfg(linux_fast_path)]
mod packet_rx;
#[cfg(linux_fast_path)]
mod packet_socket;
#[cfg(linux_fast_path)]
mod packet_tx;
pub mod poll;
#[cfg(linux_fast_path)]
mod queued_text;
pub mod ready_fd;
pub mod shared_clock;
mod sockopt;
pub mod stream_fd;
pub mod timer_slack;
pub mod trace;
#[cfg(linux_fast_path)]
mod vnet;
pub mod wake;

pub use crate::iface::RxChecksum;
pub use device::{whole_frame, Device, FrameSink, Link, LinkState};
