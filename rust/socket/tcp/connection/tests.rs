//! Segment-level tests of the connection, part by part: a hand-built
//! segment in, the exact segments out. Timestamps are off unless a test is
//! about them, so that every header can be written down.

use super::{Connection, State};
use crate::socket::tcp::seq::Seq;
use crate::socket::tcp::{Error, Incoming, Keepalive, TcpConfig};
use crate::time::{Duration, Instant};
use crate::wire::tcp::{Flags, Options};
use crate::wire::Ipv4Addr;
use crate::wire::SegmentText;
use std::net::IpAddr;

const LOCAL: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 50000);
const REMOTE: (IpAddr, u16) = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 80);
const ISS: u32 = 1000;
const IRS: u32 = 5000;
const MSS: usize = 1460;

/// One segment the connection sent, as the wire would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    seq: u32,
    ack: u32,
    flags: Flags,
    window: u16,
    options: Options,
    payload: Vec<u8>,
}

struct Harness {
    c: Connection,
    now: Instant,
}

fn plain() -> TcpConfig {
    TcpConfig {
        timestamps: false,
        window_scale: false,
        rx_buffer: 65535,
        ..Default::default()
    }
}

impl Harness {
    /// Everything a dispatch sends now.
    fn dispatch(&mut self) -> Vec<Sent> {
        let mut sent = Vec::new();
        self.c.dispatch(self.now, &mut |o| {
            let (a, b) = o.payload;
            sent.push(Sent {
                seq: o.repr.seq,
                ack: o.repr.ack,
                flags: o.repr.flags,
                window: o.repr.window,
                options: o.repr.options,
                payload: [a, b].concat(),
            });
            true
        });
        sent
    }

    /// A segment from the peer, then what the connection sends in answer.
    fn input(&mut self, seg: Segment, payload: &[u8]) -> Vec<Sent> {
        let mut sent = self.process(seg, payload);
        sent.extend(self.dispatch());
        sent
    }

    /// A segment from the peer within a round: what goes before the
    /// round's dispatch.
    fn process(&mut self, seg: Segment, payload: &[u8]) -> Vec<Sent> {
        let incoming = Incoming {
            src: REMOTE.0,
            dst: LOCAL.0,
            src_port: REMOTE.1,
            dst_port: LOCAL.1,
            seq: Seq(seg.seq),
            ack: Seq(seg.ack),
            flags: seg.flags,
            window: seg.window,
            options: seg.options,
            payload: SegmentText::here(payload),
        };
        let mut sent = Vec::new();
        // Most answers wait for the dispatch; a duplicate ACK to a peer
        // without SACK goes at once.
        self.c.process(self.now, &incoming, &mut |o| {
            sent.push(Sent {
                seq: o.repr.seq,
                ack: o.repr.ack,
                flags: o.repr.flags,
                window: o.repr.window,
                options: o.repr.options,
                payload: vec![],
            });
            true
        });
        sent
    }

    fn at(&mut self, t: Duration) -> Vec<Sent> {
        self.now += t;
        self.dispatch()
    }

    /// An established connection (active open), its SYN and ACK consumed.
    fn established(config: TcpConfig) -> Harness {
        let c = Connection::connect(config, Instant::ZERO, LOCAL, REMOTE, Seq(ISS));
        let mut h = Harness {
            c,
            now: Instant::ZERO,
        };
        let syn = h.dispatch();
        assert_eq!(syn.len(), 1);
        let mut options = Options {
            mss: Some(MSS as u16),
            sack_permitted: config.sack,
            ..Default::default()
        };
        options.window_scale = config.window_scale.then_some(7);
        h.now += Duration::from_millis(10);
        let ack = h.input(
            Segment {
                flags: Flags::SYN | Flags::ACK,
                options,
                ..seg(IRS, ISS + 1)
            },
            &[],
        );
        assert_eq!(h.c.state(), State::Established);
        assert_eq!(ack.len(), 1, "{ack:?}");
        h
    }
}

