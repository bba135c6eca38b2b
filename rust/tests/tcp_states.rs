//! The RFC 9293 state machine between two of our stacks, in simulated time:
//! every transition, resets, windows, timers, backlog, and attacks.

mod tcp_net;

use mipfast::phy::fault::FaultConfig;
use mipfast::socket::tcp::{Error, Handle, Keepalive, State, TcpConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::tcp::{Flags, Options, Repr};
use mipfast::wire::{icmp, ipv4, Ipv4Addr, MacAddress};
use tcp_net::*;

/// Records each state a connection passes through.
fn states_of(net: &mut Net, on_a: bool, h: Handle, limit: Duration, until: State) -> Vec<State> {
    let mut seen = vec![];
    net.run_until(limit, |n| {
        let stack = if on_a { &n.a.stack } else { &n.b.stack };
        let s = stack.tcp().get(h).map_or(State::Closed, |c| c.state());
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        s == until
    });
    seen
}

/// A and B connect to each other at once, A from `a_port` to B's `b_port`
/// and B back: a simultaneous open (RFC 9293 §3.5, figure 7).
fn simultaneous_open(net: &mut Net, a_port: u16, b_port: u16) -> (Handle, Handle) {
    let now = net.now;
    let ha = net
        .a
        .stack
        .tcp_mut()
        .connect(now, A_IP, (B_IP, b_port), Some(a_port))
        .unwrap();
    let hb = net
        .b
        .stack
        .tcp_mut()
        .connect(now, B_IP, (A_IP, a_port), Some(b_port))
        .unwrap();
    net.flush();
    (ha, hb)
}

fn state(net: &Net, on_a: bool, h: Handle) -> State {
    let stack = if on_a { &net.a.stack } else { &net.b.stack };
    stack.tcp().get(h).map_or(State::Closed, |c| c.state())
}

#[test]
fn active_close_passes_fin_wait_and_time_wait() {
    let mut net = Net::clean(1);
    let (ha, hb) = net.connect(80);
    net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
    net.flush();
    let mut b_eof = false;
    net.run_until(Duration::from_secs(1), |n| {
        let c = n.b.stack.tcp_mut().get_mut(hb).unwrap();
        b_eof = c.recv(&mut [0; 16]) == Ok(Some(0));
        b_eof
    });
    assert!(b_eof, "B reads end of stream after A's FIN");
    net.run_for(Duration::from_millis(10)); // B's ACK of the FIN reaches A
    assert_eq!(state(&net, true, ha), State::FinWait2);
    assert_eq!(state(&net, false, hb), State::CloseWait);
    // Half-close: B can still send to A.
    let c = net.b.stack.tcp_mut().get_mut(hb).unwrap();
    assert_eq!(c.send(b"late reply"), Ok(10));
    let mut got = vec![];
    net.run_until(Duration::from_secs(1), |n| {
        let mut buf = [0u8; 64];
        if let Ok(Some(k)) = n.a.stack.tcp_mut().get_mut(ha).unwrap().recv(&mut buf) {
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == 10
    });
    assert_eq!(got, b"late reply");
    net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
    net.flush();
    let seen_b = states_of(&mut net, false, hb, Duration::from_secs(1), State::Closed);
    assert_eq!(seen_b, vec![State::LastAck, State::Closed]);
    assert_eq!(state(&net, true, ha), State::TimeWait);
    // TIME-WAIT lasts 2·MSL (60 s by default), then the connection is gone.
    net.run_for(Duration::from_secs(59));
    assert_eq!(state(&net, true, ha), State::TimeWait);
    net.run_for(Duration::from_secs(2));
    assert_eq!(state(&net, true, ha), State::Closed);
    assert_eq!(net.a.stack.tcp().active(), 0);
}

#[test]
fn time_wait_ends_in_batches_on_a_tick_and_never_before_two_msl() {
    let mut net = Net::clean(4);
    let pairs: Vec<(Handle, Handle)> = (0..12).map(|_| net.connect(80)).collect();
    // A closes each connection first, 7 ms after the one before: each
    // enters TIME-WAIT at its own instant.
    let mut entered = vec![];
    for &(ha, hb) in &pairs {
        net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
        net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
        net.flush();
        let seen = states_of(&mut net, true, ha, Duration::from_secs(1), State::TimeWait);
        assert_eq!(seen.last(), Some(&State::TimeWait));
        entered.push(net.now);
        net.run_for(Duration::from_millis(7));
    }
    // Each lasts 2·MSL at least, and they leave together: at most two
    // wake-ups for twelve connections spread over 84 ms.
    let mut left_at = vec![None; pairs.len()];
    net.run_until(Duration::from_secs(61), |n| {
        for (i, &(ha, _)) in pairs.iter().enumerate() {
            if left_at[i].is_none() && state(n, true, ha) == State::Closed {
                left_at[i] = Some(n.now);
            }
        }
        left_at.iter().all(Option::is_some)
    });
    let two_msl = Duration::from_secs(60);
    for (i, left) in left_at.iter().enumerate() {
        let left = left.expect("TIME-WAIT ended");
        assert!(left >= entered[i] + two_msl, "connection {i} left early");
        assert!(left <= entered[i] + two_msl + Duration::from_millis(64));
    }
    let mut instants: Vec<Instant> = left_at.iter().flatten().copied().collect();
    instants.dedup();
    assert!(instants.len() <= 2, "{} separate expiries", instants.len());
}

#[test]
fn simultaneous_open_and_simultaneous_close() {
    let mut net = Net::clean(2);
    let (ha, hb) = simultaneous_open(&mut net, 6000, 5000);
    let seen = states_of(
        &mut net,
        true,
        ha,
        Duration::from_secs(5),
        State::Established,
    );
    assert_eq!(
        seen,
        vec![State::SynSent, State::SynReceived, State::Established]
    );
    net.run_for(Duration::from_millis(10));
    assert_eq!(state(&net, false, hb), State::Established);
    // Both close at the same moment: FINs cross, both pass CLOSING.
    net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
    net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
    net.flush();
    let seen = states_of(&mut net, true, ha, Duration::from_secs(5), State::TimeWait);
    assert_eq!(seen, vec![State::FinWait1, State::Closing, State::TimeWait]);
    net.run_for(Duration::from_millis(10));
    assert_eq!(state(&net, false, hb), State::TimeWait);
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let mut net = Net::clean(3);
    let h = net.open(9);
    net.run_for(Duration::from_millis(20));
    let c = net.conn_a(h);
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::Refused))
    );
}

