//! The home directory: created 0700, refused when another user could write
//! to it; output files are created 0600.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The database's file name in the home.
pub(super) const DB_NAME: &str = "bgtask.db";

/// Creates `home` and `home/out` (0700) if missing and checks they are safe.
/// An existing directory becomes a store only if it is empty or holds
/// nothing but what bgtask itself creates (a store being created, perhaps
/// by another process right now): `--home` pointed at a folder of other
/// files is refused before anything is written there.
pub(super) fn prepare(home: &Path) -> Result<()> {
    let out = home.join("out");
    match std::fs::metadata(home) {
        Ok(meta) => {
            check_safe(home, &meta)?;
            // Fast path: a store (every command after the first).
            if home.join(DB_NAME).exists() && out.is_dir() {
                return Ok(());
            }
            check_store_or_empty(home)?;
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("cannot read", home, e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&out)
        .map_err(|e| Error::io("cannot create store directory", &out, e))?;
    let meta = std::fs::metadata(home).map_err(|e| Error::io("cannot read", home, e))?;
    check_safe(home, &meta)?;
    ensure_ballast(home);
    Ok(())
}

/// Whether `home` holds a store: its database exists. Checks the home's
/// safety first when it exists. Writes nothing.
pub(super) fn is_store(home: &Path) -> Result<bool> {
    match std::fs::metadata(home) {
        Ok(meta) => {
            check_safe(home, &meta)?;
            Ok(home.join(DB_NAME).exists())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("cannot read", home, e)),
    }
}

/// Whether a name in the home is one bgtask creates there.
fn is_store_entry(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    matches!(
        name,
        b"out" | b"ctl" | b"tmp" | b"waiters" | b"events" | b"monitor.log"
    ) || name.starts_with(b"bgtask.")
        || name
            .strip_prefix(b"ballast.")
            .is_some_and(|n| !n.is_empty() && n.iter().all(u8::is_ascii_digit))
}

/// Refuses a directory that holds anything bgtask did not create.
fn check_store_or_empty(home: &Path) -> Result<()> {
    let entries = std::fs::read_dir(home).map_err(|e| Error::io("cannot read", home, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read", home, e))?;
        let name = entry.file_name();
        if !is_store_entry(&name) {
            return Err(Error::UnsafeHome {
                path: home.to_owned(),
                why: format!(
                    "it is not a bgtask store and not empty (it holds {:?}); pass a new or empty directory",
                    name.to_string_lossy()
                ),
            });
        }
    }
    Ok(())
}

fn check_safe(home: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let unsafe_home = |why: &str| Error::UnsafeHome {
        path: home.to_owned(),
        why: why.to_owned(),
    };
    if !meta.is_dir() {
        return Err(unsafe_home("it is not a directory"));
    }
    if meta.uid() != crate::process::effective_uid() {
        return Err(unsafe_home("it is owned by another user"));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_home(
            "it is writable by group or others (chmod 700 it)",
        ));
    }
    Ok(())
}

/// The ballast: disk space reserved in slices, each enough for many
/// terminal transitions, released one at a time when the disk is full.
const BALLAST_SLICES: usize = 8;
const BALLAST_SLICE_BYTES: u64 = 128 << 10;

fn ballast_slice(home: &Path, i: usize) -> std::path::PathBuf {
    home.join(format!("ballast.{i}"))
}

/// The share of a disk that the reserve, or the free space a start needs,
/// may take: 1/16 of it, at most 1 MiB. On a disk of 16 MiB or more both
/// are 1 MiB. On a smaller one, a fixed 1 MiB reserve plus 1 MiB of free
/// space to start a task took a 2 MiB disk whole, and only one task ever
/// started: the reserve blocked the very work it exists to protect.
pub fn disk_share(home: &Path) -> u64 {
    const FULL: u64 = 1 << 20;
    match crate::process::disk_size(home) {
        Ok(size) if size > 0 => (size / 16).clamp(16 << 10, FULL),
        _ => FULL,
    }
}

/// Reserves disk space in the home (files of real, non-sparse blocks) so
/// that when the disk fills up, tasks that end can still be recorded.
pub(super) fn ensure_ballast(home: &Path) {
    let slice = (disk_share(home) / BALLAST_SLICES as u64).min(BALLAST_SLICE_BYTES);
    // Whole pages: a partial page costs a full one on disk anyway.
    let slice = (slice & !4095).max(4096) as usize;
    for i in 0..BALLAST_SLICES {
        let path = ballast_slice(home, i);
        if path.exists() {
            continue;
        }
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &vec![0u8; slice]));
        if written.is_err() {
            // No room: better a missing slice than a partial one posing as one.
            let _ = std::fs::remove_file(&path);
            return;
        }
    }
}

