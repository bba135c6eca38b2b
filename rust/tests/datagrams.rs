//! UDP, DNS, ping and IPv4 fragments between two of our stacks, in
//! simulated time, over a link with seeded faults.

mod tcp_net;

use mipfast::iface::DropReason;
use mipfast::phy::fault::FaultConfig;
use mipfast::runtime::ops::{self, Op};
use mipfast::service::dns::{DnsError, Family};
use mipfast::service::ping::ProbeId;
use mipfast::socket::udp::UdpHandle;
use mipfast::stack::{Stack, StackConfig, UdpSendError};
use mipfast::time::{Duration, Instant};
use mipfast::wire::dns::{self, build};
use mipfast::wire::Ipv4Addr;
use std::net::{IpAddr, Ipv6Addr};
use tcp_net::*;

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lossy(loss: f64) -> FaultConfig {
    FaultConfig {
        loss,
        ..FaultConfig::latency(ms(1))
    }
}

/// Lets `d` of simulated time pass, idle or not.
fn pass(net: &mut Net, d: Duration) {
    let end = net.now + d;
    net.run_for(d);
    if net.now < end {
        net.now = end;
    }
}

/// A ping from A to B, so that both know each other's MAC before a test
/// sends more frames than the ARP queue holds.
fn warm_arp(net: &mut Net) {
    let id = ProbeId {
        ident: 0xffff,
        seq: 0,
    };
    net.a.stack.ping_send(net.now, B_IP, id, 0).unwrap();
    net.flush();
    assert!(net.run_until(Duration::from_secs(10), |n| n
        .a
        .stack
        .ping_rtt(id)
        .is_some()));
    net.a.stack.ping_finish(id);
}

fn recv_all(stack: &mut Stack, h: UdpHandle) -> Vec<((Ipv4Addr, u16), Vec<u8>)> {
    let s = stack.udp_mut().get_mut(h).unwrap();
    let v4 = |ip| match ip {
        std::net::IpAddr::V4(ip) => ip,
        std::net::IpAddr::V6(ip) => panic!("an IPv6 source {ip} on an IPv4 socket"),
    };
    std::iter::from_fn(|| s.recv().map(|d| ((v4(d.src.0), d.src.1), d.data))).collect()
}

/// B echoes every datagram on port 7 back to its sender.
fn echo(net: &mut Net, server: UdpHandle) {
    let now = net.now;
    for (src, data) in recv_all(&mut net.b.stack, server) {
        net.b.stack.udp_send(now, server, src, &data).unwrap();
    }
}

#[test]
fn udp_echo_small_and_fragmented_in_any_order() {
    let faults = FaultConfig {
        reorder: 0.3,
        reorder_delay: ms(3),
        duplicate: 0.05,
        ..FaultConfig::latency(ms(1))
    };
    let mut net = Net::new(faults, 5);
    warm_arp(&mut net);
    let server = net.b.stack.udp_bind(ANY, 7).unwrap();
    let client = net.a.stack.udp_bind(ANY, 0).unwrap();
    let messages: Vec<Vec<u8>> = [0usize, 1, 100, 1472, 1473, 8000, 20_000, 65_507]
        .iter()
        .map(|&n| pattern(n, n as u8))
        .collect();
    for m in &messages {
        net.a.stack.udp_send(net.now, client, (B_IP, 7), m).unwrap();
    }
    net.flush();
    let mut got = Vec::new();
    net.run_until(Duration::from_secs(2), |n| {
        echo(n, server);
        got.extend(recv_all(&mut n.a.stack, client));
        got.len() >= messages.len()
    });
    let mut bodies: Vec<Vec<u8>> = got.iter().map(|(_, d)| d.clone()).collect();
    bodies.sort_by_key(|b| b.len());
    assert_eq!(bodies, messages, "every datagram came back whole, once");
    assert!(got.iter().all(|(src, _)| *src == (B_IP, 7)));
    // Duplicated fragments arriving after their datagram was complete start
    // new ones that never complete: they are gone after the 30 s timeout.
    pass(&mut net, Duration::from_secs(31));
    for stack in [&net.a.stack, &net.b.stack] {
        assert_eq!(stack.interface().reassembly_usage(), (0, 0));
    }
    // 65,508 bytes of payload do not fit an IPv4 datagram.
    assert_eq!(
        net.a
            .stack
            .udp_send(net.now, client, (B_IP, 7), &vec![0; 65_508]),
        Err(UdpSendError::TooBig)
    );
}

