//! JSON-RPC 2.0 framing for `bgtask serve`: decoding one line into a
//! request, and the error objects every reply uses. Nothing here knows about
//! tasks. Decoding never panics on any input (fuzzed: see docs/RELIABILITY.md).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::error::ErrorKind;

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
        id: Id,
        method: String,
        params: Value,
    },
    /// A call without an id: handled, never answered.
    Notification { method: String },
    /// Not a valid request; the reply line to send.
    Invalid(String),
}

/// A request's id exactly as the client wrote it (its JSON text), echoed
/// verbatim: parsed and printed again, `1.50`, `1e2`, `-0` or an integer
/// beyond 64 bits would come back changed, and a client matching replies
/// by id would never see its own.
#[derive(Debug, Clone)]
pub struct Id(Option<Box<RawValue>>);

impl Id {
    /// The id of a reply to a request whose id could not be read.
    pub fn null() -> Id {
        Id(None)
    }

    /// The id's JSON text.
    pub fn get(&self) -> &str {
        self.0.as_deref().map_or("null", RawValue::get)
    }
}

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(raw) => raw.serialize(s),
            None => s.serialize_unit(),
        }
    }
}

/// An error reply's code, message and optional `data.kind`.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub kind: Option<ErrorKind>,
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

    /// The error object a reply carries: `code`, `message` and, for an
    /// application error, `data.kind`.
    pub fn object(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(kind) = self.kind {
            error["data"] = json!({"kind": kind});
        }
        error
    }
}

/// The protocol's error code for each kind of error: the one place that
/// chooses it. Arguments the core rejects are invalid params like the ones
/// serde rejects; everything else is an application error whose
/// `data.kind` says which.
pub fn code_of(kind: ErrorKind) -> i64 {
    match kind {
        ErrorKind::InvalidArgument => INVALID_PARAMS,
        ErrorKind::TaskNotFound
        | ErrorKind::AmbiguousTaskId
        | ErrorKind::InvalidCwd
        | ErrorKind::LimitExceeded
        | ErrorKind::SpawnFailed
        | ErrorKind::StoreError
        | ErrorKind::Timeout
        | ErrorKind::Unreachable
        | ErrorKind::NotInteractive
        | ErrorKind::InvalidState
        | ErrorKind::GroupNotFound
        | ErrorKind::GroupInUse => APPLICATION_ERROR,
    }
}

impl From<crate::Error> for RpcError {
    fn from(err: crate::Error) -> Self {
        let kind = err.kind();
        RpcError {
            code: code_of(kind),
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

/// The request's `id` member as written, told apart from a missing one
/// (`"id": null` is a request, no `id` a notification).
#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "present")]
    id: Option<Box<RawValue>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// Decodes one line (without its newline).
pub fn decode(line: &[u8]) -> Incoming {
    if line.len() > MAX_LINE_BYTES {
        return invalid(
            INVALID_REQUEST,
            format!("request line longer than {MAX_LINE_BYTES} bytes"),
        );
    }
    let Ok(text) = std::str::from_utf8(line) else {
        return invalid(PARSE_ERROR, "parse error: the line is not valid UTF-8");
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return invalid(PARSE_ERROR, format!("parse error: {e}")),
    };
    let Value::Object(mut obj) = value else {
        return invalid(INVALID_REQUEST, "invalid request: expected a JSON object");
    };
    // The same text again, for the id's exact spelling. It parsed as an
    // object above, so this fails only on a repeated member.
    let raw_id = match serde_json::from_str::<Envelope>(text) {
        Ok(envelope) => envelope.id.map(|raw| Id(Some(raw))),
        Err(_) => {
            return invalid(
                INVALID_REQUEST,
                "invalid request: \"id\" appears more than once",
            )
        }
    };
    if !matches!(
        obj.remove("id"),
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        // An id we cannot echo is answered with a null id, as JSON-RPC asks.
        return invalid(
            INVALID_REQUEST,
            "invalid request: \"id\" must be a string, a number or null",
        );
    }
    let reply_id = raw_id.clone().unwrap_or_else(Id::null);
    let bad = |code: i64, message: &str| {
        Incoming::Invalid(error_reply(&reply_id, &RpcError::new(code, message)))
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return bad(
            INVALID_REQUEST,
            "invalid request: \"jsonrpc\" must be \"2.0\"",
        );
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return bad(
                INVALID_REQUEST,
                "invalid request: \"method\" must be a string",
            )
        }
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return bad(
                INVALID_PARAMS,
                "invalid params: \"params\" must be an object",
            )
        }
    };
    match raw_id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method },
    }
}

fn invalid(code: i64, message: impl Into<String>) -> Incoming {
    Incoming::Invalid(error_reply(&Id::null(), &RpcError::new(code, message)))
}

/// Decodes a method's params, naming the offending field on error. The
/// message never holds a value the client sent (an `env` value may be a
/// secret): serde's "invalid type: string \"…\"" keeps only the kind.
pub fn params<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = without_values(&e.into_inner().to_string());
        if path == "." || path.is_empty() {
            RpcError::invalid_params(format!("invalid params: {inner}"))
        } else {
            RpcError::invalid_params(format!("invalid params: {path}: {inner}"))
        }
    })
}

