//! Hostile input to both servers: each bad line gets a precise error and
//! the server keeps serving.

use serde_json::{json, Value};

use crate::fixture::*;

/// Bad lines for `serve`, with the error code each must get.
fn serve_cases() -> Vec<(&'static str, Vec<u8>, i64)> {
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"bash","params":{{"command":"echo {}"}}}}"#,
        "x".repeat(10 << 20)
    );
    let mut invalid_utf8 =
        br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":{"command":"echo "#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0x80]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    vec![
        ("invalid UTF-8", invalid_utf8, -32700),
        ("a 10 MiB line (a command too long to exec)", huge.into_bytes(), -32602),
        ("deeply nested JSON", nested.into_bytes(), -32700),
        ("wrong type", br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":{"command":["echo"]}}"#.to_vec(), -32602),
        ("missing field", br#"{"jsonrpc":"2.0","id":1,"method":"bash_status","params":{}}"#.to_vec(), -32602),
        ("unknown method", br#"{"jsonrpc":"2.0","id":1,"method":"rm_rf","params":{}}"#.to_vec(), -32601),
        ("negative number", br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":{"command":"true","timeout_ms":-5}}"#.to_vec(), -32602),
        ("huge number", br#"{"jsonrpc":"2.0","id":1,"method":"bash_wait","params":{"task_ids":["bg-0000000000000001"],"timeout_ms":1e400}}"#.to_vec(), -32700),
        ("number past u64", br#"{"jsonrpc":"2.0","id":1,"method":"bash_output","params":{"task_id":"bg-0000000000000001","offset":18446744073709551616}}"#.to_vec(), -32602),
        ("NUL in command", br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":{"command":"echo a\u0000b"}}"#.to_vec(), -32602),
        ("NUL in env", br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":{"command":"true","env":{"K":"a\u0000b"}}}"#.to_vec(), -32602),
        ("cwd is a file", br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":{"command":"true","cwd":"/etc/passwd"}}"#.to_vec(), -32000),
        ("path in task id", br#"{"jsonrpc":"2.0","id":1,"method":"bash_status","params":{"task_id":"../../etc/passwd"}}"#.to_vec(), -32602),
        ("not an object", b"[1,2,3]".to_vec(), -32600),
        ("params not an object", br#"{"jsonrpc":"2.0","id":1,"method":"bash","params":[1]}"#.to_vec(), -32602),
    ]
}

#[test]
fn serve_answers_every_hostile_line_precisely_and_keeps_serving() {
    let bg = Bg::new();
    let mut serve = bg.serve_with(bg.cmd());
    let cases = serve_cases();
    for (name, line, code) in &cases {
        serve.send_line(line);
        let reply = serve
            .next_matching(|m| m.get("id").is_some())
            .unwrap_or_else(|| panic!("{name}: no reply"));
        assert_eq!(reply["error"]["code"], *code, "{name}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && message.len() < 1000,
            "{name}: a short, precise message: {message}"
        );
        let alive = serve.call_frame("bash_list", json!({}));
        assert!(
            alive.get("result").is_some(),
            "{name}: the server stopped serving: {alive}"
        );
    }
    serve.close();
    println!("fault report: serve: {} kinds of hostile lines, each answered precisely, server kept serving", cases.len());
}

#[test]
fn mcp_answers_hostile_requests_and_keeps_serving() {
    let bg = Bg::new();
    let mut mcp = bg.mcp_with(bg.cmd());
    let init = mcp.call_frame(
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "hostile", "version": "0"}}),
    );
    assert!(init.get("result").is_some(), "{init}");
    mcp.send_line(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let tool = |args: Value| json!({"name": "bash", "arguments": args});
    let cases: Vec<(&str, String, Value)> = vec![
        (
            "wrong type",
            "tools/call".into(),
            tool(json!({"command": 42})),
        ),
        ("missing field", "tools/call".into(), tool(json!({}))),
        (
            "unknown tool",
            "tools/call".into(),
            json!({"name": "rm_rf", "arguments": {}}),
        ),
        (
            "negative number",
            "tools/call".into(),
            tool(json!({"command": "true", "timeout_ms": -1})),
        ),
        (
            "NUL in command",
            "tools/call".into(),
            tool(json!({"command": "echo a\u{0}b"})),
        ),
        (
            "cwd is a file",
            "tools/call".into(),
            tool(json!({"command": "true", "cwd": "/etc/passwd"})),
        ),
        (
            "bad task id",
            "tools/call".into(),
            json!({"name": "bash_status", "arguments": {"task_id": "../../x"}}),
        ),
        ("unknown method", "no/such_method".into(), json!({})),
        (
            "bad resource",
            "resources/read".into(),
            json!({"uri": "file:///etc/passwd"}),
        ),
    ];
    for (name, method, params) in &cases {
        let reply = mcp.call_frame(method, params.clone());
        let refused = reply.get("error").is_some() || reply["result"]["isError"] == true;
        assert!(refused, "{name}: {reply}");
        let alive = mcp.call_frame("tools/call", json!({"name": "bash_list", "arguments": {}}));
        assert!(
            alive.get("result").is_some(),
            "{name}: the server stopped serving: {alive}"
        );
    }
    for (name, line) in [
        ("invalid UTF-8", vec![b'{', 0xff, 0xfe, b'}']),
        ("garbage", b"not json at all".to_vec()),
        (
            "deeply nested JSON",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
        ),
    ] {
        mcp.send_line(&line);
        let alive = mcp.call_frame("tools/call", json!({"name": "bash_list", "arguments": {}}));
        assert!(
            alive.get("result").is_some(),
            "{name}: the server stopped serving: {alive}"
        );
    }
    mcp.close();
    println!("fault report: mcp: {} hostile requests refused with errors and 3 unparsable lines survived; server kept serving", cases.len());
}
