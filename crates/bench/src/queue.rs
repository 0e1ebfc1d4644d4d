//! Issue 21's numbers: `bench queue [TASKS] [BGTASK]` prints a markdown
//! section for docs/BENCHMARKS.md.
//!
//! - throughput: TASKS `true` tasks through a group with parallel 8, from
//!   the first submission until every one has ended, bgtask and pueue in
//!   the same run (alternated, three rounds each);
//! - hand-off: a group with parallel 1; each task stamps its start and
//!   end with bash's `$EPOCHREALTIME` (no exec), and the hand-off is the
//!   next task's start minus the previous one's end;
//! - idle: the CPU time all monitors of TASKS queued tasks use over 10 s.
//!
//! `bench queue --handoff-only [--tasks N] [--rounds R] [--baseline OLD]
//! [BGTASK]` measures the hand-off alone (bgtask only, a few seconds), and
//! with `--baseline` alternates two binaries round by round.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::harness::{cpu_ticks, Bgtask};
use crate::pueue::Pueue;
use crate::stats::Series;

const ROUNDS: usize = 3;
const HANDOFFS: usize = 200;
const IDLE_SECS: u64 = 10;

pub fn run(bg: &Bgtask, root: &Path, tasks: usize) -> Result<()> {
    let pueue = Pueue::start(root)?;
    let (mut ours, mut theirs) = (Series::new("bgtask", "ms"), Series::new("pueue", "ms"));
    for round in 0..ROUNDS {
        eprintln!("== round {round}: {tasks} tasks, parallel 8");
        ours.push(bgtask_throughput(bg, tasks)?);
        theirs.push(pueue_throughput(&pueue, tasks, round)?);
    }
    eprintln!("== hand-off latency ({HANDOFFS} tasks, parallel 1)");
    let ours_handoff = bgtask_handoff(bg)?;
    let theirs_handoff = pueue_handoff(&pueue)?;
    eprintln!("== idle CPU of {tasks} queued tasks");
    let (idle_ticks, monitors) = bgtask_idle(bg, tasks)?;

    println!("### Queues (issue 21)\n");
    println!(
        "`cargo run --release -p bench -- queue {tasks}` on a 2-core machine shared with other \
         builders (absolute times are noisy; the ratios compare runs made side by side). \
         {} against {}.\n",
        bg.version, pueue.version
    );
    println!("| Figure | bgtask | pueue | pueue / bgtask |");
    println!("|---|---|---|---|");
    println!(
        "| {tasks} `true` tasks through a group with parallel 8, submit to all ended (median of {ROUNDS}) | {:.0} ms | {:.0} ms | {:.1}× |",
        ours.median(),
        theirs.median(),
        theirs.median() / ours.median()
    );
    println!(
        "| hand-off, one task's end to the next one's start, p50 ({HANDOFFS} tasks, parallel 1) | {:.2} ms | {:.2} ms | {:.1}× |",
        ours_handoff.median(),
        theirs_handoff.median(),
        theirs_handoff.median() / ours_handoff.median()
    );
    println!(
        "| hand-off p99 | {:.2} ms | {:.2} ms | |",
        ours_handoff.p99(),
        theirs_handoff.p99()
    );
    println!(
        "| CPU used by {monitors} queued tasks' monitors over {IDLE_SECS} s | {idle_ticks} ticks ({:.0} ms) | (a daemon) | |",
        idle_ticks as f64 * 10.0
    );
    println!();
    Ok(())
}

