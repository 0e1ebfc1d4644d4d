//! The completion outbox: one row per finished notifying task, peeked by its
//! session's readers and marked delivered only when they acknowledge it.
//!
//! **Claims.** A completion may be *claimed* by one process (pid + start
//! ticks + boot id, the columns `claim_*`): that process has taken on its
//! delivery and is the only one that may show it. Two kinds of process
//! claim:
//!
//! - a server that showed it to a client and waits for evidence that the
//!   client received it (`claim_completions`, then `settle_claimed`);
//! - a server waiting in the foreground for a task whose result it will
//!   return inline: the task row *holds* its future completion
//!   (`tasks.hold_*`, set by `hold_completion` before the task can start)
//!   and the completion is inserted already claimed by the holder. When
//!   the result is returned inline the holder settles it (the completion
//!   is removed and the task marked not notifying, as if it never had
//!   been); when the task outlives the window the holder releases it
//!   (`release_hold`).
//!
//! The invariant every reader keeps (`unacked_completions`,
//! `completions_after`, `claim_completions`):
//!
//! 1. An unacknowledged completion claimed by a **live** process is shown
//!    by nobody else (and not again by that process, which already has it
//!    in hand). So concurrent servers of one session show each completion
//!    once, and a task whose result goes back inline is not reported twice.
//! 2. A claim by a **dead** process is void: the completion is visible
//!    again, so a server that crashed before its client saw the result, or
//!    during a foreground wait, loses nothing (it may be shown twice, never
//!    lost). Readers void such claims by re-inserting the completion with a
//!    new sequence number (`void_dead_claims`), as `release_hold` does, so
//!    a push that tracks sequence numbers sees it as new.
//! 3. A completion acknowledged while claimed was delivered by its claimer;
//!    `completions_after` (the push) never sends it.
//! 4. Rows of tasks written by a newer bgtask (`record_version` above this
//!    build's) are never shown, claimed or acknowledged.
//!
//! Claims and their checks are made inside `IMMEDIATE` transactions, so two
//! processes never claim the same completion.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::schema::RECORD_VERSION;
use super::Store;
use crate::error::{Error, Result};
use crate::process::ProcessIdentity;
use crate::task::{Completion, TaskId};

/// Bytes of a task's output kept with its completion (the end of its
/// combined stdout and stderr): here, where completions are made, so the
/// monitor, reconcile and `set_notify` record previews of one size.
pub const PREVIEW_BYTES: u64 = 1024;

const COMPLETION_COLUMNS: &str = "c.seq, c.task_id, c.session, t.status, t.exit_code, t.signal, \
    t.reason, t.command, t.started_at, t.finished_at, c.output_preview, c.output_truncated, \
    c.claim_pid, c.claim_start, c.claim_boot, t.sandbox, t.label";

/// What the outbox stores of a completion beyond the task row.
pub(super) struct Entry<'a> {
    pub preview: &'a str,
    pub truncated: bool,
    pub recorded_at: i64,
}

/// Completions claimed for showing, and how many others wait.
#[derive(Clone, Debug, Default)]
pub struct Claimed {
    /// Claimed by the caller, oldest first.
    pub completions: Vec<Completion>,
    /// Unclaimed completions left for later (they did not fit).
    pub left: usize,
}

/// Adds a task's completion (at most one per task: a second insert is
/// ignored). It is claimed by whoever holds the task's completion (see the
/// module docs).
pub(super) fn insert(
    tx: &Transaction<'_>,
    id: &TaskId,
    session: &str,
    entry: Entry<'_>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO completions (task_id, session, output_preview, output_truncated, \
         created_at, claim_pid, claim_start, claim_boot) \
         SELECT ?1, ?2, ?3, ?4, ?5, hold_pid, hold_start, hold_boot FROM tasks WHERE task_id = ?1",
        params![
            id.as_str(),
            session,
            entry.preview,
            entry.truncated,
            entry.recorded_at
        ],
    )?;
    Ok(())
}

/// Re-inserts an unacknowledged completion unclaimed and with a new
/// sequence number, if `claimer` (still) claims it.
fn requeue(tx: &Transaction<'_>, id: &str, claimer: &ProcessIdentity) -> rusqlite::Result<usize> {
    tx.execute(
        "INSERT OR REPLACE INTO completions (task_id, session, output_preview, output_truncated, created_at) \
         SELECT task_id, session, output_preview, output_truncated, created_at FROM completions \
         WHERE task_id = ?1 AND acked_at IS NULL AND claim_pid = ?2 AND claim_start = ?3 AND claim_boot = ?4",
        params![id, claimer.pid, claimer.start_ticks as i64, claimer.boot_id],
    )
}

