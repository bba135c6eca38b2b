//! The Multicast DNS responder between two of our stacks in simulated time:
//! probes, announcements and answers on the wire (RFC 6762 §5–§8), a name
//! another host holds given up for the next (§9), services (RFC 6763).

mod tcp_net;

use mipfast::iface::{DropReason, InterfaceConfig, Ipv4Cidr, Ipv4Config};
use mipfast::phy::Device;
use mipfast::service::dns::{DnsError, Family, Lookup};
use mipfast::service::mdns::{MdnsConfig, ServiceConfig, HOST_TTL, LEGACY_TTL};
use mipfast::socket::udp::UdpHandle;
use mipfast::stack::{Addressing, Stack, StackConfig};
use mipfast::time::Duration;
use mipfast::wire::dns::TYPE_A;
use mipfast::wire::mdns::{
    self, Data, Message, OwnData, OwnRecord, Section, Writer, GROUP, TYPE_AAAA, TYPE_NSEC,
    TYPE_PTR, TYPE_SRV, TYPE_TXT,
};
use mipfast::wire::{ethernet, ipv4, udp, Ipv4Addr};
use std::ops::ControlFlow;
use tcp_net::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(host: &str) -> MdnsConfig {
    MdnsConfig {
        host: host.into(),
        services: vec![ServiceConfig {
            instance: "Mip Dashboard".into(),
            kind: "_http._tcp".into(),
            port: 8000,
            txt: vec!["path=/".into()],
        }],
    }
}

/// A stack at `ip` that answers as `host` (from `net.now`).
fn responder(net: &Net, ip: Ipv4Addr, mac: mipfast::wire::MacAddress, host: &str) -> Stack {
    responder_with(net, (ip, mac), host, None)
}

/// As [`responder`], with IPv6 as `ipv6` says.
fn responder_with(
    net: &Net,
    (ip, mac): (Ipv4Addr, mipfast::wire::MacAddress),
    host: &str,
    ipv6: Option<mipfast::iface::Ipv6Config>,
) -> Stack {
    let cidr = Ipv4Cidr::new(ip, 24).unwrap();
    let config = StackConfig {
        interface: InterfaceConfig {
            mac,
            ..Default::default()
        },
        addressing: Addressing::Static(Ipv4Config::new(cidr, None, vec![]).unwrap()),
        tcp: Default::default(),
        udp: Default::default(),
        resolver: Default::default(),
        dns_servers: vec![],
        mdns: Some(config(host)),
        ipv6,
        seed: 5,
    };
    Stack::new(config, net.now)
}

/// An mDNS datagram B put on the wire, with what its headers said.
#[derive(Debug)]
struct Sent {
    at_ms: i64,
    dst: Ipv4Addr,
    ttl: u8,
    dst_port: u16,
    message: Message,
}

/// Runs B alone for `d` (A silent, its frames read here) and returns B's
/// mDNS datagrams.
fn sent_by_b(net: &mut Net, d: Duration) -> Vec<Sent> {
    net.a.silent = true;
    let end = net.now + d;
    let mut seen = Vec::new();
    loop {
        net.b.stack.poll(net.now, &mut net.b.dev).unwrap();
        let at_ms = net.now.total_micros() / 1000;
        let _ = net.a.dev.receive(net.now, &mut |frame, _, _| {
            let eth = ethernet::Frame::new_checked(frame).unwrap();
            if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
                return ControlFlow::Continue(());
            }
            let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
            if ip.protocol() == ipv4::PROTO_UDP {
                let u = udp::Datagram::new_checked(ip.payload(), ip.src(), ip.dst()).unwrap();
                if u.src_port() == mdns::PORT {
                    seen.push(Sent {
                        at_ms,
                        dst: ip.dst(),
                        ttl: ip.ttl(),
                        dst_port: u.dst_port(),
                        message: mdns::parse(u.payload()).unwrap(),
                    });
                }
            }
            ControlFlow::Continue(())
        });
        if net.now >= end {
            break;
        }
        net.now = (net.now + ms(5)).min(end);
    }
    net.a.silent = false;
    seen
}

fn received(net: &mut Net, h: UdpHandle) -> Vec<(u16, Message)> {
    let s = net.a.stack.udp_mut().get_mut(h).unwrap();
    // (A's own queries come back to a member: IP_MULTICAST_LOOP.)
    std::iter::from_fn(|| s.recv())
        .map(|d| (d.src.1, mdns::parse(&d.data).unwrap()))
        .filter(|(_, m)| m.response)
        .collect()
}

