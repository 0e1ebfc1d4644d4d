//! Per-task cgroup v2, when the unified hierarchy is writable: the task's
//! whole tree, including children that called setsid, is killed at once
//! through `cgroup.kill`. Without it bgtask falls back to the process group
//! plus the monitor's reparented children and the processes carrying the
//! task's identity marker (see ARCHITECTURE.md).
//!
//! `BGTASK_NO_CGROUP=1` in a monitor's own environment (set where the task
//! is started, never through a task's `--env`) makes it run its task
//! without a cgroup: a test and operations switch for the fallback.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
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
        if std::env::var_os("BGTASK_NO_CGROUP").is_some_and(|v| v == "1") {
            return None;
        }
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

    /// Sends `sig` to every process in the cgroup and the cgroups the task
    /// made inside it (for SIGTERM, which `cgroup.kill` cannot send).
    ///
    /// A pid read from `cgroup.procs` may end and be reused before it is
    /// signalled, so each is proven a member first: a pidfd is opened, then
    /// `cgroup.procs` is read again; a pid still listed whose pidfd shows
    /// it running is the same process (a pid is not reused while its
    /// process runs), and the signal goes through that pidfd.
    pub fn signal_members(&self, sig: crate::process::Signal) -> io::Result<()> {
        let Ok(sig) = super::signals::os_signal(sig) else {
            return Ok(());
        };
        signal_tree_members(&self.dir, sig)
    }

    /// Removes leftover empty `bgtask-*` cgroups older than `min_age` (their
    /// monitor died and nobody reconciled them), with any cgroups the task
    /// created inside. A populated cgroup cannot be removed, and a young one
    /// may belong to a task being started.
    pub fn sweep_stale(min_age: std::time::Duration) -> usize {
        match own_cgroup_dir() {
            Some(base) => sweep_under(&base, min_age),
            None => 0,
        }
    }

    /// Removes the cgroup directory and, depth first, every cgroup the task
    /// created inside it (rmdir refuses a cgroup that has children); a
    /// no-op if it is gone. Fails if a process still lives in one of them.
    pub fn remove(&self) -> io::Result<()> {
        remove_tree(&self.dir)
    }
}

fn sweep_under(base: &Path, min_age: std::time::Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(base) else {
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
        // A tree with a process anywhere in it is a live task's: not even
        // an empty cgroup it made inside is touched.
        if is_ours
            && old_enough
            && !is_populated(&entry.path())
            && remove_tree(&entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

fn signal_tree_members(dir: &Path, sig: rustix::process::Signal) -> io::Result<()> {
    let Some(before) = read_procs(dir)? else {
        return Ok(());
    };
    let handles: Vec<(u32, OwnedFd)> = before
        .into_iter()
        .filter_map(|pid| {
            let raw = rustix::process::Pid::from_raw(i32::try_from(pid).ok()?)?;
            let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty()).ok()?;
            Some((pid, fd))
        })
        .collect();
    let after = read_procs(dir)?.unwrap_or_default();
    for (pid, fd) in &handles {
        if after.contains(pid) && !super::identity::pidfd_has_exited(fd.as_fd()) {
            let _ = rustix::process::pidfd_send_signal(fd, sig);
        }
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            signal_tree_members(&entry.path(), sig)?;
        }
    }
    Ok(())
}

/// The pids listed in a cgroup's `cgroup.procs`; `None` if it is gone.
fn read_procs(dir: &Path) -> io::Result<Option<Vec<u32>>> {
    match std::fs::read_to_string(dir.join("cgroup.procs")) {
        Ok(text) => Ok(Some(
            text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a process lives in the cgroup or any cgroup below it (the
/// `populated` line of `cgroup.events`); an unreadable file counts as yes.
fn is_populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map_or(true, |events| !events.lines().any(|l| l == "populated 0"))
}

/// rmdir of a cgroup and the cgroups below it, deepest first. A cgroup's
/// files (`cgroup.procs`, …) go with its directory; only subdirectories
/// are cgroups of their own.
fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path())?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_with_cgroups_inside_is_removed_depth_first() {
        let name = format!("nest-test-{}", std::process::id());
        let Some(cgroup) = Cgroup::create(&name) else {
            println!("skipped: no writable cgroup v2 here");
            return;
        };
        let inner = cgroup.path().join("a").join("b");
        std::fs::create_dir_all(&inner).unwrap();
        cgroup.remove().unwrap();
        assert!(!cgroup.path().exists());
    }

    #[test]
    fn members_of_nested_cgroups_get_the_signal_too() {
        let name = format!("term-test-{}", std::process::id());
        let Some(cgroup) = Cgroup::create(&name) else {
            println!("skipped: no writable cgroup v2 here");
            return;
        };
        let nested = cgroup.path().join("nested");
        std::fs::create_dir(&nested).unwrap();
        let spawn = |dir: &Path| {
            let child = std::process::Command::new("sleep")
                .arg("60")
                .spawn()
                .unwrap();
            std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
            child
        };
        let mut children = [spawn(cgroup.path()), spawn(&nested)];
        cgroup.signal_members(crate::process::Signal::Term).unwrap();
        // Polled with a ceiling, so a child the signal missed fails the
        // test instead of hanging it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let signals: Vec<Option<i32>> = children
            .iter_mut()
            .map(|c| loop {
                if let Some(status) = c.try_wait().unwrap() {
                    break std::os::unix::process::ExitStatusExt::signal(&status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break None;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            })
            .collect();
        cgroup.remove().unwrap();
        assert_eq!(signals, [Some(15), Some(15)]);
    }

    #[test]
    fn a_sweep_removes_stale_task_cgroups_with_cgroups_inside() {
        // Swept under a parent of this test's own, so that a sweep with
        // no minimum age cannot touch another test's tasks.
        let name = format!("sweep-test-{}", std::process::id());
        let Some(parent) = Cgroup::create(&name) else {
            println!("skipped: no writable cgroup v2 here");
            return;
        };
        let stale = parent.path().join("bgtask-bg-0123456789abcdef");
        std::fs::create_dir_all(stale.join("nested")).unwrap();
        let other = parent.path().join("not-ours");
        std::fs::create_dir(&other).unwrap();
        // A live task's cgroup, with an empty one it made inside.
        let live = parent.path().join("bgtask-bg-fedcba9876543210");
        std::fs::create_dir_all(live.join("nested")).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        std::fs::write(live.join("cgroup.procs"), child.id().to_string()).unwrap();
        let swept = sweep_under(parent.path(), std::time::Duration::ZERO);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(swept, 1);
        assert!(!stale.exists());
        assert!(other.exists());
        assert!(
            live.join("nested").exists(),
            "a live task's cgroup was changed"
        );
        parent.remove().unwrap();
    }
}
