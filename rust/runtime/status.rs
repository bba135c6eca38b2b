//! What the stack is doing, as plain rows: its addresses and lease, its
//! counters, the ARP cache, the TCP connections and listeners (`ss -ta`),
//! the UDP sockets (`ss -ua`). Read under the engine lock at one instant, so
//! that a table is consistent; the dashboard and `stack.stats()` show these.

use crate::iface::ipv6::AddressOrigin;
use crate::socket::tcp::{Endpoint, State};
use crate::stack::Stack;
use crate::time::{Duration, Instant};
use crate::wire::ipv6::Ipv6Addr;
use crate::wire::{Ipv4Addr, MacAddress};

/// The interface's configuration and totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub mac: MacAddress,
    /// Address and prefix length, once configured.
    pub address: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<std::net::IpAddr>,
    /// "static", or the DHCP client's phase ("selecting", "bound", …).
    pub dhcp: &'static str,
    /// "up", "down" or "gone" (see `phy/link_watch.rs`).
    pub link: &'static str,
    /// The interface's MTU as the stack uses it.
    pub mtu: usize,
    /// The host's mDNS name, once announced.
    pub mdns: Option<String>,
    /// Time left on the DHCP lease.
    pub lease_left: Option<Duration>,
    /// Every counter by name (frames and bytes each way, `drop_<reason>`).
    pub counters: Vec<(String, u64)>,
    pub checksum_errors: u64,
    pub retransmits: u64,
    pub syn_cookies_sent: u64,
    pub syn_cookies_accepted: u64,
    pub tcp_connections: usize,
    pub tcp_memory: usize,
    pub udp_sockets: usize,
    pub arp_entries: usize,
    /// IPv6 addresses (empty without IPv6) and default routers.
    pub ipv6: Vec<Ipv6Row>,
    pub ipv6_routers: Vec<Ipv6Addr>,
}

/// One IPv6 address of ours, as `ip -6 addr` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Row {
    pub address: Ipv6Addr,
    pub prefix_len: u8,
    /// "tentative", "preferred", "deprecated" or "duplicate".
    pub state: &'static str,
    /// "link-local" or "autoconf" (SLAAC).
    pub origin: &'static str,
    /// None: for ever.
    pub valid_left: Option<Duration>,
    pub preferred_left: Option<Duration>,
}

/// One row of the ARP table (or, of IPv6 addresses, the neighbor cache).
pub type ArpRow = NeighborRow<Ipv4Addr>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborRow<A> {
    pub ip: A,
    /// None while the address is still being asked for.
    pub mac: Option<MacAddress>,
    pub expires_in: Option<Duration>,
}

/// One TCP connection, or a listener (state "LISTEN", no remote end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpRow {
    pub state: &'static str,
    pub local: Endpoint,
    pub remote: Option<Endpoint>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub retransmits: u64,
    pub rtt: Option<Duration>,
    pub cwnd: usize,
    pub mss: usize,
    pub send_queued: usize,
    pub recv_queued: usize,
    /// Listeners: established connections waiting for `accept()`, and the backlog.
    pub accept_queue: Option<(usize, usize)>,
}

/// One UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRow {
    pub local: crate::socket::udp::Endpoint,
    pub remote: Option<crate::socket::udp::Endpoint>,
    pub queued: usize,
    pub dropped: u64,
}

pub fn summary(stack: &Stack, now: Instant) -> Summary {
    let config = stack.ipv4_config();
    let tcp = stack.tcp();
    let cookies = tcp.cookies();
    let counters = stack.counters();
    Summary {
        mac: stack.interface().mac(),
        address: config.map(|c| (c.cidr.address, c.cidr.prefix_len)),
        gateway: config.and_then(|c| c.gateway),
        dns: stack.dns_servers(),
        dhcp: match stack.dhcp_phase() {
            None => "static",
            Some(phase) => phase.name(),
        },
        link: stack.link().name(),
        mtu: stack.interface().mtu(),
        mdns: stack.mdns_name(),
        lease_left: stack
            .dhcp_lease()
            .map(|l| l.expires_at.saturating_since(now)),
        counters: counters.entries(),
        checksum_errors: counters.checksum_errors(),
        retransmits: tcp.retransmits(),
        syn_cookies_sent: cookies.0,
        syn_cookies_accepted: cookies.1,
        tcp_connections: tcp.len(),
        tcp_memory: tcp.memory(),
        udp_sockets: stack.udp().len(),
        arp_entries: stack.interface().neighbors(now).len(),
        ipv6: ipv6(stack, now),
        ipv6_routers: stack
            .interface()
            .ipv6()
            .map(|h| h.routers(now).map(|r| r.address).collect())
            .unwrap_or_default(),
    }
}

