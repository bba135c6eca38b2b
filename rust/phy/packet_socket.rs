//! Opening a Linux packet socket bound to one interface: what the sending
//! and the receiving halves of the live device share.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

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
    let c_name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket takes no pointers; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | flags, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    configure(&fd)?;
    // SAFETY: an all-zero sockaddr_ll is valid; the fields we need are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol.to_be();
    addr.sll_ifindex = index as i32;
    // SAFETY: `addr` is a live sockaddr_ll and its size is passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((fd, index))
}
