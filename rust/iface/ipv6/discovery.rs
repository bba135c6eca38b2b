//! Neighbor and router discovery (RFC 4861), duplicate address detection
//! and SLAAC (RFC 4862), and the MLDv2 reports of our groups (RFC 3810).

use super::addresses::deadline;
use super::egress::Outgoing;
use super::{
    AddressOrigin, AddressState, HostAddress, Ipv6Host, Link, OnLinkPrefix, Router,
    MAX_DNS_SERVERS, MAX_PREFIXES, MAX_ROUTERS, MAX_RTR_SOLICITATIONS, MAX_RTR_SOLICITATION_DELAY,
    RTR_SOLICITATION_INTERVAL,
};
use crate::iface::DropReason;
use crate::time::{earliest, Duration, Instant};
use crate::wire::ipv6::{self, Ipv6Addr};
use crate::wire::{mld, ndp, MacAddress};
use rand::RngExt;

impl Ipv6Host {
    /// A random wait in [0, `max`) (RFC 4862 §5.4.2, RFC 4861 §6.3.7, RFC 3810 §6.2).
    fn jitter(&mut self, max: Duration) -> Duration {
        Duration::from_micros(self.rng.random_range(0..max.total_micros().max(1)))
    }

    /// Adds an address, tentative while duplicate address detection runs
    /// (RFC 4862 §5.4), which starts after a random delay (§5.4.2).
    pub(super) fn add_address(
        &mut self,
        now: Instant,
        address: Ipv6Addr,
        prefix_len: u8,
        origin: AddressOrigin,
        valid_until: Option<Instant>,
        preferred_until: Option<Instant>,
    ) {
        let delay = self.jitter(MAX_RTR_SOLICITATION_DELAY);
        self.addresses.push(HostAddress {
            address,
            prefix_len,
            origin,
            state: AddressState::Tentative {
                probes_sent: 0,
                next_probe: now + delay,
            },
            valid_until,
            preferred_until,
        });
    }

    /// The link came back (or the host starts): every address is checked
    /// again, neighbors asked for again, routers solicited again.
    pub fn restart(&mut self, now: Instant) {
        self.neighbors.forget_resolved();
        for i in 0..self.addresses.len() {
            let delay = self.jitter(MAX_RTR_SOLICITATION_DELAY);
            let a = &mut self.addresses[i];
            a.state = AddressState::Tentative {
                probes_sent: 0,
                next_probe: now + delay,
            };
        }
        self.solicitations_sent = 0;
        self.next_solicitation = None;
    }

    pub(super) fn process_ndp(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        src_mac: MacAddress,
        (src, dst): (Ipv6Addr, Ipv6Addr),
        message: ndp::Message,
    ) {
        match message {
            ndp::Message::NeighborSolicit { target, source_mac } => {
                // §7.1.1: from the unspecified address only to a solicited-node
                // group and without a link-layer address.
                if src.is_unspecified()
                    && (source_mac.is_some() || dst != ipv6::solicited_node(target))
                {
                    return link.counters.count_drop(DropReason::NdpInvalid);
                }
                self.process_solicit(now, link, src_mac, src, target, source_mac);
            }
            ndp::Message::NeighborAdvert {
                target,
                target_mac,
                solicited,
                ..
            } => {
                // §7.1.2: a solicited advertisement is never multicast.
                if solicited && dst.is_multicast() {
                    return link.counters.count_drop(DropReason::NdpInvalid);
                }
                self.process_advert(now, link, target, target_mac);
            }
            ndp::Message::RouterAdvert(advert) => {
                // §6.1.2: routers speak from their link-local address.
                if !ipv6::is_link_local(src) {
                    return link.counters.count_drop(DropReason::NdpInvalid);
                }
                if self.config.accept_router_adverts {
                    self.process_router_advert(now, link, src, advert);
                }
            }
            ndp::Message::Redirect {
                target,
                destination,
                target_mac,
            } => {
                // §8.1: only from the router we now send `destination`'s
                // packets through, from its link-local address.
                // (On the link, `destination` is its own next hop: nothing to redirect.)
                let hop = self.next_hop(now, destination);
                if !ipv6::is_link_local(src) || hop == Some(destination) || hop != Some(src) {
                    return link.counters.count_drop(DropReason::NdpInvalid);
                }
                self.redirect(now, destination, target);
                if let Some(mac) = target_mac {
                    // §8.3: the target's address, an entry made if need be.
                    let (tx, counters) = (&mut *link.tx, &mut *link.counters);
                    self.neighbors.learn(now, target, mac, true, |frame| {
                        super::super::interface::push_frame(tx, counters, frame)
                    });
                }
            }
            ndp::Message::RouterSolicit { .. } => {
                link.counters.count_drop(DropReason::Icmpv6Unhandled)
            }
        }
    }

