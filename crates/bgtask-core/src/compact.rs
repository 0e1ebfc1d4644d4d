//! Agent-facing output shaping: turns raw terminal output (colours, progress
//! bars, thousands of near-identical lines) into plain text an agent can read
//! within a byte budget.
//!
//! The steps, each usable alone:
//! - [`render`] keeps what a terminal would finally show: escape sequences
//!   and control characters go, a line redrawn with `\r` (or `ESC[G`) keeps
//!   only its last state, erase-line sequences are honoured, trailing blanks
//!   are trimmed.
//! - [`compact`] renders, then folds repetition: a run of three or more
//!   consecutive lines that are identical, or differ only in numbers,
//!   progress glyphs or spacing, becomes its last line plus a count marker;
//!   a run of blank lines becomes one blank line.
//! - [`bound`] cuts text to a budget, keeping about 40% head and 60% tail
//!   (the end of a build or test run matters most), cut at line boundaries.
//! - [`shape_bytes`] and [`shape_file`] put these together for task output
//!   of any size, reading only a head window and a tail window of a file.
//! - A `--pty` task's output is a terminal's stream: [`shape_terminal_file`]
//!   and [`task_tail`] replay it through the vt100 emulator
//!   ([`crate::interact::terminal_text`]: scrollback and screen, cursor
//!   moves and cleared screens resolved) and compact that text, never the
//!   raw bytes.
//!
//! Markers (agents read these; keep the formats stable):
//! - `  [×N identical lines]` on the line after a line `L`: `L` stood `N`
//!   times in a row and is shown once, as the last of them.
//! - `  [×N similar lines]` on the line after `L`: `L` is the last of `N`
//!   consecutive lines that differed from it only in numbers, progress
//!   glyphs or spacing.
//! - `[… N bytes omitted …]` on its own line: `N` bytes of output are not
//!   shown here.
//!
//! Invariants:
//! - No function panics, whatever the bytes and whatever the budget
//!   (including 0); no output splits a UTF-8 character.
//! - Every line of [`render`]`(text)` that mentions a problem (error,
//!   warning, warn, fail, failed, failure, panic, fatal, exception,
//!   traceback; any case) appears verbatim and in order in
//!   [`compact`]`(text)`. Such lines are never folded, even when repeated,
//!   and they end any run around them.
//! - Lines that are not folded are not changed by folding.
//! - `bound(text, budget).text.len() <= budget` always, markers included;
//!   text that fits is returned unchanged.
//! - `omitted_bytes` counts the bytes of text not shown, including bytes
//!   never read; folding is not omission (its markers show it), so it is
//!   not counted. `truncated` is `omitted_bytes > 0`.
//! - [`shape_file`] reads at most `max(4 × budget, 256 KiB)` bytes,
//!   whatever the size of the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::str::Chars;

use serde::Serialize;

use crate::interact::{terminal_text, PtySize};
use crate::output::{
    combined_tail, read_tail, str_tail, utf8_complete_prefix, utf8_start_skip, Tail,
};

/// Smallest window [`shape_file`] reads, so a tiny budget still sees enough
/// output for compaction to work with.
const MIN_WINDOW: u64 = 256 << 10;

/// Fewest consecutive lines folded into one: folding two would not save a
/// line, since the marker takes one.
const MIN_RUN: usize = 3;

/// Words that make a line worth keeping whatever else happens to it.
/// "warn" covers "warning" and "fail" covers "failed" and "failure".
const PROBLEM_WORDS: [&str; 7] = [
    "error",
    "warn",
    "fail",
    "panic",
    "fatal",
    "exception",
    "traceback",
];

/// Options for shaping output for an agent.
#[derive(Clone, Copy, Debug)]
pub struct ShapeOptions {
    /// Most bytes of text to return, markers included.
    pub budget: usize,
    /// Whether to [`compact`] the text before bounding it.
    pub compress: bool,
}

/// Text shaped for an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Shaped {
    pub text: String,
    /// True when some output is not shown (`omitted_bytes > 0`).
    pub truncated: bool,
    /// Bytes of output not shown, whether cut to fit or never read.
    pub omitted_bytes: u64,
}

