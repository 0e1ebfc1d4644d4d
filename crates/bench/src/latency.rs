//! Figures 1 and 2: starting a task, and starting it and seeing its end,
//! against `sh -c true` (the physical floor: one fork, exec and reap) and
//! against pueue's `add` + `wait`.

use std::time::Instant;

use anyhow::{bail, Result};

use bgtask_core::SpawnRequest;

use crate::completion::Server;
use crate::harness::{time_ok, time_sh_true, time_shell_true, Bgtask, SETTLE};
use crate::pueue::Pueue;
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

/// Figure 1: `bgtask run -- true` until the id is printed (the task is
/// recorded before that) against `sh -c true` spawned and reaped.
pub fn start(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let home = bg.home()?;
    let service = home.service()?;
    let mut sh = Series::new("`sh -c true`, spawned and reaped", "ms");
    let mut run = Series::new("`bgtask run -- true` (whole process)", "ms");
    let mut engine = Series::new("`Service::spawn` in-process (engine only)", "ms");
    let mut floor = Series::new("`bgtask --version` (exec of the CLI, no store)", "ms");
    let mut serve = Series::new(
        "background `bash` request to `bgtask serve`, until recorded",
        "ms",
    );
    // Warm-up: creates the store and pages the binary in.
    let id = home.start(&[], "true")?;
    home.run_ok(&["wait", &id])?;
    let mut server = Server::start(&home)?;
    let mut request_id = 100;
    for i in 0..plan.latency_runs {
        for k in 0..5 {
            std::thread::sleep(SETTLE);
            match (i + k) % 5 {
                0 => sh.push(time_sh_true()?),
                3 => floor.push(time_ok(&mut home.cmd(&["--version"]))?.0),
                1 => {
                    let (ms, out) = time_ok(&mut home.cmd(&["run", "--", "true"]))?;
                    run.push(ms);
                    // Let the task end before the next measurement.
                    home.run_ok(&["wait", out.trim()])?;
                }
                4 => {
                    request_id += 2;
                    let params = serde_json::json!({"command": "true", "background": true});
                    let (ms, task) = server.call(request_id, "bash", params)?;
                    serve.push(ms);
                    if !task["task_id"].is_string() {
                        bail!("serve's background bash returned no task: {task}");
                    }
                    let ids = serde_json::json!({"task_ids": [task["task_id"]]});
                    server.call(request_id + 1, "bash_wait", ids)?;
                }
                _ => {
                    let started = Instant::now();
                    let task = service.spawn(&request("true"))?;
                    engine.push(started.elapsed().as_secs_f64() * 1e3);
                    service.wait(&[task.task_id], None)?;
                }
            }
        }
    }
    let checks = vec![
        Check::new(
            "`bgtask run` / `sh -c true` (medians)",
            run.median() / sh.median(),
            "×",
            Target::AtMost(2.0),
        ),
        Check::new(
            "`bgtask run` / `sh -c true` (p99s)",
            run.p99() / sh.p99(),
            "×",
            Target::None,
        ),
        Check::new(
            "`Service::spawn` / `sh -c true` (medians)",
            engine.median() / sh.median(),
            "×",
            Target::None,
        ),
        Check::new(
            "`bgtask --version` / `sh -c true` (medians: the exec floor)",
            floor.median() / sh.median(),
            "×",
            Target::None,
        ),
        Check::new(
            "background `bash` via `serve` / `sh -c true` (medians)",
            serve.median() / sh.median(),
            "×",
            Target::None,
        ),
    ];
    Ok(Section {
        key: "start",
        title: "1. Start latency".into(),
        method: format!(
            "Wall time from spawning the process to reaping it, stdout read to the end. \
             `bgtask run` returns once the task is recorded in the store (owned by its \
             monitor, which starts the shell in the background). The five measurements are interleaved, in rotating \
             order, {} times, with a {} ms pause before each; each task is waited for \
             (unmeasured) before the next measurement. The in-process row calls the library \
             directly, so it leaves out the CLI's own exec and startup. The `serve` row is \
             what an agent plugin sees: a background `bash` request on a running server, \
             from writing the line to reading the reply, which comes once the task is \
             recorded, as `bgtask run` returns.",
            plan.latency_runs,
            SETTLE.as_millis()
        ),
        series: vec![sh, floor, run, engine, serve],
        checks,
        notes: Vec::new(),
    })
}