/// A's socket `from` sends `payload` to the group; what it hears in 20 ms.
fn ask(net: &mut Net, from: UdpHandle, payload: &[u8]) -> Vec<(u16, Message)> {
    net.a
        .stack
        .udp_send(net.now, from, (GROUP, 5353), payload)
        .unwrap();
    net.run_for(ms(20));
    received(net, from)
}

fn query(questions: &[(&str, u16, bool)], known: &[(OwnRecord, u32)]) -> Vec<u8> {
    let mut w = Writer::query();
    for &(name, qtype, qu) in questions {
        w.question(name, qtype, qu);
    }
    for (r, ttl) in known {
        w.record(Section::Answer, r, *ttl);
    }
    w.finish()
}

fn a_of(m: &Message, name: &str) -> Option<Ipv4Addr> {
    m.answers
        .iter()
        .chain(&m.additional)
        .find(|r| r.name == name && r.rtype == TYPE_A)
        .map(|r| match r.data {
            Data::A(ip) => ip,
            _ => panic!("A record with other data"),
        })
}

fn types(records: &[mdns::Record]) -> Vec<u16> {
    records.iter().map(|r| r.rtype).collect()
}

#[test]
fn a_host_probes_announces_and_answers_for_its_name_address_and_service() {
    let mut net = Net::clean(21);
    net.b.stack = responder(&net, B_IP, B_MAC, "Mip");

    // §8.1: three probes 250 ms apart after up to 250 ms, the first QU;
    // §8.3: two announcements a second apart; all to the group, TTL 255.
    let sent = sent_by_b(&mut net, ms(3000));
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert!(sent
        .iter()
        .all(|s| (s.dst, s.ttl, s.dst_port) == (GROUP, 255, 5353)));
    let (probes, announcements) = sent.split_at(3);
    assert!(probes[0].at_ms <= 250);
    for (i, p) in probes.iter().enumerate() {
        assert!(!p.message.response);
        assert_eq!(p.message.questions.len(), 2, "host and instance");
        assert_eq!(p.message.questions[0].name, "Mip.local", "as configured");
        assert_eq!(p.message.questions[0].unicast_response, i == 0);
        assert_eq!(
            a_of(
                &Message {
                    answers: p.message.authority.clone(),
                    ..p.message.clone()
                },
                "mip.local"
            ),
            Some(B_IP)
        );
        assert!(p.message.authority.iter().all(|r| !r.cache_flush));
    }
    assert_eq!(probes[1].at_ms - probes[0].at_ms, 250);
    assert_eq!(probes[2].at_ms - probes[1].at_ms, 250);
    assert_eq!(announcements[0].at_ms - probes[2].at_ms, 250);
    assert_eq!(announcements[1].at_ms - announcements[0].at_ms, 1000);
    for a in announcements {
        let m = &a.message;
        assert!(m.response && m.questions.is_empty());
        assert_eq!(a_of(m, "mip.local"), Some(B_IP));
        let host = m.answers.iter().find(|r| r.rtype == TYPE_A).unwrap();
        assert!(host.cache_flush && host.ttl == HOST_TTL);
        let mut t = types(&m.answers);
        t.sort();
        assert_eq!(
            t,
            vec![TYPE_A, TYPE_PTR, TYPE_PTR, TYPE_PTR, TYPE_TXT, TYPE_SRV]
        );
    }
    assert_eq!(net.b.stack.mdns_name().as_deref(), Some("Mip.local"));

    // A one-shot query from an ordinary port (§6.7): unicast back, its ID
    // and question, TTL at most 10, no cache-flush bits.
    let client = net.a.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 0).unwrap();
    let mut one_shot = query(&[("MIP.local", TYPE_A, false)], &[]);
    one_shot[0..2].copy_from_slice(&0x4242u16.to_be_bytes());
    let answers = ask(&mut net, client, &one_shot);
    assert_eq!(answers.len(), 1);
    let (port, m) = &answers[0];
    assert_eq!((*port, m.id, m.questions.len()), (5353, 0x4242, 1));
    assert_eq!(a_of(m, "mip.local"), Some(B_IP));
    assert!(m
        .answers
        .iter()
        .all(|r| r.ttl <= LEGACY_TTL && !r.cache_flush));

    // A querier on port 5353 in the group: answers come by multicast.
    let member = net.a.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 5353).unwrap();
    net.a
        .stack
        .udp_join(net.now, member, GROUP)
        .unwrap()
        .unwrap();
    net.run_for(ms(1100));
    received(&mut net, member);
    let reverse = "1.0.77.10.in-addr.arpa";
    let q = query(
        &[
            ("_http._tcp.local", TYPE_PTR, false),
            (reverse, TYPE_PTR, false),
            ("mip.local", TYPE_AAAA, false),
        ],
        &[],
    );
    let heard = ask(&mut net, member, &q);
    assert_eq!(heard.len(), 1, "{heard:?}");
    let m = &heard[0].1;
    assert!(m.response && m.id == 0 && m.questions.is_empty());
    let ptr = |name: &str| {
        m.answers
            .iter()
            .find(|r| r.name == name && r.rtype == TYPE_PTR)
            .map(|r| r.data.clone())
    };
    let instance = "mip dashboard._http._tcp.local";
    assert_eq!(ptr("_http._tcp.local"), Some(Data::Ptr(instance.into())));
    assert_eq!(ptr(reverse), Some(Data::Ptr("mip.local".into())));
    // No AAAA: an NSEC that lists only A (§6.1).
    let nsec = m.answers.iter().find(|r| r.rtype == TYPE_NSEC).unwrap();
    assert_eq!(nsec.name, "mip.local");
    let Data::Other(raw) = &nsec.data else {
        panic!()
    };
    assert_eq!(&raw[raw.len() - 3..], &[0, 1, 0x40]);
    // RFC 6763 §12: the SRV, TXT and address come along.
    let srv = m.additional.iter().find(|r| r.rtype == TYPE_SRV).unwrap();
    let Data::Other(raw) = &srv.data else {
        panic!()
    };
    assert_eq!(&raw[4..6], &8000u16.to_be_bytes());
    assert!(m
        .additional
        .iter()
        .any(|r| r.rtype == TYPE_TXT && r.name == instance));
    assert_eq!(a_of(m, "mip.local"), Some(B_IP));

    // §7.1: a querier that knows the answer (with half its TTL or more) is
    // not told it again; a second later with less than half, it is.
    net.run_for(ms(1000));
    let host = OwnRecord {
        name: "mip.local".into(),
        ttl: HOST_TTL,
        unique: true,
        data: OwnData::A(B_IP),
    };
    let q = query(&[("mip.local", TYPE_A, false)], &[(host.clone(), 100)]);
    assert!(ask(&mut net, member, &q).is_empty());
    let q = query(&[("mip.local", TYPE_A, false)], &[(host, 30)]);
    let heard = ask(&mut net, member, &q);
    assert_eq!(heard.len(), 1);
    assert_eq!(a_of(&heard[0].1, "mip.local"), Some(B_IP));

    // §6: not multicast again within a second; a QU question right after
    // gets its answer by unicast instead.
    let q = query(&[("mip.local", TYPE_A, false)], &[]);
    assert!(ask(&mut net, member, &q).is_empty());
    let q = query(&[("mip.local", TYPE_A, true)], &[]);
    net.a
        .stack
        .udp_send(net.now, member, (GROUP, 5353), &q)
        .unwrap();
    net.flush();
    let sent = sent_by_b(&mut net, ms(20));
    assert_eq!(sent.len(), 1);
    assert_eq!((sent[0].dst, sent[0].dst_port), (A_IP, 5353));

    // Goodbye (§10.1): every record with TTL 0.
    net.b.stack.mdns_goodbye(net.now);
    let sent = sent_by_b(&mut net, ms(20));
    assert_eq!(sent.len(), 1);
    assert!(sent[0].message.answers.iter().all(|r| r.ttl == 0));
    assert_eq!(sent[0].message.answers.len(), 6);
}

