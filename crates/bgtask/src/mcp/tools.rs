//! The MCP tools. Each runs its blocking `Service` call on a blocking
//! worker, then returns text for the model (opened by any completions not
//! yet shown) and `structuredContent` with the same objects the JSON-lines
//! server returns.

use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, ErrorData as McpError, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use bgtask_core::protocol::{BashParams, Defaults, OutputParams, WaitParams, KILL_GRACE_MS};
use bgtask_core::{BashOutcome, ListRequest, TaskId};

use super::{format, notices, BgMcp};

/// MCP's side of each setting where it and serve differ.
const DEFAULTS: Defaults = Defaults::MCP;

// The argument structs below are what a model sees (their doc comments are
// the schema's descriptions), so they stay plain: ids are strings, and a
// malformed one is a tool error the model can read, not a protocol error.
// Each converts into the protocol's params, where the request logic is.

#[derive(Debug, Deserialize, JsonSchema)]
pub struct BashArgs {
    /// The shell command line to run (bash syntax; pipes, &&, redirections all work).
    pub command: String,
    /// Working directory (absolute path). Defaults to the server's working directory.
    pub cwd: Option<PathBuf>,
    /// Hard time limit in milliseconds (default 30 minutes; 0 means no limit).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub timeout_ms: Option<u64>,
    /// Start in the background and return the task id at once.
    pub background: Option<bool>,
    /// How long to wait for the command before it continues in the background (default 10000).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub wait_ms: Option<u64>,
    /// Start it in the background and return once it is ready: give one of log (a regex a
    /// line matches), port (something listens) or http (a local URL answers below 500).
    pub ready: Option<super::notices::ReadyArgs>,
    /// Give the command a stdin you can write to later with bash_write (for programs that read input: a REPL, a prompt). Default false: stdin is empty.
    pub stdin: Option<bool>,
    /// Run the command under a pseudo-terminal ({} for 24x80, or {"rows": 40, "cols": 120}) for programs that need a terminal: interactive prompts, REPLs, full-screen tools. Drive it with bash_write, read its screen with bash_status view "screen".
    pub pty: Option<super::interact::PtyArgs>,
    /// Run confined: "workspace" (write only the workspace) or "read-only". May only narrow the configured sandbox.
    pub sandbox: Option<String>,
    /// true: no network access (loopback servers the command starts itself still work).
    pub no_network: Option<bool>,
    /// Paths a sandboxed command may also write (must already be writable under the configured sandbox).
    pub allow_write: Option<Vec<PathBuf>>,
    /// Where to run it: "local" (this machine) or "slurm" (a batch job on the cluster). Default: the executor setting.
    pub executor: Option<String>,
    /// Flags passed verbatim to sbatch for a Slurm task, e.g. ["--partition=gpu", "--gres=gpu:1"].
    pub slurm_args: Option<Vec<String>>,
    /// Queue group to run in (at most its parallelism run at once; the task waits queued). Default "default".
    pub group: Option<String>,
    /// Task ids that must complete successfully before this one starts (if one fails, this one fails without starting).
    pub after: Option<Vec<String>>,
    /// Start no sooner than this many milliseconds from now (the task waits queued).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub delay_ms: Option<u64>,
    /// A short label shown in lists and notifications.
    pub label: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskArgs {
    /// The task id, e.g. "bg-0123456789abcdef".
    pub task_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct OutputArgs {
    /// The task id, e.g. "bg-0123456789abcdef".
    pub task_id: String,
    /// Byte offset to read from (use next_offset of the previous call). Default 0.
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub offset: Option<u64>,
    /// Most bytes to return (default 16384, at most 1 MiB).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub max_bytes: Option<u64>,
    /// "stdout" (default) or "stderr".
    pub stream: Option<String>,
}

/// A non-negative integer, without the `"format": "uint64"` schemars
/// writes for `u64`: clients that validate schemas (Gemini CLI) warn about
/// that format on every run.
pub(super) fn count_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "integer", "minimum": 0 })
}

