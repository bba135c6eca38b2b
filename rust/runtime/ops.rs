//! Socket calls that take more than one engine step, as state machines over
//! the engine: each [`Op`] is attempted under the engine lock until it
//! yields, and undone if the caller stops waiting. They take time as an
//! argument and touch nothing but the [`Stack`], so the same code runs
//! under the live runtime and over the in-memory link with simulated time.

use super::errno;
use super::watch::Watched;
use crate::service::dns::{Family, Lookup, QueryId};
use crate::service::ping::ProbeId;
use crate::socket::tcp::{Connection, Endpoint, Families, Handle, LentBuffer, SharedText};
use crate::socket::udp::{UdpError, UdpHandle};
use crate::stack::Stack;
use crate::stack::UdpSendError;
use crate::time::{Duration, Instant};
use std::io;
use std::sync::Arc;

/// A call that waits for the engine.
pub trait Op {
    type Output;
    /// One try under the engine lock; `Some` when the call is done.
    fn attempt(&mut self, stack: &mut Stack, now: Instant) -> Option<Self::Output>;
    /// The caller stopped waiting (timeout, Ctrl-C, the stack closed):
    /// undo what was started. What was done so far may still be the
    /// answer (a `MSG_WAITALL` read keeps the bytes it has).
    fn give_up(&mut self, _stack: &mut Stack) -> Option<Self::Output> {
        None
    }
    /// The call is about to wait, or to run a round itself, after an
    /// attempt that was not done: lend the engine what lets it do part of
    /// the call meanwhile (a reader's buffer). The next `attempt`, or
    /// `give_up`, takes it back.
    fn park(&mut self, _stack: &mut Stack) {}
    /// Before the caller looks for Ctrl-C: take back what `park` lent;
    /// true if the call is done with what it got meanwhile, so that the
    /// signal is handled after the call returns it, as after a kernel call
    /// that returned data, and nothing received is lost to the interrupt.
    fn unpark(&mut self, _stack: &mut Stack) -> bool {
        false
    }
    /// The socket whose changes may complete the call (`None`: any
    /// progress of the engine), so that only those wake the caller.
    fn key(&self) -> Option<Watched> {
        None
    }
    /// Once done, the call has likely sent a request whose reply its caller
    /// reads next (`send`): the caller takes that reply itself, under a
    /// lease (see `LiveStack::try_now`).
    fn awaits_reply(&self) -> bool {
        false
    }
}

/// `listen(port)` for connections of `families`; port 0 picks a free
/// ephemeral port from the stack's seeded RFC 6056 picker. Returns the port.
pub fn listen(
    stack: &mut Stack,
    port: u16,
    (backlog, families): (usize, Families),
) -> io::Result<u16> {
    let tcp = stack.tcp_mut();
    let result = if port == 0 {
        tcp.listen_ephemeral(backlog, families)
    } else {
        tcp.listen_for(port, backlog, families).map(|()| port)
    };
    result.map_err(|_| io::Error::from_raw_os_error(libc::EADDRINUSE))
}

/// An active open waiting for its handshake; on failure or when given up
/// the half-open connection is aborted, so nothing is left behind.
#[derive(Debug)]
pub struct Connect {
    handle: Handle,
}

impl Connect {
    pub fn start(
        stack: &mut Stack,
        now: Instant,
        remote: Endpoint,
        source_port: Option<u16>,
    ) -> io::Result<Self> {
        let ip: std::net::IpAddr = match remote.0 {
            std::net::IpAddr::V4(dst) => {
                let ip = stack.ipv4().ok_or_else(errno::no_address)?;
                if !stack.may_connect_to(dst) {
                    return Err(io::Error::from_raw_os_error(libc::ENETUNREACH));
                }
                ip.into()
            }
            std::net::IpAddr::V6(dst) => stack
                .ipv6_source_for(now, dst)
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENETUNREACH))?
                .into(),
        };
        let handle = stack
            .tcp_mut()
            .connect(now, ip, remote, source_port)
            .map_err(errno::connect)?;
        Ok(Connect { handle })
    }

    /// The connection being opened (for a caller that does not wait).
    pub fn handle(&self) -> Handle {
        self.handle
    }
}

