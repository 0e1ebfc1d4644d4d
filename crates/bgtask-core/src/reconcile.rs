//! Recovery: reconciling live records with reality. A live task whose owner
//! (its monitor) is gone can never be recorded by anyone
//! else, so the first command that notices records it `failed` with a
//! reason and ends whatever is left of its process tree.
//!
//! Owners are checked by identity (pid + start time + boot), never by a bare
//! pid, so a recycled pid never keeps a dead task "running".

use crate::error::Result;
use crate::monitor::now_ms;
use crate::output::combined_tail;
use crate::process::{self, Cgroup, SIGKILL};
use crate::store::{FinishRecord, LiveTask, Store};
use crate::task::Outcome;

/// Checks one live task; if its owner is gone, records its end. Returns true
/// if the task was ended here.
pub fn reconcile_task(store: &mut Store, task: &LiveTask) -> Result<bool> {
    if task.owner.as_ref().is_some_and(|o| o.is_alive()) {
        return Ok(false);
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

/// Kills what remains of an orphaned task: its cgroup if it had one, and its
/// process group unless the leader's pid now belongs to another process.
fn end_leftovers(task: &LiveTask) {
    if let Some(dir) = &task.cgroup {
        let cgroup = Cgroup::at(dir);
        let _ = cgroup.kill();
        let _ = cgroup.remove();
    }
    if let Some(leader) = &task.leader {
        let _ = process::signal_group_of(leader, SIGKILL);
    }
}
