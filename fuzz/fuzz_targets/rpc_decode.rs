//! Arbitrary bytes as one `bgtask serve` request line: decoding, decoding
//! params into structs shaped like the server's, and serialising whatever
//! reply results must never panic, and every reply must be a one-line
//! JSON-RPC 2.0 message that parses back and echoes the id verbatim.

#![no_main]

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;

use bgtask_core::rpc::{self, Id, Incoming, RpcError};
use bgtask_core::TaskId;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::{json, Value};

/// Mirrors the server's `bash` params (crates/bgtask/src/serve/methods.rs).
#[derive(Debug, Deserialize)]
#[expect(dead_code, reason = "fields exist to be deserialised")]
struct BashParams {
    command: String,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: HashMap<String, String>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    max_output_bytes: Option<u64>,
    #[serde(default)]
    background: bool,
    wait_ms: Option<u64>,
    notify_on_completion: Option<bool>,
    compressed: Option<bool>,
    output_bytes: Option<usize>,
}

/// Mirrors the server's `bash_wait` params.
#[derive(Debug, Deserialize)]
struct WaitParams {
    task_ids: Vec<String>,
    timeout_ms: Option<u64>,
}

/// Mirrors the server's `bash_output` params.
#[derive(Debug, Deserialize)]
#[expect(dead_code, reason = "fields exist to be deserialised")]
struct OutputParams {
    task_id: String,
    stream: Option<String>,
    offset: Option<u64>,
    max_bytes: Option<u64>,
}

/// Mirrors the server's params-less methods (`bash_drain_completions`).
#[derive(Debug, Deserialize)]
struct Empty {}

fuzz_target!(|line: &[u8]| {
    match rpc::decode(line) {
        Incoming::Invalid(reply) => {
            let parsed = check_reply(&reply);
            assert!(
                parsed.get("error").is_some(),
                "invalid without error: {reply}"
            );
        }
        Incoming::Notification { .. } => {}
        Incoming::Request { id, method, params } => {
            let parsed: Value = serde_json::from_str(id.get()).expect("an id is JSON");
            assert!(
                matches!(parsed, Value::Null | Value::String(_) | Value::Number(_)),
                "decoded an id JSON-RPC forbids: {}",
                id.get()
            );
            assert!(params.is_object(), "params are always an object: {params}");
            let replies = [
                reply(&id, rpc::params::<BashParams>(params.clone()).map(as_text)),
                reply(
                    &id,
                    rpc::params::<WaitParams>(params.clone()).and_then(wait),
                ),
                reply(
                    &id,
                    rpc::params::<OutputParams>(params.clone()).map(as_text),
                ),
                reply(&id, rpc::params::<Empty>(params).map(|_| json!(method))),
            ];
            for reply in &replies {
                check_reply(reply);
                assert!(
                    reply.contains(&format!("\"id\":{},", id.get())),
                    "the id is echoed verbatim: {reply}"
                );
            }
        }
    }
});

/// Decoded params as a result, so every field reaches the reply.
fn as_text(params: impl Debug) -> Value {
    json!(format!("{params:?}"))
}

/// What the server does with `bash_wait`'s ids before calling the service.
fn wait(p: WaitParams) -> Result<Value, RpcError> {
    let ids = p
        .task_ids
        .iter()
        .map(|t| t.parse::<TaskId>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RpcError::invalid_params(format!("invalid params: task_id: {e}")))?;
    Ok(json!({ "ids": ids.len(), "timeout_ms": p.timeout_ms }))
}

fn reply(id: &Id, result: Result<Value, RpcError>) -> String {
    match result {
        Ok(value) => rpc::result_reply(id, value),
        Err(err) => rpc::error_reply(id, &err),
    }
}

/// Checks a reply line and returns it parsed.
fn check_reply(text: &str) -> Value {
    assert!(!text.contains('\n'), "a reply is one line: {text}");
    let reply: Value = serde_json::from_str(text).expect("a reply parses back");
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    reply
}
