//! Ingress dispatch and egress routing for one Ethernet interface.

use super::ipv6::Link as Ipv6Link;
use super::multicast::Memberships;
use super::neighbor::NeighborAction;
use super::reassembly::{Outcome, Reassembler, ReassemblyConfig};
use super::rx::RxChecksum;
use super::token_bucket::TokenBucket;
use super::{
    segment_burst, Counters, DropReason, Ipv4Config, Ipv6Config, Ipv6Host, NeighborCache,
    NeighborConfig, TextRef, TxFrame, TxQueue,
};
use crate::time::{earliest, Duration, Instant};
use crate::wire::{
    arp, ethernet, icmp, igmp, ipv4, tcp, udp, Error as WireError, Ipv4Addr, MacAddress,
};
use std::net::IpAddr;

/// An (address, port) pair.
type Endpoint = (Ipv4Addr, u16);

/// The stack's own MAC unless told otherwise (locally administered, as the seed's).
pub const DEFAULT_MAC: MacAddress = MacAddress([0x02, 0x00, 0x01, 0x02, 0x03, 0x77]);
pub const DEFAULT_MTU: usize = 1500;

/// The shape of an IP payload sent with [`Interface::send_ipv4_burst`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The TCP payload of each segment a burst is cut into; 0: one packet;
    /// [`CHECKSUM_ONLY`](super::CHECKSUM_ONLY): one packet whose checksum the device finishes.
    pub segment_size: u16,
    /// How many segments (each takes an IP identification).
    pub segments: u16,
    /// `fill` writes every byte of the payload from this offset on, so the
    /// device queue need not zero them first (`TxQueue::push_burst`).
    pub written_from: usize,
    /// The end of the payload, which stays where it is until the frame is
    /// sent (see [`TextRef`]); `fill` then writes what comes before it.
    pub text: Option<Text<'a>>,
}

/// Text sent from where it lies: where that is, and the bytes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    pub at: TextRef,
    pub bytes: (&'a [u8], &'a [u8]),
}

impl Payload<'_> {
    /// One packet whose payload buffer starts zeroed.
    pub const WHOLE: Payload<'static> = Payload {
        segment_size: 0,
        segments: 1,
        written_from: usize::MAX,
        text: None,
    };
}

#[derive(Debug, Clone)]
pub struct InterfaceConfig {
    pub mac: MacAddress,
    pub mtu: usize,
    pub neighbors: NeighborConfig,
    pub reassembly: ReassemblyConfig,
}

impl Default for InterfaceConfig {
    fn default() -> Self {
        InterfaceConfig {
            mac: DEFAULT_MAC,
            mtu: DEFAULT_MTU,
            neighbors: NeighborConfig::default(),
            reassembly: ReassemblyConfig::default(),
        }
    }
}

/// A UDP datagram for the stack's sockets or services, borrowed from the frame.
#[derive(Debug, Clone, Copy)]
pub struct UdpDelivery<'a> {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
    /// The whole IPv4 packet, for an ICMP error that quotes it.
    pub packet: &'a [u8],
    /// Sent to a broadcast address: never answered with an ICMP error.
    pub broadcast: bool,
}

/// A UDP datagram over IPv6 for the stack's sockets, borrowed from the frame.
#[derive(Debug, Clone, Copy)]
pub struct Udp6Delivery<'a> {
    pub src: std::net::Ipv6Addr,
    pub dst: std::net::Ipv6Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
    /// The whole IPv6 packet, for an ICMPv6 error that quotes it.
    pub packet: &'a [u8],
    /// Sent to a group (all nodes): never answered with an ICMPv6 error.
    pub multicast: bool,
}

/// A TCP segment for us, checked, borrowed from the frame.
#[derive(Debug, Clone, Copy)]
pub struct TcpDelivery<'a> {
    pub src: std::net::IpAddr,
    pub dst: std::net::IpAddr,
    pub segment: tcp::Segment<'a>,
}

/// An ICMP or ICMPv6 error about a datagram we sent (RFC 792, RFC 4443
/// §3), with the transport ports it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable {
    pub reason: UnreachableReason,
    /// The quoted datagram's transport (IPv4's protocol, IPv6's next header).
    pub protocol: u8,
    /// Our address and port in the quoted datagram.
    pub local: (IpAddr, u16),
    pub remote: (IpAddr, u16),
    /// The sequence number of a quoted TCP segment (RFC 5927 checks it).
    pub quoted_seq: Option<u32>,
}

/// Why a datagram of ours did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnreachableReason {
    /// The network, host, protocol or port cannot be reached (ICMP codes
    /// 0–3, RFC 1122 §4.2.3.9; every ICMPv6 destination unreachable).
    Destination,
    /// Too big for a link on the way: ICMP's "fragmentation needed and DF
    /// set" (RFC 1191 §4) or ICMPv6's Packet Too Big (RFC 8201).
    TooBig {
        /// The next hop's MTU; 0 from routers older than RFC 1191.
        next_hop_mtu: u32,
        /// The total length of the quoted datagram, for when the MTU is 0.
        quoted_len: u16,
    },
    /// Anything else (source route failed, administratively prohibited, …).
    Other,
}

/// An ICMP echo reply to one of our requests, borrowed from the frame.
#[derive(Debug, Clone, Copy)]
pub struct EchoReply<'a> {
    pub src: std::net::IpAddr,
    pub ident: u16,
    pub seq: u16,
    pub data: &'a [u8],
}

