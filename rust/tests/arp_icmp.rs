//! ARP resolution, aging and answers; ICMP echo; routing via the gateway.

mod common;
use common::*;
use mipfast::iface::{DropReason, DEFAULT_MAC};
use mipfast::time::{Duration, Instant};
use mipfast::wire::{arp, ethernet, icmp, ipv4, Ipv4Addr, MacAddress};

#[test]
fn answers_arp_requests_for_its_address_only() {
    let now = Instant::ZERO;
    let mut s = static_stack(now);
    s.process_frame(now, &peer_arp_request());
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    match decode(&out[0]) {
        Out::Arp(r, dst) => {
            assert_eq!(r.operation, arp::Operation::Reply);
            assert_eq!(
                (r.sender_mac, r.sender_ip, r.target_mac, r.target_ip),
                (DEFAULT_MAC, STACK_IP, PEER_MAC, PEER_IP)
            );
            assert_eq!(dst, PEER_MAC);
        }
        o => panic!("{o:?}"),
    }
    let other = arp_frame(
        arp::Operation::Request,
        (PEER_MAC, PEER_IP),
        (MacAddress::ZERO, Ipv4Addr::new(10, 77, 0, 9)),
        MacAddress::BROADCAST,
    );
    s.process_frame(now, &other);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn gratuitous_arp_when_configured() {
    let cidr = "10.77.0.2/24".parse().unwrap();
    let cfg = mipfast::iface::Ipv4Config::new(cidr, None, vec![]).unwrap();
    let mut s = mipfast::stack::Stack::new(
        mipfast::stack::StackConfig::static_ipv4(cfg, 1),
        Instant::ZERO,
    );
    let out = drain(&mut s);
    match decode(&out[0]) {
        Out::Arp(r, dst) => {
            assert_eq!(
                (r.sender_ip, r.target_ip, dst),
                (STACK_IP, STACK_IP, MacAddress::BROADCAST)
            );
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn echo_reply_resolves_then_uses_the_cache_and_ages_out() {
    let mut now = Instant::ZERO;
    let mut s = static_stack(now);
    // An echo request before we know the peer: the reply waits for ARP.
    s.process_frame(now, &echo_request(DEFAULT_MAC, STACK_IP, 1, b"ping-data"));
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    match decode(&out[0]) {
        Out::Arp(r, _) => assert_eq!(
            (r.operation, r.target_ip),
            (arp::Operation::Request, PEER_IP)
        ),
        o => panic!("{o:?}"),
    }
    let reply = arp_frame(
        arp::Operation::Reply,
        (PEER_MAC, PEER_IP),
        (DEFAULT_MAC, STACK_IP),
        DEFAULT_MAC,
    );
    s.process_frame(now, &reply);
    let out = drain(&mut s);
    match decode(&out[0]) {
        Out::Echo {
            reply: true,
            ident: 0x4242,
            seq: 1,
            data,
            dst_mac,
            dst,
        } => {
            assert_eq!(
                (data.as_slice(), dst_mac, dst),
                (&b"ping-data"[..], PEER_MAC, PEER_IP)
            );
        }
        o => panic!("{o:?}"),
    }
    // Cached: the next reply goes out at once.
    now += Duration::from_secs(30);
    s.process_frame(now, &echo_request(DEFAULT_MAC, STACK_IP, 2, b"x"));
    assert!(matches!(
        decode(&drain(&mut s)[0]),
        Out::Echo { seq: 2, .. }
    ));
    // Aged out after the reachable time: ARP again.
    now += Duration::from_secs(31);
    s.process_frame(now, &echo_request(DEFAULT_MAC, STACK_IP, 3, b"x"));
    assert!(matches!(
        decode(&drain(&mut s)[0]),
        Out::Arp(
            arp::Repr {
                operation: arp::Operation::Request,
                ..
            },
            _
        )
    ));
}

#[test]
fn unanswered_arp_is_retried_then_given_up_and_counted() {
    let mut now = Instant::ZERO;
    let mut s = static_stack(now);
    s.process_frame(now, &echo_request(DEFAULT_MAC, STACK_IP, 1, b""));
    assert_eq!(drain(&mut s).len(), 1);
    let mut requests = 1;
    while let Some(t) = s.poll_at() {
        now = t;
        s.poll_timers(now);
        requests += drain(&mut s).len();
        assert!(now < Instant::from_secs(10));
    }
    assert_eq!(requests, 3);
    assert_eq!(s.counters().drops(DropReason::NeighborUnreachable), 1);
}

#[test]
fn off_link_destinations_go_via_the_gateway() {
    let now = Instant::ZERO;
    let mut s = static_stack(now);
    let far = Ipv4Addr::new(192, 168, 9, 9);
    // A ping from far away arrives through the gateway's MAC; our reply must ARP for the gateway.
    let e = mipfast::wire::icmp::Echo {
        reply: false,
        ident: 1,
        seq: 1,
        data: b"",
    };
    let mut p = vec![0u8; e.len()];
    e.emit(&mut p);
    s.process_frame(
        now,
        &ipv4_frame(DEFAULT_MAC, PEER_MAC, far, STACK_IP, ipv4::PROTO_ICMP, &p),
    );
    match decode(&drain(&mut s)[0]) {
        Out::Arp(r, _) => assert_eq!(r.target_ip, PEER_IP),
        o => panic!("{o:?}"),
    }
}

#[test]
fn drops_are_counted_by_reason() {
    let now = Instant::ZERO;
    let mut s = static_stack(now);
    s.process_frame(now, &[0u8; 10]);
    s.process_frame(
        now,
        &echo_request(MacAddress([2, 9, 9, 9, 9, 9]), STACK_IP, 1, b""),
    );
    let mut bad = echo_request(DEFAULT_MAC, STACK_IP, 1, b"");
    bad[14 + 10] ^= 0xff; // IPv4 header checksum
    s.process_frame(now, &bad);
    // A first fragment whose length is not a multiple of 8 (RFC 791): refused.
    let mut frag = echo_request(DEFAULT_MAC, STACK_IP, 1, b"x");
    frag[14 + 6] = 0x20;
    let c = {
        frag[14 + 10] = 0;
        frag[14 + 11] = 0;
        mipfast::wire::checksum::checksum(&frag[14..34])
    };
    frag[24..26].copy_from_slice(&c.to_be_bytes());
    s.process_frame(now, &frag);
    s.process_frame(
        now,
        &udp_frame(DEFAULT_MAC, PEER_MAC, (PEER_IP, 5000), (STACK_IP, 9), b"hi"),
    );
    let c = s.counters();
    for r in [
        DropReason::EthernetTruncated,
        DropReason::OtherHost,
        DropReason::Ipv4Checksum,
        DropReason::Ipv4FragmentMalformed,
        DropReason::UdpNoListener,
    ] {
        assert_eq!(c.drops(r), 1, "{r:?}");
    }
    assert_eq!(c.frames_in, 5);
    // Only the port unreachable answers, and it first needs the peer's MAC.
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    assert!(matches!(
        decode(&out[0]),
        Out::Arp(
            arp::Repr {
                operation: arp::Operation::Request,
                ..
            },
            _
        )
    ));
}

/// RFC 5227 §2.1.1: a probe (sender 0.0.0.0) for our address is answered,
/// so the prober sees the address is taken; one for another address is not.
#[test]
fn an_arp_probe_for_our_address_is_answered() {
    let now = Instant::ZERO;
    let mut s = static_stack(now);
    let probe = |target| {
        arp_frame(
            arp::Operation::Request,
            (PEER_MAC, Ipv4Addr::UNSPECIFIED),
            (MacAddress::ZERO, target),
            MacAddress::BROADCAST,
        )
    };
    s.process_frame(now, &probe(STACK_IP));
    let out = drain(&mut s);
    assert_eq!(out.len(), 1, "the probe for our address is answered");
    match decode(&out[0]) {
        Out::Arp(r, dst) => {
            assert_eq!(r.operation, arp::Operation::Reply);
            assert_eq!(
                (r.sender_mac, r.sender_ip, r.target_mac, r.target_ip),
                (DEFAULT_MAC, STACK_IP, PEER_MAC, Ipv4Addr::UNSPECIFIED)
            );
            assert_eq!(dst, PEER_MAC);
        }
        o => panic!("{o:?}"),
    }
    s.process_frame(now, &probe(Ipv4Addr::new(10, 77, 0, 9)));
    assert!(
        drain(&mut s).is_empty(),
        "a probe for another address is not ours to answer"
    );
}

/// RFC 1122 §3.2.2.6: an echo request with Record Route (as `ping -R`
/// sends: the sender's own address first) comes back with the option, our
/// address recorded after the sender's.
#[test]
fn echo_returns_record_route_with_our_address() {
    let now = Instant::ZERO;
    let mut s = static_stack(now);
    s.process_frame(now, &peer_arp_request()); // learn the peer's MAC
    drain(&mut s);
    let mut route = vec![ipv4::OPTION_RECORD_ROUTE, 39, 4];
    route.resize(39, 0);
    let echo = icmp::Echo {
        reply: false,
        ident: 9,
        seq: 1,
        data: b"route?",
    };
    let mut icmp_bytes = vec![0u8; echo.len()];
    echo.emit(&mut icmp_bytes);
    let header = ipv4::Repr {
        options: ipv4::HeaderOptions::record_route_with(&route, PEER_IP),
        ..ipv4::Repr::new(PEER_IP, STACK_IP, ipv4::PROTO_ICMP, icmp_bytes.len(), 3)
    };
    let mut packet = vec![0u8; header.header_len() + icmp_bytes.len()];
    header.emit(&mut packet);
    packet[header.header_len()..].copy_from_slice(&icmp_bytes);
    s.process_frame(
        now,
        &frame(DEFAULT_MAC, PEER_MAC, ethernet::ETHERTYPE_IPV4, &packet),
    );
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    let eth = ethernet::Frame::new_checked(&out[0]).unwrap();
    let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.header_len(), 60);
    let rr = ipv4::record_route(ip.options()).expect("the reply carries Record Route");
    assert_eq!(rr[2], 12);
    assert_eq!(
        &rr[3..11],
        &[PEER_IP.octets(), STACK_IP.octets()].concat()[..]
    );
    let reply = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (reply.msg_type(), reply.data()),
        (icmp::TYPE_ECHO_REPLY, &b"route?"[..])
    );
}
