//! Interactive tasks (issue 18), the vocabulary: how a task's input is
//! connected ([`Interaction`]), a terminal's size, the keys a sender may
//! name and the limits of one send. The monitor holds the input pipe or
//! the terminal (`monitor/interact.rs`), senders reach it through the
//! control channel (`service`'s `send_input`, `signal`, `resize`, `screen`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// At most this much input per send.
pub const MAX_INPUT_BYTES: usize = 1 << 20;

/// A terminal's size, in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    pub rows: u16,
    pub cols: u16,
}

impl PtySize {
    /// What a terminal is when nobody says otherwise.
    pub const DEFAULT: PtySize = PtySize { rows: 24, cols: 80 };

    /// A size, checked: each side 1..=1000 (a bigger screen is a mistake,
    /// and the rendered screen is held in the monitor's memory).
    pub fn new(rows: u16, cols: u16) -> Result<PtySize> {
        if !(1..=1000).contains(&rows) || !(1..=1000).contains(&cols) {
            return Err(Error::InvalidArgument(format!(
                "invalid terminal size {rows}x{cols}: rows and columns must be 1 to 1000"
            )));
        }
        Ok(PtySize { rows, cols })
    }
}

impl FromStr for PtySize {
    type Err = Error;
    /// `ROWSxCOLS`, e.g. `24x80`.
    fn from_str(s: &str) -> Result<PtySize> {
        let bad = || {
            Error::InvalidArgument(format!(
                "invalid terminal size {s:?}: expected ROWSxCOLS, e.g. 24x80"
            ))
        };
        let (rows, cols) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        PtySize::new(
            rows.trim().parse().map_err(|_| bad())?,
            cols.trim().parse().map_err(|_| bad())?,
        )
    }
}

impl fmt::Display for PtySize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// How a task's stdin is connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interaction {
    /// `/dev/null` (the default): the task takes no input.
    #[default]
    None,
    /// A pipe the monitor holds open until a send closes it (`--stdin`).
    Stdin,
    /// A pseudo-terminal the monitor holds: stdin, stdout and stderr are
    /// its terminal side, and the output is one raw stream (`--pty`).
    Pty(PtySize),
}

impl Interaction {
    /// The stored (and monitor command line) form: `stdin`, `pty 24x80`;
    /// `None` for no input.
    pub fn stored(self) -> Option<String> {
        match self {
            Interaction::None => None,
            Interaction::Stdin => Some("stdin".into()),
            Interaction::Pty(size) => Some(format!("pty {size}")),
        }
    }

    /// Reads the stored form back; an unknown one (a newer bgtask's) is
    /// no input, which refuses sends rather than guessing.
    pub fn from_stored(text: Option<&str>) -> Interaction {
        match text {
            Some("stdin") => Interaction::Stdin,
            Some(t) => t
                .strip_prefix("pty ")
                .and_then(|size| size.parse().ok())
                .map_or(Interaction::None, Interaction::Pty),
            None => Interaction::None,
        }
    }

    pub fn is_interactive(self) -> bool {
        self != Interaction::None
    }

    pub fn pty(self) -> Option<PtySize> {
        match self {
            Interaction::Pty(size) => Some(size),
            _ => None,
        }
    }
}

/// A key a sender names (`--key`, `keys`): what it sends, on a pipe or
/// under a terminal.
pub fn key_bytes(name: &str, pty: bool) -> Result<&'static [u8]> {
    const CTRL: [&[u8]; 26] = [
        b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\x07", b"\x08", b"\x09", b"\x0a",
        b"\x0b", b"\x0c", b"\x0d", b"\x0e", b"\x0f", b"\x10", b"\x11", b"\x12", b"\x13", b"\x14",
        b"\x15", b"\x16", b"\x17", b"\x18", b"\x19", b"\x1a",
    ];
    let lower = name.to_ascii_lowercase();
    let bytes: &'static [u8] = match lower.as_str() {
        // A terminal's Enter is a carriage return (the line discipline
        // turns it into the newline a program reads); a pipe gets the
        // newline itself.
        "enter" | "return" if pty => b"\r",
        "enter" | "return" => b"\n",
        "tab" => b"\t",
        "escape" | "esc" => b"\x1b",
        "backspace" => b"\x7f",
        "up" => b"\x1b[A",
        "down" => b"\x1b[B",
        "right" => b"\x1b[C",
        "left" => b"\x1b[D",
        "home" => b"\x1b[H",
        "end" => b"\x1b[F",
        "pageup" => b"\x1b[5~",
        "pagedown" => b"\x1b[6~",
        "f1" => b"\x1bOP",
        "f2" => b"\x1bOQ",
        "f3" => b"\x1bOR",
        "f4" => b"\x1bOS",
        "f5" => b"\x1b[15~",
        "f6" => b"\x1b[17~",
        "f7" => b"\x1b[18~",
        "f8" => b"\x1b[19~",
        "f9" => b"\x1b[20~",
        "f10" => b"\x1b[21~",
        "f11" => b"\x1b[23~",
        "f12" => b"\x1b[24~",
        other => match other.strip_prefix("ctrl-").or(other.strip_prefix("c-")) {
            Some(letter) if letter.len() == 1 && letter.as_bytes()[0].is_ascii_lowercase() => {
                CTRL[usize::from(letter.as_bytes()[0] - b'a')]
            }
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown key {name:?} (expected enter, tab, escape, backspace, up, down, \
                     left, right, home, end, pageup, pagedown, f1-f12 or ctrl-a..ctrl-z)"
                )))
            }
        },
    };
    Ok(bytes)
}

