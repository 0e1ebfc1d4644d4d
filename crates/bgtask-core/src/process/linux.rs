//! Linux implementations of the process functions.
//!
//! Invariant: no stored pid is ever signalled without first checking, through
//! a pidfd opened before the check, that it is still the same process (same
//! start time since boot, same boot).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{Pid, PidfdFlags, Signal};

use super::shell::cstring;
use super::Shell;

pub const SIGTERM: i32 = 15;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;

/// Whether the calling process may enter `dir` (search permission).
pub fn can_enter(dir: &Path) -> io::Result<()> {
    rustix::fs::access(dir, rustix::fs::Access::EXEC_OK).map_err(io::Error::from)
}

/// Bytes an unprivileged process may still write on the filesystem of `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Size of the filesystem holding `path`, in bytes.
pub fn disk_size(path: &Path) -> io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_blocks.saturating_mul(stat.f_frsize))
}

/// The calling process's effective user id.
pub fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Fills `buf` from the kernel's random source.
pub fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            // getrandom cannot fail on Linux ≥ 3.17 once the pool is ready;
            // fall back to a time-and-pid mix rather than panicking.
            Err(_) => {
                let seed = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
                    ^ ((std::process::id() as u64) << 32);
                for (i, b) in buf[filled..].iter_mut().enumerate() {
                    *b = (seed.rotate_left(i as u32 * 8) & 0xff) as u8;
                }
                return;
            }
        }
    }
}

/// A process as identified across time: pid plus start time (clock ticks
/// since boot) plus the boot it belongs to, plus the pid namespace its pid
/// is a number in. A recycled pid has another start time; a pid from an
/// earlier boot has another boot id; a pid read in another pid namespace
/// names another process here, or none (so it cannot be checked from here).
///
/// The start time is kept on the boot clock without any time namespace's
/// offset: `/proc` shows start times shifted by the reader's boottime
/// offset, which is taken back out, so readers in different time
/// namespaces agree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_ticks: u64,
    pub boot_id: String,
    /// The pid namespace the pid was read in (`pid:[inode]`); empty when
    /// unknown (records written before it was kept), then taken as ours.
    pub pid_ns: String,
}

/// What a check of a recorded process can tell from here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// That exact process runs.
    Alive,
    /// It ended (or its pid now names another process).
    Dead,
    /// It cannot be checked from here: it was recorded in another pid
    /// namespace, or this process's clocks cannot be mapped to the boot
    /// clock. Never a reason to act as if it were dead.
    Unknown,
}

impl ProcessIdentity {
    /// The identity of one of our own children, even if it already exited
    /// (it stays a zombie until we reap it, so its entry is still there).
    pub fn of_child(pid: u32) -> io::Result<Self> {
        let stat =
            read_stat(pid)?.ok_or_else(|| io::Error::other("child vanished before reaping"))?;
        let offset = boottime_offset_ticks().ok_or_else(|| {
            io::Error::other("this time namespace's boottime offset is not a whole clock tick")
        })?;
        Ok(ProcessIdentity {
            pid,
            start_ticks: unshift(stat.start_ticks, offset),
            boot_id: boot_id().to_owned(),
            pid_ns: pid_namespace().to_owned(),
        })
    }

    /// Whether this exact process still runs (zombies count as ended), as
    /// far as the calling process can tell.
    pub fn liveness(&self) -> Liveness {
        if self.boot_id != boot_id() {
            return Liveness::Dead;
        }
        let here = pid_namespace();
        if !self.pid_ns.is_empty() && !here.is_empty() && self.pid_ns != here {
            return Liveness::Unknown;
        }
        let Some(offset) = boottime_offset_ticks() else {
            return Liveness::Unknown;
        };
        match read_stat(self.pid) {
            Ok(Some(s)) if unshift(s.start_ticks, offset) == self.start_ticks && !s.is_dead() => {
                Liveness::Alive
            }
            Ok(_) => Liveness::Dead,
            // Unreadable (a restricted /proc, say): not evidence of death.
            Err(_) => Liveness::Unknown,
        }
    }

    /// Whether this exact process is known to run.
    pub fn is_alive(&self) -> bool {
        self.liveness() == Liveness::Alive
    }

    /// Whether this exact process is known to have ended.
    pub fn is_dead(&self) -> bool {
        self.liveness() == Liveness::Dead
    }

