//! The stack: an interface, its services and (with later issues) its sockets,
//! driven by `poll(now, device)`.

use crate::entropy::{self, Purpose};
use crate::iface::{
    Counters, Delivery, DropReason, Interface, InterfaceConfig, Ipv4Config, Ipv6Config, Payload,
    RxChecksum, TcpDelivery, Text, TextRef, Udp6Delivery, UdpDelivery, Unreachable,
    UnreachableReason, CHECKSUM_ONLY, MAX_IPV4_PAYLOAD, MAX_IPV6_PAYLOAD,
};
use crate::phy::{Device, Link, LinkState};
use crate::service::dhcp::{self, Action, DhcpClient, DhcpConfig, Lease};
use crate::service::dns::{DnsError, Family, Lookup, QueryId, Received, Resolver, ResolverConfig};
use crate::service::mdns::{MdnsConfig, Responder};
use crate::service::ping::{self, Pinger, ProbeId};
use crate::socket::tcp::{self, Incoming, Outgoing, TcpConfig, TcpSockets, Unclaimed};
use crate::socket::udp::{self, BindError, UdpConfig, UdpError, UdpHandle, UdpSockets};
use crate::time::{earliest, Duration, Instant};
use crate::wire::checksum::PseudoHeader;
use crate::wire::{self, held_tcp_text, icmp, ipv4, ipv6, Held, Ipv4Addr, SegmentText};
use rand::rngs::StdRng;
use rand::RngExt;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::ops::ControlFlow;

mod loopback;
mod mdns;
mod multicast;

/// How the stack gets its IPv4 address.
#[derive(Debug, Clone)]
pub enum Addressing {
    Static(Ipv4Config),
    Dhcp(DhcpConfig),
}

#[derive(Debug, Clone)]
pub struct StackConfig {
    pub interface: InterfaceConfig,
    pub addressing: Addressing,
    pub tcp: TcpConfig,
    pub udp: UdpConfig,
    pub resolver: ResolverConfig,
    /// DNS servers (of either family) to use instead of those DHCP gives
    /// (empty: DHCP's).
    pub dns_servers: Vec<IpAddr>,
    /// Answer for a name and services by Multicast DNS (`service/mdns/`).
    pub mdns: Option<MdnsConfig>,
    /// IPv6 on the link (`iface/ipv6/`): None leaves IPv6 frames unread.
    pub ipv6: Option<Ipv6Config>,
    /// Seeds every random choice, through independent streams per purpose
    /// (`entropy`): secrets never share a stream with values sent in clear.
    /// The bindings pass OS entropy, tests a fixed value.
    pub seed: u64,
}

impl StackConfig {
    /// DHCP on the default MAC.
    pub fn dhcp(seed: u64) -> Self {
        let interface = InterfaceConfig::default();
        StackConfig {
            addressing: Addressing::Dhcp(DhcpConfig::new(interface.mac)),
            interface,
            tcp: TcpConfig::default(),
            udp: UdpConfig::default(),
            resolver: ResolverConfig::default(),
            dns_servers: Vec::new(),
            mdns: None,
            ipv6: None,
            seed,
        }
    }
    /// A static address on the default MAC.
    pub fn static_ipv4(config: Ipv4Config, seed: u64) -> Self {
        StackConfig {
            interface: InterfaceConfig::default(),
            addressing: Addressing::Static(config),
            tcp: TcpConfig::default(),
            udp: UdpConfig::default(),
            resolver: ResolverConfig::default(),
            dns_servers: Vec::new(),
            mdns: None,
            ipv6: None,
            seed,
        }
    }
}

#[derive(Debug)]
pub struct Stack {
    iface: Interface,
    dhcp: Option<DhcpClient>,
    tcp: TcpSockets,
    udp: UdpSockets,
    resolver: Resolver,
    dns_servers: Vec<IpAddr>,
    mdns: Option<Responder>,
    pinger: Pinger,
    rng: StdRng,
    /// Bumped on every change of address, so that waiters can notice.
    config_generation: u64,
    /// The device's link, as last seen.
    link: Link,
    /// The MTU configured: the most a link's MTU can raise ours to.
    configured_mtu: usize,
    /// Frames to ourselves left for the next flush (`loopback.rs`).
    looped: Vec<Vec<u8>>,
    /// A flush delivered frames to ourselves (`loopback.rs`).
    delivered_to_self: bool,
    /// Times callers asked to be woken at (see [`Stack::wake_at`]).
    wake_ups: Vec<Instant>,
}

impl Stack {
    pub fn new(config: StackConfig, now: Instant) -> Self {
        let seed = config.seed;
        let mut tcp_config = config.tcp;
        // RFC 9293 §3.7.1: the MSS we announce follows from the MTU.
        tcp_config.mss = tcp_config
            .mss
            .min(config.interface.mtu - ipv4::HEADER_LEN - wire::tcp::HEADER_LEN);
        let tcp = TcpSockets::new(
            tcp_config,
            entropy::stream(seed, Purpose::TcpSecret).random(),
            entropy::stream(seed, Purpose::TcpPorts).random(),
        );
        let resolver = Resolver::new(config.resolver, entropy::stream(seed, Purpose::Dns));
        let configured_mtu = config.interface.mtu.max(ipv4::MIN_MTU);
        let mut stack = Stack {
            iface: Interface::new(config.interface),
            tcp,
            udp: UdpSockets::new(config.udp),
            resolver,
            dns_servers: config.dns_servers,
            mdns: None,
            pinger: Pinger::default(),
            rng: entropy::stream(seed, Purpose::Datagrams),
            dhcp: None,
            config_generation: 0,
            link: Link::default(),
            configured_mtu,
            looped: Vec::new(),
            wake_ups: Vec::new(),
            delivered_to_self: false,
        };
        if let Some(ipv6) = config.ipv6 {
            let rng = entropy::stream(seed, Purpose::Ipv6);
            stack.iface.enable_ipv6(now, ipv6, rng);
        }
        if let Some(mdns) = config.mdns {
            stack.start_mdns(now, mdns, entropy::stream(seed, Purpose::Mdns));
        }
        match config.addressing {
            Addressing::Static(ip) => stack.configure(Some(ip), "static"),
            Addressing::Dhcp(mut dhcp) => {
                dhcp.mac = stack.iface.mac();
                stack.dhcp = Some(DhcpClient::new(
                    dhcp,
                    entropy::stream(seed, Purpose::Dhcp),
                    now,
                ));
            }
        }
        stack
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }
    /// Counts `n` frames the device lost before the engine saw them.
    pub fn count_device_drops(&mut self, reason: DropReason, n: u64) {
        for _ in 0..n {
            self.iface.count_drop(reason);
        }
    }

