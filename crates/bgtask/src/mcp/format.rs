//! Text written for a model: tool results and the block of completions
//! that opens every result. Short, explicit, and always naming task ids.

use std::fmt::Write;

use bgtask_core::units::format_duration_ms;
use bgtask_core::{Completion, Task};

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
        let json = serde_json::json!({
            "task_id": c.task_id,
            "session": c.session,
            "status": c.status,
            "exit_code": c.exit_code,
            "signal": c.signal,
            "reason": reason,
            "command": one_line(&c.command),
            "duration_ms": c.duration_ms,
            "finished_at": c.finished_at,
            "output_preview": lines.join("\n"),
            "output_truncated": c.output_truncated,
            "stdout_path": c.stdout_path,
            "stderr_path": c.stderr_path,
            "sandbox": c.sandbox,
        });
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
    let mut text = format!(
        "Task {} is still running in the background: {}.\n",
        task.task_id,
        one_line(&task.command)
    );
    if notify {
        text.push_str("Its completion (status, exit code, last output lines) will be reported at the start of a later tool result. ");
    }
    text.push_str(
        "Use bash_wait to block until it ends, bash_output to read its output, bash_kill to stop it.",
    );
    let _ = write!(
        text,
        "\nOutput files: {} (stdout), {} (stderr)",
        task.stdout_path.display(),
        task.stderr_path.display()
    );
    text
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
