//! Sending IPv6: the source address (RFC 6724, simplified), the next hop
//! (RFC 4861 §5.2), and address resolution with neighbor solicitations.

use super::{Ipv6Host, Link};
use crate::iface::interface::waiting_frames;
use crate::iface::neighbor::NeighborAction;
use crate::iface::{DropReason, Payload};
use crate::time::Instant;
use crate::wire::ipv6::{self, Ipv6Addr};
use crate::wire::{ethernet, icmpv6, ndp, MacAddress};
use rand::RngExt;

/// The most an IPv6 packet carries after its fixed header (no jumbograms).
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// What an outgoing packet is: its header fields and an optional
/// hop-by-hop header (Router Alert, for MLD) before `next_header`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outgoing {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub hop_limit: u8,
    pub router_alert: bool,
}

impl Ipv6Host {
    /// The source for a packet to `dst`: a usable address of the same
    /// scope, preferred before deprecated, the longest match first (RFC
    /// 6724 §5 rules 2, 3 and 8). None: no address can reach `dst`.
    pub fn source_for(&self, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let link_scope =
            ipv6::is_link_local(dst) || (dst.is_multicast() && dst.segments()[0] & 0xf == 2);
        self.addresses
            .iter()
            .filter(|a| a.state.is_usable())
            .filter(|a| ipv6::is_link_local(a.address) == link_scope)
            .max_by_key(|a| {
                let common = (u128::from(a.address) ^ u128::from(dst)).leading_zeros();
                (a.state == super::AddressState::Preferred, common)
            })
            .map(|a| a.address)
    }

    /// Whether a packet to unicast `dst` has a next hop.
    pub fn reaches(&self, now: Instant, dst: Ipv6Addr) -> bool {
        self.next_hop(now, dst).is_some()
    }

    /// Neighbors whose resolution gave up since the last call (connections
    /// opening through them fail, as over ARP).
    pub fn take_unresolved(&mut self) -> Vec<Ipv6Addr> {
        std::mem::take(&mut self.unresolved)
    }

    /// The neighbor a packet to `dst` goes to: `dst` itself when on the
    /// link (link-local, or in an on-link prefix), else where a redirect
    /// said (RFC 4861 §5.2: the destination cache first), else a default
    /// router.
    pub fn next_hop(&self, now: Instant, dst: Ipv6Addr) -> Option<Ipv6Addr> {
        let on_link = ipv6::is_link_local(dst)
            || self.on_link.iter().any(|p| {
                ipv6::in_prefix(dst, p.prefix, p.len) && p.expires_at.map_or(true, |t| t > now)
            });
        if on_link {
            return Some(dst);
        }
        if let Some(target) = self.redirected(now, dst) {
            return Some(target);
        }
        self.routers(now).next().map(|r| r.address)
    }

    /// Sends a TCP segment of `len` bytes, or a burst of them shaped as
    /// `payload` says (cut by the device or by [`segment_burst`], as over
    /// IPv4: see `Interface::send_ipv4_burst`). `fill` writes the segment
    /// up to its text when the text stays where it lies. The caller sizes
    /// the segments for the path; IPv6 routers never fragment.
    pub fn send_tcp(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        (len, payload): (usize, Payload),
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let result = self.try_send_tcp(now, link, (src, dst), (len, payload), fill);
        counted(link, result)
    }