#[test]
fn a_name_another_host_holds_is_given_up_for_the_next() {
    let mut net = Net::clean(22);
    net.a.stack = responder(&net, A_IP, A_MAC, "mip");
    net.run_for(ms(3000));
    assert_eq!(net.a.stack.mdns_name().as_deref(), Some("mip.local"));

    // B comes up later with the same names: A defends them, B takes the
    // next ones and announces those.
    net.b.stack = responder(&net, B_IP, B_MAC, "mip");
    net.run_for(ms(6000));
    assert_eq!(net.a.stack.mdns_name().as_deref(), Some("mip.local"));
    assert_eq!(net.b.stack.mdns_name().as_deref(), Some("mip-2.local"));
    assert_eq!(
        net.b.stack.mdns_services(),
        vec!["Mip Dashboard (2)._http._tcp.local".to_string()]
    );
    assert_eq!(
        net.a.stack.mdns_services(),
        vec!["Mip Dashboard._http._tcp.local".to_string()]
    );
}

#[test]
fn two_hosts_probing_for_one_name_at_once_end_with_two_names() {
    let mut net = Net::clean(23);
    net.a.stack = responder(&net, A_IP, A_MAC, "mip");
    net.b.stack = responder(&net, B_IP, B_MAC, "mip");
    net.run_for(ms(8000));
    // §8.2: the records that sort later win (A's address is the higher).
    assert_eq!(net.a.stack.mdns_name().as_deref(), Some("mip.local"));
    assert_eq!(net.b.stack.mdns_name().as_deref(), Some("mip-2.local"));
}

