//! Starting a monitor detached (posix_spawn in a session of its own, then
//! out of its starter's process tree), the environment handed to an exec,
//! and closing inherited descriptors.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::pipe;
use super::shell::cstring;

/// A detached child: its pid and the write end of its stdin pipe.
#[derive(Debug)]
pub struct Detached {
    pub pid: u32,
    pub stdin: File,
    /// With [`Leaves::Yes`]: the read end of its stdout, on which it reports
    /// the pid of the copy of itself that goes on ([`leave_starter`]).
    report: Option<File>,
}

/// How long a starter waits for a monitor's report of the pid that goes
/// on (it comes about as fast as the monitor's exec).
const REPORT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a detached child leaves its starter's process tree at once
/// ([`leave_starter`]) and reports the pid that goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaves {
    Yes,
    No,
}

impl Detached {
    /// The pid of the process that goes on for the spawned one: the pid it
    /// reported once it left its starter, else its own. Waits for the
    /// report (the spawned process forks first thing, so this is about as
    /// long as its exec). The spawned process, which exits right after the
    /// report, is still this process's child to reap.
    /// Read once: a second call finds the pipe at its end.
    pub fn carrier(&self) -> io::Result<u32> {
        self.carrier_within(REPORT_PATIENCE)
    }

    fn carrier_within(&self, patience: std::time::Duration) -> io::Result<u32> {
        use std::os::fd::AsFd;
        let Some(report) = &self.report else {
            return Ok(self.pid);
        };
        let deadline = std::time::Instant::now() + patience;
        let mut text = Vec::with_capacity(16);
        let mut buf = [0u8; 16];
        while !text.ends_with(b"\n") && text.len() <= 32 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !super::wait_readable(&[report.as_fd()], Some(left))?[0] {
                // Still silent: a monitor binary older than the report (a
                // store's binary swapped under a running server) stays in
                // our tree and goes on as the process spawned.
                return Ok(self.pid);
            }
            match rustix::io::read(report, &mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        std::str::from_utf8(&text)
            .ok()
            .and_then(|t| t.strip_suffix('\n'))
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| io::Error::other("it exited before it reported its pid"))
    }
}

/// Starts `exe args` in a session of its own with this process's
/// environment, stdin from a new pipe, stdout to /dev/null (with
/// [`Leaves::Yes`] a pipe to [`Detached::carrier`]), stderr to `log`.
/// (A task's own variables never go into its monitor's environment: they
/// come through the pipe, see [`go_message`].)
///
/// This is posix_spawn with `POSIX_SPAWN_SETSID`: the C library starts the
/// child with vfork semantics (no copy of this process's page tables, none
/// of the copy-on-write faults that follow a fork) and returns once it has
/// exec'd, with the exec's error if it failed. setsid runs before exec, so
/// there is no moment in which the child sits in the caller's process group.
pub fn spawn_detached(
    exe: &Path,
    args: &[OsString],
    log: File,
    leaves: Leaves,
) -> io::Result<Detached> {
    use std::os::unix::ffi::OsStrExt;
    let program = cstring(exe.as_os_str().as_bytes())?;
    let args = std::iter::once(Ok(program.clone()))
        .chain(args.iter().map(|a| cstring(a.as_bytes())))
        .collect::<io::Result<Vec<CString>>>()?;
    let vars = environment(&[])?;
    let argv = null_terminated(&args);
    let envp = null_terminated(&vars);
    let (stdin_r, stdin_w) = pipe()?;
    let stdin_r = above_stdio(stdin_r)?;
    let (report, stdout) = match leaves {
        Leaves::Yes => {
            let (r, w) = pipe()?;
            (Some(File::from(r)), w)
        }
        Leaves::No => (None, File::options().write(true).open("/dev/null")?.into()),
    };
    let stdout = above_stdio(stdout)?;
    let log = above_stdio(log.into())?;
    let mut setup = SpawnSetup::new()?;
    setup.dup2(&stdin_r, 0)?;
    setup.dup2(&stdout, 1)?;
    setup.dup2(&log, 2)?;
    Ok(Detached {
        pid: setup.spawn(&program, &argv, &envp)?,
        stdin: stdin_w.into(),
        report,
    })
}

