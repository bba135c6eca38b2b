//! Bridges over the in-memory link with simulated time: a connection joined
//! to a socketpair moves bytes both ways intact, passes end of stream on in
//! each direction, and a reset or a vanished socket ends both sides.

mod tcp_net;

use mipfast::phy::poll;
use mipfast::phy::stream_fd::StreamFd;
use mipfast::runtime::bridge::{BridgeFate, Bridges};
use mipfast::socket::tcp::{Connection, Handle};
use mipfast::stack::Stack;
use mipfast::time::{Duration, Instant};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use tcp_net::{pattern, Net};

/// A's connection to B joined to a socketpair; returns the bridges, the
/// user's end of the pair (non-blocking), A's handle and B's, and where
/// the bridge's end is told.
fn bridged(
    net: &mut Net,
    portable: bool,
) -> (Bridges, UnixStream, Handle, Handle, Arc<BridgeFate>) {
    let (ha, hb) = net.connect(80);
    let (user, theirs) = UnixStream::pair().unwrap();
    user.set_nonblocking(true).unwrap();
    net.a.stack.tcp_mut().follow_changes(); // as the live runtime does
    let mut bridges = if portable {
        Bridges::portable()
    } else {
        Bridges::default()
    };
    let fate = bridges.add(ha, StreamFd::new(theirs.into()).unwrap(), 0);
    (bridges, user, ha, hb, fate)
}

/// One round as the driver runs it: the bridges stepped are only those
/// whose connection changed or whose socket `poll()` reports.
fn pump(bridges: &mut Bridges, stack: &mut Stack, now: Instant) -> usize {
    let mut interests = Vec::new();
    bridges.interests(stack, &mut interests);
    let mut ready = Vec::new();
    poll::wait_ready(&interests, Some(Duration::ZERO), &mut ready).unwrap();
    bridges.sockets_ready(&ready);
    let mut changed = Vec::new();
    stack.tcp_mut().take_changed(&mut changed);
    let moved = bridges.pump(stack, &changed, now);
    // What the pump marked is taken by the runtime's publish, for its
    // watches, not left for the next pump.
    stack.tcp_mut().take_changed(&mut Vec::new());
    moved
}

/// Reads what the user's end has; true at end of stream.
fn drain(user: &mut UnixStream, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        match user.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => into.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("reading the user's end: {e}"),
        }
    }
}

/// B's turn: sends what is left of `down` (then its end of stream) and
/// takes what came into `at_b`; true once it read the user's end of stream.
fn b_turn(
    c: &mut Connection,
    down: &[u8],
    sent: &mut usize,
    shut: &mut bool,
    at_b: &mut Vec<u8>,
) -> bool {
    if *sent < down.len() {
        *sent += c.send(&down[*sent..]).unwrap();
    } else if !*shut {
        c.shutdown_write();
        *shut = true;
    }
    let mut buf = [0u8; 65536];
    while let Ok(Some(k)) = c.recv(&mut buf) {
        if k == 0 {
            return true;
        }
        at_b.extend_from_slice(&buf[..k]);
    }
    false
}

fn bytes_cross_both_ways_and_end_of_stream_passes_on(portable: bool) {
    let mut net = Net::clean(21);
    let (mut bridges, mut user, _, hb, fate) = bridged(&mut net, portable);
    let up = pattern(1 << 20, 1); // user → B
    let down = pattern(1 << 20, 2); // B → user
    let (mut up_sent, mut down_sent) = (0, 0);
    let (mut at_b, mut at_user) = (Vec::new(), Vec::new());
    let (mut user_shut, mut b_shut, mut user_eof, mut b_eof) = (false, false, false, false);
    let ok = net.run_until(Duration::from_secs(60), |n| {
        if up_sent < up.len() {
            match user.write(&up[up_sent..]) {
                Ok(k) => up_sent += k,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("writing the user's end: {e}"),
            }
        } else if !user_shut {
            user.shutdown(Shutdown::Write).unwrap();
            user_shut = true;
        }
        user_eof |= drain(&mut user, &mut at_user);
        pump(&mut bridges, &mut n.a.stack, n.now);
        let c = n.b.stack.tcp_mut().get_mut(hb).unwrap();
        b_eof |= b_turn(c, &down, &mut down_sent, &mut b_shut, &mut at_b);
        user_eof && b_eof
    });
    assert!(ok, "both streams ended");
    assert!(at_b == up, "B got the user's bytes intact");
    assert!(at_user == down, "the user got B's bytes intact");
    let released = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        bridges.is_empty()
    });
    assert!(released, "a bridge whose two streams ended lets go");
    assert_eq!(fate.failure(), None, "a clean end is no failure");
    net.run_for(Duration::from_secs(300));
    assert_eq!(
        net.a.stack.tcp().len(),
        0,
        "the connection closed and was freed"
    );
}