    pub fn counters(&self) -> &Counters {
        self.iface.counters()
    }
    /// The multicast groups this host is in, with how many sockets each.
    pub fn multicast_groups(&self) -> Vec<(Ipv4Addr, usize)> {
        self.iface.multicast_groups().collect()
    }
    /// Whether a TCP connection to `dst` may be opened: it can be reached
    /// (see `Interface::reaches`), and it is one host, not a broadcast or
    /// multicast address (RFC 1122 §4.2.3.10: such a SYN is to be ignored,
    /// and Linux refuses it with ENETUNREACH).
    pub fn may_connect_to(&self, dst: Ipv4Addr) -> bool {
        let broadcast = self.ipv4_config().is_some_and(|c| c.is_broadcast(dst));
        self.iface.reaches(dst) && !broadcast && !dst.is_multicast()
    }

    /// The address of ours a connection to `dst` starts from (RFC 6724):
    /// `dst` itself when it is ours (its frames loop back, see
    /// `stack::loopback`); None when `dst` is not one host we can reach over
    /// IPv6 (multicast, unspecified, off the link without a router).
    pub fn ipv6_source_for(&self, now: Instant, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let host = self.iface.ipv6()?;
        if host.is_own(dst) {
            return Some(dst);
        }
        if dst.is_multicast() || dst.is_unspecified() || dst.is_loopback() {
            return None;
        }
        host.reaches(now, dst)
            .then(|| host.source_for(dst))
            .flatten()
    }

