//! The CLI's views that follow the store as it changes: `wait` reporting
//! each task as it ends, `list` (and `list --watch`, redrawn on the
//! store's change events), and the summary `logs --follow` ends with.

use std::io::{IsTerminal, Write};

use anyhow::Result;

use bgtask_core::{ListRequest, Service, Task, TaskId};

use crate::commands::wait_exit_code;
use crate::render;

/// Width of `list` when stdout is not a terminal and `COLUMNS` is unset:
/// wide enough for the working directory column, narrow enough to read.
const PIPE_WIDTH: usize = 120;

/// Bytes of output read for each ended task's preview in `wait`.
const PREVIEW_BYTES: u64 = 2048;

/// Columns to lay human output out for: the terminal's when stdout is
/// one, else `COLUMNS`, else [`PIPE_WIDTH`].
pub fn output_width() -> usize {
    if std::io::stdout().is_terminal() {
        if let Ok((w, _)) = crossterm::terminal::size() {
            if w > 0 {
                return usize::from(w);
            }
        }
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|w| *w > 0)
        .unwrap_or(PIPE_WIDTH)
}

fn layout(all_sessions: bool) -> render::ListLayout {
    render::ListLayout {
        width: output_width(),
        all_sessions,
        home: std::env::var("HOME").ok(),
        now_ms: bgtask_core::now_ms(),
    }
}

/// `bgtask list`, and with `watch` a list redrawn at each change of the
/// store (woken by its events file, never on a timer) until interrupted.
/// On a terminal each redraw replaces the last; into a pipe each one is
/// printed after the last, separated by a blank line (with `--json`, one
/// document per line).
pub fn list(service: &Service, request: &ListRequest, json: bool, watch: bool) -> Result<u8> {
    if !watch {
        let tasks = service.list(request)?;
        render::list(&tasks, json, &layout(request.all_sessions))?;
        return Ok(0);
    }
    let events = service.watch_events()?;
    let tty = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        let tasks = service.list(request)?;
        let written = if json {
            render::json(&tasks)
        } else {
            draw_list(&tasks, request.all_sessions, tty, first)
        };
        match written {
            Ok(()) => {}
            // The reader went away (`| head`): nothing left to do.
            Err(e) if is_broken_pipe(&e) => return Ok(0),
            Err(e) => return Err(e),
        }
        first = false;
        events.wait(None)?;
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// One redraw of `list --watch`. On a terminal: from the top left, each
/// line cleared to its end and the rest of the screen cleared after the
/// last one, so nothing flickers; cut to the terminal's height.
fn draw_list(tasks: &[Task], all_sessions: bool, tty: bool, first: bool) -> Result<()> {
    let text = render::list_text(tasks, &layout(all_sessions));
    let mut out = std::io::stdout().lock();
    if !tty {
        if !first {
            out.write_all(b"\n")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    let rows = crossterm::terminal::size()
        .map(|(_, h)| usize::from(h))
        .unwrap_or(24)
        .max(3);
    let mut screen = String::from("\x1b[H");
    let clock = render::time_of_day(bgtask_core::now_ms());
    screen.push_str(&format!(
        "bgtask list --watch  (redrawn on each change; {clock})  ctrl-c to quit\x1b[K\r\n"
    ));
    let lines: Vec<&str> = text.lines().collect();
    let room = rows - 2;
    for line in lines.iter().take(room) {
        screen.push_str(line);
        screen.push_str("\x1b[K\r\n");
    }
    if lines.len() > room {
        screen.push_str(&format!("… {} more\x1b[K", lines.len() - room));
    }
    screen.push_str("\x1b[J");
    out.write_all(screen.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// `bgtask wait`: with `--json`, one array once every task has ended (or
/// the timeout passed). Otherwise each task is printed as it ends, with
/// the last lines of its output, and with several tasks a last line says
/// which did not complete. The exit code is `wait_exit_code`'s (124 when
/// the timeout passes first).
pub fn wait(
    service: &Service,
    ids: &[TaskId],
    timeout_ms: Option<u64>,
    json: bool,
    raw: bool,
) -> Result<u8> {
    if json {
        let outcome = service.wait(ids, timeout_ms)?;
        render::json(&outcome.tasks)?;
        if outcome.timed_out {
            report_timeout(&outcome.tasks);
            return Ok(124);
        }
        return Ok(wait_exit_code(&outcome.tasks));
    }
    let mut unique: Vec<TaskId> = Vec::new();
    for id in ids {
        if !unique.contains(id) {
            unique.push(id.clone());
        }
    }
    let several = unique.len() > 1;
    let mut ended: Vec<Task> = Vec::new();
    let mut out = std::io::stdout().lock();
    // A write that fails (stdout closed) is reported once the wait ends.
    let mut unwritten = None;
    let outcome = service.wait_each(&unique, timeout_ms, |task| {
        if unwritten.is_none() {
            unwritten = render::waited(&mut out, task, &preview(service, task), raw).err();
        }
        ended.push(task.clone());
        Ok(())
    })?;
    if let Some(e) = unwritten {
        return Err(e);
    }
    if outcome.timed_out {
        let live: Vec<Task> = outcome
            .tasks
            .into_iter()
            .filter(|t| !t.is_terminal())
            .collect();
        for task in &live {
            render::waited(&mut out, task, "", raw)?;
        }
        report_timeout(&live);
        return Ok(124);
    }
    if several {
        writeln!(out, "{}", ended_summary(&ended))?;
        out.flush()?;
    }
    Ok(wait_exit_code(&ended))
}

/// The end of a task's output for a preview; none if it cannot be read
/// (the preview is a courtesy, the task's end is what `wait` reports).
fn preview(service: &Service, task: &Task) -> String {
    service
        .status(&task.task_id, PREVIEW_BYTES)
        .map(|s| s.output_tail)
        .unwrap_or_default()
}

fn report_timeout(tasks: &[Task]) {
    let pending: Vec<_> = tasks
        .iter()
        .filter(|t| !t.is_terminal())
        .map(|t| t.task_id.to_string())
        .collect();
    eprintln!("bgtask: timed out waiting for {}", pending.join(", "));
}

/// The last line of `wait` with several tasks: all completed, or which not.
pub fn ended_summary(ended: &[Task]) -> String {
    let failed: Vec<String> = ended
        .iter()
        .filter(|t| t.status != bgtask_core::Status::Completed)
        .map(|t| format!("{} ({})", t.task_id, render::status_text(t)))
        .collect();
    if failed.is_empty() {
        return format!("all {} tasks completed", ended.len());
    }
    format!(
        "{} of {} tasks did not complete: {}",
        failed.len(),
        ended.len(),
        failed.join(", ")
    )
}

/// The end of `logs --follow`: one line on stderr (stdout holds only the
/// task's output) and the task's exit code, as `wait` gives it.
pub fn follow_summary(service: &Service, id: &TaskId) -> Result<u8> {
    let task = service.get(id)?;
    let took = task
        .duration_ms
        .map(|d| format!(" after {}", bgtask_core::units::format_duration_ms(d)))
        .unwrap_or_default();
    eprintln!(
        "bgtask: {} {}{took}",
        task.task_id,
        render::status_text(&task)
    );
    Ok(wait_exit_code(std::slice::from_ref(&task)))
}
