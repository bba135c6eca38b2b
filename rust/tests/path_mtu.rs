//! Path MTU discovery (RFC 1191) through a hop with a smaller MTU that
//! drops what does not fit and says so with ICMP, and forged ICMP that
//! must not shrink a connection (RFC 5927).

mod tcp_net;

use mipfast::iface::{DropReason, InterfaceConfig, Ipv4Cidr, Ipv4Config, Ipv6Config};
use mipfast::phy::{Link, LinkState};
use mipfast::socket::tcp::{Handle, State, TcpConfig};
use mipfast::stack::{Addressing, Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::{ethernet, icmp, icmpv6, ipv4, ipv6, Ipv4Addr, MacAddress};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};
use tcp_net::{link_local, pattern, Fnv, A_IP, B_IP};

const A_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
const B_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);
/// The router that reports the small hop.
const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
const HOP_MTU: usize = 1000;
const LATENCY: Duration = Duration::from_millis(1);

fn stack(ip: Ipv4Addr, mac: MacAddress, seed: u64, ipv6: bool) -> Stack {
    let cidr = Ipv4Cidr::new(ip, 24).unwrap();
    Stack::new(
        StackConfig {
            interface: InterfaceConfig {
                mac,
                ..Default::default()
            },
            addressing: Addressing::Static(Ipv4Config::new(cidr, None, vec![]).unwrap()),
            tcp: TcpConfig::default(),
            udp: Default::default(),
            resolver: Default::default(),
            dns_servers: vec![],
            mdns: None,
            ipv6: ipv6.then(|| Ipv6Config {
                dad_transmits: 0,
                ..Default::default()
            }),
            seed,
        },
        Instant::ZERO,
    )
}

/// A and B with a hop between them that carries at most `mtu` bytes of
/// IPv4 from A to B, and drops the rest, telling A when DF was set.
struct Path {
    a: Stack,
    b: Stack,
    now: Instant,
    to_a: VecDeque<(Instant, Vec<u8>)>,
    to_b: VecDeque<(Instant, Vec<u8>)>,
    mtu: usize,
    /// Packets A sent, with DF set, and how many the hop dropped.
    sent: (u64, u64),
    dropped: u64,
    /// The hop drops what does not fit without a word, as a link does.
    silent: bool,
    /// A and B talk over IPv6 (link-local addresses), not IPv4.
    ipv6: bool,
}

impl Path {
    fn new(mtu: usize) -> Self {
        Path::build(mtu, false)
    }

    /// The same path carrying IPv6.
    fn v6(mtu: usize) -> Self {
        Path::build(mtu, true)
    }

    fn build(mtu: usize, ipv6: bool) -> Self {
        let mut path = Path {
            a: stack(A_IP, A_MAC, 1, ipv6),
            b: stack(B_IP, B_MAC, 2, ipv6),
            now: Instant::ZERO,
            to_a: VecDeque::new(),
            to_b: VecDeque::new(),
            mtu,
            sent: (0, 0),
            dropped: 0,
            silent: false,
            ipv6,
        };
        path.b.tcp_mut().listen(80, 16).unwrap();
        path
    }

    /// "Fragmentation needed" from the router, quoting `packet`.
    fn frag_needed(&self, packet: &[u8], mtu: u16) -> Vec<u8> {
        let quote = &packet[..packet.len().min(28)];
        let msg = icmp::ErrorMessage {
            msg_type: icmp::TYPE_DEST_UNREACHABLE,
            code: icmp::CODE_FRAGMENTATION_NEEDED,
            next_hop_mtu: mtu,
            original: quote,
        };
        let mut icmp_bytes = vec![0u8; msg.len()];
        msg.emit(&mut icmp_bytes);
        ip_frame(ROUTER_IP, A_IP, ipv4::PROTO_ICMP, &icmp_bytes)
    }

