//! The `Service`: the single entry point the CLI and the servers call, one
//! method per request. It validates requests, records tasks, starts them
//! through their executor (`executor/`), reads output with byte budgets and
//! reconciles dead owners.
//!
//! Locking rule: the store mutex is held only for single store operations,
//! never across a wait, a kill grace or a write to a client.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde::Serialize;

use crate::clock::now_ms;
use crate::config::{Config, Engine, SpawnRequest};
use crate::error::{Error, Result};
use crate::executor::{self, Job, Launched};
use crate::output::{self, Chunk, MIN_CAP};
use crate::process::{self, Liveness, ProcessIdentity};
use crate::reconcile::{reconcile_all, reconcile_task};
use crate::store::{CacheSize, NewTask, Store};
use crate::task::{Completion, Status, Task, TaskId};
use crate::units::{MAX_DURATION_MS, MAX_SIZE};

/// Longest command line: the kernel's limit on one exec argument
/// (MAX_ARG_STRLEN), minus room for the terminating NUL.
const MAX_COMMAND_BYTES: usize = 128 * 1024 - 1;
/// How often, at most, commands collect old tasks on their own.
const AUTO_GC_INTERVAL_MS: i64 = 3_600_000;
/// Tasks gc deletes in one transaction.
const GC_BATCH: u32 = 200;
/// Age after which finished, acknowledged tasks are collected by default.
pub const DEFAULT_GC_AGE_MS: u64 = 24 * 3_600_000;

/// Pausing and resuming tasks (issue 21).
mod pause;
/// Telling a running task input, signals, a size; its screen (issue 18).
mod tell;

/// Queues, groups, restart and clean (issue 21).
mod queue;
pub use queue::{queue_spec, Restart};

/// The bgtask engine over one store, acting for one session.
pub struct Service {
    config: Config,
    store: Mutex<Store>,
    /// Events watches no wait is using, kept for the next ones (see
    /// `waiter::WatchPool`).
    pub(crate) watches: crate::waiter::WatchPool,
}

/// A task with the end of its output.
#[derive(Clone, Debug, Serialize)]
pub struct TaskStatus {
    #[serde(flatten)]
    pub task: Task,
    pub output_tail: String,
    pub output_truncated: bool,
}

/// Which tasks `list` returns.
#[derive(Clone, Debug, Default)]
pub struct ListRequest {
    pub all_sessions: bool,
    pub status: Option<Status>,
    /// Only the tasks of this queue group (issue 21).
    pub group: Option<String>,
}

/// What `gc` removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct GcReport {
    pub removed: Vec<TaskId>,
}

impl Service {
    /// Opens the store at `config.home` (creating it if needed).
    pub fn open(config: Config) -> Result<Service> {
        let config = with_absolute_home(config)?;
        let store = Store::open(&config.home, CacheSize::Default)?;
        Ok(Service::over(config, store))
    }

    /// Opens the store at `config.home` without creating one: for commands
    /// that only read, or change existing tasks. Without a store, the
    /// service answers as for an empty one and writes nothing (see
    /// `Store::open_existing`); starting a task needs [`Service::open`].
    pub fn open_existing(config: Config) -> Result<Service> {
        let config = with_absolute_home(config)?;
        let store = Store::open_existing(&config.home, CacheSize::Default)?;
        Ok(Service::over(config, store))
    }