#[test]
fn a_full_queue_drops_and_counts() {
    let mut net = Net::clean(1);
    warm_arp(&mut net);
    let server = net.b.stack.udp_bind(ANY, 9000).unwrap();
    let client = net.a.stack.udp_bind(ANY, 0).unwrap();
    // 300 datagrams of 1000 bytes against a 212,992-byte queue: 212 fit.
    for i in 0..300u32 {
        net.a
            .stack
            .udp_send(net.now, client, (B_IP, 9000), &[i as u8; 1000])
            .unwrap();
    }
    net.flush();
    net.run_for(ms(100));
    let s = net.b.stack.udp().get(server).unwrap();
    assert_eq!(s.queued(), 212);
    assert_eq!(s.dropped(), 88);
    assert_eq!(net.b.stack.counters().drops(DropReason::UdpQueueFull), 88);
    // The oldest are the ones kept, in order.
    let got = recv_all(&mut net.b.stack, server);
    assert!(got.iter().enumerate().all(|(i, (_, d))| d[0] == i as u8));
}

#[test]
fn port_unreachable_refuses_a_connected_socket() {
    let mut net = Net::clean(2);
    let client = net.a.stack.udp_bind(ANY, 0).unwrap();
    net.a
        .stack
        .udp_mut()
        .get_mut(client)
        .unwrap()
        .connect(Some((B_IP.into(), 9)));
    net.a
        .stack
        .udp_send(net.now, client, (B_IP, 9), b"anyone?")
        .unwrap();
    net.flush();
    net.run_for(ms(50));
    assert_eq!(net.b.stack.counters().drops(DropReason::UdpNoListener), 1);
    assert_eq!(
        net.a.stack.udp_send(net.now, client, (B_IP, 9), b"again"),
        Err(UdpSendError::Refused)
    );
    // Reported once; an unconnected socket hears nothing of it.
    assert!(net
        .a
        .stack
        .udp_send(net.now, client, (B_IP, 9), b"x")
        .is_ok());
    // Broadcast needs SO_BROADCAST.
    let bcast = Ipv4Addr::new(10, 77, 0, 255);
    assert_eq!(
        net.a.stack.udp_send(net.now, client, (bcast, 9), b"all"),
        Err(UdpSendError::BroadcastDenied)
    );
}

/// How B, playing a DNS server, answers one query.
type Script<'a> = dyn FnMut(&str, &[u8]) -> Option<Vec<u8>> + 'a;

/// Runs until A's lookup of `name` ends; B answers queries on port 53 by `script`.
fn lookup(
    net: &mut Net,
    name: &str,
    script: &mut Script<'_>,
) -> (Result<Vec<Ipv4Addr>, DnsError>, usize) {
    let (result, queries) = lookup_for(net, (name, Family::Ipv4), script);
    let v4 = |ip| match ip {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(ip) => panic!("{ip} for an A query"),
    };
    (result.map(|ips| ips.into_iter().map(v4).collect()), queries)
}

/// The same for addresses of `family`.
fn lookup_for(
    net: &mut Net,
    (name, family): (&str, Family),
    script: &mut Script<'_>,
) -> (Result<Vec<IpAddr>, DnsError>, usize) {
    let server = net.b.stack.udp_bind(ANY, 53).unwrap();
    let id = net.a.stack.resolve_start_for(net.now, name, family);
    net.flush();
    let mut queries = 0;
    net.run_until(Duration::from_secs(60), |n| {
        queries += answer_queries(n, server, script);
        n.a.stack.resolve_result(id).is_some()
    });
    let result = net
        .a
        .stack
        .resolve_result(id)
        .cloned()
        .expect("lookup ended");
    net.a.stack.resolve_finish(id);
    net.b.stack.udp_mut().close(server);
    (result, queries)
}

