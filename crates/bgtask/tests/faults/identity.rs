//! Whose process is whose: commands run from other pid and time
//! namespaces, a leader pid whose group number now belongs to someone else,
//! task processes that left the session without a cgroup, and cgroups a
//! task made inside its own. bgtask must never declare a live task dead,
//! never signal a process it has not proven to be the task's, and leave
//! nothing behind.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::fixture::*;

const PID_NS: &[&str] = &["-p", "-f", "--mount-proc"];
const TIME_NS: &[&str] = &["-T", "--boottime", "100000"];

/// A command that runs `program` with the fixture's environment and
/// directory (those of `bg.cmd()`).
pub fn command_like_bg(bg: &Bg, program: &str) -> Command {
    let base = bg.cmd();
    let mut cmd = Command::new(program);
    for (key, value) in base.get_envs() {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    cmd.current_dir(bg.dir.path()).stdin(Stdio::null());
    cmd
}

/// `bgtask ARGS` run inside new namespaces made by `unshare NS`.
fn unshared(bg: &Bg, ns: &[&str], args: &[&str]) -> Command {
    let mut cmd = command_like_bg(bg, "unshare");
    cmd.args(ns).arg(BIN).args(args);
    cmd
}

/// Whether `unshare NS` works here (root and a kernel with the namespace).
fn can_unshare(ns: &[&str]) -> bool {
    Command::new("unshare")
        .args(ns)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The task's status as stored, read without any reconcile.
fn stored_status(bg: &Bg, id: &str) -> String {
    let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
    conn.query_row("SELECT status FROM tasks WHERE task_id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn commands_from_another_pid_or_time_namespace_never_declare_a_live_task_dead() {
    if !can_unshare(PID_NS) || !can_unshare(TIME_NS) {
        println!("skipped: unshare of a pid or time namespace is not possible here (needs root)");
        return;
    }
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let monitor = monitor_pid(&bg.status(&id));
    let mut tries = 0;
    for ns in [PID_NS, TIME_NS] {
        for args in [
            &["status", "--json", &id][..],
            &["list", "--json", "--all-sessions"],
            &["completions", "--json"],
            &["gc"],
        ] {
            let run = bg.run_with(&mut unshared(&bg, ns, args));
            assert_eq!(run.code, 0, "{ns:?} {args:?}: {run:?}");
            tries += 1;
        }
        assert_eq!(stored_status(&bg, &id), "running", "after {ns:?}");
        assert!(is_running(monitor), "the monitor was killed from {ns:?}");
    }
    // Seen from the new pid namespace, the task is running, not failed.
    let seen = bg.run_with(&mut unshared(&bg, PID_NS, &["status", "--json", &id]));
    assert_eq!(seen.ok().json()["status"], "running");

    // A kill that cannot reach the monitor (no control socket where the
    // store says: here it is moved away) says so on one line and records
    // nothing.
    let socket = bg.home.join("ctl").join(format!("{id}.sock"));
    let moved = socket.with_extension("moved");
    std::fs::rename(&socket, &moved).unwrap();
    let refused = bg.run_with(&mut unshared(&bg, PID_NS, &["kill", &id]));
    std::fs::rename(&moved, &socket).unwrap();
    assert_ne!(refused.code, 0, "{refused:?}");
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:?}");
    assert!(
        refused.stderr.contains("another pid namespace"),
        "{refused:?}"
    );
    assert_eq!(stored_status(&bg, &id), "running");

    // Through the monitor's control socket in the shared store, a kill
    // from another pid namespace is carried out.
    let reachable = bg.spawn(&[], "exec sleep 300");
    let killed = bg.run_with(&mut unshared(&bg, PID_NS, &["kill", "--json", &reachable]));
    assert_eq!(killed.ok().json()["status"], "killed");
    assert_eq!(bg.status(&reachable)["signal"], "SIGTERM");

    // A waiter in another pid namespace cannot watch the monitor's pidfd;
    // it learns the end from the store's events instead.
    let waiter = unshared(&bg, PID_NS, &["wait", "--json", "--timeout", "30s", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A time namespace's start times are mapped back to the boot clock, so
    // a kill from there reaches the monitor.
    let killed = bg.run_with(&mut unshared(&bg, TIME_NS, &["kill", "--json", &id]));
    assert_eq!(killed.ok().json()["status"], "killed");
    let waited = waiter.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&waited.stdout);
    let tasks: serde_json::Value = serde_json::from_str(&text).expect("wait printed JSON");
    assert_eq!(tasks[0]["status"], "killed", "{waited:?}");

    // A task started from a time namespace is checked from outside it.
    let other = bg.run_id(&mut unshared(
        &bg,
        TIME_NS,
        &["run", "--", "exec sleep 300"],
    ));
    wait_until("the task to start", || {
        bg.status(&other)["status"] != "starting"
    });
    assert_eq!(bg.status(&other)["status"], "running");
    let killed = bg.run(&["kill", "--json", &other]);
    assert_eq!(killed.ok().json()["status"], "killed");
    println!(
        "fault report: commands from another pid or time namespace: {tries} commands, the live task untouched; 1 kill without a control socket refused on one line, 1 through it carried out; 1 wait from a pid namespace, 1 kill from a time namespace and 1 task started in one worked"
    );
}

#[test]
fn cleanup_after_a_dead_monitor_never_signals_a_group_by_its_number() {
    let bg = Bg::new();
    // Someone else's process group whose leader has exited: the group's
    // number is free as a pid, and a member keeps the group alive.
    let leader = Command::new("sh")
        .args(["-c", "sleep 300 >/dev/null 2>&1 & echo $!"])
        .process_group(0)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let group = leader.id();
    let out = leader.wait_with_output().unwrap();
    let member: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(is_running(member));

    let id = bg.spawn(&[], "exec sleep 300");
    let monitor = monitor_pid(&bg.status(&id));
    kill9(monitor);
    wait_until("the monitor to die", || !is_running(monitor));
    // The recorded leader pid is now the number of that other group, as
    // after a pid reuse.
    let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
    conn.execute(
        "UPDATE tasks SET pid = ?1 WHERE task_id = ?2",
        rusqlite::params![group, id],
    )
    .unwrap();
    let task = bg.status(&id);
    let survived = is_running(member);
    kill9(member);
    assert_eq!(task["status"], "failed", "{task}");
    assert!(survived, "reconcile killed another process group");
    println!("fault report: dead monitor whose leader pid numbers another group: 1 of 1 groups left alone");
}

#[test]
fn without_a_cgroup_a_dead_monitor_leaves_no_process_that_changed_session() {
    let bg = Bg::new();
    let n = 3;
    let mut escaped = Vec::new();
    for i in 0..n {
        let file = bg.path(&format!("escaped{i}"));
        let id = bg.start(bg.cmd().env("BGTASK_NO_CGROUP", "1").args([
            "run",
            "--",
            &format!(
                "setsid sh -c 'echo $$ > {}; exec sleep 300' & wait",
                file.display()
            ),
        ]));
        let pid: u32 = read_when_ready(&file).parse().unwrap();
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(!cgroup.contains("bgtask-"), "a cgroup was used: {cgroup}");
        let monitor = monitor_pid(&bg.status(&id));
        kill9(monitor);
        wait_until("the monitor to die", || !is_running(monitor));
        escaped.push((id, pid));
    }
    for (id, pid) in &escaped {
        let task = bg.status(id);
        assert_eq!(task["status"], "failed", "{task}");
        let mut ended = false;
        wait_until_or_give_up(|| {
            ended = !is_running(*pid);
            ended
        });
        if !ended {
            kill9(*pid);
        }
        assert!(ended, "process {pid} of task {id} outlived it");
    }
    println!(
        "fault report: SIGKILL of the monitor without a cgroup, task with a setsid child: {n} of {n} children ended by reconcile"
    );
}

/// Like `wait_until`, but returns instead of panicking, so the caller can
/// clean up before it fails.
fn wait_until_or_give_up(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_task_that_made_cgroups_inside_its_own_leaves_no_cgroup_behind() {
    let bg = Bg::new();
    let file = bg.path("cgroup");
    // The task's own cgroup directory, found from inside, and a cgroup
    // (two deep) made in it.
    let script = format!(
        r#"mnt=$(awk '{{for (i = 1; i <= NF; i++) if ($i == "-") {{ if ($(i+1) == "cgroup2") print $5; break }}}}' /proc/self/mountinfo | head -n 1)
cg=$(sed -n 's/^0:://p' /proc/self/cgroup)
mkdir -p "$mnt$cg/nested/deeper" || exit 9
echo "$mnt$cg" > {}"#,
        file.display()
    );
    let id = bg.spawn(&[], &script);
    let task = bg.wait(&id);
    if task["exit_code"] == 9 {
        println!("skipped: the task could not make a cgroup here: {task}");
        return;
    }
    assert_eq!(task["exit_code"], 0, "{task}");
    let dir = std::fs::read_to_string(&file).unwrap();
    let dir = dir.trim();
    if !dir.contains("bgtask-bg-") {
        println!("skipped: tasks get no cgroup of their own here ({dir})");
        return;
    }
    assert!(
        !std::path::Path::new(dir).exists(),
        "the task's cgroup {dir} was left behind"
    );
    println!("fault report: task made a nested cgroup in its own: 1 of 1 cgroups removed");
}

/// Reads everything from `pipe` in a thread; the result arrives when every
/// writer has closed it.
pub fn read_to_eof(mut pipe: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}
