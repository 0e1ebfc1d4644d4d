//! Figure: agents' hooks (`bgtask hook AGENT`).
//!
//! (a) The inject hook with nothing pending, as a whole process: it runs on
//!     every prompt and every tool call of an agent, so it must cost about
//!     what starting any small program costs. Timed from just before the
//!     spawn to the reaping, its event written on stdin, against
//!     `sh -c true` measured interleaved.
//! (b) A task's end to the wake hook's exit: Claude Code's Stop hook waits
//!     (idle, in poll) for the session's next notification; the task execs
//!     `bench stamp` as its last act, and the latency runs to the moment
//!     the hook is reaped, after it printed the notification.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::clock::{mono_ns, ms_between};
use crate::completion::Gate;
use crate::harness::{self, wait_until_polling, Bgtask, Home, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

/// A hook event as Claude Code sends it.
fn event(name: &str, home: &Home) -> String {
    serde_json::json!({
        "hook_event_name": name,
        "cwd": home.scratch(),
        "session_id": "bench",
        "stop_hook_active": false,
    })
    .to_string()
}

/// `bgtask hook claude-code`, the event written on its stdin.
fn hook(home: &Home, input: &str) -> Result<std::process::Child> {
    let mut cmd: Command = home.cmd(&["hook", "claude-code"]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("CLAUDE_CODE_ENTRYPOINT");
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().context("no stdin")?;
    stdin.write_all(input.as_bytes())?;
    Ok(child)
}

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let home = bg.home()?;
    // A store in use: a few finished tasks, all acknowledged.
    for _ in 0..5 {
        home.run_ok(&["run", "--wait", "10s", "--", "true"])?;
    }
    home.run_ok(&["ack", "--all"])?;
    let runs = plan.command_runs.max(5) * 4;
    let prompt = event("UserPromptSubmit", &home);
    // In an agent's session `bgtask mcp` runs all along, so the database
    // is open in another process: SQLite's shared WAL index is valid, and a
    // hook does not rebuild it from the WAL. Measured that way first, then
    // with no other process holding the store (the first connection then
    // rebuilds the index: the cost of a store nobody has open).
    let mut server = home.cmd(&["mcp"]);
    server
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = server.spawn()?;
    let opened = wait_for_open(server.id(), &home.path().join("bgtask.db-shm"));
    let measured = opened.and_then(|()| {
        inject_runs(
            &home,
            &prompt,
            runs,
            "(a) inject hook, nothing pending, `bgtask mcp` open (whole process)",
        )
    });
    let _ = server.kill();
    let _ = server.wait();
    let (inject, sh) = measured?;
    let (cold, cold_sh) = inject_runs(
        &home,
        &prompt,
        runs,
        "(a') inject hook, nothing pending, no other process has the store open",
    )?;

    let gate = Gate::new(&home)?;
    let mut wake = Series::new(
        "(b) task exit → wake hook exits with the notification",
        "ms",
    );
    let stop = event("Stop", &home);
    for _ in 0..plan.completion_runs {
        let id = home.start(&[], &gate.command())?;
        std::thread::sleep(SETTLE);
        let child = hook(&home, &stop)?;
        wait_until_polling(child.id(), None)?;
        gate.release()?;
        let out = child.wait_with_output()?;
        let ended = mono_ns();
        if out.status.code() != Some(2) || !String::from_utf8_lossy(&out.stderr).contains(&id) {
            bail!("the wake hook answered {out:?}");
        }
        wake.push(ms_between(gate.stamp()?, ended));
    }
    let checks = vec![
        Check::new(
            "(a) inject hook p50",
            inject.median(),
            "ms",
            Target::AtMost(2.0),
        ),
        Check::new(
            "(b) wake hook p50",
            wake.median(),
            "ms",
            Target::AtMost(10.0),
        ),
        Check::new("(b) wake hook p99", wake.p99(), "ms", Target::None),
        Check::new(
            "(a') inject hook p50, store not open elsewhere",
            cold.median(),
            "ms",
            Target::None,
        ),
    ];
    Ok(Section {
        key: "hooks",
        title: "Agents' hooks".into(),
        method: format!(
            "(a) {runs} runs of `bgtask hook claude-code` fed a UserPromptSubmit event in a \
             store with finished, acknowledged tasks, timed from before the spawn to the \
             reaping, interleaved with `sh -c true`, while `bgtask mcp` has the store open \
             (as in an agent's session); (a') the same with no other process holding the \
             store. (b) {} tasks: the Stop hook is started \
             and asleep in poll(2) before the task is released; the task execs `bench \
             stamp` as its last act; the latency runs to the hook's reaping (it has printed \
             the notification and settled it).",
            plan.completion_runs
        ),
        series: vec![inject, sh, cold, cold_sh, wake],
        checks,
        notes: Vec::new(),
    })
}

/// `runs` inject hooks with nothing pending, each after a `sh -c true`.
fn inject_runs(home: &Home, prompt: &str, runs: usize, label: &str) -> Result<(Series, Series)> {
    let mut inject = Series::new(label, "ms");
    let mut sh = Series::new("`sh -c true`, interleaved", "ms");
    for _ in 0..runs {
        sh.push(harness::time_sh_true()?);
        let started = mono_ns();
        let out = hook(home, prompt)?.wait_with_output()?;
        let ended = mono_ns();
        if !out.status.success() || !out.stdout.is_empty() {
            bail!("the inject hook answered {out:?} with nothing pending");
        }
        inject.push(ms_between(started, ended));
    }
    Ok((inject, sh))
}

/// Waits until process `pid` has `path` open (the MCP server opened the store).
fn wait_for_open(pid: u32, path: &std::path::Path) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let open = std::fs::read_dir(format!("/proc/{pid}/fd"))?
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|p| p == path));
        if open {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("bgtask mcp did not open {}", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
