//! Running bgtask under measurement: locating (or building) the binary,
//! private temporary stores, whole-process timings, finding a store's
//! monitor processes in /proc and killing every task a store still has.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use bgtask_core::{Config, ListRequest, Service};

/// Session every benchmark store uses.
pub const SESSION: &str = "bench";
/// Pause before each measured iteration, so every run starts from a quiet
/// machine (as a person's or an agent's commands do) rather than on the
/// heels of the previous task's teardown.
pub const SETTLE: Duration = Duration::from_millis(20);

/// The bgtask binary under test.
pub struct Bgtask {
    pub exe: PathBuf,
    pub version: String,
}

/// Builds the release bgtask (a no-op when it is up to date), so the binary
/// measured is the source checked out. Cargo puts it beside this bench
/// binary (`target/<triple>/release/`, see `.cargo/config.toml`).
pub fn build_bgtask(root: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe()
        .context("cannot locate the bench binary")?
        .with_file_name("bgtask");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("== building bgtask (cargo build --release -p bgtask)");
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "bgtask"])
        .current_dir(root)
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ if exe.exists() => eprintln!("bench: build failed; using the existing {}", exe.display()),
        _ => bail!("cannot build bgtask; pass --bgtask PATH"),
    }
    Ok(exe)
}

impl Bgtask {
    pub fn new(exe: PathBuf) -> Result<Bgtask> {
        let exe = std::fs::canonicalize(&exe)
            .with_context(|| format!("no bgtask binary at {}", exe.display()))?;
        let out = Command::new(&exe).arg("--version").output()?;
        if !out.status.success() {
            bail!("{} --version failed", exe.display());
        }
        Ok(Bgtask {
            version: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            exe,
        })
    }

    /// A new, empty store in a temporary directory.
    pub fn home(&self) -> Result<Home> {
        let dir = tempfile::Builder::new().prefix("bgtask-bench-").tempdir()?;
        Ok(Home {
            store: dir.path().join("home"),
            dir,
            exe: self.exe.clone(),
        })
    }
}

/// A private store. Dropping it ends every task it still has.
pub struct Home {
    dir: TempDir,
    store: PathBuf,
    exe: PathBuf,
}

impl Home {
    pub fn path(&self) -> &Path {
        &self.store
    }

    /// A scratch directory beside the store (stamps, fifos, files).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }

    /// `bgtask ARGS` against this store, stdin closed, stdout captured.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .env("BGTASK_HOME", &self.store)
            .env("BGTASK_SESSION", SESSION)
            .env("BGTASK_MAX_RUNNING", "2000")
            .env_remove("BGTASK_LOG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `bgtask ARGS`, which must succeed; returns its stdout.
    pub fn run_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cmd(args).output()?;
        check(&out, args)?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Starts a task and returns its id.
    pub fn start(&self, extra: &[&str], command: &str) -> Result<String> {
        let mut args = vec!["run"];
        args.extend_from_slice(extra);
        args.extend(["--", command]);
        self.run_ok(&args)
    }

    /// The engine itself, in this process, acting on this store.
    pub fn service(&self) -> Result<Service> {
        Ok(Service::open(Config {
            home: self.store.clone(),
            session: SESSION.into(),
            max_running: 2000,
            monitor_exe: self.exe.clone(),
            tasks: bgtask_core::TaskDefaults::AGENT,
            sandbox: bgtask_core::sandbox::SandboxConfig::default(),
            executor: bgtask_core::Engine::Local,
        })?)
    }

    /// Pids of the monitors of this store's live tasks, as recorded in the
    /// store (a monitor forked by `bgtask run` carries the starter's
    /// command line, so it cannot be found by its own), that still run.
    pub fn monitors(&self) -> Vec<u32> {
        let all = ListRequest {
            all_sessions: true,
            ..ListRequest::default()
        };
        let Ok(tasks) = self.service().and_then(|s| Ok(s.list(&all)?)) else {
            return Vec::new();
        };
        tasks
            .iter()
            .filter(|t| !t.is_terminal())
            .filter_map(|t| t.monitor_pid)
            .filter(|pid| is_running(*pid))
            .collect()
    }

    /// Ends every task of this store: SIGTERM to each monitor (which kills
    /// its task's tree and records the end), SIGKILL to any monitor still
    /// there after `patience`. Returns how long until all monitors were gone.
    pub fn stop_all(&self, patience: Duration) -> Duration {
        let started = Instant::now();
        let mut monitors = self.monitors();
        for pid in &monitors {
            signal(*pid, rustix::process::Signal::TERM);
        }
        loop {
            monitors.retain(|pid| is_running(*pid));
            if monitors.is_empty() {
                break;
            }
            if started.elapsed() > patience {
                for pid in monitors {
                    // The task's shell dies with its monitor (PDEATHSIG).
                    signal(pid, rustix::process::Signal::KILL);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        started.elapsed()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        self.stop_all(Duration::from_secs(10));
    }
}

/// Whether `pid` exists and has not exited (a zombie has).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        !matches!(state, Some('Z' | 'X'))
    })
}

pub fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

fn check(out: &Output, args: &[&str]) -> Result<()> {
    if !out.status.success() {
        bail!(
            "bgtask {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs `cmd` to completion and returns its wall time in milliseconds,
/// from just before the spawn to its reaping, with its output. stdout and
/// stderr are pipes read to the end.
pub fn time(cmd: &mut Command) -> Result<(f64, Output)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd.spawn()?.wait_with_output()?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    Ok((ms, out))
}

/// Like `time`, but the command must succeed.
pub fn time_ok(cmd: &mut Command) -> Result<(f64, String)> {
    let (ms, out) = time(cmd)?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// `sh -c true`, timed the same way as a bgtask command.
pub fn time_sh_true() -> Result<f64> {
    time_shell_true("sh")
}

/// `SHELL -c true`, spawned and reaped, in milliseconds.
pub fn time_shell_true(shell: &str) -> Result<f64> {
    Ok(time_ok(
        Command::new(shell)
            .args(["-c", "true"])
            .stdin(Stdio::null()),
    )?
    .0)
}

/// Waits until thread `tid` of process `pid` sleeps in poll(2) (bgtask's
/// waiters do), so a measurement starts with the observer idle.
pub fn wait_until_polling(pid: u32, tid: Option<u32>) -> Result<()> {
    let dir = match tid {
        Some(tid) => format!("/proc/{pid}/task/{tid}"),
        None => format!("/proc/{pid}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut wchan = String::new();
        if let Ok(mut f) = std::fs::File::open(format!("{dir}/wchan")) {
            let _ = f.read_to_string(&mut wchan);
        }
        if wchan.contains("poll") {
            return Ok(());
        }
        if wchan.trim() == "0" {
            // This kernel hides wait channels: settle for a short pause.
            std::thread::sleep(Duration::from_millis(50));
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{dir} never slept in poll (wchan {wchan:?})");
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// The thread of `pid` whose name is `name`.
pub fn thread_named(pid: u32, name: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

/// Reads `key:` (in kB) from a /proc status-like file, as MiB.
pub fn proc_kib_field(path: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the name: field 3 is index 0, so utime (14) and stime (15)
    // are indexes 11 and 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Extracts `"task_id":"…"` from one line of JSON.
pub fn json_task_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("task_id")?.as_str().map(str::to_owned)
}

/// The 1-minute load average, as /proc/loadavg shows it (the machines are
/// shared: a report says how loaded they were).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
