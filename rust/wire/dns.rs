//! DNS messages (RFC 1035 §4): the queries a stub resolver sends and the
//! parts of a response it needs (A and CNAME answers, the SOA minimum for
//! negative caching). Names are read with compression, and a pointer may
//! only jump backwards, so a malicious loop cannot keep the reader going.

use super::{be16, be32, ipv4_at, Error, Ipv4Addr, Result};

pub const PORT: u16 = 53;
pub const HEADER_LEN: usize = 12;
/// RFC 1035 §2.3.4.
pub const MAX_NAME_LEN: usize = 255;
pub const MAX_LABEL_LEN: usize = 63;
/// Compression pointers followed within one name. A pointer leads to an
/// earlier suffix, so a real name needs at most one per label (a 255-byte
/// name has at most 127); chains of pointers to pointers only cost work.
/// With this bound and the 255-byte one, reading a name is O(1), and a
/// whole message O(its length).
pub const MAX_POINTER_HOPS: usize = 128;

pub const TYPE_A: u16 = 1;
/// An IPv6 address (RFC 3596 §2.1).
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_CNAME: u16 = 5;
pub const TYPE_SOA: u16 = 6;
pub const CLASS_IN: u16 = 1;

/// Response codes (RFC 1035 §4.1.1).
pub const RCODE_NOERROR: u8 = 0;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_NXDOMAIN: u8 = 3;

const FLAG_RESPONSE: u16 = 0x8000;
const FLAG_TRUNCATED: u16 = 0x0200;
const FLAG_RECURSION_DESIRED: u16 = 0x0100;

/// Checks a host name and returns it lower-cased without a trailing dot:
/// labels of 1–63 bytes of letters, digits, '-' and '_', at most 253 bytes.
pub fn normalize_name(name: &str) -> Result<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN - 2 {
        return Err(Error::Malformed);
    }
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > MAX_LABEL_LEN || !ok_chars {
            return Err(Error::Malformed);
        }
    }
    Ok(name.to_ascii_lowercase())
}

/// A recursive query for one name and type, class IN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query<'a> {
    pub id: u16,
    /// A name accepted by [`normalize_name`].
    pub name: &'a str,
    pub qtype: u16,
    /// Recursion desired: asked of a server; never of mDNS (RFC 6762 §18.6).
    pub recursive: bool,
}

impl Query<'_> {
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.name.len() + 2 + 4
    }
    pub fn emit(&self, buf: &mut [u8]) {
        buf[0..2].copy_from_slice(&self.id.to_be_bytes());
        let flags = if self.recursive {
            FLAG_RECURSION_DESIRED
        } else {
            0
        };
        buf[2..4].copy_from_slice(&flags.to_be_bytes());
        buf[4..6].copy_from_slice(&1u16.to_be_bytes()); // QDCOUNT
        buf[6..12].fill(0);
        let mut at = HEADER_LEN;
        for label in self.name.split('.') {
            buf[at] = label.len() as u8;
            buf[at + 1..at + 1 + label.len()].copy_from_slice(label.as_bytes());
            at += 1 + label.len();
        }
        buf[at] = 0;
        buf[at + 1..at + 3].copy_from_slice(&self.qtype.to_be_bytes());
        buf[at + 3..at + 5].copy_from_slice(&CLASS_IN.to_be_bytes());
    }
}

/// The data of a resource record we understand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(std::net::Ipv6Addr),
    Cname(String),
    /// SOA: only the MINIMUM field, the TTL of negative answers (RFC 2308 §5).
    Soa {
        minimum: u32,
    },
    Other(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Lower-cased, without the trailing dot.
    pub name: String,
    pub ttl: u32,
    pub data: RecordData,
}

/// A parsed response: header fields, the question and the records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub rcode: u8,
    pub truncated: bool,
    /// The question echoed back (name, type), which must match ours (RFC 5452 §9.1).
    pub question: Option<(String, u16)>,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
}

/// The ID and the first question of a response, read without touching
/// the records: enough to tell whether it answers one of our queries
/// (RFC 5452 §9.1) before the rest is parsed.
pub fn response_question(msg: &[u8]) -> Result<(u16, Option<(String, u16)>)> {
    if msg.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    if be16(msg, 2) & FLAG_RESPONSE == 0 {
        return Err(Error::Malformed);
    }
    let mut question = None;
    if be16(msg, 4) > 0 {
        let mut at = HEADER_LEN;
        let name = read_name(msg, &mut at)?;
        let fixed = msg.get(at..at + 4).ok_or(Error::Truncated)?;
        question = Some((name, be16(fixed, 0)));
    }
    Ok((be16(msg, 0), question))
}

