//! `bgtask pause` and `bgtask resume` (issue 21): the flags and the
//! output; the work is the core's (`Service::pause_tasks`,
//! `resume_tasks`).

use anyhow::Result;
use clap::Args;

use bgtask_core::{Service, Task, TaskId};

use crate::render;

const PAUSE_HELP: &str = "A paused task's whole process tree is stopped (the cgroup freezer \
where the task has a cgroup, else SIGSTOP to each of its processes) and its status is `paused` \
until `bgtask resume`. Timeouts do not run while a task is paused: its --timeout, \
--idle-timeout and readiness timeout end later by the time it was paused. A paused task still \
holds its place under the running limit; `kill` ends it as any other.\n\nExit codes: 4 when a \
task is not running (starting, already paused, ended), 2 for a task of executor slurm.";

const RESUME_HELP: &str = "Exit codes: 4 when a task is not paused, 2 for a task of executor \
slurm.";

/// `bgtask pause`.
#[derive(Debug, Args)]
#[command(after_help = PAUSE_HELP)]
pub struct PauseArgs {
    /// Tasks to pause: ids, unique prefixes or `last`
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    pub task_ids: Vec<String>,
    /// Pause a queue group: it starts nothing new, and its running tasks
    /// are paused
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

/// `bgtask resume`.
#[derive(Debug, Args)]
#[command(after_help = RESUME_HELP)]
pub struct ResumeArgs {
    /// Tasks to resume: ids, unique prefixes or `last`
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    pub task_ids: Vec<String>,
    /// Resume a queue group: its paused tasks run again and it starts
    /// what is eligible
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
}

pub fn pause(service: &Service, ids: &[TaskId], json: bool) -> Result<u8> {
    report(
        service.pause_tasks(ids),
        json,
        false,
        "paused (its timeouts wait)",
    )
}

pub fn resume(service: &Service, ids: &[TaskId], json: bool) -> Result<u8> {
    report(service.resume_tasks(ids), json, false, "resumed")
}

/// `pause --group NAME`: the group starts nothing new; its running tasks
/// are paused and listed (always as a list: a group may have none).
pub fn pause_group(service: &Service, name: &str, json: bool) -> Result<u8> {
    let results = service.pause_group(name)?;
    if !json {
        render::line(&format!("group {name} paused: it starts nothing new"))?;
    }
    report(results, json, true, "paused (its timeouts wait)")
}

/// `resume --group NAME`.
pub fn resume_group(service: &Service, name: &str, json: bool) -> Result<u8> {
    let results = service.resume_group(name)?;
    if !json {
        render::line(&format!("group {name} resumed"))?;
    }
    report(results, json, true, "resumed")
}

/// Prints each task that was paused or resumed (with `json`, one object
/// for one named task, else an array), then each error on a line of its
/// own; the first error decides the exit code.
fn report(
    results: Vec<bgtask_core::Result<Task>>,
    json: bool,
    as_list: bool,
    done: &str,
) -> Result<u8> {
    let one = results.len() == 1 && !as_list;
    let (tasks, first_error) = crate::commands::split_results(results);
    if json && one {
        if let Some(task) = tasks.first() {
            render::json(task)?;
        }
    } else if json {
        render::json(&tasks)?;
    } else {
        for task in &tasks {
            render::line(&format!("{} {done}", task.task_id))?;
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(0),
    }
}
