//! The Slurm engine: a task is a batch job, watched from this machine by
//! the store's watcher (`slurm/watch.rs`).
//!
//! A start: the starter records the task (owned by itself), then submits
//! the job and records its id as soon as sbatch answers, then hands the
//! task to the watcher (starting one if none runs) by making it the
//! task's owner. A starter that dies between the submit and the record
//! leaves a task without a job id and a dead owner: `reattach` finds the
//! job by its tag (the job name is the task id) and never submits again;
//! no job under that name means none was submitted, and the task is
//! recorded "spawn aborted".
//!
//! A dead watcher is replaced, never mourned: the owner's death makes
//! reconcile ask `reattach`, which starts a new watcher and hands it the
//! task by job id.

use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{Executor, Job, Launched};
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::process::{self, Liveness, ProcessHandle, ProcessIdentity};
use crate::slurm::{self, Submission};
use crate::store::{self, CacheSize, FinishRecord, LiveTask, Store};
use crate::task::{Outcome, Status, TaskId};

/// The `meta` key holding the bgtask binary that watchers run as.
const EXE_KEY: &str = "slurm_exe";

/// Runs tasks as Slurm batch jobs.
pub struct SlurmExecutor;

/// Watchers this process started and has not reaped yet.
static UNREAPED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

impl Executor for SlurmExecutor {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn launch(&self, config: &Config, job: &Job<'_>) -> Result<Box<dyn Launched>> {
        Store::prepare_home(&config.home)?;
        let starter = ProcessIdentity::of_child(std::process::id())
            .map_err(|e| Error::spawn_step("cannot identify this process", e))?;
        Ok(Box::new(SlurmLaunch {
            home: config.home.clone(),
            exe: config.monitor_exe.clone(),
            id: job.id.clone(),
            cwd: job.cwd.to_owned(),
            command: job.command.to_owned(),
            timeout_ms: job.request.timeout_ms,
            idle_timeout_ms: job.request.idle_timeout_ms,
            max_output: job.request.max_output,
            slurm_args: job.request.slurm_args.clone(),
            starter,
        }))
    }

    fn liveness(&self, task: &LiveTask) -> Liveness {
        // The owner is the starter until the job id is recorded, then the
        // watcher. Dead means "re-attach", not "lost" (see `reattach`).
        task.owner
            .as_ref()
            .map_or(Liveness::Dead, ProcessIdentity::liveness)
    }

    fn why_unreachable(&self, task: &LiveTask) -> String {
        let pid = task.owner.as_ref().map_or(0, |o| o.pid);
        format!("its Slurm watcher (pid {pid}) runs in another pid namespace")
    }

    fn end_handle(&self, task: &LiveTask) -> Option<ProcessHandle> {
        task.owner.as_ref().and_then(ProcessIdentity::open)
    }

    fn tell_kill(&self, _store: &Store, task: &LiveTask) -> bool {
        // No job yet: the starter cancels it once sbatch answers (it reads
        // the status after recording the id).
        match (&task.status, &task.job_id) {
            (Status::Killing, Some(job_id)) => slurm::cancel(job_id),
            _ => false,
        }
    }

    fn can_tell(&self, _store: &Store, _task: &LiveTask) -> bool {
        // scancel reaches the controller from anywhere.
        true
    }

    fn lost_reason(&self, _store: &Store, task: &LiveTask) -> String {
        match &task.job_id {
            None => "spawn aborted: bgtask stopped before the Slurm job was submitted".to_owned(),
            Some(job_id) => format!("the Slurm job {job_id} could not be watched from here"),
        }
    }

    fn clean_up(&self, _store: &Store, task: &LiveTask) {
        // A job nobody can watch would run unrecorded.
        if let Some(job_id) = &task.job_id {
            slurm::cancel(job_id);
        }
    }

    fn reattach(&self, store: &mut Store, task: &LiveTask) -> Result<bool> {
        if task.job_id.is_none() {
            // The starter died: was the job submitted before it did?
            match slurm::find_by_tag(&task.id) {
                Ok(Some(job_id)) => {
                    store.set_job_id(&task.id, &job_id)?;
                }
                Ok(None) => return Ok(false),
                // Not knowing is no proof that it was never submitted.
                Err(e) => {
                    store.set_live_note(
                        &task.id,
                        Some(&format!(
                            "its starter died and the Slurm controller cannot be reached ({e}); the job is unknown"
                        )),
                    )?;
                    return Ok(true);
                }
            }
        }
        match ensure_watcher(store, None) {
            Ok(watcher) => {
                store.replace_owner(&task.id, task.owner.as_ref(), &watcher)?;
                Ok(true)
            }
            Err(e) => {
                store.set_live_note(&task.id, Some(&format!("no Slurm watcher: {e}")))?;
                Ok(true)
            }
        }
    }
}