impl BashArgs {
    fn into_params(self) -> Result<BashParams, bgtask_core::Error> {
        Ok(BashParams {
            command: self.command,
            cwd: self.cwd,
            timeout_ms: self.timeout_ms,
            background: self.background.unwrap_or(false),
            wait_ms: self.wait_ms,
            ready: self.ready.map(|r| r.into_params()).transpose()?,
            stdin: self.stdin.unwrap_or(false),
            pty: self.pty.map(Into::into),
            sandbox: self.sandbox.as_deref().map(str::parse).transpose()?,
            no_network: self.no_network,
            allow_write: self.allow_write.unwrap_or_default(),
            // Checked in `run_bash` (an unknown name is an error there).
            executor: self.executor.and_then(|e| e.parse().ok()),
            slurm_args: self.slurm_args.unwrap_or_default(),
            group: self.group,
            after: self
                .after
                .unwrap_or_default()
                .iter()
                .map(|id| id.parse())
                .collect::<Result<_, _>>()?,
            delay_ms: self.delay_ms,
            label: self.label,
            ..BashParams::default()
        })
    }
}

impl OutputArgs {
    fn into_params(self) -> Result<OutputParams, bgtask_core::Error> {
        Ok(OutputParams {
            task_id: self.task_id.parse()?,
            stream: self.stream.as_deref().unwrap_or("stdout").parse()?,
            offset: self.offset,
            max_bytes: self.max_bytes,
            view: Default::default(),
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {
    /// Only the tasks of this queue group.
    pub group: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// Tasks to wait for (all must end). If empty or absent, waits until any running task of this session ends.
    pub task_ids: Option<Vec<String>>,
    /// Longest wait in milliseconds (default 30000, at most 60000).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub timeout_ms: Option<u64>,
    /// "end" (default): until the tasks end; "ready": until they are ready; "notification":
    /// until this session has any notification (a completion, readiness, a watch match).
    pub until: Option<String>,
}

/// What a tool produced before the completion block is added.
pub struct Answer {
    pub text: String,
    pub structured: Value,
    pub is_error: bool,
    /// A task returned inline whose completion this server holds until
    /// the client has the result.
    pub held: Option<TaskId>,
}

/// The completions that open a result.
#[derive(Default)]
pub struct Block {
    /// The block's text, if there is anything to say.
    pub text: Option<String>,
    /// The completions shown, as JSON.
    pub json: Vec<Value>,
    /// Their ids (claimed by this server).
    pub ids: Vec<TaskId>,
    /// Completions that did not fit and wait for later results.
    pub left: usize,
}

impl Answer {
    pub(super) fn ok(text: String, structured: Value) -> Self {
        Answer {
            text,
            structured,
            is_error: false,
            held: None,
        }
    }

    pub fn failed(err: &bgtask_core::Error) -> Self {
        let message = bgtask_core::protocol::rpc::error_text(err);
        Answer {
            text: format!("Error: {message}"),
            structured: json!({ "error": { "kind": err.kind(), "message": message } }),
            is_error: true,
            held: None,
        }
    }
}

#[tool_router(vis = "pub")]
impl BgMcp {
    #[tool(
        description = "Run a shell command. If it finishes within wait_ms (default 10 s) you get its exit status and output (bounded; noise such as progress bars folded). Otherwise it keeps running in the background as a durable task: you get its task id at once and its completion (status, exit code, last output lines) is reported at the start of a later tool result. Use background=true for long jobs. For a server, pass ready (e.g. {\"port\": 3000} or {\"log\": \"listening\"}): start a server and return once it listens on port 3000, with the reason and its output if it crashed first; with background=true too, return at once and be told when it is ready."
    )]
    async fn bash(
        &self,
        Parameters(args): Parameters<BashArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| me.run_bash(args)).await
    }

    #[tool(
        description = "Show a task's status, exit code and the last 4 KiB of its output. For a task started with pty, view \"screen\" shows what its terminal displays now (a prompt waiting for an answer, a REPL, a full-screen program)."
    )]
    async fn bash_status(
        &self,
        Parameters(args): Parameters<super::interact::StatusArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            super::interact::status(&me.service, args, DEFAULTS.status_tail_bytes)
        })
        .await
    }

    #[tool(
        description = "Type into a running task started with stdin=true or pty: answer an interactive prompt (\"continue? [y/N]\"), drive a REPL, press keys (enter, ctrl-c, arrows) in a terminal program. Text is sent as given; add the key \"enter\" to submit a line. Then read the reply with bash_status (view \"screen\" for pty tasks) or bash_output."
    )]
    async fn bash_write(
        &self,
        Parameters(args): Parameters<super::interact::WriteArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            super::interact::write(&me.service, args)
        })
        .await
    }

    #[tool(
        description = "Send a signal to a running task's processes: INT to stop a server gracefully (like ctrl-c), HUP to make it reload, USR1/USR2 for program-specific actions, TERM to ask it to exit. With leader=true only its shell gets it. To stop a task for good use bash_kill."
    )]
    async fn bash_signal(
        &self,
        Parameters(args): Parameters<super::interact::SignalArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            super::interact::signal(&me.service, args)
        })
        .await
    }

    #[tool(
        description = "Read a task's output incrementally: returns data from offset plus next_offset to continue from, and eof once the task has ended and everything was read."
    )]
    async fn bash_output(
        &self,
        Parameters(args): Parameters<OutputArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            let params = args.into_params()?;
            let chunk = params.read(&me.service, &DEFAULTS)?;
            let text = format!(
                "Task {} {}: bytes {}..{} of {}{}\n{}",
                chunk.task_id,
                params.stream.as_str(),
                chunk.offset,
                chunk.next_offset,
                chunk.file_len,
                if chunk.eof { " (end of output)" } else { "" },
                chunk.data,
            );
            Ok(Answer::ok(text, format::chunk_structured(&chunk)))
        })
        .await
    }

    #[tool(
        description = "Stop a task: SIGTERM to its whole process tree, SIGKILL after 2 s. Returns its final state."
    )]
    async fn bash_kill(
        &self,
        Parameters(args): Parameters<TaskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            let id = parse_id(&args.task_id)?;
            let task = me.service.kill(&id, KILL_GRACE_MS)?;
            Ok(Answer::ok(
                format::task_line(&task),
                json!(format::lean_task(&task)),
            ))
        })
        .await
    }

    #[tool(description = "List this session's tasks, newest first, with status and exit code.")]
    async fn bash_list(
        &self,
        Parameters(args): Parameters<ListArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            let tasks = me.service.list(&ListRequest {
                group: args.group,
                ..ListRequest::default()
            })?;
            let mut text = if tasks.is_empty() {
                "No tasks in this session.".to_owned()
            } else {
                format!("{} task(s):", tasks.len())
            };
            for task in &tasks {
                text.push_str("\n- ");
                text.push_str(&format::task_line(task));
            }
            Ok(Answer::ok(
                text,
                json!({ "tasks": format::tasks_structured(&tasks) }),
            ))
        })
        .await
    }

    #[tool(
        description = "Block until the named tasks end (or, with no task_ids, until any running task of this session ends), at most timeout_ms (default 30 s, max 60 s). Returns their states. until=\"ready\" waits for the tasks to be ready; until=\"notification\" waits for any notification of this session (completion, readiness, watch match)."
    )]
    async fn bash_wait(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            let params = WaitParams {
                task_ids: (args.task_ids.unwrap_or_default().iter())
                    .map(|s| parse_id(s))
                    .collect::<Result<_, _>>()?,
                timeout_ms: args.timeout_ms,
                until: Default::default(),
            };
            let timeout = params.timeout_ms(&DEFAULTS);
            let until = args.until.as_deref();
            if let Some(answer) = notices::wait(&me.service, until, &params.task_ids, timeout)? {
                return Ok(answer);
            }
            let outcome = if params.task_ids.is_empty() {
                // Unlike serve, MCP waits for any task of the session when
                // none is named: a model rarely has the ids at hand.
                let live: Vec<TaskId> = me
                    .service
                    .list(&ListRequest::default())?
                    .into_iter()
                    .filter(|t| !t.is_terminal())
                    .map(|t| t.task_id)
                    .collect();
                if live.is_empty() {
                    return Ok(Answer::ok(
                        "No task of this session is running.".to_owned(),
                        json!({ "tasks": [], "timed_out": false }),
                    ));
                }
                me.service.wait_any(&live, timeout)?
            } else {
                me.service.wait(&params.task_ids, timeout)?
            };
            let mut text = if outcome.timed_out {
                format!("Still running after {} ms:", timeout.unwrap_or_default())
            } else {
                "Done:".to_owned()
            };
            for task in &outcome.tasks {
                text.push_str("\n- ");
                text.push_str(&format::task_line(task));
            }
            Ok(Answer::ok(
                text,
                json!({ "tasks": format::tasks_structured(&outcome.tasks), "timed_out": outcome.timed_out }),
            ))
        })
        .await
    }

    #[tool(
        description = "Watch a running task's output: be told (at the start of later tool results, at most once per cooldown, with a count of further matches) when a line matches pattern, e.g. \"ERROR|panic\". At most 8 watches per task. Returns a watch_id."
    )]
    async fn bash_watch(
        &self,
        Parameters(args): Parameters<notices::WatchArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| notices::watch(&me.service, args))
            .await
    }

    #[tool(description = "Remove a watch made with bash_watch.")]
    async fn bash_unwatch(
        &self,
        Parameters(args): Parameters<notices::UnwatchArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| notices::unwatch(&me.service, args))
            .await
    }
}

