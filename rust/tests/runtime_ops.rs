//! The runtime's socket calls and readiness, over the in-memory link with
//! simulated time: what a blocking call does while it waits, when it
//! gives up, and when `select` would call a socket ready.

mod tcp_net;

use mipfast::phy::fault::FaultConfig;
use mipfast::runtime::ops::{self, Op, ReadMode};
use mipfast::runtime::readiness::{self, Readiness};
use mipfast::runtime::ready_set::{Event, ReadySet};
use mipfast::runtime::watch::{readiness_of, Watched, Watches};
use mipfast::service::ping::ProbeId;
use mipfast::socket::tcp::{Families, LentBuffer, TcpConfig};
use mipfast::time::Duration;
use std::sync::{Arc, Mutex};
use tcp_net::{pattern, Net, A_IP, B_IP};

/// Lends as the bindings do, without their `unsafe`: what the connection
/// puts into a lent region is recorded with the region's address, and
/// [`Tape::settle`] copies it into the reader's buffer once the call is
/// over (the bindings' lender writes in place).
#[derive(Clone, Default)]
struct Tape(Arc<Mutex<Vec<Put>>>);

/// Bytes the connection put, and the address they were put at.
type Put = (usize, Vec<u8>);

/// A lent region seen from the engine's side: its spare room is scratch
/// memory, and what it advances over is recorded with its address.
struct Recording {
    at: usize,
    scratch: Vec<u8>,
    tape: Tape,
}

impl LentBuffer for Recording {
    fn spare(&mut self) -> &mut [u8] {
        &mut self.scratch
    }
    fn advance(&mut self, n: usize) {
        let taken: Vec<u8> = self.scratch.drain(..n).collect();
        self.tape.0.lock().unwrap().push((self.at, taken));
        self.at += n;
    }
}

impl Tape {
    fn lend(&self, region: &mut [u8]) -> Box<dyn LentBuffer> {
        Box::new(Recording {
            at: region.as_ptr() as usize,
            scratch: vec![0; region.len()],
            tape: self.clone(),
        })
    }

    /// Puts what was recorded for regions of `buf` in place.
    fn settle(&self, buf: &mut [u8]) {
        let base = buf.as_ptr() as usize;
        let mut recorded = self.0.lock().unwrap();
        recorded.retain(|(at, bytes)| {
            let Some(i) = at.checked_sub(base).filter(|&i| i < buf.len()) else {
                return true;
            };
            buf[i..i + bytes.len()].copy_from_slice(bytes);
            false
        });
    }
}

/// Attempts `op` on A after every step, parking it between attempts, as a
/// blocked caller does, for up to `limit` of simulated time; gives up (and
/// undoes) after that.
fn run_on_a<O: Op>(net: &mut Net, op: &mut O, limit: Duration) -> Option<O::Output> {
    let mut out = None;
    net.run_until(limit, |n| {
        out = attempt_or_park(n, op);
        out.is_some()
    });
    if out.is_none() {
        out = op.give_up(&mut net.a.stack);
        net.flush();
    }
    out
}

/// One attempt on A; if not done, the op is parked as a caller that goes
/// to sleep parks it.
fn attempt_or_park<O: Op>(net: &mut Net, op: &mut O) -> Option<O::Output> {
    let now = net.now;
    let out = op.attempt(&mut net.a.stack, now);
    if out.is_none() {
        op.park(&mut net.a.stack);
    }
    out
}

/// B's application sends `data` on `hb`, at once.
fn b_sends(net: &mut Net, hb: mipfast::socket::tcp::Handle, data: &[u8]) {
    net.b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .send(data)
        .unwrap();
    net.flush();
}

fn tcp_ready(net: &Net, h: mipfast::socket::tcp::Handle) -> Readiness {
    readiness_of(&net.a.stack, Watched::Tcp(h))
}

