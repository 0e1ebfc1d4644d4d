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

use bgtask_core::protocol::{
    finished_result, BashParams, Defaults, ListResult, OutputParams, WaitParams, KILL_GRACE_MS,
};
use bgtask_core::{BashOutcome, ListRequest, TaskId};

use super::{format, BgMcp};

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
    pub timeout_ms: Option<u64>,
    /// Start in the background and return the task id at once.
    pub background: Option<bool>,
    /// How long to wait for the command before it continues in the background (default 10000).
    pub wait_ms: Option<u64>,
    /// Where to run it: "local" (this machine) or "slurm" (a batch job on the cluster). Default: the executor setting.
    pub executor: Option<String>,
    /// Flags passed verbatim to sbatch for a Slurm task, e.g. ["--partition=gpu", "--gres=gpu:1"].
    pub slurm_args: Option<Vec<String>>,
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
    pub offset: Option<u64>,
    /// Most bytes to return (default 16384, at most 1 MiB).
    pub max_bytes: Option<u64>,
    /// "stdout" (default) or "stderr".
    pub stream: Option<String>,
}

impl BashArgs {
    fn into_params(self) -> BashParams {
        BashParams {
            command: self.command,
            cwd: self.cwd,
            timeout_ms: self.timeout_ms,
            background: self.background.unwrap_or(false),
            wait_ms: self.wait_ms,
            // Checked in `run_bash` (an unknown name is an error there).
            executor: self.executor.and_then(|e| e.parse().ok()),
            slurm_args: self.slurm_args.unwrap_or_default(),
            ..BashParams::default()
        }
    }
}

impl OutputArgs {
    fn into_params(self) -> Result<OutputParams, bgtask_core::Error> {
        Ok(OutputParams {
            task_id: self.task_id.parse()?,
            stream: self.stream.as_deref().unwrap_or("stdout").parse()?,
            offset: self.offset,
            max_bytes: self.max_bytes,
        })
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct ListArgs {}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WaitArgs {
    /// Tasks to wait for (all must end). If empty or absent, waits until any running task of this session ends.
    pub task_ids: Option<Vec<String>>,
    /// Longest wait in milliseconds (default 30000, at most 60000).
    pub timeout_ms: Option<u64>,
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
    fn ok(text: String, structured: Value) -> Self {
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
        description = "Run a shell command. If it finishes within wait_ms (default 10 s) you get its exit status and output (bounded; noise such as progress bars folded). Otherwise it keeps running in the background as a durable task: you get its task id at once and its completion (status, exit code, last output lines) is reported at the start of a later tool result. Use background=true for servers and long jobs."
    )]
    async fn bash(
        &self,
        Parameters(args): Parameters<BashArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| me.run_bash(args)).await
    }

    #[tool(description = "Show a task's status, exit code and the last 4 KiB of its output.")]
    async fn bash_status(
        &self,
        Parameters(args): Parameters<TaskArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            let id = parse_id(&args.task_id)?;
            let status = me.service.status(&id, DEFAULTS.status_tail_bytes)?;
            let mut text = format::task_line(&status.task);
            if !status.output_tail.is_empty() {
                text.push_str("\nLast output:\n");
                text.push_str(&bgtask_core::compact::compact(&status.output_tail));
            }
            Ok(Answer::ok(text, json!(status)))
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
            Ok(Answer::ok(text, json!(chunk)))
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
            Ok(Answer::ok(format::task_line(&task), json!(task)))
        })
        .await
    }

    #[tool(description = "List this session's tasks, newest first, with status and exit code.")]
    async fn bash_list(
        &self,
        Parameters(_args): Parameters<ListArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.answer(context.id, move |me| {
            let tasks = me.service.list(&ListRequest::default())?;
            let mut text = if tasks.is_empty() {
                "No tasks in this session.".to_owned()
            } else {
                format!("{} task(s):", tasks.len())
            };
            for task in &tasks {
                text.push_str("\n- ");
                text.push_str(&format::task_line(task));
            }
            Ok(Answer::ok(text, json!(ListResult { tasks })))
        })
        .await
    }

    #[tool(
        description = "Block until the named tasks end (or, with no task_ids, until any running task of this session ends), at most timeout_ms (default 30 s, max 60 s). Returns their states."
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
            };
            let timeout = params.timeout_ms(&DEFAULTS);
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
            Ok(Answer::ok(text, json!(outcome)))
        })
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
            .into_params()
            .into_request(&DEFAULTS, &tasks, self.cwd.clone());
        let (outcome, held) = self.service.bash_held(&request)?;
        Ok(match outcome {
            BashOutcome::Finished { task, output } => {
                let structured = finished_result(&task, &output);
                Answer {
                    is_error: task.exit_code != Some(0),
                    text: format::finished_text(&task, &output),
                    structured,
                    held,
                }
            }
            BashOutcome::Background { task } => {
                let mut structured = json!(task);
                structured["background"] = json!(true);
                Answer::ok(format::background_text(&task, true), structured)
            }
            BashOutcome::Interrupted { task, error } => {
                // The task runs: the model gets its id with the error.
                let failed = Answer::failed(&error);
                let mut structured = json!(task);
                structured["background"] = json!(true);
                structured["error"] = failed.structured["error"].clone();
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
            map.insert("completions".into(), Value::Array(block.json));
        }
        if block.left > 0 {
            map.insert("completions_pending".into(), json!(block.left));
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
