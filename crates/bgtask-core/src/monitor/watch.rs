//! What the monitor looks for in a task's output and around it: its
//! readiness condition (a log line, a port, an HTTP answer) and its
//! watches. Lines are matched as the output flows through the monitor
//! (`LineScanner`, nothing read back from files); ports and URLs are
//! probed with a backoff from 20 ms doubling to 500 ms, never faster.
//!
//! A task with neither costs nothing: `Watching::is_idle` is checked
//! before any output is looked at.
//!
//! Each watch notifies at most once per cooldown: the first match at once,
//! later ones counted, and the count reported ("+N more matches", with the
//! last matching line) when the cooldown ends or the task does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use super::log;
use crate::clock::now_ms;
use crate::ready::{self, HttpTarget, LineScanner, ReadyCondition, ReadySpec};
use crate::store::{Store, WatchHit};
use crate::task::TaskId;

/// First pause between two probes, and the longest.
const FIRST_PROBE_STEP: Duration = Duration::from_millis(20);
const MAX_PROBE_STEP: Duration = Duration::from_millis(500);
/// How long one probe may take: a local connect answers at once; an HTTP
/// server that accepts but does not answer is given this long.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// A pending readiness condition.
struct Pending {
    spec: ReadySpec,
    regex: Option<Regex>,
    http: Option<HttpTarget>,
    deadline: Instant,
    next_probe: Instant,
    step: Duration,
}

/// An active watch.
struct Active {
    id: String,
    regex: Regex,
    once: bool,
    cooldown: Duration,
    /// When it last notified.
    fired: Option<Instant>,
    /// Matches since then not reported, and the last of their lines.
    unreported: u64,
    last_line: String,
    last_stream: &'static str,
}

/// What to do after a timer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Nothing,
    /// The readiness timeout passed and the task asked to be ended then.
    Kill,
}

/// The monitor's readiness and watches of one task.
#[derive(Default)]
pub(super) struct Watching {
    ready: Option<Pending>,
    watches: Vec<Active>,
    /// Every pattern a line is tested against: the readiness one first.
    patterns: Vec<Regex>,
    scanners: [LineScanner; 2],
}

impl Watching {
    /// The task's pending readiness and stored watches.
    pub fn new(store: &Store, id: &TaskId, ready: Option<ReadySpec>, started: Instant) -> Self {
        let mut watching = Watching::default();
        if let Some(spec) = ready {
            let regex = match &spec.condition {
                ReadyCondition::Log { pattern } => ready::compile(pattern, "ready.log").ok(),
                _ => None,
            };
            let http = match &spec.condition {
                ReadyCondition::Http { url } => HttpTarget::parse(url).ok(),
                _ => None,
            };
            watching.ready = Some(Pending {
                deadline: started + Duration::from_millis(spec.timeout_ms),
                next_probe: started,
                step: FIRST_PROBE_STEP,
                spec,
                regex,
                http,
            });
        }
        watching.reload(store, id);
        watching
    }

    /// Moves the readiness timeout later by `by`, the time the task was
    /// paused (issue 21): a paused task's time does not count.
    pub fn postpone(&mut self, by: Duration) {
        if let Some(p) = &mut self.ready {
            p.deadline = p.deadline.checked_add(by).unwrap_or(p.deadline);
        }
    }