/// B, a DNS server on `server`, answers the queries it has by `script`;
/// returns how many it had.
fn answer_queries(n: &mut Net, server: UdpHandle, script: &mut Script<'_>) -> usize {
    let now = n.now;
    let mut queries = 0;
    for (src, q) in recv_all(&mut n.b.stack, server) {
        queries += 1;
        let as_response = {
            let mut r = q.clone();
            r[2] |= 0x80;
            r
        };
        let qname = dns::parse_response(&as_response)
            .ok()
            .and_then(|r| r.question)
            .map(|(n, _)| n)
            .unwrap_or_default();
        if let Some(answer) = script(&qname, &q) {
            n.b.stack.udp_send(now, server, src, &answer).unwrap();
        }
    }
    queries
}

fn a_record(out: &mut Vec<u8>, owner: Option<&str>, ttl: u32, ip: [u8; 4]) {
    build::record(out, owner, dns::TYPE_A, ttl, &ip);
}

/// www → web → 10.1.2.3 and 10.1.2.4; gone.test → NXDOMAIN (SOA minimum 30).
fn zone(name: &str, q: &[u8]) -> Option<Vec<u8>> {
    match name {
        "www.example.test" => {
            let mut r = build::response(q, dns::RCODE_NOERROR, 3, 0);
            build::record(
                &mut r,
                None,
                dns::TYPE_CNAME,
                300,
                &build::cname("web.example.test"),
            );
            a_record(&mut r, Some("web.example.test"), 60, [10, 1, 2, 3]);
            a_record(&mut r, Some("web.example.test"), 120, [10, 1, 2, 4]);
            Some(r)
        }
        "gone.test" => {
            let mut r = build::response(q, dns::RCODE_NXDOMAIN, 0, 1);
            let mut soa = Vec::new();
            build::name(&mut soa, "ns.test");
            build::name(&mut soa, "admin.test");
            for v in [1u32, 2, 3, 4, 30] {
                soa.extend_from_slice(&v.to_be_bytes());
            }
            build::record(&mut r, Some("test"), dns::TYPE_SOA, 3600, &soa);
            Some(r)
        }
        _ => Some(build::response(q, dns::RCODE_SERVFAIL, 0, 0)),
    }
}

#[test]
fn resolver_follows_cnames_and_caches_by_ttl() {
    let mut net = Net::clean(3);
    let want = vec![Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 1, 2, 4)];
    let (r, q) = lookup(&mut net, "WWW.example.test.", &mut zone);
    assert_eq!((r, q), (Ok(want.clone()), 1));
    // Cached: no query while the shortest TTL (60 s) runs.
    pass(&mut net, Duration::from_secs(59));
    assert_eq!(
        lookup(&mut net, "www.example.test", &mut zone),
        (Ok(want.clone()), 0)
    );
    pass(&mut net, Duration::from_secs(2));
    assert_eq!(
        lookup(&mut net, "www.example.test", &mut zone),
        (Ok(want), 1)
    );
    // NXDOMAIN, cached for the SOA minimum.
    assert_eq!(
        lookup(&mut net, "gone.test", &mut zone),
        (Err(DnsError::NotFound), 1)
    );
    assert_eq!(
        lookup(&mut net, "gone.test", &mut zone),
        (Err(DnsError::NotFound), 0)
    );
    pass(&mut net, Duration::from_secs(31));
    assert_eq!(
        lookup(&mut net, "gone.test", &mut zone),
        (Err(DnsError::NotFound), 1)
    );
    // Names that cannot be asked never leave the stack.
    assert_eq!(
        lookup(&mut net, "bad..name", &mut zone),
        (Err(DnsError::InvalidName), 0)
    );
}

