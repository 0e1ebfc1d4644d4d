//! An interactive task's side of the monitor (issue 18): the input it
//! holds (a pipe's write end, or the terminal's master side), the input
//! that waits until the task reads it, the terminal's screen, and the
//! answers to `input`, `signal`, `resize` and `screen` requests.
//!
//! Input is never stored: it passes from the request to the task. What the
//! task does not take at once waits here, in order, and is written as the
//! descriptor becomes writable (the wait loop polls it); each send says
//! how much was written and how much waits, so nothing is half-written
//! silently.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::log;
use super::stop::signal_tree;
use super::supervise::Running;
use crate::control::{Control, Reply};
use crate::interact::{Interaction, PtySize, Screen, Sent, MAX_INPUT_BYTES};
use crate::process;
use crate::process::{ProcessHandle, Signal};
use crate::task::TaskId;

/// The input of an interactive task, held by the monitor.
pub(super) struct Input {
    /// Write end of the stdin pipe, or the terminal's master side; `None`
    /// once closed (end of file sent, or the task closed its side).
    fd: Option<OwnedFd>,
    /// Under a terminal, the master side (for its size).
    pty: bool,
    /// Bytes the task has not read yet, oldest first.
    pending: Vec<u8>,
    /// Close the pipe once `pending` is written (end of file asked for).
    close_after: bool,
}

impl Input {
    /// `fd` must be non-blocking.
    pub fn new(fd: OwnedFd, pty: bool) -> Input {
        Input {
            fd: Some(fd),
            pty,
            pending: Vec::new(),
            close_after: false,
        }
    }

    /// The descriptor to poll for writability: only while input waits.
    pub fn waiting_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd
            .as_ref()
            .filter(|_| !self.pending.is_empty())
            .map(|fd| fd.as_fd())
    }

    /// Queues bytes the monitor itself answers (a cursor report).
    pub fn queue_reply(&mut self, id: &TaskId, bytes: &[u8]) {
        if self.fd.is_some() && self.pending.len() + bytes.len() <= 2 * MAX_INPUT_BYTES {
            self.pending.extend_from_slice(bytes);
            self.flush(id);
        }
    }

    /// A sender's input: queued after what waits, written as far as the
    /// task takes it now. `eof`: on a pipe, close it once everything is
    /// written; under a terminal, the end-of-file character (ctrl-d).
    pub fn send(&mut self, id: &TaskId, data: &[u8], eof: bool) -> Reply {
        if self.fd.is_none() || self.close_after {
            return failed("the task's input is closed");
        }
        let mut bytes = data.to_vec();
        if eof && self.pty {
            bytes.push(0x04);
        }
        if self.pending.len() + bytes.len() > MAX_INPUT_BYTES {
            return failed(&format!(
                "{} bytes of earlier input are still waiting for the task to read them; \
                 nothing of this input was sent",
                self.pending.len()
            ));
        }
        let before = self.pending.len();
        self.pending.extend_from_slice(&bytes);
        self.close_after = eof && !self.pty;
        let delivered = match self.write_pending() {
            Ok(n) => n,
            Err(e) => {
                let lost = self.pending.len();
                self.close(id);
                return failed(&format!(
                    "the task closed its input ({e}); {lost} bytes were not delivered"
                ));
            }
        };
        self.close_if_done();
        let written = delivered.saturating_sub(before) as u64;
        Reply::Sent {
            sent: Sent {
                written,
                queued: bytes.len() as u64 - written,
                closed: self.fd.is_none(),
            },
        }
    }

    /// Writes what waits, as far as the task takes it now (the wait loop
    /// found the descriptor writable).
    pub fn flush(&mut self, id: &TaskId) {
        if let Err(e) = self.write_pending() {
            log(&format!(
                "{id}: the task closed its input ({e}); {} bytes were not delivered",
                self.pending.len()
            ));
            self.close(id);
        }
        self.close_if_done();
    }

    fn write_pending(&mut self) -> std::io::Result<usize> {
        let Some(fd) = &self.fd else {
            return Ok(0);
        };
        if self.pending.is_empty() {
            return Ok(0);
        }
        let n = process::write_some(fd.as_fd(), &self.pending)?;
        self.pending.drain(..n);
        Ok(n)
    }

    fn close_if_done(&mut self) {
        if self.close_after && self.pending.is_empty() {
            self.fd = None;
        }
    }

    fn close(&mut self, _id: &TaskId) {
        self.pending.clear();
        self.fd = None;
    }

    /// A new terminal size (the kernel tells the task with SIGWINCH).
    pub fn resize(&self, size: PtySize) -> std::io::Result<()> {
        match (&self.fd, self.pty) {
            (Some(master), true) => process::set_pty_size(master.as_fd(), size.rows, size.cols),
            _ => Err(std::io::Error::other("the task's terminal is closed")),
        }
    }

    /// Bytes that never reached the task (logged at its end).
    pub fn undelivered(&self) -> usize {
        self.pending.len()
    }
}

