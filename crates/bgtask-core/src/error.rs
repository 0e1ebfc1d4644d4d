//! The library's error type. Every I/O error carries the path it concerns;
//! messages are lowercase and never repeat the text of their `#[source]`.

use std::io;
use std::path::PathBuf;

use crate::task::TaskId;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in bgtask. `kind()` gives the stable machine name used by
/// the CLI's exit codes and the servers' error codes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no task with id {0}")]
    TaskNotFound(String),
    #[error("no completion for task {task_id} in session {session:?}")]
    CompletionNotFound { task_id: TaskId, session: String },
    #[error("invalid task id {0:?}: expected bg- followed by 16 hex digits")]
    InvalidTaskId(String),
    #[error("invalid working directory {path}")]
    InvalidCwd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("working directory {0} is not a directory")]
    CwdNotADirectory(PathBuf),
    #[error("the command is empty")]
    EmptyCommand,
    #[error("invalid environment variable {0:?}: {1}")]
    InvalidEnv(String, &'static str),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("too many running tasks: the limit is {limit} (set BGTASK_MAX_RUNNING to change it)")]
    LimitExceeded { limit: u32 },
    #[error("could not start the task: {0}")]
    SpawnFailed(String),
    #[error("{context} {path}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("store error in {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("the store at {path} was written by a newer bgtask (schema {found}, this build knows {known}); upgrade bgtask")]
    NewerStore {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("task {0} was written by a newer bgtask; upgrade bgtask to use it")]
    NewerRecord(TaskId),
    #[error("unsafe store directory {path}: {why}")]
    UnsafeHome { path: PathBuf, why: String },
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// The task's monitor cannot be reached from this process (another
    /// pid namespace); nothing was changed.
    #[error("{0}")]
    Unreachable(String),
}

impl Error {
    /// Stable, machine-readable name of the error's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::TaskNotFound(_) | Error::CompletionNotFound { .. } => "task_not_found",
            Error::InvalidTaskId(_)
            | Error::EmptyCommand
            | Error::InvalidEnv(..)
            | Error::InvalidArgument(_) => "invalid_argument",
            Error::InvalidCwd { .. } | Error::CwdNotADirectory(_) => "invalid_cwd",
            Error::LimitExceeded { .. } => "limit_exceeded",
            Error::SpawnFailed(_) => "spawn_failed",
            Error::Io { .. } | Error::Store { .. } | Error::NewerRecord(_) => "store_error",
            Error::NewerStore { .. } | Error::UnsafeHome { .. } => "store_error",
            Error::Timeout(_) => "timeout",
            Error::Unreachable(_) => "unreachable",
        }
    }

    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
