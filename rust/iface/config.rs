//! IPv4 address configuration: address/prefix, gateway, DNS servers.

use crate::wire::Ipv4Addr;
use core::fmt;
use core::str::FromStr;

/// A configuration value that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// An address with its prefix length, like `10.77.0.2/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// Checks that the address can belong to a host and the prefix is 1..=32.
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Result<Self, ConfigError> {
        if prefix_len == 0 || prefix_len > 32 {
            return Err(ConfigError(format!(
                "prefix length /{prefix_len} is out of range 1..32"
            )));
        }
        if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
            return Err(ConfigError(format!("{address} cannot be a host address")));
        }
        let cidr = Ipv4Cidr {
            address,
            prefix_len,
        };
        if prefix_len <= 30 && (address == cidr.network() || address == cidr.broadcast()) {
            return Err(ConfigError(format!(
                "{address}/{prefix_len} is the network or broadcast address"
            )));
        }
        Ok(cidr)
    }
    /// Builds from a dotted netmask (DHCP option 1); a non-contiguous mask is an error.
    pub fn from_netmask(address: Ipv4Addr, netmask: Ipv4Addr) -> Result<Self, ConfigError> {
        let m = u32::from(netmask);
        let prefix = m.leading_ones();
        if m.checked_shl(prefix).unwrap_or(0) != 0 {
            return Err(ConfigError(format!("netmask {netmask} is not contiguous")));
        }
        Ipv4Cidr::new(address, prefix as u8)
    }
    pub fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - self.prefix_len as u32)
            .unwrap_or(0)
    }
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) & self.mask())
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.address) | !self.mask())
    }
    /// True when `ip` is on this link.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.address) & self.mask()
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ConfigError;
    /// Parses `a.b.c.d/len`. A bare address is refused: guessing a prefix
    /// silently breaks routing.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.split_once('/').ok_or_else(|| {
            ConfigError(format!("{s:?} needs a prefix length, like 10.77.0.2/24"))
        })?;
        let address: Ipv4Addr = addr
            .parse()
            .map_err(|_| ConfigError(format!("{addr:?} is not an IPv4 address")))?;
        let prefix_len: u8 = len
            .parse()
            .map_err(|_| ConfigError(format!("{len:?} is not a prefix length")))?;
        Ipv4Cidr::new(address, prefix_len)
    }
}

/// Everything the interface needs to talk IPv4 on its link and beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Config {
    pub cidr: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub dns_servers: Vec<Ipv4Addr>,
}

impl Ipv4Config {
    /// Checks that the gateway is on the link (we do not route to a gateway we cannot reach).
    pub fn new(
        cidr: Ipv4Cidr,
        gateway: Option<Ipv4Addr>,
        dns_servers: Vec<Ipv4Addr>,
    ) -> Result<Self, ConfigError> {
        if let Some(gw) = gateway {
            if !cidr.contains(gw) || gw == cidr.address {
                return Err(ConfigError(format!(
                    "gateway {gw} is not another host on {cidr}"
                )));
            }
        }
        Ok(Ipv4Config {
            cidr,
            gateway,
            dns_servers,
        })
    }
    /// Broadcast to all (255.255.255.255) or to this subnet.
    pub fn is_broadcast(&self, ip: Ipv4Addr) -> bool {
        ip.is_broadcast() || (self.cidr.prefix_len <= 30 && ip == self.cidr.broadcast())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_derives() {
        let c: Ipv4Cidr = "10.77.0.2/24".parse().unwrap();
        assert_eq!(c.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(c.network(), Ipv4Addr::new(10, 77, 0, 0));
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert!(c.contains(Ipv4Addr::new(10, 77, 0, 200)));
        assert!(!c.contains(Ipv4Addr::new(10, 78, 0, 1)));
        assert_eq!(c.to_string(), "10.77.0.2/24");
        let h: Ipv4Cidr = "10.0.0.1/32".parse().unwrap();
        assert!(h.contains(Ipv4Addr::new(10, 0, 0, 1)) && !h.contains(Ipv4Addr::new(10, 0, 0, 2)));
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            "10.77.0.2",
            "10.77.0.2/33",
            "10.77.0.2/0",
            "10.77.0/24",
            "x/24",
            "10.77.0.0/24",
            "10.77.0.255/24",
            "0.0.0.0/8",
            "224.0.0.1/4",
            "10.77.0.2/-1",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        assert!(
            Ipv4Cidr::from_netmask(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(255, 0, 255, 0))
                .is_err()
        );
        assert_eq!(
            Ipv4Cidr::from_netmask(Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(255, 255, 0, 0))
                .unwrap()
                .prefix_len,
            16
        );
        let c: Ipv4Cidr = "10.77.0.2/24".parse().unwrap();
        assert!(Ipv4Config::new(c, Some(Ipv4Addr::new(10, 78, 0, 1)), vec![]).is_err());
        assert!(Ipv4Config::new(c, Some(Ipv4Addr::new(10, 77, 0, 2)), vec![]).is_err());
        assert!(Ipv4Config::new(c, Some(Ipv4Addr::new(10, 77, 0, 1)), vec![]).is_ok());
    }
}
