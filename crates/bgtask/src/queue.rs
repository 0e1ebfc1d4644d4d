//! Queues (issue 21): `run`'s queue flags, `group`, `restart`, `clean`.
//! The work is in the core (`service/queue.rs`, `store/groups.rs`).

use anyhow::Result;
use clap::{Args, Subcommand};

use bgtask_core::{Config, Launch, QueueRequest, Service, TaskId};

use crate::render;

/// `run`'s queue flags.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Queue group to run in (see `bgtask group`) [default: default, whose
    /// parallelism is max_running]
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Start only after this task completed successfully (repeatable); if
    /// it fails, this task fails without starting
    #[arg(long, value_name = "ID")]
    pub after: Vec<String>,
    /// Start only after this task ended, however it ended (repeatable)
    #[arg(long, value_name = "ID")]
    pub after_any: Vec<String>,
    /// Start no sooner than this long from now (the task waits queued)
    #[arg(long, value_parser = crate::cli::duration_some, value_name = "DUR")]
    pub delay: Option<u64>,
    /// A label shown in list, status, top and notifications
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// Refuse the task when no slot is free instead of queueing it
    #[arg(long, conflicts_with_all = ["after", "after_any", "delay"])]
    pub no_queue: bool,
}

impl QueueArgs {
    /// Whether ids must be resolved (in the store) to build the request.
    pub fn names_tasks(&self) -> bool {
        !self.after.is_empty() || !self.after_any.is_empty()
    }

    /// The core's request; `service` resolves the dependencies' ids (a
    /// prefix, `last`) and is needed only when [`QueueArgs::names_tasks`].
    pub fn request(&self, service: Option<&Service>) -> Result<QueueRequest> {
        let resolve = |ids: &[String]| -> Result<Vec<TaskId>> {
            match service {
                Some(service) => ids.iter().map(|id| Ok(service.resolve_id(id)?)).collect(),
                None => Ok(Vec::new()),
            }
        };
        Ok(QueueRequest {
            group: self.group.clone(),
            label: self.label.clone(),
            after: resolve(&self.after)?,
            after_any: resolve(&self.after_any)?,
            delay_ms: self.delay,
            no_queue: self.no_queue,
        })
    }
}

/// `bgtask group …`.
#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a group (parallel: how many of its tasks run at once)
    Add {
        name: String,
        /// [default: max_running]
        #[arg(long, value_name = "N")]
        parallel: Option<u32>,
    },
    /// Change a group's parallelism (a raised one starts queued tasks now)
    Set {
        name: String,
        #[arg(long, value_name = "N", required = true)]
        parallel: u32,
    },
    /// List the groups with their running and queued tasks
    List,
    /// Remove a group that has no live task
    Rm { name: String },
}

/// `bgtask restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The task to run again (a new task: same command, working directory,
    /// limits, group and label)
    pub task_id: String,
    /// Run this command line instead of the old one
    #[arg(long, value_name = "CMD")]
    pub edit_command: Option<String>,
    /// Environment variable for the new task (repeatable), as for `run`.
    /// `--env` values are never stored: every key the old task had must be
    /// given again
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
}

pub fn group(service: &Service, command: GroupCommand, json: bool) -> Result<u8> {
    match command {
        GroupCommand::Add { name, parallel } => service.add_group(&name, parallel)?,
        GroupCommand::Set { name, parallel } => service.set_group_parallel(&name, parallel)?,
        GroupCommand::Rm { name } => service.remove_group(&name)?,
        GroupCommand::List => {
            let groups = service.groups()?;
            if json {
                render::json(&groups)?;
            } else {
                let limit = service.config().max_running;
                render::line(&format!(
                    "{:<20} {:>8} {:>8} {:>8}  STATE",
                    "GROUP", "PARALLEL", "RUNNING", "QUEUED"
                ))?;
                for g in groups {
                    let parallel = g.parallel.unwrap_or(limit);
                    let state = if g.paused { "paused" } else { "active" };
                    render::line(&format!(
                        "{:<20} {parallel:>8} {:>8} {:>8}  {state}",
                        g.name, g.running, g.queued
                    ))?;
                }
            }
        }
    }
    Ok(0)
}

pub fn restart(service: &Service, config: &Config, args: RestartArgs, json: bool) -> Result<u8> {
    let id = service.resolve_id(&args.task_id)?;
    let env = crate::env::task_env(&[] as &[std::path::PathBuf], &args.env)?;
    let restart = service.restart_request(&id, args.edit_command, env)?;
    if !restart.missing_env.is_empty() {
        return Err(bgtask_core::Error::InvalidArgument(format!(
            "task {id} was started with --env {}; values are never stored: give them again with --env KEY=VALUE (or --env KEY for this shell's value)",
            restart.missing_env.join(", ")
        ))
        .into());
    }
    let launch = Launch::start(config, &restart.request)?;
    let task = service.record(launch)?;
    if json {
        render::json(&task)?;
    } else {
        render::line(task.task_id.as_str())?;
    }
    Ok(0)
}

pub fn clean(service: &Service, group: Option<&str>, json: bool) -> Result<u8> {
    let removed = service.clean(group)?;
    render::gc(&bgtask_core::GcReport { removed }, json)?;
    Ok(0)
}
