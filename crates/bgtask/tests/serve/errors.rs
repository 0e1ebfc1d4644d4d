//! Every error code: malformed lines, unknown methods, bad params and
//! application errors with their `data.kind`. A bad line never ends the
//! server.

use serde_json::{json, Value};

use crate::fixture::*;

/// Sends a raw line and returns the error object of its reply (which must
/// carry `id`).
#[track_caller]
fn error_for_line(server: &mut crate::client::Server, line: &[u8], id: Value) -> Value {
    server.send_raw(line);
    let reply = server.reply(id);
    reply["error"].clone()
}

#[test]
fn malformed_lines_get_standard_errors_and_the_server_keeps_serving() {
    let bg = Bg::new();
    let mut server = bg.serve();

    let cases: [(&[u8], Value, i64); 8] = [
        (b"this is not json\n", Value::Null, -32700),
        (b"{\"jsonrpc\": \"2.0\", \"id\": 1,\n", Value::Null, -32700),
        (b"\xff\xfe{}\n", Value::Null, -32700),
        (b"[1, 2]\n", Value::Null, -32600),
        (b"\"just a string\"\n", Value::Null, -32600),
        (
            b"{\"id\": 11, \"method\": \"bash_list\"}\n",
            json!(11),
            -32600,
        ),
        (
            b"{\"jsonrpc\": \"1.0\", \"id\": 12, \"method\": \"bash_list\"}\n",
            json!(12),
            -32600,
        ),
        (
            b"{\"jsonrpc\": \"2.0\", \"id\": 13, \"method\": 7}\n",
            json!(13),
            -32600,
        ),
    ];
    for (line, id, code) in cases {
        let error = error_for_line(&mut server, line, id);
        assert_eq!(
            error["code"],
            code,
            "{:?} → {error}",
            String::from_utf8_lossy(line)
        );
        assert!(error["message"].is_string());
    }
    let utf8 = server
        .seen()
        .iter()
        .find(|f| {
            f["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("UTF-8"))
        })
        .cloned();
    assert!(utf8.is_some(), "the invalid UTF-8 line is named as such");

    // Blank lines are skipped and a notification (no id) gets no reply.
    server.send_raw(b"\n   \n");
    server.send(&json!({"jsonrpc": "2.0", "method": "bash_list"}));
    let ok = server.call("bash_list", json!({}));
    assert_eq!(ok["tasks"], json!([]));
    assert_eq!(
        server.seen().len(),
        9,
        "one reply per bad line and one for the request, nothing else: {:#?}",
        server.seen()
    );

    // A string id is echoed as it came.
    server.send(&json!({"jsonrpc": "2.0", "id": "abc", "method": "bash_list"}));
    assert_eq!(server.reply("abc")["result"]["tasks"], json!([]));
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn an_invalid_id_is_answered_with_a_null_id() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let error = error_for_line(
        &mut server,
        b"{\"jsonrpc\": \"2.0\", \"id\": {\"a\": 1}, \"method\": \"bash_list\"}\n",
        Value::Null,
    );
    assert_eq!(error["code"], -32600, "{error}");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn unknown_methods_and_bad_params_are_named() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let unknown = server.call_error("bash_frobnicate", json!({}));
    assert_eq!(unknown["code"], -32601);
    assert!(unknown["message"]
        .as_str()
        .unwrap()
        .contains("bash_frobnicate"));

    let cases = [
        ("bash", json!({}), "command"),
        ("bash", json!({"command": 5}), "command"),
        (
            "bash",
            json!({"command": "true", "wait_ms": "soon"}),
            "wait_ms",
        ),
        (
            "bash",
            json!({"command": "true", "timeout_ms": -1}),
            "timeout_ms",
        ),
        ("bash", json!({"command": "true", "env": {"A": 1}}), "env"),
        ("bash_status", json!({}), "task_id"),
        ("bash_status", json!({"task_id": "nope"}), "task_id"),
        (
            "bash_output",
            json!({"task_id": "bg-00000000000000ff", "stream": "both"}),
            "stream",
        ),
        ("bash_list", json!({"status": "sleeping"}), "status"),
        ("bash_list", json!({"all_sessions": "yes"}), "all_sessions"),
        (
            "bash_kill",
            json!({"task_id": "bg-00000000000000ff", "grace_ms": 1.5}),
            "grace_ms",
        ),
        ("bash_wait", json!({"task_ids": []}), "task_ids"),
        (
            "bash_wait",
            json!({"task_ids": "bg-00000000000000ff"}),
            "task_ids",
        ),
        ("bash_ack_completions", json!({}), "task_ids"),
        (
            "bash_ack_completions",
            json!({"task_ids": ["x"]}),
            "task_id",
        ),
        ("initialize", json!({"session": ""}), "session"),
        (
            "initialize",
            json!({"long_running_interval_ms": true}),
            "long_running_interval_ms",
        ),
    ];
    for (method, params, field) in cases {
        let error = server.call_error(method, params.clone());
        assert_eq!(error["code"], -32602, "{method} {params} → {error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{method} {params}: the message names {field}: {message}"
        );
    }
    let error = server.call_error("bash", json!({"command": "   "}));
    assert_eq!(error["code"], -32602);
    assert_eq!(error["data"]["kind"], "invalid_argument");
    let error = server.call_error("bash", json!({"command": "true", "max_output_bytes": 10}));
    assert_eq!(error["data"]["kind"], "invalid_argument");
    let error = server.call_error("bash", json!({"command": "true", "env": {"A=B": "c"}}));
    assert_eq!(error["data"]["kind"], "invalid_argument");

    server.send(&json!({"jsonrpc": "2.0", "id": 99, "method": "bash_list", "params": [true]}));
    assert_eq!(server.reply(99)["error"]["code"], -32602);
    assert_eq!(
        server.call("bash_list", json!({}))["tasks"],
        json!([]),
        "nothing was started by a bad request"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn application_errors_carry_a_kind() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let missing = "bg-00000000000000ff";
    for (method, params) in [
        ("bash_status", json!({"task_id": missing})),
        ("bash_output", json!({"task_id": missing})),
        ("bash_kill", json!({"task_id": missing})),
        ("bash_promote", json!({"task_id": missing})),
        ("bash_wait", json!({"task_ids": [missing]})),
        ("bash_ack_completions", json!({"task_ids": [missing]})),
    ] {
        let error = server.call_error(method, params);
        assert_eq!(error["code"], -32000, "{method}: {error}");
        assert_eq!(error["data"]["kind"], "task_not_found", "{method}: {error}");
        assert!(error["message"].as_str().unwrap().contains(missing));
    }

    let file = bg.path("a file");
    std::fs::write(&file, "").unwrap();
    for cwd in [bg.path("nowhere"), file.clone()] {
        let error = server.call_error("bash", json!({"command": "true", "cwd": cwd}));
        assert_eq!(error["code"], -32000, "{error}");
        assert_eq!(error["data"]["kind"], "invalid_cwd", "{error}");
    }
    let error = server.call_error("initialize", json!({"project_root": file}));
    assert_eq!(error["data"]["kind"], "invalid_cwd", "{error}");

    // Output that cannot be read is a store error, not a crash.
    let done = server.call("bash", json!({"command": "echo hi", "wait_ms": 60_000}));
    let stdout_path = done["stdout_path"].as_str().unwrap();
    std::fs::remove_file(stdout_path).unwrap();
    std::fs::create_dir(stdout_path).unwrap();
    let error = server.call_error("bash_output", json!({"task_id": done["task_id"]}));
    assert_eq!(error["code"], -32000, "{error}");
    assert_eq!(error["data"]["kind"], "store_error", "{error}");
    assert!(error["message"].as_str().unwrap().contains(stdout_path));

    // A monitor that cannot open the store cannot start the task: the task
    // is recorded as failed, and the monitor's log says why. (The lock file
    // is opened only by a new connection to a store not yet at this
    // schema, so the server starts the monitor and only the monitor fails.)
    rusqlite::Connection::open(bg.home.join("bgtask.db"))
        .unwrap()
        .execute_batch("PRAGMA user_version = 0; PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    let lock = bg.home.join("bgtask.lock");
    std::fs::remove_file(&lock).unwrap();
    std::fs::create_dir(&lock).unwrap();
    let failed = server.call("bash", json!({"command": "true", "wait_ms": 60_000}));
    assert_eq!(failed["status"], "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("died before the task started"), "{failed}");
    assert!(reason.contains("monitor.log"), "{failed}");
    let log = std::fs::read_to_string(bg.home.join("monitor.log")).unwrap();
    assert!(log.contains("cannot open the store"), "{log}");
    std::fs::remove_dir(&lock).unwrap();

    // A store directory that became unusable is the caller's error, before
    // any monitor is started.
    let out = bg.home.join("out");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, "not a directory").unwrap();
    let error = server.call_error("bash", json!({"command": "true"}));
    assert_eq!(error["data"]["kind"], "store_error", "{error}");
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir(&out).unwrap();
    let listed = server.call("bash_list", json!({}));
    assert_eq!(
        listed["tasks"].as_array().unwrap().len(),
        2,
        "the failed start is on record: {listed}"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn at_the_live_task_limit_a_task_queues_and_a_foreground_wait_covers_its_queueing() {
    // Issue 21: no longer refused; it waits for a slot.
    let bg = Bg::new();
    let gate = bg.gate("limit");
    let mut cmd = bg.cmd();
    cmd.env("BGTASK_MAX_RUNNING", "1");
    let mut server = bg.serve_with(cmd);
    let held = server.call("bash", json!({"command": gate.hold(), "background": true}));
    let queued = server.call(
        "bash",
        json!({"command": "echo queued", "wait_ms": 100, "label": "second"}),
    );
    assert_eq!(queued["status"], "queued", "{queued}");
    let status = server.call("bash_status", json!({"task_id": queued["task_id"]}));
    assert_eq!(status["label"], "second", "{status}");
    gate.open();
    let ended = server.call(
        "bash_wait",
        json!({"task_ids": [held["task_id"], queued["task_id"]], "timeout_ms": 60_000}),
    );
    assert!(ended.to_string().contains("completed"), "{ended}");
    // A foreground wait that begins in the queue ends with the task.
    server.call("bash", json!({"command": "sleep 0.3", "background": true}));
    let next = server.call("bash", json!({"command": "echo next", "wait_ms": 60_000}));
    assert_eq!(next["status"], "completed", "{next}");
    let list = server.call("bash_list", json!({"group": "default"}));
    assert_eq!(list["tasks"].as_array().unwrap().len(), 4, "{list}");
    let none = server.call("bash_list", json!({"group": "other"}));
    assert_eq!(none["tasks"].as_array().unwrap().len(), 0, "{none}");
    assert_eq!(server.close().code(), Some(0));
}
