//! Completion delivery: frames pushed once per server for the session's
//! tasks (whoever started them), drain and ack for exactly-once delivery,
//! durability across a restart, and long-running reminders.
//!
//! Absence is checked against a later event, never against the clock: the
//! server pushes completions in the order they are recorded, so once a
//! later task's frame has arrived, a frame for an earlier one would have
//! arrived before it.

use serde_json::{json, Value};

use crate::fixture::*;

fn drained_ids(result: &Value) -> Vec<String> {
    result["completions"]
        .as_array()
        .expect("a completions array")
        .iter()
        .map(|c| c["task_id"].as_str().expect("a task id").to_owned())
        .collect()
}

#[test]
fn a_task_started_by_the_cli_in_the_session_is_pushed() {
    let bg = Bg::new();
    let mut server = bg.serve();
    // Any reply proves the server is up and watching before the task runs.
    server.call("bash_list", json!({}));
    let id = bg.spawn("echo from the cli; exit 4");
    let frame = server.completion(&id);
    assert_eq!(frame["session"], "test");
    assert_eq!(frame["status"], "failed");
    assert_eq!(frame["exit_code"], 4);
    assert_eq!(frame["command"], "echo from the cli; exit 4");
    assert_eq!(frame["output_preview"], "from the cli\n");
    assert_eq!(frame["output_truncated"], false);
    for field in [
        "signal",
        "reason",
        "duration_ms",
        "stdout_path",
        "stderr_path",
    ] {
        assert!(frame.get(field).is_some(), "missing {field} in {frame}");
    }
    assert_eq!(
        drained_ids(&server.call("bash_drain_completions", json!({}))),
        [id.as_str()],
        "pushing does not acknowledge"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_task_of_another_session_is_not_pushed() {
    let bg = Bg::new();
    let mut server = bg.serve();
    server.call("bash_list", json!({}));
    let theirs = bg.spawn_in("other", "echo theirs");
    bg.wait(&theirs);
    let mine = bg.spawn("echo mine");
    server.completion(&mine);
    assert!(!server.has_seen("bash_completed", &theirs));
    assert_eq!(
        drained_ids(&server.call("bash_drain_completions", json!({}))),
        [mine.as_str()]
    );
    let error = server.call_error("bash_ack_completions", json!({"task_ids": [theirs]}));
    assert_eq!(error["code"], -32000);
    assert_eq!(
        error["data"]["kind"], "task_not_found",
        "another session's completion cannot be acked here"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn drain_peeks_and_ack_removes_once_and_idempotently() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let first = server.call("bash", json!({"command": "echo one", "background": true}));
    let first = first["task_id"].as_str().unwrap().to_owned();
    server.completion(&first);
    let second = server.call(
        "bash",
        json!({"command": "echo two; exit 2", "background": true}),
    );
    let second = second["task_id"].as_str().unwrap().to_owned();
    server.completion(&second);

    let drained = server.call("bash_drain_completions", json!({}));
    assert_eq!(
        drained_ids(&drained),
        [first.as_str(), second.as_str()],
        "oldest first"
    );
    let c = &drained["completions"][1];
    assert_eq!(c["status"], "failed");
    assert_eq!(c["exit_code"], 2);
    assert_eq!(c["output_preview"], "two\n");
    assert_eq!(
        server.call("bash_drain_completions", json!({})),
        drained,
        "draining does not consume"
    );

    let unknown = "bg-00000000000000ff";
    let error = server.call_error(
        "bash_ack_completions",
        json!({"task_ids": [first, unknown]}),
    );
    assert_eq!(error["code"], -32000);
    assert_eq!(error["data"]["kind"], "task_not_found");
    assert!(
        error["message"].as_str().unwrap().contains(unknown),
        "{error}"
    );
    assert_eq!(
        drained_ids(&server.call("bash_drain_completions", json!({}))),
        [first.as_str(), second.as_str()],
        "a failed ack acknowledges nothing"
    );

    let acked = server.call("bash_ack_completions", json!({"task_ids": [first]}));
    assert_eq!(acked["acked"], 1);
    assert_eq!(
        drained_ids(&server.call("bash_drain_completions", json!({}))),
        [second.as_str()]
    );
    let again = server.call("bash_ack_completions", json!({"task_ids": [first, second]}));
    assert_eq!(again["acked"], 1, "acking again is harmless");
    let none = server.call("bash_drain_completions", json!({}));
    assert_eq!(none["completions"], json!([]));
    let empty = server.call("bash_ack_completions", json!({"task_ids": []}));
    assert_eq!(empty["acked"], 0);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn completions_survive_a_restart_and_are_drained_not_pushed_again() {
    let bg = Bg::new();
    let mut first_server = bg.serve();
    let pushed = first_server.call("bash", json!({"command": "echo a", "background": true}));
    let pushed = pushed["task_id"].as_str().unwrap().to_owned();
    first_server.completion(&pushed);
    assert_eq!(first_server.close().code(), Some(0));
    // This one ends while no server runs.
    let unseen = bg.spawn("echo b");
    bg.wait(&unseen);

    let mut server = bg.serve();
    let later = server.call("bash", json!({"command": "echo c", "background": true}));
    let later = later["task_id"].as_str().unwrap().to_owned();
    server.completion(&later);
    assert!(
        !server.has_seen("bash_completed", &pushed) && !server.has_seen("bash_completed", &unseen),
        "a completion recorded before the server started is not pushed: {:#?}",
        server.seen()
    );
    assert_eq!(
        drained_ids(&server.call("bash_drain_completions", json!({}))),
        [pushed.as_str(), unseen.as_str(), later.as_str()],
        "every unacknowledged completion is drained"
    );
    let acked = server.call(
        "bash_ack_completions",
        json!({"task_ids": [pushed, unseen, later]}),
    );
    assert_eq!(acked["acked"], 3);
    assert_eq!(server.close().code(), Some(0));

    let mut server = bg.serve();
    let left = server.call("bash_drain_completions", json!({}));
    assert_eq!(left["completions"], json!([]), "acks are durable");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_task_ending_after_initialize_chose_its_session_is_pushed() {
    let bg = Bg::new();
    let gate = bg.gate("agent");
    let mut server = bg.serve();
    server.call("bash_list", json!({}));
    // Running in the session the client is about to choose; nothing else
    // happens in the store until it ends.
    let id = bg.spawn_in("agent", &format!("{}; echo late", gate.hold()));
    let init = server.call("initialize", json!({"session": "agent"}));
    assert_eq!(init["session"], "agent");
    gate.open();
    let frame = server.completion(&id);
    assert_eq!(frame["session"], "agent");
    assert_eq!(frame["output_preview"], "late\n");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn long_running_reminders_follow_the_interval() {
    let bg = Bg::new();
    let gate = bg.gate("long");
    // Started before the servers' initialize: the new interval must apply
    // to a task that is already running.
    let id = bg.spawn(&format!("echo READY; {}", gate.hold()));
    let quiet_id = bg.spawn_in("quiet", &gate.hold());
    let mut reminded = bg.serve();
    let mut silent = bg.serve();
    reminded.call("bash_list", json!({}));
    silent.call("bash_list", json!({}));
    reminded.call("initialize", json!({"long_running_interval_ms": 300}));
    silent.call("initialize", json!({"long_running_interval_ms": 0}));

    let first = reminded.notification("bash_long_running", |p| p["task_id"] == id.as_str());
    assert_eq!(first["session"], "test");
    assert_eq!(first["command"], format!("echo READY; {}", gate.hold()));
    let second = reminded.notification("bash_long_running", |p| p["task_id"] == id.as_str());
    assert!(
        second["elapsed_ms"].as_i64().unwrap() > first["elapsed_ms"].as_i64().unwrap(),
        "{first} then {second}"
    );
    assert!(
        !reminded.has_seen("bash_long_running", &quiet_id),
        "only the server's session is reminded"
    );

    gate.open();
    reminded.completion(&id);
    silent.completion(&id);
    assert!(
        silent
            .seen()
            .iter()
            .all(|f| f["method"] != "bash_long_running"),
        "an interval of 0 turns reminders off: {:#?}",
        silent.seen()
    );
    assert_eq!(reminded.close().code(), Some(0));
    assert_eq!(silent.close().code(), Some(0));
}

#[test]
fn initializing_again_pushes_each_completion_once() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let mut ids = Vec::new();
    for params in [
        json!({"session": "test"}),
        json!({}),
        json!({"session": "test"}),
    ] {
        server.call("initialize", params);
        let task = server.call("bash", json!({"command": "true", "background": true}));
        let id = task["task_id"].as_str().unwrap().to_owned();
        server.completion(&id);
        ids.push(id);
    }
    let last = server.call("bash", json!({"command": "true", "background": true}));
    server.completion(last["task_id"].as_str().unwrap());
    for id in &ids {
        let frames = server
            .seen()
            .iter()
            .filter(|f| f["method"] == "bash_completed" && f["params"]["task_id"] == id.as_str())
            .count();
        assert_eq!(frames, 1, "one frame for {id}: {:#?}", server.seen());
    }
    assert_eq!(server.close().code(), Some(0));
}