#[test]
fn a_malformed_datagram_to_the_responder_is_counted_and_nothing_else() {
    let mut net = Net::clean(24);
    net.b.stack = responder(&net, B_IP, B_MAC, "mip");
    net.run_for(ms(3000));
    let client = net.a.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 0).unwrap();
    let good = query(&[("mip.local", TYPE_A, false)], &[]);
    for bad in [&good[..5], &good[..good.len() - 1], &[0xffu8; 40][..]] {
        net.a
            .stack
            .udp_send(net.now, client, (GROUP, 5353), bad)
            .unwrap();
    }
    net.run_for(ms(20));
    assert_eq!(net.b.stack.counters().drops(DropReason::MdnsMalformed), 3);
    assert_eq!(net.b.stack.counters().drops(DropReason::UdpNoListener), 0);
    assert!(received(&mut net, client).is_empty());
    // And the responder still answers.
    assert_eq!(ask(&mut net, client, &good).len(), 1);
}

/// Runs until A's lookup of `name` has an outcome; returns it and the time taken.
fn resolve_from_a(net: &mut Net, name: &str) -> (Lookup, Duration) {
    resolve_family_from_a(net, name, Family::Ipv4)
}

fn resolve_family_from_a(net: &mut Net, name: &str, family: Family) -> (Lookup, Duration) {
    let start = net.now;
    let id = net.a.stack.resolve_start_for(net.now, name, family);
    net.run_until(ms(20_000), |n| n.a.stack.resolve_result(id).is_some());
    let lookup = net.a.stack.resolve_result(id).cloned().unwrap();
    net.a.stack.resolve_finish(id);
    (lookup, net.now.saturating_since(start))
}

#[test]
fn a_local_name_is_asked_of_the_link_and_answered_by_its_holder() {
    let mut net = Net::clean(25);
    net.b.stack = responder(&net, B_IP, B_MAC, "mip");
    net.a.stack = responder(&net, A_IP, A_MAC, "other");
    net.run_for(ms(3000));
    // A one-shot query (RFC 6762 §5.1), in any case, answered by B.
    let (lookup, took) = resolve_from_a(&mut net, "MIP.local.");
    assert_eq!(lookup, Ok(vec![B_IP.into()]));
    assert!(took < ms(20), "{took:?}");
    // Our own name is known without asking anyone.
    let frames_out = net.a.stack.counters().frames_out;
    let (lookup, _) = resolve_from_a(&mut net, "other.local");
    assert_eq!(lookup, Ok(vec![A_IP.into()]));
    assert_eq!(net.a.stack.counters().frames_out, frames_out);
    // Nobody holds it: three attempts, then "no such name", as nss-mdns says.
    let (lookup, took) = resolve_from_a(&mut net, "nobody.local");
    assert_eq!(lookup, Err(DnsError::NotFound));
    assert!(took >= ms(7000) && took < ms(7100), "{took:?}");
}

