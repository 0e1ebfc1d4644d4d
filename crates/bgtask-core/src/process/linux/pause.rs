//! Holding a task's whole tree stopped and letting it go again (issue 21,
//! `bgtask pause`): the cgroup v2 freezer where the task has a cgroup
//! (`cgroup.freeze`, Linux 5.2), else SIGSTOP to every process of the task
//! (its process group, the caller's children, every process carrying its
//! marker, each verified through a pidfd first) and SIGCONT to let go.
//!
//! Both return only once every process is seen stopped (`frozen 1` in
//! `cgroup.events`, state `T` in `/proc/PID/stat`): a process that was in
//! the middle of a `write` when it was asked to stop may still finish it,
//! and whoever acknowledges a pause promises that no output follows.
//!
//! The wait for that is a loop of 1 ms steps, bounded by the caller: it
//! is over in microseconds unless a process sits in an uninterruptible
//! sleep, and a pause is rare.

use std::io;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal as OsSignal};

use super::signals::{marked, own_children};
use super::Cgroup;

const STEP: Duration = Duration::from_millis(1);

impl Cgroup {
    /// Freezes every process in the cgroup and the cgroups the task made
    /// inside it, and waits until the kernel reports them frozen. False
    /// (nothing done) where the kernel has no cgroup freezer. On an error,
    /// or if they are not frozen within `limit`, the cgroup is thawed.
    pub fn freeze(&self, limit: Duration) -> io::Result<bool> {
        let control = self.path().join("cgroup.freeze");
        if !control.exists() {
            return Ok(false);
        }
        std::fs::write(&control, b"1")?;
        let deadline = Instant::now() + limit;
        loop {
            let events = std::fs::read_to_string(self.path().join("cgroup.events"));
            match events {
                Ok(text) if text.lines().any(|l| l == "frozen 1") => return Ok(true),
                Ok(_) if Instant::now() < deadline => std::thread::sleep(STEP),
                Ok(_) => {
                    let _ = self.thaw();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the task's processes were not frozen within {} ms",
                            limit.as_millis()
                        ),
                    ));
                }
                Err(e) => {
                    let _ = self.thaw();
                    return Err(e);
                }
            }
        }
    }

    /// Lets a frozen cgroup run again (a cgroup that is gone is no error).
    pub fn thaw(&self) -> io::Result<()> {
        match std::fs::write(self.path().join("cgroup.freeze"), b"0") {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

/// Stops the processes of task `task_id`, which has no cgroup: SIGSTOP to
/// its process group `group` (only while its shell is unreaped, so the
/// number is still the task's), to the caller's children (a monitor is
/// their subreaper) and to every process carrying the task's marker.
/// Repeats until every marked process is seen stopped (a process that
/// forked while the others were being stopped is caught by the next
/// round), or fails after `limit`, letting them all go again.
pub fn stop_processes(task_id: &str, group: Option<u32>, limit: Duration) -> io::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        signal_group_and_children(group, OsSignal::STOP);
        let mut running = std::collections::BTreeSet::new();
        for (pid, handle) in marked(task_id) {
            if !is_stopped(pid) {
                let _ = rustix::process::pidfd_send_signal(&handle.fd, OsSignal::STOP);
                running.insert(pid);
            }
        }
        // The children were signalled above: they too count as stopped only
        // once their state says so (a signal is acted on when the process
        // next runs, which on a busy machine is not at once).
        for pid in own_children().unwrap_or_default() {
            if !is_stopped(pid) {
                running.insert(pid);
            }
        }
        let running = running.len();
        if running == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            continue_processes(task_id, group);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{running} of the task's processes did not stop within {} ms",
                    limit.as_millis()
                ),
            ));
        }
        std::thread::sleep(STEP);
    }
}

/// Lets the processes [`stop_processes`] stopped run again: SIGCONT to
/// the same processes.
pub fn continue_processes(task_id: &str, group: Option<u32>) {
    signal_group_and_children(group, OsSignal::CONT);
    for (_, handle) in marked(task_id) {
        let _ = rustix::process::pidfd_send_signal(&handle.fd, OsSignal::CONT);
    }
}

fn signal_group_and_children(group: Option<u32>, sig: OsSignal) {
    if let Some(pgid) = group
        .and_then(|g| i32::try_from(g).ok())
        .and_then(Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pgid, sig);
    }
    // The caller's children are not reaped yet, so their pids are theirs.
    for pid in own_children().unwrap_or_default() {
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }
}

/// Whether process `pid` is stopped (or already dead): its state in
/// `/proc/PID/stat`, the field after the command name in parentheses.
fn is_stopped(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('T' | 't' | 'Z' | 'X') | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_processes_are_stopped_and_continued() {
        let id = format!("bg-pause-test-{}", std::process::id());
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .env(super::super::signals::TASK_MARKER, &id)
            .spawn()
            .unwrap();
        let pid = child.id();
        stop_processes(&id, None, Duration::from_secs(10)).unwrap();
        let stopped = is_stopped(pid);
        continue_processes(&id, None);
        // Polled with a ceiling: the state changes once the child runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        while is_stopped(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let running_again = !is_stopped(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(stopped, "the marked process was not stopped");
        assert!(running_again, "the marked process was not continued");
    }
}
