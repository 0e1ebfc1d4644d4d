//! Waiting without polling: for tasks to end (`wait`, `kill`) and for new
//! output (`logs --follow`). A waiter sleeps in poll(2) on the pidfds of
//! the tasks' owners (a dead monitor wakes it at once) and on an inotify
//! watch of the store's events file (touched after every transition), and
//! re-reads the store only when one of them fires.

use std::io::Write;
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

/// Wakes its owner when any task in the store changes state (no polling).
pub struct EventWatch {
    watch: FileWatch,
}

impl EventWatch {
    /// Sleeps until some task changes state or `timeout` passes; returns
    /// whether an event arrived. Pending events are consumed.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let ready = process::wait_readable(&[self.watch.as_fd()], timeout)
            .map_err(|e| Error::io("cannot wait on", "the events file", e))?;
        self.watch.drain();
        Ok(ready[0])
    }
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
        loop {
            // Drain before reading, so a transition after the read wakes us.
            if let Some(watch) = &slot.watch {
                watch.drain();
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
            if !pidfds_suffice && slot.watch.is_none() {
                slot.watch = Some(self.lend_watch()?);
                continue; // re-read: a change may have come before the watch
            }
            let mut fds: Vec<_> = slot.watch.iter().map(FileWatch::as_fd).collect();
            fds.extend(owners.iter().map(ProcessHandle::as_fd));
            process::wait_readable(&fds, remaining)
                .map_err(|e| Error::io("cannot wait on", self.store().events_path(), e))?;
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
        Ok(EventWatch {
            watch: self.events_watch()?,
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

    /// An events watch for one wait: an idle one of this service's, or a
    /// new one.
    fn lend_watch(&self) -> Result<FileWatch> {
        let idle = self
            .idle_watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match idle {
            Some(watch) => Ok(watch),
            None => self.events_watch(),
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
/// service instead, a watch is closed once, when the service goes. A reused
/// watch may hold events from an earlier wait; the waiter drains it before
/// each read, so at worst it reads the store once more.
struct WatchSlot<'a> {
    service: &'a Service,
    watch: Option<FileWatch>,
}

impl Drop for WatchSlot<'_> {
    fn drop(&mut self) {
        if let Some(watch) = self.watch.take() {
            let mut idle = self
                .service
                .idle_watches
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            idle.push(watch);
        }
    }
}