/// Frees one ballast slice (called when a write hits a full disk). Returns
/// false when none is left.
pub(super) fn release_ballast(home: &Path) -> bool {
    (0..BALLAST_SLICES).any(|i| std::fs::remove_file(ballast_slice(home, i)).is_ok())
}

/// Creates a new file readable only by its owner; fails if it exists.
pub(super) fn create_private_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("cannot create output file", path, e))
}

/// Creates the database file 0600 before SQLite opens it (SQLite gives its
/// -wal and -shm files the database file's mode).
pub(super) fn ensure_private_db(path: &Path) -> Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("cannot create database", path, e)),
    }
}

/// Longest wait for the store's open lock. Its holder only creates or
/// upgrades the database (milliseconds), so a wait this long means the
/// holder is stuck.
const OPEN_LOCK_PATIENCE: Duration = Duration::from_secs(10);
/// A holder seen stopped for this long is not waited for any more: a
/// stopped process releases nothing until someone resumes it.
const STOPPED_HOLDER_PATIENCE: Duration = Duration::from_millis(500);

/// Takes the store's open lock (an exclusive flock on `<db>.lock`); it is
/// released when the returned file is dropped.
///
/// The wait is bounded: after `OPEN_LOCK_PATIENCE`, or as soon as its
/// holder has been seen stopped for `STOPPED_HOLDER_PATIENCE`, it fails
/// with an error naming the holder (from `/proc/locks`). A blocking flock
/// made every command wait forever behind one stopped process.
pub(super) fn lock_for_open(db: &Path) -> Result<File> {
    let path = db.with_extension("lock");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("cannot open lock file", &path, e))?;
    let started = Instant::now();
    let mut pause = Duration::from_micros(100);
    let mut next_look = started + STOPPED_HOLDER_PATIENCE / 2;
    let mut stopped_since: Option<Instant> = None;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("cannot lock", &path, e)),
        }
        let now = Instant::now();
        let waited = now - started;
        let mut holders = Vec::new();
        if now >= next_look {
            next_look = now + STOPPED_HOLDER_PATIENCE / 4;
            holders = super::holders::write_holders(&path, None);
            if !holders.is_empty() && holders.iter().all(|h| h.stopped) {
                let since = *stopped_since.get_or_insert(now);
                if now - since >= STOPPED_HOLDER_PATIENCE {
                    return Err(open_lock_busy(&path, waited, &holders));
                }
            } else {
                stopped_since = None;
            }
        }
        if waited >= OPEN_LOCK_PATIENCE {
            if holders.is_empty() {
                holders = super::holders::write_holders(&path, None);
            }
            return Err(open_lock_busy(&path, waited, &holders));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

fn open_lock_busy(path: &Path, waited: Duration, holders: &[super::holders::Holder]) -> Error {
    let who = if holders.is_empty() {
        "another process".to_owned()
    } else {
        super::holders::list(holders)
    };
    Error::io(
        "cannot lock",
        path,
        std::io::Error::new(
            ErrorKind::WouldBlock,
            format!(
                "held by {who} while it opens the store; gave up after {:.1} s{}",
                waited.as_secs_f64(),
                super::holders::advice(holders)
            ),
        ),
    )
}

/// Bumps the modification time of the events file (creating it if needed);
/// inotify watchers wake on it. Best effort: a failed touch only delays a
/// watcher until its next wake-up, it never loses state.
pub(super) fn touch(path: &Path) {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    if let Ok(file) = file {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}
