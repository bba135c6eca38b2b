//! TCP between two of our stacks over the in-memory link: handshake and
//! options, and byte-exact bulk transfers under seeded faults.

mod tcp_net;

use mipfast::iface::{DropReason, RxChecksum, TxFrame, CHECKSUM_ONLY};
use mipfast::phy::fault::FaultConfig;
use mipfast::phy::link::LinkEnd;
use mipfast::phy::{Device, FrameSink};
use mipfast::socket::tcp::{Algorithm, Handle, SharedText, State, TcpConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::checksum::finish_partial;
use mipfast::wire::{HeldInMemory, HeldText};
use std::cell::RefCell;
use std::sync::Arc;
use tcp_net::*;

#[test]
fn handshake_negotiates_options() {
    let mut net = Net::clean(1);
    let (ha, hb) = net.connect(80);
    let (a, b) = (net.conn_a(ha), net.conn_b(hb));
    assert_eq!(a.state(), State::Established);
    assert_eq!(b.state(), State::Established);
    // 1500 - 20 - 20 - 12 bytes of timestamp option.
    assert_eq!((a.mss(), b.mss()), (1448, 1448));
    assert!(a.sack_enabled() && b.sack_enabled());
    assert!(a.timestamps_enabled() && b.timestamps_enabled());
    // 4 MiB buffers need a shift of 7 (65535 << 7 ≥ 4 MiB > 65535 << 6).
    assert_eq!(a.window_shifts(), (7, 7));
    assert_eq!(a.remote(), (B_IP.into(), 80));
    assert_eq!(b.remote(), a.local());
    assert!((49152..=65535).contains(&a.local().1));
    // RTT measured on the handshake: 2 ms on this link, plus the ARP exchange
    // the SYN waited for.
    let srtt = a.srtt().unwrap();
    assert!(
        srtt >= Duration::from_millis(2) && srtt <= Duration::from_millis(4),
        "{srtt:?}"
    );
}

#[test]
fn options_off_fall_back() {
    let plain = TcpConfig {
        sack: false,
        timestamps: false,
        window_scale: false,
        ..Default::default()
    };
    let mut net = Net::clean_with(2, TcpConfig::default(), plain);
    let (ha, _) = net.connect(80);
    let a = net.conn_a(ha);
    assert_eq!(a.mss(), 1460);
    assert!(!a.sack_enabled() && !a.timestamps_enabled());
    assert_eq!(a.window_shifts(), (0, 0));
}

/// Moves `len` bytes each way at once; returns the connections' handles.
fn bulk(net: &mut Net, len: usize, limit: Duration) -> (Handle, Handle) {
    let (ha, hb) = net.connect(5001);
    let mut ab = Transfer::new(pattern(len, 1));
    let mut ba = Transfer::new(pattern(len, 2));
    let finished = net.run_until(limit, |n| {
        ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        ba.step(&mut n.b.stack, hb, &mut n.a.stack, ha);
        ab.done() && ba.done()
    });
    if !finished {
        eprintln!("A: {:?}", net.a.stack.tcp().get(ha).map(|c| c.summary()));
        eprintln!("B: {:?}", net.b.stack.tcp().get(hb).map(|c| c.summary()));
    }
    assert!(
        finished,
        "transfer stalled at {}/{} and {}/{} bytes, now {:?}",
        ab.received, len, ba.received, len, net.now
    );
    assert_eq!(ab.received, len);
    assert_eq!(ba.received, len);
    assert_eq!(ab.hash, Fnv::of(&ab.data));
    assert_eq!(ba.hash, Fnv::of(&ba.data));
    let (a, b) = (net.conn_a(ha).traffic(), net.conn_b(hb).traffic());
    assert_eq!(
        (a.bytes_received, b.bytes_received),
        (len as u64, len as u64)
    );
    assert!(a.bytes_acked <= len as u64 && b.bytes_acked <= len as u64);
    (ha, hb)
}

#[test]
fn ten_megabytes_each_way_on_a_clean_link() {
    let mut net = Net::clean(3);
    let (ha, hb) = bulk(&mut net, 10 << 20, Duration::from_secs(60));
    // Both closed their write side and read EOF: the connection ends, by a
    // simultaneous close (both FINs crossed) or one after the other.
    net.run_for(Duration::from_secs(1));
    let ends = [net.conn_a(ha).state(), net.conn_b(hb).state()];
    for s in ends {
        assert!(matches!(s, State::TimeWait | State::Closed), "{ends:?}");
    }
    assert!(
        ends.contains(&State::TimeWait),
        "someone keeps TIME-WAIT: {ends:?}"
    );
    assert_eq!(net.conn_a(ha).send_queued(), 0);
    let traffic = net.conn_a(ha).traffic();
    assert_eq!(traffic.bytes_acked, 10 << 20, "every byte acknowledged");
    assert_eq!(traffic.retransmits, 0, "nothing resent on a clean link");
    net.run_for(Duration::from_secs(61)); // 2·MSL
    assert_eq!(net.a.stack.tcp().active() + net.b.stack.tcp().active(), 0);
}

fn faulty() -> FaultConfig {
    FaultConfig {
        loss: 0.10,
        reorder: 0.05,
        duplicate: 0.01,
        corrupt: 0.01,
        ..FaultConfig::latency(Duration::from_millis(1))
    }
}

/// The size of the faulty transfers: the 10 MB in release builds
/// (the test script's), 1 MB in debug builds where the engine is ~20× slower.
fn faulty_len() -> usize {
    if cfg!(debug_assertions) {
        1 << 20
    } else {
        10 << 20
    }
}

#[test]
fn byte_exact_under_loss_reorder_duplication_and_corruption_over_50_seeds() {
    let mut corrupted = 0;
    for seed in 0..50 {
        let mut net = Net::new(faulty(), 1000 + seed);
        let (ha, hb) = bulk(&mut net, faulty_len(), Duration::from_secs(3600));
        let resent = net.conn_a(ha).traffic().retransmits + net.conn_b(hb).traffic().retransmits;
        assert!(resent > 0, "losses were repaired by retransmissions");
        let stats = net.a.dev.fault_stats();
        assert!(stats.lost > 0 && stats.reordered > 0, "{stats:?}");
        corrupted += stats.corrupted;
    }
    // About 8 frames a seed: one seed may draw none (it did once).
    assert!(corrupted > 100, "only {corrupted} frames corrupted");
}

#[test]
fn newreno_and_no_sack_also_recover() {
    for (seed, sack, algorithm) in [
        (7, false, Algorithm::NewReno),
        (8, false, Algorithm::Cubic),
        (9, true, Algorithm::NewReno),
    ] {
        let config = TcpConfig {
            sack,
            algorithm,
            ..Default::default()
        };
        let mut net = Net::with_configs(faulty(), seed, config, config);
        bulk(&mut net, faulty_len() / 4, Duration::from_secs(3600));
    }
}

/// A frame as the stack handed it to its device, in one piece.
#[derive(Debug, Clone)]
struct Sent {
    bytes: Vec<u8>,
    segment_size: u16,
}

impl Sent {
    fn of(frame: &TxFrame<'_>) -> Self {
        Sent {
            bytes: frame.contiguous().into_owned(),
            segment_size: frame.segment_size,
        }
    }
    fn view(&self) -> TxFrame<'_> {
        TxFrame::whole(&self.bytes, self.segment_size)
    }
}

