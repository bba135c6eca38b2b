//! IPv6 as a host over the in-memory link, in simulated time: duplicate
//! address detection, neighbor and router discovery, SLAAC, MLD, echo and
//! the errors owed for what we do not serve.

mod common;
use common::*;
use mipfast::iface::ipv6::AddressState;
use mipfast::iface::{DropReason, Ipv6Config, DEFAULT_MAC};
use mipfast::stack::{Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::ipv6::{self, Ipv6Addr};
use mipfast::wire::{ethernet, icmpv6, mld, ndp, MacAddress};

const LINK_LOCAL: &str = "fe80::1ff:fe02:377";
const PEER: &str = "fe80::aa";
const ROUTER_MAC: MacAddress = MacAddress([0x02, 0xbb, 0, 0, 0, 1]);

/// `len` bytes that show where each came from.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn v6_stack(now: Instant) -> Stack {
    let config = StackConfig {
        ipv6: Some(Ipv6Config::default()),
        ..StackConfig::dhcp(1)
    };
    Stack::new(config, now)
}

/// A frame carrying an IPv6 packet of `next` with `payload`.
fn packet(
    dst_mac: MacAddress,
    (src, dst): (Ipv6Addr, Ipv6Addr),
    next: u8,
    hop: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; ipv6::HEADER_LEN + payload.len()];
    ipv6::Repr {
        src,
        dst,
        next_header: next,
        hop_limit: hop,
        payload_len: payload.len(),
    }
    .emit(&mut p);
    p[ipv6::HEADER_LEN..].copy_from_slice(payload);
    frame(dst_mac, PEER_MAC, ethernet::ETHERTYPE_IPV6, &p)
}

/// An ICMPv6 message (its checksum filled) in a frame from the peer.
fn icmp(
    dst_mac: MacAddress,
    (src, dst): (Ipv6Addr, Ipv6Addr),
    hop: u8,
    mut message: Vec<u8>,
) -> Vec<u8> {
    icmpv6::fill_checksum(&mut message, src, dst);
    packet(dst_mac, (src, dst), ipv6::NEXT_ICMPV6, hop, &message)
}

/// What we sent: the frame's destination MAC, the packet, and its upper layer.
struct Sent {
    mac: MacAddress,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    /// The fixed header's next header (0 when a hop-by-hop header follows).
    next_header: u8,
    protocol: u8,
    upper: Vec<u8>,
}

impl Sent {
    /// The packet again, as it left (for an error that quotes it; no
    /// extension headers, which ours carry only for MLD).
    fn packet(&self) -> Vec<u8> {
        let mut p = vec![0u8; ipv6::HEADER_LEN];
        ipv6::Repr {
            src: self.src,
            dst: self.dst,
            next_header: self.protocol,
            hop_limit: self.hop_limit,
            payload_len: self.upper.len(),
        }
        .emit(&mut p);
        p.extend_from_slice(&self.upper);
        p
    }
}

fn sent(f: &[u8]) -> Option<Sent> {
    let eth = ethernet::Frame::new_checked(f).unwrap();
    if eth.ethertype() != ethernet::ETHERTYPE_IPV6 {
        return None;
    }
    assert_eq!(eth.src(), DEFAULT_MAC);
    let p = ipv6::Packet::new_checked(eth.payload()).unwrap();
    let upper = match ipv6::upper_layer(&p) {
        // A fragment: its upper layer is the fragment header and what follows.
        Err(ipv6::HeaderProblem::Fragment { at }) => ipv6::UpperLayer {
            protocol: ipv6::NEXT_FRAGMENT,
            payload: &p.as_bytes()[at..],
            next_header_at: 6,
        },
        other => other.unwrap(),
    };
    if upper.protocol == ipv6::NEXT_ICMPV6 {
        // Every message we send checks.
        icmpv6::Packet::new_checked(upper.payload, p.src(), p.dst()).unwrap();
    }
    Some(Sent {
        mac: eth.dst(),
        src: p.src(),
        dst: p.dst(),
        hop_limit: p.hop_limit(),
        next_header: p.next_header(),
        protocol: upper.protocol,
        upper: upper.payload.to_vec(),
    })
}

/// Runs the stack's timers from `from` to `to` in 10 ms steps, collecting the IPv6 it sends.
fn run(s: &mut Stack, from: Instant, to: Instant) -> Vec<(Instant, Sent)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        s.poll_timers(now);
        out.extend(drain(s).iter().filter_map(|f| sent(f)).map(|x| (now, x)));
        now += Duration::from_millis(10);
    }
    out
}

fn state_of(s: &Stack, address: Ipv6Addr) -> Option<AddressState> {
    let host = s.interface().ipv6().unwrap();
    host.addresses()
        .iter()
        .find(|a| a.address == address)
        .map(|a| a.state)
}

fn drops(s: &Stack, reason: DropReason) -> u64 {
    s.interface().counters().drops(reason)
}

/// A neighbor's solicited advertisement of `target` at `mac`, sent to us.
fn advertise(s: &mut Stack, now: Instant, target: Ipv6Addr, mac: MacAddress) {
    let ours = ip(LINK_LOCAL);
    let na = ndp::Advert {
        solicited: true,
        override_entry: true,
        target,
        target_mac: mac,
    };
    let mut message = vec![0u8; ndp::Advert::LEN];
    na.emit(&mut message, target, ours);
    s.process_frame(now, &icmp(DEFAULT_MAC, (target, ours), 255, message));
}

/// A stack whose link-local address is ours, and the time it is.
fn ready_stack() -> (Stack, Instant) {
    let mut s = v6_stack(Instant::ZERO);
    let end = Instant::from_millis(2500);
    run(&mut s, Instant::ZERO, end);
    assert_eq!(state_of(&s, ip(LINK_LOCAL)), Some(AddressState::Preferred));
    (s, end)
}

