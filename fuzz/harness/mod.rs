//! What the fuzz targets share: stacks set up as a user would, an
//! application that exercises them, and helpers to shape frames.
#![allow(dead_code)]

use mipfast::iface::{InterfaceConfig, Ipv4Cidr, Ipv4Config, Ipv6Config, RxChecksum, DEFAULT_MAC};
use mipfast::phy::Link;
use mipfast::socket::tcp::Handle;
use mipfast::socket::udp::UdpHandle;
use mipfast::stack::{Addressing, Stack, StackConfig};
use mipfast::time::{Duration, Instant};
use mipfast::wire::ipv6::{self, Ipv6Addr};
use mipfast::wire::{arp, checksum, ethernet, ipv4, udp, HeldInMemory, Ipv4Addr, MacAddress};
use std::cell::RefCell;

pub const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const PEER_MAC: MacAddress = MacAddress([0x02, 0xaa, 0, 0, 0, 1]);
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 5000;
/// Link MTUs the fuzz targets switch to, nonsense (0: unknown, 20) included.
pub const LINK_MTUS: [usize; 8] = [0, 20, 68, 576, 1000, 1280, 1500, 9000];

/// Reads the fuzzer's bytes as a stream of small values; zeros at the end.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
}

/// The peer asks who has our address: the stack learns the peer's MAC, so
/// that what it sends the peer goes out at once instead of waiting on ARP.
pub fn introduce_peer(stack: &mut Stack, now: Instant) {
    let mut who = [0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: arp::Operation::Request,
        sender_mac: PEER_MAC,
        sender_ip: PEER_IP,
        target_mac: MacAddress::ZERO,
        target_ip: OUR_IP,
    }
    .emit(&mut who);
    let mut frame = vec![0u8; ethernet::HEADER_LEN + who.len()];
    ethernet::Repr {
        dst: MacAddress::BROADCAST,
        src: PEER_MAC,
        ethertype: ethernet::ETHERTYPE_ARP,
    }
    .emit(&mut frame);
    frame[ethernet::HEADER_LEN..].copy_from_slice(&who);
    stack.process_frame(now, &frame);
    stack.drain_tx(|_| {});
}

pub fn static_stack() -> Stack {
    let cidr = Ipv4Cidr::new(OUR_IP, 24).unwrap();
    let config = Ipv4Config::new(cidr, Some(PEER_IP), vec![PEER_IP]).unwrap();
    let config = StackConfig {
        ipv6: Some(Ipv6Config::default()),
        ..StackConfig::static_ipv4(config, 7)
    };
    let mut s = Stack::new(config, Instant::ZERO);
    s.drain_tx(|_| {});
    s
}

pub fn dhcp_stack() -> Stack {
    let config = StackConfig {
        ipv6: Some(Ipv6Config::default()),
        ..StackConfig::dhcp(8)
    };
    let mut s = Stack::new(config, Instant::ZERO);
    s.drain_tx(|_| {});
    s
}

pub fn config_with_mac(mac: MacAddress) -> InterfaceConfig {
    InterfaceConfig {
        mac,
        ..Default::default()
    }
}

pub fn addressing(ip: Ipv4Addr) -> Addressing {
    let cidr = Ipv4Cidr::new(ip, 24).unwrap();
    Addressing::Static(Ipv4Config::new(cidr, None, vec![]).unwrap())
}

/// The application a user would run on a stack: a listener whose
/// connections are read and answered, a UDP echo socket.
pub struct App {
    pub accepted: Vec<Handle>,
    pub udp: UdpHandle,
    buf: Vec<u8>,
}

impl App {
    pub fn new(stack: &mut Stack) -> Self {
        stack.tcp_mut().listen(TCP_PORT, 4).unwrap();
        let udp = stack.udp_bind(Ipv4Addr::UNSPECIFIED, UDP_PORT).unwrap();
        App {
            accepted: Vec::new(),
            udp,
            buf: vec![0; 4096],
        }
    }

    /// One turn of the application: accept, read, echo, sometimes close.
    pub fn run(&mut self, stack: &mut Stack, now: Instant, choice: u8) {
        while let Some(h) = stack.tcp_mut().accept(TCP_PORT) {
            if self.accepted.len() < 8 {
                self.accepted.push(h);
            } else {
                stack.tcp_mut().release(h, true);
            }
        }
        for (i, &h) in self.accepted.iter().enumerate() {
            let Some(c) = stack.tcp_mut().get_mut(h) else {
                continue;
            };
            if let Ok(Some(n)) = c.recv(&mut self.buf) {
                let _ = c.send(&self.buf[..n]);
            }
            let _ = c.send(b"hello from the stack, a few bytes every turn");
            match (choice as usize + i) % 16 {
                0 => c.shutdown_write(),
                1 => c.shutdown_read(),
                _ => {}
            }
        }
        if choice % 32 == 31 {
            if let Some(h) = self.accepted.pop() {
                stack.tcp_mut().release(h, choice % 64 == 63);
            }
        }
        let mut echoes = Vec::new();
        if let Some(sock) = stack.udp_mut().get_mut(self.udp) {
            while let Some(d) = sock.recv() {
                echoes.push((d.src, d.data));
            }
        }
        for (src, data) in echoes {
            let _ = stack.udp_send(now, self.udp, src, &data);
        }
    }
}

