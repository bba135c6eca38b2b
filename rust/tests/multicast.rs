//! UDP multicast between two of our stacks in simulated time: IGMP version 2
//! reports, queries and leaves on the wire (RFC 2236 §3), datagrams to a
//! group taken only while it is joined, the sender's TTL and loop options.

mod tcp_net;

use mipfast::iface::DropReason;
use mipfast::phy::Device;
use mipfast::socket::udp::MembershipError;
use mipfast::time::Duration;
use mipfast::wire::{ethernet, igmp, ipv4, ipv6, mld, Ipv4Addr, MacAddress};
use std::net::Ipv6Addr;
use std::ops::ControlFlow;
use tcp_net::*;

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
const GROUP: Ipv4Addr = Ipv4Addr::new(239, 1, 2, 3);
const GROUP_MAC: MacAddress = MacAddress([0x01, 0x00, 0x5e, 0x01, 0x02, 0x03]);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An IPv4 frame as seen on the wire: (eth dst, ip dst, ttl, protocol, header len, payload).
#[derive(Debug)]
struct Seen {
    mac: MacAddress,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: u8,
    header_len: usize,
    payload: Vec<u8>,
}

/// Runs B alone for `d` and returns the IPv4 frames it put on the wire
/// toward A, which is silent meanwhile (its frames are read here instead).
fn sent_by_b(net: &mut Net, d: Duration) -> Vec<Seen> {
    net.a.silent = true;
    let end = net.now + d;
    let mut seen = Vec::new();
    loop {
        net.b.stack.poll(net.now, &mut net.b.dev).unwrap();
        let _ = net.a.dev.receive(net.now, &mut |frame, _, _| {
            let eth = ethernet::Frame::new_checked(frame).unwrap();
            if eth.ethertype() == ethernet::ETHERTYPE_IPV4 {
                let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
                seen.push(Seen {
                    mac: eth.dst(),
                    dst: ip.dst(),
                    ttl: ip.ttl(),
                    protocol: ip.protocol(),
                    header_len: usize::from(eth.payload()[0] & 0x0f) * 4,
                    payload: ip.payload().to_vec(),
                });
            }
            ControlFlow::Continue(())
        });
        if net.now >= end {
            break;
        }
        net.now = (net.now + ms(10)).min(end);
    }
    net.a.silent = false;
    seen
}

fn igmp_of(seen: &[Seen]) -> Vec<(Ipv4Addr, igmp::Message)> {
    seen.iter()
        .filter(|s| s.protocol == ipv4::PROTO_IGMP)
        .map(|s| {
            assert_eq!((s.ttl, s.header_len), (1, 24), "TTL 1 and Router Alert");
            let m = igmp::Message::parse(&s.payload).unwrap();
            (s.dst, m)
        })
        .collect()
}

fn received(net: &mut Net, h: mipfast::socket::udp::UdpHandle) -> Vec<Vec<u8>> {
    let s = net.b.stack.udp_mut().get_mut(h).unwrap();
    std::iter::from_fn(|| s.recv().map(|d| d.data)).collect()
}