#[test]
fn claims_its_link_local_address_then_asks_for_routers() {
    let mut s = v6_stack(Instant::ZERO);
    assert!(matches!(
        state_of(&s, ip(LINK_LOCAL)),
        Some(AddressState::Tentative { .. })
    ));
    let out = run(&mut s, Instant::ZERO, Instant::from_secs(14));
    let group = ipv6::solicited_node(ip(LINK_LOCAL));
    // RFC 4862 §5.4.2: join the solicited-node group, then one probe from ::.
    let (t_report, report) = &out[0];
    assert_eq!(
        (report.src, report.dst, report.hop_limit),
        (Ipv6Addr::UNSPECIFIED, ipv6::ALL_MLDV2_ROUTERS, 1)
    );
    assert_eq!(
        (report.upper[0], report.upper[8]),
        (mld::TYPE_V2_REPORT, mld::CHANGE_TO_EXCLUDE)
    );
    assert_eq!(&report.upper[12..28], &group.octets());
    assert_eq!(report.mac, ipv6::multicast_mac(ipv6::ALL_MLDV2_ROUTERS));
    assert_eq!(
        (report.next_header, report.protocol),
        (ipv6::NEXT_HOP_BY_HOP, ipv6::NEXT_ICMPV6),
        "behind a Router Alert hop-by-hop header"
    );
    let (t_probe, probe) = &out[1];
    assert_eq!(t_probe, t_report);
    assert!(
        *t_probe < Instant::from_secs(1),
        "the first probe waits at most a second"
    );
    assert_eq!(
        (probe.src, probe.dst, probe.hop_limit, probe.mac),
        (
            Ipv6Addr::UNSPECIFIED,
            group,
            255,
            ipv6::multicast_mac(group)
        )
    );
    assert_eq!(
        probe.upper.len(),
        24,
        "a probe carries no link-layer address"
    );
    assert_eq!(
        (probe.upper[0], &probe.upper[8..24]),
        (ndp::TYPE_NEIGHBOR_SOLICIT, &ip(LINK_LOCAL).octets()[..])
    );
    // A second later the address is ours: a report from it, then router solicitations.
    let (t_own, own) = &out[2];
    assert_eq!(*t_own, *t_probe + Duration::from_secs(1));
    assert_eq!(
        (own.src, own.upper[0]),
        (ip(LINK_LOCAL), mld::TYPE_V2_REPORT)
    );
    let solicits: Vec<_> = out[3..]
        .iter()
        .filter(|(_, x)| x.upper[0] == ndp::TYPE_ROUTER_SOLICIT)
        .collect();
    assert_eq!(solicits.len(), 3, "RFC 4861 §6.3.7: three solicitations");
    assert_eq!(out.len(), 6);
    let (t_first, first) = solicits[0];
    assert!(*t_first <= *t_own + Duration::from_secs(1));
    assert_eq!(
        (first.src, first.dst, first.hop_limit),
        (ip(LINK_LOCAL), ipv6::ALL_ROUTERS, 255)
    );
    assert_eq!(
        &first.upper[8..16],
        &[1, 1, 2, 0, 1, 2, 3, 0x77],
        "with our MAC"
    );
    assert_eq!(solicits[1].0, *t_first + Duration::from_secs(4));
    assert_eq!(solicits[2].0, *t_first + Duration::from_secs(8));
}

#[test]
fn answers_neighbor_solicitations_and_echo() {
    let (mut s, now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let group = ipv6::solicited_node(ours);
    let ns = ndp::Solicit {
        target: ours,
        source_mac: Some(PEER_MAC),
    };
    let mut message = vec![0u8; ns.len()];
    ns.emit(&mut message, ip(PEER), group);
    s.process_frame(
        now,
        &icmp(ipv6::multicast_mac(group), (ip(PEER), group), 255, message),
    );
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    let na = &out[0];
    assert_eq!(
        (na.mac, na.src, na.dst, na.hop_limit),
        (PEER_MAC, ours, ip(PEER), 255)
    );
    assert_eq!(
        (na.upper[0], na.upper[4]),
        (ndp::TYPE_NEIGHBOR_ADVERT, 0x60),
        "solicited, override"
    );
    assert_eq!(
        &na.upper[24..32],
        &[2, 1, 2, 0, 1, 2, 3, 0x77],
        "our MAC as the target's"
    );

    // Echo, then echo to all nodes (answered from our address).
    for dst in [ours, ipv6::ALL_NODES] {
        let mut request = vec![128, 0, 0, 0, 0x12, 0x34, 0, 7];
        request.extend_from_slice(b"ping data");
        let mac = if dst.is_multicast() {
            ipv6::multicast_mac(dst)
        } else {
            DEFAULT_MAC
        };
        s.process_frame(now, &icmp(mac, (ip(PEER), dst), 64, request));
        let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
        assert_eq!(out.len(), 1);
        let reply = &out[0];
        assert_eq!(
            (reply.mac, reply.src, reply.dst, reply.hop_limit),
            (PEER_MAC, ours, ip(PEER), 64)
        );
        assert_eq!(&reply.upper[..2], &[129, 0]);
        assert_eq!(&reply.upper[4..], b"\x12\x34\x00\x07ping data");
    }
    // A solicitation for another node's address is not answered.
    let ns = ndp::Solicit {
        target: ip("fe80::99"),
        source_mac: Some(PEER_MAC),
    };
    let mut message = vec![0u8; ns.len()];
    let other = ipv6::solicited_node(ip("fe80::99"));
    ns.emit(&mut message, ip(PEER), other);
    s.process_frame(
        now,
        &icmp(ipv6::multicast_mac(other), (ip(PEER), other), 255, message),
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(drops(&s, DropReason::Ipv6NotForUs), 1);
}

#[test]
fn resolves_a_neighbor_before_answering_it() {
    let (mut s, now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let stranger = ip("fe80::77");
    let request = vec![128, 0, 0, 0, 0, 1, 0, 1];
    s.process_frame(now, &icmp(DEFAULT_MAC, (stranger, ours), 64, request));
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1, "the reply waits while we ask");
    let ask = &out[0];
    let group = ipv6::solicited_node(stranger);
    assert_eq!(
        (ask.src, ask.dst, ask.mac),
        (ours, group, ipv6::multicast_mac(group))
    );
    assert_eq!(
        (ask.upper[0], &ask.upper[8..24]),
        (ndp::TYPE_NEIGHBOR_SOLICIT, &stranger.octets()[..])
    );
    assert_eq!(&ask.upper[24..26], &[1, 1], "with our MAC");
    // Its advertisement releases the reply.
    advertise(&mut s, now, stranger, PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].mac, out[0].dst, out[0].upper[0]),
        (PEER_MAC, stranger, 129)
    );
    // Nobody answers for another: three solicitations a second apart, then the reply is dropped.
    let silent = ip("fe80::78");
    s.process_frame(
        now,
        &icmp(
            DEFAULT_MAC,
            (silent, ours),
            64,
            vec![128, 0, 0, 0, 0, 1, 0, 2],
        ),
    );
    let mut out: Vec<_> = drain(&mut s)
        .iter()
        .filter_map(|f| sent(f))
        .map(|x| (now, x))
        .collect();
    out.extend(run(&mut s, now, now + Duration::from_secs(5)));
    let asks: Vec<_> = out
        .iter()
        .filter(|(_, x)| x.upper[0] == ndp::TYPE_NEIGHBOR_SOLICIT)
        .collect();
    assert_eq!(asks.len(), 3);
    assert_eq!(asks[2].0, now + Duration::from_secs(2));
    assert!(out.iter().all(|(_, x)| x.upper[0] != 129));
    assert_eq!(drops(&s, DropReason::NeighborUnreachable), 1);
}

