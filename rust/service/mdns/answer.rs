//! Answering queries (RFC 6762 §5–§7, RFC 6763 §12): which records answer,
//! what comes along, and where the answer goes (multicast at most once a
//! second per record, unicast for QU questions and one-shot queriers).

use super::*;

impl Responder {
    /// The answers to a query (§6), with known answers left out (§7.1), sent
    /// where the query asks.
    pub(super) fn answer(&mut self, now: Instant, from: Source, query: &Message) -> Vec<Transmit> {
        let legacy = from.port != mdns::PORT;
        if (legacy || !from.to_group) && !from.on_link {
            return Vec::new(); // §5.5, §11: unicast answers stay on the link
        }
        let (answers, additional) = self.answers_to(query);
        if answers.is_empty() {
            return Vec::new();
        }
        if legacy {
            // §6.7: a one-shot querier's answer comes back by unicast, with
            // its ID and questions, short TTLs and no cache-flush bits.
            let mut w = Writer::response(query.id, false);
            for q in &query.questions {
                w.question(&q.name, q.qtype, false);
            }
            for (section, records) in [
                (Section::Answer, &answers),
                (Section::Additional, &additional),
            ] {
                for r in records {
                    w.record(section, r, r.ttl.min(LEGACY_TTL));
                }
            }
            return vec![Transmit {
                dst: from.ip,
                dst_port: from.port,
                payload: w.finish(),
            }];
        }
        let probe_defence = !query.authority.is_empty();
        let all_qu = query.questions.iter().all(|q| q.unicast_response);
        // §5.4: a QU question is answered by unicast, unless the record was
        // not multicast within a quarter of its TTL: then all hear it.
        let (unicast, multicast): (Vec<OwnRecord>, Vec<OwnRecord>) =
            answers.into_iter().partition(|r| {
                (all_qu || !from.to_group)
                    && self
                        .last_multicast(r)
                        .is_some_and(|t| now.saturating_since(t) < quarter_ttl(r))
            });
        let gap = if probe_defence {
            PROBE_DEFENCE_GAP
        } else {
            MULTICAST_GAP
        };
        let multicast: Vec<OwnRecord> = multicast
            .into_iter()
            .filter(|r| {
                !self
                    .last_multicast(r)
                    .is_some_and(|t| now.saturating_since(t) < gap)
            })
            .collect();
        let mut out = Vec::new();
        if !unicast.is_empty() && from.on_link {
            let mut w = Writer::response(0, true);
            write_answers(&mut w, &unicast, &additional);
            out.push(Transmit {
                dst: from.ip,
                dst_port: mdns::PORT,
                payload: w.finish(),
            });
        }
        if !multicast.is_empty() {
            let mut w = Writer::response(0, true);
            write_answers(&mut w, &multicast, &additional);
            self.note_multicast(now, &multicast);
            out.push(Transmit::multicast(w.finish()));
        }
        out
    }

    /// The records that answer `query`'s questions and those worth adding
    /// (RFC 6763 §12), known answers left out.
    fn answers_to(&self, query: &Message) -> (Vec<OwnRecord>, Vec<OwnRecord>) {
        let all = self.live_records();
        let mut answers: Vec<OwnRecord> = Vec::new();
        let add = |list: &mut Vec<OwnRecord>, r: OwnRecord| {
            if !list.contains(&r) {
                list.push(r);
            }
        };
        for q in &query.questions {
            let matching: Vec<&OwnRecord> = all
                .iter()
                .filter(|r| same_name(&r.name, &q.name) && q.asks(r.data.rtype()))
                .collect();
            for r in &matching {
                add(&mut answers, (*r).clone());
            }
            // §6.1: a name of ours without the type asked: say so with NSEC.
            let unique_name = all.iter().any(|r| r.unique && same_name(&r.name, &q.name));
            if matching.is_empty() && unique_name && q.qtype != TYPE_ANY {
                add(&mut answers, self.nsec(&all, &q.name));
            }
        }
        answers.retain(|r| !known(query, r));
        let mut additional = Vec::new();
        for r in &answers {
            for extra in self.additional_for(&all, r) {
                if !answers.contains(&extra) && !known(query, &extra) {
                    add(&mut additional, extra);
                }
            }
        }
        (answers, additional)
    }

