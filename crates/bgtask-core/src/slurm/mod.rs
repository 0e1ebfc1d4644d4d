//! The Slurm engine's inside: the commands bgtask runs against a cluster
//! (`sbatch`, `squeue`, `scancel`, found on PATH), the batch script it
//! submits, the mapping of a job's final state to a task's end, the store's
//! watcher process (`watch.rs`) and the wrapper that runs the command on
//! the compute node (`job.rs`). `executor/slurm.rs` puts them behind the
//! `Executor` interface.
//!
//! Facts this relies on (Slurm 22.05; see docs/slurm.md): `sbatch
//! --parsable` answers the job id; `squeue -t all -j A,B` shows finished
//! jobs until MinJobAge (300 s by default) with the raw wait status in
//! `exit_code`; no end-of-job event reaches an ordinary user, so the
//! watcher polls, once per interval for every job of the store.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::process::Signal;
use crate::task::{Outcome, Status, TaskId};

pub mod job;
pub mod watch;

/// Hidden first argument: the store's watcher (`watch.rs`).
pub const WATCH_ARG: &str = "__slurm_watch";
/// Hidden first argument: the wrapper inside a job (`job.rs`).
pub const JOB_ARG: &str = "__slurm_job";
/// Grace between SIGTERM and SIGKILL when a job's own timeout fires.
pub const GRACE_MS: u64 = 2_000;

/// Runs a hidden mode of the binary if `args[1]` names one; its exit code.
pub fn hidden_mode(args: &[std::ffi::OsString]) -> Option<u8> {
    let mode = args.get(1)?;
    if mode == WATCH_ARG {
        let home = PathBuf::from(args.get(2)?);
        return Some(watch::run(&home));
    }
    if mode == JOB_ARG {
        return Some(job::run(&args[2..]));
    }
    None
}

/// Everything a submission needs.
pub struct Submission<'a> {
    pub id: &'a TaskId,
    pub home: &'a Path,
    pub cwd: &'a Path,
    pub command: &'a str,
    pub exe: &'a Path,
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub max_output: u64,
    pub slurm_args: &'a [String],
    pub env: &'a [(String, String)],
}

/// The file a job's wrapper writes its end into (`job.rs`), beside the
/// task's output: it tells a timeout from an exit code 124, and outlives
/// the controller's memory of the job.
pub fn end_path(home: &Path, id: &TaskId) -> PathBuf {
    crate::store::output_dir(home).join(format!("{id}.end"))
}

/// An sbatch started with the task's flags and environment, waiting for
/// its batch script on stdin. Nothing is submitted before the script's end:
/// sbatch reads the whole script (it parses `#SBATCH` lines in it) before it
/// loads a credential or contacts the controller (checked with strace on
/// Slurm 22.05: no munge or slurmctld connection before stdin's EOF). So a
/// starter starts it before recording the task, and sbatch's own start
/// (exec, libraries, slurm.conf) runs while the task is recorded; the
/// submission itself still comes after the record.
///
/// Dropped without [`PendingSubmit::submit`] (the record failed, or was
/// never made), sbatch is killed before it reads an end, and submits
/// nothing. A starter that dies meanwhile closes the pipe with an empty
/// script, which sbatch refuses.
pub struct PendingSubmit {
    child: Option<std::process::Child>,
    script: String,
}