/// A segment from the peer: fields that matter, defaults for the rest.
#[derive(Debug, Clone, Copy)]
struct Segment {
    seq: u32,
    ack: u32,
    flags: Flags,
    window: u16,
    options: Options,
}

fn seg(seq: u32, ack: u32) -> Segment {
    Segment {
        seq,
        ack,
        flags: Flags::ACK,
        window: 65535,
        options: Options::default(),
    }
}

fn ack_of(h: &Harness) -> Sent {
    Sent {
        seq: h.c.send_next().0,
        ack: IRS + 1,
        flags: Flags::ACK,
        window: 65535,
        options: Options::default(),
        payload: vec![],
    }
}

// ----- the handshake and input processing (input.rs) -----

#[test]
fn active_open_sends_the_syn_and_acknowledges_the_syn_ack() {
    let config = plain();
    let mut h = Harness {
        c: Connection::connect(config, Instant::ZERO, LOCAL, REMOTE, Seq(ISS)),
        now: Instant::ZERO,
    };
    let syn = h.dispatch();
    assert_eq!(
        syn,
        vec![Sent {
            seq: ISS,
            ack: 0,
            flags: Flags::SYN,
            window: 65535,
            options: Options {
                mss: Some(MSS as u16),
                sack_permitted: true,
                ..Default::default()
            },
            payload: vec![],
        }]
    );
    assert!(
        h.at(Duration::from_millis(1)).is_empty(),
        "one SYN until the timer"
    );
    let synack = Segment {
        flags: Flags::SYN | Flags::ACK,
        options: Options {
            mss: Some(1000),
            sack_permitted: true,
            ..Default::default()
        },
        ..seg(IRS, ISS + 1)
    };
    let out = h.input(synack, &[]);
    assert_eq!(
        out,
        vec![Sent {
            seq: ISS + 1,
            ..ack_of(&h)
        }]
    );
    assert_eq!(
        (h.c.state(), h.c.mss(), h.c.sack_enabled()),
        (State::Established, 1000, true)
    );
}

#[test]
fn a_reset_must_match_exactly_and_others_draw_a_challenge_ack() {
    let mut h = Harness::established(plain());
    let rst = |seq| Segment {
        flags: Flags::RST,
        ..seg(seq, 0)
    };
    // In the window, not exact (RFC 5961 §3.2): one challenge ACK.
    assert_eq!(h.input(rst(IRS + 100), &[]), vec![ack_of(&h)]);
    // Another within 100 ms is not answered (the rate limit).
    assert_eq!(h.input(rst(IRS + 200), &[]), vec![]);
    assert_eq!(h.c.state(), State::Established);
    assert_eq!(h.input(rst(IRS + 1), &[]), vec![]);
    assert_eq!(
        (h.c.state(), h.c.error()),
        (State::Closed, Some(Error::Reset))
    );
}

#[test]
fn an_unacceptable_segment_is_answered_with_an_ack_only() {
    let mut h = Harness::established(plain());
    // Entirely before RCV.NXT (an old duplicate): ACK, nothing taken;
    // the ACK reports the duplicate (D-SACK, RFC 2883).
    let mut dsack = ack_of(&h);
    dsack.options.sack_blocks[0] = (IRS - 100, IRS - 97);
    dsack.options.sack_count = 1;
    assert_eq!(h.input(seg(IRS - 100, ISS + 1), b"old"), vec![dsack]);
    assert_eq!(h.c.recv_available(), 0);
    // An ACK of data never sent: an ACK back, nothing else changes.
    assert_eq!(h.input(seg(IRS + 1, ISS + 500), &[]), vec![ack_of(&h)]);
    assert_eq!(h.c.send_unacked(), Seq(ISS + 1));
}

