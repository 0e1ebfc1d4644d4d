//! The monitor's wait loop: one `poll` on named slots (the shell's pidfd,
//! the signal pipe, the control channel, the output pipes) with the next
//! deadline as its timeout. Each wake-up copies output, then acts on an
//! exit, a passed deadline, a signal or a request, in that order.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::end::{end, finish_lost};
use super::stop::{expired, next_deadline, signal_tree, Limits, Stop, Stopping, Tree};
use super::{log, DEFAULT_GRACE_MS};
use crate::control::{Channel, Control, Reply};
use crate::output::CappedWriter;
use crate::process::{self, Cgroup, ProcessHandle, SignalPipe};
use crate::store::Store;
use crate::task::{Status, TaskId};

/// A started task under supervision.
pub(super) struct Running {
    pub id: TaskId,
    pub child: process::Shell,
    pub pgid: u32,
    pub cgroup: Option<Cgroup>,
    pub streams: [Stream; 2],
    pub signals: SignalPipe,
    /// `None` when the socket could not be bound (requests then come as
    /// SIGUSR1 through the signal pipe) or once the loop is over.
    pub channel: Option<Channel>,
    pub limits: Limits,
    /// The record said `killing` when the shell was recorded.
    pub kill_requested: bool,
    /// A sandboxed task's private directory and failure note (`start.rs`).
    pub sandbox: Option<super::start::Sandboxed>,
}

impl Running {
    /// The task's tree as it can be signalled now.
    pub fn tree(&self) -> Tree<'_> {
        Tree {
            id: &self.id,
            cgroup: self.cgroup.as_ref(),
            group: (!self.child.is_reaped()).then_some(self.pgid),
        }
    }

    pub fn dropped_bytes(&self) -> u64 {
        self.streams.iter().map(|s| s.writer.dropped()).sum()
    }
}

/// One output pipe and the file it is copied into.
pub(super) struct Stream {
    /// `None` once the pipe reached end of file.
    pub pipe: Option<OwnedFd>,
    pub writer: CappedWriter,
    /// Set after the first failed write, so a full disk logs once.
    pub write_failed: bool,
}

/// What one read from a pipe did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pumped {
    Nothing,
    Output,
    /// Output arrived and the cap dropped older output.
    Compacted,
}

/// What one `poll` found readable, by name.
#[derive(Debug, Default)]
struct Wake {
    /// The shell's pidfd: it exited.
    exited: bool,
    /// The signal pipe: SIGTERM or SIGUSR1 arrived.
    signal: bool,
    /// The control socket: a sender is waiting.
    request: bool,
    /// Each output pipe: data or end of file.
    output: [bool; 2],
}

/// The poll slots: fixed ones first, then those present right now.
const SLOT_EXITED: usize = 0;
const SLOT_SIGNAL: usize = 1;