/// The store's live watcher, started if none runs: as `exe`, else as the
/// binary the last starter recorded (for re-attaching commands, which
/// have none in hand).
fn ensure_watcher(store: &Store, exe: Option<&Path>) -> Result<ProcessIdentity> {
    if let Some(watcher) = store.slurm_watcher()? {
        if watcher.is_alive() {
            return Ok(watcher);
        }
    }
    let exe = match exe {
        Some(exe) => exe.to_owned(),
        None => store.meta(EXE_KEY)?.map(PathBuf::from).ok_or_else(|| {
            Error::SpawnFailed("no bgtask binary recorded for the watcher".into())
        })?,
    };
    start_watcher(store.home(), &exe)
}

fn start_watcher(home: &Path, exe: &Path) -> Result<ProcessIdentity> {
    let log_path = store::monitor_log_path(home);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| Error::io("cannot open monitor log", &log_path, e))?;
    let args: Vec<OsString> = vec![slurm::WATCH_ARG.into(), home.as_os_str().to_owned()];
    let watcher = process::spawn_detached(exe, &args, log).map_err(|e| {
        Error::spawn_step(
            format!("cannot start the Slurm watcher {}", exe.display()),
            e,
        )
    })?;
    let identity = ProcessIdentity::of_child(watcher.pid)
        .map_err(|e| Error::spawn_step("cannot identify the Slurm watcher", e))?;
    let mut unreaped = UNREAPED.lock().unwrap_or_else(|e| e.into_inner());
    unreaped.retain(|pid| !process::reap_if_exited(*pid));
    unreaped.push(watcher.pid);
    Ok(identity)
}

/// A task recorded by this process and not yet submitted.
struct SlurmLaunch {
    home: PathBuf,
    exe: PathBuf,
    id: TaskId,
    cwd: PathBuf,
    command: String,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_output: u64,
    slurm_args: Vec<String>,
    starter: ProcessIdentity,
}

impl Launched for SlurmLaunch {
    fn owner(&self) -> Result<ProcessIdentity> {
        Ok(self.starter.clone())
    }

    /// No handle: a Slurm task has no readiness condition (refused at
    /// validation), and its watcher outlives the ends it records.
    fn go(self: Box<Self>, env: &[(String, String)]) -> Option<std::os::fd::OwnedFd> {
        let mut store = match Store::open(&self.home, CacheSize::Small) {
            Ok(store) => store,
            // Not submitted: this process's death, or the next reconcile
            // after it, records the task "spawn aborted".
            Err(_) => return None,
        };
        if let Err(e) = self.submit(&mut store, env) {
            let record = FinishRecord {
                end: Outcome::Lost(format!("spawn failed: {e}")).into_end(),
                finished_at: now_ms(),
                preview: String::new(),
                output_truncated: false,
                dropped_bytes: 0,
            };
            let _ = store.finish(&self.id, &record);
        }
        store.touch_events();
        None
    }
}

impl SlurmLaunch {
    fn submit(&self, store: &mut Store, env: &[(String, String)]) -> Result<()> {
        // The output files exist from the start, so status and logs read
        // an empty task while the job waits in the queue.
        let _ = store::create_output_files(&self.home, &self.id);
        let _ = std::fs::remove_file(slurm::end_path(&self.home, &self.id));
        // Before the submit: a command that re-attaches after this
        // process died starts the watcher as this binary.
        let exe = self.exe.to_string_lossy();
        if store.meta(EXE_KEY)?.as_deref() != Some(&*exe) {
            store.set_meta(EXE_KEY, &exe)?;
        }
        let job_id = slurm::submit(&Submission {
            id: &self.id,
            home: &self.home,
            cwd: &self.cwd,
            command: &self.command,
            exe: &self.exe,
            timeout_ms: self.timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            max_output: self.max_output,
            slurm_args: &self.slurm_args,
            env,
        })?;
        process::fault::point("slurm_after_submit");
        // A watcher that cannot start leaves the task to the next command
        // (its starter, this process, is then dead): the id comes first.
        let watcher = match ensure_watcher(store, Some(&self.exe)) {
            Ok(watcher) => watcher,
            Err(e) => {
                // The job runs: never recorded as failed for this.
                store.set_job_id(&self.id, &job_id)?;
                store.set_live_note(&self.id, Some(&format!("no Slurm watcher yet: {e}")))?;
                return Ok(());
            }
        };
        let status = store.record_job(&self.id, &job_id, &self.starter, &watcher)?;
        // A kill recorded while sbatch ran could not be told (no job id).
        if status == Some(Status::Killing) {
            slurm::cancel(&job_id);
        }
        Ok(())
    }
}
