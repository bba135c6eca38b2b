"""The shapes of ``Stack.stats()``, ``arp_table()`` (and ``ndp_table()``), ``connections()``
and ``udp_sockets()``: plain dicts, typed here (and served as JSON by the dashboard's REST
API). Durations are seconds; endpoints are ``(ip, port)`` (lists in JSON)."""

from __future__ import annotations

from typing import TypedDict

Endpoint = tuple[str, int]


class Counters(TypedDict):
    frames_in: int
    frames_out: int
    bytes_in: int
    bytes_out: int
    bursts_out: int
    bursts_in: int
    checksums_offloaded_in: int
    texts_held_in: int  # super-frames whose text went from the kernel's queue straight to its place
    tx_handed_off: int  # sends a busy event loop left to the driver thread
    rounds_in_passing: int  # rounds a call ran itself for frames waiting with no one polling
    checksum_errors: int
    retransmits: int
    syn_cookies_sent: int
    syn_cookies_accepted: int


class Stats(TypedDict):
    mac: str
    ip: str | None
    prefix_len: int | None
    netmask: str | None
    gateway: str | None
    dns: list[str]
    dhcp: str  # "static", or the DHCP client's state: "selecting", "requesting", "bound", …
    lease_left: float | None
    link: str  # "up"; "down" (taken down, or unplugged) or "gone" (deleted): connections wait for it
    mtu: int  # the interface's, never above the one configured (1500)
    mdns: str | None  # the host's multicast DNS name once announced ("mipfast.local"), else None
    uptime: float
    counters: Counters
    drops: dict[str, int]  # frames dropped, by reason
    tcp_connections: int
    tcp_memory: int
    udp_sockets: int
    arp_entries: int
    ipv6: list[Ipv6Address]  # empty with ipv6=False
    ipv6_routers: list[str]  # default routers learnt from router advertisements


class Ipv6Address(TypedDict):
    address: str
    prefix_len: int
    state: str  # "tentative" (being checked), "preferred", "deprecated" or "duplicate"
    origin: str  # "link-local" (from the MAC) or "autoconf" (a router's prefix, SLAAC)
    valid_left: float | None  # None: for ever
    preferred_left: float | None


class ArpEntry(TypedDict):
    ip: str
    mac: str | None  # None while the address is being asked for
    state: str  # "reachable" or "incomplete"
    expires_in: float | None


class TcpEntry(TypedDict):
    state: str  # "LISTEN", "ESTABLISHED", "TIME_WAIT", …
    local: Endpoint
    remote: Endpoint | None  # None for a listener
    bytes_in: int
    bytes_out: int  # acknowledged by the peer
    retransmits: int
    rtt: float | None  # smoothed
    cwnd: int
    mss: int
    send_queued: int
    recv_queued: int
    accept_queue: int | None  # listeners: connections waiting for accept()
    backlog: int | None


class UdpEntry(TypedDict):
    local: Endpoint
    remote: Endpoint | None
    queued: int
    dropped: int


__all__ = ["Stats", "Counters", "ArpEntry", "TcpEntry", "UdpEntry", "Endpoint"]
