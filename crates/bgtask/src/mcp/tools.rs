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

use bgtask_core::compact::ShapeOptions;
use bgtask_core::{
    BashOutcome, BashRequest, ListRequest, OutputFile, SpawnRequest, TaskId, DEFAULT_OUTPUT_BUDGET,
};

use super::{format, BgMcp};

/// Default foreground window of the `bash` tool.
const DEFAULT_WAIT_MS: u64 = 10_000;
/// Default and longest block of `bash_wait`.
const DEFAULT_BLOCK_MS: u64 = 30_000;
const MAX_BLOCK_MS: u64 = 60_000;
const DEFAULT_CHUNK: u64 = 16_384;
const MAX_CHUNK: u64 = 1 << 20;
const STATUS_TAIL: u64 = 4_096;

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
        let message = bgtask_core::rpc::error_text(err);
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
            let status = me.service.status(&id, STATUS_TAIL)?;
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
            let id = parse_id(&args.task_id)?;
            let file = match args.stream.as_deref() {
                None | Some("stdout") => OutputFile::Stdout,
                Some("stderr") => OutputFile::Stderr,
                Some(other) => {
                    return Err(bgtask_core::Error::InvalidArgument(format!(
                        "stream must be \"stdout\" or \"stderr\", not {other:?}"
                    )))
                }
            };
            let task = me.service.get(&id)?;
            let max = args.max_bytes.unwrap_or(DEFAULT_CHUNK).clamp(1, MAX_CHUNK);
            let chunk = me
                .service
                .read_range(&id, file, args.offset.unwrap_or(0), max)?;
            let next_offset = chunk.offset + chunk.data.len() as u64;
            let eof = task.is_terminal() && next_offset >= chunk.file_len;
            let data = String::from_utf8_lossy(&chunk.data).into_owned();
            let text = format!(
                "Task {id} {}: bytes {}..{} of {}{}\n{data}",
                args.stream.as_deref().unwrap_or("stdout"),
                chunk.offset,
                next_offset,
                chunk.file_len,
                if eof { " (end of output)" } else { "" },
            );
            Ok(Answer::ok(
                text,
                json!({
                    "task_id": id, "data": data, "offset": chunk.offset, "next_offset": next_offset,
                    "eof": eof, "truncated": next_offset < chunk.file_len,
                }),
            ))
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
            let task = me.service.kill(&id, 2_000)?;
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
            Ok(Answer::ok(text, json!({ "tasks": tasks })))
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
            let timeout = args
                .timeout_ms
                .unwrap_or(DEFAULT_BLOCK_MS)
                .min(MAX_BLOCK_MS);
            let named = args.task_ids.unwrap_or_default();
            let outcome = if named.is_empty() {
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
                me.service.wait_any(&live, Some(timeout))?
            } else {
                let ids = named
                    .iter()
                    .map(|s| parse_id(s))
                    .collect::<Result<Vec<_>, _>>()?;
                me.service.wait(&ids, Some(timeout))?
            };
            let mut text = if outcome.timed_out {
                format!("Still running after {timeout} ms:")
            } else {
                "Done:".to_owned()
            };
            for task in &outcome.tasks {
                text.push_str("\n- ");
                text.push_str(&format::task_line(task));
            }
            Ok(Answer::ok(
                text,
                json!({ "tasks": outcome.tasks, "timed_out": outcome.timed_out }),
            ))
        })
        .await
    }
}

impl BgMcp {
    fn run_bash(&self, args: BashArgs) -> Result<Answer, bgtask_core::Error> {
        let defaults = SpawnRequest::default();
        let background = args.background.unwrap_or(false);
        let request = BashRequest {
            spawn: SpawnRequest {
                command: args.command,
                cwd: args.cwd.or_else(|| self.cwd.clone()),
                timeout_ms: match args.timeout_ms {
                    Some(0) => None,
                    Some(ms) => Some(ms),
                    None => defaults.timeout_ms,
                },
                ..defaults
            },
            background,
            wait_ms: if background {
                0
            } else {
                args.wait_ms.unwrap_or(DEFAULT_WAIT_MS)
            },
            notify_on_completion: None,
            shape: ShapeOptions {
                budget: DEFAULT_OUTPUT_BUDGET,
                compress: true,
            },
        };
        let (outcome, held) = self.service.bash_held(&request)?;
        Ok(match outcome {
            BashOutcome::Finished { task, output } => {
                let mut structured = json!(task);
                structured["output"] = json!(output.text);
                structured["output_truncated"] = json!(output.truncated);
                structured["background"] = json!(false);
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
