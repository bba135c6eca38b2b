//! `mipfast.Stack`: a stack on a live interface.

use super::address::{ip_literal, Address};
use super::call::{blocking, resolve_host, timeout_arg, ANY_FAMILY};
use super::errors::{self, value_error};
use super::live_ref::LiveRef;
use super::tcp::{PyConnection, PyListener};
use super::udp::PyUdpSocket;
use crate::iface::{InterfaceConfig, Ipv4Cidr, Ipv4Config, Ipv6Config};
use crate::phy::fault::FaultConfig;
use crate::phy::live_device::DeviceKind;
use crate::runtime::{status, LiveConfig, LiveStack};
use crate::service::dhcp::DhcpConfig;
use crate::service::dns::Family;
use crate::service::mdns::{MdnsConfig, ServiceConfig};
use crate::socket::tcp::{Algorithm, Families, TcpConfig};
use crate::stack::{Addressing, StackConfig};
use crate::time::{Duration, Instant};
use crate::wire::{Ipv4Addr, MacAddress};
use pyo3::exceptions::{PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rand::RngExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

#[pyclass(name = "Stack", module = "mipfast._native", frozen, subclass, weakref)]
pub struct PyStack {
    live: RwLock<Option<LiveRef>>,
    interface: String,
}

fn parse_ip(what: &str, s: &str) -> PyResult<Ipv4Addr> {
    s.parse()
        .map_err(|_| PyValueError::new_err(format!("{what} {s:?} is not an IPv4 address")))
}

fn port_arg(port: i64) -> PyResult<u16> {
    u16::try_from(port)
        .ok()
        .filter(|&p| p != 0)
        .ok_or_else(|| PyOverflowError::new_err("port must be 1-65535"))
}

/// `device=` or else `MIPFAST_DEVICE` (so that a whole test suite can run
/// over the portable path): "auto" (the platform's fastest) or "pcap".
fn device_arg(device: Option<String>) -> PyResult<DeviceKind> {
    let name = device
        .or_else(|| std::env::var("MIPFAST_DEVICE").ok())
        .unwrap_or_else(|| "auto".to_string());
    DeviceKind::parse(&name).ok_or_else(|| {
        PyValueError::new_err(format!("device must be 'auto' or 'pcap', not {name:?}"))
    })
}

fn congestion_arg(name: &str) -> PyResult<Algorithm> {
    match name {
        "cubic" => Ok(Algorithm::Cubic),
        "newreno" | "reno" => Ok(Algorithm::NewReno),
        other => Err(PyValueError::new_err(format!(
            "congestion must be 'cubic' or 'newreno', not {other:?}"
        ))),
    }
}

/// Latencies a live fault may add, in milliseconds.
const FAULT_MS_MAX: f64 = 1000.0;

/// What a reordered frame waits when no `reorder_delay_ms` is given.
const REORDER_DELAY_DEFAULT_MS: f64 = 2.0;

fn fault_config(d: &Bound<'_, PyDict>) -> PyResult<FaultConfig> {
    let mut c = FaultConfig::default();
    let mut reorder_delay = REORDER_DELAY_DEFAULT_MS;
    for (k, v) in d.iter() {
        let key: String = k.extract()?;
        let x: f64 = v.extract()?;
        let ms = || -> PyResult<Duration> {
            if !(0.0..=FAULT_MS_MAX).contains(&x) {
                return Err(PyValueError::new_err(format!(
                    "fault {key} must be within 0..{FAULT_MS_MAX} ms"
                )));
            }
            Ok(Duration::from_micros((x * 1000.0) as u64))
        };
        let p = || -> PyResult<f64> {
            if !(0.0..=1.0).contains(&x) {
                return Err(PyValueError::new_err(format!(
                    "fault {key} must be within 0..1"
                )));
            }
            Ok(x)
        };
        match key.as_str() {
            "loss" => c.loss = p()?,
            "duplicate" => c.duplicate = p()?,
            "corrupt" => c.corrupt = p()?,
            "reorder" => c.reorder = p()?,
            "reorder_delay_ms" => {
                ms()?;
                reorder_delay = x;
            }
            "delay_ms" => c.delay = ms()?,
            "jitter_ms" => c.jitter = ms()?,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown fault {key:?} (loss, duplicate, corrupt, reorder: chances; \
                     reorder_delay_ms, delay_ms, jitter_ms: latencies)"
                )))
            }
        }
    }
    c.reorder_delay = Duration::from_micros((reorder_delay * 1000.0) as u64);
    Ok(c)
}

