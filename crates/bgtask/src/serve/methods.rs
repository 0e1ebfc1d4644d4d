//! One function per JSON-RPC method: decode params, call the `Service`,
//! shape the result.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use bgtask_core::compact::{ShapeOptions, Shaped};
use bgtask_core::{
    BashOutcome, BashRequest, Config, ListRequest, OutputFile, Service, SpawnRequest, Status,
    TaskId, DEFAULT_OUTPUT_BUDGET,
};

use super::{Server, Session, DEFAULT_REMINDER_MS};
use bgtask_core::rpc::{self, RpcError, METHOD_NOT_FOUND};

/// Default foreground window of `bash`.
const DEFAULT_WAIT_MS: u64 = 5_000;
/// Default tail of `bash_status`.
const DEFAULT_TAIL_BYTES: u64 = 5_120;
/// Default and largest chunk of `bash_output`.
const DEFAULT_CHUNK_BYTES: u64 = 65_536;
const MAX_CHUNK_BYTES: u64 = 4 << 20;

type Reply = Result<Value, RpcError>;

/// How a method is run (see the module docs of `serve`).
pub enum Class {
    /// Changes per-connection state: runs before the next line is read.
    Barrier,
    /// Returns after a few store reads or writes.
    Quick,
    /// May wait for tasks for as long as the client asks.
    Waiting,
}

pub fn class(method: &str) -> Class {
    match method {
        "initialize" => Class::Barrier,
        // `bash` waits for its task to start, and in the foreground for
        // `wait_ms`; `bash_kill` for the end, up to its grace + 10 s.
        "bash" | "bash_wait" | "bash_kill" => Class::Waiting,
        _ => Class::Quick,
    }
}

/// Runs one request for `session` (the session current when it was read).
pub fn call(server: &Server, session: &Session, method: &str, params: Value) -> Reply {
    let service = &session.service;
    match method {
        "initialize" => initialize(server, rpc::params(params)?),
        "bash" => bash(session, rpc::params(params)?),
        "bash_status" => status(service, rpc::params(params)?),
        "bash_output" => output(service, rpc::params(params)?),
        "bash_list" => list(service, rpc::params(params)?),
        "bash_kill" => kill(service, rpc::params(params)?),
        "bash_promote" => promote(service, rpc::params(params)?),
        "bash_wait" => wait(service, rpc::params(params)?),
        "bash_drain_completions" => {
            let _: Empty = rpc::params(params)?;
            Ok(json!({ "completions": service.completions()? }))
        }
        "bash_ack_completions" => ack(service, rpc::params(params)?),
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("unknown method {method:?}"),
        )),
    }
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct InitializeParams {
    session: Option<String>,
    project_root: Option<PathBuf>,
    long_running_interval_ms: Option<u64>,
}

fn initialize(server: &Server, p: InitializeParams) -> Reply {
    let current = server.session();
    let session = match p.session {
        Some(s) if s.is_empty() => {
            return Err(RpcError::invalid_params(
                "invalid params: session: must not be empty",
            ))
        }
        Some(s) => s,
        None => current.service.session().to_owned(),
    };
    if let Some(root) = &p.project_root {
        if !root.is_dir() {
            return Err(bgtask_core::Error::CwdNotADirectory(root.clone()).into());
        }
    }
    let service = Arc::new(Service::open(Config {
        session: session.clone(),
        ..server.base.clone()
    })?);
    // Read before the switch, so a completion recorded after it is pushed
    // even if the push thread notices the new session late.
    let pushed_after = service.last_completion_seq()?;
    server.switch(Session {
        service,
        project_root: p.project_root,
        long_running_interval_ms: p.long_running_interval_ms.unwrap_or(DEFAULT_REMINDER_MS),
        generation: 0, // numbered by `switch`
        pushed_after,
    });
    // The push thread may be asleep until a far-off reminder: wake it so
    // it picks up the new session and interval now.
    server.session().service.touch_events();
    Ok(json!({
        "server": "bgtask",
        "version": env!("CARGO_PKG_VERSION"),
        "protocol_version": 1,
        "session": session,
    }))
}

#[derive(Deserialize)]
struct BashParams {
    command: String,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: HashMap<String, String>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_output_bytes: Option<u64>,
    #[serde(default)]
    background: bool,
    wait_ms: Option<u64>,
    notify_on_completion: Option<bool>,
    compressed: Option<bool>,
    output_bytes: Option<usize>,
}

fn bash(session: &Session, p: BashParams) -> Reply {
    let defaults = SpawnRequest::default();
    let request = BashRequest {
        spawn: SpawnRequest {
            command: p.command,
            cwd: p.cwd.or_else(|| session.project_root.clone()),
            env: p.env.into_iter().collect(),
            // 0 means no limit, as "none" does on the command line.
            timeout_ms: match p.timeout_ms {
                Some(0) => None,
                Some(ms) => Some(ms),
                None => defaults.timeout_ms,
            },
            idle_timeout_ms: p.idle_timeout_ms.filter(|ms| *ms > 0),
            max_output: p.max_output_bytes.unwrap_or(defaults.max_output),
            notify: true,
        },
        background: p.background,
        wait_ms: p
            .wait_ms
            .unwrap_or(if p.background { 0 } else { DEFAULT_WAIT_MS }),
        notify_on_completion: p.notify_on_completion,
        shape: ShapeOptions {
            budget: p.output_bytes.unwrap_or(DEFAULT_OUTPUT_BUDGET),
            compress: p.compressed.unwrap_or(true),
        },
    };
    match session.service.bash(&request)? {
        BashOutcome::Finished { task, output } => {
            let mut value = serde_json::to_value(&task).map_err(internal)?;
            add_output(&mut value, &output);
            value["background"] = json!(false);
            Ok(value)
        }
        BashOutcome::Background { task } => Ok(background_reply(&task, &request)),
        BashOutcome::Interrupted { task, error } => {
            // The task runs: the reply carries its id, and says what failed.
            let err = RpcError::from(error);
            let mut value = background_reply(&task, &request);
            value["error"] = json!({
                "code": err.code, "message": err.message, "data": {"kind": err.kind}
            });
            Ok(value)
        }
    }
}

