//! Every TCP connection and listener of a stack: demultiplexing by 4-tuple,
//! timers in a heap, and a dirty list so that a round touches only the
//! connections that have something to do (thousands may sit idle).

use super::connection::{Connection, State, TimeWaitRecord};
use super::cookie;
use super::listener::{Families, Listener};
use super::path_mtu::PathMtuCache;
use super::secret::Secret;
use super::seq::Seq;
use super::time_waits::TimeWaits;
use super::tuple_map::{Tuple, TupleMap};
use super::Outgoing;
use super::{Emit, Endpoint, Incoming, TcpConfig};
use crate::time::{earliest, Instant};
use crate::wire::tcp::{Flags, Options};
use crate::wire::{Ipv4Addr, SegmentText};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::IpAddr;

/// A connection as the user holds it; stale after the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Handle {
    index: u32,
    generation: u32,
}

/// RFC 6056 §2.1: the IANA ephemeral range.
const EPHEMERAL_FIRST: u16 = 49152;
const EPHEMERAL_COUNT: u32 = 65536 - EPHEMERAL_FIRST as u32;
/// Ports a connect looks at for a free one before it takes over the first
/// TIME-WAIT tuple it met (see `TcpSockets::pick_port`).
const TIME_WAIT_REUSE_AFTER: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// The chosen source port is taken for this destination.
    AddressInUse,
    /// Every ephemeral port to this destination is taken.
    NoPortAvailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenError {
    AddressInUse,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    conn: Option<Connection>,
    /// The earliest timer entry in the heap for this slot.
    scheduled: Option<Instant>,
    dirty: bool,
    /// The user holds a handle (until `release`).
    user: bool,
    /// Owned by this listener until accepted.
    listener: Option<u16>,
    /// Sitting in the listener's accept queue.
    queued: bool,
    /// Counted in [`TcpSockets::time_waits`].
    time_wait: bool,
}

/// What a connection's segments carry as [`Outgoing::owner`]: its slot and
/// the slot's generation, so a later lookup cannot find its successor.
fn owner_of(index: u32, generation: u32) -> Option<u64> {
    Some((u64::from(index) << 32) | u64::from(generation))
}

/// The connection an [`Outgoing::owner`] names (see [`owner_of`]).
fn handle_of(owner: u64) -> Handle {
    Handle {
        index: (owner >> 32) as u32,
        generation: owner as u32,
    }
}

fn tuple_of(c: &Connection) -> Tuple {
    (c.local().1, c.remote().0, c.remote().1)
}

/// What happened to a segment that no connection or listener took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclaimed {
    /// Nobody has this port: the caller answers with a reset.
    NoSocket,
    /// A listener's queues are full: dropped, the peer will retry.
    Overflow,
    /// Ignored on purpose (a stray RST, a non-SYN to a listener handled).
    Ignored,
    /// An ACK to a listener sending cookies that returns none of ours:
    /// dropped without a reset, since it may be a peer's later segment
    /// whose first one (the one that carries the cookie) was lost or found
    /// the accept queue full; the peer retransmits that first one.
    BadCookie,
}

#[derive(Debug)]
pub struct TcpSockets {
    config: TcpConfig,
    slots: Vec<Slot>,
    free: Vec<u32>,
    tuples: TupleMap,
    listeners: HashMap<u16, Listener>,
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    dirty: Vec<u32>,
    /// Connections dispatched since [`TcpSockets::take_changed`], when
    /// someone follows changes (the runtime's readiness descriptors).
    changed: Option<Vec<Handle>>,
    /// Retransmissions of the connections already freed, for the total.
    retransmits_of_freed: u64,
    secret: Secret,
    /// RFC 6056 Algorithm 3's `next_ephemeral`.
    next_ephemeral: u32,
    /// SYNs answered with a cookie, and connections built from one, ever.
    cookies: (u64, u64),
    path_mtu: PathMtuCache,
    /// The MSS configured, before a link's MTU lowers `config.mss`.
    configured_mss: usize,
    /// A reader's lent buffer filled since [`TcpSockets::take_lent_filled`].
    lent_filled: bool,
    /// Connections in TIME-WAIT that a slot holds (see
    /// [`TcpConfig::max_time_wait`]).
    time_waits: usize,
    /// Connections in TIME-WAIT that nobody holds, as records.
    time_wait_records: TimeWaits,
}

