//! The monitor's wait loop: one `poll` on named slots (the shell's pidfd,
//! the signal pipe, the control channel, the output pipes) with the next
//! deadline as its timeout. Each wake-up copies output, then acts on an
//! exit, a passed deadline, a signal or a request, in that order.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::end::{end, finish_lost};
use super::interact::{self, Input, Terminal};
use super::pause;
use super::stop::{expired, next_deadline, signal_tree, Limits, Stop, Stopping, Tree};
use super::watch::{Verdict, Watching};
use super::{log, DEFAULT_GRACE_MS};
use crate::control::{Channel, Control, Reply};
use crate::output::CappedWriter;
use crate::process::{self, Cgroup, ProcessHandle, Signal, SignalPipe};
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
    /// Its readiness condition and watches (issue 16).
    pub watching: Watching,
    /// An interactive task's input (issue 18; `None` for /dev/null).
    pub input: Option<Input>,
    /// Signals carried out for `bgtask signal`, so an end by one of them
    /// says who sent it.
    pub sent_signals: Vec<Signal>,
    /// A sandboxed task's private directory and failure note (`start.rs`).
    pub sandbox: Option<super::start::Sandboxed>,
    /// Set while the task's tree is held stopped (`bgtask pause`, issue 21).
    pub held: Option<super::pause::Held>,
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
    /// A `--pty` task's screen, fed with everything read (issue 18).
    pub terminal: Option<Terminal>,
}

/// What one read from a pipe did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pumped {
    Nothing,
    /// This many bytes arrived (they are at the start of the buffer).
    Output(usize),
    /// Output arrived and the cap dropped older output.
    Compacted(usize),
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
    /// The task's input can take the input that waits (issue 18).
    writable: bool,
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
    let waiting_input = task.input.as_ref().and_then(Input::waiting_fd);
    let (ready, writable) = process::wait_ready(&fds, waiting_input, timeout)?;
    let is_ready = |slot: Option<usize>| slot.is_some_and(|i| ready[i]);
    Ok(Wake {
        exited: ready[SLOT_EXITED],
        signal: ready[SLOT_SIGNAL],
        request: is_ready(request_slot),
        output: output_slots.map(is_ready),
        writable,
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
        let grace = requested_grace(store, &task.id);
        stopping = Some(begin_stop(&mut task, Stop::Request, grace));
    }
    loop {
        let now = Instant::now();
        // A paused task's time does not count: no timeout runs while it is
        // held (the grace of a stop does; a stop lets it go first).
        let held = task.held.is_some();
        // Readiness probes and timeouts, watch cooldowns: their own timers,
        // kept apart from the stop deadlines below.
        let timer = task.watching.next_deadline().filter(|_| !held);
        if timer.is_some_and(|d| d <= now) {
            let verdict = task.watching.tick(store, &task.id, now);
            if verdict == Verdict::Kill && stopping.is_none() && !pidfd.has_exited() {
                stopping = Some(begin_stop(&mut task, Stop::Request, DEFAULT_GRACE_MS));
                record_kill(store, &task.id, DEFAULT_GRACE_MS);
            }
            continue;
        }
        let deadline = next_deadline(&task.limits, stopping.as_ref(), last_output)
            .filter(|_| stopping.is_some() || !held);
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
                    stopping = Some(begin_stop(&mut task, why, DEFAULT_GRACE_MS));
                }
            }
            continue;
        }
        let wake_at = match (deadline, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = wake_at.map(|d| d.saturating_duration_since(now));
        let wake = match wait(&task, &pidfd, timeout) {
            Ok(wake) => wake,
            Err(e) => {
                log(&format!("{}: poll failed: {e}", task.id));
                break;
            }
        };
        let mut compacted = false;
        for (which, ready) in wake.output.into_iter().enumerate() {
            if !ready {
                continue;
            }
            let n = match pump(&task.id, &mut task.streams[which], &mut buf) {
                Pumped::Nothing => continue,
                Pumped::Output(n) => n,
                Pumped::Compacted(n) => {
                    compacted = true;
                    n
                }
            };
            last_output = Instant::now();
            // Only a task with a pattern has its output looked at.
            if !task.watching.is_idle() {
                task.watching.output(store, &task.id, which, &buf[..n]);
            }
        }
        if compacted {
            let _ = store.set_dropped_bytes(&task.id, task.dropped_bytes());
        }
        interact::after_wake(&mut task, wake.writable);
        if wake.exited {
            // The exit is handled before any kill request that arrived in
            // the same wake-up: a natural exit racing a kill keeps its code.
            break;
        }
        if wake.signal {
            task.signals.drain();
            if stopping.is_none() && kill_was_requested(store, &task) && !pidfd.has_exited() {
                let grace = requested_grace(store, &task.id);
                stopping = Some(begin_stop(&mut task, Stop::Request, grace));
            }
            // SIGUSR1 also means "read the store" for a pause or resume
            // told without the control channel.
            if let Ok(Some(time)) = pause::sync(store, &mut task, stopping.is_some()) {
                last_output = last_output.checked_add(time).unwrap_or(last_output);
            }
        }
        if wake.request {
            answer_requests(store, &mut task, &mut stopping, &pidfd, &mut last_output);
        }
    }
    // A task that ended while paused is let go, so that what is left of
    // its tree can be killed and reaped (and its cgroup removed).
    pause::release(&mut task);
    // No more requests: the socket goes now, so a sender falls back at
    // once instead of waiting for an answer that will not come.
    task.channel = None;
    let status = process::try_reap(&mut task.child).ok().flatten();
    end(store, task, status, stopping);
}

