//! Protocol state machines built on the interface: the DHCP client, the DNS
//! stub resolver and ping.

pub mod dhcp;
pub mod dns;
pub mod ping;
