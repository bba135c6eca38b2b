//! A stub resolver for A and AAAA records (RFC 1035, RFC 1123 §6.1.3, RFC
//! 3596; one record type per lookup, as each family is asked): recursive
//! queries to the configured servers, retransmitted with backoff and
//! failing over from server to server, CNAME chains followed within the
//! answer, positive and negative caching by TTL (RFC 2308). Every attempt
//! uses a fresh random ID and source port, and a response is taken only if
//! address, ports, ID and question all match (RFC 5452 §9.1).
//!
//! Names under `.local` are asked of the link by multicast DNS instead, as
//! one-shot queries (RFC 6762 §5.1): to 224.0.0.251:5353 from a random
//! port, answered by unicast from the host that holds the name, with our ID
//! and question; no answer within the attempts means no such host.
//!
//! Sans-IO: the stack passes in time, hands received datagrams to
//! [`Resolver::process`] and sends what [`Resolver::poll`] returns.

use crate::time::{Duration, Instant};
use crate::wire::dns::{self, RecordData, Response};
use crate::wire::mdns;
use rand::rngs::StdRng;
use rand::RngExt;
use std::collections::HashMap;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy)]
pub struct ResolverConfig {
    /// Wait for the first attempt; doubled on each round over the servers.
    pub attempt_timeout: Duration,
    /// Rounds over the server list before giving up.
    pub rounds: u32,
    /// Longest time an answer is cached, whatever its TTL.
    pub max_ttl: Duration,
    /// Longest time a negative answer is cached (RFC 2308 §5 suggests 1–3 h; we are stricter).
    pub max_negative_ttl: Duration,
    pub cache_entries: usize,
    /// Lookups in progress at once.
    pub max_queries: usize,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            attempt_timeout: Duration::from_secs(1),
            rounds: 4,
            max_ttl: Duration::from_secs(86_400),
            max_negative_ttl: Duration::from_secs(300),
            cache_entries: 1024,
            max_queries: 256,
        }
    }
}

/// Why a name has no address; each maps to a `socket.gaierror` code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist (EAI_NONAME).
    NotFound,
    /// The name exists but has no address of the family asked (EAI_NODATA).
    NoData,
    /// No server answered usefully within the retries (EAI_AGAIN).
    Unreachable,
    /// No DNS server is known (EAI_AGAIN).
    NoServers,
    /// Not a valid host name (EAI_NONAME).
    InvalidName,
    /// Too many lookups in progress (EAI_AGAIN).
    Busy,
}

/// Which addresses a lookup asks for: the record type of the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// A records.
    Ipv4,
    /// AAAA records.
    Ipv6,
}

impl Family {
    fn qtype(self) -> u16 {
        match self {
            Family::Ipv4 => dns::TYPE_A,
            Family::Ipv6 => dns::TYPE_AAAA,
        }
    }

    /// The address of this family a record holds, if it is one.
    fn address(self, data: &RecordData) -> Option<IpAddr> {
        match (self, data) {
            (Family::Ipv4, RecordData::A(ip)) => Some((*ip).into()),
            (Family::Ipv6, RecordData::Aaaa(ip)) => Some((*ip).into()),
            _ => None,
        }
    }
}

/// Identifies a lookup until [`Resolver::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueryId(u64);

/// A query to send: UDP from our `src_port` to `server`:`dst_port` (53,
/// or mDNS's group and port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub server: IpAddr,
    pub dst_port: u16,
    pub src_port: u16,
    pub payload: Vec<u8>,
}

/// One-shot mDNS attempts for a `.local` name: after 1, 2 and 4 s, seven
/// seconds in all (nss-mdns gives up after five).
const MDNS_ATTEMPTS: usize = 3;

/// Where one-shot mDNS queries go (over IPv4).
const MDNS_GROUP: IpAddr = IpAddr::V4(mdns::GROUP);

/// Whether `name` (normalized) is asked of the link by mDNS (RFC 6762 §3).
fn is_link_local_name(name: &str) -> bool {
    name == "local" || name.ends_with(".local")
}

/// What a received datagram was to the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Not addressed to one of our query ports: for the UDP sockets.
    NotOurs,
    /// Used (an answer, or a server failure that moved us on).
    Taken,
    /// On one of our ports but not a valid matching response: dropped.
    Rejected,
}

pub type Lookup = Result<Vec<IpAddr>, DnsError>;

#[derive(Debug, Clone, Copy)]
struct Attempt {
    server: IpAddr,
    port: u16,
    id: u16,
}

#[derive(Debug)]
struct Pending {
    name: String,
    family: Family,
    servers: Vec<IpAddr>,
    attempts: Vec<Attempt>,
    /// When the current attempt times out (or the first is due).
    due: Instant,
    result: Option<Lookup>,
}

/// Longest CNAME chain followed inside one answer.
const MAX_CNAME_HOPS: usize = 16;

#[derive(Debug)]
pub struct Resolver {
    config: ResolverConfig,
    rng: StdRng,
    queries: HashMap<QueryId, Pending>,
    cache: HashMap<(String, Family), (Lookup, Instant)>,
    next_id: u64,
}

