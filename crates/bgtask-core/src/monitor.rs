//! The monitor: one small process per task (our binary re-executed in a
//! hidden mode). It starts the shell, copies its output into capped files,
//! enforces the hard and idle timeouts, carries out kill requests, reaps the
//! whole tree as child subreaper, records the end and exits.
//!
//! It waits on file descriptors only (output pipes, the shell's pidfd, a
//! signal pipe), so an idle task costs no CPU. It runs in its own session, so
//! it outlives whatever started it.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::output::{combined_tail, CappedWriter};
use crate::process::{
    self, Cgroup, ExitStatus, ProcessIdentity, ShellCommand, SIGKILL, SIGTERM, SIGUSR1,
};
use crate::store::{self, CacheSize, FinishRecord, LiveTask, Store, PREVIEW_BYTES};
use crate::task::{Outcome, Status, TaskId};

/// Hidden first argument that runs the binary as a monitor.
pub const MONITOR_ARG: &str = "__monitor";
/// Grace used for timeouts and for a SIGTERM sent to the monitor itself.
pub const DEFAULT_GRACE_MS: u64 = 2_000;

/// What a monitor runs: given on its command line by the starter, from
/// the same values it records in the store.
pub struct TaskCommand<'a> {
    pub cwd: &'a Path,
    pub command: &'a str,
}

/// Runs the monitor for `id` until the task ends; returns the process exit
/// code. The starter records the task (owned by this process) and then
/// writes "go" on our stdin; without it there is nothing to run.
pub fn run(home: &Path, id: &TaskId, task: TaskCommand<'_>) -> i32 {
    // Before anything of ours is open: what the starter left open is not
    // the monitor's, nor the task's.
    process::close_inherited_fds();
    let Some(env) = process::wait_for_go() else {
        if let Some(mut store) = open_store(home, id) {
            abandon(&mut store, id);
        }
        return 0;
    };
    process::fault::point("monitor_before_start");
    // The shell is started first and the store opened while its exec runs:
    // the open is most of a monitor's own start.
    let launched = launch(home, id, &task, env);
    let Some(mut store) = open_store(home, id) else {
        // The task stays `starting` with a dead owner: the next command
        // that looks at it records it as failed.
        if let Ok(launched) = launched {
            launched.abort();
        }
        return 1;
    };
    match launched.and_then(|launched| launched.record(&mut store)) {
        Ok(Some(running)) => {
            process::fault::point("monitor_after_start");
            store.touch_events();
            process::release_startup_pages();
            supervise(&mut store, running);
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let reason = match e {
                Error::SpawnFailed(message) => message,
                other => other.to_string(),
            };
            log(&format!("{id}: the task could not start: {reason}"));
            record_start_failure(&mut store, id, &reason);
            1
        }
    }
}

fn open_store(home: &Path, id: &TaskId) -> Option<Store> {
    Store::open(home, CacheSize::Small)
        .map_err(|e| log(&format!("{id}: cannot open the store: {e}")))
        .ok()
}

/// The starter exited or failed without saying "go": if it got as far as
/// recording the task, record it as never started.
fn abandon(store: &mut Store, id: &TaskId) {
    if let Ok(Some(live)) = store.live(id) {
        if is_ours_to_start(&live) {
            record_start_failure(
                store,
                id,
                "spawn aborted: the process starting the task exited before it started",
            );
        }
    }
}

/// Whether `live` names this monitor as owner and has no shell yet. The
/// pid suffices: the starter wrote our identity into this fresh record.
fn is_ours_to_start(live: &LiveTask) -> bool {
    live.leader.is_none()
        && live
            .owner
            .as_ref()
            .is_some_and(|o| o.pid == std::process::id())
}

fn record_start_failure(store: &mut Store, id: &TaskId, reason: &str) {
    let record = FinishRecord {
        end: Outcome::Lost(reason.to_owned()).into_end(),
        finished_at: now_ms(),
        preview: String::new(),
        output_truncated: false,
        dropped_bytes: 0,
    };
    if let Err(e) = store.finish(id, &record) {
        log(&format!("{id}: cannot record the failed start: {e}"));
    }
    store.touch_events();
}

/// A started task under supervision.
struct Running {
    id: TaskId,
    child: process::Shell,
    pgid: u32,
    cgroup: Option<Cgroup>,
    streams: [Stream; 2],
    signals: UnixStream,
    terminated: Arc<AtomicBool>,
    started: Instant,
    timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
    kill_requested: bool,
}

