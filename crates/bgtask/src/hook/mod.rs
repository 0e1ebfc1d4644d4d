//! `bgtask hook AGENT`: one hook event of an agent's harness (JSON on
//! stdin), answered on stdout in the harness's own protocol (nothing else
//! is ever written there) and by the exit code. The session is the one
//! `bgtask mcp` uses in the event's `cwd`, unless `--session` or
//! `BGTASK_SESSION` names one.
//!
//! Every kind of notification is delivered: completions, `ready`,
//! `ready_failed` and `watch_match`.
//!
//! - **inject** (SessionStart, UserPromptSubmit, PostToolUse of other
//!   tools, Gemini's BeforeAgent): the pending notifications as
//!   `additionalContext`; nothing at all when none is pending.
//! - **wake** (Claude Code's Stop, registered `asyncRewake`): waits for the
//!   next notification of a task that notifies (or has an active watch),
//!   prints it on stderr and exits 2, which wakes the idle model. In
//!   `claude -p` the same hook runs synchronously and so gates the run; it
//!   is then bounded like a gate, and waits only for tasks that hold the
//!   turn (a task with a readiness condition holds it until it is ready).
//! - **gate** (Codex's Stop in `codex exec`, Gemini's AfterAgent): waits,
//!   bounded, and answers `decision: block` with the notification.
//! - **Codex interactive**: its Stop leaves a detached waiter that delivers
//!   the next notification with `codex queue --thread`.
//!
//! Each path claims what it prints and settles it once printed (see
//! `bgtask_core::hook`): a hook killed midway loses nothing.

mod agents;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use bgtask_core::hook::{Next, Quiet, Wait};
use bgtask_core::{Config, Pending, PendingClaim, Service};

use crate::mcp::format::{completions_block, BlockEntry};

pub use agents::Agent;

/// Longest hook input read (a harness sends a few KiB).
const MAX_INPUT: u64 = 4 << 20;
/// Characters of `additionalContext` Claude Code accepts (10,000), with room.
const CONTEXT_BUDGET: usize = 8 * 1024;
/// A gate's wait when `BGTASK_HOOK_WAIT` does not say: it holds a run.
const GATE_WAIT: Duration = Duration::from_secs(600);
/// An asynchronous waiter's wait (Claude Code's interactive wake hook, the
/// Codex queue waiter): an idle session may wait long for a build.
const WAKE_WAIT: Duration = Duration::from_secs(12 * 3600);
/// Blocks in a row a harness allows a Stop hook, when it does not say.
const DEFAULT_BLOCK_CAP: u32 = 8;

/// One hook event as the harnesses send it (fields they share).
#[derive(Debug, Default)]
pub struct Event {
    pub name: String,
    pub cwd: Option<PathBuf>,
    pub session_id: Option<String>,
    pub stop_hook_active: bool,
    pub tool_name: Option<String>,
}

impl Event {
    fn parse(value: &Value) -> Result<Event> {
        let name = value["hook_event_name"]
            .as_str()
            .context("the hook input has no hook_event_name")?
            .to_owned();
        Ok(Event {
            name,
            cwd: value["cwd"].as_str().map(PathBuf::from),
            session_id: value["session_id"].as_str().map(str::to_owned),
            stop_hook_active: value["stop_hook_active"].as_bool().unwrap_or(false),
            tool_name: value["tool_name"].as_str().map(str::to_owned),
        })
    }
}

/// What a hook does with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Inject {
        summary: bool,
    },
    Wake,
    Gate,
    /// Codex's Stop outside `codex exec`: a detached waiter.
    QueueWaiter,
    Ignore,
}

/// `bgtask hook`'s arguments.
#[derive(Debug, clap::Args)]
pub struct HookArgs {
    /// The harness that runs the hook
    #[arg(value_enum)]
    pub agent: Agent,
    /// Internal: wait for the next notification and deliver it to this
    /// Codex thread with `codex queue` (left behind by Codex's Stop hook)
    #[arg(long, hide = true, value_name = "THREAD")]
    pub queue_thread: Option<String>,
}

/// Runs `bgtask hook AGENT`. `session_given`: `--session`/`BGTASK_SESSION`
/// named the session (else it is the one of the event's cwd).
pub fn run(args: HookArgs, config: Config, session_given: bool) -> Result<u8> {
    // Never exit 2 on an error: Claude Code reads 2 as "wake the model".
    match hook(args, config, session_given) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("bgtask hook: {e:#}");
            Ok(1)
        }
    }
}