/// Takes the calling process out of its starter's process tree: forks; the
/// parent reports the child's pid on stdout (to [`Detached::carrier`]) and
/// exits; the child goes on with stdout on /dev/null, an orphan, so
/// reparented to init (or the nearest subreaper above the starter).
///
/// Why: a task must outlive whatever started it, and some harnesses stop
/// a tool server by walking its descendants by parent pid and signalling
/// each (OpenCode: `pgrep -P`, repeated, then SIGTERM to every pid found;
/// issue 17). A session of its own does not hide a process from that walk;
/// only another parent does.
///
/// Call it first thing, while the process has a single thread. When the
/// fork fails the process reports its own pid and goes on undetached.
pub fn leave_starter() -> io::Result<()> {
    // Only a starter that reads a report gives a pipe as stdout; one that
    // does not (a server of an older version still running after the
    // binary was replaced) records this process as the task's owner, so
    // it must stay this process.
    let asked = rustix::fs::fstat(rustix::stdio::stdout()).is_ok_and(|st| {
        rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Fifo
    });
    if !asked {
        return Ok(());
    }
    let null = match File::options().write(true).open("/dev/null") {
        Ok(null) => null,
        Err(e) => {
            // The starter waits for a pid: this one goes on.
            report_carrier(std::process::id());
            return Err(e);
        }
    };
    // SAFETY: the process has one thread (the caller's contract), so the
    // child may run any code, as after any fork of a single-threaded
    // process.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        rustix::stdio::dup2_stdout(&null)?;
        return Ok(());
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        report_carrier(std::process::id());
        rustix::stdio::dup2_stdout(&null)?;
        return Err(e);
    }
    report_carrier(pid as u32);
    // SAFETY: _exit ends the parent at once: no destructor or atexit
    // handler of the child's (shared) state runs twice.
    unsafe { libc::_exit(0) }
}

/// Writes the carrier's pid to stdout, for [`Detached::carrier`].
fn report_carrier(pid: u32) {
    // SAFETY: fd 1 stays open for the whole call (the report pipe, or
    // whatever stdout a person gave); nothing here closes it.
    let stdout = unsafe { std::os::fd::BorrowedFd::borrow_raw(1) };
    let _ = rustix::io::write(stdout, format!("{pid}\n").as_bytes());
}

/// posix_spawn's file actions and attributes, each destroyed on drop.
struct SpawnSetup {
    actions: FileActions,
    attr: SpawnAttr,
}

struct FileActions(libc::posix_spawn_file_actions_t);
struct SpawnAttr(libc::posix_spawnattr_t);

impl SpawnSetup {
    fn new() -> io::Result<SpawnSetup> {
        // SAFETY: plain C structs (movable: no self-references), filled by
        // their init functions before any other use.
        let mut actions = unsafe { std::mem::zeroed() };
        // SAFETY: `actions` is a live, writable posix_spawn_file_actions_t;
        // init is the first call made on it.
        check(unsafe { libc::posix_spawn_file_actions_init(&mut actions) })?;
        let actions = FileActions(actions);
        // SAFETY: as above, a plain C struct filled by its init function
        // before any other use.
        let mut attr = unsafe { std::mem::zeroed() };
        // SAFETY: `attr` is a live, writable posix_spawnattr_t; init is the
        // first call made on it.
        check(unsafe { libc::posix_spawnattr_init(&mut attr) })?;
        let mut setup = SpawnSetup {
            actions,
            attr: SpawnAttr(attr),
        };
        // A new session; default SIGPIPE (Rust ignores it) and an empty
        // signal mask, as std::process::Command gives its children.
        // SAFETY: sigset_t values filled by sigemptyset/sigaddset; an
        // initialised attribute object.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            let attr = &mut setup.attr.0;
            check(libc::posix_spawnattr_setsigmask(attr, &none))?;
            check(libc::posix_spawnattr_setsigdefault(attr, &pipe))?;
            let flags = libc::POSIX_SPAWN_SETSID
                | libc::POSIX_SPAWN_SETSIGMASK as libc::c_short
                | libc::POSIX_SPAWN_SETSIGDEF as libc::c_short;
            check(libc::posix_spawnattr_setflags(attr, flags))?;
        }
        Ok(setup)
    }

    fn dup2(&mut self, from: &OwnedFd, to: i32) -> io::Result<()> {
        // SAFETY: initialised actions; the fd outlives the spawn.
        check(unsafe {
            libc::posix_spawn_file_actions_adddup2(&mut self.actions.0, from.as_raw_fd(), to)
        })
    }

    fn spawn(
        &self,
        program: &CString,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> io::Result<u32> {
        let mut pid: libc::pid_t = 0;
        // SAFETY: null-terminated argv/envp of live CStrings; initialised
        // actions and attributes.
        check(unsafe {
            libc::posix_spawn(
                &mut pid,
                program.as_ptr(),
                &self.actions.0,
                &self.attr.0,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            )
        })?;
        Ok(pid as u32)
    }
}

