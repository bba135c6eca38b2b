//! One stack per interface and MAC address on this machine. Two stacks with
//! the same MAC on one interface both take every frame for it and answer for
//! each other: each resets the other's connections as unknown, and with DHCP
//! both hold the same lease. Neither can see the other on the wire (a frame
//! one sends leaves the host; the other's capture takes only arrivals), so
//! the stacks say so to each other through an advisory lock on a file named
//! after the pair. The kernel lets go of the lock when its holder's
//! descriptor closes, a crash included (the file a crash leaves holds no
//! lock). `/tmp` is everyone's: the file is opened without following a
//! link, and written only if it is a plain file of our own.

use crate::wire::MacAddress;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A held claim; let go of when dropped.
#[derive(Debug)]
pub struct InterfaceClaim {
    file: File,
    path: PathBuf,
    /// The process that took it: a forked child that drops its copy leaves
    /// the file to its parent, which still holds the lock.
    owner: u32,
}

impl InterfaceClaim {
    /// Claims `interface` for `mac` in `dir`; `AddrInUse` if a stack holds
    /// it already (in this process or another). Where the lock file cannot
    /// be used at all (a read-only directory), the stack runs unguarded
    /// rather than not at all: `None`.
    pub fn take(dir: &Path, interface: &str, mac: MacAddress) -> io::Result<Option<Self>> {
        let path = lock_path(dir, interface, mac);
        let unguarded = |e: io::Error| {
            log::debug!("no claim on {interface}: {}: {e}", path.display());
            Ok(None)
        };
        // A holder removes the file as it lets go: a lock taken on the file
        // it removed claims nothing, and the next try makes a new one.
        for _ in 0..8 {
            // A file another user made is ours to lock, not to write.
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .or_else(|_| {
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                });
            let mut file = match opened {
                Ok(file) => file,
                Err(e) => return unguarded(e),
            };
            match try_lock(&file) {
                Ok(true) if is_still_at(&file, &path) => {
                    // Who holds it, for the message the next one gets (best effort).
                    if is_own_plain_file(&file) {
                        let _ = file
                            .set_len(0)
                            .and_then(|()| write!(file, "{}", std::process::id()));
                    }
                    return Ok(Some(InterfaceClaim {
                        file,
                        path,
                        owner: std::process::id(),
                    }));
                }
                Ok(true) => continue,
                Ok(false) => {
                    let mut holder = String::new();
                    let _ = file
                        .rewind()
                        .and_then(|()| file.read_to_string(&mut holder));
                    return Err(in_use(interface, mac, &holder));
                }
                Err(e) => return unguarded(e),
            }
        }
        unguarded(io::Error::other("the lock file kept being replaced"))
    }
}

impl Drop for InterfaceClaim {
    fn drop(&mut self) {
        // Removed while still locked (the lock goes when `file` closes, after this).
        if std::process::id() == self.owner && is_still_at(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` names the very file `file` has open.
fn is_still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => (open.dev(), open.ino()) == (named.dev(), named.ino()),
        _ => false,
    }
}

/// A plain file of this user's with no other name (no link to another
/// file made in `/tmp` to have us overwrite it).
fn is_own_plain_file(file: &File) -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    file.metadata()
        .is_ok_and(|m| m.is_file() && m.uid() == me && m.nlink() == 1)
}

fn in_use(interface: &str, mac: MacAddress, holder: &str) -> io::Error {
    let who = match holder.trim().parse::<u32>() {
        Ok(pid) if pid == std::process::id() => "another stack in this process".into(),
        Ok(pid) => format!("process {pid}"),
        Err(_) => "another process".into(),
    };
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "{interface} already has a mipfast stack with MAC {mac} ({who}); two would answer \
             for each other: close that one, or give this one another MAC"
        ),
    )
}

/// An exclusive `flock` on `file`'s open file description, if no other
/// description holds one (a forked child shares its parent's, and with it
/// the claim). False if another holds it.
fn try_lock(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a descriptor `file` keeps open; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Where claims live: `/tmp`, which every user and both Linux and macOS
/// share (the per-user temporary directory of macOS would let two users'
/// stacks miss each other).
pub fn default_dir() -> PathBuf {
    let tmp = Path::new("/tmp");
    if tmp.is_dir() {
        tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn lock_path(dir: &Path, interface: &str, mac: MacAddress) -> PathBuf {
    let name: String = interface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let mac: String = mac.0.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("mipfast-{name}-{mac}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([0x02, 0, 0, 0, 0, 1]);

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mipfast-claims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_second_claim_on_one_interface_and_mac_is_refused_until_the_first_goes() {
        let dir = dir().join("second");
        std::fs::create_dir_all(&dir).unwrap();
        let first = InterfaceClaim::take(&dir, "veth0", MAC).unwrap();
        assert!(first.is_some());
        let refused = InterfaceClaim::take(&dir, "veth0", MAC).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse);
        let text = refused.to_string();
        assert!(
            text.contains("veth0")
                && text.contains("02:00:00:00:00:01")
                && text.contains("this process"),
            "{text}"
        );
        // Another MAC or another interface is another claim.
        let other_mac = MacAddress([0x02, 0, 0, 0, 0, 2]);
        assert!(InterfaceClaim::take(&dir, "veth0", other_mac)
            .unwrap()
            .is_some());
        assert!(InterfaceClaim::take(&dir, "veth1", MAC).unwrap().is_some());
        drop(first);
        let again = InterfaceClaim::take(&dir, "veth0", MAC).unwrap();
        assert!(again.is_some());
        drop(again);
        assert!(
            !lock_path(&dir, "veth0", MAC).exists(),
            "a claim let go of leaves no file behind"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_on_a_file_since_removed_is_no_claim() {
        let dir = dir().join("removed");
        std::fs::create_dir_all(&dir).unwrap();
        let path = lock_path(&dir, "veth0", MAC);
        let file = File::create(&path).unwrap();
        assert!(is_still_at(&file, &path));
        std::fs::remove_file(&path).unwrap();
        assert!(!is_still_at(&file, &path));
        File::create(&path).unwrap();
        assert!(
            !is_still_at(&file, &path),
            "a new file in its place is another"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_link_in_the_claims_place_is_neither_followed_nor_written() {
        let dir = dir().join("links");
        std::fs::create_dir_all(&dir).unwrap();
        let precious = dir.join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let path = lock_path(&dir, "veth0", MAC);
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        assert!(InterfaceClaim::take(&dir, "veth0", MAC).unwrap().is_none());
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&precious, &path).unwrap();
        let claim = InterfaceClaim::take(&dir, "veth0", MAC).unwrap();
        assert!(claim.is_some(), "a hard link is locked, as any file");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        drop(claim);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_directory_leaves_the_stack_unguarded() {
        let missing = dir().join("no such directory");
        assert!(InterfaceClaim::take(&missing, "veth0", MAC)
            .unwrap()
            .is_none());
    }

    #[test]
    fn names_that_are_no_file_names_are_made_into_one() {
        let path = lock_path(Path::new("/tmp"), "en0/../x", MAC);
        assert_eq!(path, Path::new("/tmp/mipfast-en0____x-020000000001.lock"));
    }
}
