//! Task rows and their guarded transitions.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};

use super::schema::RECORD_VERSION;
use super::Store;
use crate::config::Engine;
use crate::error::{Error, Result};
use crate::process::ProcessIdentity;
use crate::ready::{ReadyCondition, ReadySpec};
use crate::task::{End, Readiness, ReadyOutcome, Status, Task, TaskId};

/// The live statuses as an SQL set, `('starting','running',…)`: written
/// from `Status::is_live`, so the store and the code agree on what is live.
const LIVE: LiveSet = LiveSet;

struct LiveSet;

impl std::fmt::Display for LiveSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "(";
        for status in Status::ALL.into_iter().filter(|s| s.is_live()) {
            write!(f, "{sep}'{status}'")?;
            sep = ",";
        }
        f.write_str(")")
    }
}

const TASK_COLUMNS: &str = "task_id, record_version, session, command, cwd, env_keys, status, \
    exit_code, signal, reason, pid, created_at, started_at, finished_at, timeout_ms, \
    idle_timeout_ms, max_output, notify, dropped_bytes, owner_pid, ready_kind, ready_value, \
    ready_timeout_ms, ready_kill, ready_at, ready_outcome, ready_detail, io, signals_sent, sandbox, executor, job_id, paused_at, group_name, label";

/// A task just recorded as started, as its monitor needs it.
#[derive(Clone, Debug)]
pub struct StartedTask {
    /// `running`, or `killing` if a kill arrived during the start.
    pub status: Status,
    pub max_output: u64,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    /// The readiness condition the monitor evaluates, if any is pending.
    pub ready: Option<ReadySpec>,
}

/// A task about to be recorded in `starting`.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub id: TaskId,
    pub session: String,
    pub command: String,
    pub cwd: PathBuf,
    pub env_keys: Vec<String>,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_output: u64,
    pub notify: bool,
    /// How its stdin is connected (issue 18).
    pub interaction: crate::interact::Interaction,
    /// The process responsible for the task until its monitor claims it.
    pub owner: ProcessIdentity,
    pub created_at: i64,
    /// Its readiness condition (issue 16).
    pub ready: Option<ReadySpec>,
    /// The effective confinement (`None`: unconfined, as asked).
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// The engine's name (`executor/`).
    pub executor: Engine,
    /// Its group, label, dependencies and delay (issue 21).
    pub queue: super::groups::QueueSpec,
}

/// What supervision needs to know about a live task.
#[derive(Clone, Debug)]
pub struct LiveTask {
    pub id: TaskId,
    pub status: Status,
    /// The process that owns the task: its monitor.
    pub owner: Option<ProcessIdentity>,
    /// The task's shell (leader of its process group).
    pub leader: Option<ProcessIdentity>,
    pub cgroup: Option<PathBuf>,
    pub kill_grace_ms: Option<u64>,
    /// The engine that runs it, and its handle there (a Slurm job id).
    pub executor: Engine,
    pub job_id: Option<String>,
    /// The monitor holds the task's tree stopped (issue 21, `store/pause.rs`):
    /// its answer to `paused`, so a pause or resume it was not told of is
    /// seen and told again.
    pub held: bool,
}

/// A terminal transition and what goes with it into the outbox.
#[derive(Clone, Debug)]
pub struct FinishRecord {
    pub end: End,
    pub finished_at: i64,
    pub preview: String,
    pub output_truncated: bool,
    pub dropped_bytes: u64,
}

impl<'a> From<&'a FinishRecord> for super::outbox::Entry<'a> {
    fn from(record: &'a FinishRecord) -> Self {
        super::outbox::Entry {
            preview: &record.preview,
            truncated: record.output_truncated,
            recorded_at: record.finished_at,
        }
    }
}