/// One send: text (as given, no newline added) then keys, in that order.
/// Checked against [`MAX_INPUT_BYTES`].
pub fn input_bytes(text: &str, keys: &[String], pty: bool) -> Result<String> {
    let mut data = text.to_owned();
    for key in keys {
        // Every key's bytes are ASCII.
        data.push_str(&String::from_utf8_lossy(key_bytes(key, pty)?));
    }
    if data.len() > MAX_INPUT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "input of {} bytes is too large: at most {MAX_INPUT_BYTES} bytes per send",
            data.len()
        )));
    }
    Ok(data)
}

/// What a monitor's screen looks like (a `--pty` task).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screen {
    pub rows: u16,
    pub cols: u16,
    /// The visible lines, trailing blanks removed.
    pub lines: Vec<String>,
    /// Zero-based.
    pub cursor_row: u16,
    pub cursor_col: u16,
    /// Whether the program switched to the alternate screen (full-screen
    /// programs such as `less` and editors do).
    pub alternate_screen: bool,
}

impl Screen {
    /// What a vt100 emulator shows.
    pub fn of(screen: &vt100::Screen) -> Screen {
        let (rows, cols) = screen.size();
        let (cursor_row, cursor_col) = screen.cursor_position();
        let mut lines: Vec<String> = screen
            .rows(0, cols)
            .map(|line| line.trim_end().to_owned())
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        Screen {
            rows,
            cols,
            lines,
            cursor_row,
            cursor_col,
            alternate_screen: screen.alternate_screen(),
        }
    }

    /// The visible text, one line per row.
    pub fn text(&self) -> String {
        let mut text = self.lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }
}

/// The screen a terminal of `size` shows after `output` (an ended
/// task's: its captured output replayed).
pub fn render(output: &[u8], size: PtySize) -> Screen {
    let mut parser = vt100::Parser::new(size.rows, size.cols, 0);
    parser.process(output);
    Screen::of(parser.screen())
}

