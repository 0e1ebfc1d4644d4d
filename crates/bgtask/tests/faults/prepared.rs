//! A monitor makes ready what needs no go (its store connection, the
//! task's cgroup) while its starter records the task, so that after the go
//! only the shell's start and its record remain: a server's background
//! `bash` waits for exactly those (issue 17). A starter that dies before
//! its go leaves nothing of it behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::fixture::{is_running, wait_until, Bg};

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The monitor a starter started for `home` and the task id on its
/// command line: the process running `__monitor HOME` that is no longer
/// the starter's child (it leaves the starter's tree first thing; the
/// first process, which exits, is).
fn monitor_of(starter: u32, home: &Path) -> Option<(u32, String)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(starter) || !is_running(pid) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) == Some("__monitor")
            && args.get(2).map(Path::new) == Some(home)
        {
            return Some((pid, args.get(3)?.clone()));
        }
    }
    None
}

/// Whether `pid` has the store's database open.
fn holds_db(pid: u32, home: &Path) -> bool {
    let db = home.join("bgtask.db");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == db))
}

/// The cgroup directory made for task `id`, if there is one (searched in
/// the cgroup filesystem, a few levels deep).
fn cgroup_of(id: &str) -> Option<PathBuf> {
    let name = format!("bgtask-{id}");
    let mut dirs = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name().to_str() == Some(name.as_str()) {
                return Some(entry.path());
            }
            if depth < 4 {
                dirs.push((entry.path(), depth + 1));
            }
        }
    }
    None
}

#[test]
fn a_monitor_waiting_for_go_has_its_store_open_and_leaves_nothing_when_none_comes() {
    let bg = Bg::new();
    bg.run(&["run", "--wait", "30s", "--", "true"]).ok();
    // The starter stops inside the transaction that records the task: its
    // monitor runs and waits for the go.
    let mut starter = bg
        .cmd()
        .env("BGTASK_FAULT", "stop_in_write")
        .args(["run", "--", "echo never"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = starter.id();
    wait_until("run to stop inside its transaction", || {
        state_of(pid) == Some('T')
    });
    let mut found = None;
    wait_until("the starter's monitor", || {
        found = monitor_of(pid, &bg.home);
        found.is_some()
    });
    let (monitor, id) = found.unwrap();
    wait_until("the monitor to open the store before its go", || {
        holds_db(monitor, &bg.home)
    });
    let cgroup = cgroup_of(&id);
    match &cgroup {
        Some(dir) => println!(
            "the monitor made its task's cgroup before the go: {}",
            dir.display()
        ),
        None => println!("no cgroup for the task (cgroups unavailable here)"),
    }
    // The starter dies before its go: nothing was recorded, and the
    // monitor gives up, its cgroup removed.
    starter.kill().unwrap();
    starter.wait().unwrap();
    wait_until("the monitor to give up", || !is_running(monitor));
    assert!(bg.list_all().iter().all(|t| t["task_id"] != id.as_str()));
    if let Some(dir) = cgroup {
        assert!(
            !dir.exists(),
            "the cgroup of a task that never started is removed"
        );
    }
}
