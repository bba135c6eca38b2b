//! IPv6 on the interface, as a host (RFC 8200, RFC 4861, RFC 4862): a
//! link-local address from the MAC, addresses from routers' prefixes
//! (SLAAC), duplicate address detection, neighbor discovery, MLDv2 for
//! the solicited-node groups, echo, and ICMPv6 errors. TCP segments, UDP
//! datagrams, echo replies and port unreachables go up to the stack as
//! [`Delivery`](super::Delivery)s; the stack's segments and datagrams come
//! down through [`Ipv6Host::send_tcp`] and [`Ipv6Host::send_udp`].
//!
//! The host writes its frames into the interface's transmit queue through a
//! [`Link`] the interface lends it per call; it keeps its own neighbor cache.

mod addresses;
mod discovery;
mod egress;
mod ingress;

pub use addresses::{AddressOrigin, AddressState, HostAddress};
pub use egress::MAX_PAYLOAD as MAX_IPV6_PAYLOAD;

use super::reassembly::Reassembler;
use super::token_bucket::TokenBucket;
use super::{Counters, NeighborCache, NeighborConfig, TxQueue};
use crate::time::{Duration, Instant};
use crate::wire::ipv6::Ipv6Addr;
use crate::wire::MacAddress;
use rand::rngs::StdRng;

/// RFC 4861 §10 and RFC 4862 §5.1 host constants.
const MAX_RTR_SOLICITATION_DELAY: Duration = Duration::from_secs(1);
const RTR_SOLICITATION_INTERVAL: Duration = Duration::from_secs(4);
const MAX_RTR_SOLICITATIONS: u8 = 3;
const RETRANS_TIMER: Duration = Duration::from_secs(1);
/// Hop limit of our own packets until a router says otherwise (Linux's default).
const DEFAULT_HOP_LIMIT: u8 = 64;
/// Routers kept at once (a host needs only a few, RFC 4861 §6.3.4).
const MAX_ROUTERS: usize = 4;
/// On-link prefixes and autonomous addresses kept at once.
const MAX_PREFIXES: usize = 8;
/// DNS servers from advertisements kept at once (RFC 8106 §5.3.1: at least three).
const MAX_DNS_SERVERS: usize = 3;
/// Redirected destinations kept at once (RFC 4861 §8.3's destination
/// cache), and for how long (Linux's redirect routes age alike).
const MAX_REDIRECTS: usize = 64;
const REDIRECT_AGING: Duration = Duration::from_secs(600);
/// Destinations whose smaller path MTU is remembered (for datagrams; TCP
/// keeps its own), and for how long (RFC 8201 §4: at least 5 minutes).
const MAX_PATH_MTUS: usize = 64;
const PATH_MTU_AGING: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Ipv6Config {
    /// Neighbor solicitations sent for duplicate address detection before
    /// an address is used (RFC 4862 §5.1 DupAddrDetectTransmits); 0: none.
    pub dad_transmits: u8,
    /// Take addresses and routes from router advertisements (SLAAC).
    pub accept_router_adverts: bool,
    pub neighbors: NeighborConfig,
}

impl Default for Ipv6Config {
    fn default() -> Self {
        Ipv6Config {
            dad_transmits: 1,
            accept_router_adverts: true,
            neighbors: NeighborConfig {
                // RFC 4861 §10: REACHABLE_TIME 30 s, MAX_MULTICAST_SOLICIT 3.
                reachable_time: Duration::from_secs(30),
                ..NeighborConfig::default()
            },
        }
    }
}

/// What the host borrows of the interface for one call.
pub struct Link<'a> {
    pub tx: &'a mut TxQueue,
    pub counters: &'a mut Counters,
    pub mac: MacAddress,
    pub mtu: usize,
    /// The frames handed in are our own, sent to an address of ours (see
    /// `Interface::set_looping`).
    pub looping: bool,
    /// Fragments being put together, the interface's for both families.
    pub reassembly: &'a mut Reassembler,
}

/// A default router learnt from an advertisement (RFC 4861 §6.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Router {
    pub address: Ipv6Addr,
    pub expires_at: Instant,
}

/// A prefix on the link (RFC 4861 §6.3.4, the L flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OnLinkPrefix {
    prefix: Ipv6Addr,
    len: u8,
    /// None: for ever.
    expires_at: Option<Instant>,
}

#[derive(Debug)]
pub struct Ipv6Host {
    config: Ipv6Config,
    /// The modified EUI-64 identifier every address of ours ends with.
    interface_id: [u8; 8],
    addresses: Vec<HostAddress>,
    neighbors: NeighborCache<Ipv6Addr>,
    routers: Vec<Router>,
    on_link: Vec<OnLinkPrefix>,
    /// Recursive DNS servers from advertisements (RFC 8106), with when
    /// each expires (None: for ever).
    dns_servers: Vec<(Ipv6Addr, Option<Instant>)>,
    hop_limit: u8,
    /// The MTU a router announced (RFC 4861 §4.6.4), when below the link's.
    advertised_mtu: Option<usize>,
    /// Path MTUs that Packet Too Big messages taught (RFC 8201): the
    /// destination, its MTU, and when the entry is forgotten.
    path_mtus: Vec<(Ipv6Addr, usize, Instant)>,
    retrans_timer: Duration,
    /// Router solicitations sent and when the next is due (§6.3.7).
    solicitations_sent: u8,
    next_solicitation: Option<Instant>,
    /// When the reports a query asked for are due (RFC 3810 §6.2).
    report_due: Option<Instant>,
    /// Groups our sockets joined, with how many joined each.
    joined: Vec<(Ipv6Addr, usize)>,
    /// Redirects (RFC 4861 §8.3): a destination, the first hop routers told
    /// us to use for it, and when the entry is forgotten.
    redirects: Vec<(Ipv6Addr, Ipv6Addr, Instant)>,
    icmp_errors: TokenBucket,
    /// Neighbors given up on, for [`Ipv6Host::take_unresolved`].
    unresolved: Vec<Ipv6Addr>,
    rng: StdRng,
}

