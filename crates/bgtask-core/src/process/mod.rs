//! Everything that talks to the operating system about processes: identity
//! (pid + start time + boot + pid namespace), the task marker in every task
//! process's environment, signals through pidfds, process groups, the child
//! subreaper, cgroups, spawning, the go pipe, the monitor's signal pipe and
//! control socket, and waiting for fds without polling.
//!
//! This folder is the only place with OS calls (`scripts/check-os-calls`
//! keeps it so). Outside it, signals are a [`Signal`] and numbers never
//! appear. bgtask targets Linux: `linux/` implements the contract below. A
//! port adds a sibling folder that provides every item of this list with
//! the same signatures and documented behaviour, and picks it here with a
//! `cfg`; nothing outside `process/` changes.
//!
//! # The contract: what every platform provides
//!
//! Identity and liveness
//! - [`ProcessIdentity`] (`of_child`, `liveness`, `is_alive`, `is_dead`,
//!   `open`), [`Liveness`], [`ProcessHandle`] (`signal`, `as_fd`,
//!   `has_exited`: a handle that can never reach another process),
//!   [`boot_id`].
//!
//! Signals and the task marker
//! - [`signal_group`], [`signal_own_children`], [`signal_marked`] (every
//!   process carrying [`TASK_MARKER`], each verified first),
//!   [`become_subreaper`], [`Cgroup`] (may be absent: `Cgroup::create`
//!   returns `None` where the platform has none).
//!
//! Starting processes
//! - [`spawn_detached`] → [`Detached`] (a monitor in a session of its own;
//!   with [`Leaves::Yes`] it calls [`leave_starter`] first thing and
//!   [`Detached::carrier`] is the pid that goes on, outside the starter's
//!   process tree),
//!   [`start_shell`] with [`ShellCommand`] → [`PendingShell`] → [`Shell`]
//!   (the task's shell), [`environment`], [`close_inherited_fds`].
//!
//! Confinement (sandboxed tasks, see `sandbox.rs` at the crate's root)
//! - [`landlock_abi`], [`network_namespaces`], [`seccomp_available`]: what
//!   the kernel can enforce;
//!   [`prepare_confinement`] with [`ConfineSpec`] → [`Confinement`], given
//!   to [`start_shell`] and applied in the child before its exec.
//!
//! The go pipe (starter → monitor, once; then monitor → starter, once)
//! - [`go_message`], [`wait_for_go`]: the starter's go, with the task's
//!   variables.
//! - [`release_go_pipe`] (monitor side): lets go of the pipe's read end
//!   once a readiness outcome is recorded, so a starter still holding the
//!   write end learns of it without reading the store;
//!   [`go_pipe_released`] (starter side): whether that happened (or the
//!   monitor ended), waiting at most a given time.
//!
//! Waiting and reaping
//! - [`wait_readable`], [`FileWatch`], [`pipe`], [`read_fd`],
//!   [`set_nonblocking`], [`ExitStatus`], [`try_reap`], [`reap_one`],
//!   [`reap_if_exited`], [`child_handle`].
//!
//! The monitor's inbound channels
//! - [`SignalPipe`]: SIGTERM to the monitor and the legacy "read the store"
//!   wake-up ([`Signal::Usr1`]), as a readable descriptor.
//! - [`ControlListener`] / [`connect_control`]: a local socket reachable by
//!   processes of the same user only (checked on accept).
//!
//! Pausing a task (issue 21)
//! - `Cgroup::freeze` / `Cgroup::thaw` (the freezer; `freeze` answers
//!   false where the platform has none), [`stop_processes`] /
//!   [`continue_processes`] (a task without a cgroup): each returns once
//!   every process is seen stopped.
//!
//! Interactive tasks
//! - [`open_pty`], [`set_pty_size`], [`write_some`], [`wait_ready`].
//!
//! The calling process and its filesystems
//! - [`can_enter`], [`free_bytes`], [`disk_size`], [`effective_uid`],
//!   [`fill_random`], [`release_startup_pages`], [`device_numbers`].

pub mod fault;
mod linux;
mod signal;

pub use signal::Signal;

// Queues (issue 21): the go pipe's queued form.
pub use linux::queue_message;

// Interactive tasks (issue 18): a task's terminal and input.
pub use linux::{open_pty, set_pty_size, wait_ready, write_some};

// Pausing a task (issue 21).
pub use linux::{continue_processes, stop_processes};

pub use linux::{
    become_subreaper, boot_id, can_enter, child_handle, close_inherited_fds, connect_control,
    device_numbers, disk_size, effective_uid, environment, fill_random, free_bytes, go_message,
    go_pipe_released, landlock_abi, leave_starter, network_namespaces, pipe, prepare_confinement,
    read_fd, reap_if_exited, reap_one, release_go_pipe, release_startup_pages, seccomp_available,
    set_nonblocking, signal_group, signal_marked, signal_own_children, spawn_detached, start_shell,
    try_reap, wait_for_go, wait_readable, Cgroup, ConfineSpec, Confinement, ControlListener,
    Detached, ExitStatus, FileWatch, Leaves, Liveness, PendingShell, ProcessHandle,
    ProcessIdentity, Shell, ShellCommand, SignalPipe, TASK_MARKER,
};