    fn over(config: Config, store: Store) -> Service {
        // Orphaned queued tasks found by this process get monitors of
        // this binary (issue 21, `executor/local.rs`).
        crate::executor::set_monitor_exe(&config.monitor_exe);
        Service {
            config,
            store: Mutex::new(store),
            watches: crate::waiter::WatchPool::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn session(&self) -> &str {
        &self.config.session
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave the store inconsistent
        // (every change is a transaction), so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a task's monitor, records the task as `starting` (owned by
    /// that monitor) and returns at once: the monitor starts the shell in
    /// the background and records how that went. On failure no task is
    /// left behind.
    pub fn spawn(&self, req: &SpawnRequest) -> Result<Task> {
        let launch = Launch::start(&self.config, req)?;
        self.record(launch)
    }

    /// The second half of a start: records the launched task, owned by its
    /// monitor, and tells the monitor to go ahead.
    pub fn record(&self, launch: Launch) -> Result<Task> {
        self.record_held(launch, None)
    }

    /// [`Service::record`], keeping the handle that wakes its holder when
    /// the task's readiness is decided (pass it to `until_ready`).
    pub fn record_waking(&self, launch: Launch) -> Result<(Task, Option<std::os::fd::OwnedFd>)> {
        self.record_inner(launch, None)
    }

    /// [`Service::record`], and if `holder` is given, the task's future
    /// completion is held by that process (see `store/outbox.rs`), set
    /// before the monitor may start the task.
    pub(crate) fn record_held(
        &self,
        launch: Launch,
        holder: Option<&ProcessIdentity>,
    ) -> Result<Task> {
        self.record_inner(launch, holder).map(|(task, _)| task)
    }

    fn record_inner(
        &self,
        launch: Launch,
        holder: Option<&ProcessIdentity>,
    ) -> Result<(Task, Option<std::os::fd::OwnedFd>)> {
        let Launch {
            id,
            req,
            cwd,
            launched,
            sandbox,
            engine,
        } = launch;
        let owner = launched.owner()?;
        let new = NewTask {
            id,
            session: self.config.session.clone(),
            env_keys: req.env.iter().map(|(k, _)| k.clone()).collect(),
            command: req.command,
            cwd,
            timeout_ms: req.timeout_ms,
            idle_timeout_ms: req.idle_timeout_ms,
            max_output: req.max_output,
            notify: req.notify,
            interaction: req.interaction,
            owner,
            created_at: now_ms(),
            ready: req.ready.clone(),
            sandbox,
            executor: engine,
            queue: queue_spec(&req.queue, engine)?,
        };
        let (task, scheduled) = self.insert(&new)?;
        if let Some(holder) = holder {
            // Not held only means the result may be reported twice (inline
            // and as a completion), never lost.
            let _ = self.store().hold_completion(&task.task_id, holder);
        }
        process::fault::point("starter_after_insert");
        // Only a task claimed at its insert starts now. A queued one waits
        // for its turn, and one that ended at its insert (a dependency that
        // had failed already) must never run: its monitor reads the store
        // first, as a queued one does, and finds it ended.
        let wake = if task.status == Status::Starting {
            launched.go(&self.store, &req.env)
        } else {
            launched.queue(&self.store, &req.env)
        };
        // Other queued tasks whose turn this pass found (a delay that
        // passed while nothing ran, say): told without the store's lock.
        if scheduled.to_tell().next().is_some() {
            self.store().touch_events();
            crate::control::tell_turns(&self.config.home, &scheduled);
        }
        Ok((task, wake))
    }

    fn insert(&self, new: &NewTask) -> Result<(Task, crate::store::Scheduled)> {
        let mut store = self.store();
        match store.insert_task(new, self.config.max_running) {
            Err(Error::LimitExceeded { .. }) => {
                // Dead owners may hold slots: reconcile, then try once more.
                reconcile_all(&mut store)?;
                store.insert_task(new, self.config.max_running)
            }
            other => other,
        }
    }

    /// A task by id (any session), after checking its owner is alive.
    pub fn get(&self, id: &TaskId) -> Result<Task> {
        let mut store = self.store();
        if let Some(live) = store.live(id)? {
            reconcile_task(&mut store, &live)?;
        }
        store.get(id)
    }

    /// A task with the last `tail_bytes` of its output.
    pub fn status(&self, id: &TaskId, tail_bytes: u64) -> Result<TaskStatus> {
        let task = self.get(id)?;
        // A `--pty` task's tail is what its terminal shows (issue 18).
        let tail =
            crate::compact::task_tail(&task.stdout_path, &task.stderr_path, tail_bytes, task.pty)
                .map_err(|e| Error::io("cannot read output", &task.stdout_path, e))?;
        if tail.text.is_empty() {
            self.confirm_exists(id)?;
        }
        Ok(TaskStatus {
            output_truncated: tail.truncated || task.output_dropped_bytes > 0,
            output_tail: tail.text,
            task,
        })
    }

    /// This session's tasks (or every session's), newest first.
    pub fn list(&self, req: &ListRequest) -> Result<Vec<Task>> {
        let mut tasks = self.list_all_groups(req)?;
        if let Some(group) = &req.group {
            tasks.retain(|t| &t.group == group);
        }
        Ok(tasks)
    }

    fn list_all_groups(&self, req: &ListRequest) -> Result<Vec<Task>> {
        let mut store = self.store();
        // A hand-off whose teller died is repaired by the next command
        // that looks (issue 21).
        crate::control::schedule_and_repair(&mut store)?;
        let session = (!req.all_sessions).then_some(self.config.session.as_str());
        let tasks = store.list(session, req.status)?;
        let listed: HashSet<&TaskId> = tasks
            .iter()
            .filter(|t| !t.is_terminal())
            .map(|t| &t.task_id)
            .collect();
        let mut changed = false;
        if !listed.is_empty() {
            // One query for all of them: every read transaction costs
            // several fcntl locks, each O(open connections), and every
            // running task's monitor holds one.
            let live = match session {
                Some(session) => store.live_in_session(session)?,
                None => store.all_live()?,
            };
            for live in live.iter().filter(|l| listed.contains(&l.id)) {
                changed |= reconcile_task(&mut store, live)?;
            }
        }
        if changed {
            return store.list(session, req.status);
        }
        Ok(tasks)
    }

    /// The tasks as recorded, newest first, without checking the owners of
    /// live ones (`list` does). For a view that re-reads on every change
    /// (`bgtask top`): with many live tasks, checking each one costs a read
    /// transaction per task, each O(open connections), and every running
    /// task's monitor holds a connection. A task whose monitor died shows
    /// live until something reconciles it (any `list`, `status`, `wait`, or
    /// the view asking with `list`).
    pub fn list_recorded(&self, req: &ListRequest) -> Result<Vec<Task>> {
        let session = (!req.all_sessions).then_some(self.config.session.as_str());
        self.store().list(session, req.status)
    }

    /// The tasks as recorded that may have changed since `since_ms` (live
    /// ones, and those created or finished since), and how many tasks
    /// there are in all: for a view that keeps what it read and re-reads
    /// only these on each change (see [`Service::list_recorded`]).
    pub fn list_since(&self, req: &ListRequest, since_ms: i64) -> Result<(Vec<Task>, u64)> {
        let session = (!req.all_sessions).then_some(self.config.session.as_str());
        self.store().list_since(session, since_ms)
    }

    /// Reads part of one output stream: `offset` and at most `max` bytes,
    /// never ending inside a UTF-8 character.
    pub fn read_range(
        &self,
        id: &TaskId,
        path_of: OutputFile,
        offset: u64,
        max: u64,
    ) -> Result<Chunk> {
        let path = self.output_path(id, path_of)?;
        let chunk = output::read_range(&path, offset, max)
            .map_err(|e| Error::io("cannot read output", &path, e))?;
        if chunk.data.is_empty() {
            self.confirm_exists(id)?;
        }
        Ok(chunk)
    }

    /// The last ≤ `max` bytes of one output stream.
    pub fn read_tail(&self, id: &TaskId, path_of: OutputFile, max: u64) -> Result<Chunk> {
        let path = self.output_path(id, path_of)?;
        let chunk =
            output::read_tail(&path, max).map_err(|e| Error::io("cannot read output", &path, e))?;
        if chunk.data.is_empty() {
            self.confirm_exists(id)?;
        }
        Ok(chunk)
    }

    /// After a read found no output: fails with `TaskNotFound` if gc
    /// collected the task meanwhile. gc removes output files only after the
    /// record, so output read before this check belongs to a task that
    /// existed; an empty read is only trusted once the record is seen again.
    fn confirm_exists(&self, id: &TaskId) -> Result<()> {
        self.store().get(id).map(drop)
    }

    /// The path of one of a task's output files (the task must exist).
    pub fn output_path(&self, id: &TaskId, which: OutputFile) -> Result<PathBuf> {
        let store = self.store();
        store.get(id)?;
        Ok(match which {
            OutputFile::Stdout => store.stdout_path(id),
            OutputFile::Stderr => store.stderr_path(id),
        })
    }

    /// Asks a task to stop (SIGTERM to its tree, SIGKILL after `grace_ms`)
    /// and waits until its end is recorded. A task that already ended keeps
    /// its real end.
    pub fn kill(&self, id: &TaskId, grace_ms: u64) -> Result<Task> {
        let grace_ms = grace_ms.min(MAX_DURATION_MS);
        {
            let mut store = self.store();
            let Some(live) = store.live(id)? else {
                return store.get(id);
            };
            // A queued task (issue 21) ends at once; its monitor is told
            // to exit, and its dependents learn of it.
            if live.status == Status::Queued && store.kill_queued(id, now_ms())? {
                store.touch_events();
                let _ = crate::control::send(store.home(), id, &crate::control::Control::Start);
                crate::control::schedule(&mut store)?;
                return store.get(id);
            }
            // A supervisor that cannot be checked from here (another pid
            // namespace) may still be told through the shared store; if it
            // cannot, a `killing` recorded now would be carried out by no
            // one, so the task is left as it is.
            let engine = executor::of(&live);
            if engine.liveness(&live) == Liveness::Unknown && !engine.can_tell(&store, &live) {
                return Err(Error::Unreachable(format!(
                    "task {id} cannot be killed from here: {}",
                    engine.why_unreachable(&live)
                )));
            }
            if !store.request_kill(id, grace_ms)? {
                return store.get(id);
            }
            store.touch_events();
            // A requester that dies here leaves `killing` recorded and the
            // monitor not told: the next command that looks at the task
            // tells it (see reconcile_task).
            process::fault::point("kill_after_request");
            // Read after the request: if the monitor recorded the shell
            // before our request it must be told; if after, it saw
            // `killing` itself when it recorded the shell.
            if let Some(live) = store.live(id)? {
                if !executor::of(&live).tell_kill(&store, &live) {
                    reconcile_task(&mut store, &live)?;
                }
            }
        }
        let limit = grace_ms.saturating_add(10_000);
        let outcome = self.wait(std::slice::from_ref(id), Some(limit))?;
        if outcome.timed_out {
            return Err(Error::Timeout(format!("task {id} to end after the kill")));
        }
        self.get(id)
    }

    /// Wakes every process waiting on the store's events (servers re-read
    /// their state, e.g. after a settings change).
    pub fn touch_events(&self) {
        self.store().touch_events();
    }

    /// This session's unacknowledged completions, oldest first, except
    /// those a live process is delivering (claimed; see `store/outbox.rs`).
    pub fn completions(&self) -> Result<Vec<Completion>> {
        Ok(self
            .completions_with_seq()?
            .into_iter()
            .map(|(_, c)| c)
            .collect())
    }

    /// [`Service::completions`], each with its outbox sequence number.
    pub fn completions_with_seq(&self) -> Result<Vec<(i64, Completion)>> {
        // A task whose monitor died gets its completion from whoever
        // notices: make sure that includes the reader of completions. Only
        // live tasks need a look, not the whole (finished) history.
        let mut store = self.store();
        for live in store.live_in_session(&self.config.session)? {
            reconcile_task(&mut store, &live)?;
        }
        store.unacked_completions(&self.config.session)
    }

    /// The task a person typed (CLI only; the servers take exact ids): a
    /// full id, a unique prefix of one with or without `bg-`, or `last` /
    /// `-` for this session's newest task. Prefixes match every session's
    /// tasks.
    pub fn resolve_id(&self, text: &str) -> Result<TaskId> {
        self.resolve(text, None)
    }

    /// As [`Service::resolve_id`], but prefixes match only this session's
    /// tasks (for commands that act on this session alone, such as `ack`).
    pub fn resolve_id_in_session(&self, text: &str) -> Result<TaskId> {
        self.resolve(text, Some(&self.config.session))
    }

    fn resolve(&self, text: &str, session: Option<&str>) -> Result<TaskId> {
        const SHOWN: usize = 5;
        let store = self.store();
        if text == "last" || text == "-" {
            return match store.newest_id(&self.config.session)? {
                Some(id) => id.parse(),
                None => Err(Error::TaskNotFound(format!(
                    "{text} (session {:?} has no tasks)",
                    self.config.session
                ))),
            };
        }
        let hex = text.strip_prefix("bg-").unwrap_or(text);
        let is_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.is_empty() || hex.len() > 16 || !is_hex {
            return Err(Error::InvalidTaskId(text.to_owned()));
        }
        let (mut ids, total) = store.ids_with_prefix(hex, session, SHOWN as u32 + 1)?;
        match ids.len() {
            0 => Err(Error::TaskNotFound(text.to_owned())),
            1 => ids.remove(0).parse(),
            _ => {
                ids.truncate(SHOWN);
                Err(Error::AmbiguousTaskId {
                    prefix: text.to_owned(),
                    more: total.saturating_sub(ids.len()),
                    candidates: ids,
                })
            }
        }
    }

    /// Ids of the live tasks of this session, or of every session.
    pub fn live_ids(&self, all_sessions: bool) -> Result<Vec<TaskId>> {
        let session = (!all_sessions).then_some(self.config.session.as_str());
        Ok(self
            .store()
            .list(session, None)?
            .into_iter()
            .filter(|t| !t.is_terminal())
            .map(|t| t.task_id)
            .collect())
    }

    /// Marks completions of this session delivered. Idempotent; an id
    /// without a completion in this session is an error naming it.
    pub fn ack(&self, ids: &[TaskId]) -> Result<usize> {
        // Every kind of notification of these tasks (issue 16), not only
        // their completions.
        self.store().ack_tasks(&self.config.session, ids, now_ms())
    }

    /// Turns on completion delivery for a task (running or finished).
    pub fn promote(&self, id: &TaskId) -> Result<()> {
        // Reconcile first, so a task whose monitor died is recorded ended.
        self.get(id)?;
        let mut store = self.store();
        store.set_notify(id)?;
        // A promoted task reports its end as a completion, even if a
        // foreground `bash` of this process held it.
        if let Some(me) = this_process() {
            store.release_hold(id, me)?;
        }
        store.touch_events();
        Ok(())
    }

    /// Deletes finished tasks older than `older_than_ms` whose completion was
    /// acknowledged (or that never notify), with their output files.
    pub fn gc(&self, older_than_ms: u64) -> Result<GcReport> {
        let mut store = self.store();
        reconcile_all(&mut store)?;
        let cutoff = now_ms().saturating_sub(older_than_ms.min(i64::MAX as u64) as i64);
        let mut report = GcReport::default();
        // In batches, so that no one transaction holds the write lock long.
        loop {
            let ids = store.collect_batch(cutoff, GC_BATCH)?;
            // Files go only after their record: a reader that still finds
            // the task finds its output.
            // Every batch's files are removed even if one fails (the
            // records are gone already); the first failure is reported.
            let removed = ids
                .iter()
                .map(|id| store.remove_output_files(id))
                .fold(Ok(()), Result::and);
            let done = ids.len() < GC_BATCH as usize;
            report.removed.extend(ids);
            removed?;
            if done {
                break;
            }
        }
        store.set_meta("last_gc_at", &now_ms().to_string())?;
        store.ensure_ballast();
        process::Cgroup::sweep_stale(std::time::Duration::from_secs(60));
        Ok(report)
    }

    /// Runs `gc` with the default age if no command did in the last hour.
    pub fn auto_gc(&self) -> Result<Option<GcReport>> {
        let last = self
            .store()
            .meta("last_gc_at")?
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        let now = now_ms();
        // A clock that jumped backwards also triggers a run.
        if now >= last && now - last < AUTO_GC_INTERVAL_MS {
            return Ok(None);
        }
        self.gc(DEFAULT_GC_AGE_MS).map(Some)
    }
}

/// This process's identity, as claims record it (`None` if /proc cannot
/// tell, in which case nothing is claimed or held).
pub(crate) fn this_process() -> Option<&'static ProcessIdentity> {
    static ME: OnceLock<Option<ProcessIdentity>> = OnceLock::new();
    ME.get_or_init(|| ProcessIdentity::of_child(std::process::id()).ok())
        .as_ref()
}

/// One of a task's two output files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFile {
    Stdout,
    Stderr,
}

/// A task whose monitor is started and waits for the task's record: the
/// first half of a start. It needs no open store, so a caller that has
/// none yet (the CLI) opens it while the monitor's exec runs. Pass it to
/// [`Service::record`]; dropped unrecorded, its monitor exits unused.
pub struct Launch {
    id: TaskId,
    req: SpawnRequest,
    cwd: PathBuf,
    launched: Box<dyn Launched>,
    /// The effective confinement, recorded on the task.
    sandbox: Option<crate::sandbox::Sandbox>,
    engine: Engine,
}

impl Launch {
    /// Checks the request and starts the task's monitor.
    pub fn start(config: &Config, req: &SpawnRequest) -> Result<Launch> {
        let cwd = validate(req)?;
        if config.sandbox.agent {
            crate::sandbox::check_agent_env(&req.env)?;
        }
        let config = with_absolute_home(config.clone())?;
        // Fails closed before anything starts: a kernel that cannot
        // enforce the asked confinement refuses the task here.
        let sandbox = crate::sandbox::resolve(&config.sandbox, &req.sandbox, &cwd, &config.home)?;
        let engine = req.executor.unwrap_or(config.executor);
        if engine == Engine::Slurm {
            local_only(req, sandbox.policy.is_some())?;
        }
        check_free_space(&config.home)?;
        let id = TaskId::random();
        // The monitor is started before the record exists so the record can
        // name it as owner from the first moment: a task is never owned by
        // a starter that may exit the instant it prints the id. Until it
        // reads "go" on its stdin the monitor does nothing; end of file
        // without "go" (this process failed or died) makes it give up.
        let job = Job {
            id: &id,
            cwd: &cwd,
            command: &req.command,
            interaction: req.interaction,
            sandbox: sandbox.policy.as_ref(),
            request: req,
        };
        let launched = executor::for_new_task(engine).launch(&config, &job)?;
        Ok(Launch {
            id,
            req: req.clone(),
            cwd,
            launched,
            sandbox: sandbox.record,
            engine,
        })
    }
}

/// Refuses, for a Slurm task, what only a local monitor carries out: a
/// readiness condition, input or a terminal, a sandbox (the batch job
/// runs on a compute node, outside this machine's monitor).
fn local_only(req: &SpawnRequest, sandboxed: bool) -> Result<()> {
    let queue = &req.queue;
    let feature = if queue.group.is_some()
        || !queue.after.is_empty()
        || !queue.after_any.is_empty()
        || queue.delay_ms.is_some()
    {
        "a queue group, dependencies or a delay (Slurm queues the job itself)"
    } else if req.ready.is_some() {
        "a readiness condition"
    } else if req.interaction != crate::interact::Interaction::None {
        "stdin or a pseudo-terminal"
    } else if sandboxed {
        "a sandbox (set sandbox mode none for Slurm tasks)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "{feature} is not available for Slurm tasks (executor slurm); run it with executor local"
    )))
}

