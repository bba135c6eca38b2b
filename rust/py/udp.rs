//! `mipfast.UdpSocket`: datagrams with the manners of a `socket.socket`
//! of type SOCK_DGRAM. Every wait releases the GIL and answers Ctrl-C.

use super::address::{address_tuple, ip_literal, Address};
use super::call::{
    resolve_host, run_op, Export, RawSlice, Readable, RecvFlags, SendFlags, SocketTimeout,
};
use super::errors;
use super::live_ref::LiveRef;
use super::multicast;
use crate::runtime::errno::udp as send_error;
use crate::runtime::ops;
use crate::runtime::{LiveStack, Watched};
use crate::service::dns::Family;
use crate::socket::udp::{Endpoint, UdpHandle};
use crate::stack::Stack;
use crate::time::Duration;
use crate::wire::Ipv4Addr;
use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn socket_closed() -> PyErr {
    PyOSError::new_err((libc::EBADF, "the socket is closed"))
}

#[pyclass(name = "UdpSocket", module = "mipfast._native", frozen, weakref)]
pub struct PyUdpSocket {
    live: LiveRef,
    handle: UdpHandle,
    open: AtomicBool,
    timeout: SocketTimeout,
    local: Endpoint,
}

impl PyUdpSocket {
    /// Binds to `addr`: its host ("" for 0.0.0.0, "::" or an IPv6 address
    /// of ours for an IPv6 socket, a zone allowed) says the family.
    pub fn bind(py: Python<'_>, live: Arc<LiveStack>, addr: Address) -> PyResult<Self> {
        let ip: IpAddr = if addr.host.is_empty() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            ip_literal(&addr.host).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "{:?} is not an IPv4 or IPv6 address",
                    addr.host
                ))
            })?
        };
        let port = addr.port()?;
        let l = live.clone();
        let (handle, local) = py
            .detach(move || {
                l.act(|s: &mut Stack, _| {
                    let h = s.udp_bind(ip, port)?;
                    Ok((h, s.udp().get(h).map(|u| u.local()).unwrap_or((ip, port))))
                })
            })
            .map_err(|e| errors::to_py(send_error(e)))?;
        Ok(PyUdpSocket {
            live: LiveRef::new(live),
            handle,
            open: AtomicBool::new(true),
            timeout: SocketTimeout::new(None),
            local,
        })
    }

    fn check_open(&self) -> PyResult<()> {
        errors::check_owner(&self.live)?;
        if self.open.load(Ordering::SeqCst) && !self.live.is_shut() {
            Ok(())
        } else {
            Err(socket_closed())
        }
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout.get()
    }

    fn send_to(&self, py: Python<'_>, data: &Bound<'_, PyAny>, dst: Endpoint) -> PyResult<usize> {
        self.check_open()?;
        let payload = Readable::of(data)?.raw.get().to_vec();
        let (live, h) = (self.live.clone(), self.handle);
        let n = payload.len();
        py.detach(move || live.act(|s, now| s.udp_send(now, h, dst, &payload)))
            .map_err(|e| errors::to_py(send_error(e)))?;
        Ok(n)
    }

    /// Waits for the next datagram within the socket's timeout.
    /// The oldest datagram (left queued with MSG_PEEK), waiting as the
    /// socket's timeout or the call's flags say.
    fn next_datagram(&self, py: Python<'_>, flags: i32) -> PyResult<(Vec<u8>, Endpoint)> {
        let flags = RecvFlags::parse(flags)?;
        self.check_open()?;
        let timeout = flags.timeout(self.timeout());
        let op = ops::ReceiveDatagram {
            handle: self.handle,
            peek: flags.peek,
        };
        run_op(py, &self.live, op, timeout)?.map_err(errors::to_py)
    }

    fn is_ipv6(&self) -> bool {
        self.local.0.is_ipv6()
    }

    /// A destination as the socket's family writes one: `(host, port)`, or
    /// for IPv6 `(host, port[, flowinfo[, scope_id]])`; a name is looked up
    /// for the socket's family (A or AAAA records).
    fn resolve(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<Endpoint> {
        let (address, family) = match self.is_ipv6() {
            true => (Address::of_ipv6(address)?, Family::Ipv6),
            false => (Address::of(address)?, Family::Ipv4),
        };
        let port = address.port()?;
        let ips = resolve_host(py, &self.live, (&address.host, &[family]), self.timeout())?;
        Ok((ips[0], port))
    }

    /// Runs `f` on the engine's socket; EBADF once it is closed.
    fn with_socket<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut crate::socket::udp::UdpSocket) -> T + Send,
    ) -> PyResult<T> {
        let (live, h) = (self.live.clone(), self.handle);
        py.detach(move || live.act(|s, _| s.udp_mut().get_mut(h).map(f)))
            .ok_or_else(socket_closed)
    }

    /// A multicast option's interface address: any, or the stack's own
    /// (else `errno`, as Linux answers for an address on no interface).
    fn check_interface(&self, py: Python<'_>, address: Ipv4Addr, errno: i32) -> PyResult<()> {
        if address.is_unspecified() {
            return Ok(());
        }
        let live = self.live.clone();
        let ours = py.detach(move || live.act(|s, _| s.ipv4()));
        if ours == Some(address) {
            Ok(())
        } else {
            Err(errors::os_error(errno))
        }
    }

    fn release(&self) {
        // (A forked child's copy lets go alone: see `LiveStack::owner`.)
        if self.open.swap(false, Ordering::SeqCst) && self.live.in_owner() {
            let h = self.handle;
            self.live.unwatch(Watched::Udp(h));
            self.live.act(|s, now| s.udp_close(now, h));
        }
    }
}

