//! DHCP messages (RFC 2131) in BOOTP framing (RFC 951) with the options a
//! client needs (RFC 2132): 1, 3, 6, 12, 50, 51, 53, 54, 55, 58, 59, 61, 255.

use super::{be16, be32, ipv4_at, Error, Ipv4Addr, MacAddress, Result};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;

const FIXED_LEN: usize = 236;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// BOOTP's minimum message size; some relays drop anything shorter (RFC 951, RFC 1542 §2.1).
const MIN_MESSAGE_LEN: usize = 300;
/// The most DNS servers we keep from option 6.
pub const MAX_DNS_SERVERS: usize = 4;

const OPT_PAD: u8 = 0;
const OPT_SUBNET_MASK: u8 = 1;
const OPT_ROUTER: u8 = 3;
const OPT_DNS: u8 = 6;
const OPT_HOSTNAME: u8 = 12;
const OPT_REQUESTED_IP: u8 = 50;
const OPT_LEASE_TIME: u8 = 51;
const OPT_MESSAGE_TYPE: u8 = 53;
const OPT_SERVER_ID: u8 = 54;
const OPT_PARAMETER_LIST: u8 = 55;
const OPT_RENEWAL_TIME: u8 = 58;
const OPT_REBINDING_TIME: u8 = 59;
const OPT_CLIENT_ID: u8 = 61;
const OPT_END: u8 = 255;

/// The parameters a client asks for in option 55.
pub const REQUESTED_PARAMETERS: [u8; 6] = [
    OPT_SUBNET_MASK,
    OPT_ROUTER,
    OPT_DNS,
    OPT_LEASE_TIME,
    OPT_RENEWAL_TIME,
    OPT_REBINDING_TIME,
];

/// Option 53 (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
}

impl MessageType {
    fn from_u8(v: u8) -> Result<Self> {
        Ok(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return Err(Error::Malformed),
        })
    }
    fn to_u8(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }
}

/// BOOTP op: 1 from a client, 2 from a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Request,
    Reply,
}

/// A DHCP message with the fields and options we use. DHCP is off the fast
/// path, so this owns its data for simplicity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub op: Op,
    pub xid: u32,
    pub secs: u16,
    /// The broadcast flag (RFC 2131 §4.1).
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub client_mac: MacAddress,
    pub message_type: MessageType,
    pub subnet_mask: Option<Ipv4Addr>,
    pub router: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
    pub hostname: Option<String>,
    pub requested_ip: Option<Ipv4Addr>,
    pub lease_time: Option<u32>,
    pub server_id: Option<Ipv4Addr>,
    pub parameter_request_list: Vec<u8>,
    pub renewal_time: Option<u32>,
    pub rebinding_time: Option<u32>,
    pub client_id: Vec<u8>,
}

impl Repr {
    /// A message with every optional field empty.
    pub fn new(op: Op, message_type: MessageType, xid: u32, client_mac: MacAddress) -> Repr {
        Repr {
            op,
            xid,
            secs: 0,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac,
            message_type,
            subnet_mask: None,
            router: None,
            dns_servers: Vec::new(),
            hostname: None,
            requested_ip: None,
            lease_time: None,
            server_id: None,
            parameter_request_list: Vec::new(),
            renewal_time: None,
            rebinding_time: None,
            client_id: Vec::new(),
        }
    }

    /// Parses a DHCP message (the UDP payload). Messages without option 53 are
    /// plain BOOTP and `Unsupported`; option lengths running past the end are `Truncated`.
    pub fn parse(buf: &[u8]) -> Result<Repr> {
        if buf.len() < FIXED_LEN + MAGIC_COOKIE.len() {
            return Err(Error::Truncated);
        }
        if buf[236..240] != MAGIC_COOKIE {
            return Err(Error::Unsupported);
        }
        let op = match buf[0] {
            1 => Op::Request,
            2 => Op::Reply,
            _ => return Err(Error::Malformed),
        };
        if buf[1] != 1 || buf[2] != 6 {
            return Err(Error::Unsupported); // not Ethernet
        }
        let mut repr = Repr::new(
            op,
            MessageType::Discover,
            be32(buf, 4),
            MacAddress::from_bytes(&buf[28..34]),
        );
        repr.secs = be16(buf, 8);
        repr.broadcast = be16(buf, 10) & 0x8000 != 0;
        repr.ciaddr = ipv4_at(buf, 12);
        repr.yiaddr = ipv4_at(buf, 16);
        repr.siaddr = ipv4_at(buf, 20);
        repr.giaddr = ipv4_at(buf, 24);

        let mut message_type = None;
        let mut rest = &buf[240..];
        // RFC 2131 requires an END option; a message without one is accepted.
        while let Some((&code, tail)) = rest.split_first() {
            if code == OPT_END {
                break;
            }
            if code == OPT_PAD {
                rest = tail;
                continue;
            }
            let (&len, tail) = tail.split_first().ok_or(Error::Truncated)?;
            let len = len as usize;
            if tail.len() < len {
                return Err(Error::Truncated);
            }
            let (data, tail) = tail.split_at(len);
            rest = tail;
            match code {
                OPT_MESSAGE_TYPE => message_type = Some(MessageType::from_u8(*single(data)?)?),
                OPT_SUBNET_MASK => repr.subnet_mask = Some(address(data)?),
                OPT_ROUTER => {
                    repr.router = Some(address_list(data)?.next().ok_or(Error::Malformed)?)
                }
                OPT_DNS => repr.dns_servers = address_list(data)?.take(MAX_DNS_SERVERS).collect(),
                OPT_HOSTNAME => repr.hostname = Some(String::from_utf8_lossy(data).into_owned()),
                OPT_REQUESTED_IP => repr.requested_ip = Some(address(data)?),
                OPT_LEASE_TIME => repr.lease_time = Some(seconds(data)?),
                OPT_SERVER_ID => repr.server_id = Some(address(data)?),
                OPT_PARAMETER_LIST => repr.parameter_request_list = data.to_vec(),
                OPT_RENEWAL_TIME => repr.renewal_time = Some(seconds(data)?),
                OPT_REBINDING_TIME => repr.rebinding_time = Some(seconds(data)?),
                OPT_CLIENT_ID => repr.client_id = data.to_vec(),
                _ => {} // options we do not use are skipped
            }
        }
        repr.message_type = message_type.ok_or(Error::Unsupported)?;
        Ok(repr)
    }

