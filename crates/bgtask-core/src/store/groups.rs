//! Queues (issue 21): groups, and the scheduling pass that hands queued
//! tasks their turn.
//!
//! A task that may queue is recorded `queued`; it leaves the queue only
//! through [`schedule_in`], one immediate transaction that counts the
//! slots held in each group and in the whole store, checks each queued
//! task's dependencies, delay and group, and marks those whose turn it is
//! `starting` (oldest first within a group). Because count and claim are
//! one transaction, concurrent processes never start a task twice nor
//! exceed a limit. Whoever records an end (or raises a limit, resumes a
//! group, inserts a task) runs the pass; the claimed tasks' monitors are
//! then told to start (`control::schedule`).

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;

use super::schema::RECORD_VERSION;
use super::tasks::{finish_in, FinishRecord};
use super::Store;
use crate::error::{Error, Result};
use crate::task::{Status, TaskId, DEFAULT_GROUP};

/// Longest group name.
const MAX_GROUP_NAME: usize = 64;
/// Longest label.
pub const MAX_LABEL_BYTES: usize = 256;
/// The `meta` key holding the store-wide running limit the last starter
/// used (monitors and reconcile, which have no settings, schedule with it).
const LIMIT_KEY: &str = "max_running";
/// A claim whose monitor has not started the task after this long was
/// probably never told (its teller died): it is told again.
pub const STALE_CLAIM_MS: i64 = 500;

/// How a new task queues: its group, label, dependencies and delay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    pub group: String,
    pub label: Option<String>,
    /// Tasks that must complete successfully first (`--after`).
    pub after: Vec<TaskId>,
    /// Tasks that must end, however, first (`--after-any`).
    pub after_any: Vec<TaskId>,
    /// Not before this time (unix ms; `--delay`).
    pub start_at: Option<i64>,
    /// False: refuse the task when no slot is free (`--no-queue`, and
    /// engines that queue elsewhere, Slurm).
    pub may_queue: bool,
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            group: DEFAULT_GROUP.to_owned(),
            label: None,
            after: Vec::new(),
            after_any: Vec::new(),
            start_at: None,
            may_queue: true,
        }
    }
}

/// What one scheduling pass decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scheduled {
    /// Claimed: now `starting`; their monitors must be told.
    pub started: Vec<TaskId>,
    /// Recorded `failed` because a dependency failed; their monitors
    /// must be told to exit.
    pub failed: Vec<TaskId>,
}

impl Scheduled {
    /// Every task whose monitor must hear of the pass.
    pub fn to_tell(&self) -> impl Iterator<Item = &TaskId> {
        self.started.iter().chain(&self.failed)
    }
}

/// What [`Store::adopt_queued`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The new owner is recorded.
    Adopted,
    /// Another process changed the owner first (it adopted the task), or
    /// the task ended or started meanwhile: nothing to do here.
    Taken,
    /// Not a task that waited in a queue and never started.
    NotAdoptable,
}

/// A group as `group list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    /// Its own limit; `None`: the store-wide limit (the default group's
    /// unless set).
    pub parallel: Option<u32>,
    pub paused: bool,
    /// Its tasks holding a slot now, and queued.
    pub running: u64,
    pub queued: u64,
}

/// Checks a group name: letters, digits, `-`, `_`, `.`, at most 64 bytes.
pub fn validate_group_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid group name {name:?}: use 1 to {MAX_GROUP_NAME} letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Checks a parallelism: at least 1.
pub fn validate_parallel(parallel: u32) -> Result<()> {
    if parallel == 0 {
        return Err(Error::InvalidArgument(
            "a group's parallel must be at least 1 (pause the group to start nothing)".into(),
        ));
    }
    Ok(())
}

