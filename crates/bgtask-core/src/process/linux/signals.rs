//! Signalling a task's processes: its process group, its reparented
//! children, and every process carrying its marker (each verified through a
//! pidfd first).

use std::io;

use rustix::process::{Pid, PidfdFlags};

use super::ProcessHandle;
use crate::process::Signal;

/// The OS's signal for `sig`; an error for a number the OS does not know.
pub(super) fn os_signal(sig: Signal) -> io::Result<rustix::process::Signal> {
    rustix::process::Signal::from_named_raw(sig.number())
        .ok_or_else(|| io::Error::other(format!("unknown signal {sig}")))
}

/// Makes the calling process the reaper of its orphaned descendants, so a
/// killed process group is reaped at once instead of by a slow PID 1.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(io::Error::from)
}

/// Signals a process group we own. Only the monitor calls this, for the
/// group of a child it has not reaped yet (so the pgid cannot be recycled).
pub fn signal_group(pgid: u32, sig: Signal) -> io::Result<()> {
    let pid = Pid::from_raw(pgid as i32).ok_or_else(|| io::Error::other("pgid 0"))?;
    let sig = os_signal(sig)?;
    match rustix::process::kill_process_group(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The environment variable that marks every process of a task: the
/// monitor gives the task's shell `BGTASK_TASK_ID=<id>`, and every
/// descendant inherits it, whatever its session, process group or parent.
pub const TASK_MARKER: &str = "BGTASK_TASK_ID";

/// Sends `sig` to every process (other than the caller) whose environment
/// carries the marker of task `task_id`. Returns how many were signalled.
///
/// Each is proven to be the task's before it is signalled: a pidfd is
/// opened first, then `/proc/PID/environ` is read, then the pidfd is
/// checked to still refer to a running process. A pid cannot be reused
/// while its process runs, so the environment read was that process's, and
/// the signal goes through the pidfd, which cannot reach another one.
/// Only processes whose environment this process may read are found (the
/// same user, or any as root).
pub fn signal_marked(task_id: &str, sig: Signal) -> usize {
    let Ok(sig) = os_signal(sig) else {
        return 0;
    };
    marked(task_id)
        .iter()
        .filter(|(_, handle)| rustix::process::pidfd_send_signal(&handle.fd, sig).is_ok())
        .count()
}

/// Every running process (other than the caller) carrying the marker of
/// task `task_id`, each with a pidfd proven to be that process (see
/// [`signal_marked`]).
pub(super) fn marked(task_id: &str) -> Vec<(u32, ProcessHandle)> {
    let marker = format!("{TASK_MARKER}={task_id}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|pid| *pid != me)
        else {
            continue;
        };
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        let Ok(fd) = rustix::process::pidfd_open(raw, PidfdFlags::empty()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            continue;
        }
        let handle = ProcessHandle { fd };
        if handle.has_exited() {
            continue;
        }
        found.push((pid, handle));
    }
    found
}

/// Signals every current child of the calling process. The children are not
/// reaped yet, so their pids are still theirs. Used by the monitor (a
/// subreaper) to reach descendants that left the process group.
pub fn signal_own_children(sig: Signal) -> io::Result<usize> {
    let Ok(sig) = os_signal(sig) else {
        return Ok(0);
    };
    let mut count = 0;
    for pid in own_children()? {
        if let Some(pid) = Pid::from_raw(pid as i32) {
            if rustix::process::kill_process(pid, sig).is_ok() {
                count += 1;
            }
        }
    }
    Ok(count)
}

pub(super) fn own_children() -> io::Result<Vec<u32>> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{me}/task"))? {
        let path = entry?.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            pids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_processes_carrying_the_marker_are_signalled() {
        let id = format!("bg-marker-test-{}", std::process::id());
        let spawn = |marker: Option<&str>| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("60");
            if let Some(m) = marker {
                cmd.env(TASK_MARKER, m);
            }
            cmd.spawn().unwrap()
        };
        let mut marked = spawn(Some(&id));
        let mut other_task = spawn(Some(&format!("{id}0")));
        let mut unmarked = spawn(None);
        assert_eq!(signal_marked(&id, Signal::Kill), 1);
        let status = marked.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        for child in [&mut other_task, &mut unmarked] {
            assert!(
                child.try_wait().unwrap().is_none(),
                "an unmarked process was hit"
            );
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
