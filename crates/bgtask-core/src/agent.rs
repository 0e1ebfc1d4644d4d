//! What agent-facing servers share: a `bash` call that runs in the
//! foreground for a while and continues as a notifying background task if
//! it outlives its window, the claiming of completions for showing, and
//! task output shaped to a byte budget.
//!
//! Invariant: a task whose end the caller did not opt out of hearing about
//! is delivered exactly once when all goes well, and at least once whatever
//! dies. A foreground task notifies from its start, with its completion
//! held by this process (see `store/outbox.rs`):
//! - returned inline, the completion is settled (removed, the task no
//!   longer notifying), at once by `bash`, or by the caller of `bash_held`
//!   once its client has the result;
//! - continuing in the background, the hold is released and the completion
//!   is reported like any other;
//! - if this process dies, the hold is void and the completion becomes
//!   visible to the session.

use crate::clock::now_ms;
use crate::compact::{shape_file, shape_terminal_file, ShapeOptions, Shaped};
use crate::config::SpawnRequest;
use crate::error::{Error, Result};
use crate::reconcile::reconcile_task;
use crate::service::{this_process, Launch, Service};
use crate::task::{Completion, Task, TaskId};

pub use crate::store::Claimed;

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
    /// How long to wait for the task before it continues in the background.
    pub wait_ms: u64,
    /// Whether the task's end produces a completion. `None`: a task that
    /// continues in the background does, an inline result stands in for
    /// it; `Some(true)`: always, inline too; `Some(false)`: never.
    pub notify_on_completion: Option<bool>,
    /// Output shaping for the inline result.
    pub shape: ShapeOptions,
}

/// How a `bash` call ended.
#[derive(Debug)]
pub enum BashOutcome {
    /// The task ended inside the window.
    Finished { task: Task, output: Shaped },
    /// The task runs in the background and will produce a completion
    /// (unless `notify_on_completion` was false).
    Background { task: Task },
    /// The task started, but a step after the start failed (waiting for
    /// it, reading its output, promoting it). A caller is never told only
    /// an error about a task that runs: it gets the task and the error.
    Interrupted { task: Task, error: Error },
}

impl Service {
    /// Runs a command for an agent: waits up to `wait_ms` (unless
    /// background) and returns its shaped output, or lets it continue in
    /// the background. A result returned inline is settled at once.
    pub fn bash(&self, req: &BashRequest) -> Result<BashOutcome> {
        let (outcome, held) = self.bash_held(req)?;
        if let Some(id) = held {
            // The task ran: never answer with an error now. Unsettled, its
            // completion stays held until this process exits, and is then
            // reported (twice at worst).
            let _ = self.settle(std::slice::from_ref(&id));
        }
        Ok(outcome)
    }

    /// [`Service::bash`], except that a result returned inline keeps its
    /// completion claimed by this process: the id returned with it must be
    /// passed to [`Service::settle`] once the client has the result. If this
    /// process dies first, the completion is reported to the session.
    pub fn bash_held(&self, req: &BashRequest) -> Result<(BashOutcome, Option<TaskId>)> {
        let notify = req.notify_on_completion.unwrap_or(true);
        // By default an inline result stands in for the completion, which
        // is held meanwhile; asked for explicitly, both are produced.
        let holder = (!req.background && req.notify_on_completion.is_none())
            .then(this_process)
            .flatten();
        let mut spawn = req.spawn.clone();
        // Without an identity to hold it, a foreground task notifies only
        // once promoted (its end is lost if this process dies meanwhile).
        spawn.notify =
            notify && (req.background || holder.is_some() || req.notify_on_completion.is_some());
        let launch = Launch::start(self.config(), &spawn)?;
        let task = self.record_held(launch, holder)?;
        // From here on the task runs: whatever fails is reported with it.
        if req.background {
            // Answered once recorded, as `bgtask run` is: the monitor starts
            // the shell meanwhile (its pid and start are in `bash_status`),
            // a shell that cannot start ends the task `failed` with a
            // completion, and requests to its monitor wait for its start
            // (`Service::tell`). Waiting here would add the monitor's whole
            // start to every background call.
            return Ok((BashOutcome::Background { task }, None));
        }
        let id = task.task_id.clone();
        let outcome = self.foreground(task.clone(), req);
        match (&outcome, holder) {
            (Ok(BashOutcome::Finished { .. }), Some(_)) => {}
            // Reported in the background (or not at all): no longer held.
            // On failure the completion is held until this process exits
            // (late, never lost); the caller is still told what ran.
            (_, Some(me)) => {
                let _ = self.store().release_hold(&id, me);
            }
            (Ok(BashOutcome::Background { .. }), None) if notify && !spawn.notify => {
                if let Err(error) = self.promote(&id) {
                    return Ok((BashOutcome::Interrupted { task, error }, None));
                }
            }
            (_, None) => {}
        }
        match outcome {
            Ok(outcome) => Ok((outcome, holder.map(|_| id))),
            Err(error) => Ok((BashOutcome::Interrupted { task, error }, None)),
        }
    }

