//! Command-line flags. Raw flags become validated values here (durations,
//! sizes, key=value pairs) before any command sees them.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Args, FromArgMatches, Parser, Subcommand};

use bgtask_core::units::{parse_duration_ms, parse_size};

#[derive(Debug, Parser)]
#[command(
    name = "bgtask",
    version,
    about = "Durable background shell tasks for people and AI coding agents",
    long_about = "bgtask starts shell commands as durable background tasks: they keep running when \
whatever started them exits, their output is kept (capped) on disk, and their end is recorded \
and delivered once to their session as a completion.",
    after_help = "Examples:\n  bgtask run -- npm run dev\n  bgtask run --wait 10s -- cargo test\n  \
bgtask list\n  bgtask logs --follow bg-0123456789abcdef\n  bgtask wait bg-0123456789abcdef"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line. `run`, the command agents call most, is
    /// parsed with a parser of its own arguments and the global ones only:
    /// building the parser of every subcommand was most of clap's cost,
    /// itself a sixth of a `run` (docs/BENCHMARKS.md, "Fourth round").
    /// Whatever that parser does not accept (help, any error, global
    /// options before the subcommand) goes to the full parser, so messages
    /// are always the full parser's.
    pub fn from_command_line(args: Vec<OsString>) -> Result<Cli, clap::Error> {
        match Self::parse_run(&args) {
            Some(cli) => Ok(cli),
            None => Cli::try_parse_from(args),
        }
    }

    fn parse_run(args: &[OsString]) -> Option<Cli> {
        let mut args = args.iter().skip(1);
        if args.next()? != "run" {
            return None;
        }
        let parser = clap::Command::new("run").no_binary_name(true);
        let parser = RunArgs::augment_args(Global::augment_args(parser));
        let matches = parser.try_get_matches_from(args).ok()?;
        Some(Cli {
            global: Global::from_arg_matches(&matches).ok()?,
            command: Command::Run(Box::new(RunArgs::from_arg_matches(&matches).ok()?)),
        })
    }
}

