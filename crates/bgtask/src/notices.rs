//! The CLI's readiness, watches and notifications (issue 16): `run
//! --ready-*`, `wait --ready`, `watch`, `unwatch`, `notifications`, and
//! `ack` with notification ids.

use anyhow::Result;
use clap::Args;

use bgtask_core::ready::{ReadyCondition, ReadySpec};
use bgtask_core::{
    Error, Notification, NotificationId, ReadyState, Service, Task, TaskId, Watch, WatchRequest,
};

use crate::cli::RunArgs;
use crate::render;

/// Exit code when readiness timed out.
const EXIT_TIMEOUT: u8 = 124;

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The task to watch (with --list: only its watches)
    #[arg(required_unless_present = "list")]
    pub task_id: Option<String>,
    /// Regular expression matched against each line (ANSI escapes stripped)
    #[arg(required_unless_present = "list", conflicts_with = "list")]
    pub pattern: Option<String>,
    /// End the watch after its first match
    #[arg(long, conflicts_with = "list")]
    pub once: bool,
    /// Least time between two notifications; matches in between are
    /// counted and reported with the next one ("+N more matches")
    #[arg(long, default_value = "10s", value_parser = crate::cli::duration_some, value_name = "DUR")]
    pub cooldown: u64,
    /// List watches (of TASK_ID, or of this session's tasks)
    #[arg(long)]
    pub list: bool,
}

/// The readiness condition `run`'s flags ask for, if any.
pub fn ready_spec(args: &RunArgs) -> Result<Option<ReadySpec>> {
    let condition = match (&args.ready_log, args.ready_port, &args.ready_http) {
        (Some(pattern), _, _) => ReadyCondition::Log {
            pattern: pattern.clone(),
        },
        (_, Some(port), _) => ReadyCondition::Port {
            port: bgtask_core::ready::validate_port(port)?,
        },
        (_, _, Some(url)) => ReadyCondition::Http { url: url.clone() },
        _ => {
            if args.kill_if_not_ready {
                return Err(Error::InvalidArgument(
                    "--kill-if-not-ready needs --ready-log, --ready-port or --ready-http".into(),
                )
                .into());
            }
            return Ok(None);
        }
    };
    Ok(Some(ReadySpec {
        condition,
        timeout_ms: args.ready_timeout,
        kill_if_not_ready: args.kill_if_not_ready,
    }))
}

/// `run` with a readiness condition: waits for it, prints the task, and
/// exits 0 (ready), 1 (ended first; its tail on stderr) or 124 (timeout).
pub fn run_ready(
    service: &Service,
    task: Task,
    wake: Option<std::os::fd::OwnedFd>,
    json: bool,
) -> Result<u8> {
    let (task, _) = service.until_ready(task, wake)?;
    if json {
        render::json(&task)?;
    }
    print_ready(service, std::slice::from_ref(&task), false, !json)
}

/// `wait --ready`.
pub fn wait_ready(
    service: &Service,
    ids: &[TaskId],
    timeout_ms: Option<u64>,
    json: bool,
) -> Result<u8> {
    let outcome = service.wait_ready(ids, timeout_ms)?;
    let code = print_ready(service, &outcome.tasks, json, true)?;
    if outcome.timed_out && code == 0 {
        let pending: Vec<_> = outcome
            .tasks
            .iter()
            .filter(|t| t.ready_state() == ReadyState::Pending)
            .map(|t| t.task_id.to_string())
            .collect();
        eprintln!(
            "bgtask: timed out waiting for {} to be ready",
            pending.join(", ")
        );
        return Ok(EXIT_TIMEOUT);
    }
    Ok(code)
}