impl Ipv6Host {
    /// Starts with the link-local address, tentative (RFC 4862 §5.3).
    pub fn new(now: Instant, config: Ipv6Config, mac: MacAddress, rng: StdRng) -> Self {
        let neighbors = NeighborCache::new(config.neighbors.clone());
        let mut host = Ipv6Host {
            config,
            interface_id: crate::wire::ipv6::interface_id(mac),
            addresses: Vec::new(),
            neighbors,
            routers: Vec::new(),
            on_link: Vec::new(),
            dns_servers: Vec::new(),
            hop_limit: DEFAULT_HOP_LIMIT,
            advertised_mtu: None,
            path_mtus: Vec::new(),
            retrans_timer: RETRANS_TIMER,
            solicitations_sent: 0,
            next_solicitation: None,
            report_due: None,
            joined: Vec::new(),
            redirects: Vec::new(),
            icmp_errors: TokenBucket::new(super::ICMP_ERRORS_PER_SEC, super::ICMP_ERROR_BURST),
            unresolved: Vec::new(),
            rng,
        };
        let link_local = crate::wire::ipv6::with_interface_id(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            host.interface_id,
        );
        host.add_address(now, link_local, 64, AddressOrigin::LinkLocal, None, None);
        host
    }

    /// Our addresses, in the order they were made.
    pub fn addresses(&self) -> &[HostAddress] {
        &self.addresses
    }

    /// The default routers not expired.
    pub fn routers(&self, now: Instant) -> impl Iterator<Item = &Router> {
        self.routers.iter().filter(move |r| r.expires_at > now)
    }

    /// The DNS servers routers named (RFC 8106), oldest first (the expired
    /// ones go at the timer [`Ipv6Host::poll_at`] gives).
    pub fn dns_servers(&self) -> impl Iterator<Item = Ipv6Addr> + '_ {
        self.dns_servers.iter().map(|(a, _)| *a)
    }

    pub fn hop_limit(&self) -> u8 {
        self.hop_limit
    }

    /// The MTU our packets are sized for: the link's, or a router's lower one.
    pub fn mtu(&self, link_mtu: usize) -> usize {
        self.advertised_mtu.map_or(link_mtu, |m| m.min(link_mtu))
    }

    /// The MTU of the path to `dst`: what a Packet Too Big taught, else
    /// [`Ipv6Host::mtu`].
    pub fn path_mtu(&self, now: Instant, link_mtu: usize, dst: Ipv6Addr) -> usize {
        let learnt = self
            .path_mtus
            .iter()
            .find(|(d, _, expires)| *d == dst && *expires > now)
            .map(|(_, mtu, _)| *mtu);
        learnt.map_or(self.mtu(link_mtu), |m| m.min(self.mtu(link_mtu)))
    }

    /// Remembers a smaller path MTU toward `dst` (RFC 8201 §4: never below
    /// 1280, never raised by a report), for ten minutes.
    pub(super) fn learn_path_mtu(&mut self, now: Instant, dst: Ipv6Addr, mtu: usize) {
        let mtu = mtu.max(crate::wire::ipv6::MIN_MTU);
        self.path_mtus.retain(|(_, _, expires)| *expires > now);
        let known = self.path_mtus.iter().position(|(d, _, _)| *d == dst);
        if let Some(i) = known {
            let entry = &mut self.path_mtus[i];
            entry.1 = entry.1.min(mtu);
            entry.2 = now + PATH_MTU_AGING;
            return;
        }
        if self.path_mtus.len() >= MAX_PATH_MTUS {
            self.path_mtus.remove(0); // the oldest
        }
        self.path_mtus.push((dst, mtu, now + PATH_MTU_AGING));
    }

    /// The neighbor cache, as `ip -6 neigh` lists it.
    pub fn neighbors(&self, now: Instant) -> Vec<super::neighbor::Neighbor<Ipv6Addr>> {
        self.neighbors.entries(now)
    }

    /// Packets to `destination` go to `target` from now on (a redirect,
    /// RFC 4861 §8.3), for [`REDIRECT_AGING`].
    pub(super) fn redirect(&mut self, now: Instant, destination: Ipv6Addr, target: Ipv6Addr) {
        self.redirects
            .retain(|&(d, _, expires)| d != destination && expires > now);
        if self.redirects.len() >= MAX_REDIRECTS {
            self.redirects.remove(0); // the oldest
        }
        log::debug!("redirected: {destination} through {target}");
        self.redirects
            .push((destination, target, now + REDIRECT_AGING));
    }

    /// Where a redirect said packets to `destination` go, if one did.
    pub(super) fn redirected(&self, now: Instant, destination: Ipv6Addr) -> Option<Ipv6Addr> {
        self.redirects
            .iter()
            .find(|&&(d, _, expires)| d == destination && expires > now)
            .map(|&(_, target, _)| target)
    }

    /// Whether a socket of ours joined `group`.
    pub fn is_member(&self, group: Ipv6Addr) -> bool {
        self.joined.iter().any(|&(g, _)| g == group)
    }

    /// Whether `addr` is ours and usable (not tentative, not duplicate).
    pub fn is_own(&self, addr: Ipv6Addr) -> bool {
        self.addresses
            .iter()
            .any(|a| a.address == addr && a.state.is_usable())
    }
}
