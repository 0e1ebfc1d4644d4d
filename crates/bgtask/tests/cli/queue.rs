//! Queues, groups and dependencies (issue 21): limits that hold across
//! concurrent processes, starts that are event-driven and exactly once,
//! dependencies, delays, restart, and the group commands' errors.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::fixture::*;

/// A task body that records its start and end in `log` (under flock, so
/// lines of concurrent tasks never interleave), with `tag` naming it.
fn logged(log: &std::path::Path, tag: &str, work: &str) -> String {
    let log = log.display();
    format!(
        "flock '{log}' -c 'echo start {tag} >> \"{log}\"'; {work}; flock '{log}' -c 'echo end {tag} >> \"{log}\"'"
    )
}

fn run_ok(bg: &Bg, args: &[&str]) -> String {
    bg.run_id(bg.cmd().arg("run").args(args))
}

#[test]
fn a_group_of_parallel_3_fed_by_4_processes_runs_each_task_once_in_order_never_more_than_3() {
    let bg = Bg::new();
    bg.run(&["group", "add", "build", "--parallel", "3"]).ok();
    let log = bg.path("log");
    std::fs::write(&log, "").unwrap();
    const PER: usize = 25;
    let ids: Vec<String> = std::thread::scope(|scope| {
        let feeders: Vec<_> = (0..4)
            .map(|k| {
                let (bg, log) = (&bg, &log);
                scope.spawn(move || {
                    (0..PER)
                        .map(|i| {
                            let body = logged(log, &format!("{k}-{i}"), "sleep 0.05");
                            run_ok(bg, &["--group", "build", "--", &body])
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        feeders
            .into_iter()
            .flat_map(|f| f.join().unwrap())
            .collect()
    });
    let mut wait = bg.cmd();
    wait.args(["wait", "--json", "--timeout", "120s"])
        .args(&ids);
    let ended = bg.run_with(&mut wait).ok().json();
    assert!(
        ended
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "completed"),
        "{ended}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let (mut running, mut most) = (0i32, 0i32);
    let mut started: HashMap<String, usize> = HashMap::new();
    // Line numbers of each task's start and end.
    let (mut start_at, mut end_at) = (HashMap::new(), HashMap::new());
    for (n, line) in text.lines().enumerate() {
        let (what, tag) = line.split_once(' ').unwrap();
        if what == "start" {
            running += 1;
            most = most.max(running);
            *started.entry(tag.to_owned()).or_default() += 1;
            start_at.insert(tag.to_owned(), n);
        } else {
            running -= 1;
            end_at.insert(tag.to_owned(), n);
        }
    }
    assert!(
        most <= 3,
        "{most} tasks of a group of 3 ran at once:\n{text}"
    );
    assert!(most >= 2, "the group never ran tasks side by side:\n{text}");
    assert_eq!(started.len(), 4 * PER, "every task started:\n{text}");
    assert!(started.values().all(|n| *n == 1), "each exactly once");
    // Queue order within the group: turns are handed out oldest first, so
    // a task never ends before one queued earlier has started (two turns
    // handed out together may start in either order).
    for k in 0..4 {
        for i in 0..PER {
            for j in i + 1..PER {
                let (earlier, later) = (format!("{k}-{i}"), format!("{k}-{j}"));
                assert!(
                    start_at[&earlier] < end_at[&later],
                    "{later} ended before {earlier} started:\n{text}"
                );
            }
        }
    }
}

#[test]
fn dependencies_chain_and_a_failed_one_fails_its_dependents_without_starting_them() {
    let bg = Bg::new();
    let gate = bg.gate("first");
    let log = bg.path("chain");
    let first = run_ok(
        &bg,
        &[
            "--",
            &format!("{}; echo a >> {}", gate.hold(), log.display()),
        ],
    );
    let second = run_ok(
        &bg,
        &[
            "--after",
            &first,
            "--",
            &format!("echo b >> {}", log.display()),
        ],
    );
    let third = run_ok(
        &bg,
        &[
            "--after",
            &second,
            "--",
            &format!("echo c >> {}", log.display()),
        ],
    );
    assert_eq!(bg.status(&second)["status"], "queued");
    assert_eq!(bg.status(&third)["status"], "queued");
    gate.open();
    assert_eq!(bg.wait(&third)["status"], "completed");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\nc\n");

    let failing = run_ok(&bg, &["--", "exit 3"]);
    let dependent = run_ok(&bg, &["--after", &failing, "--", "touch never"]);
    let transitive = run_ok(&bg, &["--after", &dependent, "--", "touch never"]);
    let any = run_ok(&bg, &["--after-any", &failing, "--", "echo ran"]);
    let dependent = bg.wait(&dependent);
    assert_eq!(dependent["status"], "failed", "{dependent}");
    assert_eq!(
        dependent["reason"],
        format!("dependency {failing} failed"),
        "{dependent}"
    );
    assert!(dependent["started_at"].is_null(), "it never started");
    let transitive = bg.wait(&transitive);
    assert_eq!(
        transitive["reason"],
        format!(
            "dependency {} failed",
            dependent["task_id"].as_str().unwrap()
        )
    );
    assert_eq!(
        bg.wait(&any)["status"],
        "completed",
        "--after-any: ended, however"
    );
    assert!(!bg.path("never").exists());
    // An unknown dependency is refused at once, recording nothing.
    let before = bg.list_all().len();
    let unknown = bg.run(&["run", "--after", "bg-0123456789abcdef", "--", "true"]);
    assert_eq!(unknown.code, 3, "{unknown:?}");
    assert_eq!(bg.list_all().len(), before);
}

#[test]
fn a_delay_is_honoured_with_no_bgtask_command_running() {
    let bg = Bg::new();
    let marker = bg.path("started");
    let asked = Instant::now();
    let id = run_ok(
        &bg,
        &[
            "--delay",
            "1s",
            "--",
            &format!("echo go > {}", marker.display()),
        ],
    );
    assert_eq!(bg.status(&id)["status"], "queued");
    // Only the file is watched: no bgtask command runs meanwhile.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the delayed task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(asked.elapsed() >= Duration::from_secs(1), "started early");
    assert_eq!(bg.wait(&id)["status"], "completed");
}

#[test]
fn a_queued_task_refuses_a_signal_and_can_be_killed_and_its_monitor_exits() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let holder = run_ok(&bg, &["--group", "one", "--", &gate.hold()]);
    let queued = run_ok(&bg, &["--group", "one", "--", "touch ran"]);
    let monitor = monitor_pid(&bg.status(&queued));
    // A signal has nothing to reach yet and is not recorded as sent.
    let signalled = bg.run(&["signal", &queued, "USR1"]);
    assert_eq!(signalled.code, 4, "{signalled:?}");
    assert!(signalled.stderr.contains("is queued"), "{signalled:?}");
    assert_eq!(signalled.stderr.lines().count(), 1, "{signalled:?}");
    assert_eq!(bg.status(&queued)["signals_sent"], serde_json::json!([]));
    let killed = bg.run(&["kill", "--json", &queued]).ok().json();
    assert_eq!(killed["status"], "killed", "{killed}");
    wait_until("the queued task's monitor to exit", || !is_running(monitor));
    gate.open();
    assert_eq!(bg.wait(&holder)["status"], "completed");
    assert!(!bg.path("ran").exists());
}

#[test]
fn a_start_survives_sigkill_of_the_process_that_handed_it_on() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    // The first task's monitor claims the next task's turn when it ends,
    // and is killed before it tells it.
    let mut first = bg.cmd();
    first.env("BGTASK_FAULT", "handoff_after_claim").args([
        "run",
        "--group",
        "one",
        "--",
        &gate.hold(),
    ]);
    let first = bg.run_id(&mut first);
    let next = run_ok(&bg, &["--group", "one", "--", "echo next"]);
    let first_monitor = monitor_pid(&bg.status(&first));
    gate.open();
    wait_until("the first monitor to die", || !is_running(first_monitor));
    // The next command that looks repairs the hand-off.
    wait_until("the next task to run", || {
        bg.run(&["list", "--json"]).ok();
        bg.status(&next)["status"] == "completed"
    });
    assert_eq!(bg.status(&first)["status"], "completed");
}

#[test]
fn groups_settings_and_labels_survive_a_restart_of_every_process() {
    let bg = Bg::new();
    bg.run(&["group", "add", "slow", "--parallel", "2"]).ok();
    bg.run(&["group", "set", "default", "--parallel", "5"]).ok();
    let gate = bg.gate("hold");
    let held = run_ok(
        &bg,
        &[
            "--group",
            "slow",
            "--label",
            "nightly build",
            "--",
            &gate.hold(),
        ],
    );
    // Running, so it began (a task that never began would get a new
    // monitor instead: docs/queues.md).
    wait_until("the held task to run", || {
        bg.status(&held)["status"] == "running"
    });
    // Every bgtask process goes (as at a reboot): the monitors too.
    kill_every_process_of(&bg.home);
    let groups = bg.run(&["group", "list", "--json"]).ok().json();
    let parallel: HashMap<&str, u64> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["parallel"].as_u64().unwrap()))
        .collect();
    assert_eq!(parallel, HashMap::from([("default", 5), ("slow", 2)]));
    let task = bg.status(&held);
    assert_eq!(task["label"], "nightly build");
    assert_eq!(task["group"], "slow");
    assert_eq!(task["status"], "failed", "its monitor died: {task}");
    // And it can be run again as it was.
    gate.open();
    let again = bg.run(&["restart", &held]).ok().stdout.trim().to_owned();
    let again = bg.wait(&again);
    assert_eq!(again["status"], "completed");
    assert_eq!(again["label"], "nightly build");
    assert_eq!(again["group"], "slow");
}

#[test]
fn restart_runs_the_same_task_again_and_asks_for_env_values_again() {
    let bg = Bg::new();
    bg.run(&["group", "add", "g"]).ok();
    let first = run_ok(
        &bg,
        &[
            "--group",
            "g",
            "--label",
            "L",
            "--env",
            "SECRET=hunter2",
            "--timeout",
            "1h",
            "--",
            "echo value=$SECRET",
        ],
    );
    bg.wait(&first);
    let refused = bg.run(&["restart", &first]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(refused.stderr.contains("SECRET"), "{refused:?}");
    assert!(!refused.stderr.contains("hunter2"), "never echo a value");
    let again = bg.run(&["restart", &first, "--env", "SECRET=other"]).ok();
    let again = bg.wait(again.stdout.trim());
    assert_eq!(again["status"], "completed");
    assert_eq!(again["label"], "L");
    assert_eq!(again["group"], "g");
    assert_eq!(again["timeout_ms"], 3_600_000);
    assert_ne!(again["task_id"], first.as_str());
    let out = bg.run(&["logs", again["task_id"].as_str().unwrap()]).ok();
    assert_eq!(out.stdout, "value=other\n");
    let edited = bg
        .run(&[
            "restart",
            &first,
            "--env",
            "SECRET=x",
            "--edit-command",
            "echo edited",
        ])
        .ok();
    let edited = bg.wait(edited.stdout.trim());
    assert_eq!(edited["command"], "echo edited");
}

#[test]
fn group_commands_refuse_bad_input_with_distinct_exit_codes() {
    let bg = Bg::new();
    let bad_name = bg.run(&["group", "add", "no spaces"]);
    assert_eq!(bad_name.code, 2, "{bad_name:?}");
    assert!(
        bad_name.stderr.contains("invalid group name"),
        "{bad_name:?}"
    );
    let zero = bg.run(&["group", "add", "g", "--parallel", "0"]);
    assert_eq!(zero.code, 2, "{zero:?}");
    assert!(zero.stderr.contains("at least 1"), "{zero:?}");
    bg.run(&["group", "add", "g"]).ok();
    let twice = bg.run(&["group", "add", "g"]);
    assert_eq!(twice.code, 6, "{twice:?}");
    let unknown = bg.run(&["group", "set", "nope", "--parallel", "2"]);
    assert_eq!(unknown.code, 5, "{unknown:?}");
    assert!(
        unknown.stderr.contains("no group named \"nope\""),
        "{unknown:?}"
    );
    let run_unknown = bg.run(&["run", "--group", "nope", "--", "true"]);
    assert_eq!(run_unknown.code, 5, "{run_unknown:?}");
    let gate = bg.gate("busy");
    let busy = run_ok(&bg, &["--group", "g", "--", &gate.hold()]);
    let in_use = bg.run(&["group", "rm", "g"]);
    assert_eq!(in_use.code, 6, "{in_use:?}");
    assert!(
        in_use.stderr.contains("still has 1 live task"),
        "{in_use:?}"
    );
    assert_eq!(bg.run(&["group", "rm", "default"]).code, 6);
    gate.open();
    bg.wait(&busy);
    bg.run(&["group", "rm", "g"]).ok();
    let names: HashSet<String> = bg
        .run(&["group", "list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, HashSet::from(["default".to_owned()]));
}

#[test]
fn a_raised_parallel_starts_queued_tasks_and_clean_removes_a_groups_finished_tasks() {
    let bg = Bg::new();
    bg.run(&["group", "add", "g", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let first = run_ok(&bg, &["--group", "g", "--", &gate.hold()]);
    let second = run_ok(&bg, &["--group", "g", "--", &gate.hold()]);
    assert_eq!(bg.status(&second)["status"], "queued");
    bg.run(&["group", "set", "g", "--parallel", "2"]).ok();
    wait_until("the second task to start", || {
        bg.status(&second)["status"] == "running"
    });
    gate.open();
    bg.wait(&first);
    bg.wait(&second);
    let other = run_ok(&bg, &["--no-notify", "--", "true"]);
    bg.wait(&other);
    bg.run(&["ack", &first, &second]).ok();
    let cleaned = bg.run(&["clean", "--group", "g", "--json"]).ok().json();
    assert_eq!(cleaned["removed"].as_array().unwrap().len(), 2, "{cleaned}");
    assert_eq!(bg.list_all().len(), 1, "the other group's task stays");
    let list = bg.run(&["list"]).ok();
    assert!(!list.stdout.contains(&first));
}

#[test]
fn pausing_a_group_holds_its_running_tasks_and_starts_nothing_until_resumed() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let holder = run_ok(&bg, &["--group", "one", "--", &gate.hold()]);
    let queued = run_ok(&bg, &["--group", "one", "--", "touch ran"]);
    wait_until("the holder to run", || {
        bg.status(&holder)["status"] == "running"
    });
    let paused = bg.run(&["pause", "--group", "one", "--json"]).ok().json();
    let paused = paused.as_array().unwrap();
    assert_eq!(paused.len(), 1, "{paused:?}");
    assert_eq!(paused[0]["task_id"], holder.as_str());
    assert_eq!(paused[0]["status"], "paused");
    let groups = bg.run(&["group", "list", "--json"]).ok().json();
    let one = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "one")
        .unwrap()
        .clone();
    assert_eq!(one["paused"], true, "{one}");
    // Its slot frees, but a paused group starts nothing new: `list` runs
    // a scheduling pass of its own, after the end was recorded.
    assert_eq!(
        bg.run(&["kill", "--json", &holder]).ok().json()["status"],
        "killed"
    );
    bg.run(&["list", "--json"]).ok();
    assert_eq!(bg.status(&queued)["status"], "queued");
    let resumed = bg.run(&["resume", "--group", "one"]).ok();
    assert!(resumed.stdout.contains("group one resumed"), "{resumed:?}");
    assert_eq!(bg.wait(&queued)["status"], "completed");
    assert!(bg.path("ran").exists());
    let unknown = bg.run(&["pause", "--group", "nope"]);
    assert_eq!(unknown.code, 5, "{unknown:?}");
    let both = bg.run(&["pause", "--group", "one", &queued]);
    assert_eq!(both.code, 2, "{both:?}");
}

#[test]
fn a_task_whose_dependency_failed_before_it_was_submitted_never_runs() {
    let bg = Bg::new();
    let failing = run_ok(&bg, &["--", "exit 3"]);
    assert_eq!(bg.wait(&failing)["status"], "failed");
    let dependent = run_ok(&bg, &["--after", &failing, "--", "touch never"]);
    let dependent = bg.wait(&dependent);
    assert_eq!(dependent["status"], "failed", "{dependent}");
    assert!(dependent["started_at"].is_null(), "{dependent}");
    // Its monitor read the store and exited without starting the shell.
    let monitor = monitor_pid(&dependent);
    wait_until("the dependent's monitor to exit", || !is_running(monitor));
    assert!(!bg.path("never").exists());
    // Whether the shell got as far as `touch` is a race (a monitor that
    // started it kills it on finding the task ended); the output files are
    // not: a monitor makes them just before it spawns the shell, so they
    // exist exactly when a start was attempted.
    for stream in ["stdout_path", "stderr_path"] {
        let path = dependent[stream].as_str().expect("an output path");
        assert!(
            !std::path::Path::new(path).exists(),
            "the monitor began a start: {path} exists"
        );
    }
}

/// The live monitors of task `id` (processes running our monitor mode for
/// it).
fn monitors_of(id: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&&b"__monitor"[..]) && args.contains(&id.as_bytes()) && is_running(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// The one live monitor of task `id`, once the process spawned for it has
/// exited (a monitor forks out of its starter's tree first thing, so for
/// a moment two processes run its command line); a second long-lived
/// monitor fails the wait.
fn the_monitor_of(id: &str) -> Vec<u32> {
    wait_until("exactly one monitor of the task", || {
        monitors_of(id).len() == 1
    });
    monitors_of(id)
}

/// Kills a queued task's monitor and waits until it is gone.
fn kill_monitor_of(bg: &Bg, id: &str) -> u32 {
    let old = monitor_pid(&bg.status(id));
    kill9(old);
    wait_until("the queued task's monitor to die", || !is_running(old));
    old
}

#[test]
fn a_queued_task_whose_monitor_is_killed_gets_a_new_one_and_runs_once_in_order() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let holder = run_ok(&bg, &["--group", "one", "--", &gate.hold()]);
    let log = bg.path("order");
    let append = |tag: &str| format!("echo {tag} >> '{}'", log.display());
    let first = run_ok(
        &bg,
        &["--group", "one", "--label", "kept", "--", &append("first")],
    );
    let second = run_ok(&bg, &["--group", "one", "--", &append("second")]);
    let old = kill_monitor_of(&bg, &first);
    // The next command that looks gives it a new monitor.
    bg.run(&["list", "--json"]).ok();
    let task = bg.status(&first);
    assert_eq!(task["status"], "queued", "{task}");
    let new = monitor_pid(&task);
    assert_ne!(new, old, "{task}");
    assert_eq!(the_monitor_of(&first), vec![new]);
    gate.open();
    assert_eq!(bg.wait(&holder)["status"], "completed");
    let first = bg.wait(&first);
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["label"], "kept");
    assert_eq!(first["group"], "one");
    assert_eq!(bg.wait(&second)["status"], "completed");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
}

#[test]
fn two_processes_reconciling_at_once_give_an_orphaned_queued_task_one_monitor() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let holder = run_ok(&bg, &["--group", "one", "--", &gate.hold()]);
    let log = bg.path("ran");
    let queued = run_ok(
        &bg,
        &[
            "--group",
            "one",
            "--",
            &format!("echo once >> '{}'", log.display()),
        ],
    );
    kill_monitor_of(&bg, &queued);
    // One adopter is held after it found the monitor dead, before its
    // claim; another adopts meanwhile; the first then goes on.
    let mut held = bg
        .cmd()
        .env("BGTASK_FAULT", "adopt_before_claim")
        .args(["list", "--json"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the first adopter to stop before its claim", || {
        std::fs::read_to_string(format!("/proc/{}/stat", held.id())).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, s)| s.starts_with('T'))
        })
    });
    bg.run(&["list", "--json"]).ok();
    let adopted = the_monitor_of(&queued);
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &held.id().to_string()])
        .status();
    assert!(held.wait().unwrap().success());
    // And more at once, for good measure.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| bg.run(&["list", "--json"]).ok());
        }
    });
    assert_eq!(bg.status(&queued)["status"], "queued");
    assert_eq!(the_monitor_of(&queued), adopted, "still that one monitor");
    gate.open();
    assert_eq!(bg.wait(&holder)["status"], "completed");
    assert_eq!(bg.wait(&queued)["status"], "completed");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "once\n");
}