/// Reads a DNS response. Anything inconsistent (a record or name running
/// past the end, a forward or looping pointer, an over-long name, a query
/// instead of a response) is an error: the message is not used at all.
pub fn parse_response(msg: &[u8]) -> Result<Response> {
    if msg.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let flags = be16(msg, 2);
    if flags & FLAG_RESPONSE == 0 {
        return Err(Error::Malformed);
    }
    let counts = [be16(msg, 4), be16(msg, 6), be16(msg, 8)];
    let mut at = HEADER_LEN;
    let mut question = None;
    for i in 0..counts[0] {
        let name = read_name(msg, &mut at)?;
        let fixed = msg.get(at..at + 4).ok_or(Error::Truncated)?;
        if i == 0 {
            question = Some((name, be16(fixed, 0)));
        }
        at += 4;
    }
    let mut answers = Vec::new();
    for _ in 0..counts[1] {
        answers.push(read_record(msg, &mut at)?);
    }
    let mut authority = Vec::new();
    for _ in 0..counts[2] {
        authority.push(read_record(msg, &mut at)?);
    }
    Ok(Response {
        id: be16(msg, 0),
        rcode: (flags & 0x000f) as u8,
        truncated: flags & FLAG_TRUNCATED != 0,
        question,
        answers,
        authority,
    })
}

fn read_record(msg: &[u8], at: &mut usize) -> Result<Record> {
    let name = read_name(msg, at)?;
    let fixed = msg.get(*at..*at + 10).ok_or(Error::Truncated)?;
    let (rtype, class, ttl, rdlen) = (
        be16(fixed, 0),
        be16(fixed, 2),
        be32(fixed, 4),
        be16(fixed, 8) as usize,
    );
    let start = *at + 10;
    let end = start + rdlen;
    let rdata = msg.get(start..end).ok_or(Error::Truncated)?;
    *at = end;
    // RFC 2181 §8: a TTL with the top bit set is zero.
    let ttl = if ttl & 0x8000_0000 != 0 { 0 } else { ttl };
    let data = match (rtype, class) {
        (TYPE_A, CLASS_IN) if rdlen == 4 => RecordData::A(ipv4_at(rdata, 0)),
        (TYPE_A, CLASS_IN) => return Err(Error::Malformed),
        (TYPE_AAAA, CLASS_IN) if rdlen == 16 => RecordData::Aaaa(super::ipv6::ipv6_at(rdata, 0)),
        (TYPE_AAAA, CLASS_IN) => return Err(Error::Malformed),
        (TYPE_CNAME, _) => {
            let mut p = start;
            let target = read_name(msg, &mut p)?;
            if p != end {
                return Err(Error::Malformed);
            }
            RecordData::Cname(target)
        }
        (TYPE_SOA, _) => {
            let mut p = start;
            read_name(msg, &mut p)?; // MNAME
            read_name(msg, &mut p)?; // RNAME
            if p + 20 != end {
                return Err(Error::Malformed);
            }
            RecordData::Soa {
                minimum: be32(msg, p + 16),
            }
        }
        (other, _) => RecordData::Other(other),
    };
    Ok(Record { name, ttl, data })
}

/// Reads a possibly compressed name at `*at` and moves `*at` past it (past
/// the first pointer, if any). Pointers must point strictly before the
/// label that holds them, which rules out loops (RFC 1035 §4.1.4 allows
/// only earlier occurrences).
pub(crate) fn read_name(msg: &[u8], at: &mut usize) -> Result<String> {
    read_name_cased(msg, at, true)
}

/// As [`read_name`], lower-cased only if `lower` (a question to be echoed
/// keeps the case it was asked in: resolvers may check it, draft 0x20).
pub(crate) fn read_name_cased(msg: &[u8], at: &mut usize, lower: bool) -> Result<String> {
    let mut name = String::new();
    let mut pos = *at;
    let mut resume: Option<usize> = None;
    let mut wire_len = 1;
    let mut hops = 0;
    loop {
        let len = *msg.get(pos).ok_or(Error::Truncated)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => {
                *at = resume.unwrap_or(pos + 1);
                return Ok(name);
            }
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(Error::Truncated)?;
                wire_len += 1 + len;
                if wire_len > MAX_NAME_LEN {
                    return Err(Error::Malformed);
                }
                if !name.is_empty() {
                    name.push('.');
                }
                // UTF-8 labels (mDNS names, RFC 6762 §16) read back as sent.
                let label = String::from_utf8_lossy(label);
                match lower {
                    true => name.push_str(&label.to_ascii_lowercase()),
                    false => name.push_str(&label),
                }
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(Error::Truncated)? as usize;
                let target = ((len & 0x3f) << 8) | low;
                if target >= pos {
                    return Err(Error::Malformed); // forward or self pointer: a loop
                }
                hops += 1;
                if hops > MAX_POINTER_HOPS {
                    return Err(Error::Malformed);
                }
                resume.get_or_insert(pos + 2);
                pos = target;
            }
            _ => return Err(Error::Unsupported), // 0x40/0x80: extended label types
        }
    }
}

