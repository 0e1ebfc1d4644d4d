//! The monitor's control socket: a unix stream socket in a directory only
//! the user can enter (0700), itself 0600, and every connection's peer
//! checked with SO_PEERCRED to run as the monitor's own user. What travels
//! on it is the business of the core's control module; this file only binds,
//! accepts and connects.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::effective_uid;

/// A bound control socket. Dropping it removes the socket file, so a
/// socket of a monitor that ended normally never lingers.
#[derive(Debug)]
pub struct ControlListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ControlListener {
    /// Binds `path` (creating its directory 0700 if needed; a stale socket
    /// left there by a killed monitor is replaced). Non-blocking: `accept`
    /// never waits.
    pub fn bind(path: &Path) -> io::Result<ControlListener> {
        if let Some(dir) = path.parent() {
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = UnixListener::bind(path)?;
        // Created with the umask's mode: narrow it. The directory is 0700
        // already, so there is no moment in which another user could connect.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        Ok(ControlListener {
            listener,
            path: path.to_owned(),
        })
    }

    /// Readable when a connection waits.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The next waiting connection from a process of this user, if any.
    /// Connections from any other user are closed unanswered.
    pub fn accept(&self) -> io::Result<Option<UnixStream>> {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if peer_uid(&stream)? == effective_uid() {
                stream.set_nonblocking(false)?;
                return Ok(Some(stream));
            }
        }
    }
}

impl Drop for ControlListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects to the control socket at `path`. Fails at once when no monitor
/// listens there (no file, or a stale one: connection refused).
pub fn connect_control(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path)
}

/// The user id of the process at the other end of `stream`, as the kernel
/// recorded it when it connected.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    // SAFETY: ucred is plain integers, for which zero is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid socket, and a ucred buffer of the length passed.
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_socket_is_private_accepts_its_user_and_goes_away_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl").join("t.sock");
        // A stale file where the socket goes (a killed monitor's) is replaced.
        std::fs::create_dir(dir.path().join("ctl")).unwrap();
        std::fs::write(&path, b"").unwrap();
        let listener = ControlListener::bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(listener.accept().unwrap().is_none(), "nothing waits yet");
        let _client = connect_control(&path).unwrap();
        assert!(listener.accept().unwrap().is_some());
        drop(listener);
        assert!(!path.exists());
        assert!(connect_control(&path).is_err());
    }

    #[test]
    fn the_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ctl").join("t.sock");
        let _listener = ControlListener::bind(&path).unwrap();
        let meta = std::fs::metadata(dir.path().join("ctl")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    #[test]
    fn a_connection_from_another_user_is_refused() {
        use std::os::unix::process::CommandExt;
        if effective_uid() != 0 {
            println!("skipped: only root can connect as another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // Open to everyone here, so only the peer check stands between
        // another user and the monitor.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("ctl").join("t.sock");
        let listener = ControlListener::bind(&path).unwrap();
        std::fs::set_permissions(
            dir.path().join("ctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let script =
            "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1)";
        let mut other = match std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&path)
            .uid(65534)
            .gid(65534)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                println!("skipped: cannot run python3: {e}");
                return;
            }
        };
        // The stranger's connection is accepted by the kernel, then closed
        // unanswered: python's recv returns (end of file) and it exits 0.
        let mut refused = false;
        for _ in 0..500 {
            assert!(
                listener.accept().unwrap().is_none(),
                "a stranger got through"
            );
            if other.try_wait().unwrap().is_some() {
                refused = true;
                break;
            }
            super::super::wait_readable(
                &[listener.as_fd()],
                Some(std::time::Duration::from_millis(10)),
            )
            .unwrap();
        }
        let _ = other.kill();
        let status = other.wait().unwrap();
        assert!(refused && status.success(), "{status:?}");
        // Our own user still gets through.
        let _mine = connect_control(&path).unwrap();
        assert!(listener.accept().unwrap().is_some());
    }
}
