//! Transport sockets. TCP lives in `tcp/`; UDP and ICMP arrive with their issue.

pub mod tcp;
