//! What remote engines (a Slurm job today) record beyond a local task: the
//! job's handle, who watches it, and what the watcher saw. Every update is
//! one guarded statement, so two watchers, or a watcher and a starter,
//! never undo each other's work.

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::error::Result;
use crate::process::ProcessIdentity;
use crate::task::{Status, TaskId};

/// The `meta` key naming the store's Slurm watcher (`pid start boot`).
const WATCHER_KEY: &str = "slurm_watcher";

impl Store {
    /// Records the job id sbatch answered, once. False if the task already
    /// has one (or is gone).
    pub fn set_job_id(&self, id: &TaskId, job_id: &str) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET job_id = ?2 WHERE task_id = ?1 AND job_id IS NULL",
                params![id.as_str(), job_id],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }

    /// Records the job id sbatch answered and hands the task from its
    /// starter (`expected`) to the watcher (`owner`), in one statement.
    /// Returns the task's status after it (`None`: no longer live), so the
    /// starter sees a kill that arrived while sbatch ran.
    pub fn record_job(
        &self,
        id: &TaskId,
        job_id: &str,
        expected: &ProcessIdentity,
        owner: &ProcessIdentity,
    ) -> Result<Option<Status>> {
        self.conn
            .query_row(
                "UPDATE tasks SET job_id = ?2, \
                 owner_pid = CASE WHEN owner_pid IS ?6 AND owner_start IS ?7 THEN ?3 ELSE owner_pid END, \
                 owner_start = CASE WHEN owner_pid IS ?6 AND owner_start IS ?7 THEN ?4 ELSE owner_start END, \
                 boot_id = CASE WHEN owner_pid IS ?6 AND owner_start IS ?7 THEN ?5 ELSE boot_id END, \
                 ns = CASE WHEN owner_pid IS ?6 AND owner_start IS ?7 THEN ?8 ELSE ns END \
                 WHERE task_id = ?1 AND job_id IS NULL \
                 AND status IN ('starting','running','killing') RETURNING status",
                params![
                    id.as_str(),
                    job_id,
                    owner.pid,
                    owner.start_ticks as i64,
                    owner.boot_id,
                    expected.pid,
                    expected.start_ticks as i64,
                    owner.pid_ns,
                ],
                |r| Ok(Status::from_stored(&r.get::<_, String>(0)?)),
            )
            .optional()
            .map_err(|e| self.db_err(e))
    }

    /// Makes `owner` the supervisor of a live task if its recorded owner is
    /// still `expected` (compare and set). False if someone changed it
    /// meanwhile or the task ended.
    pub fn replace_owner(
        &self,
        id: &TaskId,
        expected: Option<&ProcessIdentity>,
        owner: &ProcessIdentity,
    ) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET owner_pid = ?2, owner_start = ?3, boot_id = ?4, ns = ?5 \
                 WHERE task_id = ?1 AND status IN ('starting','running','killing') \
                 AND owner_pid IS ?6 AND owner_start IS ?7",
                params![
                    id.as_str(),
                    owner.pid,
                    owner.start_ticks as i64,
                    owner.boot_id,
                    owner.pid_ns,
                    expected.map(|o| o.pid),
                    expected.map(|o| o.start_ticks as i64),
                ],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }

    /// A Slurm job started: `starting` becomes `running` (a `killing` task
    /// stays `killing`). Clears a "cannot be reached" note.
    pub fn mark_job_running(&self, id: &TaskId, started_at: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET status = CASE status WHEN 'starting' THEN 'running' ELSE status END, \
                 started_at = coalesce(started_at, ?2) \
                 WHERE task_id = ?1 AND status IN ('starting','running','killing') \
                 AND started_at IS NULL",
                params![id.as_str(), started_at],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }

    /// Sets (or clears) the note a live task carries in `reason`: what its
    /// watcher cannot tell (e.g. the controller cannot be reached). Only on
    /// live tasks: an end's reason is final.
    pub fn set_live_note(&self, id: &TaskId, note: Option<&str>) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET reason = ?2 WHERE task_id = ?1 \
                 AND status IN ('starting','running','killing') AND reason IS NOT ?2",
                params![id.as_str(), note],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }

    /// The store's Slurm watcher as recorded (`None`: none recorded).
    pub fn slurm_watcher(&self) -> Result<Option<ProcessIdentity>> {
        Ok(self.meta(WATCHER_KEY)?.as_deref().and_then(parse_identity))
    }

    /// Records `new` as the store's Slurm watcher if the recorded one is
    /// still `expected` (compare and set: of two watchers starting at
    /// once, one wins). `new = None` clears it.
    pub fn swap_slurm_watcher(
        &mut self,
        expected: Option<&ProcessIdentity>,
        new: Option<&ProcessIdentity>,
    ) -> Result<bool> {
        let path = self.db_path.clone();
        let err = |source| super::store_error(&path, source);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let current: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![WATCHER_KEY],
                |r| r.get(0),
            )
            .ok();
        let current = current.as_deref().and_then(parse_identity);
        if current.as_ref() != expected {
            return Ok(false);
        }
        match new {
            Some(new) => tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![WATCHER_KEY, identity_text(new)],
            ),
            None => tx.execute("DELETE FROM meta WHERE key = ?1", params![WATCHER_KEY]),
        }
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }
}

fn identity_text(who: &ProcessIdentity) -> String {
    format!(
        "{} {} {} {}",
        who.pid, who.start_ticks, who.boot_id, who.pid_ns
    )
}

fn parse_identity(text: &str) -> Option<ProcessIdentity> {
    let mut words = text.split(' ');
    Some(ProcessIdentity {
        pid: words.next()?.parse().ok()?,
        start_ticks: words.next()?.parse().ok()?,
        boot_id: words.next()?.to_owned(),
        pid_ns: words.next().unwrap_or_default().to_owned(),
    })
}
