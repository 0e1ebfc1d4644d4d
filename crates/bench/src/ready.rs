//! Figure 7 (issue 16): readiness and watches. How soon `run --ready-log`
//! returns after the task writes its ready line; how soon port readiness
//! is seen after the listen, against the probe backoff; and what one
//! watch costs the capture of 1 GiB of output, side by side with no watch.

use anyhow::{bail, Context, Result};

use crate::clock::{mono_ns, ms_between, read_stamp};
use crate::harness::{Bgtask, Home, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

/// The monitor's probe steps (monitor/watch.rs): 20 ms doubling to 500 ms.
const FIRST_STEP_MS: f64 = 20.0;
const MAX_STEP_MS: f64 = 500.0;

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let bench = std::env::current_exe()?;
    let home = bg.home()?;

    // 1. Log readiness: the task stamps, then prints its ready line.
    let mut log = Series::new(
        "`run --ready-log`: ready line written → `run` returned",
        "ms",
    );
    let stamp = home.scratch().join("ready-stamp");
    for _ in 0..plan.latency_runs.max(1) {
        std::thread::sleep(SETTLE);
        let _ = std::fs::remove_file(&stamp);
        let command = format!(
            "'{}' stamp '{}'; echo READY; exec sleep 60",
            bench.display(),
            stamp.display()
        );
        let out = home
            .cmd(&["run", "--json", "--ready-log", "^READY$", "--", &command])
            .output()?;
        let seen = mono_ns();
        if !out.status.success() {
            bail!("run --ready-log failed: {out:?}");
        }
        log.push(ms_between(read_stamp(&stamp)?, seen));
        kill(&home, &out.stdout)?;
    }

    // 2. Port readiness: a listener that stamps at its listen, after a
    // delay spread over the first second (where the backoff grows).
    let mut port_delay = Series::new("`run --ready-port`: listen → `run` returned", "ms");
    let mut over_step = Series::new(
        "port readiness seen after the listen, minus the backoff step in effect",
        "ms",
    );
    let listen_stamp = home.scratch().join("listen-stamp");
    let port_runs = if plan.smoke { 5 } else { 60 };
    for i in 0..port_runs {
        std::thread::sleep(SETTLE);
        let _ = std::fs::remove_file(&listen_stamp);
        let port = free_port()?;
        let delay_ms = (i * 137) % 1000;
        let command = format!(
            "sleep {}; exec '{}' listen {port} '{}'",
            delay_ms as f64 / 1000.0,
            bench.display(),
            listen_stamp.display()
        );
        let started = mono_ns();
        let out = home
            .cmd(&[
                "run",
                "--json",
                "--ready-port",
                &port.to_string(),
                "--",
                &command,
            ])
            .output()?;
        let seen = mono_ns();
        if !out.status.success() {
            bail!("run --ready-port failed: {out:?}");
        }
        let listened = read_stamp(&listen_stamp)?;
        let delay = ms_between(listened, seen);
        port_delay.push(delay);
        over_step.push(delay - step_at(ms_between(started, listened)));
        kill(&home, &out.stdout)?;
    }

    // 3. One watch on 1 GiB of lines, against none, interleaved.
    let bytes = plan.output_bytes;
    let mut plain = Series::new("capture of the output, no pattern", "ms");
    let mut watched = Series::new("capture of the output, one watch (`ERROR`)", "ms");
    let gate = home.scratch().join("go");
    let cap = (bytes * 3).to_string();
    for i in 0..plan.throughput_runs.max(1) * 2 {
        let with_watch = (i % 2 == 1) ^ (i / 2 % 2 == 1);
        std::thread::sleep(SETTLE);
        let _ = std::fs::remove_file(&gate);
        let command = format!(
            "until [ -e '{}' ]; do sleep 0.001; done; yes 'bgtask benchmark output line' | head -c {bytes}",
            gate.display()
        );
        let id = home.run_ok(&["run", "--no-notify", "--max-output", &cap, "--", &command])?;
        // The watch is armed (stored and told to the monitor) before the
        // output starts.
        if with_watch {
            home.run_ok(&["watch", &id, "ERROR"])?;
        } else {
            home.run_ok(&["status", &id])?;
        }
        let start = mono_ns();
        std::fs::write(&gate, b"")?;
        let out = home.cmd(&["wait", "--json", &id]).output()?;
        let ms = ms_between(start, mono_ns());
        let task: serde_json::Value =
            serde_json::from_slice(&out.stdout).with_context(|| format!("wait printed {out:?}"))?;
        if task[0]["status"] != "completed" {
            bail!("the output task did not complete: {}", task[0]);
        }
        for key in ["stdout_path", "stderr_path"] {
            if let Some(path) = task[0][key].as_str() {
                let _ = std::fs::remove_file(path);
            }
        }
        if with_watch {
            watched.push(ms)
        } else {
            plain.push(ms)
        }
    }
    let size = if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    };
    let checks = vec![
        Check::new(
            "`run --ready-log` p50",
            log.median(),
            "ms",
            Target::AtMost(5.0),
        ),
        Check::new(
            "`run --ready-log` p99",
            log.p99(),
            "ms",
            Target::AtMost(20.0),
        ),
        Check::new(
            "port readiness: worst (seen − listen − step in effect)",
            over_step.percentile(100.0),
            "ms",
            Target::AtMost(10.0),
        ),
        Check::new(
            format!("capture of {size}: one watch / none (medians)"),
            watched.median() / plain.median(),
            "×",
            Target::AtMost(1.10),
        ),
    ];
    Ok(Section {
        key: "ready",
        title: "7. Readiness and watches (issue 16)".into(),
        method: format!(
            "Log readiness: {} runs of `bgtask run --ready-log '^READY$'` of a task that runs \
             `bench stamp FILE` (CLOCK_MONOTONIC as its last act) and then `echo READY`; \
             latency is the moment `run` returned minus the stamp (so it includes the \
             stamp process's exit). Port readiness: {port_runs} runs of `run --ready-port` of \
             a task that sleeps 0–1 s and then execs `bench listen PORT FILE` (bind, listen, \
             stamp); the monitor probes 20 ms doubling to 500 ms, so each delay is compared \
             with the probe step in effect at the listen. Watch cost: `yes … | head -c {bytes}` \
             ({size} of 29-byte lines) started on a gate, with one watch (`ERROR`, never \
             matching) or none, {} interleaved runs each; time from opening the gate to \
             `wait` returning.",
            log.len(),
            plan.throughput_runs.max(1)
        ),
        series: vec![log, port_delay, over_step, plain, watched],
        checks,
        notes: Vec::new(),
    })
}

