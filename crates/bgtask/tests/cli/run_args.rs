//! `run`: how its command words arrive at the shell, and its exit code
//! with `--wait`.

use crate::fixture::*;

/// Runs `bgtask run --wait 30s ARGS…`, checks it completed and returns
/// its stored command and its stdout.
#[track_caller]
fn run_and_read(bg: &Bg, args: &[&str]) -> (String, String) {
    let mut all = vec!["run", "--json", "--wait", "30s"];
    all.extend_from_slice(args);
    let task = bg.run(&all).ok().json();
    assert_eq!(task["status"], "completed", "{args:?}: {task}");
    let id = task["task_id"].as_str().unwrap();
    let out = bg.run(&["logs", "--stream", "stdout", id]).ok().stdout;
    (task["command"].as_str().unwrap().to_owned(), out)
}

#[test]
fn run_wait_exits_with_the_exit_code_of_a_task_that_ended() {
    let bg = Bg::new();
    let failed = bg.run(&["run", "--wait", "30s", "--json", "--", "exit 3"]);
    assert_eq!(failed.code, 3, "{failed:?}");
    assert_eq!(failed.json()["status"], "failed");
    let timed_out = bg.run(&[
        "run",
        "--wait",
        "30s",
        "--timeout",
        "100ms",
        "--",
        "sleep 60",
    ]);
    assert_eq!(timed_out.code, 124, "{timed_out:?}");
    assert!(timed_out.stdout.contains("timed_out"), "{timed_out:?}");
    let ok = bg.run(&["run", "--wait", "30s", "--", "true"]);
    assert_eq!(ok.code, 0, "{ok:?}");
}

#[test]
fn run_wait_exits_0_when_the_task_is_still_running() {
    let bg = Bg::new();
    let gate = bg.gate("end");
    let running = bg
        .run(&["run", "--wait", "100ms", "--json", "--", &gate.hold()])
        .ok()
        .json();
    assert_eq!(running["status"], "running", "{running}");
    gate.open();
    let done = bg.wait(running["task_id"].as_str().unwrap());
    assert_eq!(done["status"], "completed", "{done}");
}

#[test]
fn several_words_arrive_as_given() {
    let bg = Bg::new();
    let (command, out) = run_and_read(&bg, &["--", "printf", "%s\\n", "a b", "c"]);
    assert_eq!(out, "a b\nc\n", "stored as {command}");
    assert_eq!(command, r"printf '%s\n' 'a b' c");
    let (command, out) = run_and_read(&bg, &["--", "echo", "it's"]);
    assert_eq!(out, "it's\n", "stored as {command}");
    let (_, out) = run_and_read(
        &bg,
        &[
            "--", "printf", "[%s]", "", "$HOME", "*", "a\nb", "if", "a=b", "'",
        ],
    );
    assert_eq!(out, "[][$HOME][*][a\nb][if][a=b][']");
}

#[test]
fn one_argument_is_a_shell_command_line() {
    let bg = Bg::new();
    let (command, out) = run_and_read(&bg, &["--", "echo a && echo b"]);
    assert_eq!(
        (command.as_str(), out.as_str()),
        ("echo a && echo b", "a\nb\n")
    );
}

#[test]
fn run_takes_the_command_without_a_double_dash() {
    let bg = Bg::new();
    let (command, out) = run_and_read(&bg, &["echo", "hi"]);
    assert_eq!((command.as_str(), out.as_str()), ("echo hi", "hi\n"));
    // Options after the first command word belong to the command.
    let (command, out) = run_and_read(&bg, &["echo", "-n", "--json", "hi"]);
    assert_eq!(
        (command.as_str(), out.as_str()),
        ("echo -n --json hi", "--json hi")
    );
    // The same through the full parser (a global option before `run`).
    let task = bg
        .run(&["--json", "run", "--wait", "30s", "echo", "-n", "--json"])
        .ok()
        .json();
    assert_eq!(task["command"], "echo -n --json", "{task}");
    // A mistyped option before the command is still an error.
    let bad = bg.run(&["run", "--bogus", "echo", "hi"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("--bogus"), "{bad:?}");
}