/// One output pipe and the file it is copied into.
struct Stream {
    /// `None` once the pipe reached end of file.
    pipe: Option<OwnedFd>,
    writer: CappedWriter,
    /// Set after the first failed write, so a full disk logs once.
    write_failed: bool,
}

/// What one read from a pipe did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pumped {
    Nothing,
    Output,
    /// Output arrived and the cap dropped older output.
    Compacted,
}

/// Why the monitor is ending the task, and how far it got.
#[derive(Clone, Copy, Debug)]
enum Stop {
    Request,
    Timeout(u64),
    Idle(u64),
}

struct Stopping {
    why: Stop,
    /// When SIGKILL follows; none for a grace too long to end.
    kill_at: Option<Instant>,
    last_signal: i32,
    killed: bool,
}

/// A shell started for a task whose record does not say so yet.
struct Launched {
    id: TaskId,
    shell: process::PendingShell,
    cgroup: Option<Cgroup>,
    files: (std::fs::File, std::fs::File),
    pipes: (OwnedFd, OwnedFd),
    signals: UnixStream,
    terminated: Arc<AtomicBool>,
    started: Instant,
}

/// Starts the shell (without waiting for its exec), with everything
/// supervising it needs that does not come from the store.
fn launch(
    home: &Path,
    id: &TaskId,
    task: &TaskCommand<'_>,
    mut env: Vec<(String, String)>,
) -> Result<Launched> {
    // Registered before anyone can learn our pid from the store (mark_running).
    let (signals, signal_writer) =
        UnixStream::pair().map_err(|e| Error::SpawnFailed(format!("signal pipe: {e}")))?;
    signals.set_nonblocking(true).ok();
    let terminated = Arc::new(AtomicBool::new(false));
    for sig in [SIGUSR1, SIGTERM] {
        let writer = signal_writer
            .try_clone()
            .map_err(|e| Error::SpawnFailed(format!("signal pipe: {e}")))?;
        signal_hook::low_level::pipe::register(sig, writer)
            .map_err(|e| Error::SpawnFailed(format!("signal handler: {e}")))?;
    }
    signal_hook::flag::register(SIGTERM, Arc::clone(&terminated))
        .map_err(|e| Error::SpawnFailed(format!("signal handler: {e}")))?;

    process::become_subreaper().map_err(|e| Error::SpawnFailed(format!("subreaper: {e}")))?;
    let cgroup = Cgroup::create(id.as_str());
    // The monitor's own environment, the task's variables, and the marker
    // that lets every process of the task be found even without a cgroup
    // (and that the task cannot take over with a variable of its own).
    env.retain(|(key, _)| key != process::TASK_MARKER);
    env.push((process::TASK_MARKER.to_owned(), id.to_string()));
    let env =
        process::environment(&env).map_err(|e| Error::SpawnFailed(format!("environment: {e}")))?;
    let files = store::create_output_files(home, id)?;
    let (out_r, out_w) = process::pipe().map_err(|e| Error::SpawnFailed(format!("pipe: {e}")))?;
    let (err_r, err_w) = process::pipe().map_err(|e| Error::SpawnFailed(format!("pipe: {e}")))?;
    let shell = shell_path();
    let started = process::start_shell(ShellCommand {
        shell: Path::new(shell),
        command: task.command,
        cwd: task.cwd,
        stdout: out_w,
        stderr: err_w,
        cgroup: cgroup.as_ref(),
        env: &env,
    });
    match started {
        Ok(pending) => Ok(Launched {
            id: id.clone(),
            shell: pending,
            cgroup,
            files,
            pipes: (out_r, err_r),
            signals,
            terminated,
            started: Instant::now(),
        }),
        Err(e) => {
            if let Some(cg) = &cgroup {
                let _ = cg.remove();
            }
            Err(Error::SpawnFailed(format!("{shell}: {e}")))
        }
    }
}