/// Waits for the next wake-up (or `timeout`).
fn wait(
    task: &Running,
    pidfd: &ProcessHandle,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<Wake> {
    let mut fds: Vec<BorrowedFd<'_>> = vec![pidfd.as_fd(), task.signals.as_fd()];
    let request_slot = task.channel.as_ref().map(|c| {
        fds.push(c.as_fd());
        fds.len() - 1
    });
    let mut output_slots = [None, None];
    for (slots, stream) in output_slots.iter_mut().zip(&task.streams) {
        if let Some(pipe) = &stream.pipe {
            fds.push(pipe.as_fd());
            *slots = Some(fds.len() - 1);
        }
    }
    let ready = process::wait_readable(&fds, timeout)?;
    let is_ready = |slot: Option<usize>| slot.is_some_and(|i| ready[i]);
    Ok(Wake {
        exited: ready[SLOT_EXITED],
        signal: ready[SLOT_SIGNAL],
        request: is_ready(request_slot),
        output: output_slots.map(is_ready),
    })
}

pub(super) fn supervise(store: &mut Store, mut task: Running) {
    let pidfd = match process::child_handle(&task.child) {
        Ok(fd) => fd,
        Err(e) => {
            log(&format!("{}: pidfd_open failed: {e}", task.id));
            return finish_lost(store, task, "the monitor could not watch the process");
        }
    };
    let mut stopping: Option<Stopping> = None;
    let mut last_output = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    if task.kill_requested {
        stopping = Some(begin_stop(
            &task,
            Stop::Request,
            requested_grace(store, &task.id),
        ));
    }
    loop {
        let now = Instant::now();
        let deadline = next_deadline(&task.limits, stopping.as_ref(), last_output);
        if deadline.is_some_and(|d| d <= now) {
            // A shell that exited just as the deadline passed keeps its own
            // end: look at the pidfd before acting on the deadline.
            if pidfd.has_exited() {
                break;
            }
            match &mut stopping {
                Some(s) => {
                    if let Some(sig) = s.escalate() {
                        signal_tree(&task.tree(), sig);
                    }
                }
                None => {
                    let why = expired(&task.limits, now);
                    stopping = Some(begin_stop(&task, why, DEFAULT_GRACE_MS));
                }
            }
            continue;
        }
        let timeout = deadline.map(|d| d.saturating_duration_since(now));
        let wake = match wait(&task, &pidfd, timeout) {
            Ok(wake) => wake,
            Err(e) => {
                log(&format!("{}: poll failed: {e}", task.id));
                break;
            }
        };
        let mut compacted = false;
        for (stream, ready) in task.streams.iter_mut().zip(wake.output) {
            match ready.then(|| pump(&task.id, stream, &mut buf)) {
                Some(Pumped::Output) => last_output = Instant::now(),
                Some(Pumped::Compacted) => {
                    last_output = Instant::now();
                    compacted = true;
                }
                _ => {}
            }
        }
        if compacted {
            let _ = store.set_dropped_bytes(&task.id, task.dropped_bytes());
        }
        if wake.exited {
            // The exit is handled before any kill request that arrived in
            // the same wake-up: a natural exit racing a kill keeps its code.
            break;
        }
        if wake.signal {
            task.signals.drain();
            if stopping.is_none() && kill_was_requested(store, &task) && !pidfd.has_exited() {
                let grace = requested_grace(store, &task.id);
                stopping = Some(begin_stop(&task, Stop::Request, grace));
            }
        }
        if wake.request {
            answer_requests(store, &task, &mut stopping, &pidfd);
        }
    }
    // No more requests: the socket goes now, so a sender falls back at
    // once instead of waiting for an answer that will not come.
    task.channel = None;
    let status = process::try_reap(&mut task.child).ok().flatten();
    end(store, task, status, stopping);
}

/// Answers every request waiting on the control channel. A new request
/// of [`Control`] is carried out here.
fn answer_requests(
    store: &Store,
    task: &Running,
    stopping: &mut Option<Stopping>,
    pidfd: &ProcessHandle,
) {
    let Some(channel) = &task.channel else {
        return;
    };
    while let Some(incoming) = channel.next() {
        match incoming.request {
            Control::Kill { grace_ms } => {
                let begins = stopping.is_none() && !pidfd.has_exited();
                if begins {
                    *stopping = Some(begin_stop(task, Stop::Request, grace_ms));
                }
                // Answered before the store is touched: the sender waits.
                incoming.answer(&Reply::Done);
                if begins {
                    record_kill(store, &task.id, grace_ms);
                }
            }
            Control::Signal { .. }
            | Control::Input { .. }
            | Control::Resize { .. }
            | Control::Watch => {
                let request = incoming.request.name().to_owned();
                incoming.answer(&Reply::NotSupported { request });
            }
        }
    }
}

/// Makes sure the store says `killing` for a kill that came without a
/// record (a sender that asks without recording, or a re-telling).
fn record_kill(store: &Store, id: &TaskId, grace_ms: u64) {
    if matches!(store.live(id), Ok(Some(live)) if live.status == Status::Killing) {
        return;
    }
    if matches!(store.request_kill(id, grace_ms), Ok(true)) {
        store.touch_events();
    }
}

/// Starts a stop: SIGTERM now (SIGKILL without grace), SIGKILL at the
/// grace's end.
fn begin_stop(task: &Running, why: Stop, grace_ms: u64) -> Stopping {
    let stopping = Stopping::begin(why, grace_ms, Instant::now());
    signal_tree(&task.tree(), stopping.last_signal);
    stopping
}

/// The grace recorded with the task's kill request.
fn requested_grace(store: &Store, id: &TaskId) -> u64 {
    store
        .live(id)
        .ok()
        .flatten()
        .and_then(|l| l.kill_grace_ms)
        .unwrap_or(DEFAULT_GRACE_MS)
}

/// Whether the signal pipe brought a kill: SIGTERM to the monitor itself
/// (recorded here as a request), or SIGUSR1 with `killing` in the store.
fn kill_was_requested(store: &Store, task: &Running) -> bool {
    if task.signals.take_terminated() {
        let _ = store.request_kill(&task.id, DEFAULT_GRACE_MS);
        return true;
    }
    matches!(store.live(&task.id), Ok(Some(live)) if live.status == Status::Killing)
}

/// Copies what is available on one pipe into its file. At end of file the
/// pipe is closed.
pub(super) fn pump(id: &TaskId, stream: &mut Stream, buf: &mut [u8]) -> Pumped {
    let Some(pipe) = &stream.pipe else {
        return Pumped::Nothing;
    };
    match process::read_fd(pipe.as_fd(), buf) {
        Ok(0) => {
            stream.pipe = None;
            Pumped::Nothing
        }
        Ok(n) => match stream.writer.write(&buf[..n]) {
            Ok(true) => Pumped::Compacted,
            Ok(false) => Pumped::Output,
            // Disk full or similar: keep draining the pipe so the task is
            // not blocked on a full pipe.
            Err(e) => {
                if !stream.write_failed {
                    log(&format!(
                        "{id}: cannot write output (further errors not logged): {e}"
                    ));
                    stream.write_failed = true;
                }
                Pumped::Output
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Pumped::Nothing,
        Err(_) => {
            stream.pipe = None;
            Pumped::Nothing
        }
    }
}
