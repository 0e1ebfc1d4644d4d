//! Figure 5: output. Reads of a task that wrote a lot cost the same as
//! reads of a task that wrote a little; and how fast a task's output is
//! captured, against the same command redirected straight to a file.

use std::process::Command;

use anyhow::{bail, Result};

use crate::harness::{json_task_id, time_ok, Bgtask, SETTLE};
use crate::report::{fmt_num, Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let bytes = plan.output_bytes;
    let size = human(bytes);
    let home = bg.home()?;
    // Cap well above the output so the whole of it stays in the file.
    let cap = format!("{}", bytes * 3);
    let big = start_writer(&home, &cap, bytes)?;
    let small = start_writer(&home, &cap, 1024)?;
    let file_len = std::fs::metadata(home.path().join(format!("out/{big}.out")))?.len();
    if file_len != bytes {
        bail!("the big task's stdout file holds {file_len} bytes, expected {bytes}");
    }

    let mut status_big = Series::new(format!("`bgtask status ID`, task wrote {size}"), "ms");
    let mut status_small = Series::new("`bgtask status ID`, task wrote 1 KiB", "ms");
    let mut logs_big = Series::new(
        format!("`bgtask logs --tail 4096 ID`, task wrote {size}"),
        "ms",
    );
    let mut logs_small = Series::new("`bgtask logs --tail 4096 ID`, task wrote 1 KiB", "ms");
    for i in 0..plan.command_runs * 2 {
        let mut order = [(&big, true), (&small, false)];
        if i % 2 == 1 {
            order.reverse();
        }
        for (id, is_big) in order {
            std::thread::sleep(SETTLE / 4);
            let (ms, _) = time_ok(&mut home.cmd(&["status", id]))?;
            if is_big {
                &mut status_big
            } else {
                &mut status_small
            }
            .push(ms);
            let (ms, out) = time_ok(&mut home.cmd(&["logs", "--tail", "4096", id]))?;
            if out.len() != 4096 && is_big {
                bail!("logs --tail 4096 printed {} bytes", out.len());
            }
            if is_big {
                &mut logs_big
            } else {
                &mut logs_small
            }
            .push(ms);
        }
    }

    // Capture throughput: the same command, straight to a file and under bgtask.
    let target = home.scratch().join("direct.out");
    let direct_cmd = format!("head -c {bytes} /dev/zero > '{}'", target.display());
    let task_cmd = format!("head -c {bytes} /dev/zero");
    let mut direct = Series::new(format!("`sh -c 'head -c {size} /dev/zero > FILE'`"), "ms");
    let mut capped = Series::new(
        format!("`bgtask run --wait` of `head -c {size} /dev/zero` (default 100 MiB cap)"),
        "ms",
    );
    let mut uncapped = Series::new(
        format!("`bgtask run --wait` of `head -c {size} /dev/zero` (`--max-output` above {size})"),
        "ms",
    );
    for i in 0..plan.throughput_runs {
        for k in 0..3 {
            std::thread::sleep(SETTLE);
            match (i + k) % 3 {
                0 => {
                    let (ms, _) = time_ok(Command::new("sh").args(["-c", &direct_cmd]))?;
                    direct.push(ms);
                    std::fs::remove_file(&target)?;
                }
                1 => capped.push(captured(&home, None, &task_cmd)?),
                _ => uncapped.push(captured(&home, Some(&cap), &task_cmd)?),
            }
        }
    }
    let mib = bytes as f64 / (1 << 20) as f64;
    let throughput = |s: &Series| mib / (s.median() / 1e3);
    let checks = vec![
        Check::new(
            "`status`: big / small (medians)",
            status_big.median() / status_small.median(),
            "×",
            Target::AtMost(1.5),
        ),
        Check::new(
            "`logs --tail 4096`: big / small (medians)",
            logs_big.median() / logs_small.median(),
            "×",
            Target::AtMost(1.5),
        ),
        Check::new(
            "throughput straight to a file",
            throughput(&direct),
            "MiB/s",
            Target::None,
        ),
        Check::new(
            "throughput under bgtask, default cap",
            throughput(&capped),
            "MiB/s",
            Target::None,
        ),
        Check::new(
            "throughput under bgtask, no compaction",
            throughput(&uncapped),
            "MiB/s",
            Target::None,
        ),
        Check::new(
            "capture time under bgtask (default cap) / straight to a file",
            capped.median() / direct.median(),
            "×",
            Target::None,
        ),
        Check::new(
            "capture time under bgtask (no compaction) / straight to a file",
            uncapped.median() / direct.median(),
            "×",
            Target::None,
        ),
    ];
    Ok(Section {
        key: "output",
        title: "5. Output".into(),
        method: format!(
            "A task that wrote {size} (`yes … | head -c {bytes}`, all of it kept on disk: \
             its stdout file is {}) and one that wrote 1 KiB; `status` and `logs --tail 4096` \
             on each, interleaved, {} times. Then capture throughput: `head -c {bytes} \
             /dev/zero` straight into a file against the same command under `bgtask run \
             --wait` (whole process, start to recorded end), {} interleaved runs each; \
             throughput is bytes / median time.",
            fmt_num(file_len as f64 / (1 << 20) as f64, "MiB"),
            plan.command_runs * 2,
            plan.throughput_runs
        ),
        series: vec![
            status_big,
            status_small,
            logs_big,
            logs_small,
            direct,
            capped,
            uncapped,
        ],
        checks,
        notes: Vec::new(),
    })
}

fn start_writer(home: &crate::harness::Home, cap: &str, bytes: u64) -> Result<String> {
    let out = home.run_ok(&[
        "--json",
        "run",
        "--wait",
        "10m",
        "--max-output",
        cap,
        "--",
        &format!("yes 'bgtask benchmark output line' | head -c {bytes}"),
    ])?;
    json_task_id(&out).ok_or_else(|| anyhow::anyhow!("no task id in {out}"))
}

/// Runs `command` under `bgtask run --wait` and deletes its output; ms.
fn captured(home: &crate::harness::Home, cap: Option<&str>, command: &str) -> Result<f64> {
    let mut args = vec!["--json", "run", "--wait", "10m", "--no-notify"];
    if let Some(cap) = cap {
        args.extend(["--max-output", cap]);
    }
    args.extend(["--", command]);
    let (ms, out) = time_ok(&mut home.cmd(&args))?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    if v.get("status").and_then(|s| s.as_str()) != Some("completed") {
        bail!("capture task did not complete: {out}");
    }
    for key in ["stdout_path", "stderr_path"] {
        if let Some(path) = v.get(key).and_then(|p| p.as_str()) {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(ms)
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{b} bytes"),
    }
}