/// Checks a request; returns its resolved working directory.
fn validate(req: &SpawnRequest) -> Result<PathBuf> {
    if req.command.trim().is_empty() {
        return Err(Error::EmptyCommand);
    }
    if req.command.len() > MAX_COMMAND_BYTES {
        return Err(Error::InvalidArgument(format!(
            "the command is {} bytes; Linux passes at most {MAX_COMMAND_BYTES} bytes in one argument (put long scripts in a file and run that)",
            req.command.len()
        )));
    }
    if req.command.contains('\0') {
        return Err(Error::InvalidArgument(
            "the command contains a NUL byte".into(),
        ));
    }
    for (key, value) in &req.env {
        validate_env(key, value)?;
    }
    if let Some(ready) = &req.ready {
        crate::ready::validate_spec(ready)?;
    }
    if let Some(size) = req.interaction.pty() {
        crate::interact::PtySize::new(size.rows, size.cols)?;
    }
    if req.max_output < MIN_CAP {
        return Err(Error::InvalidArgument(format!(
            "max output {} is too small (at least {MIN_CAP} bytes)",
            req.max_output
        )));
    }
    if req.timeout_ms == Some(0) || req.idle_timeout_ms == Some(0) {
        return Err(Error::InvalidArgument(
            "a timeout must be longer than 0".into(),
        ));
    }
    for (what, limit) in [
        ("timeout", req.timeout_ms),
        ("idle timeout", req.idle_timeout_ms),
    ] {
        if limit.is_some_and(|ms| ms > MAX_DURATION_MS) {
            return Err(Error::InvalidArgument(format!(
                "the {what} of {} ms is too long (at most {MAX_DURATION_MS} ms, 100 years; omit it for no limit)",
                limit.unwrap_or_default()
            )));
        }
    }
    if req.max_output > MAX_SIZE {
        return Err(Error::InvalidArgument(format!(
            "max output {} is too large (at most {MAX_SIZE} bytes)",
            req.max_output
        )));
    }
    resolve_cwd(req.cwd.as_deref())
}

