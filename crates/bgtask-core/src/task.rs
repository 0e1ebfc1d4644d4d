//! The task model: ids, statuses, the task record as clients see it, and the
//! completion that a finished task leaves in its session's outbox.
//!
//! Invariant: a terminal status is final. `Status::is_terminal` is the one
//! place that says which statuses are terminal.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize, Serializer};

use crate::error::Error;
use crate::process::Signal;

/// A task id: `bg-` followed by 16 lowercase hex digits (64 random bits).
///
/// Ids are validated before they are used anywhere, so a `TaskId` is always
/// safe to use as a file name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

const ID_PREFIX: &str = "bg-";
const ID_HEX_DIGITS: usize = 16;

impl TaskId {
    /// A fresh id with 64 bits from the kernel's random source.
    pub fn random() -> Self {
        let mut bytes = [0u8; 8];
        crate::process::fill_random(&mut bytes);
        TaskId(format!("{ID_PREFIX}{:016x}", u64::from_le_bytes(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TaskId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let hex = s
            .strip_prefix(ID_PREFIX)
            .filter(|h| h.len() == ID_HEX_DIGITS)
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        match hex {
            Some(_) => Ok(TaskId(s.to_owned())),
            None => Err(Error::InvalidTaskId(s.to_owned())),
        }
    }
}

impl TryFrom<String> for TaskId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Waiting in its group's queue (issue 21): for a free slot, its
    /// dependencies or its delay. Live (its monitor waits for its turn),
    /// but holds no slot of any running limit.
    Queued,
    Starting,
    Running,
    /// Running, but its whole tree is held stopped (`bgtask pause`; issue
    /// 21): a cgroup freezer, else SIGSTOP. Live; its timeouts do not run.
    Paused,
    Killing,
    Completed,
    Failed,
    Killed,
    TimedOut,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Starting,
        Status::Running,
        Status::Paused,
        Status::Killing,
        Status::Completed,
        Status::Failed,
        Status::Killed,
        Status::TimedOut,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Completed | Status::Failed | Status::Killed | Status::TimedOut
        )
    }

    /// Whether a task in this status still has (or is about to have) a
    /// process: every status that is not terminal.
    pub fn is_live(self) -> bool {
        !self.is_terminal()
    }

    /// Whether a task in this status takes a slot of its group's and the
    /// store's running limit: every live status except `queued`.
    pub fn holds_slot(self) -> bool {
        self.is_live() && self != Status::Queued
    }

    /// A status read back from the database. A row of a newer format is
    /// skipped before its status is read (`record_version`), so a status
    /// this build does not know is a damaged record; it reads as `failed`,
    /// the one fallback: a terminal status, so no waiter waits on it for
    /// ever, nothing is signalled on its behalf and it holds no slot of the
    /// running limit, and the record itself is left as it is.
    pub(crate) fn from_stored(text: &str) -> Status {
        text.parse().unwrap_or(Status::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Starting => "starting",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Killing => "killing",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Killed => "killed",
            Status::TimedOut => "timed_out",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown status {s:?} (expected one of queued, starting, running, paused, killing, completed, failed, killed, timed_out)"
                ))
            })
    }
}

/// How a task ended, with the data each ending carries. Turned into the
/// stored status, exit code, signal and reason by [`Outcome::into_end`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The shell exited by itself with this code.
    Exited(i32),
    /// The shell died of a signal nobody in bgtask sent.
    Signaled(Signal),
    /// The shell died of a signal sent with `bgtask signal` (issue 18):
    /// an end like [`Outcome::Signaled`], with the reason saying who sent it.
    SignalSent(Signal),
    /// Killed on request; the signal that ended it (or the last one sent).
    Killed(Signal),
    /// The hard timeout fired.
    TimedOut { after_ms: u64 },
    /// No output for this long.
    IdleTimedOut { after_ms: u64 },
    /// The end cannot be known (the monitor vanished, the spawn was aborted).
    Lost(String),
}

/// The stored form of an ending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct End {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub reason: Option<String>,
}

impl Outcome {
    pub fn into_end(self) -> End {
        let (status, exit_code, signal, reason) = match self {
            Outcome::Exited(0) => (Status::Completed, Some(0), None, None),
            Outcome::Exited(code) => (Status::Failed, Some(code), None, None),
            Outcome::Signaled(sig) => (
                Status::Failed,
                Some(sig.exit_code()),
                Some(sig.name()),
                Some(format!("terminated by {}", sig.name())),
            ),
            Outcome::SignalSent(sig) => (
                Status::Failed,
                Some(sig.exit_code()),
                Some(sig.name()),
                Some(format!("ended by {} sent with bgtask signal", sig.name())),
            ),
            Outcome::Killed(sig) => (
                Status::Killed,
                Some(sig.exit_code()),
                Some(sig.name()),
                Some("killed on request".to_owned()),
            ),
            Outcome::TimedOut { after_ms } => (
                Status::TimedOut,
                Some(124),
                None,
                Some(format!(
                    "timeout after {}",
                    crate::units::format_duration_ms(after_ms)
                )),
            ),
            Outcome::IdleTimedOut { after_ms } => (
                Status::TimedOut,
                Some(124),
                None,
                Some(format!(
                    "idle timeout: no output for {}",
                    crate::units::format_duration_ms(after_ms)
                )),
            ),
            Outcome::Lost(reason) => (Status::Failed, None, None, Some(reason)),
        };
        End {
            status,
            exit_code,
            signal,
            reason,
        }
    }
}

