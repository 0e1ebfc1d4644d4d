//! Text written for a model: tool results and the block of completions
//! that opens every result. Short, explicit, and always naming task ids.

use std::fmt::Write;

use bgtask_core::units::format_duration_ms;
use bgtask_core::{Completion, Task};
use serde_json::{json, Map, Value};

/// Lines of output shown per completion in the block.
const PREVIEW_LINES: usize = 5;
/// Longest preview line and reason shown in the block.
const LINE_CHARS: usize = 200;
/// Bytes the completion block may take in one result, text and JSON
/// together; each entry is bounded (command, reason and preview lines are
/// cut), so at least one always fits.
pub const BLOCK_BUDGET: usize = 8 * 1024;

/// One completion as the block shows it: its text and its JSON.
pub struct BlockEntry {
    pub text: String,
    pub json: serde_json::Value,
}

impl BlockEntry {
    pub fn of(c: &Completion) -> BlockEntry {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "- {} {} ({}{}) after {}: {}",
            c.task_id,
            c.status,
            c.exit_code
                .map_or("no exit code".to_owned(), |e| format!("exit {e}")),
            c.signal
                .as_ref()
                .map_or(String::new(), |s| format!(", {s}")),
            c.duration_ms.map_or("?".to_owned(), format_duration_ms),
            one_line(&c.command),
        );
        let reason = c.reason.as_deref().map(|r| cut(r, LINE_CHARS));
        if let Some(reason) = &reason {
            let _ = writeln!(text, "  reason: {reason}");
        }
        let preview = bgtask_core::compact::compact(&c.output_preview);
        let lines: Vec<String> = preview
            .lines()
            .rev()
            .take(PREVIEW_LINES)
            .map(|l| cut(l, LINE_CHARS))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        for line in &lines {
            let _ = writeln!(text, "  | {line}");
        }
        let _ = writeln!(
            text,
            "  output: {} (stdout), {} (stderr)",
            c.stdout_path.display(),
            c.stderr_path.display()
        );
        // What a client that shows only `structuredContent` (Claude Code,
        // Codex) gives the model: lean, no paths or timestamps.
        let mut json = lean_fields(
            &c.task_id,
            c.status,
            c.exit_code,
            c.signal.as_deref(),
            reason.as_deref(),
            c.duration_ms,
            &c.command,
        );
        if !lines.is_empty() {
            json.insert("output_tail".into(), lines.join("\n").into());
        }
        // A sandboxed task's confinement: a failure may come from it.
        if let Some(sandbox) = &c.sandbox {
            json.insert("sandbox".into(), serde_json::json!(sandbox));
        }
        // Beside the other kinds of notification (issue 16) in one list.
        json.insert("kind".into(), "completed".into());
        let json = serde_json::Value::Object(json);
        BlockEntry { text, json }
    }

    /// Bytes this entry adds to a result.
    pub fn cost(&self) -> usize {
        self.text.len() + self.json.to_string().len()
    }
}

/// The block that opens a result when background tasks have finished:
/// the entries that fit, and a line for the `left` that did not.
pub fn completions_block(entries: &[BlockEntry], left: usize) -> String {
    let mut text = String::new();
    let noun = |n: usize| if n == 1 { "task" } else { "tasks" };
    if !entries.is_empty() {
        let _ = writeln!(
            text,
            "[bgtask] {} background {} finished:",
            entries.len(),
            noun(entries.len())
        );
    }
    for entry in entries {
        text.push_str(&entry.text);
    }
    if left > 0 {
        let _ = writeln!(
            text,
            "[bgtask] and {left} more background {} finished, not shown here for room: \
             they open the next results; call bash_wait or see `bgtask completions`.",
            noun(left)
        );
    }
    text.push('\n');
    text
}

/// One line describing a task's state.
pub fn task_line(task: &Task) -> String {
    let mut line = format!("Task {} is {}", task.task_id, task.status);
    if let Some(code) = task.exit_code {
        let _ = write!(line, " (exit {code}");
        if let Some(sig) = &task.signal {
            let _ = write!(line, ", {sig}");
        }
        line.push(')');
    }
    if let Some(d) = task.duration_ms {
        let _ = write!(line, " after {}", format_duration_ms(d));
    }
    if let Some(reason) = &task.reason {
        let _ = write!(line, "; {reason}");
    }
    let _ = write!(line, ". Command: {}", one_line(&task.command));
    line
}

/// The text of a task that moved to the background.
pub fn background_text(task: &Task, notify: bool) -> String {
    format!(
        "{}\nCommand: {}\nOutput files: {} (stdout), {} (stderr)",
        background_note(task, notify),
        one_line(&task.command),
        task.stdout_path.display(),
        task.stderr_path.display()
    )
}

