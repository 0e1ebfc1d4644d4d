//! The local engine: one monitor process per task on this machine (see
//! `monitor.rs` for what the monitor does). The monitor owns the task from
//! the first moment: it is started before the record exists, named in it
//! as owner, and waits for "go" on its stdin. Its pidfd tells waiters that
//! the end is recorded; its identity (pid + start time + boot + pid
//! namespace) tells reconcile whether it still runs.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use super::{Executor, Job, Launched};
use crate::config::Config;
use crate::control::{self, Control, Reply};
use crate::error::{Error, Result};
use crate::monitor::{DEFAULT_GRACE_MS, MONITOR_ARG};
use crate::process::{self, Cgroup, Detached, ProcessIdentity, Signal};
use crate::store::{self, LiveTask, Store};
use crate::task::Status;

/// Runs tasks under a monitor process of their own on this machine.
pub struct LocalExecutor;

/// Monitors this process started and has not reaped yet (long-lived
/// servers would otherwise collect zombies).
static UNREAPED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    fn launch(&self, config: &Config, job: &Job<'_>) -> Result<Box<dyn Launched>> {
        Ok(Box::new(LocalLaunch(start_monitor(config, job)?)))
    }

    fn why_unreachable(&self, task: &LiveTask) -> String {
        let pid = task.owner.as_ref().map_or(0, |o| o.pid);
        format!("its monitor (pid {pid}) runs in another pid namespace; run the kill there")
    }

    fn tell_kill(&self, store: &Store, task: &LiveTask) -> bool {
        // Only once the shell is recorded: the monitor listens from then on,
        // and sees `killing` itself when it records the shell.
        if task.status != Status::Killing || task.leader.is_none() {
            return false;
        }
        tell_monitor_to_kill(store, task)
    }

    fn can_tell(&self, store: &Store, task: &LiveTask) -> bool {
        control::is_reachable(store.home(), &task.id)
    }

    /// A queued task whose monitor died (SIGKILL, a reboot) gets a new
    /// monitor, once (see [`adopt_queued`]).
    fn reattach(&self, store: &mut Store, task: &LiveTask) -> Result<bool> {
        adopt_queued(store, task)
    }

    fn lost_reason(&self, store: &Store, task: &LiveTask) -> String {
        if let Some(reason) = unadoptable_reason(store, task) {
            return reason;
        }
        match (&task.leader, &task.owner) {
            (None, Some(owner)) => format!(
                "spawn aborted: the task's monitor (pid {}) died before the task started (see {})",
                owner.pid,
                store.monitor_log_path().display()
            ),
            (None, None) => "spawn aborted: the task never started".to_owned(),
            (Some(_), Some(owner)) => format!(
                "the task's monitor (pid {}) died; its exit status is unknown",
                owner.pid
            ),
            (Some(_), None) => {
                "the task's monitor is unknown; its exit status is unknown".to_owned()
            }
        }
    }

    /// Kills what remains of an orphaned task: its cgroup if it had one,
    /// and every process carrying the task's marker (each proven to be the
    /// task's before it is signalled). Never a process group or pid by
    /// number alone: with the monitor gone, the leader's pid and group may
    /// be someone else's.
    fn clean_up(&self, store: &Store, task: &LiveTask) {
        // The control socket of a dead monitor answers nobody, and its
        // sandboxed task's private temporary directory serves nobody.
        let _ = std::fs::remove_file(store::control_socket_path(store.home(), &task.id));
        let _ = std::fs::remove_dir_all(store::task_tmp_path(store.home(), &task.id));
        // Nothing of an earlier boot runs (and every live task of one is
        // reconciled at once after a reboot: no search of /proc for each).
        if task
            .owner
            .as_ref()
            .is_some_and(|o| o.boot_id != process::boot_id())
        {
            return;
        }
        let cgroup = task.cgroup.as_ref().map(Cgroup::at);
        if let Some(cgroup) = &cgroup {
            let _ = cgroup.kill();
        }
        process::signal_marked(task.id.as_str(), Signal::Kill);
        if let Some(cgroup) = &cgroup {
            let _ = cgroup.remove();
        }
    }
}