#[derive(Debug, Args)]
pub struct Global {
    /// Store directory [env: BGTASK_HOME; config: home;
    /// default: ~/.local/state/bgtask]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Session whose tasks and completions to use [env: BGTASK_SESSION;
    /// default: "default"; for `mcp`, one per working directory]
    #[arg(long, global = true, value_name = "NAME")]
    pub session: Option<String>,
    /// Print exactly one JSON document on stdout
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a command in the background and print its task id
    Run(Box<RunArgs>),
    /// Show a task and the end of its output
    #[command(after_help = ID_HELP)]
    Status {
        task_id: String,
        /// Bytes of output to show (stdout, then stderr)
        #[arg(long, default_value = "4096", value_parser = size, value_name = "BYTES")]
        tail: u64,
        /// Show the output as the task wrote it (escaped), not cleaned of
        /// progress-bar redraws and colour codes
        #[arg(long)]
        raw: bool,
    },
    /// List this session's tasks, newest first
    List {
        /// Tasks of every session
        #[arg(long)]
        all_sessions: bool,
        /// Only tasks in this status (running, completed, failed, …)
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Redraw the list whenever a task changes (ctrl-c to quit)
        #[arg(long)]
        watch: bool,
    },
    /// Print a task's output, byte for byte (--json does not apply)
    Logs(LogsArgs),
    /// Stop tasks: SIGTERM to each one's whole tree, SIGKILL after the grace
    #[command(after_help = ID_HELP)]
    Kill {
        /// Tasks to stop (all at once); each one's final state is printed
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        task_ids: Vec<String>,
        /// Every live task of this session
        #[arg(long)]
        all: bool,
        /// With --all: live tasks of every session
        #[arg(long, requires = "all")]
        all_sessions: bool,
        /// Time between SIGTERM and SIGKILL
        #[arg(long, default_value = "2s", value_parser = duration_some, value_name = "DUR")]
        grace: u64,
    },
    /// Pause running tasks: stop each one's whole process tree until
    /// `resume` (timeouts do not run while paused)
    Pause(crate::pause::PauseArgs),
    /// Let paused tasks run again
    Resume(crate::pause::ResumeArgs),
    /// Wait until tasks end, reporting each as it ends
    #[command(after_help = WAIT_HELP)]
    Wait {
        #[arg(required = true)]
        task_ids: Vec<String>,
        /// Give up after this long (exit 124)
        #[arg(long, default_value = "none", value_parser = duration, value_name = "DUR")]
        timeout: Limit,
        /// Show output previews as the task wrote them (escaped), not cleaned
        #[arg(long)]
        raw: bool,
        /// Wait until the tasks are ready instead (exit 0), or their
        /// readiness failed (1 if a task ended first, 124 on its readiness
        /// timeout). A task without a readiness condition is ready once running
        #[arg(long)]
        ready: bool,
    },
    /// Be told when a running task prints a line matching REGEX
    #[command(after_help = ID_HELP)]
    Watch(crate::notices::WatchArgs),
    /// Remove a watch
    Unwatch { watch_id: String },
    /// Show this session's unacknowledged notifications of every kind
    /// (completed, ready, ready_failed, watch_match), oldest first
    Notifications,
    /// Show this session's unacknowledged completions, oldest first
    Completions {
        /// Show output previews as the tasks wrote them (escaped), not cleaned
        #[arg(long)]
        raw: bool,
    },
    /// Full-screen live view of the tasks (q to quit, ? for keys)
    Top {
        /// Tasks of every session (s in the view toggles it)
        #[arg(long)]
        all_sessions: bool,
    },
    /// Mark notifications as delivered: every notification of each task
    /// so far (completions included), or single ones by notification id
    #[command(after_help = ID_HELP_ACK)]
    Ack {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        task_ids: Vec<String>,
        /// Every unacknowledged completion of this session
        #[arg(long)]
        all: bool,
    },
    /// Serve MCP (Model Context Protocol) on stdin/stdout for any MCP client
    Mcp,
    /// Answer one hook event of an agent's harness (JSON on stdin)
    Hook(crate::hook::HookArgs),
    /// Add bgtask (MCP server and hooks) to an agent's configuration
    Setup(crate::setup::SetupArgs),
    /// Serve the JSON-lines (JSON-RPC 2.0) protocol on stdin/stdout for agent plugins
    Serve,
    /// Check the store (home permissions, database integrity and schema,
    /// tasks whose monitor died, output files without a task record) and,
    /// with --repair, fix what can be fixed
    Doctor {
        /// Repair: chmod the home to 0700, move a database proven corrupt
        /// aside, record tasks whose monitor died. Never deletes a task
        /// record or an output file (output files without a task are only
        /// reported)
        #[arg(long)]
        repair: bool,
    },
    /// Delete finished, acknowledged tasks and their output files
    Gc {
        /// Only tasks that finished longer ago than this
        #[arg(long, default_value = "24h", value_parser = duration_some, value_name = "DUR")]
        older_than: u64,
    },
    /// Print shell completions or the man page (generated from these flags)
    #[command(subcommand)]
    Generate(Generate),
    /// Show the effective settings and where each one comes from
    #[command(after_help = CONFIG_HELP)]
    Config,
    /// Write to a --stdin or --pty task's input: text, keys, end of file
    Send(crate::interact::SendArgs),
    /// Send a signal to a task's processes (or only its shell)
    Signal(crate::interact::SignalArgs),
    /// Show a --pty task's current screen
    Screen(crate::interact::ScreenArgs),
    /// Give a --pty task's terminal a new size
    Resize(crate::interact::ResizeArgs),
    /// Manage queue groups (how many of a group's tasks run at once)
    #[command(subcommand)]
    Group(crate::queue::GroupCommand),
    /// Run a task again as a new task (same command, directory, limits,
    /// group and label)
    #[command(after_help = ID_HELP)]
    Restart(crate::queue::RestartArgs),
    /// Remove finished, acknowledged tasks now (of one group, or all)
    Clean {
        #[arg(long, value_name = "NAME")]
        group: Option<String>,
    },
}

const CONFIG_HELP: &str = "Settings come from, in rising precedence: built-in defaults, the \
config file ($XDG_CONFIG_HOME/bgtask/config.toml, usually ~/.config/bgtask/config.toml; \
BGTASK_CONFIG names another), environment variables, flags. Tasks started with `bgtask run` \
use the [run] settings; tasks started by agents through `serve` or `mcp` use [agent].

