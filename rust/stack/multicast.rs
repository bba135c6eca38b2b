//! Multicast for UDP sockets: joining and leaving groups (the interface
//! reports them with IGMP, `iface/multicast.rs`, or MLDv2 for IPv6 ones,
//! `iface/ipv6/discovery.rs`), sending to a group with
//! the socket's TTL, and what a socket sends to a group this host is in
//! coming back to it (IP_MULTICAST_LOOP, on by default as on Linux).

use super::{datagram_send_result, Stack, UdpSendError};
use crate::iface::Memberships;
use crate::socket::udp::{self, MembershipError, UdpHandle};
use crate::time::Instant;
use std::net::IpAddr;

impl Stack {
    /// The socket `h` joins `group` (IP_ADD_MEMBERSHIP, IPV6_JOIN_GROUP):
    /// a group of its own family.
    pub fn udp_join(
        &mut self,
        now: Instant,
        h: UdpHandle,
        group: impl Into<IpAddr>,
    ) -> Option<Result<(), MembershipError>> {
        let group = group.into();
        let socket = self.udp.get_mut(h)?;
        let joinable = match group {
            IpAddr::V4(g) => Memberships::joinable(g),
            IpAddr::V6(g) => g.is_multicast() && self.iface.ipv6().is_some(),
        };
        if !joinable || socket.is_ipv6() != group.is_ipv6() {
            return Some(Err(MembershipError::NotMulticast));
        }
        if let Err(e) = socket.add_group(group) {
            return Some(Err(e));
        }
        match group {
            IpAddr::V4(g) => self.iface.join_multicast(now, g),
            IpAddr::V6(g) => self.iface.join_multicast_v6(now, g),
        }
        Some(Ok(()))
    }

    /// The socket `h` leaves `group` (IP_DROP_MEMBERSHIP, IPV6_LEAVE_GROUP).
    pub fn udp_leave(
        &mut self,
        now: Instant,
        h: UdpHandle,
        group: impl Into<IpAddr>,
    ) -> Option<Result<(), MembershipError>> {
        let group = group.into();
        if let Err(e) = self.udp.get_mut(h)?.drop_group(group) {
            return Some(Err(e));
        }
        self.leave(now, group);
        Some(Ok(()))
    }

    /// Closes a UDP socket, leaving the groups it joined.
    pub fn udp_close(&mut self, now: Instant, h: UdpHandle) {
        for group in self.udp.close(h) {
            self.leave(now, group);
        }
    }

    fn leave(&mut self, now: Instant, group: IpAddr) {
        match group {
            IpAddr::V4(g) => self.iface.leave_multicast(now, g),
            IpAddr::V6(g) => self.iface.leave_multicast_v6(now, g),
        }
    }

    /// A datagram from `src` to the group `dst`: with the socket's
    /// IP_MULTICAST_TTL (IPV6_MULTICAST_HOPS), and delivered here too if the
    /// host is in the group and the socket's IP_MULTICAST_LOOP is on.
    pub(super) fn udp_send_to_group(
        &mut self,
        now: Instant,
        h: UdpHandle,
        src: (IpAddr, u16),
        dst: (IpAddr, u16),
        payload: &[u8],
    ) -> Result<(), UdpSendError> {
        let socket = self.udp.get(h).ok_or(UdpSendError::Closed)?;
        let (ttl, looped) = (socket.multicast_ttl, socket.multicast_loop);
        let member = match dst.0 {
            IpAddr::V4(g) => self.iface.is_multicast_member(g),
            IpAddr::V6(g) => self.iface.ipv6().is_some_and(|h| h.is_member(g)),
        };
        if looped && member {
            // As a datagram received: a full queue drops it, counted.
            match self.udp.deliver(src, dst, true, payload) {
                Err(udp::Unclaimed::QueueFull) => self
                    .iface
                    .count_drop(crate::iface::DropReason::UdpQueueFull),
                Ok(()) => self.delivered_to_self = true,
                Err(udp::Unclaimed::NoSocket) => {}
            }
        }
        let sent = match (src.0, dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                (self.iface).send_udp_with_ttl(now, ttl, (s, d), (src.1, dst.1), payload)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                (self.iface).send_udp_v6_with_hops(now, (s, d), (src.1, dst.1, ttl), payload)
            }
            _ => return Err(UdpSendError::InvalidDestination),
        };
        sent.or_else(datagram_send_result)
    }
}
