//! Params and results of each method, and the request logic both agent
//! servers share: params into a `BashRequest`, an output chunk with its
//! `eof`/`next_offset`, the kill grace, the wait limits. A new method gets
//! its params and result here and one handler in each server.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::agent::{BashRequest, DEFAULT_OUTPUT_BUDGET};
use crate::compact::{ShapeOptions, Shaped};
use crate::config::{Engine, SpawnRequest, TaskDefaults};
use crate::error::{Error, Result};
use crate::interact::{Interaction, PtySize};
use crate::ready::{ReadyCondition, ReadySpec, DEFAULT_READY_TIMEOUT_MS};
use crate::sandbox::{Mode, SandboxRequest};
use crate::service::{OutputFile, Service};
use crate::task::{Completion, Notification, Status, Task, TaskId, Watch};

/// Grace between SIGTERM and SIGKILL when a kill names none.
pub const KILL_GRACE_MS: u64 = 2_000;
/// Longest grace a client may ask for: a kill request waits for the end.
pub const MAX_KILL_GRACE_MS: u64 = 600_000;

/// Where the two agent servers differ. A person or plugin driving `serve`
/// asks for what it wants; a model calling MCP tools rarely passes
/// optional arguments, so MCP's defaults are chosen to be right unasked,
/// and its reads and waits are capped to keep one tool call short.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// Foreground window of `bash` when `wait_ms` is absent.
    pub bash_wait_ms: u64,
    /// Bytes of output tail in `bash_status`.
    pub status_tail_bytes: u64,
    /// `bash_output` chunk when `max_bytes` is absent.
    pub chunk_bytes: u64,
    /// Smallest `bash_output` chunk (a smaller `max_bytes` is raised).
    pub min_chunk_bytes: u64,
    /// Largest `bash_output` chunk (a larger `max_bytes` is lowered).
    pub max_chunk_bytes: u64,
    /// `bash_wait`'s limit when `timeout_ms` is absent (`None`: none).
    pub wait_timeout_ms: Option<u64>,
    /// Longest `bash_wait` (`None`: as long as asked).
    pub max_wait_ms: Option<u64>,
}

impl Defaults {
    /// `bgtask serve`: its clients are programs that read output in big
    /// chunks and wait as long as they choose.
    pub const SERVE: Defaults = Defaults {
        bash_wait_ms: 5_000,
        status_tail_bytes: 5_120,
        chunk_bytes: 65_536,
        min_chunk_bytes: 0,
        max_chunk_bytes: 4 << 20,
        wait_timeout_ms: None,
        max_wait_ms: None,
    };

    /// `bgtask mcp`: a model's context is the budget. A longer foreground
    /// window saves it a follow-up call; chunks are smaller, and a wait
    /// never blocks a tool call for more than a minute (clients time out).
    pub const MCP: Defaults = Defaults {
        bash_wait_ms: 10_000,
        status_tail_bytes: 4_096,
        chunk_bytes: 16_384,
        min_chunk_bytes: 1,
        max_chunk_bytes: 1 << 20,
        wait_timeout_ms: Some(30_000),
        max_wait_ms: Some(60_000),
    };
}

/// Params of a method that takes none (`bash_drain_completions`).
#[derive(Debug, Default, Deserialize)]
pub struct Empty {}

/// `initialize`.
#[derive(Debug, Default, Deserialize)]
pub struct InitializeParams {
    pub session: Option<String>,
    pub project_root: Option<PathBuf>,
    pub long_running_interval_ms: Option<u64>,
}

/// The protocol's version, as `initialize` reports it.
pub const PROTOCOL_VERSION: u32 = 1;

/// The result of `initialize`.
#[derive(Debug, Serialize)]
pub struct InitializeResult {
    pub server: &'static str,
    pub version: &'static str,
    pub protocol_version: u32,
    /// The session the server now acts for.
    pub session: String,
}

impl InitializeResult {
    pub fn new(session: String) -> Self {
        InitializeResult {
            server: "bgtask",
            version: env!("CARGO_PKG_VERSION"),
            protocol_version: PROTOCOL_VERSION,
            session,
        }
    }
}

