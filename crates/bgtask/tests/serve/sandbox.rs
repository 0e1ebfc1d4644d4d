//! Agents' sandbox: the configured default applies to every `bash`, a call
//! may only narrow it, and its `env` may not change what runs.

use serde_json::{json, Value};

use crate::fixture::*;

/// The stdout of a finished `bash` task.
fn stdout_of(task: &Value) -> String {
    std::fs::read_to_string(task["stdout_path"].as_str().unwrap()).unwrap()
}

#[test]
fn an_agent_gets_the_configured_sandbox_and_cannot_widen_it() {
    let bg = Bg::new();
    let work = bg.path("work");
    std::fs::create_dir_all(&work).unwrap();
    bg.write_config("[sandbox]\nagent = \"workspace\"\n");
    let mut server = bg.serve();
    server.call("initialize", json!({"project_root": work}));
    let first = server.call_frame(
        "bash",
        json!({"command": "echo in > inside; cat inside", "wait_ms": 30000}),
    );
    if let Some(error) = first.get("error") {
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("cannot sandbox"), "{error}");
        eprintln!("skipped: this machine cannot sandbox tasks: {message}");
        return;
    }
    let task = &first["result"];
    assert_eq!(task["sandbox"]["mode"], "workspace", "{task}");
    assert_eq!(task["status"], "completed", "{task}");
    // Another cwd does not move the workspace: the server's stays the
    // only tree it may write.
    let outside = bg.path("outside");
    let task = server.call(
        "bash",
        json!({"command": "echo x > outside", "cwd": bg.path(""), "wait_ms": 30000}),
    );
    assert_eq!(task["status"], "failed", "{task}");
    assert!(!outside.exists());
    assert!(
        task["reason"].as_str().unwrap().contains("sandbox"),
        "{task}"
    );
    // Widening is refused, naming what was asked.
    for params in [
        json!({"command": "true", "sandbox": "none"}),
        json!({"command": "true", "allow_write": [bg.path("")]}),
    ] {
        let error = server.call_error("bash", params.clone());
        assert_eq!(
            error["data"]["kind"], "invalid_argument",
            "{params}: {error}"
        );
        assert!(
            error["message"].as_str().unwrap().contains("only narrow"),
            "{params}: {error}"
        );
    }
    // Narrowing is fine.
    let task = server.call(
        "bash",
        json!({"command": "echo x > inside2; echo $?", "sandbox": "read-only", "wait_ms": 30000}),
    );
    assert_eq!(task["sandbox"]["mode"], "read-only", "{task}");
    assert!(!work.join("inside2").exists(), "{task}");
    assert!(stdout_of(&task).contains('1'), "{task}");
    // The notification of a failed sandboxed task carries its sandbox and
    // says it may be why.
    let task = server.call("bash", json!({"command": "exit 3", "background": true}));
    let done = server.completion(task["task_id"].as_str().unwrap());
    assert_eq!(done["sandbox"]["mode"], "workspace", "{done}");
    assert!(
        done["reason"].as_str().unwrap().contains("ran sandboxed"),
        "{done}"
    );
}

#[test]
fn an_agent_with_no_network_configured_cannot_open_it() {
    let bg = Bg::new();
    bg.write_config("[sandbox]\nagent_no_network = true\n");
    let mut server = bg.serve();
    let error = server.call_error("bash", json!({"command": "true", "no_network": false}));
    assert!(
        error["message"].as_str().unwrap().contains("only narrow"),
        "{error}"
    );
}

#[test]
fn an_agent_may_not_set_variables_that_change_what_runs() {
    let bg = Bg::new();
    let mut server = bg.serve();
    for key in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "BASH_ENV",
        "ENV",
        "IFS",
        "PATH",
    ] {
        let error = server.call_error(
            "bash",
            json!({"command": "true", "env": {key: "/tmp/secret-value.so"}}),
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(key), "{key}: {error}");
        assert!(
            !message.contains("secret-value"),
            "never the value: {error}"
        );
        assert_eq!(error["data"]["kind"], "invalid_argument", "{error}");
    }
    assert!(bg.list_all().is_empty(), "nothing started");
    // Other variables pass.
    let task = server.call(
        "bash",
        json!({"command": "echo $GREETING", "env": {"GREETING": "hello"}, "wait_ms": 30000}),
    );
    assert_eq!(stdout_of(&task), "hello\n");
}
