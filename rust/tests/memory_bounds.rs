//! Memory stays bounded under attack, by the stack's own accounting, and a
//! legitimate connection still works afterwards: scattered out-of-order
//! bytes, bogus SACK blocks, a SYN flood, fragment trains that never end, a
//! peer that never reads and one that sends into a zero window.

mod tcp_net;

use mipfast::phy::fault::FaultConfig;
use mipfast::socket::tcp::{Handle, State, TcpConfig};
use mipfast::time::Duration;
use mipfast::wire::tcp::{Flags, Options, Repr};
use mipfast::wire::{ipv4, Ipv4Addr, MacAddress};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tcp_net::*;

const RX_BUFFER: usize = 4 << 20;
const TX_BUFFER: usize = 4 << 20;
/// What bookkeeping may add to the buffers themselves (slots, tables, timers,
/// out-of-order ranges and the scoreboard).
const OVERHEAD: usize = 256 << 10;

/// A fresh connection moves `len` bytes each way, byte-exact.
fn legitimate_transfer_works(net: &mut Net, port: u16, len: usize) {
    let (ha, hb) = net.connect(port);
    let mut ab = Transfer::new(pattern(len, 9));
    let ok = net.run_until(Duration::from_secs(60), |n| {
        ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        ab.done()
    });
    assert!(
        ok && ab.hash == Fnv::of(&ab.data),
        "legitimate transfer: {}/{len}",
        ab.received
    );
}

/// A's view of B's next sequence number and its own, after B sent one byte.
fn numbers(net: &mut Net, ha: Handle, hb: Handle) -> (u32, u32, u16) {
    net.b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .send(b"x")
        .unwrap();
    net.flush();
    net.run_for(Duration::from_millis(50));
    let mut one = [0u8; 1];
    assert_eq!(
        net.a.stack.tcp_mut().get_mut(ha).unwrap().recv(&mut one),
        Ok(Some(1))
    );
    let a = net.conn_a(ha);
    (
        net.conn_b(hb).send_next().0,
        a.send_unacked().0,
        a.local().1,
    )
}

fn segment(a_port: u16, seq: u32, ack: u32, window: u16, options: Options) -> Repr {
    Repr {
        src_port: 80,
        dst_port: a_port,
        seq,
        ack,
        flags: Flags::ACK,
        window,
        options,
    }
}

#[test]
fn ten_thousand_scattered_one_byte_segments() {
    let mut net = Net::clean(60);
    let (ha, hb) = net.connect(80);
    let (b_next, a_una, a_port) = numbers(&mut net, ha, hb);
    net.b.silent = true;
    let mut rng = StdRng::seed_from_u64(1);
    for i in 0..10_000 {
        // Anywhere in the window but at RCV.NXT: every one out of order.
        let offset = rng.random_range(1..RX_BUFFER as u32 - 1);
        let seg = segment(
            a_port,
            b_next.wrapping_add(offset),
            a_una,
            65535,
            Options::default(),
        );
        net.inject_segment_to_a(seg, &[i as u8]);
        if i % 100 == 0 {
            net.run_for(Duration::from_millis(1));
        }
    }
    net.run_for(Duration::from_millis(10));
    let memory = net.a.stack.tcp().memory();
    assert!(
        memory <= RX_BUFFER + OVERHEAD,
        "{memory} bytes after 10,000 scattered bytes"
    );
    net.b.silent = false;
    net.a.stack.tcp_mut().release(ha, true);
    legitimate_transfer_works(&mut net, 81, 1 << 20);
}

