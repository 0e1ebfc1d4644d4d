//! Arbitrary bytes as one `bgtask serve` request line: decoding, decoding
//! params into every method's params (`bgtask_core::protocol`, the types
//! the servers use), and serialising whatever
//! reply results must never panic, and every reply must be a one-line
//! JSON-RPC 2.0 message that parses back and echoes the id verbatim.

#![no_main]

use std::fmt::Debug;

use bgtask_core::protocol::rpc::{self, Id, Incoming, RpcError};
use bgtask_core::protocol::{
    AckParams, BashParams, Defaults, DrainParams, Empty, InitializeParams, KillParams, ListParams,
    OutputParams, ResizeParams, SignalParams, StatusParams, TaskParams, UnwatchParams, WaitParams,
    WatchParams, WriteParams,
};
use bgtask_core::TaskDefaults;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

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
            // Every method's params, as the servers decode them.
            let replies = [
                reply(&id, decoded::<InitializeParams>(&params)),
                reply(
                    &id,
                    rpc::params::<BashParams>(params.clone()).map(|p| {
                        as_text(p.into_request(&Defaults::SERVE, &TaskDefaults::AGENT, None))
                    }),
                ),
                reply(&id, decoded::<StatusParams>(&params)),
                reply(&id, decoded::<OutputParams>(&params)),
                reply(&id, decoded::<ListParams>(&params)),
                reply(
                    &id,
                    rpc::params::<KillParams>(params.clone()).map(|p| json!(p.grace_ms())),
                ),
                // bash_promote, and bash_pause and bash_resume (issue 21).
                reply(&id, decoded::<TaskParams>(&params)),
                reply(&id, rpc::params::<WaitParams>(params.clone()).map(wait)),
                reply(&id, decoded::<AckParams>(&params)),
                reply(&id, decoded::<WatchParams>(&params)),
                reply(&id, decoded::<UnwatchParams>(&params)),
                reply(&id, decoded::<DrainParams>(&params)),
                // Issue 18: interactive tasks.
                reply(&id, decoded::<WriteParams>(&params)),
                reply(&id, decoded::<SignalParams>(&params)),
                reply(&id, decoded::<ResizeParams>(&params)),
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

/// Params decoded as `T`, shown as text.
fn decoded<T: DeserializeOwned + Debug>(params: &Value) -> Result<Value, RpcError> {
    rpc::params::<T>(params.clone()).map(as_text)
}

/// What both servers compute from `bash_wait`'s params.
fn wait(p: WaitParams) -> Value {
    json!({
        "ids": p.task_ids,
        "until": p.until,
        "serve": p.timeout_ms(&Defaults::SERVE),
        "mcp": p.timeout_ms(&Defaults::MCP),
    })
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