#[test]
fn resolver_retransmits_under_loss() {
    for seed in 0..20 {
        let mut net = Net::new(lossy(0.15), seed);
        let (r, queries) = lookup(&mut net, "www.example.test", &mut zone);
        assert_eq!(r.map(|a| a.len()), Ok(2), "seed {seed}");
        assert!(queries >= 1);
    }
}

#[test]
fn resolver_fails_over_to_the_next_server() {
    let mut net = Net::clean(4);
    // The first server never answers (nothing at that address).
    net.a
        .stack
        .set_dns_servers(vec![Ipv4Addr::new(10, 77, 0, 99).into(), B_IP.into()]);
    let start = net.now;
    let (r, queries) = lookup(&mut net, "www.example.test", &mut zone);
    assert_eq!(r.map(|a| a.len()), Ok(2));
    assert_eq!(queries, 1);
    let waited = net.now.saturating_since(start);
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    // A server failure moves on at once, and all failing ends the lookup.
    let (r, queries) = lookup(&mut net, "unknown.test", &mut zone);
    assert_eq!(r, Err(DnsError::Unreachable));
    assert_eq!(queries, 4, "four rounds, one reachable server");
}

#[test]
fn malformed_and_spoofed_answers_are_rejected() {
    let mut net = Net::clean(6);
    let mut bad = |_: &str, q: &[u8]| -> Option<Vec<u8>> {
        // A compression pointer that points at itself.
        let mut r = build::response(q, dns::RCODE_NOERROR, 1, 0);
        let at = r.len();
        r.extend_from_slice(&[0xc0, at as u8, 0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 6, 6, 6, 6]);
        Some(r)
    };
    let (r, queries) = lookup(&mut net, "loop.test", &mut bad);
    assert_eq!(
        r,
        Err(DnsError::Unreachable),
        "never followed, never accepted"
    );
    assert_eq!(queries, 4);
    assert_eq!(net.a.stack.counters().drops(DropReason::DnsRejected), 4);
    // Truncated records, a wrong ID, a wrong question: all refused too.
    let mut kind = 0;
    let mut spoof = |_: &str, q: &[u8]| -> Option<Vec<u8>> {
        kind += 1;
        let mut r = build::response(q, dns::RCODE_NOERROR, 1, 0);
        a_record(&mut r, None, 60, [6, 6, 6, 6]);
        match kind {
            1 => r.truncate(r.len() - 3),
            2 => r[0] ^= 0xff,
            _ => r[13] = b'x',
        }
        Some(r)
    };
    let (r, _) = lookup(&mut net, "spoof.test", &mut spoof);
    assert_eq!(r, Err(DnsError::Unreachable));
    assert_eq!(net.a.stack.counters().drops(DropReason::DnsRejected), 8);
    // A CNAME loop is not followed forever either.
    let mut looping = |_: &str, q: &[u8]| -> Option<Vec<u8>> {
        let mut r = build::response(q, dns::RCODE_NOERROR, 2, 0);
        build::record(&mut r, None, dns::TYPE_CNAME, 60, &build::cname("b.test"));
        build::record(
            &mut r,
            Some("b.test"),
            dns::TYPE_CNAME,
            60,
            &build::cname("cycle.test"),
        );
        Some(r)
    };
    assert_eq!(
        lookup(&mut net, "cycle.test", &mut looping).0,
        Err(DnsError::Unreachable)
    );
}

