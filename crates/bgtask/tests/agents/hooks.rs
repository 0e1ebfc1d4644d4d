//! `bgtask hook`: inject, wake and gate, in the session `bgtask mcp` uses
//! for the event's cwd.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixture::{wait_until, Bg, Run, BIN};

/// A project directory and the session `bgtask mcp` gives it.
pub(crate) fn project(bg: &Bg) -> (std::path::PathBuf, String) {
    let dir = bg.path("project");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let session = format!("dir:{}", dir.display());
    (dir, session)
}

/// `bgtask hook AGENT` with the session left to the event's cwd.
pub(crate) fn hook_cmd(bg: &Bg, agent: &str) -> Command {
    let mut cmd = bg.cmd();
    cmd.env_remove("BGTASK_SESSION")
        .env_remove("CLAUDE_CODE_ENTRYPOINT")
        .env_remove("BGTASK_HOOK_WAIT")
        .args(["hook", agent])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

pub(crate) fn start_hook(mut cmd: Command, event: &Value) -> Child {
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(event.to_string().as_bytes()).unwrap();
    child
}

pub(crate) fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn hook(bg: &Bg, agent: &str, event: &Value) -> Run {
    finish(start_hook(hook_cmd(bg, agent), event))
}

pub(crate) fn event(name: &str, cwd: &Path) -> Value {
    json!({"hook_event_name": name, "cwd": cwd, "session_id": "harness-1", "stop_hook_active": false})
}

/// Starts a notifying task in `session` and returns its id.
fn task_in(bg: &Bg, session: &str, command: &str) -> String {
    bg.start(bg.cmd_in(session).args(["run", "--", command]))
}

/// Waits until a hook registered as its session's waiter (it then sleeps
/// on the store's events and the monitors' pidfds).
pub(crate) fn wait_for_waiter(bg: &Bg) {
    let slots = bg.home.join("waiters");
    wait_until("a hook to register as the session's waiter", || {
        std::fs::read_dir(&slots).is_ok_and(|d| {
            d.flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !name.starts_with("blocks-") && !name.starts_with("quiet-")
            })
        })
    });
}

fn pending(bg: &Bg, session: &str) -> Vec<String> {
    let run = bg
        .run_with(bg.cmd_in(session).args(["completions", "--json"]))
        .ok();
    run.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["task_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn inject_with_nothing_pending_prints_nothing_and_creates_no_store() {
    let bg = Bg::new();
    let (dir, _) = project(&bg);
    for name in ["UserPromptSubmit", "PostToolUse", "SessionStart"] {
        let run = hook(&bg, "claude-code", &event(name, &dir));
        assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    }
    assert!(!bg.home.exists(), "a hook created the store");
}

#[test]
fn inject_delivers_each_pending_completion_once_and_acknowledges_it() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let id = task_in(&bg, &session, "echo built-ok");
    bg.wait(&id);
    let other = task_in(&bg, "someone-else", "echo not-yours");
    bg.wait(&other);
    let run = hook(&bg, "claude-code", &event("UserPromptSubmit", &dir)).ok();
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let context = answer["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert_eq!(
        answer["hookSpecificOutput"]["hookEventName"],
        "UserPromptSubmit"
    );
    assert!(
        context.contains(&id) && context.contains("built-ok"),
        "{context}"
    );
    assert!(
        !context.contains(&other),
        "another session's completion: {context}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    assert_eq!(pending(&bg, "someone-else"), vec![other]);
    let again = hook(&bg, "claude-code", &event("UserPromptSubmit", &dir)).ok();
    assert_eq!(again.stdout, "", "delivered twice");
}

#[test]
fn inject_leaves_results_of_bgtasks_own_tools_alone() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let id = task_in(&bg, &session, "true");
    bg.wait(&id);
    let mut own = event("PostToolUse", &dir);
    own["tool_name"] = json!("mcp__bgtask__bash");
    let run = hook(&bg, "claude-code", &own).ok();
    assert_eq!(run.stdout, "");
    assert_eq!(pending(&bg, &session), vec![id.clone()]);
    let mut other = event("PostToolUse", &dir);
    other["tool_name"] = json!("Read");
    let run = hook(&bg, "codex", &other).ok();
    assert!(run.stdout.contains(&id), "{run:?}");
}

#[test]
fn session_start_summarises_the_live_tasks() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("server");
    let id = task_in(&bg, &session, &gate.hold());
    let run = hook(&bg, "gemini", &event("SessionStart", &dir)).ok();
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    let context = answer["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap();
    assert!(
        context.contains(&id) && context.contains("still running"),
        "{context}"
    );
    gate.open();
}

