//! A JSON-lines client for `bgtask serve` and `bgtask mcp` (both speak
//! newline-delimited JSON-RPC on stdio), as a plugin would be: it writes
//! requests to the server's stdin and reads frames from its stdout on a
//! background thread, so a test can wait for "the reply to request N" or
//! "the next notification M" in whatever order they arrive. Shared by the
//! serve and fault tests: each binary includes it as its `client` module.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixture::{Bg, PATIENCE};

/// One line the server wrote: a JSON value with its text, or the text that
/// was not one.
type Line = Result<(Value, String), String>;

pub struct Server {
    child: Child,
    /// Where the server's stderr (its diagnostics) goes.
    stderr_path: PathBuf,
    stdin: Option<ChildStdin>,
    lines: Receiver<Line>,
    reader: Option<JoinHandle<()>>,
    /// Every frame taken from the server so far, in arrival order.
    seen: Vec<Value>,
    /// The same frames as the server wrote them (without newline).
    seen_text: Vec<String>,
    /// Frames seen but not yet claimed by a wait.
    unclaimed: Vec<Value>,
    next_id: i64,
    exit: Option<ExitStatus>,
}

impl Bg {
    /// Starts `bgtask serve` with this fixture's home and session.
    pub fn serve(&self) -> Server {
        self.serve_with(self.cmd())
    }

    /// Starts `bgtask serve` from a prepared command (other env, session).
    pub fn serve_with(&self, cmd: Command) -> Server {
        self.server(cmd, "serve")
    }

    /// Starts `bgtask mcp` from a prepared command. The caller speaks MCP
    /// (`initialize`, `tools/call`) through the same JSON-RPC calls.
    pub fn mcp_with(&self, cmd: Command) -> Server {
        self.server(cmd, "mcp")
    }

    fn server(&self, mut cmd: Command, subcommand: &str) -> Server {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let stderr_path = self.path(&format!("{subcommand}-{n}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).expect("create the stderr log");
        let mut child = cmd
            .arg(subcommand)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start bgtask serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdout.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
                        let frame = match serde_json::from_slice(&line) {
                            Ok(value) => Ok((value, text)),
                            Err(_) => Err(text),
                        };
                        if send.send(frame).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Server {
            stderr_path,
            stdin: child.stdin.take(),
            child,
            lines,
            reader: Some(reader),
            seen: Vec::new(),
            seen_text: Vec::new(),
            unclaimed: Vec::new(),
            next_id: 1,
            exit: None,
        }
    }
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes raw bytes to the server's stdin.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).expect("write to the server");
        stdin.flush().expect("flush to the server");
    }

    /// Writes `bytes` and a newline to the server's stdin.
    pub fn send_line(&mut self, bytes: &[u8]) {
        let mut line = bytes.to_vec();
        line.push(b'\n');
        self.send_raw(&line);
    }

    /// Sends one frame as a line.
    pub fn send(&mut self, frame: &Value) {
        let mut line = frame.to_string();
        line.push('\n');
        self.send_raw(line.as_bytes());
    }

    /// Sends a request and returns its id without waiting for the reply.
    pub fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Waits for the reply to request `id` (the whole frame).
    #[track_caller]
    pub fn reply(&mut self, id: impl Into<Value>) -> Value {
        let id = id.into();
        let reply = self.claim(&format!("the reply to request {id}"), |f| {
            f.get("method").is_none() && f["id"] == id
        });
        assert!(
            reply.get("result").is_some() != reply.get("error").is_some(),
            "a reply has exactly one of result and error: {reply}"
        );
        reply
    }

    /// Sends a request and returns its result; fails on an error reply.
    #[track_caller]
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        let reply = self.reply(id);
        assert!(reply.get("error").is_none(), "{method} failed: {reply}");
        reply["result"].clone()
    }

    /// Sends a request and returns its whole reply frame (result or error).
    #[track_caller]
    pub fn call_frame(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        self.reply(id)
    }