/// A task as clients see it (the "task object" of the CLI and protocols).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: TaskId,
    pub session: String,
    pub command: String,
    #[serde(serialize_with = "serialize_path")]
    pub cwd: PathBuf,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub reason: Option<String>,
    pub pid: Option<u32>,
    /// The bgtask process that supervises (or supervised) the task.
    pub monitor_pid: Option<u32>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_output_bytes: u64,
    pub notify: bool,
    pub env_keys: Vec<String>,
    pub output_dropped_bytes: u64,
    #[serde(serialize_with = "serialize_path")]
    pub stdout_path: PathBuf,
    #[serde(serialize_with = "serialize_path")]
    pub stderr_path: PathBuf,
    /// The effective confinement of a sandboxed task (docs/sandbox.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Its stdin is a pipe that takes input (`run --stdin`; issue 18).
    #[serde(default)]
    pub stdin: bool,
    /// It runs under a pseudo-terminal of this size (`run --pty`).
    #[serde(default)]
    pub pty: Option<crate::interact::PtySize>,
    /// Signals sent to it with `bgtask signal`, oldest first.
    #[serde(default)]
    pub signals_sent: Vec<String>,
    /// Since when a `paused` task is paused (unix ms; issue 21), else null.
    #[serde(default)]
    pub paused_at: Option<i64>,
    /// When the task became ready (unix ms; issue 16), else null.
    pub ready_at: Option<i64>,
    /// The task's readiness condition and its outcome, if it has one.
    pub readiness: Option<Readiness>,
    /// Where it runs: `"local"` or `"slurm"`.
    #[serde(default = "local_executor")]
    pub executor: String,
    /// Its Slurm job id (null for a local task, and until sbatch answers).
    #[serde(default)]
    pub job_id: Option<String>,
    /// The queue group it runs in (issue 21; `default` unless `--group`).
    #[serde(default = "default_group")]
    pub group: String,
    /// A person's label for it (`--label`), if any.
    #[serde(default)]
    pub label: Option<String>,
}

fn default_group() -> String {
    DEFAULT_GROUP.to_owned()
}

/// The group a task runs in unless it names one; its parallelism is the
/// store-wide running limit unless set (issue 21).
pub const DEFAULT_GROUP: &str = "default";

/// A task's readiness condition as clients see it, with its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    #[serde(flatten)]
    pub condition: crate::ready::ReadyCondition,
    pub timeout_ms: u64,
    pub kill_if_not_ready: bool,
    /// `null` while pending, then `ready` or `failed`.
    pub outcome: Option<ReadyOutcome>,
    /// For `ready`: the matching line (log) or what answered (port, http);
    /// for `failed`: why.
    pub detail: Option<String>,
}

/// How a readiness condition ended, recorded once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyOutcome {
    Ready,
    /// The task ended before it was ready.
    Ended,
    /// The readiness timeout passed first.
    Timeout,
}

impl ReadyOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadyOutcome::Ready => "ready",
            ReadyOutcome::Ended => "ended",
            ReadyOutcome::Timeout => "timeout",
        }
    }

    pub(crate) fn from_stored(text: &str) -> Option<ReadyOutcome> {
        match text {
            "ready" => Some(ReadyOutcome::Ready),
            "ended" => Some(ReadyOutcome::Ended),
            "timeout" => Some(ReadyOutcome::Timeout),
            _ => None,
        }
    }
}

/// What a waiter for readiness sees of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyState {
    /// Not yet decided.
    Pending,
    Ready,
    /// It ended first (or was recorded as failing readiness by its end).
    Ended,
    /// The readiness timeout passed.
    TimedOut,
}

fn local_executor() -> String {
    "local".to_owned()
}

impl Task {
    /// Where the task stands on readiness. A task without a condition is
    /// ready once it runs (and counts as ended if it ended unstarted).
    pub fn ready_state(&self) -> ReadyState {
        match &self.readiness {
            Some(r) => match r.outcome {
                Some(ReadyOutcome::Ready) => ReadyState::Ready,
                Some(ReadyOutcome::Ended) => ReadyState::Ended,
                Some(ReadyOutcome::Timeout) => ReadyState::TimedOut,
                None if self.is_terminal() => ReadyState::Ended,
                None => ReadyState::Pending,
            },
            None => match self.status {
                Status::Starting => ReadyState::Pending,
                _ if self.started_at.is_some() => ReadyState::Ready,
                _ if self.is_terminal() => ReadyState::Ended,
                _ => ReadyState::Pending,
            },
        }
    }
}