#[test]
fn bogus_sack_blocks_change_nothing_and_cost_nothing() {
    let mut net = Net::clean(61);
    let (ha, hb) = net.connect(80);
    let (b_next, _, a_port) = numbers(&mut net, ha, hb);
    let data = pattern(2 << 20, 4);
    let mut t = Transfer::new(data.clone());
    let mut rng = StdRng::seed_from_u64(2);
    let mut injected = 0;
    let ok = net.run_until(Duration::from_secs(120), |n| {
        t.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        let Some(c) = n.a.stack.tcp().get(ha) else {
            return false;
        };
        let (una, max) = (c.send_unacked().0, c.send_next().0);
        for _ in 0..50 {
            if injected >= 20_000 || max == una {
                break;
            }
            let mut options = Options::default();
            for b in 0..3 {
                let (l, r) = match rng.random_range(0..5) {
                    0 => (
                        max.wrapping_add(rng.random_range(1..1 << 20)),
                        max.wrapping_add(1 << 21),
                    ),
                    1 => (
                        una.wrapping_sub(1 << 20),
                        una.wrapping_sub(rng.random_range(0..1000)),
                    ),
                    2 => (max, una),                                     // reversed
                    3 => (una.wrapping_sub(500), max.wrapping_add(500)), // overlapping both ends
                    _ => {
                        let l = rng.random::<u32>();
                        (l, l.wrapping_add(rng.random_range(0..100_000)))
                    }
                };
                options.sack_blocks[b] = (l, r);
            }
            options.sack_count = 3;
            // Duplicate ACKs of SND.UNA: as if from B, with lies attached.
            n.inject_to_a(segment(a_port, b_next, una, 0xffff, options));
            injected += 1;
        }
        let memory = n.a.stack.tcp().memory();
        assert!(memory <= TX_BUFFER + RX_BUFFER + OVERHEAD, "{memory} bytes");
        t.done()
    });
    assert!(
        ok && injected > 1000,
        "transfer ended: {ok}, lies told: {injected}"
    );
    assert_eq!(t.hash, Fnv::of(&data));
}

#[test]
fn a_hundred_thousand_spoofed_syns() {
    let mut net = Net::clean(62);
    net.b.stack.tcp_mut().listen(80, 16).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut most = 0;
    for i in 0..100_000u32 {
        let src = Ipv4Addr::new(10, 77, 0, rng.random_range(3..250));
        let syn = Repr {
            src_port: rng.random_range(1024..65535),
            dst_port: 80,
            seq: rng.random(),
            ack: 0,
            flags: Flags::SYN,
            window: 64240,
            options: Options {
                mss: Some(1460),
                timestamps: Some((rng.random(), 0)),
                ..Default::default()
            },
        };
        let mut tcp = vec![0u8; syn.header_len()];
        syn.emit(&mut tcp, 0, src, B_IP);
        let spoofer = (src, MacAddress([2, 0, 0, 0, 1, src.octets()[3]]));
        net.inject_from(true, spoofer, (B_IP, B_MAC), ipv4::PROTO_TCP, &tcp);
        if i % 500 == 0 {
            net.run_for(Duration::from_millis(5));
            most = most.max(net.b.stack.tcp().memory());
        }
    }
    net.run_for(Duration::from_millis(50));
    most = most.max(net.b.stack.tcp().memory());
    assert!(
        net.b.stack.tcp().len() <= 16,
        "{} connection blocks",
        net.b.stack.tcp().len()
    );
    assert!(most <= OVERHEAD, "{most} bytes for a flood of 100,000 SYNs");
    assert!(net.b.stack.tcp().cookies().0 > 90_000);
    legitimate_transfer_works(&mut net, 80, 1 << 20);
}

#[test]
fn ten_thousand_fragment_trains_that_never_end() {
    let mut net = Net::clean(63);
    let mut most = (0, 0);
    for ident in 0..10_000u32 {
        // The first 1,480 bytes of a larger datagram, and nothing more, from
        // many sources.
        let src = Ipv4Addr::new(10, 77, 0, 1 + (ident % 200) as u8);
        let mut first = vec![0u8; ipv4::HEADER_LEN + 1480];
        let header = ipv4::Repr::new(src, A_IP, ipv4::PROTO_UDP, 1480, ident as u16);
        header.emit_fragment(&mut first, 0, true);
        net.inject_packet(false, (B_MAC, A_MAC), &first);
        if ident % 100 == 0 {
            net.run_for(Duration::from_millis(1));
            let u = net.a.stack.interface().reassembly_usage();
            most = (most.0.max(u.0), most.1.max(u.1));
        }
    }
    let (datagrams, bytes) = most;
    assert!(
        datagrams <= 64 && bytes <= 256 << 10,
        "held {datagrams} datagrams, {bytes} bytes"
    );
    // A datagram in fragments, sent properly, still arrives whole.
    let server = net.a.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 7).unwrap();
    let client = net.b.stack.udp_bind(Ipv4Addr::UNSPECIFIED, 0).unwrap();
    let message = pattern(20_000, 5);
    net.b
        .stack
        .udp_send(net.now, client, (A_IP, 7), &message)
        .unwrap();
    net.flush();
    net.run_for(Duration::from_millis(20));
    let got = net
        .a
        .stack
        .udp_mut()
        .get_mut(server)
        .unwrap()
        .recv()
        .expect("the datagram");
    assert_eq!(got.data, message);
}

