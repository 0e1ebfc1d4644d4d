//! Readiness conditions and line patterns: what a task must show to be
//! ready (a log line, a listening port, an HTTP answer), the patterns of
//! watches, their validation, and the line scanner the monitor runs over
//! output as it flows (ANSI escapes stripped before matching).
//!
//! Pure values and checks only: the monitor (`monitor/watch.rs`) evaluates
//! them, the store records them and their outcomes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long a task may take to become ready when the caller names no limit.
pub const DEFAULT_READY_TIMEOUT_MS: u64 = 120_000;
/// Watches a task may carry at once.
pub const MAX_WATCHES: usize = 8;
/// Least time between two notifications of one watch, by default.
pub const DEFAULT_COOLDOWN_MS: u64 = 10_000;
/// Bytes of one line kept for matching and reporting; the rest of a longer
/// line is not looked at (a line is bounded, so memory is).
pub const MAX_LINE_BYTES: usize = 4096;
/// Bytes of a matching line carried by a notification.
pub const REPORTED_LINE_BYTES: usize = 300;
/// Longest pattern accepted (a regex is compiled per monitor).
const MAX_PATTERN_BYTES: usize = 1024;
/// Compiled size limit: a pattern is matched against every line of output.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// What makes a task ready.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadyCondition {
    /// A complete line of stdout or stderr matches this regular expression.
    Log { pattern: String },
    /// Something accepts TCP connections on 127.0.0.1:PORT or [::1]:PORT.
    Port { port: u16 },
    /// A GET of this local http URL answers with a status below 500.
    Http { url: String },
}

/// A readiness condition with its limit, as a start request carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadySpec {
    pub condition: ReadyCondition,
    pub timeout_ms: u64,
    /// End the task when the timeout passes before it is ready.
    pub kill_if_not_ready: bool,
}

impl ReadyCondition {
    /// The stored form: a kind name and its one value.
    pub fn stored(&self) -> (&'static str, String) {
        match self {
            ReadyCondition::Log { pattern } => ("log", pattern.clone()),
            ReadyCondition::Port { port } => ("port", port.to_string()),
            ReadyCondition::Http { url } => ("http", url.clone()),
        }
    }

    /// A condition read back from the store (`None`: none or unreadable).
    pub fn from_stored(kind: Option<&str>, value: Option<String>) -> Option<ReadyCondition> {
        let value = value?;
        match kind? {
            "log" => Some(ReadyCondition::Log { pattern: value }),
            "port" => value.parse().ok().map(|port| ReadyCondition::Port { port }),
            "http" => Some(ReadyCondition::Http { url: value }),
            _ => None,
        }
    }

    /// Checks the condition; the error names the field (`ready.log`, …).
    pub fn validate(&self) -> Result<()> {
        match self {
            ReadyCondition::Log { pattern } => compile(pattern, "ready.log").map(|_| ()),
            ReadyCondition::Port { port } => validate_port(u64::from(*port)).map(|_| ()),
            ReadyCondition::Http { url } => HttpTarget::parse(url).map(|_| ()),
        }
    }
}

/// A port number as a client gives it: 1–65535.
pub fn validate_port(port: u64) -> Result<u16> {
    match u16::try_from(port) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(Error::InvalidArgument(format!(
            "ready.port: {port} is not a TCP port (expected 1-65535)"
        ))),
    }
}

/// Compiles a line pattern; the error names `field` and says why.
pub fn compile(pattern: &str, field: &str) -> Result<regex::bytes::Regex> {
    if pattern.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{field}: the pattern is empty"
        )));
    }
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(Error::InvalidArgument(format!(
            "{field}: the pattern is {} bytes (at most {MAX_PATTERN_BYTES})",
            pattern.len()
        )));
    }
    // Multi-line and CRLF mode: `^`/`$` match at line ends, `\r\n` ones
    // included, so a match in a line (trailing `\r` dropped) is also a
    // match in the chunk holding it (see `LineScanner`).
    regex::bytes::RegexBuilder::new(pattern)
        .multi_line(true)
        .crlf(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            // The regex crate's message spans lines (the pattern with a
            // caret): keep its last line, which says what is wrong.
            let text = e.to_string();
            let why = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid")
                .trim()
                .trim_start_matches("error: ");
            Error::InvalidArgument(format!(
                "{field}: invalid regular expression {pattern:?}: {why}"
            ))
        })
}