#[test]
fn a_group_is_reported_when_joined_and_asked_and_its_datagrams_taken_until_it_is_left() {
    let mut net = Net::clean(11);
    net.run_for(ms(50));
    let sender = net.a.stack.udp_bind(ANY, 0).unwrap();
    let hb = net.b.stack.udp_bind(ANY, 5000).unwrap();

    // Not joined: a group's datagram is not ours.
    let not_ours = net.b.stack.counters().drops(DropReason::Ipv4NotForUs);
    net.a
        .stack
        .udp_send(net.now, sender, (GROUP, 5000), b"early")
        .unwrap();
    net.run_for(ms(20));
    assert!(received(&mut net, hb).is_empty());
    assert_eq!(
        net.b.stack.counters().drops(DropReason::Ipv4NotForUs),
        not_ours + 1
    );

    // Joined: reported at once and once more a second later, to the group.
    assert_eq!(net.b.stack.udp_join(net.now, hb, GROUP), Some(Ok(())));
    let report = igmp::Message::Report { group: GROUP };
    let seen = sent_by_b(&mut net, ms(1500));
    assert_eq!(igmp_of(&seen), vec![(GROUP, report), (GROUP, report)]);
    assert!(seen.iter().all(|s| s.mac == GROUP_MAC));
    assert_eq!(
        net.b.stack.udp_join(net.now, hb, GROUP),
        Some(Err(MembershipError::AlreadyMember))
    );
    let unicast = Ipv4Addr::new(10, 77, 0, 9);
    assert_eq!(
        net.b.stack.udp_join(net.now, hb, unicast),
        Some(Err(MembershipError::NotMulticast))
    );

    net.a
        .stack
        .udp_send(net.now, sender, (GROUP, 5000), b"to the group")
        .unwrap();
    net.a
        .stack
        .udp_send(
            net.now,
            sender,
            (Ipv4Addr::new(239, 9, 9, 9), 5000),
            b"other",
        )
        .unwrap();
    net.run_for(ms(20));
    assert_eq!(received(&mut net, hb), vec![b"to the group".to_vec()]);

    // A general query (to 224.0.0.1, answers within 2 s) is answered once, in time.
    let mut query = [0u8; igmp::HEADER_LEN];
    igmp::Message::Query {
        group: None,
        max_response: Duration::from_secs(2),
    }
    .emit(&mut query);
    let all = (igmp::ALL_SYSTEMS, MacAddress([0x01, 0x00, 0x5e, 0, 0, 1]));
    net.inject_from(true, (A_IP, A_MAC), all, ipv4::PROTO_IGMP, &query);
    assert_eq!(
        igmp_of(&sent_by_b(&mut net, ms(2100))),
        vec![(GROUP, report)]
    );

    // A query another host answered first for the group: ours is not needed.
    net.inject_from(true, (A_IP, A_MAC), all, ipv4::PROTO_IGMP, &query);
    let mut theirs = [0u8; igmp::HEADER_LEN];
    report.emit(&mut theirs);
    net.inject_from(
        true,
        (A_IP, A_MAC),
        (GROUP, GROUP_MAC),
        ipv4::PROTO_IGMP,
        &theirs,
    );
    assert_eq!(igmp_of(&sent_by_b(&mut net, ms(2100))), vec![]);

    // Left, having answered the last query itself: said to all routers, and
    // the group's datagrams are not ours again.
    net.inject_from(true, (A_IP, A_MAC), all, ipv4::PROTO_IGMP, &query);
    assert_eq!(
        igmp_of(&sent_by_b(&mut net, ms(2100))),
        vec![(GROUP, report)]
    );
    assert_eq!(net.b.stack.udp_leave(net.now, hb, GROUP), Some(Ok(())));
    assert_eq!(
        net.b.stack.udp_leave(net.now, hb, GROUP),
        Some(Err(MembershipError::NotMember))
    );
    let leave = igmp::Message::Leave { group: GROUP };
    assert_eq!(
        igmp_of(&sent_by_b(&mut net, ms(20))),
        vec![(igmp::ALL_ROUTERS, leave)]
    );
    net.a
        .stack
        .udp_send(net.now, sender, (GROUP, 5000), b"late")
        .unwrap();
    net.run_for(ms(20));
    assert!(received(&mut net, hb).is_empty());
}

