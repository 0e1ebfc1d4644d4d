//! Queues (issue 21): the service's side of groups, restart and clean.
//! The claim itself is `store/groups.rs`; the hand-off to the claimed
//! tasks' monitors is `control::schedule`.

use super::{Service, GC_BATCH};
use crate::clock::now_ms;
use crate::config::{Engine, QueueRequest, SpawnRequest};
use crate::error::{Error, Result};
use crate::store::{validate_group_name, validate_label, Group, QueueSpec};
use crate::task::{Status, Task, TaskId, DEFAULT_GROUP};
use crate::units::MAX_DURATION_MS;

/// A request's queueing, checked, as the store records it. Only the local
/// engine queues; a Slurm job is refused when no slot is free, as before.
pub fn queue_spec(req: &QueueRequest, engine: Engine) -> Result<QueueSpec> {
    let group = req
        .group
        .clone()
        .unwrap_or_else(|| DEFAULT_GROUP.to_owned());
    validate_group_name(&group)?;
    if let Some(label) = &req.label {
        validate_label(label)?;
    }
    let start_at = match req.delay_ms {
        Some(ms) if ms > MAX_DURATION_MS => {
            return Err(Error::InvalidArgument(format!(
                "the delay of {ms} ms is too long (at most {MAX_DURATION_MS} ms)"
            )))
        }
        Some(0) | None => None,
        Some(ms) => Some(now_ms().saturating_add(ms as i64)),
    };
    if req.no_queue && (start_at.is_some() || !req.after.is_empty() || !req.after_any.is_empty()) {
        return Err(Error::InvalidArgument(
            "--no-queue cannot wait for dependencies or a delay".into(),
        ));
    }
    Ok(QueueSpec {
        group,
        label: req.label.clone(),
        after: req.after.clone(),
        after_any: req.after_any.clone(),
        start_at,
        may_queue: !req.no_queue && engine == Engine::Local,
    })
}

/// A new task made from an old one (`restart`), and the `--env` keys it
/// was started with that were not given again.
pub struct Restart {
    pub request: SpawnRequest,
    pub missing_env: Vec<String>,
}

impl Service {
    /// Adds a queue group.
    pub fn add_group(&self, name: &str, parallel: Option<u32>) -> Result<()> {
        self.store().add_group(name, parallel)
    }

    /// Sets a group's parallelism; a raised one starts what now fits.
    pub fn set_group_parallel(&self, name: &str, parallel: u32) -> Result<()> {
        let mut store = self.store();
        store.set_group_parallel(name, parallel)?;
        store.touch_events();
        crate::control::schedule(&mut store)?;
        Ok(())
    }

    /// Removes a group that has no live task.
    pub fn remove_group(&self, name: &str) -> Result<()> {
        self.store().remove_group(name)
    }

    /// Every group with its counts, the default one first.
    pub fn groups(&self) -> Result<Vec<Group>> {
        self.store().groups()
    }

    /// Pauses a group: it starts nothing new, and each of its running
    /// tasks is paused as `pause_tasks` does (one result per task, so one
    /// that cannot be held does not hide the others).
    pub fn pause_group(&self, name: &str) -> Result<Vec<Result<Task>>> {
        {
            let mut store = self.store();
            store.set_group_paused(name, true)?;
            store.touch_events();
        }
        let running = self.group_tasks(name, Status::Running)?;
        Ok(self.pause_tasks(&running))
    }

    /// Resumes a paused group: its paused tasks run again, then what is
    /// eligible in it starts.
    pub fn resume_group(&self, name: &str) -> Result<Vec<Result<Task>>> {
        {
            let mut store = self.store();
            store.set_group_paused(name, false)?;
            store.touch_events();
        }
        let paused = self.group_tasks(name, Status::Paused)?;
        let results = self.resume_tasks(&paused);
        crate::control::schedule(&mut self.store())?;
        Ok(results)
    }

    /// The ids of group `name`'s tasks in `status`, of every session (a
    /// group is the store's, not a session's).
    fn group_tasks(&self, name: &str, status: Status) -> Result<Vec<TaskId>> {
        let req = crate::service::ListRequest {
            all_sessions: true,
            status: Some(status),
            group: Some(name.to_owned()),
        };
        Ok(self.list(&req)?.into_iter().map(|t| t.task_id).collect())
    }

    /// The request that runs task `id` again: its command (or `command`),
    /// working directory, limits, group, label and interaction, with
    /// `env`. Values of `--env` are never stored: the keys the old task had
    /// that `env` does not give are returned for the caller to refuse or
    /// report.
    pub fn restart_request(
        &self,
        id: &TaskId,
        command: Option<String>,
        env: Vec<(String, String)>,
    ) -> Result<Restart> {
        let task = self.store().get(id)?;
        let missing_env = task
            .env_keys
            .iter()
            .filter(|key| !env.iter().any(|(k, _)| k == *key))
            .cloned()
            .collect();
        let executor = task.executor.parse().ok();
        let request = SpawnRequest {
            command: command.unwrap_or(task.command),
            cwd: Some(task.cwd),
            env,
            timeout_ms: task.timeout_ms,
            idle_timeout_ms: task.idle_timeout_ms,
            max_output: task.max_output_bytes,
            notify: task.notify,
            ready: task.readiness.map(|r| crate::ready::ReadySpec {
                condition: r.condition,
                timeout_ms: r.timeout_ms,
                kill_if_not_ready: r.kill_if_not_ready,
            }),
            interaction: match (task.pty, task.stdin) {
                (Some(size), _) => crate::interact::Interaction::Pty(size),
                (None, true) => crate::interact::Interaction::Stdin,
                (None, false) => crate::interact::Interaction::None,
            },
            executor,
            queue: QueueRequest {
                group: (task.group != DEFAULT_GROUP).then_some(task.group),
                label: task.label,
                ..QueueRequest::default()
            },
            ..SpawnRequest::default()
        };
        Ok(Restart {
            request,
            missing_env,
        })
    }

    /// Removes every finished task whose notification was acknowledged
    /// (or that never notifies), now, of one group or all: `gc` without
    /// the age.
    pub fn clean(&self, group: Option<&str>) -> Result<Vec<TaskId>> {
        let Some(group) = group else {
            return Ok(self.gc(0)?.removed);
        };
        validate_group_name(group)?;
        if group != DEFAULT_GROUP && !self.groups()?.iter().any(|g| g.name == group) {
            return Err(Error::GroupNotFound(group.to_owned()));
        }
        let mut removed = Vec::new();
        let store = self.store();
        loop {
            let ids = store.collect_group_batch(group, now_ms() + 1, GC_BATCH)?;
            let result = ids
                .iter()
                .map(|id| store.remove_output_files(id))
                .fold(Ok(()), Result::and);
            let done = ids.len() < GC_BATCH as usize;
            removed.extend(ids);
            result?;
            if done {
                return Ok(removed);
            }
        }
    }
}
