//! Which slot each connection's (local port, remote address, remote port)
//! lives in, with the last lookup remembered: consecutive segments are
//! mostly for one connection, and a hit skips the keyed hash. Every change
//! to the map goes through here and forgets that lookup, so it never
//! disagrees with the map.

use std::collections::HashMap;
use std::net::IpAddr;

pub type Tuple = (u16, IpAddr, u16);

#[derive(Debug, Default)]
pub struct TupleMap {
    slots: HashMap<Tuple, u32>,
    last: Option<(Tuple, u32)>,
}

impl TupleMap {
    /// The slot `tuple` maps to, remembered for the next lookup (the
    /// per-segment path).
    pub fn lookup(&mut self, tuple: Tuple) -> Option<u32> {
        match self.last {
            Some((t, i)) if t == tuple => Some(i),
            _ => {
                let i = *self.slots.get(&tuple)?;
                self.last = Some((tuple, i));
                Some(i)
            }
        }
    }
    /// The slot `tuple` maps to (user calls: nothing remembered).
    pub fn get(&self, tuple: &Tuple) -> Option<u32> {
        self.slots.get(tuple).copied()
    }
    pub fn insert(&mut self, tuple: Tuple, slot: u32) {
        self.last = None;
        self.slots.insert(tuple, slot);
    }
    pub fn remove(&mut self, tuple: &Tuple) {
        self.last = None;
        self.slots.remove(tuple);
    }
    /// Unmaps `tuple` if it maps to `slot` (a new incarnation may hold it).
    pub fn remove_if(&mut self, tuple: &Tuple, slot: u32) {
        if self.get(tuple) == Some(slot) {
            self.remove(tuple);
        }
    }
    pub fn len(&self) -> usize {
        self.slots.len()
    }
    pub fn local_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots.keys().map(|t| t.0)
    }
    /// Heap bytes of the table.
    pub fn memory(&self) -> usize {
        self.slots.capacity() * (std::mem::size_of::<(Tuple, u32)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_lookup_is_forgotten_when_the_map_changes() {
        let a = (80, std::net::Ipv4Addr::new(10, 0, 0, 1).into(), 5000);
        let mut m = TupleMap::default();
        m.insert(a, 3);
        assert_eq!(m.lookup(a), Some(3));
        m.remove(&a);
        assert_eq!(m.lookup(a), None, "removed");
        m.insert(a, 3);
        assert_eq!(m.lookup(a), Some(3));
        m.insert(a, 7); // a new incarnation in another slot
        assert_eq!(m.lookup(a), Some(7));
        m.remove_if(&a, 3);
        assert_eq!(m.lookup(a), Some(7), "another slot's tuple stays");
        m.remove_if(&a, 7);
        assert_eq!(m.lookup(a), None);
    }
}
