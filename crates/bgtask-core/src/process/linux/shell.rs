//! Starting the task's shell.
//!
//! With a cgroup, the shell is created directly inside it with clone3(2)
//! and `CLONE_INTO_CGROUP` (Linux ≥ 5.7). Moving a process in afterwards by
//! writing `cgroup.procs` takes the kernel's global cgroup threadgroup lock
//! for writing, which waits for an RCU grace period: 10–20 ms on the
//! machines measured, more than the whole rest of a start. Without a
//! cgroup, or where clone3 is refused (seccomp filters answer ENOSYS), the
//! shell is forked and joins the cgroup by writing `cgroup.procs`.
//!
//! Between the clone and the exec the child only makes raw system calls
//! (rustix) or async-signal-safe libc calls, on memory prepared before the
//! clone; an exec failure is reported through a close-on-exec pipe, as
//! `std::process::Command` does.

use std::ffi::{c_char, c_int, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::process::{Pid, WaitOptions};

use super::sandbox::{step_name, ChildConfinement, Confinement};
use super::{Cgroup, ExitStatus};
use crate::process::Signal;

/// What the monitor runs: `shell -c command` in its own session.
pub struct ShellCommand<'a> {
    pub shell: &'a Path,
    pub command: &'a str,
    pub cwd: &'a Path,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// The shell's stdin; `/dev/null` when `None` (issue 18: an input
    /// pipe or a terminal).
    pub stdin: Option<OwnedFd>,
    /// Make stdin the shell's controlling terminal (a `--pty` task).
    pub terminal: bool,
    pub cgroup: Option<&'a Cgroup>,
    /// The shell's whole environment, `KEY=VALUE` (see
    /// [`super::environment`]); prepared before the clone, which may not
    /// allocate.
    pub env: &'a [CString],
    /// Landlock and a network namespace, applied after the chdir (see
    /// `sandbox.rs`); prepared before the clone.
    pub confine: Option<&'a Confinement>,
}

/// The started shell: a child of the calling process until reaped.
#[derive(Debug)]
pub struct Shell {
    pid: Pid,
    status: Option<ExitStatus>,
}

impl Shell {
    pub fn id(&self) -> u32 {
        self.pid.as_raw_nonzero().get() as u32
    }

    /// Whether the shell has been reaped (its pid may be reused since).
    pub fn is_reaped(&self) -> bool {
        self.status.is_some()
    }

    /// Reaps the shell if it has ended (never blocks).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.reap(WaitOptions::NOHANG)
    }

    /// Blocks until the shell ends and reaps it.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        self.reap(WaitOptions::empty())?
            .ok_or_else(|| io::Error::other("waitpid returned no status"))
    }

    fn reap(&mut self, options: WaitOptions) -> io::Result<Option<ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        loop {
            match rustix::process::waitpid(Some(self.pid), options) {
                Ok(Some((_, status))) => {
                    self.status = Some(match status.exit_status() {
                        Some(code) => ExitStatus::Code(code),
                        None => ExitStatus::Signal(
                            status
                                .terminating_signal()
                                .map_or(Signal::Kill, Signal::from_number),
                        ),
                    });
                    return Ok(self.status);
                }
                Ok(None) => return Ok(None),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A shell that was cloned and may still be on its way to the exec.
#[derive(Debug)]
pub struct PendingShell {
    shell: Shell,
    /// Close-on-exec: end of file once the exec succeeded, else the failed
    /// step (0: the exec itself, else a sandbox step) and the errno.
    report: OwnedFd,
}

impl PendingShell {
    /// Waits until the shell has been exec'd; the exec's error if it failed
    /// (the child is reaped then).
    pub fn confirm(self) -> io::Result<Shell> {
        let PendingShell { mut shell, report } = self;
        let mut failure = [0u8; 8];
        let mut got = 0;
        while got < failure.len() {
            match rustix::io::read(&report, &mut failure[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if got == 0 {
            return Ok(shell);
        }
        let _ = shell.wait();
        let [s0, s1, s2, s3, e0, e1, e2, e3] = failure;
        let error = io::Error::from_raw_os_error(i32::from_ne_bytes([e0, e1, e2, e3]));
        Err(match step_name(u32::from_ne_bytes([s0, s1, s2, s3])) {
            Some(step) => io::Error::new(error.kind(), format!("{step}: {error}")),
            None => error,
        })
    }
}

/// Starts the task's shell: stdin from /dev/null, its own session and
/// process group, killed if the monitor dies, inside its cgroup if there is
/// one. Returns as soon as the shell is cloned: the caller can do other
/// work while the exec runs, then `confirm` it.
pub fn start_shell(spec: ShellCommand<'_>) -> io::Result<PendingShell> {
    spawn(spec, true)
}

/// `born_inside`: create the child in its cgroup with clone3 (else fork,
/// then join through `cgroup.procs`).
fn spawn(spec: ShellCommand<'_>, born_inside: bool) -> io::Result<PendingShell> {
    let program = cstring(spec.shell.as_os_str().as_bytes())?;
    let dash_c = c"-c";
    let command = cstring(spec.command.as_bytes())?;
    let argv: [*const c_char; 4] = [
        program.as_ptr(),
        dash_c.as_ptr(),
        command.as_ptr(),
        std::ptr::null(),
    ];
    let envp: Vec<*const c_char> = spec
        .env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let child = Prepared {
        program: &program,
        argv: &argv,
        envp: &envp,
        cwd: cstring(spec.cwd.as_os_str().as_bytes())?,
        stdin: match spec.stdin {
            Some(fd) => fd,
            None => std::fs::File::open("/dev/null")?.into(),
        },
        stdout: spec.stdout,
        stderr: spec.stderr,
        terminal: spec.terminal,
        procs: None,
        confine: spec.confine.map(Confinement::for_child),
    };
    let (report_r, report_w) = super::pipe()?;
    let pid = match spec.cgroup {
        Some(cgroup) if born_inside => {
            let dir = std::fs::File::open(cgroup.path())?;
            // SAFETY: the child runs `Prepared::exec`, which only makes raw
            // system calls and async-signal-safe libc calls on memory
            // prepared above, then execs or exits.
            match unsafe { clone_into_cgroup(dir.as_fd().as_raw_fd()) } {
                // SAFETY: clone3 returned 0, so this is the freshly cloned
                // child that `exec` requires.
                Ok(0) => unsafe { child.exec(&report_w) },
                Ok(pid) => pid,
                // clone3 refused (a seccomp filter) or too old a kernel.
                Err(_) => fork_and_exec(child.joining(cgroup)?, &report_w)?,
            }
        }
        Some(cgroup) => fork_and_exec(child.joining(cgroup)?, &report_w)?,
        None => fork_and_exec(child, &report_w)?,
    };
    drop(report_w);
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::other("clone returned pid 0"))?;
    Ok(PendingShell {
        shell: Shell { pid, status: None },
        report: report_r,
    })
}

/// Everything the child needs between clone and exec, prepared beforehand.
struct Prepared<'a> {
    program: &'a CString,
    argv: &'a [*const c_char; 4],
    envp: &'a [*const c_char],
    cwd: CString,
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
    terminal: bool,
    /// `cgroup.procs` to join, when the child was not born in its cgroup.
    procs: Option<CString>,
    confine: Option<ChildConfinement<'a>>,
}

impl Prepared<'_> {
    /// The same child, told to join `cgroup` itself before the exec.
    fn joining(self, cgroup: &Cgroup) -> io::Result<Self> {
        Ok(Prepared {
            procs: Some(cgroup.procs_file_cstring()?),
            ..self
        })
    }

    /// In the child: sets it up and execs the shell; on failure writes the
    /// errno to `report` and exits 127. Never returns.
    ///
    /// # Safety
    /// Must only be called in a freshly cloned child.
    unsafe fn exec(&self, report: &OwnedFd) -> ! {
        let (step, errno) = match self.prepare() {
            Ok(()) => {
                // SAFETY: the pointers come from live CStrings and
                // null-terminated arrays.
                unsafe {
                    libc::execve(
                        self.program.as_ptr(),
                        self.argv.as_ptr(),
                        self.envp.as_ptr(),
                    )
                };
                (0, io::Error::last_os_error().raw_os_error().unwrap_or(0))
            }
            Err(failed) => failed,
        };
        let mut failure = [0u8; 8];
        failure[..4].copy_from_slice(&u32::to_ne_bytes(step));
        failure[4..].copy_from_slice(&i32::to_ne_bytes(errno));
        let _ = rustix::io::write(report, &failure);
        // SAFETY: _exit is async-signal-safe and skips atexit handlers.
        unsafe { libc::_exit(127) }
    }

    /// The child's set-up; on failure the step (0, or a sandbox step) and
    /// the errno.
    fn prepare(&self) -> Result<(), (u32, i32)> {
        self.prepare_process().map_err(|e| (0, e.raw_os_error()))?;
        // After the chdir (a directory the sandbox may not grant is entered
        // first), before the descriptors are marked close-on-exec (the
        // ruleset's own is close-on-exec already).
        if let Some(confine) = &self.confine {
            confine.apply()?;
        }
        Ok(())
    }

    fn prepare_process(&self) -> rustix::io::Result<()> {
        rustix::process::setsid()?;
        if self.terminal {
            super::terminal::claim_controlling_terminal(&self.stdin)?;
        }
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
        if let Some(procs) = &self.procs {
            let fd = rustix::fs::open(
                procs.as_c_str(),
                rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )?;
            rustix::io::write(&fd, b"0")?;
        }
        rustix::stdio::dup2_stdin(&self.stdin)?;
        rustix::stdio::dup2_stdout(&self.stdout)?;
        rustix::stdio::dup2_stderr(&self.stderr)?;
        rustix::process::chdir(self.cwd.as_c_str())?;
        // Nothing but stdin, stdout and stderr passes to the task: every
        // other descriptor is closed by the exec (the exec-error report
        // pipe too, which is how its end of file confirms the exec).
        // Before Linux 5.11 this is refused; the monitor closed what it
        // inherited at its start, and opens its own close-on-exec.
        // SAFETY: a raw system call on descriptor numbers only.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        // Rust ignores SIGPIPE; the shell must get the default back, as
        // std::process::Command gives it.
        // SAFETY: signal() with SIG_DFL is a sigaction wrapper.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        Ok(())
    }
}

pub(super) fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("argument contains a NUL byte"))
}

