//! The DHCP client (RFC 2131): discovery, selection, binding, renewal,
//! rebinding and expiry, driven by time passed in and messages passed in.

use crate::iface::{Ipv4Cidr, Ipv4Config};
use crate::time::{Duration, Instant};
use crate::wire::dhcp::{MessageType, Op, Repr, REQUESTED_PARAMETERS};
use crate::wire::{Ipv4Addr, MacAddress};
use rand::rngs::StdRng;
use rand::RngExt;

#[derive(Debug, Clone)]
pub struct DhcpConfig {
    pub mac: MacAddress,
    /// Sent as option 12 so that the server can register a name.
    pub hostname: Option<String>,
    /// RFC 2131 §4.1: the first retransmission after 4 s (±1 s), doubling up to 64 s.
    pub initial_retransmit: Duration,
    pub max_retransmit: Duration,
    /// REQUESTs sent in the REQUESTING state before starting over with a DISCOVER.
    pub max_request_attempts: u8,
    /// RFC 2131 §4.4.5: in RENEWING and REBINDING, retry after half the remaining time, at least this.
    pub min_lease_retry: Duration,
    /// Used when a server sends no lease time (option 51).
    pub default_lease: Duration,
}

impl DhcpConfig {
    pub fn new(mac: MacAddress) -> Self {
        DhcpConfig {
            mac,
            hostname: Some("mipfast".into()),
            initial_retransmit: Duration::from_secs(4),
            max_retransmit: Duration::from_secs(64),
            max_request_attempts: 4,
            min_lease_retry: Duration::from_secs(60),
            default_lease: Duration::from_secs(3600),
        }
    }
}

/// An address lease and the configuration it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub config: Ipv4Config,
    pub server: Ipv4Addr,
    pub duration: Duration,
    pub renew_at: Instant,
    pub rebind_at: Instant,
    pub expires_at: Instant,
}

/// A message for the stack to send from `src` to `dst` (UDP 68 → 67).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub message: Repr,
}

/// What the client asks of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Transmit),
    /// Install this lease's configuration (new, changed or renewed).
    Configure(Lease),
    /// The lease is gone: remove the address.
    Deconfigure,
}

/// A message that did not belong to our exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ignored;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Selecting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    /// Back on a link that was away, asking whether the lease still holds
    /// there (RFC 2131 §3.2, INIT-REBOOT).
    Rebooting,
}

impl Phase {
    /// RFC 2131 §4.4's state, as the dashboard shows it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Selecting => "selecting",
            Phase::Requesting => "requesting",
            Phase::Bound => "bound",
            Phase::Renewing => "renewing",
            Phase::Rebinding => "rebinding",
            Phase::Rebooting => "rebooting",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    address: Ipv4Addr,
    server: Ipv4Addr,
}

#[derive(Debug)]
pub struct DhcpClient {
    config: DhcpConfig,
    rng: StdRng,
    phase: Phase,
    xid: u32,
    /// When the current exchange began (for the `secs` field).
    started: Instant,
    next_transmit: Instant,
    interval: Duration,
    attempts: u8,
    offer: Option<Offer>,
    lease: Option<Lease>,
    /// The last address held, asked for again on rediscovery (RFC 2131 §3.1 step 1, option 50).
    previous_address: Option<Ipv4Addr>,
}

impl DhcpClient {
    /// A client that sends its first DISCOVER at `now`. `rng` draws what
    /// goes out in clear (xids, jitter): it must share nothing with secrets.
    pub fn new(config: DhcpConfig, rng: StdRng, now: Instant) -> Self {
        let mut client = DhcpClient {
            config,
            rng,
            phase: Phase::Selecting,
            xid: 0,
            started: now,
            next_transmit: now,
            interval: Duration::ZERO,
            attempts: 0,
            offer: None,
            lease: None,
            previous_address: None,
        };
        client.restart(now);
        client
    }

    /// The transaction ID in use (it is on the wire).
    pub fn xid(&self) -> u32 {
        self.xid
    }
    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    pub(crate) fn restart(&mut self, now: Instant) {
        self.phase = Phase::Selecting;
        self.begin_exchange(now);
        self.offer = None;
    }