impl Op for Connect {
    type Output = io::Result<Handle>;
    fn key(&self) -> Option<Watched> {
        Some(Watched::Tcp(self.handle))
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Self::Output> {
        let h = self.handle;
        let failed = match stack.tcp().get(h) {
            None => errno::closed(),
            Some(c) if c.state().is_synchronized() => return Some(Ok(h)),
            Some(c) => errno::tcp(c.error()?),
        };
        stack.tcp_mut().release(h, true);
        Some(Err(failed))
    }
    fn give_up(&mut self, stack: &mut Stack) -> Option<Self::Output> {
        stack.tcp_mut().release(self.handle, true);
        None
    }
}

/// `accept()`: the oldest established connection of a listener.
#[derive(Debug)]
pub struct Accept {
    pub port: u16,
}

impl Op for Accept {
    type Output = io::Result<Handle>;
    fn key(&self) -> Option<Watched> {
        Some(Watched::Listener(self.port))
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Self::Output> {
        let tcp = stack.tcp_mut();
        if tcp.listener(self.port).is_none() {
            return Some(Err(errno::closed()));
        }
        tcp.accept(self.port).map(Ok)
    }
}

/// RFC 8305 §3's resolution delay: once one family's query has found
/// addresses, how long the others are waited for.
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// A DNS lookup of one family or several (AF_UNSPEC asks for AAAA and A
/// records at once, as glibc's getaddrinfo does); the queries are forgotten
/// once all are answered or the caller gives up. Once one family has
/// addresses, the others get [`RESOLUTION_DELAY`] more (RFC 8305 §3,
/// for either family: a server that never answers AAAA questions then
/// costs 50 ms, not the query's retries), and the lookup ends with what it
/// has.
#[derive(Debug)]
pub struct Resolve {
    ids: Vec<QueryId>,
    /// When the lookup ends with what it has: set by the first addresses.
    settle_at: Option<Instant>,
}

impl Resolve {
    pub fn start(stack: &mut Stack, now: Instant, name: &str, families: &[Family]) -> Self {
        Resolve {
            ids: families
                .iter()
                .map(|&f| stack.resolve_start_for(now, name, f))
                .collect(),
            settle_at: None,
        }
    }

