//! Hooks deliver every kind of notification, not only completions:
//! `ready` and `ready_failed` wake or gate the agent, `watch_match`
//! reaches the hooks; each is claimed, so a hook and an MCP result never
//! both show one, and a hook killed after its claim loses nothing.

use std::collections::BTreeMap;
use std::path::Path;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::Server;
use crate::fixture::{wait_until, Bg, Run};
use crate::hooks::{event, finish, hook, hook_cmd, project, start_hook, wait_for_waiter};

/// The context an inject hook added ("" when it printed nothing).
fn context(run: &Run) -> String {
    if run.stdout.trim().is_empty() {
        return String::new();
    }
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    answer["hookSpecificOutput"]["additionalContext"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The session's unacknowledged notifications of every kind, as
/// `bgtask notifications --json` lists them.
fn pending(bg: &Bg, session: &str) -> Vec<Value> {
    let run = bg
        .run_with(bg.cmd_in(session).args(["notifications", "--json"]))
        .ok();
    run.json().as_array().unwrap().clone()
}

fn pending_kinds(bg: &Bg, session: &str) -> Vec<String> {
    pending(bg, session)
        .iter()
        .map(|n| n["kind"].as_str().unwrap().to_owned())
        .collect()
}

/// `bgtask serve` in `session`, as an agent's plugin runs it.
fn serve_in(bg: &Bg, session: &str) -> Server {
    let mut server = bg.serve_with(bg.cmd_in(session));
    server.call("initialize", json!({"session": session}));
    server
}

/// Starts, through serve's `bash` with `ready` and `background`, a server
/// that prints `listening on 8000` once `gate` opens, then runs until
/// `stay` opens. Returns its id (it returns at once, not when ready).
fn server_task(server: &mut Server, ready_gate: &str, stay: &str) -> String {
    let reply = server.call(
        "bash",
        json!({
            "command": format!("{ready_gate}; echo listening on 8000; {stay}"),
            "ready": {"log": "listening on"},
            "background": true,
        }),
    );
    assert_eq!(reply["background"], true, "{reply}");
    reply["task_id"].as_str().unwrap().to_owned()
}

#[test]
fn a_server_with_a_readiness_condition_wakes_the_stop_hook_when_ready_then_holds_nothing() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let mut server = serve_in(&bg, &session);
    let (ready, stay) = (bg.gate("ready"), bg.gate("stay"));
    let id = server_task(&mut server, &ready.hold(), &stay.hold());
    // A background `bash` is answered once recorded; the shell starts after.
    wait_until("the server task to run", || {
        bg.status(&id)["status"] == "running"
    });
    // Claude Code's asynchronous Stop hook waits while readiness is pending.
    let child = start_hook(hook_cmd(&bg, "claude-code"), &event("Stop", &dir));
    wait_for_waiter(&bg);
    ready.open();
    let run = finish(child);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(&id)
            && run.stderr.contains("is ready")
            && run.stderr.contains("listening on 8000"),
        "{run:?}"
    );
    assert_eq!(run.stdout, "");
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    // Ready, it holds nothing: every Stop hook returns at once.
    let started = Instant::now();
    for (agent, name) in [
        ("claude-code", "Stop"),
        ("codex", "Stop"),
        ("gemini", "AfterAgent"),
    ] {
        let run = hook(&bg, agent, &event(name, &dir));
        assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{agent}: {run:?}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The serve client was never told twice either: its push skipped what
    // the hook claimed and delivered.
    stay.open();
    bg.wait(&id);
    server.close();
    assert!(
        !server.has_seen("bash_ready", &id),
        "serve pushed a notification a hook had delivered"
    );
}

#[test]
fn a_server_that_ends_before_it_is_ready_gates_the_run_with_ready_failed() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let mut server = serve_in(&bg, &session);
    let crash = bg.gate("crash");
    let reply = server.call(
        "bash",
        json!({
            "command": format!("{}; echo 'bind: address in use'; exit 3", crash.hold()),
            "ready": {"log": "listening on"},
            "background": true,
        }),
    );
    let id = reply["task_id"].as_str().unwrap().to_owned();
    let child = start_hook(hook_cmd(&bg, "gemini"), &event("AfterAgent", &dir));
    wait_for_waiter(&bg);
    crash.open();
    let run = finish(child);
    assert_eq!(run.code, 0, "{run:?}");
    let answer: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(answer["decision"], "block");
    let reason = answer["reason"].as_str().unwrap();
    // The readiness failure and the completion, recorded together, are
    // delivered together, once.
    assert!(
        reason.contains("did not become ready")
            && reason.contains("address in use")
            && reason.contains(&format!("- {id} failed")),
        "{reason}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    server.close();
}

#[test]
fn a_watch_match_reaches_the_hooks() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let (first, second, stay) = (bg.gate("first"), bg.gate("second"), bg.gate("stay"));
    // A task that does not notify of its end, so only its watch can wake.
    let id = bg.start(bg.cmd_in(&session).args([
        "run",
        "--no-notify",
        "--",
        &format!(
            "{}; echo 'ERROR: disk full'; {}; echo 'ERROR: disk still full'; {}",
            first.hold(),
            second.hold(),
            stay.hold()
        ),
    ]));
    bg.run_with(
        bg.cmd_in(&session)
            .args(["watch", &id, "ERROR", "--cooldown", "0ms"]),
    )
    .ok();
    // A gate holds the turn only for tasks that notify: not for a watch.
    let run = hook(&bg, "gemini", &event("AfterAgent", &dir));
    assert_eq!((run.code, run.stdout.as_str()), (0, ""), "{run:?}");
    // The idle session's wake hook waits for the watch's next match.
    let child = start_hook(hook_cmd(&bg, "claude-code"), &event("Stop", &dir));
    wait_for_waiter(&bg);
    first.open();
    let run = finish(child);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("[watch_match]") && run.stderr.contains("ERROR: disk full"),
        "{run:?}"
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    // The next match is injected at the next prompt, once.
    second.open();
    wait_until("the second match to be recorded", || {
        pending_kinds(&bg, &session) == ["watch_match"]
    });
    let run = hook(&bg, "codex", &event("UserPromptSubmit", &dir)).ok();
    let text = context(&run);
    assert!(text.contains("ERROR: disk still full"), "{text}");
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    let again = hook(&bg, "codex", &event("UserPromptSubmit", &dir)).ok();
    assert_eq!(again.stdout, "", "delivered twice");
    stay.open();
    bg.wait(&id);
}