#[test]
fn a_socket_closed_leaves_its_groups_and_what_it_sends_goes_with_its_ttl_and_comes_back() {
    let mut net = Net::clean(12);
    net.run_for(ms(50));
    let member = net.b.stack.udp_bind(ANY, 5000).unwrap();
    let sender = net.b.stack.udp_bind(ANY, 0).unwrap();
    assert_eq!(net.b.stack.udp_join(net.now, member, GROUP), Some(Ok(())));
    let _ = sent_by_b(&mut net, ms(1100)); // the join's reports

    // To a group we are in: on the wire with TTL 1, and back to the member here.
    net.b
        .stack
        .udp_send(net.now, sender, (GROUP, 5000), b"one")
        .unwrap();
    let seen = sent_by_b(&mut net, ms(10));
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].mac, seen[0].dst, seen[0].ttl),
        (GROUP_MAC, GROUP, 1)
    );
    assert_eq!(received(&mut net, member), vec![b"one".to_vec()]);

    // IP_MULTICAST_TTL 5, IP_MULTICAST_LOOP off.
    let s = net.b.stack.udp_mut().get_mut(sender).unwrap();
    s.multicast_ttl = 5;
    s.multicast_loop = false;
    net.b
        .stack
        .udp_send(net.now, sender, (GROUP, 5000), b"two")
        .unwrap();
    let seen = sent_by_b(&mut net, ms(10));
    assert_eq!((seen.len(), seen[0].ttl), (1, 5));
    assert!(received(&mut net, member).is_empty());

    // Closed: the host leaves the group (it sent the last report).
    net.b.stack.udp_close(net.now, member);
    let leave = igmp::Message::Leave { group: GROUP };
    assert_eq!(
        igmp_of(&sent_by_b(&mut net, ms(10))),
        vec![(igmp::ALL_ROUTERS, leave)]
    );
    assert_eq!(net.b.stack.multicast_groups(), vec![]);
}

/// An IPv6 frame B put on the wire: (eth dst, ip dst, hop limit, upper-layer protocol, its bytes).
type Seen6 = (MacAddress, Ipv6Addr, u8, u8, Vec<u8>);

/// As [`sent_by_b`], for IPv6 frames.
fn sent_v6_by_b(net: &mut Net, d: Duration) -> Vec<Seen6> {
    net.a.silent = true;
    let end = net.now + d;
    let mut seen = Vec::new();
    loop {
        net.b.stack.poll(net.now, &mut net.b.dev).unwrap();
        let _ = net.a.dev.receive(net.now, &mut |frame, _, _| {
            let eth = ethernet::Frame::new_checked(frame).unwrap();
            if eth.ethertype() == ethernet::ETHERTYPE_IPV6 {
                let ip = ipv6::Packet::new_checked(eth.payload()).unwrap();
                let upper = ipv6::upper_layer(&ip).unwrap();
                let payload = upper.payload.to_vec();
                seen.push((eth.dst(), ip.dst(), ip.hop_limit(), upper.protocol, payload));
            }
            ControlFlow::Continue(())
        });
        if net.now >= end {
            break;
        }
        net.now = (net.now + ms(10)).min(end);
    }
    net.a.silent = false;
    seen
}

/// The (record type, group) of each MLDv2 report's records (RFC 3810 §5.2).
fn mld_records(seen: &[Seen6]) -> Vec<(u8, Ipv6Addr)> {
    let mut records = Vec::new();
    for (_, dst, hops, protocol, icmp) in seen {
        if *protocol != ipv6::NEXT_ICMPV6 || icmp[0] != mld::TYPE_V2_REPORT {
            continue;
        }
        assert_eq!((*dst, *hops), (ipv6::ALL_MLDV2_ROUTERS, 1));
        let count = u16::from_be_bytes([icmp[6], icmp[7]]) as usize;
        for r in icmp[8..].chunks(20).take(count) {
            let group: [u8; 16] = r[4..20].try_into().unwrap();
            records.push((r[0], group.into()));
        }
    }
    records
}

