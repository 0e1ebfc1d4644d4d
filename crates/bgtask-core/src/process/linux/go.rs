//! The go pipe: how a starter tells a monitor that its task is recorded,
//! and hands it the task's environment.

use std::io::{self, Read};

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
pub fn wait_for_go() -> Option<Go> {
    set_policy(libc::SCHED_BATCH);
    let go = read_go(&mut io::stdin().lock());
    set_policy(libc::SCHED_OTHER);
    go
}

/// What a starter said on the go pipe: the task's environment, and
/// whether the task was recorded queued (issue 21: its monitor waits for
/// its turn before it starts the shell).
#[derive(Debug, PartialEq, Eq)]
pub struct Go {
    pub env: Vec<(String, String)>,
    pub queued: bool,
}

/// Tells the starter, if it still waits on the go pipe, that something it
/// waits for has happened (a readiness outcome is recorded): the pipe's
/// read end (our stdin) is replaced by /dev/null, so the starter's write
/// end reports POLLERR. The monitor reads nothing more from it after go.
pub fn release_go_pipe() {
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
}

/// Whether the monitor at the other end of a go pipe (its write end, kept
/// by the starter after go) has released it or ended, waiting at most
/// `timeout`. The write end of a pipe polls POLLERR once no reader is left.
pub fn go_pipe_released(
    write_end: &std::os::fd::OwnedFd,
    timeout: Option<std::time::Duration>,
) -> bool {
    use std::os::fd::AsFd;
    super::wait::wait_readable(&[write_end.as_fd()], timeout).is_ok_and(|r| r[0])
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
    message("go", env)
}

/// A [`go_message`] for a task recorded `queued`: `queue LEN\n` and the
/// same environment block (kept in the monitor's memory until its turn).
pub fn queue_message(env: &[(String, String)]) -> Vec<u8> {
    message("queue", env)
}

fn message(verb: &str, env: &[(String, String)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (key, value) in env {
        block.extend_from_slice(key.as_bytes());
        block.push(b'=');
        block.extend_from_slice(value.as_bytes());
        block.push(0);
    }
    let mut message = format!("{verb} {}\n", block.len()).into_bytes();
    message.extend_from_slice(&block);
    message
}

/// Reads a [`go_message`]; `None` at end of file before it is complete or
/// if it is malformed.
fn read_go(input: &mut impl Read) -> Option<Go> {
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
    let (queued, len) = match header.strip_prefix(b"go ") {
        Some(len) => (false, len),
        None => (true, header.strip_prefix(b"queue ")?),
    };
    let len: usize = std::str::from_utf8(len)
        .ok()?
        .parse()
        .ok()
        .filter(|len| *len <= MAX_GO_ENV_BYTES)?;
    let mut block = vec![0u8; len];
    input.read_exact(&mut block).ok()?;
    let block = String::from_utf8(block).ok()?;
    let env = block
        .split_terminator('\0')
        .map(|entry| {
            entry
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect::<Option<_>>()?;
    Some(Go { env, queued })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_message_carries_the_environment_and_a_broken_one_is_no_go() {
        let env = vec![
            ("A".to_owned(), "1=2\nthree".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ];
        let message = go_message(&env);
        let queued = queue_message(&env);
        assert_eq!(
            read_go(&mut &queued[..]),
            Some(Go {
                env: env.clone(),
                queued: true
            })
        );
        assert_eq!(read_go(&mut &message[..]), Some(Go { env, queued: false }));
        assert_eq!(
            read_go(&mut &b"go 0\n"[..]),
            Some(Go {
                env: vec![],
                queued: false
            })
        );
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
}
