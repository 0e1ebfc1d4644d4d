//! Draws `bgtask top`'s [`Model`]: a title line, the task table (only the
//! rows that fit are built, so 10,000 tasks cost what 20 do), the selected
//! task's output tail and a help line. Pure: everything shown is in the
//! model (`mod.rs` reads the store and the files).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table};
use ratatui::Frame;

use bgtask_core::{Status, Task};

use super::model::{run_ms, Mode, Model, SIGNALS};
use crate::render;

/// Lines of output shown under the table (border included), at most.
const TAIL_LINES: u16 = 9;

/// Where the table, the tail and the help line go on a screen of `area`.
pub struct Areas {
    pub title: Rect,
    pub table: Rect,
    pub tail: Rect,
    pub help: Rect,
}

pub fn areas(area: Rect) -> Areas {
    // The tail pane gives way first on a short screen: the table matters most.
    let tail = TAIL_LINES.min(area.height.saturating_sub(6) / 2);
    let [title, table, tail, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(tail),
        Constraint::Length(1),
    ])
    .areas(area);
    Areas {
        title,
        table,
        tail,
        help,
    }
}

/// Table rows that fit in the table area (its header takes one).
pub fn table_height(area: Rect) -> usize {
    usize::from(areas(area).table.height.saturating_sub(1))
}

/// Lines of output that fit in the tail pane (its border takes one).
pub fn tail_height(area: Rect) -> usize {
    usize::from(areas(area).tail.height.saturating_sub(1))
}

pub fn draw(frame: &mut Frame<'_>, model: &Model) {
    let a = areas(frame.area());
    frame.render_widget(Paragraph::new(title(model)), a.title);
    draw_table(frame, model, a.table);
    draw_tail(frame, model, a.tail);
    frame.render_widget(Paragraph::new(help_line(model)), a.help);
    if model.mode == Mode::Help {
        draw_help(frame, frame.area());
    }
}

fn title(model: &Model) -> Line<'static> {
    let live = model.tasks.iter().filter(|t| !t.is_terminal()).count();
    let scope = if model.all_sessions {
        "all sessions".to_owned()
    } else {
        format!("session {}", render::printable(&model.session, false))
    };
    // Ages and running durations are as of the last redraw (there is no
    // timer: `top` redraws on changes and keys), so the time is shown.
    let mut text = format!(
        "bgtask top {} · {scope} · {live} live {} ended · {} shown",
        render::time_of_day(model.now_ms),
        model.tasks.len() - live,
        model.rows.len(),
    );
    if model.status_filter != super::model::StatusFilter::All {
        text.push_str(&format!(" · status: {}", model.status_filter.name()));
    }
    if !model.show_finished {
        text.push_str(" · hiding finished");
    }
    if !model.text_filter.is_empty() {
        text.push_str(&format!(
            " · filter: {}",
            render::printable(&model.text_filter, false)
        ));
    }
    if model.sort != super::model::Sort::LiveFirst {
        text.push_str(&format!(" · sort: {}", model.sort.name()));
    }
    Line::from(Span::styled(
        text,
        Style::default().add_modifier(Modifier::BOLD),
    ))
}

/// The table's columns, in order. A readiness column (issue 16's
/// `readiness`) belongs right after STATUS and a label column (a later
/// issue) right before COMMAND: add a variant, its header, width and cell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Id,
    Session,
    Status,
    Exit,
    Age,
    Duration,
    Rate,
    /// A task's `--label` (issue 21), shown when a row on screen has one.
    Label,
    Command,
}

fn columns(model: &Model, width: u16, shown: &[&Task]) -> Vec<(Col, &'static str, Constraint)> {
    // A short id (bg- and 8 hex digits) is a prefix `kill`, `logs`… accept;
    // the full id when two rows on screen share it, or there is room.
    let mut prefixes: Vec<&str> = shown
        .iter()
        .map(|t| t.task_id.as_str().get(..11).unwrap_or(t.task_id.as_str()))
        .collect();
    prefixes.sort_unstable();
    let clash = prefixes.windows(2).any(|w| w[0] == w[1]);
    let id = if width >= 120 || clash { 19 } else { 11 };
    let mut cols = vec![(Col::Id, "ID", Constraint::Length(id))];
    if model.all_sessions {
        let w = if width >= 120 { 16 } else { 10 };
        cols.push((Col::Session, "SESSION", Constraint::Length(w)));
    }
    cols.extend([
        (Col::Status, "STATUS", Constraint::Length(9)),
        (Col::Exit, "EXIT", Constraint::Length(4)),
        (Col::Age, "AGE", Constraint::Length(4)),
        (Col::Duration, "DURATION", Constraint::Length(8)),
        (Col::Rate, "OUT/S", Constraint::Length(6)),
    ]);
    if shown.iter().any(|t| t.label.is_some()) {
        cols.push((Col::Label, "LABEL", Constraint::Length(12)));
    }
    cols.push((Col::Command, "COMMAND", Constraint::Min(10)));
    cols
}

fn cell(col: Col, task: &Task, model: &Model) -> String {
    match col {
        Col::Id => task.task_id.to_string(),
        Col::Session => render::printable(&task.session, false).into_owned(),
        Col::Status => status_cell(task),
        Col::Exit => task.exit_code.map_or("-".into(), |c| c.to_string()),
        Col::Age => render::age(task, model.now_ms),
        Col::Duration => render::duration(task, model.now_ms),
        Col::Rate => rate(task, model),
        Col::Label => render::printable(task.label.as_deref().unwrap_or(""), false).into_owned(),
        Col::Command => {
            let line = task.command.lines().next().unwrap_or("");
            render::printable(line, false).into_owned()
        }
    }
}

