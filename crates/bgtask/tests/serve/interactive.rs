//! Interactive tasks through `serve` (issue 18): `bash` with `stdin` and
//! `pty`, `bash_write`, `bash_signal`, `bash_resize`, and the screen view
//! of `bash_status` / `bash_output`; input survives a restart of serve.

use serde_json::{json, Value};

use crate::fixture::*;

fn start(server: &mut crate::client::Server, params: Value) -> String {
    let task = server.call("bash", params);
    task["task_id"].as_str().unwrap().to_owned()
}

fn screen_lines(server: &mut crate::client::Server, id: &str) -> Value {
    server.call("bash_status", json!({"task_id": id, "view": "screen"}))["screen"]["lines"].clone()
}

#[test]
fn a_terminal_task_is_driven_resized_and_read_as_a_screen() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let id = start(
        &mut server,
        json!({"command": "read -r -p 'name? ' n; echo \"hi $n\"; read -r -p 'size? ' x; stty size",
               "pty": {"rows": 12, "cols": 50}, "background": true}),
    );
    wait_until("the prompt", || {
        screen_lines(&mut server, &id)[0] == "name?"
    });
    let sent = server.call(
        "bash_write",
        json!({"task_id": id, "data": "ann", "keys": ["enter"]}),
    );
    assert_eq!(sent["task_id"], id.as_str());
    assert_eq!(
        (sent["written"].as_u64(), sent["queued"].as_u64()),
        (Some(4), Some(0))
    );
    wait_until("the second prompt", || {
        screen_lines(&mut server, &id)[2] == "size?"
    });
    let resized = server.call(
        "bash_resize",
        json!({"task_id": id, "rows": 20, "cols": 100}),
    );
    assert_eq!(resized["pty"], json!({"rows": 20, "cols": 100}));
    server.call("bash_write", json!({"task_id": id, "keys": ["enter"]}));
    let done = server.call("bash_wait", json!({"task_ids": [id], "timeout_ms": 30_000}));
    assert_eq!(done["tasks"][0]["status"], "completed", "{done}");
    let screen = server.call("bash_output", json!({"task_id": id, "view": "screen"}));
    assert_eq!(
        screen["data"], "name? ann\nhi ann\nsize?\n20 100\n",
        "{screen}"
    );
    assert_eq!(screen["eof"], true);
    let raw = server.call("bash_output", json!({"task_id": id}));
    assert!(
        raw["data"].as_str().unwrap().contains("hi ann\r\n"),
        "{raw}"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn stdin_input_and_signals_reach_a_task_across_a_restart_of_serve() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let id = start(
        &mut server,
        json!({"command": "trap 'echo reloaded' HUP; while read -r line; do echo \"got $line\"; done; echo closed",
               "stdin": true, "background": true}),
    );
    server.call("bash_write", json!({"task_id": id, "data": "one\n"}));
    server.kill9();
    // A new server, a new process: the monitor still holds the input.
    let mut server = bg.serve();
    server.call(
        "bash_write",
        json!({"task_id": id, "data": "two", "keys": ["enter"]}),
    );
    wait_until("both lines", || {
        server.call("bash_output", json!({"task_id": id}))["data"] == "got one\ngot two\n"
    });
    let signalled = server.call(
        "bash_signal",
        json!({"task_id": id, "signal": "HUP", "leader": true}),
    );
    assert_eq!(signalled["signals_sent"], json!(["SIGHUP"]));
    server.call(
        "bash_write",
        json!({"task_id": id, "data": "three\n", "eof": true}),
    );
    let done = server.call("bash_wait", json!({"task_ids": [id], "timeout_ms": 30_000}));
    assert_eq!(done["tasks"][0]["status"], "completed", "{done}");
    let out = server.call("bash_output", json!({"task_id": id}))["data"].clone();
    assert!(out.as_str().unwrap().contains("reloaded"), "{out}");
    assert!(
        out.as_str().unwrap().ends_with("got three\nclosed\n"),
        "{out}"
    );
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn interactive_requests_refuse_clearly() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let plain = start(
        &mut server,
        json!({"command": "exec sleep 300", "background": true}),
    );
    let err = server.call_error("bash_write", json!({"task_id": plain, "data": "x"}));
    assert_eq!(err["data"]["kind"], "not_interactive", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("takes no input"),
        "{err}"
    );
    let err = server.call_error(
        "bash_resize",
        json!({"task_id": plain, "rows": 10, "cols": 10}),
    );
    assert_eq!(err["data"]["kind"], "not_interactive", "{err}");
    let err = server.call_error("bash_status", json!({"task_id": plain, "view": "screen"}));
    assert_eq!(err["data"]["kind"], "not_interactive", "{err}");
    let err = server.call_error("bash_signal", json!({"task_id": plain, "signal": "BOGUS"}));
    assert_eq!(err["data"]["kind"], "invalid_argument", "{err}");
    let err = server.call_error("bash_status", json!({"task_id": plain, "view": "pretty"}));
    assert!(err["message"].as_str().unwrap().contains("view"), "{err}");
    let err = server.call_error("bash", json!({"command": "true", "pty": {"rows": 0}}));
    assert_eq!(err["data"]["kind"], "invalid_argument", "{err}");
    // Over 1 MiB in one send.
    let piped = start(
        &mut server,
        json!({"command": "exec sleep 300", "stdin": true, "background": true}),
    );
    let big = "x".repeat((1 << 20) + 1);
    let err = server.call_error("bash_write", json!({"task_id": piped, "data": big}));
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at most 1048576 bytes"),
        "{err}"
    );
    // Exactly 1 MiB fits, mostly queued; more waits behind it is refused.
    let sent = server.call(
        "bash_write",
        json!({"task_id": piped, "data": "x".repeat(1 << 20)}),
    );
    assert!(sent["queued"].as_u64().unwrap() > 0, "{sent}");
    let err = server.call_error(
        "bash_write",
        json!({"task_id": piped, "data": "y".repeat(1 << 19)}),
    );
    assert!(
        err["message"].as_str().unwrap().contains("still waiting"),
        "{err}"
    );
    let err = server.call_error("bash_write", json!({"task_id": piped}));
    assert!(
        err["message"].as_str().unwrap().contains("nothing to send"),
        "{err}"
    );
    for id in [&plain, &piped] {
        server.call("bash_kill", json!({"task_id": id, "grace_ms": 0}));
    }
    let err = server.call_error("bash_write", json!({"task_id": piped, "data": "late"}));
    assert!(
        err["message"].as_str().unwrap().contains("has ended"),
        "{err}"
    );
    assert_eq!(server.close().code(), Some(0));
}