    /// A Packet Too Big from the router (RFC 4443 §3.2), quoting `packet`.
    fn packet_too_big(&self, packet: &[u8], mtu: u32) -> Vec<u8> {
        let msg = icmpv6::ErrorMessage {
            msg_type: icmpv6::TYPE_PACKET_TOO_BIG,
            code: 0,
            parameter: mtu,
            original: packet,
        };
        let (src, dst) = (ROUTER_IP6, link_local(A_MAC));
        let mut icmp_bytes = vec![0u8; msg.len()];
        msg.emit(&mut icmp_bytes, src, dst);
        ip6_frame(src, dst, ipv6::NEXT_ICMPV6, &icmp_bytes)
    }

    fn hop(&mut self, frame: Vec<u8>) {
        let eth = ethernet::Frame::new_checked(&frame).unwrap();
        if eth.ethertype() == ethernet::ETHERTYPE_IPV6 {
            let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
            let len = ip.as_bytes().len();
            if ip.next_header() == ipv6::NEXT_TCP {
                self.sent.0 += 1;
            }
            if len > self.mtu {
                self.dropped += 1;
                if !self.silent {
                    let icmp = self.packet_too_big(ip.as_bytes(), self.mtu as u32);
                    self.to_a.push_back((self.now + LATENCY, icmp));
                }
                return;
            }
        }
        if eth.ethertype() == ethernet::ETHERTYPE_IPV4 {
            let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
            self.sent.0 += 1;
            self.sent.1 += ip.dont_fragment() as u64;
            if ip.total_len() > self.mtu {
                self.dropped += 1;
                if ip.dont_fragment() && !self.silent {
                    let icmp = self.frag_needed(ip.as_bytes(), self.mtu as u16);
                    self.to_a.push_back((self.now + LATENCY, icmp));
                }
                return;
            }
        }
        self.to_b.push_back((self.now + LATENCY, frame));
    }

    /// One round at the current time, then time moves to the next event.
    fn step(&mut self) -> bool {
        let now = self.now;
        while self.to_a.front().is_some_and(|(t, _)| *t <= now) {
            let (_, f) = self.to_a.pop_front().unwrap();
            self.a.process_frame(now, &f);
        }
        while self.to_b.front().is_some_and(|(t, _)| *t <= now) {
            let (_, f) = self.to_b.pop_front().unwrap();
            self.b.process_frame(now, &f);
        }
        self.a.poll_timers(now);
        self.b.poll_timers(now);
        let mut out = vec![];
        self.a.drain_tx(|f| out.push(f.to_vec()));
        for f in out {
            self.hop(f);
        }
        let mut back = vec![];
        self.b.drain_tx(|f| back.push(f.to_vec()));
        for f in back {
            self.to_a.push_back((now + LATENCY, f));
        }
        let next = [
            self.to_a.front().map(|x| x.0),
            self.to_b.front().map(|x| x.0),
            self.a.poll_at(),
            self.b.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        match next {
            Some(t) => {
                self.now = t.max(now);
                true
            }
            None => false,
        }
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Path) -> bool) -> bool {
        let end = self.now + limit;
        while self.now <= end {
            if done(self) {
                return true;
            }
            if !self.step() {
                return done(self);
            }
        }
        false
    }

    fn connect(&mut self) -> (Handle, Handle) {
        let now = self.now;
        let (a, b) = self.ends();
        let ha = self.a.tcp_mut().connect(now, a, (b, 80), None).unwrap();
        let mut hb = None;
        let ok = self.run_until(Duration::from_secs(10), |p| {
            hb = hb.or_else(|| p.b.tcp_mut().accept(80));
            hb.is_some()
                && p.a
                    .tcp()
                    .get(ha)
                    .is_some_and(|c| c.state() == State::Established)
        });
        assert!(ok, "handshake");
        (ha, hb.unwrap())
    }

    /// What B's connection `hb` reads within `limit`, up to `len` bytes.
    fn read_within(&mut self, hb: Handle, len: usize, limit: Duration) -> usize {
        let (mut got, mut buf) = (0, vec![0u8; 65536]);
        self.run_until(limit, |p| {
            while let Ok(Some(n)) = p.b.tcp_mut().get_mut(hb).unwrap().recv(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n;
            }
            got >= len
        });
        got
    }

