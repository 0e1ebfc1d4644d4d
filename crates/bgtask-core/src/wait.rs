//! Waiting without polling: for tasks to end (`wait`, `kill`) and for new
//! output (`logs --follow`). A waiter sleeps in poll(2) on the pidfds of
//! the tasks' owners (a dead monitor wakes it at once) and on an inotify
//! watch of the store's events file (touched after every transition), and
//! re-reads the store only when one of them fires.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::StreamChoice;
use crate::error::{Error, Result};
use crate::output::Snapshot;
use crate::process::{self, FileWatch, ProcessHandle};
use crate::service::Service;
use crate::task::{Completion, Status, Task, TaskId};

/// What wakes a waiter.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Waiting for ends: the exit of each task's monitor (its pidfd).
    OwnerExit,
    /// Waiting for any other change: the store's events file too.
    AnyChange,
}

/// How long [`Service::started`] waits for a monitor to start a shell.
const START_PATIENCE_MS: u64 = 10_000;

/// How often a waiter re-reads the store when the kernel refuses it an
/// inotify instance (the user's instances are used up): slower than a
/// watch, but a wait must not fail, nor report failure for a task that
/// started, because another program hoards instances.
const WATCHLESS_POLL: Duration = Duration::from_millis(100);

/// Idle events watches a service keeps for later waits (see `WatchSlot`).
/// A burst of concurrent waits makes one each; all but these are closed
/// when their waits end, so a long-lived server holds a small, fixed
/// number of inotify instances whatever its request history.
const MAX_IDLE_WATCHES: usize = 2;

/// Wakes its owner when any task in the store changes state (no polling).
/// Survives the events file being deleted or replaced: it re-arms on the
/// file now at the path, and reports that as an event so the owner
/// re-reads the store. Without an inotify instance (the kernel refused
/// one) it wakes every `WATCHLESS_POLL` and keeps trying to get one.
pub struct EventWatch {
    path: PathBuf,
    armed: Mutex<Option<EventsFileWatch>>,
}

impl EventWatch {
    /// Sleeps until some task changes state or `timeout` passes; returns
    /// whether an event arrived (or may have: a re-armed watch, or no
    /// watch). Pending events are consumed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        if !armed.as_ref().is_some_and(|w| w.is_current(&self.path)) {
            // Dropped first: a stale watch may hold the last instance.
            *armed = None;
            *armed = EventsFileWatch::new(&self.path).ok();
            if armed.is_some() {
                // Changes between the replacement and now went unseen.
                return Ok(true);
            }
        }
        let Some(watch) = armed.as_ref() else {
            std::thread::sleep(timeout.map_or(WATCHLESS_POLL, |t| t.min(WATCHLESS_POLL)));
            return Ok(true);
        };
        let ready = process::wait_readable(&[watch.watch.as_fd()], timeout)
            .map_err(|e| Error::io("cannot wait on", &self.path, e))?;
        watch.watch.drain();
        Ok(ready[0])
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

/// The events watches no wait is using, kept for the next waits.
#[derive(Default)]
pub(crate) struct WatchPool {
    idle: Mutex<Vec<EventsFileWatch>>,
}

/// The result of waiting for tasks.
#[derive(Clone, Debug, Serialize)]
pub struct WaitOutcome {
    pub tasks: Vec<Task>,
    pub timed_out: bool,
}

impl Service {
    /// Blocks until every task in `ids` is terminal or `timeout_ms` passes.
    pub fn wait(&self, ids: &[TaskId], timeout_ms: Option<u64>) -> Result<WaitOutcome> {
        self.wait_until(ids, timeout_ms, Wake::OwnerExit, |tasks| {
            tasks.iter().all(Task::is_terminal)
        })
    }

    /// Blocks until any task in `ids` is terminal or `timeout_ms` passes.
    pub fn wait_any(&self, ids: &[TaskId], timeout_ms: Option<u64>) -> Result<WaitOutcome> {
        self.wait_until(ids, timeout_ms, Wake::OwnerExit, |tasks| {
            tasks.iter().any(Task::is_terminal)
        })
    }

    /// Returns `task` once its monitor has started the shell (or recorded
    /// that it could not): `spawn` returns while the task is `starting`.
    pub fn started(&self, task: Task) -> Result<Task> {
        if task.status != Status::Starting {
            return Ok(task);
        }
        let ids = std::slice::from_ref(&task.task_id);
        let waited = self.wait_until(ids, Some(START_PATIENCE_MS), Wake::AnyChange, |tasks| {
            tasks.iter().all(|t| t.status != Status::Starting)
        })?;
        Ok(waited.tasks.into_iter().next().unwrap_or(task))
    }