#[test]
fn ping_measures_round_trips_and_reports_losses() {
    let mut net = Net::new(lossy(0.2), 7);
    warm_arp(&mut net);
    let ident = net.a.stack.ping_ident();
    let mut rtts = Vec::new();
    for seq in 0..50u16 {
        let id = ProbeId { ident, seq };
        net.a.stack.ping_send(net.now, B_IP, id, 56).unwrap();
        net.flush();
        net.run_until(Duration::from_secs(1), |n| n.a.stack.ping_rtt(id).is_some());
        rtts.push(net.a.stack.ping_rtt(id));
        net.a.stack.ping_finish(id);
    }
    let answered: Vec<Duration> = rtts.iter().flatten().copied().collect();
    assert!(
        answered.len() >= 20 && answered.len() < 50,
        "{} answered",
        answered.len()
    );
    assert!(
        answered.iter().all(|&d| d == ms(2)),
        "1 ms each way: {answered:?}"
    );
    // A large ping is fragmented both ways and still matched.
    let mut net = Net::clean(8);
    warm_arp(&mut net);
    let id = ProbeId { ident: 1, seq: 1 };
    net.a.stack.ping_send(net.now, B_IP, id, 20_000).unwrap();
    net.flush();
    net.run_until(Duration::from_secs(1), |n| n.a.stack.ping_rtt(id).is_some());
    assert_eq!(net.a.stack.ping_rtt(id), Some(ms(2)));
}

#[test]
fn missing_fragments_expire_and_free_memory() {
    let faults = FaultConfig {
        loss: 0.05,
        ..FaultConfig::latency(ms(1))
    };
    let mut net = Net::new(faults, 9);
    warm_arp(&mut net);
    let server = net.b.stack.udp_bind(ANY, 7).unwrap();
    let client = net.a.stack.udp_bind(ANY, 0).unwrap();
    for i in 0..10u8 {
        net.a
            .stack
            .udp_send(net.now, client, (B_IP, 7), &vec![i; 30_000])
            .unwrap();
    }
    net.flush();
    net.run_for(ms(100));
    let whole = recv_all(&mut net.b.stack, server);
    let (held, bytes) = net.b.stack.interface().reassembly_usage();
    assert!(
        whole.len() < 10 && held > 0 && bytes > 0,
        "some lost a piece"
    );
    assert_eq!(whole.len() + held, 10);
    assert!(whole
        .iter()
        .all(|(_, d)| d.len() == 30_000 && d.iter().all(|&b| b == d[0])));
    net.run_for(Duration::from_secs(31));
    assert_eq!(net.b.stack.interface().reassembly_usage(), (0, 0));
    assert_eq!(
        net.b
            .stack
            .counters()
            .drops(DropReason::Ipv4ReassemblyTimeout),
        held as u64
    );
}

/// A lookup started before the stack has an address (before the first
/// lease, or after a NAK or expiry) keeps its schedule: its queries are
/// lost and counted, it fails when its attempts run out, and the stack's
/// next deadline always lies ahead (it stayed in the past: a driver spun).
#[test]
fn a_lookup_without_an_address_times_out_instead_of_spinning() {
    let mut stack = Stack::new(StackConfig::dhcp(11), Instant::ZERO);
    stack.set_dns_servers(vec![Ipv4Addr::new(10, 77, 0, 1).into()]);
    let id = stack.resolve_start(Instant::ZERO, "nowhere.lab");
    let mut now = Instant::ZERO;
    let mut rounds = 0;
    while stack.resolve_result(id).is_none() {
        rounds += 1;
        assert!(rounds < 200, "the lookup never ends");
        now = stack.poll_at().expect("a lookup is pending").max(now);
        stack.poll_timers(now);
        stack.drain_tx(|_| {}); // DHCP discovers to nobody
        let next = stack.poll_at().unwrap();
        assert!(
            next > now,
            "deadline {next:?} not after {now:?}: a busy loop"
        );
    }
    assert_eq!(stack.resolve_result(id), Some(&Err(DnsError::Unreachable)));
    // Four attempts at 1, 2, 4 and 8 s (the default schedule).
    assert!(
        now >= Instant::from_secs(15) && now < Instant::from_secs(16),
        "{now:?}"
    );
    assert_eq!(stack.counters().drops(DropReason::NoRoute), 4);
}