/// Checks a label: at most 256 bytes, one line.
pub fn validate_label(label: &str) -> Result<()> {
    if label.len() > MAX_LABEL_BYTES || label.contains(['\n', '\r', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "a label is one line of at most {MAX_LABEL_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Why a new task cannot be recorded: a refusal to report, or the store
/// failing.
pub(super) enum Refused {
    Because(Error),
    Error(rusqlite::Error),
}

impl From<rusqlite::Error> for Refused {
    fn from(e: rusqlite::Error) -> Self {
        Refused::Error(e)
    }
}

/// Checks, inside the insert's transaction, that a new task's group and
/// dependencies exist.
pub(super) fn check_new(tx: &Transaction<'_>, spec: &QueueSpec) -> Result<(), Refused> {
    if spec.group != DEFAULT_GROUP && group_row(tx, &spec.group)?.is_none() {
        return Err(Refused::Because(Error::GroupNotFound(spec.group.clone())));
    }
    for dep in spec.after.iter().chain(&spec.after_any) {
        let found: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM tasks WHERE task_id = ?1",
                params![dep.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        if found.is_none() {
            return Err(Refused::Because(Error::TaskNotFound(format!(
                "{dep} (a dependency of the new task)"
            ))));
        }
    }
    Ok(())
}

/// For a task that may not queue: refuses it when its group or the store
/// has no free slot (or its group is paused).
pub(super) fn check_free_slot(
    tx: &Transaction<'_>,
    group: &str,
    limit: u32,
) -> Result<(), Refused> {
    let (parallel, paused) = group_row(tx, group)?.unwrap_or((None, false));
    let holding = holding_counts(tx)?;
    let total: u32 = holding.values().sum();
    let in_group = holding.get(group).copied().unwrap_or(0);
    if total >= limit {
        return Err(Refused::Because(Error::LimitExceeded { limit }));
    }
    let cap = parallel.unwrap_or(limit);
    if in_group >= cap || paused {
        return Err(Refused::Because(Error::LimitExceeded { limit: cap }));
    }
    Ok(())
}

fn group_row(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<Option<(Option<u32>, bool)>> {
    tx.query_row(
        "SELECT parallel, paused FROM groups WHERE name = ?1",
        params![name],
        |r| Ok((r.get::<_, Option<u32>>(0)?, r.get::<_, bool>(1)?)),
    )
    .optional()
}

/// The tasks holding a slot, per group.
fn holding_counts(tx: &Transaction<'_>) -> rusqlite::Result<HashMap<String, u32>> {
    let holding: Vec<String> = Status::ALL
        .into_iter()
        .filter(|s| s.holds_slot())
        .map(|s| format!("'{s}'"))
        .collect();
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT group_name, count(*) FROM tasks WHERE status IN ({}) GROUP BY group_name",
        holding.join(",")
    ))?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
    rows.collect()
}

/// Remembers the store-wide limit a starter used, for the passes of
/// processes that have no settings (monitors, reconcile).
pub(super) fn remember_limit(tx: &Transaction<'_>, limit: u32) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT(key) DO UPDATE SET value = excluded.value WHERE value != excluded.value",
        params![LIMIT_KEY, limit.to_string()],
    )?;
    Ok(())
}

fn remembered_limit(tx: &Transaction<'_>) -> rusqlite::Result<u32> {
    let value: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![LIMIT_KEY],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::config::DEFAULT_MAX_RUNNING))
}

