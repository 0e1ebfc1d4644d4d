//! The monitor's signals as a descriptor it can poll: SIGTERM to the
//! monitor (stop the task) and SIGUSR1 (the wake-up older bgtask versions,
//! and requesters that find no control socket, send to mean "read the
//! store"). Each signal writes a byte to a socketpair; SIGTERM also sets a
//! flag, so the monitor can tell the two apart.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The installed handlers and the read end of their pipe.
#[derive(Debug)]
pub struct SignalPipe {
    reader: UnixStream,
    terminated: Arc<AtomicBool>,
}

impl SignalPipe {
    /// Installs the handlers. Call before the monitor's pid can be learnt
    /// by anyone who might signal it.
    pub fn install() -> io::Result<SignalPipe> {
        let (reader, writer) = UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        let terminated = Arc::new(AtomicBool::new(false));
        for sig in [libc::SIGUSR1, libc::SIGTERM] {
            signal_hook::low_level::pipe::register(sig, writer.try_clone()?)?;
        }
        signal_hook::flag::register(libc::SIGTERM, Arc::clone(&terminated))?;
        Ok(SignalPipe { reader, terminated })
    }

    /// Readable once a signal arrived.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.reader.as_fd()
    }

    /// Discards what the handlers wrote (call after waking).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.reader).read(&mut buf), Ok(n) if n > 0) {}
    }

    /// Whether SIGTERM arrived since the last call.
    pub fn take_terminated(&self) -> bool {
        self.terminated.swap(false, Ordering::SeqCst)
    }
}