    /// Whether the lookup may end now, some queries still unanswered.
    fn settled(&mut self, stack: &mut Stack, now: Instant) -> bool {
        let found = self
            .ids
            .iter()
            .any(|&id| matches!(stack.resolve_result(id), Some(Ok(a)) if !a.is_empty()));
        if !found {
            return false;
        }
        let settle_at = *self.settle_at.get_or_insert_with(|| {
            let at = now + RESOLUTION_DELAY;
            stack.wake_at(at);
            at
        });
        now >= settle_at
    }
}

impl Op for Resolve {
    type Output = Lookup;
    /// The addresses of every family that has some, in the order a
    /// connection should try them; else the last family's error (IPv4's,
    /// when both were asked).
    fn attempt(&mut self, stack: &mut Stack, now: Instant) -> Option<Lookup> {
        let pending = self
            .ids
            .iter()
            .any(|&id| stack.resolve_result(id).is_none());
        if pending && !self.settled(stack, now) {
            return None;
        }
        let (mut addresses, mut error) = (Vec::new(), None);
        for &id in &self.ids {
            match stack.resolve_result(id).cloned() {
                Some(Ok(found)) => addresses.extend(found),
                Some(Err(e)) => error = Some(e),
                None => {}
            }
            stack.resolve_finish(id);
        }
        stack.order_destinations(now, &mut addresses);
        Some(match (addresses.is_empty(), error) {
            (true, Some(e)) => Err(e),
            _ => Ok(addresses),
        })
    }
    fn give_up(&mut self, stack: &mut Stack) -> Option<Lookup> {
        for &id in &self.ids {
            stack.resolve_finish(id);
        }
        None
    }
}

/// One ICMP echo request waiting for its reply.
#[derive(Debug)]
pub struct Probe {
    id: ProbeId,
}

impl Probe {
    pub fn send(
        stack: &mut Stack,
        now: Instant,
        dst: impl Into<std::net::IpAddr>,
        id: ProbeId,
        size: usize,
    ) -> io::Result<Self> {
        stack.ping_send(now, dst, id, size).map_err(errno::udp)?;
        Ok(Probe { id })
    }
}

impl Op for Probe {
    type Output = Duration;
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Duration> {
        let rtt = stack.ping_rtt(self.id)?;
        stack.ping_finish(self.id);
        Some(rtt)
    }
    fn give_up(&mut self, stack: &mut Stack) -> Option<Duration> {
        stack.ping_finish(self.id);
        None
    }
}

/// How a stream read waits, from its `MSG_*` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// What is there, at least one byte (or end of stream).
    Some,
    /// As `Some`, but the data stays queued (MSG_PEEK).
    Peek,
    /// Until the buffer is full, the stream ends or fails (MSG_WAITALL).
    All,
}

/// `recv_into`: reads into `buf`. A `MSG_WAITALL` read that ends early
/// (end of stream, an error, the wait given up) returns what it has; the
/// error, if any, comes with the next call, so no byte is lost. While it
/// waits, the rest of `buf` is lent to the connection ([`Op::park`]) if a
/// [`Lender`] is given, so that in-order text skips the receive ring.
pub struct Receive<'a> {
    pub handle: Handle,
    pub buf: &'a mut [u8],
    pub mode: ReadMode,
    filled: usize,
    /// `buf[filled..]` is lent to the connection.
    lent: bool,
    lender: Option<Lender<'a>>,
}

/// Makes what the connection writes through from a region of the reader's
/// buffer. The op takes what it lent back (its next `attempt`, `unpark`
/// or `give_up`) before the region's borrow ends; whoever makes the
/// lender vouches for the memory until then (the bindings: a Python buffer
/// pinned for the whole call).
pub type Lender<'a> = &'a (dyn Fn(&mut [u8]) -> Box<dyn LentBuffer> + Sync);

impl<'a> Receive<'a> {
    pub fn new(handle: Handle, buf: &'a mut [u8], mode: ReadMode) -> Self {
        Receive {
            handle,
            buf,
            mode,
            filled: 0,
            lent: false,
            lender: None,
        }
    }

    /// Lends the buffer through `lender` while the call waits.
    pub fn lending(mut self, lender: Lender<'a>) -> Self {
        self.lender = Some(lender);
        self
    }

    /// Takes the lent part of the buffer back, counting what went into it.
    fn take_back(&mut self, stack: &mut Stack) {
        if std::mem::take(&mut self.lent) {
            if let Some(c) = stack.tcp_mut().get_mut_unmarked(self.handle) {
                self.filled += c.take_posted();
            }
        }
    }
}

impl std::fmt::Debug for Receive<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receive")
            .field("handle", &self.handle)
            .field("mode", &self.mode)
            .field("filled", &self.filled)
            .field("lent", &self.lent)
            .finish()
    }
}