impl Drop for PyUdpSocket {
    fn drop(&mut self) {
        if self.open.load(Ordering::SeqCst) {
            Python::attach(|py| py.detach(|| self.release()));
        }
    }
}

/// Copies what fits of `data` into a writable Python buffer; the rest of
/// the datagram is discarded, as a kernel does.
fn copy_into(buffer: &Bound<'_, PyAny>, nbytes: usize, data: &[u8]) -> PyResult<usize> {
    let buf = Export::of(buffer)?;
    let raw = RawSlice::of(&buf, true)?;
    let target = raw.get_mut();
    let room = if nbytes == 0 {
        target.len()
    } else {
        nbytes.min(target.len())
    };
    let n = data.len().min(room);
    target[..n].copy_from_slice(&data[..n]);
    Ok(n)
}

#[pymethods]
impl PyUdpSocket {
    /// Send one datagram to `address` = (host, port); returns its size.
    /// `sendto(data, address)` or `sendto(data, flags, address)`, as the
    /// stdlib's (flags: see `SendFlags`; a datagram never waits here).
    #[pyo3(signature = (data, flags_or_address, address=None))]
    fn sendto(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        flags_or_address: &Bound<'_, PyAny>,
        address: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let address = match address {
            Some(a) => {
                SendFlags::parse(flags_or_address.extract()?)?;
                a
            }
            None => flags_or_address,
        };
        let dst = self.resolve(py, address)?;
        self.send_to(py, data, dst)
    }

