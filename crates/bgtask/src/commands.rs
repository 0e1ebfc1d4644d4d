//! One function per subcommand. Each returns the process exit code.

use std::io::Write;

use anyhow::{Context, Result};

use bgtask_core::settings::{Flags, Settings, Source};
use bgtask_core::{
    Config, Launch, ListRequest, OutputFile, Service, SpawnRequest, Status, StreamChoice, TaskId,
};

use bgtask_core::interact::{Interaction, PtySize};

use crate::cli::{Cli, Command, Generate, LogsArgs, RunArgs};
use crate::interact;
use crate::render;

pub fn run(cli: Cli) -> Result<u8> {
    if let Command::Generate(what) = cli.command {
        // Needs no home or store: it only describes the command line.
        return generate(what);
    }
    let settings = settings(&cli)?;
    if let Command::Config = cli.command {
        render::settings(&settings, cli.global.json)?;
        return Ok(0);
    }
    if let Command::Doctor { repair } = cli.command {
        // Runs without opening the store normally: it must work on a
        // store that cannot be opened.
        let report = bgtask_core::doctor(&settings.home.value, repair);
        render::doctor(&report, cli.global.json)?;
        return Ok(if report.is_healthy() { 0 } else { 1 });
    }
    let json = cli.global.json;
    let config = config(&cli, &settings)?;
    if let Command::Hook(args) = cli.command {
        let session_given = settings.session.source != Source::Default;
        return crate::hook::run(args, config, session_given);
    }
    if let Command::Setup(args) = cli.command {
        return crate::setup::run(&args);
    }
    if let Command::Run(args) = cli.command {
        return run_task(config, *args, json);
    }
    // Only the servers start tasks here: every other command works on the
    // tasks a store already has, and without a store creates none.
    let service = if matches!(
        cli.command,
        Command::Serve | Command::Mcp | Command::Group(_) | Command::Restart(_)
    ) {
        open(config.clone())?
    } else {
        auto_gc(Service::open_existing(config.clone())?)
    };
    match cli.command {
        Command::Run(_) => unreachable!("handled above"),
        Command::Status { task_id, tail, raw } => {
            let status = service.status(&parse_id(&service, &task_id)?, tail)?;
            render::status(&status, json, raw)?;
            Ok(0)
        }
        Command::List {
            all_sessions,
            status,
            watch,
        } => {
            let status = status.map(|s| s.parse::<Status>()).transpose()?;
            let request = ListRequest {
                all_sessions,
                status,
                group: None,
            };
            crate::views::list(&service, &request, json, watch)
        }
        Command::Logs(args) => logs(&service, args),
        Command::Send(args) => {
            interact::send(&service, &parse_id(&service, &args.task_id)?, args, json)
        }
        Command::Signal(args) => {
            interact::signal(&service, &parse_id(&service, &args.task_id)?, &args, json)
        }
        Command::Screen(args) => {
            interact::screen(&service, &parse_id(&service, &args.task_id)?, json)
        }
        Command::Resize(args) => interact::resize(
            &service,
            &parse_id(&service, &args.task_id)?,
            args.size,
            json,
        ),
        Command::Kill {
            task_ids,
            all,
            all_sessions,
            grace,
        } => {
            // Every id is resolved before any task is touched, so a bad one
            // changes nothing.
            let ids = if all {
                service.live_ids(all_sessions)?
            } else {
                task_ids
                    .iter()
                    .map(|s| parse_id(&service, s))
                    .collect::<Result<Vec<_>>>()?
            };
            // One named task prints one object, as before several were accepted.
            let one_named = !all && task_ids.len() == 1;
            kill(&service, &ids, grace, json, one_named)
        }
        Command::Pause(args) => match &args.group {
            Some(group) => crate::pause::pause_group(&service, group, json),
            None => crate::pause::pause(&service, &parse_ids(&service, &args.task_ids)?, json),
        },
        Command::Resume(args) => match &args.group {
            Some(group) => crate::pause::resume_group(&service, group, json),
            None => crate::pause::resume(&service, &parse_ids(&service, &args.task_ids)?, json),
        },
        Command::Wait {
            task_ids,
            timeout,
            raw,
            ready,
        } => {
            let ids = task_ids
                .iter()
                .map(|s| parse_id(&service, s))
                .collect::<Result<Vec<_>>>()?;
            if ready {
                return crate::notices::wait_ready(&service, &ids, timeout.0, json);
            }
            crate::views::wait(&service, &ids, timeout.0, json, raw)
        }
        Command::Completions { raw } => {
            render::completions(&service.completions()?, json, raw)?;
            Ok(0)
        }
        Command::Top { all_sessions } => crate::top::run(service, all_sessions),
        Command::Watch(args) => crate::notices::watch(&service, args, json),
        Command::Unwatch { watch_id } => crate::notices::unwatch(&service, &watch_id, json),
        Command::Notifications => crate::notices::notifications(&service, json),
        Command::Ack { task_ids, all } => {
            if let Some((acked, named)) = crate::notices::ack_ids(&service, &task_ids)? {
                render::acked(acked, named, json)?;
                return Ok(0);
            }
            // Only this session's completions can be acknowledged, so a
            // prefix is matched among this session's tasks alone.
            let ids = if all {
                let mut ids: Vec<TaskId> = service
                    .pending_notifications()?
                    .into_iter()
                    .map(|n| n.task_id)
                    .collect();
                let mut seen = std::collections::HashSet::new();
                ids.retain(|id| seen.insert(id.clone()));
                ids
            } else {
                task_ids
                    .iter()
                    .map(|s| Ok(service.resolve_id_in_session(s)?))
                    .collect::<Result<Vec<_>>>()?
            };
            let acked = service.ack(&ids)?;
            render::acked(acked, ids.len(), json)?;
            Ok(0)
        }
        Command::Serve => crate::serve::run(service.config().clone()),
        Command::Doctor { .. } => Ok(0), // handled above
        Command::Generate(_) | Command::Config | Command::Hook(_) | Command::Setup(_) => {
            unreachable!("handled above")
        }
        Command::Mcp => {
            let mut config = service.config().clone();
            if settings.session.source == Source::Default {
                config.session = crate::mcp::default_session()?;
            }
            crate::mcp::run(config)
        }
        Command::Group(command) => crate::queue::group(&service, command, json),
        Command::Restart(args) => crate::queue::restart(&service, &config, args, json),
        Command::Clean { group } => crate::queue::clean(&service, group.as_deref(), json),
        Command::Gc { older_than } => {
            let report = service.gc(older_than)?;
            render::gc(&report, json)?;
            Ok(0)
        }
    }
}

