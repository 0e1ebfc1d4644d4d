//! The task's end: kill and reap what is left, drain the pipes, decide the
//! outcome and record it (with the completion) until the store takes it.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use super::interact::Terminal;
use super::stop::{kill_and_reap, Stop, Stopping};
use super::supervise::{pump, Pumped, Running};
use super::{log, now_ms, PREVIEW_BYTES};
use crate::compact::task_tail;
use crate::process::{self, ExitStatus};
use crate::store::{FinishRecord, Store};
use crate::task::{Outcome, Status};

pub(super) fn end(
    store: &mut Store,
    mut task: Running,
    status: Option<ExitStatus>,
    stopping: Option<Stopping>,
) {
    // Anything the shell left behind belongs to the task: end it and reap
    // it, so nothing lingers unmanaged.
    kill_and_reap(&task.tree());
    if let Some(sandboxed) = &task.sandbox {
        sandboxed.remove_tmp();
    }
    drain_pipes(store, &mut task);
    // The last lines without a newline, and matches still counted.
    task.watching.streams_ended(store, &task.id);
    task.watching.ended(store, &task.id);
    let outcome = match outcome(status, stopping.as_ref()) {
        // Issue 18: an end by a signal sent with `bgtask signal` says so.
        Outcome::Signaled(sig) if task.sent_signals.contains(&sig) => Outcome::SignalSent(sig),
        other => other,
    };
    if let Some(lost) = task
        .input
        .as_ref()
        .map(|i| i.undelivered())
        .filter(|n| *n > 0)
    {
        log(&format!(
            "{}: {lost} bytes of input were never read by the task",
            task.id
        ));
    }
    finish(store, &task, outcome);
}

/// Decides how the task ended. A signal we sent only counts if it was sent
/// before the exit was observed: a natural exit racing a kill keeps its code.
pub(super) fn outcome(status: Option<ExitStatus>, stopping: Option<&Stopping>) -> Outcome {
    match (status, stopping) {
        (None, _) => Outcome::Lost("the task's exit status could not be read".into()),
        (Some(status), Some(s)) => match s.why {
            Stop::Request => Outcome::Killed(match status {
                ExitStatus::Signal(sig) => sig,
                ExitStatus::Code(_) => s.last_signal,
            }),
            Stop::Timeout(after_ms) => Outcome::TimedOut { after_ms },
            Stop::Idle(after_ms) => Outcome::IdleTimedOut { after_ms },
        },
        (Some(ExitStatus::Code(code)), None) => Outcome::Exited(code),
        (Some(ExitStatus::Signal(sig)), None) => Outcome::Signaled(sig),
    }
}

/// The shell cannot be watched: end everything and record the end as
/// unknown.
pub(super) fn finish_lost(store: &mut Store, task: Running, reason: &str) {
    kill_and_reap(&task.tree());
    if let Some(sandboxed) = &task.sandbox {
        sandboxed.remove_tmp();
    }
    finish(store, &task, Outcome::Lost(reason.to_owned()));
}