/// A program that redraws: a progress bar on one line, a line erased and
/// rewritten after a cursor move up, colours, lines that differ only in
/// a number.
const REDRAWS: &str = r#"echo start
for i in 1 2 3 4; do printf '\rprogress %d%%' $((i * 25)); done; printf '\n'
printf 'draft line\n\033[1A\033[2Kfinal line\n'
printf '\033[31mred\033[0m text\n'
for i in $(seq 1 8); do echo "fetched crate $i"; done
echo done"#;

const RENDERED: &str =
    "start\nprogress 100%\nfinal line\nred text\nfetched crate 8\n  [×8 similar lines]\ndone\n";

#[test]
fn a_terminal_tasks_inline_output_is_compacted_from_its_rendered_text() {
    let bg = Bg::new();
    let mut server = bg.serve();
    // The inline result of a foreground `bash`.
    let result = server.call(
        "bash",
        json!({"command": REDRAWS, "pty": {"rows": 10, "cols": 40}, "wait_ms": 60_000}),
    );
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(result["output"], RENDERED, "{result}");
    let id = result["task_id"].as_str().unwrap().to_owned();
    // The raw stream is still there for whoever asks for it.
    let raw = server.call("bash_output", json!({"task_id": id}));
    assert!(
        raw["data"].as_str().unwrap().contains("\rprogress 25%"),
        "{raw}"
    );

    // A completion's preview, and the tail of `bash_status`: a cleared
    // screen keeps only what is on it after the clear.
    let task = start(
        &mut server,
        json!({"command": "echo secret-before-clear; printf '\\033[2J\\033[Hclean\\rCLEAN screen\\n'",
               "pty": {}, "background": true}),
    );
    let frame = server.completion(&task);
    assert_eq!(frame["output_preview"], "CLEAN screen\n", "{frame}");
    let status = server.call("bash_status", json!({"task_id": task}));
    assert_eq!(status["output_tail"], "CLEAN screen\n", "{status}");
    assert_eq!(server.close().code(), Some(0));
}