/// A's device in [`flights`]: the link, with every batch recorded as the
/// stack handed it over (bursts whole). Without `forward` the frames are
/// only recorded (for [`SuperFrames`] to deliver); ACKs still come in.
struct Tee<'a> {
    link: &'a mut LinkEnd,
    frames: &'a mut Vec<Sent>,
    forward: bool,
}

impl Device for Tee<'_> {
    fn receive(&mut self, now: Instant, sink: &mut FrameSink<'_>) -> std::io::Result<usize> {
        self.link.receive(now, sink)
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> std::io::Result<()> {
        self.frames.push(Sent {
            bytes: frame.to_vec(),
            segment_size: 0,
        });
        match self.forward {
            true => self.link.transmit(now, frame),
            false => Ok(()),
        }
    }
    fn transmit_batch(&mut self, now: Instant, frames: &[TxFrame<'_>]) -> usize {
        self.frames.extend(frames.iter().map(Sent::of));
        match self.forward {
            true => self.link.transmit_batch(now, frames),
            false => 0,
        }
    }
}

/// A sends 300 kB to B (slow start from the initial window, 1 ms each way,
/// 100 µs steps), over IPv4 or between link-local IPv6 addresses; returns
/// what A handed its device.
fn flights(burst_capacity: usize, ipv6: bool) -> Vec<Sent> {
    let a = TcpConfig {
        burst_capacity,
        ..Default::default()
    };
    let latency = FaultConfig::latency(Duration::from_millis(1));
    let (mut net, (ha, hb)) = if ipv6 {
        let mut net = Net::with_ipv6_configs(latency, 5, a, TcpConfig::default());
        let ends = net.connect_from(link_local(A_MAC), (link_local(B_MAC), 80));
        (net, ends)
    } else {
        let mut net = Net::clean_with(5, a, TcpConfig::default());
        let ends = net.connect(80);
        (net, ends)
    };
    let mut transfer = Transfer::new(pattern(300_000, 3));
    let mut frames = vec![];
    for _ in 0..2000 {
        let now = net.now;
        let mut tee = Tee {
            link: &mut net.a.dev,
            frames: &mut frames,
            forward: true,
        };
        net.a.stack.poll(now, &mut tee).unwrap();
        net.b.stack.poll(now, &mut net.b.dev).unwrap();
        transfer.step(&mut net.a.stack, ha, &mut net.b.stack, hb);
        net.now = now + Duration::from_micros(100);
    }
    assert_eq!(transfer.received, 300_000);
    assert_eq!(transfer.hash, Fnv::of(&transfer.data));
    frames
}

#[test]
fn bursts_become_the_very_segments_sent_one_by_one() {
    for ipv6 in [false, true] {
        bursts_match_single_segments(ipv6);
    }
}

fn bursts_match_single_segments(ipv6: bool) {
    let single = flights(0, ipv6);
    let bursts = flights(65535, ipv6);
    assert!(single.iter().all(|f| f.segment_size == 0));
    // 1500 less the IP header, TCP's 20 bytes and 12 of timestamps.
    let (mss, ethertype, ip_len) = match ipv6 {
        false => (1448, [8, 0], 20),
        true => (1428, [0x86, 0xdd], 40),
    };
    assert!(
        bursts
            .iter()
            .any(|f| f.segment_size == mss && f.view().wire_size().0 >= 10),
        "the initial window of 10 segments leaves as one burst"
    );
    assert!(bursts.iter().all(|f| f.bytes.len() <= 14 + 65535));
    // Where the device cuts bursts it finishes every TCP checksum: a lone
    // segment goes as a burst of one, its checksum field left partial.
    let protocol_at = if ipv6 { 20 } else { 23 };
    let is_tcp = |f: &&Sent| f.bytes[12..14] == ethertype && f.bytes[protocol_at] == 6;
    assert!(bursts.iter().filter(is_tcp).count() > 3);
    assert!(bursts.iter().filter(is_tcp).all(|f| f.segment_size > 0));
    let lone: Vec<&Sent> = bursts
        .iter()
        .filter(|f| f.segment_size == CHECKSUM_ONLY)
        .collect();
    assert!(!lone.is_empty(), "the last segment, shorter than the rest");
    let checksum_at = 14 + ip_len + 16;
    for f in lone {
        let mut finished = vec![];
        f.view()
            .for_each_segment(&mut |s| finished.push(s.to_vec()));
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0][..checksum_at], f.bytes[..checksum_at]);
        assert_eq!(finished[0][checksum_at + 2..], f.bytes[checksum_at + 2..]);
    }
    let wire = |frames: &[Sent]| {
        let mut out = vec![];
        for f in frames {
            f.view().for_each_segment(&mut |s| out.push(s.to_vec()));
        }
        out
    };
    let (single, cut) = (wire(&single), wire(&bursts));
    assert!(single.len() > 20, "{} frames", single.len());
    assert_eq!(single.len(), cut.len());
    for (i, (s, c)) in single.iter().zip(&cut).enumerate() {
        assert_eq!(s, c, "wire frame {i} differs (IPv6: {ipv6})");
    }
}