    /// Waits for a foreground task up to its window; its inline result.
    fn foreground(&self, task: Task, req: &BashRequest) -> Result<BashOutcome> {
        let waited = self.wait(std::slice::from_ref(&task.task_id), Some(req.wait_ms))?;
        let task = waited.tasks.into_iter().next().unwrap_or(task);
        let mut task = self.started(task)?;
        if task.is_terminal() {
            let output = self.shaped_output(&task, req.shape)?;
            // Unless asked for both, its result is delivered here, not as
            // a notification (a held completion is only a safety net).
            task.notify = req.notify_on_completion == Some(true);
            return Ok(BashOutcome::Finished { task, output });
        }
        Ok(BashOutcome::Background { task })
    }

    /// Claims for this process this session's completions that nobody is
    /// delivering, oldest first, while `fits` accepts them (see
    /// `store/outbox.rs`). The caller shows them, then [`Service::settle`]s
    /// them once the client evidently has them; if this process dies first,
    /// they are shown again by whoever reads next.
    pub fn claim_completions(&self, fits: impl FnMut(&Completion) -> bool) -> Result<Claimed> {
        let Some(me) = this_process() else {
            return Err(Error::io(
                "cannot identify this process in",
                "/proc/self/stat",
                std::io::Error::other("unreadable"),
            ));
        };
        // As in `completions`: a task whose monitor died is recorded ended
        // (with its completion) by whoever notices.
        let mut store = self.store();
        for live in store.live_in_session(self.session())? {
            reconcile_task(&mut store, &live)?;
        }
        store.claim_completions(self.session(), me, fits)
    }

    /// Acknowledges completions this process claimed or held (others are
    /// left alone). Returns how many were acknowledged.
    pub fn settle(&self, ids: &[TaskId]) -> Result<usize> {
        let Some(me) = this_process() else {
            return Ok(0);
        };
        self.store().settle_claimed(ids, me, now_ms())
    }

    /// Gives up this process's claims on completions it could not show
    /// after all (see `store/outbox.rs`); they are shown again later.
    pub fn unclaim(&self, ids: &[TaskId]) -> Result<()> {
        match this_process() {
            Some(me) => self.store().unclaim(ids, me),
            None => Ok(()),
        }
    }

    /// A task's stdout and stderr shaped to `opts.budget` bytes in total:
    /// stdout, then a `[stderr]` line and stderr when there is any.
    pub fn shaped_output(&self, task: &Task, opts: ShapeOptions) -> Result<Shaped> {
        let read = |path: &std::path::Path, budget: usize| {
            let opts = ShapeOptions { budget, ..opts };
            // A `--pty` task's stream is compacted as its terminal shows
            // it (issue 18).
            match task.pty {
                Some(size) => shape_terminal_file(path, size, opts),
                None => shape_file(path, opts),
            }
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