/// The text of a finished `bash` call: the state line, then the output.
pub fn finished_text(task: &Task, output: &bgtask_core::compact::Shaped) -> String {
    let mut text = task_line(task);
    text.push('\n');
    if output.text.is_empty() {
        text.push_str("(no output)\n");
    } else {
        text.push_str(&output.text);
        if !output.text.ends_with('\n') {
            text.push('\n');
        }
    }
    if output.truncated {
        let _ = writeln!(
            text,
            "Full output: {} (stdout), {} (stderr)",
            task.stdout_path.display(),
            task.stderr_path.display()
        );
    }
    text
}

/// The fields a model needs of a task's state: id, status, exit code (and
/// signal or reason when there is one), duration and the command's first
/// line. Absent values are left out rather than written `null`.
#[allow(clippy::too_many_arguments)]
fn lean_fields(
    task_id: &bgtask_core::TaskId,
    status: bgtask_core::Status,
    exit_code: Option<i32>,
    signal: Option<&str>,
    reason: Option<&str>,
    duration_ms: Option<u64>,
    command: &str,
) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("task_id".into(), json!(task_id));
    map.insert("status".into(), json!(status));
    if let Some(code) = exit_code {
        map.insert("exit_code".into(), json!(code));
    }
    if let Some(signal) = signal {
        map.insert("signal".into(), json!(signal));
    }
    if let Some(reason) = reason {
        map.insert("reason".into(), json!(reason));
    }
    if let Some(ms) = duration_ms {
        map.insert("duration".into(), json!(format_duration_ms(ms)));
    }
    map.insert("command".into(), json!(one_line(command)));
    map
}

/// A task as a model reads it in `structuredContent` (see [`lean_fields`]).
pub fn lean_task(task: &Task) -> Map<String, Value> {
    lean_fields(
        &task.task_id,
        task.status,
        task.exit_code,
        task.signal.as_deref(),
        task.reason
            .as_deref()
            .map(|r| cut(r, LINE_CHARS))
            .as_deref(),
        task.duration_ms,
        &task.command,
    )
}

/// The guidance for a task that continues in the background, for the
/// text and for `structuredContent` alike.
pub fn background_note(task: &Task, notify: bool) -> String {
    let mut note = format!("Still running in the background as {}.", task.task_id);
    if notify {
        note.push_str(" You will be told when it ends (status, exit code, last output lines), at the start of a later tool result.");
    }
    note.push_str(
        " bash_wait blocks until it ends, bash_output reads its output, bash_kill stops it.",
    );
    note
}

/// The structured result of a `bash` call whose task ended in its window:
/// the lean task, its bounded compacted output, and a note when it was cut.
pub fn finished_structured(task: &Task, output: &bgtask_core::compact::Shaped) -> Value {
    let mut map = lean_task(task);
    map.insert("output".into(), json!(output.text));
    if output.truncated {
        map.insert(
            "note".into(),
            json!(format!(
                "Output shortened ({} bytes left out); bash_output with task_id {} reads all of it.",
                output.omitted_bytes, task.task_id
            )),
        );
    }
    Value::Object(map)
}

/// At most `max` characters of `text`, with an ellipsis if cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

fn one_line(command: &str) -> String {
    let first = command.lines().next().unwrap_or("");
    let mut short: String = first.chars().take(120).collect();
    if short.len() < command.len() {
        short.push('…');
    }
    short
}

/// `bash_status` for a model: the lean task and the compacted output tail.
pub fn status_structured(status: &bgtask_core::TaskStatus) -> Value {
    let mut map = lean_task(&status.task);
    if let Some(pid) = status.task.pid.filter(|_| !status.task.is_terminal()) {
        map.insert("pid".into(), json!(pid));
    }
    map.insert(
        "output_tail".into(),
        json!(bgtask_core::compact::compact(&status.output_tail)),
    );
    Value::Object(map)
}

/// `bash_output` for a model: the chunk without fields that say nothing
/// (`truncated: false`, no dropped bytes).
pub fn chunk_structured(chunk: &bgtask_core::protocol::OutputChunk) -> Value {
    let mut map = Map::new();
    map.insert("task_id".into(), json!(chunk.task_id));
    map.insert("data".into(), json!(chunk.data));
    map.insert("offset".into(), json!(chunk.offset));
    map.insert("next_offset".into(), json!(chunk.next_offset));
    map.insert("eof".into(), json!(chunk.eof));
    if chunk.truncated {
        map.insert(
            "more".into(),
            json!(chunk.file_len - chunk.next_offset.min(chunk.file_len)),
        );
    }
    if chunk.output_dropped_bytes > 0 {
        map.insert(
            "output_dropped_bytes".into(),
            json!(chunk.output_dropped_bytes),
        );
    }
    Value::Object(map)
}

/// A list of tasks for a model (`bash_list`, `bash_wait`).
pub fn tasks_structured(tasks: &[Task]) -> Value {
    Value::Array(tasks.iter().map(|t| Value::Object(lean_task(t))).collect())
}
