//! Where a store may be created: never in a folder that holds other files,
//! never by a command that only reads, and always at an absolute path.

use std::path::Path;

use crate::fixture::*;

/// Every entry of a directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_folder_with_other_files_is_never_turned_into_a_store() {
    let bg = Bg::new();
    let folder = bg.path("project");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("notes.txt"), "mine\n").unwrap();
    let before = entries(&folder);
    let home = folder.to_str().unwrap();
    for args in [
        &["list"][..],
        &["list", "--json"],
        &["status", "bg-0123456789abcdef"],
        &["logs", "bg-0123456789abcdef"],
        &["completions", "--json"],
        &["doctor"],
        &["gc"],
    ] {
        let run = bg.run_with(bg.cmd().arg("--home").arg(home).args(args));
        assert!(!run.stderr.contains("panicked"), "{args:?}: {run:?}");
        assert_eq!(entries(&folder), before, "{args:?} wrote into the folder");
    }
    let run = bg.run_with(bg.cmd().arg("--home").arg(home).args(["run", "--", "true"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains("not a bgtask store") && run.stderr.contains(home),
        "{run:?}"
    );
    assert_eq!(entries(&folder), before, "run wrote into the folder");
    let repair = bg.run_with(
        bg.cmd()
            .arg("--home")
            .arg(home)
            .args(["doctor", "--repair"]),
    );
    assert_eq!(
        entries(&folder),
        before,
        "doctor --repair wrote: {repair:?}"
    );
}

#[test]
fn read_only_commands_on_a_missing_store_answer_as_for_an_empty_one() {
    let bg = Bg::new();
    assert_eq!(
        bg.run(&["list", "--json"]).ok().json(),
        serde_json::json!([])
    );
    assert_eq!(bg.run(&["list"]).ok().stdout.trim(), "no tasks");
    assert_eq!(
        bg.run(&["completions", "--json"]).ok().json(),
        serde_json::json!([])
    );
    let status = bg.run(&["status", "bg-0123456789abcdef"]);
    assert_eq!(status.code, 3, "unknown task: {status:?}");
    let logs = bg.run(&["logs", "bg-0123456789abcdef"]);
    assert_eq!(logs.code, 3, "unknown task: {logs:?}");
    bg.run(&["doctor"]).ok();
    assert!(!bg.home.exists(), "a read created the store");
    // An empty folder (e.g. from mktemp -d) becomes a store on first run.
    std::fs::create_dir(&bg.home).unwrap();
    bg.run(&["list"]).ok();
    assert!(
        entries(&bg.home).is_empty(),
        "list wrote into the empty home"
    );
    bg.run(&["run", "--wait", "30s", "--", "true"]).ok();
    assert!(bg.home.join("bgtask.db").exists());
}

#[test]
fn a_relative_home_is_made_absolute_for_the_task_and_its_monitor() {
    let bg = Bg::new();
    let task = bg
        .run_with(
            bg.cmd()
                .env_remove("BGTASK_HOME")
                .args([
                    "--home",
                    "rel/store",
                    "run",
                    "--json",
                    "--wait",
                    "30s",
                    "--",
                ])
                .arg("cd / && echo from-root"),
        )
        .ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    let out = task["stdout_path"].as_str().unwrap();
    assert!(Path::new(out).is_absolute(), "{task}");
    assert!(out.starts_with(bg.dir.path().to_str().unwrap()), "{task}");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "from-root\n");
}

#[test]
fn a_damaged_database_points_to_doctor() {
    let bg = Bg::new();
    let id = bg.spawn(&[], "true");
    bg.wait(&id);
    let db = bg.home.join("bgtask.db");
    let _ = std::fs::remove_file(bg.home.join("bgtask.db-wal"));
    let _ = std::fs::remove_file(bg.home.join("bgtask.db-shm"));
    std::fs::write(&db, vec![0x5a; 8192]).unwrap();
    let list = bg.run(&["list"]);
    assert_eq!(list.code, 1, "{list:?}");
    assert_eq!(list.stderr.lines().count(), 1, "{list:?}");
    assert!(
        list.stderr
            .contains("(run `bgtask doctor` to check and repair the store)"),
        "{list:?}"
    );
}
