//! Figure 7: what a sandbox costs a start (issue 22): `bgtask run` with
//! `--sandbox workspace` (and `--no-network`) against the same command
//! unconfined, side by side.

use anyhow::Result;

use crate::harness::{time_ok, Bgtask, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let home = bg.home()?;
    let mut plain = Series::new("`bgtask run -- true`", "ms");
    let mut confined = Series::new("`bgtask run --sandbox workspace -- true`", "ms");
    let mut plain_wait = Series::new("`bgtask run --wait 10s -- true`", "ms");
    let mut confined_wait =
        Series::new("`bgtask run --wait 10s --sandbox workspace -- true`", "ms");
    let mut offline_wait = Series::new(
        "`bgtask run --wait 10s --sandbox workspace --no-network -- true`",
        "ms",
    );
    // Warm-up: creates the store and pages the binary in; fails early if
    // this kernel cannot sandbox.
    home.run_ok(&[
        "run",
        "--wait",
        "10s",
        "--sandbox",
        "workspace",
        "--",
        "true",
    ])?;
    for i in 0..plan.latency_runs {
        for k in 0..5 {
            std::thread::sleep(SETTLE);
            match (i + k) % 5 {
                0 | 1 => {
                    let sandboxed = (i + k) % 5 == 1;
                    let mut args = vec!["run"];
                    if sandboxed {
                        args.extend(["--sandbox", "workspace"]);
                    }
                    args.extend(["--", "true"]);
                    let (ms, out) = time_ok(&mut home.cmd(&args))?;
                    if sandboxed { &mut confined } else { &mut plain }.push(ms);
                    home.run_ok(&["wait", out.trim()])?;
                }
                2 => plain_wait
                    .push(time_ok(&mut home.cmd(&["run", "--wait", "10s", "--", "true"]))?.0),
                3 => confined_wait.push(
                    time_ok(&mut home.cmd(&[
                        "run",
                        "--wait",
                        "10s",
                        "--sandbox",
                        "workspace",
                        "--",
                        "true",
                    ]))?
                    .0,
                ),
                _ => offline_wait.push(
                    time_ok(&mut home.cmd(&[
                        "run",
                        "--wait",
                        "10s",
                        "--sandbox",
                        "workspace",
                        "--no-network",
                        "--",
                        "true",
                    ]))?
                    .0,
                ),
            }
        }
    }
    let checks = vec![
        Check::new(
            "`run --sandbox workspace` / `run` (medians: until the id is printed)",
            confined.median() / plain.median(),
            "×",
            Target::AtMost(1.2),
        ),
        Check::new(
            "`run --wait --sandbox workspace` / `run --wait` (medians: start to recorded end)",
            confined_wait.median() / plain_wait.median(),
            "×",
            Target::AtMost(1.2),
        ),
        Check::new(
            "`run --wait --sandbox workspace --no-network` / `run --wait` (medians)",
            offline_wait.median() / plain_wait.median(),
            "×",
            Target::None,
        ),
    ];
    Ok(Section {
        key: "sandbox",
        title: "7. Sandbox".into(),
        method: format!(
            "Wall time of `bgtask run` with and without `--sandbox workspace`, until the id \
             is printed (the starter's part: resolving the policy and asking the kernel's \
             Landlock ABI) and with `--wait` until the end is recorded (the monitor's part \
             too: the private TMPDIR made and removed, the Landlock ruleset built while \
             the starter records the task and applied in the child before its exec, and \
             with `--no-network` a user and network namespace). Interleaved in rotating order, {} times, {} ms pause before each.",
            plan.latency_runs,
            SETTLE.as_millis()
        ),
        series: vec![plain, confined, plain_wait, confined_wait, offline_wait],
        checks,
        notes: Vec::new(),
    })
}
