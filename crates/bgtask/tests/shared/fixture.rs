//! What the CLI, serve and fault test binaries share: a temporary home
//! and session per test, helpers to run the real binary against it and
//! start tasks, gates that hold a task until the test lets it go, polling
//! with a deadline, and cleanup that ends every task the test started.
//! (The JSON-RPC client for the servers is `client.rs` beside it.)
//! Each binary includes this file in its own `fixture` module and adds
//! what only it needs.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_bgtask");

/// Environment variables that change bgtask's settings (`bgtask config`).
const SETTING_VARS: &[&str] = &[
    "BGTASK_CONFIG",
    "BGTASK_MAX_RUNNING",
    "BGTASK_TIMEOUT",
    "BGTASK_IDLE_TIMEOUT",
    "BGTASK_MAX_OUTPUT",
    "BGTASK_AGENT_TIMEOUT",
    "BGTASK_AGENT_IDLE_TIMEOUT",
    "BGTASK_AGENT_MAX_OUTPUT",
    "BGTASK_SANDBOX",
    "BGTASK_AGENT_SANDBOX",
    "BGTASK_AGENT_NO_NETWORK",
    "BGTASK_SANDBOX_REQUIRE_ABI",
    "BGTASK_EXECUTOR",
];

/// How long any wait for the server or a task may take before the test
/// fails: generous, since it only matters when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(30);

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
        // Settings the user's environment may hold must not reach a test.
        for name in SETTING_VARS {
            cmd.env_remove(name);
        }
        cmd.env("BGTASK_HOME", &self.home)
            .env("BGTASK_SESSION", &self.session)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.config_dir())
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Where this fixture's `config.toml` goes (`bgtask/config.toml`
    /// under it): never the user's.
    pub fn config_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("config")
    }

    /// Writes this fixture's `config.toml`.
    pub fn write_config(&self, text: &str) {
        let dir = self.config_dir().join("bgtask");
        std::fs::create_dir_all(&dir).expect("config dir");
        std::fs::write(dir.join("config.toml"), text).expect("config.toml");
    }

    /// The same command acting for another session.
    pub fn cmd_in(&self, session: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.env("BGTASK_SESSION", session);
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

    /// Runs `bgtask run …` (without `--json` or `--wait`) and returns the
    /// id it prints, as soon as it returns (the task may still be
    /// `starting`).
    #[track_caller]
    pub fn run_id(&self, run: &mut Command) -> String {
        let run = self.run_with(run).ok();
        let id = run.stdout.trim().to_owned();
        assert!(id.starts_with("bg-"), "unexpected run output {run:?}");
        id
    }

    /// Runs `bgtask run …` and returns the task's id once its monitor has
    /// started it (`run` returns while the task is still `starting`).
    pub fn start(&self, run: &mut Command) -> String {
        let id = self.run_id(run);
        wait_until("the task to start", || {
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

    /// Path of a file in the test's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Every task in the store, all sessions.
    pub fn list_all(&self) -> Vec<Value> {
        match self.run(&["list", "--json", "--all-sessions"]).ok().json() {
            Value::Array(tasks) => tasks,
            other => panic!("list is not an array: {other}"),
        }
    }
}

/// A file a task waits for, so the test decides when it ends.
pub struct Gate {
    path: PathBuf,
}

impl Bg {
    /// A gate named `name`: tasks that run [`Gate::hold`] wait until the
    /// test calls [`Gate::open`].
    pub fn gate(&self, name: &str) -> Gate {
        Gate {
            path: self.path(&format!("gate-{name}")),
        }
    }
}

impl Gate {
    /// Shell code that returns once the gate is open.
    pub fn hold(&self) -> String {
        format!(
            "until [ -e '{}' ]; do sleep 0.02; done",
            self.path.display()
        )
    }

    pub fn open(&self) {
        std::fs::write(&self.path, b"").expect("open the gate");
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if !self.home.join("bgtask.db").exists() {
            return;
        }
        // Not `list_all`: a panic here would hide the test's own failure.
        let listed = self
            .cmd()
            .args(["list", "--json", "--all-sessions"])
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok());
        let live = listed
            .as_ref()
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|t| is_live(t))
            .filter_map(|t| t["task_id"].as_str());
        for id in live {
            let _ = self.cmd().args(["kill", "--grace", "0ms", id]).output();
        }
    }
}

/// Whether a task object is in a live status.
pub fn is_live(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("queued" | "starting" | "running" | "paused" | "killing")
    )
}

/// Polls `cond` every 20 ms until it holds or [`PATIENCE`] passes.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