fn hook(args: HookArgs, mut config: Config, session_given: bool) -> Result<u8> {
    let agent = args.agent;
    if let Some(thread) = args.queue_thread {
        if !session_given {
            config.session = crate::mcp::default_session()?;
        }
        return queue_waiter(config, &thread);
    }
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_end(&mut input)
        .context("cannot read the hook input")?;
    let value: Value = serde_json::from_slice(&input).context("the hook input is not JSON")?;
    let event = Event::parse(&value)?;
    let action = agent.action(&event);
    if action == Action::Ignore {
        return Ok(0);
    }
    if !session_given {
        let cwd = match &event.cwd {
            Some(cwd) => cwd.clone(),
            None => std::env::current_dir()?,
        };
        let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
        config.session = crate::mcp::session_of_dir(&cwd);
    }
    // A hook never creates a store: without one nothing is pending, no
    // task can hold or wake a turn, and every action answers nothing. (The
    // in-memory stand-in `open_existing` would build costs milliseconds:
    // every hook of every prompt pays it until bgtask is first used.)
    if !config.home.join("bgtask.db").exists() {
        return Ok(0);
    }
    if let Action::Inject { summary } = action {
        // Read before the store is opened (see `Quiet`): most prompts and
        // tool calls find the session as the previous hook left it.
        let quiet = Quiet::read(&config.home, &config.session);
        if quiet.unchanged() {
            return Ok(0);
        }
        let service = Service::open_existing(config.clone())?;
        return inject(agent, &event, &service, summary, &quiet);
    }
    let service = Service::open_existing(config.clone())?;
    match action {
        Action::Inject { .. } => unreachable!("handled above"),
        Action::Wake => {
            // Under `claude -p` the Stop hook holds the run: bounded.
            let sync = std::env::var("CLAUDE_CODE_ENTRYPOINT").is_ok_and(|e| e.starts_with("sdk"));
            let (kind, wait) = if sync {
                (Wait::Turn, gate_wait()?)
            } else {
                (Wait::Idle, WAKE_WAIT)
            };
            stop(agent, &event, &service, kind, wait)
        }
        Action::Gate => stop(agent, &event, &service, Wait::Turn, gate_wait()?),
        Action::QueueWaiter => {
            if let Some(thread) = &event.session_id {
                if !service.wakers(Wait::Idle)?.is_empty() {
                    spawn_queue_waiter(&config, thread)?;
                }
            }
            Ok(0)
        }
        Action::Ignore => Ok(0),
    }
}

/// The gate's bound: `BGTASK_HOOK_WAIT` (a duration such as `10m`) or 10 minutes.
fn gate_wait() -> Result<Duration> {
    match std::env::var("BGTASK_HOOK_WAIT") {
        Ok(text) => {
            let ms = bgtask_core::units::parse_duration_ms(&text)
                .map_err(|e| anyhow::anyhow!("BGTASK_HOOK_WAIT: {e}"))?;
            Ok(ms.map_or(WAKE_WAIT, Duration::from_millis))
        }
        Err(_) => Ok(GATE_WAIT),
    }
}

/// How much of the context budget a notification takes.
fn cost(p: &Pending) -> usize {
    match p {
        Pending::Completion(c) => BlockEntry::of(c).text.len(),
        Pending::Other(n) => crate::mcp::notices::line(n).len(),
    }
}

/// The text of claimed notifications: the completions as a tool result
/// opens with them, then the other kinds as `[bgtask] notifications:`
/// lines (as MCP shows them), then how many more wait.
fn notification_text(claim: &PendingClaim) -> String {
    let mut entries = Vec::new();
    let mut others = String::new();
    for item in &claim.items {
        match item {
            Pending::Completion(c) => entries.push(BlockEntry::of(c)),
            Pending::Other(n) => others.push_str(&crate::mcp::notices::line(n)),
        }
    }
    let mut text = String::new();
    if !entries.is_empty() {
        text = completions_block(&entries, 0);
    }
    if !others.is_empty() {
        text.push_str("[bgtask] notifications:\n");
        text.push_str(&others);
        text.push('\n');
    }
    if claim.left > 0 {
        text.push_str(&format!(
            "[bgtask] and {} more notification(s), not shown here for room: they open the \
             next results; see `bgtask notifications`.\n",
            claim.left
        ));
    }
    text
}

/// Prints `text` on stdout and flushes: what was printed counts as
/// delivered only once this returns.
fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

fn inject(
    agent: Agent,
    event: &Event,
    service: &Service,
    summary: bool,
    quiet: &Quiet,
) -> Result<u8> {
    let claimed = service.claim_pending_noting(CONTEXT_BUDGET, cost, quiet)?;
    let mut text = String::new();
    if !claimed.is_empty() || claimed.left > 0 {
        text = notification_text(&claimed);
    }
    if summary {
        let live = service.turn_holders()?;
        if !live.is_empty() {
            text.push_str(&format!(
                "[bgtask] {} background task(s) of this project are still running; you will be told when each ends:\n",
                live.len()
            ));
            for task in live.iter().take(20) {
                text.push_str("- ");
                text.push_str(&crate::mcp::format::task_line(task));
                text.push('\n');
            }
        }
    }
    if text.is_empty() {
        return Ok(0);
    }
    let answer = agent.inject_answer(&event.name, text.trim_end());
    if let Err(e) = emit(&answer.to_string()) {
        let _ = service.unclaim_pending(&claimed);
        return Err(e);
    }
    service.settle_pending(&claimed)?;
    Ok(0)
}

