//! Issue 18's two numbers: how long from `bgtask send` starting until the
//! byte is readable by the task, and how fast a `--pty` task's output is
//! captured against the same task on pipes. Run with
//! `cargo run --release -p bench -- interactive [RUNS]`; prints a
//! markdown table (docs/BENCHMARKS.md, "Issue 18").

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::harness::{time_ok, Bgtask, Home, SETTLE};
use crate::stats::Series;

/// Bytes each capture run writes.
const CAPTURE_BYTES: u64 = 64 << 20;

/// `baseline`: an older bgtask binary whose `--pty` capture runs
/// interleaved with the others (a before-and-after in one run).
pub fn run(bg: &Bgtask, runs: usize, baseline: Option<&Bgtask>) -> Result<()> {
    let home = bg.home()?;
    let baseline = baseline.map(Bgtask::home).transpose()?;
    let pipe = send_latency(&home, &["--stdin"], "x", runs)?;
    let pty = send_latency(&home, &["--pty"], "x\n", runs)?;
    let command = format!("yes 'bgtask benchmark output line' | head -c {CAPTURE_BYTES}");
    let load_before = load_average();
    // Five ways to capture the same output, interleaved in rotating order
    // (the machine is shared: noise hits every series alike). The minimal
    // readers are the kernel's ceiling: a loop that waits, reads the pipe
    // or the terminal's master side into a 64 KiB buffer and writes it to
    // a file, and nothing else.
    let mut series = [
        Series::new("`run --wait`, pipes", "ms"),
        Series::new("`run --wait --pty`", "ms"),
        Series::new("minimal reader, a pipe (poll, read, write to a file)", "ms"),
        Series::new(
            "minimal reader, a pty (poll, read the master, write to a file)",
            "ms",
        ),
        Series::new(
            "`script -qc … /dev/null` (util-linux, a pty, no bgtask)",
            "ms",
        ),
        Series::new("`run --wait --pty`, baseline binary", "ms"),
        Series::new(
            "minimal reader, a pty with `-opost` (not bgtask's setting: the line discipline's per-line share)",
            "ms",
        ),
    ];
    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let scratch = home.scratch().join("capture.out");
    for i in 0..runs.clamp(3, 10) {
        for k in 0..series.len() {
            let which = (i + k) % series.len();
            std::thread::sleep(SETTLE);
            let ms = match which {
                0 => captured(&home, &[], &command)?,
                1 => captured(&home, &["--pty"], &command)?,
                2 => minimal_pipe(&command, &scratch)?,
                3 => minimal_pty(&command, &scratch, true)?,
                4 if has_script => script(&command)?,
                5 => match &baseline {
                    Some(home) => captured(home, &["--pty"], &command)?,
                    None => continue,
                },
                6 => minimal_pty(&command, &scratch, false)?,
                _ => continue,
            };
            series[which].push(ms);
        }
    }
    let _ = std::fs::remove_file(&scratch);
    let [on_pipes, on_pty, min_pipe, min_pty, by_script, on_pty_baseline, min_pty_raw] = series;
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
    for series in [
        &on_pipes,
        &on_pty,
        &on_pty_baseline,
        &min_pipe,
        &min_pty,
        &min_pty_raw,
        &by_script,
        &parse,
    ] {
        if series.len() == 0 {
            continue;
        }
        println!(
            "| {} ({} runs) | {:.0} ms ({:.0} MiB/s) | {:.0} ms | |",
            series.label,
            series.len(),
            series.median(),
            mib / (series.median() / 1e3),
            series.percentile(90.0)
        );
    }
    let ratio = |a: &Series, b: &Series| a.median() / b.median();
    println!(
        "| capture time under `--pty` / on pipes (medians) | {:.2}× | | ≤ 1.5× |",
        ratio(&on_pty, &on_pipes)
    );
    println!(
        "| the kernel's own: minimal pty reader / minimal pipe reader | {:.2}× | | |",
        ratio(&min_pty, &min_pipe)
    );
    println!(
        "| bgtask's share under `--pty`: `run --wait --pty` / minimal pty reader | {:.2}× | | |",
        ratio(&on_pty, &min_pty)
    );
    println!(
        "| bgtask's share on pipes: `run --wait` / minimal pipe reader | {:.2}× | | |",
        ratio(&on_pipes, &min_pipe)
    );
    println!(
        "\n1-minute load average at the start and at the end of the capture runs: {load_before} and {}",
        load_average()
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

/// The 1-minute load average (other builds share the machine).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// `sh -c COMMAND` with its stdout and stderr on a pipe this process
/// reads to its end into `file`: the least any capture can cost.
fn minimal_pipe(command: &str, file: &Path) -> Result<f64> {
    let mut out = std::fs::File::create(file)?;
    let start = Instant::now();
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut pipe = child.stdout.take().context("no stdout pipe")?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = pipe.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    child.wait()?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// The same under a pseudo-terminal with the kernel's default settings
/// (as bgtask's): poll the master side, read, write to `file`, until the
/// terminal's last holder closes it (EIO). Without `opost`, output
/// processing is turned off (`stty -opost`: no `\n` → `\r\n`), which
/// bgtask does not do: it changes what programs see.
fn minimal_pty(command: &str, file: &Path, opost: bool) -> Result<f64> {
    let mut out = std::fs::File::create(file)?;
    let start = Instant::now();
    let (master, slave) = open_pty()?;
    if !opost {
        let mut termios = rustix::termios::tcgetattr(&slave)?;
        termios.output_modes -= rustix::termios::OutputModes::OPOST;
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios)?;
    }
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave))
        .spawn()?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut fds = [rustix::event::PollFd::new(
            &master,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        match rustix::io::read(&master, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => break,
            Ok(n) => out.write_all(&buf[..n])?,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    child.wait()?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// A new pseudo-terminal with the kernel's default settings, 24x80:
/// (master, slave), as bgtask opens one.
fn open_pty() -> Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::OpenptFlags;
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    let master = rustix::pty::openpt(flags)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let slave = rustix::pty::ioctl_tiocgptpeer(&master, flags)?;
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok((master, slave))
}

/// util-linux `script`, its typescript thrown away.
fn script(command: &str) -> Result<f64> {
    let mut cmd = Command::new("script");
    cmd.args(["-qc", command, "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let start = Instant::now();
    if !cmd.status()?.success() {
        bail!("script failed");
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
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