#[test]
fn connect_refused_leaves_nothing_behind() {
    let mut net = Net::clean(1);
    let mut op = ops::Connect::start(&mut net.a.stack, net.now, (B_IP.into(), 81), None).unwrap();
    net.flush();
    let err = run_on_a(&mut net, &mut op, Duration::from_secs(5))
        .unwrap()
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ECONNREFUSED));
    net.run_for(Duration::from_millis(10));
    assert_eq!(net.a.stack.tcp().active(), 0);
    assert_eq!(net.a.stack.tcp().len(), 0, "the failed connection is freed");
}

#[test]
fn connect_given_up_is_aborted() {
    let mut net = Net::clean(2);
    net.b.silent = true;
    let mut op = ops::Connect::start(&mut net.a.stack, net.now, (B_IP.into(), 80), None).unwrap();
    net.flush();
    assert!(run_on_a(&mut net, &mut op, Duration::from_secs(2)).is_none());
    net.run_for(Duration::from_millis(10));
    assert_eq!(
        net.a.stack.tcp().active(),
        0,
        "no half-open connection is left"
    );
}

#[test]
fn connect_completes_from_the_port_asked_for() {
    let mut net = Net::clean(3);
    net.b.stack.tcp_mut().listen(80, 4).unwrap();
    let mut op =
        ops::Connect::start(&mut net.a.stack, net.now, (B_IP.into(), 80), Some(40000)).unwrap();
    net.flush();
    let h = run_on_a(&mut net, &mut op, Duration::from_secs(5))
        .unwrap()
        .unwrap();
    let (local, remote) = ops::endpoints(&net.a.stack, h).unwrap();
    assert_eq!(local, (A_IP.into(), 40000));
    assert_eq!(remote, (B_IP.into(), 80));
}

#[test]
fn listen_on_port_zero_picks_free_ephemeral_ports() {
    let mut net = Net::clean(4);
    let p1 = ops::listen(&mut net.b.stack, 0, (8, Families::Both)).unwrap();
    let p2 = ops::listen(&mut net.b.stack, 0, (8, Families::Both)).unwrap();
    assert!(p1 >= 49152 && p2 >= 49152 && p1 != p2);
    let again = ops::listen(&mut net.b.stack, p1, (8, Families::Both)).unwrap_err();
    assert_eq!(again.raw_os_error(), Some(libc::EADDRINUSE));
    // The same seed picks the same ports: the picker is the stack's, not the OS's.
    let mut twin = Net::clean(4);
    assert_eq!(
        ops::listen(&mut twin.b.stack, 0, (8, Families::Both)).unwrap(),
        p1
    );
    // And the port works.
    let mut op = ops::Connect::start(&mut net.a.stack, net.now, (B_IP.into(), p1), None).unwrap();
    net.flush();
    assert!(run_on_a(&mut net, &mut op, Duration::from_secs(5))
        .unwrap()
        .is_ok());
}

#[test]
fn wait_all_collects_every_piece_and_keeps_a_partial_read() {
    let mut net = Net::clean(5);
    let (ha, hb) = net.connect(80);
    let data = pattern(3000, 1);
    let mut buf = vec![0u8; 3000];
    let tape = Tape::default();
    let lend = |region: &mut [u8]| tape.lend(region);
    {
        let mut op = ops::Receive::new(ha, &mut buf, ReadMode::All).lending(&lend);
        let mut sent = 0;
        let mut got = None;
        let t0 = net.now;
        net.run_until(Duration::from_secs(5), |n| {
            if sent < 3 && n.now.saturating_since(t0) >= Duration::from_millis(50 * sent as u64) {
                let piece = &data[sent * 1000..(sent + 1) * 1000];
                n.b.stack
                    .tcp_mut()
                    .get_mut(hb)
                    .unwrap()
                    .send(piece)
                    .unwrap();
                sent += 1;
            }
            got = attempt_or_park(n, &mut op);
            got.is_some()
        });
        assert_eq!(got.unwrap().unwrap(), 3000);
    }
    tape.settle(&mut buf);
    assert_eq!(buf, data);

    // Half a buffer, then the peer goes quiet: giving up returns the half.
    net.b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .send(&data[..500])
        .unwrap();
    net.flush();
    let mut op = ops::Receive::new(ha, &mut buf, ReadMode::All);
    assert_eq!(
        run_on_a(&mut net, &mut op, Duration::from_secs(1))
            .unwrap()
            .unwrap(),
        500
    );

    // Half, then end of stream: the half, then end of stream.
    net.b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .send(&data[..700])
        .unwrap();
    net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
    net.flush();
    let mut op = ops::Receive::new(ha, &mut buf, ReadMode::All);
    assert_eq!(
        run_on_a(&mut net, &mut op, Duration::from_secs(1))
            .unwrap()
            .unwrap(),
        700
    );
    let mut op = ops::Receive::new(ha, &mut buf, ReadMode::All);
    assert_eq!(
        run_on_a(&mut net, &mut op, Duration::from_secs(1))
            .unwrap()
            .unwrap(),
        0
    );
}

