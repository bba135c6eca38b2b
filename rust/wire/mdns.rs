//! Multicast DNS messages (RFC 6762): what a responder reads of a query or
//! a response (questions with their unicast-response bit, records with their
//! cache-flush bit, §18.12–§18.13) and the responses and probes it writes.
//!
//! Names are read as `dns.rs` reads them (compression, backward pointers
//! only, bounded hops) and written uncompressed: our messages are small.

use super::dns::{read_name, read_name_cased, CLASS_IN, HEADER_LEN, TYPE_A};
use super::{be16, be32, ipv4_at, Error, Ipv4Addr, Result};

pub const PORT: u16 = 5353;
/// 224.0.0.251 (§3).
pub const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
/// §11: every packet a responder sends has IP TTL 255.
pub const IP_TTL: u8 = 255;

pub const TYPE_PTR: u16 = 12;
pub const TYPE_TXT: u16 = 16;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_NSEC: u16 = 47;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_ANY: u16 = 255;

/// The top bit of a question's class asks for a unicast answer (§5.4); of a
/// record's class, it tells caches to flush older records (§10.2).
const CLASS_TOP_BIT: u16 = 0x8000;
const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_AUTHORITATIVE: u16 = 0x0400;
const OPCODE_MASK: u16 = 0x7800;
const RCODE_MASK: u16 = 0x000f;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// As asked (compare it without case), without the trailing dot.
    pub name: String,
    pub qtype: u16,
    /// The class without its top bit.
    pub qclass: u16,
    /// The QU bit (§5.4).
    pub unicast_response: bool,
}

impl Question {
    /// Whether the question is about class IN records of type `rtype`.
    pub fn asks(&self, rtype: u16) -> bool {
        (self.qclass == CLASS_IN || self.qclass == CLASS_ANY)
            && (self.qtype == rtype || self.qtype == TYPE_ANY)
    }
}

/// The data of a record read, as much as a responder compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    A(Ipv4Addr),
    /// A PTR's target, lower-cased.
    Ptr(String),
    /// Any other type: its raw rdata.
    Other(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Lower-cased, without the trailing dot.
    pub name: String,
    pub rtype: u16,
    /// The class without its top bit.
    pub rclass: u16,
    pub cache_flush: bool,
    pub ttl: u32,
    pub data: Data,
}

impl Record {
    /// The rdata as it would be compared in a probe tie-break (§8.2): raw,
    /// names uncompressed.
    pub fn rdata_bytes(&self) -> Vec<u8> {
        match &self.data {
            Data::A(ip) => ip.octets().to_vec(),
            Data::Ptr(target) => {
                let mut v = Vec::new();
                write_name(&mut v, target);
                v
            }
            Data::Other(raw) => raw.clone(),
        }
    }
}

/// A message read whole. Anything inconsistent is an error and the message
/// is not used; so is one with a non-zero opcode or rcode (§18.3, §18.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub questions: Vec<Question>,
    /// Known answers in a query (§7.1), answers in a response.
    pub answers: Vec<Record>,
    /// The records a probe proposes (§8.2).
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
}

pub fn parse(msg: &[u8]) -> Result<Message> {
    if msg.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let flags = be16(msg, 2);
    if flags & (OPCODE_MASK | RCODE_MASK) != 0 {
        return Err(Error::Unsupported);
    }
    let counts = [be16(msg, 4), be16(msg, 6), be16(msg, 8), be16(msg, 10)];
    let mut at = HEADER_LEN;
    let mut questions = Vec::new();
    for _ in 0..counts[0] {
        let name = read_name_cased(msg, &mut at, false)?;
        let fixed = msg.get(at..at + 4).ok_or(Error::Truncated)?;
        let class = be16(fixed, 2);
        questions.push(Question {
            name,
            qtype: be16(fixed, 0),
            qclass: class & !CLASS_TOP_BIT,
            unicast_response: class & CLASS_TOP_BIT != 0,
        });
        at += 4;
    }
    let mut sections: [Vec<Record>; 3] = Default::default();
    for (section, &count) in sections.iter_mut().zip(&counts[1..]) {
        for _ in 0..count {
            section.push(read_record(msg, &mut at)?);
        }
    }
    let [answers, authority, additional] = sections;
    Ok(Message {
        id: be16(msg, 0),
        response: flags & FLAG_RESPONSE != 0,
        questions,
        answers,
        authority,
        additional,
    })
}

