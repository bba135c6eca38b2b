//! The DHCP client's whole life against a scripted server over an in-memory
//! link with simulated time: offer, ack, loss, NAK, renew, rebind, expiry.

mod common;
use common::*;
use mipfast::phy::fault::FaultConfig;
use mipfast::phy::link::{pair, LinkEnd};
use mipfast::phy::{Device, FrameSink, Link, LinkState};
use mipfast::service::dhcp::Phase;
use mipfast::stack::{Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::dhcp::{MessageType, Op, Repr};
use mipfast::wire::{arp, ethernet, ipv4, udp, Ipv4Addr, MacAddress};

const SERVER_MAC: MacAddress = MacAddress([0x02, 0xaa, 0, 0, 0, 0x67]);
const OFFERED: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);

/// A DHCP server whose misbehaviour each test scripts.
struct Server {
    link: LinkEnd,
    offer: Ipv4Addr,
    lease_secs: u32,
    drop_discovers: usize,
    drop_requests: usize,
    ignore_unicast: bool,
    silent: bool,
    nak_next_request: bool,
    /// (time, type, ip source, ip destination, ciaddr) of every message seen.
    seen: Vec<(Instant, MessageType, Ipv4Addr, Ipv4Addr, Ipv4Addr)>,
}

impl Server {
    fn new(link: LinkEnd) -> Self {
        Server {
            link,
            offer: OFFERED,
            lease_secs: 120,
            drop_discovers: 0,
            drop_requests: 0,
            ignore_unicast: false,
            silent: false,
            nak_next_request: false,
            seen: vec![],
        }
    }

    fn poll(&mut self, now: Instant) {
        let mut frames = vec![];
        self.link
            .receive(now, &mut |f, _, _| {
                frames.push(f.to_vec());
                std::ops::ControlFlow::Continue(())
            })
            .unwrap();
        for f in frames {
            self.handle(now, &f);
        }
    }

    /// Frames the link corrupted are dropped, as a real server would.
    fn handle(&mut self, now: Instant, f: &[u8]) {
        let Ok(eth) = ethernet::Frame::new_checked(f) else {
            return;
        };
        if eth.ethertype() == ethernet::ETHERTYPE_ARP {
            let Ok(a) = arp::Repr::parse(eth.payload()) else {
                return;
            };
            if a.operation == arp::Operation::Request && a.target_ip == PEER_IP {
                let reply = arp_frame(
                    arp::Operation::Reply,
                    (SERVER_MAC, PEER_IP),
                    (a.sender_mac, a.sender_ip),
                    a.sender_mac,
                );
                self.link.inject(now, &reply);
            }
            return;
        }
        let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
            return;
        };
        if !ip.verify_checksum() {
            return;
        }
        let Ok(d) = udp::Datagram::new_checked(ip.payload(), ip.src(), ip.dst()) else {
            return;
        };
        let Ok(msg) = Repr::parse(d.payload()) else {
            return;
        };
        self.seen
            .push((now, msg.message_type, ip.src(), ip.dst(), msg.ciaddr));
        if self.silent || (self.ignore_unicast && !ip.dst().is_broadcast()) {
            return;
        }
        let reply_type = match msg.message_type {
            MessageType::Discover if self.drop_discovers > 0 => {
                self.drop_discovers -= 1;
                return;
            }
            MessageType::Request if self.drop_requests > 0 => {
                self.drop_requests -= 1;
                return;
            }
            MessageType::Request if self.nak_next_request => {
                self.nak_next_request = false;
                MessageType::Nak
            }
            MessageType::Discover => MessageType::Offer,
            MessageType::Request => MessageType::Ack,
            _ => return,
        };
        let mut r = Repr::new(Op::Reply, reply_type, msg.xid, msg.client_mac);
        r.server_id = Some(PEER_IP);
        if reply_type != MessageType::Nak {
            r.yiaddr = self.offer;
            r.subnet_mask = Some(Ipv4Addr::new(255, 255, 255, 0));
            r.router = Some(PEER_IP);
            r.dns_servers = vec![PEER_IP];
            r.lease_time = Some(self.lease_secs);
        }
        let mut payload = vec![0u8; r.buffer_len()];
        r.emit(&mut payload);
        // Like dnsmasq: unicast to the offered address and the client's MAC.
        let (dst_mac, dst_ip) = if reply_type == MessageType::Nak {
            (MacAddress::BROADCAST, Ipv4Addr::BROADCAST)
        } else {
            (msg.client_mac, self.offer)
        };
        let frame = udp_frame(dst_mac, SERVER_MAC, (PEER_IP, 67), (dst_ip, 68), &payload);
        self.link.inject(now, &frame);
    }
}

