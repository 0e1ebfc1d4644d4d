//! Human and JSON output of the CLI. With `--json` every command prints
//! exactly one JSON document; otherwise compact, aligned text.
//!
//! Human output never passes a task's bytes to the terminal as they are: a
//! command or its output may hold escape sequences (a window title, a
//! clipboard write through OSC 52), so control characters are shown
//! escaped (`\x1b`). `--json` and `logs` stay exact.

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

pub fn status(status: &TaskStatus, as_json: bool) -> Result<()> {
    if as_json {
        return json(status);
    }
    let mut out = std::io::stdout().lock();
    write_task(&mut out, &status.task)?;
    if !status.output_tail.is_empty() {
        let label = if status.output_truncated {
            "output (tail)"
        } else {
            "output"
        };
        writeln!(out, "{label}:")?;
        out.write_all(printable(&status.output_tail, true).as_bytes())?;
        if !status.output_tail.ends_with('\n') {
            writeln!(out)?;
        }
    }
    Ok(())
}

fn write_task(out: &mut impl Write, task: &Task) -> Result<()> {
    writeln!(out, "task:     {}", task.task_id)?;
    writeln!(out, "status:   {}", status_text(task))?;
    if let Some(reason) = &task.reason {
        writeln!(out, "reason:   {}", printable(reason, false))?;
    }
    writeln!(out, "command:  {}", printable(&task.command, false))?;
    writeln!(out, "cwd:      {}", path_text(&task.cwd))?;
    writeln!(out, "session:  {}", printable(&task.session, false))?;
    if let Some(sandbox) = &task.sandbox {
        writeln!(out, "sandbox:  {}", crate::sandbox::describe(sandbox))?;
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

pub fn list(tasks: &[Task], as_json: bool) -> Result<()> {
    if as_json {
        return json(tasks);
    }
    let mut out = std::io::stdout().lock();
    if tasks.is_empty() {
        writeln!(out, "no tasks")?;
        return Ok(());
    }
    let rows: Vec<[String; 5]> = tasks
        .iter()
        .map(|t| {
            [
                t.task_id.to_string(),
                t.status.to_string(),
                t.exit_code.map_or("-".into(), |c| c.to_string()),
                age_or_duration(t),
                first_line(&t.command, 60),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "EXIT", "TIME", "COMMAND"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let print = |out: &mut std::io::StdoutLock<'_>, cells: [&str; 5]| -> std::io::Result<()> {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    print(&mut out, header)?;
    for row in &rows {
        print(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
    }
    Ok(())
}

pub fn completions(completions: &[Completion], as_json: bool) -> Result<()> {
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
        for line in c
            .output_preview
            .lines()
            .rev()
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            writeln!(out, "    {}", first_line(line, 120))?;
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

fn summary(task: &Task) -> String {
    format!(
        "{}  {}  {}",
        task.task_id,
        status_text(task),
        first_line(&task.command, 60)
    )
}

fn status_text(task: &Task) -> String {
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