/// Prints the tasks (as `wait` does: JSON as an array) if `print`, says
/// on stderr why any is not ready; the exit code.
fn print_ready(service: &Service, tasks: &[Task], json: bool, print: bool) -> Result<u8> {
    if print {
        render::tasks(tasks, json)?;
    }
    let mut code = 0;
    for task in tasks {
        let detail = task
            .readiness
            .as_ref()
            .and_then(|r| r.detail.clone())
            .unwrap_or_default();
        match task.ready_state() {
            ReadyState::Ready | ReadyState::Pending => {}
            ReadyState::Ended => {
                eprintln!("bgtask: {} did not become ready: {detail}", task.task_id);
                if let Ok(status) = service.status(&task.task_id, 2048) {
                    eprint!("{}", render::printable(&status.output_tail, true));
                    if !status.output_tail.ends_with('\n') && !status.output_tail.is_empty() {
                        eprintln!();
                    }
                }
                code = code.max(1);
            }
            ReadyState::TimedOut => {
                eprintln!("bgtask: {} did not become ready: {detail}", task.task_id);
                code = EXIT_TIMEOUT;
            }
        }
    }
    Ok(code)
}

/// `watch`: adds a watch (prints its id), or lists watches.
pub fn watch(service: &Service, args: WatchArgs, json: bool) -> Result<u8> {
    let task = args
        .task_id
        .as_deref()
        .map(|t| service.resolve_id(t))
        .transpose()?;
    if args.list {
        let watches = service.watches(task.as_ref())?;
        if json {
            render::json(&watches)?;
        } else {
            for w in &watches {
                render::line(&watch_line(w))?;
            }
        }
        return Ok(0);
    }
    let (Some(task_id), Some(pattern)) = (task, args.pattern) else {
        return Err(Error::InvalidArgument("watch needs TASK_ID and REGEX".into()).into());
    };
    let watch = service.watch(&WatchRequest {
        task_id,
        pattern,
        once: args.once,
        cooldown_ms: Some(args.cooldown),
    })?;
    if json {
        render::json(&watch)?;
    } else {
        render::line(&watch.watch_id)?;
    }
    Ok(0)
}

/// `unwatch`.
pub fn unwatch(service: &Service, watch_id: &str, json: bool) -> Result<u8> {
    let watch = service.unwatch(watch_id)?;
    if json {
        render::json(&watch)?;
    } else {
        render::line(&watch_line(&watch))?;
    }
    Ok(0)
}

fn watch_line(w: &Watch) -> String {
    let state = if w.ended_at.is_some() {
        "ended"
    } else {
        "active"
    };
    let once = if w.once { " once" } else { "" };
    format!(
        "{}  {}  {state}{once}  {}",
        w.watch_id,
        w.task_id,
        render::printable(&w.pattern, false)
    )
}

/// `notifications`: every kind, oldest first.
pub fn notifications(service: &Service, json: bool) -> Result<u8> {
    let pending = service.pending_notifications()?;
    if json {
        render::json(&pending)?;
        return Ok(0);
    }
    if pending.is_empty() {
        render::line("no notifications")?;
    }
    for n in &pending {
        render::line(&notification_line(n))?;
    }
    Ok(0)
}

fn notification_line(n: &Notification) -> String {
    format!(
        "{}  {}  {}",
        n.notification_id,
        n.kind.as_str(),
        render::printable(&n.summary, false)
    )
}

/// `ack` with ids that may be notification ids (`c:12`, `n:7`): those are
/// acknowledged one by one, the rest as tasks (all their notifications).
/// Returns (newly acknowledged, named), or `None` if no notification id
/// was given (the caller acknowledges the tasks as before).
pub fn ack_ids(service: &Service, ids: &[String]) -> Result<Option<(usize, usize)>> {
    if !ids
        .iter()
        .any(|s| s.starts_with("c:") || s.starts_with("n:"))
    {
        return Ok(None);
    }
    let mut notes = Vec::new();
    let mut tasks = Vec::new();
    for id in ids {
        if id.starts_with("c:") || id.starts_with("n:") {
            notes.push(id.parse::<NotificationId>()?);
        } else {
            tasks.push(service.resolve_id_in_session(id)?);
        }
    }
    let mut acked = service.ack_notifications(&notes)?;
    if !tasks.is_empty() {
        acked += service.ack(&tasks)?;
    }
    Ok(Some((acked, ids.len())))
}