/// Figure 2: start a task and see its end.
pub fn end_to_end(bg: &Bgtask, plan: &Plan, pueue: Option<&Pueue>) -> Result<Section> {
    let home = bg.home()?;
    let service = home.service()?;
    let mut sh = Series::new("`sh -c true`, spawned and reaped", "ms");
    let mut run = Series::new("`bgtask run --wait 10s -- true` (whole process)", "ms");
    let mut engine = Series::new("`Service::spawn` + `Service::wait` in-process", "ms");
    // bgtask runs every command with bash (agents write bash): the shell's
    // own cost, measured beside the rest.
    let mut bash = Series::new("`bash -c true`, spawned and reaped", "ms");
    let mut pq = Series::new("`pueue add -- true` + `pueue wait` (running pueued)", "ms");
    home.run_ok(&["run", "--wait", "10s", "--", "true"])?;
    if let Some(p) = pueue {
        p.add_and_wait()?; // warm-up
    }
    for i in 0..plan.latency_runs {
        let with_pueue = pueue.filter(|_| i < plan.pueue_runs);
        for k in 0..5 {
            std::thread::sleep(SETTLE);
            match (i + k) % 5 {
                0 => sh.push(time_sh_true()?),
                3 => bash.push(time_shell_true("bash")?),
                1 => {
                    let (ms, out) =
                        time_ok(&mut home.cmd(&["run", "--wait", "10s", "--", "true"]))?;
                    if !out.contains("completed") {
                        bail!("bgtask run --wait did not see the end: {out}");
                    }
                    run.push(ms);
                }
                2 => {
                    let started = Instant::now();
                    let task = service.spawn(&request("true"))?;
                    let outcome =
                        service.wait(std::slice::from_ref(&task.task_id), Some(10_000))?;
                    engine.push(started.elapsed().as_secs_f64() * 1e3);
                    if outcome.timed_out {
                        bail!("in-process wait timed out");
                    }
                }
                _ => {
                    if let Some(p) = with_pueue {
                        pq.push(p.add_and_wait()?);
                    }
                }
            }
        }
    }
    let mut checks = vec![
        Check::new(
            "`bgtask run --wait` / `sh -c true` (medians)",
            run.median() / sh.median(),
            "×",
            Target::AtMost(3.0),
        ),
        Check::new(
            "in-process spawn + wait / `sh -c true` (medians)",
            engine.median() / sh.median(),
            "×",
            Target::None,
        ),
        Check::new(
            "`bash -c true` / `sh -c true` (medians: the shell bgtask runs)",
            bash.median() / sh.median(),
            "×",
            Target::None,
        ),
        Check::new(
            "`bgtask run --wait` / `bash -c true` (medians)",
            run.median() / bash.median(),
            "×",
            Target::None,
        ),
    ];
    let mut notes = Vec::new();
    let mut series = vec![sh, bash, run.clone(), engine];
    if pq.len() > 0 {
        checks.push(Check::new(
            "pueue add + wait / `bgtask run --wait` (medians: how much faster bgtask is)",
            pq.median() / run.median(),
            "×",
            Target::AtLeast(100.0),
        ));
        if let Some(p) = pueue {
            notes.push(format!(
                "pueue: {} with its own pueued (temporary config, runtime and state \
                 directories, unix socket); its add + wait pairs are interleaved with the \
                 first {} iterations.",
                p.version, plan.pueue_runs
            ));
        }
        series.push(pq);
    } else {
        notes.push("pueue was not run (smoke run).".into());
    }
    Ok(Section {
        key: "e2e",
        title: "2. End to end".into(),
        method: format!(
            "Wall time of the whole round trip: start a task running `true` and return once its \
             end is recorded. Interleaved in rotating order, {} iterations, {} ms pause before \
             each measurement.",
            plan.latency_runs,
            SETTLE.as_millis()
        ),
        series,
        checks,
        notes,
    })
}

pub fn request(command: &str) -> SpawnRequest {
    SpawnRequest {
        command: command.into(),
        ..SpawnRequest::default()
    }
}