/// A read of task output failed; says which file.
#[derive(Debug, thiserror::Error)]
#[error("cannot read output file {path}")]
struct ReadError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

/// What a terminal would finally show of `text`, as plain text.
///
/// Strips CSI (`ESC [ … final`), OSC/DCS/APC/PM/SOS strings (ended by BEL or
/// `ESC \`), other `ESC` sequences and C0 controls but `\n` and `\t`. A `\r`
/// (or `ESC[G`) moves to the start of the line and the next character
/// replaces the whole line: progress bars redraw whole lines, so the last
/// state is the only one worth keeping. `\r\n` is a newline; backspace
/// removes the character before it; erase-line (`ESC[K` at the start of a
/// line, `ESC[1K`, `ESC[2K`) clears the line. Trailing spaces and tabs are
/// trimmed. C1 controls (U+0080–U+009F) are left alone.
pub fn render(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut row = Row::default();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                row.flush_into(&mut out);
                out.push('\n');
            }
            '\r' => row.at_start = true,
            '\u{8}' => row.backspace(),
            '\t' => row.put('\t'),
            '\u{1b}' => {
                // A string sequence may end where another escape begins;
                // loop rather than recurse so no input can exhaust the stack.
                while escape(&mut chars, &mut row) == Next::AnotherEscape {}
            }
            c if c.is_ascii_control() => {}
            c => row.put(c),
        }
    }
    row.flush_into(&mut out);
    out
}

/// The line being drawn, as far as [`render`] models a terminal.
#[derive(Default)]
struct Row {
    text: String,
    /// The cursor went back to column 0: the next character starts a new
    /// state of the line.
    at_start: bool,
}

impl Row {
    fn put(&mut self, c: char) {
        if self.at_start {
            self.text.clear();
            self.at_start = false;
        }
        self.text.push(c);
    }

    fn backspace(&mut self) {
        if !self.at_start {
            self.text.pop();
        }
    }

    fn flush_into(&mut self, out: &mut String) {
        out.push_str(self.text.trim_end_matches([' ', '\t']));
        self.text.clear();
        self.at_start = false;
    }
}

#[derive(PartialEq, Eq)]
enum Next {
    Text,
    AnotherEscape,
}

/// Consumes the escape sequence after an `ESC`. A malformed sequence ends
/// at the first character that cannot belong to it, and that character is
/// left for the caller, so a broken escape can never swallow a newline and
/// the lines after it.
fn escape(chars: &mut Peekable<Chars<'_>>, row: &mut Row) -> Next {
    match chars.peek().copied() {
        Some('[') => {
            chars.next();
            control_sequence(chars, row);
        }
        Some(']' | 'P' | 'X' | '^' | '_') => {
            chars.next();
            return control_string(chars);
        }
        Some(' '..='/') => {
            // nF sequences such as `ESC ( B` (select character set).
            while chars.next_if(|c| matches!(c, ' '..='/')).is_some() {}
            chars.next_if(|c| matches!(c, '0'..='~'));
        }
        Some('0'..='~') => {
            chars.next();
        }
        _ => {} // a lone ESC: dropped
    }
    Next::Text
}

/// A CSI sequence: parameter and intermediate bytes, then a final byte.
fn control_sequence(chars: &mut Peekable<Chars<'_>>, row: &mut Row) {
    // Only short parameters matter (`K`, `1K`, `G`); longer ones are kept
    // as a sentinel instead of growing a buffer.
    let mut params = String::new();
    while let Some(c) = chars.next_if(|c| matches!(c, ' '..='?')) {
        if params.len() < 4 {
            params.push(c);
        }
    }
    let Some(fin) = chars.next_if(|c| matches!(c, '@'..='~')) else {
        return;
    };
    match (fin, params.as_str()) {
        // Erase to the end of the line: past `\r` that is all of it; else
        // the cursor is at the end of the text, with nothing to erase.
        ('K', "" | "0") if row.at_start => row.text.clear(),
        ('K', "1" | "2") => row.text.clear(),
        ('G', "" | "1") => row.at_start = true,
        _ => {}
    }
}

