//! Two stacks joined by an in-memory link with simulated time: the ground
//! for the TCP tests.
#![allow(dead_code)]

use mipfast::iface::{InterfaceConfig, Ipv4Cidr, Ipv4Config, Ipv6Config};
use mipfast::phy::fault::FaultConfig;
use mipfast::phy::link::{pair, LinkEnd};
use mipfast::socket::tcp::{Connection, Handle, TcpConfig};
use mipfast::stack::{Addressing, Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::tcp::Repr;
use mipfast::wire::{ethernet, ipv4, Ipv4Addr, MacAddress};
use std::net::IpAddr;

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const A_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 2]);
pub const B_MAC: MacAddress = MacAddress([2, 0, 0, 0, 0, 1]);

pub struct Node {
    pub stack: Stack,
    pub dev: LinkEnd,
    /// A node that stopped answering (its frames are never read).
    pub silent: bool,
}

pub struct Net {
    pub a: Node,
    pub b: Node,
    pub now: Instant,
}

fn stack(ip: Ipv4Addr, mac: MacAddress, tcp: TcpConfig, seed: u64, ipv6: bool) -> Stack {
    let cidr = Ipv4Cidr::new(ip, 24).unwrap();
    let config = StackConfig {
        interface: InterfaceConfig {
            mac,
            ..Default::default()
        },
        // A asks B for names: B's tests can play a DNS server.
        addressing: Addressing::Static(Ipv4Config::new(cidr, None, vec![B_IP]).unwrap()),
        tcp,
        udp: Default::default(),
        resolver: Default::default(),
        dns_servers: vec![],
        mdns: None,
        ipv6: ipv6.then(Ipv6Config::default),
        seed,
    };
    Stack::new(config, Instant::ZERO)
}

impl Net {
    pub fn new(faults: FaultConfig, seed: u64) -> Self {
        Net::with_configs(faults, seed, TcpConfig::default(), TcpConfig::default())
    }

    pub fn with_configs(faults: FaultConfig, seed: u64, a: TcpConfig, b: TcpConfig) -> Self {
        Net::build(faults, seed, (a, b), false)
    }

    /// Both stacks with IPv6 too, their link-local addresses checked and theirs.
    pub fn with_ipv6(faults: FaultConfig, seed: u64) -> Self {
        Net::with_ipv6_configs(faults, seed, TcpConfig::default(), TcpConfig::default())
    }

    /// As [`Net::with_ipv6`], with these TCP settings on A and B.
    pub fn with_ipv6_configs(faults: FaultConfig, seed: u64, a: TcpConfig, b: TcpConfig) -> Self {
        let mut net = Net::build(faults, seed, (a, b), true);
        net.run_for(Duration::from_secs(3));
        net
    }

    fn build(faults: FaultConfig, seed: u64, (a, b): (TcpConfig, TcpConfig), ipv6: bool) -> Self {
        let (da, db) = pair(faults, seed);
        Net {
            a: Node {
                stack: stack(A_IP, A_MAC, a, seed.wrapping_mul(31) + 1, ipv6),
                dev: da,
                silent: false,
            },
            b: Node {
                stack: stack(B_IP, B_MAC, b, seed.wrapping_mul(17) + 2, ipv6),
                dev: db,
                silent: false,
            },
            now: Instant::ZERO,
        }
    }

    /// A clean link with 1 ms each way.
    pub fn clean(seed: u64) -> Self {
        Net::new(FaultConfig::latency(Duration::from_millis(1)), seed)
    }

    /// A clean link with 1 ms each way, and these TCP settings on A and B.
    pub fn clean_with(seed: u64, a: TcpConfig, b: TcpConfig) -> Self {
        Net::with_configs(FaultConfig::latency(Duration::from_millis(1)), seed, a, b)
    }

    /// One round on both nodes at the current time.
    pub fn round(&mut self) {
        let now = self.now;
        for n in [&mut self.a, &mut self.b] {
            if n.silent {
                // Frames toward a silent node are read and thrown away.
                let _ = mipfast::phy::Device::receive(&mut n.dev, now, &mut |_, _, _| {
                    std::ops::ControlFlow::Continue(())
                });
                continue;
            }
            n.stack.poll(now, &mut n.dev).unwrap();
        }
    }

    /// Sends what user calls queued, on both nodes.
    pub fn flush(&mut self) {
        let now = self.now;
        for n in [&mut self.a, &mut self.b] {
            if !n.silent {
                n.stack.dispatch(now);
                n.stack.flush(now, &mut n.dev);
            }
        }
    }

