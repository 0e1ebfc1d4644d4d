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
/// since boot) plus the boot it belongs to. A recycled pid has another start
/// time; a pid from an earlier boot has another boot id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: u32,
    pub start_ticks: u64,
    pub boot_id: String,
}

impl ProcessIdentity {
    /// The identity of one of our own children, even if it already exited
    /// (it stays a zombie until we reap it, so its entry is still there).
    pub fn of_child(pid: u32) -> io::Result<Self> {
        let stat =
            read_stat(pid)?.ok_or_else(|| io::Error::other("child vanished before reaping"))?;
        Ok(ProcessIdentity {
            pid,
            start_ticks: stat.start_ticks,
            boot_id: boot_id().to_owned(),
        })
    }

    /// Whether this exact process still runs (zombies count as ended).
    pub fn is_alive(&self) -> bool {
        self.boot_id == boot_id()
            && matches!(read_stat(self.pid), Ok(Some(s)) if s.start_ticks == self.start_ticks && !s.is_dead())
    }

    /// A pidfd for this process if it is still the same process. The pidfd
    /// is opened first and the identity checked after, so the fd cannot
    /// refer to a recycled pid.
    pub fn open(&self) -> Option<ProcessHandle> {
        let pid = Pid::from_raw(i32::try_from(self.pid).ok()?)?;
        let fd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).ok()?;
        self.is_alive().then_some(ProcessHandle { fd })
    }
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
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let spec = remaining.map(|r| rustix::event::Timespec {
            tv_sec: r.as_secs() as i64,
            tv_nsec: r.subsec_nanos() as i64,
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

/// Signals the process group led (or once led) by `leader`, for a group
/// that is not ours to reap. A pgid cannot be reused while any member of
/// the group lives, so the group is the task's unless a *different* process
/// now holds the leader's pid, in which case nothing is sent.
pub fn signal_group_of(leader: &ProcessIdentity, sig: i32) -> io::Result<()> {
    if leader.boot_id != boot_id() {
        return Ok(());
    }
    match read_stat(leader.pid)? {
        Some(stat) if stat.start_ticks != leader.start_ticks => Ok(()),
        _ => signal_group(leader.pid, sig),
    }
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

/// Starts `exe args` in a session of its own with `env` added to the
/// environment, stdin from a new pipe, stdout to /dev/null, stderr to `log`.
///
/// This is posix_spawn with `POSIX_SPAWN_SETSID`: the C library starts the
/// child with vfork semantics (no copy of this process's page tables, none
/// of the copy-on-write faults that follow a fork) and returns once it has
/// exec'd, with the exec's error if it failed. setsid runs before exec, so
/// there is no moment in which the child sits in the caller's process group.
pub fn spawn_detached(
    exe: &Path,
    args: &[OsString],
    env: &[(String, String)],
    log: File,
) -> io::Result<Detached> {
    use std::os::unix::ffi::OsStrExt;
    let program = cstring(exe.as_os_str().as_bytes())?;
    let args = std::iter::once(Ok(program.clone()))
        .chain(args.iter().map(|a| cstring(a.as_bytes())))
        .collect::<io::Result<Vec<CString>>>()?;
    let mut vars: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(k, _)| !env.iter().any(|(key, _)| k.as_bytes() == key.as_bytes()))
        .collect();
    vars.extend(env.iter().map(|(k, v)| (k.into(), v.into())));
    let vars = vars
        .iter()
        .map(|(k, v)| cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<Vec<CString>>>()?;
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

/// Blocks until the starter says "go" on stdin (true) or closes it without
/// saying so (false).
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
pub fn wait_for_go() -> bool {
    set_policy(libc::SCHED_BATCH);
    let go = read_go();
    set_policy(libc::SCHED_OTHER);
    go
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

fn read_go() -> bool {
    let mut buf = [0u8; 8];
    let mut got = 0;
    let mut stdin = io::stdin().lock();
    while got < 3 {
        match stdin.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    &buf[..3] == b"go\n"
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

    /// Watches `path` for writes and attribute changes (touches).
    pub fn add(&self, path: &Path) -> io::Result<()> {
        use rustix::fs::inotify::{add_watch, WatchFlags};
        add_watch(
            &self.fd,
            path,
            WatchFlags::MODIFY | WatchFlags::ATTRIB | WatchFlags::CLOSE_WRITE,
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
    fn a_detached_child_gets_its_session_stdin_stderr_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("log");
        let log = File::create(&log_path).unwrap();
        let script = "read line; echo \"$line $EXTRA $(cut -d' ' -f6 /proc/$$/stat) $$\" >&2";
        let args: Vec<OsString> = vec!["-c".into(), script.into()];
        let env = [("EXTRA".to_owned(), "added".to_owned())];
        let mut child = spawn_detached(Path::new("/bin/sh"), &args, &env, log).unwrap();
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
        let err = spawn_detached(Path::new("/nonexistent/bgtask"), &[], &[], log).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