    /// The number of bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let mut len = 240 + 3 + 1; // fixed part, cookie, message type, end
        let opt = |present: bool, n: usize| if present { 2 + n } else { 0 };
        len += opt(self.subnet_mask.is_some(), 4);
        len += opt(self.router.is_some(), 4);
        len += opt(!self.dns_servers.is_empty(), 4 * self.dns_servers.len());
        len += opt(
            self.hostname.is_some(),
            self.hostname.as_ref().map_or(0, |h| h.len().min(255)),
        );
        len += opt(self.requested_ip.is_some(), 4);
        len += opt(self.lease_time.is_some(), 4);
        len += opt(self.server_id.is_some(), 4);
        len += opt(
            !self.parameter_request_list.is_empty(),
            self.parameter_request_list.len().min(255),
        );
        len += opt(self.renewal_time.is_some(), 4);
        len += opt(self.rebinding_time.is_some(), 4);
        len += opt(!self.client_id.is_empty(), self.client_id.len().min(255));
        len.max(MIN_MESSAGE_LEN)
    }

    /// Writes the message into the first [`Repr::buffer_len`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let total = self.buffer_len();
        let buf = &mut buf[..total];
        buf.fill(0);
        buf[0] = match self.op {
            Op::Request => 1,
            Op::Reply => 2,
        };
        buf[1] = 1;
        buf[2] = 6;
        buf[4..8].copy_from_slice(&self.xid.to_be_bytes());
        buf[8..10].copy_from_slice(&self.secs.to_be_bytes());
        buf[10..12].copy_from_slice(&(if self.broadcast { 0x8000u16 } else { 0 }).to_be_bytes());
        buf[12..16].copy_from_slice(&self.ciaddr.octets());
        buf[16..20].copy_from_slice(&self.yiaddr.octets());
        buf[20..24].copy_from_slice(&self.siaddr.octets());
        buf[24..28].copy_from_slice(&self.giaddr.octets());
        buf[28..34].copy_from_slice(&self.client_mac.0);
        buf[236..240].copy_from_slice(&MAGIC_COOKIE);
        let mut w = OptionWriter { buf, at: 240 };
        w.put(OPT_MESSAGE_TYPE, &[self.message_type.to_u8()]);
        if let Some(a) = self.subnet_mask {
            w.put(OPT_SUBNET_MASK, &a.octets());
        }
        if let Some(a) = self.router {
            w.put(OPT_ROUTER, &a.octets());
        }
        if !self.dns_servers.is_empty() {
            let mut list = [0u8; 4 * MAX_DNS_SERVERS];
            let n = self.dns_servers.len().min(MAX_DNS_SERVERS);
            for (slot, a) in list.chunks_exact_mut(4).zip(&self.dns_servers) {
                slot.copy_from_slice(&a.octets());
            }
            w.put(OPT_DNS, &list[..4 * n]);
        }
        if let Some(h) = &self.hostname {
            w.put(OPT_HOSTNAME, h.as_bytes());
        }
        if let Some(a) = self.requested_ip {
            w.put(OPT_REQUESTED_IP, &a.octets());
        }
        if let Some(t) = self.lease_time {
            w.put(OPT_LEASE_TIME, &t.to_be_bytes());
        }
        if let Some(a) = self.server_id {
            w.put(OPT_SERVER_ID, &a.octets());
        }
        if !self.parameter_request_list.is_empty() {
            w.put(OPT_PARAMETER_LIST, &self.parameter_request_list);
        }
        if let Some(t) = self.renewal_time {
            w.put(OPT_RENEWAL_TIME, &t.to_be_bytes());
        }
        if let Some(t) = self.rebinding_time {
            w.put(OPT_REBINDING_TIME, &t.to_be_bytes());
        }
        if !self.client_id.is_empty() {
            w.put(OPT_CLIENT_ID, &self.client_id);
        }
        w.buf[w.at] = OPT_END;
    }
}

