//! The library's error type. Every I/O error carries the path it concerns;
//! messages are lowercase and never repeat the text of their `#[source]`.

use std::io;
use std::path::PathBuf;

use crate::task::TaskId;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in bgtask. `kind()` classifies it (see [`ErrorKind`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no task with id {0}")]
    TaskNotFound(String),
    #[error("no completion for task {task_id} in session {session:?}")]
    CompletionNotFound { task_id: TaskId, session: String },
    #[error("invalid task id {0:?}: expected bg- followed by 16 hex digits")]
    InvalidTaskId(String),
    /// A typed prefix names more than one task (CLI only: the servers take
    /// exact ids). `candidates` holds the first few, `more` the rest's count.
    #[error("task id prefix {prefix:?} is ambiguous: {}{}", candidates.join(", "), more_text(*.more))]
    AmbiguousTaskId {
        prefix: String,
        candidates: Vec<String>,
        more: usize,
    },
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
    #[error("cannot read --env-file {path}")]
    EnvFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("too many running tasks: the limit is {limit} (set BGTASK_MAX_RUNNING to change it)")]
    LimitExceeded { limit: u32 },
    #[error("could not start the task: {0}")]
    SpawnFailed(String),
    /// The kernel cannot enforce the sandbox a task asked for (fails
    /// closed: nothing was started).
    #[error("cannot sandbox the task: {0}")]
    SandboxUnavailable(String),
    /// A step of a start failed; the step is named, the cause kept.
    #[error("could not start the task: {step}")]
    SpawnStep {
        step: String,
        #[source]
        source: io::Error,
    },
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
    /// Input, a signal, a resize or a screen asked of a task that cannot
    /// take it (not interactive, ended, input closed; issue 18).
    #[error("{0}")]
    NotInteractive(String),
    /// The task's status does not allow the request: a pause of a task
    /// that is not running, a resume of one that is not paused (issue 21).
    #[error("{0}")]
    InvalidState(String),
    /// No queue group of this name (issue 21).
    #[error("no group named {0:?} (see bgtask group list)")]
    GroupNotFound(String),
    /// A group that exists already, or still has tasks, cannot be added
    /// or removed (issue 21).
    #[error("{0}")]
    GroupInUse(String),
}

/// The class of an error, as clients see it. `as_str` gives the stable
/// names the servers send as `data.kind` (part of the protocol: see
/// docs/protocol.md); the CLI's exit codes and the servers' error codes are
/// chosen from it in one place each (`crates/bgtask/src/main.rs`,
/// `protocol::rpc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    TaskNotFound,
    AmbiguousTaskId,
    InvalidArgument,
    InvalidCwd,
    LimitExceeded,
    SpawnFailed,
    StoreError,
    Timeout,
    Unreachable,
    NotInteractive,
    InvalidState,
    GroupNotFound,
    GroupInUse,
}

