//! MCP side of issue 16: `bash` with `ready`, `bash_watch`,
//! `bash_unwatch`, `bash_wait` with `until`, and the notifications of the
//! kinds beside completions (`ready`, `ready_failed`, `watch_match`) that
//! open a tool result like completions do.
//!
//! Those notifications are claimed in the store by the result that shows
//! them (as completions are: a hook or another server of the session never
//! shows them too) and acknowledged when the client's next tool call
//! arrives (the evidence it has the result that showed them); a server
//! that dies before leaves a void claim, so the next reader shows them
//! again.

use std::sync::Mutex;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use bgtask_core::protocol::{ready_result, RawReady, ReadyParams};
use bgtask_core::{
    BashRequest, Error, Notification, Pending, PendingClaim, ReadyState, Service, TaskId,
    WatchRequest,
};

use super::tools::Answer;

/// Bytes of notification text one result may open with.
const NOTES_BUDGET: usize = 4 * 1024;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReadyArgs {
    /// Ready once a line of output matches this regular expression (e.g. "listening on").
    pub log: Option<String>,
    /// Ready once something accepts connections on 127.0.0.1:port (or [::1]).
    #[serde(default)]
    #[schemars(schema_with = "super::tools::count_schema")]
    pub port: Option<u64>,
    /// Ready once a GET of this local http URL answers with a status below 500.
    pub http: Option<String>,
    /// Give up after this many milliseconds (default 120000); the task keeps running.
    #[serde(default)]
    #[schemars(schema_with = "super::tools::count_schema")]
    pub timeout_ms: Option<u64>,
}