    /// A pidfd for this process if it is still the same process. The pidfd
    /// is opened first and the identity checked after, so the fd cannot
    /// refer to a recycled pid.
    pub fn open(&self) -> Option<ProcessHandle> {
        // A pid recorded in another namespace names another process here.
        if self.liveness() == Liveness::Unknown {
            return None;
        }
        let pid = Pid::from_raw(i32::try_from(self.pid).ok()?)?;
        let fd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()?;
        self.is_alive().then_some(ProcessHandle { fd })
    }
}

/// The calling process's pid namespace (`pid:[inode]`), empty if unknown.
pub fn pid_namespace() -> &'static str {
    static NS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NS.get_or_init(|| {
        std::fs::read_link("/proc/self/ns/pid")
            .ok()
            .and_then(|p| p.to_str().map(str::to_owned))
            .unwrap_or_default()
    })
}

/// This time namespace's boottime offset in clock ticks (0 outside one, or
/// on kernels without time namespaces); `None` if it is not a whole number
/// of ticks, so start times read here cannot be mapped exactly.
fn boottime_offset_ticks() -> Option<i64> {
    static OFFSET: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        let Ok(text) = std::fs::read_to_string("/proc/self/timens_offsets") else {
            return Some(0);
        };
        let hz = i64::try_from(rustix::param::clock_ticks_per_second())
            .ok()
            .filter(|hz| *hz > 0)?;
        parse_boottime_offset(&text, hz)
    })
}

/// The boottime line of `/proc/self/timens_offsets` ("boottime SECS NANOS")
/// in ticks of `hz`.
fn parse_boottime_offset(text: &str, hz: i64) -> Option<i64> {
    let Some(line) = text.lines().find(|l| l.starts_with("boottime")) else {
        return Some(0);
    };
    let mut fields = line.split_ascii_whitespace().skip(1);
    let secs: i64 = fields.next()?.parse().ok()?;
    let nanos: i64 = fields.next().unwrap_or("0").parse().ok()?;
    let tick_ns = 1_000_000_000 / hz;
    (nanos % tick_ns == 0).then(|| secs.saturating_mul(hz).saturating_add(nanos / tick_ns))
}

/// A start time read here, on the boot clock of the initial time namespace.
fn unshift(ticks: u64, offset: i64) -> u64 {
    (i128::from(ticks) - i128::from(offset)).clamp(0, i128::from(u64::MAX)) as u64
}

/// An open pidfd of a verified process: it can be signalled and awaited
/// without any risk of hitting another process.
#[derive(Debug)]
pub struct ProcessHandle {
    fd: OwnedFd,
}

impl ProcessHandle {
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::other("unknown signal"))?;
        rustix::process::pidfd_send_signal(&self.fd, sig).map_err(io::Error::from)
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the process has exited (its pidfd is readable then).
    pub fn has_exited(&self) -> bool {
        pidfd_has_exited(self.fd.as_fd())
    }
}

/// Whether the process of a pidfd has exited (the pidfd is readable then).
pub(super) fn pidfd_has_exited(pidfd: BorrowedFd<'_>) -> bool {
    wait_readable(&[pidfd], Some(Duration::ZERO)).map_or(true, |ready| ready[0])
}

struct Stat {
    state: u8,
    start_ticks: u64,
}

impl Stat {
    fn is_dead(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

fn read_stat(pid: u32) -> io::Result<Option<Stat>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(3) => return Ok(None), // ESRCH: exited mid-read
        Err(e) => return Err(e),
    };
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'. Field 3 is the state, field 22 the start time.
    let rest = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or_else(|| io::Error::other("malformed /proc stat"))?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().and_then(|s| s.bytes().next()).unwrap_or(b'?');
    let start_ticks = fields
        .nth(18)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("malformed /proc stat"))?;
    Ok(Some(Stat { state, start_ticks }))
}

/// This boot's id; identities from another boot are never alive.
pub fn boot_id() -> &'static str {
    static BOOT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOOT_ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    })
}

/// Waits until any of `fds` is readable (or hung up), or the timeout passes.
/// Returns which fds are ready. `None` waits forever.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::from_borrowed_fd(*fd, PollFlags::IN))
        .collect();
    // A timeout too long to represent is no timeout.
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let spec = remaining.map(|r| rustix::event::Timespec {
            tv_sec: i64::try_from(r.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(r.subsec_nanos()),
        });
        match poll(&mut pollfds, spec.as_ref()) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pollfds.iter().map(|p| !p.revents().is_empty()).collect())
}

