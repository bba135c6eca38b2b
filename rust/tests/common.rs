//! Frame builders and readers shared by the engine's integration tests.
#![allow(dead_code)]

use mipfast::iface::Ipv4Cidr;
use mipfast::stack::{Stack, StackConfig};
use mipfast::time::Instant;
use mipfast::wire::{arp, checksum, dhcp, ethernet, icmp, ipv4, udp, Ipv4Addr, MacAddress};

pub const PEER_MAC: MacAddress = MacAddress([0x02, 0xaa, 0, 0, 0, 1]);
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

pub fn static_stack(now: Instant) -> Stack {
    let cidr: Ipv4Cidr = "10.77.0.2/24".parse().unwrap();
    let config = mipfast::iface::Ipv4Config::new(cidr, Some(PEER_IP), vec![]).unwrap();
    let mut s = Stack::new(StackConfig::static_ipv4(config, 1), now);
    drain(&mut s); // the gratuitous ARP
    s
}

pub fn drain(stack: &mut Stack) -> Vec<Vec<u8>> {
    let mut out = vec![];
    stack.drain_tx(|f| out.push(f.to_vec()));
    out
}

pub fn frame(dst: MacAddress, src: MacAddress, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + payload.len()];
    ethernet::Repr {
        dst,
        src,
        ethertype,
    }
    .emit(&mut f);
    f[ethernet::HEADER_LEN..].copy_from_slice(payload);
    f
}

pub fn arp_frame(
    op: arp::Operation,
    sender: (MacAddress, Ipv4Addr),
    target: (MacAddress, Ipv4Addr),
    dst: MacAddress,
) -> Vec<u8> {
    let mut p = [0u8; arp::PACKET_LEN];
    arp::Repr {
        operation: op,
        sender_mac: sender.0,
        sender_ip: sender.1,
        target_mac: target.0,
        target_ip: target.1,
    }
    .emit(&mut p);
    frame(dst, sender.0, ethernet::ETHERTYPE_ARP, &p)
}

pub fn ipv4_frame(
    dst_mac: MacAddress,
    src_mac: MacAddress,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; ipv4::HEADER_LEN + payload.len()];
    ipv4::Repr {
        src,
        dst,
        protocol,
        payload_len: payload.len(),
        ttl: 64,
        ident: 7,
        dont_fragment: false,
        options: ipv4::HeaderOptions::NONE,
    }
    .emit(&mut p);
    p[ipv4::HEADER_LEN..].copy_from_slice(payload);
    frame(dst_mac, src_mac, ethernet::ETHERTYPE_IPV4, &p)
}

pub fn echo_request(dst_mac: MacAddress, dst: Ipv4Addr, seq: u16, data: &[u8]) -> Vec<u8> {
    let e = icmp::Echo {
        reply: false,
        ident: 0x4242,
        seq,
        data,
    };
    let mut p = vec![0u8; e.len()];
    e.emit(&mut p);
    ipv4_frame(dst_mac, PEER_MAC, PEER_IP, dst, ipv4::PROTO_ICMP, &p)
}

pub fn udp_frame(
    dst_mac: MacAddress,
    src_mac: MacAddress,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; udp::HEADER_LEN + payload.len()];
    p[udp::HEADER_LEN..].copy_from_slice(payload);
    udp::Repr {
        src_port: src.1,
        dst_port: dst.1,
    }
    .emit(&mut p, payload.len(), src.0, dst.0);
    ipv4_frame(dst_mac, src_mac, src.0, dst.0, ipv4::PROTO_UDP, &p)
}

/// An outgoing frame, decoded for assertions.
#[derive(Debug)]
pub enum Out {
    Arp(arp::Repr, MacAddress),
    Echo {
        reply: bool,
        ident: u16,
        seq: u16,
        data: Vec<u8>,
        dst_mac: MacAddress,
        dst: Ipv4Addr,
    },
    Dhcp {
        src: Ipv4Addr,
        dst: Ipv4Addr,
        msg: dhcp::Repr,
    },
    Other,
}

pub fn decode(f: &[u8]) -> Out {
    let eth = ethernet::Frame::new_checked(f).unwrap();
    match eth.ethertype() {
        ethernet::ETHERTYPE_ARP => Out::Arp(arp::Repr::parse(eth.payload()).unwrap(), eth.dst()),
        ethernet::ETHERTYPE_IPV4 => {
            let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
            assert!(ip.verify_checksum(), "we emit valid IPv4 checksums");
            match ip.protocol() {
                ipv4::PROTO_ICMP => {
                    let p = icmp::Packet::new_checked(ip.payload()).expect("valid ICMP checksum");
                    Out::Echo {
                        reply: p.msg_type() == icmp::TYPE_ECHO_REPLY,
                        ident: p.echo_ident(),
                        seq: p.echo_seq(),
                        data: p.data().to_vec(),
                        dst_mac: eth.dst(),
                        dst: ip.dst(),
                    }
                }
                ipv4::PROTO_UDP => {
                    let d = udp::Datagram::new_checked(ip.payload(), ip.src(), ip.dst())
                        .expect("valid UDP checksum");
                    if d.dst_port() == dhcp::SERVER_PORT {
                        Out::Dhcp {
                            src: ip.src(),
                            dst: ip.dst(),
                            msg: dhcp::Repr::parse(d.payload()).unwrap(),
                        }
                    } else {
                        Out::Other
                    }
                }
                _ => Out::Other,
            }
        }
        _ => Out::Other,
    }
}

/// Checks the Internet checksum of any buffer.
pub fn sums_to_zero(b: &[u8]) -> bool {
    checksum::checksum(b) == 0
}

/// The peer asks who has the stack's address.
pub fn peer_arp_request() -> Vec<u8> {
    arp_frame(
        arp::Operation::Request,
        (PEER_MAC, PEER_IP),
        (MacAddress::ZERO, STACK_IP),
        MacAddress::BROADCAST,
    )
}

/// An IPv4 frame from the peer to the stack's MAC and address.
pub fn from_peer(protocol: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_frame(
        mipfast::iface::DEFAULT_MAC,
        PEER_MAC,
        PEER_IP,
        STACK_IP,
        protocol,
        payload,
    )
}

/// A UDP datagram from the peer's port 5353 to the stack's `port`.
pub fn udp_from_peer(port: u16, payload: &[u8]) -> Vec<u8> {
    udp_frame(
        mipfast::iface::DEFAULT_MAC,
        PEER_MAC,
        (PEER_IP, 5353),
        (STACK_IP, port),
        payload,
    )
}
