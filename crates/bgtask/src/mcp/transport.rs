//! The MCP server's stdio transport: rmcp's line transport, with two
//! things added around it.
//!
//! - **Receipts.** Completions shown in a tool result are acknowledged
//!   only on evidence that the client received the result: a message from
//!   the client read after the result was written and flushed. The tool
//!   registers what a result showed under its request id
//!   ([`Receipts::shown`]); `send` marks it written once the response is
//!   flushed; `receive` confirms everything written before the message it
//!   returns, and a settler thread acknowledges it in the store. Until
//!   then the completions stay claimed by this process (see
//!   bgtask-core's `store/outbox.rs`), so if this process dies they are
//!   shown again: twice at worst, never lost. A message read while the
//!   result was still being written is not counted (it may have been sent
//!   before the client read the result); the next one is. A request the
//!   client pipelined before reading a result, read after that result was
//!   written, is counted: nothing on the wire can tell it apart.
//! - **Oversized requests.** rmcp drops a line longer than its limit
//!   without a reply. Stdin is read here first: a line over the limit is
//!   replaced by a small marker, and the transport answers it with an
//!   Invalid Request error carrying the request's id when the id can be
//!   read from the start of the line (else without an id).

use std::collections::{HashMap, HashSet};
use std::sync::{mpsc, Arc, Mutex};

use rmcp::model::{ClientNotification, ErrorData, JsonRpcMessage, RequestId};
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::async_rw::{AsyncRwTransport, DEFAULT_MAX_LINE_LENGTH};
use rmcp::transport::Transport;
use rmcp::RoleServer;
use serde::de::IgnoredAny;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, DuplexStream};

use bgtask_core::{Service, TaskId};

/// Longest request line passed on (without its newline), so rmcp never
/// meets a line it would drop.
const MAX_REQUEST_BYTES: usize = DEFAULT_MAX_LINE_LENGTH - 1;
/// How much of an oversized line is kept to find its id in.
const ID_SEARCH_BYTES: usize = 64 * 1024;
/// Cancelled requests remembered at most.
const MAX_CANCELLED: usize = 1024;
/// The method of the marker that replaces an oversized line.
const OVERSIZED: &str = "bgtask/oversized_request";

/// Which completions each result showed, and which results have reached
/// the client's pipe.
pub struct Receipts {
    state: Mutex<ReceiptState>,
    settle: Mutex<mpsc::Sender<Settle>>,
}

/// What the settler thread does with completions.
enum Settle {
    /// The client has them: acknowledge.
    Delivered(Vec<TaskId>),
    /// Their result was never sent (request cancelled): show them again.
    Unsent(Vec<TaskId>),
}

#[derive(Default)]
struct ReceiptState {
    /// Shown in the result to a request whose response is not written yet.
    shown: HashMap<RequestId, Vec<TaskId>>,
    /// Shown in results already written and flushed.
    written: Vec<TaskId>,
    /// Requests the client cancelled (their results may never be sent).
    cancelled: HashSet<RequestId>,
}