Example config.toml:
  home = \"~/.local/state/bgtask\"  # env BGTASK_HOME, flag --home
  max_running = 64                # env BGTASK_MAX_RUNNING
  [run]                           # env BGTASK_TIMEOUT, BGTASK_IDLE_TIMEOUT, BGTASK_MAX_OUTPUT
  timeout = \"none\"                # flags --timeout, --idle-timeout, --max-output
  idle_timeout = \"none\"
  max_output = \"100MiB\"
  [agent]                         # env BGTASK_AGENT_TIMEOUT, BGTASK_AGENT_IDLE_TIMEOUT,
  timeout = \"30m\"                 #     BGTASK_AGENT_MAX_OUTPUT; per call: timeout_ms, ...
  idle_timeout = \"none\"
  max_output = \"100MiB\"";

/// What `bgtask generate` prints on stdout. (Not `bgtask completions`:
/// that command shows a session's task completions.)
#[derive(Debug, Subcommand)]
pub enum Generate {
    /// Completion script for SHELL, e.g.
    /// `bgtask generate completions bash > ~/.local/share/bash-completion/completions/bgtask`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Man page (roff), e.g. `bgtask generate man > ~/.local/share/man/man1/bgtask.1`
    Man,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Working directory [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Extra environment variable (repeatable): KEY=VALUE, or KEY alone to
    /// pass on bgtask's own value of KEY (so the value never appears on a
    /// command line). Values are never stored
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from FILE (repeatable): one KEY=VALUE per
    /// line, taken literally; KEY alone passes on bgtask's own value; blank
    /// lines and lines starting with # are skipped. --env wins over a file
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Hard time limit ("none" for no limit) [default: run.timeout in
    /// `bgtask config`, built in: none]
    #[arg(long, value_parser = limit, value_name = "DUR")]
    pub timeout: Option<Limit>,
    /// End the task when it prints nothing for this long ("none" for no
    /// limit) [default: run.idle_timeout, built in: none]
    #[arg(long, value_parser = limit, value_name = "DUR")]
    pub idle_timeout: Option<Limit>,
    /// Cap on output kept on disk (head and most recent output are kept)
    /// [default: run.max_output, built in: 100MiB]
    #[arg(long, value_parser = size, value_name = "SIZE")]
    pub max_output: Option<u64>,
    /// Do not record a completion when the task ends
    #[arg(long)]
    pub no_notify: bool,
    /// Give the task a stdin pipe, held open by its monitor, for `bgtask send`
    #[arg(long, conflicts_with = "pty")]
    pub stdin: bool,
    /// Run the task under a pseudo-terminal (one raw output stream; see
    /// `bgtask send`, `screen`, `resize`)
    #[arg(long)]
    pub pty: bool,
    /// With --pty: the terminal's size, ROWSxCOLS [default: 24x80]
    #[arg(long, requires = "pty", value_parser = crate::interact::pty_size, value_name = "ROWSxCOLS")]
    pub size: Option<bgtask_core::interact::PtySize>,
    /// Wait up to this long for the task to end and print its final state.
    /// If it ended in time, exit with its exit code (124 if it timed out,
    /// 1 if it has none); exit 0 if it is still running
    #[arg(long, value_parser = duration_some, value_name = "DUR")]
    pub wait: Option<u64>,
    /// Return once a line of output matches REGEX (ANSI escapes stripped)
    #[arg(
        long,
        value_name = "REGEX",
        group = "readiness",
        conflicts_with = "wait"
    )]
    pub ready_log: Option<String>,
    /// Return once something listens on 127.0.0.1:PORT (or [::1])
    #[arg(
        long,
        value_name = "PORT",
        group = "readiness",
        conflicts_with = "wait"
    )]
    pub ready_port: Option<u64>,
    /// Return once a GET of this local http URL answers below 500
    #[arg(long, value_name = "URL", group = "readiness", conflicts_with = "wait")]
    pub ready_http: Option<String>,
    /// Give up on readiness after this long (exit 124; the task keeps running)
    #[arg(long, default_value = "2m", value_parser = duration_some, value_name = "DUR")]
    pub ready_timeout: u64,
    /// End the task if it is not ready in time
    #[arg(long)]
    pub kill_if_not_ready: bool,
    #[command(flatten)]
    pub sandbox: crate::sandbox::SandboxArgs,
    /// Where the task runs: local (a monitor on this machine) or slurm (a
    /// batch job; see docs/slurm.md) [default: executor in `bgtask config`,
    /// built in: local]
    #[arg(long, value_name = "ENGINE", value_parser = ["local", "slurm"])]
    pub executor: Option<String>,
    /// Flag passed verbatim to sbatch (repeatable; Slurm tasks only), e.g.
    /// --slurm-arg=--partition=gpu
    #[arg(long = "slurm-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_args: Vec<String>,
    #[command(flatten)]
    pub queue: crate::queue::QueueArgs,
    /// The command, run by bash -c. One argument is a shell command line
    /// (quote it: 'make && ./run'); several are quoted one by one, so they
    /// arrive as given. `--` before it is optional; options after its first
    /// word belong to the command
    // No `allow_hyphen_values`: words after the first are taken as they are
    // anyway (trailing_var_arg), and with it a mistyped option before the
    // command (`run --wiat 5s make`) would run as the command `--wiat`.
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