    /// The link was down or gone and is back: it may lead to another network.
    /// A lease is verified there at once (RFC 2131 §3.2: a REQUEST broadcast
    /// with the address, no server identifier, answered by an ACK or a NAK
    /// where it is wrong); without one, discovery starts over now instead of
    /// at its backed-off retransmission.
    pub fn link_returned(&mut self, now: Instant) {
        if self.lease.is_some() {
            log::info!("DHCP: the link is back; verifying the lease");
            self.phase = Phase::Rebooting;
            self.begin_exchange(now);
        } else {
            self.restart(now);
        }
    }

    fn begin_exchange(&mut self, now: Instant) {
        self.xid = self.rng.random();
        self.started = now;
        self.next_transmit = now;
        self.interval = self.config.initial_retransmit;
        self.attempts = 0;
    }

    /// RFC 2131 §4.1: the next wait, randomised by ±1 s, then doubled up to the maximum.
    fn schedule_retransmit(&mut self, now: Instant) {
        let jitter = self.rng.random_range(-1_000_000i64..=1_000_000);
        let wait = (self.interval.total_micros() as i64 + jitter).max(100_000) as u64;
        self.next_transmit = now + Duration::from_micros(wait);
        self.interval = Duration::from_micros(
            (self.interval.total_micros() * 2).min(self.config.max_retransmit.total_micros()),
        );
    }

    /// RFC 2131 §4.4.5: half the time left until `deadline`, at least the minimum, never past it.
    fn schedule_lease_retry(&mut self, now: Instant, deadline: Instant) {
        let half = deadline.saturating_since(now).mul_f64(0.5);
        let wait = if half < self.config.min_lease_retry {
            self.config.min_lease_retry
        } else {
            half
        };
        self.next_transmit = (now + wait).min(deadline);
    }

    /// When [`DhcpClient::poll`] next has work.
    pub fn poll_at(&self) -> Instant {
        match (&self.phase, &self.lease) {
            (Phase::Bound, Some(l)) => l.renew_at,
            (Phase::Renewing, Some(l)) => self.next_transmit.min(l.rebind_at),
            (Phase::Rebinding, Some(l)) => self.next_transmit.min(l.expires_at),
            _ => self.next_transmit,
        }
    }

    /// Timers: transmissions, T1, T2 and expiry.
    pub fn poll(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(lease) = &self.lease {
            let (renew_at, rebind_at, expires_at) =
                (lease.renew_at, lease.rebind_at, lease.expires_at);
            if now >= expires_at {
                log::warn!("DHCP lease on {} expired", lease.config.cidr.address);
                self.previous_address = Some(lease.config.cidr.address);
                self.lease = None;
                actions.push(Action::Deconfigure);
                self.restart(now);
            } else if now >= rebind_at && matches!(self.phase, Phase::Bound | Phase::Renewing) {
                log::info!("DHCP rebinding (T2)");
                self.phase = Phase::Rebinding;
                self.begin_exchange(now);
            } else if now >= renew_at && self.phase == Phase::Bound {
                log::debug!("DHCP renewing (T1)");
                self.phase = Phase::Renewing;
                self.begin_exchange(now);
            }
        }
        if self.phase == Phase::Bound || now < self.next_transmit {
            return actions;
        }
        match self.phase {
            Phase::Selecting => self.send_discover(now, &mut actions),
            Phase::Requesting => match self.offer {
                Some(offer) if self.attempts < self.config.max_request_attempts => {
                    actions.push(Action::Send(self.broadcast(self.select(offer, now))));
                    self.attempts += 1;
                    self.schedule_retransmit(now);
                }
                _ => {
                    log::info!("DHCP REQUEST unanswered; discovering again");
                    self.restart(now);
                    self.send_discover(now, &mut actions);
                }
            },
            Phase::Rebooting => {
                match &self.lease {
                    Some(lease) if self.attempts < self.config.max_request_attempts => {
                        let mut msg = self.message(MessageType::Request, now);
                        msg.requested_ip = Some(lease.config.cidr.address);
                        actions.push(Action::Send(self.broadcast(msg)));
                        self.attempts += 1;
                        self.schedule_retransmit(now);
                    }
                    // RFC 2131 §3.2 step 5: no answer, so the lease stands.
                    Some(_) => {
                        log::info!("DHCP: no server answered on the link that came back; keeping the lease");
                        self.phase = Phase::Bound;
                    }
                    None => {
                        self.restart(now);
                        self.send_discover(now, &mut actions);
                    }
                }
            }
            Phase::Renewing | Phase::Rebinding => {
                let Some(lease) = self.lease.clone() else {
                    self.restart(now);
                    self.send_discover(now, &mut actions);
                    return actions;
                };
                let mut msg = self.message(MessageType::Request, now);
                msg.ciaddr = lease.config.cidr.address;
                let transmit = if self.phase == Phase::Renewing {
                    self.schedule_lease_retry(now, lease.rebind_at);
                    Transmit {
                        src: lease.config.cidr.address,
                        dst: lease.server,
                        message: msg,
                    }
                } else {
                    self.schedule_lease_retry(now, lease.expires_at);
                    Transmit {
                        src: lease.config.cidr.address,
                        dst: Ipv4Addr::BROADCAST,
                        message: msg,
                    }
                };
                actions.push(Action::Send(transmit));
            }
            Phase::Bound => {}
        }
        actions
    }