#[test]
fn a_silent_peer_exhausts_syn_retries_then_data_retries() {
    let config = TcpConfig {
        syn_retries: 3,
        data_retries: 4,
        ..Default::default()
    };
    let mut net = Net::clean_with(4, config, config);
    // A learns B's link address first: a peer that does not answer ARP
    // either is unreachable (refusals.rs).
    net.connect(80);
    net.b.silent = true;
    let h = net.open(81);
    // The SYN retries back off 1, 2, 4, 8 s.
    net.run_for(Duration::from_secs(40));
    let c = net.conn_a(h);
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::TimedOut))
    );

    let mut net = Net::clean_with(5, config, config);
    let (ha, _) = net.connect(80);
    net.b.silent = true;
    net.a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .send(b"anyone?")
        .unwrap();
    net.flush();
    let start = net.now;
    net.run_until(Duration::from_secs(600), |n| {
        n.conn_a(ha).state() == State::Closed
    });
    let c = net.conn_a(ha);
    assert_eq!(c.error(), Some(Error::TimedOut));
    assert_eq!(
        net.a.stack.tcp_mut().get_mut(ha).unwrap().send(b"x"),
        Err(Error::TimedOut)
    );
    // 200 ms doubling over five timeouts: about 6 s, well under a minute.
    let took = net.now.saturating_since(start);
    assert!(
        took > Duration::from_secs(3) && took < Duration::from_secs(60),
        "{took:?}"
    );
}

/// A clean 1 ms link where B's receive buffer is only 8 KiB, so that its
/// window closes as soon as it stops reading.
fn small_window_net(seed: u64) -> Net {
    let small = TcpConfig {
        rx_buffer: 8192,
        ..Default::default()
    };
    let latency = FaultConfig::latency(Duration::from_millis(1));
    Net::with_configs(latency, seed, TcpConfig::default(), small)
}

#[test]
fn zero_window_is_probed_until_it_opens() {
    let mut net = small_window_net(6);
    let (ha, hb) = net.connect(80);
    let data = pattern(100_000, 9);
    let sent = net
        .a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .send(&data)
        .unwrap();
    assert_eq!(sent, data.len());
    net.flush();
    // B reads nothing: its window closes and A stops at 8 KiB.
    net.run_for(Duration::from_secs(30));
    assert_eq!(net.conn_a(ha).send_window(), 0);
    assert_eq!(net.conn_b(hb).recv_available(), 8192);
    let frames_before = net.b.stack.counters().frames_in;
    net.run_for(Duration::from_secs(30));
    let probes = net.b.stack.counters().frames_in - frames_before;
    assert!(
        (2..=40).contains(&probes),
        "A probes the zero window: {probes} segments in 30 s"
    );
    assert_eq!(
        net.conn_a(ha).state(),
        State::Established,
        "answered probes keep it open"
    );
    // B reads: the window update reopens the flow and everything arrives.
    let mut got = vec![];
    net.run_until(Duration::from_secs(60), |n| {
        let mut buf = [0u8; 4096];
        while let Ok(Some(k)) = n.b.stack.tcp_mut().get_mut(hb).unwrap().recv(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == data.len()
    });
    assert_eq!(got, data);
}

/// While B's window is closed and A probes it, A's ACKs for B's own data
/// must stay acceptable to B (sequence number inside B's window, RFC 9293
/// §3.10.7.4), or B never learns they arrived and both sides stall.
#[test]
fn acks_stay_acceptable_while_probing_a_zero_window() {
    let mut net = small_window_net(8);
    let (ha, hb) = net.connect(80);
    let to_b = pattern(100_000, 3);
    let to_a = pattern(300_000, 4);
    net.a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .send(&to_b)
        .unwrap();
    net.flush();
    // B never reads; its window closes and A keeps probing it.
    net.run_for(Duration::from_secs(5));
    assert_eq!(net.conn_a(ha).send_window(), 0);
    // Meanwhile B sends to A, which reads everything: A's ACKs must reach B.
    let mut sent = 0;
    let mut got = vec![];
    let done = net.run_until(Duration::from_secs(120), |n| {
        if sent < to_a.len() {
            let conn = n.b.stack.tcp_mut().get_mut(hb).unwrap();
            sent += conn.send(&to_a[sent..]).unwrap_or(0);
        }
        let mut buf = [0u8; 4096];
        while let Ok(Some(k)) = n.a.stack.tcp_mut().get_mut(ha).unwrap().recv(&mut buf) {
            if k == 0 {
                break;
            }
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == to_a.len() && n.conn_b(hb).send_next() == n.conn_b(hb).send_unacked()
    });
    assert!(
        done,
        "B's data is acknowledged: {}",
        net.conn_b(hb).summary()
    );
    assert_eq!(got, to_a);
}

#[test]
fn keepalive_keeps_a_live_peer_and_drops_a_dead_one() {
    let keep = TcpConfig {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            probes: 3,
        }),
        ..Default::default()
    };
    let mut net = Net::clean_with(7, keep, TcpConfig::default());
    let (ha, _) = net.connect(80);
    let before = net.b.stack.counters().frames_in;
    net.run_for(Duration::from_secs(100));
    let probes = net.b.stack.counters().frames_in - before;
    assert!(
        (8..=12).contains(&probes),
        "one probe per idle period: {probes}"
    );
    assert_eq!(net.conn_a(ha).state(), State::Established);
    net.b.silent = true;
    net.run_for(Duration::from_secs(30));
    let c = net.conn_a(ha);
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::TimedOut))
    );
}