const ID_HELP: &str = "A task id may be given in full, as any unique prefix of one, with or \
without bg- (e.g. 3f2a or bg-3f2a; prefixes match tasks of every session), or as `last` \
(or `-`) for this session's newest task.";

const WAIT_HELP: &str = "Each task is printed as it ends, with the last lines of its output; \
with several tasks a last line names those that did not complete.\n\n\
Exit code: with one task, its exit code (124 if it timed out, 1 if it has none); with several, \
0 if all completed, else 1; 124 if --timeout passes first (the tasks left are named on \
stderr).\n\n\
A task id may be given in full, as any unique prefix of one, with or without bg- (e.g. 3f2a or \
bg-3f2a; prefixes match tasks of every session), or as `last` (or `-`) for this session's newest \
task.";

const ID_HELP_ACK: &str = "A task id may be given in full, as any unique prefix of one of this \
session's tasks, with or without bg- (e.g. 3f2a or bg-3f2a), or as `last` (or `-`) for this \
session's newest task. A notification id (c:12, n:7; see `bgtask notifications`) acknowledges \
that one notification.";

#[derive(Debug, Args)]
#[command(after_help = ID_HELP)]
pub struct LogsArgs {
    pub task_id: String,
    /// Which stream to print
    #[arg(long, default_value = "all", value_parser = ["stdout", "stderr", "all"])]
    pub stream: String,
    /// Only the last BYTES of each stream
    #[arg(long, value_parser = size, value_name = "BYTES", conflicts_with = "head")]
    pub tail: Option<u64>,
    /// Only the first BYTES of each stream
    #[arg(long, value_parser = size, value_name = "BYTES")]
    pub head: Option<u64>,
    /// Keep printing new output until the task ends; then print a one-line
    /// summary on stderr and exit with the task's exit code (as `wait`)
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// A duration in milliseconds that may be `none` (no limit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<u64>);

fn duration(text: &str) -> Result<Limit, String> {
    parse_duration_ms(text)
        .map(Limit)
        .map_err(|e| e.to_string())
}

/// A task's time limit: a duration or `none`, never 0.
fn limit(text: &str) -> Result<Limit, String> {
    bgtask_core::settings::parse_limit(text)
        .map(Limit)
        .map_err(|e| e.to_string())
}

pub(crate) fn duration_some(text: &str) -> Result<u64, String> {
    duration(text)?
        .0
        .ok_or_else(|| "\"none\" is not allowed here".to_owned())
}

fn size(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.to_string())
}

/// A clap error as the one line bgtask prints for every error: the
/// message, clap's tip if it has one, and the usage. Help and version
/// requests are not errors; `None` for them (clap prints them itself).
pub fn usage_error_line(err: &clap::Error) -> Option<String> {
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        return None;
    }
    let text = err.render().to_string();
    let mut message = String::new();
    let mut usage = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("error: ") {
            message = rest.to_owned();
        } else if let Some(tip) = line.strip_prefix("tip: ") {
            message.push_str("; ");
            message.push_str(tip);
        } else if let Some(rest) = line.strip_prefix("Usage: ") {
            usage = Some(rest.to_owned());
        }
    }
    if message.is_empty() {
        message = "missing subcommand".to_owned();
    }
    if let Some(usage) = usage {
        let command: Vec<&str> = usage
            .split_whitespace()
            .take_while(|w| !w.starts_with(['[', '<', '-']))
            .collect();
        let command = command.join(" ");
        message.push_str(&format!(" (usage: {usage}; see `{command} --help`)"));
    } else {
        message.push_str(" (see --help)");
    }
    Some(message)
}
