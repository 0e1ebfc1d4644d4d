//! Store-wide settings and the requests the `Service` accepts.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::sandbox::{SandboxConfig, SandboxRequest};

/// Default hard timeout of an agent's task.
pub const DEFAULT_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// Default cap on a task's output on disk.
pub const DEFAULT_MAX_OUTPUT: u64 = 100 << 20;
/// Default limit on concurrently live tasks in one store.
pub const DEFAULT_MAX_RUNNING: u32 = 64;
/// Default session name.
pub const DEFAULT_SESSION: &str = "default";

/// Where the store lives, who is asking, and the store-wide limits.
#[derive(Clone, Debug)]
pub struct Config {
    pub home: PathBuf,
    pub session: String,
    /// Live tasks allowed at once across every process using this store.
    pub max_running: u32,
    /// The bgtask binary, re-executed as each task's monitor.
    pub monitor_exe: PathBuf,
    /// Limits of a task whose request names none (`serve` and `mcp` use
    /// these; `run` has its own flags with the same defaults).
    pub tasks: TaskDefaults,
    /// The sandbox of a task whose request names none, and whether a
    /// request may only narrow it (agents).
    pub sandbox: SandboxConfig,
    /// The engine of a task whose request names none (`BGTASK_EXECUTOR`).
    pub executor: Engine,
}

/// Where a task runs (the row's `executor`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// A monitor process on this machine.
    #[default]
    Local,
    /// A Slurm batch job, watched from here (`executor/slurm.rs`).
    Slurm,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Local => "local",
            Engine::Slurm => "slurm",
        }
    }
}

impl std::str::FromStr for Engine {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "local" => Ok(Engine::Local),
            "slurm" => Ok(Engine::Slurm),
            _ => Err(Error::InvalidArgument(format!(
                "unknown executor {s:?} (expected local or slurm)"
            ))),
        }
    }
}

/// The limits a task gets when its request does not name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDefaults {
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_output: u64,
}

impl TaskDefaults {
    /// Tasks people start with `bgtask run`: no hard limit (a dev server
    /// runs until stopped).
    pub const RUN: TaskDefaults = TaskDefaults {
        timeout_ms: None,
        idle_timeout_ms: None,
        max_output: DEFAULT_MAX_OUTPUT,
    };
    /// Tasks agents start through `serve` or `mcp`: a forgotten one ends
    /// after 30 minutes.
    pub const AGENT: TaskDefaults = TaskDefaults {
        timeout_ms: Some(DEFAULT_TIMEOUT_MS),
        idle_timeout_ms: None,
        max_output: DEFAULT_MAX_OUTPUT,
    };
}

impl Config {
    /// The default home: the XDG state directory's `bgtask` folder
    /// (`~/.local/state/bgtask`).
    pub fn default_home() -> Result<PathBuf> {
        use etcetera::BaseStrategy;
        let strategy = etcetera::choose_base_strategy().map_err(|e| {
            Error::InvalidArgument(format!("cannot find the home directory ({e}); pass --home"))
        })?;
        let state = strategy.state_dir().unwrap_or_else(|| strategy.data_dir());
        Ok(state.join("bgtask"))
    }
}

/// A request to start a task.
#[derive(Clone, Debug)]
pub struct SpawnRequest {
    /// One shell command line, run with `bash -c`.
    pub command: String,
    /// Working directory; the caller's current directory when `None`.
    pub cwd: Option<PathBuf>,
    /// Extra environment variables. Their values are never stored.
    pub env: Vec<(String, String)>,
    /// Hard timeout; `None` means no limit.
    pub timeout_ms: Option<u64>,
    /// Ends the task when it prints nothing for this long.
    pub idle_timeout_ms: Option<u64>,
    /// Cap on the task's output on disk (split between stdout and stderr).
    pub max_output: u64,
    /// Whether the task's end produces a completion.
    pub notify: bool,
    /// What makes the task ready (issue 16), evaluated by its monitor.
    pub ready: Option<crate::ready::ReadySpec>,
    /// How the task's stdin is connected (issue 18).
    pub interaction: crate::interact::Interaction,
    /// The confinement asked for (`sandbox.rs`); the config's default
    /// where it names none.
    pub sandbox: SandboxRequest,
    /// The engine; the config's default (`executor` setting) when `None`.
    pub executor: Option<Engine>,
    /// Site flags passed verbatim to `sbatch` (Slurm tasks only).
    pub slurm_args: Vec<String>,
    /// Its group, label, dependencies and delay (issue 21).
    pub queue: QueueRequest,
}

/// How a task queues (issue 21): `run --group --after --after-any --delay
/// --label --no-queue`, serve's and MCP's `bash` `group`, `after`,
/// `delay_ms`, `label`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueRequest {
    /// Its group; `default` when `None`.
    pub group: Option<String>,
    pub label: Option<String>,
    /// Start only once these completed successfully.
    pub after: Vec<crate::task::TaskId>,
    /// Start only once these ended, however.
    pub after_any: Vec<crate::task::TaskId>,
    /// Start no sooner than this long after the request.
    pub delay_ms: Option<u64>,
    /// Refuse the task instead of queueing it for a slot.
    pub no_queue: bool,
}

impl Default for SpawnRequest {
    fn default() -> Self {
        SpawnRequest {
            command: String::new(),
            cwd: None,
            env: Vec::new(),
            timeout_ms: Some(DEFAULT_TIMEOUT_MS),
            idle_timeout_ms: None,
            max_output: DEFAULT_MAX_OUTPUT,
            notify: true,
            ready: None,
            interaction: crate::interact::Interaction::None,
            sandbox: SandboxRequest::default(),
            executor: None,
            slurm_args: Vec::new(),
            queue: QueueRequest::default(),
        }
    }
}

/// Which of a task's output streams to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamChoice {
    Stdout,
    Stderr,
    #[default]
    All,
}

impl std::str::FromStr for StreamChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stdout" => Ok(StreamChoice::Stdout),
            "stderr" => Ok(StreamChoice::Stderr),
            "all" | "both" => Ok(StreamChoice::All),
            _ => Err(Error::InvalidArgument(format!(
                "unknown stream {s:?} (expected stdout, stderr or all)"
            ))),
        }
    }
}