/// An OSC-like string, ended by BEL or `ESC \`. Ends early at a newline or
/// at an `ESC` that starts another sequence.
fn control_string(chars: &mut Peekable<Chars<'_>>) -> Next {
    while let Some(c) = chars.next_if(|c| *c != '\n') {
        match c {
            '\u{7}' => return Next::Text,
            '\u{1b}' => {
                return match chars.next_if_eq(&'\\') {
                    Some(_) => Next::Text,
                    None => Next::AnotherEscape,
                };
            }
            _ => {}
        }
    }
    Next::Text
}

/// [`render`]s `text`, then folds repetition (see the module docs for the
/// markers). Lines that mention a problem are never folded.
pub fn compact(text: &str) -> String {
    fold(&render(text))
}

/// Folds runs in plain text; the second half of [`compact`].
fn fold(text: &str) -> String {
    let (body, newline_at_end) = match text.strip_suffix('\n') {
        Some(body) => (body, true),
        None => (text, false),
    };
    // Every line is pushed with its newline; the last one comes off below.
    let mut out = String::with_capacity(body.len() + 1);
    let mut run = Run::default();
    let mut key = String::new();
    for line in body.split('\n') {
        if line.is_empty() {
            // Rendered lines carry no trailing blanks, so blank is empty.
            if run.kind != RunKind::Blank {
                run.flush(&mut out);
                run = Run::start(RunKind::Blank, line);
            }
        } else if mentions_problem(line) {
            run.flush(&mut out);
            run = Run::default();
            push_line(&mut out, line);
        } else {
            shape_key(line, &mut key);
            if run.kind == RunKind::Similar && run.key == key {
                run.extend(line);
            } else {
                run.flush(&mut out);
                run = Run::start(RunKind::Similar, line);
                run.key = std::mem::take(&mut key);
            }
        }
    }
    run.flush(&mut out);
    if !newline_at_end {
        out.pop();
    }
    out
}

fn push_line(out: &mut String, line: &str) {
    out.push_str(line);
    out.push('\n');
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
enum RunKind {
    #[default]
    None,
    Blank,
    /// Lines with the same [`shape_key`].
    Similar,
}

/// Consecutive lines that fold together. Only the first and last are kept:
/// a run of one or two is shown whole, a longer one as its last line.
#[derive(Default)]
struct Run<'a> {
    kind: RunKind,
    key: String,
    first: &'a str,
    last: &'a str,
    count: usize,
    identical: bool,
}

impl<'a> Run<'a> {
    fn start(kind: RunKind, line: &'a str) -> Self {
        Run {
            kind,
            key: String::new(),
            first: line,
            last: line,
            count: 1,
            identical: true,
        }
    }

    fn extend(&mut self, line: &'a str) {
        self.identical &= line == self.last;
        self.last = line;
        self.count += 1;
    }

    fn flush(&self, out: &mut String) {
        match self.kind {
            RunKind::None => {}
            RunKind::Blank => push_line(out, self.first),
            RunKind::Similar if self.count >= MIN_RUN => {
                push_line(out, self.last);
                let what = ["similar", "identical"][usize::from(self.identical)];
                push_line(out, &format!("  [×{} {what} lines]", self.count));
            }
            RunKind::Similar => {
                push_line(out, self.first);
                if self.count == 2 {
                    push_line(out, self.last);
                }
            }
        }
    }
}

/// Whether `line` mentions a problem word, in any case.
fn mentions_problem(line: &str) -> bool {
    let bytes = line.as_bytes();
    (0..bytes.len()).any(|i| {
        PROBLEM_WORDS.iter().any(|word| {
            bytes
                .get(i..i + word.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(word.as_bytes()))
        })
    })
}

