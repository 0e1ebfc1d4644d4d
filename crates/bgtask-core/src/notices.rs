//! A session's notifications of every kind (`completed`, `ready`,
//! `ready_failed`, `watch_match`), watches, and waiting for readiness.
//!
//! The outbox has two tables: completions (`store/outbox.rs`, with their
//! claims) and the other kinds (`store/notify.rs`). Readers see one list:
//! [`Service::pending_notifications`], oldest first by the time each was
//! recorded; [`Service::ack_notifications`] acknowledges exactly a given
//! set (by notification id), [`Service::ack`] everything of given tasks.

use serde_json::{json, Value};

use crate::clock::now_ms;
use crate::config::SpawnRequest;
use crate::control::{self, Control};
use crate::error::{Error, Result};
use crate::ready::{self, DEFAULT_COOLDOWN_MS, DEFAULT_READY_TIMEOUT_MS};
use crate::service::Service;
use crate::task::{Completion, Notification, NotificationKind, ReadyState, Task, TaskId, Watch};
use crate::wait::WaitOutcome;

/// A request to watch a task's output.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    pub task_id: TaskId,
    pub pattern: String,
    pub once: bool,
    /// Least time between two notifications (default 10 s).
    pub cooldown_ms: Option<u64>,
}

/// A completion as a notification of kind `completed`.
pub fn completion_notification(seq: i64, c: &Completion) -> Notification {
    let detail = json!({
        "status": c.status,
        "exit_code": c.exit_code,
        "signal": c.signal,
        "reason": c.reason,
        "command": c.command,
        "duration_ms": c.duration_ms,
        "finished_at": c.finished_at,
        "output_preview": c.output_preview,
        "output_truncated": c.output_truncated,
        "stdout_path": c.stdout_path.to_string_lossy(),
        "stderr_path": c.stderr_path.to_string_lossy(),
    });
    let code = c
        .exit_code
        .map(|code| format!(" (exit code {code})"))
        .unwrap_or_default();
    Notification {
        notification_id: format!("c:{seq}"),
        kind: NotificationKind::Completed,
        task_id: c.task_id.clone(),
        session: c.session.clone(),
        watch_id: None,
        created_at: c.finished_at.unwrap_or(0),
        summary: format!("{} {}{code}: {}", c.task_id, c.status, c.command),
        detail,
    }
}

/// A notification id as `ack` takes it: `c:<seq>` or `n:<seq>` (not hex, so never taken for a task id prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationId {
    Completion(i64),
    Other(i64),
}

impl std::str::FromStr for NotificationId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let parse = |rest: &str| rest.parse::<i64>().ok().filter(|n| *n > 0);
        match (s.get(..2), s.get(2..).and_then(parse)) {
            (Some("c:"), Some(n)) => Ok(NotificationId::Completion(n)),
            (Some("n:"), Some(n)) => Ok(NotificationId::Other(n)),
            _ => Err(Error::InvalidArgument(format!(
                "notification_id: {s:?} is not a notification id (c:123 or n:123)"
            ))),
        }
    }
}

impl Service {
    /// This session's unacknowledged notifications of every kind, oldest
    /// first: the one list every reader shows (CLI, serve, MCP, hooks).
    /// Completions a live process is delivering (claimed) are left out, as
    /// [`Service::completions`] leaves them out.
    pub fn pending_notifications(&self) -> Result<Vec<Notification>> {
        let completions = self.completions_with_seq()?;
        // (Reconciled there: a task whose monitor died has its end, and its
        // readiness failure, recorded before the list is read.)
        let others = self.store().notifications_after(self.session(), 0)?;
        let mut all: Vec<Notification> = completions
            .iter()
            .map(|(seq, c)| completion_notification(*seq, c))
            .chain(others.into_iter().map(|(_, n)| n))
            .collect();
        // Stable: within one millisecond, completions (recorded with the
        // end) come after a readiness failure recorded in the same
        // transaction only if ordered by kind; keep store order otherwise.
        all.sort_by_key(|n| (n.created_at, n.kind == NotificationKind::Completed));
        Ok(all)
    }

