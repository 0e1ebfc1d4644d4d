//! The store's Slurm watcher (`bgtask __slurm_watch HOME`): one detached
//! process per store that records the end of every live Slurm task. No
//! end-of-job event reaches an ordinary user, so it polls: ONE `squeue -t
//! all -j ID1,ID2,…` per interval for all of the store's live Slurm tasks,
//! every 2 s while a job is young, backing off to 30 s for long jobs, and
//! at once when a task is being killed (it sleeps on the store's events
//! file between polls).
//!
//! It is every task's recorded owner (so waiters sleep on its pidfd and a
//! dead watcher is noticed like a dead monitor); the store's `meta` names
//! it, so two never run at once. When it dies, the next bgtask command
//! re-attaches a new one by job id (`executor/slurm.rs`, `reattach`): a
//! Slurm task never ends as "monitor died". A controller that cannot be
//! reached leaves the tasks live, each with a note saying so. An end is
//! recorded with its completion in one transaction (`Store::finish`), so
//! a second watcher or a retry changes nothing.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::clock::now_ms;
use crate::config::Engine;
use crate::output::combined_tail;
use crate::process::{self, FileWatch, ProcessIdentity};
use crate::store::{CacheSize, FinishRecord, LiveTask, Store, PREVIEW_BYTES};
use crate::task::{Outcome, Status, TaskId};

/// The first poll interval, for young jobs.
pub const MIN_INTERVAL_MS: i64 = 2_000;
/// The longest poll interval, for jobs that have run a long time.
pub const MAX_INTERVAL_MS: i64 = 30_000;
/// How soon a kill request is looked at.
const KILL_INTERVAL_MS: i64 = 250;

/// Runs the watcher until no live Slurm task is left; its exit code.
pub fn run(home: &Path) -> u8 {
    process::close_inherited_fds();
    let Ok(me) = ProcessIdentity::of_child(std::process::id()) else {
        log("cannot read its own identity");
        return 1;
    };
    let mut store = match Store::open(home, CacheSize::Small) {
        Ok(store) => store,
        Err(e) => {
            log(&format!("cannot open the store: {e}"));
            return 1;
        }
    };
    if !claim(&mut store, &me) {
        return 0;
    }
    let watch = FileWatch::new()
        .and_then(|w| w.add(&store.events_path()).map(|()| w))
        .ok();
    let mut watcher = Watcher {
        first_seen: HashMap::new(),
        last_poll: None,
    };
    loop {
        if !home.is_dir() {
            return 0;
        }
        let tasks = match slurm_tasks(&store) {
            Ok(tasks) => tasks,
            Err(e) => {
                log(&format!("cannot read the store: {e}"));
                return 1;
            }
        };
        if tasks.is_empty() {
            // Gone from the record first, then a last look: a task recorded
            // meanwhile is either seen here or its starter sees no watcher
            // and starts one.
            if store.swap_slurm_watcher(Some(&me), None).unwrap_or(false)
                && slurm_tasks(&store).is_ok_and(|t| t.is_empty())
            {
                return 0;
            }
            if !claim(&mut store, &me) {
                return 0;
            }
            continue;
        }
        for task in &tasks {
            if task.owner.as_ref() != Some(&me) {
                let _ = store.replace_owner(&task.id, task.owner.as_ref(), &me);
            }
        }
        let now = now_ms();
        let interval = watcher.interval(&tasks, now);
        let due = watcher.last_poll.map_or(now, |last| last + interval);
        if now >= due {
            watcher.last_poll = Some(now);
            watcher.poll(&mut store, &tasks);
            continue;
        }
        let sleep = Duration::from_millis((due - now) as u64);
        match &watch {
            Some(watch) => {
                let _ = process::wait_readable(&[watch.as_fd()], Some(sleep));
                watch.drain();
            }
            None => std::thread::sleep(sleep.min(Duration::from_millis(KILL_INTERVAL_MS as u64))),
        }
    }
}

/// Records this process as the store's watcher, unless a live one is.
fn claim(store: &mut Store, me: &ProcessIdentity) -> bool {
    loop {
        let current = match store.slurm_watcher() {
            Ok(current) => current,
            Err(_) => return false,
        };
        if let Some(other) = &current {
            if other == me {
                return true;
            }
            if !other.is_dead() {
                return false;
            }
        }
        match store.swap_slurm_watcher(current.as_ref(), Some(me)) {
            Ok(true) => return true,
            Ok(false) => continue,
            Err(_) => return false,
        }
    }
}

