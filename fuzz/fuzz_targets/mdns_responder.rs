//! The mDNS responder fed arbitrary messages on port 5353: as queries or
//! responses, from port 5353 or another, to the group or to our address,
//! from the link or beyond it, with time moving between them. Half keep a
//! valid header and a question for one of our names (the fuzzer writes the
//! rest), so that probing, conflicts and answers are all reached. The stack
//! must never panic, never keep a deadline in the past, and always end up
//! holding some name.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

use harness::*;
use mipfast::iface::{DropReason, Ipv4Cidr, Ipv4Config, DEFAULT_MAC};
use mipfast::service::mdns::{MdnsConfig, ServiceConfig};
use mipfast::stack::{Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::mdns::{GROUP, PORT};
use mipfast::wire::{ethernet, Ipv4Addr, MacAddress};

const NAMES: [&str; 4] = [
    "fuzz.local",
    "fuzz-2.local",
    "box._http._tcp.local",
    "2.0.77.10.in-addr.arpa",
];

fn responder() -> Stack {
    let cidr = Ipv4Cidr::new(OUR_IP, 24).unwrap();
    let mut config = StackConfig::static_ipv4(Ipv4Config::new(cidr, None, vec![]).unwrap(), 9);
    config.mdns = Some(MdnsConfig {
        host: "fuzz".into(),
        services: vec![ServiceConfig {
            instance: "box".into(),
            kind: "_http._tcp".into(),
            port: 80,
            txt: vec!["a=b".into()],
        }],
    });
    Stack::new(config, Instant::ZERO)
}

/// A message with a question for `name` of type `qtype`; `rest` follows
/// as the records its header counts.
fn with_question(flags: [u8; 2], counts: &[u8], name: &str, qtype: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![0, 0, flags[0] & 0x87, flags[1] & 0xf0, 0, 1];
    for i in 0..3 {
        m.extend_from_slice(&[0, counts.get(i).copied().unwrap_or(0) % 4]);
    }
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, qtype, 0x80 * (flags[1] & 1), 1]);
    m.extend_from_slice(rest);
    m
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut now = Instant::ZERO;
    let mut stack = responder();
    while !input.is_empty() {
        let kind = input.u8();
        advance(&mut now, input.u8());
        let len = input.u16() as usize % 1200;
        let body = input.bytes(len);
        let payload = if kind & 1 == 0 {
            let name = NAMES[(kind as usize >> 1) % NAMES.len()];
            let flags = [body.first().copied().unwrap_or(0), kind];
            let qtype = [1u8, 12, 16, 28, 33, 47, 255, 5][(kind as usize >> 3) % 8];
            with_question(
                flags,
                body.get(1..4).unwrap_or(&[]),
                name,
                qtype,
                body.get(4..).unwrap_or(&[]),
            )
        } else {
            body.to_vec()
        };
        let src_port = if kind & 0x20 == 0 {
            PORT
        } else {
            40000 + kind as u16
        };
        let src = if kind & 0x40 == 0 {
            PEER_IP
        } else {
            Ipv4Addr::new(192, 0, 2, 9)
        };
        let (dst, dst_mac) = if kind & 0x80 == 0 {
            (GROUP, MacAddress([0x01, 0x00, 0x5e, 0, 0, 0xfb]))
        } else {
            (OUR_IP, DEFAULT_MAC)
        };
        stack.process_frame(
            now,
            &udp_frame(dst_mac, (src, src_port), (dst, PORT), &payload),
        );
        if stack.poll_at().is_some_and(|t| t <= now) {
            stack.poll_timers(now);
        }
        assert!(
            stack.poll_at().is_none_or(|t| t > now),
            "a deadline stuck in the past"
        );
        stack.drain_tx(|f| {
            assert!(ethernet::Frame::new_checked(f).is_ok());
        });
    }
    let _ = stack.counters().drops(DropReason::MdnsMalformed);
    // Whatever came before, a quiet minute later the stack holds a name.
    for _ in 0..70 {
        now += Duration::from_secs(1);
        stack.poll_timers(now);
        stack.drain_tx(|_| {});
    }
    assert!(stack.mdns_name().is_some(), "no name after a quiet minute");
});