#[test]
fn icmp_port_unreachable_refuses_a_connect_and_spares_an_established_connection() {
    let mut net = Net::clean(12);
    let (established, _) = net.connect(80);
    // B stops answering; A's next SYN draws a port unreachable instead.
    net.b.silent = true;
    let h = net.open(81);
    assert_eq!(net.conn_a(h).state(), State::SynSent);
    let a_port = net.conn_a(h).local().1;
    // The quote: the SYN's IPv4 header and the first 8 bytes of its TCP header.
    let quote_for = |port: u16, dst_port: u16| {
        let mut quote = vec![0u8; ipv4::HEADER_LEN + 8];
        ipv4::Repr {
            src: A_IP,
            dst: B_IP,
            protocol: ipv4::PROTO_TCP,
            payload_len: 20,
            ttl: 64,
            ident: 7,
            dont_fragment: false,
            options: ipv4::HeaderOptions::NONE,
        }
        .emit(&mut quote);
        quote[20..22].copy_from_slice(&port.to_be_bytes());
        quote[22..24].copy_from_slice(&dst_port.to_be_bytes());
        quote
    };
    let unreachable = |quote: &[u8]| {
        let m = icmp::ErrorMessage {
            msg_type: icmp::TYPE_DEST_UNREACHABLE,
            code: icmp::CODE_PORT_UNREACHABLE,
            next_hop_mtu: 0,
            original: quote,
        };
        let mut buf = vec![0u8; m.len()];
        m.emit(&mut buf);
        buf
    };
    // One quoting another port changes nothing.
    net.inject_ip(
        false,
        ipv4::PROTO_ICMP,
        &unreachable(&quote_for(a_port, 82)),
    );
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.conn_a(h).state(), State::SynSent);
    net.inject_ip(
        false,
        ipv4::PROTO_ICMP,
        &unreachable(&quote_for(a_port, 81)),
    );
    net.run_for(Duration::from_millis(5));
    let c = net.conn_a(h);
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::Refused))
    );
    // RFC 1122 §4.2.3.9: on a synchronized connection it is only advice.
    let port = net.conn_a(established).local().1;
    net.inject_ip(false, ipv4::PROTO_ICMP, &unreachable(&quote_for(port, 80)));
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.conn_a(established).state(), State::Established);
}

#[test]
fn a_reset_in_syn_received_frees_the_backlog_slot() {
    let mut net = Net::clean(13);
    net.b.stack.tcp_mut().listen(80, 1).unwrap();
    // A SYN from a port A's stack knows nothing of: B answers SYN-ACK, and
    // A's stack answers that with a reset (RFC 9293 §3.10.7.1).
    let syn = Repr {
        src_port: 40000,
        dst_port: 80,
        seq: 1000,
        ack: 0,
        flags: Flags::SYN,
        window: 65535,
        options: Options::default(),
    };
    let mut tcp = vec![0u8; syn.header_len()];
    syn.emit(&mut tcp, 0, A_IP, B_IP);
    net.inject_ip(true, ipv4::PROTO_TCP, &tcp);
    net.run_for(Duration::from_millis(1));
    assert_eq!(net.b.stack.tcp().listener(80).unwrap().embryonic, 1);
    net.run_for(Duration::from_millis(20));
    // RFC 9293 §3.10.7.4: back to LISTEN, the user is not told.
    let listener = net.b.stack.tcp().listener(80).unwrap();
    assert_eq!((listener.embryonic, listener.ready.len()), (0, 0));
    assert_eq!(net.b.stack.tcp().active(), 0);
    assert!(net.b.stack.tcp_mut().accept(80).is_none());
    // The one backlog slot is free again: a real client gets in.
    let (ha, hb) = net.connect(80);
    assert_eq!(net.conn_a(ha).state(), State::Established);
    assert_eq!(net.conn_b(hb).state(), State::Established);
}

#[test]
fn resets_in_window_draw_a_challenge_ack_and_only_an_exact_one_resets() {
    let mut net = Net::clean(8);
    let (ha, hb) = net.connect(80);
    // Learn B's next sequence number from a data segment A receives.
    net.b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .send(b"hi")
        .unwrap();
    net.flush();
    net.run_for(Duration::from_millis(10));
    let mut buf = [0u8; 8];
    assert_eq!(
        net.a.stack.tcp_mut().get_mut(ha).unwrap().recv(&mut buf),
        Ok(Some(2))
    );
    let a_port = net.conn_a(ha).local().1;
    // B's next sequence number is what A expects (its RCV.NXT).
    let b_next = net.conn_b(hb).send_next().0;
    let rst = |seq: u32| Repr {
        src_port: 80,
        dst_port: a_port,
        seq,
        ack: 0,
        flags: Flags::RST,
        window: 0,
        options: Options::default(),
    };
    let a_frames = net.a.stack.counters().frames_out;
    // In the window but not exact (RFC 5961 §3.2): a challenge ACK, no reset.
    net.inject_to_a(rst(b_next.wrapping_add(1000)));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.conn_a(ha).state(), State::Established);
    assert_eq!(
        net.a.stack.counters().frames_out - a_frames,
        1,
        "one challenge ACK"
    );
    // Out of the window entirely: ignored (no reset, an ACK at most).
    net.inject_to_a(rst(b_next.wrapping_add(1 << 30)));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.conn_a(ha).state(), State::Established);
    // A SYN on an established connection: a challenge ACK, no reset (RFC 5961 §4).
    net.run_for(Duration::from_millis(200));
    net.inject_to_a(Repr {
        flags: Flags::SYN,
        ..rst(b_next.wrapping_add(5))
    });
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.conn_a(ha).state(), State::Established);
    // The exact sequence number resets it.
    net.inject_to_a(rst(b_next));
    net.run_for(Duration::from_millis(10));
    let c = net.conn_a(ha);
    assert_eq!((c.state(), c.error()), (State::Closed, Some(Error::Reset)));
    let mut buf = [0u8; 8];
    let c = net.a.stack.tcp_mut().get_mut(ha).unwrap();
    assert_eq!(c.recv(&mut buf), Err(Error::Reset));
}

#[test]
fn without_cookies_a_full_backlog_drops_syns_until_accept_makes_room() {
    let no_cookies = TcpConfig {
        syn_cookies: false,
        ..Default::default()
    };
    let mut net = Net::clean_with(9, TcpConfig::default(), no_cookies);
    net.b.stack.tcp_mut().listen(80, 2).unwrap();
    let now = net.now;
    let handles: Vec<Handle> = (0..5)
        .map(|_| {
            net.a
                .stack
                .tcp_mut()
                .connect(now, A_IP, (B_IP, 80), None)
                .unwrap()
        })
        .collect();
    net.flush();
    net.run_for(Duration::from_millis(500));
    let established = |net: &Net| {
        handles
            .iter()
            .filter(|&&h| net.conn_a(h).state() == State::Established)
            .count()
    };
    assert_eq!(
        established(&net),
        2,
        "backlog 2: two handshakes, the rest wait"
    );
    assert!(net.b.stack.tcp().listener(80).unwrap().overflows >= 3);
    assert!(
        net.b
            .stack
            .counters()
            .drops(mipfast::iface::DropReason::TcpListenOverflow)
            >= 3
    );
    // Accepting makes room; the retried SYNs (after 1 s) get in.
    let mut accepted = 0;
    net.run_until(Duration::from_secs(30), |n| {
        while n.b.stack.tcp_mut().accept(80).is_some() {
            accepted += 1;
        }
        accepted == 5
    });
    assert_eq!(accepted, 5);
    assert_eq!(established(&net), 5);
}

