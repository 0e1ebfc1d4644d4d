//! What passes between a requester, the monitor and the task: a kill whose
//! requester dies half-way, descriptors the caller left open, and `--env`
//! variables that are the task's and not the monitor's.

use std::process::Stdio;

use crate::fixture::*;
use crate::identity::{command_like_bg, read_to_eof};

#[test]
fn a_kill_whose_requester_dies_after_recording_it_is_still_carried_out() {
    let bg = Bg::new();
    let n = 3;
    for _ in 0..n {
        let id = bg.spawn(&[], "exec sleep 300");
        let run = bg.run_with(
            bg.cmd()
                .env("BGTASK_FAULT", "kill_after_request")
                .args(["kill", &id]),
        );
        assert_eq!(
            run.code, -1,
            "the requester must die at the fault point: {run:?}"
        );
        let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
        let status: String = conn
            .query_row("SELECT status FROM tasks WHERE task_id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(status, "killing");
        let waited = bg.run(&["wait", "--json", "--timeout", "20s", &id]);
        let task = waited.json()[0].clone();
        assert_eq!(task["status"], "killed", "{task}");
    }
    println!(
        "fault report: SIGKILL of `kill` between recording the kill and telling the monitor: {n} of {n} tasks killed by the next command"
    );
}

#[test]
fn a_descriptor_left_open_by_the_caller_ends_with_the_caller() {
    let bg = Bg::new();
    // The harness's pipe is fd 5 of `bgtask run`, without close-on-exec;
    // stdout goes to stderr, where the task's id is read.
    let mut run = command_like_bg(&bg, "sh");
    run.args(["-c", r#"exec "$0" run -- 'exec sleep 300' 5>&1 1>&2"#, BIN])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = run.spawn().unwrap();
    let harness_pipe = read_to_eof(child.stdout.take().unwrap());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert!(id.starts_with("bg-"), "{output:?}");
    let eof = harness_pipe.recv_timeout(PATIENCE);
    wait_until("the task to start", || {
        bg.status(&id)["status"] != "starting"
    });
    let task = bg.status(&id);
    bg.run(&["kill", "--grace", "0ms", &id]).ok();
    assert!(
        eof.is_ok(),
        "the harness's pipe stayed open after `run` exited (held by the monitor or the task)"
    );
    assert_eq!(task["status"], "running", "{task}");
    println!("fault report: caller's extra descriptor (fd 5, a pipe): end of file when `run` exited, 1 of 1");
}

#[test]
fn a_tasks_env_never_becomes_the_monitors_environment() {
    let bg = Bg::new();
    let id = bg.spawn(
        &[
            "--env",
            "BGTASK_FAULT=monitor_after_start",
            "--env",
            "SECRET_TOKEN=tok-5ecret",
            "--env",
            "BGTASK_TASK_ID=forged",
        ],
        r#"echo "$BGTASK_FAULT $SECRET_TOKEN $BGTASK_TASK_ID"; exec sleep 300"#,
    );
    let task = bg.status(&id);
    assert_eq!(
        task["status"], "running",
        "the monitor obeyed the task's env: {task}"
    );
    let out = bg.home.join("out").join(format!("{id}.out"));
    let line = read_when_ready(&out);
    assert_eq!(line, format!("monitor_after_start tok-5ecret {id}"));
    let monitor = monitor_pid(&task);
    let environ = std::fs::read(format!("/proc/{monitor}/environ")).unwrap();
    let text = String::from_utf8_lossy(&environ);
    bg.run(&["kill", "--grace", "0ms", &id]).ok();
    assert!(
        !text.contains("tok-5ecret"),
        "a value is in the monitor's environment"
    );
    assert!(!text.contains("monitor_after_start"));
    // The ordinary ways stay: a fault point armed in the starter's own
    // environment still reaches the monitor.
    let armed_id = bg.run_id(bg.cmd().env("BGTASK_FAULT", "monitor_after_start").args([
        "run",
        "--",
        "exec sleep 300",
    ]));
    let ended = bg.wait(&armed_id);
    assert!(
        ended["reason"].as_str().unwrap_or("").contains("monitor"),
        "{ended}"
    );
    println!("fault report: --env BGTASK_FAULT and a secret for the task: monitor unaffected, value absent from its environment, 1 of 1");
}