/// Advances a clock by a fuzzer-chosen step (0 to ~65 s, mostly small).
pub fn advance(now: &mut Instant, step: u8) {
    let micros = match step >> 6 {
        0 => step as u64 * 10,
        1 => (step as u64 & 63) * 1_000,
        2 => (step as u64 & 63) * 50_000,
        _ => (step as u64 & 63) * 1_000_000,
    };
    *now += Duration::from_micros(micros);
}

/// Points a frame at us (our MAC; for IPv4, our address from the peer's;
/// for IPv6, our link-local address, or its solicited-node group when the
/// hop limit is odd, from the peer's link-local).
pub fn address_to_us(frame: &mut [u8]) {
    if frame.len() >= ethernet::HEADER_LEN {
        frame[0..6].copy_from_slice(&DEFAULT_MAC.0);
        frame[6..12].copy_from_slice(&PEER_MAC.0);
    }
    let ip = ethernet::HEADER_LEN;
    if frame.len() >= ip + ipv4::HEADER_LEN && frame[12..14] == [0x08, 0x00] {
        frame[ip + 12..ip + 16].copy_from_slice(&PEER_IP.octets());
        frame[ip + 16..ip + 20].copy_from_slice(&OUR_IP.octets());
    }
    if frame.len() >= ip + ipv6::HEADER_LEN && frame[12..14] == [0x86, 0xdd] {
        let ours = ipv6::with_interface_id(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            ipv6::interface_id(DEFAULT_MAC),
        );
        let dst = match frame[ip + 7] % 2 {
            0 => ours,
            _ => ipv6::solicited_node(ours),
        };
        let peer = ipv6::with_interface_id(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            ipv6::interface_id(PEER_MAC),
        );
        frame[ip + 8..ip + 24].copy_from_slice(&peer.octets());
        frame[ip + 24..ip + 40].copy_from_slice(&dst.octets());
    }
}