/// The live Slurm tasks whose job id is recorded (a task still being
/// submitted belongs to its starter).
fn slurm_tasks(store: &Store) -> crate::error::Result<Vec<LiveTask>> {
    Ok(store
        .all_live()?
        .into_iter()
        .filter(|t| t.executor == Engine::Slurm && t.job_id.is_some())
        .collect())
}

struct Watcher {
    /// When this watcher first saw each task: its age sets the interval.
    first_seen: HashMap<TaskId, i64>,
    last_poll: Option<i64>,
}

impl Watcher {
    /// 2 s while the youngest job is young, a tenth of its age after that,
    /// at most 30 s; a quarter second while a kill waits to be seen.
    fn interval(&mut self, tasks: &[LiveTask], now: i64) -> i64 {
        self.first_seen
            .retain(|id, _| tasks.iter().any(|t| &t.id == id));
        if tasks.iter().any(|t| t.status == Status::Killing) {
            return KILL_INTERVAL_MS;
        }
        let youngest = tasks
            .iter()
            .map(|t| now - *self.first_seen.entry(t.id.clone()).or_insert(now))
            .min()
            .unwrap_or(0);
        (youngest / 10).clamp(MIN_INTERVAL_MS, MAX_INTERVAL_MS)
    }

    fn poll(&mut self, store: &mut Store, tasks: &[LiveTask]) {
        let ids: Vec<&str> = tasks.iter().filter_map(|t| t.job_id.as_deref()).collect();
        let states = match super::query(&ids) {
            Ok(states) => states,
            Err(e) => {
                // The tasks stay live and say so (a note written once: the
                // update changes only a different note).
                let mut changed = false;
                for task in tasks {
                    changed |= store
                        .set_live_note(&task.id, Some(&unreachable_note(&e)))
                        .unwrap_or(false);
                }
                if changed {
                    store.touch_events();
                    log(&unreachable_note(&e));
                }
                return;
            }
        };
        let mut changed = false;
        for task in tasks {
            let Some(job_id) = task.job_id.as_deref() else {
                continue;
            };
            changed |= store.set_live_note(&task.id, None).unwrap_or(false);
            let home = store.home().to_owned();
            let wrapper = super::read_end(&home, &task.id);
            let outcome = match states.get(job_id) {
                None => Some(match &wrapper {
                    Some(end) => end.outcome.clone(),
                    None => Outcome::Lost(format!(
                        "the Slurm job {job_id} is no longer known to the controller; its end is unknown"
                    )),
                }),
                Some(job) => {
                    if super::is_running(&job.state) {
                        changed |= store.mark_job_running(&task.id, now_ms()).unwrap_or(false);
                    }
                    // A cancel asked for after this round read the tasks is
                    // a kill: read the status again for a cancelled job.
                    let status = if job.state == "CANCELLED" {
                        store
                            .live(&task.id)
                            .ok()
                            .flatten()
                            .map_or(task.status, |t| t.status)
                    } else {
                        task.status
                    };
                    let timeout = store.get(&task.id).ok().and_then(|t| t.timeout_ms);
                    super::outcome(job, status, timeout, wrapper.as_ref())
                }
            };
            if let Some(outcome) = outcome {
                // A job that ended between two polls was never seen
                // running: its wrapper knows when it started.
                if let Some(started) = wrapper.as_ref().and_then(|w| w.started_at) {
                    let _ = store.mark_job_running(&task.id, started);
                }
                let dropped = wrapper.map_or(0, |w| w.dropped);
                finish(store, &task.id, outcome, dropped);
                changed = true;
            }
        }
        if changed {
            store.touch_events();
        }
    }
}

fn unreachable_note(e: &crate::error::Error) -> String {
    format!("the Slurm controller cannot be reached ({e}); the job's state is unknown")
}

/// Records a task's end with its completion (one transaction; a task
/// already ended is left as it is).
fn finish(store: &mut Store, id: &TaskId, outcome: Outcome, dropped: u64) {
    let tail = combined_tail(
        &store.stdout_path(id),
        &store.stderr_path(id),
        PREVIEW_BYTES,
    )
    .unwrap_or_default();
    let record = FinishRecord {
        end: outcome.into_end(),
        finished_at: now_ms(),
        preview: tail.text,
        output_truncated: tail.truncated || dropped > 0,
        dropped_bytes: dropped,
    };
    if let Err(e) = store.finish(id, &record) {
        // Tried again at the next poll: the job's state is still there.
        log(&format!("{id}: cannot record the end yet: {e}"));
    }
}

/// A diagnostic line in the store's monitor.log (our stderr).
fn log(message: &str) {
    let line = format!("bgtask slurm-watch {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