/// Writes into `key` what is left of `line` once its volatile parts are
/// erased: each number (digits, with `.`, `,` or `:` between digits) and
/// each run of progress glyphs becomes one NUL (which rendered text never
/// contains), and each run of blanks one space, since right-aligned
/// counters change the padding as they grow.
fn shape_key(line: &str, key: &mut String) {
    key.clear();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if is_volatile(c) {
            key.push('\0');
            loop {
                if chars.next_if(|c| is_volatile(*c)).is_some() {
                    continue;
                }
                // A separator belongs to the number only if a digit follows;
                // peeking two ahead needs a clone of the (cheap) iterator.
                let mut ahead = chars.clone();
                let is_separator = matches!(ahead.next(), Some('.' | ',' | ':'))
                    && ahead.next().is_some_and(|c| c.is_ascii_digit());
                if !is_separator {
                    break;
                }
                chars.next();
            }
        } else if c == ' ' || c == '\t' {
            key.push(' ');
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        } else {
            key.push(c);
        }
    }
}

/// Digits and the glyphs progress bars and spinners draw with: box drawing,
/// block elements and braille.
fn is_volatile(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '\u{2500}'..='\u{259f}' | '\u{2800}'..='\u{28ff}')
}

/// `text` if it fits in `budget` bytes; otherwise its head, an omitted
/// marker and its tail, in at most `budget` bytes. Head and tail are cut at
/// line boundaries when the share has one; the head gets about 40% of the
/// room and the tail the rest. When not even the marker fits, only a tail.
pub fn bound(text: &str, budget: usize) -> Shaped {
    if text.len() <= budget {
        return shaped(text.to_owned(), 0);
    }
    let Some(room) = budget.checked_sub(marker_reserve(text.len() as u64)) else {
        return only_tail(text, 0, budget);
    };
    let head = line_prefix(text, room / 5 * 2);
    // The tail is taken after the head, so they never overlap, and it gets
    // whatever room the head's line cut left unused.
    let tail = line_suffix(&text[head.len()..], room - shown_len(head));
    let omitted = text.len() - head.len() - tail.len();
    assemble(head, omitted as u64, tail)
}

/// Shapes output read as a head window and an optional tail window, with
/// `skipped` unread bytes between them (see the module docs). Decodes
/// lossily; when the windows do not touch, a character cut at the end of
/// the head or the start of the tail is dropped and counted as omitted.
pub fn shape_bytes(head: &[u8], tail: Option<&[u8]>, skipped: u64, opts: ShapeOptions) -> Shaped {
    shape_decoded(head, tail, skipped, opts, &|bytes| {
        decode(bytes, opts.compress)
    })
}

/// [`shape_bytes`] with `decode` turning each window's bytes into text.
fn shape_decoded(
    head: &[u8],
    tail: Option<&[u8]>,
    skipped: u64,
    opts: ShapeOptions,
    decode: &dyn Fn(&[u8]) -> String,
) -> Shaped {
    if skipped == 0 {
        // The windows touch: decode them as one, so a character split
        // between them survives and no marker claims a gap that is not there.
        let text = match tail {
            Some(tail) => decode(&[head, tail].concat()),
            None => decode(head),
        };
        return bound(&text, opts.budget);
    }
    let tail = tail.unwrap_or_default();
    // Windows end and start at arbitrary bytes: show only whole lines (a
    // line cut in two would be shown, and folded, as if it were whole),
    // falling back to whole characters when a window holds no line break.
    let head_end = match head.iter().rposition(|b| *b == b'\n') {
        Some(i) => i + 1,
        None => utf8_complete_prefix(head),
    };
    let tail_start = match tail.iter().position(|b| *b == b'\n') {
        Some(i) if i + 1 < tail.len() => i + 1,
        _ => utf8_start_skip(tail),
    };
    let cut_chars = (head.len() - head_end + tail_start) as u64;
    let gap = skipped.saturating_add(cut_chars);
    let head = decode(&head[..head_end]);
    let tail = decode(&tail[tail_start..]);
    splice(&head, gap, &tail, opts.budget)
}

