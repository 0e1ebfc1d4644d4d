//! Who holds a lock on a store file: read from `/proc/locks`, so that a
//! command that gives up waiting can name the process in its way (and see
//! whether it is stopped, in which case waiting longer is pointless).

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A process holding a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Holder {
    pub pid: u32,
    /// `/proc/PID/comm`, empty if unreadable.
    pub comm: String,
    /// Stopped (SIGSTOP, a terminal's ^Z, a debugger): it releases nothing
    /// until someone resumes it.
    pub stopped: bool,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        match (self.comm.is_empty(), self.stopped) {
            (false, true) => write!(f, " ({}, stopped)", self.comm),
            (false, false) => write!(f, " ({})", self.comm),
            (true, true) => write!(f, " (stopped)"),
            (true, false) => Ok(()),
        }
    }
}

/// One line of `/proc/locks` that grants (not waits for) a lock.
struct Granted {
    write: bool,
    pid: u32,
    dev: (u64, u64),
    ino: u64,
    start: u64,
    end: Option<u64>,
}

/// Parses a line such as `3: POSIX  ADVISORY  WRITE 1234 08:01:5678 120 120`
/// (`->` marks a waiter, skipped; `EOF` is an open end).
fn parse(line: &str) -> Option<Granted> {
    let mut fields = line.split_whitespace().skip(1);
    let kind = fields.next()?;
    if kind == "->" {
        return None;
    }
    let _advisory = fields.next()?;
    let write = fields.next()? == "WRITE";
    let pid = fields.next()?.parse().ok()?;
    let mut id = fields.next()?.split(':');
    let major = u64::from_str_radix(id.next()?, 16).ok()?;
    let minor = u64::from_str_radix(id.next()?, 16).ok()?;
    let ino = id.next()?.parse().ok()?;
    let start = fields.next()?.parse().ok()?;
    let end = fields.next()?.parse().ok();
    Some(Granted {
        write,
        pid,
        dev: (major, minor),
        ino,
        start,
        end,
    })
}

/// Processes other than this one holding a write lock on `path` that
/// covers a byte in `bytes` (any byte when `None`). Empty when nothing is
/// known (no such file, no `/proc/locks`, a holder in another pid
/// namespace).
pub(super) fn write_holders(path: &Path, bytes: Option<(u64, u64)>) -> Vec<Holder> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let dev = crate::process::device_numbers(meta.dev());
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    let me = std::process::id();
    let mut pids: Vec<u32> = locks
        .lines()
        .filter_map(parse)
        .filter(|l| l.write && l.ino == meta.ino() && l.pid != me && l.pid != 0)
        // Some filesystems (overlayfs) show another device number than
        // stat; the inode alone still finds the holder there.
        .filter(|l| l.dev == dev || !locks_name_device(&locks, dev))
        .filter(|l| {
            bytes.is_none_or(|(first, last)| l.start <= last && l.end.is_none_or(|e| e >= first))
        })
        .map(|l| l.pid)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter().map(describe).collect()
}

/// Whether any line of `/proc/locks` names the device `dev`.
fn locks_name_device(locks: &str, dev: (u64, u64)) -> bool {
    locks.lines().filter_map(parse).any(|l| l.dev == dev)
}

fn describe(pid: u32) -> Holder {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default();
    let stopped = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .is_some_and(|state| matches!(state, 'T' | 't'));
    Holder { pid, comm, stopped }
}

/// The holders as text: "pid 12 (bgtask, stopped), pid 13 (python3)".
pub(super) fn list(holders: &[Holder]) -> String {
    holders
        .iter()
        .map(Holder::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do about stopped holders: "; resume it (kill -CONT 12) or end it".
pub(super) fn advice(holders: &[Holder]) -> String {
    let stopped: Vec<String> = holders
        .iter()
        .filter(|h| h.stopped)
        .map(|h| h.pid.to_string())
        .collect();
    match stopped.len() {
        0 => String::new(),
        1 => format!("; resume it (kill -CONT {}) or end it", stopped[0]),
        _ => format!(
            "; resume them (kill -CONT {}) or end them",
            stopped.join(" ")
        ),
    }
}

/// Byte offsets of SQLite's WAL locks in the `-shm` file: the write lock,
/// the checkpoint lock and the recovery lock (see SQLite's wal.c,
/// `WAL_WRITE_LOCK` at 120). A process holding one of them exclusively
/// keeps every writer waiting.
const SHM_WRITER_LOCKS: (u64, u64) = (120, 122);

/// Who holds SQLite's write lock on the database at `db`: in WAL mode the
/// writer locks in `<db>-shm`; in rollback mode (a database being created)
/// locks on the database file itself.
pub(super) fn db_writers(db: &Path) -> Vec<Holder> {
    let mut shm = db.as_os_str().to_owned();
    shm.push("-shm");
    let mut holders = write_holders(Path::new(&shm), Some(SHM_WRITER_LOCKS));
    for holder in write_holders(db, None) {
        if !holders.contains(&holder) {
            holders.push(holder);
        }
    }
    holders
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_granted_locks_and_skips_waiters() {
        let l = parse("1: POSIX  ADVISORY  WRITE 4242 08:01:131 120 120").unwrap();
        assert!(l.write);
        assert_eq!(
            (l.pid, l.dev, l.ino, l.start, l.end),
            (4242, (8, 1), 131, 120, Some(120))
        );
        let l = parse("2: FLOCK  ADVISORY  WRITE 77 00:2f:9 0 EOF").unwrap();
        assert_eq!((l.dev, l.end), ((0, 0x2f), None));
        assert!(parse("2: -> FLOCK  ADVISORY  WRITE 78 00:2f:9 0 EOF").is_none());
        assert!(
            !parse("3: POSIX  ADVISORY  READ 5 08:01:131 128 128")
                .unwrap()
                .write
        );
    }

    #[test]
    fn names_the_process_holding_a_flock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        std::fs::write(&path, "").unwrap();
        let mut child = std::process::Command::new("flock")
            .arg("--no-fork")
            .arg(&path)
            .args(["sleep", "30"])
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut holders = Vec::new();
        while holders.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            holders = write_holders(&path, None);
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(holders.len(), 1, "{holders:?}");
        assert!(!holders[0].stopped);
    }
}
