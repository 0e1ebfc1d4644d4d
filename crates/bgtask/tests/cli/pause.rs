//! `bgtask pause` and `bgtask resume` (issue 21): a paused task's whole
//! tree is held stopped (the cgroup freezer, or SIGSTOP when the task has
//! no cgroup: `BGTASK_NO_CGROUP=1` in the starter's environment forces
//! that path), nothing it wrote is lost, it writes nothing while paused,
//! its timeouts wait, and it can be killed or end while paused.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::fixture::*;

/// Which way the monitor holds the tree.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Hold {
    Freezer,
    Sigstop,
}

impl Hold {
    /// `bgtask run` with the environment that picks this path.
    fn run(self, bg: &Bg) -> Command {
        let mut cmd = bg.cmd();
        if self == Hold::Sigstop {
            cmd.env("BGTASK_NO_CGROUP", "1");
        }
        cmd.arg("run");
        cmd
    }
}

/// The task's processes: every process whose environment carries its
/// marker.
fn task_pids(id: &str) -> Vec<u32> {
    let marker = format!("BGTASK_TASK_ID={id}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes()) && is_running(pid) {
            pids.push(pid);
        }
    }
    pids
}

fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The cgroup v2 directory process `pid` is in.
fn cgroup_dir(pid: u32) -> Option<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4))?
    })?;
    Some(Path::new(mount).join(rel.trim_start_matches('/')))
}

/// Whether the task is held the way `path` holds it: its cgroup reports
/// `frozen 1`, or each of its processes is stopped (`T`).
fn is_held(id: &str, path: Hold) -> bool {
    let pids = task_pids(id);
    assert!(!pids.is_empty(), "task {id} has no processes");
    match path {
        Hold::Freezer => pids.iter().all(|pid| {
            cgroup_dir(*pid).is_some_and(|dir| {
                std::fs::read_to_string(dir.join("cgroup.events"))
                    .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
            })
        }),
        Hold::Sigstop => pids.iter().all(|pid| state_of(*pid) == Some('T')),
    }
}

/// Whether this machine gives tasks a cgroup (else the freezer path
/// cannot be tested here; CI runs as root with cgroup v2).
fn has_task_cgroups(id: &str) -> bool {
    task_pids(id)
        .iter()
        .all(|pid| cgroup_dir(*pid).is_some_and(|d| d.ends_with(format!("bgtask-{id}"))))
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn lines_of(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Each of three children writes `cN K` for K = 1, 2, … every 10 ms until
/// the file `stop` exists, then `end cN K` with its last K.
fn writers(stop: &Path) -> String {
    format!(
        "for i in 1 2 3; do (n=0; while [ ! -e '{}' ]; do n=$((n+1)); echo \"c$i $n\"; \
         sleep 0.01; done; echo \"end c$i $n\") & done; wait",
        stop.display()
    )
}

/// Every child's counters are all there, in order, from 1 to its end.
fn assert_nothing_lost(output: &str) {
    for child in 1..=3 {
        let name = format!("c{child}");
        let counts: Vec<u64> = output
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(|n| n.parse().unwrap())
            .collect();
        let last = output
            .lines()
            .find_map(|l| l.strip_prefix(&format!("end {name} ")))
            .unwrap_or_else(|| panic!("no end line of {name} in {output}"));
        let expected: Vec<u64> = (1..=last.parse().unwrap()).collect();
        assert_eq!(counts, expected, "{name} lost or reordered output");
    }
}

fn pause_and_resume_a_tree_that_writes(path: Hold) {
    let bg = Bg::new();
    let stop = bg.path("stop");
    let id = bg.start(path.run(&bg).args(["--", &writers(&stop)]));
    if path == Hold::Freezer && !has_task_cgroups(&id) {
        println!("skipped: tasks get no cgroup v2 here (the SIGSTOP test covers the fallback)");
        return;
    }
    let out = bg.home.join("out").join(format!("{id}.out"));
    wait_until("every child to write", || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (1..=3).all(|c| text.contains(&format!("c{c} 3\n")))
    });

    let paused = bg.run(&["pause", "--json", &id]).ok().json();
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(paused["paused_at"].as_i64().is_some(), "{paused}");
    assert!(is_held(&id, path), "the tree is not held by {path:?}");
    let held_size = size(&out);
    // The window: another task of the same shape, not paused, writes 20
    // lines. Had the paused one run, it would have written too.
    let clock = bg.spawn(
        &[],
        "n=0; while :; do n=$((n+1)); echo $n; sleep 0.01; done",
    );
    let clock_out = bg.home.join("out").join(format!("{clock}.out"));
    wait_until("the clock task to write 20 lines", || {
        lines_of(&clock_out) >= 20
    });
    assert_eq!(size(&out), held_size, "a paused task wrote output");
    assert!(is_held(&id, path), "the tree was let go while paused");
    assert_eq!(bg.status(&id)["status"], "paused");

    let resumed = bg.run(&["resume", "--json", &id]).ok().json();
    assert_eq!(resumed["status"], "running", "{resumed}");
    assert_eq!(resumed["paused_at"], Value::Null);
    wait_until("output after the resume", || size(&out) > held_size);
    std::fs::write(&stop, b"").unwrap();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "completed", "{ended}");
    assert_nothing_lost(&std::fs::read_to_string(&out).unwrap());
}

