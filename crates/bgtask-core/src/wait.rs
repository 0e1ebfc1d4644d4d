//! Waiting for tasks: `wait`, `wait_any` and `started` (for states) and
//! `follow` (for new output), all on the one waiter (`waiter.rs`): they
//! read the store, and sleep on what tells them it may have changed.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::config::StreamChoice;
use crate::error::{Error, Result};
use crate::executor;
use crate::output::Snapshot;
use crate::process::ProcessHandle;
use crate::service::Service;
use crate::task::{Completion, Status, Task, TaskId};
use crate::waiter::{EventWatch, Lender, Waiter};

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
            Ok(tasks.iter().all(Task::is_terminal))
        })
    }

    /// Blocks until any task in `ids` is terminal or `timeout_ms` passes.
    pub fn wait_any(&self, ids: &[TaskId], timeout_ms: Option<u64>) -> Result<WaitOutcome> {
        self.wait_until(ids, timeout_ms, Wake::OwnerExit, |tasks| {
            Ok(tasks.iter().any(Task::is_terminal))
        })
    }

    /// Blocks until every task in `ids` is terminal or `timeout_ms`
    /// passes, handing each task to `each` once, as it is found ended
    /// (`wait` of several tasks shows them as they end). One wait for all
    /// of them: the tasks still running are not read again at each end.
    pub fn wait_each(
        &self,
        ids: &[TaskId],
        timeout_ms: Option<u64>,
        mut each: impl FnMut(&Task) -> Result<()>,
    ) -> Result<WaitOutcome> {
        let mut told = vec![false; ids.len()];
        self.wait_until(ids, timeout_ms, Wake::OwnerExit, |tasks| {
            for (task, told) in tasks.iter().zip(&mut told) {
                if task.is_terminal() && !*told {
                    *told = true;
                    each(task)?;
                }
            }
            Ok(told.iter().all(|t| *t))
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
            Ok(tasks.iter().all(|t| t.status != Status::Starting))
        })?;
        Ok(waited.tasks.into_iter().next().unwrap_or(task))
    }

    /// Blocks until `done` holds for `ids` (read from the store on every
    /// change of any task: readiness, watches, notifications) or
    /// `timeout_ms` passes. The seam for a new wait condition.
    pub(crate) fn wait_for_change(
        &self,
        ids: &[TaskId],
        timeout_ms: Option<u64>,
        done: impl Fn(&[Task]) -> bool,
    ) -> Result<WaitOutcome> {
        self.wait_until(ids, timeout_ms, Wake::AnyChange, |tasks| Ok(done(tasks)))
    }

    fn wait_until(
        &self,
        ids: &[TaskId],
        timeout_ms: Option<u64>,
        wake: Wake,
        mut done: impl FnMut(&[Task]) -> Result<bool>,
    ) -> Result<WaitOutcome> {
        let touch = || self.touch_events();
        let lender = Lender {
            pool: &self.watches,
            touch: &touch,
        };
        let events = self.store().events_path();
        let mut waiter = Waiter::lending(lender, events, timeout_ms.map(Duration::from_millis));
        let mut tasks: Vec<Task> = Vec::with_capacity(ids.len());
        let mut owners = Owners::default();
        let mut first = true;
        loop {
            waiter.before_read();
            if std::mem::take(&mut first) || wake == Wake::AnyChange {
                tasks = ids.iter().map(|id| self.get(id)).collect::<Result<_>>()?;
                owners = Owners::default();
            } else {
                // Waiting for ends only: a task read terminal stays so, and
                // a local task whose owner has not exited has not ended
                // either (its end is recorded by that owner, which exits
                // right after, or by whoever finds it dead). So only those
                // are read again: a `wait` on many tasks does not re-read
                // every one of them at each end (issue 21: that cost
                // milliseconds per hand-off while the next task started).
                owners.forget_exited();
                for (index, id) in ids.iter().enumerate() {
                    let task = &tasks[index];
                    // A Slurm task's owner (the store's watcher) outlives
                    // the ends it records: read at each wake.
                    let unwatched = !owners.watches(index) || task.executor != "local";
                    if !task.is_terminal() && unwatched {
                        tasks[index] = self.get(id)?;
                    }
                }
            }
            if done(&tasks)? {
                return Ok(WaitOutcome {
                    tasks,
                    timed_out: false,
                });
            }
            if waiter.remaining() == Some(Duration::ZERO) {
                // What a timeout reports is read now, not at the last wake.
                for (task, id) in tasks.iter_mut().zip(ids) {
                    if !task.is_terminal() {
                        *task = self.get(id)?;
                    }
                }
                return Ok(WaitOutcome {
                    tasks,
                    timed_out: true,
                });
            }
            owners.open_missing(self, &tasks)?;
            // A task's end is recorded by its monitor (its owner from the
            // start), which exits right after, or by whoever finds the
            // monitor dead: waiting for an end, its pidfd is enough.
            let live = tasks.iter().filter(|t| !t.is_terminal()).count();
            // A Slurm task's owner is the store's watcher, which outlives
            // the ends it records: its pidfd tells only of its death.
            let pidfds_suffice = wake == Wake::OwnerExit
                && owners.handles.len() == live
                && tasks
                    .iter()
                    .all(|t| t.is_terminal() || t.executor == "local");
            waiter.sleep(&owners.handles, !pidfds_suffice)?;
        }
    }

    /// What tells the end of each live task among `tasks` (its owner's
    /// pidfd, for a local task), where the task's engine has one.
    pub(crate) fn end_handles(&self, tasks: &[Task]) -> Result<Vec<ProcessHandle>> {
        let store = self.store();
        let mut handles = Vec::new();
        for task in tasks.iter().filter(|t| !t.is_terminal()) {
            if let Some(live) = store.live(&task.task_id)? {
                handles.extend(executor::of(&live).end_handle(&live));
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
        Ok(EventWatch::new(path))
    }

    /// A watch that wakes when task `id` writes output on either stream
    /// (or a compaction replaces its stdout file), and on any change of
    /// the store: for a view following one task's output (`bgtask top`),
    /// which can so also notice, without a timer, that it should stop. The
    /// caller re-adds the stderr file after each wake
    /// ([`EventWatch::watch_also`]).
    pub fn watch_output(&self, id: &TaskId) -> Result<EventWatch> {
        let task = self.get(id)?;
        let events = self.store().events_path();
        let watch = EventWatch::new(task.stdout_path);
        // Not there yet (the task is starting): the stdout watch, or its
        // absence, wakes the caller, which adds it then.
        let _ = watch.watch_also(&task.stderr_path);
        let _ = watch.watch_also(&events);
        Ok(watch)
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
        let events = {
            let store = self.store();
            store.touch_events();
            store.events_path()
        };
        let mut waiter = Waiter::owning(events);
        if !waiter.is_watching() {
            let e = std::io::Error::other("the kernel refused an inotify instance");
            return Err(Error::io("cannot watch", self.store().events_path(), e));
        }
        loop {
            waiter.before_read();
            // Compaction replaces a file: watch whichever file is there now
            // (the watch of a replaced one fires as its link count drops).
            for path in &paths {
                match waiter.watch_also(path) {
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
            let owners = self.end_handles(&[self.get(id)?])?;
            waiter.sleep(&owners, true)?;
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

/// The open pidfds of the live tasks' owners a wait sleeps on, kept
/// across wakes, each with the index of its task.
#[derive(Default)]
struct Owners {
    handles: Vec<ProcessHandle>,
    tasks: Vec<usize>,
}

impl Owners {
    /// Whether the owner of the task at `index` is watched.
    fn watches(&self, index: usize) -> bool {
        self.tasks.contains(&index)
    }

    /// Forgets the owners that exited (their tasks are then read again).
    fn forget_exited(&mut self) {
        let mut i = 0;
        while i < self.handles.len() {
            if self.handles[i].has_exited() {
                self.handles.swap_remove(i);
                self.tasks.swap_remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Opens the owner of each live task not watched yet (a Slurm task's
    /// is its watcher: its death wakes the wait, which then reads the
    /// task and so has a new watcher take over).
    fn open_missing(&mut self, service: &Service, tasks: &[Task]) -> Result<()> {
        for (index, task) in tasks.iter().enumerate() {
            if task.is_terminal() || self.watches(index) {
                continue;
            }
            if let Some(handle) = service.end_handles(std::slice::from_ref(task))?.pop() {
                self.handles.push(handle);
                self.tasks.push(index);
            }
        }
        Ok(())
    }
}