/// A SYN to B's port 80 from an address nobody answers for, as in a flood.
fn spoofed_syn(net: &mut Net, src_port: u16) {
    let src = Ipv4Addr::new(10, 77, 0, 99);
    let syn = Repr {
        src_port,
        dst_port: 80,
        seq: 7_000_000 + src_port as u32,
        ack: 0,
        flags: Flags::SYN,
        window: 64240,
        options: Options {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 0)),
            ..Default::default()
        },
    };
    let mut tcp = vec![0u8; syn.header_len()];
    syn.emit(&mut tcp, 0, src, B_IP);
    let spoofer = (src, MacAddress([2, 0, 0, 0, 0, 99]));
    net.inject_from(true, spoofer, (B_IP, B_MAC), ipv4::PROTO_TCP, &tcp);
}

#[test]
fn a_syn_flood_is_answered_with_cookies_and_a_client_still_gets_in() {
    let mut net = Net::clean(14);
    net.b.stack.tcp_mut().listen(80, 4).unwrap();
    for port in 1000..1200 {
        spoofed_syn(&mut net, port);
    }
    net.run_for(Duration::from_millis(5));
    let listener = net.b.stack.tcp().listener(80).unwrap();
    assert_eq!((listener.embryonic, listener.cookies_sent), (4, 196));
    assert_eq!(listener.overflows, 0);
    assert_eq!(net.b.stack.tcp().len(), 4, "cookies keep no state");
    // A real client, whose SYN also finds the handshake queue full.
    let (ha, hb) = net.connect(80);
    assert_eq!(net.b.stack.tcp().listener(80).unwrap().cookies_sent, 197);
    assert_eq!(net.b.stack.tcp().cookies(), (197, 1));
    let (a, b) = (net.conn_a(ha), net.conn_b(hb));
    assert_eq!(
        (a.state(), b.state()),
        (State::Established, State::Established)
    );
    // Its options survived in the cookie and the echoed timestamp.
    assert_eq!((b.mss(), a.mss()), (1448, 1448));
    assert_eq!(b.window_shifts(), (7, 7), "what 4 MiB windows need");
    assert!(b.sack_enabled() && b.timestamps_enabled() && a.sack_enabled());
    // And it carries data both ways at full windows.
    let mut ab = Transfer::new(pattern(2 << 20, 1));
    let mut ba = Transfer::new(pattern(2 << 20, 2));
    let done = net.run_until(Duration::from_secs(60), |n| {
        ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        ba.step(&mut n.b.stack, hb, &mut n.a.stack, ha);
        ab.done() && ba.done()
    });
    assert!(done && ab.hash == Fnv::of(&ab.data) && ba.hash == Fnv::of(&ba.data));
    assert!(
        net.now < Instant::ZERO + Duration::from_secs(2),
        "{:?}",
        net.now
    );
}

#[test]
fn an_ack_without_a_valid_cookie_builds_nothing() {
    let mut net = Net::clean(15);
    net.b.stack.tcp_mut().listen(80, 1).unwrap();
    spoofed_syn(&mut net, 1000);
    spoofed_syn(&mut net, 1001); // a cookie: the listener now checks ACKs
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.b.stack.tcp().listener(80).unwrap().cookies_sent, 1);
    let ack = |seq: u32, ack: u32| Repr {
        src_port: 80,
        dst_port: 45000,
        seq,
        ack,
        flags: Flags::ACK,
        window: 1000,
        options: Options::default(),
    };
    // Guesses, sent as A (A's stack answers B's resets with nothing).
    for guess in 0..50u32 {
        let r = ack(5000, guess.wrapping_mul(0x9e37_79b9));
        let mut tcp = vec![0u8; r.header_len()];
        Repr {
            src_port: 45000,
            dst_port: 80,
            ..r
        }
        .emit(&mut tcp, 0, A_IP, B_IP);
        net.inject_ip(true, ipv4::PROTO_TCP, &tcp);
    }
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.b.stack.tcp().len(), 1, "only the one real handshake");
    assert_eq!(net.b.stack.tcp().cookies(), (1, 0));
    // Each guess is dropped and counted: while cookies are out, an ACK
    // without one may be a real peer's later segment, and a reset would
    // kill its connection.
    assert_eq!(
        net.b
            .stack
            .counters()
            .drops(mipfast::iface::DropReason::TcpBadCookie),
        50
    );
    // Once no cookie has gone out for 3 × 64 s, an ACK to the listener is
    // reset again (RFC 9293 §3.10.7.2).
    net.run_for(Duration::from_secs(200));
    net.now = net.now.max(Instant::ZERO + Duration::from_secs(200)); // idle time passes too
    let before = net
        .b
        .stack
        .counters()
        .drops(mipfast::iface::DropReason::TcpNoListener);
    let mut tcp = vec![0u8; 20];
    Repr {
        src_port: 45001,
        dst_port: 80,
        ..ack(5000, 77)
    }
    .emit(&mut tcp, 0, A_IP, B_IP);
    net.inject_ip(true, ipv4::PROTO_TCP, &tcp);
    net.run_for(Duration::from_millis(5));
    assert_eq!(
        net.b
            .stack
            .counters()
            .drops(mipfast::iface::DropReason::TcpNoListener),
        before + 1
    );
    assert!(net.b.stack.tcp_mut().accept(80).is_none());
}

/// A connects to B's port 80 again, from `port`, and sends its SYN.
fn connect_again_from(net: &mut Net, port: u16) -> Handle {
    let now = net.now;
    let h = net
        .a
        .stack
        .tcp_mut()
        .connect(now, A_IP, (B_IP, 80), Some(port))
        .unwrap();
    net.flush();
    h
}