/// Makes the IPv6 header (version, payload length) and the ICMPv6, UDP or
/// TCP checksum right, so that the fuzzer reaches past them.
fn repair_ipv6(frame: &mut [u8]) {
    let ip = ethernet::HEADER_LEN;
    if frame.len() < ip + ipv6::HEADER_LEN || frame[12..14] != [0x86, 0xdd] {
        return;
    }
    frame[ip] = 0x60 | (frame[ip] & 0x0f);
    let payload_len = (frame.len() - ip - ipv6::HEADER_LEN).min(65535);
    frame[ip + 4..ip + 6].copy_from_slice(&(payload_len as u16).to_be_bytes());
    let Ok(packet) = ipv6::Packet::new_checked(&frame[ip..]) else {
        return;
    };
    let (src, dst) = (packet.src(), packet.dst());
    let Ok(upper) = ipv6::upper_layer(&packet) else {
        return;
    };
    let (protocol, len) = (upper.protocol, upper.payload.len());
    let body = frame.len() - len;
    let at = match protocol {
        ipv6::NEXT_ICMPV6 if len >= 8 => 2,
        ipv6::NEXT_UDP if len >= 8 => 6,
        ipv6::NEXT_TCP if len >= 20 => 16,
        _ => return,
    };
    frame[body + at..body + at + 2].fill(0);
    let acc = checksum::pseudo_header_v6(src, dst, protocol, len as u32);
    let c = !checksum::fold(checksum::accumulate(acc, &frame[body..]));
    frame[body + at..body + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Makes the IPv4 header (version, lengths, checksum) and the ICMP, UDP or
/// TCP checksum right, so that the fuzzer reaches past them.
pub fn repair(frame: &mut Vec<u8>) {
    repair_ipv6(frame);
    let ip = ethernet::HEADER_LEN;
    if frame.len() < ip + ipv4::HEADER_LEN || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ihl = ((frame[ip] & 0x0f) as usize * 4).max(ipv4::HEADER_LEN);
    if frame.len() < ip + ihl {
        frame.resize(ip + ihl, 0);
    }
    frame[ip] = 0x40 | (ihl / 4) as u8;
    let total = (frame.len() - ip).min(65535);
    frame[ip + 2..ip + 4].copy_from_slice(&(total as u16).to_be_bytes());
    frame[ip + 10..ip + 12].fill(0);
    let c = checksum::checksum(&frame[ip..ip + ihl]);
    frame[ip + 10..ip + 12].copy_from_slice(&c.to_be_bytes());
    let (src, dst) = (
        Ipv4Addr::new(
            frame[ip + 12],
            frame[ip + 13],
            frame[ip + 14],
            frame[ip + 15],
        ),
        Ipv4Addr::new(
            frame[ip + 16],
            frame[ip + 17],
            frame[ip + 18],
            frame[ip + 19],
        ),
    );
    let protocol = frame[ip + 9];
    let body = ip + ihl;
    let len = ip + total - body;
    let at = match protocol {
        ipv4::PROTO_ICMP if len >= 8 => 2,
        ipv4::PROTO_UDP if len >= 8 => {
            frame[body + 4..body + 6].copy_from_slice(&(len as u16).to_be_bytes());
            6
        }
        ipv4::PROTO_TCP if len >= 20 => 16,
        _ => return,
    };
    frame[body + at..body + at + 2].fill(0);
    let acc = if protocol == ipv4::PROTO_ICMP {
        0
    } else {
        checksum::pseudo_header(src, dst, protocol, len as u16)
    };
    let mut c = !checksum::fold(checksum::accumulate(acc, &frame[body..body + len]));
    if protocol == ipv4::PROTO_UDP && c == 0 {
        c = 0xffff;
    }
    frame[body + at..body + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Feeds frames from `input` to a static stack with the application live
/// and to a stack still asking DHCP, time moving between frames. Each
/// record: flags, time step, length (two bytes), frame bytes. Flags bit 0
/// points the frame at us, bit 1 repairs its checksums (when `repairing`),
/// bit 2 hands it over as a device that vouches for its transport checksum
/// (a Linux packet socket's offload state): the trusted path must take
/// nonsense as calmly as the checked one. Bit 3 hands it over with its
/// text held (`wire/held_text.rs`), as the packet ring does a super-frame.
/// Bit 4 first changes the link under both stacks: its MTU (bits 5–7 pick
/// one, nonsense included), and for even picks a return after an outage
/// (`Stack::take_link`), as the link watch reports them.
pub fn run_frames(data: &[u8], repairing: bool) {
    let mut input = Input::new(data);
    let mut stack = static_stack();
    let mut dhcp = dhcp_stack();
    let mut app = App::new(&mut stack);
    let mut now = Instant::ZERO;
    let mut link = Link::default();
    while !input.is_empty() {
        let flags = input.u8();
        advance(&mut now, input.u8());
        if flags & 16 != 0 {
            let pick = (flags >> 5) as usize;
            link.mtu = LINK_MTUS[pick];
            link.returns += (pick % 2 == 0) as u64;
            for s in [&mut stack, &mut dhcp] {
                s.take_link(now, link);
            }
        }
        let len = (input.u16() as usize) % 2048;
        let mut frame = input.bytes(len).to_vec();
        if flags & 1 != 0 {
            address_to_us(&mut frame);
        }
        if repairing && flags & 2 != 0 {
            repair(&mut frame);
        }
        let checksum = if flags & 4 != 0 {
            RxChecksum::Verified
        } else {
            RxChecksum::Unverified
        };
        for s in [&mut stack, &mut dhcp] {
            if flags & 8 != 0 {
                let held = HeldInMemory::new(&frame);
                let hollow = held.hollow();
                s.process_received(now, &hollow, checksum, Some(&RefCell::new(held)));
            } else {
                s.process_received(now, &frame, checksum, None);
            }
            s.poll_timers(now);
        }
        app.run(&mut stack, now, flags);
        stack.dispatch(now);
        for s in [&mut stack, &mut dhcp] {
            s.drain_tx(|_| {});
            // The next deadline never lies in the past once a round ran (a
            // driver would spin).
            if let Some(t) = s.poll_at() {
                if t <= now {
                    s.poll_timers(now);
                    s.drain_tx(|_| {});
                }
            }
        }
    }
    // Long after: every timer still ends, nothing is left half-done.
    now += Duration::from_secs(4 * 3600);
    for s in [&mut stack, &mut dhcp] {
        s.poll_timers(now);
        s.drain_tx(|_| {});
    }
}

/// An Ethernet frame from the peer's MAC carrying a UDP datagram.
pub fn udp_frame(
    dst_mac: MacAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = udp::HEADER_LEN + payload.len();
    let mut f = vec![0u8; ethernet::HEADER_LEN + ipv4::HEADER_LEN + udp_len];
    ethernet::Repr {
        dst: dst_mac,
        src: PEER_MAC,
        ethertype: ethernet::ETHERTYPE_IPV4,
    }
    .emit(&mut f);
    let ip = ethernet::HEADER_LEN;
    ipv4::Repr::new(src.0, dst.0, ipv4::PROTO_UDP, udp_len, 3).emit(&mut f[ip..]);
    let body = ip + ipv4::HEADER_LEN;
    f[body + udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Repr {
        src_port: src.1,
        dst_port: dst.1,
    }
    .emit(&mut f[body..], payload.len(), src.0, dst.0);
    f
}