/// A sender that hands its device bursts of up to 64 KiB.
fn bursting() -> TcpConfig {
    TcpConfig {
        burst_capacity: 65535,
        ..Default::default()
    }
}

#[test]
fn bursts_cut_by_the_device_survive_faults_over_20_seeds() {
    let config = bursting();
    for seed in 0..20 {
        let mut net = Net::with_configs(faulty(), 2000 + seed, config, config);
        bulk(&mut net, faulty_len() / 2, Duration::from_secs(3600));
        assert!(net.a.stack.counters().bursts_out > 10, "bursts were sent");
    }
}

#[test]
fn over_ipv6_bursts_cut_by_the_device_survive_faults() {
    let config = bursting();
    for seed in 0..5 {
        let mut net = Net::with_ipv6_configs(faulty(), 2100 + seed, config, config);
        let (a, b) = (link_local(A_MAC), link_local(B_MAC));
        let (ha, hb) = net.connect_from(a, (b, 6000));
        let mut ab = Transfer::new(pattern(faulty_len() / 2, 8));
        let finished = net.run_until(Duration::from_secs(3600), |n| {
            ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
            ab.done()
        });
        assert!(finished, "seed {seed}: {}/{}", ab.received, ab.data.len());
        assert_eq!(ab.hash, Fnv::of(&ab.data));
        assert!(net.a.stack.counters().bursts_out > 10, "bursts were sent");
    }
}

