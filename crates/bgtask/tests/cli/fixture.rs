//! The CLI tests' fixture: the shared one (`../shared/fixture.rs`) and
//! helpers to find and inspect the processes a task runs in.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[path = "../shared/fixture.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared fixture")]
mod shared;
pub use shared::*;

impl Bg {
    /// Starts a task with `bgtask run EXTRA -- COMMAND` and returns its id
    /// once its monitor has started it.
    pub fn spawn(&self, extra: &[&str], command: &str) -> String {
        self.start(self.cmd().arg("run").args(extra).args(["--", command]))
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

/// SIGKILLs every process of the store at `home` until none is left (as
/// at a reboot): a shell that a dying monitor was starting shows up only
/// after the first round.
pub fn kill_every_process_of(home: &Path) {
    wait_until("every process of the store to die", || {
        let pids = pids_of_home(home);
        for pid in &pids {
            kill9(*pid);
        }
        pids.is_empty()
    });
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
    wait_until(&format!("{} to be written", path.display()), || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text.trim().to_owned()
}

pub fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}
