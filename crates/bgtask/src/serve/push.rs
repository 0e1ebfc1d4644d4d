//! Server-initiated notifications: `bash_completed` when a task of the
//! session ends (whoever started it), and `bash_long_running` reminders.
//!
//! One thread sleeps on the store's events watch (inotify), woken by every
//! state transition, with a timeout only when a reminder is due: no polling
//! tick. Each completion is pushed once per server (tracked by outbox
//! sequence number); pushing never acknowledges.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use bgtask_core::compact::compact;
use bgtask_core::monitor::now_ms;
use bgtask_core::output::str_tail;
use bgtask_core::{ListRequest, Status, TaskId};

use super::Server;
use bgtask_core::rpc::notification;

/// Largest preview in a `bash_completed` frame.
const PREVIEW_BYTES: usize = 1024;

pub fn start(server: Arc<Server>) {
    let spawned = std::thread::Builder::new()
        .name("bgtask-push".into())
        .spawn(move || {
            if let Err(e) = run(&server) {
                tracing::error!("completion push stopped: {e}");
            }
        });
    if let Err(e) = spawned {
        tracing::error!("cannot start the completion push thread: {e}");
    }
}

fn run(server: &Server) -> bgtask_core::Result<()> {
    let mut session = server.session();
    let watch = session.service.watch_events()?;
    let mut last_seq = session.pushed_after;
    let mut due: HashMap<TaskId, Instant> = HashMap::new();
    loop {
        let current = server.session();
        if current.generation != session.generation {
            // Another session: its completions since it became current. The
            // same session again: carry on, so none is skipped or repeated.
            if current.service.session() != session.service.session() {
                last_seq = current.pushed_after;
            }
            session = current;
            due.clear();
        }
        for (seq, c) in session.service.completions_after(last_seq)? {
            last_seq = seq;
            due.remove(&c.task_id);
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
                }),
            ));
        }
        let timeout = remind(server, &session, &mut due)?;
        watch.wait(timeout)?;
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
