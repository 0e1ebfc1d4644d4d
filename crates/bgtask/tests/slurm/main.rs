//! The Slurm engine against a real cluster (issue 19): `.ci/run` starts a
//! single-node one with `scripts/slurm-cluster.sh` and exports
//! `SLURM_CONF` and `BGTASK_TEST_SLURM=1`. Without a cluster each test
//! prints why and passes, unless `BGTASK_TEST_SLURM` is set (then a
//! missing cluster is a failure).
//!
//! Tests share the cluster; the one that restarts the controller holds an
//! exclusive lock on a file in the cluster's directory while the others
//! hold it shared, so no other test sees the controller down.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

#[path = "../cli/fixture.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared fixture")]
mod fixture;

#[path = "../shared/client.rs"]
#[allow(dead_code, reason = "each test binary uses part of the shared client")]
mod client;

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use fixture::{is_running, wait_until, Bg};
use serde_json::{json, Value};

/// The cluster's directory (where slurm.conf and the pid files are) and a
/// hold on it (shared, or exclusive for the test that restarts the
/// controller; taken before the cluster is checked, so no test sees the
/// controller that test stopped), or `None` with the reason printed when
/// there is none to test against.
fn cluster_held(exclusive: bool) -> Option<(PathBuf, File)> {
    let required = std::env::var_os("BGTASK_TEST_SLURM").is_some();
    let why = match std::env::var_os("SLURM_CONF") {
        None => "SLURM_CONF is not set (start one with scripts/slurm-cluster.sh)".to_owned(),
        Some(conf) => {
            let dir = PathBuf::from(conf).parent().unwrap().to_owned();
            let hold = File::create(dir.join("bgtask-tests.lock")).ok();
            if let Some(hold) = &hold {
                if exclusive {
                    hold.lock().unwrap();
                } else {
                    hold.lock_shared().unwrap();
                }
            }
            match Command::new("sinfo").args(["-h", "-o", "%a"]).output() {
                Ok(out) if out.status.success() && hold.is_some() => {
                    return Some((dir, hold.unwrap()));
                }
                Ok(out) => format!(
                    "sinfo failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                Err(e) => format!("cannot run sinfo: {e}"),
            }
        }
    };
    assert!(!required, "BGTASK_TEST_SLURM is set but no cluster: {why}");
    println!("skipped: no Slurm cluster: {why}");
    None
}

/// A shared hold on the cluster (see `cluster_held`).
fn cluster() -> Option<(PathBuf, File)> {
    cluster_held(false)
}

fn slurm_run(bg: &Bg, extra: &[&str], command: &str) -> String {
    bg.run_id(
        bg.cmd()
            .args(["run", "--executor", "slurm"])
            .args(extra)
            .args(["--", command]),
    )
}

/// What the controller says of the jobs named `name`: `(id, state)`.
fn jobs_named(name: &str) -> Vec<(String, String)> {
    let out = Command::new("squeue")
        .args(["-t", "all", "-h", "-n", name, "-o", "%i %T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

fn wait_running(bg: &Bg, id: &str) -> Value {
    let mut task = Value::Null;
    wait_until("the job to run", || {
        task = bg.status(id);
        task["status"] == "running"
    });
    task
}

#[test]
fn exit_codes_0_3_and_a_signal_map_faithfully() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let ok = slurm_run(&bg, &[], "echo out; echo err >&2");
    let three = slurm_run(&bg, &[], "exit 3");
    let signal = slurm_run(&bg, &[], "kill -9 $$");
    let ok = bg.wait(&ok);
    assert_eq!(ok["status"], "completed", "{ok}");
    assert_eq!(ok["exit_code"], 0);
    assert_eq!(ok["executor"], "slurm");
    assert!(ok["job_id"].as_str().is_some_and(|j| !j.is_empty()), "{ok}");
    let logs = bg.run(&["logs", ok["task_id"].as_str().unwrap()]).ok();
    assert!(
        logs.stdout.contains("out") && logs.stdout.contains("err"),
        "{logs:?}"
    );
    let three = bg.wait(&three);
    assert_eq!(
        (three["status"].as_str(), three["exit_code"].as_i64()),
        (Some("failed"), Some(3))
    );
    let signal = bg.wait(&signal);
    assert_eq!(signal["status"], "failed", "{signal}");
    assert_eq!(signal["exit_code"], 137);
    assert_eq!(signal["signal"], "SIGKILL");
    // A local task's row says so.
    let local = bg
        .run(&["run", "--wait", "30s", "--json", "--", "true"])
        .ok()
        .json();
    assert_eq!(
        (local["executor"].as_str(), &local["job_id"]),
        (Some("local"), &Value::Null)
    );
}

#[test]
fn kill_cancels_a_running_job_and_a_pending_one() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let running = slurm_run(&bg, &[], "sleep 300");
    // Held by the scheduler: pending until released, which never comes.
    let pending = slurm_run(&bg, &["--slurm-arg=--hold"], "sleep 300");
    wait_running(&bg, &running);
    assert_eq!(bg.status(&pending)["status"], "starting");
    for id in [&running, &pending] {
        let asked = Instant::now();
        let killed = bg.run(&["kill", "--json", id]).ok().json();
        // The watcher lives on (the other task): the kill sees the end
        // through the store's events, not the watcher's exit.
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(killed["status"], "killed", "{killed}");
        let job = killed["job_id"].as_str().unwrap().to_owned();
        let jobs = jobs_named(id);
        assert_eq!(jobs, [(job, "CANCELLED".to_owned())]);
    }
}

#[test]
fn a_hard_timeout_ends_the_job_to_the_second() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let started = Instant::now();
    let id = slurm_run(&bg, &["--timeout", "2s"], "sleep 120");
    let task = bg.wait(&id);
    assert_eq!(task["status"], "timed_out", "{task}");
    assert_eq!(task["exit_code"], 124);
    // 2 s, the grace, and at most one poll interval (2 s) to notice.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_output_tail_shows_while_the_job_runs() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let gate = bg.gate("tail");
    let id = slurm_run(
        &bg,
        &[],
        &format!("echo first-line; {}; echo second-line", gate.hold()),
    );
    wait_until("the first line in the tail", || {
        let task = bg.status(&id);
        task["status"] == "running"
            && task["output_tail"]
                .as_str()
                .unwrap_or("")
                .contains("first-line")
    });
    gate.open();
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed");
    let logs = bg.run(&["logs", &id]).ok();
    assert!(logs.stdout.contains("first-line\nsecond-line"), "{logs:?}");
}

/// Completions in the store's outbox, per task.
fn completions_of(bg: &Bg, id: &str) -> i64 {
    let db = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
    db.query_row(
        "SELECT count(*) FROM completions WHERE task_id = ?1",
        [id],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn completions_are_recorded_exactly_once() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let ids: Vec<String> = (0..4)
        .map(|i| slurm_run(&bg, &[], &format!("exit {i}")))
        .collect();
    for id in &ids {
        bg.wait(id);
    }
    // Every command that looks again (reconcile) adds nothing.
    bg.run(&["list", "--json"]).ok();
    bg.run(&["completions"]).ok();
    for id in &ids {
        bg.status(id);
        assert_eq!(completions_of(&bg, id), 1, "{id}");
    }
    let shown = bg.run(&["completions", "--json"]).ok().json();
    let shown = shown.as_array().unwrap();
    for id in &ids {
        assert_eq!(
            shown.iter().filter(|c| c["task_id"] == id.as_str()).count(),
            1
        );
    }
}

#[test]
fn a_watcher_killed_mid_job_is_replaced_and_the_task_completes() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let gate = bg.gate("watcher");
    let id = slurm_run(&bg, &[], &format!("{}; exit 7", gate.hold()));
    let task = wait_running(&bg, &id);
    let watcher = task["monitor_pid"].as_u64().unwrap() as u32;
    // A wait already asleep when the watcher dies notices and re-attaches.
    let waiting = bg
        .cmd()
        .args(["wait", "--json", "--timeout", "60s", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the wait to sleep", || {
        std::fs::read_to_string(format!("/proc/{}/wchan", waiting.id()))
            .is_ok_and(|w| w.contains("poll"))
    });
    Command::new("kill")
        .args(["-9", &watcher.to_string()])
        .status()
        .unwrap();
    wait_until("the watcher to die", || !is_running(watcher));
    gate.open();
    let out = waiting.wait_with_output().unwrap();
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    let task = task[0].clone();
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["exit_code"], 7, "{task}");
    assert_ne!(task["monitor_pid"].as_u64().unwrap() as u32, watcher);
    assert_eq!(completions_of(&bg, &id), 1);
}