#[test]
fn time_wait_yields_to_a_new_syn_from_the_same_port() {
    // B holding its handle (a whole connection in TIME-WAIT), then letting go
    // of it (TIME-WAIT kept as a record).
    for let_go in [false, true] {
        let mut net = Net::clean(10);
        let (ha, hb) = net.connect(80);
        let a_port = net.conn_a(ha).local().1;
        // B closes first this time: B ends in TIME-WAIT.
        net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
        net.flush();
        net.run_for(Duration::from_millis(20));
        net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
        net.flush();
        net.run_for(Duration::from_millis(20));
        assert_eq!(state(&net, false, hb), State::TimeWait);
        if let_go {
            net.b.stack.tcp_mut().release(hb, false);
            net.flush();
            assert_eq!(net.b.stack.tcp().time_wait_records().count(), 1);
        }
        // A new connection from the same port (RFC 6191): the new ISN is larger,
        // TIME-WAIT gives way, the handshake completes.
        let h2 = connect_again_from(&mut net, a_port);
        let seen = states_of(
            &mut net,
            true,
            h2,
            Duration::from_secs(5),
            State::Established,
        );
        assert_eq!(seen.last(), Some(&State::Established));
        net.run_for(Duration::from_millis(10)); // A's ACK completes B's side
        let h = net
            .b
            .stack
            .tcp_mut()
            .accept(80)
            .expect("the new incarnation is accepted");
        assert_eq!(net.conn_b(h).remote(), (A_IP.into(), a_port));
        assert_eq!(net.b.stack.tcp().time_wait_records().count(), 0);
    }
}

/// RFC 5961 §3.2 for a connection kept as a TIME-WAIT record, as for any:
/// a reset whose sequence number is in the window but not the next one
/// expected gets a challenge ACK and changes nothing; the exact one ends
/// TIME-WAIT at once (as Linux's does, `tcp_rfc1337` at its default 0).
#[test]
fn a_time_wait_record_takes_only_an_exact_reset() {
    let mut net = Net::clean(13);
    let ha = net.server_closes_first(80);
    let a_port = net.conn_a(ha).local().1;
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 1);
    // What B expects next. A, closed, would answer B's challenge ACK with that
    // exact reset itself: it hears nothing from now on.
    let next = net.conn_a(ha).send_next().0;
    net.a.silent = true;
    let frames_out = |net: &Net| net.b.stack.counters().frames_out;
    let reset = |net: &mut Net, seq: u32| {
        let mut tcp = vec![0u8; 20];
        Repr {
            src_port: a_port,
            dst_port: 80,
            seq,
            ack: 0,
            flags: Flags::RST,
            window: 0,
            options: Options::default(),
        }
        .emit(&mut tcp, 0, A_IP, B_IP);
        net.inject_ip(true, ipv4::PROTO_TCP, &tcp);
        net.run_for(Duration::from_millis(5));
    };
    let before = frames_out(&net);
    reset(&mut net, next.wrapping_add(100));
    assert_eq!(frames_out(&net), before + 1, "a challenge ACK");
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 1);
    reset(&mut net, next);
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 0);
    assert_eq!(net.b.stack.tcp().len(), 0);
}

/// A client that opens and closes connections to one server faster than
/// TIME-WAIT ends fills the ephemeral range with TIME-WAIT tuples. A connect
/// then takes over the one that has waited longest (the cursor's), and the
/// next connect the next one, with a handshake the server accepts.
#[test]
fn with_every_ephemeral_port_in_time_wait_a_connect_takes_over_the_longest_waiting() {
    // A holding its handles (whole connections in TIME-WAIT), then letting
    // go of them (TIME-WAIT kept as records).
    for let_go in [false, true] {
        const RANGE: usize = 16_384; // 49152-65535, RFC 6056 §2.1
        let mut net = Net::clean(12);
        net.b.stack.tcp_mut().listen(80, 2 * RANGE).unwrap();
        // In batches: a burst larger than the link's queue would wait for retransmissions.
        let (mut ha, mut hb) = (Vec::new(), Vec::new());
        while ha.len() < RANGE {
            let now = net.now;
            for _ in 0..32 {
                let h = net.a.stack.tcp_mut().connect(now, A_IP, (B_IP, 80), None);
                ha.push(h.unwrap());
            }
            net.flush();
            let all_accepted = net.run_until(Duration::from_secs(5), |n| {
                while let Some(h) = n.b.stack.tcp_mut().accept(80) {
                    hb.push(h);
                }
                hb.len() == ha.len()
            });
            assert!(all_accepted, "{} of {} accepted", hb.len(), ha.len());
        }
        // A closes first, so that A's side of each tuple ends in TIME-WAIT; then B.
        for (a, b) in ha.chunks(32).zip(hb.chunks(32)) {
            for (on_a, handles) in [(true, a), (false, b)] {
                let node = if on_a { &mut net.a } else { &mut net.b };
                for &h in handles {
                    node.stack.tcp_mut().get_mut(h).unwrap().shutdown_write();
                }
                net.flush();
                net.run_for(Duration::from_millis(5));
            }
        }
        assert!(ha.iter().all(|&h| state(&net, true, h) == State::TimeWait));
        let oldest_first: Vec<u16> = ha.iter().map(|&h| net.conn_a(h).local().1).collect();
        if let_go {
            for &h in &ha {
                net.a.stack.tcp_mut().release(h, false);
            }
            net.flush();
            let a = net.a.stack.tcp();
            assert_eq!(
                (a.iter().count(), a.time_wait_records().count()),
                (0, RANGE)
            );
        }
        let now = net.now;
        let taken: Vec<u16> = (0..3)
            .map(|_| {
                let h = net
                    .a
                    .stack
                    .tcp_mut()
                    .connect(now, A_IP, (B_IP, 80), None)
                    .expect("a TIME-WAIT port is taken over");
                net.conn_a(h).local().1
            })
            .collect();
        assert_eq!(taken, oldest_first[..3]);
        if let_go {
            assert_eq!(net.a.stack.tcp().time_wait_records().count(), RANGE - 3);
        }
        net.flush();
        let mut again = 0;
        let accepted = net.run_until(Duration::from_secs(5), |n| {
            while n.b.stack.tcp_mut().accept(80).is_some() {
                again += 1;
            }
            again == 3
        });
        assert!(accepted, "{again} of the 3 new incarnations accepted");
    }
}