#[test]
fn a_waiting_read_takes_text_straight_into_its_buffer() {
    let mut net = Net::clean(20);
    let (ha, hb) = net.connect(80);
    let data = pattern(10_000, 3);
    let mut buf = vec![0u8; 4000];
    let tape = Tape::default();
    let lend = |region: &mut [u8]| tape.lend(region);
    {
        let mut op = ops::Receive::new(ha, &mut buf, ReadMode::Some).lending(&lend);
        assert!(attempt_or_park(&mut net, &mut op).is_none(), "nothing yet");
        b_sends(&mut net, hb, &data);
        net.run_for(Duration::from_millis(500)); // past B's Nagle wait
                                                 // The lent buffer took the first 4,000 bytes; the rest is queued.
        assert_eq!(net.conn_a(ha).recv_available(), 6000);
        assert_eq!(net.conn_a(ha).traffic().bytes_received, 10_000);
        assert_eq!(attempt_or_park(&mut net, &mut op).unwrap().unwrap(), 4000);
    }
    tape.settle(&mut buf);
    assert_eq!(buf, data[..4000]);
    // In order after it, through the ring.
    let mut rest = vec![0u8; 8000];
    let mut op = ops::Receive::new(ha, &mut rest, ReadMode::Some);
    assert_eq!(
        run_on_a(&mut net, &mut op, Duration::from_secs(1))
            .unwrap()
            .unwrap(),
        6000
    );
    assert_eq!(rest[..6000], data[4000..]);
    // A second reader is not lent the connection while the first is.
    let (mut one, mut two) = ([0u8; 10], [0u8; 10]);
    let mut first = ops::Receive::new(ha, &mut one, ReadMode::Some).lending(&lend);
    let mut second = ops::Receive::new(ha, &mut two, ReadMode::Some).lending(&lend);
    assert!(attempt_or_park(&mut net, &mut first).is_none());
    assert!(attempt_or_park(&mut net, &mut second).is_none());
    b_sends(&mut net, hb, b"0123456789abc");
    net.run_for(Duration::from_millis(500)); // past B's Nagle wait
    assert_eq!(net.conn_a(ha).recv_available(), 3);
    assert_eq!(attempt_or_park(&mut net, &mut second).unwrap().unwrap(), 3);
    assert_eq!(attempt_or_park(&mut net, &mut first).unwrap().unwrap(), 10);
    tape.settle(&mut one);
    tape.settle(&mut two);
    assert_eq!((&one, &two[..3]), (b"0123456789", &b"abc"[..]));
}

