//! Bridges: a stack connection joined to a kernel stream socket, with the
//! bytes moved both ways by whoever runs the engine (the driver thread, or a
//! blocked call leading in its place), in the same round that received or
//! freed them, without Python. This is how code that needs a genuine
//! `socket.socket` runs over the stack: it holds the other end of a
//! socketpair, or the stack forwards to a local server.
//!
//! End of stream passes on in each direction (the socket's EOF becomes our
//! FIN; the peer's FIN, once every byte is written, shuts the socket's write
//! half). A reset or error on either side ends both: the connection is
//! aborted, the socket closed abortively (a TCP peer sees a reset, a
//! socketpair end sees the end of stream: AF_UNIX has no reset).
//!
//! A bridge may be joined while its connection is still being made: a
//! non-blocking `connect()` hands its socket the Python end at once, so that
//! the descriptor an event loop registers is the one it keeps. That end is
//! then held unwritable by bytes written into it that are not the
//! application's (the *hold*): the bridge drops them once the connection can
//! send, and the end turns writable as a kernel socket does when its
//! handshake is over. Should the connection fail instead, the end reads end
//! of stream and turns writable, and [`BridgeFate`] says why.
//!
//! A round steps only the bridges something happened to — the connection
//! changed (data, room, end, error: every segment marks it) or the socket
//! was reported — so a hundred idle bridges cost no system call. On Linux
//! the sockets sit in one epoll set ([`EdgeSet`]) that the driver (or a
//! leader) sleeps on as one descriptor; elsewhere `poll()` gets every socket.
//!
//! The application may also skip its socket: a blocking client's plain
//! `recv` and `sendall` read and write the connection itself, in its own
//! thread (no hop through the driver), whenever nothing in the socket or the
//! bridge must come first ([`Bridges::begin_direct_read`],
//! [`Bridges::may_send_direct`]: tested under the lock the pump runs under,
//! and a direct reader holds the bridge's downward direction back until it
//! is done).

use super::errno;
#[cfg(linux_fast_path)]
use crate::phy::edge_set::EdgeSet;
use crate::phy::poll::Interest;
use crate::phy::stream_fd::{unread, StreamFd};
use crate::socket::tcp::Handle;
use crate::stack::Stack;
use crate::time::Instant;
use std::io;
use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// How a bridge ended, for the Python end to tell: AF_UNIX has no reset,
/// so a bridged socket learns here that its end of stream was a reset
/// (or a timeout) and raises it, as a kernel TCP socket would.
#[derive(Debug, Default)]
pub struct BridgeFate {
    /// The errno of the connection's failure; 0 while open or after a clean end.
    failure: AtomicI32,
}

impl BridgeFate {
    /// The connection failed with this errno (ECONNRESET, ETIMEDOUT, …).
    pub fn failure(&self) -> Option<i32> {
        Some(self.failure.load(Ordering::Acquire)).filter(|&e| e != 0)
    }
}

/// Most bytes moved from a connection per write to its socket.
const CHUNK: usize = 256 * 1024;

#[derive(Debug)]
struct Bridge {
    handle: Handle,
    socket: StreamFd,
    /// Read from the connection, not yet written to the socket.
    down: Vec<u8>,
    down_at: usize,
    /// The peer's end of stream reached the socket.
    down_shut: bool,
    /// The socket ended its stream; our FIN is queued.
    up_eof: bool,
    /// Bytes at the head of the socket's stream that are not the
    /// application's (the hold, see the module): dropped once the
    /// connection can send.
    hold: usize,
    /// The last read found the socket empty (EAGAIN): nothing to read until
    /// it is reported again, so a step for the connection's sake (an echo's
    /// reply) costs no read that would find nothing. A short read does not
    /// count: the end of stream may sit behind the data it took.
    up_drained: bool,
    /// To be stepped in the next pump whatever else happens (just joined,
    /// or a direct read ended).
    due: bool,
    /// Calls reading the connection straight into the application's buffer
    /// ([`Bridges::begin_direct_read`]): while there are any, nothing moves
    /// down, so that what they take cannot overtake bytes in the socket.
    direct_readers: u32,
    /// In the edge set, and whether writability is asked there.
    edge: Option<bool>,
    fate: Arc<BridgeFate>,
}