#[test]
fn paws_drops_a_segment_with_an_old_timestamp() {
    let config = TcpConfig {
        timestamps: true,
        ..plain()
    };
    let c = Connection::connect(config, Instant::ZERO, LOCAL, REMOTE, Seq(ISS));
    let mut h = Harness {
        c,
        now: Instant::ZERO,
    };
    h.dispatch();
    let ts = |val| Options {
        mss: Some(MSS as u16),
        timestamps: Some((val, 0)),
        ..Default::default()
    };
    h.input(
        Segment {
            flags: Flags::SYN | Flags::ACK,
            options: ts(1_000),
            ..seg(IRS, ISS + 1)
        },
        &[],
    );
    assert!(h.c.timestamps_enabled());
    let old = Segment {
        options: Options {
            timestamps: Some((999, 0)),
            ..Default::default()
        },
        ..seg(IRS + 1, ISS + 1)
    };
    let out = h.input(old, b"replayed");
    assert_eq!(out.len(), 1, "an ACK, as RFC 7323 §5.3 asks");
    assert!(out[0].payload.is_empty() && out[0].options.timestamps.is_some());
    assert_eq!(
        h.c.recv_available(),
        0,
        "the old segment's data is not taken"
    );
}

// ----- the receive side (receive.rs) -----

#[test]
fn in_order_data_is_acknowledged_late_then_every_second_segment() {
    let mut h = Harness::established(plain());
    let data = vec![7u8; MSS];
    // One full segment: the ACK waits (delayed ACK, 40 ms).
    assert_eq!(h.input(seg(IRS + 1, ISS + 1), &data), vec![]);
    assert_eq!(h.c.poll_at(), Some(h.now + Duration::from_millis(40)));
    // A second: acknowledged at once (RFC 5681 §4.2).
    let out = h.input(seg(IRS + 1 + MSS as u32, ISS + 1), &data);
    assert_eq!(
        out,
        vec![Sent {
            ack: IRS + 1 + 2 * MSS as u32,
            window: (65535 - 2 * MSS) as u16,
            ..ack_of(&h)
        }]
    );
    // A third alone: the delayed ACK timer sends it.
    assert_eq!(
        h.input(seg(IRS + 1 + 2 * MSS as u32, ISS + 1), &data[..100]),
        vec![]
    );
    let out = h.at(Duration::from_millis(40));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, IRS + 1 + 2 * MSS as u32 + 100);
}

/// A passive open (a listener's connection) with window scaling: the
/// SYN-ACK's window is not scaled, so the right edge it offers is its own
/// number of bytes. Taken as scaled, the edge stood eight times too far,
/// and once a slow reader had let the buffer fill, the window update after
/// its read never went: the sender waited for its persist timer.
#[test]
fn a_passive_open_with_window_scaling_sends_the_window_update_after_a_full_buffer_is_read() {
    let config = TcpConfig {
        timestamps: false,
        sack: false,
        rx_buffer: 256 << 10,
        ..Default::default()
    };
    let syn = Incoming {
        src: REMOTE.0,
        dst: LOCAL.0,
        src_port: REMOTE.1,
        dst_port: LOCAL.1,
        seq: Seq(IRS),
        ack: Seq(0),
        flags: Flags::SYN,
        window: 65535,
        options: Options {
            mss: Some(MSS as u16),
            window_scale: Some(7),
            ..Default::default()
        },
        payload: SegmentText::here(&[]),
    };
    let mut h = Harness {
        c: Connection::accept(config, Instant::ZERO, LOCAL, &syn, Seq(ISS)),
        now: Instant::ZERO,
    };
    let synack = h.dispatch();
    assert_eq!(synack[0].window, 65535, "{synack:?}");
    h.input(seg(IRS + 1, ISS + 1), &[]);
    assert_eq!(h.c.state(), State::Established);
    // The sender fills the buffer; the reader is late.
    let data = vec![7u8; MSS];
    let mut next = IRS + 1;
    let mut last = None;
    while next - (IRS + 1) + (MSS as u32) <= 256 << 10 {
        last = h.input(seg(next, ISS + 1), &data).pop().or(last);
        next += MSS as u32;
    }
    let last = h.at(Duration::from_millis(40)).pop().or(last).unwrap();
    assert_eq!(last.ack, next);
    assert!((last.window as usize) << 3 < 2 * MSS, "{last:?}");
    // The reader takes everything: the window opens, and the sender hears so.
    let mut buf = vec![0u8; 256 << 10];
    assert_eq!(h.c.recv(&mut buf), Ok(Some((next - IRS - 1) as usize)));
    let update = h.dispatch();
    assert_eq!(update.len(), 1, "no window update: {update:?}");
    assert_eq!(update[0].window as usize, (256 << 10) >> 3);
}

