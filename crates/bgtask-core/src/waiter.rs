//! The waiter: the one way bgtask sleeps until something changes, used by
//! `wait`, `wait_any`, `started`, `kill`, `logs --follow` and the servers'
//! push threads (through [`EventWatch`]). A waiter sleeps in poll(2) on the
//! handles that tell the end of the tasks waited for (their owners'
//! pidfds: a monitor exits right after recording the end, and a dead one
//! wakes the waiter to reconcile) and, when those do not suffice, on an
//! inotify watch of the store's events file (touched after every
//! transition). No polling tick: only a deadline, or every
//! `WATCHLESS_POLL` when the kernel refuses an inotify instance.
//!
//! The cycle every user follows:
//! ```text
//! loop { waiter.before_read(); read the store; done? -> return;
//!        waiter.sleep(end handles, whether any change matters)? }
//! ```
//! `before_read` drains the watch before the read, so a transition after
//! the read wakes the next sleep; `sleep` returns at once (false) when it
//! has just armed a watch, because a change may have come before it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, FileWatch, ProcessHandle};

/// How often a waiter re-reads the store when the kernel refuses it an
/// inotify instance (the user's instances are used up): slower than a
/// watch, but a wait must not fail, nor report failure for a task that
/// started, because another program hoards instances.
const WATCHLESS_POLL: Duration = Duration::from_millis(100);

/// Idle events watches a service keeps for later waits (see [`WatchPool`]).
/// A burst of concurrent waits makes one each; all but these are closed
/// when their waits end, so a long-lived server holds a small, fixed
/// number of inotify instances whatever its request history.
const MAX_IDLE_WATCHES: usize = 2;

/// Sleeps until the store changes, for a thread that reads the store after
/// each wake (the servers' push and resource threads): a [`Waiter`] with a
/// watch of its own that wakes on any change. Survives the events file
/// being deleted or replaced (it re-arms on the file now at the path, and
/// wakes so that its owner re-reads). Without an inotify instance (the
/// kernel refused one) it wakes every `WATCHLESS_POLL` and keeps trying to
/// get one.
pub struct EventWatch {
    waiter: Mutex<Waiter<'static>>,
}

impl EventWatch {
    /// A watch on the events file at `path`, armed now if the kernel allows.
    pub(crate) fn new(path: PathBuf) -> EventWatch {
        EventWatch {
            waiter: Mutex::new(Waiter::owning(path)),
        }
    }

    /// Sleeps until some task changes state or `timeout` passes; returns
    /// whether an event arrived (or may have: a re-armed watch, or no
    /// watch). Pending events are consumed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let mut waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner());
        waiter.deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let woke = waiter.sleep(&[], true)?;
        // The owner reads next: drain now, so a change after that read
        // wakes the next wait.
        waiter.before_read();
        Ok(woke != Woke::Deadline)
    }

    /// Adds `path` to the files that wake [`EventWatch::wait`] (`bgtask
    /// top` follows the selected task's output). Call it again after a
    /// wake: a compaction replaces the file, and a watch stays on the
    /// inode it was given.
    pub fn watch_also(&self, path: &Path) -> std::io::Result<()> {
        let waiter = self.waiter.lock().unwrap_or_else(|e| e.into_inner());
        waiter.watch_also(path)
    }
}

/// Why [`Waiter::sleep`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Something may have changed: read again.
    Change,
    /// A watch was armed just now (nothing slept): read again, a change
    /// may have come before the watch.
    Armed,
    /// The deadline passed.
    Deadline,
}

/// One wait's sleeps (see the module doc for the cycle).
pub(crate) struct Waiter<'a> {
    events: PathBuf,
    /// Where a watch comes from: lent by a service's pool (and given back
    /// when the waiter ends), or made by the waiter itself.
    lender: Option<Lender<'a>>,
    watch: Option<EventsFileWatch>,
    /// The kernel refused a watch: the store is re-read every
    /// `WATCHLESS_POLL` instead. A lending waiter asks once; an owning one
    /// asks again at each sleep (it may live as long as its server).
    watchless: bool,
    deadline: Option<Instant>,
}

/// A service's pool of idle watches, and how to make sure the events file
/// exists before a new watch is put on it.
pub(crate) struct Lender<'a> {
    pub pool: &'a WatchPool,
    pub touch: &'a (dyn Fn() + Sync),
}

