//! Params, results and shared logic of the interactive-task methods
//! (issue 18): `bash_write`, `bash_signal`, `bash_resize`, and the
//! `view` of `bash_status` / `bash_output`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::interact::{input_bytes, PtySize, Screen, Sent};
use crate::service::Service;
use crate::task::{Task, TaskId};

/// How `bash_status` / `bash_output` show a `--pty` task's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The bytes as captured (escape sequences included).
    #[default]
    Raw,
    /// The terminal's screen, rendered (vt100).
    Screen,
}

/// `bash_write`.
#[derive(Debug, Deserialize)]
pub struct WriteParams {
    pub task_id: TaskId,
    /// Text sent as given (no newline added).
    pub data: Option<String>,
    /// Keys sent after `data`, in order (`enter`, `ctrl-c`, `up`, …).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Then close the input (under a terminal: ctrl-d).
    #[serde(default)]
    pub eof: bool,
}

/// The result of `bash_write`.
#[derive(Debug, Serialize)]
pub struct WriteResult {
    pub task_id: TaskId,
    #[serde(flatten)]
    pub sent: Sent,
}

impl WriteParams {
    /// Sends the input these params describe.
    pub fn send(&self, service: &Service) -> Result<WriteResult> {
        let text = self.data.as_deref().unwrap_or("");
        if text.is_empty() && self.keys.is_empty() && !self.eof {
            return Err(Error::InvalidArgument(
                "nothing to send: give data, keys or eof".into(),
            ));
        }
        let task = service.get(&self.task_id)?;
        let data = input_bytes(text, &self.keys, task.pty.is_some())?;
        Ok(WriteResult {
            task_id: self.task_id.clone(),
            sent: service.send_input(&self.task_id, &data, self.eof)?,
        })
    }
}

/// `bash_signal`.
#[derive(Debug, Deserialize)]
pub struct SignalParams {
    pub task_id: TaskId,
    /// `INT`, `SIGUSR1`, `15`, …
    pub signal: String,
    /// Only the task's shell.
    #[serde(default)]
    pub leader: bool,
}

impl SignalParams {
    pub fn send(&self, service: &Service) -> Result<Task> {
        service.signal(&self.task_id, &self.signal, self.leader)
    }
}

/// `bash_resize`.
#[derive(Debug, Deserialize)]
pub struct ResizeParams {
    pub task_id: TaskId,
    pub rows: u16,
    pub cols: u16,
}

impl ResizeParams {
    pub fn resize(&self, service: &Service) -> Result<Task> {
        service.resize(&self.task_id, PtySize::new(self.rows, self.cols)?)
    }
}

/// The `view: "screen"` answer of `bash_output`: the rendered screen as
/// `data`, with the screen itself.
pub fn screen_output(service: &Service, id: &TaskId) -> Result<(Screen, Value)> {
    let screen = service.screen(id)?;
    let task = service.get(id)?;
    let value = json!({
        "task_id": id,
        "view": View::Screen,
        "data": screen.text(),
        "screen": screen,
        "eof": task.is_terminal(),
        "output_dropped_bytes": task.output_dropped_bytes,
    });
    Ok((screen, value))
}