impl Op for Receive<'_> {
    type Output = io::Result<usize>;
    fn key(&self) -> Option<Watched> {
        Some(Watched::Tcp(self.handle))
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Self::Output> {
        self.take_back(stack);
        let at = self.filled;
        if at > 0 && at == self.buf.len() {
            return Some(Ok(at)); // the lent buffer took it all
        }
        // A look first: a read that finds nothing (the reply not in yet)
        // changes nothing, so it leaves the connection unmarked: no dispatch
        // and no wake-up of others waiting on it follow.
        let result = match stack.tcp().get(self.handle) {
            None => return Some(Err(errno::closed())),
            Some(c) if self.mode == ReadMode::Peek => c.peek(self.buf),
            Some(c) if c.recv_available() == 0 => c.recv_empty(),
            Some(_) => match stack.tcp_mut().get_mut(self.handle) {
                Some(c) => c.recv(&mut self.buf[at..]),
                None => return Some(Err(errno::closed())),
            },
        };
        match (self.mode, result) {
            (ReadMode::All, Ok(Some(n))) if n > 0 => {
                self.filled += n;
                (self.filled == self.buf.len()).then_some(Ok(self.filled))
            }
            // What the lent buffer took comes first; an end or an error
            // after it waits for the next call.
            (_, Ok(Some(n))) => Some(Ok(at + n)),
            (_, Ok(None)) if at > 0 && self.mode == ReadMode::Some => Some(Ok(at)),
            (_, Ok(None)) => None,
            (_, Err(_)) if at > 0 => Some(Ok(at)),
            (_, Err(e)) => Some(Err(errno::tcp(e))),
        }
    }
    fn park(&mut self, stack: &mut Stack) {
        let Some(lender) = self.lender else { return };
        if self.mode == ReadMode::Peek || self.lent || self.filled == self.buf.len() {
            return;
        }
        if let Some(c) = stack.tcp_mut().get_mut_unmarked(self.handle) {
            self.lent = c.post_receive(lender(&mut self.buf[self.filled..]));
        }
    }
    fn unpark(&mut self, stack: &mut Stack) -> bool {
        let before = self.filled;
        self.take_back(stack);
        self.mode == ReadMode::Some && self.filled > before
    }
    fn give_up(&mut self, stack: &mut Stack) -> Option<Self::Output> {
        self.take_back(stack);
        (self.filled > 0).then_some(Ok(self.filled))
    }
}

/// `recv(bufsize)` when text is queued already: up to `max` bytes of it
/// into a buffer `make` provides for exactly that many (the bindings: a
/// Python `bytes`, written in place), so that a `recv(1 << 20)` on a chatty
/// connection neither allocates a megabyte nor copies twice. With nothing
/// queued (or an end, or an error) it is done at once with `None`: the
/// caller then reads with a buffer of its own ([`Receive`], which lends it
/// while the call waits, and reports the end or the error). Done: the
/// buffer and how many bytes it holds.
pub struct TakeQueued<F> {
    pub handle: Handle,
    pub max: usize,
    pub make: F,
}

impl<B, F> Op for TakeQueued<F>
where
    B: AsMut<[u8]>,
    F: FnMut(usize) -> Option<B>,
{
    type Output = Option<(B, usize)>;
    fn key(&self) -> Option<Watched> {
        Some(Watched::Tcp(self.handle))
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Self::Output> {
        // A look first: finding nothing must not mark the connection for a
        // dispatch (the common case of a reply not yet taken in).
        let ready = match stack.tcp().get(self.handle) {
            Some(c) => c.recv_available().min(self.max),
            None => 0,
        };
        if ready == 0 {
            return Some(None);
        }
        let c = stack.tcp_mut().get_mut(self.handle)?;
        let mut out = (self.make)(ready)?;
        match c.recv(out.as_mut()) {
            Ok(Some(n)) => Some(Some((out, n))),
            _ => Some(None), // nothing was taken: `Receive` reports it
        }
    }
}

/// `send` (`all: false`: what fits, at least one byte) or `sendall`.
pub struct Send<'a> {
    pub handle: Handle,
    pub data: &'a [u8],
    pub all: bool,
    sent: usize,
    /// `data` as an object the send buffer may hold by reference.
    shared: Option<Arc<dyn SharedText>>,
}