    /// A's and B's addresses.
    fn ends(&self) -> (IpAddr, IpAddr) {
        match self.ipv6 {
            true => (link_local(A_MAC).into(), link_local(B_MAC).into()),
            false => (A_IP.into(), B_IP.into()),
        }
    }

    /// Sends `len` bytes from A to B; true if all arrived intact.
    fn upload(&mut self, ha: Handle, hb: Handle, len: usize, limit: Duration) -> bool {
        let mut upload = Upload::new(ha, hb, len, 3);
        self.run_until(limit, |p| upload.step(p)) && upload.intact()
    }
}

/// Bytes on their way from A's connection to B's.
struct Upload {
    ends: (Handle, Handle),
    data: Vec<u8>,
    sent: usize,
    got: usize,
    hash: Fnv,
    buf: Vec<u8>,
}

impl Upload {
    fn new(ha: Handle, hb: Handle, len: usize, salt: u8) -> Self {
        Upload {
            ends: (ha, hb),
            data: pattern(len, salt),
            sent: 0,
            got: 0,
            hash: Fnv::default(),
            buf: vec![0u8; 65536],
        }
    }

    /// Queues what A takes and reads what B has; true once all arrived.
    fn step(&mut self, p: &mut Path) -> bool {
        let (ha, hb) = self.ends;
        if let Some(c) = p.a.tcp_mut().get_mut(ha) {
            self.sent += c.send(&self.data[self.sent..]).unwrap_or(0);
        }
        while let Some(Ok(Some(n))) = p.b.tcp_mut().get_mut(hb).map(|c| c.recv(&mut self.buf)) {
            if n == 0 {
                break;
            }
            self.hash.update(&self.buf[..n]);
            self.got += n;
        }
        self.got == self.data.len()
    }

    fn intact(&self) -> bool {
        self.got == self.data.len() && self.hash == Fnv::of(&self.data)
    }
}

fn ip_frame(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + payload.len()];
    ethernet::Repr {
        dst: A_MAC,
        src: B_MAC,
        ethertype: ethernet::ETHERTYPE_IPV4,
    }
    .emit(&mut frame);
    let ip = ipv4::Repr::new(src, dst, protocol, payload.len(), 9);
    ip.emit(&mut frame[ethernet::HEADER_LEN..]);
    frame[ethernet::HEADER_LEN + ipv4::HEADER_LEN..].copy_from_slice(payload);
    frame
}

/// The router's address over IPv6 (on the link, as routers' are).
const ROUTER_IP6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xfe);

fn ip6_frame(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    tcp_net::ipv6_frame((A_MAC, B_MAC), (src, dst), (next_header, 64), payload)
}

#[test]
fn a_transfer_through_a_smaller_hop_finds_its_path_mtu() {
    let mut p = Path::new(HOP_MTU);
    let (ha, hb) = p.connect();
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1448);
    assert!(
        p.upload(ha, hb, 1 << 20, Duration::from_secs(30)),
        "1 MB through the hop"
    );
    let c = p.a.tcp().get(ha).unwrap();
    // 1000 − 20 (IPv4) − 20 (TCP) − 12 (timestamps).
    assert_eq!((c.mss(), c.path_mtu()), (948, Some(HOP_MTU)));
    assert_eq!(p.sent.0, p.sent.1, "every TCP packet went with DF set");
    let dropped = p.dropped;
    assert!(
        (1..=64).contains(&dropped),
        "the hop dropped {dropped} packets"
    );
    assert_eq!(p.a.tcp().path_mtu(p.now, B_IP.into()), Some(HOP_MTU));
    // A later connection starts at the learnt size: nothing more is dropped.
    let (ha2, hb2) = p.connect();
    assert_eq!(p.a.tcp().get(ha2).unwrap().mss(), 948);
    assert!(p.upload(ha2, hb2, 200_000, Duration::from_secs(10)));
    assert_eq!(p.dropped, dropped);
    // Ten minutes on the entry has aged: a new connection tries the full
    // size again, and learns again.
    p.now += Duration::from_secs(601); // idle connections: nothing to run
    assert_eq!(p.a.tcp().path_mtu(p.now, B_IP.into()), None);
    let (ha3, hb3) = p.connect();
    assert_eq!(p.a.tcp().get(ha3).unwrap().mss(), 1448);
    assert!(p.upload(ha3, hb3, 200_000, Duration::from_secs(10)));
    assert_eq!(p.a.tcp().get(ha3).unwrap().mss(), 948);
    assert!(p.dropped > dropped);
}

