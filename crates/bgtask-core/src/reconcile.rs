//! Recovery: reconciling live records with reality. A live task whose owner
//! (its monitor) is gone can never be recorded by anyone
//! else, so the first command that notices records it `failed` with a
//! reason and ends whatever is left of its process tree.
//!
//! Owners are checked by identity (pid + start time + boot), never by a bare
//! pid, so a recycled pid never keeps a dead task "running". An owner that
//! cannot be checked from here (it runs in another pid namespace) is left
//! alone: not seeing a process is no proof that it died.
//!
//! A live owner of a task recorded `killing` is told again: the requester
//! may have died between recording the kill and telling the monitor, and
//! a monitor that already stops ignores the repetition.

use crate::control::{self, Control, Reply};
use crate::error::Result;
use crate::monitor::now_ms;
use crate::monitor::DEFAULT_GRACE_MS;
use crate::output::combined_tail;
use crate::process::{self, Cgroup, Liveness, Signal};
use crate::store::{FinishRecord, LiveTask, Store};
use crate::task::{Outcome, Status};

/// Checks one live task; if its owner is gone, records its end. Returns true
/// if the task was ended here.
pub fn reconcile_task(store: &mut Store, task: &LiveTask) -> Result<bool> {
    match task.owner.as_ref().map(|o| o.liveness()) {
        Some(Liveness::Alive) => {
            retell_kill(store, task);
            return Ok(false);
        }
        // Not seen from here, but maybe reachable through the shared
        // store's control socket.
        Some(Liveness::Unknown) => {
            retell_kill(store, task);
            return Ok(false);
        }
        Some(Liveness::Dead) | None => {}
    }
    // `task` may have been read before the owner's last change (say, its
    // shell was recorded and then it died): a dead owner changes nothing
    // more, so the record read now is final.
    let Some(task) = store.live(&task.id)? else {
        return Ok(false);
    };
    let reason = match (&task.leader, &task.owner) {
        (None, Some(owner)) => format!(
            "spawn aborted: the task's monitor (pid {}) died before the task started (see {})",
            owner.pid,
            store.monitor_log_path().display()
        ),
        (None, None) => "spawn aborted: the task never started".to_owned(),
        (Some(_), Some(owner)) => format!(
            "the task's monitor (pid {}) died; its exit status is unknown",
            owner.pid
        ),
        (Some(_), None) => "the task's monitor is unknown; its exit status is unknown".to_owned(),
    };
    end_leftovers(&task);
    let tail = combined_tail(
        &store.stdout_path(&task.id),
        &store.stderr_path(&task.id),
        crate::monitor::PREVIEW_BYTES,
    )
    .unwrap_or_default();
    let record = FinishRecord {
        end: Outcome::Lost(reason).into_end(),
        finished_at: now_ms(),
        preview: tail.text,
        output_truncated: tail.truncated,
        dropped_bytes: 0,
    };
    let ended = store.finish(&task.id, &record)?;
    if ended {
        store.touch_events();
    }
    // A monitor killed outright leaves its control socket behind; nobody
    // listens there any more (senders already fall back), so it goes.
    let _ = std::fs::remove_file(crate::store::control_socket_path(store.home(), &task.id));
    Ok(ended)
}

/// Reconciles every live task in the store. Returns how many were ended.
pub fn reconcile_all(store: &mut Store) -> Result<usize> {
    let mut ended = 0;
    for task in store.all_live()? {
        if reconcile_task(store, &task)? {
            ended += 1;
        }
    }
    Ok(ended)
}

/// Tells the live monitor of a task recorded `killing` to carry the kill
/// out: over its control channel, or where it has none, SIGUSR1 ("read
/// the store"). Only once the shell is recorded: the monitor sees
/// `killing` itself when it records the shell.
fn retell_kill(store: &Store, task: &LiveTask) {
    if task.status != Status::Killing || task.leader.is_none() {
        return;
    }
    let grace_ms = task.kill_grace_ms.unwrap_or(DEFAULT_GRACE_MS);
    if matches!(
        control::send(store.home(), &task.id, &Control::Kill { grace_ms }),
        Ok(Reply::Done)
    ) {
        return;
    }
    if let Some(monitor) = task.owner.as_ref().and_then(|o| o.open()) {
        let _ = monitor.signal(Signal::Usr1);
    }
}

/// Kills what remains of an orphaned task: its cgroup if it had one, and
/// every process carrying the task's marker (each proven to be the task's
/// before it is signalled). Never a process group or pid by number alone:
/// with the monitor gone, the leader's pid and group may be someone else's.
fn end_leftovers(task: &LiveTask) {
    // Nothing of an earlier boot runs (and every live task of one is
    // reconciled at once after a reboot: no search of /proc for each).
    if task
        .owner
        .as_ref()
        .is_some_and(|o| o.boot_id != process::boot_id())
    {
        return;
    }
    let cgroup = task.cgroup.as_ref().map(Cgroup::at);
    if let Some(cgroup) = &cgroup {
        let _ = cgroup.kill();
    }
    process::signal_marked(task.id.as_str(), Signal::Kill);
    if let Some(cgroup) = &cgroup {
        let _ = cgroup.remove();
    }
}
