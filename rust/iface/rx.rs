//! What a device tells the interface about a received frame.

/// What the device knows of a received frame's transport (TCP/UDP) checksum.
/// Frames from the host's own kernel come with the checksum left to the
/// "hardware" (`CHECKSUM_PARTIAL`) or already verified by a NIC; Linux
/// tells a packet socket which through the virtio-net header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RxChecksum {
    /// Nothing known: the engine verifies it (every wire, libpcap).
    #[default]
    Unverified,
    /// Verified below us (`VIRTIO_NET_HDR_F_DATA_VALID`).
    Verified,
    /// Never computed: the data did not cross a wire, and the field at
    /// `start + offset` holds only the pseudo-header sum
    /// (`VIRTIO_NET_HDR_F_NEEDS_CSUM`). See [`crate::wire::checksum::finish_partial`].
    Partial { start: u16, offset: u16 },
}

impl RxChecksum {
    /// The engine may skip verifying the transport checksum.
    pub fn trusted(self) -> bool {
        self != RxChecksum::Unverified
    }
}
