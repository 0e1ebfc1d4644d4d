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
//!   a task with an unacknowledged one;
//! - claims follow the outbox's rules (`outbox.rs`, points 1-3): one
//!   claimed by a live process is shown by nobody else; a dead claimer's
//!   claim is void, and readers re-insert the notification unclaimed with
//!   a new sequence number (`void_dead_note_claims`), so a push that
//!   tracks sequence numbers sees it as new; one acknowledged while
//!   claimed was delivered by its claimer.

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde_json::{json, Value};

use super::outbox::{claim_at, Liveness};
use super::schema::RECORD_VERSION;
use super::tasks::FinishRecord;
use super::Store;
use crate::error::{Error, Result};
use crate::process::ProcessIdentity;
use crate::ready::MAX_WATCHES;
use crate::task::{Completion, Notification, NotificationKind, TaskId, Watch};

const NOTE_COLUMNS: &str = "n.seq, n.kind, n.task_id, n.session, n.watch_id, n.body, \
    n.created_at, n.claim_pid, n.claim_start, n.claim_boot";

/// A pending notification of any kind, as one delivery claims it.
#[derive(Clone, Debug)]
pub enum Pending {
    /// A task's completion (`outbox.rs`).
    Completion(Completion),
    /// `ready`, `ready_failed` or `watch_match`.
    Other(Notification),
}

impl Pending {
    /// When it was recorded: the outbox's order across both tables.
    fn created_at(&self) -> i64 {
        match self {
            Pending::Completion(c) => c.finished_at.unwrap_or(0),
            Pending::Other(n) => n.created_at,
        }
    }
}

/// Notifications claimed for one delivery, oldest first, and how many
/// others wait (they did not fit).
#[derive(Clone, Debug, Default)]
pub struct PendingClaim {
    pub items: Vec<Pending>,
    pub left: usize,
}

impl PendingClaim {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The claimed completions' tasks.
    pub fn completion_ids(&self) -> Vec<TaskId> {
        self.items
            .iter()
            .filter_map(|p| match p {
                Pending::Completion(c) => Some(c.task_id.clone()),
                Pending::Other(_) => None,
            })
            .collect()
    }

    /// The claimed notifications' sequence numbers (the other kinds).
    pub fn note_seqs(&self) -> Vec<i64> {
        self.items
            .iter()
            .filter_map(|p| match p {
                Pending::Other(n) => note_seq(n),
                Pending::Completion(_) => None,
            })
            .collect()
    }
}

/// The sequence number in a notification id `n:<seq>`.
pub fn note_seq(n: &Notification) -> Option<i64> {
    n.notification_id.strip_prefix("n:")?.parse().ok()
}