/// The stack's end of the link, and how many times the link came back
/// (a cable plugged in again), which a test sets.
struct Plug {
    end: LinkEnd,
    returns: u64,
}

impl Device for Plug {
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> std::io::Result<usize> {
        self.end.receive(now, sink)
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> std::io::Result<()> {
        self.end.transmit(now, frame)
    }
    fn link(&self) -> Link {
        Link {
            state: LinkState::Up,
            returns: self.returns,
            mtu: 0,
        }
    }
}

struct Sim {
    now: Instant,
    stack: Stack,
    dev: Plug,
    server: Server,
}

impl Sim {
    fn new() -> Self {
        let (dev, server_end) = pair(FaultConfig::latency(Duration::from_millis(1)), 3);
        let now = Instant::ZERO;
        let stack = Stack::new(StackConfig::dhcp(42), now);
        Sim {
            now,
            stack,
            dev: Plug {
                end: dev,
                returns: 0,
            },
            server: Server::new(server_end),
        }
    }

    /// Runs events in time order until `until`.
    fn run_until(&mut self, until: Instant) {
        loop {
            self.stack.poll(self.now, &mut self.dev).unwrap();
            self.server.poll(self.now);
            let next = [
                self.stack.poll_at(),
                self.dev.end.next_arrival(),
                self.server.link.next_arrival(),
            ]
            .into_iter()
            .flatten()
            .min();
            match next {
                Some(t) if t <= until => self.now = t.max(self.now),
                _ => {
                    self.now = until;
                    self.stack.poll(self.now, &mut self.dev).unwrap();
                    return;
                }
            }
        }
    }

    fn ip(&self) -> Option<Ipv4Addr> {
        self.stack.ipv4_config().map(|c| c.cidr.address)
    }