#[test]
fn a_service_added_while_running_is_probed_for_alone_and_withdrawn_with_a_goodbye() {
    let mut net = Net::clean(26);
    net.b.stack = responder(&net, B_IP, B_MAC, "mip");
    net.run_for(ms(3000));
    // B learns A's MAC (from A's ARP request), to answer it while A is silent below.
    let client = net.a.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 0).unwrap();
    net.a
        .stack
        .udp_send(net.now, client, (B_IP, 9), b"hello")
        .unwrap();
    net.run_for(ms(20));
    let printer = ServiceConfig {
        instance: "Printer".into(),
        kind: "_ipp._tcp".into(),
        port: 631,
        txt: vec![],
    };
    net.b
        .stack
        .mdns_advertise(net.now, printer.clone())
        .unwrap();
    assert!(
        net.b.stack.mdns_advertise(net.now, printer).is_err(),
        "twice"
    );
    // Only the new instance name is probed for; the host's name is still answered meanwhile.
    let q = query(&[("mip.local", TYPE_A, false)], &[]);
    net.a
        .stack
        .udp_send(net.now, client, (GROUP, 5353), &q)
        .unwrap();
    net.flush();
    let sent = sent_by_b(&mut net, ms(3000));
    let probes: Vec<&Sent> = sent.iter().filter(|s| !s.message.response).collect();
    assert_eq!(probes.len(), 3);
    for p in &probes {
        let names: Vec<&str> = p
            .message
            .questions
            .iter()
            .map(|q| q.name.as_str())
            .collect();
        assert_eq!(names, ["Printer._ipp._tcp.local"]);
    }
    let answer = sent
        .iter()
        .find(|s| s.dst == A_IP)
        .expect("the query answered while probing");
    assert_eq!(a_of(&answer.message, "mip.local"), Some(B_IP));
    assert_eq!(
        net.b.stack.mdns_services(),
        ["Mip Dashboard._http._tcp.local", "Printer._ipp._tcp.local"]
    );
    // The types are listed (RFC 6763 §9), each once.
    net.run_for(ms(1100));
    let q = query(&[("_services._dns-sd._udp.local", TYPE_PTR, false)], &[]);
    let heard = ask(&mut net, client, &q);
    let mut kinds: Vec<Data> = heard[0].1.answers.iter().map(|r| r.data.clone()).collect();
    kinds.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(
        kinds,
        [
            Data::Ptr("_http._tcp.local".into()),
            Data::Ptr("_ipp._tcp.local".into())
        ]
    );
    // Withdrawn: a goodbye for its records alone.
    assert!(!net.b.stack.mdns_withdraw(net.now, "_ipp._tcp", "Nothing"));
    assert!(net.b.stack.mdns_withdraw(net.now, "_ipp._tcp", "printer"));
    let sent = sent_by_b(&mut net, ms(20));
    assert_eq!(sent.len(), 1);
    let gone = &sent[0].message.answers;
    assert!(gone.iter().all(|r| r.ttl == 0));
    let mut names: Vec<&str> = gone.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "_ipp._tcp.local",
            "_services._dns-sd._udp.local",
            "printer._ipp._tcp.local",
            "printer._ipp._tcp.local"
        ]
    );
    assert_eq!(
        net.b.stack.mdns_services(),
        ["Mip Dashboard._http._tcp.local"]
    );
}

/// RFC 6762 §6.2: a host with IPv6 stands for its IPv6 addresses too. Once
/// its link-local address is its own (after duplicate address detection)
/// it announces the AAAA record, answers AAAA questions, and adds the
/// other family's records to an answer of one.
#[test]
fn a_host_with_ipv6_announces_and_answers_its_aaaa_record() {
    let mut net = Net::clean(23);
    let ipv6 = Some(mipfast::iface::Ipv6Config::default());
    net.b.stack = responder_with(&net, (B_IP, B_MAC), "Mip", ipv6);
    let ours = link_local(B_MAC);
    let aaaa_of = |m: &Message| -> Vec<std::net::Ipv6Addr> {
        m.answers
            .iter()
            .chain(&m.additional)
            .filter(|r| r.rtype == TYPE_AAAA && r.name.eq_ignore_ascii_case("mip.local"))
            .map(|r| match &r.data {
                Data::Other(b) => <[u8; 16]>::try_from(b.as_slice()).unwrap().into(),
                _ => panic!("AAAA record with other data"),
            })
            .collect()
    };
    let sent = sent_by_b(&mut net, ms(5000));
    let announced: Vec<&Sent> = sent.iter().filter(|s| s.message.response).collect();
    let last = announced.last().expect("announcements");
    assert_eq!(aaaa_of(&last.message), vec![ours], "{sent:?}");
    let record = last
        .message
        .answers
        .iter()
        .find(|r| r.rtype == TYPE_AAAA)
        .unwrap();
    assert!(record.cache_flush && record.ttl == HOST_TTL);

    let client = net.a.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 0).unwrap();
    let answers = ask(
        &mut net,
        client,
        &query(&[("mip.local", TYPE_AAAA, false)], &[]),
    );
    assert_eq!(answers.len(), 1);
    let m = &answers[0].1;
    assert_eq!(types(&m.answers), vec![TYPE_AAAA]);
    assert_eq!((aaaa_of(m), a_of(m, "mip.local")), (vec![ours], Some(B_IP)));
    let answers = ask(
        &mut net,
        client,
        &query(&[("mip.local", TYPE_A, false)], &[]),
    );
    let m = &answers[0].1;
    assert_eq!(types(&m.answers), vec![TYPE_A]);
    assert_eq!(
        aaaa_of(m),
        vec![ours],
        "the other family, in the additional section"
    );
    // A resolver's one-shot AAAA lookup of the name (A's) gets the address.
    let (lookup, _) = resolve_family_from_a(&mut net, "mip.local", Family::Ipv6);
    assert_eq!(lookup, Ok(vec![ours.into()]));
}