#[test]
fn a_round_stops_taking_frames_once_a_waiting_reader_is_served() {
    let mut net = Net::clean(22);
    let (ha, hb) = net.connect(80);
    let data = pattern(8_000, 4);
    let tape = Tape::default();
    let lend = |region: &mut [u8]| tape.lend(region);
    let mut first = vec![0u8; 2000];
    {
        let mut op = ops::Receive::new(ha, &mut first, ReadMode::Some).lending(&lend);
        assert!(attempt_or_park(&mut net, &mut op).is_none(), "nothing yet");
        b_sends(&mut net, hb, &data); // several full segments, all in one window
        net.now = net
            .a
            .dev
            .next_arrival()
            .expect("B's segments are on their way");
        let taken = net.a.stack.poll(net.now, &mut net.a.dev).unwrap();
        assert_eq!(
            taken, 2,
            "the second segment filled 2,000 bytes: the round stopped"
        );
        assert_eq!(
            net.a.dev.next_arrival(),
            Some(net.now),
            "the rest wait in the device, due"
        );
        assert_eq!(attempt_or_park(&mut net, &mut op).unwrap().unwrap(), 2000);
    }
    tape.settle(&mut first);
    assert_eq!(first, data[..2000]);
    // What the second segment brought beyond the buffer took the ring.
    let overflow = net.conn_a(ha).recv_available();
    assert!(overflow > 0 && overflow < 2000, "{overflow}");
    let mut second = vec![0u8; 8000];
    let mut op = ops::Receive::new(ha, &mut second, ReadMode::Some).lending(&lend);
    assert_eq!(
        attempt_or_park(&mut net, &mut op).unwrap().unwrap(),
        overflow
    );
    // The next reader's buffer takes the frames left waiting, straight.
    let mut third = vec![0u8; 8000];
    {
        let mut op = ops::Receive::new(ha, &mut third, ReadMode::Some).lending(&lend);
        assert!(attempt_or_park(&mut net, &mut op).is_none());
        net.a.stack.poll(net.now, &mut net.a.dev).unwrap();
        assert_eq!(
            net.conn_a(ha).recv_available(),
            0,
            "nothing through the ring"
        );
        let received = net.conn_a(ha).traffic().bytes_received as usize;
        let rest = received - 2000 - overflow;
        assert!(rest > 0);
        assert_eq!(attempt_or_park(&mut net, &mut op).unwrap().unwrap(), rest);
    }
    tape.settle(&mut third);
    let from = 2000 + overflow;
    let rest = net.conn_a(ha).traffic().bytes_received as usize - from;
    assert_eq!(third[..rest], data[from..from + rest]);
}

#[test]
fn what_a_lent_buffer_took_is_kept_when_the_wait_ends() {
    let mut net = Net::clean(21);
    let (ha, hb) = net.connect(80);
    let mut buf = [0u8; 64];
    let tape = Tape::default();
    let lend = |region: &mut [u8]| tape.lend(region);
    let mut op = ops::Receive::new(ha, &mut buf, ReadMode::Some).lending(&lend);
    assert!(attempt_or_park(&mut net, &mut op).is_none());
    assert!(
        !op.unpark(&mut net.a.stack),
        "nothing came: look for Ctrl-C"
    );
    op.park(&mut net.a.stack);
    b_sends(&mut net, hb, b"hello");
    net.run_for(Duration::from_millis(500)); // past B's Nagle wait
                                             // Ctrl-C is looked for only once the call has what it got.
    assert!(op.unpark(&mut net.a.stack));
    op.park(&mut net.a.stack);
    b_sends(&mut net, hb, b" world");
    net.run_for(Duration::from_millis(500)); // past B's Nagle wait
    assert_eq!(op.give_up(&mut net.a.stack).unwrap().unwrap(), 11);
    tape.settle(&mut buf);
    assert_eq!(&buf[..11], b"hello world");
    assert_eq!(net.conn_a(ha).recv_available(), 0);
}

