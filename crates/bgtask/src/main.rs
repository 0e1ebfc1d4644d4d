//! The `bgtask` binary: parses the command line, sets up logging, runs the
//! command and maps its error to an exit code. Run with the hidden first
//! argument `__monitor` it becomes a task's monitor instead.

// The entry point is our own `main` (below), not std's runtime start-up.
// (So the binary has no unit-test harness: `test = false` in Cargo.toml.)
#![no_main]

mod cli;
mod commands;
mod env;
mod hook;
mod interact;
mod mcp;
mod notices;
mod pause;
mod queue;
mod render;
mod sandbox;
mod serve;
mod setup;
mod top;
mod views;

use bgtask_core::monitor::{self, MONITOR_ARG};

/// Exit code for bad usage (clap uses the same).
const EXIT_USAGE: u8 = 2;
/// Exit code for an unknown task id.
const EXIT_UNKNOWN_TASK: u8 = 3;
/// Exit code when the task's status does not allow the request (a pause
/// of a task that is not running, a resume of one that is not paused).
const EXIT_INVALID_STATE: u8 = 4;
/// Exit code when a wait ran out (as timeout(1) uses).
const EXIT_TIMEOUT: u8 = 124;
/// No queue group of that name (issue 21).
const EXIT_UNKNOWN_GROUP: u8 = 5;
/// The group exists already, or still has tasks (issue 21).
const EXIT_GROUP_IN_USE: u8 = 6;

/// The process entry point, called by the C library.
///
/// std's own start-up (`fn main`) first asks the C library where the main
/// thread's stack is, to install a stack-overflow handler: glibc answers by
/// reading and parsing `/proc/self/maps`, about 60 µs of a command's 1 ms
/// and as much again in every monitor (docs/BENCHMARKS.md, "Fourth round").
/// bgtask does without that handler (an overflow is then a plain SIGSEGV)
/// and does the two other things std's start-up does itself.
#[no_mangle]
#[expect(
    clippy::not_unsafe_ptr_arg_deref,
    reason = "only the C library calls main, with argc valid arguments"
)]
pub extern "C" fn main(
    argc: std::ffi::c_int,
    argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    // SAFETY: the C library passes argc valid NUL-terminated strings.
    let args = unsafe { args_from(argc, argv) };
    // SAFETY: as above; the strings are the process's own writable memory.
    unsafe { hide_env_values(argc, argv) };
    // A closed stdin, stdout or stderr would be reused by the next open:
    // the database could become fd 1, and output would be written into it.
    for fd in 0..=2 {
        // SAFETY: plain system calls on file descriptor numbers.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1 {
                libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            }
        }
    }
    // A closed pipe is an error to report (EPIPE), not a silent death.
    // SAFETY: setting a signal's disposition to "ignore".
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Runs std's clean-up too: stdout is flushed.
    std::process::exit(i32::from(run(args)))
}

/// The command line as the C library passed it. std's `args_os` is not
/// used: without std's start-up only glibc hands std the arguments, and
/// musl does not.
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings.
unsafe fn args_from(
    argc: std::ffi::c_int,
    argv: *const *const std::ffi::c_char,
) -> Vec<std::ffi::OsString> {
    use std::os::unix::ffi::OsStrExt;
    (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the caller's promise.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsStr::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect()
}

/// Blanks the values of `--env KEY=VALUE` (and `--env=KEY=VALUE`) in the
/// process's own argument memory, which `/proc/PID/cmdline` shows to every
/// user for as long as the process runs (`run --wait` may run for hours).
/// The arguments were copied before. Only options before `--` are
/// touched: what follows is the task's command line.
///
/// # Safety
/// `argv` must hold `argc` valid, writable, NUL-terminated strings.
unsafe fn hide_env_values(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) {
    let mut value_follows = false;
    for i in 1..usize::try_from(argc).unwrap_or(0) {
        // SAFETY: the caller's promise: a valid string of the process's own
        // argument area, written only within its length (never its NUL).
        let arg = unsafe {
            let ptr = (*argv.add(i)).cast_mut();
            std::slice::from_raw_parts_mut(ptr.cast::<u8>(), libc::strlen(ptr))
        };
        if arg == b"--" {
            return;
        }
        let pair_start = if value_follows {
            Some(0)
        } else if arg.starts_with(b"--env=") {
            Some("--env=".len())
        } else {
            None
        };
        value_follows = arg == b"--env";
        if let Some(start) = pair_start {
            let pair = &mut arg[start..];
            if let Some(eq) = pair.iter().position(|b| *b == b'=') {
                pair[eq + 1..].fill(0);
            }
        }
    }
}

fn run(args: Vec<std::ffi::OsString>) -> u8 {
    if args.get(1).is_some_and(|a| a == MONITOR_ARG) {
        return run_monitor(&args[2..]);
    }
    // The Slurm watcher and the wrapper inside a job (bgtask_core::slurm).
    if let Some(code) = bgtask_core::slurm::hidden_mode(&args) {
        return code;
    }
    // Claude Code reads a hook's exit 2 as "wake the model with stderr":
    // a misconfigured `bgtask hook` fails as any other error (1).
    let hook = args.get(1).is_some_and(|a| a == "hook");
    let cli = match cli::Cli::from_command_line(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = usage_error(&err);
            return if hook && code == EXIT_USAGE { 1 } else { code };
        }
    };
    // Setting up the subscriber costs about 0.1 ms of a 2 ms command; the
    // short commands log nothing unless asked to.
    if matches!(cli.command, cli::Command::Serve | cli::Command::Mcp)
        || std::env::var_os("BGTASK_LOG").is_some()
    {
        init_logging();
    }
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return 0;
            }
            let mut line = one_line(&err);
            if core_error(&err).is_some_and(bgtask_core::Error::is_damaged_store) {
                line.push_str(" (run `bgtask doctor` to check and repair the store)");
            }
            eprintln!("bgtask: {}", render::printable(&line, false));
            exit_code_for(&err)
        }
    }
}