/// From linux/sched.h. libc has it, but typed differently per C library
/// (an `int` in glibc's bindings), and `clone_args.flags` is a `u64`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2). Ours, not
/// libc's: libc defines it only for some targets.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3 with fork semantics, the child born in the cgroup open at
/// `cgroup_fd`. Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// Like fork: the child may only make async-signal-safe calls.
unsafe fn clone_into_cgroup(cgroup_fd: c_int) -> io::Result<i32> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup_fd as u64,
        ..CloneArgs::default()
    };
    // SAFETY: a valid clone_args of the size passed; no new stack, so the
    // child continues on a copy of ours, as after fork.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as i32)
}

/// Forks; the child runs `child.exec`. Returns the child's pid.
fn fork_and_exec(child: Prepared<'_>, report: &OwnedFd) -> io::Result<i32> {
    // SAFETY: the child only runs `Prepared::exec` (see spawn).
    match unsafe { libc::fork() } {
        // SAFETY: fork returned 0, so this is the freshly forked child that
        // `exec` requires.
        0 => unsafe { child.exec(report) },
        pid if pid < 0 => Err(io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawn_in(
        command: &str,
        cgroup: Option<&Cgroup>,
        born_inside: bool,
    ) -> io::Result<(Shell, OwnedFd)> {
        let (out_r, out_w) = super::super::pipe()?;
        let (_, err_w) = super::super::pipe()?;
        let shell = super::spawn(
            ShellCommand {
                shell: Path::new("/bin/sh"),
                command,
                cwd: Path::new("/"),
                stdout: out_w,
                stderr: err_w,
                stdin: None,
                terminal: false,
                cgroup,
                env: &super::super::environment(&[]).unwrap(),
                confine: None,
            },
            born_inside,
        )?
        .confirm()?;
        Ok((shell, out_r))
    }

    fn spawn(command: &str, cgroup: Option<&Cgroup>) -> io::Result<(Shell, OwnedFd)> {
        spawn_in(command, cgroup, true)
    }

    #[test]
    fn runs_in_its_own_session_with_the_exit_code() {
        let (mut shell, out) =
            spawn("echo $$ $(cut -d' ' -f6 /proc/$$/stat) $PWD; exit 7", None).unwrap();
        assert_eq!(shell.wait().unwrap(), ExitStatus::Code(7));
        let mut buf = [0u8; 256];
        let n = rustix::io::read(&out, &mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            fields[0], fields[1],
            "the shell leads its own session: {text}"
        );
        assert_eq!(fields[2], "/");
        // Reaping twice returns the same status.
        assert_eq!(shell.try_wait().unwrap(), Some(ExitStatus::Code(7)));
    }

    #[test]
    fn sigpipe_is_back_to_default() {
        let (mut shell, _out) = spawn("kill -PIPE $$; exit 0", None).unwrap();
        assert_eq!(shell.wait().unwrap(), ExitStatus::Signal(Signal::Pipe));
    }

    #[test]
    fn an_exec_failure_is_an_error() {
        let (_, out_w) = super::super::pipe().unwrap();
        let (_, err_w) = super::super::pipe().unwrap();
        let err = start_shell(ShellCommand {
            shell: Path::new("/nonexistent/shell"),
            command: "true",
            cwd: Path::new("/"),
            stdout: out_w,
            stderr: err_w,
            stdin: None,
            terminal: false,
            cgroup: None,
            env: &[],
            confine: None,
        })
        .unwrap()
        .confirm()
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_shell_runs_in_its_cgroup_born_there_or_joined() {
        for born_inside in [true, false] {
            let name = format!("shell-test-{}-{born_inside}", std::process::id());
            let Some(cgroup) = Cgroup::create(&name) else {
                return; // no writable cgroup v2 here
            };
            let (mut shell, out) =
                spawn_in("cat /proc/self/cgroup", Some(&cgroup), born_inside).unwrap();
            let status = shell.wait().unwrap();
            let mut buf = [0u8; 4096];
            let n = rustix::io::read(&out, &mut buf).unwrap();
            let _ = cgroup.remove();
            assert_eq!(status, ExitStatus::Code(0));
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(text.contains(&format!("bgtask-{name}")), "{text}");
        }
    }

    #[test]
    fn the_shell_gets_the_given_environment_and_no_inherited_descriptors() {
        let (out_r, out_w) = super::super::pipe().unwrap();
        let (_, err_w) = super::super::pipe().unwrap();
        // A descriptor this process holds without close-on-exec.
        let (_leak_r, leak_w) = std::os::unix::net::UnixStream::pair().unwrap();
        let leak = rustix::io::dup(&leak_w).unwrap();
        let env = [CString::new("ONLY=this").unwrap()];
        let mut shell = start_shell(ShellCommand {
            shell: Path::new("/bin/sh"),
            command: "echo \"$ONLY ${HOME:-nohome}\"; ls /proc/self/fd",
            cwd: Path::new("/"),
            stdout: out_w,
            stderr: err_w,
            stdin: None,
            terminal: false,
            cgroup: None,
            env: &env,
            confine: None,
        })
        .unwrap()
        .confirm()
        .unwrap();
        assert_eq!(shell.wait().unwrap(), ExitStatus::Code(0));
        let mut buf = [0u8; 4096];
        let n = rustix::io::read(&out_r, &mut buf).unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("this nohome"), "{text}");
        // ls's own directory descriptor is 3; nothing of ours is open.
        let fds: Vec<&str> = lines.collect();
        assert_eq!(fds, ["0", "1", "2", "3"], "{text}");
        drop(leak);
    }
}
