//! `bench slurm`: the Slurm executor against the cluster at `SLURM_CONF`
//! (e.g. `scripts/slurm-cluster.sh start DIR`). Prints a markdown section
//! for docs/BENCHMARKS.md ("Slurm executor", kept outside the generated
//! part):
//!
//! 1. submit: `bgtask run --executor slurm -- true` against `sbatch
//!    --parsable` of the same script, interleaved (target ≤ 1.5×);
//! 2. end → recorded completion: the task's last act writes the wall
//!    clock, compared with the `finished_at` the watcher recorded
//!    (target: median ≤ the poll interval, 2 s, + 0.5 s).

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::harness::{load_average, time_ok, Bgtask};
use crate::stats::Series;

pub fn run(bgtask: &Bgtask, baseline: Option<&Bgtask>, runs: usize, ends: usize) -> Result<()> {
    if !Command::new("sinfo")
        .arg("-h")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        bail!("no Slurm cluster answers (set SLURM_CONF; see scripts/slurm-cluster.sh)");
    }
    let load_before = load_average();
    let home = bgtask.home()?;
    let old_home = baseline.map(Bgtask::home).transpose()?;
    let mut ours = Series::new("bgtask run --executor slurm", "ms");
    let mut old = Series::new("bgtask run --executor slurm (baseline)", "ms");
    let mut theirs = Series::new("sbatch --parsable", "ms");
    let mut job_ids = Vec::new();
    let submit = ["run", "--executor", "slurm", "--no-notify", "--", "true"];
    // Warm-up: creates the stores and starts their watchers.
    for h in std::iter::once(&home).chain(old_home.as_ref()) {
        time_ok(&mut h.cmd(&submit))?;
    }
    let kinds = if old_home.is_some() { 3 } else { 2 };
    for i in 0..runs {
        // Rotating order, a settle pause before each (as figure 1).
        for k in 0..kinds {
            std::thread::sleep(crate::harness::SETTLE);
            match (i + k) % kinds {
                0 => ours.push(time_ok(&mut home.cmd(&submit))?.0),
                1 => {
                    let (ms, id) = sbatch("#!/bin/bash\ntrue\n")?;
                    theirs.push(ms);
                    job_ids.push(id);
                }
                _ => {
                    if let Some(h) = &old_home {
                        old.push(time_ok(&mut h.cmd(&submit))?.0);
                    }
                }
            }
        }
    }
    let load_after = load_average();
    let mut ends_ms = Series::new("job end → recorded end", "ms");
    for i in 0..ends {
        let stamp = home.scratch().join(format!("end-{i}"));
        let command = format!("date +%s%3N > {}", stamp.display());
        let id = home.run_ok(&["run", "--executor", "slurm", "--", &command])?;
        let out = home.run_ok(&["wait", "--json", "--timeout", "120s", &id])?;
        let task: serde_json::Value = serde_json::from_str(&out)?;
        let finished = task[0]["finished_at"].as_i64().context("no finished_at")?;
        let ended: i64 = std::fs::read_to_string(&stamp)?.trim().parse()?;
        ends_ms.push((finished - ended) as f64);
    }
    home.run_ok(&["gc", "--older-than", "0s"]).ok();
    let ratio = ours.median() / theirs.median();
    let runs = ours.len();
    println!("### Slurm executor (issue 19)\n");
    println!("Command: `scripts/slurm-cluster.sh start /tmp/slurm && SLURM_CONF=/tmp/slurm/slurm.conf cargo run --release -p bench -- slurm --runs {runs} --ends {ends}` ({}; single-node Slurm 22.05 from Debian, 2 cores).\n", bgtask.version);
    println!("| Figure | median | p99 | target |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {:.1} ms | {:.1} ms | |",
        ours.label,
        ours.median(),
        ours.p99()
    );
    println!(
        "| {} | {:.1} ms | {:.1} ms | |",
        theirs.label,
        theirs.median(),
        theirs.p99()
    );
    if old.len() > 0 {
        println!(
            "| {} | {:.1} ms | {:.1} ms | |",
            old.label,
            old.median(),
            old.p99()
        );
    }
    println!("| ratio (medians) | {ratio:.2}× | | ≤ 1.5× |");
    if old.len() > 0 {
        println!(
            "| baseline ratio (medians) | {:.2}× | | |",
            old.median() / theirs.median()
        );
    }
    println!(
        "| {} ({} jobs) | {:.0} ms | {:.0} ms | ≤ 2500 ms (poll interval 2 s + 0.5 s) |",
        ends_ms.label,
        ends_ms.len(),
        ends_ms.median(),
        ends_ms.p99()
    );
    println!(
        "\nInterleaved in rotating order, a {} ms pause before each; load average (1 min) \
         {load_before} at the start and {load_after} at the end.",
        crate::harness::SETTLE.as_millis()
    );
    let _ = std::io::stdout().flush();
    for id in job_ids {
        let _ = Command::new("scancel").arg(id).status();
    }
    Ok(())
}

/// `sbatch --parsable` of `script` on stdin: its wall time and job id.
fn sbatch(script: &str) -> Result<(f64, String)> {
    let mut cmd = Command::new("sbatch");
    cmd.args([
        "--parsable",
        "--no-requeue",
        "--output=/dev/null",
        "--error=/dev/null",
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::piped());
    let start = std::time::Instant::now();
    let mut child = cmd.spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!("sbatch failed");
    }
    Ok((ms, String::from_utf8_lossy(&out.stdout).trim().to_owned()))
}