/// Prints a command-line error as one line (help and version as clap
/// does) and returns the exit code.
fn usage_error(err: &clap::Error) -> u8 {
    match cli::usage_error_line(err) {
        Some(line) => {
            eprintln!("bgtask: {line}");
            EXIT_USAGE
        }
        None => {
            let _ = err.print();
            0
        }
    }
}

/// `__monitor HOME TASK_ID CWD COMMAND [io=IO] [sandbox=POLICY]`, as the
/// starter passes them. IO: an interactive task's `stdin` or `pty
/// ROWSxCOLS` (issue 18); POLICY: the confinement policy as JSON (issue
/// 22). Both are needed before the shell starts, so before the store is
/// open.
fn run_monitor(args: &[std::ffi::OsString]) -> u8 {
    let (Some([home, id, cwd, command]), options) = (
        args.get(..4).and_then(|a| <&[_; 4]>::try_from(a).ok()),
        args.get(4..).unwrap_or_default(),
    ) else {
        eprintln!("bgtask: {MONITOR_ARG} is internal");
        return EXIT_USAGE;
    };
    let mut io = None;
    let mut sandbox = None;
    for option in options {
        match option.to_str().and_then(|o| o.split_once('=')) {
            Some(("io", value)) => io = Some(value),
            Some(("sandbox", value)) => match bgtask_core::sandbox::Policy::from_arg(value) {
                Ok(policy) => sandbox = Some(policy),
                Err(_) => {
                    // Never run unconfined what was asked to be confined.
                    eprintln!("bgtask: {MONITOR_ARG}: invalid sandbox policy");
                    return EXIT_USAGE;
                }
            },
            _ => {
                eprintln!("bgtask: {MONITOR_ARG}: unknown option");
                return EXIT_USAGE;
            }
        }
    }
    let interaction = bgtask_core::interact::Interaction::from_stored(io);
    let Some(id) = id.to_str().and_then(|s| s.parse().ok()) else {
        eprintln!("bgtask: {MONITOR_ARG}: invalid task id");
        return EXIT_USAGE;
    };
    let Some(command) = command.to_str() else {
        eprintln!("bgtask: {MONITOR_ARG}: the command is not UTF-8");
        return EXIT_USAGE;
    };
    let task = monitor::TaskCommand {
        cwd: std::path::Path::new(cwd),
        command,
        interaction,
        sandbox,
    };
    monitor::run(std::path::Path::new(home), &id, task) as u8
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BGTASK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The error and its causes on one line, without repeating text a cause
/// already carries.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// The library's error in `err`'s chain, if there is one.
fn core_error(err: &anyhow::Error) -> Option<&bgtask_core::Error> {
    err.chain().find_map(|cause| cause.downcast_ref())
}

/// The exit code for an error: the one place that chooses it.
fn exit_code_for(err: &anyhow::Error) -> u8 {
    use bgtask_core::ErrorKind;
    let Some(e) = core_error(err) else {
        return 1;
    };
    match (e, e.kind()) {
        // A malformed id names no task, as an unknown one does.
        (bgtask_core::Error::InvalidTaskId(_), _)
        | (_, ErrorKind::TaskNotFound | ErrorKind::AmbiguousTaskId) => EXIT_UNKNOWN_TASK,
        (_, ErrorKind::InvalidArgument | ErrorKind::InvalidCwd) => EXIT_USAGE,
        (_, ErrorKind::Timeout) => EXIT_TIMEOUT,
        (_, ErrorKind::InvalidState) => EXIT_INVALID_STATE,
        (_, ErrorKind::GroupNotFound) => EXIT_UNKNOWN_GROUP,
        (_, ErrorKind::GroupInUse) => EXIT_GROUP_IN_USE,
        (
            _,
            ErrorKind::LimitExceeded
            | ErrorKind::SpawnFailed
            | ErrorKind::StoreError
            | ErrorKind::Unreachable
            | ErrorKind::NotInteractive,
        ) => 1,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        let io_kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(|e| e.io_error_kind())
            });
        io_kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
