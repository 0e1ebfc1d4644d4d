//! Issue 18's two numbers: how long from `bgtask send` starting until the
//! byte is readable by the task, and how fast a `--pty` task's output is
//! captured against the same task on pipes. Run with
//! `cargo run --release -p bench -- interactive [RUNS]`; prints a
//! markdown table (docs/BENCHMARKS.md, "Issue 18").

use std::io::Read;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::harness::{time_ok, Bgtask, Home, SETTLE};
use crate::stats::Series;

/// Bytes each capture run writes.
const CAPTURE_BYTES: u64 = 64 << 20;

pub fn run(bg: &Bgtask, runs: usize) -> Result<()> {
    let home = bg.home()?;
    let pipe = send_latency(&home, &["--stdin"], "x", runs)?;
    let pty = send_latency(&home, &["--pty"], "x\n", runs)?;
    let mut on_pipes = Series::new("`run --wait` of `yes … | head -c 64MiB`, pipes", "ms");
    let mut on_pty = Series::new("the same under `--pty`", "ms");
    let command = format!("yes 'bgtask benchmark output line' | head -c {CAPTURE_BYTES}");
    for i in 0..runs.clamp(3, 10) {
        for k in 0..2 {
            std::thread::sleep(SETTLE);
            if (i + k) % 2 == 0 {
                on_pipes.push(captured(&home, &[], &command)?);
            } else {
                on_pty.push(captured(&home, &["--pty"], &command)?);
            }
        }
    }
    // The screen's share: the same bytes, as a terminal shows them
    // (`\r\n` line ends), through the vt100 emulator alone, in-process.
    let text: Vec<u8> = b"bgtask benchmark output line\r\n"
        .iter()
        .copied()
        .cycle()
        .take(CAPTURE_BYTES as usize)
        .collect();
    let mut parse = Series::new("vt100 emulator alone, 64 MiB (in-process)", "ms");
    for _ in 0..3 {
        let start = Instant::now();
        let screen = bgtask_core::interact::render(&text, bgtask_core::interact::PtySize::DEFAULT);
        parse.push(start.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(screen);
    }
    let mib = CAPTURE_BYTES as f64 / (1 << 20) as f64;
    println!("| Measure | p50 | p90 | target |");
    println!("|---|---|---|---|");
    for (series, target) in [(&pipe, "≤ 5 ms"), (&pty, "≤ 5 ms")] {
        println!(
            "| {} ({} runs) | {:.2} ms | {:.2} ms | {target} |",
            series.label,
            series.len(),
            series.median(),
            series.percentile(90.0)
        );
    }
    for series in [&on_pipes, &on_pty, &parse] {
        println!(
            "| {} ({} runs) | {:.0} ms ({:.0} MiB/s) | {:.0} ms | |",
            series.label,
            series.len(),
            series.median(),
            mib / (series.median() / 1e3),
            series.percentile(90.0)
        );
    }
    println!(
        "| capture time under `--pty` / on pipes (medians) | {:.2}× | | ≤ 1.5× |",
        on_pty.median() / on_pipes.median()
    );
    Ok(())
}

/// From spawning `bgtask send` to the byte being readable on the task's
/// stdin. The task never reads (`sleep`); this process opens the task's
/// stdin (`/proc/PID/fd/0`: the same pipe, or the terminal's task side)
/// and its blocking read returns when the byte is there.
fn send_latency(home: &Home, mode: &[&str], data: &str, runs: usize) -> Result<Series> {
    let id = home.start(mode, "exec sleep 100000")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        let status = home.run_ok(&["--json", "status", &id])?;
        let task: serde_json::Value = serde_json::from_str(&status)?;
        if let Some(pid) = task["pid"].as_u64() {
            break pid;
        }
        if Instant::now() > deadline {
            bail!("task {id} did not start");
        }
        std::thread::sleep(SETTLE);
    };
    let mut stdin = std::fs::File::open(format!("/proc/{pid}/fd/0"))
        .with_context(|| format!("cannot open the stdin of task {id}"))?;
    let label = format!(
        "`bgtask send` → byte readable by the task, {}",
        mode.join(" ")
    );
    let mut series = Series::new(label, "ms");
    let mut buf = [0u8; 64];
    for _ in 0..runs {
        std::thread::sleep(SETTLE);
        let mut cmd = home.cmd(&["send", &id, data]);
        let start = Instant::now();
        let mut child = cmd.spawn()?;
        let n = stdin.read(&mut buf)?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        if n == 0 || !child.wait()?.success() {
            bail!("send to {id} failed");
        }
        series.push(ms);
    }
    home.run_ok(&["kill", "--grace", "0ms", &id])?;
    Ok(series)
}

fn captured(home: &Home, extra: &[&str], command: &str) -> Result<f64> {
    let mut args = vec![
        "--json",
        "run",
        "--wait",
        "10m",
        "--no-notify",
        "--max-output",
        "1GiB",
    ];
    args.extend_from_slice(extra);
    args.extend(["--", command]);
    let (ms, out) = time_ok(&mut home.cmd(&args))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    if v["status"] != "completed" {
        bail!("capture task did not complete: {out}");
    }
    for key in ["stdout_path", "stderr_path"] {
        if let Some(path) = v[key].as_str() {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(ms)
}
