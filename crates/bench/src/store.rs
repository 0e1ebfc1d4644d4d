//! Figure 6 (cold start: every command is a new process reading the store)
//! and the seeded stores it and figure 4 use: a store created by bgtask,
//! holding one real finished task and N finished rows inserted directly.

use anyhow::{Context, Result};
use rusqlite::params;

use crate::harness::{time_ok, Bgtask, Home, SESSION, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

/// A store with one real finished task plus `extra` seeded finished tasks.
pub struct Seeded {
    pub home: Home,
    /// The real task (it has output files).
    pub task_id: String,
}

pub fn seeded_home(bg: &Bgtask, extra: usize) -> Result<Seeded> {
    let home = bg.home()?;
    let task_id = home.start(&["--wait", "10s", "--no-notify"], "echo hello")?;
    let task_id = task_id
        .lines()
        .find_map(|l| l.strip_prefix("task:"))
        .map(|s| s.trim().to_owned())
        .context("run --wait printed no task line")?;
    seed(&home, extra)?;
    Ok(Seeded { home, task_id })
}

/// Inserts `n` finished tasks, each with an acknowledged completion, that
/// finished within the last minutes (so gc keeps them).
fn seed(home: &Home, n: usize) -> Result<()> {
    let mut conn = rusqlite::Connection::open(home.path().join("bgtask.db"))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    let tx = conn.transaction()?;
    let now = bgtask_core::now_ms();
    let cwd = home.scratch().to_string_lossy().into_owned();
    for i in 0..n {
        let id = format!("bg-{:016x}", 0x5eed_0000_0000_0000u64 + i as u64);
        let finished = now - (n - i) as i64 * 5;
        let (status, code) = if i % 10 == 9 {
            ("failed", 1)
        } else {
            ("completed", 0)
        };
        tx.execute(
            "INSERT INTO tasks (task_id, record_version, session, command, cwd, env_keys, status, \
             exit_code, pid, created_at, started_at, finished_at, timeout_ms, max_output, notify) \
             VALUES (?1, 1, ?2, ?3, ?4, '[]', ?5, ?6, ?7, ?8, ?9, ?10, 1800000, 104857600, 1)",
            params![
                id,
                SESSION,
                format!("cargo test --package seeded-{i}"),
                cwd,
                status,
                code,
                100_000 + i as i64,
                finished - 30,
                finished - 25,
                finished
            ],
        )?;
        tx.execute(
            "INSERT INTO completions (task_id, session, output_preview, output_truncated, created_at, acked_at) \
             VALUES (?1, ?2, 'test result: ok. 12 passed; 0 failed', 0, ?3, ?3)",
            params![id, SESSION, finished],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// Figure 6: each command as a fresh process, in a store with 10,000
/// finished tasks and, interleaved, in a store with one.
pub fn cold_start(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let big = seeded_home(bg, plan.finished_records)?;
    let small = seeded_home(bg, 0)?;
    let commands: Vec<(&str, Vec<&str>)> = vec![
        (
            "`bgtask --version` (no store: the process floor)",
            vec!["--version"],
        ),
        ("`bgtask status ID`", vec!["status", "ID"]),
        (
            "`bgtask logs --tail 4096 ID`",
            vec!["logs", "--tail", "4096", "ID"],
        ),
        ("`bgtask wait ID` (finished)", vec!["wait", "ID"]),
        (
            "`bgtask list --status running`",
            vec!["list", "--status", "running"],
        ),
        ("`bgtask completions`", vec!["completions"]),
        ("`bgtask gc`", vec!["gc"]),
        ("`bgtask run -- true`", vec!["run", "--", "true"]),
    ];
    let n_big = plan.finished_records;
    let mut big_series: Vec<Series> = commands
        .iter()
        .map(|(label, _)| Series::new(format!("{label}, {n_big} finished"), "ms"))
        .collect();
    let mut small_series: Vec<Series> = commands
        .iter()
        .map(|(label, _)| Series::new(format!("{label}, 1 finished"), "ms"))
        .collect();
    // Warm-up (the first command of a store also runs the hourly gc).
    for s in [&big, &small] {
        s.home.run_ok(&["list", "--status", "running"])?;
    }
    for i in 0..plan.command_runs {
        for (c, (_, args)) in commands.iter().enumerate() {
            let sides = if i % 2 == 0 {
                [&big, &small]
            } else {
                [&small, &big]
            };
            for seeded in sides {
                let args: Vec<&str> = args
                    .iter()
                    .map(|a| {
                        if *a == "ID" {
                            seeded.task_id.as_str()
                        } else {
                            a
                        }
                    })
                    .collect();
                std::thread::sleep(SETTLE / 4);
                let (ms, out) = time_ok(&mut seeded.home.cmd(&args))?;
                if args[0] == "run" {
                    seeded.home.run_ok(&["wait", out.trim()])?;
                }
                let series = if std::ptr::eq(seeded, &big) {
                    &mut big_series[c]
                } else {
                    &mut small_series[c]
                };
                series.push(ms);
            }
        }
    }
    let mut checks = Vec::new();
    for (c, (label, _)) in commands.iter().enumerate().skip(1) {
        checks.push(Check::new(
            format!("{label}, {n_big} finished (median)"),
            big_series[c].median(),
            "ms",
            Target::AtMost(50.0),
        ));
    }
    for (c, (label, _)) in commands.iter().enumerate().skip(1) {
        checks.push(Check::new(
            format!("{label}: {n_big} finished / 1 finished (medians)"),
            big_series[c].median() / small_series[c].median(),
            "×",
            Target::None,
        ));
    }
    let mut series = Vec::new();
    for (b, s) in big_series.into_iter().zip(small_series) {
        series.push(b);
        series.push(s);
    }
    Ok(Section {
        key: "cold",
        title: "6. Cold start".into(),
        method: format!(
            "Every bgtask command is a new process that opens the store (there is no daemon \
             to keep it warm). Each command is timed {} times as a whole process against a \
             store with {n_big} finished tasks and, interleaved, against a store with one; \
             `ID` is a real finished task that printed one line.",
            plan.command_runs
        ),
        series,
        checks,
        notes: Vec::new(),
    })
}
