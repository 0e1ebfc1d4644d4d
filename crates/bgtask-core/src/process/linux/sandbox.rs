//! Confinement of a task's shell: a Landlock ruleset and a network
//! namespace, prepared by the monitor before the clone and applied by the
//! child between clone and exec (`shell.rs`), with async-signal-safe
//! system calls only.
//!
//! # "Everything except the denied paths" with an allow-list
//!
//! Landlock only grants. Reading is granted on every entry of `/` except
//! the entries that are a denied path or lie on the way to one; those are
//! descended into and the same rule applied to their entries, so the rules
//! cover everything but the denied paths (and what is created later
//! directly inside a directory on the way to one). Symlinks get no rule:
//! what they point to is reached by its own path. Listing directories
//! (`ReadDir`) is granted everywhere, so a denied directory's names stay
//! visible while its files cannot be opened. Writable trees are granted
//! the same way: a denied path beneath one stays denied.
//!
//! The handled rights are those of Landlock ABI 3 (reads, writes,
//! renames across directories, truncation): the starter refuses a kernel
//! below it (`sandbox::MIN_LANDLOCK_ABI`).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};

/// What to confine a task's shell to.
#[derive(Clone, Copy, Debug)]
pub struct ConfineSpec<'a> {
    /// Apply Landlock (read everything but `deny`, write `write` and
    /// `tmp`); `false` for a network namespace alone.
    pub landlock: bool,
    pub write: &'a [PathBuf],
    /// Readable although beneath a denied path.
    pub read: &'a [PathBuf],
    pub deny: &'a [PathBuf],
    /// The task's private temporary directory (read and write).
    pub tmp: Option<&'a Path>,
    pub no_network: bool,
    /// With `no_network`: a seccomp filter (no sockets but unix ones)
    /// instead of a network namespace, for where namespaces are refused.
    pub network_filter: bool,
}

/// A confinement ready to be applied in the child.
#[derive(Debug)]
pub struct Confinement {
    /// The Landlock ruleset (close-on-exec).
    ruleset: Option<OwnedFd>,
    netns: Option<NetNs>,
    filter: Option<Vec<libc::sock_filter>>,
}

/// A user + network namespace's set-up, written by the child itself.
#[derive(Debug)]
struct NetNs {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

/// Device files a writing task needs, beyond its trees.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];

/// The kernel's Landlock ABI version, 0 without Landlock.
pub fn landlock_abi() -> u32 {
    // SAFETY: landlock_create_ruleset with a NULL attribute, size 0 and
    // LANDLOCK_CREATE_RULESET_VERSION only returns the ABI version.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32, // LANDLOCK_CREATE_RULESET_VERSION
        )
    };
    u32::try_from(ret).unwrap_or(0)
}

/// Whether a task can get a network namespace of its own (through a user
/// namespace); `Err` says why not.
pub fn network_namespaces() -> Result<(), String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if !Path::new("/proc/self/ns/net").exists() {
        return Err("this kernel has no network namespaces".into());
    }
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
        && rustix::process::geteuid().as_raw() != 0
    {
        return Err("unprivileged user namespaces are disabled".into());
    }
    Ok(())
}

/// Prepares `spec` (in the monitor, before the clone: this allocates,
/// opens and lists directories).
pub fn prepare_confinement(spec: &ConfineSpec<'_>) -> io::Result<Confinement> {
    let ruleset = if spec.landlock {
        Some(ruleset(spec).map_err(|e| io::Error::other(format!("landlock: {e}")))?)
    } else {
        None
    };
    let filter = (spec.no_network && spec.network_filter).then(socket_filter);
    let netns = (spec.no_network && !spec.network_filter).then(|| {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        NetNs {
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        }
    });
    Ok(Confinement {
        ruleset,
        netns,
        filter,
    })
}

type Error = Box<dyn std::error::Error>;

fn ruleset(spec: &ConfineSpec<'_>) -> Result<OwnedFd, Error> {
    let abi = ABI::V3;
    let all = AccessFs::from_all(abi);
    let read = AccessFs::from_read(abi);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(all)?;
    // Where the kernel has them (ABI 6), scopes keep the task from
    // signalling processes outside its sandbox (its monitor, the user's
    // other programs) and from abstract unix sockets created outside it.
    if landlock_abi() >= 6 {
        ruleset = ruleset.scope(Scope::AbstractUnixSocket | Scope::Signal)?;
    }
    let mut rules = Rules {
        ruleset: Some(ruleset.create()?),
        deny: spec.deny,
        abi,
    };
    // Listing is granted everywhere (see the module's comment).
    rules.add(Path::new("/"), AccessFs::ReadDir.into())?;
    rules.grant(Path::new("/"), read)?;
    for path in spec.read {
        rules.add(path, read)?;
    }
    for path in spec.write {
        rules.grant(path, all)?;
    }
    if let Some(tmp) = spec.tmp {
        rules.add(tmp, all)?;
    }
    for device in DEVICES {
        if Path::new(device).exists() {
            rules.add(Path::new(device), all)?;
        }
    }
    if Path::new("/dev/pts").is_dir() {
        rules.add(Path::new("/dev/pts"), all)?;
    }
    rules
        .ruleset
        .and_then(Option::<OwnedFd>::from)
        .ok_or_else(|| "the kernel has no Landlock".into())
}