    /// RFC 4861 §7.2.3, and RFC 4862 §5.4.3 for a tentative target.
    fn process_solicit(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        src_mac: MacAddress,
        src: Ipv6Addr,
        target: Ipv6Addr,
        source_mac: Option<MacAddress>,
    ) {
        let Some(i) = self.addresses.iter().position(|a| a.address == target) else {
            return link.counters.count_drop(DropReason::Ipv6NotForUs);
        };
        match self.addresses[i].state {
            // Another node probes for the address we probe for: it is taken.
            AddressState::Tentative { .. } if src.is_unspecified() => {
                return self.duplicate(i, link);
            }
            AddressState::Tentative { .. } | AddressState::Duplicate => return,
            AddressState::Preferred | AddressState::Deprecated => {}
        }
        let our_mac = link.mac;
        let advert = |solicited| ndp::Advert {
            solicited,
            override_entry: true,
            target,
            target_mac: our_mac,
        };
        if src.is_unspecified() {
            // §7.2.4: the prober learns of us from all nodes.
            let advert = advert(false);
            let mac = ipv6::multicast_mac(ipv6::ALL_NODES);
            return self.reply_to(
                link,
                mac,
                (target, ipv6::ALL_NODES),
                ndp::Advert::LEN,
                |b, s, d| advert.emit(b, s, d),
            );
        }
        if let Some(mac) = source_mac {
            let (tx, counters) = (&mut *link.tx, &mut *link.counters);
            self.neighbors.learn(now, src, mac, true, |frame| {
                super::super::interface::push_frame(tx, counters, frame)
            });
        }
        let mac = self.reply_mac(now, src, source_mac, src_mac);
        let advert = advert(true);
        self.reply_to(link, mac, (target, src), ndp::Advert::LEN, |b, s, d| {
            advert.emit(b, s, d)
        });
    }

    /// RFC 4861 §7.2.5 (as a host that keeps one reachable state), and
    /// RFC 4862 §5.4.4 for a target of ours.
    fn process_advert(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        target: Ipv6Addr,
        target_mac: Option<MacAddress>,
    ) {
        if let Some(i) = self.addresses.iter().position(|a| a.address == target) {
            match self.addresses[i].state {
                AddressState::Tentative { .. } => self.duplicate(i, link),
                AddressState::Duplicate => {}
                _ => {
                    log::warn!("address conflict: another node advertises {target}");
                    link.counters.count_drop(DropReason::Ipv6AddressConflict);
                }
            }
            return;
        }
        if let Some(mac) = target_mac {
            let (tx, counters) = (&mut *link.tx, &mut *link.counters);
            self.neighbors.learn(now, target, mac, false, |frame| {
                super::super::interface::push_frame(tx, counters, frame)
            });
        }
    }

    /// RFC 4862 §5.4.5: the address is another node's and is never used.
    fn duplicate(&mut self, i: usize, link: &mut Link<'_>) {
        let address = &mut self.addresses[i];
        log::warn!(
            "duplicate address detected: {} is another node's",
            address.address
        );
        address.state = AddressState::Duplicate;
        link.counters.count_drop(DropReason::Ipv6AddressConflict);
    }

