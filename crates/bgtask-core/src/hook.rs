//! What agents' hooks need of a session (`bgtask hook AGENT`): its pending
//! notifications of every kind (completions, `ready`, `ready_failed`,
//! `watch_match`), claimed for one delivery; the live tasks that may hold
//! or wake a turn; and waiting for the next notification, with at most one
//! waiter per session (a newer one supersedes the older).
//!
//! Delivery keeps the outbox's invariant (`store/outbox.rs`): a hook claims
//! what it is about to print, prints it, then settles it. A hook killed
//! before it settles leaves a void claim, and the next reader shows the
//! notification again: twice at worst, never lost.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::reconcile::reconcile_task;
use crate::service::{this_process, ListRequest, Service};
use crate::store::{ClaimScope, Pending, PendingClaim};
use crate::task::Task;
use crate::waiter::Waiter;

/// What a waiter stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// It holds the agent's turn (a gate, `claude -p`'s Stop hook): only
    /// tasks that hold a turn keep it waiting.
    Turn,
    /// It waits beside an idle session (Claude Code's asynchronous wake
    /// hook, the Codex queue waiter): watched tasks keep it waiting too.
    Idle,
}

/// How a wait for the next notification ended.
#[derive(Debug)]
pub enum Next {
    /// Notifications claimed by this process: print them, then settle.
    Delivered(PendingClaim),
    /// No live task of the session may notify: nothing will come.
    Nothing,
    /// The wait's limit passed first.
    TimedOut,
    /// A newer waiter of the session took over.
    Superseded,
}

fn me() -> Result<&'static crate::process::ProcessIdentity> {
    this_process().ok_or_else(|| {
        Error::io(
            "cannot identify this process in",
            "/proc/self/stat",
            std::io::Error::other("unreadable"),
        )
    })
}

impl Service {
    /// THE read of a session's pending notifications for hooks: claims for
    /// this process, in one transaction, those of every kind (completions,
    /// `ready`, `ready_failed`, `watch_match`) that no live process claims,
    /// oldest first, while they fit `budget` bytes as `cost` counts them
    /// (the first always). The caller prints them, then
    /// [`Service::settle_pending`]s them; if it dies first, the next
    /// reader shows them again.
    pub fn claim_pending(
        &self,
        budget: usize,
        cost: impl Fn(&Pending) -> usize,
    ) -> Result<PendingClaim> {
        self.claim_scope(ClaimScope::Every, budget, cost, None)
    }

    /// [`Service::claim_pending`] for an inject hook that read `quiet`
    /// before opening the store: when the session has nothing pending and
    /// no live task, `quiet` is recorded, so that the session's next hook
    /// can answer without opening the store while no commit intervenes.
    pub fn claim_pending_noting(
        &self,
        budget: usize,
        cost: impl Fn(&Pending) -> usize,
        quiet: &Quiet,
    ) -> Result<PendingClaim> {
        self.claim_scope(ClaimScope::Every, budget, cost, Some(quiet))
    }

    /// [`Service::claim_pending`] of the kinds beside completions only
    /// (an MCP result claims its completions on their own).
    pub fn claim_other_notifications(
        &self,
        budget: usize,
        cost: impl Fn(&Pending) -> usize,
    ) -> Result<PendingClaim> {
        self.claim_scope(ClaimScope::Others, budget, cost, None)
    }

    fn claim_scope(
        &self,
        scope: ClaimScope,
        budget: usize,
        cost: impl Fn(&Pending) -> usize,
        quiet: Option<&Quiet>,
    ) -> Result<PendingClaim> {
        let mut room = budget;
        let mut first = true;
        let mut store = self.store();
        let mut live_tasks = true;
        if scope == ClaimScope::Every {
            // As in `completions`: a task whose monitor died is recorded
            // ended (with its completion) by whoever notices.
            let live = store.live_in_session(self.session())?;
            live_tasks = !live.is_empty();
            for live in live {
                reconcile_task(&mut store, &live)?;
            }
        }
        // Nothing pending (the common case: every prompt and tool call runs
        // an inject hook): no need to know who this process is.
        if !store.any_pending(self.session(), scope)? {
            // Nothing pending, claimed or not (so no claim a dying hook
            // could leave void), and no live task whose monitor could die
            // without a commit: until the next commit, a hook of this
            // session would find the same.
            if let (Some(quiet), false) = (quiet, live_tasks) {
                quiet.record();
            }
            return Ok(PendingClaim::default());
        }
        let me = me()?;
        let claimed = store.claim_pending(self.session(), me, scope, |p| {
            let size = cost(p);
            if size > room && !first {
                return false;
            }
            first = false;
            room = room.saturating_sub(size);
            true
        })?;
        if !claimed.is_empty() {
            // Claimed, not yet printed: the tests kill a hook here.
            crate::process::fault::point("hook_after_claim");
        }
        Ok(claimed)
    }