#[test]
fn a_peer_that_never_reads() {
    let mut net = Net::clean(64);
    let (ha, hb) = net.connect(80);
    let data = pattern(16 << 20, 6);
    let mut sent = 0;
    net.run_until(Duration::from_secs(30), |n| {
        if let Some(c) = n.a.stack.tcp_mut().get_mut(ha) {
            sent += c.send(&data[sent..]).unwrap_or(0);
        }
        false
    });
    // B's buffer is full and its window shut; A's send buffer is full.
    assert!(
        (TX_BUFFER..=TX_BUFFER + RX_BUFFER).contains(&sent),
        "{sent} bytes taken"
    );
    let (a, b) = (net.a.stack.tcp().memory(), net.b.stack.tcp().memory());
    assert!(
        a <= TX_BUFFER + OVERHEAD && b <= RX_BUFFER + OVERHEAD,
        "{a} and {b} bytes"
    );
    // B starts reading: everything arrives, in order.
    let mut t = Transfer::new(data.clone());
    t.sent = sent;
    let ok = net.run_until(Duration::from_secs(120), |n| {
        t.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        t.done()
    });
    assert!(
        ok && t.hash == Fnv::of(&data),
        "{} of {} bytes",
        t.received,
        data.len()
    );
}

#[test]
fn a_peer_that_sends_into_a_zero_window() {
    let small = TcpConfig {
        rx_buffer: 64 << 10,
        ..Default::default()
    };
    let mut net = Net::with_configs(
        FaultConfig::latency(Duration::from_millis(1)),
        65,
        small,
        TcpConfig::default(),
    );
    let (ha, hb) = net.connect(80);
    // B fills A's buffer (A does not read), then keeps pushing by hand.
    let c = net.b.stack.tcp_mut().get_mut(hb).unwrap();
    c.send(&pattern(64 << 10, 7)).unwrap();
    net.flush();
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.conn_a(ha).recv_available(), 64 << 10);
    let b_next = net.conn_b(hb).send_next().0;
    let a_una = net.conn_a(ha).send_unacked().0;
    let a_port = net.conn_a(ha).local().1;
    let before = net.a.stack.tcp().memory();
    for i in 0..10_000u32 {
        let seq = b_next.wrapping_add(i % 4 * 1000);
        net.inject_segment_to_a(
            segment(a_port, seq, a_una, 65535, Options::default()),
            &[0xee; 1000],
        );
        if i % 100 == 0 {
            net.run_for(Duration::from_millis(1));
        }
    }
    net.run_for(Duration::from_millis(10));
    let after = net.a.stack.tcp().memory();
    assert!(after <= before + OVERHEAD, "{before} → {after} bytes");
    assert_eq!(
        net.conn_a(ha).recv_available(),
        64 << 10,
        "nothing taken beyond the window"
    );
    // A reads: the window opens and B's own stream goes on, intact.
    let mut buf = vec![0u8; 64 << 10];
    let c = net.a.stack.tcp_mut().get_mut(ha).unwrap();
    assert_eq!(c.recv(&mut buf), Ok(Some(64 << 10)));
    assert_eq!(buf, pattern(64 << 10, 7));
    legitimate_transfer_works(&mut net, 81, 1 << 20);
}

#[test]
fn drained_buffers_stay_while_data_flows_and_go_once_quiet() {
    let mut net = Net::clean(62);
    let (ha, hb) = net.connect(80);
    // 256 KiB from A to B, read by B as it comes; the stream stays open.
    let data = pattern(256 << 10, 6);
    let (mut sent, mut got) = (0, Vec::new());
    assert!(net.run_until(Duration::from_secs(60), |n| {
        if let Some(c) = n.a.stack.tcp_mut().get_mut(ha) {
            sent += c.send(&data[sent..]).unwrap_or(0);
        }
        let mut buf = vec![0u8; 64 << 10];
        if let Ok(Some(k)) = n.b.stack.tcp_mut().get_mut(hb).unwrap().recv(&mut buf) {
            got.extend_from_slice(&buf[..k]);
        }
        got.len() == data.len() && n.conn_a(ha).send_unacked() == n.conn_a(ha).send_next()
    }));
    assert!(got == data);
    // Everything sent is acknowledged and everything received read: both
    // rings are empty, but a connection that just moved data keeps them
    // (no free and regrow at every drain).
    let held = |n: &Net| (n.a.stack.tcp().memory(), n.b.stack.tcp().memory());
    let (a_busy, b_busy) = held(&net);
    assert!(a_busy > 64 << 10 && b_busy > 64 << 10, "{a_busy} {b_busy}");
    net.run_for(Duration::from_millis(200));
    assert_eq!(held(&net), (a_busy, b_busy), "still within the keep time");
    // Quiet for longer than the keep time: both are given back.
    net.run_for(Duration::from_millis(400));
    let (a_idle, b_idle) = held(&net);
    assert!(a_idle < 4 << 10 && b_idle < 4 << 10, "{a_idle} {b_idle}");
}

