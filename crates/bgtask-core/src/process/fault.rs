//! Fault points: named places where the fault-injection tests make a
//! process kill itself with SIGKILL, to prove that no moment of a spawn can
//! lose or corrupt a task. A point fires only when the environment variable
//! `BGTASK_FAULT` names it; otherwise it costs one cached lookup.

use std::sync::OnceLock;

/// Kills the calling process with SIGKILL if `BGTASK_FAULT` is `name`.
pub fn point(name: &str) {
    if armed(name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Stops the calling process with SIGSTOP if `BGTASK_FAULT` is `name`
/// (the test resumes or kills it): a process stopped while it holds a lock.
pub fn stop_point(name: &str) {
    if armed(name) {
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::STOP);
    }
}

fn armed(name: &str) -> bool {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    let armed = ARMED.get_or_init(|| std::env::var("BGTASK_FAULT").ok());
    armed.as_deref() == Some(name)
}