#[test]
fn nagle_holds_small_writes_until_acked_unless_nodelay() {
    for nodelay in [false, true] {
        let mut net = Net::clean(11);
        let (ha, _) = net.connect(80);
        let c = net.a.stack.tcp_mut().get_mut(ha).unwrap();
        c.set_nodelay(nodelay);
        let before = net.a.stack.counters().frames_out;
        for _ in 0..5 {
            net.a
                .stack
                .tcp_mut()
                .get_mut(ha)
                .unwrap()
                .send(b"tiny")
                .unwrap();
            net.flush();
        }
        let sent = net.a.stack.counters().frames_out - before;
        assert_eq!(sent, if nodelay { 5 } else { 1 }, "nodelay={nodelay}");
    }
}

#[test]
fn random_segments_to_a_listener_sending_cookies_break_nothing() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let mut net = Net::clean(16);
    net.b.stack.tcp_mut().listen(80, 1).unwrap();
    spoofed_syn(&mut net, 1000);
    spoofed_syn(&mut net, 1001); // a cookie goes out: ACKs are checked for one
    net.run_for(Duration::from_millis(5));
    let mut rng = StdRng::seed_from_u64(16);
    let flag_bits = [Flags::ACK, Flags::SYN, Flags::FIN, Flags::RST, Flags::PSH];
    for round in 0..200 {
        for _ in 0..100 {
            let mut flags = Flags(0);
            for f in flag_bits {
                if rng.random_bool(0.4) {
                    flags = flags | f;
                }
            }
            let options = Options {
                mss: rng.random_bool(0.5).then(|| rng.random()),
                window_scale: rng.random_bool(0.5).then(|| rng.random_range(0..20)),
                sack_permitted: rng.random_bool(0.5),
                timestamps: rng.random_bool(0.5).then(|| (rng.random(), rng.random())),
                ..Default::default()
            };
            let repr = Repr {
                src_port: rng.random_range(1024..1100),
                dst_port: if rng.random_bool(0.9) {
                    80
                } else {
                    rng.random()
                },
                seq: rng.random(),
                ack: rng.random(),
                flags,
                window: rng.random(),
                options,
            };
            let payload: Vec<u8> = (0..rng.random_range(0..200))
                .map(|_| rng.random())
                .collect();
            let mut tcp = vec![0u8; repr.header_len() + payload.len()];
            tcp[repr.header_len()..].copy_from_slice(&payload);
            repr.emit(&mut tcp, payload.len(), A_IP, B_IP);
            net.inject_ip(true, ipv4::PROTO_TCP, &tcp);
        }
        net.run_for(Duration::from_millis(if round % 50 == 0 {
            2000
        } else {
            2
        }));
    }
    let seen = net.b.stack.counters().frames_in;
    assert!(seen >= 20_000, "{seen} frames reached B");
    // They went down the cookie paths: SYNs got cookies, bare ACKs were checked.
    let bad = net
        .b
        .stack
        .counters()
        .drops(mipfast::iface::DropReason::TcpBadCookie);
    assert!(net.b.stack.tcp().cookies().0 > 100 && bad > 100, "{bad}");
    // The listener still takes a real client, who moves data.
    let (ha, hb) = net.connect(80);
    let mut ab = Transfer::new(pattern(100_000, 3));
    let done = net.run_until(Duration::from_secs(30), |n| {
        ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        ab.done()
    });
    assert!(done && ab.hash == Fnv::of(&ab.data));
    let listener = net.b.stack.tcp().listener(80).unwrap();
    assert!(listener.embryonic <= listener.backlog);
}

/// Simultaneous open, then `shutdown(SHUT_WR)` while in SYN-RECEIVED: the
/// FIN waits for the ACK of our SYN (RFC 9293 §3.10.4), then goes; our
/// SYN-ACK still goes out first. (Taking the FIN's octet off an ACK of the
/// SYN alone underflowed here: a panic in debug builds, FIN-WAIT-2 without
/// a FIN ever sent in release ones.)
#[test]
fn shutdown_in_syn_received_sends_the_fin_after_the_handshake() {
    let mut net = Net::clean(40);
    let (ha, hb) = simultaneous_open(&mut net, 6001, 5001);
    let mut seen = vec![];
    let mut shut = false;
    let mut b_eof = false;
    net.run_until(Duration::from_secs(5), |n| {
        let s = state(n, true, ha);
        if seen.last() != Some(&s) {
            seen.push(s);
        }
        if s == State::SynReceived && !shut {
            n.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
            shut = true;
        }
        if let Some(c) = n.b.stack.tcp_mut().get_mut(hb) {
            b_eof = c.recv(&mut [0; 16]) == Ok(Some(0));
        }
        b_eof && state(n, true, ha) == State::FinWait2
    });
    assert!(shut, "A passed SYN-RECEIVED: {seen:?}");
    assert!(b_eof, "B reads the end of A's stream: {seen:?}");
    assert_eq!(
        seen,
        vec![
            State::SynSent,
            State::SynReceived,
            State::FinWait1,
            State::FinWait2
        ]
    );
    assert_eq!(state(&net, false, hb), State::CloseWait);
}

/// With SO_KEEPALIVE on, each delayed ACK schedules a timer earlier than
/// the 2-hour keepalive, and each keepalive entry it supersedes used to stay
/// in the heap until its deadline: a peer sending a byte every 50 ms grew
/// one connection's timers by megabytes an hour.
#[test]
fn superseded_timers_do_not_pile_up() {
    let keep = TcpConfig {
        keepalive: Some(Keepalive::default()),
        ..Default::default()
    };
    let mut net = Net::clean_with(41, keep, TcpConfig::default());
    let (ha, hb) = net.connect(80);
    let mut most = 0;
    for i in 0..6_000u32 {
        let c = net.b.stack.tcp_mut().get_mut(hb).unwrap();
        assert_eq!(c.send(&[i as u8]), Ok(1));
        net.flush();
        net.run_for(Duration::from_millis(50));
        let c = net.a.stack.tcp_mut().get_mut(ha).unwrap();
        assert_eq!(c.recv(&mut [0; 8]), Ok(Some(1)), "byte {i}");
        most = most.max(net.a.stack.tcp().timer_entries());
    }
    assert!(
        most <= 2 + 64 + 1,
        "{most} timer entries for one connection"
    );
    assert_eq!(state(&net, true, ha), State::Established);
}