    pub fn ipv4_config(&self) -> Option<&Ipv4Config> {
        self.iface.ipv4_config()
    }
    pub fn is_ready(&self) -> bool {
        self.iface.ipv4_config().is_some()
    }
    pub fn config_generation(&self) -> u64 {
        self.config_generation
    }
    pub fn dhcp_phase(&self) -> Option<dhcp::Phase> {
        self.dhcp.as_ref().map(|d| d.phase())
    }
    pub fn dhcp_lease(&self) -> Option<&Lease> {
        self.dhcp.as_ref().and_then(|d| d.lease())
    }
    pub fn tcp(&self) -> &TcpSockets {
        &self.tcp
    }
    /// The TCP sockets, for user calls; [`Stack::dispatch`] sends what they queue.
    pub fn tcp_mut(&mut self) -> &mut TcpSockets {
        &mut self.tcp
    }
    /// Our address, if configured.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.iface.ipv4_config().map(|c| c.cidr.address)
    }

    fn configure(&mut self, config: Option<Ipv4Config>, lease: &str) {
        let changed = self.iface.ipv4_config().map(|c| c.cidr) != config.as_ref().map(|c| c.cidr)
            || self.iface.ipv4_config().map(|c| c.gateway) != config.as_ref().map(|c| c.gateway);
        match &config {
            Some(c) if changed => log::info!(
                "READY, IP: {} / GW: {} / Lease: {lease}",
                c.cidr.address,
                c.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED)
            ),
            Some(c) => log::debug!("lease on {} renewed ({lease})", c.cidr.address),
            None => log::warn!("address removed"),
        }
        if changed {
            self.config_generation += 1;
            self.iface.set_ipv4_config(config);
        } else if let Some(c) = config {
            // Same address: keep ARP state, refresh DNS servers.
            self.iface.set_ipv4_config_quiet(c);
        }
    }

    /// Handles one frame from a wire (its checksums to be verified).
    pub fn process_frame(&mut self, now: Instant, frame: &[u8]) {
        self.process_received(now, frame, RxChecksum::Unverified, None)
    }

    /// Handles one received frame, with what the device knows of its
    /// checksum, and its text if the device holds it still
    /// (`wire/held_text.rs`).
    pub fn process_received(
        &mut self,
        now: Instant,
        frame: &[u8],
        checksum: RxChecksum,
        held: Held<'_>,
    ) {
        let Some(held) = held else {
            return self.ingress(now, frame, checksum, None);
        };
        // Only TCP's receive path may take a held text; anything else (or a
        // text whose checksum we must verify) is read whole first.
        if checksum.trusted()
            && held_tcp_text(frame).map(|text| text.len()) == Some(held.borrow().len())
        {
            self.iface.count_text_held();
            return self.ingress(now, frame, checksum, Some(held));
        }
        let mut held = held.borrow_mut();
        if let Some(whole) = held.whole_frame() {
            self.ingress(now, whole, checksum, None);
        }
    }

    fn ingress(&mut self, now: Instant, frame: &[u8], checksum: RxChecksum, held: Held<'_>) {
        match self.iface.ingress(now, frame, checksum) {
            None => {}
            Some(Delivery::Reassembled(packet)) => {
                if let Some(d) = self.iface.ingress_reassembled(now, &packet) {
                    self.deliver(now, d, None);
                }
            }
            Some(d) => self.deliver(now, d, held),
        }
    }

    fn deliver(&mut self, now: Instant, delivery: Delivery<'_>, held: Held<'_>) {
        match delivery {
            Delivery::Udp(d) => self.process_udp(now, d),
            Delivery::Udp6(d) => self.process_udp_v6(now, d),
            Delivery::Tcp(t) => self.process_tcp(now, t, held),
            Delivery::Unreachable(u) => self.process_unreachable(now, u),
            Delivery::EchoReply(r) => {
                let id = ProbeId {
                    ident: r.ident,
                    seq: r.seq,
                };
                if !self.pinger.reply(now, r.src, id, r.data) {
                    self.iface.count_drop(DropReason::IcmpEchoUnmatched);
                }
            }
            Delivery::Igmp(message) => self.iface.process_igmp(now, message, &mut self.rng),
            Delivery::Reassembled(_) => {} // a reassembled packet is never a fragment
        }
    }

    /// An ICMP or ICMPv6 error about a segment or datagram of ours (RFC
    /// 1122 §4.2.3.9, RFC 1191, RFC 8201).
    fn process_unreachable(&mut self, now: Instant, u: Unreachable) {
        let (protocol, port, remote) = (u.protocol, u.local.1, u.remote);
        match u.reason {
            UnreachableReason::TooBig {
                next_hop_mtu,
                quoted_len,
            } if protocol == ipv4::PROTO_TCP => {
                let hop = u16::try_from(next_hop_mtu).unwrap_or(u16::MAX);
                let mut mtu = tcp::path_mtu::reported_mtu(hop, quoted_len);
                if remote.0.is_ipv6() {
                    // RFC 8201 §4: never below IPv6's minimum link MTU.
                    mtu = mtu.max(ipv6::MIN_MTU);
                }
                let used = u.quoted_seq.is_some_and(|seq| {
                    self.tcp
                        .fragmentation_needed(now, port, remote, mtu, tcp::Seq(seq))
                });
                if !used {
                    self.iface.count_drop(DropReason::IcmpPathMtuIgnored);
                }
            }
            UnreachableReason::Destination if protocol == ipv4::PROTO_TCP => {
                self.tcp.icmp_unreachable(port, remote);
            }
            UnreachableReason::Destination if protocol == ipv4::PROTO_UDP => {
                self.udp.icmp_unreachable(port, remote);
            }
            _ => {}
        }
    }

    fn process_tcp(&mut self, now: Instant, t: TcpDelivery<'_>, held: Held<'_>) {
        let s = &t.segment;
        let Ok(options) = s.options() else {
            return self.iface.count_drop(DropReason::TcpOptionsMalformed);
        };
        let incoming = Incoming {
            src: t.src,
            dst: t.dst,
            src_port: s.src_port(),
            dst_port: s.dst_port(),
            seq: tcp::Seq(s.seq()),
            ack: tcp::Seq(s.ack()),
            flags: s.flags(),
            window: s.window(),
            options,
            payload: match held {
                Some(held) => SegmentText::held(held),
                None => SegmentText::here(s.payload()),
            },
        };
        let (iface, by_device) = (&mut self.iface, self.tcp.config().device_cuts_bursts());
        let result = self.tcp.process(now, &incoming, &mut |seg| {
            emit_tcp(iface, now, seg, by_device)
        });
        match result {
            Ok(()) => {}
            Err(Unclaimed::NoSocket) => self.iface.send_tcp_reset(now, &t),
            Err(Unclaimed::Overflow) => self.iface.count_drop(DropReason::TcpListenOverflow),
            Err(Unclaimed::Ignored) => self.iface.count_drop(DropReason::TcpIgnored),
            Err(Unclaimed::BadCookie) => self.iface.count_drop(DropReason::TcpBadCookie),
        }
    }

    /// Sends what the TCP connections and the resolver have due (after
    /// frames or user calls).
    pub fn dispatch(&mut self, now: Instant) {
        let (iface, by_device) = (&mut self.iface, self.tcp.config().device_cuts_bursts());
        self.tcp
            .dispatch(now, &mut |seg| emit_tcp(iface, now, seg, by_device));
        if self.resolver.poll_at().is_some_and(|t| t <= now) {
            self.send_dns(now);
        }
    }

    fn process_udp(&mut self, now: Instant, datagram: UdpDelivery<'_>) {
        if datagram.dst_port == wire::dhcp::CLIENT_PORT
            && datagram.src_port == wire::dhcp::SERVER_PORT
        {
            if let Some(client) = self.dhcp.as_mut() {
                let result = wire::dhcp::Repr::parse(datagram.payload)
                    .map_err(|_| DropReason::DhcpMalformed)
                    .and_then(|m| client.process(now, &m).map_err(|_| DropReason::DhcpIgnored));
                match result {
                    Ok(actions) => self.apply_dhcp(now, actions),
                    Err(reason) => self.iface.count_drop(reason),
                }
                return;
            }
        }
        let mdns_taken = self.process_mdns(now, &datagram);
        let from = (datagram.src.into(), datagram.src_port);
        let to = (datagram.dst.into(), datagram.dst_port);
        if !datagram.broadcast && self.dns_answer(now, from, datagram.dst_port, datagram.payload) {
            return;
        }
        match self
            .udp
            .deliver(from, to, datagram.broadcast, datagram.payload)
        {
            Ok(()) => {}
            Err(udp::Unclaimed::QueueFull) => self.iface.count_drop(DropReason::UdpQueueFull),
            Err(udp::Unclaimed::NoSocket) if mdns_taken => {}
            Err(udp::Unclaimed::NoSocket) => {
                self.iface.count_drop(DropReason::UdpNoListener);
                self.iface.send_port_unreachable(now, &datagram);
            }
        }
    }

    pub fn udp(&self) -> &UdpSockets {
        &self.udp
    }
    pub fn udp_mut(&mut self) -> &mut UdpSockets {
        &mut self.udp
    }

    /// A UDP datagram over IPv6 for a socket, or answered with a port
    /// unreachable (never one sent to a group).
    /// Whether a datagram went to the resolver (an answer to one of its
    /// queries, or one it rejected and counted), not to the UDP sockets.
    fn dns_answer(&mut self, now: Instant, from: (IpAddr, u16), port: u16, payload: &[u8]) -> bool {
        match self.resolver.process(now, from, port, payload) {
            Received::NotOurs => false,
            Received::Taken => true,
            Received::Rejected => {
                self.iface.count_drop(DropReason::DnsRejected);
                true
            }
        }
    }

    fn process_udp_v6(&mut self, now: Instant, datagram: Udp6Delivery<'_>) {
        let from = (datagram.src.into(), datagram.src_port);
        let to = (datagram.dst.into(), datagram.dst_port);
        if !datagram.multicast && self.dns_answer(now, from, datagram.dst_port, datagram.payload) {
            return;
        }
        match self
            .udp
            .deliver(from, to, datagram.multicast, datagram.payload)
        {
            Ok(()) => {}
            Err(udp::Unclaimed::QueueFull) => self.iface.count_drop(DropReason::UdpQueueFull),
            Err(udp::Unclaimed::NoSocket) => self.iface.send_port_unreachable_v6(now, &datagram),
        }
    }

    /// Opens a UDP socket on `addr:port` (port 0: a random free one).
    /// `addr` is the unspecified address (of either family: the socket's
    /// family follows it), ours, or a multicast group's.
    pub fn udp_bind(
        &mut self,
        addr: impl Into<IpAddr>,
        port: u16,
    ) -> Result<UdpHandle, UdpSendError> {
        let addr = addr.into();
        // (A group's address too: the socket then takes that group's datagrams.)
        let available = match addr {
            _ if addr.is_unspecified() => true,
            IpAddr::V4(a) => Some(a) == self.ipv4() || a.is_multicast(),
            IpAddr::V6(a) => a.is_multicast() || self.iface.ipv6().is_some_and(|h| h.is_own(a)),
        };
        if !available {
            return Err(UdpSendError::AddressNotAvailable);
        }
        let hint = self.rng.random::<u16>();
        let resolver = &self.resolver;
        self.udp
            .bind(addr, port, hint, |p| resolver.uses_port(p))
            .map_err(|e| match e {
                BindError::AddressInUse => UdpSendError::AddressInUse,
                BindError::NoPortAvailable => UdpSendError::AddressNotAvailable,
            })
    }

    /// Sends one datagram from a UDP socket to an address of its family:
    /// over IPv4 fragmented if larger than the MTU; over IPv6 within it.
    pub fn udp_send(
        &mut self,
        now: Instant,
        handle: UdpHandle,
        dst: (impl Into<IpAddr>, u16),
        payload: &[u8],
    ) -> Result<(), UdpSendError> {
        let socket = self.udp.get(handle).ok_or(UdpSendError::Closed)?;
        match (dst.0.into(), socket.is_ipv6()) {
            (IpAddr::V4(ip), false) => self.udp_send_v4(now, handle, (ip, dst.1), payload),
            (IpAddr::V6(ip), true) => self.udp_send_v6(now, handle, (ip, dst.1), payload),
            _ => Err(UdpSendError::InvalidDestination), // the other family
        }
    }

    fn udp_send_v4(
        &mut self,
        now: Instant,
        handle: UdpHandle,
        dst: (Ipv4Addr, u16),
        payload: &[u8],
    ) -> Result<(), UdpSendError> {
        let our_ip = self.ipv4().ok_or(UdpSendError::NoRoute)?;
        let broadcast = self
            .iface
            .ipv4_config()
            .is_some_and(|c| c.is_broadcast(dst.0));
        let socket = self.udp.get_mut(handle).ok_or(UdpSendError::Closed)?;
        if let Some(UdpError::Refused) = socket.remote().and(socket.take_error()) {
            return Err(UdpSendError::Refused);
        }
        if payload.len() > MAX_IPV4_PAYLOAD - wire::udp::HEADER_LEN {
            return Err(UdpSendError::TooBig);
        }
        if broadcast && !socket.broadcast {
            return Err(UdpSendError::BroadcastDenied);
        }
        if dst.1 == 0 || dst.0.is_unspecified() {
            return Err(UdpSendError::InvalidDestination);
        }
        if !self.iface.reaches(dst.0) {
            return Err(UdpSendError::NoRoute);
        }
        let src_port = socket.local().1;
        if dst.0.is_multicast() {
            let (src, dst) = ((our_ip.into(), src_port), (dst.0.into(), dst.1));
            return self.udp_send_to_group(now, handle, src, dst, payload);
        }
        self.iface
            .send_udp(now, our_ip, dst.0, src_port, dst.1, payload.len(), |buf| {
                buf.copy_from_slice(payload)
            })
            .or_else(datagram_send_result)
    }

    /// A datagram larger than the MTU leaves in fragments (RFC 8200 §4.5),
    /// as Linux's do; to our own address it loops back (`stack::loopback`).
    fn udp_send_v6(
        &mut self,
        now: Instant,
        handle: UdpHandle,
        dst: (Ipv6Addr, u16),
        payload: &[u8],
    ) -> Result<(), UdpSendError> {
        let socket = self.udp.get_mut(handle).ok_or(UdpSendError::Closed)?;
        if let Some(UdpError::Refused) = socket.remote().and(socket.take_error()) {
            return Err(UdpSendError::Refused);
        }
        if dst.1 == 0 || dst.0.is_unspecified() {
            return Err(UdpSendError::InvalidDestination);
        }
        let local = socket.local();
        let host = self.iface.ipv6().ok_or(UdpSendError::NoRoute)?;
        let src = match local.0 {
            // (Bound to a group: from an address of ours, as over IPv4.)
            IpAddr::V6(a) if !a.is_unspecified() && !a.is_multicast() => a,
            _ => host.source_for(dst.0).ok_or(UdpSendError::NoRoute)?,
        };
        if payload.len() > MAX_IPV6_PAYLOAD - wire::udp::HEADER_LEN {
            return Err(UdpSendError::TooBig);
        }
        if dst.0.is_multicast() {
            let (src, dst) = ((src.into(), local.1), (dst.0.into(), dst.1));
            return self.udp_send_to_group(now, handle, src, dst, payload);
        }
        self.iface
            .send_udp_v6(now, (src, dst.0), (local.1, dst.1), payload)
            .or_else(datagram_send_result)
    }

    /// Starts resolving `name` to IPv4 addresses through the DNS servers we know.
    pub fn resolve_start(&mut self, now: Instant, name: &str) -> QueryId {
        self.resolve_start_for(now, name, Family::Ipv4)
    }

    /// Starts resolving `name` to addresses of `family` (A or AAAA records).
    pub fn resolve_start_for(&mut self, now: Instant, name: &str, family: Family) -> QueryId {
        if let Some(ours) = self.own_mdns_addresses(name, family) {
            // Not asked of the link.
            let lookup = match ours.is_empty() {
                true => Err(DnsError::NoData),
                false => Ok(ours),
            };
            return self.resolver.answered(lookup);
        }
        let servers = self.dns_servers();
        let id = self.resolver.query(now, (name, family), &servers);
        self.send_dns(now);
        id
    }

    /// Orders the addresses of a name as RFC 6724 §6 would, simplified:
    /// IPv6 ones we can reach first (rule 6: IPv6's precedence is above
    /// IPv4's), then IPv4's, then IPv6 ones we have no route to (rule 1).
    pub fn order_destinations(&self, now: Instant, addresses: &mut [IpAddr]) {
        addresses.sort_by_key(|a| match a {
            IpAddr::V6(v6) if self.ipv6_source_for(now, *v6).is_some() => 0,
            IpAddr::V4(_) => 1,
            IpAddr::V6(_) => 2,
        });
    }
    /// Uses `servers` for DNS instead of DHCP's (empty: DHCP's again).
    pub fn set_dns_servers(&mut self, servers: Vec<IpAddr>) {
        self.dns_servers = servers;
    }
    /// The DNS servers in use, tried in this order: the configured ones
    /// (either family), else DHCP's; then those IPv6 routers name (RFC 8106).
    pub fn dns_servers(&self) -> Vec<IpAddr> {
        let mut servers = self.dns_servers.clone();
        if servers.is_empty() {
            let dhcp = self.iface.ipv4_config().map(|c| c.dns_servers.iter());
            servers.extend(dhcp.into_iter().flatten().map(|&a| IpAddr::from(a)));
        }
        let ipv6 = self.iface.ipv6().into_iter().flat_map(|h| h.dns_servers());
        servers.extend(ipv6.map(IpAddr::from));
        servers
    }
    /// The outcome of a lookup, once known.
    pub fn resolve_result(&self, id: QueryId) -> Option<&Lookup> {
        self.resolver.result(id)
    }
    /// Forgets a lookup.
    pub fn resolve_finish(&mut self, id: QueryId) {
        self.resolver.finish(id)
    }

    /// Sends the resolver's due queries. Without an address they are lost
    /// (and counted) as on a link that is down, so that the lookups keep
    /// their schedule and fail in time instead of staying due forever.
    /// Sends the resolver's queries, each from our address of its server's
    /// family; one with no address to go from is counted as unroutable.
    fn send_dns(&mut self, now: Instant) {
        let udp = &self.udp;
        let transmits = self.resolver.poll(now, |p| udp.is_bound(p));
        for t in transmits {
            let ports = (t.src_port, t.dst_port);
            let routed = match t.server {
                IpAddr::V4(server) => self.ipv4().map(|ours| {
                    // A one-shot mDNS query goes with TTL 255, as all mDNS (RFC 6762 §11).
                    let ttl = match server == wire::mdns::GROUP {
                        true => wire::mdns::IP_TTL,
                        false => ipv4::DEFAULT_TTL,
                    };
                    let addresses = (ours, server);
                    let _ = (self.iface).send_udp_with_ttl(now, ttl, addresses, ports, &t.payload);
                }),
                IpAddr::V6(server) => self.ipv6_source_for(now, server).map(|ours| {
                    let _ = (self.iface).send_udp_v6(now, (ours, server), ports, &t.payload);
                }),
            };
            if routed.is_none() {
                self.iface.count_drop(DropReason::NoRoute);
            }
        }
    }

    /// Sends an ICMP echo request of `size` data bytes to `dst`; the reply
    /// shows in [`Stack::ping_rtt`].
    pub fn ping_send(
        &mut self,
        now: Instant,
        dst: impl Into<IpAddr>,
        id: ProbeId,
        size: usize,
    ) -> Result<(), UdpSendError> {
        let dst = match dst.into() {
            IpAddr::V4(dst) => dst,
            IpAddr::V6(dst) => return self.ping_send_v6(now, dst, id, size),
        };
        let our_ip = self.ipv4().ok_or(UdpSendError::NoRoute)?;
        if !self.iface.reaches(dst) {
            return Err(UdpSendError::NoRoute);
        }
        if size > MAX_IPV4_PAYLOAD - icmp::HEADER_LEN {
            return Err(UdpSendError::TooBig);
        }
        if !self.pinger.sent(now, id, dst.into(), size) {
            return Err(UdpSendError::NoBuffers);
        }
        let data = ping::probe_data(id, size);
        let echo = icmp::Echo {
            reply: false,
            ident: id.ident,
            seq: id.seq,
            data: &data,
        };
        self.iface
            .send_ipv4(now, our_ip, dst, ipv4::PROTO_ICMP, echo.len(), |buf| {
                echo.emit(buf)
            })
            .or_else(datagram_send_result)
    }
    /// An ICMPv6 echo request (RFC 4443 §4.1), in fragments if it must.
    fn ping_send_v6(
        &mut self,
        now: Instant,
        dst: Ipv6Addr,
        id: ProbeId,
        size: usize,
    ) -> Result<(), UdpSendError> {
        let host = self.iface.ipv6().ok_or(UdpSendError::NoRoute)?;
        if size > MAX_IPV6_PAYLOAD - wire::icmpv6::HEADER_LEN {
            return Err(UdpSendError::TooBig);
        }
        if host.source_for(dst).is_none() {
            return Err(UdpSendError::NoRoute);
        }
        if !self.pinger.sent(now, id, dst.into(), size) {
            return Err(UdpSendError::NoBuffers);
        }
        let data = ping::probe_data(id, size);
        let echo = wire::icmpv6::Echo {
            reply: false,
            ident: id.ident,
            seq: id.seq,
            data: &data,
        };
        self.iface
            .send_echo_v6(now, dst, &echo)
            .or_else(datagram_send_result)
    }

    /// The round-trip time of a probe, once its reply came.
    pub fn ping_rtt(&self, id: ProbeId) -> Option<Duration> {
        self.pinger.rtt(id)
    }
    pub fn ping_finish(&mut self, id: ProbeId) {
        self.pinger.finish(id)
    }
    /// A random identifier for a series of echo requests.
    pub fn ping_ident(&mut self) -> u16 {
        self.rng.random()
    }

    fn apply_dhcp(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(t) => self.send_dhcp(now, t),
                Action::Configure(lease) => {
                    let secs = lease.duration.secs();
                    let label = if secs > u32::MAX as u64 {
                        "infinite".to_string()
                    } else {
                        format!("{secs} sec")
                    };
                    self.configure(Some(lease.config), &label)
                }
                Action::Deconfigure => self.configure(None, ""),
            }
        }
    }

    fn send_dhcp(&mut self, now: Instant, t: dhcp::Transmit) {
        let len = t.message.buffer_len();
        let _ = self.iface.send_udp(
            now,
            t.src,
            t.dst,
            wire::dhcp::CLIENT_PORT,
            wire::dhcp::SERVER_PORT,
            len,
            |buf| t.message.emit(buf),
        );
    }

    /// Runs the timers due at `now` (DHCP, ARP retries).
    pub fn poll_timers(&mut self, now: Instant) {
        if let Some(client) = self.dhcp.as_mut() {
            if client.poll_at() <= now {
                let actions = client.poll(now);
                self.apply_dhcp(now, actions);
            }
        }
        self.iface.poll(now);
        for hop in self.iface.take_unresolved() {
            let iface = &self.iface;
            self.tcp.unreachable_through(|remote| match remote {
                IpAddr::V4(remote) => iface.gateway_to(remote) == Some(hop),
                IpAddr::V6(_) => false,
            });
        }
        for hop in self.iface.take_unresolved_v6() {
            let host = self.iface.ipv6();
            self.tcp.unreachable_through(|remote| match remote {
                IpAddr::V6(remote) => host.and_then(|h| h.next_hop(now, remote)) == Some(hop),
                IpAddr::V4(_) => false,
            });
        }
        self.tcp.poll(now);
        self.poll_mdns(now);
        self.dispatch(now);
        self.wake_ups.retain(|&at| at > now);
    }

    /// Makes `at` a time the engine's timers run (a round that counts as
    /// progress), for a call whose own deadline is not the engine's: RFC
    /// 8305's resolution delay (`runtime::ops::Resolve`). Bounded: beyond
    /// [`MAX_WAKE_UPS`] pending the latest is kept, the earliest dropped
    /// (its caller is woken by the next anyway, later).
    pub fn wake_at(&mut self, at: Instant) {
        if self.wake_ups.len() >= MAX_WAKE_UPS {
            self.wake_ups.sort_unstable();
            self.wake_ups.remove(0);
        }
        self.wake_ups.push(at);
    }

    /// The earliest time at which [`Stack::poll_timers`] has work.
    pub fn poll_at(&self) -> Option<Instant> {
        let dhcp = self.dhcp.as_ref().map(|d| d.poll_at());
        let dns = self.resolver.poll_at();
        let looped = self.looped_waiting().then_some(Instant::ZERO);
        let mdns = self.mdns_poll_at();
        let wake_up = self.wake_ups.iter().min().copied();
        [
            self.iface.poll_at(),
            self.tcp.poll_at(),
            dns,
            looped,
            mdns,
            wake_up,
        ]
        .into_iter()
        .fold(dhcp, earliest)
    }

    /// Counts a send whose frames the runtime's driver thread sends.
    pub fn count_tx_handoff(&mut self) {
        self.iface.count_tx_handoff();
    }

    /// Counts a round a user call ran on its way (`runtime/calls.rs`).
    pub fn count_round_in_passing(&mut self) {
        self.iface.count_round_in_passing();
    }

    /// The frames queued to send, as they go on the wire.
    pub fn tx_queued(&self) -> usize {
        self.iface.tx_queued()
    }

    /// Hands queued frames to `send`.
    pub fn drain_tx(&mut self, send: impl FnMut(&[u8])) {
        let tcp = &self.tcp;
        self.iface
            .drain_tx(|t| tcp.sent_text(t.owner, t.from, t.len), send)
    }

    /// One round: every frame the device has, due timers, and every frame
    /// produced, sent. Returns the number of frames received. The round
    /// stops taking frames early once a waiting reader's lent buffer is
    /// full (see `socket/tcp/posted.rs`): the rest wait in the device for
    /// the reader's next buffer, or the next round.
    pub fn poll(&mut self, now: Instant, device: &mut dyn Device) -> io::Result<usize> {
        let mut received = 0;
        loop {
            let mut reader_served = false;
            let n = device.receive(now, &mut |frame, checksum, held| {
                self.process_received(now, frame, checksum, held);
                reader_served |= self.tcp.take_lent_filled();
                if reader_served {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            let n = n.inspect_err(|_| self.take_link(now, device.link()))?;
            received += n;
            self.dispatch(now);
            self.flush(now, device);
            if n == 0 || device.drained() || reader_served {
                break;
            }
        }
        self.take_link(now, device.link());
        self.poll_timers(now);
        self.flush(now, device);
        Ok(received)
    }

    /// Takes in what the device knows of its link (each poll does).
    pub fn take_link(&mut self, now: Instant, link: Link) {
        let returned = link.returns != self.link.returns;
        let mtu_changed = link.mtu != 0 && link.mtu != self.link.mtu;
        self.link = link;
        if returned {
            self.link_returned(now);
        }
        if mtu_changed {
            self.follow_link_mtu(link.mtu);
        }
    }

    /// The interface's MTU is `mtu` (at the first poll, or changed since):
    /// ours follows it, up to the one configured. A link's MTU lowered under
    /// running connections otherwise stalls them: their full segments no
    /// longer leave.
    fn follow_link_mtu(&mut self, mtu: usize) {
        if mtu < ipv4::MIN_MTU {
            log::warn!(
                "the interface's MTU {mtu} cannot carry IPv4: keeping {}",
                self.iface.mtu()
            );
            return;
        }
        let mtu = mtu.min(self.configured_mtu);
        if mtu == self.iface.mtu() {
            return;
        }
        log::info!("MTU {} -> {mtu}, the interface's", self.iface.mtu());
        self.iface.set_mtu(mtu);
        self.tcp.link_mtu_changed(mtu);
    }

    /// The device's link, as the last poll saw it.
    pub fn link(&self) -> LinkState {
        self.link.state
    }

    /// The link was down or gone and is back, maybe to another network, or
    /// to neighbors with new MACs (a peer made again): they are asked for
    /// again, and a DHCP lease is verified (INIT-REBOOT).
    fn link_returned(&mut self, now: Instant) {
        self.iface.forget_neighbors(now);
        if let Some(client) = self.dhcp.as_mut() {
            client.link_returned(now);
        }
        if let Some(mdns) = self.mdns.as_mut() {
            mdns.link_returned(now);
        }
    }
}

/// Why a datagram (UDP or ICMP echo) could not be sent or a socket bound;
/// each maps to the errno a kernel gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpSendError {
    /// The socket was closed (EBADF).
    Closed,
    /// No address yet, or no route to the destination (ENETUNREACH).
    NoRoute,
    /// Larger than an IPv4 datagram can carry (EMSGSIZE).
    TooBig,
    /// To a broadcast address without SO_BROADCAST (EACCES).
    BroadcastDenied,
    /// Port 0 or the unspecified address (EINVAL).
    InvalidDestination,
    /// The peer answered an earlier datagram with port unreachable (ECONNREFUSED).
    Refused,
    /// Queues full (ENOBUFS).
    NoBuffers,
    /// The port is taken (EADDRINUSE).
    AddressInUse,
    /// Not one of our addresses, or no free port (EADDRNOTAVAIL).
    AddressNotAvailable,
}

/// What a datagram the interface would not take means to its sender. As in
/// a kernel, a datagram that waits for ARP and finds the queue full is lost
/// quietly (and counted); a full transmit queue is ENOBUFS, worth a retry.
fn datagram_send_result(reason: DropReason) -> Result<(), UdpSendError> {
    match reason {
        DropReason::TooBig => Err(UdpSendError::TooBig),
        DropReason::NoRoute => Err(UdpSendError::NoRoute),
        DropReason::TxQueueFull => Err(UdpSendError::NoBuffers),
        _ => Ok(()),
    }
}

/// Writes a TCP segment (or a burst of them) into an IP packet: the
/// payload is copied once, from the send buffer into the frame, or not at
/// all when it is sent from where it lies. Where the device cuts bursts
/// (`by_device`) it finishes every segment's checksum, a lone one's too
/// ([`CHECKSUM_ONLY`]), as the kernel's TCP leaves its own to the device:
/// the text is not read for a sum, and a peer on the same host takes the
/// checksum as good without reading it either.
fn emit_tcp(iface: &mut Interface, now: Instant, seg: &Outgoing<'_>, by_device: bool) -> bool {
    let header_len = seg.repr.header_len();
    let payload_len = seg.payload_len();
    match (seg.src, seg.dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let shape = TcpShape::of(seg, seg.segment_size as usize, by_device);
            let header = ipv4::Repr {
                dont_fragment: seg.dont_fragment,
                ..ipv4::Repr::new(src, dst, ipv4::PROTO_TCP, header_len + payload_len, 0)
            };
            let payload = shape.payload(seg);
            let sent = iface.send_ipv4_burst(now, header, payload, |buf| {
                shape.write(buf, seg, (src, dst));
            });
            sent.is_ok()
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            // A router may give the link a smaller MTU than the one the MSS
            // was sized for (RFC 4861 §4.6.4): segments are cut to it.
            let mtu = iface.ipv6().map_or(iface.mtu(), |h| h.mtu(iface.mtu()));
            let room = mtu
                .saturating_sub(wire::ipv6::HEADER_LEN + header_len)
                .max(1);
            let size = match seg.segment_size as usize {
                0 if payload_len <= room => 0,
                0 => room,
                size => size.min(room),
            };
            let shape = TcpShape::of(seg, size, by_device);
            let payload = shape.payload(seg);
            let sent = iface.send_tcp_v6(
                now,
                (src, dst),
                (header_len + payload_len, payload),
                |buf| {
                    shape.write(buf, seg, (src, dst));
                },
            );
            sent.is_ok()
        }
        _ => false, // (no connection crosses families)
    }
}