/// Makes the calling process the reaper of its orphaned descendants, so a
/// killed process group is reaped at once instead of by a slow PID 1.
pub fn become_subreaper() -> io::Result<()> {
    rustix::process::set_child_subreaper(Some(rustix::process::getpid())).map_err(io::Error::from)
}

/// Signals a process group we own. Only the monitor calls this, for the
/// group of a child it has not reaped yet (so the pgid cannot be recycled).
pub fn signal_group(pgid: u32, sig: i32) -> io::Result<()> {
    let pid = Pid::from_raw(pgid as i32).ok_or_else(|| io::Error::other("pgid 0"))?;
    let sig = Signal::from_named_raw(sig).ok_or_else(|| io::Error::other("unknown signal"))?;
    match rustix::process::kill_process_group(pid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The environment variable that marks every process of a task: the
/// monitor gives the task's shell `BGTASK_TASK_ID=<id>`, and every
/// descendant inherits it, whatever its session, process group or parent.
pub const TASK_MARKER: &str = "BGTASK_TASK_ID";

/// Sends `sig` to every process (other than the caller) whose environment
/// carries the marker of task `task_id`. Returns how many were signalled.
///
/// Each is proven to be the task's before it is signalled: a pidfd is
/// opened first, then `/proc/PID/environ` is read, then the pidfd is
/// checked to still refer to a running process. A pid cannot be reused
/// while its process runs, so the environment read was that process's, and
/// the signal goes through the pidfd, which cannot reach another one.
/// Only processes whose environment this process may read are found (the
/// same user, or any as root).
pub fn signal_marked(task_id: &str, sig: i32) -> usize {
    let Some(sig) = Signal::from_named_raw(sig) else {
        return 0;
    };
    let marker = format!("{TASK_MARKER}={task_id}");
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut count = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|pid| *pid != me)
        else {
            continue;
        };
        let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
            continue;
        };
        let Ok(fd) = rustix::process::pidfd_open(raw, PidfdFlags::empty()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if !environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            continue;
        }
        let handle = ProcessHandle { fd };
        if handle.has_exited() {
            continue;
        }
        if rustix::process::pidfd_send_signal(&handle.fd, sig).is_ok() {
            count += 1;
        }
    }
    count
}

