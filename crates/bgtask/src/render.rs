//! Human and JSON output of the CLI. With `--json` every command prints
//! exactly one JSON document; otherwise compact, aligned text.
//!
//! Human output never passes a task's bytes to the terminal as they are: a
//! command or its output may hold escape sequences (a window title, a
//! clipboard write through OSC 52), so control characters are shown
//! escaped (`\x1b`). Output previews are first cleaned as a terminal would
//! finally show them ([`clean_output`]: progress bars in their last state,
//! no colours), unless `--raw` asks for the bytes (escaped). `--json` and
//! `logs` stay exact.

use std::borrow::Cow;
use std::io::Write;

use anyhow::Result;
use serde::Serialize;

use bgtask_core::settings::Settings;
use bgtask_core::units::format_duration_ms;
use bgtask_core::{Completion, GcReport, Task, TaskStatus};

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, std::io::stdout().lock());
    serde_json::to_writer(&mut out, value)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

pub fn line(text: &str) -> Result<()> {
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(())
}

pub fn task(task: &Task, as_json: bool) -> Result<()> {
    if as_json {
        return json(task);
    }
    let mut out = std::io::stdout().lock();
    write_task(&mut out, task)?;
    Ok(())
}

/// Tasks as one JSON array, or one summary line each.
pub fn tasks(tasks: &[Task], as_json: bool) -> Result<()> {
    if as_json {
        return json(tasks);
    }
    let mut out = std::io::stdout().lock();
    for task in tasks {
        writeln!(out, "{}", summary(task))?;
    }
    Ok(())
}