impl Drop for FileActions {
    fn drop(&mut self) {
        // SAFETY: only constructed after a successful init.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

impl Drop for SpawnAttr {
    fn drop(&mut self) {
        // SAFETY: only constructed after a successful init.
        unsafe { libc::posix_spawnattr_destroy(&mut self.0) };
    }
}

/// posix_spawn's functions return the error number instead of setting errno.
fn check(ret: libc::c_int) -> io::Result<()> {
    match ret {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// `fd`, moved above 2 if it is a standard descriptor (possible when this
/// process was started with one closed), so dup2 onto 0–2 cannot clobber it.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// This process's environment with `extra` added, as `KEY=VALUE` C strings
/// for an exec: a variable of `extra` replaces one of the same name, and of
/// two in `extra` with the same name the later one wins.
pub fn environment(extra: &[(String, String)]) -> io::Result<Vec<CString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut entries = Vec::new();
    for (key, value) in std::env::vars_os() {
        if !extra.iter().any(|(k, _)| k.as_bytes() == key.as_bytes()) {
            entries.push(cstring(&[key.as_bytes(), b"=", value.as_bytes()].concat())?);
        }
    }
    for (i, (key, value)) in extra.iter().enumerate() {
        if !extra[i + 1..].iter().any(|(k, _)| k == key) {
            entries.push(cstring(format!("{key}={value}").as_bytes())?);
        }
    }
    Ok(entries)
}

/// Closes every file descriptor above stderr. A monitor calls it first:
/// whatever its starter had open without close-on-exec (a harness's pipe,
/// say) would otherwise stay open in the monitor and the task for the
/// task's whole life.
pub fn close_inherited_fds() {
    // SAFETY: close_range only closes descriptors; nothing in this process
    // owns one above 2 yet when the monitor calls it.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if ret == 0 {
        return;
    }
    // Kernels before 5.9: close what /proc lists (collected first, since
    // reading the directory holds a descriptor of its own).
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: as above; a descriptor that was the directory's is
        // already closed, and closing it again fails harmlessly.
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::Pid;
    use std::io::Write;

    #[test]
    fn a_detached_child_gets_its_session_stdin_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let log = File::create(&log_path).unwrap();
        let script = "read line; echo \"$line added $(cut -d' ' -f6 /proc/$$/stat) $$\" >&2";
        let args: Vec<OsString> = vec!["-c".into(), script.into()];
        let mut child = spawn_detached(Path::new("/bin/sh"), &args, log, Leaves::No).unwrap();
        child.stdin.write_all(b"go\n").unwrap();
        drop(child.stdin);
        let pid = Pid::from_raw(child.pid as i32).unwrap();
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(status.exit_status(), Some(0));
        let text = std::fs::read_to_string(&log_path).unwrap();
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(&fields[..2], ["go", "added"], "{text}");
        assert_eq!(
            fields[2], fields[3],
            "the child leads its own session: {text}"
        );
    }

    #[test]
    fn the_carrier_is_the_pid_a_leaving_child_reports() {
        let args: Vec<OsString> = vec!["-c".into(), "echo 4242".into()];
        let log = tempfile::tempfile().unwrap();
        let child = spawn_detached(Path::new("/bin/sh"), &args, log, Leaves::Yes).unwrap();
        assert_eq!(child.carrier().unwrap(), 4242);
        // One that ends without a report is an error, never a guess.
        let args: Vec<OsString> = vec!["-c".into(), "exit 0".into()];
        let log = tempfile::tempfile().unwrap();
        let silent = spawn_detached(Path::new("/bin/sh"), &args, log, Leaves::Yes).unwrap();
        assert!(silent.carrier().is_err());
        // Without leaving, the spawned process is the carrier.
        let log = tempfile::tempfile().unwrap();
        let stays = spawn_detached(Path::new("/bin/sh"), &args, log, Leaves::No).unwrap();
        assert_eq!(stays.carrier().unwrap(), stays.pid);
        for pid in [child.pid, silent.pid, stays.pid] {
            let pid = Pid::from_raw(pid as i32).unwrap();
            rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()).unwrap();
        }
    }

    #[test]
    fn a_detached_child_that_cannot_exec_is_an_error() {
        let log = tempfile::tempfile().unwrap();
        let err =
            spawn_detached(Path::new("/nonexistent/bgtask"), &[], log, Leaves::No).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_environment_adds_and_replaces_variables() {
        let path = std::env::var("PATH").unwrap();
        let extra = [
            ("PATH".to_owned(), "first".to_owned()),
            ("BGTASK_TEST_NEW".to_owned(), "x".to_owned()),
            ("PATH".to_owned(), "second".to_owned()),
        ];
        let entries: Vec<String> = environment(&extra)
            .unwrap()
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        let paths: Vec<&String> = entries.iter().filter(|e| e.starts_with("PATH=")).collect();
        assert_eq!(paths, ["PATH=second"], "replaced, not {path}");
        assert!(entries.iter().any(|e| e == "BGTASK_TEST_NEW=x"));
    }
}
