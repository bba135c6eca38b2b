//! One stack per interface and MAC address on this machine. Two stacks with
//! the same MAC on one interface both take every frame for it and answer for
//! each other: each resets the other's connections as unknown, and with DHCP
//! both hold the same lease. Neither can see the other on the wire (a frame
//! one sends leaves the host; the other's capture takes only arrivals), so
//! the stacks say so to each other through a claim on a file named after
//! the pair (`file_claim.rs`).

use super::file_claim::{Claimed, FileClaim};
use crate::wire::MacAddress;
use std::io;
use std::path::{Path, PathBuf};

/// Claims `interface` for `mac` in `dir`; `AddrInUse` if a stack holds it
/// already (in this process or another). Where the lock file cannot be used
/// at all (a read-only directory), the stack runs unguarded rather than not
/// at all: `None`.
pub fn claim(dir: &Path, interface: &str, mac: MacAddress) -> io::Result<Option<FileClaim>> {
    let path = lock_path(dir, interface, mac);
    match FileClaim::take(&path) {
        Ok(Claimed::Ours(claim)) => Ok(Some(claim)),
        Ok(Claimed::Theirs(holder)) => Err(in_use(interface, mac, holder)),
        Err(e) => {
            log::debug!("no claim on {interface}: {}: {e}", path.display());
            Ok(None)
        }
    }
}

fn in_use(interface: &str, mac: MacAddress, holder: Option<u32>) -> io::Error {
    let who = match holder {
        Some(pid) if pid == std::process::id() => "another stack in this process".into(),
        Some(pid) => format!("process {pid}"),
        None => "another process".into(),
    };
    io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "{interface} already has a mipfast stack with MAC {mac} ({who}); two would answer \
             for each other: close that one, or give this one another MAC"
        ),
    )
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

    #[test]
    fn a_second_stack_on_one_interface_and_mac_is_refused_by_name() {
        let dir = std::env::temp_dir().join(format!("mipfast-iface-claims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = claim(&dir, "veth0", MAC).unwrap();
        assert!(first.is_some());
        let refused = claim(&dir, "veth0", MAC).unwrap_err();
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
        assert!(claim(&dir, "veth0", other_mac).unwrap().is_some());
        assert!(claim(&dir, "veth1", MAC).unwrap().is_some());
        drop(first);
        assert!(claim(&dir, "veth0", MAC).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_directory_leaves_the_stack_unguarded() {
        let missing = std::env::temp_dir().join("mipfast no such directory");
        assert!(claim(&missing, "veth0", MAC).unwrap().is_none());
    }

    #[test]
    fn names_that_are_no_file_names_are_made_into_one() {
        let path = lock_path(Path::new("/tmp"), "en0/../x", MAC);
        assert_eq!(path, Path::new("/tmp/mipfast-en0____x-020000000001.lock"));
    }
}