/// The reply for a task that continues in the background.
fn background_reply(task: &bgtask_core::Task, request: &BashRequest) -> Value {
    json!({
        "task_id": task.task_id,
        "status": task.status,
        "background": true,
        "session": task.session,
        "command": task.command,
        "pid": task.pid,
        "started_at": task.started_at,
        "stdout_path": task.stdout_path.to_string_lossy(),
        "stderr_path": task.stderr_path.to_string_lossy(),
        "notify_on_completion": request.notify_on_completion.unwrap_or(true),
    })
}

fn add_output(value: &mut Value, output: &Shaped) {
    value["output"] = json!(output.text);
    value["output_truncated"] = json!(output.truncated);
    value["output_omitted_bytes"] = json!(output.omitted_bytes);
}

#[derive(Deserialize)]
struct TaskParams {
    task_id: String,
}

#[derive(Deserialize)]
struct StatusParams {
    task_id: String,
    tail_bytes: Option<u64>,
}

fn status(service: &Service, p: StatusParams) -> Reply {
    let id = task_id(&p.task_id)?;
    let status = service.status(&id, p.tail_bytes.unwrap_or(DEFAULT_TAIL_BYTES))?;
    serde_json::to_value(&status).map_err(internal)
}

#[derive(Deserialize)]
struct OutputParams {
    task_id: String,
    stream: Option<String>,
    offset: Option<u64>,
    max_bytes: Option<u64>,
}

fn output(service: &Service, p: OutputParams) -> Reply {
    let id = task_id(&p.task_id)?;
    let file = match p.stream.as_deref() {
        None | Some("stdout") => OutputFile::Stdout,
        Some("stderr") => OutputFile::Stderr,
        Some(other) => {
            return Err(RpcError::invalid_params(format!(
                "invalid params: stream: expected \"stdout\" or \"stderr\", got {other:?}"
            )))
        }
    };
    let max = p
        .max_bytes
        .unwrap_or(DEFAULT_CHUNK_BYTES)
        .min(MAX_CHUNK_BYTES);
    let offset = p.offset.unwrap_or(0);
    let task = service.get(&id)?;
    let chunk = service.read_range(&id, file, offset, max)?;
    let next_offset = chunk.offset + chunk.data.len() as u64;
    Ok(json!({
        "data": String::from_utf8_lossy(&chunk.data),
        "offset": chunk.offset,
        "next_offset": next_offset,
        "eof": task.is_terminal() && next_offset >= chunk.file_len,
        "truncated": next_offset < chunk.file_len,
        "output_dropped_bytes": task.output_dropped_bytes,
    }))
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    all_sessions: bool,
    status: Option<Status>,
}

fn list(service: &Service, p: ListParams) -> Reply {
    let tasks = service.list(&ListRequest {
        all_sessions: p.all_sessions,
        status: p.status,
    })?;
    Ok(json!({ "tasks": tasks }))
}

#[derive(Deserialize)]
struct KillParams {
    task_id: String,
    grace_ms: Option<u64>,
}

fn kill(service: &Service, p: KillParams) -> Reply {
    let id = task_id(&p.task_id)?;
    let task = service.kill(&id, p.grace_ms.unwrap_or(2_000).min(600_000))?;
    serde_json::to_value(&task).map_err(internal)
}

fn promote(service: &Service, p: TaskParams) -> Reply {
    let id = task_id(&p.task_id)?;
    service.promote(&id)?;
    Ok(json!({ "task_id": id, "promoted": true }))
}

#[derive(Deserialize)]
struct WaitParams {
    task_ids: Vec<String>,
    timeout_ms: Option<u64>,
}

fn wait(service: &Service, p: WaitParams) -> Reply {
    let ids = task_ids(&p.task_ids)?;
    if ids.is_empty() {
        return Err(RpcError::invalid_params(
            "invalid params: task_ids: must name at least one task",
        ));
    }
    let outcome = service.wait(&ids, p.timeout_ms)?;
    Ok(json!({ "tasks": outcome.tasks, "timed_out": outcome.timed_out }))
}

#[derive(Deserialize)]
struct AckParams {
    task_ids: Vec<String>,
}

fn ack(service: &Service, p: AckParams) -> Reply {
    let ids = task_ids(&p.task_ids)?;
    Ok(json!({ "acked": service.ack(&ids)? }))
}

fn task_id(text: &str) -> Result<TaskId, RpcError> {
    text.parse().map_err(|e: bgtask_core::Error| {
        RpcError::invalid_params(format!("invalid params: task_id: {e}"))
    })
}

fn task_ids(texts: &[String]) -> Result<Vec<TaskId>, RpcError> {
    texts.iter().map(|t| task_id(t)).collect()
}

fn internal(err: serde_json::Error) -> RpcError {
    RpcError::new(rpc::APPLICATION_ERROR, format!("internal error: {err}"))
}
