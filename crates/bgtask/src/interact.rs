//! `bgtask send`, `signal`, `screen` and `resize`: talking to a running
//! interactive task (issue 18). The flags are here; the work is the core's
//! (`Service::send_input`, `signal`, `resize`, `screen`).

use anyhow::Result;
use clap::Args;

use bgtask_core::interact::{input_bytes, PtySize, MAX_INPUT_BYTES};
use bgtask_core::{Error, Service, TaskId};

use crate::render;

const SEND_HELP: &str = "Keys: enter (a newline on a --stdin pipe, a carriage return under \
--pty), tab, escape, backspace, up, down, left, right, home, end, pageup, pagedown, f1-f12, \
ctrl-a ... ctrl-z. TEXT is sent as given (no newline added), then the keys in order. At most \
1 MiB per send (TEXT, --file or --stdin, and the keys together). Input is never stored.\n\n\
Examples:\n  bgtask send last 'print(1+1)' --key enter\n  bgtask send last --key ctrl-c\n  \
bgtask send last --file script.sql --eof\n  generate | bgtask send last --stdin\n  bgtask send last --eof";

/// `bgtask send`.
#[derive(Debug, Args)]
#[command(after_help = SEND_HELP)]
pub struct SendArgs {
    pub task_id: String,
    /// Text to send as given
    #[arg(allow_hyphen_values = true, conflicts_with_all = ["file", "stdin"])]
    pub text: Option<String>,
    /// Send the contents of PATH instead of TEXT (`-`: this command's
    /// stdin); UTF-8 text, at most 1 MiB
    #[arg(long, value_name = "PATH", conflicts_with = "stdin")]
    pub file: Option<std::path::PathBuf>,
    /// Send what this command reads on its stdin (to its end), as --file -
    #[arg(long)]
    pub stdin: bool,
    /// A key to send after the text (repeatable)
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// Then close the input (end of file; under --pty: ctrl-d)
    #[arg(long)]
    pub eof: bool,
}

/// `bgtask signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    pub task_id: String,
    /// INT, HUP, USR1, TERM, ... (with or without SIG) or a number
    pub signal: String,
    /// Only the task's shell, not the processes it started
    #[arg(long)]
    pub leader: bool,
}

/// `bgtask screen`.
#[derive(Debug, Args)]
pub struct ScreenArgs {
    pub task_id: String,
}

/// `bgtask resize`.
#[derive(Debug, Args)]
pub struct ResizeArgs {
    pub task_id: String,
    /// The new size, ROWSxCOLS (e.g. 40x120)
    #[arg(value_parser = pty_size)]
    pub size: PtySize,
}

pub fn pty_size(text: &str) -> Result<PtySize, String> {
    text.parse().map_err(|e: bgtask_core::Error| e.to_string())
}

pub fn send(service: &Service, id: &TaskId, args: SendArgs, json: bool) -> Result<u8> {
    let source = match (&args.file, args.stdin) {
        (Some(path), _) if path.as_os_str() != "-" => Some(Source::File(path)),
        (Some(_), _) | (None, true) => Some(Source::Stdin),
        (None, false) => None,
    };
    // Read before the task is looked at: a refused input changes nothing.
    let text = match source {
        Some(source) => source.read()?,
        None => args.text.unwrap_or_default(),
    };
    if text.is_empty() && args.keys.is_empty() && !args.eof {
        anyhow::bail!(bgtask_core::Error::InvalidArgument(
            "nothing to send: give TEXT, --file, --stdin, --key or --eof".into()
        ));
    }
    let task = service.get(id)?;
    let data = input_bytes(&text, &args.keys, task.pty.is_some())?;
    let sent = service.send_input(id, &data, args.eof)?;
    if json {
        render::json(&sent)?;
    } else if sent.queued > 0 {
        // Said on stderr: the send worked, but not all of it reached the
        // task yet.
        eprintln!(
            "bgtask: {} of {} bytes wait for the task to read them (its monitor keeps writing them, in order)",
            sent.queued,
            sent.queued + sent.written
        );
    }
    Ok(0)
}

/// Where `send` reads its text from, instead of the command line (whose
/// arguments hold at most 128 KiB each).
enum Source<'a> {
    File(&'a std::path::Path),
    Stdin,
}

impl Source<'_> {
    /// The whole text, refused when larger than a send takes or not UTF-8
    /// (a send is text: the control channel carries JSON strings).
    fn read(&self) -> Result<String> {
        use std::io::Read;
        let invalid = |message: String| anyhow::Error::new(Error::InvalidArgument(message));
        let name = match self {
            Source::File(path) => format!("--file {}", path.display()),
            Source::Stdin => "stdin".to_owned(),
        };
        let reader: Box<dyn Read> = match self {
            Source::File(path) => Box::new(
                std::fs::File::open(path)
                    .map_err(|e| invalid(format!("cannot read {name}: {e}")))?,
            ),
            Source::Stdin => Box::new(std::io::stdin().lock()),
        };
        // One byte more than allowed tells "too large" without reading a
        // huge input to its end.
        let mut bytes = Vec::new();
        reader
            .take(MAX_INPUT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| invalid(format!("cannot read {name}: {e}")))?;
        if bytes.len() > MAX_INPUT_BYTES {
            return Err(invalid(format!(
                "{name} holds more than {MAX_INPUT_BYTES} bytes: at most {MAX_INPUT_BYTES} bytes per send \
                 (split it into several sends)"
            )));
        }
        String::from_utf8(bytes).map_err(|e| {
            invalid(format!(
                "{name} is not UTF-8 text (invalid byte at offset {}); send takes text",
                e.utf8_error().valid_up_to()
            ))
        })
    }
}

pub fn signal(service: &Service, id: &TaskId, args: &SignalArgs, json: bool) -> Result<u8> {
    let task = service.signal(id, &args.signal, args.leader)?;
    if json {
        render::json(&task)?;
    } else {
        let sent = task
            .signals_sent
            .last()
            .map_or("the signal", String::as_str);
        let whom = if args.leader { "shell of " } else { "" };
        render::line(&format!("sent {sent} to the {whom}task {id}"))?;
    }
    Ok(0)
}

pub fn screen(service: &Service, id: &TaskId, json: bool) -> Result<u8> {
    let screen = service.screen(id)?;
    if json {
        render::json(&screen)?;
    } else {
        for line in &screen.lines {
            render::line(&render::printable(line, false))?;
        }
    }
    Ok(0)
}

pub fn resize(service: &Service, id: &TaskId, size: PtySize, json: bool) -> Result<u8> {
    let task = service.resize(id, size)?;
    if json {
        render::json(&task)?;
    }
    Ok(0)
}
