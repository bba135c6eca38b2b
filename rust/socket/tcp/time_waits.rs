//! The connections in TIME-WAIT that nobody holds, as records
//! ([`TimeWaitRecord`]) by tuple, and when each ends. A record kept again
//! (after a segment, which may restart its 2·MSL) or taken over leaves a
//! stale entry in the heap, skipped when it comes up.

use super::connection::TimeWaitRecord;
use super::tuple_map::Tuple;
use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

#[derive(Debug, Default)]
pub struct TimeWaits {
    records: HashMap<Tuple, TimeWaitRecord>,
    ends: BinaryHeap<Reverse<(Instant, Tuple)>>,
}

fn tuple_of(r: &TimeWaitRecord) -> Tuple {
    (r.local().1, r.remote().0, r.remote().1)
}

impl TimeWaits {
    pub fn keep(&mut self, record: TimeWaitRecord) {
        let tuple = tuple_of(&record);
        self.ends.push(Reverse((record.ends_at(), tuple)));
        self.records.insert(tuple, record);
        // A record taken over leaves its entry until its time comes: a
        // client that reuses its ports as fast as it can would leave one per
        // connection. Once stale ones could outnumber live ones they go, so
        // the heap stays O(records) at amortised O(1) per record.
        if self.ends.len() > 2 * self.records.len() + 64 {
            let records = &self.records;
            self.ends
                .retain(|&Reverse((at, t))| records.get(&t).is_some_and(|r| r.ends_at() == at));
        }
    }

    pub fn contains(&self, tuple: &Tuple) -> bool {
        self.records.contains_key(tuple)
    }

    pub fn take(&mut self, tuple: &Tuple) -> Option<TimeWaitRecord> {
        if self.records.is_empty() {
            return None; // (the per-segment path of a stack without any)
        }
        self.records.remove(tuple)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &TimeWaitRecord> {
        self.records.values()
    }

    /// Drops the records whose TIME-WAIT is over by `now`.
    pub fn expire(&mut self, now: Instant) {
        while let Some(&Reverse((at, tuple))) = self.ends.peek() {
            if at > now {
                break;
            }
            self.ends.pop();
            if self.records.get(&tuple).is_some_and(|r| r.ends_at() == at) {
                self.records.remove(&tuple);
            }
        }
        if self.records.is_empty() {
            self.ends.clear();
        }
    }

    /// When the first record ends (maybe a stale entry's time: an early
    /// wake-up that finds nothing to do).
    pub fn poll_at(&self) -> Option<Instant> {
        self.ends.peek().map(|&Reverse((at, _))| at)
    }

    /// Heap bytes of the table and the queue.
    pub fn memory(&self) -> usize {
        self.records.capacity() * (std::mem::size_of::<(Tuple, TimeWaitRecord)>() + 1)
            + self.ends.capacity() * std::mem::size_of::<Reverse<(Instant, Tuple)>>()
    }
}