fn read_record(msg: &[u8], at: &mut usize) -> Result<Record> {
    let name = read_name(msg, at)?;
    let fixed = msg.get(*at..*at + 10).ok_or(Error::Truncated)?;
    let (rtype, class, ttl) = (be16(fixed, 0), be16(fixed, 2), be32(fixed, 4));
    let start = *at + 10;
    let end = start + be16(fixed, 8) as usize;
    let rdata = msg.get(start..end).ok_or(Error::Truncated)?;
    *at = end;
    let data = match rtype {
        TYPE_A if rdata.len() == 4 => Data::A(ipv4_at(rdata, 0)),
        TYPE_A => return Err(Error::Malformed),
        TYPE_PTR => {
            let mut p = start;
            let target = read_name(msg, &mut p)?;
            if p != end {
                return Err(Error::Malformed);
            }
            Data::Ptr(target)
        }
        _ => Data::Other(rdata.to_vec()),
    };
    Ok(Record {
        name,
        rtype,
        rclass: class & !CLASS_TOP_BIT,
        cache_flush: class & CLASS_TOP_BIT != 0,
        ttl,
        data,
    })
}

/// The data of a record we write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnData {
    A(Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    Ptr(String),
    Srv {
        port: u16,
        target: String,
    },
    /// Strings of at most 255 bytes each; none is one empty string (RFC 6763 §6.1).
    Txt(Vec<String>),
    /// "No other types than these exist for this name" (§6.1): the next
    /// name is the owner itself, and only types below 256 are listed.
    Nsec(Vec<u16>),
}

impl OwnData {
    pub fn rtype(&self) -> u16 {
        match self {
            OwnData::A(_) => TYPE_A,
            OwnData::Aaaa(_) => TYPE_AAAA,
            OwnData::Ptr(_) => TYPE_PTR,
            OwnData::Srv { .. } => TYPE_SRV,
            OwnData::Txt(_) => TYPE_TXT,
            OwnData::Nsec(_) => TYPE_NSEC,
        }
    }
}

/// A record of ours, to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRecord {
    pub name: String,
    pub ttl: u32,
    /// A unique record (§2): cache-flush set when sent by multicast.
    pub unique: bool,
    pub data: OwnData,
}

impl OwnRecord {
    /// The same record, as the one read in `known` would be (§7.1 compares
    /// name, type, class and rdata).
    pub fn is(&self, known: &Record) -> bool {
        known.name.eq_ignore_ascii_case(&self.name)
            && known.rtype == self.data.rtype()
            && known.rclass == CLASS_IN
            && match (&known.data, &self.data) {
                (Data::Ptr(a), OwnData::Ptr(b)) => a.eq_ignore_ascii_case(b),
                _ => known.rdata_bytes() == self.rdata(),
            }
    }

    pub fn rdata(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match &self.data {
            OwnData::A(ip) => v.extend_from_slice(&ip.octets()),
            OwnData::Aaaa(ip) => v.extend_from_slice(&ip.octets()),
            OwnData::Ptr(target) => write_name(&mut v, target),
            OwnData::Srv { port, target } => {
                v.extend_from_slice(&[0, 0, 0, 0]); // priority, weight
                v.extend_from_slice(&port.to_be_bytes());
                write_name(&mut v, target);
            }
            OwnData::Txt(strings) if strings.is_empty() => v.push(0),
            OwnData::Txt(strings) => {
                for s in strings {
                    let s = &s.as_bytes()[..s.len().min(255)];
                    v.push(s.len() as u8);
                    v.extend_from_slice(s);
                }
            }
            OwnData::Nsec(types) => {
                write_name(&mut v, &self.name);
                let mut bitmap = [0u8; 32];
                let mut len = 0;
                for &t in types.iter().filter(|&&t| t < 256) {
                    bitmap[t as usize / 8] |= 0x80 >> (t % 8);
                    len = len.max(t as usize / 8 + 1);
                }
                v.extend_from_slice(&[0, len as u8]); // window block 0
                v.extend_from_slice(&bitmap[..len]);
            }
        }
        v
    }
}

/// The sections a record can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

/// Writes a message: questions first, then records in section order.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
    counts: [u16; 4],
    /// Cache-flush bits are set on unique records (not in legacy unicast
    /// answers, §6.7, nor in probes, §8.1).
    flush_bits: bool,
}