/// Opens the store; every few hours also collects old finished tasks.
fn open(config: Config) -> Result<Service> {
    Ok(auto_gc(Service::open(config)?))
}

fn auto_gc(service: Service) -> Service {
    if let Err(e) = service.auto_gc() {
        eprintln!("bgtask: warning: automatic gc failed: {e}");
    }
    service
}

/// The effective settings: defaults, config file, environment, flags.
fn settings(cli: &Cli) -> Result<Settings> {
    Ok(Settings::load(&Flags {
        home: cli.global.home.clone(),
        session: cli.global.session.clone(),
    })?)
}

/// The store configuration for this command: the servers' tasks get the
/// agents' defaults, everything else a person's.
fn config(cli: &Cli, settings: &Settings) -> Result<Config> {
    let tasks = match cli.command {
        Command::Serve | Command::Mcp | Command::Hook(_) => &settings.agent,
        _ => &settings.run,
    };
    let monitor_exe = std::env::current_exe().context("cannot locate the bgtask executable")?;
    Ok(settings.config(tasks, monitor_exe))
}

/// A task id as a person types it: full, a unique prefix, or `last`.
fn parse_id(service: &Service, text: &str) -> Result<TaskId> {
    Ok(service.resolve_id(text)?)
}

/// Every id resolved before any task is touched, so a bad one changes
/// nothing.
fn parse_ids(service: &Service, texts: &[String]) -> Result<Vec<TaskId>> {
    texts.iter().map(|s| parse_id(service, s)).collect()
}