/// How the shell's standard descriptors are connected, and the
/// monitor's ends.
pub(super) struct Wiring {
    /// The shell's stdin (`None`: /dev/null), stdout and stderr.
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The shell's stdin is its controlling terminal.
    pub terminal: bool,
    /// The monitor reads output from these (one stream under a terminal).
    pub out_r: OwnedFd,
    pub err_r: Option<OwnedFd>,
    pub input: Option<Input>,
}

/// Opens the pipes or the terminal `interaction` asks for.
pub(super) fn wire(interaction: Interaction) -> std::io::Result<Wiring> {
    match interaction {
        Interaction::Pty(size) => {
            let (master, slave) = process::open_pty(size.rows, size.cols)?;
            Ok(Wiring {
                stdout: slave.try_clone()?,
                stderr: slave.try_clone()?,
                stdin: Some(slave),
                terminal: true,
                input: Some(Input::new(master.try_clone()?, true)),
                out_r: master,
                err_r: None,
            })
        }
        other => {
            let (out_r, stdout) = process::pipe()?;
            let (err_r, stderr) = process::pipe()?;
            let (stdin, input) = if other == Interaction::Stdin {
                let (in_r, in_w) = process::pipe()?;
                process::set_nonblocking(in_w.as_fd())?;
                (Some(in_r), Some(Input::new(in_w, false)))
            } else {
                (None, None)
            };
            Ok(Wiring {
                stdin,
                stdout,
                stderr,
                terminal: false,
                out_r,
                err_r: Some(err_r),
                input,
            })
        }
    }
}

/// After each wake-up: the terminal's answers to what the task asked
/// (cursor position) go to its input, and input that waited is written
/// if the task's input can take it.
pub(super) fn after_wake(task: &mut Running, writable: bool) {
    let Some(input) = &mut task.input else {
        return;
    };
    if let Some(terminal) = &mut task.streams[0].terminal {
        let replies = terminal.take_replies();
        if !replies.is_empty() {
            input.queue_reply(&task.id, &replies);
        }
    }
    if writable {
        input.flush(&task.id);
    }
}

/// Answers an `input`, `signal`, `resize` or `screen` request.
pub(super) fn answer(task: &mut Running, request: &Control, shell: &ProcessHandle) -> Reply {
    match request {
        Control::Input { data, eof } => match &mut task.input {
            Some(input) => input.send(&task.id, data.as_bytes(), *eof),
            None => failed("the task was not started with --stdin or --pty; it takes no input"),
        },
        Control::Signal { signal, leader } => {
            let Some(sig) = Signal::parse(signal) else {
                return failed(&format!("unknown signal {signal:?}"));
            };
            if shell.has_exited() {
                return failed("the task's shell has exited");
            }
            task.sent_signals.push(sig);
            if *leader {
                if let Err(e) = shell.signal(sig) {
                    return failed(&format!("cannot signal the task's shell: {e}"));
                }
            } else {
                signal_tree(&task.tree(), sig);
            }
            Reply::Done
        }
        Control::Resize { rows, cols } => {
            let Ok(size) = PtySize::new(*rows, *cols) else {
                return failed(&format!("invalid terminal size {rows}x{cols}"));
            };
            let (Some(input), Some(terminal)) = (&task.input, &mut task.streams[0].terminal) else {
                return failed("the task does not run under a terminal (start it with --pty)");
            };
            // The screen first: the program redraws for the new size as
            // soon as SIGWINCH reaches it.
            terminal.resize(size);
            match input.resize(size) {
                Ok(()) => Reply::Done,
                Err(e) => failed(&format!("cannot resize the terminal: {e}")),
            }
        }
        Control::Screen => match &mut task.streams[0].terminal {
            Some(terminal) => Reply::Screen {
                screen: terminal.screen(),
            },
            None => failed("the task does not run under a terminal (start it with --pty)"),
        },
        other => Reply::NotSupported {
            request: other.name().to_owned(),
        },
    }
}

fn failed(message: &str) -> Reply {
    Reply::Failed {
        message: message.to_owned(),
    }
}

/// A terminal task's screen, kept lazily: the vt100 emulator is about
/// five times slower than a pty delivers output (docs/BENCHMARKS.md, issue
/// 18), so output is only collected as it passes and emulated when the
/// screen is asked for, when the task asks where the cursor is (ESC [ 6 n,
/// which must be answered), or when [`PENDING_MAX`] bytes wait. A task that
/// floods more than that between two looks gets its screen rebuilt from the
/// last [`KEEP`] bytes: what a flood of output leaves on a screen is its
/// tail.
pub(super) struct Terminal {
    parser: vt100::Parser<Queries>,
    /// Output not emulated yet, oldest first.
    pending: Vec<u8>,
    /// The last bytes of the previous chunk, so a query split across two
    /// reads is still seen.
    carry: [u8; 3],
}

/// Output collected before the screen is rebuilt from its tail.
const PENDING_MAX: usize = 1 << 20;
/// What a rebuilt screen is emulated from.
const KEEP: usize = 256 << 10;
const CURSOR_QUERY: &[u8] = b"\x1b[6n";

