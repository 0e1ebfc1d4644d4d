//! The disk: full, corrupt, files deleted under running tasks, homes that
//! must be refused. Every case gives a clear error or degrades gracefully,
//! and `bgtask doctor` is the way back.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::fixture::*;

/// A small tmpfs mounted for one test; unmounted on drop.
pub(crate) struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` at `dir`, or `None` (with a message) when
    /// this user cannot mount.
    pub(crate) fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            println!("skipping: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(SmallDisk {
            dir: dir.to_owned(),
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

#[test]
fn a_full_disk_refuses_spawns_clearly_and_loses_no_running_task() {
    let bg = Bg::new();
    let Some(_disk) = SmallDisk::mount(&bg.home, "6m") else {
        return;
    };
    let go = bg.gate("go");
    // Started before the disk fills; must end recorded afterwards.
    let survivor = bg.spawn(
        &[],
        &format!("echo before; {}; echo after; exit 7", go.hold()),
    );
    let capped = bg.spawn(&["--max-output", "2MiB"], "yes | head -c 50000000; exit 0");
    let filler = bg.spawn(
        &["--max-output", "1GiB"],
        "head -c 20000000 /dev/zero; echo; echo done",
    );
    let filler_task = bg.wait(&filler);
    assert_eq!(filler_task["status"], "completed", "{filler_task}");
    assert!(
        filler_task["output_dropped_bytes"].as_u64().unwrap() > 0,
        "bytes that did not fit are counted: {filler_task}"
    );
    let capped_task = bg.wait(&capped);
    assert_eq!(capped_task["status"], "completed");
    let capped_size = std::fs::metadata(capped_task["stdout_path"].as_str().unwrap())
        .unwrap()
        .len();
    assert!(
        capped_size <= 1 << 20,
        "the cap still holds on a full disk: {capped_size}"
    );

    // Fill what is left, then try to start more.
    let _ = std::fs::write(bg.home.join("out/padding"), vec![0u8; 8 << 20]);
    let mut refused = 0;
    for _ in 0..5 {
        let run = bg.run(&["run", "--", "true"]);
        if run.code != 0 {
            refused += 1;
            assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
            assert!(
                run.stderr.contains("full") || run.stderr.contains("No space"),
                "{run:?}"
            );
        }
    }
    assert!(refused > 0, "spawns on a full disk must fail");
    go.open();
    let task = bg.wait(&survivor);
    assert_eq!(task["status"], "failed");
    assert_eq!(
        task["exit_code"], 7,
        "the running task ended and was recorded: {task}"
    );

    let conn = rusqlite::Connection::open(bg.home.join("bgtask.db")).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    println!("fault report: full disk (6 MiB tmpfs): {refused}/5 spawns refused with a clear error, running task recorded (exit 7), cap held ({capped_size} bytes), integrity ok");
    let _ = std::fs::remove_file(bg.home.join("out/padding"));
    for id in [&survivor, &capped, &filler] {
        let _ = bg.run(&["ack", id]);
    }
}

#[test]
fn a_corrupt_or_truncated_database_is_reported_and_repaired_by_doctor() {
    for damage in ["random bytes", "truncated", "zero length"] {
        let bg = Bg::new();
        let id = bg.spawn(&[], "echo kept output");
        bg.wait(&id);
        let db = bg.home.join("bgtask.db");
        // Fold the WAL in so the damage hits the real data.
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let len = std::fs::metadata(&db).unwrap().len() as usize;
        match damage {
            "random bytes" => {
                let mut bytes = std::fs::read(&db).unwrap();
                for (i, b) in bytes.iter_mut().enumerate().skip(100) {
                    *b = (i as u8).wrapping_mul(31) ^ 0xa5;
                }
                std::fs::write(&db, bytes).unwrap();
            }
            "truncated" => std::fs::File::options()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len((len / 2) as u64)
                .unwrap(),
            _ => std::fs::File::options()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(0)
                .unwrap(),
        }
        let list = bg.run(&["list"]);
        if list.code != 0 {
            assert_eq!(list.stderr.lines().count(), 1, "{damage}: {list:?}");
            assert!(!list.stderr.contains("panicked"), "{damage}: {list:?}");
        }
        let check = bg.run(&["doctor"]);
        let repair = bg.run(&["doctor", "--repair"]);
        assert_eq!(
            repair.code, 0,
            "{damage}: doctor --repair must leave a usable store: {repair:?}"
        );
        let after = bg
            .run(&["run", "--wait", "30s", "--json", "--", "echo fresh"])
            .ok()
            .json();
        assert_eq!(after["status"], "completed", "{damage}");
        let output_kept = std::path::Path::new(&bg.home)
            .join(format!("out/{id}.out"))
            .exists();
        println!(
            "fault report: database {damage}: list exit {}, doctor exit {}, repair exit 0, store usable again, old output kept: {output_kept}",
            list.code, check.code
        );
        assert!(
            output_kept,
            "{damage}: output files are never deleted by a repair"
        );
    }
}

#[test]
fn an_output_file_deleted_under_a_running_task_degrades_gracefully() {
    let bg = Bg::new();
    let go = bg.gate("go");
    let id = bg.spawn(&[], &format!("echo one; {}; echo two", go.hold()));
    let status = bg.status(&id);
    let out = status["stdout_path"].as_str().unwrap().to_owned();
    wait_until("the first line", || {
        std::fs::read_to_string(&out).unwrap_or_default() == "one\n"
    });
    std::fs::remove_file(&out).unwrap();
    let status = bg.status(&id);
    assert_eq!(status["status"], "running");
    assert_eq!(
        bg.run(&["logs", &id]).ok().stdout,
        "",
        "a missing file reads as empty"
    );
    go.open();
    let task = bg.wait(&id);
    assert_eq!(task["status"], "completed", "{task}");
    let doctor = bg.run(&["doctor"]).ok();
    assert!(doctor.stdout.contains("database"), "{doctor:?}");
    println!("fault report: output file deleted under a running task: task completed and recorded, reads empty, doctor clean");
}

#[test]
fn homes_owned_by_others_or_open_to_others_are_refused() {
    let bg = Bg::new();
    std::fs::create_dir(&bg.home).unwrap();
    std::fs::set_permissions(&bg.home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let chowned = Command::new("chown")
        .arg("65534")
        .arg(&bg.home)
        .status()
        .is_ok_and(|s| s.success());
    if chowned && rustix_uid() == 0 {
        let run = bg.run(&["run", "--", "true"]);
        assert_eq!(run.code, 1);
        assert!(run.stderr.contains("owned by another user"), "{run:?}");
        assert!(
            !bg.home.join("bgtask.db").exists(),
            "nothing was written into it"
        );
        Command::new("chown")
            .arg("0")
            .arg(&bg.home)
            .status()
            .unwrap();
    } else {
        println!("skipping the other-owner case: needs root");
    }
    std::fs::set_permissions(&bg.home, std::fs::Permissions::from_mode(0o733)).unwrap();
    let run = bg.run(&["list"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("writable by group or others"),
        "{run:?}"
    );
    let repair = bg.run(&["doctor", "--repair"]);
    assert_eq!(repair.code, 0, "{repair:?}");
    assert_eq!(
        std::fs::metadata(&bg.home).unwrap().permissions().mode() & 0o777,
        0o700
    );
    bg.run(&["list"]).ok();
    println!("fault report: unsafe homes: other owner refused, group-writable refused then repaired by doctor");
}

fn rustix_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(1)
}