/// Builds responses, for the tests' scripted servers.
pub mod build {
    use super::*;

    /// Appends `name` uncompressed.
    pub fn name(out: &mut Vec<u8>, name: &str) {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
        out.push(0);
    }

    /// A response header echoing `query`'s id and question.
    pub fn response(query: &[u8], rcode: u8, answers: u16, authority: u16) -> Vec<u8> {
        let mut at = HEADER_LEN;
        let question_end = read_name(query, &mut at)
            .map(|_| at + 4)
            .unwrap_or(HEADER_LEN);
        let mut out = query[..question_end.min(query.len())].to_vec();
        out[2..4].copy_from_slice(&(FLAG_RESPONSE | 0x0180 | rcode as u16).to_be_bytes());
        out[6..8].copy_from_slice(&answers.to_be_bytes());
        out[8..10].copy_from_slice(&authority.to_be_bytes());
        out[10..12].fill(0);
        out
    }

    /// Appends a record whose owner is the name at offset 12 (the question)
    /// when `owner` is None, else `owner` written out.
    pub fn record(out: &mut Vec<u8>, owner: Option<&str>, rtype: u16, ttl: u32, rdata: &[u8]) {
        match owner {
            None => out.extend_from_slice(&[0xc0, HEADER_LEN as u8]),
            Some(n) => name(out, n),
        }
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }

    /// The rdata of a CNAME to `target`.
    pub fn cname(target: &str) -> Vec<u8> {
        let mut v = Vec::new();
        name(&mut v, target);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str) -> Vec<u8> {
        let q = Query {
            id: 0x1234,
            name,
            qtype: TYPE_A,
            recursive: true,
        };
        let mut buf = vec![0u8; q.buffer_len()];
        q.emit(&mut buf);
        buf
    }

    /// A 64 KB answer whose records all name the end of a chain of 8,100
    /// pointers, each to the one before: every pointer points backwards, so
    /// only a bound on hops stops the reader walking the chain 4,000 times
    /// (about 105 ms under the engine lock, before the bound).
    fn pointer_chain_answer(chain: usize, records: usize) -> Vec<u8> {
        let mut msg = query("a");
        let q_end = msg.len();
        msg[2..4].copy_from_slice(&(FLAG_RESPONSE | 0x0180).to_be_bytes());
        // One record of an unknown type holds the chain as its data.
        msg.extend_from_slice(&[0xc0, 12]);
        msg.extend_from_slice(&99u16.to_be_bytes());
        msg.extend_from_slice(&CLASS_IN.to_be_bytes());
        msg.extend_from_slice(&60u32.to_be_bytes());
        msg.extend_from_slice(&((chain * 2) as u16).to_be_bytes());
        let mut previous = 12usize; // the question's name
        for _ in 0..chain {
            let here = msg.len();
            msg.extend_from_slice(&[0xc0 | (previous >> 8) as u8, previous as u8]);
            previous = here;
        }
        for i in 0..records {
            msg.extend_from_slice(&[0xc0 | (previous >> 8) as u8, previous as u8]);
            msg.extend_from_slice(&TYPE_A.to_be_bytes());
            msg.extend_from_slice(&CLASS_IN.to_be_bytes());
            msg.extend_from_slice(&60u32.to_be_bytes());
            msg.extend_from_slice(&4u16.to_be_bytes());
            msg.extend_from_slice(&[10, 0, (i >> 8) as u8, i as u8]);
        }
        let answers = (1 + records) as u16;
        msg[6..8].copy_from_slice(&answers.to_be_bytes());
        assert!(q_end < msg.len() && msg.len() <= 65_535);
        msg
    }

