//! Kills, timeouts and the process tree: nothing a task started survives it.

use crate::fixture::*;

/// A task that starts a child and a grandchild, writes their pids, and waits.
fn tree_command(bg: &Bg, extra: &str) -> (String, std::path::PathBuf) {
    let pids = bg.path("pids");
    let cmd = format!(
        "{extra} bash -c 'sleep 300 & echo $! >> {p}; wait' & echo $! >> {p}; sleep 300 & echo $! >> {p}; echo READY; wait",
        p = pids.display()
    );
    (cmd, pids)
}

fn wait_for_pids(path: &std::path::Path, count: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    wait_until("the task's pids", || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        pids = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        pids.len() >= count && text.ends_with('\n')
    });
    pids
}

#[test]
fn kill_ends_the_whole_tree_including_grandchildren() {
    let bg = Bg::new();
    let (cmd, pids_file) = tree_command(&bg, "");
    let id = bg.spawn(&[], &cmd);
    let pids = wait_for_pids(&pids_file, 3);
    assert!(pids.iter().all(|p| is_running(*p)));
    let task = bg.run(&["kill", "--json", &id]).ok().json();
    assert_eq!(task["status"], "killed");
    assert_eq!(task["exit_code"], 143, "ended by SIGTERM: {task}");
    assert_eq!(task["signal"], "SIGTERM");
    for pid in pids {
        assert!(!is_running(pid), "process {pid} survived the kill");
    }
}

#[test]
fn kill_reaches_children_that_left_the_process_group() {
    let bg = Bg::new();
    let (cmd, pids_file) = tree_command(&bg, "setsid");
    let id = bg.spawn(&[], &cmd);
    let pids = wait_for_pids(&pids_file, 3);
    bg.run(&["kill", "--grace", "200ms", &id]).ok();
    for pid in pids {
        assert!(!is_running(pid), "process {pid} survived the kill");
    }
}

#[test]
fn a_term_ignoring_task_is_killed_after_the_grace() {
    let bg = Bg::new();
    let ready = bg.path("ready");
    let id = bg.spawn(
        &[],
        &format!("trap '' TERM; echo > {}; sleep 300", ready.display()),
    );
    read_when_ready(&ready);
    let task = bg
        .run(&["kill", "--json", "--grace", "300ms", &id])
        .ok()
        .json();
    assert_eq!(task["status"], "killed");
    assert_eq!(task["exit_code"], 137);
    assert_eq!(task["signal"], "SIGKILL");
    assert!(!is_running(task["pid"].as_u64().unwrap() as u32));
}

#[test]
fn children_left_behind_by_the_shell_are_ended_with_the_task() {
    let bg = Bg::new();
    let pid_file = bg.path("pid");
    let id = bg.spawn(
        &[],
        &format!("sleep 300 & echo $! > {}", pid_file.display()),
    );
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed");
    let pid: u32 = read_when_ready(&pid_file).parse().unwrap();
    assert!(!is_running(pid), "background child {pid} outlived its task");
}

#[test]
fn killing_a_finished_task_keeps_its_real_end() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exit 4");
    bg.wait(&id);
    let task = bg.run(&["kill", "--json", &id]).ok().json();
    assert_eq!(task["status"], "failed");
    assert_eq!(task["exit_code"], 4);
}

#[test]
fn hard_timeout_ends_the_task_as_timed_out() {
    let bg = Bg::new();
    let id = bg.spawn(&["--timeout", "300ms"], "sleep 300");
    let task = bg.wait(&id);
    assert_eq!(task["status"], "timed_out");
    assert_eq!(task["exit_code"], 124);
    assert_eq!(task["reason"], "timeout after 300ms");
}

#[test]
fn idle_timeout_fires_only_after_output_stops() {
    let bg = Bg::new();
    // Prints for longer than the idle timeout, then goes quiet.
    let id = bg.spawn(
        &["--idle-timeout", "500ms"],
        "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.1; done; sleep 300",
    );
    let task = bg.wait(&id);
    assert_eq!(task["status"], "timed_out");
    assert_eq!(task["exit_code"], 124);
    assert!(task["reason"].as_str().unwrap().contains("idle"), "{task}");
    let logs = bg.run(&["logs", &id]).ok().stdout;
    assert!(
        logs.contains("tick 6"),
        "the task ran past the idle timeout while printing: {logs}"
    );
}

#[test]
fn a_task_killed_from_outside_is_failed_with_its_signal() {
    let bg = Bg::new();
    let ready = bg.path("ready");
    let id = bg.spawn(&[], &format!("echo > {}; exec sleep 300", ready.display()));
    read_when_ready(&ready);
    let pid = bg.status(&id)["pid"].as_u64().unwrap() as u32;
    kill9(pid);
    let task = bg.wait(&id);
    assert_eq!(task["status"], "failed");
    assert_eq!(task["exit_code"], 137);
    assert_eq!(task["signal"], "SIGKILL");
}