#[test]
fn reads_that_wait_move_a_stream_intact_over_a_faulty_link() {
    let faults = FaultConfig {
        loss: 0.10,
        reorder: 0.05,
        duplicate: 0.01,
        corrupt: 0.01,
        ..FaultConfig::latency(Duration::from_millis(1))
    };
    let mut net = Net::new(faults, 22);
    let (ha, hb) = net.connect(80);
    let data = pattern(300_000, 7);
    let mut got = Vec::new();
    let mut sent = 0;
    let tape = Tape::default();
    let lend = |region: &mut [u8]| tape.lend(region);
    // Reads of several sizes: smaller than a segment, and several segments.
    for size in [700, 5000, 1 << 16].into_iter().cycle() {
        if got.len() == data.len() {
            break;
        }
        let mut buf = vec![0u8; size];
        let mut op = ops::Receive::new(ha, &mut buf, ReadMode::Some).lending(&lend);
        let mut out = None;
        let finished = net.run_until(Duration::from_secs(30), |n| {
            if let Some(c) = n.b.stack.tcp_mut().get_mut(hb) {
                sent += c.send(&data[sent..]).unwrap();
            }
            out = attempt_or_park(n, &mut op);
            out.is_some()
        });
        assert!(finished, "stalled at {} of {}", got.len(), data.len());
        let n = out.unwrap().unwrap();
        tape.settle(&mut buf);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == data, "the stream arrived altered");
}

#[test]
fn peek_leaves_data_for_the_next_read() {
    let mut net = Net::clean(6);
    let (ha, hb) = net.connect(80);
    b_sends(&mut net, hb, b"hello");
    let mut buf = [0u8; 16];
    let mut op = ops::Receive::new(ha, &mut buf, ReadMode::Peek);
    assert_eq!(
        run_on_a(&mut net, &mut op, Duration::from_secs(1))
            .unwrap()
            .unwrap(),
        5
    );
    // What a `recv(max)` takes of what is queued, and the sizes it asked buffers of.
    let mut sized = vec![];
    let mut take = |net: &mut Net, max: usize| {
        let mut op = ops::TakeQueued {
            handle: ha,
            max,
            make: |n| {
                sized.push(n);
                Some(vec![0u8; n])
            },
        };
        let got = attempt_or_park(net, &mut op).expect("never waits");
        got.map(|(v, n)| v[..n].to_vec())
    };
    assert_eq!(take(&mut net, 3).as_deref(), Some(&b"hel"[..]));
    assert_eq!(
        take(&mut net, 100).as_deref(),
        Some(&b"lo"[..]),
        "sized by what is queued"
    );
    assert_eq!(
        take(&mut net, 100),
        None,
        "nothing queued: done, for the caller to wait its own way"
    );
    assert_eq!(sized, [3, 2]);
}

#[test]
fn sendall_waits_for_room_and_send_takes_what_fits() {
    let small = TcpConfig {
        tx_buffer: 8192,
        ..TcpConfig::default()
    };
    let mut net = Net::clean_with(7, small, TcpConfig::default());
    let (ha, hb) = net.connect(80);
    let data = pattern(100_000, 2);
    let mut op = ops::Send::new(ha, &data, false);
    let n = run_on_a(&mut net, &mut op, Duration::from_secs(1))
        .unwrap()
        .unwrap();
    assert_eq!(n, 8192, "send takes what fits in the buffer");
    let mut op = ops::Send::new(ha, &data[n..], true);
    let mut received = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut out = None;
    net.run_until(Duration::from_secs(10), |net| {
        if let Ok(Some(k)) = net.b.stack.tcp_mut().get_mut(hb).unwrap().recv(&mut buf) {
            received.extend_from_slice(&buf[..k]);
        }
        let now = net.now;
        if out.is_none() {
            out = op.attempt(&mut net.a.stack, now);
        }
        received.len() == data.len()
    });
    assert_eq!(out.unwrap().unwrap(), data.len() - n);
    assert_eq!(received, data);
}

#[test]
fn a_probe_gets_its_reply_or_is_forgotten() {
    let mut net = Net::clean(8);
    let id = ProbeId { ident: 7, seq: 0 };
    let mut op = ops::Probe::send(&mut net.a.stack, net.now, B_IP, id, 56).unwrap();
    net.flush();
    let rtt = run_on_a(&mut net, &mut op, Duration::from_secs(1)).unwrap();
    // 1 ms each way, plus the ARP exchange the first packet waits for.
    assert!(
        rtt >= Duration::from_millis(2) && rtt <= Duration::from_millis(4),
        "{rtt:?}"
    );
    net.b.silent = true;
    let id = ProbeId { ident: 7, seq: 1 };
    let mut op = ops::Probe::send(&mut net.a.stack, net.now, B_IP, id, 56).unwrap();
    net.flush();
    assert!(run_on_a(&mut net, &mut op, Duration::from_millis(100)).is_none());
    assert!(net.a.stack.ping_rtt(id).is_none());
}