impl Resolver {
    /// `rng` draws query IDs and source ports, which go out in clear.
    pub fn new(config: ResolverConfig, rng: StdRng) -> Self {
        Resolver {
            config,
            rng,
            queries: HashMap::new(),
            cache: HashMap::new(),
            next_id: 1,
        }
    }

    /// Starts looking up `name`'s addresses of `family` through `servers`
    /// (tried in order), or by mDNS for a `.local` name. A cached answer is
    /// ready at once.
    pub fn query(
        &mut self,
        now: Instant,
        (name, family): (&str, Family),
        servers: &[IpAddr],
    ) -> QueryId {
        let normalized = dns::normalize_name(name);
        let servers = match &normalized {
            Ok(n) if is_link_local_name(n) => &[MDNS_GROUP][..],
            _ => servers,
        };
        let (name, result) = match normalized {
            Err(_) => (String::new(), Some(Err(DnsError::InvalidName))),
            Ok(n) => {
                let cached = self.cached(now, &n, family);
                let result = if cached.is_some() {
                    cached
                } else if servers.is_empty() {
                    Some(Err(DnsError::NoServers))
                } else if self.in_progress() >= self.config.max_queries {
                    Some(Err(DnsError::Busy))
                } else {
                    None
                };
                (n, result)
            }
        };
        let servers = servers.to_vec();
        self.add(Pending {
            name,
            family,
            servers,
            attempts: Vec::new(),
            due: now,
            result,
        })
    }

    /// A lookup whose outcome is known already (our own mDNS name).
    pub fn answered(&mut self, lookup: Lookup) -> QueryId {
        self.add(Pending {
            name: String::new(),
            family: Family::Ipv4,
            servers: Vec::new(),
            attempts: Vec::new(),
            due: Instant::ZERO,
            result: Some(lookup),
        })
    }

    fn add(&mut self, pending: Pending) -> QueryId {
        let id = QueryId(self.next_id);
        self.next_id += 1;
        self.queries.insert(id, pending);
        id
    }

    /// The outcome of a lookup, once there is one.
    pub fn result(&self, id: QueryId) -> Option<&Lookup> {
        self.queries.get(&id).and_then(|q| q.result.as_ref())
    }

    /// Forgets a lookup (done, or abandoned by its caller).
    pub fn finish(&mut self, id: QueryId) {
        self.queries.remove(&id);
    }

    fn in_progress(&self) -> usize {
        self.queries.values().filter(|q| q.result.is_none()).count()
    }

    /// Whether `port` is a source port of a query still open.
    pub fn uses_port(&self, port: u16) -> bool {
        self.queries
            .values()
            .filter(|q| q.result.is_none())
            .any(|q| q.attempts.iter().any(|a| a.port == port))
    }

    fn cached(&mut self, now: Instant, name: &str, family: Family) -> Option<Lookup> {
        let key = (name.to_string(), family);
        match self.cache.get(&key) {
            Some((lookup, expires)) if *expires > now => Some(lookup.clone()),
            Some(_) => {
                self.cache.remove(&key);
                None
            }
            None => None,
        }
    }

    fn remember(&mut self, now: Instant, key: (String, Family), lookup: &Lookup, ttl: Duration) {
        if ttl == Duration::ZERO {
            return;
        }
        if self.cache.len() >= self.config.cache_entries {
            self.cache.retain(|_, (_, expires)| *expires > now);
        }
        if self.cache.len() >= self.config.cache_entries {
            let soonest = self
                .cache
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = soonest {
                self.cache.remove(&k);
            }
        }
        self.cache.insert(key, (lookup.clone(), now + ttl));
    }

    /// Sends first attempts and retransmissions that are due; fails lookups
    /// whose attempts are exhausted. `taken` says which UDP ports are in use.
    pub fn poll(&mut self, now: Instant, taken: impl Fn(u16) -> bool) -> Vec<Transmit> {
        let mut out = Vec::new();
        let config = self.config;
        let mut ports_in_use: Vec<u16> = Vec::new();
        for q in self.queries.values() {
            if q.result.is_none() {
                ports_in_use.extend(q.attempts.iter().map(|a| a.port));
            }
        }
        for q in self.queries.values_mut() {
            if q.result.is_some() || q.due > now {
                continue;
            }
            let n = q.attempts.len();
            let link_local = q.servers == [MDNS_GROUP];
            if link_local && n >= MDNS_ATTEMPTS {
                q.result = Some(Err(DnsError::NotFound)); // nobody on the link holds it
                continue;
            }
            if n as u64 >= config.rounds as u64 * q.servers.len() as u64 {
                q.result = Some(Err(DnsError::Unreachable));
                continue;
            }
            let server = q.servers[n % q.servers.len()];
            // Random ports until a free one; nearly every port taken
            // (by the user's sockets) fails the lookup instead of spinning.
            let free = (0..1024)
                .map(|_| self.rng.random_range(1024..=65535u16))
                .find(|&p| !taken(p) && !ports_in_use.contains(&p));
            let Some(port) = free else {
                q.result = Some(Err(DnsError::Busy));
                continue;
            };
            ports_in_use.push(port);
            let id = self.rng.random::<u16>();
            let query = dns::Query {
                id,
                name: &q.name,
                qtype: q.family.qtype(),
                recursive: !link_local,
            };
            let mut payload = vec![0u8; query.buffer_len()];
            query.emit(&mut payload);
            q.attempts.push(Attempt { server, port, id });
            let round = (n / q.servers.len()) as u32;
            q.due =
                now + Duration::from_micros(config.attempt_timeout.total_micros() << round.min(10));
            out.push(Transmit {
                server,
                dst_port: if link_local { mdns::PORT } else { dns::PORT },
                src_port: port,
                payload,
            });
        }
        out
    }