pub fn ipv6(stack: &Stack, now: Instant) -> Vec<Ipv6Row> {
    let Some(host) = stack.interface().ipv6() else {
        return Vec::new();
    };
    host.addresses()
        .iter()
        .map(|a| Ipv6Row {
            address: a.address,
            prefix_len: a.prefix_len,
            state: a.state.name(),
            origin: match a.origin {
                AddressOrigin::LinkLocal => "link-local",
                AddressOrigin::Autoconfigured => "autoconf",
            },
            valid_left: a.valid_until.map(|t| t.saturating_since(now)),
            preferred_left: a.preferred_until.map(|t| t.saturating_since(now)),
        })
        .collect()
}

/// The IPv6 neighbor cache (`ip -6 neigh`), as ARP rows; empty without IPv6.
pub fn ndp(stack: &Stack, now: Instant) -> Vec<NeighborRow<Ipv6Addr>> {
    stack
        .interface()
        .ipv6()
        .map(|h| {
            h.neighbors(now)
                .into_iter()
                .map(|n| NeighborRow {
                    ip: n.ip,
                    mac: n.mac,
                    expires_in: n.expires_in,
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn arp(stack: &Stack, now: Instant) -> Vec<ArpRow> {
    stack
        .interface()
        .neighbors(now)
        .into_iter()
        .map(|n| ArpRow {
            ip: n.ip,
            mac: n.mac,
            expires_in: n.expires_in,
        })
        .collect()
}

/// Listeners first (by port), then connections.
pub fn tcp(stack: &Stack) -> Vec<TcpRow> {
    let local_ip = stack.ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED);
    let mut listeners: Vec<TcpRow> = stack
        .tcp()
        .listeners()
        .map(|(port, l)| TcpRow {
            state: "LISTEN",
            local: (local_ip.into(), port),
            remote: None,
            bytes_in: 0,
            bytes_out: 0,
            retransmits: 0,
            rtt: None,
            cwnd: 0,
            mss: 0,
            send_queued: 0,
            recv_queued: 0,
            accept_queue: Some((l.ready.len(), l.backlog)),
        })
        .collect();
    listeners.sort_by_key(|r| r.local.1);
    let connections = stack.tcp().iter().map(|(_, c)| {
        let traffic = c.traffic();
        TcpRow {
            state: c.state().name(),
            local: c.local(),
            remote: Some(c.remote()),
            bytes_in: traffic.bytes_received,
            bytes_out: traffic.bytes_acked,
            retransmits: traffic.retransmits,
            rtt: c.srtt(),
            cwnd: c.cwnd(),
            mss: c.mss(),
            send_queued: c.send_queued(),
            recv_queued: c.recv_available(),
            accept_queue: None,
        }
    });
    listeners.extend(connections);
    let kept = stack.tcp().time_wait_records().map(|r| {
        let traffic = r.traffic();
        TcpRow {
            state: State::TimeWait.name(),
            local: r.local(),
            remote: Some(r.remote()),
            bytes_in: traffic.bytes_received,
            bytes_out: traffic.bytes_acked,
            retransmits: traffic.retransmits,
            rtt: None,
            cwnd: 0,
            mss: 0,
            send_queued: 0,
            recv_queued: 0,
            accept_queue: None,
        }
    });
    listeners.extend(kept);
    listeners
}

pub fn udp(stack: &Stack) -> Vec<UdpRow> {
    stack
        .udp()
        .iter()
        .map(|(_, s)| UdpRow {
            local: s.local(),
            remote: s.remote(),
            queued: s.queued(),
            dropped: s.dropped(),
        })
        .collect()
}
