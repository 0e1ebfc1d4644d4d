//! The MCP side of interactive tasks (issue 18): the `stdin` / `pty`
//! arguments of `bash`, the `bash_write` and `bash_signal` tools and the
//! screen view of `bash_status`. The tools themselves are declared in
//! `tools.rs` (one router); their work is here.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use bgtask_core::protocol::{PtyParams, SignalParams, View, WriteParams};
use bgtask_core::Service;

use super::format;
use super::tools::Answer;

/// `bash`'s `pty` argument.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub struct PtyArgs {
    /// Terminal rows (default 24).
    pub rows: Option<u16>,
    /// Terminal columns (default 80).
    pub cols: Option<u16>,
}

impl From<PtyArgs> for PtyParams {
    fn from(args: PtyArgs) -> PtyParams {
        PtyParams {
            rows: args.rows,
            cols: args.cols,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StatusArgs {
    /// The task id, e.g. "bg-0123456789abcdef".
    pub task_id: String,
    /// "raw" (default): the last output as captured. "screen": for a task started with pty, what its terminal shows now (use it for prompts, REPLs and full-screen programs).
    pub view: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WriteArgs {
    /// The task id of a task started with stdin=true or pty.
    pub task_id: String,
    /// Text to type, sent exactly as given: no newline is added (add the key "enter").
    pub data: Option<String>,
    /// Keys to press after the text, in order: enter, tab, escape, backspace, up, down, left, right, home, end, pageup, pagedown, f1-f12, ctrl-a..ctrl-z (ctrl-c interrupts, ctrl-d ends input under a pty).
    pub keys: Option<Vec<String>>,
    /// Close the task's input after this (end of file).
    pub eof: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SignalArgs {
    /// The task id.
    pub task_id: String,
    /// The signal: INT (like ctrl-c; stops most servers gracefully), TERM, HUP (reload), USR1, USR2, QUIT, KILL, or a number.
    pub signal: String,
    /// Only the task's shell, not the processes it started (default false).
    pub leader: Option<bool>,
}

fn parse_view(text: Option<&str>) -> Result<View, bgtask_core::Error> {
    match text {
        None | Some("raw") => Ok(View::Raw),
        Some("screen") => Ok(View::Screen),
        Some(other) => Err(bgtask_core::Error::InvalidArgument(format!(
            "view must be \"raw\" or \"screen\", not {other:?}"
        ))),
    }
}

/// `bash_status`, with the screen when asked.
pub fn status(
    service: &Service,
    args: StatusArgs,
    tail: u64,
) -> Result<Answer, bgtask_core::Error> {
    let view = parse_view(args.view.as_deref())?;
    let id = args.task_id.parse()?;
    let status = service.status(&id, tail)?;
    let mut text = format::task_line(&status.task);
    // Lean, as every result a model reads (format.rs).
    let mut structured = format::status_structured(&status);
    if view == View::Screen {
        let screen = service.screen(&id)?;
        text.push_str(&format!(
            "\nScreen ({}x{}, cursor at row {} column {}):\n{}",
            screen.rows,
            screen.cols,
            screen.cursor_row + 1,
            screen.cursor_col + 1,
            screen.text()
        ));
        structured["screen"] = json!(screen);
        if let Some(map) = structured.as_object_mut() {
            map.remove("output_tail");
        }
    } else if !status.output_tail.is_empty() {
        text.push_str("\nLast output:\n");
        text.push_str(&bgtask_core::compact::compact(&status.output_tail));
    }
    Ok(Answer::ok(text, structured))
}

/// `bash_write`.
pub fn write(service: &Service, args: WriteArgs) -> Result<Answer, bgtask_core::Error> {
    let params = WriteParams {
        task_id: args.task_id.parse()?,
        data: args.data,
        keys: args.keys.unwrap_or_default(),
        eof: args.eof.unwrap_or(false),
    };
    let result = params.send(service)?;
    let sent = result.sent;
    let mut text = format!(
        "Sent {} bytes to task {}",
        sent.written + sent.queued,
        result.task_id
    );
    if sent.queued > 0 {
        text.push_str(&format!(
            " ({} bytes wait until the task reads them)",
            sent.queued
        ));
    }
    if sent.closed {
        text.push_str("; its input is now closed");
    }
    text.push_str(
        ". Read its reply with bash_status (view \"screen\" for a pty task) or bash_output.",
    );
    Ok(Answer::ok(text, json!(result)))
}

/// `bash_signal`.
pub fn signal(service: &Service, args: SignalArgs) -> Result<Answer, bgtask_core::Error> {
    let params = SignalParams {
        task_id: args.task_id.parse()?,
        signal: args.signal,
        leader: args.leader.unwrap_or(false),
    };
    let task = params.send(service)?;
    let sent = task.signals_sent.last().cloned().unwrap_or_default();
    let text = format!("Sent {sent}. {}", format::task_line(&task));
    Ok(Answer::ok(text, json!(task)))
}