#[test]
fn readiness_follows_a_connection_through_its_life() {
    let small = TcpConfig {
        tx_buffer: 6000,
        ..TcpConfig::default()
    };
    let mut net = Net::clean_with(9, small, TcpConfig::default());
    net.b.stack.tcp_mut().listen(80, 4).unwrap();
    let ha = net.open(80);
    let connecting = tcp_ready(&net, ha);
    assert!(
        !connecting.readable && !connecting.writable,
        "{connecting:?}"
    );
    net.run_until(Duration::from_secs(1), |n| {
        n.b.stack.tcp().listener(80).unwrap().ready.len() == 1
    });
    assert!(readiness_of(&net.b.stack, Watched::Listener(80)).readable);
    let hb = net.b.stack.tcp_mut().accept(80).unwrap();
    assert!(!readiness_of(&net.b.stack, Watched::Listener(80)).readable);
    net.run_for(Duration::from_millis(5));
    let idle = tcp_ready(&net, ha);
    assert!(!idle.readable && idle.writable, "{idle:?}");

    // Data makes it readable; reading it all makes it not.
    b_sends(&mut net, hb, b"ping");
    net.run_for(Duration::from_millis(5));
    assert!(tcp_ready(&net, ha).readable);
    let mut buf = [0u8; 16];
    net.a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .recv(&mut buf)
        .unwrap();
    assert!(!tcp_ready(&net, ha).readable);

    // A full send buffer makes it not writable, until the peer's ACKs free a third.
    let c = net.a.stack.tcp_mut().get_mut(ha).unwrap();
    let low_water = readiness::write_low_water(c);
    while c.send(&[0u8; 1000]).unwrap() > 0 {}
    assert!(!tcp_ready(&net, ha).writable);
    net.flush();
    let mut drained = 0;
    net.run_until(Duration::from_secs(1), |n| {
        if let Ok(Some(k)) =
            n.b.stack
                .tcp_mut()
                .get_mut(hb)
                .unwrap()
                .recv(&mut [0u8; 4096])
        {
            drained += k;
        }
        tcp_ready(n, ha).writable
    });
    assert!(net.a.stack.tcp().get(ha).unwrap().send_capacity() >= low_water);

    // End of stream is readable.
    net.b.stack.tcp_mut().get_mut(hb).unwrap().shutdown_write();
    net.flush();
    net.run_for(Duration::from_millis(5));
    let eof = tcp_ready(&net, ha);
    assert!(eof.readable && !eof.error, "{eof:?}");

    // A reset is readable, writable and an error.
    net.b.stack.tcp_mut().release(hb, true);
    net.flush();
    net.run_for(Duration::from_millis(5));
    let reset = tcp_ready(&net, ha);
    assert!(reset.readable && reset.writable && reset.error, "{reset:?}");
    // A handle that is gone is ready for everything: its caller learns EBADF.
    net.a.stack.tcp_mut().release(ha, true);
    net.run_for(Duration::from_millis(5));
    assert_eq!(tcp_ready(&net, ha), readiness::GONE);
}