    fn try_send_tcp(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        (len, payload): (usize, Payload),
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), DropReason> {
        let whole = payload.segment_size == 0;
        if whole && ipv6::HEADER_LEN + len > self.path_mtu(now, link.mtu, dst) {
            return Err(DropReason::TooBig);
        }
        let headers = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
        let frame_len = headers + len;
        // With the text apart, what we write ends where it begins.
        let written_len = frame_len - payload.text.map_or(0, |t| t.at.len);
        let (our_mac, hop_limit) = (link.mac, self.hop_limit);
        let write = |buf: &mut [u8], dst_mac: MacAddress| {
            ethernet::Repr {
                dst: dst_mac,
                src: our_mac,
                ethertype: ethernet::ETHERTYPE_IPV6,
            }
            .emit(buf);
            ipv6::Repr {
                src,
                dst,
                next_header: ipv6::NEXT_TCP,
                hop_limit,
                payload_len: len,
            }
            .emit(&mut buf[ethernet::HEADER_LEN..]);
            fill(&mut buf[headers..written_len]);
        };
        // To ourselves the frame goes to our own MAC (`stack::loopback`).
        let hop = match self.is_own(dst) {
            true => None,
            false => Some(self.next_hop(now, dst).ok_or(DropReason::NoRoute)?),
        };
        let mac = match hop {
            None => Some(our_mac),
            Some(hop) => self.neighbors.lookup(now, hop),
        };
        let segment_size = payload.segment_size;
        if let Some(mac) = mac {
            let buf = match payload.text {
                Some(text) => link.tx.push_headers(written_len, segment_size, text.at),
                None => link.tx.push_burst(
                    frame_len,
                    segment_size,
                    headers.saturating_add(payload.written_from),
                ),
            }
            .ok_or(DropReason::TxQueueFull)?;
            write(buf, mac);
            return Ok(());
        }
        let hop = hop.expect("only a neighbor can be unknown");
        let mut frame = vec![0u8; frame_len.max(ethernet::MIN_FRAME_LEN)];
        write(&mut frame, MacAddress::ZERO);
        let mut result = Ok(());
        for frame in waiting_frames(frame, (written_len..frame_len, payload)) {
            match self.neighbors.enqueue(now, hop, frame) {
                Ok(true) => self.solicit(now, link, hop),
                Ok(false) => {}
                Err(_) => result = Err(DropReason::NeighborQueueFull),
            }
        }
        result
    }

    /// Sends a packet whose upper-layer bytes (`len` of them) `fill` writes.
    /// A unicast packet to an unresolved neighbor waits while it is asked for.
    pub(super) fn send(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        out: Outgoing,
        len: usize,
        fill: impl FnOnce(&mut [u8], Ipv6Addr, Ipv6Addr),
    ) -> Result<(), DropReason> {
        let result = self.try_send(now, link, out, len, fill);
        counted(link, result)
    }

    fn try_send(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        out: Outgoing,
        len: usize,
        fill: impl FnOnce(&mut [u8], Ipv6Addr, Ipv6Addr),
    ) -> Result<(), DropReason> {
        let extension = if out.router_alert {
            ipv6::ROUTER_ALERT_HEADER_LEN
        } else {
            0
        };
        let headers = ethernet::HEADER_LEN + ipv6::HEADER_LEN + extension;
        let mtu = self.path_mtu(now, link.mtu, out.dst);
        if ipv6::HEADER_LEN + extension + len > mtu {
            // Datagrams and echo requests are fragmented (as Linux does);
            // TCP is cut to fit, and discovery's messages never may be.
            let fragmentable = matches!(out.next_header, ipv6::NEXT_UDP | ipv6::NEXT_ICMPV6)
                && !out.router_alert
                && out.hop_limit != 255;
            if !fragmentable || len > MAX_PAYLOAD {
                return Err(DropReason::TooBig);
            }
            let mut whole = vec![0u8; len];
            fill(&mut whole, out.src, out.dst);
            return self.send_fragments(now, link, (out, mtu), &whole);
        }
        let write = |frame: &mut [u8], dst_mac: MacAddress| {
            ethernet::Repr {
                dst: dst_mac,
                src: link.mac,
                ethertype: ethernet::ETHERTYPE_IPV6,
            }
            .emit(frame);
            let ip = &mut frame[ethernet::HEADER_LEN..];
            ipv6::Repr {
                src: out.src,
                dst: out.dst,
                next_header: if out.router_alert {
                    ipv6::NEXT_HOP_BY_HOP
                } else {
                    out.next_header
                },
                hop_limit: out.hop_limit,
                payload_len: extension + len,
            }
            .emit(ip);
            if out.router_alert {
                ipv6::emit_router_alert_header(&mut ip[ipv6::HEADER_LEN..], out.next_header);
            }
            fill(&mut frame[headers..headers + len], out.src, out.dst);
        };
        if out.dst.is_multicast() {
            let buf = link.tx.push(headers + len).ok_or(DropReason::TxQueueFull)?;
            write(buf, ipv6::multicast_mac(out.dst));
            return Ok(());
        }
        if self.is_own(out.dst) {
            // To ourselves: the stack hands frames to our own MAC back to
            // us without the wire (`stack::loopback`).
            let buf = link.tx.push(headers + len).ok_or(DropReason::TxQueueFull)?;
            write(buf, link.mac);
            return Ok(());
        }
        let hop = self.next_hop(now, out.dst).ok_or(DropReason::NoRoute)?;
        if let Some(mac) = self.neighbors.lookup(now, hop) {
            let buf = link.tx.push(headers + len).ok_or(DropReason::TxQueueFull)?;
            write(buf, mac);
            return Ok(());
        }
        let mut frame = vec![0u8; (headers + len).max(ethernet::MIN_FRAME_LEN)];
        write(&mut frame, MacAddress::ZERO);
        match self.neighbors.enqueue(now, hop, frame) {
            Ok(true) => self.solicit(now, link, hop),
            Ok(false) => {}
            Err(_) => return Err(DropReason::NeighborQueueFull),
        }
        Ok(())
    }