impl<'a> Send<'a> {
    pub fn new(handle: Handle, data: &'a [u8], all: bool) -> Self {
        Send {
            handle,
            data,
            all,
            sent: 0,
            shared: None,
        }
    }
    /// Lets the send buffer hold `text` (whose bytes are `data`) by
    /// reference rather than copy it (see `socket/tcp/send_buffer.rs`).
    pub fn sharing(mut self, text: Option<Arc<dyn SharedText>>) -> Self {
        if let Some(t) = &text {
            debug_assert!(
                t.bytes().as_ptr() == self.data.as_ptr() && t.bytes().len() == self.data.len()
            );
        }
        self.shared = text;
        self
    }
    /// Bytes queued so far.
    pub fn sent(&self) -> usize {
        self.sent
    }
}

impl std::fmt::Debug for Send<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Send")
            .field("handle", &self.handle)
            .field("len", &self.data.len())
            .field("all", &self.all)
            .field("sent", &self.sent)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Op for Send<'_> {
    type Output = io::Result<usize>;
    fn key(&self) -> Option<Watched> {
        Some(Watched::Tcp(self.handle))
    }
    fn awaits_reply(&self) -> bool {
        true
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Self::Output> {
        let Some(c) = stack.tcp_mut().get_mut(self.handle) else {
            return Some(Err(errno::closed()));
        };
        while self.sent < self.data.len() {
            let queued = match &self.shared {
                Some(text) => c.send_shared(text, self.sent, self.data.len()),
                None => c.send(&self.data[self.sent..]),
            };
            match queued {
                Ok(0) => return None,
                Ok(n) if !self.all => return Some(Ok(n)),
                Ok(n) => self.sent += n,
                Err(e) => return Some(Err(errno::tcp(e))),
            }
        }
        Some(Ok(self.sent))
    }
}

/// A lingering `close()` (SO_LINGER with a time): waits until the FIN
/// exchange settles ([`crate::socket::tcp::Connection::close_settled`]) or
/// the connection is gone. Running out of time is not an error: the close
/// goes on in the stack, as Linux's does after its linger time.
#[derive(Debug)]
pub struct Linger {
    pub handle: Handle,
}

impl Op for Linger {
    type Output = ();
    fn key(&self) -> Option<Watched> {
        Some(Watched::Tcp(self.handle))
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<()> {
        match stack.tcp().get(self.handle) {
            Some(c) if !c.close_settled() => None,
            _ => Some(()),
        }
    }
    fn give_up(&mut self, _stack: &mut Stack) -> Option<()> {
        Some(())
    }
}

/// `recvfrom`: the oldest datagram and its sender (left queued with
/// `peek`). A connected socket that got a port unreachable from its peer
/// fails once with ECONNREFUSED, as Linux's does.
#[derive(Debug)]
pub struct ReceiveDatagram {
    pub handle: UdpHandle,
    pub peek: bool,
}

impl Op for ReceiveDatagram {
    type Output = io::Result<(Vec<u8>, crate::socket::udp::Endpoint)>;
    fn key(&self) -> Option<Watched> {
        Some(Watched::Udp(self.handle))
    }
    fn attempt(&mut self, stack: &mut Stack, _now: Instant) -> Option<Self::Output> {
        let Some(s) = stack.udp_mut().get_mut(self.handle) else {
            return Some(Err(errno::closed()));
        };
        if s.remote().is_some() && s.take_error() == Some(UdpError::Refused) {
            return Some(Err(errno::udp(UdpSendError::Refused)));
        }
        if self.peek {
            s.peek().map(|d| Ok((d.data.clone(), d.src)))
        } else {
            s.recv().map(|d| Ok((d.data, d.src)))
        }
    }
}

/// A connection's two ends, as `getsockname`/`getpeername` give them.
pub fn endpoints(stack: &Stack, h: Handle) -> io::Result<(Endpoint, Endpoint)> {
    stack
        .tcp()
        .get(h)
        .map(|c: &Connection| (c.local(), c.remote()))
        .ok_or_else(errno::closed)
}
