//! The monitor's pause state (issue 21): whether it holds the task's tree
//! stopped, how (the cgroup freezer, else SIGSTOP), and since when.
//!
//! The store says what is wanted (`paused` or `running`, recorded by
//! whoever asked); a `Pause` or `Resume` request, or SIGUSR1, makes the
//! monitor carry out what it says now ([`sync`]), then record `held` as
//! its answer. So a repeated or late request changes nothing, and one
//! that never arrived is seen by reconcile (status and `held` disagree).
//!
//! Timeouts do not run while the task is held: the supervise loop sets
//! no hard or idle deadline and no readiness timer then, and letting go
//! moves the hard timeout's start, the readiness timeout and (through
//! the caller) the last output later by the time held.

use std::time::{Duration, Instant};

use super::supervise::Running;
use crate::process;
use crate::store::Store;
use crate::task::Status;

/// How long the processes get to be seen stopped before a pause fails:
/// within the sender's wait for an answer (`control.rs`, 1 s).
const STOP_LIMIT: Duration = Duration::from_millis(500);

/// A task the monitor holds stopped.
#[derive(Clone, Copy, Debug)]
pub(super) struct Held {
    since: Instant,
    /// Through the cgroup freezer (else SIGSTOP to its processes).
    frozen: bool,
}

/// Holds or lets go of the task as the store says now (never while it is
/// being stopped), then records `held`. Returns how long the task was
/// held if it was let go now, for the caller's idle deadline.
pub(super) fn sync(
    store: &mut Store,
    task: &mut Running,
    stopping: bool,
) -> Result<Option<Duration>, String> {
    let wanted = match store.live(&task.id) {
        Ok(live) => live.is_some_and(|l| l.status == Status::Paused) && !stopping,
        Err(e) => return Err(format!("cannot read the task's record: {e}")),
    };
    let mut released = None;
    match (wanted, task.held.is_some()) {
        (true, false) => hold(store, task)?,
        (false, true) => released = release(task),
        _ => {}
    }
    if let Err(e) = store.set_held(&task.id, task.held.is_some()) {
        super::log(&format!("{}: cannot record the pause: {e}", task.id));
    }
    Ok(released)
}

/// Stops the whole tree and waits until every process is seen stopped;
/// then copies what the task wrote before it stopped, so that nothing
/// written before the pause is acknowledged arrives after it.
fn hold(store: &mut Store, task: &mut Running) -> Result<(), String> {
    let frozen = match &task.cgroup {
        Some(cgroup) => cgroup
            .freeze(STOP_LIMIT)
            .map_err(|e| format!("cannot freeze the task's cgroup: {e}"))?,
        None => false,
    };
    if !frozen {
        let group = task.tree().group;
        process::stop_processes(task.id.as_str(), group, STOP_LIMIT)
            .map_err(|e| format!("cannot stop the task's processes: {e}"))?;
    }
    task.held = Some(Held {
        since: Instant::now(),
        frozen,
    });
    drain(store, task);
    Ok(())
}

/// Lets a held task run again and moves its timeouts later by the time
/// it was held. Returns that time (none if it was not held).
pub(super) fn release(task: &mut Running) -> Option<Duration> {
    let held = task.held.take()?;
    match (&task.cgroup, held.frozen) {
        (Some(cgroup), true) => {
            if let Err(e) = cgroup.thaw() {
                super::log(&format!("{}: cannot thaw the task's cgroup: {e}", task.id));
            }
        }
        _ => process::continue_processes(task.id.as_str(), task.tree().group),
    }
    let time = held.since.elapsed();
    task.limits.started = task.limits.started.checked_add(time)?;
    task.watching.postpone(time);
    Some(time)
}

/// Copies what waits in the output pipes (the end copies the rest the
/// same way, `end::drain_pipes`), then records what the cap dropped.
fn drain(store: &mut Store, task: &mut Running) {
    super::end::drain_pipes(store, task);
    let _ = store.set_dropped_bytes(&task.id, task.dropped_bytes());
}
