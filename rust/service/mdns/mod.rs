//! A Multicast DNS responder (RFC 6762) with DNS-based service discovery
//! (RFC 6763): it claims `<host>.local` and its services' instance names on
//! the link (probing, §8.1, then announcing, §8.3), takes another name when a
//! host already holds one (§9), and answers queries for the names, the
//! address's reverse name and the service types, by multicast or unicast as
//! the query asks (§5.4, §6, §6.7). Sans-IO: datagrams and time in,
//! [`Transmit`]s out.

use crate::time::{Duration, Instant};
use crate::wire::dns::TYPE_A;
use crate::wire::mdns::{
    self, reverse_name, Message, OwnData, OwnRecord, Record, Section, Writer, TYPE_AAAA, TYPE_ANY,
    TYPE_SRV, TYPE_TXT,
};
use crate::wire::{Error, Ipv4Addr};
use rand::rngs::StdRng;
use rand::RngExt;
use std::collections::VecDeque;
use std::net::Ipv6Addr;

/// §10: records naming a host live 120 s, the others 75 minutes.
pub const HOST_TTL: u32 = 120;
pub const SERVICE_TTL: u32 = 4500;
/// §6.7: the most a legacy (one-shot) querier is told to keep an answer.
pub const LEGACY_TTL: u32 = 10;
const PROBES: u8 = 3;
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
const ANNOUNCEMENTS: u8 = 2;
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);
/// §6: a record is multicast at most once a second, or every 250 ms in
/// defence of a name being probed for.
const MULTICAST_GAP: Duration = Duration::from_secs(1);
const PROBE_DEFENCE_GAP: Duration = Duration::from_millis(250);
/// §8.1: after 15 conflicts within 10 s, wait 5 s before probing again.
const CONFLICT_LIMIT: usize = 15;
const CONFLICT_WINDOW: Duration = Duration::from_secs(10);
const CONFLICT_BACKOFF: Duration = Duration::from_secs(5);
/// §8.2: a host that loses a simultaneous probe waits a second.
const LOST_TIE_WAIT: Duration = Duration::from_secs(1);
/// Services' meta-query name (RFC 6763 §9).
const SERVICES_NAME: &str = "_services._dns-sd._udp.local";

mod answer;
mod config;
mod conflicts;

pub use config::{MdnsConfig, ServiceConfig};

/// Where the responder is in claiming its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No address: nothing to claim.
    Idle,
    /// `sent` probes gone (§8.1).
    Probing {
        sent: u8,
    },
    /// `sent` announcements gone (§8.3).
    Announcing {
        sent: u8,
    },
    Announced,
}

/// A datagram to send from port 5353, with IP TTL 255 (§11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dst: Ipv4Addr,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl Transmit {
    fn multicast(payload: Vec<u8>) -> Self {
        Transmit {
            dst: mdns::GROUP,
            dst_port: mdns::PORT,
            payload,
        }
    }
}

/// Where a datagram came from, as the stack saw it.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// Sent to the group (not to our unicast address).
    pub to_group: bool,
    /// From an address on our link: only those get unicast answers (§11).
    pub on_link: bool,
}

/// A unique name we hold or mean to: the host's or a service instance's.
#[derive(Debug, Clone, Copy)]
struct Claim {
    /// 1 for the name as configured, n for "<host>-n" or "<instance> (n)".
    attempt: u32,
    /// Probed and announced: ours to answer for.
    announced: bool,
}

impl Claim {
    const NEW: Claim = Claim {
        attempt: 1,
        announced: false,
    };
}

#[derive(Debug)]
struct Service {
    config: ServiceConfig,
    claim: Claim,
}

#[derive(Debug)]
pub struct Responder {
    /// The host's label as configured.
    host: String,
    host_claim: Claim,
    services: Vec<Service>,
    address: Option<Ipv4Addr>,
    /// IPv6 addresses of ours the host name also stands for (AAAA records).
    ipv6_addresses: Vec<Ipv6Addr>,
    phase: Phase,
    /// When the next probe or announcement is due.
    next: Option<Instant>,
    /// When each record (name, type) was last multicast.
    multicast_at: Vec<(String, u16, Instant)>,
    conflicts: VecDeque<Instant>,
    rng: StdRng,
}

