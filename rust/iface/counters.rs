//! Frame counters and the reasons frames are dropped.

macro_rules! drop_reasons {
    ($($variant:ident => $name:literal,)*) => {
        /// Why a frame or packet was dropped. Every drop is counted under one reason.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason { $($variant,)* }

        impl DropReason {
            pub const ALL: &'static [DropReason] = &[$(DropReason::$variant,)*];
            /// The stable name used in Python's counters.
            pub fn name(self) -> &'static str {
                match self { $(DropReason::$variant => $name,)* }
            }
        }
    };
}

drop_reasons! {
    RxTruncated => "rx_truncated",
    RxUndescribed => "rx_undescribed",
    RxRingFull => "rx_ring_full",
    RxUnread => "rx_unread",
    EthernetTruncated => "ethernet_truncated",
    OtherHost => "not_for_us",
    UnknownEthertype => "unknown_ethertype",
    ArpMalformed => "arp_malformed",
    ArpConflict => "arp_address_conflict",
    Ipv4Malformed => "ipv4_malformed",
    Ipv4Checksum => "ipv4_bad_checksum",
    Ipv4FragmentMalformed => "ipv4_fragment_malformed",
    Ipv4FragmentDuplicate => "ipv4_fragment_duplicate",
    Ipv4FragmentOverlap => "ipv4_fragment_overlap",
    Ipv4ReassemblyFull => "ipv4_reassembly_full",
    Ipv4ReassemblyTimeout => "ipv4_reassembly_timeout",
    Ipv4NotForUs => "ipv4_not_for_us",
    Ipv4MartianSource => "ipv4_martian_source",
    Ipv4UnknownProtocol => "ipv4_unknown_protocol",
    IcmpMalformed => "icmp_malformed",
    IcmpChecksum => "icmp_bad_checksum",
    IcmpUnhandled => "icmp_unhandled",
    IcmpPathMtuIgnored => "icmp_frag_needed_ignored",
    IgmpMalformed => "igmp_malformed",
    Ipv6Malformed => "ipv6_malformed",
    Ipv6LoopedBack => "ipv6_looped_back",
    Ipv6NotForUs => "ipv6_not_for_us",
    Ipv6FragmentMalformed => "ipv6_fragment_malformed",
    Ipv6FragmentDuplicate => "ipv6_fragment_duplicate",
    Ipv6FragmentOverlap => "ipv6_fragment_overlap",
    Ipv6ReassemblyFull => "ipv6_reassembly_full",
    Ipv6ReassemblyTimeout => "ipv6_reassembly_timeout",
    Ipv6UnknownNextHeader => "ipv6_unknown_next_header",
    Ipv6UnknownOption => "ipv6_unknown_option",
    Ipv6AddressConflict => "ipv6_address_conflict",
    Icmpv6Malformed => "icmpv6_malformed",
    Icmpv6Checksum => "icmpv6_bad_checksum",
    Icmpv6Unhandled => "icmpv6_unhandled",
    NdpInvalid => "ndp_invalid",
    UdpMalformed => "udp_malformed",
    UdpChecksum => "udp_bad_checksum",
    UdpNoListener => "udp_no_listener",
    UdpQueueFull => "udp_queue_full",
    DnsRejected => "dns_rejected",
    MdnsMalformed => "mdns_malformed",
    IcmpEchoUnmatched => "icmp_echo_unmatched",
    TcpMalformed => "tcp_malformed",
    TcpChecksum => "tcp_bad_checksum",
    TcpNoListener => "tcp_no_listener",
    TcpListenOverflow => "tcp_listen_overflow",
    TcpBadCookie => "tcp_bad_cookie",
    TcpIgnored => "tcp_ignored",
    TcpOptionsMalformed => "tcp_options_malformed",
    DhcpMalformed => "dhcp_malformed",
    DhcpIgnored => "dhcp_ignored",
    NoRoute => "no_route",
    NeighborQueueFull => "arp_queue_full",
    NeighborUnreachable => "arp_unresolved",
    TooBig => "tx_too_big",
    TxQueueFull => "tx_queue_full",
    TxError => "tx_error",
}

/// Counters of the interface. Drops are indexed by [`DropReason`].
#[derive(Debug, Clone)]
pub struct Counters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// TCP bursts handed to the device, each counted in `frames_out` as the
    /// segments it becomes.
    pub bursts_out: u64,
    /// Super-frames received: a peer's TSO/GSO or GRO burst, longer than
    /// the MTU, taken whole (also counted in `frames_in`).
    pub bursts_in: u64,
    /// Frames whose TCP/UDP checksum the host's kernel vouched for (left
    /// to offload, or verified by a NIC), so the engine did not sum them.
    pub checksums_offloaded_in: u64,
    /// Frames whose TCP text the device held until TCP said where it goes
    /// (a super-frame on a Linux packet socket's queue,
    /// `wire/held_text.rs`): read once, straight to its place.
    pub texts_held_in: u64,
    /// Sends an event loop that was behind left to the driver thread
    /// (see `runtime/handoff.rs`); the frames are in `frames_out`.
    pub tx_handed_off: u64,
    /// Rounds a user call ran itself on its way, for frames that waited
    /// in the receive ring with no one polling (see `runtime/calls.rs`).
    pub rounds_in_passing: u64,
    drops: [u64; DropReason::ALL.len()],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            frames_in: 0,
            frames_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            bursts_out: 0,
            bursts_in: 0,
            checksums_offloaded_in: 0,
            texts_held_in: 0,
            tx_handed_off: 0,
            rounds_in_passing: 0,
            drops: [0; DropReason::ALL.len()],
        }
    }
}

impl Counters {
    pub fn count_drop(&mut self, reason: DropReason) {
        self.drops[reason as usize] += 1;
    }
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }
    /// Frames dropped for a bad IPv4, ICMP, UDP or TCP checksum.
    pub fn checksum_errors(&self) -> u64 {
        [
            DropReason::Ipv4Checksum,
            DropReason::IcmpChecksum,
            DropReason::UdpChecksum,
            DropReason::TcpChecksum,
        ]
        .iter()
        .map(|&r| self.drops(r))
        .sum()
    }
    /// Every counter with its name; drops are named `drop_<reason>`.
    pub fn entries(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            ("frames_in".to_string(), self.frames_in),
            ("frames_out".to_string(), self.frames_out),
            ("bytes_in".to_string(), self.bytes_in),
            ("bytes_out".to_string(), self.bytes_out),
            ("bursts_out".to_string(), self.bursts_out),
            ("bursts_in".to_string(), self.bursts_in),
            (
                "checksums_offloaded_in".to_string(),
                self.checksums_offloaded_in,
            ),
            ("texts_held_in".to_string(), self.texts_held_in),
            ("tx_handed_off".to_string(), self.tx_handed_off),
            ("rounds_in_passing".to_string(), self.rounds_in_passing),
        ];
        v.extend(
            DropReason::ALL
                .iter()
                .map(|r| (format!("drop_{}", r.name()), self.drops(*r))),
        );
        v
    }
}