/// `bash`.
#[derive(Debug, Default, Deserialize)]
pub struct BashParams {
    pub command: String,
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: HashMap<String, String>,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_output_bytes: Option<u64>,
    #[serde(default)]
    pub background: bool,
    pub wait_ms: Option<u64>,
    pub notify_on_completion: Option<bool>,
    pub compressed: Option<bool>,
    pub output_bytes: Option<usize>,
    /// Return once the task is ready (issue 16) instead of after `wait_ms`;
    /// with `background`, return at once: the `ready`/`ready_failed`
    /// notification tells when (issue 17).
    pub ready: Option<ReadyParams>,
    /// Issue 18: a stdin pipe the task can be sent input on.
    #[serde(default)]
    pub stdin: bool,
    /// Issue 18: run under a pseudo-terminal (default 24x80).
    pub pty: Option<PtyParams>,
    /// `none`, `workspace` or `read-only`: may only narrow the configured
    /// agent sandbox (docs/sandbox.md).
    pub sandbox: Option<Mode>,
    pub no_network: Option<bool>,
    #[serde(default)]
    pub allow_write: Vec<PathBuf>,
    /// `"local"` or `"slurm"`; the `executor` setting when absent.
    pub executor: Option<Engine>,
    /// Flags passed verbatim to sbatch (Slurm tasks only).
    #[serde(default)]
    pub slurm_args: Vec<String>,
    /// Its queue group (issue 21); `default` when absent.
    pub group: Option<String>,
    /// Start only once these tasks completed successfully.
    #[serde(default)]
    pub after: Vec<TaskId>,
    /// Start no sooner than this many ms from now.
    pub delay_ms: Option<u64>,
    /// A label shown in lists and notifications.
    pub label: Option<String>,
}

/// `bash`'s `ready`: exactly one of `log`, `port`, `http`, and a limit.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReady {
    pub log: Option<String>,
    pub port: Option<u64>,
    pub http: Option<String>,
    pub timeout_ms: Option<u64>,
    pub kill_if_not_ready: Option<bool>,
}

/// A `ready` object checked for shape (one condition, a port number);
/// the pattern and URL are checked with the rest of the request.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawReady")]
pub struct ReadyParams(pub ReadySpec);

impl TryFrom<RawReady> for ReadyParams {
    type Error = String;
    fn try_from(raw: RawReady) -> std::result::Result<Self, String> {
        let condition = match (raw.log, raw.port, raw.http) {
            (Some(pattern), None, None) => ReadyCondition::Log { pattern },
            (None, Some(port), None) => ReadyCondition::Port {
                port: crate::ready::validate_port(port).map_err(|e| e.to_string())?,
            },
            (None, None, Some(url)) => ReadyCondition::Http { url },
            _ => return Err("give exactly one of log, port or http".into()),
        };
        let timeout_ms = match raw.timeout_ms {
            Some(0) => return Err("timeout_ms: must be longer than 0".into()),
            Some(ms) => ms,
            None => DEFAULT_READY_TIMEOUT_MS,
        };
        Ok(ReadyParams(ReadySpec {
            condition,
            timeout_ms,
            kill_if_not_ready: raw.kill_if_not_ready.unwrap_or(false),
        }))
    }
}