pub fn status(status: &TaskStatus, as_json: bool, raw: bool) -> Result<()> {
    if as_json {
        return json(status);
    }
    let mut out = std::io::stdout().lock();
    write_task(&mut out, &status.task)?;
    let shown = clean_output(&status.output_tail, raw);
    if !shown.is_empty() {
        let label = if status.output_truncated {
            "output (tail)"
        } else {
            "output"
        };
        writeln!(out, "{label}:")?;
        out.write_all(shown.as_bytes())?;
        if !shown.ends_with('\n') {
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Task output for human eyes: what a terminal would finally show
/// (`compact::render`: `\r` and backspace redraws resolved, erase-line
/// honoured, escape sequences and colours gone), then escaped like any
/// other task text. `raw` keeps every byte, escaped.
pub fn clean_output(text: &str, raw: bool) -> String {
    if raw {
        return printable(text, true).into_owned();
    }
    printable(&bgtask_core::compact::render(text), true).into_owned()
}

/// The last `n` non-blank lines of task output, cleaned (or escaped).
pub fn preview_lines(text: &str, n: usize, raw: bool) -> Vec<String> {
    let shown = clean_output(text, raw);
    let mut lines: Vec<String> = shown
        .lines()
        .rev()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .map(|l| l.chars().take(120).collect())
        .collect();
    lines.reverse();
    lines
}

/// One ended (or still live, after a wait timed out) task of `wait`, with
/// the last lines of its output.
pub fn waited(out: &mut impl Write, task: &Task, tail: &str, raw: bool) -> Result<()> {
    writeln!(out, "{}", summary(task))?;
    for line in preview_lines(tail, 3, raw) {
        writeln!(out, "    {line}")?;
    }
    out.flush()?;
    Ok(())
}

fn write_task(out: &mut impl Write, task: &Task) -> Result<()> {
    writeln!(out, "task:     {}", task.task_id)?;
    writeln!(out, "status:   {}", status_text(task))?;
    if let Some(since) = task.paused_at {
        let ago = (bgtask_core::now_ms() - since).max(0) as u64;
        writeln!(
            out,
            "paused:   {} ago (its timeouts wait)",
            format_duration_ms(ago)
        )?;
    }
    if let Some(reason) = &task.reason {
        writeln!(out, "reason:   {}", printable(reason, false))?;
    }
    writeln!(out, "command:  {}", printable(&task.command, false))?;
    // Issue 21: a task's label, and its group unless the default one.
    if let Some(label) = &task.label {
        writeln!(out, "label:    {}", printable(label, false))?;
    }
    if task.group != bgtask_core::DEFAULT_GROUP {
        writeln!(out, "group:    {}", printable(&task.group, false))?;
    }
    writeln!(out, "cwd:      {}", path_text(&task.cwd))?;
    writeln!(out, "session:  {}", printable(&task.session, false))?;
    if let Some(sandbox) = &task.sandbox {
        writeln!(out, "sandbox:  {}", describe_sandbox(sandbox))?;
    }
    if let Some(pid) = task.pid {
        writeln!(out, "pid:      {pid}")?;
    }
    if let Some(pid) = task.monitor_pid.filter(|_| !task.is_terminal()) {
        writeln!(out, "monitor:  {pid}")?;
    }
    writeln!(out, "time:     {}", age_or_duration(task))?;
    writeln!(out, "stdout:   {}", path_text(&task.stdout_path))?;
    writeln!(out, "stderr:   {}", path_text(&task.stderr_path))?;
    if task.output_dropped_bytes > 0 {
        writeln!(
            out,
            "dropped:  {} bytes of output (over --max-output)",
            task.output_dropped_bytes
        )?;
    }
    Ok(())
}

/// What `list` lays its table out for.
pub struct ListLayout {
    /// Columns available: the terminal's, `COLUMNS`, or a default.
    pub width: usize,
    /// Tasks of every session: the session and working directory are shown.
    pub all_sessions: bool,
    /// `$HOME`, shown as `~` at the start of a working directory.
    pub home: Option<String>,
    pub now_ms: i64,
}

/// Below this many columns `list` is laid out for 80 anyway (a cell is
/// never narrower than its minimum).
const MIN_WIDTH: usize = 80;
/// The command column gets at least this much while other columns can
/// shrink, and never less than `TINY_COMMAND`.
const MIN_COMMAND: usize = 16;
const TINY_COMMAND: usize = 8;
/// From this width on, the working directory is shown for one session too.
const WIDE: usize = 140;

pub fn list(tasks: &[Task], as_json: bool, layout: &ListLayout) -> Result<()> {
    if as_json {
        return json(tasks);
    }
    let text = list_text(tasks, layout);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// How a cell too long for its column is cut.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Keep the start (an id: its prefix still names the task).
    Prefix,
    /// Keep the start and mark the cut with `…`.
    End,
    /// Keep both ends, `…` in the middle (a path).
    Middle,
}

struct Column {
    header: &'static str,
    cells: Vec<String>,
    right: bool,
    cut: Cut,
    /// Narrowest it may be shrunk to, and widest it grows to.
    min: usize,
    max: usize,
    width: usize,
}

/// The `list` table as text, one line per task under a header, at most
/// `layout.width` columns wide (never below 80).
pub fn list_text(tasks: &[Task], layout: &ListLayout) -> String {
    if tasks.is_empty() {
        return "no tasks\n".into();
    }
    let width = layout.width.max(MIN_WIDTH);
    let col = |header, cells: Vec<String>, right, cut, min, max| Column {
        header,
        cells,
        right,
        cut,
        min,
        max,
        width: 0,
    };
    let mut columns = vec![
        col(
            "ID",
            tasks.iter().map(|t| t.task_id.to_string()).collect(),
            false,
            Cut::Prefix,
            11,
            19,
        ),
        col(
            "STATUS",
            tasks.iter().map(|t| t.status.to_string()).collect(),
            false,
            Cut::End,
            9,
            9,
        ),
        col(
            "EXIT",
            tasks
                .iter()
                .map(|t| t.exit_code.map_or("-".into(), |c| c.to_string()))
                .collect(),
            true,
            Cut::End,
            4,
            4,
        ),
        col(
            "AGE",
            tasks.iter().map(|t| age(t, layout.now_ms)).collect(),
            true,
            Cut::End,
            4,
            4,
        ),
        col(
            "DURATION",
            tasks.iter().map(|t| duration(t, layout.now_ms)).collect(),
            true,
            Cut::End,
            8,
            8,
        ),
    ];
    if layout.all_sessions {
        let sessions = tasks
            .iter()
            .map(|t| printable(&t.session, false).into_owned())
            .collect();
        columns.push(col("SESSION", sessions, false, Cut::End, 7, 24));
    }
    if layout.all_sessions || width >= WIDE {
        let cwds = tasks
            .iter()
            .map(|t| short_path(&t.cwd, layout.home.as_deref()))
            .collect();
        columns.push(col("CWD", cwds, false, Cut::Middle, 10, 60));
    }
    // Issue 21: labels, when any listed task has one.
    if tasks.iter().any(|t| t.label.is_some()) {
        let labels = tasks
            .iter()
            .map(|t| printable(t.label.as_deref().unwrap_or("-"), false).into_owned())
            .collect();
        columns.push(col("LABEL", labels, false, Cut::End, 5, 24));
    }
    let commands = tasks
        .iter()
        .map(|t| first_line(&t.command, usize::MAX))
        .collect();
    columns.push(col(
        "COMMAND",
        commands,
        false,
        Cut::End,
        MIN_COMMAND,
        usize::MAX,
    ));

    for c in &mut columns {
        let natural = c.cells.iter().map(|s| s.chars().count()).max().unwrap_or(0);
        c.width = natural.max(c.header.len()).min(c.max);
    }
    // The command takes what is left; if that is too little, the
    // working directory, the session and the id give way, in that order.
    let gaps = 2 * (columns.len() - 1);
    let fixed = |cs: &[Column]| cs[..cs.len() - 1].iter().map(|c| c.width).sum::<usize>() + gaps;
    for name in ["CWD", "LABEL", "SESSION", "ID"] {
        let over = (fixed(&columns) + MIN_COMMAND).saturating_sub(width);
        if over == 0 {
            break;
        }
        if let Some(c) = columns.iter_mut().find(|c| c.header == name) {
            let min = c.min.max(c.header.len());
            c.width -= over.min(c.width.saturating_sub(min));
        }
    }
    let last = columns.len() - 1;
    columns[last].width = columns[last]
        .width
        .min(width.saturating_sub(fixed(&columns)).max(TINY_COMMAND));

    let mut text = String::new();
    let mut line = |cells: Vec<String>| {
        let mut row = String::new();
        for (i, (c, cell)) in columns.iter().zip(cells).enumerate() {
            let cell = fit(&cell, c.width, c.cut);
            let pad = c.width.saturating_sub(cell.chars().count());
            if i == last {
                row.push_str(&cell);
            } else if c.right {
                row.push_str(&" ".repeat(pad));
                row.push_str(&cell);
                row.push_str("  ");
            } else {
                row.push_str(&cell);
                row.push_str(&" ".repeat(pad + 2));
            }
        }
        text.push_str(row.trim_end());
        text.push('\n');
    };
    line(columns.iter().map(|c| c.header.to_owned()).collect());
    for i in 0..tasks.len() {
        line(columns.iter().map(|c| c.cells[i].clone()).collect());
    }
    text
}

/// `cell` cut to `width` characters as `cut` says.
fn fit(cell: &str, width: usize, cut: Cut) -> String {
    let len = cell.chars().count();
    if len <= width {
        return cell.to_owned();
    }
    match cut {
        Cut::Prefix => cell.chars().take(width).collect(),
        Cut::End => {
            let mut s: String = cell.chars().take(width.saturating_sub(1)).collect();
            s.push('…');
            s
        }
        Cut::Middle => {
            let keep = width.saturating_sub(1);
            let head = keep / 2;
            let tail = keep - head;
            let mut s: String = cell.chars().take(head).collect();
            s.push('…');
            s.extend(cell.chars().skip(len - tail));
            s
        }
    }
}

/// A working directory, `~` for the home directory, escaped.
pub fn short_path(path: &std::path::Path, home: Option<&str>) -> String {
    let text = path.to_string_lossy();
    let shown = match home.filter(|h| !h.is_empty() && *h != "/") {
        Some(home) if text == home => "~".to_owned(),
        Some(home) => match text.strip_prefix(home) {
            Some(rest) if rest.starts_with('/') => format!("~{rest}"),
            _ => text.into_owned(),
        },
        None => text.into_owned(),
    };
    printable(&shown, false).into_owned()
}

/// Time since the task was created, in one unit (`45s`, `12m`, `3h`, `2d`).
pub fn age(task: &Task, now_ms: i64) -> String {
    let secs = ((now_ms - task.created_at).max(0) / 1000) as u64;
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `HH:MM:SS` UTC of a Unix time in milliseconds.
pub fn time_of_day(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// How long the task ran (a finished task), or has been running so far.
pub fn duration(task: &Task, now_ms: i64) -> String {
    match (task.duration_ms, task.started_at) {
        (Some(d), _) => format_duration_ms(d),
        (None, Some(started)) if !task.is_terminal() => {
            format_duration_ms((now_ms - started).max(0) as u64)
        }
        _ => "-".into(),
    }
}

pub fn completions(completions: &[Completion], as_json: bool, raw: bool) -> Result<()> {
    if as_json {
        return json(completions);
    }
    let mut out = std::io::stdout().lock();
    if completions.is_empty() {
        writeln!(out, "no unacknowledged completions")?;
    }
    for c in completions {
        let exit = c.exit_code.map_or("-".into(), |e| e.to_string());
        let took = c.duration_ms.map_or("-".into(), format_duration_ms);
        writeln!(
            out,
            "{}  {}  exit {exit}  {took}  {}",
            c.task_id,
            c.status,
            first_line(&c.command, 60)
        )?;
        for line in preview_lines(&c.output_preview, 3, raw) {
            writeln!(out, "    {line}")?;
        }
    }
    Ok(())
}

pub fn acked(newly: usize, named: usize, as_json: bool) -> Result<()> {
    #[derive(Serialize)]
    struct Acked {
        acked: usize,
    }
    if as_json {
        return json(&Acked { acked: newly });
    }
    line(&format!("acknowledged {newly} of {named}"))
}

pub fn doctor(report: &bgtask_core::DoctorReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(report);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "store: {}", path_text(&report.home))?;
    for f in &report.findings {
        let mark = match (f.ok, f.repaired) {
            (true, _) => "ok      ",
            (false, true) => "repaired",
            (false, false) => "PROBLEM ",
        };
        writeln!(
            out,
            "{mark}  {:<13} {}",
            f.check,
            printable(&f.detail, false)
        )?;
    }
    Ok(())
}

/// `bgtask config`: the file consulted, then one aligned line per setting
/// (key, value, source).
pub fn settings(settings: &Settings, as_json: bool) -> Result<()> {
    let entries = settings.entries();
    let file = settings.file.as_ref().map(|p| p.display().to_string());
    if as_json {
        let values: serde_json::Map<String, serde_json::Value> = entries
            .iter()
            .map(|e| {
                let v = serde_json::json!({"value": e.value, "source": e.source});
                (e.key.clone(), v)
            })
            .collect();
        return json(&serde_json::json!({
            "config_file": file,
            "config_file_found": settings.file_found,
            "settings": values,
        }));
    }
    let mut out = String::new();
    match &file {
        Some(path) if settings.file_found => out.push_str(&format!("config file: {path}\n")),
        Some(path) => out.push_str(&format!(
            "config file: {path} (not found; defaults apply)\n"
        )),
        None => out.push_str("config file: none (no config directory known)\n"),
    }
    let key_width = entries.iter().map(|e| e.key.len()).max().unwrap_or(0);
    let value_width = entries
        .iter()
        .map(|e| e.value.chars().count())
        .max()
        .unwrap_or(0);
    for e in &entries {
        out.push_str(&format!(
            "{:key_width$}  {:value_width$}  {}\n",
            e.key,
            printable(&e.value, false),
            e.source
        ));
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

pub fn gc(report: &GcReport, as_json: bool) -> Result<()> {
    if as_json {
        return json(report);
    }
    line(&format!("removed {} task(s)", report.removed.len()))
}

pub fn summary(task: &Task) -> String {
    format!(
        "{}  {}  {}",
        task.task_id,
        status_text(task),
        first_line(&task.command, 60)
    )
}

pub fn status_text(task: &Task) -> String {
    match (task.exit_code, &task.signal) {
        (Some(code), Some(sig)) => format!("{} (exit {code}, {sig})", task.status),
        (Some(code), None) => format!("{} (exit {code})", task.status),
        _ => task.status.to_string(),
    }
}

fn age_or_duration(task: &Task) -> String {
    match (task.duration_ms, task.started_at) {
        (Some(d), _) => format_duration_ms(d),
        (None, Some(started)) => {
            let now = bgtask_core::now_ms();
            format!("{} ago", format_duration_ms((now - started).max(0) as u64))
        }
        _ => "-".into(),
    }
}

/// The first line of `text`, at most `max` characters, escaped.
fn first_line(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut short: String = line.chars().take(max).collect();
    if short.len() < line.len() || text.lines().nth(1).is_some() {
        short.push('…');
    }
    printable(&short, false).into_owned()
}

/// A path for human output (lossy where it is not UTF-8), escaped.
fn path_text(path: &std::path::Path) -> String {
    printable(&path.to_string_lossy(), false).into_owned()
}

/// `text` with every control character (C0, DEL, C1) and every bidi
/// override shown escaped, so nothing a task printed or named can drive
/// the terminal. `multiline` keeps newlines and tabs as they are.
pub fn printable(text: &str, multiline: bool) -> Cow<'_, str> {
    let needs_escape = |c: char| {
        (c.is_control() && !(multiline && matches!(c, '\n' | '\t')))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !needs_escape(c) => shown.push(c),
            c if u32::from(c) < 0x80 => shown.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => shown.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    Cow::Owned(shown)
}

/// One line for `status`: `workspace, no network (landlock (ABI 7) + …);
/// writes: /src/app`.
fn describe_sandbox(sandbox: &bgtask_core::sandbox::Sandbox) -> String {
    let mut line = sandbox.mode.to_string();
    if sandbox.no_network {
        line.push_str(", no network");
    }
    line.push_str(&format!(" (enforced by {})", sandbox.enforced_by));
    if !sandbox.allow_write.is_empty() {
        let paths: Vec<String> = sandbox
            .allow_write
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        line.push_str(&format!("; writes: {}", paths.join(", ")));
    }
    printable(&line, false).into_owned()
}
