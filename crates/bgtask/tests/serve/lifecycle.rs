//! The server's life: end of input ends it, after answering what was asked,
//! and tasks it started keep running.

use serde_json::{json, Value};

use crate::fixture::*;

#[test]
fn end_of_input_ends_the_server_and_tasks_keep_running() {
    let bg = Bg::new();
    let mut server = bg.serve();
    let task = server.call(
        "bash",
        json!({"command": "echo READY; exec sleep 300", "background": true}),
    );
    let id = task["task_id"].as_str().unwrap().to_owned();
    // Answered once recorded: the shell's pid is in its status once it runs.
    let mut running = Value::Null;
    wait_until("the task runs", || {
        running = bg.status(&id);
        running["status"] == "running"
    });
    let pid = running["pid"].as_u64().unwrap() as u32;
    assert_eq!(server.close().code(), Some(0));

    let status = bg.status(&id);
    assert_eq!(status["status"], "running", "{status}");
    assert!(is_running(pid), "the task's shell outlives the server");
    // It still delivers its completion, to whoever reads the session next.
    let killed = bg
        .run(&["kill", "--json", "--grace", "0ms", &id])
        .ok()
        .json();
    assert_eq!(killed["status"], "killed");
    let mut server = bg.serve();
    let drained = server.call("bash_drain_completions", json!({}));
    assert_eq!(drained["completions"][0]["task_id"], id.as_str());
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn end_of_input_waits_for_requests_in_flight() {
    let bg = Bg::new();
    let gate = bg.gate("in-flight");
    let mut server = bg.serve();
    let task = server.call("bash", json!({"command": gate.hold(), "background": true}));
    let wait = server.request(
        "bash_wait",
        json!({"task_ids": [task["task_id"]], "timeout_ms": 120_000}),
    );
    // Some reply after the wait was sent proves the server has read it.
    server.call("bash_list", json!({}));
    server.close_stdin();
    gate.open();
    let reply = server.reply(wait);
    assert_eq!(reply["result"]["timed_out"], false);
    assert_eq!(reply["result"]["tasks"][0]["status"], "completed");
    assert_eq!(server.close().code(), Some(0));
}

#[test]
fn end_of_input_answers_every_request_already_sent() {
    let bg = Bg::new();
    let mut server = bg.serve();
    server.call("bash_list", json!({}));
    let ids: Vec<i64> = (0..50)
        .map(|_| server.request("bash_list", json!({})))
        .collect();
    server.close_stdin();
    for id in ids {
        assert!(server.reply(id).get("result").is_some());
    }
    assert_eq!(server.close().code(), Some(0));
}

/// The processes descended from `root`, found as OpenCode finds an MCP
/// server's (`pgrep -P PID`, repeated): by the parent pid in /proc.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![];
    let mut queue = vec![root];
    while let Some(parent) = queue.pop() {
        for (pid, ppid) in &parents {
            if *ppid == parent {
                found.push(*pid);
                queue.push(*pid);
            }
        }
    }
    found
}

#[test]
fn a_kill_of_the_servers_process_tree_leaves_its_tasks_running() {
    // OpenCode stops an MCP server by walking its children by parent pid
    // and sending SIGTERM to each (issue 17): a task outlives its starter,
    // so nothing of it may be found there.
    let bg = Bg::new();
    let mut server = bg.serve();
    let task = server.call(
        "bash",
        json!({"command": "echo READY; exec sleep 300", "background": true}),
    );
    let id = task["task_id"].as_str().unwrap().to_owned();
    let mut running = Value::Null;
    wait_until("the task runs", || {
        running = bg.status(&id);
        running["status"] == "running"
    });
    let pid = running["pid"].as_u64().unwrap() as u32;
    let tree = descendants(server.pid());
    for pid in &tree {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let _ = server.close();

    let status = bg.status(&id);
    assert_eq!(status["status"], "running", "{status}");
    assert!(
        is_running(pid),
        "the task's shell outlives the tree kill of {tree:?}"
    );
    // Ended by bgtask alone, and recorded as such.
    let killed = bg
        .run(&["kill", "--json", "--grace", "0ms", &id])
        .ok()
        .json();
    assert_eq!(killed["status"], "killed", "{killed}");
    assert_eq!(killed["reason"], "killed on request", "{killed}");
}