/// SO_RCVBUF made larger than the window scale can say: the window opens
/// to the most a window field carries, and reads do not each send an
/// update that cannot say more.
#[test]
fn a_receive_buffer_larger_than_the_scale_allows_sends_no_useless_updates() {
    let mut h = Harness::established(plain()); // no scaling: 65,535 at most
    h.c.set_rx_buffer(1 << 20);
    let data = vec![7u8; MSS];
    let mut next = IRS + 1;
    let mut buf = vec![0u8; MSS];
    let mut sent = Vec::new();
    for _ in 0..20 {
        sent.extend(h.input(seg(next, ISS + 1), &data));
        next += MSS as u32;
        assert_eq!(h.c.recv(&mut buf), Ok(Some(MSS)));
        h.c.maybe_window_update();
        sent.extend(h.dispatch());
    }
    assert!(sent.iter().all(|s| s.window == 65535), "{sent:?}");
    // An ACK every second segment (RFC 5681 §4.2), no update per read.
    assert_eq!(sent.len(), 10, "{sent:?}");
}

/// SO_RCVBUF made smaller under a sender: the window already offered is
/// kept (RFC 9293 §3.8.6.2.2), everything sent within it is taken, and only
/// once the peer has filled it does the window follow the new buffer.
#[test]
fn a_receive_buffer_made_smaller_keeps_the_window_offered_then_follows() {
    let mut h = Harness::established(plain());
    let edge = IRS + 1 + 65535;
    let data = vec![7u8; MSS];
    let mut next = IRS + 1;
    let mut send = |h: &mut Harness, n: usize| {
        let mut acks = Vec::new();
        for _ in 0..n {
            acks.extend(h.input(seg(next, ISS + 1), &data));
            next += MSS as u32;
        }
        acks.extend(h.at(Duration::from_millis(40)));
        acks
    };
    let acks = send(&mut h, 2);
    assert_eq!(
        acks.last().unwrap().ack + acks.last().unwrap().window as u32,
        edge
    );
    h.c.set_rx_buffer(4096);
    assert_eq!(h.c.config().rx_buffer, 4096);
    // Within the window offered: all taken, the right edge stays.
    let acks = send(&mut h, 40);
    assert!(
        acks.iter().all(|a| a.ack + a.window as u32 == edge),
        "{acks:?}"
    );
    assert_eq!(acks.last().unwrap().ack, next);
    // Read, and the window offered still stands until it is filled.
    let mut buf = vec![0u8; 1 << 17];
    assert_eq!(h.c.recv(&mut buf), Ok(Some(42 * MSS)));
    let rest = (edge - next) as usize;
    assert!(rest < 4 * MSS);
    let acks = h.input(seg(next, ISS + 1), &vec![7u8; rest]);
    next += rest as u32;
    let acks = [acks, h.at(Duration::from_millis(40))].concat();
    assert_eq!(acks.last().unwrap().ack, next);
    assert_eq!(h.c.recv(&mut buf), Ok(Some(rest)));
    // Filled and read: the window is the new buffer's.
    h.c.maybe_window_update();
    let update = h.dispatch();
    assert_eq!(update.last().unwrap().window, 4096, "{update:?}");
    // And text beyond it is not taken.
    let acks = h.input(seg(next, ISS + 1), &[7u8; 4096 + 100]);
    assert_eq!(acks.last().unwrap().ack, next + 4096);
}

