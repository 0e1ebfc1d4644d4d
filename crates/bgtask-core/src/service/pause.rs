//! Pausing and resuming tasks (issue 21): `pause` holds a running task's
//! whole tree stopped (the cgroup freezer, else SIGSTOP; `monitor/pause.rs`)
//! and `resume` lets it go. The status is recorded first (`paused`, or
//! `running` again), then the task's monitor is told, as a kill is: a
//! requester that dies in between leaves the request recorded, and
//! reconcile tells the monitor again (`held` disagrees with the status).
//!
//! Timeouts do not run while a task is paused: its hard and idle timeouts
//! (and a readiness timeout) end later by the time it was paused.
//!
//! Only local tasks can be paused: a Slurm job runs under Slurm's control
//! (`scontrol suspend` is for operators), so it is refused.

use super::Service;
use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::executor;
use crate::process::Liveness;
use crate::task::{Status, Task, TaskId};

impl Service {
    /// Pauses each task on its own; one result per id, in order (the
    /// group form of `pause` comes here with the group's tasks).
    pub fn pause_tasks(&self, ids: &[TaskId]) -> Vec<Result<Task>> {
        ids.iter().map(|id| self.pause(id)).collect()
    }

    /// Resumes each task on its own; one result per id, in order.
    pub fn resume_tasks(&self, ids: &[TaskId]) -> Vec<Result<Task>> {
        ids.iter().map(|id| self.resume(id)).collect()
    }

    /// Pauses a running task and returns it `paused`, once its monitor
    /// holds every process of it stopped and has copied what it wrote.
    pub fn pause(&self, id: &TaskId) -> Result<Task> {
        let task = self.get(id)?;
        local_only(&task, "paused")?;
        if task.status != Status::Running {
            return Err(not_running(&task));
        }
        {
            let store = self.store();
            if let Some(live) = store.live(id)? {
                reachable(&store, &live)?;
            }
            if !store.request_pause(id, now_ms())? {
                drop(store);
                return Err(not_running(&self.get(id)?));
            }
            store.touch_events();
        }
        crate::process::fault::point("pause_after_request");
        self.carry_out(id, "paused")
    }

    /// Lets a paused task run again and returns it `running`.
    pub fn resume(&self, id: &TaskId) -> Result<Task> {
        let task = self.get(id)?;
        local_only(&task, "resumed")?;
        if task.status != Status::Paused {
            return Err(not_paused(&task));
        }
        {
            let store = self.store();
            if let Some(live) = store.live(id)? {
                reachable(&store, &live)?;
            }
            if !store.request_resume(id)? {
                drop(store);
                return Err(not_paused(&self.get(id)?));
            }
            store.touch_events();
        }
        self.carry_out(id, "resumed")
    }

    /// Tells the task's monitor to carry out what the store now says.
    fn carry_out(&self, id: &TaskId, what: &str) -> Result<Task> {
        let store = self.store();
        let Some(live) = store.live(id)? else {
            drop(store);
            let task = self.get(id)?;
            return Err(Error::InvalidState(format!(
                "task {id} ended ({}) before it was {what}",
                task.status
            )));
        };
        match executor::tell_pause(&store, &live) {
            Ok(true) => {}
            // Recorded, but no monitor could be told: the next command
            // that looks at the task tells it again (reconcile).
            Ok(false) => {
                return Err(Error::Unreachable(format!(
                    "task {id}'s monitor does not answer; the task stays recorded as {} and is told again by the next command that looks at it",
                    live.status
                )))
            }
            Err(message) => {
                // The monitor could not hold the tree: the pause is undone,
                // so the record says what runs.
                if live.status == Status::Paused && store.request_resume(id)? {
                    store.touch_events();
                }
                return Err(Error::InvalidState(format!(
                    "task {id} could not be {what}: {message}"
                )));
            }
        }
        drop(store);
        self.get(id)
    }
}

/// Refuses a task of another engine than the local one.
fn local_only(task: &Task, what: &str) -> Result<()> {
    if task.executor == "local" {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "task {} runs under executor {} and cannot be {what}: only local tasks can be paused",
        task.task_id, task.executor
    )))
}

/// A monitor that can be neither checked nor told from here (another pid
/// namespace without a reachable socket): nothing is recorded.
fn reachable(store: &crate::store::Store, live: &crate::store::LiveTask) -> Result<()> {
    let engine = executor::of(live);
    if engine.liveness(live) == Liveness::Unknown && !engine.can_tell(store, live) {
        return Err(Error::Unreachable(format!(
            "task {} cannot be told from here: {}",
            live.id,
            engine.why_unreachable(live)
        )));
    }
    Ok(())
}

fn not_running(task: &Task) -> Error {
    let id = &task.task_id;
    Error::InvalidState(match task.status {
        Status::Paused => format!("task {id} is already paused"),
        Status::Starting => {
            format!("task {id} is starting, not running yet: pause it once it runs")
        }
        status if status.is_terminal() => {
            format!("task {id} has ended ({status}) and cannot be paused")
        }
        status => format!("task {id} is {status}, not running: only a running task can be paused"),
    })
}

fn not_paused(task: &Task) -> Error {
    let id = &task.task_id;
    Error::InvalidState(match task.status {
        status if status.is_terminal() => {
            format!("task {id} has ended ({status}) and cannot be resumed")
        }
        status => format!("task {id} is {status}, not paused: nothing to resume"),
    })
}
