//! Issue 16 over MCP: `bash` with `ready`, `bash_watch`, `bash_wait` with
//! `until`, and notifications of the kinds beside completions opening a
//! later result, acknowledged once the client calls again, shown again by
//! a new server if the first died before that.

use serde_json::{json, Value};

use crate::client::Server;
use crate::fixture::{wait_until, Bg};

fn mcp(bg: &Bg) -> Server {
    let mut server = bg.mcp_with(bg.cmd_in("notices"));
    let init = server.call_frame(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "notices", "version": "0"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    server.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    server
}

fn tool(server: &mut Server, name: &str, args: Value) -> Value {
    let reply = server.call_frame("tools/call", json!({"name": name, "arguments": args}));
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{name} failed: {reply}"))
}

fn text(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn pending_kinds(bg: &Bg) -> Vec<String> {
    let run = bg.run_with(bg.cmd_in("notices").args(["notifications", "--json"]));
    let all: Value = serde_json::from_str(&run.stdout).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn mcp_bash_returns_once_ready_and_watch_matches_open_a_later_result_once() {
    let bg = Bg::new();
    let mut server = mcp(&bg);
    let gate = bg.path("gate");
    let started = tool(
        &mut server,
        "bash",
        json!({
            "command": format!("echo up; until [ -e '{}' ]; do sleep 0.02; done; echo 'panic: oops'; sleep 30", gate.display()),
            "ready": {"log": "^up$"},
        }),
    );
    assert_eq!(started["isError"], false, "{started}");
    assert!(text(&started).contains("is ready"), "{started}");
    let id = started["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(started["structuredContent"]["ready"], true);

    let watch = tool(
        &mut server,
        "bash_watch",
        json!({"task_id": id, "pattern": "panic"}),
    );
    assert!(text(&watch).contains("is active"), "{watch}");
    std::fs::write(&gate, b"").unwrap();

    // bash_wait until a notification of the session arrives.
    let waited = tool(
        &mut server,
        "bash_wait",
        json!({"until": "notification", "timeout_ms": 30000}),
    );
    assert!(text(&waited).contains("notification"), "{waited}");
    let shown = tool(&mut server, "bash_list", json!({}));
    let all = format!("{}{}", text(&waited), text(&shown));
    assert_eq!(
        all.matches("[watch_match]").count(),
        1,
        "shown once: {waited} {shown}"
    );
    assert!(all.contains("panic: oops"), "{all}");
    // The client called again after the result that showed it: acked.
    tool(&mut server, "bash_list", json!({}));
    wait_until("the match to be acknowledged", || {
        !pending_kinds(&bg).contains(&"watch_match".to_owned())
    });
    let bad = tool(
        &mut server,
        "bash",
        json!({"command": "true", "ready": {"port": 0}}),
    );
    assert_eq!(bad["isError"], true, "{bad}");
    assert!(text(&bad).contains("ready"), "{bad}");
    bg.run_with(bg.cmd_in("notices").args(["kill", &id]));
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn a_notification_shown_by_an_mcp_server_that_died_is_shown_again() {
    let bg = Bg::new();
    let gate = bg.path("gate");
    let run = bg.run_with(bg.cmd_in("notices").args([
        "run",
        "--",
        &format!(
            "until [ -e '{}' ]; do sleep 0.02; done; echo 'ERROR x'; sleep 30",
            gate.display()
        ),
    ]));
    let id = run.stdout.trim().to_owned();
    let mut first = mcp(&bg);
    tool(
        &mut first,
        "bash_watch",
        json!({"task_id": id, "pattern": "ERROR"}),
    );
    std::fs::write(&gate, b"").unwrap();
    wait_until("the match", || pending_kinds(&bg) == ["watch_match"]);
    let shown = tool(&mut first, "bash_list", json!({}));
    assert!(text(&shown).contains("[watch_match]"), "{shown}");
    first.kill9();
    // Not acknowledged: the client never called again.
    assert_eq!(pending_kinds(&bg), ["watch_match"]);
    let mut second = mcp(&bg);
    let again = tool(&mut second, "bash_list", json!({}));
    assert!(text(&again).contains("[watch_match]"), "{again}");
    bg.run_with(bg.cmd_in("notices").args(["kill", &id]));
    assert_eq!(second.close().code(), Some(0));
}
