//! The DNS resolver and the DHCP client fed arbitrary answers that match
//! their outstanding queries: the harness copies the ID (or xid), the
//! ports, the question (or client MAC and magic cookie) from what the stack
//! sent, and the fuzzer writes the rest.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

use harness::*;
use mipfast::iface::DEFAULT_MAC;
use mipfast::service::dns::{Family, QueryId};
use mipfast::stack::Stack;
use mipfast::time::{Duration, Instant};
use mipfast::wire::{dhcp, dns, ethernet, ipv4, udp, Ipv4Addr};

/// UDP payloads the stack sent to `port`, with the source port.
fn sent_to(stack: &mut Stack, port: u16) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    stack.drain_tx(|f| {
        let Ok(eth) = ethernet::Frame::new_checked(f) else {
            return;
        };
        let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
            return;
        };
        let Ok(d) = udp::Datagram::new_checked(ip.payload(), ip.src(), ip.dst()) else {
            return;
        };
        if d.dst_port() == port {
            out.push((d.src_port(), d.payload().to_vec()));
        }
    });
    out
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut now = Instant::ZERO;
    // DNS: a static stack that knows the server's MAC.
    let mut stack = static_stack();
    introduce_peer(&mut stack, now);
    // DHCP: a client in its first DISCOVER.
    let mut client = dhcp_stack();
    client.poll_timers(now);
    let mut xid = sent_to(&mut client, dhcp::SERVER_PORT)
        .first()
        .and_then(|(_, m)| dhcp::Repr::parse(m).ok())
        .map_or(0, |m| m.xid);
    let mut lookup: Option<(QueryId, u16, Vec<u8>)> = None;
    let mut names = 0u32;
    while !input.is_empty() {
        let kind = input.u8();
        advance(&mut now, input.u8());
        let len = input.u16() as usize % 1500;
        let body = input.bytes(len);
        if kind & 1 == 0 {
            if lookup.is_none() {
                names += 1;
                // A and AAAA lookups in turn (their answers cached apart).
                let family = match names % 2 {
                    0 => Family::Ipv4,
                    _ => Family::Ipv6,
                };
                let name = format!("host{}.lab", names % 4);
                let id = stack.resolve_start_for(now, &name, family);
                let sent = sent_to(&mut stack, dns::PORT);
                lookup = sent.into_iter().next().map(|(port, q)| (id, port, q));
                if lookup.is_none() {
                    stack.resolve_finish(id); // answered from the cache
                    continue;
                }
            }
            let (id, port, query) = lookup.clone().unwrap();
            // Header and question from the query; flags, counts and records from the fuzzer.
            let mut answer = query.clone();
            answer[2] = 0x80 | (body.first().copied().unwrap_or(0) & 0x7f);
            answer[3] = body.get(1).copied().unwrap_or(0x80);
            for (i, at) in (6..12).enumerate() {
                answer[at] = body.get(2 + i).copied().unwrap_or(0) % 8;
            }
            answer.extend_from_slice(body.get(8..).unwrap_or(&[]));
            stack.process_frame(
                now,
                &udp_frame(DEFAULT_MAC, (PEER_IP, dns::PORT), (OUR_IP, port), &answer),
            );
            stack.poll_timers(now);
            if stack.resolve_result(id).is_some() {
                stack.resolve_finish(id);
                lookup = None;
            } else if let Some((p, q)) = sent_to(&mut stack, dns::PORT).into_iter().last() {
                lookup = Some((id, p, q)); // retransmitted with a new ID and port
            }
        } else {
            let mut m = vec![0u8; 240];
            m[..body.len().min(236)].copy_from_slice(&body[..body.len().min(236)]);
            m[0] = 2; // BOOTREPLY
            m[1] = 1;
            m[2] = 6;
            m[4..8].copy_from_slice(&xid.to_be_bytes());
            m[28..34].copy_from_slice(&DEFAULT_MAC.0);
            m[236..240].copy_from_slice(&[99, 130, 83, 99]);
            m.extend_from_slice(body.get(236..).unwrap_or(&[]));
            let dst = if kind & 2 != 0 {
                Ipv4Addr::BROADCAST
            } else {
                Ipv4Addr::new(10, 77, 0, 100)
            };
            client.process_frame(now, &udp_frame(DEFAULT_MAC, (PEER_IP, 67), (dst, 68), &m));
            client.poll_timers(now);
            if let Some(next) = sent_to(&mut client, dhcp::SERVER_PORT)
                .last()
                .and_then(|(_, m)| dhcp::Repr::parse(m).ok())
            {
                xid = next.xid;
            }
        }
        for s in [&mut stack, &mut client] {
            if let Some(t) = s.poll_at() {
                if t <= now {
                    s.poll_timers(now);
                }
                assert!(
                    s.poll_at().is_none_or(|t| t > now),
                    "a deadline stuck in the past"
                );
            }
            s.drain_tx(|_| {});
        }
    }
    now += Duration::from_secs(3600);
    stack.poll_timers(now);
    client.poll_timers(now);
});
