//! Devices: where frames come from and go to. Only this module (and `py`)
//! does I/O.

pub mod capture;
mod device;
pub mod fault;
pub mod faulty;
pub mod link;
#[cfg(target_os = "linux")]
mod packet_tx;
pub mod pcap_live;
pub mod poll;
pub mod ready_fd;
mod sockopt;
pub mod stream_fd;
pub mod trace;
pub mod wake;

pub use device::Device;
