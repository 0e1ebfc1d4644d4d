//! What the OpenCode plugin (integrations/opencode/bgtask.ts) relies on to
//! deliver every kind of notification without telling one twice: serve's
//! drain with `all_kinds` lists a `ready` notification while nobody showed
//! it, and leaves it out once a bgtask MCP result of the same session
//! showed (claimed) it.

use std::path::Path;

use serde_json::{json, Value};

use crate::client::Server;
use crate::fixture::{wait_until, Bg};

/// The plugin's drain: the session's pending notifications, every kind.
fn drained(server: &mut Server) -> Vec<Value> {
    let reply = server.call("bash_drain_completions", json!({"all_kinds": true}));
    reply["notifications"].as_array().unwrap().clone()
}

fn ids_of_kind(notes: &[Value], kind: &str) -> Vec<String> {
    notes
        .iter()
        .filter(|n| n["kind"] == kind)
        .map(|n| n["notification_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `bgtask mcp` in `dir` (its session is `dir:<dir>`), initialized.
fn mcp_in(bg: &Bg, dir: &Path) -> Server {
    let mut cmd = bg.cmd();
    cmd.env_remove("BGTASK_SESSION").current_dir(dir);
    let mut server = bg.mcp_with(cmd);
    let init = server.call_frame(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "opencode", "version": "0"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    server.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    server
}

#[test]
fn the_plugins_drain_lists_a_ready_notification_until_an_mcp_result_shows_it() {
    let bg = Bg::new();
    let dir = bg.path("project");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(dir).unwrap();
    let session = format!("dir:{}", dir.display());
    // serve as the plugin runs it: BGTASK_SESSION and initialize.
    let mut serve = bg.serve_with(bg.cmd_in(&session));
    serve.call("initialize", json!({"session": session}));
    let gate = bg.gate("ready");
    let stay = bg.gate("stay");
    let reply = serve.call(
        "bash",
        json!({
            "command": format!("{}; echo listening on 8000; {}", gate.hold(), stay.hold()),
            "ready": {"log": "listening on"},
            "background": true,
        }),
    );
    let task = reply["task_id"].as_str().unwrap().to_owned();
    gate.open();
    // Nobody showed it yet: the plugin's drain lists it (a `ready`, not a
    // completion: the task still runs).
    wait_until("the ready notification is drained", || {
        !ids_of_kind(&drained(&mut serve), "ready").is_empty()
    });
    let notes = drained(&mut serve);
    assert!(ids_of_kind(&notes, "completed").is_empty(), "{notes:?}");
    // A bgtask tool result of the MCP server shows (claims) it ...
    let mut mcp = mcp_in(&bg, &dir);
    let result = mcp.call_frame("tools/call", json!({"name": "bash_list", "arguments": {}}));
    let shown = result["result"]["structuredContent"]["notifications"].to_string();
    assert!(shown.contains(&task) && shown.contains("ready"), "{result}");
    // ... so the plugin's drain no longer lists it, before and after the
    // client's next call acknowledges it.
    assert_eq!(drained(&mut serve), Vec::<Value>::new());
    mcp.call_frame("tools/call", json!({"name": "bash_list", "arguments": {}}));
    assert_eq!(drained(&mut serve), Vec::<Value>::new());
    stay.open();
    bg.run(&["kill", &task]).ok();
    mcp.close();
    serve.close();
}
