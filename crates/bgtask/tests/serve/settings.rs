//! The settings agents' tasks get: `[agent]` in the config file, and a
//! call's own limits over them.

use serde_json::json;

use crate::fixture::*;

#[test]
fn agents_tasks_take_the_agent_settings_and_a_call_may_override_them() {
    let bg = Bg::new();
    bg.write_config("[run]\ntimeout = \"2h\"\n[agent]\ntimeout = \"5m\"\nidle_timeout = \"1m\"\n");
    let mut server = bg.serve();
    let task = server.call("bash", json!({"command": "true", "background": true}));
    let id = task["task_id"].as_str().unwrap().to_owned();
    let status = bg.status(&id);
    assert_eq!(status["timeout_ms"], 5 * 60 * 1000, "{status}");
    assert_eq!(status["idle_timeout_ms"], 60 * 1000, "{status}");
    let task = server.call(
        "bash",
        json!({"command": "true", "background": true, "timeout_ms": 0, "idle_timeout_ms": 0}),
    );
    let status = bg.status(task["task_id"].as_str().unwrap());
    assert_eq!(
        status["timeout_ms"],
        serde_json::Value::Null,
        "0 means no limit: {status}"
    );
    assert_eq!(
        status["idle_timeout_ms"],
        serde_json::Value::Null,
        "{status}"
    );
}