/// Once the peer's FIN came, nothing more fills the receive ring: it goes as
/// soon as it is read empty (a server's closed connections then wait in
/// TIME-WAIT without it), while the sender keeps its send ring for the keep
/// time as before.
#[test]
fn a_receive_ring_goes_once_read_after_the_peers_fin() {
    let mut net = Net::clean(63);
    let (ha, hb) = net.connect(80);
    let mut t = Transfer::new(pattern(1 << 20, 6));
    assert!(net.run_until(Duration::from_secs(60), |n| {
        t.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        t.done()
    }));
    net.run_for(Duration::from_millis(10));
    let (a, b) = (net.a.stack.tcp().memory(), net.b.stack.tcp().memory());
    assert!(a > 64 << 10 && b < 4 << 10, "{a} {b}");
    // Read empty before the FIN: it goes when the FIN comes.
    let (ha, hb) = net.connect(81);
    net.a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .send(&[7; 64 << 10])
        .unwrap();
    net.flush();
    net.run_for(Duration::from_millis(20));
    let mut buf = vec![0u8; 64 << 10];
    let c = net.b.stack.tcp_mut().get_mut(hb).unwrap();
    assert_eq!(c.recv(&mut buf), Ok(Some(64 << 10)));
    net.run_for(Duration::from_millis(10));
    let kept = net.b.stack.tcp().memory();
    assert!(kept > 64 << 10, "kept while the stream is open: {kept}");
    net.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
    net.flush();
    net.run_for(Duration::from_millis(10));
    let b = net.b.stack.tcp().memory();
    assert!(b < 4 << 10, "{b}");
}

/// A server that closes first keeps each connection in TIME-WAIT for a
/// minute, so its memory would grow with its connection rate; past
/// `max_time_wait` such connections, one ends at once and is freed, and its
/// client still closes cleanly.
#[test]
fn connections_in_time_wait_stay_within_their_bound() {
    let bounded = TcpConfig {
        max_time_wait: 8,
        ..Default::default()
    };
    let mut net = Net::clean_with(65, TcpConfig::default(), bounded);
    let time_waits = |net: &Net| {
        let b = net.b.stack.tcp();
        let held = b.iter().filter(|(_, c)| c.state() == State::TimeWait);
        held.count() + b.time_wait_records().count()
    };
    let clients: Vec<Handle> = (0..20).map(|_| net.server_closes_first(80)).collect();
    assert_eq!(time_waits(&net), 8);
    assert_eq!(net.b.stack.tcp().len(), 8, "the others were freed");
    for &ha in &clients {
        let c = net.conn_a(ha);
        assert_eq!((c.state(), c.error()), (State::Closed, None));
    }
    // Once those end, a new one waits again.
    net.run_for(Duration::from_secs(61));
    assert_eq!((time_waits(&net), net.b.stack.tcp().len()), (0, 0));
    net.server_closes_first(80);
    assert_eq!(time_waits(&net), 1);
}

/// A connection in TIME-WAIT that nobody holds is kept as a record of what
/// TIME-WAIT needs, not as its whole block: a server that closes first
/// holds a few hundred bytes per recent connection, not a kilobyte.
#[test]
fn a_connection_in_time_wait_nobody_holds_costs_a_small_record() {
    let mut net = Net::clean(66);
    net.server_closes_first(80);
    let one = net.b.stack.tcp().memory();
    const MORE: usize = 2000;
    for _ in 0..MORE {
        net.server_closes_first(80);
    }
    let b = net.b.stack.tcp();
    assert_eq!(b.time_wait_records().count(), MORE + 1);
    assert_eq!(b.iter().count(), 0, "no connection block is kept");
    let each = (b.memory() - one) / MORE;
    assert!(each < 400, "{each} bytes per connection in TIME-WAIT");
    // They end as TIME-WAIT does.
    net.run_for(Duration::from_secs(61));
    assert_eq!(net.b.stack.tcp().time_wait_records().count(), 0);
    assert_eq!(net.b.stack.tcp().len(), 0);
}