/// A delayed ACK that rode on the reply leaves no timer behind: the set's
/// next timer is the connections' real one, so a driver thread sleeping
/// until it is not woken for nothing (it was, once per request, with a
/// busy HTTP server's connections).
#[test]
fn a_cancelled_delayed_ack_leaves_no_timer() {
    let slow_ack = TcpConfig {
        delayed_ack: Duration::from_millis(300),
        ..Default::default()
    };
    let mut net = Net::clean_with(43, slow_ack, TcpConfig::default());
    let (ha, hb) = net.connect(80);
    net.run_for(Duration::from_secs(2));
    assert_eq!(net.a.stack.tcp().poll_at(), None, "an idle connection");
    let c = net.b.stack.tcp_mut().get_mut(hb).unwrap();
    assert_eq!(c.send(b"?"), Ok(1));
    net.flush();
    // A answers as soon as the request is there: its ACK rides on the reply.
    let answered = net.run_until(Duration::from_millis(100), |n| {
        let c = n.a.stack.tcp_mut().get_mut(ha).unwrap();
        c.recv(&mut [0; 8]) == Ok(Some(1)) && c.send(b"!") == Ok(1)
    });
    assert!(answered);
    net.flush();
    let replied = net.now;
    net.run_for(Duration::from_millis(100)); // B's delayed ACK of the reply came
    let own = net.conn_a(ha).poll_at();
    assert!(
        own.is_none_or(|t| t > replied + Duration::from_millis(300)),
        "the connection itself has no timer as early as the delayed ACK: {own:?}"
    );
    assert_eq!(
        net.a.stack.tcp().poll_at(),
        own,
        "the set's next timer is the connection's, the delayed ACK's gone"
    );
}

/// The final ACK that closes a connection (LAST-ACK → CLOSED) and the
/// client's next SYN from the same port, read in one batch: the SYN found
/// the closed connection still mapped and was dropped (the client waited a
/// second for its retransmission).
#[test]
fn a_syn_right_behind_the_closing_ack_reaches_the_listener() {
    let mut net = Net::clean(42);
    net.b.stack.tcp_mut().listen(80, 16).unwrap();
    let now = net.now;
    let first = net
        .a
        .stack
        .tcp_mut()
        .connect(now, A_IP, (B_IP, 80), Some(7000))
        .unwrap();
    net.flush();
    let mut hb = None;
    net.run_until(Duration::from_secs(1), |n| {
        hb = hb.or_else(|| n.b.stack.tcp_mut().accept(80));
        hb.is_some() && state(n, true, first) == State::Established
    });
    let hb = hb.expect("accepted");
    net.a
        .stack
        .tcp_mut()
        .get_mut(first)
        .unwrap()
        .shutdown_write();
    net.flush();
    net.run_for(Duration::from_millis(10)); // B: CLOSE-WAIT
    net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
    net.flush();
    // A takes B's FIN and acknowledges it; at that very moment it connects
    // again from the same port, so ACK and SYN reach B together.
    let mut second = None;
    net.run_until(Duration::from_secs(1), |n| {
        if second.is_none() && state(n, true, first) == State::TimeWait {
            let now = n.now;
            let h =
                n.a.stack
                    .tcp_mut()
                    .connect(now, A_IP, (B_IP, 80), Some(7000));
            second = Some(h.expect("TIME-WAIT yields its port"));
            n.flush();
        }
        second.is_some()
    });
    let second = second.expect("A reached TIME-WAIT");
    let started = net.now;
    let mut accepted = None;
    net.run_until(Duration::from_secs(5), |n| {
        accepted = accepted.or_else(|| n.b.stack.tcp_mut().accept(80));
        accepted.is_some() && state(n, true, second) == State::Established
    });
    assert!(
        accepted.is_some(),
        "the second connection was never accepted"
    );
    let took = net.now.saturating_since(started);
    assert!(
        took < Duration::from_millis(100),
        "handshake took {took:?}: the first SYN was lost"
    );
    assert_eq!(state(&net, false, hb), State::Closed);
}

/// A receiver SACKs the second of two segments, then reneges: its
/// cumulative ACK covers the first only and the block is gone (RFC 2018
/// §8 allows it). The SACKed data must be resent on timeout, and the
/// retransmission timer must stay armed while data is outstanding (RFC
/// 6298 §5); the sender stayed silent with no timer at all.
#[test]
fn reneged_sack_data_is_retransmitted_on_timeout() {
    let mut net = Net::clean(43);
    let (ha, hb) = net.connect(80);
    let mss = net.conn_a(ha).mss();
    net.b.silent = true; // from now on B's side is played by hand
    let una = net.conn_a(ha).send_unacked().0;
    let b_next = net.conn_b(hb).send_next().0;
    let a_port = net.conn_a(ha).local().1;
    let c = net.a.stack.tcp_mut().get_mut(ha).unwrap();
    assert_eq!(c.send(&pattern(2 * mss, 1)), Ok(2 * mss));
    net.flush();
    net.run_for(Duration::from_millis(5));
    let ack = |ack: u32, sack: Option<(u32, u32)>| {
        let mut options = Options::default();
        if let Some(block) = sack {
            options.sack_blocks[0] = block;
            options.sack_count = 1;
        }
        Repr {
            src_port: 80,
            dst_port: a_port,
            seq: b_next,
            ack,
            flags: Flags::ACK,
            window: 0xffff,
            options,
        }
    };
    let second = (
        una.wrapping_add(mss as u32),
        una.wrapping_add(2 * mss as u32),
    );
    net.inject_to_a(ack(una, Some(second)));
    net.run_for(Duration::from_millis(5));
    net.inject_to_a(ack(second.0, None)); // reneged
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.conn_a(ha).send_unacked().0, second.0);
    let frames = net.a.stack.counters().frames_out;
    net.run_for(Duration::from_secs(40));
    let c = net.conn_a(ha);
    assert!(
        c.retries() >= 3,
        "timeouts fired: {} ({})",
        c.retries(),
        c.summary()
    );
    assert!(
        net.a.stack.counters().frames_out - frames >= 3,
        "the reneged segment was resent on each timeout"
    );
    assert!(
        net.a.stack.poll_at().is_some(),
        "a timer stays armed: {}",
        c.summary()
    );
}