/// The user's last bytes and its end of stream reach the socket together,
/// after the bridge had found it empty: one report covers both, and the FIN
/// still follows the data (a short read is no proof the socket is empty).
fn end_of_stream_right_behind_the_data_is_not_missed(portable: bool) {
    let mut net = Net::clean(24);
    let (mut bridges, mut user, _, hb, _) = bridged(&mut net, portable);
    let first = pattern(1000, 4);
    user.write_all(&first).unwrap();
    let mut at_b = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut b_eof = false;
    let mut read_b = |n: &mut Net, at_b: &mut Vec<u8>| {
        let c = n.b.stack.tcp_mut().get_mut(hb).unwrap();
        while let Ok(Some(k)) = c.recv(&mut buf) {
            if k == 0 {
                return true;
            }
            at_b.extend_from_slice(&buf[..k]);
        }
        false
    };
    let got_first = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        read_b(n, &mut at_b);
        at_b.len() == first.len()
    });
    assert!(got_first, "the first bytes crossed");
    let last = pattern(3000, 5);
    user.write_all(&last).unwrap();
    user.shutdown(Shutdown::Write).unwrap();
    let ended = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        b_eof |= read_b(n, &mut at_b);
        b_eof
    });
    assert!(ended, "B saw the end of the user's stream");
    assert!(at_b == [first, last].concat(), "every byte before it");
}

fn a_reset_from_the_peer_ends_the_users_stream(portable: bool) {
    let mut net = Net::clean(22);
    let (mut bridges, mut user, _, hb, fate) = bridged(&mut net, portable);
    assert_eq!(fate.failure(), None, "open");
    net.b.stack.tcp_mut().release(hb, true);
    net.flush();
    let mut got = Vec::new();
    let ended = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        bridges.is_empty() && drain(&mut user, &mut got)
    });
    assert!(ended, "the user's end reads end of stream");
    assert!(got.is_empty());
    assert_eq!(fate.failure(), Some(libc::ECONNRESET), "told how it ended");
    net.run_for(Duration::from_secs(1));
    assert_eq!(net.a.stack.tcp().len(), 0, "the reset connection is freed");
}

fn a_user_who_goes_away_resets_the_peer(portable: bool) {
    let mut net = Net::clean(23);
    let (mut bridges, user, _, hb, _) = bridged(&mut net, portable);
    drop(user);
    let data = pattern(4096, 3);
    let c = net.b.stack.tcp_mut().get_mut(hb).unwrap();
    c.send(&data).unwrap();
    net.flush();
    let reset = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        n.b.stack.tcp().get(hb).is_some_and(|c| c.error().is_some())
    });
    assert!(reset, "B's connection is reset");
    assert!(bridges.is_empty());
}

fn nothing_is_read_from_the_socket_while_the_send_buffer_is_full(portable: bool) {
    let mut net = Net::clean(24);
    let (mut bridges, mut user, ha, _, _) = bridged(&mut net, portable);
    // B never reads: A's send buffer and B's window fill, and the rest
    // stays in the socketpair, where the user's writes then block.
    let data = pattern(32 << 20, 4);
    let mut sent = 0;
    net.run_until(Duration::from_secs(10), |n| {
        if let Ok(k) = user.write(&data[sent..]) {
            sent += k;
        }
        pump(&mut bridges, &mut n.a.stack, n.now);
        false
    });
    assert!(sent < data.len(), "back-pressure reached the user's writes");
    let a = net.a.stack.tcp().get(ha).unwrap();
    assert_eq!(a.send_capacity(), 0, "the send buffer is full");
    pump(&mut bridges, &mut net.a.stack, net.now); // what was reported is taken
    let mut interests = Vec::new();
    bridges.interests(&net.a.stack, &mut interests);
    let woken = poll::wait(&interests, Some(Duration::from_millis(20))).unwrap();
    assert!(
        !woken,
        "the driver is not woken for a socket it cannot drain (no busy loop)"
    );
}