/// Shapes a task's output file, reading at most `max(4 × budget, 256 KiB)`
/// bytes: the whole file when it fits, else the first and last halves of
/// that window. A missing file is empty.
pub fn shape_file(path: &Path, opts: ShapeOptions) -> io::Result<Shaped> {
    shape_file_decoded(path, opts, &|bytes| decode(bytes, opts.compress))
}

/// [`shape_file`] for a `--pty` task's output, a terminal of `size`: each
/// window is replayed through the emulator and its text compacted (issue
/// 18). The tail window starts at a line start, as [`shape_bytes`] cuts
/// it, so its emulation starts in a clean state. Without `compress` the
/// bytes are shown as they are, like any raw view.
pub fn shape_terminal_file(path: &Path, size: PtySize, opts: ShapeOptions) -> io::Result<Shaped> {
    if !opts.compress {
        return shape_file(path, opts);
    }
    shape_file_decoded(path, opts, &|bytes| fold(&terminal_text(bytes, size)))
}

/// The last `budget` bytes of a task's output as text: for a `--pty` task
/// (`pty`: its terminal's size) the end of what its terminal holds,
/// emulated from the last `8 × budget` bytes of its stream (at least
/// 64 KiB, at most 4 MiB);
/// otherwise [`combined_tail`]. Completion previews and `status`'s tail
/// come from here.
pub fn task_tail(
    stdout: &Path,
    stderr: &Path,
    budget: u64,
    pty: Option<PtySize>,
) -> io::Result<Tail> {
    let Some(size) = pty else {
        return combined_tail(stdout, stderr, budget);
    };
    let window = budget
        .saturating_mul(8)
        .clamp(TERMINAL_WINDOW, TERMINAL_WINDOW_MAX);
    let chunk = read_tail(stdout, window)?;
    let mut data = chunk.data.as_slice();
    if chunk.is_partial() {
        // Emulation starts at a line start, never inside an escape.
        if let Some(nl) = data.iter().position(|b| *b == b'\n') {
            data = &data[nl + 1..];
        }
    }
    let text = terminal_text(data, size);
    let shown = str_tail(&text, usize::try_from(budget).unwrap_or(usize::MAX));
    Ok(Tail {
        truncated: chunk.is_partial() || shown.len() < text.len(),
        text: shown.to_owned(),
    })
}

/// The least and the most of a terminal's stream [`task_tail`] emulates
/// (the emulator parses about 20 MiB/s).
const TERMINAL_WINDOW: u64 = 64 << 10;
const TERMINAL_WINDOW_MAX: u64 = 4 << 20;

/// [`shape_file`] with `decode` turning each window's bytes into text.
fn shape_file_decoded(
    path: &Path,
    opts: ShapeOptions,
    decode: &dyn Fn(&[u8]) -> String,
) -> io::Result<Shaped> {
    let with_path = |source: io::Error| {
        let kind = source.kind();
        let path = path.to_owned();
        io::Error::new(kind, ReadError { path, source })
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(shape_decoded(&[], None, 0, opts, decode))
        }
        Err(e) => return Err(with_path(e)),
    };
    let window = u64::try_from(opts.budget)
        .unwrap_or(u64::MAX)
        .saturating_mul(4)
        .max(MIN_WINDOW);
    let len = file.metadata().map_err(with_path)?.len();
    if len <= window {
        let data = read_window(&mut file, 0, len).map_err(with_path)?;
        return Ok(shape_decoded(&data, None, 0, opts, decode));
    }
    let head_len = window / 2;
    let tail_start = len - (window - head_len);
    let head = read_window(&mut file, 0, head_len).map_err(with_path)?;
    let tail = read_window(&mut file, tail_start, len - tail_start).map_err(with_path)?;
    // head_len < tail_start because len > window; a file that shrank under
    // us (the capped writer compacts in place) just reads short.
    let skipped = tail_start.saturating_sub(head.len() as u64);
    Ok(shape_decoded(&head, Some(&tail), skipped, opts, decode))
}

/// Up to `len` bytes from `offset`; fewer if the file is shorter by then.
fn read_window(file: &mut File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut data)?;
    Ok(data)
}