/// The probe step in effect `ms` after the monitor began probing: the gap
/// between the probes before and after that moment.
fn step_at(ms: f64) -> f64 {
    let (mut at, mut step) = (0.0, FIRST_STEP_MS);
    while at + step <= ms {
        at += step;
        step = (step * 2.0).min(MAX_STEP_MS);
    }
    step
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn kill(home: &Home, run_json: &[u8]) -> Result<()> {
    let task: serde_json::Value = serde_json::from_slice(run_json)?;
    let id = task["task_id"].as_str().context("no task id")?;
    home.run_ok(&["kill", "--grace", "0ms", id])?;
    Ok(())
}

/// `bench listen PORT FILE`: listens on 127.0.0.1:PORT, stamps, and waits
/// to be killed (connections wait in the backlog).
pub fn listen(port: &str, stamp: &std::path::Path) -> Result<()> {
    let port: u16 = port.parse().context("bad port")?;
    let _listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    crate::clock::stamp(stamp)?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::step_at;

    #[test]
    fn the_step_follows_the_backoff() {
        assert_eq!(step_at(0.0), 20.0);
        assert_eq!(step_at(19.0), 20.0);
        assert_eq!(step_at(20.0), 40.0);
        assert_eq!(step_at(61.0), 80.0);
        assert_eq!(step_at(5000.0), 500.0);
    }
}