/// Wake and gate: wait for the next notification and hand it over.
fn stop(agent: Agent, event: &Event, service: &Service, kind: Wait, wait: Duration) -> Result<u8> {
    let blocks = BlockCount::new(service, agent, event);
    if !blocks.may_block(agent) {
        return Ok(0);
    }
    let claimed = match service.next_notification(kind, wait, CONTEXT_BUDGET, cost)? {
        Next::Delivered(claimed) => claimed,
        Next::Nothing | Next::TimedOut | Next::Superseded => return Ok(0),
    };
    let text = notification_text(&claimed);
    let printed = match agent.stop_answer(text.trim_end()) {
        StopAnswer::Stderr(text) => {
            let mut err = std::io::stderr().lock();
            err.write_all(text.as_bytes())
                .and_then(|()| err.write_all(b"\n"))
                .and_then(|()| err.flush())
                .map_err(anyhow::Error::from)
                .map(|()| 2)
        }
        StopAnswer::Stdout(value) => emit(&value.to_string()).map(|()| 0),
    };
    match printed {
        Ok(code) => {
            blocks.record_block();
            service.settle_pending(&claimed)?;
            Ok(code)
        }
        Err(e) => {
            let _ = service.unclaim_pending(&claimed);
            Err(e)
        }
    }
}

/// How a Stop answer is given.
pub enum StopAnswer {
    /// On stderr with exit 2 (Claude Code).
    Stderr(String),
    /// JSON on stdout with exit 0 (Codex, Gemini).
    Stdout(Value),
}

/// Consecutive blocks of a harness session's Stop hook: reset when the
/// harness says the stop was not caused by a hook (`stop_hook_active`
/// false), so the hook never blocks more times in a row than the harness
/// allows (it would override the hook and end the turn anyway).
struct BlockCount {
    path: Option<PathBuf>,
    count: u32,
}

impl BlockCount {
    fn new(service: &Service, agent: Agent, event: &Event) -> BlockCount {
        let path = event.session_id.as_ref().map(|id| {
            let key = format!("{}:{id}", agent.name());
            service.config().home.join("waiters").join(format!(
                "blocks-{:016x}",
                key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
                })
            ))
        });
        let count = match (&path, event.stop_hook_active) {
            (Some(path), true) => std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0),
            _ => 0,
        };
        BlockCount { path, count }
    }

    fn may_block(&self, agent: Agent) -> bool {
        let cap = match agent {
            Agent::ClaudeCode => std::env::var("CLAUDE_CODE_STOP_HOOK_BLOCK_CAP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_BLOCK_CAP),
            _ => DEFAULT_BLOCK_CAP,
        };
        self.count + 1 < cap
    }

    fn record_block(&self) {
        if let Some(path) = &self.path {
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(path, (self.count + 1).to_string());
        }
    }
}

/// Leaves a detached `bgtask hook codex --queue-thread ID` behind.
fn spawn_queue_waiter(config: &Config, thread: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(&config.monitor_exe)
        .args(["hook", "codex", "--queue-thread", thread])
        .env("BGTASK_HOME", &config.home)
        .env("BGTASK_SESSION", &config.session)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        // Its own process group: the harness's signals to the hook's
        // group do not reach it.
        .process_group(0)
        .spawn()
        .context("cannot start the Codex queue waiter")?;
    Ok(())
}

/// The detached Codex waiter: the next notification, through `codex queue`.
fn queue_waiter(config: Config, thread: &str) -> Result<u8> {
    let service = Service::open_existing(config)?;
    let claimed = match service.next_notification(Wait::Idle, WAKE_WAIT, CONTEXT_BUDGET, cost)? {
        Next::Delivered(claimed) => claimed,
        _ => return Ok(0),
    };
    let text = notification_text(&claimed);
    let codex = std::env::var_os("BGTASK_CODEX").unwrap_or_else(|| "codex".into());
    let queued = std::process::Command::new(&codex)
        .args(["queue", "--thread", thread, "--message"])
        .arg(text.trim_end())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    match queued {
        Ok(status) if status.success() => {
            service.settle_pending(&claimed)?;
            Ok(0)
        }
        _ => {
            // Not delivered: the next hook or tool result shows it.
            service.unclaim_pending(&claimed)?;
            Ok(1)
        }
    }
}

/// Whether a process among this one's ancestors runs `codex exec`.
pub fn under_codex_exec() -> bool {
    let mut pid = std::os::unix::process::parent_id();
    for _ in 0..8 {
        if pid <= 1 {
            return false;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_codex = args
            .first()
            .and_then(|a| Path::new(std::str::from_utf8(a).ok()?).file_name())
            .is_some_and(|n| n.to_string_lossy().starts_with("codex"));
        if is_codex {
            return args.iter().skip(1).any(|a| *a == b"exec");
        }
        pid = match parent_of(pid) {
            Some(p) => p,
            None => return false,
        };
    }
    false
}

/// The parent pid of `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