/// How a segment leaves: cut at `segment_size` or whole, its checksum
/// finished here or by whoever cuts it, its text copied or sent from where
/// it lies. The same for both families.
#[derive(Clone, Copy)]
struct TcpShape<'a> {
    /// The TCP payload of each segment of a burst; 0: not a burst.
    segment_size: usize,
    /// The checksum is left partial (the pseudo-header sum) for the device.
    partial: bool,
    text: Option<Text<'a>>,
}

impl<'a> TcpShape<'a> {
    fn of(seg: &Outgoing<'a>, segment_size: usize, by_device: bool) -> Self {
        let payload_len = seg.payload_len();
        let burst = segment_size > 0 && payload_len > segment_size;
        // Text worth not copying stays in the send buffer until the frame goes.
        let text = seg
            .owner
            .filter(|_| seg.from_send_buffer && payload_len >= TEXT_BY_REFERENCE)
            .map(|owner| Text {
                at: TextRef {
                    owner,
                    from: seg.repr.seq,
                    len: payload_len,
                },
                bytes: seg.payload,
            });
        TcpShape {
            segment_size: if burst { segment_size } else { 0 },
            partial: burst || by_device,
            text,
        }
    }

    /// The IP payload's shape for the interface.
    fn payload(&self, seg: &Outgoing<'_>) -> Payload<'a> {
        let payload_len = seg.payload_len();
        Payload {
            segment_size: match (self.segment_size, self.partial) {
                (0, true) => CHECKSUM_ONLY,
                (size, _) => size as u16,
            },
            segments: match self.segment_size {
                0 => 1,
                size => payload_len.div_ceil(size) as u16,
            },
            written_from: seg.repr.header_len(),
            text: self.text,
        }
    }

    /// Writes the TCP header into `buf` and, unless it stays where it lies,
    /// the text after it.
    fn write<A: PseudoHeader>(&self, buf: &mut [u8], seg: &Outgoing<'_>, (src, dst): (A, A)) {
        let payload_len = seg.payload_len();
        if self.text.is_none() {
            let header_len = seg.repr.header_len();
            let (a, b) = seg.payload;
            let (head, rest) = buf[header_len..][..payload_len].split_at_mut(a.len());
            head.copy_from_slice(a);
            rest.copy_from_slice(b);
        }
        match (self.partial, self.text.is_some()) {
            // The checksum is finished per segment, where it is cut.
            (true, _) => seg.repr.emit_partial(buf, payload_len, src, dst),
            (false, true) => seg.repr.emit_with_text(buf, seg.payload, src, dst),
            (false, false) => seg.repr.emit(buf, payload_len, src, dst),
        }
    }
}

/// Wake-ups pending at once (one per waiting lookup of several families).
const MAX_WAKE_UPS: usize = 256;

/// Below this a segment's text is copied into its frame: a gathering
/// write's extra pieces would cost more than the copy, and the frame must
/// reach the minimum size by itself.
const TEXT_BY_REFERENCE: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::iface::Ipv4Cidr;
    use crate::socket::tcp::Secret;

