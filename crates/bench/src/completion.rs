//! Figure 3: completion latency, from the moment the task's process exits
//! to the moment an observer knows.
//!
//! The task blocks on a fifo until the bench releases it, then execs
//! `bench stamp FILE`, which writes CLOCK_MONOTONIC as its very last act and
//! exits. Each observer is idle (asleep in poll) before the release:
//! (a) a `bgtask wait ID` process, timed until it is reaped;
//! (b) a client of `bgtask serve`, timed until the `bash_completed` line is read;
//! (c) `Service::wait` in this process (the engine without a CLI).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::clock::{mono_ns, ms_between, read_stamp};
use crate::harness::{self, wait_until_polling, Bgtask, Home, SESSION, SETTLE};
use crate::report::{Check, Section, Target};
use crate::stats::Series;
use crate::Plan;

pub fn run(bg: &Bgtask, plan: &Plan) -> Result<Section> {
    let home = bg.home()?;
    let gate = Gate::new(&home)?;
    let mut cli = Series::new("(a) exit → `bgtask wait` process reaped", "ms");
    let mut push = Series::new(
        "(b) exit → `bash_completed` line read from `bgtask serve`",
        "ms",
    );
    let mut engine = Series::new("(c) exit → `Service::wait` returns (in-process)", "ms");
    // Warm-up.
    home.run_ok(&["run", "--wait", "10s", "--", "true"])?;

    for _ in 0..plan.completion_runs {
        std::thread::sleep(SETTLE);
        cli.push(through_wait_cli(&home, &gate)?);
    }

    let mut server = Server::start(&home)?;
    for _ in 0..plan.completion_runs {
        let id = home.start(&[], &gate.command())?;
        // The start's own transitions wake the push thread; let it settle.
        std::thread::sleep(SETTLE);
        server.wait_idle()?;
        gate.release()?;
        let seen = server.completion_of(&id)?;
        push.push(ms_between(gate.stamp()?, seen));
    }
    drop(server);

    let service = home.service()?;
    for _ in 0..plan.completion_runs {
        std::thread::sleep(SETTLE);
        let task = service.spawn(&crate::latency::request(&gate.command()))?;
        let (service, task_id) = (&service, &task.task_id);
        let seen = std::thread::scope(|scope| -> Result<u64> {
            let (tx, rx) = mpsc::channel();
            let observer = scope.spawn(move || -> Result<u64> {
                let _ = tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32);
                service.wait(std::slice::from_ref(task_id), Some(30_000))?;
                Ok(mono_ns())
            });
            let tid = rx.recv()?;
            wait_until_polling(std::process::id(), Some(tid))?;
            gate.release()?;
            observer
                .join()
                .map_err(|_| anyhow::anyhow!("observer panicked"))?
        })?;
        engine.push(ms_between(gate.stamp()?, seen));
    }

    let mut checks = Vec::new();
    for (name, s) in [("(a) `bgtask wait`", &cli), ("(b) `serve` push", &push)] {
        checks.push(Check::new(
            format!("{name} p50"),
            s.median(),
            "ms",
            Target::AtMost(5.0),
        ));
        checks.push(Check::new(
            format!("{name} p99"),
            s.p99(),
            "ms",
            Target::AtMost(20.0),
        ));
    }
    checks.push(Check::new(
        "(c) in-process p50",
        engine.median(),
        "ms",
        Target::None,
    ));
    Ok(Section {
        key: "completion",
        title: "3. Completion latency".into(),
        method: format!(
            "{} tasks per observer. Each task waits on a fifo, then execs `bench stamp FILE`, \
             which writes CLOCK_MONOTONIC (read with clock_gettime, comparable across \
             processes) and exits at once. The observer is started first and is asleep in \
             poll(2) (checked in /proc/PID/wchan) when the bench releases the task. The \
             latency is the observer's moment minus the stamp. For reference, AFT's \
             watchdog ticks every 500 ms and pueue's loop every 300 ms.",
            plan.completion_runs
        ),
        series: vec![cli, push, engine],
        checks,
        notes: Vec::new(),
    })
}

