//! A claim on a name, made through a file: an exclusive `flock` on it,
//! which the kernel lets go of when the holder's descriptor closes, a crash
//! included (the file a crash leaves holds no lock). One stack per interface
//! and MAC (`interface_claim.rs`) and one lab demo per machine
//! (`mipfast._lab`) are such claims.
//!
//! The holder writes its pid into the file, for the refusal the next one
//! gets, and removes the file as it lets go; a lock taken on a file since
//! removed claims nothing, and the next try makes a new one. The directory
//! may be everyone's (`/tmp`): the file is opened without following a link,
//! and written only if it is a plain file of our own.

use super::owner::Owner;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A held claim; let go of when dropped.
#[derive(Debug)]
pub struct FileClaim {
    file: File,
    path: PathBuf,
    /// The process that took it: a forked child that drops its copy leaves
    /// the file to its parent, which still holds the lock.
    owner: Owner,
}

/// What [`FileClaim::take`] found.
#[derive(Debug)]
pub enum Claimed {
    Ours(FileClaim),
    /// Another open file holds it, in this process or another; the pid it
    /// wrote, if it could.
    Theirs(Option<u32>),
}

impl FileClaim {
    /// Claims `path`. An error says the file cannot be used at all (a
    /// missing or read-only directory, a link in its place).
    pub fn take(path: &Path) -> io::Result<Claimed> {
        for _ in 0..8 {
            // A file another user made is ours to lock, not to write.
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .or_else(|_| {
                    OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(path)
                })?;
            if !try_lock(&file)? {
                let mut holder = String::new();
                let _ = file
                    .rewind()
                    .and_then(|()| file.read_to_string(&mut holder));
                return Ok(Claimed::Theirs(holder.trim().parse().ok()));
            }
            if is_still_at(&file, path) {
                if is_own_plain_file(&file) {
                    let _ = file
                        .set_len(0)
                        .and_then(|()| write!(file, "{}", std::process::id()));
                }
                return Ok(Claimed::Ours(FileClaim {
                    file,
                    path: path.to_path_buf(),
                    owner: Owner::here(),
                }));
            }
        }
        Err(io::Error::other("the lock file kept being replaced"))
    }
}

impl Drop for FileClaim {
    fn drop(&mut self) {
        // Removed while still locked (the lock goes when `file` closes, after this).
        if self.owner.is_here() && is_still_at(&self.file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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

/// Whether `path` names the very file `file` has open.
fn is_still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test.
    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("mipfast-claims-{}", std::process::id()))
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn ours(path: &Path) -> FileClaim {
        match FileClaim::take(path).unwrap() {
            Claimed::Ours(claim) => claim,
            Claimed::Theirs(holder) => panic!("held by {holder:?}"),
        }
    }

    #[test]
    fn a_second_claim_is_refused_with_the_holders_pid_until_the_first_goes() {
        let dir = dir("second");
        let path = dir.join("x.lock");
        let first = ours(&path);
        let me = std::process::id();
        assert!(matches!(FileClaim::take(&path).unwrap(), Claimed::Theirs(Some(pid)) if pid == me));
        drop(first);
        drop(ours(&path));
        assert!(!path.exists(), "a claim let go of leaves no file behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_on_a_file_since_removed_is_no_claim() {
        let dir = dir("removed");
        let path = dir.join("x.lock");
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
        let dir = dir("links");
        let precious = dir.join("precious");
        std::fs::write(&precious, "keep me").unwrap();
        let path = dir.join("x.lock");
        std::os::unix::fs::symlink(&precious, &path).unwrap();
        assert!(FileClaim::take(&path).is_err());
        std::fs::remove_file(&path).unwrap();
        std::fs::hard_link(&precious, &path).unwrap();
        drop(ours(&path)); // a hard link is locked, as any file
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let path = dir("missing").join("no such directory").join("x.lock");
        assert!(FileClaim::take(&path).is_err());
    }
}