#[test]
fn nothing_is_sent_to_addresses_that_stay_in_a_host() {
    // RFC 1122 §3.2.1.3: loopback and "this network" never leave a host;
    // broadcast and multicast take no TCP connection (§4.2.3.10).
    let mut net = Net::clean(2);
    net.run_for(ms(50)); // (what the stacks send as they start)
    let (out_before, in_before) = (
        net.a.stack.counters().frames_out,
        net.b.stack.counters().frames_in,
    );
    let sock = net.a.stack.udp_bind(ANY, 0).unwrap();
    let staying = [
        Ipv4Addr::new(127, 0, 0, 1),
        Ipv4Addr::new(127, 9, 9, 9),
        Ipv4Addr::new(0, 1, 2, 3),
    ];
    for dst in staying {
        assert_eq!(
            net.a.stack.udp_send(net.now, sock, (dst, 9), b"x"),
            Err(UdpSendError::NoRoute),
            "{dst}"
        );
        let id = ProbeId { ident: 7, seq: 1 };
        assert_eq!(
            net.a.stack.ping_send(net.now, dst, id, 8),
            Err(UdpSendError::NoRoute),
            "{dst}"
        );
        assert!(!net.a.stack.may_connect_to(dst), "{dst}");
    }
    let groups = [
        Ipv4Addr::new(10, 77, 0, 255),
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(224, 0, 0, 1),
        Ipv4Addr::new(239, 1, 2, 3),
    ];
    for dst in groups {
        assert!(!net.a.stack.may_connect_to(dst), "{dst}");
    }
    for dst in [B_IP, A_IP, Ipv4Addr::new(192, 0, 2, 1)] {
        assert!(net.a.stack.may_connect_to(dst), "{dst}");
    }
    net.flush();
    net.run_for(ms(50));
    assert_eq!(
        net.a.stack.counters().frames_out,
        out_before,
        "nothing left for the wire"
    );
    assert_eq!(net.b.stack.counters().frames_in, in_before);
}

/// AAAA lookups (RFC 3596): a question of type 28, AAAA records taken
/// through a CNAME, A records in an AAAA answer ignored; a name with only
/// A records has no data for IPv6, cached apart from its IPv4 answer; an
/// answer to the other question type is rejected.
#[test]
fn resolver_looks_up_ipv6_addresses() {
    let mut net = Net::clean(7);
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x80);
    let mut asked = Vec::new();
    let mut zone6 = |name: &str, q: &[u8]| {
        let question = dns::response_question(&{
            let mut r = q.to_vec();
            r[2] |= 0x80;
            r
        });
        let qtype = question.unwrap().1.unwrap().1;
        asked.push((name.to_string(), qtype));
        let mut r = build::response(q, dns::RCODE_NOERROR, 0, 0);
        match (name, qtype) {
            ("www.example.test", dns::TYPE_AAAA) => {
                r = build::response(q, dns::RCODE_NOERROR, 3, 0);
                let cname = build::cname("web.example.test");
                build::record(&mut r, None, dns::TYPE_CNAME, 300, &cname);
                let web = Some("web.example.test");
                build::record(&mut r, web, dns::TYPE_AAAA, 60, &v6.octets());
                a_record(&mut r, web, 60, [10, 1, 2, 3]);
            }
            ("www.example.test", _) => {
                r = build::response(q, dns::RCODE_NOERROR, 1, 0);
                a_record(&mut r, None, 60, [10, 1, 2, 3]);
            }
            ("wrong.test", _) => {
                // Answers the A question whatever was asked.
                let qtype_at = r.len() - 4;
                r[qtype_at..qtype_at + 2].copy_from_slice(&dns::TYPE_A.to_be_bytes());
                r[7] = 1;
                a_record(&mut r, None, 60, [10, 9, 9, 9]);
            }
            _ => {} // no records: NODATA
        }
        Some(r)
    };
    let (got, queries) = lookup_for(&mut net, ("www.example.test", Family::Ipv6), &mut zone6);
    assert_eq!((got, queries), (Ok(vec![v6.into()]), 1));
    let (got, _) = lookup_for(&mut net, ("www.example.test", Family::Ipv4), &mut zone6);
    assert_eq!(got, Ok(vec![Ipv4Addr::new(10, 1, 2, 3).into()]));
    // Both cached, each under its own family: no more queries.
    for family in [Family::Ipv6, Family::Ipv4] {
        let (_, queries) = lookup_for(&mut net, ("www.example.test", family), &mut zone6);
        assert_eq!(queries, 0);
    }
    let (got, _) = lookup_for(&mut net, ("v4only.test", Family::Ipv6), &mut zone6);
    assert_eq!(got, Err(DnsError::NoData));
    let (got, queries) = lookup_for(&mut net, ("wrong.test", Family::Ipv6), &mut zone6);
    assert_eq!(
        got,
        Err(DnsError::Unreachable),
        "after {queries} answers rejected"
    );
    assert!(asked
        .iter()
        .any(|(n, t)| n == "www.example.test" && *t == dns::TYPE_AAAA));
}

