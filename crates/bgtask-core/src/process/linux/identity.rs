//! Process identity: pid + start time + boot + pid namespace, its liveness
//! as far as this process can tell, and pidfds opened only for a verified
//! identity.
//!
//! Invariant: no stored pid is ever signalled without first checking, through
//! a pidfd opened before the check, that it is still the same process (same
//! start time since boot, same boot).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags};

use super::signals::os_signal;
use super::wait_readable;
use crate::process::Signal;

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
    pub(super) fd: OwnedFd,
}

impl ProcessHandle {
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        let sig = os_signal(sig)?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