/// Text the sender holds by reference in [`text_held_by_reference_arrives_intact`].
struct Held(Vec<u8>);

impl SharedText for Held {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Sends `len` bytes from A to B in runs the send buffer takes each way:
/// held by reference (long and short ones: a short run is copied) and
/// written (copied), so that segments and bursts straddle pieces; returns
/// what B read, to its end.
fn mixed_transfer(net: &mut Net, len: usize) -> (Vec<u8>, Vec<u8>) {
    let (ha, hb) = net.connect(5002);
    let data = pattern(len, 9);
    let text: Arc<dyn SharedText> = Arc::new(Held(data.clone()));
    let runs = [200_000, 700, 20_000, 5_000, 1, 65_536, 3, 70_000];
    let (mut sent, mut run, mut run_end) = (0, 0, None);
    let mut received = vec![];
    let mut buf = vec![0u8; 65536];
    let mut shut = false;
    let finished = net.run_until(Duration::from_secs(3600), |n| {
        while sent < data.len() {
            let end = *run_end.get_or_insert((sent + runs[run % runs.len()]).min(data.len()));
            let c = n.a.stack.tcp_mut().get_mut(ha).unwrap();
            let k = if run % 2 == 0 {
                c.send_shared(&text, sent, end).unwrap()
            } else {
                c.send(&data[sent..end]).unwrap()
            };
            if k == 0 {
                break;
            }
            sent += k;
            if sent == end {
                (run, run_end) = (run + 1, None);
            }
        }
        if sent == data.len() && !shut {
            n.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
            shut = true;
        }
        let c = n.b.stack.tcp_mut().get_mut(hb).unwrap();
        loop {
            match c.recv(&mut buf) {
                Ok(Some(0)) => return true,
                Ok(Some(k)) => received.extend_from_slice(&buf[..k]),
                _ => return false,
            }
        }
    });
    assert!(finished, "stalled at {} of {len}", received.len());
    (received, data)
}

#[test]
fn text_held_by_reference_arrives_intact() {
    let bursts = bursting();
    for (seed, config) in [(0, TcpConfig::default()), (1, bursts)] {
        let mut net = Net::clean_with(4000 + seed, config, config);
        let (received, data) = mixed_transfer(&mut net, 2 << 20);
        assert!(received == data, "clean link, seed {seed}");
    }
    for seed in 0..10 {
        let config = if seed % 2 == 0 {
            bursts
        } else {
            TcpConfig::default()
        };
        let mut net = Net::with_configs(faulty(), 4100 + seed, config, config);
        let (received, data) = mixed_transfer(&mut net, faulty_len() / 2);
        assert!(received == data, "faulty link, seed {seed}");
        assert!(net.a.stack.tcp().retransmits() > 0, "losses were repaired");
    }
}

/// B's device in [`bursts_arrive_whole_with_partial_checksums_and_intact`]: A's frames as a Linux packet socket hands a peer's
/// TSO over veth, each burst one super-frame whose TCP checksum field
/// holds only the pseudo-header sum (`CHECKSUM_PARTIAL`). With `holding`,
/// every frame comes as a packet ring hands a super-frame: its headers,
/// its text held until the engine says where it goes.
struct SuperFrames<'a> {
    link: &'a mut LinkEnd,
    incoming: &'a mut Vec<Sent>,
    holding: Option<&'a mut Holding>,
}