#[test]
fn a_hook_killed_after_its_claim_loses_nothing() {
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let mut server = serve_in(&bg, &session);
    let (ready, stay) = (bg.gate("ready"), bg.gate("stay"));
    let id = server_task(&mut server, &ready.hold(), &stay.hold());
    ready.open();
    wait_until("the ready notification", || {
        pending_kinds(&bg, &session) == ["ready"]
    });
    // Killed between its claim and its print: nothing reached the agent.
    let mut cmd = hook_cmd(&bg, "claude-code");
    cmd.env("BGTASK_FAULT", "hook_after_claim");
    let run = finish(start_hook(cmd, &event("UserPromptSubmit", &dir)));
    assert_eq!((run.code, run.stdout.as_str()), (-1, ""), "{run:?}");
    // Its claim is void: the next hook delivers it, and acknowledges it.
    let run = hook(&bg, "claude-code", &event("UserPromptSubmit", &dir)).ok();
    let text = context(&run);
    assert!(
        text.contains(&id) && text.contains("is ready"),
        "{run:?} {:?}",
        bg.run_with(bg.cmd_in(&session).args(["notifications", "--json"]))
    );
    assert!(pending(&bg, &session).is_empty(), "not acknowledged");
    stay.open();
    bg.wait(&id);
    server.close();
}

/// The MCP server's JSON-RPC client, initialized, in `dir`'s session.
fn mcp_in(bg: &Bg, dir: &Path) -> Server {
    let mut cmd = bg.cmd();
    cmd.env_remove("BGTASK_SESSION").current_dir(dir);
    let mut server = bg.mcp_with(cmd);
    let init = server.call_frame(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "race", "version": "0"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    server.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    server
}

#[test]
fn a_hook_and_an_mcp_result_never_both_show_a_notification() {
    const MATCHES: usize = 40;
    let bg = Bg::new();
    let (dir, session) = project(&bg);
    let go = bg.gate("go");
    let id = bg.start(bg.cmd_in(&session).args([
        "run",
        "--no-notify",
        "--",
        &format!(
            "{}; for i in $(seq 1 {MATCHES}); do echo \"hit-$i.\"; sleep 0.01; done; sleep 30",
            go.hold()
        ),
    ]));
    bg.run_with(
        bg.cmd_in(&session)
            .args(["watch", &id, "hit-", "--cooldown", "0ms"]),
    )
    .ok();
    let mut mcp = mcp_in(&bg, &dir);
    go.open();
    // Both read the session as the matches are recorded: the MCP server's
    // results on one thread, inject hooks on another.
    let hook_bg = &bg;
    let hook_dir = dir.clone();
    let task = id.as_str();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (by_hooks, by_mcp) = std::thread::scope(|scope| {
        let hooks = scope.spawn(move || {
            let mut seen = Vec::new();
            while Instant::now() < deadline {
                let run = hook(
                    hook_bg,
                    "claude-code",
                    &event("UserPromptSubmit", &hook_dir),
                )
                .ok();
                seen.extend(hits(&context(&run)));
                if pending(hook_bg, &format!("dir:{}", hook_dir.display())).is_empty()
                    && shown_all(hook_bg, task)
                {
                    break;
                }
            }
            seen
        });
        let mut seen = Vec::new();
        while Instant::now() < deadline && !hooks.is_finished() {
            let reply = mcp.call_frame("tools/call", json!({"name": "bash_list", "arguments": {}}));
            let notes = reply["result"]["structuredContent"]["notifications"].clone();
            for n in notes.as_array().into_iter().flatten() {
                seen.extend(hits(n["summary"].as_str().unwrap_or_default()));
            }
        }
        (hooks.join().unwrap(), seen)
    });
    // One last MCP call settles what the previous result showed.
    mcp.call_frame("tools/call", json!({"name": "bash_list", "arguments": {}}));
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for hit in by_hooks.iter().chain(&by_mcp) {
        *count.entry(hit.clone()).or_default() += 1;
    }
    println!(
        "race: {} shown by hooks, {} by MCP results",
        by_hooks.len(),
        by_mcp.len()
    );
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "shown twice: {twice:?}");
    assert_eq!(count.len(), MATCHES, "hooks: {by_hooks:?}, mcp: {by_mcp:?}");
    bg.run(&["kill", &id]).ok();
    mcp.close();
    let _ = session;
}

/// Whether the task printed every match (so none is still to come).
fn shown_all(bg: &Bg, id: &str) -> bool {
    let run = bg.run(&["logs", id]);
    run.stdout.contains("hit-40.")
}

/// The `hit-N.` markers in a text.
fn hits(text: &str) -> Vec<String> {
    text.match_indices("hit-")
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.find('.')?;
            Some(rest[..end].to_owned())
        })
        .collect()
}