    /// The next moment anything happens, if anything will.
    fn next_event(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for n in [&self.a, &self.b] {
            let mut candidates = vec![n.dev.next_arrival()];
            if !n.silent {
                candidates.push(n.stack.poll_at());
            }
            for t in candidates.into_iter().flatten() {
                next = Some(next.map_or(t, |x: Instant| x.min(t)));
            }
        }
        next
    }

    /// Runs until `done` holds (checked after every step, where it may also
    /// act as the application) or `limit` of simulated time passes.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Net) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.round();
            if done(self) {
                return true;
            }
            self.flush();
            let Some(next) = self.next_event() else {
                // Nothing scheduled: time only moves if `done` makes work.
                if done(self) {
                    return true;
                }
                self.flush();
                if self.next_event().is_none() {
                    return false;
                }
                continue;
            };
            let next = next.max(self.now);
            if next > end {
                self.now = end;
                return done(self);
            }
            self.now = next;
        }
    }

    /// Runs for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(d, |n| n.now >= end);
    }

    pub fn conn_a(&self, h: Handle) -> &Connection {
        self.a.stack.tcp().get(h).expect("connection a")
    }
    pub fn conn_b(&self, h: Handle) -> &Connection {
        self.b.stack.tcp().get(h).expect("connection b")
    }

    /// A starts connecting to B's `port` and sends what that queued (the SYN,
    /// or the ARP request it waits for); returns A's handle.
    pub fn open(&mut self, port: u16) -> Handle {
        self.open_from(A_IP.into(), (B_IP.into(), port))
    }

    /// As [`Net::open`], from A's `local` address to `remote` on B.
    pub fn open_from(&mut self, local: IpAddr, remote: (IpAddr, u16)) -> Handle {
        let now = self.now;
        let h = self
            .a
            .stack
            .tcp_mut()
            .connect(now, local, remote, None)
            .unwrap();
        self.flush();
        h
    }

    /// A TCP segment from B to A built by hand, put on the wire from B's end.
    pub fn inject_to_a(&mut self, repr: Repr) {
        self.inject_segment_to_a(repr, &[]);
    }

    /// As [`Net::inject_to_a`], with a payload.
    pub fn inject_segment_to_a(&mut self, repr: Repr, payload: &[u8]) {
        let mut tcp = vec![0u8; repr.header_len() + payload.len()];
        tcp[repr.header_len()..].copy_from_slice(payload);
        repr.emit(&mut tcp, payload.len(), B_IP, A_IP);
        self.inject_ip(false, ipv4::PROTO_TCP, &tcp);
    }

    /// An IPv4 packet built by hand, put on the wire as if A (`from_a`) or B sent it.
    pub fn inject_ip(&mut self, from_a: bool, protocol: u8, payload: &[u8]) {
        let (a, b) = ((A_IP, A_MAC), (B_IP, B_MAC));
        let (src, dst) = if from_a { (a, b) } else { (b, a) };
        self.inject_from(from_a, src, dst, protocol, payload);
    }

    /// An IPv4 packet from `src` to `dst` (address, MAC), put on the wire at
    /// A's end (`at_a`) or B's, toward the other.
    pub fn inject_from(
        &mut self,
        at_a: bool,
        src: (Ipv4Addr, MacAddress),
        dst: (Ipv4Addr, MacAddress),
        protocol: u8,
        payload: &[u8],
    ) {
        let mut packet = vec![0u8; ipv4::HEADER_LEN + payload.len()];
        ipv4::Repr::new(src.0, dst.0, protocol, payload.len(), 1).emit(&mut packet);
        packet[ipv4::HEADER_LEN..].copy_from_slice(payload);
        self.inject_packet(at_a, (src.1, dst.1), &packet);
    }

    /// A whole IPv4 packet (header included) between MACs `(src, dst)`,
    /// put on the wire at A's end (`at_a`) or B's.
    pub fn inject_packet(&mut self, at_a: bool, macs: (MacAddress, MacAddress), packet: &[u8]) {
        let mut frame = vec![0u8; ethernet::HEADER_LEN + packet.len()];
        ethernet::Repr {
            dst: macs.1,
            src: macs.0,
            ethertype: ethernet::ETHERTYPE_IPV4,
        }
        .emit(&mut frame);
        frame[ethernet::HEADER_LEN..].copy_from_slice(packet);
        let end = if at_a { &self.a.dev } else { &self.b.dev };
        end.inject(self.now, &frame);
    }

    /// A connection to B's `port` that B, as a server does, closes first and
    /// lets go of, then A: B's side ends in TIME-WAIT (unless bounded).
    /// Returns A's handle.
    pub fn server_closes_first(&mut self, port: u16) -> Handle {
        let (ha, hb) = self.connect(port);
        self.b.stack.tcp_mut().release(hb, false);
        self.flush();
        self.run_for(Duration::from_millis(10));
        self.a.stack.tcp_mut().get_mut(ha).unwrap().shutdown_write();
        self.flush();
        self.run_for(Duration::from_millis(10));
        ha
    }

    /// A connects to B's listening `port`; returns (a's handle, b's handle).
    pub fn connect(&mut self, port: u16) -> (Handle, Handle) {
        self.connect_from(A_IP.into(), (B_IP.into(), port))
    }

    /// A connects from `local` to `remote` on B; returns (a's handle, b's handle).
    pub fn connect_from(&mut self, local: IpAddr, remote: (IpAddr, u16)) -> (Handle, Handle) {
        let port = remote.1;
        if self.b.stack.tcp().listener(port).is_none() {
            self.b.stack.tcp_mut().listen(port, 16).unwrap();
        }
        let ha = self.open_from(local, remote);
        let mut hb = None;
        let ok = self.run_until(Duration::from_secs(120), |n| {
            if hb.is_none() {
                hb = n.b.stack.tcp_mut().accept(port);
            }
            hb.is_some()
                && n.a
                    .stack
                    .tcp()
                    .get(ha)
                    .is_some_and(|c| c.state().is_synchronized())
        });
        assert!(ok, "handshake did not complete");
        (ha, hb.unwrap())
    }
}

