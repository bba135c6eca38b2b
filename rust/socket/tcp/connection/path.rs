//! Path MTU discovery for one connection (RFC 1191 §6, RFC 5927 §4.1).

use super::{Connection, TIMESTAMP_OPTION_LEN};
use crate::socket::tcp::path_mtu;
use crate::socket::tcp::seq::Seq;

impl Connection {
    /// A new connection toward a destination whose path MTU is known.
    pub fn with_path_mtu(mut self, mtu: Option<usize>) -> Self {
        if let Some(mtu) = mtu {
            self.path_mtu = Some(mtu.max(path_mtu::MIN_PATH_MTU));
            self.apply_path_mtu();
        }
        self
    }

    /// The MSS the path allows: its MTU less the IPv4 and TCP headers and
    /// the timestamp option, never more than negotiated.
    pub(super) fn apply_path_mtu(&mut self) {
        let Some(mtu) = self.path_mtu else { return };
        let options = if self.ts_recent.is_some() {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        };
        let mss = mtu.saturating_sub(40 + options).max(64);
        if mss < self.mss {
            self.mss = mss;
            self.cc.set_mss(mss);
        }
    }

    /// ICMP "fragmentation needed" quoting this connection's segment that
    /// began at `quoted_seq` (RFC 1191 §6.2): lowers the MSS and resends
    /// what is in flight at once, without taking it for congestion (RFC
    /// 1191 §6.5). Only a quote of data in flight, [SND.UNA, SND.MAX),
    /// and only a smaller size is believed (RFC 5927 §4.1): a blind
    /// attacker cannot shrink a connection. Returns whether it was used.
    pub fn path_mtu_reduced(&mut self, reported: usize, quoted_seq: Seq) -> bool {
        if !self.state.is_synchronized()
            || !quoted_seq.in_range(self.snd_una, self.snd_max.offset_from(self.snd_una))
        {
            return false;
        }
        let mtu = reported.max(path_mtu::MIN_PATH_MTU);
        let before = self.mss;
        self.path_mtu = Some(self.path_mtu.map_or(mtu, |m| m.min(mtu)));
        self.apply_path_mtu();
        if self.mss == before {
            return false;
        }
        if reported < path_mtu::MIN_PATH_MTU {
            self.dont_fragment = false; // let routers fragment below the floor
        }
        log::debug!("path MTU {mtu}: MSS {before} -> {}", self.mss);
        // Everything in flight was cut too big: send it again now.
        self.snd_nxt = self.snd_una;
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = self.snd_una;
        }
        self.timed = None; // Karn: no RTT sample from what is resent
        self.timers.tlp = None;
        true
    }

    /// The path MTU this connection uses, if discovery lowered it.
    pub fn path_mtu(&self) -> Option<usize> {
        self.path_mtu
    }
}