    /// Acknowledges exactly the named notifications (ids `c…`/`n…`), all
    /// or none; returns how many were newly acknowledged.
    pub fn ack_notifications(&self, ids: &[NotificationId]) -> Result<usize> {
        let mut completions = Vec::new();
        let mut others = Vec::new();
        for id in ids {
            match id {
                NotificationId::Completion(seq) => completions.push(*seq),
                NotificationId::Other(seq) => others.push(*seq),
            }
        }
        let mut acked = 0;
        if !completions.is_empty() {
            let tasks = self
                .store()
                .completion_tasks(self.session(), &completions)?;
            acked += self.store().ack(self.session(), &tasks, now_ms())?;
        }
        if !others.is_empty() {
            acked += self
                .store()
                .ack_notification_seqs(self.session(), &others, now_ms())?;
        }
        Ok(acked)
    }

    /// This session's unacknowledged notifications of the kinds beside
    /// `completed` recorded after sequence number `after` (the push).
    pub fn notifications_after(&self, after: i64) -> Result<Vec<(i64, Notification)>> {
        self.store().notifications_after(self.session(), after)
    }

    /// The newest sequence number of the notifications beside completions.
    pub fn last_notification_seq(&self) -> Result<i64> {
        self.store().last_notification_seq()
    }

    /// Acknowledges a task's `ready`/`ready_failed` notifications: a caller
    /// that returned the readiness inline delivered them.
    pub fn settle_readiness(&self, id: &TaskId) -> Result<()> {
        self.store()
            .ack_ready_notifications(self.session(), id, now_ms())
    }

    /// Adds a watch to a running task and tells its monitor.
    pub fn watch(&self, req: &WatchRequest) -> Result<Watch> {
        ready::compile(&req.pattern, "pattern")?;
        let cooldown_ms = req.cooldown_ms.unwrap_or(DEFAULT_COOLDOWN_MS);
        if cooldown_ms > crate::units::MAX_DURATION_MS {
            return Err(Error::InvalidArgument(format!(
                "cooldown_ms: {cooldown_ms} ms is too long"
            )));
        }
        // Reconciled first: a task whose monitor died is not watched.
        let task = self.get(&req.task_id)?;
        let watch = Watch {
            watch_id: new_watch_id(),
            task_id: req.task_id.clone(),
            session: task.session,
            pattern: req.pattern.clone(),
            once: req.once,
            cooldown_ms,
            created_at: now_ms(),
            ended_at: None,
            fired_at: None,
        };
        self.store().add_watch(&watch)?;
        self.tell_watches(&watch.task_id);
        Ok(watch)
    }

    /// Ends a watch; an unknown id is an error naming it.
    pub fn unwatch(&self, watch_id: &str) -> Result<Watch> {
        let id = self.store().end_watch(watch_id, now_ms())?;
        self.tell_watches(&id);
        self.store()
            .watches(Some(&id), None)?
            .into_iter()
            .find(|w| w.watch_id == watch_id)
            .ok_or_else(|| Error::InvalidArgument(format!("watch_id: no watch {watch_id:?}")))
    }

    /// Watches of one task, or of this session's tasks, newest first.
    pub fn watches(&self, task: Option<&TaskId>) -> Result<Vec<Watch>> {
        let session = task.is_none().then(|| self.session().to_owned());
        self.store().watches(task, session.as_deref())
    }

    /// Tells a task's monitor to re-read its watches. The store already has
    /// them, so a monitor that cannot be told now reads them when it starts
    /// (a replaced monitor re-arms every stored watch).
    fn tell_watches(&self, id: &TaskId) {
        // Not answering is fine (see above): nothing is lost, and the
        // library never prints.
        let _ = control::send(&self.config().home, id, &Control::Watch);
    }

