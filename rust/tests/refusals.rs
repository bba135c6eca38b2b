//! Like a kernel: a reset for TCP to a closed port, an ICMP port unreachable
//! for UDP nobody receives, neither for broadcasts, errors rate-limited, and
//! a time exceeded for a datagram whose fragments never all came.

mod common;
use common::*;
use mipfast::iface::DEFAULT_MAC;
use mipfast::iface::{DropReason, ICMP_ERROR_BURST};
use mipfast::stack::Stack;
use mipfast::time::{Duration, Instant};
use mipfast::wire::{checksum, ethernet, icmp, ipv4, tcp, Ipv4Addr, MacAddress};

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
    assert_eq!(s.counters().drops(DropReason::TcpChecksum), 1);
    assert_eq!(s.counters().checksum_errors(), 1);
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

#[test]
fn an_expired_datagram_draws_a_time_exceeded_quoting_fragment_zero() {
    let mut stack = known_peer(Instant::ZERO);
    let datagram = udp_from_peer(9999, &[7u8; 3000]);
    let ip = &datagram[ethernet::HEADER_LEN..];
    // Fragment zero (1480 bytes) and the last piece; the middle never comes.
    let fragment = |offset: usize, len: usize, more: bool| {
        let mut f = ip[..ipv4::HEADER_LEN].to_vec();
        f.extend_from_slice(&ip[ipv4::HEADER_LEN + offset..ipv4::HEADER_LEN + offset + len]);
        let total = (f.len() as u16).to_be_bytes();
        f[2..4].copy_from_slice(&total);
        let flags = ((offset / 8) as u16 | if more { 0x2000 } else { 0 }).to_be_bytes();
        f[6..8].copy_from_slice(&flags);
        f[10..12].fill(0);
        let c = checksum::checksum(&f[..ipv4::HEADER_LEN]);
        f[10..12].copy_from_slice(&c.to_be_bytes());
        frame(DEFAULT_MAC, PEER_MAC, ethernet::ETHERTYPE_IPV4, &f)
    };
    let first = fragment(0, 1480, true);
    let udp_len = ip.len() - ipv4::HEADER_LEN;
    stack.process_frame(Instant::ZERO, &first);
    stack.process_frame(Instant::ZERO, &fragment(2960, udp_len - 2960, false));
    assert!(drain(&mut stack).is_empty());
    let at = Instant::ZERO + Duration::from_secs(30);
    stack.poll_timers(at);
    let out = drain(&mut stack);
    assert_eq!(out.len(), 1, "one time exceeded");
    let reply = ipv4::Packet::new_checked(&out[0][ethernet::HEADER_LEN..]).unwrap();
    assert_eq!((reply.src(), reply.dst()), (STACK_IP, PEER_IP));
    let message = icmp::Packet::new_checked(reply.payload()).unwrap();
    assert_eq!(
        (message.msg_type(), message.code()),
        (
            icmp::TYPE_TIME_EXCEEDED,
            icmp::CODE_REASSEMBLY_TIME_EXCEEDED
        )
    );
    // RFC 792: the quote starts with fragment zero's header and data.
    let quoted = &reply.payload()[icmp::HEADER_LEN..];
    assert_eq!(quoted, &first[ethernet::HEADER_LEN..][..quoted.len()]);
    assert!(quoted.len() >= ipv4::HEADER_LEN + 8);
    // Without fragment zero there is nothing to quote, and nothing is sent.
    stack.process_frame(at, &fragment(1480, 1480, true));
    stack.poll_timers(at + Duration::from_secs(30));
    // (Only the ARP request that confirms the peer, whose entry aged in use.)
    let sent = drain(&mut stack);
    assert!(sent.iter().all(|f| f[12..14] == [8, 6]), "{sent:?}");
    assert_eq!(stack.counters().drops(DropReason::Ipv4ReassemblyTimeout), 2);
}

/// A connect() to an address on the link that nobody answers ARP for fails
/// with "no route to host" once resolution gives up (3 requests, 1 s apart),
/// as Linux's does, instead of retrying its SYN for minutes; a connection to
/// an address that resolves is left alone.
#[test]
fn a_connect_to_an_address_nobody_answers_arp_for_fails_as_unreachable() {
    let t0 = Instant::ZERO;
    let mut s = known_peer(t0);
    let nobody = Ipv4Addr::new(10, 77, 0, 99);
    let lost = s
        .tcp_mut()
        .connect(t0, STACK_IP, (nobody, 80), None)
        .unwrap();
    let fine = s
        .tcp_mut()
        .connect(t0, STACK_IP, (PEER_IP, 80), None)
        .unwrap();
    s.dispatch(t0);
    drain(&mut s);
    let mut now = t0;
    while now < t0 + Duration::from_secs(10) {
        now += Duration::from_millis(100);
        s.poll_timers(now);
        drain(&mut s);
        if s.tcp().get(lost).is_some_and(|c| c.error().is_some()) {
            break;
        }
    }
    let error = s.tcp().get(lost).and_then(|c| c.error());
    assert_eq!(error, Some(mipfast::socket::tcp::Error::HostUnreachable));
    assert!(
        now <= t0 + Duration::from_secs(4),
        "failed at {now:?}, when ARP gave up"
    );
    let fine = s.tcp().get(fine).unwrap();
    assert_eq!(
        fine.error(),
        None,
        "the peer that resolves is still being asked"
    );
}

#[test]
fn a_segment_from_a_loopback_or_our_own_source_is_not_answered() {
    // No other host has such a source (RFC 1122 §3.2.1.3): the segment is
    // spoofed, and dropped and counted, not answered (a reset to 127.0.0.1
    // would leave the host, one to ourselves loop back to us).
    let now = Instant::ZERO;
    let mut s = known_peer(now);
    for src in [
        Ipv4Addr::new(127, 0, 0, 1),
        STACK_IP,
        Ipv4Addr::new(0, 0, 0, 9),
    ] {
        let r = tcp::Repr {
            src_port: 40000,
            dst_port: 80,
            seq: 1000,
            ack: 0,
            flags: tcp::Flags::SYN,
            window: 1000,
            options: Default::default(),
        };
        let mut seg = vec![0u8; r.header_len()];
        r.emit(&mut seg, 0, src, STACK_IP);
        let frame = ipv4_frame(DEFAULT_MAC, PEER_MAC, src, STACK_IP, ipv4::PROTO_TCP, &seg);
        s.process_frame(now, &frame);
        assert!(drain(&mut s).is_empty(), "answered {src}");
    }
    assert_eq!(s.counters().drops(DropReason::Ipv4MartianSource), 3);
}
