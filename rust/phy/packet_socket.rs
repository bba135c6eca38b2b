//! Opening a Linux packet socket bound to one interface: what the sending
//! and the receiving halves of the live device share.

use super::sockopt::{get_int, set_int};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A raw packet socket on interface `name`, and the interface's index.
/// It is created with protocol 0, so that it takes no frame at all until
/// bound; `protocol` (host order: `ETH_P_ALL` to receive, 0 to only send)
/// is what the bind asks for, on this interface alone.
pub fn open(name: &str, protocol: u16, flags: libc::c_int) -> io::Result<(OwnedFd, u32)> {
    open_with(name, protocol, flags, |_| Ok(()))
}

/// [`open`], with `configure` run on the socket before it is bound (before
/// any frame can be queued on it).
pub fn open_with(
    name: &str,
    protocol: u16,
    flags: libc::c_int,
    configure: impl FnOnce(&OwnedFd) -> io::Result<()>,
) -> io::Result<(OwnedFd, u32)> {
    let index = index_of(name)?;
    // SAFETY: socket takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | flags, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    configure(&fd)?;
    bind(fd.as_raw_fd(), protocol, index)?;
    Ok((fd, index))
}

/// The index of the interface named `name` now (ENODEV if there is none).
pub fn index_of(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// Binds packet socket `fd` to interface `index` for `protocol` (host
/// order), again if it was bound before: to an interface made again under
/// its name (`link_watch.rs`).
pub fn bind(fd: RawFd, protocol: u16, index: u32) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a live sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The socket's pending error, taken: reading it clears it, and with it
/// the POLLERR that `poll()` reports until then.
pub fn take_error(fd: RawFd) -> Option<io::Error> {
    match get_int(fd, libc::SOL_SOCKET, libc::SO_ERROR) {
        Ok(0) => None,
        Ok(error) => Some(io::Error::from_raw_os_error(error)),
        Err(e) => Some(e),
    }
}

const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
/// `sll_pkttype` of a frame the host itself sent.
pub const PACKET_OUTGOING: u8 = 4;

/// Frames the host sends out on the interface (ours, from the sending
/// socket, or its own) are not copied back to `fd` (`PACKET_IGNORE_OUTGOING`,
/// Linux 4.20+): the kernel would clone each only for us to drop it. An
/// older kernel keeps the copies, so the result is not checked; readers
/// also skip frames whose packet type is [`PACKET_OUTGOING`].
pub fn ignore_outgoing(fd: RawFd) {
    let _ = set_int(fd, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, 1);
}

/// Puts the interface `index` in promiscuous mode for as long as `fd` is open.
pub fn join_promiscuous(fd: RawFd, index: u32) -> io::Result<()> {
    let membership = libc::packet_mreq {
        mr_ifindex: index as i32,
        mr_type: PACKET_MR_PROMISC,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: `membership` is a live packet_mreq and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            PACKET_ADD_MEMBERSHIP,
            (&membership as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An `ifreq` naming interface `name`, for the interface ioctls below.
fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: an all-zero ifreq is valid; the name is copied in below.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= request.ifr_name.len() {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    for (to, from) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *to = from as libc::c_char;
    }
    Ok(request)
}

/// The MTU of interface `name`, asked through `fd` (any socket in the
/// interface's network namespace).
pub fn mtu(fd: RawFd, name: &str) -> io::Result<usize> {
    let mut request = interface_request(name)?;
    // SAFETY: SIOCGIFMTU fills the live `request`, whose size the kernel knows.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFMTU set the union's `ifru_mtu` member.
    Ok(unsafe { request.ifr_ifru.ifru_mtu }.max(0) as usize)
}

/// The hardware type of interface `name` (`ARPHRD_*`: Ethernet is 1, a
/// tun or WireGuard device `ARPHRD_NONE`), asked through `fd`.
pub fn hardware_type(fd: RawFd, name: &str) -> io::Result<u16> {
    let mut request = interface_request(name)?;
    // SAFETY: SIOCGIFHWADDR fills the live `request`, whose size the kernel knows.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR set the union's `ifru_hwaddr` member.
    Ok(unsafe { request.ifr_ifru.ifru_hwaddr }.sa_family)
}

/// Whether interface `name` is up (`IFF_UP`), asked through `fd`.
pub fn is_up(fd: RawFd, name: &str) -> io::Result<bool> {
    let mut request = interface_request(name)?;
    // SAFETY: SIOCGIFFLAGS fills the live `request`, whose size the kernel knows.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS set the union's `ifru_flags` member.
    Ok(unsafe { request.ifr_ifru.ifru_flags } as libc::c_int & libc::IFF_UP != 0)
}

/// `ETHTOOL_GTSO` (include/uapi/linux/ethtool.h): is TCP segmentation offload on?
const ETHTOOL_GTSO: u32 = 0x1e;

/// `struct ethtool_value`: a command and the value the kernel answers.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

/// Whether interface `name` cuts TCP bursts itself (TSO on, as `ethtool -k`
/// shows it), asked through `fd`. Off, the kernel's GSO cuts them in software
/// before the device.
pub fn device_segments_tcp(fd: RawFd, name: &str) -> io::Result<bool> {
    let mut request = interface_request(name)?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_GTSO,
        data: 0,
    };
    request.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    // SAFETY: SIOCETHTOOL reads the command from and writes the answer to
    // `value`, which `request` points at and which outlives the call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut request) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any socket can ask (no packet socket, so no root): loopback answers
    /// as `ethtool -k lo` does, a missing interface is an error.
    #[test]
    fn asks_an_interface_whether_it_cuts_tcp_bursts() {
        // SAFETY: socket takes no pointers; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(raw >= 0);
        // SAFETY: `raw` is a descriptor we just opened and own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let lo = device_segments_tcp(fd.as_raw_fd(), "lo").expect("loopback answers");
        let shown = std::process::Command::new("ethtool")
            .args(["-k", "lo"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        if let Some(shown) = shown.filter(|s| s.contains("tcp-segmentation-offload")) {
            assert_eq!(
                lo,
                shown.contains("tcp-segmentation-offload: on"),
                "{shown}"
            );
        }
        let missing = device_segments_tcp(fd.as_raw_fd(), "mipfast-none0");
        assert_eq!(missing.unwrap_err().raw_os_error(), Some(libc::ENODEV));
        let long = device_segments_tcp(fd.as_raw_fd(), "a-name-longer-than-ifnamsiz");
        assert_eq!(long.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