/// Tells a live monitor to carry out the kill recorded in the store. The
/// one place that does: every kill request and every repeated one comes
/// here. Over the monitor's control channel; where it has none (not bound,
/// or a monitor of an older build), SIGUSR1 ("read the store"). A monitor
/// that stops already ignores the repetition.
fn tell_monitor_to_kill(store: &Store, task: &LiveTask) -> bool {
    let grace_ms = task.kill_grace_ms.unwrap_or(DEFAULT_GRACE_MS);
    let request = Control::Kill { grace_ms };
    if matches!(
        control::send(store.home(), &task.id, &request),
        Ok(Reply::Done)
    ) {
        return true;
    }
    task.owner
        .as_ref()
        .and_then(ProcessIdentity::open)
        .is_some_and(|handle| handle.signal(Signal::Usr1).is_ok())
}

/// Tells a live monitor to carry out the pause or resume the store asks
/// for (issue 21): `Pause` for a `paused` task, `Resume` for a `running`
/// one; the monitor does what the store says when it hears either. Over
/// the control channel, else SIGUSR1 ("read the store"). Returns the
/// monitor's answer, `Err` with why when it failed to, or `Ok(false)`
/// when it could not be told at all.
pub(crate) fn tell_pause(store: &Store, task: &LiveTask) -> std::result::Result<bool, String> {
    let request = if task.status == Status::Paused {
        Control::Pause
    } else {
        Control::Resume
    };
    match control::send(store.home(), &task.id, &request) {
        Ok(Reply::Done) => Ok(true),
        Ok(Reply::Failed { message }) => Err(message),
        Ok(other) => Err(format!("its monitor answered {other:?}")),
        Err(_) => Ok(task
            .owner
            .as_ref()
            .and_then(ProcessIdentity::open)
            .is_some_and(|handle| handle.signal(Signal::Usr1).is_ok())),
    }
}

/// A started monitor waiting for "go".
struct LocalLaunch(Detached);

impl Launched for LocalLaunch {
    fn owner(&self) -> Result<ProcessIdentity> {
        // Read only now, after the store is open: the spawned monitor
        // execs, forks out of this process's tree (`leave_starter`) and
        // reports the pid that goes on meanwhile. The one spawned is our
        // child and exits at once; the carrier is not, but it cannot end
        // before its go (but by a kill from outside), so its pid is still
        // its own when its /proc stat is read.
        let carrier = self.0.carrier();
        keep_for_reaping(self.0.pid);
        carrier
            .and_then(ProcessIdentity::of_child)
            .map_err(|e| Error::spawn_step("cannot identify the task's monitor", e))
    }

    fn go(
        self: Box<Self>,
        _store: &Mutex<Store>,
        env: &[(String, String)],
    ) -> Option<std::os::fd::OwnedFd> {
        // The task's variables go with "go", never into the monitor's own
        // environment. A monitor that died already is found by the next
        // reconcile.
        let _ = (&self.0.stdin).write_all(&process::go_message(env));
        // The write end: POLLERR once the monitor releases its stdin
        // (readiness decided) or exits.
        Some(self.0.stdin.into())
    }

    fn queue(
        self: Box<Self>,
        _store: &Mutex<Store>,
        env: &[(String, String)],
    ) -> Option<std::os::fd::OwnedFd> {
        let _ = (&self.0.stdin).write_all(&process::queue_message(env));
        Some(self.0.stdin.into())
    }
}

/// Remembers a monitor so it is reaped; reaps the ones that already ended.
fn keep_for_reaping(pid: u32) {
    let mut monitors = UNREAPED.lock().unwrap_or_else(|e| e.into_inner());
    monitors.retain(|pid| !process::reap_if_exited(*pid));
    monitors.push(pid);
}

fn start_monitor(config: &Config, job: &Job<'_>) -> Result<Detached> {
    // Checked (and for a new store created) before anything is written
    // in it or started for it; `Store::open` checks again, cheaply.
    Store::prepare_home(&config.home)?;
    spawn_monitor(&config.home, &config.monitor_exe, job)
}