    /// When [`Resolver::poll`] next has work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.queries
            .values()
            .filter(|q| q.result.is_none())
            .map(|q| q.due)
            .min()
    }

    /// Handles a UDP datagram from `src` to our `dst_port`.
    pub fn process(
        &mut self,
        now: Instant,
        src: (IpAddr, u16),
        dst_port: u16,
        payload: &[u8],
    ) -> Received {
        let found = self.queries.iter().find_map(|(id, q)| {
            let a = q.attempts.iter().find(|a| a.port == dst_port)?;
            q.result.is_none().then_some((*id, *a))
        });
        let Some((id, attempt)) = found else {
            return Received::NotOurs;
        };
        // A one-shot mDNS query is answered by the host holding the name,
        // from its own address (the stack takes only what comes over the link).
        let from_server = match attempt.server == MDNS_GROUP {
            true => src.1 == mdns::PORT,
            false => src == (attempt.server, dns::PORT),
        };
        if !from_server {
            return Received::Rejected;
        }
        // ID and question first: the records of a message that answers
        // nothing of ours are never parsed.
        let Ok((response_id, question)) = dns::response_question(payload) else {
            return Received::Rejected;
        };
        let q = &self.queries[&id];
        let question_ok = question
            .as_ref()
            .is_some_and(|(n, t)| *n == q.name && *t == q.family.qtype());
        if response_id != attempt.id || !question_ok {
            return Received::Rejected;
        }
        let Ok(response) = dns::parse_response(payload) else {
            return Received::Rejected;
        };
        let key = (q.name.clone(), q.family);
        match self.interpret(&key, &response) {
            Some((lookup, ttl)) => {
                self.remember(now, key, &lookup, ttl);
                if let Some(q) = self.queries.get_mut(&id) {
                    q.result = Some(lookup);
                }
            }
            // Server failure, refusal or a broken chain: on to the next attempt now.
            None => {
                if let Some(q) = self.queries.get_mut(&id) {
                    q.due = now;
                }
            }
        }
        Received::Taken
    }

    /// The lookup a response gives, with how long it may be cached; None
    /// when the server failed us and another should be asked.
    fn interpret(
        &self,
        (qname, family): &(String, Family),
        r: &Response,
    ) -> Option<(Lookup, Duration)> {
        let negative_ttl = || {
            // RFC 2308 §5: the SOA's TTL, capped by its MINIMUM; no SOA, no caching.
            r.authority
                .iter()
                .find_map(|rec| match rec.data {
                    RecordData::Soa { minimum } => Some(rec.ttl.min(minimum)),
                    _ => None,
                })
                .map_or(Duration::ZERO, |s| {
                    Duration::from_secs(s as u64).min(self.config.max_negative_ttl)
                })
        };
        match r.rcode {
            dns::RCODE_NXDOMAIN => return Some((Err(DnsError::NotFound), negative_ttl())),
            dns::RCODE_NOERROR => {}
            _ => return None,
        }
        let mut name = qname.to_string();
        let mut ttl = u32::MAX;
        for _ in 0..MAX_CNAME_HOPS {
            let mut addresses = Vec::new();
            for rec in r.answers.iter().filter(|rec| rec.name == name) {
                if let Some(ip) = family.address(&rec.data) {
                    if !addresses.contains(&ip) {
                        addresses.push(ip);
                    }
                    ttl = ttl.min(rec.ttl);
                }
            }
            if !addresses.is_empty() {
                let ttl = Duration::from_secs(ttl as u64).min(self.config.max_ttl);
                return Some((Ok(addresses), ttl));
            }
            let next = r.answers.iter().find_map(|rec| match &rec.data {
                RecordData::Cname(target) if rec.name == name => Some((target.clone(), rec.ttl)),
                _ => None,
            });
            match next {
                Some((target, t)) => {
                    ttl = ttl.min(t);
                    name = target;
                }
                // A truncated answer without the records: ask again elsewhere.
                None if r.truncated => return None,
                None => return Some((Err(DnsError::NoData), negative_ttl())),
            }
        }
        None // a CNAME loop or an absurdly long chain
    }
}
