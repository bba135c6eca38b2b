//! UDP sockets (RFC 768): a table of bound ports, each with a bounded queue
//! of received datagrams. Sending goes straight to the interface (the stack
//! does it); a socket only decides what it may receive.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// An (address, port) pair, of either family: a socket bound to an IPv4
/// address (or 0.0.0.0) speaks IPv4, one bound to an IPv6 address (or ::) IPv6.
pub type Endpoint = (IpAddr, u16);

#[derive(Debug, Clone, Copy)]
pub struct UdpConfig {
    /// Payload bytes queued per socket before datagrams are dropped
    /// (Linux's net.core.rmem_default is 212992 including overhead).
    pub recv_buffer: usize,
    /// Datagrams queued per socket, whatever their size.
    pub recv_queue: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            recv_buffer: 212_992,
            recv_queue: 1024,
        }
    }
}

/// Identifies a socket; never reused within a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UdpHandle(u64);

/// Why a datagram for us was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclaimed {
    /// No socket takes it: answer with ICMP port unreachable.
    NoSocket,
    /// The socket's queue is full: drop and count.
    QueueFull,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    AddressInUse,
    NoPortAvailable,
}

/// An error reported by the network for a connected socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpError {
    /// ICMP port (or host, net, protocol) unreachable from the peer.
    Refused,
}

#[derive(Debug)]
pub struct Datagram {
    pub src: Endpoint,
    pub data: Vec<u8>,
}

#[derive(Debug)]
pub struct UdpSocket {
    local: Endpoint,
    remote: Option<Endpoint>,
    pub broadcast: bool,
    recv_buffer: usize,
    queue: VecDeque<Datagram>,
    queued_bytes: usize,
    dropped: u64,
    error: Option<UdpError>,
    /// The multicast groups this socket joined (IP_ADD_MEMBERSHIP,
    /// IPV6_JOIN_GROUP), of its own family.
    groups: Vec<IpAddr>,
    /// IP_MULTICAST_TTL (IPV6_MULTICAST_HOPS): the TTL of what it sends to
    /// a group (1: this link).
    pub multicast_ttl: u8,
    /// IP_MULTICAST_LOOP (IPV6_MULTICAST_LOOP): what it sends to a group we
    /// belong to is also delivered here, as on Linux by default.
    pub multicast_loop: bool,
}

/// Linux's net.ipv4.igmp_max_memberships: groups one socket may join.
pub const MAX_MEMBERSHIPS: usize = 20;

/// Why a socket could not join or leave a group (the errno Linux gives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipError {
    /// Not a multicast address one can join (EINVAL).
    NotMulticast,
    /// Joined already (EADDRINUSE).
    AlreadyMember,
    /// Not joined (EADDRNOTAVAIL).
    NotMember,
    /// [`MAX_MEMBERSHIPS`] joined already (ENOBUFS).
    TooMany,
}

impl UdpSocket {
    /// The groups this socket joined.
    pub fn groups(&self) -> &[IpAddr] {
        &self.groups
    }
    /// Records `group` as joined by this socket.
    pub fn add_group(&mut self, group: IpAddr) -> Result<(), MembershipError> {
        if self.groups.contains(&group) {
            return Err(MembershipError::AlreadyMember);
        }
        if self.groups.len() >= MAX_MEMBERSHIPS {
            return Err(MembershipError::TooMany);
        }
        self.groups.push(group);
        Ok(())
    }
    /// Forgets `group`.
    pub fn drop_group(&mut self, group: IpAddr) -> Result<(), MembershipError> {
        let i = self.groups.iter().position(|&g| g == group);
        let i = i.ok_or(MembershipError::NotMember)?;
        self.groups.swap_remove(i);
        Ok(())
    }
    pub fn local(&self) -> Endpoint {
        self.local
    }
    pub fn remote(&self) -> Option<Endpoint> {
        self.remote
    }
    /// Datagrams dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
    pub fn recv_buffer(&self) -> usize {
        self.recv_buffer
    }
    pub fn set_recv_buffer(&mut self, bytes: usize) {
        self.recv_buffer = bytes;
    }
    /// Takes the pending network error (reported once, like SO_ERROR).
    /// An error is waiting for the next call (readiness reports it).
    pub fn has_error(&self) -> bool {
        self.error.is_some()
    }
    pub fn take_error(&mut self) -> Option<UdpError> {
        self.error.take()
    }
    /// The oldest datagram, left in the queue (MSG_PEEK).
    pub fn peek(&self) -> Option<&Datagram> {
        self.queue.front()
    }
    /// The oldest datagram, if any.
    pub fn recv(&mut self) -> Option<Datagram> {
        let d = self.queue.pop_front()?;
        self.queued_bytes -= d.data.len();
        Some(d)
    }
    /// Filters what arrives to `remote` (None: anyone again); clears a pending error.
    pub fn connect(&mut self, remote: Option<Endpoint>) {
        self.remote = remote;
        self.error = None;
    }