impl Store {
    /// Records a new task. A task that may queue (issue 21) is recorded in
    /// `queued` and the scheduling pass runs in the same transaction: it
    /// leaves as `starting` if its turn is now (a free slot in its group
    /// and under the store-wide `limit`, dependencies done, no delay, the
    /// group not paused), and it may hand other queued tasks their turn
    /// (returned: their monitors must be told). A task that may not queue
    /// is refused with `LimitExceeded` when no slot is free. Count, insert
    /// and pass are one immediate transaction, so limits hold across
    /// processes. Returns the task as recorded.
    pub fn insert_task(
        &mut self,
        task: &NewTask,
        limit: u32,
    ) -> Result<(Task, super::groups::Scheduled)> {
        let env_keys = serde_json::to_string(&task.env_keys).unwrap_or_else(|_| "[]".into());
        let sandbox = task
            .sandbox
            .as_ref()
            .and_then(|s| serde_json::to_string(s).ok());
        let path = self.db_path.clone();
        let err = |source| super::store_error(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        crate::process::fault::stop_point("stop_in_write");
        let queue = &task.queue;
        super::groups::check_new(&tx, queue).map_err(|e| match e {
            super::groups::Refused::Error(source) => err(source),
            super::groups::Refused::Because(e) => e,
        })?;
        if !queue.may_queue {
            super::groups::check_free_slot(&tx, &queue.group, limit).map_err(|e| match e {
                super::groups::Refused::Error(source) => err(source),
                super::groups::Refused::Because(e) => e,
            })?;
        }
        let home = &self.home;
        let ready = task.ready.as_ref().map(|r| r.condition.stored());
        let ids = |list: &[TaskId]| {
            (!list.is_empty()).then(|| {
                serde_json::to_string(&list.iter().map(TaskId::as_str).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
        };
        let status = if queue.may_queue {
            "queued"
        } else {
            "starting"
        };
        tx.execute(
            "INSERT INTO tasks (task_id, record_version, session, command, cwd, env_keys, status, \
             owner_pid, owner_start, boot_id, created_at, timeout_ms, idle_timeout_ms, max_output, notify, ns, \
             ready_kind, ready_value, ready_timeout_ms, ready_kill, io, sandbox, executor, \
             group_name, label, after_ok, after_any, start_at, queued_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, \
             ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29)",
            params![
                task.id.as_str(),
                RECORD_VERSION,
                task.session,
                task.command,
                path_text(&task.cwd),
                env_keys,
                status,
                task.owner.pid,
                task.owner.start_ticks as i64,
                task.owner.boot_id,
                task.created_at,
                task.timeout_ms.map(|v| v as i64),
                task.idle_timeout_ms.map(|v| v as i64),
                task.max_output as i64,
                task.notify,
                // The pid namespace both the monitor's and the shell's
                // pids are numbers in (the monitor records the shell from
                // the namespace it was started in).
                task.owner.pid_ns,
                ready.as_ref().map(|r| r.0),
                ready.as_ref().map(|r| r.1.clone()),
                task.ready.as_ref().map(|r| r.timeout_ms as i64),
                task.ready.as_ref().is_some_and(|r| r.kill_if_not_ready),
                task.interaction.stored(),
                sandbox,
                task.executor.as_str(),
                queue.group,
                queue.label,
                ids(&queue.after),
                ids(&queue.after_any),
                queue.start_at,
                queue.may_queue.then_some(task.created_at),
            ],
        )
        .map_err(err)?;
        let scheduled = if queue.may_queue {
            super::groups::remember_limit(&tx, limit).map_err(err)?;
            super::groups::schedule_in(&tx, limit, crate::clock::now_ms()).map_err(err)?
        } else {
            super::groups::Scheduled::default()
        };
        let recorded = tx
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?1"),
                params![task.id.as_str()],
                |r| task_from_row(home, r),
            )
            .map_err(err)?;
        tx.commit().map_err(err)?;
        // This build just wrote the row, so it can read it.
        let recorded = recorded.ok_or_else(|| Error::NewerRecord(task.id.clone()))?;
        Ok((recorded, scheduled))
    }

    /// Records the started shell. Returns the status after the update
    /// (`running`, or `killing` if a kill arrived during the start) and the
    /// task's limits, or `None` if the task is no longer live.
    pub fn mark_running(
        &self,
        id: &TaskId,
        leader: &ProcessIdentity,
        cgroup: Option<&Path>,
        started_at: i64,
    ) -> Result<Option<StartedTask>> {
        self.conn
            .query_row(
                "UPDATE tasks SET pid = ?2, pid_start = ?3, cgroup = ?4, started_at = ?5, \
                 status = CASE status WHEN 'starting' THEN 'running' ELSE status END \
                 WHERE task_id = ?1 AND status IN ('starting','killing') \
                 RETURNING status, max_output, timeout_ms, idle_timeout_ms, ready_kind, \
                 ready_value, ready_timeout_ms, ready_kill, ready_outcome",
                params![
                    id.as_str(),
                    leader.pid,
                    leader.start_ticks as i64,
                    cgroup.map(path_text),
                    started_at
                ],
                |r| {
                    Ok(StartedTask {
                        status: Status::from_stored(&r.get::<_, String>(0)?),
                        max_output: r.get::<_, i64>(1)?.max(0) as u64,
                        timeout_ms: opt_u64(r.get(2)?),
                        idle_timeout_ms: opt_u64(r.get(3)?),
                        ready: pending_ready(
                            ReadyCondition::from_stored(
                                r.get::<_, Option<String>>(4)?.as_deref(),
                                r.get(5)?,
                            ),
                            opt_u64(r.get(6)?),
                            r.get(7)?,
                            r.get::<_, Option<String>>(8)?,
                        ),
                    })
                },
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Marks a live task `killing` with the grace its monitor should give.
    /// False if the task is already terminal.
    pub fn request_kill(&self, id: &TaskId, grace_ms: u64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE tasks SET status = 'killing', kill_grace_ms = ?2 \
                     WHERE task_id = ?1 AND status IN {LIVE}"
                ),
                params![id.as_str(), grace_ms as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }

    /// Records the end of a live task and, if it notifies, its completion.
    /// False (and nothing written) if the task was already terminal.
    ///
    /// A full disk must not leave a finished task "running": while the
    /// commit fails for lack of space, ballast slices are released.
    pub fn finish(&mut self, id: &TaskId, record: &FinishRecord) -> Result<bool> {
        loop {
            match self.try_finish(id, record) {
                Err(Error::Store { source, .. })
                    if is_disk_full(&source) && super::home::release_ballast(&self.home) => {}
                other => return other,
            }
        }
    }

    fn try_finish(&mut self, id: &TaskId, record: &FinishRecord) -> Result<bool> {
        let path = self.db_path.clone();
        let err = |source| super::store_error(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let ended = finish_in(&tx, id, record).map_err(err)?;
        if ended {
            tx.commit().map_err(err)?;
        }
        Ok(ended)
    }

    /// Records how many output bytes the cap has dropped so far.
    pub fn set_dropped_bytes(&self, id: &TaskId, dropped: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE tasks SET dropped_bytes = ?2 WHERE task_id = ?1",
                params![id.as_str(), dropped as i64],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Turns on completion delivery; if the task already ended and has no
    /// completion yet, records one now.
    ///
    /// The check and the insert are one transaction: a task that ends while
    /// it is being promoted either sees `notify` set (its monitor records
    /// the completion) or is seen here as ended (the completion is recorded
    /// here), never neither.
    pub fn set_notify(&mut self, id: &TaskId) -> Result<()> {
        let (out, err_path) = (self.stdout_path(id), self.stderr_path(id));
        let path = self.db_path.clone();
        let err = |source| super::store_error(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // session, status, finished_at, dropped_bytes, io
        type Row = (String, String, Option<i64>, i64, Option<String>);
        let row: Option<Row> = tx
            .query_row(
                "UPDATE tasks SET notify = 1 WHERE task_id = ?1 \
                 RETURNING session, status, finished_at, dropped_bytes, io",
                params![id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((session, status, finished_at, dropped, io)) = row else {
            return Err(Error::TaskNotFound(id.to_string()));
        };
        if status.parse::<Status>().is_ok_and(Status::is_terminal) {
            let pty = crate::interact::Interaction::from_stored(io.as_deref()).pty();
            let tail = crate::compact::task_tail(&out, &err_path, super::PREVIEW_BYTES, pty)
                .unwrap_or_default();
            let entry = super::outbox::Entry {
                preview: &tail.text,
                truncated: tail.truncated || dropped > 0,
                recorded_at: finished_at.unwrap_or_else(crate::clock::now_ms),
            };
            super::outbox::insert(&tx, id, &session, entry).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// One task by id, from any session.
    pub fn get(&self, id: &TaskId) -> Result<Task> {
        let task = self
            .conn
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?1"),
                params![id.as_str()],
                |r| self.task_from_row(r),
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        match task {
            None => Err(Error::TaskNotFound(id.to_string())),
            Some(None) => Err(Error::NewerRecord(id.clone())),
            Some(Some(task)) => Ok(task),
        }
    }

    /// Ids starting with `bg-` + `hex` (already validated as lowercase hex,
    /// so it holds no LIKE wildcard), optionally of one session: at most
    /// `limit`, in id order, and how many match in all.
    pub fn ids_with_prefix(
        &self,
        hex: &str,
        session: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, usize)> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT task_id, count(*) OVER () FROM tasks \
                 WHERE task_id LIKE 'bg-' || ?1 || '%' AND (?2 IS NULL OR session = ?2) \
                 ORDER BY task_id LIMIT ?3",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![hex, session, limit], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(|e| self.db_err(e))?;
        let mut ids = Vec::new();
        let mut total = 0;
        for row in rows {
            let (id, count) = row.map_err(|e| self.db_err(e))?;
            ids.push(id);
            total = usize::try_from(count).unwrap_or(usize::MAX);
        }
        Ok((ids, total))
    }

    /// The id of the session's newest task, if it has any.
    pub fn newest_id(&self, session: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT task_id FROM tasks WHERE session = ?1 \
                 ORDER BY created_at DESC, rowid DESC LIMIT 1",
                params![session],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Tasks newest first, optionally of one session and one status. Rows
    /// written by a newer bgtask are left out.
    pub fn list(&self, session: Option<&str>, status: Option<Status>) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR session = ?1) \
             AND (?2 IS NULL OR status = ?2) ORDER BY created_at DESC, rowid DESC"
        );
        self.tasks_of(&sql, params![session, status.map(Status::as_str)])
    }

    /// The tasks a query of `TASK_COLUMNS` finds, in its order; rows
    /// written by a newer bgtask are left out.
    fn tasks_of(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Task>> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params, |r| self.task_from_row(r))
            .map_err(|e| self.db_err(e))?;
        let mut tasks = Vec::new();
        for row in rows {
            if let Some(task) = row.map_err(|e| self.db_err(e))? {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    /// The session's live tasks (not the finished ones a full list reads).
    pub fn live_tasks(&self, session: &str) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE session = ?1 AND status IN {LIVE} \
             ORDER BY created_at DESC, rowid DESC"
        );
        self.tasks_of(&sql, params![session])
    }

    /// The tasks that may have changed since `since_ms`, newest first:
    /// every live one, and those created or finished at or after it (a
    /// finished task never changes again), with how many tasks there are in
    /// all (a count that differs from what the caller holds means some were
    /// deleted). Both in one read transaction.
    pub fn list_since(&self, session: Option<&str>, since_ms: i64) -> Result<(Vec<Task>, u64)> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| self.db_err(e))?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE (?1 IS NULL OR session = ?1) \
             AND (status IN {LIVE} OR created_at >= ?2 OR finished_at >= ?2) \
             ORDER BY created_at DESC, rowid DESC"
        );
        let mut tasks = Vec::new();
        let total: i64;
        {
            let mut stmt = tx.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map(params![session, since_ms], |r| self.task_from_row(r))
                .map_err(|e| self.db_err(e))?;
            for row in rows {
                if let Some(task) = row.map_err(|e| self.db_err(e))? {
                    tasks.push(task);
                }
            }
            total = tx
                .query_row(
                    "SELECT count(*) FROM tasks WHERE (?1 IS NULL OR session = ?1) \
                     AND record_version <= ?2",
                    params![session, RECORD_VERSION],
                    |r| r.get(0),
                )
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().map_err(|e| self.db_err(e))?;
        Ok((tasks, total.max(0) as u64))
    }

    /// Supervision data of one task if it is live.
    pub fn live(&self, id: &TaskId) -> Result<Option<LiveTask>> {
        Ok(self.live_where("task_id = ?1", params![id.as_str()])?.pop())
    }

    /// Supervision data of every live task.
    pub fn all_live(&self) -> Result<Vec<LiveTask>> {
        self.live_where("1", params![])
    }

    /// Supervision data of the live tasks of one session.
    pub fn live_in_session(&self, session: &str) -> Result<Vec<LiveTask>> {
        self.live_where("session = ?1", params![session])
    }

    fn live_where(&self, filter: &str, args: impl rusqlite::Params) -> Result<Vec<LiveTask>> {
        let sql = format!(
            "SELECT task_id, status, owner_pid, owner_start, pid, pid_start, boot_id, cgroup, \
             kill_grace_ms, ns, executor, job_id, held FROM tasks WHERE status IN {LIVE} AND record_version <= {RECORD_VERSION} AND {filter}"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(args, |r| {
                let boot_id: Option<String> = r.get(6)?;
                let pid_ns: Option<String> = r.get(9)?;
                let identity = |pid: Option<u32>, start: Option<i64>| match (pid, start, &boot_id) {
                    (Some(pid), Some(start), Some(boot)) => Some(ProcessIdentity {
                        pid,
                        start_ticks: start as u64,
                        boot_id: boot.clone(),
                        pid_ns: pid_ns.clone().unwrap_or_default(),
                    }),
                    _ => None,
                };
                let id: String = r.get(0)?;
                let status: String = r.get(1)?;
                Ok(LiveTask {
                    id: TaskId::try_from(id).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?,
                    status: Status::from_stored(&status),
                    owner: identity(r.get(2)?, r.get(3)?),
                    leader: identity(r.get(4)?, r.get(5)?),
                    cgroup: r.get::<_, Option<String>>(7)?.map(PathBuf::from),
                    kill_grace_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
                    executor: engine_from_stored(&r.get::<_, String>(10)?),
                    job_id: r.get(11)?,
                    held: r.get(12)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Deletes up to `batch` terminal tasks that finished before `cutoff`
    /// and have no unacknowledged completion (their acknowledged completion
    /// goes with them). Returns the ids deleted; their output files are
    /// the caller's to remove, now that no record points to them.
    ///
    /// "Is it collectable" and the delete are one statement, so one atomic
    /// step: a promotion that records an unacknowledged completion is
    /// either committed before (and the task is kept) or finds the task
    /// gone (and answers that it does not exist). Checking first and
    /// deleting later lost the completions promoted in between.
    pub fn collect_batch(&self, cutoff: i64, batch: u32) -> Result<Vec<TaskId>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "DELETE FROM tasks WHERE task_id IN ( \
                 SELECT t.task_id FROM tasks t \
                 WHERE t.status NOT IN {LIVE} AND t.record_version <= {RECORD_VERSION} \
                 AND t.finished_at IS NOT NULL AND t.finished_at < ?1 \
                 AND NOT EXISTS (SELECT 1 FROM completions c \
                                 WHERE c.task_id = t.task_id AND c.acked_at IS NULL) \
                 AND NOT EXISTS (SELECT 1 FROM notifications n \
                                 WHERE n.task_id = t.task_id AND n.acked_at IS NULL) \
                 LIMIT ?2) \
                 RETURNING task_id"
            ))
            .map_err(|e| self.db_err(e))?;
        let ids = stmt
            .query_map(params![cutoff, batch], |r| r.get::<_, String>(0))
            .map_err(|e| self.db_err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db_err(e))?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.db_err(e))
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    fn task_from_row(&self, r: &Row<'_>) -> rusqlite::Result<Option<Task>> {
        task_from_row(&self.home, r)
    }
}

/// Records the end of a live task inside `tx` (with its completion, a
/// pending readiness's `ready_failed`, the end of its watches). False (and
/// nothing written) if the task was already terminal.
pub(super) fn finish_in(
    tx: &rusqlite::Transaction<'_>,
    id: &TaskId,
    record: &FinishRecord,
) -> rusqlite::Result<bool> {
    let notify: Option<(String, bool)> = tx
        .query_row(
            &format!(
                "UPDATE tasks SET status = ?2, exit_code = ?3, signal = ?4, reason = ?5, \
                 finished_at = ?6, dropped_bytes = max(dropped_bytes, ?7) \
                 WHERE task_id = ?1 AND status IN {LIVE} RETURNING session, notify"
            ),
            params![
                id.as_str(),
                record.end.status.as_str(),
                record.end.exit_code,
                record.end.signal,
                record.end.reason,
                record.finished_at,
                record.dropped_bytes as i64,
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((session, notify)) = notify else {
        return Ok(false);
    };
    // A readiness still pending fails now, in the same transaction as
    // the end it reports (and before its completion, in outbox order).
    super::notify::fail_pending_ready(tx, id, &session, notify, record)?;
    if notify {
        super::outbox::insert(tx, id, &session, record.into())?;
    }
    // The task's watches end with it.
    tx.execute(
        "UPDATE watches SET ended_at = ?2 WHERE task_id = ?1 AND ended_at IS NULL",
        params![id.as_str(), record.finished_at],
    )?;
    Ok(true)
}

/// Maps a row to a task; `None` for a row from a newer bgtask.
fn task_from_row(home: &Path, r: &Row<'_>) -> rusqlite::Result<Option<Task>> {
    if r.get::<_, i64>(1)? > RECORD_VERSION {
        return Ok(None);
    }
    let id: String = r.get(0)?;
    let task_id: TaskId = id.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let status: String = r.get(6)?;
    let env_keys: String = r.get(5)?;
    let started_at: Option<i64> = r.get(12)?;
    let finished_at: Option<i64> = r.get(13)?;
    let interaction =
        crate::interact::Interaction::from_stored(r.get::<_, Option<String>>(27)?.as_deref());
    Ok(Some(Task {
        stdout_path: super::stdout_path(home, &task_id),
        stderr_path: super::stderr_path(home, &task_id),
        task_id,
        session: r.get(2)?,
        command: r.get(3)?,
        cwd: PathBuf::from(r.get::<_, String>(4)?),
        status: Status::from_stored(&status),
        exit_code: r.get(7)?,
        signal: r.get(8)?,
        reason: r.get(9)?,
        pid: r.get(10)?,
        created_at: r.get(11)?,
        started_at,
        finished_at,
        duration_ms: match (started_at, finished_at) {
            (Some(s), Some(f)) => Some((f - s).max(0) as u64),
            _ => None,
        },
        timeout_ms: opt_u64(r.get(14)?),
        idle_timeout_ms: opt_u64(r.get(15)?),
        max_output_bytes: r.get::<_, i64>(16)?.max(0) as u64,
        notify: r.get(17)?,
        env_keys: serde_json::from_str(&env_keys).unwrap_or_default(),
        output_dropped_bytes: r.get::<_, i64>(18)?.max(0) as u64,
        monitor_pid: r.get(19)?,
        ready_at: r.get(24)?,
        readiness: {
            let outcome: Option<String> = r.get(25)?;
            let detail: Option<String> = r.get(26)?;
            let timeout_ms = opt_u64(r.get(22)?).unwrap_or(crate::ready::DEFAULT_READY_TIMEOUT_MS);
            let kill_if_not_ready: bool = r.get::<_, Option<bool>>(23)?.unwrap_or(false);
            ReadyCondition::from_stored(r.get::<_, Option<String>>(20)?.as_deref(), r.get(21)?).map(
                |condition| Readiness {
                    condition,
                    timeout_ms,
                    kill_if_not_ready,
                    outcome: outcome.as_deref().and_then(ReadyOutcome::from_stored),
                    detail,
                },
            )
        },
        stdin: interaction == crate::interact::Interaction::Stdin,
        pty: interaction.pty(),
        signals_sent: r
            .get::<_, Option<String>>(28)?
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default(),
        sandbox: r
            .get::<_, Option<String>>(29)?
            .and_then(|text| serde_json::from_str(&text).ok()),
        executor: engine_from_stored(&r.get::<_, String>(30)?)
            .as_str()
            .to_owned(),
        job_id: r.get(31)?,
        // Only a paused task is paused since a time.
        paused_at: r
            .get::<_, Option<i64>>(32)?
            .filter(|_| status == Status::Paused.as_str()),
        group: r.get(33)?,
        label: r.get(34)?,
    }))
}

/// The readiness a starting monitor must evaluate: the stored condition,
/// unless its outcome is already recorded.
fn pending_ready(
    condition: Option<ReadyCondition>,
    timeout_ms: Option<u64>,
    kill: Option<bool>,
    outcome: Option<String>,
) -> Option<ReadySpec> {
    if outcome.is_some() {
        return None;
    }
    Some(ReadySpec {
        condition: condition?,
        timeout_ms: timeout_ms.unwrap_or(crate::ready::DEFAULT_READY_TIMEOUT_MS),
        kill_if_not_ready: kill.unwrap_or(false),
    })
}

/// A stored engine name. A name this build does not know (a newer engine
/// writes a newer `record_version`, skipped before this) reads as local.
pub(crate) fn engine_from_stored(text: &str) -> Engine {
    text.parse().unwrap_or_default()
}

/// A stored optional count or duration (never negative when bgtask wrote it).
fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|v| v.max(0) as u64)
}

pub(super) fn is_disk_full(err: &rusqlite::Error) -> bool {
    matches!(err, rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull)
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_set_of_live_statuses_is_written_from_status() {
        assert_eq!(
            LIVE.to_string(),
            "('queued','starting','running','paused','killing')"
        );
    }
}
