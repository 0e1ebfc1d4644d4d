//! Notifications of the kinds beside `completed` (`ready`, `ready_failed`,
//! `watch_match`; completions keep their own table, `outbox.rs`), the
//! readiness outcome they report, and watches.
//!
//! Invariants:
//! - a readiness outcome is recorded once (`UPDATE … WHERE ready_outcome IS
//!   NULL`), and its notification in the same transaction;
//! - a watch notifies only while it is active (`ended_at IS NULL`), each
//!   notification in the transaction that checks it (and, for `--once`,
//!   ends it);
//! - a notification is kept until its session acknowledges it; `gc` keeps
//!   a task with an unacknowledged one.

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use serde_json::{json, Value};

use super::schema::RECORD_VERSION;
use super::tasks::FinishRecord;
use super::Store;
use crate::error::{Error, Result};
use crate::ready::MAX_WATCHES;
use crate::task::{Notification, NotificationKind, TaskId, Watch};

/// The live statuses, as `tasks.rs` writes them (a readiness or a watch is
/// only ever recorded for a live task).
const LIVE_SQL: &str = "('starting','running','killing')";

/// What a monitor found about a watch's match.
#[derive(Clone, Debug)]
pub struct WatchHit<'a> {
    pub watch_id: &'a str,
    pub line: &'a str,
    /// Which stream it came from.
    pub stream: &'a str,
    /// Matches since the last notification that were not reported.
    pub more_matches: u64,
    /// This notification ends the watch (`--once`).
    pub ends: bool,
}

/// A notification row about to be inserted.
struct NewNote<'a> {
    id: &'a TaskId,
    session: &'a str,
    kind: NotificationKind,
    watch_id: Option<&'a str>,
    body: &'a Value,
    now: i64,
}

/// Inserts a notification row.
fn insert(tx: &Transaction<'_>, note: NewNote<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO notifications (task_id, session, kind, watch_id, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            note.id.as_str(),
            note.session,
            note.kind.as_str(),
            note.watch_id,
            note.body.to_string(),
            note.now
        ],
    )?;
    Ok(())
}

/// Records a pending readiness as failed because the task ended, with its
/// end and output tail, in the caller's transaction (the end's).
pub(super) fn fail_pending_ready(
    tx: &Transaction<'_>,
    id: &TaskId,
    session: &str,
    notify: bool,
    record: &FinishRecord,
) -> rusqlite::Result<()> {
    let end = &record.end;
    let reason = format!(
        "the task ended ({}{}) before it was ready",
        end.status,
        end.exit_code
            .map(|c| format!(", exit code {c}"))
            .unwrap_or_default()
    );
    let n = tx.execute(
        "UPDATE tasks SET ready_outcome = 'ended', ready_detail = ?2 \
         WHERE task_id = ?1 AND ready_kind IS NOT NULL AND ready_outcome IS NULL",
        params![id.as_str(), reason],
    )?;
    if n == 1 && notify {
        let body = json!({
            "reason": reason,
            "cause": "ended",
            "status": end.status,
            "exit_code": end.exit_code,
            "signal": end.signal,
            "output_tail": record.preview,
        });
        insert(
            tx,
            NewNote {
                id,
                session,
                kind: NotificationKind::ReadyFailed,
                watch_id: None,
                body: &body,
                now: record.finished_at,
            },
        )?;
    }
    Ok(())
}

