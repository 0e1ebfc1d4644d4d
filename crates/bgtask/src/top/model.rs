//! `bgtask top`'s state and how keys change it, without a terminal or a
//! store: `mod.rs` feeds it tasks and output and carries out the
//! [`Effect`]s it asks for, `view.rs` draws it. Tests drive it directly.

use std::cmp::Reverse;
use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use bgtask_core::{Status, Task, TaskId};

/// Signals the signal menu offers, in key order 1…
pub const SIGNALS: [&str; 6] = [
    "SIGTERM", "SIGINT", "SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2",
];

/// Which tasks are shown, by status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFilter {
    All,
    Live,
    Ended,
    Failed,
}

impl StatusFilter {
    fn next(self) -> StatusFilter {
        match self {
            StatusFilter::All => StatusFilter::Live,
            StatusFilter::Live => StatusFilter::Ended,
            StatusFilter::Ended => StatusFilter::Failed,
            StatusFilter::Failed => StatusFilter::All,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StatusFilter::All => "all",
            StatusFilter::Live => "live",
            StatusFilter::Ended => "ended",
            StatusFilter::Failed => "not completed",
        }
    }

    fn admits(self, task: &Task) -> bool {
        match self {
            StatusFilter::All => true,
            StatusFilter::Live => !task.is_terminal(),
            StatusFilter::Ended => task.is_terminal(),
            StatusFilter::Failed => task.is_terminal() && task.status != Status::Completed,
        }
    }
}

/// The order of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Live tasks first, then newest first.
    LiveFirst,
    Newest,
    Oldest,
    /// Longest running (or ran) first.
    Duration,
    Command,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::LiveFirst => Sort::Newest,
            Sort::Newest => Sort::Oldest,
            Sort::Oldest => Sort::Duration,
            Sort::Duration => Sort::Command,
            Sort::Command => Sort::LiveFirst,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sort::LiveFirst => "live first",
            Sort::Newest => "newest",
            Sort::Oldest => "oldest",
            Sort::Duration => "duration",
            Sort::Command => "command",
        }
    }
}

/// What the keys are doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// `k` was pressed on this task: `y` kills it.
    ConfirmKill(TaskId),
    /// `x` was pressed: a digit picks a signal from [`SIGNALS`].
    PickSignal(TaskId),
    /// `/`: typing the text filter.
    EditFilter,
    /// `?`: the key list.
    Help,
}

/// What the loop must do for the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    Quit,
    Kill(TaskId),
    Signal(TaskId, &'static str),
    Ack(TaskId),
    /// The session filter changed, or `r`: re-read the store and redraw.
    Reload,
}

/// Everything `top` shows.
pub struct Model {
    /// The session `top` runs for (the session filter's "this session").
    pub session: String,
    /// Show every session's tasks, or only `session`'s.
    pub all_sessions: bool,
    /// Every task read (of `session`, or all), newest first.
    pub tasks: Vec<Task>,
    /// Indexes into `tasks` of the rows shown, in table order.
    pub rows: Vec<usize>,
    pub selected: Option<TaskId>,
    /// First row drawn (scrolling).
    pub offset: usize,
    pub status_filter: StatusFilter,
    pub show_finished: bool,
    pub text_filter: String,
    pub sort: Sort,
    pub mode: Mode,
    /// The selected task's output tail, cleaned for the screen.
    pub tail: Vec<String>,
    /// The last action's result (kill sent, signal refused, …).
    pub message: Option<String>,
    /// Time the rows' ages and durations are shown at.
    pub now_ms: i64,
    /// Output bytes (both streams) of the rows on screen, for the rate.
    pub output_bytes: HashMap<TaskId, u64>,
}

impl Model {
    pub fn new(session: String, all_sessions: bool) -> Model {
        Model {
            session,
            all_sessions,
            tasks: Vec::new(),
            rows: Vec::new(),
            selected: None,
            offset: 0,
            status_filter: StatusFilter::All,
            show_finished: true,
            text_filter: String::new(),
            sort: Sort::LiveFirst,
            mode: Mode::Normal,
            tail: Vec::new(),
            message: None,
            now_ms: 0,
            output_bytes: HashMap::new(),
        }
    }

    /// A new read of the store. The selection stays on its task while it
    /// is shown; else on the first row.
    pub fn set_tasks(&mut self, tasks: Vec<Task>, now_ms: i64) {
        self.tasks = tasks;
        self.now_ms = now_ms;
        self.refilter();
    }