#[test]
fn a_datagram_makes_a_udp_socket_readable() {
    let mut net = Net::clean(10);
    let ha = net.a.stack.udp_bind(A_IP, 5000).unwrap();
    let hb = net.b.stack.udp_bind(B_IP, 5001).unwrap();
    let r = readiness_of(&net.a.stack, Watched::Udp(ha));
    assert!(!r.readable && r.writable);
    let now = net.now;
    net.b.stack.udp_send(now, hb, (A_IP, 5000), b"hi").unwrap();
    net.flush();
    net.run_for(Duration::from_millis(5));
    assert!(readiness_of(&net.a.stack, Watched::Udp(ha)).readable);
    let mut op = ops::ReceiveDatagram {
        handle: ha,
        peek: false,
    };
    let (data, src) = run_on_a(&mut net, &mut op, Duration::from_secs(1))
        .unwrap()
        .unwrap();
    assert_eq!((data.as_slice(), src), (&b"hi"[..], (B_IP.into(), 5001)));
    assert!(!readiness_of(&net.a.stack, Watched::Udp(ha)).readable);
}

/// What the runtime does after a round: the connections it marked, shown.
fn update(watches: &mut Watches, stack: &mut mipfast::stack::Stack) {
    let mut changed = Vec::new();
    stack.tcp_mut().take_changed(&mut changed);
    watches.update(stack, &changed);
}

#[test]
fn descriptors_follow_the_connections_the_engine_touched() {
    let mut net = Net::clean(12);
    let (ha, hb) = net.connect(80);
    let (other, _) = net.connect(80);
    let mut watches = Watches::default();
    net.a.stack.tcp_mut().follow_changes(); // as the live runtime does
    let key = Watched::Tcp(ha);
    watches.fd(&net.a.stack, key).unwrap();
    watches.fd(&net.a.stack, Watched::Tcp(other)).unwrap();
    assert_eq!(
        watches.shown(key),
        Some((false, true)),
        "writable, nothing to read"
    );

    b_sends(&mut net, hb, b"hello");
    net.run_for(Duration::from_millis(50));
    update(&mut watches, &mut net.a.stack);
    assert_eq!(watches.shown(key), Some((true, true)), "data arrived");
    assert_eq!(watches.shown(Watched::Tcp(other)), Some((false, true)));

    let mut buf = [0u8; 16];
    net.a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .recv(&mut buf)
        .unwrap();
    update(&mut watches, &mut net.a.stack);
    assert_eq!(watches.shown(key), Some((false, true)), "read empty again");

    net.b.stack.tcp_mut().release(hb, false);
    net.flush();
    net.run_for(Duration::from_millis(50));
    update(&mut watches, &mut net.a.stack);
    assert_eq!(
        watches.shown(key),
        Some((true, true)),
        "end of stream reads at once"
    );

    watches.shut();
    assert_eq!(watches.shown(Watched::Tcp(other)).map(|s| s.0), Some(true));
}

#[test]
fn status_rows_list_what_the_stack_holds() {
    use mipfast::runtime::status;
    let mut net = Net::clean(13);
    net.a.stack.tcp_mut().listen(8000, 8).unwrap();
    let (ha, hb) = net.connect(80);
    net.a
        .stack
        .tcp_mut()
        .get_mut(ha)
        .unwrap()
        .send(&pattern(5000, 1))
        .unwrap();
    net.flush();
    net.run_for(Duration::from_millis(100));
    let mut buf = [0u8; 8192];
    let got = net
        .b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .recv(&mut buf)
        .unwrap();
    assert_eq!(got, Some(5000));
    net.a.stack.udp_bind(A_IP, 5353).unwrap();

    let rows = status::tcp(&net.a.stack);
    assert_eq!(rows[0].state, "LISTEN");
    assert_eq!(
        (rows[0].local, rows[0].accept_queue),
        ((A_IP.into(), 8000), Some((0, 8)))
    );
    let conn = rows.iter().find(|r| r.state == "ESTABLISHED").unwrap();
    assert_eq!(conn.remote, Some((B_IP.into(), 80)));
    assert_eq!(
        (conn.bytes_out, conn.bytes_in, conn.retransmits),
        (5000, 0, 0)
    );
    assert!(conn.rtt.is_some() && conn.cwnd > 0 && conn.mss == 1448);

    let arp = status::arp(&net.a.stack, net.now);
    assert_eq!(arp.len(), 1);
    assert_eq!((arp[0].ip, arp[0].mac), (B_IP, Some(tcp_net::B_MAC)));
    assert!(arp[0].expires_in.unwrap() > Duration::ZERO);

    let udp = status::udp(&net.a.stack);
    assert_eq!(udp.len(), 1);
    assert_eq!(udp[0].local, (A_IP.into(), 5353));

    let summary = status::summary(&net.a.stack, net.now);
    assert_eq!(summary.address, Some((A_IP, 24)));
    assert_eq!(summary.dhcp, "static");
    let frames_in = summary
        .counters
        .iter()
        .find(|(k, _)| k == "frames_in")
        .unwrap()
        .1;
    assert!(frames_in >= 3, "the handshake and the ACKs came in");
    assert_eq!(
        (
            summary.tcp_connections,
            summary.udp_sockets,
            summary.arp_entries
        ),
        (1, 1, 1)
    );
}