    #[test]
    fn a_long_pointer_chain_is_refused_and_a_short_one_read() {
        let attack = pointer_chain_answer(8_100, 3_000);
        assert!(attack.len() > 60_000);
        assert_eq!(parse_response(&attack), Err(Error::Malformed));
        // The question comes first and costs nothing to check.
        let (id, question) = response_question(&attack).unwrap();
        assert_eq!((id, question), (0x1234, Some(("a".to_string(), TYPE_A))));
        // Pointers to pointers are legal in moderation.
        let fine = pointer_chain_answer(MAX_POINTER_HOPS - 1, 3);
        let r = parse_response(&fine).unwrap();
        assert_eq!(r.answers.len(), 4);
        assert!(r.answers.iter().all(|rec| rec.name == "a"));
        assert_eq!(r.answers[3].data, RecordData::A(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn names_are_checked_and_normalised() {
        assert_eq!(
            normalize_name("WWW.Example.COM.").unwrap(),
            "www.example.com"
        );
        for bad in [
            "",
            ".",
            "a..b",
            "a b",
            "é.com",
            &"x".repeat(64),
            &"a.".repeat(128),
        ] {
            assert!(normalize_name(bad).is_err(), "{bad:?}");
        }
        assert!(
            normalize_name(&"a.".repeat(127)).is_ok(),
            "253 bytes is the limit"
        );
    }

    #[test]
    fn query_layout() {
        let q = query("a.bc");
        assert_eq!(
            q,
            [
                0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 2, b'b', b'c', 0, 0, 1, 0,
                1
            ]
        );
    }

    #[test]
    fn answers_with_compression_and_cname() {
        let q = query("www.example.com");
        let mut r = build::response(&q, RCODE_NOERROR, 2, 0);
        build::record(
            &mut r,
            None,
            TYPE_CNAME,
            300,
            &build::cname("host.example.com"),
        );
        let target_at = r.len() - build::cname("host.example.com").len();
        build::record(&mut r, None, TYPE_A, 60, &[0; 4]); // owner fixed below
                                                          // Re-point the A record's owner at the CNAME target (compression).
        let a_owner = r.len() - 16;
        r[a_owner] = 0xc0;
        r[a_owner + 1] = target_at as u8;
        let last = r.len();
        r[last - 4..].copy_from_slice(&[10, 0, 0, 7]);
        let resp = parse_response(&r).unwrap();
        assert_eq!(resp.id, 0x1234);
        assert_eq!(resp.question, Some(("www.example.com".into(), TYPE_A)));
        assert_eq!(
            resp.answers,
            vec![
                Record {
                    name: "www.example.com".into(),
                    ttl: 300,
                    data: RecordData::Cname("host.example.com".into())
                },
                Record {
                    name: "host.example.com".into(),
                    ttl: 60,
                    data: RecordData::A(Ipv4Addr::new(10, 0, 0, 7))
                },
            ]
        );
    }

    #[test]
    fn loops_truncation_and_queries_are_rejected() {
        let q = query("loop.test");
        assert_eq!(
            parse_response(&q),
            Err(Error::Malformed),
            "a query, not a response"
        );
        // A pointer to itself.
        let mut r = build::response(&q, RCODE_NOERROR, 1, 0);
        let own = r.len();
        r.extend_from_slice(&[0xc0, own as u8]);
        r.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse_response(&r), Err(Error::Malformed));
        // A forward pointer (two names pointing at each other).
        let mut r = build::response(&q, RCODE_NOERROR, 1, 0);
        let own = r.len();
        r.extend_from_slice(&[0xc0, (own + 2) as u8, 0xc0, own as u8]);
        assert_eq!(parse_response(&r), Err(Error::Malformed));
        // A record whose data runs past the end.
        let mut r = build::response(&q, RCODE_NOERROR, 1, 0);
        build::record(&mut r, None, TYPE_A, 1, &[1, 2, 3, 4]);
        r.truncate(r.len() - 2);
        assert_eq!(parse_response(&r), Err(Error::Truncated));
        // More records announced than present.
        let mut r = build::response(&q, RCODE_NOERROR, 2, 0);
        build::record(&mut r, None, TYPE_A, 1, &[1, 2, 3, 4]);
        assert_eq!(parse_response(&r), Err(Error::Truncated));
        // An A record of the wrong size.
        let mut r = build::response(&q, RCODE_NOERROR, 1, 0);
        build::record(&mut r, None, TYPE_A, 1, &[1, 2, 3]);
        assert_eq!(parse_response(&r), Err(Error::Malformed));
        // Every prefix of a valid response fails cleanly.
        let mut r = build::response(&q, RCODE_NOERROR, 1, 0);
        build::record(&mut r, None, TYPE_A, 1, &[1, 2, 3, 4]);
        assert!(parse_response(&r).is_ok());
        for n in 0..r.len() {
            assert!(parse_response(&r[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn soa_minimum_and_nxdomain() {
        let q = query("nope.test");
        let mut r = build::response(&q, RCODE_NXDOMAIN, 0, 1);
        let mut soa = Vec::new();
        build::name(&mut soa, "ns.test");
        build::name(&mut soa, "admin.test");
        for v in [1u32, 2, 3, 4, 42] {
            soa.extend_from_slice(&v.to_be_bytes());
        }
        build::record(&mut r, Some("test"), TYPE_SOA, 600, &soa);
        let resp = parse_response(&r).unwrap();
        assert_eq!(resp.rcode, RCODE_NXDOMAIN);
        assert_eq!(resp.authority[0].data, RecordData::Soa { minimum: 42 });
    }
}