/// Starts sbatch for the task's batch script (see [`PendingSubmit`]).
///
/// The job is named after the task (the tag that finds it again if this
/// process dies before the id is recorded), never requeued (a requeued job
/// runs twice and truncates the first run's output), and its script is
/// our own `#!/bin/bash` on stdin (`--wrap` would use /bin/sh). The task's
/// environment goes in sbatch's environment, which the job inherits
/// (`--export=ALL`): never on a command line.
pub fn start_submit(sub: &Submission<'_>) -> Result<PendingSubmit> {
    let err_path = crate::store::stderr_path(sub.home, sub.id);
    let mut cmd = Command::new("sbatch");
    cmd.args(sub.slurm_args)
        .arg("--parsable")
        .arg("--no-requeue")
        .arg(format!("--job-name={}", sub.id))
        .arg(format!("--comment=bgtask {}", sub.id))
        .arg(format!("--chdir={}", sub.cwd.display()))
        .arg("--output=/dev/null")
        .arg(format!("--error={}", err_path.display()))
        .arg("--open-mode=append")
        .arg("--export=ALL");
    if let Some(ms) = sub.timeout_ms {
        // A backstop only: the wrapper ends the task to the second. Slurm
        // counts whole minutes and checks about every 30 s.
        let minutes = (ms + GRACE_MS).div_ceil(60_000) + 1;
        cmd.arg(format!("--time={minutes}"));
    }
    cmd.envs(sub.env.iter().map(|(k, v)| (k, v)))
        .env(crate::process::TASK_MARKER, sub.id.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .map_err(|e| Error::SpawnFailed(format!("cannot run sbatch: {e}")))?;
    Ok(PendingSubmit {
        child: Some(child),
        script: batch_script(sub),
    })
}

impl PendingSubmit {
    /// Submits: writes the batch script and closes sbatch's stdin, then
    /// waits for its answer; the job id.
    pub fn submit(mut self) -> Result<String> {
        let Some(mut child) = self.child.take() else {
            return Err(Error::SpawnFailed("sbatch was already used".into()));
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(self.script.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::SpawnFailed(format!("sbatch: {e}")))?;
        if !out.status.success() {
            return Err(Error::SpawnFailed(format!(
                "sbatch refused the job: {}",
                one_line(&out.stderr)
            )));
        }
        // `--parsable` prints `id` or `id;cluster`.
        let text = String::from_utf8_lossy(&out.stdout);
        let job_id = text.trim().split(';').next().unwrap_or("").to_owned();
        if job_id.is_empty() || !job_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::SpawnFailed(format!(
                "sbatch answered no job id: {}",
                one_line(&out.stdout)
            )));
        }
        Ok(job_id)
    }
}

