//! Figure: `bgtask top` on a busy store (1000 live and 10,000 finished
//! tasks in `full`). `top` runs in a tmux pane (a real terminal) with
//! `BGTASK_TOP_TRACE` set, so it logs each frame: its wall-clock time
//! after drawing, the draw time, and how many tasks it showed live and
//! ended. Measured: a task's end (its recorded `finished_at`) to the first
//! frame that shows it; `top`'s CPU while nothing changes; frame times.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::harness::{cpu_ticks, Bgtask};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

/// One line of the frame trace.
struct Frame {
    at_ms: i64,
    draw_us: u64,
    live: usize,
    ended: usize,
}

fn frames(trace: &Path) -> Vec<Frame> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("frame "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Frame {
                at_ms: f.get(1)?.parse().ok()?,
                draw_us: f.get(2)?.parse().ok()?,
                live: f.get(3)?.parse().ok()?,
                ended: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// Waits (polling the trace file, outside `top`) for a frame that holds.
fn wait_frame(trace: &Path, what: &str, cond: impl Fn(&Frame) -> bool) -> Result<Frame> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(f) = frames(trace).into_iter().find(&cond) {
            return Ok(f);
        }
        if Instant::now() > deadline {
            bail!("top never drew {what}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

struct Tmux(String);

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0, "-f", "/dev/null"]);
        c
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    if Command::new("tmux").arg("-V").output().is_err() {
        bail!("tmux is not installed (apt-get install tmux)");
    }
    let live_n = plan.scale_tasks;
    let seeded = crate::store::seeded_home(bg, plan.finished_records)?;
    let home = &seeded.home;
    let mut live = Vec::with_capacity(live_n);
    for _ in 0..live_n {
        live.push(home.start(&[], "sleep 600")?);
    }
    let ended_at_start = plan.finished_records + 1;
    let trace = home.scratch().join("top-trace");
    let shell = format!(
        "exec env BGTASK_HOME={} BGTASK_SESSION={} BGTASK_MAX_RUNNING=2000 BGTASK_TOP_TRACE={} \
         TERM=xterm-256color {} top",
        quote(&home.path().to_string_lossy()),
        quote(crate::harness::SESSION),
        quote(&trace.to_string_lossy()),
        quote(&bg.exe.to_string_lossy()),
    );
    let tmux = Tmux(format!("bgtask-bench-top-{}", std::process::id()));
    let ok = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "120",
            "-y",
            "40",
            &shell,
        ])
        .status()?;
    if !ok.success() {
        bail!("tmux new-session failed");
    }
    wait_frame(&trace, "every task", |f| {
        f.live == live_n && f.ended == ended_at_start
    })?;
    let pid: u32 = {
        let out = tmux
            .cmd()
            .args(["list-panes", "-t", "top", "-F", "#{pane_pid}"])
            .output()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .context("the pane's pid")?
    };

    // Idle: nothing changes for idle_secs.
    std::thread::sleep(Duration::from_millis(500));
    let frames_before = frames(&trace).len();
    let ticks_before = cpu_ticks(pid).context("top's CPU")?;
    std::thread::sleep(Duration::from_secs(plan.idle_secs));
    let ticks_after = cpu_ticks(pid).context("top's CPU")?;
    let idle_frames = frames(&trace).len() - frames_before;
    let tick_ms = 1000.0 / rustix::param::clock_ticks_per_second() as f64;
    let idle_cpu_ms = ticks_after.saturating_sub(ticks_before) as f64 * tick_ms;

    // A task's end to the frame that shows it.
    let runs = plan.completion_runs.min(live_n).min(50);
    let mut latency = Series::new(
        format!("task end → `top` frame showing it ({live_n} live, {ended_at_start} ended)"),
        "ms",
    );
    for (k, id) in live.iter().take(runs).enumerate() {
        home.run_ok(&["kill", "--grace", "0ms", id])?;
        let status = home.run_ok(&["--json", "status", "--tail", "0", id])?;
        let finished: i64 = serde_json::from_str::<serde_json::Value>(&status)?["finished_at"]
            .as_i64()
            .context("finished_at")?;
        let want = ended_at_start + k + 1;
        let frame = wait_frame(&trace, "the end", |f| f.ended >= want)?;
        latency.push((frame.at_ms - finished).max(0) as f64);
        // Let the redraws of this end settle before the next one.
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut reload = Series::new("re-read of the store after a change", "ms");
    reload.extend(
        std::fs::read_to_string(&trace)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("reload "))
            .filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok())
            .map(|us| us / 1000.0),
    );
    let mut draw = Series::new("frame draw time (ratatui render + write to the pty)", "ms");
    draw.extend(frames(&trace).iter().map(|f| f.draw_us as f64 / 1000.0));

    let _ = tmux.cmd().args(["send-keys", "-t", "top", "q"]).status();
    drop(tmux);
    home.stop_all(Duration::from_secs(120));

    let checks = vec![
        Check::new(
            "task end → screen (median)",
            latency.median(),
            "ms",
            Target::AtMost(100.0),
        ),
        Check::new(
            format!("CPU of `top` over {} s idle", plan.idle_secs),
            idle_cpu_ms,
            "ms",
            Target::AtMost(0.0),
        ),
        Check::new(
            "frame draw time (p99)",
            draw.p99(),
            "ms",
            Target::AtMost(16.0),
        ),
    ];
    let notes = vec![format!(
        "`top` ran in a 120×40 tmux pane. The end of a task is its `finished_at` as recorded \
         by its monitor (wall clock, ms); the frame time is taken after the frame was written to \
         the terminal. Each end comes from `bgtask kill --grace 0ms`. While idle, `top` drew \
         {idle_frames} frames (it redraws on store changes, keys and the selected task's \
         output only). CPU is utime + stime from /proc/PID/stat; one tick is {tick_ms:.0} ms."
    )];
    Ok(Section {
        key: "top",
        title: format!("`bgtask top` with {live_n} live and {ended_at_start} finished tasks"),
        method: "tmux pane, frame trace (BGTASK_TOP_TRACE)".into(),
        series: vec![latency, reload, draw],
        checks,
        notes,
    })
}