/// `bash`'s `pty`: the terminal's size.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
pub struct PtyParams {
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

impl PtyParams {
    pub fn size(self) -> PtySize {
        PtySize {
            rows: self.rows.unwrap_or(PtySize::DEFAULT.rows),
            cols: self.cols.unwrap_or(PtySize::DEFAULT.cols),
        }
    }
}

/// How `stdin` and `pty` connect the task's input (a terminal wins).
pub fn interaction(stdin: bool, pty: Option<PtyParams>) -> Interaction {
    match (pty, stdin) {
        (Some(pty), _) => Interaction::Pty(pty.size()),
        (None, true) => Interaction::Stdin,
        (None, false) => Interaction::None,
    }
}

impl BashParams {
    /// The request these params ask for; `tasks`'s limits where they name
    /// none (the configured agent defaults), `default_cwd` when they name
    /// no `cwd` (serve's project root, MCP's working directory).
    pub fn into_request(
        self,
        defaults: &Defaults,
        tasks: &TaskDefaults,
        default_cwd: Option<PathBuf>,
    ) -> BashRequest {
        // The workspace a sandboxed task may write is the server's, not
        // whatever `cwd` the call names (that would widen it).
        let sandbox = SandboxRequest {
            mode: self.sandbox,
            no_network: self.no_network,
            allow_write: self.allow_write,
            workspace: default_cwd.clone().or_else(|| std::env::current_dir().ok()),
            ..SandboxRequest::default()
        };
        BashRequest {
            spawn: SpawnRequest {
                command: self.command,
                cwd: self.cwd.or(default_cwd),
                env: self.env.into_iter().collect(),
                // 0 means no limit, as "none" does on the command line.
                timeout_ms: match self.timeout_ms {
                    Some(0) => None,
                    Some(ms) => Some(ms),
                    None => tasks.timeout_ms,
                },
                idle_timeout_ms: match self.idle_timeout_ms {
                    Some(0) => None,
                    Some(ms) => Some(ms),
                    None => tasks.idle_timeout_ms,
                },
                max_output: self.max_output_bytes.unwrap_or(tasks.max_output),
                // Decided by `notify_on_completion` (see `BashRequest`).
                notify: true,
                ready: self.ready.map(|r| r.0),
                interaction: interaction(self.stdin, self.pty),
                sandbox,
                executor: self.executor,
                slurm_args: self.slurm_args,
                queue: crate::config::QueueRequest {
                    group: self.group,
                    label: self.label,
                    after: self.after,
                    after_any: Vec::new(),
                    delay_ms: self.delay_ms,
                    no_queue: false,
                },
            },
            background: self.background,
            wait_ms: if self.background {
                0
            } else {
                self.wait_ms.unwrap_or(defaults.bash_wait_ms)
            },
            notify_on_completion: self.notify_on_completion,
            shape: ShapeOptions {
                budget: self.output_bytes.unwrap_or(DEFAULT_OUTPUT_BUDGET),
                compress: self.compressed.unwrap_or(true),
            },
        }
    }
}

/// The result of a `bash` whose task ended in its window: the task, its
/// shaped output, and `background: false`.
pub fn finished_result(task: &Task, output: &Shaped) -> Value {
    let mut value = json!(task);
    value["output"] = json!(output.text);
    value["output_truncated"] = json!(output.truncated);
    value["output_omitted_bytes"] = json!(output.omitted_bytes);
    value["background"] = json!(false);
    value
}

/// Methods that name one task (`bash_promote`, `bash_pause`, `bash_resume`).
#[derive(Debug, Deserialize)]
pub struct TaskParams {
    pub task_id: TaskId,
}

/// `bash_status`.
#[derive(Debug, Deserialize)]
pub struct StatusParams {
    pub task_id: TaskId,
    pub tail_bytes: Option<u64>,
    /// `screen`: add a `--pty` task's rendered screen (issue 18).
    #[serde(default)]
    pub view: super::View,
}

impl StatusParams {
    pub fn tail_bytes(&self, defaults: &Defaults) -> u64 {
        self.tail_bytes.unwrap_or(defaults.status_tail_bytes)
    }
}

/// One of a task's output streams, as the protocol names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    #[default]
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl std::str::FromStr for Stream {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            _ => Err(Error::InvalidArgument(format!(
                "stream must be \"stdout\" or \"stderr\", not {s:?}"
            ))),
        }
    }
}

impl From<Stream> for OutputFile {
    fn from(stream: Stream) -> OutputFile {
        match stream {
            Stream::Stdout => OutputFile::Stdout,
            Stream::Stderr => OutputFile::Stderr,
        }
    }
}

/// `bash_output`.
#[derive(Debug, Deserialize)]
pub struct OutputParams {
    pub task_id: TaskId,
    #[serde(default)]
    pub stream: Stream,
    pub offset: Option<u64>,
    pub max_bytes: Option<u64>,
    /// `screen`: a `--pty` task's rendered screen instead of raw bytes
    /// (issue 18).
    #[serde(default)]
    pub view: super::View,
}

/// The result of `bash_output`: one chunk of a stream.
#[derive(Clone, Debug, Serialize)]
pub struct OutputChunk {
    pub task_id: TaskId,
    /// The bytes read, as text (invalid UTF-8 becomes U+FFFD).
    pub data: String,
    pub offset: u64,
    /// Where the next read continues.
    pub next_offset: u64,
    /// The task has ended and everything was read.
    pub eof: bool,
    /// More was in the file than this chunk holds.
    pub truncated: bool,
    pub output_dropped_bytes: u64,
    /// The file's length when it was read (for text answers).
    #[serde(skip)]
    pub file_len: u64,
}