#[test]
fn a_paused_tree_is_frozen_writes_nothing_and_loses_nothing() {
    pause_and_resume_a_tree_that_writes(Hold::Freezer);
}

#[test]
fn without_a_cgroup_a_paused_tree_is_stopped_writes_nothing_and_loses_nothing() {
    pause_and_resume_a_tree_that_writes(Hold::Sigstop);
}

/// A task with a limit of 1 s, paused for longer than that: not timed
/// out while paused, then timed out after about the rest of its second.
fn a_timeout_waits_while_paused(flag: &str, reason: &str) {
    let bg = Bg::new();
    let id = bg.spawn(&[flag, "1s"], "sleep 60");
    let paused = bg.run(&["pause", "--json", &id]).ok().json();
    let started = paused["started_at"].as_i64().unwrap();
    let paused_at = paused["paused_at"].as_i64().unwrap();
    // Twice the limit passes while it is paused.
    wait_until("twice the timeout to pass", || {
        bgtask_core::now_ms() >= paused_at + 2_000
    });
    assert_eq!(bg.status(&id)["status"], "paused");
    let resumed_at = bgtask_core::now_ms();
    bg.run(&["resume", &id]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "timed_out", "{ended}");
    assert_eq!(ended["reason"], reason, "{ended}");
    // It ran its full second outside the pause: the end comes no earlier
    // than the limit plus the time paused (less what the pause itself
    // took to be carried out: well under 200 ms).
    let finished = ended["finished_at"].as_i64().unwrap();
    let paused_for = resumed_at - paused_at;
    assert!(
        finished - started >= 1_000 + paused_for - 200,
        "ended {} ms after its start, paused for {paused_for} ms",
        finished - started
    );
}

#[test]
fn the_hard_timeout_does_not_run_while_paused() {
    a_timeout_waits_while_paused("--timeout", "timeout after 1s");
}

#[test]
fn nothing_counts_as_idle_while_paused() {
    a_timeout_waits_while_paused("--idle-timeout", "idle timeout: no output for 1s");
}

#[test]
fn a_paused_task_is_killed_and_sees_the_sigterm() {
    for path in [Hold::Freezer, Hold::Sigstop] {
        let bg = Bg::new();
        let id = bg.start(path.run(&bg).args([
            "--",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ]));
        let out = bg.home.join("out").join(format!("{id}.out"));
        wait_until("the trap to be set", || size(&out) > 0);
        bg.run(&["pause", &id]).ok();
        let killed = bg
            .run(&["kill", "--json", "--grace", "20s", &id])
            .ok()
            .json();
        assert_eq!(killed["status"], "killed", "{path:?}: {killed}");
        assert_eq!(killed["signal"], "SIGTERM", "{path:?}: {killed}");
        // It ran again after the signal: its trap wrote.
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("got TERM"), "{path:?}: {text}");
        assert!(
            task_pids(&id).is_empty(),
            "{path:?}: processes outlived the kill"
        );
    }
}

#[test]
fn a_task_killed_from_outside_while_paused_ends_as_it_died() {
    for path in [Hold::Freezer, Hold::Sigstop] {
        let bg = Bg::new();
        let id = bg.start(path.run(&bg).args(["--", "sleep 300 & wait"]));
        let paused = bg.run(&["pause", "--json", &id]).ok().json();
        let shell = paused["pid"].as_u64().unwrap() as u32;
        kill9(shell);
        let ended = bg.wait(&id);
        assert_eq!(ended["status"], "failed", "{path:?}: {ended}");
        assert_eq!(ended["signal"], "SIGKILL", "{path:?}: {ended}");
        assert!(
            task_pids(&id).is_empty(),
            "{path:?}: the sleep outlived its task"
        );
    }
}

