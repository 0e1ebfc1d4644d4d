//! Figure 7 (issue 16): readiness and watches. How soon `run --ready-log`
//! returns after the task writes its ready line; how soon port readiness
//! is seen after the listen, against the probe backoff; and what one
//! watch costs the capture of 1 GiB of output, side by side with no watch.

use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::clock::{mono_ns, ms_between, read_stamp};
use crate::harness::{cpu_ticks, Bgtask, Home, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

/// The monitor's probe steps (monitor/watch.rs): 20 ms doubling to 500 ms.
const FIRST_STEP_MS: f64 = 20.0;
const MAX_STEP_MS: f64 = 500.0;

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let bench = std::env::current_exe()?;
    let home = bg.home()?;

    // 1. Log readiness: the task stamps, then prints its ready line. Side
    // by side, interleaved: the same task ending instead, seen by `bgtask
    // wait` (figure 3's path), so a loaded machine slows both alike.
    let mut log = Series::new(
        "`run --ready-log`: ready line written → `run` returned",
        "ms",
    );
    let mut log_printed = Series::new(
        "`run --ready-log`: ready line written → `run` printed the ready task",
        "ms",
    );
    let mut ended = Series::new(
        "reference: task ended → `bgtask wait` returned (same run, interleaved)",
        "ms",
    );
    let stamp = home.scratch().join("ready-stamp");
    for i in 0..plan.latency_runs.max(1) * 2 {
        std::thread::sleep(SETTLE);
        let _ = std::fs::remove_file(&stamp);
        if i % 2 == 1 {
            let command = format!(
                "read -r _ < '{}'; exec '{}' stamp '{}'",
                fifo(&home)?.display(),
                bench.display(),
                stamp.display()
            );
            let id = home.run_ok(&["run", "--no-notify", "--", &command])?;
            let mut waiter = home
                .cmd(&["wait", &id])
                .stdout(std::process::Stdio::null())
                .spawn()?;
            // The waiter is asleep before the task may end.
            std::thread::sleep(SETTLE);
            release(&home)?;
            waiter.wait()?;
            let seen = mono_ns();
            ended.push(ms_between(read_stamp(&stamp)?, seen));
            continue;
        }
        let command = format!(
            "'{}' stamp '{}'; echo READY; exec sleep 60",
            bench.display(),
            stamp.display()
        );
        let mut child = home
            .cmd(&["run", "--json", "--ready-log", "^READY$", "--", &command])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let mut answer = Vec::new();
        let mut buf = [0u8; 8192];
        // The answer is printed in one write, then the process exits.
        let n = stdout.read(&mut buf)?;
        let printed = mono_ns();
        answer.extend_from_slice(&buf[..n]);
        stdout.read_to_end(&mut answer)?;
        let status = child.wait()?;
        let seen = mono_ns();
        if !status.success() {
            bail!("run --ready-log failed: {status:?}");
        }
        let at = read_stamp(&stamp)?;
        log.push(ms_between(at, seen));
        log_printed.push(ms_between(at, printed));
        kill(&home, &answer)?;
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

    // 3. One watch on 1 GiB of lines, against none, interleaved: the wall
    // time of the capture and the CPU time of the monitor doing it (read
    // while the task holds at its end, so the load of other processes on
    // the machine does not count).
    let bytes = plan.output_bytes;
    let mut plain = Series::new("capture wall time, no pattern", "ms");
    let mut watched = Series::new("capture wall time, one watch (`ERROR`)", "ms");
    let mut plain_cpu = Series::new("monitor CPU time, no pattern", "ms");
    let mut watched_cpu = Series::new("monitor CPU time, one watch (`ERROR`)", "ms");
    let (go, done) = (home.scratch().join("go"), home.scratch().join("done"));
    let cap = (bytes * 3).to_string();
    let tick_ms = 1000.0 / rustix::param::clock_ticks_per_second() as f64;
    for i in 0..plan.throughput_runs.max(1) * 2 {
        let with_watch = (i % 2 == 1) ^ (i / 2 % 2 == 1);
        std::thread::sleep(SETTLE);
        let _ = std::fs::remove_file(&go);
        let _ = std::fs::remove_file(&done);
        let command = format!(
            "until [ -e '{go}' ]; do sleep 0.001; done; \
             yes 'bgtask benchmark output line' | head -c {bytes}; \
             until [ -e '{done}' ]; do sleep 0.01; done",
            go = go.display(),
            done = done.display()
        );
        let id = home.run_ok(&["run", "--no-notify", "--max-output", &cap, "--", &command])?;
        // The watch is armed (stored and told to the monitor) before the
        // output starts.
        if with_watch {
            home.run_ok(&["watch", &id, "ERROR"])?;
        }
        let status: serde_json::Value =
            serde_json::from_str(&home.run_ok(&["status", "--json", &id])?)?;
        let monitor = status["monitor_pid"].as_u64().context("no monitor pid")? as u32;
        let out_path = status["stdout_path"]
            .as_str()
            .context("no stdout path")?
            .to_owned();
        let cpu_before = cpu_ticks(monitor).context("monitor gone")?;
        let start = mono_ns();
        std::fs::write(&go, b"")?;
        while std::fs::metadata(&out_path).map_or(0, |m| m.len()) < bytes {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let ms = ms_between(start, mono_ns());
        let cpu = (cpu_ticks(monitor).context("monitor gone")? - cpu_before) as f64 * tick_ms;
        std::fs::write(&done, b"")?;
        home.run_ok(&["wait", &id])?;
        let _ = std::fs::remove_file(&out_path);
        if with_watch {
            watched.push(ms);
            watched_cpu.push(cpu);
        } else {
            plain.push(ms);
            plain_cpu.push(cpu);
        }
    }
    let size = if bytes >= 1 << 30 {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    };
    let checks = vec![
        Check::new(
            "`run --ready-log` returned (exited) p50",
            log.median(),
            "ms",
            Target::AtMost(5.0),
        ),
        Check::new(
            "`run --ready-log` returned (exited) p99",
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
            "`run --ready-log` printed its answer p50",
            log_printed.median(),
            "ms",
            Target::AtMost(5.0),
        ),
        Check::new(
            "`run --ready-log` printed its answer p99",
            log_printed.p99(),
            "ms",
            Target::AtMost(20.0),
        ),
        Check::new(
            "`run --ready-log` / task end seen by `wait` (medians, same run)",
            log.median() / ended.median(),
            "×",
            Target::None,
        ),
        Check::new(
            "port readiness: runs seen within the step in effect (+10 ms)",
            over_step.values.iter().filter(|v| **v <= 10.0).count() as f64 * 100.0
                / over_step.len().max(1) as f64,
            "%",
            Target::None,
        ),
        Check::new(
            format!("capture of {size}: monitor CPU, one watch / none (medians)"),
            watched_cpu.median() / plain_cpu.median(),
            "×",
            Target::AtMost(1.10),
        ),
        Check::new(
            format!("capture of {size}: wall time, one watch / none (medians)"),
            watched.median() / plain.median(),
            "×",
            Target::None,
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
             matching) or none, {} interleaved runs each: wall time from opening the gate \
             until the file holds it all, and the monitor's CPU time (utime + stime from \
             /proc) over the same span. Log readiness is shown beside a task's end seen by \
             `bgtask wait`, interleaved in the same run: on a loaded machine both move.",
            log.len(),
            plan.throughput_runs.max(1)
        ),
        series: vec![
            log,
            log_printed,
            ended,
            port_delay,
            over_step,
            plain,
            watched,
            plain_cpu,
            watched_cpu,
        ],
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

/// The fifo tasks of the reference series block on.
fn fifo(home: &Home) -> Result<std::path::PathBuf> {
    let path = home.scratch().join("gate");
    if !path.exists() {
        let status = std::process::Command::new("mkfifo").arg(&path).status()?;
        if !status.success() {
            bail!("mkfifo {} failed", path.display());
        }
    }
    Ok(path)
}

/// Lets a task blocked on the fifo go on.
fn release(home: &Home) -> Result<()> {
    use std::io::Write;
    let mut fifo = std::fs::OpenOptions::new().write(true).open(fifo(home)?)?;
    fifo.write_all(b"go\n")?;
    Ok(())
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
