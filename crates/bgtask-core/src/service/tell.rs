//! Telling a running task something (issue 18): input, a signal, a new
//! terminal size, and asking for its screen. Each goes to the task's
//! monitor over the control channel (the monitor holds the input and the
//! terminal, so they outlive whoever started the task); what must survive
//! (a signal sent, a terminal's size) is recorded in the store first.

use super::Service;
use crate::control::{self, Control, Reply};
use crate::error::{Error, Result};
use crate::interact::{Interaction, PtySize, Screen, Sent, MAX_INPUT_BYTES};
use crate::process::Signal;
use crate::task::{Status, Task, TaskId};

impl Service {
    /// Sends `data` to a `--stdin` or `--pty` task; `eof` closes a pipe
    /// (under a terminal: ctrl-d) once it is written.
    pub fn send_input(&self, id: &TaskId, data: &str, eof: bool) -> Result<Sent> {
        if data.len() > MAX_INPUT_BYTES {
            return Err(Error::InvalidArgument(format!(
                "input of {} bytes is too large: at most {MAX_INPUT_BYTES} bytes per send",
                data.len()
            )));
        }
        let task = self.interactive(id, "takes no input")?;
        if task.interaction() == Interaction::None {
            return Err(Error::NotInteractive(format!(
                "task {id} takes no input: start it with --stdin or --pty (serve/MCP: stdin or pty)"
            )));
        }
        let request = Control::Input {
            data: data.to_owned(),
            eof,
        };
        match self.tell(&task, &request)? {
            Reply::Sent { sent } => Ok(sent),
            other => Err(unexpected(id, &other)),
        }
    }

    /// Sends `signal` (`INT`, `SIGUSR1`, `15`) to the task's processes, or
    /// with `leader` to its shell only. Recorded in the task's history
    /// first, so an end by it reads "ended by SIGINT sent with bgtask
    /// signal".
    pub fn signal(&self, id: &TaskId, signal: &str, leader: bool) -> Result<Task> {
        let sig = Signal::parse(signal).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown signal {signal:?} (expected a name such as INT, TERM, USR1, HUP or a number 1-64)"
            ))
        })?;
        let task = self.interactive(id, "cannot be signalled")?;
        // A paused task's record, timeouts and slot say "paused": a CONT
        // from here would let it run while recorded paused.
        // A queued task has no processes yet: nothing would be signalled,
        // and its record must not say otherwise.
        if task.status == Status::Queued {
            return Err(Error::InvalidState(format!(
                "task {id} is queued and has no processes to signal yet (`bgtask kill {id}` removes it from the queue)"
            )));
        }
        if task.status == Status::Paused && sig.is_continue() {
            return Err(Error::InvalidState(format!(
                "task {id} is paused: resume it with `bgtask resume {id}` (serve: bash_resume), not with SIGCONT"
            )));
        }
        if !self.store().record_signal(id, &sig.name())? {
            return Err(ended(&self.get(id)?, "cannot be signalled"));
        }
        self.store().touch_events();
        let request = Control::Signal {
            signal: sig.name(),
            leader,
        };
        match self.tell(&task, &request)? {
            Reply::Done => self.get(id),
            other => Err(unexpected(id, &other)),
        }
    }

    /// Gives a `--pty` task's terminal a new size.
    pub fn resize(&self, id: &TaskId, size: PtySize) -> Result<Task> {
        let size = PtySize::new(size.rows, size.cols)?;
        let task = self.interactive(id, "has no terminal to resize")?;
        if task.pty.is_none() {
            return Err(no_terminal(id));
        }
        self.store().set_interaction(id, Interaction::Pty(size))?;
        let request = Control::Resize {
            rows: size.rows,
            cols: size.cols,
        };
        match self.tell(&task, &request)? {
            Reply::Done => self.get(id),
            other => Err(unexpected(id, &other)),
        }
    }

    /// A `--pty` task's screen: the live one from its monitor, or for a
    /// task that ended, its output replayed through a terminal of its
    /// last size.
    pub fn screen(&self, id: &TaskId) -> Result<Screen> {
        let task = self.get(id)?;
        let Some(size) = task.pty else {
            return Err(no_terminal(id));
        };
        if task.is_terminal() {
            return replay(&task, size);
        }
        match self.tell(&task, &Control::Screen) {
            Ok(Reply::Screen { screen }) => Ok(screen),
            // Ended meanwhile: its output is complete.
            Err(_) if self.get(id)?.is_terminal() => replay(&self.get(id)?, size),
            Ok(other) => Err(unexpected(id, &other)),
            Err(e) => Err(e),
        }
    }

    /// The task, if it is live (else why not).
    fn interactive(&self, id: &TaskId, what: &str) -> Result<Task> {
        let task = self.get(id)?;
        if task.is_terminal() {
            return Err(ended(&task, what));
        }
        Ok(task)
    }

    /// One request to the task's monitor; its refusal as an error.
    fn tell(&self, task: &Task, request: &Control) -> Result<Reply> {
        let id = &task.task_id;
        // A task is reported once recorded (`run`, a background `bash`),
        // before its monitor listens: wait for its start first.
        if task.status == Status::Starting && self.started(task.clone())?.is_terminal() {
            return Err(ended(&self.get(id)?, "is not reachable"));
        }
        let mut sent = control::send(&self.config().home, id, request);
        // A monitor that gave up reading a long request (its per-read
        // timeout, on a loaded machine) closed the connection before the
        // request was complete: it carried out nothing, so asking again is
        // safe. A request it read is always answered.
        for _ in 0..3 {
            match &sent {
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    sent = control::send(&self.config().home, id, request)
                }
                _ => break,
            }
        }
        match sent {
            Ok(Reply::Failed { message }) => {
                Err(Error::NotInteractive(format!("task {id}: {message}")))
            }
            Ok(Reply::NotSupported { .. }) => Err(Error::NotInteractive(format!(
                "task {id}'s monitor is of an older bgtask and takes no {} requests",
                request.name()
            ))),
            Ok(reply) => Ok(reply),
            Err(e) => {
                // It may have ended between our read and the request.
                let now = self.get(id)?;
                if now.is_terminal() {
                    return Err(ended(&now, "is not reachable"));
                }
                Err(Error::Unreachable(format!(
                    "task {id}'s monitor does not answer on its control socket ({e})"
                )))
            }
        }
    }
}

fn ended(task: &Task, what: &str) -> Error {
    Error::NotInteractive(format!(
        "task {} has ended ({}) and {what}",
        task.task_id, task.status
    ))
}

fn no_terminal(id: &TaskId) -> Error {
    Error::NotInteractive(format!(
        "task {id} does not run under a terminal: start it with --pty (serve/MCP: pty)"
    ))
}

fn unexpected(id: &TaskId, reply: &Reply) -> Error {
    Error::NotInteractive(format!("task {id}'s monitor answered {reply:?}"))
}

/// An ended terminal task's last screen: its captured output replayed.
fn replay(task: &Task, size: PtySize) -> Result<Screen> {
    let data = std::fs::read(&task.stdout_path)
        .map_err(|e| Error::io("cannot read output", &task.stdout_path, e))?;
    Ok(crate::interact::render(&data, size))
}
