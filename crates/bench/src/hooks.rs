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
    let mut inject = Series::new("(a) inject hook, nothing pending (whole process)", "ms");
    let mut sh = Series::new("`sh -c true` (reference)", "ms");
    let prompt = event("UserPromptSubmit", &home);
    for _ in 0..runs {
        sh.push(harness::time_sh_true()?);
        let started = mono_ns();
        let out = hook(&home, &prompt)?.wait_with_output()?;
        let ended = mono_ns();
        if !out.status.success() || !out.stdout.is_empty() {
            bail!("the inject hook answered {out:?} with nothing pending");
        }
        inject.push(ms_between(started, ended));
    }

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
    ];
    Ok(Section {
        key: "hooks",
        title: "Agents' hooks".into(),
        method: format!(
            "(a) {runs} runs of `bgtask hook claude-code` fed a UserPromptSubmit event in a \
             store with finished, acknowledged tasks, timed from before the spawn to the \
             reaping, interleaved with `sh -c true`. (b) {} tasks: the Stop hook is started \
             and asleep in poll(2) before the task is released; the task execs `bench \
             stamp` as its last act; the latency runs to the hook's reaping (it has printed \
             the notification and settled it).",
            plan.completion_runs
        ),
        series: vec![inject, sh, wake],
        checks,
        notes: Vec::new(),
    })
}