    /// Nothing to look for: output is not looked at.
    pub fn is_idle(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Re-reads the task's active watches from the store (a new watch, an
    /// unwatch), keeping the state of those that stay.
    pub fn reload(&mut self, store: &Store, id: &TaskId) {
        let stored = match store.watches(Some(id), None) {
            Ok(w) => w,
            Err(e) => {
                log(&format!("{id}: cannot read watches: {e}"));
                return;
            }
        };
        let mut old = std::mem::take(&mut self.watches);
        for w in stored.into_iter().filter(|w| w.ended_at.is_none()) {
            if let Some(at) = old.iter().position(|a| a.id == w.watch_id) {
                self.watches.push(old.swap_remove(at));
                continue;
            }
            match ready::compile(&w.pattern, "pattern") {
                Ok(regex) => self.watches.push(Active {
                    id: w.watch_id,
                    regex,
                    once: w.once,
                    cooldown: Duration::from_millis(w.cooldown_ms),
                    fired: None,
                    unreported: 0,
                    last_line: String::new(),
                    last_stream: "stdout",
                }),
                Err(e) => log(&format!("{id}: watch {}: {e}", w.watch_id)),
            }
        }
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.patterns.clear();
        if let Some(re) = self.ready.as_ref().and_then(|p| p.regex.clone()) {
            self.patterns.push(re);
        }
        self.patterns
            .extend(self.watches.iter().map(|w| w.regex.clone()));
    }

    /// Looks at output read from stream `which` (0 stdout, 1 stderr).
    pub fn output(&mut self, store: &mut Store, id: &TaskId, which: usize, data: &[u8]) {
        if self.is_idle() {
            return;
        }
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let patterns = &self.patterns;
        self.scanners[which].feed(data, patterns, |line| {
            if patterns.iter().any(|p| p.is_match(line)) {
                lines.push(line.to_vec());
            }
        });
        for line in lines {
            self.line(store, id, which, &line);
        }
    }

    /// The streams ended: their last incomplete lines count too.
    pub fn streams_ended(&mut self, store: &mut Store, id: &TaskId) {
        if self.is_idle() {
            return;
        }
        for which in 0..2 {
            let mut lines: Vec<Vec<u8>> = Vec::new();
            self.scanners[which].finish(|line| lines.push(line.to_vec()));
            for line in lines {
                self.line(store, id, which, &line);
            }
        }
    }

    fn line(&mut self, store: &mut Store, id: &TaskId, which: usize, line: &[u8]) {
        let stream = if which == 0 { "stdout" } else { "stderr" };
        let ready_hit = self
            .ready
            .as_ref()
            .and_then(|p| p.regex.as_ref())
            .is_some_and(|re| re.is_match(line));
        if ready_hit {
            self.became_ready(store, id, &ready::reported_line(line));
        }
        let now = Instant::now();
        let mut ended = false;
        for w in &mut self.watches {
            if !w.regex.is_match(line) {
                continue;
            }
            let cooling = w.fired.is_some_and(|f| now < f + w.cooldown);
            if cooling {
                w.unreported += 1;
                w.last_line = ready::reported_line(line);
                w.last_stream = stream;
                continue;
            }
            let hit = WatchHit {
                watch_id: &w.id,
                line: &ready::reported_line(line),
                stream,
                more_matches: 0,
                ends: w.once,
            };
            record_hit(store, id, &hit);
            w.fired = Some(now);
            if w.once {
                ended = true;
            }
        }
        if ended {
            self.watches.retain(|w| !(w.once && w.fired.is_some()));
            self.rebuild();
        }
    }

    fn became_ready(&mut self, store: &mut Store, id: &TaskId, detail: &str) {
        if self.ready.take().is_none() {
            return;
        }
        match store.record_ready(id, now_ms(), detail) {
            Ok(_) => store.touch_events(),
            Err(e) => log(&format!("{id}: cannot record readiness: {e}")),
        }
        // After the record: a starter waiting on the go pipe reads it next.
        crate::process::release_go_pipe();
        self.rebuild();
    }

    /// The next time a timer is due: a probe, the readiness timeout, the
    /// end of a cooldown with unreported matches.
    pub fn next_deadline(&self) -> Option<Instant> {
        let ready = self.ready.as_ref().map(|p| match p.spec.condition {
            ReadyCondition::Log { .. } => p.deadline,
            _ => p.next_probe.min(p.deadline),
        });
        let cooldowns = self
            .watches
            .iter()
            .filter(|w| w.unreported > 0)
            .filter_map(|w| w.fired.map(|f| f + w.cooldown));
        ready.into_iter().chain(cooldowns).min()
    }

    /// Runs the timers that are due at `now`.
    pub fn tick(&mut self, store: &mut Store, id: &TaskId, now: Instant) -> Verdict {
        let mut verdict = Verdict::Nothing;
        let mut probed = None;
        if let Some(p) = &mut self.ready {
            let due = p.next_probe <= now;
            probed = match &p.spec.condition {
                ReadyCondition::Port { port } if due => Some(probe_port(*port)),
                ReadyCondition::Http { .. } if due => Some(p.http.as_ref().and_then(probe_http)),
                _ => None,
            };
            if probed == Some(None) {
                p.next_probe = Instant::now() + p.step;
                p.step = (p.step * 2).min(MAX_PROBE_STEP);
            }
        }
        if let Some(Some(detail)) = probed {
            self.became_ready(store, id, &detail);
        }
        if let Some(p) = &self.ready {
            if p.deadline <= now {
                let reason = format!(
                    "not ready after {}",
                    crate::units::format_duration_ms(p.spec.timeout_ms)
                );
                match store.record_ready_timeout(id, now_ms(), &reason) {
                    Ok(_) => store.touch_events(),
                    Err(e) => log(&format!("{id}: cannot record the readiness timeout: {e}")),
                }
                crate::process::release_go_pipe();
                if p.spec.kill_if_not_ready {
                    verdict = Verdict::Kill;
                }
                self.ready = None;
                self.rebuild();
            }
        }
        for w in &mut self.watches {
            let due = w.fired.is_some_and(|f| f + w.cooldown <= now);
            if w.unreported > 0 && due {
                flush(store, id, w, now);
            }
        }
        verdict
    }

    /// The task ended: matches still counted are reported now.
    pub fn ended(&mut self, store: &mut Store, id: &TaskId) {
        let now = Instant::now();
        for w in &mut self.watches {
            if w.unreported > 0 {
                flush(store, id, w, now);
            }
        }
    }
}

/// Reports a watch's counted matches.
fn flush(store: &mut Store, id: &TaskId, w: &mut Active, now: Instant) {
    let hit = WatchHit {
        watch_id: &w.id,
        line: &w.last_line,
        stream: w.last_stream,
        more_matches: w.unreported,
        ends: false,
    };
    record_hit(store, id, &hit);
    w.unreported = 0;
    w.fired = Some(now);
}

fn record_hit(store: &mut Store, id: &TaskId, hit: &WatchHit<'_>) {
    match store.record_watch_match(id, hit, now_ms()) {
        Ok(_) => store.touch_events(),
        Err(e) => log(&format!("{id}: cannot record watch {}: {e}", hit.watch_id)),
    }
}

/// Whether something accepts connections on the port, on IPv4 or IPv6
/// loopback; what answered.
fn probe_port(port: u16) -> Option<String> {
    let addrs: [SocketAddr; 2] = [
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ];
    addrs.iter().find_map(|addr| {
        TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
            .ok()
            .map(|_| format!("{addr} accepts connections"))
    })
}

/// A GET of the target; `Some` when it answers with a status below 500.
fn probe_http(target: &HttpTarget) -> Option<String> {
    let addrs: Vec<SocketAddr> = match target.host.as_str() {
        "::1" => vec![SocketAddr::from((
            std::net::Ipv6Addr::LOCALHOST,
            target.port,
        ))],
        "127.0.0.1" => vec![SocketAddr::from(([127, 0, 0, 1], target.port))],
        _ => vec![
            SocketAddr::from(([127, 0, 0, 1], target.port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, target.port)),
        ],
    };
    addrs.iter().find_map(|addr| {
        let mut stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(HTTP_TIMEOUT)).ok()?;
        let host = if target.host.contains(':') {
            format!("[{}]:{}", target.host, target.port)
        } else {
            format!("{}:{}", target.host, target.port)
        };
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: bgtask\r\nConnection: close\r\n\r\n",
            target.path
        );
        stream.write_all(request.as_bytes()).ok()?;
        let mut head = [0u8; 64];
        let mut got = 0;
        while got < 12 {
            match stream.read(&mut head[got..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        let status = parse_status(&head[..got])?;
        (status < 500).then(|| format!("GET http://{host}{} answered {status}", target.path))
    })
}

/// The status code of an HTTP status line (`HTTP/1.1 200 OK`).
fn parse_status(head: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(head.get(..12)?).ok()?;
    let rest = text.strip_prefix("HTTP/")?;
    let code = rest.split_once(' ')?.1.get(..3)?;
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn status_lines_are_read() {
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.1 503 x"), Some(503));
        assert_eq!(parse_status(b"SSH-2.0-Open"), None);
    }
}
