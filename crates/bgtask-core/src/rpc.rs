//! JSON-RPC 2.0 framing for `bgtask serve`: decoding one line into a
//! request, and the error objects every reply uses. Nothing here knows about
//! tasks. Decoding never panics on any input (fuzzed: see docs/RELIABILITY.md).

use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
/// The one code for application errors; `data.kind` says which.
pub const APPLICATION_ERROR: i64 = -32000;

/// Longest request line accepted; longer lines are refused, not parsed.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// One decoded line.
#[derive(Debug)]
pub enum Incoming {
    /// A call that expects a reply.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A call without an id: handled, never answered.
    Notification { method: String },
    /// Not a valid request; the reply to send.
    Invalid(Value),
}

/// An error reply's code, message and optional `data.kind`.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub kind: Option<&'static str>,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            kind: None,
        }
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }
}

impl From<crate::Error> for RpcError {
    fn from(err: crate::Error) -> Self {
        let kind = err.kind();
        let code = match kind {
            "invalid_argument" => INVALID_PARAMS,
            _ => APPLICATION_ERROR,
        };
        RpcError {
            code,
            message: error_text(&err),
            kind: Some(kind),
        }
    }
}

/// An error with its causes on one line.
pub fn error_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// Decodes one line (without its newline).
pub fn decode(line: &[u8]) -> Incoming {
    if line.len() > MAX_LINE_BYTES {
        return Incoming::Invalid(error_reply(
            &Value::Null,
            &RpcError::new(
                INVALID_REQUEST,
                format!("request line longer than {MAX_LINE_BYTES} bytes"),
            ),
        ));
    }
    let value: Value = match std::str::from_utf8(line) {
        Err(_) => return invalid(PARSE_ERROR, "parse error: the line is not valid UTF-8"),
        Ok(text) => match serde_json::from_str(text) {
            Ok(value) => value,
            Err(e) => return invalid(PARSE_ERROR, format!("parse error: {e}")),
        },
    };
    let Value::Object(mut obj) = value else {
        return invalid(INVALID_REQUEST, "invalid request: expected a JSON object");
    };
    let id = obj.remove("id");
    let reply_id = id.clone().unwrap_or(Value::Null);
    let bad = |message: &str| {
        Incoming::Invalid(error_reply(
            &reply_id,
            &RpcError::new(INVALID_REQUEST, message),
        ))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return bad("invalid request: \"jsonrpc\" must be \"2.0\"");
    }
    if !matches!(
        &id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        // An id we cannot echo is answered with a null id, as JSON-RPC asks.
        return invalid(
            INVALID_REQUEST,
            "invalid request: \"id\" must be a string, a number or null",
        );
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => return bad("invalid request: \"method\" must be a string"),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Incoming::Invalid(error_reply(
                &reply_id,
                &RpcError::invalid_params("invalid params: \"params\" must be an object"),
            ))
        }
    };
    match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method },
    }
}

fn invalid(code: i64, message: impl Into<String>) -> Incoming {
    Incoming::Invalid(error_reply(&Value::Null, &RpcError::new(code, message)))
}

/// Decodes a method's params, naming the offending field on error.
pub fn params<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            RpcError::invalid_params(format!("invalid params: {inner}"))
        } else {
            RpcError::invalid_params(format!("invalid params: {path}: {inner}"))
        }
    })
}

pub fn result_reply(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

pub fn error_reply(id: &Value, err: &RpcError) -> Value {
    let mut error = json!({"code": err.code, "message": err.message});
    if let Some(kind) = err.kind {
        error["data"] = json!({"kind": kind});
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error})
}

pub fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}
