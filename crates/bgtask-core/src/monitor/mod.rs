//! The monitor: one small process per task (our binary re-executed in a
//! hidden mode). It starts the shell, copies its output into capped files,
//! enforces the hard and idle timeouts, carries out kill requests, reaps the
//! whole tree as child subreaper, records the end and exits.
//!
//! It waits on file descriptors only (output pipes, the shell's pidfd, a
//! signal pipe, its control socket), so an idle task costs no CPU. It
//! leaves its starter's process tree first thing (`leave_starter`: forked
//! and reparented to init, in a session of its own), so it outlives
//! whatever started it, even a harness that kills its tool server's whole
//! tree on exit (OpenCode).
//!
//! Its life in steps, one file each:
//! - `start.rs`: wait for the go, start the shell, record it running;
//! - `supervise.rs`: the wait loop (output, deadlines, signals and the
//!   control channel's requests: a new request is answered there);
//! - `pause.rs`: holding the task's tree stopped (`bgtask pause`) and
//!   letting it go, with its timeouts moved by the time held;
//! - `stop.rs`: the stop decisions (deadlines, grace) and the one path
//!   that signals the task's tree, and the one that kills and reaps it;
//! - `end.rs`: the outcome and its record.

use std::io::Write;
use std::path::Path;

use crate::clock::now_ms;
use crate::error::Error;
use crate::process;
use crate::store::PREVIEW_BYTES;
use crate::store::{CacheSize, Store};
use crate::task::TaskId;

mod end;
mod interact;
mod pause;
mod queue;
mod start;
mod stop;
mod supervise;
mod watch;

/// Hidden first argument that runs the binary as a monitor.
pub const MONITOR_ARG: &str = "__monitor";
/// Grace used for timeouts and for a SIGTERM sent to the monitor itself.
pub const DEFAULT_GRACE_MS: u64 = 2_000;

/// What a monitor runs: given on its command line by the starter, from
/// the same values it records in the store.
pub struct TaskCommand<'a> {
    pub cwd: &'a Path,
    pub command: &'a str,
    /// How the shell's stdin is connected (issue 18).
    pub interaction: crate::interact::Interaction,
    /// The confinement to apply before the shell runs (sandboxed tasks).
    pub sandbox: Option<crate::sandbox::Policy>,
}

/// Runs the monitor for `id` until the task ends; returns the process exit
/// code. The starter records the task (owned by this process) and then
/// writes "go" on our stdin; without it there is nothing to run.
pub fn run(home: &Path, id: &TaskId, task: TaskCommand<'_>) -> i32 {
    // Out of the starter's process tree before anything else (one thread
    // still): a harness that ends its tool server's descendants must not
    // reach the task (issue 17). The starter records the pid reported.
    if let Err(e) = process::leave_starter() {
        log(&format!("{id}: still a child of its starter: {e}"));
    }
    // Before anything of ours is open: what the starter left open is not
    // the monitor's, nor the task's.
    process::close_inherited_fds();
    // The sandbox is prepared while the starter records the task.
    let sandbox = task
        .sandbox
        .as_ref()
        .map(|policy| start::prepare_sandbox(home, id, policy));
    // So is what else needs no go: the store (its open is most of a
    // monitor's own start) and the task's cgroup. After the go only the
    // shell's start and its record remain: what a foreground wait, and a
    // request to the monitor (`Service::tell`), waits for.
    let store = open_store(home, id);
    let cgroup = start::task_cgroup(id);
    let Some(go) = process::wait_for_go() else {
        if let Some(Ok(prepared)) = &sandbox {
            prepared.discard();
        }
        start::discard_cgroup(cgroup);
        if let Some(mut store) = store.or_else(|| open_store(home, id)) {
            start::abandon(&mut store, id);
            schedule(&mut store);
        }
        return 0;
    };
    // A queued task (issue 21) waits here for its turn, listening already.
    // It keeps no store connection while it waits (see queue.rs).
    let (channel, store) = if go.queued {
        drop(store);
        let Some((channel, store)) = queue::wait_turn(home, id) else {
            if let Some(Ok(prepared)) = &sandbox {
                prepared.discard();
            }
            start::discard_cgroup(cgroup);
            return 0;
        };
        (Some(channel), store)
    } else {
        (None, store)
    };
    process::fault::point("monitor_before_start");
    // A monitor held between its go and the shell's start (tests of what
    // a caller sees of a task still `starting`).
    process::fault::stop_point("monitor_stop_before_start");
    let given = start::Given {
        env: go.env,
        channel,
    };
    let launched = start::launch(home, id, &task, given, start::BeforeGo { sandbox, cgroup });
    let Some(mut store) = store.or_else(|| open_store(home, id)) else {
        // The task stays `starting` with a dead owner: the next command
        // that looks at it records it as failed.
        if let Ok(launched) = launched {
            launched.abort();
        }
        return 1;
    };
    match launched.and_then(|launched| launched.record(&mut store)) {
        Ok(Some(running)) => {
            process::fault::point("monitor_after_start");
            store.touch_events();
            process::release_startup_pages();
            // The end's record runs the pass and hands the slot on
            // (`end::finish`).
            supervise::supervise(&mut store, running);
            0
        }
        Ok(None) => {
            schedule(&mut store);
            0
        }
        Err(e) => {
            let reason = match e {
                Error::SpawnFailed(message) => message,
                Error::SpawnStep { step, source } => format!("{step}: {source}"),
                other => other.to_string(),
            };
            log(&format!("{id}: the task could not start: {reason}"));
            start::record_start_failure(&mut store, id, &reason);
            schedule(&mut store);
            1
        }
    }
}

/// After this task's end is recorded: the slot it held goes to the next
/// queued task, whose monitor this one tells (issue 21).
fn schedule(store: &mut Store) {
    if let Err(e) = crate::control::schedule(store) {
        log(&format!("cannot hand the queue on: {e}"));
    }
}

fn open_store(home: &Path, id: &TaskId) -> Option<Store> {
    Store::open(home, CacheSize::Small)
        .map_err(|e| log(&format!("{id}: cannot open the store: {e}")))
        .ok()
}

/// Writes a diagnostic to the monitor log (stderr). Never panics: the log
/// may sit on a full disk, which must not kill the monitor.
fn log(message: &str) {
    // One write per line, so lines of concurrent monitors never interleave.
    let line = format!("bgtask monitor {message}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}