#[test]
fn wake_without_live_tasks_exits_at_once() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    // A task that does not notify holds nothing.
    let quiet = bg.start(
        bg.cmd_in(&session)
            .args(["run", "--no-notify", "--", "sleep 30"]),
    );
    let started = Instant::now();
    let run = hook(&bg, "claude-code", &event("Stop", &dir));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    bg.run(&["kill", &quiet]).ok();
}

#[test]
fn a_server_that_is_ready_no_longer_holds_the_turn() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("server");
    // `run --ready-log` returns once the line is printed (and delivered
    // the `ready` notification itself); the server keeps running.
    let run = bg
        .run_with(bg.cmd_in(&session).args([
            "--json",
            "run",
            "--ready-log",
            "listening",
            "--",
            &format!("echo listening; {}", gate.hold()),
        ]))
        .ok();
    let id = run.json()["task_id"].as_str().unwrap().to_owned();
    assert_eq!(bg.status(&id)["status"], "running", "{run:?}");
    let started = Instant::now();
    for agent in ["claude-code", "codex", "gemini"] {
        let name = if agent == "gemini" {
            "AfterAgent"
        } else {
            "Stop"
        };
        let run = hook(&bg, agent, &event(name, &dir));
        assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{agent}: {run:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    gate.open();
    bg.wait(&id);
}

#[test]
fn a_paused_task_does_not_hold_the_turn() {
    // It ends only once someone resumes it (issue 21): a Stop hook that
    // waited for it would wait for ever.
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let id = task_in(&bg, &session, "sleep 300");
    bg.run(&["pause", &id]).ok();
    let started = Instant::now();
    let run = hook(&bg, "claude-code", &event("Stop", &dir));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    bg.run(&["kill", &id]).ok();
}

#[test]
fn wake_waits_for_the_next_completion_and_wakes_claude_code_with_exit_2() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("build");
    let id = task_in(&bg, &session, &format!("{}; echo build-done", gate.hold()));
    let child = start_hook(hook_cmd(&bg, "claude-code"), &event("Stop", &dir));
    // The hook waits while the task runs.
    wait_for_waiter(&bg);
    gate.open();
    let run = finish(child);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stdout, "", "stdout is the harness's protocol: {run:?}");
    assert!(
        run.stderr.contains(&id) && run.stderr.contains("build-done"),
        "{run:?}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
}

#[test]
fn a_newer_waiter_supersedes_the_older() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("long");
    let id = task_in(&bg, &session, &gate.hold());
    let older = start_hook(hook_cmd(&bg, "claude-code"), &event("Stop", &dir));
    wait_for_waiter(&bg);
    let newer = start_hook(hook_cmd(&bg, "claude-code"), &event("Stop", &dir));
    let older = finish(older);
    assert_eq!((older.code, older.stderr.as_str()), (0, ""), "{older:?}");
    gate.open();
    let newer = finish(newer);
    assert_eq!(newer.code, 2, "{newer:?}");
    assert!(newer.stderr.contains(&id));
}

#[test]
fn gates_answer_block_with_the_notification() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("tests");
    let id = task_in(&bg, &session, &format!("{}; echo 3 passed", gate.hold()));
    let child = start_hook(hook_cmd(&bg, "gemini"), &event("AfterAgent", &dir));
    wait_for_waiter(&bg);
    gate.open();
    let run = finish(child).ok();
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["decision"], "block");
    let reason = answer["reason"].as_str().unwrap();
    assert!(
        reason.contains(&id) && reason.contains("3 passed"),
        "{reason}"
    );
    assert!(pending(&bg, &session).is_empty());
}

#[test]
fn codex_exec_stop_is_a_gate() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let id = task_in(&bg, &session, "sleep 0.3; echo exec-done");
    // A process named codex with `exec` among its arguments runs the hook,
    // as `codex exec` does.
    let codex = bg.path("bin/codex");
    std::fs::create_dir_all(codex.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/bin/bash", &codex).unwrap();
    let event = event("Stop", &dir).to_string();
    let script = format!("echo '{event}' | {BIN} hook codex");
    let mut cmd = Command::new(&codex);
    cmd.args(["-c", &script, "exec"])
        .env("BGTASK_HOME", &bg.home)
        .env_remove("BGTASK_SESSION")
        .stdin(Stdio::null());
    let run = bg.run_with(&mut cmd).ok();
    let answer: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(answer["decision"], "block", "{run:?}");
    assert!(answer["reason"].as_str().unwrap().contains(&id));
}

