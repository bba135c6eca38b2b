//! Transport sockets: TCP in `tcp/`, UDP in `udp.rs`.

pub mod tcp;
pub mod udp;