impl Launched {
    /// Records the started shell; `None` if the task is not ours to run
    /// any more (something recorded its end meanwhile), after ending it.
    fn record(self, store: &mut Store) -> Result<Option<Running>> {
        let Launched {
            id,
            shell,
            cgroup,
            files: (out_file, err_file),
            pipes: (out_r, err_r),
            signals,
            terminated,
            started,
        } = self;
        let child = match shell.confirm() {
            Ok(child) => child,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    let _ = cg.remove();
                }
                return Err(Error::SpawnFailed(format!("{}: {e}", shell_path())));
            }
        };
        let recorded = ProcessIdentity::of_child(child.id())
            .map_err(|e| Error::SpawnFailed(format!("cannot identify the shell: {e}")))
            .and_then(|leader| {
                process::fault::point("monitor_after_spawn");
                let cgroup_path = cgroup.as_ref().map(Cgroup::path);
                store.mark_running(&id, &leader, cgroup_path, now_ms())
            });
        // Not recorded as running (ended meanwhile, or an error): nothing
        // the shell started may outlive this.
        let task = match recorded {
            Ok(Some(task)) => task,
            Ok(None) => {
                kill_everything(&id, cgroup.as_ref());
                return Ok(None);
            }
            Err(e) => {
                kill_everything(&id, cgroup.as_ref());
                return Err(e);
            }
        };
        let (out_path, err_path) = (store.stdout_path(&id), store.stderr_path(&id));
        let stream = |pipe, path, file| Stream {
            pipe: Some(pipe),
            writer: CappedWriter::new(path, file, task.max_output / 2),
            write_failed: false,
        };
        Ok(Some(Running {
            id,
            pgid: child.id(),
            child,
            cgroup,
            streams: [
                stream(out_r, out_path, out_file),
                stream(err_r, err_path, err_file),
            ],
            signals,
            terminated,
            started,
            timeout: task.timeout_ms.map(Duration::from_millis),
            idle_timeout: task.idle_timeout_ms.map(Duration::from_millis),
            kill_requested: task.status == Status::Killing,
        }))
    }

    /// Gives up on the shell (the store cannot be opened to record it).
    fn abort(self) {
        kill_everything(&self.id, self.cgroup.as_ref());
    }
}

/// Kills every process of ours (the shell and whatever it started), reaps
/// them and removes the task's cgroup.
fn kill_everything(id: &TaskId, cgroup: Option<&Cgroup>) {
    if cgroup.is_none() {
        process::signal_marked(id.as_str(), SIGKILL);
    }
    loop {
        let _ = process::signal_own_children(SIGKILL);
        if let Some(cg) = cgroup {
            let _ = cg.kill();
        }
        if !process::reap_one() {
            break;
        }
    }
    if let Some(cg) = cgroup {
        let _ = cg.remove();
    }
}

/// Bash when there is one (scripts use its syntax), else POSIX sh.
fn shell_path() -> &'static str {
    ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/sh")
}