impl Writer {
    /// An authoritative response (§18.4).
    pub fn response(id: u16, flush_bits: bool) -> Self {
        Writer::new(id, FLAG_RESPONSE | FLAG_AUTHORITATIVE, flush_bits)
    }
    /// A query (a probe).
    pub fn query() -> Self {
        Writer::new(0, 0, false)
    }
    fn new(id: u16, flags: u16, flush_bits: bool) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        Writer {
            buf,
            counts: [0; 4],
            flush_bits,
        }
    }

    pub fn question(&mut self, name: &str, qtype: u16, unicast_response: bool) {
        debug_assert!(self.counts[1..] == [0, 0, 0], "questions come first");
        write_name(&mut self.buf, name);
        let class = CLASS_IN | if unicast_response { CLASS_TOP_BIT } else { 0 };
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.counts[0] += 1;
    }

    pub fn record(&mut self, section: Section, record: &OwnRecord, ttl: u32) {
        let index = 1 + section as usize;
        debug_assert!(self.counts[index + 1..].iter().all(|&c| c == 0));
        write_name(&mut self.buf, &record.name);
        let flush = self.flush_bits && record.unique;
        let class = CLASS_IN | if flush { CLASS_TOP_BIT } else { 0 };
        let rdata = record.rdata();
        self.buf
            .extend_from_slice(&record.data.rtype().to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        self.buf
            .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(&rdata);
        self.counts[index] += 1;
    }

    /// Records written so far, questions aside.
    pub fn records(&self) -> usize {
        self.counts[1..].iter().map(|&c| c as usize).sum()
    }

    pub fn finish(mut self) -> Vec<u8> {
        for (i, count) in self.counts.iter().enumerate() {
            self.buf[4 + 2 * i..6 + 2 * i].copy_from_slice(&count.to_be_bytes());
        }
        self.buf
    }
}

/// Appends `name` uncompressed (labels were checked when the name was made).
fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The reverse-mapping name of `ip` (RFC 1035 §3.5).
pub fn reverse_name(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("{d}.{c}.{b}.{a}.in-addr.arpa")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(ip: Ipv4Addr) -> OwnRecord {
        OwnRecord {
            name: "mip.local".into(),
            ttl: 120,
            unique: true,
            data: OwnData::A(ip),
        }
    }

    #[test]
    fn a_response_reads_back_with_its_bits() {
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        let mut w = Writer::response(7, true);
        w.question("mip.local", TYPE_A, true);
        w.record(Section::Answer, &host(ip), 120);
        let nsec = OwnRecord {
            data: OwnData::Nsec(vec![TYPE_A]),
            ..host(ip)
        };
        w.record(Section::Additional, &nsec, 120);
        let m = parse(&w.finish()).unwrap();
        assert!(m.response);
        assert_eq!(m.id, 7);
        assert!(m.questions[0].unicast_response && m.questions[0].asks(TYPE_A));
        assert_eq!(m.answers[0].data, Data::A(ip));
        assert!(m.answers[0].cache_flush && host(ip).is(&m.answers[0]));
        // NSEC: next name "mip.local", window 0, one byte with A's bit.
        let Data::Other(raw) = &m.additional[0].data else {
            panic!("NSEC read as {:?}", m.additional[0].data)
        };
        assert_eq!(&raw[raw.len() - 3..], &[0, 1, 0x40]);
    }

    #[test]
    fn a_probe_has_no_flush_bits_and_a_legacy_answer_none_either() {
        let mut w = Writer::query();
        w.question("mip.local", TYPE_ANY, true);
        w.record(Section::Authority, &host(Ipv4Addr::new(10, 0, 0, 2)), 120);
        let m = parse(&w.finish()).unwrap();
        assert!(!m.response && !m.authority[0].cache_flush);
        let mut w = Writer::response(1, false);
        w.record(Section::Answer, &host(Ipv4Addr::new(10, 0, 0, 2)), 10);
        assert!(!parse(&w.finish()).unwrap().answers[0].cache_flush);
    }

    #[test]
    fn bad_messages_are_errors() {
        let mut w = Writer::response(1, true);
        w.record(Section::Answer, &host(Ipv4Addr::new(10, 0, 0, 2)), 120);
        let good = w.finish();
        for cut in 0..good.len() {
            assert!(parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut a_of_five = good.clone();
        let len_at = good.len() - 6;
        a_of_five[len_at..len_at + 2].copy_from_slice(&5u16.to_be_bytes());
        a_of_five.push(0);
        assert_eq!(parse(&a_of_five), Err(Error::Malformed));
        let mut opcode = good.clone();
        opcode[2] |= 0x28; // opcode 5 (UPDATE)
        assert_eq!(parse(&opcode), Err(Error::Unsupported));
    }

    #[test]
    fn reverse_names_read_backwards() {
        assert_eq!(
            reverse_name(Ipv4Addr::new(10, 77, 0, 2)),
            "2.0.77.10.in-addr.arpa"
        );
    }
}