    fn send_discover(&mut self, now: Instant, actions: &mut Vec<Action>) {
        actions.push(Action::Send(self.broadcast(self.discover())));
        self.schedule_retransmit(now);
    }

    fn broadcast(&self, message: Repr) -> Transmit {
        Transmit {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::BROADCAST,
            message,
        }
    }

    fn message(&self, message_type: MessageType, now: Instant) -> Repr {
        let mut m = Repr::new(Op::Request, message_type, self.xid, self.config.mac);
        m.secs = now
            .saturating_since(self.started)
            .secs()
            .min(u16::MAX as u64) as u16;
        m.client_id = [&[1u8][..], &self.config.mac.0].concat();
        m.hostname = self.config.hostname.clone();
        m.parameter_request_list = REQUESTED_PARAMETERS.to_vec();
        m
    }

    fn discover(&self) -> Repr {
        let mut m = self.message(MessageType::Discover, self.started);
        m.requested_ip = self.previous_address;
        m
    }

    fn select(&self, offer: Offer, now: Instant) -> Repr {
        let mut m = self.message(MessageType::Request, now);
        m.requested_ip = Some(offer.address);
        m.server_id = Some(offer.server);
        m
    }

    /// A message from a server (UDP 67 → 68).
    pub fn process(&mut self, now: Instant, msg: &Repr) -> Result<Vec<Action>, Ignored> {
        if msg.op != Op::Reply || msg.xid != self.xid || msg.client_mac != self.config.mac {
            return Err(Ignored);
        }
        match (self.phase, msg.message_type) {
            (Phase::Selecting, MessageType::Offer) => {
                let server = msg.server_id.ok_or(Ignored)?;
                if msg.yiaddr.is_unspecified()
                    || msg.yiaddr.is_broadcast()
                    || msg.yiaddr.is_multicast()
                {
                    return Err(Ignored);
                }
                log::debug!("DHCP offer of {} from {server}", msg.yiaddr);
                let offer = Offer {
                    address: msg.yiaddr,
                    server,
                };
                self.offer = Some(offer);
                self.phase = Phase::Requesting;
                // The REQUEST keeps the xid of the DISCOVER (RFC 2131 §4.4.1 table 5).
                self.next_transmit = now;
                self.interval = self.config.initial_retransmit;
                self.attempts = 0;
                Ok(self.poll(now))
            }
            (Phase::Requesting, MessageType::Ack) => {
                let offer = self.offer.ok_or(Ignored)?;
                if msg.server_id.is_some_and(|s| s != offer.server) {
                    return Err(Ignored);
                }
                self.bind(now, msg, offer.server)
            }
            (Phase::Renewing | Phase::Rebinding | Phase::Rebooting, MessageType::Ack) => {
                let server = msg
                    .server_id
                    .or(self.lease.as_ref().map(|l| l.server))
                    .ok_or(Ignored)?;
                self.bind(now, msg, server)
            }
            (
                Phase::Requesting | Phase::Renewing | Phase::Rebinding | Phase::Rebooting,
                MessageType::Nak,
            ) => {
                if self.phase == Phase::Requesting
                    && msg
                        .server_id
                        .is_some_and(|s| Some(s) != self.offer.map(|o| o.server))
                {
                    return Err(Ignored);
                }
                log::warn!(
                    "DHCP NAK from {}",
                    msg.server_id.map_or("server".into(), |s| s.to_string())
                );
                let mut actions = Vec::new();
                if self.lease.take().is_some() {
                    self.previous_address = None;
                    actions.push(Action::Deconfigure);
                }
                self.restart(now);
                actions.extend(self.poll(now));
                Ok(actions)
            }
            _ => Err(Ignored),
        }
    }

