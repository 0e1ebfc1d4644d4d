//! One fixture per test: a temporary home, a session, helpers to run the
//! binary, and cleanup that ends every task the test started.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_bgtask");

pub struct Bg {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub session: String,
}

/// What one CLI invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

impl Bg {
    pub fn new() -> Bg {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().join("home");
        Bg {
            home,
            dir,
            session: "test".into(),
        }
    }

    /// A `bgtask` command with this fixture's home and session.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("BGTASK_HOME", &self.home)
            .env("BGTASK_SESSION", &self.session)
            .env("HOME", self.dir.path())
            .env_remove("BGTASK_MAX_RUNNING")
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.cmd().args(args))
    }

    pub fn run_with(&self, cmd: &mut Command) -> Run {
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("run bgtask");
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// Starts a task and returns its id once its monitor has started it
    /// (`run` returns while the task is still `starting`).
    pub fn spawn(&self, extra: &[&str], command: &str) -> String {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", command]);
        let run = self.run(&args).ok();
        let id = run.stdout.trim().to_owned();
        assert!(id.starts_with("bg-"), "unexpected run output {run:?}");
        wait_until("the task to start", PATIENCE, || {
            self.status(&id)["status"] != "starting"
        });
        id
    }

    pub fn status(&self, id: &str) -> Value {
        self.run(&["status", "--json", id]).ok().json()
    }

    /// Waits for a task to end (the CLI's own event-driven wait).
    pub fn wait(&self, id: &str) -> Value {
        let run = self.run(&["wait", "--json", "--timeout", "60s", id]);
        assert!(
            !run.stderr.contains("timed out waiting"),
            "task {id} did not end: {run:?}"
        );
        run.json()[0].clone()
    }

    /// Path of a marker file in the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn list_all(&self) -> Vec<Value> {
        match self.run(&["list", "--json", "--all-sessions"]).ok().json() {
            Value::Array(tasks) => tasks,
            other => panic!("list is not an array: {other}"),
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if !self.home.join("bgtask.db").exists() {
            return;
        }
        let live = self
            .cmd()
            .args(["list", "--json", "--all-sessions"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok());
        for task in live
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !matches!(
                task["status"].as_str(),
                Some("starting" | "running" | "killing")
            ) {
                continue;
            }
            if let Some(id) = task["task_id"].as_str() {
                let _ = self.cmd().args(["kill", "--grace", "0ms", id]).output();
            }
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const PATIENCE: Duration = Duration::from_secs(30);

/// Whether a process with this pid exists and is not a zombie.
pub fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

/// Pids of processes started for the store at `home`: CLIs, monitors
/// (forked or executed) and task processes all inherit `BGTASK_HOME`.
pub fn pids_of_home(home: &Path) -> Vec<u32> {
    let mut needle = b"BGTASK_HOME=".to_vec();
    needle.extend_from_slice(home.as_os_str().as_encoded_bytes());
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var == needle) && is_running(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The pid of a task's monitor, as recorded in the store.
pub fn monitor_pid(task: &Value) -> u32 {
    task["monitor_pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no monitor pid: {task}")) as u32
}

/// Reads a file the task writes (e.g. a pid), once it exists and is complete.
pub fn read_when_ready(path: &Path) -> String {
    let mut text = String::new();
    wait_until(
        &format!("{} to be written", path.display()),
        PATIENCE,
        || {
            text = std::fs::read_to_string(path).unwrap_or_default();
            text.ends_with('\n')
        },
    );
    text.trim().to_owned()
}

pub fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}