impl Responder {
    pub fn new(config: MdnsConfig, rng: StdRng) -> Self {
        Responder {
            host: config.host,
            host_claim: Claim::NEW,
            services: config
                .services
                .into_iter()
                .map(|config| Service {
                    config,
                    claim: Claim::NEW,
                })
                .collect(),
            address: None,
            ipv6_addresses: Vec::new(),
            phase: Phase::Idle,
            next: None,
            multicast_at: Vec::new(),
            conflicts: VecDeque::new(),
            rng,
        }
    }

    /// The host's name now, as `<host>.local` (another after a conflict).
    pub fn host_name(&self) -> String {
        match self.host_claim.attempt {
            1 => format!("{}.local", self.host),
            n => format!("{}-{n}.local", self.host),
        }
    }

    /// The host's name, once announced.
    pub fn announced_host_name(&self) -> Option<String> {
        self.host_claim.announced.then(|| self.host_name())
    }

    /// The instance names of the services announced (full names).
    pub fn service_names(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|s| s.claim.announced && self.host_claim.announced)
            .map(instance_name)
            .collect()
    }

    /// Adds a service (DNS-SD) while running: its instance name is probed
    /// for and announced as at start-up (§8); the names held meanwhile are
    /// answered for as before.
    pub fn add_service(&mut self, now: Instant, config: ServiceConfig) -> Result<(), String> {
        MdnsConfig {
            host: self.host.clone(),
            services: vec![config.clone()],
        }
        .check()?;
        let taken = self.services.iter().any(|s| {
            same_name(&s.config.instance, &config.instance)
                && same_name(&s.config.kind, &config.kind)
        });
        if taken {
            return Err(format!(
                "{:?} is already announced as a {} service",
                config.instance, config.kind
            ));
        }
        self.services.push(Service {
            config,
            claim: Claim::NEW,
        });
        if self.address.is_some() {
            self.start_probing(now, Duration::ZERO);
        }
        Ok(())
    }

    /// Withdraws the service `instance` of type `kind` (as configured):
    /// a goodbye for its records if it was announced (§10.1). None if there
    /// is no such service.
    pub fn remove_service(&mut self, kind: &str, instance: &str) -> Option<Vec<Transmit>> {
        let at = self.services.iter().position(|s| {
            same_name(&s.config.instance, instance) && same_name(&s.config.kind, kind)
        })?;
        let before = self.live_records();
        let was_live = self.services[at].claim.announced && self.host_claim.announced;
        self.services.remove(at);
        if !was_live {
            return Some(Vec::new());
        }
        let after = self.live_records();
        let mut w = Writer::response(0, true);
        for r in before.iter().filter(|r| !after.contains(r)) {
            w.record(Section::Answer, r, 0);
        }
        Some(vec![Transmit::multicast(w.finish())])
    }

    /// Every name is to be claimed again (a new address, the link back).
    fn forget_claims(&mut self) {
        self.host_claim.announced = false;
        for s in &mut self.services {
            s.claim.announced = false;
        }
    }

    pub fn address(&self) -> Option<Ipv4Addr> {
        self.address
    }

    /// Our address is now `address`: the names are claimed again for it
    /// (§8: at start-up and whenever the address changes).
    pub fn set_address(&mut self, now: Instant, address: Option<Ipv4Addr>) {
        if address == self.address {
            return;
        }
        self.address = address;
        self.forget_claims();
        match address {
            Some(_) => self.start_probing(now, Duration::ZERO),
            None => {
                self.phase = Phase::Idle;
                self.next = None;
            }
        }
    }

    /// Our usable IPv6 addresses are now `addresses`: the host name stands
    /// for them too (AAAA records, §6.2). A change once the name is held is
    /// announced (§8.4); the name is not claimed again (it stays ours).
    pub fn set_ipv6_addresses(&mut self, now: Instant, addresses: &[Ipv6Addr]) {
        if addresses == self.ipv6_addresses.as_slice() {
            return;
        }
        self.ipv6_addresses = addresses.to_vec();
        if self.phase == Phase::Announced {
            self.phase = Phase::Announcing { sent: 0 };
            self.next = Some(now);
        }
    }

    pub fn ipv6_addresses(&self) -> &[Ipv6Addr] {
        &self.ipv6_addresses
    }

    /// The link came back, maybe on another network: probe again (§8.3).
    pub fn link_returned(&mut self, now: Instant) {
        if self.address.is_some() {
            self.forget_claims();
            self.start_probing(now, Duration::ZERO);
        }
    }

    /// §8.1: the first probe goes after a random 0–250 ms, so that hosts
    /// started together do not probe in step.
    fn start_probing(&mut self, now: Instant, wait: Duration) {
        while self
            .conflicts
            .front()
            .is_some_and(|&t| now.saturating_since(t) > CONFLICT_WINDOW)
        {
            self.conflicts.pop_front();
        }
        let backoff = if self.conflicts.len() >= CONFLICT_LIMIT {
            CONFLICT_BACKOFF
        } else {
            Duration::ZERO
        };
        let jitter = Duration::from_micros(self.rng.random_range(0..=250_000));
        self.phase = Phase::Probing { sent: 0 };
        self.next = Some(now + wait + backoff + jitter);
    }

    pub fn poll_at(&self) -> Option<Instant> {
        self.next
    }

    /// Sends the probe or announcement due at `now`.
    pub fn poll(&mut self, now: Instant) -> Vec<Transmit> {
        if !self.next.is_some_and(|t| t <= now) {
            return Vec::new();
        }
        if matches!(self.phase, Phase::Probing { .. }) && self.pending_names().is_empty() {
            // (What was to be probed for went away meanwhile.)
            self.phase = Phase::Announced;
            self.next = None;
            return Vec::new();
        }
        match self.phase {
            Phase::Probing { sent } if sent < PROBES => {
                self.phase = Phase::Probing { sent: sent + 1 };
                self.next = Some(now + PROBE_INTERVAL);
                vec![Transmit::multicast(self.probe(sent == 0))]
            }
            Phase::Probing { .. } | Phase::Announcing { .. } => {
                let sent = match self.phase {
                    Phase::Announcing { sent } => sent,
                    _ => {
                        self.won_pending_names();
                        0
                    }
                };
                let all = self.live_records();
                let mut w = Writer::response(0, true);
                for r in &all {
                    w.record(Section::Answer, r, r.ttl);
                }
                self.note_multicast(now, &all);
                let sent = sent + 1;
                if sent < ANNOUNCEMENTS {
                    self.phase = Phase::Announcing { sent };
                    self.next = Some(now + ANNOUNCE_INTERVAL);
                } else {
                    self.phase = Phase::Announced;
                    self.next = None;
                }
                vec![Transmit::multicast(w.finish())]
            }
            Phase::Idle | Phase::Announced => {
                self.next = None;
                Vec::new()
            }
        }
    }

    /// A probe (§8.1): a question of type ANY for each name we claim, the
    /// records we propose in the authority section.
    fn probe(&self, first: bool) -> Vec<u8> {
        let all = self.records();
        let mut w = Writer::query();
        for name in self.pending_names() {
            // §8.1: the first probe asks for a unicast answer.
            w.question(&name, TYPE_ANY, first);
        }
        for r in all.iter().filter(|r| r.unique && self.is_pending(&r.name)) {
            w.record(Section::Authority, r, r.ttl);
        }
        w.finish()
    }

    /// "Goodbye" (§10.1): every record with TTL 0, as the stack closes.
    pub fn goodbye(&mut self) -> Option<Transmit> {
        let live = self.live_records();
        self.forget_claims();
        self.phase = Phase::Idle;
        self.next = None;
        if live.is_empty() {
            return None;
        }
        let mut w = Writer::response(0, true);
        for r in &live {
            w.record(Section::Answer, r, 0);
        }
        Some(Transmit::multicast(w.finish()))
    }

    /// The names being claimed: the host's and service instances' not yet
    /// announced.
    fn pending_names(&self) -> Vec<String> {
        let host = (!self.host_claim.announced).then(|| self.host_name());
        let services = self
            .services
            .iter()
            .filter(|s| !s.claim.announced)
            .map(instance_name);
        host.into_iter().chain(services).collect()
    }

    fn is_pending(&self, name: &str) -> bool {
        self.pending_names().iter().any(|n| same_name(n, name))
    }

    /// The probes went unanswered: the names being claimed are ours.
    fn won_pending_names(&mut self) {
        if !self.host_claim.announced {
            log::info!("mDNS: this host is {}", self.host_name());
        }
        self.host_claim.announced = true;
        for s in &mut self.services {
            if !s.claim.announced {
                log::info!("mDNS: announcing {}", instance_name(s));
                s.claim.announced = true;
            }
        }
    }

    /// The records of the names announced: what we answer with.
    fn live_records(&self) -> Vec<OwnRecord> {
        if !self.host_claim.announced {
            return Vec::new();
        }
        let live: Vec<String> = self
            .services
            .iter()
            .filter(|s| s.claim.announced)
            .map(|s| format!("{}.local", s.config.kind))
            .collect();
        let pending = self.pending_names();
        self.records()
            .into_iter()
            .filter(|r| !pending.iter().any(|n| same_name(n, &r.name)))
            .filter(|r| match &r.data {
                // A type's PTR to a pending instance, or to a type with none live.
                OwnData::Ptr(target) => {
                    !pending.iter().any(|n| same_name(n, target))
                        && (!same_name(&r.name, SERVICES_NAME)
                            || live.iter().any(|k| same_name(k, target)))
                }
                _ => true,
            })
            .collect()
    }

    /// Every record of every name, held or being claimed.
    fn records(&self) -> Vec<OwnRecord> {
        let Some(ip) = self.address else {
            return Vec::new();
        };
        let host = self.host_name();
        let own = |name: &str, ttl, unique, data| OwnRecord {
            name: name.to_string(),
            ttl,
            unique,
            data,
        };
        let mut all = vec![
            own(&host, HOST_TTL, true, OwnData::A(ip)),
            own(
                &reverse_name(ip),
                HOST_TTL,
                true,
                OwnData::Ptr(host.clone()),
            ),
        ];
        for &v6 in &self.ipv6_addresses {
            all.push(own(&host, HOST_TTL, true, OwnData::Aaaa(v6)));
        }
        for service in &self.services {
            let s = &service.config;
            let kind = format!("{}.local", s.kind);
            let instance = instance_name(service);
            all.push(own(
                &kind,
                SERVICE_TTL,
                false,
                OwnData::Ptr(instance.clone()),
            ));
            all.push(own(
                &instance,
                HOST_TTL,
                true,
                OwnData::Srv {
                    port: s.port,
                    target: host.clone(),
                },
            ));
            all.push(own(
                &instance,
                SERVICE_TTL,
                true,
                OwnData::Txt(s.txt.clone()),
            ));
            let meta = own(SERVICES_NAME, SERVICE_TTL, false, OwnData::Ptr(kind));
            if !all.contains(&meta) {
                all.push(meta); // one per type
            }
        }
        all
    }

    /// Takes a datagram sent to port 5353. Returns what to send in answer.
    pub fn process(
        &mut self,
        now: Instant,
        from: Source,
        payload: &[u8],
    ) -> Result<Vec<Transmit>, Error> {
        let message = mdns::parse(payload)?;
        if self.address.is_none() {
            return Ok(Vec::new());
        }
        if message.response {
            // §11: responses come from port 5353; others are not ours to heed.
            if from.port == mdns::PORT {
                self.check_conflicts(now, &message);
            }
            return Ok(Vec::new());
        }
        if let Phase::Probing { .. } = self.phase {
            if self.break_probe_tie(now, &message) {
                return Ok(Vec::new());
            }
        }
        // (While some names are probed for, those already held are answered.)
        Ok(self.answer(now, from, &message))
    }
}

/// DNS names compare without ASCII case (RFC 6762 §16).
pub fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// A service's instance name now (full), with its number after a conflict.
fn instance_name(s: &Service) -> String {
    let label = match s.claim.attempt {
        1 => s.config.instance.clone(),
        n => format!("{} ({n})", s.config.instance),
    };
    // Names keep the case given and compare without it (§16).
    format!("{label}.{}.local", s.config.kind)
}