impl PyStack {
    pub(crate) fn live(&self) -> PyResult<Arc<LiveStack>> {
        let live = self
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|live| Arc::clone(live))
            .ok_or_else(|| errors::closed("stack"))?;
        errors::check_owner(&live)?;
        Ok(live)
    }

    /// Reads from the stack with the GIL released (the engine lock may be
    /// held by the driver thread while it logs through Python).
    fn read<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&crate::stack::Stack) -> T + Send,
    ) -> PyResult<T> {
        let live = self.live()?;
        Ok(py.detach(|| f(&live.engine().stack)))
    }
}

#[pymethods]
impl PyStack {
    #[new]
    #[pyo3(signature = (iface, mac=None, ip=None, gateway=None, dns=None, bpf=None, pcap_out=None, busy_poll_us=0, congestion="cubic", faults=None, segment_offload=true, device=None, mdns=None, services=None, ipv6=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        iface: String,
        mac: Option<String>,
        ip: Option<String>,
        gateway: Option<String>,
        dns: Option<Bound<'_, PyAny>>,
        bpf: Option<String>,
        pcap_out: Option<PathBuf>,
        busy_poll_us: u64,
        congestion: &str,
        faults: Option<Bound<'_, PyDict>>,
        segment_offload: bool,
        device: Option<String>,
        mdns: Option<String>,
        services: Option<Vec<Bound<'_, PyAny>>>,
        ipv6: bool,
    ) -> PyResult<Self> {
        let mdns = mdns_arg(mdns, services)?;
        let device = device_arg(device)?;
        let algorithm = congestion_arg(congestion)?;
        let faults = faults.map(|d| fault_config(&d)).transpose()?;
        let mut interface = InterfaceConfig::default();
        if let Some(mac) = mac {
            interface.mac = mac.parse::<MacAddress>().map_err(value_error)?;
            if !interface.mac.is_unicast() {
                return Err(PyValueError::new_err(format!(
                    "MAC {mac} is not a unicast address"
                )));
            }
        }
        let dns_server = |s: &str| {
            ip_literal(s).ok_or_else(|| {
                PyValueError::new_err(format!("DNS server {s:?} is not an IP address"))
            })
        };
        let static_dns: Vec<std::net::IpAddr> = match dns {
            None => vec![],
            Some(d) => match d.extract::<String>() {
                Ok(one) => vec![dns_server(&one)?],
                Err(_) => d
                    .extract::<Vec<String>>()
                    .map_err(|_| {
                        PyValueError::new_err("dns must be an address string or a list of them")
                    })?
                    .iter()
                    .map(|s| dns_server(s))
                    .collect::<PyResult<_>>()?,
            },
        };
        // (The IPv4 configuration lists its own servers, IPv4 ones.)
        let dns_servers: Vec<Ipv4Addr> = static_dns
            .iter()
            .filter_map(|a| match a {
                std::net::IpAddr::V4(a) => Some(*a),
                std::net::IpAddr::V6(_) => None,
            })
            .collect();
        let addressing = match ip {
            Some(ip) => {
                let cidr: Ipv4Cidr = ip.parse().map_err(value_error)?;
                let gateway = gateway.map(|g| parse_ip("gateway", &g)).transpose()?;
                Addressing::Static(
                    Ipv4Config::new(cidr, gateway, dns_servers).map_err(value_error)?,
                )
            }
            None => {
                if gateway.is_some() {
                    return Err(PyValueError::new_err(
                        "gateway needs a static ip; with DHCP the server gives it",
                    ));
                }
                let mut dhcp = DhcpConfig::new(interface.mac);
                if let Some(m) = &mdns {
                    dhcp.hostname = Some(m.host.clone()); // one name, by DHCP and mDNS
                }
                Addressing::Dhcp(dhcp)
            }
        };
        let seed = rand::rng().random::<u64>();
        let config = LiveConfig {
            interface: iface.clone(),
            bpf,
            pcap_out,
            busy_poll: Duration::from_micros(busy_poll_us),
            faults,
            segment_offload,
            device,
            stack: StackConfig {
                interface,
                addressing,
                tcp: TcpConfig {
                    algorithm,
                    ..TcpConfig::default()
                },
                udp: Default::default(),
                resolver: Default::default(),
                dns_servers: static_dns,
                mdns,
                ipv6: ipv6.then(Ipv6Config::default),
                seed,
            },
        };
        let live = py
            .detach(|| LiveStack::open(config))
            .map_err(errors::to_py)?;
        Ok(PyStack {
            live: RwLock::new(Some(LiveRef::new(Arc::new(live)))),
            interface: iface,
        })
    }

    /// Handle all pending frames and timers; if there were none, block until
    /// the next frame, timer or `timeout` seconds. Returns the work done (0 on timeout).
    #[pyo3(signature = (timeout=None))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<usize> {
        let timeout = timeout_arg(timeout)?;
        let live = self.live()?;
        blocking(py, move |interrupt| live.poll(timeout, interrupt))
    }

    /// Block until the stack has an address (DHCP lease or static); raise
    /// `TimeoutError` after `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn wait_ready(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = timeout_arg(timeout)?;
        let live = self.live()?;
        let ready = blocking(py, move |interrupt| {
            live.wait_until(t, interrupt, &|s| s.is_ready())
        })?;
        if ready {
            Ok(())
        } else {
            Err(errors::timed_out(format!(
                "no address on {} within {} s (is a DHCP server reachable?)",
                self.interface,
                timeout.unwrap_or(0.0)
            )))
        }
    }

    /// Run a driver thread so that the stack works without a poll loop.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let live = self.live()?;
        py.detach(move || live.start()).map_err(errors::to_py)
    }

    /// Stop the driver thread, if any.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let live = self.live()?;
        py.detach(move || live.stop());
        Ok(())
    }

    /// Stop, flush the trace file and release the interface. Idempotent.
    /// Connections still open fail with OSError(EBADF) from then on.
    fn close(&self, py: Python<'_>) {
        let live = self.live.write().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(live) = live.map(LiveRef::into_inner) {
            py.detach(move || {
                live.shut();
                drop(live)
            });
        }
    }

    /// Open a TCP connection to `address` = (host, port) (an IPv6 address
    /// may come as (ip, port, flowinfo, scope_id)) and wait for the
    /// handshake. The connection keeps `timeout` as its socket timeout, as
    /// `socket.create_connection` does. With `wait=False` it returns at once
    /// with the handshake in progress, as a non-blocking `connect()`: its
    /// `fileno()` turns writable when the handshake ends, and
    /// `getsockopt(SOL_SOCKET, SO_ERROR)` then says 0 or why it failed (a
    /// host name is still resolved first, within `timeout`).
    #[pyo3(signature = (address, timeout=None, source_port=None, wait=true))]
    fn connect(
        &self,
        py: Python<'_>,
        address: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        source_port: Option<i64>,
        wait: bool,
    ) -> PyResult<PyConnection> {
        let address = Address::of_ipv6(address)?;
        let (host, port) = (&address.host, address.nonzero_port()?);
        let source_port = source_port.map(port_arg).transpose()?;
        let t = timeout_arg(timeout)?;
        let live = self.live()?;
        let addresses = resolve_host(py, &live, (host, ANY_FAMILY), t)?;
        if !wait {
            let Some(&ip) = addresses.first() else {
                return Err(PyOSError::new_err((libc::EHOSTUNREACH, "no address")));
            };
            let h = py
                .detach(|| live.connect_start((ip, port), source_port))
                .map_err(errors::to_py)?;
            return PyConnection::open(py, live.clone(), h, t);
        }
        // Like socket.create_connection: each address in turn, the last error raised.
        let mut last = None;
        for ip in addresses {
            let opened = blocking(py, |interrupt| {
                live.connect((ip, port), source_port, t, interrupt)
            });
            match opened.and_then(|h| PyConnection::open(py, live.clone(), h, t)) {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| PyOSError::new_err((libc::EHOSTUNREACH, "no address"))))
    }

    /// The addresses of `name` from DNS (CNAMEs followed, cached by TTL):
    /// IPv4 ones (A records) for `family=AF_INET`, IPv6 ones (AAAA) for
    /// AF_INET6, both for AF_UNSPEC (asked at once; the IPv6 ones the stack
    /// can reach first, as RFC 6724 orders them). Unknown names raise
    /// socket.gaierror, as the stdlib does.
    #[pyo3(signature = (name, timeout=None, family=libc::AF_INET as i64))]
    fn resolve(
        &self,
        py: Python<'_>,
        name: &str,
        timeout: Option<f64>,
        family: i64,
    ) -> PyResult<Vec<String>> {
        let families = match family {
            f if f == libc::AF_INET as i64 => &[Family::Ipv4][..],
            f if f == libc::AF_INET6 as i64 => &[Family::Ipv6][..],
            f if f == libc::AF_UNSPEC as i64 => ANY_FAMILY,
            _ => {
                return Err(PyValueError::new_err(
                    "family must be AF_INET, AF_INET6 or AF_UNSPEC",
                ))
            }
        };
        let t = timeout_arg(timeout)?;
        let live = self.live()?;
        let addresses = resolve_host(py, &live, (name, families), t)?;
        Ok(addresses.iter().map(|a| a.to_string()).collect())
    }

    /// A UDP socket bound to `bind` = (address, port); "" or "0.0.0.0" for
    /// any address, port 0 for a free one (None: both).
    #[pyo3(signature = (bind=None))]
    fn udp(&self, py: Python<'_>, bind: Option<&Bound<'_, PyAny>>) -> PyResult<PyUdpSocket> {
        let bind = match bind {
            Some(b) => Address::of(b)?,
            None => Address::ANY,
        };
        PyUdpSocket::bind(py, self.live()?, bind)
    }

    /// Send `count` ICMP echo requests with `size` data bytes to `host` (a
    /// name, an IPv4 address, or an IPv6 one: ICMPv6 echo), one after
    /// another, each waiting up to `timeout` seconds for its reply.
    /// Returns the round-trip times in seconds, None for the lost ones.
    #[pyo3(signature = (host, count=1, timeout=1.0, size=56))]
    fn ping(
        &self,
        py: Python<'_>,
        host: &str,
        count: i64,
        timeout: f64,
        size: i64,
    ) -> PyResult<Vec<Option<f64>>> {
        let count =
            u16::try_from(count).map_err(|_| PyValueError::new_err("count must be 0-65535"))?;
        let size = usize::try_from(size)
            .map_err(|_| PyValueError::new_err("size must not be negative"))?;
        let t = timeout_arg(Some(timeout))?;
        let live = self.live()?;
        let dst = resolve_host(py, &live, (host, ANY_FAMILY), t)?[0];
        let rtts = blocking(py, |interrupt| live.ping(dst, count, size, t, interrupt))?;
        Ok(rtts
            .into_iter()
            .map(|rtt| rtt.map(|d| d.total_micros() as f64 / 1e6))
            .collect())
    }

    /// Listen on `port` (0 picks a free one) with room for `backlog`
    /// handshakes and `backlog` connections waiting for accept(); for
    /// peers of both families (AF_UNSPEC), or of `family` alone.
    #[pyo3(signature = (port, backlog=128, family=libc::AF_UNSPEC as i64))]
    fn listen(&self, py: Python<'_>, port: i64, backlog: i64, family: i64) -> PyResult<PyListener> {
        let backlog = errors::backlog(backlog);
        let port = if port == 0 { 0 } else { port_arg(port)? };
        let families = match family {
            f if f == libc::AF_UNSPEC as i64 => Families::Both,
            f if f == libc::AF_INET as i64 => Families::Ipv4,
            f if f == libc::AF_INET6 as i64 => Families::Ipv6,
            _ => {
                return Err(PyValueError::new_err(
                    "family must be AF_INET, AF_INET6 or AF_UNSPEC",
                ))
            }
        };
        let live = self.live()?;
        let (port, ip) = py
            .detach(|| live.listen(port, (backlog, families)))
            .map_err(errors::to_py)?;
        Ok(PyListener::new(live, port, ip.to_string()))
    }

    /// TCP totals: connections held, memory used by them (bytes), SYN
    /// cookies sent and accepted, connections bridged to kernel sockets, and
    /// the reads and sends their sockets made on the connections directly.
    #[getter]
    fn tcp_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (n, active, memory, cookies) = self.read(py, |s| {
            let tcp = s.tcp();
            (tcp.len(), tcp.active(), tcp.memory(), tcp.cookies())
        })?;
        let dict = PyDict::new(py);
        dict.set_item("connections", n)?;
        dict.set_item("active", active)?;
        dict.set_item("memory", memory)?;
        dict.set_item("syn_cookies_sent", cookies.0)?;
        dict.set_item("syn_cookies_accepted", cookies.1)?;
        let live = self.live()?;
        let (bridges, direct_reads, direct_sends) = py.detach(move || live.bridges());
        dict.set_item("bridges", bridges)?;
        dict.set_item("bridge_direct_reads", direct_reads)?;
        dict.set_item("bridge_direct_sends", direct_sends)?;
        Ok(dict)
    }

    /// Starts capturing every frame in and out into memory, up to `limit`
    /// bytes of `.pcap` file (default 8 MiB; the oldest frames go first once
    /// full). Replaces the previous capture.
    #[pyo3(signature = (limit=8 << 20))]
    fn capture_start(&self, py: Python<'_>, limit: usize) -> PyResult<()> {
        let live = self.live()?;
        py.detach(move || live.engine().capture_start(limit));
        Ok(())
    }

    /// Stops capturing; the frames stay for `capture_pcap()`.
    fn capture_stop(&self, py: Python<'_>) -> PyResult<()> {
        let live = self.live()?;
        py.detach(move || live.engine().capture_stop());
        Ok(())
    }

    /// {"running", "frames", "bytes" (of the .pcap file), "dropped", "limit"}.
    #[getter]
    fn capture_info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let live = self.live()?;
        let info = py.detach(move || live.engine().capture_info());
        let d = PyDict::new(py);
        d.set_item("running", info.running)?;
        d.set_item("frames", info.frames)?;
        d.set_item("bytes", info.file_bytes)?;
        d.set_item("dropped", info.dropped)?;
        d.set_item("limit", info.limit)?;
        Ok(d)
    }

    /// The capture as the bytes of a `.pcap` file (Wireshark, tcpdump -r).
    fn capture_pcap<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyBytes>> {
        let live = self.live()?;
        let file = py.detach(move || live.engine().capture_pcap());
        Ok(pyo3::types::PyBytes::new(py, &file))
    }

    /// Injects faults on the live device from now on, each direction:
    /// {"loss": p, "duplicate": p, "corrupt": p} (probabilities), or None to
    /// stop. For demonstrations and tests; counts in `fault_stats` restart.
    fn set_faults(&self, py: Python<'_>, faults: Option<Bound<'_, PyDict>>) -> PyResult<()> {
        let config = faults.map(|d| fault_config(&d)).transpose()?;
        let live = self.live()?;
        py.detach(move || live.engine().set_faults(config));
        Ok(())
    }

    /// The faults injected now, or None.
    #[getter]
    fn faults<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let live = self.live()?;
        let Some(c) = py.detach(move || live.engine().faults().cloned()) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("loss", c.loss)?;
        d.set_item("duplicate", c.duplicate)?;
        d.set_item("corrupt", c.corrupt)?;
        d.set_item("reorder", c.reorder)?;
        let ms = |t: Duration| t.total_micros() as f64 / 1000.0;
        d.set_item("reorder_delay_ms", ms(c.reorder_delay))?;
        d.set_item("delay_ms", ms(c.delay))?;
        d.set_item("jitter_ms", ms(c.jitter))?;
        Ok(Some(d))
    }

    /// Congestion control for connections opened from now on: "cubic" or "newreno".
    #[getter]
    fn congestion(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.read(py, |s| match s.tcp().config().algorithm {
            Algorithm::Cubic => "cubic",
            Algorithm::NewReno => "newreno",
        })
    }

    #[setter]
    fn set_congestion(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        let algorithm = congestion_arg(name)?;
        let live = self.live()?;
        py.detach(move || live.engine().stack.tcp_mut().config_mut().algorithm = algorithm);
        Ok(())
    }

    /// What the fault injector did: {"rx": {...}, "tx": {...}}, or None.
    #[getter]
    fn fault_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let live = self.live()?;
        let stats = py.detach(move || live.engine().fault_stats());
        let Some((rx, tx)) = stats else {
            return Ok(None);
        };
        let dict = PyDict::new(py);
        for (name, s) in [("rx", rx), ("tx", tx)] {
            let d = PyDict::new(py);
            d.set_item("passed", s.passed)?;
            d.set_item("lost", s.lost)?;
            d.set_item("duplicated", s.duplicated)?;
            d.set_item("corrupted", s.corrupted)?;
            d.set_item("reordered", s.reordered)?;
            dict.set_item(name, d)?;
        }
        Ok(Some(dict))
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    #[getter]
    fn closed(&self) -> bool {
        self.live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    #[getter]
    fn interface(&self) -> &str {
        &self.interface
    }

    /// How frames leave: "auto" (Linux: our own packet socket) or "pcap" (libpcap alone).
    #[getter]
    fn device(&self, py: Python<'_>) -> PyResult<&'static str> {
        let live = self.live()?;
        Ok(match py.detach(move || live.engine().device_kind()) {
            DeviceKind::Auto => "auto",
            DeviceKind::Pcap => "pcap",
        })
    }

    #[getter]
    fn ready(&self, py: Python<'_>) -> PyResult<bool> {
        self.read(py, |s| s.is_ready())
    }

    #[getter]
    fn mac(&self, py: Python<'_>) -> PyResult<String> {
        self.read(py, |s| s.interface().mac().to_string())
    }

    /// The host's Multicast DNS name once announced ("<mdns>.local", or
    /// the name taken when another host held it); None without `mdns`.
    #[getter]
    fn mdns_name(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.read(py, |s| s.mdns_name())
    }

    /// The services' instance names once announced.
    #[getter]
    fn mdns_services(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.read(py, |s| s.mdns_services())
    }

    /// Announces a service by DNS-SD while the stack runs: its instance
    /// name is probed for and announced (`mdns_services` lists it then).
    #[pyo3(signature = (instance, r#type, port, txt=None))]
    fn mdns_advertise(
        &self,
        py: Python<'_>,
        instance: String,
        r#type: String,
        port: &Bound<'_, PyAny>,
        txt: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let service = service_config(instance, r#type, port, txt)?;
        let live = self.live()?;
        py.detach(|| {
            let result = {
                let mut engine = live.engine();
                let now = engine.now();
                engine.stack.mdns_advertise(now, service)
            };
            live.notify(); // the first probe is due within 250 ms
            result
        })
        .map_err(PyValueError::new_err)
    }

    /// Withdraws a service announced (by `services=` or `mdns_advertise`),
    /// saying goodbye; ValueError if there is none of that type and name.
    #[pyo3(signature = (instance, r#type))]
    fn mdns_withdraw(&self, py: Python<'_>, instance: String, r#type: String) -> PyResult<()> {
        let live = self.live()?;
        let found = py.detach(|| {
            let mut engine = live.engine();
            let now = engine.now();
            let found = engine.stack.mdns_withdraw(now, &r#type, &instance);
            drop(engine);
            live.notify(); // the goodbye goes out with the next round
            found
        });
        match found {
            true => Ok(()),
            false => Err(PyValueError::new_err(format!(
                "no {type} service named {instance:?}",
                type = r#type
            ))),
        }
    }

    #[getter]
    fn ip(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.read(py, |s| s.ipv4_config().map(|c| c.cidr.address.to_string()))
    }

    #[getter]
    fn netmask(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.read(py, |s| {
            s.ipv4_config().map(|c| c.cidr.netmask().to_string())
        })
    }

    #[getter]
    fn prefix_len(&self, py: Python<'_>) -> PyResult<Option<u8>> {
        self.read(py, |s| s.ipv4_config().map(|c| c.cidr.prefix_len))
    }

    #[getter]
    fn gateway(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.read(py, |s| {
            s.ipv4_config()
                .and_then(|c| c.gateway)
                .map(|g| g.to_string())
        })
    }

    #[getter]
    fn dns(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.read(py, |s| {
            s.dns_servers().iter().map(|d| d.to_string()).collect()
        })
    }

    /// Seconds left on the DHCP lease; None when static or not bound.
    #[getter]
    fn lease_remaining(&self, py: Python<'_>) -> PyResult<Option<f64>> {
        let live = self.live()?;
        Ok(py.detach(move || {
            let engine = live.engine();
            let now = engine.now();
            engine.stack.dhcp_lease().and_then(|l| {
                let left = l.expires_at.saturating_since(now);
                (l.duration.secs() <= u32::MAX as u64).then(|| left.total_micros() as f64 / 1e6)
            })
        }))
    }

    /// Frames and bytes in and out, and drops by reason (`drop_<reason>`).
    #[getter]
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let entries = self.read(py, |s| s.counters().entries())?;
        let dict = PyDict::new(py);
        for (k, v) in entries {
            dict.set_item(k, v)?;
        }
        Ok(dict)
    }

    /// The interface's state and totals at one instant: addresses, lease,
    /// uptime, counters, drops by reason, TCP/UDP/ARP totals (see
    /// `mipfast.status.Stats`).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let live = self.live()?;
        let (summary, uptime) = py.detach(|| {
            let engine = live.engine();
            let now = engine.now();
            (
                status::summary(&engine.stack, now),
                now.saturating_since(Instant::ZERO),
            )
        });
        super::status::summary(py, summary, uptime)
    }

    /// The ARP cache (`arp -n`): ip, mac (None while unresolved), state, expires_in.
    fn arp_table<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let live = self.live()?;
        let rows = py.detach(|| {
            let engine = live.engine();
            status::arp(&engine.stack, engine.now())
        });
        super::status::arp(py, rows)
    }

    /// The IPv6 neighbor cache (`ip -6 neigh`), as `arp_table()` lists the ARP cache.
    fn ndp_table<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let live = self.live()?;
        let rows = py.detach(|| {
            let engine = live.engine();
            status::ndp(&engine.stack, engine.now())
        });
        super::status::arp(py, rows)
    }

    /// Our IPv6 addresses in use (link-local first; not those still being
    /// checked or found duplicate); empty with `ipv6=False`.
    #[getter]
    fn ipv6_addresses(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.read(py, |s| {
            s.interface().ipv6().map_or_else(Vec::new, |h| {
                h.addresses()
                    .iter()
                    .filter(|a| a.state.is_usable())
                    .map(|a| a.address.to_string())
                    .collect()
            })
        })
    }

    /// TCP listeners and connections (`ss -ta`): state, ends, bytes each
    /// way, retransmissions, RTT, cwnd, queues.
    fn connections<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let rows = self.read(py, status::tcp)?;
        super::status::tcp(py, rows)
    }

    /// UDP sockets (`ss -ua`): ends, datagrams queued, datagrams dropped.
    fn udp_sockets<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let rows = self.read(py, status::udp)?;
        super::status::udp(py, rows)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        match self.read(py, |s| s.ipv4_config().map(|c| c.cidr.to_string())) {
            Err(_) => format!("<mipfast.Stack {} closed>", self.interface),
            Ok(Some(c)) => format!("<mipfast.Stack {} {c}>", self.interface),
            Ok(None) => format!("<mipfast.Stack {} no address>", self.interface),
        }
    }
}