    /// Acknowledges what this process claimed and has now delivered.
    pub fn settle_pending(&self, claim: &PendingClaim) -> Result<usize> {
        if claim.is_empty() {
            return Ok(0);
        }
        let me = me()?;
        self.store()
            .settle_pending(&claim.completion_ids(), &claim.note_seqs(), me, now_ms())
    }

    /// Gives up this process's claims (it could not deliver them): they are
    /// shown again by whoever reads next.
    pub fn unclaim_pending(&self, claim: &PendingClaim) -> Result<()> {
        let me = me()?;
        let ids = claim.completion_ids();
        if !ids.is_empty() {
            self.store().unclaim(&ids, me)?;
        }
        self.store().unclaim_notes(&claim.note_seqs(), me)
    }

    /// The session's live tasks that may hold or wake a turn: those that
    /// notify, and are not past what the agent waits for.
    pub fn turn_holders(&self) -> Result<Vec<Task>> {
        Ok(self
            .list(&ListRequest::default())?
            .into_iter()
            .filter(|t| !t.is_terminal() && holds_turn(t))
            .collect())
    }

    /// Waits up to `timeout` for the session's next notification of any
    /// kind and claims it (with any others pending, within `budget`), as
    /// the one waiter of the session: registering supersedes an older
    /// waiter, which returns [`Next::Superseded`].
    pub fn next_notification(
        &self,
        wait: Wait,
        timeout: Duration,
        budget: usize,
        cost: impl Fn(&Pending) -> usize,
    ) -> Result<Next> {
        let me = me()?;
        // Nothing pending and nothing that could notify: no waiter at all
        // (and nothing written in a home that may not exist).
        if let Ok(next) = self.claim_or_nothing(wait, budget, &cost)? {
            return Ok(next);
        }
        let mark = format!("{} {} {}\n", me.pid, me.start_ticks, me.boot_id);
        let slot = self.waiter_slot();
        write_atomically(&slot, &mark)?;
        // Wakes an older waiter, which then finds the slot taken.
        self.touch_events();
        let events = self.store().events_path();
        let mut waiter = Waiter::owning(events).with_timeout(timeout);
        loop {
            waiter.before_read();
            // Another waiter's mark: superseded. No file: a newer waiter
            // just ended and removed it; this one goes on.
            if let Ok(current) = std::fs::read_to_string(&slot) {
                if current != mark {
                    return Ok(Next::Superseded);
                }
            }
            let holders = match self.claim_or_nothing(wait, budget, &cost)? {
                Ok(next) => {
                    let _ = remove_if_mine(&slot, &mark);
                    return Ok(next);
                }
                Err(holders) => holders,
            };
            if waiter.remaining() == Some(Duration::ZERO) {
                let _ = remove_if_mine(&slot, &mark);
                return Ok(Next::TimedOut);
            }
            // The monitors' pidfds too: a monitor that dies without
            // recording the end wakes us to reconcile it.
            let owners = self.end_handles(&holders)?;
            waiter.sleep(&owners, true)?;
        }
    }

    /// What is pending (claimed), or [`Next::Nothing`] when nothing is and
    /// no live task may notify; `None` while one may.
    ///
    /// A claim comes first: a waiter woken by a notification delivers it
    /// without reading the holders (issue 17: the wake hook's latency).
    /// Only when nothing was claimed are the holders read, and then a
    /// claim follows that read: what ends a task's hold (its end, its
    /// readiness outcome) is recorded in the same transaction as its
    /// notification, so a claim after a read that found no holder sees
    /// that notification. (Without the second claim, a task that ended or
    /// became ready between the first claim and the read would be taken
    /// for "nothing will come" and its notification miss the wake-up.)
    fn claim_or_nothing(
        &self,
        wait: Wait,
        budget: usize,
        cost: &impl Fn(&Pending) -> usize,
    ) -> Result<std::result::Result<Next, Vec<Task>>> {
        let claimed = self.claim_pending(budget, cost)?;
        if !claimed.is_empty() {
            return Ok(Ok(Next::Delivered(claimed)));
        }
        let holders = self.wakers(wait)?;
        if !holders.is_empty() {
            return Ok(Err(holders));
        }
        let claimed = self.claim_pending(budget, cost)?;
        if !claimed.is_empty() {
            return Ok(Ok(Next::Delivered(claimed)));
        }
        Ok(Ok(Next::Nothing))
    }

