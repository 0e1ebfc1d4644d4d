//! A line-oriented client for `bgtask serve` used by the fault tests.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub struct Serve {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Notifications and replies read while waiting for something else.
    backlog: Vec<Value>,
    next_id: u64,
}

impl Serve {
    pub fn start(cmd: Command) -> Serve {
        Self::start_with(cmd, "serve")
    }

    /// Starts `bgtask mcp` (newline-delimited JSON-RPC too).
    pub fn start_mcp(cmd: Command) -> Serve {
        Self::start_with(cmd, "mcp")
    }

    fn start_with(mut cmd: Command, subcommand: &str) -> Serve {
        let mut child = cmd
            .arg(subcommand)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bgtask serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value =
                    serde_json::from_str(&line).expect("server wrote a non-JSON line");
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Serve {
            stdin: child.stdin.take(),
            child,
            lines,
            backlog: Vec::new(),
            next_id: 1,
        }
    }

    /// Sends raw bytes followed by a newline.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Sends a request and returns its id without waiting.
    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let line =
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        self.send_raw(line.as_bytes());
        id
    }

    /// Sends a request and waits for its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.reply(id)
    }

    pub fn reply(&mut self, id: u64) -> Value {
        self.next_matching(|v| v["id"] == id).expect("reply")
    }

    /// The next message (from the backlog first) that matches, within 30 s.
    pub fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return Some(self.backlog.remove(i));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let value = self.lines.recv_timeout(left).ok()?;
            if pred(&value) {
                return Some(value);
            }
            self.backlog.push(value);
        }
    }

    /// Everything received so far (without waiting).
    pub fn drain_received(&mut self) -> Vec<Value> {
        let mut all = std::mem::take(&mut self.backlog);
        all.extend(self.lines.try_iter());
        all
    }

    /// Closes stdin and waits for the server to exit.
    pub fn close(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().unwrap()
    }

    pub fn kill9(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        // A failed test must not leave its server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