impl<'a> Waiter<'a> {
    /// A waiter that takes an events watch from `lender` only once a sleep
    /// needs one: a wait for ends alone sleeps on pidfds, and making an
    /// inotify instance costs a grace period when it is closed.
    pub(crate) fn lending(
        lender: Lender<'a>,
        events: PathBuf,
        timeout: Option<Duration>,
    ) -> Waiter<'a> {
        Waiter {
            events,
            lender: Some(lender),
            watch: None,
            watchless: false,
            // A deadline past what the clock can hold is no deadline.
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
        }
    }

    /// A waiter with a watch of its own, armed now (the caller has made
    /// sure the events file exists), and no deadline.
    pub(crate) fn owning(events: PathBuf) -> Waiter<'static> {
        let watch = EventsFileWatch::new(&events).ok();
        Waiter {
            events,
            lender: None,
            watchless: watch.is_none(),
            watch,
            deadline: None,
        }
    }

    /// This waiter, with a deadline `timeout` from now.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Instant::now().checked_add(timeout);
        self
    }

    /// Whether an events watch is armed.
    pub(crate) fn is_watching(&self) -> bool {
        self.watch.is_some()
    }

    /// Adds `path` to the armed watch (`logs --follow` watches the output
    /// files too). Only on an owning waiter: a lent watch goes back to the
    /// pool and must watch nothing else.
    pub(crate) fn watch_also(&self, path: &Path) -> std::io::Result<()> {
        match (&self.watch, &self.lender) {
            (Some(watch), None) => watch.watch.add(path),
            _ => Err(std::io::Error::other("no watch of its own")),
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Call right before each read of what is waited for: re-arms a watch
    /// whose events file was replaced (changes touch the new one) and
    /// drains it, so a change made after the read wakes the next sleep.
    pub(crate) fn before_read(&mut self) {
        self.rearm_if_replaced();
        if let Some(watch) = &self.watch {
            watch.watch.drain();
        }
    }

    /// Re-arms a watch whose events file was replaced; returns whether it did.
    fn rearm_if_replaced(&mut self) -> bool {
        let replaced = self
            .watch
            .as_ref()
            .is_some_and(|w| !w.is_current(&self.events));
        if !replaced {
            return false;
        }
        // Dropped first: a stale watch may hold the last instance.
        self.watch = None;
        self.arm();
        true
    }

    /// Sleeps until one of `owners` becomes readable, any change in the
    /// store if `events` (or if a watch is held anyway), or the deadline.
    pub(crate) fn sleep(&mut self, owners: &[ProcessHandle], events: bool) -> Result<Woke> {
        let remaining = self.remaining();
        if remaining == Some(Duration::ZERO) {
            return Ok(Woke::Deadline);
        }
        if self.rearm_if_replaced() {
            return Ok(Woke::Armed);
        }
        let retry = self.lender.is_none() || !self.watchless;
        if events && self.watch.is_none() && retry {
            self.arm();
            if self.watch.is_some() {
                return Ok(Woke::Armed);
            }
        }
        let mut fds: Vec<_> = self.watch.iter().map(|w| w.watch.as_fd()).collect();
        fds.extend(owners.iter().map(ProcessHandle::as_fd));
        let sleep = match (events && self.watch.is_none(), remaining) {
            (true, Some(left)) => Some(left.min(WATCHLESS_POLL)),
            (true, None) => Some(WATCHLESS_POLL),
            (false, _) => remaining,
        };
        let ready = process::wait_readable(&fds, sleep)
            .map_err(|e| Error::io("cannot wait on", &self.events, e))?;
        let deadline_passed = self.remaining() == Some(Duration::ZERO);
        Ok(if ready.iter().any(|r| *r) || !deadline_passed {
            Woke::Change
        } else {
            Woke::Deadline
        })
    }

    /// Takes a watch on the events file: lent, or made.
    fn arm(&mut self) {
        self.watch = match &self.lender {
            Some(lender) => lender.pool.lend(&self.events, lender.touch),
            None => EventsFileWatch::new(&self.events).ok(),
        };
        self.watchless = self.watch.is_none();
    }
}

impl Drop for Waiter<'_> {
    /// A lent watch goes back to its pool (see [`WatchPool`]).
    fn drop(&mut self) {
        if let (Some(lender), Some(watch)) = (&self.lender, self.watch.take()) {
            lender.pool.give_back(watch);
        }
    }
}

/// An inotify watch on the events file, and the file itself, held open.
/// The file can be deleted or replaced (by hand, by a cleanup script), and
/// a watch stays on the inode it was given, so a user checks
/// [`EventsFileWatch::is_current`] before relying on it. Holding the file
/// open keeps its inode number from being reused by a new file at the same
/// path, which would make a stale watch look current.
struct EventsFileWatch {
    watch: FileWatch,
    file: std::fs::File,
}