    /// RFC 4861 §6.3.4, and RFC 4862 §5.5.3 for the prefixes.
    fn process_router_advert(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        src: Ipv6Addr,
        advert: ndp::RouterAdvert,
    ) {
        self.next_solicitation = None; // a router answered
        if advert.cur_hop_limit != 0 {
            self.hop_limit = advert.cur_hop_limit;
        }
        if advert.retrans_timer != 0 {
            self.retrans_timer = Duration::from_millis(u64::from(advert.retrans_timer));
        }
        if let Some(mac) = advert.source_mac {
            let (tx, counters) = (&mut *link.tx, &mut *link.counters);
            self.neighbors.learn(now, src, mac, true, |frame| {
                super::super::interface::push_frame(tx, counters, frame)
            });
        }
        // §6.3.4: an MTU outside [1280, the link's] is ignored.
        if let Some(mtu) = advert.mtu.map(|m| m as usize) {
            if (ipv6::MIN_MTU..=link.mtu).contains(&mtu) {
                self.advertised_mtu = Some(mtu);
            }
        }
        self.routers
            .retain(|r| r.address != src && r.expires_at > now);
        if advert.router_lifetime > 0 && self.routers.len() < MAX_ROUTERS {
            self.routers.push(Router {
                address: src,
                expires_at: now + Duration::from_secs(u64::from(advert.router_lifetime)),
            });
        }
        for option in &advert.dns_servers {
            self.take_dns_servers(now, option);
        }
        for prefix in &advert.prefixes {
            if ipv6::is_link_local(prefix.prefix)
                || prefix.preferred_lifetime > prefix.valid_lifetime
            {
                continue; // §5.5.3 (b), (c)
            }
            if prefix.on_link {
                self.take_on_link(now, prefix);
            }
            if prefix.autonomous {
                self.take_autonomous(now, prefix);
            }
        }
    }

    /// RFC 8106 §5.3.1: servers are added or refreshed, or (lifetime 0)
    /// removed; a new one beyond the limit takes the place of the one that
    /// expires first. Multicast and unspecified addresses are no servers.
    fn take_dns_servers(&mut self, now: Instant, option: &ndp::DnsServers) {
        self.dns_servers
            .retain(|(_, expires)| expires.map_or(true, |t| t > now));
        for &server in &option.servers {
            if server.is_multicast() || server.is_unspecified() || server.is_loopback() {
                continue;
            }
            self.dns_servers.retain(|(a, _)| *a != server);
            if option.lifetime == 0 {
                continue;
            }
            if self.dns_servers.len() >= MAX_DNS_SERVERS {
                let soonest =
                    (0..self.dns_servers.len()).min_by_key(|&i| match self.dns_servers[i].1 {
                        Some(t) => (0, t),
                        None => (1, Instant::ZERO), // for ever: the last to go
                    });
                if let Some(i) = soonest {
                    self.dns_servers.remove(i);
                }
            }
            self.dns_servers
                .push((server, deadline(now, option.lifetime)));
        }
    }

    /// §6.3.4: an on-link prefix is added, refreshed, or (lifetime 0) removed.
    fn take_on_link(&mut self, now: Instant, prefix: &ndp::PrefixInfo) {
        let len = prefix.prefix_len.min(128);
        self.on_link.retain(|p| {
            !(p.prefix == prefix.prefix && p.len == len) && p.expires_at.map_or(true, |t| t > now)
        });
        if prefix.valid_lifetime > 0 && self.on_link.len() < MAX_PREFIXES {
            self.on_link.push(OnLinkPrefix {
                prefix: prefix.prefix,
                len,
                expires_at: deadline(now, prefix.valid_lifetime),
            });
        }
    }

    /// RFC 4862 §5.5.3 (d), (e): an address from a /64 prefix, or new lifetimes.
    fn take_autonomous(&mut self, now: Instant, prefix: &ndp::PrefixInfo) {
        if prefix.prefix_len != 64 {
            // RFC 4862 §5.5.3 (d): the prefix and our 64-bit identifier must fill 128 bits.
            log::info!(
                "prefix {}/{} ignored: not /64",
                prefix.prefix,
                prefix.prefix_len
            );
            return;
        }
        let address = ipv6::with_interface_id(prefix.prefix, self.interface_id);
        if let Some(a) = self.addresses.iter_mut().find(|a| a.address == address) {
            if a.origin == AddressOrigin::Autoconfigured {
                a.refresh(now, prefix.valid_lifetime, prefix.preferred_lifetime);
            }
            return;
        }
        if prefix.valid_lifetime == 0 || self.addresses.len() > MAX_PREFIXES {
            return;
        }
        self.add_address(
            now,
            address,
            64,
            AddressOrigin::Autoconfigured,
            deadline(now, prefix.valid_lifetime),
            deadline(now, prefix.preferred_lifetime),
        );
    }