/// Refuses to start a task when the store's disk is (nearly) full: its
/// output could not be kept. Without this, whether a start fails would
/// depend on whether the record happens to fit in WAL space that SQLite
/// already allocated. Running tasks still end recorded (the ballast).
///
/// The free space needed is 1 MiB, less on a small disk (1/16 of it, the
/// same share the ballast takes), so the two never fill the disk between
/// them and block every start.
fn check_free_space(home: &Path) -> Result<()> {
    // A new store's home does not exist yet: its parent's disk counts.
    let probe = home
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let needed = crate::store::disk_share(probe);
    match process::free_bytes(probe) {
        Ok(free) if free < needed => Err(Error::SpawnFailed(format!(
            "the disk holding {} is full ({} KiB free; starting a task needs {} KiB)",
            home.display(),
            free >> 10,
            needed >> 10
        ))),
        // Not knowing is no reason to refuse.
        _ => Ok(()),
    }
}

/// The config with its home made absolute, resolved against the current
/// directory once: monitors, output paths and servers never depend on the
/// directory they happen to run in.
fn with_absolute_home(mut config: Config) -> Result<Config> {
    config.home = absolute_home(&config.home)?;
    Ok(config)
}

fn absolute_home(home: &Path) -> Result<PathBuf> {
    if home.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(
            "the store directory is empty".into(),
        ));
    }
    std::path::absolute(home).map_err(|e| Error::io("cannot resolve", home, e))
}

fn validate_env(key: &str, value: &str) -> Result<()> {
    let bad = |why| Err(Error::InvalidEnv(key.to_owned(), why));
    if key.is_empty() {
        return bad("the name is empty");
    }
    if key.contains('=') {
        return bad("the name contains '='");
    }
    if key.contains('\0') || value.contains('\0') {
        return bad("it contains a NUL byte");
    }
    Ok(())
}

fn resolve_cwd(cwd: Option<&Path>) -> Result<PathBuf> {
    let given = match cwd {
        Some(p) => p.to_owned(),
        None => std::env::current_dir().map_err(|e| Error::InvalidCwd {
            path: PathBuf::from("."),
            source: e,
        })?,
    };
    let path = std::fs::canonicalize(&given).map_err(|e| Error::InvalidCwd {
        path: given.clone(),
        source: e,
    })?;
    if !path.is_dir() {
        return Err(Error::CwdNotADirectory(given));
    }
    if path.to_str().is_none() {
        return Err(Error::InvalidArgument(format!(
            "working directory {} is not valid UTF-8",
            path.display()
        )));
    }
    process::can_enter(&path).map_err(|e| Error::InvalidCwd {
        path: given,
        source: e,
    })?;
    Ok(path)
}