impl Receipts {
    /// Starts the settler thread, which acknowledges confirmed completions.
    pub fn start(service: Arc<Service>) -> anyhow::Result<Arc<Receipts>> {
        let (tx, rx) = mpsc::channel::<Settle>();
        std::thread::Builder::new()
            .name("bgtask-mcp-settle".into())
            .spawn(move || {
                // On failure they stay claimed by this process, and are
                // shown again once it exits.
                for work in rx {
                    let done = match &work {
                        Settle::Delivered(ids) => service.settle(ids).map(|_| ()),
                        Settle::Unsent(ids) => service.unclaim(ids),
                    };
                    if let Err(e) = done {
                        tracing::warn!("cannot settle shown completions: {e}");
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the acknowledging thread: {e}"))?;
        Ok(Arc::new(Receipts {
            state: Mutex::new(ReceiptState::default()),
            settle: Mutex::new(tx),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReceiptState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, work: Settle) {
        let _ = self
            .settle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(work);
    }

    /// Records what the result to `request` shows (before it is sent).
    pub fn shown(&self, request: RequestId, ids: Vec<TaskId>) {
        let mut state = self.state();
        if state.cancelled.remove(&request) {
            drop(state);
            if !ids.is_empty() {
                self.settle(Settle::Unsent(ids));
            }
            return;
        }
        if !ids.is_empty() {
            state.shown.entry(request).or_default().extend(ids);
        }
    }

    /// The reply to `request` showed the client nothing: what its result
    /// was to show is shown again later.
    fn undelivered(&self, request: &RequestId) {
        let ids = self.state().shown.remove(request);
        if let Some(ids) = ids {
            self.settle(Settle::Unsent(ids));
        }
    }

    /// The client cancelled `request`: what its result would have shown
    /// is shown again later (twice at worst, if the result goes out anyway).
    fn cancelled(&self, request: RequestId) {
        let mut state = self.state();
        match state.shown.remove(&request) {
            Some(ids) => {
                drop(state);
                self.settle(Settle::Unsent(ids));
            }
            // Still running (its ids are released when it registers them),
            // or answered already. Kept bounded: a cancel forgotten here only
            // keeps its completions claimed until this server exits.
            None => {
                if state.cancelled.len() >= MAX_CANCELLED {
                    state.cancelled.clear();
                }
                state.cancelled.insert(request);
            }
        }
    }

    /// The response to `request` is written and flushed.
    fn written(&self, request: &RequestId) {
        let mut state = self.state();
        if let Some(ids) = state.shown.remove(request) {
            state.written.extend(ids);
        }
    }

    /// A message from the client was read: it was sent after everything
    /// written so far reached its pipe.
    fn confirmed(&self) {
        let ids = std::mem::take(&mut self.state().written);
        if !ids.is_empty() {
            self.settle(Settle::Delivered(ids));
        }
    }
}

/// rmcp's transport over stdin (as filtered by [`bound_lines`]) and stdout,
/// with receipts and oversized-request errors.
pub struct StdioTransport {
    inner: AsyncRwTransport<RoleServer, DuplexStream, tokio::io::Stdout>,
    receipts: Arc<Receipts>,
}

impl StdioTransport {
    /// Must be called inside the runtime (it starts the stdin reader).
    pub fn new(receipts: Arc<Receipts>) -> StdioTransport {
        let (filtered, feed) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            if let Err(e) = bound_lines(tokio::io::stdin(), feed).await {
                tracing::debug!("stdin reader stopped: {e}");
            }
        });
        StdioTransport {
            inner: AsyncRwTransport::new(filtered, tokio::io::stdout()),
            receipts,
        }
    }
}

impl Transport<RoleServer> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send + 'static {
        let (id, is_result) = match &item {
            JsonRpcMessage::Response(r) => (Some(r.id.clone()), true),
            JsonRpcMessage::Error(e) => (e.id.clone(), false),
            _ => (None, false),
        };
        let sending = self.inner.send(item);
        let receipts = Arc::clone(&self.receipts);
        async move {
            // rmcp's send returns once the frame is flushed to stdout.
            let sent = sending.await;
            match id {
                Some(id) if is_result && sent.is_ok() => receipts.written(&id),
                // An error reply, or a reply that could not be written,
                // showed the client nothing.
                Some(id) => receipts.undelivered(&id),
                None => {}
            }
            sent
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            let message = self.inner.receive().await?;
            self.receipts.confirmed();
            let JsonRpcMessage::Notification(n) = &message else {
                return Some(message);
            };
            let custom = match &n.notification {
                ClientNotification::CustomNotification(custom) => custom,
                ClientNotification::CancelledNotification(c) => {
                    if let Some(id) = &c.params.request_id {
                        self.receipts.cancelled(id.clone());
                    }
                    return Some(message);
                }
                _ => return Some(message),
            };
            if custom.method != OVERSIZED {
                return Some(message);
            }
            let params = custom.params.clone().unwrap_or(Value::Null);
            let id = serde_json::from_value::<RequestId>(params["id"].clone()).ok();
            let error = ErrorData::invalid_request(
                format!(
                    "request too large: {} bytes; the limit is {MAX_REQUEST_BYTES} bytes per line",
                    params["bytes"]
                ),
                None,
            );
            // Spawned: `receive` may be cancelled, the reply must not be.
            tokio::spawn(self.inner.send(JsonRpcMessage::error(error, id)));
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.inner.close().await
    }
}

/// Copies lines from `input` to `output`, replacing each line longer than
/// `MAX_REQUEST_BYTES` by an `OVERSIZED` marker naming its size and, when
/// it can be read from the line's start, its id.
async fn bound_lines(
    input: impl AsyncRead + Unpin,
    mut output: DuplexStream,
) -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut line: Vec<u8> = Vec::new();
    // Length of the current line once it is known to be too long.
    let mut oversized: Option<usize> = None;
    loop {
        let available = input.fill_buf().await?;
        if available.is_empty() {
            // End of input: pass on a final unterminated line as it is.
            output.write_all(&line).await?;
            return output.shutdown().await;
        }
        let newline = available.iter().position(|b| *b == b'\n');
        let take = newline.map_or(available.len(), |i| i + 1);
        let content = newline.map_or(take, |i| i);
        match oversized.as_mut() {
            Some(len) => *len += content,
            None if line.len() + content > MAX_REQUEST_BYTES => {
                let keep = ID_SEARCH_BYTES.saturating_sub(line.len()).min(content);
                line.extend_from_slice(&available[..keep]);
                oversized = Some(line.len() - keep + content);
                line.truncate(ID_SEARCH_BYTES);
                line.shrink_to(ID_SEARCH_BYTES);
            }
            None => line.extend_from_slice(&available[..take]),
        }
        input.consume(take);
        if newline.is_none() {
            continue;
        }
        if let Some(bytes) = oversized.take() {
            let marker = json!({
                "jsonrpc": "2.0",
                "method": OVERSIZED,
                "params": { "id": recover_id(&line), "bytes": bytes },
            });
            line = marker.to_string().into_bytes();
            line.push(b'\n');
        }
        output.write_all(&line).await?;
        line.clear();
        // Do not keep a huge line's buffer for the rest of the session.
        line.shrink_to(ID_SEARCH_BYTES);
    }
}

/// The `id` member of a JSON-RPC request from the start of its line, if
/// it is a number or a string found at the top level before the text is
/// cut off.
fn recover_id(start: &[u8]) -> Value {
    fn skip_ws(text: &[u8], mut i: usize) -> usize {
        while text.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    }
    /// Parses one JSON value at `i`; the value and the index after it.
    fn value_at<T: serde::de::DeserializeOwned>(text: &[u8], i: usize) -> Option<(T, usize)> {
        let mut values = serde_json::Deserializer::from_slice(text.get(i..)?).into_iter::<T>();
        let value = values.next()?.ok()?;
        Some((value, i + values.byte_offset()))
    }
    let find = || -> Option<Value> {
        let mut i = skip_ws(start, 0);
        if start.get(i) != Some(&b'{') {
            return None;
        }
        i += 1;
        loop {
            i = skip_ws(start, i);
            let (key, next) = value_at::<String>(start, i)?;
            i = skip_ws(start, next);
            if start.get(i) != Some(&b':') {
                return None;
            }
            i = skip_ws(start, i + 1);
            if key == "id" {
                let (id, _) = value_at::<Value>(start, i)?;
                return (id.is_number() || id.is_string()).then_some(id);
            }
            let (_, next) = value_at::<IgnoredAny>(start, i)?;
            i = skip_ws(start, next);
            if start.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
    };
    find().unwrap_or(Value::Null)
}