/// Answers every request waiting on the control channel. A new request
/// of [`Control`] is carried out here.
fn answer_requests(
    store: &mut Store,
    task: &mut Running,
    stopping: &mut Option<Stopping>,
    pidfd: &ProcessHandle,
    last_output: &mut Instant,
) {
    // Taken for the loop, so a request's answer may change the task.
    let Some(channel) = task.channel.take() else {
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
            // Its turn came long ago (a repeated hand-off, issue 21).
            Control::Start | Control::Claimed => incoming.answer(&Reply::Done),
            Control::Watch => {
                // The sender stored the change first: read it now.
                task.watching.reload(store, &task.id);
                incoming.answer(&Reply::Done);
            }
            Control::Pause | Control::Resume => {
                let reply = match pause::sync(store, task, stopping.is_some()) {
                    Ok(released) => {
                        if let Some(time) = released {
                            *last_output = last_output.checked_add(time).unwrap_or(*last_output);
                        }
                        Reply::Done
                    }
                    Err(message) => Reply::Failed { message },
                };
                incoming.answer(&reply);
            }
            Control::Signal { .. }
            | Control::Input { .. }
            | Control::Resize { .. }
            | Control::Screen => {
                let reply = interact::answer(task, &incoming.request, pidfd);
                incoming.answer(&reply);
            }
        }
    }
    task.channel = Some(channel);
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
/// grace's end. A paused task is let go right after the signal, so that
/// it sees the signal first and can act on it (a frozen or stopped
/// process does not).
fn begin_stop(task: &mut Running, why: Stop, grace_ms: u64) -> Stopping {
    let stopping = Stopping::begin(why, grace_ms, Instant::now());
    signal_tree(&task.tree(), stopping.last_signal);
    pause::release(task);
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
/// pipe is closed (after the bytes read before it are copied).
///
/// A terminal's master side delivers at most 4 KiB per read (the line
/// discipline's read buffer), where a pipe delivers up to 64 KiB: under a
/// terminal one wake-up reads until nothing is left or `buf` is nearly
/// full, so the file gets one write and the loop one `poll` per up to
/// 64 KiB instead of per 4 KiB (docs/BENCHMARKS.md, issue 18). Only the
/// terminal's descriptor is non-blocking during the loop; a pipe is read
/// once.
pub(super) fn pump(id: &TaskId, stream: &mut Stream, buf: &mut [u8]) -> Pumped {
    let Some(pipe) = &stream.pipe else {
        return Pumped::Nothing;
    };
    let drain = stream.terminal.is_some();
    let mut n = 0;
    let mut ended = false;
    loop {
        match process::read_fd(pipe.as_fd(), &mut buf[n..]) {
            Ok(0) => ended = true,
            Ok(read) => {
                n += read;
                if drain && buf.len() - n >= TERMINAL_READ {
                    continue;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // EIO: the terminal's last holder closed it.
            Err(_) => ended = true,
        }
        break;
    }
    if ended {
        stream.pipe = None;
    }
    if n == 0 {
        return Pumped::Nothing;
    }
    // A terminal task's screen sees every byte (issue 18).
    if let Some(terminal) = &mut stream.terminal {
        terminal.feed(&buf[..n]);
    }
    match stream.writer.write(&buf[..n]) {
        Ok(true) => Pumped::Compacted(n),
        Ok(false) => Pumped::Output(n),
        // Disk full or similar: keep draining the pipe so the task is
        // not blocked on a full pipe.
        Err(e) => {
            if !stream.write_failed {
                log(&format!(
                    "{id}: cannot write output (further errors not logged): {e}"
                ));
                stream.write_failed = true;
            }
            Pumped::Output(n)
        }
    }
}

/// The most a terminal's master side delivers per read (n_tty's buffer).
const TERMINAL_READ: usize = 4 << 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interact::PtySize;

    /// Everything a task writes under a terminal reaches the file intact,
    /// including what arrives with the end (EIO once the task's side is
    /// closed), whatever the reads per wake-up.
    #[test]
    fn a_terminal_is_drained_into_the_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let file = std::fs::File::create(&path).unwrap();
        let (master, slave) = process::open_pty(24, 80).unwrap();
        let mut stream = Stream {
            pipe: Some(master),
            writer: CappedWriter::new(path.clone(), file, 1 << 30),
            write_failed: false,
            terminal: Some(Terminal::new(PtySize::DEFAULT)),
        };
        // No newlines: the terminal passes the bytes as they are.
        let data: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let writer = {
            let data = data.clone();
            std::thread::spawn(move || {
                let mut slave = std::fs::File::from(slave);
                std::io::Write::write_all(&mut slave, &data).unwrap();
            })
        };
        let id: TaskId = "bg-0000000000000001".parse().unwrap();
        let mut buf = vec![0u8; 64 << 10];
        let mut most = 0;
        while stream.pipe.is_some() {
            let fd = stream.pipe.as_ref().unwrap().as_fd();
            process::wait_ready(&[fd], None, None).unwrap();
            if let Pumped::Output(n) = pump(&id, &mut stream, &mut buf) {
                most = most.max(n);
            }
        }
        writer.join().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(most <= buf.len(), "{most}");
    }
}