    /// The socket's family: IPv6 when bound to an IPv6 address.
    pub fn is_ipv6(&self) -> bool {
        self.local.0.is_ipv6()
    }

    fn accepts(&self, src: Endpoint, dst: IpAddr, broadcast: bool) -> bool {
        if self.is_ipv6() != dst.is_ipv6() {
            return false;
        }
        // (Bound to a group's address: that group's datagrams, as on Linux.)
        let to_local = self.local.0 == dst && (!broadcast || dst.is_multicast());
        let local_ok = self.local.0.is_unspecified() || to_local;
        local_ok && self.remote.map_or(true, |r| r == src)
    }
}

#[derive(Debug)]
pub struct UdpSockets {
    config: UdpConfig,
    sockets: HashMap<UdpHandle, UdpSocket>,
    by_port: HashMap<u16, UdpHandle>,
    next_handle: u64,
}

/// The ephemeral range of RFC 6056 §2.1.
pub const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

impl UdpSockets {
    pub fn new(config: UdpConfig) -> Self {
        UdpSockets {
            config,
            sockets: HashMap::new(),
            by_port: HashMap::new(),
            next_handle: 1,
        }
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
    pub fn is_bound(&self, port: u16) -> bool {
        self.by_port.contains_key(&port)
    }

    /// Binds `addr:port`; port 0 takes a free ephemeral port starting at the
    /// random `hint`, skipping those `taken` reports (ports the resolver uses).
    pub fn bind(
        &mut self,
        addr: IpAddr,
        port: u16,
        hint: u16,
        taken: impl Fn(u16) -> bool,
    ) -> Result<UdpHandle, BindError> {
        let port = if port != 0 {
            if self.is_bound(port) || taken(port) {
                return Err(BindError::AddressInUse);
            }
            port
        } else {
            let (lo, n) = (*EPHEMERAL.start(), EPHEMERAL.len() as u32);
            (0..n)
                .map(|i| lo + ((hint as u32 + i) % n) as u16)
                .find(|&p| !self.is_bound(p) && !taken(p))
                .ok_or(BindError::NoPortAvailable)?
        };
        let handle = UdpHandle(self.next_handle);
        self.next_handle += 1;
        self.sockets.insert(
            handle,
            UdpSocket {
                local: (addr, port),
                remote: None,
                broadcast: false,
                recv_buffer: self.config.recv_buffer,
                queue: VecDeque::new(),
                queued_bytes: 0,
                dropped: 0,
                error: None,
                groups: Vec::new(),
                multicast_ttl: 1,
                multicast_loop: true,
            },
        );
        self.by_port.insert(port, handle);
        Ok(handle)
    }

    /// Every bound socket, by port.
    pub fn iter(&self) -> impl Iterator<Item = (UdpHandle, &UdpSocket)> {
        let mut all: Vec<_> = self.sockets.iter().map(|(&h, s)| (h, s)).collect();
        all.sort_by_key(|(_, s)| s.local().1);
        all.into_iter()
    }

    pub fn get(&self, h: UdpHandle) -> Option<&UdpSocket> {
        self.sockets.get(&h)
    }
    pub fn get_mut(&mut self, h: UdpHandle) -> Option<&mut UdpSocket> {
        self.sockets.get_mut(&h)
    }

    /// Closes a socket; what it had queued is freed. Returns the groups it
    /// had joined, for the host to leave.
    pub fn close(&mut self, h: UdpHandle) -> Vec<IpAddr> {
        match self.sockets.remove(&h) {
            Some(s) => {
                self.by_port.remove(&s.local.1);
                s.groups
            }
            None => Vec::new(),
        }
    }

    /// Queues a datagram that arrived for `dst:dst_port`.
    pub fn deliver(
        &mut self,
        src: Endpoint,
        dst: Endpoint,
        broadcast: bool,
        payload: &[u8],
    ) -> Result<(), Unclaimed> {
        let handle = self.by_port.get(&dst.1).ok_or(Unclaimed::NoSocket)?;
        let recv_queue = self.config.recv_queue;
        let s = self.sockets.get_mut(handle).ok_or(Unclaimed::NoSocket)?;
        if !s.accepts(src, dst.0, broadcast) {
            return Err(Unclaimed::NoSocket);
        }
        if s.queued_bytes + payload.len() > s.recv_buffer || s.queue.len() >= recv_queue {
            s.dropped += 1;
            return Err(Unclaimed::QueueFull);
        }
        s.queued_bytes += payload.len();
        s.queue.push_back(Datagram {
            src,
            data: payload.to_vec(),
        });
        Ok(())
    }

    /// RFC 1122 §4.1.3.3: an ICMP unreachable about a datagram we sent from
    /// `local_port` to `remote` is reported to the socket connected there.
    pub fn icmp_unreachable(&mut self, local_port: u16, remote: Endpoint) -> bool {
        let Some(h) = self.by_port.get(&local_port) else {
            return false;
        };
        match self.sockets.get_mut(h) {
            Some(s) if s.remote == Some(remote) => {
                s.error = Some(UdpError::Refused);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const ME: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    const PEER: Endpoint = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 5000);
    const ANY: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    #[test]
    fn bind_deliver_and_bound_queue() {
        let mut set = UdpSockets::new(UdpConfig {
            recv_buffer: 1000,
            recv_queue: 3,
        });
        let h = set.bind(ANY, 7, 0, |_| false).unwrap();
        assert_eq!(set.bind(ANY, 7, 0, |_| false), Err(BindError::AddressInUse));
        assert_eq!(
            set.deliver(PEER, (ME, 8), false, b"x"),
            Err(Unclaimed::NoSocket)
        );
        for _ in 0..3 {
            set.deliver(PEER, (ME, 7), false, b"abc").unwrap();
        }
        assert_eq!(
            set.deliver(PEER, (ME, 7), false, b"abc"),
            Err(Unclaimed::QueueFull)
        );
        assert_eq!(set.get_mut(h).unwrap().recv().unwrap().data, b"abc");
        // Bytes bound too.
        assert_eq!(
            set.deliver(PEER, (ME, 7), false, &[0; 995]),
            Err(Unclaimed::QueueFull)
        );
        assert_eq!(set.get(h).unwrap().dropped(), 2);
        set.close(h);
        assert!(!set.is_bound(7));
    }

    #[test]
    fn connected_sockets_filter_and_get_refusals() {
        let mut set = UdpSockets::new(UdpConfig::default());
        let h = set.bind(ME, 0, 123, |p| p == 49152 + 123).unwrap();
        let port = set.get(h).unwrap().local().1;
        assert_eq!(port, 49152 + 124, "skips taken ports");
        set.get_mut(h).unwrap().connect(Some(PEER));
        let other = (Ipv4Addr::new(10, 0, 0, 9).into(), 5000);
        assert_eq!(
            set.deliver(other, (ME, port), false, b"x"),
            Err(Unclaimed::NoSocket)
        );
        assert!(!set.icmp_unreachable(port, other));
        assert!(set.icmp_unreachable(port, PEER));
        assert_eq!(
            set.get_mut(h).unwrap().take_error(),
            Some(UdpError::Refused)
        );
        assert_eq!(set.get_mut(h).unwrap().take_error(), None);
        // Bound to a unicast address: no broadcasts.
        assert_eq!(
            set.deliver(PEER, (Ipv4Addr::BROADCAST.into(), port), true, b"x"),
            Err(Unclaimed::NoSocket)
        );
    }

    #[test]
    fn a_socket_hears_its_own_family_only() {
        let mut set = UdpSockets::new(UdpConfig::default());
        let v6 = set
            .bind(Ipv6Addr::UNSPECIFIED.into(), 53, 0, |_| false)
            .unwrap();
        let peer6 = (IpAddr::V6("fe80::1".parse().unwrap()), 9);
        let ours6 = IpAddr::V6("fe80::2".parse().unwrap());
        assert_eq!(
            set.deliver(PEER, (ME, 53), false, b"v4"),
            Err(Unclaimed::NoSocket)
        );
        set.deliver(peer6, (ours6, 53), false, b"v6").unwrap();
        let s = set.get_mut(v6).unwrap();
        assert!(s.is_ipv6());
        assert_eq!(
            s.recv().map(|d| (d.src, d.data)),
            Some((peer6, b"v6".to_vec()))
        );
        // One port space for both, as a dual-stack host has.
        assert_eq!(
            set.bind(ANY, 53, 0, |_| false),
            Err(BindError::AddressInUse)
        );
    }
}
