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
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::{Executor, Job, Launched};
use crate::clock::now_ms;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::process::{self, ProcessIdentity};
use crate::slurm::{self, Submission};
use crate::store::{self, FinishRecord, LiveTask, Store};
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
        // sbatch starts now, while the task is recorded, and submits only
        // once `go` gives it the script's end (see `slurm::PendingSubmit`).
        let sbatch = slurm::start_submit(&Submission {
            id: job.id,
            home: &config.home,
            cwd: job.cwd,
            command: job.command,
            exe: &config.monitor_exe,
            timeout_ms: job.request.timeout_ms,
            idle_timeout_ms: job.request.idle_timeout_ms,
            max_output: job.request.max_output,
            slurm_args: &job.request.slurm_args,
            env: &job.request.env,
        })?;
        Ok(Box::new(SlurmLaunch {
            home: config.home.clone(),
            exe: config.monitor_exe.clone(),
            id: job.id.clone(),
            sbatch,
            starter,
        }))
    }

    fn why_unreachable(&self, task: &LiveTask) -> String {
        let pid = task.owner.as_ref().map_or(0, |o| o.pid);
        format!("its Slurm watcher (pid {pid}) runs in another pid namespace")
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
    let watcher = process::spawn_detached(exe, &args, log, process::Leaves::No).map_err(|e| {
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

/// A task about to be recorded by this process, its sbatch started and
/// waiting for the script.
struct SlurmLaunch {
    home: PathBuf,
    exe: PathBuf,
    id: TaskId,
    sbatch: slurm::PendingSubmit,
    starter: ProcessIdentity,
}

impl Launched for SlurmLaunch {
    fn owner(&self) -> Result<ProcessIdentity> {
        Ok(self.starter.clone())
    }

    /// No handle: a Slurm task has no readiness condition (refused at
    /// validation), and its watcher outlives the ends it records.
    /// The task's environment went to sbatch when it started (from the
    /// same request), so `_env` is not used again here.
    fn go(self: Box<Self>, store: &Mutex<Store>, _env: &[(String, String)]) -> Option<OwnedFd> {
        let SlurmLaunch {
            home,
            exe,
            id,
            sbatch,
            starter,
        } = *self;
        // The output files exist from the start, so status and logs read
        // an empty task while the job waits in the queue.
        let _ = store::create_output_files(&home, &id);
        let _ = std::fs::remove_file(slurm::end_path(&home, &id));
        let submitted = Submitted {
            store,
            exe: &exe,
            id: &id,
            starter: &starter,
        };
        if let Err(e) = submitted.submit(sbatch) {
            let record = FinishRecord {
                end: Outcome::Lost(format!("spawn failed: {e}")).into_end(),
                finished_at: now_ms(),
                preview: String::new(),
                output_truncated: false,
                dropped_bytes: 0,
            };
            let _ = submitted.store().finish(&id, &record);
        }
        submitted.store().touch_events();
        None
    }
}

/// The recorded task whose job is being submitted, with the starter's
/// store (lent, locked for one operation at a time: never while sbatch
/// runs, so a server's other requests go on meanwhile).
struct Submitted<'a> {
    store: &'a Mutex<Store>,
    exe: &'a Path,
    id: &'a TaskId,
    starter: &'a ProcessIdentity,
}

impl Submitted<'_> {
    fn store(&self) -> MutexGuard<'_, Store> {
        // Every change is a transaction: a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(&self, sbatch: slurm::PendingSubmit) -> Result<()> {
        // Before the submit: a command that re-attaches after this
        // process died starts the watcher as this binary.
        let exe = self.exe.to_string_lossy();
        {
            let store = self.store();
            if store.meta(EXE_KEY)?.as_deref() != Some(&*exe) {
                store.set_meta(EXE_KEY, &exe)?;
            }
        }
        let job_id = sbatch.submit()?;
        process::fault::point("slurm_after_submit");
        // A watcher that cannot start leaves the task to the next command
        // (its starter, this process, is then dead): the id comes first.
        let store = self.store();
        let watcher = match ensure_watcher(&store, Some(self.exe)) {
            Ok(watcher) => watcher,
            Err(e) => {
                // The job runs: never recorded as failed for this.
                store.set_job_id(self.id, &job_id)?;
                store.set_live_note(self.id, Some(&format!("no Slurm watcher yet: {e}")))?;
                return Ok(());
            }
        };
        let status = store.record_job(self.id, &job_id, self.starter, &watcher)?;
        drop(store);
        // A kill recorded while sbatch ran could not be told (no job id).
        if status == Some(Status::Killing) {
            slurm::cancel(&job_id);
        }
        Ok(())
    }
}