    fn wait_until(
        &self,
        ids: &[TaskId],
        timeout_ms: Option<u64>,
        wake: Wake,
        done: impl Fn(&[Task]) -> bool,
    ) -> Result<WaitOutcome> {
        // A deadline past what the clock can hold is no deadline.
        let deadline =
            timeout_ms.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)));
        // The events watch is taken only when the owners' pidfds do not
        // suffice, and is lent rather than made (see `WatchSlot`).
        let mut slot = WatchSlot {
            service: self,
            watch: None,
        };
        let events = self.store().events_path();
        // Whether the kernel refused a watch: then the store is re-read
        // every `WATCHLESS_POLL` instead.
        let mut watchless = false;
        loop {
            if slot.watch.as_ref().is_some_and(|w| !w.is_current(&events)) {
                // The events file was replaced: changes touch the new one.
                slot.watch = None;
                slot.watch = self.lend_watch(&events);
                watchless = slot.watch.is_none();
            }
            // Drain before reading, so a transition after the read wakes us.
            if let Some(watch) = &slot.watch {
                watch.watch.drain();
            }
            let tasks = ids
                .iter()
                .map(|id| self.get(id))
                .collect::<Result<Vec<_>>>()?;
            if done(&tasks) {
                return Ok(WaitOutcome {
                    tasks,
                    timed_out: false,
                });
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if remaining == Some(Duration::ZERO) {
                return Ok(WaitOutcome {
                    tasks,
                    timed_out: true,
                });
            }
            let owners = self.owner_handles(&tasks)?;
            // A task's end is recorded by its monitor (its owner from the
            // start), which exits right after, or by whoever finds the
            // monitor dead: waiting for an end, its pidfd is enough.
            let live = tasks.iter().filter(|t| !t.is_terminal()).count();
            let pidfds_suffice = wake == Wake::OwnerExit && owners.len() == live;
            if !pidfds_suffice && slot.watch.is_none() && !watchless {
                slot.watch = self.lend_watch(&events);
                watchless = slot.watch.is_none();
                continue; // re-read: a change may have come before the watch
            }
            let mut fds: Vec<_> = slot.watch.iter().map(|w| w.watch.as_fd()).collect();
            fds.extend(owners.iter().map(ProcessHandle::as_fd));
            let sleep = match (watchless && !pidfds_suffice, remaining) {
                (true, Some(left)) => Some(left.min(WATCHLESS_POLL)),
                (true, None) => Some(WATCHLESS_POLL),
                (false, _) => remaining,
            };
            process::wait_readable(&fds, sleep)
                .map_err(|e| Error::io("cannot wait on", &events, e))?;
        }
    }

    /// pidfds of the owners of the live tasks among `tasks`.
    fn owner_handles(&self, tasks: &[Task]) -> Result<Vec<ProcessHandle>> {
        let store = self.store();
        let mut handles = Vec::new();
        for task in tasks.iter().filter(|t| !t.is_terminal()) {
            if let Some(owner) = store.live(&task.task_id)?.and_then(|l| l.owner) {
                handles.extend(owner.open());
            }
        }
        Ok(handles)
    }

    /// A watch that wakes when any task in the store changes state.
    pub fn watch_events(&self) -> Result<EventWatch> {
        let path = {
            let store = self.store();
            store.touch_events();
            store.events_path()
        };
        // Without an instance now, it keeps trying on each wait.
        let armed = EventsFileWatch::new(&path).ok();
        Ok(EventWatch {
            path,
            armed: Mutex::new(armed),
        })
    }

    /// Completions of this session recorded after outbox sequence `after`,
    /// with their sequence numbers, oldest first.
    pub fn completions_after(&self, after: i64) -> Result<Vec<(i64, Completion)>> {
        self.store().completions_after(self.session(), after)
    }

    /// The newest outbox sequence number in the store.
    pub fn last_completion_seq(&self) -> Result<i64> {
        self.store().last_completion_seq()
    }

    /// An events watch for one wait: an idle one of this service's that
    /// still watches the file at `events`, or a new one; `None` when the
    /// kernel refuses one.
    fn lend_watch(&self, events: &Path) -> Option<EventsFileWatch> {
        loop {
            let idle = self
                .watches
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            match idle {
                Some(watch) if watch.is_current(events) => return Some(watch),
                Some(_stale) => continue,
                None => {
                    self.store().touch_events();
                    return EventsFileWatch::new(events).ok();
                }
            }
        }
    }

    fn events_watch(&self) -> Result<FileWatch> {
        let path = {
            let store = self.store();
            store.touch_events();
            store.events_path()
        };
        let watch = FileWatch::new().map_err(|e| Error::io("cannot watch", &path, e))?;
        watch
            .add(&path)
            .map_err(|e| Error::io("cannot watch", &path, e))?;
        Ok(watch)
    }

    /// Writes a task's output to `sink` as it is produced, until the task
    /// ends and everything its files hold is written: from the start, or
    /// from the last `tail` bytes of each stream. Stdout and stderr are
    /// interleaved in the order reads find them.
    ///
    /// Positions are kept in stream bytes (see [`Snapshot`]), not file
    /// offsets, so output that the cap dropped while following is announced
    /// with its exact size and nothing after it is missed.
    pub fn follow(
        &self,
        id: &TaskId,
        stream: StreamChoice,
        tail: Option<u64>,
        sink: &mut dyn Write,
    ) -> Result<()> {
        let task = self.get(id)?;
        let stream_cap = task.max_output_bytes / 2;
        let paths = match stream {
            StreamChoice::Stdout => vec![task.stdout_path],
            StreamChoice::Stderr => vec![task.stderr_path],
            StreamChoice::All => vec![task.stdout_path, task.stderr_path],
        };
        let mut positions = Vec::with_capacity(paths.len());
        for path in &paths {
            let start = match (tail, open_snapshot(path, stream_cap)?) {
                (Some(max), Some(snapshot)) => snapshot
                    .tail_start(max)
                    .map_err(|e| Error::io("cannot read output", path, e))?,
                _ => 0,
            };
            positions.push(start);
        }
        let watch = self.events_watch()?;
        loop {
            watch.drain();
            // Compaction replaces a file: watch whichever file is there now
            // (the watch of a replaced one fires as its link count drops).
            for path in &paths {
                match watch.add(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io("cannot watch", path, e))
                    }
                    _ => {}
                }
            }
            let ended = self.get(id)?.is_terminal();
            for (path, pos) in paths.iter().zip(&mut positions) {
                *pos = copy_stream(path, stream_cap, *pos, sink)?;
            }
            sink.flush()
                .map_err(|e| Error::io("cannot write", "stdout", e))?;
            if ended {
                return Ok(());
            }
            let owners = self.owner_handles(&[self.get(id)?])?;
            let mut fds = vec![watch.as_fd()];
            fds.extend(owners.iter().map(ProcessHandle::as_fd));
            process::wait_readable(&fds, None)
                .map_err(|e| Error::io("cannot wait on", self.store().events_path(), e))?;
        }
    }
}

