//! The wrapper inside a Slurm job (`bgtask __slurm_job HOME ID CWD TIMEOUT
//! IDLE MAX_OUTPUT COMMAND`, exec'd by the batch script on the compute
//! node). It runs `bash -c COMMAND` in a process group of its own, copies
//! its output into the task's capped files (the store's `out/` on the
//! shared filesystem), ends it at the hard or idle timeout to the second
//! (SIGTERM to the group, SIGKILL after the grace), and writes how it ended
//! into `out/<id>.end` before exiting with the task's code. It never opens
//! the database: SQLite over a network filesystem is not to be trusted,
//! and the watcher on the submitting machine records the end.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::GRACE_MS;
use crate::clock::now_ms;
use crate::output::CappedWriter;
use crate::process::{self, Signal};
use crate::task::TaskId;

/// Why the wrapper stopped the command.
#[derive(Clone, Copy)]
enum Stop {
    Timeout(u64),
    Idle(u64),
}

/// Runs the wrapper; its exit code (the task's).
pub fn run(args: &[OsString]) -> u8 {
    match run_inner(args) {
        Ok(code) => code,
        Err(message) => {
            eprintln_safe(&format!("bgtask: {message}"));
            1
        }
    }
}

fn eprintln_safe(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

fn run_inner(args: &[OsString]) -> Result<u8, String> {
    let [home, id, cwd, timeout, idle, max, command] = args else {
        return Err("usage: __slurm_job HOME ID CWD TIMEOUT IDLE MAX_OUTPUT COMMAND".into());
    };
    let home = PathBuf::from(home);
    let id: TaskId = id
        .to_str()
        .and_then(|s| s.parse().ok())
        .ok_or("bad task id")?;
    let limit = |v: &OsString| v.to_str().and_then(|s| s.parse::<u64>().ok());
    let timeout_ms = limit(timeout);
    let idle_ms = limit(idle);
    let max_output = limit(max).unwrap_or(crate::config::DEFAULT_MAX_OUTPUT);
    let command = command.to_str().ok_or("the command is not UTF-8")?;

    let open = |path: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    };
    let out_path = crate::store::stdout_path(&home, &id);
    let err_path = crate::store::stderr_path(&home, &id);
    let out = CappedWriter::new(out_path.clone(), open(&out_path)?, max_output / 2);
    let err = CappedWriter::new(err_path.clone(), open(&err_path)?, max_output / 2);

    let mut child = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(cwd)
        .env(process::TASK_MARKER, id.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start bash in {}: {e}", Path::new(cwd).display()))?;
    let pgid = child.id();
    let last_output = Arc::new(AtomicI64::new(now_ms()));
    let dropped = Arc::new(AtomicU64::new(0));
    let (pumped_tx, pumped_rx) = mpsc::channel::<()>();
    if let Some(pipe) = child.stdout.take() {
        pump(pipe, out, &last_output, &dropped, pumped_tx.clone());
    }
    if let Some(pipe) = child.stderr.take() {
        pump(pipe, err, &last_output, &dropped, pumped_tx.clone());
    }
    drop(pumped_tx);
    let (exit_tx, exit_rx) = mpsc::channel::<std::io::Result<ExitStatus>>();
    std::thread::spawn(move || {
        let _ = exit_tx.send(child.wait());
    });

    let started = now_ms();
    let mut stopping: Option<(Stop, i64)> = None;
    let status = loop {
        let now = now_ms();
        let deadline = match stopping {
            Some((_, kill_at)) => kill_at,
            None => {
                let hard = timeout_ms.map(|ms| started + ms as i64);
                let idle = idle_ms.map(|ms| last_output.load(Ordering::Relaxed) + ms as i64);
                [hard, idle].into_iter().flatten().min().unwrap_or(i64::MAX)
            }
        };
        let wait = Duration::from_millis((deadline - now).clamp(0, 3_600_000) as u64);
        match exit_rx.recv_timeout(wait) {
            Ok(status) => break status.ok(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        let now = now_ms();
        match stopping {
            Some((_, kill_at)) if now >= kill_at => {
                let _ = process::signal_group(pgid, Signal::Kill);
            }
            Some(_) => {}
            None => {
                let why = if timeout_ms.is_some_and(|ms| now >= started + ms as i64) {
                    timeout_ms.map(Stop::Timeout)
                } else {
                    idle_ms
                        .filter(|ms| now >= last_output.load(Ordering::Relaxed) + *ms as i64)
                        .map(Stop::Idle)
                };
                if let Some(why) = why {
                    let _ = process::signal_group(pgid, Signal::Term);
                    stopping = Some((why, now + GRACE_MS as i64));
                }
            }
        }
    };
    // What the shell left in its group ends with it, and the pipes close.
    let _ = process::signal_group(pgid, Signal::Kill);
    // Writers outside the group may hold the pipes: wait for the copies a
    // little, not for ever.
    let give_up = std::time::Instant::now() + Duration::from_secs(2);
    while pumped_rx
        .recv_timeout(give_up.saturating_duration_since(std::time::Instant::now()))
        .is_ok()
    {}

    let (line, code) = match (stopping, status) {
        (Some((Stop::Timeout(ms), _)), _) => (format!("timeout {ms}"), 124),
        (Some((Stop::Idle(ms), _)), _) => (format!("idle {ms}"), 124),
        (None, Some(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => (format!("exit {code}"), code),
            (None, Some(sig)) => (format!("signal {sig}"), 128 + sig),
            (None, None) => ("exit 1".to_owned(), 1),
        },
        (None, None) => return Err("the command's exit status could not be read".into()),
    };
    let text = format!(
        "{line}\ndropped {}\nstarted {started}\n",
        dropped.load(Ordering::Relaxed)
    );
    let end = super::end_path(&home, &id);
    let tmp = end.with_extension("end.tmp");
    // Written whole and renamed: the watcher never reads half a file.
    // 0600 as every file of the store, whatever the job's umask.
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()));
    if written.is_ok() {
        let _ = std::fs::rename(&tmp, &end);
    }
    Ok(u8::try_from(code & 0xff).unwrap_or(1))
}

/// Copies one pipe into its capped file on a thread of its own.
fn pump(
    mut pipe: impl Read + Send + 'static,
    mut writer: CappedWriter,
    last_output: &Arc<AtomicI64>,
    dropped: &Arc<AtomicU64>,
    done: mpsc::Sender<()>,
) {
    let last_output = Arc::clone(last_output);
    let dropped = Arc::clone(dropped);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut before = 0;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    last_output.store(now_ms(), Ordering::Relaxed);
                    let _ = writer.write(&buf[..n]);
                    let now = writer.dropped();
                    dropped.fetch_add(now - before, Ordering::Relaxed);
                    before = now;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = done.send(());
    });
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_end_file_is_written_for_the_owner_only_whatever_the_umask() {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(crate::store::output_dir(home.path())).unwrap();
        let id = TaskId::random();
        let end = super::super::end_path(home.path(), &id);
        let args: Vec<OsString> = [
            home.path().as_os_str(),
            id.as_str().as_ref(),
            home.path().as_os_str(),
            "-".as_ref(),
            "-".as_ref(),
            "1000".as_ref(),
            "exit 3".as_ref(),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        assert_eq!(run(&args), 3);
        let text = std::fs::read_to_string(&end).unwrap();
        assert!(text.starts_with("exit 3\n"), "{text}");
        let mode = std::fs::metadata(&end).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
}
