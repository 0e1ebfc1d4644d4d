//! `bench`: measures bgtask against the physical limit (`sh -c true`, a
//! plain redirect to a file) and against pueue, and writes the report
//! (`docs/BENCHMARKS.md`) and its chart (`docs/benchmarks.svg`).
//!
//! Every figure is a median and a p99 over many runs, and every comparison
//! is a ratio of two series measured interleaved in the same run, so a noisy
//! shared machine slows both sides alike. Each figure uses its own temporary
//! `BGTASK_HOME` and kills every task it started.
//!
//! ```text
//! cargo run --release -p bench -- full     # everything, with pueue; writes docs/
//! cargo run --release -p bench -- smoke    # a few iterations, no pueue; writes target/bench/
//! ```

mod agent_start;
mod chart;
mod clock;
mod compare;
mod completion;
mod harness;
mod hooks;
mod interactive;
mod latency;
mod output;
mod pueue;
mod queue;
mod ready;
mod report;
mod sandbox;
mod scale;
mod slurm;
mod stats;
mod store;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use harness::Bgtask;
use report::Report;

/// How much work each figure does.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub smoke: bool,
    /// Interleaved iterations of the start and end-to-end figures.
    pub latency_runs: usize,
    /// Iterations of pueue's add + wait (each takes about 2 s).
    pub pueue_runs: usize,
    /// Tasks whose completion latency is measured, per observer.
    pub completion_runs: usize,
    /// Idle `sleep 120` tasks of the scale figure.
    pub scale_tasks: usize,
    /// How long the idle tasks' CPU use is measured.
    pub idle_secs: u64,
    /// Finished records seeded into the store for `list` and cold start.
    pub finished_records: usize,
    /// Repetitions of single-command timings (list, status, cold start).
    pub command_runs: usize,
    /// Bytes the big task writes in the output figure.
    pub output_bytes: u64,
    /// Repetitions of the capture-throughput runs.
    pub throughput_runs: usize,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            smoke: false,
            latency_runs: 200,
            pueue_runs: 30,
            completion_runs: 250,
            scale_tasks: 1000,
            idle_secs: 10,
            finished_records: 10_000,
            command_runs: 50,
            output_bytes: 1 << 30,
            throughput_runs: 7,
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            latency_runs: 5,
            pueue_runs: 0,
            completion_runs: 5,
            scale_tasks: 20,
            idle_secs: 1,
            finished_records: 10_000,
            command_runs: 3,
            output_bytes: 16 << 20,
            throughput_runs: 2,
        }
    }
}

struct Args {
    plan: Plan,
    bgtask: Option<PathBuf>,
    out: Option<PathBuf>,
    /// An older bgtask to compare with, side by side.
    baseline: Option<PathBuf>,
    /// Run only the figures whose key is listed (all when empty).
    only: Vec<String>,
}

