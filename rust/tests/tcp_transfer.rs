//! TCP between two of our stacks over the in-memory link: handshake and
//! options, and byte-exact bulk transfers under seeded faults.

mod tcp_net;

use mipfast::phy::fault::FaultConfig;
use mipfast::socket::tcp::{Algorithm, State, TcpConfig};
use mipfast::time::Duration;
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
    // 1 MiB buffers need a shift of 5 (65535 << 5 ≥ 1 MiB).
    assert_eq!(a.window_shifts(), (5, 5));
    assert_eq!(a.remote(), (B_IP, 80));
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
    let mut net = Net::with_configs(
        FaultConfig::latency(Duration::from_millis(1)),
        2,
        TcpConfig::default(),
        plain,
    );
    let (ha, _) = net.connect(80);
    let a = net.conn_a(ha);
    assert_eq!(a.mss(), 1460);
    assert!(!a.sack_enabled() && !a.timestamps_enabled());
    assert_eq!(a.window_shifts(), (0, 0));
}

/// Moves `len` bytes each way at once; returns (a→b, b→a) transfers.
fn bulk(net: &mut Net, len: usize, limit: Duration) -> (Transfer, Transfer) {
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
    (ab, ba)
}

#[test]
fn ten_megabytes_each_way_on_a_clean_link() {
    let mut net = Net::clean(3);
    bulk(&mut net, 10 << 20, Duration::from_secs(60));
    // Both closed their write side and read EOF: the connection ends.
    net.run_for(Duration::from_secs(1));
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
    for seed in 0..50 {
        let mut net = Net::new(faulty(), 1000 + seed);
        bulk(&mut net, faulty_len(), Duration::from_secs(3600));
        let stats = net.a.dev.fault_stats();
        assert!(
            stats.lost > 0 && stats.reordered > 0 && stats.corrupted > 0,
            "{stats:?}"
        );
    }
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