#[test]
fn pause_and_resume_refuse_what_their_status_does_not_allow() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let not_paused = bg.run(&["resume", &id]);
    assert_eq!(not_paused.code, 4, "{not_paused:?}");
    assert_eq!(
        not_paused.stderr,
        format!("bgtask: task {id} is running, not paused: nothing to resume\n")
    );
    bg.run(&["pause", &id]).ok();
    let again = bg.run(&["pause", &id]);
    assert_eq!(again.code, 4, "{again:?}");
    assert_eq!(
        again.stderr,
        format!("bgtask: task {id} is already paused\n")
    );
    // SIGCONT would let it run while recorded paused: only resume undoes a pause.
    for cont in ["CONT", "SIGCONT", "18"] {
        let sent = bg.run(&["signal", &id, cont]);
        assert_eq!(sent.code, 4, "{sent:?}");
        assert_eq!(
            sent.stderr,
            format!("bgtask: task {id} is paused: resume it with `bgtask resume {id}` (serve: bash_resume), not with SIGCONT\n")
        );
    }
    assert_eq!(bg.status(&id)["status"], "paused");
    bg.run(&["kill", &id]).ok();
    for verb in ["pause", "resume"] {
        let ended = bg.run(&[verb, &id]);
        assert_eq!(ended.code, 4, "{ended:?}");
        assert!(ended.stderr.contains("has ended (killed)"), "{ended:?}");
        assert_eq!(ended.stderr.lines().count(), 1, "{ended:?}");
    }
    let unknown = bg.run(&["pause", "bg-0123456789abcdef"]);
    assert_eq!(unknown.code, 3, "{unknown:?}");
    let missing = bg.run(&["pause"]);
    assert_eq!(missing.code, 2, "{missing:?}");
    // A bad id among good ones changes nothing.
    let other = bg.spawn(&[], "exec sleep 300");
    let mixed = bg.run(&["pause", &other, "nope"]);
    assert_ne!(mixed.code, 0, "{mixed:?}");
    assert_eq!(bg.status(&other)["status"], "running");
}

#[test]
fn a_slurm_task_is_refused() {
    let bg = Bg::new();
    // Without Slurm here the task is recorded failed at once; the refusal
    // comes before its status is looked at.
    let run = bg.run_with(
        bg.cmd()
            .env("BGTASK_EXECUTOR", "slurm")
            .env("PATH", "/nonexistent")
            .args(["run", "--", "true"]),
    );
    let Some(id) = run.stdout.split_whitespace().find(|w| w.starts_with("bg-")) else {
        println!("skipped: a Slurm task could not be recorded here: {run:?}");
        return;
    };
    let refused = bg.run(&["pause", id]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("executor slurm"), "{refused:?}");
}

#[test]
fn a_pause_whose_requester_dies_after_recording_it_is_still_carried_out() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let run = bg.run_with(
        bg.cmd()
            .env("BGTASK_FAULT", "pause_after_request")
            .args(["pause", &id]),
    );
    assert_eq!(
        run.code, -1,
        "the requester must die at the fault point: {run:?}"
    );
    // The next command that looks at the task tells its monitor.
    assert_eq!(bg.status(&id)["status"], "paused");
    let path = if has_task_cgroups(&id) {
        Hold::Freezer
    } else {
        Hold::Sigstop
    };
    wait_until("the monitor to hold the task", || is_held(&id, path));
}

#[test]
fn the_readiness_timeout_does_not_run_while_paused() {
    let bg = Bg::new();
    // `run --ready-*` waits for readiness: it runs beside the test.
    let mut waiting = bg
        .cmd()
        .args([
            "run",
            "--ready-log",
            "never printed",
            "--ready-timeout",
            "1500ms",
            "--kill-if-not-ready",
            "--",
            "sleep 60",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut id = String::new();
    wait_until("the task to run", || {
        let tasks = bg.list_all();
        match tasks.first() {
            Some(task) if task["status"] == "running" => {
                id = task["task_id"].as_str().unwrap().to_owned();
                true
            }
            _ => false,
        }
    });
    let paused = bg.run(&["pause", "--json", &id]).json();
    if paused["status"] != "paused" {
        let _ = waiting.wait();
        // The machine was too slow to pause it within its 1.5 s.
        println!("skipped: the task was not paused before its readiness timeout: {paused}");
        return;
    }
    let started = paused["started_at"].as_i64().unwrap();
    let paused_at = paused["paused_at"].as_i64().unwrap();
    wait_until("twice the readiness timeout to pass", || {
        bgtask_core::now_ms() >= paused_at + 3_000
    });
    let status = bg.status(&id);
    assert_eq!(status["status"], "paused", "{status}");
    assert_eq!(status["readiness"]["outcome"], Value::Null, "{status}");
    let resumed_at = bgtask_core::now_ms();
    bg.run(&["resume", &id]).ok();
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "killed", "{ended}");
    assert_eq!(ended["readiness"]["outcome"], "timeout", "{ended}");
    // It gave up with the task's readiness (exit 124).
    assert_eq!(waiting.wait().unwrap().code(), Some(124));
    let finished = ended["finished_at"].as_i64().unwrap();
    let paused_for = resumed_at - paused_at;
    assert!(
        finished - started >= 1_500 + paused_for - 200,
        "ended {} ms after its start, paused for {paused_for} ms",
        finished - started
    );
}