    /// Sends `whole` (the upper-layer bytes, checksummed) in fragments
    /// (RFC 8200 §4.5) of the most 8-byte units the path's `mtu` carries, under an
    /// identification drawn at random (RFC 7739).
    fn send_fragments(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (out, mtu): (Outgoing, usize),
        whole: &[u8],
    ) -> Result<(), DropReason> {
        let room = (mtu - ipv6::HEADER_LEN - ipv6::FRAGMENT_HEADER_LEN) & !7;
        let ident = self.rng.random::<u32>();
        let piece = Outgoing {
            next_header: ipv6::NEXT_FRAGMENT,
            ..out
        };
        for (i, chunk) in whole.chunks(room).enumerate() {
            let header = ipv6::FragmentHeader {
                next_header: out.next_header,
                offset: i * room,
                more: (i + 1) * room < whole.len(),
                ident,
            };
            let len = ipv6::FRAGMENT_HEADER_LEN + chunk.len();
            self.try_send(now, link, piece, len, |buf, _, _| {
                header.emit(buf);
                buf[ipv6::FRAGMENT_HEADER_LEN..].copy_from_slice(chunk);
            })?;
        }
        Ok(())
    }

    /// Sends a packet straight to `mac`, as a reply to a neighbor that told
    /// us its address in the packet it sent.
    pub(super) fn send_to_mac(
        &mut self,
        link: &mut Link<'_>,
        mac: MacAddress,
        out: Outgoing,
        len: usize,
        fill: impl FnOnce(&mut [u8], Ipv6Addr, Ipv6Addr),
    ) {
        let headers = ethernet::HEADER_LEN + ipv6::HEADER_LEN;
        let Some(buf) = link.tx.push(headers + len) else {
            return link.counters.count_drop(DropReason::TxQueueFull);
        };
        ethernet::Repr {
            dst: mac,
            src: link.mac,
            ethertype: ethernet::ETHERTYPE_IPV6,
        }
        .emit(buf);
        ipv6::Repr {
            src: out.src,
            dst: out.dst,
            next_header: out.next_header,
            hop_limit: out.hop_limit,
            payload_len: len,
        }
        .emit(&mut buf[ethernet::HEADER_LEN..]);
        fill(&mut buf[headers..headers + len], out.src, out.dst);
    }

    /// Asks for `target`'s link-layer address (RFC 4861 §7.2.2): to its
    /// solicited-node group, from an address of ours, with our MAC.
    fn solicit(&mut self, now: Instant, link: &mut Link<'_>, target: Ipv6Addr) {
        let dst = ipv6::solicited_node(target);
        let Some((out, message)) = self.solicitation(link, target, dst) else {
            return;
        };
        let _ = self.send(now, link, out, message.len(), |buf, s, d| {
            message.emit(buf, s, d)
        });
    }

    /// Confirms a neighbor in use whose entry aged (RFC 4861 §7.3.3, PROBE):
    /// a solicitation to its own address and MAC.
    fn probe_neighbor(&mut self, link: &mut Link<'_>, target: Ipv6Addr, mac: MacAddress) {
        let Some((out, message)) = self.solicitation(link, target, target) else {
            return;
        };
        self.send_to_mac(link, mac, out, message.len(), |buf, s, d| {
            message.emit(buf, s, d)
        });
    }