    fn bind(&mut self, now: Instant, msg: &Repr, server: Ipv4Addr) -> Result<Vec<Action>, Ignored> {
        let address = msg.yiaddr;
        let netmask = msg.subnet_mask.unwrap_or_else(|| classful_netmask(address));
        let cidr = Ipv4Cidr::from_netmask(address, netmask).map_err(|e| {
            log::warn!("DHCP ACK refused: {e}");
            Ignored
        })?;
        let gateway = msg.router.filter(|gw| {
            let ok = cidr.contains(*gw) && *gw != address;
            if !ok {
                log::warn!("DHCP router {gw} is not on {cidr}; ignoring it");
            }
            ok
        });
        let config =
            Ipv4Config::new(cidr, gateway, msg.dns_servers.clone()).map_err(|_| Ignored)?;
        let lease = lease_times(now, msg, &self.config, config, server);
        self.lease = Some(lease.clone());
        self.previous_address = Some(address);
        self.phase = Phase::Bound;
        self.offer = None;
        Ok(vec![Action::Configure(lease)])
    }
}

/// RFC 2131 §4.4.5 defaults: T1 = 0.5 × lease, T2 = 0.875 × lease; server
/// values are used when they are ordered T1 < T2 < lease. 0xffffffff is infinity.
fn lease_times(
    now: Instant,
    msg: &Repr,
    cfg: &DhcpConfig,
    config: Ipv4Config,
    server: Ipv4Addr,
) -> Lease {
    let secs = msg
        .lease_time
        .map(u64::from)
        .unwrap_or(cfg.default_lease.secs());
    if msg.lease_time == Some(u32::MAX) {
        let never = Instant::from_micros(i64::MAX);
        return Lease {
            config,
            server,
            duration: Duration::from_micros(u64::MAX),
            renew_at: never,
            rebind_at: never,
            expires_at: never,
        };
    }
    let duration = Duration::from_secs(secs);
    let mut t1 = duration.mul_f64(0.5);
    let mut t2 = duration.mul_f64(0.875);
    if let (Some(a), Some(b)) = (msg.renewal_time, msg.rebinding_time) {
        let (a, b) = (Duration::from_secs(a.into()), Duration::from_secs(b.into()));
        if a < b && b < duration {
            t1 = a;
            t2 = b;
        }
    }
    Lease {
        config,
        server,
        duration,
        renew_at: now + t1,
        rebind_at: now + t2,
        expires_at: now + duration,
    }
}

/// The historical class mask, for servers that omit option 1.
fn classful_netmask(ip: Ipv4Addr) -> Ipv4Addr {
    match ip.octets()[0] {
        0..=127 => Ipv4Addr::new(255, 0, 0, 0),
        128..=191 => Ipv4Addr::new(255, 255, 0, 0),
        _ => Ipv4Addr::new(255, 255, 255, 0),
    }
}