const USAGE: &str =
    "usage: bench (full | smoke) [--bgtask PATH] [--baseline PATH] [--out DIR] [--only FIGURE,...]
             [--runs N]
       bench stamp FILE
       bench listen PORT FILE
       bench agent-start [--runs N] [--bgtask PATH] [--baseline PATH]

  full     every figure with enough runs, pueue included (installed with
           `cargo install pueue --locked` if missing); writes docs/BENCHMARKS.md
           and docs/benchmarks.svg
  smoke    every figure with a few iterations and no pueue; writes
           target/bench/BENCHMARKS.md and target/bench/benchmarks.svg
  stamp    (internal) write CLOCK_MONOTONIC in nanoseconds to FILE and exit
  listen   (internal) listen on 127.0.0.1:PORT, then stamp FILE and wait
  agent-start  a background `bash` to a warm `serve` and `mcp` beside a cold
           `bgtask run` (issue 17); prints a markdown section for docs/BENCHMARKS.md
  slurm    the Slurm executor against the cluster at SLURM_CONF; prints a
           markdown section for docs/BENCHMARKS.md
           (bench slurm [--bgtask PATH] [--baseline PATH] [--runs N] [--ends N])

  --bgtask PATH   the bgtask binary [default: the release bgtask beside this binary,
                  built if missing]
  --out DIR       where the report and the chart go
  --baseline PATH an older bgtask binary: adds a before/after figure, measured side by side
  --only LIST     figures to run: start, e2e, completion, scale, output, cold, hooks, top, ready,
                  sandbox, compare
  --runs N        interleaved iterations of the start and end-to-end figures
                  [default: 200 in full, 5 in smoke]";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("listen") {
        return match (argv.get(1), argv.get(2)) {
            (Some(port), Some(file)) => match ready::listen(port, file.as_ref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench listen: {e}");
                    ExitCode::FAILURE
                }
            },
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    if argv.first().map(String::as_str) == Some("stamp") {
        return match argv.get(1) {
            Some(file) => match clock::stamp(file.as_ref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bench stamp: {e}");
                    ExitCode::FAILURE
                }
            },
            None => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        };
    }
    if argv.first().map(String::as_str) == Some("interactive") {
        // Issue 18's numbers: `bench interactive [RUNS] [BGTASK [BASELINE]]` (release
        // build; BGTASK defaults to building the one beside this binary).
        let runs = argv.get(1).and_then(|r| r.parse().ok()).unwrap_or(200);
        let exe = match argv.get(2) {
            Some(path) => Ok(PathBuf::from(path)),
            None => workspace_root().and_then(|root| harness::build_bgtask(&root)),
        };
        let baseline = argv
            .get(3)
            .map(|path| Bgtask::new(PathBuf::from(path)))
            .transpose();
        let run = exe.and_then(Bgtask::new).and_then(|bg| {
            let baseline = baseline?;
            interactive::run(&bg, runs, baseline.as_ref())
        });
        return match run {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if argv.first().map(String::as_str) == Some("agent-start") {
        return match run_agent_start(&argv[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench agent-start: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if argv.first().map(String::as_str) == Some("queue")
        && argv.get(1).map(String::as_str) == Some("--handoff-only")
    {
        return match workspace_root().and_then(|root| queue::handoff_only(&argv[2..], &root)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if argv.first().map(String::as_str) == Some("queue") {
        // Issue 21's numbers: `bench queue [TASKS] [BGTASK]`.
        let tasks = argv.get(1).and_then(|r| r.parse().ok()).unwrap_or(1000);
        let run = workspace_root().and_then(|root| {
            let exe = match argv.get(2) {
                Some(path) => PathBuf::from(path),
                None => harness::build_bgtask(&root)?,
            };
            queue::run(&Bgtask::new(exe)?, &root, tasks)
        });
        return match run {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if argv.first().map(String::as_str) == Some("slurm") {
        return match run_slurm(&argv[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench slurm: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = match parse_args(&argv) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `bench slurm [--bgtask PATH] [--runs N] [--ends N]`.
fn run_slurm(argv: &[String]) -> Result<()> {
    let (mut exe, mut baseline, mut runs, mut ends) = (None, None, 50, 20);
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bgtask" => exe = Some(PathBuf::from(value)),
            "--baseline" => baseline = Some(PathBuf::from(value)),
            "--runs" => runs = value.parse().context("--runs needs a count")?,
            "--ends" => ends = value.parse().context("--ends needs a count")?,
            _ => bail!("unknown flag {flag:?}"),
        }
    }
    let exe = match exe {
        Some(exe) => exe,
        None => harness::build_bgtask(&workspace_root()?)?,
    };
    let baseline = baseline.map(Bgtask::new).transpose()?;
    slurm::run(&Bgtask::new(exe)?, baseline.as_ref(), runs, ends)
}

fn run_agent_start(argv: &[String]) -> Result<()> {
    let (mut exe, mut baseline, mut runs) = (None, None, 200);
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--bgtask" => exe = Some(PathBuf::from(value)),
            "--baseline" => baseline = Some(PathBuf::from(value)),
            "--runs" => runs = value.parse().context("--runs needs a count")?,
            _ => bail!("unknown flag {flag:?}"),
        }
    }
    let exe = match exe {
        Some(exe) => exe,
        None => harness::build_bgtask(&workspace_root()?)?,
    };
    let baseline = baseline.map(Bgtask::new).transpose()?;
    agent_start::run(&Bgtask::new(exe)?, baseline.as_ref(), runs)
}

fn parse_args(argv: &[String]) -> Result<Args> {
    let mut it = argv.iter();
    let plan = match it.next().map(String::as_str) {
        Some("full") => Plan::full(),
        Some("smoke") => Plan::smoke(),
        Some(other) => bail!("unknown mode {other:?}"),
        None => bail!("missing mode"),
    };
    let mut args = Args {
        plan,
        bgtask: None,
        out: None,
        baseline: None,
        only: Vec::new(),
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bgtask" => args.bgtask = Some(value()?.into()),
            "--out" => args.out = Some(value()?.into()),
            "--baseline" => args.baseline = Some(value()?.into()),
            "--only" => args.only = value()?.split(',').map(str::to_owned).collect(),
            "--runs" => {
                let runs = value()?;
                args.plan.latency_runs = runs
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| format!("--runs needs a positive count, not {runs:?}"))?;
            }
            _ => bail!("unknown flag {flag:?}"),
        }
    }
    Ok(args)
}

fn run(args: Args) -> Result<()> {
    let root = workspace_root()?;
    let exe = match args.bgtask {
        Some(path) => path,
        None => harness::build_bgtask(&root)?,
    };
    let bgtask = Bgtask::new(exe)?;
    let out_dir = args.out.unwrap_or_else(|| {
        if args.plan.smoke {
            root.join("target/bench")
        } else {
            root.join("docs")
        }
    });
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out_dir = std::fs::canonicalize(&out_dir)?;
    let baseline = args.baseline.map(std::fs::canonicalize).transpose()?;
    // Tasks run in a scratch directory. It is the bench's own working
    // directory rather than each command's `current_dir`, because with a
    // `current_dir` std spawns by fork instead of posix_spawn in a static
    // binary (it cannot look up posix_spawn_file_actions_addchdir_np), and
    // forking this process would slow every bgtask command measured
    // against `sh -c true` (0.3–0.5 ms seen).
    let scratch = tempfile::tempdir()?;
    std::env::set_current_dir(scratch.path())?;
    let wanted = |key: &str| args.only.is_empty() || args.only.iter().any(|k| k == key);
    let plan = args.plan;

    let pueue = if plan.pueue_runs > 0 && wanted("e2e") {
        Some(pueue::Pueue::start(&root)?)
    } else {
        None
    };
    let mut report = Report::new(&bgtask, plan, std::env::args().collect());
    let mut step = |key: &str, f: &mut dyn FnMut() -> Result<report::Section>| -> Result<()> {
        if !wanted(key) {
            return Ok(());
        }
        eprintln!("== {key}");
        let section = f().with_context(|| format!("figure {key}"))?;
        section.print();
        report.sections.push(section);
        Ok(())
    };
    step("start", &mut || latency::start(&bgtask, &plan))?;
    step("e2e", &mut || {
        latency::end_to_end(&bgtask, &plan, pueue.as_ref())
    })?;
    step("completion", &mut || completion::run(&bgtask, &plan))?;
    step("scale", &mut || scale::run(&bgtask, &plan))?;
    step("output", &mut || output::run(&bgtask, &plan))?;
    step("cold", &mut || store::cold_start(&bgtask, &plan))?;
    step("hooks", &mut || hooks::run(&bgtask, &plan))?;
    step("top", &mut || top::run(&bgtask, &plan))?;
    step("ready", &mut || ready::run(&bgtask, &plan))?;
    step("sandbox", &mut || sandbox::run(&bgtask, &plan))?;
    if let Some(path) = &baseline {
        let old = Bgtask::new(path.clone())?;
        step("compare", &mut || compare::run(&bgtask, &old, &plan))?;
    }
    drop(pueue);

    let md = out_dir.join("BENCHMARKS.md");
    let svg = out_dir.join("benchmarks.svg");
    chart::write(&report, &svg)?;
    report.write(&md, "benchmarks.svg")?;
    eprintln!("wrote {} and {}", md.display(), svg.display());
    Ok(())
}

/// The workspace root (where `Cargo.lock` is), from the current directory
/// upwards, else from this crate's source location.
fn workspace_root() -> Result<PathBuf> {
    let start = std::env::current_dir()?;
    for dir in start.ancestors() {
        if dir.join("Cargo.lock").exists() && dir.join("crates/bgtask").is_dir() {
            return Ok(dir.to_owned());
        }
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map(PathBuf::from)
        .context("cannot find the workspace root")
}