impl ErrorKind {
    /// The kind's stable machine name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::TaskNotFound => "task_not_found",
            ErrorKind::AmbiguousTaskId => "ambiguous_task_id",
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::InvalidCwd => "invalid_cwd",
            ErrorKind::LimitExceeded => "limit_exceeded",
            ErrorKind::SpawnFailed => "spawn_failed",
            ErrorKind::StoreError => "store_error",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::NotInteractive => "not_interactive",
            ErrorKind::InvalidState => "invalid_state",
            ErrorKind::GroupNotFound => "group_not_found",
            ErrorKind::GroupInUse => "group_in_use",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Error {
    /// The error's class. A new variant is added here, in this one match.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::TaskNotFound(_) | Error::CompletionNotFound { .. } => ErrorKind::TaskNotFound,
            Error::AmbiguousTaskId { .. } => ErrorKind::AmbiguousTaskId,
            Error::InvalidTaskId(_)
            | Error::EmptyCommand
            | Error::InvalidEnv(..)
            | Error::InvalidArgument(_)
            | Error::EnvFile { .. } => ErrorKind::InvalidArgument,
            Error::InvalidCwd { .. } | Error::CwdNotADirectory(_) => ErrorKind::InvalidCwd,
            Error::LimitExceeded { .. } => ErrorKind::LimitExceeded,
            Error::SpawnFailed(_) | Error::SpawnStep { .. } | Error::SandboxUnavailable(_) => {
                ErrorKind::SpawnFailed
            }
            Error::Io { .. } | Error::Store { .. } | Error::NewerRecord(_) => ErrorKind::StoreError,
            Error::NewerStore { .. } | Error::UnsafeHome { .. } => ErrorKind::StoreError,
            Error::Timeout(_) => ErrorKind::Timeout,
            Error::Unreachable(_) => ErrorKind::Unreachable,
            Error::NotInteractive(_) => ErrorKind::NotInteractive,
            Error::InvalidState(_) => ErrorKind::InvalidState,
            Error::GroupNotFound(_) => ErrorKind::GroupNotFound,
            Error::GroupInUse(_) => ErrorKind::GroupInUse,
        }
    }

    /// Whether SQLite found the store's database damaged or not a
    /// database at all: `bgtask doctor` is the way back.
    pub fn is_damaged_store(&self) -> bool {
        let Error::Store { source, .. } = self else {
            return false;
        };
        matches!(
            source.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        )
    }

    pub(crate) fn spawn_step(step: impl Into<String>, source: io::Error) -> Self {
        Error::SpawnStep {
            step: step.into(),
            source,
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

fn more_text(more: usize) -> String {
    if more == 0 {
        String::new()
    } else {
        format!(" and {more} more")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_keep_their_protocol_names() {
        let cases = [
            (Error::TaskNotFound("x".into()), "task_not_found"),
            (Error::InvalidTaskId("x".into()), "invalid_argument"),
            (
                Error::AmbiguousTaskId {
                    prefix: "3".into(),
                    candidates: vec![],
                    more: 0,
                },
                "ambiguous_task_id",
            ),
            (Error::CwdNotADirectory("/x".into()), "invalid_cwd"),
            (Error::LimitExceeded { limit: 1 }, "limit_exceeded"),
            (Error::SpawnFailed("x".into()), "spawn_failed"),
            (
                Error::NewerRecord("bg-00000000000000ff".parse().unwrap()),
                "store_error",
            ),
            (Error::Timeout("x".into()), "timeout"),
            (Error::Unreachable("x".into()), "unreachable"),
            (Error::NotInteractive("x".into()), "not_interactive"),
            (Error::InvalidState("x".into()), "invalid_state"),
        ];
        for (err, name) in cases {
            assert_eq!(err.kind().as_str(), name, "{err:?}");
            assert_eq!(serde_json::to_value(err.kind()).unwrap(), name);
        }
    }

    #[test]
    fn an_ambiguous_prefix_names_its_first_candidates_and_counts_the_rest() {
        let err = |more| Error::AmbiguousTaskId {
            prefix: "3f".into(),
            candidates: vec!["bg-3f00000000000000".into(), "bg-3f00000000000001".into()],
            more,
        };
        assert_eq!(
            err(0).to_string(),
            "task id prefix \"3f\" is ambiguous: bg-3f00000000000000, bg-3f00000000000001"
        );
        assert!(err(4)
            .to_string()
            .ends_with("bg-3f00000000000001 and 4 more"));
    }

    #[test]
    fn only_sqlite_damage_is_a_damaged_store() {
        let store = |code| Error::Store {
            path: "/x/bgtask.db".into(),
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        };
        assert!(store(rusqlite::ffi::SQLITE_CORRUPT).is_damaged_store());
        assert!(store(rusqlite::ffi::SQLITE_NOTADB).is_damaged_store());
        assert!(!store(rusqlite::ffi::SQLITE_BUSY).is_damaged_store());
        // Text alone decides nothing (it once did: "malformed /proc stat").
        let io = Error::io(
            "cannot read",
            "/proc/1/stat",
            io::Error::other("malformed /proc stat"),
        );
        assert!(!io.is_damaged_store());
    }
}
