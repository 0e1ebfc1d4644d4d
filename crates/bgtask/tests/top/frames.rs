//! Rendered frames of `top` for known tasks, and what keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use bgtask_core::{Status, Task, TaskId};

use crate::top::model::{Effect, Mode, Model};
use crate::top::view;

const NOW: i64 = 1_800_000_000_000;

/// A task `age_s` seconds old that ran `ran_s` seconds (if it ended).
fn task(n: u64, session: &str, status: Status, command: &str, (age_s, ran_s): (i64, i64)) -> Task {
    // Distinct in their first 8 hex digits, as random ids are.
    let id: TaskId = format!("bg-{:08x}{n:08x}", (n as u32).wrapping_mul(0x9e37_79b1))
        .parse()
        .unwrap();
    let created = NOW - age_s * 1000;
    let terminal = status.is_terminal();
    let exit_code = match status {
        Status::Completed => Some(0),
        Status::Failed => Some(2),
        Status::Killed => Some(143),
        Status::TimedOut => Some(124),
        _ => None,
    };
    Task {
        stdout_path: format!("/nonexistent/{id}.out").into(),
        stderr_path: format!("/nonexistent/{id}.err").into(),
        task_id: id,
        session: session.into(),
        command: command.into(),
        cwd: "/home/me/project".into(),
        status,
        exit_code,
        signal: None,
        reason: None,
        pid: Some(100 + n as u32),
        monitor_pid: Some(99),
        created_at: created,
        started_at: Some(created),
        finished_at: terminal.then_some(created + ran_s * 1000),
        duration_ms: terminal.then_some(ran_s as u64 * 1000),
        timeout_ms: None,
        idle_timeout_ms: None,
        max_output_bytes: 1 << 20,
        notify: true,
        env_keys: Vec::new(),
        output_dropped_bytes: 0,
        ready_at: None,
        readiness: None,
        stdin: false,
        pty: None,
        signals_sent: Vec::new(),
        paused_at: None,
        sandbox: None,
        executor: "local".into(),
        job_id: None,
        group: "default".into(),
        label: None,
    }
}

/// Newest first, as the store lists them.
fn known_tasks() -> Vec<Task> {
    vec![
        task(0xa1, "me", Status::Running, "npm run dev", (90, 0)),
        task(
            0xb2,
            "agent",
            Status::Failed,
            "cargo build --release",
            (300, 42),
        ),
        task(0xc3, "me", Status::Completed, "echo hello", (4000, 1)),
        task(0xd4, "agent", Status::Running, "pytest -x tests/", (20, 0)),
    ]
}

fn model() -> Model {
    let mut m = Model::new("me".into(), true);
    m.set_tasks(known_tasks(), NOW);
    m.tail = vec!["compiling…".into(), "listening on :3000".into()];
    m
}