/// What the interface hands up to the stack.
#[derive(Debug, Clone)]
pub enum Delivery<'a> {
    Udp(UdpDelivery<'a>),
    Udp6(Udp6Delivery<'a>),
    Tcp(TcpDelivery<'a>),
    Unreachable(Unreachable),
    EchoReply(EchoReply<'a>),
    /// An IGMP message for the stack's memberships (which need its randomness).
    Igmp(igmp::Message),
    /// A datagram made whole from fragments: an unfragmented IPv4 or IPv6
    /// packet for [`Interface::ingress_reassembled`].
    Reassembled(Vec<u8>),
}

#[derive(Debug)]
pub struct Interface {
    mac: MacAddress,
    mtu: usize,
    config: Option<Ipv4Config>,
    neighbors: NeighborCache,
    tx: TxQueue,
    counters: Counters,
    next_ident: u16,
    icmp_errors: TokenBucket,
    reassembly: Reassembler,
    /// Next hops whose ARP resolution gave up since the stack last asked.
    unresolved: Vec<Ipv4Addr>,
    /// Frames handed in are our own (see [`Interface::set_looping`]).
    looping: bool,
    /// The multicast groups joined (IGMP, RFC 2236).
    multicast: Memberships,
    /// IPv6, when enabled (`ipv6/`).
    ipv6: Option<Ipv6Host>,
}

/// Linux's defaults (net.ipv4.icmp_msgs_per_sec, icmp_msgs_burst).
pub const ICMP_ERRORS_PER_SEC: u64 = 1000;
pub const ICMP_ERROR_BURST: u64 = 50;

/// The largest IPv4 payload (the total length field is 16 bits).
pub const MAX_IPV4_PAYLOAD: usize = 65535 - ipv4::HEADER_LEN;

/// Where an outgoing packet's frame goes.
enum NextHop {
    Mac(MacAddress),
    Resolve(Ipv4Addr),
}

impl Interface {
    pub fn new(config: InterfaceConfig) -> Self {
        Interface {
            mac: config.mac,
            // An MTU that cannot carry IPv4 would leave no room for a fragment.
            mtu: config.mtu.max(ipv4::MIN_MTU),
            config: None,
            neighbors: NeighborCache::new(config.neighbors),
            tx: TxQueue::new(),
            counters: Counters::default(),
            next_ident: 1,
            icmp_errors: TokenBucket::new(ICMP_ERRORS_PER_SEC, ICMP_ERROR_BURST),
            reassembly: Reassembler::new(config.reassembly),
            unresolved: Vec::new(),
            looping: false,
            multicast: Memberships::default(),
            ipv6: None,
        }
    }

    /// Starts IPv6: the link-local address is checked and taken, then
    /// routers are asked for prefixes (`ipv6/`).
    pub fn enable_ipv6(&mut self, now: Instant, config: Ipv6Config, rng: rand::rngs::StdRng) {
        self.ipv6 = Some(Ipv6Host::new(now, config, self.mac, rng));
    }

    /// IPv6's addresses, routers and neighbors, when enabled.
    pub fn ipv6(&self) -> Option<&Ipv6Host> {
        self.ipv6.as_ref()
    }

    /// Sends an ICMPv6 echo request to `dst` (see [`Ipv6Host::send_echo`]).
    pub fn send_echo_v6(
        &mut self,
        now: Instant,
        dst: std::net::Ipv6Addr,
        echo: &crate::wire::icmpv6::Echo<'_>,
    ) -> Result<(), DropReason> {
        let mut result = Err(DropReason::NoRoute);
        self.with_ipv6(|host, link| result = host.send_echo(now, link, dst, echo));
        result
    }

    /// Sends a UDP datagram over IPv6 (see [`Ipv6Host::send_udp`]), to a
    /// group with hop limit 1.
    pub fn send_udp_v6(
        &mut self,
        now: Instant,
        addresses: (std::net::Ipv6Addr, std::net::Ipv6Addr),
        ports: (u16, u16),
        payload: &[u8],
    ) -> Result<(), DropReason> {
        self.send_udp_v6_with_hops(now, addresses, (ports.0, ports.1, 1), payload)
    }

    /// As [`Interface::send_udp_v6`], to a group with hop limit `ports.2`.
    pub fn send_udp_v6_with_hops(
        &mut self,
        now: Instant,
        addresses: (std::net::Ipv6Addr, std::net::Ipv6Addr),
        ports: (u16, u16, u8),
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let mut result = Err(DropReason::NoRoute);
        self.with_ipv6(|host, link| result = host.send_udp(now, link, addresses, ports, payload));
        result
    }

    /// A socket joins the IPv6 group `group`: the host reports it if new (MLDv2).
    pub fn join_multicast_v6(&mut self, now: Instant, group: std::net::Ipv6Addr) {
        self.with_ipv6(|host, link| host.join_group(now, link, group));
    }

    /// A socket leaves the IPv6 group `group`: the last says so.
    pub fn leave_multicast_v6(&mut self, now: Instant, group: std::net::Ipv6Addr) {
        self.with_ipv6(|host, link| host.leave_group(now, link, group));
    }

    /// Answers an IPv6 datagram no socket takes with a port unreachable.
    pub fn send_port_unreachable_v6(&mut self, now: Instant, datagram: &Udp6Delivery<'_>) {
        self.counters.count_drop(DropReason::UdpNoListener);
        if !datagram.multicast {
            let packet = datagram.packet;
            self.with_ipv6(|host, link| host.refuse_port(now, link, packet));
        }
    }

    /// Lends the transmit side to the IPv6 host for one call.
    fn with_ipv6(&mut self, act: impl FnOnce(&mut Ipv6Host, &mut Ipv6Link<'_>)) {
        if let Some(host) = self.ipv6.as_mut() {
            let mut link = Ipv6Link {
                tx: &mut self.tx,
                counters: &mut self.counters,
                mac: self.mac,
                mtu: self.mtu,
                looping: self.looping,
                reassembly: &mut self.reassembly,
            };
            act(host, &mut link);
        }
    }

    pub fn mac(&self) -> MacAddress {
        self.mac
    }
    pub fn ipv4_config(&self) -> Option<&Ipv4Config> {
        self.config.as_ref()
    }

    /// Whether a datagram to `dst` can go anywhere. RFC 1122 §3.2.1.3:
    /// "this network" (0/8) is a source only, and loopback (127/8) "MUST
    /// NOT appear outside a host", which has no loopback interface here. Our
    /// own address is reached without the wire (`stack/loopback.rs`).
    pub fn reaches(&self, dst: Ipv4Addr) -> bool {
        let [first, ..] = dst.octets();
        first != 0 && first != 127
    }

    /// A source no other host may have, in a datagram from the wire
    /// (RFC 1122 §3.2.1.3; Linux's "martian source"): loopback, "this
    /// network" but for 0.0.0.0 (a host asking DHCP for an address), or our
    /// own address, which only our own datagrams carry (`looping`).
    fn is_martian_source(&self, src: Ipv4Addr) -> bool {
        let own = self.config.as_ref().map(|c| c.cidr.address);
        (!self.reaches(src) && !src.is_unspecified()) || Some(src) == own
    }

    /// Frames handed in from now on are our own, delivered to ourselves
    /// (`stack/loopback.rs`), until called again with false.
    pub fn set_looping(&mut self, looping: bool) {
        self.looping = looping;
    }

    /// The link came back (see `Stack::take_link`): neighbors are asked for again.
    pub fn forget_neighbors(&mut self, now: Instant) {
        self.neighbors.forget_resolved();
        if let Some(host) = self.ipv6.as_mut() {
            host.restart(now);
        }
    }

    /// The ARP cache, as `arp -n` lists it.
    pub fn neighbors(&self, now: Instant) -> Vec<super::neighbor::Neighbor> {
        self.neighbors.entries(now)
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// The link's MTU changed (see `Stack::take_link`).
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
    }
    /// Datagrams being reassembled and the payload bytes they hold.
    pub fn reassembly_usage(&self) -> (usize, usize) {
        self.reassembly.usage()
    }
    pub fn count_drop(&mut self, reason: DropReason) {
        self.counters.count_drop(reason);
    }
    pub fn count_text_held(&mut self) {
        self.counters.texts_held_in += 1;
    }
    pub fn count_tx_handoff(&mut self) {
        self.counters.tx_handed_off += 1;
    }
    pub fn count_round_in_passing(&mut self) {
        self.counters.rounds_in_passing += 1;
    }

    /// Installs or removes the IPv4 configuration. A new address is announced
    /// with a gratuitous ARP (RFC 5227 §3) so that peers update stale caches.
    pub fn set_ipv4_config(&mut self, config: Option<Ipv4Config>) {
        let announce = config.as_ref().map(|c| c.cidr.address);
        self.config = config;
        if let Some(ip) = announce {
            self.multicast.report_all_again();
            self.send_arp(
                arp::Repr {
                    operation: arp::Operation::Request,
                    sender_mac: self.mac,
                    sender_ip: ip,
                    target_mac: MacAddress::ZERO,
                    target_ip: ip,
                },
                MacAddress::BROADCAST,
            );
        }
    }

    /// Replaces the configuration without announcing it (a renewed lease with the same address).
    pub fn set_ipv4_config_quiet(&mut self, config: Ipv4Config) {
        self.config = Some(config);
    }

    /// Handles one received frame. ARP and ICMP echo are answered here;
    /// transport segments and ICMP errors are returned for the stack.
    /// `checksum`: what the device knows of the transport checksum (a
    /// frame from the host's kernel may carry none yet; see [`RxChecksum`]).
    /// A frame longer than the MTU is a super-frame (a peer's TSO or GRO
    /// burst handed over whole) and is taken as the one segment it is.
    pub fn ingress<'a>(
        &mut self,
        now: Instant,
        frame: &'a [u8],
        checksum: RxChecksum,
    ) -> Option<Delivery<'a>> {
        if !self.looping {
            // (Our own frames delivered to ourselves came from no device.)
            self.counters.frames_in += 1;
            self.counters.bytes_in += frame.len() as u64;
            if frame.len() > ethernet::HEADER_LEN + self.mtu {
                self.counters.bursts_in += 1;
            }
        }
        if checksum.trusted() && !self.looping {
            self.counters.checksums_offloaded_in += 1;
        }
        let eth = match ethernet::Frame::new_checked(frame) {
            Ok(f) => f,
            Err(_) => return self.dropped(DropReason::EthernetTruncated),
        };
        let dst = eth.dst();
        // (A multicast group's frames are sorted by their IP destination.)
        if dst != self.mac && !dst.is_broadcast() && !dst.is_multicast() {
            return self.dropped(DropReason::OtherHost);
        }
        match eth.ethertype() {
            ethernet::ETHERTYPE_ARP => {
                self.process_arp(now, eth.payload());
                None
            }
            ethernet::ETHERTYPE_IPV4 => self.process_ipv4(now, eth.payload(), checksum.trusted()),
            ethernet::ETHERTYPE_IPV6 if self.ipv6.is_some() => {
                let mut delivery = None;
                let l4_trusted = checksum.trusted();
                self.with_ipv6(|host, link| {
                    delivery = host.ingress(now, link, (eth.src(), l4_trusted), eth.payload());
                });
                delivery
            }
            _ => self.dropped(DropReason::UnknownEthertype),
        }
    }

    fn dropped<T>(&mut self, reason: DropReason) -> Option<T> {
        self.counters.count_drop(reason);
        None
    }

    /// RFC 826 "Packet Reception", with the merge rule.
    fn process_arp(&mut self, now: Instant, payload: &[u8]) {
        let packet = match arp::Repr::parse(payload) {
            Ok(p) => p,
            Err(_) => return self.counters.count_drop(DropReason::ArpMalformed),
        };
        let Some(our_ip) = self.config.as_ref().map(|c| c.cidr.address) else {
            return; // nothing to answer for or route to yet
        };
        if !packet.sender_mac.is_unicast() {
            return; // nonsense teaches us nothing
        }
        if packet.sender_ip.is_unspecified() {
            // RFC 5227 §2.1.1 probe: another host is about to take our
            // address unless we defend it. As Linux does, the answer goes
            // to the prober's MAC, for its unspecified address; nothing is learnt.
            if packet.operation == arp::Operation::Request && packet.target_ip == our_ip {
                let reply = arp::Repr {
                    operation: arp::Operation::Reply,
                    sender_mac: self.mac,
                    sender_ip: our_ip,
                    target_mac: packet.sender_mac,
                    target_ip: Ipv4Addr::UNSPECIFIED,
                };
                self.send_arp(reply, packet.sender_mac);
            }
            return;
        }
        if packet.sender_ip == our_ip {
            if packet.sender_mac != self.mac {
                log::warn!("address conflict: {} claims {our_ip}", packet.sender_mac);
                self.counters.count_drop(DropReason::ArpConflict);
            }
            return;
        }
        let for_us = packet.target_ip == our_ip;
        let (neighbors, tx, counters) = (&mut self.neighbors, &mut self.tx, &mut self.counters);
        neighbors.learn(now, packet.sender_ip, packet.sender_mac, for_us, |frame| {
            push_frame(tx, counters, frame)
        });
        if for_us && packet.operation == arp::Operation::Request {
            self.send_arp(
                arp::Repr {
                    operation: arp::Operation::Reply,
                    sender_mac: self.mac,
                    sender_ip: our_ip,
                    target_mac: packet.sender_mac,
                    target_ip: packet.sender_ip,
                },
                packet.sender_mac,
            );
        }
    }

    fn send_arp(&mut self, packet: arp::Repr, dst: MacAddress) {
        let Some(buf) = self.tx.push(ethernet::HEADER_LEN + arp::PACKET_LEN) else {
            return self.counters.count_drop(DropReason::TxQueueFull);
        };
        ethernet::Repr {
            dst,
            src: self.mac,
            ethertype: ethernet::ETHERTYPE_ARP,
        }
        .emit(buf);
        packet.emit(&mut buf[ethernet::HEADER_LEN..]);
    }

    fn send_arp_request(&mut self, target_ip: Ipv4Addr) {
        self.send_arp_request_to(target_ip, MacAddress::BROADCAST);
    }

    /// An ARP request for `target_ip`, broadcast, or to `to` to confirm a
    /// neighbor we know (RFC 1122 §2.3.2.1: unicast polling).
    fn send_arp_request_to(&mut self, target_ip: Ipv4Addr, to: MacAddress) {
        let sender_ip = self
            .config
            .as_ref()
            .map_or(Ipv4Addr::UNSPECIFIED, |c| c.cidr.address);
        self.send_arp(
            arp::Repr {
                operation: arp::Operation::Request,
                sender_mac: self.mac,
                sender_ip,
                target_mac: MacAddress::ZERO,
                target_ip,
            },
            to,
        );
    }

    /// `l4_trusted`: the TCP or UDP checksum needs no verifying.
    fn process_ipv4<'a>(
        &mut self,
        now: Instant,
        payload: &'a [u8],
        l4_trusted: bool,
    ) -> Option<Delivery<'a>> {
        let packet = match ipv4::Packet::new_checked(payload) {
            Ok(p) => p,
            Err(_) => return self.dropped(DropReason::Ipv4Malformed),
        };
        if !packet.verify_checksum() {
            return self.dropped(DropReason::Ipv4Checksum);
        }
        let dst = packet.dst();
        let (to_us, broadcast) = match &self.config {
            Some(c) => (dst == c.cidr.address, c.is_broadcast(dst)),
            None => (false, dst.is_broadcast()),
        };
        // While unconfigured (DHCP), UDP to any address is taken, so that a server's
        // unicast OFFER to the address it offers reaches us (RFC 2131 §4.1).
        let unconfigured_udp = self.config.is_none() && packet.protocol() == ipv4::PROTO_UDP;
        let group = dst.is_multicast() && self.multicast.is_member(dst);
        if !(to_us || broadcast || group || unconfigured_udp) {
            return self.dropped(DropReason::Ipv4NotForUs);
        }
        if !self.looping && self.is_martian_source(packet.src()) {
            return self.dropped(DropReason::Ipv4MartianSource);
        }
        if packet.is_fragment() {
            let outcome = self.reassembly.add(now, &packet);
            self.report_reassembly_timeouts(now); // others that expired meanwhile
            self.reassembly.count_evicted(&mut self.counters);
            return match outcome {
                Outcome::Held => None,
                Outcome::Complete(whole) => Some(Delivery::Reassembled(whole)),
                Outcome::Dropped(reason) => self.dropped(reason),
            };
        }
        match packet.protocol() {
            ipv4::PROTO_ICMP => {
                if to_us {
                    let addresses = (packet.src(), dst, packet.options());
                    self.process_icmp(now, addresses, packet.payload())
                } else {
                    // RFC 1122 §3.2.2.6 lets a host ignore broadcast echo; Linux does too.
                    self.dropped(DropReason::IcmpUnhandled)
                }
            }
            ipv4::PROTO_IGMP if to_us || group => match igmp::Message::parse(packet.payload()) {
                Ok(message) => Some(Delivery::Igmp(message)),
                Err(_) => self.dropped(DropReason::IgmpMalformed),
            },
            ipv4::PROTO_UDP => {
                let checked = if l4_trusted {
                    udp::Datagram::new_unverified(packet.payload())
                } else {
                    udp::Datagram::new_checked(packet.payload(), packet.src(), dst)
                };
                match checked {
                    Ok(d) => Some(Delivery::Udp(UdpDelivery {
                        src: packet.src(),
                        dst,
                        src_port: d.src_port(),
                        dst_port: d.dst_port(),
                        payload: d.payload(),
                        packet: packet.as_bytes(),
                        broadcast: !to_us,
                    })),
                    Err(WireError::Checksum) => self.dropped(DropReason::UdpChecksum),
                    Err(_) => self.dropped(DropReason::UdpMalformed),
                }
            }
            ipv4::PROTO_TCP if to_us => {
                let checked = if l4_trusted {
                    tcp::Segment::new_unverified(packet.payload())
                } else {
                    tcp::Segment::new_checked(packet.payload(), packet.src(), dst)
                };
                match checked {
                    Ok(segment) => Some(Delivery::Tcp(TcpDelivery {
                        src: packet.src().into(),
                        dst: dst.into(),
                        segment,
                    })),
                    Err(WireError::Checksum) => self.dropped(DropReason::TcpChecksum),
                    Err(_) => self.dropped(DropReason::TcpMalformed),
                }
            }
            // TCP to a broadcast address is meaningless (RFC 1122 §4.2.3.10).
            ipv4::PROTO_TCP => self.dropped(DropReason::TcpMalformed),
            _ => self.dropped(DropReason::Ipv4UnknownProtocol),
        }
    }

    /// Hands up a reassembled datagram (from [`Delivery::Reassembled`]) as
    /// if it had arrived whole.
    pub fn ingress_reassembled<'a>(
        &mut self,
        now: Instant,
        packet: &'a [u8],
    ) -> Option<Delivery<'a>> {
        // Fragments cross the wire with their checksum whole.
        if packet.first().is_some_and(|b| b >> 4 == 6) {
            let mut delivery = None;
            self.with_ipv6(|host, link| {
                delivery = host.ingress_packet(now, link, (None, false), packet)
            });
            return delivery;
        }
        self.process_ipv4(now, packet, false)
    }

    /// RFC 9293 §3.10.7.1: the reset for a segment no connection takes.
    pub fn send_tcp_reset(&mut self, now: Instant, tcp: &TcpDelivery<'_>) {
        self.counters.count_drop(DropReason::TcpNoListener);
        let Some(rst) = tcp::Repr::reset_for(&tcp.segment) else {
            return;
        };
        let len = rst.header_len();
        match (tcp.dst, tcp.src) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let _ = self.send_ipv4(now, src, dst, ipv4::PROTO_TCP, len, |buf| {
                    rst.emit(buf, 0, src, dst)
                });
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let shape = (len, Payload::WHOLE);
                let _ = self.send_tcp_v6(now, (src, dst), shape, |buf| rst.emit(buf, 0, src, dst));
            }
            _ => {} // (no segment crosses families)
        }
    }

    /// Sends a TCP segment over IPv6 (`len` bytes), or a burst shaped as
    /// `payload` says, as [`Interface::send_ipv4_burst`] does over IPv4,
    /// through the IPv6 host.
    pub fn send_tcp_v6(
        &mut self,
        now: Instant,
        addresses: (std::net::Ipv6Addr, std::net::Ipv6Addr),
        shape: (usize, Payload),
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let mut result = Err(DropReason::NoRoute);
        self.with_ipv6(|host, link| result = host.send_tcp(now, link, addresses, shape, fill));
        result
    }

    /// RFC 1122 §3.2.2: an ICMP port unreachable for a datagram nobody
    /// receives, never for broadcasts or for sources that are not one host,
    /// and at most [`ICMP_ERRORS_PER_SEC`] a second (burst [`ICMP_ERROR_BURST`]).
    pub fn send_port_unreachable(&mut self, now: Instant, datagram: &UdpDelivery<'_>) {
        let src = datagram.src;
        if datagram.broadcast || src.is_broadcast() || src.is_multicast() || src.is_unspecified() {
            return;
        }
        if !self.icmp_errors.take(now) {
            return;
        }
        let Some(our_ip) = self.config.as_ref().map(|c| c.cidr.address) else {
            return;
        };
        let msg = icmp::ErrorMessage {
            msg_type: icmp::TYPE_DEST_UNREACHABLE,
            code: icmp::CODE_PORT_UNREACHABLE,
            next_hop_mtu: 0,
            original: datagram.packet,
        };
        let _ = self.send_ipv4(now, our_ip, src, ipv4::PROTO_ICMP, msg.len(), |buf| {
            msg.emit(buf)
        });
    }

    /// RFC 792: answer echo requests with the same identifier, sequence and data.
    fn process_icmp<'a>(
        &mut self,
        now: Instant,
        (src, dst, ip_options): (Ipv4Addr, Ipv4Addr, &[u8]),
        payload: &'a [u8],
    ) -> Option<Delivery<'a>> {
        let packet = match icmp::Packet::new_checked(payload) {
            Ok(p) => p,
            Err(WireError::Checksum) => return self.dropped(DropReason::IcmpChecksum),
            Err(_) => return self.dropped(DropReason::IcmpMalformed),
        };
        if packet.msg_type() == icmp::TYPE_DEST_UNREACHABLE {
            return match quoted_ports(packet.data()) {
                Some((protocol, local, remote)) => {
                    let quote = packet.data();
                    let ihl = (quote[0] & 0x0f) as usize * 4;
                    let quoted_seq = (protocol == ipv4::PROTO_TCP)
                        .then(|| quote.get(ihl + 4..ihl + 8))
                        .flatten()
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    let reason = match packet.code() {
                        0..=3 => UnreachableReason::Destination,
                        icmp::CODE_FRAGMENTATION_NEEDED => UnreachableReason::TooBig {
                            next_hop_mtu: packet.next_hop_mtu().into(),
                            quoted_len: u16::from_be_bytes([quote[2], quote[3]]),
                        },
                        _ => UnreachableReason::Other,
                    };
                    Some(Delivery::Unreachable(Unreachable {
                        reason,
                        protocol,
                        local: (local.0.into(), local.1),
                        remote: (remote.0.into(), remote.1),
                        quoted_seq,
                    }))
                }
                None => self.dropped(DropReason::IcmpMalformed),
            };
        }
        if packet.msg_type() == icmp::TYPE_ECHO_REPLY && packet.code() == 0 {
            return Some(Delivery::EchoReply(EchoReply {
                src: src.into(),
                ident: packet.echo_ident(),
                seq: packet.echo_seq(),
                data: packet.data(),
            }));
        }
        if packet.msg_type() != icmp::TYPE_ECHO_REQUEST || packet.code() != 0 {
            return self.dropped(DropReason::IcmpUnhandled);
        }
        let reply = icmp::Echo {
            reply: true,
            ident: packet.echo_ident(),
            seq: packet.echo_seq(),
            data: packet.data(),
        };
        let mut header = ipv4::Repr::new(dst, src, ipv4::PROTO_ICMP, reply.len(), 0);
        // RFC 1122 §3.2.2.6: a Record Route option comes back, with our
        // address recorded (as Linux does; other options are not echoed).
        if let Some(route) = ipv4::record_route(ip_options) {
            header.options = ipv4::HeaderOptions::record_route_with(route, dst);
        }
        let _ = self.send_ipv4_burst(now, header, Payload::WHOLE, |buf| reply.emit(buf));
        None
    }

    /// Sends a UDP datagram; `fill` writes the payload of `payload_len` bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn send_udp(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        self.send_ipv4(
            now,
            src,
            dst,
            ipv4::PROTO_UDP,
            udp::HEADER_LEN + payload_len,
            |buf| {
                fill(&mut buf[udp::HEADER_LEN..]);
                udp::Repr { src_port, dst_port }.emit(buf, payload_len, src, dst);
            },
        )
    }

    /// A UDP datagram with IP TTL `ttl` rather than the unicast default:
    /// to a multicast group with the socket's IP_MULTICAST_TTL, or mDNS's
    /// 255 (RFC 6762 §11).
    pub fn send_udp_with_ttl(
        &mut self,
        now: Instant,
        ttl: u8,
        (src, dst): (Ipv4Addr, Ipv4Addr),
        (src_port, dst_port): (u16, u16),
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let len = udp::HEADER_LEN + payload.len();
        let header = ipv4::Repr {
            ttl,
            ..ipv4::Repr::new(src, dst, ipv4::PROTO_UDP, len, 0)
        };
        self.send_ipv4_burst(now, header, Payload::WHOLE, |buf| {
            buf[udp::HEADER_LEN..].copy_from_slice(payload);
            udp::Repr { src_port, dst_port }.emit(buf, payload.len(), src, dst);
        })
    }

    /// Routes and emits an IPv4 packet whose payload `fill` writes. Packets to
    /// an unresolved next hop wait in the neighbour cache while ARP runs.
    pub fn send_ipv4(
        &mut self,
        now: Instant,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        payload_len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let header = ipv4::Repr::new(src, dst, protocol, payload_len, 0);
        self.send_ipv4_burst(now, header, Payload::WHOLE, fill)
    }

    /// As [`Interface::send_ipv4`] for a packet shaped as `payload` says: a
    /// TCP burst is written by `fill` as one packet and cut apart by the
    /// device or by [`segment_burst`]; the caller sizes the segments for
    /// the MTU; each takes its own IP identification.
    /// `header` gives addresses, protocol, length, DF and options; the
    /// identification is ours to fill.
    pub fn send_ipv4_burst(
        &mut self,
        now: Instant,
        header: ipv4::Repr,
        payload: Payload,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let ident = self.next_ident;
        self.next_ident = self.next_ident.wrapping_add(payload.segments.max(1));
        let ip = ipv4::Repr { ident, ..header };
        let result = self.route_and_emit(now, ip, payload, fill);
        if let Err(reason) = result {
            self.counters.count_drop(reason);
        }
        result
    }

    fn route_and_emit(
        &mut self,
        now: Instant,
        ip: ipv4::Repr,
        payload: Payload,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let payload_len = ip.payload_len;
        let next_hop = self.next_hop(now, ip.dst)?;
        if ip.header_len() + payload_len <= self.mtu || payload.segment_size > 0 {
            return self.emit_frame(now, &next_hop, ip, (0, false), payload, fill);
        }
        // RFC 791 §3.2: too big for the link, so cut into fragments of a
        // multiple of 8 bytes. TCP sizes its segments and never gets here.
        if ip.protocol == ipv4::PROTO_TCP || payload_len > MAX_IPV4_PAYLOAD {
            return Err(DropReason::TooBig);
        }
        let mut payload = vec![0u8; payload_len];
        fill(&mut payload);
        let per_fragment = (self.mtu - ipv4::HEADER_LEN) & !7;
        for (i, chunk) in payload.chunks(per_fragment).enumerate() {
            let offset = i * per_fragment;
            let more = offset + chunk.len() < payload_len;
            // Options that are not copied into fragments (Record Route,
            // RFC 791 §3.1) are left out of all of them; we send no others.
            let part = ipv4::Repr {
                payload_len: chunk.len(),
                options: ipv4::HeaderOptions::NONE,
                ..ip
            };
            self.emit_frame(
                now,
                &next_hop,
                part,
                (offset, more),
                Payload::WHOLE,
                |buf| buf.copy_from_slice(chunk),
            )?;
        }
        Ok(())
    }

    /// Writes one frame (a whole packet, one fragment at `fragment` = (offset,
    /// more fragments), or a TCP burst of `segment_size` segments) for `next_hop`.
    fn emit_frame(
        &mut self,
        now: Instant,
        next_hop: &NextHop,
        ip: ipv4::Repr,
        fragment: (usize, bool),
        payload: Payload,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let (offset, more) = fragment;
        let segment_size = payload.segment_size;
        let headers = ethernet::HEADER_LEN + ip.header_len();
        let frame_len = headers + ip.payload_len;
        // With the text apart, what we write ends where it begins.
        let written_len = frame_len - payload.text.map_or(0, |t| t.at.len);
        let write = |buf: &mut [u8], dst_mac: MacAddress, src_mac: MacAddress| {
            ethernet::Repr {
                dst: dst_mac,
                src: src_mac,
                ethertype: ethernet::ETHERTYPE_IPV4,
            }
            .emit(buf);
            ip.emit_fragment(&mut buf[ethernet::HEADER_LEN..], offset, more);
            fill(&mut buf[headers..written_len]);
        };
        match *next_hop {
            NextHop::Mac(mac) => {
                let buf = match payload.text {
                    Some(text) => self.tx.push_headers(written_len, segment_size, text.at),
                    None => self.tx.push_burst(
                        frame_len,
                        segment_size,
                        headers.saturating_add(payload.written_from),
                    ),
                }
                .ok_or(DropReason::TxQueueFull)?;
                write(buf, mac, self.mac);
                Ok(())
            }
            NextHop::Resolve(hop) => {
                let mut frame = vec![0u8; frame_len.max(ethernet::MIN_FRAME_LEN)];
                write(&mut frame, MacAddress::ZERO, self.mac);
                let mut result = Ok(());
                for frame in waiting_frames(frame, (written_len..frame_len, payload)) {
                    match self.neighbors.enqueue(now, hop, frame) {
                        Ok(true) => self.send_arp_request(hop),
                        Ok(false) => {}
                        Err(_) => result = Err(DropReason::NeighborQueueFull),
                    }
                }
                result
            }
        }
    }

    /// Next hops whose resolution gave up since the last call.
    pub fn take_unresolved(&mut self) -> Vec<Ipv4Addr> {
        std::mem::take(&mut self.unresolved)
    }

    /// IPv6 neighbors whose resolution gave up since the last call.
    pub fn take_unresolved_v6(&mut self) -> Vec<std::net::Ipv6Addr> {
        self.ipv6
            .as_mut()
            .map(|h| h.take_unresolved())
            .unwrap_or_default()
    }

    /// The neighbor a unicast datagram to `dst` goes through: `dst` on the
    /// link, else the gateway; None without a route.
    pub fn gateway_to(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        let config = self.config.as_ref()?;
        if config.cidr.contains(dst) {
            Some(dst)
        } else {
            config.gateway
        }
    }

    /// RFC 1122 §3.3.1: on-link destinations directly, the rest via the gateway.
    fn next_hop(&self, now: Instant, dst: Ipv4Addr) -> Result<NextHop, DropReason> {
        if !self.reaches(dst) {
            return Err(DropReason::NoRoute);
        }
        if dst.is_broadcast() {
            return Ok(NextHop::Mac(MacAddress::BROADCAST));
        }
        let config = self.config.as_ref().ok_or(DropReason::NoRoute)?;
        if config.is_broadcast(dst) {
            return Ok(NextHop::Mac(MacAddress::BROADCAST));
        }
        if dst == config.cidr.address {
            return Ok(NextHop::Mac(self.mac)); // delivered to ourselves, not sent
        }
        if dst.is_multicast() {
            // RFC 1112 §6.4: 01:00:5e followed by the low 23 bits of the group.
            let o = dst.octets();
            return Ok(NextHop::Mac(MacAddress([
                0x01,
                0x00,
                0x5e,
                o[1] & 0x7f,
                o[2],
                o[3],
            ])));
        }
        let hop = self.gateway_to(dst).ok_or(DropReason::NoRoute)?;
        Ok(match self.neighbors.lookup(now, hop) {
            Some(mac) => NextHop::Mac(mac),
            None => NextHop::Resolve(hop),
        })
    }

    /// ARP retries and give-ups due at `now`.
    pub fn poll(&mut self, now: Instant) {
        let mut requests = Vec::new();
        let mut lost = 0;
        self.neighbors.poll(now, |action| match action {
            NeighborAction::SendRequest(ip) => requests.push((ip, MacAddress::BROADCAST)),
            NeighborAction::SendProbe(ip, mac) => requests.push((ip, mac)),
            NeighborAction::GaveUp(ip, frames) => {
                log::debug!("ARP for {ip} unanswered; dropping {frames} frames");
                lost += frames;
                self.unresolved.push(ip);
            }
        });
        for _ in 0..lost {
            self.counters.count_drop(DropReason::NeighborUnreachable);
        }
        for (ip, to) in requests {
            self.send_arp_request_to(ip, to);
        }
        self.reassembly.expire(now);
        self.report_reassembly_timeouts(now);
        self.send_igmp_due(now);
        self.with_ipv6(|host, link| host.poll(now, link));
    }

    /// Counts each datagram given up on and, when its fragment zero came,
    /// tells the source with an ICMP time exceeded (RFC 1122 §3.3.2; RFC
    /// 792 type 11 code 1; over IPv6, RFC 8200 §4.5 and RFC 4443 §3.3),
    /// rate-limited like every ICMP error.
    fn report_reassembly_timeouts(&mut self, now: Instant) {
        for timed_out in self.reassembly.take_timed_out() {
            let (IpAddr::V4(src), IpAddr::V4(dst)) = (timed_out.src, timed_out.dst) else {
                self.counters.count_drop(DropReason::Ipv6ReassemblyTimeout);
                if let Some(quote) = timed_out.quote {
                    self.with_ipv6(|host, link| host.reassembly_timed_out(now, link, &quote));
                }
                continue;
            };
            self.counters.count_drop(DropReason::Ipv4ReassemblyTimeout);
            let Some(quote) = timed_out.quote else {
                continue;
            };
            if src.is_broadcast() || src.is_multicast() || src.is_unspecified() {
                continue;
            }
            // Never for a datagram to a broadcast address (RFC 1122 §3.2.2).
            let Some(our_ip) = self.config.as_ref().map(|c| c.cidr.address) else {
                continue;
            };
            if dst != our_ip {
                continue;
            }
            if !self.icmp_errors.take(now) {
                continue;
            }
            let msg = icmp::ErrorMessage {
                msg_type: icmp::TYPE_TIME_EXCEEDED,
                code: icmp::CODE_REASSEMBLY_TIME_EXCEEDED,
                next_hop_mtu: 0,
                original: &quote,
            };
            let _ = self.send_ipv4(now, our_ip, src, ipv4::PROTO_ICMP, msg.len(), |buf| {
                msg.emit(buf)
            });
        }
    }

    pub fn poll_at(&self) -> Option<Instant> {
        let reports = self.multicast.poll_at();
        let ipv6 = self.ipv6.as_ref().and_then(|h| h.poll_at());
        earliest(
            earliest(self.neighbors.poll_at(), self.reassembly.poll_at()),
            earliest(reports, ipv6),
        )
    }

    // ----- multicast (IGMP version 2, RFC 2236 §3; see `multicast.rs`)

    /// Whether datagrams to `group` are taken.
    pub fn is_multicast_member(&self, group: Ipv4Addr) -> bool {
        self.multicast.is_member(group)
    }

    /// The groups joined, with how many members each.
    pub fn multicast_groups(&self) -> impl Iterator<Item = (Ipv4Addr, usize)> + '_ {
        self.multicast.groups()
    }

    /// A socket joins `group` (a multicast address, which
    /// [`Memberships::joinable`] checks): the host reports it if new.
    pub fn join_multicast(&mut self, now: Instant, group: Ipv4Addr) {
        if self.multicast.join(now, group) {
            self.send_igmp_due(now);
        }
    }

    /// A socket leaves `group`: the last to leave says so to the routers.
    pub fn leave_multicast(&mut self, now: Instant, group: Ipv4Addr) {
        if self.multicast.leave(group) {
            self.send_igmp(now, igmp::ALL_ROUTERS, igmp::Message::Leave { group });
        }
    }

    /// A query schedules our reports (randomly within its response time);
    /// another host's report makes ours unneeded.
    pub fn process_igmp(&mut self, now: Instant, message: igmp::Message, rng: &mut impl rand::Rng) {
        match message {
            igmp::Message::Query {
                group,
                max_response,
            } => {
                let max = max_response.max(Duration::from_millis(100));
                self.multicast.query(now, group, max, rng);
                self.send_igmp_due(now);
            }
            igmp::Message::Report { group } => self.multicast.heard_report(group),
            igmp::Message::Leave { .. } => {} // a router's business
        }
    }

    fn send_igmp_due(&mut self, now: Instant) {
        for group in self.multicast.take_due(now) {
            self.send_igmp(now, group, igmp::Message::Report { group });
        }
    }

    /// An IGMP message to `dst`: TTL 1 and Router Alert (RFC 2236 §2), from
    /// our address (none yet: nothing is sent, and the join is reported by
    /// the next query's answer).
    fn send_igmp(&mut self, now: Instant, dst: Ipv4Addr, message: igmp::Message) {
        let Some(src) = self.config.as_ref().map(|c| c.cidr.address) else {
            return;
        };
        let header = ipv4::Repr {
            ttl: 1,
            options: ipv4::HeaderOptions::ROUTER_ALERT,
            ..ipv4::Repr::new(src, dst, ipv4::PROTO_IGMP, igmp::HEADER_LEN, 0)
        };
        let _ = self.send_ipv4_burst(now, header, Payload::WHOLE, |buf| message.emit(buf));
    }

    /// The frames queued to send, as they go on the wire.
    pub fn tx_queued(&self) -> usize {
        self.tx.wire_frames()
    }

    /// Hands every queued frame to `send` as it goes on the wire (bursts cut
    /// into segments), counting them out; `find` gives the text of frames
    /// whose text stayed where it was (see [`TextRef`]).
    pub fn drain_tx<'t>(
        &mut self,
        find: impl Fn(&TextRef) -> Option<(&'t [u8], &'t [u8])>,
        mut send: impl FnMut(&[u8]),
    ) {
        self.drain_tx_batch(find, |frames| {
            frames
                .iter()
                .for_each(|f| f.for_each_segment(&mut |segment| send(segment)))
        });
    }

    /// Takes back the counts [`Interface::drain_tx_batch`] made for frames
    /// that did not go to the device (delivered to ourselves): their wire
    /// frames, bytes and bursts (see [`TxFrame::wire_size`]).
    pub fn uncount_out(&mut self, (frames, bytes, bursts): (u64, u64, u64)) {
        self.counters.frames_out -= frames;
        self.counters.bytes_out -= bytes;
        self.counters.bursts_out -= bursts;
    }

    /// Hands all queued frames to `send` in one slice, counting them out. A
    /// frame whose text `find` no longer has (acknowledged since: a
    /// retransmission an earlier copy made useless) is not sent.
    pub fn drain_tx_batch<'t>(
        &mut self,
        find: impl Fn(&TextRef) -> Option<(&'t [u8], &'t [u8])>,
        send: impl FnOnce(&[TxFrame<'_>]),
    ) {
        let counters = &mut self.counters;
        let mut count_out = |frames: &[TxFrame<'_>]| {
            for f in frames {
                let (count, bytes) = f.wire_size();
                counters.frames_out += count as u64;
                counters.bytes_out += bytes as u64;
                counters.bursts_out += (count > 1) as u64;
            }
        };
        self.tx.drain_batch(|queued| {
            // An empty queue needs no call to the device, and one frame (a
            // request, an ACK) no list of its own.
            if queued.is_empty() {
                return;
            }
            if let [only] = queued {
                if let Some(frame) = only.view(&find) {
                    count_out(std::slice::from_ref(&frame));
                    send(std::slice::from_ref(&frame));
                }
                return;
            }
            let frames: Vec<TxFrame<'_>> = queued.iter().filter_map(|f| f.view(&find)).collect();
            count_out(&frames);
            send(&frames)
        });
    }
}