/// The kinds of notification a session's outbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A task ended (the completions of before).
    Completed,
    /// A task became ready.
    Ready,
    /// A task's readiness failed: it ended first, or the timeout passed.
    ReadyFailed,
    /// A watched task printed a matching line.
    WatchMatch,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Completed => "completed",
            NotificationKind::Ready => "ready",
            NotificationKind::ReadyFailed => "ready_failed",
            NotificationKind::WatchMatch => "watch_match",
        }
    }

    pub(crate) fn from_stored(text: &str) -> Option<NotificationKind> {
        [
            NotificationKind::Completed,
            NotificationKind::Ready,
            NotificationKind::ReadyFailed,
            NotificationKind::WatchMatch,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// One unacknowledged notice in a session's outbox, of any kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// `c:<seq>` for a completion, `n:<seq>` for the other kinds: unique in
    /// the store, accepted by `ack`.
    pub notification_id: String,
    pub kind: NotificationKind,
    pub task_id: TaskId,
    pub session: String,
    /// The watch that matched (`watch_match` only).
    pub watch_id: Option<String>,
    /// When it was recorded (unix ms); the outbox's order.
    pub created_at: i64,
    /// One line saying what happened, for people and models.
    pub summary: String,
    /// The kind's own fields (see docs/protocol.md, "The outbox").
    pub detail: serde_json::Value,
}

/// A stored watch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub watch_id: String,
    pub task_id: TaskId,
    pub session: String,
    pub pattern: String,
    pub once: bool,
    pub cooldown_ms: u64,
    pub created_at: i64,
    /// When it ended (`--once` matched, `unwatch`, or its task ended).
    pub ended_at: Option<i64>,
    /// When it last notified.
    pub fired_at: Option<i64>,
}

impl Task {
    /// How the task's stdin is connected.
    pub fn interaction(&self) -> crate::interact::Interaction {
        use crate::interact::Interaction;
        match (self.pty, self.stdin) {
            (Some(size), _) => Interaction::Pty(size),
            (None, true) => Interaction::Stdin,
            (None, false) => Interaction::None,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}

/// A finished task's notice in its session's outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub task_id: TaskId,
    pub session: String,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<String>,
    pub reason: Option<String>,
    pub command: String,
    pub duration_ms: Option<u64>,
    pub finished_at: Option<i64>,
    pub output_preview: String,
    pub output_truncated: bool,
    #[serde(serialize_with = "serialize_path")]
    pub stdout_path: PathBuf,
    #[serde(serialize_with = "serialize_path")]
    pub stderr_path: PathBuf,
    /// The confinement the task ran under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// The task's `--label` (issue 21), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Serializes a path as a JSON string. Paths are bytes and JSON strings
/// are Unicode: bytes that are not UTF-8 (a home such as `/tmp/h\xff`) are
/// shown as U+FFFD rather than failing the whole reply.
pub fn serialize_path<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&path.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_round_trip_and_reject_path_tricks() {
        let id = TaskId::random();
        assert_eq!(id.as_str().parse::<TaskId>().unwrap(), id);
        for bad in [
            "",
            "bg-",
            "bg-../../etc/passwd",
            "bg-0123456789ABCDEF",
            "xx-0123456789abcdef",
        ] {
            assert!(bad.parse::<TaskId>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn live_is_what_is_not_terminal_and_unknown_stored_statuses_read_as_failed() {
        let live: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_live()).collect();
        assert_eq!(
            live,
            [
                Status::Queued,
                Status::Starting,
                Status::Running,
                Status::Paused,
                Status::Killing
            ]
        );
        let holding: Vec<_> = Status::ALL.into_iter().filter(|s| s.holds_slot()).collect();
        assert_eq!(
            holding,
            [
                Status::Starting,
                Status::Running,
                Status::Paused,
                Status::Killing
            ]
        );
        for status in Status::ALL {
            assert_eq!(Status::from_stored(status.as_str()), status);
        }
        assert_eq!(Status::from_stored("waiting"), Status::Failed);
        assert_eq!(Status::from_stored(""), Status::Failed);
    }

    #[test]
    fn outcomes_map_to_the_documented_exit_codes() {
        assert_eq!(Outcome::Exited(0).into_end().status, Status::Completed);
        let failed = Outcome::Exited(3).into_end();
        assert_eq!((failed.status, failed.exit_code), (Status::Failed, Some(3)));
        let killed = Outcome::Killed(Signal::Kill).into_end();
        assert_eq!(killed.exit_code, Some(137));
        assert_eq!(killed.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(
            Outcome::Killed(Signal::Term).into_end().exit_code,
            Some(143)
        );
        let timed = Outcome::TimedOut {
            after_ms: 1_800_000,
        }
        .into_end();
        assert_eq!(timed.exit_code, Some(124));
        assert_eq!(timed.reason.as_deref(), Some("timeout after 30m"));
        let lost = Outcome::Lost("monitor vanished".into()).into_end();
        assert_eq!(lost.status, Status::Failed);
    }
}