#[test]
fn gives_up_an_address_another_node_probes_for_or_holds() {
    let ours = ip(LINK_LOCAL);
    let group = ipv6::solicited_node(ours);
    // Another node's probe for the same address while ours runs.
    let mut s = v6_stack(Instant::ZERO);
    let probe = ndp::Solicit {
        target: ours,
        source_mac: None,
    };
    let mut message = vec![0u8; probe.len()];
    probe.emit(&mut message, Ipv6Addr::UNSPECIFIED, group);
    let frame = icmp(
        ipv6::multicast_mac(group),
        (Ipv6Addr::UNSPECIFIED, group),
        255,
        message,
    );
    s.process_frame(Instant::ZERO, &frame);
    assert_eq!(state_of(&s, ours), Some(AddressState::Duplicate));
    assert_eq!(drops(&s, DropReason::Ipv6AddressConflict), 1);
    // Duplicate: never probed for, answered for, or reported again.
    let out = run(&mut s, Instant::ZERO, Instant::from_secs(5));
    assert!(
        out.iter()
            .all(|(_, x)| x.upper[0] != ndp::TYPE_NEIGHBOR_SOLICIT),
        "no probe"
    );
    assert!(out
        .iter()
        .all(|(_, x)| x.upper[0] != ndp::TYPE_NEIGHBOR_ADVERT));

    // Our own probe reflected back by the link is not another node's.
    let mut s = v6_stack(Instant::ZERO);
    let mut reflected = frame.clone();
    reflected[6..12].copy_from_slice(&DEFAULT_MAC.0);
    s.process_frame(Instant::ZERO, &reflected);
    assert!(matches!(
        state_of(&s, ours),
        Some(AddressState::Tentative { .. })
    ));
    assert_eq!(drops(&s, DropReason::Ipv6LoopedBack), 1);

    // An advertisement of the address while we probe.
    let na = ndp::Advert {
        solicited: false,
        override_entry: true,
        target: ours,
        target_mac: PEER_MAC,
    };
    let mut message = vec![0u8; ndp::Advert::LEN];
    na.emit(&mut message, ip(PEER), ipv6::ALL_NODES);
    s.process_frame(
        Instant::ZERO,
        &icmp(
            ipv6::multicast_mac(ipv6::ALL_NODES),
            (ip(PEER), ipv6::ALL_NODES),
            255,
            message,
        ),
    );
    assert_eq!(state_of(&s, ours), Some(AddressState::Duplicate));
}

/// A router advertisement from fe80::1 with `prefix` (valid, preferred).
/// The router's message `m` (its checksum filled) to all nodes.
fn from_router(mut m: Vec<u8>) -> Vec<u8> {
    let (src, dst) = (ip("fe80::1"), ipv6::ALL_NODES);
    icmpv6::fill_checksum(&mut m, src, dst);
    let mut f = packet(
        ipv6::multicast_mac(dst),
        (src, dst),
        ipv6::NEXT_ICMPV6,
        255,
        &m,
    );
    f[6..12].copy_from_slice(&ROUTER_MAC.0);
    f
}

fn router_advert(prefix: &str, lifetimes: (u32, u32), router_lifetime: u16) -> Vec<u8> {
    let mut m = vec![0u8; 16 + 8 + 8 + 32];
    m[..4].copy_from_slice(&[134, 0, 0, 0]);
    m[4] = 32; // cur hop limit
    m[6..8].copy_from_slice(&router_lifetime.to_be_bytes());
    m[16..24].copy_from_slice(&[1, 1, 0x02, 0xbb, 0, 0, 0, 1]);
    m[24..32].copy_from_slice(&[5, 1, 0, 0, 0, 0, 0x05, 0x78]); // MTU 1400
    m[32..36].copy_from_slice(&[3, 4, 64, 0xc0]);
    m[36..40].copy_from_slice(&lifetimes.0.to_be_bytes());
    m[40..44].copy_from_slice(&lifetimes.1.to_be_bytes());
    m[48..64].copy_from_slice(&ip(prefix).octets());
    from_router(m)
}

#[test]
fn takes_an_address_and_a_route_from_a_router() {
    let (mut s, mut now) = ready_stack();
    s.process_frame(now, &router_advert("fd77:0:0:1::", (20, 10), 1800));
    let global = ip("fd77:0:0:1:0:1ff:fe02:377");
    assert!(matches!(
        state_of(&s, global),
        Some(AddressState::Tentative { .. })
    ));
    let host = s.interface().ipv6().unwrap();
    assert_eq!((host.hop_limit(), host.mtu(1500)), (32, 1400));
    assert_eq!(
        host.routers(now).map(|r| r.address).collect::<Vec<_>>(),
        vec![ip("fe80::1")]
    );
    let out = run(&mut s, now, now + Duration::from_secs(3));
    assert!(out.iter().any(
        |(_, x)| x.upper[0] == ndp::TYPE_NEIGHBOR_SOLICIT && x.upper[8..24] == global.octets()
    ));
    assert!(
        out.iter()
            .all(|(_, x)| x.upper[0] != ndp::TYPE_ROUTER_SOLICIT),
        "a router answered"
    );
    now += Duration::from_secs(3);
    assert_eq!(state_of(&s, global), Some(AddressState::Preferred));

    // An echo from beyond the router goes back through it, from the new address.
    let far = ip("2001:db8::5");
    s.process_frame(
        now,
        &icmp(
            DEFAULT_MAC,
            (far, global),
            60,
            vec![128, 0, 0, 0, 0, 9, 0, 9],
        ),
    );
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].mac, out[0].src, out[0].dst, out[0].hop_limit),
        (ROUTER_MAC, global, far, 32)
    );

    // The preferred lifetime ends at 10 s, the valid one at 20 s.
    let start = now - Duration::from_secs(3);
    run(&mut s, now, start + Duration::from_secs(10));
    assert_eq!(state_of(&s, global), Some(AddressState::Deprecated));
    run(
        &mut s,
        start + Duration::from_secs(10),
        start + Duration::from_secs(20),
    );
    assert_eq!(state_of(&s, global), None);
}