#[test]
fn a_gate_waits_no_longer_than_its_bound() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("forever");
    task_in(&bg, &session, &gate.hold());
    let mut cmd = hook_cmd(&bg, "gemini");
    cmd.env("BGTASK_HOOK_WAIT", "300ms");
    let started = Instant::now();
    let run = finish(start_hook(cmd, &event("AfterAgent", &dir)));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "{took:?}"
    );
    gate.open();
}

#[test]
fn a_stop_hook_never_blocks_more_often_in_a_row_than_the_harness_allows() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let finished = |n: u32| {
        let id = task_in(&bg, &session, &format!("echo {n}"));
        bg.wait(&id);
    };
    let stop = |active: bool| {
        let mut cmd = hook_cmd(&bg, "claude-code");
        cmd.env("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP", "3");
        let mut e = event("Stop", &dir);
        e["stop_hook_active"] = json!(active);
        finish(start_hook(cmd, &e))
    };
    // Blocks 1 and 2 of a cap of 3; the third would end the turn by force.
    finished(1);
    assert_eq!(stop(false).code, 2);
    finished(2);
    assert_eq!(stop(true).code, 2);
    finished(3);
    let third = stop(true);
    assert_eq!((third.code, third.stderr.as_str()), (0, ""), "{third:?}");
    assert_eq!(pending(&bg, &session).len(), 1, "the third stays pending");
    // A new turn (not caused by the hook) starts the count again.
    assert_eq!(stop(false).code, 2);
    assert!(pending(&bg, &session).is_empty());
}

#[test]
fn interactive_codex_stop_leaves_a_waiter_that_queues_the_notification() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("dev");
    let id = task_in(&bg, &session, &format!("{}; echo compiled", gate.hold()));
    // A stand-in for `codex queue`: records its arguments.
    let queued = bg.path("queued");
    let codex = bg.path("fake-codex");
    std::fs::write(
        &codex,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}.tmp' && mv '{0}.tmp' '{0}'\n",
            queued.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&codex, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = hook_cmd(&bg, "codex");
    cmd.env("BGTASK_CODEX", &codex);
    let started = Instant::now();
    let run = finish(start_hook(cmd, &event("Stop", &dir)));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the Stop hook must not hold the turn"
    );
    gate.open();
    wait_until("the waiter to queue the notification", || queued.exists());
    let args = std::fs::read_to_string(&queued).unwrap();
    assert!(
        args.starts_with("queue\n--thread\nharness-1\n--message\n"),
        "{args}"
    );
    assert!(args.contains(&id) && args.contains("compiled"), "{args}");
    wait_until("the queued notification to be acknowledged", || {
        pending(&bg, &session).is_empty()
    });
}

#[test]
fn claude_codes_stop_hook_is_bounded_only_where_it_holds_a_run() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("long");
    task_in(&bg, &session, &gate.hold());
    // `claude -p` (entrypoint sdk-cli) runs the Stop hook synchronously:
    // it is a gate, bounded.
    let mut cmd = hook_cmd(&bg, "claude-code");
    cmd.env("CLAUDE_CODE_ENTRYPOINT", "sdk-cli")
        .env("BGTASK_HOOK_WAIT", "300ms");
    let run = finish(start_hook(cmd, &event("Stop", &dir)));
    assert_eq!((run.code, run.stderr.as_str()), (0, ""), "{run:?}");
    // Interactive (asyncRewake in the background): the same bound does
    // not apply, it waits on for the task.
    let mut cmd = hook_cmd(&bg, "claude-code");
    cmd.env("CLAUDE_CODE_ENTRYPOINT", "cli")
        .env("BGTASK_HOOK_WAIT", "300ms");
    let mut child = start_hook(cmd, &event("Stop", &dir));
    wait_for_waiter(&bg);
    // An absence has no event to wait for: three times the bound the
    // gate above gave up after, counted from the wait's start.
    std::thread::sleep(Duration::from_millis(900));
    assert!(child.try_wait().unwrap().is_none(), "the wake hook gave up");
    gate.open();
    let run = finish(child);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn a_misconfigured_hook_never_exits_2() {
    // Exit 2 would wake Claude Code's model with the usage error.
    let bg = Bg::new();
    let run = bg.run(&["hook", "no-such-agent"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("no-such-agent"), "{run:?}");
    let mut cmd = hook_cmd(&bg, "claude-code");
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"not json").unwrap();
    let run = finish(child);
    assert_eq!((run.code, run.stdout.as_str()), (1, ""), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
}

/// Whether an inject hook recorded the session as quiet (nothing pending,
/// no live task) at the store's current commit mark.
fn quiet_recorded(bg: &Bg) -> bool {
    std::fs::read_dir(bg.home.join("waiters")).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("quiet-"))
    })
}

