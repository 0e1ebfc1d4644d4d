//! Completion delivery by the agent servers under crashes, concurrency and
//! hostile sizes: a completion shown to an MCP client stays pending until
//! the client shows it received it, concurrent MCP servers of one session
//! show it once, a server killed during a foreground `bash` loses no
//! result, results stay bounded, resource updates reach a stalled client,
//! an oversized request is answered, and records of a newer bgtask are
//! never shown or acknowledged.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::client::Server;
use crate::fixture::{wait_until, Bg, BIN};
use crate::rounds;

/// Starts `bgtask mcp` for `session` and initializes it.
fn mcp(bg: &Bg, session: &str) -> Server {
    let mut server = bg.mcp_with(bg.cmd_in(session));
    initialize(&mut server);
    server
}

fn initialize(server: &mut Server) {
    let init = server.call_frame(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "delivery", "version": "0"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    server.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
}

/// Calls a tool and returns its result.
fn tool(server: &mut Server, name: &str, args: Value) -> Value {
    let reply = server.call_frame("tools/call", json!({"name": name, "arguments": args}));
    reply
        .get("result")
        .cloned()
        .unwrap_or_else(|| panic!("{name} failed: {reply}"))
}

/// Sends the client's next message. A message read before the previous
/// result was fully written is not taken as evidence of its receipt, so
/// tests that wait for an acknowledgement keep talking, as clients do.
fn ping(server: &mut Server) {
    let reply = server.call_frame("ping", json!({}));
    assert!(reply.get("result").is_some(), "{reply}");
}

/// The task ids of the completions a tool result showed.
fn shown(result: &Value) -> Vec<String> {
    result["structuredContent"]["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["task_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The session's unacknowledged completions, as the CLI lists them.
fn pending(bg: &Bg, session: &str) -> Vec<String> {
    let run = bg.run_with(bg.cmd_in(session).args(["completions", "--json"]));
    run.ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["task_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Starts notifying tasks running `command` in `session` and waits for
/// them to end.
fn finished_tasks(bg: &Bg, session: &str, command: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n)
        .map(|_| bg.run_id(bg.cmd_in(session).args(["run", "--", command])))
        .collect();
    for id in &ids {
        bg.wait(id);
    }
    ids
}

#[test]
fn an_mcp_completion_stays_pending_until_the_client_shows_it_received_it() {
    let bg = Bg::new();
    let session = "receipt";
    let ids = finished_tasks(&bg, session, "echo done", 1);
    let mut first = mcp(&bg, session);
    let result = tool(&mut first, "bash_list", json!({}));
    assert_eq!(shown(&result), ids);
    // Claimed by the live server: nobody else shows it meanwhile.
    assert_eq!(pending(&bg, session), Vec::<String>::new());
    // The client dies without sending anything after the result.
    first.kill9();
    assert_eq!(pending(&bg, session), ids, "the completion was lost");

    // The next server shows it again; the client's next request is the
    // evidence that it received the result, and acknowledges it.
    let mut second = mcp(&bg, session);
    assert_eq!(shown(&tool(&mut second, "bash_list", json!({}))), ids);
    assert_eq!(
        shown(&tool(&mut second, "bash_list", json!({}))),
        Vec::<String>::new()
    );
    wait_until("the completion to be acknowledged", || {
        ping(&mut second);
        pending(&bg, session).is_empty()
    });
    second.close();
    println!("fault report: mcp killed after showing a completion: still pending; shown again and acknowledged after the next request");
}

#[test]
fn two_mcp_servers_of_one_session_show_each_completion_once() {
    let bg = Bg::new();
    let session = "dir:/one/project";
    let mut a = mcp(&bg, session);
    let mut b = mcp(&bg, session);
    let rounds = rounds(30);
    let mut expected = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut both_at_once = |a: &mut Server, b: &mut Server| {
        let call = json!({"name": "bash_list", "arguments": {}});
        let (ia, ib) = (
            a.request("tools/call", call.clone()),
            b.request("tools/call", call),
        );
        for result in [a.reply(ia), b.reply(ib)] {
            for id in shown(&result["result"]) {
                *seen.entry(id).or_default() += 1;
            }
        }
    };
    for _ in 0..rounds {
        expected.extend(finished_tasks(&bg, session, "true", 2));
        both_at_once(&mut a, &mut b);
    }
    both_at_once(&mut a, &mut b);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "shown by both servers: {twice:?}");
    assert_eq!(seen.len(), expected.len(), "not every completion was shown");
    a.close();
    b.close();
    println!(
        "fault report: two mcp servers of one session, {rounds} rounds of concurrent calls: {} completions, each shown once",
        expected.len()
    );
}

#[test]
fn a_server_killed_during_a_foreground_bash_loses_no_result() {
    let bg = Bg::new();
    for kind in ["serve", "mcp"] {
        let session = format!("foreground-{kind}");
        let gate = bg.gate(&format!("go-{kind}"));
        let command = format!("{}; echo finished", gate.hold());
        let args = json!({"command": command, "wait_ms": 60_000});
        let mut server = if kind == "mcp" {
            let mut server = mcp(&bg, &session);
            server.request("tools/call", json!({"name": "bash", "arguments": args}));
            server
        } else {
            let mut server = bg.serve_with(bg.cmd_in(&session));
            server.request("bash", args);
            server
        };
        let mut id = String::new();
        wait_until("the foreground task to run", || {
            let run = bg.run_with(bg.cmd_in(&session).args(["list", "--json"]));
            let tasks = run.ok().json();
            match tasks.as_array().and_then(|t| t.first()) {
                Some(task) if task["status"] == "running" => {
                    id = task["task_id"].as_str().unwrap().to_owned();
                    true
                }
                _ => false,
            }
        });
        server.kill9();
        gate.open();
        bg.wait(&id);
        wait_until("the task's completion to be visible", || {
            pending(&bg, &session).contains(&id)
        });
    }
    println!("fault report: serve and mcp SIGKILLed during a foreground bash: the task's completion reached the session (2 of 2)");
}

#[test]
fn a_server_that_returns_a_result_inline_leaves_no_completion() {
    let bg = Bg::new();
    let session = "inline";
    let mut server = mcp(&bg, session);
    let result = tool(&mut server, "bash", json!({"command": "echo hi"}));
    assert_eq!(result["structuredContent"]["status"], "completed");
    // The next request is the evidence the result arrived.
    tool(&mut server, "bash_list", json!({}));
    let id = result["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until("the held completion to be settled", || {
        ping(&mut server);
        bg.status(&id)["notify"] == false
    });
    assert_eq!(pending(&bg, session), Vec::<String>::new());
    let mut other = mcp(&bg, session);
    assert_eq!(
        shown(&tool(&mut other, "bash_list", json!({}))),
        Vec::<String>::new()
    );
    other.close();
    server.close();

    // serve: settled at once; asked for explicitly, a completion as well.
    let mut serve = bg.serve_with(bg.cmd_in("inline-serve"));
    let plain = serve.call_frame("bash", json!({"command": "true", "wait_ms": 60_000}));
    assert_eq!(plain["result"]["notify"], false, "{plain}");
    let both = serve.call_frame(
        "bash",
        json!({"command": "true", "wait_ms": 60_000, "notify_on_completion": true}),
    );
    assert_eq!(both["result"]["notify"], true, "{both}");
    let both = both["result"]["task_id"].as_str().unwrap().to_owned();
    assert_eq!(pending(&bg, "inline-serve"), vec![both]);
    serve.close();
}

#[test]
fn mcp_results_stay_small_when_many_completions_wait() {
    let bg = Bg::new();
    let session = "many";
    let n = 60;
    let ids = finished_tasks(
        &bg,
        session,
        "seq 1 40; echo 'a long line of output' >&2",
        n,
    );
    let mut server = mcp(&bg, session);
    let mut seen = Vec::new();
    let mut largest = 0;
    for _ in 0..=n {
        let result = tool(&mut server, "bash", json!({"command": "echo small"}));
        let size = result.to_string().len();
        largest = largest.max(size);
        assert!(size < 16 * 1024, "a {size}-byte result");
        let batch = shown(&result);
        let left = result["structuredContent"]["notifications_pending"]
            .as_u64()
            .unwrap_or(0);
        if left > 0 {
            let text = result["content"][0]["text"].as_str().unwrap();
            assert!(text.contains(&format!("and {left} more")), "{text}");
            assert_eq!(seen.len() + batch.len() + left as usize, n);
        }
        seen.extend(batch);
        if left == 0 && seen.len() == n {
            break;
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "a completion was shown twice");
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(sorted, expected, "not every completion was shown");
    wait_until("every shown completion to be acknowledged", || {
        ping(&mut server);
        pending(&bg, session).is_empty()
    });
    server.close();
    println!("fault report: {n} completions waiting: every mcp result under 16 KiB (largest {largest} bytes), each completion shown once, all acknowledged");
}

#[test]
fn completions_of_newer_records_are_never_shown_or_acknowledged() {
    let bg = Bg::new();
    let session = "newer";
    let ids = finished_tasks(&bg, session, "true", 1);
    let id = &ids[0];
    let db = bg.home.join("bgtask.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute(
            "UPDATE tasks SET record_version = 9 WHERE task_id = ?1",
            [id],
        )
        .unwrap();
    }
    assert_eq!(pending(&bg, session), Vec::<String>::new());
    let ack = bg.run_with(bg.cmd_in(session).args(["ack", id]));
    assert_ne!(ack.code, 0, "{ack:?}");
    assert!(ack.stderr.contains("newer bgtask"), "{ack:?}");
    let mut server = mcp(&bg, session);
    assert_eq!(
        shown(&tool(&mut server, "bash_list", json!({}))),
        Vec::<String>::new()
    );
    tool(&mut server, "bash_list", json!({}));
    server.close();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (acked, claimed): (Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT acked_at, claim_pid FROM completions WHERE task_id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((acked, claimed), (None, None), "a newer record was changed");
    println!("fault report: completion of a newer record: not listed, ack refused, not shown by mcp, row unchanged");
}

#[test]
fn mcp_answers_a_request_over_16_mib_with_an_error() {
    let bg = Bg::new();
    let mut server = mcp(&bg, "big");
    let filler = "a".repeat(17 << 20);
    let cases = [
        (
            json!(4242),
            format!(
                r#"{{"jsonrpc":"2.0","id":4242,"method":"tools/call","params":{{"name":"bash","arguments":{{"command":"echo {filler}"}}}}}}"#
            ),
        ),
        (
            json!("text-id"),
            format!(
                r#"{{ "id" : "text-id", "jsonrpc":"2.0","method":"tools/call","params":{{"x":"{filler}"}}}}"#
            ),
        ),
        // The id comes after the cut-off: answered without one.
        (
            Value::Null,
            format!(
                r#"{{"jsonrpc":"2.0","params":{{"x":"{filler}"}},"id":4343,"method":"tools/call"}}"#
            ),
        ),
    ];
    for (id, line) in &cases {
        server.send_line(line.as_bytes());
        let reply = server
            .next_matching(|v| {
                v.get("error").is_some() && v.get("id").cloned().unwrap_or(Value::Null) == *id
            })
            .unwrap_or_else(|| panic!("no error reply for the oversized request with id {id}"));
        assert_eq!(reply["error"]["code"], -32600, "{reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(message.contains("too large"), "{message}");
        let alive = tool(&mut server, "bash_list", json!({}));
        assert!(alive.get("content").is_some(), "{alive}");
    }
    server.close();
    println!("fault report: mcp: 3 requests over 16 MiB each answered with an Invalid Request error (id recovered in 2), server kept serving");
}

#[test]
fn mcp_sessions_of_non_utf8_directories_never_collide() {
    let bg = Bg::new();
    let mut sessions = Vec::new();
    for name in [&b"proj\xff"[..], b"proj\xfe", b"proj\\xff"] {
        let dir = bg.dir.path().join(std::ffi::OsStr::from_bytes(name));
        std::fs::create_dir(&dir).unwrap();
        let mut cmd = bg.cmd();
        cmd.env_remove("BGTASK_SESSION").current_dir(&dir);
        let mut server = bg.mcp_with(cmd);
        initialize(&mut server);
        // The task runs elsewhere: only the session matters here.
        let args = json!({"command": "true", "background": true, "cwd": "/"});
        let result = tool(&mut server, "bash", args);
        // The model is not shown the session; the CLI shows the task's.
        let id = result["structuredContent"]["task_id"].as_str();
        let id = id.unwrap_or_else(|| panic!("{result}"));
        let status = bg.run(&["status", "--json", id]).ok().json();
        sessions.push(status["session"].as_str().unwrap().to_owned());
        server.close();
    }
    assert!(
        sessions.iter().all(|s| !s.contains('\u{fffd}')),
        "{sessions:?}"
    );
    let mut unique = sessions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), sessions.len(), "{sessions:?}");
    assert!(sessions[0].ends_with("proj\\xff"), "{sessions:?}");
    println!(
        "fault report: mcp in proj\\xff, proj\\xfe and a literal proj\\\\xff: 3 distinct sessions"
    );
}

#[test]
fn resource_updates_reach_a_stalled_client_in_full() {
    let bg = Bg::new();
    let session = "burst";
    let subscribed = 100;
    let quick = 1100;
    let gate_path = bg.path("gate");
    let gate = std::fs::File::create(&gate_path).unwrap();
    // SAFETY: flock on an fd we own.
    assert_eq!(unsafe { libc::flock(gate.as_raw_fd(), libc::LOCK_EX) }, 0);
    let command = format!("flock -s {} true", gate_path.display());
    let mut ids = Vec::new();
    for _ in 0..subscribed {
        ids.push(
            bg.run_id(
                bg.cmd_in(session)
                    .env("BGTASK_MAX_RUNNING", "2000")
                    .args(["run", "--", &command]),
            ),
        );
    }
    // A raw client whose reading the test controls.
    let mut child = bg
        .cmd_in(session)
        .arg("mcp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    // SAFETY: fcntl on a pipe fd we own; a smaller pipe stalls the server sooner.
    unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    let mut lines = BufReader::new(stdout).lines();
    let mut send = |line: Value| {
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
        stdin.flush().unwrap();
    };
    let read_until_id = |lines: &mut std::io::Lines<BufReader<_>>, id: u64| loop {
        let line: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        if line["id"] == id {
            return line;
        }
    };
    send(
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"burst","version":"0"}}}),
    );
    read_until_id(&mut lines, 1);
    send(json!({"jsonrpc":"2.0","method":"notifications/initialized"}));
    for (i, id) in ids.iter().enumerate() {
        let request = 100 + i as u64;
        send(
            json!({"jsonrpc":"2.0","id":request,"method":"resources/subscribe","params":{"uri":format!("bgtask://tasks/{id}")}}),
        );
        let reply = read_until_id(&mut lines, request);
        assert!(reply.get("result").is_some(), "{reply}");
    }
    // The client stops reading; the subscribed tasks end, then many others.
    // SAFETY: as above.
    assert_eq!(unsafe { libc::flock(gate.as_raw_fd(), libc::LOCK_UN) }, 0);
    for id in &ids {
        bg.wait(id);
    }
    // More ends than the 1024 updates the server used to queue, from two
    // loops at once.
    let half = quick / 2;
    let script = format!(
        "burst() {{ for i in $(seq {half}); do {BIN} run -- true >/dev/null || exit 1; done; }}; \
         burst & burst || exit 1; wait $!"
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .env("BGTASK_HOME", &bg.home)
        .env("BGTASK_SESSION", session)
        .env("BGTASK_MAX_RUNNING", "2000")
        .status()
        .unwrap();
    assert!(status.success());
    // Reading again: every subscribed task's update arrives.
    let done = 99_999;
    send(
        json!({"jsonrpc":"2.0","id":done,"method":"tools/call","params":{"name":"bash_wait","arguments":{"timeout_ms": 1}}}),
    );
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in lines {
            let Ok(line) = line else { return };
            if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                return;
            }
        }
    });
    let wanted: std::collections::HashSet<String> = ids
        .iter()
        .map(|id| format!("bgtask://tasks/{id}"))
        .collect();
    let mut updated = std::collections::HashSet::new();
    let mut replied = false;
    while !(replied && updated.len() == wanted.len()) {
        let Ok(message) = rx.recv_timeout(crate::fixture::PATIENCE) else {
            break;
        };
        if message["id"] == done {
            replied = true;
        }
        if message["method"] == "notifications/resources/updated" {
            updated.insert(message["params"]["uri"].as_str().unwrap().to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let missing = wanted.difference(&updated).count();
    assert_eq!(
        missing, 0,
        "{missing} of {subscribed} subscribed tasks never got an update"
    );
    println!("fault report: mcp client stalled while {subscribed} subscribed and {quick} other tasks ended: all {subscribed} updates arrived");
}

#[test]
fn subscribing_to_another_sessions_task_is_refused() {
    let bg = Bg::new();
    let ids = finished_tasks(&bg, "elsewhere", "true", 1);
    let mut server = mcp(&bg, "here");
    let reply = server.call_frame(
        "resources/subscribe",
        json!({"uri": format!("bgtask://tasks/{}", ids[0])}),
    );
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("another session"), "{reply}");
    server.close();
    println!("fault report: mcp subscription to another session's task refused with a clear error");
}

#[test]
fn completions_of_a_cancelled_tool_call_are_shown_again() {
    let bg = Bg::new();
    let session = "cancelled";
    let done = finished_tasks(&bg, session, "true", 1);
    let gate = bg.gate("cancelled");
    let gated = bg.run_id(bg.cmd_in(session).args(["run", "--", &gate.hold()]));
    let mut server = mcp(&bg, session);
    let request = server.request(
        "tools/call",
        json!({"name": "bash_wait", "arguments": {"task_ids": [gated], "timeout_ms": 60_000}}),
    );
    server.send_line(
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": request}})
            .to_string()
            .as_bytes(),
    );
    gate.open();
    bg.wait(&gated);
    // The cancelled call's result (with both completions) never reaches
    // the client, so they must not stay claimed by the server.
    wait_until("the completions to be pending again", || {
        let pending = pending(&bg, session);
        pending.contains(&done[0]) && pending.contains(&gated)
    });
    let mut ids = shown(&tool(&mut server, "bash_list", json!({})));
    ids.sort();
    let mut expected = vec![done[0].clone(), gated];
    expected.sort();
    assert_eq!(ids, expected);
    server.close();
    println!("fault report: mcp tool call cancelled while it waited: its 2 completions pending again and shown by the next call");
}