/// Whether a claim still holds; remembers answers within one read.
#[derive(Default)]
pub(super) struct Liveness(HashMap<(u32, u64), bool>);

impl Liveness {
    pub(super) fn holds(&mut self, claim: Option<&ProcessIdentity>) -> bool {
        claim.is_some_and(|c| {
            *self
                .0
                .entry((c.pid, c.start_ticks))
                .or_insert_with(|| c.is_alive())
        })
    }
}

impl Store {
    /// The session's unacknowledged completions that no live process has
    /// claimed, oldest first, each with its outbox sequence number.
    pub fn unacked_completions(&mut self, session: &str) -> Result<Vec<(i64, Completion)>> {
        self.void_dead_claims(session)?;
        self.visible_where("c.session = ?1 AND c.acked_at IS NULL", params![session])
    }

    /// The session's completions recorded after sequence number `after`
    /// (acknowledged or not, but not delivered by a claimer), oldest first.
    pub fn completions_after(
        &mut self,
        session: &str,
        after: i64,
    ) -> Result<Vec<(i64, Completion)>> {
        self.void_dead_claims(session)?;
        self.visible_where(
            "c.session = ?1 AND c.seq > ?2 AND (c.claim_pid IS NULL OR c.acked_at IS NULL)",
            params![session, after],
        )
    }

    /// The highest outbox sequence number so far (0 when empty).
    pub fn last_completion_seq(&self) -> Result<i64> {
        self.conn
            .query_row("SELECT coalesce(max(seq), 0) FROM completions", [], |r| {
                r.get(0)
            })
            .map_err(|e| self.db_err(e))
    }

