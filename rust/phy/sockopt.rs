//! Integer socket options: the one `setsockopt` every descriptor of phy uses.

use std::io;
use std::os::unix::io::RawFd;

/// Sets the integer option `name` at `level` on `fd`.
pub fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` outlives the call and its size is passed; the kernel checks `fd`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The integer option `name` at `level` of `fd`.
pub fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` outlive the call; `len` holds `value`'s size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// Which way a socket buffer goes, for [`set_buffer`].
#[derive(Debug, Clone, Copy)]
pub enum Buffer {
    Send,
    /// Only the Linux path's packet sockets ask for it.
    #[cfg_attr(not(linux_fast_path), allow(dead_code))]
    Receive,
}

/// Sets a socket buffer to `bytes`: beyond `wmem_max`/`rmem_max` where the
/// process may (`SO_*BUFFORCE`, Linux, CAP_NET_ADMIN), else up to that
/// limit. Best effort: a smaller buffer still works.
pub fn set_buffer(fd: RawFd, buffer: Buffer, bytes: libc::c_int) {
    #[cfg(target_os = "linux")]
    {
        let forced = match buffer {
            Buffer::Send => libc::SO_SNDBUFFORCE,
            Buffer::Receive => libc::SO_RCVBUFFORCE,
        };
        if set_int(fd, libc::SOL_SOCKET, forced, bytes).is_ok() {
            return;
        }
    }
    let plain = match buffer {
        Buffer::Send => libc::SO_SNDBUF,
        Buffer::Receive => libc::SO_RCVBUF,
    };
    let _ = set_int(fd, libc::SOL_SOCKET, plain, bytes);
}
