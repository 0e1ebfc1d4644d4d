//! The store's housekeeping under pressure: gc racing promotions, doctor
//! facing a database it cannot open, a small disk with its reserve, and a
//! stopped process holding a lock.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::json;

use crate::client::Server;
use crate::fixture::*;
use crate::rounds;

/// gc (selecting what is collectable, then deleting) runs in a loop while a
/// server promotes the same finished tasks: a promotion that answered
/// `promoted: true` recorded an unacknowledged completion, which gc must
/// never delete, with the task and its output files.
#[test]
fn gc_never_collects_a_task_promoted_beside_it() {
    let bg = Bg::new();
    let (ids, mut serve) = finished_tasks_and_a_server(&bg);
    let tasks = ids.len();
    let stop = Arc::new(AtomicBool::new(false));
    let gc_loop = {
        let stop = Arc::clone(&stop);
        let bin_cmd = move |bg: &Bg| {
            let mut cmd = bg.cmd();
            cmd.args(["gc", "--json", "--older-than", "0ms"]);
            cmd
        };
        let cmds: Vec<_> = (0..200).map(|_| bin_cmd(&bg)).collect();
        std::thread::spawn(move || {
            let mut runs = 0;
            for mut cmd in cmds {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "gc: {out:?}");
                runs += 1;
            }
            runs
        })
    };
    // Pipelined, so that promotions land while a gc run is deleting.
    let sent: Vec<i64> = ids
        .iter()
        .map(|id| serve.request("bash_promote", json!({ "task_id": id })))
        .collect();
    let mut promoted = Vec::new();
    let mut gone = 0;
    for (id, request) in ids.iter().zip(sent) {
        let reply = serve.reply(request);
        if reply["result"]["promoted"] == true {
            promoted.push(id.clone());
        } else {
            assert_eq!(reply["error"]["data"]["kind"], "task_not_found", "{reply}");
            gone += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let gc_runs = gc_loop.join().unwrap();
    serve.close();
    // Once more after the race: still nothing promoted may go.
    bg.run(&["gc", "--older-than", "0ms"]).ok();
    let pending: HashSet<String> = bg
        .run(&["completions", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["task_id"].as_str().unwrap().to_owned())
        .collect();
    let mut lost = Vec::new();
    for id in &promoted {
        let kept = pending.contains(id)
            && bg.run(&["status", id]).code == 0
            && bg.home.join(format!("out/{id}.out")).exists();
        if !kept {
            lost.push(id.clone());
        }
    }
    println!(
        "fault report: gc --older-than 0ms in a loop ({gc_runs} runs) beside {tasks} promotions: {} promoted, {gone} already collected (task_not_found), {} promoted then lost",
        promoted.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "promoted, then collected: {lost:?}");
    for id in &promoted {
        assert_eq!(bg.run(&["logs", id]).ok().stdout, "kept\n", "output kept");
    }
}

/// The uid the unprivileged cases run as.
const NOBODY: u32 = 65534;

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// `bgtask ARGS` run as `nobody` (root drops to it; its groups go too).
fn as_nobody(bg: &Bg, args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    let mut cmd = bg.cmd();
    cmd.uid(NOBODY).gid(NOBODY).args(args);
    bg.run_with(&mut cmd)
}

fn chown(path: &std::path::Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

/// A healthy database doctor cannot open (no read permission, or owned by
/// another user) is reported and left where it is: only a database proven
/// corrupt is moved aside. Run as `nobody`, since root reads any file.
#[test]
fn doctor_repair_leaves_a_healthy_database_it_cannot_open_in_place() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        println!("skipping: needs root to act as another user");
        return;
    }
    for case in ["mode 000", "owned by another user"] {
        let bg = Bg::new();
        // nobody must reach the home inside the test's private temp dir.
        std::fs::set_permissions(bg.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(&bg.home).unwrap();
        std::fs::set_permissions(&bg.home, std::fs::Permissions::from_mode(0o700)).unwrap();
        chown(&bg.home, NOBODY);
        let run = as_nobody(&bg, &["run", "--wait", "30s", "--json", "--", "echo kept"]).ok();
        let id = run.json()["task_id"].as_str().unwrap().to_owned();
        let db = bg.home.join("bgtask.db");
        match case {
            "mode 000" => {
                std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap()
            }
            _ => chown(&db, 0),
        }
        let check = as_nobody(&bg, &["doctor"]);
        let repair = as_nobody(&bg, &["doctor", "--repair"]);
        let moved: Vec<_> = std::fs::read_dir(&bg.home)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .map(|e| e.file_name())
            .collect();
        assert!(
            moved.is_empty(),
            "{case}: moved aside: {moved:?} {repair:?}"
        );
        assert_eq!(check.code, 1, "{case}: {check:?}");
        assert_eq!(repair.code, 1, "{case}: the problem remains: {repair:?}");
        assert!(
            repair.stdout.contains("cannot open") && repair.stdout.contains("left in place"),
            "{case}: doctor says what it did not do: {repair:?}"
        );
        // Permissions restored: every task is still there.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown(&db, NOBODY);
        let listed = as_nobody(&bg, &["list", "--json"]).ok().json();
        assert_eq!(listed[0]["task_id"], id.as_str(), "{case}: {listed}");
        println!(
            "fault report: database {case} (doctor as nobody): doctor exit {}, --repair exit {}, database left in place, task still listed after the fix",
            check.code, repair.code
        );
    }
}

/// On a 2 MiB disk the disk-space reserve (the ballast) and the free space
/// a start needs must not add up to the whole disk: task after task starts
/// and ends recorded, and the reserve is still there.
#[test]
fn a_small_disk_keeps_starting_tasks_beside_its_reserve() {
    let bg = Bg::new();
    let Some(_disk) = crate::disk::SmallDisk::mount(&bg.home, "2m") else {
        return;
    };
    let tasks = 10;
    let mut started = 0;
    for i in 0..tasks {
        let run = bg.run(&["run", "--wait", "30s", "--json", "--", &format!("echo {i}")]);
        assert_eq!(run.code, 0, "task {i} of {tasks} refused: {run:?}");
        assert_eq!(run.json()["status"], "completed", "{run:?}");
        started += 1;
    }
    let ballast = (0..8)
        .filter(|i| bg.home.join(format!("ballast.{i}")).exists())
        .count();
    assert!(ballast > 0, "the reserve is kept");
    // Once the disk is really full, starts are still refused clearly.
    let _ = std::fs::write(bg.home.join("out/padding"), vec![0u8; 4 << 20]);
    let full = bg.run(&["run", "--", "true"]);
    assert_eq!(full.code, 1, "{full:?}");
    assert!(full.stderr.contains("full"), "{full:?}");
    let _ = std::fs::remove_file(bg.home.join("out/padding"));
    println!("fault report: 2 MiB tmpfs: {started}/{tasks} tasks started and completed, {ballast} ballast slices kept, a start on the then full disk refused clearly");
    for line in bg
        .run(&["completions", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
    {
        bg.run(&["ack", line["task_id"].as_str().unwrap()]).ok();
    }
}

/// The state letter of a process (`T` when stopped), if it exists.
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status();
}

/// A child killed (SIGKILL works on a stopped process too) and reaped when
/// the test ends, even if it fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `bgtask ARGS`, timed.
fn timed(bg: &Bg, args: &[&str]) -> (Run, std::time::Duration) {
    let started = std::time::Instant::now();
    let run = bg.run(args);
    (run, started.elapsed())
}

/// A `bgtask` process stopped (SIGSTOP) while it holds the lock under
/// which a new store is created: every other command fails within seconds
/// with one line naming it, instead of hanging; resumed, it finishes and
/// the store works.
#[test]
fn a_stopped_process_holding_the_open_lock_is_named_not_waited_for() {
    let bg = Bg::new();
    // `serve` creates the store when it starts; the fault point stops it
    // inside the open lock.
    let mut cmd = bg.cmd();
    cmd.env("BGTASK_FAULT", "stop_in_open_lock")
        .stdin(std::process::Stdio::piped());
    let mut serve = bg.serve_with(cmd);
    let pid = serve.pid();
    wait_until("serve to stop inside the open lock", || {
        state_of(pid) == Some('T')
    });
    let mut outcomes = Vec::new();
    for args in [
        &["run", "--", "echo refused"][..],
        &["list"],
        &["status", "bg-0123456789abcdef"],
    ] {
        let (run, took) = timed(&bg, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains(&format!("pid {pid} (bgtask, stopped)")),
            "{args:?}: the holder is named: {run:?}"
        );
        assert!(took.as_secs() < 5, "{args:?} took {took:?}");
        outcomes.push(format!("{} in {:.1} s", args[0], took.as_secs_f64()));
    }
    signal(pid, "-CONT");
    let reply = serve.call_frame("bash_list", json!({}));
    assert!(reply["result"]["tasks"].is_array(), "{reply}");
    serve.close();
    let task = bg
        .run(&["run", "--wait", "30s", "--json", "--", "echo after"])
        .ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    assert_eq!(bg.list_all().len(), 1, "the refused start left no task");
    println!(
        "fault report: bgtask stopped (SIGSTOP) inside the store's open lock: run, list and status each failed with one line naming pid (bgtask, stopped) ({}); after SIGCONT the store works",
        outcomes.join(", ")
    );
}

/// Opening a store that exists needs no lock: a stopped process holding
/// the open lock file delays nobody.
#[test]
fn an_existing_store_opens_beside_a_stopped_lock_holder() {
    let bg = Bg::new();
    bg.run(&["run", "--wait", "30s", "--", "true"]).ok();
    let holder = KillOnDrop(
        std::process::Command::new("flock")
            .arg("--no-fork")
            .arg(bg.home.join("bgtask.lock"))
            .args(["sleep", "600"])
            .spawn()
            .unwrap(),
    );
    let pid = holder.0.id();
    wait_until("flock to take the lock", || {
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!(" {pid} ")) && !l.contains("->"))
    });
    signal(pid, "-STOP");
    let (run, took) = timed(&bg, &["run", "--wait", "30s", "--json", "--", "echo ok"]);
    let task = run.ok().json();
    assert_eq!(task["status"], "completed", "{task}");
    let (list, list_took) = timed(&bg, &["list"]);
    list.ok();
    drop(holder);
    assert!(
        took.as_secs() < 5 && list_took.as_secs() < 5,
        "{took:?} {list_took:?}"
    );
    println!("fault report: open lock of an existing store held by a stopped process: run --wait took {:.2} s, list {:.2} s (no lock needed)", took.as_secs_f64(), list_took.as_secs_f64());
}

/// A `bgtask run` stopped inside its write transaction holds SQLite's
/// write lock: readers go on, and writers give up within seconds (not the
/// 30 s a live holder gets) with one line naming the stopped process.
#[test]
fn a_stopped_process_holding_the_write_lock_is_named() {
    let bg = Bg::new();
    bg.run(&["run", "--wait", "30s", "--", "true"]).ok();
    let mut stuck = bg.cmd();
    stuck
        .env("BGTASK_FAULT", "stop_in_write")
        .args(["run", "--", "echo never"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let stuck = KillOnDrop(stuck.spawn().unwrap());
    let pid = stuck.0.id();
    wait_until("run to stop inside its transaction", || {
        state_of(pid) == Some('T')
    });
    let (list, list_took) = timed(&bg, &["list", "--json"]);
    assert_eq!(
        list.ok().json().as_array().unwrap().len(),
        1,
        "readers go on"
    );
    let (run, took) = timed(&bg, &["run", "--", "echo blocked"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "database is locked by pid {pid} (bgtask, stopped)"
        )),
        "the holder is named: {run:?}"
    );
    assert!(took.as_secs() < 5, "gave up after {took:?}");
    drop(stuck);
    let task = bg
        .run(&["run", "--wait", "30s", "--json", "--", "echo after"])
        .ok()
        .json();
    assert_eq!(task["status"], "completed", "{task}");
    println!(
        "fault report: bgtask stopped (SIGSTOP) holding SQLite's write lock: list answered in {:.2} s; run failed in {:.1} s with one line naming pid (bgtask, stopped); after SIGKILL of the holder the store works",
        list_took.as_secs_f64(),
        took.as_secs_f64()
    );
}

/// Output read while gc collects the task: the reader gets the output or
/// learns the task is gone, never an empty output for a task it was told
/// exists (gc removes the files only after the record, and a read that
/// finds no file looks at the record again).
#[test]
fn output_read_beside_gc_is_complete_or_task_not_found() {
    let bg = Bg::new();
    let (ids, mut serve) = finished_tasks_and_a_server(&bg);
    let tasks = ids.len();
    let mut gc = bg.cmd();
    gc.args(["gc", "--older-than", "0ms"])
        .stdout(std::process::Stdio::null());
    let mut gc = Some(gc);
    let mut running = None;
    let mut sent = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        // gc starts while the reads are under way.
        if i == tasks / 10 {
            running = gc.take().map(|mut gc| gc.spawn().unwrap());
        }
        sent.push(serve.request("bash_output", json!({ "task_id": id })));
        sent.push(serve.request("bash_status", json!({ "task_id": id })));
    }
    let mut gc = running.unwrap();
    let (mut complete, mut gone, mut empty) = (0, 0, Vec::new());
    for request in sent {
        let reply = serve.reply(request);
        let result = &reply["result"];
        if reply["error"]["data"]["kind"] == "task_not_found" {
            gone += 1;
        } else if result["data"] == "kept\n" || result["output_tail"] == "kept\n" {
            complete += 1;
        } else {
            empty.push(reply);
        }
    }
    assert!(gc.wait().unwrap().success());
    serve.close();
    println!(
        "fault report: {} output/status reads of {tasks} tasks beside a gc collecting them: {complete} complete, {gone} task_not_found, {} empty",
        2 * tasks,
        empty.len()
    );
    assert!(empty.is_empty(), "empty reads: {empty:?}");
}

/// 150 finished `--no-notify` tasks (more under `BGTASK_SOAK`) that gc may
/// collect at once, and a server of the same store.
fn finished_tasks_and_a_server(bg: &Bg) -> (Vec<String>, Server) {
    let ids: Vec<String> = (0..150 * rounds(1))
        .map(|_| bg.run_id(bg.cmd().args(["run", "--no-notify", "--", "echo kept"])))
        .collect();
    for id in &ids {
        bg.wait(id);
    }
    let mut serve = bg.serve_with(bg.cmd());
    serve.call_frame("initialize", json!({}));
    (ids, serve)
}