/// `mdns` and `services` as the responder's configuration: each service an
/// `(instance, type, port)` or `(instance, type, port, txt)` tuple, `txt` a
/// mapping of strings.
fn mdns_arg(
    host: Option<String>,
    services: Option<Vec<Bound<'_, PyAny>>>,
) -> PyResult<Option<MdnsConfig>> {
    let Some(host) = host else {
        if services.is_some_and(|s| !s.is_empty()) {
            return Err(PyValueError::new_err(
                "services are announced by mDNS: give mdns too",
            ));
        }
        return Ok(None);
    };
    let services = services
        .unwrap_or_default()
        .iter()
        .map(service_arg)
        .collect::<PyResult<Vec<_>>>()?;
    let config = MdnsConfig { host, services };
    config.check().map_err(PyValueError::new_err)?;
    Ok(Some(config))
}

fn service_arg(item: &Bound<'_, PyAny>) -> PyResult<ServiceConfig> {
    let shape = || {
        PyTypeError::new_err(
            "a service is (instance, type, port) or (instance, type, port, txt), e.g. \
             (\"My device\", \"_http._tcp\", 8000, {\"path\": \"/\"})",
        )
    };
    let tuple = item.cast::<PyTuple>().map_err(|_| shape())?;
    if !(3..=4).contains(&tuple.len()) {
        return Err(shape());
    }
    let instance: String = tuple.get_item(0)?.extract().map_err(|_| shape())?;
    let kind: String = tuple.get_item(1)?.extract().map_err(|_| shape())?;
    let txt = match tuple.len() {
        4 => Some(tuple.get_item(3)?),
        _ => None,
    };
    service_config(instance, kind, &tuple.get_item(2)?, txt.as_ref())
}

/// A service from its parts: `port` an int, `txt` None or a mapping of
/// strings (keys without '=').
fn service_config(
    instance: String,
    kind: String,
    port: &Bound<'_, PyAny>,
    txt: Option<&Bound<'_, PyAny>>,
) -> PyResult<ServiceConfig> {
    if port.cast::<pyo3::types::PyInt>().is_err() {
        return Err(PyTypeError::new_err("a service's port is an int"));
    }
    let port: u16 = port
        .extract()
        .map_err(|_| PyOverflowError::new_err("a service's port must be 0-65535"))?;
    let mut strings = Vec::new();
    if let Some(map) = txt.filter(|t| !t.is_none()) {
        let map = map
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("a service's txt is a dict of str to str"))?;
        for (k, v) in map.iter() {
            let (k, v): (String, String) = (k.extract()?, v.extract()?);
            if k.is_empty() || k.contains('=') {
                return Err(PyValueError::new_err(format!(
                    "TXT key {k:?} must be non-empty and without '='"
                )));
            }
            strings.push(format!("{k}={v}"));
        }
    }
    Ok(ServiceConfig {
        instance,
        kind,
        port,
        txt: strings,
    })
}
