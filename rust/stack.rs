//! The stack: an interface, its services and (with later issues) its sockets,
//! driven by `poll(now, device)`.

use crate::iface::{Counters, DropReason, Interface, InterfaceConfig, Ipv4Config};
use crate::phy::Device;
use crate::service::dhcp::{self, Action, DhcpClient, DhcpConfig, Lease};
use crate::time::Instant;
use crate::wire::{self, Ipv4Addr};
use std::io;

/// How the stack gets its IPv4 address.
#[derive(Debug, Clone)]
pub enum Addressing {
    Static(Ipv4Config),
    Dhcp(DhcpConfig),
}

#[derive(Debug, Clone)]
pub struct StackConfig {
    pub interface: InterfaceConfig,
    pub addressing: Addressing,
    /// Seeds every random choice (DHCP xids, later ISNs and ports); the
    /// bindings pass OS entropy, tests a fixed value.
    pub seed: u64,
}

impl StackConfig {
    /// DHCP on the default MAC.
    pub fn dhcp(seed: u64) -> Self {
        let interface = InterfaceConfig::default();
        StackConfig {
            addressing: Addressing::Dhcp(DhcpConfig::new(interface.mac)),
            interface,
            seed,
        }
    }
    /// A static address on the default MAC.
    pub fn static_ipv4(config: Ipv4Config, seed: u64) -> Self {
        StackConfig {
            interface: InterfaceConfig::default(),
            addressing: Addressing::Static(config),
            seed,
        }
    }
}

#[derive(Debug)]
pub struct Stack {
    iface: Interface,
    dhcp: Option<DhcpClient>,
    /// Bumped on every change of address, so that waiters can notice.
    config_generation: u64,
}

impl Stack {
    pub fn new(config: StackConfig, now: Instant) -> Self {
        let mut stack = Stack {
            iface: Interface::new(config.interface),
            dhcp: None,
            config_generation: 0,
        };
        match config.addressing {
            Addressing::Static(ip) => stack.configure(Some(ip), "static"),
            Addressing::Dhcp(mut dhcp) => {
                dhcp.mac = stack.iface.mac();
                stack.dhcp = Some(DhcpClient::new(dhcp, config.seed, now));
            }
        }
        stack
    }

    pub fn interface(&self) -> &Interface {
        &self.iface
    }
    pub fn counters(&self) -> &Counters {
        self.iface.counters()
    }
    pub fn ipv4_config(&self) -> Option<&Ipv4Config> {
        self.iface.ipv4_config()
    }
    pub fn is_ready(&self) -> bool {
        self.iface.ipv4_config().is_some()
    }
    pub fn config_generation(&self) -> u64 {
        self.config_generation
    }
    pub fn dhcp_phase(&self) -> Option<dhcp::Phase> {
        self.dhcp.as_ref().map(|d| d.phase())
    }
    pub fn dhcp_lease(&self) -> Option<&Lease> {
        self.dhcp.as_ref().and_then(|d| d.lease())
    }

    fn configure(&mut self, config: Option<Ipv4Config>, lease: &str) {
        let changed = self.iface.ipv4_config().map(|c| c.cidr) != config.as_ref().map(|c| c.cidr)
            || self.iface.ipv4_config().map(|c| c.gateway) != config.as_ref().map(|c| c.gateway);
        match &config {
            Some(c) if changed => log::info!(
                "READY, IP: {} / GW: {} / Lease: {lease}",
                c.cidr.address,
                c.gateway.unwrap_or(Ipv4Addr::UNSPECIFIED)
            ),
            Some(c) => log::debug!("lease on {} renewed ({lease})", c.cidr.address),
            None => log::warn!("address removed"),
        }
        if changed {
            self.config_generation += 1;
            self.iface.set_ipv4_config(config);
        } else if let Some(c) = config {
            // Same address: keep ARP state, refresh DNS servers.
            self.iface.set_ipv4_config_quiet(c);
        }
    }

    /// Handles one received frame.
    pub fn process_frame(&mut self, now: Instant, frame: &[u8]) {
        let Some(datagram) = self.iface.ingress(now, frame) else {
            return;
        };
        if datagram.dst_port == wire::dhcp::CLIENT_PORT
            && datagram.src_port == wire::dhcp::SERVER_PORT
        {
            if let Some(client) = self.dhcp.as_mut() {
                let result = wire::dhcp::Repr::parse(datagram.payload)
                    .map_err(|_| DropReason::DhcpMalformed)
                    .and_then(|m| client.process(now, &m).map_err(|_| DropReason::DhcpIgnored));
                match result {
                    Ok(actions) => self.apply_dhcp(now, actions),
                    Err(reason) => self.iface.count_drop(reason),
                }
                return;
            }
        }
        self.iface.count_drop(DropReason::UdpNoListener);
        self.iface.send_port_unreachable(now, &datagram);
    }

    fn apply_dhcp(&mut self, now: Instant, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(t) => self.send_dhcp(now, t),
                Action::Configure(lease) => {
                    let secs = lease.duration.secs();
                    let label = if secs > u32::MAX as u64 {
                        "infinite".to_string()
                    } else {
                        format!("{secs} sec")
                    };
                    self.configure(Some(lease.config), &label)
                }
                Action::Deconfigure => self.configure(None, ""),
            }
        }
    }

    fn send_dhcp(&mut self, now: Instant, t: dhcp::Transmit) {
        let len = t.message.buffer_len();
        let _ = self.iface.send_udp(
            now,
            t.src,
            t.dst,
            wire::dhcp::CLIENT_PORT,
            wire::dhcp::SERVER_PORT,
            len,
            |buf| t.message.emit(buf),
        );
    }

    /// Runs the timers due at `now` (DHCP, ARP retries).
    pub fn poll_timers(&mut self, now: Instant) {
        if let Some(client) = self.dhcp.as_mut() {
            if client.poll_at() <= now {
                let actions = client.poll(now);
                self.apply_dhcp(now, actions);
            }
        }
        self.iface.poll(now);
    }

    /// The earliest time at which [`Stack::poll_timers`] has work.
    pub fn poll_at(&self) -> Option<Instant> {
        let dhcp = self.dhcp.as_ref().map(|d| d.poll_at());
        [dhcp, self.iface.poll_at()].into_iter().flatten().min()
    }

    /// Hands queued frames to `send`.
    pub fn drain_tx(&mut self, send: impl FnMut(&[u8])) {
        self.iface.drain_tx(send)
    }

    /// One round: every frame the device has, due timers, and every frame
    /// produced, sent. Returns the number of frames received.
    pub fn poll(&mut self, now: Instant, device: &mut dyn Device) -> io::Result<usize> {
        let mut received = 0;
        loop {
            let n = device.receive(now, &mut |frame| self.process_frame(now, frame))?;
            received += n;
            self.flush(now, device);
            if n == 0 {
                break;
            }
        }
        self.poll_timers(now);
        self.flush(now, device);
        Ok(received)
    }

    fn flush(&mut self, now: Instant, device: &mut dyn Device) {
        let mut failed = 0;
        self.iface.drain_tx(|frame| {
            if device.transmit(now, frame).is_err() {
                failed += 1;
            }
        });
        for _ in 0..failed {
            self.iface.count_drop(DropReason::TxError);
        }
    }
}