impl TcpSockets {
    pub fn new(config: TcpConfig, key: [u8; 16], first_port: u32) -> Self {
        TcpSockets {
            configured_mss: config.mss,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            tuples: TupleMap::default(),
            listeners: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            changed: None,
            retransmits_of_freed: 0,
            secret: Secret::new(key).with_shared_clock(config.shared_clock),
            next_ephemeral: first_port,
            cookies: (0, 0),
            path_mtu: PathMtuCache::default(),
            lent_filled: false,
            time_waits: 0,
            time_wait_records: TimeWaits::default(),
        }
    }

    /// Whether a waiting reader's lent buffer filled up since last asked
    /// (see `posted.rs`): the round may stop taking frames.
    pub fn take_lent_filled(&mut self) -> bool {
        std::mem::take(&mut self.lent_filled)
    }

    #[cfg(test)]
    pub(crate) fn secret(&self) -> &Secret {
        &self.secret
    }

    /// SYNs answered with a SYN cookie, and connections built from a
    /// returning one, since the stack started.
    pub fn cookies(&self) -> (u64, u64) {
        self.cookies
    }

    pub fn config(&self) -> &TcpConfig {
        &self.config
    }
    pub fn config_mut(&mut self) -> &mut TcpConfig {
        &mut self.config
    }
    /// Connections alive (not yet freed), for statistics.
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len() + self.time_wait_records.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Every connection held, with its handle (`ss -t` order: by slot).
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &Connection)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let handle = Handle {
                index: i as u32,
                generation: s.generation,
            };
            s.conn.as_ref().map(|c| (handle, c))
        })
    }

    /// The ports listened on, with their listeners.
    pub fn listeners(&self) -> impl Iterator<Item = (u16, &Listener)> {
        self.listeners.iter().map(|(&p, l)| (p, l))
    }

    /// Segments retransmitted by every connection, freed ones included.
    pub fn retransmits(&self) -> u64 {
        self.retransmits_of_freed
            + self
                .iter()
                .map(|(_, c)| c.traffic().retransmits)
                .sum::<u64>()
    }

    /// Connections in the demultiplexing table (not CLOSED), TIME-WAIT's
    /// records included.
    pub fn active(&self) -> usize {
        self.tuples.len() + self.time_wait_records.len()
    }

    /// The connections in TIME-WAIT kept as records (not in [`TcpSockets::iter`]).
    pub fn time_wait_records(&self) -> impl Iterator<Item = &TimeWaitRecord> {
        self.time_wait_records.iter()
    }

    fn insert(&mut self, conn: Connection, user: bool, listener: Option<u16>) -> Handle {
        let tuple = tuple_of(&conn);
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                    scheduled: None,
                    dirty: false,
                    user: false,
                    listener: None,
                    queued: false,
                    time_wait: false,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.conn = Some(conn);
        slot.user = user;
        slot.listener = listener;
        slot.queued = false;
        slot.scheduled = None;
        let generation = slot.generation;
        self.tuples.insert(tuple, index);
        self.mark(index);
        Handle { index, generation }
    }

    fn mark(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(index);
            if let Some(changed) = self.changed.as_mut() {
                changed.push(Handle {
                    index,
                    generation: slot.generation,
                });
            }
        }
    }

    fn slot(&self, h: Handle) -> Option<&Slot> {
        self.slots
            .get(h.index as usize)
            .filter(|s| s.generation == h.generation && s.conn.is_some())
    }

    pub fn get(&self, h: Handle) -> Option<&Connection> {
        self.slot(h).and_then(|s| s.conn.as_ref())
    }

    /// `len` bytes of the send buffer of the connection `owner` names (see
    /// [`Outgoing::owner`]) from sequence number `from`, if they are still
    /// there: the text of a segment queued by reference.
    pub fn sent_text(&self, owner: u64, from: u32, len: usize) -> Option<(&[u8], &[u8])> {
        self.get(handle_of(owner))?.send_buffer_text(Seq(from), len)
    }

    /// The connection, marked for dispatch (a user call may create work).
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Connection> {
        self.slot(h)?;
        self.mark(h.index);
        self.get_mut_unmarked(h)
    }

    /// The connection, not marked: for a call that gives it nothing to
    /// send and no timer to change (a reader lending its buffer or taking
    /// it back), so that no dispatch and no wake-up follow it.
    pub fn get_mut_unmarked(&mut self, h: Handle) -> Option<&mut Connection> {
        self.slot(h)?;
        self.slots[h.index as usize].conn.as_mut()
    }

    /// Active open from `local_ip`; an ephemeral port per RFC 6056 §3.3.3
    /// unless `local_port` is given.
    pub fn connect(
        &mut self,
        now: Instant,
        local_ip: impl Into<IpAddr>,
        remote: (impl Into<IpAddr>, u16),
        local_port: Option<u16>,
    ) -> Result<Handle, ConnectError> {
        let (local_ip, remote): (IpAddr, Endpoint) = (local_ip.into(), (remote.0.into(), remote.1));
        let port = match local_port {
            Some(p) => {
                if !self.tuple_free((p, remote.0, remote.1)) {
                    return Err(ConnectError::AddressInUse);
                }
                p
            }
            None => self.pick_port(local_ip, remote)?,
        };
        let local = (local_ip, port);
        let iss = Seq(self.secret.isn(now, local, remote));
        let conn = Connection::connect(self.config, now, local, remote, iss)
            .with_timestamp_offset(self.secret.timestamp_offset(local, remote))
            .with_path_mtu(self.path_mtu.get(now, remote.0));
        Ok(self.insert(conn, true, None))
    }

    /// A 4-tuple is free if unused, or held by TIME-WAIT: the new ISN comes
    /// from a clock that has moved on, so old duplicates cannot match
    /// (RFC 6528 §3, RFC 9293 §3.4.1), and the old block is dropped.
    fn tuple_free(&mut self, tuple: Tuple) -> bool {
        match self.tuples.get(&tuple) {
            None => {
                self.time_wait_records.take(&tuple);
                true
            }
            Some(i) => {
                let tw = self.in_time_wait(i);
                if tw {
                    self.remove(i);
                }
                tw
            }
        }
    }

    /// RFC 6056 §3.3.3: ports in order from a per-destination offset, the
    /// first free one. Where every port near the cursor holds a tuple to
    /// this destination (a client that opens and closes connections to one
    /// server faster than TIME-WAIT ends), the first TIME-WAIT tuple met is
    /// taken over instead (see [`TcpSockets::tuple_free`]) once
    /// [`TIME_WAIT_REUSE_AFTER`] ports were looked at: with the cursor
    /// moving one port per connection, that is the longest-waiting one, and
    /// a connect costs a few lookups instead of one per port in the range.
    fn pick_port(&mut self, local: IpAddr, remote: Endpoint) -> Result<u16, ConnectError> {
        let offset = self.secret.port_offset(local, remote);
        // The first TIME-WAIT port met, and the cursor's value there.
        let mut reusable: Option<(u16, u32)> = None;
        for probed in 0..EPHEMERAL_COUNT {
            if reusable.is_some() && probed >= TIME_WAIT_REUSE_AFTER {
                break;
            }
            let at = self.next_ephemeral;
            let port = EPHEMERAL_FIRST as u32 + (offset.wrapping_add(at)) % EPHEMERAL_COUNT;
            self.next_ephemeral = at.wrapping_add(1);
            let port = port as u16;
            if self.listeners.contains_key(&port) {
                continue;
            }
            let tuple = (port, remote.0, remote.1);
            let time_wait = match self.tuples.get(&tuple) {
                None if !self.time_wait_records.contains(&tuple) => return Ok(port),
                None => true,
                Some(i) => self.in_time_wait(i),
            };
            if time_wait && reusable.is_none() {
                reusable = Some((port, at));
            }
        }
        let Some((port, at)) = reusable else {
            return Err(ConnectError::NoPortAvailable);
        };
        // The next connect goes on from the port after this one, the next
        // longest-waiting.
        self.next_ephemeral = at.wrapping_add(1);
        if self.tuple_free((port, remote.0, remote.1)) {
            Ok(port)
        } else {
            Err(ConnectError::NoPortAvailable)
        }
    }

    fn in_time_wait(&self, i: u32) -> bool {
        self.slots[i as usize]
            .conn
            .as_ref()
            .is_some_and(|c| c.state() == State::TimeWait)
    }

    pub fn listen(&mut self, port: u16, backlog: usize) -> Result<(), ListenError> {
        self.listen_for(port, backlog, Families::Both)
    }

    /// As [`TcpSockets::listen`], for connections of `families` only: a
    /// SYN of the other family finds no listener (a reset, as a kernel's
    /// `AF_INET` listener leaves IPv6 peers to be refused).
    pub fn listen_for(
        &mut self,
        port: u16,
        backlog: usize,
        families: Families,
    ) -> Result<(), ListenError> {
        if self.listeners.contains_key(&port) {
            return Err(ListenError::AddressInUse);
        }
        self.listeners
            .insert(port, Listener::new(port, backlog, families));
        Ok(())
    }

    /// Listens on a free ephemeral port (`listen(0)`), picked as
    /// [`TcpSockets::connect`] picks one (RFC 6056 §3.3.3, from the stack's
    /// seeded secret) and skipping ports that hold any connection.
    pub fn listen_ephemeral(
        &mut self,
        backlog: usize,
        families: Families,
    ) -> Result<u16, ListenError> {
        let offset = self.secret.port_offset(
            Ipv4Addr::UNSPECIFIED.into(),
            (Ipv4Addr::UNSPECIFIED.into(), 0),
        );
        let in_use: std::collections::HashSet<u16> = self
            .tuples
            .local_ports()
            .chain(self.time_wait_records.iter().map(|r| r.local().1))
            .collect();
        for _ in 0..EPHEMERAL_COUNT {
            let port = EPHEMERAL_FIRST as u32
                + (offset.wrapping_add(self.next_ephemeral)) % EPHEMERAL_COUNT;
            self.next_ephemeral = self.next_ephemeral.wrapping_add(1);
            let port = port as u16;
            if !self.listeners.contains_key(&port) && !in_use.contains(&port) {
                let listener = Listener::new(port, backlog, families);
                self.listeners.insert(port, listener);
                return Ok(port);
            }
        }
        Err(ListenError::AddressInUse)
    }

    /// The listener on `port` that takes a connection from `peer`.
    fn listener_for(&mut self, port: u16, peer: IpAddr) -> Option<&mut Listener> {
        self.listeners
            .get_mut(&port)
            .filter(|l| l.families.take(peer))
    }

    pub fn listener(&self, port: u16) -> Option<&Listener> {
        self.listeners.get(&port)
    }

    /// Stops listening; connections not yet accepted are reset.
    pub fn unlisten(&mut self, port: u16) {
        if self.listeners.remove(&port).is_none() {
            return;
        }
        let owned: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&i| self.slots[i as usize].listener == Some(port))
            .collect();
        for i in owned {
            let slot = &mut self.slots[i as usize];
            slot.listener = None;
            slot.queued = false;
            if let Some(c) = slot.conn.as_mut() {
                c.abort();
            }
            self.mark(i);
        }
    }

    /// The oldest established connection of a listener, handed to the user.
    pub fn accept(&mut self, port: u16) -> Option<Handle> {
        let h = self.listeners.get_mut(&port)?.ready.pop_front()?;
        let slot = &mut self.slots[h.index as usize];
        slot.listener = None;
        slot.queued = false;
        slot.user = true;
        Some(h)
    }

    /// The user is done with a handle: close gracefully (the connection
    /// lives on until the FIN exchange ends) or abort.
    pub fn release(&mut self, h: Handle, abort: bool) {
        if self.slot(h).is_none() {
            return;
        }
        let slot = &mut self.slots[h.index as usize];
        slot.user = false;
        if let Some(c) = slot.conn.as_mut() {
            if abort {
                c.abort();
            } else {
                c.close();
            }
        }
        self.mark(h.index);
    }

    /// A segment addressed to us.
    pub fn process(
        &mut self,
        now: Instant,
        seg: &Incoming<'_>,
        out: &mut Emit<'_>,
    ) -> Result<(), Unclaimed> {
        let tuple = (seg.dst_port, seg.src, seg.src_port);
        if let Some(i) = self.tuples.lookup(tuple) {
            let slot = &mut self.slots[i as usize];
            let owner = owner_of(i, slot.generation);
            let conn = slot.conn.as_mut().expect("mapped slots hold a connection");
            if conn.state() == State::Closed {
                // Closed earlier in this batch (the final ACK of a close came
                // just before): the tuple is free now, not at the next settle,
                // so a SYN right behind that ACK finds the listener.
                self.tuples.remove(&tuple);
                return self.process(now, seg, out);
            }
            let new_syn = seg.has(Flags::SYN) && !seg.has(Flags::ACK);
            if !(new_syn
                && conn.time_wait_accepts(seg)
                && (self.listeners.get(&seg.dst_port)).is_some_and(|l| l.families.take(seg.src)))
            {
                let before = conn.state();
                conn.process(now, seg, &mut |s| out(&Outgoing { owner, ..*s }));
                self.lent_filled |= conn.take_lent_filled();
                self.after_event(i, before);
                self.mark(i);
                return Ok(());
            }
            self.remove(i); // RFC 6191: a new incarnation replaces TIME-WAIT
        } else if let Some(record) = self.time_wait_records.take(&tuple) {
            // The connection answers (or gives way to a new SYN) as before it
            // was kept as a record; `settle` keeps it so again after.
            self.retransmits_of_freed = self
                .retransmits_of_freed
                .saturating_sub(record.traffic().retransmits);
            let conn = Connection::from_time_wait_record(self.config, now, &record);
            self.insert(conn, false, None);
            return self.process(now, seg, out);
        }
        let cookies = self.config.syn_cookies;
        let Some(listener) = self.listener_for(seg.dst_port, seg.src) else {
            return Err(Unclaimed::NoSocket);
        };
        if seg.has(Flags::RST) {
            return Err(Unclaimed::Ignored);
        }
        if seg.has(Flags::ACK) || !seg.has(Flags::SYN) {
            let cookie_due = listener
                .last_cookie_at
                .is_some_and(|t| now.saturating_since(t) < cookie::lifetime());
            if cookies && cookie_due && seg.has(Flags::ACK) && !seg.has(Flags::SYN) {
                return self.accept_cookie(now, seg, out);
            }
            // RFC 9293 §3.10.7.2: an ACK to a listener gets a reset.
            return Err(if seg.has(Flags::ACK) {
                Unclaimed::NoSocket
            } else {
                Unclaimed::Ignored
            });
        }
        if !listener.has_room() {
            if cookies && listener.can_queue() {
                listener.cookies_sent += 1;
                listener.last_cookie_at = Some(now);
                self.cookies.0 += 1;
                self.send_cookie(now, seg, out);
                return Ok(());
            }
            listener.overflows += 1;
            return Err(Unclaimed::Overflow);
        }
        listener.embryonic += 1;
        let port = listener.port;
        let local = (seg.dst, seg.dst_port);
        let iss = Seq(self.secret.isn(now, local, (seg.src, seg.src_port)));
        let remote = (seg.src, seg.src_port);
        let conn = Connection::accept(self.config, now, local, seg, iss)
            .with_timestamp_offset(self.secret.timestamp_offset(local, remote))
            .with_path_mtu(self.path_mtu.get(now, remote.0));
        self.insert(conn, false, Some(port));
        Ok(())
    }

    /// Answers a SYN with a cookie SYN-ACK and keeps nothing: a connection
    /// built as for any SYN sends it and is dropped. What the cookie cannot
    /// carry (window scale and SACK without timestamps) is not offered.
    fn send_cookie(&mut self, now: Instant, seg: &Incoming<'_>, out: &mut Emit<'_>) {
        let local = (seg.dst, seg.dst_port);
        let remote = (seg.src, seg.src_port);
        let offered = seg.options;
        let (isn, mss) = cookie::make(
            &self.secret,
            now,
            local,
            remote,
            seg.seq.0,
            offered.mss.unwrap_or(536),
        );
        let timestamps = self.config.timestamps && offered.timestamps.is_some();
        let syn = Incoming {
            options: Options {
                mss: Some(mss),
                window_scale: offered.window_scale.filter(|_| timestamps),
                sack_permitted: offered.sack_permitted && timestamps,
                timestamps: offered.timestamps,
                ..Default::default()
            },
            ..*seg
        };
        let mut conn = Connection::accept(self.config, now, local, &syn, Seq(isn))
            .with_timestamp_offset(self.secret.timestamp_offset(local, remote));
        if timestamps {
            conn.carry_in_timestamp(now, syn.options.window_scale, syn.options.sack_permitted);
        }
        conn.dispatch(now, out);
    }

    /// An ACK to a listener that recently sent cookies: if it returns one,
    /// the connection is built from it and takes the ACK.
    fn accept_cookie(
        &mut self,
        now: Instant,
        seg: &Incoming<'_>,
        out: &mut Emit<'_>,
    ) -> Result<(), Unclaimed> {
        let local = (seg.dst, seg.dst_port);
        let remote = (seg.src, seg.src_port);
        let peer_isn = seg.seq.0.wrapping_sub(1);
        let iss = seg.ack.0.wrapping_sub(1);
        let Some(mss) = cookie::check(&self.secret, now, local, remote, peer_isn, iss) else {
            return Err(Unclaimed::BadCookie);
        };
        let listener = self
            .listener_for(seg.dst_port, seg.src)
            .ok_or(Unclaimed::NoSocket)?;
        if !listener.can_queue() {
            // As Linux: the peer retries, and gets in once accept makes room.
            listener.overflows += 1;
            return Err(Unclaimed::Overflow);
        }
        listener.embryonic += 1;
        let port = listener.port;
        self.cookies.1 += 1;
        let (window_scale, sack) = match seg.options.timestamps {
            Some((_, echo)) if self.config.timestamps => cookie::decode_timestamp(echo),
            _ => (None, false),
        };
        let syn = Incoming {
            seq: Seq(peer_isn),
            ack: Seq(0),
            flags: Flags::SYN,
            options: Options {
                mss: Some(mss),
                window_scale,
                sack_permitted: sack,
                timestamps: seg.options.timestamps.map(|(val, _)| (val, 0)),
                ..Default::default()
            },
            payload: SegmentText::here(&[]),
            ..*seg
        };
        let conn = Connection::from_cookie(self.config, now, local, &syn, Seq(iss))
            .with_timestamp_offset(self.secret.timestamp_offset(local, remote))
            .with_path_mtu(self.path_mtu.get(now, remote.0));
        let h = self.insert(conn, false, Some(port));
        let conn = self.slots[h.index as usize]
            .conn
            .as_mut()
            .expect("just inserted");
        let owner = owner_of(h.index, h.generation);
        conn.process(now, seg, &mut |s| out(&Outgoing { owner, ..*s }));
        self.after_event(h.index, State::SynReceived);
        self.mark(h.index);
        Ok(())
    }

    /// An ICMP destination unreachable quoting a segment we sent.
    pub fn icmp_unreachable(&mut self, local_port: u16, remote: Endpoint) {
        if let Some(i) = self.tuples.get(&(local_port, remote.0, remote.1)) {
            let before = self.slots[i as usize].conn.as_ref().map(|c| c.state());
            if let Some(c) = self.slots[i as usize].conn.as_mut() {
                c.icmp_unreachable();
            }
            if let Some(before) = before {
                self.after_event(i, before);
                self.mark(i);
            }
        }
    }

    /// The link address of a next hop could not be resolved: connections
    /// still opening to a destination `through` it fail with
    /// [`Error::HostUnreachable`](super::Error::HostUnreachable), as Linux's
    /// connect() does (its ARP failure turns into a host unreachable for
    /// the SYN). Established ones keep retrying, as there.
    pub fn unreachable_through(&mut self, through: impl Fn(IpAddr) -> bool) {
        for i in 0..self.slots.len() as u32 {
            let Some(conn) = self.slots[i as usize].conn.as_mut() else {
                continue;
            };
            if conn.state() != State::SynSent || !through(conn.remote().0) {
                continue;
            }
            conn.host_unreachable();
            self.after_event(i, State::SynSent);
            self.mark(i);
        }
    }

    /// ICMP "fragmentation needed" quoting a segment of ours (RFC 1191):
    /// the connection checks the quote and lowers its MSS; the destination's
    /// path MTU is remembered for later connections. False if not believed.
    pub fn fragmentation_needed(
        &mut self,
        now: Instant,
        local_port: u16,
        remote: Endpoint,
        reported_mtu: usize,
        quoted_seq: Seq,
    ) -> bool {
        let Some(i) = self.tuples.get(&(local_port, remote.0, remote.1)) else {
            return false;
        };
        let Some(conn) = self.slots[i as usize].conn.as_mut() else {
            return false;
        };
        match conn.path_mtu_reduced(reported_mtu, quoted_seq) {
            None => false,
            Some(false) => true, // known already
            Some(true) => {
                // The connection's size, floor applied: what later ones start with.
                if let Some(mtu) = conn.path_mtu() {
                    self.path_mtu.learn(now, remote.0, mtu);
                }
                self.mark(i);
                true
            }
        }
    }

    /// The interface's MTU is now `mtu`: connections made from now on
    /// announce an MSS that fits it (never more than configured), and those
    /// whose segments no longer fit cut them smaller (`link_mtu_lowered`).
    /// Connections keep a smaller MSS when it goes up again, as after a path
    /// MTU report.
    pub fn link_mtu_changed(&mut self, mtu: usize) {
        self.config.mss = self.configured_mss.min(mtu.saturating_sub(40).max(64));
        for i in 0..self.slots.len() {
            let lowered = self.slots[i]
                .conn
                .as_mut()
                .is_some_and(|c| c.link_mtu_lowered(mtu));
            if lowered {
                self.mark(i as u32);
            }
        }
    }

    /// The path MTU known toward `dst`, if smaller than the link's.
    pub fn path_mtu(&self, now: Instant, dst: IpAddr) -> Option<usize> {
        self.path_mtu.get(now, dst)
    }

    /// Bookkeeping after a connection changed: accept queue, table, freeing.
    fn after_event(&mut self, i: u32, before: State) {
        let slot = &mut self.slots[i as usize];
        let Some(conn) = slot.conn.as_ref() else {
            return;
        };
        let state = conn.state();
        if let Some(port) = slot.listener {
            if before == State::SynReceived && state != State::SynReceived && !slot.queued {
                if let Some(l) = self.listeners.get_mut(&port) {
                    l.embryonic = l.embryonic.saturating_sub(1);
                    if state != State::Closed {
                        slot.queued = true;
                        l.ready.push_back(Handle {
                            index: i,
                            generation: slot.generation,
                        });
                    } else {
                        slot.listener = None;
                    }
                }
            }
        }
    }

    /// From now on, remember which connections may have changed: every one
    /// marked for dispatch (segments, timers and user calls all mark it).
    pub fn follow_changes(&mut self) {
        self.changed.get_or_insert_with(Vec::new);
    }

    /// The connections that may have changed since the last call (some
    /// more than once; freed ones under their stale handle).
    pub fn take_changed(&mut self, out: &mut Vec<Handle>) {
        if let Some(changed) = self.changed.as_mut() {
            out.append(changed);
        }
    }

    /// Sends what every marked connection has due; frees the finished ones.
    pub fn dispatch(&mut self, now: Instant, out: &mut Emit<'_>) {
        while let Some(i) = self.dirty.pop() {
            let slot = &mut self.slots[i as usize];
            slot.dirty = false;
            let Some(conn) = slot.conn.as_mut() else {
                continue;
            };
            let before = conn.state();
            let owner = owner_of(i, slot.generation);
            conn.dispatch(now, &mut |seg| out(&Outgoing { owner, ..*seg }));
            if before != conn.state() {
                self.after_event(i, before);
            }
            self.settle(i);
        }
        self.dirty.clear();
    }

    /// After dispatch: unmap and free a closed connection nobody holds, or
    /// schedule its next timer.
    fn settle(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        let time_wait = conn.state() == State::TimeWait;
        if time_wait != slot.time_wait {
            slot.time_wait = time_wait;
            if !time_wait {
                self.time_waits = self.time_waits.saturating_sub(1);
            } else if self.time_waits + self.time_wait_records.len() < self.config.max_time_wait {
                self.time_waits += 1;
            } else {
                // Linux's tcp_max_tw_buckets: past the bound, a connection
                // ends without TIME-WAIT (a FIN sent again then meets a reset).
                log::debug!("TIME-WAIT bound reached: {} closes at once", conn.summary());
                conn.end_time_wait();
                slot.time_wait = false;
            }
        }
        if slot.time_wait && !slot.user && slot.listener.is_none() {
            if let Some(record) = conn.time_wait_record() {
                self.remove(i);
                self.time_wait_records.keep(record);
                return;
            }
        }
        if conn.state() == State::Closed {
            let tuple = tuple_of(conn);
            self.tuples.remove_if(&tuple, i);
            let embryonic = slot.listener.is_some() && !slot.queued;
            if embryonic {
                if let Some(l) = slot.listener.and_then(|p| self.listeners.get_mut(&p)) {
                    l.embryonic = l.embryonic.saturating_sub(1);
                }
                slot.listener = None;
            }
            if !slot.user && slot.listener.is_none() {
                self.remove(i);
            }
            return;
        }
        // The slot follows its connection's timer both ways: a deadline
        // that moved later (a delayed ACK that rode on a reply) or went
        // leaves no live entry behind, so `poll_at` is the real next timer
        // and a sleeping driver is not woken for nothing.
        let next = conn.poll_at();
        if next != slot.scheduled {
            slot.scheduled = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, i)));
                self.compact_timers();
            }
            self.drop_superseded_top();
        }
    }

    /// An earlier timer supersedes a slot's entry without removing it (a
    /// heap cannot), so a connection whose delayed ACKs keep coming before
    /// its 2-hour keepalive leaves one stale entry per ACK. Once stale ones
    /// could outnumber live ones, they are dropped: the heap stays
    /// O(connections), at amortised O(1) per push.
    fn compact_timers(&mut self) {
        let live = self.slots.len() - self.free.len();
        if self.timers.len() <= 2 * live + 64 {
            return;
        }
        let slots = &self.slots;
        self.timers
            .retain(|&Reverse((t, i))| slots[i as usize].scheduled == Some(t));
    }

    /// Pops superseded entries off the top of the heap, so that the top,
    /// if any, is a live timer.
    fn drop_superseded_top(&mut self) {
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if self.slots[i as usize].scheduled == Some(t) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Entries in the timer heap, live and superseded (for memory checks).
    pub fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    fn remove(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        if let Some(conn) = slot.conn.take() {
            if std::mem::take(&mut slot.time_wait) {
                self.time_waits = self.time_waits.saturating_sub(1);
            }
            self.retransmits_of_freed += conn.traffic().retransmits;
            let tuple = tuple_of(&conn);
            self.tuples.remove_if(&tuple, i);
            slot.generation = slot.generation.wrapping_add(1);
            slot.scheduled = None;
            slot.user = false;
            slot.listener = None;
            slot.queued = false;
            self.free.push(i);
            self.drop_superseded_top();
        }
    }

    /// Marks the connections whose timers are due; ends the TIME-WAIT
    /// records that are over.
    pub fn poll(&mut self, now: Instant) {
        self.time_wait_records.expire(now);
        while let Some(&Reverse((t, i))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[i as usize];
            if slot.scheduled == Some(t) {
                slot.scheduled = None;
                self.mark(i);
            }
        }
    }

    /// The earliest timer; the distant past if some connection is marked.
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.dirty.is_empty() {
            return Some(Instant::ZERO);
        }
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        earliest(timer, self.time_wait_records.poll_at())
    }

    /// Heap bytes held by connection buffers, and the connection blocks.
    pub fn memory(&self) -> usize {
        let blocks = self.slots.capacity() * std::mem::size_of::<Slot>();
        let buffers: usize = self
            .slots
            .iter()
            .filter_map(|s| s.conn.as_ref())
            .map(|c| c.buffer_bytes())
            .sum();
        let table = self.tuples.memory();
        blocks + buffers + table + self.timers.capacity() * 16 + self.time_wait_records.memory()
    }
}