#[test]
fn tasks_outlive_a_starter_killed_with_sigkill() {
    let bg = Bg::new();
    let go = bg.gate("go");
    let mut starter = bg
        .cmd()
        .args([
            "run",
            "--wait",
            "5m",
            "--",
            &format!("echo started; {}; echo finished", go.hold()),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut id = String::new();
    wait_until("the task to run", || {
        let tasks = bg.list_all();
        if let Some(t) = tasks.iter().find(|t| t["status"] == "running") {
            id = t["task_id"].as_str().unwrap().to_owned();
        }
        !id.is_empty()
    });
    starter.kill().unwrap(); // SIGKILL
    starter.wait().unwrap();
    go.open();
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "{task}");
    let logs = bg.run(&["logs", &id]).ok().stdout;
    assert_eq!(logs, "started\nfinished\n");
    let completions = bg.run(&["completions", "--json"]).ok().json();
    assert_eq!(completions.as_array().unwrap().len(), 1);
    assert_eq!(completions[0]["task_id"], id.as_str());
}

#[test]
fn a_monitor_killed_with_sigkill_leaves_a_failed_task_and_no_process() {
    let bg = Bg::new();
    let (cmd, pids_file) = tree_command(&bg, "");
    let id = bg.spawn(&[], &cmd);
    let pids = wait_for_pids(&pids_file, 3);
    let monitor = monitor_pid(&bg.status(&id));
    assert!(is_running(monitor), "the monitor runs while its task does");
    kill9(monitor);
    wait_until("the monitor to die", || !is_running(monitor));
    let task = bg.status(&id);
    assert_eq!(task["status"], "failed", "{task}");
    assert!(
        task["reason"].as_str().unwrap().contains("monitor"),
        "{task}"
    );
    wait_until("the task's processes to end", || {
        pids.iter().all(|p| !is_running(*p))
    });
    wait_until("no process of the store to remain", || {
        pids_of_home(&bg.home).is_empty()
    });
    // The completion is recorded by whoever noticed.
    let completions = bg.run(&["completions", "--json"]).ok().json();
    assert_eq!(completions[0]["task_id"], id.as_str());
}

#[test]
fn the_live_task_limit_holds_and_leaves_nothing_behind() {
    let bg = Bg::new();
    let limited = |args: &[&str]| bg.run_with(bg.cmd().env("BGTASK_MAX_RUNNING", "2").args(args));
    limited(&["run", "--", "sleep 300"]).ok();
    limited(&["run", "--", "sleep 300"]).ok();
    // Issue 21: a task queues for a slot unless told not to.
    let third = limited(&["run", "--no-queue", "--", "sleep 300"]);
    assert_eq!(third.code, 1);
    assert!(third.stderr.contains("too many running tasks"), "{third:?}");
    assert_eq!(bg.list_all().len(), 2, "the refused task left no record");
}

/// The scheduling policy (field 41 of `/proc/PID/stat`) of a process.
fn sched_policy(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 1..];
    after_comm.split_whitespace().nth(38).unwrap().to_owned()
}

#[test]
fn tasks_and_monitors_run_under_the_normal_scheduling_policy() {
    // A monitor waits for its starter's "go" under SCHED_BATCH; neither it
    // nor the task keeps that policy once the task runs.
    let bg = Bg::new();
    let marker = bg.path("shell");
    let id = bg.spawn(&[], &format!("echo $$ > {}; sleep 300", marker.display()));
    let shell: u32 = read_when_ready(&marker).parse().unwrap();
    assert_eq!(
        sched_policy(shell),
        "0",
        "the task's shell (SCHED_OTHER is 0)"
    );
    assert_eq!(
        sched_policy(monitor_pid(&bg.status(&id))),
        "0",
        "the monitor"
    );
    bg.run(&["kill", &id]).ok();
}

#[test]
fn a_monitor_whose_starter_reads_no_report_stays_the_process_started() {
    // A server of an older version (still running after the binary was
    // replaced) gives its monitors /dev/null as stdout and records the
    // process it spawned as the task's owner: that process must go on, not
    // fork away from it (which would leave the task looking dead).
    let bg = Bg::new();
    let mut monitor = std::process::Command::new(BIN)
        .args(["__monitor"])
        .arg(&bg.home)
        .args(["bg-0123456789abcdef"])
        .arg(bg.path(""))
        .arg("true")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn a monitor");
    // It opens the store before its go; a monitor that forked away would
    // have had the process spawned exit before that.
    wait_until("the monitor to open the store", || {
        bg.home.join("bgtask.db").exists()
    });
    assert!(
        monitor.try_wait().expect("try_wait").is_none(),
        "the process spawned is the monitor"
    );
    // No go: it gives up and exits.
    drop(monitor.stdin.take());
    assert!(monitor.wait().expect("wait").success());
}