/// Whether the user's end shows writable now.
fn writable(user: &UnixStream) -> bool {
    use std::os::unix::io::AsRawFd;
    let asked = [poll::Interest {
        fd: user.as_raw_fd(),
        readable: false,
        writable: true,
    }];
    poll::wait(&asked, Some(Duration::ZERO)).unwrap()
}

/// Fills the user's end until it no longer shows writable, as
/// `mipfast.bridge` holds it during a handshake; returns the bytes written.
fn hold_writability(user: &mut UnixStream) -> usize {
    let zeros = [0u8; 16384];
    let mut held = 0;
    while writable(user) {
        match user.write(&zeros) {
            Ok(n) => held += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("holding the user's end: {e}"),
        }
    }
    held
}

/// A's connection joined while its handshake is under way, the user's end
/// held unwritable; returns the bridges, the user's end and where the
/// bridge's end is told.
fn bridged_while_connecting(
    net: &mut Net,
    portable: bool,
    port: u16,
) -> (Bridges, UnixStream, Arc<BridgeFate>) {
    let ha = net.open(port);
    let (mut user, theirs) = UnixStream::pair().unwrap();
    user.set_nonblocking(true).unwrap();
    net.a.stack.tcp_mut().follow_changes();
    let held = hold_writability(&mut user);
    assert!(held > 0 && !writable(&user));
    let mut bridges = if portable {
        Bridges::portable()
    } else {
        Bridges::default()
    };
    let fate = bridges.add(ha, StreamFd::new(theirs.into()).unwrap(), held);
    (bridges, user, fate)
}

/// A non-blocking connect()'s socket: not writable until the handshake is
/// over, then writable, and the bytes that held it so never reach the peer.
fn a_bridge_joined_during_the_handshake_frees_its_end_when_connected(portable: bool) {
    let mut net = Net::clean(25);
    net.b.stack.tcp_mut().listen(80, 16).unwrap();
    let (mut bridges, mut user, fate) = bridged_while_connecting(&mut net, portable, 80);
    pump(&mut bridges, &mut net.a.stack, net.now);
    assert!(!writable(&user), "held while the SYN is out");
    let mut hb = None;
    let connected = net.run_until(Duration::from_secs(10), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        hb = hb.or_else(|| n.b.stack.tcp_mut().accept(80));
        writable(&user) && hb.is_some()
    });
    assert!(connected, "writable once the handshake is over");
    let hb = hb.expect("B accepted");
    let data = pattern(5000, 6);
    user.write_all(&data).unwrap();
    let mut at_b = Vec::new();
    let mut buf = vec![0u8; 65536];
    let crossed = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        let c = n.b.stack.tcp_mut().get_mut(hb).unwrap();
        while let Ok(Some(k)) = c.recv(&mut buf) {
            if k == 0 {
                break;
            }
            at_b.extend_from_slice(&buf[..k]);
        }
        at_b.len() >= data.len()
    });
    assert!(
        crossed && at_b == data,
        "B got the user's bytes and nothing else"
    );
    assert_eq!(fate.failure(), None);
}

/// A refused connect: the user's end ends (a reset, as AF_UNIX reports a
/// peer gone with bytes unread: the hold), turns writable, and the
/// bridge's fate says ECONNREFUSED (for SO_ERROR).
fn a_refused_handshake_ends_the_held_end(portable: bool) {
    let mut net = Net::clean(26);
    let (mut bridges, mut user, fate) = bridged_while_connecting(&mut net, portable, 81);
    let ended = net.run_until(Duration::from_secs(10), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        bridges.is_empty()
    });
    assert!(ended, "the bridge ended");
    match user.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the user's end did not end: {other:?}"),
    }
    assert!(
        writable(&user),
        "and shows writable, as a failed connect does"
    );
    assert_eq!(fate.failure(), Some(libc::ECONNREFUSED));
}

/// A connecting socket its program closes: the bridge ends at once and the
/// attempt with it; the peer's answer to the SYN already out is refused, so
/// neither end keeps a connection.
fn a_bridge_aborted_during_the_handshake_leaves_no_connection(portable: bool) {
    let mut net = Net::clean(27);
    net.b.stack.tcp_mut().listen(80, 16).unwrap();
    let (mut bridges, mut user, _) = bridged_while_connecting(&mut net, portable, 80);
    let (ha, _) = net.a.stack.tcp().iter().next().expect("A is connecting");
    assert!(bridges.abort(&mut net.a.stack, ha));
    assert!(bridges.is_empty() && !bridges.abort(&mut net.a.stack, ha));
    match user.read(&mut [0u8; 16]) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("the user's end did not end: {other:?}"),
    }
    let mut accepted = None;
    net.run_until(Duration::from_secs(5), |n| {
        accepted = accepted.or_else(|| n.b.stack.tcp_mut().accept(80));
        false
    });
    assert_eq!(net.a.stack.tcp().len(), 0, "A's attempt is gone");
    assert_eq!(accepted, None, "B never had a connection to hand out");
}