impl Drop for PendingSubmit {
    fn drop(&mut self) {
        // Killed while it still waits for the script's end: nothing is
        // submitted (its stdin closes only after the kill).
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The batch script: the wrapper (`bgtask __slurm_job`) when bgtask is
/// installed on the node (cap on the output, both timeouts to the
/// second); otherwise plain bash, with `timeout` for the hard limit and
/// the output appended uncapped (docs/slurm.md).
fn batch_script(sub: &Submission<'_>) -> String {
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let limit = |v: Option<u64>| v.map_or("-".to_owned(), |ms| ms.to_string());
    let out = crate::store::stdout_path(sub.home, sub.id);
    let end = end_path(sub.home, sub.id);
    let run = match sub.timeout_ms {
        Some(ms) => format!(
            "timeout -k {} {}s bash -c {}",
            GRACE_MS / 1000,
            ms.div_ceil(1000),
            shell_quote(sub.command)
        ),
        None => format!("bash -c {}", shell_quote(sub.command)),
    };
    let timed_out = match sub.timeout_ms {
        Some(ms) => format!("[ $rc = 124 ] && echo 'timeout {ms}' > {}\n", q(&end)),
        None => String::new(),
    };
    format!(
        "#!/bin/bash\n\
         # bgtask task {id}\n\
         exe={exe}\n\
         if [ -x \"$exe\" ]; then\n  \
           exec \"$exe\" {JOB_ARG} {home} {id} {cwd} {timeout} {idle} {max} {command}\n\
         fi\n\
         # bgtask is not installed on this node: output uncapped, no idle timeout.\n\
         exec >>{out} 2>>{err}\n\
         cd {cwd} || exit 1\n\
         {run}\n\
         rc=$?\n\
         {timed_out}\
         exit $rc\n",
        id = sub.id,
        exe = q(sub.exe),
        home = q(sub.home),
        cwd = q(sub.cwd),
        timeout = limit(sub.timeout_ms),
        idle = limit(sub.idle_timeout_ms),
        max = sub.max_output,
        command = shell_quote(sub.command),
        out = q(&out),
        err = q(&crate::store::stderr_path(sub.home, sub.id)),
    )
}

/// Finds the job a task was submitted as, by its tag (the job name), for
/// a starter that died between submitting and recording the id. `Ok(None)`:
/// the controller knows no such job.
pub fn find_by_tag(id: &TaskId) -> Result<Option<String>> {
    let out = squeue(&["-t", "all", "-h", "-n", id.as_str(), "-o", "%i"])?;
    Ok(out
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_owned))
}

/// Cancels a job (running or pending). Slurm sends SIGTERM to the job's
/// processes, SIGKILL after the cluster's KillWait.
pub fn cancel(job_id: &str) -> bool {
    Command::new("scancel")
        .arg(job_id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What the controller says of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobState {
    /// PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT, …
    pub state: String,
    /// The batch script's raw wait status (`exit_code` of squeue).
    pub wait_status: i32,
}

/// The state of every job in `ids`, in one `squeue` call. A job missing
/// from the answer is unknown to the controller (purged after MinJobAge,
/// or never submitted). `Err`: the controller cannot be reached; nothing
/// is known.
pub fn query(ids: &[&str]) -> Result<HashMap<String, JobState>> {
    let list = ids.join(",");
    let out = match squeue(&[
        "-t",
        "all",
        "-h",
        "-j",
        &list,
        "-O",
        "JobID:|,State:|,exit_code:|",
    ]) {
        Ok(out) => out,
        // Every job of the list is unknown (squeue fails only then).
        Err(Error::Unreachable(m)) if m.contains("Invalid job id") => String::new(),
        Err(e) => return Err(e),
    };
    let mut states = HashMap::new();
    for line in out.lines() {
        let mut fields = line.split('|').map(str::trim);
        let (Some(id), Some(state), Some(code)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        states.insert(
            id.to_owned(),
            JobState {
                state: state.to_owned(),
                wait_status: code.parse().unwrap_or(0),
            },
        );
    }
    Ok(states)
}

fn squeue(args: &[&str]) -> Result<String> {
    let out = Command::new("squeue")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Unreachable(format!("cannot run squeue: {e}")))?;
    if !out.status.success() {
        return Err(Error::Unreachable(format!(
            "squeue failed: {}",
            one_line(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// States in which the job has not ended.
pub fn is_pending(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD"
    )
}

/// States in which the job runs (or winds down).
pub fn is_running(state: &str) -> bool {
    matches!(
        state,
        "RUNNING" | "COMPLETING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT" | "RESIZING"
    )
}

/// The end the job's wrapper recorded (`job.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrapperEnd {
    pub outcome: Outcome,
    pub dropped: u64,
    /// When the command started (ms since the epoch), if written.
    pub started_at: Option<i64>,
}

/// Reads the wrapper's end file; `None` if it wrote none.
pub fn read_end(home: &Path, id: &TaskId) -> Option<WrapperEnd> {
    let text = std::fs::read_to_string(end_path(home, id)).ok()?;
    let mut outcome = None;
    let mut dropped = 0;
    let mut started_at = None;
    for line in text.lines() {
        let (key, value) = line.split_once(' ')?;
        let n: i64 = value.trim().parse().ok()?;
        match key {
            "exit" => outcome = Some(Outcome::Exited(n as i32)),
            "signal" => outcome = Some(Outcome::Signaled(Signal::from_number(n as i32))),
            "timeout" => outcome = Some(Outcome::TimedOut { after_ms: n as u64 }),
            "idle" => outcome = Some(Outcome::IdleTimedOut { after_ms: n as u64 }),
            "dropped" => dropped = n.max(0) as u64,
            "started" => started_at = Some(n),
            _ => {}
        }
    }
    Some(WrapperEnd {
        outcome: outcome?,
        dropped,
        started_at,
    })
}

/// The task's end for a job in a final state, or `None` while it has not
/// ended. `status` is the task's recorded status (a cancel bgtask asked for
/// is `killing`); `wrapper` what the job's wrapper wrote, which wins for a
/// job that ended by itself (it tells a timeout from an exit code 124).
pub fn outcome(
    job: &JobState,
    status: Status,
    timeout_ms: Option<u64>,
    wrapper: Option<&WrapperEnd>,
) -> Option<Outcome> {
    let state = job.state.as_str();
    if is_pending(state) || is_running(state) {
        return None;
    }
    Some(match state {
        "COMPLETED" | "FAILED" => match wrapper {
            Some(end) => end.outcome.clone(),
            None => from_wait_status(job.wait_status),
        },
        "CANCELLED" if status == Status::Killing => Outcome::Killed(Signal::Term),
        "CANCELLED" => Outcome::Lost("cancelled by the scheduler".to_owned()),
        "TIMEOUT" => Outcome::TimedOut {
            after_ms: timeout_ms.unwrap_or(0),
        },
        // NODE_FAIL, OUT_OF_MEMORY, PREEMPTED, BOOT_FAIL, DEADLINE, …
        other => Outcome::Lost(format!("the Slurm job ended {other}")),
    })
}

/// A batch script's raw wait status as an outcome.
fn from_wait_status(status: i32) -> Outcome {
    let signal = status & 0x7f;
    if signal != 0 {
        Outcome::Signaled(Signal::from_number(signal))
    } else {
        Outcome::Exited((status >> 8) & 0xff)
    }
}

/// POSIX shell quoting: single quotes, `'` written `'\''`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.trim().lines().last().unwrap_or("").trim();
    crate::output::str_tail(line, 300).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: &str, wait_status: i32) -> JobState {
        JobState {
            state: state.into(),
            wait_status,
        }
    }

    #[test]
    fn final_states_map_as_the_issue_says() {
        let run = Status::Running;
        assert_eq!(outcome(&job("RUNNING", 0), run, None, None), None);
        assert_eq!(outcome(&job("PENDING", 0), run, None, None), None);
        assert_eq!(
            outcome(&job("COMPLETED", 0), run, None, None),
            Some(Outcome::Exited(0))
        );
        assert_eq!(
            outcome(&job("FAILED", 3 << 8), run, None, None),
            Some(Outcome::Exited(3))
        );
        assert_eq!(
            outcome(&job("FAILED", 9), run, None, None),
            Some(Outcome::Signaled(Signal::Kill))
        );
        assert_eq!(
            outcome(&job("CANCELLED", 15), Status::Killing, None, None),
            Some(Outcome::Killed(Signal::Term))
        );
        assert_eq!(
            outcome(&job("CANCELLED", 0), run, None, None),
            Some(Outcome::Lost("cancelled by the scheduler".into()))
        );
        assert_eq!(
            outcome(&job("TIMEOUT", 0), run, Some(5000), None),
            Some(Outcome::TimedOut { after_ms: 5000 })
        );
        for state in [
            "NODE_FAIL",
            "OUT_OF_MEMORY",
            "PREEMPTED",
            "BOOT_FAIL",
            "DEADLINE",
        ] {
            let end = outcome(&job(state, 0), run, None, None).unwrap().into_end();
            assert_eq!(end.status, Status::Failed);
            assert!(end.reason.unwrap().contains(state));
        }
        // The wrapper's word wins for a job that ended by itself.
        let wrapper = WrapperEnd {
            outcome: Outcome::TimedOut { after_ms: 1000 },
            dropped: 0,
            started_at: None,
        };
        assert_eq!(
            outcome(&job("FAILED", 124 << 8), run, None, Some(&wrapper)),
            Some(Outcome::TimedOut { after_ms: 1000 })
        );
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
