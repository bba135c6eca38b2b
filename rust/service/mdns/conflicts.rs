//! Names another host holds (RFC 6762 §8.2, §9): a conflicting answer costs
//! us the name (or a new probe for it), a simultaneous probe is settled by
//! comparing the records proposed.

use super::*;

impl Responder {
    /// §9: a response holding a record for one of our unique names with
    /// other data is a conflict. While probing, the name is lost and we take
    /// the next one; after, we probe again (and lose it if it is still held).
    pub(super) fn check_conflicts(&mut self, now: Instant, message: &Message) {
        let ours = self.records();
        let conflicting = message
            .answers
            .iter()
            .chain(&message.additional)
            .find(|theirs| {
                let same_kind = |r: &&OwnRecord| {
                    r.unique && same_name(&r.name, &theirs.name) && r.data.rtype() == theirs.rtype
                };
                let mut same = ours.iter().filter(same_kind).peekable();
                same.peek().is_some()
                    && theirs.rclass == crate::wire::dns::CLASS_IN
                    && theirs.ttl > 0
                    && !same.any(|r| r.is(theirs))
            });
        let Some(theirs) = conflicting else {
            return;
        };
        // Only whether 15 fell within 10 s matters: a flood keeps no more.
        if self.conflicts.len() == CONFLICT_LIMIT {
            self.conflicts.pop_front();
        }
        self.conflicts.push_back(now);
        let name = theirs.name.clone();
        let claim = if same_name(&name, &self.host_name()) {
            Some(&mut self.host_claim)
        } else {
            self.services
                .iter_mut()
                .find(|s| same_name(&instance_name(s), &name))
                .map(|s| &mut s.claim)
        };
        let Some(claim) = claim else {
            return; // (our reverse name: no name of ours to give up)
        };
        if claim.announced {
            claim.announced = false;
            log::warn!("mDNS: another host answers for {name}: probing for it again");
        } else {
            claim.attempt += 1;
            log::warn!("mDNS: {name} is another host's: trying the next name");
        }
        self.start_probing(now, Duration::ZERO);
    }

    /// §8.2: another host probes for a name we are probing for. The side
    /// whose proposed records sort later wins; the other waits a second and
    /// probes again. True when we lost.
    pub(super) fn break_probe_tie(&mut self, now: Instant, message: &Message) -> bool {
        let ours = self.records();
        for name in self.pending_names() {
            let mut theirs: Vec<(u16, u16, Vec<u8>)> = message
                .authority
                .iter()
                .filter(|r| same_name(&r.name, &name))
                .map(|r| (r.rclass, r.rtype, r.rdata_bytes()))
                .collect();
            if theirs.is_empty() {
                continue;
            }
            let mut mine: Vec<(u16, u16, Vec<u8>)> = ours
                .iter()
                .filter(|r| same_name(&r.name, &name))
                .map(|r| (crate::wire::dns::CLASS_IN, r.data.rtype(), r.rdata()))
                .collect();
            theirs.sort();
            mine.sort();
            if theirs > mine {
                log::info!("mDNS: another host probes for {name} too and goes first");
                self.start_probing(now, LOST_TIE_WAIT);
                return true;
            }
        }
        false
    }
}
