//! Wire formats: checked zero-copy views over `&[u8]` and emitters into `&mut [u8]`.
//!
//! Every constructor that takes bytes from the wire checks lengths first and
//! returns an [`Error`]; nothing here panics on malformed input.

pub mod arp;
pub mod checksum;
pub mod dhcp;
pub mod dns;
pub mod ethernet;
pub mod held_text;
pub mod icmp;
pub mod icmpv6;
pub mod igmp;
pub mod ipv4;
pub mod ipv6;
pub mod mdns;
pub mod mld;
pub mod ndp;
pub mod tcp;
pub mod udp;

mod error;
mod mac;

pub use error::{Error, Result};
pub use held_text::{held_tcp_text, Held, HeldInMemory, HeldText, SegmentText};
pub use mac::{MacAddress, ParseMacError};
pub use std::net::Ipv4Addr;

/// Reads a big-endian u16 at `at`; callers have checked the length.
#[inline]
pub(crate) fn be16(buf: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([buf[at], buf[at + 1]])
}

/// Reads a big-endian u32 at `at`; callers have checked the length.
#[inline]
pub(crate) fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

#[inline]
pub(crate) fn ipv4_at(buf: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(buf[at], buf[at + 1], buf[at + 2], buf[at + 3])
}