impl Store {
    pub(super) fn immediate(&mut self) -> Result<Transaction<'_>> {
        let path = self.db_path.clone();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| super::store_error(&path, e))
    }

    /// Records a live task ready (once) and, if it notifies, its `ready`
    /// notification. False if the outcome was already recorded.
    pub fn record_ready(&mut self, id: &TaskId, at: i64, detail: &str) -> Result<bool> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        let row: Option<(String, bool, String, String)> = tx
            .query_row(
                &format!(
                    "UPDATE tasks SET ready_at = ?2, ready_outcome = 'ready', ready_detail = ?3 \
                     WHERE task_id = ?1 AND ready_kind IS NOT NULL AND ready_outcome IS NULL \
                     AND status IN {LIVE_SQL} RETURNING session, notify, ready_kind, ready_value"
                ),
                params![id.as_str(), at, detail],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((session, notify, kind, value)) = row else {
            return Ok(false);
        };
        if notify {
            let body = json!({
                "ready_at": at,
                "condition": {"kind": kind, "value": value},
                "line": (kind == "log").then_some(detail),
                "detail": detail,
            });
            let note = NewNote {
                id,
                session: &session,
                kind: NotificationKind::Ready,
                watch_id: None,
                body: &body,
                now: at,
            };
            insert(&tx, note).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// Records a live task's readiness as timed out (once), with its
    /// `ready_failed` notification. False if the outcome was recorded.
    pub fn record_ready_timeout(&mut self, id: &TaskId, at: i64, reason: &str) -> Result<bool> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let (out, err_path) = (self.stdout_path(id), self.stderr_path(id));
        let tx = self.immediate()?;
        let row: Option<(String, bool, String, Option<String>)> = tx
            .query_row(
                &format!(
                    "UPDATE tasks SET ready_outcome = 'timeout', ready_detail = ?2 \
                     WHERE task_id = ?1 AND ready_kind IS NOT NULL AND ready_outcome IS NULL \
                     AND status IN {LIVE_SQL} RETURNING session, notify, status, io"
                ),
                params![id.as_str(), reason],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((session, notify, status, io)) = row else {
            return Ok(false);
        };
        if notify {
            let pty = crate::interact::Interaction::from_stored(io.as_deref()).pty();
            let tail = crate::compact::task_tail(&out, &err_path, super::PREVIEW_BYTES, pty)
                .unwrap_or_default();
            let body = json!({
                "reason": reason,
                "cause": "timeout",
                "status": status,
                "output_tail": tail.text,
            });
            let note = NewNote {
                id,
                session: &session,
                kind: NotificationKind::ReadyFailed,
                watch_id: None,
                body: &body,
                now: at,
            };
            insert(&tx, note).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// Adds a watch to a live task: at most `MAX_WATCHES` active ones.
    pub fn add_watch(&mut self, watch: &Watch) -> Result<()> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        let status: Option<(String, i64)> = tx
            .query_row(
                "SELECT status, record_version FROM tasks WHERE task_id = ?1",
                params![watch.task_id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        match status {
            None => return Err(Error::TaskNotFound(watch.task_id.to_string())),
            Some((_, v)) if v > RECORD_VERSION => {
                return Err(Error::NewerRecord(watch.task_id.clone()))
            }
            Some((s, _)) if !crate::task::Status::from_stored(&s).is_live() => {
                return Err(Error::InvalidArgument(format!(
                    "task_id: {} has already ended ({s}); only a running task can be watched",
                    watch.task_id
                )))
            }
            Some(_) => {}
        }
        let active: i64 = tx
            .query_row(
                "SELECT count(*) FROM watches WHERE task_id = ?1 AND ended_at IS NULL",
                params![watch.task_id.as_str()],
                |r| r.get(0),
            )
            .map_err(err)?;
        if active >= MAX_WATCHES as i64 {
            return Err(Error::InvalidArgument(format!(
                "pattern: {} already has {MAX_WATCHES} watches (the most a task may have); \
                 remove one with unwatch first",
                watch.task_id
            )));
        }
        tx.execute(
            "INSERT INTO watches (watch_id, task_id, session, pattern, once, cooldown_ms, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                watch.watch_id,
                watch.task_id.as_str(),
                watch.session,
                watch.pattern,
                watch.once,
                watch.cooldown_ms as i64,
                watch.created_at
            ],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Ends a watch; its task id. An unknown id is an error naming it.
    pub fn end_watch(&self, watch_id: &str, now: i64) -> Result<TaskId> {
        let row: Option<String> = self
            .conn
            .query_row(
                "UPDATE watches SET ended_at = coalesce(ended_at, ?2) WHERE watch_id = ?1 \
                 RETURNING task_id",
                params![watch_id, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db_err(e))?;
        match row {
            Some(id) => id.parse(),
            None => Err(Error::InvalidArgument(format!(
                "watch_id: no watch {watch_id:?}"
            ))),
        }
    }

    /// Watches, newest first: a task's (active or not), or a session's.
    pub fn watches(&self, task: Option<&TaskId>, session: Option<&str>) -> Result<Vec<Watch>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT watch_id, task_id, session, pattern, once, cooldown_ms, created_at, \
                 ended_at, fired_at FROM watches WHERE (?1 IS NULL OR task_id = ?1) \
                 AND (?2 IS NULL OR session = ?2) ORDER BY created_at DESC, rowid DESC",
            )
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![task.map(TaskId::as_str), session], |r| {
                let id: String = r.get(1)?;
                Ok((
                    id,
                    Watch {
                        watch_id: r.get(0)?,
                        task_id: TaskId::random(),
                        session: r.get(2)?,
                        pattern: r.get(3)?,
                        once: r.get(4)?,
                        cooldown_ms: r.get::<_, i64>(5)?.max(0) as u64,
                        created_at: r.get(6)?,
                        ended_at: r.get(7)?,
                        fired_at: r.get(8)?,
                    },
                ))
            })
            .map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mut watch) = row.map_err(|e| self.db_err(e))?;
            let Ok(id) = id.parse() else { continue };
            watch.task_id = id;
            out.push(watch);
        }
        Ok(out)
    }

    /// Records a watch's notification if the watch is still active (ending
    /// it when `hit.ends`). False if it had ended.
    pub fn record_watch_match(
        &mut self,
        id: &TaskId,
        hit: &WatchHit<'_>,
        now: i64,
    ) -> Result<bool> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        let row: Option<(String, String)> = tx
            .query_row(
                "UPDATE watches SET fired_at = ?2, \
                 ended_at = CASE WHEN ?3 THEN ?2 ELSE ended_at END \
                 WHERE watch_id = ?1 AND ended_at IS NULL RETURNING pattern, \
                 (SELECT session FROM tasks WHERE task_id = watches.task_id)",
                params![hit.watch_id, now, hit.ends],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        let Some((pattern, session)) = row else {
            return Ok(false);
        };
        let body = json!({
            "pattern": pattern,
            "line": hit.line,
            "stream": hit.stream,
            "more_matches": hit.more_matches,
            "watch_ended": hit.ends,
        });
        let note = NewNote {
            id,
            session: &session,
            kind: NotificationKind::WatchMatch,
            watch_id: Some(hit.watch_id),
            body: &body,
            now,
        };
        insert(&tx, note).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    /// The session's unacknowledged notifications of the kinds beside
    /// `completed`, with sequence number above `after`, oldest first.
    pub fn notifications_after(
        &self,
        session: &str,
        after: i64,
    ) -> Result<Vec<(i64, Notification)>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT n.seq, n.kind, n.task_id, n.session, n.watch_id, n.body, n.created_at \
                 FROM notifications n JOIN tasks t ON t.task_id = n.task_id \
                 WHERE n.session = ?1 AND n.acked_at IS NULL AND n.seq > ?2 \
                 AND t.record_version <= {RECORD_VERSION} ORDER BY n.seq"
            ))
            .map_err(|e| self.db_err(e))?;
        let rows = stmt
            .query_map(params![session, after], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(|e| self.db_err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, kind, task_id, session, watch_id, body, created_at) =
                row.map_err(|e| self.db_err(e))?;
            let (Some(kind), Ok(task_id)) = (
                NotificationKind::from_stored(&kind),
                task_id.parse::<TaskId>(),
            ) else {
                continue;
            };
            let detail: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            out.push((
                seq,
                Notification {
                    notification_id: format!("n:{seq}"),
                    summary: summary(kind, &task_id, watch_id.as_deref(), &detail),
                    kind,
                    task_id,
                    session,
                    watch_id,
                    created_at,
                    detail,
                },
            ));
        }
        Ok(out)
    }

    /// The highest notification sequence number so far (0 when empty).
    pub fn last_notification_seq(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM notifications", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.db_err(e))
    }

    /// Acknowledges notifications by sequence number, all or none: an
    /// unknown one (or another session's) is an error naming it.
    pub fn ack_notification_seqs(
        &mut self,
        session: &str,
        seqs: &[i64],
        now: i64,
    ) -> Result<usize> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        let mut acked = 0;
        for seq in seqs {
            let found: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM notifications WHERE seq = ?1 AND session = ?2)",
                    params![seq, session],
                    |r| r.get(0),
                )
                .map_err(err)?;
            if !found {
                return Err(Error::InvalidArgument(format!(
                    "notification_id: no notification n:{seq} in session {session:?}"
                )));
            }
            acked += tx
                .execute(
                    "UPDATE notifications SET acked_at = ?2 WHERE seq = ?1 AND acked_at IS NULL",
                    params![seq, now],
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(acked)
    }

    /// Acknowledges every notification of the named tasks so far, of every
    /// kind. Every id must have a completion or a notification in that
    /// session (acknowledged before or not); otherwise nothing changes and
    /// the first unknown id is named. Returns how many were newly acked.
    pub fn ack_tasks(&mut self, session: &str, ids: &[TaskId], now: i64) -> Result<usize> {
        self.ack_in(&["completions", "notifications"], session, ids, now)
    }

    /// Acknowledges a task's `ready` and `ready_failed` notifications.
    pub fn ack_ready_notifications(&self, session: &str, id: &TaskId, now: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE notifications SET acked_at = ?3 WHERE task_id = ?1 AND session = ?2 \
                 AND kind IN ('ready','ready_failed') AND acked_at IS NULL",
                params![id.as_str(), session, now],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// The tasks of the named completions (by outbox sequence number) of
    /// `session`; an unknown one is an error naming it.
    pub fn completion_tasks(&self, session: &str, seqs: &[i64]) -> Result<Vec<TaskId>> {
        let mut ids = Vec::new();
        for seq in seqs {
            let id: Option<String> = self
                .conn
                .query_row(
                    "SELECT task_id FROM completions WHERE seq = ?1 AND session = ?2",
                    params![seq, session],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.db_err(e))?;
            match id.map(|id| id.parse::<TaskId>()) {
                Some(Ok(id)) => ids.push(id),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "notification_id: no notification c:{seq} in session {session:?}"
                    )))
                }
            }
        }
        Ok(ids)
    }

    /// Whether the session has any unacknowledged notification, of any
    /// kind (a completion claimed for showing by a server is its own).
    pub fn has_pending_notification(&self, session: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE session = ?1 AND acked_at IS NULL) \
                 OR EXISTS (SELECT 1 FROM completions WHERE session = ?1 AND acked_at IS NULL \
                 AND claim_pid IS NULL)",
                params![session],
                |r| r.get(0),
            )
            .map_err(|e| self.db_err(e))
    }
}

/// The one line a notification shows.
pub(super) fn summary(
    kind: NotificationKind,
    task: &TaskId,
    watch_id: Option<&str>,
    detail: &Value,
) -> String {
    let text = |key: &str| detail.get(key).and_then(Value::as_str).unwrap_or_default();
    match kind {
        NotificationKind::Completed => format!("{task} ended"),
        NotificationKind::Ready => format!("{task} is ready: {}", text("detail")),
        NotificationKind::ReadyFailed => format!("{task} did not become ready: {}", text("reason")),
        NotificationKind::WatchMatch => {
            let more = detail
                .get("more_matches")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let more = if more > 0 {
                format!(" (+{more} more matches)")
            } else {
                String::new()
            };
            format!(
                "{task} watch {}: {}{more}",
                watch_id.unwrap_or("?"),
                text("line")
            )
        }
    }
}
