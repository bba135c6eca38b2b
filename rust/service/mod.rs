//! Protocol state machines built on the interface: the DHCP client, the DNS
//! stub resolver, the Multicast DNS responder and ping.

pub mod dhcp;
pub mod dns;
pub mod mdns;
pub mod ping;