/// The tasks of `results` and its first error; the other errors are
/// printed on stderr, a line each, as they come (the first one decides the
/// command's exit code).
pub(crate) fn split_results(
    results: Vec<bgtask_core::Result<bgtask_core::Task>>,
) -> (Vec<bgtask_core::Task>, Option<bgtask_core::Error>) {
    let mut tasks = Vec::new();
    let mut first_error = None;
    for result in results {
        match result {
            Ok(task) => tasks.push(task),
            Err(e) if first_error.is_none() => first_error = Some(e),
            Err(e) => eprintln!("bgtask: {e}"),
        }
    }
    (tasks, first_error)
}

/// Kills the tasks at once and prints each one's final state (with
/// `json`, an array unless `one_named`).
fn kill(service: &Service, ids: &[TaskId], grace: u64, json: bool, one_named: bool) -> Result<u8> {
    // Each kill waits for its task's end: in parallel, one slow task does
    // not hold back the others' signals.
    let results: Vec<bgtask_core::Result<bgtask_core::Task>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| scope.spawn(move || service.kill(id, grace)))
            .collect();
        handles
            .into_iter()
            .zip(ids)
            .map(|(h, id)| {
                h.join().unwrap_or_else(|_| {
                    Err(bgtask_core::Error::InvalidArgument(format!(
                        "killing {id} failed unexpectedly"
                    )))
                })
            })
            .collect()
    });
    let (tasks, first_error) = split_results(results);
    if json && one_named {
        if let Some(task) = tasks.first() {
            render::task(task, true)?;
        }
    } else if json {
        render::json(&tasks)?;
    } else {
        for task in &tasks {
            render::task(task, false)?;
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}

fn run_task(config: Config, args: RunArgs, json: bool) -> Result<u8> {
    let ready = crate::notices::ready_spec(&args)?;
    // Dependencies are named as people type ids: resolved in the store,
    // opened first only then (issue 21).
    let deps_service = if args.queue.names_tasks() {
        Some(open(config.clone())?)
    } else {
        None
    };
    let request = SpawnRequest {
        command: command_line(&args.command),
        cwd: args.cwd,
        env: crate::env::task_env(&args.env_file, &args.env)?,
        timeout_ms: args.timeout.map_or(config.tasks.timeout_ms, |l| l.0),
        idle_timeout_ms: args
            .idle_timeout
            .map_or(config.tasks.idle_timeout_ms, |l| l.0),
        max_output: args.max_output.unwrap_or(config.tasks.max_output),
        notify: !args.no_notify,
        ready,
        interaction: match (args.pty, args.stdin) {
            (true, _) => Interaction::Pty(args.size.unwrap_or(PtySize::DEFAULT)),
            (false, true) => Interaction::Stdin,
            (false, false) => Interaction::None,
        },
        sandbox: args.sandbox.request(),
        executor: args.executor.as_deref().map(str::parse).transpose()?,
        slurm_args: args.slurm_args,
        queue: args.queue.request(deps_service.as_ref())?,
    };
    // The store is opened while the monitor's exec runs: the monitor's
    // identity cannot be read before that exec has finished anyway.
    let launch = Launch::start(&config, &request)?;
    let service = match deps_service {
        Some(service) => service,
        None => open(config)?,
    };
    if request.ready.is_some() {
        let (task, wake) = service.record_waking(launch)?;
        return crate::notices::run_ready(&service, task, wake, json);
    }
    let task = service.record(launch)?;
    let service = &service;
    let Some(wait_ms) = args.wait else {
        if json {
            render::json(&task)?;
        } else {
            render::line(task.task_id.as_str())?;
        }
        return Ok(0);
    };
    let outcome = service.wait(std::slice::from_ref(&task.task_id), Some(wait_ms))?;
    let task = outcome.tasks.into_iter().next().unwrap_or(task);
    let task = service.started(task)?;
    if json {
        render::json(&task)?;
    } else if task.is_terminal() {
        render::task(&task, false)?;
    } else {
        render::line(task.task_id.as_str())?;
    }
    // Ended within the wait: its exit code, as `wait` gives it; still
    // running: 0, as without --wait.
    Ok(if task.is_terminal() {
        wait_exit_code(std::slice::from_ref(&task))
    } else {
        0
    })
}

/// The shell command line `run` stores and hands to `bash -c`: one word is
/// a command line as written; several are quoted one by one so the program
/// gets exactly these arguments (joining them unquoted let the shell
/// re-split `"a b"` and choke on `it's`).
fn command_line(words: &[String]) -> String {
    match words {
        [line] => line.clone(),
        _ => words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// POSIX shell quoting: a word of only safe characters stays as it is (so
/// stored commands stay readable); anything else goes in single quotes,
/// inside which nothing is special except `'` itself, written `'\''`.
/// `=` and `%` are not safe (`A=b` first would be an assignment, `%1` a job)
/// and neither are reserved words (`if` first would start a compound).
fn shell_quote(word: &str) -> String {
    const RESERVED: &[&str] = &[
        "if", "then", "else", "elif", "fi", "do", "done", "case", "esac", "while", "until", "for",
        "in", "function", "select", "time", "coproc",
    ];
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-+/.,:@".contains(c);
    if !word.is_empty() && word.chars().all(safe) && !RESERVED.contains(&word) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn logs(service: &Service, args: LogsArgs) -> Result<u8> {
    let id = parse_id(service, &args.task_id)?;
    if args.follow && args.head.is_some() {
        anyhow::bail!(bgtask_core::Error::InvalidArgument(
            "--follow cannot be combined with --head".into()
        ));
    }
    let stream: StreamChoice = args.stream.parse()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.follow {
        // Follow prints the tail (or everything) so far, then new output.
        service.follow(&id, stream, args.tail, &mut out)?;
        out.flush()?;
        return crate::views::follow_summary(service, &id);
    }
    let files = match stream {
        StreamChoice::Stdout => vec![OutputFile::Stdout],
        StreamChoice::Stderr => vec![OutputFile::Stderr],
        StreamChoice::All => vec![OutputFile::Stdout, OutputFile::Stderr],
    };
    for file in &files {
        let chunk = match (args.tail, args.head) {
            (Some(n), _) => service.read_tail(&id, *file, n)?,
            (None, Some(n)) => service.read_range(&id, *file, 0, n)?,
            (None, None) => {
                copy_all(service, &id, *file, &mut out)?;
                continue;
            }
        };
        out.write_all(&chunk.data)?;
    }
    out.flush()?;
    Ok(0)
}

fn copy_all(service: &Service, id: &TaskId, file: OutputFile, out: &mut dyn Write) -> Result<()> {
    let mut offset = 0;
    loop {
        let chunk = service.read_range(id, file, offset, 1 << 20)?;
        if chunk.data.is_empty() {
            return Ok(());
        }
        out.write_all(&chunk.data)?;
        offset += chunk.data.len() as u64;
    }
}

/// For one task, its exit code; for several, 0 if all completed, else 1.
pub fn wait_exit_code(tasks: &[bgtask_core::Task]) -> u8 {
    match tasks {
        [task] => match task.exit_code {
            Some(code) => code.clamp(0, 255) as u8,
            None if task.status == Status::Completed => 0,
            None => 1,
        },
        _ if tasks.iter().all(|t| t.status == Status::Completed) => 0,
        _ => 1,
    }
}

/// `bgtask generate completions SHELL` and `bgtask generate man`, both
/// from the clap definition, so they cannot drift from the real flags.
fn generate(what: Generate) -> Result<u8> {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut out = Vec::new();
    match what {
        Generate::Completions { shell } => {
            clap_complete::generate(shell, &mut command, "bgtask", &mut out);
        }
        Generate::Man => clap_mangen::Man::new(command)
            .render(&mut out)
            .context("rendering the man page")?,
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(0)
}