/// Starts a monitor for `job` with the binary `exe` (its go comes later).
fn spawn_monitor(home: &std::path::Path, exe: &std::path::Path, job: &Job<'_>) -> Result<Detached> {
    let log_path = store::monitor_log_path(home);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log_path)
        .map_err(|e| Error::io("cannot open monitor log", &log_path, e))?;
    // The monitor's command line (read by the binary's `__monitor` mode).
    let mut args: Vec<OsString> = vec![
        MONITOR_ARG.into(),
        home.as_os_str().to_owned(),
        job.id.as_str().into(),
        job.cwd.as_os_str().to_owned(),
        job.command.into(),
    ];
    // Needed before the shell starts, so before the store is open: an
    // interactive task's stdin (`stdin`, `pty ROWSxCOLS`; issue 18) and
    // the sandbox policy (issue 22). Read by the binary's `run_monitor`.
    if let Some(io) = job.interaction.stored() {
        args.push(format!("io={io}").into());
    }
    if let Some(policy) = job.sandbox {
        args.push(format!("sandbox={}", policy.to_arg()).into());
    }
    process::spawn_detached(exe, &args, log, process::Leaves::Yes)
        .map_err(|e| Error::spawn_step(format!("cannot start monitor {}", exe.display()), e))
}

/// The binary a new monitor for an orphaned queued task runs: set by
/// whoever opens a `Service` (its `Config::monitor_exe`). Unset (a
/// library user without a service), orphans are recorded failed instead.
static MONITOR_EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Names the binary new monitors of orphaned queued tasks run (the first
/// call wins: one binary per process).
pub(crate) fn set_monitor_exe(exe: &std::path::Path) {
    let _ = MONITOR_EXE.set(exe.to_owned());
}

/// Issue 21: a queued task must survive the death of its monitor (a
/// SIGKILL, a reboot). Its monitor held nothing but the task's `--env`
/// values (and a sandbox's full policy); everything else is in the row.
/// So a task that waited in a queue and never started (`queued`, or
/// `starting` with no shell and no output files: a claim its dead monitor
/// never acted on; a monitor makes the output files just before it spawns
/// the shell, so without them nothing ran) gets a new monitor, told
/// `queue` with no environment; it waits for its turn as the first one
/// did. The same task id, command, cwd, limits, io, group, label,
/// dependencies and delay: they are the row.
///
/// Exactly once, however many processes reconcile at once: the adopter
/// first makes itself the owner by compare and set on the dead owner
/// (`Store::adopt_queued`), so only one spawns a monitor; then the
/// monitor replaces it the same way. An adopter that dies in between
/// leaves itself as a dead owner, and the next reconcile adopts again.
/// True: the task stays live (adopted here or by another process).
fn adopt_queued(store: &mut Store, task: &LiveTask) -> Result<bool> {
    let (Some(exe), Some(dead)) = (MONITOR_EXE.get(), task.owner.as_ref()) else {
        return Ok(false);
    };
    // The row may have been read after the liveness check that brought
    // us here: only a dead owner is replaced (another adopter's monitor
    // may own it by now).
    if dead.liveness() != process::Liveness::Dead {
        return Ok(true);
    }
    let Orphan::Adoptable(row) = orphan(store, task) else {
        return Ok(false);
    };
    let Ok(me) = ProcessIdentity::of_child(std::process::id()) else {
        return Ok(false);
    };
    // The tests hold an adopter here while another one adopts the task.
    process::fault::stop_point("adopt_before_claim");
    match store.adopt_queued(&task.id, dead, &me)? {
        store::Adoption::Adopted => {}
        store::Adoption::Taken => return Ok(true),
        store::Adoption::NotAdoptable => return Ok(false),
    }
    let request = crate::config::SpawnRequest::default();
    let interaction = match (row.pty, row.stdin) {
        (Some(size), _) => crate::interact::Interaction::Pty(size),
        (None, true) => crate::interact::Interaction::Stdin,
        (None, false) => crate::interact::Interaction::None,
    };
    let job = Job {
        id: &task.id,
        cwd: &row.cwd,
        command: &row.command,
        interaction,
        sandbox: None,
        request: &request,
    };
    let started = spawn_monitor(store.home(), exe, &job).and_then(|detached| {
        // The pid that goes on once it left this process's tree.
        let owner = detached.carrier().and_then(ProcessIdentity::of_child);
        keep_for_reaping(detached.pid);
        let owner =
            owner.map_err(|e| Error::spawn_step("cannot identify the task's monitor", e))?;
        Ok((detached, owner))
    });
    let Ok((detached, owner)) = started else {
        // No monitor: recorded failed by the caller, as a task whose
        // monitor died was before.
        return Ok(false);
    };
    // Dropped without its message, the new monitor gives up unused (the
    // task ended meanwhile).
    if store.adopt_queued(&task.id, &me, &owner)? == store::Adoption::Adopted {
        let _ = (&detached.stdin).write_all(&process::queue_message(&[]));
    }
    Ok(true)
}

/// What an orphaned live task is to [`adopt_queued`].
enum Orphan {
    /// Not a task that waited in a queue and never started.
    No,
    /// It waited in a queue, but cannot get a new monitor: why.
    Refused(String),
    /// It can (its row).
    Adoptable(Box<crate::task::Task>),
}

fn orphan(store: &Store, task: &LiveTask) -> Orphan {
    if task.leader.is_some() || !matches!(task.status, Status::Queued | Status::Starting) {
        return Orphan::No;
    }
    if !matches!(store.queued_at(&task.id), Ok(Some(_))) {
        return Orphan::No;
    }
    let Ok(row) = store.get(&task.id) else {
        return Orphan::No;
    };
    if task.status == Status::Starting
        && (store.stdout_path(&task.id).exists() || store.stderr_path(&task.id).exists())
    {
        // Its monitor may have started the shell: it must not run twice.
        return Orphan::No;
    }
    let pid = task.owner.as_ref().map_or(0, |o| o.pid);
    if !row.env_keys.is_empty() {
        return Orphan::Refused(format!(
            "spawn aborted: the queued task's monitor (pid {pid}) died, and the values of its \
             --env keys ({}) lived only there; run `bgtask restart {} --env KEY=VALUE...` to run it again",
            row.env_keys.join(", "),
            task.id
        ));
    }
    if row.sandbox.is_some() {
        return Orphan::Refused(format!(
            "spawn aborted: the queued task's monitor (pid {pid}) died, and its sandbox policy \
             lived only there; run `bgtask restart {}` to run it again",
            task.id
        ));
    }
    Orphan::Adoptable(Box::new(row))
}

/// Why an orphaned queued task that got no new monitor cannot: its
/// `--env` values or its sandbox policy lived only in the dead monitor.
fn unadoptable_reason(store: &Store, task: &LiveTask) -> Option<String> {
    match orphan(store, task) {
        Orphan::Refused(reason) => Some(reason),
        Orphan::No | Orphan::Adoptable(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Liveness;
    use crate::task::TaskId;

    fn live(status: Status, owner: Option<ProcessIdentity>) -> LiveTask {
        LiveTask {
            id: TaskId::random(),
            status,
            leader: None,
            owner,
            cgroup: None,
            kill_grace_ms: None,
            executor: crate::config::Engine::Local,
            job_id: None,
            held: false,
        }
    }

    #[test]
    fn a_task_without_an_owner_is_dead_and_one_with_a_running_owner_alive() {
        // Both engines record a local process as owner and share the
        // trait's answers (a Slurm task's owner is its starter, then the
        // store's watcher).
        let me = ProcessIdentity::of_child(std::process::id()).unwrap();
        let engines: [&dyn Executor; 2] = [&LocalExecutor, &crate::executor::SlurmExecutor];
        for engine in engines {
            assert_eq!(
                engine.liveness(&live(Status::Running, None)),
                Liveness::Dead
            );
            let ours = live(Status::Running, Some(me.clone()));
            assert_eq!(engine.liveness(&ours), Liveness::Alive);
            assert!(engine.end_handle(&ours).is_some());
            assert!(engine.end_handle(&live(Status::Running, None)).is_none());
        }
    }

    #[test]
    fn a_kill_is_told_only_to_a_monitor_that_recorded_its_shell() {
        let me = ProcessIdentity::of_child(std::process::id()).unwrap();
        let engine: &dyn Executor = &LocalExecutor;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), store::CacheSize::Small).unwrap();
        // Not `killing`: nothing to tell. No shell yet: the monitor sees
        // `killing` itself when it records the shell. (Either way this
        // process, the "monitor" here, is not signalled.)
        assert!(!engine.tell_kill(&store, &live(Status::Running, Some(me.clone()))));
        assert!(!engine.tell_kill(&store, &live(Status::Killing, Some(me))));
        assert!(!engine.tell_kill(&store, &live(Status::Killing, None)));
    }
}