    fn types(&self) -> Vec<MessageType> {
        self.server.seen.iter().map(|s| s.1).collect()
    }
}

fn secs(s: f64) -> Instant {
    Instant::from_micros((s * 1e6) as i64)
}

#[test]
fn discover_offer_request_ack_at_once() {
    let mut sim = Sim::new();
    sim.run_until(secs(0.05));
    assert_eq!(sim.ip(), Some(OFFERED));
    let c = sim.stack.ipv4_config().unwrap();
    assert_eq!(
        (c.cidr.prefix_len, c.gateway, c.dns_servers.clone()),
        (24, Some(PEER_IP), vec![PEER_IP])
    );
    assert_eq!(
        sim.types(),
        vec![MessageType::Discover, MessageType::Request]
    );
    // The DISCOVER went out right at start.
    assert_eq!(sim.server.seen[0].0, secs(0.001));
    assert_eq!(sim.server.seen[0].2, Ipv4Addr::UNSPECIFIED);
    let lease = sim.stack.dhcp_lease().unwrap();
    assert_eq!(
        lease.renew_at,
        sim.server.seen[1].0 + Duration::from_millis(1) + Duration::from_secs(60)
    );
}

#[test]
fn lost_messages_are_retransmitted_with_backoff() {
    let mut sim = Sim::new();
    sim.server.drop_discovers = 2;
    sim.server.drop_requests = 1;
    sim.run_until(secs(60.0));
    assert_eq!(sim.ip(), Some(OFFERED));
    let t: Vec<f64> = sim
        .server
        .seen
        .iter()
        .map(|s| s.0.total_micros() as f64 / 1e6)
        .collect();
    assert_eq!(
        sim.types(),
        vec![
            MessageType::Discover,
            MessageType::Discover,
            MessageType::Discover,
            MessageType::Request,
            MessageType::Request
        ]
    );
    // RFC 2131 §4.1: about 4 s, then about 8 s, each ±1 s.
    let gap1 = t[1] - t[0];
    let gap2 = t[2] - t[1];
    assert!((3.0..=5.0).contains(&gap1), "{t:?}");
    assert!((7.0..=9.0).contains(&gap2), "{t:?}");
    assert!((3.0..=5.0).contains(&(t[4] - t[3])), "{t:?}");
}

#[test]
fn nak_while_requesting_restarts_discovery() {
    let mut sim = Sim::new();
    sim.server.nak_next_request = true;
    sim.run_until(secs(1.0));
    assert_eq!(
        sim.types(),
        vec![
            MessageType::Discover,
            MessageType::Request,
            MessageType::Discover,
            MessageType::Request
        ]
    );
    assert_eq!(sim.ip(), Some(OFFERED));
}

#[test]
fn renews_by_unicast_at_t1() {
    let mut sim = Sim::new();
    sim.run_until(secs(59.0));
    assert_eq!(sim.server.seen.len(), 2);
    sim.run_until(secs(61.0));
    let renew = sim.server.seen[2];
    assert_eq!(
        (renew.1, renew.2, renew.3, renew.4),
        (MessageType::Request, OFFERED, PEER_IP, OFFERED)
    );
    assert_eq!(
        sim.stack.dhcp_lease().unwrap().expires_at.total_micros() / 1_000_000,
        180
    );
    // Still bound all the way through the next lease.
    sim.run_until(secs(110.0));
    assert_eq!(sim.ip(), Some(OFFERED));
    assert_eq!(
        sim.stack.config_generation(),
        1,
        "a renewal is not an address change"
    );
}

#[test]
fn rebinds_by_broadcast_at_t2_when_the_server_ignores_renewals() {
    let mut sim = Sim::new();
    sim.run_until(secs(1.0));
    sim.server.ignore_unicast = true;
    sim.run_until(secs(106.0));
    let last = *sim.server.seen.last().unwrap();
    assert_eq!(
        (last.1, last.2, last.3, last.4),
        (MessageType::Request, OFFERED, Ipv4Addr::BROADCAST, OFFERED)
    );
    assert!((105.0..106.0).contains(&(last.0.total_micros() as f64 / 1e6)));
    assert_eq!(sim.ip(), Some(OFFERED));
    assert_eq!(
        sim.stack.dhcp_lease().unwrap().expires_at.total_micros() / 1_000_000,
        225
    );
}

#[test]
fn expiry_removes_the_address_and_rediscovers() {
    let mut sim = Sim::new();
    sim.run_until(secs(1.0));
    sim.server.silent = true;
    sim.run_until(secs(119.9));
    assert_eq!(sim.ip(), Some(OFFERED));
    sim.run_until(secs(120.1));
    assert_eq!(sim.ip(), None, "address removed at expiry");
    assert_eq!(*sim.types().last().unwrap(), MessageType::Discover);
    // The server returns: a new lease, asked for the previous address.
    sim.server.silent = false;
    sim.server.offer = Ipv4Addr::new(10, 77, 0, 101);
    sim.run_until(secs(200.0));
    assert_eq!(sim.ip(), Some(Ipv4Addr::new(10, 77, 0, 101)));
    assert_eq!(sim.stack.config_generation(), 3);
}

#[test]
fn nak_while_renewing_removes_the_address() {
    let mut sim = Sim::new();
    sim.run_until(secs(1.0));
    sim.server.nak_next_request = true;
    sim.server.offer = Ipv4Addr::new(10, 77, 0, 150);
    sim.run_until(secs(60.5));
    assert_eq!(
        sim.ip(),
        Some(Ipv4Addr::new(10, 77, 0, 150)),
        "NAK, then a fresh lease on the new address"
    );
    assert!(sim.stack.config_generation() >= 3);
}

#[test]
fn a_link_that_comes_back_has_its_lease_verified_at_once() {
    let mut sim = Sim::new();
    sim.run_until(secs(10.0));
    assert_eq!(sim.ip(), Some(OFFERED));
    sim.dev.returns = 1;
    sim.run_until(secs(10.05));
    // RFC 2131 §4.3.2, INIT-REBOOT: broadcast, the address asked for, no
    // ciaddr (nor a server identifier, which the server's ACK shows it needed not).
    let verify = sim.server.seen[2];
    assert_eq!(
        (verify.1, verify.2, verify.3, verify.4),
        (
            MessageType::Request,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            Ipv4Addr::UNSPECIFIED
        )
    );
    assert_eq!(sim.stack.dhcp_phase(), Some(Phase::Bound));
    assert_eq!(
        sim.stack.dhcp_lease().unwrap().expires_at.total_micros() / 1_000_000,
        130,
        "the ACK started a fresh lease"
    );
    assert_eq!(sim.stack.config_generation(), 1, "the same address");
}

#[test]
fn a_link_that_comes_back_elsewhere_is_told_so_and_rediscovers() {
    let mut sim = Sim::new();
    sim.run_until(secs(10.0));
    sim.server.nak_next_request = true;
    sim.server.offer = Ipv4Addr::new(10, 77, 0, 150);
    sim.dev.returns = 1;
    sim.run_until(secs(10.5));
    assert_eq!(sim.ip(), Some(Ipv4Addr::new(10, 77, 0, 150)));
    assert_eq!(
        sim.types()[2..],
        [
            MessageType::Request,
            MessageType::Discover,
            MessageType::Request
        ]
    );
}

#[test]
fn a_link_that_comes_back_without_a_server_keeps_its_lease() {
    let mut sim = Sim::new();
    sim.server.lease_secs = 3600;
    sim.run_until(secs(10.0));
    sim.server.silent = true;
    sim.dev.returns = 1;
    sim.run_until(secs(50.0));
    assert_eq!(sim.stack.dhcp_phase(), Some(Phase::Rebooting));
    assert_eq!(
        sim.ip(),
        Some(OFFERED),
        "the address stays in use meanwhile"
    );
    sim.run_until(secs(100.0));
    let verifies = sim.types()[2..].to_vec();
    assert_eq!(
        verifies,
        vec![MessageType::Request; 4],
        "tried, with backoff"
    );
    assert_eq!(sim.stack.dhcp_phase(), Some(Phase::Bound));
    assert_eq!(sim.ip(), Some(OFFERED));
    // Then the lease runs its course as before: renewal at T1.
    sim.server.silent = false;
    sim.run_until(secs(1801.0));
    assert_eq!(
        sim.server.seen.last().unwrap().3,
        PEER_IP,
        "unicast renewal"
    );
}

#[test]
fn replies_for_others_are_ignored_and_counted() {
    let mut sim = Sim::new();
    let mut r = Repr::new(
        Op::Reply,
        MessageType::Offer,
        1234,
        MacAddress([2, 1, 1, 1, 1, 1]),
    );
    r.yiaddr = OFFERED;
    r.server_id = Some(PEER_IP);
    let mut payload = vec![0u8; r.buffer_len()];
    r.emit(&mut payload);
    sim.server.link.inject(
        sim.now,
        &udp_frame(
            MacAddress::BROADCAST,
            SERVER_MAC,
            (PEER_IP, 67),
            (Ipv4Addr::BROADCAST, 68),
            &payload,
        ),
    );
    sim.server.silent = true;
    sim.run_until(secs(0.5));
    assert_eq!(sim.ip(), None);
    assert_eq!(
        sim.stack
            .counters()
            .drops(mipfast::iface::DropReason::DhcpIgnored),
        1
    );
    assert_eq!(sim.stack.dhcp_phase(), Some(Phase::Selecting));
}

#[test]
fn lease_obtained_over_a_lossy_reordering_link() {
    // Faults in both directions from the link's own injector, over many seeds.
    let mut lost = 0;
    let mut corrupted = 0;
    for seed in 0..50 {
        let faults = mipfast::phy::fault::FaultConfig {
            loss: 0.3,
            duplicate: 0.1,
            corrupt: 0.05,
            reorder: 0.2,
            reorder_delay: Duration::from_millis(30),
            delay: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
        };
        let (dev, server_end) = pair(faults, seed);
        let stack = Stack::new(StackConfig::dhcp(seed), Instant::ZERO);
        let mut server = Server::new(server_end);
        server.lease_secs = 3600;
        let mut sim = Sim {
            now: Instant::ZERO,
            stack,
            dev: Plug {
                end: dev,
                returns: 0,
            },
            server,
        };
        // Backoff reaches 64 s; 30 % loss each way may need a few rounds.
        sim.run_until(secs(600.0));
        assert_eq!(
            sim.ip(),
            Some(OFFERED),
            "seed {seed}: {:?} {:?}",
            sim.server.seen,
            sim.stack.counters()
        );
        for end in [&sim.dev.end, &sim.server.link] {
            lost += end.fault_stats().lost;
            corrupted += end.fault_stats().corrupted;
        }
    }
    // The link really was hostile.
    assert!(
        lost > 20 && corrupted > 0,
        "lost {lost}, corrupted {corrupted}"
    );
}
