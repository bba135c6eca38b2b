//! The stack's Multicast DNS responder (`service/mdns/`): it joins
//! 224.0.0.251, follows the stack's address, takes datagrams to port 5353
//! (which UDP sockets bound there still get) and sends its answers with IP
//! TTL 255 (RFC 6762 §11).

use super::Stack;
use crate::iface::Ipv6Host;
use crate::iface::{DropReason, UdpDelivery};
use crate::service::dns::Family;
use crate::service::mdns::{MdnsConfig, Responder, ServiceConfig, Source, Transmit};
use crate::time::Instant;
use crate::wire::mdns::{GROUP, IP_TTL, PORT};
use rand::rngs::StdRng;
use std::net::{IpAddr, Ipv6Addr};

impl Stack {
    pub(super) fn start_mdns(&mut self, now: Instant, config: MdnsConfig, rng: StdRng) {
        self.iface.join_multicast(now, GROUP);
        self.mdns = Some(Responder::new(config, rng));
    }

    /// Hands a datagram to port 5353 to the responder; true when it was
    /// for the responder (answered, or malformed and counted).
    pub(super) fn process_mdns(&mut self, now: Instant, datagram: &UdpDelivery<'_>) -> bool {
        if datagram.dst_port != PORT {
            return false;
        }
        if datagram.dst != GROUP && Some(datagram.dst) != self.ipv4() {
            return false;
        }
        let on_link = self
            .iface
            .ipv4_config()
            .is_some_and(|c| c.cidr.contains(datagram.src));
        let from = Source {
            ip: datagram.src,
            port: datagram.src_port,
            to_group: datagram.dst == GROUP,
            on_link,
        };
        let Some(responder) = self.mdns.as_mut() else {
            return false;
        };
        match responder.process(now, from, datagram.payload) {
            Ok(transmits) => self.send_mdns(now, transmits),
            Err(_) => self.iface.count_drop(DropReason::MdnsMalformed),
        }
        true
    }

    /// Follows the address and sends what the responder has due.
    pub(super) fn poll_mdns(&mut self, now: Instant) {
        let ip = self.ipv4();
        let Some(responder) = self.mdns.as_mut() else {
            return;
        };
        responder.set_address(now, ip);
        let v6: Vec<Ipv6Addr> = usable_ipv6(self.iface.ipv6()).collect();
        responder.set_ipv6_addresses(now, &v6);
        let transmits = responder.poll(now);
        self.send_mdns(now, transmits);
    }

    pub(super) fn mdns_poll_at(&self) -> Option<Instant> {
        let responder = self.mdns.as_ref()?;
        let ipv6 = usable_ipv6(self.iface.ipv6());
        let v6_changed = !responder.ipv6_addresses().iter().copied().eq(ipv6);
        if responder.address() != self.ipv4() || v6_changed {
            return Some(Instant::ZERO); // an address to take up
        }
        responder.poll_at()
    }

    /// Says goodbye (RFC 6762 §10.1): every record with TTL 0, so that
    /// caches forget this host at once. The stack calls it as it closes.
    pub fn mdns_goodbye(&mut self, now: Instant) {
        if let Some(t) = self.mdns.as_mut().and_then(|r| r.goodbye()) {
            self.send_mdns(now, vec![t]);
        }
    }

    /// The host's mDNS name once announced (`<host>.local`, or the name
    /// taken after a conflict).
    pub fn mdns_name(&self) -> Option<String> {
        self.mdns.as_ref()?.announced_host_name()
    }

    /// Our addresses of `family`, if `name` is the mDNS name we hold.
    pub(super) fn own_mdns_addresses(&self, name: &str, family: Family) -> Option<Vec<IpAddr>> {
        let name = name.strip_suffix('.').unwrap_or(name);
        let ours = self.mdns_name()?;
        if !crate::service::mdns::same_name(&ours, name) {
            return None;
        }
        Some(match family {
            Family::Ipv4 => self.ipv4().into_iter().map(IpAddr::from).collect(),
            Family::Ipv6 => usable_ipv6(self.iface.ipv6()).map(IpAddr::from).collect(),
        })
    }

    /// The services' instance names once announced.
    pub fn mdns_services(&self) -> Vec<String> {
        self.mdns
            .as_ref()
            .map(|r| r.service_names())
            .unwrap_or_default()
    }

    /// Announces another service (`service/mdns/`, `add_service`).
    pub fn mdns_advertise(&mut self, now: Instant, service: ServiceConfig) -> Result<(), String> {
        let Some(responder) = self.mdns.as_mut() else {
            return Err("the stack has no mDNS responder (give it a name to answer for)".into());
        };
        responder.add_service(now, service)
    }

    /// Withdraws a service, with a goodbye if it was announced; false if
    /// there is none of that type and instance name.
    pub fn mdns_withdraw(&mut self, now: Instant, kind: &str, instance: &str) -> bool {
        let Some(transmits) = self
            .mdns
            .as_mut()
            .and_then(|r| r.remove_service(kind, instance))
        else {
            return false;
        };
        self.send_mdns(now, transmits);
        true
    }

    fn send_mdns(&mut self, now: Instant, transmits: Vec<Transmit>) {
        let Some(our_ip) = self.ipv4() else {
            return;
        };
        for t in transmits {
            let _ = self.iface.send_udp_with_ttl(
                now,
                IP_TTL,
                (our_ip, t.dst),
                (PORT, t.dst_port),
                &t.payload,
            );
        }
    }
}

/// The IPv6 addresses of ours others may use (not tentative, not duplicate).
fn usable_ipv6(host: Option<&Ipv6Host>) -> impl Iterator<Item = Ipv6Addr> + '_ {
    host.map(|h| h.addresses().iter())
        .into_iter()
        .flatten()
        .filter(|a| a.state.is_usable())
        .map(|a| a.address)
}