fn supervise(store: &mut Store, mut task: Running) {
    let pidfd = match process::child_handle(&task.child) {
        Ok(fd) => fd,
        Err(e) => {
            log(&format!("{}: pidfd_open failed: {e}", task.id));
            return finish_lost(store, task, "the monitor could not watch the process");
        }
    };
    let mut stopping: Option<Stopping> = None;
    let mut last_output = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    if task.kill_requested {
        stopping = Some(begin_stop(store, &task, Stop::Request));
    }
    loop {
        let now = Instant::now();
        let deadline = next_deadline(&task, stopping.as_ref(), last_output);
        if deadline.is_some_and(|d| d <= now) {
            // A shell that exited just as the deadline passed keeps its own
            // end: look at the pidfd before acting on the deadline.
            if has_exited(&pidfd) {
                break;
            }
            match &mut stopping {
                Some(s) if !s.killed => {
                    signal_tree(&task, SIGKILL);
                    s.killed = true;
                    s.last_signal = SIGKILL;
                }
                Some(_) => {}
                None => {
                    let why = match task.timeout {
                        Some(t)
                            if deadline_after(task.started, Some(t)).is_some_and(|d| now >= d) =>
                        {
                            Stop::Timeout(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
                        }
                        _ => Stop::Idle(
                            task.idle_timeout
                                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
                        ),
                    };
                    stopping = Some(begin_stop(store, &task, why));
                }
            }
            continue;
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        let mut fds = vec![pidfd.as_fd(), task.signals.as_fd()];
        fds.extend(
            task.streams
                .iter()
                .filter_map(|s| s.pipe.as_ref().map(|p| p.as_fd())),
        );
        let ready = match process::wait_readable(&fds, timeout) {
            Ok(ready) => ready,
            Err(e) => {
                log(&format!("{}: poll failed: {e}", task.id));
                break;
            }
        };
        drop(fds);
        let mut idx = 2;
        let mut compacted = false;
        for stream in &mut task.streams {
            if stream.pipe.is_some() {
                match ready[idx].then(|| pump(&task.id, stream, &mut buf)) {
                    Some(Pumped::Output) => last_output = Instant::now(),
                    Some(Pumped::Compacted) => {
                        last_output = Instant::now();
                        compacted = true;
                    }
                    _ => {}
                }
                idx += 1;
            }
        }
        if compacted {
            let _ = store.set_dropped_bytes(&task.id, dropped_bytes(&task));
        }
        if ready[0] {
            // The exit is handled before any kill request that arrived in
            // the same wake-up: a natural exit racing a kill keeps its code.
            break;
        }
        if ready[1] {
            drain_signals(&task.signals);
            if stopping.is_none() && kill_was_requested(store, &task) && !has_exited(&pidfd) {
                stopping = Some(begin_stop(store, &task, Stop::Request));
            }
        }
    }
    let status = process::try_reap(&mut task.child).ok().flatten();
    end(store, task, status, stopping);
}

fn has_exited(pidfd: &process::ProcessHandle) -> bool {
    process::wait_readable(&[pidfd.as_fd()], Some(Duration::ZERO)).map_or(true, |ready| ready[0])
}

fn next_deadline(
    task: &Running,
    stopping: Option<&Stopping>,
    last_output: Instant,
) -> Option<Instant> {
    if let Some(s) = stopping {
        return s.kill_at.filter(|_| !s.killed);
    }
    let hard = deadline_after(task.started, task.timeout);
    let idle = deadline_after(last_output, task.idle_timeout);
    [hard, idle].into_iter().flatten().min()
}

/// `start + limit`; none when there is no limit or the sum is beyond what
/// an `Instant` holds (a limit that long never ends the task).
fn deadline_after(start: Instant, limit: Option<Duration>) -> Option<Instant> {
    limit.and_then(|limit| start.checked_add(limit))
}

/// Copies what is available on one pipe into its file. At end of file the
/// pipe is closed.
fn pump(id: &TaskId, stream: &mut Stream, buf: &mut [u8]) -> Pumped {
    let Some(pipe) = &stream.pipe else {
        return Pumped::Nothing;
    };
    match process::read_fd(pipe.as_fd(), buf) {
        Ok(0) => {
            stream.pipe = None;
            Pumped::Nothing
        }
        Ok(n) => match stream.writer.write(&buf[..n]) {
            Ok(true) => Pumped::Compacted,
            Ok(false) => Pumped::Output,
            // Disk full or similar: keep draining the pipe so the task is
            // not blocked on a full pipe.
            Err(e) => {
                if !stream.write_failed {
                    log(&format!(
                        "{id}: cannot write output (further errors not logged): {e}"
                    ));
                    stream.write_failed = true;
                }
                Pumped::Output
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Pumped::Nothing,
        Err(_) => {
            stream.pipe = None;
            Pumped::Nothing
        }
    }
}

fn dropped_bytes(task: &Running) -> u64 {
    task.streams.iter().map(|s| s.writer.dropped()).sum()
}

fn drain_signals(mut signals: &UnixStream) {
    let mut buf = [0u8; 64];
    while matches!(std::io::Read::read(&mut signals, &mut buf), Ok(n) if n > 0) {}
}

fn kill_was_requested(store: &Store, task: &Running) -> bool {
    if task.terminated.swap(false, Ordering::SeqCst) {
        // SIGTERM to the monitor itself: treat it as a kill request.
        let _ = store.request_kill(&task.id, DEFAULT_GRACE_MS);
        return true;
    }
    matches!(store.live(&task.id), Ok(Some(live)) if live.status == Status::Killing)
}

fn begin_stop(store: &Store, task: &Running, why: Stop) -> Stopping {
    let grace = match why {
        Stop::Request => store
            .live(&task.id)
            .ok()
            .flatten()
            .and_then(|l| l.kill_grace_ms)
            .unwrap_or(DEFAULT_GRACE_MS),
        Stop::Timeout(_) | Stop::Idle(_) => DEFAULT_GRACE_MS,
    };
    let killed = grace == 0;
    signal_tree(task, if killed { SIGKILL } else { SIGTERM });
    Stopping {
        why,
        kill_at: deadline_after(Instant::now(), Some(Duration::from_millis(grace))),
        last_signal: if killed { SIGKILL } else { SIGTERM },
        killed,
    }
}

/// Signals the task's whole tree: its process group, its cgroup (SIGKILL
/// only) or without one every process carrying the task's marker, and
/// every descendant that was reparented to us.
fn signal_tree(task: &Running, sig: i32) {
    signal_close_tree(task, sig);
    if task.cgroup.is_none() {
        process::signal_marked(task.id.as_str(), sig);
    }
}

/// `signal_tree` without the search for marked processes (which reads
/// every process's environment): enough while the monitor reaps, since
/// every descendant that is still running stays below it (a subreaper).
fn signal_close_tree(task: &Running, sig: i32) {
    // The group's number is the shell's pid, which is ours until the shell
    // is reaped; after that it could name someone else's group.
    if !task.child.is_reaped() {
        let _ = process::signal_group(task.pgid, sig);
    }
    if let Some(cg) = &task.cgroup {
        let _ = if sig == SIGKILL {
            cg.kill()
        } else {
            cg.signal_members(sig)
        };
    }
    let _ = process::signal_own_children(sig);
}

fn end(
    store: &mut Store,
    mut task: Running,
    status: Option<ExitStatus>,
    stopping: Option<Stopping>,
) {
    // Anything the shell left behind belongs to the task: end it and reap
    // it, so nothing lingers unmanaged.
    signal_tree(&task, SIGKILL);
    loop {
        signal_close_tree(&task, SIGKILL);
        if !process::reap_one() {
            break;
        }
    }
    if let Some(cg) = &task.cgroup {
        let _ = cg.remove();
    }
    let mut buf = vec![0u8; 64 << 10];
    for stream in &mut task.streams {
        if let Some(pipe) = &stream.pipe {
            let _ = process::set_nonblocking(pipe.as_fd());
        }
        while pump(&task.id, stream, &mut buf) != Pumped::Nothing {}
    }
    let outcome = outcome(status, stopping.as_ref());
    finish(store, &task, outcome);
}

/// Decides how the task ended. A signal we sent only counts if it was sent
/// before the exit was observed: a natural exit racing a kill keeps its code.
fn outcome(status: Option<ExitStatus>, stopping: Option<&Stopping>) -> Outcome {
    match (status, stopping) {
        (None, _) => Outcome::Lost("the task's exit status could not be read".into()),
        (Some(status), Some(s)) => match s.why {
            Stop::Request => Outcome::Killed(match status {
                ExitStatus::Signal(sig) => sig,
                ExitStatus::Code(_) => s.last_signal,
            }),
            Stop::Timeout(after_ms) => Outcome::TimedOut { after_ms },
            Stop::Idle(after_ms) => Outcome::IdleTimedOut { after_ms },
        },
        (Some(ExitStatus::Code(code)), None) => Outcome::Exited(code),
        (Some(ExitStatus::Signal(sig)), None) => Outcome::Signaled(sig),
    }
}

fn finish_lost(store: &mut Store, mut task: Running, reason: &str) {
    signal_tree(&task, SIGKILL);
    let _ = task.child.wait();
    finish(store, &task, Outcome::Lost(reason.to_owned()));
}

fn finish(store: &mut Store, task: &Running, outcome: Outcome) {
    let tail = combined_tail(
        &store.stdout_path(&task.id),
        &store.stderr_path(&task.id),
        PREVIEW_BYTES,
    )
    .unwrap_or_default();
    let dropped = dropped_bytes(task);
    let record = FinishRecord {
        end: outcome.into_end(),
        finished_at: now_ms(),
        preview: tail.text,
        output_truncated: tail.truncated || dropped > 0,
        dropped_bytes: dropped,
    };
    // The end must be recorded: on failure (a full disk, a locked store)
    // keep trying for a while rather than leave the task to be reconciled
    // as "exit status unknown".
    let mut pause = Duration::from_millis(100);
    let give_up = Instant::now() + Duration::from_secs(600);
    while let Err(e) = store.finish(&task.id, &record) {
        if Instant::now() >= give_up {
            log(&format!(
                "{}: cannot record the end, giving up: {e}",
                task.id
            ));
            break;
        }
        log(&format!(
            "{}: cannot record the end yet, retrying: {e}",
            task.id
        ));
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    store.touch_events();
}

/// Writes a diagnostic to the monitor log (stderr). Never panics: the log
/// may sit on a full disk, which must not kill the monitor.
fn log(message: &str) {
    // One write per line, so lines of concurrent monitors never interleave.
    let line = format!("bgtask monitor {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_too_long_for_the_clock_is_no_deadline() {
        let now = Instant::now();
        assert_eq!(deadline_after(now, Some(Duration::MAX)), None);
        assert_eq!(deadline_after(now, None), None);
        // The longest limit a request can carry is far, but representable.
        let longest = deadline_after(now, Some(Duration::from_millis(u64::MAX)));
        assert!(longest.is_some_and(|d| d > now));
        let second = Duration::from_secs(1);
        assert_eq!(deadline_after(now, Some(second)), Some(now + second));
    }
}
