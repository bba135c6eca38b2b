//! Multicast for UDP sockets: joining and leaving groups (the interface
//! reports them with IGMP, `iface/multicast.rs`), sending to a group with
//! the socket's TTL, and what a socket sends to a group this host is in
//! coming back to it (IP_MULTICAST_LOOP, on by default as on Linux).

use super::{datagram_send_result, Stack, UdpSendError};
use crate::iface::Memberships;
use crate::socket::udp::{self, MembershipError, UdpHandle};
use crate::time::Instant;
use crate::wire::Ipv4Addr;

impl Stack {
    /// The socket `h` joins `group` (IP_ADD_MEMBERSHIP).
    pub fn udp_join(
        &mut self,
        now: Instant,
        h: UdpHandle,
        group: Ipv4Addr,
    ) -> Option<Result<(), MembershipError>> {
        let socket = self.udp.get_mut(h)?;
        if !Memberships::joinable(group) {
            return Some(Err(MembershipError::NotMulticast));
        }
        if let Err(e) = socket.add_group(group) {
            return Some(Err(e));
        }
        self.iface.join_multicast(now, group);
        Some(Ok(()))
    }

    /// The socket `h` leaves `group` (IP_DROP_MEMBERSHIP).
    pub fn udp_leave(
        &mut self,
        now: Instant,
        h: UdpHandle,
        group: Ipv4Addr,
    ) -> Option<Result<(), MembershipError>> {
        if let Err(e) = self.udp.get_mut(h)?.drop_group(group) {
            return Some(Err(e));
        }
        self.iface.leave_multicast(now, group);
        Some(Ok(()))
    }

    /// Closes a UDP socket, leaving the groups it joined.
    pub fn udp_close(&mut self, now: Instant, h: UdpHandle) {
        for group in self.udp.close(h) {
            self.iface.leave_multicast(now, group);
        }
    }

    /// A datagram from `src` to the group `dst`: with the socket's
    /// IP_MULTICAST_TTL, and delivered here too if the host is in the group
    /// and the socket's IP_MULTICAST_LOOP is on.
    pub(super) fn udp_send_to_group(
        &mut self,
        now: Instant,
        h: UdpHandle,
        src: (Ipv4Addr, u16),
        dst: (Ipv4Addr, u16),
        payload: &[u8],
    ) -> Result<(), UdpSendError> {
        let socket = self.udp.get(h).ok_or(UdpSendError::Closed)?;
        let (ttl, looped) = (socket.multicast_ttl, socket.multicast_loop);
        if looped && self.iface.is_multicast_member(dst.0) {
            // As a datagram received: a full queue drops it, counted.
            let (from, to) = ((src.0.into(), src.1), (dst.0.into(), dst.1));
            match self.udp.deliver(from, to, true, payload) {
                Err(udp::Unclaimed::QueueFull) => self
                    .iface
                    .count_drop(crate::iface::DropReason::UdpQueueFull),
                Ok(()) => self.delivered_to_self = true,
                Err(udp::Unclaimed::NoSocket) => {}
            }
        }
        self.iface
            .send_udp_with_ttl(now, ttl, (src.0, dst.0), (src.1, dst.1), payload)
            .or_else(datagram_send_result)
    }
}