/// A bridge stepped with nothing to move (just joined, or its socket
/// reported for a read that finds it empty) must still be stepped for what
/// its peer sends next: the step marks the connection, and a connection
/// still marked is not reported again (a request through a bridge waited
/// out the 40 ms of a delayed ACK so).
fn a_bridge_stepped_for_nothing_still_hears_its_peer(portable: bool) {
    let mut net = Net::clean(28);
    let (mut bridges, mut user, _, hb, _) = bridged(&mut net, portable);
    pump(&mut bridges, &mut net.a.stack, net.now); // reads nothing, moves nothing
                                                   // B's bytes reach A's device before A's next round, as a reply reaches
                                                   // the driver asleep on the device: that round takes them first thing.
    let data = pattern(100, 7);
    let now = net.now;
    net.b
        .stack
        .tcp_mut()
        .get_mut(hb)
        .unwrap()
        .send(&data)
        .unwrap();
    net.b.stack.dispatch(now);
    net.b.stack.flush(now, &mut net.b.dev);
    net.now = now + Duration::from_millis(50);
    net.a.stack.poll(net.now, &mut net.a.dev).unwrap();
    pump(&mut bridges, &mut net.a.stack, net.now);
    let mut got = Vec::new();
    drain(&mut user, &mut got);
    assert_eq!(got, data, "the round that took them stepped the bridge");
}

/// B's connection `hb` sends what its send buffer takes of `data` after
/// `sent` bytes.
fn b_sends(stack: &mut Stack, hb: Handle, data: &[u8], sent: &mut usize) {
    if let Some(conn) = stack.tcp_mut().get_mut(hb) {
        *sent += conn.send(&data[*sent..]).unwrap_or(0);
    }
}