    /// The live tasks a waiter of this kind waits for: the turn holders;
    /// for a waiter beside an idle session ([`Wait::Idle`]) also the tasks
    /// with an active watch, whose matches the agent asked to hear of
    /// (they never hold a turn: a watched server runs for hours).
    pub fn wakers(&self, wait: Wait) -> Result<Vec<Task>> {
        // The live tasks only: the session's history may be long. (One
        // whose monitor died is recorded ended by the next claim, which
        // reconciles the session's live tasks.)
        let live: Vec<Task> = {
            let mut store = self.store();
            // A queue hand-off whose teller died is repaired here too, as
            // a full list would (a queued task holds the turn).
            crate::control::schedule_and_repair(&mut store)?;
            store.live_tasks(self.session())?
        };
        let watched: Vec<crate::task::TaskId> = match wait {
            Wait::Turn => Vec::new(),
            Wait::Idle if live.is_empty() => Vec::new(),
            Wait::Idle => self
                .store()
                .watches(None, Some(self.session()))?
                .into_iter()
                .filter(|w| w.ended_at.is_none())
                .map(|w| w.task_id)
                .collect(),
        };
        Ok(live
            .into_iter()
            .filter(|t| holds_turn(t) || watched.contains(&t.task_id))
            .collect())
    }

    /// The file naming the session's current waiter.
    fn waiter_slot(&self) -> PathBuf {
        self.store()
            .home()
            .join("waiters")
            .join(format!("{:016x}", fnv1a(self.session().as_bytes())))
    }
}

/// What an inject hook read of the store before opening it (see
/// `store/quiet.rs`): the store's commit mark, and whether a hook of the
/// same session found nothing pending and no live task at that same mark.
/// If it did, nothing was committed since, so nothing is pending now and
/// no task can have ended unrecorded: the hook answers without opening
/// the store.
///
/// The mark is read before the store is opened and recorded only after
/// the read that found nothing: a commit between the two leaves the
/// recorded mark older than the database, and the next hook reads it.
#[derive(Debug)]
pub struct Quiet {
    slot: PathBuf,
    /// `session` and the mark, as the slot holds them; `None` when the
    /// mark could not be read.
    seen: Option<String>,
    unchanged: bool,
}

impl Quiet {
    /// Reads the commit mark of the store at `home` and the session's
    /// slot. Call it before this process opens the store: it reads the
    /// WAL index with a descriptor of its own (it declines, reading as
    /// "changed", once a connection was opened).
    pub fn read(home: &Path, session: &str) -> Quiet {
        let slot = home
            .join("waiters")
            .join(format!("quiet-{:016x}", fnv1a(session.as_bytes())));
        let seen = crate::store::commit_mark(home).map(|mark| format!("{session}\n{mark}\n"));
        let unchanged = seen
            .as_ref()
            .is_some_and(|seen| std::fs::read(&slot).is_ok_and(|text| text == seen.as_bytes()));
        Quiet {
            slot,
            seen,
            unchanged,
        }
    }

    /// Whether nothing was committed since a hook of this session found
    /// nothing pending and no live task.
    pub fn unchanged(&self) -> bool {
        self.unchanged
    }

    /// Records the mark read: the session had nothing pending and no live
    /// task as of a read after it. Best effort: a slot not written only
    /// costs the next hook a full read.
    fn record(&self) {
        if let (Some(seen), false) = (&self.seen, self.unchanged) {
            let _ = write_atomically(&self.slot, seen);
        }
    }
}

/// Whether a live task may hold or wake a turn: one that notifies, and,
/// if it has a readiness condition (issue 16), only until that is decided.
/// A dev server started to be used once ready must not hold a turn for
/// as long as it runs. A paused task (issue 21) does not either: it
/// ends only after someone resumes it.
pub fn holds_turn(task: &Task) -> bool {
    task.notify
        && task.status != crate::task::Status::Paused
        && task
            .readiness
            .as_ref()
            .is_none_or(|readiness| readiness.outcome.is_none())
}

/// Replaces `path` with `text` (its directory made if needed, 0700).
fn write_atomically(path: &std::path::Path, text: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = path.parent().unwrap_or(path);
    let err = |e| Error::io("cannot record the session's waiter in", dir, e);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Removes the waiter slot if it still names this waiter.
fn remove_if_mine(path: &std::path::Path, mark: &str) -> std::io::Result<()> {
    if std::fs::read_to_string(path)? == mark {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// FNV-1a: a stable file name per session (sessions are paths and names
/// of any length and bytes).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_slots_are_stable_and_distinct() {
        assert_eq!(fnv1a(b"dir:/a"), fnv1a(b"dir:/a"));
        assert_ne!(fnv1a(b"dir:/a"), fnv1a(b"dir:/b"));
    }
}
