//! What agent-facing servers share: a `bash` call that runs in the
//! foreground for a while and is promoted to a notifying background task if
//! it outlives its window, and task output shaped to a byte budget.
//!
//! Invariant: a task that the caller is told is in the background always
//! delivers a completion (unless the caller opted out); a task whose result
//! was returned inline does not produce one.

use crate::compact::{shape_file, ShapeOptions, Shaped};
use crate::config::SpawnRequest;
use crate::error::{Error, Result};
use crate::service::Service;
use crate::task::Task;

/// Default byte budget for output returned inline.
pub const DEFAULT_OUTPUT_BUDGET: usize = 30_000;
/// Separator between stdout and stderr in combined output.
const STDERR_SEPARATOR: &str = "\n[stderr]\n";

/// A `bash` call from an agent.
#[derive(Clone, Debug)]
pub struct BashRequest {
    /// What to run; its `notify` is decided by the fields below.
    pub spawn: SpawnRequest,
    /// Return at once instead of waiting for the task.
    pub background: bool,
    /// How long to wait for the task before promoting it.
    pub wait_ms: u64,
    /// Overrides whether a completion is produced (see module docs).
    pub notify_on_completion: Option<bool>,
    /// Output shaping for the inline result.
    pub shape: ShapeOptions,
}

/// How a `bash` call ended.
#[derive(Clone, Debug)]
pub enum BashOutcome {
    /// The task ended inside the window.
    Finished { task: Task, output: Shaped },
    /// The task runs in the background and will produce a completion
    /// (unless `notify_on_completion` was false).
    Background { task: Task },
}

impl Service {
    /// Runs a command for an agent: waits up to `wait_ms` (unless
    /// background) and returns its shaped output, or promotes it.
    pub fn bash(&self, req: &BashRequest) -> Result<BashOutcome> {
        let mut spawn = req.spawn.clone();
        spawn.notify = if req.background {
            req.notify_on_completion.unwrap_or(true)
        } else {
            req.notify_on_completion.unwrap_or(false)
        };
        let task = self.spawn(&spawn)?;
        if req.background {
            // An agent is told the task runs (with its pid), or why not.
            let task = self.started(task)?;
            return Ok(BashOutcome::Background { task });
        }
        let waited = self.wait(std::slice::from_ref(&task.task_id), Some(req.wait_ms))?;
        let task = waited.tasks.into_iter().next().unwrap_or(task);
        let task = self.started(task)?;
        if task.is_terminal() {
            let output = self.shaped_output(&task, req.shape)?;
            return Ok(BashOutcome::Finished { task, output });
        }
        if req.notify_on_completion.unwrap_or(true) {
            self.promote(&task.task_id)?;
        }
        Ok(BashOutcome::Background { task })
    }

    /// A task's stdout and stderr shaped to `opts.budget` bytes in total:
    /// stdout, then a `[stderr]` line and stderr when there is any.
    pub fn shaped_output(&self, task: &Task, opts: ShapeOptions) -> Result<Shaped> {
        let read = |path: &std::path::Path, budget: usize| {
            shape_file(path, ShapeOptions { budget, ..opts })
                .map_err(|e| Error::io("cannot read output", path, e))
        };
        let out_len = file_len(&task.stdout_path);
        let err_len = file_len(&task.stderr_path);
        if out_len == 0 && err_len == 0 {
            // Nothing to read (or no files at all: the task never started).
            return Ok(Shaped::default());
        }
        if err_len == 0 {
            return read(&task.stdout_path, opts.budget);
        }
        if out_len == 0 {
            return read(&task.stderr_path, opts.budget);
        }
        let room = opts.budget.saturating_sub(STDERR_SEPARATOR.len());
        let err_budget = (room / 3)
            .max(room.saturating_sub(out_len as usize))
            .min(room);
        let err = read(&task.stderr_path, err_budget)?;
        let out = read(&task.stdout_path, room - err.text.len().min(room))?;
        let mut text = out.text;
        text.push_str(STDERR_SEPARATOR);
        text.push_str(&err.text);
        Ok(Shaped {
            text,
            truncated: out.truncated || err.truncated,
            omitted_bytes: out.omitted_bytes + err.omitted_bytes,
        })
    }
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
