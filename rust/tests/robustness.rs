//! Random and mutated frames fed to the ingress path never panic, and a valid
//! ping still works afterwards.

mod common;
use common::*;
use mipfast::iface::{DropReason, DEFAULT_MAC};
use mipfast::stack::{Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::dhcp::{MessageType, Op, Repr};
use mipfast::wire::{arp, ipv4, Ipv4Addr, MacAddress};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn templates() -> Vec<Vec<u8>> {
    let mut dhcp = Repr::new(Op::Reply, MessageType::Offer, 1, DEFAULT_MAC);
    dhcp.server_id = Some(PEER_IP);
    dhcp.yiaddr = STACK_IP;
    dhcp.dns_servers = vec![PEER_IP];
    let mut payload = vec![0u8; dhcp.buffer_len()];
    dhcp.emit(&mut payload);
    let mut with_options = ipv4_frame(
        DEFAULT_MAC,
        PEER_MAC,
        PEER_IP,
        STACK_IP,
        ipv4::PROTO_ICMP,
        &[8, 0, 0, 0, 0, 0, 0, 0],
    );
    with_options[14] = 0x4f; // claims 60 bytes of header
    vec![
        echo_request(DEFAULT_MAC, STACK_IP, 1, &[0xab; 56]),
        arp_frame(
            arp::Operation::Request,
            (PEER_MAC, PEER_IP),
            (MacAddress::ZERO, STACK_IP),
            MacAddress::BROADCAST,
        ),
        udp_frame(
            DEFAULT_MAC,
            PEER_MAC,
            (PEER_IP, 67),
            (Ipv4Addr::BROADCAST, 68),
            &payload,
        ),
        udp_frame(
            DEFAULT_MAC,
            PEER_MAC,
            (PEER_IP, 1234),
            (STACK_IP, 53),
            b"query",
        ),
        from_peer(ipv4::PROTO_TCP, &[0u8; 20]),
        with_options,
    ]
}

fn mutate(rng: &mut StdRng, template: &[u8]) -> Vec<u8> {
    let mut f = template.to_vec();
    match rng.random_range(0..5) {
        0 => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..f.len());
                f[i] = rng.random();
            }
        }
        1 => f.truncate(rng.random_range(0..f.len())),
        2 => f.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
        3 => {
            // Corrupt a length or header field, the usual source of panics.
            for i in [14, 16, 17, 14 + 20 + 4, 14 + 20 + 5, 14 + 20 + 240 + 1] {
                if i < f.len() && rng.random_bool(0.5) {
                    f[i] = rng.random();
                }
            }
        }
        _ => {
            let n = rng.random_range(0..1600);
            f = (0..n).map(|_| rng.random()).collect();
            if n >= 14 && rng.random_bool(0.5) {
                f[0..6].copy_from_slice(&DEFAULT_MAC.0);
                f[12..14].copy_from_slice(&[0x08, if rng.random_bool(0.5) { 0x00 } else { 0x06 }]);
            }
        }
    }
    f
}

fn hammer(stack: &mut Stack, seed: u64, count: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let templates = templates();
    let mut now = Instant::ZERO;
    for i in 0..count {
        let t = &templates[i % templates.len()];
        let frame = mutate(&mut rng, t);
        stack.process_frame(now, &frame);
        if i % 64 == 0 {
            now += Duration::from_millis(10);
            stack.poll_timers(now);
            drain(stack);
        }
    }
    drain(stack);
}

#[test]
fn hundred_thousand_bad_frames_then_a_good_ping() {
    let count: usize = std::env::var("MIPFAST_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut stack = static_stack(Instant::ZERO);
    hammer(&mut stack, 1, count);
    assert!(stack.counters().frames_in >= count as u64);
    assert!(stack.counters().total_drops() > 0);
    let now = Instant::from_secs(100_000);
    stack.process_frame(now, &peer_arp_request());
    drain(&mut stack);
    stack.process_frame(
        now,
        &echo_request(DEFAULT_MAC, STACK_IP, 77, b"still alive"),
    );
    let out = drain(&mut stack);
    assert!(
        out.iter().any(|f| matches!(
            decode(f),
            Out::Echo {
                reply: true,
                seq: 77,
                ..
            }
        )),
        "no echo reply after fuzzing"
    );
}

/// The next DHCP message the stack sends, running its timers up to a minute.
fn next_dhcp(stack: &mut Stack, now: &mut Instant) -> Repr {
    for _ in 0..6000 {
        for f in drain(stack) {
            if let Out::Dhcp { msg, .. } = decode(&f) {
                return msg;
            }
        }
        *now += Duration::from_millis(10);
        stack.poll_timers(*now);
    }
    panic!("the DHCP client fell silent");
}

/// A server's reply to `request`, unicast to the offered address as dnsmasq does.
fn dhcp_reply(request: &Repr, kind: MessageType, offered: Ipv4Addr) -> Vec<u8> {
    let mut r = Repr::new(Op::Reply, kind, request.xid, request.client_mac);
    r.server_id = Some(PEER_IP);
    r.yiaddr = offered;
    r.subnet_mask = Some(Ipv4Addr::new(255, 255, 255, 0));
    r.router = Some(PEER_IP);
    r.lease_time = Some(3600);
    let mut payload = vec![0u8; r.buffer_len()];
    r.emit(&mut payload);
    udp_frame(
        DEFAULT_MAC,
        PEER_MAC,
        (PEER_IP, 67),
        (offered, 68),
        &payload,
    )
}

/// 30,000 mutated frames (DHCP replies among them) leave the client able
/// to take a lease from the first valid server, and the bad ones are counted.
#[test]
fn dhcp_client_survives_bad_frames() {
    let mut stack = Stack::new(StackConfig::dhcp(9), Instant::ZERO);
    hammer(&mut stack, 2, 30_000);
    assert!(
        stack.ipv4_config().is_none(),
        "no bad frame gave an address"
    );
    let c = stack.counters();
    let dhcp_drops = c.drops(DropReason::DhcpMalformed) + c.drops(DropReason::DhcpIgnored);
    assert!(
        dhcp_drops > 100,
        "mutated DHCP replies were counted: {dhcp_drops}"
    );
    let mut now = Instant::from_secs(1000);
    let discover = next_dhcp(&mut stack, &mut now);
    assert_eq!(discover.message_type, MessageType::Discover);
    stack.process_frame(now, &dhcp_reply(&discover, MessageType::Offer, STACK_IP));
    let request = next_dhcp(&mut stack, &mut now);
    assert_eq!(
        (request.message_type, request.xid),
        (MessageType::Request, discover.xid)
    );
    stack.process_frame(now, &dhcp_reply(&request, MessageType::Ack, STACK_IP));
    assert_eq!(stack.ipv4(), Some(STACK_IP), "a lease after the storm");
}
