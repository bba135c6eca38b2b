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

    /// The MSS a path MTU allows: less the IP and TCP headers and the
    /// timestamp option.
    fn mss_for_mtu(&self, mtu: usize) -> usize {
        let options = if self.ts_recent.is_some() {
            TIMESTAMP_OPTION_LEN
        } else {
            0
        };
        mtu.saturating_sub(40 + self.extra_ip_header() + options)
            .max(64)
    }

    /// Applies the known path MTU, never raising the negotiated MSS.
    pub(super) fn apply_path_mtu(&mut self) {
        let Some(mtu) = self.path_mtu else { return };
        let mss = self.mss_for_mtu(mtu);
        if mss < self.mss {
            self.mss = mss;
            self.cc.set_mss(mss);
        }
    }

    /// ICMP "fragmentation needed" quoting this connection's segment that
    /// began at `quoted_seq` (RFC 1191 §6.2): lowers the MSS and resends
    /// what is in flight at once, without taking it for congestion (RFC
    /// 1191 §6.5). Only a quote of data in flight, [SND.UNA, SND.MAX),
    /// and only a size no larger than the current one is believed (RFC 5927
    /// §4.1): a blind attacker cannot shrink a connection. `None`: not
    /// believed; `Some(lowered)`: believed, and whether it lowered the MSS
    /// (a burst of segments draws as many reports; the first one acts).
    pub fn path_mtu_reduced(&mut self, reported: usize, quoted_seq: Seq) -> Option<bool> {
        let in_flight = self.snd_max.offset_from(self.snd_una);
        if !self.state.is_synchronized() || !quoted_seq.in_range(self.snd_una, in_flight) {
            return None;
        }
        let mtu = reported.max(path_mtu::MIN_PATH_MTU);
        let mss = self.mss_for_mtu(mtu);
        if mss > self.mss {
            return None;
        }
        if mss == self.mss {
            return Some(false);
        }
        log::debug!("path MTU {mtu}: MSS {} -> {mss}", self.mss);
        if reported < path_mtu::MIN_PATH_MTU {
            self.dont_fragment = false; // let routers fragment below the floor
        }
        self.cut_smaller(mtu, mss);
        Some(true)
    }

    /// Our own interface's MTU went down to `mtu`: as a path MTU report,
    /// but believed whatever is in flight, and in any state (a connection
    /// still in its handshake starts with the smaller size). Whether the MSS
    /// went down.
    pub fn link_mtu_lowered(&mut self, mtu: usize) -> bool {
        let mss = self.mss_for_mtu(mtu);
        if mss >= self.mss {
            return false;
        }
        log::debug!("link MTU {mtu}: MSS {} -> {mss}", self.mss);
        self.cut_smaller(mtu, mss);
        true
    }

    /// Segments of `mss` from now on, for a path or link MTU of `mtu`;
    /// everything in flight was cut too big and goes again now (RFC 1191
    /// §6.5: not taken for congestion).
    fn cut_smaller(&mut self, mtu: usize, mss: usize) {
        self.path_mtu = Some(self.path_mtu.map_or(mtu, |known| known.min(mtu)));
        self.mss = mss;
        self.cc.set_mss(mss);
        if !self.state.is_synchronized() {
            return;
        }
        self.snd_nxt = self.snd_una;
        if let Some(r) = self.recovery.as_mut() {
            r.high_rxt = self.snd_una;
        }
        self.timed = None; // Karn: no RTT sample from what is resent
        self.timers.tlp = None;
    }

    /// The path MTU this connection uses, if discovery lowered it.
    pub fn path_mtu(&self) -> Option<usize> {
        self.path_mtu
    }
}