    pub(super) fn process_mld_query(&mut self, now: Instant, query: mld::Query) {
        let asked = match query.group {
            None => true,
            Some(group) => self.groups().contains(&group),
        };
        if asked {
            let due = now + self.jitter(query.max_response.max(Duration::from_millis(1)));
            self.report_due = earliest(self.report_due, Some(due));
        }
    }

    /// The groups we report: the solicited-node group of each address not
    /// found duplicate, and those our sockets joined, once each (all nodes
    /// and interface-local groups never, RFC 3810 §6).
    fn groups(&self) -> Vec<Ipv6Addr> {
        let mut groups: Vec<Ipv6Addr> = Vec::new();
        let solicited = (self.addresses.iter())
            .filter(|a| a.state != AddressState::Duplicate)
            .map(|a| ipv6::solicited_node(a.address));
        for group in solicited.chain(self.joined.iter().map(|&(g, _)| g)) {
            if reported(group) && !groups.contains(&group) {
                groups.push(group);
            }
        }
        groups
    }

    /// A socket joins `group` (IPV6_JOIN_GROUP): the first reports it at
    /// once (RFC 3810 §6.1; or with the rest once the link-local address is
    /// ours).
    pub fn join_group(&mut self, now: Instant, link: &mut Link<'_>, group: Ipv6Addr) {
        if let Some(entry) = self.joined.iter_mut().find(|(g, _)| *g == group) {
            entry.1 += 1;
            return;
        }
        self.joined.push((group, 1));
        if reported(group) && self.link_local_usable() {
            self.send_report(now, link, mld::CHANGE_TO_EXCLUDE, &[group]);
        }
    }

    /// A socket leaves `group`: the last to leave says so (a change to
    /// include nothing, RFC 3810 §6.1).
    pub fn leave_group(&mut self, now: Instant, link: &mut Link<'_>, group: Ipv6Addr) {
        let Some(i) = self.joined.iter().position(|(g, _)| *g == group) else {
            return;
        };
        self.joined[i].1 -= 1;
        if self.joined[i].1 > 0 {
            return;
        }
        self.joined.swap_remove(i);
        if reported(group) && self.link_local_usable() {
            self.send_report(now, link, mld::CHANGE_TO_INCLUDE, &[group]);
        }
    }

    fn link_local_usable(&self) -> bool {
        (self.addresses.iter()).any(|a| a.origin == AddressOrigin::LinkLocal && a.state.is_usable())
    }

    fn send_report(
        &mut self,
        now: Instant,
        link: &mut Link<'_>,
        record_type: u8,
        groups: &[Ipv6Addr],
    ) {
        if groups.is_empty() {
            return;
        }
        // RFC 3810 §5.2.13: from the link-local address, or the unspecified
        // one while it is tentative.
        let src = self
            .source_for(ipv6::ALL_MLDV2_ROUTERS)
            .unwrap_or(Ipv6Addr::UNSPECIFIED);
        let report = mld::Report {
            record_type,
            groups,
        };
        let out = Outgoing {
            src,
            dst: ipv6::ALL_MLDV2_ROUTERS,
            next_header: ipv6::NEXT_ICMPV6,
            hop_limit: 1,
            router_alert: true,
        };
        let _ = self.send(now, link, out, report.len(), |b, s, d| report.emit(b, s, d));
    }

    /// Timers: probes, addresses becoming preferred or aging, solicitations,
    /// reports, and the neighbor cache.
    pub fn poll(&mut self, now: Instant, link: &mut Link<'_>) {
        self.poll_detection(now, link);
        let before = self.addresses.len();
        self.addresses.retain_mut(|a| a.age(now));
        if self.addresses.len() != before {
            log::info!("an IPv6 address's valid lifetime ended");
        }
        self.routers.retain(|r| r.expires_at > now);
        self.dns_servers
            .retain(|(_, expires)| expires.map_or(true, |t| t > now));
        if self.next_solicitation.is_some_and(|t| t <= now) {
            self.solicit_routers(now, link);
        }
        if self.report_due.is_some_and(|t| t <= now) {
            self.report_due = None;
            let groups = self.groups();
            self.send_report(now, link, mld::MODE_IS_EXCLUDE, &groups);
        }
        self.poll_neighbors(now, link);
    }