struct Rules<'a> {
    ruleset: Option<landlock::RulesetCreated>,
    deny: &'a [PathBuf],
    abi: ABI,
}

impl Rules<'_> {
    /// Grants `access` on `path` and beneath, except the denied paths:
    /// on the way to one, each entry is granted instead.
    fn grant(&mut self, path: &Path, access: BitFlags<AccessFs>) -> Result<(), Error> {
        self.grant_known(path, None, access)
    }

    /// [`Rules::grant`], `is_dir` known from the directory entry (saves a
    /// `fstat` per entry: an ancestor of a denied path may hold hundreds).
    fn grant_known(
        &mut self,
        path: &Path,
        is_dir: Option<bool>,
        access: BitFlags<AccessFs>,
    ) -> Result<(), Error> {
        if self.deny.iter().any(|d| path.starts_with(d)) {
            return Ok(());
        }
        if !self.deny.iter().any(|d| d.starts_with(path)) {
            return self.add_known(path, is_dir, access);
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let kind = entry.file_type().ok();
            if !kind.is_some_and(|t| t.is_symlink()) {
                self.grant_known(&entry.path(), kind.map(|t| t.is_dir()), access)?;
            }
        }
        Ok(())
    }

    /// One rule; a path that vanished meanwhile is skipped.
    fn add(&mut self, path: &Path, access: BitFlags<AccessFs>) -> Result<(), Error> {
        self.add_known(path, None, access)
    }

    fn add_known(
        &mut self,
        path: &Path,
        is_dir: Option<bool>,
        access: BitFlags<AccessFs>,
    ) -> Result<(), Error> {
        let Ok(fd) = open_path(path) else {
            return Ok(());
        };
        let is_dir = is_dir.unwrap_or_else(|| {
            rustix::fs::fstat(&fd)
                .map(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory
                })
                .unwrap_or(false)
        });
        let access = if is_dir {
            access
        } else {
            access & AccessFs::from_file(self.abi)
        };
        if access.is_empty() {
            return Ok(());
        }
        let ruleset = self.ruleset.take().ok_or("the ruleset was lost")?;
        self.ruleset = Some(ruleset.add_rule(PathBeneath::new(fd.as_fd(), access))?);
        Ok(())
    }
}

/// An `O_PATH` descriptor of `path` itself (a symlink is not followed).
fn open_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// The child's part: what `Confinement` prepared, as raw system calls on
/// prepared memory. Async-signal-safe; errors are errnos.
pub(super) struct ChildConfinement<'a> {
    ruleset: Option<&'a OwnedFd>,
    netns: Option<(&'a [u8], &'a [u8])>,
    ifreq: libc::ifreq,
    filter: Option<libc::sock_fprog>,
}

impl Confinement {
    /// Borrowed for the child (called before the clone).
    pub(super) fn for_child(&self) -> ChildConfinement<'_> {
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut ifreq: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifreq.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        ChildConfinement {
            ruleset: self.ruleset.as_ref(),
            netns: self
                .netns
                .as_ref()
                .map(|n| (n.uid_map.as_slice(), n.gid_map.as_slice())),
            ifreq,
            filter: self.filter.as_ref().map(|f| libc::sock_fprog {
                len: f.len() as u16,
                filter: f.as_ptr().cast_mut(),
            }),
        }
    }
}

/// Which step of the confinement failed in the child (reported with the
/// errno through the exec-report pipe).
pub(super) const STEP_NETNS: u32 = 1;
pub(super) const STEP_LOOPBACK: u32 = 2;
pub(super) const STEP_LANDLOCK: u32 = 3;
pub(super) const STEP_SECCOMP: u32 = 4;

