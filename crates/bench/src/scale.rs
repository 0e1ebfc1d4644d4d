//! Figure 4: many tasks. Starts `sleep 120` tasks one after another, then
//! measures each monitor's memory, the monitors' CPU while the tasks idle,
//! and `bgtask list --json` with all of them running and with 10,000
//! finished tasks in the store.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::harness::{cpu_ticks, proc_kib_field, time_ok, Bgtask};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let n = plan.scale_tasks;
    let home = bg.home()?;
    let mut starts = Series::new(
        format!("one `bgtask run -- sleep 120` while up to {n} run"),
        "ms",
    );
    let began = Instant::now();
    for _ in 0..n {
        let (ms, _) = time_ok(&mut home.cmd(&["run", "--", "sleep 120"]))?;
        starts.push(ms);
    }
    let total = began.elapsed();

    let monitors = home.monitors();
    if monitors.len() != n {
        bail!("{} monitors running, expected {n}", monitors.len());
    }
    let mut rss = Series::new("monitor RSS (VmRSS)", "MiB");
    let mut pss = Series::new("monitor PSS (smaps_rollup; shared pages split)", "MiB");
    for pid in &monitors {
        rss.extend(proc_kib_field(&format!("/proc/{pid}/status"), "VmRSS"));
        pss.extend(proc_kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss"));
    }

    let ticks_before: u64 = monitors.iter().filter_map(|p| cpu_ticks(*p)).sum();
    std::thread::sleep(Duration::from_secs(plan.idle_secs));
    let ticks_after: u64 = monitors.iter().filter_map(|p| cpu_ticks(*p)).sum();
    let tick_ms = 1000.0 / rustix::param::clock_ticks_per_second() as f64;
    let idle_cpu_ms = ticks_after.saturating_sub(ticks_before) as f64 * tick_ms;

    let mut list_running = Series::new(format!("`bgtask list --json`, {n} running"), "ms");
    for _ in 0..plan.command_runs {
        let (ms, out) = time_ok(&mut home.cmd(&["--json", "list"]))?;
        list_running.push(ms);
        let listed = serde_json::from_str::<serde_json::Value>(&out)?
            .as_array()
            .map_or(0, Vec::len);
        if listed != n {
            bail!("list returned {listed} tasks, expected {n}");
        }
    }

    let stop_time = home.stop_all(Duration::from_secs(120));
    let still = home.run_ok(&["--json", "list", "--status", "running"])?;
    if still.trim() != "[]" {
        bail!("tasks still running after the stop: {still}");
    }

    let finished = crate::store::seeded_home(bg, plan.finished_records)?;
    let mut list_finished = Series::new(
        format!("`bgtask list --json`, {} finished", plan.finished_records),
        "ms",
    );
    for _ in 0..plan.command_runs {
        let (ms, _) = time_ok(&mut finished.home.cmd(&["--json", "list"]))?;
        list_finished.push(ms);
    }

    let checks = vec![
        Check::new(
            format!("total time to start {n} tasks"),
            total.as_secs_f64(),
            "s",
            Target::None,
        ),
        Check::new(
            "monitor RSS (median)",
            rss.median(),
            "MiB",
            Target::AtMost(2.0),
        ),
        Check::new("monitor PSS (median)", pss.median(), "MiB", Target::None),
        Check::new(
            format!("CPU of all {n} monitors over {} s idle", plan.idle_secs),
            idle_cpu_ms,
            "ms",
            Target::AtMost(0.0),
        ),
        Check::new(
            format!("`list --json`, {n} running (median)"),
            list_running.median(),
            "ms",
            Target::AtMost(50.0),
        ),
        Check::new(
            format!("`list --json`, {} finished (median)", plan.finished_records),
            list_finished.median(),
            "ms",
            Target::AtMost(50.0),
        ),
    ];
    let notes = vec![
        format!(
            "CPU is utime + stime of every monitor from /proc/PID/stat, read before and after \
             the idle window; one clock tick is {tick_ms:.0} ms, so 0 means less than one tick \
             in total. Stopping all {n} tasks at once (SIGTERM to every monitor) took {:.1} s \
             until the last monitor had recorded its end and exited.",
            stop_time.as_secs_f64()
        ),
        format!(
            "The {} finished tasks were inserted directly into a store created by bgtask \
             (rows as `crates/bgtask-core/src/store/schema.rs` defines them, each with an \
             acknowledged completion), next to one real task.",
            plan.finished_records
        ),
    ];
    Ok(Section {
        key: "scale",
        title: "4. Scale".into(),
        method: format!(
            "{n} `sleep 120` tasks started one after another with `BGTASK_MAX_RUNNING=2000`; \
             memory read from /proc for every monitor; `list` timed {} times.",
            plan.command_runs
        ),
        series: vec![starts, rss, pss, list_running, list_finished],
        checks,
        notes,
    })
}