/// The text a terminal of `size` holds after `output`: the lines that
/// scrolled off the top, then the screen, as plain text (issue 18: the
/// agent-facing views of a `--pty` task compact this, never the raw
/// stream). What the program redrew (progress bars, `\r` and cursor
/// moves, a cleared screen) shows in its final state; a line the terminal
/// wrapped is one line again; trailing blanks and blank lines at the end
/// go. A program still on the alternate screen (a pager, an editor) shows
/// that screen, as a terminal would.
///
/// Memory is bounded: the scrollback keeps at most [`SCROLLBACK_CELLS`]
/// cells (32 bytes each); past that its oldest lines are dropped, as a
/// terminal's scrollback drops them, and the text starts later.
pub fn terminal_text(output: &[u8], size: PtySize) -> String {
    // Every line that scrolls off takes at least one byte of output, so
    // the scrollback never needs more rows than there are bytes; rows are
    // allocated only as lines scroll off.
    let scrollback = output
        .len()
        .min(SCROLLBACK_CELLS / usize::from(size.cols.max(1)));
    let mut parser = vt100::Parser::new(size.rows, size.cols, scrollback);
    parser.process(output);
    let screen = parser.screen_mut();
    screen.set_scrollback(usize::MAX);
    let mut offset = screen.scrollback();
    let mut text = String::new();
    let mut line = String::new();
    loop {
        // The view at `offset` starts at the oldest row not taken yet: the
        // scrollback page by page, then (offset 0) the screen itself.
        screen.set_scrollback(offset);
        let take = if offset == 0 {
            usize::from(size.rows)
        } else {
            offset.min(usize::from(size.rows))
        };
        let page: Vec<String> = screen.rows(0, size.cols).take(take).collect();
        for (i, row) in page.iter().enumerate() {
            line.push_str(row);
            // A row the terminal wrapped continues on the next one.
            let wrapped = u16::try_from(i).is_ok_and(|i| screen.row_wrapped(i));
            if !wrapped {
                text.push_str(line.trim_end());
                text.push('\n');
                line.clear();
            }
        }
        if offset == 0 {
            break;
        }
        offset -= take;
    }
    if !line.is_empty() {
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let kept = text.trim_end_matches('\n').len();
    text.truncate(kept);
    if kept > 0 {
        text.push('\n');
    }
    text
}

/// The most cells [`terminal_text`] keeps in its scrollback (32 MiB).
pub const SCROLLBACK_CELLS: usize = 1 << 20;

/// What a send did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Bytes the task's input took at once.
    pub written: u64,
    /// Bytes the monitor holds until the task reads more (it keeps
    /// writing them in order); 0 when everything was delivered.
    pub queued: u64,
    /// Whether the input is now closed (end of file sent).
    pub closed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_checked() {
        assert_eq!(
            "24x80".parse::<PtySize>().unwrap(),
            PtySize { rows: 24, cols: 80 }
        );
        assert!("0x80".parse::<PtySize>().is_err());
        assert!("24".parse::<PtySize>().is_err());
        assert!("24x1001".parse::<PtySize>().is_err());
    }

    #[test]
    fn the_stored_form_round_trips() {
        for io in [
            Interaction::None,
            Interaction::Stdin,
            Interaction::Pty(PtySize {
                rows: 30,
                cols: 100,
            }),
        ] {
            assert_eq!(Interaction::from_stored(io.stored().as_deref()), io);
        }
        assert_eq!(
            Interaction::from_stored(Some("telepathy")),
            Interaction::None
        );
    }

    #[test]
    fn keys_are_what_a_terminal_sends() {
        assert_eq!(key_bytes("enter", false).unwrap(), b"\n");
        assert_eq!(key_bytes("enter", true).unwrap(), b"\r");
        assert_eq!(key_bytes("ctrl-c", true).unwrap(), b"\x03");
        assert_eq!(key_bytes("Ctrl-D", true).unwrap(), b"\x04");
        assert_eq!(key_bytes("up", true).unwrap(), b"\x1b[A");
        assert_eq!(key_bytes("f12", true).unwrap(), b"\x1b[24~");
        assert!(key_bytes("ctrl-1", true).is_err());
        assert!(key_bytes("hyper", true).is_err());
        assert_eq!(
            input_bytes("1+1", &["enter".into()], false).unwrap(),
            "1+1\n"
        );
        assert!(input_bytes(&"x".repeat(MAX_INPUT_BYTES + 1), &[], false).is_err());
    }

    #[test]
    fn terminal_text_is_what_the_terminal_finally_holds() {
        let size = PtySize { rows: 3, cols: 20 };
        // A progress bar redrawn with \r, a line erased and rewritten
        // after a cursor move up, more lines than the screen has.
        let output = b"start\r\nprogress 10%\rprogress 55%\rprogress 100%\r\n\
            tmp\r\n\x1b[1A\x1b[2K\rone\r\ntwo\r\nthree\r\nfour\r\n";
        assert_eq!(
            terminal_text(output, size),
            "start\nprogress 100%\none\ntwo\nthree\nfour\n"
        );
        // A cleared screen keeps what scrolled off before it, not what it
        // cleared; a wrapped line is one line.
        let size = PtySize { rows: 3, cols: 10 };
        let output = b"a\r\nb\r\nc\r\nd\r\n\x1b[2J\x1b[Hdone 0123456789xyz\r\n";
        assert_eq!(terminal_text(output, size), "a\nb\ndone 0123456789xyz\n");
        // A pager still running shows its screen.
        let output = b"before\r\n\x1b[?1049h\x1b[Hpage 1\r\n:";
        assert_eq!(terminal_text(output, size), "page 1\n:\n");
        assert_eq!(terminal_text(b"", size), "");
    }

    #[test]
    fn terminal_text_keeps_the_newest_lines_when_its_scrollback_is_full() {
        let size = PtySize {
            rows: 2,
            cols: 1000,
        };
        let keep = SCROLLBACK_CELLS / 1000;
        let output: String = (0..keep + 500).map(|i| format!("{i}\r\n")).collect();
        let text = terminal_text(output.as_bytes(), size);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.last(), Some(&(keep + 499).to_string().as_str()));
        assert!(lines.len() <= keep + 2, "{}", lines.len());
    }
}
