//! A TCP conversation: after a real handshake with our listener, the
//! harness plays the peer with segments built from fuzzer-chosen fields
//! (flags, sequence and acknowledgement offsets relative to the
//! connection's current numbers, window, options, payload length), so that
//! data, SACK, FIN, RST, zero-window, PAWS and retransmission paths all run,
//! and the interface's MTU changes between segments now and then.
//! The debug build checks the connection's invariants after every event.
#![no_main]

#[path = "../harness/mod.rs"]
mod harness;

use harness::*;
use mipfast::iface::DEFAULT_MAC;
use mipfast::phy::Link;
use mipfast::stack::Stack;
use mipfast::time::Instant;
use mipfast::wire::tcp::{Flags, Options, Repr, Segment};
use mipfast::wire::{ethernet, ipv4, MacAddress};

const PEER_PORT: u16 = 40000;

/// What the peer knows of the conversation.
struct Peer {
    /// The peer's next sequence number (what we acknowledge).
    nxt: u32,
    /// Our sequence numbers as seen on the wire: lowest unacked by the peer, highest sent.
    our_una: u32,
    our_max: u32,
    ts: u32,
    our_ts: u32,
}

fn frame(dst: MacAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    ethernet::Repr {
        dst,
        src: PEER_MAC,
        ethertype,
    }
    .emit(&mut f);
    f[ethernet::HEADER_LEN..].copy_from_slice(payload);
    f
}

fn segment(repr: &Repr, payload: &[u8]) -> Vec<u8> {
    let tcp_len = repr.header_len() + payload.len();
    let mut packet = vec![0u8; ipv4::HEADER_LEN + tcp_len];
    ipv4::Repr::new(PEER_IP, OUR_IP, ipv4::PROTO_TCP, tcp_len, 1).emit(&mut packet);
    packet[ipv4::HEADER_LEN + repr.header_len()..].copy_from_slice(payload);
    repr.emit(
        &mut packet[ipv4::HEADER_LEN..],
        payload.len(),
        PEER_IP,
        OUR_IP,
    );
    frame(DEFAULT_MAC, ethernet::ETHERTYPE_IPV4, &packet)
}

/// Reads our segments to the peer: the numbers it would learn from them.
fn observe(stack: &mut Stack, peer: &mut Peer) {
    stack.drain_tx(|f| {
        let Ok(eth) = ethernet::Frame::new_checked(f) else {
            return;
        };
        let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
            return;
        };
        if ip.protocol() != ipv4::PROTO_TCP {
            return;
        }
        let seg =
            Segment::new_checked(ip.payload(), ip.src(), ip.dst()).expect("we emit valid TCP");
        let end = seg.seq().wrapping_add(seg.seq_len());
        if (end.wrapping_sub(peer.our_max) as i32) > 0 {
            peer.our_max = end;
        }
        if let Ok(o) = seg.options() {
            if let Some((val, _)) = o.timestamps {
                peer.our_ts = val;
            }
        }
    });
}