/// A deterministic byte pattern, and a running hash of what was received.
pub fn pattern(len: usize, salt: u8) -> Vec<u8> {
    let mut x = 0x1234_5678u32 ^ salt as u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// FNV-1a, enough to compare two byte streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x100_0000_01b3);
        }
    }
    pub fn of(data: &[u8]) -> Fnv {
        let mut h = Fnv::default();
        h.update(data);
        h
    }
}

/// One direction of a bulk transfer driven by the test as the application.
pub struct Transfer {
    pub data: Vec<u8>,
    pub sent: usize,
    pub received: usize,
    pub hash: Fnv,
    pub closed_sender: bool,
    pub eof: bool,
    pub buf: Vec<u8>,
}

impl Transfer {
    pub fn new(data: Vec<u8>) -> Self {
        Transfer {
            data,
            sent: 0,
            received: 0,
            hash: Fnv::default(),
            closed_sender: false,
            eof: false,
            buf: vec![0; 65536],
        }
    }

    /// Feeds the sender and drains the receiver; shuts the sender's write
    /// side when everything is queued, so the receiver ends at EOF.
    pub fn step(&mut self, tx: &mut Stack, th: Handle, rx: &mut Stack, rh: Handle) {
        if self.sent < self.data.len() {
            if let Some(c) = tx.tcp_mut().get_mut(th) {
                if let Ok(n) = c.send(&self.data[self.sent..]) {
                    self.sent += n;
                }
            }
        }
        if self.sent == self.data.len() && !self.closed_sender {
            if let Some(c) = tx.tcp_mut().get_mut(th) {
                c.shutdown_write();
            }
            self.closed_sender = true;
        }
        while let Some(c) = rx.tcp_mut().get_mut(rh) {
            match c.recv(&mut self.buf) {
                Ok(Some(0)) => {
                    self.eof = true;
                    break;
                }
                Ok(Some(n)) => {
                    self.hash.update(&self.buf[..n]);
                    self.received += n;
                }
                _ => break,
            }
        }
    }

    pub fn done(&self) -> bool {
        self.eof
    }
}

/// The link-local address of a MAC (modified EUI-64).
pub fn link_local(mac: MacAddress) -> std::net::Ipv6Addr {
    use mipfast::wire::ipv6;
    let prefix = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0);
    ipv6::with_interface_id(prefix, ipv6::interface_id(mac))
}

/// An Ethernet frame (`(to, from)` MACs) carrying an IPv6 packet whose
/// fixed header says `next_header` and `hop_limit`, then `payload`.
pub fn ipv6_frame(
    (dst_mac, src_mac): (MacAddress, MacAddress),
    (src, dst): (std::net::Ipv6Addr, std::net::Ipv6Addr),
    (next_header, hop_limit): (u8, u8),
    payload: &[u8],
) -> Vec<u8> {
    use mipfast::wire::ipv6;
    let mut frame = vec![0u8; ethernet::HEADER_LEN + ipv6::HEADER_LEN + payload.len()];
    ethernet::Repr {
        dst: dst_mac,
        src: src_mac,
        ethertype: ethernet::ETHERTYPE_IPV6,
    }
    .emit(&mut frame);
    ipv6::Repr {
        src,
        dst,
        next_header,
        hop_limit,
        payload_len: payload.len(),
    }
    .emit(&mut frame[ethernet::HEADER_LEN..]);
    frame[ethernet::HEADER_LEN + ipv6::HEADER_LEN..].copy_from_slice(payload);
    frame
}
