//! The monitor's start: the go from the starter, the shell started, the
//! task recorded `running` (or its failure to start recorded).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::interact::{wire, Input, Terminal};
use super::stop::{kill_and_reap, Limits, Tree};
use super::supervise::{Running, Stream};
use super::{log, now_ms, TaskCommand};
use crate::control::Channel;
use crate::error::{Error, Result};
use crate::interact::PtySize;
use crate::output::CappedWriter;
use crate::process::{self, Cgroup, ProcessIdentity, ShellCommand, SignalPipe};
use crate::store::{self, FinishRecord, LiveTask, Store};
use crate::task::{Outcome, Status, TaskId};

/// The starter exited or failed without saying "go": if it got as far as
/// recording the task, record it as never started.
pub(super) fn abandon(store: &mut Store, id: &TaskId) {
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

pub(super) fn record_start_failure(store: &mut Store, id: &TaskId, reason: &str) {
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

/// What a sandboxed task's end needs: its private temporary directory
/// (removed when the task ends) and the note a failure's reason gets.
pub(super) struct Sandboxed {
    tmp: Option<PathBuf>,
    pub note: String,
}

impl Sandboxed {
    pub(super) fn remove_tmp(&self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_dir_all(tmp);
        }
    }
}

/// Whatever way the start or the task ends (an error on the way
/// included), the private temporary directory goes with it. The end
/// removes it earlier, before the end is recorded.
impl Drop for Sandboxed {
    fn drop(&mut self) {
        self.remove_tmp();
    }
}

/// A sandbox made ready before the go (while the starter records the
/// task): the private temporary directory and the confinement.
pub(super) struct PreparedSandbox {
    sandboxed: Sandboxed,
    confinement: process::Confinement,
}

impl PreparedSandbox {
    /// Gives up on it (no go came).
    pub(super) fn discard(&self) {
        self.sandboxed.remove_tmp();
    }
}

/// Prepares `policy` for task `id`: its private temporary directory (when
/// Landlock confines it) and the confinement (the ruleset is built here,
/// listing directories: it costs a few hundred system calls, done while
/// the starter records the task rather than after its go).
pub(super) fn prepare_sandbox(
    home: &Path,
    id: &TaskId,
    policy: &crate::sandbox::Policy,
) -> Result<PreparedSandbox> {
    let tmp = match policy.mode {
        crate::sandbox::Mode::None => None,
        _ => Some(private_tmp(home, id)?),
    };
    let sandboxed = Sandboxed {
        tmp,
        note: policy.failure_note(),
    };
    match process::prepare_confinement(&policy.confinement(sandboxed.tmp.as_deref())) {
        Ok(confinement) => Ok(PreparedSandbox {
            sandboxed,
            confinement,
        }),
        Err(e) => {
            sandboxed.remove_tmp();
            Err(Error::spawn_step("sandbox", e))
        }
    }
}

/// Creates the private temporary directory of a task confined by
/// Landlock (0700, inside the home, which only its user can enter).
fn private_tmp(home: &Path, id: &TaskId) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let tmp = store::task_tmp_path(home, id);
    if let Some(parent) = tmp.parent() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(parent)
            .map_err(|e| Error::io("cannot create the temporary directories", parent, e))?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| Error::io("cannot create the task's temporary directory", &tmp, e))?;
    Ok(tmp)
}

/// A shell started for a task whose record does not say so yet.
pub(super) struct Launched {
    id: TaskId,
    shell: process::PendingShell,
    cgroup: Option<Cgroup>,
    files: (std::fs::File, std::fs::File),
    pipes: (OwnedFd, Option<OwnedFd>),
    /// An interactive task's input and terminal size (issue 18).
    input: Option<Input>,
    pty: Option<PtySize>,
    signals: SignalPipe,
    channel: Option<Channel>,
    started: Instant,
    sandbox: Option<Sandboxed>,
}

/// The task's cgroup, made before the go (a mkdir in the cgroup
/// filesystem, one of the slower steps of a start); `None` where there is
/// none to make. Given to [`launch`], or removed with [`discard_cgroup`]
/// when no go comes.
pub(super) fn task_cgroup(id: &TaskId) -> Option<Cgroup> {
    Cgroup::create(id.as_str())
}