fn finish(store: &mut Store, task: &Running, outcome: Outcome) {
    // A `--pty` task's preview is what its terminal shows (issue 18).
    let pty = task.streams[0].terminal.as_ref().map(Terminal::size);
    let tail = task_tail(
        &store.stdout_path(&task.id),
        &store.stderr_path(&task.id),
        PREVIEW_BYTES,
        pty,
    )
    .unwrap_or_default();
    let dropped = task.dropped_bytes();
    let mut end = outcome.into_end();
    if let (Some(sandboxed), Status::Failed) = (&task.sandbox, end.status) {
        end.reason = Some(match end.reason {
            Some(reason) => format!("{reason}; {}", sandboxed.note),
            None => sandboxed.note.clone(),
        });
    }
    let record = FinishRecord {
        end,
        finished_at: now_ms(),
        preview: tail.text,
        output_truncated: tail.truncated || dropped > 0,
        dropped_bytes: dropped,
    };
    // The end must be recorded: on failure (a full disk, a locked store)
    // keep trying for a while rather than leave the task to be reconciled
    // as "exit status unknown".
    // The same transaction runs the scheduling pass, and the next queued
    // task's monitor is told before anything else (issue 21: the
    // hand-off).
    let mut pause = Duration::from_millis(100);
    let give_up = Instant::now() + Duration::from_secs(600);
    while let Err(e) = crate::control::finish_and_hand_on(store, &task.id, &record) {
        if Instant::now() >= give_up {
            log(&format!(
                "{}: cannot record the end, giving up: {e}",
                task.id
            ));
            // Whatever can still be handed on is.
            super::schedule(store);
            return;
        }
        log(&format!(
            "{}: cannot record the end yet, retrying: {e}",
            task.id
        ));
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// Copies what waits in the output pipes, feeding the watches. The reads
/// do not block: a pipe is made non-blocking first, and the main loop
/// reads a pipe only once `poll` finds it readable, so a pipe left
/// non-blocking changes nothing there (`pump` takes `WouldBlock` as no
/// output). Used at the end and when a task is paused.
pub(super) fn drain_pipes(store: &mut Store, task: &mut Running) {
    let mut buf = vec![0u8; 64 << 10];
    for which in 0..task.streams.len() {
        if let Some(pipe) = &task.streams[which].pipe {
            let _ = process::set_nonblocking(pipe.as_fd());
        }
        loop {
            let n = match pump(&task.id, &mut task.streams[which], &mut buf) {
                Pumped::Nothing => break,
                Pumped::Output(n) | Pumped::Compacted(n) => n,
            };
            if !task.watching.is_idle() {
                task.watching.output(store, &task.id, which, &buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Signal;

    fn stop(why: Stop, last_signal: Signal) -> Stopping {
        let mut s = Stopping::begin(why, 1000, Instant::now());
        if last_signal == Signal::Kill {
            s.escalate();
        }
        s
    }

    #[test]
    fn an_exit_without_a_stop_keeps_its_code_or_signal() {
        assert_eq!(outcome(Some(ExitStatus::Code(3)), None), Outcome::Exited(3));
        assert_eq!(
            outcome(Some(ExitStatus::Signal(Signal::Segv)), None),
            Outcome::Signaled(Signal::Segv)
        );
        let lost = outcome(None, None).into_end();
        assert_eq!(lost.status, Status::Failed);
    }

    #[test]
    fn a_kill_is_the_signal_that_ended_the_task_or_the_last_one_sent() {
        let term = stop(Stop::Request, Signal::Term);
        assert_eq!(
            outcome(Some(ExitStatus::Signal(Signal::Term)), Some(&term)),
            Outcome::Killed(Signal::Term)
        );
        // A shell that traps TERM and exits 0 was still killed, by TERM.
        assert_eq!(
            outcome(Some(ExitStatus::Code(0)), Some(&term)),
            Outcome::Killed(Signal::Term)
        );
        let kill = stop(Stop::Request, Signal::Kill);
        assert_eq!(
            outcome(Some(ExitStatus::Code(0)), Some(&kill)),
            Outcome::Killed(Signal::Kill)
        );
        assert_eq!(
            outcome(None, Some(&kill)),
            Outcome::Lost("the task's exit status could not be read".into())
        );
    }

    #[test]
    fn a_timeout_is_a_timeout_whatever_the_exit() {
        let hard = stop(Stop::Timeout(5000), Signal::Term);
        assert_eq!(
            outcome(Some(ExitStatus::Signal(Signal::Term)), Some(&hard)),
            Outcome::TimedOut { after_ms: 5000 }
        );
        let idle = stop(Stop::Idle(300), Signal::Kill);
        assert_eq!(
            outcome(Some(ExitStatus::Code(1)), Some(&idle)),
            Outcome::IdleTimedOut { after_ms: 300 }
        );
    }
}