impl ReadyArgs {
    pub fn into_params(self) -> Result<ReadyParams, Error> {
        ReadyParams::try_from(RawReady {
            log: self.log,
            port: self.port,
            http: self.http,
            timeout_ms: self.timeout_ms,
            kill_if_not_ready: None,
        })
        .map_err(|e| Error::InvalidArgument(format!("ready: {e}")))
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WatchArgs {
    /// The running task to watch, e.g. "bg-0123456789abcdef".
    pub task_id: String,
    /// Regular expression matched against each output line, e.g. "ERROR|panic".
    pub pattern: String,
    /// End the watch after its first match.
    pub once: Option<bool>,
    /// Least milliseconds between two notifications of this watch (default 10000); matches in between are counted.
    #[serde(default)]
    #[schemars(schema_with = "super::tools::count_schema")]
    pub cooldown_ms: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct UnwatchArgs {
    /// The watch id returned by bash_watch, e.g. "w-0123456789ab".
    pub watch_id: String,
}

/// `bash` with `ready`: started in the background, answered once ready.
pub fn run_ready(service: &Service, request: &BashRequest) -> Result<Answer, Error> {
    let (task, timed_out) = service.run_until_ready(&request.spawn)?;
    let structured = ready_result(service, &task, timed_out);
    let detail = task
        .readiness
        .as_ref()
        .and_then(|r| r.detail.clone())
        .unwrap_or_default();
    let (text, is_error) = match task.ready_state() {
        ReadyState::Ready => (
            format!(
                "Task {} is ready ({detail}); it keeps running in the background, and its completion will be reported.",
                task.task_id
            ),
            false,
        ),
        _ => {
            let tail = structured["output_tail"].as_str().unwrap_or_default();
            (
                format!(
                    "Task {} did not become ready: {detail}. Status: {}.\nLast output:\n{}",
                    task.task_id,
                    task.status,
                    bgtask_core::compact::compact(tail)
                ),
                true,
            )
        }
    };
    Ok(Answer {
        text,
        structured,
        is_error,
        held: None,
    })
}

pub fn watch(service: &Service, args: WatchArgs) -> Result<Answer, Error> {
    let watch = service.watch(&WatchRequest {
        task_id: args.task_id.parse()?,
        pattern: args.pattern,
        once: args.once.unwrap_or(false),
        cooldown_ms: args.cooldown_ms,
    })?;
    let text = format!(
        "Watch {} on task {} is active: matching lines will be reported at the start of later tool results (at most one per {} ms).",
        watch.watch_id, watch.task_id, watch.cooldown_ms
    );
    let mut structured = json!(watch);
    structured["watch_id"] = json!(watch.watch_id);
    Ok(Answer::ok(text, structured))
}

pub fn unwatch(service: &Service, args: UnwatchArgs) -> Result<Answer, Error> {
    let watch = service.unwatch(&args.watch_id)?;
    Ok(Answer::ok(
        format!("Watch {} removed.", watch.watch_id),
        json!(watch),
    ))
}

/// `bash_wait` with `until`: `ready` for the named tasks, `notification`
/// for any notification of the session. `None` for `end` (the default).
pub fn wait(
    service: &Service,
    until: Option<&str>,
    ids: &[TaskId],
    timeout: Option<u64>,
) -> Result<Option<Answer>, Error> {
    match until.unwrap_or("end") {
        "end" => Ok(None),
        "ready" => {
            if ids.is_empty() {
                return Err(Error::InvalidArgument(
                    "task_ids: until \"ready\" needs at least one task".into(),
                ));
            }
            let outcome = service.wait_ready(ids, timeout)?;
            let mut text = String::new();
            for task in &outcome.tasks {
                let state = match task.ready_state() {
                    ReadyState::Ready => "ready",
                    ReadyState::Pending => "not ready yet",
                    ReadyState::Ended => "ended before it was ready",
                    ReadyState::TimedOut => "not ready (readiness timeout)",
                };
                text.push_str(&format!("- Task {} is {state}.\n", task.task_id));
            }
            Ok(Some(Answer::ok(text, json!(outcome))))
        }
        "notification" => {
            let pending = service.wait_notification(timeout)?;
            let text = if pending.is_empty() {
                "No notification yet.".to_owned()
            } else {
                format!(
                    "{} notification(s) pending; they open this result.",
                    pending.len()
                )
            };
            Ok(Some(Answer::ok(
                text,
                json!({ "notifications": pending.len() }),
            )))
        }
        other => Err(Error::InvalidArgument(format!(
            "until: {other:?} is not one of \"end\", \"ready\", \"notification\""
        ))),
    }
}

/// What this server showed of the notifications beside completions: each
/// is claimed in the store when a result shows it (so a hook or another
/// server of the session never shows it too), and acknowledged when the
/// client's next tool call arrives.
#[derive(Default)]
pub struct Shown {
    claimed: Mutex<PendingClaim>,
}

impl Shown {
    /// Acknowledges what earlier results showed: the client called again,
    /// so it has them. Called before a tool runs, so a `bash_wait` for a
    /// notification does not wake for one the model has already seen.
    pub fn settle(&self, service: &Service) {
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        let previous = std::mem::take(&mut *claimed);
        if !previous.is_empty() {
            if let Err(e) = service.settle_pending(&previous) {
                tracing::warn!("cannot acknowledge notifications: {e}");
                *claimed = previous;
            }
        }
    }

    /// The text and JSON of the notifications nobody has shown yet, claimed
    /// for this server (they are acknowledged by the next `settle`).
    pub fn block(&self, service: &Service) -> (String, Vec<Value>) {
        let mut claimed = self.claimed.lock().unwrap_or_else(|e| e.into_inner());
        let cost = |p: &Pending| match p {
            Pending::Other(n) => line(n).len(),
            Pending::Completion(_) => 0,
        };
        let fresh = match service.claim_other_notifications(NOTES_BUDGET, cost) {
            Ok(fresh) => fresh,
            Err(e) => {
                tracing::warn!("cannot read notifications: {e}");
                return (String::new(), Vec::new());
            }
        };
        let mut text = String::new();
        let mut json = Vec::new();
        for item in &fresh.items {
            if let Pending::Other(n) = item {
                text.push_str(&line(n));
                json.push(json!(n));
            }
        }
        if !text.is_empty() {
            text.insert_str(0, "[bgtask] notifications:\n");
            text.push('\n');
        }
        claimed.items.extend(fresh.items);
        (text, json)
    }
}

/// One notification as a line of a result or a hook's message.
pub(crate) fn line(n: &Notification) -> String {
    let summary: String = n.summary.chars().take(400).collect();
    format!("- [{}] {summary}\n", n.kind.as_str())
}