/// serde's data-error message with the offending value left out:
/// "invalid type: string \"x\", expected a map" becomes "invalid type:
/// string, expected a map"; "unknown variant `x`, expected …" becomes
/// "unknown variant, expected …". Messages that hold no value (missing
/// field, invalid length) pass unchanged; anything unrecognised that holds
/// a quote or backtick is reduced to a fixed text.
fn without_values(message: &str) -> String {
    for lead in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(lead) {
            // The expected part comes from our own types, so the last
            // separator is the real one even if the value contains it.
            let (unexpected, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
            let kind = unexpected
                .split(['`', '"'])
                .next()
                .unwrap_or_default()
                .trim();
            let mut text = format!("{lead}{kind}");
            if !expected.is_empty() {
                text.push_str(", expected ");
                text.push_str(expected);
            }
            return text;
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return match rest.split_once(", expected ") {
            Some((_, expected)) => format!("unknown variant, expected {expected}"),
            None => "unknown variant".to_owned(),
        };
    }
    if message.starts_with("missing field ")
        // A task id is never a secret, and showing it tells what is wrong.
        || message.starts_with("invalid task id ")
        || message.starts_with("duplicate field ")
        || message.starts_with("invalid length ")
        || !message.contains(['`', '"'])
    {
        return message.to_owned();
    }
    "invalid value".to_owned()
}

/// The reply line to a request.
#[derive(Serialize)]
struct Reply<'a> {
    // Members in sorted order, as the rest of the server's output.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Value>,
    id: &'a Id,
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
}

impl Reply<'_> {
    fn line(&self) -> String {
        // A struct of JSON values and raw JSON text always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The reply line (without newline) carrying `result`.
pub fn result_reply(id: &Id, result: Value) -> String {
    Reply {
        error: None,
        id,
        jsonrpc: "2.0",
        result: Some(result),
    }
    .line()
}

/// The reply line (without newline) carrying `err`.
pub fn error_reply(id: &Id, err: &RpcError) -> String {
    Reply {
        error: Some(err.object()),
        id,
        jsonrpc: "2.0",
        result: None,
    }
    .line()
}

/// A notification line (without newline).
pub fn notification(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request_id(line: &str) -> String {
        match decode(line.as_bytes()) {
            Incoming::Request { id, .. } => id.get().to_owned(),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn ids_keep_their_text() {
        for id in [
            "12345678901234567890123",
            "-0",
            "1e2",
            "1.50",
            "\"a\\u0041\"",
            "null",
        ] {
            let line = format!("{{\"jsonrpc\":\"2.0\",\"id\": {id} ,\"method\":\"m\"}}");
            assert_eq!(request_id(&line), id);
            let reply = result_reply(
                &match decode(line.as_bytes()) {
                    Incoming::Request { id, .. } => id,
                    other => panic!("{other:?}"),
                },
                json!(1),
            );
            assert_eq!(
                reply,
                format!("{{\"id\":{id},\"jsonrpc\":\"2.0\",\"result\":1}}")
            );
        }
        assert!(matches!(
            decode(br#"{"jsonrpc":"2.0","method":"m"}"#),
            Incoming::Notification { .. }
        ));
        for line in [
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":[1],"method":"m"}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"m"}"#,
        ] {
            match decode(line.as_bytes()) {
                Incoming::Invalid(reply) => assert!(reply.contains("\"id\":null"), "{reply}"),
                other => panic!("{line} decoded as {other:?}"),
            }
        }
    }

    #[test]
    fn params_errors_name_the_field_but_not_the_value() {
        #[derive(Debug, serde::Deserialize)]
        #[expect(dead_code, reason = "fields exist to be deserialised")]
        struct P {
            env: std::collections::HashMap<String, String>,
            n: Option<u64>,
        }
        let cases = [
            (
                json!({"env": "tok-1"}),
                "env: invalid type: string, expected a map",
            ),
            (
                json!({"env": {"K": 7}}),
                "env.K: invalid type: integer, expected a string",
            ),
            (
                json!({"env": {}, "n": -4}),
                "n: invalid value: integer, expected u64",
            ),
            (
                json!({"env": {}, "n": 1.5}),
                "n: invalid type: floating point, expected u64",
            ),
            (json!({}), "missing field `env`"),
        ];
        for (params, expected) in cases {
            let err = super::params::<P>(params.clone()).unwrap_err();
            assert_eq!(err.code, INVALID_PARAMS);
            assert_eq!(
                err.message,
                format!("invalid params: {expected}"),
                "{params}"
            );
        }
        assert_eq!(
            without_values("unknown variant `tok`, expected one of `a`, `b`"),
            "unknown variant, expected one of `a`, `b`"
        );
        assert_eq!(without_values("something \"tok\" odd"), "invalid value");
    }
}