#[test]
fn refuses_what_it_does_not_serve() {
    let (mut s, now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    // A datagram to a closed UDP port: port unreachable, quoting it whole.
    let f = udp_to_us(ours, (4000, 9), b"closed?", false);
    s.process_frame(now, &f);
    // (The peer is not known yet: the error waits while we ask for it.)
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out[0].upper[0], ndp::TYPE_NEIGHBOR_SOLICIT);
    advertise(&mut s, now, ip(PEER), PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].dst, &out[0].upper[..2]), (ip(PEER), &[1, 4][..]));
    assert_eq!(
        &out[0].upper[8..],
        &f[14..],
        "the whole offending packet quoted"
    );
    // A SYN to a closed TCP port: a reset (RFC 9293 §3.10.7.1), over IPv6.
    let syn = mipfast::wire::tcp::Repr {
        src_port: 40000,
        dst_port: 8000,
        seq: 1000,
        flags: mipfast::wire::tcp::Flags::SYN,
        window: 1000,
        ..Default::default()
    };
    let mut segment = vec![0u8; syn.header_len()];
    syn.emit(&mut segment, 0, ip(PEER), ours);
    s.process_frame(
        now,
        &packet(DEFAULT_MAC, (ip(PEER), ours), ipv6::NEXT_TCP, 64, &segment),
    );
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!((out.len(), out[0].protocol), (1, ipv6::NEXT_TCP));
    let rst = mipfast::wire::tcp::Segment::new_checked(&out[0].upper[..], ours, ip(PEER)).unwrap();
    assert_eq!(
        (rst.src_port(), rst.dst_port(), rst.ack()),
        (8000, 40000, 1001)
    );
    assert!(rst.flags().contains(mipfast::wire::tcp::Flags::RST));
    assert_eq!(drops(&s, DropReason::TcpNoListener), 1);

    // An unknown upper layer: a parameter problem pointing at the next-header field.
    s.process_frame(
        now,
        &packet(DEFAULT_MAC, (ip(PEER), ours), 253, 64, b"what"),
    );
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    let problem = &out[0].upper;
    assert_eq!(
        (problem[0], problem[1], &problem[4..8]),
        (4, 1, &[0, 0, 0, 6][..])
    );
    assert_eq!(drops(&s, DropReason::Ipv6UnknownNextHeader), 1);

    // UDP to all nodes for a port nobody has: counted, never answered with an error.
    s.process_frame(
        now,
        &udp_to_us(ipv6::ALL_NODES, (4000, 7), b"anyone?", false),
    );
    assert!(drain(&mut s).is_empty());
    assert_eq!(
        drops(&s, DropReason::UdpNoListener),
        2,
        "this and the closed port above"
    );

    // Malformed input is counted: a header cut short, a bad checksum, a
    // forwarded (hop limit < 255) solicitation, a packet for another host.
    let mut short = packet(DEFAULT_MAC, (ip(PEER), ours), ipv6::NEXT_NONE, 64, b"");
    short.truncate(14 + 30);
    s.process_frame(now, &short);
    assert_eq!(drops(&s, DropReason::Ipv6Malformed), 1);
    let mut bad = icmp(
        DEFAULT_MAC,
        (ip(PEER), ours),
        64,
        vec![128, 0, 0, 0, 0, 1, 0, 1],
    );
    let last = bad.len() - 1;
    bad[last] ^= 1;
    s.process_frame(now, &bad);
    assert_eq!(drops(&s, DropReason::Icmpv6Checksum), 1);
    let ns = ndp::Solicit {
        target: ours,
        source_mac: Some(PEER_MAC),
    };
    let mut message = vec![0u8; ns.len()];
    ns.emit(&mut message, ip(PEER), ours);
    s.process_frame(now, &icmp(DEFAULT_MAC, (ip(PEER), ours), 64, message));
    assert_eq!(drops(&s, DropReason::NdpInvalid), 1);
    s.process_frame(
        now,
        &icmp(
            DEFAULT_MAC,
            (ip(PEER), ip("fe80::5")),
            64,
            vec![128, 0, 0, 0, 0, 1, 0, 1],
        ),
    );
    assert_eq!(drops(&s, DropReason::Ipv6NotForUs), 1);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn reports_its_groups_when_a_router_queries() {
    let (mut s, now) = ready_stack();
    let mut query = vec![0u8; 28];
    query[0] = mld::TYPE_QUERY;
    query[4..6].copy_from_slice(&1000u16.to_be_bytes());
    let router = ip("fe80::1");
    let mut f = icmp(
        ipv6::multicast_mac(ipv6::ALL_NODES),
        (router, ipv6::ALL_NODES),
        1,
        query,
    );
    f[6..12].copy_from_slice(&ROUTER_MAC.0);
    s.process_frame(now, &f);
    assert!(
        drain(&mut s).is_empty(),
        "reports wait a random part of the response time"
    );
    let out = run(&mut s, now, now + Duration::from_secs(1));
    let reports: Vec<_> = out
        .iter()
        .filter(|(_, x)| x.upper[0] == mld::TYPE_V2_REPORT)
        .collect();
    assert_eq!(reports.len(), 1);
    let report = &reports[0].1;
    assert_eq!(
        (report.src, report.upper[8]),
        (ip(LINK_LOCAL), mld::MODE_IS_EXCLUDE)
    );
    assert_eq!(
        &report.upper[12..28],
        &ipv6::solicited_node(ip(LINK_LOCAL)).octets()
    );
}

#[test]
fn without_ipv6_its_frames_are_unread() {
    let mut s = static_stack(Instant::ZERO);
    let f = icmp(
        DEFAULT_MAC,
        (ip(PEER), ip(LINK_LOCAL)),
        64,
        vec![128, 0, 0, 0, 0, 1, 0, 1],
    );
    s.process_frame(Instant::ZERO, &f);
    assert!(drain(&mut s).is_empty());
    assert_eq!(drops(&s, DropReason::UnknownEthertype), 1);
    assert!(s.interface().ipv6().is_none());
}