/// Removes a cgroup made for a task that never started.
pub(super) fn discard_cgroup(cgroup: Option<Cgroup>) {
    if let Some(cg) = &cgroup {
        let _ = cg.remove();
    }
}

/// What a monitor makes ready before its go: the sandbox (prepared, or why
/// not) and the task's cgroup (from [`task_cgroup`]).
pub(super) struct BeforeGo {
    pub sandbox: Option<Result<PreparedSandbox>>,
    pub cgroup: Option<Cgroup>,
}

/// What the monitor has for the start that came with its go: the task's
/// environment and, for a task that waited in a queue (issue 21), the
/// control channel it listened on meanwhile.
pub(super) struct Given {
    pub env: Vec<(String, String)>,
    pub channel: Option<Channel>,
}

/// Starts the shell (without waiting for its exec), with everything
/// supervising it needs that does not come from the store, in the cgroup
/// made before the go (removed if the start fails).
pub(super) fn launch(
    home: &Path,
    id: &TaskId,
    task: &TaskCommand<'_>,
    given: Given,
    ready: BeforeGo,
) -> Result<Launched> {
    let cgroup_path = ready.cgroup.as_ref().map(|cg| cg.path().to_owned());
    let launched = launch_in(home, id, task, given, ready);
    if launched.is_err() {
        // `launch_in` hands the cgroup on only when the shell started.
        if let Some(path) = cgroup_path {
            let _ = Cgroup::at(path).remove();
        }
    }
    launched
}

fn launch_in(
    home: &Path,
    id: &TaskId,
    task: &TaskCommand<'_>,
    given: Given,
    BeforeGo { sandbox, cgroup }: BeforeGo,
) -> Result<Launched> {
    let Given { mut env, channel } = given;
    // A sandbox that could not be prepared: nothing starts (fail closed).
    let sandbox = sandbox.transpose()?;
    // Both inbound channels exist before anyone can learn from the store
    // that this monitor runs the task (mark_running).
    let signals = SignalPipe::install().map_err(|e| Error::spawn_step("signal pipe", e))?;
    // Without a channel (a home path too long for a socket, say) requests
    // fall back to SIGUSR1, which the signal pipe still carries.
    // A queued task's monitor listens already (issue 21).
    let channel = match channel {
        Some(channel) => Some(channel),
        None => Channel::open(home, id)
            .map_err(|e| log(&format!("{id}: no control channel, signals only: {e}")))
            .ok(),
    };

    process::become_subreaper().map_err(|e| Error::spawn_step("subreaper", e))?;
    // The monitor's own environment, the task's variables, and the marker
    // that lets every process of the task be found even without a cgroup
    // (and that the task cannot take over with a variable of its own).
    env.retain(|(key, _)| key != process::TASK_MARKER);
    env.push((process::TASK_MARKER.to_owned(), id.to_string()));
    // Under our terminal, programs must know what it understands (the
    // starter's TERM described the starter's terminal).
    if task.interaction.pty().is_some() && !env.iter().any(|(key, _)| key == "TERM") {
        env.push(("TERM".to_owned(), "xterm-256color".to_owned()));
    }
    let (sandbox, confinement) = match sandbox {
        Some(prepared) => {
            if let Some(tmp) = &prepared.sandboxed.tmp {
                env.retain(|(key, _)| key != "TMPDIR");
                env.push(("TMPDIR".to_owned(), tmp.to_string_lossy().into_owned()));
            }
            (Some(prepared.sandboxed), Some(prepared.confinement))
        }
        None => (None, None),
    };
    let env = process::environment(&env).map_err(|e| Error::spawn_step("environment", e))?;
    let files = store::create_output_files(home, id)?;
    let wiring = wire(task.interaction).map_err(|e| Error::spawn_step("pipe", e))?;
    let shell = shell_path();
    let started = process::start_shell(ShellCommand {
        shell: Path::new(shell),
        command: task.command,
        cwd: task.cwd,
        stdout: wiring.stdout,
        stderr: wiring.stderr,
        stdin: wiring.stdin,
        terminal: wiring.terminal,
        cgroup: cgroup.as_ref(),
        env: &env,
        confine: confinement.as_ref(),
    });
    match started {
        Ok(pending) => Ok(Launched {
            id: id.clone(),
            shell: pending,
            cgroup,
            files,
            pipes: (wiring.out_r, wiring.err_r),
            input: wiring.input,
            pty: task.interaction.pty(),
            signals,
            channel,
            started: Instant::now(),
            sandbox,
        }),
        Err(e) => {
            // The cgroup is removed by `launch`.
            if let Some(s) = &sandbox {
                s.remove_tmp();
            }
            Err(Error::spawn_step(shell, e))
        }
    }
}

