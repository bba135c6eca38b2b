//! The network interface: our addresses, the ARP neighbour cache, ingress
//! dispatch of frames and egress routing of IPv4 packets.

mod config;
mod counters;
mod interface;
pub mod ipv6;
mod multicast;
mod neighbor;
pub(crate) mod reassembly;
mod rx;
mod segmentation;
mod token_bucket;
mod tx_queue;

pub use config::{ConfigError, Ipv4Cidr, Ipv4Config};
pub use counters::{Counters, DropReason};
pub use interface::{
    Delivery, EchoReply, Interface, InterfaceConfig, Payload, TcpDelivery, Text, Udp6Delivery,
    UdpDelivery, Unreachable, UnreachableReason, DEFAULT_MAC, DEFAULT_MTU, ICMP_ERRORS_PER_SEC,
    ICMP_ERROR_BURST, MAX_IPV4_PAYLOAD,
};
pub use ipv6::{Ipv6Config, Ipv6Host, MAX_IPV6_PAYLOAD};
pub use multicast::Memberships;
pub use neighbor::{NeighborCache, NeighborConfig};
pub use reassembly::{Outcome, Reassembler, ReassemblyConfig};
pub use rx::RxChecksum;
pub use segmentation::{segment_burst, wire_size, CHECKSUM_ONLY};
pub use tx_queue::{QueuedFrame, TextRef, TxFrame, TxQueue};