fn decode(bytes: &[u8], compress: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    if compress {
        compact(&text)
    } else {
        text.into_owned()
    }
}

/// Like [`bound`], for a head and a tail with `gap` unshown bytes between
/// them: always shows the gap marker, and cuts the two parts to fit.
fn splice(head: &str, gap: u64, tail: &str, budget: usize) -> Shaped {
    let whole = gap.saturating_add((head.len() + tail.len()) as u64);
    let reserve = marker_reserve(whole);
    if shown_len(head) + reserve + tail.len() <= budget {
        return assemble(head, gap, tail);
    }
    let Some(room) = budget.checked_sub(reserve) else {
        return match tail.is_empty() {
            true => only_tail(head, gap, budget),
            false => only_tail(tail, gap.saturating_add(head.len() as u64), budget),
        };
    };
    let mut shown_head = line_prefix(head, room / 5 * 2);
    let shown_tail = line_suffix(tail, room - shown_len(shown_head));
    if shown_tail.len() == tail.len() {
        // A short tail leaves room for more of the head.
        shown_head = line_prefix(head, room - tail.len());
    }
    let cut = (head.len() - shown_head.len()) + (tail.len() - shown_tail.len());
    assemble(shown_head, gap.saturating_add(cut as u64), shown_tail)
}

fn omitted_marker(omitted: u64) -> String {
    format!("[… {omitted} bytes omitted …]")
}

/// Bytes the marker line may take, for any count up to `max_omitted`
/// (the newline before it is counted with the head, see [`shown_len`]).
fn marker_reserve(max_omitted: u64) -> usize {
    omitted_marker(max_omitted).len() + 1
}

/// `head`, the omitted marker on its own line, then `tail`: exactly
/// `shown_len(head) + marker_reserve(omitted) + tail.len()` bytes.
fn assemble(head: &str, omitted: u64, tail: &str) -> Shaped {
    let marker = omitted_marker(omitted);
    let mut text = String::with_capacity(shown_len(head) + marker.len() + 1 + tail.len());
    text.push_str(head);
    if shown_len(head) > head.len() {
        text.push('\n');
    }
    text.push_str(&marker);
    text.push('\n');
    text.push_str(tail);
    shaped(text, omitted)
}

/// The last ≤ `budget` bytes of `text`, for budgets too small for a marker;
/// `before` bytes of output before `text` are not shown either.
fn only_tail(text: &str, before: u64, budget: usize) -> Shaped {
    let shown = str_tail(text, budget);
    let omitted = before.saturating_add((text.len() - shown.len()) as u64);
    shaped(shown.to_owned(), omitted)
}

fn shaped(text: String, omitted: u64) -> Shaped {
    Shaped {
        text,
        truncated: omitted > 0,
        omitted_bytes: omitted,
    }
}

/// The longest prefix of `text` that ends after a newline and takes at most
/// `max` bytes; else, cut mid-line at a character boundary, one that takes
/// at most `max` bytes with the newline [`assemble`] adds after it.
fn line_prefix(text: &str, max: usize) -> &str {
    if shown_len(text) <= max {
        return text;
    }
    let end = floor_boundary(text, max);
    match text[..end].rfind('\n') {
        Some(newline) => &text[..=newline],
        None => &text[..floor_boundary(text, max.saturating_sub(1))],
    }
}

/// The largest character boundary of `text` at or below `at`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Bytes a head takes in [`assemble`]'s output: a head cut mid-line gets a
/// newline so the marker starts a line.
fn shown_len(head: &str) -> usize {
    head.len() + usize::from(!head.is_empty() && !head.ends_with('\n'))
}

/// The longest suffix of `text` of at most `max` bytes that starts a line,
/// or else starts at a character boundary.
fn line_suffix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    if start > 0 && text.as_bytes()[start - 1] == b'\n' {
        return &text[start..];
    }
    match text[start..].find('\n') {
        // A newline that ends the text starts no line: cut mid-line instead.
        Some(newline) if start + newline + 1 < text.len() => &text[start + newline + 1..],
        _ => &text[start..],
    }
}
