//! The Linux implementation of the process contract (see `process/mod.rs`),
//! one file per concern.

mod cgroup;
mod control;
mod go;
mod identity;
mod pause;
mod sandbox;
mod shell;
mod signal_pipe;
mod signals;
mod spawn;
mod system;
mod terminal;
mod wait;

pub use cgroup::Cgroup;
pub use control::{connect_control, ControlListener};
pub use go::{go_message, go_pipe_released, queue_message, release_go_pipe, wait_for_go};
pub use identity::{boot_id, Liveness, ProcessHandle, ProcessIdentity};
pub use pause::{continue_processes, stop_processes};
pub use sandbox::{
    landlock_abi, network_namespaces, prepare_confinement, seccomp_available, ConfineSpec,
    Confinement,
};
pub use shell::{start_shell, PendingShell, Shell, ShellCommand};
pub use signal_pipe::SignalPipe;
pub use signals::{
    become_subreaper, signal_group, signal_marked, signal_own_children, TASK_MARKER,
};
pub use spawn::{
    close_inherited_fds, environment, leave_starter, spawn_detached, Detached, Leaves,
};
pub use system::{
    can_enter, device_numbers, disk_size, effective_uid, fill_random, free_bytes,
    release_startup_pages,
};
pub use terminal::{open_pty, set_pty_size, write_some};
pub use wait::{
    child_handle, pipe, read_fd, reap_if_exited, reap_one, set_nonblocking, try_reap,
    wait_readable, wait_ready, ExitStatus, FileWatch,
};
