//! `bash_pause` and `bash_resume` through `serve` (issue 21); the CLI
//! tests (`tests/cli/pause.rs`) cover what a pause does to the tree.

use serde_json::json;

use crate::fixture::*;

#[test]
fn a_task_is_paused_and_resumed_and_bad_requests_say_why() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let task = server.call("bash", json!({"command": "sleep 300", "background": true}));
    let id = task["task_id"].as_str().unwrap().to_owned();
    wait_until("the task to run", || {
        server.call("bash_status", json!({"task_id": id}))["status"] == "running"
    });
    let paused = server.call("bash_pause", json!({"task_id": id}));
    assert_eq!(paused["status"], "paused", "{paused}");
    assert!(paused["paused_at"].as_i64().is_some(), "{paused}");
    let again = server.call_error("bash_pause", json!({"task_id": id}));
    assert_eq!(again["data"]["kind"], "invalid_state", "{again}");
    assert_eq!(again["code"], -32000, "{again}");
    let resumed = server.call("bash_resume", json!({"task_id": id}));
    assert_eq!(resumed["status"], "running", "{resumed}");
    let not_paused = server.call_error("bash_resume", json!({"task_id": id}));
    assert_eq!(not_paused["data"]["kind"], "invalid_state", "{not_paused}");
    let unknown = server.call_error("bash_pause", json!({"task_id": "bg-0123456789abcdef"}));
    assert_eq!(unknown["data"]["kind"], "task_not_found", "{unknown}");
    let missing = server.call_error("bash_pause", json!({}));
    assert_eq!(missing["code"], -32602, "{missing}");
    server.call("bash_kill", json!({"task_id": id, "grace_ms": 0}));
}