impl Launched {
    /// Records the started shell; `None` if the task is not ours to run
    /// any more (something recorded its end meanwhile), after ending it.
    pub(super) fn record(self, store: &mut Store) -> Result<Option<Running>> {
        let Launched {
            id,
            shell,
            cgroup,
            files: (out_file, err_file),
            pipes: (out_r, err_r),
            input,
            pty,
            signals,
            channel,
            started,
            sandbox,
        } = self;
        let child = match shell.confirm() {
            Ok(child) => child,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    let _ = cg.remove();
                }
                if let Some(s) = &sandbox {
                    s.remove_tmp();
                }
                return Err(Error::spawn_step(shell_path(), e));
            }
        };
        let recorded = ProcessIdentity::of_child(child.id())
            .map_err(|e| Error::spawn_step("cannot identify the shell", e))
            .and_then(|leader| {
                process::fault::point("monitor_after_spawn");
                let cgroup_path = cgroup.as_ref().map(Cgroup::path);
                store.mark_running(&id, &leader, cgroup_path, now_ms())
            });
        // Not recorded as running (ended meanwhile, or an error): nothing
        // the shell started may outlive this.
        let tree = Tree {
            id: &id,
            cgroup: cgroup.as_ref(),
            group: Some(child.id()),
        };
        let task = match recorded {
            Ok(Some(task)) => task,
            Ok(None) => {
                kill_and_reap(&tree);
                if let Some(s) = &sandbox {
                    s.remove_tmp();
                }
                return Ok(None);
            }
            Err(e) => {
                kill_and_reap(&tree);
                if let Some(s) = &sandbox {
                    s.remove_tmp();
                }
                return Err(e);
            }
        };
        let (out_path, err_path) = (store.stdout_path(&id), store.stderr_path(&id));
        let id_for_watch = id.clone();
        // Under a terminal the one stream gets the whole cap.
        let cap = if pty.is_some() {
            task.max_output
        } else {
            task.max_output / 2
        };
        let stream = |pipe, path, file| Stream {
            pipe,
            writer: CappedWriter::new(path, file, cap),
            write_failed: false,
            terminal: None,
        };
        let mut out = stream(Some(out_r), out_path, out_file);
        out.terminal = pty.map(Terminal::new);
        Ok(Some(Running {
            id,
            pgid: child.id(),
            child,
            cgroup,
            streams: [out, stream(err_r, err_path, err_file)],
            input,
            sent_signals: Vec::new(),
            signals,
            channel,
            limits: Limits {
                started,
                timeout: task.timeout_ms.map(Duration::from_millis),
                idle_timeout: task.idle_timeout_ms.map(Duration::from_millis),
            },
            kill_requested: task.status == Status::Killing,
            watching: super::watch::Watching::new(
                store,
                &id_for_watch,
                task.ready.clone(),
                started,
            ),
            sandbox,
            held: None,
        }))
    }

    /// Gives up on the shell (the store cannot be opened to record it).
    pub(super) fn abort(self) {
        kill_and_reap(&Tree {
            id: &self.id,
            cgroup: self.cgroup.as_ref(),
            group: None,
        });
        if let Some(s) = &self.sandbox {
            s.remove_tmp();
        }
    }
}

/// Bash when there is one (scripts use its syntax), else POSIX sh.
fn shell_path() -> &'static str {
    ["/bin/bash", "/usr/bin/bash", "/usr/local/bin/bash"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/sh")
}