    /// RFC 4862 §5.4.2: join the solicited-node group, then send the probes
    /// a retransmission timer apart; quiet after the last, the address is ours.
    fn poll_detection(&mut self, now: Instant, link: &mut Link<'_>) {
        for i in 0..self.addresses.len() {
            let AddressState::Tentative {
                probes_sent,
                next_probe,
            } = self.addresses[i].state
            else {
                continue;
            };
            if next_probe > now {
                continue;
            }
            let address = self.addresses[i].address;
            if probes_sent >= self.config.dad_transmits {
                self.addresses[i].state = AddressState::Preferred;
                log::info!("IPv6 address {address} is ours");
                if self.addresses[i].origin == AddressOrigin::LinkLocal {
                    self.link_local_ready(now, link);
                }
                continue;
            }
            if probes_sent == 0 {
                let group = [ipv6::solicited_node(address)];
                self.send_report(now, link, mld::CHANGE_TO_EXCLUDE, &group);
            }
            self.addresses[i].state = AddressState::Tentative {
                probes_sent: probes_sent + 1,
                next_probe: now + self.retrans_timer,
            };
            let probe = ndp::Solicit {
                target: address,
                source_mac: None,
            };
            let out = Outgoing {
                src: Ipv6Addr::UNSPECIFIED,
                dst: ipv6::solicited_node(address),
                next_header: ipv6::NEXT_ICMPV6,
                hop_limit: 255,
                router_alert: false,
            };
            let _ = self.send(now, link, out, probe.len(), |b, s, d| probe.emit(b, s, d));
        }
    }

    /// The link-local address is ours: report our groups from it, and ask
    /// routers to advertise (RFC 4861 §6.3.7) after a random delay.
    fn link_local_ready(&mut self, now: Instant, link: &mut Link<'_>) {
        let groups = self.groups();
        self.send_report(now, link, mld::CHANGE_TO_EXCLUDE, &groups);
        if self.config.accept_router_adverts {
            self.solicitations_sent = 0;
            self.next_solicitation = Some(now + self.jitter(MAX_RTR_SOLICITATION_DELAY));
        }
    }

    fn solicit_routers(&mut self, now: Instant, link: &mut Link<'_>) {
        if self.solicitations_sent >= MAX_RTR_SOLICITATIONS {
            self.next_solicitation = None;
            return;
        }
        self.solicitations_sent += 1;
        self.next_solicitation = Some(now + RTR_SOLICITATION_INTERVAL);
        let src = self.source_for(ipv6::ALL_ROUTERS);
        let message = ndp::RouterSolicit {
            source_mac: src.map(|_| link.mac),
        };
        let out = Outgoing {
            src: src.unwrap_or(Ipv6Addr::UNSPECIFIED),
            dst: ipv6::ALL_ROUTERS,
            next_header: ipv6::NEXT_ICMPV6,
            hop_limit: 255,
            router_alert: false,
        };
        let _ = self.send(now, link, out, message.len(), |b, s, d| {
            message.emit(b, s, d)
        });
    }

    /// When [`Ipv6Host::poll`] next has something to do.
    pub fn poll_at(&self) -> Option<Instant> {
        let mut at = earliest(self.neighbors.poll_at(), self.next_solicitation);
        at = earliest(at, self.report_due);
        for a in &self.addresses {
            if let AddressState::Tentative { next_probe, .. } = a.state {
                at = earliest(at, Some(next_probe));
            }
            at = earliest(at, a.age_at());
        }
        for r in &self.routers {
            at = earliest(at, Some(r.expires_at));
        }
        for (_, expires) in &self.dns_servers {
            at = earliest(at, *expires);
        }
        at
    }
}

/// RFC 3810 §6: a group worth reporting: not all nodes (ff02::1), not
/// interface-local (ff01::/16, never on the wire).
fn reported(group: Ipv6Addr) -> bool {
    group != ipv6::ALL_NODES && group.segments()[0] & 0xff0f != 0xff01
}