fn bgtask_throughput(bg: &Bgtask, tasks: usize) -> Result<f64> {
    let home = bg.home()?;
    home.run_ok(&["group", "add", "q", "--parallel", "8"])?;
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        ids.push(home.start(&["--group", "q", "--no-notify"], "true")?);
    }
    let mut wait = vec!["wait", "--timeout", "10m"];
    wait.extend(ids.iter().map(String::as_str));
    let out = home.cmd(&wait).output()?;
    if !out.status.success() {
        bail!(
            "bgtask wait failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

fn pueue_throughput(pueue: &Pueue, tasks: usize, round: usize) -> Result<f64> {
    let group = format!("q{round}");
    pueue.run_ok(&["group", "add", &group, "--parallel", "8"])?;
    let started = Instant::now();
    for _ in 0..tasks {
        pueue.run_ok(&["add", "--group", &group, "--", "true"])?;
    }
    pueue.run_ok(&["wait", "--quiet", "--group", &group])?;
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// Start and end stamps of task `i` in `dir`, as shell code.
fn stamping(dir: &Path, i: usize) -> String {
    let dir = dir.display();
    format!("echo $EPOCHREALTIME > {dir}/s{i}; echo $EPOCHREALTIME > {dir}/e{i}")
}

fn handoffs(dir: &Path) -> Result<Series> {
    let read = |name: String| -> Result<f64> {
        let text = std::fs::read_to_string(dir.join(&name)).with_context(|| name.clone())?;
        Ok(text.trim().parse::<f64>()? * 1e3)
    };
    let mut series = Series::new("hand-off", "ms");
    for i in 1..HANDOFFS {
        series.push(read(format!("s{i}"))? - read(format!("e{}", i - 1))?);
    }
    Ok(series)
}

fn bgtask_handoff(bg: &Bgtask) -> Result<Series> {
    let home = bg.home()?;
    let dir = home.scratch().join("stamps");
    std::fs::create_dir_all(&dir)?;
    home.run_ok(&["group", "add", "one", "--parallel", "1"])?;
    let mut ids = Vec::new();
    for i in 0..HANDOFFS {
        ids.push(home.start(&["--group", "one", "--no-notify"], &stamping(&dir, i))?);
    }
    let mut wait = vec!["wait", "--timeout", "10m"];
    wait.extend(ids.iter().map(String::as_str));
    home.cmd(&wait).output()?;
    handoffs(&dir)
}

fn pueue_handoff(pueue: &Pueue) -> Result<Series> {
    let dir = tempfile::tempdir()?;
    pueue.run_ok(&["group", "add", "one", "--parallel", "1"])?;
    // pueue runs commands with sh (dash here), which has no
    // $EPOCHREALTIME: bash is exec'd inside, which adds about one exec
    // to each of pueue's hand-offs.
    for i in 0..HANDOFFS {
        let command = format!("bash -c '{}'", stamping(dir.path(), i));
        pueue.run_ok(&["add", "--group", "one", "--", &command])?;
    }
    pueue.run_ok(&["wait", "--quiet", "--group", "one"])?;
    handoffs(dir.path())
}

/// One task holds the group's only slot; `tasks` more wait behind it.
fn bgtask_idle(bg: &Bgtask, tasks: usize) -> Result<(u64, usize)> {
    let home = bg.home()?;
    home.run_ok(&["group", "add", "held", "--parallel", "1"])?;
    home.start(&["--group", "held"], "sleep 3600")?;
    for _ in 0..tasks {
        home.start(&["--group", "held"], "true")?;
    }
    // Let every monitor settle into its wait.
    std::thread::sleep(Duration::from_secs(2));
    let monitors = home.monitors();
    let before: u64 = monitors.iter().filter_map(|p| cpu_ticks(*p)).sum();
    std::thread::sleep(Duration::from_secs(IDLE_SECS));
    let after: u64 = monitors.iter().filter_map(|p| cpu_ticks(*p)).sum();
    Ok((after.saturating_sub(before), monitors.len()))
}

/// `bench queue --handoff-only [--tasks N] [--rounds R] [--baseline OLD]
/// [BGTASK]`: the hand-off alone, bgtask only, as the by-hand script of
/// docs/BENCHMARKS.md measures it: one task holds a group with parallel 1
/// until a gate opens, N stamping tasks queue behind it, then the gate
/// opens and `bgtask wait` waits for all of them. With `--baseline`, the
/// two binaries alternate, round by round, in the same minutes.
pub fn handoff_only(args: &[String], root: &Path) -> Result<()> {
    let (mut tasks, mut rounds, mut baseline, mut exe) = (100usize, 3usize, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--tasks" => tasks = value("--tasks")?.parse().context("--tasks")?,
            "--rounds" => rounds = value("--rounds")?.parse().context("--rounds")?,
            "--baseline" => baseline = Some(Bgtask::new(value("--baseline")?.into())?),
            other if other.starts_with('-') => bail!("unknown flag {other}"),
            path => exe = Some(std::path::PathBuf::from(path)),
        }
    }
    if tasks < 2 {
        bail!("--tasks must be at least 2");
    }
    let exe = match exe {
        Some(path) => path,
        None => crate::harness::build_bgtask(root)?,
    };
    let ours = Bgtask::new(exe)?;
    let mut measured: Vec<(&Bgtask, Series)> = vec![(&ours, Series::new("bgtask", "ms"))];
    if let Some(old) = &baseline {
        measured.push((old, Series::new("baseline", "ms")));
    }
    for round in 0..rounds {
        for (bg, series) in &mut measured {
            eprintln!("== round {round}: {} ({tasks} hand-offs)", bg.exe.display());
            gated_handoffs(bg, tasks, series)?;
        }
    }
    println!("| Binary | p50 | p90 | p99 | hand-offs |");
    println!("|---|---:|---:|---:|---:|");
    for (bg, series) in &measured {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
            bg.exe.display(),
            series.median(),
            series.percentile(90.0),
            series.p99(),
            series.len()
        );
    }
    Ok(())
}

fn gated_handoffs(bg: &Bgtask, tasks: usize, series: &mut Series) -> Result<()> {
    let home = bg.home()?;
    let dir = home.scratch().join("stamps");
    std::fs::create_dir_all(&dir)?;
    let gate = home.scratch().join("gate");
    home.run_ok(&["group", "add", "one", "--parallel", "1"])?;
    let hold = format!(
        "until [ -e '{}' ]; do sleep 0.01; done; echo $EPOCHREALTIME > {}/e0",
        gate.display(),
        dir.display()
    );
    let mut ids = vec![home.start(&["--group", "one", "--no-notify"], &hold)?];
    for i in 1..=tasks {
        ids.push(home.start(&["--group", "one", "--no-notify"], &stamping(&dir, i))?);
    }
    std::fs::write(&gate, b"")?;
    let mut wait = vec!["wait", "--timeout", "10m"];
    wait.extend(ids.iter().map(String::as_str));
    home.cmd(&wait).output()?;
    let read = |name: String| -> Result<f64> {
        let text = std::fs::read_to_string(dir.join(&name)).with_context(|| name.clone())?;
        Ok(text.trim().parse::<f64>()? * 1e3)
    };
    for i in 1..=tasks {
        series.push(read(format!("s{i}"))? - read(format!("e{}", i - 1))?);
    }
    Ok(())
}