    /// What a resolver will ask next after `r` (RFC 6763 §12; RFC 6762
    /// §6.2): a service PTR's SRV, TXT and addresses; an SRV's addresses;
    /// an address's other family and NSEC.
    fn additional_for(&self, all: &[OwnRecord], r: &OwnRecord) -> Vec<OwnRecord> {
        let host = self.host_name();
        let of = |name: &str, rtype: u16| -> Vec<OwnRecord> {
            all.iter()
                .filter(|x| same_name(&x.name, name) && x.data.rtype() == rtype)
                .cloned()
                .collect()
        };
        match &r.data {
            OwnData::Ptr(instance)
                if r.name.ends_with("._tcp.local") || r.name.ends_with("._udp.local") =>
            {
                let mut v = of(instance, TYPE_SRV);
                v.extend(of(instance, TYPE_TXT));
                v.extend(of(&host, TYPE_A));
                v.extend(of(&host, TYPE_AAAA));
                v.push(self.nsec(all, &host));
                v
            }
            OwnData::Srv { .. } => {
                let mut v = of(&host, TYPE_A);
                v.extend(of(&host, TYPE_AAAA));
                v.push(self.nsec(all, &host));
                v
            }
            // §6.2: an answer of one family brings the other's addresses.
            OwnData::A(_) => {
                let mut v = of(&r.name, TYPE_AAAA);
                v.push(self.nsec(all, &r.name));
                v
            }
            OwnData::Aaaa(_) => {
                let mut v = of(&r.name, TYPE_A);
                v.push(self.nsec(all, &r.name));
                v
            }
            _ => Vec::new(),
        }
    }

    /// The NSEC for one of our unique names: the types it has.
    fn nsec(&self, all: &[OwnRecord], name: &str) -> OwnRecord {
        // Written with the name's case as we hold it, whatever the query's.
        let name = all
            .iter()
            .find(|r| same_name(&r.name, name))
            .map_or(name, |r| r.name.as_str());
        let mut types: Vec<u16> = all
            .iter()
            .filter(|r| same_name(&r.name, name))
            .map(|r| r.data.rtype())
            .collect();
        types.sort();
        types.dedup();
        let ttl = if same_name(name, &self.host_name()) {
            HOST_TTL
        } else {
            SERVICE_TTL
        };
        OwnRecord {
            name: name.to_string(),
            ttl,
            unique: true,
            data: OwnData::Nsec(types),
        }
    }

    fn last_multicast(&self, r: &OwnRecord) -> Option<Instant> {
        self.multicast_at
            .iter()
            .find(|(n, t, _)| *n == r.name && *t == r.data.rtype())
            .map(|&(_, _, at)| at)
    }

    pub(super) fn note_multicast(&mut self, now: Instant, records: &[OwnRecord]) {
        for r in records {
            let key = (r.name.as_str(), r.data.rtype());
            match self
                .multicast_at
                .iter_mut()
                .find(|(n, t, _)| (n.as_str(), *t) == key)
            {
                Some(entry) => entry.2 = now,
                None => self
                    .multicast_at
                    .push((r.name.clone(), r.data.rtype(), now)),
            }
        }
    }
}

/// §7.1: the querier already has `r` with at least half its TTL left.
fn known(query: &Message, r: &OwnRecord) -> bool {
    query
        .answers
        .iter()
        .any(|k: &Record| r.is(k) && k.ttl >= r.ttl / 2)
}

fn quarter_ttl(r: &OwnRecord) -> Duration {
    Duration::from_secs(r.ttl as u64 / 4)
}

fn write_answers(w: &mut Writer, answers: &[OwnRecord], additional: &[OwnRecord]) {
    for r in answers {
        w.record(Section::Answer, r, r.ttl);
    }
    for r in additional {
        w.record(Section::Additional, r, r.ttl);
    }
}
