//! Per-task cgroup v2, when the unified hierarchy is writable: the task's
//! whole tree, including children that called setsid, is killed at once
//! through `cgroup.kill`. Without it bgtask falls back to the process group
//! plus the monitor's reparented children (see ARCHITECTURE.md).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A task's cgroup directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Creates `bgtask-<name>` under the calling process's cgroup, or returns
    /// `None` when cgroup v2 is absent or not writable (the fallback).
    pub fn create(name: &str) -> Option<Cgroup> {
        let base = own_cgroup_dir()?;
        let dir = base.join(format!("bgtask-{name}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => return None,
        }
        // cgroup.kill exists since Linux 5.14; without it we cannot use the
        // cgroup for killing, so do not pretend to.
        if !dir.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&dir);
            return None;
        }
        Some(Cgroup { dir })
    }

    /// A cgroup recorded earlier (by path, as stored).
    pub fn at(dir: impl Into<PathBuf>) -> Cgroup {
        Cgroup { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub(super) fn procs_file_cstring(&self) -> io::Result<CString> {
        CString::new(self.dir.join("cgroup.procs").as_os_str().as_bytes())
            .map_err(|_| io::Error::other("cgroup path contains NUL"))
    }

    /// SIGKILLs every process in the cgroup.
    pub fn kill(&self) -> io::Result<()> {
        match std::fs::write(self.dir.join("cgroup.kill"), b"1") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Sends `sig` to every process in the cgroup (for SIGTERM, which
    /// `cgroup.kill` cannot send). The pids are read from the cgroup just
    /// before, so they are its members, not recycled pids.
    pub fn signal_members(&self, sig: i32) -> io::Result<()> {
        let procs = match std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let Some(sig) = rustix::process::Signal::from_named_raw(sig) else {
            return Ok(());
        };
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, sig);
            }
        }
        Ok(())
    }

    /// Removes leftover empty `bgtask-*` cgroups older than `min_age` (their
    /// monitor died and nobody reconciled them). A populated cgroup cannot
    /// be removed, and a young one may belong to a task being started.
    pub fn sweep_stale(min_age: std::time::Duration) -> usize {
        let Some(base) = own_cgroup_dir() else {
            return 0;
        };
        let Ok(entries) = std::fs::read_dir(&base) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let is_ours = name.to_str().is_some_and(|n| n.starts_with("bgtask-bg-"));
            let old_enough = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= min_age);
            if is_ours && old_enough && std::fs::remove_dir(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Removes the (empty) cgroup directory; a no-op if it is gone.
    pub fn remove(&self) -> io::Result<()> {
        match std::fs::remove_dir(&self.dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// The directory of the calling process's cgroup in the cgroup2 hierarchy.
fn own_cgroup_dir() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4))?
    })?;
    Some(Path::new(mount).join(rel.trim_start_matches('/')))
}
