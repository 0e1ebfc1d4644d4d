//! The server under pressure: store errors, hundreds of waiting requests,
//! pipelined `initialize`, no inotify instances left, a replaced events
//! file, ids that do not survive a float, secrets in bad params, absurd
//! limits. Each test states the promise it checks.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::client::Server;
use crate::fixture::*;

/// The `task_id` of a result.
fn task_id(result: &Value) -> String {
    result["task_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task_id in {result}"))
        .to_owned()
}

/// Bumps the events file's modification time, as every transition does.
fn touch(path: &Path) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open the events file");
    file.set_modified(std::time::SystemTime::now())
        .expect("touch the events file");
}

/// The parent of a process (for a task's shell: its monitor).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after = stat.rsplit_once(')').expect("stat has a comm").1;
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// inotify instances a process holds.
fn inotify_instances(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the server's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == "anon_inode:inotify")
        .count()
}

#[test]
fn completions_are_still_pushed_after_a_store_error() {
    let bg = Bg::new();
    let mut cmd = bg.cmd();
    cmd.env("BGTASK_BUSY_TIMEOUT_MS", "200");
    let mut server = bg.serve_with(cmd);
    server.call("bash_list", json!({}));
    // A task whose monitor dies: the push thread, looking at the running
    // tasks, finds it and must write its end, while the test holds the
    // store's write lock.
    let gate = bg.gate("orphan");
    let orphan = bg.spawn(&gate.hold());
    let shell = bg.status(&orphan)["pid"].as_u64().unwrap() as u32;
    let monitor = parent_of(shell);
    let db = rusqlite::Connection::open(bg.home.join("bgtask.db")).expect("open the store");
    db.busy_timeout(PATIENCE).unwrap();
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    // SAFETY: kill(2) on the monitor's pid, a process this test started.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    wait_until("the monitor to die", || !is_running(monitor));
    touch(&bg.home.join("events"));
    wait_until("the push thread to hit the locked store", || {
        server.stderr().contains("completion push")
    });
    db.execute_batch("COMMIT").unwrap();
    drop(db);

    let lost = server.completion(&orphan);
    assert_eq!(lost["status"], "failed", "{lost}");
    let after = bg.spawn("echo after the error");
    let pushed = server.completion(&after);
    assert_eq!(pushed["status"], "completed", "{pushed}");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn hundreds_of_waits_do_not_delay_a_quick_request() {
    let bg = Bg::new();
    let gate = bg.gate("waited");
    let mut server = bg.serve();
    let task = server.call("bash", json!({"command": gate.hold(), "background": true}));
    let id = task_id(&task);
    // More than tokio's 512 blocking threads: before, the list queued
    // behind them until the task ended, which only happens after it.
    let waits: Vec<i64> = (0..560)
        .map(|_| server.request("bash_wait", json!({"task_ids": [id]})))
        .collect();
    let list = server.request("bash_list", json!({}));
    let listed = server.reply(list);
    assert_eq!(listed["result"]["tasks"][0]["task_id"], id.as_str());
    assert!(
        !waits.iter().any(|w| server.has_reply(*w)),
        "the list was answered while every wait was still pending"
    );
    gate.open();
    for wait in waits {
        let reply = server.reply(wait);
        assert_eq!(
            reply["result"]["tasks"][0]["status"], "completed",
            "{reply}"
        );
    }
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn requests_pipelined_after_initialize_act_for_its_session() {
    let bg = Bg::new();
    // A completion in the starting session, which a drain acting for the
    // wrong session would return.
    let earlier = bg.spawn("true");
    bg.wait(&earlier);
    let mut server = bg.serve();
    for round in 0..20 {
        let session = format!("pipelined-{round}");
        let frames = [
            json!({"jsonrpc": "2.0", "id": format!("init-{round}"), "method": "initialize",
                   "params": {"session": session}}),
            json!({"jsonrpc": "2.0", "id": format!("bash-{round}"), "method": "bash",
                   "params": {"command": "true", "background": true}}),
            json!({"jsonrpc": "2.0", "id": format!("drain-{round}"),
                   "method": "bash_drain_completions"}),
        ];
        let mut bytes = Vec::new();
        for frame in &frames {
            bytes.extend_from_slice(frame.to_string().as_bytes());
            bytes.push(b'\n');
        }
        server.send_raw(&bytes);
        let init = server.reply(format!("init-{round}"));
        assert_eq!(init["result"]["session"], session.as_str(), "{init}");
        let bash = server.reply(format!("bash-{round}"));
        assert_eq!(bash["result"]["session"], session.as_str(), "{bash}");
        let drain = server.reply(format!("drain-{round}"));
        for completion in drain["result"]["completions"].as_array().unwrap() {
            assert_eq!(completion["session"], session.as_str(), "{drain}");
        }
    }
    let tasks = bg.list_all();
    assert_eq!(tasks.len(), 21);
    for task in tasks.iter().filter(|t| t["task_id"] != earlier.as_str()) {
        let session = task["session"].as_str().unwrap();
        assert!(session.starts_with("pipelined-"), "{task}");
    }
    assert_eq!(server.close().code(), Some(0));
}

/// `bgtask serve` in a user namespace of its own whose inotify instance
/// limit is `limit`, or `None` (with a message) where that cannot run.
fn serve_with_inotify_limit(bg: &Bg, limit: u32) -> Option<Server> {
    let probe = Command::new("unshare")
        .args(["-U", "-r", "sh", "-c"])
        .arg(format!(
            "echo {limit} > /proc/sys/user/max_inotify_instances"
        ))
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: cannot limit inotify instances in a user namespace here");
        return None;
    }
    let base = bg.cmd();
    let mut cmd = Command::new("unshare");
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.current_dir(bg.dir.path())
        .args(["-U", "-r", "sh", "-c"])
        .arg(format!(
            "echo {limit} > /proc/sys/user/max_inotify_instances && exec \"$@\""
        ))
        .args(["sh", BIN]);
    Some(bg.serve_with(cmd))
}

#[test]
fn a_started_task_is_reported_with_its_id_without_inotify() {
    let bg = Bg::new();
    let Some(mut server) = serve_with_inotify_limit(&bg, 0) else {
        return;
    };
    let reply = server.call(
        "bash",
        json!({"command": "exec sleep 300", "background": true}),
    );
    let id = task_id(&reply);
    // Answered once recorded: the shell may not run yet.
    assert!(
        reply["status"] == "starting" || reply["status"] == "running",
        "{reply}"
    );
    let tasks = bg.list_all();
    assert_eq!(tasks.len(), 1, "one task, the one reported: {tasks:?}");
    assert_eq!(tasks[0]["task_id"], id.as_str());
    // Without a watch, the end is still pushed.
    let killed = server.call("bash_kill", json!({"task_id": id, "grace_ms": 0}));
    assert_eq!(killed["status"], "killed");
    assert_eq!(server.completion(&id)["status"], "killed");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn an_idle_server_holds_few_inotify_instances_whatever_came_before() {
    let bg = Bg::new();
    let mut server = bg.serve();
    // Concurrent starts, each waiting for its task to leave `starting`.
    let requests: Vec<i64> = (0..60)
        .map(|_| server.request("bash", json!({"command": "true", "background": true})))
        .collect();
    for request in requests {
        let reply = server.reply(request);
        assert!(reply.get("result").is_some(), "{reply}");
    }
    let held = inotify_instances(server.pid());
    // The push thread's watch and at most two kept for later waits.
    assert!(held <= 3, "the idle server holds {held} inotify instances");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn pushes_go_on_after_the_events_file_is_deleted_or_replaced() {
    let bg = Bg::new();
    let mut server = bg.serve();
    server.call("bash_list", json!({}));
    let events = bg.home.join("events");
    // The server's push thread creates the file when it starts watching,
    // which may come after the first reply.
    wait_until("the events file to exist", || events.exists());

    std::fs::remove_file(&events).unwrap();
    std::fs::write(&events, b"").unwrap();
    let first = bg.spawn("echo after the delete");
    assert_eq!(server.completion(&first)["status"], "completed");

    let replacement = bg.home.join("events.new");
    std::fs::write(&replacement, b"").unwrap();
    std::fs::rename(&replacement, &events).unwrap();
    let second = bg.spawn("echo after the replacement");
    assert_eq!(server.completion(&second)["status"], "completed");

    std::fs::remove_file(&events).unwrap();
    let third = bg.spawn("echo with the file gone");
    assert_eq!(server.completion(&third)["status"], "completed");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn ids_are_echoed_exactly_as_sent() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let ids = [
        "12345678901234567890123",
        "-0",
        "1e2",
        "1.50",
        "-7",
        "\"caf\\u00e9\"",
        "\"plain\"",
        "null",
    ];
    for (n, id) in ids.iter().enumerate() {
        // The unknown method makes `null` distinguishable from the error
        // replies with a null id that other lines would get.
        let method = if *id == "null" {
            "bash_nothing"
        } else {
            "bash_list"
        };
        server.send_raw(
            format!("{{\"jsonrpc\": \"2.0\", \"id\": {id}, \"method\": \"{method}\"}}\n")
                .as_bytes(),
        );
        let parsed: Value = serde_json::from_str(id).unwrap();
        server.reply(parsed);
        let echoed = format!("\"id\":{id},");
        let found = server
            .seen_text()
            .iter()
            .filter(|t| t.contains(&echoed))
            .count();
        assert_eq!(
            found,
            1,
            "id {id} (#{n}) echoed verbatim: {:#?}",
            server.seen_text()
        );
    }
    // Ids JSON-RPC forbids are refused with a null id.
    for id in ["{\"a\": 1}", "[1]", "true"] {
        server.send_raw(
            format!("{{\"jsonrpc\": \"2.0\", \"id\": {id}, \"method\": \"bash_list\"}}\n")
                .as_bytes(),
        );
        let reply = server.reply(Value::Null);
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
    }
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn notifications_keep_coming_until_the_last_reply_after_end_of_input() {
    let bg = Bg::new();
    let held = bg.gate("held");
    let other = bg.gate("other");
    let mut server = bg.serve();
    let waited = bg.spawn(&held.hold());
    let ending = bg.spawn(&other.hold());
    let wait = server.request("bash_wait", json!({"task_ids": [waited]}));
    server.call("bash_list", json!({}));
    server.close_stdin();
    // The server cannot exit before the wait is answered, which needs
    // `held`: a completion meanwhile is still pushed.
    other.open();
    assert_eq!(server.completion(&ending)["status"], "completed");
    held.open();
    assert_eq!(server.reply(wait)["result"]["timed_out"], false);
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_bad_param_is_named_and_its_value_never_echoed() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let cases = [
        json!({"command": "true", "env": "tok-secret-one"}),
        json!({"command": "true", "env": {"TOKEN": ["tok-secret-two"]}}),
        json!({"command": "true", "env": {"TOKEN": {"tok-secret-three": 1}}}),
        json!({"command": "true", "env": ["tok-secret-four"]}),
        json!({"command": "tok-secret-five", "cwd": 5, "env": {"A": "tok-secret-six"}}),
        json!({"command": ["tok-secret-seven"]}),
    ];
    for params in cases {
        let error = server.call_error("bash", params.clone());
        assert_eq!(error["code"], -32602, "{params} → {error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            !message.contains("tok-secret"),
            "a value is echoed: {message}"
        );
        assert!(
            message.contains("env") || message.contains("cwd") || message.contains("command"),
            "the field is named: {message}"
        );
    }
    let error = server.call_error("bash_list", json!({"status": "tok-secret-eight"}));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("status") && !message.contains("tok-secret"),
        "{message}"
    );
    assert!(bg.list_all().is_empty(), "no task was started");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn absurd_time_limits_are_refused_and_start_nothing() {
    let bg = Bg::new();
    let mut server = bg.serve();
    for (field, name) in [("timeout_ms", "timeout"), ("idle_timeout_ms", "idle")] {
        let params = json!({"command": "echo ran", "background": true, field: u64::MAX});
        let error = server.call_error("bash", params);
        assert_eq!(error["code"], -32602, "{field}: {error}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(name),
            "{field}: the message names it: {message}"
        );
    }
    assert!(bg.list_all().is_empty(), "no task was started");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_step_that_fails_after_the_start_is_reported_with_the_tasks_id() {
    let bg = Bg::new();
    let mut server = bg.serve();
    // The task makes its own output unreadable by path (a directory in
    // its place) and ends: reading the inline result fails after the
    // task ran.
    let command =
        r#"out="$BGTASK_HOME/out/$BGTASK_TASK_ID.out"; rm "$out" && mkdir "$out"; echo done"#;
    let reply = server.call("bash", json!({"command": command}));
    let id = task_id(&reply);
    assert_eq!(reply["error"]["data"]["kind"], "store_error", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read output"),
        "{reply}"
    );
    // The id is the task that ran, and its end is still reported.
    let tasks = bg.list_all();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["task_id"], id.as_str());
    assert_eq!(server.completion(&id)["status"], "completed");
    assert_eq!(server.close().code(), Some(0));
}
