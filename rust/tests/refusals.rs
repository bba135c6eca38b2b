//! Like a kernel: a reset for TCP to a closed port, an ICMP port unreachable
//! for UDP nobody receives, neither for broadcasts, and errors rate-limited.

mod common;
use common::*;
use mipfast::iface::{DropReason, ICMP_ERROR_BURST};
use mipfast::stack::Stack;
use mipfast::time::{Duration, Instant};
use mipfast::wire::{ethernet, icmp, ipv4, tcp, Ipv4Addr, MacAddress};

fn known_peer(now: Instant) -> Stack {
    let mut s = static_stack(now);
    s.process_frame(now, &peer_arp_request());
    drain(&mut s);
    s
}

fn tcp_frame(flags: tcp::Flags, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let r = tcp::Repr {
        src_port: 40000,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 1000,
        options: Default::default(),
    };
    let mut seg = vec![0u8; r.header_len() + payload.len()];
    seg[r.header_len()..].copy_from_slice(payload);
    r.emit(&mut seg, payload.len(), PEER_IP, STACK_IP);
    from_peer(ipv4::PROTO_TCP, &seg)
}

/// The one TCP segment in `out`, checked.
fn tcp_out(out: &[Vec<u8>]) -> (tcp::Flags, u32, u32, u16, u16) {
    assert_eq!(out.len(), 1);
    let eth = ethernet::Frame::new_checked(&out[0]).unwrap();
    let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(
        (ip.src(), ip.dst(), eth.dst()),
        (STACK_IP, PEER_IP, PEER_MAC)
    );
    let s =
        tcp::Segment::new_checked(ip.payload(), ip.src(), ip.dst()).expect("valid TCP checksum");
    (s.flags(), s.seq(), s.ack(), s.src_port(), s.dst_port())
}

#[test]
fn syn_to_a_closed_port_gets_rst_ack() {
    let now = Instant::ZERO;
    let mut s = known_peer(now);
    s.process_frame(now, &tcp_frame(tcp::Flags::SYN, 1000, 0, b""));
    let (flags, seq, ack, sport, dport) = tcp_out(&drain(&mut s));
    assert_eq!(
        (flags, seq, ack, sport, dport),
        (tcp::Flags::RST | tcp::Flags::ACK, 0, 1001, 80, 40000)
    );
    // A segment with ACK gets a bare RST at its acknowledgment number.
    s.process_frame(now, &tcp_frame(tcp::Flags::ACK, 5, 777, b"data"));
    let (flags, seq, ..) = tcp_out(&drain(&mut s));
    assert_eq!((flags, seq), (tcp::Flags::RST, 777));
    // A reset is never answered.
    s.process_frame(now, &tcp_frame(tcp::Flags::RST, 5, 0, b""));
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().drops(DropReason::TcpNoListener), 3);
}

#[test]
fn corrupt_tcp_is_dropped_silently() {
    let now = Instant::ZERO;
    let mut s = known_peer(now);
    let mut f = tcp_frame(tcp::Flags::SYN, 1, 0, b"");
    let last = f.len() - 1;
    f[last] ^= 0x55; // breaks the TCP checksum, not the IP one
    s.process_frame(now, &f);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.counters().drops(DropReason::TcpMalformed), 1);
}

#[test]
fn udp_to_an_unbound_port_gets_port_unreachable_quoting_it() {
    let now = Instant::ZERO;
    let mut s = known_peer(now);
    let frame = udp_from_peer(9999, b"anyone?");
    s.process_frame(now, &frame);
    let out = drain(&mut s);
    assert_eq!(out.len(), 1);
    let eth = ethernet::Frame::new_checked(&out[0]).unwrap();
    let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
    let m = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert_eq!(
        (m.msg_type(), m.code()),
        (icmp::TYPE_DEST_UNREACHABLE, icmp::CODE_PORT_UNREACHABLE)
    );
    assert_eq!(
        m.data(),
        &frame[ethernet::HEADER_LEN..],
        "the whole small datagram is quoted"
    );
    // Broadcasts are never answered.
    let bcast = udp_frame(
        MacAddress::BROADCAST,
        PEER_MAC,
        (PEER_IP, 5353),
        (Ipv4Addr::new(10, 77, 0, 255), 9999),
        b"x",
    );
    s.process_frame(now, &bcast);
    assert!(drain(&mut s).is_empty());
}

#[test]
fn icmp_errors_are_rate_limited() {
    let now = Instant::from_secs(1);
    let mut s = known_peer(now);
    let frame = udp_from_peer(9999, b"x");
    for _ in 0..200 {
        s.process_frame(now, &frame);
    }
    assert_eq!(drain(&mut s).len() as u64, ICMP_ERROR_BURST);
    // 10 ms later, 10 more tokens at 1000 per second.
    let later = now + Duration::from_millis(10);
    for _ in 0..200 {
        s.process_frame(later, &frame);
    }
    assert_eq!(drain(&mut s).len(), 10);
}