/// How one step left a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Open,
    /// Both directions ended: close gracefully.
    Done,
    /// An error or reset on either side: abort both.
    Broken,
}

/// Every bridge of a stack.
#[derive(Debug, Default)]
pub struct Bridges {
    entries: Vec<Bridge>,
    scratch: Vec<u8>,
    /// Sockets `poll()` reported since the last pump.
    ready: Vec<RawFd>,
    /// Scratch: the connections that changed, sorted, for the pump.
    changed: Vec<Handle>,
    #[cfg(linux_fast_path)]
    edges: Option<EdgeSet>,
    /// Reads under way on connections that have no bridge yet, by the
    /// socket that will hold it (see [`Bridges::begin_early_read`]): a
    /// bridge made meanwhile starts with them as its direct readers.
    early_readers: Vec<(Handle, u32)>,
    /// Reads and sends the application made on its connections directly
    /// (see [`Bridges::begin_direct_read`]), for statistics.
    pub direct_reads: u64,
    pub direct_sends: u64,
    /// `poll()` on every socket, as other systems do (tested on Linux too).
    #[cfg_attr(not(linux_fast_path), allow(dead_code))]
    portable: bool,
}

impl Bridges {
    /// Bridges whose sockets `poll()` watches one by one, as on systems
    /// without epoll: the portable path, for its tests.
    pub fn portable() -> Self {
        Bridges {
            portable: true,
            ..Bridges::default()
        }
    }

    /// Joins the user's connection `handle` (now the bridge's) to `socket`,
    /// whose first `hold` bytes are not the application's (see the module);
    /// returns where the bridge's end will be told.
    pub fn add(&mut self, handle: Handle, socket: StreamFd, hold: usize) -> Arc<BridgeFate> {
        let fate = Arc::new(BridgeFate::default());
        let edge = self.watch_edges(socket.fd());
        let direct_readers = self.take_early_readers(handle);
        self.entries.push(Bridge {
            handle,
            socket,
            down: Vec::new(),
            down_at: 0,
            down_shut: false,
            up_eof: false,
            hold,
            up_drained: false,
            due: true,
            direct_readers,
            edge,
            fate: fate.clone(),
        });
        fate
    }

    /// Whether a bridge added now is watched at once by whoever sleeps on the
    /// bridges (the driver, a leader): its socket joins an edge set they
    /// already poll. Otherwise they must be woken to poll it.
    pub fn joins_watched_set(&self) -> bool {
        #[cfg(linux_fast_path)]
        // (The set is polled only while some bridge is in it, see `interests`.)
        return self.edges.is_some() && self.entries.iter().any(|b| b.edge.is_some());
        #[cfg(not(linux_fast_path))]
        false
    }

    /// Puts `fd` in the edge set (made on first use); None where there is
    /// none, and `poll()` gets the socket instead.
    #[cfg(linux_fast_path)]
    fn watch_edges(&mut self, fd: RawFd) -> Option<bool> {
        if self.portable {
            return None;
        }
        if self.edges.is_none() {
            self.edges = EdgeSet::new().ok();
        }
        let edges = self.edges.as_ref()?;
        edges.add(fd, false).ok().map(|()| false)
    }

    #[cfg(not(linux_fast_path))]
    fn watch_edges(&mut self, _fd: RawFd) -> Option<bool> {
        None
    }

    /// Out of the edge set, before the socket closes.
    #[cfg(linux_fast_path)]
    fn unwatch_edges(&self, bridge: &Bridge) {
        if let (Some(edges), Some(_)) = (&self.edges, bridge.edge) {
            edges.remove(bridge.socket.fd());
        }
    }

    #[cfg(not(linux_fast_path))]
    fn unwatch_edges(&self, _bridge: &Bridge) {}