fn peer_segment(flags: Flags, seq: u32, ack: u32, window: u16, options: Options) -> Repr {
    Repr {
        src_port: PEER_PORT,
        dst_port: TCP_PORT,
        seq,
        ack,
        flags,
        window,
        options,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut stack = static_stack();
    let mut app = App::new(&mut stack);
    let mut now = Instant::ZERO;
    // The peer makes itself known, then opens a connection.
    introduce_peer(&mut stack, now);
    let handshake = input.u8();
    let timestamps = handshake & 1 != 0;
    let syn_options = Options {
        mss: Some(536 + (input.u16() % 1000)),
        window_scale: (handshake & 2 != 0).then_some(handshake >> 4),
        sack_permitted: handshake & 4 != 0,
        timestamps: timestamps.then_some((1, 0)),
        ..Default::default()
    };
    let mut peer = Peer {
        nxt: 1001,
        our_una: 0,
        our_max: 0,
        ts: 1,
        our_ts: 0,
    };
    let syn = peer_segment(Flags::SYN, 1000, 0, 65535, syn_options);
    stack.process_frame(now, &segment(&syn, &[]));
    stack.dispatch(now);
    let mut synack = None;
    stack.drain_tx(|f| {
        let eth = ethernet::Frame::new_checked(f).unwrap();
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        if let Ok(s) = Segment::new_checked(ip.payload(), ip.src(), ip.dst()) {
            synack = Some((s.seq(), s.options().ok().and_then(|o| o.timestamps)));
        }
    });
    let Some((iss, ts)) = synack else {
        panic!("no SYN-ACK to a valid SYN")
    };
    peer.our_una = iss.wrapping_add(1);
    peer.our_max = peer.our_una;
    peer.our_ts = ts.map_or(0, |t| t.0);
    let ack_options = Options {
        timestamps: timestamps.then_some((2, peer.our_ts)),
        ..Default::default()
    };
    let ack = peer_segment(Flags::ACK, 1001, peer.our_una, 65535, ack_options);
    stack.process_frame(now, &segment(&ack, &[]));
    app.run(&mut stack, now, 2);
    assert_eq!(app.accepted.len(), 1, "the handshake completes");
    stack.dispatch(now);
    observe(&mut stack, &mut peer);

    let payload = [0x5au8; 2048];
    while !input.is_empty() {
        let choice = input.u8();
        let mut flags = Flags(choice & 0x3f);
        if choice & 0x40 == 0 {
            flags = flags | Flags::ACK;
        }
        let seq_offset = input.u16() as i16;
        let seq = if choice & 0x80 != 0 {
            input.u32()
        } else {
            peer.nxt.wrapping_add(seq_offset as i32 as u32)
        };
        let in_flight = peer.our_max.wrapping_sub(peer.our_una) as usize;
        let ack_pick = input.u16() as usize;
        let ack = peer
            .our_una
            .wrapping_add((ack_pick % (in_flight + 64)) as u32)
            .wrapping_sub(32);
        let window = input.u16();
        let option_choice = input.u8();
        let mut options = Options::default();
        if timestamps && option_choice & 1 != 0 {
            // Mostly advancing; sometimes old (PAWS).
            if option_choice & 2 != 0 {
                peer.ts = peer.ts.wrapping_add(1);
            }
            let val = if option_choice & 4 != 0 {
                peer.ts.wrapping_sub(1 << 20)
            } else {
                peer.ts
            };
            options.timestamps = Some((val, peer.our_ts));
        }
        if syn_options.sack_permitted && option_choice & 8 != 0 {
            let blocks = 1 + (option_choice as usize >> 4) % 3;
            for b in 0..blocks {
                let l = peer
                    .our_una
                    .wrapping_add(input.u16() as u32)
                    .wrapping_sub(1000);
                let r = l.wrapping_add(input.u16() as u32 % 4000);
                options.sack_blocks[b] = (l, r);
            }
            options.sack_count = blocks as u8;
        }
        let len = (input.u8() as usize * 8).min(payload.len());
        advance(&mut now, input.u8());
        let app_choice = input.u8();
        if option_choice & 0x40 != 0 {
            // The interface's MTU changes under the conversation (nonsense included).
            let mtu = LINK_MTUS[(app_choice >> 5) as usize];
            stack.take_link(
                now,
                Link {
                    mtu,
                    ..Link::default()
                },
            );
        }
        let repr = peer_segment(flags, seq, ack, window, options);
        stack.process_frame(now, &segment(&repr, &payload[..len]));
        // What a well-behaved peer learns: its data up to where we ACK.
        if flags.contains(Flags::ACK)
            && (ack.wrapping_sub(peer.our_una) as i32) > 0
            && (peer.our_max.wrapping_sub(ack) as i32) >= 0
        {
            peer.our_una = ack;
        }
        if seq == peer.nxt && len > 0 && !flags.contains(Flags::RST) && !flags.contains(Flags::SYN)
        {
            peer.nxt = peer
                .nxt
                .wrapping_add(len as u32 + flags.contains(Flags::FIN) as u32);
        }
        app.run(&mut stack, now, app_choice);
        stack.poll_timers(now);
        observe(&mut stack, &mut peer);
        if let Some(t) = stack.poll_at() {
            assert!(
                t > now || {
                    stack.poll_timers(now);
                    stack.poll_at().is_none_or(|t| t > now)
                },
                "the stack's next deadline stays in the past"
            );
            observe(&mut stack, &mut peer);
        }
    }
    // Whatever happened, the connection ends by its timers.
    for _ in 0..64 {
        match stack.poll_at() {
            Some(t) => {
                now = t.max(now);
                stack.poll_timers(now);
                stack.drain_tx(|_| {});
            }
            None => break,
        }
    }
});