    /// Blocks until every task in `ids` is ready, or one's readiness failed
    /// (it ended first, its readiness timeout passed), or `timeout_ms`.
    pub fn wait_ready(&self, ids: &[TaskId], timeout_ms: Option<u64>) -> Result<WaitOutcome> {
        self.wait_for_change(ids, timeout_ms, |tasks| {
            tasks.iter().all(|t| t.ready_state() == ReadyState::Ready)
                || tasks
                    .iter()
                    .any(|t| !matches!(t.ready_state(), ReadyState::Ready | ReadyState::Pending))
        })
    }

    /// Blocks until the session has an unacknowledged notification of any
    /// kind, or `timeout_ms` passes; the pending ones (empty on timeout).
    pub fn wait_notification(&self, timeout_ms: Option<u64>) -> Result<Vec<Notification>> {
        let session = self.session().to_owned();
        let done = |_: &[crate::task::Task]| {
            self.store()
                .has_pending_notification(&session)
                .unwrap_or(true)
        };
        self.wait_for_change(&[], timeout_ms, done)?;
        self.pending_notifications()
    }
}

impl Service {
    /// Starts a task with a readiness condition and returns once it is
    /// ready or its readiness failed (the task, and whether the wait
    /// itself ran out first). The readiness notification is delivered by
    /// this answer, so it is acknowledged here; the task's completion is
    /// reported as usual when it ends.
    pub fn run_until_ready(&self, spawn: &SpawnRequest) -> Result<(Task, bool)> {
        let task = self.spawn(spawn)?;
        self.until_ready(task, None)
    }

    /// Waits for a started task's readiness (see [`Service::run_until_ready`]).
    /// With `wake` (from [`Service::record_waking`]), it first sleeps on
    /// that: a process that would open an events watch only for this wait
    /// pays for closing it when it exits (an SRCU grace period, 5–20 ms),
    /// longer than the wait itself often takes.
    pub fn until_ready(
        &self,
        task: Task,
        wake: Option<std::os::fd::OwnedFd>,
    ) -> Result<(Task, bool)> {
        // The monitor records the readiness timeout itself; the wait's own
        // limit is only a safety net beyond it.
        let limit = task
            .readiness
            .as_ref()
            .map_or(DEFAULT_READY_TIMEOUT_MS, |r| r.timeout_ms)
            .saturating_add(READY_WAIT_SLACK_MS);
        let id = task.task_id.clone();
        if let Some(wake) = &wake {
            if crate::process::go_pipe_released(wake, Some(std::time::Duration::from_millis(limit)))
            {
                let task = self.get(&id)?;
                if task.ready_state() != ReadyState::Pending {
                    let _ = self.settle_readiness(&id);
                    return Ok((task, false));
                }
            }
        }
        let waited = self.wait_ready(std::slice::from_ref(&id), Some(limit))?;
        let task = waited.tasks.into_iter().next().unwrap_or(task);
        let _ = self.settle_readiness(&id);
        Ok((task, waited.timed_out))
    }
}

/// How much longer than a readiness timeout a waiter waits for the
/// monitor to record it.
const READY_WAIT_SLACK_MS: u64 = 5_000;

/// A fresh watch id: `w-` and 12 hex digits.
fn new_watch_id() -> String {
    let id = TaskId::random();
    format!("w-{}", &id.as_str()[3..15])
}

/// The detail of a readiness outcome as the servers return it inline.
pub fn readiness_result(task: &crate::task::Task) -> Value {
    let readiness = task.readiness.as_ref();
    json!({
        "ready": task.ready_state() == ReadyState::Ready,
        "ready_at": task.ready_at,
        "ready_outcome": readiness.and_then(|r| r.outcome),
        "ready_detail": readiness.and_then(|r| r.detail.clone()),
    })
}