/// What became of held texts: read straight to their places, read whole,
/// failed on purpose (every `fail_every`-th frame), or never asked for.
#[derive(Default)]
struct Holding {
    frames: usize,
    scattered: usize,
    parts: usize,
    whole: usize,
    failed: usize,
    fail_every: usize,
}

/// A frame's text as a device that still holds it, counted, and failing
/// when told to.
struct HeldFrame<'a> {
    inner: HeldInMemory<'a>,
    fail: bool,
    holding: &'a mut Holding,
}

impl HeldText for HeldFrame<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn scatter(&mut self, skip: usize, parts: &mut [&mut [u8]]) -> bool {
        if self.fail {
            self.holding.failed += 1;
            return false;
        }
        assert!(self.inner.scatter(skip, parts), "a held text is read once");
        self.holding.scattered += 1;
        self.holding.parts += parts.iter().filter(|p| !p.is_empty()).count();
        true
    }
    fn whole_frame(&mut self) -> Option<&[u8]> {
        self.holding.whole += 1;
        let frame = self.inner.whole_frame();
        assert!(frame.is_some(), "a held frame is read once");
        frame
    }
}

impl SuperFrames<'_> {
    /// `frame`, its text held: the engine sees its headers and its length,
    /// and bytes after the headers that are not the frame's.
    fn hold(sink: &mut FrameSink<'_>, frame: &[u8], checksum: RxChecksum, holding: &mut Holding) {
        holding.frames += 1;
        let inner = HeldInMemory::new(frame);
        let hollow = inner.hollow();
        let fail = holding.fail_every > 0 && holding.frames % holding.fail_every == 0;
        let held = RefCell::new(HeldFrame {
            inner,
            fail,
            holding,
        });
        let _ = sink(&hollow, checksum, Some(&held));
    }
}

impl Device for SuperFrames<'_> {
    fn receive(&mut self, _now: Instant, sink: &mut FrameSink<'_>) -> std::io::Result<usize> {
        let frames = std::mem::take(self.incoming);
        for f in &frames {
            // Bursts arrive whole, their checksums partial; a lone segment
            // arrives with its checksum finished, as from a wire.
            let (bytes, checksum) = match f.segment_size {
                CHECKSUM_ONLY => {
                    let mut finished = vec![];
                    f.view().for_each_segment(&mut |s| finished = s.to_vec());
                    (finished, RxChecksum::Unverified)
                }
                0 => (f.bytes.clone(), RxChecksum::Unverified),
                _ => (
                    f.bytes.clone(),
                    RxChecksum::Partial {
                        start: 34,
                        offset: 16,
                    },
                ),
            };
            match self.holding.as_deref_mut() {
                Some(holding) => Self::hold(sink, &bytes, checksum, holding),
                None => {
                    let _ = sink(&bytes, checksum, None);
                }
            }
        }
        Ok(frames.len())
    }
    fn transmit(&mut self, now: Instant, frame: &[u8]) -> std::io::Result<()> {
        self.link.transmit(now, frame)
    }
}

