//! Recovery: reconciling live records with reality. A live task whose owner
//! (its monitor) is gone can never be recorded by anyone
//! else, so the first command that notices records it `failed` with a
//! reason and ends whatever is left of its process tree.
//!
//! Owners are checked by the task's engine (`executor/`; the local one
//! checks identity: pid + start time + boot, never a bare pid, so a
//! recycled pid never keeps a dead task "running"). An owner that cannot
//! be checked from here (it runs in another pid namespace) is left alone:
//! not seeing a process is no proof that it died.
//!
//! A queued task whose monitor died is not ended: its engine gives it a
//! new monitor (`Executor::reattach`; issue 21), unless its `--env` values
//! or its sandbox policy died with the old one, or it may have begun to
//! run (its output files exist).
//!
//! A live owner of a task recorded `killing` is told again: the requester
//! may have died between recording the kill and telling the monitor, and
//! a monitor that already stops ignores the repetition. So is a live
//! owner of a task whose `paused` or `running` its monitor has not
//! answered yet (`held`; issue 21).

use crate::clock::now_ms;
use crate::compact::task_tail;
use crate::error::Result;
use crate::executor;
use crate::process::Liveness;
use crate::store::{FinishRecord, LiveTask, Store};
use crate::task::{Outcome, Status};

/// Checks one live task; if its owner is gone, records its end. Returns true
/// if the task was ended here.
pub fn reconcile_task(store: &mut Store, task: &LiveTask) -> Result<bool> {
    let engine = executor::of(task);
    match engine.liveness(task) {
        // Not seen from here (another pid namespace) may still be reachable
        // through the shared store's control channel: a stale `killing` is
        // told again either way.
        Liveness::Alive | Liveness::Unknown => {
            if task.status == Status::Killing {
                engine.tell_kill(store, task);
            }
            // A pause or resume recorded but not carried out (its
            // requester died before telling): told again.
            let wants_held = task.status == Status::Paused;
            if matches!(task.status, Status::Running | Status::Paused) && wants_held != task.held {
                let _ = executor::tell_pause(store, task);
            }
            return Ok(false);
        }
        Liveness::Dead => {}
    }
    // `task` may have been read before the owner's last change (say, its
    // shell was recorded and then it died): a dead owner changes nothing
    // more, so the record read now is final.
    let Some(task) = store.live(&task.id)? else {
        return Ok(false);
    };
    // A remote job outlives its local watcher: a new one takes it over.
    if engine.reattach(store, &task)? {
        return Ok(false);
    }
    let reason = engine.lost_reason(store, &task);
    engine.clean_up(store, &task);
    // A `--pty` task's preview is what its terminal shows (issue 18).
    let pty = store.get(&task.id).ok().and_then(|t| t.pty);
    let tail = task_tail(
        &store.stdout_path(&task.id),
        &store.stderr_path(&task.id),
        crate::store::PREVIEW_BYTES,
        pty,
    )
    .unwrap_or_default();
    let record = FinishRecord {
        end: Outcome::Lost(reason).into_end(),
        finished_at: now_ms(),
        preview: tail.text,
        output_truncated: tail.truncated,
        dropped_bytes: 0,
    };
    // Its slot, or its dependents, may let queued tasks go (issue 21): the
    // end and the scheduling pass are one transaction.
    let ended = crate::control::finish_and_hand_on(store, &task.id, &record)?;
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
    // A crash between a claim and its hand-off is repaired here (issue 21).
    crate::control::schedule_and_repair(store)?;
    Ok(ended)
}