#[test]
fn pings_over_ipv6() {
    use mipfast::service::ping::ProbeId;
    use mipfast::stack::UdpSendError;
    let (mut s, now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let id = ProbeId {
        ident: 0x4242,
        seq: 3,
    };
    s.ping_send(now, ip(PEER), id, 24).unwrap();
    // The peer is asked for first; its advertisement lets the request go.
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(
        (out.len(), out[0].upper[0]),
        (1, ndp::TYPE_NEIGHBOR_SOLICIT)
    );
    advertise(&mut s, now, ip(PEER), PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    let request = &out[0];
    assert_eq!(
        (request.mac, request.src, request.dst),
        (PEER_MAC, ours, ip(PEER))
    );
    assert_eq!(
        (request.upper[0], &request.upper[4..8]),
        (128, &[0x42, 0x42, 0, 3][..])
    );
    assert_eq!(request.upper.len(), 8 + 24);
    // A reply with other data is not ours; the echoed one is, 5 ms later.
    let mut wrong = request.upper.clone();
    wrong[0] = 129;
    wrong[9] ^= 1;
    s.process_frame(now, &icmp(DEFAULT_MAC, (ip(PEER), ours), 64, wrong));
    assert_eq!(s.ping_rtt(id), None);
    assert_eq!(drops(&s, DropReason::IcmpEchoUnmatched), 1);
    let mut reply = request.upper.clone();
    reply[0] = 129;
    let later = now + Duration::from_millis(5);
    s.process_frame(later, &icmp(DEFAULT_MAC, (ip(PEER), ours), 64, reply));
    assert_eq!(s.ping_rtt(id), Some(Duration::from_millis(5)));
    // No route beyond the link without a router; too big for the MTU without fragments.
    let far = ip("2001:db8::1");
    let next = ProbeId { ident: 1, seq: 1 };
    assert_eq!(s.ping_send(now, far, next, 8), Err(UdpSendError::NoRoute));
    assert_eq!(
        s.ping_send(now, ip(PEER), next, 65528),
        Err(UdpSendError::TooBig)
    );
    // Without IPv6 at all: no route.
    let mut v4 = static_stack(now);
    assert_eq!(
        v4.ping_send(now, ip(PEER), next, 8),
        Err(UdpSendError::NoRoute)
    );
}

/// A UDP datagram over IPv6 from the peer to us, its checksum right unless `zero`.
fn udp_to_us(dst: Ipv6Addr, ports: (u16, u16), payload: &[u8], zero: bool) -> Vec<u8> {
    let mut d = vec![0u8; 8 + payload.len()];
    d[8..].copy_from_slice(payload);
    let repr = mipfast::wire::udp::Repr {
        src_port: ports.0,
        dst_port: ports.1,
    };
    repr.emit_v6(&mut d, payload.len(), ip(PEER), dst);
    if zero {
        d[6..8].fill(0);
    }
    let mac = match dst.is_multicast() {
        true => ipv6::multicast_mac(dst),
        false => DEFAULT_MAC,
    };
    packet(mac, (ip(PEER), dst), ipv6::NEXT_UDP, 64, &d)
}

#[test]
fn udp_over_ipv6() {
    use mipfast::stack::UdpSendError;
    use std::net::{IpAddr, Ipv4Addr};
    let (mut s, now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let v6 = s.udp_bind(Ipv6Addr::UNSPECIFIED, 5000).unwrap();
    let v4 = s.udp_bind(Ipv4Addr::UNSPECIFIED, 5001).unwrap();
    s.process_frame(now, &udp_to_us(ours, (4000, 5000), b"hello", false));
    s.process_frame(
        now,
        &udp_to_us(ipv6::ALL_NODES, (4000, 5000), b"all", false),
    );
    let got: Vec<_> = std::iter::from_fn(|| s.udp_mut().get_mut(v6).unwrap().recv())
        .map(|d| (d.src, d.data))
        .collect();
    let peer: IpAddr = ip(PEER).into();
    assert_eq!(
        got,
        vec![
            ((peer, 4000), b"hello".to_vec()),
            ((peer, 4000), b"all".to_vec())
        ]
    );
    // Not for the IPv4 socket; a zero checksum (not allowed over IPv6) is dropped.
    s.process_frame(now, &udp_to_us(ours, (4000, 5001), b"v4?", false));
    assert!(s.udp_mut().get_mut(v4).unwrap().recv().is_none());
    s.process_frame(now, &udp_to_us(ours, (4000, 5000), b"zero", true));
    assert!(s.udp_mut().get_mut(v6).unwrap().recv().is_none());
    assert_eq!(drops(&s, DropReason::UdpChecksum), 1);
    // The closed port (5001 has no IPv6 socket) is answered, once the peer is known.
    let asked: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(
        (asked.len(), asked[0].upper[0]),
        (1, ndp::TYPE_NEIGHBOR_SOLICIT)
    );
    advertise(&mut s, now, ip(PEER), PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].dst, &out[0].upper[..2]), (ip(PEER), &[1, 4][..]));
    assert_eq!(drops(&s, DropReason::UdpNoListener), 1);

    // A reply, checksummed with the IPv6 pseudo-header, from our link-local address.
    s.udp_send(now, v6, (ip(PEER), 4000), b"world").unwrap();
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    let reply = &out[0];
    assert_eq!(
        (reply.mac, reply.src, reply.dst, reply.protocol),
        (PEER_MAC, ours, ip(PEER), 17)
    );
    let d = mipfast::wire::udp::Datagram::new_checked_v6(&reply.upper, ours, ip(PEER)).unwrap();
    assert_eq!(
        (d.src_port(), d.dst_port(), d.payload()),
        (5000, 4000, &b"world"[..])
    );

    // To ourselves: addressed to our own MAC, which the stack's flush hands
    // back to us instead of the device (tests/loopback.rs).
    s.udp_send(now, v6, (ours, 5000), b"self").unwrap();
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].mac, out[0].dst), (DEFAULT_MAC, ours));

    // What a kernel refuses: the other family, too big without fragments,
    // an address not ours, port 0.
    let v4_peer = Ipv4Addr::new(10, 77, 0, 1);
    assert_eq!(
        s.udp_send(now, v6, (v4_peer, 9), b"x"),
        Err(UdpSendError::InvalidDestination)
    );
    assert_eq!(
        s.udp_send(now, v4, (ip(PEER), 9), b"x"),
        Err(UdpSendError::InvalidDestination)
    );
    // Beyond the MTU a datagram leaves in fragments (RFC 8200 §4.5): 1448
    // bytes each (1500 − 40 − 8, a multiple of 8), one identification.
    drain(&mut s);
    s.udp_send(now, v6, (ip(PEER), 9), &pattern(3000)).unwrap();
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    let pieces: Vec<_> = out
        .iter()
        .map(|f| {
            assert_eq!(f.protocol, ipv6::NEXT_FRAGMENT);
            let h = ipv6::FragmentHeader::parse(&f.upper).unwrap();
            (h.next_header, h.offset, h.more, h.ident, f.upper.len() - 8)
        })
        .collect();
    let ident = pieces[0].3;
    assert_eq!(
        pieces,
        vec![
            (ipv6::NEXT_UDP, 0, true, ident, 1448),
            (ipv6::NEXT_UDP, 1448, true, ident, 1448),
            (ipv6::NEXT_UDP, 2896, false, ident, 3008 - 2896),
        ]
    );
    // A UDP length is 16 bits.
    assert_eq!(
        s.udp_send(now, v6, (ip(PEER), 9), &vec![0; 65528]),
        Err(UdpSendError::TooBig)
    );
    s.udp_send(now, v6, (ip(PEER), 9), &vec![0; 65527]).unwrap();
    assert_eq!(drain(&mut s).len(), 46);
    assert_eq!(
        s.udp_send(now, v6, (ip(PEER), 0), b"x"),
        Err(UdpSendError::InvalidDestination)
    );
    assert_eq!(
        s.udp_bind(ip("fe80::99"), 0),
        Err(UdpSendError::AddressNotAvailable)
    );
    assert!(s.udp_bind(ours, 0).is_ok());
}