/// The protocol and the (source, destination) endpoints of the datagram an
/// ICMP error quotes: its IPv4 header and at least 8 bytes (RFC 792).
fn quoted_ports(quote: &[u8]) -> Option<(u8, Endpoint, Endpoint)> {
    let ihl = (*quote.first()? & 0x0f) as usize * 4;
    if quote[0] >> 4 != 4 || ihl < ipv4::HEADER_LEN || quote.len() < ihl + 4 {
        return None;
    }
    let ip = |at: usize| Ipv4Addr::new(quote[at], quote[at + 1], quote[at + 2], quote[at + 3]);
    let port = |at: usize| u16::from_be_bytes([quote[at], quote[at + 1]]);
    Some((quote[9], (ip(12), port(ihl)), (ip(16), port(ihl + 2))))
}

/// A frame (or burst) that waits for its neighbor to resolve, as the frames
/// it becomes on the wire: its text (`payload.text`, to lie at `text_at`)
/// copied in, a burst cut into segments with their checksums finished.
pub(crate) fn waiting_frames(
    mut frame: Vec<u8>,
    (text_at, payload): (std::ops::Range<usize>, Payload),
) -> Vec<Vec<u8>> {
    if let Some(Text { bytes: (a, b), .. }) = payload.text {
        let (head, rest) = frame[text_at].split_at_mut(a.len());
        head.copy_from_slice(a);
        rest.copy_from_slice(b);
    }
    let mut frames = vec![];
    segment_burst(&frame, payload.segment_size as usize, &mut |f| {
        frames.push(f.to_vec())
    });
    frames
}

pub(super) fn push_frame(tx: &mut TxQueue, counters: &mut Counters, frame: &[u8]) {
    match tx.push(frame.len()) {
        Some(buf) => buf[..frame.len()].copy_from_slice(frame),
        None => counters.count_drop(DropReason::TxQueueFull),
    }
}