#[test]
fn out_of_order_data_is_sacked_at_once_and_a_fin_closes_the_stream() {
    let mut h = Harness::established(plain());
    let later = IRS + 1 + 100;
    let out = h.input(seg(later, ISS + 1), b"world");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, IRS + 1);
    assert_eq!(out[0].options.sack_blocks(), &[(later, later + 5)]);
    // The hole filled: one ACK for everything, no SACK left.
    let out = h.input(seg(IRS + 1, ISS + 1), &[b'x'; 100]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].ack, out[0].options.sack_count), (later + 5, 0));
    let fin = Segment {
        flags: Flags::FIN | Flags::ACK,
        ..seg(later + 5, ISS + 1)
    };
    let out = h.input(fin, &[]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, later + 6, "the FIN takes one sequence number");
    assert_eq!(h.c.state(), State::CloseWait);
    let mut buf = [0u8; 200];
    assert_eq!(h.c.recv(&mut buf), Ok(Some(105)));
    assert_eq!(h.c.recv(&mut buf), Ok(Some(0)));
}

#[test]
fn a_segment_late_within_a_round_is_not_sacked_but_without_sack_each_dupack_goes() {
    let mut h = Harness::established(plain());
    let later = IRS + 1 + 100;
    // Overtaken within one round: one ACK at its end, for both, no SACK.
    assert_eq!(h.process(seg(later, ISS + 1), b"world"), vec![]);
    assert_eq!(h.process(seg(IRS + 1, ISS + 1), &[b'x'; 100]), vec![]);
    let out = h.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].ack, out[0].options.sack_count), (later + 5, 0));

    let mut h = Harness::established(TcpConfig {
        sack: false,
        ..plain()
    });
    // The sender counts duplicate ACKs (RFC 5681 §3.2): one per segment.
    for i in 0..3 {
        let out = h.process(seg(later + 10 * i, ISS + 1), &[b'y'; 10]);
        assert_eq!((out.len(), out[0].ack), (1, IRS + 1));
    }
}

#[test]
fn text_that_comes_twice_is_reported_once_in_a_dsack_block() {
    let mut h = Harness::established(plain());
    let base = IRS + 1;
    assert_eq!(h.input(seg(base, ISS + 1), &[1; 200]), vec![]);
    // Wholly old (a retransmission whose original arrived): RFC 2883 §4.1.1.
    let out = h.input(seg(base + 50, ISS + 1), &[1; 100]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, base + 200);
    assert_eq!(out[0].options.sack_blocks(), &[(base + 50, base + 150)]);
    // Partly old: the old part is reported, the new part taken.
    let out = h.input(seg(base + 150, ISS + 1), &[1; 100]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, base + 250);
    assert_eq!(out[0].options.sack_blocks(), &[(base + 150, base + 200)]);
    // Said once: the next ACK carries no D-SACK.
    let out = h.input(seg(base + 250, ISS + 1), &[1; MSS]);
    assert_eq!(out, vec![]);
    let out = h.at(Duration::from_millis(40));
    assert_eq!((out.len(), out[0].options.sack_count), (1, 0));
    // Beyond a hole, held twice: the duplicate first, then the block
    // holding it (RFC 2883 §4.1.2).
    let hole = base + 250 + MSS as u32;
    let later = hole + 1000;
    let out = h.input(seg(later, ISS + 1), &[2; 300]);
    assert_eq!(out[0].options.sack_blocks(), &[(later, later + 300)]);
    let out = h.input(seg(later + 100, ISS + 1), &[2; 100]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].ack, hole);
    assert_eq!(
        out[0].options.sack_blocks(),
        &[(later + 100, later + 200), (later, later + 300)]
    );
}

