//! Protocol state machines built on the interface: the DHCP client (the DNS
//! resolver arrives with the UDP/DNS issue).

pub mod dhcp;