fn open_snapshot(path: &std::path::Path, stream_cap: u64) -> Result<Option<Snapshot>> {
    Snapshot::open(path, stream_cap).map_err(|e| Error::io("cannot read output", path, e))
}

/// Writes everything in one output file's stream from position `pos` on;
/// returns the new position. Output the cap dropped in between is
/// announced with its size.
fn copy_stream(
    path: &std::path::Path,
    stream_cap: u64,
    mut pos: u64,
    sink: &mut dyn Write,
) -> Result<u64> {
    const CHUNK: u64 = 1 << 20;
    let Some(snapshot) = open_snapshot(path, stream_cap)? else {
        return Ok(pos);
    };
    let write = |sink: &mut dyn Write, bytes: &[u8]| {
        sink.write_all(bytes)
            .map_err(|e| Error::io("cannot write", "stdout", e))
    };
    loop {
        let read = snapshot
            .read_stream(pos, CHUNK)
            .map_err(|e| Error::io("cannot read output", path, e))?;
        if read.skipped > 0 {
            let marker = format!(
                "\n[bgtask: output was capped while following; {} bytes skipped]\n",
                read.skipped
            );
            write(sink, marker.as_bytes())?;
        }
        if read.data.is_empty() && read.skipped == 0 {
            return Ok(pos);
        }
        write(sink, &read.data)?;
        pos = read.next;
    }
}

/// The events watch of one wait, if it took one; given back to the service
/// when the wait ends. Closing an inotify instance waits for an SRCU grace
/// period (5–20 ms here), which a waiter that made its own would pay on
/// every return: a `serve` or `mcp` process, which waits for each
/// background task to start, paid it on every `bash` request. Kept by the
/// service instead (up to `MAX_IDLE_WATCHES`), a watch is closed once, when
/// the service goes. A reused watch may hold events from an earlier wait;
/// the waiter drains it before each read, so at worst it reads the store
/// once more.
struct WatchSlot<'a> {
    service: &'a Service,
    watch: Option<EventsFileWatch>,
}

impl Drop for WatchSlot<'_> {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            let mut idle = self
                .service
                .watches
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_WATCHES {
                idle.push(watch);
                return;
            }
            // Closed outside the lock: closing waits for a grace period.
            drop(idle);
            drop(watch);
        }
    }
}