/// Signals every current child of the calling process. The children are not
/// reaped yet, so their pids are still theirs. Used by the monitor (a
/// subreaper) to reach descendants that left the process group.
pub fn signal_own_children(sig: i32) -> io::Result<usize> {
    let Some(sig) = Signal::from_named_raw(sig) else {
        return Ok(0);
    };
    let mut count = 0;
    for pid in own_children()? {
        if let Some(pid) = Pid::from_raw(pid as i32) {
            if rustix::process::kill_process(pid, sig).is_ok() {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn own_children() -> io::Result<Vec<u32>> {
    let me = std::process::id();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{me}/task"))? {
        let path = entry?.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            pids.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    Ok(pids)
}

/// An exit status of a reaped child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
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

/// A detached child: its pid and the write end of its stdin pipe.
#[derive(Debug)]
pub struct Detached {
    pub pid: u32,
    pub stdin: File,
}

/// Starts `exe args` in a session of its own with this process's
/// environment, stdin from a new pipe, stdout to /dev/null, stderr to `log`.
/// (A task's own variables never go into its monitor's environment: they
/// come through the pipe, see [`go_message`].)
///
/// This is posix_spawn with `POSIX_SPAWN_SETSID`: the C library starts the
/// child with vfork semantics (no copy of this process's page tables, none
/// of the copy-on-write faults that follow a fork) and returns once it has
/// exec'd, with the exec's error if it failed. setsid runs before exec, so
/// there is no moment in which the child sits in the caller's process group.
pub fn spawn_detached(exe: &Path, args: &[OsString], log: File) -> io::Result<Detached> {
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
    let null = above_stdio(File::options().write(true).open("/dev/null")?.into())?;
    let log = above_stdio(log.into())?;
    let mut setup = SpawnSetup::new()?;
    setup.dup2(&stdin_r, 0)?;
    setup.dup2(&null, 1)?;
    setup.dup2(&log, 2)?;
    Ok(Detached {
        pid: setup.spawn(&program, &argv, &envp)?,
        stdin: stdin_w.into(),
    })
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
        check(unsafe { libc::posix_spawn_file_actions_init(&mut actions) })?;
        let actions = FileActions(actions);
        let mut attr = unsafe { std::mem::zeroed() };
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

/// Blocks until the starter says "go" on stdin and returns the task's
/// environment variables that came with it, or `None` if the starter closed
/// the pipe (or broke off) without saying so.
///
/// Waits under `SCHED_BATCH`, back to `SCHED_OTHER` before returning (so
/// the task's shell never inherits it). A pipe write wakes its reader
/// "synchronously": the kernel expects the writer to sleep next and often
/// queues the reader on the writer's CPU, where a normal task preempts the
/// writer at once. The starter does not sleep after `go`: it returns the
/// task, and an in-process starter (`serve`, `mcp`) was held up by the
/// monitor's whole start, about 1 ms. A batch task does not preempt on
/// wake-up; it runs when the starter yields its CPU or the other one
/// takes it.
pub fn wait_for_go() -> Option<Vec<(String, String)>> {
    set_policy(libc::SCHED_BATCH);
    let go = read_go(&mut io::stdin().lock());
    set_policy(libc::SCHED_OTHER);
    go
}

/// Most bytes of environment a go message may carry (far above what one
/// exec accepts, which the shell's start reports as its own error).
const MAX_GO_ENV_BYTES: usize = 64 << 20;

/// What the starter writes on the monitor's stdin once the task is
/// recorded: `go LEN\n`, then LEN bytes of `KEY=VALUE` entries, each ended
/// by a NUL. The task's variables travel here, not in the monitor's own
/// environment: there they would be visible in the monitor's
/// `/proc/PID/environ` for the task's whole life, and they would change
/// the monitor itself (its fault points, its switches).
pub fn go_message(env: &[(String, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (key, value) in env {
        block.extend_from_slice(key.as_bytes());
        block.push(b'=');
        block.extend_from_slice(value.as_bytes());
        block.push(0);
    }
    let mut message = format!("go {}\n", block.len()).into_bytes();
    message.extend_from_slice(&block);
    message
}

/// Reads a [`go_message`]; `None` at end of file before it is complete or
/// if it is malformed.
fn read_go(input: &mut impl Read) -> Option<Vec<(String, String)>> {
    let mut header = Vec::new();
    let mut byte = [0u8; 1];
    while header.len() < 24 {
        match input.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => header.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let len: usize = std::str::from_utf8(header.strip_prefix(b"go ")?)
        .ok()?
        .parse()
        .ok()
        .filter(|len| *len <= MAX_GO_ENV_BYTES)?;
    let mut block = vec![0u8; len];
    input.read_exact(&mut block).ok()?;
    let block = String::from_utf8(block).ok()?;
    block
        .split_terminator('\0')
        .map(|entry| {
            entry
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
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

/// Sets the calling thread's scheduling policy, one of the normal ones (no
/// privilege needed). A refusal (a seccomp filter, say) only costs the
/// speed it was for.
///
/// The system call is made directly: musl's `sched_setscheduler` is a stub
/// that always fails, because the kernel's call sets a thread's policy and
/// POSIX's sets a process's.
fn set_policy(policy: libc::c_int) {
    // SAFETY: sched_param is plain integers, for which zero is valid (and
    // the priority the normal policies require).
    let param: libc::sched_param = unsafe { std::mem::zeroed() };
    // SAFETY: a valid sched_param that outlives the call; pid 0 is the
    // calling thread.
    unsafe { libc::syscall(libc::SYS_sched_setscheduler, 0, policy, &param) };
}

/// A non-blocking pipe pair (read end, write end), close-on-exec.
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

/// Drops this process's page-table entries for the read-only segments of
/// every loaded object (code and constants, never RELRO, which holds
/// relocated pointers). The pages stay in the page cache, shared with every
/// other bgtask process, and come back with a minor fault when touched
/// again. A monitor calls this once its task runs, so its resident size is
/// what its wait loop uses, not everything its start-up touched.
pub fn release_startup_pages() {
    // SAFETY: dl_iterate_phdr passes valid program headers of loaded
    // objects. Only unwritable, page-aligned, file-backed segments outside
    // RELRO are dropped: their contents are exactly the file's, so a later
    // access maps the same bytes back.
    unsafe {
        libc::dl_iterate_phdr(Some(release_object), std::ptr::null_mut());
    }
}

unsafe extern "C" fn release_object(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    _data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: see release_startup_pages.
    unsafe {
        let info = &*info;
        let name = if info.dlpi_name.is_null() {
            &[][..]
        } else {
            std::ffi::CStr::from_ptr(info.dlpi_name).to_bytes()
        };
        // The vDSO is the kernel's, not a file: leave it alone.
        if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
            return 0;
        }
        let headers = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
        let page = rustix::param::page_size();
        let span = |h: &libc::Elf64_Phdr| {
            let start = info.dlpi_addr as usize + h.p_vaddr as usize;
            let end = start + h.p_memsz as usize;
            (start.next_multiple_of(page), end / page * page)
        };
        let relro = headers
            .iter()
            .find(|h| h.p_type == libc::PT_GNU_RELRO)
            .map(span);
        for header in headers
            .iter()
            .filter(|h| h.p_type == libc::PT_LOAD && h.p_flags & libc::PF_W == 0)
        {
            let (start, end) = span(header);
            let overlaps_relro = relro.is_some_and(|(rs, re)| start < re && rs < end);
            if end > start && !overlaps_relro {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_detached_child_gets_its_session_stdin_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let log = File::create(&log_path).unwrap();
        let script = "read line; echo \"$line added $(cut -d' ' -f6 /proc/$$/stat) $$\" >&2";
        let args: Vec<OsString> = vec!["-c".into(), script.into()];
        let mut child = spawn_detached(Path::new("/bin/sh"), &args, log).unwrap();
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
    fn a_detached_child_that_cannot_exec_is_an_error() {
        let log = tempfile::tempfile().unwrap();
        let err = spawn_detached(Path::new("/nonexistent/bgtask"), &[], log).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_go_message_carries_the_environment_and_a_broken_one_is_no_go() {
        let env = vec![
            ("A".to_owned(), "1=2\nthree".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ];
        let message = go_message(&env);
        assert_eq!(read_go(&mut &message[..]), Some(env));
        assert_eq!(read_go(&mut &b"go 0\n"[..]), Some(vec![]));
        for broken in [
            &message[..message.len() - 1],
            b"",
            b"go\n",
            b"go x\n",
            b"no 0\n",
        ] {
            assert_eq!(read_go(&mut &broken[..]), None, "{broken:?}");
        }
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

    #[test]
    fn a_boottime_offset_is_read_in_ticks() {
        assert_eq!(parse_boottime_offset("", 100), Some(0));
        let text = "monotonic 0 0\nboottime 100000 0\n";
        assert_eq!(parse_boottime_offset(text, 100), Some(10_000_000));
        assert_eq!(parse_boottime_offset("boottime -5 0\n", 100), Some(-500));
        assert_eq!(
            parse_boottime_offset("boottime 1 20000000\n", 100),
            Some(102)
        );
        // Not a whole tick: start times read here cannot be mapped.
        assert_eq!(parse_boottime_offset("boottime 1 5\n", 100), None);
        assert_eq!(unshift(10_000_500, 10_000_000), 500);
        assert_eq!(unshift(5, 10), 0);
    }

    #[test]
    fn an_identity_from_another_pid_namespace_is_unknown_not_dead() {
        let me = ProcessIdentity::of_child(std::process::id()).unwrap();
        assert_eq!(me.liveness(), Liveness::Alive);
        let elsewhere = ProcessIdentity {
            pid_ns: "pid:[1]".into(),
            ..me.clone()
        };
        assert_eq!(elsewhere.liveness(), Liveness::Unknown);
        assert!(elsewhere.open().is_none());
        let recycled = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert_eq!(recycled.liveness(), Liveness::Dead);
        let old_record = ProcessIdentity {
            pid_ns: String::new(),
            ..me
        };
        assert_eq!(old_record.liveness(), Liveness::Alive);
    }

    #[test]
    fn only_processes_carrying_the_marker_are_signalled() {
        let id = format!("bg-marker-test-{}", std::process::id());
        let spawn = |marker: Option<&str>| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("60");
            if let Some(m) = marker {
                cmd.env(TASK_MARKER, m);
            }
            cmd.spawn().unwrap()
        };
        let mut marked = spawn(Some(&id));
        let mut other_task = spawn(Some(&format!("{id}0")));
        let mut unmarked = spawn(None);
        assert_eq!(signal_marked(&id, SIGKILL), 1);
        let status = marked.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
        for child in [&mut other_task, &mut unmarked] {
            assert!(
                child.try_wait().unwrap().is_none(),
                "an unmarked process was hit"
            );
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