/// RFC 5927 §4.1: an ICMP message quoting a sequence number outside the
/// data in flight (a blind attacker's guess) is dropped and counted; one
/// reporting a tiny MTU lowers the MSS only to the floor, with DF off.
#[test]
fn forged_or_tiny_mtu_reports_do_not_shrink_a_connection_blindly() {
    let mut p = Path::new(1500);
    let (ha, hb) = p.connect();
    let a_port = p.a.tcp().get(ha).unwrap().local().1;
    let una = p.a.tcp().get(ha).unwrap().send_unacked().0;
    // A quote of a segment we "sent", built by hand.
    let quoted = |seq: u32| {
        let mut q = vec![0u8; 28];
        q[..20].copy_from_slice(&{
            let mut h = [0u8; 20];
            ipv4::Repr::new(A_IP, B_IP, ipv4::PROTO_TCP, 1480, 1).emit(&mut h);
            h
        });
        q[20..22].copy_from_slice(&a_port.to_be_bytes());
        q[22..24].copy_from_slice(&80u16.to_be_bytes());
        q[24..28].copy_from_slice(&seq.to_be_bytes());
        q
    };
    // Nothing in flight: any quote is out of range.
    let icmp = p.frag_needed(&quoted(una), 600);
    p.a.process_frame(p.now, &icmp);
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1448);
    assert_eq!(p.a.counters().drops(DropReason::IcmpPathMtuIgnored), 1);
    // Data in flight, a quote beyond it: ignored.
    let c = p.a.tcp_mut().get_mut(ha).unwrap();
    c.send(&pattern(20_000, 1)).unwrap();
    p.a.dispatch(p.now);
    p.a.drain_tx(|_| {}); // lost on the way: stays in flight
    let icmp = p.frag_needed(&quoted(una.wrapping_add(1_000_000)), 600);
    p.a.process_frame(p.now, &icmp);
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1448);
    assert_eq!(p.a.counters().drops(DropReason::IcmpPathMtuIgnored), 2);
    // In range, but reporting 68 bytes: the floor (552), DF off from now on.
    let icmp = p.frag_needed(&quoted(una.wrapping_add(1)), 68);
    p.a.process_frame(p.now, &icmp);
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 552 - 52);
    // What was in flight is resent at once, at the new size and without DF.
    p.sent = (0, 0);
    let got = p.read_within(hb, 20_000, Duration::from_millis(100));
    assert_eq!(got, 20_000, "resent before any timeout");
    assert!(
        p.sent.0 > 0 && p.sent.1 == 0,
        "no DF below the floor: {:?}",
        p.sent
    );
}

