//! `bgtask top`: a full-screen live view of the tasks.
//!
//! Split three ways: `model.rs` (state, keys → effects; no terminal, no
//! store), `view.rs` (draws a model with ratatui) and this file, the loop
//! that connects them to the store and the terminal.
//!
//! Nothing runs on a timer. Threads turn each source of change into a
//! message on one channel: the store's events file (the watch every
//! waiter uses; touched after every transition), the keyboard (crossterm),
//! the selected task's output files (inotify, through
//! `Service::watch_output`), SIGTERM/SIGHUP, and the results of kills. The
//! loop sleeps on the channel, applies every message waiting, re-reads
//! what they say changed, and draws one frame. With nothing happening the
//! process sleeps. The terminal is restored on every way out: the end of
//! the loop, an error, and a panic (its hook restores before the message).

mod model;
mod view;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use crossterm::event::{Event, KeyEventKind};
use crossterm::{cursor, execute, terminal};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;

use bgtask_core::{ListRequest, Service, TaskId};

pub use model::{Effect, Model};

/// Bytes of each task's output read for the tail pane (stdout, then
/// stderr), as `status --tail` reads them: bounded, whatever the file size.
const TAIL_BYTES: u64 = 16 << 10;

/// Grace of a kill from `top`, as `bgtask kill`'s default.
const KILL_GRACE_MS: u64 = 2000;

/// At most one redraw per this for a burst of output of the selected task.
const FRAME: Duration = Duration::from_millis(16);

enum Msg {
    Store,
    Input(Event),
    /// The terminal went away (end of input) or SIGTERM/SIGHUP arrived.
    Quit,
    /// The selected task (follower generation) printed something.
    Output(u64),
    /// The result of a kill, signal or ack, for the message line.
    Done(String),
}

pub fn run(service: Service, all_sessions: bool) -> Result<u8> {
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(bgtask_core::Error::InvalidArgument(
            "bgtask top needs a terminal: stdout is not one (use `bgtask list --watch`)".into()
        ));
    }
    let service = Arc::new(service);
    let (tx, rx) = mpsc::channel();
    spawn_store_watch(&service, tx.clone())?;
    spawn_input(tx.clone());
    spawn_signals(tx.clone())?;
    let trace = Trace::from_env();
    let mut screen = Screen::enter()?;
    let result = event_loop(
        &service,
        all_sessions,
        &mut screen.terminal,
        (&tx, &rx),
        trace,
    );
    drop(screen);
    result.map(|()| 0)
}

/// Wakes the loop on every change of the store (no timer).
fn spawn_store_watch(service: &Service, tx: Sender<Msg>) -> Result<()> {
    let events = service.watch_events()?;
    std::thread::spawn(move || loop {
        match events.wait(None) {
            Ok(_) => {
                if tx.send(Msg::Store).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::Done(format!("cannot watch the store: {e}")));
                return;
            }
        }
    });
    Ok(())
}

fn spawn_input(tx: Sender<Msg>) {
    std::thread::spawn(move || loop {
        let msg = match crossterm::event::read() {
            Ok(event) => Msg::Input(event),
            // The terminal is gone (closed, hung up).
            Err(_) => Msg::Quit,
        };
        let quit = matches!(msg, Msg::Quit);
        if tx.send(msg).is_err() || quit {
            return;
        }
    });
}

/// SIGTERM and SIGHUP (the terminal closed) end `top` through the loop,
/// so the terminal is restored when it still exists.
fn spawn_signals(tx: Sender<Msg>) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(Msg::Quit);
        }
    });
    Ok(())
}