impl OutputParams {
    /// Reads the chunk these params ask for.
    pub fn read(&self, service: &Service, defaults: &Defaults) -> Result<OutputChunk> {
        let max = self
            .max_bytes
            .unwrap_or(defaults.chunk_bytes)
            .clamp(defaults.min_chunk_bytes, defaults.max_chunk_bytes);
        // The task first: once it is terminal, a read that reaches the
        // file's end has seen all of it.
        let task = service.get(&self.task_id)?;
        let chunk = service.read_range(
            &self.task_id,
            self.stream.into(),
            self.offset.unwrap_or(0),
            max,
        )?;
        let next_offset = chunk.offset + chunk.data.len() as u64;
        Ok(OutputChunk {
            task_id: self.task_id.clone(),
            data: String::from_utf8_lossy(&chunk.data).into_owned(),
            offset: chunk.offset,
            next_offset,
            eof: task.is_terminal() && next_offset >= chunk.file_len,
            truncated: next_offset < chunk.file_len,
            output_dropped_bytes: task.output_dropped_bytes,
            file_len: chunk.file_len,
        })
    }
}

/// `bash_list`.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub all_sessions: bool,
    pub status: Option<Status>,
    /// Only the tasks of this queue group (issue 21).
    pub group: Option<String>,
}

/// The result of `bash_list`.
#[derive(Debug, Serialize)]
pub struct ListResult {
    pub tasks: Vec<Task>,
}

/// `bash_kill`.
#[derive(Debug, Deserialize)]
pub struct KillParams {
    pub task_id: TaskId,
    pub grace_ms: Option<u64>,
}

impl KillParams {
    pub fn grace_ms(&self) -> u64 {
        self.grace_ms
            .unwrap_or(KILL_GRACE_MS)
            .min(MAX_KILL_GRACE_MS)
    }
}

/// The result of `bash_promote`.
#[derive(Debug, Serialize)]
pub struct PromoteResult {
    pub task_id: TaskId,
    pub promoted: bool,
}

/// `bash_wait`.
#[derive(Debug, Deserialize)]
pub struct WaitParams {
    pub task_ids: Vec<TaskId>,
    pub timeout_ms: Option<u64>,
    /// What to wait for: `end` (default), `ready`, or `notification` (any
    /// notification of the session; `task_ids` may then be empty).
    #[serde(default)]
    pub until: Until,
}

/// What `bash_wait` waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    #[default]
    End,
    Ready,
    Notification,
}

/// `bash_watch`.
#[derive(Debug, Deserialize)]
pub struct WatchParams {
    pub task_id: TaskId,
    pub pattern: String,
    #[serde(default)]
    pub once: bool,
    pub cooldown_ms: Option<u64>,
}

impl From<WatchParams> for crate::notices::WatchRequest {
    fn from(p: WatchParams) -> Self {
        crate::notices::WatchRequest {
            task_id: p.task_id,
            pattern: p.pattern,
            once: p.once,
            cooldown_ms: p.cooldown_ms,
        }
    }
}

/// The result of `bash_watch`.
#[derive(Debug, Serialize)]
pub struct WatchResult {
    pub watch_id: String,
    #[serde(flatten)]
    pub watch: Watch,
}

/// `bash_unwatch`.
#[derive(Debug, Deserialize)]
pub struct UnwatchParams {
    pub watch_id: String,
}

/// `bash_drain_completions`: with `all_kinds`, notifications of every kind.
#[derive(Debug, Default, Deserialize)]
pub struct DrainParams {
    #[serde(default)]
    pub all_kinds: bool,
}

/// The result of `bash_drain_completions` with `all_kinds`.
#[derive(Debug, Serialize)]
pub struct NotificationsResult {
    pub notifications: Vec<Notification>,
}