#[test]
fn no_dsack_to_a_peer_without_sack() {
    let mut h = Harness::established(TcpConfig {
        sack: false,
        ..plain()
    });
    let base = IRS + 1;
    assert_eq!(h.input(seg(base, ISS + 1), &[1; 200]), vec![]);
    let out = h.input(seg(base, ISS + 1), &[1; 200]);
    assert_eq!(
        (out.len(), out[0].ack, out[0].options.sack_count),
        (1, base + 200, 0)
    );
}

// ----- the send side (output.rs) -----

#[test]
fn data_goes_in_mss_segments_with_psh_on_the_last_and_nagle_holds_a_small_one() {
    let mut h = Harness::established(plain());
    assert_eq!(h.c.send(&[1u8; 2 * MSS + 100]), Ok(2 * MSS + 100));
    let out = h.dispatch();
    let lens: Vec<_> = out
        .iter()
        .map(|s| (s.seq - ISS - 1, s.payload.len()))
        .collect();
    // The last 100 bytes wait: Nagle, with data in flight (RFC 896).
    assert_eq!(lens, vec![(0, MSS), (MSS as u32, MSS)]);
    assert!(out.iter().all(|s| s.flags == Flags::ACK));
    // The ACK of both: the small remainder goes, with PSH.
    let out = h.input(seg(IRS + 1, ISS + 1 + 2 * MSS as u32), &[]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].payload.len(), out[0].flags),
        (100, Flags::ACK | Flags::PSH)
    );
    // With TCP_NODELAY a small write goes at once even with data in flight.
    h.c.set_nodelay(true);
    h.c.send(b"now").unwrap();
    let out = h.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"now");
}

#[test]
fn shutdown_write_sends_the_fin_after_the_data() {
    let mut h = Harness::established(plain());
    h.c.send(b"bye").unwrap();
    h.c.shutdown_write();
    let out = h.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, Flags::ACK | Flags::FIN | Flags::PSH);
    assert_eq!(out[0].payload, b"bye");
    assert_eq!(h.c.state(), State::FinWait1);
    assert_eq!(h.c.send(b"more"), Err(Error::BrokenPipe));
    h.input(seg(IRS + 1, ISS + 1 + 4), &[]);
    assert_eq!(h.c.state(), State::FinWait2);
}

// ----- user calls (user.rs) -----

#[test]
fn user_calls_answer_as_the_states_say() {
    let mut c = Connection::connect(plain(), Instant::ZERO, LOCAL, REMOTE, Seq(ISS));
    assert_eq!(c.send(b"x"), Err(Error::NotConnected));
    assert_eq!(c.recv(&mut [0; 4]), Err(Error::NotConnected));
    c.shutdown_write();
    assert_eq!(
        c.state(),
        State::Closed,
        "a FIN before the SYN is answered ends it"
    );
    // Closing with unread data resets the peer (RFC 2525 §2.17).
    let mut h = Harness::established(plain());
    h.input(seg(IRS + 1, ISS + 1), b"unread");
    h.c.close();
    let out = h.dispatch();
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].flags, out[0].seq), (Flags::RST, ISS + 1));
    assert_eq!(h.c.state(), State::Closed);
}

#[test]
fn so_linger_with_no_time_closes_with_a_reset_and_with_a_time_settles_after_the_fin_is_acked() {
    // No time: queued data is dropped and a reset goes, as Linux's close sends.
    let mut h = Harness::established(TcpConfig {
        linger: Some(Duration::ZERO),
        ..plain()
    });
    h.c.set_nodelay(false);
    h.c.send(b"never sent").unwrap();
    h.c.close();
    let out = h.dispatch();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].flags, out[0].seq), (Flags::RST, ISS + 1));
    assert_eq!(h.c.state(), State::Closed);
    assert!(h.c.close_settled());

    // A time: the close is the usual FIN, settled once it is acknowledged.
    let mut h = Harness::established(TcpConfig {
        linger: Some(Duration::from_secs(5)),
        ..plain()
    });
    h.c.send(b"bye").unwrap();
    h.c.close();
    let out = h.dispatch();
    assert_eq!(out.len(), 1);
    assert!(out[0].flags.contains(Flags::FIN), "{out:?}");
    assert!(
        !h.c.close_settled(),
        "FIN-WAIT-1: the FIN is not acknowledged yet"
    );
    h.input(seg(IRS + 1, ISS + 1 + 4), &[]);
    assert_eq!(h.c.state(), State::FinWait2);
    assert!(h.c.close_settled());
}

