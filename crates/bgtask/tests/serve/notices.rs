//! Issue 16 over serve: `bash` with `ready`, `bash_wait` with `until`,
//! `bash_watch`/`bash_unwatch`, the frames `bash_ready`,
//! `bash_ready_failed`, `bash_watch_match`, `bash_drain_completions` with
//! `all_kinds`, and delivery of every kind once across a restart.

use serde_json::{json, Value};

use crate::fixture::*;

fn kinds(result: &Value) -> Vec<String> {
    result["notifications"]
        .as_array()
        .expect("a notifications array")
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn bash_with_ready_returns_once_ready_or_with_the_reason_and_tail() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let ready = server.call(
        "bash",
        json!({
            "command": "sleep 0.2; echo 'Server listening on :4000'; sleep 30",
            "ready": {"log": "listening on :\\d+"},
        }),
    );
    assert_eq!(ready["ready"], true, "{ready}");
    assert!(ready["ready_at"].as_i64().is_some());
    assert_eq!(ready["ready_detail"], "Server listening on :4000");
    assert_eq!(ready["background"], true);
    assert_eq!(ready["status"], "running");

    let crashed = server.call(
        "bash",
        json!({"command": "echo fatal: no config >&2; exit 7", "ready": {"port": 1}}),
    );
    assert_eq!(crashed["ready"], false, "{crashed}");
    assert_eq!(crashed["ready_outcome"], "ended");
    assert_eq!(crashed["exit_code"], 7);
    assert!(
        crashed["output_tail"]
            .as_str()
            .unwrap()
            .contains("fatal: no config"),
        "{crashed}"
    );

    let slow = server.call(
        "bash",
        json!({"command": "sleep 30", "ready": {"log": "never", "timeout_ms": 200}}),
    );
    assert_eq!(slow["ready"], false);
    assert_eq!(slow["ready_outcome"], "timeout");
    assert_eq!(slow["status"], "running", "the task keeps running");

    for (ready, field) in [
        (json!({"log": "("}), "ready.log"),
        (json!({"port": 70000}), "ready"),
        (json!({"http": "http://example.com"}), "ready.http"),
        (json!({"log": "a", "port": 3}), "ready"),
        (json!({}), "ready"),
    ] {
        let error = server.call_error("bash", json!({"command": "true", "ready": ready}));
        assert_eq!(error["code"], -32602, "{ready}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(field),
            "{ready}: {error}"
        );
    }
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn bash_wait_until_ready_and_frames_of_every_kind_are_pushed() {
    let bg = Bg::new();
    let mut server = bg.serve();
    server.call("bash_list", json!({}));
    let gate = bg.gate("up");
    // Started by the CLI in the background (not waited for), with a
    // readiness condition, so the push frame is the only news of it.
    let id = bg.spawn(&format!(
        "{}; echo up; echo 'WARN disk'; sleep 30",
        gate.hold()
    ));
    let watch = server.call(
        "bash_watch",
        json!({"task_id": id, "pattern": "^WARN", "cooldown_ms": 60000}),
    );
    let watch_id = watch["watch_id"].as_str().unwrap().to_owned();
    assert!(watch_id.starts_with("w-"), "{watch}");
    let waiting = server.request(
        "bash_wait",
        json!({"task_ids": [id], "until": "ready", "timeout_ms": 30000}),
    );
    gate.open();
    let waited = server.reply(waiting);
    assert_eq!(waited["result"]["timed_out"], false, "{waited}");
    let frame = server.notification("bash_watch_match", |p| p["task_id"] == id.as_str());
    assert_eq!(frame["watch_id"], watch_id.as_str());
    assert_eq!(frame["line"], "WARN disk");
    assert_eq!(frame["kind"], "watch_match");

    let drained = server.call("bash_drain_completions", json!({"all_kinds": true}));
    assert_eq!(kinds(&drained), ["watch_match"]);
    let plain = server.call("bash_drain_completions", json!({}));
    assert!(plain["completions"].as_array().unwrap().is_empty());

    let removed = server.call("bash_unwatch", json!({"watch_id": watch_id}));
    assert!(removed["ended_at"].as_i64().is_some());
    let unknown = server.call_error("bash_unwatch", json!({"watch_id": "w-nope"}));
    assert_eq!(unknown["code"], -32602);
    assert!(unknown["message"].as_str().unwrap().contains("watch_id"));
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn ready_and_ready_failed_frames_are_pushed_when_no_caller_took_them_inline() {
    let bg = Bg::new();
    let mut server = bg.serve();
    server.call("bash_list", json!({}));
    for (script, flag, target, method) in [
        ("echo up; sleep 30", "--ready-log", "^up$", "bash_ready"),
        (
            "echo crashed; exit 5",
            "--ready-port",
            "1",
            "bash_ready_failed",
        ),
    ] {
        // A `run --ready-*` killed while it waits: nobody got the outcome
        // inline, so it is pushed.
        let gate = bg.gate(method);
        let mut starter = bg
            .cmd()
            .args(["run", flag, target, "--"])
            .arg(format!("{}; {script}", gate.hold()))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut id = String::new();
        wait_until("the task to run", || {
            let tasks = bg.list_all();
            let found = tasks.iter().find(|t| {
                t["status"] == "running" && t["command"].as_str().unwrap().contains(script)
            });
            if let Some(t) = found {
                id = t["task_id"].as_str().unwrap().to_owned();
            }
            found.is_some()
        });
        starter.kill().unwrap();
        starter.wait().unwrap();
        gate.open();
        let frame = server.notification(method, |p| p["task_id"] == id.as_str());
        match method {
            "bash_ready" => {
                assert_eq!(frame["kind"], "ready");
                assert_eq!(frame["line"], "up");
            }
            _ => {
                assert_eq!(frame["kind"], "ready_failed");
                assert_eq!(frame["cause"], "ended");
                assert_eq!(frame["exit_code"], 5);
                assert!(frame["output_tail"].as_str().unwrap().contains("crashed"));
            }
        }
        bg.run(&["kill", &id]).ok();
    }
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn watches_survive_a_restart_of_serve_and_each_notification_is_delivered_once() {
    let bg = Bg::new();
    let gate = bg.gate("print");
    let id = bg.spawn(&format!("{}; echo 'ERROR boom'; sleep 30", gate.hold()));
    {
        let mut first = bg.serve();
        first.call(
            "bash_watch",
            json!({"task_id": id, "pattern": "ERROR", "once": true}),
        );
        first.kill9();
    }
    // The watch outlives the server that made it.
    gate.open();
    let mut second = bg.serve();
    let mut drained = Value::Null;
    wait_until("the match to be recorded", || {
        drained = second.call("bash_drain_completions", json!({"all_kinds": true}));
        kinds(&drained) == ["watch_match"]
    });
    let note = &drained["notifications"][0];
    assert_eq!(note["detail"]["line"], "ERROR boom");
    // Acknowledged once, it is gone for every later server too.
    let acked = second.call("bash_ack_completions", json!({"task_ids": [id]}));
    assert_eq!(acked["acked"], 1);
    assert_eq!(second.close().code(), Some(0));
    let mut third = bg.serve();
    let again = third.call("bash_drain_completions", json!({"all_kinds": true}));
    assert!(kinds(&again).is_empty(), "{again}");
    bg.run(&["kill", &id]).ok();
    let end = third.completion(&id);
    assert_eq!(end["status"], "killed");
    assert_eq!(third.close().code(), Some(0));
}