    /// Claims, for `claimer`, the session's unacknowledged completions no
    /// live process claims, oldest first, while `fits` accepts them; the
    /// first one refused and all after it stay unclaimed and are counted.
    pub fn claim_completions(
        &mut self,
        session: &str,
        claimer: &ProcessIdentity,
        mut fits: impl FnMut(&Completion) -> bool,
    ) -> Result<Claimed> {
        // Most results have nothing to show: skip the write transaction.
        let any: bool = self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM completions WHERE session = ?1 AND acked_at IS NULL)",
            )
            .and_then(|mut stmt| stmt.query_row(params![session], |r| r.get(0)))
            .map_err(|e| self.db_err(e))?;
        if !any {
            return Ok(Claimed::default());
        }
        let path = self.db_path.clone();
        let home = self.home.clone();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let rows = select(
            &tx,
            &home,
            "c.session = ?1 AND c.acked_at IS NULL",
            params![session],
        )
        .map_err(err)?;
        let mut live = Liveness::default();
        let mut claimed = Claimed::default();
        for (_, completion, claim) in rows {
            if live.holds(claim.as_ref()) {
                continue;
            }
            if claimed.left > 0 || !fits(&completion) {
                claimed.left += 1;
                continue;
            }
            tx.execute(
                "UPDATE completions SET claim_pid = ?2, claim_start = ?3, claim_boot = ?4 \
                 WHERE task_id = ?1",
                params![
                    completion.task_id.as_str(),
                    claimer.pid,
                    claimer.start_ticks as i64,
                    claimer.boot_id
                ],
            )
            .map_err(err)?;
            claimed.completions.push(completion);
        }
        tx.commit().map_err(err)?;
        Ok(claimed)
    }

    /// Settles the named completions `claimer` claims, now that its client
    /// evidently has them; others are left alone. A completion the claimer
    /// still *holds* (a foreground task whose result went back inline) is
    /// removed and the task marked not notifying, as if it never notified:
    /// its result was delivered, and a later `promote` records a fresh
    /// completion. Any other is acknowledged. Returns how many were settled.
    pub fn settle_claimed(
        &mut self,
        ids: &[TaskId],
        claimer: &ProcessIdentity,
        now: i64,
    ) -> Result<usize> {
        let path = self.db_path.clone();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut settled = 0;
        for id in ids {
            let who = params![
                id.as_str(),
                claimer.pid,
                claimer.start_ticks as i64,
                claimer.boot_id
            ];
            let inline = tx
                .execute(
                    "DELETE FROM completions WHERE task_id = ?1 AND acked_at IS NULL \
                     AND claim_pid = ?2 AND claim_start = ?3 AND claim_boot = ?4 \
                     AND EXISTS (SELECT 1 FROM tasks WHERE task_id = ?1 \
                       AND hold_pid = ?2 AND hold_start = ?3 AND hold_boot = ?4)",
                    who,
                )
                .map_err(err)?;
            if inline > 0 {
                tx.execute(
                    "UPDATE tasks SET notify = 0, hold_pid = NULL, hold_start = NULL, \
                     hold_boot = NULL WHERE task_id = ?1",
                    params![id.as_str()],
                )
                .map_err(err)?;
                settled += inline;
                continue;
            }
            settled += tx
                .execute(
                    "UPDATE completions SET acked_at = ?5 WHERE task_id = ?1 AND acked_at IS NULL \
                     AND claim_pid = ?2 AND claim_start = ?3 AND claim_boot = ?4",
                    params![
                        id.as_str(),
                        claimer.pid,
                        claimer.start_ticks as i64,
                        claimer.boot_id,
                        now
                    ],
                )
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(settled)
    }

    /// Gives up `claimer`'s claims on the named completions (a result that
    /// showed them was never sent): each is re-inserted unclaimed with a new
    /// sequence number, to be shown again.
    pub fn unclaim(&mut self, ids: &[TaskId], claimer: &ProcessIdentity) -> Result<()> {
        let path = self.db_path.clone();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        for id in ids {
            requeue(&tx, id.as_str(), claimer).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.touch_events();
        Ok(())
    }

    /// Makes `holder` the holder of a task's completion: when the task
    /// ends, its completion is inserted claimed by `holder`. Called before
    /// the task's shell starts. False if there is no such task this build
    /// may change.
    pub fn hold_completion(&self, id: &TaskId, holder: &ProcessIdentity) -> Result<bool> {
        let n = self
            .conn
            .execute(
                &format!(
                    "UPDATE tasks SET hold_pid = ?2, hold_start = ?3, hold_boot = ?4 \
                     WHERE task_id = ?1 AND record_version <= {RECORD_VERSION}"
                ),
                params![
                    id.as_str(),
                    holder.pid,
                    holder.start_ticks as i64,
                    holder.boot_id
                ],
            )
            .map_err(|e| self.db_err(e))?;
        Ok(n == 1)
    }

    /// Ends `holder`'s hold on a task's completion: a completion recorded
    /// later is unclaimed, and one already recorded and claimed by `holder`
    /// is re-inserted unclaimed with a new sequence number (so a push that
    /// skipped it while held sends it now). One transaction, so a task that
    /// ends meanwhile is covered either way.
    pub fn release_hold(&mut self, id: &TaskId, holder: &ProcessIdentity) -> Result<()> {
        let path = self.db_path.clone();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            &format!(
                "UPDATE tasks SET hold_pid = NULL, hold_start = NULL, hold_boot = NULL \
                 WHERE task_id = ?1 AND record_version <= {RECORD_VERSION}"
            ),
            params![id.as_str()],
        )
        .map_err(err)?;
        requeue(&tx, id.as_str(), holder).map_err(err)?;
        tx.commit().map_err(err)?;
        self.touch_events();
        Ok(())
    }

    /// Voids the claims of dead processes on the session's unacknowledged
    /// completions (module docs, point 2).
    fn void_dead_claims(&mut self, session: &str) -> Result<()> {
        let claimed: Vec<(String, ProcessIdentity)> = {
            let mut stmt = self
                .conn
                .prepare_cached(&format!(
                    "SELECT c.task_id, c.claim_pid, c.claim_start, c.claim_boot \
                     FROM completions c JOIN tasks t ON t.task_id = c.task_id \
                     WHERE c.session = ?1 AND c.acked_at IS NULL AND c.claim_pid IS NOT NULL \
                     AND t.record_version <= {RECORD_VERSION}"
                ))
                .map_err(|e| self.db_err(e))?;
            let rows = stmt
                .query_map(params![session], |r| Ok((r.get(0)?, claim_at(r, 1)?)))
                .map_err(|e| self.db_err(e))?;
            rows.filter_map(|r| match r {
                Ok((id, Some(claim))) => Some(Ok((id, claim))),
                Ok((_, None)) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| self.db_err(e))?
        };
        let mut live = Liveness::default();
        let dead: Vec<_> = claimed
            .into_iter()
            .filter(|(_, claim)| !live.holds(Some(claim)))
            .collect();
        if dead.is_empty() {
            return Ok(());
        }
        let path = self.db_path.clone();
        let err = |source| Error::Store {
            path: path.clone(),
            source,
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        for (id, claim) in &dead {
            requeue(&tx, id, claim).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        self.touch_events();
        Ok(())
    }

    /// Marks the named completions of `session` delivered. Every id must have
    /// a completion in that session (acknowledged before or not); otherwise
    /// nothing is changed and the first unknown id is named. A completion of
    /// a task written by a newer bgtask is refused the same way. Returns how
    /// many were newly acknowledged.
    pub fn ack(&mut self, session: &str, ids: &[TaskId], now: i64) -> Result<usize> {
        self.ack_in(&["completions"], session, ids, now)
    }

    /// Acknowledges the named tasks' rows of `session` in `tables`
    /// (`completions`, `notifications`), all or none: every id must have a
    /// row in one of them, and a task written by a newer bgtask is refused.
    pub(super) fn ack_in(
        &mut self,
        tables: &[&str],
        session: &str,
        ids: &[TaskId],
        now: i64,
    ) -> Result<usize> {
        let path = self.db_path.clone();
        let err = |e| super::store_error(&path, e);
        let has_row = tables
            .iter()
            .map(|t| {
                format!("EXISTS (SELECT 1 FROM {t} x WHERE x.task_id = ?1 AND x.session = ?2)")
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        let tx = self.immediate()?;
        let mut acked = 0;
        for id in ids {
            let version: Option<i64> = tx
                .query_row(
                    &format!(
                        "SELECT t.record_version FROM tasks t WHERE t.task_id = ?1 AND ({has_row})"
                    ),
                    params![id.as_str(), session],
                    |r| r.get(0),
                )
                .optional()
                .map_err(err)?;
            match version {
                None => {
                    return Err(Error::CompletionNotFound {
                        task_id: id.clone(),
                        session: session.to_owned(),
                    })
                }
                Some(v) if v > RECORD_VERSION => return Err(Error::NewerRecord(id.clone())),
                Some(_) => {}
            }
            for table in tables {
                acked += tx
                    .execute(
                        &format!(
                            "UPDATE {table} SET acked_at = ?3 WHERE task_id = ?1 AND session = ?2 \
                             AND acked_at IS NULL"
                        ),
                        params![id.as_str(), session, now],
                    )
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(acked)
    }

    /// Completions matching `filter` that no live process claims.
    fn visible_where(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<(i64, Completion)>> {
        let rows = select(&self.conn, &self.home, filter, args).map_err(|e| self.db_err(e))?;
        let mut live = Liveness::default();
        Ok(rows
            .into_iter()
            .filter(|(_, _, claim)| !live.holds(claim.as_ref()))
            .map(|(seq, c, _)| (seq, c))
            .collect())
    }
}

pub(super) type Row3 = (i64, Completion, Option<ProcessIdentity>);

/// Completions matching `filter` (of tasks this build can read), oldest
/// first, with their claims.
pub(super) fn select(
    conn: &rusqlite::Connection,
    home: &std::path::Path,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Row3>> {
    let sql = format!(
        "SELECT {COMPLETION_COLUMNS} FROM completions c JOIN tasks t ON t.task_id = c.task_id \
         WHERE t.record_version <= {RECORD_VERSION} AND {filter} ORDER BY c.seq"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, |r| completion_from_row(home, r))?;
    rows.collect()
}

/// A claim stored from column `first` on (pid, start ticks, boot id).
pub(super) fn claim_at(r: &Row<'_>, first: usize) -> rusqlite::Result<Option<ProcessIdentity>> {
    let pid: Option<u32> = r.get(first)?;
    let start: Option<i64> = r.get(first + 1)?;
    let boot: Option<String> = r.get(first + 2)?;
    Ok(match (pid, start, boot) {
        // Claims keep no namespace: one checked from another pid namespace
        // looks ended, so its completion may be shown twice, never lost.
        (Some(pid), Some(start), Some(boot_id)) => Some(ProcessIdentity {
            pid,
            start_ticks: start as u64,
            boot_id,
            pid_ns: String::new(),
        }),
        _ => None,
    })
}

fn completion_from_row(home: &std::path::Path, r: &Row<'_>) -> rusqlite::Result<Row3> {
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
            stdout_path: super::stdout_path(home, &task_id),
            stderr_path: super::stderr_path(home, &task_id),
            task_id,
            session: r.get(2)?,
            status: crate::task::Status::from_stored(&status),
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
            sandbox: r
                .get::<_, Option<String>>(15)?
                .and_then(|text| serde_json::from_str(&text).ok()),
            label: r.get(16)?,
        },
        claim_at(r, 12)?,
    ))
}