/// Where a queued task's dependencies stand.
enum Deps {
    Done,
    Waiting,
    /// This one failed (or is gone) and the task needed it to complete.
    Failed(String, &'static str),
}

fn deps_state(
    tx: &Transaction<'_>,
    after_ok: Option<&str>,
    after_any: Option<&str>,
) -> rusqlite::Result<Deps> {
    let list = |text: Option<&str>| -> Vec<String> {
        text.and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default()
    };
    let status_of = |id: &str| -> rusqlite::Result<Option<Status>> {
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM tasks WHERE task_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(status.as_deref().map(Status::from_stored))
    };
    let mut waiting = false;
    for id in list(after_ok) {
        match status_of(&id)? {
            Some(Status::Completed) => {}
            Some(s) if s.is_live() => waiting = true,
            Some(_) => return Ok(Deps::Failed(id, "failed")),
            None => return Ok(Deps::Failed(id, "no longer exists")),
        }
    }
    for id in list(after_any) {
        // A dependency collected by gc had ended.
        if status_of(&id)?.is_some_and(Status::is_live) {
            waiting = true;
        }
    }
    Ok(if waiting { Deps::Waiting } else { Deps::Done })
}

/// The scheduling pass, inside `tx`: claims every queued task whose turn
/// it is (group by group, oldest first) and fails those a failed
/// dependency can never let start. `limit` is the store-wide limit.
pub(super) fn schedule_in(
    tx: &Transaction<'_>,
    limit: u32,
    now: i64,
) -> rusqlite::Result<Scheduled> {
    let mut scheduled = Scheduled::default();
    let groups: HashMap<String, (Option<u32>, bool)> = {
        let mut stmt = tx.prepare_cached("SELECT name, parallel, paused FROM groups")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, Option<u32>>(1)?, r.get::<_, bool>(2)?),
            ))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    // A failure can fail, or free, tasks read before it in this pass:
    // read again until a pass fails nothing.
    loop {
        let mut holding = holding_counts(tx)?;
        let mut total: u32 = holding.values().sum();
        let queued: Vec<QueuedRow> = {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT task_id, group_name, after_ok, after_any, start_at FROM tasks \
                 WHERE status = 'queued' AND record_version <= {RECORD_VERSION} ORDER BY rowid"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut failed_any = false;
        for (id, group, after_ok, after_any, start_at) in queued {
            let (parallel, paused) = groups.get(&group).copied().unwrap_or((None, false));
            let has_deps = after_ok.is_some() || after_any.is_some();
            let in_group = holding.get(&group).copied().unwrap_or(0);
            let full = paused || total >= limit || in_group >= parallel.unwrap_or(limit);
            if full && !has_deps {
                continue;
            }
            match deps_state(tx, after_ok.as_deref(), after_any.as_deref())? {
                Deps::Failed(dep, why) => {
                    let record = FinishRecord {
                        end: crate::task::Outcome::Lost(format!("dependency {dep} {why}"))
                            .into_end(),
                        finished_at: now,
                        preview: String::new(),
                        output_truncated: false,
                        dropped_bytes: 0,
                    };
                    if finish_in(tx, &parse(&id)?, &record)? {
                        scheduled.failed.push(parse(&id)?);
                        failed_any = true;
                    }
                    continue;
                }
                Deps::Waiting => continue,
                Deps::Done => {}
            }
            if full || start_at.is_some_and(|at| at > now) {
                continue;
            }
            let claimed = tx.execute(
                "UPDATE tasks SET status = 'starting' WHERE task_id = ?1 AND status = 'queued'",
                params![id],
            )?;
            if claimed == 1 {
                *holding.entry(group).or_default() += 1;
                total += 1;
                scheduled.started.push(parse(&id)?);
            }
        }
        if !failed_any {
            return Ok(scheduled);
        }
    }
}

/// A queued task as the pass reads it: id, group, `after_ok`, `after_any`,
/// `start_at`.
type QueuedRow = (String, String, Option<String>, Option<String>, Option<i64>);