fn screen(model: &mut Model, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let area = ratatui::layout::Rect::new(0, 0, width, height);
    model.scroll_into_view(view::table_height(area));
    terminal.draw(|f| view::draw(f, model)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    (0..height)
        .map(|y| {
            (0..width)
                .map(|x| buffer[(x, y)].symbol().to_owned())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn row_of<'a>(lines: &'a [String], needle: &str) -> &'a str {
    lines
        .iter()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?}:\n{}", lines.join("\n")))
}

#[test]
fn an_80_by_24_frame_shows_the_table_the_selected_tail_and_the_help_line() {
    let mut m = model();
    let lines = screen(&mut m, 80, 24);
    let text = lines.join("\n");
    assert!(lines[0].starts_with("bgtask top "), "{text}");
    assert!(
        lines[0].contains(" · all sessions · 2 live 2 ended · 4 shown"),
        "{text}"
    );
    let header = &lines[1];
    for col in [
        "ID", "SESSION", "STATUS", "EXIT", "AGE", "DURATION", "OUT/S", "COMMAND",
    ] {
        assert!(header.contains(col), "{text}");
    }
    // Live tasks first, newest first; ids shortened to a usable prefix.
    assert!(
        lines[2].contains(" me ") && lines[2].contains("npm run dev"),
        "{text}"
    );
    let short = &lines[2][..11];
    assert!(
        short.starts_with("bg-") && !lines[3].starts_with(short),
        "{text}"
    );
    assert!(row_of(&lines, "pytest").contains("running"), "{text}");
    let failed = row_of(&lines, "cargo build");
    assert!(
        failed.contains("failed") && failed.contains(" 2 ") && failed.contains("42s"),
        "{text}"
    );
    assert!(row_of(&lines, "echo hello").contains("1h"), "{text}");
    // The selected task's output, under a heading naming it.
    let first = &m.tasks[m.rows[0]].task_id;
    let heading = lines
        .iter()
        .position(|l| l.contains(&format!("{first} · running · npm run dev")))
        .unwrap();
    assert_eq!(
        lines[heading + 1..heading + 3],
        ["compiling…", "listening on :3000"],
        "{text}"
    );
    assert!(lines[23].starts_with("q quit"), "{text}");
    assert!(lines[23].ends_with("? more"), "{text}");
}

#[test]
fn the_status_of_a_server_with_a_readiness_condition_says_whether_it_is_ready() {
    use bgtask_core::ready::ReadyCondition;
    use bgtask_core::{Readiness, ReadyOutcome};
    let with = |outcome| {
        let mut t = task(0xe5, "me", Status::Running, "vite", (5, 0));
        t.readiness = Some(Readiness {
            condition: ReadyCondition::Port { port: 5173 },
            timeout_ms: 120_000,
            kill_if_not_ready: false,
            outcome,
            detail: None,
        });
        t
    };
    for (outcome, shown) in [
        (None, "not ready"),
        (Some(ReadyOutcome::Ready), "ready"),
        (Some(ReadyOutcome::Timeout), "running"),
    ] {
        let mut m = Model::new("me".into(), true);
        m.set_tasks(vec![with(outcome)], NOW);
        let lines = screen(&mut m, 80, 24);
        let row = row_of(&lines, "vite");
        assert!(row.contains(shown), "{outcome:?} → {shown:?}: {row}");
        if shown == "ready" {
            assert!(!row.contains("not ready"), "{row}");
        }
    }
}

#[test]
fn keys_filter_sort_hide_finished_and_ask_before_killing() {
    let mut m = model();
    // Down to the second row (pytest), kill asks first.
    assert_eq!(m.key(key(KeyCode::Down)), None);
    assert_eq!(m.key(key(KeyCode::Char('k'))), None);
    let id = m.selected.clone().unwrap();
    assert_eq!(m.mode, Mode::ConfirmKill(id.clone()));
    let lines = screen(&mut m, 80, 24);
    assert!(lines[23].contains(&format!("kill {id}")), "{lines:?}");
    assert_eq!(
        m.key(key(KeyCode::Char('y'))),
        Some(Effect::Kill(id.clone()))
    );
    // Any other key cancels.
    m.key(key(KeyCode::Char('k')));
    assert_eq!(m.key(key(KeyCode::Char('n'))), None);
    assert_eq!(m.mode, Mode::Normal);
    // A signal is picked by number.
    m.key(key(KeyCode::Char('x')));
    assert_eq!(
        m.key(key(KeyCode::Char('4'))),
        Some(Effect::Signal(id.clone(), "SIGKILL"))
    );
    assert_eq!(m.key(key(KeyCode::Char('a'))), Some(Effect::Ack(id)));

    // Text filter.
    m.key(key(KeyCode::Char('/')));
    for c in "CARGO".chars() {
        m.key(key(KeyCode::Char(c)));
    }
    m.key(key(KeyCode::Enter));
    let lines = screen(&mut m, 80, 24);
    assert!(
        lines[0].contains("1 shown") && lines[0].contains("filter: CARGO"),
        "{lines:?}"
    );
    assert!(!lines.iter().any(|l| l.contains("npm run dev")));
    m.key(key(KeyCode::Char('/')));
    m.key(key(KeyCode::Esc));
    assert_eq!(m.rows.len(), 4);

    // Hide finished tasks, then the status filter.
    m.key(key(KeyCode::Char('h')));
    assert_eq!(m.rows.len(), 2);
    assert!(screen(&mut m, 80, 24)[0].contains("hiding finished"));
    m.key(key(KeyCode::Char('h')));
    m.key(key(KeyCode::Char('f'))); // live
    m.key(key(KeyCode::Char('f'))); // ended
    m.key(key(KeyCode::Char('f'))); // not completed
    assert_eq!(m.rows.len(), 1);
    assert_eq!(m.tasks[m.rows[0]].command, "cargo build --release");
    m.key(key(KeyCode::Char('f')));

    // Sort: newest first, then oldest first.
    m.key(key(KeyCode::Char('o')));
    assert_eq!(m.tasks[m.rows[0]].command, "npm run dev");
    m.key(key(KeyCode::Char('o')));
    assert_eq!(m.tasks[m.rows[0]].command, "pytest -x tests/");

    // Sessions toggle asks for a re-read; q and ctrl-c quit.
    assert_eq!(m.key(key(KeyCode::Char('s'))), Some(Effect::Reload));
    assert!(!m.all_sessions);
    assert_eq!(m.key(key(KeyCode::Char('q'))), Some(Effect::Quit));
    assert_eq!(
        m.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(Effect::Quit)
    );
}

#[test]
fn the_selection_stays_on_its_task_across_reloads_and_scrolls_into_view() {
    let mut tasks: Vec<Task> = (0..200)
        .map(|n| {
            task(
                n,
                "me",
                Status::Completed,
                &format!("job {n}"),
                (1000 - n as i64, 1),
            )
        })
        .rev()
        .collect();
    let mut m = Model::new("me".into(), false);
    m.set_tasks(tasks.clone(), NOW);
    for _ in 0..50 {
        m.key(key(KeyCode::Down));
    }
    let chosen = m.selected.clone().unwrap();
    let lines = screen(&mut m, 80, 24);
    assert!(lines.iter().any(|l| l.contains("job 149")), "{lines:?}");
    // A new task arrives at the top: the selection stays on its task.
    tasks.insert(0, task(999, "me", Status::Running, "new one", (0, 0)));
    m.set_tasks(tasks, NOW);
    assert_eq!(m.selected.as_ref(), Some(&chosen));
    let lines = screen(&mut m, 80, 24);
    let selected_line = row_of(&lines, "job 149");
    assert!(
        selected_line.starts_with(&chosen.as_str()[..11]),
        "{lines:?}"
    );
}

#[test]
fn a_frame_of_eleven_thousand_tasks_builds_only_the_rows_on_screen() {
    let tasks: Vec<Task> = (0..11_000)
        .map(|n| {
            let status = if n < 1000 {
                Status::Running
            } else {
                Status::Completed
            };
            task(n, "me", status, "sleep 600", (100, 1))
        })
        .collect();
    let mut m = Model::new("me".into(), false);
    m.set_tasks(tasks, NOW);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        terminal.draw(|f| view::draw(f, &m)).unwrap();
    }
    // Debug build, shared machine: far above the release figure
    // (docs/BENCHMARKS.md), far below the cost of drawing 11,000 rows.
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn a_re_read_folds_in_changed_and_new_tasks_and_asks_for_all_after_deletions() {
    let mut m = Model::new("me".into(), true);
    m.set_tasks(known_tasks(), NOW);
    // npm run dev ended, a new task started.
    let mut ended = task(0xa1, "me", Status::Killed, "npm run dev", (90, 5));
    ended.exit_code = Some(143);
    let new = task(0xe5, "me", Status::Running, "make watch", (1, 0));
    assert!(m.merge(vec![ended, new], 5, NOW));
    assert_eq!(m.tasks.len(), 5);
    assert_eq!(m.tasks[0].command, "make watch");
    let dev = m.tasks.iter().find(|t| t.command == "npm run dev").unwrap();
    assert_eq!(dev.status, Status::Killed);
    // The store holds fewer tasks than the model would: a full read is due.
    assert!(!m.merge(Vec::new(), 3, NOW));
}

#[test]
fn ids_that_share_their_short_prefix_are_shown_in_full() {
    let mut tasks = known_tasks();
    tasks[0].task_id = "bg-1234567800000001".parse().unwrap();
    tasks[1].task_id = "bg-1234567800000002".parse().unwrap();
    let mut m = Model::new("me".into(), true);
    m.set_tasks(tasks, NOW);
    let lines = screen(&mut m, 80, 24);
    assert!(
        lines.iter().any(|l| l.starts_with("bg-1234567800000001 ")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("bg-1234567800000002 ")),
        "{lines:#?}"
    );
}

#[test]
fn a_labelled_task_shows_its_label_in_a_column_and_queued_tasks_their_status() {
    // Issue 21: the LABEL column appears when a row on screen has a label.
    let mut m = model();
    let plain = screen(&mut m, 120, 12);
    assert!(!plain[1].contains("LABEL"), "{plain:#?}");
    let mut tasks = known_tasks();
    tasks[0].label = Some("nightly".into());
    tasks[1].status = Status::Queued;
    m.set_tasks(tasks, NOW);
    let lines = screen(&mut m, 120, 12);
    assert!(lines[1].contains("LABEL"), "{lines:#?}");
    assert!(
        row_of(&lines, "npm run dev").contains("nightly"),
        "{lines:#?}"
    );
    assert!(
        row_of(&lines, "cargo build").contains("queued"),
        "{lines:#?}"
    );
}
