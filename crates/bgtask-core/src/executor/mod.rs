//! Where a task runs: the seam between the engine-neutral core (the store,
//! the service, the waiter, reconcile) and an engine that runs a task and
//! records its end. Today's engine is the local monitor (`local.rs`);
//! a remote one (a Slurm job, a Kubernetes Job, a Ray job) is a second
//! implementation of [`Executor`] and leaves the store, the service and the
//! servers as they are (see ARCHITECTURE.md).
//!
//! Every engine keeps the same promises: a task is recorded before the
//! engine may start it, its end is recorded once (by the engine's
//! supervisor, or by reconcile when that supervisor is known to be gone),
//! and a kill is a recorded request that the engine is then told to carry
//! out.

mod local;
pub(crate) use local::{set_monitor_exe, tell_pause};
mod slurm;

use crate::config::{Config, Engine, SpawnRequest};
use crate::error::Result;
use crate::process::{Liveness, ProcessHandle, ProcessIdentity};
use crate::store::{LiveTask, Store};
use crate::task::TaskId;

pub use local::LocalExecutor;
pub use slurm::SlurmExecutor;

/// What an engine is asked to run: the values the starter records.
pub struct Job<'a> {
    pub id: &'a TaskId,
    pub cwd: &'a std::path::Path,
    pub command: &'a str,
    /// How the task's stdin is connected (issue 18).
    pub interaction: crate::interact::Interaction,
    /// The confinement the engine applies before the task's shell runs.
    pub sandbox: Option<&'a crate::sandbox::Policy>,
    /// The whole request (limits, engine flags) for engines that submit
    /// them elsewhere.
    pub request: &'a SpawnRequest,
}

/// One engine that runs tasks.
pub trait Executor: Sync {
    /// The engine's name, as a task row records it (`config::Engine`).
    #[expect(dead_code, reason = "rows record `Engine`; kept for diagnostics")]
    fn name(&self) -> &'static str;

    /// The first half of a start: starts the engine's side of a task,
    /// which waits until the task is recorded (see [`Launched`]). Nothing
    /// of the task is in the store yet.
    fn launch(&self, config: &Config, job: &Job<'_>) -> Result<Box<dyn Launched>>;

    /// Whether the supervisor recorded as the task's owner still runs:
    /// `Dead` lets reconcile record the end (or, for an engine that can,
    /// re-attach: see [`Executor::reattach`]), `Unknown` leaves the task
    /// alone (not seeing it is no proof that it ended). Every engine so far
    /// records a local process as owner (a monitor, a starter, a watcher),
    /// so this default asks about that process; no owner recorded means no
    /// one can record the task's end.
    fn liveness(&self, task: &LiveTask) -> Liveness {
        task.owner
            .as_ref()
            .map_or(Liveness::Dead, ProcessIdentity::liveness)
    }

    /// Why a task whose owner is `Unknown` cannot be told anything from
    /// here, and where it can be (for the error a kill gets).
    fn why_unreachable(&self, task: &LiveTask) -> String;

    /// What a waiter polls to learn that the task's end was recorded: it
    /// becomes readable when the supervisor exits (which it does right
    /// after recording the end, or by dying; a Slurm watcher outlives the
    /// ends it records, so its waiters watch the store's events too).
    /// `None`: nothing here can tell, and the waiter watches the store's
    /// events instead. By default the recorded owner's pidfd.
    fn end_handle(&self, task: &LiveTask) -> Option<ProcessHandle> {
        task.owner.as_ref().and_then(ProcessIdentity::open)
    }

    /// Tells the supervisor of a task recorded `killing` to carry the kill
    /// out. False when it cannot be told now (not ready for it yet, or
    /// gone): the caller then reconciles.
    fn tell_kill(&self, store: &Store, task: &LiveTask) -> bool;

    /// Whether the supervisor can be told things from here even though its
    /// liveness cannot be checked (another pid namespace sharing the store).
    fn can_tell(&self, store: &Store, task: &LiveTask) -> bool;

    /// Why a task whose supervisor is gone ended, for its record.
    fn lost_reason(&self, store: &Store, task: &LiveTask) -> String;

    /// Ends whatever is left of a task whose supervisor is gone. Runs
    /// before the end is recorded.
    fn clean_up(&self, store: &Store, task: &LiveTask);

    /// A task whose supervisor is gone: gives it a new one where the
    /// engine can (a remote job keeps running without its local watcher;
    /// a new watcher re-attaches by job id). True: the task stays live.
    /// The local engine cannot: its monitor was the task's parent.
    fn reattach(&self, _store: &mut Store, _task: &LiveTask) -> Result<bool> {
        Ok(false)
    }
}

/// A task whose engine side is started and waits for its record.
/// Dropped without [`Launched::go`], the engine side gives up unused.
pub trait Launched {
    /// Who owns the task once it is recorded: the process whose death
    /// means its end will not be recorded by the engine. Read only when
    /// the record is about to be written (see `local.rs`).
    fn owner(&self) -> Result<ProcessIdentity>;

    /// The task is recorded: let the engine go ahead, with the task's
    /// environment (sent along, never stored). `store` is the starter's
    /// own, lent for what the engine records as it goes (a Slurm job id),
    /// so no second connection is opened; lock it for one operation at a
    /// time. An engine side that died meanwhile is found by the next
    /// reconcile. Returns, where the engine has one, a handle that wakes
    /// its holder when the task's readiness is decided or its supervisor
    /// ends (see `Service::until_ready`).
    fn go(
        self: Box<Self>,
        store: &std::sync::Mutex<Store>,
        env: &[(String, String)],
    ) -> Option<std::os::fd::OwnedFd>;

    /// The task is recorded `queued` (issue 21): the engine side waits for
    /// its turn (told by `control::schedule`), holding the environment.
    /// Only the local engine queues; the others are never recorded queued.
    fn queue(
        self: Box<Self>,
        store: &std::sync::Mutex<Store>,
        env: &[(String, String)],
    ) -> Option<std::os::fd::OwnedFd> {
        self.go(store, env)
    }
}

/// The engine that runs new tasks of this kind.
pub fn for_new_task(engine: Engine) -> &'static dyn Executor {
    by_name(engine)
}

/// The engine that runs a recorded task: the one its row names.
pub fn of(task: &LiveTask) -> &'static dyn Executor {
    by_name(task.executor)
}

fn by_name(engine: Engine) -> &'static dyn Executor {
    match engine {
        Engine::Local => &LocalExecutor,
        Engine::Slurm => &SlurmExecutor,
    }
}