/// IPv6 multicast for UDP sockets (IPV6_JOIN_GROUP): an MLDv2 report when
/// a group is joined and when it is left, the group's datagrams taken
/// meanwhile, sent with the socket's hop limit and looped back to ourselves.
#[test]
fn over_ipv6_a_group_is_reported_when_joined_and_left_and_its_datagrams_taken_meanwhile() {
    let mut net = Net::with_ipv6(mipfast::phy::fault::FaultConfig::latency(ms(1)), 12);
    let group: Ipv6Addr = "ff12::1234".parse().unwrap();
    let group_mac = MacAddress([0x33, 0x33, 0, 0, 0x12, 0x34]);
    let sender = net.a.stack.udp_bind(Ipv6Addr::UNSPECIFIED, 0).unwrap();
    let hb = net.b.stack.udp_bind(Ipv6Addr::UNSPECIFIED, 5000).unwrap();
    let send = |net: &mut Net, what: &[u8]| {
        let now = net.now;
        net.a
            .stack
            .udp_send(now, sender, (group, 5000), what)
            .unwrap();
        net.run_for(ms(20));
    };

    // Not joined: not ours.
    let not_ours = net.b.stack.counters().drops(DropReason::Ipv6NotForUs);
    send(&mut net, b"early");
    assert!(received(&mut net, hb).is_empty());
    let drops = net.b.stack.counters().drops(DropReason::Ipv6NotForUs);
    assert_eq!(drops, not_ours + 1);

    // Joined: reported at once, then its datagrams are B's.
    assert_eq!(net.b.stack.udp_join(net.now, hb, group), Some(Ok(())));
    let reported = mld_records(&sent_v6_by_b(&mut net, ms(20)));
    assert_eq!(reported, vec![(mld::CHANGE_TO_EXCLUDE, group)]);
    let again = net.b.stack.udp_join(net.now, hb, group);
    assert_eq!(again, Some(Err(MembershipError::AlreadyMember)));
    let v4_group = net.b.stack.udp_join(net.now, hb, GROUP);
    assert_eq!(v4_group, Some(Err(MembershipError::NotMulticast)));
    let unicast = net.b.stack.udp_join(net.now, hb, link_local(A_MAC));
    assert_eq!(unicast, Some(Err(MembershipError::NotMulticast)));
    send(&mut net, b"to the group");
    assert_eq!(received(&mut net, hb), vec![b"to the group".to_vec()]);

    // B sends to the group: with its socket's hop limit, and back to itself
    // (IPV6_MULTICAST_LOOP) unless told not to.
    net.b.stack.udp_mut().get_mut(hb).unwrap().multicast_ttl = 3;
    let now = net.now;
    net.b
        .stack
        .udp_send(now, hb, (group, 5000), b"own")
        .unwrap();
    let seen = sent_v6_by_b(&mut net, ms(20));
    let datagram: Vec<_> = seen.iter().filter(|s| s.3 == ipv6::NEXT_UDP).collect();
    assert_eq!(datagram.len(), 1);
    assert_eq!(
        (datagram[0].0, datagram[0].1, datagram[0].2),
        (group_mac, group, 3)
    );
    assert_eq!(received(&mut net, hb), vec![b"own".to_vec()]);
    net.b.stack.udp_mut().get_mut(hb).unwrap().multicast_loop = false;
    let now = net.now;
    net.b
        .stack
        .udp_send(now, hb, (group, 5000), b"own")
        .unwrap();
    net.run_for(ms(20));
    assert!(received(&mut net, hb).is_empty());

    // Left: said so, and its datagrams are not ours again.
    assert_eq!(net.b.stack.udp_leave(net.now, hb, group), Some(Ok(())));
    let reported = mld_records(&sent_v6_by_b(&mut net, ms(20)));
    assert_eq!(reported, vec![(mld::CHANGE_TO_INCLUDE, group)]);
    send(&mut net, b"late");
    assert!(received(&mut net, hb).is_empty());
    let left = net.b.stack.udp_leave(net.now, hb, group);
    assert_eq!(left, Some(Err(MembershipError::NotMember)));
}
