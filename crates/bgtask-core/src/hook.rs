//! What agents' hooks need of a session (`bgtask hook AGENT`): its pending
//! notifications, claimed for one delivery; the live tasks that may hold
//! or wake a turn; and waiting for the next notification, with at most one
//! waiter per session (a newer one supersedes the older).
//!
//! Delivery keeps the outbox's invariant (`store/outbox.rs`): a hook claims
//! what it is about to print, prints it, then settles it. A hook killed
//! before it settles leaves a void claim, and the next reader shows the
//! notification again: twice at worst, never lost.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::service::{this_process, ListRequest, Service};
use crate::store::Claimed;
use crate::task::{Completion, Task};
use crate::waiter::Waiter;

/// How a wait for the next notification ended.
#[derive(Debug)]
pub enum Next {
    /// Notifications claimed by this process: print them, then settle.
    Delivered(Claimed),
    /// No live task of the session may notify: nothing will come.
    Nothing,
    /// The wait's limit passed first.
    TimedOut,
    /// A newer waiter of the session took over.
    Superseded,
}

impl Service {
    /// THE read of a session's pending notifications for hooks: claims,
    /// oldest first, those that fit `budget` bytes as `cost` counts them
    /// (the first always). Every kind of notification a hook delivers
    /// comes through here (today: task completions).
    pub fn claim_pending(
        &self,
        budget: usize,
        cost: impl Fn(&Completion) -> usize,
    ) -> Result<Claimed> {
        let mut room = budget;
        let mut first = true;
        self.claim_completions(|c| {
            let size = cost(c);
            if size > room && !first {
                return false;
            }
            first = false;
            room = room.saturating_sub(size);
            true
        })
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

    /// Waits up to `timeout` for the session's next notification and
    /// claims it (with any others pending, within `budget`), as the one
    /// waiter of the session: registering supersedes an older waiter,
    /// which returns [`Next::Superseded`].
    pub fn next_notification(
        &self,
        timeout: Duration,
        budget: usize,
        cost: impl Fn(&Completion) -> usize,
    ) -> Result<Next> {
        let me = this_process().ok_or_else(|| {
            Error::io(
                "cannot identify this process in",
                "/proc/self/stat",
                std::io::Error::other("unreadable"),
            )
        })?;
        // Nothing pending and nothing that could notify: no waiter at all
        // (and nothing written in a home that may not exist).
        let claimed = self.claim_pending(budget, &cost)?;
        if !claimed.completions.is_empty() {
            return Ok(Next::Delivered(claimed));
        }
        if self.turn_holders()?.is_empty() {
            return Ok(Next::Nothing);
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
            let claimed = self.claim_pending(budget, &cost)?;
            if !claimed.completions.is_empty() {
                let _ = remove_if_mine(&slot, &mark);
                return Ok(Next::Delivered(claimed));
            }
            let holders = self.turn_holders()?;
            if holders.is_empty() {
                let _ = remove_if_mine(&slot, &mark);
                return Ok(Next::Nothing);
            }
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

    /// The file naming the session's current waiter.
    fn waiter_slot(&self) -> PathBuf {
        self.store()
            .home()
            .join("waiters")
            .join(format!("{:016x}", fnv1a(self.session().as_bytes())))
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
