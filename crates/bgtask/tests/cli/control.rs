//! The monitor's control channel: a private socket per running task, the
//! requests it answers, and the fallbacks when it is missing or stale.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::process::Command;

use bgtask_core::control::{self, Control, Reply};
use bgtask_core::TaskId;

use crate::fixture::*;

fn socket(bg: &Bg, id: &str) -> PathBuf {
    bg.home.join("ctl").join(format!("{id}.sock"))
}

#[test]
fn a_running_task_has_a_private_control_socket_that_goes_with_its_monitor() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let dir = std::fs::metadata(bg.home.join("ctl")).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700);
    let meta = std::fs::metadata(socket(&bg, &id)).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600);
    let killed = bg.run(&["kill", "--json", &id]).ok().json();
    assert_eq!(killed["status"], "killed");
    assert_eq!(killed["signal"], "SIGTERM");
    assert!(
        !socket(&bg, &id).exists(),
        "the socket outlived its monitor"
    );
}

#[test]
fn the_monitor_answers_every_request_of_the_vocabulary() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let task: TaskId = id.parse().unwrap();
    // A task started without --stdin or --pty refuses what needs them
    // (issue 18; tests/cli/interactive.rs has the rest).
    for request in [
        Control::Resize {
            rows: 40,
            cols: 100,
        },
        Control::Input {
            data: "y\n".into(),
            eof: false,
        },
        Control::Screen,
    ] {
        let reply = control::send(&bg.home, &task, &request).unwrap();
        assert!(matches!(reply, Reply::Failed { .. }), "{reply:?}");
    }
    // Watch (issue 16): the monitor re-reads the stored watches.
    let reply = control::send(&bg.home, &task, &Control::Watch).unwrap();
    assert_eq!(reply, Reply::Done);
    assert_eq!(bg.status(&id)["status"], "running");
    // A kill sent without recording it first is recorded by the monitor.
    let reply = control::send(&bg.home, &task, &Control::Kill { grace_ms: 0 }).unwrap();
    assert_eq!(reply, Reply::Done);
    let ended = bg.wait(&id);
    assert_eq!(ended["status"], "killed", "{ended}");
    assert_eq!(ended["signal"], "SIGKILL");
    assert_eq!(ended["exit_code"], 137);
}

#[test]
fn a_kill_without_a_control_socket_falls_back_to_the_signal() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    std::fs::remove_file(socket(&bg, &id)).unwrap();
    let killed = bg.run(&["kill", "--json", &id]).ok().json();
    assert_eq!(killed["status"], "killed");
    assert_eq!(killed["signal"], "SIGTERM");
}

#[test]
fn a_stale_control_socket_of_a_dead_monitor_breaks_nothing() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "exec sleep 300");
    let monitor = monitor_pid(&bg.status(&id));
    let status = Command::new("kill")
        .args(["-KILL", &monitor.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the monitor to die", || !is_running(monitor));
    assert!(
        socket(&bg, &id).exists(),
        "the stale socket is what is tested"
    );
    let task: TaskId = id.parse().unwrap();
    assert!(control::send(&bg.home, &task, &Control::Kill { grace_ms: 0 }).is_err());
    let killed = bg.run(&["kill", "--json", &id]).ok().json();
    assert_eq!(killed["status"], "failed", "{killed}");
    assert!(
        killed["reason"].as_str().unwrap().contains("died"),
        "{killed}"
    );
    assert!(
        !socket(&bg, &id).exists(),
        "reconcile removes the stale socket"
    );
    // The store works on: a new task runs and is killed over its own socket.
    let next = bg.spawn(&[], "exec sleep 300");
    let killed = bg.run(&["kill", "--json", &next]).ok().json();
    assert_eq!(killed["status"], "killed");
}