fn parse(id: &str) -> rusqlite::Result<TaskId> {
    id.parse().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Store {
    /// Runs the scheduling pass (see the module doc) with the store-wide
    /// limit the last starter used. Cheap when nothing is queued: one read.
    pub fn schedule(&mut self) -> Result<Scheduled> {
        if !self.has_queued()? {
            return Ok(Scheduled::default());
        }
        self.with_write(|tx| {
            let limit = remembered_limit(tx)?;
            schedule_in(tx, limit, crate::clock::now_ms())
        })
    }

    /// Records a live task's end and runs the scheduling pass in the same
    /// `IMMEDIATE` transaction: one commit instead of two on the hand-off
    /// path (issue 21), and no moment where the slot is free but nobody
    /// has claimed it. `None` (nothing written) if the task was already
    /// terminal. A full disk is retried once the ballast is released, as
    /// [`Store::finish`] does.
    pub fn finish_and_schedule(
        &mut self,
        id: &TaskId,
        record: &FinishRecord,
    ) -> Result<Option<Scheduled>> {
        loop {
            let path = self.db_path.clone();
            let err = |source| super::store_error(&path, source);
            let attempt = (|| {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)?;
                if !finish_in(&tx, id, record)? {
                    return Ok(None);
                }
                let queued: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'queued')",
                    [],
                    |r| r.get(0),
                )?;
                let scheduled = match queued {
                    true => {
                        let limit = remembered_limit(&tx)?;
                        schedule_in(&tx, limit, crate::clock::now_ms())?
                    }
                    false => Scheduled::default(),
                };
                tx.commit()?;
                Ok(Some(scheduled))
            })();
            match attempt {
                Err(source)
                    if super::tasks::is_disk_full(&source)
                        && super::home::release_ballast(&self.home) => {}
                other => return other.map_err(err),
            }
        }
    }

    /// Makes `owner` the owner of a queued task whose recorded owner is
    /// `expected` (a dead monitor, or an adopter that died), in one
    /// transaction (compare and set), so two processes reconciling at once
    /// adopt it once. Only a local task that queued and never started
    /// (`queued`, or `starting` with no shell: a claim its dead monitor
    /// never heard of) qualifies; the caller checks the rest (no `--env`
    /// keys, no sandbox, no output files).
    pub fn adopt_queued(
        &mut self,
        id: &TaskId,
        expected: &crate::process::ProcessIdentity,
        owner: &crate::process::ProcessIdentity,
    ) -> Result<Adoption> {
        self.with_write(|tx| {
            // (status, never started in a queue here, owned by `expected`)
            let row: Option<(String, bool, bool)> = tx
                .query_row(
                    "SELECT status, \
                     pid IS NULL AND queued_at IS NOT NULL AND executor = ?2, \
                     owner_pid IS ?3 AND owner_start IS ?4 AND boot_id IS ?5 \
                     FROM tasks WHERE task_id = ?1",
                    params![
                        id.as_str(),
                        crate::config::Engine::Local.as_str(),
                        expected.pid,
                        expected.start_ticks as i64,
                        expected.boot_id,
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((status, queued_here, owned)) = row else {
                return Ok(Adoption::NotAdoptable);
            };
            let status = Status::from_stored(&status);
            if !status.is_live() {
                return Ok(Adoption::Taken);
            }
            if !matches!(status, Status::Queued | Status::Starting) || !queued_here {
                return Ok(Adoption::NotAdoptable);
            }
            if !owned {
                return Ok(Adoption::Taken);
            }
            tx.execute(
                "UPDATE tasks SET owner_pid = ?2, owner_start = ?3, boot_id = ?4, ns = ?5 \
                 WHERE task_id = ?1",
                params![
                    id.as_str(),
                    owner.pid,
                    owner.start_ticks as i64,
                    owner.boot_id,
                    owner.pid_ns,
                ],
            )?;
            Ok(Adoption::Adopted)
        })
    }

    /// When a task was queued (`None`: it never could queue).
    pub fn queued_at(&self, id: &TaskId) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT queued_at FROM tasks WHERE task_id = ?1",
                params![id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.db_err(e))
    }

    /// Whether any task waits in a queue.
    pub fn has_queued(&self) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE status = 'queued')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err(e))
    }

    /// Claimed tasks whose monitor has not started them `STALE_CLAIM_MS`
    /// after their claim was possible: their teller may have died before
    /// telling them. Telling a monitor twice is harmless.
    pub fn stale_claims(&self, now: i64) -> Result<Vec<TaskId>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT task_id FROM tasks WHERE status = 'starting' AND pid IS NULL \
                 AND queued_at IS NOT NULL AND queued_at < ?1",
            )
            .map_err(|e| self.db_err(e))?;
        let ids = stmt
            .query_map(params![now - STALE_CLAIM_MS], |r| r.get::<_, String>(0))
            .map_err(|e| self.db_err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db_err(e))?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// A task's status and the time it may start (for its waiting monitor).
    pub fn queue_state(&self, id: &TaskId) -> Result<Option<(Status, Option<i64>)>> {
        self.conn
            .query_row(
                "SELECT status, start_at FROM tasks WHERE task_id = ?1",
                params![id.as_str()],
                |r| Ok((Status::from_stored(&r.get::<_, String>(0)?), r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Ends a task that is still queued (`killed`, never started). False if
    /// it is not queued any more (its turn came meanwhile).
    pub fn kill_queued(&mut self, id: &TaskId, now: i64) -> Result<bool> {
        self.with_write(|tx| {
            let queued: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM tasks WHERE task_id = ?1 AND status = 'queued'",
                    params![id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if queued.is_none() {
                return Ok(false);
            }
            let record = FinishRecord {
                end: crate::task::End {
                    status: Status::Killed,
                    exit_code: None,
                    signal: None,
                    reason: Some("killed on request while queued".into()),
                },
                finished_at: now,
                preview: String::new(),
                output_truncated: false,
                dropped_bytes: 0,
            };
            finish_in(tx, id, &record)
        })
    }

    /// Adds a group. The default group always exists.
    pub fn add_group(&mut self, name: &str, parallel: Option<u32>) -> Result<()> {
        validate_group_name(name)?;
        if let Some(p) = parallel {
            validate_parallel(p)?;
        }
        let exists = || Error::GroupInUse(format!("group {name:?} exists already"));
        if name == DEFAULT_GROUP {
            return Err(exists());
        }
        let added = self.with_write(|tx| {
            tx.execute(
                "INSERT OR IGNORE INTO groups (name, parallel, paused, created_at) VALUES (?1, ?2, 0, ?3)",
                params![name, parallel, crate::clock::now_ms()],
            )
        })?;
        if added == 0 {
            return Err(exists());
        }
        Ok(())
    }

    /// Sets a group's parallelism (the default group's too).
    pub fn set_group_parallel(&mut self, name: &str, parallel: u32) -> Result<()> {
        validate_group_name(name)?;
        validate_parallel(parallel)?;
        self.update_group(name, "parallel", parallel)
    }

    /// Pauses a group (it starts nothing new) or resumes it.
    pub fn set_group_paused(&mut self, name: &str, paused: bool) -> Result<()> {
        validate_group_name(name)?;
        self.update_group(name, "paused", u32::from(paused))
    }

    fn update_group(&mut self, name: &str, column: &'static str, value: u32) -> Result<()> {
        let changed = self.with_write(|tx| {
            if name == DEFAULT_GROUP {
                tx.execute(
                    "INSERT OR IGNORE INTO groups (name, parallel, paused, created_at) VALUES (?1, NULL, 0, ?2)",
                    params![name, crate::clock::now_ms()],
                )?;
            }
            tx.execute(
                &format!("UPDATE groups SET {column} = ?2 WHERE name = ?1"),
                params![name, value],
            )
        })?;
        if changed == 0 {
            return Err(Error::GroupNotFound(name.to_owned()));
        }
        Ok(())
    }

    /// Removes a group that has no live task. The default group stays.
    pub fn remove_group(&mut self, name: &str) -> Result<()> {
        validate_group_name(name)?;
        if name == DEFAULT_GROUP {
            return Err(Error::GroupInUse(
                "the default group cannot be removed".into(),
            ));
        }
        let live: Vec<String> = Status::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .map(|s| format!("'{s}'"))
            .collect();
        let outcome = self.with_write(|tx| {
            let busy: u64 = tx.query_row(
                &format!(
                    "SELECT count(*) FROM tasks WHERE group_name = ?1 AND status IN ({})",
                    live.join(",")
                ),
                params![name],
                |r| r.get(0),
            )?;
            if busy > 0 {
                return Ok(Err(busy));
            }
            Ok(Ok(tx.execute(
                "DELETE FROM groups WHERE name = ?1",
                params![name],
            )?))
        })?;
        match outcome {
            Err(busy) => Err(Error::GroupInUse(format!(
                "group {name:?} still has {busy} live task(s); kill them or wait for them first"
            ))),
            Ok(0) => Err(Error::GroupNotFound(name.to_owned())),
            Ok(_) => Ok(()),
        }
    }

    /// Every group, the default one first, with its counts.
    pub fn groups(&self) -> Result<Vec<Group>> {
        let holding: Vec<String> = Status::ALL
            .into_iter()
            .filter(|s| s.holds_slot())
            .map(|s| format!("'{s}'"))
            .collect();
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT g.name, g.parallel, g.paused, \
                 (SELECT count(*) FROM tasks t WHERE t.group_name = g.name AND t.status IN ({})), \
                 (SELECT count(*) FROM tasks t WHERE t.group_name = g.name AND t.status = 'queued') \
                 FROM (SELECT name, parallel, paused, created_at FROM groups \
                       UNION ALL SELECT ?1, NULL, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM groups WHERE name = ?1)) g \
                 ORDER BY g.name != ?1, g.name",
                holding.join(",")
            ))
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![DEFAULT_GROUP], |r| {
                Ok(Group {
                    name: r.get(0)?,
                    parallel: r.get(1)?,
                    paused: r.get(2)?,
                    running: r.get(3)?,
                    queued: r.get(4)?,
                })
            })
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    /// Deletes up to `batch` terminal tasks of `group` that finished before
    /// `cutoff` and have nothing unacknowledged (`clean --group`; the same
    /// one-statement rule as `collect_batch`). Returns the ids deleted.
    pub fn collect_group_batch(&self, group: &str, cutoff: i64, batch: u32) -> Result<Vec<TaskId>> {
        let live: Vec<String> = Status::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .map(|s| format!("'{s}'"))
            .collect();
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "DELETE FROM tasks WHERE task_id IN ( \
                 SELECT t.task_id FROM tasks t \
                 WHERE t.group_name = ?3 AND t.status NOT IN ({}) \
                 AND t.record_version <= {RECORD_VERSION} \
                 AND t.finished_at IS NOT NULL AND t.finished_at < ?1 \
                 AND NOT EXISTS (SELECT 1 FROM completions c \
                                 WHERE c.task_id = t.task_id AND c.acked_at IS NULL) \
                 AND NOT EXISTS (SELECT 1 FROM notifications n \
                                 WHERE n.task_id = t.task_id AND n.acked_at IS NULL) \
                 LIMIT ?2) \
                 RETURNING task_id",
                live.join(",")
            ))
            .map_err(|e| self.db_err(e))?;
        let ids = stmt
            .query_map(params![cutoff, batch, group], |r| r.get::<_, String>(0))
            .map_err(|e| self.db_err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.db_err(e))?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Runs `f` in one immediate transaction and commits what it returns.
    fn with_write<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let path = self.db_path.clone();
        let err = |source| super::store_error(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let value = f(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ProcessIdentity;
    use crate::store::{CacheSize, NewTask};

    fn new_task(spec: QueueSpec) -> NewTask {
        NewTask {
            id: TaskId::random(),
            session: "s".into(),
            command: "true".into(),
            cwd: "/".into(),
            env_keys: Vec::new(),
            timeout_ms: None,
            idle_timeout_ms: None,
            max_output: 1 << 20,
            notify: false,
            interaction: crate::interact::Interaction::None,
            owner: ProcessIdentity::of_child(std::process::id()).unwrap(),
            created_at: crate::clock::now_ms(),
            ready: None,
            sandbox: None,
            executor: crate::config::Engine::Local,
            queue: spec,
        }
    }

    fn in_group(group: &str) -> QueueSpec {
        QueueSpec {
            group: group.into(),
            ..QueueSpec::default()
        }
    }

    fn end(store: &mut Store, id: &TaskId, code: i32) {
        let record = FinishRecord {
            end: crate::task::Outcome::Exited(code).into_end(),
            finished_at: crate::clock::now_ms(),
            preview: String::new(),
            output_truncated: false,
            dropped_bytes: 0,
        };
        assert!(store.finish(id, &record).unwrap());
    }

    #[test]
    fn a_paused_group_starts_nothing_and_its_resume_hands_out_its_free_slots_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), CacheSize::Small).unwrap();
        store.add_group("g", Some(2)).unwrap();
        let (first, _) = store.insert_task(&new_task(in_group("g")), 64).unwrap();
        assert_eq!(first.status, Status::Starting, "a free slot: it starts");
        store.set_group_paused("g", true).unwrap();
        let queued: Vec<TaskId> = (0..3)
            .map(|_| {
                let (task, scheduled) = store.insert_task(&new_task(in_group("g")), 64).unwrap();
                assert_eq!(task.status, Status::Queued, "paused: it queues");
                assert_eq!(scheduled, Scheduled::default());
                task.task_id
            })
            .collect();
        end(&mut store, &first.task_id, 0);
        assert_eq!(store.schedule().unwrap(), Scheduled::default());
        store.set_group_paused("g", false).unwrap();
        let resumed = store.schedule().unwrap();
        assert_eq!(resumed.started, queued[..2], "two slots, oldest first");
        assert_eq!(
            store.schedule().unwrap(),
            Scheduled::default(),
            "exactly once"
        );
        end(&mut store, &queued[0], 0);
        assert_eq!(store.schedule().unwrap().started, queued[2..]);
    }

    #[test]
    fn the_store_wide_limit_holds_across_groups_and_a_failed_dependency_cascades() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), CacheSize::Small).unwrap();
        store.add_group("other", None).unwrap();
        let (a, _) = store
            .insert_task(&new_task(in_group("default")), 1)
            .unwrap();
        let (b, _) = store.insert_task(&new_task(in_group("other")), 1).unwrap();
        assert_eq!((a.status, b.status), (Status::Starting, Status::Queued));
        let after = |ids: Vec<TaskId>| QueueSpec {
            after: ids,
            ..QueueSpec::default()
        };
        let (c, _) = store
            .insert_task(&new_task(after(vec![a.task_id.clone()])), 1)
            .unwrap();
        let (d, _) = store
            .insert_task(&new_task(after(vec![c.task_id.clone()])), 1)
            .unwrap();
        end(&mut store, &a.task_id, 1);
        let scheduled = store.schedule().unwrap();
        assert_eq!(scheduled.started, std::slice::from_ref(&b.task_id));
        assert_eq!(scheduled.failed, [c.task_id.clone(), d.task_id.clone()]);
        let c = store.get(&c.task_id).unwrap();
        assert_eq!(c.reason, Some(format!("dependency {} failed", a.task_id)));
        assert_eq!(
            store.get(&d.task_id).unwrap().reason,
            Some(format!("dependency {} failed", c.task_id))
        );
    }
}
