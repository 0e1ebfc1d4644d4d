//! Readiness (issue 16): `run --ready-log/--ready-port/--ready-http`,
//! `wait --ready`, the readiness outcomes and their notifications, with
//! real servers.

use std::net::TcpListener;
use std::process::Stdio;

use serde_json::Value;

use crate::fixture::*;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Whether python3 can serve http here (the tests that need it say so
/// and skip when it cannot).
fn has_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn notifications(bg: &Bg) -> Vec<Value> {
    match bg.run(&["notifications", "--json"]).ok().json() {
        Value::Array(all) => all,
        other => panic!("notifications is not an array: {other}"),
    }
}

#[test]
fn run_returns_once_a_line_matches_with_escapes_stripped() {
    let bg = Bg::new();
    let run = bg.run(&[
        "run",
        "--json",
        "--ready-log",
        r"listening on \d+$",
        "--",
        r"echo booting; sleep 0.3; printf '\033[32mlistening on 3000\033[0m\r\n'; sleep 30",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let task = run.json();
    assert_eq!(task["status"], "running");
    assert!(task["ready_at"].as_i64().is_some(), "{task}");
    assert_eq!(task["readiness"]["kind"], "log");
    assert_eq!(task["readiness"]["outcome"], "ready");
    assert_eq!(task["readiness"]["detail"], "listening on 3000");
    // The answer delivered the readiness: it is not pending as well.
    assert!(notifications(&bg).is_empty(), "{:?}", notifications(&bg));
}

#[test]
fn run_is_ready_by_port_and_by_http_with_a_real_server() {
    if !has_python() {
        println!("skipped: python3 is not installed");
        return;
    }
    let bg = Bg::new();
    for flag in ["--ready-port", "--ready-http"] {
        let port = free_port();
        let target = match flag {
            "--ready-port" => port.to_string(),
            _ => format!("http://localhost:{port}/"),
        };
        let run = bg.run(&[
            "run",
            "--json",
            flag,
            &target,
            "--",
            &format!("sleep 0.2; exec python3 -m http.server {port} --bind 127.0.0.1"),
        ]);
        assert_eq!(run.code, 0, "{flag}: {run:?}");
        let task = run.json();
        assert_eq!(task["readiness"]["outcome"], "ready", "{task}");
        let detail = task["readiness"]["detail"].as_str().unwrap();
        match flag {
            "--ready-port" => assert!(detail.contains("accepts connections"), "{detail}"),
            _ => assert!(detail.contains("answered 200"), "{detail}"),
        }
        // Something really listens now.
        std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        bg.run(&["kill", task["task_id"].as_str().unwrap()]).ok();
    }
}

#[test]
fn a_server_that_crashes_first_fails_readiness_with_its_code_and_output() {
    let bg = Bg::new();
    let port = free_port();
    let run = bg.run(&[
        "run",
        "--ready-port",
        &port.to_string(),
        "--",
        "echo starting; echo 'error: address in use' >&2; exit 3",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("did not become ready"), "{run:?}");
    assert!(run.stderr.contains("exit code 3"), "{run:?}");
    assert!(run.stderr.contains("address in use"), "{run:?}");
    // Its end is still reported (the readiness failure went back inline).
    let pending = notifications(&bg);
    let kinds: Vec<&str> = pending
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["completed"], "{pending:?}");
    assert_eq!(pending[0]["detail"]["exit_code"], 3);
}

#[test]
fn a_readiness_timeout_exits_124_and_leaves_the_task_running_unless_asked() {
    let bg = Bg::new();
    let run = bg.run(&[
        "run",
        "--json",
        "--ready-log",
        "never printed",
        "--ready-timeout",
        "300ms",
        "--",
        "sleep 30",
    ]);
    assert_eq!(run.code, 124, "{run:?}");
    let task = run.json();
    assert_eq!(task["readiness"]["outcome"], "timeout");
    assert_eq!(task["status"], "running");

    let killed = bg.run(&[
        "run",
        "--json",
        "--ready-log",
        "never printed",
        "--ready-timeout",
        "200ms",
        "--kill-if-not-ready",
        "--",
        "sleep 30",
    ]);
    assert_eq!(killed.code, 124, "{killed:?}");
    let id = killed.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(bg.wait(&id)["status"], "killed");
}

#[test]
fn wait_ready_waits_for_a_running_task_and_a_task_without_condition_is_ready_once_running() {
    let bg = Bg::new();
    let plain = bg.spawn(&[], "sleep 30");
    let run = bg.run(&["wait", "--ready", "--json", &plain]);
    assert_eq!(run.code, 0, "{run:?}");

    // A task with a condition, started by a `run` that is still waiting.
    let gate = bg.gate("ready");
    let mut starter = bg
        .cmd()
        .args(["run", "--ready-log", "^up$", "--"])
        .arg(format!("{}; echo up; sleep 30", gate.hold()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    wait_until("the task to be recorded", || {
        let tasks = bg.list_all();
        match tasks.iter().find(|t| t["readiness"]["kind"] == "log") {
            Some(t) => {
                id = t["task_id"].as_str().unwrap().to_owned();
                true
            }
            None => false,
        }
    });
    let early = bg.run(&["wait", "--ready", "--timeout", "100ms", &id]);
    assert_eq!(early.code, 124, "not ready yet: {early:?}");
    gate.open();
    let ready = bg.run(&["wait", "--ready", "--json", &id]);
    assert_eq!(ready.code, 0, "{ready:?}");
    assert!(ready.json()[0]["ready_at"].as_i64().is_some());
    assert!(starter.wait().unwrap().success());
}

#[test]
fn bad_readiness_conditions_are_refused_naming_the_field_and_store_nothing() {
    let bg = Bg::new();
    for (args, field) in [
        (vec!["--ready-log", "(unclosed"], "ready.log"),
        (vec!["--ready-port", "0"], "ready.port"),
        (vec!["--ready-port", "70000"], "ready.port"),
        (
            vec!["--ready-http", "https://localhost:3000/"],
            "ready.http",
        ),
        (vec!["--ready-http", "http://example.com/"], "ready.http"),
        (vec!["--kill-if-not-ready"], "--kill-if-not-ready"),
    ] {
        let mut all = vec!["run"];
        all.extend(&args);
        all.extend(["--", "true"]);
        let run = bg.run(&all);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(field), "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "one line: {run:?}");
    }
    assert!(
        !bg.home.join("bgtask.db").exists() || bg.list_all().is_empty(),
        "nothing stored"
    );
}