/// A sends `size` bytes to B in bursts that B's device hands over whole
/// (with `holding`, their text held); returns the network, the transfer
/// and the first burst sent.
fn super_frame_transfer(
    seed: u64,
    size: usize,
    mut holding: Option<&mut Holding>,
) -> (Net, Transfer, Option<Vec<u8>>) {
    let mut net = Net::clean_with(seed, bursting(), TcpConfig::default());
    let (ha, hb) = net.connect(80);
    let mut transfer = Transfer::new(pattern(size, 5));
    let mut in_flight = vec![];
    let mut kept = None;
    for _ in 0..20_000 {
        let now = net.now;
        let mut a_dev = Tee {
            link: &mut net.a.dev,
            frames: &mut in_flight,
            forward: false,
        };
        net.a.stack.poll(now, &mut a_dev).unwrap();
        if kept.is_none() {
            kept = in_flight
                .iter()
                .find(|f| f.segment_size > 0 && f.segment_size != CHECKSUM_ONLY)
                .map(|f| f.bytes.clone());
        }
        let mut b_dev = SuperFrames {
            link: &mut net.b.dev,
            incoming: &mut in_flight,
            holding: holding.as_deref_mut(),
        };
        net.b.stack.poll(now, &mut b_dev).unwrap();
        transfer.step(&mut net.a.stack, ha, &mut net.b.stack, hb);
        if transfer.done() {
            break;
        }
        net.now = now + Duration::from_micros(100);
    }
    (net, transfer, kept)
}

#[test]
fn bursts_arrive_whole_with_partial_checksums_and_intact() {
    let size = 2_000_000;
    let (mut net, transfer, kept) = super_frame_transfer(7, size, None);
    assert_eq!(transfer.received, size);
    assert_eq!(transfer.hash, Fnv::of(&transfer.data));
    let b = net.b.stack.counters();
    assert!(b.bursts_in > 10, "{} super-frames", b.bursts_in);
    assert_eq!(b.checksums_offloaded_in, b.bursts_in);
    assert_eq!(b.checksum_errors(), 0);
    // The same super-frame handed over as unverified fails its checksum
    // (the trust comes from the device, never from the frame); finished
    // as a NIC would, it passes.
    let mut burst = kept.expect("a burst was sent");
    net.b.stack.process_frame(net.now, &burst);
    assert_eq!(net.b.stack.counters().drops(DropReason::TcpChecksum), 1);
    finish_partial(&mut burst, 34, 16);
    net.b.stack.process_frame(net.now, &burst);
    assert_eq!(net.b.stack.counters().checksum_errors(), 1);
}

#[test]
fn held_text_goes_straight_to_its_place_and_a_failed_read_costs_only_a_resend() {
    for fail_every in [0, 7] {
        let mut holding = Holding {
            fail_every,
            ..Default::default()
        };
        let size = 2_000_000;
        let seed = 8 + fail_every as u64;
        let (net, transfer, _) = super_frame_transfer(seed, size, Some(&mut holding));
        assert_eq!(transfer.received, size, "fail every {fail_every}");
        assert_eq!(transfer.hash, Fnv::of(&transfer.data));
        // Super-frames were scattered into the ring (wrapping: two parts
        // at times); frames that are not trusted TCP (ARP, lone segments
        // with a finished checksum) were read whole.
        let b = net.b.stack.counters();
        assert!(holding.scattered > 10, "{} scattered", holding.scattered);
        assert!(holding.parts >= holding.scattered);
        assert!(holding.whole > 0);
        assert_eq!(b.checksum_errors(), 0);
        if fail_every > 0 {
            assert!(holding.failed > 0);
            assert!(
                net.a.stack.tcp().retransmits() > 0,
                "lost reads were resent"
            );
        }
    }
}

/// A MAC's link-local address, as the engine's 4-tuples hold it.
fn link_local(mac: mipfast::wire::MacAddress) -> std::net::IpAddr {
    tcp_net::link_local(mac).into()
}