    /// Send one datagram to the connected peer.
    #[pyo3(signature = (data, flags=0))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<usize> {
        SendFlags::parse(flags)?;
        self.check_open()?;
        let h = self.handle;
        let live = self.live.clone();
        let remote = py.detach(move || live.act(|s, _| s.udp().get(h).and_then(|u| u.remote())));
        let dst = remote.ok_or_else(|| {
            PyOSError::new_err((libc::EDESTADDRREQ, "Destination address required"))
        })?;
        self.send_to(py, data, dst)
    }

    /// Receive one datagram: (data, (ip, port)); at most `bufsize` bytes of it.
    #[pyo3(signature = (bufsize, flags=0))]
    fn recvfrom<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyTuple>)> {
        let bufsize = errors::buffer_size(bufsize, "recvfrom")?;
        let (data, src) = self.next_datagram(py, flags)?;
        let n = data.len().min(bufsize);
        Ok((PyBytes::new(py, &data[..n]), address_tuple(py, src)?))
    }

    /// Receive one datagram into `buffer`: (bytes written, (ip, port)).
    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recvfrom_into<'py>(
        &self,
        py: Python<'py>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: i32,
    ) -> PyResult<(usize, Bound<'py, PyTuple>)> {
        let nbytes = errors::buffer_size(nbytes, "recvfrom_into")?;
        let (data, src) = self.next_datagram(py, flags)?;
        let n = copy_into(buffer, nbytes, &data)?;
        Ok((n, address_tuple(py, src)?))
    }

    /// Receive one datagram's data (at most `bufsize` bytes of it).
    #[pyo3(signature = (bufsize, flags=0))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        bufsize: isize,
        flags: i32,
    ) -> PyResult<Bound<'py, PyBytes>> {
        errors::buffer_size(bufsize, "recv")?;
        Ok(self.recvfrom(py, bufsize, flags)?.0)
    }

    /// Receive one datagram into `buffer`; returns the bytes written.
    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: i32,
    ) -> PyResult<usize> {
        errors::buffer_size(nbytes, "recv_into")?;
        Ok(self.recvfrom_into(py, buffer, nbytes, flags)?.0)
    }

    /// Send to and receive only from `address`; a port unreachable from it
    /// then raises ConnectionRefusedError on the next call.
    fn connect(&self, py: Python<'_>, address: &Bound<'_, PyAny>) -> PyResult<()> {
        self.check_open()?;
        let remote = self.resolve(py, address)?;
        let (live, h) = (self.live.clone(), self.handle);
        py.detach(move || live.act(|s, _| s.udp_mut().get_mut(h).map(|u| u.connect(Some(remote)))))
            .ok_or_else(socket_closed)
    }

    fn getsockname<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.check_open()?;
        address_tuple(py, self.local)
    }

    fn getpeername<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.check_open()?;
        let (live, h) = (self.live.clone(), self.handle);
        let remote = py.detach(move || live.act(|s, _| s.udp().get(h).and_then(|u| u.remote())));
        let remote = remote.ok_or_else(|| {
            PyOSError::new_err((libc::ENOTCONN, "Transport endpoint is not connected"))
        })?;
        address_tuple(py, remote)
    }

    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        self.timeout.set_seconds(value)
    }
    fn gettimeout(&self) -> Option<f64> {
        self.timeout.seconds()
    }
    fn setblocking(&self, flag: bool) {
        self.timeout.set_blocking(flag)
    }
    fn getblocking(&self) -> bool {
        self.timeout.blocking()
    }

    /// SOL_SOCKET: SO_BROADCAST (sending to broadcast addresses), SO_RCVBUF
    /// (the receive queue's bytes). IPPROTO_IP: IP_ADD_MEMBERSHIP and
    /// IP_DROP_MEMBERSHIP (a `struct ip_mreq` or `ip_mreqn`), IP_MULTICAST_TTL,
    /// IP_MULTICAST_LOOP and IP_MULTICAST_IF (this stack has one interface:
    /// any address or its own); on an IPv6 socket, IPPROTO_IPV6's
    /// IPV6_JOIN_GROUP/IPV6_LEAVE_GROUP (a `struct ipv6_mreq`),
    /// IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP and IPV6_MULTICAST_IF. One
    /// family's options on the other's socket, or anything else, is
    /// ENOPROTOOPT.
    fn setsockopt(
        &self,
        py: Python<'_>,
        level: i32,
        optname: i32,
        value: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.check_open()?;
        if (level == libc::IPPROTO_IP) == self.is_ipv6() && level != libc::SOL_SOCKET {
            // One family's options on the other's socket (an IPv6 socket hears no IPv4 here).
            return Err(errors::os_error(libc::ENOPROTOOPT));
        }
        let (live, h) = (self.live.clone(), self.handle);
        match (level, optname) {
            (libc::IPPROTO_IPV6, multicast::IPV6_JOIN_GROUP | multicast::IPV6_LEAVE_GROUP) => {
                let group = multicast::membership_v6(value)?;
                let join = optname == multicast::IPV6_JOIN_GROUP;
                membership(py, (live, h), group.into(), join)
            }
            // An interface index: the stack has one link, whichever is named.
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_IF) => multicast::int_value(value).map(drop),
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS) => {
                let hops = match multicast::int_value(value)? {
                    -1 => 1, // the default, as Linux takes it
                    t => u8::try_from(t).map_err(|_| errors::os_error(libc::EINVAL))?,
                };
                self.with_socket(py, move |u| u.multicast_ttl = hops)
            }
            (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_LOOP) => {
                let on = match multicast::int_value(value)? {
                    v @ 0..=1 => v == 1,
                    _ => return Err(errors::os_error(libc::EINVAL)),
                };
                self.with_socket(py, move |u| u.multicast_loop = on)
            }
            (libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP | libc::IP_DROP_MEMBERSHIP) => {
                let (group, interface) = multicast::membership(value)?;
                self.check_interface(py, interface, libc::ENODEV)?;
                let join = optname == libc::IP_ADD_MEMBERSHIP;
                membership(py, (live, h), group.into(), join)
            }
            (libc::IPPROTO_IP, libc::IP_MULTICAST_IF) => {
                let interface = multicast::interface_address(value)?;
                self.check_interface(py, interface, libc::EADDRNOTAVAIL)
            }
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) => {
                let ttl = match multicast::int_value(value)? {
                    -1 => 1, // the default, as Linux takes it
                    t => u8::try_from(t).map_err(|_| errors::os_error(libc::EINVAL))?,
                };
                self.with_socket(py, move |u| u.multicast_ttl = ttl)
            }
            (libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) => {
                let on = multicast::int_value(value)? != 0;
                self.with_socket(py, move |u| u.multicast_loop = on)
            }
            (libc::SOL_SOCKET, libc::SO_BROADCAST | libc::SO_RCVBUF) => {
                let value = usize::try_from(multicast::int_value(value)?)
                    .map_err(|_| PyOSError::new_err((libc::EINVAL, "Invalid argument")))?;
                self.with_socket(py, move |u| match optname {
                    libc::SO_BROADCAST => u.broadcast = value != 0,
                    _ => u.set_recv_buffer(value.clamp(2048, 64 << 20)),
                })
            }
            _ => Err(PyOSError::new_err((
                libc::ENOPROTOOPT,
                "Protocol not available",
            ))),
        }
    }

    /// Reads back SO_BROADCAST, SO_RCVBUF, IP_MULTICAST_TTL and IP_MULTICAST_LOOP
    /// (IPV6_MULTICAST_HOPS and IPV6_MULTICAST_LOOP on an IPv6 socket).
    fn getsockopt(&self, py: Python<'_>, level: i32, optname: i32) -> PyResult<usize> {
        self.check_open()?;
        let family_level = match self.is_ipv6() {
            true => libc::IPPROTO_IPV6,
            false => libc::IPPROTO_IP,
        };
        let known = matches!(
            (level, optname),
            (libc::SOL_SOCKET, libc::SO_BROADCAST | libc::SO_RCVBUF)
                | (
                    libc::IPPROTO_IP,
                    libc::IP_MULTICAST_TTL | libc::IP_MULTICAST_LOOP
                )
                | (
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MULTICAST_HOPS | libc::IPV6_MULTICAST_LOOP
                )
        ) && (level == libc::SOL_SOCKET || level == family_level);
        if !known {
            return Err(PyOSError::new_err((
                libc::ENOPROTOOPT,
                "Protocol not available",
            )));
        }
        self.with_socket(py, move |u| match (level, optname) {
            (libc::SOL_SOCKET, libc::SO_BROADCAST) => u.broadcast as usize,
            (libc::SOL_SOCKET, _) => u.recv_buffer(),
            (libc::IPPROTO_IP, libc::IP_MULTICAST_TTL)
            | (libc::IPPROTO_IPV6, libc::IPV6_MULTICAST_HOPS) => usize::from(u.multicast_ttl),
            _ => usize::from(u.multicast_loop),
        })
    }

    /// Datagrams dropped because the receive queue was full.
    #[getter]
    fn dropped(&self, py: Python<'_>) -> PyResult<u64> {
        self.check_open()?;
        let (live, h) = (self.live.clone(), self.handle);
        py.detach(move || live.act(|s, _| s.udp().get(h).map(|u| u.dropped())))
            .ok_or_else(socket_closed)
    }

    /// Close the socket; queued datagrams are discarded. Closing twice is harmless.
    fn close(&self, py: Python<'_>) {
        py.detach(|| self.release());
    }

    #[getter]
    fn closed(&self) -> bool {
        !self.open.load(Ordering::SeqCst)
    }

    /// A descriptor that is readable while a datagram (or an error)
    /// waits, and always writable (see `Connection.fileno`).
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        if self.check_open().is_err() {
            return Ok(-1);
        }
        let key = Watched::Udp(self.handle);
        py.detach(|| self.live.watch(key)).map_err(errors::to_py)
    }

    /// socket.AF_INET, or socket.AF_INET6 when bound to an IPv6 address.
    #[getter]
    fn family(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        super::tcp::socket_constant(
            py,
            if self.is_ipv6() {
                "AF_INET6"
            } else {
                "AF_INET"
            },
        )
    }

    /// socket.SOCK_DGRAM.
    #[getter]
    fn r#type(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        super::tcp::socket_constant(py, "SOCK_DGRAM")
    }

    /// socket.IPPROTO_UDP.
    #[getter]
    fn proto(&self) -> i32 {
        libc::IPPROTO_UDP
    }

    /// The socket's timeout, as `socket.socket.timeout` gives it.
    #[getter(timeout)]
    fn timeout_seconds(&self) -> Option<f64> {
        self.timeout.seconds()
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    fn __repr__(&self) -> String {
        let host = match self.local.0 {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => format!("[{ip}]"),
        };
        let closed = if self.closed() { " closed" } else { "" };
        format!("<mipfast.UdpSocket {host}:{}{closed}>", self.local.1)
    }
}

/// Joins (or leaves) `group` for the socket `h`.
fn membership(
    py: Python<'_>,
    (live, h): (Arc<LiveStack>, UdpHandle),
    group: std::net::IpAddr,
    join: bool,
) -> PyResult<()> {
    let done = py.detach(move || {
        live.act(|s, now| match join {
            true => s.udp_join(now, h, group),
            false => s.udp_leave(now, h, group),
        })
    });
    done.ok_or_else(socket_closed)?
        .map_err(multicast::membership_error)
}