#[test]
fn queued_tasks_survive_the_death_of_every_process_and_run_in_order() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let holder = run_ok(&bg, &["--group", "one", "--", &gate.hold()]);
    let log = bg.path("order");
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let body = format!("echo {i} >> '{}'", log.display());
            run_ok(&bg, &["--group", "one", "--", &body])
        })
        .collect();
    // Every bgtask process goes (as at a reboot): the monitors too.
    kill_every_process_of(&bg.home);
    gate.open();
    bg.run(&["list", "--json"]).ok();
    let holder = bg.status(&holder);
    assert_eq!(holder["status"], "failed", "its monitor died: {holder}");
    for id in &ids {
        assert_eq!(bg.wait(id)["status"], "completed");
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "0\n1\n2\n");
}

#[test]
fn a_queued_task_with_env_whose_monitor_dies_fails_naming_the_keys_and_restart() {
    let bg = Bg::new();
    bg.run(&["group", "add", "one", "--parallel", "1"]).ok();
    let gate = bg.gate("hold");
    let holder = run_ok(&bg, &["--group", "one", "--", &gate.hold()]);
    let queued = run_ok(
        &bg,
        &[
            "--group",
            "one",
            "--env",
            "API_TOKEN=s3cr3t-value",
            "--",
            "touch ran",
        ],
    );
    kill_monitor_of(&bg, &queued);
    bg.run(&["list", "--json"]).ok();
    let task = bg.status(&queued);
    assert_eq!(task["status"], "failed", "{task}");
    let reason = task["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("API_TOKEN"), "{reason}");
    assert!(
        reason.contains(&format!("bgtask restart {queued}")),
        "{reason}"
    );
    assert!(!reason.contains("s3cr3t-value"), "{reason}");
    assert!(monitors_of(&queued).is_empty());
    gate.open();
    assert_eq!(bg.wait(&holder)["status"], "completed");
    assert!(!bg.path("ran").exists());
}
