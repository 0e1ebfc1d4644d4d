//! Server-initiated notifications: `bash_completed` when a task of the
//! session ends (whoever started it), and `bash_long_running` reminders.
//!
//! One thread sleeps on the store's events watch (inotify), woken by every
//! state transition, with a timeout only when a reminder is due: no polling
//! tick. Each completion is pushed once per server (tracked by outbox
//! sequence number); pushing never acknowledges.
//!
//! The thread never gives up: a store error (the database locked by
//! another process for longer than the busy handler waits, a full disk
//! during a reconcile) is logged and the step retried after a pause that
//! doubles up to `MAX_BACKOFF`, keeping what was already pushed, so every
//! completion recorded meanwhile is still pushed once the store answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use bgtask_core::compact::compact;
use bgtask_core::now_ms;
use bgtask_core::output::str_tail;
use bgtask_core::{EventWatch, ListRequest, Status, TaskId};

use super::Server;
use bgtask_core::protocol::rpc::{self, notification};

/// Largest preview in a `bash_completed` frame.
const PREVIEW_BYTES: usize = 1024;

/// First pause after a failed step, and the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub fn start(server: Arc<Server>) {
    let spawned = std::thread::Builder::new()
        .name("bgtask-push".into())
        .spawn(move || run(&server));
    if let Err(e) = spawned {
        tracing::error!("cannot start the completion push thread: {e}");
    }
}

/// What the push thread keeps between steps.
struct Pusher {
    session: super::Session,
    /// The newest outbox sequence number pushed (or skipped) so far.
    last_seq: i64,
    /// The same for the notifications of the other kinds.
    last_note_seq: i64,
    /// When each running task's next reminder is due.
    due: HashMap<TaskId, Instant>,
}

fn run(server: &Server) {
    let session = server.session();
    let mut pusher = Pusher {
        last_seq: session.pushed_after,
        last_note_seq: session.notes_after,
        session,
        due: HashMap::new(),
    };
    let mut watch = None;
    let mut backoff = FIRST_BACKOFF;
    let mut failing = false;
    loop {
        let stepped = match &watch {
            Some(watch) => pusher.step(server, watch),
            None => pusher.session.service.watch_events().map(|w| {
                watch = Some(w);
            }),
        };
        match stepped {
            Ok(()) => {
                if failing {
                    tracing::warn!("completion push: the store answers again");
                }
                failing = false;
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(
                    "completion push: {}; retrying in {} ms",
                    rpc::error_text(&e),
                    backoff.as_millis()
                );
                failing = true;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Pusher {
    /// Pushes what is new, sends due reminders, then sleeps until the
    /// store changes or the next reminder is due.
    fn step(&mut self, server: &Server, watch: &EventWatch) -> bgtask_core::Result<()> {
        let current = server.session();
        if current.generation != self.session.generation {
            // Another session: its completions since it became current. The
            // same session again: carry on, so none is skipped or repeated.
            if current.service.session() != self.session.service.session() {
                self.last_seq = current.pushed_after;
                self.last_note_seq = current.notes_after;
            }
            self.session = current;
            self.due.clear();
        }
        for (seq, c) in self.session.service.completions_after(self.last_seq)? {
            let preview = compact(&c.output_preview);
            server.send(notification(
                "bash_completed",
                json!({
                    "task_id": c.task_id,
                    "session": c.session,
                    "status": c.status,
                    "exit_code": c.exit_code,
                    "signal": c.signal,
                    "reason": c.reason,
                    "command": c.command,
                    "duration_ms": c.duration_ms,
                    "output_preview": str_tail(&preview, PREVIEW_BYTES),
                    "output_truncated": c.output_truncated,
                    "stdout_path": c.stdout_path.to_string_lossy(),
                    "stderr_path": c.stderr_path.to_string_lossy(),
                    "sandbox": c.sandbox,
                }),
            ));
            // Advanced only once sent: an error in this loop is retried
            // from here, never skipping a completion.
            self.last_seq = seq;
            self.due.remove(&c.task_id);
        }
        // `bash_ready`, `bash_ready_failed`, `bash_watch_match` (issue 16).
        for (seq, n) in self
            .session
            .service
            .notifications_after(self.last_note_seq)?
        {
            let (method, params) = super::notices::frame(&n);
            server.send(notification(&method, params));
            self.last_note_seq = seq;
        }
        let timeout = remind(server, &self.session, &mut self.due)?;
        watch.wait(timeout)?;
        Ok(())
    }
}

/// Sends the reminders that are due; returns how long until the next one.
fn remind(
    server: &Server,
    session: &super::Session,
    due: &mut HashMap<TaskId, Instant>,
) -> bgtask_core::Result<Option<Duration>> {
    let interval = session.long_running_interval_ms;
    if interval == 0 {
        due.clear();
        return Ok(None);
    }
    let interval = Duration::from_millis(interval);
    let running: Vec<_> = session
        .service
        .list(&ListRequest::default())?
        .into_iter()
        .filter(|t| t.notify && matches!(t.status, Status::Running | Status::Killing))
        .collect();
    due.retain(|id, _| running.iter().any(|t| &t.task_id == id));
    let now = Instant::now();
    for task in &running {
        // A task first seen now (including one already running when the
        // server started) waits a full interval before its first reminder.
        let next = due.entry(task.task_id.clone()).or_insert(now + interval);
        if *next <= now {
            server.send(notification(
                "bash_long_running",
                json!({
                    "task_id": task.task_id,
                    "session": task.session,
                    "command": task.command,
                    "elapsed_ms": task.started_at.map(|s| (now_ms() - s).max(0)),
                }),
            ));
            *next = now + interval;
        }
    }
    Ok(due
        .values()
        .min()
        .map(|next| next.saturating_duration_since(now)))
}
