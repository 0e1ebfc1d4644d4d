//! The store: permissions, schema versions, and refusing unsafe homes.

use std::os::unix::fs::PermissionsExt;

use crate::fixture::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_home_is_private_and_output_files_are_0600() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "echo hi");
    let task = bg.wait(&id);
    assert_eq!(mode(&bg.home), 0o700);
    assert_eq!(mode(&bg.home.join("bgtask.db")), 0o600);
    assert_eq!(
        mode(std::path::Path::new(task["stdout_path"].as_str().unwrap())),
        0o600
    );
    assert_eq!(
        mode(std::path::Path::new(task["stderr_path"].as_str().unwrap())),
        0o600
    );
}

#[test]
fn a_group_writable_home_or_a_file_is_refused() {
    let bg = Bg::new();
    std::fs::create_dir(&bg.home).unwrap();
    std::fs::set_permissions(&bg.home, std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [&["list"][..], &["run", "--", "echo hi"]] {
        let run = bg.run(args);
        assert_eq!(run.code, 1, "{args:?}");
        assert!(
            run.stderr.contains("writable by group or others"),
            "{run:?}"
        );
    }
    let written: Vec<_> = std::fs::read_dir(&bg.home).unwrap().collect();
    assert!(written.is_empty(), "nothing written in it: {written:?}");
    assert!(pids_of_home(&bg.home).is_empty(), "no monitor started");
    std::fs::remove_dir(&bg.home).unwrap();
    std::fs::write(&bg.home, "not a dir").unwrap();
    let run = bg.run(&["list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("not a directory"), "{run:?}");
    assert_eq!(
        std::fs::read_to_string(&bg.home).unwrap(),
        "not a dir",
        "nothing was overwritten"
    );
}

#[test]
fn a_store_from_a_newer_bgtask_is_refused_untouched() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "true");
    bg.wait(&id);
    let db = bg.home.join("bgtask.db");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
    }
    let run = bg.run(&["list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("newer bgtask"), "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
    let count: i64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1, "the task is still there");
}

#[test]
fn a_record_from_a_newer_bgtask_is_skipped_and_never_collected() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "true");
    bg.wait(&id);
    bg.run(&["ack", &id]).ok();
    {
        let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
        conn.execute("UPDATE tasks SET record_version = 9", [])
            .unwrap();
    }
    assert_eq!(bg.list_all().len(), 0);
    let status = bg.run(&["status", &id]);
    assert_eq!(status.code, 1);
    assert!(status.stderr.contains("newer bgtask"), "{status:?}");
    bg.run(&["gc", "--older-than", "0ms"]).ok();
    let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
    let count: i64 = conn
        .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count, 1, "gc left the newer record alone");
}

#[test]
fn a_corrupt_database_gives_a_clear_error() {
    let bg = Bg::new();
    std::fs::create_dir(&bg.home).unwrap();
    std::fs::set_permissions(&bg.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(bg.home.join("bgtask.db"), vec![0x5au8; 8192]).unwrap();
    let run = bg.run(&["list"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("bgtask.db"), "{run:?}");
    assert!(!run.stderr.contains("panicked"));
}

#[test]
fn the_wal_stays_small_when_every_connection_is_short_lived() {
    // With no daemon, most commands open an idle store: the first
    // connection rebuilds SQLite's WAL index from the WAL file, which
    // forgets how much of it was already checkpointed. A WAL that is only
    // checkpointed, never emptied, then grows with every task.
    let bg = Bg::new();
    for _ in 0..40 {
        // `run` exits before the monitor opens the store, and the monitor
        // exits before the next command: every connection is alone.
        let task = bg.run(&["run", "--json", "--", "true"]).ok().json();
        let monitor = monitor_pid(&task);
        wait_until("the monitor exits", || !is_running(monitor));
        let id = task["task_id"].as_str().unwrap();
        assert_eq!(bg.wait(id)["status"], "completed");
    }
    let wal = std::fs::metadata(bg.home.join("bgtask.db-wal")).map_or(0, |m| m.len());
    // 32-byte header, then frames of a 24-byte header and a 4 KiB page.
    let frames = wal.saturating_sub(32) / (24 + 4096);
    assert!(frames < 200, "after 40 tasks the WAL holds {frames} frames");
}

#[test]
fn closed_standard_streams_never_reach_the_store() {
    // With stdin, stdout and stderr closed, the files a command opens would
    // take fds 0-2 and output could be written into them. bgtask reopens
    // them on /dev/null first (std's start-up did, and bgtask skips it);
    // SQLite also never puts a database on fds 0-2.
    let bg = Bg::new();
    let id = bg.spawn(&[], "echo hi");
    bg.wait(&id);
    for args in ["list --json", "run --json --wait 10s -- echo again"] {
        let ran = bg.run_with(
            std::process::Command::new("/bin/sh")
                .env("BGTASK_HOME", &bg.home)
                .env("BGTASK_SESSION", &bg.session)
                .env("BG", BIN)
                .args([
                    "-c",
                    &format!(r#""$BG" {args} <&- >&- 2>&-; echo "exit $?""#),
                ]),
        );
        assert!(ran.stdout.contains("exit 0"), "{args}: {ran:?}");
    }
    let doctor = bg.run(&["doctor"]);
    assert_eq!(doctor.code, 0, "{doctor:?}");
    let tasks = bg.list_all();
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(
        tasks.iter().all(|t| t["status"] == "completed"),
        "{tasks:?}"
    );
}
