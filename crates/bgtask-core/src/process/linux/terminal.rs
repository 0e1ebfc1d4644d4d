//! Interactive tasks' descriptors (issue 18): the pseudo-terminal a
//! `--pty` task runs under, its size, and writing a task's input without
//! ever blocking the monitor.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;
use rustix::termios::Winsize;

/// A new pseudo-terminal of `rows` x `cols`: (the monitor's side, the
/// task's side). Both close-on-exec; the monitor's side is non-blocking.
/// The task's side is opened without becoming anyone's controlling
/// terminal: the shell claims it after its `setsid` (see `shell.rs`).
pub fn open_pty(rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    // TIOCGPTPEER opens the peer by descriptor (no path lookup to race);
    // kernels before 4.13 refuse it, then the name is opened.
    let slave = match rustix::pty::ioctl_tiocgptpeer(
        &master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    ) {
        Ok(fd) => fd,
        Err(_) => {
            let name = rustix::pty::ptsname(&master, Vec::new())?;
            rustix::fs::open(
                name.as_c_str(),
                OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )?
        }
    };
    set_pty_size(master.as_fd(), rows, cols)?;
    super::set_nonblocking(master.as_fd())?;
    Ok((master, slave))
}

/// Sets the terminal's size; the kernel sends SIGWINCH to its foreground
/// process group when it changed.
pub fn set_pty_size(master: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        master,
        Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// Writes what the descriptor takes now (it must be non-blocking): the
/// number of bytes written, 0 when it is full. A reader that is gone
/// (EPIPE, or EIO from a terminal nobody holds) is an error.
pub fn write_some(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < data.len() {
        match rustix::io::write(fd, &data[written..]) {
            Ok(n) => written += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(written)
}

/// Makes `fd` the calling process's controlling terminal. Only for the
/// shell between clone and exec, after its `setsid` (a raw system call).
pub(super) fn claim_controlling_terminal(fd: &OwnedFd) -> rustix::io::Result<()> {
    rustix::process::ioctl_tiocsctty(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pty_carries_bytes_both_ways_with_its_size() {
        let (master, slave) = open_pty(30, 100).unwrap();
        let size = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (30, 100));
        assert_eq!(write_some(master.as_fd(), b"hi\n").unwrap(), 3);
        let mut buf = [0u8; 16];
        let n = rustix::io::read(&slave, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi\n");
        set_pty_size(master.as_fd(), 10, 20).unwrap();
        let size = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((size.ws_row, size.ws_col), (10, 20));
    }

    #[test]
    fn a_full_pipe_takes_part_and_says_so() {
        let (r, w) = super::super::pipe().unwrap();
        super::super::set_nonblocking(w.as_fd()).unwrap();
        let big = vec![b'x'; 1 << 20];
        let n = write_some(w.as_fd(), &big).unwrap();
        assert!(n > 0 && n < big.len(), "{n}");
        let (_, writable) =
            super::super::wait_ready(&[], Some(w.as_fd()), Some(std::time::Duration::ZERO))
                .unwrap();
        assert!(!writable);
        drop(r);
        assert!(write_some(w.as_fd(), b"x").is_err());
    }
}