    /// Folds in the tasks that may have changed since the last read (see
    /// `Service::list_since`) and keeps the rest. Returns false, changing
    /// nothing shown, when the store holds another number of tasks than
    /// the model then would (some were deleted): the caller reads all.
    pub fn merge(&mut self, changed: Vec<Task>, total: u64, now_ms: i64) -> bool {
        let mut index: HashMap<TaskId, usize> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.task_id.clone(), i))
            .collect();
        let mut added = false;
        for task in changed {
            match index.get(&task.task_id) {
                Some(&i) => self.tasks[i] = task,
                None => {
                    index.insert(task.task_id.clone(), self.tasks.len());
                    self.tasks.push(task);
                    added = true;
                }
            }
        }
        if added {
            // Newest first, as the store lists them.
            self.tasks.sort_by_key(|t| Reverse(t.created_at));
        }
        if self.tasks.len() as u64 != total {
            return false;
        }
        self.now_ms = now_ms;
        self.refilter();
        true
    }

    /// The selected task, if any row is shown.
    pub fn selected_task(&self) -> Option<&Task> {
        let id = self.selected.as_ref()?;
        self.rows
            .iter()
            .map(|&i| &self.tasks[i])
            .find(|t| &t.task_id == id)
    }

    fn selected_row(&self) -> Option<usize> {
        let id = self.selected.as_ref()?;
        self.rows.iter().position(|&i| &self.tasks[i].task_id == id)
    }

    /// Recomputes the rows shown after a change of tasks, filters or order.
    pub fn refilter(&mut self) {
        let needle = self.text_filter.to_lowercase();
        let mut rows: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| {
                let t = &self.tasks[i];
                (self.show_finished || !t.is_terminal())
                    && self.status_filter.admits(t)
                    && (needle.is_empty() || matches_text(t, &needle))
            })
            .collect();
        let tasks = &self.tasks;
        let now = self.now_ms;
        match self.sort {
            // `tasks` is newest first already: a stable sort keeps that.
            Sort::LiveFirst => rows.sort_by_key(|&i| tasks[i].is_terminal()),
            Sort::Newest => {}
            Sort::Oldest => rows.reverse(),
            Sort::Duration => rows.sort_by_key(|&i| Reverse(run_ms(&tasks[i], now))),
            Sort::Command => rows.sort_by(|&a, &b| tasks[a].command.cmp(&tasks[b].command)),
        }
        self.rows = rows;
        if self.selected_row().is_none() {
            self.selected = self.rows.first().map(|&i| self.tasks[i].task_id.clone());
            self.offset = 0;
        }
    }

    /// Keeps the selected row within the `height` rows drawn.
    pub fn scroll_into_view(&mut self, height: usize) {
        let height = height.max(1);
        let Some(row) = self.selected_row() else {
            self.offset = 0;
            return;
        };
        if row < self.offset {
            self.offset = row;
        } else if row >= self.offset + height {
            self.offset = row + 1 - height;
        }
        self.offset = self.offset.min(self.rows.len().saturating_sub(1));
    }

    fn move_selection(&mut self, by: isize) {
        if self.rows.is_empty() {
            return;
        }
        let row = self.selected_row().unwrap_or(0) as isize;
        let last = self.rows.len() as isize - 1;
        let row = (row + by).clamp(0, last) as usize;
        self.selected = Some(self.tasks[self.rows[row]].task_id.clone());
    }

    /// One key. Returns what the loop must do.
    pub fn key(&mut self, key: KeyEvent) -> Option<Effect> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('d')) {
            return Some(Effect::Quit);
        }
        match self.mode.clone() {
            Mode::Help => {
                self.mode = Mode::Normal;
                None
            }
            Mode::ConfirmKill(id) => {
                self.mode = Mode::Normal;
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
                    self.message = Some(format!("killing {id}…"));
                    return Some(Effect::Kill(id));
                }
                self.message = Some("kill cancelled".into());
                None
            }
            Mode::PickSignal(id) => {
                self.mode = Mode::Normal;
                let picked = match key.code {
                    KeyCode::Char(c) => c
                        .to_digit(10)
                        .and_then(|d| SIGNALS.get((d as usize).checked_sub(1)?)),
                    _ => None,
                };
                match picked {
                    Some(signal) => Some(Effect::Signal(id, signal)),
                    None => {
                        self.message = Some("no signal sent".into());
                        None
                    }
                }
            }
            Mode::EditFilter => {
                match key.code {
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Esc => {
                        self.text_filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Backspace => {
                        self.text_filter.pop();
                    }
                    KeyCode::Char(c) if !ctrl => self.text_filter.push(c),
                    _ => {}
                }
                self.refilter();
                None
            }
            Mode::Normal => self.normal_key(key),
        }
    }

    fn normal_key(&mut self, key: KeyEvent) -> Option<Effect> {
        self.message = None;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Some(Effect::Quit),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2),
            KeyCode::Char('k') => match self.selected_task() {
                Some(t) if !t.is_terminal() => self.mode = Mode::ConfirmKill(t.task_id.clone()),
                Some(t) => self.message = Some(format!("{} has already ended", t.task_id)),
                None => {}
            },
            KeyCode::Char('x') => match self.selected_task() {
                Some(t) if !t.is_terminal() => self.mode = Mode::PickSignal(t.task_id.clone()),
                Some(t) => self.message = Some(format!("{} has already ended", t.task_id)),
                None => {}
            },
            KeyCode::Char('a') => {
                if let Some(t) = self.selected_task() {
                    return Some(Effect::Ack(t.task_id.clone()));
                }
            }
            KeyCode::Char('/') => self.mode = Mode::EditFilter,
            KeyCode::Char('f') => {
                self.status_filter = self.status_filter.next();
                self.refilter();
            }
            KeyCode::Char('o') => {
                self.sort = self.sort.next();
                self.refilter();
            }
            KeyCode::Char('h') => {
                self.show_finished = !self.show_finished;
                self.refilter();
            }
            KeyCode::Char('s') => {
                self.all_sessions = !self.all_sessions;
                return Some(Effect::Reload);
            }
            KeyCode::Char('?') => self.mode = Mode::Help,
            KeyCode::Char('r') => return Some(Effect::Reload),
            _ => {}
        }
        None
    }
}

/// Whether the text filter (lowercase) matches a task's id, session,
/// command or working directory.
fn matches_text(task: &Task, needle: &str) -> bool {
    task.task_id.as_str().contains(needle)
        || task.session.to_lowercase().contains(needle)
        || task.command.to_lowercase().contains(needle)
        || task.cwd.to_string_lossy().to_lowercase().contains(needle)
}

/// How long a task ran, or has run so far.
pub fn run_ms(task: &Task, now_ms: i64) -> u64 {
    match (task.duration_ms, task.started_at) {
        (Some(d), _) => d,
        (None, Some(s)) if !task.is_terminal() => (now_ms - s).max(0) as u64,
        _ => 0,
    }
}