struct OptionWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl OptionWriter<'_> {
    fn put(&mut self, code: u8, data: &[u8]) {
        let data = &data[..data.len().min(255)];
        self.buf[self.at] = code;
        self.buf[self.at + 1] = data.len() as u8;
        self.buf[self.at + 2..self.at + 2 + data.len()].copy_from_slice(data);
        self.at += 2 + data.len();
    }
}

fn single(data: &[u8]) -> Result<&u8> {
    match data {
        [v] => Ok(v),
        _ => Err(Error::Malformed),
    }
}

fn address(data: &[u8]) -> Result<Ipv4Addr> {
    match data.len() {
        4 => Ok(ipv4_at(data, 0)),
        _ => Err(Error::Malformed),
    }
}

fn address_list(data: &[u8]) -> Result<impl Iterator<Item = Ipv4Addr> + '_> {
    if data.is_empty() || data.len() % 4 != 0 {
        return Err(Error::Malformed);
    }
    Ok(data.chunks_exact(4).map(|c| ipv4_at(c, 0)))
}

fn seconds(data: &[u8]) -> Result<u32> {
    match data.len() {
        4 => Ok(be32(data, 0)),
        _ => Err(Error::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack() -> Repr {
        let mut r = Repr::new(
            Op::Reply,
            MessageType::Ack,
            0xdeadbeef,
            MacAddress([2, 0, 1, 2, 3, 0x77]),
        );
        r.yiaddr = Ipv4Addr::new(10, 77, 0, 100);
        r.subnet_mask = Some(Ipv4Addr::new(255, 255, 255, 0));
        r.router = Some(Ipv4Addr::new(10, 77, 0, 1));
        r.dns_servers = vec![Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 53)];
        r.lease_time = Some(3600);
        r.renewal_time = Some(1800);
        r.rebinding_time = Some(3150);
        r.server_id = Some(Ipv4Addr::new(10, 77, 0, 1));
        r.hostname = Some("mip".into());
        r.client_id = vec![1, 2, 0, 1, 2, 3, 0x77];
        r.parameter_request_list = REQUESTED_PARAMETERS.to_vec();
        r.requested_ip = Some(Ipv4Addr::new(10, 77, 0, 100));
        r.broadcast = true;
        r.secs = 3;
        r
    }

    #[test]
    fn round_trip_with_every_option() {
        let r = ack();
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf);
        assert!(buf.len() >= MIN_MESSAGE_LEN);
        assert_eq!(Repr::parse(&buf).unwrap(), r);
    }

    #[test]
    fn pads_are_skipped_and_end_is_optional() {
        let r = Repr::new(
            Op::Request,
            MessageType::Discover,
            1,
            MacAddress([2, 0, 0, 0, 0, 1]),
        );
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf);
        // Insert pads before the message type and drop the END.
        let mut padded = buf[..240].to_vec();
        padded.extend_from_slice(&[0, 0, 53, 1, 1]);
        assert_eq!(
            Repr::parse(&padded).unwrap().message_type,
            MessageType::Discover
        );
    }

    #[test]
    fn rejects_bad_input() {
        let r = ack();
        let mut buf = vec![0u8; r.buffer_len()];
        r.emit(&mut buf);
        assert_eq!(Repr::parse(&buf[..239]), Err(Error::Truncated));
        // An option whose length runs past the end.
        let mut overrun = buf[..240].to_vec();
        overrun.extend_from_slice(&[53, 1, 5, 6, 200, 1, 2]);
        assert_eq!(Repr::parse(&overrun), Err(Error::Truncated));
        // Option with a length byte missing.
        let mut no_len = buf[..240].to_vec();
        no_len.extend_from_slice(&[53]);
        assert_eq!(Repr::parse(&no_len), Err(Error::Truncated));
        // Wrong lengths.
        let mut bad_mask = buf[..240].to_vec();
        bad_mask.extend_from_slice(&[53, 1, 5, 1, 3, 255, 255, 255, 255]);
        assert_eq!(Repr::parse(&bad_mask), Err(Error::Malformed));
        let mut bad_dns = buf[..240].to_vec();
        bad_dns.extend_from_slice(&[53, 1, 5, 6, 0, 255]);
        assert_eq!(Repr::parse(&bad_dns), Err(Error::Malformed));
        let mut bad_type = buf[..240].to_vec();
        bad_type.extend_from_slice(&[53, 1, 99, 255]);
        assert_eq!(Repr::parse(&bad_type), Err(Error::Malformed));
        // No message type: plain BOOTP.
        let mut bootp = buf[..240].to_vec();
        bootp.push(255);
        assert_eq!(Repr::parse(&bootp), Err(Error::Unsupported));
        let mut no_cookie = buf.clone();
        no_cookie[236] = 0;
        assert_eq!(Repr::parse(&no_cookie), Err(Error::Unsupported));
    }
}