/// What the parser saw that needs an answer from the terminal.
#[derive(Default)]
struct Queries {
    /// Answers owed, in order (`ESC [ row ; col R`).
    replies: Vec<u8>,
}

impl vt100::Callbacks for Queries {
    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        _i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        // ESC [ 6 n: "where is the cursor?". A program that asks (a line
        // editor, a TUI's start-up) waits for the answer.
        if c == 'n' && i1.is_none() && params.first().and_then(|p| p.first()) == Some(&6) {
            let (row, col) = screen.cursor_position();
            self.replies
                .extend_from_slice(format!("\x1b[{};{}R", row + 1, col + 1).as_bytes());
        }
    }
}

impl Terminal {
    pub fn new(size: PtySize) -> Terminal {
        Terminal {
            parser: parser(size),
            pending: Vec::new(),
            carry: [0; 3],
        }
    }

    /// Output of the task, as it passes to the capture.
    pub fn feed(&mut self, bytes: &[u8]) {
        let asks = asks_cursor(&self.carry, bytes);
        let tail = bytes.len().min(3);
        self.carry.rotate_left(tail);
        self.carry[3 - tail..].copy_from_slice(&bytes[bytes.len() - tail..]);
        self.pending.extend_from_slice(bytes);
        if asks {
            self.catch_up();
        } else if self.pending.len() > PENDING_MAX {
            self.rebuild_from_tail();
        }
    }

    /// Emulates what waits (the cursor queries in it get their answers).
    fn catch_up(&mut self) {
        self.parser.process(&self.pending);
        self.pending.clear();
        if self.pending.capacity() > KEEP {
            self.pending = Vec::new();
        }
    }

    /// A fresh terminal of the same size, fed the last [`KEEP`] bytes
    /// (from a line start, so no escape sequence is cut in two there).
    fn rebuild_from_tail(&mut self) {
        let (rows, cols) = self.parser.screen().size();
        let mut start = self.pending.len() - KEEP;
        if let Some(nl) = self.pending[start..].iter().position(|b| *b == b'\n') {
            start += nl + 1;
        }
        let replies = self.take_replies();
        self.parser = parser(PtySize { rows, cols });
        self.parser.callbacks_mut().replies = replies;
        self.pending.drain(..start);
    }

    /// Answers the task asked for since the last call.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.parser.callbacks_mut().replies)
    }

    pub fn size(&self) -> PtySize {
        let (rows, cols) = self.parser.screen().size();
        PtySize { rows, cols }
    }

    pub fn resize(&mut self, size: PtySize) {
        self.catch_up();
        self.parser.screen_mut().set_size(size.rows, size.cols);
    }

    pub fn screen(&mut self) -> Screen {
        self.catch_up();
        Screen::of(self.parser.screen())
    }
}

fn parser(size: PtySize) -> vt100::Parser<Queries> {
    vt100::Parser::new_with_callbacks(size.rows, size.cols, 0, Queries::default())
}

/// Whether `bytes` (after `carry`, the end of the previous chunk) hold a
/// cursor-position query. Plain output has no ESC: one scan for it.
fn asks_cursor(carry: &[u8; 3], bytes: &[u8]) -> bool {
    if !bytes.contains(&b'\x1b') && !carry.contains(&b'\x1b') {
        return false;
    }
    let mut joined = carry.to_vec();
    joined.extend_from_slice(bytes);
    joined
        .windows(CURSOR_QUERY.len())
        .any(|w| w == CURSOR_QUERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_renders_and_a_cursor_query_is_answered() {
        let mut term = Terminal::new(PtySize { rows: 5, cols: 20 });
        term.feed(b"hello\r\nworld\x1b[6n");
        assert_eq!(term.take_replies(), b"\x1b[2;6R");
        assert!(term.take_replies().is_empty());
        let screen = term.screen();
        assert_eq!(screen.lines, ["hello", "world"]);
        assert_eq!((screen.cursor_row, screen.cursor_col), (1, 5));
        term.feed(b"\x1b[?1049h\x1b[Hfull");
        let screen = term.screen();
        assert!(screen.alternate_screen);
        assert_eq!(screen.lines, ["full"]);
    }

    #[test]
    fn a_query_split_across_reads_is_answered() {
        let mut term = Terminal::new(PtySize { rows: 5, cols: 20 });
        term.feed(b"ab\x1b[");
        assert!(term.take_replies().is_empty());
        term.feed(b"6n");
        assert_eq!(term.take_replies(), b"\x1b[1;3R");
    }

    #[test]
    fn a_flood_leaves_the_screen_its_tail_shows() {
        let mut term = Terminal::new(PtySize { rows: 3, cols: 20 });
        for i in 0..200_000 {
            term.feed(format!("line {i}\r\n").as_bytes());
        }
        assert!(term.pending.len() <= PENDING_MAX);
        assert_eq!(term.screen().lines, ["line 199998", "line 199999"]);
    }
}
