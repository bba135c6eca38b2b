//! A stack's datagrams and connections to its own address: delivered to
//! itself within the flush that sends them, never put on the wire.

mod tcp_net;

use mipfast::iface::DropReason;
use mipfast::phy::fault::FaultConfig;
use mipfast::service::ping::ProbeId;
use mipfast::stack::UdpSendError;
use mipfast::time::Duration;
use mipfast::wire::Ipv4Addr;
use std::net::{IpAddr, Ipv6Addr};
use tcp_net::*;

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A net whose start-up frames are behind it; B's frames in so far.
fn quiet_net() -> (Net, u64) {
    let mut net = Net::clean(5);
    net.run_for(ms(50));
    let seen_by_b = net.b.stack.counters().frames_in;
    (net, seen_by_b)
}

/// The same over IPv6 (addresses claimed), with A's link-local address.
fn quiet_net_v6() -> (Net, u64, Ipv6Addr) {
    let mut net = Net::with_ipv6(FaultConfig::latency(ms(1)), 5);
    net.run_for(ms(50));
    let seen_by_b = net.b.stack.counters().frames_in;
    (net, seen_by_b, link_local(A_MAC))
}

#[test]
fn datagrams_and_pings_to_our_own_address_come_back_to_us() {
    let (mut net, seen_by_b) = quiet_net();
    let server = net.a.stack.udp_bind(ANY, 7000).unwrap();
    let client = net.a.stack.udp_bind(ANY, 0).unwrap();
    let big = pattern(5000, 1); // more than the MTU: fragmented and put together again
    for payload in [&b"to myself"[..], &big] {
        net.a
            .stack
            .udp_send(net.now, client, (A_IP, 7000), payload)
            .unwrap();
    }
    net.flush();
    let got: Vec<Vec<u8>> = std::iter::from_fn(|| net.a.stack.udp_mut().get_mut(server)?.recv())
        .map(|d| d.data)
        .collect();
    assert_eq!(got, vec![b"to myself".to_vec(), big]);

    let id = ProbeId { ident: 3, seq: 1 };
    net.a.stack.ping_send(net.now, A_IP, id, 56).unwrap();
    net.flush();
    assert!(
        net.a.stack.ping_rtt(id).is_some(),
        "answered within the flush"
    );

    // Loopback itself is the host's, not ours to reach.
    assert_eq!(
        net.a
            .stack
            .udp_send(net.now, client, (Ipv4Addr::new(127, 0, 0, 1), 7000), b"x"),
        Err(UdpSendError::NoRoute)
    );
    net.run_for(ms(50));
    assert_eq!(
        net.b.stack.counters().frames_in,
        seen_by_b,
        "nothing went on the wire"
    );
    assert_eq!(
        net.a.stack.counters().drops(DropReason::Ipv4MartianSource),
        0
    );
}

#[test]
fn over_ipv6_datagrams_and_pings_to_our_own_address_come_back_to_us() {
    let (mut net, seen_by_b, ours) = quiet_net_v6();
    let server = net.a.stack.udp_bind(Ipv6Addr::UNSPECIFIED, 7000).unwrap();
    let client = net.a.stack.udp_bind(Ipv6Addr::UNSPECIFIED, 0).unwrap();
    let big = pattern(5000, 1); // more than the MTU: fragmented and put together again
    for payload in [&b"to myself"[..], &big] {
        net.a
            .stack
            .udp_send(net.now, client, (ours, 7000), payload)
            .unwrap();
    }
    net.flush();
    let client_port = net.a.stack.udp().get(client).unwrap().local().1;
    let got: Vec<_> = std::iter::from_fn(|| net.a.stack.udp_mut().get_mut(server)?.recv())
        .map(|d| (d.src, d.data))
        .collect();
    let from = (IpAddr::from(ours), client_port);
    assert_eq!(got, vec![(from, b"to myself".to_vec()), (from, big)]);
    // A port nobody holds: refused, as a kernel's loopback does.
    net.a
        .stack
        .udp_mut()
        .get_mut(client)
        .unwrap()
        .connect(Some((ours.into(), 7999)));
    net.a
        .stack
        .udp_send(net.now, client, (ours, 7999), b"anyone?")
        .unwrap();
    net.flush();
    assert_eq!(
        net.a.stack.udp_send(net.now, client, (ours, 7999), b"x"),
        Err(UdpSendError::Refused)
    );

    for (seq, size) in [(1, 56), (2, 3000)] {
        let id = ProbeId { ident: 3, seq };
        net.a.stack.ping_send(net.now, ours, id, size).unwrap();
        net.flush();
        assert!(
            net.a.stack.ping_rtt(id).is_some(),
            "{size} bytes answered within the flush"
        );
    }
    net.run_for(ms(50));
    assert_eq!(
        net.b.stack.counters().frames_in,
        seen_by_b,
        "nothing went on the wire"
    );
    assert_eq!(net.a.stack.counters().drops(DropReason::Ipv6LoopedBack), 0);
}

#[test]
fn a_connection_to_our_own_address_carries_a_megabyte_both_ways() {
    let (net, seen_by_b) = quiet_net();
    carries_a_megabyte_to_itself(net, seen_by_b, A_IP.into());
}

#[test]
fn over_ipv6_a_connection_to_our_own_address_carries_a_megabyte_both_ways() {
    let (net, seen_by_b, ours) = quiet_net_v6();
    carries_a_megabyte_to_itself(net, seen_by_b, ours.into());
}

fn carries_a_megabyte_to_itself(mut net: Net, seen_by_b: u64, ours: IpAddr) {
    net.a.stack.tcp_mut().listen(7001, 4).unwrap();
    let client = net
        .a
        .stack
        .tcp_mut()
        .connect(net.now, ours, (ours, 7001), None)
        .unwrap();
    net.flush();
    let server = net
        .a
        .stack
        .tcp_mut()
        .accept(7001)
        .expect("handshake done in the flush");
    let sent = pattern(1 << 20, 7);
    let (mut to_server, mut back) = (0, Vec::new());
    let mut buf = vec![0u8; 65536];
    let done = net.run_until(Duration::from_secs(30), |n| {
        let tcp = n.a.stack.tcp_mut();
        if let Some(c) = tcp.get_mut(client) {
            if to_server < sent.len() {
                to_server += c.send(&sent[to_server..]).unwrap_or(0);
            }
        }
        // The server echoes what it reads.
        if let Some(c) = tcp.get_mut(server) {
            if let Ok(Some(k)) = c.recv(&mut buf) {
                let mut off = 0;
                while off < k {
                    match c.send(&buf[off..k]) {
                        Ok(0) | Err(_) => break,
                        Ok(m) => off += m,
                    }
                }
                assert_eq!(off, k, "the echo's send buffer has room for what it read");
            }
        }
        if let Some(c) = tcp.get_mut(client) {
            while let Ok(Some(k)) = c.recv(&mut buf) {
                if k == 0 {
                    break;
                }
                back.extend_from_slice(&buf[..k]);
            }
        }
        n.flush();
        back.len() == sent.len()
    });
    assert!(done, "{} of {} bytes came back", back.len(), sent.len());
    assert!(back == sent, "the echo came back changed");
    net.run_for(ms(50));
    assert_eq!(
        net.b.stack.counters().frames_in,
        seen_by_b,
        "nothing went on the wire"
    );
}
