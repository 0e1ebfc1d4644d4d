//! One function per JSON-RPC method: decode params into the protocol's
//! types, call the `Service`, return the protocol's result. Params,
//! results and the request logic shared with MCP live in
//! `bgtask_core::protocol`; serve's settings are `Defaults::SERVE`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Value};

use bgtask_core::protocol::rpc::{self, RpcError, METHOD_NOT_FOUND};
use bgtask_core::protocol::{
    finished_result, AckParams, AckResult, BashParams, CompletionsResult, Defaults, DrainParams,
    InitializeParams, InitializeResult, KillParams, ListParams, ListResult, OutputParams,
    PromoteResult, ResizeParams, SignalParams, StatusParams, TaskParams, Until, View, WaitParams,
    WriteParams,
};
use bgtask_core::{BashOutcome, BashRequest, Config, ListRequest, Service};

use super::{Server, Session, DEFAULT_REMINDER_MS};

/// serve's side of each setting where it and MCP differ.
const DEFAULTS: Defaults = Defaults::SERVE;

pub(super) type Reply = Result<Value, RpcError>;

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
        // `bash` in the foreground waits for its task up to
        // `wait_ms`; `bash_kill` for the end, up to its grace + 10 s.
        "bash" | "bash_wait" | "bash_kill" => Class::Waiting,
        // `bash_watch` tells the task's monitor (up to its reply timeout).
        "bash_watch" | "bash_unwatch" => Class::Waiting,
        // So do `bash_pause` and `bash_resume` (issue 21).
        "bash_pause" | "bash_resume" => Class::Waiting,
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
            let p: DrainParams = rpc::params(params)?;
            if p.all_kinds {
                return super::notices::drain_all(service);
            }
            result(&CompletionsResult {
                completions: service.completions()?,
            })
        }
        "bash_watch" => super::notices::watch(service, rpc::params(params)?),
        "bash_unwatch" => super::notices::unwatch(service, rpc::params(params)?),
        "bash_ack_completions" => ack(service, rpc::params(params)?),
        // Issue 18: interactive tasks.
        "bash_write" => result(&rpc::params::<WriteParams>(params)?.send(service)?),
        "bash_signal" => result(&rpc::params::<SignalParams>(params)?.send(service)?),
        "bash_resize" => result(&rpc::params::<ResizeParams>(params)?.resize(service)?),
        // Issue 21: pause and resume.
        "bash_pause" => result(&service.pause(&rpc::params::<TaskParams>(params)?.task_id)?),
        "bash_resume" => result(&service.resume(&rpc::params::<TaskParams>(params)?.task_id)?),
        _ => Err(RpcError::new(
            METHOD_NOT_FOUND,
            format!("unknown method {method:?}"),
        )),
    }
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
    let notes_after = service.last_notification_seq()?;
    server.switch(Session {
        service,
        project_root: p.project_root,
        long_running_interval_ms: p.long_running_interval_ms.unwrap_or(DEFAULT_REMINDER_MS),
        generation: 0, // numbered by `switch`
        pushed_after,
        notes_after,
    });
    // The push thread may be asleep until a far-off reminder: wake it so
    // it picks up the new session and interval now.
    server.session().service.touch_events();
    result(&InitializeResult::new(session))
}

fn bash(session: &Session, p: BashParams) -> Reply {
    let tasks = session.service.config().tasks;
    let request = p.into_request(&DEFAULTS, &tasks, session.project_root.clone());
    // With `background`, a task with a readiness condition returns at once
    // and its `ready`/`ready_failed` notification tells when (issue 17).
    if request.spawn.ready.is_some() && !request.background {
        return super::notices::bash_ready(&session.service, &request);
    }
    match session.service.bash(&request)? {
        BashOutcome::Finished { task, output } => Ok(finished_result(&task, &output)),
        BashOutcome::Background { task } => Ok(background_reply(&task, &request)),
        BashOutcome::Interrupted { task, error } => {
            // The task runs: the reply carries its id, and says what failed.
            let mut value = background_reply(&task, &request);
            value["error"] = RpcError::from(error).object();
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

fn status(service: &Service, p: StatusParams) -> Reply {
    let status = service.status(&p.task_id, p.tail_bytes(&DEFAULTS))?;
    let mut value = result(&status)?;
    if p.view == View::Screen {
        value["screen"] = result(&service.screen(&p.task_id)?)?;
    }
    Ok(value)
}

fn output(service: &Service, p: OutputParams) -> Reply {
    if p.view == View::Screen {
        return Ok(bgtask_core::protocol::screen_output(service, &p.task_id)?.1);
    }
    result(&p.read(service, &DEFAULTS)?)
}

fn list(service: &Service, p: ListParams) -> Reply {
    let tasks = service.list(&ListRequest {
        all_sessions: p.all_sessions,
        status: p.status,
        group: p.group,
    })?;
    result(&ListResult { tasks })
}

fn kill(service: &Service, p: KillParams) -> Reply {
    result(&service.kill(&p.task_id, p.grace_ms())?)
}

fn promote(service: &Service, p: TaskParams) -> Reply {
    service.promote(&p.task_id)?;
    result(&PromoteResult {
        task_id: p.task_id,
        promoted: true,
    })
}

fn wait(service: &Service, p: WaitParams) -> Reply {
    if p.until == Until::Notification {
        return super::notices::wait(service, &p, p.timeout_ms(&DEFAULTS));
    }
    if p.task_ids.is_empty() {
        return Err(RpcError::invalid_params(
            "invalid params: task_ids: must name at least one task",
        ));
    }
    if p.until != Until::End {
        return super::notices::wait(service, &p, p.timeout_ms(&DEFAULTS));
    }
    result(&service.wait(&p.task_ids, p.timeout_ms(&DEFAULTS))?)
}

fn ack(service: &Service, p: AckParams) -> Reply {
    result(&AckResult {
        acked: service.ack(&p.task_ids)?,
    })
}

/// A result as the reply's JSON value.
pub(super) fn result(value: &impl Serialize) -> Reply {
    serde_json::to_value(value)
        .map_err(|e| RpcError::new(rpc::APPLICATION_ERROR, format!("internal error: {e}")))
}
