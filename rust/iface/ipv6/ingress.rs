//! Receiving IPv6: which packets are ours (RFC 4291 §2.8), extension
//! headers (RFC 8200 §4), echo (RFC 4443 §4), and the errors we owe.

use super::egress::Outgoing;
use super::{AddressState, Ipv6Host, Link};
use crate::iface::reassembly::{self, Outcome};
use crate::iface::{
    Delivery, DropReason, EchoReply, TcpDelivery, Udp6Delivery, Unreachable, UnreachableReason,
};
use crate::time::Instant;
use crate::wire::ipv6::{self, HeaderProblem, Ipv6Addr};
use crate::wire::{icmpv6, mld, ndp, tcp, udp, Error as WireError, MacAddress};

impl Ipv6Host {
    /// Handles one IPv6 packet from a frame sent by `src_mac`; `l4_trusted`:
    /// the device vouches for its TCP or UDP checksum (see `iface::RxChecksum`).
    /// What is for the stack comes back: TCP segments, UDP datagrams, echo
    /// replies (its pinger) and port unreachables about its datagrams.
    pub fn ingress<'a>(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src_mac, l4_trusted): (MacAddress, bool),
        bytes: &'a [u8],
    ) -> Option<Delivery<'a>> {
        if src_mac == link.mac && !link.looping {
            // Our own multicast, reflected by the link: a duplicate address
            // detection must not take its own solicitation for another's.
            return dropped(link, DropReason::Ipv6LoopedBack);
        }
        self.ingress_packet(now, link, (Some(src_mac), l4_trusted), bytes)
    }

    /// Handles one IPv6 packet, from the frame of `src_mac` (None: a
    /// reassembled packet, which came in several).
    pub fn ingress_packet<'a>(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src_mac, l4_trusted): (Option<MacAddress>, bool),
        bytes: &'a [u8],
    ) -> Option<Delivery<'a>> {
        let Ok(packet) = ipv6::Packet::new_checked(bytes) else {
            return dropped(link, DropReason::Ipv6Malformed);
        };
        let (src, dst) = (packet.src(), packet.dst());
        if src.is_multicast() {
            return dropped(link, DropReason::Ipv6Malformed);
        }
        let tentative = self
            .addresses
            .iter()
            .any(|a| a.address == dst && matches!(a.state, AddressState::Tentative { .. }));
        let unicast = self.is_own(dst);
        if !(unicast || tentative || self.is_listening(dst)) {
            return dropped(link, DropReason::Ipv6NotForUs);
        }
        let upper = match ipv6::upper_layer(&packet) {
            Ok(upper) => upper,
            Err(HeaderProblem::Fragment { at }) if !tentative => {
                return self.fragment(now, link, &packet, at);
            }
            Err(problem) => {
                self.header_problem(now, link, &packet, problem);
                return None;
            }
        };
        match upper.protocol {
            ipv6::NEXT_ICMPV6 => {
                let icmp = match icmpv6::Packet::new_checked(upper.payload, src, dst) {
                    Ok(icmp) => icmp,
                    Err(WireError::Checksum) => return dropped(link, DropReason::Icmpv6Checksum),
                    Err(_) => return dropped(link, DropReason::Icmpv6Malformed),
                };
                let discovery = matches!(
                    icmp.msg_type(),
                    ndp::TYPE_NEIGHBOR_SOLICIT | ndp::TYPE_NEIGHBOR_ADVERT
                );
                if tentative && !discovery {
                    return dropped(link, DropReason::Ipv6NotForUs);
                }
                if icmp.msg_type() == icmpv6::TYPE_ECHO_REPLY && icmp.code() == 0 && unicast {
                    return Some(Delivery::EchoReply(EchoReply {
                        src: src.into(),
                        ident: icmp.echo_ident(),
                        seq: icmp.echo_seq(),
                        data: icmp.data(),
                    }));
                }
                let about_ours = matches!(
                    icmp.msg_type(),
                    icmpv6::TYPE_DEST_UNREACHABLE | icmpv6::TYPE_PACKET_TOO_BIG
                );
                if about_ours && unicast {
                    return self.quoted_error(now, link, &icmp);
                }
                self.process_icmp(now, link, (src_mac, packet.hop_limit()), (src, dst), &icmp);
            }
            _ if tentative => link.counters.count_drop(DropReason::Ipv6NotForUs),
            ipv6::NEXT_NONE => {}
            ipv6::NEXT_UDP => {
                let checked = match l4_trusted {
                    true => udp::Datagram::new_unverified(upper.payload),
                    false => udp::Datagram::new_checked_v6(upper.payload, src, dst),
                };
                return match checked {
                    Ok(d) => Some(Delivery::Udp6(Udp6Delivery {
                        src,
                        dst,
                        src_port: d.src_port(),
                        dst_port: d.dst_port(),
                        payload: d.payload(),
                        packet: packet.as_bytes(),
                        multicast: !unicast,
                    })),
                    Err(WireError::Checksum) => dropped(link, DropReason::UdpChecksum),
                    Err(_) => dropped(link, DropReason::UdpMalformed),
                };
            }
            // TCP to a group is meaningless (RFC 9293 §3.9.1.1 opens to unicast only).
            ipv6::NEXT_TCP if !unicast => link.counters.count_drop(DropReason::TcpMalformed),
            ipv6::NEXT_TCP => {
                let checked = match l4_trusted {
                    true => tcp::Segment::new_unverified(upper.payload),
                    false => tcp::Segment::new_checked(upper.payload, src, dst),
                };
                return match checked {
                    Ok(segment) => Some(Delivery::Tcp(TcpDelivery {
                        src: src.into(),
                        dst: dst.into(),
                        segment,
                    })),
                    Err(WireError::Checksum) => dropped(link, DropReason::TcpChecksum),
                    Err(_) => dropped(link, DropReason::TcpMalformed),
                };
            }
            _ => {
                link.counters.count_drop(DropReason::Ipv6UnknownNextHeader);
                if unicast {
                    let pointer = upper.next_header_at as u32;
                    let error = (
                        icmpv6::TYPE_PARAMETER_PROBLEM,
                        icmpv6::CODE_UNRECOGNIZED_NEXT_HEADER,
                        pointer,
                    );
                    self.send_error(now, link, packet.as_bytes(), error);
                }
            }
        }
        None
    }

    /// A fragment (RFC 8200 §4.5): held until its packet is whole, which
    /// then comes back as [`Delivery::Reassembled`]. A piece not a multiple
    /// of 8 bytes (but the last), or one reaching beyond 65,535 bytes, is
    /// answered with a parameter problem, as §4.5 asks.
    fn fragment<'a>(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        packet: &ipv6::Packet<'_>,
        at: usize,
    ) -> Option<Delivery<'a>> {
        let Some(header) = ipv6::FragmentHeader::parse(&packet.as_bytes()[at..]) else {
            return dropped(link, DropReason::Ipv6Malformed);
        };
        let piece = &packet.as_bytes()[at + ipv6::FRAGMENT_HEADER_LEN..];
        let len = piece.len();
        let problem = if header.more && (len == 0 || len % 8 != 0) {
            Some((icmpv6::CODE_ERRONEOUS_HEADER, 4)) // the payload length
        } else if header.offset + len > u16::MAX as usize {
            Some((icmpv6::CODE_ERRONEOUS_HEADER, at + 2)) // the fragment offset
        } else if header.offset == 0 && !holds_header_chain(header.next_header, piece) {
            Some((icmpv6::CODE_INCOMPLETE_CHAIN, 0))
        } else {
            None
        };
        if let Some((code, pointer)) = problem {
            link.counters.count_drop(DropReason::Ipv6FragmentMalformed);
            if !packet.dst().is_multicast() {
                let error = (icmpv6::TYPE_PARAMETER_PROBLEM, code, pointer as u32);
                self.send_error(now, link, packet.as_bytes(), error);
            }
            return None;
        }
        let outcome = link.reassembly.add_v6(now, packet, at, header);
        link.reassembly.count_evicted(link.counters);
        match outcome {
            Outcome::Held => None,
            Outcome::Complete(whole) => Some(Delivery::Reassembled(whole)),
            Outcome::Dropped(reason) => dropped(link, reassembly::for_ipv6(reason)),
        }
    }

    /// Whether we listen to the group `dst`: all nodes, a group a socket
    /// joined, or the solicited-node group of an address of ours (tentative
    /// ones included, RFC 4862 §5.4.2).
    fn is_listening(&self, dst: Ipv6Addr) -> bool {
        dst == ipv6::ALL_NODES
            || self.is_member(dst)
            || self.addresses.iter().any(|a| {
                a.state != AddressState::Duplicate && ipv6::solicited_node(a.address) == dst
            })
    }

    /// RFC 8200 §4: what a header we cannot process costs the packet.
    fn header_problem(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        packet: &ipv6::Packet<'_>,
        problem: HeaderProblem,
    ) {
        let multicast = packet.dst().is_multicast();
        let (reason, error) = match problem {
            HeaderProblem::Malformed => (DropReason::Ipv6Malformed, None),
            HeaderProblem::Fragment { .. } => (DropReason::Ipv6NotForUs, None), // (tentative)
            HeaderProblem::MisplacedHopByHop { at } => (
                DropReason::Ipv6UnknownNextHeader,
                Some((icmpv6::CODE_UNRECOGNIZED_NEXT_HEADER, at)),
            ),
            HeaderProblem::RoutingSegmentsLeft { at } => (
                DropReason::Ipv6Malformed,
                Some((icmpv6::CODE_ERRONEOUS_HEADER, at)),
            ),
            // §4.2: type 10 reports even to a multicast destination, 11 only to unicast.
            HeaderProblem::UnknownOption { at, report } => (
                DropReason::Ipv6UnknownOption,
                report.then_some((icmpv6::CODE_UNRECOGNIZED_OPTION, at)),
            ),
        };
        link.counters.count_drop(reason);
        let Some((code, at)) = error else {
            return;
        };
        let option_type_10 = matches!(problem, HeaderProblem::UnknownOption { at, .. }
            if packet.as_bytes().get(at).is_some_and(|t| t >> 6 == 2));
        if multicast && !option_type_10 {
            return;
        }
        let error = (icmpv6::TYPE_PARAMETER_PROBLEM, code, at as u32);
        self.send_error(now, link, packet.as_bytes(), error);
    }

    fn process_icmp(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src_mac, hop_limit): (Option<MacAddress>, u8),
        (src, dst): (Ipv6Addr, Ipv6Addr),
        icmp: &icmpv6::Packet<'_>,
    ) {
        match icmp.msg_type() {
            icmpv6::TYPE_ECHO_REQUEST => self.answer_echo(now, link, (src, dst), icmp),
            ndp::TYPE_ROUTER_ADVERT
            | ndp::TYPE_NEIGHBOR_SOLICIT
            | ndp::TYPE_NEIGHBOR_ADVERT
            | ndp::TYPE_REDIRECT => {
                // RFC 4861 §6.1.2, §7.1: only a hop limit of 255 proves the
                // message was not forwarded from off the link; RFC 6980:
                // never one that came in fragments.
                let Some(src_mac) = src_mac.filter(|_| hop_limit == 255) else {
                    return link.counters.count_drop(DropReason::NdpInvalid);
                };
                match ndp::Message::parse(icmp) {
                    Ok(message) => self.process_ndp(now, link, src_mac, (src, dst), message),
                    Err(_) => link.counters.count_drop(DropReason::NdpInvalid),
                }
            }
            mld::TYPE_QUERY => match mld::Query::parse(icmp) {
                // RFC 3810 §5: queries come from link-local addresses.
                Ok(query) if ipv6::is_link_local(src) => self.process_mld_query(now, query),
                _ => link.counters.count_drop(DropReason::Icmpv6Malformed),
            },
            // Others' reports need nothing of us (MLDv2 has no suppression).
            mld::TYPE_V1_REPORT | mld::TYPE_V1_DONE | mld::TYPE_V2_REPORT => {}
            // Router solicitations are for routers (§6.2.6); errors and echo
            // replies about nothing we send yet.
            _ => link.counters.count_drop(DropReason::Icmpv6Unhandled),
        }
    }

    /// A destination unreachable or packet too big quoting a TCP segment or
    /// UDP datagram of ours: its IPv6 header and the transport's ports at
    /// least (and a TCP sequence number, RFC 5927 checks it). Ours never
    /// carry extension headers, so the quote's are not walked.
    fn quoted_error<'a>(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        icmp: &icmpv6::Packet<'_>,
    ) -> Option<Delivery<'a>> {
        let quote = icmp.data();
        let at = ipv6::HEADER_LEN;
        let (Some(&protocol), Some(ports)) = (quote.get(6), quote.get(at..at + 4)) else {
            return dropped(link, DropReason::Icmpv6Malformed);
        };
        let ours = ipv6::ipv6_at(quote, 8);
        // RFC 8201 §4: a Packet Too Big about any packet of ours sizes what
        // we send that way later (datagrams, echo requests; TCP as below).
        if icmp.msg_type() == icmpv6::TYPE_PACKET_TOO_BIG && self.is_own(ours) {
            let mtu = usize::try_from(icmp.parameter()).unwrap_or(usize::MAX);
            self.learn_path_mtu(now, ipv6::ipv6_at(quote, 24), mtu);
        }
        if !matches!(protocol, ipv6::NEXT_UDP | ipv6::NEXT_TCP) || !self.is_own(ours) {
            return dropped(link, DropReason::Icmpv6Unhandled);
        }
        let reason = match icmp.msg_type() {
            icmpv6::TYPE_PACKET_TOO_BIG => UnreachableReason::TooBig {
                next_hop_mtu: icmp.parameter(),
                quoted_len: u16::from_be_bytes([quote[4], quote[5]])
                    .saturating_add(ipv6::HEADER_LEN as u16),
            },
            _ => UnreachableReason::Destination,
        };
        let quoted_seq = (protocol == ipv6::NEXT_TCP)
            .then(|| quote.get(at + 4..at + 8))
            .flatten()
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let port = |i: usize| u16::from_be_bytes([ports[i], ports[i + 1]]);
        Some(Delivery::Unreachable(Unreachable {
            reason,
            protocol,
            local: (ours.into(), port(0)),
            remote: (ipv6::ipv6_at(quote, 24).into(), port(2)),
            quoted_seq,
        }))
    }

    /// RFC 4443 §4.2: the reply carries the request's identifier, sequence
    /// and data; to a multicast request, from an address of ours.
    fn answer_echo(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        request: &icmpv6::Packet<'_>,
    ) {
        if src.is_unspecified() {
            return link.counters.count_drop(DropReason::Icmpv6Malformed);
        }
        let from = match dst.is_multicast() {
            true => self.source_for(src),
            false => Some(dst),
        };
        let Some(from) = from else {
            return link.counters.count_drop(DropReason::NoRoute);
        };
        let reply = icmpv6::Echo {
            reply: true,
            ident: request.echo_ident(),
            seq: request.echo_seq(),
            data: request.data(),
        };
        let hop_limit = self.hop_limit;
        let _ = self.send_icmp(
            now,
            link,
            (from, src),
            hop_limit,
            reply.len(),
            |buf, s, d| reply.emit(buf, s, d),
        );
    }

    /// Sends an echo request (RFC 4443 §4.1) to `dst`, from the address of
    /// ours that suits it; the reply comes back from [`Ipv6Host::ingress`].
    pub fn send_echo(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        dst: Ipv6Addr,
        request: &icmpv6::Echo<'_>,
    ) -> Result<(), DropReason> {
        if dst.is_unspecified() || dst.is_loopback() {
            return Err(DropReason::NoRoute);
        }
        let src = self.source_for(dst).ok_or(DropReason::NoRoute)?;
        let hop_limit = match dst.is_multicast() {
            true => 1,
            false => self.hop_limit,
        };
        self.send_icmp(
            now,
            link,
            (src, dst),
            hop_limit,
            request.len(),
            |buf, s, d| request.emit(buf, s, d),
        )
    }

    /// A port unreachable (RFC 4443 §3.1 code 4) about `packet`, one of ours
    /// for a port nobody listens on.
    pub fn refuse_port(&mut self, now: Instant, link: &mut Link<'_>, packet: &[u8]) {
        let error = (
            icmpv6::TYPE_DEST_UNREACHABLE,
            icmpv6::CODE_PORT_UNREACHABLE,
            0,
        );
        self.send_error(now, link, packet, error);
    }

    /// Sends a UDP datagram (RFC 768 over RFC 8200 §8.1: the checksum is
    /// mandatory); to a group with the hop limit `group_hops` (a socket's
    /// IPV6_MULTICAST_HOPS, 1 by default: this link).
    pub fn send_udp(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        (src_port, dst_port, group_hops): (u16, u16, u8),
        payload: &[u8],
    ) -> Result<(), DropReason> {
        let hop_limit = match dst.is_multicast() {
            true => group_hops,
            false => self.hop_limit,
        };
        let out = Outgoing {
            src,
            dst,
            next_header: ipv6::NEXT_UDP,
            hop_limit,
            router_alert: false,
        };
        let len = udp::HEADER_LEN + payload.len();
        self.send(now, link, out, len, |buf, s, d| {
            buf[udp::HEADER_LEN..].copy_from_slice(payload);
            udp::Repr { src_port, dst_port }.emit_v6(buf, payload.len(), s, d);
        })
    }

    /// A reply to a neighbor: to the MAC it gave, else the one we know,
    /// else the frame's source.
    pub(super) fn reply_mac(
        &self,
        now: Instant,
        ip: Ipv6Addr,
        given: Option<MacAddress>,
        frame: MacAddress,
    ) -> MacAddress {
        given
            .or_else(|| self.neighbors.lookup(now, ip))
            .unwrap_or(frame)
    }

    /// A packet to `dst` straight to `mac` (see [`Ipv6Host::send_to_mac`]).
    pub(super) fn reply_to(
        &mut self,
        link: &mut Link<'_>,
        mac: MacAddress,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        len: usize,
        emit: impl FnOnce(&mut [u8], Ipv6Addr, Ipv6Addr),
    ) {
        let out = Outgoing {
            src,
            dst,
            next_header: ipv6::NEXT_ICMPV6,
            hop_limit: 255,
            router_alert: false,
        };
        self.send_to_mac(link, mac, out, len, emit);
    }
}

fn dropped<T>(link: &mut Link<'_>, reason: DropReason) -> Option<T> {
    link.counters.count_drop(reason);
    None
}

/// RFC 7112 §5: whether a first fragment's piece (what follows its
/// fragment header, starting with header `next`) holds the rest of the
/// header chain, the upper-layer header included, so that no filter has to
/// guess what the packet is from later pieces.
fn holds_header_chain(mut next: u8, piece: &[u8]) -> bool {
    let mut at = 0;
    loop {
        let need = match next {
            ipv6::NEXT_ROUTING | ipv6::NEXT_DESTINATION_OPTIONS => {
                let Some(&units) = piece.get(at + 1) else {
                    return false;
                };
                let len = (units as usize + 1) * 8;
                if piece.len() < at + len {
                    return false;
                }
                next = piece[at];
                at += len;
                continue;
            }
            ipv6::NEXT_TCP => 20,
            ipv6::NEXT_UDP => 8,
            ipv6::NEXT_ICMPV6 => 4,
            _ => 0, // nothing we would read: what there is will do
        };
        return piece.len() >= at + need;
    }
}
