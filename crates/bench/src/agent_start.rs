//! Issue 17's start figure: a background `bash` request to a warm `bgtask
//! serve` and to a warm `bgtask mcp` (an MCP client of our own over stdio:
//! `initialize`, `notifications/initialized`, then `tools/call` of `bash`
//! with `background: true`), side by side with a cold `bgtask run -- true`
//! (target: each server at most the CLI, medians). Run with
//! `cargo run --release -p bench -- agent-start [--runs N] [--bgtask PATH]
//! [--baseline PATH]`; prints a markdown section for docs/BENCHMARKS.md.
//!
//! Every series is measured interleaved, in rotating order, with a settle
//! pause before each measurement; each task is waited for (unmeasured)
//! before the next. All three answer once the task is recorded (a
//! `--baseline` build older than the record-time answer of the servers
//! answers once the task runs).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::clock::{mono_ns, ms_between};
use crate::completion::Server;
use crate::harness::{load_average, time_ok, Bgtask, Home, SETTLE};
use crate::stats::Series;

/// One binary's three series.
struct Side {
    run: Series,
    serve: Series,
    mcp: Series,
}

pub fn run(bg: &Bgtask, baseline: Option<&Bgtask>, runs: usize) -> Result<()> {
    let load_before = load_average();
    let mut sides = Vec::new();
    let mut rigs = Vec::new();
    for (name, binary) in std::iter::once(("", bg)).chain(baseline.map(|b| (" (baseline)", b))) {
        let home = binary.home()?;
        // Warm-up: creates the store and pages the binary in.
        let id = home.start(&[], "true")?;
        home.run_ok(&["wait", &id])?;
        let server = Server::start(&home)?;
        let mcp = McpClient::start(&home)?;
        rigs.push(Rig {
            home,
            server,
            mcp,
            request_id: 100,
        });
        sides.push(Side {
            run: Series::new(format!("`bgtask run -- true` (whole process){name}"), "ms"),
            serve: Series::new(format!("background `bash` to `bgtask serve`{name}"), "ms"),
            mcp: Series::new(format!("background `bash` to `bgtask mcp`{name}"), "ms"),
        });
    }
    let kinds = 3 * rigs.len();
    for i in 0..runs {
        for k in 0..kinds {
            std::thread::sleep(SETTLE);
            let which = (i + k) % kinds;
            let (rig, side) = (&mut rigs[which / 3], &mut sides[which / 3]);
            match which % 3 {
                0 => side.run.push(rig.run_cli()?),
                1 => side.serve.push(rig.serve_bash()?),
                _ => side.mcp.push(rig.mcp_bash()?),
            }
        }
    }
    let load_after = load_average();
    println!("| Measurement | Median | p99 | Runs |");
    println!("|---|---:|---:|---:|");
    for side in &sides {
        for s in [&side.run, &side.serve, &side.mcp] {
            println!(
                "| {} | {:.2} ms | {:.2} ms | {} |",
                s.label,
                s.median(),
                s.p99(),
                s.len()
            );
        }
    }
    println!();
    println!("| Comparison | Value | Target | |");
    println!("|---|---:|---:|---|");
    let current = &sides[0];
    for (label, s) in [("serve", &current.serve), ("mcp", &current.mcp)] {
        let ratio = s.median() / current.run.median();
        let met = if ratio <= 1.0 { "met" } else { "**missed**" };
        println!("| background `bash` via `{label}` / `bgtask run` (medians) | {ratio:.2}× | ≤ 1.00× | {met} |");
    }
    if let Some(old) = sides.get(1) {
        for (label, new, before) in [
            ("`bgtask run`", &current.run, &old.run),
            ("`serve`", &current.serve, &old.serve),
            ("`mcp`", &current.mcp, &old.mcp),
        ] {
            println!(
                "| {label}: this build / baseline (medians) | {:.2}× | — | |",
                new.median() / before.median()
            );
        }
    }
    println!();
    println!(
        "{} iterations, {} series interleaved in rotating order, {} ms pause before each; \
         load average (1 min) {load_before} at the start and {load_after} at the end; {}.",
        runs,
        kinds,
        SETTLE.as_millis(),
        bg.version
    );
    let _ = std::io::stdout().flush();
    Ok(())
}

/// One binary's store, warm servers and request counter.
struct Rig {
    home: Home,
    server: Server,
    mcp: McpClient,
    request_id: i64,
}

impl Rig {
    fn run_cli(&mut self) -> Result<f64> {
        let (ms, out) = time_ok(&mut self.home.cmd(&["run", "--", "true"]))?;
        // Let the task end before the next measurement.
        self.home.run_ok(&["wait", out.trim()])?;
        Ok(ms)
    }

    fn serve_bash(&mut self) -> Result<f64> {
        self.request_id += 2;
        let params = json!({"command": "true", "background": true});
        let (ms, task) = self.server.call(self.request_id, "bash", params)?;
        if !task["task_id"].is_string() {
            bail!("serve's background bash returned no task: {task}");
        }
        let ids = json!({"task_ids": [task["task_id"]]});
        self.server.call(self.request_id + 1, "bash_wait", ids)?;
        Ok(ms)
    }

    fn mcp_bash(&mut self) -> Result<f64> {
        self.request_id += 2;
        let args = json!({"command": "true", "background": true});
        let (ms, result) = self.mcp.call_tool(self.request_id, "bash", args)?;
        let task = &result["structuredContent"];
        let Some(id) = task["task_id"].as_str() else {
            bail!("mcp's background bash returned no task: {result}");
        };
        let ids = json!({"task_ids": [id]});
        self.mcp.call_tool(self.request_id + 1, "bash_wait", ids)?;
        Ok(ms)
    }
}

/// A minimal MCP client over stdio (newline-delimited JSON-RPC, as the
/// MCP stdio transport specifies).
pub struct McpClient {
    child: Child,
    lines: mpsc::Receiver<(u64, String)>,
}

impl McpClient {
    pub fn start(home: &Home) -> Result<McpClient> {
        let mut child = home
            .cmd(&["mcp"])
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
        let mut client = McpClient { child, lines };
        let init = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bgtask-bench", "version": "0"}
            }
        });
        client.send(&init)?;
        client.reply(1)?;
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(client)
    }

    fn send(&mut self, frame: &Value) -> Result<u64> {
        let stdin = self.child.stdin.as_mut().context("no stdin")?;
        let sent = mono_ns();
        writeln!(stdin, "{frame}")?;
        stdin.flush()?;
        Ok(sent)
    }

    /// The reply to request `id` and when it was read.
    fn reply(&mut self, id: i64) -> Result<(u64, Value)> {
        loop {
            let (at, line) = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .context("no reply from bgtask mcp")?;
            let value: Value = serde_json::from_str(&line)?;
            if value.get("method").is_none() && value.get("id").and_then(Value::as_i64) == Some(id)
            {
                return Ok((at, value));
            }
        }
    }

    /// Calls tool `name`: the round trip in ms (from before the write to
    /// the moment the reply line was read) and the result.
    pub fn call_tool(&mut self, id: i64, name: &str, arguments: Value) -> Result<(f64, Value)> {
        let frame = json!({
            "jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}
        });
        let sent = self.send(&frame)?;
        let (at, reply) = self.reply(id)?;
        match reply.get("result") {
            Some(result) => Ok((ms_between(sent, at), result.clone())),
            None => bail!("tools/call {name} failed: {reply}"),
        }
    }
}

impl Drop for McpClient {
    fn drop(&mut self) {
        // End of input ends the server; give it a moment, then kill it.
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