/// The context an inject hook added (empty: it printed nothing).
fn injected(bg: &Bg, dir: &Path) -> String {
    let run = hook(bg, "claude-code", &event("UserPromptSubmit", dir)).ok();
    if run.stdout.is_empty() {
        return String::new();
    }
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    answer["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn an_inject_hook_that_found_nothing_still_sees_the_next_completion() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let first = task_in(&bg, &session, "echo first-done");
    bg.wait(&first);
    assert!(injected(&bg, &dir).contains(&first));
    // Nothing pending, no live task: recorded, and the next hooks answer
    // from the record (the store unchanged since).
    assert_eq!(injected(&bg, &dir), "");
    assert!(quiet_recorded(&bg), "the quiet session was not recorded");
    assert_eq!(injected(&bg, &dir), "");
    // Any commit changes the mark: a completion recorded since is seen.
    let second = task_in(&bg, &session, "echo second-done");
    bg.wait(&second);
    let text = injected(&bg, &dir);
    assert!(
        text.contains(&second) && text.contains("second-done"),
        "{text}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    // Another session's quiet record says nothing of this one.
    let other = bg.path("other");
    std::fs::create_dir_all(&other).unwrap();
    assert_eq!(injected(&bg, &other), "");
    let third = task_in(&bg, &session, "echo third-done");
    bg.wait(&third);
    assert_eq!(injected(&bg, &other), "");
    assert!(injected(&bg, &dir).contains(&third));
}

#[test]
fn a_claim_made_void_after_a_quiet_record_is_delivered() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let first = task_in(&bg, &session, "echo first-done");
    bg.wait(&first);
    assert!(injected(&bg, &dir).contains(&first));
    assert_eq!(injected(&bg, &dir), "");
    assert!(quiet_recorded(&bg));
    let id = task_in(&bg, &session, "echo claimed-then-lost");
    bg.wait(&id);
    // Killed between its claim and its print: the claim is void, and no
    // commit follows it.
    let mut cmd = hook_cmd(&bg, "claude-code");
    cmd.env("BGTASK_FAULT", "hook_after_claim");
    let run = finish(start_hook(cmd, &event("UserPromptSubmit", &dir)));
    assert_eq!((run.code, run.stdout.as_str()), (-1, ""), "{run:?}");
    let text = injected(&bg, &dir);
    assert!(
        text.contains(&id) && text.contains("claimed-then-lost"),
        "{text}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
}

#[test]
fn a_live_task_keeps_the_inject_hook_reading_the_store() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("hold");
    let id = task_in(&bg, &session, &gate.hold());
    assert_eq!(injected(&bg, &dir), "");
    assert_eq!(injected(&bg, &dir), "");
    // Its monitor may die without a commit: never recorded as quiet.
    assert!(!quiet_recorded(&bg), "recorded quiet with a live task");
    let monitor = bg.status(&id)["monitor_pid"].as_u64().unwrap();
    let shell = bg.status(&id)["pid"].as_u64().unwrap();
    for pid in [monitor, shell] {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    wait_until("the monitor to die", || {
        !crate::fixture::is_running(u32::try_from(monitor).unwrap())
    });
    // The next hook finds the monitor gone and delivers the lost task.
    let text = injected(&bg, &dir);
    assert!(text.contains(&id), "{text}");
}

#[test]
fn a_wake_hook_woken_by_another_sessions_change_still_delivers_its_own() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let gate = bg.gate("build");
    let id = task_in(&bg, &session, &format!("{}; echo build-done", gate.hold()));
    let child = start_hook(hook_cmd(&bg, "claude-code"), &event("Stop", &dir));
    wait_for_waiter(&bg);
    // Other sessions' changes wake the hook; it finds nothing of its
    // session and sleeps again.
    for _ in 0..3 {
        let other = task_in(&bg, "someone-else", "echo not-yours");
        bg.wait(&other);
    }
    gate.open();
    let run = finish(child);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&id) && !run.stderr.contains("not-yours"),
        "{run:?}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
}
