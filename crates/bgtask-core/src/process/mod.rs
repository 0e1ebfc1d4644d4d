//! Everything that talks to the operating system about processes: identity
//! (pid + start time + boot + pid namespace), the task marker in every task
//! process's environment, signals through pidfds, process groups, the child
//! subreaper, cgroups, spawning, and waiting for fds without polling.
//!
//! bgtask targets Linux; this folder is the only place with OS calls, so a
//! port provides the same functions in a sibling file.

mod cgroup;
pub mod fault;
mod linux;
mod shell;

pub use cgroup::Cgroup;
pub use linux::*;
pub use shell::{start_shell, PendingShell, Shell, ShellCommand};