/// Where an HTTP readiness probe connects: a local host only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTarget {
    /// `127.0.0.1`, `::1` (or `localhost`, tried as both).
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://HOST[:PORT][/PATH]` with a local HOST.
    pub fn parse(url: &str) -> Result<HttpTarget> {
        let bad = |why: &str| Error::InvalidArgument(format!("ready.http: {url:?} {why}"));
        let rest = if let Some(rest) = url.strip_prefix("http://") {
            rest
        } else if url.starts_with("https://") {
            return Err(bad(
                "uses https; a readiness probe speaks plain http to a local port",
            ));
        } else {
            return Err(bad("is not an http:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(bad("has credentials"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("has an unclosed ["))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host = host.to_ascii_lowercase();
        if !matches!(host.as_str(), "localhost" | "127.0.0.1" | "::1") {
            return Err(bad(
                "is not on a local host (use localhost, 127.0.0.1 or [::1])",
            ));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u64>()
                .ok()
                .and_then(|p| validate_port(p).ok())
                .ok_or_else(|| bad("has no valid port (1-65535)"))?,
        };
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad("has spaces or control characters in its path"));
        }
        Ok(HttpTarget {
            host,
            port,
            path: path.to_owned(),
        })
    }
}

/// Checks a readiness spec as a request gives it.
pub fn validate_spec(spec: &ReadySpec) -> Result<()> {
    spec.condition.validate()?;
    if spec.timeout_ms == 0 {
        return Err(Error::InvalidArgument(
            "ready.timeout_ms: must be longer than 0".into(),
        ));
    }
    if spec.timeout_ms > crate::units::MAX_DURATION_MS {
        return Err(Error::InvalidArgument(format!(
            "ready.timeout_ms: {} ms is too long",
            spec.timeout_ms
        )));
    }
    Ok(())
}

/// A line with ANSI escape sequences (CSI `ESC [ … final`, OSC
/// `ESC ] … BEL|ESC \`, and two-byte `ESC x`) removed, and a trailing
/// carriage return dropped. Borrowed when there is nothing to strip.
pub fn strip_ansi(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.contains(&0x1b) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] != 0x1b {
            out.push(line[i]);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(b'[') => {
                // Parameters and intermediates, then one final byte 0x40–0x7e.
                i += 2;
                while i < line.len() && !(0x40..=0x7e).contains(&line[i]) {
                    i += 1;
                }
                i += 1;
            }
            Some(b']') => {
                i += 2;
                while i < line.len() {
                    if line[i] == 0x07 {
                        i += 1;
                        break;
                    }
                    if line[i] == 0x1b && line.get(i + 1) == Some(&b'\\') {
                        i += 2;
                        break;
                    }
                    i += 1;
                }
            }
            Some(_) => i += 2,
            None => i += 1,
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Splits one stream's output into lines for matching, with the fewest
/// bytes looked at: a chunk in which no pattern matches anywhere (one
/// search per pattern over the whole chunk, in multi-line mode, so a
/// pattern that matches a line also matches the chunk holding it) is not
/// split at all. Escape sequences can hide a match from that search, so a
/// chunk that holds ESC is always split.
#[derive(Debug, Default)]
pub struct LineScanner {
    /// The incomplete last line so far (at most `MAX_LINE_BYTES`).
    partial: Vec<u8>,
}

impl LineScanner {
    /// Feeds a chunk; calls `on_line` with each complete line (without its
    /// newline, ANSI stripped) that any of `patterns` may match.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        patterns: &[regex::bytes::Regex],
        mut on_line: impl FnMut(&[u8]),
    ) {
        if patterns.is_empty() || chunk.is_empty() {
            return;
        }
        let first_newline = chunk.iter().position(|&b| b == b'\n');
        let may_match = chunk.contains(&0x1b) || patterns.iter().any(|p| p.is_match(chunk));
        let Some(first) = first_newline else {
            self.keep(chunk);
            return;
        };
        // The line that began in an earlier chunk.
        if self.partial.is_empty() {
            if may_match {
                emit(&chunk[..first], &mut on_line);
            }
        } else {
            self.keep(&chunk[..first]);
            let line = std::mem::take(&mut self.partial);
            emit(&line, &mut on_line);
        }
        let rest = &chunk[first + 1..];
        let last_newline = rest.iter().rposition(|&b| b == b'\n');
        let (complete, tail) = match last_newline {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (&rest[..0], rest),
        };
        if may_match && !complete.is_empty() {
            for line in complete.split(|&b| b == b'\n') {
                emit(line, &mut on_line);
            }
        }
        self.partial.clear();
        self.keep(tail);
    }

    /// The incomplete last line, once the stream has ended.
    pub fn finish(&mut self, mut on_line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            emit(&line, &mut on_line);
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

fn emit(line: &[u8], on_line: &mut impl FnMut(&[u8])) {
    let line = &line[..line.len().min(MAX_LINE_BYTES)];
    on_line(&strip_ansi(line));
}

/// A line as a notification carries it: text, at most
/// `REPORTED_LINE_BYTES`, cut on a character boundary.
pub fn reported_line(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut end = text.len().min(REPORTED_LINE_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]], pattern: &str) -> Vec<String> {
        let re = compile(pattern, "t").unwrap();
        let mut scanner = LineScanner::default();
        let mut seen = Vec::new();
        for chunk in chunks {
            scanner.feed(chunk, std::slice::from_ref(&re), |l| {
                if re.is_match(l) {
                    seen.push(String::from_utf8_lossy(l).into_owned());
                }
            });
        }
        scanner.finish(|l| {
            if re.is_match(l) {
                seen.push(String::from_utf8_lossy(l).into_owned());
            }
        });
        seen
    }

    #[test]
    fn lines_match_across_chunks_and_without_escapes() {
        assert_eq!(
            lines(&[b"boot\nlis", b"tening on 3000\nmore\n"], "^listening"),
            ["listening on 3000"]
        );
        assert_eq!(
            lines(&[b"\x1b[32mready\x1b[0m in 5ms\r\n"], "^ready in"),
            ["ready in 5ms"]
        );
        assert_eq!(lines(&[b"a\nb\nready"], "ready$"), ["ready"]);
        assert_eq!(lines(&[b"up\r\nok\r\n"], "^ok$"), ["ok"]);
        assert!(lines(&[b"nothing here\n"], "ready").is_empty());
    }

    #[test]
    fn conditions_are_checked_naming_the_field() {
        let bad = compile("(", "ready.log").unwrap_err().to_string();
        assert!(
            bad.starts_with("ready.log: invalid regular expression"),
            "{bad}"
        );
        assert!(validate_port(0).is_err() && validate_port(65536).is_err());
        assert_eq!(validate_port(8080).unwrap(), 8080);
        let t = HttpTarget::parse("http://localhost:3000/health?x=1").unwrap();
        assert_eq!((t.port, t.path.as_str()), (3000, "/health?x=1"));
        assert_eq!(HttpTarget::parse("http://[::1]:81").unwrap().host, "::1");
        for bad in [
            "https://localhost:3000",
            "http://example.com/",
            "ftp://localhost",
            "http://localhost:0/",
            "http://user@localhost/",
        ] {
            let e = HttpTarget::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("ready.http:"), "{bad}: {e}");
        }
    }
}