    /// Sends a request and returns its error object; fails on a result.
    #[track_caller]
    pub fn call_error(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params);
        let reply = self.reply(id);
        assert!(
            reply.get("result").is_none(),
            "{method} was expected to fail: {reply}"
        );
        reply["error"].clone()
    }

    /// Waits for the next notification `method` whose params satisfy
    /// `wanted`, and returns its params.
    #[track_caller]
    pub fn notification(&mut self, method: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let frame = self.claim(&format!("a {method} notification"), |f| {
            f["method"] == method && wanted(&f["params"])
        });
        assert!(
            frame.get("id").is_none(),
            "a notification has no id: {frame}"
        );
        frame["params"].clone()
    }

    /// Waits for the `bash_completed` notification of a task.
    #[track_caller]
    pub fn completion(&mut self, task_id: &str) -> Value {
        self.notification("bash_completed", |p| p["task_id"] == task_id)
    }

    /// Whether a notification `method` for `task_id` has arrived so far.
    /// Frames come in the order the server sends them, so once a later
    /// frame is seen this is final.
    pub fn has_seen(&self, method: &str, task_id: &str) -> bool {
        self.seen
            .iter()
            .any(|f| f["method"] == method && f["params"]["task_id"] == task_id)
    }

    /// Whether the reply to request `id` has arrived so far.
    pub fn has_reply(&self, id: i64) -> bool {
        self.seen
            .iter()
            .any(|f| f.get("method").is_none() && f["id"] == id)
    }

    /// The next frame, seen or still to come, that `wanted` accepts; `None`
    /// if none arrives in time or the server closes stdout first.
    pub fn next_matching(&mut self, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
        self.try_claim(&wanted).ok()
    }

    /// Every frame received so far and not yet claimed, without waiting;
    /// they count as claimed afterwards.
    pub fn drain_received(&mut self) -> Vec<Value> {
        while let Ok(line) = self.lines.try_recv() {
            let frame = self.take(line, "frames already received");
            self.unclaimed.push(frame);
        }
        std::mem::take(&mut self.unclaimed)
    }

    /// Ends the server at once with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.exit = Some(status);
        }
    }

    /// Every frame seen so far, in arrival order.
    pub fn seen(&self) -> &[Value] {
        &self.seen
    }

    /// Every frame seen so far as the server wrote it, in arrival order.
    pub fn seen_text(&self) -> &[String] {
        &self.seen_text
    }

    /// Closes stdin (end of input) without waiting for the server.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Closes stdin, waits for the server to exit, and checks it did not
    /// panic on the way.
    #[track_caller]
    pub fn close(&mut self) -> ExitStatus {
        self.close_stdin();
        if let Some(status) = self.exit {
            return status;
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                self.exit = Some(status);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit after its stdin closed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the reader thread panicked");
        }
        let stderr = self.stderr();
        assert!(
            !stderr.contains("panicked"),
            "the server panicked: {stderr}"
        );
        self.exit.expect("exit status")
    }

    /// Takes the first frame, seen or still to come, that `wanted` accepts.
    #[track_caller]
    fn claim(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        match self.try_claim(&wanted) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => panic!(
                "timed out waiting for {what}; frames so far: {:#?}",
                self.seen
            ),
            Err(RecvTimeoutError::Disconnected) => panic!(
                "the server closed stdout while the test waited for {what}; frames: {:#?}",
                self.seen
            ),
        }
    }

    /// [`Server::claim`], telling why nothing came instead of failing.
    fn try_claim(&mut self, wanted: &dyn Fn(&Value) -> bool) -> Result<Value, RecvTimeoutError> {
        if let Some(i) = self.unclaimed.iter().position(wanted) {
            return Ok(self.unclaimed.remove(i));
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left)?;
            let frame = self.take(line, "a frame");
            if wanted(&frame) {
                return Ok(frame);
            }
            self.unclaimed.push(frame);
        }
    }

    /// Records a line the server wrote; it must be a JSON-RPC 2.0 frame.
    #[track_caller]
    fn take(&mut self, line: Line, what: &str) -> Value {
        let frame = match line {
            Ok((frame, text)) => {
                self.seen_text.push(text);
                frame
            }
            Err(text) => {
                panic!("the server wrote a line that is not JSON (waiting for {what}): {text:?}")
            }
        };
        assert_eq!(frame["jsonrpc"], "2.0", "every frame is JSON-RPC 2.0");
        self.seen.push(frame.clone());
        frame
    }
}

impl Drop for Server {
    /// Ends the server as a client would (end of input), and kills it only
    /// if it does not exit in time. Never panics.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("stderr of the server:\n{}", self.stderr());
        }
        self.stdin = None;
        if self.exit.is_none() {
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if let Ok(Some(_)) | Err(_) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}
