//! Waiting without polling: `poll(2)` on descriptors, pipes, inotify
//! watches, and reaping children.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags};

use super::{ProcessHandle, Shell};
use crate::process::Signal;

/// Waits until any of `fds` is readable (or hung up), or the timeout passes.
/// Returns which fds are ready. `None` waits forever.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    wait_ready(fds, None, timeout).map(|(readable, _)| readable)
}

/// Which of `read` is readable (or hung up) and whether `write` can take
/// data, after waiting up to `timeout` for any of them.
pub fn wait_ready(
    read: &[BorrowedFd<'_>],
    write: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<(Vec<bool>, bool)> {
    let mut fds: Vec<PollFd<'_>> = read
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    if let Some(fd) = write {
        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::OUT));
    }
    // A timeout too long to represent is no timeout.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let spec = remaining.map(|r| rustix::event::Timespec {
            tv_sec: i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(r.subsec_nanos()),
        });
        match poll(&mut fds, spec.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let ready: Vec<bool> = fds.iter().map(|p| !p.revents().is_empty()).collect();
    let writable = write.is_some() && ready[read.len()];
    Ok((ready[..read.len()].to_vec(), writable))
}

/// An exit status of a reaped child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(Signal),
}

/// Reaps the shell if it has ended (never blocks).
pub fn try_reap(child: &mut Shell) -> io::Result<Option<ExitStatus>> {
    child.try_wait()
}

/// Blocks until one child of this process ends and reaps it. Returns false
/// when the process has no children left.
pub fn reap_one() -> bool {
    use rustix::process::{wait, WaitOptions};
    loop {
        match wait(WaitOptions::empty()) {
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false, // ECHILD: nothing left
        }
    }
}

/// A pidfd for one of our own (unreaped) children.
pub fn child_handle(child: &Shell) -> io::Result<ProcessHandle> {
    let pid = Pid::from_raw(child.id() as i32).ok_or_else(|| io::Error::other("pid 0"))?;
    let fd = rustix::process::pidfd_open(pid, PidfdFlags::empty())?;
    Ok(ProcessHandle { fd })
}

/// Reaps `pid` if it has exited (never blocks); true once it is gone.
pub fn reap_if_exited(pid: u32) -> bool {
    let Some(pid) = Pid::from_raw(pid as i32) else {
        return true;
    };
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::NOHANG) {
            Ok(None) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            // Reaped now, or not our child (any more).
            Ok(Some(_)) | Err(_) => return true,
        }
    }
}

/// A pipe pair (read end, write end), close-on-exec. Both ends block;
/// see [`set_nonblocking`].
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((r, w))
}

/// Reads once from a pipe, retrying on EINTR. Returns 0 at end of file.
pub fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match rustix::io::read(fd, &mut *buf) {
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Sets O_NONBLOCK on an fd (the monitor drains pipes after the task ends
/// without risking a block on a pipe a stray process still holds).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(fd)?;
    rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
    Ok(())
}

/// Watches files for changes (inotify) so waiters wake on events, not ticks.
pub struct FileWatch {
    fd: OwnedFd,
}

impl FileWatch {
    pub fn new() -> io::Result<Self> {
        use rustix::fs::inotify;
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
        Ok(FileWatch { fd })
    }

    /// Watches `path` for writes and attribute changes (touches), and for
    /// being deleted or moved away (a watch stays on its inode, so whoever
    /// relies on the path must wake up and re-arm).
    pub fn add(&self, path: &Path) -> io::Result<()> {
        use rustix::fs::inotify::{add_watch, WatchFlags};
        add_watch(
            &self.fd,
            path,
            WatchFlags::MODIFY
                | WatchFlags::ATTRIB
                | WatchFlags::CLOSE_WRITE
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF,
        )?;
        Ok(())
    }

    /// Discards pending events (call after waking, before re-reading state).
    pub fn drain(&self) {
        let mut buf = [0u8; 4096];
        while matches!(rustix::io::read(&self.fd, &mut buf), Ok(n) if n > 0) {}
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