/// The result of a `bash` with `ready`: the task, then whether it became
/// ready (`ready_at`, the matching line) or why not (with its output tail).
pub fn ready_result(service: &Service, task: &Task, timed_out: bool) -> Value {
    let mut value = json!(task);
    let readiness = crate::notices::readiness_result(task);
    if let (Value::Object(out), Value::Object(extra)) = (&mut value, readiness) {
        out.extend(extra);
    }
    value["background"] = json!(!task.is_terminal());
    if timed_out {
        value["ready_outcome"] = json!("timeout");
    }
    if !matches!(task.ready_state(), crate::task::ReadyState::Ready) {
        let tail = service
            .status(&task.task_id, 2048)
            .map(|s| s.output_tail)
            .unwrap_or_default();
        value["output_tail"] = json!(tail);
    }
    value
}

impl WaitParams {
    /// The wait's limit under `defaults` (`None`: until the tasks end).
    pub fn timeout_ms(&self, defaults: &Defaults) -> Option<u64> {
        let asked = self.timeout_ms.or(defaults.wait_timeout_ms)?;
        Some(defaults.max_wait_ms.map_or(asked, |max| asked.min(max)))
    }
}

/// `bash_ack_completions`.
#[derive(Debug, Deserialize)]
pub struct AckParams {
    pub task_ids: Vec<TaskId>,
}

/// The result of `bash_ack_completions`.
#[derive(Debug, Serialize)]
pub struct AckResult {
    pub acked: usize,
}

/// The result of `bash_drain_completions`.
#[derive(Debug, Serialize)]
pub struct CompletionsResult {
    pub completions: Vec<Completion>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::rpc;

    #[test]
    fn bash_params_become_the_request_both_servers_make() {
        let p: BashParams = rpc::params(json!({"command": "true", "timeout_ms": 0})).unwrap();
        let req = p.into_request(&Defaults::SERVE, &TaskDefaults::AGENT, Some("/tmp".into()));
        assert_eq!(req.spawn.timeout_ms, None, "0 means no limit");
        assert_eq!(req.spawn.cwd, Some(PathBuf::from("/tmp")));
        assert_eq!(req.wait_ms, Defaults::SERVE.bash_wait_ms);
        let p: BashParams = rpc::params(json!({"command": "true"})).unwrap();
        let req = p.into_request(&Defaults::MCP, &TaskDefaults::AGENT, None);
        assert_eq!(req.spawn.timeout_ms, SpawnRequest::default().timeout_ms);
        assert_eq!(req.wait_ms, Defaults::MCP.bash_wait_ms);
        let p: BashParams =
            rpc::params(json!({"command": "true", "background": true, "wait_ms": 9})).unwrap();
        assert_eq!(
            p.into_request(&Defaults::SERVE, &TaskDefaults::AGENT, None)
                .wait_ms,
            0
        );
    }

    #[test]
    fn task_ids_are_typed_and_errors_name_the_field() {
        let err = rpc::params::<TaskParams>(json!({"task_id": "nope"})).unwrap_err();
        assert_eq!(err.code, rpc::INVALID_PARAMS);
        assert!(
            err.message
                .starts_with("invalid params: task_id: invalid task id"),
            "{}",
            err.message
        );
        let err =
            rpc::params::<WaitParams>(json!({"task_ids": ["bg-00000000000000ff", 3]})).unwrap_err();
        assert!(err.message.contains("task_ids[1]"), "{}", err.message);
        let err = rpc::params::<OutputParams>(
            json!({"task_id": "bg-00000000000000ff", "stream": "both"}),
        )
        .unwrap_err();
        assert!(err.message.contains("stream"), "{}", err.message);
    }

    #[test]
    fn limits_follow_the_defaults() {
        let wait = WaitParams {
            task_ids: Vec::new(),
            timeout_ms: None,
            until: Until::End,
        };
        assert_eq!(wait.timeout_ms(&Defaults::SERVE), None);
        assert_eq!(wait.timeout_ms(&Defaults::MCP), Some(30_000));
        let long = WaitParams {
            timeout_ms: Some(600_000),
            ..wait
        };
        assert_eq!(long.timeout_ms(&Defaults::SERVE), Some(600_000));
        assert_eq!(long.timeout_ms(&Defaults::MCP), Some(60_000));
        let id: TaskId = "bg-00000000000000ff".parse().unwrap();
        let kill = KillParams {
            task_id: id,
            grace_ms: None,
        };
        assert_eq!(kill.grace_ms(), KILL_GRACE_MS);
    }
}