// ----- loss recovery (recovery.rs) -----

#[test]
fn three_duplicate_acks_retransmit_the_first_segment_at_once() {
    let mut h = Harness::established(plain());
    h.c.send(&[2u8; 5 * MSS]).unwrap();
    let first = h.dispatch();
    assert!(first.len() >= 4, "{} segments", first.len());
    let dup = seg(IRS + 1, ISS + 1);
    assert!(h.input(dup, &[]).iter().all(|s| s.seq != ISS + 1));
    assert!(h.input(dup, &[]).iter().all(|s| s.seq != ISS + 1));
    let out = h.input(dup, &[]);
    assert_eq!(out[0].seq, ISS + 1, "fast retransmit (RFC 5681 §3.2)");
    assert_eq!(out[0].payload.len(), MSS);
}

#[test]
fn a_tail_loss_probe_then_the_retransmission_timer_resend_and_back_off() {
    let mut h = Harness::established(plain());
    h.c.send(b"lost").unwrap();
    assert_eq!(h.dispatch().len(), 1);
    let sent_at = h.now;
    let rto = h.c.rto();
    // RFC 8985 §7.2: the probe comes first, at 2·SRTT plus a delayed ACK
    // for a lone segment (SRTT 10 ms from the handshake).
    let probe_at = h.c.poll_at().unwrap();
    assert_eq!(probe_at, sent_at + Duration::from_millis(2 * 10 + 40));
    let out = h.at(probe_at.saturating_since(h.now));
    assert_eq!((out.len(), out[0].seq, h.c.retries()), (1, ISS + 1, 0));
    assert_eq!(h.c.poll_at(), Some(sent_at + rto));
    let out = h.at((sent_at + rto).saturating_since(h.now));
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].seq, out[0].payload.as_slice()),
        (ISS + 1, &b"lost"[..])
    );
    assert_eq!(h.c.retries(), 1);
    assert_eq!(h.c.rto(), rto + rto, "RFC 6298 §5.5: doubled");
    assert_eq!(h.c.poll_at(), Some(h.now + rto + rto));
}

// ----- timers (timers.rs) -----

#[test]
fn keepalive_probes_an_idle_connection_then_gives_up() {
    let config = TcpConfig {
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(2),
            probes: 2,
        }),
        ..plain()
    };
    let mut h = Harness::established(config);
    let idle_since = h.now;
    assert_eq!(h.c.poll_at(), Some(idle_since + Duration::from_secs(10)));
    let out = h.at(Duration::from_secs(10));
    // RFC 9293 §3.8.4: SEG.SEQ = SND.NXT − 1, no data.
    assert_eq!(
        out,
        vec![Sent {
            seq: ISS,
            ..ack_of(&h)
        }]
    );
    assert_eq!(h.at(Duration::from_secs(2)).len(), 1);
    let out = h.at(Duration::from_secs(2));
    assert_eq!((out.len(), out[0].flags), (1, Flags::RST));
    assert_eq!(
        (h.c.state(), h.c.error()),
        (State::Closed, Some(Error::TimedOut))
    );
}

// ----- path MTU (path.rs) -----