impl EventsFileWatch {
    /// Watches the events file at `path` (which must exist).
    fn new(path: &Path) -> std::io::Result<EventsFileWatch> {
        // Opened before the watch is added: if the file is replaced in
        // between, the watch is on the newer file and the next check
        // re-arms, never the other way round.
        let file = std::fs::File::open(path)?;
        let watch = FileWatch::new()?;
        watch.add(path)?;
        Ok(EventsFileWatch { watch, file })
    }

    /// Whether the file at `path` is still the one watched.
    fn is_current(&self, path: &Path) -> bool {
        match (std::fs::metadata(path), self.file.metadata()) {
            (Ok(now), Ok(watched)) => now.dev() == watched.dev() && now.ino() == watched.ino(),
            _ => false,
        }
    }
}

/// The events watches no wait is using, kept by a service for its next
/// waits. Closing an inotify instance waits for an SRCU grace period
/// (5–20 ms here), which a waiter that made its own would pay on every
/// return: a `serve` or `mcp` process, which waits for each background
/// task to start, paid it on every `bash` request. Kept here instead (up
/// to `MAX_IDLE_WATCHES`), a watch is closed once, when the service goes.
/// A reused watch may hold events from an earlier wait; the waiter drains
/// it before each read, so at worst it reads the store once more.
#[derive(Default)]
pub(crate) struct WatchPool {
    idle: Mutex<Vec<EventsFileWatch>>,
}

impl WatchPool {
    /// An idle watch that still watches the file at `events`, or a new one
    /// (after `touch` made sure the file exists); `None` when the kernel
    /// refuses one.
    fn lend(&self, events: &Path, touch: &(dyn Fn() + Sync)) -> Option<EventsFileWatch> {
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match idle {
                Some(watch) if watch.is_current(events) => return Some(watch),
                Some(_stale) => continue,
                None => {
                    touch();
                    return EventsFileWatch::new(events).ok();
                }
            }
        }
    }

    fn give_back(&self, watch: EventsFileWatch) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_WATCHES {
            idle.push(watch);
            return;
        }
        // Closed outside the lock: closing waits for a grace period.
        drop(idle);
        drop(watch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        file.set_modified(std::time::SystemTime::now()).unwrap();
    }

    fn events_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        touch(&path);
        (dir, path)
    }

    #[test]
    fn a_change_after_the_read_wakes_the_next_sleep_and_none_before_it() {
        let (_dir, events) = events_file();
        let mut waiter = Waiter::owning(events.clone());
        assert!(waiter.is_watching());
        // A change before the read is drained by it: the read saw it.
        touch(&events);
        waiter.before_read();
        waiter.deadline = Some(Instant::now() + Duration::from_millis(50));
        assert_eq!(waiter.sleep(&[], true).unwrap(), Woke::Deadline);
        // A change after the read wakes the sleep at once.
        waiter.before_read();
        touch(&events);
        waiter.deadline = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(waiter.sleep(&[], true).unwrap(), Woke::Change);
    }

    #[test]
    fn a_replaced_events_file_is_watched_anew_before_any_sleep() {
        let (dir, events) = events_file();
        let mut waiter = Waiter::owning(events.clone());
        let newer = dir.path().join("events.new");
        touch(&newer);
        std::fs::rename(&newer, &events).unwrap();
        waiter.deadline = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(waiter.sleep(&[], true).unwrap(), Woke::Armed);
        waiter.before_read();
        touch(&events);
        assert_eq!(waiter.sleep(&[], true).unwrap(), Woke::Change);
    }

    #[test]
    fn a_lending_waiter_borrows_only_when_a_change_matters_and_gives_the_watch_back() {
        let (_dir, events) = events_file();
        let pool = WatchPool::default();
        let touch_events = || touch(&events);
        {
            let lender = Lender {
                pool: &pool,
                touch: &touch_events,
            };
            let mut waiter =
                Waiter::lending(lender, events.clone(), Some(Duration::from_millis(20)));
            // Waiting on end handles alone takes no watch.
            assert_eq!(waiter.sleep(&[], false).unwrap(), Woke::Deadline);
            assert!(!waiter.is_watching());
            waiter.deadline = Some(Instant::now() + Duration::from_secs(60));
            assert_eq!(waiter.sleep(&[], true).unwrap(), Woke::Armed);
            assert!(waiter.is_watching());
            // A lent watch watches nothing but the events file.
            assert!(waiter.watch_also(&events).is_err());
        }
        assert_eq!(pool.idle.lock().unwrap().len(), 1);
    }
}