#[test]
fn the_controller_restarted_mid_job_leaves_the_task_live_then_ends_it() {
    let Some((dir, _hold)) = cluster_held(true) else {
        return;
    };
    let bg = Bg::new();
    let gate = bg.gate("ctld");
    let id = slurm_run(&bg, &[], &format!("{}; exit 0", gate.hold()));
    wait_running(&bg, &id);
    let pid_file = dir.join("slurmctld.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    wait_until("slurmctld to stop", || !is_running(pid.parse().unwrap()));
    gate.open();
    // The controller is down: the task stays live and says so.
    let mut task = Value::Null;
    let patient = Instant::now() + Duration::from_secs(60);
    while Instant::now() < patient {
        task = bg.status(&id);
        if task["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot be reached"))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(task["status"], "running", "{task}");
    assert!(
        task["reason"]
            .as_str()
            .unwrap_or("")
            .contains("cannot be reached"),
        "{task}"
    );
    // Restarted with its saved state (no -c): the job's end is known again.
    let conf = dir.join("slurm.conf");
    let started = Command::new("slurmctld")
        .arg("-f")
        .arg(&conf)
        .status()
        .unwrap();
    assert!(started.success());
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(task["reason"], Value::Null, "{task}");
}

#[test]
fn a_starter_killed_between_submit_and_record_is_recovered_by_tag() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let run = bg.run_with(bg.cmd().env("BGTASK_FAULT", "slurm_after_submit").args([
        "run",
        "--executor",
        "slurm",
        "--",
        "echo recovered",
    ]));
    assert_ne!(run.code, 0, "the starter should have died: {run:?}");
    let tasks = bg.list_all();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let id = tasks[0]["task_id"].as_str().unwrap().to_owned();
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "{task}");
    let jobs = jobs_named(&id);
    assert_eq!(jobs.len(), 1, "submitted twice: {jobs:?}");
    assert_eq!(task["job_id"].as_str(), Some(jobs[0].0.as_str()));
    assert!(bg.run(&["logs", &id]).ok().stdout.contains("recovered"));
}

