//! The completion outbox: one row per finished notifying task, peeked by its
//! session's readers and marked delivered only when they acknowledge it.

use rusqlite::{params, Row, Transaction, TransactionBehavior};

use super::tasks::FinishRecord;
use super::Store;
use crate::error::{Error, Result};
use crate::task::{Completion, TaskId};

const COMPLETION_COLUMNS: &str = "c.seq, c.task_id, c.session, t.status, t.exit_code, t.signal, \
    t.reason, t.command, t.started_at, t.finished_at, c.output_preview, c.output_truncated";

/// What the outbox stores of a completion beyond the task row.
pub(super) struct Entry<'a> {
    pub preview: &'a str,
    pub truncated: bool,
    pub recorded_at: i64,
}

impl<'a> From<&'a FinishRecord> for Entry<'a> {
    fn from(record: &'a FinishRecord) -> Self {
        Entry {
            preview: &record.preview,
            truncated: record.output_truncated,
            recorded_at: record.finished_at,
        }
    }
}

/// Adds a task's completion (at most one per task: a second insert is ignored).
pub(super) fn insert(
    tx: &Transaction<'_>,
    id: &TaskId,
    session: &str,
    entry: Entry<'_>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO completions (task_id, session, output_preview, output_truncated, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id.as_str(), session, entry.preview, entry.truncated, entry.recorded_at],
    )?;
    Ok(())
}

impl Store {
    /// The session's unacknowledged completions, oldest first, each with its
    /// outbox sequence number.
    pub fn unacked_completions(&self, session: &str) -> Result<Vec<(i64, Completion)>> {
        self.completions_where("c.session = ?1 AND c.acked_at IS NULL", params![session])
    }

    /// The session's completions recorded after sequence number `after`
    /// (acknowledged or not), oldest first.
    pub fn completions_after(&self, session: &str, after: i64) -> Result<Vec<(i64, Completion)>> {
        self.completions_where("c.session = ?1 AND c.seq > ?2", params![session, after])
    }

    /// The highest outbox sequence number so far (0 when empty).
    pub fn last_completion_seq(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM completions", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.db_err(e))
    }

    /// Marks the named completions of `session` delivered. Every id must have
    /// a completion in that session (acknowledged before or not); otherwise
    /// nothing is changed and the first unknown id is named. Returns how many
    /// were newly acknowledged.
    pub fn ack(&mut self, session: &str, ids: &[TaskId], now: i64) -> Result<usize> {
        let path = self.db_path.clone();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut acked = 0;
        for id in ids {
            let known: bool = tx
                .query_row(
                    "SELECT count(*) FROM completions WHERE task_id = ?1 AND session = ?2",
                    params![id.as_str(), session],
                    |r| r.get::<_, i64>(0).map(|n| n > 0),
                )
                .map_err(err)?;
            if !known {
                return Err(Error::CompletionNotFound {
                    task_id: id.clone(),
                    session: session.to_owned(),
                });
            }
            acked += tx
                .execute(
                    "UPDATE completions SET acked_at = ?3 WHERE task_id = ?1 AND session = ?2 AND acked_at IS NULL",
                    params![id.as_str(), session, now],
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(acked)
    }

    fn completions_where(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(i64, Completion)>> {
        let sql = format!(
            "SELECT {COMPLETION_COLUMNS} FROM completions c JOIN tasks t ON t.task_id = c.task_id \
             WHERE {filter} ORDER BY c.seq"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(args, |r| self.completion_from_row(r))
            .map_err(|e| self.db_err(e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))
    }

    fn completion_from_row(&self, r: &Row<'_>) -> rusqlite::Result<(i64, Completion)> {
        let id: String = r.get(1)?;
        let task_id: TaskId = id.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?;
        let status: String = r.get(3)?;
        let started_at: Option<i64> = r.get(8)?;
        let finished_at: Option<i64> = r.get(9)?;
        Ok((
            r.get(0)?,
            Completion {
                stdout_path: self.stdout_path(&task_id),
                stderr_path: self.stderr_path(&task_id),
                task_id,
                session: r.get(2)?,
                status: status.parse().unwrap_or(crate::task::Status::Failed),
                exit_code: r.get(4)?,
                signal: r.get(5)?,
                reason: r.get(6)?,
                command: r.get(7)?,
                duration_ms: match (started_at, finished_at) {
                    (Some(s), Some(f)) => Some((f - s).max(0) as u64),
                    _ => None,
                },
                finished_at,
                output_preview: r.get(10)?,
                output_truncated: r.get(11)?,
            },
        ))
    }
}
