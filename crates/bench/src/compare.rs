//! Before and after: with `--baseline PATH` (a bgtask built from an older
//! commit), the commands the changes were meant to speed up run against
//! both binaries, interleaved, each binary with its own store.

use anyhow::Result;

use crate::completion::{through_wait_cli, Gate};
use crate::harness::{time_ok, Bgtask, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::store::seeded_home;
use crate::Plan;

/// One binary's stores and series.
struct Side {
    fresh: crate::harness::Home,
    gate: Gate,
    seeded: crate::store::Seeded,
    busy: crate::harness::Home,
    series: Vec<Series>,
}

/// Running tasks in the store of the last measure.
const RUNNING: usize = 500;

const MEASURES: [&str; 7] = [
    "`bgtask run -- true`",
    "`bgtask run --wait 10s -- true`",
    "exit → `bgtask wait` reaped",
    "`bgtask wait ID` (finished task)",
    "`bgtask completions`, 10,000 finished",
    "`bgtask list --json`, 10,000 finished",
    "`bgtask list --json`, RUNNING running",
];

pub fn run(new: &Bgtask, old: &Bgtask, plan: &Plan) -> Result<Section> {
    let mut sides = Vec::new();
    for (name, bg) in [("before", old), ("after", new)] {
        let fresh = bg.home()?;
        let gate = Gate::new(&fresh)?;
        fresh.run_ok(&["run", "--wait", "10s", "--", "true"])?;
        let busy = bg.home()?;
        for _ in 0..RUNNING.min(plan.scale_tasks) {
            busy.start(&[], "sleep 300")?;
        }
        sides.push(Side {
            busy,
            gate,
            fresh,
            seeded: seeded_home(bg, plan.finished_records)?,
            series: MEASURES
                .iter()
                .map(|m| Series::new(format!("{}, {name}", label(m, plan)), "ms"))
                .collect(),
        });
    }
    let runs = plan.latency_runs.min(100);
    for i in 0..runs {
        for k in 0..2 {
            let side = &mut sides[(i + k) % 2];
            let s = &mut side.series;
            std::thread::sleep(SETTLE);
            let (ms, out) = time_ok(&mut side.fresh.cmd(&["run", "--", "true"]))?;
            s[0].push(ms);
            side.fresh.run_ok(&["wait", out.trim()])?;
            std::thread::sleep(SETTLE);
            s[1].push(time_ok(&mut side.fresh.cmd(&["run", "--wait", "10s", "--", "true"]))?.0);
            std::thread::sleep(SETTLE);
            s[2].push(through_wait_cli(&side.fresh, &side.gate)?);
            let seeded = &side.seeded;
            std::thread::sleep(SETTLE);
            s[3].push(time_ok(&mut seeded.home.cmd(&["wait", &seeded.task_id]))?.0);
            std::thread::sleep(SETTLE);
            s[4].push(time_ok(&mut seeded.home.cmd(&["completions"]))?.0);
            std::thread::sleep(SETTLE);
            s[5].push(time_ok(&mut seeded.home.cmd(&["--json", "list"]))?.0);
            std::thread::sleep(SETTLE);
            s[6].push(time_ok(&mut side.busy.cmd(&["--json", "list"]))?.0);
        }
    }
    let checks = MEASURES
        .iter()
        .enumerate()
        .map(|(m, label)| {
            Check::new(
                format!("{}: before / after (medians)", self::label(label, plan)),
                sides[0].series[m].median() / sides[1].series[m].median(),
                "×",
                Target::None,
            )
        })
        .collect();
    let mut series = Vec::new();
    for m in 0..MEASURES.len() {
        for side in &sides {
            series.push(side.series[m].clone());
        }
    }
    Ok(Section {
        key: "compare",
        title: "Before and after the changes".into(),
        method: format!(
            "The binary before the changes ({}) and after ({}), each with its own stores, \
             interleaved in alternating order, {runs} runs per measurement, {} ms pause \
             before each. The 10,000-task stores are seeded as in figure 4; the \
             running tasks are `sleep 300`.",
            old.exe.display(),
            new.exe.display(),
            SETTLE.as_millis()
        ),
        series,
        checks,
        notes: Vec::new(),
    })
}

/// A measure's label with the number of running tasks this plan uses.
fn label(measure: &str, plan: &Plan) -> String {
    measure.replace(
        "RUNNING running",
        &format!("{} running", RUNNING.min(plan.scale_tasks)),
    )
}
