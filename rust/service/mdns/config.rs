//! What a responder is told to answer for: the host's label and services,
//! checked before they are used.

use crate::wire::dns::normalize_name;

/// A service announced with DNS-SD, e.g. the dashboard as `_http._tcp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The instance's name, shown to users: "mipfast dashboard" (one label
    /// of UTF-8, RFC 6763 §4.1.1; dots are not allowed here).
    pub instance: String,
    /// "_http._tcp".
    pub kind: String,
    pub port: u16,
    /// TXT strings, "key=value".
    pub txt: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdnsConfig {
    /// The host's label: the host answers as `<host>.local`.
    pub host: String,
    pub services: Vec<ServiceConfig>,
}

impl MdnsConfig {
    /// Checks the host label and the services: a host label of letters,
    /// digits and '-' (1–63 bytes), service types of the `_name._tcp` or
    /// `_name._udp` form, instance names of 1–63 bytes without dots.
    pub fn check(&self) -> Result<(), String> {
        let host_ok = !self.host.contains('.')
            && normalize_name(&self.host).is_ok()
            && !self.host.contains('_');
        if !host_ok {
            return Err(format!(
                "mDNS host name {:?} must be one label of letters, digits and '-' (at most 63)",
                self.host
            ));
        }
        for s in &self.services {
            let kind_ok = s.kind.split('.').count() == 2
                && normalize_name(&s.kind).is_ok()
                && s.kind.starts_with('_')
                && (s.kind.ends_with("._tcp") || s.kind.ends_with("._udp"));
            if !kind_ok {
                return Err(format!(
                    "service type {:?} must look like \"_http._tcp\"",
                    s.kind
                ));
            }
            // One label of UTF-8 (RFC 6763 §4.1.1), with room for " (99)".
            let printable = !s.instance.chars().any(char::is_control);
            if s.instance.is_empty()
                || s.instance.len() > 58
                || s.instance.contains('.')
                || !printable
            {
                return Err(format!(
                    "service instance name {:?} must be 1-58 bytes of text, without dots",
                    s.instance
                ));
            }
            if s.txt.iter().any(|t| t.len() > 255) {
                return Err("a TXT string is at most 255 bytes".into());
            }
        }
        Ok(())
    }
}