/// Which tables a claim takes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimScope {
    /// Completions and the other kinds (hooks).
    Every,
    /// The kinds beside completions (an MCP result claims completions
    /// on their own, with a budget of their own).
    Others,
}

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
    /// `completed`, with sequence number above `after`, oldest first,
    /// leaving out those a live process claims (a dead one's claim is
    /// voided first).
    pub fn notifications_after(
        &mut self,
        session: &str,
        after: i64,
    ) -> Result<Vec<(i64, Notification)>> {
        self.void_dead_note_claims(session)?;
        let rows = select_notes(
            &self.conn,
            "n.session = ?1 AND n.acked_at IS NULL AND n.seq > ?2",
            params![session, after],
        )
        .map_err(|e| self.db_err(e))?;
        let mut live = Liveness::default();
        Ok(rows
            .into_iter()
            .filter(|(_, _, claim)| !live.holds(claim.as_ref()))
            .map(|(seq, n, _)| (seq, n))
            .collect())
    }

    /// Whether the session has any unacknowledged notification (claimed
    /// or not) in the tables of `scope`: one read, no write.
    pub fn any_pending(&self, session: &str, scope: ClaimScope) -> Result<bool> {
        let sql = match scope {
            ClaimScope::Every => {
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE session = ?1 AND acked_at IS NULL) \
                 OR EXISTS (SELECT 1 FROM completions WHERE session = ?1 AND acked_at IS NULL)"
            }
            ClaimScope::Others => {
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE session = ?1 AND acked_at IS NULL)"
            }
        };
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(params![session], |r| r.get(0)))
            .map_err(|e| self.db_err(e))
    }

    /// Claims for `claimer`, in one transaction, the session's pending
    /// notifications no live process claims (completions too with
    /// [`ClaimScope::Every`]), oldest first, while `fits` accepts them;
    /// the first refused and all after it stay unclaimed and are counted.
    pub fn claim_pending(
        &mut self,
        session: &str,
        claimer: &ProcessIdentity,
        scope: ClaimScope,
        mut fits: impl FnMut(&Pending) -> bool,
    ) -> Result<PendingClaim> {
        // Most reads find nothing: skip the write transaction.
        if !self.any_pending(session, scope)? {
            return Ok(PendingClaim::default());
        }
        let path = self.db_path.clone();
        let home = self.home.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        let mut live = Liveness::default();
        let mut rows: Vec<Pending> = Vec::new();
        if scope == ClaimScope::Every {
            let completions = super::outbox::select(
                &tx,
                &home,
                "c.session = ?1 AND c.acked_at IS NULL",
                params![session],
            )
            .map_err(err)?;
            rows.extend(
                completions
                    .into_iter()
                    .filter(|(_, _, claim)| !live.holds(claim.as_ref()))
                    .map(|(_, c, _)| Pending::Completion(c)),
            );
        }
        let notes = select_notes(
            &tx,
            "n.session = ?1 AND n.acked_at IS NULL",
            params![session],
        )
        .map_err(err)?;
        rows.extend(
            notes
                .into_iter()
                .filter(|(_, _, claim)| !live.holds(claim.as_ref()))
                .map(|(_, n, _)| Pending::Other(n)),
        );
        // The order `pending_notifications` shows: by time recorded, a
        // completion after a readiness failure of the same moment.
        rows.sort_by_key(|p| (p.created_at(), matches!(p, Pending::Completion(_))));
        let who = (
            claimer.pid,
            claimer.start_ticks as i64,
            claimer.boot_id.as_str(),
        );
        let mut claimed = PendingClaim::default();
        for item in rows {
            if claimed.left > 0 || !fits(&item) {
                claimed.left += 1;
                continue;
            }
            match &item {
                Pending::Completion(c) => tx.execute(
                    "UPDATE completions SET claim_pid = ?2, claim_start = ?3, claim_boot = ?4 \
                     WHERE task_id = ?1",
                    params![c.task_id.as_str(), who.0, who.1, who.2],
                ),
                Pending::Other(n) => tx.execute(
                    "UPDATE notifications SET claim_pid = ?2, claim_start = ?3, claim_boot = ?4 \
                     WHERE seq = ?1",
                    params![note_seq(n), who.0, who.1, who.2],
                ),
            }
            .map_err(err)?;
            claimed.items.push(item);
        }
        tx.commit().map_err(err)?;
        Ok(claimed)
    }

    /// Acknowledges, in one transaction, the named completions and
    /// notifications `claimer` claims (others are left alone): it has
    /// delivered them. Returns how many were settled.
    pub fn settle_pending(
        &mut self,
        completions: &[TaskId],
        notes: &[i64],
        claimer: &ProcessIdentity,
        now: i64,
    ) -> Result<usize> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        let who = (
            claimer.pid,
            claimer.start_ticks as i64,
            claimer.boot_id.as_str(),
        );
        let mut settled = 0;
        for id in completions {
            settled += tx
                .execute(
                    "UPDATE completions SET acked_at = ?5 WHERE task_id = ?1 AND acked_at IS NULL \
                     AND claim_pid = ?2 AND claim_start = ?3 AND claim_boot = ?4",
                    params![id.as_str(), who.0, who.1, who.2, now],
                )
                .map_err(err)?;
        }
        for seq in notes {
            settled += tx
                .execute(
                    "UPDATE notifications SET acked_at = ?5 WHERE seq = ?1 AND acked_at IS NULL \
                     AND claim_pid = ?2 AND claim_start = ?3 AND claim_boot = ?4",
                    params![seq, who.0, who.1, who.2, now],
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(settled)
    }

    /// Gives up `claimer`'s claims on the named notifications (what showed
    /// them never reached anyone): each is re-inserted unclaimed with a
    /// new sequence number, to be shown again.
    pub fn unclaim_notes(&mut self, seqs: &[i64], claimer: &ProcessIdentity) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        for seq in seqs {
            requeue_note(&tx, *seq, claimer).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.touch_events();
        Ok(())
    }

    /// Voids the claims of dead processes on the session's unacknowledged
    /// notifications (module docs).
    fn void_dead_note_claims(&mut self, session: &str) -> Result<()> {
        let claimed: Vec<(i64, Option<ProcessIdentity>)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT seq, claim_pid, claim_start, claim_boot FROM notifications \
                     WHERE session = ?1 AND acked_at IS NULL AND claim_pid IS NOT NULL",
                )
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map(params![session], |r| Ok((r.get(0)?, claim_at(r, 1)?)))
                .map_err(|e| self.db_err(e))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(|e| self.db_err(e))?
        };
        let mut live = Liveness::default();
        let dead: Vec<(i64, ProcessIdentity)> = claimed
            .into_iter()
            .filter_map(|(seq, claim)| Some((seq, claim?)))
            .filter(|(_, claim)| !live.holds(Some(claim)))
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let tx = self.immediate()?;
        for (seq, claim) in &dead {
            requeue_note(&tx, *seq, claim).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.touch_events();
        Ok(())
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
    /// kind (one claimed for showing by a server or a hook is its own).
    pub fn has_pending_notification(&self, session: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE session = ?1 AND acked_at IS NULL \
                 AND claim_pid IS NULL) OR EXISTS (SELECT 1 FROM completions WHERE session = ?1 AND acked_at IS NULL \
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

type NoteRow = (i64, Notification, Option<ProcessIdentity>);

/// Notifications beside completions matching `filter` (of tasks this build
/// can read, of kinds it knows), oldest first, with their claims.
fn select_notes(
    conn: &rusqlite::Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<NoteRow>> {
    let sql = format!(
        "SELECT {NOTE_COLUMNS} FROM notifications n JOIN tasks t ON t.task_id = n.task_id \
         WHERE t.record_version <= {RECORD_VERSION} AND {filter} ORDER BY n.seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, note_from_row)?;
    Ok(rows
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// A notification row; `None` for a kind or task id this build cannot read.
fn note_from_row(r: &Row<'_>) -> rusqlite::Result<Option<NoteRow>> {
    let seq: i64 = r.get(0)?;
    let kind: String = r.get(1)?;
    let task_id: String = r.get(2)?;
    let watch_id: Option<String> = r.get(4)?;
    let body: String = r.get(5)?;
    let (Some(kind), Ok(task_id)) = (
        NotificationKind::from_stored(&kind),
        task_id.parse::<TaskId>(),
    ) else {
        return Ok(None);
    };
    let detail: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    Ok(Some((
        seq,
        Notification {
            notification_id: format!("n:{seq}"),
            summary: summary(kind, &task_id, watch_id.as_deref(), &detail),
            kind,
            task_id,
            session: r.get(3)?,
            watch_id,
            created_at: r.get(6)?,
            detail,
        },
        claim_at(r, 7)?,
    )))
}

/// Re-inserts an unacknowledged notification unclaimed with a new sequence
/// number, if `claimer` (still) claims it.
fn requeue_note(tx: &Transaction<'_>, seq: i64, claimer: &ProcessIdentity) -> rusqlite::Result<()> {
    let who = params![
        seq,
        claimer.pid,
        claimer.start_ticks as i64,
        claimer.boot_id
    ];
    let copied = tx.execute(
        "INSERT INTO notifications (task_id, session, kind, watch_id, body, created_at) \
         SELECT task_id, session, kind, watch_id, body, created_at FROM notifications \
         WHERE seq = ?1 AND acked_at IS NULL AND claim_pid = ?2 AND claim_start = ?3 \
         AND claim_boot = ?4",
        who,
    )?;
    if copied > 0 {
        tx.execute("DELETE FROM notifications WHERE seq = ?1", params![seq])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Engine;
    use crate::store::{CacheSize, NewTask};

    const SESSION: &str = "dir:/project";

    /// A store with one running task of `SESSION` and `hits` of its
    /// watch's matches pending.
    fn store_with_notes(dir: &std::path::Path, hits: usize) -> (Store, TaskId) {
        let mut store = Store::open(&dir.join("home"), CacheSize::Default).unwrap();
        let me = ProcessIdentity::of_child(std::process::id()).unwrap();
        let id = TaskId::random();
        store
            .insert_task(
                &NewTask {
                    id: id.clone(),
                    session: SESSION.into(),
                    command: "server".into(),
                    cwd: dir.to_owned(),
                    env_keys: Vec::new(),
                    timeout_ms: None,
                    idle_timeout_ms: None,
                    max_output: 1 << 20,
                    notify: true,
                    interaction: Default::default(),
                    owner: me.clone(),
                    created_at: 1,
                    ready: None,
                    sandbox: None,
                    executor: Engine::Local,
                    queue: Default::default(),
                },
                100,
            )
            .unwrap();
        store.mark_running(&id, &me, None, 2).unwrap();
        store
            .add_watch(&Watch {
                watch_id: "w-1".into(),
                task_id: id.clone(),
                session: SESSION.into(),
                pattern: "ERROR".into(),
                once: false,
                cooldown_ms: 0,
                created_at: 3,
                ended_at: None,
                fired_at: None,
            })
            .unwrap();
        for n in 0..hits {
            let line = format!("ERROR {n}");
            let hit = WatchHit {
                watch_id: "w-1",
                line: &line,
                stream: "stdout",
                more_matches: 0,
                ends: false,
            };
            assert!(store.record_watch_match(&id, &hit, 10 + n as i64).unwrap());
        }
        (store, id)
    }

    /// A process identity that is certainly not running.
    fn dead() -> ProcessIdentity {
        let mut dead = ProcessIdentity::of_child(std::process::id()).unwrap();
        dead.start_ticks += 1;
        dead
    }

    #[test]
    fn a_claimed_notification_is_shown_by_nobody_else_until_its_claimer_dies() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = store_with_notes(dir.path(), 2);
        let me = ProcessIdentity::of_child(std::process::id()).unwrap();
        // A live claimer takes the first (the budget allows one).
        let mut first = true;
        let claimed = store
            .claim_pending(SESSION, &me, ClaimScope::Every, |_| {
                std::mem::take(&mut first)
            })
            .unwrap();
        assert_eq!((claimed.items.len(), claimed.left), (1, 1));
        // Readers (the push, drains) and other claimers see only the other.
        let visible = store.notifications_after(SESSION, 0).unwrap();
        assert_eq!(visible.len(), 1);
        let other = store
            .claim_pending(SESSION, &dead(), ClaimScope::Others, |_| true)
            .unwrap();
        assert_eq!(other.items.len(), 1);
        assert_ne!(other.note_seqs(), claimed.note_seqs());
        // The second claimer is dead: its claim is void, and readers see
        // the notification again under a new sequence number.
        let again = store.notifications_after(SESSION, 0).unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].0 > other.note_seqs()[0], "{again:?}");
        // The live claimer settles its own; nobody else's.
        let settled = store
            .settle_pending(&[], &claimed.note_seqs(), &me, 99)
            .unwrap();
        assert_eq!(settled, 1);
        let settled = store.settle_pending(&[], &[again[0].0], &me, 99).unwrap();
        assert_eq!(settled, 0, "settled a notification it had not claimed");
        assert!(store.any_pending(SESSION, ClaimScope::Every).unwrap());
    }

    #[test]
    fn an_unclaimed_notification_is_shown_again_as_new() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = store_with_notes(dir.path(), 1);
        let me = ProcessIdentity::of_child(std::process::id()).unwrap();
        let claimed = store
            .claim_pending(SESSION, &me, ClaimScope::Every, |_| true)
            .unwrap();
        assert!(store.notifications_after(SESSION, 0).unwrap().is_empty());
        store.unclaim_notes(&claimed.note_seqs(), &me).unwrap();
        let back = store.notifications_after(SESSION, 0).unwrap();
        assert_eq!(back.len(), 1);
        assert!(back[0].0 > claimed.note_seqs()[0]);
        assert_eq!(back[0].1.detail["line"], "ERROR 0");
    }
}