#[test]
fn over_ipv6_byte_exact_under_loss_with_the_smaller_mss() {
    for seed in 0..5 {
        let faults = FaultConfig {
            loss: 0.03,
            reorder: 0.02,
            duplicate: 0.01,
            corrupt: 0.01,
            ..FaultConfig::latency(Duration::from_millis(1))
        };
        let mut net = Net::with_ipv6(faults, 400 + seed);
        let (a, b) = (link_local(A_MAC), link_local(B_MAC));
        let (ha, hb) = net.connect_from(a, (b, 6000));
        let (ca, cb) = (net.conn_a(ha), net.conn_b(hb));
        // 1500 - 40 (IPv6) - 20 (TCP) - 12 (timestamps): 20 less than over IPv4.
        assert_eq!((ca.mss(), cb.mss()), (1428, 1428));
        assert_eq!(
            (ca.local().0, ca.remote(), cb.remote()),
            (a, (b, 6000), ca.local())
        );
        let len = 300_000;
        let mut ab = Transfer::new(pattern(len, 5));
        let mut ba = Transfer::new(pattern(len, 6));
        let finished = net.run_until(Duration::from_secs(120), |n| {
            ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
            ba.step(&mut n.b.stack, hb, &mut n.a.stack, ha);
            ab.done() && ba.done()
        });
        assert!(
            finished,
            "seed {seed}: {}/{} and {}/{}",
            ab.received, len, ba.received, len
        );
        assert_eq!((ab.hash, ba.hash), (Fnv::of(&ab.data), Fnv::of(&ba.data)));
        assert!(
            net.conn_a(ha).traffic().retransmits > 0,
            "seed {seed}: loss recovered from"
        );
        // Over IPv6 alone: B was found by neighbor discovery, never by ARP,
        // and no segment was too big for the link.
        let now = net.now;
        let host = net.a.stack.interface().ipv6().unwrap();
        assert!(host
            .neighbors(now)
            .iter()
            .any(|n| n.ip.to_string() == b.to_string()));
        assert!(net.a.stack.interface().neighbors(now).is_empty(), "no ARP");
        assert_eq!(net.a.stack.counters().drops(DropReason::TooBig), 0);
    }
}

#[test]
fn over_ipv6_a_closed_port_is_refused_and_a_missing_host_unreachable() {
    use mipfast::socket::tcp::Error;
    let mut net = Net::with_ipv6(FaultConfig::latency(Duration::from_millis(1)), 9);
    let (a, b) = (link_local(A_MAC), link_local(B_MAC));
    let h = net.open_from(a, (b, 7));
    net.run_for(Duration::from_millis(50));
    let c = net.conn_a(h);
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::Refused))
    );
    // Nobody answers for the address: the connect fails once neighbor
    // discovery gives up (three solicitations), as a kernel's does.
    let nobody: std::net::IpAddr = "fe80::99".parse().unwrap();
    let h = net.open_from(a, (nobody, 80));
    net.run_for(Duration::from_millis(2900));
    assert_eq!(net.conn_a(h).state(), State::SynSent);
    net.run_for(Duration::from_millis(200));
    let c = net.conn_a(h);
    assert_eq!(
        (c.state(), c.error()),
        (State::Closed, Some(Error::HostUnreachable))
    );
}

/// A listener of one family refuses connections of the other, as a kernel's
/// `AF_INET` (or IPv6-only) listener does; one of both families takes both.
#[test]
fn a_listener_of_one_family_refuses_the_other() {
    use mipfast::socket::tcp::{Error, Families};
    use std::net::IpAddr;
    let mut net = Net::with_ipv6(FaultConfig::latency(Duration::from_millis(1)), 10);
    let (a, b) = (link_local(A_MAC), link_local(B_MAC));
    let outcome = |net: &mut Net, from: IpAddr, to: IpAddr, port: u16| {
        let h = net.open_from(from, (to, port));
        net.run_for(Duration::from_millis(50));
        let c = net.conn_a(h);
        (c.state(), c.error())
    };
    let refused = (State::Closed, Some(Error::Refused));
    let tcp = net.b.stack.tcp_mut();
    tcp.listen_for(7001, 8, Families::Ipv4).unwrap();
    tcp.listen_for(7002, 8, Families::Ipv6).unwrap();
    tcp.listen_for(7003, 8, Families::Both).unwrap();
    let (a4, b4): (IpAddr, IpAddr) = (A_IP.into(), B_IP.into());
    assert_eq!(outcome(&mut net, a, b, 7001), refused);
    assert_eq!(outcome(&mut net, a4, b4, 7001).0, State::Established);
    assert_eq!(outcome(&mut net, a4, b4, 7002), refused);
    assert_eq!(outcome(&mut net, a, b, 7002).0, State::Established);
    assert_eq!(outcome(&mut net, a4, b4, 7003).0, State::Established);
    assert_eq!(outcome(&mut net, a, b, 7003).0, State::Established);
    let queued = |net: &Net, port| net.b.stack.tcp().listener(port).unwrap().ready.len();
    assert_eq!(
        [queued(&net, 7001), queued(&net, 7002), queued(&net, 7003)],
        [1, 1, 2]
    );
}