/// RFC 8305 §3: a lookup of both families whose server never answers the
/// AAAA question ends 50 ms after the A answer, with the IPv4 address, not
/// after the AAAA query's retries; one whose server answers both waits for
/// both and orders them.
#[test]
fn a_lookup_of_both_families_waits_50_ms_for_the_second() {
    let mut net = Net::clean(9);
    let server = net.b.stack.udp_bind(ANY, 53).unwrap();
    let both = [Family::Ipv6, Family::Ipv4];
    let qtype = |q: &[u8]| {
        let mut r = q.to_vec();
        r[2] |= 0x80;
        dns::response_question(&r).unwrap().1.unwrap().1
    };
    // Only A questions are answered; the AAAA ones are dropped.
    let mut answered_at = None;
    let mut a_only = |_: &str, q: &[u8]| {
        (qtype(q) == dns::TYPE_A).then(|| {
            let mut r = build::response(q, dns::RCODE_NOERROR, 1, 0);
            a_record(&mut r, None, 60, [10, 1, 2, 3]);
            r
        })
    };
    let mut op = ops::Resolve::start(&mut net.a.stack, net.now, "slow.test", &both);
    net.flush();
    let mut got = None;
    net.run_until(Duration::from_secs(30), |n| {
        if answer_queries(n, server, &mut a_only) > 0 && answered_at.is_none() {
            answered_at = Some(n.now);
        }
        got = op.attempt(&mut n.a.stack, n.now);
        got.is_some()
    });
    let answered_at = answered_at.expect("the server answered");
    assert_eq!(got, Some(Ok(vec![IpAddr::from([10, 1, 2, 3])])));
    // The A answer crosses the link (1 ms), then the delay; time moves only
    // as the stack's timers say, so it was the stack's wake-up that ended it.
    let waited = net.now.saturating_since(answered_at);
    assert!(
        waited >= ops::RESOLUTION_DELAY && waited <= ops::RESOLUTION_DELAY + ms(2),
        "{waited:?}"
    );
    // A server that answers both: both families, IPv4 last here (no IPv6 route).
    let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    let mut both_answered = |_: &str, q: &[u8]| {
        let mut r = build::response(q, dns::RCODE_NOERROR, 1, 0);
        match qtype(q) {
            dns::TYPE_A => a_record(&mut r, None, 60, [10, 1, 2, 4]),
            _ => build::record(&mut r, None, dns::TYPE_AAAA, 60, &v6.octets()),
        }
        Some(r)
    };
    let mut op = ops::Resolve::start(&mut net.a.stack, net.now, "both.test", &both);
    net.flush();
    let mut got = None;
    net.run_until(Duration::from_secs(30), |n| {
        answer_queries(n, server, &mut both_answered);
        got = op.attempt(&mut n.a.stack, n.now);
        got.is_some()
    });
    let want: Vec<IpAddr> = vec![[10, 1, 2, 4].into(), v6.into()];
    assert_eq!(got, Some(Ok(want)));
}