/// The interface's own MTU lowered under a transfer (`ip link set … mtu`):
/// nothing on the wire says so, and full segments no longer leave. The
/// stack follows the MTU its device reports: segments are cut smaller and
/// what was in flight goes again; new connections announce what fits; and
/// the MTU raised again serves new connections.
#[test]
fn a_transfer_follows_its_interface_mtu_down_and_new_connections_follow_it_up() {
    let mut p = Path::new(1500);
    p.silent = true;
    let link = |mtu| Link {
        state: LinkState::Up,
        returns: 0,
        mtu,
    };
    p.a.take_link(p.now, link(1500));
    let (ha, hb) = p.connect();
    assert!(p.upload(ha, hb, 200_000, Duration::from_secs(10)));
    p.mtu = HOP_MTU;
    // One transfer across the change: stalled first, whole in the end.
    let mut upload = Upload::new(ha, hb, 1 << 20, 7);
    assert!(
        !p.run_until(Duration::from_secs(10), |p| upload.step(p)),
        "a link that drops what no longer fits stalls the connection"
    );
    p.a.take_link(p.now, link(HOP_MTU));
    assert_eq!(p.a.interface().mtu(), HOP_MTU);
    assert!(p.run_until(Duration::from_secs(10), |p| upload.step(p)));
    assert!(upload.intact());
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 948);
    let (_, hb2) = p.connect();
    assert_eq!(
        p.b.tcp().get(hb2).unwrap().mss(),
        948,
        "A announced an MSS of 960"
    );
    p.mtu = 1500;
    p.a.take_link(p.now, link(9000));
    assert_eq!(
        p.a.interface().mtu(),
        1500,
        "never above the configured MTU"
    );
    let (ha3, hb3) = p.connect();
    assert_eq!(p.b.tcp().get(hb3).unwrap().mss(), 1448);
    assert!(p.upload(ha3, hb3, 200_000, Duration::from_secs(10)));
}

/// A link that reports an MTU too small for IPv4 (below RFC 791's 68
/// octets) is not followed: fragmenting a datagram for it left no room
/// for a fragment's text and panicked (found by `stack_frames_checksummed`
/// once the fuzzer could change the link). The smallest MTU that carries
/// IPv4 is followed, and a large datagram leaves in 48-byte fragments.
#[test]
fn an_mtu_too_small_for_ipv4_is_not_followed_and_the_smallest_one_is() {
    let mut p = Path::new(1500);
    let link = |mtu| Link {
        state: LinkState::Up,
        returns: 0,
        mtu,
    };
    p.connect(); // B's MAC known: datagrams leave at once
    let client = p.a.udp_bind(Ipv4Addr::UNSPECIFIED, 4000).unwrap();
    for mtu in [1, 20, 27, 67] {
        p.a.take_link(p.now, link(mtu));
        assert_eq!(p.a.interface().mtu(), 1500, "MTU {mtu} followed");
        p.a.udp_send(p.now, client, (B_IP, 9), &[7; 3000]).unwrap();
        p.a.drain_tx(|_| {});
    }
    p.a.take_link(p.now, link(ipv4::MIN_MTU));
    assert_eq!(p.a.interface().mtu(), ipv4::MIN_MTU);
    p.a.udp_send(p.now, client, (B_IP, 9), &[7; 3000]).unwrap();
    let mut fragments = Vec::new();
    p.a.drain_tx(|frame| fragments.push(frame.len()));
    assert_eq!(fragments.len(), 3000_usize.div_ceil(48));
    assert!(fragments
        .iter()
        .all(|&len| len <= ethernet::HEADER_LEN + ipv4::MIN_MTU));
}

/// RFC 8201 over a hop of IPv6's minimum MTU: Packet Too Big lowers the
/// connection's MSS (1280 − 40 − 20 − 12) and resends what was cut too
/// big; the destination's entry serves the next connection.
#[test]
fn over_ipv6_packet_too_big_finds_the_path_mtu() {
    let mut p = Path::v6(ipv6::MIN_MTU);
    let (ha, hb) = p.connect();
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1428);
    assert!(
        p.upload(ha, hb, 1 << 20, Duration::from_secs(30)),
        "1 MB through the hop"
    );
    let c = p.a.tcp().get(ha).unwrap();
    assert_eq!((c.mss(), c.path_mtu()), (1208, Some(ipv6::MIN_MTU)));
    let dropped = p.dropped;
    assert!(
        (1..=64).contains(&dropped),
        "the hop dropped {dropped} packets"
    );
    let b: IpAddr = link_local(B_MAC).into();
    assert_eq!(p.a.tcp().path_mtu(p.now, b), Some(ipv6::MIN_MTU));
    let (ha2, hb2) = p.connect();
    assert_eq!(p.a.tcp().get(ha2).unwrap().mss(), 1208);
    assert!(p.upload(ha2, hb2, 200_000, Duration::from_secs(10)));
    assert_eq!(p.dropped, dropped);
}