/// The status, with readiness (issue 16) for a running task that has a
/// condition: `not ready` until it is decided, `ready` once it is; a
/// failed readiness leaves plain `running` (its notification says why).
fn status_cell(task: &Task) -> String {
    use bgtask_core::ReadyOutcome;
    match (&task.readiness, task.status) {
        (Some(r), Status::Running) => match r.outcome {
            None => "not ready".into(),
            Some(ReadyOutcome::Ready) => "ready".into(),
            Some(_) => task.status.to_string(),
        },
        _ => task.status.to_string(),
    }
}

/// Average output bytes per second over the task's run: `-` until its
/// output size is known (read for the rows on screen only).
fn rate(task: &Task, model: &Model) -> String {
    let Some(&bytes) = model.output_bytes.get(&task.task_id) else {
        return "-".into();
    };
    let secs = run_ms(task, model.now_ms).max(1000) as f64 / 1000.0;
    human_rate(bytes as f64 / secs)
}

fn human_rate(per_sec: f64) -> String {
    match per_sec {
        r if r < 1.0 => "0".into(),
        r if r < 1024.0 => format!("{r:.0}"),
        r if r < 1024.0 * 1024.0 => format!("{:.1}K", r / 1024.0),
        r => format!("{:.1}M", r / (1024.0 * 1024.0)),
    }
}

fn status_style(task: &Task) -> Style {
    match task.status {
        Status::Running | Status::Starting => Style::default().fg(Color::Green),
        Status::Queued => Style::default().fg(Color::Cyan),
        Status::Killing => Style::default().fg(Color::Yellow),
        Status::Paused => Style::default().fg(Color::Cyan),
        Status::Completed => Style::default(),
        Status::Failed => Style::default().fg(Color::Red),
        Status::Killed | Status::TimedOut => Style::default().fg(Color::Magenta),
    }
}

fn draw_table(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    let height = usize::from(area.height.saturating_sub(1));
    let shown: Vec<&Task> = model
        .rows
        .iter()
        .skip(model.offset)
        .take(height)
        .map(|&i| &model.tasks[i])
        .collect();
    let cols = columns(model, area.width, &shown);
    let rows = shown.iter().map(|&task| {
        let mut row = Row::new(
            cols.iter()
                .map(|(c, _, _)| cell(*c, task, model))
                .collect::<Vec<_>>(),
        )
        .style(status_style(task));
        if model.selected.as_ref() == Some(&task.task_id) {
            row = row.style(status_style(task).add_modifier(Modifier::REVERSED | Modifier::BOLD));
        }
        row
    });
    let header = Row::new(cols.iter().map(|(_, h, _)| *h).collect::<Vec<_>>())
        .style(Style::default().add_modifier(Modifier::UNDERLINED));
    let table = Table::new(rows, cols.iter().map(|(_, _, w)| *w).collect::<Vec<_>>())
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
    if model.rows.is_empty() {
        let empty = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        frame.render_widget(Paragraph::new("  no tasks"), empty);
    }
}

fn draw_tail(frame: &mut Frame<'_>, model: &Model, area: Rect) {
    if area.height == 0 {
        return;
    }
    let heading = match model.selected_task() {
        Some(t) => format!(
            " {} · {} · {} ",
            t.task_id,
            render::status_text(t),
            render::printable(t.command.lines().next().unwrap_or(""), false)
        ),
        None => " output ".into(),
    };
    let block = Block::default().borders(Borders::TOP).title(Span::styled(
        heading,
        Style::default().add_modifier(Modifier::BOLD),
    ));
    let room = usize::from(area.height.saturating_sub(1));
    let skip = model.tail.len().saturating_sub(room);
    let lines: Vec<Line<'_>> = model.tail[skip..]
        .iter()
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn help_line(model: &Model) -> Line<'static> {
    let prompt = Style::default().fg(Color::Black).bg(Color::Yellow);
    match &model.mode {
        Mode::ConfirmKill(id) => Line::from(Span::styled(
            format!("kill {id} and its whole tree? y to confirm, any other key cancels"),
            prompt,
        )),
        Mode::PickSignal(id) => {
            let menu: Vec<String> = SIGNALS
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{} {s}", i + 1))
                .collect();
            Line::from(Span::styled(
                format!("signal to {id}: {} (other key: cancel)", menu.join("  ")),
                prompt,
            ))
        }
        Mode::EditFilter => Line::from(Span::styled(
            format!(
                "filter: {}▏ (enter: keep, esc: clear)",
                render::printable(&model.text_filter, false)
            ),
            prompt,
        )),
        _ => match &model.message {
            Some(m) => Line::from(Span::styled(m.clone(), prompt)),
            None => Line::from(Span::styled(
                "q quit  ↑↓ move  k kill  x signal  a ack  / find  f status  o sort  ? more",
                Style::default().add_modifier(Modifier::REVERSED),
            )),
        },
    }
}

const HELP: &[(&str, &str)] = &[
    ("↑ ↓ PgUp PgDn g G", "select a task"),
    ("k", "kill the selected task (asks to confirm)"),
    ("x", "send a signal to the selected task"),
    ("a", "acknowledge the selected task's completion"),
    ("/", "filter by text (id, session, command, directory)"),
    ("f", "status filter: all, live, ended, not completed"),
    ("h", "hide or show finished tasks"),
    ("o", "sort: live first, newest, oldest, duration, command"),
    ("s", "this session or all sessions"),
    (
        "r",
        "redraw now (ages and running times are as of the last redraw)",
    ),
    ("q, esc, ctrl-c", "quit"),
];

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let width = area.width.min(64);
    let height = (HELP.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| Line::from(format!("{k:<18} {what}")))
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        popup,
    );
}