#[test]
fn a_connected_ipv6_socket_hears_of_a_closed_port() {
    use mipfast::stack::UdpSendError;
    let (mut s, now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let h = s.udp_bind(Ipv6Addr::UNSPECIFIED, 6000).unwrap();
    s.udp_mut()
        .get_mut(h)
        .unwrap()
        .connect(Some((ip(PEER).into(), 53)));
    s.udp_send(now, h, (ip(PEER), 53), b"query").unwrap();
    drain(&mut s); // the solicitation for the peer
    advertise(&mut s, now, ip(PEER), PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!((out.len(), out[0].protocol), (1, ipv6::NEXT_UDP));
    // The peer's port unreachable quotes what we sent (IPv6 header on).
    let sent_packet = out[0].packet();
    let error = icmpv6::ErrorMessage {
        msg_type: icmpv6::TYPE_DEST_UNREACHABLE,
        code: icmpv6::CODE_PORT_UNREACHABLE,
        parameter: 0,
        original: &sent_packet,
    };
    let mut message = vec![0u8; error.len()];
    error.emit(&mut message, ip(PEER), ours);
    // About another port of ours first: nothing changes.
    let mut other = sent_packet.clone();
    other[40..42].copy_from_slice(&6001u16.to_be_bytes());
    let elsewhere = icmpv6::ErrorMessage {
        original: &other,
        ..error
    };
    let mut message2 = vec![0u8; elsewhere.len()];
    elsewhere.emit(&mut message2, ip(PEER), ours);
    s.process_frame(now, &icmp(DEFAULT_MAC, (ip(PEER), ours), 64, message2));
    assert!(!s.udp().get(h).unwrap().has_error());
    s.process_frame(now, &icmp(DEFAULT_MAC, (ip(PEER), ours), 64, message));
    assert!(s.udp().get(h).unwrap().has_error());
    assert_eq!(
        s.udp_send(now, h, (ip(PEER), 53), b"again"),
        Err(UdpSendError::Refused)
    );
}

/// A fragment of `whole` (upper-layer bytes of `next`) from the peer to us.
fn fragment(whole: &[u8], next: u8, (start, end): (usize, usize), ident: u32) -> Vec<u8> {
    let more = end < whole.len();
    let mut body = vec![0u8; ipv6::FRAGMENT_HEADER_LEN];
    ipv6::FragmentHeader {
        next_header: next,
        offset: start,
        more,
        ident,
    }
    .emit(&mut body);
    body.extend_from_slice(&whole[start..end]);
    let addresses = (ip(PEER), ip(LINK_LOCAL));
    packet(DEFAULT_MAC, addresses, ipv6::NEXT_FRAGMENT, 64, &body)
}

/// RFC 8200 §4.5: fragments in any order make the packet whole once;
/// overlaps poison it (RFC 5722); a bad length is a parameter problem; a
/// packet not whole in time is a time exceeded; and neighbor discovery in
/// fragments is never believed (RFC 6980).
#[test]
fn reassembles_fragments_and_reports_what_it_cannot() {
    let (mut s, mut now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let h = s.udp_bind(Ipv6Addr::UNSPECIFIED, 5000).unwrap();
    let payload = pattern(4000);
    let mut datagram = vec![0u8; 8 + payload.len()];
    datagram[8..].copy_from_slice(&payload);
    let repr = mipfast::wire::udp::Repr {
        src_port: 4000,
        dst_port: 5000,
    };
    repr.emit_v6(&mut datagram, payload.len(), ip(PEER), ours);
    let pieces = [(2400, 4008), (0, 1200), (1200, 2400)];
    for (i, &range) in pieces.iter().enumerate() {
        assert!(s.udp_mut().get_mut(h).unwrap().recv().is_none(), "{i}");
        s.process_frame(now, &fragment(&datagram, ipv6::NEXT_UDP, range, 7));
    }
    let d = s.udp_mut().get_mut(h).unwrap().recv().expect("made whole");
    assert_eq!((d.src, d.data), ((ip(PEER).into(), 4000), payload.clone()));
    assert_eq!(s.interface().reassembly_usage(), (0, 0));

    // Overlapping pieces: the packet is given up, never delivered.
    for range in [(0, 1200), (800, 2400), (2400, 4008)] {
        s.process_frame(now, &fragment(&datagram, ipv6::NEXT_UDP, range, 8));
    }
    assert_eq!(drops(&s, DropReason::Ipv6FragmentOverlap), 1);
    assert!(s.udp_mut().get_mut(h).unwrap().recv().is_none());

    // A piece not a multiple of 8 bytes with more to come: a parameter
    // problem pointing at the payload length (sent once the peer answers).
    drain(&mut s);
    s.process_frame(now, &fragment(&datagram, ipv6::NEXT_UDP, (0, 1204), 9));
    assert_eq!(drops(&s, DropReason::Ipv6FragmentMalformed), 1);
    drain(&mut s);
    advertise(&mut s, now, ip(PEER), PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (&out[0].upper[..2], &out[0].upper[4..8]),
        (&[icmpv6::TYPE_PARAMETER_PROBLEM, 0][..], &[0, 0, 0, 4][..])
    );

    // RFC 7112: a first fragment without the whole header chain (8 bytes of a
    // TCP header; a destination options header cut short) is dropped with a
    // parameter problem, code 3, pointer 0; its later pieces then make nothing.
    let segment = pattern(48);
    let mut options_first = vec![ipv6::NEXT_UDP, 1]; // 16 bytes of options, 8 here
    options_first.extend_from_slice(&[0; 30]);
    for (i, (next, whole)) in [
        (ipv6::NEXT_TCP, &segment),
        (ipv6::NEXT_DESTINATION_OPTIONS, &options_first),
    ]
    .into_iter()
    .enumerate()
    {
        drain(&mut s);
        let ident = 20 + i as u32;
        s.process_frame(now, &fragment(whole, next, (0, 8), ident));
        s.process_frame(now, &fragment(whole, next, (8, whole.len()), ident));
        assert_eq!(drops(&s, DropReason::Ipv6FragmentMalformed), 2 + i as u64);
        advertise(&mut s, now, ip(PEER), PEER_MAC);
        let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
        assert_eq!(out.len(), 1, "{i}");
        assert_eq!(
            (&out[0].upper[..2], &out[0].upper[4..8]),
            (&[icmpv6::TYPE_PARAMETER_PROBLEM, 3][..], &[0, 0, 0, 0][..])
        );
    }

    // Fragment zero alone: after the timeout, 60 s for IPv6 (RFC 8200 §4.5,
    // where IPv4 waits 30), a time exceeded quoting it.
    s.process_frame(now, &fragment(&datagram, ipv6::NEXT_UDP, (0, 1200), 10));
    now += Duration::from_secs(31);
    s.poll_timers(now);
    assert_eq!(drops(&s, DropReason::Ipv6ReassemblyTimeout), 0);
    now += Duration::from_secs(30);
    s.poll_timers(now);
    // The peer's entry aged in use: confirmed with a solicitation to its
    // own address and MAC, while the time exceeded goes to that MAC at once.
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    let probe = out
        .iter()
        .find(|f| f.upper[0] == ndp::TYPE_NEIGHBOR_SOLICIT)
        .unwrap();
    assert_eq!(
        (probe.mac, probe.dst, &probe.upper[8..24]),
        (PEER_MAC, ip(PEER), &ip(PEER).octets()[..])
    );
    let exceeded: Vec<_> = out
        .iter()
        .filter(|f| f.upper[0] == icmpv6::TYPE_TIME_EXCEEDED)
        .collect();
    assert_eq!(exceeded.len(), 1);
    let quote = &exceeded[0].upper[8..];
    assert_eq!((exceeded[0].upper[1], exceeded[0].dst), (1, ip(PEER)));
    assert_eq!(
        (quote[0] >> 4, &quote[8..24], &quote[40..48]),
        (6, &ip(PEER).octets()[..], &datagram[..8])
    );
    assert!(drops(&s, DropReason::Ipv6ReassemblyTimeout) >= 1);

    // A neighbor advertisement in fragments is not believed.
    let other = ip("fe80::77");
    let na = ndp::Advert {
        solicited: false,
        override_entry: true,
        target: other,
        target_mac: MacAddress([2, 0, 0, 0, 0, 0x77]),
    };
    let mut message = vec![0u8; ndp::Advert::LEN];
    na.emit(&mut message, ip(PEER), ours);
    let before = drops(&s, DropReason::NdpInvalid);
    s.process_frame(now, &fragment(&message, ipv6::NEXT_ICMPV6, (0, 16), 11));
    s.process_frame(
        now,
        &fragment(&message, ipv6::NEXT_ICMPV6, (16, message.len()), 11),
    );
    assert_eq!(drops(&s, DropReason::NdpInvalid), before + 1);
    assert!(s
        .interface()
        .ipv6()
        .unwrap()
        .neighbors(now)
        .iter()
        .all(|n| n.ip != other));
}

/// A router advertisement naming DNS servers (RFC 8106 §5.1) for `lifetime` seconds.
fn rdnss_advert(servers: &[Ipv6Addr], lifetime: u32) -> Vec<u8> {
    let mut m = vec![0u8; 16 + 8 + 8 + 16 * servers.len()];
    m[0] = 134; // not a default router: only the servers
    m[16..24].copy_from_slice(&[1, 1, 0x02, 0xbb, 0, 0, 0, 1]);
    m[24] = 25;
    m[25] = (1 + 2 * servers.len()) as u8;
    m[28..32].copy_from_slice(&lifetime.to_be_bytes());
    for (i, server) in servers.iter().enumerate() {
        m[32 + 16 * i..48 + 16 * i].copy_from_slice(&server.octets());
    }
    from_router(m)
}

/// RFC 8106: DNS servers from a router's advertisement are asked over IPv6
/// (here for an AAAA record, by a stack with no IPv4 at all), and forgotten
/// when their lifetime ends or a router withdraws them.
#[test]
fn asks_the_dns_servers_routers_name() {
    use mipfast::service::dns::Family;
    use mipfast::wire::dns::{self, build};
    let (mut s, mut now) = ready_stack();
    assert!(s.dns_servers().is_empty());
    let (server, other) = (ip(PEER), ip("2001:db8::53"));
    s.process_frame(now, &rdnss_advert(&[server, ip("ff02::1"), other], 60));
    let servers: Vec<std::net::IpAddr> = vec![server.into(), other.into()];
    assert_eq!(s.dns_servers(), servers, "a group is no server");

    let id = s.resolve_start_for(now, "www.example.test", Family::Ipv6);
    drain(&mut s); // the server's neighbor solicitation
    advertise(&mut s, now, server, PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!(out.len(), 1);
    let q = &out[0];
    assert_eq!((q.dst, q.protocol), (server, ipv6::NEXT_UDP));
    let udp = mipfast::wire::udp::Datagram::new_checked_v6(&q.upper, q.src, server).unwrap();
    assert_eq!(udp.dst_port(), 53);
    let answer_ip = ip("2001:db8::80");
    let mut answer = build::response(udp.payload(), dns::RCODE_NOERROR, 1, 0);
    build::record(&mut answer, None, dns::TYPE_AAAA, 300, &answer_ip.octets());
    let reply = udp_to_us(q.src, (53, udp.src_port()), &answer, false);
    s.process_frame(now, &reply);
    assert_eq!(s.resolve_result(id), Some(&Ok(vec![answer_ip.into()])));

    // Withdrawn (lifetime 0), or expired: gone.
    s.process_frame(now, &rdnss_advert(&[other], 0));
    assert_eq!(s.dns_servers(), vec![std::net::IpAddr::from(server)]);
    now += Duration::from_secs(61);
    s.poll_timers(now);
    assert!(s.dns_servers().is_empty());
}

/// RFC 8201 for datagrams: a Packet Too Big about one of ours makes later
/// datagrams to that destination leave in fragments that fit (never
/// smaller than 1280), until the entry ages out after ten minutes.
#[test]
fn datagrams_follow_a_packet_too_big() {
    let (mut s, mut now) = ready_stack();
    let ours = ip(LINK_LOCAL);
    let h = s.udp_bind(Ipv6Addr::UNSPECIFIED, 5000).unwrap();
    s.udp_send(now, h, (ip(PEER), 9), &pattern(1400)).unwrap();
    drain(&mut s);
    advertise(&mut s, now, ip(PEER), PEER_MAC);
    let out: Vec<_> = drain(&mut s).iter().filter_map(|f| sent(f)).collect();
    assert_eq!((out.len(), out[0].protocol), (1, ipv6::NEXT_UDP));
    // A router says 1000 bytes: taken as 1280, IPv6's minimum.
    let original = out[0].packet();
    let mut ptb = vec![0u8; 8 + original.len()];
    ptb[0] = icmpv6::TYPE_PACKET_TOO_BIG;
    ptb[4..8].copy_from_slice(&1000u32.to_be_bytes());
    ptb[8..].copy_from_slice(&original);
    s.process_frame(now, &icmp(DEFAULT_MAC, (ip("fe80::1"), ours), 64, ptb));
    let sizes = |s: &mut Stack| -> Vec<usize> {
        let frames = drain(s);
        frames
            .iter()
            .map(|f| f.len() - ethernet::HEADER_LEN)
            .collect()
    };
    s.udp_send(now, h, (ip(PEER), 9), &pattern(1400)).unwrap();
    assert_eq!(sizes(&mut s), vec![1280, 1408 - 1232 + 48]);
    now += Duration::from_secs(601);
    s.poll_timers(now);
    drain(&mut s); // (a solicitation confirming the peer, whose entry aged in use)
    s.udp_send(now, h, (ip(PEER), 9), &pattern(1400)).unwrap();
    assert_eq!(sizes(&mut s), vec![ipv6::HEADER_LEN + 1408]);
}

/// A redirect (RFC 4861 §4.5) from `router` to us: packets to `destination`
/// go to `target` (whose MAC the message gives).
fn redirect(router: Ipv6Addr, (target, destination): (Ipv6Addr, Ipv6Addr), hop: u8) -> Vec<u8> {
    let mut m = vec![0u8; 40 + 8];
    m[0] = ndp::TYPE_REDIRECT;
    m[8..24].copy_from_slice(&target.octets());
    m[24..40].copy_from_slice(&destination.octets());
    m[40..48].copy_from_slice(&[2, 1, 0x02, 0xcc, 0, 0, 0, 2]); // target's link-layer address
    icmp(DEFAULT_MAC, (router, ip(LINK_LOCAL)), hop, m)
}

/// RFC 4861 §8: a redirect from the router a destination's packets go
/// through sends them to the target it names from then on; one from
/// anyone else, or forwarded (hop limit below 255), changes nothing.
#[test]
fn follows_a_redirect_from_its_router_and_no_one_else() {
    let (mut s, mut now) = ready_stack();
    s.process_frame(now, &router_advert("fd77:0:0:1::", (600, 600), 1800));
    run(&mut s, now, now + Duration::from_secs(3));
    now += Duration::from_secs(3);
    let global = ip("fd77:0:0:1:0:1ff:fe02:377");
    let (far, other) = (ip("2001:db8::5"), ip("2001:db8::6"));
    let echo_reply_mac = |s: &mut Stack, now: Instant, from: Ipv6Addr| {
        let request = vec![128, 0, 0, 0, 0, 9, 0, 9];
        s.process_frame(now, &icmp(DEFAULT_MAC, (from, global), 60, request));
        let out: Vec<_> = drain(s).iter().filter_map(|f| sent(f)).collect();
        assert_eq!(out.len(), 1, "{from}");
        out[0].mac
    };
    assert_eq!(echo_reply_mac(&mut s, now, far), ROUTER_MAC);

    let (router, nearer) = (ip("fe80::1"), ip("fe80::2"));
    let nearer_mac = MacAddress([0x02, 0xcc, 0, 0, 0, 2]);
    // Not from the router that destination's packets go through, or forwarded: ignored.
    let invalid = drops(&s, DropReason::NdpInvalid);
    s.process_frame(now, &redirect(ip(PEER), (nearer, far), 255));
    s.process_frame(now, &redirect(router, (nearer, far), 64));
    // (A target neither link-local nor the destination: malformed.)
    s.process_frame(now, &redirect(router, (ip("2001:db8::9"), far), 255));
    assert_eq!(drops(&s, DropReason::NdpInvalid), invalid + 3);
    assert_eq!(echo_reply_mac(&mut s, now, far), ROUTER_MAC);

    // From the router: `far` is now reached through `nearer`; others as before.
    s.process_frame(now, &redirect(router, (nearer, far), 255));
    assert_eq!(drops(&s, DropReason::NdpInvalid), invalid + 3);
    assert_eq!(echo_reply_mac(&mut s, now, far), nearer_mac);
    assert_eq!(echo_reply_mac(&mut s, now, other), ROUTER_MAC);
    let host = s.interface().ipv6().unwrap();
    assert_eq!(host.next_hop(now, far), Some(nearer));
    // Forgotten after ten minutes.
    assert_eq!(
        host.next_hop(now + Duration::from_secs(601), far),
        Some(router)
    );
}