/// sbatch is started before the task is recorded (its start overlaps the
/// record) but submits only at the end of its script, written after the
/// record: a starter killed in between submits nothing.
#[test]
fn a_starter_killed_after_recording_before_its_go_submits_nothing() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let run = bg.run_with(bg.cmd().env("BGTASK_FAULT", "starter_after_insert").args([
        "run",
        "--executor",
        "slurm",
        "--",
        "echo never",
    ]));
    assert_ne!(run.code, 0, "the starter should have died: {run:?}");
    // The sbatch it started reads an empty script and exits.
    wait_until("the starter's sbatch to exit", || {
        fixture::pids_of_home(&bg.home).is_empty()
    });
    let tasks = bg.list_all();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let id = tasks[0]["task_id"].as_str().unwrap().to_owned();
    let task = bg.wait(&id);
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["reason"].as_str().unwrap().contains("spawn aborted"),
        "{task}"
    );
    let jobs = jobs_named(&id);
    assert!(jobs.is_empty(), "nothing may be submitted: {jobs:?}");
}

#[test]
fn fifty_tasks_are_watched_with_one_squeue_call_per_interval() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    // squeue on PATH logs each call, then runs the real one.
    let bin = bg.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = bg.path("squeue.log");
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v squeue"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = bin.join("squeue");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$(date +%s%3N) $*\" >> '{}'\nexec {} \"$@\"\n",
            log.display(),
            real.trim()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let gate = bg.gate("fifty");
    let ids: Vec<String> = (0..50)
        .map(|_| {
            bg.run_id(bg.cmd().env("PATH", &path).args([
                "run",
                "--executor",
                "slurm",
                "--",
                &gate.hold(),
            ]))
        })
        .collect();
    wait_until("all fifty running", || {
        bg.list_all()
            .iter()
            .filter(|t| t["status"] == "running")
            .count()
            == 50
    });
    // Three more polls with all fifty running.
    let polls = |text: &str| -> Vec<(i64, String)> {
        text.lines()
            .filter(|l| l.contains(" -j "))
            .map(|l| {
                let (t, args) = l.split_once(' ').unwrap();
                (t.parse().unwrap(), args.to_owned())
            })
            .collect()
    };
    let before = polls(&std::fs::read_to_string(&log).unwrap()).len();
    wait_until("three more polls", || {
        polls(&std::fs::read_to_string(&log).unwrap()).len() >= before + 3
    });
    gate.open();
    for id in &ids {
        assert_eq!(bg.wait(id)["status"], "completed");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let calls = polls(&text);
    let last = &calls[before..before + 3];
    for (_, args) in last {
        // One call names every task's job.
        let list = args
            .split(" -j ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert_eq!(list.split(',').count(), 50, "{args}");
    }
    for pair in last.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= 1900, "two polls {gap} ms apart: {text}");
    }
}

#[test]
fn a_partition_sbatch_refuses_fails_the_task_with_sbatch_s_words() {
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let bg = Bg::new();
    let id = slurm_run(&bg, &["--slurm-arg=--partition=no-such-partition"], "true");
    let task = bg.wait(&id);
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["reason"].as_str().unwrap();
    assert!(
        reason.contains("sbatch refused") && reason.contains("partition"),
        "{reason}"
    );
    assert_eq!(task["job_id"], Value::Null);
}

#[test]
fn an_unknown_executor_is_a_one_line_error_and_records_nothing() {
    let bg = Bg::new();
    let run = bg.run(&["run", "--executor", "k8s", "--", "true"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--executor"), "{run:?}");
    let run = bg.run_with(
        bg.cmd()
            .env("BGTASK_EXECUTOR", "k8s")
            .args(["run", "--", "true"]),
    );
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("BGTASK_EXECUTOR") && run.stderr.lines().count() == 1,
        "{run:?}"
    );
    let config = bg.run(&["config"]).ok();
    assert!(config.stdout.contains("executor"), "{config:?}");
}

#[test]
fn serve_runs_a_slurm_task_and_refuses_an_unknown_executor() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let error = server.call_error("bash", json!({"command": "true", "executor": "k8s"}));
    assert_eq!(error["code"], -32602, "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("executor"),
        "{error}"
    );
    assert!(bg.list_all().is_empty());
    let Some((_dir, _hold)) = cluster() else {
        return;
    };
    let done = server.call(
        "bash",
        json!({"command": "echo via-serve", "executor": "slurm", "slurm_args": ["--comment=x"], "wait_ms": 30000}),
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["executor"], "slurm");
    assert!(
        done["output"].as_str().unwrap().contains("via-serve"),
        "{done}"
    );
    server.close();
}