impl ChildConfinement<'_> {
    /// In the child: enters the network namespace (loopback up), then
    /// restricts itself with the ruleset. Returns the failed step and errno.
    pub(super) fn apply(&self) -> Result<(), (u32, i32)> {
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if let Some((uid_map, gid_map)) = self.netns {
            // A user namespace too: it lets a user without privileges own
            // the network namespace, and keeps a root task from leaving it
            // (setns back needs privileges in the outer namespace).
            // SAFETY: unshare is a plain system call.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } != 0 {
                return Err((STEP_NETNS, errno()));
            }
            for (file, data) in [
                (c"/proc/self/setgroups", b"deny".as_slice()),
                (c"/proc/self/uid_map", uid_map),
                (c"/proc/self/gid_map", gid_map),
            ] {
                write_file(file, data).map_err(|e| (STEP_NETNS, e))?;
            }
            let mut ifreq = self.ifreq;
            // SAFETY: socket and ioctl on a prepared ifreq naming "lo".
            unsafe {
                let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                if fd < 0 {
                    return Err((STEP_LOOPBACK, errno()));
                }
                if libc::ioctl(fd, libc::SIOCGIFFLAGS as _, &mut ifreq) != 0 {
                    return Err((STEP_LOOPBACK, errno()));
                }
                ifreq.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                if libc::ioctl(fd, libc::SIOCSIFFLAGS as _, &ifreq) != 0 {
                    return Err((STEP_LOOPBACK, errno()));
                }
                libc::close(fd);
            }
        }
        if let Some(ruleset) = self.ruleset {
            use std::os::fd::AsRawFd;
            // SAFETY: prctl and landlock_restrict_self are plain system
            // calls on a descriptor we own. No new privileges is what lets
            // an unprivileged process restrict itself, and keeps setuid
            // programs from running with more than the task has.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err((STEP_LANDLOCK, errno()));
                }
                if libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) != 0 {
                    return Err((STEP_LANDLOCK, errno()));
                }
            }
        }
        if let Some(filter) = &self.filter {
            // SAFETY: prctl with a filter program that lives in the
            // Confinement borrowed by this child until its exec.
            unsafe {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        filter as *const libc::sock_fprog,
                    ) != 0
                {
                    return Err((STEP_SECCOMP, errno()));
                }
            }
        }
        Ok(())
    }
}

/// Whether this kernel filters system calls with seccomp.
pub fn seccomp_available() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|status| status.lines().any(|l| l.starts_with("Seccomp:")))
}

/// The seccomp program of `--no-network` without namespaces: `socket` and
/// `socketpair` fail with EACCES for every family but `AF_UNIX`, and so
/// does `io_uring_setup` (io_uring can open sockets by itself). Other
/// architectures' and the x32 ABI's system calls fail with ENOSYS, so no
/// second calling convention slips past. Loopback is closed too: a
/// filter cannot tell a local address from a remote one.
fn socket_filter() -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const JGE: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
    const X32_BIT: u32 = 0x4000_0000;
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let denied = ERRNO | libc::EACCES as u32;
    let nosys = ERRNO | libc::ENOSYS as u32;
    vec![
        // seccomp_data: nr at 0, arch at 4, args[0] at 16 (its low half
        // on little-endian machines).
        op(LD_W_ABS, 0, 0, 4),
        op(JEQ, 1, 0, ARCH),
        op(RET, 0, 0, nosys),
        op(LD_W_ABS, 0, 0, 0),
        op(JGE, 0, 1, X32_BIT),
        op(RET, 0, 0, nosys),
        op(JEQ, 4, 0, libc::SYS_socket as u32),
        op(JEQ, 3, 0, libc::SYS_socketpair as u32),
        op(JEQ, 1, 0, libc::SYS_io_uring_setup as u32),
        op(RET, 0, 0, ALLOW),
        op(RET, 0, 0, denied),
        // socket / socketpair: only AF_UNIX.
        op(LD_W_ABS, 0, 0, 16),
        op(JEQ, 0, 1, libc::AF_UNIX as u32),
        op(RET, 0, 0, ALLOW),
        op(RET, 0, 0, denied),
    ]
}

/// Writes `data` to `path` (async-signal-safe).
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> Result<(), i32> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| e.raw_os_error())?;
    rustix::io::write(&fd, data).map_err(|e| e.raw_os_error())?;
    Ok(())
}

/// The name of a failed step, for the error the monitor records.
pub(super) fn step_name(step: u32) -> Option<&'static str> {
    match step {
        STEP_NETNS => Some("sandbox: cannot create the task's network namespace"),
        STEP_LOOPBACK => Some("sandbox: cannot bring up loopback in the task's network namespace"),
        STEP_LANDLOCK => Some("sandbox: cannot apply the Landlock ruleset"),
        STEP_SECCOMP => Some("sandbox: cannot install the network filter"),
        _ => None,
    }
}