impl BgMcp {
    fn run_bash(&self, args: BashArgs) -> Result<Answer, bgtask_core::Error> {
        let tasks = self.service.config().tasks;
        if let Some(name) = &args.executor {
            name.parse::<bgtask_core::Engine>()?;
        }
        let request = args
            .into_params()?
            .into_request(&DEFAULTS, &tasks, self.cwd.clone());
        // With `background`, a task with a readiness condition returns at
        // once and its `ready`/`ready_failed` notification tells when.
        if request.spawn.ready.is_some() && !request.background {
            return notices::run_ready(&self.service, &request);
        }
        let (outcome, held) = self.service.bash_held(&request)?;
        Ok(match outcome {
            BashOutcome::Finished { task, output } => {
                let structured = format::finished_structured(&task, &output);
                Answer {
                    is_error: task.exit_code != Some(0),
                    text: format::finished_text(&task, &output),
                    structured,
                    held,
                }
            }
            BashOutcome::Background { task } => {
                let mut structured = format::lean_task(&task);
                structured.insert("background".into(), json!(true));
                structured.insert("note".into(), json!(format::background_note(&task, true)));
                Answer::ok(
                    format::background_text(&task, true),
                    Value::Object(structured),
                )
            }
            BashOutcome::Interrupted { task, error } => {
                // The task runs: the model gets its id with the error.
                let failed = Answer::failed(&error);
                let mut structured = format::lean_task(&task);
                structured.insert("background".into(), json!(true));
                structured.insert("note".into(), json!(format::background_note(&task, true)));
                structured.insert("error".into(), failed.structured["error"].clone());
                let structured = Value::Object(structured);
                Answer {
                    text: format!("{}\n{}", failed.text, format::background_text(&task, true)),
                    is_error: true,
                    structured,
                    held: None,
                }
            }
        })
    }
}

fn parse_id(text: &str) -> Result<TaskId, bgtask_core::Error> {
    text.parse()
}

/// Puts the completion block (if any) before the tool's own text.
pub fn into_result(block: Block, answer: Answer) -> CallToolResult {
    let mut structured = answer.structured;
    let mut text = block.text.unwrap_or_default();
    if let Value::Object(map) = &mut structured {
        if !block.json.is_empty() {
            map.insert("notifications".into(), Value::Array(block.json));
        }
        if block.left > 0 {
            map.insert("notifications_pending".into(), json!(block.left));
        }
    }
    text.push_str(&answer.text);
    let content = vec![ContentBlock::text(text)];
    let mut result = if answer.is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    };
    result.structured_content = Some(structured);
    result
}
