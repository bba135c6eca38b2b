//! Every wire parser on arbitrary bytes; where a `Repr` exists, parse →
//! emit → parse must give the same `Repr` back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mipfast::wire::ipv6::{self, Ipv6Addr};
use mipfast::wire::{
    arp, dhcp, dns, ethernet, icmp, icmpv6, ipv4, mdns, mld, ndp, tcp, udp, Ipv4Addr,
};

const A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = ethernet::Frame::new_checked(data) {
        let _ = (f.dst(), f.src(), f.ethertype(), f.payload().len());
    }
    if let Ok(r) = arp::Repr::parse(data) {
        let mut buf = [0u8; arp::PACKET_LEN];
        r.emit(&mut buf);
        assert_eq!(arp::Repr::parse(&buf), Ok(r));
    }
    if let Ok(p) = ipv4::Packet::new_checked(data) {
        let _ = (p.verify_checksum(), p.is_fragment(), p.payload().len());
        let _ = ipv4::record_route(p.options());
        if let Some(route) = ipv4::record_route(p.options()) {
            let o = ipv4::HeaderOptions::record_route_with(route, B);
            assert!(o.len() <= ipv4::MAX_OPTIONS_LEN && o.len() % 4 == 0);
            assert!(ipv4::record_route(o.as_bytes()).is_some());
        }
    }
    if let Ok(p) = ipv6::Packet::new_checked(data) {
        let _ = (p.src(), p.dst(), p.traffic_class(), p.hop_limit());
        match ipv6::upper_layer(&p) {
            Ok(upper) => {
                assert!(upper.next_header_at < p.as_bytes().len());
                assert!(upper.payload.len() <= p.payload().len());
            }
            // A fragment header re-emitted reads back the same.
            Err(ipv6::HeaderProblem::Fragment { at }) => {
                if let Some(h) = ipv6::FragmentHeader::parse(&p.as_bytes()[at..]) {
                    assert!(h.offset % 8 == 0 && h.offset < 65536);
                    let mut buf = [0u8; ipv6::FRAGMENT_HEADER_LEN];
                    h.emit(&mut buf);
                    assert_eq!(ipv6::FragmentHeader::parse(&buf), Some(h));
                }
            }
            Err(_) => {}
        }
    }
    // ICMPv6 between two fixed addresses, its checksum made right so that
    // neighbor discovery and MLD are reached.
    let (v6a, v6b) = (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1), ipv6::ALL_NODES);
    if data.len() >= icmpv6::HEADER_LEN {
        let mut message = data.to_vec();
        icmpv6::fill_checksum(&mut message, v6a, v6b);
        let p = icmpv6::Packet::new_checked(&message, v6a, v6b).expect("a filled checksum checks");
        let _ = (p.echo_ident(), p.echo_seq(), p.data().len());
        if let Ok(m) = ndp::Message::parse(&p) {
            if let ndp::Message::NeighborSolicit { target, source_mac } = m {
                let again = ndp::Solicit { target, source_mac };
                let mut buf = vec![0u8; again.len()];
                again.emit(&mut buf, v6a, v6b);
                let p =
                    icmpv6::Packet::new_checked(&buf, v6a, v6b).expect("our solicitation checks");
                assert_eq!(ndp::Message::parse(&p), Ok(m));
            }
        }
        let _ = mld::Query::parse(&p);
    }
    if let Ok(p) = icmp::Packet::new_checked(data) {
        let _ = (
            p.msg_type(),
            p.code(),
            p.echo_ident(),
            p.next_hop_mtu(),
            p.data().len(),
        );
    }
    if let Ok(m) = mdns::parse(data) {
        // Every record read gives back its rdata, and a PTR's target is a name.
        for r in m.answers.iter().chain(&m.authority).chain(&m.additional) {
            let _ = r.rdata_bytes();
        }
    }
    if let Ok(d) = udp::Datagram::new_checked(data, A, B) {
        let _ = (d.src_port(), d.dst_port(), d.payload().len());
    }
    if let Ok(s) = tcp::Segment::new_checked(data, A, B) {
        let _ = (s.seq_len(), s.payload().len());
        if let Ok(options) = s.options() {
            // A Repr whose options fit a header (40 bytes) round-trips.
            if options.wire_len() <= 40 {
                let repr = tcp::Repr {
                    src_port: s.src_port(),
                    dst_port: s.dst_port(),
                    seq: s.seq(),
                    ack: s.ack(),
                    flags: s.flags(),
                    window: s.window(),
                    options,
                };
                let mut buf = vec![0u8; repr.header_len()];
                repr.emit(&mut buf, 0, A, B);
                let again = tcp::Segment::new_checked(&buf, A, B).expect("our segment parses");
                assert_eq!(again.options().expect("our options parse"), options);
                assert_eq!(
                    (again.seq(), again.ack(), again.window()),
                    (repr.seq, repr.ack, repr.window)
                );
            }
        }
    }
    if let Ok(t) = tcp::Options::parse(data) {
        let _ = t.sack_blocks();
    }
    if let Ok(m) = dhcp::Repr::parse(data) {
        let mut buf = vec![0u8; m.buffer_len()];
        m.emit(&mut buf);
        let again = dhcp::Repr::parse(&buf).expect("our DHCP message parses");
        assert_eq!(again, m);
    }
    if let Ok(r) = dns::parse_response(data) {
        let (id, question) = dns::response_question(data).expect("a parsed response has a header");
        assert_eq!((id, question), (r.id, r.question.clone()));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(name) = dns::normalize_name(text) {
            let q = dns::Query {
                id: 1,
                name: &name,
                qtype: dns::TYPE_A,
                recursive: true,
            };
            let mut buf = vec![0u8; q.buffer_len()];
            q.emit(&mut buf);
        }
    }
});
