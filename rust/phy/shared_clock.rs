//! The clock every stack of this machine shares for TCP's initial sequence
//! numbers and timestamps ([`SharedClock`]): a key kept in a file for the
//! machine's uptime, and the system's monotonic clock. A program run again
//! through the patch then numbers a reused 4-tuple after its last run, and a
//! peer still holding that tuple in TIME-WAIT takes the new SYN at once.

use crate::socket::tcp::SharedClock;
use rand::RngExt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const KEY_FILE: &str = "tcp-clock.key";

/// Where the key lives: a directory emptied at boot on Linux, as the
/// monotonic clock restarts then.
fn key_dir() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/run/mipfast")
    } else {
        std::env::temp_dir().join("mipfast")
    }
}

/// The shared clock for a stack whose time zero is `origin`; None (the
/// stack keeps a clock of its own) where the key cannot be kept.
pub fn for_stack(origin: std::time::Instant) -> Option<SharedClock> {
    let key = match machine_key(&key_dir()) {
        Ok(key) => key,
        Err(e) => {
            log::debug!("TCP numbers on this stack's own clock: no shared key ({e})");
            return None;
        }
    };
    Some(SharedClock {
        key,
        base_micros: monotonic_micros()?.saturating_sub(origin.elapsed().as_micros() as u64),
    })
}

/// The system's monotonic clock (the same for every process), in µs.
fn monotonic_micros() -> Option<u64> {
    // SAFETY: an all-zero timespec is valid; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is live and writable for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000)
}

/// The key in `dir`, made once (16 random bytes, readable by its owner
/// only): the first stack to need it writes it aside and links it in, so
/// that stacks starting together all read the one that won.
fn machine_key(dir: &Path) -> io::Result<[u8; 16]> {
    let path = dir.join(KEY_FILE);
    if let Ok(key) = read_key(&path) {
        return Ok(key);
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let aside = dir.join(format!("{KEY_FILE}.{}", std::process::id()));
    let key: [u8; 16] = rand::rng().random();
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&aside)
        .and_then(|mut f| io::Write::write_all(&mut f, &key));
    let linked = written.and_then(|()| match fs::hard_link(&aside, &path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    });
    let _ = fs::remove_file(&aside);
    linked?;
    read_key(&path)
}

fn read_key(path: &Path) -> io::Result<[u8; 16]> {
    fs::read(path)?
        .try_into()
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not a 16-byte key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stack_reads_the_key_the_first_one_made() {
        let dir = std::env::temp_dir().join(format!("mipfast-key-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let first = machine_key(&dir).unwrap();
        assert_eq!(machine_key(&dir).unwrap(), first, "kept");
        let mode = fs::metadata(dir.join(KEY_FILE)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077,
            0,
            "its owner's only"
        );
        fs::write(dir.join(KEY_FILE), b"short").unwrap();
        assert!(machine_key(&dir).is_err(), "a damaged key is not used");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_stacks_started_apart_share_one_clock() {
        let origin = std::time::Instant::now();
        let first = monotonic_micros().unwrap() - origin.elapsed().as_micros() as u64;
        std::thread::sleep(std::time::Duration::from_millis(5));
        let later = std::time::Instant::now();
        let second = monotonic_micros().unwrap() - later.elapsed().as_micros() as u64;
        // The second stack's time zero lies about 5 ms after the first's.
        assert!(
            (4_000..1_000_000).contains(&(second - first)),
            "{}",
            second - first
        );
    }
}
