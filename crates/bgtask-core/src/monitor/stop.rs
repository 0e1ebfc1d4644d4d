//! Stopping a task: the decisions (which deadline comes next, why a stop
//! began, how long its grace is) and the two ways the monitor signals the
//! task's tree: a stop's signal ([`signal_tree`]) and the one kill path
//! that ends and reaps everything ([`kill_and_reap`]).

use std::time::{Duration, Instant};

use crate::process::{self, Cgroup, Signal};
use crate::task::TaskId;

/// Why the monitor is ending the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stop {
    /// A kill request (the control channel, the store, SIGTERM).
    Request,
    /// The hard timeout, of this many ms.
    Timeout(u64),
    /// The idle timeout, of this many ms.
    Idle(u64),
}

/// A stop in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stopping {
    pub why: Stop,
    /// When SIGKILL follows; none for a grace too long to end.
    pub kill_at: Option<Instant>,
    /// The last signal sent to the tree.
    pub last_signal: Signal,
    /// Whether SIGKILL was sent.
    pub killed: bool,
}

impl Stopping {
    /// A stop beginning at `now` with `grace_ms` before SIGKILL; the
    /// signal to send now is its `last_signal`.
    pub fn begin(why: Stop, grace_ms: u64, now: Instant) -> Stopping {
        let killed = grace_ms == 0;
        Stopping {
            why,
            kill_at: deadline_after(now, Some(Duration::from_millis(grace_ms))),
            last_signal: if killed { Signal::Kill } else { Signal::Term },
            killed,
        }
    }

    /// The grace ran out: SIGKILL now (once).
    pub fn escalate(&mut self) -> Option<Signal> {
        if self.killed {
            return None;
        }
        self.killed = true;
        self.last_signal = Signal::Kill;
        Some(Signal::Kill)
    }
}

/// The task's own limits, from its record.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub started: Instant,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

/// When the monitor must next act without being woken: the end of a
/// stop's grace, else the earlier of the hard and the idle timeout.
pub(super) fn next_deadline(
    limits: &Limits,
    stopping: Option<&Stopping>,
    last_output: Instant,
) -> Option<Instant> {
    if let Some(s) = stopping {
        return s.kill_at.filter(|_| !s.killed);
    }
    let hard = deadline_after(limits.started, limits.timeout);
    let idle = deadline_after(last_output, limits.idle_timeout);
    [hard, idle].into_iter().flatten().min()
}

/// Which timeout a deadline that passed at `now` was: the hard one if it
/// is due, else the idle one.
pub(super) fn expired(limits: &Limits, now: Instant) -> Stop {
    match limits.timeout {
        Some(t) if deadline_after(limits.started, Some(t)).is_some_and(|d| now >= d) => {
            Stop::Timeout(millis(t))
        }
        _ => Stop::Idle(limits.idle_timeout.map_or(0, millis)),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `start + limit`; none when there is no limit or the sum is beyond what
/// an `Instant` holds (a limit that long never ends the task).
pub(super) fn deadline_after(start: Instant, limit: Option<Duration>) -> Option<Instant> {
    limit.and_then(|limit| start.checked_add(limit))
}

/// A task's process tree as the monitor can reach it.
pub(super) struct Tree<'a> {
    pub id: &'a TaskId,
    pub cgroup: Option<&'a Cgroup>,
    /// The shell's process group, only while the shell is unreaped (after
    /// that its number may name someone else's group).
    pub group: Option<u32>,
}

/// Signals the task's whole tree: its process group, its cgroup (SIGKILL
/// through `cgroup.kill`) or without one every process carrying the
/// task's marker, and every descendant that was reparented to us.
pub(super) fn signal_tree(tree: &Tree<'_>, sig: Signal) {
    if let Some(pgid) = tree.group {
        let _ = process::signal_group(pgid, sig);
    }
    match tree.cgroup {
        Some(cg) if sig == Signal::Kill => {
            let _ = cg.kill();
        }
        Some(cg) => {
            let _ = cg.signal_members(sig);
        }
        None => {
            process::signal_marked(tree.id.as_str(), sig);
        }
    }
    let _ = process::signal_own_children(sig);
}

/// The one kill path: SIGKILL to the whole tree, then reap until no child
/// is left, killing whatever was reparented to us meanwhile, then remove
/// the cgroup. Nothing the task started outlives it unmanaged.
pub(super) fn kill_and_reap(tree: &Tree<'_>) {
    signal_tree(tree, Signal::Kill);
    // Every descendant still running stays below us (a subreaper): no
    // further search for marked processes is needed while reaping.
    loop {
        let _ = process::signal_own_children(Signal::Kill);
        if let Some(cg) = tree.cgroup {
            let _ = cg.kill();
        }
        if !process::reap_one() {
            break;
        }
    }
    if let Some(cg) = tree.cgroup {
        let _ = cg.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits(now: Instant, timeout: Option<u64>, idle: Option<u64>) -> Limits {
        Limits {
            started: now,
            timeout: timeout.map(Duration::from_secs),
            idle_timeout: idle.map(Duration::from_secs),
        }
    }

    #[test]
    fn a_limit_too_long_for_the_clock_is_no_deadline() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Some(Duration::MAX)), None);
        assert_eq!(deadline_after(now, None), None);
        // The longest limit a request can carry is far, but representable.
        let longest = deadline_after(now, Some(Duration::from_millis(u64::MAX)));
        assert!(longest.is_some_and(|d| d > now));
        assert_eq!(deadline_after(now, Some(SECOND)), Some(now + SECOND));
    }

    #[test]
    fn the_next_deadline_is_the_earliest_limit_or_the_grace() {
        let now = Instant::now();
        assert_eq!(next_deadline(&limits(now, None, None), None, now), None);
        let both = limits(now, Some(10), Some(3));
        assert_eq!(next_deadline(&both, None, now), Some(now + 3 * SECOND));
        // Output moves the idle deadline, never the hard one.
        let later = now + 8 * SECOND;
        assert_eq!(next_deadline(&both, None, later), Some(now + 10 * SECOND));
        // While stopping only the grace counts, and nothing after SIGKILL.
        let mut stopping = Stopping::begin(Stop::Request, 500, now);
        let grace_end = now + Duration::from_millis(500);
        assert_eq!(next_deadline(&both, Some(&stopping), now), Some(grace_end));
        assert_eq!(stopping.escalate(), Some(Signal::Kill));
        assert_eq!(stopping.escalate(), None, "SIGKILL is sent once");
        assert_eq!(next_deadline(&both, Some(&stopping), now), None);
    }

    #[test]
    fn a_stop_without_grace_kills_at_once() {
        let now = Instant::now();
        let stopping = Stopping::begin(Stop::Request, 0, now);
        assert_eq!(
            (stopping.last_signal, stopping.killed),
            (Signal::Kill, true)
        );
        let gentle = Stopping::begin(Stop::Timeout(1), 2000, now);
        assert_eq!((gentle.last_signal, gentle.killed), (Signal::Term, false));
    }

    #[test]
    fn an_expired_deadline_is_the_hard_timeout_when_due_else_idle() {
        let now = Instant::now();
        let both = limits(now, Some(10), Some(3));
        assert_eq!(expired(&both, now + 3 * SECOND), Stop::Idle(3000));
        assert_eq!(expired(&both, now + 10 * SECOND), Stop::Timeout(10_000));
        assert_eq!(
            expired(&limits(now, Some(1), None), now + SECOND),
            Stop::Timeout(1000)
        );
    }
}