/// The terminal in raw mode on the alternate screen, restored on drop and
/// by the panic hook.
struct Screen {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl Screen {
    fn enter() -> Result<Screen> {
        terminal::enable_raw_mode()?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e.into());
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(Screen { terminal }),
            Err(e) => {
                restore();
                Err(e.into())
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen, shows the cursor, ends raw mode. Errors
/// are ignored: the terminal may be gone.
fn restore() {
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

/// `BGTASK_TOP_TRACE=FILE`: one line per frame, for the benchmark
/// (`frame UNIX_MS DRAW_US LIVE ENDED`).
struct Trace(Option<std::fs::File>);

impl Trace {
    fn from_env() -> Trace {
        let file = std::env::var_os("BGTASK_TOP_TRACE").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        Trace(file)
    }

    fn reload(&mut self, took: Duration) {
        use std::io::Write;
        if let Some(file) = &mut self.0 {
            let _ = writeln!(
                file,
                "reload {} {}",
                bgtask_core::now_ms(),
                took.as_micros()
            );
        }
    }

    fn frame(&mut self, draw: Duration, model: &Model) {
        use std::io::Write;
        if let Some(file) = &mut self.0 {
            let live = model.tasks.iter().filter(|t| !t.is_terminal()).count();
            let _ = writeln!(
                file,
                "frame {} {} {live} {}",
                bgtask_core::now_ms(),
                draw.as_micros(),
                model.tasks.len() - live
            );
        }
    }
}

/// The follower of the selected task's output: a thread per selection,
/// told apart by generation. Its watch also wakes on every change of the
/// store, so a follower whose task is no longer selected ends at the next
/// change (or output of its task) without any timer.
struct Follower {
    generation: Arc<AtomicU64>,
    following: Option<TaskId>,
}

impl Follower {
    /// Follows `id` (stops following the previous task).
    fn follow(&mut self, service: &Arc<Service>, id: Option<TaskId>, tx: &Sender<Msg>) {
        if self.following == id {
            return;
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.following = id.clone();
        let Some(id) = id else { return };
        let current = Arc::clone(&self.generation);
        let service = Arc::clone(service);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let Ok(task) = service.get(&id) else { return };
            if task.is_terminal() {
                // Its output no longer changes.
                return;
            }
            let Ok(watch) = service.watch_output(&id) else {
                return;
            };
            while current.load(Ordering::SeqCst) == generation {
                match watch.wait(None) {
                    Ok(true) => {
                        if current.load(Ordering::SeqCst) != generation {
                            return;
                        }
                        let _ = watch.watch_also(&task.stderr_path);
                        if tx.send(Msg::Output(generation)).is_err() {
                            return;
                        }
                        // Output comes in bursts: one redraw per frame.
                        std::thread::sleep(FRAME);
                    }
                    Ok(false) => {}
                    Err(_) => return,
                }
            }
        });
    }
}

fn event_loop(
    service: &Arc<Service>,
    all_sessions: bool,
    terminal: &mut Terminal<CrosstermBackend<std::io::Stdout>>,
    (tx, rx): (&Sender<Msg>, &Receiver<Msg>),
    mut trace: Trace,
) -> Result<()> {
    let mut model = Model::new(service.session().to_owned(), all_sessions);
    let mut follower = Follower {
        generation: Arc::new(AtomicU64::new(0)),
        following: None,
    };
    let mut reader = Reader { last_read: 0 };
    reader.reload(service, &mut model, true)?;
    let mut tail_of: Option<TaskId> = None;
    let mut tail_stale = true;
    loop {
        let size = terminal.size()?;
        let area = Rect::new(0, 0, size.width, size.height);
        model.scroll_into_view(view::table_height(area));
        if tail_stale || tail_of != model.selected {
            read_tail(service, &mut model, view::tail_height(area));
            tail_of = model.selected.clone();
            tail_stale = false;
        }
        follower.follow(service, model.selected.clone(), tx);
        read_sizes(&mut model, view::table_height(area));
        let started = Instant::now();
        terminal.draw(|frame| view::draw(frame, &model))?;
        trace.frame(started.elapsed(), &model);

        // Sleep until something happens, then take everything waiting.
        let mut msgs = vec![rx.recv()?];
        msgs.extend(rx.try_iter());
        let mut store_changed = false;
        let mut check_owners = false;
        for msg in msgs {
            match msg {
                Msg::Store => store_changed = true,
                Msg::Quit => return Ok(()),
                Msg::Output(generation) => {
                    if generation == follower.generation.load(Ordering::SeqCst) {
                        tail_stale = true;
                    }
                }
                Msg::Done(text) => model.message = Some(text),
                Msg::Input(Event::Key(key)) if key.kind != KeyEventKind::Release => {
                    match model.key(key) {
                        Some(Effect::Quit) => return Ok(()),
                        Some(Effect::Reload) => {
                            store_changed = true;
                            check_owners = true;
                        }
                        Some(effect) => carry_out(service, effect, tx),
                        None => {}
                    }
                }
                // A resize redraws; other input is ignored.
                Msg::Input(_) => {}
            }
        }
        if store_changed {
            let started = Instant::now();
            reader.reload(service, &mut model, check_owners)?;
            trace.reload(started.elapsed());
            // A state change may end the output: read it once more.
            tail_stale = true;
        }
    }
}

/// How far before the last read a re-read starts looking for ended and new
/// tasks: an end is stamped a moment before it is committed.
const SINCE_SLACK_MS: i64 = 5_000;

/// What the loop has read of the store.
struct Reader {
    /// When the last read began (wall clock, ms); 0 before the first.
    last_read: i64,
}

impl Reader {
    /// Re-reads the tasks shown. `check_owners` (at start, on `r` and on a
    /// change of sessions) reads every task and checks every live task's
    /// monitor, as `list` does, recording the ones found dead. On store
    /// changes only what may have changed is read, as recorded
    /// (`Service::list_since`): 10,000 finished tasks never change, and
    /// checking 1000 live monitors on every change would cost far more than
    /// the 100 ms a change may take to show.
    fn reload(&mut self, service: &Service, model: &mut Model, check_owners: bool) -> Result<()> {
        let request = ListRequest {
            all_sessions: model.all_sessions,
            status: None,
            group: None,
        };
        let now = bgtask_core::now_ms();
        if !check_owners && self.last_read > 0 {
            let (changed, total) = service.list_since(&request, self.last_read - SINCE_SLACK_MS)?;
            if model.merge(changed, total, now) {
                self.last_read = now;
                return Ok(());
            }
        }
        let tasks = if check_owners {
            service.list(&request)?
        } else {
            service.list_recorded(&request)?
        };
        model.set_tasks(tasks, now);
        self.last_read = now;
        Ok(())
    }
}

/// The selected task's output tail, cleaned as human output is.
fn read_tail(service: &Service, model: &mut Model, height: usize) {
    model.tail = match &model.selected {
        Some(id) => match service.status(id, TAIL_BYTES) {
            Ok(status) => {
                let text = crate::render::clean_output(&status.output_tail, false);
                let lines: Vec<&str> = text.lines().collect();
                let skip = lines.len().saturating_sub(height.max(1));
                lines[skip..].iter().map(|l| (*l).to_owned()).collect()
            }
            Err(e) => vec![format!("cannot read the output: {e}")],
        },
        None => Vec::new(),
    };
}

/// Output sizes of the rows on screen (one stat per file), for the rate.
fn read_sizes(model: &mut Model, height: usize) {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let sizes = model
        .rows
        .iter()
        .skip(model.offset)
        .take(height)
        .map(|&i| {
            let t = &model.tasks[i];
            (
                t.task_id.clone(),
                size(&t.stdout_path) + size(&t.stderr_path),
            )
        })
        .collect();
    model.output_bytes = sizes;
}

/// Kills, signals and acks run off the loop (a kill waits for the end);
/// their result comes back as a message.
fn carry_out(service: &Arc<Service>, effect: Effect, tx: &Sender<Msg>) {
    let service = Arc::clone(service);
    let tx = tx.clone();
    std::thread::spawn(move || {
        let text = match effect {
            Effect::Kill(id) => match service.kill(&id, KILL_GRACE_MS) {
                Ok(task) => format!("{id}: {}", crate::render::status_text(&task)),
                Err(e) => format!("kill {id}: {e}"),
            },
            // Recorded in the task's history first, then carried out by
            // its monitor (as `bgtask signal` does).
            Effect::Signal(id, signal) => match service.signal(&id, signal, false) {
                Ok(_) => format!("{signal} sent to {id}"),
                Err(e) => format!("{signal} to {id}: {e}"),
            },
            Effect::Ack(id) => match service.ack(std::slice::from_ref(&id)) {
                Ok(0) => format!("{id}: no completion to acknowledge in this session"),
                Ok(_) => format!("{id}: completion acknowledged"),
                Err(e) => format!("ack {id}: {e}"),
            },
            Effect::Quit | Effect::Reload => return,
        };
        let _ = tx.send(Msg::Done(text));
    });
}