/// A Packet Too Big quoting data not in flight is ignored and counted; one
/// reporting less than IPv6's minimum MTU lowers the MSS only to what 1280
/// bytes allow (RFC 8201 §4).
#[test]
fn over_ipv6_forged_or_tiny_packet_too_big_reports_are_bounded() {
    let mut p = Path::v6(1500);
    let (ha, hb) = p.connect();
    let a_port = p.a.tcp().get(ha).unwrap().local().1;
    let una = p.a.tcp().get(ha).unwrap().send_unacked().0;
    let (a, b) = (link_local(A_MAC), link_local(B_MAC));
    let quoted = |seq: u32| {
        let mut q = vec![0u8; ipv6::HEADER_LEN + 20];
        ipv6::Repr {
            src: a,
            dst: b,
            next_header: ipv6::NEXT_TCP,
            hop_limit: 64,
            payload_len: 1460,
        }
        .emit(&mut q);
        q[40..42].copy_from_slice(&a_port.to_be_bytes());
        q[42..44].copy_from_slice(&80u16.to_be_bytes());
        q[44..48].copy_from_slice(&seq.to_be_bytes());
        q
    };
    let c = p.a.tcp_mut().get_mut(ha).unwrap();
    c.send(&pattern(20_000, 1)).unwrap();
    p.a.dispatch(p.now);
    p.a.drain_tx(|_| {}); // lost on the way: stays in flight
    let icmp = p.packet_too_big(&quoted(una.wrapping_add(1_000_000)), 1300);
    p.a.process_frame(p.now, &icmp);
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1428);
    assert_eq!(p.a.counters().drops(DropReason::IcmpPathMtuIgnored), 1);
    // Quoting another address of the peer's, or a datagram not from us: not ours.
    let mut not_ours = quoted(una.wrapping_add(1));
    not_ours[8..24].copy_from_slice(&b.octets());
    p.a.process_frame(p.now, &p.packet_too_big(&not_ours, 1300));
    assert_eq!(p.a.counters().drops(DropReason::Icmpv6Unhandled), 1);
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1428);
    let icmp = p.packet_too_big(&quoted(una.wrapping_add(1)), 68);
    p.a.process_frame(p.now, &icmp);
    assert_eq!(p.a.tcp().get(ha).unwrap().mss(), 1208);
    let got = p.read_within(hb, 20_000, Duration::from_millis(100));
    assert_eq!(got, 20_000, "resent before any timeout");
}

/// A destination unreachable (RFC 4443 §3.1) about a connection's SYN
/// fails the connect, as ICMP's does over IPv4.
#[test]
fn over_ipv6_destination_unreachable_fails_a_connect() {
    use mipfast::socket::tcp::Error;
    let mut p = Path::v6(1500);
    p.connect(); // B is a known neighbor
    let (a, b) = (link_local(A_MAC), link_local(B_MAC));
    let ha = p.a.tcp_mut().connect(p.now, a, (b, 81), None).unwrap();
    p.a.dispatch(p.now);
    let mut syn = None;
    p.a.drain_tx(|f| syn = Some(f[ethernet::HEADER_LEN..].to_vec()));
    let syn = syn.expect("a SYN left");
    let msg = icmpv6::ErrorMessage {
        msg_type: icmpv6::TYPE_DEST_UNREACHABLE,
        code: 1, // administratively prohibited
        parameter: 0,
        original: &syn,
    };
    let mut bytes = vec![0u8; msg.len()];
    msg.emit(&mut bytes, ROUTER_IP6, a);
    p.a.process_frame(p.now, &ip6_frame(ROUTER_IP6, a, ipv6::NEXT_ICMPV6, &bytes));
    let c = p.a.tcp().get(ha).unwrap();
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::Refused))
    );
}