/// Whether `fd` polls readable now.
fn polls_readable(fd: std::os::unix::io::RawFd) -> bool {
    mipfast::phy::poll::wait_readable(&[fd], Some(Duration::ZERO)).unwrap()
}

fn collect(set: &mut ReadySet, stack: &mipfast::stack::Stack) -> Vec<Event> {
    let mut out = Vec::new();
    set.collect(stack, &mut out);
    out
}

fn changed(set: &mut ReadySet, stack: &mut mipfast::stack::Stack) {
    let mut changed = Vec::new();
    stack.tcp_mut().take_changed(&mut changed);
    set.update(stack, &changed);
}

#[test]
fn a_ready_set_reports_what_turned_ready_and_signals_only_when_not_collecting() {
    let mut net = Net::clean(13);
    let (ha, hb) = net.connect(80);
    let (other, _) = net.connect(80);
    net.a.stack.tcp_mut().follow_changes();
    let mut set = ReadySet::new().unwrap();
    let stack = &net.a.stack;

    set.set(stack, Watched::Tcp(ha), 1, true, false);
    assert!(!polls_readable(set.fd()), "nothing to read yet");
    set.set(stack, Watched::Tcp(other), 2, false, true);
    assert!(
        polls_readable(set.fd()),
        "writable at once, as epoll_ctl reports"
    );
    assert_eq!(collect(&mut set, stack), vec![(2, false, true)]);
    assert!(
        !polls_readable(set.fd()),
        "collected: the descriptor is drained"
    );
    assert_eq!(
        collect(&mut set, stack),
        vec![],
        "not again until it changes"
    );

    // A round the loop runs itself: collected after, never signalled.
    set.collecting(true);
    b_sends(&mut net, hb, b"hello");
    net.run_for(Duration::from_millis(50));
    changed(&mut set, &mut net.a.stack);
    set.collecting(false);
    assert!(!polls_readable(set.fd()));
    assert_eq!(collect(&mut set, &net.a.stack), vec![(1, true, false)]);

    // A partial read leaves data: reported again, through the descriptor.
    let mut two = [0u8; 2];
    let conn = net.a.stack.tcp_mut().get_mut(ha).unwrap();
    assert_eq!(conn.recv(&mut two).unwrap(), Some(2));
    changed(&mut set, &mut net.a.stack);
    assert!(polls_readable(set.fd()));
    let mut rest = [0u8; 8];
    let conn = net.a.stack.tcp_mut().get_mut(ha).unwrap();
    assert_eq!(conn.recv(&mut rest).unwrap(), Some(3));
    changed(&mut set, &mut net.a.stack);
    assert_eq!(
        collect(&mut set, &net.a.stack),
        vec![],
        "drained before the loop looked: nothing is reported"
    );

    // Forgotten sockets are not reported; a shut stack reports the rest.
    set.set(&net.a.stack, Watched::Tcp(other), 2, false, false);
    set.shut();
    assert!(polls_readable(set.fd()));
    assert_eq!(collect(&mut set, &net.a.stack), vec![(1, true, false)]);
}