    /// `poll()` reported these descriptors (some may not be bridges'); the
    /// edge set's stands for the sockets it reports.
    pub fn sockets_ready(&mut self, fds: &[RawFd]) {
        #[cfg(linux_fast_path)]
        if let Some(edges) = &self.edges {
            if fds.contains(&edges.fd()) {
                edges.take(&mut self.ready);
            }
        }
        self.ready.extend_from_slice(fds);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Moves what can move without blocking, both ways, on the bridges whose
    /// connection is in `changed` or whose socket was reported ready, and
    /// releases the connections of bridges that ended. Returns bytes moved;
    /// what the steps queued (bytes, a FIN, a window) is dispatched, for the
    /// caller to send. Every connection a step touched is so dispatched, even
    /// where nothing moved: one left marked would not be reported again when
    /// its peer's next segment marks it, and its bridge would not be stepped
    /// for that segment (a request through a bridge waited out the 40 ms of
    /// a delayed ACK so).
    pub fn pump(&mut self, stack: &mut Stack, changed: &[Handle], now: Instant) -> usize {
        self.changed.clear();
        self.changed.extend_from_slice(changed);
        self.changed.sort_unstable();
        self.ready.sort_unstable();
        let mut moved = 0;
        let mut i = 0;
        while i < self.entries.len() {
            let bridge = &mut self.entries[i];
            let reported = self.ready.binary_search(&bridge.socket.fd()).is_ok();
            let due = std::mem::take(&mut bridge.due)
                || reported
                || self.changed.binary_search(&bridge.handle).is_ok();
            if !due {
                i += 1;
                continue;
            }
            if reported {
                bridge.up_drained = false;
            }
            let (n, step) = bridge.step(stack, &mut self.scratch);
            moved += n;
            #[cfg(linux_fast_path)]
            if let (Some(edges), Some(out)) = (&self.edges, bridge.edge) {
                let want = bridge.down_at < bridge.down.len();
                if want != out && edges.modify(bridge.socket.fd(), want).is_ok() {
                    bridge.edge = Some(want);
                }
            }
            if step == Step::Open {
                i += 1;
                continue;
            }
            let bridge = self.remove(i);
            if step == Step::Broken {
                // Told before the socket closes, so its end of stream finds it.
                let failure = stack.tcp().get(bridge.handle).and_then(|c| c.error());
                if let Some(code) = failure.and_then(|e| errno::tcp(e).raw_os_error()) {
                    bridge.fate.failure.store(code, Ordering::Release);
                }
            }
            stack.tcp_mut().release(bridge.handle, step == Step::Broken);
            if step == Step::Broken {
                bridge.socket.reset();
            }
        }
        self.ready.clear();
        stack.dispatch(now);
        #[cfg(linux_fast_path)]
        if self.entries.is_empty() {
            self.edges = None; // its descriptor goes with the last bridge
        }
        moved
    }

    /// What the bridges wait for on their sockets: readable while the
    /// connection has send room, writable while bytes wait for the socket.
    pub fn interests(&self, stack: &Stack, out: &mut Vec<Interest>) {
        #[cfg(linux_fast_path)]
        if let Some(edges) = &self.edges {
            if self.entries.iter().any(|b| b.edge.is_some()) {
                out.push(Interest::readable(edges.fd()));
            }
        }
        for bridge in self.entries.iter().filter(|b| b.edge.is_none()) {
            let room = stack
                .tcp()
                .get(bridge.handle)
                .is_some_and(|c| c.can_send() && c.send_capacity() > 0);
            let readable = !bridge.up_eof && room;
            let writable = bridge.down_at < bridge.down.len();
            if readable || writable {
                out.push(Interest {
                    fd: bridge.socket.fd(),
                    readable,
                    writable,
                });
            }
        }
    }

    /// Ends the bridge of `handle` at once, its connection aborted (a
    /// connecting socket its program closed: the attempt stops there, as a
    /// kernel socket's does). False if it has no bridge (any more).
    pub fn abort(&mut self, stack: &mut Stack, handle: Handle) -> bool {
        let Some(i) = self.entries.iter().position(|b| b.handle == handle) else {
            return false;
        };
        let bridge = self.remove(i);
        stack.tcp_mut().release(handle, true);
        bridge.socket.reset();
        true
    }

    /// Gives `handle`'s connection back to its user: the bridge ends and the
    /// connection goes on. What the socket's writer has written is moved to
    /// the connection first; what the bridge read from the connection and has
    /// not yet written to the socket is returned, to follow what the socket
    /// holds. None, the bridge going on, where that cannot be done whole: a
    /// hold not yet dropped, a socket that ended its stream or failed, or
    /// more written than the send buffer takes (an event loop that adopts a
    /// connected socket, `loop.create_connection(sock=…)`, has written
    /// nothing yet).
    pub fn release(&mut self, stack: &mut Stack, handle: Handle) -> Option<Vec<u8>> {
        let i = self.entries.iter().position(|b| b.handle == handle)?;
        let Bridges {
            entries, scratch, ..
        } = self;
        let bridge = &mut entries[i];
        let conn = stack.tcp_mut().get_mut(handle)?;
        if bridge.hold > 0 || bridge.up_eof || conn.error().is_some() {
            return None;
        }
        loop {
            let room = conn.send_capacity().min(CHUNK);
            if room == 0 {
                return None;
            }
            scratch.resize(room, 0);
            match bridge.socket.read(scratch) {
                Ok(0) => return None, // its end of stream: the next step passes it on
                Ok(n) => {
                    let _ = conn.send(&scratch[..n]); // fits: n ≤ room
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        let bridge = self.remove(i);
        Some(bridge.down[bridge.down_at..].to_vec())
    }

    /// Whether the application may read `handle`'s connection directly,
    /// instead of its end of the socket (`python_end`), and if so counts it
    /// as a direct reader until [`Bridges::end_direct_read`]: only when
    /// nothing waits for it in the socket or in the bridge, so that what it
    /// takes is the next of the stream. The bridge moves nothing down
    /// meanwhile. (A blocking socket's `recv` through the patch: the bytes
    /// then skip the socketpair and the thread hop through the driver.)
    pub fn begin_direct_read(&mut self, handle: Handle, python_end: RawFd) -> bool {
        let Some(bridge) = self.entries.iter_mut().find(|b| b.handle == handle) else {
            return false;
        };
        let nothing_held = bridge.hold == 0 && bridge.down_at == bridge.down.len();
        if !nothing_held || bridge.down_shut || unread(python_end) != Some(0) {
            return false;
        }
        bridge.direct_readers += 1;
        self.direct_reads += 1;
        true
    }

    /// A read of `handle`'s connection, which has no bridge yet, by the
    /// socket that will hold it (the patch makes a blocking client's bridge
    /// only when its descriptor is needed). Counted until
    /// [`Bridges::end_direct_read`], so that a bridge made meanwhile (another
    /// thread asked for the descriptor) holds its downward direction back
    /// for it, as for a direct read: what the read waits for is not moved
    /// past it into the socket. False once the bridge exists: the socket
    /// then reads as a bridged one.
    pub fn begin_early_read(&mut self, handle: Handle) -> bool {
        if self.entries.iter().any(|b| b.handle == handle) {
            return false;
        }
        match self.early_readers.iter_mut().find(|(h, _)| *h == handle) {
            Some((_, n)) => *n += 1,
            None => self.early_readers.push((handle, 1)),
        }
        true
    }

    fn take_early_readers(&mut self, handle: Handle) -> u32 {
        let i = self.early_readers.iter().position(|(h, _)| *h == handle);
        i.map_or(0, |i| self.early_readers.swap_remove(i).1)
    }

    /// A direct (or early) read of `handle` ended: the bridge moves down
    /// again, from its next step on. False where `handle` has no bridge (an
    /// early read, none made meanwhile): there is nothing to step.
    pub fn end_direct_read(&mut self, handle: Handle) -> bool {
        if let Some(bridge) = self.entries.iter_mut().find(|b| b.handle == handle) {
            bridge.direct_readers = bridge.direct_readers.saturating_sub(1);
            bridge.due = true;
            return true;
        }
        if let Some(i) = self.early_readers.iter().position(|(h, _)| *h == handle) {
            self.early_readers[i].1 -= 1;
            if self.early_readers[i].1 == 0 {
                self.early_readers.swap_remove(i);
            }
        }
        false
    }

    /// Whether the application may send on `handle`'s connection directly
    /// instead of writing to its end of the socket: only when every byte it
    /// wrote there has reached the connection (the pump reads the socket
    /// under the same lock), so that what it sends comes after them, and
    /// while its end has not ended its stream (a `shutdown(SHUT_WR)` not yet
    /// pumped included: the send then fails on the descriptor, as it must).
    pub fn may_send_direct(&mut self, handle: Handle) -> bool {
        let may = self
            .entries
            .iter()
            .find(|b| b.handle == handle)
            .is_some_and(|b| b.hold == 0 && !b.up_eof && b.socket.is_drained());
        self.direct_sends += may as u64;
        may
    }

    /// Takes bridge `i` out, its socket out of the edge set (a pump that
    /// finds no bridge left lets the set go; until then the next bridge
    /// reuses it).
    fn remove(&mut self, i: usize) -> Bridge {
        let bridge = self.entries.swap_remove(i);
        self.unwatch_edges(&bridge);
        bridge
    }

    /// The stack closed: every connection is aborted and every socket ends.
    pub fn shut(&mut self, stack: &mut Stack) {
        for bridge in std::mem::take(&mut self.entries) {
            self.unwatch_edges(&bridge);
            stack.tcp_mut().release(bridge.handle, true);
            bridge.socket.reset();
        }
        #[cfg(linux_fast_path)]
        {
            self.edges = None;
        }
    }
}

impl Bridge {
    fn step(&mut self, stack: &mut Stack, scratch: &mut Vec<u8>) -> (usize, Step) {
        let Some(conn) = stack.tcp_mut().get_mut(self.handle) else {
            return (0, Step::Broken);
        };
        if conn.error().is_some() {
            return (0, Step::Broken);
        }
        let mut moved = 0;
        // Down: connection → socket, unless a direct reader takes it.
        while self.direct_readers == 0 {
            if self.down_at == self.down.len() {
                let available = conn.recv_available().min(CHUNK);
                if available == 0 {
                    break;
                }
                self.down.resize(available, 0);
                self.down_at = 0;
                match conn.recv(&mut self.down) {
                    Ok(Some(n)) => self.down.truncate(n),
                    _ => self.down.clear(),
                }
            }
            match self.socket.write(&self.down[self.down_at..]) {
                Ok(n) => {
                    self.down_at += n;
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (moved, Step::Broken),
            }
        }
        if self.down_at == self.down.len() {
            self.down.clear();
            self.down_at = 0;
            if !self.down_shut && conn.at_eof() && self.direct_readers == 0 {
                self.down_shut = true;
                self.socket.shutdown_write();
            }
        }
        // Up: socket → connection, as much as the send buffer takes (the
        // hold first, dropped: it frees the user's end to write).
        while !self.up_eof && !self.up_drained {
            if !conn.can_send() {
                if conn.write_closed() {
                    // The connection ended under us without an error.
                    return (moved, Step::Broken);
                }
                break;
            }
            let room = match self.hold {
                0 => conn.send_capacity().min(CHUNK),
                hold => hold.min(CHUNK),
            };
            if room == 0 {
                break;
            }
            scratch.resize(room, 0);
            match self.socket.read(scratch) {
                Ok(0) => {
                    self.up_eof = true;
                    conn.shutdown_write();
                }
                Ok(n) if self.hold > 0 => self.hold -= n, // n ≤ hold
                Ok(n) => {
                    let _ = conn.send(&scratch[..n]); // fits: n ≤ room
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.up_drained = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return (moved, Step::Broken),
            }
        }
        if self.up_eof && self.down_shut {
            return (moved, Step::Done);
        }
        (moved, Step::Open)
    }
}