/// Reads what A's connection `h` holds for its user.
fn read_connection(stack: &mut Stack, h: Handle, into: &mut Vec<u8>) {
    let mut buf = vec![0u8; 65536];
    while let Some(conn) = stack.tcp_mut().get_mut(h) {
        match conn.recv(&mut buf) {
            Ok(Some(n)) if n > 0 => into.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
}

/// A bridge released mid-stream (an event loop's transport takes the
/// connection over from its socket): what the user's end had written
/// reaches the peer, and what the peer sent arrives whole and in order
/// across the handover: what the user's end holds, then what the release
/// returns, then what the connection still has.
fn a_released_bridge_hands_its_connection_back_whole(portable: bool) {
    let mut net = Net::clean(29);
    let (mut bridges, mut user, ha, hb, fate) = bridged(&mut net, portable);
    // More than the user's end, the bridge and A's receive buffer hold: the
    // handover finds bytes in each.
    let down = pattern(16 << 20, 3); // B → A
    let up = pattern(3000, 4); // the user → B, written just before the release
    let mut sent = 0;
    net.run_until(Duration::from_millis(500), |n| {
        b_sends(&mut n.b.stack, hb, &down, &mut sent);
        pump(&mut bridges, &mut n.a.stack, n.now);
        false
    });
    user.write_all(&up).unwrap();
    let pending = bridges
        .release(&mut net.a.stack, ha)
        .expect("a bridge with nothing held back is released");
    assert!(bridges.is_empty() && bridges.release(&mut net.a.stack, ha).is_none());
    let mut got = Vec::new();
    assert!(
        drain(&mut user, &mut got),
        "the user's end ends behind what it holds"
    );
    let in_socket = got.len();
    got.extend_from_slice(&pending);
    let mut at_b = Vec::new();
    let mut buf = vec![0u8; 65536];
    let whole = net.run_until(Duration::from_secs(60), |n| {
        b_sends(&mut n.b.stack, hb, &down, &mut sent);
        read_connection(&mut n.a.stack, ha, &mut got);
        if let Some(Ok(Some(k))) = n.b.stack.tcp_mut().get_mut(hb).map(|c| c.recv(&mut buf)) {
            at_b.extend_from_slice(&buf[..k]);
        }
        got.len() >= down.len() && at_b.len() >= up.len()
    });
    assert!(whole, "the rest came through the connection");
    assert!(
        in_socket > 0 && !pending.is_empty(),
        "part waited in the socket ({in_socket} bytes), part in the bridge ({})",
        pending.len()
    );
    assert!(got == down, "the peer's bytes arrived whole and in order");
    assert_eq!(at_b, up, "what the user's end wrote went out");
    assert_eq!(fate.failure(), None);
    let state = net.a.stack.tcp().get(ha).map(|c| c.state());
    assert!(state.is_some(), "the connection goes on, its user's again");
}

/// A bridge still holding its end (the handshake not over) is not released:
/// the hold's bytes are not the application's, so the release would hand
/// them over as if they were. The bridge goes on and frees its end as ever.
fn a_bridge_still_holding_its_end_is_not_released(portable: bool) {
    let mut net = Net::clean(30);
    net.b.stack.tcp_mut().listen(80, 16).unwrap();
    let (mut bridges, user, _) = bridged_while_connecting(&mut net, portable, 80);
    let (ha, _) = net.a.stack.tcp().iter().next().expect("A is connecting");
    assert!(bridges.release(&mut net.a.stack, ha).is_none());
    assert_eq!(bridges.len(), 1, "the bridge goes on");
    let freed = net.run_until(Duration::from_secs(5), |n| {
        pump(&mut bridges, &mut n.a.stack, n.now);
        writable(&user)
    });
    assert!(freed, "and frees its end once connected");
}

/// The application's own reads and sends on a bridged connection (a
/// blocking patched socket's `recv` and `sendall`) mixed at random with
/// reads and writes of its socket: both streams arrive whole and in order,
/// the direct calls taken only when nothing in the socket or the bridge
/// must come first; a direct reader holds the bridge back, the peer's end
/// of stream included, and the bridge goes on when it leaves.
fn direct_calls_and_the_socket_keep_both_streams_in_order(portable: bool) {
    let mut net = Net::clean(31);
    let (mut bridges, mut user, ha, hb, fate) = bridged(&mut net, portable);
    let up = pattern(1 << 20, 5); // the user → B
    let down = pattern(1 << 20, 6); // B → the user
    let (mut up_at, mut down_sent) = (0, 0);
    let (mut at_b, mut at_user) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 65536];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut roll = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let (mut direct_reads, mut direct_sends, mut refused_reads, mut refused_sends) = (0, 0, 0, 0);
    let (mut b_shut, mut user_eof) = (false, false);
    let ok = net.run_until(Duration::from_secs(60), |n| {
        // The user: a few chunks up, some asked to go directly (allowed
        // only while nothing it wrote waits in the socket).
        for _ in 0..1 + roll(3) {
            if up_at == up.len() {
                break;
            }
            let chunk = &up[up_at..up.len().min(up_at + 1 + roll(3000) as usize)];
            let direct = roll(2) == 0;
            if direct && bridges.may_send_direct(ha) {
                let conn = n.a.stack.tcp_mut().get_mut(ha).unwrap();
                up_at += conn.send(chunk).unwrap();
                direct_sends += 1;
            } else {
                refused_sends += direct as u32;
                match user.write(chunk) {
                    Ok(k) => up_at += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => panic!("writing the user's end: {e}"),
                }
            }
        }
        // A read, directly when nothing waits in the socket or the bridge;
        // a direct reader sometimes stays over a pump, as a blocked one does.
        if roll(2) == 0 {
            user_eof |= drain(&mut user, &mut at_user);
        }
        let direct = roll(2) == 0;
        if direct && bridges.begin_direct_read(ha, user.as_raw_fd()) {
            direct_reads += 1;
            if roll(2) == 0 {
                pump(&mut bridges, &mut n.a.stack, n.now);
                let mut none = [0u8; 1];
                assert!(
                    matches!(user.read(&mut none), Err(e) if e.kind() == ErrorKind::WouldBlock),
                    "nothing moves down past a direct reader"
                );
            }
            let conn = n.a.stack.tcp_mut().get_mut(ha).unwrap();
            let end = buf.len().min(1 + roll(5000) as usize);
            if let Ok(Some(k)) = conn.recv(&mut buf[..end]) {
                at_user.extend_from_slice(&buf[..k]);
            }
            bridges.end_direct_read(ha);
        } else {
            refused_reads += direct as u32;
            user_eof |= drain(&mut user, &mut at_user);
        }
        pump(&mut bridges, &mut n.a.stack, n.now);
        let c = n.b.stack.tcp_mut().get_mut(hb).unwrap();
        b_turn(c, &down, &mut down_sent, &mut b_shut, &mut at_b);
        user_eof && at_b.len() == up.len()
    });
    assert!(
        ok,
        "both streams came through, and the peer's end reached the socket"
    );
    assert!(at_b == up, "B got the user's bytes in order");
    assert!(at_user == down, "the user got B's bytes in order");
    assert!(
        direct_reads > 20 && direct_sends > 20 && refused_reads > 20 && refused_sends > 20,
        "both ways were taken: {direct_reads} direct reads, {direct_sends} direct sends, \
         {refused_reads} reads and {refused_sends} direct sends left to the socket"
    );
    assert_eq!(
        (bridges.direct_reads, bridges.direct_sends),
        (direct_reads, direct_sends)
    );
    user.shutdown(Shutdown::Write).unwrap();
    assert!(
        !bridges.may_send_direct(ha),
        "an end of stream not yet pumped comes before any direct send"
    );
    assert_eq!(fate.failure(), None);
}

/// A read of a connection that has no bridge yet (the patch makes a
/// blocking client's bridge only when its descriptor is needed) is under way
/// when another thread has the bridge made: the bridge holds back what the
/// read waits for, and moves what comes after it, in order.
fn an_early_read_keeps_its_bytes_from_a_bridge_made_meanwhile(portable: bool) {
    let mut net = Net::clean(31);
    let (ha, hb) = net.connect(80);
    net.a.stack.tcp_mut().follow_changes();
    let mut bridges = if portable {
        Bridges::portable()
    } else {
        Bridges::default()
    };
    assert!(bridges.begin_early_read(ha), "no bridge yet: an early read");
    let (mut user, theirs) = UnixStream::pair().unwrap();
    user.set_nonblocking(true).unwrap();
    let fate = bridges.add(ha, StreamFd::new(theirs.into()).unwrap(), 0);
    assert!(
        !bridges.begin_early_read(ha),
        "with its bridge, the socket reads as a bridged one"
    );
    let first = pattern(1000, 5);
    let second = pattern(3000, 6);
    let mut sent = 0;
    net.run_until(Duration::from_millis(200), |n| {
        b_sends(&mut n.b.stack, hb, &first, &mut sent);
        pump(&mut bridges, &mut n.a.stack, n.now);
        false
    });
    let mut got = Vec::new();
    assert!(
        !drain(&mut user, &mut got) && got.is_empty(),
        "held back for the read"
    );
    let mut early = Vec::new();
    read_connection(&mut net.a.stack, ha, &mut early);
    assert_eq!(early, first, "the read takes what it waited for");
    bridges.end_direct_read(ha);
    let mut sent = 0;
    let through = net.run_until(Duration::from_secs(10), |n| {
        b_sends(&mut n.b.stack, hb, &second, &mut sent);
        pump(&mut bridges, &mut n.a.stack, n.now);
        drain(&mut user, &mut got);
        got.len() >= second.len()
    });
    assert!(
        through && got == second,
        "what came after the read goes to the socket"
    );
    assert_eq!(fate.failure(), None);
}

/// Each test on both paths: the epoll set (Linux) and `poll()` on every
/// socket (other systems).
macro_rules! on_both_paths {
    ($($name:ident),*) => {
        mod edge_set {
            $(#[test] fn $name() { super::$name(false) })*
        }
        mod portable {
            $(#[test] fn $name() { super::$name(true) })*
        }
    };
}

on_both_paths!(
    bytes_cross_both_ways_and_end_of_stream_passes_on,
    end_of_stream_right_behind_the_data_is_not_missed,
    a_reset_from_the_peer_ends_the_users_stream,
    a_user_who_goes_away_resets_the_peer,
    nothing_is_read_from_the_socket_while_the_send_buffer_is_full,
    a_bridge_joined_during_the_handshake_frees_its_end_when_connected,
    a_refused_handshake_ends_the_held_end,
    a_bridge_aborted_during_the_handshake_leaves_no_connection,
    a_bridge_stepped_for_nothing_still_hears_its_peer,
    a_released_bridge_hands_its_connection_back_whole,
    a_bridge_still_holding_its_end_is_not_released,
    direct_calls_and_the_socket_keep_both_streams_in_order,
    an_early_read_keeps_its_bytes_from_a_bridge_made_meanwhile
);