    /// A neighbor solicitation for `target`, sent to `dst`, with our MAC;
    /// None without an address of ours to send it from.
    fn solicitation(
        &self,
        link: &Link<'_>,
        target: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Option<(Outgoing, ndp::Solicit)> {
        let src = self.source_for(target)?;
        let message = ndp::Solicit {
            target,
            source_mac: Some(link.mac),
        };
        let out = Outgoing {
            src,
            dst,
            next_header: ipv6::NEXT_ICMPV6,
            hop_limit: 255,
            router_alert: false,
        };
        Some((out, message))
    }

    /// Solicitations due again, and frames given up on (§7.2.2: three
    /// solicitations, a retransmission timer apart).
    pub(super) fn poll_neighbors(&mut self, now: Instant, link: &mut Link<'_>) {
        let mut asks = Vec::new();
        let mut probes = Vec::new();
        self.neighbors.poll(now, |action| match action {
            NeighborAction::SendRequest(ip) => asks.push(ip),
            NeighborAction::SendProbe(ip, mac) => probes.push((ip, mac)),
            NeighborAction::GaveUp(ip, frames) => {
                log::debug!("no neighbor advertisement from {ip}; dropping {frames} frames");
                for _ in 0..frames {
                    link.counters.count_drop(DropReason::NeighborUnreachable);
                }
                self.unresolved.push(ip);
            }
        });
        for ip in asks {
            self.solicit(now, link, ip);
        }
        for (ip, mac) in probes {
            self.probe_neighbor(link, ip, mac);
        }
    }

    /// An ICMPv6 message (`len` bytes, checksum included by `emit`).
    pub(super) fn send_icmp(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        hop_limit: u8,
        len: usize,
        emit: impl FnOnce(&mut [u8], Ipv6Addr, Ipv6Addr),
    ) -> Result<(), DropReason> {
        let out = Outgoing {
            src,
            dst,
            next_header: ipv6::NEXT_ICMPV6,
            hop_limit,
            router_alert: false,
        };
        self.send(now, link, out, len, emit)
    }

    /// An ICMPv6 error about `original` (RFC 4443 §2.4), rate-limited, never
    /// to an unspecified or multicast source, never about an error.
    pub(super) fn send_error(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        original: &[u8],
        message: (u8, u8, u32),
    ) {
        let Ok(packet) = ipv6::Packet::new_checked(original) else {
            return;
        };
        if let Ok(upper) = ipv6::upper_layer(&packet) {
            if upper.protocol == ipv6::NEXT_ICMPV6
                && upper.payload.first().is_some_and(|&t| icmpv6::is_error(t))
            {
                return;
            }
        }
        self.send_error_about(now, link, original, message);
    }

    /// A fragment reassembly time exceeded (RFC 4443 §3.3 code 1), quoting
    /// fragment zero, for a packet to an address of ours (RFC 8200 §4.5).
    pub fn reassembly_timed_out(&mut self, now: Instant, link: &mut Link<'_>, quote: &[u8]) {
        if quote.len() < ipv6::HEADER_LEN || !self.is_own(ipv6::ipv6_at(quote, 24)) {
            return;
        }
        let message = (icmpv6::TYPE_TIME_EXCEEDED, 1, 0);
        self.send_error_about(now, link, quote, message);
    }

    /// An ICMPv6 error about `original` (its fixed header at least), once
    /// the source is one to answer and the rate limit allows.
    fn send_error_about(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        original: &[u8],
        message: (u8, u8, u32),
    ) {
        let (src, dst) = (ipv6::ipv6_at(original, 8), ipv6::ipv6_at(original, 24));
        if src.is_unspecified() || src.is_multicast() {
            return;
        }
        let from = match self.is_own(dst) {
            true => Some(dst),
            false => self.source_for(src),
        };
        let Some(from) = from else {
            return;
        };
        if !self.icmp_errors.take(now) {
            return;
        }
        let (msg_type, code, parameter) = message;
        let error = icmpv6::ErrorMessage {
            msg_type,
            code,
            parameter,
            original,
        };
        let hop_limit = self.hop_limit;
        let _ = self.send_icmp(
            now,
            link,
            (from, src),
            hop_limit,
            error.len(),
            |buf, s, d| error.emit(buf, s, d),
        );
    }
}

/// Counts a send that failed as a drop of its reason.
fn counted(link: &mut Link<'_>, result: Result<(), DropReason>) -> Result<(), DropReason> {
    if let Err(reason) = result {
        link.counters.count_drop(reason);
    }
    result
}