#[test]
fn fragmentation_needed_shrinks_segments_and_resends_in_flight_data() {
    let mut h = Harness::established(plain());
    h.c.send(&[3u8; 2 * MSS]).unwrap();
    assert_eq!(h.dispatch().len(), 2);
    // A quote outside the data in flight is not believed.
    assert_eq!(
        h.c.path_mtu_reduced(1000, Seq(ISS + 1 + 2 * MSS as u32)),
        None
    );
    assert_eq!(
        h.c.path_mtu_reduced(1000, Seq(ISS + 1 + MSS as u32)),
        Some(true)
    );
    assert_eq!(h.c.mss(), 960);
    let out = h.dispatch();
    let lens: Vec<_> = out
        .iter()
        .map(|s| (s.seq - ISS - 1, s.payload.len()))
        .collect();
    assert_eq!(
        lens[0],
        (0, 960),
        "resent at once from SND.UNA, at the new size"
    );
    assert!(lens.iter().all(|&(_, n)| n <= 960));
    assert_eq!(
        h.c.path_mtu_reduced(1000, Seq(ISS + 1)),
        Some(false),
        "known already"
    );
    assert_eq!(
        h.c.path_mtu_reduced(1200, Seq(ISS + 1)),
        None,
        "only smaller sizes"
    );
}

/// A lent buffer whose filled bytes the test can look at afterwards.
struct SharedLent {
    buf: Vec<u8>,
    filled: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl crate::socket::tcp::LentBuffer for SharedLent {
    fn spare(&mut self) -> &mut [u8] {
        &mut self.buf
    }
    fn advance(&mut self, n: usize) {
        self.filled.lock().unwrap().extend(self.buf.drain(..n));
    }
}

/// A text held by its device, counting how it was read.
struct CountingHeld<'a> {
    text: &'a [u8],
    reads: Vec<(usize, Vec<usize>)>,
}

impl crate::wire::HeldText for CountingHeld<'_> {
    fn len(&self) -> usize {
        self.text.len()
    }
    fn scatter(&mut self, skip: usize, parts: &mut [&mut [u8]]) -> bool {
        self.reads
            .push((skip, parts.iter().map(|p| p.len()).collect()));
        SegmentText::here(self.text).scatter(skip, parts)
    }
    fn whole_frame(&mut self) -> Option<&[u8]> {
        None
    }
}

#[test]
fn held_text_is_read_once_into_the_lent_buffer_and_the_ring() {
    let mut h = Harness::established(TcpConfig::default());
    let text: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    // 100 bytes the connection has had already, then 1000 new ones.
    let old = vec![7u8; 100];
    h.input(seg(IRS + 1, ISS + 1), &old);
    let mut out = [0u8; 100];
    assert_eq!(h.c.recv(&mut out).unwrap(), Some(100));
    let filled = std::sync::Arc::default();
    let lent = SharedLent {
        buf: vec![0; 600],
        filled: std::sync::Arc::clone(&filled),
    };
    assert!(h.c.post_receive(Box::new(lent)));
    let mut whole = old.clone();
    whole.extend_from_slice(&text);
    let held = std::cell::RefCell::new(CountingHeld {
        text: &whole,
        reads: vec![],
    });
    let s = seg(IRS + 1, ISS + 1);
    let incoming = Incoming {
        src: REMOTE.0,
        dst: LOCAL.0,
        src_port: REMOTE.1,
        dst_port: LOCAL.1,
        seq: Seq(s.seq),
        ack: Seq(s.ack),
        flags: s.flags,
        window: s.window,
        options: s.options,
        payload: SegmentText::held(&held),
    };
    h.c.process(h.now, &incoming, &mut |_| true);
    // One read: the 100 bytes seen before skipped, 600 into the reader's
    // buffer, 400 into the ring.
    assert_eq!(held.borrow().reads, vec![(100, vec![600, 400, 0])]);
    assert!(h.c.take_lent_filled());
    assert_eq!(h.c.take_posted(), 600);
    assert_eq!(*filled.lock().unwrap(), text[..600]);
    let mut rest = [0u8; 1000];
    assert_eq!(h.c.recv(&mut rest).unwrap(), Some(400));
    assert_eq!(rest[..400], text[600..]);
}