/// A router advertisement from B's link-local address giving the link an MTU of `mtu`.
fn advert_with_mtu(mtu: u32) -> Vec<u8> {
    use mipfast::wire::{icmpv6, ipv6};
    let (src, dst) = (tcp_net::link_local(B_MAC), ipv6::ALL_NODES);
    let mut ra = vec![0u8; 16 + 8];
    ra[0] = 134; // a router advertisement, no default route, nothing else
    ra[16..20].copy_from_slice(&[5, 1, 0, 0]);
    ra[20..24].copy_from_slice(&mtu.to_be_bytes());
    icmpv6::fill_checksum(&mut ra, src, dst);
    let macs = (ipv6::multicast_mac(dst), B_MAC);
    tcp_net::ipv6_frame(macs, (src, dst), (ipv6::NEXT_ICMPV6, 255), &ra)
}

#[test]
fn over_ipv6_segments_follow_a_routers_smaller_mtu() {
    let mut net = Net::with_ipv6(FaultConfig::latency(Duration::from_millis(1)), 21);
    let (a, b) = (link_local(A_MAC), link_local(B_MAC));
    let (ha, hb) = net.connect_from(a, (b, 6100));
    // The handshake sized segments for 1500; then a router says 1280.
    let now = net.now;
    net.a.stack.process_frame(now, &advert_with_mtu(1280));
    assert_eq!(net.a.stack.interface().ipv6().unwrap().mtu(1500), 1280);
    let len = 200_000;
    let mut ab = Transfer::new(pattern(len, 7));
    let finished = net.run_until(Duration::from_secs(30), |n| {
        ab.step(&mut n.a.stack, ha, &mut n.b.stack, hb);
        ab.done()
    });
    assert!(
        finished && ab.hash == Fnv::of(&ab.data),
        "{}/{len}",
        ab.received
    );
    assert_eq!(net.a.stack.counters().drops(DropReason::TooBig), 0);
}

/// A connection that outlives its neighbor entry (ARP's 60 s) goes on to
/// the MAC it knows while the entry is confirmed by unicast requests (RFC
/// 1122 §2.3.2.1): no broadcast to resolve the peer again, no frame held
/// back, nothing lost.
#[test]
fn a_long_connection_confirms_its_neighbor_without_stopping() {
    let mut net = Net::clean(14);
    let (ha, hb) = net.connect(80);
    let data = pattern(150_000, 9);
    let (mut written, mut got, mut buf) = (0, Vec::new(), vec![0u8; 4096]);
    let mut frames = vec![];
    // 1,000 bytes a second for 150 s: the entry ages twice meanwhile.
    for step in 0..150_000u64 {
        let now = net.now;
        let mut tee = Tee {
            link: &mut net.a.dev,
            frames: &mut frames,
            forward: true,
        };
        net.a.stack.poll(now, &mut tee).unwrap();
        net.b.stack.poll(now, &mut net.b.dev).unwrap();
        if step % 1000 == 0 && written < data.len() {
            let end = (written + 1000).min(data.len());
            let conn = net.a.stack.tcp_mut().get_mut(ha).unwrap();
            written += conn.send(&data[written..end]).unwrap();
        }
        let conn = net.b.stack.tcp_mut().get_mut(hb).unwrap();
        while let Ok(Some(n @ 1..)) = conn.recv(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        net.now = now + Duration::from_millis(1);
    }
    assert!(
        got == data,
        "{} of {} bytes, in order",
        got.len(),
        data.len()
    );
    let arp: Vec<&Sent> = frames
        .iter()
        .filter(|f| f.bytes[12..14] == [8, 6])
        .collect();
    assert!(
        arp.len() >= 2,
        "the peer was confirmed as its entry aged: {} of {} frames ARP",
        arp.len(),
        frames.len()
    );
    assert!(
        arp.iter().all(|f| f.bytes[..6] == B_MAC.0),
        "at its MAC, never broadcast"
    );
    let c = net.a.stack.counters();
    assert_eq!(c.drops(DropReason::NeighborQueueFull), 0);
    assert_eq!(net.conn_a(ha).traffic().retransmits, 0);
}