/// B's side of a fresh connection on `port`, played by hand from now on.
struct HandPlayed {
    ha: Handle,
    port: u16,
    a_port: u16,
    a_una: u32,
    b_next: u32,
}

impl HandPlayed {
    fn new(net: &mut Net, port: u16) -> Self {
        net.b.silent = false;
        let (ha, hb) = net.connect(port);
        net.b.silent = true;
        HandPlayed {
            ha,
            port,
            a_port: net.conn_a(ha).local().1,
            a_una: net.conn_a(ha).send_unacked().0,
            b_next: net.conn_b(hb).send_next().0,
        }
    }
    /// A segment at `offset` past B's next sequence number, ACK set.
    fn segment(&self, offset: u32, flags: Flags) -> Repr {
        Repr {
            src_port: self.port,
            dst_port: self.a_port,
            seq: self.b_next.wrapping_add(offset),
            ack: self.a_una,
            flags: flags | Flags::ACK,
            window: 65535,
            options: Options::default(),
        }
    }
}

/// Found by fuzzing (tcp_conversation): data held out of order, then a FIN
/// in order before it. Nothing follows the end of a stream, so the held
/// data goes (it stayed, outside the window, SACKed for ever).
#[test]
fn a_fin_drops_out_of_order_data_beyond_it() {
    let mut net = Net::clean(44);
    let b = HandPlayed::new(&mut net, 80);
    net.inject_segment_to_a(b.segment(100, Flags::ACK), b"beyond the end");
    net.run_for(Duration::from_millis(5));
    assert_eq!(net.conn_a(b.ha).out_of_order_ranges(), 1);
    net.inject_segment_to_a(b.segment(0, Flags::FIN), b"");
    net.run_for(Duration::from_millis(5));
    let c = net.conn_a(b.ha);
    assert_eq!((c.state(), c.out_of_order_ranges()), (State::CloseWait, 0));
    let c = net.a.stack.tcp_mut().get_mut(b.ha).unwrap();
    assert_eq!(
        c.recv(&mut [0u8; 64]),
        Ok(Some(0)),
        "end of stream, nothing after it"
    );
}

/// A FIN seen beyond a hole ends the stream there: data past it is not
/// taken, data before it is.
#[test]
fn data_past_a_fin_across_a_hole_is_not_taken() {
    let mut net = Net::clean(45);
    let b = HandPlayed::new(&mut net, 81);
    net.inject_segment_to_a(b.segment(5, Flags::FIN), b"!");
    net.inject_segment_to_a(b.segment(6, Flags::ACK), b"past the FIN");
    net.inject_segment_to_a(b.segment(0, Flags::ACK), b"hello");
    net.run_for(Duration::from_millis(5));
    let mut buf = [0u8; 64];
    let c = net.a.stack.tcp_mut().get_mut(b.ha).unwrap();
    assert_eq!(c.recv(&mut buf), Ok(Some(6)));
    assert_eq!(&buf[..6], b"hello!");
    assert_eq!(c.recv(&mut buf), Ok(Some(0)));
}

/// B closed first and let go: its side of the connection is kept as a
/// TIME-WAIT record. B's last ACK is lost, so A sends its FIN again: the
/// record answers it with an ACK, as the connection would have (RFC 9293
/// §3.10.7.4), and A closes cleanly instead of meeting a reset; B's
/// TIME-WAIT starts again from that FIN and ends 2·MSL later.
#[test]
fn a_time_wait_record_acknowledges_a_fin_sent_again() {
    let mut net = Net::clean(67);
    let (ha, hb) = net.connect(80);
    net.b.stack.tcp_mut().release(hb, false);
    net.flush();
    net.run_for(Duration::from_millis(10));
    assert_eq!(state(&net, true, ha), State::CloseWait);
    net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
    net.flush();
    net.a.silent = true; // B's ACK of A's FIN is lost
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 1);
    assert_eq!(net.b.stack.tcp().iter().count(), 0);
    net.run_for(Duration::from_secs(20));
    net.a.silent = false;
    let fin_again = net.now;
    let closed = net.run_until(Duration::from_secs(30), |n| {
        n.a.stack
            .tcp()
            .get(ha)
            .is_none_or(|c| c.state() == State::Closed)
    });
    assert!(closed, "A never closed");
    let a = net.a.stack.tcp().get(ha).map(|c| (c.state(), c.error()));
    assert!(matches!(a, None | Some((State::Closed, None))), "{a:?}");
    assert_eq!(
        net.b.stack.tcp().time_wait_records().count(),
        1,
        "kept again"
    );
    // 2·MSL from the FIN sent again, not from the first one.
    let since_fin = net.now.saturating_since(fin_again).total_micros();
    net.run_for(Duration::from_micros(59_000_000 - since_fin));
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 1);
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 0);
}

/// RFC 6191 §2: a new SYN whose timestamp equals the one TIME-WAIT last saw
/// takes over when its sequence number is higher. Over a link quicker than
/// the timestamp clock's millisecond, the client that closed second sends
/// its FIN and the new SYN from the same port within one millisecond.
#[test]
fn time_wait_yields_to_a_new_syn_with_an_equal_timestamp_and_a_higher_sequence() {
    let mut net = Net::new(FaultConfig::default(), 14); // no latency
    let (ha, hb) = net.connect(80);
    let a_port = net.conn_a(ha).local().1;
    net.run_for(Duration::from_millis(10)); // the ISN clock moves on
    net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
    net.flush();
    net.run_for(Duration::ZERO);
    net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
    net.flush();
    for _ in 0..3 {
        net.run_for(Duration::ZERO); // A's FIN, B's ACK, all within this millisecond
    }
    assert_eq!(state(&net, false, hb), State::TimeWait);
    assert_eq!(state(&net, true, ha), State::Closed);
    let now = net.now;
    let h2 = connect_again_from(&mut net, a_port);
    for _ in 0..3 {
        net.run_for(Duration::ZERO); // the handshake, within the same millisecond
    }
    assert_eq!(net.now, now, "no time passed: the timestamps are equal");
    assert_eq!(state(&net, true, h2), State::Established);
    assert!(net.b.stack.tcp_mut().accept(80).is_some());
}