/// One task's completion latency as seen by a `bgtask wait` process: from
/// the task's exit to the waiter being reaped, in milliseconds.
pub fn through_wait_cli(home: &Home, gate: &Gate) -> Result<f64> {
    let id = home.start(&[], &gate.command())?;
    let mut waiter = home
        .cmd(&["wait", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_until_polling(waiter.id(), None)?;
    gate.release()?;
    waiter.wait()?;
    let seen = mono_ns();
    Ok(ms_between(gate.stamp()?, seen))
}

/// A fifo the task blocks on until released, and the stamp file it writes.
pub struct Gate {
    fifo: std::path::PathBuf,
    stamp: std::path::PathBuf,
    bench: std::path::PathBuf,
}

impl Gate {
    pub fn new(home: &Home) -> Result<Gate> {
        let fifo = home.scratch().join("gate");
        let status = Command::new("mkfifo").arg(&fifo).status()?;
        if !status.success() {
            bail!("mkfifo {} failed", fifo.display());
        }
        Ok(Gate {
            fifo,
            stamp: home.scratch().join("stamp"),
            bench: std::env::current_exe()?,
        })
    }

    pub fn command(&self) -> String {
        format!(
            "read -r _ < '{}'; exec '{}' stamp '{}'",
            self.fifo.display(),
            self.bench.display(),
            self.stamp.display()
        )
    }

    /// Lets the waiting task go on to stamp and exit.
    pub fn release(&self) -> Result<()> {
        let _ = std::fs::remove_file(&self.stamp);
        let mut fifo = std::fs::OpenOptions::new().write(true).open(&self.fifo)?;
        fifo.write_all(b"go\n")?;
        Ok(())
    }

    pub fn stamp(&self) -> Result<u64> {
        read_stamp(&self.stamp)
    }
}

/// A running `bgtask serve` whose stdout lines are timestamped as read.
pub struct Server {
    child: Child,
    lines: mpsc::Receiver<(u64, String)>,
}

impl Server {
    pub fn start(home: &Home) -> Result<Server> {
        let mut child = home
            .cmd(&["serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((mono_ns(), line)).is_err() {
                    break;
                }
            }
        });
        let mut server = Server { child, lines };
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"session":"{SESSION}"}}}}"#
        );
        let stdin = server.child.stdin.as_mut().context("no stdin")?;
        writeln!(stdin, "{init}")?;
        stdin.flush()?;
        server.next_matching(|v| v.get("id").and_then(|i| i.as_i64()) == Some(1))?;
        Ok(server)
    }

    /// Sends request `id` and waits for its reply: the round trip in ms
    /// (from before the write to the moment the reply line was read) and
    /// the reply's `result`.
    pub fn call(
        &mut self,
        id: i64,
        method: &str,
        params: serde_json::Value,
    ) -> Result<(f64, serde_json::Value)> {
        let frame =
            serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        let sent = mono_ns();
        writeln!(stdin, "{frame}")?;
        stdin.flush()?;
        let (at, reply) = self.next_value(|v| {
            v.get("method").is_none() && v.get("id").and_then(|i| i.as_i64()) == Some(id)
        })?;
        match reply.get("result") {
            Some(result) => Ok((ms_between(sent, at), result.clone())),
            None => bail!("{method} failed: {reply}"),
        }
    }

    /// Waits until the push thread sleeps in poll.
    fn wait_idle(&self) -> Result<()> {
        let pid = self.child.id();
        match harness::thread_named(pid, "bgtask-push") {
            Some(tid) => wait_until_polling(pid, Some(tid)),
            // A renamed push thread: fall back to a pause.
            None => {
                std::thread::sleep(Duration::from_millis(50));
                Ok(())
            }
        }
    }

    /// The moment the `bash_completed` line of task `id` was read.
    fn completion_of(&mut self, id: &str) -> Result<u64> {
        self.next_matching(|v| {
            v.get("method").and_then(|m| m.as_str()) == Some("bash_completed")
                && v.pointer("/params/task_id").and_then(|t| t.as_str()) == Some(id)
        })
    }

    fn next_matching(&mut self, want: impl Fn(&serde_json::Value) -> bool) -> Result<u64> {
        self.next_value(want).map(|(at, _)| at)
    }

    fn next_value(
        &mut self,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<(u64, serde_json::Value)> {
        loop {
            let (at, line) = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .context("bgtask serve sent nothing for 30 s")?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if want(&v) {
                    return Ok((at, v));
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // End of input should stop the server; it does not always (its push
        // thread keeps it alive), so give it a moment, then kill it.
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