    /// Everything a stack sends in clear from its random streams: DHCP
    /// xids across restarts and DNS query IDs, as the bytes an observer
    /// collects, in order.
    fn clear_values(seed: u64) -> (Vec<u8>, Stack) {
        let mut stack = Stack::new(StackConfig::dhcp(seed), Instant::ZERO);
        let mut seen = Vec::new();
        for round in 0..8 {
            let client = stack.dhcp.as_mut().unwrap();
            seen.extend_from_slice(&client.xid().to_le_bytes());
            seen.extend_from_slice(&client.xid().to_be_bytes());
            client.restart(Instant::from_secs(round));
        }
        let cidr: Ipv4Cidr = "10.77.0.2/24".parse().unwrap();
        let dns = Ipv4Addr::new(10, 77, 0, 1);
        stack.configure(
            Some(Ipv4Config::new(cidr, None, vec![dns]).unwrap()),
            "test",
        );
        for i in 0..8 {
            let now = Instant::from_secs(10 + i);
            stack
                .resolver
                .query(now, (&format!("host{i}.lab"), Family::Ipv4), &[dns.into()]);
            for t in stack.resolver.poll(now, |_| false) {
                seen.extend_from_slice(&t.payload[..2]);
                seen.extend_from_slice(&t.src_port.to_be_bytes());
            }
        }
        (seen, stack)
    }

    /// The DHCP client was once seeded like the stream the TCP secret came
    /// from: its first xid was the key's first four bytes.
    #[test]
    fn values_sent_in_clear_do_not_reproduce_the_tcp_secret() {
        for seed in [1, 42, 0xdead_beef] {
            let (seen, stack) = clear_values(seed);
            let key = stack.tcp.secret().key();
            for window in seen.windows(4) {
                assert!(
                    !key.windows(4).any(|k| k == window),
                    "seed {seed}: clear bytes {window:02x?} lie in the secret key"
                );
            }
            // Nor does a key guessed from any 16 observed bytes give our ISNs.
            let local = (Ipv4Addr::new(10, 77, 0, 2).into(), 50000);
            let remote = (Ipv4Addr::new(10, 77, 0, 1).into(), 80);
            let now = Instant::from_secs(30);
            let isn = stack.tcp.secret().isn(now, local, remote);
            for guess in seen.windows(16) {
                let guess = Secret::new(guess.try_into().unwrap());
                assert_ne!(guess.isn(now, local, remote), isn, "seed {seed}");
            }
        }
    }
}
