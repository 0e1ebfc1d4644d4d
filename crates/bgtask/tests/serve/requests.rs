//! The request methods: concurrency, the foreground window and promotion,
//! incremental output, kill, wait, list and sessions.

use serde_json::{json, Value};

use crate::fixture::*;

/// The task ids of a `{tasks: [...]}` result.
fn task_ids(result: &Value) -> Vec<&str> {
    result["tasks"]
        .as_array()
        .expect("a tasks array")
        .iter()
        .map(|t| t["task_id"].as_str().expect("a task id"))
        .collect()
}

#[test]
fn a_long_wait_does_not_block_a_later_request() {
    let bg = Bg::new();
    let gate = bg.gate("wait");
    let mut server = bg.serve();
    let task = server.call(
        "bash",
        json!({"command": format!("echo READY; {}; echo done", gate.hold()), "background": true}),
    );
    let id = task["task_id"].as_str().unwrap().to_owned();

    let wait = server.request(
        "bash_wait",
        json!({"task_ids": [id], "timeout_ms": 120_000}),
    );
    let status = server.request("bash_status", json!({"task_id": id}));
    let status = server.reply(status);
    let now = &status["result"]["status"];
    assert!(now == "starting" || now == "running", "{status}");
    assert!(
        !server.has_reply(wait),
        "the wait cannot be answered before the task ends"
    );

    gate.open();
    let waited = server.reply(wait)["result"].clone();
    assert_eq!(waited["timed_out"], false);
    assert_eq!(waited["tasks"][0]["task_id"], id.as_str());
    assert_eq!(waited["tasks"][0]["status"], "completed");
    let order: Vec<&Value> = server
        .seen()
        .iter()
        .filter(|f| f.get("method").is_none())
        .map(|f| &f["id"])
        .collect();
    assert_eq!(
        order,
        [&json!(1), &json!(status["id"]), &json!(wait)],
        "replies follow completion, not request order"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_command_ending_inside_the_window_returns_its_result_and_no_completion() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let result = server.call(
        "bash",
        json!({"command": "echo out; echo err >&2; exit 3", "wait_ms": 60_000}),
    );
    assert_eq!(result["background"], false);
    assert_eq!(result["status"], "failed");
    assert_eq!(result["exit_code"], 3);
    assert_eq!(result["output"], "out\n\n[stderr]\nerr\n");
    assert_eq!(result["output_truncated"], false);
    assert_eq!(result["notify"], false, "an inline result is not notified");
    for field in [
        "task_id",
        "session",
        "duration_ms",
        "stdout_path",
        "stderr_path",
    ] {
        assert!(result.get(field).is_some(), "missing {field} in {result}");
    }
    let inline = result["task_id"].as_str().unwrap();

    // Completions are pushed in the order they are recorded: once a later
    // task's frame is here, an inline task's frame would have come first.
    let later = server.call("bash", json!({"command": "true", "background": true}));
    let later = later["task_id"].as_str().unwrap();
    server.completion(later);
    assert!(
        !server.has_seen("bash_completed", inline),
        "no frame for an inline result"
    );
    let drained = server.call("bash_drain_completions", json!({}));
    let drained: Vec<&str> = drained["completions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(drained, [later], "no completion for an inline result");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_command_outliving_the_window_is_promoted_and_completes_later() {
    let bg = Bg::new();
    let gate = bg.gate("promote");
    let mut server = bg.serve();
    let reply = server.call(
        "bash",
        json!({"command": format!("echo started; {}; echo finished", gate.hold()), "wait_ms": 200}),
    );
    assert_eq!(reply["background"], true);
    assert_eq!(reply["status"], "running");
    assert_eq!(reply["notify_on_completion"], true);
    let id = reply["task_id"].as_str().unwrap().to_owned();
    for field in ["pid", "started_at", "stdout_path", "stderr_path", "command"] {
        assert!(reply.get(field).is_some(), "missing {field} in {reply}");
    }
    assert_eq!(
        server.call("bash_status", json!({"task_id": id}))["notify"],
        true
    );

    gate.open();
    let done = server.completion(&id);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["exit_code"], 0);
    assert_eq!(done["session"], "test");
    assert_eq!(done["output_preview"], "started\nfinished\n");

    let drained = server.call("bash_drain_completions", json!({}));
    assert_eq!(drained["completions"][0]["task_id"], id.as_str());
    assert_eq!(
        server.call("bash_drain_completions", json!({})),
        drained,
        "draining does not consume"
    );
    let acked = server.call("bash_ack_completions", json!({"task_ids": [id]}));
    assert_eq!(acked["acked"], 1);
    let drained = server.call("bash_drain_completions", json!({}));
    assert_eq!(drained["completions"], json!([]));
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_command_that_opts_out_of_notification_is_not_promoted() {
    let bg = Bg::new();
    let gate = bg.gate("quiet");
    let mut server = bg.serve();
    let reply = server.call(
        "bash",
        json!({"command": gate.hold(), "wait_ms": 100, "notify_on_completion": false}),
    );
    assert_eq!(reply["background"], true);
    assert_eq!(reply["notify_on_completion"], false);
    let quiet = reply["task_id"].as_str().unwrap().to_owned();
    gate.open();
    server.call(
        "bash_wait",
        json!({"task_ids": [quiet], "timeout_ms": 60_000}),
    );

    let later = server.call("bash", json!({"command": "true", "background": true}));
    server.completion(later["task_id"].as_str().unwrap());
    assert!(!server.has_seen("bash_completed", &quiet));
    let drained = server.call("bash_drain_completions", json!({}));
    assert_eq!(drained["completions"].as_array().unwrap().len(), 1);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn promote_turns_on_delivery_for_a_finished_task() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let inline = server.call("bash", json!({"command": "echo hi", "wait_ms": 60_000}));
    assert_eq!(inline["background"], false);
    let id = inline["task_id"].as_str().unwrap();
    assert_eq!(
        server.call("bash_drain_completions", json!({}))["completions"],
        json!([])
    );

    let promoted = server.call("bash_promote", json!({"task_id": id}));
    assert_eq!(promoted, json!({"task_id": id, "promoted": true}));
    let frame = server.completion(id);
    assert_eq!(frame["output_preview"], "hi\n");
    let drained = server.call("bash_drain_completions", json!({}));
    assert_eq!(drained["completions"][0]["task_id"], id);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn output_is_read_incrementally_by_offset() {
    let bg = Bg::new();
    let gate = bg.gate("output");
    let mut server = bg.serve();
    let task = server.call(
        "bash",
        json!({
            "command": format!("echo one; echo oops >&2; {}; echo two", gate.hold()),
            "background": true,
        }),
    );
    let id = task["task_id"].as_str().unwrap().to_owned();
    let mut read = |offset: u64, extra: Value| {
        let mut params = json!({"task_id": id, "offset": offset});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        server.call("bash_output", params)
    };

    let mut first = Value::Null;
    wait_until("the first line", || {
        first = read(0, json!({}));
        first["data"] == "one\n"
    });
    assert_eq!(first["offset"], 0);
    assert_eq!(first["next_offset"], 4);
    assert_eq!(first["eof"], false, "a running task may write more");
    assert_eq!(first["truncated"], false);

    let part = read(0, json!({"max_bytes": 2}));
    assert_eq!(part["data"], "on");
    assert_eq!(part["next_offset"], 2);
    assert_eq!(part["truncated"], true, "more is already there");
    let err = read(0, json!({"stream": "stderr"}));
    assert_eq!(err["data"], "oops\n");

    gate.open();
    let waited = server.call("bash_wait", json!({"task_ids": [id], "timeout_ms": 60_000}));
    assert_eq!(waited["timed_out"], false);
    let rest = server.call("bash_output", json!({"task_id": id, "offset": 4}));
    assert_eq!(rest["data"], "two\n");
    assert_eq!(rest["offset"], 4);
    assert_eq!(rest["next_offset"], 8);
    assert_eq!(rest["eof"], true);
    let beyond = server.call("bash_output", json!({"task_id": id, "offset": 8}));
    assert_eq!(beyond["data"], "");
    assert_eq!(beyond["eof"], true);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn kill_returns_the_final_task_and_it_completes() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let task = server.call(
        "bash",
        json!({"command": "echo READY; exec sleep 300", "background": true}),
    );
    let id = task["task_id"].as_str().unwrap().to_owned();
    let killed = server.call("bash_kill", json!({"task_id": id, "grace_ms": 5_000}));
    assert_eq!(killed["task_id"], id.as_str());
    assert_eq!(killed["status"], "killed");
    assert_eq!(killed["exit_code"], 143);
    assert_eq!(killed["signal"], "SIGTERM");
    assert_eq!(killed["reason"], "killed on request");
    assert!(!killed["finished_at"].is_null());

    let again = server.call("bash_kill", json!({"task_id": id}));
    assert_eq!(again, killed, "a finished task keeps its end");
    let frame = server.completion(&id);
    assert_eq!(frame["status"], "killed");
    assert_eq!(frame["exit_code"], 143);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn wait_with_a_timeout_reports_timed_out() {
    let bg = Bg::new();
    let gate = bg.gate("timeout");
    let mut server = bg.serve();
    let held = server.call("bash", json!({"command": gate.hold(), "background": true}));
    let quick = server.call("bash", json!({"command": "true", "wait_ms": 60_000}));
    let (held, quick) = (
        held["task_id"].as_str().unwrap().to_owned(),
        quick["task_id"].as_str().unwrap().to_owned(),
    );

    let waited = server.call(
        "bash_wait",
        json!({"task_ids": [quick, held], "timeout_ms": 200}),
    );
    assert_eq!(waited["timed_out"], true);
    assert_eq!(task_ids(&waited), [quick.as_str(), held.as_str()]);
    assert_eq!(waited["tasks"][0]["status"], "completed");
    assert_eq!(waited["tasks"][1]["status"], "running");

    gate.open();
    let waited = server.call(
        "bash_wait",
        json!({"task_ids": [quick, held], "timeout_ms": 60_000}),
    );
    assert_eq!(waited["timed_out"], false);
    assert_eq!(waited["tasks"][1]["status"], "completed");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn list_shows_this_session_unless_asked_for_all() {
    let bg = Bg::new();
    let theirs = bg.spawn_in("other", "true");
    bg.wait(&theirs);
    let mut server = bg.serve();
    let mine = server.call("bash", json!({"command": "true", "wait_ms": 60_000}));
    let mine = mine["task_id"].as_str().unwrap();

    let listed = server.call("bash_list", json!({}));
    assert_eq!(task_ids(&listed), [mine]);
    let all = server.call("bash_list", json!({"all_sessions": true}));
    assert_eq!(
        task_ids(&all),
        [mine, theirs.as_str()],
        "every session, newest first"
    );
    let running = server.call(
        "bash_list",
        json!({"all_sessions": true, "status": "running"}),
    );
    assert_eq!(running["tasks"], json!([]));
    let completed = server.call("bash_list", json!({"status": "completed"}));
    assert_eq!(task_ids(&completed), [mine]);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn initialize_chooses_the_session_and_the_default_cwd() {
    let bg = Bg::new();
    let theirs = bg.spawn_in("other", "true");
    bg.wait(&theirs);
    let project = bg.path("project");
    std::fs::create_dir(&project).unwrap();
    let mut server = bg.serve();

    let listed = server.call("bash_list", json!({}));
    assert_eq!(
        listed["tasks"],
        json!([]),
        "the session from BGTASK_SESSION"
    );
    let init = server.call(
        "initialize",
        json!({"session": "other", "project_root": project}),
    );
    assert_eq!(init["server"], "bgtask");
    assert_eq!(init["protocol_version"], 1);
    assert_eq!(init["session"], "other");
    assert!(init["version"].is_string());
    assert_eq!(
        task_ids(&server.call("bash_list", json!({}))),
        [theirs.as_str()]
    );

    let pwd = server.call("bash", json!({"command": "pwd", "wait_ms": 60_000}));
    assert_eq!(pwd["session"], "other");
    assert_eq!(pwd["output"], format!("{}\n", project.display()));
    let elsewhere = server.call(
        "bash",
        json!({"command": "pwd", "wait_ms": 60_000, "cwd": bg.dir.path()}),
    );
    assert_eq!(
        elsewhere["output"],
        format!("{}\n", bg.dir.path().display()),
        "cwd wins over project_root"
    );

    let default = server.call("initialize", json!({}));
    assert_eq!(default["session"], "other", "initialize keeps the session");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn background_starts_reported_one_after_another_and_at_once_all_run() {
    // A background `bash` is answered once its task is recorded (as
    // `bgtask run` is), one after another or several at once: each reply
    // names its own task, which then runs.
    let bg = Bg::new();
    let mut server = bg.serve();
    let command = json!({"command": "exec sleep 300", "background": true});
    let mut replies: Vec<Value> = (0..5)
        .map(|_| server.call("bash", command.clone()))
        .collect();
    let at_once: Vec<i64> = (0..5)
        .map(|_| server.request("bash", command.clone()))
        .collect();
    replies.extend(
        at_once
            .into_iter()
            .map(|id| server.reply(id)["result"].clone()),
    );
    let mut ids: Vec<&str> = replies
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ten tasks: {replies:?}");
    for reply in &replies {
        assert!(
            reply["status"] == "starting" || reply["status"] == "running",
            "{reply}"
        );
        let id = reply["task_id"].clone();
        let mut status = Value::Null;
        wait_until("the task runs", || {
            status = server.call("bash_status", json!({"task_id": id}));
            status["status"] == "running"
        });
        let pid = status["pid"].as_u64().expect("a pid") as u32;
        assert!(is_running(pid), "the task's shell runs: {status}");
    }
    for reply in &replies {
        server.call("bash_kill", json!({"task_id": reply["task_id"]}));
    }
}

#[test]
fn a_background_bash_is_answered_before_its_shell_starts_and_input_waits_for_it() {
    // The monitor stops itself after its go, before it starts the shell:
    // the reply must not wait for the shell (it came after 10 s before),
    // and a request to the monitor waits for the start instead of failing.
    let bg = Bg::new();
    let mut cmd = bg.cmd();
    cmd.env("BGTASK_FAULT", "monitor_stop_before_start");
    let mut server = bg.serve_with(cmd);
    let asked = std::time::Instant::now();
    let reply = server.call(
        "bash",
        json!({"command": "read -r line; echo \"got $line\"", "stdin": true, "background": true}),
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(5),
        "answered without waiting for the shell: {reply}"
    );
    assert_eq!(reply["status"], "starting", "{reply}");
    assert_eq!(reply["pid"], Value::Null, "{reply}");
    assert_eq!(reply["background"], true, "{reply}");
    let id = reply["task_id"].as_str().expect("a task id").to_owned();
    let monitor = bg.status(&id)["monitor_pid"].as_u64().expect("a monitor") as u32;
    // Dropped before `bg`: a failed assertion below still lets the monitor
    // go on, so the fixture's kill reaches it and nothing is left stopped.
    let _continued = ContinueOnDrop(monitor);
    wait_until("the monitor stops", || {
        std::fs::read_to_string(format!("/proc/{monitor}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('T'))
        })
    });
    let write = server.request("bash_write", json!({"task_id": id, "data": "one\n"}));
    let cont = std::process::Command::new("kill")
        .args(["-CONT", &monitor.to_string()])
        .status()
        .expect("kill");
    assert!(cont.success());
    let written = server.reply(write);
    let sent = &written["result"];
    assert_eq!(
        sent["written"].as_u64().unwrap_or(0) + sent["queued"].as_u64().unwrap_or(0),
        4,
        "{written}"
    );
    let done = server.call("bash_wait", json!({"task_ids": [id], "timeout_ms": 30_000}));
    assert_eq!(done["tasks"][0]["status"], "completed", "{done}");
    assert_eq!(
        server.call("bash_output", json!({"task_id": id}))["data"],
        "got one\n"
    );
    assert_eq!(server.close().code(), Some(0));
}

/// Sends SIGCONT to a stopped process when dropped.
struct ContinueOnDrop(u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}
