//! `Stack.stats()`, `arp_table()`, `connections()`, `udp_sockets()`: the
//! runtime's status rows as plain Python dicts (their TypedDicts are in
//! `mipfast/status.py` and the stubs). Durations in seconds, addresses as
//! strings, endpoints as (ip, port) tuples.

use crate::runtime::status::{Ipv6Row, NeighborRow, Summary, TcpRow, UdpRow};
use crate::time::Duration;
use pyo3::prelude::*;
use pyo3::types::PyDict;

fn seconds(d: Duration) -> f64 {
    d.total_micros() as f64 / 1e6
}

fn endpoint<A: ToString>((ip, port): (A, u16)) -> (String, u16) {
    (ip.to_string(), port)
}

pub fn summary<'py>(py: Python<'py>, s: Summary, uptime: Duration) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("mac", s.mac.to_string())?;
    d.set_item("ip", s.address.map(|a| a.0.to_string()))?;
    d.set_item("prefix_len", s.address.map(|a| a.1))?;
    let netmask = s.address.map(|(_, len)| {
        let bits = if len == 0 {
            0
        } else {
            u32::MAX << (32 - len as u32)
        };
        std::net::Ipv4Addr::from(bits).to_string()
    });
    d.set_item("netmask", netmask)?;
    d.set_item("gateway", s.gateway.map(|g| g.to_string()))?;
    let dns: Vec<String> = s.dns.iter().map(|a| a.to_string()).collect();
    d.set_item("dns", dns)?;
    d.set_item("dhcp", s.dhcp)?;
    d.set_item("link", s.link)?;
    d.set_item("mtu", s.mtu)?;
    d.set_item("mdns", s.mdns)?;
    d.set_item("lease_left", s.lease_left.map(seconds))?;
    d.set_item("uptime", seconds(uptime))?;
    let counters = PyDict::new(py);
    let drops = PyDict::new(py);
    for (name, value) in s.counters {
        match name.strip_prefix("drop_") {
            Some(reason) => drops.set_item(reason, value)?,
            None => counters.set_item(name, value)?,
        }
    }
    counters.set_item("checksum_errors", s.checksum_errors)?;
    counters.set_item("retransmits", s.retransmits)?;
    counters.set_item("syn_cookies_sent", s.syn_cookies_sent)?;
    counters.set_item("syn_cookies_accepted", s.syn_cookies_accepted)?;
    d.set_item("counters", counters)?;
    d.set_item("drops", drops)?;
    d.set_item("tcp_connections", s.tcp_connections)?;
    d.set_item("tcp_memory", s.tcp_memory)?;
    d.set_item("udp_sockets", s.udp_sockets)?;
    d.set_item("arp_entries", s.arp_entries)?;
    let ipv6 = s
        .ipv6
        .into_iter()
        .map(|row| ipv6_address(py, row))
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("ipv6", ipv6)?;
    let routers: Vec<String> = s.ipv6_routers.iter().map(|a| a.to_string()).collect();
    d.set_item("ipv6_routers", routers)?;
    Ok(d)
}

fn ipv6_address(py: Python<'_>, row: Ipv6Row) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("address", row.address.to_string())?;
    d.set_item("prefix_len", row.prefix_len)?;
    d.set_item("state", row.state)?;
    d.set_item("origin", row.origin)?;
    d.set_item("valid_left", row.valid_left.map(seconds))?;
    d.set_item("preferred_left", row.preferred_left.map(seconds))?;
    Ok(d)
}

/// The ARP cache or the IPv6 neighbor cache.
pub fn arp<A: ToString>(
    py: Python<'_>,
    rows: Vec<NeighborRow<A>>,
) -> PyResult<Vec<Bound<'_, PyDict>>> {
    rows.into_iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("ip", r.ip.to_string())?;
            d.set_item("mac", r.mac.map(|m| m.to_string()))?;
            d.set_item(
                "state",
                if r.mac.is_some() {
                    "reachable"
                } else {
                    "incomplete"
                },
            )?;
            d.set_item("expires_in", r.expires_in.map(seconds))?;
            Ok(d)
        })
        .collect()
}

pub fn tcp(py: Python<'_>, rows: Vec<TcpRow>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    rows.into_iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("state", r.state)?;
            d.set_item("local", endpoint(r.local))?;
            d.set_item("remote", r.remote.map(endpoint))?;
            d.set_item("bytes_in", r.bytes_in)?;
            d.set_item("bytes_out", r.bytes_out)?;
            d.set_item("retransmits", r.retransmits)?;
            d.set_item("rtt", r.rtt.map(seconds))?;
            d.set_item("cwnd", r.cwnd)?;
            d.set_item("mss", r.mss)?;
            d.set_item("send_queued", r.send_queued)?;
            d.set_item("recv_queued", r.recv_queued)?;
            d.set_item("accept_queue", r.accept_queue.map(|q| q.0))?;
            d.set_item("backlog", r.accept_queue.map(|q| q.1))?;
            Ok(d)
        })
        .collect()
}

pub fn udp(py: Python<'_>, rows: Vec<UdpRow>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    rows.into_iter()
        .map(|r| {
            let d = PyDict::new(py);
            d.set_item("local", endpoint(r.local))?;
            d.set_item("remote", r.remote.map(endpoint))?;
            d.set_item("queued", r.queued)?;
            d.set_item("dropped", r.dropped)?;
            Ok(d)
        })
        .collect()
}
